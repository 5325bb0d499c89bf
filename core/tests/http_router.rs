//! The HTTP router (`arcly::http`) driven sans-IO: a real [`Engine`], a
//! [`Publisher`] pushing synthetic H.264 + AAC frames, the HLS pump called
//! by hand with a test clock. Every status code of docs/hls.md, traversal
//! attempts, ranges, HEAD, CORS, blocking reload (wait → playlist once the
//! part exists; 503 after three target durations), idle shutdown, limits.
#![cfg(feature = "http")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use arcly::container::hls::HlsConfig;
use arcly::http::{
    HlsServiceConfig, HlsStream, HttpConfig, HttpRouter, Routed, Wait, HLS_JS, HLS_JS_PATH,
};
use arcly::job::JobState;
use arcly::{Engine, Instant, StreamKey};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};

mod common;
use common::feed::{preload_hint, Feed};

fn router_with(engine: &Engine, tweak: impl FnOnce(&mut HttpConfig)) -> HttpRouter {
    let mut cfg = HttpConfig::default().with_hls(
        HlsServiceConfig::default().with_muxer(
            HlsConfig::default()
                .with_segment_duration(Duration::from_secs(1))
                .with_part_duration(Duration::from_millis(200)),
        ),
    );
    tweak(&mut cfg);
    HttpRouter::new(engine.clone(), cfg)
}

fn router(engine: &Engine) -> HttpRouter {
    router_with(engine, |_| {})
}

fn req(method: Method, uri: &str) -> Request<Bytes> {
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Bytes::new())
        .unwrap()
}

fn get(uri: &str) -> Request<Bytes> {
    req(Method::GET, uri)
}

fn respond(r: &HttpRouter, request: &Request<Bytes>, now: Instant) -> Response<Bytes> {
    match r.handle(request, now) {
        Routed::Response(resp) => resp,
        Routed::Wait(w) => panic!("{} parked until {:?}", request.uri(), w.deadline),
    }
}

fn park(r: &HttpRouter, request: &Request<Bytes>, now: Instant) -> Wait {
    match r.handle(request, now) {
        Routed::Wait(w) => w,
        Routed::Response(resp) => panic!(
            "{} answered {} instead of parking: {:?}",
            request.uri(),
            resp.status(),
            resp.body()
        ),
    }
}

/// Runs every pump task until it waits (what the adapter's tasks do).
fn pump_all(r: &HttpRouter, now: Instant) {
    while r.jobs().poll().is_some() {}
    for key in r.hls().unwrap().streams() {
        if let Some(s) = r.hls().unwrap().get(&key) {
            while let JobState::Busy = s.pump(now) {}
        }
    }
}

fn hdr(resp: &Response<Bytes>, name: header::HeaderName) -> &str {
    resp.headers()
        .get(&name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("no {name} header"))
}

fn text(resp: &Response<Bytes>) -> String {
    String::from_utf8(resp.body().to_vec()).unwrap()
}

const T0: Instant = Instant::from_millis(1_000);

/// A published stream (media 0–3 s) whose muxing started at 2 s (the GOP
/// cache) and has one complete segment plus parts of the next (media up
/// to 3.6 s): the first request of a fresh muxer waits for a segment.
fn live(name: &str) -> (Engine, Feed, HttpRouter) {
    let engine = Engine::with_defaults();
    let mut feed = Feed::start(&engine, name);
    feed.until(3_000);
    let r = router(&engine);
    let first = get(&format!("/live/{name}/index.m3u8"));
    let wait = park(&r, &first, T0);
    feed.until(3_600);
    pump_all(&r, T0);
    assert_ne!(wait.signal.epoch(), wait.epoch);
    match r.resume(&first, wait, T0) {
        Routed::Response(resp) => assert_eq!(resp.status(), StatusCode::OK),
        Routed::Wait(_) => panic!("no segment after 1.6 s of media"),
    }
    (engine, feed, r)
}

#[test]
fn static_routes_methods_and_cors() {
    let engine = Engine::with_defaults();
    let r = router(&engine);

    let js = respond(&r, &get(HLS_JS_PATH), T0);
    assert_eq!(js.status(), StatusCode::OK);
    assert_eq!(
        hdr(&js, header::CONTENT_TYPE),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(js.body().len(), HLS_JS.len());
    assert_eq!(hdr(&js, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");

    let head = respond(&r, &req(Method::HEAD, HLS_JS_PATH), T0);
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.body().is_empty(), "HEAD has no body");
    assert_eq!(
        hdr(&head, header::CONTENT_LENGTH),
        HLS_JS.len().to_string(),
        "HEAD carries the GET length"
    );

    // The page needs no live stream: it is static and retries.
    let page = respond(&r, &get("/live/cam/"), T0);
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(hdr(&page, header::CONTENT_TYPE), "text/html; charset=utf-8");
    let html = text(&page);
    for needle in [
        "<video id=\"video\" muted autoplay playsinline controls>",
        "lowLatencyMode: true",
        "index.m3u8",
        HLS_JS_PATH,
        "application/vnd.apple.mpegurl",
        "window.arclyPlayer",
    ] {
        assert!(html.contains(needle), "player page lacks {needle}");
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no CDN"
    );

    let redirect = respond(&r, &get("/live/cam"), T0);
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(hdr(&redirect, header::LOCATION), "/live/cam/");

    for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let resp = respond(&r, &req(m.clone(), "/live/cam/index.m3u8"), T0);
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{m}");
        assert_eq!(hdr(&resp, header::ALLOW), "GET, HEAD, OPTIONS");
        assert_eq!(hdr(&resp, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    }

    let pre = Request::builder()
        .method(Method::OPTIONS)
        .uri("/live/cam/index.m3u8")
        .header(header::ORIGIN, "http://example.test")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "range")
        .body(Bytes::new())
        .unwrap();
    let resp = respond(&r, &pre, T0);
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(hdr(&resp, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    assert!(hdr(&resp, header::ACCESS_CONTROL_ALLOW_METHODS).contains("GET"));
    assert_eq!(hdr(&resp, header::ACCESS_CONTROL_ALLOW_HEADERS), "range");

    let long = format!("/live/{}/index.m3u8", "a".repeat(3000));
    assert_eq!(
        respond(&r, &get(&long), T0).status(),
        StatusCode::URI_TOO_LONG
    );
    let long_query = format!("/live/cam/stream.m3u8?x={}", "1".repeat(3000));
    assert_eq!(
        respond(&r, &get(&long_query), T0).status(),
        StatusCode::URI_TOO_LONG
    );
}

#[test]
fn traversal_and_unknown_paths() {
    let (_engine, _feed, r) = live("cam");
    for bad in [
        "/live/../cam/index.m3u8",
        "/live/cam/../../etc/passwd",
        "/live/%2e%2e/cam/index.m3u8",
        "/live/cam/%2E%2E/index.m3u8",
        "/live//cam/index.m3u8",
        "//live/cam/index.m3u8",
        "/live/cam//index.m3u8",
        "/live/cam/./index.m3u8",
        "/live/cam/ts%2Findex.m3u8",
        "/live/cam/..%5cindex.m3u8",
        "/live/cam%00/index.m3u8",
        "/live/cam/%zz",
    ] {
        let resp = respond(&r, &get(bad), T0);
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(hdr(&resp, header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    }
    for missing in [
        "/",
        "/live",
        "/live/nope/index.m3u8",
        "/live/nope/ts/index.m3u8",
        "/live/nope/seg0.m4s",
        "/live/cam/index.html",
        "/live/cam/seg01.m4s",
        "/live/cam/ts/seg0.m4s",
        "/live/cam/seg999.m4s",
        "/live/cam/part999.0.m4s",
        "/live/cam/ts/seg999.ts",
        "/_arcly/",
        "/_arcly/other.js",
    ] {
        let resp = respond(&r, &get(missing), T0);
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{missing}");
    }
    // Percent-encoded plain characters are fine.
    let resp = respond(&r, &get("/live/c%61m/index.m3u8"), T0);
    assert_eq!(resp.status(), StatusCode::OK);
}

#[test]
fn playlists_segments_types_and_cache_headers() {
    let (_engine, mut feed, r) = live("cam");
    let mv = respond(&r, &get("/live/cam/index.m3u8"), T0);
    assert_eq!(mv.status(), StatusCode::OK);
    assert_eq!(
        hdr(&mv, header::CONTENT_TYPE),
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(hdr(&mv, header::CACHE_CONTROL), "no-cache");
    assert!(text(&mv).contains("stream.m3u8"), "{}", text(&mv));

    feed.until(5_000);
    pump_all(&r, T0);
    let pl = respond(&r, &get("/live/cam/stream.m3u8"), T0);
    assert_eq!(pl.status(), StatusCode::OK);
    let body = text(&pl);
    assert!(
        body.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES"),
        "{body}"
    );
    let seg = body
        .lines()
        .find(|l| l.starts_with("seg") && l.ends_with(".m4s"))
        .unwrap_or_else(|| panic!("no segment in\n{body}"));

    let init = respond(&r, &get("/live/cam/init.mp4"), T0);
    assert_eq!(init.status(), StatusCode::OK);
    assert_eq!(hdr(&init, header::CONTENT_TYPE), "video/mp4");
    assert_eq!(&init.body()[4..8], b"ftyp");

    let s = respond(&r, &get(&format!("/live/cam/{seg}")), T0);
    assert_eq!(s.status(), StatusCode::OK);
    assert_eq!(hdr(&s, header::CONTENT_TYPE), "video/mp4");
    assert!(hdr(&s, header::CACHE_CONTROL).contains("max-age="));
    assert_eq!(hdr(&s, header::ACCEPT_RANGES), "bytes");

    let (msn, part) = preload_hint(&body);
    let earlier = if part > 0 {
        format!("part{msn}.{}.m4s", part - 1)
    } else {
        format!("part{}.0.m4s", msn - 1)
    };
    let p = respond(&r, &get(&format!("/live/cam/{earlier}")), T0);
    assert_eq!(p.status(), StatusCode::OK, "{earlier}");
    assert_eq!(hdr(&p, header::CONTENT_TYPE), "video/mp4");

    // TS is built from its first request on (at the next keyframe): that
    // request waits for the first complete TS segment.
    let key = StreamKey::new("live", "cam").unwrap();
    assert_eq!(r.hls().unwrap().get(&key).unwrap().ts_bytes(), 0);
    let ts_index = get("/live/cam/ts/index.m3u8");
    let ts_wait = park(&r, &ts_index, T0);
    feed.until(6_100);
    pump_all(&r, T0);
    let ts_mv = match r.resume(&ts_index, ts_wait, T0) {
        Routed::Response(resp) => resp,
        Routed::Wait(_) => panic!("no TS segment 1 s after the TS request"),
    };
    assert_eq!(ts_mv.status(), StatusCode::OK);
    assert!(text(&ts_mv).contains("stream.m3u8"), "{}", text(&ts_mv));
    let ts = respond(&r, &get("/live/cam/ts/stream.m3u8"), T0);
    assert_eq!(ts.status(), StatusCode::OK);
    assert_eq!(
        hdr(&ts, header::CONTENT_TYPE),
        "application/vnd.apple.mpegurl"
    );
    let ts_body = text(&ts);
    let ts_seg = ts_body
        .lines()
        .find(|l| l.ends_with(".ts"))
        .unwrap_or_else(|| panic!("no TS segment in\n{ts_body}"));
    let t = respond(&r, &get(&format!("/live/cam/ts/{ts_seg}")), T0);
    assert_eq!(t.status(), StatusCode::OK, "{ts_seg}");
    assert_eq!(hdr(&t, header::CONTENT_TYPE), "video/mp2t");
    assert_eq!(t.body()[0], 0x47, "TS sync byte");
}

#[test]
fn ranges_and_head_on_segments() {
    let (_engine, mut feed, r) = live("cam");
    let _ = respond(&r, &get("/live/cam/index.m3u8"), T0);
    feed.until(5_000);
    pump_all(&r, T0);
    let body = text(&respond(&r, &get("/live/cam/stream.m3u8"), T0));
    let seg = body
        .lines()
        .find(|l| l.starts_with("seg"))
        .unwrap()
        .to_owned();
    let uri = format!("/live/cam/{seg}");
    let full = respond(&r, &get(&uri), T0).into_body();
    let len = full.len();
    assert!(len > 100);

    let ranged = |range: &str| {
        let rq = Request::builder()
            .uri(&uri)
            .header(header::RANGE, range)
            .body(Bytes::new())
            .unwrap();
        respond(&r, &rq, T0)
    };
    let a = ranged("bytes=0-9");
    assert_eq!(a.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(hdr(&a, header::CONTENT_RANGE), format!("bytes 0-9/{len}"));
    assert_eq!(hdr(&a, header::CONTENT_LENGTH), "10");
    assert_eq!(a.body(), &full.slice(0..10));

    let b = ranged("bytes=10-");
    assert_eq!(b.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        hdr(&b, header::CONTENT_RANGE),
        format!("bytes 10-{}/{len}", len - 1)
    );
    assert_eq!(b.body(), &full.slice(10..));

    let c = ranged("bytes=-16");
    assert_eq!(c.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(c.body(), &full.slice(len - 16..));

    let d = ranged(&format!("bytes={len}-"));
    assert_eq!(d.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(hdr(&d, header::CONTENT_RANGE), format!("bytes */{len}"));

    let e = ranged("bytes=0-1,5-6");
    assert_eq!(e.status(), StatusCode::OK, "several ranges: whole body");
    assert_eq!(e.body().len(), len);

    let head = respond(&r, &req(Method::HEAD, &uri), T0);
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.body().is_empty());
    assert_eq!(hdr(&head, header::CONTENT_LENGTH), len.to_string());

    // Playlists ignore Range.
    let rq = Request::builder()
        .uri("/live/cam/stream.m3u8")
        .header(header::RANGE, "bytes=0-3")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(respond(&r, &rq, T0).status(), StatusCode::OK);
}

#[test]
fn malformed_and_far_ahead_directives_are_400() {
    let (_engine, _feed, r) = live("cam");
    for q in [
        "_HLS_msn=abc",
        "_HLS_msn=",
        "_HLS_msn=-1",
        "_HLS_msn=1e3",
        "_HLS_msn=99999999999999999999999",
        "_HLS_msn=1&_HLS_msn=2",
        "_HLS_msn=1&_HLS_part=0&_HLS_part=0",
        // docs/hls.md: a repeated directive is 400, `_HLS_skip` too (it was
        // 200).
        "_HLS_skip=YES&_HLS_skip=YES",
        "_HLS_skip=v2&_HLS_skip=YES",
        "_HLS_part=1",
        "_HLS_msn=1&_HLS_part=x",
        "_HLS_skip=NO",
        "_HLS_msn=999999",
        "_HLS_msn=18446744073709551615",
    ] {
        let resp = respond(&r, &get(&format!("/live/cam/stream.m3u8?{q}")), T0);
        assert_eq!(
            resp.status(),
            StatusCode::BAD_REQUEST,
            "{q}: {}",
            text(&resp)
        );
    }
    // Unknown parameters are ignored (cache busters).
    let resp = respond(&r, &get("/live/cam/stream.m3u8?foo=bar&_=123"), T0);
    assert_eq!(resp.status(), StatusCode::OK);
}

#[test]
fn first_request_waits_until_the_muxer_is_ready() {
    let engine = Engine::with_defaults();
    let mut feed = Feed::start(&engine, "fresh");
    let r = router(&engine);
    let rq = get("/live/fresh/index.m3u8");
    let wait = park(&r, &rq, T0);
    assert_eq!(r.hls().unwrap().blocked_requests(), 1);
    assert_eq!(wait.deadline, T0 + Duration::from_secs(10));
    let seen = wait.epoch;

    // Frames arrive; the pump moves them and notifies the parked request.
    feed.until(1_500);
    let now = T0 + Duration::from_millis(300);
    pump_all(&r, now);
    assert_ne!(wait.signal.epoch(), seen, "pump notifies waiters");
    let resp = match r.resume(&rq, wait, now) {
        Routed::Response(resp) => resp,
        Routed::Wait(_) => panic!("still waiting with media in the muxer"),
    };
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(r.hls().unwrap().blocked_requests(), 0, "slot released");

    // A stream with no media at all answers 503 at the deadline.
    let _idle = Feed::start(&engine, "silent");
    let rq = get("/live/silent/stream.m3u8");
    let wait = park(&r, &rq, T0);
    let deadline = wait.deadline;
    let resp = match r.resume(&rq, wait, deadline) {
        Routed::Response(resp) => resp,
        Routed::Wait(_) => panic!("parked past the deadline"),
    };
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn blocking_reload_waits_for_the_part_then_times_out() {
    let (_engine, mut feed, r) = live("cam");
    let pl = text(&respond(&r, &get("/live/cam/stream.m3u8"), T0));
    let (msn, part) = preload_hint(&pl);
    let uri = format!("/live/cam/stream.m3u8?_HLS_msn={msn}&_HLS_part={part}");
    let rq = get(&uri);
    let wait = park(&r, &rq, T0);
    assert_eq!(
        wait.deadline,
        T0 + Duration::from_secs(3),
        "3 × target duration"
    );

    // The hinted part itself is held too (preload hint, §6.2.6).
    let part_rq = get(&format!("/live/cam/part{msn}.{part}.m4s"));
    let part_wait = park(&r, &part_rq, T0);
    assert_eq!(r.hls().unwrap().blocked_requests(), 2);

    // Resuming without progress parks again with the same deadline.
    let now = T0 + Duration::from_millis(100);
    let wait = match r.resume(&rq, wait, now) {
        Routed::Wait(w) => w,
        Routed::Response(resp) => panic!("answered {} without progress", resp.status()),
    };
    assert_eq!(wait.deadline, T0 + Duration::from_secs(3));

    // One more part of media.
    feed.until(4_200);
    pump_all(&r, now);
    let resp = match r.resume(&rq, wait, now) {
        Routed::Response(resp) => resp,
        Routed::Wait(_) => panic!("still blocked after the part was published"),
    };
    assert_eq!(resp.status(), StatusCode::OK);
    let body = text(&resp);
    assert!(
        body.contains(&format!("part{msn}.{part}.m4s")),
        "playlist lists the awaited part:\n{body}"
    );
    let part_resp = match r.resume(&part_rq, part_wait, now) {
        Routed::Response(resp) => resp,
        Routed::Wait(_) => panic!("hinted part still held"),
    };
    assert_eq!(part_resp.status(), StatusCode::OK);
    assert_eq!(hdr(&part_resp, header::CONTENT_TYPE), "video/mp4");

    // Nothing more is published: the next reload gives up with 503 after
    // three target durations (rfc8216bis §6.2.5.2).
    let (msn, part) = preload_hint(&body);
    let rq = get(&format!(
        "/live/cam/stream.m3u8?_HLS_msn={msn}&_HLS_part={part}"
    ));
    let wait = park(&r, &rq, now);
    let deadline = wait.deadline;
    assert_eq!(deadline, now + Duration::from_secs(3));
    let resp = match r.resume(&rq, wait, deadline) {
        Routed::Response(resp) => resp,
        Routed::Wait(_) => panic!("parked past the deadline"),
    };
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(hdr(&resp, header::RETRY_AFTER), "1");
    assert_eq!(r.hls().unwrap().blocked_requests(), 0);
}

/// Requests `/live/cam/index.m3u8` at `T0` (which starts muxing `live/cam`;
/// the answer must be 200), then the muxed stream.
fn started_cam(r: &HttpRouter) -> Arc<HlsStream> {
    assert_eq!(
        respond(r, &get("/live/cam/index.m3u8"), T0).status(),
        StatusCode::OK
    );
    r.hls()
        .unwrap()
        .get(&StreamKey::new("live", "cam").unwrap())
        .unwrap()
}

#[test]
fn publisher_end_gives_endlist_and_idle_stops_muxing() {
    let (_engine, feed, r) = live("cam");
    let stream = started_cam(&r);
    assert_eq!(r.hls().unwrap().streams().len(), 1);
    drop(feed);
    pump_all(&r, T0);
    assert!(stream.is_ended());
    let body = text(&respond(&r, &get("/live/cam/stream.m3u8"), T0));
    assert!(body.contains("#EXT-X-ENDLIST"), "{body}");
    // After the end, directives are ignored: no wait (§6.2.5.2).
    let resp = respond(&r, &get("/live/cam/stream.m3u8?_HLS_msn=2"), T0);
    assert_eq!(resp.status(), StatusCode::OK);

    // 30 s without a request: the pump task ends and the stream is gone.
    let later = T0 + Duration::from_secs(29);
    assert!(matches!(stream.pump(later), JobState::Wait { .. }));
    let later = T0 + Duration::from_secs(30);
    assert!(matches!(stream.pump(later), JobState::Done));
    assert!(r.hls().unwrap().streams().is_empty());
    assert_eq!(
        respond(&r, &get("/live/cam/index.m3u8"), later).status(),
        StatusCode::NOT_FOUND
    );
}

#[test]
fn idle_live_stream_stops_and_restarts_on_demand() {
    let (_engine, mut feed, r) = live("cam");
    let stream = started_cam(&r);
    // Requests keep it alive.
    let t = T0 + Duration::from_secs(20);
    let _ = respond(&r, &get("/live/cam/stream.m3u8"), t);
    let JobState::Wait { deadline, .. } = stream.pump(T0 + Duration::from_secs(31)) else {
        panic!("stream stopped although it was requested 11 s ago");
    };
    assert_eq!(deadline, t + Duration::from_secs(30));
    assert!(matches!(stream.pump(deadline), JobState::Done));
    assert!(r.hls().unwrap().streams().is_empty());
    // The next request muxes it again (the GOP cache gives a fresh start),
    // answered once the new muxer has a segment.
    feed.until(4_000);
    let rq = get("/live/cam/index.m3u8");
    let wait = park(&r, &rq, deadline);
    assert_eq!(r.hls().unwrap().streams().len(), 1);
    feed.until(5_100);
    pump_all(&r, deadline);
    match r.resume(&rq, wait, deadline) {
        Routed::Response(resp) => assert_eq!(resp.status(), StatusCode::OK),
        Routed::Wait(_) => panic!("restarted muxer has no segment"),
    }
}

#[test]
fn limits_on_streams_and_parked_requests() {
    let engine = Engine::with_defaults();
    let mut a = Feed::start(&engine, "a");
    let mut b = Feed::start(&engine, "b");
    a.until(2_000);
    b.until(2_000);
    let r = router_with(&engine, |c| {
        c.hls.max_streams = 1;
        c.hls.max_blocked_requests = 1;
    });
    // Muxing starts at the 1 s keyframe; a segment completes at 2 s.
    let first = park(&r, &get("/live/a/index.m3u8"), T0);
    a.until(2_600);
    pump_all(&r, T0);
    drop(first);
    assert_eq!(
        respond(&r, &get("/live/a/index.m3u8"), T0).status(),
        StatusCode::OK
    );
    let resp = respond(&r, &get("/live/b/index.m3u8"), T0);
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

    let pl = text(&respond(&r, &get("/live/a/stream.m3u8"), T0));
    let (msn, part) = preload_hint(&pl);
    let uri = format!("/live/a/stream.m3u8?_HLS_msn={msn}&_HLS_part={part}");
    let first = park(&r, &get(&uri), T0);
    let resp = respond(&r, &get(&uri), T0);
    assert_eq!(
        resp.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "second parked request"
    );
    drop(first);
    let _again = park(&r, &get(&uri), T0);
}

#[test]
fn waiters_wake_per_part_not_per_frame() {
    let (_engine, mut feed, r) = live("cam");
    let stream = started_cam(&r);
    pump_all(&r, T0);
    let before = stream.advanced().epoch();
    // 2 s of media, pumped after every 20 ms of it (as the pump task does
    // on a live stream: one wake-up per published frame or two).
    let mut t = 3_000;
    let mut pumps = 0;
    while t < 5_000 {
        t += 20;
        feed.until(t);
        pump_all(&r, T0);
        pumps += 1;
    }
    let wakes = stream.advanced().epoch() - before;
    // 10 parts of 200 ms (and 2 segments ending with one of them).
    assert!(
        (4..=20).contains(&wakes),
        "{wakes} wake-ups for 2 s of media in {pumps} pumps"
    );
}

#[test]
fn first_playlist_waits_for_a_segment_or_two_target_durations() {
    let engine = Engine::with_defaults();
    let mut feed = Feed::start(&engine, "gop");
    feed.until(500);
    let r = router(&engine);
    // Parts exist (0.5 s of media) but no complete segment.
    let rq = get("/live/gop/index.m3u8");
    let wait = park(&r, &rq, T0);
    assert_eq!(
        wait.deadline,
        T0 + Duration::from_secs(2),
        "answered with parts after 2 target durations"
    );
    // An LL-HLS client (delivery directives) is served from parts at once.
    let ll = respond(&r, &get("/live/gop/stream.m3u8?_HLS_msn=0&_HLS_part=0"), T0);
    assert_eq!(ll.status(), StatusCode::OK);
    assert!(text(&ll).contains("#EXT-X-PART:"));
    // A TS client keeps waiting for its segment.
    let ts = get("/live/gop/ts/index.m3u8");
    let ts_wait = park(&r, &ts, T0);
    assert_eq!(ts_wait.deadline, T0 + Duration::from_secs(10));
    // At the soft deadline, the LL multivariant playlist is served.
    let at = wait.deadline;
    match r.resume(&rq, wait, at) {
        Routed::Response(resp) => assert_eq!(resp.status(), StatusCode::OK),
        Routed::Wait(_) => panic!("still parked at the soft deadline"),
    }
    // TS starts with the next segment (at the 1 s keyframe): the TS client
    // is answered once that segment completes.
    feed.until(1_100);
    pump_all(&r, at);
    let ts_wait = match r.resume(&ts, ts_wait, at) {
        Routed::Wait(w) => w,
        Routed::Response(resp) => panic!("TS answered {} before its segment", resp.status()),
    };
    feed.until(2_100);
    pump_all(&r, at);
    match r.resume(&ts, ts_wait, at) {
        Routed::Response(resp) => assert_eq!(resp.status(), StatusCode::OK),
        Routed::Wait(_) => panic!("TS still parked with a complete segment"),
    }
}

#[test]
fn ts_variant_is_built_while_watched_and_freed_when_idle() {
    let (_engine, mut feed, r) = live("cam");
    let stream = started_cam(&r);
    // LL-HLS viewers only: no TS muxing, no TS bytes.
    feed.until(5_000);
    pump_all(&r, T0);
    let _ = respond(&r, &get("/live/cam/stream.m3u8"), T0);
    assert!(!stream.ts_enabled());
    assert_eq!(stream.ts_bytes(), 0);
    assert!(stream.memory_bytes() > 0);

    // The first TS request waits for the first TS segment (the next
    // keyframe, 5 s, to 6 s), numbered like the fMP4 segment of that media.
    let t1 = T0 + Duration::from_secs(1);
    let rq = get("/live/cam/ts/stream.m3u8");
    let wait = park(&r, &rq, t1);
    assert!(stream.ts_enabled());
    feed.until(6_100);
    pump_all(&r, t1);
    let ts = match r.resume(&rq, wait, t1) {
        Routed::Response(resp) => text(&resp),
        Routed::Wait(_) => panic!("no TS playlist after one TS segment"),
    };
    let ll = text(&respond(&r, &get("/live/cam/stream.m3u8"), t1));
    let seq = ts
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .unwrap();
    let segs: Vec<&str> = ts.lines().filter(|l| l.ends_with(".ts")).collect();
    assert_eq!(segs, [format!("seg{seq}.ts")], "{ts}");
    assert!(ll.contains(&format!("\nseg{seq}.m4s\n")), "{ll}");
    let ts_seg = respond(&r, &get(&format!("/live/cam/ts/seg{seq}.ts")), t1);
    assert_eq!(ts_seg.status(), StatusCode::OK);
    assert!(stream.ts_bytes() >= ts_seg.body().len());

    // LL-HLS requests go on, TS ones stop: 30 s after the last TS request
    // the TS variant is freed; the stream stays muxed.
    let t2 = t1 + Duration::from_secs(20);
    let _ = respond(&r, &get("/live/cam/stream.m3u8"), t2);
    let JobState::Wait { deadline, .. } = stream.pump(t1 + Duration::from_secs(29)) else {
        panic!("stream stopped");
    };
    assert_eq!(
        deadline,
        t1 + Duration::from_secs(30),
        "woken for the TS idle check"
    );
    assert!(stream.ts_bytes() > 0);
    assert!(matches!(stream.pump(deadline), JobState::Wait { .. }));
    assert!(!stream.ts_enabled());
    assert_eq!(stream.ts_bytes(), 0, "TS freed");
    assert_eq!(r.hls().unwrap().streams().len(), 1);
    feed.until(9_100);
    pump_all(&r, deadline);
    let after = text(&respond(&r, &get("/live/cam/stream.m3u8"), deadline));
    assert!(after.contains("\nseg6.m4s\n"), "LL-HLS goes on: {after}");
    assert_eq!(stream.ts_bytes(), 0);
}

#[test]
fn a_first_ts_request_muxes_ts_from_the_first_segment() {
    let engine = Engine::with_defaults();
    let mut feed = Feed::start(&engine, "tsfirst");
    feed.until(500);
    let r = router(&engine);
    // The TS request creates the muxer: TS is on before the GOP cache is
    // taken in, so the stream's first segment has its TS form.
    let rq = get("/live/tsfirst/ts/stream.m3u8");
    let wait = park(&r, &rq, T0);
    feed.until(1_100);
    pump_all(&r, T0);
    let body = match r.resume(&rq, wait, T0) {
        Routed::Response(resp) => {
            assert_eq!(resp.status(), StatusCode::OK);
            text(&resp)
        }
        Routed::Wait(_) => panic!("no TS playlist after the first segment"),
    };
    assert!(body.contains("#EXT-X-MEDIA-SEQUENCE:0\n"), "{body}");
    assert!(body.contains("\nseg0.ts\n"), "{body}");
}

/// A second service beside HLS: POST echo with a 16-byte body limit.
#[derive(Debug)]
struct Echo;

impl arcly::http::HttpService for Echo {
    fn handle(
        &self,
        req: &Request<Bytes>,
        route: &arcly::http::RouteMatch,
        _now: Instant,
    ) -> Routed {
        let mut resp = Response::new(req.body().clone());
        resp.headers_mut().insert(
            "x-echo-name",
            header::HeaderValue::from_str(route.param("name").unwrap_or("-")).unwrap(),
        );
        Routed::Response(resp)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn post(uri: &str, body: &'static [u8]) -> Request<Bytes> {
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_LENGTH, body.len())
        .body(Bytes::from_static(body))
        .unwrap()
}

#[test]
fn route_table_mounts_a_second_service_with_a_body_limit() {
    use arcly::http::{Admit, Route, RouterConfig};
    let (engine, _feed, _) = live("cam");
    let mut r = HttpRouter::empty(RouterConfig::default());
    let echo = Route::new("/echo/{name}")
        .unwrap()
        .methods([Method::POST])
        .max_body(16);
    r.mount(echo, Arc::new(Echo));
    r.mount_hls(engine.clone(), HlsServiceConfig::default());

    // The echo service answers POST with the body and the captured name.
    let resp = respond(&r, &post("/echo/b%C3%A9", b"hello"), T0);
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.body().as_ref(), b"hello");
    assert_eq!(resp.headers()["x-echo-name"], "bé");

    // 16 bytes pass, 17 do not: by Content-Length before the body is read
    // (the adapter's check) and by the body itself.
    assert!(matches!(
        r.admit(&post("/echo/a", b"0123456789abcdef")),
        Admit::Read { limit: 16 }
    ));
    let big = post("/echo/a", b"0123456789abcdefg");
    match r.admit(&big) {
        Admit::Respond(resp) => assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Admit::Read { .. } => panic!("17 bytes admitted past a 16-byte limit"),
    }
    assert_eq!(
        respond(&r, &big, T0).status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // HLS routes take no body at all.
    let get_with_body = Request::builder()
        .uri("/live/cam/index.m3u8")
        .header(header::CONTENT_LENGTH, "1")
        .body(Bytes::from_static(b"x"))
        .unwrap();
    assert!(matches!(r.admit(&get_with_body), Admit::Respond(_)));

    // A path both services match: the method decides. GET goes to HLS,
    // PUT to nobody (405 listing both services' methods).
    assert_eq!(
        respond(&r, &get("/echo/a"), T0).status(),
        StatusCode::PERMANENT_REDIRECT,
        "HLS's /<app>/<stream> → /<app>/<stream>/ redirect"
    );
    let put = respond(&r, &req(Method::PUT, "/echo/a"), T0);
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(hdr(&put, header::ALLOW), "POST, GET, HEAD, OPTIONS");
    let pre = respond(&r, &req(Method::OPTIONS, "/echo/a"), T0);
    assert_eq!(pre.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        hdr(&pre, header::ACCESS_CONTROL_ALLOW_METHODS),
        "POST, GET, HEAD, OPTIONS"
    );
    // POST on an HLS path: 405 with HLS's methods only.
    let resp = respond(&r, &post("/live/cam/index.m3u8", b""), T0);
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(hdr(&resp, header::ALLOW), "GET, HEAD, OPTIONS");

    // HLS still serves through the table, and its pump is a job of the
    // router's queue, not HLS-specific adapter work.
    let first = get("/live/cam/index.m3u8");
    let wait = park(&r, &first, T0);
    let job = r.jobs().poll().expect("the HLS stream's pump is queued");
    assert_eq!(job.describe(), "hls live/cam");
    assert!(r.jobs().poll().is_none(), "one job per stream");
    // Pump only through the job interface.
    while let JobState::Busy = job.step(T0) {}
    drop(wait);
    assert_eq!(r.hls().unwrap().streams().len(), 1);
}
