//! Synthetic media shared by the container and HLS tests and the container /
//! HLS benches: real encoder parameter sets, codec configuration records and
//! pseudo-random access units. Included with `mod common;` (tests) or
//! `#[path = "../tests/common/mod.rs"] mod common;` (benches; also the
//! arcly-tokio HTTP test, a crate without arcly's `rtmp`/`srt` features,
//! hence `unexpected_cfgs`).
#![allow(
    unexpected_cfgs,
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use arcly::codec::aac::AacConfig;
use arcly::codec::h264::AvcConfig;
use arcly::codec::h265::HevcConfig;
use arcly::codec::opus::OpusHead;
use arcly::container::ts::{TsDemuxStats, TsDemuxer};
use arcly::{Codec, Frame, FrameFlags};
use bytes::Bytes;

pub mod feed;
pub mod ffmpeg;
#[cfg(feature = "srt")]
pub mod srt;

/// Whether the tests run under CI (`CI` is `true`, `1` or `yes`): there a
/// missing interop tool is a failure, never a skip.
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI")
            .ok()
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("true" | "1" | "yes")
    )
}

/// libx264 High 640x360 SPS / PPS.
pub const SPS_H264: &[u8] = &[
    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
    0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
];
pub const PPS_H264: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
/// libx265 1280x720 VPS / SPS / PPS.
pub const VPS_H265: &[u8] = &[
    0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03,
    0x00, 0x00, 0x03, 0x00, 0x5d, 0x95, 0x98, 0x09,
];
pub const SPS_H265: &[u8] = &[
    0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03,
    0x00, 0x5d, 0xa0, 0x02, 0x80, 0x80, 0x2d, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b, 0xc0, 0x5a, 0x02,
    0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x32, 0x10,
];
pub const PPS_H265: &[u8] = &[0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];

/// The configuration record of `codec`: H.264 / H.265 from the parameter sets
/// above, AAC-LC stereo at `aac_rate` Hz, Opus with `opus_channels` channels.
pub fn config_payload(codec: Codec, aac_rate: u32, opus_channels: u8) -> Bytes {
    let b = |s: &'static [u8]| Bytes::from_static(s);
    match codec {
        Codec::H264 => AvcConfig::from_parameter_sets(vec![b(SPS_H264)], vec![b(PPS_H264)])
            .unwrap()
            .to_bytes(),
        Codec::H265 => {
            HevcConfig::from_parameter_sets(vec![b(VPS_H265)], vec![b(SPS_H265)], vec![b(PPS_H265)])
                .unwrap()
                .to_bytes()
        }
        Codec::Aac => AacConfig::new(2, aac_rate, 2).to_bytes(),
        Codec::Opus => OpusHead::new(opus_channels).to_bytes(),
        other => unreachable!("no config record for {other} here"),
    }
}

/// A config frame at time 0 (timebase 1 ms) carrying `payload`.
pub fn config_frame(codec: Codec, payload: Bytes) -> Frame {
    Frame {
        codec,
        flags: FrameFlags::CONFIG,
        pts: 0,
        dts: 0,
        timebase: 1000,
        payload,
    }
}

/// A media frame at 90 kHz.
pub fn frame_90k(codec: Codec, flags: FrameFlags, pts: i64, dts: i64, payload: Bytes) -> Frame {
    Frame {
        codec,
        flags,
        pts,
        dts,
        timebase: 90_000,
        payload,
    }
}

/// The flags of a media frame: a keyframe or not.
pub fn key_flags(key: bool) -> FrameFlags {
    if key {
        FrameFlags::KEYFRAME
    } else {
        FrameFlags::NONE
    }
}

/// A pseudo-random AVCC access unit of `len` bytes (one slice NAL, no zero bytes).
pub fn avcc(len: usize, key: bool, seed: u32) -> Bytes {
    let mut v = Vec::with_capacity(len + 4);
    v.extend_from_slice(&(len as u32).to_be_bytes());
    v.push(if key { 0x65 } else { 0x41 });
    let mut x = seed | 1;
    while v.len() < len + 4 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push((x as u8) | 1);
    }
    Bytes::from(v)
}

/// A 3 Mbit/s-class stream in decode order (configs first), timebase 90 kHz:
/// `video_frames` of H.264 at 25 fps (100 KB keyframe every 2 s, ~14 KB
/// P-frames) and `audio_frames` of AAC at 48 kHz (~370-byte frames).
pub fn bench_stream(video_frames: i64, audio_frames: i64) -> Vec<Frame> {
    let f = frame_90k;
    let mut frames = vec![
        f(
            Codec::H264,
            FrameFlags::CONFIG,
            0,
            0,
            config_payload(Codec::H264, 48_000, 2),
        ),
        f(
            Codec::Aac,
            FrameFlags::CONFIG,
            0,
            0,
            config_payload(Codec::Aac, 48_000, 2),
        ),
    ];
    let mut media = Vec::new();
    for i in 0..video_frames {
        let key = i % 50 == 0;
        let len = if key { 100_000 } else { 14_000 };
        let flags = key_flags(key);
        media.push(f(
            Codec::H264,
            flags,
            i * 3600 + 7200,
            i * 3600,
            avcc(len, key, i as u32),
        ));
    }
    for i in 0..audio_frames {
        let t = i * 1920;
        media.push(f(
            Codec::Aac,
            FrameFlags::KEYFRAME,
            t,
            t,
            avcc(366, false, 7 + i as u32).slice(4..),
        ));
    }
    media.sort_by_key(|m| m.dts);
    frames.extend(media);
    frames
}

/// Demuxes the MPEG-TS `data` fed in reads of `chunk` bytes (then flushed):
/// the frames and the demuxer's statistics.
pub fn demux_ts(data: &[u8], chunk: usize) -> (Vec<Frame>, TsDemuxStats) {
    let (frames, d) = demux_chunks(data.chunks(chunk));
    (frames, d.stats())
}

/// Feeds `chunks` of MPEG-TS to a new demuxer, then flushes it: the frames
/// and the demuxer.
pub fn demux_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Frame>, TsDemuxer) {
    let mut d = TsDemuxer::new();
    let mut frames = Vec::new();
    for c in chunks {
        d.handle_input(c).unwrap();
        while let Some(f) = d.poll_frame() {
            frames.push(f);
        }
    }
    d.flush();
    while let Some(f) = d.poll_frame() {
        frames.push(f);
    }
    (frames, d)
}
