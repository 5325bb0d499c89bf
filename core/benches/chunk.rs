//! RTMP chunk reassembly throughput (RTMP spec §5.3): a publisher-like
//! stream of 16 KiB video messages, chunked at 128 and 4096 bytes, fed to a
//! [`ChunkReader`] in 64 KiB reads and drained.
//!
//! `cargo bench -p arcly --bench chunk` runs criterion. For callgrind, run the
//! bench binary with `--oneshot <chunk_size>`: it reassembles the stream 8
//! times in `reassemble` (the function to collect with
//! `--toggle-collect`) and exits. Results: `docs/benchmarks.md`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use arcly::rtmp::chunk::{ChunkReader, ChunkWriter, RawMessage};
use arcly::rtmp::message::{type_id, ProtocolControl};
use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};

/// Payload size of one video message.
const MESSAGE_LEN: usize = 16 * 1024;
/// Messages per stream (4 MiB of payload).
const MESSAGES: usize = 256;
/// Bytes per simulated socket read.
const READ_LEN: usize = 64 * 1024;

/// The wire bytes of a Set Chunk Size followed by `MESSAGES` video messages
/// 40 ms apart, written by [`ChunkWriter`] at `chunk_size`.
fn stream(chunk_size: u32) -> Vec<u8> {
    let mut w = ChunkWriter::new();
    let mut out = Vec::new();
    w.write_message(
        &ProtocolControl::SetChunkSize(chunk_size).to_message(),
        &mut out,
    )
    .unwrap();
    w.set_chunk_size(chunk_size).unwrap();
    let payload = Bytes::from((0..MESSAGE_LEN).map(|i| i as u8).collect::<Vec<u8>>());
    for i in 0..MESSAGES {
        let m = RawMessage {
            csid: 6,
            timestamp: (i as u32) * 40,
            type_id: type_id::VIDEO,
            stream_id: 1,
            payload: payload.clone(),
        };
        w.write_message(&m, &mut out).unwrap();
    }
    out.iter().flat_map(|b| b.iter().copied()).collect()
}

/// Feeds `wire` in `READ_LEN` pieces and drains every message; returns the
/// payload bytes reassembled.
#[inline(never)]
fn reassemble(wire: &[u8]) -> usize {
    let mut r = ChunkReader::default();
    let mut total = 0;
    for piece in wire.chunks(READ_LEN) {
        r.handle_input(piece);
        while let Some(m) = r.poll_message().unwrap() {
            total += black_box(m).payload.len();
        }
    }
    total
}

fn bench_reassembly(c: &mut Criterion) {
    let mut g = c.benchmark_group("chunk_reassembly");
    for chunk_size in [128u32, 4096] {
        let wire = stream(chunk_size);
        let expected = MESSAGES * MESSAGE_LEN + 4;
        assert_eq!(reassemble(&wire), expected);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(format!("chunk_size_{chunk_size}"), |b| {
            b.iter(|| reassemble(black_box(&wire)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_reassembly);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--oneshot") {
        let chunk_size: u32 = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(4096);
        let wire = stream(chunk_size);
        let mut total = 0;
        for _ in 0..8 {
            total += reassemble(black_box(&wire));
        }
        println!(
            "chunk_size {chunk_size}: wire {} bytes x 8, payload {total} bytes",
            wire.len()
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
