//! Replaying one SRT conversation (draft-sharabayko-srt-01): the
//! caller→listener datagrams of a captured UDP flow drive an SRT listener
//! [`Endpoint`] at their capture timestamps, its delivered payloads go
//! through a [`TsDemuxer`], and the listener→caller datagrams are read
//! passively for what the original receiver reported (ACKs, NAKs).
//!
//! Invariants:
//! - time comes only from the capture: each datagram is handled at its
//!   capture timestamp, the endpoint's timers run in between at their own
//!   deadlines, and after the last datagram for at most [`DRAIN`];
//! - the original listener's SYN-cookie secret is unknown, so the cookie of
//!   the captured induction response (else of the caller's conclusion) is
//!   accepted from the captured caller
//!   (`Endpoint::accept_captured_cookie`, crate-private);
//! - the listener socket id the caller addresses is the original server's;
//!   it is rewritten to the replay endpoint's id (bytes 12..16, §3), the
//!   only change made to captured bytes;
//! - every request is accepted, as in the RTMP replay; the `handshake`
//!   event is read from the captured conclusion, so it is reported even
//!   when the replay listener refuses it (an encrypted capture without its
//!   passphrase);
//! - bounded: at most [`SrtReplayLimits::max_datagrams`] datagrams and
//!   [`SrtReplayLimits::max_timer_steps`] timer runs per flow.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

use super::capture::{Capture, Transport};
use super::{Direction, EventKind, ReplayEvent};
use crate::container::ts::TsDemuxer;
use crate::srt::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use crate::srt::{Control, HandshakeType, HsExtension, Packet, SocketId};
use crate::time::Instant;
use std::time::Duration;

/// The usual SRT port (MediaMTX and arcly's default listener).
pub const SRT_PORT: u16 = 8890;

/// How long the timers run after the last captured datagram, so that
/// payloads waiting for their TSBPD time are delivered (§4.5).
pub const DRAIN: Duration = Duration::from_secs(3);

/// Bounds and options of an SRT replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtReplayLimits {
    /// Datagrams replayed per flow (default 1 Mi); later ones are counted.
    pub max_datagrams: usize,
    /// Timer runs per flow (default 4 Mi).
    pub max_timer_steps: u64,
    /// The passphrase of an encrypted capture (§6); without it encrypted
    /// payloads cannot be decrypted and no frames come out.
    pub passphrase: Option<String>,
}

impl Default for SrtReplayLimits {
    fn default() -> Self {
        SrtReplayLimits {
            max_datagrams: 1 << 20,
            max_timer_steps: 4 << 20,
            passphrase: None,
        }
    }
}

/// What the capture itself shows of an SRT conversation, and what the
/// replayed receiver saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SrtStats {
    /// Captured caller→listener datagrams.
    pub c2s_datagrams: u64,
    /// Captured listener→caller datagrams.
    pub s2c_datagrams: u64,
    /// Captured data packets from the caller (§3.1).
    pub data_packets: u64,
    /// Of those, with the retransmitted flag R set (§3.1).
    pub retransmitted: u64,
    /// Payload bytes of the captured data packets.
    pub data_bytes: u64,
    /// Captured ACKs from the listener (§3.2.4).
    pub acks: u64,
    /// Captured NAKs from the listener (§3.2.5).
    pub naks: u64,
    /// Packets those NAKs reported lost.
    pub nak_lost: u64,
    /// Captured DROPREQs from the caller (§3.2.9).
    pub drop_reqs: u64,
    /// Datagrams that do not decode as SRT.
    pub undecodable: u64,
    /// Datagrams not replayed ([`SrtReplayLimits::max_datagrams`]).
    pub not_replayed: u64,
    /// The replayed receiver: data packets received (§4.5).
    pub recv_received: u64,
    /// The replayed receiver: retransmissions received.
    pub recv_retransmitted: u64,
    /// The replayed receiver: packets given up as lost (too-late drop,
    /// DROPREQ; §4.6).
    pub recv_dropped: u64,
    /// The replayed receiver: packets that arrived after their TSBPD time.
    pub recv_too_late: u64,
    /// The replayed receiver: payloads delivered in order.
    pub delivered: u64,
    /// Bytes of the delivered payloads.
    pub delivered_bytes: u64,
    /// NAKs the replay endpoint sent (its own loss reports).
    pub replay_naks: u64,
    /// Datagrams the replay endpoint sent.
    pub output_datagrams: u64,
}

/// The outcome of one SRT flow's replay.
#[derive(Debug, Clone)]
pub struct SrtOutcome {
    /// The caller (sender of the induction request).
    pub caller: SocketAddr,
    /// The listener.
    pub listener: SocketAddr,
    /// Where the accepted cookie came from (`"induction response"`,
    /// `"conclusion"` or `"none"`).
    pub cookie_source: &'static str,
    /// Events in order.
    pub events: Vec<ReplayEvent>,
    /// Counters.
    pub stats: SrtStats,
}

/// One datagram of the flow.
struct Dgram {
    index: usize,
    time: Instant,
    to_listener: bool,
    data: Bytes,
}

/// Whether `payload` is an SRT handshake control packet addressed to
/// socket 0 (a caller's induction or conclusion request, §3.2.1).
pub fn is_srt_handshake(payload: &[u8]) -> bool {
    matches!(
        Packet::decode_slice(payload),
        Ok(Packet::Control(c)) if c.dest == SocketId(0) && matches!(c.body, Control::Handshake(_))
    )
}

/// Whether the UDP conversation between `a` and `b` looks like SRT: one
/// side on [`SRT_PORT`], or one of its first datagrams is an SRT handshake
/// request.
pub fn looks_like_srt(capture: &Capture, a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == SRT_PORT || b.port() == SRT_PORT {
        return true;
    }
    capture
        .packets
        .iter()
        .filter(|p| p.transport == Transport::Udp)
        .filter(|p| (p.src == a && p.dst == b) || (p.src == b && p.dst == a))
        .take(8)
        .any(|p| is_srt_handshake(&p.payload))
}

fn handshake(data: &[u8]) -> Option<(SocketId, crate::srt::Handshake)> {
    match Packet::decode_slice(data) {
        Ok(Packet::Control(c)) => match c.body {
            Control::Handshake(h) => Some((c.dest, h)),
            _ => None,
        },
        _ => None,
    }
}

/// Replays the UDP conversation between `a` and `b` of `capture` as SRT,
/// reporting events as flow `flow`. `seed` seeds the endpoint's socket ids
/// and keys.
pub fn replay(
    flow: usize,
    capture: &Capture,
    a: SocketAddr,
    b: SocketAddr,
    seed: u64,
    limits: &SrtReplayLimits,
) -> SrtOutcome {
    let all: Vec<&super::capture::Packet> = capture
        .packets
        .iter()
        .filter(|p| p.transport == Transport::Udp)
        .filter(|p| (p.src == a && p.dst == b) || (p.src == b && p.dst == a))
        .collect();
    // The caller sends the first handshake request; else the side not on
    // the SRT port; else the first sender.
    let caller = all
        .iter()
        .find(|p| is_srt_handshake(&p.payload))
        .map(|p| p.src)
        .or_else(|| all.iter().find(|p| p.dst.port() == SRT_PORT).map(|p| p.src))
        .or_else(|| all.first().map(|p| p.src))
        .unwrap_or(a);
    let listener = if caller == a { b } else { a };
    let mut stats = SrtStats::default();
    let mut dgrams = Vec::with_capacity(all.len().min(limits.max_datagrams));
    for p in &all {
        let to_listener = p.src == caller;
        if to_listener {
            stats.c2s_datagrams += 1;
        } else {
            stats.s2c_datagrams += 1;
        }
        if dgrams.len() >= limits.max_datagrams {
            stats.not_replayed += 1;
            continue;
        }
        dgrams.push(Dgram {
            index: p.index,
            time: p.time,
            to_listener,
            data: p.payload.clone(),
        });
    }
    // The cookie and socket id the original listener handed out.
    let mut cookie = None;
    let mut cookie_source = "none";
    let mut original_id = None;
    for d in dgrams.iter().filter(|d| !d.to_listener) {
        if let Some((_, h)) = handshake(&d.data) {
            match h.hs_type {
                HandshakeType::Induction if cookie.is_none() => {
                    cookie = Some(h.syn_cookie);
                    cookie_source = "induction response";
                }
                HandshakeType::Conclusion if original_id.is_none() => {
                    original_id = Some(h.socket_id);
                }
                _ => {}
            }
        }
    }
    if cookie.is_none() {
        cookie = dgrams
            .iter()
            .filter(|d| d.to_listener)
            .filter_map(|d| handshake(&d.data))
            .find(|(_, h)| h.hs_type == HandshakeType::Conclusion)
            .map(|(_, h)| h.syn_cookie);
        if cookie.is_some() {
            cookie_source = "conclusion";
        }
    }
    let mut run = Run {
        flow,
        ep: Endpoint::new(EndpointConfig {
            rng_seed: seed,
            passphrase: limits.passphrase.clone(),
            ..EndpointConfig::default()
        }),
        demux: TsDemuxer::new(),
        events: Vec::new(),
        stats,
        id: None,
        index: 0,
        time: Instant::ZERO,
        steps: 0,
        max_steps: limits.max_timer_steps,
        handshake_seen: false,
        encrypted: false,
        has_passphrase: limits.passphrase.is_some(),
        rejections: 0,
    };
    if let Some(c) = cookie {
        run.ep.accept_captured_cookie(caller, c);
    }
    for d in &dgrams {
        run.timers(d.time);
        run.index = d.index;
        run.time = d.time;
        let parsed = Packet::decode(&d.data);
        if d.to_listener {
            match &parsed {
                Ok(Packet::Data(p)) => {
                    run.stats.data_packets += 1;
                    run.stats.data_bytes += p.payload.len() as u64;
                    if p.retransmitted {
                        run.stats.retransmitted += 1;
                    }
                }
                Ok(Packet::Control(c)) if matches!(c.body, Control::DropReq { .. }) => {
                    run.stats.drop_reqs += 1;
                }
                Ok(Packet::Control(c)) => {
                    if let Control::Handshake(h) = &c.body {
                        if h.hs_type == HandshakeType::Conclusion && !run.handshake_seen {
                            run.handshake_seen = true;
                            run.encrypted = h
                                .extensions
                                .iter()
                                .any(|e| matches!(e, HsExtension::KmReq(_)));
                            let latency_ms = h
                                .extensions
                                .iter()
                                .find_map(|e| match e {
                                    HsExtension::HsReq(r) => {
                                        Some(r.recv_latency_ms.max(r.send_latency_ms))
                                    }
                                    _ => None,
                                })
                                .unwrap_or(0);
                            run.push(
                                Direction::ToServer,
                                EventKind::SrtHandshake {
                                    stream_id: h.stream_id().unwrap_or_default().to_owned(),
                                    latency_ms,
                                    encrypted: run.encrypted,
                                },
                            );
                        }
                    }
                }
                Err(_) => run.stats.undecodable += 1,
            }
            let data = run.readdress(&d.data, original_id);
            run.ep.handle_datagram(d.time, caller, data);
            run.drain(d.time);
        } else {
            match &parsed {
                Ok(Packet::Control(c)) => match &c.body {
                    Control::Ack(_) => run.stats.acks += 1,
                    Control::Nak(list) => {
                        run.stats.naks += 1;
                        run.stats.nak_lost += list.count();
                        run.push(
                            Direction::ToClient,
                            EventKind::Nak {
                                ranges: list
                                    .ranges()
                                    .iter()
                                    .map(|(f, l)| (f.value(), l.value()))
                                    .collect(),
                                lost: list.count(),
                            },
                        );
                    }
                    _ => {}
                },
                Ok(_) => {}
                Err(_) => run.stats.undecodable += 1,
            }
        }
    }
    if !run.handshake_seen && run.stats.data_packets > 0 {
        run.push(
            Direction::ToServer,
            EventKind::Error {
                message: "srt: no conclusion handshake in the capture (started mid-stream?): \
                          data packets not replayed"
                    .to_owned(),
            },
        );
    }
    let end = run.time + DRAIN;
    run.timers(end);
    run.demux.flush();
    run.frames();
    if run.id.is_some() {
        run.sample();
    }
    run.push(
        Direction::ToServer,
        EventKind::SrtStats {
            stats: Box::new(run.stats),
        },
    );
    SrtOutcome {
        caller,
        listener,
        cookie_source,
        events: run.events,
        stats: run.stats,
    }
}

struct Run {
    flow: usize,
    ep: Endpoint,
    demux: TsDemuxer,
    events: Vec<ReplayEvent>,
    stats: SrtStats,
    id: Option<SocketId>,
    index: usize,
    time: Instant,
    steps: u64,
    max_steps: u64,
    handshake_seen: bool,
    encrypted: bool,
    has_passphrase: bool,
    rejections: u64,
}

impl Run {
    fn push(&mut self, dir: Direction, kind: EventKind) {
        self.events.push(ReplayEvent {
            flow: self.flow,
            time: self.time,
            packet: self.index,
            dir,
            kind,
        });
    }

    /// `data` with the original listener's socket id replaced by ours.
    fn readdress(&self, data: &Bytes, original: Option<SocketId>) -> Bytes {
        let (Some(ours), Some(dest)) = (self.id, Packet::peek_dest(data)) else {
            return data.clone();
        };
        if dest == SocketId(0) || original.is_some_and(|o| o != dest) {
            return data.clone();
        }
        let mut b = BytesMut::from(&data[..]);
        if let Some(field) = b.get_mut(12..16) {
            field.copy_from_slice(&ours.0.to_be_bytes());
        }
        b.freeze()
    }

    /// Runs the endpoint's timers due up to `until`, at their deadlines.
    fn timers(&mut self, until: Instant) {
        while let Some(t) = self.ep.poll_timeout() {
            if t > until || self.steps >= self.max_steps {
                break;
            }
            self.steps += 1;
            let t = t.max(self.time);
            self.time = t;
            self.ep.handle_timeout(t);
            self.drain(t);
            if self.ep.poll_timeout().is_some_and(|n| n <= t) {
                // A timer that does not move would spin; it runs again at
                // the next datagram.
                break;
            }
        }
    }

    fn sample(&mut self) {
        let Some(id) = self.id else { return };
        if let Some((r, _, _)) = self.ep.connection_stats(id) {
            self.stats.recv_received = r.received;
            self.stats.recv_retransmitted = r.retransmitted;
            self.stats.recv_dropped = r.dropped;
            self.stats.recv_too_late = r.too_late;
        }
    }

    fn frames(&mut self) {
        while let Some(f) = self.demux.poll_frame() {
            self.push(Direction::ToServer, EventKind::Frame(f));
        }
    }

    /// Handles the endpoint's output and events.
    fn drain(&mut self, now: Instant) {
        while let Some(t) = self.ep.poll_transmit() {
            self.stats.output_datagrams += 1;
            if let Ok(Packet::Control(c)) = Packet::decode(&t.to_bytes()) {
                match c.body {
                    Control::Nak(_) => self.stats.replay_naks += 1,
                    Control::Handshake(h) => {
                        if let HandshakeType::Rejection(r) = h.hs_type {
                            self.rejections += 1;
                            if self.rejections == 1 {
                                let hint = if self.encrypted && !self.has_passphrase {
                                    " (encrypted capture: the replay needs its passphrase)"
                                } else {
                                    ""
                                };
                                let message = format!(
                                    "srt: the replay listener rejected the caller: {r:?}{hint}"
                                );
                                self.push(Direction::ToServer, EventKind::Error { message });
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                EndpointEvent::Request(req) => match self.ep.accept(now, req.token) {
                    Ok(id) => self.id = Some(id),
                    Err(e) => self.push(
                        Direction::ToServer,
                        EventKind::Error {
                            message: format!("srt: accept failed: {e}"),
                        },
                    ),
                },
                EndpointEvent::Connected { latency_ms, .. } => {
                    self.push(Direction::ToServer, EventKind::SrtConnected { latency_ms });
                }
                EndpointEvent::Data { payload, .. } => {
                    self.stats.delivered += 1;
                    self.stats.delivered_bytes += payload.len() as u64;
                    if let Err(e) = self.demux.handle_input(&payload) {
                        self.push(
                            Direction::ToServer,
                            EventKind::Error {
                                message: format!("ts: {e}"),
                            },
                        );
                    }
                    self.frames();
                }
                EndpointEvent::Closed { reason, .. } => {
                    self.sample();
                    self.demux.flush();
                    self.frames();
                    self.id = None;
                    self.push(
                        Direction::ToServer,
                        EventKind::Close {
                            reason: reason.to_string(),
                        },
                    );
                }
                EndpointEvent::ConnectFailed { .. } => {}
            }
        }
        if self.id.is_some() {
            self.sample();
        }
    }
}
