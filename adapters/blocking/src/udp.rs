//! The UDP driver on plain threads: one [`DatagramService`] per socket,
//! driven per the loop of `arcly::datagram`.
//!
//! Design (waiting on a socket, several media signals, shutdown and a
//! deadline at once, without a runtime):
//! - a **reader thread** blocks in `recv_from`, splits each datagram off a
//!   shared receive arena as `Bytes` and pushes it into a **bounded
//!   channel** ([`UdpConfig::queue`] datagrams), then notifies the driver's
//!   own [`Signal`] (one atomic add when the service thread is busy). When
//!   the channel is full the reader blocks, the kernel's socket buffer
//!   fills and the kernel drops: memory stays bounded;
//! - the **service thread** (the caller's) owns the service. Each round it
//!   drains up to [`UdpConfig::read_batch`] datagrams, pulls media when a
//!   played stream's signal moved, fires the deadline, sends everything
//!   `poll_transmit` yields with `sendmsg` (no copy), then sleeps in
//!   `Signal::wait_blocking(seen, until the deadline)` on its own signal;
//! - the engine's media signals (any number) and the shutdown signal are
//!   joined onto that one signal by polling a [`SignalSet`] (and the
//!   shutdown's `SignalWait`) with a waker whose `wake` notifies it — no
//!   thread per signal and no periodic media tick: a frame wakes the
//!   service thread directly (one futex wake).
//!
//! On exit the service thread stops the reader (a flag, plus an empty
//! datagram sent to the socket's own address to release `recv_from`; the
//! reader also re-checks the flag every [`READ_POLL`]).

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use arcly::datagram::DatagramService;
use arcly::engine::{Signal, SignalSet};
use arcly::time::{Clock, Instant};
use bytes::{Bytes, BytesMut};
use socket2::{SockAddr, SockRef};

use crate::Shutdown;

/// Settings of the UDP driver ([`crate::serve_udp_with`]).
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// Largest datagram received; longer ones are truncated by the kernel
    /// (and then rejected by the protocol). SRT packets are at most 1500.
    pub max_datagram: usize,
    /// Most datagrams handled per round before timers, media and sending.
    pub read_batch: usize,
    /// Most datagrams sent per round before reading again.
    pub send_batch: usize,
    /// Datagrams the reader thread may queue for the service thread.
    pub queue: usize,
    /// `SO_RCVBUF` and `SO_SNDBUF` to ask for (the kernel may cap them:
    /// `net.core.rmem_max` / `wmem_max` on Linux; the driver logs it).
    /// Zero leaves the system defaults.
    pub socket_buffer: usize,
    /// After shutdown: how long the service may take to say goodbye before
    /// the driver stops anyway.
    pub close_linger: Duration,
    /// Stack size of the reader thread.
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

/// How often a blocked reader re-checks the stop flag.
pub const READ_POLL: Duration = Duration::from_millis(200);

/// Receive arena block.
const ARENA: usize = 64 * 1024;

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

/// A waker that notifies the driver's own signal.
struct Bridge(Signal);

impl Wake for Bridge {
    fn wake(self: Arc<Self>) {
        self.0.notify();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.notify();
    }
}

/// Where to send the wake-up datagram to reach `local`.
fn wake_addr(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

pub(crate) fn drive(
    socket: &UdpSocket,
    service: &mut dyn DatagramService,
    clock: Clock,
    shutdown: Option<&Shutdown>,
    config: &UdpConfig,
) -> io::Result<()> {
    let wake = Signal::new();
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::sync_channel(config.queue.max(1));
    let reader_socket = socket.try_clone()?;
    reader_socket.set_read_timeout(Some(READ_POLL))?;
    let local = socket.local_addr()?;
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("arcly-udp-read".into())
            .stack_size(config.thread_stack)
            .spawn_scoped(scope, || {
                read_loop(&reader_socket, tx, &wake, &stop, config.max_datagram)
            })?;
        let result = service_loop(socket, rx, service, &wake, clock, shutdown, config);
        stop.store(true, Ordering::Release);
        // Release the reader from `recv_from` at once.
        let _ = socket.send_to(&[], wake_addr(local));
        let _ = reader.join();
        result
    })
}

fn read_loop(
    socket: &UdpSocket,
    tx: SyncSender<(SocketAddr, Bytes)>,
    wake: &Signal,
    stop: &AtomicBool,
    max_datagram: usize,
) {
    let max = max_datagram.clamp(64, 65_536);
    let mut arena = BytesMut::new();
    while !stop.load(Ordering::Acquire) {
        if arena.capacity() < max {
            arena = BytesMut::with_capacity(ARENA.max(max));
        }
        arena.resize(max, 0);
        match socket.recv_from(&mut arena) {
            Ok((n, src)) => {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                arena.truncate(n);
                let datagram = arena.split().freeze();
                // Blocks while the queue is full (bounded memory; the
                // kernel buffer absorbs the burst, then drops).
                if tx.send((src, datagram)).is_err() {
                    return;
                }
                wake.notify();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                arena.clear();
            }
            Err(e) => {
                arena.clear();
                tracing::debug!("recv_from: {e}");
                // Not fatal on an unconnected socket; do not spin on it.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn send(socket: &UdpSocket, t: &arcly::datagram::Transmit) {
    let slices: smallvec::SmallVec<[IoSlice<'_>; 4]> =
        t.contents.iter().map(|b| IoSlice::new(b)).collect();
    let addr = SockAddr::from(t.destination);
    if let Err(e) = SockRef::from(socket).send_to_vectored(&slices, &addr) {
        // Full buffer past the send timeout, unreachable peer, wrong
        // address family: lost like on the network.
        tracing::debug!(to = %t.destination, len = t.len(), "send_to failed: {e}");
    }
}

fn service_loop(
    socket: &UdpSocket,
    rx: Receiver<(SocketAddr, Bytes)>,
    service: &mut dyn DatagramService,
    wake: &Signal,
    clock: Clock,
    shutdown: Option<&Shutdown>,
    config: &UdpConfig,
) -> io::Result<()> {
    let waker = Waker::from(Arc::new(Bridge(wake.clone())));
    let mut cx = Context::from_waker(&waker);
    let mut shutdown_wait = shutdown.map(|s| s.signal.wait(s.signal.epoch()));
    let mut closing_until: Option<Instant> = None;
    let mut signals = Vec::new();
    let mut armed = SignalSet::new();
    let read_batch = config.read_batch.max(1);
    let send_batch = config.send_batch.max(1);
    // A send may block on a full buffer; never for long.
    socket.set_write_timeout(Some(Duration::from_millis(100)))?;
    loop {
        // Read the wake epoch before looking for work: no lost wake-ups.
        let seen = wake.epoch();
        let mut now = clock.instant(std::time::Instant::now());
        let mut progress = false;

        if closing_until.is_none() && shutdown.is_some_and(Shutdown::is_triggered) {
            shutdown_wait = None;
            service.close(now);
            closing_until = Some(now + config.close_linger);
        }
        if service.is_closed() {
            return Ok(());
        }
        if closing_until.is_some_and(|t| now >= t) {
            tracing::debug!("the service did not finish closing within the linger");
            return Ok(());
        }

        // 1. Datagrams queued by the reader.
        let mut read = 0;
        while read < read_batch {
            match rx.try_recv() {
                Ok((src, datagram)) => {
                    service.handle_datagram(now, src, datagram);
                    read += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    return Err(io::Error::other("the UDP reader thread ended"));
                }
            }
        }
        if read > 0 {
            now = clock.instant(std::time::Instant::now());
        }
        if read == read_batch {
            progress = true; // maybe more queued
        }

        // 2. Media.
        signals.clear();
        service.media_signals(&mut signals);
        if armed.changed(&signals) {
            armed.arm(&signals);
            service.handle_media(now);
        }

        // 3. Deadline.
        if service.poll_timeout().is_some_and(|at| at <= now) {
            service.handle_timeout(now);
        }

        // 4. Send.
        let mut sent = 0;
        while sent < send_batch {
            let Some(t) = service.poll_transmit() else {
                break;
            };
            send(socket, &t);
            sent += 1;
        }
        if sent == send_batch {
            progress = true;
        }
        if closing_until.is_some() && service.is_closed() {
            return Ok(());
        }

        // 5. Wait: media and shutdown are bridged onto `wake`.
        if armed.poll_changed(&mut cx).is_ready() {
            progress = true;
        }
        if let Some(wait) = shutdown_wait.as_mut() {
            if Pin::new(wait).poll(&mut cx).is_ready() {
                shutdown_wait = None;
                progress = true;
            }
        }
        if progress {
            continue;
        }
        let deadline = [service.poll_timeout(), closing_until]
            .into_iter()
            .flatten()
            .min();
        let now = clock.instant(std::time::Instant::now());
        let timeout = deadline.map(|d| d.saturating_duration_since(now));
        if timeout.is_some_and(|t| t.is_zero()) {
            continue;
        }
        wake.wait_blocking(seen, timeout);
    }
}
