//! The status listener: one accept thread, one short-lived thread per connection.
//!
//! The status server must never be able to hurt the pipeline, and must never be hurt by its
//! peers: a client that connects and says nothing, a flood of connections, garbage bytes or a
//! panicking handler each cost at most one bounded connection thread, and over the connection
//! cap new peers get an immediate 503 instead of a queue. The accept loop is non-blocking and
//! polls a stop flag, so shutdown needs no self-connection trick and the socket file is removed
//! on the way out (only if it is still the one we created).
//!
//! The Unix socket is the control plane (mode 0660: the owner and the service's group). The
//! optional TCP listener is an observation port only: GET `/status`, `/metrics`, `/healthz`;
//! everything else is refused here, before the handler sees it.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::StatusError;
use super::http::{self, Limits, Request, Response};

/// Where a request arrived; handlers may refuse control operations from [`Origin::Tcp`]
/// (the server already limits TCP to read-only GETs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Unix,
    Tcp,
}

/// Builds the answer to one request. Called on a connection thread, possibly concurrently.
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
pub const TCP_PATHS: [&str; 3] = ["/status", "/metrics", "/healthz"];

/// How long the accept loop sleeps when no peer is waiting; bounds the reaction to `stop`.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// How long a connection is kept open after an error reply to let the peer finish sending
/// (closing with unread input makes TCP reset the connection, losing our reply).
const LINGER: Duration = Duration::from_millis(100);
/// Minimum interval between two log lines of the same failure kind.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// A bound, not yet serving, status listener.
#[derive(Debug)]
pub struct StatusServer {
    listener: Listener,
    socket_file: Option<SocketFile>,
    io_timeout: Duration,
    max_connections: usize,
    limits: Limits,
}

#[derive(Debug)]
enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl StatusServer {
    /// Binds the Unix socket at `path` with mode 0660, creating the parent directory if
    /// missing. A stale socket (nobody answers) is replaced; a live one is
    /// [`StatusError::AlreadyInUse`]; anything that is not a socket is left alone and refused.
    pub fn bind_unix(path: &Path) -> Result<StatusServer, StatusError> {
        create_parent(path)?;
        clear_stale(path)?;
        let listener = UnixListener::bind(path).map_err(|source| match source.kind() {
            io::ErrorKind::AddrInUse => StatusError::AlreadyInUse { path: path.into() },
            _ => StatusError::Bind {
                path: path.into(),
                source,
            },
        })?;
        let socket_file = SocketFile::new(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o660)).map_err(|source| {
            StatusError::Permissions {
                path: path.into(),
                source,
            }
        })?;
        log::info!("status socket listening at {}", path.display());
        Ok(StatusServer::new(
            Listener::Unix(listener),
            Some(socket_file),
        ))
    }

    /// Binds a read-only TCP listener (GET `/status`, `/metrics`, `/healthz` only). Port 0
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
            io_timeout: Duration::from_secs(2),
            max_connections: 8,
            limits: Limits::default(),
        }
    }

    /// Read/write timeout per connection, also the time allowed to receive a whole request
    /// (default 2 s).
    pub fn with_io_timeout(mut self, timeout: Duration) -> StatusServer {
        self.io_timeout = timeout.max(Duration::from_millis(1));
        self.limits.total_time = self.io_timeout;
        self
    }

    /// Connections served at once (default 8); peers over the cap get a 503.
    pub fn with_max_connections(mut self, max: usize) -> StatusServer {
        self.max_connections = max.max(1);
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

    /// Starts the accept loop on its own thread. It returns within ~`ACCEPT_POLL` of `stop`
    /// becoming true, removing the socket file; connection threads still running finish on
    /// their own within the I/O timeout.
    pub fn spawn(
        self,
        handler: Arc<dyn Handler>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<JoinHandle<()>> {
        match &self.listener {
            Listener::Unix(l) => l.set_nonblocking(true)?,
            Listener::Tcp(l) => l.set_nonblocking(true)?,
        }
        thread::Builder::new()
            .name("rtinfer-status".into())
            .spawn(move || self.accept_loop(handler, stop))
    }

    fn accept_loop(self, handler: Arc<dyn Handler>, stop: Arc<AtomicBool>) {
        let shared = Arc::new(Shared {
            active: AtomicUsize::new(0),
            log: RateLimitedLog::default(),
            io_timeout: self.io_timeout,
            limits: self.limits,
        });
        while !stop.load(Ordering::Relaxed) {
            match self.accept() {
                Ok(conn) => self.dispatch(conn, &handler, &shared),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    shared.log.log(
                        log::Level::Warn,
                        "accept",
                        format_args!("accept failed: {e}"),
                    );
                    thread::sleep(ACCEPT_POLL);
                }
            }
        }
        log::debug!("status listener stopping");
        // `self.socket_file` drops here and removes the socket.
    }

    fn accept(&self) -> io::Result<Conn> {
        match &self.listener {
            Listener::Unix(l) => l.accept().map(|(s, _)| Conn::Unix(s)),
            Listener::Tcp(l) => l.accept().map(|(s, _)| Conn::Tcp(s)),
        }
    }

    fn origin(&self) -> Origin {
        match self.listener {
            Listener::Unix(_) => Origin::Unix,
            Listener::Tcp(_) => Origin::Tcp,
        }
    }

    /// Hands `conn` to a new thread, or answers 503 right here when at the cap.
    fn dispatch(&self, conn: Conn, handler: &Arc<dyn Handler>, shared: &Arc<Shared>) {
        if let Err(e) = conn.configure(shared.io_timeout) {
            shared.log.log(
                log::Level::Info,
                "configure",
                format_args!("dropping a connection: {e}"),
            );
            return;
        }
        // Only this thread increments `active`, so check-then-add cannot overshoot the cap.
        if shared.active.load(Ordering::Acquire) >= self.max_connections {
            shared.log.log(
                log::Level::Info,
                "busy",
                format_args!(
                    "over {} concurrent connections: answering 503",
                    self.max_connections
                ),
            );
            reject_busy(conn);
            return;
        }
        shared.active.fetch_add(1, Ordering::AcqRel);
        let slot = ActiveSlot(Arc::clone(shared));
        let handler = Arc::clone(handler);
        let origin = self.origin();
        let spawned = thread::Builder::new()
            .name("rtinfer-status-conn".into())
            .spawn(move || serve(conn, origin, handler.as_ref(), &slot.0));
        if let Err(e) = spawned {
            // The closure (and its slot) was dropped, so the count is already released.
            shared.log.log(
                log::Level::Warn,
                "spawn",
                format_args!("cannot start a connection thread: {e}"),
            );
        }
    }
}

/// State shared by the accept loop and its connection threads.
struct Shared {
    active: AtomicUsize,
    log: RateLimitedLog,
    io_timeout: Duration,
    limits: Limits,
}

/// Releases one connection slot when the connection thread ends, however it ends.
struct ActiveSlot(Arc<Shared>);

impl Drop for ActiveSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves exactly one request on `conn`.
fn serve(mut conn: Conn, origin: Origin, handler: &dyn Handler, shared: &Shared) {
    let req = match http::read_request(&mut conn, &shared.limits) {
        Ok(req) => req,
        Err(e) => return answer_parse_error(conn, &e, shared),
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
    let resp = match origin {
        Origin::Tcp => tcp_policy(&req).unwrap_or_else(|| call(handler, &req, origin, shared)),
        Origin::Unix => call(handler, &req, origin, shared),
    };
    if let Err(e) = resp.write_to(&mut conn, head_only) {
        shared.log.log(
            log::Level::Info,
            "write",
            format_args!("writing a response failed: {e}"),
        );
    }
    conn.shutdown();
}

fn answer_parse_error(mut conn: Conn, e: &http::ParseError, shared: &Shared) {
    let Some(resp) = e.response() else {
        log::debug!("connection ended without a request: {e}");
        return;
    };
    shared.log.log(
        log::Level::Info,
        e.kind(),
        format_args!("bad request ({}): {e}", resp.status),
    );
    if resp.write_to(&mut conn, false).is_ok() {
        conn.linger();
    }
}

/// Runs the handler; a panic inside it becomes a 500 instead of a dead thread without reply.
fn call(handler: &dyn Handler, req: &Request, origin: Origin, shared: &Shared) -> Response {
    match catch_unwind(AssertUnwindSafe(|| handler.handle(req, origin))) {
        Ok(resp) => resp,
        Err(_) => {
            let msg = format_args!("handler panicked on {} {}", req.method, req.path);
            shared.log.log(log::Level::Error, "panic", msg);
            Response::error(500, "internal error")
        }
    }
}

/// The TCP listener's read-only rule; `None` when the request may reach the handler.
fn tcp_policy(req: &Request) -> Option<Response> {
    if req.method != "GET" {
        let msg =
            "the TCP listener is read-only (GET /status, /metrics, /healthz); use the Unix socket";
        return Some(Response::error(403, msg));
    }
    if !TCP_PATHS.contains(&req.path.as_str()) {
        return Some(Response::not_found(&req.path));
    }
    None
}

fn reject_busy(mut conn: Conn) {
    // Short write timeout: the accept thread must not wait on this peer.
    conn.set_write_timeout(Duration::from_millis(50));
    let resp = Response::error(503, "too many concurrent status connections; retry");
    let _ = resp.write_to(&mut conn, false);
    conn.shutdown();
}

/// An accepted connection of either kind.
enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn configure(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Conn::Unix(s) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))
            }
            Conn::Tcp(s) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))
            }
        }
    }

    fn set_write_timeout(&self, timeout: Duration) {
        let _ = match self {
            Conn::Unix(s) => s.set_write_timeout(Some(timeout)),
            Conn::Tcp(s) => s.set_write_timeout(Some(timeout)),
        };
    }

    fn set_read_timeout(&self, timeout: Duration) {
        let _ = match self {
            Conn::Unix(s) => s.set_read_timeout(Some(timeout)),
            Conn::Tcp(s) => s.set_read_timeout(Some(timeout)),
        };
    }

    fn shutdown_how(&self, how: Shutdown) {
        // ENOTCONN when the peer is already gone: nothing left to do either way.
        let _ = match self {
            Conn::Unix(s) => s.shutdown(how),
            Conn::Tcp(s) => s.shutdown(how),
        };
    }

    fn shutdown(&self) {
        self.shutdown_how(Shutdown::Both);
    }

    /// Half-closes, then discards what the peer is still sending for a moment, so an error
    /// reply sent before the request was fully read is not destroyed by a TCP reset.
    fn linger(mut self) {
        self.shutdown_how(Shutdown::Write);
        self.set_read_timeout(LINGER);
        let until = Instant::now() + LINGER;
        let mut sink = [0u8; 4096];
        let mut left = 64 * 1024usize;
        while left > 0 && Instant::now() < until {
            match self.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
        }
    }
}

/// The socket file we created, identified by device and inode so shutdown never removes a
/// socket that a newer daemon has since bound at the same path.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    fn new(path: &Path) -> Result<SocketFile, StatusError> {
        let m = fs::symlink_metadata(path).map_err(|source| StatusError::Inspect {
            path: path.into(),
            source,
        })?;
        Ok(SocketFile {
            path: path.into(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino);
        if ours && let Err(e) = fs::remove_file(&self.path) {
            log::warn!("cannot remove status socket {}: {e}", self.path.display());
        }
    }
}

fn create_parent(path: &Path) -> Result<(), StatusError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => fs::create_dir_all(dir)
            .map_err(|source| StatusError::CreateDir {
                path: path.into(),
                dir: dir.into(),
                source,
            }),
        _ => Ok(()),
    }
}

/// Removes a socket file nobody listens on; refuses live sockets and non-sockets.
fn clear_stale(path: &Path) -> Result<(), StatusError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StatusError::Inspect {
                path: path.into(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(StatusError::NotASocket { path: path.into() });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(StatusError::AlreadyInUse { path: path.into() }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            fs::remove_file(path).map_err(|source| StatusError::RemoveStale {
                path: path.into(),
                source,
            })?;
            log::info!("removed stale status socket {}", path.display());
            Ok(())
        }
        Err(source) => Err(StatusError::Inspect {
            path: path.into(),
            source,
        }),
    }
}

/// At most one log line per failure kind per [`LOG_INTERVAL`], with a count of the lines held
/// back, so a misbehaving peer cannot flood the journal.
#[derive(Default)]
struct RateLimitedLog {
    kinds: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl RateLimitedLog {
    fn log(&self, level: log::Level, kind: &'static str, msg: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        let suppressed = {
            let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
            match kinds.get_mut(kind) {
                Some((last, held)) if now.duration_since(*last) < LOG_INTERVAL => {
                    *held += 1;
                    return;
                }
                Some((last, held)) => {
                    *last = now;
                    std::mem::take(held)
                }
                None => {
                    kinds.insert(kind, (now, 0));
                    0
                }
            }
        };
        if suppressed > 0 {
            log::log!(level, "{msg} ({suppressed} similar suppressed)");
        } else {
            log::log!(level, "{msg}");
        }
    }
}

impl std::fmt::Debug for RateLimitedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimitedLog")
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
}
