//! Chunk reader/writer tests: hostile input, header forms, extended
//! timestamps, and a writer → reader round trip property.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::header::{put_chunk_header, ChunkType};
use super::*;
use crate::rtmp::message::{type_id, ProtocolControl};

fn msg(csid: u32, ts: u32, ty: u8, sid: u32, payload: &[u8]) -> RawMessage {
    RawMessage {
        csid,
        timestamp: ts,
        type_id: ty,
        stream_id: sid,
        payload: Bytes::copy_from_slice(payload),
    }
}

fn concat(pieces: &[Bytes]) -> Vec<u8> {
    pieces.iter().flat_map(|b| b.iter().copied()).collect()
}

/// Feeds `data` in one go and drains every message (or the first error).
fn read_all(r: &mut ChunkReader, data: &[u8]) -> Result<Vec<RawMessage>, ChunkError> {
    r.handle_input(data);
    let mut out = Vec::new();
    while let Some(m) = r.poll_message()? {
        out.push(m);
    }
    Ok(out)
}

fn header(ty: u8, csid: u32, ts: u32, len: u32, t: u8, sid: u32) -> Vec<u8> {
    let mut v = Vec::new();
    put_chunk_header(&mut v, ChunkType::from_fmt(ty), csid, ts, (len, t, sid));
    v
}

#[test]
fn single_chunk_message_is_zero_copy_slice_of_input() {
    let mut w = ChunkWriter::new();
    let mut out = Vec::new();
    let m = msg(3, 1000, type_id::COMMAND_AMF0, 0, &[7u8; 100]);
    w.write_message(&m, &mut out).unwrap();
    let wire = concat(&out);
    assert_eq!(wire.len(), 12 + 100);
    let mut r = ChunkReader::default();
    let got = read_all(&mut r, &wire).unwrap();
    assert_eq!(got, vec![m]);
    assert_eq!(r.bytes_received(), 112);
    assert_eq!(r.buffered_len(), 0);
}

#[test]
fn multi_chunk_message_and_header_compression() {
    let mut w = ChunkWriter::new();
    let mut out = Vec::new();
    let msgs = vec![
        msg(6, 0, type_id::AUDIO, 1, &[1; 10]),
        msg(6, 23, type_id::AUDIO, 1, &[2; 10]), // type 2 (delta 23)
        msg(6, 46, type_id::AUDIO, 1, &[3; 10]), // type 3 (same delta)
        msg(6, 69, type_id::AUDIO, 1, &[4; 11]), // type 1 (length changed)
        msg(6, 69, type_id::AUDIO, 2, &[5; 300]), // type 0 (stream id), 3 chunks
        msg(6, 10, type_id::AUDIO, 2, &[6; 1]),  // type 0 (backwards)
    ];
    let mut wire = Vec::new();
    let mut fmts = Vec::new();
    for m in &msgs {
        out.clear();
        w.write_message(m, &mut out).unwrap();
        fmts.push(out[0][0] >> 6);
        wire.extend(concat(&out));
    }
    assert_eq!(fmts, vec![0, 2, 3, 1, 0, 0]);
    let mut r = ChunkReader::default();
    assert_eq!(read_all(&mut r, &wire).unwrap(), msgs);
}

#[test]
fn encode_message_matches_fresh_writer() {
    for cs in [1u32, 2, 127, 128, 129, 4096] {
        for ts in [0u32, 0xFF_FFFE, 0xFF_FFFF, u32::MAX] {
            for csid in [2u32, 64, 320, MAX_CSID] {
                let m = msg(csid, ts, type_id::VIDEO, 1, &[9u8; 700]);
                let mut w = ChunkWriter::new();
                w.set_chunk_size(cs).unwrap();
                let mut out = Vec::new();
                let n = w.write_message(&m, &mut out).unwrap();
                let a = concat(&out);
                assert_eq!(n, a.len());
                let b = encode_message(&m, cs).unwrap();
                assert_eq!(&a[..], &b[..], "cs {cs} ts {ts} csid {csid}");
                let mut r = ChunkReader::default();
                r.set_chunk_size(cs).unwrap();
                assert_eq!(read_all(&mut r, &b).unwrap(), vec![m]);
            }
        }
    }
}

#[test]
fn empty_message() {
    let m = msg(3, 5, type_id::COMMAND_AMF0, 0, &[]);
    let wire = encode_message(&m, 128).unwrap();
    assert_eq!(wire.len(), 12);
    let mut r = ChunkReader::default();
    assert_eq!(read_all(&mut r, &wire).unwrap(), vec![m]);
}

#[test]
fn type3_before_any_header_is_error() {
    let mut r = ChunkReader::default();
    assert_eq!(
        read_all(&mut r, &[0xC3, 1, 2, 3]),
        Err(ChunkError::NoPreviousHeader { csid: 3, fmt: 3 })
    );
    // The error sticks.
    assert!(r.poll_message().is_err());
    for fmt in [1u8, 2] {
        let mut r = ChunkReader::default();
        let h = header(fmt, 4, 0, 10, 8, 0);
        assert_eq!(
            read_all(&mut r, &h),
            Err(ChunkError::NoPreviousHeader { csid: 4, fmt })
        );
    }
}

#[test]
fn chunk_size_zero_and_too_big_are_errors() {
    for size in [0u32, 0x8000_0000, u32::MAX] {
        let mut r = ChunkReader::default();
        let wire = encode_message(&ProtocolControl::SetChunkSize(0).to_message(), 128).unwrap();
        // Patch the payload to the raw size (to_message masks the top bit).
        let mut wire = wire.to_vec();
        let n = wire.len();
        wire[n - 4..].copy_from_slice(&size.to_be_bytes());
        assert_eq!(
            read_all(&mut r, &wire),
            Err(ChunkError::InvalidChunkSize {
                size,
                max: MAX_CHUNK_SIZE
            })
        );
    }
    let mut w = ChunkWriter::new();
    assert!(w.set_chunk_size(0).is_err());
    assert!(w.set_chunk_size(0x8000_0000).is_err());
    assert!(encode_message(&msg(3, 0, 8, 0, &[1]), 0).is_err());
}

#[test]
fn chunk_size_limit_from_limits() {
    let mut r = ChunkReader::new(ChunkLimits {
        max_chunk_size: 65536,
        ..ChunkLimits::default()
    });
    let wire = encode_message(&ProtocolControl::SetChunkSize(65537).to_message(), 128).unwrap();
    assert_eq!(
        read_all(&mut r, &wire),
        Err(ChunkError::InvalidChunkSize {
            size: 65537,
            max: 65536
        })
    );
}

#[test]
fn max_chunk_size_is_accepted_and_applied() {
    let mut wire = Vec::new();
    wire.extend_from_slice(
        &encode_message(
            &ProtocolControl::SetChunkSize(MAX_CHUNK_SIZE).to_message(),
            128,
        )
        .unwrap(),
    );
    let big = msg(5, 1, type_id::VIDEO, 1, &[0x5A; 200_000]);
    wire.extend_from_slice(&encode_message(&big, MAX_CHUNK_SIZE).unwrap());
    let mut r = ChunkReader::default();
    let got = read_all(&mut r, &wire).unwrap();
    assert_eq!(r.chunk_size(), MAX_CHUNK_SIZE);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1], big);
}

#[test]
fn malformed_set_chunk_size_is_error() {
    let mut r = ChunkReader::default();
    let m = msg(2, 0, type_id::SET_CHUNK_SIZE, 0, &[0, 1]);
    assert_eq!(
        read_all(&mut r, &encode_message(&m, 128).unwrap()),
        Err(ChunkError::MalformedControl {
            type_id: type_id::SET_CHUNK_SIZE,
            len: 2
        })
    );
}

#[test]
fn message_longer_than_limit_is_error() {
    let mut r = ChunkReader::new(ChunkLimits {
        max_message_len: 1000,
        ..ChunkLimits::default()
    });
    let h = header(0, 3, 0, 1001, type_id::VIDEO, 1);
    assert_eq!(
        read_all(&mut r, &h),
        Err(ChunkError::MessageTooLong {
            csid: 3,
            len: 1001,
            max: 1000
        })
    );
    // Exactly the limit is fine, and so is the 24-bit maximum under the
    // default 8 MiB limit... which it exceeds:
    let mut r = ChunkReader::default();
    let h = header(0, 3, 0, 0xFF_FFFF, type_id::VIDEO, 1);
    assert!(matches!(
        read_all(&mut r, &h),
        Err(ChunkError::MessageTooLong { .. })
    ));
    // A type 1 header announcing too much is caught too.
    let mut r = ChunkReader::new(ChunkLimits {
        max_message_len: 1000,
        ..ChunkLimits::default()
    });
    let mut wire = encode_message(&msg(3, 0, 8, 1, &[0; 1000]), 128)
        .unwrap()
        .to_vec();
    wire.extend(header(1, 3, 10, 5000, 8, 0));
    assert_eq!(
        read_all(&mut r, &wire),
        Err(ChunkError::MessageTooLong {
            csid: 3,
            len: 5000,
            max: 1000
        })
    );
}

#[test]
fn too_many_chunk_streams_is_error() {
    // Walk every 1-, 2- and 3-byte csid form up to 65599 and beyond the limit.
    let mut r = ChunkReader::new(ChunkLimits {
        max_chunk_streams: 70_000,
        ..ChunkLimits::default()
    });
    let mut wire = Vec::new();
    for csid in MIN_CSID..=MAX_CSID {
        wire.extend(header(0, csid, 0, 0, 8, 1));
    }
    let got = read_all(&mut r, &wire).unwrap();
    assert_eq!(got.len(), (MAX_CSID - MIN_CSID + 1) as usize);
    assert!(got
        .iter()
        .zip(MIN_CSID..)
        .all(|(m, c)| m.csid == c && m.payload.is_empty()));

    let mut r = ChunkReader::default();
    assert!(matches!(
        read_all(&mut r, &wire),
        Err(ChunkError::TooManyChunkStreams { max: 64 })
    ));
}

#[test]
fn length_change_mid_message_is_error() {
    let mut r = ChunkReader::default();
    let mut wire = header(0, 4, 0, 300, type_id::VIDEO, 1);
    wire.extend([0u8; 128]);
    wire.extend(header(1, 4, 0, 301, type_id::VIDEO, 0));
    assert_eq!(
        read_all(&mut r, &wire),
        Err(ChunkError::LengthChangedMidMessage {
            csid: 4,
            old: 300,
            new: 301
        })
    );
    // Repeating the same header mid-message is tolerated.
    let mut r = ChunkReader::default();
    let mut wire = header(0, 4, 7, 200, type_id::VIDEO, 1);
    wire.extend([1u8; 128]);
    wire.extend(header(0, 4, 7, 200, type_id::VIDEO, 1));
    wire.extend([1u8; 72]);
    let got = read_all(&mut r, &wire).unwrap();
    assert_eq!(got, vec![msg(4, 7, type_id::VIDEO, 1, &[1u8; 200])]);
}

#[test]
fn announced_lengths_do_not_allocate_ahead_of_bytes() {
    // 64 chunk streams each announce an 8 MiB message and send one
    // 128-byte chunk of it.
    let mut wire = Vec::new();
    for csid in 3..67 {
        wire.extend(header(0, csid, 0, 8 * 1024 * 1024, type_id::VIDEO, 1));
        wire.extend([0u8; 128]);
    }
    let mut r = ChunkReader::default();
    assert!(read_all(&mut r, &wire).unwrap().is_empty());
    assert!(
        r.partial_capacity() <= 64 * 64 * 1024,
        "{}",
        r.partial_capacity()
    );
    // A large message still reassembles, growing as it arrives.
    let big = RawMessage {
        payload: Bytes::from(
            (0..3_000_001u32)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<u8>>(),
        ),
        ..msg(5, 1, type_id::VIDEO, 1, &[])
    };
    let wire = encode_message(&big, 128).unwrap();
    let mut r = ChunkReader::default();
    let mut got = Vec::new();
    for piece in wire.chunks(10_000) {
        got.extend(read_all(&mut r, piece).unwrap());
        assert!(r.partial_capacity() <= big.payload.len());
    }
    assert_eq!(got, vec![big]);
}

#[test]
fn abort_discards_partial_message() {
    let mut wire = header(0, 4, 0, 300, type_id::VIDEO, 1);
    wire.extend([0xEEu8; 128]);
    wire.extend(encode_message(&ProtocolControl::Abort(4).to_message(), 128).unwrap());
    // A new message on csid 4 with a type-0 header.
    wire.extend(encode_message(&msg(4, 50, type_id::VIDEO, 1, &[1u8; 10]), 128).unwrap());
    let mut r = ChunkReader::default();
    let got = read_all(&mut r, &wire).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].type_id, type_id::ABORT);
    assert_eq!(got[1], msg(4, 50, type_id::VIDEO, 1, &[1u8; 10]));
}

#[test]
fn garbage_never_panics_and_stays_bounded() {
    let mut state = 0x1234_5678_9ABC_DEF0u64;
    for _ in 0..200 {
        let mut r = ChunkReader::new(ChunkLimits {
            max_message_len: 64 * 1024,
            ..ChunkLimits::default()
        });
        let mut data = vec![0u8; 4096];
        for b in data.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        r.handle_input(&data);
        let mut n = 0;
        while let Ok(Some(_)) = r.poll_message() {
            n += 1;
            assert!(n < 10_000);
        }
        assert!(r.buffered_len() <= 4096);
    }
}

#[test]
fn extended_timestamp_repeated_on_type3() {
    for ts in [0xFF_FFFEu32, 0xFF_FFFF, 0x0100_0000, u32::MAX] {
        let m = msg(5, ts, type_id::VIDEO, 1, &[3u8; 300]);
        let wire = encode_message(&m, 128).unwrap();
        // type-0 (12 + 4?) + 2 type-3 headers of 1 (+4) bytes.
        let ext = if ts >= 0xFF_FFFF { 4 } else { 0 };
        assert_eq!(wire.len(), 12 + ext + 300 + 2 * (1 + ext));
        for split in [1usize, 3, 13, 17, 140, 145, 146] {
            let mut r = ChunkReader::default();
            let mut got = read_all(&mut r, &wire[..split.min(wire.len())]).unwrap();
            got.extend(read_all(&mut r, &wire[split.min(wire.len())..]).unwrap());
            assert_eq!(got, vec![m.clone()], "ts {ts:#x} split {split}");
        }
    }
}

#[test]
fn extended_timestamp_not_repeated_on_type3() {
    // librtmp-era peers that omit the extended timestamp on continuation
    // chunks: detected by comparing against the header's value.
    let ts = 0x0123_4567u32;
    let mut wire = header(0, 5, ts, 300, type_id::VIDEO, 1);
    wire.extend([0xABu8; 128]);
    wire.push(0xC5);
    wire.extend([0xABu8; 128]);
    wire.push(0xC5);
    wire.extend([0xABu8; 44]);
    // Next message on the same csid, type 3 (same delta: the type-0
    // timestamp, RTMP spec §5.3.1.2.4), also without the extended field.
    wire.push(0xC5);
    wire.extend([0xCDu8; 128]);
    wire.push(0xC5);
    wire.extend([0xCDu8; 128]);
    wire.push(0xC5);
    wire.extend([0xCDu8; 44]);
    let mut r = ChunkReader::default();
    let got = read_all(&mut r, &wire).unwrap();
    assert_eq!(
        got,
        vec![
            msg(5, ts, type_id::VIDEO, 1, &[0xAB; 300]),
            msg(5, ts.wrapping_mul(2), type_id::VIDEO, 1, &[0xCD; 300]),
        ]
    );
}

#[test]
fn timestamp_deltas_wrap_at_32_bits() {
    let mut wire = header(0, 6, 0xFFFF_FFF0, 1, type_id::AUDIO, 1);
    wire.push(1);
    wire.extend(header(2, 6, 0x20, 0, 0, 0));
    wire.push(2);
    wire.extend(header(3, 6, 0, 0, 0, 0)); // type 3: delta 0x20 again
    wire.push(3);
    wire.extend(header(1, 6, 0xFF_FFFF + 5, 2, type_id::VIDEO, 0)); // extended delta
    wire.extend([4, 4]);
    let mut r = ChunkReader::default();
    let got = read_all(&mut r, &wire).unwrap();
    let ts: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
    assert_eq!(ts, vec![0xFFFF_FFF0, 0x10, 0x30, 0x30 + 0xFF_FFFF + 5]);
    assert_eq!(got[3].type_id, type_id::VIDEO);
    assert_eq!(got[3].stream_id, 1);
}

#[test]
fn writer_uses_type0_after_wrap_and_reader_agrees() {
    let mut w = ChunkWriter::new();
    let mut out = Vec::new();
    let msgs = vec![
        msg(7, 0xFFFF_FFF0, 9, 1, &[1; 5]),
        msg(7, 0x10, 9, 1, &[1; 5]),
        msg(7, 0x0100_0000, 9, 1, &[1; 5]),
        msg(7, 0x0200_0000, 9, 1, &[1; 5]),   // extended delta
        msg(7, 0x0300_0000, 9, 1, &[1; 300]), // type 1, extended delta, 3 chunks
        msg(7, 0x0400_0000, 9, 1, &[1; 300]), // type 3, extended delta repeated
        msg(7, 0x0500_0000, 9, 1, &[1; 300]),
    ];
    for m in &msgs {
        w.write_message(m, &mut out).unwrap();
    }
    let mut r = ChunkReader::default();
    assert_eq!(read_all(&mut r, &concat(&out)).unwrap(), msgs);
}

#[test]
fn ack_window_counts_bytes() {
    let mut r = ChunkReader::default();
    assert_eq!(r.poll_ack(), None);
    let was = encode_message(&ProtocolControl::WindowAckSize(100).to_message(), 128).unwrap();
    read_all(&mut r, &was).unwrap();
    assert_eq!(r.ack_window(), 100);
    assert_eq!(r.poll_ack(), None); // 16 bytes so far
    let m = encode_message(&msg(3, 0, 20, 0, &[0; 90]), 128).unwrap();
    read_all(&mut r, &m).unwrap(); // 16 + 102 = 118
    assert_eq!(r.poll_ack(), Some(118));
    assert_eq!(r.poll_ack(), None);
    read_all(&mut r, &m).unwrap(); // 220
    assert_eq!(r.poll_ack(), Some(220));
}

#[test]
fn set_chunk_size_takes_effect_for_following_chunks() {
    let mut w = ChunkWriter::new();
    let mut out = Vec::new();
    let scs = ProtocolControl::SetChunkSize(4096).to_message();
    w.write_message(&scs, &mut out).unwrap();
    w.set_chunk_size(4096).unwrap();
    let big = msg(6, 40, type_id::VIDEO, 1, &[0x11; 10_000]);
    w.write_message(&big, &mut out).unwrap();
    let mut r = ChunkReader::default();
    let got = read_all(&mut r, &concat(&out)).unwrap();
    assert_eq!(got, vec![scs, big]);
    assert_eq!(r.chunk_size(), 4096);
}

#[test]
fn writer_rejects_bad_csid_and_long_payload() {
    let mut w = ChunkWriter::new();
    let mut out = Vec::new();
    assert_eq!(
        w.write_message(&msg(1, 0, 8, 0, &[]), &mut out),
        Err(ChunkError::InvalidCsid(1))
    );
    assert_eq!(
        w.write_message(&msg(MAX_CSID + 1, 0, 8, 0, &[]), &mut out),
        Err(ChunkError::InvalidCsid(MAX_CSID + 1))
    );
    let long = RawMessage {
        payload: Bytes::from(vec![0u8; 0x100_0000]),
        ..msg(3, 0, 9, 1, &[])
    };
    assert_eq!(
        w.write_message(&long, &mut out),
        Err(ChunkError::PayloadTooLong(0x100_0000))
    );
    assert!(encode_message(&long, 128).is_err());
    assert!(out.is_empty());
}

#[test]
fn note_sent_keeps_compression_consistent() {
    // A cached type-0 buffer goes out, then the writer continues on the same
    // csid with compressed headers relative to it.
    let first = msg(7, 1000, 9, 1, &[1; 50]);
    let cached = encode_message(&first, 128).unwrap();
    let mut w = ChunkWriter::new();
    w.note_sent(&first);
    let next = msg(7, 1040, 9, 1, &[2; 50]);
    let mut out = Vec::new();
    w.write_message(&next, &mut out).unwrap();
    assert_eq!(out[0][0] >> 6, 2, "type 2 relative to the cached message");
    let mut wire = cached.to_vec();
    wire.extend(concat(&out));
    let mut r = ChunkReader::default();
    assert_eq!(read_all(&mut r, &wire).unwrap(), vec![first, next]);
}

fn arb_message() -> impl Strategy<Value = RawMessage> {
    (
        prop_oneof![
            Just(2u32),
            Just(3),
            Just(63),
            Just(64),
            Just(319),
            Just(320),
            Just(MAX_CSID)
        ],
        prop_oneof![
            any::<u32>(),
            0xFF_FFF0u32..0x100_0010,
            0u32..100,
            0xFFFF_FFF0u32..=u32::MAX
        ],
        prop_oneof![Just(8u8), Just(9), Just(18), Just(20)],
        0u32..3,
        prop_oneof![0usize..300, 0usize..20_000],
    )
        .prop_map(|(csid, ts, t, sid, len)| RawMessage {
            csid,
            timestamp: ts,
            type_id: t,
            stream_id: sid,
            payload: Bytes::from((0..len).map(|i| (i * 7 + 3) as u8).collect::<Vec<u8>>()),
        })
}

/// A run of messages with timestamps that mostly increase per csid, so the
/// writer picks every header type.
fn arb_run() -> impl Strategy<Value = Vec<RawMessage>> {
    prop::collection::vec((arb_message(), any::<bool>(), 0u32..100), 1..25).prop_map(|v| {
        let mut last: std::collections::HashMap<u32, RawMessage> = Default::default();
        v.into_iter()
            .map(|(mut m, repeat, delta)| {
                if let Some(p) = last.get(&m.csid) {
                    if repeat {
                        m.timestamp = p.timestamp.wrapping_add(delta);
                        m.type_id = p.type_id;
                        m.stream_id = p.stream_id;
                        if delta % 2 == 0 {
                            m.payload = p.payload.clone();
                        }
                    }
                }
                last.insert(m.csid, m.clone());
                m
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn writer_to_reader_round_trip(
        msgs in arb_run(),
        chunk_size in prop_oneof![1u32..=200, 1u32..=65536],
        splits in prop::collection::vec(1usize..5000, 0..20),
    ) {
        let mut w = ChunkWriter::new();
        let mut pieces = Vec::new();
        let scs = ProtocolControl::SetChunkSize(chunk_size).to_message();
        w.write_message(&scs, &mut pieces).unwrap();
        w.set_chunk_size(chunk_size).unwrap();
        for m in &msgs {
            w.write_message(m, &mut pieces).unwrap();
        }
        let wire = concat(&pieces);
        let mut r = ChunkReader::default();
        let mut got = Vec::new();
        let mut pos = 0;
        let mut cuts = splits.into_iter();
        while pos < wire.len() {
            let n = cuts.next().unwrap_or(wire.len()).min(wire.len() - pos);
            r.handle_input(&wire[pos..pos + n]);
            pos += n;
            while let Some(m) = r.poll_message().unwrap() {
                got.push(m);
            }
        }
        prop_assert_eq!(got.len(), msgs.len() + 1);
        prop_assert_eq!(&got[0], &scs);
        prop_assert_eq!(&got[1..], &msgs[..]);
        prop_assert_eq!(r.buffered_len(), 0);
    }

    /// Chunks of messages on different chunk streams interleaved at random
    /// (RTMP spec §5.3.2.2: chunks of different streams may interleave).
    #[test]
    fn interleaved_chunk_streams(
        lens in prop::collection::vec(0usize..2000, 1..6),
        ts in prop_oneof![0u32..1000, 0xFF_FFF0u32..0x100_0010],
        chunk_size in 1u32..300,
        order in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let msgs: Vec<RawMessage> = lens.iter().enumerate().map(|(i, &len)| RawMessage {
            csid: [4, 5, 63, 64, 400, MAX_CSID][i],
            timestamp: ts + i as u32,
            type_id: type_id::VIDEO,
            stream_id: 1,
            payload: Bytes::from(vec![i as u8 + 1; len]),
        }).collect();
        // Units of (header, payload) per message, in order.
        let mut units: Vec<std::collections::VecDeque<Vec<u8>>> = msgs.iter().map(|m| {
            let mut w = ChunkWriter::new();
            w.set_chunk_size(chunk_size).unwrap();
            let mut out = Vec::new();
            w.write_message(m, &mut out).unwrap();
            let mut u = std::collections::VecDeque::new();
            let mut it = out.into_iter().peekable();
            while let Some(h) = it.next() {
                let mut unit = h.to_vec();
                if !m.payload.is_empty() {
                    unit.extend_from_slice(&it.next().unwrap());
                }
                u.push_back(unit);
            }
            u
        }).collect();
        let mut wire = Vec::new();
        let mut pick = order.into_iter();
        loop {
            let live: Vec<usize> = (0..units.len()).filter(|&i| !units[i].is_empty()).collect();
            if live.is_empty() { break; }
            let i = live[pick.next().unwrap_or(0) as usize % live.len()];
            wire.extend(units[i].pop_front().unwrap());
        }
        let mut r = ChunkReader::default();
        r.set_chunk_size(chunk_size).unwrap();
        let mut got = read_all(&mut r, &wire).unwrap();
        got.sort_by_key(|m| m.csid);
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn contiguous_encoding_round_trip(m in arb_message(), chunk_size in 1u32..=65536) {
        let mut wire = BytesMut::new();
        wire.put(encode_message(&ProtocolControl::SetChunkSize(chunk_size).to_message(), 128).unwrap());
        wire.put(encode_message(&m, chunk_size).unwrap());
        let mut r = ChunkReader::default();
        let got = read_all(&mut r, &wire).unwrap();
        prop_assert_eq!(&got[1], &m);
    }

    #[test]
    fn arbitrary_input_never_panics(data in prop::collection::vec(any::<u8>(), 0..4096),
                                    cut in 0usize..4096) {
        let mut r = ChunkReader::new(ChunkLimits { max_message_len: 100_000, ..ChunkLimits::default() });
        let cut = cut.min(data.len());
        for part in [&data[..cut], &data[cut..]] {
            r.handle_input(part);
            while let Ok(Some(_)) = r.poll_message() {}
        }
    }
}

/// The attack of issue 14 item 1, scaled: a large chunk size, then a
/// message started on every chunk stream with one chunk each and never
/// finished. The reader fails once the unfinished bytes pass its budget,
/// and frees them.
#[test]
fn partial_messages_over_the_budget_fail_and_are_freed() {
    let chunk: u32 = 256 * 1024;
    let limits = ChunkLimits {
        max_partial_bytes: 1 << 20,
        ..ChunkLimits::default()
    };
    let mut r = ChunkReader::new(limits);
    let set = encode_message(&ProtocolControl::SetChunkSize(chunk).to_message(), 128).unwrap();
    read_all(&mut r, &set).unwrap();
    let mut result = Ok(Vec::new());
    let mut streams = 0;
    for csid in 3..63 {
        let mut wire = header(0, csid, 0, 8 * 1024 * 1024 - 1, type_id::VIDEO, 1);
        wire.extend(vec![0u8; chunk as usize]);
        result = read_all(&mut r, &wire);
        if result.is_err() {
            break;
        }
        streams += 1;
        assert!(r.partial_bytes() <= 1 << 20, "{}", r.partial_bytes());
        assert_eq!(r.partial_bytes(), r.partial_capacity());
    }
    assert_eq!(streams, 4, "{result:?}");
    assert!(
        matches!(
            result,
            Err(ChunkError::PartialBudgetExceeded { max, .. }) if max == 1 << 20
        ),
        "{result:?}"
    );
    assert_eq!(r.partial_bytes(), 0);
    // Input after the failure is not kept.
    r.handle_input(&[0u8; 4096]);
    assert_eq!(r.buffered_len(), 0);
}

/// A single-chunk message waiting for its end counts too (chunk size as
/// large as the message).
#[test]
fn waiting_single_chunk_message_counts_against_the_budget() {
    let mut r = ChunkReader::new(ChunkLimits {
        max_partial_bytes: 100_000,
        ..ChunkLimits::default()
    });
    let set = encode_message(&ProtocolControl::SetChunkSize(1 << 23).to_message(), 128).unwrap();
    read_all(&mut r, &set).unwrap();
    let mut wire = header(0, 4, 0, 1 << 20, type_id::VIDEO, 1);
    wire.extend(vec![0u8; 90_000]);
    assert_eq!(read_all(&mut r, &wire).unwrap(), vec![]);
    assert_eq!(r.partial_bytes(), 90_000);
    assert!(matches!(
        read_all(&mut r, &[0u8; 20_000]),
        Err(ChunkError::PartialBudgetExceeded { .. })
    ));
}

/// Raising the budget (publish admitted) lets a large message through;
/// messages that complete give their bytes back.
#[test]
fn budget_can_be_raised_and_complete_messages_release_it() {
    let mut r = ChunkReader::new(ChunkLimits {
        max_partial_bytes: 64 * 1024,
        ..ChunkLimits::default()
    });
    let big = msg(6, 0, type_id::VIDEO, 1, &vec![7u8; 1 << 20]);
    let wire = encode_message(&big, 128).unwrap();
    let mut got = read_all(&mut r, &wire[..100_000]);
    assert!(
        matches!(got, Err(ChunkError::PartialBudgetExceeded { .. })),
        "{got:?}"
    );
    let mut r = ChunkReader::new(ChunkLimits {
        max_partial_bytes: 64 * 1024,
        ..ChunkLimits::default()
    });
    r.set_max_partial_bytes(2 << 20);
    got = Ok(Vec::new());
    for piece in wire.chunks(50_000) {
        got.as_mut()
            .unwrap()
            .extend(read_all(&mut r, piece).unwrap());
    }
    assert_eq!(got, Ok(vec![big]));
    assert_eq!(r.partial_bytes(), 0);
    assert_eq!(r.partial_capacity(), 0);
}

/// Readers sharing a budget: the one whose growth passes it fails; the
/// budget is returned when a reader fails or is dropped.
#[test]
fn shared_budget_is_a_second_line() {
    let shared = SharedPartialBudget::new(300_000);
    let start = |r: &mut ChunkReader, csid: u32| {
        let mut wire = header(0, csid, 0, 1 << 20, type_id::VIDEO, 1);
        wire.extend(vec![0u8; 100_000]);
        read_all(r, &wire)
    };
    let limits = ChunkLimits::default();
    let set = encode_message(&ProtocolControl::SetChunkSize(1 << 20).to_message(), 128).unwrap();
    let mut a = ChunkReader::new(limits).with_shared_budget(shared.clone());
    let mut b = ChunkReader::new(limits).with_shared_budget(shared.clone());
    read_all(&mut a, &set).unwrap();
    read_all(&mut b, &set).unwrap();
    start(&mut a, 4).unwrap();
    start(&mut b, 4).unwrap();
    assert_eq!(shared.used(), 200_000);
    // b's second 100 kB fits (300 000); a third does not.
    read_all(&mut b, &[0u8; 100_000]).unwrap();
    assert_eq!(shared.used(), 300_000);
    assert_eq!(
        read_all(&mut a, &[0u8; 1]),
        Err(ChunkError::SharedBudgetExceeded { max: 300_000 })
    );
    assert_eq!(shared.used(), 200_000);
    drop(b);
    assert_eq!(shared.used(), 0);
    let mut c = ChunkReader::new(limits).with_shared_budget(shared.clone());
    read_all(&mut c, &set).unwrap();
    start(&mut c, 5).unwrap();
    assert_eq!(shared.used(), 100_000);
}
