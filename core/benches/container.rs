//! Container throughput: MPEG-TS mux and demux (ISO/IEC 13818-1) and fMP4
//! fragments (ISO/IEC 14496-12 §8.8) over 10 s of a 3 Mbit/s-class stream
//! (H.264 at 25 fps with a 100 KB keyframe every 2 s and ~14 KB P-frames,
//! AAC at 48 kHz with ~370-byte frames).
//!
//! `cargo bench -p arcly --bench container`. Throughput is frame payload
//! bytes per second for the muxers and TS bytes per second for the demuxer.
//! Results: `docs/benchmarks.md` ("Containers").
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use arcly::container::fmp4::{Fragmenter, TrackInfo};
use arcly::container::ts::{TsDemuxer, TsMuxer};
use arcly::{Codec, Frame};
use bytes::Bytes;
use criterion::{Criterion, Throughput};

#[path = "../tests/common/mod.rs"]
mod common;
#[macro_use]
mod quick;

/// 10 s of frames in decode order, timebase 90 kHz.
fn stream() -> Vec<Frame> {
    common::bench_stream(250, 469)
}

fn payload_bytes(frames: &[Frame]) -> u64 {
    frames.iter().map(|f| f.payload.len() as u64).sum()
}

fn mux(frames: &[Frame]) -> Vec<Bytes> {
    let mut m = TsMuxer::new(Some(Codec::H264), Some(Codec::Aac)).unwrap();
    frames.iter().map(|f| m.mux(f).unwrap()).collect()
}

fn bench(c: &mut Criterion) {
    let frames = stream();
    let mut g = c.benchmark_group("container");
    g.throughput(Throughput::Bytes(payload_bytes(&frames)));
    g.bench_function("ts_mux", |b| b.iter(|| black_box(mux(black_box(&frames)))));

    let ts: Vec<u8> = mux(&frames).concat();
    g.throughput(Throughput::Bytes(ts.len() as u64));
    g.bench_function("ts_demux", |b| {
        b.iter(|| {
            let mut d = TsDemuxer::new();
            let mut n = 0usize;
            // 64 KiB reads, as from a socket.
            for chunk in ts.chunks(64 * 1024) {
                d.handle_input(chunk).unwrap();
                while let Some(f) = d.poll_frame() {
                    n += f.payload.len();
                }
            }
            d.flush();
            while let Some(f) = d.poll_frame() {
                n += f.payload.len();
            }
            black_box(n)
        })
    });

    g.throughput(Throughput::Bytes(payload_bytes(&frames)));
    g.bench_function("fmp4_fragment", |b| {
        b.iter(|| {
            let mut v = Fragmenter::new(TrackInfo::from_config(1, &frames[0]).unwrap());
            let mut a = Fragmenter::new(TrackInfo::from_config(2, &frames[1]).unwrap());
            let mut out = 0usize;
            let mut seq = 1;
            // A fragment per keyframe interval for video, per ~0.5 s for audio (LL-HLS-like parts).
            for f in &frames[2..] {
                let fr = if f.codec == Codec::H264 {
                    &mut v
                } else {
                    &mut a
                };
                let cut = if f.codec == Codec::H264 {
                    f.is_keyframe()
                } else {
                    f.dts % 46_080 == 0
                };
                if cut {
                    if let Some(b) = fr.fragment(seq) {
                        out += b.len();
                        seq += 1;
                    }
                }
                fr.push(f).unwrap();
            }
            out += v.flush(seq, 3600).map_or(0, |b| b.len());
            out += a.flush(seq + 1, 1920).map_or(0, |b| b.len());
            black_box(out)
        })
    });
    g.finish();
}

quick_bench_main!(bench);
