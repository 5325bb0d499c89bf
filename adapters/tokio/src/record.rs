//! Recording of every published stream to fragmented-MP4 files
//! (`arcly::container::record`), with tokio.
//!
//! [`record_streams`] waits on the engine's stream announcements
//! ([`Engine::streams_signal`], notified on every publish and every end of
//! a stream; frames never touch it) and runs one task per stream session,
//! subscribed as soon as the stream is published (no polling: the
//! recording does not depend on the GOP cache to start at the stream's
//! first keyframe). Each task has two halves sharing a [`Recorder`]:
//! - the *reader* moves frames from the engine subscriber into the recorder
//!   (CPU only, never blocked by the disk), then waits on the stream signal;
//! - the *writer* executes the recorder's [`RecordOutput`]s with `tokio::fs`:
//!   `DIR/<app>/<stream>/<YYYYmmdd-HHMMSS>.mp4` (UTC wall clock; `-1`, `-2`
//!   … appended when that name exists), `fsync` on close.
//!
//! A slow disk fills the recorder's bounded output queue, and the recorder
//! drops frames (counted, logged) instead of growing memory.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arcly::container::record::{RecordConfig, RecordOutput, Recorder};
use arcly::engine::{Recv, StreamStats, SubscribeError, Subscriber};
use arcly::{Engine, StreamKey};
use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tracing::Instrument;

/// When the engine refused a recorder's subscription (the stream is at its
/// subscriber limit), how long until the stream list is read again. The only
/// timer of the watcher: a refused subscribe announces nothing, so without
/// it the stream would stay unrecorded until the next publish or unpublish.
const SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);

/// Settings of [`record_streams`].
///
/// New streams are found through [`Engine::streams_signal`], without
/// polling (the former `poll_interval` field is gone).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecordingConfig {
    /// Root directory of the recordings.
    pub dir: PathBuf,
    /// Frames moved into the recorder before the reader yields.
    pub pump_budget: usize,
    /// After shutdown: how long the writers get to finish their files.
    pub shutdown_grace: Duration,
    /// Fragmenting, rotation and queue bounds of each stream's recorder.
    pub recorder: RecordConfig,
}
/// Builder-style setters: the struct is `#[non_exhaustive]`, so other
/// crates start from its default (or constructor) value and chain these.
impl RecordingConfig {
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
}

impl RecordingConfig {
    /// Defaults, recording under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RecordingConfig {
            dir: dir.into(),
            pump_budget: 256,
            shutdown_grace: Duration::from_secs(5),
            recorder: RecordConfig::default(),
        }
    }
}

fn lock(m: &Mutex<Recorder>) -> MutexGuard<'_, Recorder> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Records every stream published on `engine` until `shutdown` completes;
/// then ends each recording (the files are completed and synced, bounded by
/// [`RecordingConfig::shutdown_grace`]).
///
/// Woken by [`Engine::streams_signal`] (a publish or an unpublish) and by
/// the end of a recording task (a new session of the same stream may have
/// been waiting for it); it reads the epoch before the stream list, so no
/// announcement is lost. Idle, it sleeps: no timer, except a retry after
/// 1 s while some listed stream refuses the recorder's subscription (its
/// subscriber limit is reached; a refusal announces nothing).
pub async fn record_streams(
    engine: Engine,
    config: RecordingConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = pin!(shutdown);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks: JoinSet<StreamKey> = JoinSet::new();
    let mut watch = Watch::default();
    let announce = engine.streams_signal();
    tracing::debug!(dir = %config.dir.display(), "recording streams");
    loop {
        // The epoch before the list: a change after this read wakes the
        // wait below, a change before it is in the list.
        let epoch = announce.epoch();
        let retry = watch.scan(&engine, &config, &stop_rx, &mut tasks);
        let retry_at = tokio::time::Instant::now() + SUBSCRIBE_RETRY;
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(res) = tasks.join_next(), if !tasks.is_empty() => match res {
                Ok(key) => watch.ended(&key),
                Err(e) => {
                    if e.is_panic() {
                        tracing::error!("recording task panicked: {e}");
                    }
                    // Its session counts as done; the next one is recorded.
                    if let Some(key) = watch.key_of(e.id()) {
                        watch.ended(&key);
                    }
                }
            },
            _ = announce.wait(epoch) => {}
            _ = tokio::time::sleep_until(retry_at), if retry => {}
        }
    }
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    crate::timer::drain_until(&mut tasks, deadline, "recordings").await;
}

/// The stream sessions [`record_streams`] knows about. A session is told
/// apart from a later one of the same key by its [`StreamStats`] (one per
/// session). Both maps hold at most one entry per live stream (`done` is
/// pruned to the listed keys on every scan).
#[derive(Default)]
struct Watch {
    /// Sessions being recorded, with the id of their task.
    active: HashMap<StreamKey, (Arc<StreamStats>, tokio::task::Id)>,
    /// The last session recorded per key, so that an ended session still
    /// listed for a moment is not recorded twice.
    done: HashMap<StreamKey, Arc<StreamStats>>,
}

impl Watch {
    /// Starts a recording task for every listed session not recorded yet.
    /// Returns whether some subscription was refused (retry later).
    fn scan(
        &mut self,
        engine: &Engine,
        config: &RecordingConfig,
        stop: &watch::Receiver<bool>,
        tasks: &mut JoinSet<StreamKey>,
    ) -> bool {
        let live = engine.streams();
        self.done.retain(|k, _| live.binary_search(k).is_ok());
        let mut refused = false;
        for key in live {
            if self.active.contains_key(&key) {
                // Its task ends first; its end triggers another scan.
                continue;
            }
            let Some(stats) = engine.stream_stats(&key) else {
                continue;
            };
            if self.done.get(&key).is_some_and(|d| Arc::ptr_eq(d, &stats)) {
                continue;
            }
            let sub = match engine.subscribe(&key) {
                Ok(s) => s,
                Err(SubscribeError::NotFound(_)) => continue,
                Err(e) => {
                    tracing::debug!(stream = %key, "cannot record yet: {e}");
                    refused = true;
                    continue;
                }
            };
            let stats = sub.stream_stats();
            let span = tracing::info_span!("record", stream = %key);
            let task = tasks
                .spawn(record_one(key.clone(), sub, config.clone(), stop.clone()).instrument(span));
            self.active.insert(key, (stats, task.id()));
        }
        refused
    }

    /// The recording task for `key` ended: its session is done.
    fn ended(&mut self, key: &StreamKey) {
        if let Some((key, (stats, _))) = self.active.remove_entry(key) {
            self.done.insert(key, stats);
        }
    }

    /// The key recorded by task `id` (a task that panicked or was aborted).
    fn key_of(&self, id: tokio::task::Id) -> Option<StreamKey> {
        self.active
            .iter()
            .find_map(|(k, (_, t))| (*t == id).then(|| k.clone()))
    }
}

/// Records one stream session; returns its key when the files are complete.
async fn record_one(
    key: StreamKey,
    mut sub: Subscriber,
    config: RecordingConfig,
    stop: watch::Receiver<bool>,
) -> StreamKey {
    let recorder = Arc::new(Mutex::new(Recorder::new(
        key.to_string(),
        config.recorder.clone(),
    )));
    let wake = Arc::new(Notify::new());
    let ended = Arc::new(AtomicBool::new(false));
    tracing::info!("recording started");
    let reader = {
        let (recorder, wake, ended) = (recorder.clone(), wake.clone(), ended.clone());
        let budget = config.pump_budget.max(1);
        async move {
            let mut stop = pin!(stopped(stop));
            let signal = sub.signal();
            loop {
                let epoch = signal.epoch();
                let mut moved = 0;
                let mut end = false;
                let mut empty = false;
                {
                    let mut rec = lock(&recorder);
                    while moved < budget {
                        match sub.recv() {
                            Recv::Frame(f) => {
                                rec.push(&f.frame);
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
                        rec.finish();
                    }
                }
                if end {
                    break;
                }
                if moved > 0 {
                    wake.notify_one();
                }
                if !empty {
                    tokio::task::yield_now().await;
                    continue;
                }
                tokio::select! {
                    _ = signal.wait(epoch) => {}
                    _ = &mut stop => {
                        lock(&recorder).finish();
                        break;
                    }
                }
            }
            drop(sub);
            ended.store(true, Ordering::Release);
            wake.notify_one();
        }
    };
    let writer = async move {
        let mut file = FileWriter::new(config.dir.clone());
        loop {
            let next = lock(&recorder).poll_output();
            match next {
                Some(o) => file.execute(o).await,
                None if ended.load(Ordering::Acquire) => {
                    // `ended` is set after the last push: drain once more.
                    let Some(o) = lock(&recorder).poll_output() else {
                        break;
                    };
                    file.execute(o).await;
                }
                None => wake.notified().await,
            }
        }
        file.close().await;
        let rec = lock(&recorder);
        tracing::info!(
            files = rec.files_started(),
            dropped_frames = rec.dropped_frames(),
            "recording ended"
        );
    };
    tokio::join!(reader, writer);
    key
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Executes [`RecordOutput`]s on the file system.
struct FileWriter {
    dir: PathBuf,
    open: Option<(PathBuf, tokio::fs::File)>,
    /// The open file failed: skip writes until the next file.
    failed: bool,
}

impl FileWriter {
    fn new(dir: PathBuf) -> Self {
        FileWriter {
            dir,
            open: None,
            failed: false,
        }
    }

    async fn execute(&mut self, o: RecordOutput) {
        match o {
            RecordOutput::NewFile { path_hint } => {
                self.close().await;
                self.failed = false;
                match self.create(&path_hint).await {
                    Ok((path, f)) => {
                        tracing::info!(file = %path.display(), "recording file opened");
                        self.open = Some((path, f));
                    }
                    Err(e) => {
                        tracing::warn!(stream = %path_hint, "cannot create a recording file: {e}");
                        self.failed = true;
                    }
                }
            }
            RecordOutput::Write(bytes) => {
                if self.failed {
                    return;
                }
                if let Some((path, f)) = self.open.as_mut() {
                    if let Err(e) = f.write_all(&bytes).await {
                        tracing::warn!(file = %path.display(), "recording write failed: {e}");
                        self.failed = true;
                    }
                }
            }
            RecordOutput::Close => self.close().await,
        }
    }

    async fn create(&self, path_hint: &str) -> std::io::Result<(PathBuf, tokio::fs::File)> {
        let rel = Path::new(path_hint);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "unsafe path",
            ));
        }
        let dir = self.dir.join(rel);
        tokio::fs::create_dir_all(&dir).await?;
        let stamp = utc_stamp(SystemTime::now());
        let mut last = None;
        for n in 0..100u32 {
            let name = if n == 0 {
                format!("{stamp}.mp4")
            } else {
                format!("{stamp}-{n}.mp4")
            };
            let path = dir.join(name);
            match tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .await
            {
                Ok(f) => return Ok((path, f)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free file name")))
    }

    async fn close(&mut self) {
        let Some((path, mut f)) = self.open.take() else {
            return;
        };
        let res = async {
            f.flush().await?;
            f.sync_all().await
        }
        .await;
        match res {
            Ok(()) => tracing::info!(file = %path.display(), "recording file closed"),
            Err(e) => tracing::warn!(file = %path.display(), "recording file close failed: {e}"),
        }
    }
}

/// `YYYYmmdd-HHMMSS` of `t` in UTC (civil-from-days, proleptic Gregorian).
fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}-{h:02}{m:02}{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        let at = |s: u64| utc_stamp(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "19700101-000000");
        assert_eq!(at(951_782_400), "20000229-000000");
        assert_eq!(at(1_795_700_000), "20261126-133320");
    }
}
