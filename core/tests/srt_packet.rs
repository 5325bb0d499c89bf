//! SRT packet codec: byte-exact vectors recorded from real libsrt peers,
//! encode→decode round trips for every packet type, and hostile input.
//!
//! The vectors were recorded on loopback (tshark) from a session between
//! `srt-live-transmit` 1.5.1 (listener) and ffmpeg's libsrt 1.5.1 caller
//! publishing `srt://127.0.0.1:9002?streamid=publish:live/cam`, and from a
//! `srt-live-transmit` caller with `streamid=#!::r=live/cam,m=publish&latency=200`
//! against a small UDP responder that answered its induction.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arcly::srt::handshake::{
    ext_flags, Cipher, HandshakeType, HsExtension, RejectReason, SrtFlags, SrtHsExt, SRT_MAGIC,
};
use arcly::srt::packet::{
    AckKind, AckRates, AckStats, Control, ControlPacket, DataPacket, KeyFlag, LossList, Packet,
    PacketError, PacketPosition, SocketId, MAX_PACKET_SIZE,
};
use arcly::srt::{Handshake, MsgNo, SeqNo, Timestamp};
use bytes::Bytes;
use proptest::prelude::*;

/// ffmpeg caller → listener: induction request (HSv4 form).
const FFMPEG_INDUCTION: &str = "80000000000000000000014a0000000000000004000000026dcaa7b1000005dc00002000000000013369a7fb000000000100007f000000000000000000000000";
/// srt-live-transmit listener → ffmpeg: induction response with cookie.
const SLT_INDUCTION_RSP: &str = "8000000000000000001cadb23369a7fb0000000500004a176dcaa7b1000005dc00002000000000013369a7fbbab7d3e20100007f000000000000000000000000";
/// ffmpeg → listener: conclusion with HSREQ and stream id `publish:live/cam`.
const FFMPEG_CONCLUSION: &str = "80000000000000000002135c0000000000000005000000056dcaa7b1000005dc00002000ffffffff3369a7fbbab7d3e20100007f0000000000000000000000000001000300010501000000bf00780000000500046c6275703a6873696576696c6d61632f";
/// srt-live-transmit listener → ffmpeg: conclusion response with HSRSP.
const SLT_CONCLUSION_RSP: &str = "8000000000000000000009363369a7fb00000005000000016dcaa7b1000005dc00002000ffffffff0046899bbab7d3e20100007f0000000000000000000000000002000300010501000000bf00780078";
/// Listener keep-alive.
const SLT_KEEPALIVE: &str = "8001000000000000000f523a3369a7fb00000000";
/// Listener full ACK.
const SLT_ACK: &str =
    "8002000000000001001d79e73369a7fb6dcaa7b2000186a00000c35000001ffe00000001000003e800000582";
/// ffmpeg ACKACK.
const FFMPEG_ACKACK: &str = "8006000000000001001f8e110046899b00000000";
/// ffmpeg data packet carrying MPEG-TS.
const FFMPEG_DATA: &str = "6dcaa7b5e0000005002133570046899b4741003015100000891c7e00ffffffffffffffffffffffffffff000001e0000080c00a31000948e111000910a10000000109f000000001419a423c2193298433fffe9e100b9818cd03500428577aa953e3e257762c2c415d653f1634eb4569465037a4d429ce2d6dba9e6476810546bea086ec47111487f48eba61d4b7099be8457d4e903ab739a04364edcda99a39d61466ee915188158d5db9d158785e5de75a92c3f3c7baa67a9e269120a1820fb8d5e9b283612a875eb88aa9c1";
/// ffmpeg shutdown.
const FFMPEG_SHUTDOWN: &str = "80050000000000000023a6e60046899b00000000";
/// srt-live-transmit caller → listener: conclusion with the access-control
/// stream id `#!::r=live/cam,m=publish` and 200 ms latency.
const SLT_CALLER_CONCLUSION: &str = "80000000000000000012922d00000000000000050000000557374caa000005dc00002000ffffffff141a4253123456780100007f0000000000000000000000000001000300010501000000bf00c800c8000500063a3a2123696c3d72632f65766d2c6d616275703d6873696c";

fn hex(s: &str) -> Bytes {
    assert_eq!(s.len() % 2, 0);
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect::<Vec<u8>>()
        .into()
}

fn control(bytes: &Bytes) -> ControlPacket {
    match Packet::decode(bytes).unwrap() {
        Packet::Control(c) => c,
        other => panic!("expected control packet, got {other:?}"),
    }
}

fn handshake(bytes: &Bytes) -> (ControlPacket, Handshake) {
    let c = control(bytes);
    match &c.body {
        Control::Handshake(h) => {
            let h = h.clone();
            (c, h)
        }
        other => panic!("expected handshake, got {other:?}"),
    }
}

/// Decoding then encoding a recorded packet gives back the same bytes.
fn assert_reencodes(bytes: &Bytes) {
    let p = Packet::decode(bytes).unwrap();
    assert_eq!(p.to_bytes(), *bytes, "re-encoding {p:?}");
}

#[test]
fn ffmpeg_induction_request() {
    let b = hex(FFMPEG_INDUCTION);
    let (c, h) = handshake(&b);
    assert_eq!(c.dest, SocketId(0), "addressed to the listener");
    assert_eq!(c.timestamp, Timestamp(0x14a));
    assert_eq!(h.version, 4);
    assert_eq!(h.encryption, Cipher::None);
    assert_eq!(h.extension_field, 2, "UDT_DGRAM");
    assert_eq!(h.initial_seq, SeqNo::new(0x6dca_a7b1));
    assert_eq!(h.mtu, 1500);
    assert_eq!(h.flow_window, 8192);
    assert_eq!(h.hs_type, HandshakeType::Induction);
    assert_eq!(h.socket_id, SocketId(0x3369_a7fb));
    assert_eq!(h.syn_cookie, 0);
    assert_eq!(h.peer_addr(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert!(h.extensions.is_empty());
    assert_reencodes(&b);
}

#[test]
fn listener_induction_response() {
    let b = hex(SLT_INDUCTION_RSP);
    let (c, h) = handshake(&b);
    assert_eq!(c.dest, SocketId(0x3369_a7fb), "to the caller's socket");
    assert_eq!(h.version, 5);
    assert_eq!(h.extension_field, SRT_MAGIC);
    assert_eq!(h.hs_type, HandshakeType::Induction);
    assert_eq!(h.syn_cookie, 0xbab7_d3e2);
    assert_reencodes(&b);
}

#[test]
fn ffmpeg_conclusion_with_stream_id() {
    let b = hex(FFMPEG_CONCLUSION);
    let (c, h) = handshake(&b);
    assert_eq!(c.dest, SocketId(0));
    assert_eq!(h.version, 5);
    assert_eq!(h.hs_type, HandshakeType::Conclusion);
    assert_eq!(h.extension_field, ext_flags::HSREQ | ext_flags::CONFIG);
    assert_eq!(h.syn_cookie, 0xbab7_d3e2, "echoes the listener's cookie");
    let req = h.hs_req().expect("HSREQ");
    assert_eq!(req.version, 0x0001_0501, "libsrt 1.5.1");
    for f in [
        SrtFlags::TSBPDSND,
        SrtFlags::TSBPDRCV,
        SrtFlags::CRYPT,
        SrtFlags::TLPKTDROP,
        SrtFlags::PERIODICNAK,
        SrtFlags::REXMITFLG,
    ] {
        assert!(req.flags.contains(f), "flag {f:#x}");
    }
    assert!(!req.flags.contains(SrtFlags::STREAM));
    assert_eq!(req.recv_latency_ms, 120);
    assert_eq!(req.send_latency_ms, 0);
    assert_eq!(h.stream_id(), Some("publish:live/cam"));
    assert_reencodes(&b);
}

#[test]
fn listener_conclusion_response() {
    let b = hex(SLT_CONCLUSION_RSP);
    let (_, h) = handshake(&b);
    assert_eq!(h.hs_type, HandshakeType::Conclusion);
    assert_eq!(h.socket_id, SocketId(0x0046_899b));
    let rsp = h.hs_rsp().expect("HSRSP");
    assert_eq!((rsp.recv_latency_ms, rsp.send_latency_ms), (120, 120));
    assert_eq!(h.stream_id(), None);
    assert_reencodes(&b);
}

#[test]
fn srt_live_transmit_access_control_stream_id() {
    let b = hex(SLT_CALLER_CONCLUSION);
    let (_, h) = handshake(&b);
    assert_eq!(h.stream_id(), Some("#!::r=live/cam,m=publish"));
    let req = h.hs_req().unwrap();
    assert_eq!((req.recv_latency_ms, req.send_latency_ms), (200, 200));
    let sid = arcly::srt::stream_id::StreamId::parse(h.stream_id().unwrap()).unwrap();
    assert_eq!(sid.mode, arcly::srt::stream_id::StreamMode::Publish);
    assert_eq!((sid.key.app(), sid.key.name()), ("live", "cam"));
    assert_reencodes(&b);
}

#[test]
fn recorded_control_packets() {
    let b = hex(SLT_KEEPALIVE);
    assert_eq!(control(&b).body, Control::KeepAlive);
    assert_reencodes(&b);

    let b = hex(SLT_ACK);
    let c = control(&b);
    let Control::Ack(ack) = c.body else {
        panic!("{c:?}")
    };
    assert_eq!(ack.ack_no, 1);
    assert_eq!(ack.last_ack, SeqNo::new(0x6dca_a7b2));
    assert_eq!(
        ack.kind,
        AckKind::Full(
            AckStats {
                rtt: 100_000,
                rtt_var: 50_000,
                buffer_available: 8190
            },
            AckRates {
                packet_rate: 1,
                link_capacity: 1000,
                byte_rate: 1410
            }
        )
    );
    assert_reencodes(&b);

    let b = hex(FFMPEG_ACKACK);
    assert_eq!(control(&b).body, Control::AckAck { ack_no: 1 });
    assert_reencodes(&b);

    let b = hex(FFMPEG_SHUTDOWN);
    assert_eq!(control(&b).body, Control::Shutdown);
    assert_reencodes(&b);
}

#[test]
fn recorded_data_packet() {
    let b = hex(FFMPEG_DATA);
    let Packet::Data(d) = Packet::decode(&b).unwrap() else {
        panic!()
    };
    assert_eq!(d.seq, SeqNo::new(0x6dca_a7b5));
    assert_eq!(d.position, PacketPosition::Only);
    assert!(d.in_order);
    assert_eq!(d.key, KeyFlag::None);
    assert!(!d.retransmitted);
    assert_eq!(d.msg_no, MsgNo::new(5));
    assert_eq!(d.dest, SocketId(0x0046_899b));
    assert_eq!(d.payload.len(), 188, "one TS packet");
    assert_eq!(d.payload[0], 0x47, "TS sync byte");
    assert_eq!(&d.header_bytes()[..], &b[..16]);
    assert_reencodes(&b);
}

#[test]
fn nak_loss_list_coding() {
    // Appendix A: single loss 5, range 10..=13 (top bit marks the start).
    let mut list = LossList::new();
    assert!(list.push(SeqNo::new(5), SeqNo::new(5)));
    assert!(list.push(SeqNo::new(10), SeqNo::new(13)));
    assert!(
        !list.push(SeqNo::new(20), SeqNo::new(19)),
        "backwards range refused"
    );
    assert_eq!(list.count(), 5);
    let p = Packet::Control(ControlPacket {
        timestamp: Timestamp(7),
        dest: SocketId(9),
        body: Control::Nak(list),
    });
    let b = p.to_bytes();
    assert_eq!(&b[16..], &[0, 0, 0, 5, 0x80, 0, 0, 10, 0, 0, 0, 13][..]);
    assert_eq!(&b[..4], &[0x80, 0x03, 0, 0][..]);
    assert_eq!(Packet::decode(&b).unwrap(), p);
}

fn ctrl_bytes(ty: u16, cif: &[u8]) -> Bytes {
    let mut v = vec![
        0x80 | (ty >> 8) as u8,
        ty as u8,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        1,
    ];
    v.extend_from_slice(cif);
    v.into()
}

#[test]
fn hostile_packets_are_errors() {
    let d = |b: &[u8]| Packet::decode_slice(b);
    assert!(matches!(
        d(&[0x80, 0, 0]),
        Err(PacketError::Truncated { .. })
    ));
    assert!(matches!(
        d(&vec![0; MAX_PACKET_SIZE + 1]),
        Err(PacketError::TooLong(_))
    ));
    assert_eq!(
        Packet::decode(&ctrl_bytes(0x0042, &[])),
        Err(PacketError::UnknownControlType(0x42))
    );
    // NAK: open range, backwards range, empty, unaligned.
    assert_eq!(
        Packet::decode(&ctrl_bytes(3, &[0x80, 0, 0, 1])),
        Err(PacketError::OpenLossRange)
    );
    assert!(matches!(
        Packet::decode(&ctrl_bytes(3, &[0x80, 0, 0, 9, 0, 0, 0, 1])),
        Err(PacketError::BackwardLossRange { .. })
    ));
    assert_eq!(
        Packet::decode(&ctrl_bytes(3, &[])),
        Err(PacketError::EmptyLossList)
    );
    assert!(matches!(
        Packet::decode(&ctrl_bytes(3, &[0, 0, 1])),
        Err(PacketError::Unaligned { .. })
    ));
    // ACK without CIF, DROPREQ short.
    assert!(matches!(
        Packet::decode(&ctrl_bytes(2, &[])),
        Err(PacketError::Truncated { .. })
    ));
    assert!(matches!(
        Packet::decode(&ctrl_bytes(7, &[0, 0, 0, 1])),
        Err(PacketError::Truncated { .. })
    ));
    // Handshake: short CIF, extension overrunning the packet, bad stream id.
    let hs = hex(FFMPEG_CONCLUSION);
    assert!(matches!(
        Packet::decode(&hs.slice(..40)),
        Err(PacketError::Truncated { .. })
    ));
    let mut v = hs.to_vec();
    v[16 + 48 + 3] = 9; // HSREQ claims 9 words
    assert!(matches!(
        Packet::decode_slice(&v),
        Err(PacketError::ExtensionOverrun { .. })
    ));
    let mut v = hs.to_vec();
    let n = v.len();
    v[n - 1] = 0xff; // invalid UTF-8 in the stream id
    assert_eq!(Packet::decode_slice(&v), Err(PacketError::BadString(5)));
    let mut v = hs.to_vec();
    v[16 + 20..16 + 24].copy_from_slice(&[0, 0, 0, 7]); // handshake type 7
    assert_eq!(
        Packet::decode_slice(&v),
        Err(PacketError::UnknownHandshakeType(7))
    );
    let mut v = hs.to_vec();
    v[16 + 5] = 1; // encryption field 1
    assert_eq!(
        Packet::decode_slice(&v),
        Err(PacketError::UnknownEncryption(1))
    );
    // Too many extensions.
    let mut v = hex(FFMPEG_INDUCTION).to_vec();
    for _ in 0..9 {
        v.extend_from_slice(&[0, 0x20, 0, 0]);
    }
    assert!(matches!(
        Packet::decode_slice(&v),
        Err(PacketError::TooManyExtensions(_))
    ));
}

#[test]
fn rejection_codes_on_the_wire() {
    assert_eq!(
        HandshakeType::Rejection(RejectReason::BadSecret).to_u32(),
        1010
    );
    assert_eq!(
        HandshakeType::Rejection(RejectReason::FORBIDDEN).to_u32(),
        2403
    );
    assert_eq!(
        HandshakeType::from_u32(1004).unwrap(),
        HandshakeType::Rejection(RejectReason::Rogue)
    );
    assert_eq!(
        HandshakeType::from_u32(2405).unwrap(),
        HandshakeType::Rejection(RejectReason::BAD_MODE)
    );
    assert_eq!(
        HandshakeType::from_u32(3000).unwrap(),
        HandshakeType::Rejection(RejectReason::User(2000))
    );
    assert_eq!(RejectReason::from_code(17), RejectReason::Crypto);
    assert_eq!(RejectReason::from_code(500), RejectReason::Other(500));
}

#[test]
fn peer_address_byte_order() {
    let mut h = handshake(&hex(FFMPEG_INDUCTION)).1;
    h.set_peer_addr(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2)));
    assert_eq!(&h.peer_ip[..4], &[2, 1, 168, 192]);
    assert_eq!(h.peer_addr(), IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2)));
    let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    h.set_peer_addr(IpAddr::V6(v6));
    assert_eq!(h.peer_addr(), IpAddr::V6(v6));
}

// ---- round-trip proptests ----

fn seq() -> impl Strategy<Value = SeqNo> {
    (0u32..SeqNo::MODULUS).prop_map(SeqNo::new)
}

fn data_packet() -> impl Strategy<Value = Packet> {
    (
        seq(),
        0u32..4,
        any::<bool>(),
        0u32..4,
        any::<bool>(),
        0u32..MsgNo::MODULUS,
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..1400),
    )
        .prop_map(|(seq, pp, o, kk, r, msg, ts, dest, payload)| {
            let position = [
                PacketPosition::First,
                PacketPosition::Middle,
                PacketPosition::Last,
                PacketPosition::Only,
            ][pp as usize];
            Packet::Data(DataPacket {
                seq,
                position,
                in_order: o,
                key: KeyFlag::from_bits(kk),
                retransmitted: r,
                msg_no: MsgNo::new(msg),
                timestamp: Timestamp(ts),
                dest: SocketId(dest),
                payload: payload.into(),
            })
        })
}

fn ascii_string(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[ -~]{{0,{max}}}"))
        .unwrap()
        .prop_filter("no NUL tail", |s| !s.ends_with('\0'))
}

fn extension() -> impl Strategy<Value = HsExtension> {
    let hs = (any::<u32>(), any::<u32>(), any::<u16>(), any::<u16>()).prop_map(
        |(version, flags, r, s)| SrtHsExt {
            version,
            flags: SrtFlags(flags),
            recv_latency_ms: r,
            send_latency_ms: s,
        },
    );
    let words =
        proptest::collection::vec(any::<[u8; 4]>(), 0..20).prop_map(|w| Bytes::from(w.concat()));
    prop_oneof![
        hs.clone().prop_map(HsExtension::HsReq),
        hs.prop_map(HsExtension::HsRsp),
        words.clone().prop_map(HsExtension::KmReq),
        words.clone().prop_map(HsExtension::KmRsp),
        ascii_string(512).prop_map(HsExtension::StreamId),
        "(live|file)".prop_map(HsExtension::Congestion),
        ascii_string(64).prop_map(HsExtension::Filter),
        words.clone().prop_map(HsExtension::Group),
        (9u16..0x100, words).prop_map(|(ty, body)| HsExtension::Unknown { ty, body }),
    ]
}

fn hs_type() -> impl Strategy<Value = HandshakeType> {
    prop_oneof![
        Just(HandshakeType::WaveAHand),
        Just(HandshakeType::Induction),
        Just(HandshakeType::Conclusion),
        Just(HandshakeType::Agreement),
        Just(HandshakeType::Done),
        (0u32..=RejectReason::MAX_CODE)
            .prop_map(|c| HandshakeType::Rejection(RejectReason::from_code(c))),
    ]
}

fn handshake_body() -> impl Strategy<Value = Control> {
    (
        (
            any::<u32>(),
            0usize..4,
            any::<u16>(),
            seq(),
            any::<u32>(),
            any::<u32>(),
        ),
        (hs_type(), any::<u32>(), any::<u32>(), any::<[u8; 16]>()),
        proptest::collection::vec(extension(), 0..=2),
    )
        .prop_map(
            |(
                (version, enc, extension_field, initial_seq, mtu, flow_window),
                (hs_type, sid, syn_cookie, peer_ip),
                extensions,
            )| {
                Control::Handshake(Handshake {
                    version,
                    encryption: [Cipher::None, Cipher::Aes128, Cipher::Aes192, Cipher::Aes256][enc],
                    extension_field,
                    initial_seq,
                    mtu,
                    flow_window,
                    hs_type,
                    socket_id: SocketId(sid),
                    syn_cookie,
                    peer_ip,
                    extensions,
                })
            },
        )
}

fn ack_body() -> impl Strategy<Value = Control> {
    let stats =
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(rtt, rtt_var, buffer_available)| {
            AckStats {
                rtt,
                rtt_var,
                buffer_available,
            }
        });
    let rates = (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
        |(packet_rate, link_capacity, byte_rate)| AckRates {
            packet_rate,
            link_capacity,
            byte_rate,
        },
    );
    let kind = prop_oneof![
        Just(AckKind::Light),
        stats.clone().prop_map(AckKind::Small),
        (stats, rates).prop_map(|(s, r)| AckKind::Full(s, r)),
    ];
    (any::<u32>(), seq(), kind).prop_map(|(ack_no, last_ack, kind)| {
        Control::Ack(arcly::srt::Ack {
            ack_no,
            last_ack,
            kind,
        })
    })
}

fn nak_body() -> impl Strategy<Value = Control> {
    proptest::collection::vec((seq(), 0u32..1000), 1..100).prop_map(|ranges| {
        let mut list = LossList::new();
        for (first, len) in ranges {
            assert!(list.push(first, first.add(len)));
        }
        Control::Nak(list)
    })
}

fn control_packet() -> impl Strategy<Value = Packet> {
    let body = prop_oneof![
        handshake_body(),
        Just(Control::KeepAlive),
        ack_body(),
        nak_body(),
        Just(Control::CongestionWarning),
        Just(Control::Shutdown),
        any::<u32>().prop_map(|ack_no| Control::AckAck { ack_no }),
        (any::<u32>(), seq(), seq()).prop_map(|(msg_no, first, last)| Control::DropReq {
            msg_no,
            first,
            last
        }),
        any::<u32>().prop_map(|code| Control::PeerError { code }),
        (
            any::<u16>(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(subtype, info, body)| Control::UserDefined {
                subtype,
                info,
                body: body.into()
            }),
    ];
    (any::<u32>(), any::<u32>(), body).prop_map(|(ts, dest, body)| {
        Packet::Control(ControlPacket {
            timestamp: Timestamp(ts),
            dest: SocketId(dest),
            body,
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn data_round_trip(p in data_packet()) {
        let b = p.to_bytes();
        prop_assert_eq!(Packet::decode(&b).unwrap(), p);
    }

    #[test]
    fn control_round_trip(p in control_packet()) {
        let b = p.to_bytes();
        prop_assert!(b.len() <= MAX_PACKET_SIZE, "{} bytes", b.len());
        let back = Packet::decode(&b).unwrap();
        prop_assert_eq!(&back, &p);
        prop_assert_eq!(back.to_bytes(), b);
    }

    #[test]
    fn arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..1600)) {
        let _ = Packet::decode_slice(&v);
    }

    #[test]
    fn control_shaped_bytes_never_panic(ty in 0u16..10, cif in proptest::collection::vec(any::<u8>(), 0..600)) {
        let b = ctrl_bytes(ty, &cif);
        if let Ok(p) = Packet::decode(&b) {
            // Whatever decodes re-encodes to something that decodes the same.
            prop_assert_eq!(Packet::decode(&p.to_bytes()).unwrap(), p);
        }
    }

    #[test]
    fn mutated_handshakes_never_panic(i in 0usize..100, byte in any::<u8>(), cut in 0usize..101) {
        let mut v = hex(FFMPEG_CONCLUSION).to_vec();
        let n = v.len();
        v[i % n] = byte;
        v.truncate(cut.min(n));
        if let Ok(p) = Packet::decode_slice(&v) {
            prop_assert_eq!(Packet::decode(&p.to_bytes()).unwrap(), p);
        }
    }
}
