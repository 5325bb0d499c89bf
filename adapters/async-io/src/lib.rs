//! # arcly-async-io — drive arcly sessions on async-io, any executor
//!
//! The same generic TCP driver as `arcly-tokio`, built on `async-io`
//! (`Async<TcpListener>`, `Async<TcpStream>`, `Timer`) and the `futures-io`
//! traits, so it runs under smol, async-std's executor, or any executor that
//! can spawn a `Send` future. No protocol logic lives here.
//!
//! Per connection, until the session is closed and flushed:
//! 1. bytes read into a fixed buffer → `handle_input` (EOF → `handle_input(now, &[])`);
//! 2. the session's deadline (`poll_timeout`, via an `async_io::Timer`) → `handle_timeout`;
//! 3. everything `poll_transmit` yields is written with **one vectored write**
//!    (up to 1024 `IoSlice`s per call, partial writes resumed across buffers);
//! 4. once the previous write completed, `handle_media` (the media signal's
//!    epoch is read first, then the task waits on `Signal::wait(seen)`), so a
//!    slow socket leaves its viewer behind in the engine's ring;
//! 5. a closed session is flushed (bounded by [`DriveConfig::close_linger`]),
//!    then the write side is closed.
//!
//! The executor is the caller's: [`serve_tcp`] takes a spawner closure.
//!
//! For UDP protocols, [`serve_udp`] drives one `arcly::datagram`
//! [`DatagramService`] per socket (e.g. SRT) in the calling task, on any
//! executor.
//!
//! ```no_run
//! # fn run(factory: std::sync::Arc<dyn arcly::session::SessionFactory>) -> std::io::Result<()> {
//! # let ctrl_c = std::future::pending::<()>();
//! smol::block_on(async {
//!     let listener = async_io::Async::<std::net::TcpListener>::bind(([0, 0, 0, 0], 1935))?;
//!     arcly_async_io::serve_tcp(listener, factory, ctrl_c, |conn| smol::spawn(conn).detach()).await
//! })
//! # }
//! ```

mod driver;
mod udp;

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arcly::engine::Signal;
use arcly::session::{CloseReason, SessionFactory, StreamSession};
use arcly::time::Clock;
use async_io::{Async, Timer};
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

pub use driver::DriveConfig;
pub use udp::UdpConfig;

use arcly::datagram::{DatagramService, DatagramServiceFactory};

/// A connection's future, handed to the spawner of [`serve_tcp`].
pub type ConnectionFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Settings of [`serve_tcp_with`].
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Most connections served at once; more are accepted and closed at once
    /// with a warning in the log.
    pub max_connections: usize,
    /// After the shutdown future completes: how long sessions get to flush
    /// their goodbye before `serve_tcp` returns without them.
    pub shutdown_grace: Duration,
    /// Set `TCP_NODELAY` on accepted sockets (writes are already batched).
    pub nodelay: bool,
    /// Per-connection driver settings.
    pub drive: DriveConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(2),
            nodelay: true,
            drive: DriveConfig::default(),
        }
    }
}

/// Shared by the accept loop and its connections.
#[derive(Default)]
struct Tracker {
    active: AtomicUsize,
    stopping: AtomicBool,
    /// Notified when `stopping` is set and when a connection ends.
    changed: Signal,
}

/// Decrements the active count when a connection future ends or is dropped.
struct ActiveGuard(Arc<Tracker>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify();
    }
}

impl Tracker {
    async fn stopped(&self) {
        loop {
            let seen = self.changed.epoch();
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            self.changed.wait(seen).await;
        }
    }

    async fn drained(&self) {
        loop {
            let seen = self.changed.epoch();
            if self.active.load(Ordering::Acquire) == 0 {
                return;
            }
            self.changed.wait(seen).await;
        }
    }
}

/// Serves every connection accepted on `listener` with a session from
/// `factory` until `shutdown` completes; each connection is one future handed
/// to `spawn` (e.g. `|c| smol::spawn(c).detach()` or
/// `|c| { async_std::task::spawn(c); }`). On shutdown: stops accepting, calls
/// `close()` on every session, waits up to [`ServeConfig::shutdown_grace`]
/// for them to flush. Uses [`ServeConfig::default`].
pub async fn serve_tcp<Sp>(
    listener: Async<TcpListener>,
    factory: Arc<dyn SessionFactory>,
    shutdown: impl Future<Output = ()>,
    spawn: Sp,
) -> io::Result<()>
where
    Sp: Fn(ConnectionFuture),
{
    serve_tcp_with(listener, factory, shutdown, spawn, ServeConfig::default()).await
}

/// [`serve_tcp`] with explicit settings.
pub async fn serve_tcp_with<Sp>(
    listener: Async<TcpListener>,
    factory: Arc<dyn SessionFactory>,
    shutdown: impl Future<Output = ()>,
    spawn: Sp,
    config: ServeConfig,
) -> io::Result<()>
where
    Sp: Fn(ConnectionFuture),
{
    enum Event {
        Stop,
        Accepted(io::Result<(Async<TcpStream>, SocketAddr)>),
    }
    let clock = Clock::new(std::time::Instant::now());
    let tracker = Arc::new(Tracker::default());
    let mut shutdown = pin!(shutdown);
    let local = listener.get_ref().local_addr().ok();
    tracing::debug!(?local, "serving TCP");
    loop {
        let event = future::or(
            async {
                (&mut shutdown).await;
                Event::Stop
            },
            async { Event::Accepted(listener.accept().await) },
        )
        .await;
        let (stream, peer) = match event {
            Event::Stop => break,
            Event::Accepted(Ok(a)) => a,
            Event::Accepted(Err(e)) => {
                tracing::warn!(?local, "accept failed: {e}");
                Timer::after(Duration::from_millis(50)).await;
                continue;
            }
        };
        if tracker.active.load(Ordering::Acquire) >= config.max_connections {
            tracing::warn!(
                %peer,
                max = config.max_connections,
                "refusing connection: too many connections"
            );
            drop(stream);
            continue;
        }
        if config.nodelay {
            if let Err(e) = stream.get_ref().set_nodelay(true) {
                tracing::debug!(%peer, "TCP_NODELAY: {e}");
            }
        }
        let now = clock.instant(std::time::Instant::now());
        let session = factory.new_session(peer, now, connection_seed());
        tracker.active.fetch_add(1, Ordering::AcqRel);
        let guard = ActiveGuard(tracker.clone());
        let drive = config.drive.clone();
        let span = tracing::info_span!("conn", %peer);
        spawn(Box::pin(
            async move {
                let guard = guard;
                tracing::debug!("accepted");
                let stop = guard.0.stopped();
                match drive_stream_with(stream, session, clock, stop, &drive).await {
                    Ok(reason) => tracing::info!(%reason, "connection closed"),
                    Err(e) => tracing::info!("connection lost: {e}"),
                }
            }
            .instrument(span),
        ));
    }
    drop(listener);
    tracker.stopping.store(true, Ordering::Release);
    tracker.changed.notify();
    let open = tracker.active.load(Ordering::Acquire);
    if open > 0 {
        tracing::info!(open, "shutting down: closing sessions");
        let drained = future::or(
            async {
                tracker.drained().await;
                true
            },
            async {
                Timer::after(config.shutdown_grace).await;
                false
            },
        )
        .await;
        if !drained {
            tracing::warn!(
                left = tracker.active.load(Ordering::Acquire),
                "sessions did not finish within the shutdown grace"
            );
        }
    }
    Ok(())
}

/// Drives `session` over `stream` until the session is closed and flushed.
/// Returns why it closed; an I/O error if the transport failed first.
///
/// `clock` turns `std::time::Instant` readings into the session's
/// [`arcly::Instant`]s (same origin as the `now` given to the factory).
pub async fn drive_stream<S>(
    stream: S,
    session: Box<dyn StreamSession>,
    clock: Clock,
) -> io::Result<CloseReason>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    drive_stream_with(
        stream,
        session,
        clock,
        future::pending(),
        &DriveConfig::default(),
    )
    .await
}

/// [`drive_stream`] that also calls `session.close(now)` when `shutdown`
/// completes (the session then flushes its goodbye within
/// [`DriveConfig::close_linger`]).
pub async fn drive_stream_with<S, F>(
    stream: S,
    mut session: Box<dyn StreamSession>,
    clock: Clock,
    shutdown: F,
    config: &DriveConfig,
) -> io::Result<CloseReason>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    let mut shutdown = pin!(shutdown);
    let mut driver = driver::Driver::new(stream, session.as_mut(), clock, config);
    future::poll_fn(|cx| driver.poll_drive(cx, shutdown.as_mut())).await
}

/// Connects to `addr` and drives `session` (a client-role session wrapped as
/// a [`StreamSession`]) over it.
pub async fn connect_tcp(
    addr: SocketAddr,
    session: Box<dyn StreamSession>,
    clock: Clock,
) -> io::Result<CloseReason> {
    let stream = Async::<TcpStream>::connect(addr).await?;
    stream.get_ref().set_nodelay(true)?;
    drive_stream(stream, session, clock).await
}

/// Serves one [`DatagramService`] from `factory` on `socket` (SRT, ...)
/// in the calling task (any executor) until `shutdown` completes; then
/// closes the service and drives it until it has said goodbye (bounded by
/// [`UdpConfig::close_linger`]). Uses [`UdpConfig::default`].
///
/// Per round: every ready datagram (up to a batch) → `handle_datagram`;
/// `handle_media` when a played stream's signal moved; `handle_timeout` at
/// the deadline; `poll_transmit` drained into `sendmsg` calls; then the
/// task waits on the socket, the signals and the deadline.
///
/// ```no_run
/// # fn run(factory: impl arcly::datagram::DatagramServiceFactory) -> std::io::Result<()> {
/// # let ctrl_c = std::future::pending::<()>();
/// smol::block_on(async {
///     let socket = async_io::Async::<std::net::UdpSocket>::bind(([0, 0, 0, 0], 8890))?;
///     arcly_async_io::serve_udp(socket, factory, ctrl_c).await
/// })
/// # }
/// ```
pub async fn serve_udp(
    socket: Async<std::net::UdpSocket>,
    factory: impl DatagramServiceFactory,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_udp_with(socket, factory, shutdown, &UdpConfig::default()).await
}

/// [`serve_udp`] with explicit settings.
pub async fn serve_udp_with(
    socket: Async<std::net::UdpSocket>,
    factory: impl DatagramServiceFactory,
    shutdown: impl Future<Output = ()>,
    config: &UdpConfig,
) -> io::Result<()> {
    let local = socket.get_ref().local_addr()?;
    udp::tune_buffers(
        socket2::SockRef::from(socket.get_ref()),
        config.socket_buffer,
        Some(local),
    );
    let clock = Clock::new(std::time::Instant::now());
    let now = clock.instant(std::time::Instant::now());
    let service = factory.new_service(local, now, connection_seed());
    tracing::debug!(%local, "serving UDP");
    drive_udp(&socket, service, clock, shutdown, config).await
}

/// Drives `service` on `socket` until it is closed (after `shutdown`
/// completes, or by itself). `clock` is the origin of the service's
/// [`arcly::Instant`]s (the one whose `now` built the service).
pub async fn drive_udp(
    socket: &Async<std::net::UdpSocket>,
    mut service: Box<dyn DatagramService>,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
    config: &UdpConfig,
) -> io::Result<()> {
    let mut shutdown = pin!(shutdown);
    let mut io = udp::AsyncIoUdp::new(socket, clock, config);
    let mut driver = arcly::datagram::DatagramDriver::new(service.as_mut(), config);
    future::poll_fn(|cx| driver.poll_drive(cx, &mut io, shutdown.as_mut())).await;
    Ok(())
}

/// A seed for a new session's randomness: a process-wide counter mixed with
/// the wall clock (adapters may read clocks; the machines may not).
pub fn connection_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    splitmix64(t ^ n.rotate_left(32))
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
