//! Codec bitstream helpers (H.264, H.265, AAC, Opus, AV1): parameter-set
//! parsing, configuration records and format conversions used by the
//! containers and protocol mappings.
//!
//! Every parser here reads network bytes: it is bounded, never panics, and
//! reports what went wrong through [`CodecError`].

pub mod aac;
pub mod av1;
pub mod bitreader;
pub mod h264;
pub mod h265;
pub mod opus;

/// Why a codec structure could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input ended before the structure did.
    #[error("{what}: truncated (needed more bytes)")]
    Truncated {
        /// The structure being read.
        what: &'static str,
    },
    /// A field holds a value the specification forbids or this crate does not support.
    #[error("{what}: invalid value {value}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// A structure exceeds a documented bound (list count, NAL size).
    #[error("{what}: exceeds limit {limit}")]
    TooLarge {
        /// The structure.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A required element is missing (no SPS, no PPS, bad magic).
    #[error("missing {0}")]
    Missing(&'static str),
}

/// Result alias for the codec helpers.
pub type Result<T, E = CodecError> = core::result::Result<T, E>;

/// Largest single NAL unit / OBU / parameter set accepted by the helpers (16 MiB).
pub const MAX_UNIT_SIZE: usize = 16 << 20;

/// Largest number of parameter sets of one kind kept in a configuration record.
pub const MAX_PARAM_SETS: usize = 32;

/// The RFC 6381 codec string (`avc1.64001f`, `hvc1.1.6.L93.B0`,
/// `av01.0.04M.08`, `mp4a.40.2`, `opus`) of a config frame payload in the
/// canonical form of [`crate::frame`] (HLS `CODECS`, DASH, WebCodecs).
pub fn codec_string(codec: crate::frame::Codec, config: &bytes::Bytes) -> Result<String> {
    use crate::frame::Codec;
    Ok(match codec {
        Codec::H264 => h264::AvcConfig::parse(config)?.codec_string(),
        Codec::H265 => h265::HevcConfig::parse(config)?.codec_string(),
        Codec::Av1 => av1::Av1Config::parse(config)?.codec_string(),
        Codec::Aac => aac::AacConfig::parse(config)?.codec_string(),
        Codec::Opus => opus::OpusHead::parse(config)?.codec_string().to_owned(),
    })
}

/// Reads `n` (1..=4) big-endian bytes at `pos` of `data`.
pub(crate) fn read_be(data: &[u8], pos: usize, n: usize) -> Option<u32> {
    let end = pos.checked_add(n)?;
    let s = data.get(pos..end)?;
    Some(s.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

/// Formats `bytes` as lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use core::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::frame::Codec;
    use bytes::Bytes;

    #[test]
    fn codec_strings_of_config_payloads() {
        let avc = h264::AvcConfig::from_parameter_sets(
            vec![Bytes::from_static(h264::tests::SPS_640X360)],
            vec![Bytes::from_static(h264::tests::PPS_640X360)],
        )
        .unwrap()
        .to_bytes();
        assert_eq!(codec_string(Codec::H264, &avc).unwrap(), "avc1.64001e");
        let asc = aac::AacConfig::new(2, 48_000, 2).to_bytes();
        assert_eq!(codec_string(Codec::Aac, &asc).unwrap(), "mp4a.40.2");
        let head = opus::OpusHead::new(2).to_bytes();
        assert_eq!(codec_string(Codec::Opus, &head).unwrap(), "opus");
        assert!(codec_string(Codec::H265, &asc).is_err());
        assert!(codec_string(Codec::Av1, &Bytes::new()).is_err());
    }
}
