//! SRT engine glue (`arcly::srt::service`) on a simulated clock: test-side
//! SRT callers (hand-crafted induction/conclusion, then the `Connection`
//! machine) exchange datagrams with an `SrtService` through simulated links
//! (delay, seeded loss). Checks: MPEG-TS published over SRT arrives in the
//! engine frame for frame; viewers receive TS that demuxes back into the
//! published frames (PAT/PMT, config and keyframe first); viewers share the
//! same TS memory; reject codes; end of stream; lossy links; garbage
//! publishers; local shutdown; send-buffer back-pressure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arcly::admission::{
    from_fn, Admission, AdmissionHandle, AdmissionRequest, Decision, PendingAdmission, Rejection,
};
use arcly::codec::aac::AacConfig;
use arcly::codec::h264::AvcConfig;
use arcly::container::ts::{TsDemuxer, TsMuxer, PACKET_SIZE};
use arcly::datagram::{DatagramService, DatagramServiceFactory, Received};
use arcly::engine::{Recv, Subscriber};
use arcly::srt::connection::{Connection, ConnectionConfig};
use arcly::srt::endpoint::EndpointConfig;
use arcly::srt::handshake::{ext_flags, HandshakeType, RejectReason, SRT_MAGIC};
use arcly::srt::service::{SrtService, SrtServiceConfig, SrtServiceFactory, PAYLOAD_SIZE};
use arcly::srt::{
    Cipher, Control, ControlPacket, Handshake, HsExtension, Packet, SeqNo, SocketId, SrtFlags,
    SrtHsExt,
};
use arcly::{Codec, Engine, Frame, FrameFlags, Instant, StreamKey};
use bytes::Bytes;
use common::frame_90k as frame;

const SPS_H264: &[u8] = &[
    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
    0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
];
const PPS_H264: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

const T0: Instant = Instant::from_millis(3_600_000);
const TICK: Duration = Duration::from_millis(1);

fn server_addr() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 8890))
}

fn peer_addr(n: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 2], 40000 + n))
}

// ---------------------------------------------------------------- media

fn video_config() -> Frame {
    let c = AvcConfig::from_parameter_sets(
        vec![Bytes::from_static(SPS_H264)],
        vec![Bytes::from_static(PPS_H264)],
    )
    .unwrap();
    frame(Codec::H264, FrameFlags::CONFIG, 0, 0, c.to_bytes())
}

fn audio_config() -> Frame {
    frame(
        Codec::Aac,
        FrameFlags::CONFIG,
        0,
        0,
        AacConfig::new(2, 48_000, 2).to_bytes(),
    )
}

/// One H.264 access unit of `len` body bytes (no zero bytes: no emulation).
fn video_frame(i: u64, key: bool, dts: i64, len: usize) -> Frame {
    let mut p = Vec::with_capacity(len + 5);
    p.extend_from_slice(&((len + 1) as u32).to_be_bytes());
    p.push(if key { 0x65 } else { 0x41 });
    p.extend((0..len).map(|k| 1 + ((k as u64 + i * 7) % 250) as u8));
    frame(
        Codec::H264,
        common::key_flags(key),
        dts + 3000,
        dts,
        Bytes::from(p),
    )
}

fn audio_frame(i: u64, t: i64) -> Frame {
    let p: Vec<u8> = (0..200).map(|k| 1 + ((k + i * 3) % 250) as u8).collect();
    frame(Codec::Aac, FrameFlags::KEYFRAME, t, t, Bytes::from(p))
}

/// `secs` seconds of H.264 (25 fps, GOP 25, first ~6 KB keyframes) and AAC
/// (48 kHz, 1024 samples), configs first, in dts order, each with the
/// millisecond (from the start) at which a live source would emit it.
fn av_stream(secs: u64, audio: bool, video: bool) -> Vec<(u64, Frame)> {
    let mut out = Vec::new();
    if video {
        out.push((0, video_config()));
    }
    if audio {
        out.push((0, audio_config()));
    }
    let mut media = Vec::new();
    if video {
        for i in 0..secs * 25 {
            let key = i % 25 == 0;
            let dts = 90_000 + i as i64 * 3600;
            media.push((
                i * 40,
                video_frame(i, key, dts, if key { 6000 } else { 1500 }),
            ));
        }
    }
    if audio {
        for i in 0..secs * 48_000 / 1024 {
            let t = 90_000 + (i as i64 * 1024 * 90_000) / 48_000;
            media.push(((i * 1024 * 1000) / 48_000, audio_frame(i, t)));
        }
    }
    media.sort_by_key(|(ms, f)| (*ms, f.dts));
    out.extend(media);
    out
}

/// TS payloads of 7 packets (1316 bytes, ffmpeg's `pkt_size`), each with
/// the millisecond at which its last byte was produced.
fn ts_payloads(stream: &[(u64, Frame)]) -> Vec<(u64, Bytes)> {
    let mut m = TsMuxer::new(Some(Codec::H264), Some(Codec::Aac)).unwrap();
    let mut pending: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for (ms, f) in stream {
        pending.extend_from_slice(&m.mux(f).unwrap());
        while pending.len() >= PAYLOAD_SIZE {
            let rest = pending.split_off(PAYLOAD_SIZE);
            out.push((*ms, Bytes::from(std::mem::replace(&mut pending, rest))));
        }
    }
    if !pending.is_empty() {
        let ms = stream.last().map_or(0, |x| x.0);
        out.push((ms, Bytes::from(pending)));
    }
    out
}

fn demux_all(chunks: &[Bytes]) -> (Vec<Frame>, TsDemuxer) {
    common::demux_chunks(chunks.iter().map(|c| c.as_ref()))
}

/// Media frames compare exactly; configs by payload (the demuxer gives
/// them the timestamps of the next access unit).
fn assert_same_frames(got: &[Frame], want: &[Frame]) {
    let media =
        |v: &[Frame]| -> Vec<Frame> { v.iter().filter(|f| !f.is_config()).cloned().collect() };
    let (g, w) = (media(got), media(want));
    assert_eq!(g.len(), w.len(), "media frame count");
    for (i, (g, w)) in g.iter().zip(&w).enumerate() {
        assert_eq!(g, w, "media frame #{i}");
    }
    let configs = |v: &[Frame]| -> Vec<Bytes> {
        let mut c: Vec<Bytes> = v
            .iter()
            .filter(|f| f.is_config())
            .map(|f| f.payload.clone())
            .collect();
        c.dedup();
        c
    };
    let (gc, wc) = (configs(got), configs(want));
    for c in &wc {
        assert!(gc.contains(c), "config {c:?} missing");
    }
}

fn drain(sub: &mut Subscriber) -> (Vec<Frame>, bool) {
    let mut v = Vec::new();
    loop {
        match sub.recv() {
            Recv::Frame(e) => v.push(e.frame.clone()),
            Recv::Empty => return (v, false),
            Recv::End => return (v, true),
        }
    }
}

// ---------------------------------------------------------------- network

struct Link {
    delay: Duration,
    loss_per_mille: u64,
    rng: u64,
    queue: VecDeque<(Instant, SocketAddr, SocketAddr, Bytes)>,
    lost: u64,
}

impl Link {
    fn new(seed: u64) -> Self {
        Link {
            delay: Duration::from_millis(5),
            loss_per_mille: 0,
            rng: seed | 1,
            queue: VecDeque::new(),
            lost: 0,
        }
    }

    fn roll(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % 1000
    }

    /// Handshakes are never lost (the test callers do not retry them).
    fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, d: Bytes) {
        let handshake = d.len() >= 4 && d[0] & 0x80 != 0 && d[1] == 0 && d[3] == 0;
        if !handshake && self.roll() < self.loss_per_mille {
            self.lost += 1;
            return;
        }
        self.queue.push_back((now + self.delay, from, to, d));
    }

    fn recv(&mut self, now: Instant) -> Option<(SocketAddr, SocketAddr, Bytes)> {
        if self.queue.front()?.0 <= now {
            self.queue.pop_front().map(|(_, f, t, d)| (f, t, d))
        } else {
            None
        }
    }
}

#[derive(Debug)]
enum PeerState {
    Inducting,
    Concluding,
    Connected(Box<Connection>),
    Rejected(RejectReason),
}

/// A test-side SRT caller.
struct Peer {
    addr: SocketAddr,
    sock: SocketId,
    isn: SeqNo,
    stream_id: String,
    flow_window: u32,
    state: PeerState,
    server_sock: SocketId,
    /// Payloads delivered by TSBPD, with the instant.
    delivered: Vec<(Instant, Bytes)>,
    /// Media to send: (due, payload).
    outbox: VecDeque<(Instant, Bytes)>,
    /// Drop everything this caller sends (its ACKs stop reaching the server).
    mute: bool,
    /// Send only KEEPALIVEs (no ACK, NAK or ACKACK) once connected.
    keepalive_only: bool,
    /// The conclusion to send on the next tick.
    pending_handshake: Option<Bytes>,
}

impl Peer {
    fn new(n: u16, stream_id: &str) -> Self {
        Peer {
            addr: peer_addr(n),
            sock: SocketId(0x1000 + u32::from(n)),
            isn: SeqNo::new(1000 * u32::from(n) + 17),
            stream_id: stream_id.to_owned(),
            flow_window: 8192,
            state: PeerState::Inducting,
            server_sock: SocketId(0),
            delivered: Vec::new(),
            outbox: VecDeque::new(),
            mute: false,
            keepalive_only: false,
            pending_handshake: None,
        }
    }

    fn handshake(&self, hs_type: HandshakeType, cookie: u32) -> Bytes {
        let conclusion = hs_type == HandshakeType::Conclusion;
        let hs = Handshake {
            version: if conclusion { 5 } else { 4 },
            encryption: Cipher::None,
            extension_field: if conclusion {
                ext_flags::HSREQ | ext_flags::CONFIG
            } else {
                2
            },
            initial_seq: self.isn,
            mtu: 1500,
            flow_window: self.flow_window,
            hs_type,
            socket_id: self.sock,
            syn_cookie: cookie,
            peer_ip: [0; 16],
            extensions: if conclusion {
                vec![
                    HsExtension::HsReq(SrtHsExt {
                        version: 0x0001_0501,
                        flags: SrtFlags(
                            SrtFlags::TSBPDSND
                                | SrtFlags::TSBPDRCV
                                | SrtFlags::CRYPT
                                | SrtFlags::TLPKTDROP
                                | SrtFlags::PERIODICNAK
                                | SrtFlags::REXMITFLG,
                        ),
                        recv_latency_ms: 120,
                        send_latency_ms: 120,
                    }),
                    HsExtension::StreamId(self.stream_id.clone()),
                ]
            } else {
                Vec::new()
            },
        };
        Packet::Control(ControlPacket {
            timestamp: arcly::srt::Timestamp(0),
            dest: SocketId(0),
            body: Control::Handshake(hs),
        })
        .to_bytes()
    }

    fn conn(&mut self) -> Option<&mut Connection> {
        match &mut self.state {
            PeerState::Connected(c) => Some(c),
            _ => None,
        }
    }

    fn is_connected(&self) -> bool {
        matches!(self.state, PeerState::Connected(_))
    }

    fn on_datagram(&mut self, now: Instant, d: &Bytes) {
        let Ok(p) = Packet::decode(d) else {
            panic!("service sent an undecodable datagram");
        };
        if let Packet::Control(ControlPacket {
            body: Control::Handshake(h),
            ..
        }) = &p
        {
            match (&self.state, h.hs_type) {
                (PeerState::Inducting, HandshakeType::Induction) => {
                    assert_eq!(h.extension_field, SRT_MAGIC);
                    self.state = PeerState::Concluding;
                    self.pending_handshake =
                        Some(self.handshake(HandshakeType::Conclusion, h.syn_cookie));
                }
                (PeerState::Concluding, HandshakeType::Conclusion) => {
                    let lat = h.hs_rsp().map_or(120, |r| r.recv_latency_ms);
                    self.server_sock = h.socket_id;
                    self.state =
                        PeerState::Connected(Box::new(Connection::new(ConnectionConfig {
                            peer_socket: h.socket_id,
                            send_isn: self.isn,
                            recv_isn: self.isn,
                            latency: Duration::from_millis(u64::from(lat)),
                            // The announced flow window limits the server's
                            // sender; the receive buffer is sized apart, as in
                            // libsrt (SRTO_RCVBUF vs SRTO_FC).
                            flow_window: 8192,
                            recv_buffer: 8192,
                            start: now,
                        })));
                }
                (PeerState::Concluding, HandshakeType::Rejection(r)) => {
                    self.state = PeerState::Rejected(r);
                }
                _ => {}
            }
            return;
        }
        if let PeerState::Connected(c) = &mut self.state {
            c.handle_packet(now, p);
        }
    }
}

/// The service, its peers and the links between them.
struct Sim {
    svc: SrtService,
    peers: Vec<Peer>,
    up: Link,
    down: Link,
    now: Instant,
    /// Data payload pointers (and lengths) sent to each peer address, in order.
    sent_payloads: HashMap<SocketAddr, Vec<(usize, usize)>>,
    /// Wall time spent inside the service's calls.
    svc_time: Duration,
    /// Datagrams the service sent.
    svc_datagrams: u64,
    /// The driver's media bookkeeping.
    media_version: Option<u64>,
    signals: Vec<arcly::engine::Signal>,
    armed: arcly::engine::SignalSet,
    fired: Vec<usize>,
}

fn factory(
    engine: &Engine,
    latency_ms: u16,
    admission: Option<Arc<dyn Admission>>,
) -> SrtServiceFactory {
    let config =
        SrtServiceConfig::with_endpoint(EndpointConfig::default().with_latency_ms(latency_ms));
    match admission {
        Some(a) => SrtServiceFactory::new(engine.clone(), config, a),
        None => SrtServiceFactory::allow_all(engine.clone(), config),
    }
}

impl Sim {
    fn new(engine: &Engine, seed: u64) -> Self {
        Self::with_factory(&factory(engine, 120, None), seed)
    }

    fn with_factory(f: &SrtServiceFactory, seed: u64) -> Self {
        Sim {
            svc: f.service(server_addr(), T0, seed),
            peers: Vec::new(),
            up: Link::new(seed ^ 0xABCD),
            down: Link::new(seed.rotate_left(29) ^ 0x1234),
            now: T0,
            sent_payloads: HashMap::new(),
            svc_time: Duration::ZERO,
            svc_datagrams: 0,
            media_version: None,
            signals: Vec::new(),
            armed: arcly::engine::SignalSet::new(),
            fired: Vec::new(),
        }
    }

    /// Adds a caller and starts its handshake; returns its index.
    fn connect(&mut self, mut p: Peer) -> usize {
        let ind = p.handshake(HandshakeType::Induction, 0);
        self.up.send(self.now, p.addr, server_addr(), ind);
        p.pending_handshake = None;
        self.peers.push(p);
        self.peers.len() - 1
    }

    /// Runs one millisecond.
    fn tick(&mut self) {
        let now = self.now;
        // Callers: timers, media, packets.
        for p in &mut self.peers {
            if let Some(h) = p.pending_handshake.take() {
                self.up.send(now, p.addr, server_addr(), h);
            }
            let addr = p.addr;
            let mut out = Vec::new();
            while p.outbox.front().is_some_and(|(t, _)| *t <= now) && p.is_connected() {
                let (_, b) = p.outbox.pop_front().unwrap();
                p.conn().unwrap().send(now, b).unwrap();
            }
            let keepalive_only = p.keepalive_only;
            if let Some(c) = p.conn() {
                c.handle_timeout(now);
                while let Some(pk) = c.poll_packet(now) {
                    let keepalive = matches!(
                        &pk,
                        Packet::Control(ControlPacket {
                            body: Control::KeepAlive,
                            ..
                        })
                    );
                    if keepalive || !keepalive_only {
                        out.push(pk.to_bytes());
                    }
                }
            }
            // Its own KEEPALIVE every second (the machine sends one only
            // when it sent nothing else, and its ACKs are filtered out).
            if keepalive_only && p.is_connected() && now.as_micros() % 1_000_000 == 0 {
                let ka = Packet::Control(ControlPacket {
                    timestamp: arcly::srt::Timestamp(0),
                    dest: p.server_sock,
                    body: Control::KeepAlive,
                });
                out.push(ka.to_bytes());
            }
            if !p.mute {
                for d in out {
                    self.up.send(now, addr, server_addr(), d);
                }
            }
            if let Some(c) = p.conn() {
                let mut got = Vec::new();
                while let Some(d) = c.poll_delivered(now) {
                    got.push((now, d.payload));
                }
                p.delivered.extend(got);
            }
        }
        let t = std::time::Instant::now();
        while let Some((from, _, d)) = self.up.recv(now) {
            self.svc.handle_datagram(now, Received::new(from, d));
        }
        if self.svc.poll_timeout().is_some_and(|t| t <= now) {
            self.svc.handle_timeout(now);
        }
        // As the driver does: every stream after the list changed, else
        // the ones whose signal moved.
        let version = self.svc.media_version();
        self.fired.clear();
        if self.media_version != Some(version) {
            self.media_version = Some(version);
            self.signals.clear();
            self.svc.media_signals(&mut self.signals);
            self.armed.arm(&self.signals);
            self.fired.extend(0..self.signals.len());
        } else {
            self.armed.take_fired(&mut self.fired);
        }
        if !self.fired.is_empty() {
            self.svc.handle_media(now, &self.fired);
        }
        self.svc_time += t.elapsed();
        self.flush_service();
        while let Some((_, to, d)) = self.down.recv(now) {
            if let Some(p) = self.peers.iter_mut().find(|p| p.addr == to) {
                p.on_datagram(now, &d);
            }
        }
        self.now = now + TICK;
    }

    fn flush_service(&mut self) {
        loop {
            let t0 = std::time::Instant::now();
            let t = self.svc.poll_transmit();
            self.svc_time += t0.elapsed();
            let Some(t) = t else {
                break;
            };
            self.svc_datagrams += 1;
            if t.contents.len() == 2 {
                let pl = &t.contents[1];
                self.sent_payloads
                    .entry(t.destination)
                    .or_default()
                    .push((pl.as_ptr() as usize, pl.len()));
            }
            self.down
                .send(self.now, server_addr(), t.destination, t.to_bytes());
        }
    }

    fn run_ms(&mut self, ms: u64) {
        for _ in 0..ms {
            self.tick();
        }
    }

    fn run_until(&mut self, max_ms: u64, mut done: impl FnMut(&Sim) -> bool) -> bool {
        for _ in 0..max_ms {
            if done(self) {
                return true;
            }
            self.tick();
        }
        done(self)
    }
}

// ---------------------------------------------------------------- helpers

fn key() -> StreamKey {
    StreamKey::parse("live/cam").unwrap()
}

fn frames_of(stream: &[(u64, Frame)]) -> Vec<Frame> {
    stream.iter().map(|(_, f)| f.clone()).collect()
}

/// Whether `b` starts with a TS packet on PID 0 (PAT).
fn starts_with_pat(b: &[u8]) -> bool {
    b.len() >= PACKET_SIZE && b[0] == 0x47 && (u16::from(b[1] & 0x1F) << 8 | u16::from(b[2])) == 0
}

fn rejection(sim: &Sim, i: usize) -> Option<RejectReason> {
    match sim.peers[i].state {
        PeerState::Rejected(r) => Some(r),
        _ => None,
    }
}

fn delivered(sim: &Sim, i: usize) -> Vec<Bytes> {
    sim.peers[i]
        .delivered
        .iter()
        .map(|(_, b)| b.clone())
        .collect()
}

/// Publishes `stream` from an engine publisher in simulated real time,
/// running the simulation; calls `at` with the elapsed ms before each tick.
fn play_out(
    sim: &mut Sim,
    publ: &mut arcly::engine::Publisher,
    stream: &[(u64, Frame)],
    mut at: impl FnMut(&mut Sim, u64),
) {
    let start = sim.now;
    let mut next = 0;
    let end = stream.last().map_or(0, |x| x.0);
    for ms in 0..=end {
        at(sim, ms);
        while next < stream.len() && stream[next].0 <= ms {
            publ.send(stream[next].1.clone());
            next += 1;
        }
        sim.tick();
        debug_assert_eq!(sim.now, start + Duration::from_millis(ms + 1));
    }
}

// ---------------------------------------------------------------- tests

#[test]
fn published_ts_arrives_in_the_engine_frame_for_frame() {
    let engine = Engine::with_defaults();
    let mut sim = Sim::new(&engine, 1);
    let i = sim.connect(Peer::new(1, "publish:live/cam"));
    assert!(sim.run_until(100, |s| s.peers[i].is_connected()));
    assert_eq!(sim.svc.publishing_count(), 1);
    let mut sub = engine.subscribe(&key()).unwrap();

    let stream = av_stream(3, true, true);
    let start = sim.now;
    for (ms, b) in ts_payloads(&stream) {
        sim.peers[i]
            .outbox
            .push_back((start + Duration::from_millis(ms), b));
    }
    let mut got = Vec::new();
    let mut first_at = None;
    assert!(sim.run_until(10_000, |s| s.peers[i].outbox.is_empty()));
    // Frames reach the engine TSBPD-paced: the first one about one latency
    // after it was sent.
    for _ in 0..400 {
        let (f, _) = drain(&mut sub);
        if first_at.is_none() && !f.is_empty() {
            first_at = Some(sim.now);
        }
        got.extend(f);
        sim.tick();
    }
    sim.peers[i].conn().unwrap().close(sim.now);
    sim.run_ms(50);
    let (rest, ended) = drain(&mut sub);
    got.extend(rest);
    assert!(ended, "the publisher's SHUTDOWN ends the stream");
    assert!(engine.streams().is_empty());
    assert_eq!(sim.svc.publishing_count(), 0);
    assert_same_frames(&got, &frames_of(&stream));
    let keys = got
        .iter()
        .filter(|f| f.codec == Codec::H264 && f.is_keyframe() && !f.is_config())
        .count();
    assert_eq!(keys, 3, "one keyframe per second, flagged");
    // The subscriber starts at the first keyframe with the video config;
    // the audio config follows before the first audio frame.
    assert!(
        got[0].is_config() && got[1].is_keyframe(),
        "config, then keyframe"
    );
    let st = sim.svc.stats();
    assert_eq!(st.frames_in, got.len() as u64);
    assert_eq!(st.garbage_payloads, 0);
    assert_eq!(st.ts_errors, 0);
    let _ = first_at;
}

#[test]
fn viewer_gets_pat_pmt_config_and_keyframe_first_then_every_frame() {
    let engine = Engine::with_defaults();
    let mut publ = engine.publish(key()).unwrap();
    let mut sim = Sim::new(&engine, 2);
    let stream = av_stream(4, true, true);
    let mut viewer = None;
    play_out(&mut sim, &mut publ, &stream, |sim, ms| {
        // Join mid-GOP: the GOP cache starts at the keyframe of 1000 ms.
        if ms == 1500 {
            viewer = Some(sim.connect(Peer::new(7, "read:live/cam")));
        }
    });
    let v = viewer.unwrap();
    sim.run_ms(500);
    drop(publ);
    // End of stream: the viewer gets the tail, then a SHUTDOWN as soon as
    // it acknowledged (and played) the tail, well before the 740 ms linger.
    assert!(sim.run_until(500, |s| s.svc.playing_count() == 0));
    sim.run_ms(50);
    let c = sim.peers[v].conn().unwrap();
    assert!(c.closed().is_some(), "viewer told the stream ended");

    let chunks = delivered(&sim, v);
    assert!(starts_with_pat(&chunks[0]), "PAT first");
    assert!(chunks
        .iter()
        .all(|c| c.len() % PACKET_SIZE == 0 && c.len() <= PAYLOAD_SIZE));
    let (got, d) = demux_all(&chunks);
    assert_eq!(d.stats().cc_errors, 0, "continuity counters");
    assert_eq!(d.stats().dropped_frames, 0);
    assert!(got[0].is_config(), "config first");
    let first_media = got.iter().find(|f| !f.is_config()).unwrap();
    assert!(first_media.is_keyframe() && first_media.codec == Codec::H264);
    // Everything from the keyframe at 1000 ms on, in order.
    let from = stream
        .iter()
        .position(|(ms, f)| *ms == 1000 && f.codec == Codec::H264)
        .unwrap();
    assert_same_frames(&got, &frames_of(&stream[from..]));
    assert_eq!(sim.svc.stats().frames_skipped, 0);
}

#[test]
fn viewers_of_a_stream_share_the_ts_bytes_and_one_signal() {
    let engine = Engine::with_defaults();
    let mut publ = engine.publish(key()).unwrap();
    let mut sim = Sim::new(&engine, 3);
    let a = sim.connect(Peer::new(1, "read:live/cam"));
    let b = sim.connect(Peer::new(2, "#!::r=live/cam,m=request"));
    let c = sim.connect(Peer::new(3, "live/cam"));
    assert!(sim.run_until(100, |s| s.peers.iter().all(Peer::is_connected)));
    let mut signals = Vec::new();
    sim.svc.media_signals(&mut signals);
    assert_eq!(signals.len(), 1, "one signal per stream, not per viewer");
    let stream = av_stream(2, true, true);
    play_out(&mut sim, &mut publ, &stream, |_, _| {});
    sim.run_ms(400);
    let pa = &sim.sent_payloads[&sim.peers[a].addr];
    let pb = &sim.sent_payloads[&sim.peers[b].addr];
    let pc = &sim.sent_payloads[&sim.peers[c].addr];
    assert!(pa.len() > 100);
    assert_eq!(pa, pb, "same memory for every viewer");
    assert_eq!(pa, pc);
    for v in [a, b, c] {
        let (got, d) = demux_all(&delivered(&sim, v));
        assert_eq!(d.stats().cc_errors, 0);
        assert_same_frames(&got, &frames_of(&stream));
    }
}

#[test]
fn audio_only_viewer_joining_between_psi_repetitions_gets_pat_first() {
    let engine = Engine::with_defaults();
    let mut publ = engine.publish(key()).unwrap();
    let mut sim = Sim::new(&engine, 4);
    let stream = av_stream(2, true, false);
    let mut early = None;
    let mut late = None;
    play_out(&mut sim, &mut publ, &stream, |sim, ms| {
        if ms == 100 {
            early = Some(sim.connect(Peer::new(1, "read:live/cam")));
        }
        if ms == 1130 {
            late = Some(sim.connect(Peer::new(2, "read:live/cam")));
        }
    });
    sim.run_ms(400);
    for v in [early.unwrap(), late.unwrap()] {
        let chunks = delivered(&sim, v);
        assert!(starts_with_pat(&chunks[0]), "viewer {v}: PAT first");
        let (got, d) = demux_all(&chunks);
        assert_eq!(d.stats().cc_errors, 0, "viewer {v}");
        assert!(got[0].is_config());
        assert!(got.len() > 20);
    }
}

struct NeedsSecret;

impl Admission for NeedsSecret {
    fn admit(&self, req: &AdmissionRequest) -> Decision {
        assert_eq!(req.protocol, "srt");
        if req.query_param("s") == Some("secret") {
            Decision::Allow
        } else {
            Decision::Deny(Rejection::forbidden("bad session"))
        }
    }
}

#[test]
fn refusals_carry_the_access_control_reject_codes() {
    let engine = Engine::with_defaults();
    let f = factory(&engine, 120, Some(Arc::new(NeedsSecret)));
    let mut sim = Sim::with_factory(&f, 5);
    let cases = [
        ("#!::r=live/cam,m=publish,s=secret", None),
        (
            "#!::r=live/cam,m=publish,s=secret",
            Some(RejectReason::CONFLICT),
        ),
        (
            "#!::r=live/cam,m=publish,s=nope",
            Some(RejectReason::FORBIDDEN),
        ),
        (
            "#!::r=live/none,m=request,s=secret",
            Some(RejectReason::NOT_FOUND),
        ),
        (
            "#!::r=live/cam,m=bidirectional,s=secret",
            Some(RejectReason::BAD_MODE),
        ),
        ("#!::r=live/cam,m=sideways", Some(RejectReason::BAD_MODE)),
        ("publish:", Some(RejectReason::BAD_REQUEST)),
        ("", Some(RejectReason::BAD_REQUEST)),
        ("#!::r=live/cam,s=secret", None),
    ];
    for (n, (sid, want)) in cases.iter().enumerate() {
        let i = sim.connect(Peer::new(n as u16 + 1, sid));
        assert!(sim.run_until(100, |s| !matches!(
            s.peers[i].state,
            PeerState::Inducting | PeerState::Concluding
        )));
        assert_eq!(rejection(&sim, i), *want, "stream id {sid:?}");
        if let Some(code) = want {
            assert_eq!(sim.peers[i].state_code(), Some(1000 + code.code()));
        }
    }
    assert_eq!(sim.svc.stats().rejected, 7);
    assert_eq!(
        (sim.svc.publishing_count(), sim.svc.playing_count()),
        (1, 1)
    );
}

impl Peer {
    fn state_code(&self) -> Option<u32> {
        match self.state {
            PeerState::Rejected(r) => Some(HandshakeType::Rejection(r).to_u32()),
            _ => None,
        }
    }
}

#[test]
fn lossy_links_still_deliver_every_frame_both_ways() {
    for seed in [6, 61, 612] {
        lossy_run(seed);
    }
}

/// 5 % loss both ways between the service and each caller (10 ms RTT,
/// 120 ms latency): publisher → engine → viewer loses no frame.
fn lossy_run(seed: u64) {
    let engine = Engine::with_defaults();
    let mut sim = Sim::new(&engine, seed);
    sim.up.loss_per_mille = 50;
    sim.down.loss_per_mille = 50;
    let p = sim.connect(Peer::new(1, "publish:live/cam"));
    assert!(sim.run_until(100, |s| s.peers[p].is_connected()));
    let v = sim.connect(Peer::new(2, "read:live/cam"));
    assert!(sim.run_until(100, |s| s.peers[v].is_connected()));
    let mut sub = engine.subscribe(&key()).unwrap();
    let stream = av_stream(4, true, true);
    let start = sim.now;
    for (ms, b) in ts_payloads(&stream) {
        sim.peers[p]
            .outbox
            .push_back((start + Duration::from_millis(ms), b));
    }
    let mut got = Vec::new();
    assert!(sim.run_until(10_000, |s| s.peers[p].outbox.is_empty()));
    for _ in 0..1000 {
        got.extend(drain(&mut sub).0);
        sim.tick();
    }
    assert!(
        sim.up.lost > 20 && sim.down.lost > 20,
        "the links lost packets"
    );
    // Publisher → engine: every frame.
    let want = frames_of(&stream);
    sim.peers[p].conn().unwrap().close(sim.now);
    sim.run_ms(50);
    got.extend(drain(&mut sub).0);
    assert_same_frames(&got, &want);
    // Engine → viewer: every frame, decodable.
    assert!(sim.run_until(3000, |s| s.svc.playing_count() == 0));
    sim.run_ms(100);
    let (seen, d) = demux_all(&delivered(&sim, v));
    assert_eq!(d.stats().cc_errors, 0, "no TS packet lost");
    assert_same_frames(&seen, &want);
    let rs = sim.peers[v].conn().unwrap().recv_stats();
    assert_eq!(rs.dropped, 0, "{rs:?}");
}

#[test]
fn non_ts_publisher_is_closed_and_its_stream_ends() {
    let engine = Engine::with_defaults();
    let mut sim = Sim::new(&engine, 7);
    let p = sim.connect(Peer::new(1, "publish:live/cam"));
    assert!(sim.run_until(100, |s| s.peers[p].is_connected()));
    let start = sim.now;
    for k in 0..500u64 {
        let junk: Vec<u8> = (0..PAYLOAD_SIZE)
            .map(|i| (i as u8).wrapping_mul(31) | 1)
            .filter(|b| *b != 0x47)
            .collect();
        sim.peers[p]
            .outbox
            .push_back((start + Duration::from_millis(10 * k), Bytes::from(junk)));
    }
    assert!(sim.run_until(6000, |s| s.svc.publishing_count() == 0));
    assert!(sim.now.saturating_duration_since(start) >= Duration::from_secs(3));
    sim.run_ms(20);
    assert!(
        sim.peers[p].conn().unwrap().closed().is_some(),
        "peer got SHUTDOWN"
    );
    let st = sim.svc.stats();
    assert_eq!(st.garbage_closed, 1);
    assert!(st.garbage_payloads > 250);
    assert!(engine.streams().is_empty());
}

#[test]
fn close_shuts_every_connection_down_and_drains() {
    let engine = Engine::with_defaults();
    let mut sim = Sim::new(&engine, 8);
    let p = sim.connect(Peer::new(1, "publish:live/cam"));
    assert!(sim.run_until(100, |s| s.peers[p].is_connected()));
    let v = sim.connect(Peer::new(2, "read:live/cam"));
    assert!(sim.run_until(100, |s| s.peers[v].is_connected()));
    assert_eq!(engine.streams().len(), 1);
    let now = sim.now;
    sim.svc.close(now);
    assert!(!sim.svc.is_closed(), "SHUTDOWNs still queued");
    sim.flush_service();
    assert!(sim.svc.is_closed());
    assert!(engine.streams().is_empty(), "publisher ended");
    sim.run_ms(20);
    for i in [p, v] {
        assert!(sim.peers[i].conn().unwrap().closed().is_some());
    }
    // A caller after close is refused.
    let late = sim.connect(Peer::new(3, "read:live/cam"));
    sim.run_ms(20);
    assert!(matches!(sim.peers[late].state, PeerState::Inducting));
}

#[test]
fn full_send_buffer_stops_pulling_and_a_lagging_viewer_resumes_at_a_keyframe() {
    // A small ring, so that a viewer held back by its send buffer falls out
    // of it and skips to a keyframe, as RTMP viewers do.
    let engine = Engine::new();
    engine.add_app("live", arcly::AppConfig::default().with_ring_frames(64));
    let mut publ = engine.publish(key()).unwrap();
    let mut sim = Sim::new(&engine, 9);
    let mut peer = Peer::new(1, "read:live/cam");
    peer.flow_window = 32;
    let v = sim.connect(peer);
    assert!(sim.run_until(100, |s| s.peers[v].is_connected()));
    let stream = av_stream(6, true, true);
    play_out(&mut sim, &mut publ, &stream, |sim, ms| {
        // The viewer's ACKs stop reaching the server for 1.5 s.
        if ms == 1000 {
            sim.peers[v].mute = true;
        }
        if ms == 2500 {
            sim.peers[v].mute = false;
        }
        if ms == 2000 {
            let mut s = Vec::new();
            sim.svc.media_signals(&mut s);
            assert!(s.is_empty(), "a blocked viewer waits for ACKs, not media");
        }
    });
    sim.run_ms(500);
    let st = sim.svc.stats();
    assert!(st.send_buffer_full >= 1, "{st:?}");
    let dropped = publ.stats().snapshot().dropped;
    assert!(dropped > 0, "the viewer lagged in the ring");
    let (got, d) = demux_all(&delivered(&sim, v));
    let media: Vec<&Frame> = got.iter().filter(|f| !f.is_config()).collect();
    let total = stream.iter().filter(|(_, f)| !f.is_config()).count();
    assert!(
        media.len() > 200 && media.len() < total,
        "resumed after a skip: {} of {total}",
        media.len()
    );
    assert!(d.stats().cc_errors <= 2, "one jump per PID at the skip");
    // After the skip the first video frame is a keyframe.
    let mut prev: Option<i64> = None;
    for f in media.iter().filter(|f| f.codec == Codec::H264) {
        if let Some(p) = prev {
            if f.dts - p > 3600 {
                let rs = sim.peers[v].conn().unwrap().recv_stats();
                assert!(
                    f.is_keyframe(),
                    "resumed at a keyframe (dts {} after {p}) {st:?} {rs:?} {:?}",
                    f.dts,
                    d.stats()
                );
            }
        }
        prev = Some(f.dts);
    }
    let last = got.last().unwrap();
    assert_eq!(
        last.dts,
        stream.last().unwrap().1.dts,
        "and caught up to the live edge"
    );
}

/// Issue 14 item 6: a viewer that acknowledges nothing (silent after its
/// two-packet handshake, or sending only KEEPALIVEs) gets at most the
/// initial unacknowledged window and a probe per second, and is closed
/// after the peer idle timeout (5 s); a healthy viewer alongside gets every
/// frame. The old code sent the silent viewer ~100 packets a second until
/// its idle timeout and streamed to the KEEPALIVE-only one forever.
#[test]
fn viewers_that_acknowledge_nothing_stop_being_sent_to_and_are_closed() {
    use arcly::srt::connection::{ACK_STALL_CLOSE, INITIAL_UNACKED_WINDOW};
    let engine = Engine::with_defaults();
    let mut publ = engine.publish(key()).unwrap();
    let mut sim = Sim::new(&engine, 21);
    let healthy = sim.connect(Peer::new(1, "read:live/cam"));
    let silent = sim.connect(Peer::new(2, "read:live/cam"));
    let mut k = Peer::new(3, "read:live/cam");
    k.keepalive_only = true;
    let keepalive = sim.connect(k);
    assert!(sim.run_until(100, |s| s.peers.iter().all(Peer::is_connected)));
    sim.peers[silent].mute = true;
    let joined = sim.now;
    let mut gone_at = None;
    let stream = av_stream(9, true, true);
    play_out(&mut sim, &mut publ, &stream, |sim, _| {
        if gone_at.is_none() && sim.svc.playing_count() == 1 {
            gone_at = Some(sim.now);
        }
    });
    sim.run_ms(500);
    let gone_at = gone_at.expect("the two viewers that ACK nothing were closed");
    let after = gone_at.saturating_duration_since(joined);
    assert!(
        after + Duration::from_millis(100) >= ACK_STALL_CLOSE
            && after <= ACK_STALL_CLOSE + Duration::from_millis(300),
        "closed {after:?} after joining"
    );
    let sent = |sim: &Sim, i: usize| {
        sim.sent_payloads
            .get(&sim.peers[i].addr)
            .map_or(0, Vec::len)
    };
    let budget = INITIAL_UNACKED_WINDOW as usize + 6; // + one probe a second
    for i in [silent, keepalive] {
        let n = sent(&sim, i);
        assert!(
            n <= budget,
            "viewer {i} got {n} data packets (budget {budget})"
        );
    }
    // The KEEPALIVE-only viewer is told (SHUTDOWN); the silent one is
    // dropped on the peer idle timeout, as libsrt does.
    let c = sim.peers[keepalive].conn().unwrap();
    assert!(
        c.closed().is_some(),
        "the KEEPALIVE-only viewer got a SHUTDOWN"
    );
    let n = sent(&sim, healthy);
    assert!(n > 700, "{n}");
    let (got, d) = demux_all(&delivered(&sim, healthy));
    assert_eq!(d.stats().cc_errors, 0);
    assert_same_frames(&got, &frames_of(&stream));
}

/// Issue 14 item 2: SRT publish handshakes followed by no data (only
/// KEEPALIVEs, so the peer idle timeout never fires) held their stream
/// slots for ever; now they are closed at the app's first-media deadline
/// (10 s) and a legitimate publish gets the slot, while a healthy viewer of
/// another stream loses no frame.
#[test]
fn publishers_without_media_are_closed_and_free_their_slots() {
    let engine = Engine::new();
    engine.add_app("live", arcly::AppConfig::default().with_max_streams(3));
    let mut publ = engine.publish(key()).unwrap();
    let mut sim = Sim::new(&engine, 22);
    let viewer = sim.connect(Peer::new(1, "read:live/cam"));
    let mut squatters = Vec::new();
    for i in 0..2u16 {
        let mut p = Peer::new(10 + i, &format!("publish:live/squat{i}"));
        p.keepalive_only = true;
        squatters.push(sim.connect(p));
    }
    assert!(sim.run_until(100, |s| s.peers.iter().all(Peer::is_connected)));
    assert_eq!(sim.svc.publishing_count(), 2);
    let mut early = None;
    let mut late = None;
    let stream = av_stream(11, true, true);
    play_out(&mut sim, &mut publ, &stream, |sim, ms| {
        if ms == 5_000 {
            early = Some(sim.connect(Peer::new(20, "publish:live/legit")));
        }
        if ms == 10_500 {
            late = Some(sim.connect(Peer::new(21, "publish:live/legit")));
        }
    });
    sim.run_ms(300);
    assert_eq!(
        rejection(&sim, early.unwrap()),
        Some(RejectReason::OVERLOAD),
        "every slot was taken"
    );
    assert!(sim.peers[late.unwrap()].is_connected(), "a slot was freed");
    assert_eq!(sim.svc.stats().publishers_without_media, 2);
    for i in squatters {
        let c = sim.peers[i].conn().unwrap();
        assert!(c.closed().is_some(), "the squatter got a SHUTDOWN");
    }
    let keys: Vec<String> = engine.streams().iter().map(ToString::to_string).collect();
    assert_eq!(keys, ["live/cam", "live/legit"]);
    let (got, d) = demux_all(&delivered(&sim, viewer));
    assert_eq!(d.stats().cc_errors, 0);
    assert_same_frames(&got, &frames_of(&stream));
}

/// Issue 14 items 2 and 6: per source address, SRT play admissions are
/// rate-limited (token bucket) and connections are capped; both refusals
/// are `SRT_REJX_OVERLOAD`, and another address is not affected.
#[test]
fn play_admissions_and_connections_are_limited_per_address() {
    let engine = Engine::with_defaults();
    let _publ = engine.publish(key()).unwrap();
    let mut config = SrtServiceConfig::default();
    config.play_burst_per_ip = 5;
    config.play_rate_per_ip = 1;
    config.max_connections_per_ip = 7;
    let f = SrtServiceFactory::allow_all(engine.clone(), config);
    let mut sim = Sim::with_factory(&f, 23);
    let first: Vec<usize> = (0..7)
        .map(|i| sim.connect(Peer::new(i, "read:live/cam")))
        .collect();
    sim.run_ms(100);
    let refused = |sim: &Sim, v: &[usize]| {
        v.iter()
            .filter(|&&i| rejection(sim, i) == Some(RejectReason::OVERLOAD))
            .count()
    };
    let connected = |sim: &Sim| sim.peers.iter().filter(|p| p.is_connected()).count();
    assert_eq!(connected(&sim), 5, "the burst");
    assert_eq!(refused(&sim, &first), 2);
    // Another address is not limited by this one.
    let mut other = Peer::new(50, "read:live/cam");
    other.addr = SocketAddr::from(([10, 0, 0, 3], 40050));
    let o = sim.connect(other);
    sim.run_ms(100);
    assert!(sim.peers[o].is_connected());
    // Two seconds refill two tokens; the connection cap (7) stops the
    // third.
    sim.run_ms(1800);
    let later: Vec<usize> = (10..13)
        .map(|i| sim.connect(Peer::new(i, "read:live/cam")))
        .collect();
    sim.run_ms(100);
    assert_eq!(connected(&sim), 8);
    assert_eq!(refused(&sim, &later), 1);
    let st = sim.svc.stats();
    assert_eq!(st.refused_per_ip, 3, "{st:?}");
}

#[test]
fn the_factory_builds_boxed_services_with_distinct_secrets() {
    let engine = Engine::with_defaults();
    let f: Arc<dyn DatagramServiceFactory> = Arc::new(factory(&engine, 120, None));
    let mut a = f.new_service(&[server_addr()], T0, 1);
    let mut b = f.new_service(&[server_addr()], T0, 2);
    let p = Peer::new(1, "read:live/cam");
    let ind = p.handshake(HandshakeType::Induction, 0);
    let mut cookies = Vec::new();
    for s in [&mut a, &mut b] {
        s.handle_datagram(T0, Received::new(p.addr, ind.clone()));
        let t = s.poll_transmit().unwrap();
        match Packet::decode(&t.to_bytes()).unwrap() {
            Packet::Control(ControlPacket {
                body: Control::Handshake(h),
                ..
            }) => cookies.push(h.syn_cookie),
            other => panic!("{other:?}"),
        }
        assert!(s.poll_transmit().is_none());
        assert!(!s.is_closed());
        s.close(T0);
        while s.poll_transmit().is_some() {}
        assert!(s.is_closed());
        assert_eq!(s.poll_timeout(), None);
    }
    assert_ne!(cookies[0], cookies[1], "cookie secret from the seed");
}

#[test]
fn silent_callers_time_out_and_their_streams_end() {
    let engine = Engine::with_defaults();
    let mut sim = Sim::new(&engine, 10);
    let p = sim.connect(Peer::new(1, "publish:live/cam"));
    assert!(sim.run_until(100, |s| s.peers[p].is_connected()));
    let v = sim.connect(Peer::new(2, "read:live/cam"));
    assert!(sim.run_until(100, |s| s.peers[v].is_connected()));
    sim.peers[p].mute = true;
    sim.peers[v].mute = true;
    // SRT peer idle timeout (5 s): the publisher goes, so does its stream;
    // the viewer's stream ended, and it is silent too.
    assert!(sim.run_until(7000, |s| s.svc.publishing_count() == 0
        && s.svc.playing_count() == 0));
    assert!(engine.streams().is_empty());
    assert_eq!(sim.svc.endpoint().connection_count(), 0);
}

#[test]
fn a_republished_stream_gets_a_fresh_shared_muxer() {
    let engine = Engine::with_defaults();
    let f = factory(&engine, 120, None);
    let mut sim = Sim::with_factory(&f, 11);
    for round in 0..2u16 {
        let mut publ = engine.publish(key()).unwrap();
        let stream = av_stream(2, true, true);
        let mut viewer = None;
        play_out(&mut sim, &mut publ, &stream, |sim, ms| {
            if ms == 500 {
                viewer = Some(sim.connect(Peer::new(10 + round, "read:live/cam")));
            }
        });
        sim.run_ms(300);
        assert_eq!(f.egress().len(), 1, "one shared muxer per played stream");
        drop(publ);
        assert!(sim.run_until(3000, |s| s.svc.playing_count() == 0));
        assert!(f.egress().is_empty(), "released with its last viewer");
        let chunks = delivered(&sim, viewer.unwrap());
        assert!(starts_with_pat(&chunks[0]));
        let (got, d) = demux_all(&chunks);
        assert_eq!(d.stats().cc_errors, 0, "round {round}");
        assert!(got.iter().filter(|f| !f.is_config()).count() > 50);
    }
}

/// Service-side cost of one 10 Mbit/s stream (H.264 25 fps, 2 s GOP, AAC)
/// to 100 SRT viewers, sans-IO on a simulated lossless link: wall time spent
/// inside the service's calls (datagrams in, timers, media, transmits out)
/// per second of media. Run with
/// `cargo test --release -p arcly --test srt_service -- --ignored --nocapture bench_`.
#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn bench_one_10_mbit_stream_to_100_viewers() {
    let engine = Engine::with_defaults();
    let mut publ = engine.publish(key()).unwrap();
    let mut sim = Sim::new(&engine, 12);
    let viewers: Vec<usize> = (0..100)
        .map(|n| sim.connect(Peer::new(n + 1, "read:live/cam")))
        .collect();
    assert!(sim.run_until(200, |s| s.peers.iter().all(Peer::is_connected)));
    // 10 Mbit/s: 50 KB per video frame on average (keyframes 4x).
    let secs = 10u64;
    let mut stream = vec![(0, video_config()), (0, audio_config())];
    for i in 0..secs * 25 {
        let key = i % 50 == 0;
        let len = if key { 180_000 } else { 46_000 };
        stream.push((i * 40, video_frame(i, key, 90_000 + i as i64 * 3600, len)));
    }
    for i in 0..secs * 48_000 / 1024 {
        let t = 90_000 + (i as i64 * 1024 * 90_000) / 48_000;
        stream.push(((i * 1024 * 1000) / 48_000, audio_frame(i, t)));
    }
    stream.sort_by_key(|(ms, f)| (*ms, !f.is_config(), f.dts));
    let bytes: usize = stream.iter().map(|(_, f)| f.payload.len()).sum();
    sim.svc_time = Duration::ZERO;
    sim.svc_datagrams = 0;
    let wall = std::time::Instant::now();
    play_out(&mut sim, &mut publ, &stream, |_, _| {});
    sim.run_ms(300);
    let total = wall.elapsed();
    let st = sim.svc.stats();
    for v in &viewers {
        let got: usize = sim.peers[*v].delivered.iter().map(|(_, b)| b.len()).sum();
        assert!(got > bytes, "viewer {v} got {got} of {bytes} bytes");
    }
    let per_media_sec = sim.svc_time.as_secs_f64() / secs as f64;
    println!(
        "srt service: {} viewers, {:.1} Mbit/s media, {} s: service {:.3} s ({:.1} ms CPU per media second, {:.0} datagrams/s out, {:.2} us/datagram), payloads out {}, simulation total {:.1} s",
        viewers.len(),
        bytes as f64 * 8.0 / secs as f64 / 1e6,
        secs,
        sim.svc_time.as_secs_f64(),
        per_media_sec * 1e3,
        sim.svc_datagrams as f64 / secs as f64,
        sim.svc_time.as_secs_f64() * 1e6 / sim.svc_datagrams.max(1) as f64,
        st.payloads_out,
        total.as_secs_f64(),
    );
}

#[test]
fn damaged_ts_is_counted_and_the_stream_goes_on() {
    let engine = Engine::with_defaults();
    let mut sim = Sim::new(&engine, 13);
    let p = sim.connect(Peer::new(1, "publish:live/cam"));
    assert!(sim.run_until(100, |s| s.peers[p].is_connected()));
    let mut sub = engine.subscribe(&key()).unwrap();
    let stream = av_stream(3, true, true);
    let start = sim.now;
    let mut payloads = ts_payloads(&stream);
    // Every 40th payload is replaced by bytes that are not MPEG-TS.
    for (k, (_, b)) in payloads.iter_mut().enumerate() {
        if k % 40 == 20 {
            *b = Bytes::from(vec![0x5A; b.len()]);
        }
    }
    for (ms, b) in payloads {
        sim.peers[p]
            .outbox
            .push_back((start + Duration::from_millis(ms), b));
    }
    assert!(sim.run_until(10_000, |s| s.peers[p].outbox.is_empty()));
    sim.run_ms(300);
    let (got, _) = drain(&mut sub);
    let st = sim.svc.stats();
    assert!(st.ts_errors > 0 && st.garbage_payloads > 0, "{st:?}");
    assert_eq!(st.garbage_closed, 0, "short damage does not close");
    assert_eq!(sim.svc.publishing_count(), 1);
    let media = got.iter().filter(|f| !f.is_config()).count();
    let want = stream.iter().filter(|(_, f)| !f.is_config()).count();
    assert!(media > want / 2 && media < want, "{media} of {want}");
    assert!(got.last().unwrap().dts >= stream.last().unwrap().1.dts - 90_000);
}

/// A deferred admission holds the caller's handshake (and no engine
/// resource) while other connections flow; resolved after 2 s, the caller
/// connects and publishes. One never resolved is refused with
/// `SRT_REJ_TIMEOUT` at its deadline.
#[test]
fn deferred_admission_resolves_later_while_others_flow() {
    let engine = Engine::with_defaults();
    let handles: Arc<std::sync::Mutex<Vec<(String, AdmissionHandle)>>> = Arc::default();
    let h = handles.clone();
    let admission = from_fn(move |req: &AdmissionRequest| {
        let timeout = match req.key.name() {
            "held" => Duration::from_secs(4),
            "late" => Duration::from_secs(1),
            _ => return Decision::Allow,
        };
        let (pending, handle) = PendingAdmission::new(timeout);
        h.lock().unwrap().push((req.key.name().to_owned(), handle));
        Decision::Later(pending)
    });
    let f = factory(&engine, 120, Some(Arc::new(admission)));
    let mut sim = Sim::with_factory(&f, 11);
    let mut publ = engine.publish(key()).unwrap();
    let viewer = sim.connect(Peer::new(1, "read:live/cam"));
    assert!(sim.run_until(100, |s| s.peers[viewer].is_connected()));

    let held = sim.connect(Peer::new(2, "publish:live/held"));
    let late = sim.connect(Peer::new(3, "publish:live/late"));
    sim.run_ms(50);
    assert_eq!(handles.lock().unwrap().len(), 2, "both asked");
    assert_eq!(sim.svc.stats().admission_waits, 2);
    let mut signals = Vec::new();
    sim.svc.media_signals(&mut signals);
    assert_eq!(
        signals.len(),
        3,
        "the played stream and two pending decisions"
    );
    let epochs: Vec<u64> = signals.iter().map(|s| s.epoch()).collect();

    // 2 s of media to the viewer while the decisions are pending.
    let stream = av_stream(2, true, true);
    let before = sim.peers[viewer].delivered.len();
    play_out(&mut sim, &mut publ, &stream, |_, _| {});
    assert!(
        sim.peers[viewer].delivered.len() > before + 100,
        "the viewer kept receiving while admissions were pending"
    );
    assert!(matches!(sim.peers[held].state, PeerState::Concluding));
    assert_eq!(
        engine.streams().len(),
        1,
        "a pending publish holds no stream in the engine"
    );
    // `late` passed its 1 s deadline: refused with SRT_REJ_TIMEOUT.
    assert_eq!(rejection(&sim, late), Some(RejectReason::Timeout));
    let (name, late_handle) = handles.lock().unwrap().pop().unwrap();
    assert_eq!(name, "late");
    assert!(
        late_handle.is_abandoned(),
        "the application learns nobody waits"
    );

    // The decision arrives: the service's driver is woken by a signal it
    // already listed, and the caller connects and publishes.
    let (name, handle) = handles.lock().unwrap().pop().unwrap();
    assert_eq!(name, "held");
    assert!(!handle.is_abandoned());
    handle.allow();
    assert!(
        signals.iter().zip(&epochs).any(|(s, e)| s.epoch() != *e),
        "resolving notified a listed signal"
    );
    assert!(sim.run_until(100, |s| s.peers[held].is_connected()));
    assert_eq!(sim.svc.publishing_count(), 1);
    assert!(engine
        .streams()
        .iter()
        .any(|k| k == &StreamKey::parse("live/held").unwrap()));
    assert_eq!(sim.svc.stats().rejected, 1);
}

/// Issue 14 item 4: a stream id with CR/LF or ESC, or naming an app over
/// 128 bytes, is refused at the handshake with `SRT_REJX_BAD_REQUEST`
/// (1400); a clean one next to them is admitted.
#[test]
fn stream_ids_with_control_characters_or_long_names_are_refused() {
    let engine = Engine::with_defaults();
    let mut sim = Sim::new(&engine, 9);
    let long_app = format!("publish:{}/cam", "a".repeat(129));
    let cases = [
        "publish:live/cam?x=\r\n2026-01-01T00:00:00Z ERROR forged",
        "read:live/cam?\x1b[31m",
        "#!::r=live/cam,m=publish,u=eve\nforged",
        long_app.as_str(),
    ];
    for (n, sid) in cases.iter().enumerate() {
        let i = sim.connect(Peer::new(n as u16 + 1, sid));
        assert!(sim.run_until(100, |s| !matches!(
            s.peers[i].state,
            PeerState::Inducting | PeerState::Concluding
        )));
        assert_eq!(
            rejection(&sim, i),
            Some(RejectReason::BAD_REQUEST),
            "stream id {sid:?}"
        );
        assert_eq!(
            sim.peers[i].state_code(),
            Some(1000 + RejectReason::BAD_REQUEST.code())
        );
    }
    let ok = sim.connect(Peer::new(20, "publish:live/cam"));
    assert!(sim.run_until(100, |s| s.peers[ok].is_connected()));
    assert_eq!(sim.svc.stats().rejected, 4);
}

/// Pending admission decisions are bounded per peer address: the ninth
/// undecided request from one IP is refused with `SRT_REJX_OVERLOAD` at
/// once, without asking the application; the eight others keep waiting.
#[test]
fn pending_admissions_are_bounded_per_ip() {
    let engine = Engine::with_defaults();
    let handles: Arc<std::sync::Mutex<Vec<AdmissionHandle>>> = Arc::default();
    let h = handles.clone();
    let admission = from_fn(move |_req: &AdmissionRequest| {
        let (pending, handle) = PendingAdmission::new(Duration::from_secs(4));
        h.lock().unwrap().push(handle);
        Decision::Later(pending)
    });
    let f = factory(&engine, 120, Some(Arc::new(admission)));
    let mut sim = Sim::with_factory(&f, 12);
    let max = arcly::srt::service::MAX_ADMISSION_WAITS_PER_IP;
    let ids: Vec<usize> = (0..=max)
        .map(|n| sim.connect(Peer::new(n as u16 + 1, &format!("publish:live/s{n}"))))
        .collect();
    sim.run_ms(100);
    assert_eq!(
        handles.lock().unwrap().len(),
        max,
        "the last one was not asked"
    );
    assert_eq!(rejection(&sim, ids[max]), Some(RejectReason::OVERLOAD));
    for &i in &ids[..max] {
        assert!(matches!(sim.peers[i].state, PeerState::Concluding));
    }
    assert_eq!(sim.svc.stats().admission_waits, max as u64);
}

/// On a wildcard bind the service answers each caller from the local
/// address the caller wrote to (the datagram's destination, reported by
/// the adapter); on a specific bind it leaves the choice to the OS.
#[test]
fn a_wildcard_service_answers_from_the_address_the_caller_wrote_to() {
    let engine = Engine::with_defaults();
    let f = factory(&engine, 120, None);
    let wildcard = SocketAddr::from(([0, 0, 0, 0], 8890));
    for (bound, dst, want) in [
        (wildcard, Some("10.0.0.7"), Some("10.0.0.7")),
        (wildcard, None, None),
        (server_addr(), Some("10.0.0.1"), None),
    ] {
        let mut svc = f.service(bound, T0, 5);
        let mut callers = Vec::new();
        for n in 0..3u16 {
            let p = Peer::new(n + 1, "read:live/cam");
            let mut d = Received::new(p.addr, p.handshake(HandshakeType::Induction, 0));
            d.dst_ip = dst.map(|ip| ip.parse().unwrap());
            svc.handle_datagram(T0, d);
            callers.push(p.addr);
        }
        let mut answered = Vec::new();
        while let Some(t) = svc.poll_transmit() {
            assert_eq!(
                t.src_ip,
                want.map(|ip| ip.parse().unwrap()),
                "bound {bound}, destination {dst:?}"
            );
            answered.push(t.destination);
        }
        assert_eq!(answered, callers, "every induction answered");
    }
}
