//! RTSP message codec (core/src/rtsp/message.rs) fed one byte stream in
//! chunks (the first byte chooses the chunk size).
//!
//! Invariants: no panic; the decoder never holds more than its bounds plus
//! one chunk; every decoded request re-encodes to bytes that decode to the
//! same request.
#![no_main]

use arcly::rtsp::message::{Decoder, Item, MAX_BODY, MAX_HEADER_BLOCK};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut d = Decoder::new();
    'outer: for piece in rest.chunks(chunk) {
        d.extend(piece);
        loop {
            match d.decode() {
                Ok(Some(Item::Request(r))) => {
                    let mut again = Decoder::new();
                    again.extend(&r.to_bytes());
                    match again.decode() {
                        Ok(Some(Item::Request(r2))) => {
                            assert_eq!(r2.method, r.method);
                            assert_eq!(r2.uri, r.uri);
                            assert_eq!(r2.body, r.body);
                        }
                        other => panic!("re-encoded request does not decode: {other:?}"),
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
        assert!(d.buffered() <= MAX_HEADER_BLOCK + MAX_BODY + 65_540 + chunk);
    }
});
