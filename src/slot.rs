//! The latest-frame slot between the capture thread and the pipeline, and the frame counters.
//!
//! A real-time loop wants the newest frame, never a queue of stale ones: a frame that arrives
//! while another still waits replaces it, and the replaced one is counted as dropped. Buffers
//! circulate (capture → slot → pipeline → back to the free list), so after the first frames
//! nothing is allocated. The counters live under the same lock as the frames so a snapshot
//! always satisfies `captured == processed + dropped + cancelled + in_flight`.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::source::Frame;

/// Frame counters of the contract (`frames` in `/status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub captured: u64,
    /// Inference completed, on time or late.
    pub processed: u64,
    /// The late subset of `processed`.
    pub missed_deadline: u64,
    /// Replaced in the slot before inference, or whose inference returned an error.
    pub dropped: u64,
    /// The subset of `dropped` whose inference failed (a runtime error, not a replacement).
    pub failed: u64,
    /// Aborted past the hard deadline.
    pub cancelled: u64,
    /// Waiting in the slot or being inferred.
    pub in_flight: u64,
}

/// How a frame the pipeline took ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    OnTime,
    Late,
    Cancelled,
    Failed,
    /// Taken while no model was loaded (waiting for the watch folder): counted as dropped.
    NoModel,
    /// Dropped by `pipeline.overrun = "skip"` to keep the capture phase: counted as dropped.
    Skipped,
}

/// Why no more frames will come.
#[derive(Debug, Clone)]
pub enum End {
    /// The stream ended on a frame boundary (or `--duration` elapsed, or a stop was asked).
    Clean,
    /// The source failed: its error, whole (shared, so the end can be read by every taker).
    Error(std::sync::Arc<crate::source::SourceError>),
}

/// What [`FrameSlot::take`] found.
#[derive(Debug)]
pub enum Take {
    Frame(Frame),
    Timeout,
    Ended(End),
}

struct Inner {
    ready: Option<Frame>,
    free: Vec<Frame>,
    counters: Counters,
    end: Option<End>,
}

/// One-frame mailbox with a recycled buffer pool.
pub struct FrameSlot {
    inner: Mutex<Inner>,
    cv: Condvar,
}

/// Buffers in circulation: one being filled, one waiting, one being inferred.
const BUFFERS: usize = 3;

impl FrameSlot {
    /// A slot whose buffers can hold `width x height` frames of any layout (3 bytes a pixel, as
    /// RGB) without growing. Only the bytes a frame uses are ever touched.
    pub fn new(width: u32, height: u32) -> FrameSlot {
        let bytes = width as usize * height as usize * 3;
        let free = (0..BUFFERS).map(|_| Frame::with_capacity(bytes)).collect();
        FrameSlot {
            inner: Mutex::new(Inner {
                ready: None,
                free,
                counters: Counters::default(),
                end: None,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain counters and buffers: still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An empty buffer for the capture thread to fill.
    pub fn buffer(&self) -> Frame {
        self.lock().free.pop().unwrap_or_default()
    }

    /// Publishes a captured frame, stamping `ready_at` (the end of its `capture` stage), and
    /// returns the buffer to fill next (the frame it replaced, counted as dropped, or a free one).
    pub fn publish(&self, mut frame: Frame) -> Frame {
        frame.ready_at = crate::time::MonoTime::now();
        let mut g = self.lock();
        g.counters.captured += 1;
        g.counters.in_flight += 1;
        let next = match g.ready.replace(frame) {
            Some(stale) => {
                g.counters.dropped += 1;
                g.counters.in_flight -= 1;
                stale
            }
            None => g.free.pop().unwrap_or_default(),
        };
        drop(g);
        self.cv.notify_one();
        next
    }

    /// Gives back the previous frame's buffer and waits up to `timeout` for the next frame.
    pub fn take(&self, done: Option<Frame>, timeout: Duration) -> Take {
        let mut g = self.lock();
        if let Some(f) = done {
            g.free.push(f);
        }
        if g.ready.is_none() && g.end.is_none() {
            g = self
                .cv
                .wait_timeout_while(g, timeout, |i| i.ready.is_none() && i.end.is_none())
                .map_or_else(|p| p.into_inner().0, |r| r.0);
        }
        if let Some(f) = g.ready.take() {
            return Take::Frame(f);
        }
        match &g.end {
            Some(e) => Take::Ended(e.clone()),
            None => Take::Timeout,
        }
    }

    /// Records how a taken frame ended.
    pub fn finish(&self, outcome: Outcome) {
        let mut g = self.lock();
        let c = &mut g.counters;
        c.in_flight = c.in_flight.saturating_sub(1);
        match outcome {
            Outcome::OnTime => c.processed += 1,
            Outcome::Late => {
                c.processed += 1;
                c.missed_deadline += 1;
            }
            Outcome::Cancelled => c.cancelled += 1,
            Outcome::Failed => {
                c.dropped += 1;
                c.failed += 1;
            }
            Outcome::NoModel | Outcome::Skipped => c.dropped += 1,
        }
    }

    /// Marks the end of the stream; a frame still waiting is delivered first. The first end wins.
    pub fn end(&self, end: End) {
        let mut g = self.lock();
        if g.end.is_none() {
            g.end = Some(end);
        }
        drop(g);
        self.cv.notify_all();
    }

    /// A consistent copy of the counters.
    pub fn counters(&self) -> Counters {
        self.lock().counters
    }

    /// Whether the stream has ended, and how.
    pub fn ended(&self) -> Option<End> {
        self.lock().end.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64) -> Frame {
        Frame {
            seq,
            ..Frame::default()
        }
    }

    fn invariant(c: Counters) -> bool {
        c.captured == c.processed + c.dropped + c.cancelled + c.in_flight
    }

    #[test]
    fn newest_frame_wins_and_replaced_ones_count_as_dropped() {
        let slot = FrameSlot::new(4, 4);
        slot.publish(frame(1));
        slot.publish(frame(2));
        slot.publish(frame(3));
        let c = slot.counters();
        assert_eq!((c.captured, c.dropped, c.in_flight), (3, 2, 1));
        assert!(invariant(c));
        match slot.take(None, Duration::from_millis(1)) {
            Take::Frame(f) => assert_eq!(f.seq, 3),
            other => panic!("expected a frame, got {other:?}"),
        }
        slot.finish(Outcome::Late);
        let c = slot.counters();
        assert_eq!((c.processed, c.missed_deadline, c.in_flight), (1, 1, 0));
        assert!(invariant(c));
    }

    #[test]
    fn timeout_then_end_after_pending_frame() {
        let slot = FrameSlot::new(2, 2);
        assert!(matches!(
            slot.take(None, Duration::from_millis(5)),
            Take::Timeout
        ));
        slot.publish(frame(1));
        slot.end(End::Clean);
        let Take::Frame(f) = slot.take(None, Duration::from_millis(5)) else {
            panic!("pending frame first")
        };
        slot.finish(Outcome::OnTime);
        assert!(matches!(
            slot.take(Some(f), Duration::from_millis(5)),
            Take::Ended(End::Clean)
        ));
        slot.finish(Outcome::Cancelled); // accounted even after the end
        assert!(slot.counters().cancelled == 1);
    }

    #[test]
    fn buffers_circulate_without_new_ones() {
        let slot = FrameSlot::new(8, 8);
        let mut buf = slot.buffer();
        let mut held: Option<Frame> = None;
        for i in 0..100u64 {
            buf.seq = i;
            buf = slot.publish(buf);
            if i % 3 == 0
                && let Take::Frame(f) = slot.take(held.take(), Duration::ZERO)
            {
                slot.finish(Outcome::OnTime);
                held = Some(f);
            }
            // Every buffer handed out came from the pool: capacity was reserved up front.
            assert!(
                buf.data.capacity() >= 8 * 8 * 3,
                "frame {i} got an unpooled buffer"
            );
        }
        assert!(invariant(slot.counters()));
    }
}
