//! The status listener: one poll loop holding every connection, a few handler threads.
//!
//! The status server must never be able to hurt the pipeline, and must never be hurt by its
//! peers. Connections are non-blocking entries in one `poll(2)` loop ([`super::conn`]), so a
//! client that connects and says nothing, or dribbles a byte at a time, costs a buffer, not a
//! thread, and is dropped when its deadline (the whole request, default 2 s) passes. Complete
//! requests go to a small pool of handler threads (building `/status` takes locks the stats
//! thread also takes; the loop itself never waits on them), and answers come back to the loop to
//! be written without blocking, the client again having its 2 s to take them. A handler gets
//! 30 s (a busy board is slow, not broken) before its client is told 500. The handler threads
//! run at the loader's lower priority (nice 10), so a crowd of pollers takes CPU time from the
//! pipeline last; the loop itself (syscalls only) keeps the normal one.
//!
//! Up to `max_connections` (default 64) connections are served at once, enough for a fleet's
//! scrapers and dashboards. Beyond that a connection is still accepted and its request read, then
//! answered `429 Too Many Requests` with `Retry-After: 1`: a clean refusal, never a reset, and
//! never the 503 that `/healthz` uses for "unhealthy". Only when as many refused connections are
//! open again does the loop stop accepting for a moment (new peers then wait in the kernel's
//! backlog, they are not reset). Bad requests are answered 400, a request not received by the
//! deadline 408, all without reaching the handler; a panicking handler becomes a 500.
//!
//! The Unix socket is the control plane (mode 0660: the owner and the service's group; see
//! [`super::socket_file`] for the directory check and the periodic re-check of the path). The
//! optional TCP listener is an observation port only: GET `/`, `/status`, `/metrics`, `/healthz`,
//! `/results`;
//! everything else is refused here, before the handler sees it.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::StatusError;
use super::conn::{Conn, Input, Phase, Stream};
use super::http::{Limits, Request, Response};
use super::ratelog::RateLimitedLog;
use super::socket_file::{self, PathState, SocketFile};

/// Where a request arrived; handlers may refuse control operations from [`Origin::Tcp`]
/// (the server already limits TCP to read-only GETs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Unix,
    Tcp,
}

/// Builds the answer to one request. Called on a handler thread, possibly concurrently.
/// A HEAD request reaches the handler as GET; the server drops the body when answering.
pub trait Handler: Send + Sync {
    fn handle(&self, req: &Request, origin: Origin) -> Response;
}

impl<F> Handler for F
where
    F: Fn(&Request, Origin) -> Response + Send + Sync,
{
    fn handle(&self, req: &Request, origin: Origin) -> Response {
        self(req, origin)
    }
}

/// The only paths the TCP listener serves.
pub const TCP_PATHS: [&str; 5] = ["/", "/status", "/metrics", "/healthz", "/results"];
/// Connections served at once by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Default time a client has to send its request, and again to take the answer.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(2);
/// Default time a handler has to answer before its client gets a 500.
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(30);
/// The `Retry-After` of a 429, in seconds.
pub const RETRY_AFTER_S: u32 = 1;

/// Longest sleep of the poll loop; bounds the reaction to `stop`.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Handler threads.
const WORKERS: usize = 4;
/// How often the socket path is checked for removal or replacement.
const PATH_CHECK: Duration = Duration::from_secs(1);
/// Accepts per loop turn, so a connection flood cannot starve the connections already held.
const ACCEPT_BURST: usize = 64;

/// A bound, not yet serving, status listener.
#[derive(Debug)]
pub struct StatusServer {
    listener: Listener,
    socket_file: Option<SocketFile>,
    deadline: Duration,
    handler_timeout: Duration,
    max_connections: usize,
    path_check: Duration,
    limits: Limits,
}

#[derive(Debug)]
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
        }
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Unix(l) => l.set_nonblocking(true),
            Listener::Tcp(l) => l.set_nonblocking(true),
        }
    }
}

impl StatusServer {
    /// Binds the Unix socket at `path` with mode 0660, creating the parent directory if
    /// missing. A directory another user could change is [`StatusError::InsecureDirectory`]; a
    /// stale socket (nobody answers) is replaced; a live one is [`StatusError::AlreadyInUse`];
    /// anything that is not a socket is left alone and refused.
    pub fn bind_unix(path: &Path) -> Result<StatusServer, StatusError> {
        let (listener, file) = socket_file::bind(path)?;
        log::info!("status socket listening at {}", path.display());
        Ok(StatusServer::new(Listener::Unix(listener), Some(file)))
    }

    /// Binds a read-only TCP listener (GET `/`, `/status`, `/metrics`, `/healthz`, `/results`). Port 0
    /// picks a free port; see [`StatusServer::tcp_addr`].
    pub fn bind_tcp(addr: SocketAddr) -> Result<StatusServer, StatusError> {
        let listener = TcpListener::bind(addr).map_err(|source| StatusError::BindTcp {
            addr: addr.to_string(),
            source,
        })?;
        log::info!("read-only status listener on tcp://{addr}");
        Ok(StatusServer::new(Listener::Tcp(listener), None))
    }

    fn new(listener: Listener, socket_file: Option<SocketFile>) -> StatusServer {
        StatusServer {
            listener,
            socket_file,
            deadline: DEFAULT_DEADLINE,
            handler_timeout: DEFAULT_HANDLER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            path_check: PATH_CHECK,
            limits: Limits {
                total_time: DEFAULT_DEADLINE,
                ..Limits::default()
            },
        }
    }

    /// The time a client has to send its whole request, and again to take the whole answer
    /// (default 2 s); a peer still sending at the deadline gets a 408 and is dropped.
    pub fn with_io_timeout(mut self, timeout: Duration) -> StatusServer {
        self.deadline = timeout.max(Duration::from_millis(1));
        self.limits.total_time = self.deadline;
        self
    }

    /// The time a handler has to answer (default 30 s) before its client gets a 500.
    pub fn with_handler_timeout(mut self, timeout: Duration) -> StatusServer {
        self.handler_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Connections served at once (default 64); more are answered 429 with `Retry-After`.
    pub fn with_max_connections(mut self, max: usize) -> StatusServer {
        self.max_connections = max.max(1);
        self
    }

    /// How often the Unix socket's path is checked for removal or replacement (default 1 s).
    pub fn with_path_check_interval(mut self, every: Duration) -> StatusServer {
        self.path_check = every.max(Duration::from_millis(10));
        self
    }

    /// The socket path for a Unix listener.
    pub fn socket_path(&self) -> Option<&Path> {
        self.socket_file.as_ref().map(|f| f.path.as_path())
    }

    /// The bound address of a TCP listener.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(_) => None,
        }
    }

    fn origin(&self) -> Origin {
        match self.listener {
            Listener::Unix(_) => Origin::Unix,
            Listener::Tcp(_) => Origin::Tcp,
        }
    }

    /// Starts the poll loop and its handler threads. The loop returns within ~20 ms of `stop`
    /// becoming true, removing the socket file; a handler still running finishes on its own.
    pub fn spawn(
        self,
        handler: Arc<dyn Handler>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<JoinHandle<()>> {
        self.listener.set_nonblocking()?;
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let wake_tx = Arc::new(wake_tx);
        let log = Arc::new(RateLimitedLog::default());
        for _ in 0..WORKERS {
            let worker = Worker {
                jobs: Arc::clone(&job_rx),
                done: done_tx.clone(),
                wake: Arc::clone(&wake_tx),
                handler: Arc::clone(&handler),
                log: Arc::clone(&log),
            };
            thread::Builder::new()
                .name("rtinfer-status-worker".into())
                .spawn(move || worker.run())?;
        }
        let event_loop = Loop {
            waker: Arc::clone(&wake_tx),
            server: self,
            conns: HashMap::new(),
            next_id: 0,
            jobs: job_tx,
            done: done_rx,
            wake: wake_rx,
            log,
            accept_pause_until: None,
        };
        thread::Builder::new()
            .name("rtinfer-status".into())
            .spawn(move || event_loop.run(&stop))
    }
}

/// A complete request for a handler thread.
struct Job {
    id: u64,
    req: Request,
    origin: Origin,
}

/// A handler's answer, back to the loop.
struct Done {
    id: u64,
    resp: Response,
}

struct Worker {
    jobs: Arc<Mutex<Receiver<Job>>>,
    done: Sender<Done>,
    wake: Arc<UnixStream>,
    handler: Arc<dyn Handler>,
    log: Arc<RateLimitedLog>,
}

impl Worker {
    fn run(self) {
        // Status answers are never urgent next to a frame: on a 2-core board the pipeline must
        // win the CPU from fifty pollers.
        crate::rt::run_in_background();
        loop {
            let job = {
                let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
                jobs.recv()
            };
            let Ok(job) = job else {
                return; // the loop ended
            };
            let resp = call(self.handler.as_ref(), &job.req, job.origin, &self.log);
            if self.done.send(Done { id: job.id, resp }).is_err() {
                return;
            }
            // One byte wakes the loop; a full pipe means a wake-up is already pending.
            let _ = (&*self.wake).write(&[1]);
        }
    }
}

/// Runs the handler; a panic inside it becomes a 500 instead of a lost answer.
fn call(handler: &dyn Handler, req: &Request, origin: Origin, log: &RateLimitedLog) -> Response {
    match catch_unwind(AssertUnwindSafe(|| handler.handle(req, origin))) {
        Ok(resp) => resp,
        Err(_) => {
            let msg = format_args!("handler panicked on {} {}", req.method, req.path);
            log.log(log::Level::Error, "panic", msg);
            Response::error(500, "internal error")
        }
    }
}

/// The TCP listener's read-only rule; `None` when the request may reach the handler.
fn tcp_policy(req: &Request) -> Option<Response> {
    if req.method != "GET" {
        let msg = "the TCP listener is read-only (GET /, /status, /metrics, /healthz, /results); \
                   use the Unix socket";
        return Some(Response::error(403, msg));
    }
    if !TCP_PATHS.contains(&req.path.as_str()) {
        return Some(Response::not_found(&req.path));
    }
    None
}

/// The answer to a request over the connection cap.
pub fn too_many_requests(max: usize) -> Response {
    Response::error(
        429,
        &format!("more than {max} concurrent status connections; retry after {RETRY_AFTER_S} s"),
    )
    .with_header("Retry-After", &RETRY_AFTER_S.to_string())
}

/// The poll loop's state.
struct Loop {
    server: StatusServer,
    conns: HashMap<u64, Conn>,
    next_id: u64,
    jobs: Sender<Job>,
    done: Receiver<Done>,
    wake: UnixStream,
    /// The wake-up socket's sending end, handed to streaming feeds.
    waker: Arc<UnixStream>,
    log: Arc<RateLimitedLog>,
    /// Set after an accept error (e.g. out of file descriptors) so the loop does not spin.
    accept_pause_until: Option<Instant>,
}

/// A request being handled: the HEAD flag travels with the connection id.
const HEAD_BIT: u64 = 1 << 63;

impl Loop {
    fn run(mut self, stop: &AtomicBool) {
        let mut next_path_check = Instant::now() + self.server.path_check;
        while !stop.load(Ordering::Relaxed) {
            self.turn();
            let now = Instant::now();
            if now >= next_path_check {
                self.check_socket_path();
                next_path_check = now + self.server.path_check;
            }
        }
        log::debug!("status listener stopping");
        // `self.server.socket_file` drops here and removes the socket (if still ours); the
        // job channel closes, so idle handler threads end.
    }

    /// One poll and everything it made ready.
    fn turn(&mut self) {
        let now = Instant::now();
        let accepting = self.polling_conns() < 2 * self.server.max_connections
            && self.accept_pause_until.is_none_or(|t| now >= t);
        let wait = self
            .conns
            .values()
            .map(Conn::wake_at)
            .min()
            .map_or(POLL_INTERVAL, |t| {
                t.saturating_duration_since(now).min(POLL_INTERVAL)
            });
        let (ready, wake_ready, listen_ready) = {
            let mut fds = Vec::with_capacity(self.conns.len() + 2);
            let mut ids = Vec::with_capacity(self.conns.len());
            fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
            let listener_fd = match &self.server.listener {
                Listener::Unix(l) => l.as_fd(),
                Listener::Tcp(l) => l.as_fd(),
            };
            if accepting {
                fds.push(PollFd::new(listener_fd, PollFlags::POLLIN));
            }
            for (id, c) in &self.conns {
                if let Some(events) = c.interest() {
                    fds.push(PollFd::new(c.stream.as_fd(), events));
                    ids.push(*id);
                }
            }
            let ms = u16::try_from(wait.as_millis().max(1)).unwrap_or(u16::MAX);
            if let Err(e) = poll(&mut fds, PollTimeout::from(ms))
                && e != nix::errno::Errno::EINTR
            {
                self.log.log(
                    log::Level::Warn,
                    "poll",
                    format_args!("status poll failed: {e}"),
                );
                thread::sleep(POLL_INTERVAL);
                return;
            }
            let fired = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            let wake_ready = fired(&fds[0]);
            let first_conn = if accepting { 2 } else { 1 };
            let listen_ready = accepting && fired(&fds[1]);
            let ready: Vec<u64> = fds[first_conn..]
                .iter()
                .zip(&ids)
                .filter(|(fd, _)| fired(fd))
                .map(|(_, id)| *id)
                .collect();
            (ready, wake_ready, listen_ready)
        };
        if wake_ready {
            let mut sink = [0u8; 64];
            while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        }
        while let Ok(done) = self.done.try_recv() {
            let head_only = done.id & HEAD_BIT != 0;
            if let Some(c) = self.conns.get_mut(&(done.id & !HEAD_BIT))
                && c.phase == Phase::Handling
            {
                c.respond(&done.resp, head_only);
                if let Some(f) = &c.feed {
                    f.set_waker(Arc::clone(&self.waker));
                }
            }
        }
        for id in ready {
            self.step(id);
        }
        if listen_ready {
            self.accept();
        }
        self.expire();
    }

    /// Connections held for one exchange (served, refused or draining): what the accept limit
    /// counts. Streaming subscribers are the daemon's to cap.
    fn polling_conns(&self) -> usize {
        self.conns
            .values()
            .filter(|c| c.phase != Phase::Streaming)
            .count()
    }

    /// Reads or writes whatever connection `id` is ready for.
    fn step(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        match c.phase {
            Phase::Writing => c.write(),
            Phase::Streaming => {
                // Input is discarded; its end (or an error) ends the stream.
                let _ = c.read(&self.server.limits);
                if c.phase == Phase::Streaming {
                    c.stream_write();
                }
            }
            Phase::Reading | Phase::Draining => match c.read(&self.server.limits) {
                Input::Pending => {}
                Input::Bad(e) => match e.response() {
                    Some(resp) => {
                        self.log.log(
                            log::Level::Info,
                            e.kind(),
                            format_args!("bad request ({}): {e}", resp.status),
                        );
                        c.respond(&resp, false);
                    }
                    None => c.phase = Phase::Closed,
                },
                Input::Request(req) => self.dispatch(id, req),
            },
            Phase::Handling | Phase::Closed => {}
        }
        if self
            .conns
            .get(&id)
            .is_some_and(|c| c.phase == Phase::Closed)
        {
            self.conns.remove(&id);
        }
    }

    /// Answers a complete request: refusals here, everything else on a handler thread.
    fn dispatch(&mut self, id: u64, req: Request) {
        let origin = self.server.origin();
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let head_only = req.method == "HEAD";
        let req = if head_only {
            Request {
                method: "GET".into(),
                ..req
            }
        } else {
            req
        };
        if c.refused {
            c.respond(&too_many_requests(self.server.max_connections), head_only);
            return;
        }
        if origin == Origin::Tcp
            && let Some(resp) = tcp_policy(&req)
        {
            c.respond(&resp, head_only);
            return;
        }
        c.start_handling(self.server.handler_timeout);
        let tag = if head_only { id | HEAD_BIT } else { id };
        if self
            .jobs
            .send(Job {
                id: tag,
                req,
                origin,
            })
            .is_err()
        {
            c.respond(&Response::error(500, "internal error"), head_only);
        }
    }

    fn accept(&mut self) {
        let origin = self.server.origin();
        for _ in 0..ACCEPT_BURST {
            let stream = match self.server.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.log.log(
                        log::Level::Warn,
                        "accept",
                        format_args!("accept failed: {e}"),
                    );
                    self.accept_pause_until = Some(Instant::now() + POLL_INTERVAL);
                    return;
                }
            };
            let nonblocking = match &stream {
                Stream::Unix(s) => s.set_nonblocking(true),
                Stream::Tcp(s) => s.set_nonblocking(true),
            };
            if let Err(e) = nonblocking {
                self.log.log(
                    log::Level::Info,
                    "configure",
                    format_args!("dropping a connection: {e}"),
                );
                continue;
            }
            // A connection that has its answer and is only draining no longer counts: its
            // client may already be opening the next one. Nor does a streaming subscriber: the
            // daemon caps those on its own, so they never crowd out the polling clients.
            let served = self
                .conns
                .values()
                .filter(|c| !c.refused && !matches!(c.phase, Phase::Draining | Phase::Streaming))
                .count();
            let refused = served >= self.server.max_connections;
            if refused {
                self.log.log(
                    log::Level::Info,
                    "busy",
                    format_args!(
                        "over {} concurrent {origin:?} status connections: answering 429",
                        self.server.max_connections
                    ),
                );
            }
            self.conns.insert(
                self.next_id,
                Conn::new(stream, refused, self.server.deadline),
            );
            self.next_id = (self.next_id + 1) & !HEAD_BIT;
            if self.polling_conns() >= 2 * self.server.max_connections {
                return;
            }
        }
    }

    /// Ends lingers that are over and exchanges past their deadline.
    fn expire(&mut self) {
        let now = Instant::now();
        let log = &self.log;
        self.conns.retain(|_, c| {
            if c.wake_at() <= now
                && let Some(status) = c.expire(now)
            {
                let what = if c.feed.is_some() {
                    "a results subscriber took nothing for 30 s while records waited; closed"
                } else {
                    "a status connection passed its deadline"
                };
                log.log(
                    log::Level::Info,
                    "deadline",
                    format_args!("{what} (answered {status})"),
                );
            }
            c.phase != Phase::Closed
        });
    }

    /// Binds again when the socket file was removed or replaced (see [`super::socket_file`]).
    fn check_socket_path(&mut self) {
        let Some(file) = &self.server.socket_file else {
            return;
        };
        let state = file.state();
        let path = file.path.clone();
        let shown = path.display();
        match &state {
            PathState::Ours => return,
            PathState::Missing => log::warn!("status socket {shown} was removed; binding it again"),
            PathState::OtherSocket { uid } => log::warn!(
                "status socket {shown} was replaced by another socket (owner uid {uid}); taking \
                 the path back"
            ),
            PathState::NotASocket => {
                self.log.log(
                    log::Level::Error,
                    "path",
                    format_args!(
                        "status socket {shown} was replaced by something that is not a socket; \
                         left alone, clients cannot reach this daemon there"
                    ),
                );
                return;
            }
            PathState::Unreadable(e) => {
                self.log.log(
                    log::Level::Warn,
                    "path",
                    format_args!("cannot check status socket {shown}: {e}"),
                );
                return;
            }
        }
        match socket_file::rebind(&path, &state) {
            Ok((listener, file)) => match listener.set_nonblocking(true) {
                Ok(()) => {
                    self.server.listener = Listener::Unix(listener);
                    self.server.socket_file = Some(file);
                    log::info!("status socket listening again at {shown}");
                }
                Err(e) => log::error!("status socket {shown}: {e}"),
            },
            Err(e) => self
                .log
                .log(log::Level::Error, "rebind", format_args!("{e}; retrying")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    #[test]
    fn tcp_policy_is_read_only() {
        assert!(tcp_policy(&req("GET", "/status")).is_none());
        assert!(tcp_policy(&req("GET", "/results")).is_none());
        assert!(tcp_policy(&req("GET", "/")).is_none());
        assert!(tcp_policy(&req("GET", "/healthz")).is_none());
        assert_eq!(
            tcp_policy(&req("POST", "/models/a/activate")).map(|r| r.status),
            Some(403)
        );
        assert_eq!(
            tcp_policy(&req("POST", "/status")).map(|r| r.status),
            Some(403)
        );
        assert_eq!(
            tcp_policy(&req("GET", "/models")).map(|r| r.status),
            Some(404)
        );
    }

    #[test]
    fn refusal_is_429_with_retry_after() {
        let r = too_many_requests(64);
        assert_eq!(r.status, 429);
        assert!(r.headers.contains(&("Retry-After".into(), "1".into())));
        let mut out = Vec::new();
        r.write_to(&mut out, false).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
            "{text}"
        );
    }
}
