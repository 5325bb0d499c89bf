//! The UDP driver: one task drives one [`DatagramService`] on one socket,
//! exactly per the loop of `arcly::datagram`:
//!
//! 1. read every ready datagram (up to [`UdpConfig::read_batch`] per round)
//!    → `handle_datagram`; each is received into a shared arena and handed
//!    over as a zero-copy `Bytes` slice;
//! 2. a media signal moved (or the set of played streams changed) →
//!    `handle_media`, with the epochs read first ([`SignalSet::arm`]);
//! 3. the service's deadline passed → `handle_timeout`;
//! 4. drain `poll_transmit` into `sendmsg` calls (socket2) (`Transmit::contents` as
//!    an `IoSlice` list, no copy). A full socket buffer parks the one
//!    datagram in hand until the socket is writable (reading goes on
//!    meanwhile); a send error drops that datagram like network loss;
//! 5. wait on readability, writability (only with a parked datagram), the
//!    [`SignalSet`] and the deadline.
//!
//! On shutdown the service is closed and driven until `is_closed` or
//! [`UdpConfig::close_linger`] passes.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use arcly::datagram::{DatagramService, Transmit};
use arcly::engine::{Signal, SignalSet};
use arcly::time::{Clock, Instant};
use async_io::{Async, Timer};
use bytes::BytesMut;
use socket2::{SockAddr, SockRef};

/// Settings of the UDP driver ([`crate::serve_udp_with`]; the same fields as `arcly_tokio::UdpConfig`).
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
    /// `SO_RCVBUF` and `SO_SNDBUF` to ask for (the kernel may cap them:
    /// `net.core.rmem_max` / `wmem_max` on Linux; the driver logs it).
    /// Zero leaves the system defaults.
    pub socket_buffer: usize,
    /// After shutdown: how long the service may take to say goodbye (e.g.
    /// SRT SHUTDOWN to every peer) before the driver stops anyway.
    pub close_linger: Duration,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            max_datagram: 2048,
            read_batch: 64,
            send_batch: 256,
            socket_buffer: 8 * 1024 * 1024,
            close_linger: Duration::from_secs(2),
        }
    }
}

/// Receive arena: datagrams are read into one block and split off as
/// `Bytes`; a new block is started when the current one is used up.
const ARENA: usize = 64 * 1024;

/// Loop rounds per poll before yielding to other tasks (executor fairness).
const BUDGET: usize = 32;

/// Asks for `size`-byte socket buffers and logs what the kernel granted.
pub(crate) fn tune_buffers(sock: SockRef<'_>, size: usize, local: Option<SocketAddr>) {
    if size == 0 {
        return;
    }
    if let Err(e) = sock.set_recv_buffer_size(size) {
        tracing::debug!(?local, "SO_RCVBUF: {e}");
    }
    if let Err(e) = sock.set_send_buffer_size(size) {
        tracing::debug!(?local, "SO_SNDBUF: {e}");
    }
    let rcv = sock.recv_buffer_size().unwrap_or(0);
    let snd = sock.send_buffer_size().unwrap_or(0);
    // Linux reports twice the value it granted (bookkeeping overhead).
    if rcv < size || snd < size {
        tracing::info!(
            ?local,
            asked = size,
            rcvbuf = rcv,
            sndbuf = snd,
            "the kernel capped the UDP socket buffers (raise net.core.rmem_max / wmem_max \
             for fewer drops under bursts)"
        );
    } else {
        tracing::debug!(?local, rcvbuf = rcv, sndbuf = snd, "UDP socket buffers");
    }
}

pub(crate) struct UdpDriver<'a> {
    socket: &'a Async<UdpSocket>,
    service: &'a mut dyn DatagramService,
    clock: Clock,
    config: UdpConfig,
    arena: BytesMut,
    /// A datagram that met a full socket buffer, sent once writable.
    parked: Option<Transmit>,
    signals: Vec<Signal>,
    armed: SignalSet,
    sleep: Timer,
    sleep_at: Option<Instant>,
    closing_until: Option<Instant>,
}

impl<'a> UdpDriver<'a> {
    pub(crate) fn new(
        socket: &'a Async<UdpSocket>,
        service: &'a mut dyn DatagramService,
        clock: Clock,
        config: &UdpConfig,
    ) -> Self {
        let mut config = config.clone();
        config.max_datagram = config.max_datagram.clamp(64, 65_536);
        config.read_batch = config.read_batch.max(1);
        config.send_batch = config.send_batch.max(1);
        UdpDriver {
            socket,
            service,
            clock,
            arena: BytesMut::new(),
            parked: None,
            signals: Vec::new(),
            armed: SignalSet::new(),
            sleep: Timer::never(),
            sleep_at: None,
            closing_until: None,
            config,
        }
    }

    fn now(&self) -> Instant {
        self.clock.instant(std::time::Instant::now())
    }

    /// One receive into the arena; `Ok(None)` when nothing is ready.
    fn try_recv(&mut self) -> io::Result<Option<(SocketAddr, bytes::Bytes)>> {
        let max = self.config.max_datagram;
        if self.arena.capacity() < max {
            self.arena = BytesMut::with_capacity(ARENA.max(max));
        }
        self.arena.resize(max, 0);
        match self.socket.get_ref().recv_from(&mut self.arena) {
            Ok((n, src)) => {
                self.arena.truncate(n);
                let datagram = self.arena.split().freeze();
                Ok(Some((src, datagram)))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.arena.clear();
                Ok(None)
            }
            Err(e) => {
                self.arena.clear();
                Err(e)
            }
        }
    }

    /// Sends one datagram; `false` if the socket buffer is full (the
    /// datagram is then parked).
    fn send(&mut self, t: Transmit) -> bool {
        let slices: smallvec::SmallVec<[IoSlice<'_>; 4]> =
            t.contents.iter().map(|b| IoSlice::new(b)).collect();
        let addr = SockAddr::from(t.destination);
        let sock = SockRef::from(self.socket.get_ref());
        match sock.send_to_vectored(&slices, &addr) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                drop(slices);
                self.parked = Some(t);
                false
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                drop(slices);
                self.parked = Some(t);
                false
            }
            Err(e) => {
                // Unreachable peer, wrong address family, too large: lost.
                tracing::debug!(to = %t.destination, len = t.len(), "send_to failed: {e}");
                true
            }
        }
    }

    pub(crate) fn poll_drive<F: Future<Output = ()>>(
        &mut self,
        cx: &mut Context<'_>,
        mut shutdown: Pin<&mut F>,
    ) -> Poll<io::Result<()>> {
        for _ in 0..BUDGET {
            let mut now = self.now();
            let mut progress = false;

            if self.closing_until.is_none() && shutdown.as_mut().poll(cx).is_ready() {
                self.service.close(now);
                self.closing_until = Some(now + self.config.close_linger);
                progress = true;
            }
            if self.service.is_closed() {
                return Poll::Ready(Ok(()));
            }
            if self.closing_until.is_some_and(|t| now >= t) {
                tracing::debug!("the service did not finish closing within the linger");
                return Poll::Ready(Ok(()));
            }

            // 1. Read a batch.
            let mut read = 0;
            while read < self.config.read_batch {
                match self.try_recv() {
                    Ok(Some((src, datagram))) => {
                        self.service.handle_datagram(now, src, datagram);
                        read += 1;
                    }
                    Ok(None) => {
                        if self.socket.poll_readable(cx).is_ready() {
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
            if read > 0 {
                progress = true;
                now = self.now();
            }

            // 2. Media.
            self.signals.clear();
            self.service.media_signals(&mut self.signals);
            if self.armed.changed(&self.signals) {
                self.armed.arm(&self.signals);
                self.service.handle_media(now);
                progress = true;
            }

            // 3. Deadline.
            if self.service.poll_timeout().is_some_and(|at| at <= now) {
                self.service.handle_timeout(now);
                progress = true;
            }

            // 4. Send (a parked datagram first, in order).
            let mut sent = 0;
            loop {
                if sent >= self.config.send_batch {
                    progress = true; // more may be pending: go round again
                    break;
                }
                let t = match self.parked.take() {
                    Some(t) => t,
                    None => match self.service.poll_transmit() {
                        Some(t) => t,
                        None => break,
                    },
                };
                sent += 1;
                if self.send(t) {
                    progress = true;
                    continue;
                }
                // Full: registered for writability; retry at once only if
                // it came back meanwhile.
                if self.socket.poll_writable(cx).is_pending() {
                    break;
                }
            }

            // 5. Wait registrations: media, deadline (readability and
            // writability were registered above).
            if self.armed.poll_changed(cx).is_ready() {
                progress = true;
            }
            let next = [self.service.poll_timeout(), self.closing_until]
                .into_iter()
                .flatten()
                .min();
            if let Some(at) = next {
                if self.sleep_at != Some(at) {
                    self.sleep_at = Some(at);
                    self.sleep.set_at(self.clock.to_std(at));
                }
                if Pin::new(&mut self.sleep).poll(cx).is_ready() {
                    self.sleep_at = None;
                    self.sleep = Timer::never();
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
