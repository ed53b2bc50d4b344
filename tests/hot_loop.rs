//! The hot loop allocates nothing per frame: capture into a recycled buffer, the slot, preprocess,
//! ONNX Runtime inference with reused tensors, postprocess and the record hand-off, counted by a
//! counting global allocator over a thousand frames in steady state. (ONNX Runtime's own C++
//! allocations do not pass through Rust's allocator; `scripts/bench_loop.sh` shows RSS flat.)

use std::sync::mpsc::sync_channel;
use std::time::Duration;

use rtinfer::pipeline::{self, FrameRecord};
use rtinfer::slot::{FrameSlot, Outcome, Take};
use rtinfer::source::{self, Capture, SourceSpec};

use crate::util;

#[test]
fn steady_state_frames_allocate_nothing() {
    let dir = util::tempdir();
    let model = util::zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let mut p = util::ort_pipeline(&model);
    let mut src =
        source::open(&SourceSpec::parse("synthetic://320x240@1000").expect("uri")).expect("open");
    let slot = FrameSlot::new(320, 240);
    let (tx, rx) = sync_channel::<FrameRecord>(4096);

    let mut buf = slot.buffer();
    let mut held = None;
    let mut one_frame = |seq: u64| {
        loop {
            match src
                .next(&mut buf, Duration::from_millis(100))
                .expect("synthetic frame")
            {
                Capture::Frame => break,
                Capture::Timeout => continue,
                Capture::EndOfStream => panic!("synthetic sources do not end"),
            }
        }
        buf.seq = seq;
        buf = slot.publish(std::mem::take(&mut buf));
        let Take::Frame(frame) = slot.take(held.take(), Duration::from_millis(100)) else {
            panic!("the frame just published is there")
        };
        let rec = pipeline::process(&mut p, &frame, Duration::from_secs(1));
        slot.finish(rec.outcome);
        tx.try_send(rec).expect("queue has room");
        held = Some(frame);
        rec
    };
    // Warm-up: first frames size the buffers and the resizer.
    for seq in 1..=20 {
        assert!(matches!(
            one_frame(seq).outcome,
            Outcome::OnTime | Outcome::Late
        ));
    }
    rx.try_iter().count();
    let frames = 1000u64;
    let info = allocation_counter::measure(|| {
        for seq in 21..21 + frames {
            let rec = one_frame(seq);
            assert!(rec.top_len == 5);
        }
    });
    assert_eq!(rx.try_iter().count() as u64, frames);
    assert_eq!(
        info.count_total, 0,
        "{} allocations ({} bytes) over {frames} frames",
        info.count_total, info.bytes_total
    );
    let c = slot.counters();
    assert_eq!(
        c.processed + c.dropped + c.cancelled + c.in_flight,
        c.captured
    );
}
