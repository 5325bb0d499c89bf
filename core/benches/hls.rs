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

use arcly::container::hls::{HlsConfig, HlsMuxer, PlaylistRequest, Variant};
use arcly::Frame;
use criterion::{Criterion, Throughput};

#[path = "../tests/common/mod.rs"]
mod common;
#[macro_use]
mod quick;

/// `seconds` of frames in decode order (configs first), timebase 90 kHz.
fn stream(seconds: i64) -> Vec<Frame> {
    common::bench_stream(25 * seconds, seconds * 48_000 / 1024)
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

quick_bench_main!(bench);
