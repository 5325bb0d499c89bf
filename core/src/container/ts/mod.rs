//! MPEG-2 transport stream (ISO/IEC 13818-1): a muxer from engine frames to
//! 188-byte packets ([`TsMuxer`]) and a demuxer back ([`TsDemuxer`]).
//!
//! Layout written by the muxer (and understood by the demuxer):
//!
//! | PID | content |
//! |-----|---------|
//! | `0x0000` | PAT (§2.4.4.3) naming program 1 |
//! | [`PMT_PID`] | PMT (§2.4.4.8) |
//! | [`VIDEO_PID`] | H.264 (stream type `0x1B`) or H.265 (`0x24`), Annex-B with AUD |
//! | [`AUDIO_PID`] | AAC ADTS (`0x0F`) or Opus (`0x06` + `Opus` registration descriptor) |
//!
//! Timestamps on the wire are 33-bit 90 kHz values (§2.4.3.7); the demuxer
//! extends them into `i64` so a stream of days never wraps.

mod demux;
mod mux;
pub mod pes;
pub mod psi;

pub use demux::{TsDemuxStats, TsDemuxer, MAX_PENDING_INPUT, MAX_PES_SIZE, MAX_STREAMS};
pub use mux::TsMuxer;

use crate::codec::CodecError;

/// Size of one transport packet (§2.4.3.2).
pub const PACKET_SIZE: usize = 188;
/// `sync_byte` (§2.4.3.3).
pub const SYNC_BYTE: u8 = 0x47;
/// PID of the program association table.
pub const PAT_PID: u16 = 0x0000;
/// PID the muxer gives the program map table.
pub const PMT_PID: u16 = 0x1000;
/// PID the muxer gives the video elementary stream.
pub const VIDEO_PID: u16 = 0x0100;
/// PID the muxer gives the audio elementary stream.
pub const AUDIO_PID: u16 = 0x0101;
/// PID of null packets (§2.4.3.3).
pub const NULL_PID: u16 = 0x1FFF;
/// The MPEG-TS clock rate of PTS/DTS (§2.4.3.7).
pub const TIMEBASE: u32 = 90_000;
/// Timestamps on the wire are 33 bits wide.
pub const TS_MASK: u64 = (1 << 33) - 1;

/// `stream_type` of H.264 (Table 2-34).
pub const STREAM_TYPE_H264: u8 = 0x1B;
/// `stream_type` of H.265.
pub const STREAM_TYPE_H265: u8 = 0x24;
/// `stream_type` of AAC in ADTS.
pub const STREAM_TYPE_AAC_ADTS: u8 = 0x0F;
/// `stream_type` of PES private data (Opus, with its registration descriptor).
pub const STREAM_TYPE_PRIVATE: u8 = 0x06;

/// Why the TS muxer or demuxer rejected its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TsError {
    /// A frame's codec has no track in this muxer.
    #[error("no {0} track in this TS muxer")]
    NoTrack(crate::frame::Codec),
    /// The codec cannot be carried (AV1 in TS is not supported).
    #[error("codec {0} is not supported in MPEG-TS")]
    UnsupportedCodec(crate::frame::Codec),
    /// A media frame needs a config frame first (AAC needs its AudioSpecificConfig for ADTS).
    #[error("{0} frame before its config frame")]
    MissingConfig(crate::frame::Codec),
    /// A codec structure in a frame or config is malformed.
    #[error("codec data: {0}")]
    Codec(#[from] CodecError),
    /// A frame is larger than a PES can carry.
    #[error("frame of {size} bytes exceeds the limit {limit}")]
    FrameTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The demuxer's input buffer is full: poll frames before feeding more.
    #[error("demuxer input buffer full ({limit} bytes): poll before feeding more")]
    InputOverflow {
        /// [`MAX_PENDING_INPUT`].
        limit: usize,
    },
}

/// CRC-32/MPEG-2 (§2.4.4.3, Annex A): polynomial `0x04C11DB7`, init all ones,
/// no reflection, no final xor.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for b in data {
        let idx = ((crc >> 24) ^ u32::from(*b)) & 0xFF;
        crc = (crc << 8) ^ CRC_TABLE.get(idx as usize).copied().unwrap_or(0);
    }
    crc
}

#[allow(clippy::indexing_slicing)] // i < 256 in a const loop
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04C1_1DB7
            } else {
                c << 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Extends 33-bit wire timestamps into a continuous `i64` timeline
/// (ISO/IEC 13818-1 §2.4.3.7 wraps every 2^33 ticks, ~26.5 h): each value is
/// the representative nearest the previous one, so streams of any length and
/// timestamps from several elementary streams share one timeline.
pub type Wrap33 = crate::time::WrapExtender<33>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_known_pat() {
        // PAT section of ffmpeg's mpegts muxer (program 1 → PMT 0x1000) with its CRC.
        let sec = [
            0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00,
        ];
        assert_eq!(crc32_mpeg2(&sec), 0x2AB1_04B2);
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
    }

    #[test]
    fn wrap_extends_across_33_bits() {
        let mut w = Wrap33::new();
        let top = (1u64 << 33) - 100;
        assert_eq!(w.extend(top), top as i64);
        assert_eq!(w.extend(50), (1i64 << 33) + 50);
        assert_eq!(
            w.extend(top),
            top as i64,
            "a small step back stays before the wrap"
        );
        assert_eq!(w.extend(10), (1i64 << 33) + 10);
        // A day later, several wraps on.
        let mut t = (1i64 << 33) + 10;
        for _ in 0..100 {
            t += 3_000_000_000;
            assert_eq!(w.extend(t as u64), t);
        }
        assert_eq!(Wrap33::near((1 << 33) + 5, (1 << 33) - 5), (1 << 33) - 5);
        assert_eq!(Wrap33::near(10, 3000), 3000);
    }
}
