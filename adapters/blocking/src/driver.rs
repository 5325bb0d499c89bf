//! The per-connection driver on plain threads.
//!
//! Design: two threads per connection share the session under a mutex.
//! - The **reader** (a scoped thread) blocks in `read`, feeds the bytes to
//!   `handle_input` under the lock, and wakes the writer.
//! - The **writer** (the calling thread) does everything else: deadlines,
//!   `handle_media`, draining `poll_transmit` and the vectored writes, which
//!   it performs *without* holding the lock (a slow peer never blocks input).
//!   It sleeps on one per-connection [`Signal`] (`wait_blocking` with the
//!   next deadline as timeout). The engine's media signal and the server's
//!   shutdown signal are joined onto that one signal by registering a
//!   [`SignalWait`] with a waker whose `wake` notifies it, so one blocked
//!   thread waits on socket input, media, shutdown and time at once.
//!
//! When the session closes, the writer flushes (bounded by the close linger
//! through a socket write timeout), shuts the socket down both ways (which
//! also releases the reader from `read`) and joins the reader.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Shutdown as SockShutdown, TcpStream};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use arcly::engine::{Signal, SignalWait};
use arcly::session::{CloseReason, StreamSession};
use arcly::time::{Clock, Instant};

use crate::Shutdown;
use arcly::transmit_queue::TransmitQueue as OutQueue;

/// Settings of one connection driver.
#[derive(Debug, Clone)]
pub struct DriveConfig {
    /// Largest read buffer (bytes per `handle_input` call at most). The
    /// buffer starts at 2 KiB and doubles up to this while reads fill it.
    pub read_buffer: usize,
    /// How long a closing session may take to flush its last bytes (and how
    /// long a session may stay open after the peer's EOF).
    pub close_linger: Duration,
    /// Write merging for players: after a write completes, wait this long
    /// before pulling media again, so every frame that arrived meanwhile goes
    /// out in one vectored write. Zero (the default): pull at once.
    pub write_merge: Duration,
    /// Stack size of each connection thread (two per connection).
    pub thread_stack: usize,
}

impl Default for DriveConfig {
    fn default() -> Self {
        DriveConfig {
            read_buffer: 16 * 1024,
            close_linger: Duration::from_secs(5),
            write_merge: Duration::ZERO,
            thread_stack: 256 * 1024,
        }
    }
}

/// State shared by the reader and writer threads.
struct Shared<'a> {
    session: &'a mut dyn StreamSession,
    /// Input arrived since the writer last looked (it owes `handle_media`).
    input_seen: bool,
    read_closed: bool,
    read_error: Option<io::Error>,
}

fn lock<'m, 'a>(m: &'m Mutex<Shared<'a>>) -> MutexGuard<'m, Shared<'a>> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A waker that notifies the connection's own signal (also the UDP
/// driver's, `crate::udp`).
pub(crate) struct Bridge(pub(crate) Signal);

impl Wake for Bridge {
    fn wake(self: Arc<Self>) {
        self.0.notify();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.notify();
    }
}

/// Spawns a scoped reader thread `name` with a `stack`-byte stack (this
/// driver's and `crate::udp`'s).
pub(crate) fn spawn_reader<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: &str,
    stack: usize,
    f: impl FnOnce() -> T + Send + 'scope,
) -> io::Result<std::thread::ScopedJoinHandle<'scope, T>> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(stack)
        .spawn_scoped(scope, f)
}

pub(crate) fn drive(
    stream: &TcpStream,
    session: &mut dyn StreamSession,
    clock: Clock,
    shutdown: Option<&Shutdown>,
    config: &DriveConfig,
) -> io::Result<CloseReason> {
    let wake = Signal::new();
    let shared = Mutex::new(Shared {
        session,
        input_seen: false,
        read_closed: false,
        read_error: None,
    });
    let reader_stream = stream.try_clone()?;
    std::thread::scope(|scope| {
        let reader = spawn_reader(scope, "arcly-read", config.thread_stack, || {
            read_loop(reader_stream, &shared, &wake, clock, config.read_buffer)
        })?;
        let result = write_loop(stream, &shared, &wake, clock, shutdown, config);
        // Releases the reader from `read` whatever happened.
        let _ = stream.shutdown(SockShutdown::Both);
        let _ = reader.join();
        result
    })
}

fn read_loop(
    mut stream: TcpStream,
    shared: &Mutex<Shared<'_>>,
    wake: &Signal,
    clock: Clock,
    buf_size: usize,
) {
    let max = buf_size.max(512);
    let mut buf = vec![0u8; max.min(2048)];
    loop {
        let res = stream.read(&mut buf);
        let now = clock.instant(std::time::Instant::now());
        let mut g = lock(shared);
        if g.session.close_reason().is_some() {
            return;
        }
        let done = match res {
            Ok(n) => {
                g.session
                    .handle_input(now, buf.get(..n).unwrap_or_default());
                if n == 0 {
                    tracing::trace!("peer EOF");
                    g.read_closed = true;
                }
                if n == buf.len() && n < max {
                    buf.resize((n * 2).min(max), 0);
                }
                n == 0
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                g.session.handle_input(now, &[]);
                g.read_closed = true;
                g.read_error = Some(e);
                true
            }
        };
        g.input_seen = true;
        drop(g);
        wake.notify();
        if done {
            return;
        }
    }
}

fn write_loop(
    stream: &TcpStream,
    shared: &Mutex<Shared<'_>>,
    wake: &Signal,
    clock: Clock,
    shutdown: Option<&Shutdown>,
    config: &DriveConfig,
) -> io::Result<CloseReason> {
    let waker = Waker::from(Arc::new(Bridge(wake.clone())));
    let mut cx = Context::from_waker(&waker);
    let mut out = OutQueue::default();
    let mut media_due = true;
    let mut media_seen: Option<u64> = None;
    let mut media_wait: Option<SignalWait> = None;
    let mut shutdown_wait = shutdown.map(|s| s.signal.wait(s.signal.epoch()));
    let mut shutdown_seen = false;
    let mut linger_until: Option<Instant> = None;
    let mut write_timeout_set = false;
    let mut media_not_before: Option<Instant> = None;
    let mut playing;
    let mut merge;
    let mut w = stream;

    loop {
        // Read the wake epoch before looking for work: no lost wake-ups.
        let seen = wake.epoch();
        let now = clock.instant(std::time::Instant::now());
        let (closed, deadline) = {
            let mut g = lock(shared);
            if let Some(e) = g.read_error.take() {
                return Err(e);
            }
            if g.input_seen {
                g.input_seen = false;
                media_due = true;
                if g.read_closed && linger_until.is_none() {
                    linger_until = Some(now + config.close_linger);
                }
            }
            if !shutdown_seen && shutdown.is_some_and(|s| s.is_triggered()) {
                shutdown_seen = true;
                shutdown_wait = None;
                if g.session.close_reason().is_none() {
                    g.session.close(now);
                }
            }
            if let Some(limit) = linger_until {
                if now >= limit {
                    match g.session.close_reason() {
                        Some(reason) => {
                            tracing::debug!(%reason, "gave up flushing a closed session");
                            return Ok(reason.clone());
                        }
                        None => {
                            tracing::debug!("session still open after peer EOF; closing it");
                            g.session.close(now);
                        }
                    }
                }
            }
            if g.session.poll_timeout().is_some_and(|at| at <= now) {
                g.session.handle_timeout(now);
                media_due = true;
            }
            if out.is_empty() {
                g.session.poll_transmit(out.fill());
            }
            // Media only once the previous write completed (backpressure),
            // and not within the write-merge window.
            if media_not_before.is_some_and(|t| now >= t) {
                media_not_before = None;
            }
            playing = g.session.media_signal().is_some();
            merge = config.write_merge.max(g.session.write_merge());
            let merging = media_not_before.is_some();
            if out.is_empty() && g.session.close_reason().is_none() && !merging {
                let epoch = g.session.media_signal().map(|s| s.epoch());
                if media_due || (epoch.is_some() && epoch != media_seen) {
                    media_due = false;
                    media_seen = epoch;
                    media_wait = None;
                    g.session.handle_media(now);
                    g.session.poll_transmit(out.fill());
                }
            }
            // Nothing to write: wait for media from the epoch read before
            // the last `handle_media` (bridged onto `wake`).
            if out.is_empty() && g.session.close_reason().is_none() && !merging {
                if let Some(signal) = g.session.media_signal() {
                    let from = media_seen.unwrap_or_else(|| signal.epoch());
                    let wait = media_wait.get_or_insert_with(|| signal.wait(from));
                    if Pin::new(wait).poll(&mut cx).is_ready() {
                        media_wait = None;
                        wake.notify();
                    }
                }
            }
            if let Some(wait) = shutdown_wait.as_mut() {
                if Pin::new(wait).poll(&mut cx).is_ready() {
                    shutdown_wait = None;
                    wake.notify();
                }
            }
            let closed = g.session.close_reason().cloned();
            if closed.is_some() && linger_until.is_none() {
                linger_until = Some(now + config.close_linger);
            }
            let deadline = [g.session.poll_timeout(), linger_until, media_not_before]
                .into_iter()
                .flatten()
                .min();
            (closed, deadline)
        };

        if !out.is_empty() {
            if closed.is_some() && !write_timeout_set {
                // A closing session may not wait on a stalled peer forever.
                write_timeout_set = true;
                stream
                    .set_write_timeout(Some(config.close_linger.max(Duration::from_millis(1))))?;
            }
            let n = match w.write_vectored(&out.io_slices()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if out.advance(n) {
                media_due = true;
                if playing && !merge.is_zero() {
                    let done = clock.instant(std::time::Instant::now());
                    media_not_before = Some(done + merge);
                }
            }
            continue;
        }
        if let Some(reason) = closed {
            let _ = w.flush();
            let _ = stream.shutdown(SockShutdown::Write);
            return Ok(reason);
        }
        let timeout = deadline.map(|d| d.saturating_duration_since(now));
        if timeout.is_some_and(|t| t.is_zero()) {
            continue;
        }
        wake.wait_blocking(seen, timeout);
    }
}
