//! Containers against real ffmpeg / ffprobe:
//! - ffmpeg-made H.264 + AAC (via FLV and `FlvDemux`) → fMP4 and → MPEG-TS
//!   with our muxers; ffmpeg decodes every frame with no errors, ffprobe sees
//!   the right counts, timestamps and durations.
//! - ffmpeg-made MPEG-TS (H.264 + AAC, H.265 + Opus) → our demuxer: frame
//!   counts, keyframes and timestamps match ffprobe; the demuxed frames go
//!   back out through our TS and fMP4 muxers and decode cleanly.
//!
//! ffmpeg/ffprobe are required: without them the tests are skipped locally
//! and fail when `CI=true`.
#![cfg(feature = "rtmp")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use arcly::codec::aac::AacConfig;
use arcly::codec::h264::AvcConfig;
use arcly::codec::h265::HevcConfig;
use arcly::codec::opus::OpusHead;
use arcly::container::fmp4::{init_segment, Fragmenter, TrackInfo};
use arcly::container::ts::TsMuxer;
use arcly::rtmp::flv::{self, FlvDemux};
use arcly::{Codec, Frame, MediaKind};
use bytes::Bytes;

fn tools_present() -> bool {
    let ok = ["ffmpeg", "ffprobe"].iter().all(|t| {
        Command::new(t)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ffmpeg and ffprobe must be installed in CI"
        );
        eprintln!("ffmpeg/ffprobe not found: skipping");
    }
    ok
}

fn tmp(name: &str) -> PathBuf {
    // Unique per call: tests run in parallel and share helper file names.
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("arcly-container-{}-{n}-{name}", std::process::id()))
}

fn run(tool: &str, args: &[&str]) -> (Vec<u8>, String) {
    let out = Command::new(tool)
        .args(
            ["-hide_banner", "-nostdin", "-v", "error"]
                .iter()
                .skip(usize::from(tool == "ffprobe") * 2),
        )
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs ffmpeg and requires an empty stderr at `-v error`.
fn ffmpeg(args: &[&str]) {
    let (_, err) = run("ffmpeg", args);
    assert!(err.is_empty(), "ffmpeg {args:?} reported errors: {err}");
}

/// Decodes every frame of `path`; asserts no errors; returns decoded
/// (video, audio) frame counts.
fn decode_counts(path: &Path) -> (usize, usize) {
    let p = path.to_str().unwrap();
    // Warnings too (continuity errors, PES size mismatches, bad timestamps).
    let (_, err) = run(
        "ffmpeg",
        &["-v", "warning", "-xerror", "-i", p, "-f", "null", "-"],
    );
    assert!(err.is_empty(), "ffmpeg decoding {p} warned: {err}");
    let (out, err) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=index,codec_type,nb_read_frames",
            "-of",
            "csv=p=0",
            p,
        ],
    );
    assert!(err.is_empty(), "ffprobe: {err}");
    // Streams are listed again under their program in MPEG-TS: dedupe by index.
    let mut streams = std::collections::BTreeMap::new();
    for l in String::from_utf8(out)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let f: Vec<&str> = l.split(',').collect();
        streams.insert(
            f[0].to_owned(),
            (f[1].to_owned(), f[2].trim().parse::<usize>().unwrap()),
        );
    }
    let count = |k: &str| {
        streams
            .values()
            .filter(|(t, _)| t == k)
            .map(|(_, n)| n)
            .sum()
    };
    (count("video"), count("audio"))
}

#[derive(Debug, Clone, PartialEq)]
struct Packet {
    video: bool,
    pts: i64,
    dts: i64,
    duration: i64,
    key: bool,
}

/// ffprobe's packets (timestamps in each stream's time base).
fn probe_packets(path: &Path) -> Vec<Packet> {
    let (out, err) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,pts,dts,duration,flags",
            "-of",
            "csv=p=0",
            path.to_str().unwrap(),
        ],
    );
    assert!(err.is_empty(), "ffprobe: {err}");
    String::from_utf8(out)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let num = |s: &str| s.parse::<i64>().unwrap_or(-1);
            Packet {
                video: f[0] == "video",
                pts: num(f[1]),
                dts: num(f[2]),
                duration: num(f[3]),
                key: f[4].starts_with('K'),
            }
        })
        .collect()
}

/// H.264 (B-frames) + AAC from ffmpeg, through FLV and `FlvDemux`, as frames
/// with millisecond timestamps.
fn ffmpeg_frames() -> Vec<Frame> {
    let src = tmp("src.flv");
    ffmpeg(&[
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "2",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-g",
        "25",
        "-bf",
        "2",
        "-c:a",
        "aac",
        "-ac",
        "2",
        src.to_str().unwrap(),
    ]);
    let data = Bytes::from(std::fs::read(&src).unwrap());
    let _ = std::fs::remove_file(&src);
    let mut demux = FlvDemux::new();
    let mut frames = Vec::new();
    let mut rest = data.slice(flv::FILE_HEADER_LEN..);
    while let Some((tag, used)) = flv::read_tag(&rest).unwrap() {
        rest = rest.slice(used..);
        let ts = i64::from(tag.timestamp_ms);
        let f = match tag.tag_type {
            flv::TAG_TYPE_VIDEO => demux.video(ts, tag.body).unwrap(),
            flv::TAG_TYPE_AUDIO => demux.audio(ts, tag.body).unwrap(),
            _ => None,
        };
        frames.extend(f);
    }
    assert!(frames
        .iter()
        .any(|f| f.codec == Codec::H264 && f.is_config()));
    assert!(frames
        .iter()
        .any(|f| f.codec == Codec::Aac && f.is_config()));
    frames
}

/// Writes `frames` as init + fragments (video cut before each keyframe,
/// audio every 20 frames) and returns the file bytes.
fn write_fmp4(frames: &[Frame]) -> Vec<u8> {
    let mut tracks = Vec::new();
    let mut frag: Vec<Fragmenter> = Vec::new();
    for kind in [MediaKind::Video, MediaKind::Audio] {
        if let Some(c) = frames.iter().find(|f| f.is_config() && f.kind() == kind) {
            let t = TrackInfo::from_config(tracks.len() as u32 + 1, c).unwrap();
            tracks.push(t.clone());
            frag.push(Fragmenter::new(t));
        }
    }
    let mut out = init_segment(&tracks).unwrap().to_vec();
    let mut seq = 1;
    let mut audio_count = 0;
    for f in frames.iter().filter(|f| !f.is_config()) {
        let i = frag
            .iter()
            .position(|x| x.track().codec == f.codec)
            .unwrap();
        let cut = if f.kind() == MediaKind::Video {
            f.is_keyframe()
        } else {
            audio_count += 1;
            audio_count % 20 == 0
        };
        if cut {
            if let Some(b) = frag[i].fragment(seq) {
                out.extend_from_slice(&b);
                seq += 1;
            }
        }
        frag[i].push(f).unwrap();
    }
    for fr in &mut frag {
        let d = if fr.track().codec.kind() == MediaKind::Video {
            3600
        } else {
            1024
        };
        if let Some(b) = fr.flush(seq, d) {
            out.extend_from_slice(&b);
            seq += 1;
        }
    }
    out
}

fn write_ts(frames: &[Frame]) -> Vec<u8> {
    let v = frames
        .iter()
        .find(|f| f.kind() == MediaKind::Video)
        .map(|f| f.codec);
    let a = frames
        .iter()
        .find(|f| f.kind() == MediaKind::Audio)
        .map(|f| f.codec);
    let mut m = TsMuxer::new(v, a).unwrap();
    frames
        .iter()
        .flat_map(|f| m.mux(f).unwrap().to_vec())
        .collect()
}

fn demux_file(path: &Path) -> (Vec<Frame>, arcly::container::ts::TsDemuxStats) {
    let data = std::fs::read(path).unwrap();
    // Odd-sized reads: packet boundaries never line up.
    common::demux_ts(&data, 1000)
}

#[test]
fn fmp4_of_ffmpeg_stream_decodes_in_ffmpeg() {
    if !tools_present() {
        return;
    }
    let frames = ffmpeg_frames();
    let path = tmp("out.mp4");
    std::fs::write(&path, write_fmp4(&frames)).unwrap();
    let nv = frames
        .iter()
        .filter(|f| f.codec == Codec::H264 && !f.is_config())
        .count();
    let na = frames
        .iter()
        .filter(|f| f.codec == Codec::Aac && !f.is_config())
        .count();
    assert_eq!(nv, 50);
    assert_eq!(decode_counts(&path), (nv, na));
    let pk = probe_packets(&path);
    let _ = std::fs::remove_file(&path);
    let video: Vec<&Packet> = pk.iter().filter(|p| p.video).collect();
    let audio: Vec<&Packet> = pk.iter().filter(|p| !p.video).collect();
    assert_eq!((video.len(), audio.len()), (nv, na));
    // 25 fps at 90 kHz: every duration is 3600, timestamps are the input's.
    assert!(video.iter().all(|p| p.duration == 3600), "{video:?}");
    let input: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.codec == Codec::H264 && !f.is_config())
        .collect();
    for (p, f) in video.iter().zip(&input) {
        assert_eq!(
            (p.pts, p.dts, p.key),
            (f.pts * 90, f.dts * 90, f.is_keyframe())
        );
    }
    // AAC at 48 kHz: ffprobe sees the input timestamps exactly and 1024-sample frames.
    let input_a: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.codec == Codec::Aac && !f.is_config())
        .collect();
    for (p, f) in audio.iter().zip(&input_a) {
        assert_eq!((p.pts, p.duration, p.key), (f.pts * 48, 1024, true));
    }
}

#[test]
fn ts_mux_of_ffmpeg_stream_decodes_in_ffmpeg() {
    if !tools_present() {
        return;
    }
    let frames = ffmpeg_frames();
    let path = tmp("out.ts");
    std::fs::write(&path, write_ts(&frames)).unwrap();
    let input_v: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.codec == Codec::H264 && !f.is_config())
        .collect();
    let input_a: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.codec == Codec::Aac && !f.is_config())
        .collect();
    assert_eq!(decode_counts(&path), (input_v.len(), input_a.len()));
    let pk = probe_packets(&path);
    let _ = std::fs::remove_file(&path);
    let video: Vec<&Packet> = pk.iter().filter(|p| p.video).collect();
    let audio: Vec<&Packet> = pk.iter().filter(|p| !p.video).collect();
    assert_eq!(video.len(), input_v.len());
    for (p, f) in video.iter().zip(&input_v) {
        assert_eq!(
            (p.pts, p.dts, p.key),
            (f.pts * 90, f.dts * 90, f.is_keyframe())
        );
    }
    assert_eq!(audio.len(), input_a.len());
    for (p, f) in audio.iter().zip(&input_a) {
        assert_eq!(p.pts, f.pts * 90);
    }
}

/// Our frames of an ffmpeg TS file against ffprobe's packets of the same file.
fn check_demux_matches_ffprobe(path: &Path, vcodec: Codec, acodec: Codec) -> Vec<Frame> {
    let (frames, stats) = demux_file(path);
    assert_eq!(stats.cc_errors, 0);
    assert_eq!(stats.dropped_frames, 0);
    assert_eq!(stats.resyncs, 0);
    let pk = probe_packets(path);
    let pv: Vec<&Packet> = pk.iter().filter(|p| p.video).collect();
    let pa: Vec<&Packet> = pk.iter().filter(|p| !p.video).collect();
    let v: Vec<&Frame> = frames.iter().filter(|f| f.codec == vcodec).collect();
    let a: Vec<&Frame> = frames.iter().filter(|f| f.codec == acodec).collect();
    assert!(v[0].is_config() && a[0].is_config());
    assert_eq!(
        v.iter().filter(|f| f.is_config()).count(),
        1,
        "parameter sets do not change"
    );
    let v: Vec<&&Frame> = v.iter().filter(|f| !f.is_config()).collect();
    let a: Vec<&&Frame> = a.iter().filter(|f| !f.is_config()).collect();
    assert_eq!(v.len(), pv.len(), "video frame count");
    assert_eq!(a.len(), pa.len(), "audio frame count");
    for (f, p) in v.iter().zip(&pv) {
        assert_eq!(
            (f.pts, f.dts, f.is_keyframe()),
            (p.pts, p.dts, p.key),
            "{p:?}"
        );
        assert_eq!(f.timebase, 90_000);
    }
    for (f, p) in a.iter().zip(&pa) {
        // Within one PES ffmpeg adds up rounded frame durations; ours are
        // computed from the PES timestamp: equal within a tick.
        assert!((f.pts - p.pts).abs() <= 1, "{} vs {p:?}", f.pts);
        assert!(f.is_keyframe());
    }
    frames
}

#[test]
fn ts_demux_of_ffmpeg_h264_aac() {
    if !tools_present() {
        return;
    }
    let path = tmp("ff-h264.ts");
    ffmpeg(&[
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        "3",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-g",
        "30",
        "-bf",
        "2",
        "-c:a",
        "aac",
        "-ac",
        "2",
        "-f",
        "mpegts",
        path.to_str().unwrap(),
    ]);
    let frames = check_demux_matches_ffprobe(&path, Codec::H264, Codec::Aac);
    let _ = std::fs::remove_file(&path);
    let avc = AvcConfig::parse(
        &frames
            .iter()
            .find(|f| f.codec == Codec::H264)
            .unwrap()
            .payload,
    )
    .unwrap();
    let sps = avc.parse_sps().unwrap();
    assert_eq!((sps.width, sps.height), (320, 240));
    let asc = AacConfig::parse(
        &frames
            .iter()
            .find(|f| f.codec == Codec::Aac)
            .unwrap()
            .payload,
    )
    .unwrap();
    assert_eq!((asc.sampling_frequency, asc.channel_config), (44_100, 2));
    let keys = frames
        .iter()
        .filter(|f| f.codec == Codec::H264 && f.is_keyframe())
        .count();
    assert_eq!(keys, 3, "GOP 30 over 75 frames");

    // And back out: our TS and fMP4 muxers on the demuxed frames decode cleanly.
    let nv = frames
        .iter()
        .filter(|f| f.codec == Codec::H264 && !f.is_config())
        .count();
    let na = frames
        .iter()
        .filter(|f| f.codec == Codec::Aac && !f.is_config())
        .count();
    let ts = tmp("re.ts");
    std::fs::write(&ts, write_ts(&frames)).unwrap();
    assert_eq!(decode_counts(&ts), (nv, na));
    let mp4 = tmp("re.mp4");
    std::fs::write(&mp4, write_fmp4(&frames)).unwrap();
    assert_eq!(decode_counts(&mp4), (nv, na));
    let _ = std::fs::remove_file(&ts);
    let _ = std::fs::remove_file(&mp4);
}

#[test]
fn ts_demux_of_ffmpeg_h265_opus() {
    if !tools_present() {
        return;
    }
    let path = tmp("ff-h265.ts");
    ffmpeg(&[
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "2",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx265",
        "-x265-params",
        "log-level=error:keyint=25:bframes=2",
        "-c:a",
        "libopus",
        "-ac",
        "2",
        "-f",
        "mpegts",
        path.to_str().unwrap(),
    ]);
    let frames = check_demux_matches_ffprobe(&path, Codec::H265, Codec::Opus);
    let _ = std::fs::remove_file(&path);
    let hvc = HevcConfig::parse(
        &frames
            .iter()
            .find(|f| f.codec == Codec::H265)
            .unwrap()
            .payload,
    )
    .unwrap();
    let sps = hvc.parse_sps().unwrap();
    assert_eq!((sps.width, sps.height), (320, 240));
    let head = OpusHead::parse(
        &frames
            .iter()
            .find(|f| f.codec == Codec::Opus)
            .unwrap()
            .payload,
    )
    .unwrap();
    assert_eq!(head.channels, 2);
    assert_eq!(
        frames
            .iter()
            .filter(|f| f.codec == Codec::H265 && f.is_keyframe())
            .count(),
        2
    );

    let nv = frames
        .iter()
        .filter(|f| f.codec == Codec::H265 && !f.is_config())
        .count();
    let na = frames
        .iter()
        .filter(|f| f.codec == Codec::Opus && !f.is_config())
        .count();
    let ts = tmp("re265.ts");
    std::fs::write(&ts, write_ts(&frames)).unwrap();
    assert_eq!(decode_counts(&ts), (nv, na));
    let mp4 = tmp("re265.mp4");
    std::fs::write(&mp4, write_fmp4(&frames)).unwrap();
    assert_eq!(decode_counts(&mp4), (nv, na));
    let _ = std::fs::remove_file(&ts);
    let _ = std::fs::remove_file(&mp4);
}
