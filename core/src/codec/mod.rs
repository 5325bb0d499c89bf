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
#[non_exhaustive]
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
        // RFC 6381 style names used by WebM/WebCodecs; VP9's needs the
        // `vpcC` record (profile, level, bit depth), not parsed here yet.
        Codec::Vp8 => "vp8".to_owned(),
        Codec::Vp9 => return Err(CodecError::Missing("VP9 codec string (vpcC)")),
        Codec::Aac => aac::AacConfig::parse(config)?.codec_string(),
        Codec::Opus => opus::OpusHead::parse(config)?.codec_string().to_owned(),
    })
}

pub(crate) use crate::big_endian::read_be;

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

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..96)) {
            let b = Bytes::from(data.clone());
            let _ = h264::Sps::parse(&data);
            let _ = h265::Sps::parse(&data);
            let _ = h264::AvcConfig::parse(&b);
            let _ = h265::HevcConfig::parse(&b);
            let _ = av1::Av1Config::parse(&b);
            let _ = aac::AacConfig::parse(&data);
            let _ = aac::AdtsHeader::parse(&data);
            let _ = aac::iter_adts(&b).count();
            let _ = opus::OpusHead::parse(&data);
            let _ = opus::OpusHead::from_dops(&data);
            let _ = h264::split_annex_b(&data);
            let _ = h264::to_avcc4(b.clone(), 4);
            let _ = h264::to_avcc4(b.clone(), 2);
            let _ = h264::avcc_to_annex_b(&data);
            let _ = codec_string(Codec::H264, &b);
        }

        #[test]
        fn sps_with_valid_header_never_panics(rest in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut a = vec![0x67];
            a.extend_from_slice(&rest);
            let _ = h264::Sps::parse(&a);
            let mut h = vec![0x42, 0x01];
            h.extend_from_slice(&rest);
            let _ = h265::Sps::parse(&h);
        }

        #[test]
        fn configs_round_trip(
            sps in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 0..3),
            pps in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 0..3),
            profile in any::<u8>(),
            aot in 1u8..=45,
            rate in prop::sample::select(vec![7350u32, 22_050, 44_100, 48_000, 96_000, 12_345]),
            ch in 0u8..=7,
            opus_ch in 1u8..=2,
            pre_skip in any::<u16>(),
            gain in any::<i16>(),
        ) {
            let to_bytes = |v: &Vec<Vec<u8>>| v.iter().map(|u| Bytes::from(u.clone())).collect::<Vec<_>>();
            let avc = h264::AvcConfig {
                profile: if matches!(profile, 100 | 110 | 122 | 144) { 66 } else { profile },
                compatibility: 0xC0,
                level: 31,
                length_size: 4,
                sps: to_bytes(&sps),
                pps: to_bytes(&pps),
                high_ext: None,
            };
            prop_assert_eq!(h264::AvcConfig::parse(&avc.to_bytes()).unwrap(), avc);
            // AOT 5/29 carry an extension rate; keep the plain form here.
            let aot = if aot == aac::AOT_SBR || aot == aac::AOT_PS || aot == 31 { 2 } else { aot };
            let asc = aac::AacConfig::new(aot, rate, ch);
            prop_assert_eq!(aac::AacConfig::parse(&asc.to_bytes()).unwrap(), asc);
            let head = opus::OpusHead { pre_skip, output_gain: gain, ..opus::OpusHead::new(opus_ch) };
            prop_assert_eq!(opus::OpusHead::parse(&head.to_bytes()).unwrap(), head.clone());
            prop_assert_eq!(opus::OpusHead::from_dops(&head.to_dops()).unwrap(), head);
        }
    }
}
