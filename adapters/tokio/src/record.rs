//! Recording of every published stream to fragmented-MP4 files, with
//! tokio: the runtime-free jobs of [`arcly::record`] run by
//! [`run_jobs`](crate::jobs::run_jobs) (files written with `tokio::fs`).
//! This module only anchors the wall clock and queues the watcher job.

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arcly::container::hls::WallClock;
use arcly::job::JobQueue;
use arcly::record::RecordStreams;
pub use arcly::record::RecordingConfig;
use arcly::time::Clock;
use arcly::Engine;

/// Records every stream published on `engine` until `shutdown` completes;
/// then ends each recording (the files are completed and synced, bounded by
/// [`RecordingConfig::shutdown_grace`]). See [`arcly::record`].
pub async fn record_streams(
    engine: Engine,
    mut config: RecordingConfig,
    shutdown: impl Future<Output = ()>,
) {
    let clock = Clock::new(std::time::Instant::now());
    // Read together with the origin: `Instant` 0 of `clock` is this UTC time.
    if config.wall_clock.is_none() {
        config.wall_clock = Some(wall_clock_now());
    }
    tracing::debug!(dir = %config.dir.display(), "recording streams");
    let grace = config.shutdown_grace;
    let jobs = JobQueue::default();
    let watcher = RecordStreams::new(engine, config, jobs.clone());
    if jobs.push(Arc::new(watcher)).is_err() {
        return;
    }
    crate::jobs::run_jobs(jobs, clock, shutdown, grace).await;
}

/// The system clock now, as the anchor of a clock whose origin is now.
pub(crate) fn wall_clock_now() -> WallClock {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    WallClock::new(unix)
}
