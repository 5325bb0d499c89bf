//! RTP (RFC 3550) and RTCP packets, and the payload formats that carry the
//! engine's codecs: H.264 (RFC 6184), H.265 (RFC 7798), AAC (RFC 3640
//! `mpeg4-generic`, AAC-hbr) and Opus (RFC 7587).
//!
//! Receiving: a [`receiver::TrackReceiver`] takes RTP packets of one track
//! in arrival order, puts them back in sequence order within a small window,
//! hands them to the codec's depacketizer, drops access units damaged by loss
//! (video then waits for the next keyframe) and turns RTP timestamps into
//! engine [`Frame`](crate::Frame)s. Sending: [`packetizer::Packetizer`]
//! turns a frame into RTP packets once per stream (the frame's egress cache).
//!
//! Every parser here reads network bytes: it is bounded and returns an
//! [`RtpError`], never panics.

pub mod aac;
pub mod h264;
pub mod h265;
pub mod opus;
pub mod packetizer;
pub mod receiver;
pub mod rtcp;

use bytes::{BufMut, Bytes, BytesMut};

pub(crate) use crate::big_endian::read_be;

/// Size of the fixed RTP header (RFC 3550 §5.1).
pub const HEADER_LEN: usize = 12;

/// Largest access unit a depacketizer assembles (8 MiB); a bigger one is
/// dropped as damaged.
pub const MAX_ACCESS_UNIT: usize = 8 << 20;

/// Largest number of NAL units in one video access unit.
pub const MAX_NALS_PER_UNIT: usize = 1024;

/// Why an RTP or RTCP packet, or a payload, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// The packet ended before a structure did.
    #[error("{0}: truncated")]
    Truncated(&'static str),
    /// The RTP/RTCP version field is not 2.
    #[error("version {0} (expected 2)")]
    Version(u8),
    /// A field holds a value that cannot be right.
    #[error("{what}: invalid value {value}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// An access unit or list grew past a documented bound.
    #[error("{what}: exceeds limit {limit}")]
    TooLarge {
        /// The structure.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The payload type or NAL type is not one this crate handles.
    #[error("unsupported {what} {value}")]
    Unsupported {
        /// What kind of value.
        what: &'static str,
        /// Its value.
        value: u64,
    },
}

/// Result alias for this module.
pub type Result<T, E = RtpError> = core::result::Result<T, E>;

/// One RTP packet (RFC 3550 §5.1). The payload is a slice of the input
/// (padding removed); CSRCs and the header extension are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// The marker bit (video: last packet of an access unit).
    pub marker: bool,
    /// The payload type (7 bits).
    pub payload_type: u8,
    /// The sequence number.
    pub sequence: u16,
    /// The RTP timestamp.
    pub timestamp: u32,
    /// The synchronisation source.
    pub ssrc: u32,
    /// The payload without padding.
    pub payload: Bytes,
}

impl RtpPacket {
    /// Parses one RTP packet from `data` (a datagram or one interleaved frame).
    pub fn parse(data: &Bytes) -> Result<RtpPacket> {
        let h: [u8; HEADER_LEN] = data
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(RtpError::Truncated("RTP header"))?;
        let (b0, b1) = (h[0], h[1]);
        if b0 >> 6 != 2 {
            return Err(RtpError::Version(b0 >> 6));
        }
        let padding = b0 & 0x20 != 0;
        let extension = b0 & 0x10 != 0;
        let cc = usize::from(b0 & 0x0f);
        let mut start = HEADER_LEN + 4 * cc;
        if extension {
            let words =
                read_be(data, start + 2, 2).ok_or(RtpError::Truncated("RTP header extension"))?;
            start += 4 + 4 * words as usize;
        }
        let mut end = data.len();
        if padding {
            let pad = usize::from(*data.last().ok_or(RtpError::Truncated("RTP padding"))?);
            if pad == 0 {
                return Err(RtpError::Invalid {
                    what: "RTP padding length",
                    value: 0,
                });
            }
            end = end
                .checked_sub(pad)
                .ok_or(RtpError::Truncated("RTP padding"))?;
        }
        if start > end {
            return Err(RtpError::Truncated("RTP payload"));
        }
        Ok(RtpPacket {
            marker: b1 & 0x80 != 0,
            payload_type: b1 & 0x7f,
            sequence: u16::from_be_bytes([h[2], h[3]]),
            timestamp: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            ssrc: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
            payload: data.slice(start..end),
        })
    }

    /// Writes the 12-byte header of a packet (no CSRC, no extension).
    pub fn write_header(
        out: &mut BytesMut,
        marker: bool,
        payload_type: u8,
        sequence: u16,
        timestamp: u32,
        ssrc: u32,
    ) {
        out.put_u8(0x80);
        out.put_u8((u8::from(marker) << 7) | (payload_type & 0x7f));
        out.put_u16(sequence);
        out.put_u32(timestamp);
        out.put_u32(ssrc);
    }

    /// The packet as bytes (header followed by the payload).
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(HEADER_LEN + self.payload.len());
        Self::write_header(
            &mut b,
            self.marker,
            self.payload_type,
            self.sequence,
            self.timestamp,
            self.ssrc,
        );
        b.extend_from_slice(&self.payload);
        b.freeze()
    }
}

/// One unit a depacketizer produced: a codec access unit in the engine's
/// canonical payload form ([`crate::frame`]) and its RTP timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The RTP timestamp of the unit (for AAC: of the packet plus the
    /// unit's offset in it).
    pub timestamp: u32,
    /// The payload (AVCC/HVCC with 4-byte lengths, or one raw audio frame).
    pub data: Bytes,
    /// Decoding can start here.
    pub keyframe: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn header_round_trip_and_padding_extension() {
        let p = RtpPacket {
            marker: true,
            payload_type: 96,
            sequence: 65535,
            timestamp: 0xdead_beef,
            ssrc: 7,
            payload: Bytes::from_static(b"abc"),
        };
        assert_eq!(RtpPacket::parse(&p.to_bytes()).unwrap(), p);
        // One CSRC, a one-word extension, two padding bytes.
        let mut raw = vec![0xb1, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        raw.extend_from_slice(&[9, 9, 9, 9]);
        raw.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]);
        raw.extend_from_slice(b"xy");
        raw.extend_from_slice(&[0, 2]);
        let q = RtpPacket::parse(&Bytes::from(raw)).unwrap();
        assert_eq!(&q.payload[..], b"xy");
        assert!(!q.marker);
        assert_eq!(q.payload_type, 96);
        assert!(RtpPacket::parse(&Bytes::from_static(&[0x80, 0, 0])).is_err());
        assert!(RtpPacket::parse(&Bytes::from_static(&[0x40; 12])).is_err());
        // Padding longer than the packet.
        let mut bad = vec![0xa0, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        bad.push(200);
        assert!(RtpPacket::parse(&Bytes::from(bad)).is_err());
    }
}
