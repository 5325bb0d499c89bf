//! The engine's table of media sessions: every [`Publisher`](super::Publisher)
//! and [`Subscriber`](super::Subscriber) taken from an [`Engine`](super::Engine)
//! has an entry here while it lives, with an id, the protocol and peer its
//! glue named ([`SessionTag`]), its stream and a kick flag.
//!
//! What an operator (the server's `/v1/sessions` API and `/metrics`) or an
//! embedder reads from it: [`Engine::sessions`](super::Engine::sessions)
//! copies the counters of every entry, [`Engine::kick`](super::Engine::kick)
//! asks one session to end.
//!
//! # Cost and invariants
//!
//! - The table is a mutex-protected map touched when a publisher or
//!   subscriber is created or dropped, and by a snapshot. The per-frame path
//!   ([`Publisher::send`](super::Publisher::send),
//!   [`Subscriber::recv`](super::Subscriber::recv)) never takes it: the
//!   counters are the atomics of [`StreamStats`](super::StreamStats) and
//!   [`SubscriberStats`] that the sessions keep
//!   anyway. A snapshot holds the lock only to clone the entries' `Arc`s
//!   (a pointer copy each), and reads the atomics after releasing it, so a
//!   scrape of 10 000 sessions delays a new subscribe by that copy at most
//!   and never delays a frame.
//! - Bounded: one entry per live publisher or subscriber, which the apps'
//!   stream and subscriber limits bound; an entry leaves the table when its
//!   publisher or subscriber drops.
//! - A kick is a flag and a notify of the stream's signal: the session's
//!   glue sees it at its next `recv` (a kicked subscriber reads
//!   [`Recv::End`](super::Recv::End)) or asks
//!   [`Publisher::is_kicked`](super::Publisher::is_kicked) /
//!   [`Subscriber::is_kicked`](super::Subscriber::is_kicked) and closes
//!   its connection with [`CloseReason::LocalShutdown`](crate::session::CloseReason).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::bus::StreamShared;
use super::registry::StreamKey;
use super::stats::SubscriberStats;

/// Who a publisher or subscriber is, as its protocol glue names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionTag {
    /// Lower-case protocol name: `rtmp`, `rtsp`, `srt`, `hls`, `webrtc`, or
    /// `internal` (a recorder, a relay, a test).
    pub protocol: &'static str,
    /// The peer's address, when there is one peer (not for HLS, whose one
    /// subscriber serves every HTTP client).
    pub peer: Option<SocketAddr>,
}

impl SessionTag {
    /// A session of `protocol` with the peer at `peer`.
    pub const fn new(protocol: &'static str, peer: SocketAddr) -> Self {
        SessionTag {
            protocol,
            peer: Some(peer),
        }
    }

    /// A session of `protocol` with no single peer.
    pub const fn without_peer(protocol: &'static str) -> Self {
        SessionTag {
            protocol,
            peer: None,
        }
    }

    /// A session of the embedding application itself (`internal`).
    pub const fn internal() -> Self {
        Self::without_peer("internal")
    }
}

/// Whether a session publishes or plays its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionRole {
    /// The stream's publisher.
    Publisher,
    /// A subscriber (a viewer, or an egress serving many, like HLS).
    Viewer,
}

impl SessionRole {
    /// `publisher` or `viewer`.
    pub const fn name(self) -> &'static str {
        match self {
            SessionRole::Publisher => "publisher",
            SessionRole::Viewer => "viewer",
        }
    }
}

/// One live publisher or subscriber in the table.
#[derive(Debug)]
pub(crate) struct SessionEntry {
    pub(crate) id: u64,
    pub(crate) role: SessionRole,
    pub(crate) tag: SessionTag,
    pub(crate) shared: Arc<StreamShared>,
    /// The subscriber's counters (`None` for a publisher).
    pub(crate) sub: Option<Arc<SubscriberStats>>,
    pub(crate) kicked: AtomicBool,
}

impl SessionEntry {
    pub(crate) fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::Acquire)
    }
}

/// The table (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct SessionTable {
    next_id: AtomicU64,
    map: Mutex<BTreeMap<u64, Arc<SessionEntry>>>,
    /// What ended sessions moved, per protocol and role (one entry per
    /// protocol name and role: bounded by the protocols compiled in).
    retired: Mutex<Vec<ProtocolTotals>>,
}

/// Totals per protocol and role since the engine was built, ended sessions
/// included ([`Engine::protocol_totals`](super::Engine::protocol_totals)):
/// monotonic, so they export as Prometheus counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProtocolTotals {
    /// Protocol name ([`SessionTag::protocol`]).
    pub protocol: &'static str,
    /// Publishers or viewers.
    pub role: SessionRole,
    /// Sessions started.
    pub sessions: u64,
    /// Sessions live now.
    pub live: u64,
    /// Media payload bytes published (publishers) or delivered (viewers).
    pub bytes: u64,
    /// Media frames published or delivered.
    pub frames: u64,
    /// Viewers: frames skipped for falling behind.
    pub dropped: u64,
}

impl ProtocolTotals {
    fn add(list: &mut Vec<ProtocolTotals>, s: &SessionSnapshot, live: bool) {
        let i = match list
            .iter()
            .position(|t| t.protocol == s.tag.protocol && t.role == s.role)
        {
            Some(i) => i,
            None => {
                list.push(ProtocolTotals {
                    protocol: s.tag.protocol,
                    role: s.role,
                    sessions: 0,
                    live: 0,
                    bytes: 0,
                    frames: 0,
                    dropped: 0,
                });
                list.len() - 1
            }
        };
        if let Some(t) = list.get_mut(i) {
            t.sessions += 1;
            t.live += u64::from(live);
            t.bytes = t.bytes.wrapping_add(s.bytes);
            t.frames = t.frames.wrapping_add(s.frames);
            t.dropped = t.dropped.wrapping_add(s.dropped);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl SessionTable {
    /// Adds an entry; ids start at 1 and are never reused.
    pub(crate) fn insert(
        &self,
        role: SessionRole,
        tag: SessionTag,
        shared: Arc<StreamShared>,
        sub: Option<Arc<SubscriberStats>>,
    ) -> Arc<SessionEntry> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(SessionEntry {
            id,
            role,
            tag,
            shared,
            sub,
            kicked: AtomicBool::new(false),
        });
        lock(&self.map).insert(id, entry.clone());
        entry
    }

    /// Removes an ended session, adding what it moved to the totals.
    pub(crate) fn remove(&self, entry: &SessionEntry) {
        let snap = SessionSnapshot::of(entry);
        let mut map = lock(&self.map);
        map.remove(&entry.id);
        // Under the map lock (order: map, then retired), so that a
        // `totals` sees each session either live or retired, never both
        // nor neither: the totals never run backwards.
        ProtocolTotals::add(&mut lock(&self.retired), &snap, false);
        drop(map);
    }

    /// Totals per protocol and role: ended sessions plus live ones.
    pub(crate) fn totals(&self) -> Vec<ProtocolTotals> {
        // Both read under the map lock (see `remove`); the live counters
        // are read after it, and only grow until their session retires.
        let (live, mut out) = {
            let map = lock(&self.map);
            let live: Vec<_> = map.values().cloned().collect();
            let retired = lock(&self.retired).clone();
            (live, retired)
        };
        for e in &live {
            ProtocolTotals::add(&mut out, &SessionSnapshot::of(e), true);
        }
        out.sort_by(|a, b| (a.protocol, a.role.name()).cmp(&(b.protocol, b.role.name())));
        out
    }

    /// The entries, cloned under the lock (pointer copies only).
    pub(crate) fn entries(&self) -> Vec<Arc<SessionEntry>> {
        lock(&self.map).values().cloned().collect()
    }

    pub(crate) fn get(&self, id: u64) -> Option<Arc<SessionEntry>> {
        lock(&self.map).get(&id).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

/// The registration of a publisher or subscriber: removes its entry on drop.
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) table: Arc<SessionTable>,
    pub(crate) entry: Arc<SessionEntry>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.remove(&self.entry);
    }
}

/// A copy of one session's numbers ([`Engine::sessions`](super::Engine::sessions)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionSnapshot {
    /// The session's id: unique for the engine's life, never reused.
    pub id: u64,
    /// Publisher or viewer.
    pub role: SessionRole,
    /// Protocol and peer, as the glue named them.
    pub tag: SessionTag,
    /// The stream published or played.
    pub key: StreamKey,
    /// Media payload bytes: published (publisher) or delivered (viewer).
    pub bytes: u64,
    /// Media frames: published (publisher) or delivered (viewer).
    pub frames: u64,
    /// Viewer: frames skipped because it fell behind the ring.
    pub dropped: u64,
    /// Viewer: frames published that it has not read yet.
    pub lag: u64,
    /// Bitrate in bits per second of media time.
    pub bitrate_bps: u64,
    /// Asked to end by [`Engine::kick`](super::Engine::kick).
    pub kicked: bool,
}

impl SessionSnapshot {
    pub(crate) fn of(e: &SessionEntry) -> Self {
        let stream = e.shared.stats_ref().snapshot();
        let (bytes, frames, dropped, bitrate_bps, lag) = match &e.sub {
            Some(s) => {
                let s = s.snapshot();
                let head = e.shared.head();
                (
                    s.bytes,
                    s.frames,
                    s.dropped,
                    s.bitrate_bps,
                    head.saturating_sub(s.position),
                )
            }
            None => (stream.bytes, stream.frames, 0, stream.bitrate_bps, 0),
        };
        SessionSnapshot {
            id: e.id,
            role: e.role,
            tag: e.tag,
            key: e.shared.key().clone(),
            bytes,
            frames,
            dropped,
            lag,
            bitrate_bps,
            kicked: e.is_kicked(),
        }
    }
}
