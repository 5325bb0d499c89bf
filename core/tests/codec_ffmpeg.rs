//! Codec helpers against real encoder output: ffmpeg writes raw Annex-B
//! H.264 / H.265 and ADTS AAC; the helpers must split, convert and parse them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

use arcly::codec::{aac, h264, h265};
use bytes::Bytes;

fn ffmpeg_to_stdout(args: &str) -> Bytes {
    let args: Vec<&str> = args.split_whitespace().collect();
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(&args)
        .arg("-")
        .output()
        .expect("ffmpeg must be installed for the codec interop test");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Bytes::from(out.stdout)
}

#[test]
fn h264_annex_b_from_libx264() {
    let es = ffmpeg_to_stdout(
        "-f lavfi -i testsrc=size=1280x720:rate=30 -t 2 -pix_fmt yuv420p -c:v libx264 -g 30 -bsf:v h264_mp4toannexb -f h264",
    );
    let units = h264::split_annex_b(&es);
    let of = |t| units.iter().filter(move |u| h264::nal_type(u[0]) == t);
    let sps: Vec<Bytes> = of(h264::NAL_SPS)
        .map(|u| Bytes::copy_from_slice(u))
        .collect();
    let pps: Vec<Bytes> = of(h264::NAL_PPS)
        .map(|u| Bytes::copy_from_slice(u))
        .collect();
    // mp4toannexb repeats SPS/PPS before each IDR: 2 GOPs.
    assert_eq!(of(h264::NAL_IDR).count(), 2);
    assert_eq!(sps.len(), 2);
    let rec =
        h264::AvcConfig::from_parameter_sets(vec![sps[0].clone()], vec![pps[0].clone()]).unwrap();
    let s = rec.parse_sps().unwrap();
    assert_eq!((s.width, s.height), (1280, 720));
    assert_eq!(rec.codec_string(), "avc1.64001f");
    // Annex-B → AVCC → Annex-B keeps every unit.
    let avcc = h264::annex_b_to_avcc(&es);
    assert!(h264::avcc_has_idr(&avcc));
    let back = h264::avcc_to_annex_b(&avcc).unwrap();
    assert_eq!(h264::split_annex_b(&back), units);
    assert_eq!(h264::iter_length_prefixed(&avcc, 4).count(), units.len());
}

#[test]
fn h265_annex_b_from_libx265() {
    let es = ffmpeg_to_stdout(
        "-f lavfi -i testsrc=size=640x360:rate=25 -t 1 -pix_fmt yuv420p -c:v libx265 -x265-params log-level=none:keyint=25 -f hevc",
    );
    let units = h265::split_annex_b(&es);
    let first = |t| {
        units
            .iter()
            .find(|u| h265::nal_type(u[0]) == t)
            .map(|u| Bytes::copy_from_slice(u))
            .unwrap()
    };
    let rec = h265::HevcConfig::from_parameter_sets(
        vec![first(h265::NAL_VPS)],
        vec![first(h265::NAL_SPS)],
        vec![first(h265::NAL_PPS)],
    )
    .unwrap();
    let s = rec.parse_sps().unwrap();
    assert_eq!((s.width, s.height), (640, 360));
    assert_eq!(rec.codec_string(), "hvc1.1.6.L63.90");
    let avcc = h265::annex_b_to_avcc(&es);
    assert!(h265::hvcc_has_irap(&avcc));
    let irap = units
        .iter()
        .filter(|u| h265::is_irap(h265::nal_type(u[0])))
        .count();
    assert_eq!(irap, 1);
    let parsed = h265::HevcConfig::parse(&rec.to_bytes()).unwrap();
    assert_eq!(parsed, rec);
}

#[test]
fn adts_from_ffmpeg_aac() {
    let es = ffmpeg_to_stdout(
        "-f lavfi -i sine=frequency=440:sample_rate=44100 -t 2 -ac 2 -c:a aac -f adts",
    );
    let frames: Vec<_> = aac::iter_adts(&es).map(Result::unwrap).collect();
    // 2 s of 44.1 kHz in 1024-sample frames (+ priming).
    assert!((86..=90).contains(&frames.len()), "{} frames", frames.len());
    let total: usize = frames.iter().map(|(h, _)| h.frame_len).sum();
    assert_eq!(total, es.len());
    let cfg = frames[0].0.to_config();
    assert_eq!(cfg, aac::AacConfig::new(2, 44_100, 2));
    assert_eq!(&cfg.to_bytes()[..], &[0x12, 0x10]);
    for (h, payload) in &frames {
        assert_eq!(h.to_config(), cfg);
        // Rebuilding each header gives ffmpeg's bytes back (VBR fullness 0x7FF).
        let start = payload.as_ptr() as usize - es.as_ptr() as usize - 7;
        assert_eq!(
            &cfg.adts_header(payload.len()).unwrap()[..],
            &es[start..start + 7]
        );
    }
}
