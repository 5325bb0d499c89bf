//! An HTTP server (HLS / LL-HLS and whatever else is mounted on the
//! router) driven from a hand-written `mio` event loop: no async runtime,
//! no hyper, one thread. The HTTP/1.1 codec is arcly's sans-IO
//! `arcly::http::h1::H1Connection`; the route table is `arcly::http::HttpRouter`.
//!
//! Run: `cargo run -p arcly-examples --example http_loop -- [HTTP_ADDR] [RTMP_ADDR]`
//! (defaults `127.0.0.1:8888`, `127.0.0.1:1935`), publish with
//! `ffmpeg -re -f lavfi -i testsrc -f lavfi -i sine -c:v libx264 -g 50 -c:a aac -f flv rtmp://127.0.0.1:1935/live/cam`
//! (RTMP ingest runs on arcly-tokio in a second thread, into the same
//! engine), and play `http://127.0.0.1:8888/live/cam/` or
//! `ffplay http://127.0.0.1:8888/live/cam/index.m3u8`.
//!
//! The loop shows the whole HTTP contract:
//! - readable → `H1Connection::handle_input`; each complete request from
//!   `poll_request(|head| router.admit(head))` goes to `router.handle`;
//! - a parked request (`Routed::Wait`) keeps its `SignalWait` future, polled
//!   with a `std::task::Waker` that wakes `mio::Waker`; once it is ready or
//!   its deadline passed, `router.resume`;
//! - background jobs (each HLS stream's pump) come from `router.jobs()` and
//!   are stepped in the loop the same way (`JobState::Wait` → a future);
//! - the poll timeout is the nearest deadline (parked requests, jobs, the
//!   machines' request timeouts).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use arcly::engine::SignalWait;
use arcly::http::h1::{H1Config, H1Connection};
use arcly::http::{HttpConfig, HttpRouter, Routed, Wait};
use arcly::job::{Job, JobState};
use arcly::time::{Clock, Instant};
use arcly::Engine;
use bytes::{Buf, Bytes};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);

/// Wakes the loop when any signal it waits on fires.
struct LoopWaker(Arc<mio::Waker>);

impl Wake for LoopWaker {
    fn wake(self: Arc<Self>) {
        let _ = self.0.wake();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.0.wake();
    }
}

/// A wait on a signal until a deadline.
struct Pending {
    wake: Pin<Box<SignalWait>>,
    deadline: Instant,
}

impl Pending {
    /// Whether the wait is over (the signal moved or the deadline passed);
    /// registers `cx`'s waker otherwise.
    fn over(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        now >= self.deadline || self.wake.as_mut().poll(cx).is_ready()
    }
}

/// A parked request: the request, the router's `Wait` and its future.
struct Parked {
    req: http::Request<Bytes>,
    wait: Wait,
    pending: Pending,
}

struct Conn {
    stream: TcpStream,
    h1: H1Connection,
    /// Bytes taken from `poll_transmit` and not yet written.
    out: VecDeque<Bytes>,
    parked: Option<Parked>,
}

struct JobSlot {
    job: Arc<dyn Job>,
    pending: Option<Pending>,
}

fn main() -> io::Result<()> {
    tracing_subscriber::fmt::init();
    let mut args = std::env::args().skip(1);
    let http_addr = args.next().unwrap_or_else(|| "127.0.0.1:8888".into());
    let rtmp_addr = args.next().unwrap_or_else(|| "127.0.0.1:1935".into());
    let engine = Engine::with_defaults();
    spawn_rtmp_ingest(engine.clone(), &rtmp_addr)?;
    let router = HttpRouter::new(engine, HttpConfig::default());
    let clock = Clock::new(std::time::Instant::now());

    let mut poll = Poll::new()?;
    let addr = http_addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{http_addr}: {e}")))?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mio_waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
    let waker = Waker::from(Arc::new(LoopWaker(mio_waker)));
    let mut cx = Context::from_waker(&waker);
    println!("HTTP on http://{addr}/<app>/<stream>/ (RTMP ingest on {rtmp_addr})");

    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut jobs: Vec<JobSlot> = Vec::new();
    let mut next = 2usize;
    let mut events = Events::with_capacity(256);
    let job_signal = router.jobs().signal();
    let mut job_wait = Box::pin(job_signal.wait(job_signal.epoch()));
    loop {
        let now = clock.instant(std::time::Instant::now());
        // New jobs: epoch first (the future above), then drain.
        if job_wait.as_mut().poll(&mut cx).is_ready() {
            job_wait = Box::pin(job_signal.wait(job_signal.epoch()));
            let _ = job_wait.as_mut().poll(&mut cx);
        }
        while let Some(job) = router.jobs().poll() {
            jobs.push(JobSlot { job, pending: None });
        }
        step_jobs(&mut jobs, &mut cx, now);

        let tokens: Vec<Token> = conns.keys().copied().collect();
        for token in tokens {
            let done = match conns.get_mut(&token) {
                Some(c) => serve(c, &router, &mut cx, now),
                None => continue,
            };
            if done {
                if let Some(mut c) = conns.remove(&token) {
                    let _ = poll.registry().deregister(&mut c.stream);
                }
            }
        }

        let timeout = nearest(&conns, &jobs).map(|at| at.saturating_duration_since(now));
        poll.poll(&mut events, timeout.map(|t| t + Duration::from_millis(1)))?;
        let now = clock.instant(std::time::Instant::now());
        for event in events.iter() {
            match event.token() {
                LISTENER => loop {
                    match listener.accept() {
                        Ok((mut stream, _peer)) => {
                            let token = Token(next);
                            next += 1;
                            poll.registry().register(
                                &mut stream,
                                token,
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            let h1 = H1Connection::new(H1Config::default(), now);
                            conns.insert(
                                token,
                                Conn {
                                    stream,
                                    h1,
                                    out: VecDeque::new(),
                                    parked: None,
                                },
                            );
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                },
                WAKER => {}
                token => {
                    if let Some(c) = conns.get_mut(&token) {
                        read_all(c, now);
                    }
                }
            }
        }
    }
}

/// Steps every job whose wait is over until it waits again or is done.
fn step_jobs(jobs: &mut Vec<JobSlot>, cx: &mut Context<'_>, now: Instant) {
    jobs.retain_mut(|slot| {
        if let Some(p) = &mut slot.pending {
            if !p.over(cx, now) {
                return true;
            }
        }
        slot.pending = None;
        // Bounded work per round: other connections get their turn.
        for _ in 0..16 {
            match slot.job.step(now) {
                JobState::Busy => continue,
                JobState::Wait {
                    signal,
                    epoch,
                    deadline,
                } => {
                    let mut p = Pending {
                        wake: Box::pin(signal.wait(epoch)),
                        deadline,
                    };
                    // Registers the waker; if already over, next round.
                    let _ = p.over(cx, now);
                    slot.pending = Some(p);
                    return true;
                }
                JobState::Done => return false,
            }
        }
        true
    });
}

/// The nearest deadline of the loop (`None`: wait for an event).
fn nearest(conns: &HashMap<Token, Conn>, jobs: &[JobSlot]) -> Option<Instant> {
    let conn_deadlines = conns.values().flat_map(|c| {
        let parked = c.parked.as_ref().map(|p| p.pending.deadline);
        parked.into_iter().chain(c.h1.poll_timeout())
    });
    let job_deadlines = jobs.iter().map(|j| match &j.pending {
        Some(p) => p.deadline,
        None => Instant::from_micros(0), // busy: at once
    });
    conn_deadlines.chain(job_deadlines).min()
}

/// Reads until `WouldBlock` (EOF → empty input).
fn read_all(c: &mut Conn, now: Instant) {
    let mut buf = [0u8; 8192];
    while c.h1.wants_input() {
        match c.stream.read(&mut buf) {
            Ok(n) => {
                c.h1.handle_input(now, buf.get(..n).unwrap_or_default());
                if n == 0 {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                c.h1.handle_input(now, &[]);
                break;
            }
        }
    }
}

/// Answers what can be answered and writes what can be written; `true`
/// when the connection is finished.
fn serve(c: &mut Conn, router: &HttpRouter, cx: &mut Context<'_>, now: Instant) -> bool {
    c.h1.handle_timeout(now);
    loop {
        // A parked request first: nothing else is read before it is answered.
        if let Some(mut p) = c.parked.take() {
            if !p.pending.over(cx, now) {
                c.parked = Some(p);
                break;
            }
            match router.resume(&p.req, p.wait, now) {
                Routed::Response(resp) => c.h1.send_response(now, resp),
                Routed::Wait(wait) => {
                    c.parked = Some(park(p.req, wait, cx, now));
                    continue;
                }
            }
        }
        let Some(req) = c.h1.poll_request(|head| router.admit(head)) else {
            break;
        };
        match router.handle(&req, now) {
            Routed::Response(resp) => c.h1.send_response(now, resp),
            Routed::Wait(wait) => c.parked = Some(park(req, wait, cx, now)),
        }
    }
    while let Some(b) = c.h1.poll_transmit() {
        c.out.push_back(b);
    }
    while let Some(front) = c.out.front_mut() {
        match c.stream.write(front) {
            Ok(0) => return true,
            Ok(n) => {
                front.advance(n);
                if front.is_empty() {
                    c.out.pop_front();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
    c.h1.is_closed() && c.parked.is_none()
}

fn park(req: http::Request<Bytes>, wait: Wait, cx: &mut Context<'_>, now: Instant) -> Parked {
    let mut pending = Pending {
        wake: Box::pin(wait.signal.wait(wait.epoch)),
        deadline: wait.deadline,
    };
    let _ = pending.over(cx, now);
    Parked { req, wait, pending }
}

/// RTMP ingest into `engine` on arcly-tokio, in its own thread (the HTTP
/// side above needs no runtime).
fn spawn_rtmp_ingest(engine: Engine, addr: &str) -> io::Result<()> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return eprintln!("tokio: {e}"),
        };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            let factory: Arc<dyn arcly::session::SessionFactory> =
                Arc::new(arcly::rtmp::RtmpSessionFactory::allow_all(engine));
            let _ = arcly_tokio::serve_tcp(listener, factory, std::future::pending()).await;
        });
    });
    Ok(())
}
