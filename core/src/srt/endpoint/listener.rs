//! The listener side of the [`Endpoint`]: stateless SYN cookies, the
//! caller–listener handshake as the listener (draft-sharabayko-srt-01
//! §4.3.1.1 induction, §4.3.1.2 conclusion), the encryption check (§6.3.1),
//! and the application's [`Endpoint::accept`] / [`Endpoint::reject`] of a
//! pending request. The caller side is in [`super::super::caller`].

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::super::connection::{Connection, ConnectionConfig};
use super::super::crypto::CryptoContext;
use super::super::handshake::{
    ext_flags, Cipher, Handshake, HandshakeType, HsExtension, RejectReason, SrtFlags, SrtHsExt,
    SRT_MAGIC,
};
use super::super::key_material::KmState;
use super::super::packet::SocketId;
use super::super::seq::Timestamp;
use super::super::stream_id::StreamId;
use super::{
    handshake_packet, AcceptError, Conn, ConnectionRequest, Endpoint, EndpointEvent, Pending,
    RequestToken, COOKIE_BUCKET, PENDING_TIMEOUT, SRT_VERSION,
};
use crate::time::Instant;

impl Endpoint {
    /// The SYN cookie for `peer` in the time bucket of `now` (§4.3.1.1).
    pub fn cookie(&self, peer: SocketAddr, now: Instant) -> u32 {
        self.cookie_for_bucket(peer, now.as_micros() / COOKIE_BUCKET.as_micros() as u64)
    }

    fn cookie_for_bucket(&self, peer: SocketAddr, bucket: u64) -> u32 {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.config.cookie_secret) else {
            return 0;
        };
        match peer.ip() {
            std::net::IpAddr::V4(ip) => mac.update(&ip.octets()),
            std::net::IpAddr::V6(ip) => mac.update(&ip.octets()),
        }
        mac.update(&peer.port().to_be_bytes());
        mac.update(&bucket.to_be_bytes());
        let out = mac.finalize().into_bytes();
        let mut w = [0u8; 4];
        for (d, s) in w.iter_mut().zip(out.iter()) {
            *d = *s;
        }
        u32::from_be_bytes(w)
    }

    fn cookie_valid(&self, peer: SocketAddr, cookie: u32, now: Instant) -> bool {
        let bucket = now.as_micros() / COOKIE_BUCKET.as_micros() as u64;
        self.captured_cookie == Some((peer, cookie))
            || self.cookie_for_bucket(peer, bucket) == cookie
            || (bucket > 0 && self.cookie_for_bucket(peer, bucket - 1) == cookie)
    }

    pub(super) fn handle_listener_handshake(
        &mut self,
        now: Instant,
        src: SocketAddr,
        ts: Timestamp,
        hs: Handshake,
    ) {
        match hs.hs_type {
            HandshakeType::Induction => {
                // §4.3.1.1: answer with version 5, the SRT magic and a cookie;
                // with a passphrase, advertise our key length (libsrt callers
                // that did not set `pbkeylen` adopt it).
                let encryption = if self.config.passphrase.is_some() {
                    self.config.key_length.cipher()
                } else {
                    Cipher::None
                };
                let mut rsp = Handshake {
                    version: 5,
                    encryption,
                    extension_field: SRT_MAGIC,
                    initial_seq: hs.initial_seq,
                    mtu: self.config.mtu,
                    flow_window: self.config.announced_flow_window(),
                    hs_type: HandshakeType::Induction,
                    socket_id: hs.socket_id,
                    syn_cookie: self.cookie(src, now),
                    peer_ip: [0; 16],
                    extensions: Vec::new(),
                };
                rsp.set_peer_addr(src.ip());
                self.stats.inductions += 1;
                self.send_handshake(src, hs.socket_id, ts, rsp);
            }
            HandshakeType::Conclusion => self.handle_conclusion(now, src, ts, hs),
            _ => self.stats.unroutable += 1,
        }
    }

    fn handle_conclusion(&mut self, now: Instant, src: SocketAddr, ts: Timestamp, hs: Handshake) {
        if !self.cookie_valid(src, hs.syn_cookie, now) {
            self.stats.bad_cookie += 1;
            tracing::debug!(%src, "srt: conclusion with a bad cookie");
            return;
        }
        // A repeated conclusion for an accepted connection: resend our answer.
        if let Some(id) = self.by_peer.get(&(src, hs.socket_id)) {
            if let Some(conn) = self.conns.get(id) {
                // The same answer, stamped with the connection's current
                // time: libsrt takes our start time from this timestamp.
                let mut rsp = conn.conclusion_rsp.to_vec();
                let ts = now.saturating_duration_since(conn.start).as_micros() as u32;
                if let Some(field) = rsp.get_mut(8..12) {
                    field.copy_from_slice(&ts.to_be_bytes());
                }
                self.push_transmit(src, Bytes::from(rsp));
            }
            return;
        }
        if self
            .pending
            .iter()
            .any(|p| p.peer == src && p.hs.socket_id == hs.socket_id)
        {
            return; // still waiting for the application
        }
        let reject = if hs.version < 5 {
            Some(RejectReason::Version)
        } else if hs.hs_req().is_none() {
            Some(RejectReason::Rogue)
        } else if self.conns.len() + self.callers.len() >= self.config.max_connections
            || self.pending.len() >= self.config.max_connections
        {
            Some(RejectReason::Backlog)
        } else {
            None
        };
        if let Some(reason) = reject {
            self.send_rejection(src, &hs, ts, reason);
            return;
        }
        // Encryption (§6.3.1, libsrt enforced encryption): both sides have
        // the same passphrase, or neither has one.
        let crypto = match (&self.config.passphrase, hs.key_material()) {
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                self.send_rejection(src, &hs, ts, RejectReason::Unsecure);
                return;
            }
            (Some(pass), Some(km)) => {
                let ctx = km
                    .map_err(|_| KmState::BadSecret)
                    .and_then(|km| CryptoContext::from_key_material(pass, &km));
                match ctx {
                    Ok(c) => Some(c),
                    Err(KmState::BadCryptoMode) => {
                        self.send_rejection(src, &hs, ts, RejectReason::Crypto);
                        return;
                    }
                    Err(_) => {
                        self.send_rejection(src, &hs, ts, RejectReason::BadSecret);
                        return;
                    }
                }
            }
        };
        let token = RequestToken(self.next_token);
        self.next_token += 1;
        let raw = hs.stream_id().unwrap_or_default().to_owned();
        let req = ConnectionRequest {
            token,
            peer: src,
            peer_socket: hs.socket_id,
            stream_id: StreamId::parse(&raw),
            raw_stream_id: raw,
            hs_req: hs.hs_req().copied().unwrap_or(SrtHsExt {
                version: 0,
                flags: SrtFlags(0),
                recv_latency_ms: 0,
                send_latency_ms: 0,
            }),
            encrypted: crypto.is_some(),
            key_length: crypto.as_ref().map(CryptoContext::key_len),
        };
        if !self.push_event(EndpointEvent::Request(Box::new(req))) {
            return;
        }
        self.pending.push(Pending {
            token,
            peer: src,
            hs,
            deadline: now + PENDING_TIMEOUT,
            crypto,
        });
    }

    /// Accepts a pending request: allocates a socket id, answers the
    /// caller's conclusion with HSRSP and raises [`EndpointEvent::Connected`].
    pub fn accept(&mut self, now: Instant, token: RequestToken) -> Result<SocketId, AcceptError> {
        let idx = self
            .pending
            .iter()
            .position(|p| p.token == token)
            .ok_or(AcceptError::UnknownToken)?;
        let p = self.pending.swap_remove(idx);
        let id = self.new_socket_id();
        let req = p.hs.hs_req().copied();
        let peer_lat = req.map_or(0, |r| r.recv_latency_ms.max(r.send_latency_ms));
        let latency_ms = self.config.latency_ms.max(peer_lat);
        let mut flags = SrtFlags::TSBPDSND
            | SrtFlags::TSBPDRCV
            | SrtFlags::CRYPT
            | SrtFlags::TLPKTDROP
            | SrtFlags::PERIODICNAK
            | SrtFlags::REXMITFLG;
        if let Some(r) = req {
            flags &= r.flags.0 | SrtFlags::CRYPT | SrtFlags::REXMITFLG;
        }
        let mut extension_field = ext_flags::HSREQ;
        if p.crypto.is_some() {
            extension_field |= ext_flags::KMREQ;
        }
        let mut rsp = Handshake {
            version: 5,
            encryption: Cipher::None,
            extension_field,
            initial_seq: p.hs.initial_seq,
            mtu: self.config.mtu.min(p.hs.mtu),
            flow_window: self.config.announced_flow_window(),
            hs_type: HandshakeType::Conclusion,
            socket_id: id,
            syn_cookie: p.hs.syn_cookie,
            peer_ip: [0; 16],
            extensions: vec![HsExtension::HsRsp(SrtHsExt {
                version: SRT_VERSION,
                flags: SrtFlags(flags),
                recv_latency_ms: latency_ms,
                send_latency_ms: latency_ms,
            })],
        };
        if let Some(c) = &p.crypto {
            // KMRSP echoes the caller's key material on success (§6.3.1).
            rsp.extensions
                .push(HsExtension::KmRsp(c.key_material().to_bytes()));
        }
        rsp.set_peer_addr(p.peer.ip());
        let machine = Connection::new(ConnectionConfig {
            peer_socket: p.hs.socket_id,
            // HSv5: both directions start at the caller's ISN (§4.3.1.2).
            send_isn: p.hs.initial_seq,
            recv_isn: p.hs.initial_seq,
            latency: Duration::from_millis(u64::from(latency_ms)),
            // At most the caller's announced window in flight; bounded by
            // ours too, so a hostile announcement costs no memory.
            flow_window: self
                .config
                .announced_flow_window()
                .min(p.hs.flow_window.max(1)),
            recv_buffer: self.config.recv_buffer,
            start: now,
        });
        let bytes = handshake_packet(p.hs.socket_id, Timestamp(0), rsp);
        self.conns.insert(
            id,
            Conn {
                peer: p.peer,
                peer_socket: p.hs.socket_id,
                start: now,
                machine,
                conclusion_rsp: bytes.clone(),
                crypto: p.crypto,
            },
        );
        self.by_peer.insert((p.peer, p.hs.socket_id), id);
        self.push_transmit(p.peer, bytes);
        self.push_event(EndpointEvent::Connected {
            id,
            peer: p.peer,
            latency_ms,
        });
        Ok(id)
    }

    /// Rejects a pending request with `reason` (sent as `1000 + code`).
    /// Unknown tokens are ignored.
    pub fn reject(&mut self, token: RequestToken, reason: RejectReason) {
        if let Some(idx) = self.pending.iter().position(|p| p.token == token) {
            let p = self.pending.swap_remove(idx);
            self.send_rejection(p.peer, &p.hs, Timestamp(0), reason);
        }
    }

    pub(super) fn send_rejection(
        &mut self,
        dest: SocketAddr,
        req: &Handshake,
        ts: Timestamp,
        reason: RejectReason,
    ) {
        self.stats.rejections += 1;
        tracing::debug!(%dest, ?reason, "srt: rejecting caller");
        let mut rsp = Handshake {
            version: 5,
            encryption: Cipher::None,
            extension_field: 0,
            initial_seq: req.initial_seq,
            mtu: self.config.mtu,
            flow_window: self.config.announced_flow_window(),
            hs_type: HandshakeType::Rejection(reason),
            socket_id: SocketId(0),
            syn_cookie: req.syn_cookie,
            peer_ip: [0; 16],
            extensions: Vec::new(),
        };
        rsp.set_peer_addr(dest.ip());
        self.send_handshake(dest, req.socket_id, ts, rsp);
    }
}
