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

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

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
