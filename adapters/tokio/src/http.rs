//! HTTP serving of an [`HttpRouter`] (HLS / LL-HLS) with hyper 1, HTTP/1.1
//! with keep-alive.
//!
//! Per request: the body is ignored, the head goes to
//! [`HttpRouter::handle`]; a [`Routed::Wait`] is driven with
//! `tokio::select!` on the signal (from its epoch), a sleep to its deadline,
//! and the server's shutdown, then [`HttpRouter::resume`] answers or parks
//! again. Per muxed stream, one task runs [`HlsStream::pump`] and does what
//! its [`PumpState`] says; the server spawns it when
//! [`HlsService::spawn_signal`](arcly::http::HlsService::spawn_signal)
//! announces a new stream.
//!
//! The system clock is read once, at start, to anchor the playlists'
//! `EXT-X-PROGRAM-DATE-TIME` ([`HttpServeConfig::program_date_time`]).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use arcly::http::{HlsStream, HttpRouter, PumpState, Routed, WallClock};
use arcly::time::Clock;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

/// Settings of [`serve_http_with`].
#[derive(Debug, Clone)]
pub struct HttpServeConfig {
    /// Most connections served at once; more are accepted and closed.
    pub max_connections: usize,
    /// After the shutdown future completes: how long connections get to
    /// finish their current response before their tasks are aborted.
    pub shutdown_grace: Duration,
    /// A connection that has not sent a complete request head within this
    /// long is closed (slow-loris bound).
    pub header_read_timeout: Duration,
    /// Most bytes buffered per connection for a request head (at least
    /// 8192, hyper's minimum); a larger head gets 431.
    pub max_header_bytes: usize,
    /// Set `TCP_NODELAY` on accepted sockets.
    pub nodelay: bool,
    /// Anchor the router's HLS service to the system clock (UTC) at this
    /// server's clock origin
    /// ([`HlsService::set_wall_clock`](arcly::http::HlsService::set_wall_clock)), so media
    /// playlists carry `EXT-X-PROGRAM-DATE-TIME` (draft-pantos-hls-rfc8216bis
    /// §4.4.4.6). `false` leaves the router's own setting
    /// (`HlsServiceConfig::wall_clock`, which must then refer to this
    /// server's clock: in practice, `None`, no dates).
    pub program_date_time: bool,
}

impl Default for HttpServeConfig {
    fn default() -> Self {
        HttpServeConfig {
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(2),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            nodelay: true,
            program_date_time: true,
        }
    }
}

/// Serves `router` on every connection accepted on `listener` until
/// `shutdown` completes, with [`HttpServeConfig::default`]. Also runs the
/// per-stream HLS pump tasks. Serve one router with one `serve_http` call
/// (the pump tasks of its streams live in that call).
///
/// Must run inside a tokio runtime.
pub async fn serve_http(
    listener: TcpListener,
    router: Arc<HttpRouter>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_http_with(listener, router, shutdown, HttpServeConfig::default()).await
}

/// [`serve_http`] with explicit settings.
pub async fn serve_http_with(
    listener: TcpListener,
    router: Arc<HttpRouter>,
    shutdown: impl Future<Output = ()>,
    config: HttpServeConfig,
) -> io::Result<()> {
    let origin = std::time::Instant::now();
    let clock = Clock::new(origin);
    if config.program_date_time {
        // Read together with the origin: `Instant` 0 of `clock` is this UTC time.
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        router.hls().set_wall_clock(Some(WallClock::new(unix)));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut pumps = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let spawn = router.hls().spawn_signal();
    let local = listener.local_addr().ok();
    tracing::debug!(?local, "serving HTTP");
    loop {
        // Epoch first, then drain: a stream queued after the drain moves it.
        let spawn_epoch = spawn.epoch();
        while let Some(stream) = router.hls().poll_new_stream() {
            let span = tracing::debug_span!("hls", stream = %stream.key());
            pumps.spawn(pump_task(stream, clock, stop_rx.clone()).instrument(span));
        }
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = spawn.wait(spawn_epoch) => {}
            Some(res) = conns.join_next(), if !conns.is_empty() => log_panic(res, "connection"),
            Some(res) = pumps.join_next(), if !pumps.is_empty() => log_panic(res, "HLS pump"),
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(?local, "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if conns.len() >= config.max_connections {
                    tracing::warn!(%peer, max = config.max_connections, "refusing HTTP connection: too many connections");
                    drop(stream);
                    continue;
                }
                if config.nodelay {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, "TCP_NODELAY: {e}");
                    }
                }
                let router = router.clone();
                let stop = stop_rx.clone();
                let config = config.clone();
                let span = tracing::debug_span!("http", %peer);
                conns.spawn(serve_connection(stream, router, clock, stop, config).instrument(span));
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        while conns.join_next().await.is_some() {}
        while pumps.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = conns.len(),
            "HTTP connections did not finish within the shutdown grace; aborting them"
        );
        conns.shutdown().await;
        pumps.shutdown().await;
    }
    Ok(())
}

fn log_panic(res: Result<(), tokio::task::JoinError>, what: &str) {
    if let Err(e) = res {
        if e.is_panic() {
            tracing::error!("{what} task panicked: {e}");
        }
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One stream's pump loop (see [`PumpState`]).
async fn pump_task(stream: Arc<HlsStream>, clock: Clock, stop: watch::Receiver<bool>) {
    let mut stop = pin!(stopped(stop));
    loop {
        let now = clock.instant(std::time::Instant::now());
        match stream.pump(now) {
            PumpState::Busy => tokio::task::yield_now().await,
            PumpState::Wait {
                signal,
                epoch,
                deadline,
            } => {
                let until = tokio::time::Instant::from_std(clock.to_std(deadline));
                tokio::select! {
                    _ = signal.wait(epoch) => {}
                    _ = tokio::time::sleep_until(until) => {}
                    _ = &mut stop => break,
                }
            }
            PumpState::Done => break,
        }
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    router: Arc<HttpRouter>,
    clock: Clock,
    stop: watch::Receiver<bool>,
    config: HttpServeConfig,
) {
    let svc_stop = stop.clone();
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let router = router.clone();
        let stop = svc_stop.clone();
        async move { Ok::<_, Infallible>(respond(&router, clock, req, stop).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.max(8192))
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = pin!(conn);
    let result = tokio::select! {
        res = conn.as_mut() => res,
        _ = stopped(stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("HTTP connection ended: {e}");
    }
}

/// Routes one request, driving parked requests until they are answered.
async fn respond(
    router: &HttpRouter,
    clock: Clock,
    req: hyper::Request<Incoming>,
    stop: watch::Receiver<bool>,
) -> hyper::Response<Full<Bytes>> {
    let started = std::time::Instant::now();
    let (parts, _body) = req.into_parts();
    let req = http::Request::from_parts(parts, ());
    let mut stop = pin!(stopped(stop));
    let mut routed = router.handle(&req, clock.instant(started));
    let resp = loop {
        match routed {
            Routed::Response(resp) => break resp,
            Routed::Wait(wait) => {
                let until = tokio::time::Instant::from_std(clock.to_std(wait.deadline));
                tokio::select! {
                    _ = wait.signal.wait(wait.epoch) => {}
                    _ = tokio::time::sleep_until(until) => {}
                    _ = &mut stop => {
                        let mut resp = http::Response::new(Bytes::from_static(b"503 Service Unavailable: shutting down\n"));
                        *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                        break resp;
                    }
                }
                let now = clock.instant(std::time::Instant::now());
                routed = router.resume(&req, wait, now);
            }
        }
    };
    tracing::debug!(
        method = %req.method(),
        uri = %req.uri(),
        status = resp.status().as_u16(),
        bytes = resp.body().len(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "HTTP request"
    );
    resp.map(Full::new)
}
