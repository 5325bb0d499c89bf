//! An RTMP server driven from a hand-written `mio` event loop: no async
//! runtime, one thread, the sans-IO sessions fed by hand.
//!
//! Run: `cargo run -p arcly-examples --example mio_loop -- [ADDR]`
//! (default `127.0.0.1:1935`), then publish with
//! `ffmpeg -re -f lavfi -i testsrc -f lavfi -i sine -c:v libx264 -g 50 -c:a aac -f flv rtmp://127.0.0.1:1935/live/cam`
//! and play with `ffplay rtmp://127.0.0.1:1935/live/cam`.
//!
//! The loop shows the whole contract of `arcly::session::StreamSession`:
//! readable → `handle_input` (until `WouldBlock`; EOF → empty input),
//! deadline → `handle_timeout` (the poll timeout is the nearest deadline),
//! writable → drain `poll_transmit` into `write_vectored`, and media: the
//! engine's `Signal` is async-friendly, so a `std::task::Waker` that records
//! the connection's token and wakes `mio::Waker` turns "new frames" into a
//! poll event. `handle_media` is only called once the previous write
//! completed, so a slow viewer falls behind in the engine's ring instead of
//! growing a queue here.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use arcly::engine::SignalWait;
use arcly::rtmp::RtmpSessionFactory;
use arcly::session::{SessionFactory, StreamSession};
use arcly::time::{Clock, Instant};
use arcly::Engine;
use bytes::{Buf, Bytes};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);

/// Wakes the loop for connection `id` when its media signal fires.
struct MediaWaker {
    id: usize,
    ready: Arc<Mutex<Vec<usize>>>,
    waker: Arc<mio::Waker>,
}

impl Wake for MediaWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let Ok(mut r) = self.ready.lock() {
            r.push(self.id);
        }
        let _ = self.waker.wake();
    }
}

struct Conn {
    stream: TcpStream,
    session: Box<dyn StreamSession>,
    /// Pending output, oldest first; `out[..head]` is written.
    out: Vec<Bytes>,
    head: usize,
    read_closed: bool,
    media_due: bool,
    media_seen: Option<u64>,
    media_wait: Option<SignalWait>,
    waker: Waker,
}

impl Conn {
    /// Runs the session until it has nothing more to do; returns `false`
    /// once it is closed and flushed (or the socket failed).
    fn service(&mut self, now: Instant, buf: &mut [u8]) -> bool {
        loop {
            let mut progress = false;
            // Input: edge-triggered, so read until WouldBlock.
            while !self.read_closed && self.session.close_reason().is_none() {
                match self.stream.read(buf) {
                    Ok(n) => {
                        self.read_closed = n == 0;
                        self.session
                            .handle_input(now, buf.get(..n).unwrap_or_default());
                        self.media_due = true;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            if self.session.poll_timeout().is_some_and(|t| t <= now) {
                self.session.handle_timeout(now);
                progress = true;
            }
            // Output: one vectored write of everything pending.
            if self.head >= self.out.len() {
                self.out.clear();
                self.head = 0;
                self.session.poll_transmit(&mut self.out);
            }
            while self.head < self.out.len() {
                let slices: Vec<IoSlice<'_>> = self
                    .out
                    .get(self.head..)
                    .unwrap_or_default()
                    .iter()
                    .take(1024)
                    .map(|b| IoSlice::new(b))
                    .collect();
                match self.stream.write_vectored(&slices) {
                    Ok(0) => return false,
                    Ok(mut n) => {
                        while let Some(b) = self.out.get_mut(self.head) {
                            if b.len() > n {
                                b.advance(n);
                                break;
                            }
                            n -= b.len();
                            self.head += 1;
                        }
                        if self.head >= self.out.len() {
                            self.media_due = true;
                        }
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            let flushed = self.head >= self.out.len();
            // Media: only after the previous write completed.
            if flushed && self.session.close_reason().is_none() {
                let signal = self.session.media_signal();
                let epoch = signal.as_ref().map(|s| s.epoch());
                if self.media_due || (epoch.is_some() && epoch != self.media_seen) {
                    self.media_due = false;
                    self.media_seen = epoch;
                    self.media_wait = None;
                    self.session.handle_media(now);
                    progress = true;
                } else if let (Some(signal), Some(seen)) = (signal, epoch) {
                    let wait = self.media_wait.get_or_insert_with(|| signal.wait(seen));
                    let mut cx = Context::from_waker(&self.waker);
                    if Pin::new(wait).poll(&mut cx).is_ready() {
                        self.media_wait = None;
                        progress = true;
                    }
                }
            }
            if flushed && self.session.close_reason().is_some() {
                if self.session.poll_transmit(&mut self.out) > 0 {
                    continue;
                }
                let _ = self.stream.shutdown(std::net::Shutdown::Write);
                return false;
            }
            if !progress {
                return true;
            }
        }
    }
}

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:1935".to_owned())
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("address: {e}")))?;
    let engine = Engine::with_defaults();
    let factory = RtmpSessionFactory::allow_all(engine);
    let clock = Clock::new(std::time::Instant::now());

    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mio_waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
    let ready = Arc::new(Mutex::new(Vec::new()));
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next_id = 2usize;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 16 * 1024];
    println!("mio loop serving RTMP on {addr}: rtmp://{addr}/live/<name>");

    loop {
        // Sleep until an event or the nearest session deadline.
        let now = clock.instant(std::time::Instant::now());
        let timeout = conns
            .values()
            .filter_map(|c| c.session.poll_timeout())
            .min()
            .map(|t| t.saturating_duration_since(now) + Duration::from_millis(1));
        poll.poll(&mut events, timeout)?;
        let now = clock.instant(std::time::Instant::now());

        let mut todo: Vec<usize> = Vec::new();
        for ev in events.iter() {
            match ev.token() {
                LISTENER => loop {
                    let (mut stream, peer) = match listener.accept() {
                        Ok(a) => a,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            eprintln!("accept: {e}");
                            break;
                        }
                    };
                    let id = next_id;
                    next_id += 1;
                    poll.registry().register(
                        &mut stream,
                        Token(id),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    let _ = stream.set_nodelay(true);
                    let conn =
                        arcly::session::StreamConn::new(peer, stream.local_addr().unwrap_or(peer));
                    let seed = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ now.as_micros();
                    let waker = Waker::from(Arc::new(MediaWaker {
                        id,
                        ready: ready.clone(),
                        waker: mio_waker.clone(),
                    }));
                    conns.insert(
                        id,
                        Conn {
                            stream,
                            session: factory.new_session(conn, now, seed),
                            out: Vec::new(),
                            head: 0,
                            read_closed: false,
                            media_due: true,
                            media_seen: None,
                            media_wait: None,
                            waker,
                        },
                    );
                    println!("{peer}: connected");
                    todo.push(id);
                },
                WAKER => {
                    if let Ok(mut r) = ready.lock() {
                        todo.append(&mut r);
                    }
                }
                Token(id) => todo.push(id),
            }
        }
        // Deadlines that passed.
        todo.extend(
            conns
                .iter()
                .filter(|(_, c)| c.session.poll_timeout().is_some_and(|t| t <= now))
                .map(|(id, _)| *id),
        );
        todo.sort_unstable();
        todo.dedup();
        for id in todo {
            let Some(conn) = conns.get_mut(&id) else {
                continue;
            };
            if !conn.service(now, &mut buf) {
                if let Some(mut conn) = conns.remove(&id) {
                    let reason = conn
                        .session
                        .close_reason()
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "socket error".into());
                    let _ = poll.registry().deregister(&mut conn.stream);
                    println!("connection {id} closed: {reason}");
                }
            }
        }
    }
}
