//! Background jobs: work a service starts and an adapter runs, without the
//! adapter knowing what the work is.
//!
//! A service (the HLS service muxing a stream, later a recorder or a WebRTC
//! session handed to its UDP service) pushes an [`Arc<dyn Job>`](Job) into
//! a [`JobQueue`]; the adapter drains the queue ([`JobQueue::poll`]) after
//! reading the queue signal's epoch, and runs each job as one task (or
//! thread) that calls [`Job::step`] and does what the returned [`JobState`]
//! says: step again after a yield, wait on a signal until a deadline, or
//! end. The loop is written once, runtime-free, in
//! `arcly::http::serve::run_job` for the executor adapters; a blocked
//! thread calls the same steps around `Signal::wait`.
//!
//! # Invariants
//!
//! - The queue holds at most [`JobQueue::capacity`] jobs not yet taken by
//!   the adapter; [`JobQueue::push`] refuses more (the service answers its
//!   caller with an error, e.g. 503).
//! - Each pushed job is returned by [`JobQueue::poll`] exactly once.
//! - The queue's [`signal`](JobQueue::signal) is notified after every push:
//!   read its epoch, drain, then wait from that epoch (no lost wake-up).
//!
//! # File output
//!
//! A job that writes files (a recording) does no I/O itself: after each
//! [`Job::step`] the runner drains [`Job::poll_file_op`] and hands every
//! [`FileOp`] to its [`JobFiles`] (the adapter's file system: `tokio` files,
//! blocking calls on the job's own thread, ...). When the server stops, the
//! runner calls [`Job::stop`] once and drains the operations again, so the
//! job can complete its files. The runner knows nothing else about the job.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::engine::Signal;
use crate::time::Instant;

/// What the runner of a [`Job`] does after one [`Job::step`].
#[derive(Debug, Clone)]
pub enum JobState {
    /// More work may be waiting: yield to the runtime, then step again.
    Busy,
    /// Nothing to do: wait until `signal` moves past `epoch` or `deadline`
    /// passes, then step again.
    Wait {
        /// Signal to wait on.
        signal: Signal,
        /// Epoch read before the last check.
        epoch: u64,
        /// Step again at the latest then.
        deadline: Instant,
    },
    /// The job is over: end the task.
    Done,
}

/// One piece of background work (see the module documentation).
pub trait Job: Send + Sync + fmt::Debug {
    /// Does a bounded amount of work at `now` and says what comes next.
    fn step(&self, now: Instant) -> JobState;

    /// A short description for the runner's log span (e.g. `hls live/cam`).
    fn describe(&self) -> String;

    /// The next file operation for the runner's [`JobFiles`], in order
    /// (drained after every [`step`](Self::step)). Jobs that write no
    /// files keep the default: none.
    fn poll_file_op(&self) -> Option<FileOp> {
        None
    }

    /// The server is stopping: finish up (e.g. complete the open file).
    /// Called once; the runner then drains [`poll_file_op`](Self::poll_file_op)
    /// and ends the job without another step.
    fn stop(&self, _now: Instant) {}
}

/// A file operation of a [`Job`], executed by the adapter's [`JobFiles`].
///
/// Invariant of every executor: at most one file is open per runner; a
/// [`Create`](FileOp::Create) closes the open one first; a failed create or
/// write makes the executor skip [`Write`](FileOp::Write)s until the next
/// `Create` (the failure is logged, never fatal to the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// Create a new file at `path` (and its missing parent directories)
    /// without replacing an existing one: if `path` exists, the first free
    /// name of [`candidate_names`] is taken.
    Create {
        /// Where the job wants the file.
        path: PathBuf,
    },
    /// Append to the open file.
    Write(Bytes),
    /// Flush, sync and close the open file.
    Close,
}

/// Most names [`candidate_names`] offers for one [`FileOp::Create`].
pub const MAX_NAME_CANDIDATES: u32 = 100;

/// The names a [`FileOp::Create`] of `path` tries, in order: `path` itself,
/// then `stem-1.ext`, `stem-2.ext`, ... (at most [`MAX_NAME_CANDIDATES`]).
pub fn candidate_names(path: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    (0..MAX_NAME_CANDIDATES).map(move |n| {
        if n == 0 {
            return path.to_path_buf();
        }
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        let name = match (stem, path.extension()) {
            (Some(stem), Some(ext)) => format!("{stem}-{n}.{}", ext.to_string_lossy()),
            (Some(stem), None) => format!("{stem}-{n}"),
            (None, _) => format!("{n}"),
        };
        path.with_file_name(name)
    })
}

/// The adapter's file system for [`FileOp`]s (see the invariants there).
pub trait JobFiles: Send {
    /// Executes one operation; errors are logged and remembered, not returned.
    fn execute(&mut self, op: FileOp) -> impl Future<Output = ()> + Send;
}

/// [`JobFiles`] of a runner whose jobs write no files: drops every operation.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFiles;

impl JobFiles for NoFiles {
    fn execute(&mut self, _op: FileOp) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// Why [`JobQueue::push`] refused a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("background job queue full (capacity {capacity})")]
pub struct JobQueueFull {
    /// The queue's capacity.
    pub capacity: usize,
}

#[derive(Debug)]
struct Inner {
    queue: Mutex<VecDeque<Arc<dyn Job>>>,
    signal: Signal,
    capacity: usize,
}

/// A bounded queue of [`Job`]s from services to the adapter that runs them.
/// Clones share the queue.
#[derive(Debug, Clone)]
pub struct JobQueue {
    inner: Arc<Inner>,
}

/// Default [`JobQueue::capacity`].
pub const DEFAULT_JOB_QUEUE_CAPACITY: usize = 1024;

impl Default for JobQueue {
    fn default() -> Self {
        JobQueue::new(DEFAULT_JOB_QUEUE_CAPACITY)
    }
}

impl JobQueue {
    /// An empty queue holding at most `capacity` jobs not yet taken (at
    /// least 1).
    pub fn new(capacity: usize) -> Self {
        JobQueue {
            inner: Arc::new(Inner {
                queue: Mutex::default(),
                signal: Signal::new(),
                capacity: capacity.max(1),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<dyn Job>>> {
        match self.inner.queue.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Most jobs held before the adapter takes them.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Jobs waiting for the adapter.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no job waits for the adapter.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Queues `job` for the adapter and notifies [`signal`](Self::signal).
    pub fn push(&self, job: Arc<dyn Job>) -> Result<(), JobQueueFull> {
        {
            let mut q = self.lock();
            if q.len() >= self.inner.capacity {
                return Err(JobQueueFull {
                    capacity: self.inner.capacity,
                });
            }
            q.push_back(job);
        }
        self.inner.signal.notify();
        Ok(())
    }

    /// The next job to run (each pushed job is returned once), oldest first.
    pub fn poll(&self) -> Option<Arc<dyn Job>> {
        self.lock().pop_front()
    }

    /// Notified after every [`push`](Self::push).
    pub fn signal(&self) -> Signal {
        self.inner.signal.clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug)]
    struct Nop(u32);

    impl Job for Nop {
        fn step(&self, _now: Instant) -> JobState {
            JobState::Done
        }
        fn describe(&self) -> String {
            format!("nop {}", self.0)
        }
    }

    #[test]
    fn candidate_names_keep_the_extension() {
        let names: Vec<PathBuf> = candidate_names(Path::new("/r/live/cam/20261208-020000.mp4"))
            .take(3)
            .collect();
        assert_eq!(
            names,
            [
                PathBuf::from("/r/live/cam/20261208-020000.mp4"),
                PathBuf::from("/r/live/cam/20261208-020000-1.mp4"),
                PathBuf::from("/r/live/cam/20261208-020000-2.mp4"),
            ]
        );
        assert_eq!(candidate_names(Path::new("x")).count(), 100);
    }

    #[test]
    fn bounded_fifo_with_signal() {
        let q = JobQueue::new(2);
        let sig = q.signal();
        let e0 = sig.epoch();
        q.push(Arc::new(Nop(1))).unwrap();
        q.push(Arc::new(Nop(2))).unwrap();
        assert_ne!(sig.epoch(), e0, "push notifies");
        assert_eq!(
            q.push(Arc::new(Nop(3))),
            Err(JobQueueFull { capacity: 2 }),
            "bounded"
        );
        assert_eq!(q.len(), 2);
        assert_eq!(q.poll().unwrap().describe(), "nop 1");
        assert_eq!(q.poll().unwrap().describe(), "nop 2");
        assert!(q.poll().is_none());
        assert!(q.is_empty());
    }
}
