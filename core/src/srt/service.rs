//! Engine glue for SRT: the [`Endpoint`] of one UDP socket joined to the
//! [`Engine`] and an [`Admission`] policy, behind the runtime-free
//! [`DatagramService`] shape every adapter drives with one UDP loop.
//!
//! - **Admission** (draft-sharabayko-srt-01 §3.2.1.3 stream id, libsrt
//!   access control): each caller's parsed stream id
//!   (`publish:live/cam`, `read:live/cam`, `#!::r=live/cam,m=publish`) is
//!   put to the [`Admission`] and then to the engine. Refusals are
//!   answered with the access-control reject codes libsrt and MediaMTX use:
//!   bad stream id `SRT_REJX_BAD_REQUEST` (1400) / `SRT_REJX_BAD_MODE`
//!   (1405), refused by the application `SRT_REJX_FORBIDDEN` (1403),
//!   unknown stream or app `SRT_REJX_NOTFOUND` (1404), stream already
//!   published `SRT_REJX_CONFLICT` (1409), engine limits
//!   `SRT_REJX_OVERLOAD` (1402), service closing `SRT_REJ_CLOSE`.
//! - **Publish** goes through [`Engine::publish_from`] (per-address
//!   publisher limit, reject 1402) and is watched by a [`MediaWatchdog`]:
//!   no media frame within the app's first-media timeout (10 s) or none
//!   for its media timeout (15 s) closes the connection and frees the
//!   slot. Payloads delivered under TSBPD are MPEG-TS; a
//!   [`TsDemuxer`] turns them into frames for the [`Publisher`]. The stream
//!   ends when the connection closes (its buffered tail is demuxed first).
//!   Payloads without a single valid TS packet are counted; a peer sending
//!   nothing else for [`SrtServiceConfig::garbage_timeout`] is closed.
//! - **Play**: every frame's TS bytes come from one muxer per stream shared
//!   by all viewers ([`TsEgress`], cached in the frame's `EgressSlot::Ts`),
//!   cut into [`PAYLOAD_SIZE`]-byte payloads (7 × 188) by `Bytes::slice`,
//!   so every viewer sends the same memory. A viewer starts at a start
//!   point, with PAT/PMT first. When the connection's send buffer is full,
//!   frames stay in the engine's ring (where a viewer that falls behind
//!   skips to the next keyframe, as for RTMP); pulling resumes when ACKs
//!   free the buffer.
//! - **Proof of life**: a viewer must acknowledge what it is sent. Before
//!   its first ACK it gets at most
//!   [`INITIAL_UNACKED_WINDOW`](super::connection::INITIAL_UNACKED_WINDOW)
//!   packets; data unacknowledged for 1 s pauses its sender (one probe a
//!   second) and for 5 s (libsrt's peer idle timeout) closes it, with a
//!   rate-limited warning and [`SrtServiceStats::viewers_unresponsive`]
//!   (see [`super::connection`]). KEEPALIVEs do not count.
//! - **Time**: packets are stamped with the instant they are handed to
//!   [`Endpoint::send`], as libsrt's live mode does by default (`srctime`
//!   0). Frames arrive from the engine at the publisher's pace, so the
//!   receiver's TSBPD replays that pace; the GOP burst a new viewer gets is
//!   stamped "now" and is therefore never too late to play.
//!
//! - **Media wake-ups**: the service keeps one watch per played stream
//!   (its signal and its viewers, in a slab) and lists to the driver only
//!   the streams with a viewer that waits for media (not blocked on its
//!   send buffer, not ending), bumping its media version when that list
//!   changes. A wake for one stream pulls for that stream's viewers only.
//! - **Sockets**: SRT serves one UDP socket (the first the factory is
//!   given); its transmits name socket 0. On a wildcard bind each peer is
//!   answered from the local address it wrote to (the datagram's
//!   `dst_ip`, remembered per peer address in a map bounded by twice the
//!   endpoint's connection limit, cleared when full), so a multi-homed
//!   host does not answer from another address than the one the caller
//!   knows.
//!
//! Invariants: every queue is bounded — the endpoint's (transmit, events,
//! connections), the engine's ring per stream, and per viewer at most one
//! frame's TS bytes plus one PAT/PMT pair waiting for room in the send
//! buffer.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use tracing::{debug, info, warn};

use super::egress::{starts_with_pat, StreamMux, TsEgress, TsFrame};
use super::endpoint::{
    ConnectionRequest, Endpoint, EndpointConfig, EndpointEvent, EndpointSendError, PENDING_TIMEOUT,
};
use super::handshake::RejectReason;
use super::packet::SocketId;
use super::stream_id::{StreamId, StreamMode};
use crate::admission::{
    Admission, AdmissionKind, AdmissionRequest, AdmissionWait, AllowAll, Decision, RejectCode,
    Rejection,
};
use crate::container::ts::{TsDemuxer, PACKET_SIZE};
use crate::datagram::{DatagramService, DatagramServiceFactory, Received, Transmit};
use crate::engine::{
    Engine, MediaStall, MediaWatchdog, Publisher, Recv, SessionTag, Signal, StreamStats, Subscriber,
};
use crate::log_limit::LogLimiter;
use crate::peer_text::escaped;
use crate::session::{CloseReason, ProtocolError};
use crate::time::Instant;

/// Deferred admission decisions one IP address may have pending on a
/// service at once; its further requests are refused with
/// `SRT_REJX_OVERLOAD` before the application is asked.
/// (All pending requests together are bounded by the endpoint's
/// `max_connections`.)
pub const MAX_ADMISSION_WAITS_PER_IP: usize = 8;

/// Bytes of MPEG-TS per SRT payload: 7 transport packets, the size libsrt
/// live mode and ffmpeg use (`SRT_LIVE_DEF_PLSIZE`).
pub const PAYLOAD_SIZE: usize = 7 * PACKET_SIZE;

/// Settings of an [`SrtService`].
///
/// `#[non_exhaustive]`: build it with [`SrtServiceConfig::default`] or
/// [`SrtServiceConfig::with_endpoint`] and assign fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SrtServiceConfig {
    /// The endpoint's settings (latency, MTU, limits, and whatever the
    /// crypto layer adds). `cookie_secret` and `rng_seed` are mixed with the
    /// factory's `seed` for each service.
    pub endpoint: EndpointConfig,
    /// A publisher whose payloads contain no valid MPEG-TS packet for this
    /// long is closed.
    pub garbage_timeout: Duration,
    /// After its stream ends, how long a viewer's connection stays open so
    /// that the tail of the stream is delivered (and repaired) before the
    /// SHUTDOWN; added to twice the connection's latency.
    pub end_linger: Duration,
    /// Most connections (publishers and viewers) one source address may
    /// hold on this service (0: no limit); more are refused with
    /// `SRT_REJX_OVERLOAD` (1402). Default 256.
    pub max_connections_per_ip: usize,
    /// Play admissions per source address: a token bucket of this many
    /// (0: no limit) ...
    pub play_burst_per_ip: u32,
    /// ... refilled at this many per second. Over it, play requests are
    /// refused with `SRT_REJX_OVERLOAD` (1402). Default 128 and 32/s.
    pub play_rate_per_ip: u32,
}

impl SrtServiceConfig {
    /// The defaults with the endpoint settings `endpoint`.
    pub fn with_endpoint(endpoint: EndpointConfig) -> Self {
        SrtServiceConfig {
            endpoint,
            ..SrtServiceConfig::default()
        }
    }
}

impl Default for SrtServiceConfig {
    fn default() -> Self {
        SrtServiceConfig {
            endpoint: EndpointConfig::default(),
            garbage_timeout: Duration::from_secs(3),
            end_linger: Duration::from_millis(500),
            max_connections_per_ip: 256,
            play_burst_per_ip: 128,
            play_rate_per_ip: 32,
        }
    }
}

/// Most source addresses the play-rate table of one service tracks; when
/// it is full, addresses whose bucket has refilled are forgotten, and if
/// none has, a play request from a new address is refused (1402).
pub const MAX_RATE_ENTRIES: usize = 4096;

/// One address's play-admission token bucket (tokens in thousandths).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    milli_tokens: u64,
    at: Instant,
}

/// Play admissions per source address (see
/// [`SrtServiceConfig::play_burst_per_ip`]). Bounded by
/// [`MAX_RATE_ENTRIES`].
#[derive(Debug, Default)]
struct PlayRate {
    buckets: HashMap<IpAddr, Bucket>,
}

impl PlayRate {
    /// Takes one token for `ip` at `now`; `false` when its bucket is empty
    /// (or the table is full of addresses still being limited).
    fn take(&mut self, ip: IpAddr, now: Instant, burst: u32, per_second: u32) -> bool {
        if burst == 0 {
            return true;
        }
        let cap = u64::from(burst) * 1000;
        let refill = |b: &Bucket| {
            let ms = now.saturating_duration_since(b.at).as_millis() as u64;
            b.milli_tokens
                .saturating_add(ms.saturating_mul(u64::from(per_second)))
                .min(cap)
        };
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_RATE_ENTRIES {
            self.buckets.retain(|_, b| refill(b) < cap);
            if self.buckets.len() >= MAX_RATE_ENTRIES {
                return false;
            }
        }
        let b = self.buckets.entry(ip).or_insert(Bucket {
            milli_tokens: cap,
            at: now,
        });
        let tokens = refill(b);
        b.at = now;
        if tokens < 1000 {
            b.milli_tokens = tokens;
            return false;
        }
        b.milli_tokens = tokens - 1000;
        true
    }
}

/// Counters of an [`SrtService`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SrtServiceStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Requests rejected (admission, engine, stream id, closing).
    pub rejected: u64,
    /// Frames handed to publishers.
    pub frames_in: u64,
    /// Publisher payloads that held no valid TS packet.
    pub garbage_payloads: u64,
    /// Damage the publishers' TS demuxers recovered from: continuity
    /// errors, lost sync, bad packets, dropped PES and PSI sections
    /// (counted and skipped; the stream goes on).
    pub ts_errors: u64,
    /// Publishers closed for sending something other than MPEG-TS.
    pub garbage_closed: u64,
    /// Payloads handed to the endpoint for viewers.
    pub payloads_out: u64,
    /// Times a viewer's send buffer was full.
    pub send_buffer_full: u64,
    /// Frames a viewer skipped because their TS form was unavailable or
    /// while waiting for a start point.
    pub frames_skipped: u64,
    /// Payloads received from viewers (ignored).
    pub viewer_payloads: u64,
    /// Requests whose admission was deferred ([`Decision::Later`]).
    pub admission_waits: u64,
    /// Viewers' keyframe requests that reached a publisher here
    /// ([`Subscriber::request_keyframe`]); SRT cannot ask the sender for a
    /// keyframe, so they are only counted.
    pub keyframe_requests: u64,
    /// Requests refused by a per-address limit (connections held, play
    /// admission rate).
    pub refused_per_ip: u64,
    /// Publishers closed because they sent no media in time
    /// ([`MediaWatchdog`]).
    pub publishers_without_media: u64,
    /// Viewers closed because they acknowledged none of the data sent to
    /// them for the peer idle timeout ([`CloseReason::Unresponsive`]).
    pub viewers_unresponsive: u64,
}

/// Builds an [`SrtService`] per bound UDP socket. All services of one
/// factory share the per-stream TS muxers.
#[derive(Clone)]
pub struct SrtServiceFactory {
    engine: Engine,
    config: SrtServiceConfig,
    admission: Arc<dyn Admission>,
    egress: Arc<TsEgress>,
}

impl core::fmt::Debug for SrtServiceFactory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SrtServiceFactory")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// splitmix64: expands the service seed into socket-id seed and cookie secret.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SrtServiceFactory {
    /// Services publishing to and playing from `engine`, admitting through
    /// `admission`, with `config`.
    pub fn new(engine: Engine, config: SrtServiceConfig, admission: Arc<dyn Admission>) -> Self {
        SrtServiceFactory {
            engine,
            config,
            admission,
            egress: Arc::new(TsEgress::new()),
        }
    }

    /// Services that admit every request.
    pub fn allow_all(engine: Engine, config: SrtServiceConfig) -> Self {
        Self::new(engine, config, Arc::new(AllowAll))
    }

    /// Shares `egress` (the per-stream TS muxers) with other consumers.
    pub fn with_egress(mut self, egress: Arc<TsEgress>) -> Self {
        self.egress = egress;
        self
    }

    /// The per-stream shared TS muxers.
    pub fn egress(&self) -> &Arc<TsEgress> {
        &self.egress
    }

    /// The settings.
    pub fn config(&self) -> &SrtServiceConfig {
        &self.config
    }

    /// A service for the socket bound at `local` (also usable without the
    /// trait). `seed` is expanded into the cookie secret and socket-id seed
    /// (mixed with those of the configuration).
    pub fn service(&self, local: SocketAddr, now: Instant, seed: u64) -> SrtService {
        let mut ep = self.config.endpoint.clone();
        let mut s = seed;
        ep.rng_seed ^= splitmix(&mut s);
        for chunk in ep.cookie_secret.chunks_mut(8) {
            let r = splitmix(&mut s).to_le_bytes();
            for (d, x) in chunk.iter_mut().zip(r) {
                *d ^= x;
            }
        }
        SrtService {
            endpoint: Endpoint::new(ep),
            engine: self.engine.clone(),
            admission: self.admission.clone(),
            egress: self.egress.clone(),
            config: self.config.clone(),
            local,
            started: now,
            conns: HashMap::new(),
            waiting: Vec::new(),
            watches: Vec::new(),
            free_watches: Vec::new(),
            listed: Vec::new(),
            media_version: 0,
            scratch: Vec::new(),
            reply_from: HashMap::new(),
            reply_from_limit: self
                .config
                .endpoint
                .max_connections
                .saturating_mul(2)
                .max(64),
            play_rate: PlayRate::default(),
            closing: false,
            drained: false,
            stats: SrtServiceStats::default(),
        }
    }
}

impl DatagramServiceFactory for SrtServiceFactory {
    /// SRT serves one socket: the first of `sockets` (an unspecified
    /// IPv4 address if the list is empty).
    fn new_service(
        &self,
        sockets: &[SocketAddr],
        now: Instant,
        seed: u64,
    ) -> Box<dyn DatagramService> {
        let local = sockets
            .first()
            .copied()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        Box::new(self.service(local, now, seed))
    }
}

#[derive(Debug)]
struct Publishing {
    publisher: Publisher,
    demux: TsDemuxer,
    /// Since when every payload was garbage.
    garbage_since: Option<Instant>,
    /// The publisher's media deadlines (no media: closed, slot freed).
    watchdog: MediaWatchdog,
}

#[derive(Debug)]
struct Playing {
    subscriber: Subscriber,
    mux: Arc<StreamMux>,
    /// The slab index of the played stream's [`Watch`].
    watch: usize,
    /// TS bytes waiting for room in the send buffer (at most PAT/PMT and
    /// one frame).
    out: VecDeque<Bytes>,
    /// A start point was sent since joining (or since a frame was missing).
    synced: bool,
    /// The last send found the buffer full.
    blocked: bool,
    /// The stream ended: close at this instant.
    ending_at: Option<Instant>,
}

impl Playing {
    /// Waits for media: not blocked on the send buffer, not ending.
    fn wants_media(&self) -> bool {
        !self.blocked && self.ending_at.is_none()
    }
}

/// One played stream: its signal and its viewers.
#[derive(Debug)]
struct Watch {
    /// Identifies the stream instance (viewers of one instance share it).
    stream: Arc<StreamStats>,
    signal: Signal,
    viewers: Vec<SocketId>,
    /// Viewers that [want media](Playing::wants_media); the stream is
    /// listed to the driver while this is non-zero.
    active: usize,
}

#[derive(Debug)]
enum Role {
    Publish(Box<Publishing>),
    Play(Box<Playing>),
}

/// A caller's request waiting for a deferred decision: the endpoint holds
/// its token (answering nothing to its repeated conclusions); nothing is
/// taken from the engine yet.
#[derive(Debug)]
struct Waiting {
    req: Box<ConnectionRequest>,
    kind: AdmissionKind,
    wait: AdmissionWait,
}

#[derive(Debug)]
struct Conn {
    peer: SocketAddr,
    latency: Duration,
    role: Role,
    /// Why the service closed it, when it did so for a reason of its own
    /// (reported instead of the endpoint's [`CloseReason::LocalShutdown`]).
    close_reason: Option<CloseReason>,
}

/// What pulling for one viewer ended with.
enum Pulled {
    /// Nothing more from the engine right now (or blocked on the buffer).
    Done,
    /// The played stream ended.
    Ended,
    /// The endpoint no longer knows the connection.
    Gone,
}

/// One UDP socket's SRT endpoint joined to the engine (see the module docs).
pub struct SrtService {
    endpoint: Endpoint,
    engine: Engine,
    admission: Arc<dyn Admission>,
    egress: Arc<TsEgress>,
    config: SrtServiceConfig,
    local: SocketAddr,
    started: Instant,
    conns: HashMap<SocketId, Conn>,
    /// Requests waiting for a deferred admission decision.
    waiting: Vec<Waiting>,
    /// Played streams (a slab: indices stay valid while viewers come and
    /// go; `None` slots are in `free_watches`).
    watches: Vec<Option<Watch>>,
    free_watches: Vec<usize>,
    /// Slab indices of the streams listed to the driver, in the order of
    /// [`DatagramService::media_signals`].
    listed: Vec<usize>,
    /// Bumped whenever `listed` changes.
    media_version: u64,
    /// Viewer ids to pull for (reused by every wake).
    scratch: Vec<SocketId>,
    /// On a wildcard bind: the local address each peer wrote to (see the
    /// module docs; at most `reply_from_limit` entries; kept after a
    /// connection closes so that its last goodbyes leave from the same
    /// address).
    reply_from: HashMap<SocketAddr, IpAddr>,
    reply_from_limit: usize,
    /// Play admissions per source address.
    play_rate: PlayRate,
    closing: bool,
    drained: bool,
    stats: SrtServiceStats,
}

impl core::fmt::Debug for SrtService {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SrtService")
            .field("local", &self.local)
            .field("started", &self.started)
            .field("connections", &self.conns.len())
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

/// The SRT reject code for a refusal (libsrt `access_control.h`; the
/// table on [`RejectCode`]).
pub fn reject_reason(r: &Rejection) -> RejectReason {
    match r.code {
        RejectCode::BadRequest => RejectReason::BAD_REQUEST,
        RejectCode::Unauthorized => RejectReason::UNAUTHORIZED,
        RejectCode::NotFound => RejectReason::NOT_FOUND,
        RejectCode::Conflict => RejectReason::CONFLICT,
        RejectCode::Overloaded => RejectReason::OVERLOAD,
        RejectCode::Unavailable => RejectReason::Close,
        RejectCode::Timeout => RejectReason::Timeout,
        RejectCode::Forbidden => RejectReason::FORBIDDEN,
    }
}

/// The engine's words for an admission request: the stream id's query,
/// plus its `u=` and `s=` as `u=…&s=…` so that a policy can check them
/// with [`AdmissionRequest::query_param`].
fn admission_query(sid: &StreamId) -> String {
    let mut q = sid.query.clone();
    for (k, v) in [("u", &sid.user), ("s", &sid.session)] {
        if let Some(v) = v {
            if !q.is_empty() {
                q.push('&');
            }
            q.push_str(k);
            q.push('=');
            q.push_str(v);
        }
    }
    q
}

impl SrtService {
    /// The endpoint machine inside.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Counters.
    pub fn stats(&self) -> SrtServiceStats {
        self.stats
    }

    /// The local address the service was built for.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Connections publishing a stream.
    pub fn publishing_count(&self) -> usize {
        self.conns
            .values()
            .filter(|c| matches!(c.role, Role::Publish(_)))
            .count()
    }

    /// Connections playing a stream.
    pub fn playing_count(&self) -> usize {
        self.conns
            .values()
            .filter(|c| matches!(c.role, Role::Play(_)))
            .count()
    }

    fn reject(&mut self, now: Instant, req: &ConnectionRequest, reason: RejectReason, why: &str) {
        // A peer can cause this in a flood (bad stream ids, refusals):
        // rate-limited, one line per refused peer (docs/security.md item 7).
        static REFUSED: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
        if let Some(suppressed) = REFUSED.check(now) {
            warn!(peer = %req.peer, stream_id = %escaped(&super::stream_id::redacted(&req.raw_stream_id)), code = reason.code(), why = %escaped(why), suppressed, "srt: connection refused");
        }
        self.stats.rejected += 1;
        self.endpoint.reject(req.token, reason);
    }

    /// The per-address limits: connections held (all roles, requests
    /// waiting for admission included) and the play-admission rate.
    fn per_ip_limits(
        &mut self,
        now: Instant,
        ip: IpAddr,
        kind: AdmissionKind,
    ) -> Result<(), &'static str> {
        let max = self.config.max_connections_per_ip;
        if max > 0 {
            // A scan of tables bounded by the endpoint's limits.
            let held = self.conns.values().filter(|c| c.peer.ip() == ip).count()
                + self
                    .waiting
                    .iter()
                    .filter(|w| w.req.peer.ip() == ip)
                    .count();
            if held >= max {
                return Err("too many connections from this address");
            }
        }
        if kind == AdmissionKind::Play
            && !self.play_rate.take(
                ip,
                now,
                self.config.play_burst_per_ip,
                self.config.play_rate_per_ip,
            )
        {
            return Err("too many play requests from this address");
        }
        Ok(())
    }

    fn on_request(&mut self, now: Instant, req: &ConnectionRequest) {
        if self.closing {
            self.reject(now, req, RejectReason::Close, "service closing");
            return;
        }
        let sid = match &req.stream_id {
            Ok(s) => s,
            Err(e) => {
                self.reject(now, req, e.reject_reason(), &format!("bad stream id: {e}"));
                return;
            }
        };
        let kind = match sid.mode {
            StreamMode::Publish => AdmissionKind::Publish,
            StreamMode::Request => AdmissionKind::Play,
            StreamMode::Bidirectional => {
                self.reject(
                    now,
                    req,
                    RejectReason::BAD_MODE,
                    "bidirectional mode unsupported",
                );
                return;
            }
        };
        // Bounded before the application is asked: a flood from one
        // address cannot queue slow decisions.
        let ip = req.peer.ip();
        let waits = self
            .waiting
            .iter()
            .filter(|w| w.req.peer.ip() == ip)
            .count();
        if waits >= MAX_ADMISSION_WAITS_PER_IP {
            self.reject(
                now,
                req,
                RejectReason::OVERLOAD,
                "too many admission decisions pending for this address",
            );
            return;
        }
        if let Err(why) = self.per_ip_limits(now, req.peer.ip(), kind) {
            // A peer can cause this in a flood: counted, logged rate-limited.
            static PER_IP: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
            self.stats.rejected += 1;
            self.stats.refused_per_ip += 1;
            if let Some(suppressed) = PER_IP.check(now) {
                warn!(peer = %req.peer, %kind, why, suppressed, code = RejectReason::OVERLOAD.code(), "srt: connection refused");
            }
            self.endpoint.reject(req.token, RejectReason::OVERLOAD);
            return;
        }
        let areq = AdmissionRequest {
            protocol: "srt",
            kind,
            key: sid.key.clone(),
            query: admission_query(sid),
            peer: req.peer,
            credentials: sid.credentials(),
        };
        match self.admission.admit(&areq) {
            Decision::Allow => self.admitted(now, req, kind),
            Decision::Deny(rejection) => {
                self.reject(now, req, reject_reason(&rejection), &rejection.to_string());
            }
            Decision::Later(pending) => {
                info!(peer = %req.peer, stream = %sid.key, %kind, timeout = ?pending.timeout(), "srt: request waits for admission");
                self.stats.admission_waits += 1;
                self.media_version = self.media_version.wrapping_add(1);
                self.waiting.push(Waiting {
                    req: Box::new(req.clone()),
                    kind,
                    wait: pending.start(now, PENDING_TIMEOUT),
                });
            }
        }
    }

    /// Applies the deferred decisions that arrived (or whose deadline
    /// passed).
    fn poll_admissions(&mut self, now: Instant) {
        let mut i = 0;
        while let Some(w) = self.waiting.get(i) {
            let Some(decided) = w.wait.poll(now) else {
                i += 1;
                continue;
            };
            let w = self.waiting.swap_remove(i);
            self.media_version = self.media_version.wrapping_add(1);
            match decided {
                Ok(()) if self.closing => {
                    self.reject(now, &w.req, RejectReason::Close, "service closing");
                }
                Ok(()) => {
                    info!(peer = %w.req.peer, kind = %w.kind, "srt: request admitted after waiting");
                    self.admitted(now, &w.req, w.kind);
                }
                Err(rejection) => {
                    self.reject(
                        now,
                        &w.req,
                        reject_reason(&rejection),
                        &rejection.to_string(),
                    );
                }
            }
        }
    }

    /// The admission allowed the request: the engine is asked, then the
    /// endpoint accepts.
    fn admitted(&mut self, now: Instant, req: &ConnectionRequest, kind: AdmissionKind) {
        let Ok(sid) = &req.stream_id else {
            return;
        };
        let key = sid.key.clone();
        let role = match kind {
            AdmissionKind::Publish => match self
                .engine
                .publish_as(key.clone(), SessionTag::new("srt", req.peer))
            {
                Ok(publisher) => {
                    let app = self.engine.app_config(key.app()).unwrap_or_default();
                    Role::Publish(Box::new(Publishing {
                        publisher,
                        demux: TsDemuxer::new(),
                        garbage_since: None,
                        watchdog: MediaWatchdog::new(now, &app),
                    }))
                }
                Err(e) => {
                    self.reject(
                        now,
                        req,
                        reject_reason(&Rejection::from(&e)),
                        &e.to_string(),
                    );
                    return;
                }
            },
            AdmissionKind::Play => match self
                .engine
                .subscribe_as(&key, SessionTag::new("srt", req.peer))
            {
                Ok(subscriber) => {
                    let mux = self.egress.stream(&subscriber);
                    Role::Play(Box::new(Playing {
                        mux,
                        watch: usize::MAX, // set once accepted
                        subscriber,
                        out: VecDeque::with_capacity(2),
                        synced: false,
                        blocked: false,
                        ending_at: None,
                    }))
                }
                Err(e) => {
                    self.reject(
                        now,
                        req,
                        reject_reason(&Rejection::from(&e)),
                        &e.to_string(),
                    );
                    return;
                }
            },
        };
        match self.endpoint.accept(now, req.token) {
            Ok(id) => {
                info!(peer = %req.peer, socket = id.0, stream = %escaped(&key.to_string()), %kind, encrypted = req.encrypted, "srt: connection accepted");
                self.stats.accepted += 1;
                let mut role = role;
                if let Role::Play(p) = &mut role {
                    p.watch = self.watch(id, &p.subscriber);
                }
                self.conns.insert(
                    id,
                    Conn {
                        peer: req.peer,
                        latency: Duration::from_millis(u64::from(self.config.endpoint.latency_ms)),
                        role,
                        close_reason: None,
                    },
                );
            }
            Err(e) => debug!(peer = %req.peer, error = %e, "srt: accept failed"),
        }
    }

    /// Handles every endpoint event queued so far.
    fn events(&mut self, now: Instant) {
        while let Some(ev) = self.endpoint.poll_event() {
            match ev {
                EndpointEvent::Request(req) => self.on_request(now, &req),
                EndpointEvent::Connected {
                    id,
                    peer,
                    latency_ms,
                } => {
                    debug!(socket = id.0, %peer, latency_ms, "srt: connected");
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.latency = Duration::from_millis(u64::from(latency_ms));
                    }
                    if matches!(self.conns.get(&id).map(|c| &c.role), Some(Role::Play(_))) {
                        self.pull_one(now, id);
                    }
                }
                EndpointEvent::Data { id, payload, .. } => self.on_data(now, id, &payload),
                EndpointEvent::Closed { id, reason } => self.on_closed(now, id, reason),
                // Caller-side outcomes: this service never calls out.
                #[allow(unreachable_patterns)]
                other => debug!(?other, "srt: endpoint event ignored"),
            }
        }
    }

    fn on_data(&mut self, now: Instant, id: SocketId, payload: &Bytes) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let p = match &mut conn.role {
            Role::Publish(p) => p,
            Role::Play(_) => {
                self.stats.viewer_payloads += 1;
                return;
            }
        };
        let before = p.demux.stats();
        if let Err(e) = p.demux.handle_input(payload) {
            debug!(socket = id.0, error = %e, "srt: demuxer input refused");
        }
        while let Some(f) = p.demux.poll_frame() {
            p.watchdog.on_frame(now, &f);
            p.publisher.send(f);
            self.stats.frames_in += 1;
        }
        self.stats.keyframe_requests += p.publisher.take_keyframe_requests();
        let after = p.demux.stats();
        let errors = |s: &crate::container::ts::TsDemuxStats| {
            s.cc_errors + s.resyncs + s.bad_packets + s.dropped_pes + s.psi_errors
        };
        self.stats.ts_errors += errors(&after).saturating_sub(errors(&before));
        if after.packets > before.packets {
            p.garbage_since = None;
            return;
        }
        self.stats.garbage_payloads += 1;
        let since = *p.garbage_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.config.garbage_timeout {
            warn!(
                socket = id.0,
                peer = %conn.peer,
                stream = %p.publisher.key(),
                "srt: closing publisher: its payloads are not MPEG-TS"
            );
            self.stats.garbage_closed += 1;
            conn.close_reason = Some(CloseReason::ProtocolError(ProtocolError::Srt(
                super::SrtError::NotMpegTs(self.config.garbage_timeout),
            )));
            self.endpoint.close(now, id);
        }
    }

    fn on_closed(&mut self, now: Instant, id: SocketId, reason: CloseReason) {
        let Some(conn) = self.remove_conn(id) else {
            return;
        };
        let reason = conn.close_reason.unwrap_or(reason);
        match conn.role {
            Role::Publish(mut p) => {
                p.demux.flush();
                while let Some(f) = p.demux.poll_frame() {
                    p.publisher.send(f);
                    self.stats.frames_in += 1;
                }
                info!(socket = id.0, peer = %conn.peer, stream = %p.publisher.key(), %reason, frames = p.publisher.published(), "srt: publish ended");
            }
            Role::Play(p) => {
                if reason == CloseReason::Unresponsive {
                    // A peer can cause this in a flood: rate-limited.
                    static UNRESPONSIVE: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
                    self.stats.viewers_unresponsive += 1;
                    if let Some(suppressed) = UNRESPONSIVE.check(now) {
                        warn!(
                            socket = id.0,
                            peer = %conn.peer,
                            stream = %p.subscriber.key(),
                            suppressed,
                            "srt: viewer closed: it acknowledged nothing sent to it"
                        );
                    }
                    return;
                }
                info!(socket = id.0, peer = %conn.peer, stream = %p.subscriber.key(), %reason, "srt: play ended");
            }
        }
    }

    /// Adds viewer `id` of `subscriber`'s stream to the stream's watch
    /// (created if new) and returns the watch's slab index.
    fn watch(&mut self, id: SocketId, subscriber: &Subscriber) -> usize {
        let stream = subscriber.stream_stats();
        let found = self
            .watches
            .iter()
            .position(|w| w.as_ref().is_some_and(|w| Arc::ptr_eq(&w.stream, &stream)));
        let index = match found {
            Some(i) => i,
            None => {
                let w = Watch {
                    stream,
                    signal: subscriber.signal(),
                    viewers: Vec::new(),
                    active: 0,
                };
                match self.free_watches.pop() {
                    Some(i) => {
                        if let Some(slot) = self.watches.get_mut(i) {
                            *slot = Some(w);
                        }
                        i
                    }
                    None => {
                        self.watches.push(Some(w));
                        self.watches.len() - 1
                    }
                }
            }
        };
        if let Some(Some(w)) = self.watches.get_mut(index) {
            w.viewers.push(id);
        }
        self.set_active(index, true);
        index
    }

    /// One viewer of watch `index` started (`true`) or stopped wanting
    /// media; the stream is listed while some viewer wants it.
    fn set_active(&mut self, index: usize, active: bool) {
        let Some(Some(w)) = self.watches.get_mut(index) else {
            return;
        };
        let before = w.active;
        w.active = if active {
            w.active + 1
        } else {
            w.active.saturating_sub(1)
        };
        if (before == 0) != (w.active == 0) {
            self.relist();
        }
    }

    /// Rebuilds the list of streams the driver waits on and bumps the
    /// media version (O(streams); only when a stream's listing changes).
    fn relist(&mut self) {
        self.listed.clear();
        for (i, w) in self.watches.iter().enumerate() {
            if w.as_ref().is_some_and(|w| w.active > 0) {
                self.listed.push(i);
            }
        }
        self.media_version = self.media_version.wrapping_add(1);
    }

    /// Removes connection `id`, and a viewer from its stream's watch (the
    /// watch itself once its last viewer left).
    fn remove_conn(&mut self, id: SocketId) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        if let Role::Play(p) = &conn.role {
            if p.wants_media() {
                self.set_active(p.watch, false);
            }
            if let Some(slot) = self.watches.get_mut(p.watch) {
                if let Some(w) = slot {
                    if let Some(k) = w.viewers.iter().position(|v| *v == id) {
                        w.viewers.swap_remove(k);
                    }
                    if w.viewers.is_empty() {
                        *slot = None;
                        self.free_watches.push(p.watch);
                    }
                }
            }
        }
        Some(conn)
    }

    /// Moves frames of one viewer from the engine into its connection.
    fn pull_one(&mut self, now: Instant, id: SocketId) {
        let Some(Conn {
            role: Role::Play(p),
            latency,
            ..
        }) = self.conns.get_mut(&id)
        else {
            return;
        };
        if p.ending_at.is_some() {
            return;
        }
        let (watch, wanted) = (p.watch, p.wants_media());
        let pulled = pull(&mut self.endpoint, &mut self.stats, now, id, p);
        match pulled {
            Pulled::Done => {}
            Pulled::Ended if p.subscriber.is_kicked() => {
                info!(socket = id.0, stream = %escaped(&p.subscriber.key().to_string()), "srt: viewer kicked by an operator");
                p.ending_at = Some(now);
                if let Some(c) = self.conns.get_mut(&id) {
                    c.close_reason = Some(CloseReason::Kicked);
                }
                self.endpoint.close(now, id);
            }
            Pulled::Ended => {
                info!(socket = id.0, stream = %p.subscriber.key(), "srt: played stream ended");
                let linger = *latency * 2 + self.config.end_linger;
                p.ending_at = Some(now + linger);
                // Closes as soon as the viewer acknowledged (and played)
                // the tail; the linger is the upper bound.
                self.endpoint.close_after_drain(now, id, linger);
            }
            Pulled::Gone => {
                self.remove_conn(id);
                return;
            }
        }
        let wants = match self.conns.get(&id) {
            Some(Conn {
                role: Role::Play(p),
                ..
            }) => p.wants_media(),
            _ => return,
        };
        if wants != wanted {
            self.set_active(watch, wants);
        }
    }

    /// Publishers an operator kicked ([`Engine::kick`]) are closed with
    /// [`CloseReason::Kicked`] (their slot freed once the endpoint reports
    /// the close).
    fn close_kicked_publishers(&mut self, now: Instant) {
        let kicked: Vec<SocketId> = self
            .conns
            .iter()
            .filter_map(|(id, c)| match &c.role {
                Role::Publish(p) if c.close_reason.is_none() && p.publisher.is_kicked() => {
                    Some(*id)
                }
                _ => None,
            })
            .collect();
        for id in kicked {
            if let Some(c) = self.conns.get_mut(&id) {
                info!(socket = id.0, peer = %c.peer, "srt: publisher kicked by an operator");
                c.close_reason = Some(CloseReason::Kicked);
            }
            self.endpoint.close(now, id);
        }
    }

    /// Publishers that sent no media in time are closed (their slot freed
    /// once the endpoint reports the close).
    fn expire_silent_publishers(&mut self, now: Instant) {
        let due: Vec<(SocketId, MediaStall)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| match &c.role {
                Role::Publish(p) if c.close_reason.is_none() => {
                    p.watchdog.check(now).err().map(|e| (*id, e))
                }
                _ => None,
            })
            .collect();
        for (id, stall) in due {
            // A peer can cause this in a flood: rate-limited.
            static NO_MEDIA: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
            self.stats.publishers_without_media += 1;
            if let Some(c) = self.conns.get_mut(&id) {
                c.close_reason = Some(CloseReason::MediaTimeout(stall));
                if let Some(suppressed) = NO_MEDIA.check(now) {
                    warn!(socket = id.0, peer = %c.peer, reason = %stall, suppressed, "srt: publisher closed: no media, stream slot freed");
                }
            }
            self.endpoint.close(now, id);
        }
    }

    /// Viewers whose stream ended and whose linger passed are shut down.
    fn expire_ended(&mut self, now: Instant) {
        let due: Vec<SocketId> = self
            .conns
            .iter()
            .filter_map(|(id, c)| match &c.role {
                Role::Play(p) if p.ending_at.is_some_and(|t| t <= now) => Some(*id),
                _ => None,
            })
            .collect();
        for id in due {
            self.endpoint.close(now, id);
        }
    }

    /// Fills `scratch` with the viewers blocked on their send buffer.
    fn blocked_viewers(&mut self) {
        self.scratch.clear();
        self.scratch
            .extend(self.conns.iter().filter_map(|(id, c)| match &c.role {
                Role::Play(p) if p.blocked => Some(*id),
                _ => None,
            }));
    }

    /// Pulls for every viewer in `scratch`.
    fn pull_scratch(&mut self, now: Instant) {
        let ids = std::mem::take(&mut self.scratch);
        for &id in &ids {
            self.pull_one(now, id);
        }
        self.scratch = ids;
    }
}

/// Sends what waits, then frames from the subscriber until the engine has
/// nothing new or the send buffer is full.
fn pull(
    endpoint: &mut Endpoint,
    stats: &mut SrtServiceStats,
    now: Instant,
    id: SocketId,
    p: &mut Playing,
) -> Pulled {
    loop {
        while let Some(front) = p.out.front_mut() {
            if front.is_empty() {
                p.out.pop_front();
                continue;
            }
            let n = front.len().min(PAYLOAD_SIZE);
            match endpoint.send(now, id, front.slice(..n)) {
                Ok(()) => {
                    front.advance(n);
                    stats.payloads_out += 1;
                }
                Err(EndpointSendError::Buffer(_)) => {
                    if !p.blocked {
                        stats.send_buffer_full += 1;
                    }
                    p.blocked = true;
                    return Pulled::Done;
                }
                Err(EndpointSendError::UnknownConnection) => return Pulled::Gone,
            }
        }
        p.blocked = false;
        let entry = match p.subscriber.recv() {
            Recv::Frame(e) => e,
            Recv::Empty => return Pulled::Done,
            Recv::End => return Pulled::Ended,
        };
        match p.mux.ts_bytes(&entry) {
            TsFrame::Config => {}
            TsFrame::Unavailable => {
                stats.frames_skipped += 1;
                p.synced = false;
            }
            TsFrame::Packets(b) => {
                if !p.synced {
                    if !entry.is_start_point() {
                        stats.frames_skipped += 1;
                        continue;
                    }
                    p.synced = true;
                    if !starts_with_pat(&b) {
                        if let Some(psi) = p.mux.psi_packets() {
                            p.out.push_back(psi);
                        }
                    }
                }
                p.out.push_back(b);
            }
        }
    }
}

impl DatagramService for SrtService {
    fn handle_datagram(&mut self, now: Instant, received: Received) {
        if self.closing {
            return;
        }
        let (src, datagram) = (received.src, received.contents);
        if let Some(ip) = received.dst_ip {
            if self.local.ip().is_unspecified() && self.reply_from.get(&src) != Some(&ip) {
                if self.reply_from.len() >= self.reply_from_limit {
                    self.reply_from.clear();
                }
                self.reply_from.insert(src, ip);
            }
        }
        // Destination socket id (§3: bytes 8..12 of every packet), to resume
        // a viewer whose send buffer an ACK may have freed.
        let dest = datagram
            .get(8..12)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| SocketId(u32::from_be_bytes(b)));
        self.endpoint.handle_datagram(now, src, datagram);
        self.events(now);
        if let Some(id) = dest {
            if let Some(Conn {
                role: Role::Play(p),
                ..
            }) = self.conns.get(&id)
            {
                if p.blocked {
                    self.pull_one(now, id);
                    self.events(now);
                }
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        // Before the endpoint's own expiry of the same requests.
        self.poll_admissions(now);
        self.endpoint.handle_timeout(now);
        self.events(now);
        self.expire_ended(now);
        self.expire_silent_publishers(now);
        self.close_kicked_publishers(now);
        self.events(now);
        self.blocked_viewers();
        self.pull_scratch(now);
        self.events(now);
    }

    fn handle_media(&mut self, now: Instant, fired: &[usize]) {
        if !self.waiting.is_empty() {
            self.poll_admissions(now);
        }
        self.scratch.clear();
        for &i in fired {
            if let Some(Some(w)) = self.listed.get(i).and_then(|&k| self.watches.get(k)) {
                self.scratch.extend_from_slice(&w.viewers);
            }
        }
        self.pull_scratch(now);
        self.events(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        let mut t = self.endpoint.poll_transmit();
        match &mut t {
            Some(t) if !self.reply_from.is_empty() => {
                t.src_ip = self.reply_from.get(&t.destination).copied();
            }
            Some(_) => {}
            None if self.closing => self.drained = true,
            None => {}
        }
        t
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let ending = self.conns.values().filter_map(|c| match &c.role {
            Role::Play(p) => p.ending_at,
            Role::Publish(p) if c.close_reason.is_none() => Some(p.watchdog.deadline()),
            Role::Publish(_) => None,
        });
        let waiting = self.waiting.iter().map(|w| w.wait.deadline());
        self.endpoint
            .poll_timeout()
            .into_iter()
            .chain(ending)
            .chain(waiting)
            .min()
    }

    fn media_version(&self) -> u64 {
        self.media_version
    }

    fn media_signals(&self, out: &mut Vec<Signal>) {
        out.extend(
            self.listed
                .iter()
                .filter_map(|&k| self.watches.get(k)?.as_ref())
                .map(|w| w.signal.clone()),
        );
        // Deferred admission decisions wake the service like media does
        // (listed after the streams; a change of the set bumps the media
        // version).
        out.extend(self.waiting.iter().map(|w| w.wait.signal().clone()));
    }

    fn close(&mut self, now: Instant) {
        if self.closing {
            return;
        }
        info!(local = %self.local, connections = self.conns.len(), "srt: service closing");
        self.closing = true;
        self.drained = false;
        for w in std::mem::take(&mut self.waiting) {
            self.reject(now, &w.req, RejectReason::Close, "service closing");
        }
        let ids: Vec<SocketId> = self.conns.keys().copied().collect();
        for id in ids {
            self.endpoint.close(now, id);
        }
        self.events(now);
        // Whatever the endpoint did not report as closed is dropped too.
        self.conns.clear();
        self.watches.clear();
        self.free_watches.clear();
        self.relist();
    }

    fn is_closed(&self) -> bool {
        self.closing && self.drained
    }
}
