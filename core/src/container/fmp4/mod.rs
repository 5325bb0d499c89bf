//! Fragmented MP4 / CMAF (ISO/IEC 14496-12 §8.8, ISO/IEC 14496-15, ISO/IEC
//! 23000-19): an init segment ([`init_segment`]) and media fragments, one
//! track per `moof` ([`Fragmenter`]).
//!
//! Sample payloads are the canonical frame payloads of [`crate::frame`]
//! (4-byte length-prefixed NAL units match `lengthSizeMinusOne = 3` of the
//! config records; AAC and Opus are raw access units), so a fragment is the
//! frames' bytes behind a small header.
//!
//! Timing: each track has an integer timescale (90 kHz video, the sampling
//! rate for AAC, 48 kHz for Opus). Every frame timestamp is converted once,
//! absolutely, into that timescale and durations are differences of
//! consecutive converted decode times, so the sum of durations always equals
//! the timeline: no drift over hours.

mod boxes;
mod fragment;
mod init;

pub use fragment::{Fragmenter, Sample, MAX_FRAGMENT_BYTES, MAX_PENDING_SAMPLES};
pub use init::init_segment;

use bytes::Bytes;

use crate::codec::aac::AacConfig;
use crate::codec::opus::OpusHead;
use crate::codec::{h264, h265, CodecError};
use crate::frame::{Codec, Frame};

/// Timescale of video tracks (ticks per second).
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// Why an fMP4 structure could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fmp4Error {
    /// The codec has no sample entry here (AV1).
    #[error("codec {0} is not supported in fMP4 yet")]
    UnsupportedCodec(Codec),
    /// A track was described by a frame that is not a config frame.
    #[error("track config must come from a config frame")]
    NotConfig,
    /// The config record could not be parsed.
    #[error("codec config: {0}")]
    Codec(#[from] CodecError),
    /// A frame of another codec was pushed into a track.
    #[error("frame codec {frame} does not match track codec {track}")]
    CodecMismatch {
        /// The frame's codec.
        frame: Codec,
        /// The track's codec.
        track: Codec,
    },
    /// Decode times must not go backwards within a track.
    #[error("decode time {dts} is before the previous one {prev}")]
    NonMonotonicDts {
        /// This sample's decode time (track timescale).
        dts: i64,
        /// The previous sample's.
        prev: i64,
    },
    /// Two consecutive decode times are more than `u32::MAX` ticks apart
    /// (a sample duration is 32 bits).
    #[error("gap of {0} ticks between samples does not fit a sample duration")]
    DurationOverflow(i64),
    /// `baseMediaDecodeTime` is unsigned: decode times must be ≥ 0.
    #[error("negative decode time {0}")]
    NegativeDts(i64),
    /// `pts - dts` does not fit a signed 32-bit composition offset.
    #[error("composition offset {0} out of range")]
    CompositionOffset(i64),
    /// Too many samples or bytes waiting: cut a fragment first.
    #[error("fragment limit reached ({0})")]
    FragmentFull(&'static str),
    /// No tracks, or more than 255, or duplicate / zero track ids.
    #[error("invalid track list: {0}")]
    Tracks(&'static str),
}

/// The description of one track, taken from its config frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// `track_ID` (≥ 1).
    pub track_id: u32,
    /// The codec.
    pub codec: Codec,
    /// Ticks per second of this track's media timeline.
    pub timescale: u32,
    /// The config frame payload (avcC / hvcC body, AudioSpecificConfig, OpusHead).
    pub config: Bytes,
    /// Video width in pixels (0 for audio).
    pub width: u32,
    /// Video height in pixels (0 for audio).
    pub height: u32,
    /// Audio channel count (0 for video).
    pub channels: u16,
    /// Audio sampling rate in Hz (0 for video).
    pub sample_rate: u32,
}

impl TrackInfo {
    /// Describes track `track_id` from a config frame (`FrameFlags::CONFIG`).
    pub fn from_config(track_id: u32, config: &Frame) -> Result<TrackInfo, Fmp4Error> {
        if !config.is_config() {
            return Err(Fmp4Error::NotConfig);
        }
        let payload = config.payload.clone();
        let mut t = TrackInfo {
            track_id,
            codec: config.codec,
            timescale: VIDEO_TIMESCALE,
            config: payload.clone(),
            width: 0,
            height: 0,
            channels: 0,
            sample_rate: 0,
        };
        match config.codec {
            Codec::H264 => {
                let sps = h264::AvcConfig::parse(&payload)?.parse_sps()?;
                (t.width, t.height) = (sps.width, sps.height);
            }
            Codec::H265 => {
                let sps = h265::HevcConfig::parse(&payload)?.parse_sps()?;
                (t.width, t.height) = (sps.width, sps.height);
            }
            Codec::Aac => {
                let c = AacConfig::parse(&payload)?;
                t.sample_rate = c.sampling_frequency;
                t.timescale = c.sampling_frequency;
                t.channels = match c.channel_config {
                    0 => 2,
                    7 => 8,
                    n => u16::from(n),
                };
            }
            Codec::Opus => {
                let h = OpusHead::parse(&payload)?;
                t.sample_rate = 48_000;
                t.timescale = 48_000;
                t.channels = u16::from(h.channels);
            }
            c @ (Codec::Av1 | Codec::Vp8 | Codec::Vp9) => {
                return Err(Fmp4Error::UnsupportedCodec(c))
            }
        }
        Ok(t)
    }
}
