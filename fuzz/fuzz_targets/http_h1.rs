//! The sans-IO HTTP/1.1 server machine (`arcly::http::h1`) in front of the
//! standard router (HLS, `live/cam` published, no media yet) plus a POST
//! route with a 64-byte body limit: request heads, Content-Length bodies,
//! pipelining, refusals.
//!
//! Input: byte 0 is the split seed (`arcly_fuzz::split`), the rest the
//! bytes a client sends. Each complete request goes through the router; a
//! parked one is answered at its deadline (the router's resume).
//!
//! Invariants: no panic; every request handed out has a body within its
//! route's limit; at most one request is out at a time (a second
//! `poll_request` before the answer yields nothing); once the machine says
//! it is closed, no request comes out of it any more.
#![no_main]

use std::sync::Arc;

use arcly::http::h1::{H1Config, H1Connection};
use arcly::http::{Admit, HlsServiceConfig, HttpRouter, Route, RouterConfig, Routed};
use arcly::{Engine, Instant, StreamKey};
use arcly_fuzz::split;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

#[derive(Debug)]
struct Echo;

impl arcly::http::HttpService for Echo {
    fn handle(
        &self,
        req: &http::Request<Bytes>,
        _route: &arcly::http::RouteMatch,
        _now: Instant,
    ) -> Routed {
        assert!(req.body().len() <= 64, "body past the route's limit");
        Routed::Response(http::Response::new(req.body().clone()))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fuzz_target!(|data: &[u8]| {
    let [seed, rest @ ..] = data else {
        return;
    };
    let engine = Engine::with_defaults();
    let Ok(key) = StreamKey::new("live", "cam") else {
        return;
    };
    let _publisher = engine.publish(key);
    let mut router = HttpRouter::empty(RouterConfig::default());
    if let Ok(route) = Route::new("/echo/{name}") {
        router.mount(route.methods([http::Method::POST]).max_body(64), Arc::new(Echo));
    }
    router.mount_hls(engine.clone(), HlsServiceConfig::default());
    let mut now = Instant::from_millis(1_000);
    let mut conn = H1Connection::new(H1Config::default(), now);
    for piece in split(rest, *seed) {
        if conn.is_closed() {
            break;
        }
        conn.handle_input(now, piece);
        while let Some(req) = conn.poll_request(|h| router.admit(h)) {
            assert!(
                conn.poll_request(|_| Admit::Read { limit: 0 }).is_none(),
                "two requests out at once"
            );
            let mut routed = router.handle(&req, now);
            let mut rounds = 0;
            let resp = loop {
                match routed {
                    Routed::Response(resp) => break resp,
                    Routed::Wait(w) => {
                        rounds += 1;
                        assert!(rounds < 8, "a parked request never answered");
                        now = w.deadline.max(now);
                        routed = router.resume(&req, w, now);
                    }
                }
            };
            conn.send_response(now, resp);
        }
        while conn.poll_transmit().is_some() {}
    }
    conn.handle_input(now, &[]);
    let _ = conn.poll_request(|h| router.admit(h));
    if conn.is_closed() {
        assert!(conn.poll_request(|_| Admit::Read { limit: 0 }).is_none());
    }
});
