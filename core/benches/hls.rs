//! HLS segmenter cost: `HlsMuxer::push` over a 3 Mbit/s-class stream (H.264
//! at 25 fps with a 100 KB keyframe every 2 s and ~14 KB P-frames, AAC at
//! 48 kHz with ~370-byte frames; the same stream as `benches/container.rs`),
//! with LL-HLS only (`*_ll`: fMP4 parts + segments, the TS variant off, as
//! when nobody watches TS) and with both variants (`*_both`: TS segments
//! too, `HlsMuxer::enable_ts`), and the cost of rendering playlists from a
//! full window.
//!
//! `cargo bench -p arcly --bench hls`. Throughput of `push` is frame payload
//! bytes (and frames) per second. Also prints `memory_bytes()` of one stream
//! at the default window, LL-HLS only and both. Results: `docs/benchmarks.md`
//! ("HLS segmenter", "HLS: TS variant on demand").
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

fn muxer(ts: bool) -> HlsMuxer {
    let mut m = HlsMuxer::new(HlsConfig::default());
    if ts {
        m.enable_ts();
    }
    m
}

fn push_all(frames: &[Frame], ts: bool) -> usize {
    let mut m = muxer(ts);
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
    for (name, ts) in [("push_fresh_ll", false), ("push_fresh_both", true)] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(push_all(black_box(&frames), ts)))
        });
    }
    // Steady state: one muxer, the stream goes on (timestamps advance by
    // 10 s per iteration), the window slides.
    let (configs, media): (Vec<Frame>, Vec<Frame>) =
        frames.iter().cloned().partition(Frame::is_config);
    let media_bytes: u64 = media.iter().map(|f| f.payload.len() as u64).sum();
    for (name, ts) in [("push_steady_ll", false), ("push_steady_both", true)] {
        let mut m = muxer(ts);
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
        g.bench_function(format!("{name}_bytes"), |b| b.iter(|| steady(&mut m)));
        g.throughput(Throughput::Elements(media.len() as u64));
        g.bench_function(format!("{name}_frames"), |b| b.iter(|| steady(&mut m)));
        assert_eq!(m.dropped_frames(), 0);
        assert_eq!(m.ts_bytes() > 0, ts);
    }

    // A full default window (7 × 2 s) plus an open segment with parts.
    let long = stream(31);
    let bitrate = long.iter().map(|f| f.payload.len() as u64).sum::<u64>() * 8 / 31;
    let mut both = None;
    for ts in [false, true] {
        let mut one = muxer(ts);
        for f in &long {
            one.push(f);
        }
        eprintln!(
            "hls: memory_bytes at the default window (7 x 2 s), {:.2} Mbit/s stream, {}: {} bytes ({:.2} MiB; TS {} bytes)",
            bitrate as f64 / 1e6,
            if ts { "LL-HLS + TS" } else { "LL-HLS only" },
            one.memory_bytes(),
            one.memory_bytes() as f64 / (1 << 20) as f64,
            one.ts_bytes()
        );
        both = Some(one);
    }
    // The playlists of a full window with both variants.
    let m = both.unwrap();
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
