//! SRT caller (core/src/srt/caller.rs through `Endpoint::connect`) facing a
//! hostile listener: a real arcly listener answers, and the input decides,
//! datagram by datagram, what reaches the caller instead: the answer as
//! is, with a byte flipped, truncated, replaced by input bytes, dropped or
//! duplicated, plus raw datagrams and time jumps. With and without a
//! passphrase on both sides (mismatches included).
//!
//! Input: byte 0 = mode (bit 0: caller passphrase, bit 1: listener
//! passphrase, bit 2: wrong listener passphrase), byte 1 = split seed; the
//! rest is cut into ops (see `arcly_fuzz::split`), the first byte of each
//! picks the mutation and time step.
//!
//! Invariants: no panic; the caller only ever sends to the listener's
//! address, datagrams ≤ 1500 bytes; at most one attempt and one connection;
//! `Connected` and `ConnectFailed` for the attempt are exclusive and each
//! raised at most once; once the attempt failed nothing is connected.
#![no_main]

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use arcly::srt::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use arcly::Instant;
use arcly_fuzz::split;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const PASS: &str = "0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let [mode, seed, rest @ ..] = data else {
        return;
    };
    let caller_addr = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 4000));
    let listener_addr = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 2), 8890));
    let listener_pass = match (mode & 2 != 0, mode & 4 != 0) {
        (true, false) => Some(PASS.to_owned()),
        (true, true) => Some("another-secret".to_owned()),
        _ => None,
    };
    let mut listener = Endpoint::new(
        EndpointConfig::default()
            .with_cookie_secret([7; 32])
            .with_rng_seed(7)
            .with_passphrase(listener_pass)
            .with_max_connections(2),
    );
    let mut caller = Endpoint::new(
        EndpointConfig::default()
            .with_cookie_secret([3; 32])
            .with_rng_seed(3)
            .with_max_connections(2),
    );
    let mut now = Instant::from_millis(5000);
    let pass = (mode & 1 != 0).then_some(PASS);
    let Ok(id) = caller.connect(now, listener_addr, Some("read:live/cam"), pass) else {
        return;
    };
    let mut to_caller: VecDeque<Bytes> = VecDeque::new();
    let (mut connected, mut failed, mut closed) = (0u32, 0u32, false);
    let mut sent_data = 0u32;
    for op in split(rest, *seed) {
        let [sel, body @ ..] = op else {
            continue;
        };
        now += Duration::from_millis(u64::from(sel >> 4) * 9);
        // Caller → listener (unmodified: the listener is the honest part).
        while let Some(t) = caller.poll_transmit() {
            assert_eq!(t.destination, listener_addr, "caller sent to a stranger");
            let dg: Vec<u8> = t.contents.iter().flat_map(|b| b.iter().copied()).collect();
            assert!(dg.len() <= 1500, "datagram of {} bytes", dg.len());
            listener.handle_datagram(now, caller_addr, Bytes::from(dg));
        }
        while let Some(ev) = listener.poll_event() {
            if let EndpointEvent::Request(req) = ev {
                let _ = listener.accept(now, req.token);
            }
        }
        while let Some(t) = listener.poll_transmit() {
            if to_caller.len() < 64 {
                let dg: Vec<u8> = t.contents.iter().flat_map(|b| b.iter().copied()).collect();
                to_caller.push_back(Bytes::from(dg));
            }
        }
        // Listener → caller, through the hostile mutation.
        match sel & 7 {
            0 | 1 => {
                if let Some(d) = to_caller.pop_front() {
                    caller.handle_datagram(now, listener_addr, d);
                }
            }
            2 => {
                if let Some(d) = to_caller.pop_front() {
                    let mut v = d.to_vec();
                    if !v.is_empty() {
                        let at = usize::from(body.first().copied().unwrap_or(0)) * 4 % v.len();
                        let x = body.get(1).copied().unwrap_or(0xFF);
                        if let Some(b) = v.get_mut(at) {
                            *b ^= x.max(1);
                        }
                    }
                    caller.handle_datagram(now, listener_addr, Bytes::from(v));
                }
            }
            3 => {
                if let Some(d) = to_caller.pop_front() {
                    let keep = usize::from(body.first().copied().unwrap_or(0)) * 2;
                    caller.handle_datagram(now, listener_addr, d.slice(..keep.min(d.len())));
                }
            }
            4 => {
                // A forged datagram spliced onto the real answer's header.
                let mut v = to_caller
                    .pop_front()
                    .map(|d| d.to_vec())
                    .unwrap_or_default();
                v.truncate(16);
                v.extend_from_slice(body);
                caller.handle_datagram(now, listener_addr, Bytes::from(v));
            }
            5 => {
                to_caller.pop_front();
            }
            6 => {
                if let Some(d) = to_caller.front().cloned() {
                    caller.handle_datagram(now, listener_addr, d.clone());
                    caller.handle_datagram(now, listener_addr, d);
                }
            }
            _ => {
                caller.handle_datagram(now, listener_addr, Bytes::copy_from_slice(body));
            }
        }
        for ep in [&mut caller, &mut listener] {
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
        }
        if connected > 0 && !closed && sent_data < 200 {
            sent_data += 1;
            let _ = caller.send(now, id, Bytes::copy_from_slice(body));
        }
        while let Some(ev) = caller.poll_event() {
            match ev {
                EndpointEvent::Connected { id: c, .. } => {
                    assert_eq!(c, id);
                    connected += 1;
                }
                EndpointEvent::ConnectFailed { id: c, .. } => {
                    assert_eq!(c, id);
                    failed += 1;
                }
                EndpointEvent::Closed { id: c, .. } => {
                    assert_eq!(c, id);
                    assert!(connected == 1 && !closed, "closed without a connection");
                    closed = true;
                }
                EndpointEvent::Data { id: c, .. } => assert_eq!(c, id),
                // The endpoint also listens: a forged induction/conclusion
                // can make a request; refuse it.
                EndpointEvent::Request(req) => {
                    caller.reject(req.token, arcly::srt::handshake::RejectReason::Peer)
                }
                // `EndpointEvent` is non-exhaustive.
                _ => {}
            }
        }
        assert!(
            connected + failed <= 1,
            "connected {connected}, failed {failed}"
        );
        assert!(caller.connecting_count() + caller.connection_count() <= 1);
        if failed == 1 || closed {
            assert_eq!(caller.connection_count(), 0);
            assert_eq!(caller.connecting_count(), 0);
        }
    }
});
