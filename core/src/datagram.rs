//! The one shape every datagram-transport service has (SRT today; RTSP over
//! UDP and WebRTC later), so that an adapter has exactly one UDP driver loop.
//!
//! A [`DatagramService`] owns one UDP socket's worth of protocol state: an
//! endpoint machine that routes each datagram to its connection, plus the
//! glue that joins those connections to the [`Engine`](crate::Engine). It is
//! sans-IO: the adapter feeds datagrams and time, and sends what it drains.
//!
//! Driver loop, in order, until [`DatagramService::is_closed`]:
//! 1. every datagram read from the socket →
//!    [`DatagramService::handle_datagram`] (a driver may read a batch first);
//! 2. a media signal fired → [`DatagramService::handle_media`];
//! 3. the deadline of [`DatagramService::poll_timeout`] passed →
//!    [`DatagramService::handle_timeout`];
//! 4. drain [`DatagramService::poll_transmit`] into sends, batched (up to
//!    [`UdpConfig::sendmmsg_batch`] datagrams per `sendmmsg` on Linux);
//! 5. wait on socket readability, any signal listed by
//!    [`DatagramService::media_signals`] (epochs read *before* step 2) and
//!    the deadline.
//!
//! A datagram that fails to send on an error of its own (unreachable
//! destination, too large) is dropped like a datagram lost on the network:
//! the protocols above UDP repair loss themselves. On a full socket buffer
//! the unsent datagrams are parked in order until the socket is writable.
//!
//! [`DatagramDriver`] implements this loop once for every adapter.

mod driver;

pub use driver::{DatagramDriver, DatagramIo, RecvArena, SendOutcome, UdpConfig};

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::engine::Signal;
use crate::time::Instant;

/// One datagram to send: a few `Bytes` to write with vectored I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The datagram, in pieces.
    pub contents: SmallVec<[Bytes; 2]>,
}

impl Transmit {
    /// The datagram as one contiguous buffer (copies if in several pieces).
    pub fn to_bytes(&self) -> Bytes {
        match self.contents.as_slice() {
            [one] => one.clone(),
            parts => parts.concat().into(),
        }
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.contents.iter().map(Bytes::len).sum()
    }

    /// Whether the datagram is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A protocol service on one UDP socket, joined to the engine.
pub trait DatagramService: Send {
    /// One datagram received from `src`.
    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, datagram: Bytes);

    /// The deadline returned by [`poll_timeout`](Self::poll_timeout) passed.
    fn handle_timeout(&mut self, now: Instant);

    /// Pull frames from the engine subscriptions of every playing
    /// connection into the machines.
    fn handle_media(&mut self, now: Instant);

    /// The next datagram to send, if any. Drain until `None`.
    fn poll_transmit(&mut self) -> Option<Transmit>;

    /// The next deadline at which [`handle_timeout`](Self::handle_timeout)
    /// must be called.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Appends the signal of every stream some connection plays (each
    /// stream once), and of every deferred admission decision pending
    /// ([`AdmissionWait::signal`](crate::admission::AdmissionWait::signal)). The driver reads their epochs before calling
    /// [`handle_media`](Self::handle_media) and waits for any to change.
    fn media_signals(&self, out: &mut Vec<Signal>);

    /// The local side shuts the service down: every connection is told
    /// (e.g. SRT SHUTDOWN) and no new one is accepted.
    fn close(&mut self, now: Instant);

    /// `true` once [`close`](Self::close) was called and everything it
    /// queued was drained; the driver then stops.
    fn is_closed(&self) -> bool;
}

/// Builds the service for one bound UDP socket.
pub trait DatagramServiceFactory: Send + Sync + 'static {
    /// A new service for the socket bound at `local`, started at `now`.
    /// `seed` feeds its randomness (socket ids, cookie secret).
    fn new_service(&self, local: SocketAddr, now: Instant, seed: u64) -> Box<dyn DatagramService>;
}

impl<F: DatagramServiceFactory + ?Sized> DatagramServiceFactory for Arc<F> {
    fn new_service(&self, local: SocketAddr, now: Instant, seed: u64) -> Box<dyn DatagramService> {
        (**self).new_service(local, now, seed)
    }
}
