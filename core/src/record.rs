//! Recording every published stream to fragmented-MP4 files as background
//! [`Job`]s, runtime-free: no adapter knows what a recording is.
//!
//! [`RecordStreams`] is one job that watches the engine's stream
//! announcements ([`Engine::streams_signal`], notified on every publish and
//! every end of a stream) and, for every stream session it has not recorded
//! yet, subscribes at once (the recording starts at the stream's first
//! keyframe, without relying on the GOP cache) and pushes a [`RecordJob`]
//! into the same [`JobQueue`]. A `RecordJob` moves frames from its
//! subscriber into a [`Recorder`] and hands the recorder's output to the
//! runner as [`FileOp`]s: `DIR/<app>/<stream>/<YYYYmmdd-HHMMSS>.mp4` (UTC
//! from [`RecordingConfig::wall_clock`]; the runner appends `-1`, `-2`, ...
//! when the name exists), closed and synced at the end of the session or
//! when the server stops ([`Job::stop`]).
//!
//! An adapter records by running the queue's jobs with its file system
//! (`arcly_tokio::record::record_streams`, `arcly_blocking::record_streams`,
//! `arcly_async_io::record_streams`); it needs no recorder-specific code.
//!
//! # Invariants
//!
//! - One `RecordJob` per stream session (a session is told apart from a
//!   later one of the same key by its [`StreamStats`]); a new session is
//!   recorded at once, even while the previous session's job still finishes
//!   its file (the file names never collide: `Create` never replaces).
//! - The watcher's memory is bounded by the engine's live streams (entries
//!   of ended streams are pruned on every step); the jobs by the queue's
//!   capacity.
//! - A subscription refused by the engine (the stream is at its subscriber
//!   limit) or a full job queue is retried after [`SUBSCRIBE_RETRY`]: a
//!   refusal announces nothing.
//! - A slow disk fills the recorder's bounded output queue (or leaves the
//!   subscriber behind in the engine's ring): frames are dropped, memory
//!   does not grow.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::container::hls::WallClock;
use crate::container::record::{RecordConfig, RecordOutput, Recorder};
use crate::engine::{Engine, Recv, StreamKey, StreamStats, SubscribeError, Subscriber};
use crate::job::{FileOp, Job, JobQueue, JobState};
use crate::log_limit::LogLimiter;
use crate::peer_text::escaped;
use crate::time::Instant;

/// How long until a refused subscription (or a full job queue) is retried.
pub const SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);

/// How long an idle job waits without a signal before it looks again
/// (nothing depends on it; it only bounds a lost wake-up's cost).
const IDLE_RECHECK: Duration = Duration::from_secs(3600);

/// Settings of the recording jobs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecordingConfig {
    /// Root directory of the recordings.
    pub dir: PathBuf,
    /// Frames moved into the recorder per [`Job::step`].
    pub pump_budget: usize,
    /// After shutdown: how long the runner gives the jobs to finish their
    /// files (the adapter's drain deadline).
    pub shutdown_grace: Duration,
    /// Fragmenting, rotation and queue bounds of each stream's recorder.
    pub recorder: RecordConfig,
    /// UTC of the runner's `Instant`s, for the file names (set by the
    /// adapter that owns the clock); `None`: files are named by the
    /// seconds since the clock's origin.
    pub wall_clock: Option<WallClock>,
}

impl RecordingConfig {
    /// Defaults, recording under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RecordingConfig {
            dir: dir.into(),
            pump_budget: 256,
            shutdown_grace: Duration::from_secs(5),
            recorder: RecordConfig::default(),
            wall_clock: None,
        }
    }

    /// Sets [`dir`](Self::dir).
    #[must_use]
    pub fn with_dir(mut self, dir: PathBuf) -> Self {
        self.dir = dir;
        self
    }

    /// Sets [`pump_budget`](Self::pump_budget).
    #[must_use]
    pub fn with_pump_budget(mut self, pump_budget: usize) -> Self {
        self.pump_budget = pump_budget;
        self
    }

    /// Sets [`shutdown_grace`](Self::shutdown_grace).
    #[must_use]
    pub fn with_shutdown_grace(mut self, shutdown_grace: Duration) -> Self {
        self.shutdown_grace = shutdown_grace;
        self
    }

    /// Sets [`recorder`](Self::recorder).
    #[must_use]
    pub fn with_recorder(mut self, recorder: RecordConfig) -> Self {
        self.recorder = recorder;
        self
    }

    /// Sets [`wall_clock`](Self::wall_clock).
    #[must_use]
    pub fn with_wall_clock(mut self, wall_clock: Option<WallClock>) -> Self {
        self.wall_clock = wall_clock;
        self
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The watcher job: starts a [`RecordJob`] for every new stream session
/// (see the module documentation). It never ends by itself; the runner
/// stops it at shutdown.
#[derive(Debug)]
pub struct RecordStreams {
    engine: Engine,
    config: RecordingConfig,
    jobs: JobQueue,
    /// The last session recorded per live key.
    recorded: Mutex<HashMap<StreamKey, Arc<StreamStats>>>,
}

impl RecordStreams {
    /// A watcher recording the streams of `engine`, pushing its per-stream
    /// jobs into `jobs` (the queue its runner drains; push the watcher
    /// there too, or run it beside).
    pub fn new(engine: Engine, config: RecordingConfig, jobs: JobQueue) -> Self {
        RecordStreams {
            engine,
            config,
            jobs,
            recorded: Mutex::default(),
        }
    }
}

impl Job for RecordStreams {
    fn step(&self, now: Instant) -> JobState {
        let announce = self.engine.streams_signal();
        // The epoch before the list: a change after this read wakes the
        // wait, a change before it is in the list.
        let epoch = announce.epoch();
        let live = self.engine.streams();
        let mut recorded = lock(&self.recorded);
        recorded.retain(|k, _| live.binary_search(k).is_ok());
        let mut retry = false;
        for key in live {
            let Some(stats) = self.engine.stream_stats(&key) else {
                continue;
            };
            if recorded.get(&key).is_some_and(|d| Arc::ptr_eq(d, &stats)) {
                continue;
            }
            let sub = match self.engine.subscribe(&key) {
                Ok(s) => s,
                Err(SubscribeError::NotFound(_)) => continue,
                Err(e) => {
                    tracing::debug!(stream = %key, "cannot record yet: {e}");
                    retry = true;
                    continue;
                }
            };
            let stats = sub.stream_stats();
            let job = RecordJob::new(key.clone(), sub, &self.config);
            match self.jobs.push(Arc::new(job)) {
                Ok(()) => {
                    tracing::info!(stream = %key, "recording started");
                    recorded.insert(key, stats);
                }
                Err(e) => {
                    static FULL: LogLimiter = LogLimiter::new(5, Duration::from_secs(10));
                    if let Some(suppressed) = FULL.check(now) {
                        tracing::warn!(stream = %key, suppressed, "cannot record: {e}");
                    }
                    retry = true;
                }
            }
        }
        JobState::Wait {
            signal: announce,
            epoch,
            deadline: now + if retry { SUBSCRIBE_RETRY } else { IDLE_RECHECK },
        }
    }

    fn describe(&self) -> String {
        "record streams".to_owned()
    }
}

/// The recording of one stream session (see the module documentation).
#[derive(Debug)]
pub struct RecordJob {
    key: StreamKey,
    inner: Mutex<RecordState>,
}

#[derive(Debug)]
struct RecordState {
    sub: Option<Subscriber>,
    recorder: Recorder,
    dir: PathBuf,
    wall_clock: Option<WallClock>,
    budget: usize,
    /// Time of the last step (names the next file).
    now: Instant,
    /// The current file could not be named: its writes are skipped.
    skipping: bool,
    /// The recorder was finished (end of the session or stop).
    finished: bool,
}

impl RecordJob {
    /// The recording of the session `sub` is subscribed to.
    pub fn new(key: StreamKey, sub: Subscriber, config: &RecordingConfig) -> Self {
        RecordJob {
            inner: Mutex::new(RecordState {
                sub: Some(sub),
                recorder: Recorder::new(key.to_string(), config.recorder.clone()),
                dir: config.dir.clone(),
                wall_clock: config.wall_clock,
                budget: config.pump_budget.max(1),
                now: Instant::ZERO,
                skipping: false,
                finished: false,
            }),
            key,
        }
    }

    /// Files started so far.
    pub fn files_started(&self) -> u64 {
        lock(&self.inner).recorder.files_started()
    }

    /// Frames dropped so far (the output queue was full).
    pub fn dropped_frames(&self) -> u64 {
        lock(&self.inner).recorder.dropped_frames()
    }
}

impl RecordState {
    fn finish(&mut self, key: &StreamKey) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.recorder.finish();
        // The subscription ends with the session's recording.
        self.sub = None;
        tracing::info!(
            stream = %key,
            files = self.recorder.files_started(),
            dropped_frames = self.recorder.dropped_frames(),
            "recording ended"
        );
    }

    /// The file for `path_hint` (`<app>/<stream>`), or `None` when the hint
    /// is not a plain relative path.
    fn file_path(&self, path_hint: &str) -> Option<PathBuf> {
        let rel = Path::new(path_hint);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return None;
        }
        let name = match self.wall_clock {
            Some(w) => utc_stamp(w.unix_micros(self.now) / 1_000_000),
            None => format!("{:010}", self.now.as_micros() / 1_000_000),
        };
        Some(self.dir.join(rel).join(format!("{name}.mp4")))
    }
}

impl Job for RecordJob {
    fn step(&self, now: Instant) -> JobState {
        let mut st = lock(&self.inner);
        st.now = now;
        if st.finished {
            return JobState::Done;
        }
        let budget = st.budget;
        let RecordState { sub, recorder, .. } = &mut *st;
        let Some(sub) = sub.as_mut() else {
            return JobState::Done;
        };
        let signal = sub.signal();
        let epoch = signal.epoch();
        let mut moved = 0;
        let mut end = false;
        let mut empty = false;
        while moved < budget {
            match sub.recv() {
                Recv::Frame(f) => {
                    recorder.push(&f.frame);
                    moved += 1;
                }
                Recv::Empty => {
                    empty = true;
                    break;
                }
                Recv::End => {
                    end = true;
                    break;
                }
            }
        }
        if end {
            st.finish(&self.key);
            return JobState::Done;
        }
        if !empty {
            return JobState::Busy;
        }
        JobState::Wait {
            signal,
            epoch,
            deadline: now + IDLE_RECHECK,
        }
    }

    fn describe(&self) -> String {
        format!("record {}", self.key)
    }

    fn poll_file_op(&self) -> Option<FileOp> {
        let mut st = lock(&self.inner);
        loop {
            match st.recorder.poll_output()? {
                RecordOutput::NewFile { path_hint } => match st.file_path(&path_hint) {
                    Some(path) => {
                        st.skipping = false;
                        return Some(FileOp::Create { path });
                    }
                    None => {
                        tracing::warn!(
                            stream = %escaped(&path_hint),
                            "recording skipped: the stream name is not a plain path"
                        );
                        st.skipping = true;
                    }
                },
                RecordOutput::Write(bytes) if !st.skipping => return Some(FileOp::Write(bytes)),
                RecordOutput::Close if !st.skipping => return Some(FileOp::Close),
                RecordOutput::Write(_) | RecordOutput::Close => {}
            }
        }
    }

    fn stop(&self, now: Instant) {
        let mut st = lock(&self.inner);
        st.now = now;
        st.finish(&self.key);
    }
}

/// `YYYYmmdd-HHMMSS` of `unix_secs` in UTC.
fn utc_stamp(unix_secs: u64) -> String {
    let (y, m, d) = crate::container::hls::civil_from_days(unix_secs / 86_400);
    let sod = unix_secs % 86_400;
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::engine::AppConfig;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert_eq!(utc_stamp(1_795_700_000), "20261126-133320");
    }

    /// The watcher pushes one job per session; the job turns the session's
    /// frames into Create, Write..., Close, and ends with the session.
    #[test]
    fn one_job_per_session_with_file_ops() {
        let engine = Engine::new();
        engine.add_app("live", AppConfig::default());
        let jobs = JobQueue::new(8);
        let config = RecordingConfig::new("/rec")
            .with_wall_clock(Some(WallClock::new(1_795_700_000 * 1_000_000)));
        let watcher = RecordStreams::new(engine.clone(), config, jobs.clone());
        let now = Instant::from_millis(1000);
        assert!(matches!(watcher.step(now), JobState::Wait { .. }));
        assert!(jobs.poll().is_none(), "no stream, no job");

        let key = StreamKey::new("live", "cam").unwrap();
        let publisher = engine.publish(key.clone()).unwrap();
        watcher.step(now);
        let Some(job) = jobs.poll() else {
            panic!("no job for the new session")
        };
        watcher.step(now);
        assert!(jobs.poll().is_none(), "the same session is recorded once");

        drop(publisher);
        assert!(
            matches!(job.step(now), JobState::Done),
            "ends with the session"
        );
        assert!(job.poll_file_op().is_none(), "no frame, no file");
        // A later session of the same key is a new recording.
        let _again = engine.publish(key).unwrap();
        watcher.step(now);
        assert!(jobs.poll().is_some(), "the next session is recorded too");
    }

    #[test]
    fn unsafe_hint_is_skipped_and_names_use_the_wall_clock() {
        let engine = Engine::new();
        engine.add_app("live", AppConfig::default());
        let key = StreamKey::new("live", "cam").unwrap();
        let _p = engine.publish(key.clone()).unwrap();
        let sub = engine.subscribe(&key).unwrap();
        let config = RecordingConfig::new("/rec")
            .with_wall_clock(Some(WallClock::new(1_795_700_000 * 1_000_000)));
        let job = RecordJob::new(key, sub, &config);
        let mut st = lock(&job.inner);
        st.now = Instant::from_millis(1500);
        assert_eq!(
            st.file_path("live/cam"),
            Some(PathBuf::from("/rec/live/cam/20261126-133321.mp4"))
        );
        assert_eq!(st.file_path("../etc"), None);
        assert_eq!(st.file_path("/abs"), None);
    }
}
