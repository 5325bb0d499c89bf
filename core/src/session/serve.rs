//! The runtime-free policy of every adapter's TCP accept loop (`serve_tcp`):
//! the settings, the connection limit with its warning, the count of open
//! connections that shutdown waits on, the end-of-connection log and the
//! seed of each new session. The adapters keep only the accepting, spawning
//! and waiting of their runtime.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::driver::DriveConfig;
use super::CloseReason;
use crate::engine::Signal;
use crate::log_limit::LogLimiter;
use crate::time::Instant;

/// Default of [`ServeConfig::max_connections_per_ip`]: far above what a
/// viewer host opens, below the global limit so that one address cannot
/// take every connection; high enough for the test suite (200 loopback
/// players in `tests/tests/fanout.rs`) and the benchmarks (1 000 loopback
/// RTMP players plus the publisher in `bench/server_bench.sh`; raise it
/// with `--max-connections-per-ip` beyond that).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 2048;

/// Settings of an executor adapter's `serve_tcp_with` (re-exported there).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    /// Most connections served at once; more are accepted and closed at once
    /// with a warning in the log.
    pub max_connections: usize,
    /// Most connections served at once from one source address (0: no
    /// limit); more are accepted and closed at once with a rate-limited
    /// warning. Default [`DEFAULT_MAX_CONNECTIONS_PER_IP`].
    pub max_connections_per_ip: usize,
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
/// Builder-style setters: the struct is `#[non_exhaustive]`, so other
/// crates start from its default (or constructor) value and chain these.
impl ServeConfig {
    /// Sets [`max_connections`](Self::max_connections).
    #[must_use]
    pub fn with_max_connections(mut self, max_connections: usize) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// Sets [`max_connections_per_ip`](Self::max_connections_per_ip).
    #[must_use]
    pub fn with_max_connections_per_ip(mut self, max_connections_per_ip: usize) -> Self {
        self.max_connections_per_ip = max_connections_per_ip;
        self
    }

    /// Sets [`shutdown_grace`](Self::shutdown_grace).
    #[must_use]
    pub fn with_shutdown_grace(mut self, shutdown_grace: Duration) -> Self {
        self.shutdown_grace = shutdown_grace;
        self
    }

    /// Sets [`nodelay`](Self::nodelay).
    #[must_use]
    pub fn with_nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// Sets [`drive`](Self::drive).
    #[must_use]
    pub fn with_drive(mut self, drive: DriveConfig) -> Self {
        self.drive = drive;
        self
    }

    /// Sets [`send_buffer`](Self::send_buffer).
    #[must_use]
    pub fn with_send_buffer(mut self, send_buffer: usize) -> Self {
        self.send_buffer = send_buffer;
        self
    }
}

/// Default of [`ServeConfig::send_buffer`] (256 KiB).
pub const DEFAULT_TCP_SEND_BUFFER: usize = 256 * 1024;

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_connections: 10_000,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            shutdown_grace: Duration::from_secs(2),
            nodelay: true,
            drive: DriveConfig::default(),
            send_buffer: DEFAULT_TCP_SEND_BUFFER,
        }
    }
}

/// The open connections of one accept loop: a count for the limit and for
/// the shutdown grace, a count per source address for the per-address
/// limit, a stopping flag the connections watch, and a signal notified on
/// every change (a connection ended, the stop).
///
/// Invariant: the per-address table has an entry only for addresses with
/// an open connection, so it holds at most as many entries as connections
/// are open (bounded by the global limit).
#[derive(Debug, Default)]
pub struct ConnectionTracker {
    active: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
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
        self.admit_from(peer, max, 0, None)
    }

    /// Like [`admit`](Self::admit), and also refuses a connection when
    /// `max_per_ip` (0: no limit) connections from `peer`'s address are
    /// open already, with a warning rate-limited at `now` (a peer can cause
    /// it in a flood). The adapters' accept loops use this.
    pub fn admit_from(
        self: &Arc<Self>,
        peer: SocketAddr,
        max: usize,
        max_per_ip: usize,
        now: Option<Instant>,
    ) -> Option<ConnectionGuard> {
        let ip = peer.ip();
        if max_per_ip > 0 {
            let mut per_ip = lock(&self.per_ip);
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= max_per_ip {
                let open = *n;
                drop(per_ip);
                static PER_IP: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
                if let Some(suppressed) = now.and_then(|t| PER_IP.check(t)) {
                    tracing::warn!(%peer, open, max_per_ip, suppressed, "refusing connection: too many connections from this address");
                }
                return None;
            }
            *n += 1;
        }
        let guard = self.admit_total(peer, max, (max_per_ip > 0).then_some(ip), now);
        if guard.is_none() && max_per_ip > 0 {
            self.release_ip(ip);
        }
        guard
    }

    fn release_ip(&self, ip: IpAddr) {
        let mut per_ip = lock(&self.per_ip);
        if let Some(n) = per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_ip.remove(&ip);
            }
        }
    }

    /// Connections open now from `ip` (counted only by
    /// [`admit_from`](Self::admit_from) with a per-address limit).
    pub fn active_from(&self, ip: IpAddr) -> usize {
        lock(&self.per_ip).get(&ip).copied().unwrap_or(0)
    }

    fn admit_total(
        self: &Arc<Self>,
        peer: SocketAddr,
        max: usize,
        ip: Option<IpAddr>,
        now: Option<Instant>,
    ) -> Option<ConnectionGuard> {
        let admitted = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            static TOTAL: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
            // Without a time (`admit`), every refusal is logged.
            if let Some(suppressed) = now.map_or(Some(0), |t| TOTAL.check(t)) {
                tracing::warn!(%peer, max, suppressed, "refusing connection: too many connections");
            }
            return None;
        }
        Some(ConnectionGuard {
            tracker: self.clone(),
            ip,
        })
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
pub struct ConnectionGuard {
    tracker: Arc<ConnectionTracker>,
    /// The address it counts for in the per-address table, if any.
    ip: Option<IpAddr>,
}

impl ConnectionGuard {
    /// The tracker this connection counts in.
    pub fn tracker(&self) -> &Arc<ConnectionTracker> {
        &self.tracker
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            self.tracker.release_ip(ip);
        }
        self.tracker.active.fetch_sub(1, Ordering::AcqRel);
        self.tracker.changed.notify();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Logs how a served connection ended, at `now` (read by the adapter):
/// the one line per dropped or refused peer. A clean close (the peer said
/// goodbye, or the server shut down) is `debug`; any other reason (protocol
/// error, refusal, timeout, stalled writes) and I/O errors are `info`,
/// rate-limited per kind (a peer can cause them in a flood) with the
/// `suppressed` count of lines left out since the last one
/// (docs/security.md item 7); a line left out is still written at `debug`.
/// The reason is escaped: it may quote peer text.
pub fn log_end(result: &io::Result<CloseReason>, now: Instant) {
    static DROPPED: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
    static LOST: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
    match result {
        Ok(reason @ (CloseReason::PeerClosed | CloseReason::LocalShutdown)) => {
            tracing::debug!(%reason, "connection closed");
        }
        Ok(reason) => {
            let reason = reason.to_string();
            let reason = crate::peer_text::escaped(&reason);
            match DROPPED.check(now) {
                Some(suppressed) => tracing::info!(%reason, suppressed, "connection closed"),
                // Counted in the next `suppressed`; still there at debug.
                None => tracing::debug!(%reason, "connection closed"),
            }
        }
        Err(e) => {
            let e = e.to_string();
            let error = crate::peer_text::escaped(&e);
            match LOST.check(now) {
                Some(suppressed) => tracing::info!(%error, suppressed, "connection lost"),
                None => tracing::debug!(%error, "connection lost"),
            }
        }
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
    fn the_per_address_limit_counts_open_connections_per_ip() {
        let t = ConnectionTracker::new();
        let a = SocketAddr::from(([127, 0, 0, 1], 1));
        let a2 = SocketAddr::from(([127, 0, 0, 1], 2));
        let b = SocketAddr::from(([10, 0, 0, 2], 1));
        let now = Some(Instant::from_millis(0));
        let g1 = t.admit_from(a, 10, 2, now);
        let g2 = t.admit_from(a2, 10, 2, now);
        assert!(g1.is_some() && g2.is_some());
        assert!(
            t.admit_from(a, 10, 2, now).is_none(),
            "third from one address"
        );
        let gb = t.admit_from(b, 10, 2, now);
        assert!(gb.is_some(), "another address is not affected");
        assert_eq!(t.active_from(a.ip()), 2);
        assert_eq!(t.active(), 3);
        drop(g1);
        assert_eq!(t.active_from(a.ip()), 1, "freed the moment it ends");
        let g3 = t.admit_from(a, 10, 2, now);
        assert!(g3.is_some());
        // The global limit refuses without leaving a per-address count.
        assert!(t.admit_from(b, 3, 2, now).is_none());
        assert_eq!(t.active_from(b.ip()), 1);
        drop((g2, g3, gb));
        assert_eq!(t.active(), 0);
        assert!(lock(&t.per_ip).is_empty(), "no entry for closed addresses");
    }

    #[test]
    fn seeds_differ() {
        assert_ne!(connection_seed(UNIX_EPOCH), connection_seed(UNIX_EPOCH));
    }
}
