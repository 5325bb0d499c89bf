//! HTTP serving of an [`HttpRouter`] (its route table: HLS / LL-HLS and
//! whatever else is mounted) with hyper 1, HTTP/1.1 with keep-alive.
//!
//! Per request: the head goes to [`HttpRouter::admit`] (an early answer,
//! or the route's body limit), the body is read up to that limit (413 past
//! it), and the request goes to [`respond`] (`arcly::http::serve`, shared
//! with arcly-async-io), which routes it and drives a parked request
//! (`Routed::Wait`) through this file's [`HttpRuntime`]: `tokio::select!`
//! on the signal (from its epoch), a sleep to its deadline, and the
//! server's shutdown. Background work of the services (e.g. an HLS
//! stream's pump) comes from the router's job queue
//! ([`HttpRouter::jobs`]); each job is one task running [`run_job`].
//!
//! The system clock is read once, at start, to anchor the playlists'
//! `EXT-X-PROGRAM-DATE-TIME` ([`HttpServeConfig::program_date_time`]).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arcly::engine::SignalWait;
use arcly::http::serve::{
    anchor_wall_clock, body_refused, body_timed_out, log_connection_refused, log_dropped, respond,
    run_job, Dropped,
};
use arcly::http::{log_refusal, Admit, ClientAddr, HttpRouter, HttpRuntime, Waited};
use arcly::job::Job;
use arcly::time::{Clock, Instant};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

/// Settings of [`serve_http_with`] (`arcly::http::HttpServeConfig`).
pub use arcly::http::HttpServeConfig;

/// Serves `router` on every connection accepted on `listener` until
/// `shutdown` completes, with [`HttpServeConfig::default`]. Also runs the
/// router's background jobs (e.g. HLS pumps). Serve one router with one
/// `serve_http` call (the tasks of its jobs live in that call).
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
        anchor_wall_clock(&router, std::time::SystemTime::now());
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut pumps = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let jobs = router.jobs().signal();
    let local = listener.local_addr().ok();
    tracing::debug!(?local, "serving HTTP");
    loop {
        // Epoch first, then drain: a job queued after the drain moves it.
        let jobs_epoch = jobs.epoch();
        while let Some(job) = router.jobs().poll() {
            let span = tracing::debug_span!("job", job = %job.describe());
            pumps.spawn(job_task(job, clock, stop_rx.clone()).instrument(span));
        }
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = jobs.wait(jobs_epoch) => {}
            Some(res) = conns.join_next(), if !conns.is_empty() => log_panic(res, "connection"),
            Some(res) = pumps.join_next(), if !pumps.is_empty() => log_panic(res, "background job"),
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
                    let now = clock.instant(std::time::Instant::now());
                    log_connection_refused(peer, config.max_connections, now);
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
                conns.spawn(serve_connection(stream, peer, router, clock, stop, config).instrument(span));
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // One grace for both sets.
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    crate::timer::drain_until(&mut conns, deadline, "HTTP connections").await;
    crate::timer::drain_until(&mut pumps, deadline, "background jobs").await;
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

/// The clock, timer and shutdown of this server ([`HttpRuntime`]).
pub(crate) struct TokioRuntime {
    pub(crate) clock: Clock,
    pub(crate) stop: watch::Receiver<bool>,
}

impl HttpRuntime for TokioRuntime {
    fn now(&self) -> Instant {
        self.clock.instant(std::time::Instant::now())
    }

    fn wait(&self, wake: SignalWait, deadline: Instant) -> impl Future<Output = Waited> + Send {
        let until = tokio::time::Instant::from_std(self.clock.to_std(deadline));
        let stop = self.stop.clone();
        async move {
            tokio::select! {
                _ = wake => Waited::Woken,
                _ = tokio::time::sleep_until(until) => Waited::Woken,
                _ = stopped(stop) => Waited::Stopped,
            }
        }
    }

    fn yield_now(&self) -> impl Future<Output = ()> + Send {
        tokio::task::yield_now()
    }

    fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// One background job's loop (see [`arcly::job::JobState`]).
async fn job_task(job: Arc<dyn Job>, clock: Clock, stop: watch::Receiver<bool>) {
    run_job(job, &TokioRuntime { clock, stop }).await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Arc<HttpRouter>,
    clock: Clock,
    stop: watch::Receiver<bool>,
    config: HttpServeConfig,
) {
    let svc_stop = stop.clone();
    let body_timeout = config.header_read_timeout;
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let router = router.clone();
        let stop = svc_stop.clone();
        counted.fetch_add(1, Ordering::Relaxed);
        async move {
            Ok::<_, Infallible>(respond_hyper(&router, clock, peer, req, stop, body_timeout).await)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.read_buffer_bytes())
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
        let now = clock.instant(std::time::Instant::now());
        let requests = requests.load(Ordering::Relaxed);
        match Dropped::from_codec(
            e.is_timeout(),
            e.is_parse_too_large(),
            e.is_parse(),
            requests,
        ) {
            Some(why) => log_dropped(peer, why, now),
            None => tracing::debug!("HTTP connection ended: {e}"),
        }
    }
}

/// Routes one request, driving parked requests until they are answered.
async fn respond_hyper(
    router: &HttpRouter,
    clock: Clock,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
    stop: watch::Receiver<bool>,
    body_timeout: Duration,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let mut head = http::Request::from_parts(parts, ());
    head.extensions_mut().insert(ClientAddr(peer));
    let limit = match router.admit(&head) {
        Admit::Respond(resp) => {
            log_refusal(&head, &resp, clock.instant(std::time::Instant::now()));
            return resp.map(Full::new);
        }
        Admit::Read { limit } => limit,
    };
    // A slow body is bounded like a slow head.
    let read = tokio::time::timeout(body_timeout, Limited::new(body, limit).collect()).await;
    let is_head = head.method() == http::Method::HEAD;
    let body = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) => {
            let too_large = e.is::<http_body_util::LengthLimitError>();
            let resp = body_refused(too_large, is_head);
            log_refusal(&head, &resp, clock.instant(std::time::Instant::now()));
            return resp.map(Full::new);
        }
        Err(_) => {
            let resp = body_timed_out(is_head);
            log_refusal(&head, &resp, clock.instant(std::time::Instant::now()));
            return resp.map(Full::new);
        }
    };
    let (parts, ()) = head.into_parts();
    let req = http::Request::from_parts(parts, body);
    respond(router, &req, &TokioRuntime { clock, stop })
        .await
        .map(Full::new)
}
