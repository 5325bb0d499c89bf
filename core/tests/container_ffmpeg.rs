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

use arcly::codec::aac::AacConfig;
use arcly::codec::h264::AvcConfig;
use arcly::codec::h265::HevcConfig;
use arcly::codec::opus::OpusHead;
use arcly::container::fmp4::{init_segment, Fragmenter, TrackInfo};
use arcly::container::ts::TsMuxer;
use arcly::{Codec, Frame, MediaKind};
use bytes::Bytes;
use common::ffmpeg::{
    decode_counts, demux_flv, encode_test_source, run, tools_present, H264_BF_AAC,
};

fn tmp(name: &str) -> PathBuf {
    common::ffmpeg::tmp_path("container", name)
}

/// The media frames (configs excluded) of `codec`.
fn media(frames: &[Frame], codec: Codec) -> Vec<&Frame> {
    frames
        .iter()
        .filter(|f| f.codec == codec && !f.is_config())
        .collect()
}

/// The payload of the first frame of `codec` (its config record).
fn config_of(frames: &[Frame], codec: Codec) -> &Bytes {
    &frames.iter().find(|f| f.codec == codec).unwrap().payload
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
            "-show_entries",
            "packet=codec_type,pts,dts,duration,flags",
            "-of",
            "csv=p=0",
            path.to_str().unwrap(),
        ],
    );
    assert!(err.is_empty(), "ffprobe: {err}");
    out.lines()
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
    encode_test_source(48_000, 2, H264_BF_AAC, &src);
    let data = Bytes::from(std::fs::read(&src).unwrap());
    let _ = std::fs::remove_file(&src);
    let frames = demux_flv(&data).frames;
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

/// Writes `bytes` (our muxer's output for `frames`) to `name`; ffmpeg must
/// decode every frame of it without a warning, and ffprobe must see every
/// H.264 frame with the input's timestamps (at 90 kHz) and keyframe flags.
/// Returns ffprobe's (video, audio) packets.
fn mux_matches_input(frames: &[Frame], name: &str, bytes: Vec<u8>) -> (Vec<Packet>, Vec<Packet>) {
    let path = tmp(name);
    std::fs::write(&path, bytes).unwrap();
    let input_v = media(frames, Codec::H264);
    let input_a = media(frames, Codec::Aac);
    assert_eq!(decode_counts(&path), (input_v.len(), input_a.len()));
    let pk = probe_packets(&path);
    let _ = std::fs::remove_file(&path);
    let (video, audio): (Vec<Packet>, Vec<Packet>) = pk.into_iter().partition(|p| p.video);
    assert_eq!((video.len(), audio.len()), (input_v.len(), input_a.len()));
    for (p, f) in video.iter().zip(&input_v) {
        assert_eq!(
            (p.pts, p.dts, p.key),
            (f.pts * 90, f.dts * 90, f.is_keyframe())
        );
    }
    (video, audio)
}

#[test]
fn fmp4_of_ffmpeg_stream_decodes_in_ffmpeg() {
    if !tools_present() {
        return;
    }
    let frames = ffmpeg_frames();
    assert_eq!(media(&frames, Codec::H264).len(), 50);
    let (video, audio) = mux_matches_input(&frames, "out.mp4", write_fmp4(&frames));
    // 25 fps at 90 kHz: every duration is 3600.
    assert!(video.iter().all(|p| p.duration == 3600), "{video:?}");
    // AAC at 48 kHz: ffprobe sees the input timestamps exactly and 1024-sample frames.
    for (p, f) in audio.iter().zip(media(&frames, Codec::Aac)) {
        assert_eq!((p.pts, p.duration, p.key), (f.pts * 48, 1024, true));
    }
}

#[test]
fn ts_mux_of_ffmpeg_stream_decodes_in_ffmpeg() {
    if !tools_present() {
        return;
    }
    let frames = ffmpeg_frames();
    let (_, audio) = mux_matches_input(&frames, "out.ts", write_ts(&frames));
    for (p, f) in audio.iter().zip(media(&frames, Codec::Aac)) {
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

/// ffmpeg encodes `seconds` of the test source with `codec_args` into
/// MPEG-TS; our demuxer must match ffprobe on it
/// ([`check_demux_matches_ffprobe`]), and the demuxed frames must go back out
/// through our TS and fMP4 muxers and decode cleanly with every frame.
/// Returns the demuxed frames.
fn ts_demux_round_trip(
    name: &str,
    sample_rate: u32,
    seconds: u32,
    codec_args: &[&str],
    (vcodec, acodec): (Codec, Codec),
) -> Vec<Frame> {
    let path = tmp(&format!("ff-{name}.ts"));
    let mut args = codec_args.to_vec();
    args.extend_from_slice(&["-ac", "2", "-f", "mpegts"]);
    encode_test_source(sample_rate, seconds, &args, &path);
    let frames = check_demux_matches_ffprobe(&path, vcodec, acodec);
    let _ = std::fs::remove_file(&path);

    let counts = (media(&frames, vcodec).len(), media(&frames, acodec).len());
    let ts = tmp(&format!("re-{name}.ts"));
    std::fs::write(&ts, write_ts(&frames)).unwrap();
    assert_eq!(decode_counts(&ts), counts);
    let mp4 = tmp(&format!("re-{name}.mp4"));
    std::fs::write(&mp4, write_fmp4(&frames)).unwrap();
    assert_eq!(decode_counts(&mp4), counts);
    let _ = std::fs::remove_file(&ts);
    let _ = std::fs::remove_file(&mp4);
    frames
}

/// Keyframes of `codec` among `frames`.
fn keyframes(frames: &[Frame], codec: Codec) -> usize {
    frames
        .iter()
        .filter(|f| f.codec == codec && f.is_keyframe())
        .count()
}

#[test]
fn ts_demux_of_ffmpeg_h264_aac() {
    if !tools_present() {
        return;
    }
    let frames = ts_demux_round_trip(
        "h264",
        44_100,
        3,
        &["-c:v", "libx264", "-g", "30", "-bf", "2", "-c:a", "aac"],
        (Codec::H264, Codec::Aac),
    );
    let avc = AvcConfig::parse(config_of(&frames, Codec::H264)).unwrap();
    let sps = avc.parse_sps().unwrap();
    assert_eq!((sps.width, sps.height), (320, 240));
    let asc = AacConfig::parse(config_of(&frames, Codec::Aac)).unwrap();
    assert_eq!((asc.sampling_frequency, asc.channel_config), (44_100, 2));
    assert_eq!(keyframes(&frames, Codec::H264), 3, "GOP 30 over 75 frames");
}

#[test]
fn ts_demux_of_ffmpeg_h265_opus() {
    if !tools_present() {
        return;
    }
    let frames = ts_demux_round_trip(
        "h265",
        48_000,
        2,
        &[
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error:keyint=25:bframes=2",
            "-c:a",
            "libopus",
        ],
        (Codec::H265, Codec::Opus),
    );
    let hvc = HevcConfig::parse(config_of(&frames, Codec::H265)).unwrap();
    let sps = hvc.parse_sps().unwrap();
    assert_eq!((sps.width, sps.height), (320, 240));
    let head = OpusHead::parse(config_of(&frames, Codec::Opus)).unwrap();
    assert_eq!(head.channels, 2);
    assert_eq!(keyframes(&frames, Codec::H265), 2);
}
