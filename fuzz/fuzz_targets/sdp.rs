//! SDP parser and track reader (core/src/sdp) fed arbitrary text.
//!
//! Invariants: no panic; at most MAX_MEDIA media sections; a track whose
//! codec was understood yields a receiver that accepts any packet.
#![no_main]

use arcly::rtp::receiver::{Timeline, TrackReceiver};
use arcly::rtp::RtpPacket;
use arcly::sdp::{track_info, SessionDescription, MAX_MEDIA};
use arcly::Instant;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sd) = SessionDescription::parse(data) else {
        return;
    };
    assert!(sd.media.len() <= MAX_MEDIA);
    for m in &sd.media {
        let _ = m.control();
        if let Ok(info) = track_info(m) {
            let mut rx = TrackReceiver::new(info.params, info.clock_rate);
            let mut tl = Timeline::new();
            let mut out = Vec::new();
            let pkt = RtpPacket {
                marker: true,
                payload_type: info.payload_type,
                sequence: 1,
                timestamp: 0,
                ssrc: 1,
                payload: bytes::Bytes::copy_from_slice(data.get(..data.len().min(64)).unwrap_or_default()),
            };
            let _ = rx.handle_packet(Instant::ZERO, &mut tl, pkt, &mut out);
        }
    }
});
