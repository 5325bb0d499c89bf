//! RTSP 1.0 messages (RFC 2326 §4–§7) and interleaved binary frames
//! (§10.12) on one byte stream.
//!
//! [`Decoder`] takes bytes as they arrive and yields requests, responses
//! and `$`-framed binary packets in stream order. Every length is bounded:
//! the header block ([`MAX_HEADER_BLOCK`]), the number of headers
//! ([`MAX_HEADERS`]) and the body ([`MAX_BODY`]); an interleaved frame is
//! bounded by its 16-bit length. Header lines may be folded (a line that
//! starts with a space or tab continues the previous one) and may end in
//! CRLF or a bare LF.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest header block (request or status line and headers, 16 KiB).
pub const MAX_HEADER_BLOCK: usize = 16 << 10;
/// Largest number of header lines in one message.
pub const MAX_HEADERS: usize = 64;
/// Largest message body (64 KiB: an SDP or a parameter list).
pub const MAX_BODY: usize = 64 << 10;

/// Why the byte stream cannot be read as RTSP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The header block grew past [`MAX_HEADER_BLOCK`] without ending.
    #[error("header block longer than {MAX_HEADER_BLOCK} bytes")]
    HeaderTooLong,
    /// More than [`MAX_HEADERS`] header lines.
    #[error("more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    /// `Content-Length` above [`MAX_BODY`] or not a number.
    #[error("bad Content-Length {0}")]
    BadContentLength(String),
    /// The first line is neither `METHOD URI RTSP/1.0` nor `RTSP/1.0 CODE REASON`.
    #[error("bad start line")]
    BadStartLine,
    /// A header line without a colon, or not UTF-8.
    #[error("bad header line")]
    BadHeader,
    /// The stream holds something that is neither a message nor a `$` frame.
    #[error("not RTSP (first byte {0:#04x})")]
    NotRtsp(u8),
}

/// An RTSP method (RFC 2326 §10).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `OPTIONS`
    Options,
    /// `DESCRIBE`
    Describe,
    /// `ANNOUNCE`
    Announce,
    /// `SETUP`
    Setup,
    /// `PLAY`
    Play,
    /// `RECORD`
    Record,
    /// `PAUSE`
    Pause,
    /// `TEARDOWN`
    Teardown,
    /// `GET_PARAMETER`
    GetParameter,
    /// `SET_PARAMETER`
    SetParameter,
    /// Any other token.
    Other(String),
}

impl Method {
    fn parse(s: &str) -> Method {
        match s {
            "OPTIONS" => Method::Options,
            "DESCRIBE" => Method::Describe,
            "ANNOUNCE" => Method::Announce,
            "SETUP" => Method::Setup,
            "PLAY" => Method::Play,
            "RECORD" => Method::Record,
            "PAUSE" => Method::Pause,
            "TEARDOWN" => Method::Teardown,
            "GET_PARAMETER" => Method::GetParameter,
            "SET_PARAMETER" => Method::SetParameter,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The method token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Options => "OPTIONS",
            Method::Describe => "DESCRIBE",
            Method::Announce => "ANNOUNCE",
            Method::Setup => "SETUP",
            Method::Play => "PLAY",
            Method::Record => "RECORD",
            Method::Pause => "PAUSE",
            Method::Teardown => "TEARDOWN",
            Method::GetParameter => "GET_PARAMETER",
            Method::SetParameter => "SET_PARAMETER",
            Method::Other(s) => s,
        }
    }
}

/// Message headers in arrival order; names compare case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// The value of the first header called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Appends a header.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Every header in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The `CSeq` as a number.
    pub fn cseq(&self) -> Option<u32> {
        self.get("CSeq").and_then(|v| v.trim().parse().ok())
    }

    fn write(&self, out: &mut BytesMut) {
        // `Content-Length` is written from the body by the message itself.
        for (n, v) in self
            .0
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("Content-Length"))
        {
            out.put_slice(n.as_bytes());
            out.put_slice(b": ");
            out.put_slice(v.as_bytes());
            out.put_slice(b"\r\n");
        }
    }
}

/// An RTSP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The request URI as sent (`rtsp://host/live/cam/trackID=0`, or `*`).
    pub uri: String,
    /// The headers.
    pub headers: Headers,
    /// The body (`Content-Length` bytes).
    pub body: Bytes,
}

impl Request {
    /// The request as bytes (a `Content-Length` header is added for a body).
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(256 + self.body.len());
        b.put_slice(self.method.as_str().as_bytes());
        b.put_u8(b' ');
        b.put_slice(self.uri.as_bytes());
        b.put_slice(b" RTSP/1.0\r\n");
        self.headers.write(&mut b);
        if !self.body.is_empty() {
            b.put_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        b.put_slice(b"\r\n");
        b.put_slice(&self.body);
        b.freeze()
    }
}

/// An RTSP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The headers.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// A response with the standard reason phrase of `status` and `CSeq` echoed.
    pub fn new(status: u16, cseq: Option<u32>) -> Self {
        let mut headers = Headers::new();
        if let Some(c) = cseq {
            headers.push("CSeq", c.to_string());
        }
        Response {
            status,
            reason: reason_phrase(status).to_owned(),
            headers,
            body: Bytes::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push(name, value);
        self
    }

    /// Sets the body and its `Content-Type`.
    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.headers.push("Content-Type", content_type);
        self.body = body;
        self
    }

    /// The response as bytes (with `Content-Length` when there is a body).
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(256 + self.body.len());
        b.put_slice(format!("RTSP/1.0 {} {}\r\n", self.status, self.reason).as_bytes());
        self.headers.write(&mut b);
        if !self.body.is_empty() {
            b.put_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        b.put_slice(b"\r\n");
        b.put_slice(&self.body);
        b.freeze()
    }
}

/// The RFC 2326 §7.1.1 reason phrase of a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        453 => "Not Enough Bandwidth",
        454 => "Session Not Found",
        455 => "Method Not Valid in This State",
        457 => "Invalid Range",
        459 => "Aggregate Operation Not Allowed",
        461 => "Unsupported Transport",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "RTSP Version Not Supported",
        _ => "Unknown",
    }
}

/// One item of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
    /// An interleaved binary frame: channel and payload.
    Interleaved {
        /// The channel byte.
        channel: u8,
        /// The frame (an RTP or RTCP packet).
        data: Bytes,
    },
}

/// Incremental reader of an RTSP byte stream (see the module documentation).
///
/// Invariant: holds at most one header block, one body or one interleaved
/// frame beyond what was returned (bounded by the limits above plus what
/// one read delivered).
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    /// Header block scanned so far without finding its end (resume point).
    scanned: usize,
}

enum Start {
    Request(Method, String),
    Response(u16, String),
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete item, `Ok(None)` when more bytes are needed.
    pub fn decode(&mut self) -> Result<Option<Item>, MessageError> {
        // Blank lines between messages are allowed (keep-alive CRLFs).
        while matches!(self.buf.first(), Some(b'\r' | b'\n')) {
            self.buf.advance(1);
            self.scanned = 0;
        }
        let Some(&first) = self.buf.first() else {
            return Ok(None);
        };
        if first == b'$' {
            let Some(len) = crate::big_endian::read_be(&self.buf, 2, 2) else {
                return Ok(None);
            };
            let len = len as usize;
            if self.buf.len() < 4 + len {
                return Ok(None);
            }
            let channel = self.buf.get(1).copied().unwrap_or_default();
            self.buf.advance(4);
            let data = self.buf.split_to(len).freeze();
            return Ok(Some(Item::Interleaved { channel, data }));
        }
        if !first.is_ascii_uppercase() {
            return Err(MessageError::NotRtsp(first));
        }
        let Some(head_end) = self.find_head_end()? else {
            return Ok(None);
        };
        let (head_len, block_len) = head_end;
        let head = self.buf.get(..head_len).unwrap_or_default();
        let text = std::str::from_utf8(head).map_err(|_| MessageError::BadHeader)?;
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let start = parse_start(lines.next().unwrap_or_default())?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                let Some(last) = headers.last_mut() else {
                    return Err(MessageError::BadHeader);
                };
                last.1.push(' ');
                last.1.push_str(line.trim());
                continue;
            }
            if headers.len() == MAX_HEADERS {
                return Err(MessageError::TooManyHeaders);
            }
            let (n, v) = line.split_once(':').ok_or(MessageError::BadHeader)?;
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
        let headers = Headers(headers);
        let body_len = match headers.get("Content-Length") {
            None => 0,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n <= MAX_BODY => n,
                _ => return Err(MessageError::BadContentLength(v.chars().take(32).collect())),
            },
        };
        if self.buf.len() < block_len + body_len {
            return Ok(None);
        }
        self.buf.advance(block_len);
        let body = self.buf.split_to(body_len).freeze();
        self.scanned = 0;
        Ok(Some(match start {
            Start::Request(method, uri) => Item::Request(Request {
                method,
                uri,
                headers,
                body,
            }),
            Start::Response(status, reason) => Item::Response(Response {
                status,
                reason,
                headers,
                body,
            }),
        }))
    }

    /// (length of the head without the blank line, length with it).
    fn find_head_end(&mut self) -> Result<Option<(usize, usize)>, MessageError> {
        let from = self.scanned.saturating_sub(3);
        let hay = self.buf.get(from..).unwrap_or_default();
        let mut found = None;
        for (i, w) in hay.windows(2).enumerate() {
            if w == b"\n\n" {
                found = Some((from + i + 1, from + i + 2));
                break;
            }
            if w == b"\n\r" && hay.get(i + 2) == Some(&b'\n') {
                found = Some((from + i + 1, from + i + 3));
                break;
            }
        }
        match found {
            Some((h, b)) if b <= MAX_HEADER_BLOCK => Ok(Some((h, b))),
            Some(_) => Err(MessageError::HeaderTooLong),
            None if self.buf.len() > MAX_HEADER_BLOCK => Err(MessageError::HeaderTooLong),
            None => {
                self.scanned = self.buf.len();
                Ok(None)
            }
        }
    }
}

fn parse_start(line: &str) -> Result<Start, MessageError> {
    let mut parts = line.splitn(3, ' ');
    let (a, b, c) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default().trim(),
    );
    if a.starts_with("RTSP/") {
        let status = b.parse().map_err(|_| MessageError::BadStartLine)?;
        return Ok(Start::Response(status, c.to_owned()));
    }
    if b.is_empty()
        || !c.starts_with("RTSP/")
        || !a.bytes().all(|x| x.is_ascii_uppercase() || x == b'_')
    {
        return Err(MessageError::BadStartLine);
    }
    Ok(Start::Request(Method::parse(a), b.to_owned()))
}

/// Writes the 4-byte interleaved header in front of a frame of `len` bytes.
pub fn interleaved_header(channel: u8, len: u16) -> [u8; 4] {
    let l = len.to_be_bytes();
    [b'$', channel, l[0], l[1]]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    #[test]
    fn requests_frames_and_folding_in_one_stream() {
        let mut d = Decoder::new();
        let mut s =
            b"OPTIONS rtsp://h/live/cam RTSP/1.0\r\nCSeq: 1\r\nX-Long: a\r\n b\r\n\r\n".to_vec();
        s.extend_from_slice(&[b'$', 1, 0, 3, 9, 9, 9]);
        s.extend_from_slice(b"ANNOUNCE rtsp://h/x RTSP/1.0\nCSeq: 2\nContent-Length: 4\n\nv=0\n");
        // Byte by byte: every split point must work.
        let mut items = Vec::new();
        for b in &s {
            d.extend(&[*b]);
            while let Some(i) = d.decode().unwrap() {
                items.push(i);
            }
        }
        assert_eq!(items.len(), 3);
        let Item::Request(r) = &items[0] else {
            panic!()
        };
        assert_eq!(r.method, Method::Options);
        assert_eq!(r.headers.cseq(), Some(1));
        assert_eq!(r.headers.get("x-long"), Some("a b"));
        assert_eq!(
            items[1],
            Item::Interleaved {
                channel: 1,
                data: Bytes::from_static(&[9, 9, 9])
            }
        );
        let Item::Request(r) = &items[2] else {
            panic!()
        };
        assert_eq!(&r.body[..], b"v=0\n");
        let round = r.to_bytes();
        let mut d2 = Decoder::new();
        d2.extend(&round);
        assert_eq!(d2.decode().unwrap(), Some(items[2].clone()));
    }

    #[test]
    fn limits_and_garbage_are_errors() {
        let mut d = Decoder::new();
        d.extend(b"OPTIONS * RTSP/1.0\r\n");
        for _ in 0..2000 {
            d.extend(b"X-A: aaaaaaaaaa\r\n");
        }
        assert_eq!(d.decode(), Err(MessageError::HeaderTooLong));
        let mut d = Decoder::new();
        d.extend(b"\x16\x03\x01garbage");
        assert!(matches!(d.decode(), Err(MessageError::NotRtsp(0x16))));
        let mut d = Decoder::new();
        d.extend(b"PLAY x RTSP/1.0\r\nContent-Length: 999999999\r\n\r\n");
        assert!(matches!(d.decode(), Err(MessageError::BadContentLength(_))));
        let mut d = Decoder::new();
        let mut many = b"PLAY x RTSP/1.0\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        d.extend(&many);
        assert_eq!(d.decode(), Err(MessageError::TooManyHeaders));
        let mut d = Decoder::new();
        d.extend(b"HELLO\r\n\r\n");
        assert_eq!(d.decode(), Err(MessageError::BadStartLine));
        let resp = Response::new(454, Some(7)).to_bytes();
        assert!(resp.starts_with(b"RTSP/1.0 454 Session Not Found\r\nCSeq: 7\r\n\r\n"));
    }
}
