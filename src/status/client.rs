//! The client side of the status socket, for `rtinfer status`.
//!
//! Operators reach for `rtinfer status` when something is wrong, often when the daemon is not
//! running at all, so the failure messages matter more than the happy path: "nothing listens
//! here", "you may not connect" and "it did not answer in time" are told apart, each naming the
//! socket. One request, `Connection: close`, read to the end: no keep-alive, no chunking, which
//! is all our own server ever speaks.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::StatusError;

/// Largest response accepted (a `/status` document is a few KiB).
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// `GET path` over the Unix socket at `socket`; returns the status code and the body. The whole
/// exchange must complete within `timeout`.
pub fn get(socket: &Path, path: &str, timeout: Duration) -> Result<(u16, String), StatusError> {
    request(socket, "GET", path, timeout)
}

/// `POST path` with an empty body (e.g. `/models/NAME/activate`).
pub fn post(socket: &Path, path: &str, timeout: Duration) -> Result<(u16, String), StatusError> {
    request(socket, "POST", path, timeout)
}

fn request(
    socket: &Path,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), StatusError> {
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StatusError::InvalidRequest {
            path: socket.into(),
            request: path.into(),
        });
    }
    let timeout = timeout.max(Duration::from_millis(1));
    let deadline = Instant::now() + timeout;
    let io_err = |source: io::Error| classify(socket, timeout, source);
    let mut stream = UnixStream::connect(socket).map_err(io_err)?;
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    let length = if method == "POST" {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    let req =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{length}Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).map_err(io_err)?;
    let raw = read_all(&mut stream, deadline).map_err(io_err)?;
    parse_response(&raw).map_err(|reason| StatusError::BadResponse {
        path: socket.into(),
        reason,
    })
}

/// Maps connect and I/O failures to the errors an operator can act on.
fn classify(socket: &Path, timeout: Duration, source: io::Error) -> StatusError {
    let path = socket.into();
    match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            StatusError::NoDaemon { path }
        }
        io::ErrorKind::PermissionDenied => StatusError::PermissionDenied { path },
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            StatusError::Timeout { path, timeout }
        }
        _ => StatusError::Io { path, source },
    }
}

/// Reads until EOF (the server closes), bounded by `deadline` and [`MAX_RESPONSE`].
fn read_all(stream: &mut UnixStream, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) if out.len() + n > MAX_RESPONSE => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "response larger than 16 MiB",
                ));
            }
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// `HTTP/1.x NNN reason` + headers + body (trimmed to `Content-Length` when given).
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no complete header in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "header is not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = parse_status_line(status_line)?;
    let mut body = &raw[end + 4..];
    for (name, value) in lines.filter_map(|l| l.split_once(':')) {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked transfer encoding is not supported".into());
        }
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .trim()
                .parse()
                .map_err(|_| format!("bad Content-Length {value:?}"))?;
            if n > body.len() {
                return Err(format!("truncated body: {} of {n} bytes", body.len()));
            }
            body = &body[..n];
        }
    }
    let body = String::from_utf8(body.to_vec()).map_err(|_| "body is not UTF-8".to_string())?;
    Ok((status, body))
}

fn parse_status_line(line: &str) -> Result<u16, String> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!("bad status line {line:?}"));
    }
    code.parse()
        .map_err(|_| format!("bad status code in {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_response_and_honours_content_length() {
        let raw =
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}junk";
        assert_eq!(parse_response(raw), Ok((200, "{}".to_string())));
    }

    #[test]
    fn rejects_bad_responses() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").is_err());
    }
}
