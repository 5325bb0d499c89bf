//! The one shape every datagram-transport service has (SRT today; RTSP over
//! UDP and WebRTC later), so that an adapter has exactly one UDP driver loop.
//!
//! A [`DatagramService`] owns one or more UDP sockets' worth of protocol
//! state (SRT: one socket; RTSP: an RTP + RTCP pair; WebRTC: several media
//! ports): endpoint machines that route each datagram to its connection,
//! plus the glue that joins those connections to the
//! [`Engine`](crate::Engine). It is sans-IO: the adapter binds the sockets,
//! feeds datagrams, commands and time, and sends what it drains. Each
//! socket is named by its [`SocketIndex`], its position in the list the
//! [`DatagramServiceFactory`] was given; every [`Received`] datagram says
//! which socket it came in on (and, on a wildcard bind where the OS reports
//! it, which local IP it was addressed to), and every [`Transmit`] says
//! which socket sends it (and, optionally, from which local IP).
//!
//! Driver loop, in order, until [`DatagramService::is_closed`]:
//! 1. every datagram read from any of the sockets →
//!    [`DatagramService::handle_datagram`] (a driver may read a batch
//!    first);
//! 2. the service's [`command signal`](DatagramService::command_signal)
//!    moved → [`DatagramService::handle_commands`] (work handed over by
//!    stream sessions through an [`Inbox`]);
//! 3. media signals fired → [`DatagramService::handle_media`] with the
//!    positions of the streams that moved (see below);
//! 4. the deadline of [`DatagramService::poll_timeout`] passed →
//!    [`DatagramService::handle_timeout`];
//! 5. drain [`DatagramService::poll_transmit`] into sends, batched per
//!    socket (up to [`UdpConfig::sendmmsg_batch`] datagrams per `sendmmsg`
//!    on Linux);
//! 6. wait on readability of every socket, the command signal, any signal
//!    listed by [`DatagramService::media_signals`] (epochs read *before*
//!    step 3) and the deadline.
//!
//! **Media wake-ups say what moved.** The service lists the signals of the
//! streams it plays ([`DatagramService::media_signals`], each stream once)
//! and bumps [`DatagramService::media_version`] whenever that list changes.
//! The driver re-reads the list only when the version moved (and then
//! calls `handle_media` with every position); otherwise it checks the armed
//! epochs (one atomic load per stream) and passes only the positions of the
//! streams whose signal moved. A wake for one stream thus costs the viewers
//! of that stream, not a walk of every viewer of every stream.
//!
//! A datagram that fails to send on an error of its own (unreachable
//! destination, too large, a socket index the driver does not have) is
//! dropped like a datagram lost on the network: the protocols above UDP
//! repair loss themselves. On a full socket buffer the unsent datagrams are
//! parked in order until that socket is writable.
//!
//! [`DatagramDriver`] implements this loop once for every adapter.

mod driver;
pub mod inbox;

pub use driver::{DatagramDriver, DatagramIo, RecvArena, RecvMeta, SendOutcome, UdpConfig};
pub use inbox::{reply, Inbox, InboxError, InboxSender, ReplyCanceled, ReplyReceiver, ReplySender};

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::engine::Signal;
use crate::time::Instant;

/// Which socket of a [`DatagramService`]: the position of its local address
/// in the list given to [`DatagramServiceFactory::new_service`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketIndex(pub u16);

impl SocketIndex {
    /// The index as a `usize` (to index a list of sockets).
    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

/// One datagram received on one socket of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The socket it came in on.
    pub socket: SocketIndex,
    /// The peer that sent it.
    pub src: SocketAddr,
    /// The local IP it was addressed to, where the adapter learns it
    /// (`IP_PKTINFO` / `IPV6_RECVPKTINFO`, RFC 3542 §6, on a wildcard
    /// bind); `None` when the OS does not report it or the socket is bound
    /// to one address (then it is that address).
    pub dst_ip: Option<IpAddr>,
    /// The datagram.
    pub contents: Bytes,
}

impl Received {
    /// A datagram from `src` on socket 0, destination not reported.
    pub fn new(src: SocketAddr, contents: Bytes) -> Self {
        Received {
            socket: SocketIndex(0),
            src,
            dst_ip: None,
            contents,
        }
    }
}

/// One datagram to send: a few `Bytes` to write with vectored I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The socket of the service that sends it.
    pub socket: SocketIndex,
    /// The local IP to send from (the `dst_ip` of the datagram being
    /// answered, on a wildcard or multi-homed bind), or `None` to let the
    /// OS choose by its routing table. Adapters pass it as `IP_PKTINFO` /
    /// `IPV6_PKTINFO` (RFC 3542 §6.1) where the OS supports it.
    pub src_ip: Option<IpAddr>,
    /// Where to send it.
    pub destination: SocketAddr,
    /// The datagram, in pieces.
    pub contents: SmallVec<[Bytes; 2]>,
}

impl Transmit {
    /// A datagram to `destination` from socket 0, source IP chosen by the
    /// OS.
    pub fn new(destination: SocketAddr, contents: SmallVec<[Bytes; 2]>) -> Self {
        Transmit {
            socket: SocketIndex(0),
            src_ip: None,
            destination,
            contents,
        }
    }

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

/// A protocol service on one or more UDP sockets, joined to the engine.
///
/// Invariants a driver relies on: every queue inside is bounded (the
/// service drops or refuses rather than grows); `poll_transmit` and the
/// signals are cheap to call when nothing is due.
pub trait DatagramService: Send {
    /// One datagram received on one of the service's sockets.
    fn handle_datagram(&mut self, now: Instant, datagram: Received);

    /// The deadline returned by [`poll_timeout`](Self::poll_timeout) passed.
    fn handle_timeout(&mut self, now: Instant);

    /// The signal of the service's command [`Inbox`], if it has one: the
    /// driver waits on it and calls
    /// [`handle_commands`](Self::handle_commands) when it moved.
    fn command_signal(&self) -> Option<Signal> {
        None
    }

    /// Drain the command inbox (work handed over by stream sessions: "add
    /// a UDP viewer for this RTSP session", "start sending", "tear down",
    /// "own this WebRTC session"). Called after the
    /// [`command_signal`](Self::command_signal) moved (its epoch read
    /// before the call).
    fn handle_commands(&mut self, _now: Instant) {}

    /// Pull frames from the engine into the connections that play the
    /// streams at positions `fired` of the list
    /// [`media_signals`](Self::media_signals) gave for the current
    /// [`media_version`](Self::media_version) (all positions right after
    /// the version changed). Positions out of range are ignored.
    fn handle_media(&mut self, now: Instant, fired: &[usize]);

    /// The next datagram to send, if any. Drain until `None`.
    fn poll_transmit(&mut self) -> Option<Transmit>;

    /// The next deadline at which [`handle_timeout`](Self::handle_timeout)
    /// must be called.
    fn poll_timeout(&self) -> Option<Instant>;

    /// A number that changes whenever the list
    /// [`media_signals`](Self::media_signals) gives changes (a stream
    /// added, removed or moved). The driver re-reads the list only then.
    fn media_version(&self) -> u64;

    /// Appends the signal of every stream some connection plays (each
    /// stream once) — and whatever else should wake it the same way (SRT:
    /// its deferred admission decisions,
    /// [`AdmissionWait::signal`](crate::admission::AdmissionWait::signal),
    /// listed after the streams); a signal's position is how
    /// [`handle_media`](Self::handle_media) names its stream. The driver
    /// reads their epochs before calling `handle_media` and waits for any
    /// to change.
    fn media_signals(&self, out: &mut Vec<Signal>);

    /// The local side shuts the service down: every connection is told
    /// (e.g. SRT SHUTDOWN) and no new one is accepted.
    fn close(&mut self, now: Instant);

    /// `true` once [`close`](Self::close) was called and everything it
    /// queued was drained; the driver then stops.
    fn is_closed(&self) -> bool;
}

/// Builds the service for a set of bound UDP sockets.
pub trait DatagramServiceFactory: Send + Sync + 'static {
    /// A new service for the sockets bound at `sockets` (position =
    /// [`SocketIndex`]; a wildcard address when bound to every interface),
    /// started at `now`. `seed` feeds its randomness (socket ids, cookie
    /// secret).
    fn new_service(
        &self,
        sockets: &[SocketAddr],
        now: Instant,
        seed: u64,
    ) -> Box<dyn DatagramService>;
}

impl<F: DatagramServiceFactory + ?Sized> DatagramServiceFactory for Arc<F> {
    fn new_service(
        &self,
        sockets: &[SocketAddr],
        now: Instant,
        seed: u64,
    ) -> Box<dyn DatagramService> {
        (**self).new_service(sockets, now, seed)
    }
}
