//! Hostile datagrams at the shared WebRTC socket: the router and the STUN
//! USERNAME parser never panic and never route junk to a session that did
//! not see that address in a STUN request with its ufrag.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::SocketAddr;

use arcly_webrtc::{stun_local_ufrag, Router};
use proptest::prelude::*;

/// A STUN binding request with `username` in a USERNAME attribute.
fn stun(username: &[u8]) -> Vec<u8> {
    let mut attr = vec![0x00, 0x06];
    attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attr.extend_from_slice(username);
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    m.extend_from_slice(&[7; 12]);
    m.extend_from_slice(&attr);
    m
}

proptest! {
    #[test]
    fn junk_never_panics_nor_routes(data in proptest::collection::vec(any::<u8>(), 0..600),
                                    port in 1u16..u16::MAX) {
        let _ = stun_local_ufrag(&data);
        let mut router = Router::new(2);
        let a = router.insert("aaaa").unwrap();
        let known: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        router.route(known, &stun(b"aaaa:peer"));
        let stranger = SocketAddr::from(([10, 0, 0, 3], port));
        // Junk from a stranger goes nowhere unless it is a STUN request
        // naming the session's ufrag.
        let routed = router.route(stranger, &data);
        prop_assert!(routed.is_none() || stun_local_ufrag(&data) == Some("aaaa"));
        // The known address still reaches its session.
        prop_assert_eq!(router.route(known, &[0x80, 0x60]), Some(a));
    }

    #[test]
    fn truncated_stun_never_panics(cut in 0usize..40, name in "[a-z]{1,20}:[a-z]{1,20}") {
        let mut m = stun(name.as_bytes());
        m.truncate(cut.min(m.len()));
        let _ = stun_local_ufrag(&m);
    }
}
