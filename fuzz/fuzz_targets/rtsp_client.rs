//! The RTSP client session (core/src/rtsp/client.rs) fed a server's byte
//! stream: either arbitrary bytes from the start, or (first byte odd) a
//! canned server that answers OPTIONS, DESCRIBE (H.264 + AAC SDP), two
//! SETUPs and PLAY, followed by arbitrary bytes (responses, interleaved
//! RTP/RTCP) in chunks, with time advancing.
//!
//! Invariants: no panic; the client's queued output and events stay
//! bounded; after an error nothing more is sent or delivered.
#![no_main]

use arcly::rtsp::client::{RtspClient, MAX_EVENTS};
use arcly::Instant;
use libfuzzer_sys::fuzz_target;

const SDP: &str = "v=0\r\ns=x\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAHqzZQKAv+XARAAADAAEAAAMAMg8WLZY=,aOvjyyLA\r\na=control:trackID=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\na=fmtp:97 streamtype=5; profile-level-id=15; mode=AAC-hbr; config=1190; sizeLength=13; indexLength=3; indexDeltaLength=3\r\na=control:trackID=1\r\n";

fn canned() -> Vec<u8> {
    let mut s = String::new();
    s.push_str("RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER\r\n\r\n");
    s.push_str(&format!(
        "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Base: rtsp://h/live/f/\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    ));
    s.push_str("RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: 1234;timeout=4\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n");
    s.push_str("RTSP/1.0 200 OK\r\nCSeq: 4\r\nSession: 1234\r\nTransport: RTP/AVP/TCP;unicast;interleaved=2-3\r\n\r\n");
    s.push_str("RTSP/1.0 200 OK\r\nCSeq: 5\r\nSession: 1234\r\n\r\n");
    s.into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(mut c) = RtspClient::new("rtsp://u:p@h:8554/live/f", Instant::ZERO, 7) else {
        return;
    };
    let mut now = Instant::from_millis(1);
    let drain = |c: &mut RtspClient| {
        let mut n = 0;
        while c.poll_transmit().is_some() {
            n += 1;
        }
        assert!(n <= 8, "{n} requests queued at once");
        let mut e = 0;
        while c.poll_event().is_some() {
            e += 1;
        }
        assert!(e <= MAX_EVENTS, "{e} events");
    };
    if mode & 1 == 1 {
        for piece in canned().chunks(64) {
            drain(&mut c);
            c.handle_input(now, piece);
        }
    }
    let chunk = usize::from(mode >> 1).max(1);
    for piece in rest.chunks(chunk) {
        drain(&mut c);
        now = Instant::from_millis(now.as_micros() / 1000 + 500);
        c.handle_input(now, piece);
        c.handle_timeout(now);
        if c.error().is_some() {
            c.handle_input(now, piece);
            assert!(c.poll_transmit().is_none(), "output after an error");
        }
    }
    drain(&mut c);
});
