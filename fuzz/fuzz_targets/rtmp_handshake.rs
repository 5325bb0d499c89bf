//! RTMP handshake machines (core/src/rtmp/handshake.rs) fed arbitrary bytes
//! in arbitrary splits, plus real client/server pairs whose bytes arrive in
//! arbitrary splits.
//!
//! Input: byte 0 = mode, byte 1 = split seed, rest = bytes.
//! Invariants: no panic; a call consumes at most what it was given; a server
//! consumes at most C0+C1+C2 (3073 bytes) and a client at most S0+S1+S2;
//! S0+S1+S2 is 3073 bytes and sent once, after C0+C1; once done nothing more
//! is consumed; once failed every call fails; a real pair always completes
//! (digest mode: both digests verified) and leaves trailing bytes unconsumed.
#![no_main]

use arcly::rtmp::handshake::{ClientHandshake, HandshakeMode, ServerHandshake, HANDSHAKE_SIZE};
use arcly_fuzz::split;
use libfuzzer_sys::fuzz_target;

const C0C1: usize = 1 + HANDSHAKE_SIZE;
const ALL: usize = 1 + 2 * HANDSHAKE_SIZE;

/// Feeds `pieces` to a machine through `feed`; checks the consumption rules.
fn feed_all<'a>(
    pieces: impl IntoIterator<Item = &'a [u8]>,
    mut feed: impl FnMut(&[u8]) -> Result<usize, arcly::rtmp::handshake::HandshakeError>,
    is_done: impl Fn() -> bool,
) -> usize {
    let mut total = 0usize;
    let mut failed = false;
    for p in pieces {
        let was_done = is_done();
        match feed(p) {
            Ok(n) => {
                assert!(!failed, "a failed handshake accepted input again");
                assert!(n <= p.len(), "consumed {n} of {} bytes", p.len());
                if was_done {
                    assert_eq!(n, 0, "a finished handshake consumed bytes");
                }
                if n < p.len() {
                    assert!(is_done(), "left bytes unconsumed before it was done");
                }
                total += n;
            }
            Err(_) => {
                failed = true;
                assert!(!is_done());
            }
        }
    }
    assert!(
        total <= ALL,
        "consumed {total} bytes, more than a handshake"
    );
    total
}

fuzz_target!(|data: &[u8]| {
    let [mode, seed, rest @ ..] = data else {
        return;
    };
    match mode % 4 {
        0 => {
            // Server fed arbitrary bytes.
            let hs = std::cell::RefCell::new(ServerHandshake::new(u64::from(*seed)));
            let mut sent = 0usize;
            let mut consumed = 0usize;
            for p in split(rest, *seed) {
                consumed += feed_all(
                    [p],
                    |d| hs.borrow_mut().handle_input(d),
                    || hs.borrow().is_done(),
                );
                while let Some(b) = hs.borrow_mut().poll_transmit() {
                    assert_eq!(b.len(), ALL, "S0+S1+S2 length");
                    assert!(consumed >= C0C1, "S0+S1+S2 before C0+C1 arrived");
                    sent += 1;
                }
            }
            assert!(sent <= 1, "S0+S1+S2 sent {sent} times");
            assert!(consumed <= ALL);
            if hs.borrow().is_done() {
                assert_eq!(consumed, ALL);
                assert_eq!(sent, 1);
            }
        }
        1 | 2 => {
            // Client (simple or digest) fed arbitrary bytes as S0+S1+S2.
            let m = if *mode % 4 == 1 {
                HandshakeMode::Simple
            } else {
                HandshakeMode::Digest
            };
            let hs = std::cell::RefCell::new(ClientHandshake::new(u64::from(*seed), m));
            let first = hs.borrow_mut().poll_transmit();
            assert_eq!(first.map(|b| b.len()), Some(C0C1));
            let mut consumed = 0usize;
            for p in split(rest, *seed) {
                consumed += feed_all(
                    [p],
                    |d| hs.borrow_mut().handle_input(d),
                    || hs.borrow().is_done(),
                );
                if let Some(c2) = hs.borrow_mut().poll_transmit() {
                    assert_eq!(c2.len(), HANDSHAKE_SIZE, "C2 length");
                    assert!(consumed >= C0C1);
                }
            }
            if hs.borrow().is_done() {
                assert_eq!(consumed, ALL);
            }
        }
        _ => {
            // A real pair; the rest of the input is trailing chunk-stream
            // bytes sent right behind C2, and the bytes go in splits.
            let m = if seed & 0x80 == 0 {
                HandshakeMode::Simple
            } else {
                HandshakeMode::Digest
            };
            let mut client = ClientHandshake::new(u64::from(*seed) << 8, m);
            let mut server = ServerHandshake::new(u64::from(*seed));
            let Some(c0c1) = client.poll_transmit() else {
                panic!("client sent no C0+C1");
            };
            let mut used = 0;
            for p in split(&c0c1, *seed) {
                used += server
                    .handle_input(p)
                    .unwrap_or_else(|e| panic!("server: {e}"));
            }
            assert_eq!(used, C0C1);
            let Some(s) = server.poll_transmit() else {
                panic!("server sent no S0+S1+S2");
            };
            let mut used = 0;
            for p in split(&s, seed.wrapping_add(1)) {
                used += client
                    .handle_input(p)
                    .unwrap_or_else(|e| panic!("client: {e}"));
            }
            assert_eq!(used, ALL);
            assert!(client.is_done());
            if m == HandshakeMode::Digest {
                assert!(
                    client.server_used_digest(),
                    "server answered a digest C1 without digest"
                );
                assert!(client.s2_verified(), "S2 did not sign our C1 digest");
                assert_eq!(server.mode(), Some(HandshakeMode::Digest));
            } else {
                assert_eq!(server.mode(), Some(HandshakeMode::Simple));
            }
            let Some(c2) = client.poll_transmit() else {
                panic!("client sent no C2");
            };
            let mut wire = c2.to_vec();
            wire.extend_from_slice(rest);
            let mut used = 0;
            let mut trailing = 0;
            for p in split(&wire, seed.wrapping_add(2)) {
                let n = server
                    .handle_input(p)
                    .unwrap_or_else(|e| panic!("server: {e}"));
                used += n;
                trailing += p.len() - n;
            }
            assert!(server.is_done());
            assert_eq!(used, HANDSHAKE_SIZE);
            assert_eq!(trailing, rest.len());
        }
    }
});
