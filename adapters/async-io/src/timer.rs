//! The clock and the one timer every async-io driver gives its core loop
//! ([`arcly::session::StreamIo`], [`arcly::datagram::DatagramIo`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use arcly::time::{Clock, Instant};
use async_io::Timer;

/// A [`Clock`] and one re-armable `async_io::Timer`.
pub(crate) struct ClockTimer {
    clock: Clock,
    sleep: Timer,
}

impl ClockTimer {
    pub(crate) fn new(clock: Clock) -> Self {
        ClockTimer {
            clock,
            sleep: Timer::never(),
        }
    }

    /// The current time on the clock.
    pub(crate) fn now(&self) -> Instant {
        self.clock.instant(std::time::Instant::now())
    }

    /// Arms the timer at `at`.
    pub(crate) fn set(&mut self, at: Instant) {
        self.sleep.set_at(self.clock.to_std(at));
    }

    /// Polls the armed timer.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.sleep).poll(cx).map(|_| ())
    }

    /// Disarms the timer after it fired.
    pub(crate) fn clear(&mut self) {
        self.sleep = Timer::never();
    }
}
