//! The SRT endpoint: one UDP socket, many connections
//! (draft-sharabayko-srt-01 §4.3 "Handshake", §4.3.1 "Caller-Listener").
//!
//! The endpoint is a sans-IO machine. The adapter feeds every datagram to
//! [`Endpoint::handle_datagram`], drains [`Endpoint::poll_transmit`] and
//! [`Endpoint::poll_event`] until `None`, and calls
//! [`Endpoint::handle_timeout`] at [`Endpoint::poll_timeout`].
//!
//! Listener side of the caller–listener handshake (in `endpoint/listener.rs`):
//! 1. **Induction** (§4.3.1.1): answered at once with a SYN cookie derived
//!    from a secret, the caller's address and a one-minute time bucket
//!    (HMAC-SHA256). Nothing is stored, so a flood of inductions costs no
//!    memory.
//! 2. **Conclusion** (§4.3.1.2): accepted only with a cookie of the current
//!    or previous bucket for that source address, HSv5 and an HSREQ
//!    extension. It becomes a pending [`EndpointEvent::Request`] carrying a
//!    token and the parsed stream id: admission is the application's
//!    decision ([`Endpoint::accept`] / [`Endpoint::reject`]).
//!    Encryption is checked first (§6.3.1, libsrt's enforced encryption):
//!    with [`EndpointConfig::passphrase`] set, the caller's KMREQ must
//!    unwrap with it (else `SRT_REJ_BADSECRET`) and a caller without one is
//!    refused with `SRT_REJ_UNSECURE`; without a passphrase, encrypting
//!    callers are refused with `SRT_REJ_UNSECURE`. Nothing is stored for a
//!    refused caller.
//! 3. Accepted callers get a conclusion response with HSRSP (latency = max
//!    of both sides, §4.4), KMRSP (the caller's key material echoed) when
//!    encrypted, and a fresh socket id; rejected ones get a handshake whose
//!    type is `1000 + reject code`.
//!
//! Caller side ([`Endpoint::connect`], §4.3.1, see [`super::caller`]):
//! induction, cookie, conclusion with HSREQ, stream id and KMREQ (when a
//! passphrase is given), repeated every 250 ms until answered; the outcome
//! is [`EndpointEvent::Connected`] or [`EndpointEvent::ConnectFailed`]
//! (timeout after [`EndpointConfig::connect_timeout`], or the listener's
//! reject code). One endpoint can listen and call at the same time.
//!
//! Encryption (§6, [`super::crypto`]) is per connection and transparent:
//! [`Endpoint::send`] takes plaintext and the endpoint encrypts each
//! (re)transmission with AES-CTR; incoming payloads are decrypted before
//! the connection machine sees them, so [`EndpointEvent::Data`] carries
//! plaintext. Packets that cannot be decrypted are dropped and counted
//! ([`EndpointStats::undecryptable`]) and then repaired by ARQ like a loss.
//! A peer's key refresh (KMREQ over UMSG_EXT with even/odd keys) is
//! installed and answered with KMRSP; this endpoint does not rotate its own
//! keys (libsrt's default refresh is every 2^24 packets).
//!
//! Later datagrams are routed by destination socket id (and must come from
//! the connection's peer address) to that connection's live-mode
//! [`Connection`] machine (ARQ, TSBPD, ACK/NAK, keep-alive, idle timeout);
//! payloads due for delivery surface as [`EndpointEvent::Data`], and
//! [`Endpoint::send`] queues payloads towards the peer.
//!
//! Invariants: at most [`EndpointConfig::max_connections`] connections and
//! as many pending requests; transmit and event queues hold at most
//! [`MAX_QUEUE`] entries (excess datagrams are dropped and counted).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use smallvec::smallvec;

use super::caller::{Caller, ConnectError, ConnectStartError, Phase, Step, CONNECT_RETRY};
use super::connection::{Closed, Connection, ConnectionConfig};
use super::crypto::{check_passphrase, CryptoContext, KeyGenerator, KeyLength};
use super::handshake::{Handshake, RejectReason, SrtHsExt};
use super::key_material::{KeyMaterial, KmResponse, KmState};
use super::packet::{Control, ControlPacket, KeyFlag, Packet, SocketId};
use super::send_buffer::SendError;
use super::seq::{SeqNo, Timestamp};
use super::stream_id::{StreamId, StreamIdError};
use crate::session::CloseReason;
use crate::time::Instant;

mod listener;

/// Bound of the transmit and event queues.
pub const MAX_QUEUE: usize = 1024;

/// Length of one SYN-cookie time bucket (libsrt uses minutes as well).
pub const COOKIE_BUCKET: Duration = Duration::from_secs(60);

/// How long a pending request waits for the application's decision.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(5);

/// Peer idle timeout: a connection with no datagram for this long is
/// closed (libsrt `SRTO_PEERIDLETIMEO` default, §4.8.1 keep-alive).
pub const PEER_IDLE_TIMEOUT: Duration = super::connection::IDLE_TIMEOUT;

/// SRT version this endpoint announces in HSRSP (1.5.0).
pub const SRT_VERSION: u32 = 0x0001_0500;

/// Default connect timeout of a caller (libsrt `SRTO_CONNTIMEO`: 3 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// UMSG_EXT subtype of a key refresh request (libsrt `SRT_CMD_KMREQ`).
const UMSG_KMREQ: u16 = 3;
/// UMSG_EXT subtype of a key refresh answer (libsrt `SRT_CMD_KMRSP`).
const UMSG_KMRSP: u16 = 4;

/// Endpoint settings. `cookie_secret` and `rng_seed` are inputs: the
/// machine reads no randomness of its own.
#[derive(Clone)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// Secret keying the SYN cookies, and the key generator for stream
    /// encrypting keys and salts (§6.2.1) of the connections this
    /// endpoint initiates: fill it from the OS RNG.
    pub cookie_secret: [u8; 32],
    /// Seed for socket ids.
    pub rng_seed: u64,
    /// Most concurrent connections (and, separately, pending requests).
    pub max_connections: usize,
    /// Our TSBPD latency in ms; the negotiated one is the max of both sides.
    pub latency_ms: u16,
    /// MTU announced in handshakes.
    pub mtu: u32,
    /// Flow window (libsrt `SRTO_FC`, packets): the most packets a peer may
    /// have in flight to us. Handshakes announce the smaller of it and
    /// `recv_buffer`, as libsrt does.
    pub flow_window: u32,
    /// Receive buffer size of each connection in packets (libsrt
    /// `SRTO_RCVBUF`, default 8192), sized separately from the flow
    /// window: it also holds packets acknowledged but waiting for their
    /// TSBPD delivery time. Its free space goes in every ACK (§3.2.4).
    pub recv_buffer: u32,
    /// Listener passphrase (`SRTO_PASSPHRASE`, 10–79 bytes, §6.1.4). With
    /// one, callers must encrypt with it (wrong key: `SRT_REJ_BADSECRET`;
    /// no encryption: `SRT_REJ_UNSECURE`); without one, encrypting callers
    /// are refused with `SRT_REJ_UNSECURE` (libsrt's enforced encryption).
    /// A caller's passphrase is given to [`Endpoint::connect`].
    pub passphrase: Option<String>,
    /// Key length of the keys this endpoint generates as a caller
    /// (`SRTO_PBKEYLEN`); a listener takes the caller's.
    pub key_length: KeyLength,
    /// How long [`Endpoint::connect`] tries before
    /// [`ConnectError::Timeout`].
    pub connect_timeout: Duration,
}
/// Builder-style setters: the struct is `#[non_exhaustive]`, so other
/// crates start from its default (or constructor) value and chain these.
impl EndpointConfig {
    /// Sets [`cookie_secret`](Self::cookie_secret).
    #[must_use]
    pub fn with_cookie_secret(mut self, cookie_secret: [u8; 32]) -> Self {
        self.cookie_secret = cookie_secret;
        self
    }

    /// Sets [`rng_seed`](Self::rng_seed).
    #[must_use]
    pub fn with_rng_seed(mut self, rng_seed: u64) -> Self {
        self.rng_seed = rng_seed;
        self
    }

    /// Sets [`max_connections`](Self::max_connections).
    #[must_use]
    pub fn with_max_connections(mut self, max_connections: usize) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// Sets [`latency_ms`](Self::latency_ms).
    #[must_use]
    pub fn with_latency_ms(mut self, latency_ms: u16) -> Self {
        self.latency_ms = latency_ms;
        self
    }

    /// Sets [`mtu`](Self::mtu).
    #[must_use]
    pub fn with_mtu(mut self, mtu: u32) -> Self {
        self.mtu = mtu;
        self
    }

    /// Sets [`flow_window`](Self::flow_window).
    #[must_use]
    pub fn with_flow_window(mut self, flow_window: u32) -> Self {
        self.flow_window = flow_window;
        self
    }

    /// Sets [`recv_buffer`](Self::recv_buffer).
    #[must_use]
    pub fn with_recv_buffer(mut self, recv_buffer: u32) -> Self {
        self.recv_buffer = recv_buffer;
        self
    }

    /// Sets [`passphrase`](Self::passphrase).
    #[must_use]
    pub fn with_passphrase(mut self, passphrase: Option<String>) -> Self {
        self.passphrase = passphrase;
        self
    }

    /// Sets [`key_length`](Self::key_length).
    #[must_use]
    pub fn with_key_length(mut self, key_length: KeyLength) -> Self {
        self.key_length = key_length;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    #[must_use]
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }
}

impl EndpointConfig {
    /// Checks the settings a peer could never match: a passphrase outside
    /// 10–79 bytes (libsrt refuses to set one).
    pub fn validate(&self) -> Result<(), super::crypto::CryptoError> {
        match &self.passphrase {
            Some(p) => check_passphrase(p),
            None => Ok(()),
        }
    }
}

impl EndpointConfig {
    /// The "Maximum Flow Window Size" our handshakes announce (§3.2.1):
    /// the flow window, capped by the receive buffer (libsrt).
    pub fn announced_flow_window(&self) -> u32 {
        self.flow_window.min(self.recv_buffer).max(1)
    }
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of logs.
        f.debug_struct("EndpointConfig")
            .field("rng_seed", &self.rng_seed)
            .field("max_connections", &self.max_connections)
            .field("latency_ms", &self.latency_ms)
            .field("mtu", &self.mtu)
            .field("flow_window", &self.flow_window)
            .field("recv_buffer", &self.recv_buffer)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "***"))
            .field("key_length", &self.key_length)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            cookie_secret: [0; 32],
            rng_seed: 0,
            max_connections: 1024,
            latency_ms: 120,
            mtu: 1500,
            flow_window: 8192,
            recv_buffer: super::connection::DEFAULT_RECV_BUFFER,
            passphrase: None,
            key_length: KeyLength::Aes128,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }
}

pub use crate::datagram::Transmit;

/// Identifies a pending connection request until it is accepted or rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestToken(u64);

/// A caller that completed the cookie exchange and asks to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRequest {
    /// Pass to [`Endpoint::accept`] or [`Endpoint::reject`].
    pub token: RequestToken,
    /// The caller's address.
    pub peer: SocketAddr,
    /// The caller's socket id.
    pub peer_socket: SocketId,
    /// The raw stream id (empty if none was sent).
    pub raw_stream_id: String,
    /// The parsed stream id; an error suggests
    /// [`StreamIdError::reject_reason`].
    pub stream_id: Result<StreamId, StreamIdError>,
    /// The caller's HSREQ.
    pub hs_req: SrtHsExt,
    /// `true` if the caller sent key material that unwrapped with our
    /// passphrase: the connection will be encrypted.
    pub encrypted: bool,
    /// The caller's key length when encrypted.
    pub key_length: Option<KeyLength>,
}

/// Something the application must know about.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EndpointEvent {
    /// A caller asks to connect; decide with accept/reject.
    Request(Box<ConnectionRequest>),
    /// A connection is established.
    Connected {
        /// Our socket id for it.
        id: SocketId,
        /// The peer's address.
        peer: SocketAddr,
        /// Negotiated TSBPD latency in ms.
        latency_ms: u16,
    },
    /// A payload received on a connection, delivered in order at its TSBPD
    /// time.
    Data {
        /// Our socket id.
        id: SocketId,
        /// Its sequence number.
        seq: super::seq::SeqNo,
        /// The payload (MPEG-TS packets in live mode).
        payload: Bytes,
    },
    /// A [`Endpoint::connect`] attempt failed (timeout, rejection, key
    /// material mismatch); the id is the one `connect` returned.
    ConnectFailed {
        /// Our socket id of the attempt.
        id: SocketId,
        /// Why; a rejection carries the listener's reject code.
        reason: ConnectError,
    },
    /// A connection ended (peer shutdown or idle timeout).
    Closed {
        /// Our socket id.
        id: SocketId,
        /// Why: [`CloseReason::PeerClosed`] (the peer sent SHUTDOWN,
        /// §3.2.7), [`CloseReason::IdleTimeout`] (no datagram for
        /// [`PEER_IDLE_TIMEOUT`]), [`CloseReason::LocalShutdown`]
        /// ([`Endpoint::close`]) or [`CloseReason::Unresponsive`] (none of
        /// our data acknowledged for
        /// [`ACK_STALL_CLOSE`](super::connection::ACK_STALL_CLOSE), see
        /// [`super::connection`], proof of life).
        reason: CloseReason,
    },
}

/// Why [`Endpoint::send`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointSendError {
    /// No such connection.
    #[error("no connection with this socket id")]
    UnknownConnection,
    /// The connection's send buffer is full.
    #[error(transparent)]
    Buffer(#[from] SendError),
}

/// Why [`Endpoint::accept`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The token is unknown or expired.
    #[error("no pending request for this token")]
    UnknownToken,
}

/// Counters of datagrams the endpoint refused or dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams that failed to decode.
    pub malformed: u64,
    /// Conclusions with a missing or wrong cookie.
    pub bad_cookie: u64,
    /// Datagrams for an unknown socket id or from the wrong address.
    pub unroutable: u64,
    /// Datagrams dropped because a queue was full.
    pub queue_full: u64,
    /// Inductions answered.
    pub inductions: u64,
    /// Rejections sent.
    pub rejections: u64,
    /// Data packets dropped because they could not be decrypted (no key
    /// for their KK flag, or clear packets on an encrypted connection, or
    /// encrypted ones on a clear connection).
    pub undecryptable: u64,
    /// Key refresh requests (KMREQ over UMSG_EXT) installed.
    pub key_refreshes: u64,
}

#[derive(Debug)]
struct Pending {
    token: RequestToken,
    peer: SocketAddr,
    hs: Handshake,
    deadline: Instant,
    crypto: Option<CryptoContext>,
}

#[derive(Debug)]
struct Conn {
    peer: SocketAddr,
    peer_socket: SocketId,
    start: Instant,
    machine: Connection,
    /// Our conclusion response, resent if the caller repeats its
    /// conclusion (empty for connections we initiated).
    conclusion_rsp: Bytes,
    /// Payload keys when the connection is encrypted (§6).
    crypto: Option<CryptoContext>,
}

/// The SRT endpoint machine (see the module docs).
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    rng: u64,
    next_token: u64,
    pending: Vec<Pending>,
    conns: HashMap<SocketId, Conn>,
    /// (peer address, peer socket id) → our socket id.
    by_peer: HashMap<(SocketAddr, SocketId), SocketId>,
    /// Connection attempts in progress, by our socket id.
    callers: HashMap<SocketId, Caller>,
    keygen: KeyGenerator,
    transmits: VecDeque<Transmit>,
    events: VecDeque<EndpointEvent>,
    stats: EndpointStats,
    /// A SYN cookie taken from a capture and accepted from its caller (see
    /// [`Endpoint::accept_captured_cookie`]); `None` outside replays.
    captured_cookie: Option<(SocketAddr, u32)>,
}

impl Endpoint {
    /// A listener endpoint with no connections.
    pub fn new(config: EndpointConfig) -> Self {
        Endpoint {
            rng: config.rng_seed,
            keygen: KeyGenerator::new(config.cookie_secret),
            config,
            next_token: 0,
            pending: Vec::new(),
            conns: HashMap::new(),
            by_peer: HashMap::new(),
            callers: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: EndpointStats::default(),
            captured_cookie: None,
        }
    }

    /// Capture replay only (`crate::replay`, feature `replay`): also accept
    /// `cookie` in conclusions from `peer`. The captured caller answers the
    /// cookie of the original server, whose secret is unknown; taking the
    /// cookie from the captured induction response lets the replay reach
    /// the same conclusion. Safe: this is crate-private and called only by
    /// the replay module, which drives an endpoint with captured datagrams
    /// and no socket; no network configuration (`EndpointConfig`, the
    /// server's listeners) can set it, so a live listener keeps the
    /// stateless HMAC check of §4.3.1.1.
    #[cfg(feature = "replay")]
    pub(crate) fn accept_captured_cookie(&mut self, peer: SocketAddr, cookie: u32) {
        self.captured_cookie = Some((peer, cookie));
    }

    /// Refusal and drop counters.
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Number of established connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Number of requests waiting for the application.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Feeds one received datagram from `src`.
    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, datagram: Bytes) {
        let packet = match Packet::decode(&datagram) {
            Ok(p) => p,
            Err(e) => {
                self.stats.malformed += 1;
                tracing::debug!(%src, error = %e, "srt: malformed datagram");
                return;
            }
        };
        let dest = packet.dest();
        if dest == SocketId(0) {
            if let Packet::Control(ControlPacket {
                body: Control::Handshake(hs),
                timestamp,
                ..
            }) = packet
            {
                self.handle_listener_handshake(now, src, timestamp, hs);
            } else {
                self.stats.unroutable += 1;
            }
            return;
        }
        if self.callers.contains_key(&dest) {
            if let Packet::Control(ControlPacket {
                body: Control::Handshake(hs),
                ..
            }) = packet
            {
                self.handle_caller_handshake(now, src, dest, hs);
            } else {
                self.stats.unroutable += 1;
            }
            return;
        }
        let Some(conn) = self.conns.get_mut(&dest) else {
            self.stats.unroutable += 1;
            return;
        };
        if conn.peer != src {
            self.stats.unroutable += 1;
            return;
        }
        let packet = match packet {
            Packet::Data(mut d) => {
                match (&conn.crypto, d.key) {
                    (None, KeyFlag::None) => {}
                    (Some(c), k) if k != KeyFlag::None => match c.decrypt(d.seq, k, &d.payload) {
                        Some(plain) => {
                            d.payload = plain;
                            d.key = KeyFlag::None;
                        }
                        None => {
                            self.stats.undecryptable += 1;
                            return;
                        }
                    },
                    _ => {
                        self.stats.undecryptable += 1;
                        return;
                    }
                }
                Packet::Data(d)
            }
            Packet::Control(ControlPacket {
                body: Control::UserDefined { subtype, body, .. },
                timestamp,
                ..
            }) if subtype == UMSG_KMREQ => {
                // Key refresh (§6.1.6): install the announced keys, echo
                // the key material (or a failure state) as KMRSP.
                let rsp = match (&mut conn.crypto, KeyMaterial::decode(&body)) {
                    (Some(c), Ok(km)) => match c.install(&km) {
                        Ok(()) => {
                            self.stats.key_refreshes += 1;
                            km.to_bytes()
                        }
                        Err(st) => KmResponse::Failure(st).to_bytes(),
                    },
                    (Some(_), Err(_)) => KmResponse::Failure(KmState::BadSecret).to_bytes(),
                    (None, _) => KmResponse::Failure(KmState::NoSecret).to_bytes(),
                };
                let pkt = Packet::Control(ControlPacket {
                    timestamp,
                    dest: conn.peer_socket,
                    body: Control::UserDefined {
                        subtype: UMSG_KMRSP,
                        info: 0,
                        body: rsp,
                    },
                });
                let peer = conn.peer;
                // Still counts as traffic from the peer.
                conn.machine.handle_packet(
                    now,
                    Packet::Control(ControlPacket {
                        timestamp,
                        dest,
                        body: Control::KeepAlive,
                    }),
                );
                self.push_transmit(peer, pkt.to_bytes());
                self.service(dest, now);
                return;
            }
            other => other,
        };
        conn.machine.handle_packet(now, packet);
        self.service(dest, now);
    }

    /// Drains one connection's deliveries and packets into the endpoint's
    /// queues, and removes it once closed.
    fn service(&mut self, id: SocketId, now: Instant) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        while self.events.len() < MAX_QUEUE {
            let Some(d) = conn.machine.poll_delivered(now) else {
                break;
            };
            self.events.push_back(EndpointEvent::Data {
                id,
                seq: d.seq,
                payload: d.payload,
            });
        }
        while self.transmits.len() < MAX_QUEUE {
            let Some(p) = conn.machine.poll_packet(now) else {
                break;
            };
            let contents = match p {
                // Encrypted: a fresh ciphertext per (re)transmission.
                Packet::Data(mut d) if conn.crypto.is_some() => {
                    if let Some(c) = &conn.crypto {
                        let (ct, kk) = c.encrypt(d.seq, &d.payload);
                        d.payload = ct;
                        d.key = kk;
                    }
                    smallvec![Bytes::copy_from_slice(&d.header_bytes()), d.payload]
                }
                // Zero copy: header and shared payload as two pieces.
                Packet::Data(d) => {
                    smallvec![Bytes::copy_from_slice(&d.header_bytes()), d.payload]
                }
                Packet::Control(c) => smallvec![c.to_bytes()],
            };
            self.transmits.push_back(Transmit::new(conn.peer, contents));
        }
        if let Some(why) = conn.machine.closed() {
            let reason = match why {
                Closed::ByPeer => CloseReason::PeerClosed,
                Closed::IdleTimeout => CloseReason::IdleTimeout,
                Closed::Locally => CloseReason::LocalShutdown,
                Closed::Unresponsive => CloseReason::Unresponsive,
            };
            // What the link cost, for the log: losses repaired
            // (retransmitted) and not repaired (dropped, too late).
            let (rx, tx) = (conn.machine.recv_stats(), conn.machine.send_stats());
            // A peer can cause this at flood rate (handshake, close, repeat):
            // rate-limited (docs/security.md item 7).
            static CLOSED: crate::log_limit::LogLimiter =
                crate::log_limit::LogLimiter::new(10, std::time::Duration::from_secs(10));
            if let Some(suppressed) = CLOSED.check(now) {
                tracing::info!(
                    socket = id.0,
                    peer = %conn.peer,
                    %reason,
                    suppressed,
                    rx_delivered = rx.delivered,
                    rx_retransmitted = rx.retransmitted,
                    rx_dropped = rx.dropped,
                    rx_too_late = rx.too_late,
                    tx_sent = tx.sent,
                    tx_retransmitted = tx.retransmitted,
                    tx_dropped = tx.dropped,
                    rtt_us = conn.machine.rtt().rtt_us(),
                    "srt: connection closed"
                );
            }
            self.remove_conn(id);
            self.push_event(EndpointEvent::Closed { id, reason });
        }
    }

    /// Queues `payload` (one live-mode message) on connection `id`.
    pub fn send(
        &mut self,
        now: Instant,
        id: SocketId,
        payload: Bytes,
    ) -> Result<(), EndpointSendError> {
        let conn = self
            .conns
            .get_mut(&id)
            .ok_or(EndpointSendError::UnknownConnection)?;
        conn.machine.send(now, payload)?;
        self.service(id, now);
        Ok(())
    }

    /// Starts connecting to the listener at `remote` as a caller (§4.3.1):
    /// sends the induction at once and returns our socket id for the
    /// attempt. The outcome arrives as [`EndpointEvent::Connected`] or
    /// [`EndpointEvent::ConnectFailed`] with this id; once connected, the
    /// id addresses the connection in [`Endpoint::send`] and
    /// [`Endpoint::close`]. `stream_id` goes in the SID extension;
    /// `passphrase` (10–79 bytes) turns encryption on with
    /// [`EndpointConfig::key_length`].
    pub fn connect(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        stream_id: Option<&str>,
        passphrase: Option<&str>,
    ) -> Result<SocketId, ConnectStartError> {
        if self.conns.len() + self.callers.len() >= self.config.max_connections {
            return Err(ConnectStartError::TooManyConnections);
        }
        let crypto = match passphrase {
            Some(p) => {
                check_passphrase(p)?;
                Some(CryptoContext::generate(
                    p,
                    self.config.key_length,
                    &mut self.keygen,
                )?)
            }
            None => None,
        };
        let id = self.new_socket_id();
        let isn = SeqNo::new(self.next_random() & 0x7FFF_FFFF);
        let caller = Caller {
            id,
            remote,
            stream_id: stream_id.map(str::to_owned),
            isn,
            start: now,
            deadline: now + self.config.connect_timeout,
            next_retry: now + CONNECT_RETRY,
            phase: Phase::Induction,
            crypto,
            latency_ms: self.config.latency_ms,
            mtu: self.config.mtu,
            flow_window: self.config.announced_flow_window(),
        };
        let hs = caller.request();
        self.callers.insert(id, caller);
        self.send_handshake(remote, SocketId(0), Timestamp(0), hs);
        Ok(id)
    }

    /// Number of [`Endpoint::connect`] attempts still in progress.
    pub fn connecting_count(&self) -> usize {
        self.callers.len()
    }

    fn handle_caller_handshake(
        &mut self,
        now: Instant,
        src: SocketAddr,
        id: SocketId,
        hs: Handshake,
    ) {
        let Some(caller) = self.callers.get_mut(&id) else {
            return;
        };
        if caller.remote != src {
            self.stats.unroutable += 1;
            return;
        }
        let ts = Timestamp(now.saturating_duration_since(caller.start).as_micros() as u32);
        match caller.on_handshake(&hs) {
            Step::Ignore => {}
            Step::Send(req) => {
                caller.next_retry = now + CONNECT_RETRY;
                let remote = caller.remote;
                self.send_handshake(remote, SocketId(0), ts, *req);
            }
            Step::Failed(reason) => {
                tracing::debug!(%src, ?reason, "srt: connect failed");
                if matches!(reason, ConnectError::KeyMaterial(_)) && hs.socket_id != SocketId(0) {
                    // The listener thinks it is connected: tell it we are not.
                    let bye = Packet::Control(ControlPacket {
                        timestamp: ts,
                        dest: hs.socket_id,
                        body: Control::Shutdown,
                    });
                    self.push_transmit(src, bye.to_bytes());
                }
                self.callers.remove(&id);
                self.push_event(EndpointEvent::ConnectFailed { id, reason });
            }
            Step::Connected {
                peer_socket,
                latency_ms,
            } => {
                let Some(c) = self.callers.remove(&id) else {
                    return;
                };
                // Timestamps continue the handshake's time base: libsrt
                // sets our start time from the conclusion's timestamp.
                let machine = Connection::new_at(
                    ConnectionConfig {
                        peer_socket,
                        send_isn: c.isn,
                        recv_isn: c.isn,
                        latency: Duration::from_millis(u64::from(latency_ms)),
                        flow_window: c.flow_window.min(hs.flow_window.max(1)),
                        recv_buffer: self.config.recv_buffer,
                        start: c.start,
                    },
                    now,
                );
                self.conns.insert(
                    id,
                    Conn {
                        peer: c.remote,
                        peer_socket,
                        start: c.start,
                        machine,
                        conclusion_rsp: Bytes::new(),
                        crypto: c.crypto,
                    },
                );
                self.by_peer.insert((c.remote, peer_socket), id);
                self.push_event(EndpointEvent::Connected {
                    id,
                    peer: c.remote,
                    latency_ms,
                });
            }
        }
    }

    /// Receive- and send-path counters of connection `id` (delivered,
    /// dropped, retransmitted, ...), and its RTT estimate in µs.
    pub fn connection_stats(
        &self,
        id: SocketId,
    ) -> Option<(
        super::recv_buffer::RecvStats,
        super::send_buffer::SendStats,
        u32,
    )> {
        self.conns.get(&id).map(|c| {
            (
                c.machine.recv_stats(),
                c.machine.send_stats(),
                c.machine.rtt().rtt_us(),
            )
        })
    }

    /// Whether connection `id` encrypts its payloads.
    pub fn is_encrypted(&self, id: SocketId) -> bool {
        self.conns.get(&id).is_some_and(|c| c.crypto.is_some())
    }

    /// `true` if connection `id` exists and everything sent on it was
    /// acknowledged (or given up by too-late drop): a close now loses
    /// nothing. `false` for an unknown id.
    pub fn is_send_drained(&self, id: SocketId) -> bool {
        self.conns
            .get(&id)
            .is_some_and(|c| c.machine.is_send_drained())
    }

    /// Graceful close of connection `id`: it keeps sending and
    /// retransmitting until the peer acknowledged everything queued, then
    /// sends SHUTDOWN; at `now + max_wait` it closes regardless (libsrt
    /// `SRTO_LINGER`). [`EndpointEvent::Closed`] follows either way.
    pub fn close_after_drain(&mut self, now: Instant, id: SocketId, max_wait: Duration) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.machine.close_after_drain(now, max_wait);
            self.service(id, now);
        }
    }

    /// Closes connection `id`, sending SHUTDOWN to the peer. Unsent and
    /// unacknowledged data is dropped; see [`Endpoint::close_after_drain`].
    pub fn close(&mut self, now: Instant, id: SocketId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.machine.close(now);
            self.service(id, now);
        }
    }

    /// The peer socket id of one of our connections.
    pub fn peer_socket(&self, id: SocketId) -> Option<SocketId> {
        self.conns.get(&id).map(|c| c.peer_socket)
    }

    /// Microseconds since the connection was accepted (the timestamp base
    /// of its packets, §4.5).
    pub fn connection_time(&self, id: SocketId, now: Instant) -> Option<Timestamp> {
        self.conns
            .get(&id)
            .map(|c| Timestamp(now.saturating_duration_since(c.start).as_micros() as u32))
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pending = self.pending.iter().map(|p| p.deadline);
        let idle = self.conns.values().filter_map(|c| c.machine.poll_timeout());
        let callers = self.callers.values().map(|c| c.next_retry.min(c.deadline));
        pending.chain(idle).chain(callers).min()
    }

    /// Expires undecided requests (rejected with `SRT_REJ_TIMEOUT`) and runs
    /// every connection's timers (ACK, NAK, keep-alive, TSBPD delivery,
    /// idle timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut i = 0;
        while let Some(p) = self.pending.get(i) {
            if p.deadline <= now {
                let p = self.pending.swap_remove(i);
                self.send_rejection(p.peer, &p.hs, Timestamp(0), RejectReason::Timeout);
            } else {
                i += 1;
            }
        }
        let attempts: Vec<SocketId> = self.callers.keys().copied().collect();
        for id in attempts {
            let Some(c) = self.callers.get_mut(&id) else {
                continue;
            };
            if c.deadline <= now {
                self.callers.remove(&id);
                self.push_event(EndpointEvent::ConnectFailed {
                    id,
                    reason: ConnectError::Timeout,
                });
            } else if c.next_retry <= now {
                c.next_retry = now + CONNECT_RETRY;
                let (remote, hs, ts) = (
                    c.remote,
                    c.request(),
                    Timestamp(now.saturating_duration_since(c.start).as_micros() as u32),
                );
                self.send_handshake(remote, SocketId(0), ts, hs);
            }
        }
        // O(connections) per call; a timer wheel can replace this later.
        let ids: Vec<SocketId> = self.conns.keys().copied().collect();
        for id in ids {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.machine.handle_timeout(now);
            }
            self.service(id, now);
        }
    }

    fn remove_conn(&mut self, id: SocketId) {
        if let Some(c) = self.conns.remove(&id) {
            self.by_peer.remove(&(c.peer, c.peer_socket));
        }
    }

    fn next_random(&mut self) -> u32 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        z as u32
    }

    fn new_socket_id(&mut self) -> SocketId {
        loop {
            // Ids in 1..2^31 like libsrt's positive int32 ids.
            let id = SocketId(self.next_random() & 0x7FFF_FFFF);
            if id.0 != 0 && !self.conns.contains_key(&id) && !self.callers.contains_key(&id) {
                return id;
            }
        }
    }

    fn send_handshake(
        &mut self,
        dest: SocketAddr,
        dest_socket: SocketId,
        ts: Timestamp,
        hs: Handshake,
    ) {
        let bytes = handshake_packet(dest_socket, ts, hs);
        self.push_transmit(dest, bytes);
    }

    fn push_transmit(&mut self, destination: SocketAddr, bytes: Bytes) {
        if self.transmits.len() >= MAX_QUEUE {
            self.stats.queue_full += 1;
            return;
        }
        self.transmits
            .push_back(Transmit::new(destination, smallvec![bytes]));
    }

    fn push_event(&mut self, ev: EndpointEvent) -> bool {
        if self.events.len() >= MAX_QUEUE {
            self.stats.queue_full += 1;
            return false;
        }
        self.events.push_back(ev);
        true
    }
}

fn handshake_packet(dest: SocketId, timestamp: Timestamp, hs: Handshake) -> Bytes {
    Packet::Control(ControlPacket {
        timestamp,
        dest,
        body: Control::Handshake(hs),
    })
    .to_bytes()
}
