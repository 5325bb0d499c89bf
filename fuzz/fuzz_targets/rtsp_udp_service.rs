//! The RTSP UDP service (core/src/rtsp/udp.rs) with a UDP publisher
//! (ANNOUNCE/SETUP client_port=5000-5001/RECORD from 10.0.0.9) and a UDP
//! viewer of another stream (DESCRIBE/SETUP client_port=6000-6001/PLAY
//! from 10.0.0.1) set up through real RTSP sessions, then fed arbitrary
//! datagrams.
//!
//! Input: byte 0 = split seed (see `arcly_fuzz::split`); the first byte of
//! each piece picks the source (the publisher's RTP/RTCP ports, the
//! viewer's ports, a port of a known host that no SETUP named, a
//! stranger), the socket (RTP or RTCP), whether the rest is wrapped in a
//! valid RTP header of the publisher's payload type (so it reaches the
//! H.264 depacketizer), and how far time moves.
//!
//! Invariants: no panic; datagrams go only to the client ports the SETUPs
//! named; at most the two sessions live; the send queue stays bounded.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use arcly::codec::h264::AvcConfig;
use arcly::datagram::{DatagramService, Received, SocketIndex};
use arcly::rtsp::{RtspSessionFactory, RtspUdpConfig, RtspUdpServiceFactory};
use arcly::session::StreamSession;
use arcly::{Codec, Engine, Frame, FrameFlags, Instant, StreamKey};
use arcly_fuzz::split;
use bytes::{BufMut, Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
    0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

const PUBLISH: &[u8] = b"ANNOUNCE rtsp://h/live/in RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 68\r\n\r\nv=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:streamid=0\r\n\
SETUP rtsp://h/live/in/streamid=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP;unicast;client_port=5000-5001;mode=record\r\n\r\n\
RECORD rtsp://h/live/in RTSP/1.0\r\nCSeq: 3\r\n\r\n";
const PLAY: &[u8] = b"DESCRIBE rtsp://h/live/out RTSP/1.0\r\nCSeq: 1\r\n\r\n\
SETUP rtsp://h/live/out/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP;unicast;client_port=6000-6001\r\n\r\n\
PLAY rtsp://h/live/out RTSP/1.0\r\nCSeq: 3\r\n\r\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|_| unreachable!())
}

fuzz_target!(|data: &[u8]| {
    let [seed, rest @ ..] = data else {
        return;
    };
    let engine = Engine::with_defaults();
    let Ok(mut out_stream) =
        engine.publish(StreamKey::new("live", "out").unwrap_or_else(|_| unreachable!()))
    else {
        return;
    };
    if let Ok(avc) =
        AvcConfig::from_parameter_sets(vec![Bytes::from_static(SPS)], vec![Bytes::from_static(PPS)])
    {
        let frame = |flags, ms, payload: Bytes| Frame {
            codec: Codec::H264,
            flags,
            pts: ms,
            dts: ms,
            timebase: 1000,
            payload,
        };
        out_stream.send(frame(FrameFlags::CONFIG, 0, avc.to_bytes()));
        out_stream.send(frame(
            FrameFlags::KEYFRAME,
            0,
            Bytes::from_static(&[0, 0, 0, 3, 0x65, 1, 2]),
        ));
    }
    let udp_factory =
        RtspUdpServiceFactory::new(RtspUdpConfig::default().with_timeout(Duration::from_secs(2)));
    let mut now = Instant::from_millis(1);
    let mut udp = udp_factory.service(&[addr("0.0.0.0:8000"), addr("0.0.0.0:8001")], now);
    let factory = RtspSessionFactory::allow_all(engine.clone()).with_udp(udp_factory.handle());
    let mut publisher = factory.session(addr("10.0.0.9:40000"), now, 1);
    let mut viewer = factory.session(addr("10.0.0.1:40000"), now, 2);
    publisher.handle_input(now, PUBLISH);
    viewer.handle_input(now, PLAY);
    let mut sink = Vec::new();
    publisher.poll_transmit(&mut sink);
    viewer.poll_transmit(&mut sink);
    udp.handle_commands(now);
    let allowed = [
        addr("10.0.0.9:5001"),
        addr("10.0.0.1:6000"),
        addr("10.0.0.1:6001"),
    ];
    let sources = [
        addr("10.0.0.9:5000"),
        addr("10.0.0.9:5001"),
        addr("10.0.0.1:6000"),
        addr("10.0.0.1:6001"),
        addr("10.0.0.9:5002"),
        addr("10.0.0.1:1"),
        addr("10.6.6.6:5000"),
        addr("10.6.6.6:6001"),
    ];
    let mut seq = 0u16;
    for piece in split(rest, *seed) {
        let [sel, body @ ..] = piece else {
            continue;
        };
        let src = sources[usize::from(sel & 7)];
        let socket = SocketIndex(u16::from(sel >> 3 & 1));
        let contents = if sel & 0x10 != 0 {
            // A valid RTP header of the announced payload type around the bytes.
            seq = seq.wrapping_add(1);
            let mut b = BytesMut::with_capacity(12 + body.len());
            b.put_u8(0x80);
            b.put_u8(96 | (sel & 0x80));
            b.put_u16(seq);
            b.put_u32(u32::from(seq) * 3000);
            b.put_u32(7);
            b.put_slice(body);
            b.freeze()
        } else {
            Bytes::copy_from_slice(body)
        };
        now += Duration::from_millis(u64::from(sel >> 5 & 3) * 400);
        udp.handle_datagram(
            now,
            Received {
                socket,
                src,
                dst_ip: None,
                contents,
            },
        );
        if udp.poll_timeout().is_some_and(|t| t <= now) {
            udp.handle_timeout(now);
        }
        let mut signals = Vec::new();
        udp.media_signals(&mut signals);
        let all: Vec<usize> = (0..signals.len()).collect();
        udp.handle_media(now, &all);
        publisher.handle_timeout(now);
        viewer.handle_media(now);
        let mut n = 0usize;
        while let Some(t) = udp.poll_transmit() {
            assert!(
                allowed.contains(&t.destination),
                "datagram to {}",
                t.destination
            );
            n += 1;
            assert!(
                n <= arcly::rtsp::udp::MAX_QUEUED_TRANSMITS + 64,
                "unbounded send queue"
            );
        }
        assert!(udp.session_count() <= 2);
    }
});
