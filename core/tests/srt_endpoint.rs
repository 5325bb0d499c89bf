//! SRT endpoint machine: stateless SYN-cookie induction, conclusion
//! validation, admission by the application, routing by socket id,
//! rejection codes, bounds and hostile datagrams. Driven by datagrams
//! recorded from ffmpeg's libsrt caller (see `srt_packet.rs`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::time::Duration;

use arcly::session::CloseReason;
use arcly::srt::endpoint::{
    Endpoint, EndpointConfig, EndpointEvent, RequestToken, COOKIE_BUCKET, PEER_IDLE_TIMEOUT,
    PENDING_TIMEOUT,
};
use arcly::srt::handshake::{HandshakeType, RejectReason, SRT_MAGIC};
use arcly::srt::packet::{Control, Packet, SocketId};
use arcly::srt::stream_id::StreamMode;
use arcly::srt::{Handshake, SeqNo};
use arcly::Instant;
use bytes::Bytes;
use proptest::prelude::*;

/// ffmpeg induction request (caller socket id 0x3369a7fb).
const FFMPEG_INDUCTION: &str = "80000000000000000000014a0000000000000004000000026dcaa7b1000005dc00002000000000013369a7fb000000000100007f000000000000000000000000";
/// ffmpeg conclusion: HSREQ latency 120 ms, stream id `publish:live/cam`.
const FFMPEG_CONCLUSION: &str = "80000000000000000002135c0000000000000005000000056dcaa7b1000005dc00002000ffffffff3369a7fbbab7d3e20100007f0000000000000000000000000001000300010501000000bf00780000000500046c6275703a6873696576696c6d61632f";
/// ffmpeg data packet (one TS packet).
const FFMPEG_DATA: &str = "6dcaa7b5e0000005002133570046899b4741003015100000891c7e00ffffffffffffffffffffffffffff000001e0000080c00a31000948e111000910a10000000109f000000001419a423c2193298433fffe9e100b9818cd03500428577aa953e3e257762c2c415d653f1634eb4569465037a4d429ce2d6dba9e6476810546bea086ec47111487f48eba61d4b7099be8457d4e903ab739a04364edcda99a39d61466ee915188158d5db9d158785e5de75a92c3f3c7baa67a9e269120a1820fb8d5e9b283612a875eb88aa9c1";
/// ffmpeg conclusion with a passphrase (KMREQ, AES-128).
const FFMPEG_KM_CONCLUSION: &str = "8000000000000000000006760000000000000005000200075006138e000005dc00002000ffffffff03cb0fa6123456780100007f0000000000000000000000000001000300010501000000bf00780000000500046c6275703a6873696576696c6d61632f0003000e12202901000000000200020000000404d18e3854a5b33e907b5563d98be989fcf0e5b9e4c271949248f3b1b4cdeab5e3672bcb59bd78dc51";
const CALLER_SOCKET: SocketId = SocketId(0x3369_a7fb);

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn config() -> EndpointConfig {
    EndpointConfig::default()
        .with_cookie_secret([7; 32])
        .with_rng_seed(42)
        .with_max_connections(4)
        .with_latency_ms(200)
}

const T0: Instant = Instant::from_millis(1_000_000);

fn handshake_of(b: &Bytes) -> (SocketId, Handshake) {
    match Packet::decode(b).unwrap() {
        Packet::Control(c) => match c.body {
            Control::Handshake(h) => (c.dest, h),
            other => panic!("not a handshake: {other:?}"),
        },
        other => panic!("not control: {other:?}"),
    }
}

/// The recorded conclusion with `cookie` and caller socket id `sock` patched in.
fn conclusion(cookie: u32, sock: u32) -> Bytes {
    let mut v = hex(FFMPEG_CONCLUSION);
    v[16 + 24..16 + 28].copy_from_slice(&sock.to_be_bytes());
    v[16 + 28..16 + 32].copy_from_slice(&cookie.to_be_bytes());
    v.into()
}

/// Runs induction from `src` and returns the cookie the endpoint answered.
fn induct(ep: &mut Endpoint, now: Instant, src: SocketAddr) -> u32 {
    ep.handle_datagram(now, src, hex(FFMPEG_INDUCTION).into());
    let t = ep.poll_transmit().expect("induction response");
    assert_eq!(t.destination, src);
    assert!(ep.poll_transmit().is_none());
    let (dest, h) = handshake_of(&t.to_bytes());
    assert_eq!(dest, CALLER_SOCKET);
    assert_eq!(h.version, 5);
    assert_eq!(h.extension_field, SRT_MAGIC);
    assert_eq!(h.hs_type, HandshakeType::Induction);
    h.syn_cookie
}

fn request(ep: &mut Endpoint) -> arcly::srt::endpoint::ConnectionRequest {
    match ep.poll_event() {
        Some(EndpointEvent::Request(r)) => *r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn connect(
    ep: &mut Endpoint,
    now: Instant,
    src: SocketAddr,
    sock: u32,
) -> (SocketId, RequestToken) {
    let cookie = induct(ep, now, src);
    ep.handle_datagram(now, src, conclusion(cookie, sock));
    let req = request(ep);
    let token = req.token;
    let id = ep.accept(now, token).unwrap();
    (id, token)
}

#[test]
fn full_listener_handshake_with_recorded_ffmpeg_caller() {
    let mut ep = Endpoint::new(config());
    let src = addr(41646);
    let cookie = induct(&mut ep, T0, src);
    assert_eq!(cookie, ep.cookie(src, T0));
    assert_eq!(
        (ep.pending_count(), ep.connection_count()),
        (0, 0),
        "induction stores nothing"
    );

    ep.handle_datagram(T0, src, conclusion(cookie, CALLER_SOCKET.0));
    let req = request(&mut ep);
    assert_eq!(req.peer, src);
    assert_eq!(req.peer_socket, CALLER_SOCKET);
    assert_eq!(req.raw_stream_id, "publish:live/cam");
    let sid = req.stream_id.clone().unwrap();
    assert_eq!(sid.mode, StreamMode::Publish);
    assert_eq!((sid.key.app(), sid.key.name()), ("live", "cam"));
    assert_eq!(req.hs_req.recv_latency_ms, 120);
    assert!(!req.encrypted);
    assert!(
        ep.poll_transmit().is_none(),
        "nothing sent before the application decides"
    );

    // A repeated conclusion while pending raises no second request.
    ep.handle_datagram(T0, src, conclusion(cookie, CALLER_SOCKET.0));
    assert!(ep.poll_event().is_none());
    assert_eq!(ep.pending_count(), 1);

    let id = ep.accept(T0, req.token).unwrap();
    assert_ne!(id, SocketId(0));
    assert!(ep.accept(T0, req.token).is_err(), "token used up");
    let rsp = ep.poll_transmit().unwrap();
    assert_eq!(rsp.destination, src);
    let (dest, h) = handshake_of(&rsp.to_bytes());
    assert_eq!(dest, CALLER_SOCKET);
    assert_eq!(h.hs_type, HandshakeType::Conclusion);
    assert_eq!(h.socket_id, id);
    let hsrsp = h.hs_rsp().unwrap();
    assert_eq!(
        (hsrsp.recv_latency_ms, hsrsp.send_latency_ms),
        (200, 200),
        "max(120, 200)"
    );
    assert_eq!(
        ep.poll_event(),
        Some(EndpointEvent::Connected {
            id,
            peer: src,
            latency_ms: 200
        })
    );

    // Caller repeats its conclusion (lost response): same answer, no new event.
    ep.handle_datagram(T0, src, conclusion(cookie, CALLER_SOCKET.0));
    assert_eq!(ep.poll_transmit().unwrap().to_bytes(), rsp.to_bytes());
    assert!(ep.poll_event().is_none());

    // Data routed by destination socket id to the connection machine. The
    // recorded packet is the 5th of the stream (ISN 0x6dcaa7b1): the gap
    // before it is NAKed at once.
    let mut data = hex(FFMPEG_DATA);
    data[12..16].copy_from_slice(&id.0.to_be_bytes());
    ep.handle_datagram(T0, src, data.clone().into());
    let nak = ep.poll_transmit().expect("immediate NAK");
    assert_eq!(nak.destination, src);
    match Packet::decode(&nak.to_bytes()).unwrap() {
        Packet::Control(c) => {
            assert_eq!(c.dest, CALLER_SOCKET);
            let Control::Nak(list) = c.body else {
                panic!("{c:?}")
            };
            assert_eq!(
                list.ranges(),
                &[(SeqNo::new(0x6dca_a7b1), SeqNo::new(0x6dca_a7b4))]
            );
        }
        other => panic!("{other:?}"),
    }
    // Delivered at its TSBPD time (latency 200 ms after arrival), the
    // missing ones given up.
    ep.handle_timeout(T0 + Duration::from_millis(199));
    assert!(!matches!(ep.poll_event(), Some(EndpointEvent::Data { .. })));
    ep.handle_timeout(T0 + Duration::from_millis(200));
    match ep.poll_event() {
        Some(EndpointEvent::Data {
            id: got,
            seq,
            payload,
        }) => {
            assert_eq!((got, seq), (id, SeqNo::new(0x6dca_a7b5)));
            assert_eq!(payload.len(), 188);
            assert_eq!(payload[0], 0x47);
        }
        other => panic!("{other:?}"),
    }
    // ACKs go out towards the caller: first the first missing number,
    // after the drop the one after the delivered packet.
    let mut acks = Vec::new();
    ep.handle_timeout(T0 + Duration::from_millis(210));
    while let Some(t) = ep.poll_transmit() {
        if let Packet::Control(c) = Packet::decode(&t.to_bytes()).unwrap() {
            if let Control::Ack(a) = c.body {
                acks.push(a.last_ack);
            }
        }
    }
    assert_eq!(acks, vec![SeqNo::new(0x6dca_a7b1), SeqNo::new(0x6dca_a7b6)]);
    // Same packet from another address, or to an unknown id: dropped.
    let unroutable = ep.stats().unroutable;
    ep.handle_datagram(T0, addr(9999), data.clone().into());
    let mut wrong = data.clone();
    wrong[12..16].copy_from_slice(&(id.0 ^ 1).to_be_bytes());
    ep.handle_datagram(T0, src, wrong.into());
    assert!(ep.poll_event().is_none());
    assert_eq!(ep.stats().unroutable, unroutable + 2);

    // Sending towards the caller: header and payload as two pieces.
    ep.send(
        T0 + Duration::from_millis(201),
        id,
        Bytes::from_static(&[0x47; 188]),
    )
    .unwrap();
    let t = ep.poll_transmit().unwrap();
    assert_eq!(t.contents.len(), 2);
    let Packet::Data(d) = Packet::decode(&t.to_bytes()).unwrap() else {
        panic!()
    };
    assert_eq!((d.dest, d.seq), (CALLER_SOCKET, SeqNo::new(0x6dca_a7b1)));
    assert!(ep.send(T0, SocketId(12345), Bytes::new()).is_err());

    // Shutdown closes.
    let shutdown = Packet::Control(arcly::srt::ControlPacket {
        timestamp: arcly::srt::Timestamp(5),
        dest: id,
        body: Control::Shutdown,
    });
    ep.handle_datagram(T0, src, shutdown.to_bytes());
    assert_eq!(
        ep.poll_event(),
        Some(EndpointEvent::Closed {
            id,
            reason: CloseReason::PeerClosed
        })
    );
    assert_eq!(ep.connection_count(), 0);
}

#[test]
fn induction_flood_stores_no_state() {
    let mut ep = Endpoint::new(config());
    for i in 0..20_000u32 {
        let src = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 5000));
        ep.handle_datagram(T0, src, hex(FFMPEG_INDUCTION).into());
        let t = ep.poll_transmit().unwrap();
        assert_eq!(handshake_of(&t.to_bytes()).1.syn_cookie, ep.cookie(src, T0));
    }
    assert_eq!((ep.pending_count(), ep.connection_count()), (0, 0));
    assert!(ep.poll_event().is_none());
    assert_eq!(ep.stats().inductions, 20_000);
}

#[test]
fn conclusion_needs_a_valid_cookie() {
    let mut ep = Endpoint::new(config());
    let src = addr(4000);
    let cookie = induct(&mut ep, T0, src);
    // No cookie, another address's cookie, a cookie two buckets old.
    ep.handle_datagram(T0, src, conclusion(0, 1));
    ep.handle_datagram(T0, src, conclusion(ep.cookie(addr(4001), T0), 1));
    ep.handle_datagram(T0 + COOKIE_BUCKET * 2, src, conclusion(cookie, 1));
    assert_eq!(ep.stats().bad_cookie, 3);
    assert!(ep.poll_event().is_none() && ep.poll_transmit().is_none());
    assert_eq!(ep.pending_count(), 0);
    // The previous bucket's cookie is still good.
    ep.handle_datagram(T0 + COOKIE_BUCKET, src, conclusion(cookie, 1));
    request(&mut ep);
}

#[test]
fn application_rejection_carries_the_code() {
    let mut ep = Endpoint::new(config());
    let src = addr(4000);
    let cookie = induct(&mut ep, T0, src);
    ep.handle_datagram(T0, src, conclusion(cookie, 77));
    let req = request(&mut ep);
    ep.reject(req.token, RejectReason::FORBIDDEN);
    let t = ep.poll_transmit().unwrap().to_bytes();
    let (dest, h) = handshake_of(&t);
    assert_eq!(dest, SocketId(77));
    assert_eq!(h.hs_type, HandshakeType::Rejection(RejectReason::FORBIDDEN));
    assert_eq!(
        &t[16 + 20..16 + 24],
        &2403u32.to_be_bytes(),
        "1000 + SRT_REJX_FORBIDDEN"
    );
    assert_eq!(ep.pending_count(), 0);
    assert!(ep.accept(T0, req.token).is_err());
}

#[test]
fn connection_count_is_bounded() {
    let mut ep = Endpoint::new(config());
    let mut ids = Vec::new();
    for port in 0..4 {
        let (id, _) = connect(&mut ep, T0, addr(5000 + port), 100 + u32::from(port));
        ids.push(id);
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "distinct socket ids");
    let src = addr(6000);
    let cookie = induct(&mut ep, T0, src);
    ep.handle_datagram(T0, src, conclusion(cookie, 999));
    assert!(ep.poll_event().is_none());
    let (_, h) = handshake_of(&ep.poll_transmit().unwrap().to_bytes());
    assert_eq!(h.hs_type, HandshakeType::Rejection(RejectReason::Backlog));
    assert_eq!(ep.connection_count(), 4);
}

#[test]
fn undecided_requests_and_idle_connections_expire() {
    let mut ep = Endpoint::new(config());
    let (id, _) = connect(&mut ep, T0, addr(5000), 1);
    while ep.poll_transmit().is_some() {}
    while ep.poll_event().is_some() {}
    let src = addr(5001);
    let cookie = induct(&mut ep, T0, src);
    ep.handle_datagram(T0, src, conclusion(cookie, 2));
    request(&mut ep);
    assert!(ep.poll_timeout().unwrap() <= T0 + PENDING_TIMEOUT);
    ep.handle_timeout(T0 + Duration::from_millis(100));
    assert_eq!(ep.pending_count(), 1, "nothing expires early");
    assert_eq!(ep.connection_count(), 1);
    ep.handle_timeout(T0 + PENDING_TIMEOUT.max(PEER_IDLE_TIMEOUT));
    assert_eq!(ep.pending_count(), 0);
    let mut rejected = false;
    while let Some(t) = ep.poll_transmit() {
        if let Packet::Control(c) = Packet::decode(&t.to_bytes()).unwrap() {
            if let Control::Handshake(h) = c.body {
                assert_eq!(h.hs_type, HandshakeType::Rejection(RejectReason::Timeout));
                rejected = true;
            }
        }
    }
    assert!(rejected);
    assert_eq!(
        ep.poll_event(),
        Some(EndpointEvent::Closed {
            id,
            reason: CloseReason::IdleTimeout
        })
    );
    assert_eq!(ep.connection_count(), 0);
    assert_eq!(ep.poll_timeout(), None);
}

#[test]
fn old_callers_and_missing_hsreq_are_rejected() {
    let mut ep = Endpoint::new(config());
    let src = addr(4000);
    let cookie = induct(&mut ep, T0, src);
    let mut v = conclusion(cookie, 5).to_vec();
    v[16..20].copy_from_slice(&4u32.to_be_bytes()); // HSv4 conclusion
    ep.handle_datagram(T0, src, v.into());
    let (_, h) = handshake_of(&ep.poll_transmit().unwrap().to_bytes());
    assert_eq!(h.hs_type, HandshakeType::Rejection(RejectReason::Version));
    let v = conclusion(cookie, 6);
    ep.handle_datagram(T0, src, v.slice(..16 + 48)); // no extensions at all
    let (_, h) = handshake_of(&ep.poll_transmit().unwrap().to_bytes());
    assert_eq!(h.hs_type, HandshakeType::Rejection(RejectReason::Rogue));
    assert!(ep.poll_event().is_none());
}

#[test]
fn encrypting_callers_are_refused_without_a_listener_passphrase() {
    let mut ep = Endpoint::new(config());
    let src = addr(4000);
    let cookie = induct(&mut ep, T0, src);
    let mut v = hex(FFMPEG_KM_CONCLUSION);
    v[16 + 28..16 + 32].copy_from_slice(&cookie.to_be_bytes());
    ep.handle_datagram(T0, src, v.into());
    let (_, h) = handshake_of(&ep.poll_transmit().unwrap().to_bytes());
    assert_eq!(h.hs_type, HandshakeType::Rejection(RejectReason::Unsecure));
    assert!(ep.poll_event().is_none());
    assert_eq!(ep.pending_count(), 0);
}

/// The recorded ffmpeg KMREQ conclusion (passphrase `0123456789abcdef`)
/// against a listener with `passphrase`: the handshake type it answers.
fn km_conclusion_against(passphrase: Option<&str>, km: bool) -> (Endpoint, Handshake) {
    let mut ep = Endpoint::new(config().with_passphrase(passphrase.map(str::to_owned)));
    let src = addr(4000);
    let cookie = induct(&mut ep, T0, src);
    let v = if km {
        let mut v = hex(FFMPEG_KM_CONCLUSION);
        v[16 + 28..16 + 32].copy_from_slice(&cookie.to_be_bytes());
        Bytes::from(v)
    } else {
        conclusion(cookie, CALLER_SOCKET.0)
    };
    ep.handle_datagram(T0, src, v);
    if let Some(EndpointEvent::Request(r)) = ep.poll_event() {
        assert!(r.encrypted);
        ep.accept(T0, r.token).unwrap();
    }
    let (_, h) = handshake_of(&ep.poll_transmit().unwrap().to_bytes());
    (ep, h)
}

#[test]
fn recorded_encrypting_ffmpeg_caller_with_the_right_passphrase_is_accepted() {
    use arcly::srt::handshake::HsExtension;
    use arcly::srt::key_material::KmResponse;
    let (ep, h) = km_conclusion_against(Some("0123456789abcdef"), true);
    assert_eq!(h.hs_type, HandshakeType::Conclusion);
    let kmrsp = h
        .extensions
        .iter()
        .find_map(|e| match e {
            HsExtension::KmRsp(b) => Some(b.clone()),
            _ => None,
        })
        .expect("KMRSP");
    // KMRSP echoes the caller's key material (libsrt behaviour).
    let req = Handshake::decode(&hex(FFMPEG_KM_CONCLUSION)[16..]).unwrap();
    assert_eq!(
        KmResponse::decode(&kmrsp).unwrap(),
        KmResponse::Material(req.key_material().unwrap().unwrap())
    );
    assert_eq!(ep.connection_count(), 1);
    let id = SocketId(h.socket_id.0);
    assert!(ep.is_encrypted(id));
}

#[test]
fn wrong_or_missing_encryption_is_refused_with_libsrt_codes() {
    let (ep, h) = km_conclusion_against(Some("not the passphrase"), true);
    assert_eq!(h.hs_type, HandshakeType::Rejection(RejectReason::BadSecret));
    assert_eq!((ep.connection_count(), ep.pending_count()), (0, 0));
    let (ep, h) = km_conclusion_against(Some("0123456789abcdef"), false);
    assert_eq!(h.hs_type, HandshakeType::Rejection(RejectReason::Unsecure));
    assert_eq!((ep.connection_count(), ep.pending_count()), (0, 0));
}

fn control(dest: SocketId, body: Control) -> Bytes {
    Packet::Control(arcly::srt::packet::ControlPacket {
        timestamp: arcly::srt::Timestamp(0),
        dest,
        body,
    })
    .to_bytes()
}

#[test]
fn truncated_headers_and_bogus_socket_ids_change_nothing() {
    let mut ep = Endpoint::new(config());
    let peer = addr(5000);
    let (id, _) = connect(&mut ep, T0, peer, 1);
    while ep.poll_transmit().is_some() {}
    while ep.poll_event().is_some() {}
    let data = hex(FFMPEG_DATA);
    for n in 0..16 {
        ep.handle_datagram(T0, peer, Bytes::copy_from_slice(&data[..n]));
    }
    assert_eq!(ep.stats().malformed, 16);
    // A data packet for a socket id nobody has, and one for ours from a
    // stranger's address.
    let mut v = data.clone();
    v[12..16].copy_from_slice(&0x0bad_0bad_u32.to_be_bytes());
    ep.handle_datagram(T0, peer, v.into());
    let mut v = data.clone();
    v[12..16].copy_from_slice(&id.0.to_be_bytes());
    ep.handle_datagram(T0, addr(6666), v.into());
    assert_eq!(ep.stats().unroutable, 2);
    assert_eq!(ep.connection_count(), 1);
    assert!(ep.poll_event().is_none() && ep.poll_transmit().is_none());
}

#[test]
fn absurd_nak_and_dropreq_ranges_cost_nothing() {
    use arcly::srt::packet::LossList;
    let mut ep = Endpoint::new(config());
    let peer = addr(5000);
    let (id, _) = connect(&mut ep, T0, peer, 1);
    while ep.poll_transmit().is_some() {}
    while ep.poll_event().is_some() {}
    for i in 0..3u8 {
        ep.send(T0, id, Bytes::from(vec![i; 188])).unwrap();
    }
    assert_eq!(std::iter::from_fn(|| ep.poll_transmit()).count(), 3);
    // A NAK of 2^30 - 1 packets: at most the 3 packets held go out again.
    let mut list = LossList::new();
    list.push(SeqNo::new(0), SeqNo::new((1 << 30) - 2));
    ep.handle_datagram(T0, peer, control(id, Control::Nak(list)));
    assert!(std::iter::from_fn(|| ep.poll_transmit()).count() <= 3);
    // A DROPREQ over half the sequence space, and a backwards one.
    for (a, b) in [(0u32, (1 << 30) - 2), (1 << 20, 5)] {
        ep.handle_datagram(
            T0,
            peer,
            control(
                id,
                Control::DropReq {
                    msg_no: 0,
                    first: SeqNo::new(a),
                    last: SeqNo::new(b),
                },
            ),
        );
    }
    assert_eq!(ep.connection_count(), 1);
    assert!(ep.poll_event().is_none());
}

#[test]
fn hostile_key_refresh_on_a_clear_connection_is_answered_with_a_failure() {
    let mut ep = Endpoint::new(config());
    let peer = addr(5000);
    let (id, _) = connect(&mut ep, T0, peer, 1);
    while ep.poll_transmit().is_some() {}
    while ep.poll_event().is_some() {}
    for body in [Bytes::from_static(&[1, 2, 3]), Bytes::from(vec![0xff; 300])] {
        ep.handle_datagram(
            T0,
            peer,
            control(
                id,
                Control::UserDefined {
                    subtype: 3,
                    info: 0,
                    body,
                },
            ),
        );
        let t = ep.poll_transmit().expect("a KMRSP");
        match Packet::decode(&t.to_bytes()).unwrap() {
            Packet::Control(c) => match c.body {
                Control::UserDefined { subtype, body, .. } => {
                    assert_eq!(subtype, 4);
                    assert_eq!(&body[..], &3u32.to_be_bytes(), "SRT_KM_S_NOSECRET");
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
    assert!(!ep.is_encrypted(id));
    assert_eq!(ep.stats().key_refreshes, 0);
}

#[test]
fn encrypted_conclusion_flood_is_bounded() {
    // Valid cookies from many addresses, all with key material: each one
    // is refused or pending; pending requests never exceed the bound.
    let mut ep = Endpoint::new(config().with_passphrase(Some("0123456789abcdef".into())));
    for i in 0..40u16 {
        let src = addr(7000 + i);
        let cookie = induct(&mut ep, T0, src);
        let mut v = hex(FFMPEG_KM_CONCLUSION);
        v[16 + 28..16 + 32].copy_from_slice(&cookie.to_be_bytes());
        if i % 2 == 1 {
            // Corrupt the wrapped key: BADSECRET, nothing stored.
            let n = v.len();
            v[n - 3] ^= 0x55;
        }
        ep.handle_datagram(T0, src, v.into());
        while ep.poll_transmit().is_some() {}
    }
    assert_eq!(ep.pending_count(), 4, "max_connections pending");
    assert_eq!(ep.connection_count(), 0);
}

proptest! {
    #[test]
    fn hostile_datagrams_change_no_state(dgrams in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..200), any::<bool>(), any::<u8>(), 0usize..64), 1..64)) {
        let mut ep = Endpoint::new(config());
        let peer = addr(5000);
        let (id, _) = connect(&mut ep, T0, peer, 1);
        while ep.poll_transmit().is_some() {}
        while ep.poll_event().is_some() {}
        let attacker = addr(6666);
        for (mut bytes, aim, byte, at) in dgrams {
            // Sometimes aim at our socket id, sometimes mutate a real conclusion.
            if aim && bytes.len() >= 16 {
                bytes[12..16].copy_from_slice(&id.0.to_be_bytes());
            } else if !aim {
                bytes = conclusion(0xdead_beef, 3).to_vec();
                let n = bytes.len();
                bytes[at % n] = byte;
            }
            ep.handle_datagram(T0, attacker, bytes.into());
        }
        prop_assert_eq!(ep.connection_count(), 1);
        prop_assert_eq!(ep.pending_count(), 0);
        prop_assert!(ep.poll_event().is_none());
        // Only stateless induction answers may have been produced.
        while let Some(t) = ep.poll_transmit() {
            let (_, h) = handshake_of(&t.to_bytes());
            prop_assert_eq!(h.hs_type, HandshakeType::Induction);
        }
    }
}
