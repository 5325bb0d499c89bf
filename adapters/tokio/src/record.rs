//! Recording of every published stream to fragmented-MP4 files
//! (`arcly::container::record`), with tokio.
//!
//! [`record_streams`] polls [`Engine::streams`] every
//! [`RecordingConfig::poll_interval`] (the engine's hot path is untouched)
//! and runs one task per stream session. Each task has two halves sharing a
//! [`Recorder`]:
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
use arcly::engine::{Recv, StreamStats, Subscriber};
use arcly::{Engine, StreamKey};
use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tracing::Instrument;

/// Settings of [`record_streams`].
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    /// Root directory of the recordings.
    pub dir: PathBuf,
    /// How often the engine's stream list is checked for new streams.
    pub poll_interval: Duration,
    /// Frames moved into the recorder before the reader yields.
    pub pump_budget: usize,
    /// After shutdown: how long the writers get to finish their files.
    pub shutdown_grace: Duration,
    /// Fragmenting, rotation and queue bounds of each stream's recorder.
    pub recorder: RecordConfig,
}

impl RecordingConfig {
    /// Defaults, recording under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RecordingConfig {
            dir: dir.into(),
            poll_interval: Duration::from_millis(500),
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
pub async fn record_streams(
    engine: Engine,
    config: RecordingConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = pin!(shutdown);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks: JoinSet<StreamKey> = JoinSet::new();
    // Sessions being recorded, and the last session recorded per key (so
    // an ended session still listed for a moment is not recorded twice).
    let mut active: HashMap<StreamKey, Arc<StreamStats>> = HashMap::new();
    let mut done: HashMap<StreamKey, Arc<StreamStats>> = HashMap::new();
    let mut tick = tokio::time::interval(config.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::debug!(dir = %config.dir.display(), "recording streams");
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(res) = tasks.join_next(), if !tasks.is_empty() => match res {
                Ok(key) => {
                    if let Some(stats) = active.remove(&key) {
                        done.insert(key, stats);
                    }
                }
                Err(e) => {
                    if e.is_panic() {
                        tracing::error!("recording task panicked: {e}");
                    }
                }
            },
            _ = tick.tick() => {
                let live = engine.streams();
                done.retain(|k, _| live.contains(k));
                for key in live {
                    if active.contains_key(&key) {
                        continue;
                    }
                    let Some(stats) = engine.stream_stats(&key) else { continue };
                    if done.get(&key).is_some_and(|d| Arc::ptr_eq(d, &stats)) {
                        continue;
                    }
                    let sub = match engine.subscribe(&key) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(stream = %key, "cannot record: {e}");
                            continue;
                        }
                    };
                    let stats = sub.stream_stats();
                    active.insert(key.clone(), stats);
                    let span = tracing::info_span!("record", stream = %key);
                    tasks.spawn(
                        record_one(key, sub, config.clone(), stop_rx.clone()).instrument(span),
                    );
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "recordings did not finish within the shutdown grace; aborting them"
        );
        tasks.shutdown().await;
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
