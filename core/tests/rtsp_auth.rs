//! RTSP server authentication driven through the session (no sockets): a
//! policy that knows one user's password sees Basic as a password and
//! Digest as an answer it verifies; no credentials → 401 with a Digest and
//! a Basic challenge, wrong ones → 403, right ones → the request goes on
//! (play and publish); a Digest answer does not work on another connection
//! (its nonce is the first connection's).

#![cfg(feature = "rtsp")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;

use arcly::admission::{Admission, AdmissionRequest, Credentials, Decision, RejectCode, Rejection};
use arcly::codec::h264::AvcConfig;
use arcly::rtsp::auth::{basic_authorization, Challenge};
use arcly::rtsp::message::{Decoder, Item, Response};
use arcly::rtsp::{RtspSession, RtspSessionFactory};
use arcly::session::StreamSession;
use arcly::{Codec, Engine, Frame, FrameFlags, Instant, StreamKey};
use bytes::Bytes;

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
    0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
const URL: &str = "rtsp://127.0.0.1:8554/live/cam";

/// User `cam`, password `s3cret`: what a config-file policy does.
struct OneUser;

impl Admission for OneUser {
    fn admit(&self, req: &AdmissionRequest) -> Decision {
        let ok = match &req.credentials {
            Credentials::None => {
                return Decision::Deny(Rejection::new(
                    RejectCode::Unauthorized,
                    "credentials needed",
                ))
            }
            Credentials::Password { user, password } => user == "cam" && password == "s3cret",
            Credentials::Digest(d) => d.user() == "cam" && d.verify("s3cret"),
            _ => false,
        };
        if ok {
            Decision::Allow
        } else {
            Decision::Deny(Rejection::forbidden("wrong user or password"))
        }
    }
}

fn engine_with_stream() -> (Engine, arcly::engine::Publisher) {
    let engine = Engine::with_defaults();
    let mut p = engine
        .publish(StreamKey::new("live", "cam").unwrap())
        .unwrap();
    let avc = AvcConfig::from_parameter_sets(
        vec![Bytes::from_static(SPS)],
        vec![Bytes::from_static(PPS)],
    )
    .unwrap()
    .to_bytes();
    let f = |flags, payload: Bytes| Frame {
        codec: Codec::H264,
        flags,
        pts: 0,
        dts: 0,
        timebase: 1000,
        payload,
    };
    p.send(f(FrameFlags::CONFIG, avc));
    p.send(f(
        FrameFlags::KEYFRAME,
        Bytes::from_static(&[0, 0, 0, 3, 0x65, 1, 2]),
    ));
    (engine, p)
}

struct Client {
    session: RtspSession,
    decoder: Decoder,
    cseq: u32,
}

impl Client {
    fn new(factory: &RtspSessionFactory, seed: u64) -> Client {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        Client {
            session: factory.session(peer, Instant::ZERO, seed),
            decoder: Decoder::new(),
            cseq: 0,
        }
    }

    fn request(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        self.cseq += 1;
        let mut msg = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        for (k, v) in headers {
            msg.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            msg.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        msg.push_str("\r\n");
        msg.push_str(body);
        self.session
            .handle_input(Instant::from_millis(1), msg.as_bytes());
        let mut out = Vec::new();
        self.session.poll_transmit(&mut out);
        for b in out {
            self.decoder.extend(&b);
        }
        while let Some(i) = self.decoder.decode().unwrap() {
            if let Item::Response(r) = i {
                return r;
            }
        }
        panic!("no response to {method}")
    }
}

fn challenges(r: &Response) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("WWW-Authenticate"))
        .map(|(_, v)| v.to_owned())
        .collect()
}

#[test]
fn digest_and_basic_against_a_password_policy() {
    let (engine, _p) = engine_with_stream();
    let factory = RtspSessionFactory::new(engine, Arc::new(OneUser));
    let mut c = Client::new(&factory, 11);

    // No credentials: 401 with both challenges, the connection stays.
    let r = c.request("DESCRIBE", URL, &[], "");
    assert_eq!(r.status, 401);
    let ch = challenges(&r);
    assert_eq!(ch.len(), 2, "{ch:?}");
    assert!(
        ch[0].starts_with("Digest ") && ch[1].starts_with("Basic "),
        "{ch:?}"
    );
    assert!(c.session.close_reason().is_none());
    let challenge = Challenge::pick(ch.iter().map(String::as_str)).unwrap();
    assert!(matches!(challenge, Challenge::Digest(_)));

    // Wrong password: 403.
    let wrong = challenge.authorization("cam", "guess", "DESCRIBE", URL, "c1", 1);
    assert_eq!(
        c.request("DESCRIBE", URL, &[("Authorization", &wrong)], "")
            .status,
        403
    );

    // Right password: the SDP.
    let right = challenge.authorization("cam", "s3cret", "DESCRIBE", URL, "c1", 2);
    let r = c.request("DESCRIBE", URL, &[("Authorization", &right)], "");
    assert_eq!(r.status, 200);
    assert!(!r.body.is_empty());
    // The same answer on another method does not verify (it is bound to DESCRIBE).
    let setup = c.request(
        "SETUP",
        &format!("{URL}/trackID=0"),
        &[
            ("Authorization", &right),
            ("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1"),
        ],
        "",
    );
    assert_eq!(setup.status, 403);
    let auth = challenge.authorization(
        "cam",
        "s3cret",
        "SETUP",
        &format!("{URL}/trackID=0"),
        "c1",
        3,
    );
    let setup = c.request(
        "SETUP",
        &format!("{URL}/trackID=0"),
        &[
            ("Authorization", &auth),
            ("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1"),
        ],
        "",
    );
    assert_eq!(setup.status, 200);

    // The Digest answer replayed on another connection: its nonce is not
    // that connection's, so it counts as no credentials (401, fresh challenge).
    let mut other = Client::new(&factory, 12);
    let r = other.request("DESCRIBE", URL, &[("Authorization", &right)], "");
    assert_eq!(r.status, 401);
    assert_ne!(
        challenges(&r)[0],
        ch[0],
        "each connection has its own nonce"
    );

    // Basic works too; a wrong Basic password is 403.
    let mut basic = Client::new(&factory, 13);
    let good = basic_authorization("cam", "s3cret");
    assert_eq!(
        basic
            .request("DESCRIBE", URL, &[("Authorization", &good)], "")
            .status,
        200
    );
    let bad = basic_authorization("cam", "nope");
    assert_eq!(
        basic
            .request("DESCRIBE", URL, &[("Authorization", &bad)], "")
            .status,
        403
    );
}

#[test]
fn publish_needs_credentials_too() {
    let factory = RtspSessionFactory::new(Engine::with_defaults(), Arc::new(OneUser));
    let url = "rtsp://127.0.0.1:8554/live/other";
    let sdp = "v=0\r\ns=x\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:streamid=0\r\n";
    let mut c = Client::new(&factory, 21);
    let r = c.request("ANNOUNCE", url, &[("Content-Type", "application/sdp")], sdp);
    assert_eq!(r.status, 401);
    let challenge = Challenge::pick(challenges(&r).iter().map(String::as_str)).unwrap();
    let auth = challenge.authorization("cam", "s3cret", "ANNOUNCE", url, "x", 1);
    let r = c.request(
        "ANNOUNCE",
        url,
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &auth),
        ],
        sdp,
    );
    assert_eq!(r.status, 200);
}

#[test]
fn without_a_policy_credentials_are_ignored() {
    let (engine, _p) = engine_with_stream();
    let factory = RtspSessionFactory::allow_all(engine);
    let mut c = Client::new(&factory, 31);
    assert_eq!(c.request("DESCRIBE", URL, &[], "").status, 200);
    let junk = basic_authorization("x", "y");
    assert_eq!(
        c.request("DESCRIBE", URL, &[("Authorization", &junk)], "")
            .status,
        200
    );
    assert_eq!(
        c.request("DESCRIBE", URL, &[("Authorization", "Digest garbage")], "")
            .status,
        200
    );
}
