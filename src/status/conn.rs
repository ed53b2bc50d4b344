//! One status connection as a non-blocking state machine driven by the server's poll loop.
//!
//! A connection costs a few kilobytes of buffer, not a thread: a peer that connects and sends
//! nothing, or one byte a second, only holds an entry until its deadline, which bounds the whole
//! request (and, once the answer is ready, the whole answer), not each read. The time a handler
//! takes is the daemon's, not the client's: it has its own, longer bound. Every answer is followed by a half-close
//! and a short drain of whatever the peer still sends, so the reply is never destroyed by a reset
//! (closing a socket with unread input resets the connection, on TCP and on Unix sockets alike).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;

use super::http::{self, Limits, ParseError, Request, Response};
use super::stream::{self, Feed};

/// How long a connection is drained after its answer before it is closed anyway.
pub const LINGER: Duration = Duration::from_millis(100);
/// Most bytes read from one peer per wake-up, so one fast sender cannot starve the others.
const READ_BURST: usize = 16 * 1024;
/// Most bytes of records taken from a feed per write.
const STREAM_CHUNK: usize = 64 * 1024;

/// An accepted connection of either kind, non-blocking.
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn shutdown(&self, how: Shutdown) {
        // ENOTCONN when the peer is already gone: nothing left to do either way.
        let _ = match self {
            Stream::Unix(s) => s.shutdown(how),
            Stream::Tcp(s) => s.shutdown(how),
        };
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where a connection is in its one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Receiving the request.
    Reading,
    /// The request is with a handler thread.
    Handling,
    /// Sending the answer.
    Writing,
    /// Answer sent and write side closed; discarding what the peer still sends.
    Draining,
    /// A streaming answer: its head was sent, records follow as its feed receives them, until
    /// the peer closes or stops taking bytes for [`stream::STALL`].
    Streaming,
    /// Done: remove it.
    Closed,
}

/// What reading produced.
pub enum Input {
    /// Nothing complete yet (or draining).
    Pending,
    Request(Request),
    /// The request cannot be valid; answer with [`ParseError::response`] when there is one.
    Bad(ParseError),
}

pub struct Conn {
    pub stream: Stream,
    pub phase: Phase,
    /// Accepted over the connection cap: its request is read and answered 429.
    pub refused: bool,
    /// The end of the current phase: receiving the request, the handler's answer, or sending it.
    pub deadline: Instant,
    /// What the client gets to send its request, and again to take the answer.
    client_time: Duration,
    /// What the handler got, once it has the request (for the 500's text).
    handler_time: Duration,
    linger_until: Option<Instant>,
    buf: Vec<u8>,
    out: Vec<u8>,
    written: usize,
    /// The records of a streaming answer.
    pub feed: Option<Arc<Feed>>,
}

impl Conn {
    pub fn new(stream: Stream, refused: bool, client_time: Duration) -> Conn {
        Conn {
            stream,
            phase: Phase::Reading,
            refused,
            deadline: Instant::now() + client_time,
            client_time,
            handler_time: Duration::ZERO,
            linger_until: None,
            buf: Vec::new(),
            out: Vec::new(),
            written: 0,
            feed: None,
        }
    }

    /// The events to poll for, `None` while a handler works on the request.
    pub fn interest(&self) -> Option<PollFlags> {
        match self.phase {
            Phase::Reading | Phase::Draining => Some(PollFlags::POLLIN),
            Phase::Writing => Some(PollFlags::POLLOUT),
            Phase::Streaming if self.written < self.out.len() || self.has_queued() => {
                Some(PollFlags::POLLIN | PollFlags::POLLOUT)
            }
            Phase::Streaming => Some(PollFlags::POLLIN),
            Phase::Handling | Phase::Closed => None,
        }
    }

    /// When this connection next needs attention without any I/O.
    pub fn wake_at(&self) -> Instant {
        self.linger_until
            .map_or(self.deadline, |l| l.min(self.deadline))
    }

    /// Reads what is available: the request once complete, or (draining) discards input.
    pub fn read(&mut self, limits: &Limits) -> Input {
        let mut chunk = [0u8; 4096];
        let mut burst = 0;
        while burst < READ_BURST {
            match self.stream.read(&mut chunk) {
                Ok(0) => return self.eof(),
                Ok(n) => {
                    burst += n;
                    if matches!(self.phase, Phase::Draining | Phase::Streaming) {
                        continue;
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                    match http::parse(&self.buf, limits) {
                        Ok(None) => {}
                        Ok(Some(req)) => return Input::Request(req),
                        Err(e) => return Input::Bad(e),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.phase = Phase::Closed;
                    return Input::Bad(ParseError::Io(e));
                }
            }
        }
        Input::Pending
    }

    fn eof(&mut self) -> Input {
        match self.phase {
            Phase::Reading if self.buf.is_empty() => {
                self.phase = Phase::Closed;
                Input::Bad(ParseError::Empty)
            }
            // The peer half-closed mid-request: it may still read the answer.
            Phase::Reading => Input::Bad(ParseError::Truncated),
            _ => {
                self.phase = Phase::Closed;
                Input::Pending
            }
        }
    }

    /// The request went to a handler, which has `timeout` to answer.
    pub fn start_handling(&mut self, timeout: Duration) {
        self.phase = Phase::Handling;
        self.handler_time = timeout;
        self.deadline = Instant::now() + timeout;
    }

    /// Starts sending `resp` (without its body for HEAD) and sends what the socket takes now;
    /// the client has its time again to take it.
    pub fn respond(&mut self, resp: &Response, head_only: bool) {
        self.deadline = Instant::now() + self.client_time;
        self.out.clear();
        self.written = 0;
        if resp.write_to(&mut self.out, head_only).is_err() {
            self.phase = Phase::Closed;
            return;
        }
        self.buf = Vec::new();
        match &resp.stream {
            Some(feed) if !head_only => {
                self.feed = Some(Arc::clone(feed));
                self.phase = Phase::Streaming;
                self.deadline = Instant::now() + stream::STALL;
                self.stream_write();
            }
            Some(feed) => {
                feed.close();
                self.phase = Phase::Writing;
                self.write();
            }
            None => {
                self.phase = Phase::Writing;
                self.write();
            }
        }
    }

    fn has_queued(&self) -> bool {
        self.feed.as_ref().is_some_and(|f| f.has_queued())
    }

    /// Sends what is pending and what the feed has queued, as far as the socket takes it. Any
    /// progress, or nothing left to send, moves the stall deadline.
    pub fn stream_write(&mut self) {
        loop {
            if self.written >= self.out.len() {
                self.out.clear();
                self.written = 0;
                if let Some(f) = &self.feed {
                    f.drain_into(&mut self.out, STREAM_CHUNK);
                }
                if self.out.is_empty() {
                    self.deadline = Instant::now() + stream::STALL;
                    return;
                }
            }
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => {
                    self.phase = Phase::Closed;
                    return;
                }
                Ok(n) => {
                    self.written += n;
                    self.deadline = Instant::now() + stream::STALL;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.phase = Phase::Closed;
                    return;
                }
            }
        }
    }

    /// Sends more of the answer; after the last byte, half-closes and starts draining.
    pub fn write(&mut self) {
        while self.written < self.out.len() {
            match self.stream.write(&self.out[self.written..]) {
                Ok(0) => {
                    self.phase = Phase::Closed;
                    return;
                }
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.phase = Phase::Closed;
                    return;
                }
            }
        }
        self.out = Vec::new();
        self.stream.shutdown(Shutdown::Write);
        self.phase = Phase::Draining;
        self.linger_until = Some(Instant::now() + LINGER);
    }

    /// Called when [`Conn::wake_at`] has passed: ends a finished linger, or a connection past
    /// its deadline, telling a peer that is still sending or waiting why (best effort, one
    /// non-blocking write). Returns what was answered, for the log.
    pub fn expire(&mut self, now: Instant) -> Option<u16> {
        if self.phase == Phase::Draining {
            if now >= self.wake_at() {
                self.phase = Phase::Closed;
            }
            return None;
        }
        if now < self.deadline {
            return None;
        }
        if self.phase == Phase::Streaming {
            if self.written < self.out.len() || self.has_queued() {
                self.phase = Phase::Closed; // records wait and the peer took nothing: stalled
                return Some(200);
            }
            self.deadline = now + stream::STALL;
            return None;
        }
        let answer = match self.phase {
            Phase::Reading => Some(Response::error(
                408,
                &format!("request not received within {:?}", self.client_time),
            )),
            Phase::Handling => Some(Response::error(
                500,
                &format!("no answer from the daemon within {:?}", self.handler_time),
            )),
            _ => None,
        };
        self.phase = Phase::Closed;
        let resp = answer?;
        let mut bytes = Vec::new();
        if resp.write_to(&mut bytes, false).is_ok() {
            let _ = self.stream.write(&bytes);
        }
        Some(resp.status)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(f) = &self.feed {
            f.close();
        }
    }
}
