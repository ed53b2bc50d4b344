//! The boxes of recent frames, handed from the pipeline thread to the stats thread beside the
//! records.
//!
//! A frame record is `Copy` and goes through a 4096-deep channel; carrying up to
//! [`MAX_DETECTIONS`] boxes inline would make every record (classifiers' too) 7 KB and the
//! channel and the stats thread's batch ~60 MB. Instead the pipeline copies a frame's kept boxes
//! into one slot of a small ring (a `try_lock`: it never waits; a slot the stats thread is
//! reading is skipped) and the record carries only their count. The stats thread reads the slot
//! back by (generation, seq); a slot overwritten because the stats thread fell more than
//! [`RING_SLOTS`] frames behind reads as lost, and the result says so instead of showing another
//! frame's boxes.

use std::sync::Mutex;

use super::detect::{Detection, MAX_DETECTIONS};

/// Frames whose boxes wait for the stats thread (~1 s at 60 FPS).
pub const RING_SLOTS: usize = 64;

#[derive(Debug)]
struct Slot {
    /// (generation, seq) of the frame whose boxes these are; (0, 0) when empty.
    key: (u32, u64),
    boxes: Vec<Detection>,
}

/// See the module docs. Its memory is reserved once ([`RING_SLOTS`] x [`MAX_DETECTIONS`] boxes).
#[derive(Debug)]
pub struct BoxRing {
    slots: Box<[Mutex<Slot>]>,
}

impl Default for BoxRing {
    fn default() -> Self {
        BoxRing::new()
    }
}

impl BoxRing {
    pub fn new() -> BoxRing {
        BoxRing {
            slots: (0..RING_SLOTS)
                .map(|_| {
                    Mutex::new(Slot {
                        key: (0, 0),
                        boxes: Vec::with_capacity(MAX_DETECTIONS),
                    })
                })
                .collect(),
        }
    }

    /// On the pipeline thread: keeps `boxes` for frame `seq` of generation `generation`. Never
    /// waits and never allocates; returns false when the slot was busy (the boxes read as lost).
    pub fn publish(&self, generation: u32, seq: u64, boxes: &[Detection]) -> bool {
        let Ok(mut s) = self.slots[seq as usize % RING_SLOTS].try_lock() else {
            return false;
        };
        let n = boxes.len().min(s.boxes.capacity());
        s.boxes.clear();
        s.boxes.extend_from_slice(&boxes[..n]);
        s.key = (generation, seq);
        true
    }

    /// On the stats thread: appends frame `seq`'s boxes to `out`; false when they were lost.
    pub fn read(&self, generation: u32, seq: u64, out: &mut Vec<Detection>) -> bool {
        let s = self.slots[seq as usize % RING_SLOTS]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if s.key != (generation, seq) {
            return false;
        }
        out.extend_from_slice(&s.boxes);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_come_back_by_frame_and_an_overwritten_slot_reads_as_lost() {
        let ring = BoxRing::new();
        let d = |s: f32| Detection {
            score: s,
            ..Default::default()
        };
        assert!(ring.publish(1, 5, &[d(0.9), d(0.5)]));
        let mut out = Vec::new();
        assert!(ring.read(1, 5, &mut out));
        assert_eq!(out, [d(0.9), d(0.5)]);
        // Another generation's frame 5, and frame 5 + RING_SLOTS, are not frame 5.
        out.clear();
        assert!(!ring.read(2, 5, &mut out));
        assert!(ring.publish(1, 5 + RING_SLOTS as u64, &[d(0.1)]));
        assert!(!ring.read(1, 5, &mut out));
        assert!(out.is_empty());
        // A slot being read is skipped, not waited for.
        let g = ring.slots[7].lock().unwrap();
        assert!(!ring.publish(1, 7, &[d(0.3)]));
        drop(g);
        assert!(!ring.read(1, 7, &mut out));
    }
}
