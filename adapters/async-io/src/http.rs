//! HTTP serving of an [`HttpRouter`] (its route table: HLS / LL-HLS and
//! whatever else is mounted) with hyper 1, HTTP/1.1 with keep-alive, on
//! async-io and the caller's executor.
//!
//! This file is only IO: hyper's `rt::Read` / `rt::Write` over a
//! `futures-io` stream, hyper's `rt::Timer` over [`async_io::Timer`], the
//! accept loop, and an [`HttpRuntime`] (clock, wait on a signal or a
//! deadline or the shutdown, yield) for the loops written once in
//! `arcly::http::serve`: [`respond`] (a parked request waits and resumes
//! until the router answers; the body is read first, up to the route's
//! limit from [`HttpRouter::admit`]) and [`run_job`] (one future per
//! background job of the router's job queue, e.g. an HLS stream's pump).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arcly::engine::SignalWait;
use arcly::http::serve::{
    anchor_wall_clock, body_refused, body_timed_out, log_dropped, respond, run_job, Dropped,
};
use arcly::http::{log_refusal, Admit, ClientAddr, HttpRouter, HttpRuntime, Waited};
use arcly::session::{ConnectionGuard, ConnectionTracker};
use arcly::time::{Clock, Instant};
use async_io::{Async, Timer};
use futures_lite::future;
use futures_lite::io::{AsyncRead, AsyncWrite};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::rt::{ReadBufCursor, Sleep};
use hyper::service::service_fn;
use tracing::Instrument;

/// Settings of [`serve_http_with`] (`arcly::http::HttpServeConfig`).
pub use arcly::http::HttpServeConfig;

use crate::{accept_admitted, stop_and_drain, ConnectionFuture};

/// Bytes read from the socket per `poll_read` at most (request heads).
const READ_CHUNK: usize = 8192;

/// Serves `router` on every connection accepted on `listener` until
/// `shutdown` completes, with [`HttpServeConfig::default`]. Each connection
/// and each background job of the router (e.g. an HLS stream's pump) is
/// one future handed to `spawn` (e.g. `|f| smol::spawn(f).detach()` or
/// `|f| { async_std::task::spawn(f); }`). Serve one router with one
/// `serve_http` call (its jobs are spawned by that call).
///
/// On shutdown: stops accepting, answers parked requests with 503, lets
/// connections finish their response for up to
/// [`HttpServeConfig::shutdown_grace`], after which they drop themselves.
///
/// ```no_run
/// # fn run(engine: arcly::Engine) -> std::io::Result<()> {
/// # let ctrl_c = std::future::pending::<()>();
/// use arcly::http::{HttpConfig, HttpRouter};
/// let router = std::sync::Arc::new(HttpRouter::new(engine, HttpConfig::default()));
/// smol::block_on(async {
///     let listener = async_io::Async::<std::net::TcpListener>::bind(([0, 0, 0, 0], 8888))?;
///     arcly_async_io::serve_http(listener, router, ctrl_c, |f| smol::spawn(f).detach()).await
/// })
/// # }
/// ```
pub async fn serve_http<Sp>(
    listener: Async<TcpListener>,
    router: Arc<HttpRouter>,
    shutdown: impl Future<Output = ()>,
    spawn: Sp,
) -> io::Result<()>
where
    Sp: Fn(ConnectionFuture),
{
    serve_http_with(
        listener,
        router,
        shutdown,
        spawn,
        HttpServeConfig::default(),
    )
    .await
}

/// [`serve_http`] with explicit settings.
pub async fn serve_http_with<Sp>(
    listener: Async<TcpListener>,
    router: Arc<HttpRouter>,
    shutdown: impl Future<Output = ()>,
    spawn: Sp,
    config: HttpServeConfig,
) -> io::Result<()>
where
    Sp: Fn(ConnectionFuture),
{
    enum Event {
        Stop,
        NewJobs,
        Accepted((Async<TcpStream>, SocketAddr, ConnectionGuard)),
    }
    let clock = Clock::new(std::time::Instant::now());
    if config.program_date_time {
        // Read together with the origin: `Instant` 0 of `clock` is this UTC time.
        anchor_wall_clock(&router, std::time::SystemTime::now());
    }
    let tracker = ConnectionTracker::new();
    let rt = Arc::new(AsyncIoRuntime {
        clock,
        tracker: tracker.clone(),
    });
    let new_jobs = router.jobs().signal();
    let mut shutdown = pin!(shutdown);
    let local = listener.get_ref().local_addr().ok();
    tracing::debug!(?local, "serving HTTP");
    loop {
        // Epoch first, then drain: a job queued after the drain moves it.
        let seen = new_jobs.epoch();
        while let Some(job) = router.jobs().poll() {
            let span = tracing::debug_span!("job", job = %job.describe());
            let rt = rt.clone();
            spawn(Box::pin(
                async move { run_job(job, rt.as_ref()).await }.instrument(span),
            ));
        }
        let event = future::or(
            future::or(
                async {
                    (&mut shutdown).await;
                    Event::Stop
                },
                async {
                    new_jobs.wait(seen).await;
                    Event::NewJobs
                },
            ),
            async {
                let limits = (config.max_connections, 0);
                Event::Accepted(
                    accept_admitted(&listener, &tracker, limits, &clock, config.nodelay).await,
                )
            },
        )
        .await;
        let (stream, peer, guard) = match event {
            Event::Stop => break,
            Event::NewJobs => continue,
            Event::Accepted(a) => a,
        };
        let router = router.clone();
        let rt = rt.clone();
        let config = config.clone();
        let span = tracing::debug_span!("http", %peer);
        spawn(Box::pin(
            async move {
                let _guard = guard;
                serve_connection(HyperIo(stream), peer, router, rt, &config).await;
            }
            .instrument(span),
        ));
    }
    drop(listener);
    stop_and_drain(&tracker, config.shutdown_grace, "HTTP connections").await;
    Ok(())
}

/// One HTTP/1.1 connection until the peer closes it, hyper ends it, or the
/// server stops (then: the current response, bounded by the grace).
async fn serve_connection<S>(
    io: HyperIo<S>,
    peer: SocketAddr,
    router: Arc<HttpRouter>,
    rt: Arc<AsyncIoRuntime>,
    config: &HttpServeConfig,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_rt = rt.clone();
    let body_timeout = config.header_read_timeout;
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let router = router.clone();
        let rt = svc_rt.clone();
        counted.fetch_add(1, Ordering::Relaxed);
        async move {
            let (parts, body) = req.into_parts();
            let mut head = http::Request::from_parts(parts, ());
            head.extensions_mut().insert(ClientAddr(peer));
            let limit = match router.admit(&head) {
                Admit::Respond(resp) => {
                    log_refusal(&head, &resp, rt.now());
                    return Ok::<_, Infallible>(resp.map(Full::new));
                }
                Admit::Read { limit } => limit,
            };
            // A slow body is bounded like a slow head.
            let read = future::or(
                async { Some(Limited::new(body, limit).collect().await) },
                async {
                    Timer::after(body_timeout).await;
                    None
                },
            )
            .await;
            let is_head = head.method() == http::Method::HEAD;
            let body = match read {
                Some(Ok(collected)) => collected.to_bytes(),
                None => {
                    let resp = body_timed_out(is_head);
                    log_refusal(&head, &resp, rt.now());
                    return Ok(resp.map(Full::new));
                }
                Some(Err(e)) => {
                    let too_large = e.is::<http_body_util::LengthLimitError>();
                    let resp = body_refused(too_large, is_head);
                    log_refusal(&head, &resp, rt.now());
                    return Ok(resp.map(Full::new));
                }
            };
            let (parts, ()) = head.into_parts();
            let req = http::Request::from_parts(parts, body);
            let resp = respond(&router, &req, rt.as_ref()).await;
            Ok(resp.map(Full::new))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(AsyncIoTimer)
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.read_buffer_bytes())
        .keep_alive(true);
    let mut conn = pin!(builder.serve_connection(io, service));
    let served = future::or(async { Some(conn.as_mut().await) }, async {
        rt.tracker.stopped().await;
        None
    })
    .await;
    let result = match served {
        Some(result) => result,
        None => {
            conn.as_mut().graceful_shutdown();
            let graceful = future::or(async { Some(conn.as_mut().await) }, async {
                Timer::after(config.shutdown_grace).await;
                None
            })
            .await;
            match graceful {
                Some(result) => result,
                None => {
                    tracing::debug!("HTTP connection dropped after the shutdown grace");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        let requests = requests.load(Ordering::Relaxed);
        match Dropped::from_codec(
            e.is_timeout(),
            e.is_parse_too_large(),
            e.is_parse(),
            requests,
        ) {
            Some(why) => log_dropped(peer, why, rt.now()),
            None => tracing::debug!("HTTP connection ended: {e}"),
        }
    }
}

/// The clock, timer and shutdown of one server ([`HttpRuntime`]).
struct AsyncIoRuntime {
    clock: Clock,
    tracker: Arc<ConnectionTracker>,
}

impl HttpRuntime for AsyncIoRuntime {
    fn now(&self) -> Instant {
        self.clock.instant(std::time::Instant::now())
    }

    fn wait(&self, wake: SignalWait, deadline: Instant) -> impl Future<Output = Waited> + Send {
        let timer = Timer::at(self.clock.to_std(deadline));
        let tracker = &self.tracker;
        let woken = future::or(
            async {
                wake.await;
                Waited::Woken
            },
            async {
                timer.await;
                Waited::Woken
            },
        );
        future::or(woken, async move {
            tracker.stopped().await;
            Waited::Stopped
        })
    }

    fn yield_now(&self) -> impl Future<Output = ()> + Send {
        future::yield_now()
    }
}

/// A `futures-io` stream as hyper's `rt::Read` + `rt::Write`.
struct HyperIo<S>(S);

impl<S: AsyncRead + Unpin> hyper::rt::Read for HyperIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // hyper's cursor is uninitialized memory; filling it directly needs
        // `unsafe`, so a head is read through a zeroed chunk (heads are small).
        let mut chunk = [0u8; READ_CHUNK];
        let want = buf.remaining().min(READ_CHUNK);
        let dst = chunk.get_mut(..want).unwrap_or_default();
        match Pin::new(&mut self.get_mut().0).poll_read(cx, dst) {
            Poll::Ready(Ok(n)) => {
                buf.put_slice(dst.get(..n).unwrap_or_default());
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_close(cx)
    }
}

/// hyper's `rt::Timer` on [`async_io::Timer`] (header-read timeout,
/// keep-alive).
#[derive(Debug, Clone, Copy)]
struct AsyncIoTimer;

/// One [`async_io::Timer`] as hyper's `rt::Sleep`.
struct TimerSleep(Timer);

impl Future for TimerSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Sleep for TimerSleep {}

impl hyper::rt::Timer for AsyncIoTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(TimerSleep(Timer::after(duration)))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(TimerSleep(Timer::at(deadline)))
    }
}
