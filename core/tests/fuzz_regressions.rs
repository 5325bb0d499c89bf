//! Regression tests for crashes found by the cargo-fuzz targets in `fuzz/`
//! (see `docs/fuzzing.md`). Each test replays the crashing input (or a
//! hand-made equivalent) through the same API the target called and asserts
//! that it is rejected or handled without a panic. Integer overflow panics
//! only with debug assertions on, which `cargo test` has.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use arcly::codec::bitreader::BitWriter;
use arcly::codec::h264;

/// Writes `v` as an unsigned Exp-Golomb code (H.264 §9.1).
fn put_ue(w: &mut BitWriter, v: u32) {
    let x = u64::from(v) + 1;
    let bits = 64 - x.leading_zeros();
    w.put_bits(0, bits - 1);
    w.put_bits(x, bits);
}

/// Writes `v` as a signed Exp-Golomb code (H.264 §9.1.1).
fn put_se(w: &mut BitWriter, v: i32) {
    let k = if v > 0 {
        2 * i64::from(v) - 1
    } else {
        -2 * i64::from(v)
    };
    put_ue(w, k as u32);
}

/// A High-profile SPS whose first scaling list carries `deltas` as its
/// `delta_scale` values, then (if `complete`) the rest of a 160x128 SPS.
fn sps_with_scaling_deltas(deltas: &[i32], complete: bool) -> Vec<u8> {
    let mut w = BitWriter::new();
    w.put_bits(100, 8); // profile_idc: High
    w.put_bits(0, 8); // constraint flags
    w.put_bits(31, 8); // level_idc
    put_ue(&mut w, 0); // seq_parameter_set_id
    put_ue(&mut w, 1); // chroma_format_idc
    put_ue(&mut w, 0); // bit_depth_luma_minus8
    put_ue(&mut w, 0); // bit_depth_chroma_minus8
    w.put_bit(false); // qpprime_y_zero_transform_bypass_flag
    w.put_bit(true); // seq_scaling_matrix_present_flag
    w.put_bit(true); // seq_scaling_list_present_flag[0]
    for d in deltas {
        put_se(&mut w, *d);
    }
    if complete {
        for _ in 1..8 {
            w.put_bit(false); // seq_scaling_list_present_flag[1..8]
        }
        put_ue(&mut w, 0); // log2_max_frame_num_minus4
        put_ue(&mut w, 2); // pic_order_cnt_type
        put_ue(&mut w, 1); // max_num_ref_frames
        w.put_bit(false); // gaps_in_frame_num_value_allowed_flag
        put_ue(&mut w, 9); // pic_width_in_mbs_minus1: 160
        put_ue(&mut w, 7); // pic_height_in_map_units_minus1: 128
        w.put_bit(true); // frame_mbs_only_flag
        w.put_bit(true); // direct_8x8_inference_flag
        w.put_bit(false); // frame_cropping_flag
        w.put_bit(false); // vui_parameters_present_flag
        w.put_bit(true); // rbsp_stop_one_bit
    } else {
        w.put_bits(0xFF, 8);
    }
    let mut nal = vec![0x67];
    nal.extend(w.finish());
    nal
}

/// fuzz target `codec_parsers` (selector 0, `h264::Sps::parse`): a
/// `delta_scale` of ±2^31 in a scaling list overflowed `last + delta + 256`
/// in `skip_scaling_list` (core/src/codec/h264.rs). Fixed by wrapping
/// arithmetic (exact modulo 256).
#[test]
fn h264_sps_huge_scaling_list_delta_does_not_overflow() {
    for delta in [i32::MAX, i32::MIN + 1, -129, 128, 1 << 30] {
        let sps = sps_with_scaling_deltas(&[delta], false);
        // Truncated or invalid is fine; a panic is not.
        let _ = h264::Sps::parse(&sps);
    }
    // The original fuzzer input (libFuzzer artifact, selector byte removed).
    let mut crash = vec![0x27, 0xf4];
    crash.extend([0xff; 20]);
    crash.extend([0x00, 0x00, 0x00, 0x01, 0xff, 0xff, 0xff, 0xf4]);
    crash.extend([0xff; 32]);
    crash.push(0xef);
    crash.extend([0xff; 51]);
    crash.extend([0x00, 0x0a, 0xff, 0xff, 0x55]);
    assert_eq!(crash.len(), 119);
    let _ = h264::Sps::parse(&crash);
}

/// Valid scaling lists still parse exactly after the fix: 8 → 16 → 0 ends
/// the list after two deltas, -8 ends it after one; a misread would shift
/// every later field and change the picture size.
#[test]
fn h264_sps_with_valid_scaling_lists_still_parses() {
    for deltas in [&[8, -16][..], &[-8][..], &[120, 120, 8][..]] {
        let sps = sps_with_scaling_deltas(deltas, true);
        let parsed = h264::Sps::parse(&sps)
            .unwrap_or_else(|e| panic!("SPS with scaling deltas {deltas:?} rejected: {e}"));
        assert_eq!(
            (parsed.width, parsed.height),
            (160, 128),
            "deltas {deltas:?}"
        );
    }
}
