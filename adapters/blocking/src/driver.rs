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
//! The writer's steps are those of [`arcly::session::StreamDriver`] (the
//! same rounds as the executor adapters), called around its own waits.
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

use arcly::engine::Signal;
use arcly::session::{CloseReason, InputBuffer, MediaStep, StreamDriver, StreamSession};
use arcly::time::Clock;

use crate::BlockingWait;
use crate::Shutdown;

/// Settings of one connection driver.
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    /// A connection whose socket accepts no byte of pending output for this
    /// long (a player that never reads) is dropped
    /// ([`arcly::session::DriveConfig::write_stall_timeout`]; here also the
    /// socket's write timeout). Default 15 s; zero turns it off.
    pub write_stall_timeout: Duration,
}
/// Builder-style setters: the struct is `#[non_exhaustive]`, so other
/// crates start from its default (or constructor) value and chain these.
impl DriveConfig {
    /// Sets [`read_buffer`](Self::read_buffer).
    #[must_use]
    pub fn with_read_buffer(mut self, read_buffer: usize) -> Self {
        self.read_buffer = read_buffer;
        self
    }

    /// Sets [`close_linger`](Self::close_linger).
    #[must_use]
    pub fn with_close_linger(mut self, close_linger: Duration) -> Self {
        self.close_linger = close_linger;
        self
    }

    /// Sets [`write_merge`](Self::write_merge).
    #[must_use]
    pub fn with_write_merge(mut self, write_merge: Duration) -> Self {
        self.write_merge = write_merge;
        self
    }

    /// Sets [`thread_stack`](Self::thread_stack).
    #[must_use]
    pub fn with_thread_stack(mut self, thread_stack: usize) -> Self {
        self.thread_stack = thread_stack;
        self
    }

    /// Sets [`write_stall_timeout`](Self::write_stall_timeout).
    #[must_use]
    pub fn with_write_stall_timeout(mut self, write_stall_timeout: Duration) -> Self {
        self.write_stall_timeout = write_stall_timeout;
        self
    }
}

impl DriveConfig {
    /// The settings of the runtime-free loop.
    fn stream(&self) -> arcly::session::DriveConfig {
        arcly::session::DriveConfig::default()
            .with_read_buffer(self.read_buffer)
            .with_close_linger(self.close_linger)
            .with_write_merge(self.write_merge)
            .with_write_stall_timeout(self.write_stall_timeout)
    }
}

impl Default for DriveConfig {
    fn default() -> Self {
        DriveConfig {
            read_buffer: 16 * 1024,
            close_linger: Duration::from_secs(5),
            write_merge: Duration::ZERO,
            thread_stack: 256 * 1024,
            write_stall_timeout: arcly::session::driver::DEFAULT_WRITE_STALL_TIMEOUT,
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
    let mut input = InputBuffer::new(buf_size);
    loop {
        let res = stream.read(input.space());
        let now = clock.instant(std::time::Instant::now());
        let mut g = lock(shared);
        if g.session.close_reason().is_some() {
            return;
        }
        let done = match res {
            Ok(n) => {
                let eof = input.deliver(&mut *g.session, now, n);
                g.read_closed |= eof;
                eof
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
    let mut driver = StreamDriver::new(&config.stream());
    let mut shutdown_wait = shutdown.map(|s| s.signal.wait(s.signal.epoch()));
    let mut write_timeout_set = false;
    if !config.write_stall_timeout.is_zero() {
        // A blocked write returns after a quarter of the stall timeout; the
        // driver's stall clock (restarted by every byte written) decides
        // whether the peer read nothing for the whole timeout.
        let step = (config.write_stall_timeout / 4).max(Duration::from_millis(10));
        stream.set_write_timeout(Some(step))?;
    }
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
                driver.input_seen(g.read_closed, now);
            }
            let session = &mut *g.session;
            if shutdown.is_some_and(|s| s.is_triggered()) {
                shutdown_wait = None;
                driver.shutdown(session, now);
            }
            if let Some(reason) = driver.linger_expired(session, now) {
                return Ok(reason);
            }
            driver.timeout(session, now);
            driver.fill_transmit(session);
            merge = driver.merge_window(session);
            // Media only once the previous write completed (backpressure),
            // and not within the write-merge window; else wait for the
            // media signal (bridged onto `wake`).
            match driver.media(&mut cx, session, now) {
                MediaStep::Pulled => {
                    if driver.fill_transmit(session) == 0 {
                        // Nothing to write: the next round registers the wait.
                        wake.notify();
                    }
                }
                MediaStep::Moved => wake.notify(),
                MediaStep::Held | MediaStep::Waiting => {}
            }
            if let Some(wait) = shutdown_wait.as_mut() {
                if Pin::new(wait).poll(&mut cx).is_ready() {
                    shutdown_wait = None;
                    wake.notify();
                }
            }
            driver.note_output(now);
            (driver.closing(session, now), driver.next_deadline(session))
        };

        if driver.has_output() {
            if closed.is_some() && !write_timeout_set {
                // A closing session may not wait on a stalled peer forever.
                write_timeout_set = true;
                stream
                    .set_write_timeout(Some(config.close_linger.max(Duration::from_millis(1))))?;
            }
            let written = w.write_vectored(&driver.io_slices());
            let n = match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if closed.is_none()
                        && matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                {
                    // A write timeout step passed with no byte accepted.
                    let now = clock.instant(std::time::Instant::now());
                    if let Some(reason) = driver.write_stalled(now) {
                        return Ok(reason);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            // The merge window starts when the write completed.
            let done = if merge.is_zero() {
                now
            } else {
                clock.instant(std::time::Instant::now())
            };
            driver.written(n, done, merge);
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
