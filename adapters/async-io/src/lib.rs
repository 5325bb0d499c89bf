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
//! That loop is `arcly::session::StreamDriver`, written once in core; this
//! crate gives it a `futures-io` stream, the clock and an `async_io::Timer`.
//!
//! The executor is the caller's: [`serve_tcp`] takes a spawner closure.
//!
//! For HLS / LL-HLS over HTTP, [`serve_http`] serves an `arcly::http::HttpRouter`
//! with hyper 1 (HTTP/1.1), spawning connections and per-stream pumps the same way.
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
mod http;
mod timer;
mod udp;

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Duration;

use arcly::session::serve::log_end;
use arcly::session::{
    CloseReason, ConnectionGuard, ConnectionTracker, SessionFactory, StreamConn, StreamSession,
};
use arcly::time::Clock;
use async_io::{Async, Timer};
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

/// Settings of one connection driver (`arcly::session::DriveConfig`).
pub use arcly::session::DriveConfig;
/// Settings of [`serve_tcp_with`] (`arcly::session::ServeConfig`).
pub use arcly::session::ServeConfig;
pub use http::{serve_http, serve_http_with, HttpServeConfig};
pub use udp::UdpConfig;

use arcly::datagram::{DatagramService, DatagramServiceFactory};

/// A connection's future, handed to the spawner of [`serve_tcp`].
pub type ConnectionFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

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
    let clock = Clock::new(std::time::Instant::now());
    let tracker = ConnectionTracker::new();
    let mut shutdown = pin!(shutdown);
    let local = listener.get_ref().local_addr().ok();
    tracing::debug!(?local, "serving TCP");
    loop {
        let accepted = future::or(
            async {
                (&mut shutdown).await;
                None
            },
            async {
                let limits = (config.max_connections, config.max_connections_per_ip);
                Some(accept_admitted(&listener, &tracker, limits, &clock, config.nodelay).await)
            },
        )
        .await;
        let Some((stream, peer, guard)) = accepted else {
            break;
        };
        arcly_socket::cap_send_buffer(socket2::SockRef::from(stream.get_ref()), config.send_buffer);
        let now = clock.instant(std::time::Instant::now());
        let conn = match stream.get_ref().local_addr() {
            Ok(at) => StreamConn::new(peer, at),
            Err(_) => StreamConn::from_peer(peer),
        };
        let session = factory.new_session(conn, now, connection_seed());
        let drive = config.drive.clone();
        let span = tracing::info_span!("conn", %peer);
        spawn(Box::pin(
            async move {
                let guard = guard;
                tracing::debug!("accepted");
                let stop = guard.tracker().stopped();
                let end = drive_stream_with(stream, session, clock, stop, &drive).await;
                log_end(&end, clock.instant(std::time::Instant::now()));
            }
            .instrument(span),
        ));
    }
    drop(listener);
    stop_and_drain(&tracker, config.shutdown_grace, "sessions").await;
    Ok(())
}

/// The next connection on `listener` that `tracker` admits (others are
/// closed at once), with `TCP_NODELAY` set if asked; accept errors are
/// logged and retried after 50 ms. Cancel-safe: nothing is awaited between
/// the accept and the return.
pub(crate) async fn accept_admitted(
    listener: &Async<TcpListener>,
    tracker: &Arc<ConnectionTracker>,
    (max_connections, max_per_ip): (usize, usize),
    clock: &Clock,
    nodelay: bool,
) -> (Async<TcpStream>, SocketAddr, ConnectionGuard) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                let local = listener.get_ref().local_addr().ok();
                tracing::warn!(?local, "accept failed: {e}");
                Timer::after(Duration::from_millis(50)).await;
                continue;
            }
        };
        let now = clock.instant(std::time::Instant::now());
        let Some(guard) = tracker.admit_from(peer, max_connections, max_per_ip, Some(now)) else {
            drop(stream);
            continue;
        };
        if nodelay {
            if let Err(e) = stream.get_ref().set_nodelay(true) {
                tracing::debug!(%peer, "TCP_NODELAY: {e}");
            }
        }
        return (stream, peer, guard);
    }
}

/// After the accept loop ended: tells the connections to stop, then waits
/// up to `grace` for them to end (`what` names them in the warning).
pub(crate) async fn stop_and_drain(tracker: &ConnectionTracker, grace: Duration, what: &str) {
    if tracker.stop() == 0 {
        return;
    }
    let drained = future::or(
        async {
            tracker.drained().await;
            true
        },
        async {
            Timer::after(grace).await;
            false
        },
    )
    .await;
    if !drained {
        tracing::warn!(
            left = tracker.active(),
            "{what} did not finish within the shutdown grace"
        );
    }
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
    let mut io = driver::AsyncIoStream::new(stream, clock);
    let mut driver = arcly::session::StreamDriver::new(config);
    future::poll_fn(|cx| driver.poll_drive(cx, session.as_mut(), &mut io, shutdown.as_mut())).await
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
    serve_udp_sockets(vec![socket], factory, shutdown, config).await
}

/// Serves one [`DatagramService`] from `factory` on several sockets (an
/// RTP + RTCP pair, several WebRTC ports): the service learns their local
/// addresses in this order ([`arcly::datagram::SocketIndex`]), and every
/// datagram in and out names its socket. Sockets bound to a wildcard
/// address report each datagram's destination address (`IP_PKTINFO` /
/// `IPV6_RECVPKTINFO` on Linux). Otherwise as [`serve_udp`].
pub async fn serve_udp_sockets(
    sockets: Vec<Async<std::net::UdpSocket>>,
    factory: impl DatagramServiceFactory,
    shutdown: impl Future<Output = ()>,
    config: &UdpConfig,
) -> io::Result<()> {
    let mut locals = Vec::with_capacity(sockets.len());
    for socket in &sockets {
        let local = socket.get_ref().local_addr()?;
        arcly_socket::prepare(socket2::SockRef::from(socket.get_ref()), config, local);
        locals.push(local);
    }
    let clock = Clock::new(std::time::Instant::now());
    let now = clock.instant(std::time::Instant::now());
    let service = factory.new_service(&locals, now, connection_seed());
    tracing::debug!(?locals, "serving UDP");
    drive_udp(&sockets, service, clock, shutdown, config).await
}

/// Drives `service` on `sockets` (in [`arcly::datagram::SocketIndex`]
/// order) until it is closed (after `shutdown` completes, or by itself).
/// `clock` is the origin of the service's [`arcly::Instant`]s (the one
/// whose `now` built the service).
pub async fn drive_udp(
    sockets: &[Async<std::net::UdpSocket>],
    mut service: Box<dyn DatagramService>,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
    config: &UdpConfig,
) -> io::Result<()> {
    let mut shutdown = pin!(shutdown);
    let mut io = udp::AsyncIoUdp::new(sockets, clock, config);
    let mut driver = arcly::datagram::DatagramDriver::new(service.as_mut(), config);
    future::poll_fn(|cx| driver.poll_drive(cx, &mut io, shutdown.as_mut())).await;
    Ok(())
}

/// A seed for a new session's randomness: a process-wide counter mixed with
/// the wall clock (adapters may read clocks; the machines may not).
pub fn connection_seed() -> u64 {
    arcly::session::serve::connection_seed(std::time::SystemTime::now())
}
