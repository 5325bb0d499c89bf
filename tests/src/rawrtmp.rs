//! Hand-made RTMP bytes, independent of the crate under test: handshake,
//! chunk headers, AMF0 values and command messages, for hostile-input tests
//! (RTMP spec §5.2 handshake, §5.3 chunks, §5.4 control; AMF0 spec).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Message type ids (RTMP spec §5.4, §7.1).
pub mod type_id {
    /// Set Chunk Size.
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// AMF0 command.
    pub const COMMAND_AMF0: u8 = 20;
    /// AMF0 data.
    pub const DATA_AMF0: u8 = 18;
    /// Video.
    pub const VIDEO: u8 = 9;
}

/// A basic header + type-0 message header (RTMP spec §5.3.1.1, §5.3.1.2.1).
pub fn type0_header(csid: u8, timestamp: u32, len: u32, type_id: u8, stream_id: u32) -> Vec<u8> {
    let mut b = vec![csid & 0x3F];
    b.extend_from_slice(&timestamp.min(0xFF_FFFF).to_be_bytes()[1..]);
    b.extend_from_slice(&len.to_be_bytes()[1..]);
    b.push(type_id);
    b.extend_from_slice(&stream_id.to_le_bytes());
    b
}

/// A whole message as a type-0 chunk plus type-3 continuations of
/// `chunk_size` bytes.
pub fn message(
    csid: u8,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut b = type0_header(csid, 0, len, type_id, stream_id);
    for (i, part) in payload.chunks(chunk_size.max(1)).enumerate() {
        if i > 0 {
            b.push(0xC0 | (csid & 0x3F));
        }
        b.extend_from_slice(part);
    }
    b
}

/// AMF0 encoders (AMF0 spec §2).
pub mod amf0 {
    /// Number (§2.2).
    pub fn number(out: &mut Vec<u8>, v: f64) {
        out.push(0x00);
        out.extend_from_slice(&v.to_be_bytes());
    }
    /// String (§2.4).
    pub fn string(out: &mut Vec<u8>, s: &str) {
        out.push(0x02);
        out.extend_from_slice(&u16::try_from(s.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    /// Null (§2.7).
    pub fn null(out: &mut Vec<u8>) {
        out.push(0x05);
    }
    /// An object property name (UTF-8 without marker).
    pub fn key(out: &mut Vec<u8>, k: &str) {
        out.extend_from_slice(&u16::try_from(k.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
    }
    /// Object start marker (§2.5).
    pub fn object_start(out: &mut Vec<u8>) {
        out.push(0x03);
    }
    /// Object end: empty key + end marker (§2.11).
    pub fn object_end(out: &mut Vec<u8>) {
        out.extend_from_slice(&[0x00, 0x00, 0x09]);
    }
}

/// The AMF0 body of `connect` for `app`.
pub fn connect_body(app: &str) -> Vec<u8> {
    let mut b = Vec::new();
    amf0::string(&mut b, "connect");
    amf0::number(&mut b, 1.0);
    amf0::object_start(&mut b);
    amf0::key(&mut b, "app");
    amf0::string(&mut b, app);
    amf0::key(&mut b, "tcUrl");
    amf0::string(&mut b, &format!("rtmp://127.0.0.1/{app}"));
    amf0::object_end(&mut b);
    b
}

/// `connect` whose command object nests `depth` objects (`{a:{a:{...`),
/// never closed: a nesting bomb.
pub fn nested_object_bomb(depth: usize) -> Vec<u8> {
    let mut b = Vec::new();
    amf0::string(&mut b, "connect");
    amf0::number(&mut b, 1.0);
    for _ in 0..depth {
        amf0::object_start(&mut b);
        amf0::key(&mut b, "a");
    }
    b
}

/// `connect` whose command object is strict arrays of one element nested
/// `depth` deep (§2.12).
pub fn nested_array_bomb(depth: usize) -> Vec<u8> {
    let mut b = Vec::new();
    amf0::string(&mut b, "connect");
    amf0::number(&mut b, 1.0);
    for _ in 0..depth {
        b.push(0x0A);
        b.extend_from_slice(&1u32.to_be_bytes());
    }
    b
}

/// `connect` whose command object is a strict array claiming 2^32-1
/// elements with none present (must not be preallocated).
pub fn array_length_bomb() -> Vec<u8> {
    let mut b = Vec::new();
    amf0::string(&mut b, "connect");
    amf0::number(&mut b, 1.0);
    b.push(0x0A);
    b.extend_from_slice(&u32::MAX.to_be_bytes());
    amf0::number(&mut b, 1.0);
    b
}

/// `createStream` (transaction 2).
pub fn create_stream_body() -> Vec<u8> {
    let mut b = Vec::new();
    amf0::string(&mut b, "createStream");
    amf0::number(&mut b, 2.0);
    amf0::null(&mut b);
    b
}

/// `publish name live` (transaction 3).
pub fn publish_body(name: &str) -> Vec<u8> {
    let mut b = Vec::new();
    amf0::string(&mut b, "publish");
    amf0::number(&mut b, 3.0);
    amf0::null(&mut b);
    amf0::string(&mut b, name);
    amf0::string(&mut b, "live");
    b
}

/// A TCP connection speaking raw bytes.
pub struct Raw {
    /// The socket.
    pub stream: TcpStream,
}

/// How a connection ended when we waited for the server to close it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// Read returned 0 (FIN) after `bytes` bytes.
    Eof {
        /// Bytes the server sent before closing.
        bytes: usize,
    },
    /// The connection was reset.
    Reset(String),
    /// Still open after the timeout.
    StillOpen {
        /// Bytes the server sent meanwhile.
        bytes: usize,
    },
}

impl Raw {
    /// Connects (2 s timeout).
    pub fn connect(addr: SocketAddr) -> std::io::Result<Raw> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        Ok(Raw { stream })
    }

    /// The local address (the server logs it as the peer).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Writes all of `b`; a write error is returned (the server may already
    /// have closed).
    pub fn send(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(b)?;
        self.stream.flush()
    }

    /// Simple handshake as a client (RTMP spec §5.2.2–5.2.4): C0+C1, read
    /// S0+S1+S2, send C2 (echo of S1).
    pub fn handshake(&mut self) -> std::io::Result<()> {
        let mut c01 = vec![0u8; 1537];
        c01[0] = 3;
        for (i, b) in c01.iter_mut().enumerate().skip(9) {
            *b = (i * 7 + 13) as u8;
        }
        self.send(&c01)?;
        let mut s012 = vec![0u8; 1 + 1536 + 1536];
        self.stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        self.stream.read_exact(&mut s012)?;
        if s012[0] != 3 {
            return Err(std::io::Error::other(format!("S0 version {}", s012[0])));
        }
        let s1 = s012[1..1537].to_vec();
        self.send(&s1)
    }

    /// Handshake, then `connect` to `app` on chunk stream 3.
    pub fn handshake_and_connect(&mut self, app: &str) -> std::io::Result<()> {
        self.handshake()?;
        self.send(&message(
            3,
            type_id::COMMAND_AMF0,
            0,
            &connect_body(app),
            128,
        ))
    }

    /// Reads and discards until the server closes, or `timeout` passes.
    pub fn wait_closed(&mut self, timeout: Duration) -> Closed {
        let deadline = Instant::now() + timeout;
        let mut total = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Closed::StillOpen { bytes: total };
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(&mut buf) {
                Ok(0) => return Closed::Eof { bytes: total },
                Ok(n) => total += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Closed::StillOpen { bytes: total }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Closed::Reset(e.to_string()),
            }
        }
    }
}
