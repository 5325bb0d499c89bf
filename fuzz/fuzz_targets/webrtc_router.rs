//! The WebRTC datagram service's routing (webrtc/src/service.rs and
//! webrtc/src/router.rs): one WHEP session is open; arbitrary datagrams
//! from a few source addresses arrive, some of them shaped as STUN naming
//! the session's ufrag, with timeouts in between.
//!
//! Input: cut into datagrams by `arcly_fuzz::split` (byte 0 is the split
//! seed); each datagram's first byte picks its source and whether a STUN
//! header with `USERNAME = <session ufrag>:x` is put in front.
//!
//! Invariants: no panic; at most the one session exists; everything queued
//! drains; a datagram from a stranger that is not STUN for the session is
//! counted as junk, never routed.
#![no_main]

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arcly::datagram::{reply, DatagramService, DatagramServiceFactory, Received};
use arcly::engine::Signal;
use arcly::{Engine, Instant, StreamKey};
use arcly_webrtc::service::{Command, EngineSide, OpenRequest, ResourceId};
use arcly_webrtc::{WebRtcConfig, WebRtcServiceFactory};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use str0m::media::{Direction, MediaKind};

fn offer() -> &'static str {
    static OFFER: OnceLock<String> = OnceLock::new();
    OFFER.get_or_init(|| {
        let mut rtc = str0m::Rtc::new(std::time::Instant::now());
        let mut change = rtc.sdp_api();
        change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, _) = change.apply().unwrap();
        offer.to_sdp_string()
    })
}

fn stun(ufrag: &str, rest: &[u8]) -> Vec<u8> {
    let user = format!("{ufrag}:x");
    let padded = (user.len() + 3) & !3;
    let len = 4 + padded + rest.len().min(400);
    let mut d = vec![0, 1];
    d.extend_from_slice(&(len as u16).to_be_bytes());
    d.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    d.extend_from_slice(&[9; 12]);
    d.extend_from_slice(&[0, 6]);
    d.extend_from_slice(&(user.len() as u16).to_be_bytes());
    d.extend_from_slice(user.as_bytes());
    d.resize(20 + 4 + padded, 0);
    d.extend_from_slice(&rest[..rest.len().min(400)]);
    d
}

fuzz_target!(|data: &[u8]| {
    let [seed, rest @ ..] = data else {
        return;
    };
    let engine = Engine::with_defaults();
    let key = StreamKey::new("live", "cam").unwrap();
    let _publisher = engine.publish(key.clone()).unwrap();
    let local: SocketAddr = "127.0.0.1:8189".parse().unwrap();
    let mut config = WebRtcConfig::new(std::time::Instant::now());
    config.host_candidates = vec![local];
    let factory = WebRtcServiceFactory::new(config);
    let stats = factory.stats();
    let mut now = Instant::ZERO;
    let mut service = factory.new_service(&[local], now, 1);
    let (tx, mut rx) = reply(Signal::new());
    let cmd = Command::Open(Box::new(OpenRequest {
        engine: EngineSide::Play(engine.subscribe(&key).unwrap()),
        key,
        offer: offer().to_owned(),
        remote_ufrag: None,
        client: local.ip(),
        resource: ResourceId([1; 16]),
        seed: 42,
        reply: tx,
    }));
    assert!(factory.sender().send(cmd).is_ok());
    service.handle_commands(now);
    let answer = match rx.try_take() {
        Some(Ok(Ok(opened))) => opened.answer,
        other => panic!("the session was not opened: {other:?}"),
    };
    let ufrag = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .trim()
        .to_owned();
    let sources: [SocketAddr; 3] = [
        "127.0.0.1:40000".parse().unwrap(),
        "127.0.0.2:40001".parse().unwrap(),
        "[::1]:40002".parse().unwrap(),
    ];
    let mut learned = [false; 3];
    for piece in arcly_fuzz::split(rest, *seed) {
        let [ctl, body @ ..] = piece else {
            continue;
        };
        let which = usize::from(ctl & 3) % sources.len();
        let src = sources[which];
        let dgram = if ctl & 4 != 0 {
            stun(&ufrag, body)
        } else {
            body.to_vec()
        };
        let junk_before = stats.junk.load(Ordering::Relaxed);
        // Anything shaped like STUN may name the session's ufrag.
        let stun_like = dgram.first().is_some_and(|b| b & 0xC0 == 0)
            && dgram.get(4..8) == Some(&[0x21, 0x12, 0xA4, 0x42][..]);
        if stun_like {
            learned[which] = true;
        }
        service.handle_datagram(now, Received::new(src, Bytes::from(dgram)));
        let junk_after = stats.junk.load(Ordering::Relaxed);
        if !learned[which] {
            assert_eq!(
                junk_after,
                junk_before + 1,
                "a stranger's datagram was routed"
            );
        }
        let mut n = 0;
        while service.poll_transmit().is_some() {
            n += 1;
            assert!(n < 100_000, "transmits never drain");
        }
        if ctl & 8 != 0 {
            now += Duration::from_millis(u64::from(ctl >> 4) * 100);
            if service.poll_timeout().is_some_and(|t| t <= now) {
                service.handle_timeout(now);
            }
        }
        assert!(stats.sessions.load(Ordering::Relaxed) <= 1);
    }
});
