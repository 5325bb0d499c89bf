//! Background jobs ([`arcly::job`]) on plain threads: one thread per job of
//! a [`JobQueue`], stepped by [`run_job_with`] with blocking waits, its
//! [`FileOp`]s executed with blocking file calls on that thread. Nothing
//! here knows what a job does; [`record_streams`] only queues the
//! recording watcher of [`arcly::record`].

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arcly::container::hls::WallClock;
use arcly::http::serve::run_job_with;
use arcly::http::Waited;
use arcly::job::{candidate_names, FileOp, Job, JobFiles, JobQueue};
use arcly::record::{RecordStreams, RecordingConfig};
use arcly::time::Clock;
use arcly::Engine;

use crate::http::{block_on, BlockingRuntime};
use crate::Shutdown;

/// Stack size of a job thread.
const JOB_THREAD_STACK: usize = 256 * 1024;

/// Runs every job pushed to `queue` (one thread each, on `clock`) until
/// `shutdown` is triggered; then the jobs are stopped ([`Job::stop`]: a
/// recording completes its file) and this call waits up to `grace` for
/// their threads (a thread still busy after it is left to end alone).
pub fn run_jobs(queue: &JobQueue, clock: Clock, shutdown: &Shutdown, grace: Duration) {
    let rt = Arc::new(BlockingRuntime {
        clock,
        shutdown: shutdown.clone(),
    });
    let signal = queue.signal();
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    loop {
        // Epoch first, then drain: a job queued after the drain moves it.
        let seen = signal.epoch();
        while let Some(job) = queue.poll() {
            let rt = rt.clone();
            let name = job.describe();
            let spawned = std::thread::Builder::new()
                .name("arcly-job".into())
                .stack_size(JOB_THREAD_STACK)
                .spawn(move || job_thread(job, &rt));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => tracing::warn!(job = %name, "cannot start a job thread: {e}"),
            }
        }
        threads.retain(|t| !t.is_finished());
        if let Waited::Stopped = rt.block(signal.wait(seen), None) {
            break;
        }
    }
    let deadline = std::time::Instant::now() + grace;
    while threads.iter().any(|t| !t.is_finished()) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left = threads.iter().filter(|t| !t.is_finished()).count();
    if left > 0 {
        tracing::warn!(
            left,
            "background jobs did not finish within the shutdown grace"
        );
    }
    for t in threads.into_iter().filter(|t| t.is_finished()) {
        let _ = t.join();
    }
}

fn job_thread(job: Arc<dyn Job>, rt: &BlockingRuntime) {
    let span = tracing::info_span!("job", job = %job.describe());
    let _enter = span.enter();
    let mut files = StdFiles::default();
    block_on(run_job_with(job, rt, &mut files));
    files.close();
}

/// Records every stream published on `engine` until `shutdown` is
/// triggered; then ends each recording (files completed and synced, within
/// [`RecordingConfig::shutdown_grace`]). Blocks the calling thread; see
/// [`arcly::record`].
pub fn record_streams(engine: Engine, mut config: RecordingConfig, shutdown: &Shutdown) {
    let clock = Clock::new(std::time::Instant::now());
    // Read together with the origin: `Instant` 0 of `clock` is this UTC time.
    if config.wall_clock.is_none() {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        config.wall_clock = Some(WallClock::new(unix));
    }
    let grace = config.shutdown_grace;
    let jobs = JobQueue::default();
    let watcher = RecordStreams::new(engine, config, jobs.clone());
    if jobs.push(Arc::new(watcher)).is_err() {
        return;
    }
    run_jobs(&jobs, clock, shutdown, grace);
}

/// A path for the log: it may hold a peer's stream name.
fn shown(path: &Path) -> String {
    arcly::peer_text::escaped(&path.display().to_string()).to_string()
}

/// [`JobFiles`] with blocking file calls (see [`FileOp`] for the invariants).
#[derive(Debug, Default)]
pub struct StdFiles {
    open: Option<(PathBuf, File)>,
    /// The open file failed: writes are skipped until the next create.
    failed: bool,
}

impl StdFiles {
    fn create(path: &Path) -> std::io::Result<(PathBuf, File)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut last = None;
        for candidate in candidate_names(path) {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&candidate)
            {
                Ok(f) => return Ok((candidate, f)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free file name")))
    }

    /// Flushes, syncs and closes the open file, if any.
    pub fn close(&mut self) {
        let Some((path, mut f)) = self.open.take() else {
            return;
        };
        match f.flush().and_then(|()| f.sync_all()) {
            Ok(()) => tracing::info!(file = %shown(&path), "file closed"),
            Err(e) => tracing::warn!(file = %shown(&path), "file close failed: {e}"),
        }
    }

    fn execute_now(&mut self, op: FileOp) {
        match op {
            FileOp::Create { path } => {
                self.close();
                self.failed = false;
                match Self::create(&path) {
                    Ok((path, f)) => {
                        tracing::info!(file = %shown(&path), "file opened");
                        self.open = Some((path, f));
                    }
                    Err(e) => {
                        tracing::warn!(file = %shown(&path), "cannot create the file: {e}");
                        self.failed = true;
                    }
                }
            }
            FileOp::Write(bytes) => {
                if self.failed {
                    return;
                }
                if let Some((path, f)) = self.open.as_mut() {
                    if let Err(e) = f.write_all(&bytes) {
                        tracing::warn!(file = %shown(path), "file write failed: {e}");
                        self.failed = true;
                    }
                }
            }
            FileOp::Close => self.close(),
        }
    }
}

impl JobFiles for StdFiles {
    /// Blocks this (job) thread for the call; the future is ready.
    async fn execute(&mut self, op: FileOp) {
        self.execute_now(op);
    }
}
