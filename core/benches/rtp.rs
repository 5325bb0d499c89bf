//! RTP payload formats (RFC 6184 H.264, RFC 3640 AAC-hbr): throughput of
//! building the packets of a frame ([`Packetizer::packetize`], what a
//! played RTSP stream pays once per frame, shared by every viewer) and of
//! turning packets back into frames ([`TrackReceiver::handle_packet`]:
//! parse, reorder window, FU-A reassembly / AU headers, timing, what an
//! RTSP publish pays per packet).
//!
//! Media: a 3 Mbit/s-like H.264 GOP (one 60 KB IDR and 49 P pictures of
//! 6.5 KB, 25 fps, 2 s; 1400-byte FU-A fragments) and 2 s of AAC frames of
//! 384 bytes (one per packet, as arcly sends them). Throughput is in
//! payload bytes.
//!
//! `cargo bench -p arcly --bench rtp`. Results: `docs/benchmarks.md`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use arcly::codec::aac::AacConfig;
use arcly::codec::h264::AvcConfig;
use arcly::rtp::aac::AuHeaderLayout;
use arcly::rtp::packetizer::{records, Packetizer};
use arcly::rtp::receiver::{Timeline, TrackParams, TrackReceiver};
use arcly::rtp::RtpPacket;
use arcly::{Codec, Frame, FrameFlags, Instant};
use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
    0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

/// One AVCC access unit: a 4-byte length and one NAL unit of `size` bytes.
fn avc_unit(nal_type: u8, size: usize, salt: usize) -> Bytes {
    let mut v = (size as u32).to_be_bytes().to_vec();
    v.push(0x60 | nal_type);
    v.extend((1..size).map(|i| (i * 31 + salt) as u8));
    Bytes::from(v)
}

fn frame(codec: Codec, flags: FrameFlags, ms: i64, payload: Bytes) -> Frame {
    Frame {
        codec,
        flags,
        pts: ms,
        dts: ms,
        timebase: 1000,
        payload,
    }
}

fn avc_config() -> Frame {
    frame(
        Codec::H264,
        FrameFlags::CONFIG,
        0,
        AvcConfig::from_parameter_sets(
            vec![Bytes::from_static(SPS)],
            vec![Bytes::from_static(PPS)],
        )
        .unwrap()
        .to_bytes(),
    )
}

/// A 2 s GOP at 25 fps, ~3 Mbit/s.
fn h264_gop() -> Vec<Frame> {
    (0..50)
        .map(|i| {
            if i == 0 {
                frame(Codec::H264, FrameFlags::KEYFRAME, 0, avc_unit(5, 60_000, i))
            } else {
                frame(
                    Codec::H264,
                    FrameFlags::NONE,
                    i as i64 * 40,
                    avc_unit(1, 6_500, i),
                )
            }
        })
        .collect()
}

/// 2 s of AAC-LC 48 kHz frames of 384 bytes (128 kbit/s).
fn aac_frames() -> Vec<Frame> {
    (0..94)
        .map(|i| {
            frame(
                Codec::Aac,
                FrameFlags::KEYFRAME,
                i * 1024 * 1000 / 48_000,
                Bytes::from(vec![0x21u8 ^ i as u8; 384]),
            )
        })
        .collect()
}

fn payload_bytes(frames: &[Frame]) -> u64 {
    frames.iter().map(|f| f.payload.len() as u64).sum()
}

/// Every RTP packet of `frames`, built by a packetizer.
fn packets(p: &mut Packetizer, frames: &[Frame]) -> Vec<Bytes> {
    frames
        .iter()
        .flat_map(|f| {
            let built = p.packetize(f);
            records(&built).map(|r| r.slice(2..)).collect::<Vec<_>>()
        })
        .collect()
}

fn packetize(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtp/packetize");
    let gop = h264_gop();
    g.throughput(Throughput::Bytes(payload_bytes(&gop)));
    g.bench_function("h264_gop_3mbit", |b| {
        let mut p = Packetizer::new(Codec::H264, 96, 90_000, 7);
        p.packetize(&avc_config());
        b.iter(|| {
            for f in &gop {
                black_box(p.packetize(f));
            }
        });
    });
    let aac = aac_frames();
    g.throughput(Throughput::Bytes(payload_bytes(&aac)));
    g.bench_function("aac_2s", |b| {
        let mut p = Packetizer::new(Codec::Aac, 97, 48_000, 7);
        p.packetize(&frame(
            Codec::Aac,
            FrameFlags::CONFIG,
            0,
            AacConfig::new(2, 48_000, 2).to_bytes(),
        ));
        b.iter(|| {
            for f in &aac {
                black_box(p.packetize(f));
            }
        });
    });
    g.finish();
}

/// Feeds `pkts` (one GOP's worth, timestamps shifted by `round` GOPs so
/// that time goes on) through `rx`.
fn depacketize_round(
    rx: &mut TrackReceiver,
    timeline: &mut Timeline,
    pkts: &[Bytes],
    round: u32,
    seq_step: u16,
    ts_step: u32,
    out: &mut Vec<Frame>,
) {
    for pkt in pkts {
        let mut p = RtpPacket::parse(pkt).unwrap();
        p.sequence = p.sequence.wrapping_add(seq_step.wrapping_mul(round as u16));
        p.timestamp = p.timestamp.wrapping_add(ts_step.wrapping_mul(round));
        rx.handle_packet(Instant::ZERO, timeline, p, out).unwrap();
    }
    black_box(&out);
    out.clear();
}

fn depacketize(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtp/depacketize");
    let gop = h264_gop();
    let mut p = Packetizer::new(Codec::H264, 96, 90_000, 7);
    p.packetize(&avc_config());
    let pkts = packets(&mut p, &gop);
    let n = pkts.len() as u16;
    g.throughput(Throughput::Bytes(payload_bytes(&gop)));
    g.bench_function("h264_gop_3mbit", |b| {
        let mut rx = TrackReceiver::new(
            TrackParams::H264 {
                sps: Some(Bytes::from_static(SPS)),
                pps: Some(Bytes::from_static(PPS)),
            },
            90_000,
        );
        let mut timeline = Timeline::new();
        let mut out = Vec::new();
        let mut round = 0u32;
        b.iter(|| {
            depacketize_round(&mut rx, &mut timeline, &pkts, round, n, 180_000, &mut out);
            round += 1;
        });
    });
    let aac = aac_frames();
    let mut p = Packetizer::new(Codec::Aac, 97, 48_000, 7);
    let config = AacConfig::new(2, 48_000, 2).to_bytes();
    p.packetize(&frame(Codec::Aac, FrameFlags::CONFIG, 0, config.clone()));
    let pkts = packets(&mut p, &aac);
    let n = pkts.len() as u16;
    g.throughput(Throughput::Bytes(payload_bytes(&aac)));
    g.bench_function("aac_2s", |b| {
        let mut rx = TrackReceiver::new(
            TrackParams::Aac {
                config: config.clone(),
                layout: AuHeaderLayout::default(),
            },
            48_000,
        );
        let mut timeline = Timeline::new();
        let mut out = Vec::new();
        let mut round = 0u32;
        b.iter(|| {
            depacketize_round(&mut rx, &mut timeline, &pkts, round, n, 94 * 1024, &mut out);
            round += 1;
        });
    });
    g.finish();
}

criterion_group!(benches, packetize, depacketize);
criterion::criterion_main!(benches);
