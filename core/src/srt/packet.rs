//! SRT packet codec: the 16-byte header, data packets and every control
//! packet type (draft-sharabayko-srt-01 §3 "Packet Structure").
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |F|   data: sequence number / control: type (15) | subtype (16)  |
//! |  data: PP|O|KK|R|message number / control: type-specific info  |
//! |                          Timestamp                            |
//! |                    Destination Socket ID                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Decoding takes a whole UDP payload, is bounded by [`MAX_PACKET_SIZE`],
//! never panics and reports malformed input as a [`PacketError`]. Encoding
//! writes into a [`BytesMut`]; a data packet's payload can instead be sent
//! by reference after [`DataPacket::header_bytes`] (zero copy).

use bytes::{BufMut, Bytes, BytesMut};

use super::handshake::Handshake;
use super::seq::{MsgNo, SeqNo, Timestamp};

/// Size of the SRT packet header (draft-sharabayko-srt-01 §3, Figure 2).
pub const HEADER_SIZE: usize = 16;

/// Largest UDP payload accepted or produced: libsrt's maximum MSS of 1500
/// bytes (SRTO_MSS) minus the 28 bytes of IPv4 + UDP headers.
pub const MAX_PACKET_SIZE: usize = 1500 - 28;

/// Largest number of loss-list words in one NAK (bounded by the datagram).
pub const MAX_LOSS_WORDS: usize = (MAX_PACKET_SIZE - HEADER_SIZE) / 4;

/// Why a datagram is not a valid SRT packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// Fewer bytes than a structure needs.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Bytes required.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The datagram exceeds [`MAX_PACKET_SIZE`].
    #[error("datagram of {0} bytes exceeds the {MAX_PACKET_SIZE}-byte limit")]
    TooLong(usize),
    /// Control type not defined by the spec (§3.2, Table 1).
    #[error("unknown control type {0:#06x}")]
    UnknownControlType(u16),
    /// A control CIF whose length is not a whole number of 32-bit words.
    #[error("{what} body of {len} bytes is not a multiple of 4")]
    Unaligned {
        /// The structure being read.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A NAK loss list that ends inside a range (§3.2.5, Appendix A).
    #[error("NAK loss list ends with an open range")]
    OpenLossRange,
    /// A NAK loss range whose end precedes its start.
    #[error("NAK loss range {first}..={last} runs backwards")]
    BackwardLossRange {
        /// Range start.
        first: SeqNo,
        /// Range end.
        last: SeqNo,
    },
    /// A NAK with no lost sequence numbers.
    #[error("NAK without a loss list")]
    EmptyLossList,
    /// Handshake type value not defined by §3.2.1 (and not a rejection).
    #[error("unknown handshake type {0:#010x}")]
    UnknownHandshakeType(u32),
    /// Encryption field value not defined by §3.2.1 (0, 2, 3, 4).
    #[error("unknown handshake encryption field {0}")]
    UnknownEncryption(u16),
    /// A handshake extension whose declared length overruns the packet.
    #[error("handshake extension {ty} declares {declared} bytes, {have} remain")]
    ExtensionOverrun {
        /// Extension type.
        ty: u16,
        /// Declared length in bytes.
        declared: usize,
        /// Bytes left in the packet.
        have: usize,
    },
    /// A handshake extension with a content length that its type forbids.
    #[error("handshake extension {ty} has invalid length {len}")]
    ExtensionLength {
        /// Extension type.
        ty: u16,
        /// Content length in bytes.
        len: usize,
    },
    /// More handshake extensions than [`super::handshake::MAX_EXTENSIONS`].
    #[error("more than {0} handshake extensions")]
    TooManyExtensions(usize),
    /// A string extension (stream id, congestion, filter) that is too long
    /// or not UTF-8.
    #[error("invalid string in handshake extension {0}")]
    BadString(u16),
}

/// An SRT socket id (draft-sharabayko-srt-01 §3 "Destination Socket ID").
/// Zero addresses a listener during the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct SocketId(pub u32);

/// Packet position flag PP of a data packet (§3.1, "PP").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketPosition {
    /// `0b10`: first packet of a multi-packet message.
    First,
    /// `0b00`: middle packet of a message.
    Middle,
    /// `0b01`: last packet of a multi-packet message.
    Last,
    /// `0b11`: a message in one packet (always the case in live mode).
    Only,
}

impl PacketPosition {
    const fn bits(self) -> u32 {
        match self {
            PacketPosition::First => 0b10,
            PacketPosition::Middle => 0b00,
            PacketPosition::Last => 0b01,
            PacketPosition::Only => 0b11,
        }
    }

    const fn from_bits(b: u32) -> Self {
        match b & 0b11 {
            0b10 => PacketPosition::First,
            0b00 => PacketPosition::Middle,
            0b01 => PacketPosition::Last,
            _ => PacketPosition::Only,
        }
    }
}

/// Encryption key flag KK of a data packet (§3.1, "KK"; §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFlag {
    /// `0b00`: payload not encrypted.
    None,
    /// `0b01`: encrypted with the even key.
    Even,
    /// `0b10`: encrypted with the odd key.
    Odd,
    /// `0b11`: both keys (used only in key-material messages).
    Both,
}

impl KeyFlag {
    /// The two-bit wire value.
    pub const fn bits(self) -> u32 {
        match self {
            KeyFlag::None => 0,
            KeyFlag::Even => 1,
            KeyFlag::Odd => 2,
            KeyFlag::Both => 3,
        }
    }

    /// From the two-bit wire value (higher bits ignored).
    pub const fn from_bits(b: u32) -> Self {
        match b & 0b11 {
            0 => KeyFlag::None,
            1 => KeyFlag::Even,
            2 => KeyFlag::Odd,
            _ => KeyFlag::Both,
        }
    }
}

/// A data packet (draft-sharabayko-srt-01 §3.1, Figure 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPacket {
    /// Packet sequence number.
    pub seq: SeqNo,
    /// PP: position of the packet in its message.
    pub position: PacketPosition,
    /// O: the message must be delivered in order.
    pub in_order: bool,
    /// KK: which key encrypted the payload.
    pub key: KeyFlag,
    /// R: the packet is a retransmission.
    pub retransmitted: bool,
    /// Message number.
    pub msg_no: MsgNo,
    /// Timestamp (µs since connection start).
    pub timestamp: Timestamp,
    /// Destination socket id.
    pub dest: SocketId,
    /// Payload (an MPEG-TS chunk in live mode).
    pub payload: Bytes,
}

impl DataPacket {
    /// The 16-byte header, for sending `[header, payload]` with vectored
    /// I/O without copying the payload.
    pub fn header_bytes(&self) -> [u8; HEADER_SIZE] {
        let w1 = (self.position.bits() << 30)
            | (u32::from(self.in_order) << 29)
            | (self.key.bits() << 27)
            | (u32::from(self.retransmitted) << 26)
            | self.msg_no.value();
        let mut h = [0u8; HEADER_SIZE];
        let words = [self.seq.value(), w1, self.timestamp.0, self.dest.0];
        for (chunk, w) in h.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        h
    }
}

/// Extra fields of a small or full ACK (§3.2.4, Figure 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AckStats {
    /// RTT in µs.
    pub rtt: u32,
    /// RTT variance in µs.
    pub rtt_var: u32,
    /// Available receiver buffer size in packets.
    pub buffer_available: u32,
}

/// Rate fields present only in a full ACK (§3.2.4, Figure 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AckRates {
    /// Packets receiving rate, packets per second.
    pub packet_rate: u32,
    /// Estimated link capacity, packets per second.
    pub link_capacity: u32,
    /// Receiving rate, bytes per second.
    pub byte_rate: u32,
}

/// The three ACK forms (§3.2.4): light (last acknowledged sequence number
/// only, 4 bytes), small (16 bytes) and full (28 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckKind {
    /// Light ACK: CIF holds only the last acknowledged sequence number.
    Light,
    /// Small ACK: adds RTT, RTT variance and available buffer.
    Small(AckStats),
    /// Full ACK: adds the rate estimates as well.
    Full(AckStats, AckRates),
}

/// An ACK control packet (§3.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ack {
    /// ACK number (type-specific field); 0 for light ACKs in libsrt.
    pub ack_no: u32,
    /// Last acknowledged packet sequence number + 1: the first sequence
    /// number not yet received in order.
    pub last_ack: SeqNo,
    /// Which ACK form, with its extra fields.
    pub kind: AckKind,
}

/// A loss list: lost sequence numbers as inclusive ranges
/// (§3.2.5 "NAK", Appendix A "Packet Sequence List Coding").
///
/// On the wire a single lost packet is one word with the top bit clear; a
/// range is two words, the first with the top bit set. Invariant: every
/// range has `first` not after `last`, and there are at most
/// [`MAX_LOSS_WORDS`] ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LossList {
    ranges: Vec<(SeqNo, SeqNo)>,
}

impl LossList {
    /// An empty list.
    pub const fn new() -> Self {
        LossList { ranges: Vec::new() }
    }

    /// Appends the inclusive range `first ..= last`. Returns `false` (and
    /// changes nothing) if the range runs backwards or the list would no
    /// longer fit one packet.
    pub fn push(&mut self, first: SeqNo, last: SeqNo) -> bool {
        if first.is_after(last) || self.encoded_len() + 8 > MAX_PACKET_SIZE - HEADER_SIZE {
            return false;
        }
        self.ranges.push((first, last));
        true
    }

    /// The ranges, in the order they were sent.
    pub fn ranges(&self) -> &[(SeqNo, SeqNo)] {
        &self.ranges
    }

    /// `true` if the list holds no range.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Total number of sequence numbers covered (saturating).
    pub fn count(&self) -> u64 {
        self.ranges
            .iter()
            .map(|&(a, b)| u64::from(a.range_len(b).unwrap_or(0)))
            .sum()
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        self.ranges
            .iter()
            .map(|&(a, b)| if a == b { 4 } else { 8 })
            .sum()
    }

    fn encode(&self, out: &mut BytesMut) {
        for &(a, b) in &self.ranges {
            if a == b {
                out.put_u32(a.value());
            } else {
                out.put_u32(a.value() | 0x8000_0000);
                out.put_u32(b.value());
            }
        }
    }

    fn decode(cif: &[u8]) -> Result<Self, PacketError> {
        if cif.len() % 4 != 0 {
            return Err(PacketError::Unaligned {
                what: "NAK",
                len: cif.len(),
            });
        }
        let mut words = cif
            .chunks_exact(4)
            .filter_map(|c| <[u8; 4]>::try_from(c).ok())
            .map(u32::from_be_bytes);
        let mut ranges = Vec::with_capacity((cif.len() / 4).min(MAX_LOSS_WORDS));
        while let Some(w) = words.next() {
            if w & 0x8000_0000 != 0 {
                let first = SeqNo::new(w);
                let last = words.next().ok_or(PacketError::OpenLossRange)?;
                let last = SeqNo::new(last);
                if first.is_after(last) {
                    return Err(PacketError::BackwardLossRange { first, last });
                }
                ranges.push((first, last));
            } else {
                let s = SeqNo::new(w);
                ranges.push((s, s));
            }
        }
        if ranges.is_empty() {
            return Err(PacketError::EmptyLossList);
        }
        Ok(LossList { ranges })
    }
}

/// Control packet types (§3.2, Table 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ControlType {
    /// HANDSHAKE (§3.2.1).
    Handshake = 0x0000,
    /// KEEPALIVE (§3.2.3).
    KeepAlive = 0x0001,
    /// ACK (§3.2.4).
    Ack = 0x0002,
    /// NAK / loss report (§3.2.5).
    Nak = 0x0003,
    /// Congestion warning (§3.2.6).
    CongestionWarning = 0x0004,
    /// SHUTDOWN (§3.2.7).
    Shutdown = 0x0005,
    /// ACKACK (§3.2.8).
    AckAck = 0x0006,
    /// DROPREQ (§3.2.9).
    DropReq = 0x0007,
    /// PEERERROR (§3.2.10).
    PeerError = 0x0008,
    /// User-defined type (§3.2.2 carries key material this way in HSv4).
    UserDefined = 0x7FFF,
}

impl ControlType {
    fn from_u16(v: u16) -> Result<Self, PacketError> {
        Ok(match v {
            0x0000 => ControlType::Handshake,
            0x0001 => ControlType::KeepAlive,
            0x0002 => ControlType::Ack,
            0x0003 => ControlType::Nak,
            0x0004 => ControlType::CongestionWarning,
            0x0005 => ControlType::Shutdown,
            0x0006 => ControlType::AckAck,
            0x0007 => ControlType::DropReq,
            0x0008 => ControlType::PeerError,
            0x7FFF => ControlType::UserDefined,
            other => return Err(PacketError::UnknownControlType(other)),
        })
    }
}

/// The body of a control packet, one variant per type (§3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Handshake (§3.2.1).
    Handshake(Handshake),
    /// Keep-alive (§3.2.3).
    KeepAlive,
    /// Acknowledgement (§3.2.4).
    Ack(Ack),
    /// Negative acknowledgement with the loss list (§3.2.5).
    Nak(LossList),
    /// Congestion warning (§3.2.6, legacy).
    CongestionWarning,
    /// Shutdown (§3.2.7).
    Shutdown,
    /// Acknowledgement of an ACK, echoing its number (§3.2.8).
    AckAck {
        /// The ACK number being acknowledged.
        ack_no: u32,
    },
    /// Message drop request (§3.2.9).
    DropReq {
        /// Message number to drop (type-specific field).
        msg_no: u32,
        /// First sequence number of the message.
        first: SeqNo,
        /// Last sequence number of the message.
        last: SeqNo,
    },
    /// Peer error (§3.2.10); libsrt sends code 4000 on a file write error.
    PeerError {
        /// Error code (type-specific field).
        code: u32,
    },
    /// User-defined control packet, kept raw (§3.2).
    UserDefined {
        /// Subtype field.
        subtype: u16,
        /// Type-specific field.
        info: u32,
        /// Raw CIF.
        body: Bytes,
    },
}

impl Control {
    /// The control type of this body.
    pub fn control_type(&self) -> ControlType {
        match self {
            Control::Handshake(_) => ControlType::Handshake,
            Control::KeepAlive => ControlType::KeepAlive,
            Control::Ack(_) => ControlType::Ack,
            Control::Nak(_) => ControlType::Nak,
            Control::CongestionWarning => ControlType::CongestionWarning,
            Control::Shutdown => ControlType::Shutdown,
            Control::AckAck { .. } => ControlType::AckAck,
            Control::DropReq { .. } => ControlType::DropReq,
            Control::PeerError { .. } => ControlType::PeerError,
            Control::UserDefined { .. } => ControlType::UserDefined,
        }
    }
}

/// A control packet (§3.2, Figure 4): header fields plus the typed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPacket {
    /// Timestamp (µs since connection start).
    pub timestamp: Timestamp,
    /// Destination socket id (0 for a handshake to a listener).
    pub dest: SocketId,
    /// Type-specific contents.
    pub body: Control,
}

/// One SRT packet: data or control (§3, F bit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// F = 0.
    Data(DataPacket),
    /// F = 1.
    Control(ControlPacket),
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    crate::big_endian::read_be(b, at, 4)
}

/// Reads the big-endian word at `at`, or reports which structure is short.
pub(crate) fn word(b: &[u8], at: usize, what: &'static str) -> Result<u32, PacketError> {
    be32(b, at).ok_or(PacketError::Truncated {
        what,
        need: at + 4,
        have: b.len(),
    })
}

/// Padding libsrt appends to control packets without a CIF (keep-alive,
/// shutdown, ACKACK): one zero word. Peers accept packets with or without it.
const EMPTY_CIF_PADDING: [u8; 4] = [0; 4];

impl Packet {
    /// The destination socket id, read from any packet type.
    pub fn dest(&self) -> SocketId {
        match self {
            Packet::Data(d) => d.dest,
            Packet::Control(c) => c.dest,
        }
    }

    /// Peeks at the destination socket id of a raw datagram without decoding
    /// it (for endpoint routing), `None` if shorter than a header.
    pub fn peek_dest(datagram: &[u8]) -> Option<SocketId> {
        be32(datagram, 12).map(SocketId)
    }

    /// Decodes one UDP payload (draft-sharabayko-srt-01 §3). A data packet's
    /// payload is a zero-copy slice of `datagram`.
    pub fn decode(datagram: &Bytes) -> Result<Packet, PacketError> {
        let b: &[u8] = datagram;
        if b.len() > MAX_PACKET_SIZE {
            return Err(PacketError::TooLong(b.len()));
        }
        let w0 = word(b, 0, "header")?;
        let w1 = word(b, 4, "header")?;
        let timestamp = Timestamp(word(b, 8, "header")?);
        let dest = SocketId(word(b, 12, "header")?);
        if w0 & 0x8000_0000 == 0 {
            return Ok(Packet::Data(DataPacket {
                seq: SeqNo::new(w0),
                position: PacketPosition::from_bits(w1 >> 30),
                in_order: w1 & (1 << 29) != 0,
                key: KeyFlag::from_bits(w1 >> 27),
                retransmitted: w1 & (1 << 26) != 0,
                msg_no: MsgNo::new(w1),
                timestamp,
                dest,
                payload: datagram.slice(HEADER_SIZE..),
            }));
        }
        let ty = ControlType::from_u16(((w0 >> 16) & 0x7FFF) as u16)?;
        let subtype = (w0 & 0xFFFF) as u16;
        let cif = b.get(HEADER_SIZE..).unwrap_or_default();
        let body = match ty {
            ControlType::Handshake => Control::Handshake(Handshake::decode(cif)?),
            ControlType::KeepAlive => Control::KeepAlive,
            ControlType::Ack => Control::Ack(decode_ack(w1, cif)?),
            ControlType::Nak => Control::Nak(LossList::decode(cif)?),
            ControlType::CongestionWarning => Control::CongestionWarning,
            ControlType::Shutdown => Control::Shutdown,
            ControlType::AckAck => Control::AckAck { ack_no: w1 },
            ControlType::DropReq => Control::DropReq {
                msg_no: w1,
                first: SeqNo::new(word(cif, 0, "DROPREQ")?),
                last: SeqNo::new(word(cif, 4, "DROPREQ")?),
            },
            ControlType::PeerError => Control::PeerError { code: w1 },
            ControlType::UserDefined => Control::UserDefined {
                subtype,
                info: w1,
                body: datagram.slice(HEADER_SIZE..),
            },
        };
        Ok(Packet::Control(ControlPacket {
            timestamp,
            dest,
            body,
        }))
    }

    /// Decodes from a borrowed slice (copies the bytes once).
    pub fn decode_slice(datagram: &[u8]) -> Result<Packet, PacketError> {
        if datagram.len() > MAX_PACKET_SIZE {
            return Err(PacketError::TooLong(datagram.len()));
        }
        Packet::decode(&Bytes::copy_from_slice(datagram))
    }

    /// Appends the encoded packet to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Packet::Data(d) => {
                out.put_slice(&d.header_bytes());
                out.put_slice(&d.payload);
            }
            Packet::Control(c) => c.encode(out),
        }
    }

    /// The encoded packet as `Bytes`.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_SIZE + 64);
        self.encode(&mut out);
        out.freeze()
    }
}

fn decode_ack(ack_no: u32, cif: &[u8]) -> Result<Ack, PacketError> {
    let last_ack = SeqNo::new(word(cif, 0, "ACK")?);
    let w = |i: usize| be32(cif, i * 4).unwrap_or(0);
    let kind = if cif.len() >= 28 {
        AckKind::Full(
            AckStats {
                rtt: w(1),
                rtt_var: w(2),
                buffer_available: w(3),
            },
            AckRates {
                packet_rate: w(4),
                link_capacity: w(5),
                byte_rate: w(6),
            },
        )
    } else if cif.len() >= 16 {
        AckKind::Small(AckStats {
            rtt: w(1),
            rtt_var: w(2),
            buffer_available: w(3),
        })
    } else {
        AckKind::Light
    };
    Ok(Ack {
        ack_no,
        last_ack,
        kind,
    })
}

impl ControlPacket {
    /// Appends the encoded control packet to `out` (§3.2, Figure 4).
    pub fn encode(&self, out: &mut BytesMut) {
        let (subtype, info): (u16, u32) = match &self.body {
            Control::Ack(a) => (0, a.ack_no),
            Control::AckAck { ack_no } => (0, *ack_no),
            Control::DropReq { msg_no, .. } => (0, *msg_no),
            Control::PeerError { code } => (0, *code),
            Control::UserDefined { subtype, info, .. } => (*subtype, *info),
            _ => (0, 0),
        };
        let ty = self.body.control_type() as u16;
        out.put_u32(0x8000_0000 | (u32::from(ty) << 16) | u32::from(subtype));
        out.put_u32(info);
        out.put_u32(self.timestamp.0);
        out.put_u32(self.dest.0);
        match &self.body {
            Control::Handshake(h) => h.encode(out),
            Control::KeepAlive | Control::Shutdown | Control::AckAck { .. } => {
                out.put_slice(&EMPTY_CIF_PADDING)
            }
            Control::CongestionWarning | Control::PeerError { .. } => {}
            Control::Ack(a) => {
                out.put_u32(a.last_ack.value());
                let (stats, rates) = match a.kind {
                    AckKind::Light => (None, None),
                    AckKind::Small(s) => (Some(s), None),
                    AckKind::Full(s, r) => (Some(s), Some(r)),
                };
                if let Some(s) = stats {
                    out.put_u32(s.rtt);
                    out.put_u32(s.rtt_var);
                    out.put_u32(s.buffer_available);
                }
                if let Some(r) = rates {
                    out.put_u32(r.packet_rate);
                    out.put_u32(r.link_capacity);
                    out.put_u32(r.byte_rate);
                }
            }
            Control::Nak(list) => list.encode(out),
            Control::DropReq { first, last, .. } => {
                out.put_u32(first.value());
                out.put_u32(last.value());
            }
            Control::UserDefined { body, .. } => out.put_slice(body),
        }
    }

    /// The encoded packet as `Bytes`.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_SIZE + 64);
        self.encode(&mut out);
        out.freeze()
    }
}
