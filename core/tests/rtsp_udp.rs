//! RTSP over UDP driven directly (no sockets, simulated clock): the RTSP
//! control session (`RtspSession`) negotiates `RTP/AVP;unicast;client_port`
//! and hands the media to the one `RtspUdpService` on the RTP + RTCP socket
//! pair. What a viewer gets (an SR before each track's first RTP packet,
//! the stream's own packets: the same bytes for every viewer), the 60 s
//! style timeout, a UDP publish into the engine, strangers and junk
//! dropped and counted while the others carry on, per-IP bounds.

#![cfg(feature = "rtsp")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod rtsp_util;
use rtsp_util::*;

use std::net::SocketAddr;
use std::time::Duration;

use arcly::datagram::{DatagramService, Received, SocketIndex, Transmit};
use arcly::engine::Recv;
use arcly::rtp::rtcp::{parse_compound, RtcpPacket};
use arcly::rtp::RtpPacket;
use arcly::rtsp::message::{Decoder, Item, Response};
use arcly::rtsp::{RtspSessionFactory, RtspUdpConfig, RtspUdpService, RtspUdpServiceFactory};
use arcly::session::{CloseReason, StreamSession};
use arcly::{Codec, Engine, FrameFlags, Instant, StreamKey};
use bytes::Bytes;

const RTP: SocketIndex = SocketIndex(0);
const RTCP: SocketIndex = SocketIndex(1);

/// The server side: the RTSP session factory and the UDP service it steers.
struct Server {
    factory: RtspSessionFactory,
    udp_factory: RtspUdpServiceFactory,
    udp: RtspUdpService,
    now: Instant,
}

impl Server {
    fn new(engine: &Engine, config: RtspUdpConfig) -> Server {
        let udp_factory = RtspUdpServiceFactory::new(config);
        let now = Instant::from_millis(1);
        let udp = udp_factory.service(
            &[
                "0.0.0.0:8000".parse().unwrap(),
                "0.0.0.0:8001".parse().unwrap(),
            ],
            now,
        );
        Server {
            factory: RtspSessionFactory::allow_all(engine.clone()).with_udp(udp_factory.handle()),
            udp_factory,
            udp,
            now,
        }
    }

    /// Runs the service's commands and media and returns what it sends.
    fn step(&mut self) -> Vec<Transmit> {
        self.udp.handle_commands(self.now);
        let mut signals = Vec::new();
        self.udp.media_signals(&mut signals);
        let all: Vec<usize> = (0..signals.len()).collect();
        self.udp.handle_media(self.now, &all);
        if self.udp.poll_timeout().is_some_and(|t| t <= self.now) {
            self.udp.handle_timeout(self.now);
        }
        std::iter::from_fn(|| self.udp.poll_transmit()).collect()
    }

    fn advance(&mut self, d: Duration) -> Vec<Transmit> {
        let end = self.now + d;
        let mut out = Vec::new();
        while self.now < end {
            self.now = (self.now + Duration::from_millis(100)).min(end);
            self.udp.handle_timeout(self.now);
            out.extend(self.step());
        }
        out
    }

    fn datagram(&mut self, socket: SocketIndex, src: SocketAddr, data: Bytes) {
        self.udp.handle_datagram(
            self.now,
            Received {
                socket,
                src,
                dst_ip: None,
                contents: data,
            },
        );
    }
}

/// A control connection from `peer`.
struct Client {
    session: Box<dyn StreamSession>,
    decoder: Decoder,
    cseq: u32,
    id: Option<String>,
}

impl Client {
    fn new(server: &Server, peer: &str, seed: u64) -> Client {
        Client {
            session: Box::new(
                server
                    .factory
                    .session(peer.parse().unwrap(), server.now, seed),
            ),
            decoder: Decoder::new(),
            cseq: 0,
            id: None,
        }
    }

    fn request(
        &mut self,
        server: &Server,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        self.cseq += 1;
        let mut msg = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        if let Some(id) = &self.id {
            msg.push_str(&format!("Session: {id}\r\n"));
        }
        for (k, v) in headers {
            msg.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            msg.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        msg.push_str("\r\n");
        msg.push_str(body);
        self.session.handle_input(server.now, msg.as_bytes());
        let mut out = Vec::new();
        self.session.poll_transmit(&mut out);
        for b in out {
            self.decoder.extend(&b);
        }
        let mut resp = None;
        while let Some(i) = self.decoder.decode().unwrap() {
            match i {
                Item::Response(r) if resp.is_none() => resp = Some(r),
                Item::Interleaved { .. } => panic!("interleaved data on a UDP session"),
                _ => {}
            }
        }
        let r = resp.unwrap_or_else(|| panic!("no response to {method}"));
        if let Some(s) = r.headers.get("Session") {
            self.id = Some(s.split(';').next().unwrap().to_owned());
        }
        r
    }

    /// DESCRIBE + SETUP both tracks over UDP at `ports` + PLAY.
    fn play(&mut self, server: &mut Server, ports: u16) -> Response {
        let url = "rtsp://127.0.0.1:8554/live/cam";
        assert_eq!(self.request(server, "DESCRIBE", url, &[], "").status, 200);
        for (i, p) in [(0u16, ports), (1, ports + 2)] {
            let t = format!("RTP/AVP;unicast;client_port={p}-{}", p + 1);
            let s = self.request(
                server,
                "SETUP",
                &format!("{url}/trackID={i}"),
                &[("Transport", &t)],
                "",
            );
            assert_eq!(s.status, 200, "SETUP {i}");
            let tr = s.headers.get("Transport").unwrap();
            assert!(
                tr.contains(&format!("client_port={p}-{}", p + 1))
                    && tr.contains("server_port=8000-8001")
                    && tr.contains("ssrc="),
                "{tr}"
            );
        }
        self.request(server, "PLAY", url, &[], "")
    }
}

fn to(transmits: &[Transmit], dest: &str) -> Vec<Transmit> {
    let d: SocketAddr = dest.parse().unwrap();
    transmits
        .iter()
        .filter(|t| t.destination == d)
        .cloned()
        .collect()
}

#[test]
fn udp_viewers_get_an_sr_first_then_the_same_stream_packets_from_the_server_ports() {
    let engine = Engine::with_defaults();
    let mut publisher = publish(&engine);
    let mut server = Server::new(&engine, RtspUdpConfig::default());
    let mut a = Client::new(&server, "10.0.0.1:40000", 1);
    let mut b = Client::new(&server, "10.0.0.2:40000", 2);
    let pa = a.play(&mut server, 6000);
    let pb = b.play(&mut server, 7000);
    assert_eq!(pa.status, 200);
    let info = pa.headers.get("RTP-Info").unwrap().to_owned();
    assert_eq!(
        info,
        pb.headers.get("RTP-Info").unwrap(),
        "one stream, one RTP-Info"
    );
    let out = server.step();
    assert!(
        a.session.media_signal().is_some(),
        "the session waits on the service's answer"
    );

    for (ip, base) in [("10.0.0.1", 6000u16), ("10.0.0.2", 7000)] {
        for (track, port) in [(0usize, base), (1, base + 2)] {
            let rtp = to(&out, &format!("{ip}:{port}"));
            let rtcp = to(&out, &format!("{ip}:{}", port + 1));
            assert!(!rtp.is_empty(), "{ip} track {track}: no RTP");
            assert!(rtp.iter().all(|t| t.socket == RTP));
            assert!(rtcp.iter().all(|t| t.socket == RTCP));
            // The SR for this track is queued before its first RTP packet.
            let first_rtp = out
                .iter()
                .position(|t| t.destination == rtp[0].destination)
                .unwrap();
            let first_sr = out
                .iter()
                .position(|t| t.destination == rtcp[0].destination)
                .unwrap();
            assert!(first_sr < first_rtp, "{ip} track {track}: SR after RTP");
            let sr = parse_compound(&rtcp[0].to_bytes()).unwrap();
            let RtcpPacket::SenderReport(sr) = &sr[0] else {
                panic!("{sr:?}")
            };
            let pkt = RtpPacket::parse(&rtp[0].to_bytes()).unwrap();
            assert_eq!(sr.ssrc, pkt.ssrc);
            assert_eq!(
                sr.rtp_time, pkt.timestamp,
                "SR maps the first packet's time"
            );
            assert!(
                info.contains(&format!(
                    "trackID={track};seq={};rtptime={}",
                    pkt.sequence, pkt.timestamp
                )),
                "RTP-Info {info} does not name the first packet {}/{}",
                pkt.sequence,
                pkt.timestamp
            );
        }
    }
    // Every viewer gets the very same packets (built once per stream).
    let va: Vec<Bytes> = to(&out, "10.0.0.1:6000")
        .iter()
        .map(Transmit::to_bytes)
        .collect();
    let vb: Vec<Bytes> = to(&out, "10.0.0.2:7000")
        .iter()
        .map(Transmit::to_bytes)
        .collect();
    assert_eq!(va, vb);
    let seqs: Vec<u16> = va
        .iter()
        .map(|p| RtpPacket::parse(p).unwrap().sequence)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "{seqs:?}"
    );

    // A live frame reaches both.
    publisher.send(frame(Codec::H264, FrameFlags::NONE, 200, avc_unit(1, 500)));
    let out = server.step();
    let next_a = to(&out, "10.0.0.1:6000");
    assert_eq!(next_a.len(), 1);
    assert_eq!(
        next_a[0].to_bytes(),
        to(&out, "10.0.0.2:7000")[0].to_bytes()
    );
    assert_eq!(
        RtpPacket::parse(&next_a[0].to_bytes()).unwrap().sequence,
        seqs.last().unwrap().wrapping_add(1)
    );

    // TEARDOWN: nothing more to that viewer; the other goes on.
    assert_eq!(
        a.request(
            &server,
            "TEARDOWN",
            "rtsp://127.0.0.1:8554/live/cam",
            &[],
            ""
        )
        .status,
        200
    );
    publisher.send(frame(Codec::H264, FrameFlags::NONE, 240, avc_unit(1, 500)));
    let out = server.step();
    assert!(
        to(&out, "10.0.0.1:6000").is_empty(),
        "sent to a viewer that tore down"
    );
    assert_eq!(to(&out, "10.0.0.2:7000").len(), 1);
    assert_eq!(server.udp.session_count(), 1);

    // The control connection closing ends the UDP side too.
    b.session.handle_input(server.now, b"");
    server.step();
    assert_eq!(server.udp.session_count(), 0);
    drop(publisher);
}

#[test]
fn a_vanished_viewer_is_dropped_at_the_timeout_and_a_reporting_one_stays() {
    let engine = Engine::with_defaults();
    let mut publisher = publish(&engine);
    let config = RtspUdpConfig::default().with_timeout(Duration::from_secs(5));
    let mut server = Server::new(&engine, config);
    let mut alive = Client::new(&server, "10.0.0.1:40000", 1);
    let mut gone = Client::new(&server, "10.0.0.2:40000", 2);
    alive.play(&mut server, 6000);
    gone.play(&mut server, 7000);
    server.step();
    assert_eq!(server.udp.session_count(), 2);
    let rr = {
        let mut b = bytes::BytesMut::new();
        arcly::rtp::rtcp::write_receiver_report(&mut b, 77);
        b.freeze()
    };
    let mut gone_at = None;
    for s in 0..8 {
        server.datagram(RTCP, "10.0.0.1:6001".parse().unwrap(), rr.clone());
        server.advance(Duration::from_secs(1));
        gone.session.handle_media(server.now);
        alive.session.handle_media(server.now);
        if gone_at.is_none() && gone.session.close_reason().is_some() {
            gone_at = Some(s + 1);
        }
    }
    // Dropped at the timeout (5 s, checked every 1 s), not before.
    assert!(
        matches!(gone_at, Some(5..=6)),
        "dropped after {gone_at:?} s"
    );
    assert_eq!(gone.session.close_reason(), Some(&CloseReason::IdleTimeout));
    assert_eq!(
        alive.session.close_reason(),
        None,
        "the reporting viewer was dropped"
    );
    assert_eq!(server.udp.session_count(), 1);
    publisher.send(frame(Codec::H264, FrameFlags::NONE, 200, avc_unit(1, 500)));
    let out = server.step();
    assert_eq!(to(&out, "10.0.0.1:6000").len(), 1);
    assert!(to(&out, "10.0.0.2:7000").is_empty());
}

const SDP: &str = "v=0\r\ns=x\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAHqzZQKAv+XARAAADAAEAAAMAMg8WLZY=,aOvjyyLA\r\na=control:streamid=0\r\n";

fn picture(i: u16, key: bool) -> Bytes {
    let nal = if key {
        vec![0x65u8, 1, 2, 3]
    } else {
        vec![0x41, 4]
    };
    RtpPacket {
        marker: true,
        payload_type: 96,
        sequence: 100 + i,
        timestamp: 9000 + 3600 * u32::from(i),
        ssrc: 3,
        payload: Bytes::from(nal),
    }
    .to_bytes()
}

#[test]
fn udp_publish_reaches_the_engine_only_from_the_clients_port_and_junk_is_counted() {
    let engine = Engine::with_defaults();
    let mut server = Server::new(&engine, RtspUdpConfig::default());
    let mut c = Client::new(&server, "10.0.0.9:40000", 3);
    let url = "rtsp://127.0.0.1:8554/live/pub";
    assert_eq!(
        c.request(
            &server,
            "ANNOUNCE",
            url,
            &[("Content-Type", "application/sdp")],
            SDP
        )
        .status,
        200
    );
    let s = c.request(
        &server,
        "SETUP",
        &format!("{url}/streamid=0"),
        // Multicast is skipped, the UDP unicast alternative taken.
        &[("Transport", "RTP/AVP;multicast;port=9000-9001,RTP/AVP/UDP;unicast;client_port=5000-5001;mode=RECORD")],
        "",
    );
    assert_eq!(s.status, 200);
    let t = s.headers.get("Transport").unwrap();
    assert!(
        t.starts_with("RTP/AVP;unicast;client_port=5000-5001;server_port=8000-8001"),
        "{t}"
    );
    assert_eq!(c.request(&server, "RECORD", url, &[], "").status, 200);
    assert!(c
        .session
        .poll_timeout()
        .map_or(true, |t| t > server.now + Duration::from_secs(30)));
    let out = server.step();
    assert!(
        to(&out, "10.0.0.9:5001").iter().any(|t| matches!(
            parse_compound(&t.to_bytes()).unwrap()[0],
            RtcpPacket::ReceiverReport { .. }
        )),
        "no receiver report to the publisher"
    );
    let mut sub = engine
        .subscribe(&StreamKey::new("live", "pub").unwrap())
        .unwrap();
    let good: SocketAddr = "10.0.0.9:5000".parse().unwrap();
    let junk_before = server.udp_factory.dropped_datagrams();
    for i in 0..3u16 {
        server.datagram(RTP, good, picture(i, i == 0));
        // The same packet from another port of that host, or another host: dropped.
        server.datagram(RTP, "10.0.0.9:5002".parse().unwrap(), picture(i, false));
        server.datagram(RTP, "10.6.6.6:5000".parse().unwrap(), picture(i, false));
    }
    for n in 0..10_000u32 {
        server.datagram(
            if n % 2 == 0 { RTP } else { RTCP },
            SocketAddr::from(([10, 6, 6, (n % 200) as u8], 1000 + n as u16)),
            Bytes::from(n.to_be_bytes().to_vec()),
        );
    }
    assert_eq!(
        server.udp_factory.dropped_datagrams() - junk_before,
        6 + 10_000
    );
    server.datagram(RTP, good, picture(3, false));
    let mut got = Vec::new();
    while let Recv::Frame(f) = sub.recv() {
        got.push(f.frame.clone());
    }
    assert!(got[0].is_config(), "{got:?}");
    assert!(got[1].is_keyframe());
    assert_eq!(
        got.len(),
        5,
        "config + the 4 pictures from the client's port: {got:?}"
    );
    assert_eq!(got[2].pts - got[1].pts, 3600);
    // TEARDOWN frees the stream for the next publisher.
    assert_eq!(c.request(&server, "TEARDOWN", url, &[], "").status, 200);
    server.step();
    assert_eq!(server.udp.session_count(), 0);
    assert!(engine
        .publish(StreamKey::new("live", "pub").unwrap())
        .is_ok());
}

#[test]
fn udp_sessions_are_bounded_per_ip_and_transport_alternatives_fall_back() {
    let engine = Engine::with_defaults();
    let _p = publish(&engine);
    let config = RtspUdpConfig::default().with_max_sessions_per_ip(2);
    let server = Server::new(&engine, config);
    let mut clients: Vec<Client> = (0..3)
        .map(|i| Client::new(&server, "10.0.0.1:40000", i))
        .collect();
    let url = "rtsp://127.0.0.1:8554/live/cam/trackID=0";
    let udp = [("Transport", "RTP/AVP;unicast;client_port=6000-6001")];
    assert_eq!(
        clients[0].request(&server, "SETUP", url, &udp, "").status,
        200
    );
    assert_eq!(
        clients[1].request(&server, "SETUP", url, &udp, "").status,
        200
    );
    assert_eq!(
        clients[2].request(&server, "SETUP", url, &udp, "").status,
        453,
        "third UDP session from one IP"
    );
    // Another IP is not affected; TCP from the full IP still works.
    let mut other = Client::new(&server, "10.0.0.2:40000", 9);
    assert_eq!(other.request(&server, "SETUP", url, &udp, "").status, 200);
    let tcp = [("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")];
    assert_eq!(
        clients[2].request(&server, "SETUP", url, &tcp, "").status,
        200
    );
    // A closed connection gives its place back.
    clients[0].session.handle_input(server.now, b"");
    drop(clients.remove(0));
    let mut again = Client::new(&server, "10.0.0.1:40000", 7);
    assert_eq!(again.request(&server, "SETUP", url, &udp, "").status, 200);
    // Nothing supported: 461; the first supported alternative wins.
    let mut d = Client::new(&server, "10.0.0.3:40000", 8);
    let none = [(
        "Transport",
        "RTP/AVP;multicast,RAW/RAW/UDP;unicast;client_port=1-2",
    )];
    assert_eq!(d.request(&server, "SETUP", url, &none, "").status, 461);
    let both = [(
        "Transport",
        "RTP/AVP/TCP;unicast;interleaved=4-5,RTP/AVP;unicast;client_port=6000-6001",
    )];
    let r = d.request(&server, "SETUP", url, &both, "");
    assert!(r
        .headers
        .get("Transport")
        .unwrap()
        .contains("interleaved=4-5"));
}

#[test]
fn client_port_zero_is_learned_from_the_first_datagram_of_that_ip() {
    let engine = Engine::with_defaults();
    let _p = publish(&engine);
    let mut server = Server::new(&engine, RtspUdpConfig::default());
    let mut c = Client::new(&server, "10.0.0.5:40000", 1);
    let url = "rtsp://127.0.0.1:8554/live/cam";
    c.request(&server, "DESCRIBE", url, &[], "");
    let t = [("Transport", "RTP/AVP;unicast;client_port=0-0")];
    assert_eq!(
        c.request(&server, "SETUP", &format!("{url}/trackID=0"), &t, "")
            .status,
        200
    );
    assert_eq!(c.request(&server, "PLAY", url, &[], "").status, 200);
    let out = server.step();
    assert!(
        out.iter().all(|t| t.destination.port() != 0),
        "sent to port 0"
    );
    // A stranger's datagram teaches nothing; the client's own punch does.
    server.datagram(
        RTP,
        "10.9.9.9:5555".parse().unwrap(),
        Bytes::from_static(b"x"),
    );
    server.datagram(
        RTP,
        "10.0.0.5:5555".parse().unwrap(),
        Bytes::from_static(b"punch"),
    );
    server.datagram(
        RTCP,
        "10.0.0.5:5556".parse().unwrap(),
        Bytes::from_static(b"punch"),
    );
    let _p2 = _p;
    let mut p = _p2;
    p.send(frame(Codec::H264, FrameFlags::NONE, 200, avc_unit(1, 500)));
    let out = server.step();
    assert_eq!(to(&out, "10.0.0.5:5555").len(), 1, "{out:?}");
    assert!(to(&out, "10.9.9.9:5555").is_empty());
}

/// ffmpeg's NAT punch packets (an empty RTP packet, an RTCP receiver
/// report) from its client ports right after SETUP, before PLAY, are
/// expected: not counted as junk (no warning). The same from another port
/// of that host, or after the control connection is gone, still is.
#[test]
fn punch_packets_from_set_up_client_ports_before_play_are_not_junk() {
    let engine = Engine::with_defaults();
    let _p = publish(&engine);
    let mut server = Server::new(&engine, RtspUdpConfig::default());
    let mut c = Client::new(&server, "10.0.0.7:40000", 1);
    let url = "rtsp://127.0.0.1:8554/live/cam";
    assert_eq!(c.request(&server, "DESCRIBE", url, &[], "").status, 200);
    for (i, p) in [(0u16, 6000u16), (1, 6002)] {
        let t = format!("RTP/AVP;unicast;client_port={p}-{}", p + 1);
        let s = c.request(
            &server,
            "SETUP",
            &format!("{url}/trackID={i}"),
            &[("Transport", &t)],
            "",
        );
        assert_eq!(s.status, 200);
    }
    server.step();
    assert_eq!(server.udp.session_count(), 0, "no media before PLAY");
    let empty_rtp = Bytes::from_static(&[0x80, 0x60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let rr = {
        let mut b = bytes::BytesMut::new();
        arcly::rtp::rtcp::write_receiver_report(&mut b, 77);
        b.freeze()
    };
    let punch = |server: &mut Server, host: &str, base: u16| {
        for track in [0u16, 2] {
            let ip: std::net::IpAddr = host.parse().unwrap();
            server.datagram(RTP, SocketAddr::new(ip, base + track), empty_rtp.clone());
            server.datagram(RTCP, SocketAddr::new(ip, base + track + 1), rr.clone());
        }
    };
    let before = server.udp_factory.dropped_datagrams();
    punch(&mut server, "10.0.0.7", 6000);
    assert_eq!(
        server.udp_factory.dropped_datagrams(),
        before,
        "punch packets from the set-up client ports were counted as junk"
    );
    // The RTP port's packet at the RTCP socket is not from a set-up port.
    server.datagram(RTCP, "10.0.0.7:6000".parse().unwrap(), rr.clone());
    // Another port of the same host, another host: junk.
    punch(&mut server, "10.0.0.7", 7000);
    punch(&mut server, "10.0.0.8", 6000);
    assert_eq!(server.udp_factory.dropped_datagrams(), before + 1 + 8);
    // PLAY works as before; the client's reports stay quiet.
    assert_eq!(c.request(&server, "PLAY", url, &[], "").status, 200);
    server.step();
    assert_eq!(server.udp.session_count(), 1);
    punch(&mut server, "10.0.0.7", 6000);
    assert_eq!(server.udp_factory.dropped_datagrams(), before + 9);
    // The control connection gone: its ports are strangers again.
    drop(c);
    server.step();
    assert_eq!(server.udp.session_count(), 0);
    punch(&mut server, "10.0.0.7", 6000);
    assert_eq!(server.udp_factory.dropped_datagrams(), before + 9 + 4);
}
