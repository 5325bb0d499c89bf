//! The runtime-free part of every UDP driver: the rounds of the loop in the
//! [`crate::datagram`] docs, written once.
//!
//! A [`DatagramDriver`] owns what a round needs besides the socket: the
//! service, the [`SignalSet`] of played streams, a datagram parked on a full
//! socket buffer, the closing deadline and the [`UdpConfig`]. An executor
//! adapter implements [`DatagramIo`] (non-blocking socket, readiness, clock
//! and one timer of its runtime) and polls [`DatagramDriver::poll_drive`]
//! from a future. A thread adapter, which waits differently, calls the
//! steps that do not wait ([`close`](DatagramDriver::close),
//! [`finished`](DatagramDriver::finished),
//! [`media_and_timeout`](DatagramDriver::media_and_timeout),
//! [`poll_transmit`](DatagramDriver::poll_transmit),
//! [`next_deadline`](DatagramDriver::next_deadline)) around its own waits.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{DatagramService, Transmit};
use crate::engine::{Signal, SignalSet};
use crate::time::Instant;

/// Settings of a UDP driver (`serve_udp_with` of every adapter).
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// Largest datagram received; longer ones are truncated by the kernel
    /// (and then rejected by the protocol). SRT packets are at most 1500.
    pub max_datagram: usize,
    /// Most datagrams read per round before the driver turns to timers,
    /// media and sending (fairness between input and output).
    pub read_batch: usize,
    /// Most datagrams sent per round before reading again.
    pub send_batch: usize,
    /// Thread drivers only: datagrams the reader thread may queue for the
    /// service thread.
    pub queue: usize,
    /// `SO_RCVBUF` and `SO_SNDBUF` to ask for (the kernel may cap them:
    /// `net.core.rmem_max` / `wmem_max` on Linux; the driver logs it).
    /// Zero leaves the system defaults.
    pub socket_buffer: usize,
    /// After shutdown: how long the service may take to say goodbye (e.g.
    /// SRT SHUTDOWN to every peer) before the driver stops anyway.
    pub close_linger: Duration,
    /// Thread drivers only: stack size of the reader thread.
    pub thread_stack: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            max_datagram: 2048,
            read_batch: 64,
            send_batch: 256,
            queue: 4096,
            socket_buffer: 8 * 1024 * 1024,
            close_linger: Duration::from_secs(2),
            thread_stack: 256 * 1024,
        }
    }
}

impl UdpConfig {
    /// The settings with every bound made usable: `max_datagram` within
    /// 64..=65 536, batches and queue at least one.
    pub fn normalized(&self) -> Self {
        let mut c = self.clone();
        c.max_datagram = c.max_datagram.clamp(64, 65_536);
        c.read_batch = c.read_batch.max(1);
        c.send_batch = c.send_batch.max(1);
        c.queue = c.queue.max(1);
        c
    }
}

/// Receive arena block: datagrams are read into one block and split off as
/// `Bytes`; a new block is started when the current one is used up.
const ARENA: usize = 64 * 1024;

/// Loop rounds per [`DatagramDriver::poll_drive`] before yielding to other
/// tasks (executor fairness).
const BUDGET: usize = 32;

/// Zero-copy receive buffer: each datagram is received into a shared block
/// and handed over as a `Bytes` slice of it.
#[derive(Debug)]
pub struct RecvArena {
    buf: BytesMut,
    max: usize,
}

impl RecvArena {
    /// An arena for datagrams of at most `max_datagram` bytes (clamped to
    /// 64..=65 536).
    pub fn new(max_datagram: usize) -> Self {
        RecvArena {
            buf: BytesMut::new(),
            max: max_datagram.clamp(64, 65_536),
        }
    }

    /// Runs `recv` on a `max_datagram`-byte buffer and splits off the
    /// `n` bytes it reports as a datagram from the returned source.
    pub fn recv_with(
        &mut self,
        recv: impl FnOnce(&mut [u8]) -> io::Result<(usize, SocketAddr)>,
    ) -> io::Result<(SocketAddr, Bytes)> {
        if self.buf.capacity() < self.max {
            self.buf = BytesMut::with_capacity(ARENA.max(self.max));
        }
        self.buf.resize(self.max, 0);
        match recv(&mut self.buf) {
            Ok((n, src)) => {
                self.buf.truncate(n);
                Ok((src, self.buf.split().freeze()))
            }
            Err(e) => {
                self.buf.clear();
                Err(e)
            }
        }
    }

    /// [`recv_with`](Self::recv_with) on a non-blocking socket: `Ok(None)`
    /// on `WouldBlock`.
    pub fn try_recv_with(
        &mut self,
        recv: impl FnOnce(&mut [u8]) -> io::Result<(usize, SocketAddr)>,
    ) -> io::Result<Option<(SocketAddr, Bytes)>> {
        match self.recv_with(recv) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// What a runtime gives a [`DatagramDriver`]: a non-blocking UDP socket,
/// its readiness, the clock and one timer.
pub trait DatagramIo {
    /// The current time on the service's clock.
    fn now(&self) -> Instant;
    /// One datagram if one is ready (`Ok(None)` on `WouldBlock`).
    fn try_recv(&mut self) -> io::Result<Option<(SocketAddr, Bytes)>>;
    /// Registers for readability; ready if the socket became readable.
    fn poll_recv_ready(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// Sends one datagram without blocking. `WouldBlock`/`Interrupted`
    /// park it until [`poll_send_ready`](Self::poll_send_ready); any other
    /// error drops it like network loss.
    fn try_send(&mut self, transmit: &Transmit) -> io::Result<()>;
    /// Registers for writability; ready if the socket became writable.
    fn poll_send_ready(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// Arms the timer at `at` (called only when the deadline changes).
    fn set_timer(&mut self, at: Instant);
    /// Polls the armed timer.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// Disarms the timer after it fired.
    fn clear_timer(&mut self);
}

/// The state of one UDP driver loop around a [`DatagramService`].
pub struct DatagramDriver<'a> {
    service: &'a mut dyn DatagramService,
    config: UdpConfig,
    /// A datagram that met a full socket buffer, sent once writable.
    parked: Option<Transmit>,
    signals: Vec<Signal>,
    armed: SignalSet,
    timer_at: Option<Instant>,
    closing_until: Option<Instant>,
}

impl std::fmt::Debug for DatagramDriver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramDriver")
            .field("config", &self.config)
            .field("parked", &self.parked.is_some())
            .field("signals", &self.armed.len())
            .field("closing_until", &self.closing_until)
            .finish_non_exhaustive()
    }
}

impl<'a> DatagramDriver<'a> {
    /// A driver for `service` with `config` ([`UdpConfig::normalized`]).
    pub fn new(service: &'a mut dyn DatagramService, config: &UdpConfig) -> Self {
        DatagramDriver {
            service,
            config: config.normalized(),
            parked: None,
            signals: Vec::new(),
            armed: SignalSet::new(),
            timer_at: None,
            closing_until: None,
        }
    }

    /// The normalized settings.
    pub fn config(&self) -> &UdpConfig {
        &self.config
    }

    /// The driven service (to feed it datagrams read elsewhere).
    pub fn service(&mut self) -> &mut dyn DatagramService {
        &mut *self.service
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closing(&self) -> bool {
        self.closing_until.is_some()
    }

    /// Shutdown: closes the service and starts the close linger.
    pub fn close(&mut self, now: Instant) {
        self.service.close(now);
        self.closing_until = Some(now + self.config.close_linger);
    }

    /// `true` when the loop must stop: the service is closed, or the close
    /// linger passed (logged).
    pub fn finished(&self, now: Instant) -> bool {
        if self.service.is_closed() {
            return true;
        }
        if self.closing_until.is_some_and(|t| now >= t) {
            tracing::debug!("the service did not finish closing within the linger");
            return true;
        }
        false
    }

    /// Steps 2 and 3 of the loop: `handle_media` if a media signal moved or
    /// the set of played streams changed (epochs armed first), then
    /// `handle_timeout` if the deadline passed. `true` if either ran.
    pub fn media_and_timeout(&mut self, now: Instant) -> bool {
        let mut progress = false;
        self.signals.clear();
        self.service.media_signals(&mut self.signals);
        if self.armed.changed(&self.signals) {
            self.armed.arm(&self.signals);
            self.service.handle_media(now);
            progress = true;
        }
        if self.service.poll_timeout().is_some_and(|at| at <= now) {
            self.service.handle_timeout(now);
            progress = true;
        }
        progress
    }

    /// The next datagram to send: the parked one first, in order.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.parked.take().or_else(|| self.service.poll_transmit())
    }

    /// Ready once a media signal moved since the last arm; registers `cx`.
    pub fn poll_media(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.armed.poll_changed(cx)
    }

    /// The earliest of the service's deadline and the close linger's end.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.service.poll_timeout(), self.closing_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// Step 1: reads up to `read_batch` datagrams into the service.
    /// Returns how many reads were made (errors count: they are logged).
    fn read_batch<S: DatagramIo + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut S,
        now: Instant,
    ) -> usize {
        let mut read = 0;
        while read < self.config.read_batch {
            match io.try_recv() {
                Ok(Some((src, datagram))) => {
                    self.service.handle_datagram(now, src, datagram);
                    read += 1;
                }
                Ok(None) => {
                    if io.poll_recv_ready(cx).is_ready() {
                        continue; // readiness came back meanwhile
                    }
                    break;
                }
                Err(e) => {
                    // E.g. ECONNRESET after an ICMP error on some systems:
                    // not fatal for an unconnected socket.
                    tracing::debug!("recv_from: {e}");
                    read += 1;
                }
            }
        }
        read
    }

    /// Step 4: sends up to `send_batch` datagrams (a parked one first). A
    /// full socket buffer parks the datagram in hand. `true` on progress.
    fn send_batch<S: DatagramIo + ?Sized>(&mut self, cx: &mut Context<'_>, io: &mut S) -> bool {
        let mut progress = false;
        let mut sent = 0;
        loop {
            if sent >= self.config.send_batch {
                return true; // more may be pending: go round again
            }
            let Some(t) = self.poll_transmit() else {
                return progress;
            };
            sent += 1;
            match io.try_send(&t) {
                Ok(()) => {
                    progress = true;
                    continue;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    self.parked = Some(t);
                }
                Err(e) => {
                    // Unreachable peer, wrong address family, too large: lost.
                    tracing::debug!(to = %t.destination, len = t.len(), "send_to failed: {e}");
                    progress = true;
                    continue;
                }
            }
            // Full: registered for writability; retry at once only if it
            // came back meanwhile.
            if io.poll_send_ready(cx).is_pending() {
                return progress;
            }
        }
    }

    /// Drives the loop on an executor: rounds of shutdown → read batch →
    /// media → deadline → send batch → wait registrations (readability,
    /// writability with a parked datagram, media signals, the timer), at
    /// most a budget of rounds per poll. `Ready` once the service is closed
    /// (after `shutdown` completed, or by itself) or the close linger
    /// passed.
    pub fn poll_drive<S: DatagramIo + ?Sized, F: Future<Output = ()> + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut S,
        mut shutdown: Pin<&mut F>,
    ) -> Poll<()> {
        for _ in 0..BUDGET {
            let mut now = io.now();
            let mut progress = false;

            if self.closing_until.is_none() && shutdown.as_mut().poll(cx).is_ready() {
                self.close(now);
                progress = true;
            }
            if self.finished(now) {
                return Poll::Ready(());
            }
            if self.read_batch(cx, io, now) > 0 {
                progress = true;
                now = io.now();
            }
            if self.media_and_timeout(now) {
                progress = true;
            }
            if self.send_batch(cx, io) {
                progress = true;
            }

            // 5. Wait registrations: media, deadline (readability and
            // writability were registered above).
            if self.poll_media(cx).is_ready() {
                progress = true;
            }
            if let Some(at) = self.next_deadline() {
                if self.timer_at != Some(at) {
                    self.timer_at = Some(at);
                    io.set_timer(at);
                }
                if io.poll_timer(cx).is_ready() {
                    self.timer_at = None;
                    io.clear_timer();
                    progress = true;
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::collections::VecDeque;

    #[derive(Default)]
    struct Service {
        out: VecDeque<Transmit>,
        received: usize,
        close_called: bool,
    }

    impl DatagramService for Service {
        fn handle_datagram(&mut self, _: Instant, _: SocketAddr, _: Bytes) {
            self.received += 1;
        }
        fn handle_timeout(&mut self, _: Instant) {}
        fn handle_media(&mut self, _: Instant) {}
        fn poll_transmit(&mut self) -> Option<Transmit> {
            self.out.pop_front()
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
        fn media_signals(&self, _: &mut Vec<Signal>) {}
        fn close(&mut self, _: Instant) {
            self.close_called = true;
        }
        fn is_closed(&self) -> bool {
            false
        }
    }

    struct Io {
        now: Instant,
        inbox: VecDeque<(SocketAddr, Bytes)>,
        full: bool,
        sent: Vec<u16>,
    }

    impl DatagramIo for Io {
        fn now(&self) -> Instant {
            self.now
        }
        fn try_recv(&mut self) -> io::Result<Option<(SocketAddr, Bytes)>> {
            Ok(self.inbox.pop_front())
        }
        fn poll_recv_ready(&mut self, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
        fn try_send(&mut self, t: &Transmit) -> io::Result<()> {
            if self.full {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.sent.push(t.destination.port());
            Ok(())
        }
        fn poll_send_ready(&mut self, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
        fn set_timer(&mut self, _: Instant) {}
        fn poll_timer(&mut self, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
        fn clear_timer(&mut self) {}
    }

    fn transmit(port: u16) -> Transmit {
        Transmit {
            destination: SocketAddr::from(([127, 0, 0, 1], port)),
            contents: smallvec::smallvec![Bytes::from_static(b"x")],
        }
    }

    fn io() -> Io {
        Io {
            now: Instant::from_duration(Duration::from_secs(1)),
            inbox: VecDeque::new(),
            full: false,
            sent: Vec::new(),
        }
    }

    #[test]
    fn a_parked_datagram_goes_first_and_batches_are_bounded() {
        let mut service = Service {
            out: (1..=5).map(transmit).collect(),
            ..Service::default()
        };
        let mut io = io();
        io.full = true;
        io.inbox
            .extend((0..3).map(|_| (SocketAddr::from(([127, 0, 0, 1], 9)), Bytes::new())));
        let config = UdpConfig {
            read_batch: 2,
            send_batch: 2,
            ..UdpConfig::default()
        };
        let mut driver = DatagramDriver::new(&mut service, &config);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut shutdown = std::pin::pin!(std::future::pending::<()>());
        assert!(driver
            .poll_drive(&mut cx, &mut io, shutdown.as_mut())
            .is_pending());
        assert!(io.sent.is_empty(), "the first datagram met a full buffer");
        io.full = false;
        assert!(driver
            .poll_drive(&mut cx, &mut io, shutdown.as_mut())
            .is_pending());
        assert_eq!(io.sent, [1, 2, 3, 4, 5], "parked one first, in order");
        drop(driver);
        assert_eq!(service.received, 3);
    }

    #[test]
    fn shutdown_closes_and_the_linger_ends_the_loop() {
        let mut service = Service::default();
        let mut io = io();
        let mut driver = DatagramDriver::new(&mut service, &UdpConfig::default());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut shutdown = std::pin::pin!(std::future::ready(()));
        assert!(driver
            .poll_drive(&mut cx, &mut io, shutdown.as_mut())
            .is_pending());
        assert!(driver.is_closing());
        io.now += Duration::from_secs(2);
        assert!(driver
            .poll_drive(&mut cx, &mut io, shutdown.as_mut())
            .is_ready());
        drop(driver);
        assert!(service.close_called);
    }
}
