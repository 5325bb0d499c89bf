//! The per-stream bus: a ring of shared frames with one producer and many
//! readers addressed by sequence number.
//!
//! NOTE: first, simple implementation (a short mutex around the ring); the
//! lock-free ring replaces it behind the same API.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;

use super::registry::{AppConfig, StreamKey, SubscribeError};
use super::signal::Signal;
use super::stats::{StreamStats, SubscriberStats};
use crate::frame::{Frame, MediaKind};

/// Egress forms cached once per frame per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum EgressSlot {
    /// RTMP chunks (message stream 1, the server's outbound chunk size).
    Rtmp = 0,
    /// MPEG-TS packets.
    Ts = 1,
    /// RTP packets.
    Rtp = 2,
    /// fMP4 fragment.
    Fmp4 = 3,
}

const SLOTS: usize = 4;

/// A frame as stored in the ring: the frame, its sequence number, and the
/// egress forms built from it (each built at most once).
#[derive(Debug)]
pub struct FrameEntry {
    /// Sequence number in the stream (0-based, never reused).
    pub seq: u64,
    /// The frame.
    pub frame: Frame,
    egress: [OnceLock<Bytes>; SLOTS],
}

impl FrameEntry {
    fn new(seq: u64, frame: Frame) -> Self {
        FrameEntry {
            seq,
            frame,
            egress: Default::default(),
        }
    }

    /// The cached egress form for `slot`, built by `build` on first use.
    pub fn egress(&self, slot: EgressSlot, build: impl FnOnce(&Frame) -> Bytes) -> Bytes {
        match self.egress.get(slot as usize) {
            Some(cell) => cell.get_or_init(|| build(&self.frame)).clone(),
            None => build(&self.frame),
        }
    }
}

/// A frame shared by reference between the ring and every subscriber.
pub type SharedFrame = Arc<FrameEntry>;

#[derive(Debug, Default)]
struct State {
    ring: VecDeque<SharedFrame>,
    next_seq: u64,
    last_key_seq: Option<u64>,
    video_config: Option<SharedFrame>,
    audio_config: Option<SharedFrame>,
    metadata: Option<Bytes>,
}

/// State shared by a stream's publisher and subscribers.
#[derive(Debug)]
pub(crate) struct StreamShared {
    key: StreamKey,
    config: AppConfig,
    live: AtomicBool,
    signal: Signal,
    stats: Arc<StreamStats>,
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl StreamShared {
    pub(crate) fn new(key: StreamKey, config: AppConfig) -> Self {
        StreamShared {
            key,
            config,
            live: AtomicBool::new(true),
            signal: Signal::new(),
            stats: Arc::default(),
            state: Mutex::default(),
        }
    }
    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }
    pub(crate) fn stats(&self) -> Arc<StreamStats> {
        self.stats.clone()
    }
}

type OnEnd = Box<dyn FnOnce(&StreamKey, &Arc<StreamShared>) + Send + Sync>;

/// The single producer of a stream. Dropping it ends the stream.
pub struct Publisher {
    shared: Arc<StreamShared>,
    on_end: Option<OnEnd>,
}

impl core::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Publisher")
            .field("key", &self.shared.key)
            .finish()
    }
}

impl Publisher {
    pub(crate) fn new(shared: Arc<StreamShared>, on_end: OnEnd) -> Self {
        Publisher {
            shared,
            on_end: Some(on_end),
        }
    }

    /// The stream being published.
    pub fn key(&self) -> &StreamKey {
        &self.shared.key
    }

    /// Publishes one frame. Never blocks on subscribers.
    pub fn send(&mut self, frame: Frame) {
        let cap = self.shared.config.ring_frames.max(2);
        self.shared
            .stats
            .add_frame(frame.payload.len(), frame.is_keyframe());
        {
            let mut st = lock(&self.shared.state);
            let seq = st.next_seq;
            st.next_seq += 1;
            let is_config = frame.is_config();
            let is_video_key =
                frame.kind() == MediaKind::Video && frame.is_keyframe() && !is_config;
            let kind = frame.kind();
            let entry = Arc::new(FrameEntry::new(seq, frame));
            if is_config {
                match kind {
                    MediaKind::Video => st.video_config = Some(entry.clone()),
                    MediaKind::Audio => st.audio_config = Some(entry.clone()),
                }
            }
            if is_video_key {
                st.last_key_seq = Some(seq);
            }
            st.ring.push_back(entry);
            while st.ring.len() > cap {
                st.ring.pop_front();
            }
        }
        self.shared.signal.notify();
    }

    /// Stores the stream's metadata (`onMetaData` AMF0 body) for new subscribers.
    pub fn set_metadata(&mut self, metadata: Bytes) {
        lock(&self.shared.state).metadata = Some(metadata);
        self.shared.signal.notify();
    }

    /// Counters of this stream.
    pub fn stats(&self) -> Arc<StreamStats> {
        self.shared.stats.clone()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
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
    /// The publisher ended the stream.
    End,
}

/// One reader of a stream.
#[derive(Debug)]
pub struct Subscriber {
    shared: Arc<StreamShared>,
    next_seq: u64,
    pending_configs: Vec<SharedFrame>,
    need_key: bool,
    stats: Arc<SubscriberStats>,
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
        let (next_seq, configs, need_key) = {
            let st = lock(&shared.state);
            let configs: Vec<_> = st
                .video_config
                .iter()
                .chain(st.audio_config.iter())
                .cloned()
                .collect();
            let start = st.ring.front().map(|f| f.seq).unwrap_or(st.next_seq);
            match st.last_key_seq {
                Some(k)
                    if k >= start && st.next_seq - k <= shared.config.gop_cache_frames as u64 =>
                {
                    (k, configs, false)
                }
                _ => (st.next_seq, configs, true),
            }
        };
        Ok(Subscriber {
            shared,
            next_seq,
            pending_configs: configs,
            need_key,
            stats: Arc::default(),
        })
    }

    /// The stream this subscriber reads.
    pub fn key(&self) -> &StreamKey {
        &self.shared.key
    }

    /// The signal that fires when a frame is published or the stream ends.
    pub fn signal(&self) -> Signal {
        self.shared.signal.clone()
    }

    /// The latest metadata the publisher set.
    pub fn metadata(&self) -> Option<Bytes> {
        lock(&self.shared.state).metadata.clone()
    }

    /// Counters of this subscriber.
    pub fn stats(&self) -> Arc<SubscriberStats> {
        self.stats.clone()
    }

    /// The next frame, without blocking.
    pub fn recv(&mut self) -> Recv {
        if !self.pending_configs.is_empty() {
            let f = self.pending_configs.remove(0);
            return Recv::Frame(f);
        }
        loop {
            let st = lock(&self.shared.state);
            let first = st.ring.front().map(|f| f.seq).unwrap_or(st.next_seq);
            if self.next_seq < first {
                // Fell behind the ring: skip to the next keyframe.
                let dropped = first - self.next_seq;
                self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
                self.next_seq = first;
                self.need_key = true;
            }
            if self.next_seq >= st.next_seq {
                return if self.shared.is_live() {
                    Recv::Empty
                } else {
                    Recv::End
                };
            }
            let idx = (self.next_seq - first) as usize;
            let Some(entry) = st.ring.get(idx).cloned() else {
                return Recv::Empty;
            };
            drop(st);
            self.next_seq += 1;
            if self.need_key {
                if entry.frame.kind() == MediaKind::Video
                    && entry.frame.is_keyframe()
                    && !entry.frame.is_config()
                {
                    self.need_key = false;
                } else if !entry.frame.is_config() {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            self.stats.frames.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes
                .fetch_add(entry.frame.payload.len() as u64, Ordering::Relaxed);
            return Recv::Frame(entry);
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.shared.stats.subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}
