//! The per-connection loop: one hand-written `poll` that reads, fires
//! timers, pulls media and writes, so reading and writing share one `&mut`
//! stream without splitting it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use arcly::engine::SignalWait;
use arcly::session::{CloseReason, StreamSession};
use arcly::time::{Clock, Instant};
use async_io::Timer;
use futures_lite::io::{AsyncRead, AsyncWrite};

use arcly::transmit_queue::TransmitQueue as OutQueue;

/// Settings of one connection driver.
#[derive(Debug, Clone)]
pub struct DriveConfig {
    /// Largest read buffer (bytes per `handle_input` call at most). The
    /// buffer starts at 2 KiB and doubles up to this while reads fill it, so
    /// idle players stay small and publishers read in large blocks.
    pub read_buffer: usize,
    /// How long a closing session may take to flush its last bytes (and how
    /// long a session may stay open after the peer's EOF) before the
    /// transport is dropped.
    pub close_linger: Duration,
    /// Write merging for players: after a write completes, wait this long
    /// before pulling media again, so every frame that arrived meanwhile goes
    /// out in one vectored write (fewer syscalls per delivered byte, more
    /// latency). Zero (the default): pull as soon as the write completed.
    pub write_merge: Duration,
}

impl Default for DriveConfig {
    fn default() -> Self {
        DriveConfig {
            read_buffer: 16 * 1024,
            close_linger: Duration::from_secs(5),
            write_merge: Duration::ZERO,
        }
    }
}

/// Initial read buffer size.
const START_BUF: usize = 2048;

/// Iterations of the loop per poll before yielding to other tasks.
const BUDGET: usize = 64;

pub(crate) struct Driver<'a, S> {
    stream: S,
    session: &'a mut dyn StreamSession,
    clock: Clock,
    buf: Vec<u8>,
    max_buf: usize,
    out: OutQueue,
    read_closed: bool,
    /// `handle_media` is owed: a write completed or input/timers ran.
    media_due: bool,
    /// The media signal's epoch read before the last `handle_media`.
    media_seen: Option<u64>,
    /// The wait registered with the media signal, from `media_seen`.
    media_wait: Option<SignalWait>,
    sleep: Timer,
    sleep_at: Option<Instant>,
    /// Give up flushing / waiting for the session to close after this.
    linger_until: Option<Instant>,
    linger: Duration,
    shutdown_seen: bool,
    write_merge: Duration,
    /// With `write_merge`: no `handle_media` before this.
    media_not_before: Option<Instant>,
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin> Driver<'a, S> {
    pub(crate) fn new(
        stream: S,
        session: &'a mut dyn StreamSession,
        clock: Clock,
        config: &DriveConfig,
    ) -> Self {
        Driver {
            stream,
            session,
            clock,
            buf: vec![0u8; START_BUF.min(config.read_buffer.max(512))],
            max_buf: config.read_buffer.max(512),
            out: OutQueue::default(),
            read_closed: false,
            media_due: true,
            media_seen: None,
            media_wait: None,
            sleep: Timer::never(),
            sleep_at: None,
            linger_until: None,
            linger: config.close_linger,
            shutdown_seen: false,
            write_merge: config.write_merge,
            media_not_before: None,
        }
    }

    fn now(&self) -> Instant {
        self.clock.instant(std::time::Instant::now())
    }

    fn start_linger(&mut self, now: Instant) {
        if self.linger_until.is_none() {
            self.linger_until = Some(now + self.linger);
        }
    }

    pub(crate) fn poll_drive<F: Future<Output = ()>>(
        &mut self,
        cx: &mut Context<'_>,
        mut shutdown: Pin<&mut F>,
    ) -> Poll<io::Result<CloseReason>> {
        for _ in 0..BUDGET {
            let now = self.now();
            let mut progress = false;

            // Server shutdown: ask the session to end, give it the linger to flush.
            if !self.shutdown_seen && shutdown.as_mut().poll(cx).is_ready() {
                self.shutdown_seen = true;
                if self.session.close_reason().is_none() {
                    self.session.close(now);
                }
                self.start_linger(now);
                progress = true;
            }

            // 1. Input.
            if !self.read_closed && self.session.close_reason().is_none() {
                match Pin::new(&mut self.stream).poll_read(cx, &mut self.buf) {
                    Poll::Ready(Ok(n)) => {
                        if n == 0 {
                            tracing::trace!("peer EOF");
                            self.read_closed = true;
                            self.start_linger(now);
                        }
                        let data = self.buf.get(..n).unwrap_or_default();
                        self.session.handle_input(now, data);
                        if n == self.buf.len() && n < self.max_buf {
                            self.buf.resize((n * 2).min(self.max_buf), 0);
                        }
                        self.media_due = true;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => {
                        self.read_closed = true;
                        self.session.handle_input(now, &[]);
                        return Poll::Ready(Err(e));
                    }
                    Poll::Pending => {}
                }
            }

            // 2. Deadlines: the session's, and the linger of a closing session.
            if let Some(limit) = self.linger_until {
                if now >= limit {
                    match self.session.close_reason() {
                        Some(reason) => {
                            tracing::debug!(%reason, "gave up flushing a closed session");
                            return Poll::Ready(Ok(reason.clone()));
                        }
                        None => {
                            tracing::debug!("session still open after peer EOF; closing it");
                            self.session.close(now);
                            self.linger_until = Some(now + self.linger);
                        }
                    }
                }
            }
            match self.session.poll_timeout() {
                Some(at) if at <= now => {
                    self.session.handle_timeout(now);
                    self.media_due = true;
                    progress = true;
                }
                _ => {}
            }
            let next = [
                self.session.poll_timeout(),
                self.linger_until,
                self.media_not_before,
            ]
            .into_iter()
            .flatten()
            .min();
            if let Some(at) = next {
                if self.sleep_at != Some(at) {
                    self.sleep_at = Some(at);
                    self.sleep.set_at(self.clock.to_std(at));
                }
                if Pin::new(&mut self.sleep).poll(cx).is_ready() {
                    // Fires at or after `at`; the next iteration sees it due.
                    self.sleep_at = None;
                    progress = true;
                }
            }

            // 3. Output: drain everything pending into one vectored write.
            if self.out.is_empty() {
                self.session.poll_transmit(self.out.fill());
            }
            while !self.out.is_empty() {
                let slices = self.out.io_slices();
                match Pin::new(&mut self.stream).poll_write_vectored(cx, &slices) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => {
                        drop(slices);
                        if self.out.advance(n) {
                            // The previous write completed: more media may go.
                            self.media_due = true;
                            let merge = self.write_merge.max(self.session.write_merge());
                            if !merge.is_zero() && self.session.media_signal().is_some() {
                                self.media_not_before = Some(now + merge);
                            }
                        }
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }

            // 4. Media, only once the previous write completed (backpressure).
            if self.media_not_before.is_some_and(|t| now >= t) {
                self.media_not_before = None;
            }
            if self.out.is_empty()
                && self.session.close_reason().is_none()
                && self.media_not_before.is_none()
            {
                let signal = self.session.media_signal();
                let epoch = signal.as_ref().map(|s| s.epoch());
                if self.media_due || (epoch.is_some() && epoch != self.media_seen) {
                    self.media_due = false;
                    self.media_seen = epoch;
                    self.media_wait = None;
                    self.session.handle_media(now);
                    progress = true;
                } else if let (Some(signal), Some(seen)) = (signal, epoch) {
                    // Kept across polls: re-polling the same wait does not
                    // re-register, dropping it unregisters.
                    let wait = self.media_wait.get_or_insert_with(|| signal.wait(seen));
                    if Pin::new(wait).poll(cx).is_ready() {
                        self.media_wait = None;
                        progress = true;
                    }
                }
            }

            // 5. Close: once everything is flushed, shut the write side down.
            if let Some(reason) = self.session.close_reason() {
                let reason = reason.clone();
                self.start_linger(now);
                if self.out.is_empty() {
                    if self.session.poll_transmit(self.out.fill()) > 0 {
                        progress = true; // write the last bytes first
                    } else {
                        if Pin::new(&mut self.stream).poll_flush(cx).is_pending() {
                            return Poll::Pending;
                        }
                        return match Pin::new(&mut self.stream).poll_close(cx) {
                            Poll::Pending => Poll::Pending,
                            Poll::Ready(_) => Poll::Ready(Ok(reason)),
                        };
                    }
                }
            }

            if !progress {
                return Poll::Pending;
            }
        }
        // Used up the budget: let other tasks run, come back at once.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
