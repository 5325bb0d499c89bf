//! The per-stream bus: a lock-free ring of shared frames with one producer
//! and any number of readers addressed by sequence number.
//!
//! # The ring publication protocol
//!
//! The ring has `cap` slots (a power of two, from [`AppConfig::ring_frames`]).
//! Frame `seq` lives in slot `seq % cap`; each slot is an atomic
//! `Option<Arc<FrameEntry>>` and the entry carries its own `seq`.
//!
//! - The publisher (exactly one, `&mut self`) stores (if they changed) the
//!   GOP start and the latest start point, then the entry in its slot, then
//!   `head = seq + 1` with `Release`, then notifies the [`Signal`]. Nothing in this path depends on the number of subscribers,
//!   takes a lock, or allocates beyond the one `Arc<FrameEntry>` per frame.
//! - A reader at `next` loads `live` and then `head` with `Acquire`. If
//!   `next >= head` there is nothing new (or, with `live == false`, the
//!   stream is over: the publisher clears `live` after its last `head`
//!   store). If `head - next > cap` the frame is gone. Otherwise it loads the
//!   slot: `entry.seq == next` is the frame (the slot store happened before
//!   the `head` store it synchronised with); `entry.seq > next` means the
//!   slot was overwritten meanwhile, i.e. the reader lagged.
//!
//! # Start points and the GOP cache
//!
//! A *start point* is a frame a subscriber can start decoding at: a video
//! keyframe, or — while the stream has shown no video at all — any audio
//! frame (audio frames are keyframes; audio-only streams start at once). The
//! publisher records in each start point the codec configs in force there.
//! The GOP cache is the run of frames from the latest start point, as long as
//! it holds at most `min(gop_cache_frames, cap / 2)` frames and at most
//! `gop_cache_bytes` payload bytes; past either cap it is dropped until the
//! next start point (new subscribers then wait for it).
//!
//! A subscriber delivers, in order: the configs of its start point that it
//! has not delivered yet, the start point, then every following frame
//! (configs that change mid-stream are frames and arrive in order). Video
//! frames that are not keyframes are held back until a video keyframe was
//! delivered (a stream that starts audio-only and gains video later).
//!
//! A subscriber that falls more than `cap` frames behind skips to the latest
//! start point still in the ring (or waits for the next one), re-sends the
//! configs if they changed, and counts the frames it skipped in `dropped`.
//! Memory is bounded by the ring: `cap` frames per stream, whatever the
//! number or speed of subscribers.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use heapless::Deque;

use super::registry::{AppConfig, StreamKey, SubscribeError};
use super::sessions::Registration;
use super::signal::Signal;
use super::stats::{BitrateMeter, StreamStats, SubscriberStats};
use super::sync::{AtomicBool, AtomicU64, Slot};
use crate::frame::{Frame, MediaKind};

/// Egress forms cached once per frame per stream: one slot per form a
/// protocol sends (a new form gets a slot when its protocol lands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum EgressSlot {
    /// RTMP chunks (message stream 1, the server's outbound chunk size).
    Rtmp = 0,
    /// MPEG-TS packets (SRT viewers).
    Ts = 1,
    /// RTP packets (RTSP viewers, `crate::rtp`'s packetizer).
    Rtp = 2,
    /// An H.264 access unit in Annex B with the stream's SPS/PPS before
    /// each IDR (ITU-T H.264 Annex B; what WebRTC's RFC 6184 packetizer
    /// takes): WHEP viewers, built by the first viewer that reaches the
    /// frame (`arcly-webrtc`).
    WebRtc = 3,
}

const SLOTS: usize = 4;

/// No sequence number (empty GOP cache, no start point yet).
const NONE: u64 = u64::MAX;

/// Largest ring, in frames (bounds memory whatever the configuration says).
pub const MAX_RING_FRAMES: usize = 1 << 20;

/// The codec configs in force at a start point.
#[derive(Debug, Clone, Default)]
struct Configs {
    video: Option<SharedFrame>,
    audio: Option<SharedFrame>,
}

/// A frame as stored in the ring: the frame, its sequence number, and the
/// egress forms built from it (each built at most once).
#[derive(Debug)]
pub struct FrameEntry {
    /// Sequence number in the stream (0-based, never reused).
    pub seq: u64,
    /// The frame.
    pub frame: Frame,
    egress: [OnceLock<Bytes>; SLOTS],
    /// `Some` for a start point: the configs in force there.
    start: Option<Configs>,
}

impl FrameEntry {
    /// The cached egress form for `slot`, built by `build` on first use.
    pub fn egress(&self, slot: EgressSlot, build: impl FnOnce(&Frame) -> Bytes) -> Bytes {
        match self.egress.get(slot as usize) {
            Some(cell) => cell.get_or_init(|| build(&self.frame)).clone(),
            None => build(&self.frame),
        }
    }

    /// Whether a subscriber can start here (see the module documentation).
    pub fn is_start_point(&self) -> bool {
        self.start.is_some()
    }
}

/// A frame shared by reference between the ring and every subscriber.
pub type SharedFrame = Arc<FrameEntry>;

/// Why a ring read found no frame.
enum Miss {
    /// The frame was overwritten: the reader fell behind.
    Lagged,
    /// Not visible yet (only possible transiently).
    NotYet,
}

/// The single-producer ring (see the module documentation).
#[derive(Debug)]
struct Ring {
    slots: Box<[Slot<FrameEntry>]>,
    mask: u64,
    /// Sequence number of the next frame to publish = frames published.
    head: AtomicU64,
}

impl Ring {
    fn new(frames: usize) -> Ring {
        let cap = frames.clamp(2, MAX_RING_FRAMES).next_power_of_two();
        Ring {
            slots: (0..cap).map(|_| Slot::empty()).collect(),
            mask: cap as u64 - 1,
            head: AtomicU64::new(0),
        }
    }

    fn cap(&self) -> u64 {
        self.mask + 1
    }

    fn slot(&self, seq: u64) -> Option<&Slot<FrameEntry>> {
        self.slots.get((seq & self.mask) as usize)
    }

    /// Producer only: stores `entry`, then makes it visible through `head`.
    fn publish(&self, entry: SharedFrame) {
        let seq = entry.seq;
        if let Some(slot) = self.slot(seq) {
            slot.store(Some(entry));
        }
        self.head.store(seq + 1, Ordering::Release);
    }

    /// Frame `seq`, given a `head` loaded (Acquire) after `seq` was chosen.
    fn read(&self, seq: u64, head: u64) -> Result<SharedFrame, Miss> {
        if head.wrapping_sub(seq) > self.cap() {
            return Err(Miss::Lagged);
        }
        match self.slot(seq).and_then(Slot::load) {
            Some(e) if e.seq == seq => Ok(e),
            Some(e) if e.seq > seq => Err(Miss::Lagged),
            _ => Err(Miss::NotYet),
        }
    }
}

/// State shared by a stream's publisher and subscribers.
#[derive(Debug)]
pub(crate) struct StreamShared {
    key: StreamKey,
    config: AppConfig,
    live: AtomicBool,
    signal: Signal,
    stats: Arc<StreamStats>,
    ring: Ring,
    /// First frame of the GOP cache, or `NONE`.
    gop_start: AtomicU64,
    /// Latest start point (whatever the caps), or `NONE`: where a lagging
    /// subscriber resumes.
    last_start: AtomicU64,
    metadata: Slot<Bytes>,
    gop_frames_cap: u64,
    gop_bytes_cap: u64,
    /// Keyframe requests of the subscribers, ever (only grows; any number
    /// of writers, `Relaxed` RMW: it orders nothing, and a request seen late
    /// is seen at the publisher's next poll).
    keyframe_requests: AtomicU64,
}

impl StreamShared {
    pub(crate) fn new(key: StreamKey, config: AppConfig) -> Self {
        let ring = Ring::new(config.ring_frames);
        let gop_frames_cap = (config.gop_cache_frames as u64).min(ring.cap() / 2);
        let gop_bytes_cap = config.gop_cache_bytes as u64;
        StreamShared {
            key,
            config,
            live: AtomicBool::new(true),
            signal: Signal::new(),
            stats: Arc::default(),
            ring,
            gop_start: AtomicU64::new(NONE),
            last_start: AtomicU64::new(NONE),
            metadata: Slot::empty(),
            gop_frames_cap,
            gop_bytes_cap,
            keyframe_requests: AtomicU64::new(0),
        }
    }
    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }
    pub(crate) fn stats(&self) -> Arc<StreamStats> {
        self.stats.clone()
    }
    pub(crate) fn stats_ref(&self) -> &StreamStats {
        &self.stats
    }
    pub(crate) fn key(&self) -> &StreamKey {
        &self.key
    }
    /// Frames published so far (the ring's head).
    pub(crate) fn head(&self) -> u64 {
        self.ring.head.load(Ordering::Acquire)
    }
    pub(crate) fn signal(&self) -> &Signal {
        &self.signal
    }
    /// The codec configs in force at the latest start point (video, audio),
    /// read from the ring without taking anything from the publisher.
    pub(crate) fn current_configs(&self) -> (Option<SharedFrame>, Option<SharedFrame>) {
        let last = self.last_start.load(Ordering::Acquire);
        let head = self.head();
        if last == NONE {
            return (None, None);
        }
        match self.ring.read(last, head) {
            Ok(e) => match &e.start {
                Some(c) => (c.video.clone(), c.audio.clone()),
                None => (None, None),
            },
            Err(_) => (None, None),
        }
    }
}

type OnEnd = Box<dyn FnOnce(&StreamKey, &Arc<StreamShared>) + Send + Sync>;

/// The GOP cache bookkeeping of the publisher.
#[derive(Debug, Clone, Copy)]
struct Gop {
    start: u64,
    frames: u64,
    bytes: u64,
    audio: bool,
}

/// The single producer of a stream. Dropping it ends the stream.
pub struct Publisher {
    shared: Arc<StreamShared>,
    on_end: Option<OnEnd>,
    next_seq: u64,
    configs: Configs,
    has_video: bool,
    gop: Option<Gop>,
    /// Values last stored in `shared.gop_start` / `shared.last_start`.
    shown_gop: u64,
    shown_last: u64,
    last_start: u64,
    meter: BitrateMeter,
    /// Keyframe requests already taken by [`Publisher::take_keyframe_requests`].
    keyframe_requests_taken: u64,
    /// Decode time (ms) of the last video keyframe, for the keyframe interval.
    last_key_ms: Option<i64>,
    /// The entry in the engine's session table (`None` when detached).
    registration: Option<Registration>,
}

impl core::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Publisher")
            .field("key", &self.shared.key)
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

impl Publisher {
    pub(crate) fn new(shared: Arc<StreamShared>, on_end: OnEnd) -> Self {
        Self::build(shared, Some(on_end))
    }

    fn build(shared: Arc<StreamShared>, on_end: Option<OnEnd>) -> Self {
        Publisher {
            shared,
            on_end,
            next_seq: 0,
            configs: Configs::default(),
            has_video: false,
            gop: None,
            shown_gop: NONE,
            shown_last: NONE,
            last_start: NONE,
            meter: BitrateMeter::default(),
            keyframe_requests_taken: 0,
            last_key_ms: None,
            registration: None,
        }
    }

    pub(crate) fn set_registration(&mut self, r: Registration) {
        self.registration = Some(r);
    }

    /// This publisher's id in the engine's session table (`None` when
    /// detached), as listed by [`Engine::sessions`](super::Engine::sessions).
    pub fn id(&self) -> Option<u64> {
        self.registration.as_ref().map(|r| r.entry.id)
    }

    /// Whether an operator asked this publisher to end
    /// ([`Engine::kick`](super::Engine::kick)): its session should close
    /// its connection (one atomic load).
    pub fn is_kicked(&self) -> bool {
        self.registration
            .as_ref()
            .is_some_and(|r| r.entry.is_kicked())
    }

    /// A stream outside any [`Engine`](super::Engine) registry: subscribe
    /// through [`Publisher::subscribe`]. Useful to embed one stream, in tests
    /// and benchmarks.
    pub fn detached(key: StreamKey, config: AppConfig) -> Publisher {
        Self::build(Arc::new(StreamShared::new(key, config)), None)
    }

    /// The stream being published.
    pub fn key(&self) -> &StreamKey {
        &self.shared.key
    }

    /// Frames published so far (= the sequence number of the next frame).
    pub fn published(&self) -> u64 {
        self.next_seq
    }

    /// Ring capacity in frames (a power of two).
    pub fn ring_capacity(&self) -> usize {
        self.shared.ring.slots.len()
    }

    /// A new subscriber of this stream (same rules as
    /// [`Engine::subscribe`](super::Engine::subscribe)).
    pub fn subscribe(&self) -> Result<Subscriber, SubscribeError> {
        Subscriber::attach(self.shared.clone())
    }

    /// Publishes one frame: O(1) in the number of subscribers, lock-free,
    /// never blocks on subscribers.
    pub fn send(&mut self, frame: Frame) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let len = frame.payload.len() as u64;
        let kind = frame.kind();
        let is_config = frame.is_config();
        let shared = &*self.shared;
        shared
            .stats
            .add_frame(frame.payload.len(), frame.is_keyframe());
        self.meter.add(&frame, &shared.stats.bitrate_bps);

        if kind == MediaKind::Video && frame.is_keyframe() && !is_config {
            let ms = frame.dts_in(1000);
            if let Some(prev) = self.last_key_ms {
                if ms > prev {
                    shared
                        .stats
                        .keyframe_interval_ms
                        .store((ms - prev).unsigned_abs(), Ordering::Relaxed);
                }
            }
            self.last_key_ms = Some(ms);
        }
        if kind == MediaKind::Video && !self.has_video {
            // Audio frames stop being start points once the stream has video.
            self.has_video = true;
            if self.gop.is_some_and(|g| g.audio) {
                self.gop = None;
                self.last_start = NONE;
            }
        }
        let start_point = !is_config
            && match kind {
                MediaKind::Video => frame.is_keyframe(),
                MediaKind::Audio => !self.has_video,
            };
        let entry = Arc::new(FrameEntry {
            seq,
            frame,
            egress: Default::default(),
            start: start_point.then(|| self.configs.clone()),
        });
        if is_config {
            match kind {
                MediaKind::Video => self.configs.video = Some(entry.clone()),
                MediaKind::Audio => self.configs.audio = Some(entry.clone()),
            }
        }

        if start_point {
            self.gop = Some(Gop {
                start: seq,
                frames: 0,
                bytes: 0,
                audio: kind == MediaKind::Audio,
            });
            self.last_start = seq;
        }
        if let Some(g) = &mut self.gop {
            g.frames += 1;
            g.bytes = g.bytes.saturating_add(len);
            if g.frames > shared.gop_frames_cap || g.bytes > shared.gop_bytes_cap {
                self.gop = None;
            }
        }

        // GOP start and latest start point before `head`: a reader that sees
        // the new head sees them too (checked by loom: a lagging reader that
        // sees the keyframe in `head` must also find it in `last_start`).
        let gop_start = self.gop.map_or(NONE, |g| g.start);
        if gop_start != self.shown_gop {
            self.shown_gop = gop_start;
            shared.gop_start.store(gop_start, Ordering::Release);
        }
        if self.shown_last != self.last_start {
            self.shown_last = self.last_start;
            shared.last_start.store(self.last_start, Ordering::Release);
        }
        shared.ring.publish(entry);
        shared.signal.notify();
    }

    /// Stores the stream's metadata (`onMetaData` AMF0 body) for new subscribers.
    pub fn set_metadata(&mut self, metadata: Bytes) {
        self.shared.metadata.store(Some(Arc::new(metadata)));
        self.shared.signal.notify();
    }

    /// Counters of this stream.
    pub fn stats(&self) -> Arc<StreamStats> {
        self.shared.stats.clone()
    }

    /// The signal notified on every publish (the one subscribers wait on).
    pub fn signal(&self) -> Signal {
        self.shared.signal.clone()
    }

    /// Keyframe requests from viewers since the last call (see
    /// [`Subscriber::request_keyframe`]); requests made between two calls
    /// fold into one count, so a publisher's session that forwards them
    /// (WebRTC PLI/FIR, RFC 4585 §6.3.1 / RFC 5104 §4.3.1; RTCP FIR for RTSP)
    /// sends at most one request per poll and rate-limits further by its own
    /// clock. Protocols that cannot ask their peer (RTMP, SRT) count them.
    /// One atomic load.
    pub fn take_keyframe_requests(&mut self) -> u64 {
        let total = self.shared.keyframe_requests.load(Ordering::Relaxed);
        let new = total.wrapping_sub(self.keyframe_requests_taken);
        self.keyframe_requests_taken = total;
        new
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // After the last `head` store: a reader that sees `live == false`
        // then loads the final `head`.
        self.shared.live.store(false, Ordering::Release);
        if let Some(f) = self.on_end.take() {
            f(&self.shared.key, &self.shared);
        }
        self.shared.signal.notify();
    }
}

/// What [`Subscriber::recv`] found.
#[derive(Debug, Clone)]
pub enum Recv {
    /// The next frame.
    Frame(SharedFrame),
    /// Nothing new yet: wait on the [`Subscriber::signal`].
    Empty,
    /// The publisher ended the stream and every frame was read.
    End,
}

/// One reader of a stream (see the module documentation for what it
/// delivers, and in which order).
#[derive(Debug)]
pub struct Subscriber {
    shared: Arc<StreamShared>,
    next_seq: u64,
    /// Frames to deliver before reading the ring: re-sent configs and the
    /// start point they precede.
    pending: Deque<SharedFrame, 3>,
    /// Looking for a start point.
    need_start: bool,
    /// A start point was delivered, or the subscriber lagged, once: from
    /// then on, frames passed over while waiting for a start point count as
    /// dropped (frames skipped because the ring overwrote them always do).
    counting: bool,
    /// A video keyframe was delivered since the last start point.
    video_synced: bool,
    /// The configs delivered last, per kind.
    sent: Configs,
    stats: Arc<SubscriberStats>,
    meter: BitrateMeter,
    /// The entry in the engine's session table (`None` for a subscriber of
    /// a detached publisher).
    registration: Option<Registration>,
}

fn same(a: &Option<SharedFrame>, b: &Option<SharedFrame>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

impl Subscriber {
    pub(crate) fn attach(shared: Arc<StreamShared>) -> Result<Subscriber, SubscribeError> {
        let max = shared.config.max_subscribers as u64;
        let now = shared.stats.subscribers.fetch_add(1, Ordering::AcqRel);
        if now >= max {
            shared.stats.subscribers.fetch_sub(1, Ordering::AcqRel);
            return Err(SubscribeError::TooManySubscribers(
                shared.key.clone(),
                shared.config.max_subscribers,
            ));
        }
        // `gop_start` is stored before the `head` of its frame. Reading it on
        // both sides of `head` and retrying if it moved gives a pair that
        // held together, so the cache handed out respects the caps even while
        // frames are being published (start sequence numbers only grow, so
        // an equal value did not change in between).
        let mut next_seq = None;
        for _ in 0..4 {
            let gop = shared.gop_start.load(Ordering::Acquire);
            let head = shared.ring.head.load(Ordering::Acquire);
            if shared.gop_start.load(Ordering::Acquire) == gop {
                next_seq = Some(if gop != NONE && gop < head { gop } else { head });
                break;
            }
        }
        let next_seq = next_seq.unwrap_or_else(|| shared.ring.head.load(Ordering::Acquire));
        Ok(Subscriber {
            shared,
            next_seq,
            pending: Deque::new(),
            need_start: true,
            counting: false,
            video_synced: false,
            sent: Configs::default(),
            stats: Arc::default(),
            meter: BitrateMeter::default(),
            registration: None,
        })
    }

    pub(crate) fn set_registration(&mut self, r: Registration) {
        self.registration = Some(r);
    }

    pub(crate) fn shared(&self) -> &Arc<StreamShared> {
        &self.shared
    }

    /// This subscriber's id in the engine's session table (`None` for a
    /// subscriber of a detached publisher).
    pub fn id(&self) -> Option<u64> {
        self.registration.as_ref().map(|r| r.entry.id)
    }

    /// Whether an operator asked this viewer to end
    /// ([`Engine::kick`](super::Engine::kick)); from then on
    /// [`recv`](Self::recv) returns [`Recv::End`] and the session should
    /// close its connection (one atomic load).
    pub fn is_kicked(&self) -> bool {
        self.registration
            .as_ref()
            .is_some_and(|r| r.entry.is_kicked())
    }

    /// The stream this subscriber reads.
    pub fn key(&self) -> &StreamKey {
        &self.shared.key
    }

    /// The signal that fires when a frame is published or the stream ends.
    pub fn signal(&self) -> Signal {
        self.shared.signal.clone()
    }

    /// Asks the stream's publisher for a keyframe (a viewer lost packets, a
    /// WebRTC PLI/FIR arrived, an HLS variant starts). Protocol-neutral and
    /// cheap: one relaxed atomic add, no lock, no allocation, never blocks;
    /// the publisher's session learns of it through
    /// [`Publisher::take_keyframe_requests`] (repeated requests fold there).
    pub fn request_keyframe(&self) {
        self.shared
            .keyframe_requests
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The latest metadata the publisher set.
    pub fn metadata(&self) -> Option<Bytes> {
        self.shared.metadata.load().map(|b| (*b).clone())
    }

    /// Counters of this subscriber.
    pub fn stats(&self) -> Arc<SubscriberStats> {
        self.stats.clone()
    }

    /// Counters of the stream.
    pub fn stream_stats(&self) -> Arc<StreamStats> {
        self.shared.stats.clone()
    }

    /// Frames published but not read yet (0 when caught up).
    pub fn lag(&self) -> u64 {
        self.shared
            .ring
            .head
            .load(Ordering::Acquire)
            .saturating_sub(self.next_seq)
    }

    fn deliver(&mut self, entry: SharedFrame) -> Recv {
        let f = &entry.frame;
        if f.is_config() {
            match f.kind() {
                MediaKind::Video => self.sent.video = Some(entry.clone()),
                MediaKind::Audio => self.sent.audio = Some(entry.clone()),
            }
        }
        self.stats.add_frame(f.payload.len());
        self.stats.set_position(self.next_seq);
        self.meter.add(f, &self.stats.bitrate_bps);
        Recv::Frame(entry)
    }

    fn count_dropped(&self, n: u64) {
        if n > 0 {
            self.stats.add_dropped(n);
            self.shared.stats.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Fell behind the ring: resume at the latest start point still in the
    /// ring, or at the head (then wait for the next start point).
    fn skip(&mut self, head: u64) {
        let last = self.shared.last_start.load(Ordering::Acquire);
        let cap = self.shared.ring.cap();
        let target = if last != NONE && last > self.next_seq && last < head && head - last < cap {
            last
        } else {
            head.max(self.next_seq)
        };
        tracing::debug!(
            stream = %self.shared.key,
            from = self.next_seq,
            to = target,
            "subscriber fell behind the ring; skipping to a keyframe"
        );
        self.count_dropped(target - self.next_seq);
        self.counting = true;
        self.next_seq = target;
        self.need_start = true;
    }

    /// The next frame, without blocking. On [`Recv::Empty`], wait on the
    /// [`signal`](Self::signal) from an epoch read *before* this call.
    pub fn recv(&mut self) -> Recv {
        if self.is_kicked() {
            return Recv::End;
        }
        if let Some(f) = self.pending.pop_front() {
            return self.deliver(f);
        }
        loop {
            let live = self.shared.live.load(Ordering::Acquire);
            let head = self.shared.ring.head.load(Ordering::Acquire);
            if self.next_seq >= head {
                return if live { Recv::Empty } else { Recv::End };
            }
            let entry = match self.shared.ring.read(self.next_seq, head) {
                Ok(e) => e,
                Err(Miss::Lagged) => {
                    self.skip(head);
                    continue;
                }
                Err(Miss::NotYet) => return Recv::Empty,
            };
            self.next_seq += 1;
            if self.need_start {
                let Some(configs) = &entry.start else {
                    if self.counting {
                        self.count_dropped(1);
                    }
                    continue;
                };
                self.need_start = false;
                self.counting = true;
                self.video_synced = entry.frame.kind() == MediaKind::Video;
                // Capacity 3 holds the two configs and the start point.
                if let (Some(v), false) = (&configs.video, same(&configs.video, &self.sent.video)) {
                    let _ = self.pending.push_back(v.clone());
                }
                if let (Some(a), false) = (&configs.audio, same(&configs.audio, &self.sent.audio)) {
                    let _ = self.pending.push_back(a.clone());
                }
                if self.pending.is_empty() {
                    return self.deliver(entry);
                }
                let _ = self.pending.push_back(entry);
                return match self.pending.pop_front() {
                    Some(f) => self.deliver(f),
                    None => Recv::Empty,
                };
            }
            let f = &entry.frame;
            if f.kind() == MediaKind::Video && !f.is_config() {
                if f.is_keyframe() {
                    self.video_synced = true;
                } else if !self.video_synced {
                    self.count_dropped(1);
                    continue;
                }
            }
            return self.deliver(entry);
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.shared.stats.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}
