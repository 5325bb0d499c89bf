//! A sans-IO HTTP/1.1 server connection (RFC 9112), for drivers without
//! hyper: the blocking adapter and hand-written event loops.
//!
//! Bytes go in with [`H1Connection::handle_input`], complete requests come
//! out of [`H1Connection::poll_request`] (which asks the caller, normally
//! [`HttpRouter::admit`](super::HttpRouter::admit), for each head's body
//! limit before the body is read), the caller answers each with
//! [`H1Connection::send_response`], and the bytes to write come out of
//! [`H1Connection::poll_transmit`]. Time is an input:
//! [`poll_timeout`](H1Connection::poll_timeout) /
//! [`handle_timeout`](H1Connection::handle_timeout) bound how long a request
//! may take to arrive (slow-loris).
//!
//! # What it does
//!
//! - Request heads up to [`H1Config::max_head_bytes`] and
//!   [`H1Config::max_headers`] (more → 431 and close), tokenized by
//!   `httparse`; a malformed head, a missing `Host` in HTTP/1.1 (§3.2) or a
//!   bad or conflicting `Content-Length` (§6.3) → 400 and close.
//! - Request bodies by `Content-Length` only, up to the limit the caller
//!   gives per request (past it → 413 and close). A request with
//!   `Transfer-Encoding` → 411 and close (no chunked request bodies;
//!   §6.3 lets a server demand a length). `Expect: 100-continue` gets the
//!   interim `100 Continue` once the body is admitted.
//! - Keep-alive: HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
//!   `Connection: keep-alive`. Pipelined requests are answered in order,
//!   one at a time: the next is parsed only after the previous response was
//!   queued, and while a request is being answered at most
//!   [`H1Config::max_head_bytes`] more bytes are buffered (the driver stops
//!   reading while [`wants_input`](H1Connection::wants_input) is false).
//! - Responses are written with `Content-Length` (from the response's
//!   header if it has one, e.g. HEAD's, else its body's length); bodies
//!   are not copied: the head is one buffer, the body the response's
//!   `Bytes`.
//!
//! # Invariants
//!
//! - Buffered input never exceeds `max_head_bytes` plus the current
//!   request's body limit.
//! - At most one request is out to the caller at a time; every refusal is
//!   an error value ([`H1Error`]) with its response queued, never a panic.
//! - Once [`is_closed`](H1Connection::is_closed), nothing more is read;
//!   the driver writes out [`poll_transmit`](H1Connection::poll_transmit)
//!   and closes the socket.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use super::{error, Admit};
use crate::time::Instant;

/// Settings of an [`H1Connection`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct H1Config {
    /// Most bytes of one request head (request line and headers).
    pub max_head_bytes: usize,
    /// Most header fields in one request head.
    pub max_headers: usize,
    /// A request (head and body) must arrive within this long from when
    /// the connection became ready for it; else the connection closes (408
    /// if part of it came).
    pub request_timeout: Duration,
}

impl Default for H1Config {
    fn default() -> Self {
        H1Config {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Why an [`H1Connection`] closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum H1Error {
    /// The request head is longer than [`H1Config::max_head_bytes`] or has
    /// more than [`H1Config::max_headers`] fields (431).
    #[error("request head too large")]
    HeadTooLarge,
    /// The request head is not HTTP/1.x (400).
    #[error("malformed request head: {0}")]
    BadHead(&'static str),
    /// `Content-Length` is not a number, or two of them differ (400).
    #[error("bad Content-Length")]
    BadContentLength,
    /// The request uses `Transfer-Encoding` (411).
    #[error("request bodies need Content-Length")]
    LengthRequired,
    /// The body is longer than the caller's limit (413).
    #[error("request body too large ({len} > {limit})")]
    BodyTooLarge {
        /// The announced length.
        len: u64,
        /// The limit for this request.
        limit: usize,
    },
    /// More bytes arrived than may be buffered (pipelining past the bound).
    #[error("too much input buffered")]
    InputOverflow,
    /// The request did not arrive within [`H1Config::request_timeout`].
    #[error("request timed out")]
    Timeout,
    /// The peer closed in the middle of a request.
    #[error("peer closed mid-request")]
    Truncated,
}

#[derive(Debug)]
enum State {
    /// Waiting for a request head.
    Head,
    /// Reading `len` body bytes of `head`.
    Body { head: Box<Request<()>>, len: usize },
    /// A request is out to the caller; `send_response` is due.
    Responding { head_method: bool },
    /// No more requests on this connection.
    Closed,
}

/// One server-side HTTP/1.1 connection (see the module documentation).
#[derive(Debug)]
pub struct H1Connection {
    config: H1Config,
    buf: BytesMut,
    state: State,
    out: VecDeque<Bytes>,
    /// Close after the response being prepared.
    close_after: bool,
    /// The peer sent EOF.
    eof: bool,
    /// When the request being read must be complete.
    deadline: Instant,
    error: Option<H1Error>,
    requests: u64,
    /// The current request is HTTP/1.0 (keep-alive must be answered).
    http10: bool,
    /// Copied into every request's extensions (e.g. the client address).
    extensions: http::Extensions,
}

fn too_many() -> Response<Bytes> {
    error(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request head too large",
    )
}

fn status_for(e: &H1Error) -> Option<StatusCode> {
    Some(match e {
        H1Error::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        H1Error::BadHead(_) | H1Error::BadContentLength => StatusCode::BAD_REQUEST,
        H1Error::LengthRequired => StatusCode::LENGTH_REQUIRED,
        H1Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        H1Error::Timeout => StatusCode::REQUEST_TIMEOUT,
        H1Error::InputOverflow | H1Error::Truncated => return None,
    })
}

/// Whether `value` (a `Connection` header) lists `token`.
fn lists(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        .unwrap_or(false)
}

impl H1Connection {
    /// A connection accepted at `now`, waiting for its first request.
    pub fn new(config: H1Config, now: Instant) -> Self {
        let deadline = now + config.request_timeout;
        H1Connection {
            buf: BytesMut::with_capacity(1024),
            config,
            state: State::Head,
            out: VecDeque::new(),
            close_after: false,
            eof: false,
            deadline,
            error: None,
            requests: 0,
            http10: false,
            extensions: http::Extensions::new(),
        }
    }

    /// Most bytes buffered now; input past it closes the connection.
    fn buffer_bound(&self) -> usize {
        let body = match &self.state {
            State::Body { len, .. } => *len,
            _ => 0,
        };
        self.config.max_head_bytes.saturating_add(body)
    }

    /// Bytes read from the peer; an empty slice is the peer's EOF.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        let _ = now;
        if matches!(self.state, State::Closed) {
            return;
        }
        if data.is_empty() {
            self.eof = true;
            return;
        }
        if self.buf.len().saturating_add(data.len()) > self.buffer_bound() {
            match self.state {
                State::Head => self.fail(H1Error::HeadTooLarge),
                // Mid-body more than the body (a pipelined head cannot be
                // longer than the bound): still bounded, refused.
                _ => self.fail(H1Error::InputOverflow),
            }
            return;
        }
        self.buf.extend_from_slice(data);
    }

    /// Whether the driver should read more now (false while a request is
    /// being answered with input already buffered, and once closed).
    pub fn wants_input(&self) -> bool {
        match self.state {
            State::Head | State::Body { .. } => true,
            State::Responding { .. } => self.buf.is_empty() && !self.eof,
            State::Closed => false,
        }
    }

    /// Refuses the connection with `e`: its answer (if it has one) is
    /// queued, then nothing more is read.
    fn fail(&mut self, e: H1Error) {
        if let Some(status) = status_for(&e) {
            let why = e.to_string();
            let resp = if status == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE {
                too_many()
            } else {
                error(status, &why)
            };
            self.close_after = true;
            self.write_response(resp, false);
        }
        self.error = Some(e);
        self.state = State::Closed;
        self.buf.clear();
    }

    /// Extensions copied into every request from here on (an adapter puts
    /// the client's address here, e.g. `arcly::http::ClientAddr`).
    pub fn set_request_extensions(&mut self, extensions: http::Extensions) {
        self.extensions = extensions;
    }

    /// Why the connection closed on a protocol error, if it did.
    pub fn error(&self) -> Option<&H1Error> {
        self.error.as_ref()
    }

    /// Requests handed out so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Whether no more requests will come: write out
    /// [`poll_transmit`](Self::poll_transmit), then close the socket.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due (while a
    /// request is awaited).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Head | State::Body { .. } => Some(self.deadline),
            _ => None,
        }
    }

    /// Closes the connection if the awaited request is late (408 if part
    /// of it arrived, silently if none did).
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.deadline {
            return;
        }
        match self.state {
            State::Head if self.buf.is_empty() => {
                self.error = Some(H1Error::Timeout);
                self.state = State::Closed;
            }
            State::Head | State::Body { .. } => self.fail(H1Error::Timeout),
            _ => {}
        }
    }

    /// The next complete request, if one is buffered and none is out.
    /// `admit` sees each head before its body is read and gives the body
    /// limit, or answers at once ([`Admit::Respond`]: the response is
    /// queued; if a body was announced the connection closes after it).
    pub fn poll_request(
        &mut self,
        mut admit: impl FnMut(&Request<()>) -> Admit,
    ) -> Option<Request<Bytes>> {
        loop {
            match std::mem::replace(&mut self.state, State::Closed) {
                State::Head => {
                    let head = match self.parse_head() {
                        Ok(Some(h)) => h,
                        Ok(None) => {
                            self.state = State::Head;
                            if self.eof {
                                if self.buf.is_empty() {
                                    self.state = State::Closed;
                                } else {
                                    self.fail(H1Error::Truncated);
                                }
                            }
                            return None;
                        }
                        Err(e) => {
                            self.fail(e);
                            return None;
                        }
                    };
                    let (head, len) = head;
                    let is_head = head.method() == Method::HEAD;
                    match admit(&head) {
                        Admit::Respond(resp) => {
                            if len > 0 {
                                self.close_after = true;
                            }
                            self.requests += 1;
                            self.write_response(resp, is_head);
                            if self.close_after {
                                self.state = State::Closed;
                                self.buf.clear();
                                return None;
                            }
                            self.state = State::Head;
                            continue;
                        }
                        Admit::Read { limit } => {
                            if len > limit as u64 {
                                self.fail(H1Error::BodyTooLarge { len, limit });
                                return None;
                            }
                            let len = usize::try_from(len).unwrap_or(usize::MAX);
                            if len > 0 && expects_continue(&head) {
                                self.out.push_back(Bytes::from_static(
                                    b"HTTP/1.1 100 Continue\r\n\r\n",
                                ));
                            }
                            self.state = State::Body {
                                head: Box::new(head),
                                len,
                            };
                        }
                    }
                }
                State::Body { head, len } => {
                    if self.buf.len() < len {
                        if self.eof {
                            self.fail(H1Error::Truncated);
                        } else {
                            self.state = State::Body { head, len };
                        }
                        return None;
                    }
                    let body = self.buf.split_to(len).freeze();
                    let head_method = head.method() == Method::HEAD;
                    let (parts, ()) = (*head).into_parts();
                    self.state = State::Responding { head_method };
                    self.requests += 1;
                    return Some(Request::from_parts(parts, body));
                }
                other => {
                    self.state = other;
                    return None;
                }
            }
        }
    }

    /// Parses a complete head at the start of the buffer: the request and
    /// its body length; `None` while incomplete.
    fn parse_head(&mut self) -> Result<Option<(Request<()>, u64)>, H1Error> {
        // Blank lines before a request line are ignored (RFC 9112 §2.2).
        let blanks = self
            .buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        let _ = self.buf.split_to(blanks);
        if self.buf.is_empty() {
            return Ok(None);
        }
        let mut fields = vec![httparse::EMPTY_HEADER; self.config.max_headers.max(1)];
        let mut parsed = httparse::Request::new(&mut fields);
        let used = match parsed.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if self.buf.len() > self.config.max_head_bytes {
                    return Err(H1Error::HeadTooLarge);
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(H1Error::HeadTooLarge),
            Err(_) => return Err(H1Error::BadHead("not an HTTP/1.x request head")),
        };
        if used > self.config.max_head_bytes {
            return Err(H1Error::HeadTooLarge);
        }
        let method = parsed
            .method
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .ok_or(H1Error::BadHead("bad method"))?;
        let uri = parsed
            .path
            .and_then(|p| http::Uri::try_from(p).ok())
            .ok_or(H1Error::BadHead("bad request target"))?;
        let version = match parsed.version {
            Some(0) => Version::HTTP_10,
            Some(1) => Version::HTTP_11,
            _ => return Err(H1Error::BadHead("bad version")),
        };
        let mut builder = Request::builder().method(method).uri(uri).version(version);
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut close = version == Version::HTTP_10;
        let mut host = false;
        for f in parsed.headers.iter() {
            let name = HeaderName::from_bytes(f.name.as_bytes())
                .map_err(|_| H1Error::BadHead("bad header name"))?;
            let value = HeaderValue::from_bytes(f.value)
                .map_err(|_| H1Error::BadHead("bad header value"))?;
            if name == header::CONTENT_LENGTH {
                let n = parse_length(f.value)?;
                if length.is_some_and(|l| l != n) {
                    return Err(H1Error::BadContentLength);
                }
                length = Some(n);
            } else if name == header::TRANSFER_ENCODING {
                chunked = true;
            } else if name == header::HOST {
                host = true;
            } else if name == header::CONNECTION {
                if lists(&value, "close") {
                    close = true;
                } else if lists(&value, "keep-alive") {
                    close = false;
                }
            }
            builder = builder.header(name, value);
        }
        let _ = self.buf.split_to(used);
        if chunked {
            return Err(H1Error::LengthRequired);
        }
        if version == Version::HTTP_11 && !host {
            return Err(H1Error::BadHead("HTTP/1.1 request without Host"));
        }
        let mut head = builder
            .body(())
            .map_err(|_| H1Error::BadHead("bad request"))?;
        head.extensions_mut().extend(self.extensions.clone());
        self.close_after = close;
        self.http10 = version == Version::HTTP_10;
        Ok(Some((head, length.unwrap_or(0))))
    }

    /// Queues the response to the request last returned by
    /// [`poll_request`](Self::poll_request) (ignored if none is out). For
    /// HEAD the body is not sent. A response with `Connection: close`
    /// closes the connection after it.
    pub fn send_response(&mut self, now: Instant, resp: Response<Bytes>) {
        let State::Responding { head_method } = self.state else {
            return;
        };
        if resp
            .headers()
            .get(header::CONNECTION)
            .is_some_and(|v| lists(v, "close"))
        {
            self.close_after = true;
        }
        self.write_response(resp, head_method);
        if self.close_after {
            self.state = State::Closed;
            self.buf.clear();
        } else {
            self.state = State::Head;
            self.deadline = now + self.config.request_timeout;
        }
    }

    /// Serializes `resp` into the output queue.
    fn write_response(&mut self, resp: Response<Bytes>, head_method: bool) {
        let (parts, body) = resp.into_parts();
        let status = parts.status;
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(status.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        head.extend_from_slice(b"\r\n");
        let bodiless = status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let mut has_length = false;
        for (name, value) in &parts.headers {
            if name == header::CONNECTION || name == header::TRANSFER_ENCODING {
                continue;
            }
            if name == header::CONTENT_LENGTH {
                if bodiless {
                    continue;
                }
                has_length = true;
            }
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        if !has_length && !bodiless {
            head.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        }
        if self.close_after {
            head.extend_from_slice(b"connection: close\r\n");
        } else if self.http10 {
            head.extend_from_slice(b"connection: keep-alive\r\n");
        }
        head.extend_from_slice(b"\r\n");
        self.out.push_back(Bytes::from(head));
        if !head_method && !bodiless && !body.is_empty() {
            self.out.push_back(body);
        }
    }

    /// The next bytes to write, in order.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.pop_front()
    }
}

fn expects_continue(head: &Request<()>) -> bool {
    head.version() == Version::HTTP_11
        && head
            .headers()
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// `Content-Length`: 1*DIGIT (RFC 9110 §8.6), at most 19 digits.
fn parse_length(v: &[u8]) -> Result<u64, H1Error> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(H1Error::BadContentLength);
    }
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(H1Error::BadContentLength)
}
