//! The runtime-free part of every adapter's HTTP server (`serve_http`): the
//! settings, the parked-request loop around [`HttpRouter::handle`] /
//! [`HttpRouter::resume`], the loop around a background [`Job`] (e.g. an
//! HLS stream's pump) and the wall-clock anchor. An adapter implements [`HttpRuntime`] (its
//! clock, one wait on a signal or a deadline or its shutdown, a yield) and
//! keeps only the accepting, the HTTP/1.1 codec and the spawning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response};

use super::{strip_for_head, unavailable, HttpRouter, Routed, WallClock};
use crate::engine::SignalWait;
use crate::job::{Job, JobFiles, JobState, NoFiles};
use crate::log_limit::LogLimiter;
use crate::time::Instant;

/// Settings of an adapter's `serve_http_with` (re-exported there).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpServeConfig {
    /// Most connections served at once; more are accepted and closed.
    pub max_connections: usize,
    /// After the shutdown future completes: how long connections get to
    /// finish their current response before they are dropped.
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
    /// ([`HlsService::set_wall_clock`](super::HlsService::set_wall_clock)), so media
    /// playlists carry `EXT-X-PROGRAM-DATE-TIME` (draft-pantos-hls-rfc8216bis
    /// §4.4.4.6). `false` leaves the router's own setting
    /// (`HlsServiceConfig::wall_clock`, which must then refer to this
    /// server's clock: in practice, `None`, no dates).
    pub program_date_time: bool,
}
/// Builder-style setters: the struct is `#[non_exhaustive]`, so other
/// crates start from its default (or constructor) value and chain these.
impl HttpServeConfig {
    /// Sets [`max_connections`](Self::max_connections).
    #[must_use]
    pub fn with_max_connections(mut self, max_connections: usize) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// Sets [`shutdown_grace`](Self::shutdown_grace).
    #[must_use]
    pub fn with_shutdown_grace(mut self, shutdown_grace: Duration) -> Self {
        self.shutdown_grace = shutdown_grace;
        self
    }

    /// Sets [`header_read_timeout`](Self::header_read_timeout).
    #[must_use]
    pub fn with_header_read_timeout(mut self, header_read_timeout: Duration) -> Self {
        self.header_read_timeout = header_read_timeout;
        self
    }

    /// Sets [`max_header_bytes`](Self::max_header_bytes).
    #[must_use]
    pub fn with_max_header_bytes(mut self, max_header_bytes: usize) -> Self {
        self.max_header_bytes = max_header_bytes;
        self
    }

    /// Sets [`nodelay`](Self::nodelay).
    #[must_use]
    pub fn with_nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// Sets [`program_date_time`](Self::program_date_time).
    #[must_use]
    pub fn with_program_date_time(mut self, program_date_time: bool) -> Self {
        self.program_date_time = program_date_time;
        self
    }
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

impl HttpServeConfig {
    /// The hyper read-buffer bound for [`max_header_bytes`](Self::max_header_bytes):
    /// at least 8192 (hyper refuses less).
    pub fn read_buffer_bytes(&self) -> usize {
        self.max_header_bytes.max(8192)
    }
}

/// How an [`HttpRuntime::wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The signal moved or the deadline passed: look again.
    Woken,
    /// The server is shutting down.
    Stopped,
}

/// What an adapter lends the loops of this module: its clock, its timer and
/// its shutdown.
pub trait HttpRuntime: Sync {
    /// The current time on the server's clock (the one its router's
    /// `Instant`s count on).
    fn now(&self) -> Instant;

    /// Completes when `wake` completes or `deadline` passes
    /// ([`Waited::Woken`]), or when the server stops ([`Waited::Stopped`]).
    fn wait(&self, wake: SignalWait, deadline: Instant) -> impl Future<Output = Waited> + Send;

    /// Lets the runtime's other tasks run once.
    fn yield_now(&self) -> impl Future<Output = ()> + Send;

    /// Whether the server is stopping (a job that is always busy sees the
    /// shutdown here, not in [`wait`](Self::wait)). Default: never.
    fn is_stopping(&self) -> bool {
        false
    }
}

/// Why an adapter's HTTP codec dropped a connection before the router saw
/// a request (docs/security.md, item 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// No complete request head within
    /// [`HttpServeConfig::header_read_timeout`] on a connection that made
    /// no request yet (slow-loris, or a silent connection). An idle
    /// keep-alive connection closed after a served request is not a drop.
    HeaderTimeout,
    /// Request head larger than [`HttpServeConfig::max_header_bytes`], or a
    /// request line too long for the codec: answered 431 / 414.
    HeadTooLarge,
    /// Not an HTTP/1.1 request: answered 400.
    Malformed,
}

impl Dropped {
    /// Classifies an HTTP/1.1 codec's connection error (hyper:
    /// `is_timeout()`, `is_parse_too_large()`, `is_parse()`) on a
    /// connection that made `requests` requests so far; `None` for what is
    /// not a drop (the peer went away, an idle keep-alive timed out).
    pub fn from_codec(
        timeout: bool,
        too_large: bool,
        parse: bool,
        requests: usize,
    ) -> Option<Dropped> {
        if too_large {
            Some(Dropped::HeadTooLarge)
        } else if parse {
            Some(Dropped::Malformed)
        } else if timeout && requests == 0 {
            Some(Dropped::HeaderTimeout)
        } else {
            None
        }
    }

    fn why(self) -> &'static str {
        match self {
            Dropped::HeaderTimeout => "no request head within the header read timeout",
            Dropped::HeadTooLarge => "request head too large (431/414)",
            Dropped::Malformed => "malformed request (400)",
        }
    }
}

static LOG_HEADER_TIMEOUT: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
static LOG_HEAD_TOO_LARGE: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
static LOG_MALFORMED: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
static LOG_CONNECTION_REFUSED: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));

/// Logs a connection the adapter's codec dropped: one `info` line, at most
/// 10 per 10 s per kind, the next one saying how many were `suppressed`.
pub fn log_dropped(peer: SocketAddr, why: Dropped, now: Instant) {
    let limiter = match why {
        Dropped::HeaderTimeout => &LOG_HEADER_TIMEOUT,
        Dropped::HeadTooLarge => &LOG_HEAD_TOO_LARGE,
        Dropped::Malformed => &LOG_MALFORMED,
    };
    if let Some(suppressed) = limiter.check(now) {
        tracing::info!(%peer, suppressed, "HTTP connection dropped: {}", why.why());
    }
}

/// Logs a connection refused because
/// [`HttpServeConfig::max_connections`] are open: one `warn` line, at most
/// 10 per 10 s, the next one saying how many were `suppressed`.
pub fn log_connection_refused(peer: SocketAddr, max: usize, now: Instant) {
    if let Some(suppressed) = LOG_CONNECTION_REFUSED.check(now) {
        tracing::warn!(
            %peer,
            max,
            suppressed,
            "refusing HTTP connection: too many connections"
        );
    }
}

/// Routes one request (with its body, read up to the limit
/// [`HttpRouter::admit`] gave) to the end: a
/// [`Routed::Wait`] waits with [`HttpRuntime::wait`] and resumes until the
/// router answers; a shutdown during the wait answers 503. Logs the request
/// at `debug`.
pub async fn respond<R: HttpRuntime>(
    router: &HttpRouter,
    req: &Request<Bytes>,
    rt: &R,
) -> Response<Bytes> {
    let started = rt.now();
    let mut routed = router.handle(req, started);
    let resp = loop {
        match routed {
            Routed::Response(resp) => break resp,
            Routed::Wait(wait) => {
                let wake = wait.signal.wait(wait.epoch);
                if rt.wait(wake, wait.deadline).await == Waited::Stopped {
                    let head = req.method() == Method::HEAD;
                    break strip_for_head(unavailable("server shutting down"), head);
                }
                routed = router.resume(req, wait, rt.now());
            }
        }
    };
    tracing::debug!(
        method = %req.method(),
        uri = %req.uri(),
        status = resp.status().as_u16(),
        bytes = resp.body().len(),
        ms = rt.now().saturating_duration_since(started).as_secs_f64() * 1000.0,
        "HTTP request"
    );
    resp
}

/// The answer when a request body could not be read to the end: 413 when
/// it went past the route's limit ([`HttpRouter::admit`]), else 400. The
/// connection is closed after it.
pub fn body_refused(too_large: bool, head: bool) -> Response<Bytes> {
    let mut resp = if too_large {
        super::error(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        )
    } else {
        super::error(http::StatusCode::BAD_REQUEST, "request body unreadable")
    };
    super::set(&mut resp, http::header::CONNECTION, "close");
    strip_for_head(resp, head)
}

/// The answer when a request body did not arrive within
/// [`HttpServeConfig::header_read_timeout`] (a slow body is bounded like a
/// slow head): 408, and the connection is closed after it.
pub fn body_timed_out(head: bool) -> Response<Bytes> {
    let mut resp = super::error(http::StatusCode::REQUEST_TIMEOUT, "request body too slow");
    super::set(&mut resp, http::header::CONNECTION, "close");
    strip_for_head(resp, head)
}

/// One background job's task ([`crate::job`]): steps `job` and does what
/// each [`JobState`] says, until the job is done or the server stops. Its
/// file operations, if any, are dropped: see [`run_job_with`].
pub async fn run_job<R: HttpRuntime>(job: Arc<dyn Job>, rt: &R) {
    run_job_with(job, rt, &mut NoFiles).await;
}

/// [`run_job`] executing the job's [`FileOp`](crate::job::FileOp)s with
/// `files` after every step. When the server stops (seen in a wait, or
/// between busy steps), the job is told ([`Job::stop`]) and its last
/// operations are executed before the task ends.
pub async fn run_job_with<R: HttpRuntime, F: JobFiles>(job: Arc<dyn Job>, rt: &R, files: &mut F) {
    loop {
        let state = job.step(rt.now());
        while let Some(op) = job.poll_file_op() {
            files.execute(op).await;
        }
        let stopped = match state {
            JobState::Busy => {
                rt.yield_now().await;
                rt.is_stopping()
            }
            JobState::Wait {
                signal,
                epoch,
                deadline,
            } => rt.wait(signal.wait(epoch), deadline).await == Waited::Stopped,
            JobState::Done => return,
        };
        if stopped {
            job.stop(rt.now());
            while let Some(op) = job.poll_file_op() {
                files.execute(op).await;
            }
            return;
        }
    }
}

/// Anchors `router`'s services to the wall clock: `at_origin` is the
/// system time read together with the origin of the server's clock
/// (`Instant` 0). See [`HttpServeConfig::program_date_time`].
pub fn anchor_wall_clock(router: &HttpRouter, at_origin: SystemTime) {
    let unix = at_origin
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    router.set_wall_clock(Some(WallClock::new(unix)));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::pin::pin;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::task::{Context, Poll, Waker};

    use http::StatusCode;

    use super::*;
    use crate::engine::{Engine, StreamKey};
    use crate::http::{HlsServiceConfig, HttpConfig};

    /// A runtime whose waits end at once: at the deadline (the clock jumps
    /// there), or stopped.
    struct Instantly {
        now: AtomicU64,
        stop: bool,
        waits: AtomicUsize,
    }

    impl HttpRuntime for Instantly {
        fn now(&self) -> Instant {
            Instant::from_micros(self.now.load(Ordering::Acquire))
        }

        fn wait(
            &self,
            _wake: SignalWait,
            deadline: Instant,
        ) -> impl Future<Output = Waited> + Send {
            self.waits.fetch_add(1, Ordering::AcqRel);
            self.now.fetch_max(deadline.as_micros(), Ordering::AcqRel);
            std::future::ready(if self.stop {
                Waited::Stopped
            } else {
                Waited::Woken
            })
        }

        fn yield_now(&self) -> impl Future<Output = ()> + Send {
            std::future::ready(())
        }
    }

    fn ready<F: Future>(fut: F) -> F::Output {
        match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("the runtime's waits are ready at once"),
        }
    }

    fn get(path: &str, method: Method) -> Request<Bytes> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(Bytes::new())
            .unwrap()
    }

    /// A router over a published stream with nothing playable yet (one
    /// codec config; its first playlist request parks).
    fn router() -> (HttpRouter, crate::engine::Publisher) {
        let engine = Engine::with_defaults();
        let mut publisher = engine
            .publish(StreamKey::new("live", "cam").unwrap())
            .unwrap();
        publisher.send(crate::frame::Frame {
            codec: crate::frame::Codec::Aac,
            flags: crate::frame::FrameFlags::CONFIG,
            pts: 0,
            dts: 0,
            timebase: 1000,
            payload: Bytes::from_static(&[0x12, 0x10]),
        });
        let config = HttpConfig {
            hls: HlsServiceConfig {
                ready_timeout: Duration::from_secs(4),
                ..HlsServiceConfig::default()
            },
            ..HttpConfig::default()
        };
        (HttpRouter::new(engine, config), publisher)
    }

    fn runtime(stop: bool) -> Instantly {
        Instantly {
            now: AtomicU64::new(1_000),
            stop,
            waits: AtomicUsize::new(0),
        }
    }

    #[test]
    fn parked_request_times_out_through_the_runtime() {
        let (router, _publisher) = router();
        let rt = runtime(false);
        let req = get("/live/cam/index.m3u8", Method::GET);
        let resp = ready(respond(&router, &req, &rt));
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(rt.waits.load(Ordering::Acquire) >= 1);
        assert!(rt.now() >= Instant::from_micros(1_000) + Duration::from_secs(4));
        assert_eq!(router.hls().unwrap().blocked_requests(), 0);
        // Unknown stream: answered without a wait.
        let before = rt.waits.load(Ordering::Acquire);
        let resp = ready(respond(
            &router,
            &get("/live/nope/index.m3u8", Method::GET),
            &rt,
        ));
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(rt.waits.load(Ordering::Acquire), before);
    }

    #[test]
    fn shutdown_answers_parked_requests_and_ends_pumps() {
        let (router, _publisher) = router();
        let rt = runtime(true);
        let req = get("/live/cam/stream.m3u8", Method::HEAD);
        let resp = ready(respond(&router, &req, &rt));
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().contains_key(http::header::RETRY_AFTER));
        assert!(resp.body().is_empty(), "HEAD: no body");
        assert_eq!(rt.waits.load(Ordering::Acquire), 1);
        assert_eq!(router.hls().unwrap().blocked_requests(), 0);
        let job = router.jobs().poll().expect("the request made a stream");
        ready(run_job(job, &rt));
        assert_eq!(rt.waits.load(Ordering::Acquire), 2);
    }

    #[test]
    fn wall_clock_anchor() {
        let (router, _publisher) = router();
        anchor_wall_clock(&router, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let wall = router.hls().unwrap().wall_clock().expect("anchored");
        assert_eq!(
            wall.unix_micros(Instant::from_micros(0)),
            1_700_000_000_000_000
        );
    }
}
