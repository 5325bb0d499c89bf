//! The RTSP server session (core/src/rtsp/session.rs) with a published
//! stream behind it: a valid ANNOUNCE/SETUP/RECORD prefix or a
//! DESCRIBE/SETUP/PLAY prefix (chosen by the first byte), then arbitrary
//! bytes (requests and interleaved frames) in chunks.
//!
//! Invariants: no panic; output drained after every input stays bounded;
//! after a close reason, nothing more is accepted.
#![no_main]

use arcly::rtsp::RtspSessionFactory;
use arcly::session::StreamSession;
use arcly::{Engine, Instant};
use libfuzzer_sys::fuzz_target;

const PUBLISH: &[u8] = b"ANNOUNCE rtsp://h/live/f RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 134\r\n\r\nv=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\na=control:streamid=1\r\n\
SETUP rtsp://h/live/f/streamid=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;interleaved=0-1;mode=record\r\n\r\n\
SETUP rtsp://h/live/f/streamid=1 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;interleaved=2-3;mode=record\r\n\r\n\
RECORD rtsp://h/live/f RTSP/1.0\r\nCSeq: 4\r\n\r\n";
const PLAY: &[u8] = b"DESCRIBE rtsp://h/live/f RTSP/1.0\r\nCSeq: 1\r\n\r\n\
SETUP rtsp://h/live/f/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;interleaved=0-1\r\n\r\n\
PLAY rtsp://h/live/f RTSP/1.0\r\nCSeq: 3\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let engine = Engine::with_defaults();
    let factory = RtspSessionFactory::allow_all(engine.clone());
    let peer = "127.0.0.1:1".parse().unwrap_or_else(|_| unreachable!());
    let mut s = factory.session(peer, Instant::ZERO, 1);
    let mut out = Vec::new();
    s.handle_input(Instant::from_millis(1), if mode & 1 == 0 { PUBLISH } else { PLAY });
    let chunk = usize::from(mode >> 1).max(1);
    for (i, piece) in rest.chunks(chunk).enumerate() {
        let now = Instant::from_millis(2 + i as u64);
        s.handle_input(now, piece);
        s.handle_media(now);
        out.clear();
        let n = s.poll_transmit(&mut out);
        assert!(n <= 4 << 20, "{n} bytes pending");
        if s.close_reason().is_some() {
            break;
        }
    }
    s.handle_timeout(Instant::from_millis(120_000));
});
