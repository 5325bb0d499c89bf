//! Media frames: the one currency every protocol trades in.
//!
//! A [`Frame`] is a single access unit (or a codec configuration record) in a
//! canonical form chosen so that every egress conversion is cheap:
//!
//! | codec | payload | config payload (`FrameFlags::CONFIG`) |
//! |-------|---------|----------------------------------------|
//! | H.264 | NAL units, each prefixed by a 4-byte big-endian length (AVCC) | `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3) |
//! | H.265 | NAL units, 4-byte length prefixed (HVCC) | `HEVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §8.3.3) |
//! | AV1   | OBUs in low-overhead bitstream format | `AV1CodecConfigurationRecord` (AV1-ISOBMFF §2.3) |
//! | AAC   | one raw AAC access unit (no ADTS header) | `AudioSpecificConfig` (ISO/IEC 14496-3 §1.6.2.1) |
//! | Opus  | one Opus packet (RFC 6716) | `OpusHead` / dOps body (RFC 7845 §5.1) |
//!
//! Timestamps are signed ticks of [`Frame::timebase`] Hz, extended past any
//! wire wraparound by the ingest machine, so a stream of days never wraps.

use bytes::Bytes;

/// The codec of a frame.
///
/// `#[non_exhaustive]`: codecs are added as protocols carry them; match with
/// a `_` arm and treat an unknown codec as one the egress cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
    /// AV1.
    Av1,
    /// VP8 (RFC 6386). Payload: one compressed frame as the encoder wrote
    /// it (RFC 7741 §4 reassembled); keyframe flag from the frame tag
    /// (RFC 6386 §9.1). No configuration record.
    Vp8,
    /// VP9 (VP9 bitstream specification). Payload: one frame or superframe
    /// (Annex B) as the encoder wrote it (draft-ietf-payload-vp9
    /// reassembled); keyframe flag from the uncompressed header (§6.2). A
    /// config frame, when present, is the `vpcC` record of the VP codec ISO
    /// media file format binding.
    Vp9,
    /// AAC (any profile carried in an AudioSpecificConfig).
    Aac,
    /// Opus.
    Opus,
}

impl Codec {
    /// Whether this codec carries video or audio.
    pub const fn kind(self) -> MediaKind {
        match self {
            Codec::H264 | Codec::H265 | Codec::Av1 | Codec::Vp8 | Codec::Vp9 => MediaKind::Video,
            Codec::Aac | Codec::Opus => MediaKind::Audio,
        }
    }

    /// A short stable name (`"H264"`, `"H265"`, `"AV1"`, `"VP8"`, `"VP9"`,
    /// `"AAC"`, `"Opus"`).
    pub const fn name(self) -> &'static str {
        match self {
            Codec::H264 => "H264",
            Codec::H265 => "H265",
            Codec::Av1 => "AV1",
            Codec::Vp8 => "VP8",
            Codec::Vp9 => "VP9",
            Codec::Aac => "AAC",
            Codec::Opus => "Opus",
        }
    }
}

impl core::fmt::Display for Codec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Video or audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// A video track.
    Video,
    /// An audio track.
    Audio,
}

/// Per-frame flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FrameFlags(u8);

impl FrameFlags {
    /// No flags.
    pub const NONE: FrameFlags = FrameFlags(0);
    /// A random access point: decoding can start here (IDR / IRAP / key OBU).
    /// Audio frames are always keyframes.
    pub const KEYFRAME: FrameFlags = FrameFlags(1);
    /// The payload is a codec configuration record, not media.
    pub const CONFIG: FrameFlags = FrameFlags(2);
    /// Timestamps jump here (publisher restarted its clock).
    pub const DISCONTINUITY: FrameFlags = FrameFlags(4);

    /// Whether every flag in `other` is set.
    pub const fn contains(self, other: FrameFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the flags of `other` added.
    pub const fn with(self, other: FrameFlags) -> FrameFlags {
        FrameFlags(self.0 | other.0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
}

impl core::ops::BitOr for FrameFlags {
    type Output = FrameFlags;
    fn bitor(self, rhs: FrameFlags) -> FrameFlags {
        self.with(rhs)
    }
}

/// One access unit or configuration record. Cloning is a reference count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The codec of the payload.
    pub codec: Codec,
    /// Keyframe / config / discontinuity flags.
    pub flags: FrameFlags,
    /// Presentation time in ticks of `timebase`.
    pub pts: i64,
    /// Decode time in ticks of `timebase`.
    pub dts: i64,
    /// Ticks per second of `pts` and `dts` (1000 for RTMP, 90000 for RTP video / TS).
    pub timebase: u32,
    /// The payload in the canonical form of the module documentation.
    pub payload: Bytes,
}

impl Frame {
    /// Video or audio.
    pub fn kind(&self) -> MediaKind {
        self.codec.kind()
    }

    /// Whether decoding can start at this frame.
    pub fn is_keyframe(&self) -> bool {
        self.flags.contains(FrameFlags::KEYFRAME)
    }

    /// Whether this is a codec configuration record.
    pub fn is_config(&self) -> bool {
        self.flags.contains(FrameFlags::CONFIG)
    }

    /// `dts` converted to `timebase` Hz (rounded toward negative infinity).
    pub fn dts_in(&self, timebase: u32) -> i64 {
        rescale(self.dts, self.timebase, timebase)
    }

    /// `pts` converted to `timebase` Hz (rounded toward negative infinity).
    pub fn pts_in(&self, timebase: u32) -> i64 {
        rescale(self.pts, self.timebase, timebase)
    }
}

/// Converts `ticks` of `from` Hz into `to` Hz without overflow, rounding toward
/// negative infinity. A zero `from` yields 0.
pub fn rescale(ticks: i64, from: u32, to: u32) -> i64 {
    if from == to {
        return ticks;
    }
    if from == 0 {
        return 0;
    }
    let v = i128::from(ticks) * i128::from(to);
    let q = v.div_euclid(i128::from(from));
    i64::try_from(q).unwrap_or(if q < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_rounds_down() {
        assert_eq!(rescale(1000, 1000, 90000), 90000);
        assert_eq!(rescale(1, 90000, 1000), 0);
        assert_eq!(rescale(-1, 90000, 1000), -1);
        assert_eq!(rescale(i64::MAX, 1, 90000), i64::MAX);
        assert_eq!(rescale(5, 0, 1000), 0);
    }

    #[test]
    fn flags() {
        let f = FrameFlags::KEYFRAME | FrameFlags::CONFIG;
        assert!(f.contains(FrameFlags::KEYFRAME));
        assert!(f.contains(FrameFlags::CONFIG));
        assert!(!f.contains(FrameFlags::DISCONTINUITY));
    }
}
