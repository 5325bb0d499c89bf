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

pub use crate::admission::{RejectCode, Rejection};
use crate::engine::Signal;
use crate::time::Instant;

/// Why a session (a [`StreamSession`], or one connection of a
/// [`DatagramService`](crate::datagram::DatagramService)) closed.
///
/// One type for every protocol and both session kinds, after quinn-proto's
/// `ConnectionError`: the variant says what happened, a protocol error
/// carries that protocol's own error enum ([`ProtocolError`]) and a refusal
/// its [`RejectCode`]. The `Display` text is for logs only; match on the
/// variants to decide anything.
///
/// `#[non_exhaustive]`: new reasons (resource budgets, stalls) are added
/// without breaking matches that end in `_ =>`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed the transport or said goodbye in-protocol (TCP EOF,
    /// RTMP `deleteStream` then EOF, SRT SHUTDOWN).
    PeerClosed,
    /// The peer broke the protocol; the error says how.
    ProtocolError(ProtocolError),
    /// A publish or play request was refused (by the application's
    /// [`Admission`](crate::admission::Admission), by the engine, or, for a
    /// client, by the remote server).
    Rejected(Rejection),
    /// No input within the idle timeout (or the handshake took too long).
    IdleTimeout,
    /// The local side shut the session down ([`StreamSession::close`],
    /// server shutdown).
    LocalShutdown,
    /// Output was pending and the peer's socket accepted no byte of it for
    /// this long ([`DriveConfig::write_stall_timeout`]): a player that never
    /// reads. The transport is dropped without a flush.
    WriteStalled(Duration),
    /// The peer keeps the connection alive but reads nothing: an SRT
    /// viewer that acknowledged none of the data sent to it for the peer
    /// idle timeout ([`crate::srt::connection`], proof of life).
    Unresponsive,
    /// A publisher sent no media in time and was closed to free its stream
    /// slot ([`MediaWatchdog`](crate::engine::MediaWatchdog)).
    MediaTimeout(crate::engine::MediaStall),
    /// An operator ended the session ([`Engine::kick`](crate::Engine::kick),
    /// the server's `DELETE /v1/sessions/{id}`).
    Kicked,
}

impl CloseReason {
    /// A refusal with `code` and a log text.
    pub fn rejected(code: RejectCode, reason: impl Into<String>) -> Self {
        CloseReason::Rejected(Rejection::new(code, reason))
    }

    /// The refusal, if the session was rejected.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            CloseReason::Rejected(r) => Some(r),
            _ => None,
        }
    }

    /// The protocol error, if the peer broke the protocol.
    pub fn protocol_error(&self) -> Option<&ProtocolError> {
        match self {
            CloseReason::ProtocolError(e) => Some(e),
            _ => None,
        }
    }
}

impl core::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("peer closed"),
            CloseReason::ProtocolError(e) => write!(f, "protocol error: {e}"),
            CloseReason::Rejected(r) => write!(f, "rejected: {r}"),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::LocalShutdown => f.write_str("local shutdown"),
            CloseReason::WriteStalled(d) => {
                write!(f, "write stalled: the peer read nothing for {d:?}")
            }
            CloseReason::Unresponsive => f.write_str("peer acknowledged nothing sent to it"),
            CloseReason::MediaTimeout(e) => write!(f, "publisher closed: {e}"),
            CloseReason::Kicked => f.write_str("kicked by an operator"),
        }
    }
}

impl From<ProtocolError> for CloseReason {
    fn from(e: ProtocolError) -> Self {
        CloseReason::ProtocolError(e)
    }
}

impl From<Rejection> for CloseReason {
    fn from(r: Rejection) -> Self {
        CloseReason::Rejected(r)
    }
}

/// How a peer broke its protocol: each protocol's own error enum, wrapped.
///
/// `#[non_exhaustive]`: RTSP and WebRTC add their variants.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RTMP (handshake, chunk stream, AMF, commands, FLV tags, limits).
    #[cfg(feature = "rtmp")]
    #[error("rtmp: {0}")]
    Rtmp(#[from] crate::rtmp::RtmpError),
    /// SRT (what an SRT connection's payloads or requests broke).
    #[cfg(feature = "srt")]
    #[error("srt: {0}")]
    Srt(#[from] crate::srt::SrtError),
    /// RTSP (message codec bounds, interleaved channels).
    #[cfg(feature = "rtsp")]
    #[error("rtsp: {0}")]
    Rtsp(#[from] crate::rtsp::RtspError),
    /// A protocol implemented outside this crate (or a test's fake
    /// protocol). Compared by identity.
    #[error("{0}")]
    Other(Arc<dyn std::error::Error + Send + Sync + 'static>),
}

impl ProtocolError {
    /// Wraps the error of a protocol implemented outside this crate.
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ProtocolError::Other(Arc::new(e))
    }
}

impl PartialEq for ProtocolError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            #[cfg(feature = "rtmp")]
            (ProtocolError::Rtmp(a), ProtocolError::Rtmp(b)) => a == b,
            #[cfg(feature = "srt")]
            (ProtocolError::Srt(a), ProtocolError::Srt(b)) => a == b,
            #[cfg(feature = "rtsp")]
            (ProtocolError::Rtsp(a), ProtocolError::Rtsp(b)) => a == b,
            (ProtocolError::Other(a), ProtocolError::Other(b)) => Arc::ptr_eq(a, b),
            #[allow(unreachable_patterns)]
            _ => false,
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

    /// The signal to wait on for work from outside the socket: new media
    /// while the session plays a stream, or a deferred admission decision
    /// ([`AdmissionWait::signal`](crate::admission::AdmissionWait::signal))
    /// while one is pending. Either way the driver calls
    /// [`handle_media`](Self::handle_media) when it fires.
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
    /// A new session for the connection `conn` (its peer and local
    /// addresses), accepted at `now`. `seed` feeds the session's randomness
    /// (handshake bytes, ids).
    fn new_session(&self, conn: StreamConn, now: Instant, seed: u64) -> Box<dyn StreamSession>;
}

impl<F: SessionFactory + ?Sized> SessionFactory for Arc<F> {
    fn new_session(&self, conn: StreamConn, now: Instant, seed: u64) -> Box<dyn StreamSession> {
        (**self).new_session(conn, now, seed)
    }
}

/// What a session factory learns about an accepted stream connection.
/// The local address matters on a wildcard or multi-homed listener: an
/// RTSP server names it in the `Content-Base` and `Transport` headers it
/// sends (RFC 2326 §12.39), and a UDP service it steers answers from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamConn {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The local address of the accepted socket (the address the peer
    /// connected to, not the listener's wildcard).
    pub local: SocketAddr,
}

impl StreamConn {
    /// A connection from `peer` to `local`.
    pub fn new(peer: SocketAddr, local: SocketAddr) -> Self {
        StreamConn { peer, local }
    }

    /// A connection from `peer` whose local address is unknown (an
    /// unspecified address of the peer's family, port 0).
    pub fn from_peer(peer: SocketAddr) -> Self {
        let local = match peer {
            SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
        };
        StreamConn { peer, local }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("fake protocol broke")]
    struct Fake;

    #[test]
    fn close_reasons_carry_typed_causes() {
        let r = CloseReason::rejected(RejectCode::NotFound, "stream `live/x` not found");
        assert_eq!(r.rejection().map(|r| r.code), Some(RejectCode::NotFound));
        assert_eq!(
            r.to_string(),
            "rejected: not found: stream `live/x` not found"
        );
        let e = ProtocolError::other(Fake);
        let c = CloseReason::from(e.clone());
        assert_eq!(c.protocol_error(), Some(&e), "same error compares equal");
        assert_ne!(
            c,
            CloseReason::from(ProtocolError::other(Fake)),
            "foreign errors compare by identity"
        );
        assert_eq!(c.to_string(), "protocol error: fake protocol broke");
        #[cfg(feature = "rtmp")]
        {
            let rtmp = CloseReason::from(ProtocolError::from(crate::rtmp::RtmpError::Protocol(
                "second connect".into(),
            )));
            assert!(matches!(
                rtmp.protocol_error(),
                Some(ProtocolError::Rtmp(crate::rtmp::RtmpError::Protocol(_)))
            ));
            assert_eq!(rtmp.to_string(), "protocol error: rtmp: second connect");
        }
    }
}
