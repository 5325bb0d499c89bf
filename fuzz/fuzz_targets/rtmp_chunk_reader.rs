//! RTMP chunk stream reader (core/src/rtmp/chunk/reader.rs) fed arbitrary
//! bytes in arbitrary splits, under limits picked by the input.
//!
//! Input: byte 0 = split seed, byte 1 = limits, rest = chunk stream bytes.
//! Invariants: no panic; every message is within `max_message_len` and has a
//! chunk stream id in 2..=65599; the payload bytes out never exceed the bytes
//! in (no amplification); unparsed bytes never exceed the bytes in; the chunk
//! size stays in 1..=max_chunk_size; acknowledgement sequence numbers never
//! run ahead of the bytes received; after an error every later poll returns
//! the same error (no state after close).
#![no_main]

use arcly::rtmp::chunk::{ChunkLimits, ChunkReader, MAX_CSID, MIN_CSID};
use arcly_fuzz::split;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [seed, lim, rest @ ..] = data else {
        return;
    };
    let limits = ChunkLimits {
        // 1 KiB .. 8 MiB.
        max_message_len: 1024 << (lim & 0x0F).min(13),
        max_chunk_streams: usize::from(lim >> 4) * 4 + 1,
        max_chunk_size: if lim & 0x80 != 0 { 65_536 } else { 0x7FFF_FFFF },
        ..ChunkLimits::default()
    };
    let mut r = ChunkReader::new(limits);
    if lim & 0x40 != 0 {
        r.set_ack_window(1 + u32::from(*lim));
    }
    let mut fed = 0usize;
    let mut out = 0usize;
    let mut error = None;
    for p in split(rest, *seed) {
        r.handle_input(p);
        fed += p.len();
        loop {
            match r.poll_message() {
                Ok(Some(m)) => {
                    assert!(error.is_none(), "message after an error");
                    assert!(m.payload.len() <= limits.max_message_len as usize);
                    assert!((MIN_CSID..=MAX_CSID).contains(&m.csid), "csid {}", m.csid);
                    out += m.payload.len();
                    assert!(out <= fed, "{out} payload bytes out of {fed} bytes in");
                }
                Ok(None) => {
                    assert!(error.is_none(), "no error after an error");
                    break;
                }
                Err(e) => {
                    if let Some(prev) = &error {
                        assert_eq!(prev, &e, "the error changed");
                        break;
                    }
                    error = Some(e);
                }
            }
        }
        while let Some(seq) = r.poll_ack() {
            assert!(u64::from(seq) <= r.bytes_received());
        }
        assert!(r.buffered_len() <= fed);
        assert!(r.chunk_size() >= 1 && r.chunk_size() <= limits.max_chunk_size);
        assert_eq!(r.bytes_received(), fed as u64);
    }
    if let Some(e) = error {
        r.handle_input(&[0x03, 0, 0, 0, 0, 0, 1, 20, 0, 0, 0, 0, 0]);
        assert_eq!(r.poll_message(), Err(e));
    }
});
