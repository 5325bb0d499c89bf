//! A hand-written `mio` event loop that drives arcly's sans-IO sessions and
//! services with no async runtime: one thread, TCP stream sessions (RTMP)
//! and a UDP datagram service (SRT) side by side.
//!
//! It does not copy the connection loop: each TCP connection is a
//! [`StreamDriver`] called through its non-waiting steps
//! ([`input_seen`](StreamDriver::input_seen),
//! [`linger_expired`](StreamDriver::linger_expired),
//! [`timeout`](StreamDriver::timeout),
//! [`fill_transmit`](StreamDriver::fill_transmit),
//! [`written`](StreamDriver::written), [`media`](StreamDriver::media),
//! [`closing`](StreamDriver::closing),
//! [`next_deadline`](StreamDriver::next_deadline),
//! [`shutdown`](StreamDriver::shutdown)), and the UDP socket is a
//! [`DatagramDriver`] called the same way
//! ([`media_and_timeout`](DatagramDriver::media_and_timeout),
//! [`send_with`](DatagramDriver::send_with),
//! [`poll_media`](DatagramDriver::poll_media),
//! [`close`](DatagramDriver::close), [`finished`](DatagramDriver::finished),
//! [`next_deadline`](DatagramDriver::next_deadline)). What the loop adds is
//! only what `mio` does: readiness (edge-triggered, so every read and write
//! goes until `WouldBlock`), one `mio::Waker` that the engine's media signals
//! reach through a `std::task::Waker`, and the poll timeout (the nearest
//! deadline of every driver).
//!
//! Shutdown ([`StopHandle::stop`]): the listener stops accepting, every
//! session is asked to close and gets [`DriveConfig::close_linger`] to flush
//! its goodbye (then the transport is dropped), the SRT service says goodbye
//! to every peer within [`UdpConfig::close_linger`]; [`MioServer::run`]
//! returns once all of them are done.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use arcly::datagram::{
    DatagramDriver, DatagramService, DatagramServiceFactory, RecvArena, RecvMeta, SocketIndex,
    UdpConfig,
};
use arcly::session::StreamSession;
use arcly::session::{DriveConfig, InputBuffer, MediaStep, SessionFactory, StreamDriver};
use arcly::time::{Clock, Instant};
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const UDP: Token = Token(2);
const FIRST_CONN: usize = 3;

/// Tokens whose media signal fired, and the `mio::Waker` that wakes the poll.
struct Ready {
    ids: Mutex<Vec<usize>>,
    waker: mio::Waker,
}

/// A `std::task::Waker` for one token: records it and wakes the poll.
struct TokenWaker {
    id: usize,
    ready: Arc<Ready>,
}

impl Wake for TokenWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let Ok(mut ids) = self.ready.ids.lock() {
            ids.push(self.id);
        }
        let _ = self.ready.waker.wake();
    }
}

/// Stops a running [`MioServer`] from any thread.
#[derive(Clone)]
pub struct StopHandle {
    stop: Arc<AtomicBool>,
    ready: Arc<Ready>,
}

impl StopHandle {
    /// Asks the loop to shut down gracefully (see the module docs).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.ready.waker.wake();
    }
}

/// What a connection's round left behind.
enum ConnState {
    /// Still open; nothing more to do until an event or its deadline.
    Open,
    /// Over (the text says why); deregister and drop it.
    Ended(String),
}

/// One TCP connection: the socket, the session, and the driver's state.
struct Conn {
    peer: SocketAddr,
    stream: TcpStream,
    session: Box<dyn StreamSession>,
    input: InputBuffer,
    driver: StreamDriver,
    read_closed: bool,
    waker: Waker,
}

impl Conn {
    /// Runs the driver's steps until none makes progress.
    fn service(&mut self, now: Instant) -> ConnState {
        let session = &mut *self.session;
        let mut cx = Context::from_waker(&self.waker);
        loop {
            let mut progress = false;
            // Input, until WouldBlock (edge-triggered readiness).
            while !self.read_closed && session.close_reason().is_none() {
                match self.stream.read(self.input.space()) {
                    Ok(n) => {
                        let eof = self.input.deliver(session, now, n);
                        self.read_closed = eof;
                        self.driver.input_seen(eof, now);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        session.handle_input(now, &[]);
                        return ConnState::Ended(format!("read failed: {e}"));
                    }
                }
            }
            // Deadlines: the close linger, then the session's own.
            if let Some(reason) = self.driver.linger_expired(session, now) {
                return ConnState::Ended(format!("{reason} (gave up flushing after the linger)"));
            }
            progress |= self.driver.timeout(session, now);
            // Output: the pending bytes in vectored writes, until WouldBlock.
            self.driver.fill_transmit(session);
            let merge = self.driver.merge_window(session);
            while self.driver.has_output() {
                let wrote = self.stream.write_vectored(&self.driver.io_slices());
                match wrote {
                    Ok(0) => return ConnState::Ended("write returned 0".into()),
                    Ok(n) => {
                        self.driver.written(n, now, merge);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return ConnState::Ended(format!("write failed: {e}")),
                }
            }
            // Media, only once the previous write completed (back-pressure:
            // a slow viewer falls behind in the engine's ring, not here).
            if matches!(
                self.driver.media(&mut cx, session, now),
                MediaStep::Pulled | MediaStep::Moved
            ) {
                progress = true;
            }
            // Close: once the last bytes are out, shut the write side down.
            if let Some(reason) = self.driver.closing(session, now) {
                if !self.driver.has_output() {
                    if self.driver.fill_transmit(session) > 0 {
                        progress = true;
                    } else {
                        let _ = self.stream.flush();
                        let _ = self.stream.shutdown(std::net::Shutdown::Write);
                        return ConnState::Ended(reason.to_string());
                    }
                }
            }
            if !progress {
                return ConnState::Open;
            }
        }
    }
}

/// The UDP socket of the datagram service and what its rounds need.
struct Udp {
    socket: UdpSocket,
    arena: RecvArena,
    waker: Waker,
}

impl Udp {
    /// Runs the datagram driver's steps until none makes progress. Returns
    /// `true` once the driver finished (closed and drained, or lingered out).
    fn service(&mut self, driver: &mut DatagramDriver<'_>, now: Instant) -> bool {
        let mut cx = Context::from_waker(&self.waker);
        let (read_batch, send_batch) = (driver.config().read_batch, driver.config().send_batch);
        loop {
            let mut progress = false;
            // 1. Datagrams in (a batch per round, fairness with sending).
            for _ in 0..read_batch {
                let socket = &self.socket;
                // One socket: index 0 (a service may own several).
                let recv = |buf: &mut [u8]| socket.recv_from(buf).map(RecvMeta::from_std);
                match self.arena.try_recv_with(SocketIndex(0), recv) {
                    Ok(Some(datagram)) => {
                        driver.service().handle_datagram(now, datagram);
                        progress = true;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // E.g. ICMP port unreachable from a viewer that left.
                        tracing::debug!("udp recv: {e}");
                        progress = true;
                        break;
                    }
                }
            }
            // 2–3. Media of the played streams, the service's deadline.
            progress |= driver.media_and_timeout(now);
            // 4. Datagrams out; a full socket parks the tail in order.
            let socket = &self.socket;
            let sent = driver.send_with(send_batch, |batch| {
                let mut n = 0;
                for t in batch {
                    // One socket (`t.socket` is 0); `t.src_ip` is left to the
                    // OS's routing (a wildcard bind would pass it as IP_PKTINFO).
                    match socket.send_to(&t.to_bytes(), t.destination) {
                        Ok(_) => n += 1,
                        // The next call retries (or drops) the rest.
                        Err(_) if n > 0 => break,
                        Err(e) => return Err(e),
                    }
                }
                Ok(n)
            });
            progress |= sent.handled() > 0;
            if driver.finished(now) {
                return true;
            }
            // 5. Wait for a media signal (registered with this waker).
            if driver.poll_media(&mut cx).is_ready() {
                progress = true;
            }
            if !progress {
                return false;
            }
        }
    }
}

/// A single-threaded server on a `mio` poll: optionally an RTMP (any
/// [`SessionFactory`]) listener and an SRT (any [`DatagramServiceFactory`])
/// socket, driven by the same loop.
pub struct MioServer {
    poll: Poll,
    ready: Arc<Ready>,
    stop: Arc<AtomicBool>,
    clock: Clock,
    listener: Option<(TcpListener, Box<dyn SessionFactory>)>,
    udp: Option<(Udp, Box<dyn DatagramService>)>,
    drive: DriveConfig,
    udp_config: UdpConfig,
}

impl MioServer {
    /// Binds what is asked for: a TCP listener at `tcp` for `sessions`, a
    /// UDP socket at `udp` for `datagrams`. Close lingers come from
    /// `drive` (TCP) and `udp_config` (UDP).
    pub fn bind(
        tcp: Option<(SocketAddr, Box<dyn SessionFactory>)>,
        udp: Option<(SocketAddr, Box<dyn DatagramServiceFactory>)>,
        drive: DriveConfig,
        udp_config: UdpConfig,
    ) -> io::Result<MioServer> {
        let poll = Poll::new()?;
        let ready = Arc::new(Ready {
            ids: Mutex::new(Vec::new()),
            waker: mio::Waker::new(poll.registry(), WAKER)?,
        });
        let clock = Clock::new(std::time::Instant::now());
        let listener = match tcp {
            Some((addr, factory)) => {
                let mut l = TcpListener::bind(addr)?;
                poll.registry()
                    .register(&mut l, LISTENER, Interest::READABLE)?;
                Some((l, factory))
            }
            None => None,
        };
        let udp = match udp {
            Some((addr, factory)) => {
                let mut socket = UdpSocket::bind(addr)?;
                poll.registry().register(
                    &mut socket,
                    UDP,
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                let local = socket.local_addr()?;
                let now = clock.instant(std::time::Instant::now());
                let service = factory.new_service(&[local], now, seed(UDP.0, now));
                let waker = Waker::from(Arc::new(TokenWaker {
                    id: UDP.0,
                    ready: ready.clone(),
                }));
                let arena = RecvArena::new(udp_config.max_datagram);
                Some((
                    Udp {
                        socket,
                        arena,
                        waker,
                    },
                    service,
                ))
            }
            None => None,
        };
        Ok(MioServer {
            poll,
            ready,
            stop: Arc::new(AtomicBool::new(false)),
            clock,
            listener,
            udp,
            drive,
            udp_config,
        })
    }

    /// The TCP listener's address.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.listener
            .as_ref()
            .and_then(|(l, _)| l.local_addr().ok())
    }

    /// The UDP socket's address.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp
            .as_ref()
            .and_then(|(u, _)| u.socket.local_addr().ok())
    }

    /// A handle to stop [`run`](Self::run) from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            stop: self.stop.clone(),
            ready: self.ready.clone(),
        }
    }

    /// Runs the loop until stopped and every connection and the datagram
    /// service are done (see the module docs).
    pub fn run(self) -> io::Result<()> {
        let MioServer {
            mut poll,
            ready,
            stop,
            clock,
            mut listener,
            udp,
            drive,
            udp_config,
        } = self;
        let (mut udp, mut udp_service) = match udp {
            Some((u, s)) => (Some(u), Some(s)),
            None => (None, None),
        };
        let mut udp_driver = udp_service
            .as_deref_mut()
            .map(|s| DatagramDriver::new(s, &udp_config));
        let mut conns: HashMap<usize, Conn> = HashMap::new();
        let mut next_id = FIRST_CONN;
        let mut events = Events::with_capacity(1024);
        let mut stopping = false;

        loop {
            // Sleep until an event or the nearest deadline of any driver.
            let now = clock.instant(std::time::Instant::now());
            let deadline = conns
                .values()
                .filter_map(|c| c.driver.next_deadline(&*c.session))
                .chain(udp_driver.as_ref().and_then(|d| d.next_deadline()))
                .min();
            let timeout =
                deadline.map(|t| t.saturating_duration_since(now) + Duration::from_millis(1));
            poll.poll(&mut events, timeout)?;
            let now = clock.instant(std::time::Instant::now());

            let mut todo: Vec<usize> = Vec::new();
            if !stopping && stop.load(Ordering::Acquire) {
                // Graceful shutdown: no new connections; every session and
                // the datagram service close and get their linger.
                stopping = true;
                if let Some((mut l, _)) = listener.take() {
                    let _ = poll.registry().deregister(&mut l);
                }
                for (id, c) in conns.iter_mut() {
                    c.driver.shutdown(&mut *c.session, now);
                    todo.push(*id);
                }
                if let Some(d) = udp_driver.as_mut() {
                    d.close(now);
                    todo.push(UDP.0);
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => {
                        if let Some((l, factory)) = listener.as_ref() {
                            accept(
                                l,
                                &**factory,
                                &poll,
                                &ready,
                                &drive,
                                now,
                                &mut next_id,
                                &mut conns,
                                &mut todo,
                            )?;
                        }
                    }
                    WAKER => {
                        if let Ok(mut ids) = ready.ids.lock() {
                            todo.append(&mut ids);
                        }
                    }
                    Token(id) => todo.push(id),
                }
            }
            // Deadlines that passed.
            todo.extend(
                conns
                    .iter()
                    .filter(|(_, c)| {
                        c.driver
                            .next_deadline(&*c.session)
                            .is_some_and(|t| t <= now)
                    })
                    .map(|(id, _)| *id),
            );
            if udp_driver
                .as_ref()
                .and_then(|d| d.next_deadline())
                .is_some_and(|t| t <= now)
            {
                todo.push(UDP.0);
            }
            todo.sort_unstable();
            todo.dedup();
            for id in todo {
                if id == UDP.0 {
                    if let (Some(u), Some(d)) = (udp.as_mut(), udp_driver.as_mut()) {
                        if u.service(d, now) {
                            tracing::info!("datagram service finished");
                            if let Some(mut u) = udp.take() {
                                let _ = poll.registry().deregister(&mut u.socket);
                            }
                            udp_driver = None;
                        }
                    }
                    continue;
                }
                let Some(conn) = conns.get_mut(&id) else {
                    continue;
                };
                if let ConnState::Ended(why) = conn.service(now) {
                    if let Some(mut conn) = conns.remove(&id) {
                        let _ = poll.registry().deregister(&mut conn.stream);
                        tracing::info!(peer = %conn.peer, "connection ended: {why}");
                    }
                }
            }
            if stopping && conns.is_empty() && udp_driver.is_none() {
                return Ok(());
            }
        }
    }
}

/// Accepts every pending connection (edge-triggered: until WouldBlock).
#[allow(clippy::too_many_arguments)]
fn accept(
    listener: &TcpListener,
    factory: &dyn SessionFactory,
    poll: &Poll,
    ready: &Arc<Ready>,
    drive: &DriveConfig,
    now: Instant,
    next_id: &mut usize,
    conns: &mut HashMap<usize, Conn>,
    todo: &mut Vec<usize>,
) -> io::Result<()> {
    loop {
        let (mut stream, peer) = match listener.accept() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // E.g. out of file descriptors: try again on the next event.
                tracing::warn!("accept: {e}");
                return Ok(());
            }
        };
        let id = *next_id;
        *next_id += 1;
        poll.registry().register(
            &mut stream,
            Token(id),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let _ = stream.set_nodelay(true);
        let waker = Waker::from(Arc::new(TokenWaker {
            id,
            ready: ready.clone(),
        }));
        // The peer and the local address it connected to (on a wildcard
        // listener, the interface's address).
        let conn = arcly::session::StreamConn::new(peer, stream.local_addr().unwrap_or(peer));
        let session = factory.new_session(conn, now, seed(id, now));
        conns.insert(
            id,
            Conn {
                peer,
                stream,
                session,
                input: InputBuffer::new(drive.read_buffer),
                driver: StreamDriver::new(drive),
                read_closed: false,
                waker,
            },
        );
        tracing::info!(%peer, "connected");
        todo.push(id);
    }
}

/// A per-connection seed (randomness is an input of the machines).
fn seed(id: usize, now: Instant) -> u64 {
    (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ now.as_micros()
}
