//! The UDP driver on plain threads: one [`DatagramService`] on its sockets
//! (one for SRT; an RTP + RTCP pair), driven per the loop of
//! `arcly::datagram`.
//!
//! Design (waiting on a socket, several media signals, shutdown and a
//! deadline at once, without a runtime):
//! - a **reader thread per socket** blocks in `recv_from` (with the
//!   destination address on a wildcard bind), splits each datagram off its
//!   receive arena as `Bytes`, tags it with its socket and pushes it into
//!   one **bounded channel** ([`UdpConfig::queue`] datagrams), then
//!   notifies the driver's
//!   own [`Signal`] (one atomic add when the service thread is busy). When
//!   the channel is full the reader blocks, the kernel's socket buffer
//!   fills and the kernel drops: memory stays bounded;
//! - the **service thread** (the caller's) owns the service. Each round it
//!   drains up to [`UdpConfig::read_batch`] datagrams, pulls media when a
//!   played stream's signal moved, fires the deadline, sends what
//!   `poll_transmit` yields in batches of [`UdpConfig::sendmmsg_batch`]
//!   with `sendmmsg` (Linux; no copy), then sleeps in
//!   `BlockingWait::wait_blocking(seen, until the deadline)` on its own signal;
//! - the engine's media signals (any number), the service's command signal
//!   and the shutdown signal are
//!   joined onto that one signal by polling a [`arcly::engine::SignalSet`] (and the
//!   shutdown's `SignalWait`) with a waker whose `wake` notifies it — no
//!   thread per signal and no periodic media tick: a frame wakes the
//!   service thread directly (one futex wake).
//!
//! On exit the service thread stops the readers (a flag, plus an empty
//! datagram sent to each socket's own address to release `recv_from`; a
//! reader also re-checks the flag every [`READ_POLL`]).

use std::future::Future;
use std::io;
use std::net::UdpSocket;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

pub use arcly::datagram::UdpConfig;
use arcly::datagram::{DatagramDriver, DatagramService, Received, RecvArena, SocketIndex};
use arcly::engine::Signal;
use arcly::time::Clock;
use socket2::SockRef;

use crate::driver::{spawn_reader, Bridge};
use crate::BlockingWait;
use crate::{wake_addr, Shutdown};

/// How often a blocked reader re-checks the stop flag.
pub const READ_POLL: Duration = Duration::from_millis(200);

pub(crate) fn drive(
    sockets: &[UdpSocket],
    service: &mut dyn DatagramService,
    clock: Clock,
    shutdown: Option<&Shutdown>,
    config: &UdpConfig,
) -> io::Result<()> {
    let config = &config.normalized();
    let wake = Signal::new();
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::sync_channel(config.queue);
    let mut readers = Vec::with_capacity(sockets.len());
    for (i, socket) in sockets.iter().enumerate() {
        let reader_socket = socket.try_clone()?;
        reader_socket.set_read_timeout(Some(READ_POLL))?;
        let index = SocketIndex(u16::try_from(i).unwrap_or(u16::MAX));
        readers.push((reader_socket, index, socket.local_addr()?));
    }
    std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(readers.len());
        let mut spawned = Ok(());
        for (reader_socket, index, _) in &readers {
            let (tx, wake, stop) = (tx.clone(), &wake, &stop);
            match spawn_reader(scope, "arcly-udp-read", config.thread_stack, move || {
                read_loop(reader_socket, *index, tx, wake, stop, config.max_datagram)
            }) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    spawned = Err(e);
                    break;
                }
            }
        }
        drop(tx);
        let result = match spawned {
            Ok(()) => service_loop(sockets, rx, service, &wake, clock, shutdown, config),
            Err(e) => Err(e),
        };
        stop.store(true, Ordering::Release);
        // Release the readers from `recv_from` at once.
        for (socket, (_, _, local)) in sockets.iter().zip(&readers) {
            let _ = socket.send_to(&[], wake_addr(*local));
        }
        for h in handles {
            let _ = h.join();
        }
        result
    })
}

fn read_loop(
    socket: &UdpSocket,
    index: SocketIndex,
    tx: SyncSender<Received>,
    wake: &Signal,
    stop: &AtomicBool,
    max_datagram: usize,
) {
    let mut arena = RecvArena::new(max_datagram);
    while !stop.load(Ordering::Acquire) {
        match arena.recv_with(index, |buf| {
            arcly_socket::recv_from(SockRef::from(socket), buf)
        }) {
            Ok(datagram) => {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                // Blocks while the queue is full (bounded memory; the
                // kernel buffer absorbs the burst, then drops).
                if tx.send(datagram).is_err() {
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
    sockets: &[UdpSocket],
    rx: Receiver<Received>,
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
    for socket in sockets {
        socket.set_write_timeout(Some(Duration::from_millis(100)))?;
    }
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
                Ok(datagram) => {
                    driver.service().handle_datagram(now, datagram);
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
            let socket = batch
                .first()
                .and_then(|t| sockets.get(t.socket.get()))
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such socket"))?;
            arcly_socket::send_batch(SockRef::from(socket), batch)
        });
        if out.handled() >= send_batch || out.blocked {
            progress = true; // more to send: go round again
        }
        if driver.is_closing() && driver.finished(clock.instant(std::time::Instant::now())) {
            return Ok(());
        }

        // 5. Wait: media, commands and shutdown are bridged onto `wake`.
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
