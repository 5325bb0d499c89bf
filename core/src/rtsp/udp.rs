//! RTSP over UDP unicast (RFC 2326 §10.4 SETUP, §12.39 `Transport` with
//! `client_port` / `server_port`; RTP and RTCP per RFC 3550 §11): one RTP
//! socket and one RTCP socket for every session of the server, as a
//! [`DatagramService`].
//!
//! The RTSP control connection ([`RtspSession`](super::RtspSession), TCP)
//! negotiates the transport; at `PLAY` or `RECORD` it hands the media side
//! of the session to this service through its [`Inbox`] ("an object to
//! own"):
//!
//! - **Play**: the session's engine [`Subscriber`], the tracks' client
//!   addresses and the stream's shared [`StreamEgress`]. The service sends
//!   every frame's RTP packets — built once per stream in the frame's
//!   [`EgressSlot::Rtp`](crate::engine::EgressSlot::Rtp) cache, the same
//!   SSRC and sequence numbers for every viewer, over TCP and UDP alike — to
//!   each viewer's `client_port`, from `server_port`. The only per-viewer
//!   work is the send. An RTCP sender report goes to each track's RTCP port
//!   before that track's first RTP packet and every 5 s of media after.
//!   Loss is the viewer's business: nothing is resent and a viewer that
//!   cannot keep up falls behind in the engine's ring and skips to a
//!   keyframe; the service's own send queue is bounded
//!   ([`MAX_QUEUED_TRANSMITS`]) and shared fairly (a viewer is pulled only
//!   while it has room).
//! - **Record**: the engine [`Publisher`], the announced tracks' receivers
//!   and the client's ports. RTP from exactly the publisher's client
//!   address and port goes through the existing depacketizers
//!   ([`TrackReceiver`]) into the publisher; its sender reports put the
//!   tracks on one timeline; the service sends it a receiver report every
//!   5 s.
//!
//! **Liveness.** Any datagram from one of a session's client ports (RTCP
//! receiver reports, ffmpeg's NAT punch packets, RTP) keeps it alive; after
//! [`RtspUdpConfig::timeout`] (60 s, said in the `Session` header) without
//! one the session is dropped and its control connection told through the
//! one-shot reply it waits on ([`UdpEnd`]). The control connection going
//! away (TEARDOWN, TCP close, its own timeout) ends the media side too,
//! at once by a `Stop` command, and in any case at the next tick because
//! the reply's receiver is gone.
//!
//! **Set up, not yet played.** `SETUP` registers the client's RTP and RTCP
//! address (its IP and exact `client_port`s) with the service at once, not
//! only at `PLAY`/`RECORD`: ffmpeg and other clients send NAT punch packets
//! (an empty RTP packet, an RTCP receiver report) from their client ports
//! right after `SETUP`, and a session's client sends RTCP after its media
//! side ended. Datagrams from a set-up address that carries no media
//! session are ignored quietly (not junk, no log line). The registration
//! lives as long as the control connection's UDP side (at most two
//! addresses per track, within the session bounds below).
//!
//! **Hostile input.** A datagram from an address no session registered is
//! dropped after one hash lookup, counted
//! ([`RtspUdpServiceFactory::dropped_datagrams`]) and logged rate-limited.
//! Sessions are bounded overall and per client IP
//! ([`RtspUdpConfig::max_sessions_per_ip`]); the bound is taken at `SETUP`
//! (453 Not Enough Bandwidth beyond it), so a refused client never gets as
//! far as the service.
//!
//! Client ports `0-0` (some clients behind NAT) are tolerated: the first
//! datagram from the control connection's IP on that socket that no other
//! session claims teaches the port.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use smallvec::{smallvec, SmallVec};
use tracing::{debug, info, warn};

use super::session::{StreamEgress, MAX_TRACKS};
use crate::datagram::{
    reply, DatagramService, DatagramServiceFactory, Inbox, InboxError, InboxSender, Received,
    ReplyReceiver, ReplySender, SocketIndex, Transmit,
};
use crate::engine::{
    MediaStall, MediaWatchdog, Publisher, Recv, SharedFrame, Signal, StreamKey, Subscriber,
};
use crate::frame::{Frame, MediaKind};
use crate::log_limit::LogLimiter;
use crate::peer_text::escaped;
use crate::rtp::packetizer::{first_packet, records, Packetizer};
use crate::rtp::receiver::{Timeline, TrackReceiver};
use crate::rtp::rtcp::{self, ntp_from_unix_micros, RtcpPacket, SenderReport};
use crate::rtp::RtpPacket;
use crate::sdp::TrackInfo;
use crate::time::Instant;

/// Default RTP port of the service (RTCP on the next one), as MediaMTX.
pub const DEFAULT_RTP_PORT: u16 = 8000;
/// The RTP socket's position in the service's socket list.
pub const RTP_SOCKET: SocketIndex = SocketIndex(0);
/// The RTCP socket's position in the service's socket list.
pub const RTCP_SOCKET: SocketIndex = SocketIndex(1);
/// Datagrams the service queues before it stops pulling frames for its
/// viewers until the driver drained some (a viewer that is not pulled falls
/// behind in the engine's ring and skips to a keyframe).
pub const MAX_QUEUED_TRANSMITS: usize = 8192;
/// Commands waiting in the service's inbox, overall.
const INBOX_CAPACITY: usize = 1024;
/// Commands one control connection may have waiting.
const INBOX_PER_SENDER: usize = 4;
/// Interval of sender reports per played track, in media time.
const SR_INTERVAL_SECS: i64 = 5;
/// Interval of receiver reports to a publisher.
const RR_INTERVAL: Duration = Duration::from_secs(5);
/// Longest interval between liveness checks.
const MAX_TICK: Duration = Duration::from_secs(1);

static JUNK: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
static BAD_MEDIA: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
static ENDED: LogLimiter = LogLimiter::new(20, Duration::from_secs(10));

/// Settings of the RTSP UDP service (start from `default()` and chain the
/// `with_*` setters).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RtspUdpConfig {
    /// A session with no datagram from its client ports for this long is
    /// dropped (RFC 2326 §12.37; 60 s, said in the `Session` header).
    pub timeout: Duration,
    /// Most UDP sessions (players and publishers) at once.
    pub max_sessions: usize,
    /// Most UDP sessions from one client IP at once (0: no limit).
    pub max_sessions_per_ip: usize,
}

impl RtspUdpConfig {
    /// Sets [`timeout`](Self::timeout).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`max_sessions`](Self::max_sessions).
    pub fn with_max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n;
        self
    }

    /// Sets [`max_sessions_per_ip`](Self::max_sessions_per_ip).
    pub fn with_max_sessions_per_ip(mut self, n: usize) -> Self {
        self.max_sessions_per_ip = n;
        self
    }
}

impl Default for RtspUdpConfig {
    fn default() -> Self {
        RtspUdpConfig {
            timeout: super::session::SESSION_TIMEOUT,
            max_sessions: 4096,
            max_sessions_per_ip: 64,
        }
    }
}

/// Why the service ended the media side of a session (the answer the
/// control connection waits for).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UdpEnd {
    /// No datagram from the client's ports within the timeout.
    Timeout,
    /// The played stream ended (RTCP BYEs were sent).
    StreamEnded,
    /// The publisher sent no media in time.
    NoMedia(MediaStall),
    /// The service refused the session (full) or shut down.
    Refused,
}

/// The transport a `SETUP` chose (the first supported alternative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chosen {
    /// RTP/AVP/TCP with these interleaved channels.
    Tcp(u8, u8),
    /// RTP/AVP (or RTP/AVP/UDP) unicast to these client ports (0: learn).
    Udp(u16, u16),
}

/// Reads the first supported alternative of a `Transport` header (RFC 2326
/// §12.39): TCP interleaved (channels `default`, `default + 1` when the
/// client gave none) or, when `udp` is offered, UDP unicast with its
/// `client_port` (a single port means the pair starting there; none or
/// `0-0` means learn from the first datagram). Multicast is skipped.
pub(crate) fn choose_transport(header: &str, default: u8, udp: bool) -> Option<Chosen> {
    for alt in header.split(',') {
        let parts: SmallVec<[&str; 8]> = alt.split(';').map(str::trim).take(16).collect();
        let Some(proto) = parts.first() else { continue };
        let param = |name: &str| {
            parts.iter().find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
        };
        if proto.eq_ignore_ascii_case("RTP/AVP/TCP") {
            let (a, b) = param("interleaved")
                .and_then(|v| {
                    let (a, b) = v.split_once('-').unwrap_or((v, ""));
                    let a: u8 = a.trim().parse().ok()?;
                    let b: u8 = b.trim().parse().unwrap_or(a.saturating_add(1));
                    Some((a, b))
                })
                .unwrap_or((default, default.saturating_add(1)));
            return Some(Chosen::Tcp(a, b));
        }
        let is_udp =
            proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVP/UDP");
        if !is_udp || !udp || parts.iter().any(|p| p.eq_ignore_ascii_case("multicast")) {
            continue;
        }
        let ports = match param("client_port") {
            None => Some((0, 0)),
            Some(v) => {
                let (a, b) = v.split_once('-').unwrap_or((v, ""));
                a.trim().parse::<u16>().ok().map(|a| {
                    let b = b.trim().parse::<u16>().unwrap_or(if a == 0 {
                        0
                    } else {
                        a.saturating_add(1)
                    });
                    (a, b)
                })
            }
        };
        if let Some((a, b)) = ports {
            return Some(Chosen::Udp(a, b));
        }
    }
    None
}

#[derive(Debug, Default)]
struct SlotCounts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Client addresses set up by `SETUP` (RFC 2326 §10.4): (socket index,
/// client address) → the control connection's id. Shared by the control
/// connections (which add and remove their own entries) and the service
/// (which reads it for datagrams no media session claims). At most
/// `2 * MAX_TRACKS` entries per [`UdpLink`], and links are bounded by the
/// session slots.
type SetUpAddrs = Arc<Mutex<HashMap<(usize, SocketAddr), u64>>>;

/// A place among the service's sessions, held by a control connection from
/// its first UDP `SETUP` until it is dropped (the count goes down then).
#[derive(Debug)]
pub(crate) struct UdpSlot {
    counts: Arc<Mutex<SlotCounts>>,
    ip: IpAddr,
}

impl Drop for UdpSlot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// What a control connection hands the service.
pub(crate) enum UdpCommand {
    /// Start sending a stream to a viewer.
    Play(Box<UdpPlay>),
    /// Take over a publisher.
    Record(Box<UdpRecord>),
    /// The control connection ended the media side (PAUSE, TEARDOWN, close).
    Stop(u64),
}

impl core::fmt::Debug for UdpCommand {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UdpCommand::Play(p) => write!(f, "Play({})", p.id),
            UdpCommand::Record(r) => write!(f, "Record({})", r.id),
            UdpCommand::Stop(id) => write!(f, "Stop({id})"),
        }
    }
}

/// One played track's destination.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlayTrack {
    pub(crate) kind: MediaKind,
    pub(crate) rtp: SocketAddr,
    pub(crate) rtcp: SocketAddr,
}

/// A viewer handed over at PLAY.
pub(crate) struct UdpPlay {
    id: u64,
    peer: SocketAddr,
    key: StreamKey,
    tracks: Vec<PlayTrack>,
    egress: Arc<StreamEgress>,
    subscriber: Subscriber,
    /// Frames the control connection pulled for `RTP-Info` (the GOP cache).
    pending: Vec<SharedFrame>,
    done: ReplySender<UdpEnd>,
}

/// One recorded track.
#[derive(Debug)]
pub(crate) struct RecordTrack {
    pub(crate) info: TrackInfo,
    pub(crate) receiver: TrackReceiver,
    pub(crate) rtp: SocketAddr,
    pub(crate) rtcp: SocketAddr,
}

/// A publisher handed over at RECORD.
pub(crate) struct UdpRecord {
    id: u64,
    peer: SocketAddr,
    key: StreamKey,
    publisher: Publisher,
    tracks: Vec<RecordTrack>,
    timeline: Timeline,
    watchdog: MediaWatchdog,
    done: ReplySender<UdpEnd>,
}

/// What an [`RtspSession`](super::RtspSession) needs to use the UDP
/// service: its inbox, its ports and its session bounds. Give it to
/// [`RtspSessionFactory::with_udp`](super::RtspSessionFactory::with_udp).
#[derive(Debug, Clone)]
pub struct RtspUdpHandle {
    sender: InboxSender<UdpCommand>,
    /// `rtp << 16 | rtcp` once the service runs, 0 before.
    ports: Arc<AtomicU32>,
    counts: Arc<Mutex<SlotCounts>>,
    set_up: SetUpAddrs,
    next_id: Arc<AtomicU64>,
    config: RtspUdpConfig,
}

impl RtspUdpHandle {
    /// The service's (RTP, RTCP) ports, once it runs.
    pub fn server_ports(&self) -> Option<(u16, u16)> {
        match self.ports.load(Ordering::Acquire) {
            0 => None,
            p => Some(((p >> 16) as u16, p as u16)),
        }
    }

    /// The session timeout.
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// A place for a session from `ip`, or `None` when the service is full
    /// overall or for that IP.
    fn take_slot(&self, ip: IpAddr) -> Option<UdpSlot> {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if c.total >= self.config.max_sessions.max(1) {
            return None;
        }
        let n = c.per_ip.entry(ip).or_insert(0);
        if self.config.max_sessions_per_ip > 0 && *n >= self.config.max_sessions_per_ip {
            return None;
        }
        *n += 1;
        c.total += 1;
        Some(UdpSlot {
            counts: self.counts.clone(),
            ip,
        })
    }
}

/// Why a UDP `SETUP` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetupRefusal {
    /// Too many UDP sessions (overall or from this IP): 453.
    Full,
}

/// The UDP side of one control connection (lives in its
/// [`RtspSession`](super::RtspSession)).
#[derive(Debug)]
pub(crate) struct UdpLink {
    handle: RtspUdpHandle,
    _slot: UdpSlot,
    id: u64,
    peer: SocketAddr,
    /// Client (RTP, RTCP) ports per track index.
    ports: [Option<(u16, u16)>; MAX_TRACKS],
    wake: Signal,
    lease: Option<ReplyReceiver<UdpEnd>>,
}

impl UdpLink {
    /// The link of a control connection from `peer`, at its first UDP SETUP.
    pub(crate) fn new(handle: &RtspUdpHandle, peer: SocketAddr) -> Result<UdpLink, SetupRefusal> {
        let slot = handle.take_slot(peer.ip()).ok_or(SetupRefusal::Full)?;
        Ok(UdpLink {
            handle: RtspUdpHandle {
                sender: handle.sender.fork(),
                ..handle.clone()
            },
            _slot: slot,
            id: handle.next_id.fetch_add(1, Ordering::Relaxed),
            peer,
            ports: [None; MAX_TRACKS],
            wake: Signal::new(),
            lease: None,
        })
    }

    /// Records the client ports of track `idx`; the `Transport` answer.
    pub(crate) fn set_track(
        &mut self,
        idx: usize,
        rtp: u16,
        rtcp: u16,
        record: bool,
        ssrc: Option<u32>,
    ) -> String {
        if idx < MAX_TRACKS {
            // A repeated SETUP of a track replaces its addresses.
            self.unregister(idx);
            if let Some(p) = self.ports.get_mut(idx) {
                *p = Some((rtp, rtcp));
            }
            self.register(idx);
        }
        let (s_rtp, s_rtcp) = self.handle.server_ports().unwrap_or_default();
        let mut t =
            format!("RTP/AVP;unicast;client_port={rtp}-{rtcp};server_port={s_rtp}-{s_rtcp}");
        if let Some(ssrc) = ssrc {
            t.push_str(&format!(";ssrc={ssrc:08X}"));
        }
        if record {
            t.push_str(";mode=record");
        }
        t
    }

    /// Whether track `idx` was set up over UDP.
    pub(crate) fn has_track(&self, idx: usize) -> bool {
        self.ports.get(idx).is_some_and(Option::is_some)
    }

    /// (socket, address) pairs of track `idx` with a known port.
    fn set_up_keys(&self, idx: usize) -> SmallVec<[(usize, SocketAddr); 2]> {
        let Some((rtp, rtcp)) = self.addrs(idx) else {
            return SmallVec::new();
        };
        [(0usize, rtp), (1usize, rtcp)]
            .into_iter()
            .filter(|(_, a)| a.port() != 0)
            .collect()
    }

    /// Tells the service that datagrams from track `idx`'s client ports
    /// are expected (NAT punch packets before PLAY).
    fn register(&self, idx: usize) {
        let keys = self.set_up_keys(idx);
        if keys.is_empty() {
            return;
        }
        let mut m = self.handle.set_up.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            m.insert(k, self.id);
        }
    }

    /// Withdraws track `idx`'s client ports (unless another track of this
    /// link uses the same address, or another link took it over).
    fn unregister(&self, idx: usize) {
        let keys = self.set_up_keys(idx);
        if keys.is_empty() {
            return;
        }
        let others: SmallVec<[(usize, SocketAddr); 8]> = (0..MAX_TRACKS)
            .filter(|&j| j != idx)
            .flat_map(|j| self.set_up_keys(j))
            .collect();
        let mut m = self.handle.set_up.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            if !others.contains(&k) && m.get(&k) == Some(&self.id) {
                m.remove(&k);
            }
        }
    }

    fn addrs(&self, idx: usize) -> Option<(SocketAddr, SocketAddr)> {
        let (rtp, rtcp) = (*self.ports.get(idx)?)?;
        let ip = self.peer.ip();
        Some((SocketAddr::new(ip, rtp), SocketAddr::new(ip, rtcp)))
    }

    fn lease(&mut self) -> ReplySender<UdpEnd> {
        let (tx, rx) = reply(self.wake.clone());
        self.lease = Some(rx);
        tx
    }

    /// Hands a viewer to the service (PLAY): `tracks` are (track index,
    /// kind) of the tracks set up.
    pub(crate) fn start_play(
        &mut self,
        key: StreamKey,
        tracks: &[(usize, MediaKind)],
        egress: Arc<StreamEgress>,
        subscriber: Subscriber,
        pending: Vec<SharedFrame>,
    ) -> Result<(), InboxError> {
        let tracks = tracks
            .iter()
            .filter_map(|&(i, kind)| {
                let (rtp, rtcp) = self.addrs(i)?;
                Some(PlayTrack { kind, rtp, rtcp })
            })
            .collect();
        let done = self.lease();
        let cmd = UdpPlay {
            id: self.id,
            peer: self.peer,
            key,
            tracks,
            egress,
            subscriber,
            pending,
            done,
        };
        self.send(UdpCommand::Play(Box::new(cmd)))
    }

    /// Hands a publisher to the service (RECORD): `tracks` are (track
    /// index, info, receiver) of the tracks set up.
    pub(crate) fn start_record(
        &mut self,
        key: StreamKey,
        publisher: Publisher,
        tracks: Vec<(usize, TrackInfo, TrackReceiver)>,
        timeline: Timeline,
        watchdog: MediaWatchdog,
    ) -> Result<(), InboxError> {
        let tracks = tracks
            .into_iter()
            .filter_map(|(i, info, receiver)| {
                let (rtp, rtcp) = self.addrs(i)?;
                Some(RecordTrack {
                    info,
                    receiver,
                    rtp,
                    rtcp,
                })
            })
            .collect();
        let done = self.lease();
        let cmd = UdpRecord {
            id: self.id,
            peer: self.peer,
            key,
            publisher,
            tracks,
            timeline,
            watchdog,
            done,
        };
        self.send(UdpCommand::Record(Box::new(cmd)))
    }

    fn send(&mut self, cmd: UdpCommand) -> Result<(), InboxError> {
        self.handle.sender.send(cmd).map_err(|(e, cmd)| {
            // Drop the command (and the publisher or subscriber in it) now.
            drop(cmd);
            self.lease = None;
            e
        })
    }

    /// Ends the media side (PAUSE, TEARDOWN, close).
    pub(crate) fn stop(&mut self) {
        if self.lease.take().is_some() {
            // If the inbox is full the service still notices at its next
            // tick: the reply's receiver is gone.
            let _ = self.handle.sender.send(UdpCommand::Stop(self.id));
        }
    }

    /// Whether the service carries this session's media now.
    pub(crate) fn active(&self) -> bool {
        self.lease.is_some()
    }

    /// The service's answer, once it ended the media side.
    pub(crate) fn poll_end(&mut self) -> Option<UdpEnd> {
        let end = match self.lease.as_mut()?.try_take()? {
            Ok(end) => end,
            Err(_) => UdpEnd::Refused,
        };
        self.lease = None;
        Some(end)
    }

    /// The signal the answer wakes (while the service carries the media).
    pub(crate) fn signal(&self) -> Option<Signal> {
        self.lease.as_ref().map(|_| self.wake.clone())
    }
}

impl Drop for UdpLink {
    fn drop(&mut self) {
        self.stop();
        let mut m = self.handle.set_up.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, id| *id != self.id);
    }
}

/// Builds the RTSP UDP service and hands out the [`RtspUdpHandle`] its
/// control connections use. One service per factory: the inbox goes to the
/// first [`new_service`](DatagramServiceFactory::new_service).
pub struct RtspUdpServiceFactory {
    config: RtspUdpConfig,
    inbox: Mutex<Option<Inbox<UdpCommand>>>,
    handle: RtspUdpHandle,
    dropped: Arc<AtomicU64>,
}

impl core::fmt::Debug for RtspUdpServiceFactory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RtspUdpServiceFactory")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RtspUdpServiceFactory {
    /// A service with `config` (the engine side comes with each session's
    /// subscriber or publisher).
    pub fn new(config: RtspUdpConfig) -> Self {
        let inbox = Inbox::new(INBOX_CAPACITY, INBOX_PER_SENDER);
        let handle = RtspUdpHandle {
            sender: inbox.sender(),
            ports: Arc::new(AtomicU32::new(0)),
            counts: Arc::default(),
            set_up: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
            config: config.clone(),
        };
        RtspUdpServiceFactory {
            config,
            inbox: Mutex::new(Some(inbox)),
            handle,
            dropped: Arc::default(),
        }
    }

    /// The handle for [`RtspSessionFactory::with_udp`](super::RtspSessionFactory::with_udp).
    pub fn handle(&self) -> RtspUdpHandle {
        self.handle.clone()
    }

    /// Datagrams dropped because no session expects them (junk, strangers).
    pub fn dropped_datagrams(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The service itself (also usable without the trait): `sockets` are
    /// the bound RTP and RTCP addresses.
    pub fn service(&self, sockets: &[SocketAddr], now: Instant) -> RtspUdpService {
        let rtp = sockets.first().map_or(0, SocketAddr::port);
        let rtcp = sockets.get(1).map_or(0, SocketAddr::port);
        self.handle
            .ports
            .store(u32::from(rtp) << 16 | u32::from(rtcp), Ordering::Release);
        let inbox = self
            .inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            // A second service gets an inbox nobody sends to.
            .unwrap_or_else(|| Inbox::new(1, 1));
        RtspUdpService {
            config: self.config.clone(),
            inbox,
            sessions: HashMap::new(),
            routes: [HashMap::new(), HashMap::new()],
            learn: Vec::new(),
            set_up: self.handle.set_up.clone(),
            streams: Vec::new(),
            media_version: 0,
            out: VecDeque::new(),
            backlog: false,
            now,
            next_tick: now + MAX_TICK,
            closing: false,
            dropped: self.dropped.clone(),
            rr_ssrc: 0x5EED_0001,
        }
    }
}

impl DatagramServiceFactory for RtspUdpServiceFactory {
    fn new_service(
        &self,
        sockets: &[SocketAddr],
        now: Instant,
        seed: u64,
    ) -> Box<dyn DatagramService> {
        let mut s = self.service(sockets, now);
        s.rr_ssrc = (seed >> 16) as u32 | 1;
        Box::new(s)
    }
}

#[derive(Debug)]
struct ViewerTrack {
    t: PlayTrack,
    sr_sent: bool,
    last_sr_pts: i64,
    packets: u32,
    octets: u32,
}

struct Viewer {
    key: StreamKey,
    tracks: SmallVec<[ViewerTrack; 2]>,
    egress: Arc<StreamEgress>,
    subscriber: Subscriber,
    pending: VecDeque<SharedFrame>,
}

struct Recorder {
    key: StreamKey,
    publisher: Publisher,
    tracks: Vec<RecordTrack>,
    timeline: Timeline,
    watchdog: MediaWatchdog,
    frames: Vec<Frame>,
    next_rr: Instant,
}

enum Media {
    Play(Viewer),
    Record(Recorder),
}

struct Session {
    peer: SocketAddr,
    last_seen: Instant,
    done: Option<ReplySender<UdpEnd>>,
    media: Media,
    /// Socket addresses this session registered in the routes.
    routed: SmallVec<[(usize, SocketAddr); 4]>,
}

/// The RTSP UDP service (see the module documentation).
///
/// Invariants: at most [`RtspUdpConfig::max_sessions`] sessions (the
/// control connections hold the slots); every queued datagram is for a
/// live session and at most [`MAX_QUEUED_TRANSMITS`] wait (beyond that no
/// frame is pulled); a datagram is routed by its exact source address and
/// receiving socket, or dropped.
pub struct RtspUdpService {
    config: RtspUdpConfig,
    inbox: Inbox<UdpCommand>,
    sessions: HashMap<u64, Session>,
    /// Per socket (RTP, RTCP): client address → (session, track).
    routes: [HashMap<SocketAddr, (u64, usize)>; 2],
    /// Sessions with a track whose client ports are still to learn
    /// (`client_port=0-0`): (session, track, socket).
    learn: Vec<(u64, usize, usize)>,
    /// Client addresses set up by the control connections (read only).
    set_up: SetUpAddrs,
    /// Each played stream's signal once, with its viewers.
    streams: Vec<(Signal, Vec<u64>)>,
    media_version: u64,
    out: VecDeque<Transmit>,
    /// Frames were left unpulled because the queue was full.
    backlog: bool,
    now: Instant,
    next_tick: Instant,
    closing: bool,
    dropped: Arc<AtomicU64>,
    rr_ssrc: u32,
}

impl core::fmt::Debug for RtspUdpService {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RtspUdpService")
            .field("sessions", &self.sessions.len())
            .field("queued", &self.out.len())
            .finish_non_exhaustive()
    }
}

/// The sender report of a track at a frame's first packet.
fn sender_report(entry: &Frame, first_rtp_time: u32, ssrc: u32, t: &ViewerTrack) -> Bytes {
    let micros = crate::frame::rescale(entry.pts, entry.timebase, 1_000_000);
    let sr = SenderReport {
        ssrc,
        // NTP time on the stream's own axis: tracks share it.
        ntp: ntp_from_unix_micros(1_767_225_600_000_000u64.saturating_add_signed(micros)),
        rtp_time: first_rtp_time,
        packet_count: t.packets,
        octet_count: t.octets,
    };
    rtcp::sender_report_compound(&sr, b"arcly")
}

impl RtspUdpService {
    /// UDP sessions carried now.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    fn rebuild_streams(&mut self) {
        let mut streams: Vec<(Signal, Vec<u64>)> = Vec::new();
        for (&id, s) in &self.sessions {
            if let Media::Play(v) = &s.media {
                let sig = v.subscriber.signal();
                match streams.iter_mut().find(|(s, _)| s.ptr_eq(&sig)) {
                    Some((_, ids)) => ids.push(id),
                    None => streams.push((sig, vec![id])),
                }
            }
        }
        self.streams = streams;
        self.media_version = self.media_version.wrapping_add(1);
    }

    fn route(&mut self, id: u64, track: usize, rtp: SocketAddr, rtcp: SocketAddr) {
        for (sock, addr) in [(0usize, rtp), (1usize, rtcp)] {
            if addr.port() == 0 {
                self.learn.push((id, track, sock));
                continue;
            }
            if let Some(routes) = self.routes.get_mut(sock) {
                routes.insert(addr, (id, track));
            }
            if let Some(s) = self.sessions.get_mut(&id) {
                s.routed.push((sock, addr));
            }
        }
    }

    fn add(&mut self, id: u64, peer: SocketAddr, media: Media, done: ReplySender<UdpEnd>) {
        if self.closing
            || (self.sessions.len() >= self.config.max_sessions.max(1)
                && !self.sessions.contains_key(&id))
        {
            let _ = done.send(UdpEnd::Refused);
            return;
        }
        // A new PLAY/RECORD of the same control connection replaces the old one.
        self.remove(id, None);
        let addrs: SmallVec<[(usize, SocketAddr, SocketAddr); 2]> = match &media {
            Media::Play(v) => v
                .tracks
                .iter()
                .enumerate()
                .map(|(i, t)| (i, t.t.rtp, t.t.rtcp))
                .collect(),
            Media::Record(r) => r
                .tracks
                .iter()
                .enumerate()
                .map(|(i, t)| (i, t.rtp, t.rtcp))
                .collect(),
        };
        let is_play = matches!(media, Media::Play(_));
        self.sessions.insert(
            id,
            Session {
                peer,
                last_seen: self.now,
                done: Some(done),
                media,
                routed: SmallVec::new(),
            },
        );
        for (i, rtp, rtcp) in addrs {
            self.route(id, i, rtp, rtcp);
        }
        if is_play {
            self.rebuild_streams();
            self.pull(id);
        }
    }

    /// Removes a session; `end` is told to its control connection.
    fn remove(&mut self, id: u64, end: Option<UdpEnd>) {
        let Some(mut s) = self.sessions.remove(&id) else {
            return;
        };
        let purge = matches!(end, None | Some(UdpEnd::Timeout));
        for (sock, addr) in &s.routed {
            if let Some(routes) = self.routes.get_mut(*sock) {
                if routes.get(addr).is_some_and(|(i, _)| *i == id) {
                    routes.remove(addr);
                }
            }
        }
        self.learn.retain(|(i, _, _)| *i != id);
        if let (Some(end), Some(done)) = (end, s.done.take()) {
            let _ = done.send(end);
        }
        if matches!(s.media, Media::Play(_)) {
            if purge {
                // Queued media for a viewer that stopped or vanished is not sent.
                let dests: SmallVec<[SocketAddr; 4]> = s.routed.iter().map(|(_, a)| *a).collect();
                if !dests.is_empty() {
                    self.out.retain(|t| !dests.contains(&t.destination));
                }
            }
            self.rebuild_streams();
        }
    }

    fn handle_command(&mut self, cmd: UdpCommand) {
        match cmd {
            UdpCommand::Play(p) => {
                let p = *p;
                info!(peer = %p.peer, stream = %p.key, tracks = p.tracks.len(), "rtsp udp play started");
                let viewer = Viewer {
                    key: p.key,
                    tracks: p
                        .tracks
                        .into_iter()
                        .map(|t| ViewerTrack {
                            t,
                            sr_sent: false,
                            last_sr_pts: 0,
                            packets: 0,
                            octets: 0,
                        })
                        .collect(),
                    egress: p.egress,
                    subscriber: p.subscriber,
                    pending: p.pending.into(),
                };
                self.add(p.id, p.peer, Media::Play(viewer), p.done);
            }
            UdpCommand::Record(r) => {
                let r = *r;
                info!(peer = %r.peer, stream = %r.key, tracks = r.tracks.len(), "rtsp udp publish started");
                let rec = Recorder {
                    key: r.key,
                    publisher: r.publisher,
                    tracks: r.tracks,
                    timeline: r.timeline,
                    watchdog: r.watchdog,
                    frames: Vec::new(),
                    next_rr: self.now,
                };
                self.add(r.id, r.peer, Media::Record(rec), r.done);
                self.send_receiver_reports(r.id);
            }
            UdpCommand::Stop(id) => {
                if let Some(s) = self.sessions.get(&id) {
                    debug!(peer = %s.peer, "rtsp udp session stopped by its control connection");
                }
                self.remove(id, None);
            }
        }
    }

    /// Pulls frames for one viewer while the queue has room.
    fn pull(&mut self, id: u64) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let Media::Play(v) = &mut s.media else { return };
        let mut ended = false;
        while self.out.len() < MAX_QUEUED_TRANSMITS {
            let entry = match v.pending.pop_front() {
                Some(f) => f,
                None => match v.subscriber.recv() {
                    Recv::Frame(f) => f,
                    Recv::Empty => break,
                    Recv::End => {
                        ended = true;
                        break;
                    }
                },
            };
            send_frame(v, &entry, &mut self.out);
        }
        if self.out.len() >= MAX_QUEUED_TRANSMITS {
            self.backlog = true;
        }
        if ended {
            send_byes(v, &mut self.out);
            if let Some(suppressed) = ENDED.check(self.now) {
                info!(peer = %s.peer, stream = %v.key, suppressed, "rtsp udp played stream ended");
            }
            self.remove(id, Some(UdpEnd::StreamEnded));
        }
    }

    fn send_receiver_reports(&mut self, id: u64) {
        let now = self.now;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let Media::Record(r) = &mut s.media else {
            return;
        };
        if now < r.next_rr {
            return;
        }
        r.next_rr = now + RR_INTERVAL;
        let mut b = BytesMut::with_capacity(32);
        rtcp::write_receiver_report(&mut b, self.rr_ssrc);
        rtcp::write_sdes_cname(&mut b, self.rr_ssrc, b"arcly");
        let rr = b.freeze();
        for t in &r.tracks {
            if t.rtcp.port() != 0 && self.out.len() < MAX_QUEUED_TRANSMITS {
                self.out.push_back(Transmit {
                    socket: RTCP_SOCKET,
                    src_ip: None,
                    destination: t.rtcp,
                    contents: smallvec![rr.clone()],
                });
            }
        }
    }

    fn junk(&mut self, d: &Received, why: &str) {
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(suppressed) = JUNK.check(self.now) {
            warn!(
                src = %d.src,
                socket = d.socket.0,
                len = d.contents.len(),
                dropped_total = n,
                reason = why,
                suppressed,
                "rtsp udp datagram dropped"
            );
        }
    }

    /// Whether a control connection set up `src` as a client port on
    /// socket `sock`.
    fn is_set_up(&self, sock: usize, src: SocketAddr) -> bool {
        self.set_up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&(sock, src))
    }

    /// A datagram from an unknown address: teaches a `client_port=0-0`
    /// session its port if one from that IP waits on this socket.
    fn try_learn(&mut self, sock: usize, src: SocketAddr) -> bool {
        let Some(pos) = self.learn.iter().position(|&(id, _, s)| {
            s == sock
                && self
                    .sessions
                    .get(&id)
                    .is_some_and(|x| x.peer.ip() == src.ip())
        }) else {
            return false;
        };
        let (id, track, _) = self.learn.swap_remove(pos);
        if let Some(routes) = self.routes.get_mut(sock) {
            routes.insert(src, (id, track));
        }
        if let Some(s) = self.sessions.get_mut(&id) {
            s.routed.push((sock, src));
            match &mut s.media {
                Media::Play(v) => {
                    if let Some(t) = v.tracks.get_mut(track) {
                        if sock == 0 {
                            t.t.rtp = src;
                        } else {
                            t.t.rtcp = src;
                        }
                    }
                }
                Media::Record(r) => {
                    if let Some(t) = r.tracks.get_mut(track) {
                        if sock == 0 {
                            t.rtp = src;
                        } else {
                            t.rtcp = src;
                        }
                    }
                }
            }
        }
        true
    }

    fn on_record_datagram(&mut self, id: u64, track: usize, sock: usize, data: &Bytes) {
        let now = self.now;
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let Media::Record(r) = &mut s.media else {
            return;
        };
        let Some(t) = r.tracks.get_mut(track) else {
            return;
        };
        let result = if sock == 0 {
            RtpPacket::parse(data).and_then(|pkt| {
                if pkt.payload_type != t.info.payload_type {
                    return Ok(());
                }
                t.receiver
                    .handle_packet(now, &mut r.timeline, pkt, &mut r.frames)
            })
        } else {
            rtcp::parse_compound(data).map(|pkts| {
                for pk in pkts {
                    if let RtcpPacket::SenderReport(sr) = pk {
                        t.receiver.handle_sender_report(now, &mut r.timeline, &sr);
                    }
                }
            })
        };
        if let Err(e) = result {
            if let Some(suppressed) = BAD_MEDIA.check(now) {
                debug!(peer = %s.peer, stream = %r.key, error = %escaped(&e.to_string()), suppressed, "rtsp udp: bad packet dropped");
            }
        }
        for f in r.frames.drain(..) {
            r.watchdog.on_frame(now, &f);
            r.publisher.send(f);
        }
    }

    fn tick(&mut self) {
        let now = self.now;
        let mut ended: SmallVec<[(u64, UdpEnd); 4]> = SmallVec::new();
        let mut rr: SmallVec<[u64; 4]> = SmallVec::new();
        for (&id, s) in &self.sessions {
            if s.done.as_ref().map_or(true, ReplySender::is_canceled) {
                // The control connection is gone.
                ended.push((id, UdpEnd::Refused));
                continue;
            }
            if now.saturating_duration_since(s.last_seen) >= self.config.timeout {
                ended.push((id, UdpEnd::Timeout));
                continue;
            }
            if let Media::Record(r) = &s.media {
                if let Err(stall) = r.watchdog.check(now) {
                    ended.push((id, UdpEnd::NoMedia(stall)));
                    continue;
                }
                rr.push(id);
            }
        }
        for (id, end) in ended {
            if let Some(s) = self.sessions.get(&id) {
                if end == UdpEnd::Timeout {
                    if let Some(suppressed) = ENDED.check(now) {
                        warn!(peer = %s.peer, timeout_s = self.config.timeout.as_secs_f64(), suppressed, "rtsp udp session timed out: no datagram from the client");
                    }
                }
            }
            self.remove(id, Some(end));
        }
        for id in rr {
            self.send_receiver_reports(id);
        }
    }

    fn tick_interval(&self) -> Duration {
        (self.config.timeout / 4).clamp(Duration::from_millis(10), MAX_TICK)
    }
}

/// Sends one frame's packets to a viewer (an SR first where due).
fn send_frame(v: &mut Viewer, entry: &SharedFrame, out: &mut VecDeque<Transmit>) {
    let packets = v.egress.packets(entry);
    let f = &entry.frame;
    if f.is_config() || packets.is_empty() {
        return;
    }
    let Some(t) = v.tracks.iter_mut().find(|t| t.t.kind == f.kind()) else {
        return;
    };
    let pts_s = f.pts.div_euclid(i64::from(f.timebase.max(1)));
    if !t.sr_sent || pts_s - t.last_sr_pts >= SR_INTERVAL_SECS {
        let ssrc = v
            .egress
            .slot(t.t.kind)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Packetizer::ssrc);
        if let (Some(fp), Some(ssrc)) = (first_packet(&packets), ssrc) {
            if t.t.rtcp.port() != 0 {
                out.push_back(Transmit {
                    socket: RTCP_SOCKET,
                    src_ip: None,
                    destination: t.t.rtcp,
                    contents: smallvec![sender_report(f, fp.timestamp, ssrc, t)],
                });
            }
            t.sr_sent = true;
            t.last_sr_pts = pts_s;
        }
    }
    for rec in records(&packets) {
        let pkt = rec.slice(2..);
        t.packets = t.packets.wrapping_add(1);
        t.octets = t
            .octets
            .wrapping_add(pkt.len().saturating_sub(crate::rtp::HEADER_LEN) as u32);
        if t.t.rtp.port() != 0 {
            out.push_back(Transmit {
                socket: RTP_SOCKET,
                src_ip: None,
                destination: t.t.rtp,
                contents: smallvec![pkt],
            });
        }
    }
}

/// An RTCP SR + BYE per track: the stream is over.
fn send_byes(v: &Viewer, out: &mut VecDeque<Transmit>) {
    for t in &v.tracks {
        if t.t.rtcp.port() == 0 {
            continue;
        }
        let ssrc = v
            .egress
            .slot(t.t.kind)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, Packetizer::ssrc);
        let mut b = BytesMut::new();
        rtcp::write_sender_report(
            &mut b,
            &SenderReport {
                ssrc,
                ntp: 0,
                rtp_time: 0,
                packet_count: t.packets,
                octet_count: t.octets,
            },
        );
        rtcp::write_bye(&mut b, ssrc);
        out.push_back(Transmit {
            socket: RTCP_SOCKET,
            src_ip: None,
            destination: t.t.rtcp,
            contents: smallvec![b.freeze()],
        });
    }
}

impl DatagramService for RtspUdpService {
    fn handle_datagram(&mut self, now: Instant, d: Received) {
        self.now = now;
        let sock = d.socket.get();
        if sock > 1 {
            return self.junk(&d, "unknown socket");
        }
        let route = self.routes.get(sock).and_then(|r| r.get(&d.src)).copied();
        let (id, track) = match route {
            Some(r) => r,
            None => {
                if self.is_set_up(sock, d.src) {
                    // A set-up client's NAT punch packet or RTCP before
                    // PLAY/RECORD (or after its media side ended): expected.
                    return;
                }
                if !self.learn.is_empty() && self.try_learn(sock, d.src) {
                    match self.routes.get(sock).and_then(|r| r.get(&d.src)).copied() {
                        Some(r) => r,
                        None => return,
                    }
                } else {
                    return self.junk(&d, "no session for this address");
                }
            }
        };
        let is_record = match self.sessions.get_mut(&id) {
            Some(s) => {
                s.last_seen = now;
                matches!(s.media, Media::Record(_))
            }
            None => return self.junk(&d, "session gone"),
        };
        if is_record {
            self.on_record_datagram(id, track, sock, &d.contents);
        }
        // A viewer's datagrams (RTCP receiver reports, punch packets) only
        // keep it alive.
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.backlog {
            self.backlog = false;
            let ids: Vec<u64> = self
                .streams
                .iter()
                .flat_map(|(_, ids)| ids.iter().copied())
                .collect();
            for id in ids {
                self.pull(id);
            }
        }
        if now >= self.next_tick {
            self.next_tick = now + self.tick_interval();
            self.tick();
        }
    }

    fn command_signal(&self) -> Option<Signal> {
        Some(self.inbox.signal())
    }

    fn handle_commands(&mut self, now: Instant) {
        self.now = now;
        while let Some(cmd) = self.inbox.try_recv() {
            self.handle_command(cmd);
        }
    }

    fn handle_media(&mut self, now: Instant, fired: &[usize]) {
        self.now = now;
        let mut ids: SmallVec<[u64; 16]> = SmallVec::new();
        for &i in fired {
            if let Some((_, v)) = self.streams.get(i) {
                ids.extend(v.iter().copied());
            }
        }
        for id in ids {
            self.pull(id);
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.backlog {
            return Some(self.now);
        }
        if self.closing && self.out.is_empty() {
            return None;
        }
        Some(self.next_tick)
    }

    fn media_version(&self) -> u64 {
        self.media_version
    }

    fn media_signals(&self, out: &mut Vec<Signal>) {
        out.extend(self.streams.iter().map(|(s, _)| s.clone()));
    }

    fn close(&mut self, _now: Instant) {
        self.closing = true;
        let ids: Vec<u64> = self.sessions.keys().copied().collect();
        for id in ids {
            if let Some(Session {
                media: Media::Play(v),
                ..
            }) = self.sessions.get(&id)
            {
                send_byes(v, &mut self.out);
            }
            self.remove(id, Some(UdpEnd::Refused));
        }
    }

    fn is_closed(&self) -> bool {
        self.closing && self.out.is_empty()
    }
}
