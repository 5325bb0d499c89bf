//! SRT packet codec (core/src/srt/packet.rs) and stream-id parser
//! (core/src/srt/stream_id.rs) fed one arbitrary datagram.
//!
//! Invariants: no panic; a datagram that decodes re-encodes to bytes that
//! decode to the same packet (round trip), no longer than the datagram limit;
//! the destination socket id peeked without decoding matches the decoded one;
//! any string parses as a stream id or is a clean error.
#![no_main]

use arcly::srt::packet::Packet;
use arcly::srt::stream_id::StreamId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = StreamId::parse(s);
    }
    let Ok(packet) = Packet::decode_slice(data) else {
        return;
    };
    assert_eq!(Packet::peek_dest(data), Some(packet.dest()));
    let bytes = packet.to_bytes();
    assert!(bytes.len() <= 1500, "encoded {} bytes", bytes.len());
    match Packet::decode(&bytes) {
        Ok(again) => assert_eq!(again, packet, "round trip changed the packet"),
        Err(e) => panic!("re-encoded packet does not decode: {e}"),
    }
});
