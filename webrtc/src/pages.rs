//! The browser pages arcly serves for WebRTC (small, dependency-free HTML
//! and JavaScript, compiled into the binary):
//!
//! | path | page |
//! |---|---|
//! | `GET /<app>/<stream>/whep-player` | plays the stream over WHEP (draft-ietf-wish-whep) with a latency readout (jitter buffer, round trip, first frame, and glass-to-glass when the picture carries the publish page's clock) |
//! | `GET /<app>/<stream>/publish` | camera and microphone over WHIP (RFC 9725), H.264 preferred; `?clock` sends a canvas showing the time instead of the camera |
//!
//! Both talk to the WHIP/WHEP endpoints next to them (`…/whep`, `…/whip`,
//! [`crate::signalling`]) and expose their state to scripts as
//! `window.arclyWhep` / `window.arclyPublish` (what the browser tests read).

use std::any::Any;

use arcly::http::{HttpRouter, HttpService, Route, RouteMatch, Routed};
use arcly::Instant;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

/// The WHEP player page (`/<app>/<stream>/whep-player`).
pub const WHEP_PLAYER_HTML: &str = include_str!("assets/whep-player.html");

/// The WHIP publish page (`/<app>/<stream>/publish`).
pub const PUBLISH_HTML: &str = include_str!("assets/publish.html");

/// Serves one static page.
#[derive(Debug)]
struct Page {
    body: &'static str,
}

impl HttpService for Page {
    fn handle(&self, req: &Request<Bytes>, _route: &RouteMatch, _now: Instant) -> Routed {
        let body = if req.method() == Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from_static(self.body.as_bytes())
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = StatusCode::OK;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(self.body.len() as u64),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        Routed::Response(resp)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Mounts the two pages in `router` for GET and HEAD, before the routes
/// already there (HLS's catch-all would otherwise answer 404).
pub fn mount_pages(router: &mut HttpRouter) {
    for (path, body) in [
        ("/{app}/{stream}/whep-player", WHEP_PLAYER_HTML),
        ("/{app}/{stream}/publish", PUBLISH_HTML),
    ] {
        if let Ok(route) = Route::new(path) {
            router.mount_first(
                route.methods([Method::GET, Method::HEAD]),
                std::sync::Arc::new(Page { body }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn get(router: &HttpRouter, method: Method, uri: &str) -> Response<Bytes> {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Bytes::new())
            .unwrap();
        match router.handle(&req, Instant::ZERO) {
            Routed::Response(r) => r,
            Routed::Wait(_) => panic!("parked"),
        }
    }

    #[test]
    fn pages_are_served_before_hls_and_other_paths_still_reach_hls() {
        let engine = arcly::Engine::new();
        let mut router = HttpRouter::new(engine, arcly::http::HttpConfig::default());
        mount_pages(&mut router);
        let r = get(&router, Method::GET, "/live/cam/whep-player");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let body = std::str::from_utf8(r.body()).unwrap();
        assert!(body.contains("RTCPeerConnection") && body.contains("/whep"));
        let r = get(&router, Method::GET, "/live/cam/publish");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(std::str::from_utf8(r.body())
            .unwrap()
            .contains("getUserMedia"));
        let r = get(&router, Method::HEAD, "/live/cam/publish");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.body().is_empty());
        assert_eq!(
            r.headers()[header::CONTENT_LENGTH],
            PUBLISH_HTML.len().to_string().as_str()
        );
        // HLS still answers everything else (a stream that is not live: 404).
        let r = get(&router, Method::GET, "/live/cam/index.m3u8");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        // No script source, style or font from anywhere else.
        for page in [WHEP_PLAYER_HTML, PUBLISH_HTML] {
            assert!(!page.contains("src=\"http") && !page.contains("<link"));
        }
    }
}
