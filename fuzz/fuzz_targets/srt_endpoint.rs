//! SRT listener endpoint (core/src/srt/endpoint.rs) fed a sequence of
//! arbitrary datagrams from a few source addresses, with time advancing.
//!
//! Input: byte 0 = split seed; the rest is cut into datagrams (see
//! `arcly_fuzz::split`); the first byte of each picks the source address and
//! how far time moves. Every connection request is accepted.
//!
//! Invariants: no panic; connections and pending requests never exceed the
//! configured maximum; every transmit goes to an address that sent us
//! something and fits in one datagram.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use arcly::srt::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use arcly::Instant;
use arcly_fuzz::split;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4;

fuzz_target!(|data: &[u8]| {
    let [seed, rest @ ..] = data else {
        return;
    };
    let mut ep = Endpoint::new(EndpointConfig::default().with_max_connections(MAX));
    let mut now = Instant::from_millis(1000);
    let mut seen: Vec<SocketAddr> = Vec::new();
    for piece in split(rest, *seed) {
        let [sel, datagram @ ..] = piece else {
            continue;
        };
        let src = SocketAddr::from((
            Ipv4Addr::new(127, 0, 0, 1 + (sel & 3)),
            5000 + u16::from(sel >> 6),
        ));
        if !seen.contains(&src) {
            seen.push(src);
        }
        now += Duration::from_millis(u64::from(sel >> 2 & 15) * 7);
        if let Some(t) = ep.poll_timeout() {
            if t <= now {
                ep.handle_timeout(now);
            }
        }
        ep.handle_datagram(now, src, Bytes::copy_from_slice(datagram));
        while let Some(ev) = ep.poll_event() {
            if let EndpointEvent::Request(req) = ev {
                let _ = ep.accept(now, req.token);
            }
        }
        while let Some(t) = ep.poll_transmit() {
            assert!(
                seen.contains(&t.destination),
                "transmit to a stranger {}",
                t.destination
            );
            let len: usize = t.contents.iter().map(|b| b.len()).sum();
            assert!(len <= 1500, "datagram of {len} bytes");
        }
        assert!(ep.connection_count() <= MAX);
        assert!(ep.pending_count() <= MAX);
    }
});
