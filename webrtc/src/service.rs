//! The WebRTC datagram service: one UDP socket for every WHIP publisher and
//! WHEP viewer, on the generic driver of `arcly::datagram`.
//!
//! Sessions are built here, on the service's own clock, from
//! [`Command::Open`]s that the WHIP/WHEP HTTP routes
//! ([`crate::signalling`]) send through the service's
//! [`Inbox`](arcly::datagram::Inbox) with the engine object already taken
//! (the admitted [`Publisher`] or [`Subscriber`]); the answer SDP (or the
//! refusal) goes back through the command's one-shot
//! [`ReplySender`](arcly::datagram::ReplySender). `PATCH` and `DELETE` on a
//! session resource arrive the same way ([`Command::Patch`],
//! [`Command::Delete`]).
//!
//! Datagrams are routed by the [`Router`] (STUN by local ufrag, then remote
//! address: hash maps, no scan); timers are a sorted set of (deadline,
//! session); media wake-ups list each watched stream once and say which
//! moved (the versioned wake set of [`DatagramService::media_signals`]).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arcly::datagram::{
    DatagramService, DatagramServiceFactory, Inbox, InboxSender, Received, ReplySender,
    SocketIndex, Transmit as UdpTransmit,
};
use arcly::engine::{Publisher, Signal, StreamKey, Subscriber};
use arcly::log_limit::LogLimiter;
use arcly::peer_text::escaped;
use arcly::Instant;
use bytes::Bytes;
use smallvec::smallvec;

use crate::router::{Router, SessionId};
use crate::whep::{Transmit, WebRtcError, WhepSession};
use crate::whip::WhipSession;

/// Default most sessions (publishers and viewers) of one service.
pub const DEFAULT_MAX_SESSIONS: usize = 1000;
/// Default most sessions from one client IP.
pub const DEFAULT_MAX_SESSIONS_PER_IP: usize = 256;
/// Commands waiting in the service's inbox, in all.
pub const INBOX_CAPACITY: usize = 1024;
/// Commands one sender (one HTTP request) may have waiting.
pub const INBOX_PER_SENDER: usize = 4;
/// Remote candidates taken from one trickle `PATCH`.
pub const MAX_TRICKLE_CANDIDATES: usize = 32;

/// Junk datagrams (no session): 10 lines per 10 s, then a count.
static LOG_JUNK: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
/// Refused sessions (limits): 10 lines per 10 s.
static LOG_REFUSED: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
/// Sessions ended by an error or a timeout: 20 lines per 10 s.
static LOG_CLOSED: LogLimiter = LogLimiter::new(20, Duration::from_secs(10));

/// An unguessable session resource id (the last segment of the `Location`
/// of a WHIP/WHEP session): 16 bytes from the server's CSPRNG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResourceId(pub [u8; 16]);

impl ResourceId {
    /// Parses the 32 lowercase hex digits of [`Display`](core::fmt::Display).
    pub fn parse(text: &str) -> Option<ResourceId> {
        if text.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            let pair = text.get(2 * i..2 * i + 2)?;
            if !pair.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return None;
            }
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(ResourceId(out))
    }
}

impl core::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// WHIP (publish) or WHEP (play).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// WHIP ingest (RFC 9725).
    Whip,
    /// WHEP playback (draft-ietf-wish-whep).
    Whep,
}

impl Kind {
    /// `"whip"` or `"whep"` (the path segment).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Whip => "whip",
            Kind::Whep => "whep",
        }
    }
}

/// The engine side of a new session, taken by the HTTP route after
/// admission.
#[derive(Debug)]
pub enum EngineSide {
    /// A WHIP publisher (the one-publisher rule already passed).
    Publish(Publisher),
    /// A WHEP viewer of a live stream.
    Play(Subscriber),
}

/// A new session for the service to build and own.
#[derive(Debug)]
pub struct OpenRequest {
    /// The admitted engine object.
    pub engine: EngineSide,
    /// The stream.
    pub key: StreamKey,
    /// The SDP offer (the POST body).
    pub offer: String,
    /// The offer's `a=ice-ufrag` (to tell an ICE restart in a PATCH).
    pub remote_ufrag: Option<String>,
    /// The HTTP client's IP (per-IP session bound).
    pub client: IpAddr,
    /// The session's resource id (CSPRNG output).
    pub resource: ResourceId,
    /// Seed of the session's ICE credentials (CSPRNG output).
    pub seed: u64,
    /// Where the answer goes.
    pub reply: ReplySender<Result<Opened, OpenError>>,
}

/// A session was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The answer SDP (every server host candidate in it).
    pub answer: String,
    /// The session's entity tag (quoted, for `ETag`).
    pub etag: String,
}

/// Why the service did not create a session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The service holds its maximum number of sessions.
    #[error("too many WebRTC sessions ({0})")]
    TooManySessions(usize),
    /// The client's IP holds its maximum number of sessions.
    #[error("too many WebRTC sessions from this address ({0})")]
    TooManyFromClient(usize),
    /// The offer was refused (malformed, no usable track).
    #[error(transparent)]
    Offer(#[from] WebRtcError),
    /// The service is shutting down.
    #[error("the WebRTC service is shutting down")]
    Closing,
    /// A session with this resource id exists (the random source repeated
    /// itself): refused rather than shadowing it.
    #[error("duplicate session id")]
    DuplicateResource,
}

/// What a trickle `PATCH` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOutcome {
    /// Candidates added (204).
    Done,
    /// No such session (404).
    NotFound,
    /// `If-Match` names another entity tag (412).
    Stale,
    /// The fragment restarts ICE, which this server does not support (422).
    RestartUnsupported,
}

/// Work for the service, from the HTTP routes.
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// Build and own a new session.
    Open(Box<OpenRequest>),
    /// Trickle ICE on a session (RFC 9725 §4.3.1).
    Patch {
        /// The session.
        resource: ResourceId,
        /// WHIP or WHEP: a resource of one kind is not found as the other.
        kind: Kind,
        /// The stream in the resource path.
        key: StreamKey,
        /// The `If-Match` header value, if any.
        if_match: Option<String>,
        /// The `application/trickle-ice-sdpfrag` body.
        fragment: String,
        /// Where the outcome goes.
        reply: ReplySender<PatchOutcome>,
    },
    /// End a session (`DELETE`): `true` if it existed.
    Delete {
        /// The session.
        resource: ResourceId,
        /// WHIP or WHEP.
        kind: Kind,
        /// The stream in the resource path.
        key: StreamKey,
        /// Where the outcome goes.
        reply: ReplySender<bool>,
    },
}

/// Settings of the service (`#[non_exhaustive]`: start from
/// [`WebRtcConfig::new`] and set fields).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebRtcConfig {
    /// Every server address put into answers as a host candidate (the
    /// bound address, every interface address on a wildcard bind, plus
    /// configured public addresses). Empty: the bound address.
    pub host_candidates: Vec<SocketAddr>,
    /// Addresses that are really local (a datagram may be sent from them
    /// with `IP_PKTINFO`); a candidate outside this list (a NAT's public
    /// address) is answered from the address the datagram came in on.
    pub local_ips: Vec<IpAddr>,
    /// Most sessions in all.
    pub max_sessions: usize,
    /// Most sessions from one client IP.
    pub max_sessions_per_ip: usize,
    /// The `std::time::Instant` that `arcly::Instant::ZERO` of the
    /// service's clock maps to for str0m (any fixed instant chosen once
    /// by the caller: str0m only needs a monotonic clock).
    pub epoch: std::time::Instant,
    /// AAC → Opus feeds for WHEP viewers of AAC streams (see
    /// [`WebRtcConfig::with_aac_transcoding`]); `None`: AAC is not sent.
    #[cfg(feature = "transcode")]
    pub opus_feeds: Option<crate::transcode::OpusFeeds>,
}

impl WebRtcConfig {
    /// Defaults with `epoch` (candidates: the bound address).
    pub fn new(epoch: std::time::Instant) -> Self {
        WebRtcConfig {
            host_candidates: Vec::new(),
            local_ips: Vec::new(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_sessions_per_ip: DEFAULT_MAX_SESSIONS_PER_IP,
            epoch,
            #[cfg(feature = "transcode")]
            opus_feeds: None,
        }
    }

    /// WHEP viewers of streams with AAC audio get it as Opus, transcoded
    /// once per stream of `engine` (the `transcode` feature; without it
    /// this does nothing and such viewers get video only, with one warning).
    #[must_use]
    #[cfg_attr(not(feature = "transcode"), allow(unused_mut))]
    pub fn with_aac_transcoding(mut self, engine: &arcly::Engine) -> Self {
        #[cfg(feature = "transcode")]
        {
            self.opus_feeds = Some(crate::transcode::OpusFeeds::new(engine.clone()));
        }
        #[cfg(not(feature = "transcode"))]
        {
            let _ = engine;
        }
        self
    }
}

/// Counters of the service, shared with whoever holds the factory.
#[derive(Debug, Default)]
pub struct WebRtcStats {
    /// Sessions now.
    pub sessions: AtomicU64,
    /// Sessions created.
    pub opened: AtomicU64,
    /// Sessions ended (DELETE, ICE timeout, error, stream end).
    pub closed: AtomicU64,
    /// Sessions refused by a limit.
    pub refused: AtomicU64,
    /// Datagrams that belonged to no session (dropped).
    pub junk: AtomicU64,
}

/// Builds the [`WebRtcService`] of one socket; the HTTP routes send to it
/// through [`sender`](Self::sender).
#[derive(Debug)]
pub struct WebRtcServiceFactory {
    config: WebRtcConfig,
    inbox: Mutex<Option<Inbox<Command>>>,
    sender: InboxSender<Command>,
    stats: Arc<WebRtcStats>,
}

impl WebRtcServiceFactory {
    /// A factory for one service with `config`.
    pub fn new(config: WebRtcConfig) -> Self {
        let inbox = Inbox::new(INBOX_CAPACITY, INBOX_PER_SENDER);
        let sender = inbox.sender();
        WebRtcServiceFactory {
            config,
            inbox: Mutex::new(Some(inbox)),
            sender,
            stats: Arc::default(),
        }
    }

    /// A sender to the service's inbox (fork it per request).
    pub fn sender(&self) -> InboxSender<Command> {
        self.sender.fork()
    }

    /// The service's counters.
    pub fn stats(&self) -> Arc<WebRtcStats> {
        self.stats.clone()
    }
}

impl DatagramServiceFactory for WebRtcServiceFactory {
    fn new_service(
        &self,
        sockets: &[SocketAddr],
        now: Instant,
        _seed: u64,
    ) -> Box<dyn DatagramService> {
        let taken = match self.inbox.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        let inbox = taken.unwrap_or_else(|| {
            tracing::error!("WebRTC: a second service from one factory gets no commands");
            Inbox::new(1, 1)
        });
        Box::new(WebRtcService::new(
            self.config.clone(),
            sockets,
            inbox,
            self.stats.clone(),
            now,
        ))
    }
}

enum Peer {
    Whep(Box<WhepSession>),
    Whip(Box<WhipSession>),
}

impl Peer {
    fn handle_datagram(
        &mut self,
        now: Instant,
        src: SocketAddr,
        dst: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), WebRtcError> {
        match self {
            Peer::Whep(s) => s.handle_datagram(now, src, dst, bytes),
            Peer::Whip(s) => s.handle_datagram(now, src, dst, bytes),
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), WebRtcError> {
        match self {
            Peer::Whep(s) => s.handle_timeout(now),
            Peer::Whip(s) => s.handle_timeout(now),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Peer::Whep(s) => s.poll_timeout(),
            Peer::Whip(s) => s.poll_timeout(),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        match self {
            Peer::Whep(s) => s.poll_transmit(),
            Peer::Whip(s) => s.poll_transmit(),
        }
    }

    fn is_alive(&self) -> bool {
        match self {
            Peer::Whep(s) => s.is_alive(),
            Peer::Whip(s) => s.is_alive(),
        }
    }

    fn add_remote_candidate(&mut self, line: &str) -> bool {
        match self {
            Peer::Whep(s) => s.add_remote_candidate(line),
            Peer::Whip(s) => s.add_remote_candidate(line),
        }
    }
}

struct Entry {
    peer: Peer,
    resource: ResourceId,
    kind: Kind,
    key: StreamKey,
    client: IpAddr,
    etag: String,
    remote_ufrag: Option<String>,
    /// The deadline filed in `timers`.
    deadline: Option<Instant>,
    /// Listed in `ready`.
    ready: bool,
}

/// One watched engine stream and its WHEP viewers here.
struct Watch {
    key: StreamKey,
    signal: Signal,
    viewers: Vec<SessionId>,
}

/// The WebRTC service of one UDP socket (see the module documentation).
///
/// Invariants: every session is in the [`Router`], in `by_resource`, in
/// `per_ip` (counted) and, with a deadline, once in `timers`; a WHEP
/// session is a viewer of exactly one `watches` entry; at most
/// `max_sessions` sessions and `max_sessions_per_ip` per client IP;
/// `ready` lists each session at most once.
pub struct WebRtcService {
    config: WebRtcConfig,
    local: SocketAddr,
    candidates: Vec<SocketAddr>,
    router: Router,
    sessions: HashMap<SessionId, Entry>,
    by_resource: HashMap<ResourceId, SessionId>,
    per_ip: HashMap<IpAddr, usize>,
    timers: BTreeSet<(Instant, u64)>,
    watches: Vec<Watch>,
    watch_of: HashMap<StreamKey, usize>,
    media_version: u64,
    ready: VecDeque<SessionId>,
    inbox: Inbox<Command>,
    stats: Arc<WebRtcStats>,
    scratch: Vec<SessionId>,
    closing: bool,
}

impl core::fmt::Debug for WebRtcService {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WebRtcService")
            .field("local", &self.local)
            .field("candidates", &self.candidates)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl WebRtcService {
    /// A service on `sockets` (the first is used) draining `inbox`.
    pub fn new(
        config: WebRtcConfig,
        sockets: &[SocketAddr],
        inbox: Inbox<Command>,
        stats: Arc<WebRtcStats>,
        _now: Instant,
    ) -> Self {
        let local = sockets
            .first()
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let mut candidates = config.host_candidates.clone();
        if candidates.is_empty() && !local.ip().is_unspecified() {
            candidates.push(local);
        }
        WebRtcService {
            router: Router::new(config.max_sessions),
            config,
            local,
            candidates,
            sessions: HashMap::new(),
            by_resource: HashMap::new(),
            per_ip: HashMap::new(),
            timers: BTreeSet::new(),
            watches: Vec::new(),
            watch_of: HashMap::new(),
            media_version: 0,
            ready: VecDeque::new(),
            inbox,
            stats,
            scratch: Vec::new(),
            closing: false,
        }
    }

    /// Sessions now.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether there is no session.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The host candidates put in answers.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.candidates
    }

    fn open(&mut self, now: Instant, req: OpenRequest) {
        let OpenRequest {
            engine,
            key,
            offer,
            remote_ufrag,
            client,
            resource,
            seed,
            reply,
        } = req;
        if self.closing {
            let _ = reply.send(Err(OpenError::Closing));
            return;
        }
        if self.by_resource.contains_key(&resource) {
            let _ = reply.send(Err(OpenError::DuplicateResource));
            return;
        }
        let from_ip = self.per_ip.get(&client).copied().unwrap_or(0);
        let refusal = if self.sessions.len() >= self.config.max_sessions {
            Some(OpenError::TooManySessions(self.config.max_sessions))
        } else if from_ip >= self.config.max_sessions_per_ip {
            Some(OpenError::TooManyFromClient(
                self.config.max_sessions_per_ip,
            ))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = LOG_REFUSED.check(now) {
                tracing::warn!(%client, suppressed, "WebRTC session refused: {refusal}");
            }
            let _ = reply.send(Err(refusal));
            return;
        }
        let built = match engine {
            EngineSide::Play(subscriber) => WhepSession::new(
                &offer,
                &self.candidates,
                subscriber,
                now,
                self.config.epoch,
                seed,
            )
            .map(|(s, a)| {
                #[cfg(feature = "transcode")]
                let s = {
                    let mut s = s;
                    if let Some(feeds) = &self.config.opus_feeds {
                        s.set_opus_feeds(feeds.clone());
                    }
                    s
                };
                (Peer::Whep(Box::new(s)), a, Kind::Whep)
            }),
            EngineSide::Publish(publisher) => WhipSession::new(
                &offer,
                &self.candidates,
                publisher,
                now,
                self.config.epoch,
                seed,
            )
            .map(|(s, a)| (Peer::Whip(Box::new(s)), a, Kind::Whip)),
        };
        let (peer, answer, kind) = match built {
            Ok(b) => b,
            Err(e) => {
                let _ = reply.send(Err(OpenError::Offer(e)));
                return;
            }
        };
        let ufrag = match &peer {
            Peer::Whep(s) => s.local_ufrag().to_owned(),
            Peer::Whip(s) => s.local_ufrag().to_owned(),
        };
        let id = match self.router.insert(&ufrag) {
            Ok(id) => id,
            Err(_) => {
                let _ = reply.send(Err(OpenError::TooManySessions(self.config.max_sessions)));
                return;
            }
        };
        let etag = format!("\"{}-1\"", id.0);
        let watch_signal = match &peer {
            Peer::Whep(s) => Some(s.media_signal()),
            Peer::Whip(_) => None,
        };
        self.sessions.insert(
            id,
            Entry {
                peer,
                resource,
                kind,
                key: key.clone(),
                client,
                etag: etag.clone(),
                remote_ufrag,
                deadline: None,
                ready: false,
            },
        );
        self.by_resource.insert(resource, id);
        *self.per_ip.entry(client).or_insert(0) += 1;
        if let Some(signal) = watch_signal {
            self.watch(id, key.clone(), signal);
        }
        self.stats.opened.fetch_add(1, Ordering::Relaxed);
        self.stats
            .sessions
            .store(self.sessions.len() as u64, Ordering::Relaxed);
        tracing::info!(
            kind = kind.as_str(),
            stream = %escaped(&key.to_string()),
            %client,
            session = %resource,
            "WebRTC session opened"
        );
        self.after(now, id);
        if reply.send(Ok(Opened { answer, etag })).is_err() {
            // The HTTP request is gone: nobody will ever learn the
            // session's URL or answer; drop it now.
            self.remove(now, id, "HTTP request gone before the answer");
        }
    }

    fn watch(&mut self, id: SessionId, key: StreamKey, signal: Signal) {
        if let Some(w) = self
            .watch_of
            .get(&key)
            .copied()
            .and_then(|i| self.watches.get_mut(i))
        {
            w.viewers.push(id);
            return;
        }
        self.watch_of.insert(key.clone(), self.watches.len());
        self.watches.push(Watch {
            key,
            signal,
            viewers: vec![id],
        });
        self.media_version = self.media_version.wrapping_add(1);
    }

    fn unwatch(&mut self, id: SessionId, key: &StreamKey) {
        let Some(i) = self.watch_of.get(key).copied() else {
            return;
        };
        let Some(w) = self.watches.get_mut(i) else {
            return;
        };
        w.viewers.retain(|v| *v != id);
        if !w.viewers.is_empty() {
            return;
        }
        self.watches.swap_remove(i);
        self.watch_of.remove(key);
        if let Some(moved) = self.watches.get(i) {
            self.watch_of.insert(moved.key.clone(), i);
        }
        self.media_version = self.media_version.wrapping_add(1);
    }

    /// Bookkeeping after a session was driven: gone if dead, else its
    /// deadline refiled and its transmits listed.
    fn after(&mut self, now: Instant, id: SessionId) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        if !entry.peer.is_alive() {
            self.remove(now, id, "ICE disconnected, DTLS closed or stream ended");
            return;
        }
        let deadline = entry.peer.poll_timeout();
        if deadline != entry.deadline {
            if let Some(old) = entry.deadline {
                self.timers.remove(&(old, id.0));
            }
            if let Some(new) = deadline {
                self.timers.insert((new, id.0));
            }
            entry.deadline = deadline;
        }
        if !entry.ready {
            entry.ready = true;
            self.ready.push_back(id);
        }
    }

    fn remove(&mut self, now: Instant, id: SessionId, why: &str) {
        let Some(entry) = self.sessions.remove(&id) else {
            return;
        };
        self.router.remove(id);
        self.by_resource.remove(&entry.resource);
        if let Some(d) = entry.deadline {
            self.timers.remove(&(d, id.0));
        }
        if let Some(n) = self.per_ip.get_mut(&entry.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&entry.client);
            }
        }
        if entry.kind == Kind::Whep {
            self.unwatch(id, &entry.key);
        }
        self.stats.closed.fetch_add(1, Ordering::Relaxed);
        self.stats
            .sessions
            .store(self.sessions.len() as u64, Ordering::Relaxed);
        if let Some(suppressed) = LOG_CLOSED.check(now) {
            tracing::info!(
                kind = entry.kind.as_str(),
                stream = %escaped(&entry.key.to_string()),
                client = %entry.client,
                session = %entry.resource,
                suppressed,
                "WebRTC session closed: {why}"
            );
        }
        // Dropping the entry drops the subscriber (the engine subscription
        // ends) or the publisher (the stream ends).
        drop(entry);
    }

    fn find(&self, resource: &ResourceId, kind: Kind, key: &StreamKey) -> Option<SessionId> {
        let id = *self.by_resource.get(resource)?;
        let entry = self.sessions.get(&id)?;
        (entry.kind == kind && entry.key == *key).then_some(id)
    }

    fn patch(
        &mut self,
        now: Instant,
        id: Option<SessionId>,
        if_match: Option<&str>,
        fragment: &str,
    ) -> PatchOutcome {
        let Some(id) = id else {
            return PatchOutcome::NotFound;
        };
        let Some(entry) = self.sessions.get_mut(&id) else {
            return PatchOutcome::NotFound;
        };
        if let Some(tag) = if_match {
            let tag = tag.trim();
            if tag != "*" && !tag.split(',').any(|t| t.trim() == entry.etag) {
                return PatchOutcome::Stale;
            }
        }
        // RFC 9725 §4.3.2 / RFC 8840: new ice-ufrag or ice-pwd = restart.
        let mut added = 0;
        for line in fragment.lines().map(str::trim) {
            if let Some(ufrag) = line.strip_prefix("a=ice-ufrag:") {
                if entry.remote_ufrag.as_deref() != Some(ufrag.trim()) {
                    return PatchOutcome::RestartUnsupported;
                }
            } else if let Some(cand) = line.strip_prefix("a=") {
                if cand.starts_with("candidate:") && added < MAX_TRICKLE_CANDIDATES {
                    added += 1;
                    entry.peer.add_remote_candidate(cand);
                }
            }
        }
        self.after(now, id);
        PatchOutcome::Done
    }

    fn command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Open(req) => self.open(now, *req),
            Command::Patch {
                resource,
                kind,
                key,
                if_match,
                fragment,
                reply,
            } => {
                let id = self.find(&resource, kind, &key);
                let outcome = self.patch(now, id, if_match.as_deref(), &fragment);
                let _ = reply.send(outcome);
            }
            Command::Delete {
                resource,
                kind,
                key,
                reply,
            } => {
                let found = self.find(&resource, kind, &key);
                if let Some(id) = found {
                    self.remove(now, id, "DELETE");
                }
                let _ = reply.send(found.is_some());
            }
        }
    }

    /// The local address a datagram from `src` was sent to.
    fn destination(&self, src: SocketAddr, dst_ip: Option<IpAddr>) -> SocketAddr {
        let port = self.local.port();
        if let Some(ip) = dst_ip {
            return SocketAddr::new(ip, port);
        }
        if !self.local.ip().is_unspecified() {
            return self.local;
        }
        self.candidates
            .iter()
            .find(|c| c.is_ipv4() == src.is_ipv4())
            .copied()
            .unwrap_or(self.local)
    }
}

impl DatagramService for WebRtcService {
    fn handle_datagram(&mut self, now: Instant, datagram: Received) {
        let Some(id) = self.router.route(datagram.src, &datagram.contents) else {
            self.stats.junk.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = LOG_JUNK.check(now) {
                tracing::debug!(
                    peer = %datagram.src,
                    len = datagram.contents.len(),
                    suppressed,
                    "WebRTC: datagram for no session dropped"
                );
            }
            return;
        };
        let dst = self.destination(datagram.src, datagram.dst_ip);
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        match entry
            .peer
            .handle_datagram(now, datagram.src, dst, &datagram.contents)
        {
            Ok(()) | Err(WebRtcError::UnknownDatagram) => self.after(now, id),
            Err(e) => self.remove(now, id, &format!("error: {e}")),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, raw)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, raw));
            let id = SessionId(raw);
            let Some(entry) = self.sessions.get_mut(&id) else {
                continue;
            };
            entry.deadline = None;
            match entry.peer.handle_timeout(now) {
                Ok(()) => self.after(now, id),
                Err(e) => self.remove(now, id, &format!("error: {e}")),
            }
        }
    }

    fn command_signal(&self) -> Option<Signal> {
        Some(self.inbox.signal())
    }

    fn handle_commands(&mut self, now: Instant) {
        while let Some(cmd) = self.inbox.try_recv() {
            self.command(now, cmd);
        }
    }

    fn handle_media(&mut self, now: Instant, fired: &[usize]) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        for &i in fired {
            if let Some(w) = self.watches.get(i) {
                scratch.extend_from_slice(&w.viewers);
            }
        }
        for &id in &scratch {
            let Some(entry) = self.sessions.get_mut(&id) else {
                continue;
            };
            let Peer::Whep(s) = &mut entry.peer else {
                continue;
            };
            match s.handle_media(now) {
                Ok(()) => self.after(now, id),
                Err(e) => self.remove(now, id, &format!("error: {e}")),
            }
        }
        self.scratch = scratch;
    }

    fn poll_transmit(&mut self) -> Option<UdpTransmit> {
        while let Some(&id) = self.ready.front() {
            let Some(entry) = self.sessions.get_mut(&id) else {
                self.ready.pop_front();
                continue;
            };
            let Some(t) = entry.peer.poll_transmit() else {
                entry.ready = false;
                self.ready.pop_front();
                continue;
            };
            let src_ip = (self.local.ip().is_unspecified()
                && self.config.local_ips.contains(&t.source.ip()))
            .then_some(t.source.ip());
            return Some(UdpTransmit {
                socket: SocketIndex(0),
                src_ip,
                destination: t.destination,
                contents: smallvec![Bytes::from(t.contents)],
            });
        }
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _)| at)
    }

    fn media_version(&self) -> u64 {
        self.media_version
    }

    fn media_signals(&self, out: &mut Vec<Signal>) {
        out.extend(self.watches.iter().map(|w| w.signal.clone()));
    }

    fn close(&mut self, now: Instant) {
        if self.closing {
            return;
        }
        self.closing = true;
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        tracing::info!(sessions = ids.len(), "WebRTC service closing");
        for id in ids {
            self.remove(now, id, "server shutting down");
        }
        while let Some(cmd) = self.inbox.try_recv() {
            self.command(now, cmd);
        }
    }

    fn is_closed(&self) -> bool {
        self.closing && self.ready.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn resource_ids_round_trip_and_reject_junk() {
        let id = ResourceId([0xab; 16]);
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(ResourceId::parse(&text), Some(id));
        assert_eq!(ResourceId::parse(&text.to_uppercase()), None);
        assert_eq!(ResourceId::parse("zz"), None);
        assert_eq!(ResourceId::parse(&"g".repeat(32)), None);
        assert_eq!(ResourceId::parse("+b".repeat(16).as_str()), None);
        assert_eq!(ResourceId::parse("é".repeat(16).as_str()), None);
    }
}
