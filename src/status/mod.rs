//! The status socket: how operators, scripts and Prometheus see inside the running daemon.
//!
//! It is plain HTTP/1.1 on a Unix socket so that `curl --unix-socket` works with no rtinfer
//! tooling installed, access is governed by file permissions instead of a network policy, and
//! nothing listens on the network unless asked (the optional TCP listener is read-only). The
//! transport is our own few hundred lines of std rather than an HTTP framework, because its
//! one job is to stay out of the pipeline's way: bounded threads, bounded reads, no panics on
//! any input.
//!
//! This module provides the transport ([`http`], [`server`]), the routing etiquette
//! ([`router`]), the client of `rtinfer status` ([`client`]) and its table ([`table`]). The JSON
//! content of each endpoint is built by the daemon's own [`Handler`].

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub mod client;
mod conn;
pub mod http;
mod ratelog;
pub mod router;
pub mod server;
pub mod socket_file;
pub mod stream;
pub mod table;

pub use http::{Request, Response};
pub use router::{Route, route};
pub use server::{Handler, Origin, StatusServer};

/// Failures of the status server and client. Every variant names the socket (or, for TCP, the
/// address); the underlying OS error, when there is one, is the error's `source()`.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot create directory {} for status socket {}", dir.display(), path.display())]
    CreateDir {
        path: PathBuf,
        dir: PathBuf,
        source: io::Error,
    },
    #[error("status socket {} is already in use: another rtinfer answers on it", path.display())]
    AlreadyInUse { path: PathBuf },
    #[error("refusing to replace {}: it exists and is not a socket", path.display())]
    NotASocket { path: PathBuf },
    #[error(
        "refusing to bind status socket {}: directory {} {reason}, so another user could replace \
         the socket (fix: chmod o-w,+t or chown that directory, or choose another path)",
        path.display(), dir.display()
    )]
    InsecureDirectory {
        path: PathBuf,
        dir: PathBuf,
        reason: String,
    },
    #[error("cannot inspect status socket {}", path.display())]
    Inspect { path: PathBuf, source: io::Error },
    #[error("cannot remove stale status socket {}", path.display())]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("cannot bind status socket {}", path.display())]
    Bind { path: PathBuf, source: io::Error },
    #[error("cannot set mode 0660 on status socket {}", path.display())]
    Permissions { path: PathBuf, source: io::Error },
    #[error("cannot bind status TCP listener on {addr}")]
    BindTcp { addr: String, source: io::Error },
    #[error("no daemon listening at {} (is rtinfer running?)", path.display())]
    NoDaemon { path: PathBuf },
    #[error("permission denied on status socket {} (is your user in the socket's group?)", path.display())]
    PermissionDenied { path: PathBuf },
    #[error("status socket {}: no complete answer within {timeout:?}", path.display())]
    Timeout { path: PathBuf, timeout: Duration },
    #[error("status socket {}: invalid HTTP response: {reason}", path.display())]
    BadResponse { path: PathBuf, reason: String },
    #[error("status socket {}: request path {request:?} must start with '/' and contain no spaces", path.display())]
    InvalidRequest { path: PathBuf, request: String },
    #[error("status socket {}: I/O error", path.display())]
    Io { path: PathBuf, source: io::Error },
}
