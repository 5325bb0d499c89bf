//! The one shape every stream-transport session has, so that an adapter is one
//! small generic driver loop per transport rather than one per protocol.
//!
//! A [`StreamSession`] is a protocol machine already joined to the
//! [`Engine`](crate::Engine) (admission, publishing, subscribing). It is still
//! sans-IO: the adapter feeds it bytes and time, and writes what it drains.
//!
//! Driver loop, in order, until [`StreamSession::close_reason`] is `Some`:
//! 1. bytes read from the socket → [`StreamSession::handle_input`];
//! 2. the media signal fired → [`StreamSession::handle_media`];
//! 3. the deadline of [`StreamSession::poll_timeout`] passed →
//!    [`StreamSession::handle_timeout`];
//! 4. drain [`StreamSession::poll_transmit`] into one vectored write;
//! 5. wait on socket readability, [`StreamSession::media_signal`] (from the
//!    epoch read *before* step 2) and the deadline.
//!
//! A driver calls `handle_media` only once the previous transmit has been
//! written, so a viewer whose socket is slow falls behind in the engine's
//! ring (and skips to the next keyframe there) instead of growing a queue.
//!
//! This loop is written once, runtime-free, in [`StreamDriver`] (module
//! [`driver`]): an adapter gives it a [`StreamIo`] (its stream, clock and
//! timer). The runtime-free policy of the accept loop (limit, open count,
//! shutdown grace bookkeeping) is in [`serve`].

pub mod driver;
pub mod serve;

pub use driver::{DriveConfig, InputBuffer, MediaStep, StreamDriver, StreamIo};
pub use serve::{ConnectionGuard, ConnectionTracker, ServeConfig};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::engine::Signal;
use crate::time::Instant;

/// Why a session closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed the transport or said goodbye in-protocol.
    PeerClosed,
    /// The peer broke the protocol; the text says how.
    ProtocolError(String),
    /// The application refused the peer's publish or play request.
    Rejected(String),
    /// No input within the idle timeout.
    IdleTimeout,
    /// The local side shut the session down.
    LocalShutdown,
}

impl core::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("peer closed"),
            CloseReason::ProtocolError(e) => write!(f, "protocol error: {e}"),
            CloseReason::Rejected(e) => write!(f, "rejected: {e}"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::LocalShutdown => f.write_str("local shutdown"),
        }
    }
}

/// A protocol session over a reliable byte stream, joined to the engine.
pub trait StreamSession: Send {
    /// Bytes received from the peer. An empty slice means the peer closed its
    /// sending side (EOF).
    fn handle_input(&mut self, now: Instant, data: &[u8]);

    /// The deadline returned by [`poll_timeout`](Self::poll_timeout) passed.
    fn handle_timeout(&mut self, now: Instant);

    /// Pull frames from engine subscriptions into the machine. Called after
    /// the media signal fires and after every write completes.
    fn handle_media(&mut self, now: Instant);

    /// Appends every pending output buffer to `out` for one vectored write;
    /// returns how many bytes were appended (0: nothing pending).
    fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize;

    /// The next deadline at which [`handle_timeout`](Self::handle_timeout) must be called.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The signal to wait on for new media, while the session plays a stream.
    fn media_signal(&self) -> Option<Signal>;

    /// `Some(reason)` once the session is over; the driver flushes what
    /// `poll_transmit` still yields, then closes the transport.
    fn close_reason(&self) -> Option<&CloseReason>;

    /// The local side asks the session to end (server shutdown).
    fn close(&mut self, now: Instant);

    /// How long the driver may hold media back after a completed write so
    /// that the next write carries more frames (the playing stream's
    /// [`AppConfig::write_merge`](crate::AppConfig::write_merge)). Zero, the
    /// default, writes every frame at once. A driver uses the larger of this
    /// and its own setting.
    fn write_merge(&self) -> Duration {
        Duration::ZERO
    }
}

/// Builds a session for each accepted connection. Implemented by each
/// protocol's engine glue (e.g. [`crate::rtmp::RtmpSessionFactory`]).
pub trait SessionFactory: Send + Sync + 'static {
    /// A new session for a connection from `peer`, accepted at `now`.
    /// `seed` feeds the session's randomness (handshake bytes, ids).
    fn new_session(&self, peer: SocketAddr, now: Instant, seed: u64) -> Box<dyn StreamSession>;
}

impl<F: SessionFactory + ?Sized> SessionFactory for Arc<F> {
    fn new_session(&self, peer: SocketAddr, now: Instant, seed: u64) -> Box<dyn StreamSession> {
        (**self).new_session(peer, now, seed)
    }
}
