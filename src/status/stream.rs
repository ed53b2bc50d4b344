//! Streaming answers (`GET /results`): a connection that stays open and is fed records.
//!
//! The producer (the daemon's stats thread) must never wait for a subscriber, and a subscriber
//! must never cost the status server a thread. So each subscriber gets a [`Feed`]: a bounded
//! queue the producer pushes whole records into without blocking (a full queue loses the record
//! and counts it), and the poll loop drains into the socket whenever it is writable. A subscriber
//! that stops reading thus only loses records; one that takes nothing for [`STALL`] is closed.
//! A streaming connection is exempt from the exchange deadline and does not count against the
//! polling clients' connection cap; the number of subscribers has its own cap (the daemon's).

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A subscriber that has taken no byte for this long while records wait is closed.
pub const STALL: Duration = Duration::from_secs(30);
/// Records queued per subscriber before new ones are lost.
pub const QUEUE: usize = 256;

/// One subscriber's queue, shared by the producer and the poll loop.
#[derive(Default)]
pub struct Feed {
    state: Mutex<FeedState>,
}

#[derive(Default)]
struct FeedState {
    queue: VecDeque<Vec<u8>>,
    /// Records delivered into the queue / lost because it was full.
    queued_total: u64,
    dropped: u64,
    /// The connection ended (peer gone, stalled, server stopped): the producer forgets it.
    closed: bool,
    /// The poll loop's wake-up socket, once the connection streams.
    waker: Option<Arc<UnixStream>>,
}

/// Counters of one feed, for `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedStats {
    pub delivered: u64,
    pub dropped: u64,
    pub queued: usize,
    pub closed: bool,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Feed({:?})", self.stats())
    }
}

/// Feeds compare by identity (a response carries one; two are the same only if shared).
impl PartialEq for Feed {
    fn eq(&self, other: &Feed) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Feed {}

impl Feed {
    pub fn new() -> Arc<Feed> {
        Arc::new(Feed::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one record without blocking; a full queue loses it (counted). Returns `false` once
    /// the connection has ended, so the producer can forget this feed.
    pub fn push(&self, record: &[u8]) -> bool {
        let waker = {
            let mut st = self.lock();
            if st.closed {
                return false;
            }
            if st.queue.len() >= QUEUE {
                st.dropped += 1;
                return true;
            }
            let was_empty = st.queue.is_empty();
            st.queue.push_back(record.to_vec());
            st.queued_total += 1;
            if was_empty { st.waker.clone() } else { None }
        };
        if let Some(w) = waker {
            // One byte wakes the loop; a full pipe means a wake-up is already pending.
            let _ = (&*w).write(&[1]);
        }
        true
    }

    /// Moves queued records into `out` (up to about `max` bytes).
    pub fn drain_into(&self, out: &mut Vec<u8>, max: usize) {
        let mut st = self.lock();
        while out.len() < max {
            let Some(r) = st.queue.pop_front() else {
                break;
            };
            out.extend_from_slice(&r);
        }
    }

    pub fn has_queued(&self) -> bool {
        !self.lock().queue.is_empty()
    }

    /// Marks the connection ended; later pushes return `false`.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.queue.clear();
        st.waker = None;
    }

    pub fn set_waker(&self, waker: Arc<UnixStream>) {
        self.lock().waker = Some(waker);
    }

    pub fn stats(&self) -> FeedStats {
        let st = self.lock();
        FeedStats {
            delivered: st.queued_total - st.queue.len() as u64,
            dropped: st.dropped,
            queued: st.queue.len(),
            closed: st.closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_loses_and_counts_and_a_closed_feed_refuses() {
        let f = Feed::new();
        for _ in 0..QUEUE + 10 {
            assert!(f.push(b"x\n"));
        }
        let s = f.stats();
        assert_eq!((s.queued, s.dropped, s.delivered), (QUEUE, 10, 0));
        let mut out = Vec::new();
        f.drain_into(&mut out, 4);
        assert_eq!(out, b"x\nx\n");
        assert_eq!(f.stats().delivered, 2);
        f.close();
        assert!(!f.push(b"y\n"));
        assert!(f.stats().closed);
    }
}
