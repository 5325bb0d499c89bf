//! Engine glue: an RTMP [`ServerConnection`] joined to the [`Engine`] and an
//! [`Admission`] policy, behind the runtime-free [`StreamSession`] shape that
//! every adapter drives.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::chunk::SharedPartialBudget;
use super::server::{RequestToken, ServerConfig, ServerConnection, ServerEvent};
use crate::admission::{
    Admission, AdmissionKind, AdmissionRequest, AdmissionWait, AllowAll, Decision, RejectCode,
    Rejection, MAX_ADMISSION_WAIT,
};
use crate::engine::{
    Engine, MediaWatchdog, Publisher, Recv, SessionTag, Signal, StreamKey, Subscriber,
};
use crate::log_limit::LogLimiter;
use crate::peer_text::escaped;
use crate::session::{CloseReason, SessionFactory, StreamConn, StreamSession};
use crate::time::Instant;

/// Refused publish/play requests: a peer can cause them in a flood, so
/// their lines are rate-limited (docs/security.md item 7).
static REFUSED: LogLimiter = LogLimiter::new(10, std::time::Duration::from_secs(10));

/// Output a player may have queued before [`RtmpSession::handle_media`]
/// stops pulling frames from the engine (1 MiB): a slow socket leaves frames
/// in the engine's ring, where the subscriber skips to the next keyframe.
pub const MAX_PENDING_OUTPUT: usize = 1 << 20;

/// Builds an [`RtmpSession`] per accepted TCP connection.
#[derive(Clone)]
pub struct RtmpSessionFactory {
    engine: Engine,
    admission: Arc<dyn Admission>,
    config: ServerConfig,
    /// Unfinished inbound messages of every session built here
    /// ([`ServerConfig::max_partial_bytes_total`]).
    partial_budget: Arc<SharedPartialBudget>,
}

impl core::fmt::Debug for RtmpSessionFactory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RtmpSessionFactory")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RtmpSessionFactory {
    /// Sessions publishing to and playing from `engine`, admitting through
    /// `admission`.
    pub fn new(engine: Engine, admission: Arc<dyn Admission>) -> Self {
        let config = ServerConfig::default();
        RtmpSessionFactory {
            engine,
            admission,
            partial_budget: SharedPartialBudget::new(config.max_partial_bytes_total),
            config,
        }
    }

    /// Sessions that admit every request.
    pub fn allow_all(engine: Engine) -> Self {
        Self::new(engine, Arc::new(AllowAll))
    }

    /// Uses `config` for new connections (and a new shared budget of
    /// [`ServerConfig::max_partial_bytes_total`] for them).
    pub fn with_config(mut self, config: ServerConfig) -> Self {
        self.partial_budget = SharedPartialBudget::new(config.max_partial_bytes_total);
        self.config = config;
        self
    }

    /// The budget for unfinished inbound messages shared by every session
    /// this factory (and its clones) built.
    pub fn partial_budget(&self) -> &Arc<SharedPartialBudget> {
        &self.partial_budget
    }

    /// A session for a connection from `peer` (also usable without the trait).
    pub fn session(&self, peer: SocketAddr, now: Instant, seed: u64) -> RtmpSession {
        RtmpSession {
            conn: ServerConnection::with_shared_budget(
                self.config.clone(),
                now,
                seed,
                Some(self.partial_budget.clone()),
            ),
            engine: self.engine.clone(),
            admission: self.admission.clone(),
            peer,
            publisher: None,
            watchdog: None,
            subscriber: None,
            write_merge: std::time::Duration::ZERO,
            sent_metadata: None,
            waiting: None,
            keyframe_requests: 0,
        }
    }
}

impl SessionFactory for RtmpSessionFactory {
    fn new_session(&self, conn: StreamConn, now: Instant, seed: u64) -> Box<dyn StreamSession> {
        Box::new(self.session(conn.peer, now, seed))
    }
}

/// One RTMP connection joined to the engine.
///
/// A deferred decision ([`Decision::Later`]) keeps the machine's request
/// token and nothing from the engine; the machine holds the peer's later
/// input meanwhile (bounded by
/// [`ServerConfig::max_pending_input`](super::ServerConfig::max_pending_input)),
/// [`StreamSession::media_signal`] is the decision's signal and the
/// deadline is part of [`StreamSession::poll_timeout`]; at the deadline the
/// request is refused like a denial ([`RejectCode::Timeout`]).
///
/// On a publish request it asks the [`Admission`], then
/// [`Engine::publish`]; a refusal by either answers
/// `NetStream.Publish.BadName` with the reason and closes. On a play request
/// it asks the admission (refusal: `NetStream.Play.Failed`), then
/// [`Engine::subscribe`] (unknown stream: `NetStream.Play.StreamNotFound`).
/// Stream key: app = the RTMP app, name = the stream name, both without
/// their query; the query goes to admission. Write merging
/// ([`AppConfig::write_merge`](crate::AppConfig::write_merge) of the played
/// stream's app, reported by [`StreamSession::write_merge`]) is the driver's
/// job: it delays [`StreamSession::handle_media`].
///
/// A publisher is watched by a [`MediaWatchdog`] with its app's timeouts:
/// no media frame within
/// [`AppConfig::first_media_timeout`](crate::AppConfig::first_media_timeout)
/// of the admission, or none for
/// [`AppConfig::media_timeout`](crate::AppConfig::media_timeout) after
/// that, closes the connection ([`CloseReason::MediaTimeout`], a
/// rate-limited warning) and frees the stream slot; RTMP Acknowledgements
/// and pings keep the idle timer alive but are no media. Publishes go
/// through [`Engine::publish_from`] (per-address publisher limit).
///
/// Invariants: frames are pulled from the subscriber only while less than
/// [`MAX_PENDING_OUTPUT`] bytes wait in the machine; the stream's metadata
/// goes to the player before the first frame and again, before the next
/// frame, whenever the publisher replaces it.
pub struct RtmpSession {
    conn: ServerConnection,
    engine: Engine,
    admission: Arc<dyn Admission>,
    peer: SocketAddr,
    publisher: Option<Publisher>,
    /// Deadlines of the publisher's media (set while publishing).
    watchdog: Option<MediaWatchdog>,
    subscriber: Option<Subscriber>,
    /// The played app's write-merge window.
    write_merge: std::time::Duration,
    /// The metadata last sent to the player (compared by identity).
    sent_metadata: Option<Bytes>,
    /// A publish or play whose admission decision is deferred.
    waiting: Option<Waiting>,
    /// Viewers' keyframe requests that reached this publisher.
    keyframe_requests: u64,
}

/// A request waiting for a deferred [`Decision`]: the machine's token and
/// the key, nothing taken from the engine yet.
#[derive(Debug)]
struct Waiting {
    token: RequestToken,
    kind: AdmissionKind,
    key: StreamKey,
    wait: AdmissionWait,
}

impl core::fmt::Debug for RtmpSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RtmpSession")
            .field("peer", &self.peer)
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl RtmpSession {
    /// The protocol machine inside.
    pub fn connection(&self) -> &ServerConnection {
        &self.conn
    }

    /// Whether this session publishes a stream right now.
    pub fn is_publishing(&self) -> bool {
        self.publisher.is_some()
    }

    /// Whether this session plays a stream right now.
    pub fn is_playing(&self) -> bool {
        self.subscriber.is_some()
    }

    /// Keyframe requests of the published stream's viewers
    /// ([`Subscriber::request_keyframe`]) that reached this session. RTMP
    /// has no message asking an encoder for a keyframe, so they are only
    /// counted (and logged at debug level).
    pub fn keyframe_requests(&self) -> u64 {
        self.keyframe_requests
    }

    fn note_keyframe_requests(&mut self) {
        let Some(p) = &mut self.publisher else {
            return;
        };
        let n = p.take_keyframe_requests();
        if n > 0 {
            self.keyframe_requests += n;
            debug!(peer = %self.peer, stream = %p.key(), n, "rtmp: keyframe requested; RTMP cannot ask the encoder, noted");
        }
    }

    /// Whether a publish or play waits for a deferred admission decision.
    pub fn is_waiting_for_admission(&self) -> bool {
        self.waiting.is_some()
    }

    fn admit(
        &self,
        kind: AdmissionKind,
        app: &str,
        stream_name: &str,
        query: String,
    ) -> Result<(StreamKey, Decision), Rejection> {
        let key = StreamKey::new(app, stream_name).map_err(|e| {
            Rejection::new(
                RejectCode::BadRequest,
                format!("bad stream key `{app}/{stream_name}`: {e}"),
            )
        })?;
        // `?user=u&pass=p` or `?token=t` on the app or the stream name.
        let credentials = crate::admission::Credentials::from_query(&query);
        let req = AdmissionRequest {
            protocol: "rtmp",
            kind,
            key: key.clone(),
            query,
            peer: self.peer,
            credentials,
        };
        let decision = self.admission.admit(&req);
        Ok((key, decision))
    }

    fn events(&mut self, now: Instant) {
        while let Some(ev) = self.conn.poll_event() {
            match ev {
                ServerEvent::Connected { app, tc_url } => {
                    debug!(peer = %self.peer, app = %escaped(&app), tc_url = %escaped(crate::peer_text::without_query(&tc_url)), "rtmp session connected");
                }
                ServerEvent::PublishRequest {
                    token,
                    app,
                    stream_name,
                    query,
                } => self.on_request(
                    now,
                    token,
                    AdmissionKind::Publish,
                    &app,
                    &stream_name,
                    query,
                ),
                ServerEvent::PlayRequest {
                    token,
                    app,
                    stream_name,
                    query,
                    ..
                } => self.on_request(now, token, AdmissionKind::Play, &app, &stream_name, query),
                ServerEvent::Frame(f) => {
                    if let Some(p) = &mut self.publisher {
                        if let Some(w) = &mut self.watchdog {
                            w.on_frame(now, &f);
                        }
                        p.send(f);
                    }
                }
                ServerEvent::Metadata(m) => {
                    if let Some(p) = &mut self.publisher {
                        p.set_metadata(m);
                    }
                }
                ServerEvent::Unpublished => {
                    self.watchdog = None;
                    if let Some(p) = self.publisher.take() {
                        info!(peer = %self.peer, stream = %escaped(&p.key().to_string()), "rtmp publish ended");
                    }
                }
                ServerEvent::PlayStopped => {
                    if let Some(s) = self.subscriber.take() {
                        info!(peer = %self.peer, stream = %escaped(&s.key().to_string()), "rtmp play ended");
                    }
                }
                ServerEvent::Closed(reason) => {
                    // The one line per peer is the adapter's close line
                    // (`session::serve::log_end`, rate-limited).
                    debug!(peer = %self.peer, %reason, "rtmp session closed");
                    self.publisher = None;
                    self.watchdog = None;
                    self.subscriber = None;
                    self.waiting = None;
                }
            }
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        token: RequestToken,
        kind: AdmissionKind,
        app: &str,
        stream_name: &str,
        query: String,
    ) {
        let (key, decision) = match self.admit(kind, app, stream_name, query) {
            Ok(k) => k,
            Err(rejection) => {
                if let Some(suppressed) = REFUSED.check(now) {
                    warn!(peer = %self.peer, app = %escaped(app), stream = %escaped(stream_name), %kind, suppressed, reason = %rejection, "rtmp request refused");
                }
                self.conn.reject(token, rejection);
                return;
            }
        };
        match decision {
            Decision::Allow => self.admitted(now, token, kind, key),
            Decision::Deny(rejection) => {
                if let Some(suppressed) = REFUSED.check(now) {
                    warn!(peer = %self.peer, stream = %escaped(&key.to_string()), %kind, suppressed, reason = %rejection, "rtmp request refused");
                }
                self.conn.reject(token, rejection);
            }
            Decision::Later(pending) => {
                info!(peer = %self.peer, stream = %escaped(&key.to_string()), %kind, timeout = ?pending.timeout(), "rtmp request waits for admission");
                self.waiting = Some(Waiting {
                    token,
                    kind,
                    key,
                    wait: pending.start(now, MAX_ADMISSION_WAIT),
                });
            }
        }
    }

    /// Applies a deferred decision that arrived (or the deadline that
    /// passed); then handles what the machine raised since.
    fn poll_admission(&mut self, now: Instant) {
        let Some(decided) = self.waiting.as_ref().and_then(|w| w.wait.poll(now)) else {
            return;
        };
        let Some(w) = self.waiting.take() else {
            return;
        };
        match decided {
            Ok(()) => {
                info!(peer = %self.peer, stream = %escaped(&w.key.to_string()), kind = %w.kind, "rtmp request admitted after waiting");
                self.admitted(now, w.token, w.kind, w.key);
            }
            Err(rejection) => {
                if let Some(suppressed) = REFUSED.check(now) {
                    warn!(peer = %self.peer, stream = %escaped(&w.key.to_string()), kind = %w.kind, suppressed, reason = %rejection, "rtmp request refused after waiting");
                }
                self.conn.reject(w.token, rejection);
            }
        }
        self.events(now);
    }

    /// The admission allowed the request: now the engine is asked.
    fn admitted(&mut self, now: Instant, token: RequestToken, kind: AdmissionKind, key: StreamKey) {
        match kind {
            AdmissionKind::Publish => self.start_publish(now, token, key),
            AdmissionKind::Play => self.start_play(now, token, key),
        }
    }

    fn start_publish(&mut self, now: Instant, token: RequestToken, key: StreamKey) {
        match self
            .engine
            .publish_as(key.clone(), SessionTag::new("rtmp", self.peer))
        {
            Ok(p) => {
                info!(peer = %self.peer, stream = %escaped(&key.to_string()), "rtmp publish started");
                let app_config = self.engine.app_config(key.app()).unwrap_or_default();
                self.watchdog = Some(MediaWatchdog::new(now, &app_config));
                self.publisher = Some(p);
                self.conn.accept_publish(token);
            }
            Err(e) => {
                if let Some(suppressed) = REFUSED.check(now) {
                    warn!(peer = %self.peer, stream = %escaped(&key.to_string()), suppressed, reason = %e, "rtmp publish refused by engine");
                }
                self.conn.reject(token, Rejection::from(&e));
            }
        }
    }

    fn start_play(&mut self, now: Instant, token: RequestToken, key: StreamKey) {
        match self
            .engine
            .subscribe_as(&key, SessionTag::new("rtmp", self.peer))
        {
            Ok(sub) => {
                info!(peer = %self.peer, stream = %escaped(&key.to_string()), "rtmp play started");
                self.conn.accept_play(token);
                self.sent_metadata = None;
                self.write_merge = self
                    .engine
                    .app_config(key.app())
                    .map(|c| c.write_merge)
                    .unwrap_or_default();
                self.subscriber = Some(sub);
                self.pull();
            }
            Err(e) => {
                if let Some(suppressed) = REFUSED.check(now) {
                    warn!(peer = %self.peer, stream = %escaped(&key.to_string()), suppressed, reason = %e, "rtmp play refused by engine");
                }
                self.conn.reject(token, Rejection::from(&e));
            }
        }
    }

    /// An operator kicked this session's publisher or subscriber
    /// ([`Engine::kick`](crate::Engine::kick)): the connection closes with
    /// [`CloseReason::Kicked`]. Returns whether it did.
    fn close_if_kicked(&mut self, now: Instant) -> bool {
        let kicked = self.publisher.as_ref().is_some_and(|p| p.is_kicked())
            || self.subscriber.as_ref().is_some_and(|s| s.is_kicked());
        if kicked && self.conn.close_reason().is_none() {
            info!(peer = %self.peer, "rtmp session kicked by an operator");
            self.conn.close_with(CloseReason::Kicked);
            self.publisher = None;
            self.subscriber = None;
            self.events(now);
        }
        kicked
    }

    /// Moves frames from the subscriber into the machine while output is small.
    fn pull(&mut self) {
        let Some(sub) = &mut self.subscriber else {
            return;
        };
        // Metadata first (and again whenever the publisher replaces it).
        if let Some(md) = sub.metadata() {
            let same = self
                .sent_metadata
                .as_ref()
                .is_some_and(|s| s.as_ptr() == md.as_ptr() && s.len() == md.len());
            if !same {
                self.conn.send_metadata(&md);
                self.sent_metadata = Some(md);
            }
        }
        while self.conn.pending_transmit() < MAX_PENDING_OUTPUT {
            match sub.recv() {
                Recv::Frame(f) => self.conn.send_frame(&f),
                Recv::Empty => break,
                Recv::End => {
                    info!(peer = %self.peer, stream = %escaped(&sub.key().to_string()), "rtmp played stream ended");
                    self.conn.end_play();
                    self.subscriber = None;
                    break;
                }
            }
        }
    }

    /// Feeds `metadata` of the played stream again (e.g. after it changed).
    pub fn send_metadata(&mut self, metadata: &Bytes) {
        self.conn.send_metadata(metadata);
    }
}

impl StreamSession for RtmpSession {
    fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.conn.handle_input(now, data);
        self.events(now);
        self.poll_admission(now);
        self.note_keyframe_requests();
        self.close_if_kicked(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.conn.handle_timeout(now);
        self.events(now);
        self.poll_admission(now);
        self.note_keyframe_requests();
        if let Some(Err(stall)) = self.watchdog.as_ref().map(|w| w.check(now)) {
            // A peer can cause this in a flood: rate-limited.
            static NO_MEDIA: LogLimiter = LogLimiter::new(10, std::time::Duration::from_secs(10));
            if let Some(suppressed) = NO_MEDIA.check(now) {
                let stream = self.publisher.as_ref().map(|p| p.key().to_string());
                warn!(peer = %self.peer, stream = %escaped(stream.as_deref().unwrap_or("")), reason = %stall, suppressed, "rtmp publisher closed: no media, stream slot freed");
            }
            self.conn.close_with(CloseReason::MediaTimeout(stall));
            self.events(now);
        }
    }

    fn handle_media(&mut self, now: Instant) {
        self.poll_admission(now);
        if self.close_if_kicked(now) {
            return;
        }
        self.pull();
        self.events(now);
    }

    fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize {
        let mut n = 0;
        while let Some(b) = self.conn.poll_transmit() {
            n += b.len();
            out.push(b);
        }
        n
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let waiting = self.waiting.as_ref().map(|w| w.wait.deadline());
        let watchdog = self.watchdog.as_ref().map(MediaWatchdog::deadline);
        self.conn
            .poll_timeout()
            .into_iter()
            .chain(waiting)
            .chain(watchdog)
            .min()
    }

    fn media_signal(&self) -> Option<Signal> {
        match (&self.subscriber, &self.waiting) {
            (Some(s), _) => Some(s.signal()),
            (None, Some(w)) => Some(w.wait.signal().clone()),
            (None, None) => None,
        }
    }

    fn close_reason(&self) -> Option<&CloseReason> {
        self.conn.close_reason()
    }

    fn close(&mut self, now: Instant) {
        self.conn.close(now);
        self.events(now);
    }

    fn write_merge(&self) -> std::time::Duration {
        if self.subscriber.is_some() {
            self.write_merge
        } else {
            std::time::Duration::ZERO
        }
    }
}
