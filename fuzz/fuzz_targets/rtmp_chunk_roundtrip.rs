//! Chunk writer → chunk reader round trip (core/src/rtmp/chunk/): arbitrary
//! messages written with `ChunkWriter` (header compression) or
//! `encode_message` + `note_sent` (the cached egress form), interleaved with
//! Set Chunk Size changes, read back by `ChunkReader` from arbitrary splits.
//!
//! Invariant: the reader returns exactly the messages written, in order
//! (csid, absolute timestamp, type, stream id, payload), and nothing else.
#![no_main]

use arbitrary::Arbitrary;
use arcly::rtmp::chunk::{encode_message, ChunkReader, ChunkWriter, RawMessage};
use arcly::rtmp::message::ProtocolControl;
use arcly_fuzz::split;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    /// A message through `ChunkWriter::write_message`.
    Write(Msg),
    /// A message through `encode_message` (type 0 + type 3) and `note_sent`.
    Encoded(Msg),
    /// Set Chunk Size (sent, then applied to the writer).
    ChunkSize(u32),
}

#[derive(Debug, Arbitrary)]
struct Msg {
    csid: u16,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: Vec<u8>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    split_seed: u8,
    ops: Vec<Op>,
}

impl Msg {
    fn to_raw(&self) -> RawMessage {
        // Valid chunk stream ids are 2..=65599. Types 1, 2 and 5 (Set Chunk
        // Size, Abort, Window Ack Size) are applied by the reader (and need
        // 4-byte payloads); they go through `Op::ChunkSize` instead.
        let csid = 2 + u32::from(self.csid) % 65_598;
        let type_id = match self.type_id {
            1 | 2 | 5 => 8,
            t => t,
        };
        RawMessage {
            csid,
            timestamp: self.timestamp,
            type_id,
            stream_id: self.stream_id,
            payload: Bytes::copy_from_slice(&self.payload),
        }
    }
}

fuzz_target!(|input: Input| {
    let mut w = ChunkWriter::new();
    let mut wire: Vec<u8> = Vec::new();
    let mut expected = Vec::new();
    for op in &input.ops {
        let mut pieces = Vec::new();
        match op {
            Op::Write(m) => {
                let msg = m.to_raw();
                let n = w
                    .write_message(&msg, &mut pieces)
                    .unwrap_or_else(|e| panic!("write: {e}"));
                assert_eq!(n, pieces.iter().map(Bytes::len).sum::<usize>());
                expected.push(msg);
            }
            Op::Encoded(m) => {
                let msg = m.to_raw();
                let b =
                    encode_message(&msg, w.chunk_size()).unwrap_or_else(|e| panic!("encode: {e}"));
                w.note_sent(&msg);
                pieces.push(b);
                expected.push(msg);
            }
            Op::ChunkSize(s) => {
                // 1..=2^31-1, biased to small sizes.
                let size = match s % 4 {
                    0 => 1 + (s >> 2) % 16,
                    1 => 1 + (s >> 2) % 4096,
                    _ => 1 + (s >> 2) % 0x7FFF_FFFF,
                };
                let msg = ProtocolControl::SetChunkSize(size).to_message();
                w.write_message(&msg, &mut pieces)
                    .unwrap_or_else(|e| panic!("write: {e}"));
                w.set_chunk_size(size)
                    .unwrap_or_else(|e| panic!("chunk size {size}: {e}"));
                expected.push(msg);
            }
        }
        for p in pieces {
            wire.extend_from_slice(&p);
        }
    }
    let mut r = ChunkReader::default();
    let mut got = Vec::new();
    for p in split(&wire, input.split_seed) {
        r.handle_input(p);
        loop {
            match r.poll_message() {
                Ok(Some(m)) => got.push(m),
                Ok(None) => break,
                Err(e) => panic!(
                    "reader rejected writer output: {e} after {} messages",
                    got.len()
                ),
            }
        }
    }
    assert_eq!(r.buffered_len(), 0, "bytes left over");
    assert_eq!(got.len(), expected.len(), "message count");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "message {i}");
    }
});
