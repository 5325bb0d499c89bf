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
//!   played stream's signal moved, fires the deadline, sends what
//!   `poll_transmit` yields in batches of [`UdpConfig::sendmmsg_batch`]
//!   with `sendmmsg` (Linux; no copy), then sleeps in
//!   `Signal::wait_blocking(seen, until the deadline)` on its own signal;
//! - the engine's media signals (any number) and the shutdown signal are
//!   joined onto that one signal by polling a [`arcly::engine::SignalSet`] (and the
//!   shutdown's `SignalWait`) with a waker whose `wake` notifies it — no
//!   thread per signal and no periodic media tick: a frame wakes the
//!   service thread directly (one futex wake).
//!
//! On exit the service thread stops the reader (a flag, plus an empty
//! datagram sent to the socket's own address to release `recv_from`; the
//! reader also re-checks the flag every [`READ_POLL`]).

use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

pub use arcly::datagram::UdpConfig;
use arcly::datagram::{DatagramDriver, DatagramService, RecvArena};
use arcly::engine::Signal;
use arcly::time::Clock;
use bytes::Bytes;
use socket2::SockRef;

use crate::driver::{spawn_reader, Bridge};
use crate::{wake_addr, Shutdown};

pub(crate) use arcly_socket::tune_buffers;

/// How often a blocked reader re-checks the stop flag.
pub const READ_POLL: Duration = Duration::from_millis(200);

pub(crate) fn drive(
    socket: &UdpSocket,
    service: &mut dyn DatagramService,
    clock: Clock,
    shutdown: Option<&Shutdown>,
    config: &UdpConfig,
) -> io::Result<()> {
    let config = &config.normalized();
    let wake = Signal::new();
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::sync_channel(config.queue);
    let reader_socket = socket.try_clone()?;
    reader_socket.set_read_timeout(Some(READ_POLL))?;
    let local = socket.local_addr()?;
    std::thread::scope(|scope| {
        let reader = spawn_reader(scope, "arcly-udp-read", config.thread_stack, || {
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
    let mut arena = RecvArena::new(max_datagram);
    while !stop.load(Ordering::Acquire) {
        match arena.recv_with(|buf| socket.recv_from(buf)) {
            Ok((src, datagram)) => {
                if stop.load(Ordering::Acquire) {
                    return;
                }
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
                ) => {}
            Err(e) => {
                tracing::debug!("recv_from: {e}");
                // Not fatal on an unconnected socket; do not spin on it.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
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
    let mut driver = DatagramDriver::new(service, config);
    let read_batch = driver.config().read_batch;
    let send_batch = driver.config().send_batch;
    // A send may block on a full buffer; never for long.
    socket.set_write_timeout(Some(Duration::from_millis(100)))?;
    loop {
        // Read the wake epoch before looking for work: no lost wake-ups.
        let seen = wake.epoch();
        let mut now = clock.instant(std::time::Instant::now());
        let mut progress = false;

        if !driver.is_closing() && shutdown.is_some_and(Shutdown::is_triggered) {
            shutdown_wait = None;
            driver.close(now);
        }
        if driver.finished(now) {
            return Ok(());
        }

        // 1. Datagrams queued by the reader.
        let mut read = 0;
        while read < read_batch {
            match rx.try_recv() {
                Ok((src, datagram)) => {
                    driver.service().handle_datagram(now, src, datagram);
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

        // 2.-3. Media, deadline.
        driver.media_and_timeout(now);

        // 4. Send in batches (one `sendmmsg` each on Linux; blocking, each
        // datagram bounded by the write timeout). A datagram with an error
        // of its own (unreachable peer, wrong address family) is dropped
        // like on the network; on a buffer still full after the timeout
        // the unsent ones stay parked in order for the next round.
        let out = driver.send_with(send_batch, |batch| {
            arcly_socket::send_batch(SockRef::from(socket), batch)
        });
        if out.handled() >= send_batch || out.blocked {
            progress = true; // more to send: go round again
        }
        if driver.is_closing() && driver.finished(clock.instant(std::time::Instant::now())) {
            return Ok(());
        }

        // 5. Wait: media and shutdown are bridged onto `wake`.
        if driver.poll_media(&mut cx).is_ready() {
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
        let deadline = driver.next_deadline();
        let now = clock.instant(std::time::Instant::now());
        let timeout = deadline.map(|d| d.saturating_duration_since(now));
        if timeout.is_some_and(|t| t.is_zero()) {
            continue;
        }
        wake.wait_blocking(seen, timeout);
    }
}
