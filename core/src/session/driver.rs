//! The runtime-free part of every TCP driver: the per-connection loop of the
//! [`crate::session`] docs, written once.
//!
//! A [`StreamDriver`] owns what a round needs besides the session and the
//! socket: the read buffer ([`InputBuffer`]), the pending output (a
//! [`TransmitQueue`]: one vectored write of at most [`IOV_MAX`] buffers,
//! partial writes resumed), the media bookkeeping (the signal's epoch read
//! before `handle_media`, owed pulls, the write-merge window), the close
//! linger and the [`DriveConfig`]. An executor adapter implements
//! [`StreamIo`] (a non-blocking stream with readiness, the clock and one
//! timer of its runtime) and polls [`StreamDriver::poll_drive`] from a
//! future. A thread adapter, whose session is shared with a reader thread
//! and which waits differently, calls the steps that do not wait
//! ([`shutdown`](StreamDriver::shutdown),
//! [`input_seen`](StreamDriver::input_seen),
//! [`linger_expired`](StreamDriver::linger_expired),
//! [`timeout`](StreamDriver::timeout),
//! [`fill_transmit`](StreamDriver::fill_transmit),
//! [`media`](StreamDriver::media), [`written`](StreamDriver::written),
//! [`next_deadline`](StreamDriver::next_deadline)) around its own waits.
//!
//! Back-pressure: `handle_media` is called only once the previous write
//! completed (and the write-merge window, if any, passed), so a viewer whose
//! socket is slow falls behind in the engine's ring instead of growing a
//! queue here.
//!
//! [`IOV_MAX`]: crate::transmit_queue::IOV_MAX

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::{CloseReason, StreamSession};
use crate::engine::SignalWait;
use crate::log_limit::LogLimiter;
use crate::time::Instant;
use crate::transmit_queue::TransmitQueue;

/// Settings of one connection driver (every adapter's `drive_stream_with`).
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    /// A connection whose output is pending while its socket accepts no
    /// byte for this long (a player that never reads) is closed with
    /// [`CloseReason::WriteStalled`] and a warning (rate-limited), without
    /// a flush. Default [`DEFAULT_WRITE_STALL_TIMEOUT`] (15 s); zero turns
    /// it off. A slow player that reads a little keeps its connection (and
    /// skips to keyframes in the engine's ring).
    pub write_stall_timeout: Duration,
}
/// Builder-style setters: the struct is `#[non_exhaustive]`, so other
/// crates start from its default (or constructor) value and chain these.
impl DriveConfig {
    /// Sets [`read_buffer`](Self::read_buffer).
    #[must_use]
    pub fn with_read_buffer(mut self, read_buffer: usize) -> Self {
        self.read_buffer = read_buffer;
        self
    }

    /// Sets [`close_linger`](Self::close_linger).
    #[must_use]
    pub fn with_close_linger(mut self, close_linger: Duration) -> Self {
        self.close_linger = close_linger;
        self
    }

    /// Sets [`write_merge`](Self::write_merge).
    #[must_use]
    pub fn with_write_merge(mut self, write_merge: Duration) -> Self {
        self.write_merge = write_merge;
        self
    }

    /// Sets [`write_stall_timeout`](Self::write_stall_timeout).
    #[must_use]
    pub fn with_write_stall_timeout(mut self, write_stall_timeout: Duration) -> Self {
        self.write_stall_timeout = write_stall_timeout;
        self
    }
}

/// Default of [`DriveConfig::write_stall_timeout`].
pub const DEFAULT_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(15);

impl Default for DriveConfig {
    fn default() -> Self {
        DriveConfig {
            read_buffer: 16 * 1024,
            close_linger: Duration::from_secs(5),
            write_merge: Duration::ZERO,
            write_stall_timeout: DEFAULT_WRITE_STALL_TIMEOUT,
        }
    }
}

/// Warnings about peers closed for not reading (a peer can cause them in a
/// flood).
static STALLED: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));

/// Initial read buffer size.
const START_BUF: usize = 2048;

/// Smallest read buffer, whatever [`DriveConfig::read_buffer`] says.
const MIN_BUF: usize = 512;

/// Loop rounds per [`StreamDriver::poll_drive`] before yielding to other
/// tasks (executor fairness).
const BUDGET: usize = 64;

/// The read buffer of one connection: starts at 2 KiB (less if
/// [`DriveConfig::read_buffer`] is smaller) and doubles, up to
/// `read_buffer` (at least 512 bytes), each time a read fills it.
#[derive(Debug)]
pub struct InputBuffer {
    buf: Vec<u8>,
    max: usize,
}

impl InputBuffer {
    /// A buffer that grows up to `max_read` bytes (at least 512).
    pub fn new(max_read: usize) -> Self {
        let max = max_read.max(MIN_BUF);
        InputBuffer {
            buf: vec![0u8; START_BUF.min(max)],
            max,
        }
    }

    /// The space to read into.
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Hands the first `n` bytes read into [`space`](Self::space) to
    /// `session` (`n == 0`: the peer's EOF, handed over as an empty slice),
    /// then grows the buffer if the read filled it. Returns whether it was
    /// the EOF.
    pub fn deliver(&mut self, session: &mut dyn StreamSession, now: Instant, n: usize) -> bool {
        if n == 0 {
            tracing::trace!("peer EOF");
        }
        session.handle_input(now, self.buf.get(..n).unwrap_or_default());
        if n == self.buf.len() && n < self.max {
            self.buf.resize((n * 2).min(self.max), 0);
        }
        n == 0
    }
}

/// What a runtime gives a [`StreamDriver`]: a non-blocking byte stream with
/// readiness, the clock and one timer.
///
/// The I/O methods have the `poll` shape of `AsyncRead`/`AsyncWrite`: each
/// tries the operation without blocking and, if the stream is not ready,
/// registers `cx` for readiness and returns `Pending`. So any stream of an
/// executor (TCP, TLS, a test pipe) plugs in.
pub trait StreamIo {
    /// The current time on the session's clock.
    fn now(&self) -> Instant;
    /// Reads into `buf` without blocking: `Ready(Ok(0))` is the peer's EOF;
    /// `Pending` registers for readability.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Writes a prefix of `bufs` (in order) without blocking and returns how
    /// many bytes it took; `Pending` registers for writability.
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;
    /// Flushes whatever the stream buffers itself.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Shuts the write side down (TCP FIN) once the session is over.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Arms the timer at `at` (called only when the deadline changes).
    fn set_timer(&mut self, at: Instant);
    /// Polls the armed timer.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// Disarms the timer after it fired.
    fn clear_timer(&mut self);
}

/// What [`StreamDriver::media`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaStep {
    /// Not now: output is pending, the merge window runs or the session is
    /// closed.
    Held,
    /// `handle_media` ran: drain `poll_transmit`.
    Pulled,
    /// The media signal moved after the wait was registered: go round again.
    Moved,
    /// Nothing owed; `cx` is registered with the media signal (if any).
    Waiting,
}

/// The state of one connection's loop around a [`StreamSession`]; the
/// session itself is passed to each step (a thread adapter shares it with
/// its reader thread under a lock).
pub struct StreamDriver {
    config: DriveConfig,
    input: InputBuffer,
    out: TransmitQueue,
    read_closed: bool,
    /// `handle_media` is owed: a write completed or input/timers ran.
    media_due: bool,
    /// The media signal's epoch read before the last `handle_media`.
    media_seen: Option<u64>,
    /// The wait registered with the media signal, from `media_seen`.
    media_wait: Option<SignalWait>,
    timer_at: Option<Instant>,
    /// Give up flushing / waiting for the session to close after this.
    linger_until: Option<Instant>,
    shutdown_seen: bool,
    /// With write merging: no `handle_media` before this.
    media_not_before: Option<Instant>,
    /// Since when output has been pending with no byte of it accepted
    /// (`None`: nothing pending).
    stalled_since: Option<Instant>,
}

impl std::fmt::Debug for StreamDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamDriver")
            .field("config", &self.config)
            .field("pending", &!self.out.is_empty())
            .field("read_closed", &self.read_closed)
            .field("linger_until", &self.linger_until)
            .finish_non_exhaustive()
    }
}

impl StreamDriver {
    /// A driver with `config`; `handle_media` is owed from the start.
    pub fn new(config: &DriveConfig) -> Self {
        StreamDriver {
            input: InputBuffer::new(config.read_buffer),
            config: config.clone(),
            out: TransmitQueue::default(),
            read_closed: false,
            media_due: true,
            media_seen: None,
            media_wait: None,
            timer_at: None,
            linger_until: None,
            shutdown_seen: false,
            media_not_before: None,
            stalled_since: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &DriveConfig {
        &self.config
    }

    fn start_linger(&mut self, now: Instant) {
        if self.linger_until.is_none() {
            self.linger_until = Some(now + self.config.close_linger);
        }
    }

    /// Server shutdown (once): asks the session to end unless it already
    /// did, and gives it the close linger to flush its goodbye.
    pub fn shutdown(&mut self, session: &mut dyn StreamSession, now: Instant) {
        if self.shutdown_seen {
            return;
        }
        self.shutdown_seen = true;
        if session.close_reason().is_none() {
            session.close(now);
        }
        self.start_linger(now);
    }

    /// Input reached the session elsewhere (a reader thread's
    /// [`InputBuffer::deliver`]): `handle_media` is owed, and after the
    /// peer's EOF (`read_closed`) the close linger starts.
    pub fn input_seen(&mut self, read_closed: bool, now: Instant) {
        self.media_due = true;
        if read_closed {
            self.read_closed = true;
            self.start_linger(now);
        }
    }

    /// The close linger: once it passed, a closed session is given up on
    /// (`Some(reason)`: drop the transport, logged), an open one (the peer
    /// sent EOF but the session goes on) is closed and gets one more linger.
    pub fn linger_expired(
        &mut self,
        session: &mut dyn StreamSession,
        now: Instant,
    ) -> Option<CloseReason> {
        let limit = self.linger_until?;
        if now < limit {
            return None;
        }
        match session.close_reason() {
            Some(reason) => {
                tracing::debug!(%reason, "gave up flushing a closed session");
                Some(reason.clone())
            }
            None => {
                tracing::debug!("session still open after peer EOF; closing it");
                session.close(now);
                self.linger_until = Some(now + self.config.close_linger);
                None
            }
        }
    }

    /// The session's deadline: `handle_timeout` if it passed (`true`).
    pub fn timeout(&mut self, session: &mut dyn StreamSession, now: Instant) -> bool {
        if session.poll_timeout().is_some_and(|at| at <= now) {
            session.handle_timeout(now);
            self.media_due = true;
            return true;
        }
        false
    }

    /// Drains `poll_transmit` into the pending output if nothing is pending
    /// (the bytes of one write never interleave with the next); returns how
    /// many bytes were added.
    pub fn fill_transmit(&mut self, session: &mut dyn StreamSession) -> usize {
        if self.out.is_empty() {
            let n = session.poll_transmit(self.out.fill());
            // Empty buffers would make an all-empty vectored write (0
            // bytes, read as `WriteZero`): never queue them. Output that
            // was all empty counts as a write completed at once (media is
            // owed again), else the session would wait for a write that
            // never comes.
            let bufs = self.out.fill();
            let polled = !bufs.is_empty();
            bufs.retain(|b| !b.is_empty());
            if polled && bufs.is_empty() {
                self.media_due = true;
            }
            n
        } else {
            0
        }
    }

    /// Notes at `now` whether output is pending, for the write-stall
    /// deadline: call after [`fill_transmit`](Self::fill_transmit) (the
    /// stall clock starts when output appears and restarts with every byte
    /// written, see [`written`](Self::written)).
    pub fn note_output(&mut self, now: Instant) {
        if self.out.is_empty() {
            self.stalled_since = None;
        } else if self.stalled_since.is_none() {
            self.stalled_since = Some(now);
        }
    }

    /// `Some(CloseReason::WriteStalled)` (and a rate-limited warning) once
    /// output has been pending for [`DriveConfig::write_stall_timeout`]
    /// with no byte of it written: the caller drops the transport.
    pub fn write_stalled(&mut self, now: Instant) -> Option<CloseReason> {
        let since = self.stalled_since?;
        let limit = self.config.write_stall_timeout;
        if limit.is_zero() || now < since + limit {
            return None;
        }
        if let Some(suppressed) = STALLED.check(now) {
            tracing::warn!(
                suppressed,
                pending = self.out.len_bytes(),
                stalled = ?limit,
                "peer reads nothing: closing"
            );
        }
        Some(CloseReason::WriteStalled(limit))
    }

    /// Whether output waits to be written.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// The pending output for one vectored write (at most
    /// [`IOV_MAX`](crate::transmit_queue::IOV_MAX) buffers, in order).
    pub fn io_slices(&self) -> smallvec::SmallVec<[IoSlice<'_>; 64]> {
        self.out.io_slices()
    }

    /// The write-merge window to start after a completed write: zero unless
    /// the session plays a stream, else the larger of
    /// [`DriveConfig::write_merge`] and the session's own.
    pub fn merge_window(&self, session: &dyn StreamSession) -> Duration {
        if session.media_signal().is_none() {
            return Duration::ZERO;
        }
        self.config.write_merge.max(session.write_merge())
    }

    /// `n` bytes of the pending output were written at `now`. Returns
    /// whether the write completed: then `handle_media` is owed, not before
    /// `now + merge` (see [`merge_window`](Self::merge_window)).
    pub fn written(&mut self, n: usize, now: Instant, merge: Duration) -> bool {
        if n > 0 {
            self.stalled_since = Some(now);
        }
        if !self.out.advance(n) {
            return false;
        }
        self.stalled_since = None;
        self.write_completed(now, merge);
        true
    }

    fn write_completed(&mut self, now: Instant, merge: Duration) {
        self.media_due = true;
        if !merge.is_zero() {
            self.media_not_before = Some(now + merge);
        }
    }

    /// Media, only once the previous write completed and the merge window
    /// passed, and while the session is open: `handle_media` if it is owed
    /// or the media signal moved since the epoch read before the last call
    /// (read first, so no wake-up is lost); else registers `cx` with the
    /// signal.
    pub fn media(
        &mut self,
        cx: &mut Context<'_>,
        session: &mut dyn StreamSession,
        now: Instant,
    ) -> MediaStep {
        if self.media_not_before.is_some_and(|t| now >= t) {
            self.media_not_before = None;
        }
        if !self.out.is_empty()
            || session.close_reason().is_some()
            || self.media_not_before.is_some()
        {
            return MediaStep::Held;
        }
        let signal = session.media_signal();
        let epoch = signal.as_ref().map(|s| s.epoch());
        if self.media_due || (epoch.is_some() && epoch != self.media_seen) {
            self.media_due = false;
            self.media_seen = epoch;
            self.media_wait = None;
            session.handle_media(now);
            return MediaStep::Pulled;
        }
        if let (Some(signal), Some(seen)) = (signal, epoch) {
            // Kept across polls: re-polling the same wait does not
            // re-register, dropping it unregisters.
            let wait = self.media_wait.get_or_insert_with(|| signal.wait(seen));
            if Pin::new(wait).poll(cx).is_ready() {
                self.media_wait = None;
                return MediaStep::Moved;
            }
        }
        MediaStep::Waiting
    }

    /// The earliest of the session's deadline, the close linger's end and
    /// the end of the write-merge window.
    pub fn next_deadline(&self, session: &dyn StreamSession) -> Option<Instant> {
        [
            session.poll_timeout(),
            self.linger_until,
            self.media_not_before,
            self.stalled_since
                .filter(|_| !self.config.write_stall_timeout.is_zero())
                .map(|t| t + self.config.write_stall_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The session is over (`Some(reason)`): starts the close linger (its
    /// last bytes must leave within it).
    pub fn closing(&mut self, session: &dyn StreamSession, now: Instant) -> Option<CloseReason> {
        let reason = session.close_reason()?.clone();
        self.start_linger(now);
        Some(reason)
    }

    /// Step 1 on an executor: one read into the session. `Err` ends the
    /// connection (the session saw EOF first).
    fn read<S: StreamIo + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        session: &mut dyn StreamSession,
        io: &mut S,
        now: Instant,
    ) -> io::Result<bool> {
        if self.read_closed || session.close_reason().is_some() {
            return Ok(false);
        }
        match io.poll_read(cx, self.input.space()) {
            Poll::Ready(Ok(n)) => {
                let eof = self.input.deliver(session, now, n);
                self.input_seen(eof, now);
                Ok(true)
            }
            Poll::Ready(Err(e)) => {
                self.read_closed = true;
                session.handle_input(now, &[]);
                Err(e)
            }
            Poll::Pending => Ok(false),
        }
    }

    /// Step 3 on an executor: writes the pending output until it is all
    /// written or the stream is not ready.
    fn write<S: StreamIo + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        session: &mut dyn StreamSession,
        io: &mut S,
        now: Instant,
    ) -> io::Result<bool> {
        let mut progress = false;
        while !self.out.is_empty() {
            let polled = io.poll_write_vectored(cx, &self.out.io_slices());
            match polled {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.stalled_since = Some(now);
                    if self.out.advance(n) {
                        // The previous write completed: more media may go.
                        self.stalled_since = None;
                        let merge = self.merge_window(session);
                        self.write_completed(now, merge);
                    }
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
        }
        Ok(progress)
    }

    /// Drives the connection on an executor until the session is closed and
    /// flushed (`Ok(reason)`, after the write side was shut down), the close
    /// linger passed (`Ok(reason)`, logged) or the transport failed (`Err`).
    ///
    /// Each round: shutdown → read → linger and deadline → timer → write
    /// (one vectored write, resumed while the stream takes more) → media
    /// (only once the write completed) → close; at most a budget of rounds
    /// per poll.
    pub fn poll_drive<S: StreamIo + ?Sized, F: Future<Output = ()> + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        session: &mut dyn StreamSession,
        io: &mut S,
        mut shutdown: Pin<&mut F>,
    ) -> Poll<io::Result<CloseReason>> {
        for _ in 0..BUDGET {
            let now = io.now();
            let mut progress = false;

            // Server shutdown: ask the session to end, give it the linger to flush.
            if !self.shutdown_seen && shutdown.as_mut().poll(cx).is_ready() {
                self.shutdown(session, now);
                progress = true;
            }

            // 1. Input.
            match self.read(cx, session, io, now) {
                Ok(p) => progress |= p,
                Err(e) => return Poll::Ready(Err(e)),
            }

            // 2. Deadlines: the linger of a closing session, the session's.
            if let Some(reason) = self.linger_expired(session, now) {
                return Poll::Ready(Ok(reason));
            }
            progress |= self.timeout(session, now);
            if let Some(at) = self.next_deadline(session) {
                if self.timer_at != Some(at) {
                    self.timer_at = Some(at);
                    io.set_timer(at);
                }
                if io.poll_timer(cx).is_ready() {
                    // Fires at or after `at`; the next round sees it due.
                    self.timer_at = None;
                    io.clear_timer();
                    progress = true;
                }
            }

            // 3. Output: everything pending in one vectored write.
            self.fill_transmit(session);
            self.note_output(now);
            match self.write(cx, session, io, now) {
                Ok(p) => progress |= p,
                Err(e) => return Poll::Ready(Err(e)),
            }
            // A peer that accepts nothing for the stall timeout is dropped
            // (a closing session's flush is bounded by the linger instead).
            if session.close_reason().is_none() {
                if let Some(reason) = self.write_stalled(now) {
                    return Poll::Ready(Ok(reason));
                }
            }

            // 4. Media, only once the previous write completed (backpressure).
            progress |= matches!(
                self.media(cx, session, now),
                MediaStep::Pulled | MediaStep::Moved
            );

            // 5. Close: once everything is flushed, shut the write side down.
            if let Some(reason) = self.closing(session, now) {
                if self.out.is_empty() {
                    if self.fill_transmit(session) > 0 {
                        progress = true; // write the last bytes first
                    } else {
                        if io.poll_flush(cx).is_pending() {
                            return Poll::Pending;
                        }
                        return match io.poll_shutdown(cx) {
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

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]
    use super::*;
    use crate::engine::Signal;
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Wake, Waker};

    /// What the session transmitted and what the socket accepted, shared.
    #[derive(Default)]
    struct Wire {
        transmitted: Vec<u8>,
        accepted: Vec<u8>,
        /// `handle_media` found output not yet accepted by the socket.
        media_before_written: bool,
        media_calls: usize,
        input: Vec<Vec<u8>>,
    }

    struct Session {
        wire: Arc<Mutex<Wire>>,
        /// Media the session pulls, a few chunks per `handle_media`.
        source: VecDeque<Bytes>,
        per_pull: usize,
        pending: Vec<Bytes>,
        closed: Option<CloseReason>,
        /// Close once the source is drained.
        close_when_drained: bool,
        signal: Option<Signal>,
        goodbye: &'static [u8],
    }

    impl Session {
        fn new(wire: &Arc<Mutex<Wire>>) -> Self {
            Session {
                wire: wire.clone(),
                source: VecDeque::new(),
                per_pull: 1,
                pending: Vec::new(),
                closed: None,
                close_when_drained: false,
                signal: None,
                goodbye: b"bye",
            }
        }

        fn close_with(&mut self, reason: CloseReason) {
            if self.closed.is_none() {
                self.closed = Some(reason);
                self.pending.push(Bytes::from_static(self.goodbye));
            }
        }
    }

    impl StreamSession for Session {
        fn handle_input(&mut self, _: Instant, data: &[u8]) {
            self.wire.lock().unwrap().input.push(data.to_vec());
            if data.is_empty() {
                self.close_with(CloseReason::PeerClosed);
            } else {
                self.pending.push(Bytes::copy_from_slice(data)); // echo
            }
        }
        fn handle_timeout(&mut self, _: Instant) {}
        fn handle_media(&mut self, _: Instant) {
            let mut wire = self.wire.lock().unwrap();
            wire.media_calls += 1;
            if wire.accepted.len() != wire.transmitted.len() {
                wire.media_before_written = true;
            }
            drop(wire);
            for _ in 0..self.per_pull {
                match self.source.pop_front() {
                    Some(b) => self.pending.push(b),
                    None => break,
                }
            }
            if self.source.is_empty() && self.close_when_drained {
                self.close_with(CloseReason::LocalShutdown);
            }
        }
        fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize {
            let mut wire = self.wire.lock().unwrap();
            let mut n = 0;
            for b in self.pending.drain(..) {
                wire.transmitted.extend_from_slice(&b);
                n += b.len();
                out.push(b);
            }
            n
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
        fn media_signal(&self) -> Option<Signal> {
            self.signal.clone()
        }
        fn close_reason(&self) -> Option<&CloseReason> {
            self.closed.as_ref()
        }
        fn close(&mut self, _: Instant) {
            self.close_with(CloseReason::LocalShutdown);
        }
    }

    enum Read {
        Data(Vec<u8>),
        Block,
        Fail,
    }

    struct Io {
        wire: Arc<Mutex<Wire>>,
        now: Instant,
        reads: VecDeque<Read>,
        /// Bytes accepted by successive writes, cycled; 0 is `WouldBlock`.
        accept: Vec<usize>,
        writes: usize,
        shut: bool,
        timer: Option<Instant>,
    }

    impl Io {
        fn new(wire: &Arc<Mutex<Wire>>, accept: Vec<usize>) -> Self {
            Io {
                wire: wire.clone(),
                now: Instant::from_duration(Duration::from_secs(1)),
                reads: VecDeque::new(),
                accept,
                writes: 0,
                shut: false,
                timer: None,
            }
        }
    }

    impl StreamIo for Io {
        fn now(&self) -> Instant {
            self.now
        }
        fn poll_read(&mut self, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
            match self.reads.pop_front() {
                None | Some(Read::Block) => Poll::Pending,
                Some(Read::Fail) => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
                Some(Read::Data(d)) => {
                    let n = d.len().min(buf.len());
                    buf[..n].copy_from_slice(&d[..n]);
                    if n < d.len() {
                        self.reads.push_front(Read::Data(d[n..].to_vec()));
                    }
                    Poll::Ready(Ok(n))
                }
            }
        }
        fn poll_write_vectored(
            &mut self,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            assert!(bufs.len() <= crate::transmit_queue::IOV_MAX);
            let room = self.accept[self.writes % self.accept.len()];
            self.writes += 1;
            if room == 0 {
                return Poll::Pending;
            }
            let mut wire = self.wire.lock().unwrap();
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(room - n);
                wire.accepted.extend_from_slice(&b[..take]);
                n += take;
                if n == room {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }
        fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
        fn set_timer(&mut self, at: Instant) {
            self.timer = Some(at);
        }
        fn poll_timer(&mut self, _: &mut Context<'_>) -> Poll<()> {
            match self.timer {
                Some(at) if self.now >= at => Poll::Ready(()),
                _ => Poll::Pending,
            }
        }
        fn clear_timer(&mut self) {
            self.timer = None;
        }
    }

    #[derive(Default)]
    struct CountWaker(AtomicUsize);
    impl Wake for CountWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Polls until `Ready` (at most `polls` times; `Pending` stands for
    /// readiness that arrives before the next poll).
    fn drive(
        driver: &mut StreamDriver,
        session: &mut Session,
        io: &mut Io,
        polls: usize,
    ) -> Option<io::Result<CloseReason>> {
        let waker = Waker::from(Arc::new(CountWaker::default()));
        let mut cx = Context::from_waker(&waker);
        let mut shutdown = std::pin::pin!(std::future::pending::<()>());
        for _ in 0..polls {
            if let Poll::Ready(r) = driver.poll_drive(&mut cx, session, io, shutdown.as_mut()) {
                return Some(r);
            }
        }
        None
    }

    fn chunks(sizes: &[usize]) -> VecDeque<Bytes> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Bytes::from(vec![i as u8; n]))
            .collect()
    }

    proptest! {
        /// Whatever the socket accepts per call (partial writes,
        /// `WouldBlock`), the bytes written are the bytes transmitted, in
        /// order, and media is pulled only once the previous write completed;
        /// empty buffers from the session never turn into a zero-byte write.
        #[test]
        fn written_bytes_equal_transmitted_bytes_in_order(
            accept in proptest::collection::vec(0usize..300, 1..12)
                .prop_filter("some progress", |a| a.iter().any(|&n| n > 0)),
            sizes in proptest::collection::vec(0usize..700, 0..40),
            per_pull in 1usize..5,
        ) {
            let wire = Arc::new(Mutex::new(Wire::default()));
            let mut session = Session::new(&wire);
            session.source = chunks(&sizes);
            session.per_pull = per_pull;
            session.close_when_drained = true;
            let mut io = Io::new(&wire, accept);
            let mut driver = StreamDriver::new(&DriveConfig::default());
            let r = drive(&mut driver, &mut session, &mut io, 100_000);
            prop_assert_eq!(r.unwrap().unwrap(), CloseReason::LocalShutdown);
            prop_assert!(io.shut);
            let wire = wire.lock().unwrap();
            let mut expected: Vec<u8> = chunks(&sizes).iter().flat_map(|b| b.to_vec()).collect();
            expected.extend_from_slice(b"bye");
            prop_assert_eq!(&wire.transmitted, &expected);
            prop_assert_eq!(&wire.accepted, &expected);
            prop_assert!(!wire.media_before_written);
        }
    }

    #[test]
    fn many_small_buffers_go_out_in_writes_of_at_most_iov_max() {
        let wire = Arc::new(Mutex::new(Wire::default()));
        let mut session = Session::new(&wire);
        session.source = chunks(&[1; 3000]);
        session.per_pull = 3000;
        session.close_when_drained = true;
        let mut io = Io::new(&wire, vec![usize::MAX]);
        let mut driver = StreamDriver::new(&DriveConfig::default());
        let r = drive(&mut driver, &mut session, &mut io, 100);
        assert_eq!(r.unwrap().unwrap(), CloseReason::LocalShutdown);
        // 3000 one-byte buffers and "bye": writes of 1024, 1024 and 953.
        assert_eq!(io.writes, 3);
        assert_eq!(wire.lock().unwrap().accepted.len(), 3003);
    }

    #[test]
    fn input_after_would_block_then_eof_closes_and_flushes() {
        let wire = Arc::new(Mutex::new(Wire::default()));
        let mut session = Session::new(&wire);
        let mut io = Io::new(&wire, vec![2, 0, 5]);
        io.reads = VecDeque::from([
            Read::Block,
            Read::Data(b"hello".to_vec()),
            Read::Block,
            Read::Data(vec![7; 5000]),
            Read::Data(Vec::new()),
        ]);
        let mut driver = StreamDriver::new(&DriveConfig {
            read_buffer: 4096,
            ..DriveConfig::default()
        });
        let r = drive(&mut driver, &mut session, &mut io, 10_000);
        assert_eq!(r.unwrap().unwrap(), CloseReason::PeerClosed);
        assert!(io.shut);
        let wire = wire.lock().unwrap();
        // The buffer starts at 2 KiB and doubles up to the configured 4 KiB.
        let sizes: Vec<usize> = wire.input.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![5, 2048, 2952, 0]);
        let mut expected = b"hello".to_vec();
        expected.extend_from_slice(&[7; 5000]);
        expected.extend_from_slice(b"bye");
        assert_eq!(wire.accepted, expected);
    }

    #[test]
    fn a_read_error_ends_the_connection_after_the_session_saw_eof() {
        let wire = Arc::new(Mutex::new(Wire::default()));
        let mut session = Session::new(&wire);
        let mut io = Io::new(&wire, vec![usize::MAX]);
        io.reads = VecDeque::from([Read::Fail]);
        let mut driver = StreamDriver::new(&DriveConfig::default());
        let r = drive(&mut driver, &mut session, &mut io, 10).unwrap();
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(wire.lock().unwrap().input, vec![Vec::<u8>::new()]);
    }

    #[test]
    fn a_stalled_close_flush_is_given_up_after_the_linger() {
        let wire = Arc::new(Mutex::new(Wire::default()));
        let mut session = Session::new(&wire);
        session.closed = Some(CloseReason::IdleTimeout);
        session.pending.push(Bytes::from_static(b"last words"));
        let mut io = Io::new(&wire, vec![0]); // the peer never reads
        let linger = Duration::from_secs(5);
        let mut driver = StreamDriver::new(&DriveConfig {
            close_linger: linger,
            ..DriveConfig::default()
        });
        assert!(drive(&mut driver, &mut session, &mut io, 10).is_none());
        // Within the linger: still trying; the timer is armed at its end.
        assert_eq!(io.timer, Some(io.now + linger));
        io.now += linger - Duration::from_millis(1);
        assert!(drive(&mut driver, &mut session, &mut io, 10).is_none());
        io.now += Duration::from_millis(1);
        let r = drive(&mut driver, &mut session, &mut io, 10).unwrap();
        assert_eq!(r.unwrap(), CloseReason::IdleTimeout);
        assert!(!io.shut);
    }

    /// Issue 14 item 5: a peer whose socket accepts no byte of pending
    /// output for the stall timeout is dropped (no flush, no FIN); the
    /// deadline is armed on the timer.
    #[test]
    fn a_peer_that_reads_nothing_is_dropped_after_the_stall_timeout() {
        let wire = Arc::new(Mutex::new(Wire::default()));
        let mut session = Session::new(&wire);
        session.pending.push(Bytes::from_static(b"media"));
        let mut io = Io::new(&wire, vec![0]); // the peer never reads
        let stall = Duration::from_secs(2);
        let mut driver = StreamDriver::new(&DriveConfig {
            write_stall_timeout: stall,
            ..DriveConfig::default()
        });
        assert!(drive(&mut driver, &mut session, &mut io, 10).is_none());
        assert_eq!(io.timer, Some(io.now + stall));
        io.now += stall - Duration::from_millis(1);
        assert!(drive(&mut driver, &mut session, &mut io, 10).is_none());
        io.now += Duration::from_millis(1);
        let r = drive(&mut driver, &mut session, &mut io, 10).unwrap();
        assert_eq!(r.unwrap(), CloseReason::WriteStalled(stall));
        assert!(!io.shut);
        // Zero turns it off.
        let mut session = Session::new(&wire);
        session.pending.push(Bytes::from_static(b"media"));
        let mut driver = StreamDriver::new(&DriveConfig {
            write_stall_timeout: Duration::ZERO,
            ..DriveConfig::default()
        });
        io.now += Duration::from_secs(3600);
        assert!(drive(&mut driver, &mut session, &mut io, 10).is_none());
        io.now += Duration::from_secs(3600);
        assert!(drive(&mut driver, &mut session, &mut io, 10).is_none());
    }

    /// A slow peer that takes a byte now and then is not a stalled one.
    #[test]
    fn a_slow_reader_is_not_dropped() {
        let wire = Arc::new(Mutex::new(Wire::default()));
        let mut session = Session::new(&wire);
        session.pending.push(Bytes::from(vec![1u8; 100]));
        let mut io = Io::new(&wire, vec![1, 0]);
        let mut driver = StreamDriver::new(&DriveConfig {
            write_stall_timeout: Duration::from_secs(2),
            ..DriveConfig::default()
        });
        for _ in 0..50 {
            assert!(drive(&mut driver, &mut session, &mut io, 1).is_none());
            io.now += Duration::from_millis(1500);
        }
        assert!(wire.lock().unwrap().accepted.len() >= 50);
    }

    #[test]
    fn the_close_flush_within_the_linger_shuts_the_write_side() {
        let wire = Arc::new(Mutex::new(Wire::default()));
        let mut session = Session::new(&wire);
        session.close(Instant::ZERO);
        let mut io = Io::new(&wire, vec![0, 0, 1]);
        let mut driver = StreamDriver::new(&DriveConfig::default());
        let r = drive(&mut driver, &mut session, &mut io, 100).unwrap();
        assert_eq!(r.unwrap(), CloseReason::LocalShutdown);
        assert!(io.shut);
        assert_eq!(wire.lock().unwrap().accepted, b"bye");
    }

    #[test]
    fn the_media_signal_wakes_the_driver_and_media_waits_for_the_write() {
        let wire = Arc::new(Mutex::new(Wire::default()));
        let mut session = Session::new(&wire);
        let signal = Signal::new();
        session.signal = Some(signal.clone());
        let mut io = Io::new(&wire, vec![0, 3]);
        let mut driver = StreamDriver::new(&DriveConfig::default());
        let woken = Arc::new(CountWaker::default());
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let mut shutdown = std::pin::pin!(std::future::pending::<()>());
        // The first round owes `handle_media`; then the driver waits.
        assert!(driver
            .poll_drive(&mut cx, &mut session, &mut io, shutdown.as_mut())
            .is_pending());
        assert_eq!(wire.lock().unwrap().media_calls, 1);
        assert_eq!(woken.0.load(Ordering::SeqCst), 0);
        // A frame arrives: the waker fires, the next poll pulls it.
        session.source = chunks(&[10]);
        signal.notify();
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        for _ in 0..20 {
            let _ = driver.poll_drive(&mut cx, &mut session, &mut io, shutdown.as_mut());
        }
        let w = wire.lock().unwrap();
        assert_eq!(w.accepted, vec![0; 10]);
        assert!(!w.media_before_written);
        // One pull for the frame, one after its write completed.
        assert_eq!(w.media_calls, 3);
    }

    #[test]
    fn write_merge_holds_media_back_after_a_completed_write() {
        let wire = Arc::new(Mutex::new(Wire::default()));
        let mut session = Session::new(&wire);
        session.signal = Some(Signal::new());
        session.source = chunks(&[4]);
        let mut io = Io::new(&wire, vec![usize::MAX]);
        let merge = Duration::from_millis(200);
        let mut driver = StreamDriver::new(&DriveConfig {
            write_merge: merge,
            ..DriveConfig::default()
        });
        let start = io.now;
        assert!(drive(&mut driver, &mut session, &mut io, 5).is_none());
        assert_eq!(wire.lock().unwrap().media_calls, 1);
        assert_eq!(io.timer, Some(start + merge));
        io.now += merge;
        assert!(drive(&mut driver, &mut session, &mut io, 5).is_none());
        assert_eq!(wire.lock().unwrap().media_calls, 2);
    }

    #[test]
    fn shutdown_closes_the_session_and_starts_the_linger() {
        let wire = Arc::new(Mutex::new(Wire::default()));
        let mut session = Session::new(&wire);
        let mut io = Io::new(&wire, vec![usize::MAX]);
        let mut driver = StreamDriver::new(&DriveConfig::default());
        let waker = Waker::from(Arc::new(CountWaker::default()));
        let mut cx = Context::from_waker(&waker);
        let mut shutdown = std::pin::pin!(std::future::ready(()));
        match driver.poll_drive(&mut cx, &mut session, &mut io, shutdown.as_mut()) {
            Poll::Ready(Ok(reason)) => assert_eq!(reason, CloseReason::LocalShutdown),
            other => panic!("{other:?}"),
        }
        assert!(io.shut);
        assert_eq!(wire.lock().unwrap().accepted, b"bye");
    }
}
