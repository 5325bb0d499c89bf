//! # arcly-tokio — drive arcly sessions on tokio
//!
//! A small generic driver: one task per TCP connection runs the
//! [`StreamSession`] loop of `arcly::session`. No protocol logic lives here;
//! any [`SessionFactory`] (e.g. `arcly::rtmp::RtmpSessionFactory`) plugs in.
//! For UDP protocols, [`serve_udp`] drives one `arcly::datagram`
//! [`DatagramService`] per socket (e.g. SRT) in one task, and
//! [`serve_udp_sockets`] one service on several sockets (RTP + RTCP).
//!
//! Per connection, until the session is closed and flushed:
//! 1. bytes read into a fixed buffer → `handle_input` (EOF → `handle_input(now, &[])`);
//! 2. the session's deadline (`poll_timeout`, via a tokio timer) → `handle_timeout`;
//! 3. everything `poll_transmit` yields is written with **one vectored write**
//!    (up to 1024 `IoSlice`s per call, partial writes resumed across buffers);
//! 4. once the previous write completed, `handle_media` (the media signal's
//!    epoch is read first, then the task waits on `Signal::wait(seen)`). A slow
//!    socket therefore leaves its viewer behind in the engine's ring instead of
//!    growing a queue here;
//! 5. a closed session is flushed (bounded by [`DriveConfig::close_linger`]),
//!    then the write side is shut down.
//!
//! That loop is `arcly::session::StreamDriver`, written once in core; this
//! crate gives it a tokio stream, the clock and a tokio timer.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! # let factory: std::sync::Arc<dyn arcly::session::SessionFactory> = unimplemented!();
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:1935").await?;
//! arcly_tokio::serve_tcp(listener, factory, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

mod driver;
mod http;
pub mod jobs;
mod timer;
mod udp;

pub mod record;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use arcly::session::serve::log_end;
use arcly::session::{CloseReason, ConnectionTracker, SessionFactory, StreamConn, StreamSession};
use arcly::time::Clock;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::Instrument;

/// Settings of one connection driver (`arcly::session::DriveConfig`).
pub use arcly::session::DriveConfig;
/// Settings of [`serve_tcp_with`] (`arcly::session::ServeConfig`).
pub use arcly::session::ServeConfig;
pub use http::{serve_http, serve_http_with, HttpServeConfig};
pub use udp::UdpConfig;

use arcly::datagram::{DatagramService, DatagramServiceFactory};

/// Serves every connection accepted on `listener` with a session from
/// `factory`, one task per connection, until `shutdown` completes; then stops
/// accepting, calls `close()` on every session and gives them
/// [`ServeConfig::shutdown_grace`] to flush. Uses [`ServeConfig::default`].
///
/// Must run inside a tokio runtime (tasks are spawned with `tokio::spawn`).
pub async fn serve_tcp(
    listener: TcpListener,
    factory: Arc<dyn SessionFactory>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_tcp_with(listener, factory, shutdown, ServeConfig::default()).await
}

/// [`serve_tcp`] with explicit settings.
pub async fn serve_tcp_with(
    listener: TcpListener,
    factory: Arc<dyn SessionFactory>,
    shutdown: impl Future<Output = ()>,
    config: ServeConfig,
) -> io::Result<()> {
    let clock = Clock::new(std::time::Instant::now());
    let tracker = ConnectionTracker::new();
    let mut tasks = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let local = listener.local_addr().ok();
    tracing::debug!(?local, "serving TCP");
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(res) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = res {
                    if e.is_panic() {
                        tracing::error!("connection task panicked: {e}");
                    }
                }
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(?local, "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let now = clock.instant(std::time::Instant::now());
                let Some(guard) = tracker.admit_from(
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
                let conn = match stream.local_addr() {
                    Ok(at) => StreamConn::new(peer, at),
                    Err(_) => StreamConn::from_peer(peer),
                };
                let session = factory.new_session(conn, now, connection_seed());
                let drive = config.drive.clone();
                let span = tracing::info_span!("conn", %peer);
                tasks.spawn(
                    async move {
                        tracing::debug!("accepted");
                        let stop = guard.tracker().stopped();
                        let end = drive_stream_with(stream, session, clock, stop, &drive).await;
                        log_end(&end, clock.instant(std::time::Instant::now()));
                    }
                    .instrument(span),
                );
            }
        }
    }
    drop(listener);
    tracker.stop();
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    timer::drain_until(&mut tasks, deadline, "sessions").await;
    Ok(())
}

/// Drives `session` over `stream` until the session is closed and flushed.
/// Returns why it closed; an I/O error if the transport failed first.
///
/// `clock` turns `std::time::Instant` readings into the session's
/// [`arcly::Instant`]s; use one clock per session factory (same origin as
/// the `now` passed to [`SessionFactory::new_session`]).
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
        std::future::pending(),
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
    let mut io = driver::TokioStream::new(stream, clock);
    let mut driver = arcly::session::StreamDriver::new(config);
    std::future::poll_fn(|cx| driver.poll_drive(cx, session.as_mut(), &mut io, shutdown.as_mut()))
        .await
}

/// Connects to `addr` and drives `session` (a client-role session, e.g. a
/// player or relay machine wrapped as a [`StreamSession`]) over it.
pub async fn connect_tcp(
    addr: SocketAddr,
    session: Box<dyn StreamSession>,
    clock: Clock,
) -> io::Result<CloseReason> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    drive_stream(stream, session, clock).await
}

/// Serves one [`DatagramService`] from `factory` on `socket` (SRT, ...)
/// in the calling task until `shutdown` completes; then closes the service
/// and drives it until it has said goodbye (bounded by
/// [`UdpConfig::close_linger`]). Uses [`UdpConfig::default`]; see the
/// `udp` module docs for the loop.
///
/// ```no_run
/// # async fn run(factory: impl arcly::datagram::DatagramServiceFactory) -> std::io::Result<()> {
/// let socket = tokio::net::UdpSocket::bind("0.0.0.0:8890").await?;
/// arcly_tokio::serve_udp(socket, factory, async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await
/// # }
/// ```
pub async fn serve_udp(
    socket: tokio::net::UdpSocket,
    factory: impl DatagramServiceFactory,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_udp_with(socket, factory, shutdown, &UdpConfig::default()).await
}

/// [`serve_udp`] with explicit settings.
pub async fn serve_udp_with(
    socket: tokio::net::UdpSocket,
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
    sockets: Vec<tokio::net::UdpSocket>,
    factory: impl DatagramServiceFactory,
    shutdown: impl Future<Output = ()>,
    config: &UdpConfig,
) -> io::Result<()> {
    let mut locals = Vec::with_capacity(sockets.len());
    for socket in &sockets {
        let local = socket.local_addr()?;
        udp::prepare(socket2::SockRef::from(socket), config, local);
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
    sockets: &[tokio::net::UdpSocket],
    mut service: Box<dyn DatagramService>,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
    config: &UdpConfig,
) -> io::Result<()> {
    let mut shutdown = pin!(shutdown);
    let mut io = udp::TokioUdp::new(sockets, clock, config);
    let mut driver = arcly::datagram::DatagramDriver::new(service.as_mut(), config);
    std::future::poll_fn(|cx| driver.poll_drive(cx, &mut io, shutdown.as_mut())).await;
    Ok(())
}

/// A seed for a new session's randomness: a process-wide counter mixed with
/// the wall clock (adapters may read clocks; the machines may not).
pub fn connection_seed() -> u64 {
    arcly::session::serve::connection_seed(std::time::SystemTime::now())
}
