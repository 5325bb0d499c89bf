//! Background jobs ([`arcly::job`]) on tokio: one task per job of a
//! [`JobQueue`], stepped by [`run_job_with`], its [`FileOp`]s executed with
//! `tokio::fs`. Nothing here knows what a job does (HLS pumps, recordings).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use arcly::http::serve::run_job_with;
use arcly::job::{candidate_names, FileOp, Job, JobFiles, JobQueue};
use arcly::time::Clock;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::http::TokioRuntime;

/// Runs every job pushed to `queue` (one task each, on `clock`) until
/// `shutdown` completes; then the jobs are stopped ([`Job::stop`]: a
/// recording completes its file) and get `grace` to end before they are
/// aborted.
pub async fn run_jobs(
    queue: JobQueue,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let signal = queue.signal();
    loop {
        // Epoch first, then drain: a job queued after the drain moves it.
        let epoch = signal.epoch();
        while let Some(job) = queue.poll() {
            let span = tracing::info_span!("job", job = %job.describe());
            tasks.spawn(job_task(job, clock, stop_rx.clone()).instrument(span));
        }
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = signal.wait(epoch) => {}
            Some(res) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = res {
                    if e.is_panic() {
                        tracing::error!("background job panicked: {e}");
                    }
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + grace;
    crate::timer::drain_until(&mut tasks, deadline, "background jobs").await;
}

/// A path for the log: it may hold a peer's stream name.
pub(crate) fn shown(path: &Path) -> String {
    arcly::peer_text::escaped(&path.display().to_string()).to_string()
}

async fn job_task(job: Arc<dyn Job>, clock: Clock, stop: watch::Receiver<bool>) {
    let mut files = TokioFiles::default();
    run_job_with(job, &TokioRuntime { clock, stop }, &mut files).await;
    files.close().await;
}

/// [`JobFiles`] with `tokio::fs` (see [`FileOp`] for the invariants).
#[derive(Debug, Default)]
pub struct TokioFiles {
    open: Option<(PathBuf, tokio::fs::File)>,
    /// The open file failed: writes are skipped until the next create.
    failed: bool,
}

impl TokioFiles {
    async fn create(path: &Path) -> std::io::Result<(PathBuf, tokio::fs::File)> {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let mut last = None;
        for candidate in candidate_names(path) {
            match tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&candidate)
                .await
            {
                Ok(f) => return Ok((candidate, f)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free file name")))
    }

    /// Flushes, syncs and closes the open file, if any.
    pub async fn close(&mut self) {
        let Some((path, mut f)) = self.open.take() else {
            return;
        };
        let res = async {
            f.flush().await?;
            f.sync_all().await
        }
        .await;
        match res {
            Ok(()) => tracing::info!(file = %shown(&path), "file closed"),
            Err(e) => tracing::warn!(file = %shown(&path), "file close failed: {e}"),
        }
    }
}

impl JobFiles for TokioFiles {
    async fn execute(&mut self, op: FileOp) {
        match op {
            FileOp::Create { path } => {
                self.close().await;
                self.failed = false;
                match Self::create(&path).await {
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
                    if let Err(e) = f.write_all(&bytes).await {
                        tracing::warn!(file = %shown(path), "file write failed: {e}");
                        self.failed = true;
                    }
                }
            }
            FileOp::Close => self.close().await,
        }
    }
}
