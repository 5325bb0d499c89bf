//! Chunk header constants and encoding helpers (RTMP spec §5.3.1).
//!
//! A chunk header is a basic header (1–3 bytes: `fmt` and chunk stream id,
//! §5.3.1.1), a message header of 11, 7, 3 or 0 bytes for `fmt` 0–3
//! (§5.3.1.2), and a 4-byte extended timestamp when the 24-bit timestamp
//! field holds `0xFFFFFF` (§5.3.1.3).

use bytes::BufMut;

/// Chunk size both peers start with (RTMP spec §5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;

/// Largest chunk size a Set Chunk Size message may announce: 2^31-1
/// (RTMP spec §5.4.1, the top bit must be zero).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;

/// Smallest chunk stream id usable for messages (0 and 1 select the longer
/// basic header forms, RTMP spec §5.3.1.1).
pub const MIN_CSID: u32 = 2;

/// Largest chunk stream id, reachable with the 3-byte basic header
/// (RTMP spec §5.3.1.1): 65599.
pub const MAX_CSID: u32 = 65_599;

/// Chunk stream id reserved for protocol control messages (RTMP spec §5.4).
pub const PROTOCOL_CONTROL_CSID: u32 = 2;

/// Value of the 24-bit timestamp field meaning "an extended timestamp
/// follows" (RTMP spec §5.3.1.3).
pub const EXTENDED_TIMESTAMP_MARKER: u32 = 0x00FF_FFFF;

/// Largest message length the 24-bit length field can carry (RTMP spec §5.3.1.2.1).
pub const MAX_MESSAGE_LEN_FIELD: u32 = 0x00FF_FFFF;

/// Longest possible chunk header: 3-byte basic header, 11-byte type-0
/// message header and 4-byte extended timestamp.
pub const MAX_HEADER_LEN: usize = 18;

/// The chunk message header format, the 2-bit `fmt` field (RTMP spec §5.3.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkType {
    /// Type 0: absolute timestamp, length, type id and stream id (11 bytes).
    Full = 0,
    /// Type 1: timestamp delta, length and type id; same stream id (7 bytes).
    SameStream = 1,
    /// Type 2: timestamp delta only (3 bytes).
    TimestampDelta = 2,
    /// Type 3: no message header; continuation or exact repeat (0 bytes).
    Continuation = 3,
}

impl ChunkType {
    /// The chunk type for a 2-bit `fmt` value (only the low two bits count).
    pub fn from_fmt(fmt: u8) -> Self {
        match fmt & 3 {
            0 => ChunkType::Full,
            1 => ChunkType::SameStream,
            2 => ChunkType::TimestampDelta,
            _ => ChunkType::Continuation,
        }
    }

    /// Length of the message header for this type: 11, 7, 3 or 0 bytes.
    pub fn message_header_len(self) -> usize {
        match self {
            ChunkType::Full => 11,
            ChunkType::SameStream => 7,
            ChunkType::TimestampDelta => 3,
            ChunkType::Continuation => 0,
        }
    }
}

/// Length of the basic header for `csid`: 1, 2 or 3 bytes (RTMP spec §5.3.1.1).
pub fn basic_header_len(csid: u32) -> usize {
    if csid < 64 {
        1
    } else if csid < 320 {
        2
    } else {
        3
    }
}

/// Whether `csid` is a valid chunk stream id for a message (2..=65599).
pub fn is_valid_csid(csid: u32) -> bool {
    (MIN_CSID..=MAX_CSID).contains(&csid)
}

/// Writes a basic header (RTMP spec §5.3.1.1). `csid` must be valid
/// ([`is_valid_csid`]); the writer checks this before calling.
pub fn put_basic_header(out: &mut impl BufMut, ty: ChunkType, csid: u32) {
    let fmt = (ty as u8) << 6;
    if csid < 64 {
        out.put_u8(fmt | csid as u8);
    } else if csid < 320 {
        out.put_u8(fmt);
        out.put_u8((csid - 64) as u8);
    } else {
        let v = csid - 64;
        out.put_u8(fmt | 1);
        out.put_u8((v & 0xFF) as u8);
        out.put_u8(((v >> 8) & 0xFF) as u8);
    }
}

/// Writes a 24-bit big-endian integer.
#[inline]
pub(crate) fn put_u24(out: &mut impl BufMut, v: u32) {
    out.put_u8((v >> 16) as u8);
    out.put_u8((v >> 8) as u8);
    out.put_u8(v as u8);
}

/// Writes a whole chunk header: basic header, the message header fields that
/// `ty` carries, and the extended timestamp when `ts_field >= 0xFFFFFF`
/// (RTMP spec §5.3.1). `ts_field` is the absolute timestamp for type 0 and
/// the delta for types 1–3 (for type 3 only its extended part is written).
pub fn put_chunk_header(
    out: &mut impl BufMut,
    ty: ChunkType,
    csid: u32,
    ts_field: u32,
    fields: (u32, u8, u32),
) {
    let (length, type_id, stream_id) = fields;
    put_basic_header(out, ty, csid);
    let extended = ts_field >= EXTENDED_TIMESTAMP_MARKER;
    let ts24 = if extended {
        EXTENDED_TIMESTAMP_MARKER
    } else {
        ts_field
    };
    match ty {
        ChunkType::Full => {
            put_u24(out, ts24);
            put_u24(out, length);
            out.put_u8(type_id);
            out.put_u32_le(stream_id);
        }
        ChunkType::SameStream => {
            put_u24(out, ts24);
            put_u24(out, length);
            out.put_u8(type_id);
        }
        ChunkType::TimestampDelta => put_u24(out, ts24),
        ChunkType::Continuation => {}
    }
    if extended {
        out.put_u32(ts_field);
    }
}

/// Length of the header [`put_chunk_header`] writes.
pub fn chunk_header_len(ty: ChunkType, csid: u32, ts_field: u32) -> usize {
    basic_header_len(csid)
        + ty.message_header_len()
        + if ts_field >= EXTENDED_TIMESTAMP_MARKER {
            4
        } else {
            0
        }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn basic_header_forms() {
        let mut v = Vec::new();
        put_basic_header(&mut v, ChunkType::Full, 3);
        assert_eq!(v, [0x03]);
        v.clear();
        put_basic_header(&mut v, ChunkType::Continuation, 63);
        assert_eq!(v, [0xC0 | 63]);
        v.clear();
        put_basic_header(&mut v, ChunkType::SameStream, 64);
        assert_eq!(v, [0x40, 0]);
        v.clear();
        put_basic_header(&mut v, ChunkType::Full, 319);
        assert_eq!(v, [0x00, 255]);
        v.clear();
        put_basic_header(&mut v, ChunkType::Full, 320);
        assert_eq!(v, [0x01, 0, 1]);
        v.clear();
        put_basic_header(&mut v, ChunkType::TimestampDelta, MAX_CSID);
        assert_eq!(v, [0x81, 255, 255]);
        assert_eq!(basic_header_len(63), 1);
        assert_eq!(basic_header_len(64), 2);
        assert_eq!(basic_header_len(319), 2);
        assert_eq!(basic_header_len(320), 3);
    }

    #[test]
    fn header_lengths_match_writes() {
        for ty in [0u8, 1, 2, 3].map(ChunkType::from_fmt) {
            for csid in [2, 63, 64, 319, 320, MAX_CSID] {
                for ts in [0, 0xFF_FFFE, 0xFF_FFFF, u32::MAX] {
                    let mut v = Vec::new();
                    put_chunk_header(&mut v, ty, csid, ts, (10, 9, 1));
                    assert_eq!(v.len(), chunk_header_len(ty, csid, ts));
                }
            }
        }
    }
}
