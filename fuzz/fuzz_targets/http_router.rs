//! The HTTP router of HLS / LL-HLS (core/src/http): request-target parsing
//! (percent-decoding, traversal checks), `Resource` names, the `_HLS_msn` /
//! `_HLS_part` / `_HLS_skip` query and the `Range` header, on an engine where
//! `live/cam` is published (no media yet, so playlist requests park).
//!
//! Input: byte 0 picks the method, the bytes up to the first `\n` are the
//! request target (anything `http::Uri` accepts), the rest is a `Range`
//! header value.
//!
//! Invariants: no panic; no 5xx other than 503 (a parked request's
//! timeout or a limit); a parked request's deadline is bounded (at most
//! 3 × the configured target duration plus the ready wait ahead), and
//! resuming it at that deadline answers instead of parking again forever.
#![no_main]

use std::time::Duration;

use arcly::http::{HttpConfig, HttpRouter, Routed};
use arcly::{Engine, Instant, StreamKey};
use libfuzzer_sys::fuzz_target;

const METHODS: [&str; 5] = ["GET", "HEAD", "OPTIONS", "POST", "DELETE"];

fn check(r: &Routed, now: Instant) {
    match r {
        Routed::Response(resp) => {
            let s = resp.status().as_u16();
            assert!(s < 500 || s == 503, "unexpected status {s}");
        }
        Routed::Wait(w) => {
            assert!(
                w.deadline <= now + Duration::from_secs(60),
                "parked too long: {:?} at {:?}",
                w.deadline,
                now
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [m, rest @ ..] = data else {
        return;
    };
    let method = METHODS[usize::from(*m) % METHODS.len()];
    let (target, range) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (rest.get(..i).unwrap_or_default(), rest.get(i + 1..)),
        None => (rest, None),
    };
    let Ok(uri) = http::Uri::try_from(target) else {
        return;
    };
    let mut builder = http::Request::builder().method(method).uri(uri);
    if let Some(r) = range.and_then(|r| http::HeaderValue::from_bytes(r).ok()) {
        builder = builder.header(http::header::RANGE, r);
    }
    let Ok(req) = builder.body(bytes::Bytes::new()) else {
        return;
    };
    let engine = Engine::with_defaults();
    let Ok(key) = StreamKey::new("live", "cam") else {
        return;
    };
    let _publisher = engine.publish(key);
    let router = HttpRouter::new(engine.clone(), HttpConfig::default());
    let now = Instant::from_millis(1_000);
    let mut routed = router.handle(&req, now);
    check(&routed, now);
    // A parked request answers at its deadline at the latest.
    for _ in 0..4 {
        match routed {
            Routed::Response(_) => return,
            Routed::Wait(w) => {
                let at = w.deadline;
                routed = router.resume(&req, w, at);
                check(&routed, at);
            }
        }
    }
    assert!(
        matches!(routed, Routed::Response(_)),
        "a parked request never answered"
    );
});
