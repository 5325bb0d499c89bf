//! The caller side of the caller–listener handshake
//! (draft-sharabayko-srt-01 §4.3.1), driven by the [`Endpoint`].
//!
//! 1. **Induction** (§4.3.1.1): version 4, Extension Field `UDT_DGRAM`,
//!    cookie 0. The listener answers with version 5, the SRT magic
//!    `0x4A17` and a SYN cookie.
//! 2. **Conclusion** (§4.3.1.2): version 5 with the cookie, HSREQ (TSBPD
//!    both ways, latency), the stream id (libsrt word order) and, when a
//!    passphrase is set, KMREQ with the wrapped key (§6.2.1). The
//!    listener answers with a conclusion carrying its socket id, HSRSP and
//!    KMRSP — or with a rejection (`1000 + code`).
//!
//! The current request is repeated every [`CONNECT_RETRY`] until an answer
//! arrives; after [`EndpointConfig::connect_timeout`] the attempt fails
//! with [`ConnectError::Timeout`].
//!
//! [`Endpoint`]: super::endpoint::Endpoint
//! [`EndpointConfig::connect_timeout`]: super::endpoint::EndpointConfig::connect_timeout

use std::net::SocketAddr;
use std::time::Duration;

use super::crypto::CryptoContext;
use super::handshake::{
    ext_flags, Cipher, Handshake, HandshakeType, HsExtension, RejectReason, SrtFlags, SrtHsExt,
    EXT_FIELD_DGRAM, SRT_MAGIC,
};
use super::key_material::{KmResponse, KmState};
use super::packet::SocketId;
use super::seq::SeqNo;
use crate::time::Instant;

/// Interval between repeated handshake requests (libsrt: 250 ms).
pub const CONNECT_RETRY: Duration = Duration::from_millis(250);

/// Why a [`connect`](super::endpoint::Endpoint::connect) attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No answer within the connect timeout (`SRT_ENOSERVER` in libsrt).
    #[error("no answer from the listener within the connect timeout")]
    Timeout,
    /// The listener rejected the caller with this reason.
    #[error("rejected by the listener: {0:?}")]
    Rejected(RejectReason),
    /// The listener accepted but its key material answer is unusable
    /// (passphrase mismatch or the listener ignored encryption).
    #[error("key material exchange failed: {0:?}")]
    KeyMaterial(KmState),
    /// The listener's answer is not an SRT v5 handshake.
    #[error("the listener's answer is not an HSv5 handshake")]
    NotSrt,
}

/// Why [`connect`](super::endpoint::Endpoint::connect) refused to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectStartError {
    /// Passphrase length outside 10..=79 bytes.
    #[error(transparent)]
    Crypto(#[from] super::crypto::CryptoError),
    /// As many connections and attempts as `max_connections` already.
    #[error("too many connections")]
    TooManyConnections,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Induction,
    Conclusion { cookie: u32 },
}

/// One connection attempt in progress.
#[derive(Debug)]
pub(crate) struct Caller {
    pub id: SocketId,
    pub remote: SocketAddr,
    pub stream_id: Option<String>,
    pub isn: SeqNo,
    pub start: Instant,
    pub deadline: Instant,
    pub next_retry: Instant,
    pub phase: Phase,
    pub crypto: Option<CryptoContext>,
    pub latency_ms: u16,
    pub mtu: u32,
    pub flow_window: u32,
}

/// What an answer from the listener leads to.
#[derive(Debug)]
pub(crate) enum Step {
    /// Not for us (wrong type or phase): ignore.
    Ignore,
    /// Induction answered: send this conclusion.
    Send(Box<Handshake>),
    /// Connected with the listener's socket id and the negotiated latency.
    Connected {
        peer_socket: SocketId,
        latency_ms: u16,
    },
    /// The attempt failed.
    Failed(ConnectError),
}

/// Flags a caller announces in HSREQ (libsrt live mode).
pub(crate) const CALLER_FLAGS: u32 = SrtFlags::TSBPDSND
    | SrtFlags::TSBPDRCV
    | SrtFlags::CRYPT
    | SrtFlags::TLPKTDROP
    | SrtFlags::PERIODICNAK
    | SrtFlags::REXMITFLG;

impl Caller {
    /// The request to (re)send in the current phase.
    pub fn request(&self) -> Handshake {
        match self.phase {
            Phase::Induction => self.induction(),
            Phase::Conclusion { cookie } => self.conclusion(cookie),
        }
    }

    fn base(&self, hs_type: HandshakeType) -> Handshake {
        let mut hs = Handshake {
            version: 4,
            encryption: Cipher::None,
            extension_field: EXT_FIELD_DGRAM,
            initial_seq: self.isn,
            mtu: self.mtu,
            flow_window: self.flow_window,
            hs_type,
            socket_id: self.id,
            syn_cookie: 0,
            peer_ip: [0; 16],
            extensions: Vec::new(),
        };
        hs.set_peer_addr(self.remote.ip());
        hs
    }

    fn induction(&self) -> Handshake {
        self.base(HandshakeType::Induction)
    }

    fn conclusion(&self, cookie: u32) -> Handshake {
        let mut hs = self.base(HandshakeType::Conclusion);
        hs.version = 5;
        hs.syn_cookie = cookie;
        let mut ext = ext_flags::HSREQ;
        hs.extensions.push(HsExtension::HsReq(SrtHsExt {
            version: super::endpoint::SRT_VERSION,
            flags: SrtFlags(CALLER_FLAGS),
            recv_latency_ms: self.latency_ms,
            send_latency_ms: self.latency_ms,
        }));
        if let Some(c) = &self.crypto {
            ext |= ext_flags::KMREQ;
            hs.encryption = c.key_len().cipher();
            hs.extensions
                .push(HsExtension::KmReq(c.key_material().to_bytes()));
        }
        if let Some(sid) = self.stream_id.as_ref().filter(|s| !s.is_empty()) {
            ext |= ext_flags::CONFIG;
            hs.extensions.push(HsExtension::StreamId(sid.clone()));
        }
        hs.extension_field = ext;
        hs
    }

    /// Handles a handshake addressed to this attempt.
    pub fn on_handshake(&mut self, hs: &Handshake) -> Step {
        if let HandshakeType::Rejection(r) = hs.hs_type {
            return Step::Failed(ConnectError::Rejected(r));
        }
        match (self.phase, hs.hs_type) {
            (Phase::Induction, HandshakeType::Induction) => {
                if hs.version != 5 || hs.extension_field != SRT_MAGIC {
                    return Step::Failed(ConnectError::NotSrt);
                }
                self.phase = Phase::Conclusion {
                    cookie: hs.syn_cookie,
                };
                Step::Send(Box::new(self.request()))
            }
            (Phase::Conclusion { .. }, HandshakeType::Conclusion) => {
                if hs.version != 5 || hs.socket_id == SocketId(0) {
                    return Step::Failed(ConnectError::NotSrt);
                }
                let Some(rsp) = hs.hs_rsp() else {
                    return Step::Failed(ConnectError::NotSrt);
                };
                if self.crypto.is_some() {
                    let km = hs.extensions.iter().find_map(|e| match e {
                        HsExtension::KmRsp(b) => Some(b),
                        _ => None,
                    });
                    match km.map(|b| KmResponse::decode(b)) {
                        Some(Ok(KmResponse::Material(_))) => {}
                        Some(Ok(KmResponse::Failure(s))) => {
                            return Step::Failed(ConnectError::KeyMaterial(s))
                        }
                        Some(Err(_)) => {
                            return Step::Failed(ConnectError::KeyMaterial(KmState::BadSecret))
                        }
                        None => return Step::Failed(ConnectError::KeyMaterial(KmState::Unsecured)),
                    }
                }
                let latency_ms = self
                    .latency_ms
                    .max(rsp.recv_latency_ms)
                    .max(rsp.send_latency_ms);
                Step::Connected {
                    peer_socket: hs.socket_id,
                    latency_ms,
                }
            }
            _ => Step::Ignore,
        }
    }
}
