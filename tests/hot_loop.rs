//! The hot loop allocates nothing per frame: capture into a recycled buffer, the slot, preprocess,
//! ONNX Runtime inference with reused tensors, postprocess and the record hand-off (and the
//! governor's frame window the stats thread fills from it), counted by a
//! counting global allocator over hundreds of frames in steady state, for the synthetic pattern
//! and for every raw pixel layout through the real source code (Y4M planes from a looping
//! in-memory stream; YUYV, UYVY, NV12, RGB3, BGR3 and GREY through the V4L2 source on a fake
//! device whose lines are padded; MJPEG in every sampling, with and without Huffman tables,
//! with restart intervals, at full size and DCT-scaled, through the same fake device). (ONNX Runtime's own C++ allocations do not pass through
//! Rust's allocator; `scripts/bench_loop.sh` shows RSS flat.)

use std::io::{self, Cursor};
use std::path::Path;
use std::sync::mpsc::sync_channel;
use std::time::Duration;

use rtinfer::pipeline::{self, FrameRecord, Pipeline};
use rtinfer::slot::{FrameSlot, Outcome, Take};
use rtinfer::source::v4l2::convert::{self, FourCc};
use rtinfer::source::v4l2::device::{Device, Granted, Opener};
use rtinfer::source::v4l2::{Request, V4l2Source};
use rtinfer::source::y4m::{Y4mHeader, Y4mSource};
use rtinfer::source::{self, Capture, PixelFormat, Source, SourceSpec};
use rtinfer::time::MonoTime;

use crate::util;

/// Runs `warmup` then `frames` frames of `src` through the slot and the pipeline; returns the
/// allocations counted over the `frames` (after the warm-up sized every buffer).
fn steady_state(
    src: &mut dyn Source,
    p: &mut Pipeline,
    (width, height): (u32, u32),
    frames: u64,
) -> allocation_counter::AllocationInfo {
    let slot = FrameSlot::new(width, height);
    let (tx, rx) = sync_channel::<FrameRecord>(4096);
    let mut buf = slot.buffer();
    let mut held = None;
    let mut one_frame = |seq: u64| {
        loop {
            match src
                .next(&mut buf, Duration::from_millis(100))
                .expect("a frame")
            {
                Capture::Frame => break,
                Capture::Timeout => continue,
                Capture::EndOfStream => panic!("the test sources loop"),
            }
        }
        buf.seq = seq;
        buf = slot.publish(std::mem::take(&mut buf));
        let Take::Frame(frame) = slot.take(held.take(), Duration::from_millis(100)) else {
            panic!("the frame just published is there")
        };
        let rec = pipeline::process(p, &frame, Duration::from_secs(1));
        slot.finish(rec.outcome);
        tx.try_send(rec).expect("queue has room");
        held = Some(frame);
        rec
    };
    // Warm-up: first frames size the buffers and the preprocessing plan.
    for seq in 1..=20 {
        assert!(matches!(
            one_frame(seq).outcome,
            Outcome::OnTime | Outcome::Late
        ));
    }
    rx.try_iter().count();
    let info = allocation_counter::measure(|| {
        for seq in 21..21 + frames {
            let rec = one_frame(seq);
            assert!(rec.top_len == 5);
        }
    });
    assert_eq!(rx.try_iter().count() as u64, frames);
    let c = slot.counters();
    assert_eq!(
        c.processed + c.dropped + c.cancelled + c.in_flight,
        c.captured
    );
    info
}

#[test]
fn steady_state_frames_allocate_nothing() {
    let dir = util::tempdir();
    let model = util::zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let mut p = util::ort_pipeline(&model);
    let mut src =
        source::open(&SourceSpec::parse("synthetic://320x240@1000").expect("uri")).expect("open");
    let frames = 1000;
    let info = steady_state(src.as_mut(), &mut p, (320, 240), frames);
    assert_eq!(
        info.count_total, 0,
        "{} allocations ({} bytes) over {frames} frames",
        info.count_total, info.bytes_total
    );
}

/// A camera that hands out the same raw frame forever, `pad` bytes of junk after each line.
struct Still {
    fourcc: FourCc,
    size: (u32, u32),
    stride: usize,
    data: Vec<u8>,
}

impl Opener for Still {
    fn open(&mut self, _path: &Path) -> io::Result<Box<dyn Device>> {
        Ok(Box::new(Still {
            data: self.data.clone(),
            ..*self
        }))
    }
}

impl Device for Still {
    fn formats(&mut self) -> io::Result<Vec<FourCc>> {
        Ok(vec![self.fourcc])
    }

    fn start(
        &mut self,
        fourcc: FourCc,
        _size: (u32, u32),
        _fps: Option<f64>,
    ) -> io::Result<Granted> {
        Ok(Granted {
            fourcc,
            width: self.size.0,
            height: self.size.1,
            stride: self.stride,
            fps: Some(1000.0),
        })
    }

    fn next(
        &mut self,
        _timeout: Duration,
        f: &mut dyn FnMut(&[u8], Option<MonoTime>),
    ) -> io::Result<bool> {
        f(&self.data, Some(MonoTime::now()));
        Ok(true)
    }
}

/// A fake camera streaming `fourcc` frames of `width x height` with 16 bytes of line padding.
fn camera(fourcc: FourCc, width: u32, height: u32) -> V4l2Source {
    let bpp = match fourcc {
        convert::RGB3 | convert::BGR3 => 3,
        convert::YUYV | convert::UYVY => 2,
        _ => 1,
    };
    let stride = width as usize * bpp + 16;
    let rows = if fourcc == convert::NV12 {
        height as usize * 3 / 2
    } else {
        height as usize
    };
    let data = (0..stride * rows).map(|i| (i * 7 % 251) as u8).collect();
    let opener = Still {
        fourcc,
        size: (width, height),
        stride,
        data,
    };
    let request = Request {
        format: Some(fourcc),
        size: (width, height),
        fps: None,
    };
    V4l2Source::open_with(Box::new(opener), Path::new("/dev/video9"), "fake", request)
        .expect("the fake camera opens")
}

/// A looping in-memory Y4M stream of three `width x height` frames with colourspace tag `c`.
fn y4m(c: &str, width: u32, height: u32) -> Y4mSource<Cursor<Vec<u8>>> {
    let header = format!("YUV4MPEG2 W{width} H{height} F1000:1 C{c}");
    let len = Y4mHeader::parse(header.as_bytes())
        .expect("a valid header")
        .frame_len();
    let mut data = (header + "\n").into_bytes();
    for k in 0..3 {
        data.extend_from_slice(b"FRAME\n");
        data.extend((0..len).map(|i| ((i * 13 + k * 29) % 256) as u8));
    }
    Y4mSource::new(Cursor::new(data), "mem.y4m")
        .expect("a valid stream")
        .looping()
}

#[test]
fn steady_state_frames_allocate_nothing_in_every_pixel_format() {
    let dir = util::tempdir();
    let model = util::zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let mut p = util::ort_pipeline(&model);
    let (w, h) = (160, 120);
    let mut sources: Vec<(String, PixelFormat, Box<dyn Source>)> = Vec::new();
    for fourcc in [
        convert::YUYV,
        convert::UYVY,
        convert::NV12,
        convert::RGB3,
        convert::BGR3,
        convert::GREY,
    ] {
        let format = convert::pixel_format(fourcc).expect("a raw format");
        sources.push((
            convert::name(fourcc),
            format,
            Box::new(camera(fourcc, w, h)),
        ));
    }
    for c in ["420jpeg", "422", "444", "411", "mono", "444alpha"] {
        let src = y4m(c, w, h);
        let format = src.info().format;
        sources.push((format!("Y4M C{c}"), format, Box::new(src)));
    }
    let frames = 300;
    for (name, format, mut src) in sources {
        assert_eq!(src.info().format, format, "{name}");
        let info = steady_state(src.as_mut(), &mut p, (w, h), frames);
        assert_eq!(
            info.count_total, 0,
            "{name} ({format}): {} allocations ({} bytes) over {frames} frames",
            info.count_total, info.bytes_total
        );
    }
}

/// A fake MJPEG camera sending `jpeg` (a `width x height` frame) forever.
fn mjpeg_camera(jpeg: Vec<u8>, width: u32, height: u32) -> V4l2Source {
    let opener = Still {
        fourcc: convert::MJPG,
        size: (width, height),
        stride: 0,
        data: jpeg,
    };
    let request = Request {
        format: Some(convert::MJPG),
        size: (width, height),
        fps: None,
    };
    V4l2Source::open_with(Box::new(opener), Path::new("/dev/video9"), "fake", request)
        .expect("the fake camera opens")
}

#[test]
fn steady_state_mjpeg_frames_allocate_nothing_in_every_sampling() {
    let dir = util::tempdir();
    let model = util::zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let mut p = util::ort_pipeline(&model);
    let spec = *p.pre.spec();
    let (w, h) = (160, 120);
    let size = format!("{w}x{h}");
    let encode = |name: &str, args: &[&str]| {
        let out = dir.path().join(format!("{name}.jpg"));
        let mut all = vec!["-f", "lavfi", "-i"];
        let src = format!("testsrc2=size={size}:rate=1");
        all.push(&src);
        all.extend_from_slice(&["-frames:v", "1", "-c:v", "mjpeg"]);
        all.extend_from_slice(args);
        all.push(out.to_str().expect("utf-8 path"));
        util::ffmpeg(&all);
        std::fs::read(&out).expect("the jpeg")
    };
    let ppm = dir.path().join("frame.ppm");
    util::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size={size}:rate=1"),
        "-frames:v",
        "1",
        ppm.to_str().expect("utf-8 path"),
    ]);
    let cjpeg = |args: &[&str]| {
        let out = std::process::Command::new("cjpeg")
            .args(args)
            .arg(&ppm)
            .output()
            .expect("cjpeg (scripts/setup.sh installs it)");
        assert!(out.status.success());
        out.stdout
    };
    let mut jpegs = vec![
        (
            "yuvj422p",
            encode("422", &["-pix_fmt", "yuvj422p", "-huffman", "default"]),
        ),
        ("yuvj420p", encode("420", &["-pix_fmt", "yuvj420p"])),
        ("yuvj444p", encode("444", &["-pix_fmt", "yuvj444p"])),
        ("gray", cjpeg(&["-grayscale"])),
        (
            "yuvj422p restart",
            cjpeg(&["-sample", "2x1", "-restart", "2B"]),
        ),
    ];
    // AVI1 as cameras send it: the 4:2:2 frame without its Huffman tables.
    let bare = {
        let j = &jpegs[0].1;
        let mut out = j[..2].to_vec();
        let mut i = 2;
        while j[i + 1] != 0xDA {
            let len = (usize::from(j[i + 2]) << 8) | usize::from(j[i + 3]);
            if j[i + 1] != 0xC4 {
                out.extend_from_slice(&j[i..i + 2 + len]);
            }
            i += 2 + len;
        }
        out.extend_from_slice(&j[i..]);
        out
    };
    jpegs.push(("yuvj422p without DHT", bare));
    let frames = 200;
    for (name, jpeg) in jpegs {
        // Full size, then scaled down to (not below) the model's input.
        for min in [None, Some((spec.width, spec.height))] {
            let mut src = mjpeg_camera(jpeg.clone(), w, h);
            src.set_min_size(min);
            // The frames are the JPEG's own planes, at 1/2 size for the 32x32 model.
            let mut f = source::Frame::default();
            while src
                .next(&mut f, Duration::from_millis(100))
                .expect("a frame")
                != Capture::Frame
            {}
            assert!(name.starts_with(f.format.name()), "{name}: {}", f.format);
            let k = if min.is_some() { 2 } else { 1 };
            assert_eq!((f.width, f.height), (w / k, h / k), "{name} {min:?}");
            let info = steady_state(&mut src, &mut p, (w, h), frames);
            assert_eq!(
                info.count_total, 0,
                "MJPEG {name} (min size {min:?}): {} allocations ({} bytes) over {frames} frames",
                info.count_total, info.bytes_total
            );
        }
    }
}

/// Synthetic 64x48 frames one at a time through a frame slot into a pipeline, as the capture
/// and pipeline threads pass them (the frame is handed back to the slot on the next take).
struct Feed {
    src: Box<dyn Source>,
    slot: FrameSlot,
    buf: rtinfer::source::Frame,
    held: Option<rtinfer::source::Frame>,
    seq: u64,
}

impl Feed {
    fn new() -> Feed {
        let src =
            source::open(&SourceSpec::parse("synthetic://64x48@1000").expect("uri")).expect("open");
        let slot = FrameSlot::new(64, 48);
        let buf = slot.buffer();
        Feed {
            src,
            slot,
            buf,
            held: None,
            seq: 0,
        }
    }

    fn through(&mut self, p: &mut Pipeline) -> FrameRecord {
        self.seq += 1;
        while !matches!(
            self.src
                .next(&mut self.buf, Duration::from_millis(100))
                .expect("frame"),
            Capture::Frame
        ) {}
        self.buf.seq = self.seq;
        self.buf = self.slot.publish(std::mem::take(&mut self.buf));
        let Take::Frame(frame) = self.slot.take(self.held.take(), Duration::from_millis(100))
        else {
            panic!("the frame just published is there")
        };
        let rec = pipeline::process(p, &frame, Duration::from_secs(1));
        self.slot.finish(rec.outcome);
        self.held = Some(frame);
        rec
    }
}

#[test]
fn every_postprocess_kind_allocates_nothing_per_frame() {
    use rtinfer::postprocess::{Activation, Plan};
    let dir = util::tempdir();
    let model = util::zoo_model(dir.path(), "vgg11", "cifar10", 0.125);
    let mut p = util::ort_pipeline(&model);
    let mut feed = Feed::new();
    let plans = [
        Plan::Classify(Activation::Softmax),
        Plan::Classify(Activation::Exp),
        Plan::Classify(Activation::Identity),
        Plan::Raw {
            shape: [1, 10, 0, 0, 0, 0],
            rank: 2,
        },
    ];
    for plan in plans {
        p.set_plan(plan);
        for _ in 0..10 {
            feed.through(&mut p);
        }
        let mut kinds = Vec::with_capacity(200);
        let info = allocation_counter::measure(|| {
            for _ in 0..200 {
                let rec = feed.through(&mut p);
                kinds.push((rec.kind_name(), rec.top_len));
            }
        });
        assert_eq!(
            info.count_total, 0,
            "{plan:?}: {} allocations over 200 frames",
            info.count_total
        );
        let want = match plan {
            Plan::Raw { .. } => ("raw", 0),
            Plan::Classify(_) => ("classify", 5),
            Plan::Detect(_) => ("detect", 0),
        };
        assert!(kinds.iter().all(|k| *k == want), "{plan:?}: {:?}", kinds[0]);
    }

    // detect: a planted YOLO head (8400 candidates, as YOLOv8 at 640, of which 300 pass the
    // threshold and go through the sort and NMS), letterboxed 64x48 frames, and the hand-off of
    // the kept boxes to the stats thread's ring, as `pipeline::run` does it.
    let n = 8400;
    let cands: Vec<Vec<f32>> = (0..300)
        .map(|i| {
            let (x, y) = ((i % 20) as f32 * 3.0 + 2.0, (i / 20) as f32 * 2.0 + 2.0);
            vec![
                x,
                y,
                4.0,
                4.0,
                0.3 + i as f32 / 1000.0,
                0.5 - i as f32 / 1000.0,
            ]
        })
        .collect();
    let head = crate::detect::head(&cands, 6, n, true);
    let m = dir.path().join("yolo.onnx");
    rtinfer::onnx::pb::write_model(&m, &crate::detect::head_model(64, 64, &head.0, &head.1))
        .expect("write model");
    let post = rtinfer::postprocess::PostprocessOptions {
        kind: rtinfer::postprocess::Kind::Detect,
        ..Default::default()
    };
    let mut p =
        crate::detect::detect_pipeline(&m, &post, rtinfer::preprocess::ResizeMode::Letterbox);
    let ctl = pipeline::LoopControl::new(Duration::from_secs(1));
    let mut detect_frame = |p: &mut pipeline::Pipeline| {
        let rec = feed.through(p);
        if rec.detections.is_some() {
            assert!(ctl.boxes.publish(p.generation, rec.seq, p.detections()));
        }
        rec
    };
    for _ in 0..10 {
        detect_frame(&mut p);
    }
    let mut got = Vec::with_capacity(200);
    let info = allocation_counter::measure(|| {
        for _ in 0..200 {
            let rec = detect_frame(&mut p);
            got.push((rec.kind_name(), rec.detections));
        }
    });
    assert_eq!(
        info.count_total, 0,
        "detect: {} allocations over 200 frames",
        info.count_total
    );
    // Every candidate passes (scores 0.4..0.6) and none overlaps another by more than the IoU:
    // the sort and NMS see all 300 and keep the default cap of 100.
    assert!(
        got.iter().all(|g| *g == ("detect", Some(100))),
        "{:?}",
        got[0]
    );
    let mut back = Vec::new();
    assert!(ctl.boxes.read(p.generation, feed.seq, &mut back));
    assert_eq!(back, p.detections());
}

/// A source whose first `left` reads are not counted (they size buffers).
struct WarmedUp {
    inner: Box<dyn source::Source>,
    left: u32,
}

impl source::Source for WarmedUp {
    fn info(&self) -> source::SourceInfo {
        self.inner.info()
    }

    fn next(
        &mut self,
        frame: &mut source::Frame,
        timeout: Duration,
    ) -> Result<Capture, source::SourceError> {
        if self.left == 0 {
            return self.inner.next(frame, timeout);
        }
        self.left -= 1;
        let mut r = None;
        allocation_counter::opt_out(|| r = Some(self.inner.next(frame, timeout)));
        r.expect("the read ran")
    }
}

#[test]
fn the_capture_thread_allocates_nothing_per_frame() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use rtinfer::capture::{self, CaptureContext, SourceHealth};
    use rtinfer::state::{State, StateCell};

    let uri = "synthetic://64x48@1000";
    let inner = source::open(&SourceSpec::parse(uri).expect("uri")).expect("open");
    let ctx = Arc::new(CaptureContext {
        slot: Arc::new(FrameSlot::new(64, 48)),
        health: Arc::new(SourceHealth::new(
            uri,
            Some(1000.0),
            Duration::from_millis(1),
        )),
        state: Arc::new(StateCell::new(State::Running)),
        ctl: Arc::new(pipeline::LoopControl::new(Duration::from_secs(1))),
        realtime: Default::default(),
        duration: None,
    });
    let warm_up = 20;
    let thread = std::thread::spawn({
        let ctx = Arc::clone(&ctx);
        move || {
            let mut src = WarmedUp {
                inner,
                left: warm_up,
            };
            allocation_counter::measure(|| capture::run(&mut src, &ctx))
        }
    });
    // Nobody takes the frames: each replaces the one before in the slot, as when the pipeline
    // falls behind.
    let frames = u64::from(warm_up) + 1000;
    while ctx.slot.counters().captured < frames && !thread.is_finished() {
        std::thread::sleep(Duration::from_millis(5));
    }
    ctx.ctl.stop.store(true, Ordering::SeqCst);
    let info = thread.join().expect("the capture thread returns on stop");
    assert!(ctx.slot.counters().captured >= frames);
    assert_eq!(
        info.count_total, 0,
        "{} allocations ({} bytes) on the capture thread",
        info.count_total, info.bytes_total
    );
}

#[test]
fn the_governor_window_takes_frames_without_allocating() {
    use rtinfer::governor::window::{FrameWindow, Scratch};
    use rtinfer::stats::FrameTimes;
    use rtinfer::time::MonoTime;

    let mut w = FrameWindow::new();
    let mut scratch = Scratch::new();
    let rec = |i: u64| FrameRecord {
        seq: i,
        model_gen: 1,
        captured_at: MonoTime::from_nanos(i * 16_000_000),
        done_at: MonoTime::from_nanos(i * 16_000_000 + 5_000_000),
        times: FrameTimes {
            end_to_end: Duration::from_millis(5),
            capture: Duration::ZERO,
            queue: Duration::ZERO,
            inference: Duration::from_millis(3),
            preprocess: Duration::from_millis(1),
            postprocess: Duration::from_micros(10),
            device: None,
        },
        outcome: if i.is_multiple_of(10) {
            Outcome::Late
        } else {
            Outcome::OnTime
        },
        budget: Duration::from_millis(16),
        top: [(0, 0.0); pipeline::TOP_K],
        top_len: 0,
        raw: None,
        detections: None,
    };
    let mut figures = None;
    let info = allocation_counter::measure(|| {
        for i in 0..5000 {
            w.push(&rec(i));
            if i.is_multiple_of(100) {
                let zero = MonoTime::from_nanos(0);
                figures = Some(w.figures(1, zero, zero, &mut scratch));
            }
        }
    });
    assert_eq!(
        info.count_total, 0,
        "{} allocations ({} bytes) for 5000 frames",
        info.count_total, info.bytes_total
    );
    let f = figures.expect("figures");
    assert!(f.frames > 0 && f.misses > 0, "{f:?}");
}

/// Allocations of each step of the ffmpeg reader threads (see `READER_STEP_HOOK`).
static READER_STEPS: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

fn count_reader_step(step: &mut dyn FnMut()) {
    let info = allocation_counter::measure(step);
    READER_STEPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(info.count_total);
}

/// An ffmpeg-decoded file: neither the capture thread (`FfmpegSource::next`: a channel receive
/// and a buffer swap) nor the reader thread (Y4M read from the child, its CPU clock, the hand-off)
/// allocates per frame once the pool's buffers are sized.
#[test]
fn an_ffmpeg_source_allocates_nothing_per_frame() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use rtinfer::capture::{self, CaptureContext, SourceHealth};
    use rtinfer::source::ffmpeg::READER_STEP_HOOK;
    use rtinfer::state::{State, StateCell};

    READER_STEP_HOOK
        .set(count_reader_step)
        .expect("only this test sets the hook");
    let dir = util::tempdir();
    let clip = crate::streams::mp4(dir.path(), "clip.mp4");
    let uri = format!("file://{}?loop=true&fps=1000", clip.display());
    let inner = source::open(&SourceSpec::parse(&uri).expect("uri")).expect("open");
    let ctx = Arc::new(CaptureContext {
        slot: Arc::new(FrameSlot::new(320, 240)),
        health: Arc::new(SourceHealth::new(
            &uri,
            Some(1000.0),
            Duration::from_millis(1),
        )),
        state: Arc::new(StateCell::new(State::Running)),
        ctl: Arc::new(pipeline::LoopControl::new(Duration::from_secs(1))),
        realtime: Default::default(),
        duration: None,
    });
    let warm_up = 20;
    let thread = std::thread::spawn({
        let ctx = Arc::clone(&ctx);
        move || {
            let mut src = WarmedUp {
                inner,
                left: warm_up,
            };
            let info = allocation_counter::measure(|| capture::run(&mut src, &ctx));
            drop(src); // kills the child; its reader thread ends
            info
        }
    });
    let frames = u64::from(warm_up) + 300;
    while ctx.slot.counters().captured < frames && !thread.is_finished() {
        std::thread::sleep(Duration::from_millis(5));
    }
    ctx.ctl.stop.store(true, Ordering::SeqCst);
    let info = thread.join().expect("the capture thread returns on stop");
    assert!(ctx.slot.counters().captured >= frames);
    assert_eq!(
        info.count_total, 0,
        "{} allocations ({} bytes) on the capture thread",
        info.count_total, info.bytes_total
    );
    let steps = READER_STEPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert!(steps.len() as u64 >= frames, "{} reader steps", steps.len());
    // The first steps size the pool's buffers; the last one ends the stream (its error is built).
    // Beyond those, std's channels allocate once, lazily, the first time the reader waits on
    // one (the thread's wait context, then each wait list's first entry: at most three
    // allocations, at whatever step the load makes the first wait happen). Nothing recurs: over
    // 300 frames the steady steps allocate at most those three times in all.
    let steady = &steps[10..steps.len() - 1];
    let total: u64 = steady.iter().sum();
    assert!(
        total <= 3,
        "allocations at (reader step, count) of {}: {:?}",
        steps.len(),
        steps
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .collect::<Vec<_>>()
    );
}
