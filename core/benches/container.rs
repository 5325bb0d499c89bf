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
use std::time::Duration;

use arcly::codec::aac::AacConfig;
use arcly::codec::h264::AvcConfig;
use arcly::container::fmp4::{Fragmenter, TrackInfo};
use arcly::container::ts::{TsDemuxer, TsMuxer};
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

/// 10 s of frames in decode order, timebase 90 kHz.
fn stream() -> Vec<Frame> {
    let f = |codec, flags, pts, dts, payload| Frame {
        codec,
        flags,
        pts,
        dts,
        timebase: 90_000,
        payload,
    };
    let mut frames = vec![
        f(
            Codec::H264,
            FrameFlags::CONFIG,
            0,
            0,
            AvcConfig::from_parameter_sets(
                vec![Bytes::from_static(SPS)],
                vec![Bytes::from_static(PPS)],
            )
            .unwrap()
            .to_bytes(),
        ),
        f(
            Codec::Aac,
            FrameFlags::CONFIG,
            0,
            0,
            AacConfig::new(2, 48_000, 2).to_bytes(),
        ),
    ];
    let mut media = Vec::new();
    for i in 0..250i64 {
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
    for i in 0..469i64 {
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
