//! HTTP serving of an [`HttpRouter`] (its route table: HLS / LL-HLS and
//! whatever else is mounted) on std::net and threads, with no async
//! runtime and no hyper: the HTTP/1.1 codec is arcly's sans-IO
//! [`H1Connection`] (`arcly::http::h1`).
//!
//! One thread per connection (bounded by
//! [`HttpServeConfig::max_connections`]): it reads with a short timeout,
//! feeds the machine, answers each complete request with
//! [`respond`](arcly::http::serve::respond) (the loop shared with the
//! executor adapters; a parked request blocks this thread on its signal
//! until its deadline) and writes the answer. One thread per background
//! job of the router (e.g. an HLS stream's pump) runs
//! [`run_job`](arcly::http::serve::run_job) the same way; a spawner thread
//! waits on the router's job queue.
//!
//! On [`Shutdown::trigger`]: accepting stops, parked requests are answered
//! 503, idle connections close, and connections get
//! [`HttpServeConfig::shutdown_grace`] to finish their response before their
//! sockets are shut down.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use arcly::engine::SignalWait;
use arcly::http::h1::H1Error;
use arcly::http::h1::{H1Config, H1Connection};
use arcly::http::serve::{
    anchor_wall_clock, log_connection_refused, log_dropped, respond, run_job, Dropped,
};
use arcly::http::{log_refusal, Admit, ClientAddr, HttpRouter, HttpRuntime, Waited};
use arcly::job::Job;
use arcly::time::{Clock, Instant};

use crate::{wake_addr, ConnGuard, Shutdown, Tracker};

/// Settings of [`serve_http_with`] (`arcly::http::HttpServeConfig`):
/// `header_read_timeout` bounds each whole request, `max_header_bytes`
/// each request head.
pub use arcly::http::HttpServeConfig;

/// How long a connection thread blocks in `read` before it looks at the
/// shutdown and its request deadline again.
const READ_POLL: Duration = Duration::from_millis(100);

/// A write that makes no progress for this long drops the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Stack of connection and job threads.
const THREAD_STACK: usize = 256 * 1024;

/// Serves `router` on every connection accepted on `listener`, on threads,
/// until `shutdown` is triggered, with [`HttpServeConfig::default`]. Also
/// runs the router's background jobs. Blocks the calling thread.
///
/// ```no_run
/// # fn run(engine: arcly::Engine) -> std::io::Result<()> {
/// use arcly::http::{HttpConfig, HttpRouter};
/// let router = std::sync::Arc::new(HttpRouter::new(engine, HttpConfig::default()));
/// let listener = std::net::TcpListener::bind("0.0.0.0:8888")?;
/// arcly_blocking::serve_http(listener, router, arcly_blocking::Shutdown::new())
/// # }
/// ```
pub fn serve_http(
    listener: TcpListener,
    router: Arc<HttpRouter>,
    shutdown: Shutdown,
) -> io::Result<()> {
    serve_http_with(listener, router, shutdown, HttpServeConfig::default())
}

/// [`serve_http`] with explicit settings.
pub fn serve_http_with(
    listener: TcpListener,
    router: Arc<HttpRouter>,
    shutdown: Shutdown,
    config: HttpServeConfig,
) -> io::Result<()> {
    let clock = Clock::new(std::time::Instant::now());
    if config.program_date_time {
        // Read together with the origin: `Instant` 0 of `clock` is this UTC time.
        anchor_wall_clock(&router, std::time::SystemTime::now());
    }
    let local = listener.local_addr()?;
    let rt = Arc::new(BlockingRuntime {
        clock,
        shutdown: shutdown.clone(),
    });
    let tracker = Arc::new(Tracker::default());
    tracing::debug!(%local, "serving HTTP");

    // `accept` cannot be interrupted portably: on shutdown, a watcher thread
    // connects to the listener once to wake it up.
    let watcher = {
        let shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name("arcly-http-wake".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                shutdown.wait();
                let _ = TcpStream::connect_timeout(&wake_addr(local), Duration::from_secs(1));
            })?
    };
    let spawner = {
        let router = router.clone();
        let rt = rt.clone();
        std::thread::Builder::new()
            .name("arcly-http-jobs".into())
            .stack_size(THREAD_STACK)
            .spawn(move || spawn_jobs(&router, &rt))?
    };

    loop {
        let accepted = listener.accept();
        if shutdown.is_triggered() {
            break;
        }
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(%local, "accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Some(conn) = tracker.conns.admit(peer, config.max_connections) else {
            log_connection_refused(peer, config.max_connections, rt.now());
            drop(stream);
            continue;
        };
        if config.nodelay {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(%peer, "TCP_NODELAY: {e}");
            }
        }
        let id = tracker.next_id.fetch_add(1, Ordering::Relaxed);
        match stream.try_clone() {
            Ok(s) => {
                tracker.sockets().insert(id, s);
            }
            Err(e) => {
                tracing::warn!(%peer, "dropping HTTP connection: {e}");
                continue;
            }
        }
        let guard = ConnGuard {
            tracker: tracker.clone(),
            id,
            _conn: conn,
        };
        let router = router.clone();
        let rt = rt.clone();
        let config = config.clone();
        let spawned = std::thread::Builder::new()
            .name("arcly-http".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let _guard = guard;
                let span = tracing::debug_span!("http", %peer);
                let _enter = span.enter();
                if let Err(e) = serve_connection(stream, peer, &router, &rt, &config) {
                    tracing::debug!("HTTP connection ended: {e}");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(%peer, "cannot start an HTTP connection thread: {e}");
        }
    }
    let _ = watcher.join();
    drop(listener);
    let _ = spawner.join();
    if tracker.conns.stop() > 0 && !tracker.drain(config.shutdown_grace) {
        let socks = tracker.sockets();
        tracing::debug!(
            left = socks.len(),
            "HTTP connections did not finish within the shutdown grace; closing their sockets"
        );
        for s in socks.values() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        drop(socks);
        tracker.drain(Duration::from_secs(1));
    }
    Ok(())
}

/// Starts a thread per job of the router's queue until the shutdown.
fn spawn_jobs(router: &HttpRouter, rt: &Arc<BlockingRuntime>) {
    let signal = router.jobs().signal();
    loop {
        // Epoch first, then drain: a job queued after the drain moves it.
        let seen = signal.epoch();
        while let Some(job) = router.jobs().poll() {
            let rt = rt.clone();
            let name = job.describe();
            let spawned = std::thread::Builder::new()
                .name("arcly-job".into())
                .stack_size(THREAD_STACK)
                .spawn(move || run_job_blocking(job, &rt));
            if let Err(e) = spawned {
                tracing::warn!(job = %name, "cannot start a job thread: {e}");
            }
        }
        if rt.shutdown.is_triggered() {
            return;
        }
        if let Waited::Stopped = rt.block(signal.wait(seen), None) {
            return;
        }
    }
}

fn run_job_blocking(job: Arc<dyn Job>, rt: &BlockingRuntime) {
    let span = tracing::debug_span!("job", job = %job.describe());
    let _enter = span.enter();
    block_on(run_job(job, rt));
}

/// One HTTP/1.1 connection until the peer or the machine closes it, or the
/// server stops between requests.
fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    router: &HttpRouter,
    rt: &BlockingRuntime,
    config: &HttpServeConfig,
) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_POLL))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut h1 = H1Config::default();
    h1.max_head_bytes = config.max_header_bytes;
    h1.request_timeout = config.header_read_timeout;
    let mut conn = H1Connection::new(h1, rt.now());
    let mut client = http::Extensions::new();
    client.insert(ClientAddr(peer));
    conn.set_request_extensions(client);
    let mut buf = vec![0u8; 16 * 1024];
    let admit = |head: &http::Request<()>| {
        let admitted = router.admit(head);
        if let Admit::Respond(resp) = &admitted {
            log_refusal(head, resp, rt.now());
        }
        admitted
    };
    loop {
        while let Some(req) = conn.poll_request(admit) {
            let resp = block_on(respond(router, &req, rt));
            conn.send_response(rt.now(), resp);
            flush(&mut stream, &mut conn)?;
        }
        flush(&mut stream, &mut conn)?;
        if conn.is_closed() {
            let why = match conn.error() {
                // A silent or idle connection: a drop only before any request.
                Some(H1Error::Timeout) if conn.requests() == 0 => Some(Dropped::HeaderTimeout),
                Some(H1Error::HeadTooLarge) => Some(Dropped::HeadTooLarge),
                Some(H1Error::BadHead(_) | H1Error::BadContentLength) => Some(Dropped::Malformed),
                _ => None,
            };
            if let Some(why) = why {
                log_dropped(peer, why, rt.now());
            } else if let Some(e) = conn.error() {
                tracing::debug!("HTTP connection closed: {e}");
            }
            let _ = stream.shutdown(std::net::Shutdown::Write);
            return Ok(());
        }
        if rt.shutdown.is_triggered() {
            // Between requests: nothing is lost by closing now.
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        let read = stream.read(&mut buf);
        let now = rt.now();
        match read {
            Ok(n) => conn.handle_input(now, buf.get(..n).unwrap_or_default()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                conn.handle_timeout(now);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes everything the machine has queued.
fn flush(stream: &mut TcpStream, conn: &mut H1Connection) -> io::Result<()> {
    while let Some(bytes) = conn.poll_transmit() {
        stream.write_all(&bytes)?;
    }
    Ok(())
}

/// Wakes a parked thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` to the end on this thread, parking between polls.
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// The clock, the blocking wait and the shutdown of one server: its
/// futures are ready when returned (the wait happens in the call), so the
/// loops of `arcly::http::serve` run on a plain thread.
pub(crate) struct BlockingRuntime {
    pub(crate) clock: Clock,
    pub(crate) shutdown: Shutdown,
}

impl BlockingRuntime {
    /// Blocks until `wake` completes, `deadline` passes, or the shutdown.
    pub(crate) fn block(&self, wake: SignalWait, deadline: Option<Instant>) -> Waited {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut wake = pin!(wake);
        let stop_signal = self.shutdown.signal.clone();
        let mut stop = pin!(stop_signal.wait(stop_signal.epoch()));
        loop {
            if self.shutdown.is_triggered() {
                return Waited::Stopped;
            }
            if wake.as_mut().poll(&mut cx).is_ready() {
                return Waited::Woken;
            }
            // Registers the waker for the shutdown, then looks again.
            let _ = stop.as_mut().poll(&mut cx);
            if self.shutdown.is_triggered() {
                return Waited::Stopped;
            }
            let left = match deadline {
                Some(d) => {
                    let now = self.now();
                    if now >= d {
                        return Waited::Woken;
                    }
                    d.saturating_duration_since(now)
                }
                None => Duration::from_secs(1),
            };
            std::thread::park_timeout(left);
        }
    }
}

impl HttpRuntime for BlockingRuntime {
    fn now(&self) -> Instant {
        self.clock.instant(std::time::Instant::now())
    }

    fn wait(&self, wake: SignalWait, deadline: Instant) -> impl Future<Output = Waited> + Send {
        std::future::ready(self.block(wake, Some(deadline)))
    }

    fn yield_now(&self) -> impl Future<Output = ()> + Send {
        std::thread::yield_now();
        std::future::ready(())
    }

    fn is_stopping(&self) -> bool {
        self.shutdown.is_triggered()
    }
}
