//! arcly-blocking `serve_http` over real TCP sockets: arcly's sans-IO
//! HTTP/1.1 machine (`arcly::http::h1`) on threads, no hyper. ffprobe and
//! ffmpeg read and decode the LL-HLS stream (a missing tool fails under
//! `CI`); a blocking playlist reload parks and is answered when the part
//! is published; pipelined requests are answered in order; a second
//! mounted service (POST echo, 16-byte limit) gets its body and 413 past
//! it; shutdown answers a parked request with 503 and returns.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arcly::container::hls::HlsConfig;
use arcly::http::{HlsServiceConfig, HttpRouter, Route, RouteMatch, Routed, RouterConfig};
use arcly::Engine;
use arcly_blocking::{serve_http_with, HttpServeConfig, Shutdown};
use bytes::Bytes;

#[path = "../../../core/tests/common/mod.rs"]
mod common;
use common::feed::Feed;

const PART: Duration = Duration::from_millis(200);

/// POST echo: the body back.
#[derive(Debug)]
struct Echo;

impl arcly::http::HttpService for Echo {
    fn handle(
        &self,
        req: &http::Request<Bytes>,
        _route: &RouteMatch,
        _now: arcly::Instant,
    ) -> Routed {
        Routed::Response(http::Response::new(req.body().clone()))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// `serve_http` on its own thread: an echo route, then HLS.
struct Server {
    addr: SocketAddr,
    shutdown: Shutdown,
    done: std::sync::mpsc::Receiver<std::io::Result<()>>,
}

impl Server {
    fn start(engine: &Engine, config: Option<HttpServeConfig>) -> Server {
        let mut router = HttpRouter::empty(RouterConfig::default());
        router.mount(
            Route::new("/echo")
                .unwrap()
                .methods([http::Method::POST])
                .max_body(16),
            Arc::new(Echo),
        );
        router.mount_hls(
            engine.clone(),
            HlsServiceConfig::default().with_muxer(
                HlsConfig::default()
                    .with_segment_duration(Duration::from_secs(1))
                    .with_part_duration(PART),
            ),
        );
        let router = Arc::new(router);
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let (done_tx, done) = std::sync::mpsc::channel();
        let stop = shutdown.clone();
        let config = config.unwrap_or_default();
        std::thread::spawn(move || {
            let _ = done_tx.send(serve_http_with(listener, router, stop, config));
        });
        Server {
            addr,
            shutdown,
            done,
        }
    }

    /// Triggers the shutdown; `serve_http` must return within 5 s.
    fn shutdown(&self) {
        self.shutdown.trigger();
        self.done
            .recv_timeout(Duration::from_secs(5))
            .expect("serve_http did not return")
            .unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

#[path = "../../test_support/http_conn.rs"]
mod http_conn;
use http_conn::{ffprobe_and_ffmpeg_read_the_ll_hls_stream, hint_after_pump, Conn};

#[test]
fn blocking_reload_pipelining_body_limit_and_shutdown() {
    let engine = Engine::with_defaults();
    let mut feed = Feed::start(&engine, "cam");
    feed.until(2_000);
    let server = Server::start(&engine, None);
    let mut c = Conn::open(server.addr);
    let first = c.get("/live/cam/stream.m3u8");
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(first.text().contains("#EXT-X-PART:"));

    // Blocking reload: parked until the hinted part is published.
    let (msn, part) = hint_after_pump(&mut c);
    let mut parked = Conn::open(server.addr);
    let target = format!("/live/cam/stream.m3u8?_HLS_msn={msn}&_HLS_part={part}");
    parked.request("GET", &target, &[]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!parked.answered_yet(), "answered before the part exists");
    feed.until(3_000);
    let r = parked.response(false);
    assert_eq!(r.status, 200);
    assert!(r.text().contains(&format!("part{msn}.{part}.m4s")));

    // Pipelined: three requests in one write, answered in order.
    let sock = c.reader.get_mut();
    sock.write_all(
        b"HEAD /live/cam/index.m3u8 HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
          GET /live/nope/index.m3u8 HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let head = c.response(true);
    assert_eq!(head.status, 200);
    assert!(
        head.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 0
    );
    let echo = c.response(false);
    assert_eq!((echo.status, echo.body.as_slice()), (200, &b"hello"[..]));
    assert_eq!(c.response(false).status, 404);
    // Past the echo route's 16-byte limit: 413 before the body, then close.
    c.request("POST", "/echo", &["Content-Length: 17"]);
    let big = c.response(false);
    assert_eq!(big.status, 413);
    assert_eq!(big.header("connection"), Some("close"));

    // Shutdown: a parked request gets 503 and serve_http returns.
    let (msn, part) = hint_after_pump(&mut Conn::open(server.addr));
    let mut parked = Conn::open(server.addr);
    let target = format!(
        "/live/cam/stream.m3u8?_HLS_msn={}&_HLS_part={part}",
        msn + 1
    );
    parked.request("GET", &target, &[]);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    server.shutdown();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(parked.response(false).status, 503);
}

#[test]
fn slow_request_heads_time_out() {
    let engine = Engine::with_defaults();
    let config = HttpServeConfig::default().with_header_read_timeout(Duration::from_millis(500));
    let server = Server::start(&engine, Some(config));
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    slow.write_all(b"GET /live/cam/ HTTP/1.1\r\nHost").unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    slow.read_to_end(&mut got).unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        got.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    server.shutdown();
}

/// ffprobe and ffmpeg read the LL-HLS stream off the blocking server (arcly's own HTTP/1.1 machine, no hyper): real
/// H.264 + AAC (ffmpeg-encoded, through our TS demuxer) published live,
/// then ended, so the playlist is complete (`EXT-X-ENDLIST`).
#[test]
fn ffprobe_reads_and_ffmpeg_decodes_the_ll_hls_stream() {
    ffprobe_and_ffmpeg_read_the_ll_hls_stream("blocking-http", |engine| {
        let server = Server::start(engine, None);
        (server.addr, Box::new(move || server.shutdown()))
    });
}
