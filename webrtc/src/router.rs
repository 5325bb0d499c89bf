//! Which session a datagram on the shared WebRTC socket belongs to.

use std::collections::HashMap;
use std::net::SocketAddr;

/// Most remote addresses remembered per session (ICE may try several
/// candidate pairs; the nominated one is among the first).
pub const MAX_ADDRS_PER_SESSION: usize = 8;

/// STUN magic cookie (RFC 8489 §5).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
/// STUN USERNAME attribute type (RFC 8489 §14.3).
const ATTR_USERNAME: u16 = 0x0006;
/// Longest USERNAME value (RFC 8489 §14.3: < 513 bytes).
const MAX_USERNAME_LEN: usize = 513;

/// A session handle given out by [`Router::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub u64);

/// Why [`Router::insert`] refused a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// The router holds its maximum number of sessions.
    #[error("too many WebRTC sessions ({0})")]
    Full(usize),
    /// Another session already has this local ufrag.
    #[error("duplicate local ICE ufrag")]
    DuplicateUfrag,
}

/// The local ufrag of a STUN message: the part of its USERNAME before the
/// colon (RFC 8445 §7.2.2: `<receiver ufrag>:<sender ufrag>`). `None` when
/// `datagram` is not a STUN message (RFC 8489 §5: first two bits zero and the
/// magic cookie) or has no well-formed USERNAME. Never panics.
pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    let header = datagram.get(..20)?;
    if header.first()? & 0xC0 != 0 || header.get(4..8)? != MAGIC_COOKIE {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*header.get(2)?, *header.get(3)?]));
    let mut attrs = datagram.get(20..20 + len)?;
    while attrs.len() >= 4 {
        let kind = u16::from_be_bytes([*attrs.first()?, *attrs.get(1)?]);
        let alen = usize::from(u16::from_be_bytes([*attrs.get(2)?, *attrs.get(3)?]));
        let value = attrs.get(4..4 + alen)?;
        if kind == ATTR_USERNAME {
            if alen > MAX_USERNAME_LEN {
                return None;
            }
            let username = std::str::from_utf8(value).ok()?;
            let (local, _remote) = username.split_once(':')?;
            return Some(local);
        }
        let padded = (alen + 3) & !3;
        attrs = attrs.get(4 + padded..)?;
    }
    None
}

#[derive(Debug)]
struct Entry {
    ufrag: String,
    addrs: Vec<SocketAddr>,
}

/// Routes datagrams of one UDP socket to WebRTC sessions without a linear
/// scan: STUN binding requests by the local ufrag of their USERNAME (which
/// also teaches the router the sender's address), every other datagram
/// (DTLS, SRTP, SRTCP, STUN without USERNAME) by remote address.
///
/// Invariants: at most `max_sessions` sessions and
/// [`MAX_ADDRS_PER_SESSION`] addresses per session; every address maps to
/// exactly one live session (a session that claims an address takes it
/// over); removing a session removes its ufrag and addresses.
#[derive(Debug)]
pub struct Router {
    max_sessions: usize,
    next_id: u64,
    sessions: HashMap<SessionId, Entry>,
    by_ufrag: HashMap<String, SessionId>,
    by_addr: HashMap<SocketAddr, SessionId>,
}

impl Router {
    /// An empty router for at most `max_sessions` sessions.
    pub fn new(max_sessions: usize) -> Router {
        Router {
            max_sessions,
            next_id: 0,
            sessions: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
        }
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether there is no session.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Registers a session by its local ICE ufrag.
    pub fn insert(&mut self, local_ufrag: &str) -> Result<SessionId, RouterError> {
        if self.sessions.len() >= self.max_sessions {
            return Err(RouterError::Full(self.max_sessions));
        }
        if self.by_ufrag.contains_key(local_ufrag) {
            return Err(RouterError::DuplicateUfrag);
        }
        let id = SessionId(self.next_id);
        self.next_id += 1;
        self.by_ufrag.insert(local_ufrag.to_owned(), id);
        self.sessions.insert(
            id,
            Entry {
                ufrag: local_ufrag.to_owned(),
                addrs: Vec::new(),
            },
        );
        Ok(id)
    }

    /// Forgets a session, its ufrag and its addresses.
    pub fn remove(&mut self, id: SessionId) {
        if let Some(entry) = self.sessions.remove(&id) {
            self.by_ufrag.remove(&entry.ufrag);
            for addr in entry.addrs {
                if self.by_addr.get(&addr) == Some(&id) {
                    self.by_addr.remove(&addr);
                }
            }
        }
    }

    /// The session `datagram` from `source` belongs to, or `None` (junk, or
    /// a session that is gone: drop it).
    pub fn route(&mut self, source: SocketAddr, datagram: &[u8]) -> Option<SessionId> {
        if let Some(ufrag) = stun_local_ufrag(datagram) {
            let id = *self.by_ufrag.get(ufrag)?;
            self.learn(id, source);
            return Some(id);
        }
        self.by_addr.get(&source).copied()
    }

    fn learn(&mut self, id: SessionId, source: SocketAddr) {
        match self.by_addr.get(&source) {
            Some(&owner) if owner == id => return,
            Some(&owner) => {
                if let Some(entry) = self.sessions.get_mut(&owner) {
                    entry.addrs.retain(|a| *a != source);
                }
            }
            None => {}
        }
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        if entry.addrs.len() >= MAX_ADDRS_PER_SESSION {
            // Forget the oldest address (it lost to the newer pairs).
            let old = entry.addrs.remove(0);
            if self.by_addr.get(&old) == Some(&id) {
                self.by_addr.remove(&old);
            }
        }
        entry.addrs.push(source);
        self.by_addr.insert(source, id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn stun(username: &[u8]) -> Vec<u8> {
        let mut attr = Vec::new();
        attr.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username);
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attr);
        m
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn stun_username_parsed() {
        assert_eq!(stun_local_ufrag(&stun(b"abcd:wxyz")), Some("abcd"));
        assert_eq!(stun_local_ufrag(&stun(b"nocolon")), None);
        assert_eq!(stun_local_ufrag(b"\x80\x01junk"), None);
        let mut truncated = stun(b"abcd:wxyz");
        truncated.truncate(26);
        assert_eq!(stun_local_ufrag(&truncated), None);
    }

    #[test]
    fn routes_by_ufrag_then_address() {
        let mut r = Router::new(2);
        let a = r.insert("aaaa").unwrap();
        let b = r.insert("bbbb").unwrap();
        assert_eq!(r.insert("cccc"), Err(RouterError::Full(2)));
        // DTLS before any STUN from that address: unknown.
        assert_eq!(r.route(addr(1), &[22, 254, 253]), None);
        assert_eq!(r.route(addr(1), &stun(b"aaaa:x")), Some(a));
        assert_eq!(r.route(addr(2), &stun(b"bbbb:y")), Some(b));
        assert_eq!(r.route(addr(1), &[22, 254, 253]), Some(a));
        assert_eq!(r.route(addr(2), &[0x80, 0x60]), Some(b));
        assert_eq!(r.route(addr(3), &stun(b"zzzz:y")), None);
        r.remove(a);
        assert_eq!(r.route(addr(1), &[22, 254, 253]), None);
        assert_eq!(r.route(addr(1), &stun(b"aaaa:x")), None);
        assert_eq!(r.insert("dddd").map(|_| ()), Ok(()));
    }

    #[test]
    fn addresses_bounded_per_session() {
        let mut r = Router::new(1);
        let a = r.insert("aaaa").unwrap();
        for p in 0..100 {
            assert_eq!(r.route(addr(p), &stun(b"aaaa:x")), Some(a));
        }
        assert_eq!(r.by_addr.len(), MAX_ADDRS_PER_SESSION);
        assert_eq!(r.route(addr(99), &[0x80]), Some(a));
        assert_eq!(r.route(addr(0), &[0x80]), None);
    }
}
