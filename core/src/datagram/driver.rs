//! The runtime-free part of every UDP driver: the rounds of the loop in the
//! [`crate::datagram`] docs, written once.
//!
//! A [`DatagramDriver`] owns what a round needs besides the sockets: the
//! service, the [`SignalSet`] of played streams (re-read only when the
//! service's media version moved; otherwise only the streams whose signal
//! fired are passed to `handle_media`), the service's command signal, the
//! send batch (datagrams pulled from the service and not yet accepted by
//! their socket, parked in order while that socket's buffer is full), the
//! closing deadline and the [`UdpConfig`]. An executor adapter implements
//! [`DatagramIo`] (its non-blocking sockets, readiness, clock and one timer
//! of its runtime) and
//! polls [`DatagramDriver::poll_drive`] from a future. A thread adapter,
//! which waits differently, calls the steps that do not wait
//! ([`close`](DatagramDriver::close),
//! [`finished`](DatagramDriver::finished),
//! [`media_and_timeout`](DatagramDriver::media_and_timeout),
//! [`poll_media`](DatagramDriver::poll_media),
//! [`send_with`](DatagramDriver::send_with),
//! [`next_deadline`](DatagramDriver::next_deadline)) around its own waits.
//!
//! Sending is batched: up to [`UdpConfig::sendmmsg_batch`] datagrams for
//! one socket go to it in one call ([`DatagramIo::try_send_batch`];
//! `sendmmsg` on Linux), which may accept only the first few. A batch is
//! the longest run of consecutive datagrams for the same socket. The rest
//! stay in the batch in order and go first next time, so every datagram is
//! sent once, in the order the service produced it (per destination and
//! overall), or dropped on an error of its own. A full socket holds back
//! the datagrams queued behind it for other sockets too (the order is the
//! service's; a full UDP send buffer drains within milliseconds).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

#[cfg(all(test, not(loom)))]
use bytes::Bytes;
use bytes::BytesMut;

use super::{DatagramService, Received, SocketIndex, Transmit};
use crate::engine::{Signal, SignalSet, SignalWait};
use crate::time::Instant;

/// Settings of a UDP driver (`serve_udp_with` of every adapter).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UdpConfig {
    /// Largest datagram received; longer ones are truncated by the kernel
    /// (and then rejected by the protocol). SRT packets are at most 1500.
    pub max_datagram: usize,
    /// Most datagrams read per round before the driver turns to timers,
    /// media and sending (fairness between input and output).
    pub read_batch: usize,
    /// Most datagrams sent per round before reading again.
    pub send_batch: usize,
    /// Most datagrams handed to the socket in one call
    /// ([`DatagramIo::try_send_batch`]: one `sendmmsg` on Linux, where
    /// `arcly-socket` caps a call at 64). 1 sends one datagram per call.
    pub sendmmsg_batch: usize,
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
/// Builder-style setters: the struct is `#[non_exhaustive]`, so other
/// crates start from its default (or constructor) value and chain these.
impl UdpConfig {
    /// Sets [`max_datagram`](Self::max_datagram).
    #[must_use]
    pub fn with_max_datagram(mut self, max_datagram: usize) -> Self {
        self.max_datagram = max_datagram;
        self
    }

    /// Sets [`read_batch`](Self::read_batch).
    #[must_use]
    pub fn with_read_batch(mut self, read_batch: usize) -> Self {
        self.read_batch = read_batch;
        self
    }

    /// Sets [`send_batch`](Self::send_batch).
    #[must_use]
    pub fn with_send_batch(mut self, send_batch: usize) -> Self {
        self.send_batch = send_batch;
        self
    }

    /// Sets [`sendmmsg_batch`](Self::sendmmsg_batch).
    #[must_use]
    pub fn with_sendmmsg_batch(mut self, sendmmsg_batch: usize) -> Self {
        self.sendmmsg_batch = sendmmsg_batch;
        self
    }

    /// Sets [`queue`](Self::queue).
    #[must_use]
    pub fn with_queue(mut self, queue: usize) -> Self {
        self.queue = queue;
        self
    }

    /// Sets [`socket_buffer`](Self::socket_buffer).
    #[must_use]
    pub fn with_socket_buffer(mut self, socket_buffer: usize) -> Self {
        self.socket_buffer = socket_buffer;
        self
    }

    /// Sets [`close_linger`](Self::close_linger).
    #[must_use]
    pub fn with_close_linger(mut self, close_linger: Duration) -> Self {
        self.close_linger = close_linger;
        self
    }

    /// Sets [`thread_stack`](Self::thread_stack).
    #[must_use]
    pub fn with_thread_stack(mut self, thread_stack: usize) -> Self {
        self.thread_stack = thread_stack;
        self
    }
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            max_datagram: 2048,
            read_batch: 64,
            send_batch: 256,
            sendmmsg_batch: 64,
            queue: 4096,
            socket_buffer: 8 * 1024 * 1024,
            close_linger: Duration::from_secs(2),
            thread_stack: 256 * 1024,
        }
    }
}

impl UdpConfig {
    /// The settings with every bound made usable: `max_datagram` within
    /// 64..=65 536, batches and queue at least one, `sendmmsg_batch` at
    /// most 1024 (Linux's `UIO_MAXIOV`, the `sendmmsg` limit).
    pub fn normalized(&self) -> Self {
        let mut c = self.clone();
        c.max_datagram = c.max_datagram.clamp(64, 65_536);
        c.read_batch = c.read_batch.max(1);
        c.send_batch = c.send_batch.max(1);
        c.sendmmsg_batch = c.sendmmsg_batch.clamp(1, 1024);
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

/// What a socket's receive call reports about one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes written at the start of the buffer (a longer datagram was
    /// truncated to the buffer).
    pub len: usize,
    /// The sender.
    pub src: SocketAddr,
    /// The local address the datagram was addressed to, where the OS
    /// reports it (`IP_PKTINFO` / `IPV6_RECVPKTINFO`).
    pub dst_ip: Option<IpAddr>,
}

impl RecvMeta {
    /// `len` bytes from `src`, destination not reported (what
    /// `recv_from` of the standard library gives).
    pub fn from_std((len, src): (usize, SocketAddr)) -> Self {
        RecvMeta {
            len,
            src,
            dst_ip: None,
        }
    }
}

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
    /// `len` bytes it reports as a datagram received on `socket`.
    pub fn recv_with(
        &mut self,
        socket: SocketIndex,
        recv: impl FnOnce(&mut [u8]) -> io::Result<RecvMeta>,
    ) -> io::Result<Received> {
        if self.buf.capacity() < self.max {
            self.buf = BytesMut::with_capacity(ARENA.max(self.max));
        }
        self.buf.resize(self.max, 0);
        match recv(&mut self.buf) {
            Ok(meta) => {
                self.buf.truncate(meta.len);
                Ok(Received {
                    socket,
                    src: meta.src,
                    dst_ip: meta.dst_ip,
                    contents: self.buf.split().freeze(),
                })
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
        socket: SocketIndex,
        recv: impl FnOnce(&mut [u8]) -> io::Result<RecvMeta>,
    ) -> io::Result<Option<Received>> {
        match self.recv_with(socket, recv) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// What a runtime gives a [`DatagramDriver`]: the service's non-blocking
/// UDP sockets (in [`SocketIndex`] order), their readiness, the clock and
/// one timer.
pub trait DatagramIo {
    /// The current time on the service's clock.
    fn now(&self) -> Instant;
    /// One datagram if one is ready on any socket (`Ok(None)` when every
    /// socket would block), tagged with its socket (and destination IP
    /// where the OS reports it). An implementation takes turns between its
    /// sockets so that none starves the others.
    fn try_recv(&mut self) -> io::Result<Option<Received>>;
    /// Registers for readability of every socket; ready if one became
    /// readable.
    fn poll_recv_ready(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// Sends one datagram from the socket it names, without blocking.
    /// `WouldBlock`/`Interrupted` park it until
    /// [`poll_send_ready`](Self::poll_send_ready); any other error
    /// (including a socket index out of range) drops it like network loss.
    fn try_send(&mut self, transmit: &Transmit) -> io::Result<()>;
    /// Sends the first datagrams of `batch` (all for the same socket) in
    /// order without blocking
    /// (`sendmmsg` semantics) and returns how many were sent, at least one
    /// for a non-empty `batch`. `Err` concerns the first datagram only and
    /// means nothing was sent: `WouldBlock`/`Interrupted` park the whole
    /// batch until [`poll_send_ready`](Self::poll_send_ready), any other
    /// error drops that first datagram like network loss. `Ok(n)` short of
    /// the batch leaves the rest to the next call (which reports the error
    /// of the datagram at `n`, if it has one).
    ///
    /// The default sends one datagram at a time with
    /// [`try_send`](Self::try_send).
    fn try_send_batch(&mut self, batch: &[Transmit]) -> io::Result<usize> {
        let mut sent = 0;
        for t in batch {
            match self.try_send(t) {
                Ok(()) => sent += 1,
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break, // reported again by the next call
            }
        }
        Ok(sent)
    }
    /// Registers for writability of `socket`; ready if it became writable.
    fn poll_send_ready(&mut self, cx: &mut Context<'_>, socket: SocketIndex) -> Poll<()>;
    /// Arms the timer at `at` (called only when the deadline changes).
    fn set_timer(&mut self, at: Instant);
    /// Polls the armed timer.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// Disarms the timer after it fired.
    fn clear_timer(&mut self);
}

/// What one [`DatagramDriver::send_with`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOutcome {
    /// Datagrams the socket accepted.
    pub sent: usize,
    /// Datagrams dropped on an error of their own (unreachable, wrong
    /// address family, too large), like network loss.
    pub dropped: usize,
    /// The socket was full (`WouldBlock`/`Interrupted`): the unsent
    /// datagrams stay parked, in order, and go first next time.
    pub blocked: bool,
}

impl SendOutcome {
    /// Datagrams done with: sent or dropped.
    pub fn handled(&self) -> usize {
        self.sent + self.dropped
    }
}

/// The state of one UDP driver loop around a [`DatagramService`].
pub struct DatagramDriver<'a> {
    service: &'a mut dyn DatagramService,
    config: UdpConfig,
    /// The send batch: datagrams pulled from the service, in order, not yet
    /// accepted by the socket (at most `sendmmsg_batch`, allocated once).
    /// Non-empty between rounds only when the socket was full.
    pending: Vec<Transmit>,
    signals: Vec<Signal>,
    armed: SignalSet,
    /// The service's media version the armed set was read at.
    media_version: Option<u64>,
    /// Positions of the streams whose signal fired this round (reused).
    fired: Vec<usize>,
    /// The service's command signal, the epoch drained at, the wait.
    commands: Option<(Signal, u64, Option<SignalWait>)>,
    timer_at: Option<Instant>,
    closing_until: Option<Instant>,
}

impl std::fmt::Debug for DatagramDriver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramDriver")
            .field("config", &self.config)
            .field("pending", &self.pending.len())
            .field("signals", &self.armed.len())
            .field("closing_until", &self.closing_until)
            .finish_non_exhaustive()
    }
}

impl<'a> DatagramDriver<'a> {
    /// A driver for `service` with `config` ([`UdpConfig::normalized`]).
    pub fn new(service: &'a mut dyn DatagramService, config: &UdpConfig) -> Self {
        let config = config.normalized();
        DatagramDriver {
            service,
            pending: Vec::with_capacity(config.sendmmsg_batch),
            config,
            signals: Vec::new(),
            armed: SignalSet::new(),
            media_version: None,
            fired: Vec::new(),
            commands: None,
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

    /// `true` when the loop must stop: the service is closed and every
    /// datagram it queued left (none parked on a full socket), or the close
    /// linger passed (logged).
    pub fn finished(&self, now: Instant) -> bool {
        if self.service.is_closed() && self.pending.is_empty() {
            return true;
        }
        if self.closing_until.is_some_and(|t| now >= t) {
            tracing::debug!("the service did not finish closing within the linger");
            return true;
        }
        false
    }

    /// Steps 2 to 4 of the loop: `handle_commands` if the command signal
    /// moved (epoch read first); `handle_media` with the streams whose
    /// signal moved, or with every stream if the service's media version
    /// changed (epochs armed first, the list re-read only then); then
    /// `handle_timeout` if the deadline passed. `true` if any ran.
    pub fn media_and_timeout(&mut self, now: Instant) -> bool {
        let mut progress = false;
        match &mut self.commands {
            Some((signal, seen, wait)) => {
                let epoch = signal.epoch();
                if epoch != *seen {
                    *seen = epoch;
                    *wait = None;
                    self.service.handle_commands(now);
                    progress = true;
                }
            }
            None => {
                if let Some(signal) = self.service.command_signal() {
                    let epoch = signal.epoch();
                    self.commands = Some((signal, epoch, None));
                    self.service.handle_commands(now);
                    progress = true;
                }
            }
        }
        let version = self.service.media_version();
        self.fired.clear();
        if self.media_version != Some(version) {
            self.media_version = Some(version);
            self.signals.clear();
            self.service.media_signals(&mut self.signals);
            self.armed.arm(&self.signals);
            self.fired.extend(0..self.signals.len());
            self.service.handle_media(now, &self.fired);
            progress = true;
        } else {
            self.armed.take_fired(&mut self.fired);
            if !self.fired.is_empty() {
                self.service.handle_media(now, &self.fired);
                progress = true;
            }
        }
        if self.service.poll_timeout().is_some_and(|at| at <= now) {
            self.service.handle_timeout(now);
            progress = true;
        }
        progress
    }

    /// The next datagram to send, one at a time: the parked ones first, in
    /// order. (Batching adapters use [`send_with`](Self::send_with).)
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.pending.is_empty() {
            self.service.poll_transmit()
        } else {
            Some(self.pending.remove(0))
        }
    }

    /// Step 4 with a batching socket: hands the parked datagrams, then the
    /// service's, to `send` in batches of up to
    /// [`UdpConfig::sendmmsg_batch`], until `limit` datagrams were handled
    /// (sent or dropped), the service has nothing more, or the socket is
    /// full. `send` has the contract of [`DatagramIo::try_send_batch`]: it
    /// gets a non-empty batch and returns how many of its first datagrams
    /// it sent; a `WouldBlock`/`Interrupted` error (or `Ok(0)`) parks the
    /// batch, any other error drops its first datagram only.
    ///
    /// Nothing is lost or sent twice, and the order is the service's: the
    /// unsent tail is parked in place and goes first on the next call.
    pub fn send_with(
        &mut self,
        limit: usize,
        mut send: impl FnMut(&[Transmit]) -> io::Result<usize>,
    ) -> SendOutcome {
        let mut out = SendOutcome::default();
        loop {
            let room = limit.saturating_sub(out.handled());
            if room == 0 {
                return out;
            }
            let want = room.min(self.config.sendmmsg_batch);
            while self.pending.len() < want {
                match self.service.poll_transmit() {
                    Some(t) => self.pending.push(t),
                    None => break,
                }
            }
            let Some(socket) = self.pending.first().map(|t| t.socket) else {
                return out; // the service has nothing more
            };
            // One socket per batch: the run of datagrams for the first's.
            let run = self
                .pending
                .iter()
                .take(want)
                .take_while(|t| t.socket == socket)
                .count();
            let batch = self.pending.get(..run).unwrap_or(&[]);
            let Some(first) = batch.first() else {
                return out;
            };
            match send(batch) {
                Ok(n) if n > 0 => {
                    let n = n.min(batch.len());
                    self.pending.drain(..n);
                    out.sent += n;
                }
                Ok(_) => {
                    out.blocked = true;
                    return out;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    out.blocked = true;
                    return out;
                }
                Err(e) => {
                    // Unreachable peer, wrong address family, too large: lost.
                    tracing::debug!(
                        to = %first.destination,
                        len = first.len(),
                        "send_to failed: {e}"
                    );
                    self.pending.drain(..1);
                    out.dropped += 1;
                }
            }
        }
    }

    /// Ready once a media signal or the command signal moved since the
    /// last [`media_and_timeout`](Self::media_and_timeout); registers `cx`
    /// with all of them.
    pub fn poll_media(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut ready = self.armed.poll_changed(cx).is_ready();
        if let Some((signal, seen, wait)) = &mut self.commands {
            let w = wait.get_or_insert_with(|| signal.wait(*seen));
            if Pin::new(w).poll(cx).is_ready() {
                *wait = None;
                ready = true;
            }
        }
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
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
                Ok(Some(datagram)) => {
                    self.service.handle_datagram(now, datagram);
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

    /// Step 4: sends up to `send_batch` datagrams in batches (the parked
    /// ones first). A full socket buffer parks the unsent ones. `true` on
    /// progress.
    fn send_batch<S: DatagramIo + ?Sized>(&mut self, cx: &mut Context<'_>, io: &mut S) -> bool {
        let mut progress = false;
        let mut left = self.config.send_batch;
        loop {
            let out = self.send_with(left, |batch| io.try_send_batch(batch));
            progress |= out.handled() > 0;
            // A full socket counts as one attempt: bounded even if the
            // socket keeps reporting writable but refusing.
            left = left.saturating_sub(out.handled() + usize::from(out.blocked));
            if !out.blocked {
                // Drained, or the budget is spent and more may be pending:
                // go round again.
                return progress || left == 0;
            }
            // Full: registered for writability of the socket the parked
            // head is for; retry at once only if it came back meanwhile.
            let socket = self.pending.first().map_or(SocketIndex(0), |t| t.socket);
            if io.poll_send_ready(cx, socket).is_pending() {
                return progress;
            }
            if left == 0 {
                return true; // writable again: next round
            }
        }
    }

    /// Drives the loop on an executor: rounds of shutdown → read batch →
    /// media → deadline → send batch → wait registrations (readability,
    /// writability with parked datagrams, media signals, the timer), at
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
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use std::collections::VecDeque;

    #[derive(Default)]
    struct Service {
        out: VecDeque<Transmit>,
        received: usize,
        close_called: bool,
        /// `is_closed` once closed and drained (else never).
        closes: bool,
    }

    impl DatagramService for Service {
        fn handle_datagram(&mut self, _: Instant, _: Received) {
            self.received += 1;
        }
        fn handle_timeout(&mut self, _: Instant) {}
        fn handle_media(&mut self, _: Instant, _: &[usize]) {}
        fn media_version(&self) -> u64 {
            0
        }
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
            self.closes && self.close_called && self.out.is_empty()
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
        fn try_recv(&mut self) -> io::Result<Option<Received>> {
            Ok(self.inbox.pop_front().map(|(src, d)| Received::new(src, d)))
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
        fn poll_send_ready(&mut self, _: &mut Context<'_>, _: SocketIndex) -> Poll<()> {
            Poll::Pending
        }
        fn set_timer(&mut self, _: Instant) {}
        fn poll_timer(&mut self, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
        fn clear_timer(&mut self) {}
    }

    fn transmit(port: u16) -> Transmit {
        Transmit::new(
            SocketAddr::from(([127, 0, 0, 1], port)),
            smallvec::smallvec![Bytes::from_static(b"x")],
        )
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

    /// What the scripted socket does with the next batch.
    #[derive(Debug, Clone, Copy)]
    enum Answer {
        /// Sends the first `k` (at least one).
        Accept(usize),
        /// Full buffer: nothing sent.
        WouldBlock,
        /// Interrupted: nothing sent.
        Interrupted,
        /// The first datagram fails on its own (e.g. unreachable).
        Fail,
    }

    /// A batching socket that follows a script of answers (then accepts
    /// everything) and reports writability from a second script.
    struct BatchIo {
        inner: Io,
        answers: VecDeque<Answer>,
        writable: VecDeque<bool>,
        batches: Vec<usize>,
        dropped: Vec<u16>,
    }

    impl DatagramIo for BatchIo {
        fn now(&self) -> Instant {
            self.inner.now
        }
        fn try_recv(&mut self) -> io::Result<Option<Received>> {
            Ok(None)
        }
        fn poll_recv_ready(&mut self, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
        fn try_send(&mut self, _: &Transmit) -> io::Result<()> {
            unreachable!("the driver sends batches")
        }
        fn try_send_batch(&mut self, batch: &[Transmit]) -> io::Result<usize> {
            assert!(!batch.is_empty(), "never an empty batch");
            self.batches.push(batch.len());
            match self
                .answers
                .pop_front()
                .unwrap_or(Answer::Accept(usize::MAX))
            {
                Answer::Accept(k) => {
                    let k = k.clamp(1, batch.len());
                    self.inner
                        .sent
                        .extend(batch[..k].iter().map(|t| t.destination.port()));
                    Ok(k)
                }
                Answer::WouldBlock => Err(io::ErrorKind::WouldBlock.into()),
                Answer::Interrupted => Err(io::ErrorKind::Interrupted.into()),
                Answer::Fail => {
                    self.dropped.push(batch[0].destination.port());
                    Err(io::ErrorKind::ConnectionRefused.into())
                }
            }
        }
        fn poll_send_ready(&mut self, _: &mut Context<'_>, _: SocketIndex) -> Poll<()> {
            if self.writable.pop_front().unwrap_or(false) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
        fn set_timer(&mut self, _: Instant) {}
        fn poll_timer(&mut self, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
        fn clear_timer(&mut self) {}
    }

    struct NoWake;

    impl std::task::Wake for NoWake {
        fn wake(self: std::sync::Arc<Self>) {}
    }

    /// Drives `n` datagrams through a [`BatchIo`] with `answers` until the
    /// service and the parked batch are empty; checks that every datagram
    /// was sent once or dropped once, in the service's order, in batches
    /// no larger than `sendmmsg_batch`, without growing the batch buffer.
    fn drive_script(
        n: u16,
        answers: &[Answer],
        writable: &[bool],
        send_batch: usize,
        sendmmsg_batch: usize,
    ) -> BatchIo {
        let mut service = Service {
            out: (0..n).map(transmit).collect(),
            ..Service::default()
        };
        let mut io = BatchIo {
            inner: io(),
            answers: answers.iter().copied().collect(),
            writable: writable.iter().copied().collect(),
            batches: Vec::new(),
            dropped: Vec::new(),
        };
        let config = UdpConfig {
            send_batch,
            sendmmsg_batch,
            ..UdpConfig::default()
        };
        let mut driver = DatagramDriver::new(&mut service, &config);
        let capacity = driver.pending.capacity();
        let waker = std::task::Waker::from(std::sync::Arc::new(NoWake));
        let mut cx = Context::from_waker(&waker);
        let mut shutdown = std::pin::pin!(std::future::pending::<()>());
        // Each poll makes progress until the script is used up.
        for _ in 0..answers.len() + usize::from(n) + 2 {
            let _ = driver.poll_drive(&mut cx, &mut io, shutdown.as_mut());
            assert!(driver.pending.len() <= sendmmsg_batch);
            assert_eq!(driver.pending.capacity(), capacity, "no reallocation");
        }
        assert!(driver.pending.is_empty(), "everything went out");
        drop(driver);
        assert!(service.out.is_empty());

        let mut all: Vec<u16> = io.inner.sent.clone();
        all.extend(&io.dropped);
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "each exactly once");
        let mut in_order = io.inner.sent.clone();
        in_order.sort_unstable();
        assert_eq!(io.inner.sent, in_order, "sent in the service's order");
        assert!(io.batches.iter().all(|&b| b <= sendmmsg_batch));
        io
    }

    #[test]
    fn a_partial_batch_parks_the_tail_in_order() {
        let io = drive_script(
            10,
            &[
                Answer::Accept(2),
                Answer::WouldBlock,
                Answer::Accept(1),
                Answer::Fail,
                Answer::Interrupted,
                Answer::Accept(3),
            ],
            &[false, false],
            256,
            4,
        );
        // [0 1 2 3] sends 0,1 | [2 3 4 5] full: parked | [2 3 4 5] sends 2
        // | [3 4 5 6] 3 fails | [4 5 6 7] interrupted: parked |
        // [4 5 6 7] sends 4,5,6 | [7 8 9].
        assert_eq!(io.inner.sent, [0, 1, 2, 4, 5, 6, 7, 8, 9]);
        assert_eq!(io.dropped, [3]);
        assert_eq!(io.batches, [4, 4, 4, 4, 4, 4, 3]);
    }

    #[test]
    fn a_round_sends_at_most_send_batch() {
        let mut service = Service {
            out: (0..10).map(transmit).collect(),
            ..Service::default()
        };
        let config = UdpConfig {
            sendmmsg_batch: 4,
            ..UdpConfig::default()
        };
        let mut driver = DatagramDriver::new(&mut service, &config);
        let mut calls = Vec::new();
        let out = driver.send_with(6, |b| {
            calls.push(b.len());
            Ok(b.len())
        });
        assert_eq!(
            out,
            SendOutcome {
                sent: 6,
                dropped: 0,
                blocked: false
            }
        );
        assert_eq!(calls, [4, 2]);
        assert!(driver.pending.is_empty(), "nothing pulled past the limit");
        let out = driver.send_with(100, |b| Ok(b.len()));
        assert_eq!(out.sent, 4);
    }

    mod batching {
        use super::{drive_script, Answer};
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_acceptance_pattern_sends_each_datagram_once_in_order(
                n in 0u16..300,
                answers in proptest::collection::vec(
                    prop_oneof![
                        4 => (1usize..80).prop_map(Answer::Accept),
                        2 => Just(Answer::WouldBlock),
                        1 => Just(Answer::Interrupted),
                        1 => Just(Answer::Fail),
                    ],
                    0..60,
                ),
                writable in proptest::collection::vec(any::<bool>(), 0..20),
                send_batch in 1usize..300,
                sendmmsg_batch in 1usize..80,
            ) {
                let _ = drive_script(n, &answers, &writable, send_batch, sendmmsg_batch);
            }
        }
    }

    #[test]
    fn the_loop_ends_only_after_the_parked_goodbyes_left() {
        let mut service = Service {
            out: (0..3).map(transmit).collect(),
            closes: true,
            ..Service::default()
        };
        let mut io = BatchIo {
            inner: io(),
            answers: [Answer::Accept(1), Answer::WouldBlock, Answer::WouldBlock].into(),
            writable: VecDeque::new(),
            batches: Vec::new(),
            dropped: Vec::new(),
        };
        let mut driver = DatagramDriver::new(&mut service, &UdpConfig::default());
        let waker = std::task::Waker::from(std::sync::Arc::new(NoWake));
        let mut cx = Context::from_waker(&waker);
        let mut shutdown = std::pin::pin!(std::future::ready(()));
        assert!(driver
            .poll_drive(&mut cx, &mut io, shutdown.as_mut())
            .is_pending());
        assert_eq!(io.inner.sent, [0], "1 and 2 parked on a full socket");
        assert!(driver.service().is_closed());
        assert!(
            !driver.finished(io.inner.now),
            "not while datagrams are parked"
        );
        assert!(driver
            .poll_drive(&mut cx, &mut io, shutdown.as_mut())
            .is_ready());
        assert_eq!(io.inner.sent, [0, 1, 2]);
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

    #[test]
    fn a_batch_holds_datagrams_of_one_socket_in_the_services_order() {
        let on = |socket: u16, port: u16| Transmit {
            socket: SocketIndex(socket),
            ..transmit(port)
        };
        let mut service = Service {
            out: [on(0, 1), on(0, 2), on(1, 3), on(0, 4), on(1, 5), on(1, 6)].into(),
            ..Service::default()
        };
        let mut driver = DatagramDriver::new(&mut service, &UdpConfig::default());
        let mut calls = Vec::new();
        let out = driver.send_with(100, |b| {
            assert!(b.iter().all(|t| t.socket == b[0].socket));
            calls.push((
                b[0].socket.0,
                b.iter().map(|t| t.destination.port()).collect::<Vec<_>>(),
            ));
            Ok(b.len())
        });
        assert_eq!(out.sent, 6);
        assert_eq!(
            calls,
            [(0, vec![1, 2]), (1, vec![3]), (0, vec![4]), (1, vec![5, 6])]
        );
    }

    /// A service of `streams` streams that records what `handle_media`
    /// and `handle_commands` were told.
    struct Media {
        signals: Vec<Signal>,
        version: u64,
        calls: Vec<Vec<usize>>,
        inbox: super::super::Inbox<u32>,
        commands: Vec<u32>,
    }

    impl DatagramService for Media {
        fn handle_datagram(&mut self, _: Instant, _: Received) {}
        fn handle_timeout(&mut self, _: Instant) {}
        fn command_signal(&self) -> Option<Signal> {
            Some(self.inbox.signal())
        }
        fn handle_commands(&mut self, _: Instant) {
            while let Some(c) = self.inbox.try_recv() {
                self.commands.push(c);
            }
        }
        fn handle_media(&mut self, _: Instant, fired: &[usize]) {
            self.calls.push(fired.to_vec());
        }
        fn poll_transmit(&mut self) -> Option<Transmit> {
            None
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
        fn media_version(&self) -> u64 {
            self.version
        }
        fn media_signals(&self, out: &mut Vec<Signal>) {
            out.extend(self.signals.iter().cloned());
        }
        fn close(&mut self, _: Instant) {}
        fn is_closed(&self) -> bool {
            false
        }
    }

    #[test]
    fn a_wake_names_only_the_streams_that_moved_and_commands_wake_the_loop() {
        let signals: Vec<Signal> = (0..10).map(|_| Signal::new()).collect();
        let inbox = super::super::Inbox::new(8, 8);
        let sender = inbox.sender();
        let mut service = Media {
            signals: signals.clone(),
            version: 1,
            calls: Vec::new(),
            inbox,
            commands: Vec::new(),
        };
        let now = Instant::from_millis(1);
        let count = std::sync::Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let waker = std::task::Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut driver = DatagramDriver::new(&mut service, &UdpConfig::default());
        assert!(driver.media_and_timeout(now), "a new list: every stream");
        assert!(!driver.media_and_timeout(now), "nothing moved");
        assert!(driver.poll_media(&mut cx).is_pending());
        signals[7].notify();
        assert!(driver.poll_media(&mut cx).is_ready());
        assert!(driver.media_and_timeout(now));
        signals[2].notify();
        signals[9].notify();
        assert!(driver.media_and_timeout(now));
        assert!(driver.poll_media(&mut cx).is_pending());
        let woken = count.0.load(std::sync::atomic::Ordering::SeqCst);
        sender.send(42).unwrap();
        assert_eq!(
            count.0.load(std::sync::atomic::Ordering::SeqCst),
            woken + 1,
            "a command wakes the driver"
        );
        assert!(driver.poll_media(&mut cx).is_ready());
        assert!(driver.media_and_timeout(now));
        assert!(!driver.media_and_timeout(now));
        drop(driver);
        assert_eq!(
            service.calls,
            [(0..10).collect::<Vec<_>>(), vec![7], vec![2, 9]]
        );
        assert_eq!(service.commands, [42]);
    }

    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}
