//! The HLS service: joins engine streams to [`HlsMuxer`]s, runtime-free.
//!
//! # Life of a muxed stream
//!
//! 1. The first HTTP request for a published stream subscribes to the engine
//!    ([`Engine::subscribe`]: the GOP cache gives a keyframe at once) and
//!    creates an [`HlsStream`] holding the subscriber and a fresh muxer. The
//!    stream is pushed as a [`Job`] to the service's [`JobQueue`] (the
//!    router's, see [`crate::job`]).
//! 2. The adapter runs each job as one tiny task calling [`Job::step`]
//!    ([`HlsStream::pump`]) and doing what the returned [`JobState`] says:
//!    pump again, wait on a signal or a deadline, or stop. `pump` moves
//!    frames from the subscriber into the muxer (at most
//!    [`HlsServiceConfig::pump_budget`] per call) and, when the playlist
//!    changed (a part completed: once per part, not per frame), notifies the
//!    stream's *advanced* signal, on which parked requests wait.
//! 3. The publisher ends: the muxer is finished (`EXT-X-ENDLIST`), the
//!    stream stays served until it is idle.
//! 4. No HTTP request for [`HlsServiceConfig::idle_timeout`]: `pump`
//!    removes the stream from the service and returns [`JobState::Done`];
//!    the task ends and the muxer's memory is freed.
//!
//! The classic TS variant is built only while someone watches it: the
//! first TS request (`ts/index.m3u8`, `ts/stream.m3u8`, `ts/seg<N>.ts`)
//! turns it on ([`HlsMuxer::enable_ts`]: it starts at the next segment
//! boundary on a keyframe, with the fMP4 segments' numbers), and `pump`
//! turns it off again ([`HlsMuxer::disable_ts`], its segments are freed)
//! after [`HlsServiceConfig::idle_timeout`] without a TS request, while
//! LL-HLS goes on.
//!
//! Bounds (docs/security.md, item 3): at most
//! [`HlsServiceConfig::max_streams`] muxed streams (more → 503), of which at
//! most [`HlsServiceConfig::max_streams_per_client`] created by requests from
//! one client IP; at most [`HlsServiceConfig::max_blocked_requests`] requests
//! parked at once (more → 503), of which at most
//! [`HlsServiceConfig::max_blocked_per_client`] from one client IP and
//! [`HlsServiceConfig::max_blocked_per_stream`] on one stream; and each
//! muxer's own byte bounds ([`HlsConfig`]). No muxer is created for a
//! stream that has published no frame yet: the request waits for its first
//! frame (holding a parked slot, not a muxer), so streams without media
//! cannot fill the muxer pool.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::container::hls::{
    HlsConfig, HlsMuxer, PlaylistReply, PlaylistRequest, Variant, WallClock,
};
use crate::engine::{Engine, Recv, Signal, StreamKey, SubscribeError, Subscriber};
use crate::job::{Job, JobQueue, JobQueueFull, JobState};
use crate::time::Instant;

/// Settings of the [`HlsService`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HlsServiceConfig {
    /// Segmenter settings of every muxer.
    pub muxer: HlsConfig,
    /// A stream nobody requested for this long stops being muxed.
    pub idle_timeout: Duration,
    /// Most streams muxed at once; a request for one more gets 503.
    pub max_streams: usize,
    /// Most requests parked at once (blocking playlist reload, waiting for a
    /// part or for a new stream to be ready); one more gets 503.
    pub max_blocked_requests: usize,
    /// Most requests parked at once from one client IP (the adapter tells
    /// the router the client with a [`ClientAddr`](super::ClientAddr)
    /// request extension); one more gets 503. Keeps one client from taking
    /// the whole [`max_blocked_requests`](Self::max_blocked_requests) pool.
    pub max_blocked_per_client: usize,
    /// Most requests parked at once on one stream; one more gets 503.
    pub max_blocked_per_stream: usize,
    /// Most muxed streams created by requests from one client IP (and
    /// still muxed); a request from that client that would create one more
    /// gets 503 (streams already muxed are served to it as to anyone).
    pub max_streams_per_client: usize,
    /// How long the first playlist request of a stream waits for the muxer
    /// to have something to play before it gets 503.
    pub ready_timeout: Duration,
    /// Frames moved into the muxer per [`HlsStream::pump`] call (the lock is
    /// held meanwhile; requests wait at most that long).
    pub pump_budget: usize,
    /// UTC of the `now` [`Instant`]s given to the service (the caller's
    /// clock): with it, the media playlists carry `EXT-X-PROGRAM-DATE-TIME`
    /// (rfc8216bis §4.4.4.6; see [`HlsMuxer::push_at`]); `None` (the
    /// default): no dates. An adapter owning the clock sets it with
    /// [`HlsService::set_wall_clock`] (arcly-tokio's `serve_http` does).
    pub wall_clock: Option<WallClock>,
}
/// Builder-style setters: the struct is `#[non_exhaustive]`, so other
/// crates start from its default (or constructor) value and chain these.
impl HlsServiceConfig {
    /// Sets [`muxer`](Self::muxer).
    #[must_use]
    pub fn with_muxer(mut self, muxer: HlsConfig) -> Self {
        self.muxer = muxer;
        self
    }

    /// Sets [`idle_timeout`](Self::idle_timeout).
    #[must_use]
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Sets [`max_streams`](Self::max_streams).
    #[must_use]
    pub fn with_max_streams(mut self, max_streams: usize) -> Self {
        self.max_streams = max_streams;
        self
    }

    /// Sets [`max_blocked_requests`](Self::max_blocked_requests).
    #[must_use]
    pub fn with_max_blocked_requests(mut self, max_blocked_requests: usize) -> Self {
        self.max_blocked_requests = max_blocked_requests;
        self
    }

    /// Sets [`max_blocked_per_client`](Self::max_blocked_per_client).
    #[must_use]
    pub fn with_max_blocked_per_client(mut self, max_blocked_per_client: usize) -> Self {
        self.max_blocked_per_client = max_blocked_per_client;
        self
    }

    /// Sets [`max_blocked_per_stream`](Self::max_blocked_per_stream).
    #[must_use]
    pub fn with_max_blocked_per_stream(mut self, max_blocked_per_stream: usize) -> Self {
        self.max_blocked_per_stream = max_blocked_per_stream;
        self
    }

    /// Sets [`max_streams_per_client`](Self::max_streams_per_client).
    #[must_use]
    pub fn with_max_streams_per_client(mut self, max_streams_per_client: usize) -> Self {
        self.max_streams_per_client = max_streams_per_client;
        self
    }

    /// Sets [`ready_timeout`](Self::ready_timeout).
    #[must_use]
    pub fn with_ready_timeout(mut self, ready_timeout: Duration) -> Self {
        self.ready_timeout = ready_timeout;
        self
    }

    /// Sets [`pump_budget`](Self::pump_budget).
    #[must_use]
    pub fn with_pump_budget(mut self, pump_budget: usize) -> Self {
        self.pump_budget = pump_budget;
        self
    }

    /// Sets [`wall_clock`](Self::wall_clock).
    #[must_use]
    pub fn with_wall_clock(mut self, wall_clock: Option<WallClock>) -> Self {
        self.wall_clock = wall_clock;
        self
    }
}

impl Default for HlsServiceConfig {
    fn default() -> Self {
        HlsServiceConfig {
            muxer: HlsConfig::default(),
            idle_timeout: Duration::from_secs(30),
            max_streams: 256,
            max_blocked_requests: 4096,
            max_blocked_per_client: 512,
            max_blocked_per_stream: 2048,
            max_streams_per_client: 128,
            ready_timeout: Duration::from_secs(10),
            pump_budget: 64,
            wall_clock: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct StreamState {
    pub(crate) muxer: HlsMuxer,
    subscriber: Option<Subscriber>,
    /// Hash of the LL-HLS media playlist after the last pump: waiters are
    /// woken only when it changed (a part or segment completed, the stream
    /// became ready or ended), not on every frame.
    fingerprint: u64,
}

/// Hash of what a playlist request can observe. Everything a parked request
/// waits for shows in the LL-HLS playlist: a new part or segment (a TS
/// segment completes with the LL part that ends it), readiness, the end.
fn fingerprint(muxer: &HlsMuxer) -> u64 {
    use std::hash::{Hash, Hasher};
    match muxer.media_playlist(Variant::LowLatency, &PlaylistRequest::default()) {
        PlaylistReply::Ready(text) => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            text.hash(&mut h);
            h.finish() | 1
        }
        _ => 0,
    }
}

/// One engine stream being muxed to HLS.
#[derive(Debug)]
pub struct HlsStream {
    key: StreamKey,
    state: Mutex<StreamState>,
    /// Notified whenever the muxer's playlist changed (see
    /// [`fingerprint`]), or the stream ended or was retired: parked
    /// requests wait on it.
    advanced: Signal,
    /// Time of the last HTTP request, µs of the caller's clock.
    last_access: AtomicU64,
    /// Time of the last request for a TS resource (same clock).
    last_ts_access: AtomicU64,
    /// The publisher ended and the muxer is finished.
    ended: AtomicBool,
    /// Removed from the service: the pump task ends.
    retired: AtomicBool,
    idle_timeout: Duration,
    pump_budget: usize,
    /// The service's [`WallClock`] (see [`ServiceInner::wall`]).
    wall: Arc<AtomicU64>,
    /// The client whose request created this muxer (counted in
    /// [`ServiceInner::muxers_per_client`] until retired).
    creator: Option<IpAddr>,
    service: std::sync::Weak<ServiceInner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl HlsStream {
    /// The engine stream muxed here.
    pub fn key(&self) -> &StreamKey {
        &self.key
    }

    /// Whether the publisher ended (the playlists carry `EXT-X-ENDLIST`).
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// The signal notified whenever the muxer advanced.
    pub fn advanced(&self) -> Signal {
        self.advanced.clone()
    }

    pub(crate) fn touch(&self, now: Instant) {
        self.last_access
            .fetch_max(now.as_micros(), Ordering::AcqRel);
    }

    /// A request for a TS resource at `now`: the TS variant is (kept) on.
    /// Call with the state lock held (`muxer` is that state's).
    pub(crate) fn touch_ts(&self, muxer: &mut HlsMuxer, now: Instant) {
        self.last_ts_access
            .fetch_max(now.as_micros(), Ordering::AcqRel);
        muxer.enable_ts();
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, StreamState> {
        lock(&self.state)
    }

    /// Bytes held by this stream's muxer.
    pub fn memory_bytes(&self) -> usize {
        self.state().muxer.memory_bytes()
    }

    /// Bytes held by this stream's TS variant (0 while nobody watches it).
    pub fn ts_bytes(&self) -> usize {
        self.state().muxer.ts_bytes()
    }

    /// Whether the TS variant is being built (or waits for its keyframe).
    pub fn ts_enabled(&self) -> bool {
        self.state().muxer.ts_enabled()
    }

    fn retire(&self) {
        if self.retired.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(service) = self.service.upgrade() {
            let mut streams = lock(&service.streams);
            if streams
                .get(&self.key)
                .is_some_and(|s| std::ptr::eq(Arc::as_ptr(s), self))
            {
                streams.remove(&self.key);
            }
            drop(streams);
            if let Some(ip) = self.creator {
                let mut per = lock(&service.muxers_per_client);
                if let Some(n) = per.get_mut(&ip) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        per.remove(&ip);
                    }
                }
            }
        }
        // Drop the subscriber (and the frames it pins) at once.
        self.state().subscriber = None;
        self.advanced.notify();
        tracing::debug!(stream = %self.key, "HLS muxing stopped");
    }

    /// Moves frames from the engine into the muxer; the adapter's per-stream
    /// task calls it in a loop and does what the [`JobState`] says.
    pub fn pump(&self, now: Instant) -> JobState {
        if self.retired.load(Ordering::Acquire) {
            return JobState::Done;
        }
        let last = Instant::from_micros(self.last_access.load(Ordering::Acquire));
        let idle_deadline = last + self.idle_timeout;
        if now >= idle_deadline {
            tracing::debug!(stream = %self.key, "no HLS request for {:?}", self.idle_timeout);
            self.retire();
            return JobState::Done;
        }
        let mut pushed = 0usize;
        let mut ended = false;
        let mut state = self.state();
        let st = &mut *state;
        // The TS variant stops after the same idle time without a TS request.
        let mut wake = idle_deadline;
        if st.muxer.ts_enabled() {
            let last_ts = Instant::from_micros(self.last_ts_access.load(Ordering::Acquire));
            let ts_deadline = last_ts + self.idle_timeout;
            if now >= ts_deadline {
                tracing::debug!(stream = %self.key, "no TS request for {:?}", self.idle_timeout);
                st.muxer.disable_ts();
            } else {
                wake = wake.min(ts_deadline);
            }
        }
        // The wall time of `now`: frames pushed now arrived about then.
        let wall = match self.wall.load(Ordering::Acquire) {
            NO_WALL_CLOCK => None,
            at_zero => Some(WallClock::new(at_zero).unix_micros(now)),
        };
        let next = match &mut st.subscriber {
            None => JobState::Done,
            Some(sub) => {
                let signal = sub.signal();
                loop {
                    if pushed >= self.pump_budget {
                        break JobState::Busy;
                    }
                    let epoch = signal.epoch();
                    match sub.recv() {
                        Recv::Frame(f) => {
                            match wall {
                                Some(w) => st.muxer.push_at(&f.frame, w),
                                None => st.muxer.push(&f.frame),
                            }
                            pushed += 1;
                        }
                        Recv::Empty => {
                            // Caught up: the newest frame is live.
                            if let Some(w) = wall {
                                st.muxer.live_edge(w);
                            }
                            break JobState::Wait {
                                signal,
                                epoch,
                                deadline: wake,
                            };
                        }
                        Recv::End => {
                            st.muxer.finish();
                            st.subscriber = None;
                            self.ended.store(true, Ordering::Release);
                            ended = true;
                            tracing::debug!(stream = %self.key, "publisher ended; HLS playlists end");
                            // Waits on `advanced` (below, after its notify).
                            break JobState::Done;
                        }
                    }
                }
            }
        };
        let mut changed = ended;
        if pushed > 0 {
            let fp = fingerprint(&st.muxer);
            changed |= fp != st.fingerprint;
            st.fingerprint = fp;
        }
        drop(state);
        if changed {
            self.advanced.notify();
        }
        match next {
            // Ended: only `retire` notifies `advanced` from now on; the task
            // sleeps until the idle deadline.
            JobState::Done => {
                let epoch = self.advanced.epoch();
                if self.retired.load(Ordering::Acquire) {
                    return JobState::Done;
                }
                JobState::Wait {
                    signal: self.advanced.clone(),
                    epoch,
                    deadline: wake,
                }
            }
            other => other,
        }
    }
}

/// The stream's pump task ([`HlsStream::pump`]) as a background job.
impl Job for HlsStream {
    fn step(&self, now: Instant) -> JobState {
        self.pump(now)
    }

    fn describe(&self) -> String {
        format!("hls {}", self.key)
    }
}

/// Why a stream cannot be served over HLS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HlsError {
    /// The engine does not know the stream (or its app): 404.
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    /// [`HlsServiceConfig::max_streams`] streams are already muxed: 503.
    #[error("too many HLS streams (limit {0})")]
    TooManyStreams(usize),
    /// The adapter's job queue is full (its pumps are not being started):
    /// 503.
    #[error(transparent)]
    Jobs(#[from] JobQueueFull),
    /// The client already created
    /// [`HlsServiceConfig::max_streams_per_client`] muxed streams: 503.
    #[error("too many HLS streams started by this client (limit {0})")]
    TooManyStreamsFromClient(usize),
    /// The stream is published but has sent no frame yet: no muxer is
    /// created for it (the router parks the request until the first frame).
    #[error("stream has no media yet")]
    NoMedia,
}

/// Why [`HlsService::stream_for`] made no stream: an error, or no media yet
/// (with the engine stream's signal, notified by its first frame and its
/// end).
#[derive(Debug)]
pub(crate) enum NotServed {
    Error(HlsError),
    /// The signal and its epoch read before the frame count was.
    NoMedia(Signal, u64),
}

impl From<HlsError> for NotServed {
    fn from(e: HlsError) -> Self {
        NotServed::Error(e)
    }
}

impl From<SubscribeError> for NotServed {
    fn from(e: SubscribeError) -> Self {
        NotServed::Error(e.into())
    }
}

/// Which parked-request bound refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParkLimit {
    /// [`HlsServiceConfig::max_blocked_requests`].
    Global(usize),
    /// [`HlsServiceConfig::max_blocked_per_client`].
    Client(usize),
    /// [`HlsServiceConfig::max_blocked_per_stream`].
    Stream(usize),
}

impl ParkLimit {
    /// The 503 body and log text.
    pub(crate) fn why(self) -> &'static str {
        match self {
            ParkLimit::Global(_) => "too many blocked requests",
            ParkLimit::Client(_) => "too many blocked requests from this client",
            ParkLimit::Stream(_) => "too many blocked requests on this stream",
        }
    }

    /// The limit's value.
    pub(crate) fn max(self) -> usize {
        match self {
            ParkLimit::Global(n) | ParkLimit::Client(n) | ParkLimit::Stream(n) => n,
        }
    }
}

/// Parked requests, counted per client and per stream.
///
/// Invariant: `total` is the sum of `per_client` values plus the permits
/// without a client, and equals the sum of `per_stream` values; no map
/// holds a zero (entries are removed when their count drops to 0), so the
/// maps hold at most `total` entries.
#[derive(Debug, Default)]
struct Parked {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
    per_stream: HashMap<StreamKey, usize>,
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// [`ServiceInner::wall`] without a wall clock.
const NO_WALL_CLOCK: u64 = u64::MAX;

#[derive(Debug)]
struct ServiceInner {
    /// [`WallClock::unix_micros_at_zero`], or [`NO_WALL_CLOCK`].
    wall: Arc<AtomicU64>,
    streams: Mutex<HashMap<StreamKey, Arc<HlsStream>>>,
    /// Streams created and not yet handed to the adapter.
    /// Mirror of `parked.total`, readable without the lock.
    blocked: AtomicUsize,
    parked: Mutex<Parked>,
    /// Muxed streams per creating client (no zero entries).
    muxers_per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// A parked request's claim on [`HlsServiceConfig::max_blocked_requests`]
/// and on its client's and stream's share; released on drop.
#[derive(Debug)]
pub(crate) struct BlockPermit {
    service: Arc<ServiceInner>,
    client: Option<IpAddr>,
    key: StreamKey,
}

impl Drop for BlockPermit {
    fn drop(&mut self) {
        let mut parked = lock(&self.service.parked);
        parked.total = parked.total.saturating_sub(1);
        if let Some(ip) = &self.client {
            decrement(&mut parked.per_client, ip);
        }
        decrement(&mut parked.per_stream, &self.key);
        self.service.blocked.store(parked.total, Ordering::Release);
    }
}

/// Joins engine streams to HLS muxers (see the module documentation).
#[derive(Debug)]
pub struct HlsService {
    engine: Engine,
    /// Where each new stream's pump goes.
    jobs: JobQueue,
    config: HlsServiceConfig,
    inner: Arc<ServiceInner>,
}

impl HlsService {
    /// A service muxing streams of `engine` on demand.
    /// Each muxed stream's pump is pushed to `jobs` as a [`Job`] for the
    /// adapter to run.
    pub fn new(engine: Engine, config: HlsServiceConfig, jobs: JobQueue) -> Self {
        let wall = config
            .wall_clock
            .map_or(NO_WALL_CLOCK, |w| w.unix_micros_at_zero);
        HlsService {
            engine,
            config,
            jobs,
            inner: Arc::new(ServiceInner {
                wall: Arc::new(AtomicU64::new(wall)),
                streams: Mutex::default(),
                blocked: AtomicUsize::new(0),
                parked: Mutex::default(),
                muxers_per_client: Mutex::default(),
            }),
        }
    }

    /// Sets (or, with `None`, removes) the wall-clock anchor of the
    /// `now` instants given from here on (replaces
    /// [`HlsServiceConfig::wall_clock`]): the adapter that owns the clock
    /// calls it once, before serving. Streams being muxed use it from their
    /// next pump on (dates already listed never move, see
    /// [`HlsMuxer::push_at`]).
    pub fn set_wall_clock(&self, wall: Option<WallClock>) {
        let v = wall.map_or(NO_WALL_CLOCK, |w| w.unix_micros_at_zero);
        self.inner.wall.store(v, Ordering::Release);
    }

    /// The wall-clock anchor in use (see [`set_wall_clock`](Self::set_wall_clock)).
    pub fn wall_clock(&self) -> Option<WallClock> {
        match self.inner.wall.load(Ordering::Acquire) {
            NO_WALL_CLOCK => None,
            v => Some(WallClock::new(v)),
        }
    }

    /// The settings.
    pub fn config(&self) -> &HlsServiceConfig {
        &self.config
    }

    /// Keys of the streams being muxed.
    pub fn streams(&self) -> Vec<StreamKey> {
        let mut v: Vec<_> = lock(&self.inner.streams).keys().cloned().collect();
        v.sort();
        v
    }

    /// The muxed stream `key`, if any (without creating it).
    pub fn get(&self, key: &StreamKey) -> Option<Arc<HlsStream>> {
        lock(&self.inner.streams).get(key).cloned()
    }

    /// Requests parked right now.
    pub fn blocked_requests(&self) -> usize {
        self.inner.blocked.load(Ordering::Acquire)
    }

    /// Requests parked right now from `client`.
    pub fn blocked_requests_from(&self, client: IpAddr) -> usize {
        lock(&self.inner.parked)
            .per_client
            .get(&client)
            .copied()
            .unwrap_or(0)
    }

    /// Muxed streams created by requests from `client` (and not retired).
    pub fn streams_from(&self, client: IpAddr) -> usize {
        lock(&self.inner.muxers_per_client)
            .get(&client)
            .copied()
            .unwrap_or(0)
    }

    /// A parked slot for a request from `client` on `key`, or the bound
    /// that refuses it (the global one first, then the client's, then the
    /// stream's).
    pub(crate) fn block_permit(
        &self,
        client: Option<IpAddr>,
        key: &StreamKey,
    ) -> Result<BlockPermit, ParkLimit> {
        let c = &self.config;
        let mut parked = lock(&self.inner.parked);
        if parked.total >= c.max_blocked_requests {
            return Err(ParkLimit::Global(c.max_blocked_requests));
        }
        if let Some(ip) = &client {
            if parked.per_client.get(ip).copied().unwrap_or(0) >= c.max_blocked_per_client {
                return Err(ParkLimit::Client(c.max_blocked_per_client));
            }
        }
        if parked.per_stream.get(key).copied().unwrap_or(0) >= c.max_blocked_per_stream {
            return Err(ParkLimit::Stream(c.max_blocked_per_stream));
        }
        parked.total += 1;
        if let Some(ip) = client {
            *parked.per_client.entry(ip).or_insert(0) += 1;
        }
        *parked.per_stream.entry(key.clone()).or_insert(0) += 1;
        self.inner.blocked.store(parked.total, Ordering::Release);
        Ok(BlockPermit {
            service: self.inner.clone(),
            client,
            key: key.clone(),
        })
    }

    /// The muxed stream `key`, created (subscribed, queued for a pump task)
    /// on first use; `now` counts as a request for the idle timeout. A
    /// stream that has published no frame yet gets no muxer
    /// ([`HlsError::NoMedia`]).
    pub fn stream(&self, key: &StreamKey, now: Instant) -> Result<Arc<HlsStream>, HlsError> {
        self.stream_for(key, Variant::LowLatency, now, None)
            .map_err(|e| match e {
                NotServed::Error(e) => e,
                NotServed::NoMedia(..) => HlsError::NoMedia,
            })
    }

    /// Like [`stream`](Self::stream), for a request of `variant`: a TS
    /// request turns the TS variant on (before the GOP cache is taken in,
    /// when the stream is created here, so its first segment has TS).
    /// `client` is the requesting client, charged with a stream created here
    /// ([`HlsServiceConfig::max_streams_per_client`]).
    pub(crate) fn stream_for(
        &self,
        key: &StreamKey,
        variant: Variant,
        now: Instant,
        client: Option<IpAddr>,
    ) -> Result<Arc<HlsStream>, NotServed> {
        let stream = self.stream_inner(key, variant, now, client)?;
        if variant == Variant::Ts {
            let mut state = stream.state();
            stream.touch_ts(&mut state.muxer, now);
        }
        Ok(stream)
    }

    fn stream_inner(
        &self,
        key: &StreamKey,
        variant: Variant,
        now: Instant,
        client: Option<IpAddr>,
    ) -> Result<Arc<HlsStream>, NotServed> {
        let mut streams = lock(&self.inner.streams);
        let old = streams.get(key).cloned();
        if let Some(s) = &old {
            if !s.is_ended() {
                s.touch(now);
                return Ok(s.clone());
            }
        }
        let sub = match self
            .engine
            .subscribe_as(key, crate::engine::SessionTag::without_peer("hls"))
        {
            Ok(sub) => sub,
            Err(e) => {
                // An ended stream stays served (its last segments, ENDLIST)
                // until idle, unless the key is published again.
                if let Some(s) = old {
                    s.touch(now);
                    return Ok(s);
                }
                return Err(e.into());
            }
        };
        // Published, but no frame yet: no muxer (a publisher that never
        // sends media must not hold one of the pool's muxers); the caller
        // waits for the first frame on the stream's signal.
        let signal = sub.signal();
        // Read before looking: the first frame after the look moves it.
        let epoch = signal.epoch();
        if sub.stream_stats().frames.load(Ordering::Acquire) == 0 {
            return Err(NotServed::NoMedia(signal, epoch));
        }
        if old.is_none() && streams.len() >= self.config.max_streams {
            return Err(HlsError::TooManyStreams(self.config.max_streams).into());
        }
        if let Some(ip) = client {
            let mut per = lock(&self.inner.muxers_per_client);
            let n = per.entry(ip).or_insert(0);
            if *n >= self.config.max_streams_per_client {
                if *n == 0 {
                    per.remove(&ip);
                }
                return Err(
                    HlsError::TooManyStreamsFromClient(self.config.max_streams_per_client).into(),
                );
            }
            *n += 1;
        }
        let mut muxer = HlsMuxer::new(self.config.muxer.clone());
        if variant == Variant::Ts {
            muxer.enable_ts();
        }
        let stream = Arc::new(HlsStream {
            key: key.clone(),
            state: Mutex::new(StreamState {
                muxer,
                subscriber: Some(sub),
                fingerprint: 0,
            }),
            advanced: Signal::new(),
            last_access: AtomicU64::new(now.as_micros()),
            last_ts_access: AtomicU64::new(now.as_micros()),
            ended: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            idle_timeout: self.config.idle_timeout,
            pump_budget: self.config.pump_budget.max(1),
            wall: self.inner.wall.clone(),
            creator: client,
            service: Arc::downgrade(&self.inner),
        });
        streams.insert(key.clone(), stream.clone());
        drop(streams);
        if let Some(old) = old {
            // Published again after it ended: the old muxer goes.
            old.retire();
        }
        tracing::debug!(stream = %key, "HLS muxing started");
        // Take in the GOP cache now (bounded: the pump task does the rest),
        // so the first request finds a keyframe.
        for _ in 0..16 {
            if !matches!(stream.pump(now), JobState::Busy) {
                break;
            }
        }
        if let Err(full) = self.jobs.push(stream.clone()) {
            stream.retire();
            return Err(HlsError::Jobs(full).into());
        }
        Ok(stream)
    }
}
