//! The stream registry: apps configured in code, streams keyed by app + name.
//!
//! # Stream announcements
//!
//! The registry owns one engine-wide [`Signal`], the *announcement signal*
//! ([`Engine::streams_signal`]). It is notified after every change of the
//! stream list: a successful [`Engine::publish`] (after the stream is in the
//! list) and the end of a stream (after it left the list, when its
//! [`Publisher`] drops). A watcher (a recorder, a relay, a dashboard) reads
//! the signal's epoch, *then* reads [`Engine::streams`], and when nothing is
//! new waits from that epoch; it never misses a change and never polls:
//!
//! - the list is read under the registry mutex, and a publisher notifies
//!   after releasing it. If the watcher's list lacks a change, the change's
//!   notify comes after the watcher's epoch read in the signal's total order,
//!   so the wait from that epoch returns at once or is woken (the
//!   [`Signal`] invariant). If the epoch read already saw the notify, the
//!   change happened before it, and the list read after it shows the change.
//! - cost: one `fetch_add` per publish and per unpublish when nobody waits
//!   (the signal's fast path); the per-frame path ([`Publisher::send`]) does
//!   not touch it. The waiter lock is taken only when a watcher sleeps.
//! - bounded: the signal holds one entry per waiting watcher; the watcher
//!   reads the current list, so nothing queues up however far it falls
//!   behind (several changes between two reads fold into one wake-up).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use super::bus::{Publisher, StreamShared, Subscriber};
use super::sessions::{Registration, SessionRole, SessionSnapshot, SessionTable, SessionTag};
use super::signal::Signal;
use super::snapshot::{Refusals, StreamSnapshot};

/// An app's settings. Apps are set up in code; the kernel reads no files.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppConfig {
    /// Frames kept from the last keyframe for instant start (at most half the
    /// ring; a longer GOP is not cached: new viewers wait for the next keyframe).
    pub gop_cache_frames: usize,
    /// Payload bytes kept from the last keyframe for instant start (a longer
    /// GOP is not cached).
    pub gop_cache_bytes: usize,
    /// Capacity of each stream's ring, in frames (clamped to
    /// 2..=[`MAX_RING_FRAMES`](super::MAX_RING_FRAMES), rounded up to a
    /// power of two). A subscriber further behind skips to a keyframe.
    pub ring_frames: usize,
    /// Maximum live streams in this app.
    pub max_streams: usize,
    /// Maximum subscribers per stream.
    pub max_subscribers: usize,
    /// How long a viewer's output may be held back to merge writes (0: write
    /// every frame at once, lowest latency).
    pub write_merge: Duration,
    /// A publisher that has sent no media frame this long after its publish
    /// was admitted is closed and its slot freed (default 10 s; see
    /// [`MediaWatchdog`](super::MediaWatchdog)).
    pub first_media_timeout: Duration,
    /// A publisher whose media stops for this long is closed and its slot
    /// freed (default 15 s).
    pub media_timeout: Duration,
}
/// Builder-style setters: the struct is `#[non_exhaustive]`, so other
/// crates start from its default (or constructor) value and chain these.
impl AppConfig {
    /// Sets [`gop_cache_frames`](Self::gop_cache_frames).
    #[must_use]
    pub fn with_gop_cache_frames(mut self, gop_cache_frames: usize) -> Self {
        self.gop_cache_frames = gop_cache_frames;
        self
    }

    /// Sets [`gop_cache_bytes`](Self::gop_cache_bytes).
    #[must_use]
    pub fn with_gop_cache_bytes(mut self, gop_cache_bytes: usize) -> Self {
        self.gop_cache_bytes = gop_cache_bytes;
        self
    }

    /// Sets [`ring_frames`](Self::ring_frames).
    #[must_use]
    pub fn with_ring_frames(mut self, ring_frames: usize) -> Self {
        self.ring_frames = ring_frames;
        self
    }

    /// Sets [`max_streams`](Self::max_streams).
    #[must_use]
    pub fn with_max_streams(mut self, max_streams: usize) -> Self {
        self.max_streams = max_streams;
        self
    }

    /// Sets [`max_subscribers`](Self::max_subscribers).
    #[must_use]
    pub fn with_max_subscribers(mut self, max_subscribers: usize) -> Self {
        self.max_subscribers = max_subscribers;
        self
    }

    /// Sets [`write_merge`](Self::write_merge).
    #[must_use]
    pub fn with_write_merge(mut self, write_merge: Duration) -> Self {
        self.write_merge = write_merge;
        self
    }

    /// Sets [`first_media_timeout`](Self::first_media_timeout).
    #[must_use]
    pub fn with_first_media_timeout(mut self, first_media_timeout: Duration) -> Self {
        self.first_media_timeout = first_media_timeout;
        self
    }

    /// Sets [`media_timeout`](Self::media_timeout).
    #[must_use]
    pub fn with_media_timeout(mut self, media_timeout: Duration) -> Self {
        self.media_timeout = media_timeout;
        self
    }
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            gop_cache_frames: 1024,
            gop_cache_bytes: 32 << 20,
            ring_frames: 2048,
            max_streams: 1024,
            max_subscribers: 10_000,
            write_merge: Duration::ZERO,
            first_media_timeout: Duration::from_secs(10),
            media_timeout: Duration::from_secs(15),
        }
    }
}

/// Default of [`Engine::set_max_publishers_per_ip`]: generous for an
/// encoder farm behind one address, far below an app's 1024 stream slots,
/// so that one host cannot take them all.
pub const DEFAULT_MAX_PUBLISHERS_PER_IP: usize = 64;

/// Why a [`StreamKey`] could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamKeyError {
    /// The app or the stream name is empty.
    #[error("stream key needs a non-empty app and stream name")]
    Empty,
    /// A name is longer than 256 bytes.
    #[error("stream key part longer than 256 bytes")]
    TooLong,
    /// A name contains `/`, `..`, a control character or whitespace.
    #[error("stream key contains a forbidden character")]
    BadChar,
}

/// App + stream name, e.g. `live` + `cam`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    app: Arc<str>,
    name: Arc<str>,
}

impl StreamKey {
    /// Builds a key, validating both parts.
    pub fn new(app: &str, name: &str) -> Result<Self, StreamKeyError> {
        for part in [app, name] {
            if part.is_empty() {
                return Err(StreamKeyError::Empty);
            }
            if part.len() > 256 {
                return Err(StreamKeyError::TooLong);
            }
            if part == ".."
                || part == "."
                || part
                    .chars()
                    .any(|c| c == '/' || c == '\\' || c.is_control() || c.is_whitespace())
            {
                return Err(StreamKeyError::BadChar);
            }
        }
        Ok(StreamKey {
            app: app.into(),
            name: name.into(),
        })
    }

    /// Parses `app/name`.
    pub fn parse(path: &str) -> Result<Self, StreamKeyError> {
        let path = path.trim_matches('/');
        match path.split_once('/') {
            Some((app, name)) => Self::new(app, name),
            None => Err(StreamKeyError::Empty),
        }
    }

    /// The app part.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The stream name part.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl core::fmt::Display for StreamKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", self.app, self.name)
    }
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// No app of that name is set up.
    #[error("unknown app `{0}`")]
    UnknownApp(String),
    /// The stream already has a live publisher.
    #[error("stream `{0}` is already being published")]
    AlreadyPublishing(StreamKey),
    /// The app's stream limit is reached.
    #[error("app `{0}` has reached its limit of {1} streams")]
    TooManyStreams(String, usize),
    /// The peer's address already publishes the most streams one address
    /// may ([`Engine::set_max_publishers_per_ip`]).
    #[error("{0} already publishes {1} streams, the limit per address")]
    TooManyFromPeer(IpAddr, usize),
}

/// Why a subscribe was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// No app of that name is set up.
    #[error("unknown app `{0}`")]
    UnknownApp(String),
    /// Nobody publishes that stream.
    #[error("stream `{0}` not found")]
    NotFound(StreamKey),
    /// The stream's subscriber limit is reached.
    #[error("stream `{0}` has reached its limit of {1} subscribers")]
    TooManySubscribers(StreamKey, usize),
}

#[derive(Debug)]
struct PerIp {
    max: usize,
    /// Live publishers per source address. An entry exists only while its
    /// count is above zero, so the table holds at most one entry per live
    /// stream (bounded by the apps' stream limits).
    count: HashMap<IpAddr, usize>,
}

impl Default for PerIp {
    fn default() -> Self {
        PerIp {
            max: DEFAULT_MAX_PUBLISHERS_PER_IP,
            count: HashMap::new(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Publishers per source address (see [`Engine::publish_from`]).
    publishers_per_ip: Mutex<PerIp>,
    apps: Mutex<HashMap<String, AppConfig>>,
    default_app: Mutex<Option<AppConfig>>,
    streams: Mutex<HashMap<StreamKey, Arc<StreamShared>>>,
    /// Notified after every change of `streams` (see the module docs).
    announce: Signal,
    /// Every live publisher and subscriber ([`super::sessions`]).
    sessions: Arc<SessionTable>,
    /// Publishes and subscribes the engine refused, by reason.
    refused: RefusalCounters,
}

/// Refusal counters (any thread adds; `Relaxed`: they order nothing).
#[derive(Debug, Default)]
struct RefusalCounters {
    unknown_app: AtomicU64,
    already_publishing: AtomicU64,
    too_many_streams: AtomicU64,
    too_many_from_peer: AtomicU64,
    not_found: AtomicU64,
    too_many_subscribers: AtomicU64,
}

impl RefusalCounters {
    fn publish(&self, e: &PublishError) {
        let c = match e {
            PublishError::UnknownApp(_) => &self.unknown_app,
            PublishError::AlreadyPublishing(_) => &self.already_publishing,
            PublishError::TooManyStreams(..) => &self.too_many_streams,
            PublishError::TooManyFromPeer(..) => &self.too_many_from_peer,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn subscribe(&self, e: &SubscribeError) {
        let c = match e {
            SubscribeError::UnknownApp(_) => &self.unknown_app,
            SubscribeError::NotFound(_) => &self.not_found,
            SubscribeError::TooManySubscribers(..) => &self.too_many_subscribers,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Refusals {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Refusals {
            unknown_app: l(&self.unknown_app),
            already_publishing: l(&self.already_publishing),
            too_many_streams: l(&self.too_many_streams),
            too_many_from_peer: l(&self.too_many_from_peer),
            not_found: l(&self.not_found),
            too_many_subscribers: l(&self.too_many_subscribers),
        }
    }
}

/// The engine: cheap to clone, shared by every session and adapter.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Engine {
    /// An engine with no apps: every publish and play is refused until
    /// [`add_app`](Self::add_app) or [`set_default_app`](Self::set_default_app).
    pub fn new() -> Self {
        Self::default()
    }

    /// An engine that accepts any app name with the default [`AppConfig`].
    pub fn with_defaults() -> Self {
        let e = Self::new();
        e.set_default_app(Some(AppConfig::default()));
        e
    }

    /// Sets up (or reconfigures) an app. Running streams keep their settings.
    pub fn add_app(&self, name: &str, config: AppConfig) {
        lock(&self.inner.apps).insert(name.to_owned(), config);
    }

    /// The settings used for app names not set up with `add_app` (`None`: refuse them).
    pub fn set_default_app(&self, config: Option<AppConfig>) {
        *lock(&self.inner.default_app) = config;
    }

    /// The settings of `app`, if it is accepted.
    pub fn app_config(&self, app: &str) -> Option<AppConfig> {
        lock(&self.inner.apps)
            .get(app)
            .cloned()
            .or_else(|| lock(&self.inner.default_app).clone())
    }

    /// Most streams one source address may publish at once through
    /// [`publish_from`](Self::publish_from) (default
    /// [`DEFAULT_MAX_PUBLISHERS_PER_IP`]; 0 turns the limit off).
    pub fn set_max_publishers_per_ip(&self, max: usize) {
        lock(&self.inner.publishers_per_ip).max = max;
    }

    /// Streams published from `ip` right now (through
    /// [`publish_from`](Self::publish_from)).
    pub fn publishers_from(&self, ip: IpAddr) -> usize {
        lock(&self.inner.publishers_per_ip)
            .count
            .get(&ip)
            .copied()
            .unwrap_or(0)
    }

    /// Starts publishing `key` for a peer at `peer`: like
    /// [`publish`](Self::publish), and refused with
    /// [`PublishError::TooManyFromPeer`] when that address already
    /// publishes the most streams one address may. Every protocol's glue
    /// publishes through this; the count drops when the [`Publisher`]
    /// drops.
    pub fn publish_from(&self, key: StreamKey, peer: IpAddr) -> Result<Publisher, PublishError> {
        self.publish_limited(key, peer, SessionTag::internal())
    }

    /// Like [`publish_from`](Self::publish_from) for the peer of `tag`
    /// (its address counts toward the per-address limit), listed in
    /// [`sessions`](Self::sessions) with `tag`'s protocol and peer. A tag
    /// without a peer publishes like [`publish_tagged`](Self::publish_tagged).
    pub fn publish_as(&self, key: StreamKey, tag: SessionTag) -> Result<Publisher, PublishError> {
        match tag.peer {
            Some(peer) => self.publish_limited(key, peer.ip(), tag),
            None => self.publish_tagged(key, tag),
        }
    }

    fn publish_limited(
        &self,
        key: StreamKey,
        peer: IpAddr,
        tag: SessionTag,
    ) -> Result<Publisher, PublishError> {
        {
            let mut per_ip = lock(&self.inner.publishers_per_ip);
            let max = per_ip.max;
            let n = per_ip.count.entry(peer).or_insert(0);
            if max > 0 && *n >= max {
                let n = *n;
                let e = PublishError::TooManyFromPeer(peer, n);
                self.inner.refused.publish(&e);
                return Err(e);
            }
            *n += 1;
        }
        match self.publish_inner(key, Some(peer), tag) {
            Ok(p) => Ok(p),
            Err(e) => {
                self.release_ip(peer);
                Err(e)
            }
        }
    }

    fn release_ip(&self, peer: IpAddr) {
        let mut per_ip = lock(&self.inner.publishers_per_ip);
        if let Some(n) = per_ip.count.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_ip.count.remove(&peer);
            }
        }
    }

    /// Starts publishing `key`. The stream ends when the [`Publisher`] drops.
    pub fn publish(&self, key: StreamKey) -> Result<Publisher, PublishError> {
        self.publish_inner(key, None, SessionTag::internal())
    }

    /// Like [`publish`](Self::publish) (no per-address limit), listed in
    /// [`sessions`](Self::sessions) with `tag`'s protocol and peer.
    pub fn publish_tagged(
        &self,
        key: StreamKey,
        tag: SessionTag,
    ) -> Result<Publisher, PublishError> {
        self.publish_inner(key, None, tag)
    }

    fn publish_inner(
        &self,
        key: StreamKey,
        peer: Option<IpAddr>,
        tag: SessionTag,
    ) -> Result<Publisher, PublishError> {
        let r = self.publish_checked(key, peer, tag);
        if let Err(e) = &r {
            self.inner.refused.publish(e);
        }
        r
    }

    fn publish_checked(
        &self,
        key: StreamKey,
        peer: Option<IpAddr>,
        tag: SessionTag,
    ) -> Result<Publisher, PublishError> {
        let cfg = self
            .app_config(key.app())
            .ok_or_else(|| PublishError::UnknownApp(key.app().to_owned()))?;
        let mut streams = lock(&self.inner.streams);
        if let Some(s) = streams.get(&key) {
            if s.is_live() {
                return Err(PublishError::AlreadyPublishing(key));
            }
        }
        let live_in_app = streams.keys().filter(|k| k.app() == key.app()).count();
        if live_in_app >= cfg.max_streams && !streams.contains_key(&key) {
            return Err(PublishError::TooManyStreams(
                key.app().to_owned(),
                cfg.max_streams,
            ));
        }
        let shared = Arc::new(StreamShared::new(key.clone(), cfg));
        streams.insert(key, shared.clone());
        drop(streams);
        // After the insert is visible and outside the lock (a waker may
        // call back into the engine).
        self.inner.announce.notify();
        let engine = self.clone();
        let entry = self
            .inner
            .sessions
            .insert(SessionRole::Publisher, tag, shared.clone(), None);
        let mut publisher = Publisher::new(
            shared,
            Box::new(move |k: &StreamKey, s: &Arc<StreamShared>| {
                if let Some(ip) = peer {
                    engine.release_ip(ip);
                }
                engine.remove(k, s)
            }),
        );
        publisher.set_registration(Registration {
            table: self.inner.sessions.clone(),
            entry,
        });
        Ok(publisher)
    }

    fn remove(&self, key: &StreamKey, shared: &Arc<StreamShared>) {
        let removed = {
            let mut streams = lock(&self.inner.streams);
            let ours = streams.get(key).is_some_and(|s| Arc::ptr_eq(s, shared));
            if ours {
                streams.remove(key);
            }
            ours
        };
        // A session already replaced by a new publish was announced by it.
        if removed {
            self.inner.announce.notify();
        }
    }

    /// Subscribes to a live stream, starting with configs and the cached GOP.
    pub fn subscribe(&self, key: &StreamKey) -> Result<Subscriber, SubscribeError> {
        self.subscribe_as(key, SessionTag::internal())
    }

    /// Like [`subscribe`](Self::subscribe), listed in
    /// [`sessions`](Self::sessions) with `tag`'s protocol and peer (and
    /// counted in its stream's viewers per protocol).
    pub fn subscribe_as(
        &self,
        key: &StreamKey,
        tag: SessionTag,
    ) -> Result<Subscriber, SubscribeError> {
        let r = self.subscribe_checked(key, tag);
        if let Err(e) = &r {
            self.inner.refused.subscribe(e);
        }
        r
    }

    fn subscribe_checked(
        &self,
        key: &StreamKey,
        tag: SessionTag,
    ) -> Result<Subscriber, SubscribeError> {
        if self.app_config(key.app()).is_none() {
            return Err(SubscribeError::UnknownApp(key.app().to_owned()));
        }
        let shared = lock(&self.inner.streams)
            .get(key)
            .cloned()
            .ok_or_else(|| SubscribeError::NotFound(key.clone()))?;
        let mut sub = Subscriber::attach(shared)?;
        let entry = self.inner.sessions.insert(
            SessionRole::Viewer,
            tag,
            sub.shared().clone(),
            Some(sub.stats()),
        );
        sub.set_registration(Registration {
            table: self.inner.sessions.clone(),
            entry,
        });
        Ok(sub)
    }

    /// A copy of every live publisher's and subscriber's numbers, by id
    /// (see [`super::sessions`] for the cost: one pointer copy per session
    /// under the table's lock, then atomic loads).
    pub fn sessions(&self) -> Vec<SessionSnapshot> {
        self.inner
            .sessions
            .entries()
            .iter()
            .map(|e| SessionSnapshot::of(e))
            .collect()
    }

    /// One session's numbers.
    pub fn session(&self, id: u64) -> Option<SessionSnapshot> {
        self.inner.sessions.get(id).map(|e| SessionSnapshot::of(&e))
    }

    /// Live publishers and subscribers.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Asks session `id` to end (an operator's kick): a subscriber reads
    /// [`Recv::End`](super::Recv::End) from then on, and the glue of every
    /// protocol closes the connection of a kicked publisher or subscriber
    /// (see [`Publisher::is_kicked`]). The stream's signal is notified so
    /// that a waiting session sees it at once. `false`: no such session.
    pub fn kick(&self, id: u64) -> bool {
        let Some(entry) = self.inner.sessions.get(id) else {
            return false;
        };
        entry.kicked.store(true, Ordering::Release);
        entry.shared.signal().notify();
        true
    }

    /// Totals per protocol and role since the engine was built (ended
    /// sessions included: monotonic counters), sorted by protocol.
    pub fn protocol_totals(&self) -> Vec<super::sessions::ProtocolTotals> {
        self.inner.sessions.totals()
    }

    /// Publishes and subscribes refused by the engine, by reason.
    pub fn refusals(&self) -> Refusals {
        self.inner.refused.snapshot()
    }

    /// A copy of every live stream's numbers, sorted by key: its counters,
    /// publisher, codecs, and viewers per protocol (one pass over the
    /// session table; no lock held while reading counters or codecs).
    pub fn streams_snapshot(&self) -> Vec<StreamSnapshot> {
        let streams: Vec<_> = lock(&self.inner.streams).values().cloned().collect();
        let sessions = self.inner.sessions.entries();
        let mut out: Vec<StreamSnapshot> = streams
            .iter()
            .map(|s| StreamSnapshot::of(s, &sessions))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// One live stream's numbers (see [`streams_snapshot`](Self::streams_snapshot)).
    pub fn stream_snapshot(&self, key: &StreamKey) -> Option<StreamSnapshot> {
        let shared = lock(&self.inner.streams).get(key).cloned()?;
        let sessions = self.inner.sessions.entries();
        Some(StreamSnapshot::of(&shared, &sessions))
    }

    /// Keys of the live streams, sorted.
    ///
    /// To follow the list without polling, read the epoch of
    /// [`streams_signal`](Self::streams_signal) *before* calling this.
    pub fn streams(&self) -> Vec<StreamKey> {
        let mut v: Vec<_> = lock(&self.inner.streams).keys().cloned().collect();
        v.sort();
        v
    }

    /// The announcement signal: notified after every publish and every end
    /// of a stream (after the stream list changed). One atomic instruction
    /// per publish or unpublish while nobody waits.
    ///
    /// Read its [`epoch`](Signal::epoch) first, then [`streams`](Self::streams);
    /// when nothing changed, wait from that epoch with [`Signal::wait`]
    /// (async task, any executor; a thread waits with
    /// `arcly_blocking::BlockingWait::wait_blocking`).
    /// Frames do not notify it. Several changes may fold into one wake-up:
    /// compare lists, do not count wake-ups.
    ///
    /// ```
    /// # use arcly::engine::{Engine, StreamKey};
    /// let engine = Engine::with_defaults();
    /// let signal = engine.streams_signal();
    /// let seen = signal.epoch();
    /// assert!(engine.streams().is_empty());
    /// let publisher = engine.publish(StreamKey::new("live", "cam")?)?;
    /// // The publish is announced: a wait from `seen` would return at once.
    /// assert_ne!(signal.epoch(), seen);
    /// assert_eq!(engine.streams().len(), 1);
    /// # drop(publisher);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn streams_signal(&self) -> Signal {
        self.inner.announce.clone()
    }

    /// A copy of every live stream's counters, sorted by key (for the
    /// server's JSON API and Prometheus text).
    pub fn stats_snapshot(&self) -> Vec<(StreamKey, super::StreamStatsSnapshot)> {
        let mut v: Vec<_> = lock(&self.inner.streams)
            .iter()
            .map(|(k, s)| (k.clone(), s.stats().snapshot()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Counters of a live stream.
    pub fn stream_stats(&self, key: &StreamKey) -> Option<Arc<super::StreamStats>> {
        lock(&self.inner.streams).get(key).map(|s| s.stats())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::time::Duration;

    fn key(name: &str) -> StreamKey {
        StreamKey::new("live", name).unwrap()
    }

    /// Nobody watches: each publish and unpublish bumps the epoch once and
    /// leaves the sleepers bit clear, i.e. every notify was the single
    /// `fetch_add` of the fast path (no lock, no wake).
    #[test]
    fn unwatched_announcements_stay_on_the_fast_path() {
        let engine = Engine::with_defaults();
        let signal = engine.streams_signal();
        for i in 0..100 {
            let p = engine.publish(key(&format!("s{i}"))).unwrap();
            drop(p);
        }
        assert_eq!(signal.epoch(), 200);
        assert!(!signal.has_sleepers());
        // A refused publish changes nothing and announces nothing.
        let p = engine.publish(key("a")).unwrap();
        assert!(engine.publish(key("a")).is_err());
        assert_eq!(signal.epoch(), 201);
        drop(p);
        assert_eq!(signal.epoch(), 202);
    }

    /// After a watcher was woken and left, the next announcement is back on
    /// the fast path.
    #[test]
    fn fast_path_again_after_a_watcher_leaves() {
        let engine = Engine::with_defaults();
        let signal = engine.streams_signal();
        let seen = signal.epoch();
        let s2 = signal.clone();
        let t = std::thread::spawn(move || {
            crate::engine::signal::test_wait_blocking(&s2, seen, Duration::from_secs(10))
        });
        while !signal.has_sleepers() {
            std::thread::yield_now();
        }
        let p = engine.publish(key("a")).unwrap();
        assert!(t.join().unwrap(), "watcher woken by the publish");
        // A woken blocked thread may leave the bit set on its way out (its
        // re-check is the same `fetch_or`): the next notify clears it once.
        drop(p);
        assert!(!signal.has_sleepers());
        let p = engine.publish(key("a")).unwrap();
        drop(p);
        assert!(!signal.has_sleepers());
        assert_eq!(signal.epoch(), seen + 4);
    }
}
