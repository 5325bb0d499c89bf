//! A minimal HTTP/1.1 client and static file server for tests, on plain
//! `std::net` with every wait bounded.
//!
//! The client sends the request target byte for byte (no normalisation of
//! `..` or `%2e%2e`, unlike URL libraries), so the server's own path handling
//! is what the tests see. It speaks just enough HTTP/1.1 (RFC 9112) for the
//! tests: one request per connection (`Connection: close`), bodies framed by
//! `Content-Length`, `Transfer-Encoding: chunked` or the end of the
//! connection, and it records when the response head and body arrived (for
//! blocking-reload latency).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest response the client accepts (a test never needs more).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A complete HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Header fields in arrival order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The (de-chunked) body.
    pub body: Vec<u8>,
    /// From sending the request until the response head was complete.
    pub head_after: Duration,
    /// From sending the request until the whole body had arrived.
    pub elapsed: Duration,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Errors of [`request`].
#[derive(Debug)]
pub enum HttpError {
    /// Connect, read or write failed (including timeouts).
    Io(std::io::Error),
    /// The response did not finish before the deadline.
    Timeout(Duration),
    /// The response was not valid HTTP/1.1 or exceeded the size bound.
    Malformed(String),
    /// The URL was not `http://host:port/path`.
    BadUrl(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Io(e) => write!(f, "i/o error: {e}"),
            HttpError::Timeout(d) => write!(f, "no complete response within {d:?}"),
            HttpError::Malformed(m) => write!(f, "malformed response: {m}"),
            HttpError::BadUrl(u) => write!(f, "not an http://host:port/path URL: {u}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<std::io::Error> for HttpError {
    fn from(e: std::io::Error) -> Self {
        HttpError::Io(e)
    }
}

/// Splits `http://host:port/path?query` into (socket address, "host:port", target).
pub fn split_url(url: &str) -> Result<(SocketAddr, String, String), HttpError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HttpError::BadUrl(url.to_owned()))?;
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| HttpError::BadUrl(url.to_owned()))?;
    Ok((addr, authority.to_owned(), target.to_owned()))
}

/// `GET url` with an overall `timeout`.
pub fn get(url: &str, timeout: Duration) -> Result<Response, HttpError> {
    let (addr, host, target) = split_url(url)?;
    request(addr, &host, "GET", &target, &[], None, timeout)
}

/// Sends one request and reads the whole response, all within `timeout`.
///
/// `target` is sent exactly as given. `body` is `(content type, bytes)`.
pub fn request(
    addr: SocketAddr,
    host: &str,
    method: &str,
    target: &str,
    extra_headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    request_on(stream, host, method, target, extra_headers, body, timeout)
}

/// A TCP connection to `addr` from the local address `src` (port chosen by
/// the system): a second "client IP" on loopback (`127.0.0.2`) for tests of
/// per-client limits.
pub fn connect_from(src: IpAddr, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    sock.bind(&SocketAddr::new(src, 0).into())?;
    sock.connect_timeout(&addr.into(), timeout)?;
    Ok(sock.into())
}

/// [`request`] from the local address `src` (see [`connect_from`]).
pub fn request_from(
    src: IpAddr,
    addr: SocketAddr,
    method: &str,
    target: &str,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let stream = connect_from(src, addr, timeout)?;
    request_on(
        stream,
        &addr.to_string(),
        method,
        target,
        &[],
        None,
        timeout,
    )
}

/// [`request`] on an open connection.
fn request_on(
    mut stream: TcpStream,
    host: &str,
    method: &str,
    target: &str,
    extra_headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let start = Instant::now();
    let deadline = start + timeout;
    stream.set_nodelay(true)?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (n, v) in extra_headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some((ct, b)) = body {
        head.push_str(&format!(
            "Content-Type: {ct}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    } else if method == "POST" || method == "PUT" {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if let Some((_, b)) = body {
        out.extend_from_slice(b);
    }
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(&out)?;
    let sent = Instant::now();
    read_response(&mut stream, method == "HEAD", sent, deadline, timeout)
}

fn read_response(
    stream: &mut TcpStream,
    head_only: bool,
    sent: Instant,
    deadline: Instant,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 64 * 1024];
    // (status, headers, offset of the body, when the head was complete)
    type Head = (u16, Vec<(String, String)>, usize, Duration);
    let mut head: Option<Head> = None;
    loop {
        if head.is_none() {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let (status, headers) = parse_head(&buf[..end])?;
                head = Some((status, headers, end + 4, sent.elapsed()));
            }
        }
        if let Some((status, headers, body_start, head_after)) = &head {
            let no_body =
                head_only || *status == 204 || *status == 304 || (100..200).contains(status);
            let framing = body_framing(headers);
            let body = &buf[*body_start..];
            let done = if no_body {
                Some(Vec::new())
            } else {
                match framing {
                    Framing::Length(n) if body.len() >= n => Some(body[..n].to_vec()),
                    Framing::Chunked => dechunk(body)?,
                    _ => None,
                }
            };
            if let Some(body) = done {
                return Ok(Response {
                    status: *status,
                    headers: headers.clone(),
                    body,
                    head_after: *head_after,
                    elapsed: sent.elapsed(),
                });
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(HttpError::Timeout(timeout));
        }
        stream.set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HttpError::Timeout(timeout));
            }
            Err(e) => return Err(HttpError::Io(e)),
        };
        if n == 0 {
            // End of connection: a body framed by close ends here.
            return match head {
                Some((status, headers, body_start, head_after))
                    if matches!(body_framing(&headers), Framing::Close) =>
                {
                    Ok(Response {
                        status,
                        headers,
                        body: buf[body_start..].to_vec(),
                        head_after,
                        elapsed: sent.elapsed(),
                    })
                }
                _ => Err(HttpError::Malformed(format!(
                    "connection closed after {} bytes: {:?}",
                    buf.len(),
                    String::from_utf8_lossy(&buf[..buf.len().min(300)])
                ))),
            };
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE_BYTES {
            return Err(HttpError::Malformed("response too large".into()));
        }
    }
}

enum Framing {
    Length(usize),
    Chunked,
    Close,
}

fn body_framing(headers: &[(String, String)]) -> Framing {
    for (n, v) in headers {
        if n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
            return Framing::Chunked;
        }
    }
    for (n, v) in headers {
        if n == "content-length" {
            if let Ok(len) = v.trim().parse() {
                return Framing::Length(len);
            }
        }
    }
    Framing::Close
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> Result<(u16, Vec<(String, String)>), HttpError> {
    let text = std::str::from_utf8(head)
        .map_err(|_| HttpError::Malformed("response head is not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!("status line {status_line:?}")));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HttpError::Malformed(format!("status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    Ok((status, headers))
}

/// The body of a complete chunked encoding, or `None` if more bytes are needed.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, HttpError> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(data, b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&data[..eol])
            .map_err(|_| HttpError::Malformed("chunk size".into()))?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| HttpError::Malformed(format!("chunk size {size_text:?}")))?;
        data = &data[eol + 2..];
        if size == 0 {
            // Trailers (if any) end with an empty line.
            return Ok(if find(data, b"\r\n").is_some() {
                Some(out)
            } else {
                None
            });
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// A directory served over HTTP/1.1 on `127.0.0.1` (GET and HEAD; one
/// request per connection). Stopped when dropped.
pub struct StaticServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StaticServer {
    /// Serves the files below `root`. Paths with `..` get 404.
    pub fn start(root: &Path) -> StaticServer {
        let listener = crate::net::local_listener();
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("set_nonblocking: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let root = root.to_path_buf();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let root = root.clone();
                        std::thread::spawn(move || {
                            let _ = serve_file(conn, &root);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        StaticServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Content-Type by file extension.
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "m3u8" => "application/vnd.apple.mpegurl",
        "m4s" => "video/iso.segment",
        "mp4" => "video/mp4",
        "ts" => "video/mp2t",
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript",
        _ => "application/octet-stream",
    }
}

fn serve_file(mut conn: TcpStream, root: &Path) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while find(&buf, b"\r\n\r\n").is_none() && buf.len() < 64 * 1024 {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut parts = text.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default();
    let file: Option<PathBuf> = if path.split('/').any(|s| s == ".." || s.contains('%')) {
        None
    } else {
        Some(root.join(path.trim_start_matches('/')))
    };
    let (status, ct, body) = match file.as_deref().map(|f| (f, std::fs::read(f))) {
        Some((f, Ok(b))) => ("200 OK", content_type(f), b),
        _ => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\
         Access-Control-Allow-Origin: *\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    if method != "HEAD" {
        conn.write_all(&body)?;
    }
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_and_waits_for_more() {
        assert_eq!(dechunk(b"5\r\nhello\r\n").unwrap(), None);
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n").unwrap(),
            Some(b"hello world".to_vec())
        );
        assert!(dechunk(b"zz\r\n").is_err());
    }

    #[test]
    fn serves_files_and_reads_them_back() {
        let dir = crate::net::TempDir::new("http-client");
        std::fs::write(dir.path().join("a.m3u8"), b"#EXTM3U\n").unwrap();
        let server = StaticServer::start(dir.path());
        let r = get(&server.url("/a.m3u8"), Duration::from_secs(5)).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "#EXTM3U\n");
        assert_eq!(
            r.header("Content-Type"),
            Some("application/vnd.apple.mpegurl")
        );
        let r = get(&server.url("/../etc/passwd"), Duration::from_secs(5)).unwrap();
        assert_eq!(r.status, 404);
    }
}
