//! # arcly-blocking — drive arcly sessions on std::net and threads
//!
//! The same generic TCP driver as `arcly-tokio`, with no async runtime: each
//! connection gets two threads (bounded by [`ServeConfig::max_connections`]):
//!
//! - a **reader** blocks in `read` and feeds `handle_input` under a mutex
//!   (EOF → `handle_input(now, &[])`);
//! - a **writer** handles deadlines and media and drains `poll_transmit` into
//!   one `write_vectored` call (up to 1024 buffers, partial writes resumed),
//!   written without holding the lock. It calls `handle_media` only once the
//!   previous write completed, so a slow socket leaves its viewer behind in the
//!   engine's ring. It sleeps on one per-connection `Signal` with
//!   `wait_blocking(seen, next_deadline)`; the reader, the engine's media
//!   signal and the server's [`Shutdown`] all notify it (the latter two
//!   through a waker registered with their `Signal::wait`).
//!
//! The writer's rounds are the non-waiting steps of
//! `arcly::session::StreamDriver`, the loop the executor adapters poll.
//!
//! For HTTP, [`serve_http`] serves an `arcly::http::HttpRouter` (HLS and
//! any other mounted service) with arcly's sans-IO HTTP/1.1 machine
//! (`arcly::http::h1`), a thread per connection and per background job.
//!
//! For UDP protocols, [`serve_udp`] drives one `arcly::datagram`
//! [`DatagramService`] per socket (e.g. SRT) on the calling thread plus one
//! reader thread (see [`UdpConfig`] and the `udp` module docs).
//!
//! On [`Shutdown::trigger`], [`serve_tcp`] stops accepting, every session's
//! `close()` is called, sessions get [`ServeConfig::shutdown_grace`] to
//! flush, then any connection still open is shut down at the socket.
//!
//! ```no_run
//! # fn run(factory: std::sync::Arc<dyn arcly::session::SessionFactory>) -> std::io::Result<()> {
//! let listener = std::net::TcpListener::bind("0.0.0.0:1935")?;
//! let shutdown = arcly_blocking::Shutdown::new();
//! // Hand `shutdown.clone()` to whatever decides to stop, which calls `trigger()`.
//! arcly_blocking::serve_tcp(listener, factory, shutdown)
//! # }
//! ```

mod driver;
mod http;
pub mod jobs;
mod udp;
mod wait;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arcly::engine::Signal;
use arcly::session::serve::log_end;
use arcly::session::{
    CloseReason, ConnectionGuard, ConnectionTracker, SessionFactory, StreamConn, StreamSession,
};
use arcly::time::Clock;

pub use driver::DriveConfig;
pub use http::{serve_http, serve_http_with, HttpServeConfig};
pub use jobs::{record_streams, run_jobs};
pub use udp::{UdpConfig, READ_POLL};
pub use wait::BlockingWait;

use arcly::datagram::{DatagramService, DatagramServiceFactory};

/// A shutdown request, shared by clones: [`trigger`](Self::trigger) once,
/// observe anywhere (threads block on it with [`wait`](Self::wait)).
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    signal: Signal,
}

impl Shutdown {
    /// A shutdown that has not been triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests the shutdown; wakes every waiter. Idempotent.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
        self.signal.notify();
    }

    /// Whether [`trigger`](Self::trigger) was called.
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Blocks until triggered.
    pub fn wait(&self) {
        loop {
            let seen = self.signal.epoch();
            if self.is_triggered() {
                return;
            }
            self.signal.wait_blocking(seen, None);
        }
    }
}

/// Settings of [`serve_tcp_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    /// Most connections served at once (two threads each); more are accepted
    /// and closed at once with a warning in the log.
    pub max_connections: usize,
    /// Most connections served at once from one source address (0: no
    /// limit); more are closed at once with a rate-limited warning
    /// (default [`arcly::session::serve::DEFAULT_MAX_CONNECTIONS_PER_IP`]).
    pub max_connections_per_ip: usize,
    /// After the shutdown: how long sessions get to flush their goodbye
    /// before their sockets are shut down under them.
    pub shutdown_grace: Duration,
    /// Set `TCP_NODELAY` on accepted sockets (writes are already batched).
    pub nodelay: bool,
    /// Per-connection driver settings.
    pub drive: DriveConfig,
    /// Kernel send buffer (`SO_SNDBUF`) of each accepted connection, in
    /// bytes (default 256 KiB,
    /// [`arcly::session::serve::DEFAULT_TCP_SEND_BUFFER`]; 0: the kernel's
    /// default), so a player that never reads cannot hold megabytes.
    pub send_buffer: usize,
}
/// Builder-style setters: the struct is `#[non_exhaustive]`, so other
/// crates start from its default (or constructor) value and chain these.
impl ServeConfig {
    /// Sets [`max_connections`](Self::max_connections).
    #[must_use]
    pub fn with_max_connections(mut self, max_connections: usize) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// Sets [`max_connections_per_ip`](Self::max_connections_per_ip).
    #[must_use]
    pub fn with_max_connections_per_ip(mut self, max_connections_per_ip: usize) -> Self {
        self.max_connections_per_ip = max_connections_per_ip;
        self
    }

    /// Sets [`shutdown_grace`](Self::shutdown_grace).
    #[must_use]
    pub fn with_shutdown_grace(mut self, shutdown_grace: Duration) -> Self {
        self.shutdown_grace = shutdown_grace;
        self
    }

    /// Sets [`nodelay`](Self::nodelay).
    #[must_use]
    pub fn with_nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// Sets [`drive`](Self::drive).
    #[must_use]
    pub fn with_drive(mut self, drive: DriveConfig) -> Self {
        self.drive = drive;
        self
    }

    /// Sets [`send_buffer`](Self::send_buffer).
    #[must_use]
    pub fn with_send_buffer(mut self, send_buffer: usize) -> Self {
        self.send_buffer = send_buffer;
        self
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_connections: 1024,
            max_connections_per_ip: arcly::session::serve::DEFAULT_MAX_CONNECTIONS_PER_IP,
            shutdown_grace: Duration::from_secs(2),
            nodelay: true,
            drive: DriveConfig::default(),
            send_buffer: arcly::session::serve::DEFAULT_TCP_SEND_BUFFER,
        }
    }
}

/// Open connections: the count for the limit ([`ConnectionTracker`]) and
/// socket handles for the forced close after the shutdown grace.
#[derive(Default)]
struct Tracker {
    next_id: AtomicU64,
    conns: Arc<ConnectionTracker>,
    sockets: Mutex<HashMap<u64, TcpStream>>,
}

impl Tracker {
    fn sockets(&self) -> std::sync::MutexGuard<'_, HashMap<u64, TcpStream>> {
        match self.sockets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Waits until no connection is open or `timeout` passes.
    fn drain(&self, timeout: Duration) -> bool {
        let until = std::time::Instant::now() + timeout;
        let changed = self.conns.changed();
        loop {
            let seen = changed.epoch();
            if self.conns.active() == 0 {
                return true;
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            changed.wait_blocking(seen, Some(left));
        }
    }
}

/// Unregisters a connection when its thread ends (even by panic): its
/// socket handle first, then its count (`_conn`).
struct ConnGuard {
    tracker: Arc<Tracker>,
    id: u64,
    _conn: ConnectionGuard,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.tracker.sockets().remove(&self.id);
    }
}

/// Serves every connection accepted on `listener` with a session from
/// `factory`, on threads, until `shutdown` is triggered; then stops
/// accepting, closes every session and waits for them (see the crate docs).
/// Blocks the calling thread. Uses [`ServeConfig::default`].
pub fn serve_tcp(
    listener: TcpListener,
    factory: Arc<dyn SessionFactory>,
    shutdown: Shutdown,
) -> io::Result<()> {
    serve_tcp_with(listener, factory, shutdown, ServeConfig::default())
}

/// [`serve_tcp`] with explicit settings.
pub fn serve_tcp_with(
    listener: TcpListener,
    factory: Arc<dyn SessionFactory>,
    shutdown: Shutdown,
    config: ServeConfig,
) -> io::Result<()> {
    let clock = Clock::new(std::time::Instant::now());
    let local = listener.local_addr()?;
    let tracker = Arc::new(Tracker::default());
    tracing::debug!(%local, "serving TCP");

    // `accept` cannot be interrupted portably: on shutdown, a watcher thread
    // connects to the listener once to wake it up.
    let watcher = {
        let shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name("arcly-accept-wake".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                shutdown.wait();
                let _ = TcpStream::connect_timeout(&wake_addr(local), Duration::from_secs(1));
            })?
    };

    accept_loop(&listener, &factory, &shutdown, &config, clock, &tracker);
    let _ = watcher.join();
    drop(listener);

    if tracker.conns.stop() > 0 && !tracker.drain(config.shutdown_grace) {
        let socks = tracker.sockets();
        tracing::warn!(
            left = socks.len(),
            "sessions did not finish within the shutdown grace; closing their sockets"
        );
        for s in socks.values() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        drop(socks);
        tracker.drain(Duration::from_secs(1));
    }
    Ok(())
}

/// Where to connect to reach `local` (an unspecified address → loopback);
/// also where `crate::udp` sends its wake-up datagram.
pub(crate) fn wake_addr(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

/// Returns once `shutdown` is triggered (and the watcher woke `accept`).
fn accept_loop(
    listener: &TcpListener,
    factory: &Arc<dyn SessionFactory>,
    shutdown: &Shutdown,
    config: &ServeConfig,
    clock: Clock,
    tracker: &Arc<Tracker>,
) {
    loop {
        let accepted = listener.accept();
        if shutdown.is_triggered() {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let now = clock.instant(std::time::Instant::now());
        let Some(conn) = tracker.conns.admit_from(
            peer,
            config.max_connections,
            config.max_connections_per_ip,
            Some(now),
        ) else {
            drop(stream);
            continue;
        };
        if config.nodelay {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(%peer, "TCP_NODELAY: {e}");
            }
        }
        arcly_socket::cap_send_buffer(socket2::SockRef::from(&stream), config.send_buffer);
        let id = tracker.next_id.fetch_add(1, Ordering::Relaxed);
        match stream.try_clone() {
            Ok(s) => {
                tracker.sockets().insert(id, s);
            }
            Err(e) => {
                tracing::warn!(%peer, "dropping connection: {e}");
                continue;
            }
        }
        let guard = ConnGuard {
            tracker: tracker.clone(),
            id,
            _conn: conn,
        };
        let now = clock.instant(std::time::Instant::now());
        let conn = match stream.local_addr() {
            Ok(at) => StreamConn::new(peer, at),
            Err(_) => StreamConn::from_peer(peer),
        };
        let session = factory.new_session(conn, now, connection_seed());
        let shutdown = shutdown.clone();
        let drive = config.drive.clone();
        let spawned = std::thread::Builder::new()
            .name("arcly-conn".into())
            .stack_size(config.drive.thread_stack)
            .spawn(move || {
                let _guard = guard;
                let span = tracing::info_span!("conn", %peer);
                let _enter = span.enter();
                tracing::debug!("accepted");
                let end = drive_stream_with(stream, session, clock, Some(&shutdown), &drive);
                log_end(&end, clock.instant(std::time::Instant::now()));
            });
        if let Err(e) = spawned {
            // The guard went down with the closure: the count is already fixed.
            tracing::warn!(%peer, "cannot start a connection thread: {e}");
        }
    }
}

/// Drives `session` over `stream` on the calling thread (plus one reader
/// thread) until the session is closed and flushed. Returns why it closed;
/// an I/O error if the transport failed first.
pub fn drive_stream(
    stream: TcpStream,
    session: Box<dyn StreamSession>,
    clock: Clock,
) -> io::Result<CloseReason> {
    drive_stream_with(stream, session, clock, None, &DriveConfig::default())
}

/// [`drive_stream`] that also calls `session.close(now)` once `shutdown` is
/// triggered (the session then flushes its goodbye within
/// [`DriveConfig::close_linger`]).
pub fn drive_stream_with(
    stream: TcpStream,
    mut session: Box<dyn StreamSession>,
    clock: Clock,
    shutdown: Option<&Shutdown>,
    config: &DriveConfig,
) -> io::Result<CloseReason> {
    driver::drive(&stream, session.as_mut(), clock, shutdown, config)
}

/// Connects to `addr` and drives `session` (a client-role session wrapped as
/// a [`StreamSession`]) over it on the calling thread.
pub fn connect_tcp(
    addr: SocketAddr,
    session: Box<dyn StreamSession>,
    clock: Clock,
) -> io::Result<CloseReason> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    drive_stream(stream, session, clock)
}

/// Serves one [`DatagramService`] from `factory` on `socket` (SRT, ...)
/// on the calling thread (plus one reader thread) until `shutdown` is
/// triggered; then closes the service and drives it until it has said
/// goodbye (bounded by [`UdpConfig::close_linger`]). Blocks. Uses
/// [`UdpConfig::default`].
///
/// ```no_run
/// # fn run(factory: impl arcly::datagram::DatagramServiceFactory) -> std::io::Result<()> {
/// let socket = std::net::UdpSocket::bind("0.0.0.0:8890")?;
/// let shutdown = arcly_blocking::Shutdown::new();
/// arcly_blocking::serve_udp(socket, factory, shutdown)
/// # }
/// ```
pub fn serve_udp(
    socket: std::net::UdpSocket,
    factory: impl DatagramServiceFactory,
    shutdown: Shutdown,
) -> io::Result<()> {
    serve_udp_with(socket, factory, shutdown, &UdpConfig::default())
}

/// [`serve_udp`] with explicit settings.
pub fn serve_udp_with(
    socket: std::net::UdpSocket,
    factory: impl DatagramServiceFactory,
    shutdown: Shutdown,
    config: &UdpConfig,
) -> io::Result<()> {
    serve_udp_sockets(vec![socket], factory, shutdown, config)
}

/// Serves one [`DatagramService`] from `factory` on several sockets (an
/// RTP + RTCP pair, several WebRTC ports; one reader thread each): the
/// service learns their local addresses in this order
/// ([`arcly::datagram::SocketIndex`]), and every datagram in and out names
/// its socket. Sockets bound to a wildcard address report each datagram's
/// destination address (`IP_PKTINFO` / `IPV6_RECVPKTINFO` on Linux).
/// Otherwise as [`serve_udp`].
pub fn serve_udp_sockets(
    sockets: Vec<std::net::UdpSocket>,
    factory: impl DatagramServiceFactory,
    shutdown: Shutdown,
    config: &UdpConfig,
) -> io::Result<()> {
    let mut locals = Vec::with_capacity(sockets.len());
    for socket in &sockets {
        let local = socket.local_addr()?;
        arcly_socket::prepare(socket2::SockRef::from(socket), config, local);
        locals.push(local);
    }
    let clock = Clock::new(std::time::Instant::now());
    let now = clock.instant(std::time::Instant::now());
    let service = factory.new_service(&locals, now, connection_seed());
    tracing::debug!(?locals, "serving UDP");
    drive_udp(&sockets, service, clock, Some(&shutdown), config)
}

/// Drives `service` on `sockets` (in [`arcly::datagram::SocketIndex`]
/// order) on the calling thread (plus one reader thread per socket) until
/// it is closed (after `shutdown` is triggered, or by itself). `clock` is
/// the origin of the service's [`arcly::Instant`]s.
pub fn drive_udp(
    sockets: &[std::net::UdpSocket],
    mut service: Box<dyn DatagramService>,
    clock: Clock,
    shutdown: Option<&Shutdown>,
    config: &UdpConfig,
) -> io::Result<()> {
    udp::drive(sockets, service.as_mut(), clock, shutdown, config)
}

/// A seed for a new session's randomness: a process-wide counter mixed with
/// the wall clock (adapters may read clocks; the machines may not).
pub fn connection_seed() -> u64 {
    arcly::session::serve::connection_seed(std::time::SystemTime::now())
}
