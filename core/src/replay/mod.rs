//! Deterministic replay of captured sessions (feature `replay`; see
//! `docs/replay.md`).
//!
//! A capture (pcap or pcapng) is read into [`Capture`], its TCP connections
//! are reassembled per direction ([`tcp::Reassembler`]) into [`TcpFlow`]s,
//! and each selected flow is driven through the protocol machine with the
//! capture's timestamps as `now` and a fixed or learned seed. The result is
//! the ordered list of [`ReplayEvent`]s and the bytes the machine would have
//! sent. UDP conversations that look like SRT (or all, with
//! [`Protocol::Srt`]) are replayed by [`srt`]: the caller's datagrams drive
//! an SRT listener endpoint and its payloads the MPEG-TS demuxer. TCP
//! flows that open with an RTSP request line (or use port 554 / 8554) are
//! replayed by [`rtsp`]: the client's bytes drive an RTSP server session
//! whose published stream is read back as frames.
//!
//! Invariants:
//! - the same capture and [`ReplayConfig`] give the same [`Replay`], byte for
//!   byte (no clock, no randomness, no hash-map iteration order);
//! - every buffer is bounded ([`capture::CaptureLimits`],
//!   [`tcp::ReassemblyLimits`], [`RtmpReplayLimits`], [`ReplayConfig::max_flows`]);
//! - missing bytes are reported ([`EventKind::Gap`]), never invented.

pub mod capture;
pub mod rtmp;
pub mod rtsp;
pub mod srt;
pub mod tcp;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

pub use capture::{Capture, CaptureError, CaptureLimits, LinkType, Packet, Transport};
pub use rtmp::{learn_server_seed, RtmpReplayLimits};
pub use rtsp::{learn_rtsp_seed, RtspReplayLimits, RTSP_ALT_PORT, RTSP_PORT};
pub use srt::{SrtReplayLimits, SrtStats, SRT_PORT};
pub use tcp::{DirectionStats, ReassemblyLimits, StreamEvent};

use crate::frame::{Frame, MediaKind};
use crate::time::Instant;

/// The seed used when none is given and none can be learned from the capture.
pub const DEFAULT_SEED: u64 = 0;

/// The RTMP port (RTMP spec §1: "port 1935").
pub const RTMP_PORT: u16 = 1935;

/// A protocol the replay can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// RTMP over TCP (RTMP spec).
    Rtmp,
    /// SRT over UDP, MPEG-TS payloads (draft-sharabayko-srt-01).
    Srt,
    /// RTSP 1.0 over TCP with RTP interleaved on the connection (RFC 2326 §10.12).
    Rtsp,
}

impl Protocol {
    /// The protocol's name (`"rtmp"`, `"srt"`, `"rtsp"`).
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::Srt => "srt",
            Protocol::Rtsp => "rtsp",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "rtmp" => Ok(Protocol::Rtmp),
            "srt" => Ok(Protocol::Srt),
            "rtsp" => Ok(Protocol::Rtsp),
            other => Err(format!(
                "unknown protocol `{other}` (known: rtmp, srt, rtsp)"
            )),
        }
    }
}

/// Which direction of a connection an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server (what the server machine reads).
    ToServer,
    /// Server to client (what the server wrote on the wire).
    ToClient,
}

impl Direction {
    /// `"c2s"` or `"s2c"`.
    pub const fn name(self) -> &'static str {
        match self {
            Direction::ToServer => "c2s",
            Direction::ToClient => "s2c",
        }
    }
}

/// How to replay a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayConfig {
    /// Keep only flows with this port on either side.
    pub port: Option<u16>,
    /// Keep only flows with this address on either side.
    pub addr: Option<IpAddr>,
    /// The protocol of the selected flows; `None` guesses it per flow from
    /// the server port and the first bytes.
    pub protocol: Option<Protocol>,
    /// The machine seed; `None` learns it from the capture where the server
    /// was arcly (see [`learn_server_seed`]) and uses [`DEFAULT_SEED`] otherwise.
    pub seed: Option<u64>,
    /// Limits of reading the capture.
    pub capture_limits: CaptureLimits,
    /// Limits of TCP reassembly, per direction.
    pub reassembly: ReassemblyLimits,
    /// Limits of the RTMP replay.
    pub rtmp: RtmpReplayLimits,
    /// Limits of the RTSP replay.
    pub rtsp: RtspReplayLimits,
    /// Limits and passphrase of the SRT replay.
    pub srt: SrtReplayLimits,
    /// Most flows tracked (default 4096); later ones are counted, not replayed.
    pub max_flows: usize,
}
/// Builder-style setters: the struct is `#[non_exhaustive]`, so other
/// crates start from its default (or constructor) value and chain these.
impl ReplayConfig {
    /// Sets [`port`](Self::port).
    #[must_use]
    pub fn with_port(mut self, port: Option<u16>) -> Self {
        self.port = port;
        self
    }

    /// Sets [`addr`](Self::addr).
    #[must_use]
    pub fn with_addr(mut self, addr: Option<IpAddr>) -> Self {
        self.addr = addr;
        self
    }

    /// Sets [`protocol`](Self::protocol).
    #[must_use]
    pub fn with_protocol(mut self, protocol: Option<Protocol>) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets [`seed`](Self::seed).
    #[must_use]
    pub fn with_seed(mut self, seed: Option<u64>) -> Self {
        self.seed = seed;
        self
    }

    /// Sets [`capture_limits`](Self::capture_limits).
    #[must_use]
    pub fn with_capture_limits(mut self, capture_limits: CaptureLimits) -> Self {
        self.capture_limits = capture_limits;
        self
    }

    /// Sets [`reassembly`](Self::reassembly).
    #[must_use]
    pub fn with_reassembly(mut self, reassembly: ReassemblyLimits) -> Self {
        self.reassembly = reassembly;
        self
    }

    /// Sets [`rtmp`](Self::rtmp).
    #[must_use]
    pub fn with_rtmp(mut self, rtmp: RtmpReplayLimits) -> Self {
        self.rtmp = rtmp;
        self
    }

    /// Sets [`rtsp`](Self::rtsp).
    #[must_use]
    pub fn with_rtsp(mut self, rtsp: RtspReplayLimits) -> Self {
        self.rtsp = rtsp;
        self
    }

    /// Sets [`srt`](Self::srt).
    #[must_use]
    pub fn with_srt(mut self, srt: SrtReplayLimits) -> Self {
        self.srt = srt;
        self
    }

    /// Sets [`max_flows`](Self::max_flows).
    #[must_use]
    pub fn with_max_flows(mut self, max_flows: usize) -> Self {
        self.max_flows = max_flows;
        self
    }
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            port: None,
            addr: None,
            protocol: None,
            seed: None,
            capture_limits: CaptureLimits::default(),
            reassembly: ReassemblyLimits::default(),
            rtmp: RtmpReplayLimits::default(),
            rtsp: RtspReplayLimits::default(),
            srt: SrtReplayLimits::default(),
            max_flows: 4096,
        }
    }
}

/// One TCP connection of a capture, both directions reassembled.
#[derive(Debug, Clone)]
pub struct TcpFlow {
    /// 0-based, in order of the flow's first packet.
    pub id: usize,
    /// The connecting side (sender of the first SYN; else the side not on
    /// the well-known port; else the first sender).
    pub client: SocketAddr,
    /// The accepting side.
    pub server: SocketAddr,
    /// Time of the first packet.
    pub first: Instant,
    /// Time of the last packet.
    pub last: Instant,
    /// Packets of this flow.
    pub packets: u64,
    /// Both directions' stream events merged in capture order.
    pub events: Vec<(Direction, StreamEvent)>,
    /// Client→server counters.
    pub to_server: DirectionStats,
    /// Server→client counters.
    pub to_client: DirectionStats,
}

impl TcpFlow {
    /// The first `n` bytes the client sent (before any gap).
    pub fn client_prefix(&self, n: usize) -> Vec<u8> {
        let evs: Vec<StreamEvent> = self
            .events
            .iter()
            .filter(|(d, _)| *d == Direction::ToServer)
            .map(|(_, e)| e.clone())
            .collect();
        rtmp::prefix(&evs, n)
    }

    /// All bytes the server sent, up to the first gap.
    pub fn server_bytes(&self) -> Bytes {
        let mut out = bytes::BytesMut::new();
        for (d, e) in &self.events {
            if *d != Direction::ToClient {
                continue;
            }
            match e {
                StreamEvent::Data { data, .. } => out.extend_from_slice(data),
                StreamEvent::Gap { .. } => break,
                _ => {}
            }
        }
        out.freeze()
    }

    /// The protocol guessed from the server port and the first bytes: RTMP
    /// when the server port is 1935, or when both sides open with version
    /// byte 3 (RTMP spec §5.2.2, C0/S0); RTSP when the server port is 554
    /// or 8554, or when the client opens with an RTSP request line
    /// (RFC 2326 §6.1).
    pub fn guess_protocol(&self) -> Option<Protocol> {
        if self.server.port() == RTMP_PORT {
            return Some(Protocol::Rtmp);
        }
        if matches!(self.server.port(), RTSP_PORT | RTSP_ALT_PORT)
            || rtsp::looks_like_rtsp(&self.client_prefix(256))
        {
            return Some(Protocol::Rtsp);
        }
        let c = self.client_prefix(1);
        let s = self.server_bytes();
        (c.first() == Some(&3) && s.first().map_or(true, |b| *b == 3)).then_some(Protocol::Rtmp)
    }
}

/// Groups the TCP packets of `capture` into flows and reassembles them.
/// UDP packets are counted per flow in [`udp_flows`].
pub fn tcp_flows(capture: &Capture, limits: ReassemblyLimits, max_flows: usize) -> Vec<TcpFlow> {
    struct Building {
        flow: TcpFlow,
        a: tcp::Reassembler,
        b: tcp::Reassembler,
        closed: bool,
    }
    // Keyed by the ordered endpoint pair; the value is the index in `flows`
    // of the connection currently open on that pair.
    let mut open: BTreeMap<(SocketAddr, SocketAddr), usize> = BTreeMap::new();
    let mut flows: Vec<Building> = Vec::new();
    let mut last_index = 0;
    let mut last_time = Instant::ZERO;
    for p in &capture.packets {
        let Transport::Tcp { syn, fin, rst, .. } = p.transport else {
            continue;
        };
        last_index = p.index;
        last_time = p.time;
        let key = if p.src <= p.dst {
            (p.src, p.dst)
        } else {
            (p.dst, p.src)
        };
        let existing = open.get(&key).copied().filter(|i| {
            // A SYN on a closed connection starts a new one (port reuse).
            !(syn && flows.get(*i).is_some_and(|b| b.closed))
        });
        let idx = match existing {
            Some(i) => i,
            None => {
                if flows.len() >= max_flows {
                    continue;
                }
                let (client, server) = if syn {
                    (p.src, p.dst)
                } else if p.src.port() == RTMP_PORT {
                    (p.dst, p.src)
                } else {
                    (p.src, p.dst)
                };
                flows.push(Building {
                    flow: TcpFlow {
                        id: flows.len(),
                        client,
                        server,
                        first: p.time,
                        last: p.time,
                        packets: 0,
                        events: Vec::new(),
                        to_server: DirectionStats::default(),
                        to_client: DirectionStats::default(),
                    },
                    a: tcp::Reassembler::new(limits),
                    b: tcp::Reassembler::new(limits),
                    closed: false,
                });
                open.insert(key, flows.len() - 1);
                flows.len() - 1
            }
        };
        let Some(b) = flows.get_mut(idx) else {
            continue;
        };
        b.flow.packets += 1;
        b.flow.last = p.time;
        if fin || rst {
            b.closed = true;
        }
        if p.src == b.flow.client {
            b.a.segment(p);
            while let Some(e) = b.a.poll_event() {
                b.flow.events.push((Direction::ToServer, e));
            }
        } else {
            b.b.segment(p);
            while let Some(e) = b.b.poll_event() {
                b.flow.events.push((Direction::ToClient, e));
            }
        }
    }
    flows
        .into_iter()
        .map(|mut b| {
            b.a.finish(last_time, last_index);
            while let Some(e) = b.a.poll_event() {
                b.flow.events.push((Direction::ToServer, e));
            }
            b.b.finish(last_time, last_index);
            while let Some(e) = b.b.poll_event() {
                b.flow.events.push((Direction::ToClient, e));
            }
            b.flow.to_server = b.a.stats();
            b.flow.to_client = b.b.stats();
            b.flow
        })
        .collect()
}

/// A UDP conversation (replayed as SRT by [`srt`], else listed in summaries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFlow {
    /// The lower endpoint of the pair.
    pub a: SocketAddr,
    /// The higher endpoint of the pair.
    pub b: SocketAddr,
    /// Datagrams.
    pub packets: u64,
    /// Payload bytes.
    pub bytes: u64,
}

/// The UDP conversations of `capture`, ordered by endpoint pair.
pub fn udp_flows(capture: &Capture) -> Vec<UdpFlow> {
    let mut m: BTreeMap<(SocketAddr, SocketAddr), (u64, u64)> = BTreeMap::new();
    for p in &capture.packets {
        if p.transport != Transport::Udp {
            continue;
        }
        let key = if p.src <= p.dst {
            (p.src, p.dst)
        } else {
            (p.dst, p.src)
        };
        let e = m.entry(key).or_default();
        e.0 += 1;
        e.1 += p.payload.len() as u64;
    }
    m.into_iter()
        .map(|((a, b), (packets, bytes))| UdpFlow {
            a,
            b,
            packets,
            bytes,
        })
        .collect()
}

/// What happened, in replay order.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// The client connected (RTMP `connect`, RTMP spec §7.2.1.1).
    Connected {
        /// Application name.
        app: String,
        /// `tcUrl`.
        tc_url: String,
    },
    /// A publish request (RTMP spec §7.2.2.6); the replay accepts it.
    Publish {
        /// Application name.
        app: String,
        /// Stream name.
        stream: String,
        /// Query string.
        query: String,
    },
    /// A play request (RTMP spec §7.2.2.1); the replay accepts it.
    Play {
        /// Application name.
        app: String,
        /// Stream name.
        stream: String,
        /// Query string.
        query: String,
    },
    /// A media frame: from the publisher (`c2s`) or sent to a player (`s2c`).
    Frame(Frame),
    /// Stream metadata (`onMetaData`, FLV spec script data).
    Metadata {
        /// The AMF0 body starting with `onMetaData`.
        body: Bytes,
    },
    /// An `onStatus` the server sent (RTMP spec §7.2.2), or the status
    /// line of an RTSP response (RFC 2326 §7.1).
    Status {
        /// Its `code`, e.g. `NetStream.Play.Start`, or `200 OK` for RTSP.
        code: String,
    },
    /// A stream ended (unpublish, play stop, StreamEOF).
    End {
        /// How.
        reason: String,
    },
    /// The machine closed the connection for a reason other than an error.
    Close {
        /// Why.
        reason: String,
    },
    /// Bytes missing from the capture in this direction.
    Gap {
        /// Stream offset of the first missing byte.
        offset: u64,
        /// Missing bytes.
        len: u64,
    },
    /// A protocol error or a replay limitation.
    Error {
        /// What went wrong.
        message: String,
    },
    /// An SRT caller's conclusion request (§4.3.1.2); the replay accepts it.
    SrtHandshake {
        /// The raw stream id (`SRTO_STREAMID`, §3.2.1.3).
        stream_id: String,
        /// The caller's TSBPD latency in ms (HSREQ, §3.2.1.1).
        latency_ms: u16,
        /// Whether the caller sent key material (KMREQ, §3.2.2).
        encrypted: bool,
    },
    /// The SRT connection is established (§4.3.1.2).
    SrtConnected {
        /// Negotiated TSBPD latency in ms.
        latency_ms: u16,
    },
    /// A NAK the captured listener sent (§3.2.5).
    Nak {
        /// Lost sequence number ranges, inclusive.
        ranges: Vec<(u32, u32)>,
        /// Packets reported lost.
        lost: u64,
    },
    /// The counters of an SRT flow's replay (last event of the flow).
    SrtStats {
        /// The counters.
        stats: Box<SrtStats>,
    },
}

impl EventKind {
    /// The `"kind"` of the JSON form.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Connected { .. } => "connected",
            EventKind::Publish { .. } => "publish",
            EventKind::Play { .. } => "play",
            EventKind::Frame(_) => "frame",
            EventKind::Metadata { .. } => "metadata",
            EventKind::Status { .. } => "status",
            EventKind::End { .. } => "end",
            EventKind::Close { .. } => "close",
            EventKind::Gap { .. } => "gap",
            EventKind::Error { .. } => "error",
            EventKind::SrtHandshake { .. } => "handshake",
            EventKind::SrtConnected { .. } => "connected",
            EventKind::Nak { .. } => "nak",
            EventKind::SrtStats { .. } => "stats",
        }
    }
}

/// One event of a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayEvent {
    /// The flow ([`TcpFlow::id`]).
    pub flow: usize,
    /// Capture time of the packet that caused it.
    pub time: Instant,
    /// Index of that packet.
    pub packet: usize,
    /// The direction whose bytes caused it.
    pub dir: Direction,
    /// What happened.
    pub kind: EventKind,
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl ReplayEvent {
    /// One line of JSON (no trailing newline): `flow`, `t_us`, `packet`,
    /// `dir`, `kind` and the kind's fields; frames have `codec`, `keyframe`,
    /// `config`, `pts`, `dts` (in `timebase` ticks), `timebase` and `len`.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(160);
        let _ = write!(
            s,
            "{{\"flow\":{},\"t_us\":{},\"packet\":{},\"dir\":\"{}\",\"kind\":\"{}\"",
            self.flow,
            self.time.as_micros(),
            self.packet,
            self.dir.name(),
            self.kind.name()
        );
        let field = |s: &mut String, k: &str, v: &str| {
            let _ = write!(s, ",\"{k}\":");
            json_str(s, v);
        };
        match &self.kind {
            EventKind::Connected { app, tc_url } => {
                field(&mut s, "app", app);
                field(&mut s, "tc_url", tc_url);
            }
            EventKind::Publish { app, stream, query } | EventKind::Play { app, stream, query } => {
                field(&mut s, "app", app);
                field(&mut s, "stream", stream);
                field(&mut s, "query", query);
            }
            EventKind::Frame(f) => {
                let _ = write!(
                    s,
                    ",\"codec\":\"{}\",\"keyframe\":{},\"config\":{},\"pts\":{},\"dts\":{},\"timebase\":{},\"len\":{}",
                    f.codec.name(),
                    f.is_keyframe(),
                    f.is_config(),
                    f.pts,
                    f.dts,
                    f.timebase,
                    f.payload.len()
                );
            }
            EventKind::Metadata { body } => {
                let _ = write!(s, ",\"len\":{}", body.len());
            }
            EventKind::Status { code } => field(&mut s, "code", code),
            EventKind::End { reason } | EventKind::Close { reason } => {
                field(&mut s, "reason", reason);
            }
            EventKind::Gap { offset, len } => {
                let _ = write!(s, ",\"offset\":{offset},\"len\":{len}");
            }
            EventKind::Error { message } => field(&mut s, "message", message),
            EventKind::SrtHandshake {
                stream_id,
                latency_ms,
                encrypted,
            } => {
                field(&mut s, "stream_id", stream_id);
                let _ = write!(s, ",\"latency_ms\":{latency_ms},\"encrypted\":{encrypted}");
            }
            EventKind::SrtConnected { latency_ms } => {
                let _ = write!(s, ",\"latency_ms\":{latency_ms}");
            }
            EventKind::Nak { ranges, lost } => {
                s.push_str(",\"ranges\":[");
                for (i, (a, b)) in ranges.iter().enumerate() {
                    let _ = write!(s, "{}[{a},{b}]", if i > 0 { "," } else { "" });
                }
                let _ = write!(s, "],\"lost\":{lost}");
            }
            EventKind::SrtStats { stats: t } => {
                let _ = write!(
                    s,
                    ",\"data_packets\":{},\"retransmitted\":{},\"data_bytes\":{},\"acks\":{},\"naks\":{},\"nak_lost\":{},\"drop_reqs\":{},\"undecodable\":{},\"recv_received\":{},\"recv_retransmitted\":{},\"recv_dropped\":{},\"recv_too_late\":{},\"delivered\":{},\"delivered_bytes\":{},\"replay_naks\":{}",
                    t.data_packets,
                    t.retransmitted,
                    t.data_bytes,
                    t.acks,
                    t.naks,
                    t.nak_lost,
                    t.drop_reqs,
                    t.undecodable,
                    t.recv_received,
                    t.recv_retransmitted,
                    t.recv_dropped,
                    t.recv_too_late,
                    t.delivered,
                    t.delivered_bytes,
                    t.replay_naks
                );
            }
        }
        s.push('}');
        s
    }
}

/// Why a replay could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The capture could not be read.
    #[error(transparent)]
    Capture(#[from] CaptureError),
}

/// The replay of one flow.
#[derive(Debug, Clone)]
pub struct FlowReplay {
    /// The flow (its stream events included).
    pub flow: TcpFlow,
    /// The protocol it was replayed as; `None` when unknown (not replayed).
    pub protocol: Option<Protocol>,
    /// The seed the machine ran with.
    pub seed: u64,
    /// Whether `seed` was learned from the capture's handshake.
    pub seed_learned: bool,
    /// Events in order.
    pub events: Vec<ReplayEvent>,
    /// What the server machine would have sent (up to the output limit).
    pub output: Bytes,
    /// The full length of what the machine would have sent.
    pub output_len: u64,
    /// What the captured server sent (up to the first gap and the limit).
    pub captured_output: Bytes,
}

impl FlowReplay {
    /// How many leading bytes of the machine's output equal the captured
    /// server's bytes.
    pub fn matching_output_prefix(&self) -> usize {
        self.output
            .iter()
            .zip(self.captured_output.iter())
            .take_while(|(a, b)| a == b)
            .count()
    }

    /// Frames of this flow in `dir`.
    pub fn frames(&self, dir: Direction) -> impl Iterator<Item = &Frame> {
        self.events.iter().filter_map(move |e| match &e.kind {
            EventKind::Frame(f) if e.dir == dir => Some(f),
            _ => None,
        })
    }
}

/// A replayed capture.
#[derive(Debug, Clone)]
pub struct Replay {
    /// Counters of the capture reading.
    pub capture: capture::CaptureStats,
    /// Why reading the capture stopped early, if it did.
    pub capture_stopped: Option<String>,
    /// The selected TCP flows and their replays, in order of first packet.
    pub flows: Vec<FlowReplay>,
    /// The selected UDP conversations replayed as SRT, in endpoint-pair
    /// order; their flow ids follow the TCP flows'.
    pub srt: Vec<SrtFlowReplay>,
    /// The UDP conversations that match the selection and were not replayed.
    pub udp: Vec<UdpFlow>,
}

/// The replay of one UDP conversation as SRT ([`srt`]).
#[derive(Debug, Clone)]
pub struct SrtFlowReplay {
    /// Flow id (after the TCP flows' ids).
    pub id: usize,
    /// The conversation.
    pub udp: UdpFlow,
    /// The caller (sender of the handshake requests).
    pub caller: SocketAddr,
    /// The listener.
    pub listener: SocketAddr,
    /// Time of the first and last datagram.
    pub first: Instant,
    /// Time of the last datagram.
    pub last: Instant,
    /// The seed the endpoint ran with.
    pub seed: u64,
    /// Where the accepted SYN cookie came from.
    pub cookie_source: &'static str,
    /// Events in order.
    pub events: Vec<ReplayEvent>,
    /// Counters.
    pub stats: SrtStats,
}

impl SrtFlowReplay {
    /// The frames the TS demuxer produced.
    pub fn frames(&self) -> impl Iterator<Item = &Frame> {
        self.events.iter().filter_map(|e| match &e.kind {
            EventKind::Frame(f) => Some(f),
            _ => None,
        })
    }

    /// The handshake: stream id, caller latency (ms), encrypted.
    pub fn handshake(&self) -> Option<(&str, u16, bool)> {
        self.events.iter().find_map(|e| match &e.kind {
            EventKind::SrtHandshake {
                stream_id,
                latency_ms,
                encrypted,
            } => Some((stream_id.as_str(), *latency_ms, *encrypted)),
            _ => None,
        })
    }
}

fn selected(cfg: &ReplayConfig, a: SocketAddr, b: SocketAddr) -> bool {
    cfg.port.map_or(true, |p| a.port() == p || b.port() == p)
        && cfg.addr.map_or(true, |ip| a.ip() == ip || b.ip() == ip)
}

impl Replay {
    /// Reads a capture from `reader` (see [`Capture::from_reader`]: bounded
    /// by [`CaptureLimits::max_file_len`])
    /// and replays it. The caller opens the file.
    pub fn from_reader(
        reader: impl std::io::Read,
        cfg: &ReplayConfig,
    ) -> Result<Replay, ReplayError> {
        let capture = Capture::from_reader(reader, cfg.capture_limits)?;
        Ok(Replay::run(&capture, cfg))
    }

    /// Reads and replays a capture held in memory.
    pub fn from_bytes(data: &[u8], cfg: &ReplayConfig) -> Result<Replay, ReplayError> {
        let capture = Capture::from_bytes(data, cfg.capture_limits)?;
        Ok(Replay::run(&capture, cfg))
    }

    /// Replays an already read capture.
    pub fn run(capture: &Capture, cfg: &ReplayConfig) -> Replay {
        let mut flows = Vec::new();
        for flow in tcp_flows(capture, cfg.reassembly, cfg.max_flows) {
            if !selected(cfg, flow.client, flow.server) {
                continue;
            }
            // SRT runs over UDP: a TCP flow is never replayed as SRT.
            let protocol = cfg
                .protocol
                .or_else(|| flow.guess_protocol())
                .filter(|p| *p != Protocol::Srt);
            let fr = match protocol {
                Some(Protocol::Rtmp) => {
                    let o = rtmp::replay(flow.id, &flow.events, cfg.seed, flow.first, cfg.rtmp);
                    FlowReplay {
                        flow,
                        protocol,
                        seed: o.seed,
                        seed_learned: o.seed_learned,
                        events: o.events,
                        output: o.output,
                        output_len: o.output_len,
                        captured_output: o.captured_output,
                    }
                }
                Some(Protocol::Rtsp) => {
                    let o = rtsp::replay(
                        flow.id,
                        flow.client,
                        &flow.events,
                        cfg.seed,
                        flow.first,
                        cfg.rtsp,
                    );
                    FlowReplay {
                        flow,
                        protocol,
                        seed: o.seed,
                        seed_learned: o.seed_learned,
                        events: o.events,
                        output: o.output,
                        output_len: o.output_len,
                        captured_output: o.captured_output,
                    }
                }
                Some(Protocol::Srt) | None => FlowReplay {
                    flow,
                    protocol: None,
                    seed: cfg.seed.unwrap_or(DEFAULT_SEED),
                    seed_learned: false,
                    events: Vec::new(),
                    output: Bytes::new(),
                    output_len: 0,
                    captured_output: Bytes::new(),
                },
            };
            flows.push(fr);
        }
        let mut udp = Vec::new();
        let mut srt_flows = Vec::new();
        let candidates = udp_flows(capture)
            .into_iter()
            .filter(|u| selected(cfg, u.a, u.b));
        for u in candidates {
            let is_srt = match cfg.protocol {
                Some(Protocol::Srt) => true,
                Some(Protocol::Rtmp | Protocol::Rtsp) => false,
                None => srt::looks_like_srt(capture, u.a, u.b),
            };
            if !is_srt || flows.len() + srt_flows.len() >= cfg.max_flows {
                udp.push(u);
                continue;
            }
            let id = flows.len() + srt_flows.len();
            let seed = cfg.seed.unwrap_or(DEFAULT_SEED);
            let o = srt::replay(id, capture, u.a, u.b, seed, &cfg.srt);
            let (first, last) = capture
                .packets
                .iter()
                .filter(|p| p.transport == Transport::Udp)
                .filter(|p| (p.src == u.a && p.dst == u.b) || (p.src == u.b && p.dst == u.a))
                .fold((None, Instant::ZERO), |(f, _), p| {
                    (f.or(Some(p.time)), p.time)
                });
            srt_flows.push(SrtFlowReplay {
                id,
                udp: u,
                caller: o.caller,
                listener: o.listener,
                first: first.unwrap_or(Instant::ZERO),
                last,
                seed,
                cookie_source: o.cookie_source,
                events: o.events,
                stats: o.stats,
            });
        }
        Replay {
            capture: capture.stats,
            capture_stopped: capture.stopped.clone(),
            flows,
            srt: srt_flows,
            udp,
        }
    }

    /// Every event of every flow, flow by flow (TCP flows, then SRT).
    pub fn events(&self) -> impl Iterator<Item = &ReplayEvent> {
        self.flows
            .iter()
            .flat_map(|f| f.events.iter())
            .chain(self.srt.iter().flat_map(|f| f.events.iter()))
    }

    /// The events as JSON lines (each ends with `\n`).
    pub fn to_json_lines(&self) -> String {
        let mut s = String::new();
        for e in self.events() {
            s.push_str(&e.to_json());
            s.push('\n');
        }
        s
    }

    /// A readable summary: flows, protocol, frame counts per codec and
    /// direction, keyframes, first/last timestamps, gaps and errors.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let c = &self.capture;
        let _ = writeln!(
            s,
            "capture: {} records, {} not TCP/UDP, {} malformed, {} IP fragments{}",
            c.records,
            c.not_tcp_udp,
            c.malformed,
            c.fragments,
            match &self.capture_stopped {
                Some(why) => format!(", stopped early: {why}"),
                None => String::new(),
            }
        );
        let _ = writeln!(s, "tcp flows: {}", self.flows.len());
        for f in &self.flows {
            let fl = &f.flow;
            let _ = writeln!(
                s,
                "flow {}: {} -> {}  {}  {} packets, {:.3}s..{:.3}s",
                fl.id,
                fl.client,
                fl.server,
                f.protocol
                    .map_or("unknown protocol (not replayed)", Protocol::name),
                fl.packets,
                fl.first.as_micros() as f64 / 1e6,
                fl.last.as_micros() as f64 / 1e6,
            );
            for (name, d) in [("c2s", &fl.to_server), ("s2c", &fl.to_client)] {
                let _ = writeln!(
                    s,
                    "  {name}: {} bytes, {} missing, {} retransmitted, {} out of order, {} overlapping{}",
                    d.delivered,
                    d.missing,
                    d.duplicates,
                    d.out_of_order,
                    d.overlaps,
                    if d.mid_stream { ", capture started mid-stream" } else { "" }
                );
            }
            if f.protocol.is_none() {
                continue;
            }
            let _ = writeln!(
                s,
                "  seed: {:#018x} ({}); machine output {} bytes, {} of {} captured server bytes reproduced",
                f.seed,
                match (f.seed_learned, f.protocol) {
                    (true, Some(Protocol::Rtsp)) => "learned from the Session header",
                    (true, _) => "learned from the handshake",
                    (false, _) => "fixed",
                },
                f.output_len,
                f.matching_output_prefix(),
                f.captured_output.len()
            );
            for e in &f.events {
                match &e.kind {
                    EventKind::Publish { app, stream, .. } => {
                        let _ = writeln!(s, "  publish {app}/{stream}");
                    }
                    EventKind::Play { app, stream, .. } => {
                        let _ = writeln!(s, "  play {app}/{stream}");
                    }
                    EventKind::End { reason } => {
                        let _ = writeln!(s, "  end ({}): {reason}", e.dir.name());
                    }
                    EventKind::Close { reason } => {
                        let _ = writeln!(s, "  close: {reason}");
                    }
                    EventKind::Gap { offset, len } => {
                        let _ = writeln!(s, "  gap ({}): {len} bytes at {offset}", e.dir.name());
                    }
                    EventKind::Error { message } => {
                        let _ = writeln!(s, "  error ({}): {message}", e.dir.name());
                    }
                    _ => {}
                }
            }
            media_summary(&mut s, &f.events);
        }
        for f in &self.srt {
            srt_summary(&mut s, f);
        }
        for u in &self.udp {
            let _ = writeln!(
                s,
                "udp {} <-> {}: {} datagrams, {} bytes (not replayed)",
                u.a, u.b, u.packets, u.bytes
            );
        }
        s
    }
}

/// The per-direction media lines of a flow's summary.
fn media_summary(s: &mut String, events: &[ReplayEvent]) {
    for dir in [Direction::ToServer, Direction::ToClient] {
        // Per codec: frames, configs, keyframes, first/last dts (ms).
        let mut by: BTreeMap<&'static str, (u64, u64, u64, i64, i64, u64)> = BTreeMap::new();
        let mut metadata = 0;
        for e in events.iter().filter(|e| e.dir == dir) {
            match &e.kind {
                EventKind::Frame(fr) => {
                    let ms = fr.dts_in(1000);
                    let v = by.entry(fr.codec.name()).or_insert((0, 0, 0, ms, ms, 0));
                    if fr.is_config() {
                        v.1 += 1;
                    } else {
                        if v.0 == 0 {
                            v.3 = ms;
                        }
                        v.0 += 1;
                        if fr.is_keyframe() && fr.kind() == MediaKind::Video {
                            v.2 += 1;
                        }
                        v.4 = ms;
                        v.5 += fr.payload.len() as u64;
                    }
                }
                EventKind::Metadata { .. } => metadata += 1,
                _ => {}
            }
        }
        if by.is_empty() && metadata == 0 {
            continue;
        }
        let _ = writeln!(
            s,
            "  media {} ({}), {metadata} metadata:",
            dir.name(),
            if dir == Direction::ToServer {
                "published"
            } else {
                "played"
            }
        );
        for (codec, (n, cfgs, keys, first, last, bytes)) in by {
            let _ = writeln!(
                s,
                "    {codec}: {n} frames, {cfgs} configs, {keys} keyframes, dts {first}..{last} ms, {bytes} bytes"
            );
        }
    }
}

/// The summary lines of an SRT flow.
fn srt_summary(s: &mut String, f: &SrtFlowReplay) {
    let t = &f.stats;
    let _ = writeln!(
        s,
        "srt flow {}: {} -> {}  srt  {} datagrams (c2s {}, s2c {}), {:.3}s..{:.3}s",
        f.id,
        f.caller,
        f.listener,
        f.udp.packets,
        t.c2s_datagrams,
        t.s2c_datagrams,
        f.first.as_micros() as f64 / 1e6,
        f.last.as_micros() as f64 / 1e6,
    );
    match f.handshake() {
        Some((sid, latency, enc)) => {
            let _ = writeln!(
                s,
                "  handshake: stream id {sid:?}, latency {latency} ms, {}; cookie from the {}",
                if enc { "encrypted" } else { "not encrypted" },
                f.cookie_source
            );
        }
        None => {
            let _ = writeln!(
                s,
                "  handshake: none replayed (cookie: {})",
                f.cookie_source
            );
        }
    }
    let _ = writeln!(
        s,
        "  captured c2s: {} data packets ({} retransmitted), {} payload bytes, {} drop requests; s2c: {} ACKs, {} NAKs reporting {} lost packets",
        t.data_packets, t.retransmitted, t.data_bytes, t.drop_reqs, t.acks, t.naks, t.nak_lost
    );
    let _ = writeln!(
        s,
        "  replay receiver: {} received ({} retransmitted), {} lost (dropped), {} too late, {} NAKs sent; {} payloads delivered, {} bytes",
        t.recv_received,
        t.recv_retransmitted,
        t.recv_dropped,
        t.recv_too_late,
        t.replay_naks,
        t.delivered,
        t.delivered_bytes
    );
    if t.undecodable > 0 || t.not_replayed > 0 {
        let _ = writeln!(
            s,
            "  {} datagrams not SRT, {} not replayed (limit)",
            t.undecodable, t.not_replayed
        );
    }
    for e in &f.events {
        match &e.kind {
            EventKind::Close { reason } => {
                let _ = writeln!(s, "  close: {reason}");
            }
            EventKind::Error { message } => {
                let _ = writeln!(s, "  error ({}): {message}", e.dir.name());
            }
            _ => {}
        }
    }
    media_summary(s, &f.events);
}
