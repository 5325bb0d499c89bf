//! Open-GOP HEVC from real libx265 (`open-gop=1`, x265's default: after the
//! first IDR every keyframe is a CRA picture followed by RASL leading
//! pictures, H.265 §3.18 / §8.1.3) through arcly's MPEG-TS demuxer, the HLS
//! muxer and the engine:
//! - every CRA is a keyframe frame with the config available;
//! - HLS cuts its 2 s segments on the CRAs (not at the next-but-one), the
//!   fMP4 samples say sync for the CRA and `is_leading = 1` for its RASL
//!   pictures, and ffmpeg decodes both variants from every segment on: the
//!   only pictures lost are the RASL pictures of the segment a client starts
//!   with (none when it starts at the IDR);
//! - a subscriber that joins mid-stream starts at a CRA.
//!
//! ffmpeg/ffprobe (with libx265) are required: without them the tests are
//! skipped locally and fail when `CI=true`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod hls_common;

use std::path::{Path, PathBuf};

use arcly::codec::h265::{self, HevcConfig};
use arcly::container::hls::{HlsConfig, HlsMuxer, Variant};
use arcly::engine::{AppConfig, Publisher, Recv, StreamKey};
use arcly::{Codec, Frame, MediaKind};
use hls_common::common::ffmpeg::{decode_without_warnings, encode_test_source, run, tools_present};
use hls_common::playlist;

/// Keyframe interval of the source: 50 frames = 2 s at 25 fps, the HLS
/// muxer's default segment target.
const KEYINT: usize = 50;

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("arcly-hevc-og-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The picture type (first VCL `nal_unit_type`) of a video media frame.
fn picture(f: &Frame) -> u8 {
    h265::hvcc_picture_type(&f.payload)
        .unwrap_or_else(|| panic!("no VCL NAL unit in frame at dts {}", f.dts))
}

/// 8 s of 320x240 libx265 open-GOP video (an IDR, then a CRA every 2 s,
/// 4 B-frames) + AAC as MPEG-TS, demuxed by arcly.
fn open_gop_frames(dir: &Path) -> Vec<Frame> {
    let src = dir.join("src.ts");
    let params = format!("log-level=error:keyint={KEYINT}:min-keyint={KEYINT}:open-gop=1");
    encode_test_source(
        48_000,
        8,
        &[
            "-c:v",
            "libx265",
            "-x265-params",
            &params,
            "-c:a",
            "aac",
            "-ac",
            "2",
            "-f",
            "mpegts",
        ],
        &src,
    );
    let data = std::fs::read(&src).unwrap();
    let (frames, stats) = hls_common::common::demux_ts(&data, 1316);
    let video: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.codec == Codec::H265 && !f.is_config())
        .collect();
    assert_eq!(video.len(), 200, "8 s at 25 fps: {stats:?}");
    // The encoder really made an open GOP: one IDR, then CRAs with RASL
    // pictures (checked on the NAL types, not on our flags).
    let count = |p: fn(u8) -> bool| video.iter().filter(|f| p(picture(f))).count();
    assert_eq!(
        count(|t| t == h265::NAL_IDR_W_RADL || t == h265::NAL_IDR_N_LP),
        1
    );
    assert_eq!(count(|t| t == h265::NAL_CRA), 3, "x265 made no CRAs");
    assert!(count(h265::is_rasl) >= 3, "no RASL pictures");
    frames
}

/// For each IRAP picture in decode order: the number of RASL pictures
/// associated with it (those that follow it before the next non-RASL picture).
fn rasl_after_each_irap(frames: &[Frame]) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    let mut counting = false;
    for f in frames
        .iter()
        .filter(|f| f.codec == Codec::H265 && !f.is_config())
    {
        let t = picture(f);
        if h265::is_irap(t) {
            out.push(0);
            counting = true;
        } else if counting && h265::is_rasl(t) {
            *out.last_mut().unwrap() += 1;
        } else {
            counting = false;
        }
    }
    out
}

#[test]
fn every_cra_is_a_keyframe_with_its_config() {
    if !tools_present() {
        return;
    }
    let dir = tmp_dir("demux");
    let frames = open_gop_frames(&dir);
    let mut config: Option<&Frame> = None;
    let mut keyframes = 0;
    for f in frames.iter().filter(|f| f.codec == Codec::H265) {
        if f.is_config() {
            HevcConfig::parse(&f.payload).unwrap();
            config = Some(f);
            continue;
        }
        let t = picture(f);
        assert_eq!(
            f.is_keyframe(),
            h265::is_irap(t),
            "picture type {t} at dts {}",
            f.dts
        );
        if f.is_keyframe() {
            keyframes += 1;
            assert!(
                config.is_some(),
                "keyframe at dts {} before a config",
                f.dts
            );
        }
    }
    // The IDR and the three CRAs, 2 s apart in presentation order.
    assert_eq!(keyframes, 4);
    let key_pts: Vec<i64> = frames
        .iter()
        .filter(|f| f.codec == Codec::H265 && f.is_keyframe())
        .map(|f| f.pts)
        .collect();
    for w in key_pts.windows(2) {
        assert_eq!(w[1] - w[0], 2 * 90_000, "{key_pts:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `(sample_flags, composition offset)` of each video sample of the fMP4
/// bytes `data` (`moof`s of both tracks; the video `trun` is the one with
/// composition offsets, flag 0x800).
fn video_sample_flags(data: &[u8]) -> Vec<u32> {
    fn boxes(mut d: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        while d.len() >= 8 {
            let size = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize;
            assert!(size >= 8 && size <= d.len(), "box size {size}");
            out.push((d[4..8].try_into().unwrap(), &d[8..size]));
            d = &d[size..];
        }
        out
    }
    let word = |b: &[u8], i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    let mut flags = Vec::new();
    for (_, moof) in boxes(data).into_iter().filter(|(t, _)| t == b"moof") {
        for (_, traf) in boxes(moof).into_iter().filter(|(t, _)| t == b"traf") {
            for (_, trun) in boxes(traf).into_iter().filter(|(t, _)| t == b"trun") {
                let tr_flags = word(trun, 0) & 0x00ff_ffff;
                if tr_flags & 0x800 == 0 {
                    continue;
                }
                assert_eq!(tr_flags, 0xf01, "arcly's video trun layout");
                let n = word(trun, 4) as usize;
                flags.extend((0..n).map(|i| word(trun, 12 + i * 16 + 8)));
            }
        }
    }
    flags
}

/// ffprobe's (decoded frames, packets) of the first video stream of `path`.
fn video_counts(path: &Path) -> (usize, usize) {
    let (out, err) = run(
        "ffprobe",
        &[
            "-count_frames",
            "-count_packets",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames,nb_read_packets",
            "-of",
            "default=nw=1",
            path.to_str().unwrap(),
        ],
    );
    assert!(err.is_empty(), "ffprobe {path:?}: {err}");
    let get = |k: &str| -> usize {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {k} in {out}"))
            .trim()
            .parse()
            .unwrap()
    };
    (get("nb_read_frames"), get("nb_read_packets"))
}

#[test]
fn hls_cuts_on_cras_and_every_start_decodes() {
    if !tools_present() {
        return;
    }
    let dir = tmp_dir("hls");
    let frames = open_gop_frames(&dir);
    let rasl = rasl_after_each_irap(&frames);
    // Decode-order index of each keyframe among the 200 video frames (a
    // CRA comes a few frames before its display position, ahead of its
    // RASL pictures).
    let key_index: Vec<usize> = frames
        .iter()
        .filter(|f| f.codec == Codec::H265 && !f.is_config())
        .enumerate()
        .filter(|(_, f)| f.is_keyframe())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(key_index.len(), 4);
    assert_eq!(rasl.len(), 4);
    assert_eq!(rasl[0], 0, "an IDR has no RASL pictures");
    assert!(rasl[1..].iter().all(|n| *n > 0), "{rasl:?}");

    let mut m = HlsMuxer::new(HlsConfig::default().with_window_segments(10));
    m.enable_ts();
    for f in &frames {
        m.push(f);
    }
    m.finish();
    assert_eq!(m.dropped_frames(), 0);

    // The flags the fMP4 samples must carry, in decode order.
    let expected_flags: Vec<u32> = frames
        .iter()
        .filter(|f| f.codec == Codec::H265 && !f.is_config())
        .map(|f| {
            let t = picture(f);
            if h265::is_irap(t) {
                0x0200_0000 // sample_depends_on = 2, sync
            } else if h265::is_rasl(t) {
                0x0501_0000 // is_leading = 1, depends_on = 1, non-sync
            } else {
                0x0101_0000 // depends_on = 1, non-sync
            }
        })
        .collect();

    for variant in [Variant::LowLatency, Variant::Ts] {
        let p = playlist(&m, variant);
        let durations: Vec<f64> = p.segments.iter().map(|s| s.duration).collect();
        // One segment per 2 s GOP, cut on each CRA: within 10 % of the target.
        assert_eq!(durations.len(), 4, "{variant:?}: {durations:?}");
        assert!(
            durations.iter().all(|d| (d - 2.0).abs() <= 0.2),
            "{variant:?}: {durations:?}"
        );
        let segments: Vec<Vec<u8>> = p
            .segments
            .iter()
            .map(|s| m.segment(variant, s.msn).unwrap().to_vec())
            .collect();
        if variant == Variant::LowLatency {
            let all: Vec<u32> = segments
                .iter()
                .flat_map(|s| video_sample_flags(s))
                .collect();
            assert_eq!(all, expected_flags, "fMP4 sample flags");
            for (k, s) in segments.iter().enumerate() {
                assert_eq!(
                    video_sample_flags(s).first(),
                    Some(&0x0200_0000),
                    "segment {k} starts on a sync sample"
                );
            }
        }
        // A client that starts at segment k and plays on to the end.
        let mut from_k_packets = Vec::new();
        for k in 0..segments.len() {
            let mut bytes = Vec::new();
            if variant == Variant::LowLatency {
                bytes.extend_from_slice(&m.init_segment().unwrap());
            }
            for s in &segments[k..] {
                bytes.extend_from_slice(s);
            }
            let ext = if variant == Variant::Ts { "ts" } else { "mp4" };
            let path = dir.join(format!("{variant:?}-from-{k}.{ext}"));
            std::fs::write(&path, &bytes).unwrap();
            decode_without_warnings(&path);
            let (decoded, packets) = video_counts(&path);
            assert_eq!(
                packets,
                200 - key_index[k],
                "{variant:?} from segment {k}: every frame from its keyframe on"
            );
            assert_eq!(
                decoded,
                packets - rasl[k],
                "{variant:?} from segment {k}: only the {} RASL pictures of its CRA may be lost",
                rasl[k]
            );
            from_k_packets.push(packets);
        }
        eprintln!("{variant:?}: durations {durations:?}, packets from segment k {from_k_packets:?}, RASL {rasl:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn late_subscriber_starts_at_a_cra() {
    if !tools_present() {
        return;
    }
    let dir = tmp_dir("engine");
    let frames = open_gop_frames(&dir);
    let key = StreamKey::new("live", "hevc").unwrap();
    let mut publisher = Publisher::detached(key, AppConfig::default());
    // Join 3.2 s in: after the CRA at 2 s, before the one at 4 s.
    let join = frames
        .iter()
        .position(|f| f.codec == Codec::H265 && f.dts - frames[0].dts > 3 * 90_000)
        .unwrap();
    let mut sub = None;
    for (i, f) in frames.iter().enumerate() {
        if i == join {
            sub = Some(publisher.subscribe().unwrap());
        }
        publisher.send(f.clone());
    }
    let mut sub = sub.unwrap();
    let mut got = Vec::new();
    while let Recv::Frame(f) = sub.recv() {
        got.push(f.frame.clone());
    }
    let first_video = got
        .iter()
        .position(|f| f.kind() == MediaKind::Video && !f.is_config())
        .expect("the subscriber got video");
    let start = &got[first_video];
    assert!(start.is_keyframe());
    assert_eq!(
        picture(start),
        h265::NAL_CRA,
        "starts at a CRA, not the IDR"
    );
    assert!(
        got[..first_video]
            .iter()
            .any(|f| f.codec == Codec::H265 && f.is_config()),
        "the video config comes before the CRA"
    );
    // The CRA the subscriber got is the one 2 s in (the cached GOP).
    let cra_2s = frames
        .iter()
        .filter(|f| f.codec == Codec::H265 && !f.is_config() && f.is_keyframe())
        .nth(1)
        .unwrap();
    assert_eq!(start.dts, cra_2s.dts);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Enhanced RTMP (FLV `ExVideoTagHeader`): arcly's egress sends each CRA
/// with `FrameType` 1 (keyframe), and its ingest takes a CRA for a keyframe
/// even when a publisher flags it as an inter frame (the NAL type decides).
#[cfg(feature = "rtmp")]
#[test]
fn rtmp_flags_cras_as_keyframes() {
    use arcly::rtmp::flv::{self, FlvDemux};
    if !tools_present() {
        return;
    }
    let dir = tmp_dir("flv");
    let frames = open_gop_frames(&dir);
    let mut demux = FlvDemux::new();
    let mut cras = 0;
    for f in frames.iter().filter(|f| f.codec == Codec::H265) {
        let body = flv::frame_to_tag_body(f);
        let frame_type = (body[0] >> 4) & 7;
        let irap = !f.is_config() && h265::is_irap(picture(f));
        assert_eq!(frame_type == 1, f.is_config() || irap, "dts {}", f.dts);
        let ms = flv::tag_timestamp_ms(f);
        let back = demux.video(ms, body.clone()).unwrap().unwrap();
        assert_eq!(back.is_keyframe(), f.is_keyframe());
        if !f.is_config() && picture(f) == h265::NAL_CRA {
            cras += 1;
            // The same CRA flagged as an inter frame (FrameType 2).
            let mut inter = body.to_vec();
            inter[0] = (inter[0] & 0x8F) | (2 << 4);
            let back = demux.video(ms, inter.into()).unwrap().unwrap();
            assert!(back.is_keyframe(), "a CRA is a keyframe on ingest");
        }
    }
    assert_eq!(cras, 3);
    let _ = std::fs::remove_dir_all(&dir);
}
