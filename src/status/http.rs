//! A deliberately small, strict HTTP/1.1 subset for the status socket.
//!
//! The status socket serves a handful of tiny JSON and text documents to `curl`, `rtinfer status`
//! and Prometheus. A general HTTP stack (hyper + tokio) would add dozens of crates to a daemon
//! that must stay small and auditable on an embedded board, so this module parses exactly one
//! request per connection, with hard limits on every dimension an untrusted peer controls (head
//! size, header count, body size, total read time). Anything that is not plainly HTTP/1.x is
//! answered with a 400 and a one-line JSON error instead of being guessed at: a lenient parser
//! is where request-smuggling and hang bugs live.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// Bounds applied while reading one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line plus headers, including the blank line.
    pub max_head: usize,
    /// Body size announced by `Content-Length`.
    pub max_body: usize,
    /// Header lines after the request line.
    pub max_headers: usize,
    /// Total time allowed to receive the whole request (a slow-drip client cannot keep a
    /// connection thread forever by sending one byte per read timeout).
    pub total_time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: 8 * 1024,
            max_body: 64 * 1024,
            max_headers: 64,
            total_time: Duration::from_secs(2),
        }
    }
}

/// One parsed request. Header names are kept as sent; look them up with [`Request::header`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// As sent, e.g. `GET` (methods are case-sensitive in HTTP).
    pub method: String,
    /// The path part of the target, still percent-encoded, always starting with `/`.
    pub path: String,
    /// What followed `?` in the target, if anything.
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of the first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read. [`ParseError::response`] turns it into what the peer gets.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The peer closed the connection before sending a single byte (a port probe, or a client
    /// that gave up): nothing to answer.
    #[error("connection closed before a request arrived")]
    Empty,
    #[error("connection closed in the middle of the request")]
    Truncated,
    #[error("request timed out")]
    Timeout,
    #[error("{0}")]
    Malformed(String),
    #[error("reading the request: {0}")]
    Io(#[source] io::Error),
}

impl ParseError {
    /// The answer to send, or `None` when there is nobody to answer.
    pub fn response(&self) -> Option<Response> {
        match self {
            ParseError::Empty | ParseError::Io(_) => None,
            ParseError::Timeout => Some(Response::error(408, "request timed out")),
            ParseError::Truncated => Some(Response::error(400, "truncated request")),
            ParseError::Malformed(m) => Some(Response::error(400, m)),
        }
    }

    /// A short stable name for rate-limited logging.
    pub fn kind(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty",
            ParseError::Truncated => "truncated",
            ParseError::Timeout => "timeout",
            ParseError::Malformed(_) => "malformed",
            ParseError::Io(_) => "io",
        }
    }
}

fn malformed(msg: impl Into<String>) -> ParseError {
    ParseError::Malformed(msg.into())
}

/// Parses one request from the bytes received so far. `Ok(None)` means "not complete yet, read
/// more"; an error is final (more bytes cannot make the request valid), so a peer that sends junk
/// is answered at once instead of waiting for its timeout.
///
/// Lines may end in CRLF or in a bare LF (RFC 9112 2.2 lets a server accept LF alone; `nc -U`
/// sends it). Bytes past the announced body are refused: one request per connection.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<Request>, ParseError> {
    let Some((head_len, body_start)) = head_end(buf) else {
        check_prefix(buf)?;
        if buf.len() >= limits.max_head {
            return Err(head_too_large(limits));
        }
        return Ok(None);
    };
    if body_start > limits.max_head {
        return Err(head_too_large(limits));
    }
    let head = std::str::from_utf8(&buf[..head_len])
        .map_err(|_| malformed("request head is not valid UTF-8"))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let (method, path, query) = parse_request_line(lines.next().unwrap_or_default())?;
    let headers = parse_headers(lines, limits)?;
    let mut req = Request {
        method,
        path,
        query,
        headers,
        body: Vec::new(),
    };
    let len = body_length(&req, limits)?;
    let have = buf.len() - body_start;
    if have > len {
        return Err(malformed(
            "more bytes than Content-Length (pipelining is not supported)",
        ));
    }
    if have < len {
        return Ok(None);
    }
    req.body = buf[body_start..].to_vec();
    Ok(Some(req))
}

/// Reads and parses one request from a blocking `stream` within `limits`.
///
/// `stream` should carry its own per-read timeout (a socket's `set_read_timeout`); reads that
/// time out become [`ParseError::Timeout`], and so does running past `limits.total_time`.
pub fn read_request(stream: &mut impl Read, limits: &Limits) -> Result<Request, ParseError> {
    let deadline = Instant::now() + limits.total_time;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(req) = parse(&buf, limits)? {
            return Ok(req);
        }
        let n = read_some(stream, &mut chunk, deadline)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                ParseError::Empty
            } else {
                ParseError::Truncated
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Where the head ends: (offset of the last header line's LF, offset of the body). The head
/// ends at the first empty line, whether lines end in CRLF or LF; each line loses one CR before
/// its LF when split, exactly as [`check_prefix`] strips it (found by fuzzing: stripping the
/// last line's CR twice accepted `...HTTP/1.1\r\r\n` whole but not while arriving).
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(p) = buf[from..].iter().position(|&b| b == b'\n') {
        let nl = from + p;
        let rest = &buf[nl + 1..];
        if rest.starts_with(b"\n") {
            return Some((nl, nl + 2));
        }
        if rest.starts_with(b"\r\n") {
            return Some((nl, nl + 3));
        }
        from = nl + 1;
    }
    None
}

fn head_too_large(limits: &Limits) -> ParseError {
    malformed(format!(
        "request line and headers exceed {} bytes",
        limits.max_head
    ))
}

/// Fails early when `buf` (an incomplete head) cannot be the start of `METHOD SP ...`.
fn check_prefix(buf: &[u8]) -> Result<(), ParseError> {
    let method_end = buf.iter().position(|&b| b == b' ').unwrap_or(buf.len());
    let method = &buf[..method_end];
    // A line end before the first space: the request line has no target.
    let method = match method.iter().position(|&b| b == b'\n') {
        Some(nl) => &method[..nl],
        None => method,
    };
    let method = method.strip_suffix(b"\r").unwrap_or(method);
    if !method.iter().all(|&b| is_tchar(b)) {
        return Err(malformed("bad request line: method is not a token"));
    }
    if method.len() > 32 {
        return Err(malformed("bad request line: method too long"));
    }
    if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
        // A complete first line: validate it now rather than waiting for headers that a
        // confused peer may never send.
        let line = &buf[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = std::str::from_utf8(line).map_err(|_| malformed("request line is not UTF-8"))?;
        parse_request_line(line)?;
    }
    Ok(())
}

fn read_some(
    stream: &mut impl Read,
    chunk: &mut [u8],
    deadline: Instant,
) -> Result<usize, ParseError> {
    if Instant::now() >= deadline {
        return Err(ParseError::Timeout);
    }
    loop {
        match stream.read(chunk) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return Err(ParseError::Timeout),
            Err(e) => return Err(ParseError::Io(e)),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// `METHOD SP request-target SP HTTP/1.x` → (method, path, query).
fn parse_request_line(line: &str) -> Result<(String, String, Option<String>), ParseError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "bad request line: expected METHOD TARGET HTTP/1.1",
        ));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(malformed("bad request line: method is not a token"));
    }
    // The same bound the early check applies to an incomplete line (found by fuzzing: a long
    // method was refused while arriving and accepted when it came in one piece).
    if method.len() > 32 {
        return Err(malformed("bad request line: method too long"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(malformed(
            "unsupported protocol version (only HTTP/1.0 and HTTP/1.1)",
        ));
    }
    let (path, query) = split_target(target)?;
    Ok((method.to_string(), path, query))
}

/// Accepts origin form (`/status?x`) and absolute form (`http://localhost/status`).
fn split_target(target: &str) -> Result<(String, Option<String>), ParseError> {
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed("bad request target: invalid characters"));
    }
    let origin = match target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        Some(rest) => &rest[rest.find('/').unwrap_or(rest.len())..],
        None => target,
    };
    let origin = if origin.is_empty() { "/" } else { origin };
    if !origin.starts_with('/') {
        return Err(malformed("bad request target: must start with '/'"));
    }
    let origin = origin.split('#').next().unwrap_or(origin);
    Ok(match origin.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (origin.to_string(), None),
    })
}

fn parse_headers<'a>(
    lines: impl Iterator<Item = &'a str>,
    limits: &Limits,
) -> Result<Vec<(String, String)>, ParseError> {
    let mut headers = Vec::new();
    for line in lines {
        if headers.len() >= limits.max_headers {
            return Err(malformed(format!(
                "more than {} headers",
                limits.max_headers
            )));
        }
        headers.push(parse_header(line)?);
    }
    Ok(headers)
}

fn parse_header(line: &str) -> Result<(String, String), ParseError> {
    if line.starts_with([' ', '\t']) {
        return Err(malformed("bad header: obsolete line folding"));
    }
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| malformed("bad header: no ':'"))?;
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(malformed("bad header: name is not a token"));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(malformed(format!(
            "bad header {name}: control character in value"
        )));
    }
    Ok((name.to_string(), value.to_string()))
}

/// The body length per `Content-Length` (0 when absent); chunked bodies are refused.
fn body_length(req: &Request, limits: &Limits) -> Result<usize, ParseError> {
    if req.header("transfer-encoding").is_some() {
        return Err(malformed(
            "Transfer-Encoding is not supported; send Content-Length",
        ));
    }
    let mut len: Option<usize> = None;
    for (_, v) in req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed("bad header Content-Length: not a number"));
        }
        let n: usize = v
            .parse()
            .map_err(|_| malformed("bad header Content-Length"))?;
        if len.is_some_and(|l| l != n) {
            return Err(malformed("conflicting Content-Length headers"));
        }
        len = Some(n);
    }
    let len = len.unwrap_or(0);
    if len > limits.max_body {
        return Err(malformed(format!("body exceeds {} bytes", limits.max_body)));
    }
    Ok(len)
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One response; always sent with `Connection: close` and an exact `Content-Length`, except a
/// streaming one, whose body is whatever its feed delivers until the connection closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    /// Extra headers (e.g. `Allow`); `Content-Type`, `Content-Length` and `Connection` are
    /// written from the other fields.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// A streaming answer (`GET /results`): after the head (and `body`, if any) the connection
    /// carries what the feed receives, until either side ends it.
    pub stream: Option<std::sync::Arc<super::stream::Feed>>,
}

impl Response {
    /// `value` serialised on one line, newline-terminated so `curl` output ends cleanly.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = value.to_string().into_bytes();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json".into(),
            headers: Vec::new(),
            body,
            stream: None,
        }
    }

    /// Plain text; `content_type` such as `text/plain; version=0.0.4` for Prometheus.
    pub fn text(status: u16, content_type: &str, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body: body.into().into_bytes(),
            stream: None,
        }
    }

    /// The one-line JSON error every failure uses: `{"error":"msg"}`.
    pub fn error(status: u16, msg: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": msg }))
    }

    /// 404 naming the path.
    pub fn not_found(path: &str) -> Response {
        Response::error(404, &format!("no such endpoint: {path}"))
    }

    /// 405 with the `Allow` header listing `allow`.
    pub fn method_not_allowed(method: &str, path: &str, allow: &[&str]) -> Response {
        let msg = format!(
            "method {method} not allowed on {path} (allowed: {})",
            allow.join(", ")
        );
        Response::error(405, &msg).with_header("Allow", &allow.join(", "))
    }

    /// A 200 whose body is `feed`'s records as they come (`content_type` such as
    /// `application/x-ndjson` or `text/event-stream`).
    pub fn streaming(content_type: &str, feed: std::sync::Arc<super::stream::Feed>) -> Response {
        Response {
            status: 200,
            content_type: content_type.into(),
            headers: Vec::new(),
            body: Vec::new(),
            stream: Some(feed),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Writes status line, headers and (unless `head_only`, for HEAD requests) the body.
    pub fn write_to(&self, w: &mut impl Write, head_only: bool) -> io::Result<()> {
        let mut out = Vec::with_capacity(160 + self.body.len());
        write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status))?;
        write!(out, "Content-Type: {}\r\n", self.content_type)?;
        if self.stream.is_none() {
            write!(out, "Content-Length: {}\r\n", self.body.len())?;
        }
        for (n, v) in &self.headers {
            write!(out, "{n}: {v}\r\n")?;
        }
        out.extend_from_slice(b"Connection: close\r\nCache-Control: no-store\r\n\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        w.write_all(&out)?;
        w.flush()
    }
}

/// The reason phrase for the status codes this server uses.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Request, ParseError> {
        read_request(&mut &bytes[..], &Limits::default())
    }

    fn malformed_msg(bytes: &[u8]) -> String {
        match parse(bytes) {
            Err(ParseError::Malformed(m)) => m,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn parses_curl_style_request() {
        let r = parse(b"GET /status?x=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/status");
        assert_eq!(r.query.as_deref(), Some("x=1"));
        assert_eq!(r.header("host"), Some("localhost"));
        assert!(r.body.is_empty());
    }

    #[test]
    fn lf_only_and_mixed_line_ends_are_accepted() {
        // What `printf 'GET /status HTTP/1.0\n\n' | nc -U sock` sends.
        let r = parse(b"GET /status HTTP/1.0\n\n").unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/status"));
        let r = parse(b"GET /healthz HTTP/1.1\nHost: x\nAccept: */*\n\n").unwrap();
        assert_eq!(r.header("accept"), Some("*/*"));
        let r = parse(b"POST /m HTTP/1.1\r\nContent-Length: 2\n\r\nhi").unwrap();
        assert_eq!(r.body, b"hi");
        // A CR that does not end a line is still refused.
        malformed_msg(b"GET /x HTTP/1.1\nA: b\rc\n\n");
    }

    #[test]
    fn incremental_parse_waits_for_the_whole_request() {
        let full = b"POST /m HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        let limits = Limits::default();
        for cut in 0..full.len() {
            assert!(
                matches!(super::parse(&full[..cut], &limits), Ok(None)),
                "prefix of {cut} bytes"
            );
        }
        let r = super::parse(full, &limits).unwrap().expect("complete");
        assert_eq!(r.body, b"hello");
        // Junk is refused as soon as it cannot start a request line.
        assert!(super::parse(b"\x16\x03", &limits).is_err());
        assert!(super::parse(b"GET /x HTTP/2", &limits).is_ok());
        assert!(super::parse(b"GET /x HTTP/2.0\n", &limits).is_err());
    }

    #[test]
    fn a_method_longer_than_32_bytes_is_refused_whole_and_in_part() {
        // fuzz/regressions/http/method_longer_than_32: a 39-byte method.
        let req = b"`%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%P*ST /x HTTP/1.1\r\nA: b\r\n\r\n";
        let limits = Limits::default();
        assert!(super::parse(&req[..34], &limits).is_err());
        assert!(malformed_msg(req).contains("method too long"));
        let ok = format!("{} /x HTTP/1.1\r\n\r\n", "M".repeat(32));
        assert!(parse(ok.as_bytes()).is_ok());
    }

    #[test]
    fn a_line_ending_in_cr_cr_lf_is_refused_whole_and_in_part() {
        // fuzz/regressions/http/cr_cr_lf_line_end.
        let req = b"`POST /x HTTP/1.1\r\r\n\r\n";
        assert!(super::parse(&req[..21], &Limits::default()).is_err());
        malformed_msg(req);
        malformed_msg(b"GET /x HTTP/1.1\r\nA: b\r\r\n\r\n");
    }

    #[test]
    fn reads_body_by_content_length() {
        let r = parse(b"POST /m HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!(r.body, b"hello");
    }

    #[test]
    fn absolute_form_target_is_reduced_to_path() {
        let r = parse(b"GET http://localhost/healthz HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.path, "/healthz");
    }

    #[test]
    fn rejects_malformed_requests() {
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET /x HTTP/2.0\r\n\r\n",
            b"GET /x\r\n\r\n",
            b"GET  /x HTTP/1.1\r\n\r\n",
            b"GET x HTTP/1.1\r\n\r\n",
            b"GET /x HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET /x HTTP/1.1\r\nBad Name: v\r\n\r\n",
            b"GET /x HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
            b"GET /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            malformed_msg(bad);
        }
    }

    #[test]
    fn rejects_oversize_head_and_body() {
        let mut big = b"GET /x HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 9000));
        big.extend_from_slice(b"\r\n\r\n");
        assert!(malformed_msg(&big).contains("8192"));
        let body = b"POST /x HTTP/1.1\r\nContent-Length: 65537\r\n\r\n";
        assert!(malformed_msg(body).contains("65536"));
    }

    #[test]
    fn eof_cases_are_distinguished() {
        assert!(matches!(parse(b""), Err(ParseError::Empty)));
        assert!(matches!(
            parse(b"GET /x HTTP/1.1\r\nHost"),
            Err(ParseError::Truncated)
        ));
        let short_body = b"POST /x HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc";
        assert!(matches!(parse(short_body), Err(ParseError::Truncated)));
    }

    #[test]
    fn response_has_exact_length_and_reason() {
        let mut out = Vec::new();
        Response::error(404, "no such endpoint: /x")
            .write_to(&mut out, false)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(head.contains("Connection: close"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "no such endpoint: /x");
        assert_eq!(body.matches('\n').count(), 1, "one line: {body:?}");
    }

    #[test]
    fn head_only_omits_body_but_keeps_length() {
        let mut out = Vec::new();
        Response::text(200, "text/plain", "abc")
            .write_to(&mut out, true)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
