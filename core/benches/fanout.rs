//! Bus fan-out: the cost of one publish with 1, 100, 1 000 and 10 000
//! subscribers, side by side with `tokio::sync::broadcast` (send with N
//! receivers), plus one full fan-out round (one publish, then every
//! subscriber reads that frame).
//!
//! `cargo bench -p arcly --bench fanout -- --warm-up-time 1 --measurement-time 2`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use arcly::engine::{AppConfig, Publisher, Recv, StreamKey};
use arcly::{Codec, Frame, FrameFlags};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const COUNTS: [usize; 4] = [1, 100, 1_000, 10_000];
const RING: usize = 2048;

fn frame() -> Frame {
    // Every frame a keyframe, so that subscribers start at once.
    Frame {
        codec: Codec::H264,
        flags: FrameFlags::KEYFRAME,
        pts: 0,
        dts: 0,
        timebase: 1000,
        payload: Bytes::from(vec![0u8; 1500]),
    }
}

fn publisher() -> Publisher {
    let cfg = AppConfig::default()
        .with_ring_frames(RING)
        .with_max_subscribers(1_000_000);
    Publisher::detached(StreamKey::new("bench", "fanout").unwrap(), cfg)
}

/// One publish, N attached subscribers that do not read (they fall behind;
/// publish cost must not depend on them).
fn publish(c: &mut Criterion) {
    let mut g = c.benchmark_group("publish");
    let f = frame();
    for n in COUNTS {
        g.bench_with_input(BenchmarkId::new("arcly", n), &n, |b, &n| {
            let mut p = publisher();
            let subs: Vec<_> = (0..n).map(|_| p.subscribe().unwrap()).collect();
            b.iter(|| p.send(black_box(f.clone())));
            drop(subs);
        });
        g.bench_with_input(BenchmarkId::new("tokio_broadcast", n), &n, |b, &n| {
            let (tx, rx) = tokio::sync::broadcast::channel::<Frame>(RING);
            let rxs: Vec<_> = (0..n - 1).map(|_| tx.subscribe()).collect();
            b.iter(|| black_box(tx.send(black_box(f.clone())).is_ok()));
            drop((rx, rxs));
        });
    }
    g.finish();
}

/// One publish, then each of the N subscribers reads that frame.
fn round(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_round");
    let f = frame();
    for n in COUNTS {
        g.bench_with_input(BenchmarkId::new("arcly", n), &n, |b, &n| {
            let mut p = publisher();
            let mut subs: Vec<_> = (0..n).map(|_| p.subscribe().unwrap()).collect();
            b.iter(|| {
                p.send(f.clone());
                for s in &mut subs {
                    match s.recv() {
                        Recv::Frame(x) => {
                            black_box(x);
                        }
                        other => panic!("expected a frame, got {other:?}"),
                    }
                }
            });
        });
        g.bench_with_input(BenchmarkId::new("tokio_broadcast", n), &n, |b, &n| {
            let (tx, rx) = tokio::sync::broadcast::channel::<Frame>(RING);
            let mut rxs: Vec<_> = (0..n - 1).map(|_| tx.subscribe()).collect();
            rxs.push(rx);
            b.iter(|| {
                tx.send(f.clone()).unwrap();
                for r in &mut rxs {
                    black_box(r.try_recv().unwrap());
                }
            });
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = publish, round
}
criterion_main!(benches);
