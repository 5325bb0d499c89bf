//! The stream registry: apps configured in code, streams keyed by app + name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::bus::{Publisher, StreamShared, Subscriber};

/// An app's settings. Apps are set up in code; the kernel reads no files.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        }
    }
}

/// Why a [`StreamKey`] could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
}

/// Why a subscribe was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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

#[derive(Debug, Default)]
struct Inner {
    apps: Mutex<HashMap<String, AppConfig>>,
    default_app: Mutex<Option<AppConfig>>,
    streams: Mutex<HashMap<StreamKey, Arc<StreamShared>>>,
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

    /// Starts publishing `key`. The stream ends when the [`Publisher`] drops.
    pub fn publish(&self, key: StreamKey) -> Result<Publisher, PublishError> {
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
        let engine = self.clone();
        Ok(Publisher::new(
            shared,
            Box::new(move |k: &StreamKey, s: &Arc<StreamShared>| engine.remove(k, s)),
        ))
    }

    fn remove(&self, key: &StreamKey, shared: &Arc<StreamShared>) {
        let mut streams = lock(&self.inner.streams);
        if streams.get(key).is_some_and(|s| Arc::ptr_eq(s, shared)) {
            streams.remove(key);
        }
    }

    /// Subscribes to a live stream, starting with configs and the cached GOP.
    pub fn subscribe(&self, key: &StreamKey) -> Result<Subscriber, SubscribeError> {
        if self.app_config(key.app()).is_none() {
            return Err(SubscribeError::UnknownApp(key.app().to_owned()));
        }
        let shared = lock(&self.inner.streams)
            .get(key)
            .cloned()
            .ok_or_else(|| SubscribeError::NotFound(key.clone()))?;
        Subscriber::attach(shared)
    }

    /// Keys of the live streams.
    pub fn streams(&self) -> Vec<StreamKey> {
        let mut v: Vec<_> = lock(&self.inner.streams).keys().cloned().collect();
        v.sort();
        v
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
