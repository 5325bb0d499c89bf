//! The runtime-free policy of every adapter's TCP accept loop (`serve_tcp`):
//! the settings, the connection limit with its warning, the count of open
//! connections that shutdown waits on, the end-of-connection log and the
//! seed of each new session. The adapters keep only the accepting, spawning
//! and waiting of their runtime.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::driver::DriveConfig;
use super::CloseReason;
use crate::engine::Signal;

/// Settings of an executor adapter's `serve_tcp_with` (re-exported there).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Most connections served at once; more are accepted and closed at once
    /// with a warning in the log.
    pub max_connections: usize,
    /// After the shutdown future completes: how long sessions get to flush
    /// their goodbye before the server stops waiting for them (an adapter
    /// that can abort their tasks does).
    pub shutdown_grace: Duration,
    /// Set `TCP_NODELAY` on accepted sockets (writes are already batched).
    pub nodelay: bool,
    /// Per-connection driver settings.
    pub drive: DriveConfig,
    /// Kernel send buffer (`SO_SNDBUF`) of each accepted connection, in
    /// bytes, so a player that never reads cannot hold megabytes of kernel
    /// memory (default [`DEFAULT_TCP_SEND_BUFFER`], 256 KiB; 0: the
    /// kernel's default with autotuning). Applied by the adapters
    /// (`arcly_socket::cap_send_buffer`), never by core.
    pub send_buffer: usize,
}

/// Default of [`ServeConfig::send_buffer`] (256 KiB).
pub const DEFAULT_TCP_SEND_BUFFER: usize = 256 * 1024;

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(2),
            nodelay: true,
            drive: DriveConfig::default(),
            send_buffer: DEFAULT_TCP_SEND_BUFFER,
        }
    }
}

/// The open connections of one accept loop: a count for the limit and for
/// the shutdown grace, a stopping flag the connections watch, and a signal
/// notified on every change (a connection ended, the stop).
#[derive(Debug, Default)]
pub struct ConnectionTracker {
    active: AtomicUsize,
    stopping: AtomicBool,
    changed: Signal,
}

impl ConnectionTracker {
    /// A tracker with no connection, not stopping.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts a new connection from `peer` unless `max` are open already:
    /// then logs a warning and returns `None` (the caller drops the socket).
    /// The connection counts until the guard is dropped.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr, max: usize) -> Option<ConnectionGuard> {
        let admitted = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            tracing::warn!(%peer, max, "refusing connection: too many connections");
            return None;
        }
        Some(ConnectionGuard(self.clone()))
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// The accept loop stopped: connections waiting in
    /// [`stopped`](Self::stopped) wake up. Logs and returns how many are open.
    pub fn stop(&self) -> usize {
        self.stopping.store(true, Ordering::Release);
        self.changed.notify();
        let open = self.active();
        if open > 0 {
            tracing::info!(open, "shutting down: closing sessions");
        }
        open
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The signal notified when a connection ends and on [`stop`](Self::stop)
    /// (read its epoch before looking at the state, then wait from it).
    pub fn changed(&self) -> &Signal {
        &self.changed
    }

    /// Completes once [`stop`](Self::stop) was called (a connection's
    /// shutdown future).
    pub async fn stopped(&self) {
        loop {
            let seen = self.changed.epoch();
            if self.is_stopping() {
                return;
            }
            self.changed.wait(seen).await;
        }
    }

    /// Completes once no connection is open.
    pub async fn drained(&self) {
        loop {
            let seen = self.changed.epoch();
            if self.active() == 0 {
                return;
            }
            self.changed.wait(seen).await;
        }
    }
}

/// One open connection of a [`ConnectionTracker`]; uncounts it when dropped
/// (when the connection's task or thread ends, even by panic).
#[derive(Debug)]
pub struct ConnectionGuard(Arc<ConnectionTracker>);

impl ConnectionGuard {
    /// The tracker this connection counts in.
    pub fn tracker(&self) -> &Arc<ConnectionTracker> {
        &self.0
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify();
    }
}

/// Logs how a served connection ended (`info`: why it closed, or the I/O
/// error that ended it).
pub fn log_end(result: &io::Result<CloseReason>) {
    match result {
        Ok(reason) => tracing::info!(%reason, "connection closed"),
        Err(e) => tracing::info!("connection lost: {e}"),
    }
}

/// A seed for a new session's randomness from a wall-clock reading the
/// adapter made (`wall`; core reads no clock), mixed with a process-wide
/// counter so that two sessions never share one.
pub fn connection_seed(wall: SystemTime) -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = wall
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    splitmix64(t ^ n.rotate_left(32))
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_open_connections_and_guards_release_them() {
        let t = ConnectionTracker::new();
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let a = t.admit(peer, 2);
        let b = t.admit(peer, 2);
        assert!(a.is_some() && b.is_some());
        assert!(t.admit(peer, 2).is_none());
        assert_eq!(t.active(), 2);
        drop(a);
        assert_eq!(t.active(), 1);
        assert!(t.admit(peer, 2).is_some()); // dropped at once
        assert_eq!(t.active(), 1);
        let seen = t.changed().epoch();
        assert_eq!(t.stop(), 1);
        assert!(t.is_stopping());
        assert_ne!(t.changed().epoch(), seen);
    }

    /// The sans-IO rule for the session loop: no clock read, no sleep, no
    /// spawn, no runtime named (needles split so this file passes too).
    #[test]
    fn the_loop_reads_no_clock_and_names_no_runtime() {
        let sources = [
            ("session.rs", include_str!("../session.rs")),
            ("session/driver.rs", include_str!("driver.rs")),
            ("session/serve.rs", include_str!("serve.rs")),
        ];
        let needles = [
            concat!("Instant", "::now"),
            concat!("SystemTime", "::now"),
            concat!("thread", "::sleep"),
            concat!("thread", "::spawn"),
            concat!("tok", "io"),
            concat!("async", "_io"),
            concat!("async", "-io"),
            concat!("sm", "ol"),
        ];
        for (name, src) in sources {
            for needle in needles {
                assert!(!src.contains(needle), "{name} contains `{needle}`");
            }
        }
    }

    #[test]
    fn seeds_differ() {
        assert_ne!(connection_seed(UNIX_EPOCH), connection_seed(UNIX_EPOCH));
    }
}
