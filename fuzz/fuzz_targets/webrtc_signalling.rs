//! The WHIP/WHEP HTTP routes (webrtc/src/signalling.rs) with the WebRTC
//! datagram service behind them (webrtc/src/service.rs): POST offers, PATCH
//! fragments, DELETE, OPTIONS, on an engine where `live/cam` is published.
//!
//! Input: byte 0 picks the method, byte 1 the content type and whether an
//! `If-Match` / `Authorization` header is sent; the bytes up to the first
//! `\n` are the request target, the rest is the body. A parked request is
//! answered by running the service's commands and resuming it.
//!
//! Invariants: no panic; every answer is one of the documented statuses;
//! a parked request is answered after the service ran its commands.
#![no_main]

use std::sync::Arc;

use arcly::datagram::{DatagramService, DatagramServiceFactory};
use arcly::http::{HttpRouter, Routed, RouterConfig};
use arcly::{Engine, Instant, StreamKey};
use arcly_webrtc::signalling::{mount, SignallingConfig};
use arcly_webrtc::{WebRtcConfig, WebRtcServiceFactory};
use libfuzzer_sys::fuzz_target;

const METHODS: [&str; 5] = ["POST", "PATCH", "DELETE", "OPTIONS", "GET"];
const TYPES: [&str; 4] = [
    "application/sdp",
    "application/trickle-ice-sdpfrag",
    "text/plain",
    "application/SDP; charset=utf-8",
];
const ALLOWED: [u16; 14] = [
    200, 201, 204, 400, 404, 405, 409, 412, 413, 414, 415, 422, 503, 504,
];

fuzz_target!(|data: &[u8]| {
    let [m, flags, rest @ ..] = data else {
        return;
    };
    let method = METHODS[usize::from(*m) % METHODS.len()];
    let (target, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i + 1..).unwrap_or_default(),
        ),
        None => (rest, &[][..]),
    };
    let Ok(uri) = http::Uri::try_from(target) else {
        return;
    };
    let mut builder = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", TYPES[usize::from(*flags) % TYPES.len()]);
    if flags & 0x10 != 0 {
        builder = builder.header("if-match", "\"0-1\"");
    }
    if flags & 0x20 != 0 {
        builder = builder.header("authorization", "Bearer t");
    }
    let Ok(req) = builder.body(bytes::Bytes::copy_from_slice(body)) else {
        return;
    };

    let engine = Engine::with_defaults();
    let _publisher = engine.publish(StreamKey::new("live", "cam").unwrap());
    let now = Instant::ZERO;
    let mut config = WebRtcConfig::new(std::time::Instant::now());
    config.host_candidates = vec!["127.0.0.1:8189".parse().unwrap()];
    let factory = WebRtcServiceFactory::new(config);
    let mut service = factory.new_service(&["127.0.0.1:8189".parse().unwrap()], now, 1);
    let mut router = HttpRouter::empty(RouterConfig::default());
    mount(
        &mut router,
        SignallingConfig {
            engine: engine.clone(),
            admission: Arc::new(arcly::admission::AllowAll),
            sender: factory.sender(),
            random: Arc::new(|b: &mut [u8]| b.fill(7)),
            ice_servers: vec!["stun:stun.example.org".to_owned()],
        },
    );
    let mut routed = router.handle(&req, now);
    for _ in 0..4 {
        match routed {
            Routed::Response(resp) => {
                let s = resp.status().as_u16();
                assert!(ALLOWED.contains(&s), "unexpected status {s}");
                return;
            }
            Routed::Wait(w) => {
                service.handle_commands(now);
                while service.poll_transmit().is_some() {}
                routed = router.resume(&req, w, now);
            }
        }
    }
    panic!("a parked request was not answered after the service ran");
});
