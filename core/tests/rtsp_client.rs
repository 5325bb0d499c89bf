//! The RTSP client machine against arcly's own RTSP server machine, bytes
//! passed in memory (no sockets): OPTIONS, DESCRIBE, SETUP per track, PLAY
//! with Digest credentials from the URL, frames out equal to what was
//! published (codec configs first, keyframe start); missing or wrong
//! credentials end with a typed error; keep-alives go out within the
//! server's session timeout; a stalled source ends with `MediaTimeout`.

#![cfg(feature = "rtsp")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arcly::admission::{Admission, AdmissionRequest, Credentials, Decision, RejectCode, Rejection};
use arcly::codec::aac::AacConfig;
use arcly::codec::h264::AvcConfig;
use arcly::rtsp::client::{ClientError, ClientEvent, RtspClient};
use arcly::rtsp::{RtspSession, RtspSessionFactory};
use arcly::session::StreamSession;
use arcly::{Codec, Engine, Frame, FrameFlags, Instant, StreamKey};
use bytes::Bytes;

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
    0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

struct OneUser;

impl Admission for OneUser {
    fn admit(&self, req: &AdmissionRequest) -> Decision {
        match &req.credentials {
            Credentials::None => Decision::Deny(Rejection::new(RejectCode::Unauthorized, "log in")),
            Credentials::Digest(d) if d.user() == "cam" && d.verify("s3cret") => Decision::Allow,
            _ => Decision::Deny(Rejection::forbidden("wrong")),
        }
    }
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

fn picture(key: bool, i: u8) -> Bytes {
    let mut v = vec![0, 0, 0, 101, if key { 0x65 } else { 0x41 }];
    v.extend((0..100).map(|j| j ^ i));
    Bytes::from(v)
}

fn start_publish(engine: &Engine) -> arcly::engine::Publisher {
    let mut p = engine
        .publish(StreamKey::new("live", "cam").unwrap())
        .unwrap();
    let avc = AvcConfig::from_parameter_sets(
        vec![Bytes::from_static(SPS)],
        vec![Bytes::from_static(PPS)],
    )
    .unwrap()
    .to_bytes();
    p.send(frame(Codec::H264, FrameFlags::CONFIG, 0, avc));
    p.send(frame(
        Codec::Aac,
        FrameFlags::CONFIG,
        0,
        AacConfig::new(2, 48_000, 2).to_bytes(),
    ));
    p.send(frame(
        Codec::H264,
        FrameFlags::KEYFRAME,
        0,
        picture(true, 0),
    ));
    p
}

struct Link {
    client: RtspClient,
    server: RtspSession,
    now: Instant,
    events: Vec<ClientEvent>,
}

impl Link {
    fn new(factory: &RtspSessionFactory, url: &str) -> Link {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        Link {
            client: RtspClient::new(url, Instant::ZERO, 99).unwrap(),
            server: factory.session(peer, Instant::ZERO, 5),
            now: Instant::ZERO,
            events: Vec::new(),
        }
    }

    /// Moves bytes both ways until both sides are quiet.
    fn pump(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            while let Some(b) = self.client.poll_transmit() {
                self.server.handle_input(self.now, &b);
                moved = true;
            }
            self.server.handle_media(self.now);
            let mut out = Vec::new();
            self.server.poll_transmit(&mut out);
            for b in out {
                self.client.handle_input(self.now, &b);
                moved = true;
            }
            while let Some(e) = self.client.poll_event() {
                self.events.push(e);
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now = Instant::from_micros(self.now.as_micros() + d.as_micros() as u64);
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.pump();
    }

    fn frames(&self) -> Vec<&Frame> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Frame(f) => Some(f),
                ClientEvent::Playing(_) => None,
            })
            .collect()
    }
}

#[test]
fn client_plays_arcly_with_digest_and_gets_the_published_frames() {
    let engine = Engine::with_defaults();
    let mut p = start_publish(&engine);
    let factory = RtspSessionFactory::new(engine, Arc::new(OneUser));
    let mut l = Link::new(&factory, "rtsp://cam:s3cret@127.0.0.1:8554/live/cam");
    l.pump();
    assert!(l.client.error().is_none(), "{:?}", l.client.error());
    assert!(l.client.is_playing());
    assert_eq!(
        l.events.first(),
        Some(&ClientEvent::Playing(vec![Codec::H264, Codec::Aac]))
    );
    // More pictures and audio; the receiver completes a picture when the
    // next one starts (the server marks the last packet of each).
    for i in 1..=10u8 {
        l.now = Instant::from_millis(40 * u64::from(i));
        p.send(frame(
            Codec::Aac,
            FrameFlags::KEYFRAME,
            40 * i64::from(i) - 20,
            Bytes::from(vec![0x21; 50]),
        ));
        p.send(frame(
            Codec::H264,
            FrameFlags::NONE,
            40 * i64::from(i),
            picture(false, i),
        ));
        l.pump();
    }
    let frames = l.frames();
    let video: Vec<_> = frames
        .iter()
        .filter(|f| f.codec == Codec::H264 && !f.is_config())
        .collect();
    assert!(video.len() >= 10, "{} pictures", video.len());
    assert!(video[0].is_keyframe(), "starts on the keyframe");
    let first_config = frames
        .iter()
        .position(|f| f.codec == Codec::H264 && f.is_config());
    let first_picture = frames
        .iter()
        .position(|f| f.codec == Codec::H264 && !f.is_config());
    assert!(
        first_config < first_picture,
        "config before the first picture"
    );
    // The payloads are the published pictures (length-prefixed NAL units).
    assert_eq!(video[0].payload, picture(true, 0));
    assert_eq!(video[3].payload, picture(false, 3));
    let audio = frames
        .iter()
        .filter(|f| f.codec == Codec::Aac && !f.is_config())
        .count();
    assert!(audio >= 9, "{audio} audio frames");
    // Keep-alive within the 60 s session timeout: the session survives
    // 100 s of media with nothing else from the client.
    let before = l.frames().len();
    for s in 1..=100u64 {
        p.send(frame(
            Codec::H264,
            FrameFlags::NONE,
            400 + 1000 * s as i64,
            picture(false, s as u8),
        ));
        l.advance(Duration::from_secs(1));
    }
    assert!(l.client.error().is_none(), "{:?}", l.client.error());
    assert!(
        l.server.close_reason().is_none(),
        "{:?}",
        l.server.close_reason()
    );
    assert!(l.frames().len() >= before + 99);
    // Source stalls: MediaTimeout.
    l.advance(Duration::from_secs(11));
    assert_eq!(l.client.error(), Some(&ClientError::MediaTimeout));
}

#[test]
fn missing_or_wrong_credentials_are_typed_errors() {
    let engine = Engine::with_defaults();
    let _p = start_publish(&engine);
    let factory = RtspSessionFactory::new(engine, Arc::new(OneUser));
    let mut l = Link::new(&factory, "rtsp://127.0.0.1:8554/live/cam");
    l.pump();
    assert_eq!(
        l.client.error(),
        Some(&ClientError::Unauthorized("DESCRIBE"))
    );
    let mut l = Link::new(&factory, "rtsp://cam:nope@127.0.0.1:8554/live/cam");
    l.pump();
    assert_eq!(
        l.client.error(),
        Some(&ClientError::Status {
            method: "DESCRIBE",
            status: 403
        })
    );
    let mut l = Link::new(&factory, "rtsp://cam:s3cret@127.0.0.1:8554/live/none");
    l.pump();
    assert_eq!(
        l.client.error(),
        Some(&ClientError::Status {
            method: "DESCRIBE",
            status: 404
        })
    );
    // An unanswered request times out.
    let mut c = RtspClient::new("rtsp://h/live/cam", Instant::ZERO, 1).unwrap();
    while c.poll_transmit().is_some() {}
    c.handle_timeout(Instant::from_millis(10_001));
    assert_eq!(c.error(), Some(&ClientError::ResponseTimeout("OPTIONS")));
    // The server closing is an error too.
    let mut c = RtspClient::new("rtsp://h/live/cam", Instant::ZERO, 1).unwrap();
    c.handle_input(Instant::ZERO, &[]);
    assert_eq!(c.error(), Some(&ClientError::Closed));
}

/// The requests a client has queued, as text.
fn sent(c: &mut RtspClient) -> Vec<String> {
    let mut v = Vec::new();
    while let Some(b) = c.poll_transmit() {
        v.push(String::from_utf8_lossy(&b).into_owned());
    }
    v
}

fn answer(c: &mut RtspClient, now: Instant, text: &str) {
    c.handle_input(now, text.as_bytes());
}

#[test]
fn a_401_is_answered_once_and_a_second_is_an_error() {
    let mut c = RtspClient::new("rtsp://u:p@cam/s", Instant::ZERO, 3).unwrap();
    let first = sent(&mut c);
    assert!(
        first[0].starts_with("OPTIONS rtsp://cam/s RTSP/1.0"),
        "{first:?}"
    );
    assert!(!first[0].contains("Authorization"));
    answer(
        &mut c,
        Instant::ZERO,
        "RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Basic realm=\"r\"\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"abc\"\r\n\r\n",
    );
    let retry = sent(&mut c);
    assert_eq!(retry.len(), 1, "{retry:?}");
    assert!(retry[0].starts_with("OPTIONS "), "{retry:?}");
    assert!(
        retry[0].contains("Authorization: Digest username=\"u\", realm=\"r\", nonce=\"abc\""),
        "Digest preferred over Basic: {retry:?}"
    );
    assert!(c.error().is_none());
    answer(
        &mut c,
        Instant::ZERO,
        "RTSP/1.0 401 Unauthorized\r\nCSeq: 2\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"abc\"\r\n\r\n",
    );
    assert_eq!(c.error(), Some(&ClientError::Unauthorized("OPTIONS")));
    assert!(sent(&mut c).is_empty(), "nothing more after the error");
}

#[test]
fn keep_alive_within_the_session_timeout_and_setup_answers_followed() {
    let sdp = "v=0\r\ns=x\r\na=control:*\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:stream=0\r\nm=application 0 RTP/AVP 107\r\na=rtpmap:107 vnd.onvif.metadata/90000\r\n";
    let mut c = RtspClient::new("rtsp://cam/s", Instant::ZERO, 3).unwrap();
    sent(&mut c);
    let t = Instant::ZERO;
    answer(
        &mut c,
        t,
        "RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN\r\n\r\n",
    );
    let d = sent(&mut c);
    assert!(d[0].starts_with("DESCRIBE rtsp://cam/s RTSP/1.0"), "{d:?}");
    answer(
        &mut c,
        t,
        &format!(
            "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Base: rtsp://cam/s/\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    );
    let s = sent(&mut c);
    assert!(
        s[0].starts_with("SETUP rtsp://cam/s/stream=0 RTSP/1.0")
            && s[0].contains("Transport: RTP/AVP/TCP;unicast;interleaved=0-1"),
        "one SETUP, for the one supported track: {s:?}"
    );
    // The server picks other channels and a 10 s session timeout.
    answer(
        &mut c,
        t,
        "RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: ABC;timeout=10\r\nTransport: RTP/AVP/TCP;unicast;interleaved=6-7\r\n\r\n",
    );
    let p = sent(&mut c);
    assert!(
        p[0].starts_with("PLAY rtsp://cam/s RTSP/1.0") && p[0].contains("Session: ABC"),
        "{p:?}"
    );
    answer(
        &mut c,
        t,
        "RTSP/1.0 200 OK\r\nCSeq: 4\r\nSession: ABC\r\n\r\n",
    );
    assert!(c.is_playing());
    // Media on the server's channel 6 keeps it alive; a keep-alive goes out
    // at half the session timeout, with the session id.
    let mut keepalives = 0;
    for i in 0..24u16 {
        let now = Instant::from_millis(500 * (u64::from(i) + 1));
        let pkt = arcly::rtp::RtpPacket {
            marker: true,
            payload_type: 96,
            sequence: i,
            timestamp: 4500 * u32::from(i),
            ssrc: 9,
            payload: Bytes::from_static(&[0x65, 1, 2, 3]),
        }
        .to_bytes();
        let mut b = vec![b'$', 6, 0, pkt.len() as u8];
        b.extend_from_slice(&pkt);
        c.handle_input(now, &b);
        c.handle_timeout(now);
        for r in sent(&mut c) {
            assert!(
                r.starts_with("GET_PARAMETER rtsp://cam/s RTSP/1.0") && r.contains("Session: ABC"),
                "{r}"
            );
            keepalives += 1;
        }
        while c.poll_event().is_some() {}
    }
    assert_eq!(keepalives, 2, "one per 5 s over 12 s");
    assert!(c
        .poll_timeout()
        .is_some_and(|d| d <= Instant::from_millis(17_000)));
    assert!(c.error().is_none(), "{:?}", c.error());
}
