//! HLS segmenter cost: `HlsMuxer::push` (both variants: fMP4 parts +
//! segments and TS segments) over a 3 Mbit/s-class stream (H.264 at 25 fps
//! with a 100 KB keyframe every 2 s and ~14 KB P-frames, AAC at 48 kHz with
//! ~370-byte frames; the same stream as `benches/container.rs`), and the cost
//! of rendering playlists from a full window.
//!
//! `cargo bench -p arcly --bench hls`. Throughput of `push` is frame payload
//! bytes (and frames) per second. Also prints `memory_bytes()` of one stream
//! at the default window. Results: `docs/benchmarks.md` ("HLS segmenter").
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::Duration;

use arcly::codec::aac::AacConfig;
use arcly::codec::h264::AvcConfig;
use arcly::container::hls::{HlsConfig, HlsMuxer, PlaylistRequest, Variant};
use arcly::{Codec, Frame, FrameFlags};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
    0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

/// A pseudo-random AVCC access unit of `len` bytes (one slice NAL, no zero bytes).
fn avcc(len: usize, key: bool, seed: u32) -> Bytes {
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

/// `seconds` of frames in decode order (configs first), timebase 90 kHz.
fn stream(seconds: i64) -> Vec<Frame> {
    let f = |codec, flags, pts, dts, payload| Frame {
        codec,
        flags,
        pts,
        dts,
        timebase: 90_000,
        payload,
    };
    let avc = AvcConfig::from_parameter_sets(
        vec![Bytes::from_static(SPS)],
        vec![Bytes::from_static(PPS)],
    )
    .unwrap()
    .to_bytes();
    let mut frames = vec![
        f(Codec::H264, FrameFlags::CONFIG, 0, 0, avc),
        f(
            Codec::Aac,
            FrameFlags::CONFIG,
            0,
            0,
            AacConfig::new(2, 48_000, 2).to_bytes(),
        ),
    ];
    let mut media = Vec::new();
    for i in 0..25 * seconds {
        let key = i % 50 == 0;
        let len = if key { 100_000 } else { 14_000 };
        let flags = if key {
            FrameFlags::KEYFRAME
        } else {
            FrameFlags::NONE
        };
        media.push(f(
            Codec::H264,
            flags,
            i * 3600 + 7200,
            i * 3600,
            avcc(len, key, i as u32),
        ));
    }
    for i in 0..(seconds * 48_000 / 1024) {
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

fn push_all(frames: &[Frame]) -> usize {
    let mut m = HlsMuxer::new(HlsConfig::default());
    for f in frames {
        m.push(f);
    }
    m.finish();
    m.memory_bytes()
}

fn bench(c: &mut Criterion) {
    let frames = stream(10);
    let payload: u64 = frames.iter().map(|f| f.payload.len() as u64).sum();
    let mut g = c.benchmark_group("hls");
    // A new muxer per 10 s of stream: includes start-up and fresh memory.
    g.throughput(Throughput::Bytes(payload));
    g.bench_function("push_fresh_bytes", |b| {
        b.iter(|| black_box(push_all(black_box(&frames))))
    });
    // Steady state: one muxer, the stream goes on (timestamps advance by
    // 10 s per iteration), the window slides.
    let (configs, media): (Vec<Frame>, Vec<Frame>) =
        frames.iter().cloned().partition(Frame::is_config);
    let media_bytes: u64 = media.iter().map(|f| f.payload.len() as u64).sum();
    let mut m = HlsMuxer::new(HlsConfig::default());
    for c in &configs {
        m.push(c);
    }
    let mut offset = 0i64;
    let mut steady = |m: &mut HlsMuxer| {
        for f in &media {
            let mut f = f.clone();
            f.dts += offset;
            f.pts += offset;
            m.push(&f);
        }
        offset += 10 * 90_000;
    };
    g.throughput(Throughput::Bytes(media_bytes));
    g.bench_function("push_steady_bytes", |b| b.iter(|| steady(&mut m)));
    g.throughput(Throughput::Elements(media.len() as u64));
    g.bench_function("push_steady_frames", |b| b.iter(|| steady(&mut m)));
    assert_eq!(m.dropped_frames(), 0);

    // A full default window (7 × 2 s) plus an open segment with parts.
    let long = stream(31);
    let mut m = HlsMuxer::new(HlsConfig::default());
    for f in &long {
        m.push(f);
    }
    let bitrate = long.iter().map(|f| f.payload.len() as u64).sum::<u64>() * 8 / 31;
    eprintln!(
        "hls: memory_bytes at the default window (7 x 2 s), {:.2} Mbit/s stream: {} bytes ({:.2} MiB)",
        bitrate as f64 / 1e6,
        m.memory_bytes(),
        m.memory_bytes() as f64 / (1 << 20) as f64
    );
    g.throughput(Throughput::Elements(1));
    let plain = PlaylistRequest::default();
    g.bench_function("playlist_ll", |b| {
        b.iter(|| black_box(m.media_playlist(Variant::LowLatency, black_box(&plain))))
    });
    let delta = PlaylistRequest {
        skip: true,
        ..PlaylistRequest::default()
    };
    g.bench_function("playlist_ll_skip", |b| {
        b.iter(|| black_box(m.media_playlist(Variant::LowLatency, black_box(&delta))))
    });
    g.bench_function("render_ll", |b| {
        b.iter(|| black_box(m.render_media_playlist(Variant::LowLatency, false)))
    });
    g.bench_function("render_ll_skip", |b| {
        b.iter(|| black_box(m.render_media_playlist(Variant::LowLatency, true)))
    });
    g.bench_function("render_ts", |b| {
        b.iter(|| black_box(m.render_media_playlist(Variant::Ts, false)))
    });
    g.bench_function("playlist_ts", |b| {
        b.iter(|| black_box(m.media_playlist(Variant::Ts, black_box(&plain))))
    });
    g.bench_function("multivariant", |b| {
        b.iter(|| black_box(m.multivariant_playlist(Variant::LowLatency)))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
