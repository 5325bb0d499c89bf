//! The clock and the one timer every tokio driver gives its core loop
//! ([`arcly::session::StreamIo`], [`arcly::datagram::DatagramIo`]), and the
//! bounded drain of a task set at shutdown.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use arcly::time::{Clock, Instant};
use tokio::time::Sleep;

/// How far away a disarmed timer is parked.
const PARKED: Duration = Duration::from_secs(3600);

/// A [`Clock`] and one re-armable tokio sleep.
pub(crate) struct ClockTimer {
    clock: Clock,
    sleep: Pin<Box<Sleep>>,
}

impl ClockTimer {
    pub(crate) fn new(clock: Clock) -> Self {
        ClockTimer {
            clock,
            sleep: Box::pin(tokio::time::sleep(PARKED)),
        }
    }

    /// The current time on the clock.
    pub(crate) fn now(&self) -> Instant {
        self.clock.instant(std::time::Instant::now())
    }

    /// Arms the timer at `at`.
    pub(crate) fn set(&mut self, at: Instant) {
        let when = tokio::time::Instant::from_std(self.clock.to_std(at));
        self.sleep.as_mut().reset(when);
    }

    /// Polls the armed timer.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.sleep.as_mut().poll(cx)
    }

    /// Disarms the timer after it fired.
    pub(crate) fn clear(&mut self) {
        self.sleep
            .as_mut()
            .reset(tokio::time::Instant::now() + PARKED);
    }
}

/// Shutdown of a set of tasks: waits until each has ended or `deadline`
/// passed, then aborts what is left with a warning naming `what` ("sessions",
/// "recordings", ...).
pub(crate) async fn drain_until<T: 'static>(
    tasks: &mut tokio::task::JoinSet<T>,
    deadline: tokio::time::Instant,
    what: &str,
) {
    let drained = tokio::time::timeout_at(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "{what} did not finish within the shutdown grace; aborting them"
        );
        tasks.shutdown().await;
    }
}
