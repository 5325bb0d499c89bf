//! The handshake control packet's CIF and its extensions
//! (draft-sharabayko-srt-01 §3.2.1, Figure 5; extensions §3.2.1.1–§3.2.1.3).
//!
//! ```text
//! Version (32) | Encryption Field (16) | Extension Field (16)
//! Initial Packet Sequence Number (32) | MTU (32) | Max Flow Window (32)
//! Handshake Type (32) | SRT Socket ID (32) | SYN Cookie (32)
//! Peer IP Address (128)
//! { Extension Type (16) | Extension Length (16, in words) | Contents }*
//! ```
//!
//! Strings carried in extensions (stream id, congestion control, packet
//! filter) use libsrt's byte order: the UTF-8 bytes are zero-padded to a
//! multiple of four and every 4-byte word is byte-reversed, so `"publish"`
//! travels as `lbup \0hsi` (§3.2.1.3). The peer IP address uses the same
//! per-word reversal: `127.0.0.1` travels as `01 00 00 7f`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, Bytes, BytesMut};

use super::packet::{word, PacketError, SocketId};
use super::seq::SeqNo;

/// Size of the fixed handshake CIF (§3.2.1, Figure 5).
pub const HANDSHAKE_CIF_SIZE: usize = 48;

/// Most extensions accepted in one handshake (libsrt sends at most
/// HSREQ, KMREQ, SID, congestion, filter and group: six).
pub const MAX_EXTENSIONS: usize = 8;

/// Maximum stream id length in bytes (§3.2.1.3; libsrt `MAX_SID_LENGTH`).
pub const MAX_STREAM_ID_LEN: usize = 512;

/// The "SRT magic" the listener puts in the Extension Field of its
/// induction response (§4.3.1.1).
pub const SRT_MAGIC: u16 = 0x4A17;

/// Extension Field value of a caller's induction request: `UDT_DGRAM`
/// (§4.3.1.1).
pub const EXT_FIELD_DGRAM: u16 = 2;

/// Extension Field flags of a conclusion handshake (§3.2.1, Table 4).
pub mod ext_flags {
    /// HSREQ/HSRSP extension present.
    pub const HSREQ: u16 = 0x1;
    /// KMREQ/KMRSP extension present.
    pub const KMREQ: u16 = 0x2;
    /// Further extensions (stream id, congestion, filter, group) present.
    pub const CONFIG: u16 = 0x4;
}

/// Extension types (§3.2.1, Table 5).
pub mod ext_type {
    /// SRT_CMD_HSREQ.
    pub const HSREQ: u16 = 1;
    /// SRT_CMD_HSRSP.
    pub const HSRSP: u16 = 2;
    /// SRT_CMD_KMREQ.
    pub const KMREQ: u16 = 3;
    /// SRT_CMD_KMRSP.
    pub const KMRSP: u16 = 4;
    /// SRT_CMD_SID (stream id).
    pub const SID: u16 = 5;
    /// SRT_CMD_CONGESTION.
    pub const CONGESTION: u16 = 6;
    /// SRT_CMD_FILTER.
    pub const FILTER: u16 = 7;
    /// SRT_CMD_GROUP.
    pub const GROUP: u16 = 8;
}

/// Encryption Field: the sender's key length, or none (§3.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// 0: no encryption advertised.
    None,
    /// 2: AES-128.
    Aes128,
    /// 3: AES-192.
    Aes192,
    /// 4: AES-256.
    Aes256,
}

impl Cipher {
    /// The wire value.
    pub const fn code(self) -> u16 {
        match self {
            Cipher::None => 0,
            Cipher::Aes128 => 2,
            Cipher::Aes192 => 3,
            Cipher::Aes256 => 4,
        }
    }

    /// From the wire value.
    pub fn from_code(v: u16) -> Result<Self, PacketError> {
        Ok(match v {
            0 => Cipher::None,
            2 => Cipher::Aes128,
            3 => Cipher::Aes192,
            4 => Cipher::Aes256,
            other => return Err(PacketError::UnknownEncryption(other)),
        })
    }
}

/// Why a connection was rejected, carried as `1000 + code` in the Handshake
/// Type field (§3.2.1 "Handshake Type", libsrt `SRT_REJ_*` / `SRT_REJX_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// 0 `SRT_REJ_UNKNOWN`.
    Unknown,
    /// 1 `SRT_REJ_SYSTEM`: a system call failed.
    System,
    /// 2 `SRT_REJ_PEER`: rejected by the peer.
    Peer,
    /// 3 `SRT_REJ_RESOURCE`: resource allocation failed.
    Resource,
    /// 4 `SRT_REJ_ROGUE`: malformed handshake data.
    Rogue,
    /// 5 `SRT_REJ_BACKLOG`: listener backlog full.
    Backlog,
    /// 6 `SRT_REJ_IPE`: internal program error.
    Ipe,
    /// 7 `SRT_REJ_CLOSE`: listener closing.
    Close,
    /// 8 `SRT_REJ_VERSION`: peer version too old.
    Version,
    /// 9 `SRT_REJ_RDVCOOKIE`: rendezvous cookie collision.
    RdvCookie,
    /// 10 `SRT_REJ_BADSECRET`: wrong passphrase.
    BadSecret,
    /// 11 `SRT_REJ_UNSECURE`: one side encrypts, the other does not.
    Unsecure,
    /// 12 `SRT_REJ_MESSAGEAPI`: message-API setting mismatch.
    MessageApi,
    /// 13 `SRT_REJ_CONGESTION`: congestion controller mismatch.
    Congestion,
    /// 14 `SRT_REJ_FILTER`: packet filter mismatch.
    Filter,
    /// 15 `SRT_REJ_GROUP`: group settings mismatch.
    Group,
    /// 16 `SRT_REJ_TIMEOUT`: connection timed out.
    Timeout,
    /// 17 `SRT_REJ_CRYPTO`: crypto mode mismatch.
    Crypto,
    /// 1000–1999: `SRT_REJX_*` codes defined for servers, e.g. 1403
    /// forbidden, 1404 not found, 1405 bad mode (libsrt access_control.h).
    Server(u32),
    /// 2000 and above: application-defined codes (`SRT_REJC_USERDEFINED`).
    User(u32),
    /// Any other code below 1000 not listed above.
    Other(u32),
}

impl RejectReason {
    /// `SRT_REJX_FALLBACK` (1000): unspecified server-side problem.
    pub const FALLBACK: RejectReason = RejectReason::Server(1000);
    /// `SRT_REJX_KEY_NOTSUP` (1001): unsupported key in the stream id.
    pub const KEY_NOTSUP: RejectReason = RejectReason::Server(1001);
    /// `SRT_REJX_BAD_REQUEST` (1400): stream id syntax error.
    pub const BAD_REQUEST: RejectReason = RejectReason::Server(1400);
    /// `SRT_REJX_UNAUTHORIZED` (1401): authentication failed.
    pub const UNAUTHORIZED: RejectReason = RejectReason::Server(1401);
    /// `SRT_REJX_OVERLOAD` (1402): server overloaded.
    pub const OVERLOAD: RejectReason = RejectReason::Server(1402);
    /// `SRT_REJX_FORBIDDEN` (1403): access denied.
    pub const FORBIDDEN: RejectReason = RejectReason::Server(1403);
    /// `SRT_REJX_NOTFOUND` (1404): resource not found.
    pub const NOT_FOUND: RejectReason = RejectReason::Server(1404);
    /// `SRT_REJX_BAD_MODE` (1405): mode not supported for this resource.
    pub const BAD_MODE: RejectReason = RejectReason::Server(1405);
    /// `SRT_REJX_CONFLICT` (1409): resource already in use (e.g. a second
    /// publisher).
    pub const CONFLICT: RejectReason = RejectReason::Server(1409);
    /// `SRT_REJX_ISE` (1500): internal server error.
    pub const ISE: RejectReason = RejectReason::Server(1500);
    /// `SRT_REJX_DOWN` (1503): service unavailable.
    pub const DOWN: RejectReason = RejectReason::Server(1503);

    /// Largest code that fits the Handshake Type field without colliding
    /// with the DONE/AGREEMENT/CONCLUSION values.
    pub const MAX_CODE: u32 = 0xFFFF_FFFC - 1000;

    /// The numeric code (`SRT_REJ_*` or `SRT_REJX_*`).
    pub const fn code(self) -> u32 {
        match self {
            RejectReason::Unknown => 0,
            RejectReason::System => 1,
            RejectReason::Peer => 2,
            RejectReason::Resource => 3,
            RejectReason::Rogue => 4,
            RejectReason::Backlog => 5,
            RejectReason::Ipe => 6,
            RejectReason::Close => 7,
            RejectReason::Version => 8,
            RejectReason::RdvCookie => 9,
            RejectReason::BadSecret => 10,
            RejectReason::Unsecure => 11,
            RejectReason::MessageApi => 12,
            RejectReason::Congestion => 13,
            RejectReason::Filter => 14,
            RejectReason::Group => 15,
            RejectReason::Timeout => 16,
            RejectReason::Crypto => 17,
            RejectReason::Server(c) | RejectReason::User(c) | RejectReason::Other(c) => c,
        }
    }

    /// From the numeric code; the inverse of [`RejectReason::code`] for
    /// codes up to [`RejectReason::MAX_CODE`].
    pub const fn from_code(c: u32) -> Self {
        match c {
            0 => RejectReason::Unknown,
            1 => RejectReason::System,
            2 => RejectReason::Peer,
            3 => RejectReason::Resource,
            4 => RejectReason::Rogue,
            5 => RejectReason::Backlog,
            6 => RejectReason::Ipe,
            7 => RejectReason::Close,
            8 => RejectReason::Version,
            9 => RejectReason::RdvCookie,
            10 => RejectReason::BadSecret,
            11 => RejectReason::Unsecure,
            12 => RejectReason::MessageApi,
            13 => RejectReason::Congestion,
            14 => RejectReason::Filter,
            15 => RejectReason::Group,
            16 => RejectReason::Timeout,
            17 => RejectReason::Crypto,
            1000..=1999 => RejectReason::Server(c),
            2000.. => RejectReason::User(c),
            _ => RejectReason::Other(c),
        }
    }
}

/// Handshake Type field (§3.2.1, Table 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeType {
    /// 0x00000000 WAVEAHAND (rendezvous).
    WaveAHand,
    /// 0x00000001 INDUCTION.
    Induction,
    /// 0xFFFFFFFF CONCLUSION.
    Conclusion,
    /// 0xFFFFFFFE AGREEMENT (rendezvous).
    Agreement,
    /// 0xFFFFFFFD DONE.
    Done,
    /// `1000 + code`: the connection is rejected.
    Rejection(RejectReason),
}

impl HandshakeType {
    /// The wire value. A rejection code above [`RejectReason::MAX_CODE`] is
    /// clamped to it.
    pub const fn to_u32(self) -> u32 {
        match self {
            HandshakeType::WaveAHand => 0,
            HandshakeType::Induction => 1,
            HandshakeType::Conclusion => 0xFFFF_FFFF,
            HandshakeType::Agreement => 0xFFFF_FFFE,
            HandshakeType::Done => 0xFFFF_FFFD,
            HandshakeType::Rejection(r) => {
                let c = r.code();
                1000 + if c > RejectReason::MAX_CODE {
                    RejectReason::MAX_CODE
                } else {
                    c
                }
            }
        }
    }

    /// From the wire value.
    pub fn from_u32(v: u32) -> Result<Self, PacketError> {
        Ok(match v {
            0 => HandshakeType::WaveAHand,
            1 => HandshakeType::Induction,
            0xFFFF_FFFF => HandshakeType::Conclusion,
            0xFFFF_FFFE => HandshakeType::Agreement,
            0xFFFF_FFFD => HandshakeType::Done,
            1000..=0xFFFF_FFFC => HandshakeType::Rejection(RejectReason::from_code(v - 1000)),
            other => return Err(PacketError::UnknownHandshakeType(other)),
        })
    }
}

/// SRT flags of the HSREQ/HSRSP extension (§3.2.1.1.1, Table 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SrtFlags(pub u32);

impl SrtFlags {
    /// TSBPD used by the sender.
    pub const TSBPDSND: u32 = 0x01;
    /// TSBPD used by the receiver.
    pub const TSBPDRCV: u32 = 0x02;
    /// Peer understands the KK field (must be set).
    pub const CRYPT: u32 = 0x04;
    /// Too-late packet drop enabled.
    pub const TLPKTDROP: u32 = 0x08;
    /// Periodic NAK reports enabled (libsrt `SRT_OPT_NAKREPORT`).
    pub const PERIODICNAK: u32 = 0x10;
    /// Peer understands the R field (must be set).
    pub const REXMITFLG: u32 = 0x20;
    /// Stream (buffer) mode instead of message mode.
    pub const STREAM: u32 = 0x40;
    /// Packet filter supported.
    pub const PACKET_FILTER: u32 = 0x80;

    /// `true` if every bit of `mask` is set.
    pub const fn contains(self, mask: u32) -> bool {
        self.0 & mask == mask
    }
}

/// Contents of HSREQ/HSRSP (§3.2.1.1, Figure 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SrtHsExt {
    /// SRT library version, `major << 16 | minor << 8 | patch`.
    pub version: u32,
    /// Capability flags.
    pub flags: SrtFlags,
    /// Receiver TSBPD delay in ms (high 16 bits of the third word).
    pub recv_latency_ms: u16,
    /// Sender TSBPD delay in ms (low 16 bits of the third word).
    pub send_latency_ms: u16,
}

/// One handshake extension (§3.2.1, Table 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HsExtension {
    /// SRT_CMD_HSREQ: caller's capabilities and latency.
    HsReq(SrtHsExt),
    /// SRT_CMD_HSRSP: listener's answer.
    HsRsp(SrtHsExt),
    /// SRT_CMD_KMREQ: key material (§3.2.2), raw for now.
    KmReq(Bytes),
    /// SRT_CMD_KMRSP: key material or a 4-byte error code, raw for now.
    KmRsp(Bytes),
    /// SRT_CMD_SID: stream id (§3.2.1.3), at most [`MAX_STREAM_ID_LEN`] bytes.
    StreamId(String),
    /// SRT_CMD_CONGESTION: congestion controller name (`live`, `file`).
    Congestion(String),
    /// SRT_CMD_FILTER: packet filter configuration string.
    Filter(String),
    /// SRT_CMD_GROUP: group membership (§3.2.1.4), raw.
    Group(Bytes),
    /// Any other type, kept raw.
    Unknown {
        /// Extension type.
        ty: u16,
        /// Contents (a whole number of words).
        body: Bytes,
    },
}

impl HsExtension {
    /// The extension type number.
    pub fn ty(&self) -> u16 {
        match self {
            HsExtension::HsReq(_) => ext_type::HSREQ,
            HsExtension::HsRsp(_) => ext_type::HSRSP,
            HsExtension::KmReq(_) => ext_type::KMREQ,
            HsExtension::KmRsp(_) => ext_type::KMRSP,
            HsExtension::StreamId(_) => ext_type::SID,
            HsExtension::Congestion(_) => ext_type::CONGESTION,
            HsExtension::Filter(_) => ext_type::FILTER,
            HsExtension::Group(_) => ext_type::GROUP,
            HsExtension::Unknown { ty, .. } => *ty,
        }
    }

    fn decode(ty: u16, body: &[u8]) -> Result<Self, PacketError> {
        let len_err = PacketError::ExtensionLength {
            ty,
            len: body.len(),
        };
        Ok(match ty {
            ext_type::HSREQ | ext_type::HSRSP => {
                let w = |i: usize| word(body, i * 4, "HSREQ").map_err(|_| len_err.clone());
                let lat = w(2)?;
                let ext = SrtHsExt {
                    version: w(0)?,
                    flags: SrtFlags(w(1)?),
                    recv_latency_ms: (lat >> 16) as u16,
                    send_latency_ms: (lat & 0xFFFF) as u16,
                };
                if ty == ext_type::HSREQ {
                    HsExtension::HsReq(ext)
                } else {
                    HsExtension::HsRsp(ext)
                }
            }
            ext_type::KMREQ => HsExtension::KmReq(Bytes::copy_from_slice(body)),
            ext_type::KMRSP => HsExtension::KmRsp(Bytes::copy_from_slice(body)),
            ext_type::SID => HsExtension::StreamId(decode_string(ty, body)?),
            ext_type::CONGESTION => HsExtension::Congestion(decode_string(ty, body)?),
            ext_type::FILTER => HsExtension::Filter(decode_string(ty, body)?),
            ext_type::GROUP => HsExtension::Group(Bytes::copy_from_slice(body)),
            _ => HsExtension::Unknown {
                ty,
                body: Bytes::copy_from_slice(body),
            },
        })
    }

    /// Appends the block (type, length in words, contents). Raw contents
    /// are zero-padded to a whole word; strings longer than
    /// [`MAX_STREAM_ID_LEN`] are truncated at a character boundary.
    fn encode(&self, out: &mut BytesMut) {
        let mut body = BytesMut::new();
        match self {
            HsExtension::HsReq(e) | HsExtension::HsRsp(e) => {
                body.put_u32(e.version);
                body.put_u32(e.flags.0);
                body.put_u32((u32::from(e.recv_latency_ms) << 16) | u32::from(e.send_latency_ms));
            }
            HsExtension::KmReq(b)
            | HsExtension::KmRsp(b)
            | HsExtension::Group(b)
            | HsExtension::Unknown { body: b, .. } => {
                body.put_slice(b);
                while body.len() % 4 != 0 {
                    body.put_u8(0);
                }
            }
            HsExtension::StreamId(s) | HsExtension::Congestion(s) | HsExtension::Filter(s) => {
                encode_string(s, &mut body)
            }
        }
        let words = u16::try_from(body.len() / 4).unwrap_or(u16::MAX);
        out.put_u16(self.ty());
        out.put_u16(words);
        out.put_slice(body.get(..usize::from(words) * 4).unwrap_or_default());
    }
}

/// Encodes a string in libsrt's word-reversed order (§3.2.1.3), truncated
/// to [`MAX_STREAM_ID_LEN`] bytes at a character boundary.
fn encode_string(s: &str, out: &mut BytesMut) {
    let mut end = s.len().min(MAX_STREAM_ID_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let bytes = s.as_bytes().get(..end).unwrap_or_default();
    for chunk in bytes.chunks(4) {
        let mut w = [0u8; 4];
        for (d, s) in w.iter_mut().zip(chunk) {
            *d = *s;
        }
        w.reverse();
        out.put_slice(&w);
    }
}

/// Decodes a word-reversed, zero-padded string (§3.2.1.3).
fn decode_string(ty: u16, body: &[u8]) -> Result<String, PacketError> {
    if body.len() > MAX_STREAM_ID_LEN {
        return Err(PacketError::BadString(ty));
    }
    let mut bytes = Vec::with_capacity(body.len());
    for chunk in body.chunks_exact(4) {
        bytes.extend(chunk.iter().rev());
    }
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    String::from_utf8(bytes).map_err(|_| PacketError::BadString(ty))
}

/// The handshake CIF (§3.2.1, Figure 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// Handshake version: 4 in a caller's induction, 5 afterwards.
    pub version: u32,
    /// Encryption Field: key length the sender advertises.
    pub encryption: Cipher,
    /// Extension Field: [`SRT_MAGIC`] in an induction response,
    /// [`ext_flags`] in a conclusion, [`EXT_FIELD_DGRAM`] in an induction
    /// request.
    pub extension_field: u16,
    /// Initial packet sequence number of the sender.
    pub initial_seq: SeqNo,
    /// Maximum transmission unit size in bytes (usually 1500).
    pub mtu: u32,
    /// Maximum flow window size in packets.
    pub flow_window: u32,
    /// Handshake type, or rejection reason.
    pub hs_type: HandshakeType,
    /// The sender's own SRT socket id.
    pub socket_id: SocketId,
    /// SYN cookie (§4.3.1.1).
    pub syn_cookie: u32,
    /// Peer IP address, raw wire bytes (see [`Handshake::peer_addr`]).
    pub peer_ip: [u8; 16],
    /// Extensions, at most [`MAX_EXTENSIONS`].
    pub extensions: Vec<HsExtension>,
}

impl Handshake {
    /// Decodes the CIF that follows a handshake header.
    pub fn decode(cif: &[u8]) -> Result<Self, PacketError> {
        if cif.len() < HANDSHAKE_CIF_SIZE {
            return Err(PacketError::Truncated {
                what: "handshake",
                need: HANDSHAKE_CIF_SIZE,
                have: cif.len(),
            });
        }
        let w = |i: usize| word(cif, i * 4, "handshake");
        let w1 = w(1)?;
        let mut peer_ip = [0u8; 16];
        if let Some(src) = cif.get(32..48) {
            peer_ip.copy_from_slice(src);
        }
        let mut hs = Handshake {
            version: w(0)?,
            encryption: Cipher::from_code((w1 >> 16) as u16)?,
            extension_field: (w1 & 0xFFFF) as u16,
            initial_seq: SeqNo::new(w(2)?),
            mtu: w(3)?,
            flow_window: w(4)?,
            hs_type: HandshakeType::from_u32(w(5)?)?,
            socket_id: SocketId(w(6)?),
            syn_cookie: w(7)?,
            peer_ip,
            extensions: Vec::new(),
        };
        let mut rest = cif.get(HANDSHAKE_CIF_SIZE..).unwrap_or_default();
        while !rest.is_empty() {
            let head = word(rest, 0, "handshake extension")?;
            let ty = (head >> 16) as u16;
            let declared = ((head & 0xFFFF) as usize) * 4;
            let body = rest
                .get(4..4 + declared)
                .ok_or(PacketError::ExtensionOverrun {
                    ty,
                    declared,
                    have: rest.len() - 4,
                })?;
            if hs.extensions.len() == MAX_EXTENSIONS {
                return Err(PacketError::TooManyExtensions(MAX_EXTENSIONS));
            }
            hs.extensions.push(HsExtension::decode(ty, body)?);
            rest = rest.get(4 + declared..).unwrap_or_default();
        }
        Ok(hs)
    }

    /// Appends the CIF and its extensions.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.version);
        out.put_u16(self.encryption.code());
        out.put_u16(self.extension_field);
        out.put_u32(self.initial_seq.value());
        out.put_u32(self.mtu);
        out.put_u32(self.flow_window);
        out.put_u32(self.hs_type.to_u32());
        out.put_u32(self.socket_id.0);
        out.put_u32(self.syn_cookie);
        out.put_slice(&self.peer_ip);
        for e in &self.extensions {
            e.encode(out);
        }
    }

    /// The peer address this handshake names, decoded from libsrt's byte
    /// order (each 32-bit word reversed). IPv4 when the last three words are
    /// zero.
    pub fn peer_addr(&self) -> IpAddr {
        let mut b = self.peer_ip;
        for w in b.chunks_exact_mut(4) {
            w.reverse();
        }
        match b {
            [a, b0, c, d, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] => {
                IpAddr::V4(Ipv4Addr::new(a, b0, c, d))
            }
            _ => IpAddr::V6(Ipv6Addr::from(b)),
        }
    }

    /// Sets [`Handshake::peer_ip`] from an address, in libsrt's byte order.
    pub fn set_peer_addr(&mut self, addr: IpAddr) {
        let mut b = [0u8; 16];
        match addr {
            IpAddr::V4(v4) => {
                if let Some(d) = b.get_mut(..4) {
                    d.copy_from_slice(&v4.octets());
                }
            }
            IpAddr::V6(v6) => b = v6.octets(),
        }
        for w in b.chunks_exact_mut(4) {
            w.reverse();
        }
        self.peer_ip = b;
    }

    /// The HSREQ extension, if present.
    pub fn hs_req(&self) -> Option<&SrtHsExt> {
        self.extensions.iter().find_map(|e| match e {
            HsExtension::HsReq(x) => Some(x),
            _ => None,
        })
    }

    /// The HSRSP extension, if present.
    pub fn hs_rsp(&self) -> Option<&SrtHsExt> {
        self.extensions.iter().find_map(|e| match e {
            HsExtension::HsRsp(x) => Some(x),
            _ => None,
        })
    }

    /// The stream id extension, if present.
    pub fn stream_id(&self) -> Option<&str> {
        self.extensions.iter().find_map(|e| match e {
            HsExtension::StreamId(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// The raw KMREQ contents, if present.
    pub fn km_req(&self) -> Option<&Bytes> {
        self.extensions.iter().find_map(|e| match e {
            HsExtension::KmReq(b) => Some(b),
            _ => None,
        })
    }

    /// The KMREQ contents parsed as key material (§3.2.2), if present.
    pub fn key_material(
        &self,
    ) -> Option<Result<super::key_material::KeyMaterial, super::key_material::KmError>> {
        self.km_req()
            .map(|b| super::key_material::KeyMaterial::decode(b))
    }

    /// The congestion controller name, if present.
    pub fn congestion(&self) -> Option<&str> {
        self.extensions.iter().find_map(|e| match e {
            HsExtension::Congestion(s) => Some(s.as_str()),
            _ => None,
        })
    }
}
