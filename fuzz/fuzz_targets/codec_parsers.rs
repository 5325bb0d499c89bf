//! Codec bitstream parsers (core/src/codec/) on arbitrary bytes.
//!
//! Input: byte 0 picks the parser, rest = the bytes it parses.
//! Invariants: no panic; parse → to_bytes → parse gives the same value
//! (AvcDecoderConfigurationRecord, HEVCDecoderConfigurationRecord,
//! AudioSpecificConfig, OpusHead / dOps, AV1CodecConfigurationRecord); an
//! ADTS header rebuilt from its config parses to the same profile, rate and
//! channels; Annex-B ↔ AVCC conversions and emulation-prevention removal
//! never grow the data beyond a small linear bound.
#![no_main]

use arcly::codec::aac::{iter_adts, AacConfig, AdtsHeader};
use arcly::codec::av1::Av1Config;
use arcly::codec::bitreader::remove_emulation_prevention;
use arcly::codec::opus::OpusHead;
use arcly::codec::{codec_string, h264, h265};
use arcly::Codec;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [sel, rest @ ..] = data else {
        return;
    };
    let b = Bytes::copy_from_slice(rest);
    match sel % 10 {
        0 => {
            let _ = h264::Sps::parse(rest);
        }
        1 => {
            if let Ok(c) = h264::AvcConfig::parse(&b) {
                let again = h264::AvcConfig::parse(&c.to_bytes())
                    .unwrap_or_else(|e| panic!("own AVC record rejected: {e}: {c:?}"));
                assert_eq!(c, again);
                let _ = c.parse_sps();
                let _ = c.annex_b_parameter_sets();
                let _ = c.codec_string();
                let _ = codec_string(Codec::H264, &b);
            }
        }
        2 => {
            let _ = h265::Sps::parse(rest);
        }
        3 => {
            if let Ok(c) = h265::HevcConfig::parse(&b) {
                let again = h265::HevcConfig::parse(&c.to_bytes())
                    .unwrap_or_else(|e| panic!("own HEVC record rejected: {e}: {c:?}"));
                assert_eq!(c, again);
                let _ = c.parse_sps();
                let _ = c.annex_b_parameter_sets();
                let _ = c.codec_string();
                let _ = codec_string(Codec::H265, &b);
            }
        }
        4 => {
            if let Ok(c) = AacConfig::parse(rest) {
                let again = AacConfig::parse(&c.to_bytes())
                    .unwrap_or_else(|e| panic!("own AudioSpecificConfig rejected: {e}: {c:?}"));
                assert_eq!(c, again);
                let _ = c.output_rate();
                let _ = c.samples_per_frame();
                let _ = c.codec_string();
                let _ = codec_string(Codec::Aac, &b);
                if let Ok(h) = c.adts_header(rest.len() % 9000) {
                    let p = AdtsHeader::parse(&h)
                        .unwrap_or_else(|e| panic!("own ADTS header rejected: {e}: {c:?}"));
                    assert_eq!(p.object_type, c.core_object_type);
                    assert_eq!(p.sampling_frequency(), c.sampling_frequency);
                    assert_eq!(p.channel_config, c.channel_config);
                    assert_eq!(p.frame_len, rest.len() % 9000 + 7);
                }
            }
        }
        5 => {
            if let Ok(h) = AdtsHeader::parse(rest) {
                assert!(h.header_len <= h.frame_len.max(9));
                let c = h.to_config();
                if let Ok(hh) = c.adts_header(16) {
                    let p = AdtsHeader::parse(&hh)
                        .unwrap_or_else(|e| panic!("own ADTS header rejected: {e}: {c:?}"));
                    assert_eq!(p.object_type, h.object_type);
                    assert_eq!(p.sampling_index, h.sampling_index);
                    assert_eq!(p.channel_config, h.channel_config);
                }
            }
            let mut total = 0usize;
            for r in iter_adts(&b) {
                let Ok((_, payload)) = r else { break };
                total += payload.len();
                assert!(total <= rest.len());
            }
        }
        6 => {
            if let Ok(o) = OpusHead::parse(rest) {
                let again = OpusHead::parse(&o.to_bytes())
                    .unwrap_or_else(|e| panic!("own OpusHead rejected: {e}: {o:?}"));
                assert_eq!(o, again);
                let d = OpusHead::from_dops(&o.to_dops())
                    .unwrap_or_else(|e| panic!("own dOps rejected: {e}: {o:?}"));
                assert_eq!(o.to_dops(), d.to_dops());
                let _ = codec_string(Codec::Opus, &b);
            }
            if let Ok(o) = OpusHead::from_dops(rest) {
                let again = OpusHead::from_dops(&o.to_dops())
                    .unwrap_or_else(|e| panic!("own dOps rejected: {e}: {o:?}"));
                assert_eq!(o, again);
            }
        }
        7 => {
            if let Ok(c) = Av1Config::parse(&b) {
                let again = Av1Config::parse(&c.to_bytes())
                    .unwrap_or_else(|e| panic!("own av1C rejected: {e}: {c:?}"));
                assert_eq!(c, again);
                let _ = c.bit_depth();
                let _ = c.codec_string();
                let _ = codec_string(Codec::Av1, &b);
            }
        }
        8 => {
            let avcc = h264::annex_b_to_avcc(rest);
            assert!(avcc.len() <= rest.len() + rest.len() / 3 + 8);
            for n in h264::iter_length_prefixed(&avcc, 4) {
                let n = n.unwrap_or_else(|e| panic!("annex_b_to_avcc output is not AVCC: {e}"));
                assert!(!n.is_empty());
            }
            let annexb = h264::avcc_to_annex_b(&avcc)
                .unwrap_or_else(|e| panic!("AVCC from annex_b_to_avcc rejected: {e}"));
            assert_eq!(annexb.len(), avcc.len());
            let _ = h264::avcc_has_idr(rest);
            let _ = h265::hvcc_has_irap(rest);
            for ls in [1usize, 2, 4] {
                if let Ok(c) = h264::to_avcc4(b.clone(), ls) {
                    assert!(c.len() <= 4 * rest.len());
                }
            }
        }
        _ => {
            let r = remove_emulation_prevention(rest);
            assert!(r.len() <= rest.len());
        }
    }
});
