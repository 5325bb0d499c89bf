//! PES packets (ISO/IEC 13818-1 §2.4.3.6): header writing and parsing,
//! 33-bit PTS/DTS fields (§2.4.3.7).

use bytes::BufMut;

use super::TS_MASK;

/// `stream_id` of the first video stream (Table 2-22).
pub const STREAM_ID_VIDEO: u8 = 0xE0;
/// `stream_id` of the first MPEG audio stream (used for AAC).
pub const STREAM_ID_AUDIO: u8 = 0xC0;
/// `stream_id` of `private_stream_1` (used for Opus).
pub const STREAM_ID_PRIVATE_1: u8 = 0xBD;

/// A parsed PES header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PesHeader {
    /// `stream_id`.
    pub stream_id: u8,
    /// `PES_packet_length` (0 = unbounded, video only).
    pub packet_length: usize,
    /// The 33-bit PTS, if present.
    pub pts: Option<u64>,
    /// The 33-bit DTS, if present.
    pub dts: Option<u64>,
    /// Offset of the payload from the start of the PES packet.
    pub payload_offset: usize,
}

/// Why a PES header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PesError {
    /// No `packet_start_code_prefix` (00 00 01).
    #[error("no PES start code")]
    StartCode,
    /// The header is longer than the data.
    #[error("PES header truncated")]
    Truncated,
}

fn write_ts(out: &mut impl BufMut, prefix: u8, ts: u64) {
    let ts = ts & TS_MASK;
    out.put_u8((prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1);
    out.put_u16((((ts >> 15) & 0x7FFF) as u16) << 1 | 1);
    out.put_u16(((ts & 0x7FFF) as u16) << 1 | 1);
}

fn read_ts(b: &[u8]) -> Option<u64> {
    let b0 = u64::from(*b.first()?);
    let b12 = u64::from(u16::from_be_bytes([*b.get(1)?, *b.get(2)?]));
    let b34 = u64::from(u16::from_be_bytes([*b.get(3)?, *b.get(4)?]));
    Some(((b0 >> 1) & 7) << 30 | (b12 >> 1) << 15 | (b34 >> 1))
}

/// Length of the header [`write_header`] writes.
pub const fn header_len(with_dts: bool) -> usize {
    if with_dts {
        19
    } else {
        14
    }
}

/// Appends a PES header for `payload_len` bytes of payload. A DTS is
/// written when it differs from the PTS. `PES_packet_length` is 0 when the
/// packet would exceed 65535 bytes (allowed for video, §2.4.3.7).
pub fn write_header(out: &mut impl BufMut, stream_id: u8, pts: u64, dts: u64, payload_len: usize) {
    let with_dts = (pts & TS_MASK) != (dts & TS_MASK);
    let hlen = header_len(with_dts);
    out.put_slice(&[0, 0, 1, stream_id]);
    let total = hlen - 6 + payload_len;
    out.put_u16(if total > 0xFFFF { 0 } else { total as u16 });
    out.put_u8(0x80); // '10', no scrambling, no priority/alignment/copyright/original
    out.put_u8(if with_dts { 0xC0 } else { 0x80 });
    out.put_u8((hlen - 9) as u8);
    if with_dts {
        write_ts(out, 0x3, pts);
        write_ts(out, 0x1, dts);
    } else {
        write_ts(out, 0x2, pts);
    }
}

/// Parses the header of a complete or partial PES packet.
pub fn parse_header(pes: &[u8]) -> Result<PesHeader, PesError> {
    if pes.get(..3) != Some(&[0, 0, 1][..]) {
        return Err(PesError::StartCode);
    }
    let b = |i: usize| pes.get(i).copied().ok_or(PesError::Truncated);
    let stream_id = b(3)?;
    let packet_length = usize::from(u16::from_be_bytes([b(4)?, b(5)?]));
    // Streams without the optional header (§2.4.3.7, Table 2-21 conditions).
    if matches!(
        stream_id,
        0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF
    ) {
        return Ok(PesHeader {
            stream_id,
            packet_length,
            pts: None,
            dts: None,
            payload_offset: 6,
        });
    }
    let flags = b(7)?;
    let hlen = usize::from(b(8)?);
    let payload_offset = 9 + hlen;
    if pes.len() < payload_offset {
        return Err(PesError::Truncated);
    }
    let opt = pes.get(9..payload_offset).unwrap_or_default();
    let (pts, dts) = match flags >> 6 {
        2 => (Some(read_ts(opt).ok_or(PesError::Truncated)?), None),
        3 => (
            Some(read_ts(opt).ok_or(PesError::Truncated)?),
            Some(read_ts(opt.get(5..).unwrap_or_default()).ok_or(PesError::Truncated)?),
        ),
        _ => (None, None),
    };
    Ok(PesHeader {
        stream_id,
        packet_length,
        pts,
        dts,
        payload_offset,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn header_round_trip() {
        for (pts, dts) in [
            (0u64, 0u64),
            (TS_MASK, TS_MASK - 3003),
            (123_456_789, 123_450_000),
        ] {
            let mut v = Vec::new();
            write_header(&mut v, STREAM_ID_VIDEO, pts, dts, 100);
            let h = parse_header(&v).unwrap();
            assert_eq!(h.pts, Some(pts));
            assert_eq!(h.dts, (pts != dts).then_some(dts));
            assert_eq!(h.payload_offset, v.len());
            assert_eq!(h.packet_length, v.len() - 6 + 100);
        }
        let mut v = Vec::new();
        write_header(&mut v, STREAM_ID_VIDEO, 1, 1, 70_000);
        assert_eq!(parse_header(&v).unwrap().packet_length, 0);
        assert_eq!(parse_header(&v[..10]), Err(PesError::Truncated));
        assert_eq!(parse_header(&[0, 0, 2]), Err(PesError::StartCode));
    }
}
