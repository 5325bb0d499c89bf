//! arcly-async-io `serve_http` over real TCP sockets, run under smol and
//! under async-std's executor: the LL-HLS playlist on the wire, 404, HEAD
//! and Range, blocking playlist reload (answered when the awaited part is
//! published, 503 after three target durations), many parked requests all
//! answered, parked requests answered at shutdown; and ffmpeg / ffprobe
//! reading and decoding the LL-HLS stream the server builds from real
//! H.264 + AAC (a missing tool fails under `CI`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arcly::container::hls::HlsConfig;
use arcly::engine::Signal;
use arcly::http::{HlsServiceConfig, HttpConfig, HttpRouter, HLS_JS, HLS_JS_PATH};
use arcly::Engine;
use arcly_async_io::{serve_http_with, ConnectionFuture, HttpServeConfig};
use async_io::Async;

#[path = "../../../core/tests/common/mod.rs"]
mod common;
use common::feed::Feed;

const PART: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, Debug)]
enum Exec {
    Smol,
    AsyncStd,
}

/// `serve_http` on its own thread, under `exec`.
struct Server {
    addr: SocketAddr,
    router: Arc<HttpRouter>,
    stopping: Arc<AtomicBool>,
    stop: Signal,
    done: std::sync::mpsc::Receiver<std::io::Result<()>>,
}

impl Server {
    fn start(exec: Exec, engine: &Engine) -> Server {
        Server::start_with(exec, engine, HttpServeConfig::default())
    }

    fn start_with(exec: Exec, engine: &Engine, config: HttpServeConfig) -> Server {
        let router = Arc::new(HttpRouter::new(
            engine.clone(),
            HttpConfig::default().with_hls(
                HlsServiceConfig::default().with_muxer(
                    HlsConfig::default()
                        .with_segment_duration(Duration::from_secs(1))
                        .with_part_duration(PART),
                ),
            ),
        ));
        let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let addr = listener.get_ref().local_addr().unwrap();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Signal::new();
        let shutdown = {
            let (stopping, stop) = (stopping.clone(), stop.clone());
            async move {
                loop {
                    let seen = stop.epoch();
                    if stopping.load(Ordering::Acquire) {
                        return;
                    }
                    stop.wait(seen).await;
                }
            }
        };
        let (done_tx, done) = std::sync::mpsc::channel();
        let r = router.clone();
        std::thread::spawn(move || {
            let result = match exec {
                Exec::Smol => smol::block_on(serve_http_with(
                    listener,
                    r,
                    shutdown,
                    |f: ConnectionFuture| smol::spawn(f).detach(),
                    config,
                )),
                Exec::AsyncStd => async_std::task::block_on(serve_http_with(
                    listener,
                    r,
                    shutdown,
                    |f: ConnectionFuture| {
                        async_std::task::spawn(f);
                    },
                    config,
                )),
            };
            let _ = done_tx.send(result);
        });
        Server {
            addr,
            router,
            stopping,
            stop,
            done,
        }
    }

    /// Completes the shutdown future; `serve_http` must return within 5 s.
    fn shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify();
        self.done
            .recv_timeout(Duration::from_secs(5))
            .expect("serve_http did not return")
            .unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify();
    }
}

#[path = "../../test_support/http_conn.rs"]
mod http_conn;
use http_conn::{ffprobe_and_ffmpeg_read_the_ll_hls_stream, hint_after_pump, Conn};

/// A server under `exec` serving `live/cam`, fed with 2 s of media, and a
/// client that has read its LL-HLS playlist once (the muxing runs).
fn serving_cam(exec: Exec) -> (Engine, Feed, Server, Conn) {
    let engine = Engine::with_defaults();
    let mut feed = Feed::start(&engine, "cam");
    feed.until(2_000);
    let server = Server::start(exec, &engine);
    let mut c = Conn::open(server.addr);
    let first = c.get("/live/cam/stream.m3u8");
    assert_eq!(first.status, 200, "{}", first.text());
    (engine, feed, server, c)
}

/// A new connection parked on the part after the current preload hint:
/// (connection, msn, part).
fn park_on_next_part(server: &Server, c: &mut Conn) -> (Conn, u64, u32) {
    let (msn, part) = hint_after_pump(c);
    let mut parked = Conn::open(server.addr);
    let target = format!("/live/cam/stream.m3u8?_HLS_msn={msn}&_HLS_part={part}");
    parked.request("GET", &target, &[]);
    (parked, msn, part)
}

fn playlist_head_and_range(exec: Exec) {
    let (_engine, _feed, server, mut c) = serving_cam(exec);

    let r = c.get("/live/cam/index.m3u8");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert!(r.text().starts_with("#EXTM3U"));
    let media = c.get("/live/cam/stream.m3u8");
    assert_eq!(media.status, 200);
    assert!(media.text().contains("#EXT-X-PART:"), "{}", media.text());
    assert!(media.text().contains("#EXT-X-PROGRAM-DATE-TIME:"));

    // Same keep-alive connection throughout.
    assert_eq!(c.get("/live/nope/index.m3u8").status, 404);
    assert_eq!(c.get("/live/cam/stream.m3u8?_HLS_msn=x").status, 400);
    c.request("HEAD", HLS_JS_PATH, &[]);
    let head = c.response(true);
    assert_eq!(head.status, 200);
    let full_len = HLS_JS.len().to_string();
    assert_eq!(head.header("content-length"), Some(full_len.as_str()));
    c.request("GET", HLS_JS_PATH, &["Range: bytes=10-59"]);
    let part = c.response(false);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, HLS_JS[10..60].to_vec());
    let range = format!("bytes 10-59/{}", HLS_JS.len());
    assert_eq!(part.header("content-range"), Some(range.as_str()));
    c.request("GET", HLS_JS_PATH, &["Range: bytes=99999999-"]);
    assert_eq!(c.response(false).status, 416);

    // hyper's head bound (16 KiB by default): 431.
    let mut big = Conn::open(server.addr);
    let pad = format!("X-Pad: {}", "z".repeat(20_000));
    big.request("GET", "/live/cam/index.m3u8", &[&pad]);
    assert_eq!(big.response(false).status, 431);
    server.shutdown();
}

fn blocking_reload(exec: Exec) {
    let (_engine, mut feed, server, mut c) = serving_cam(exec);
    let mut media_ms = 2_000;
    for round in 0..3 {
        let (mut parked, msn, part) = park_on_next_part(&server, &mut c);
        std::thread::sleep(Duration::from_millis(300));
        assert!(!parked.answered_yet(), "round {round}: answered early");
        media_ms += PART.as_millis() as i64 + 40;
        let published = Instant::now();
        feed.until(media_ms);
        let r = parked.response(false);
        let took = published.elapsed();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains(&format!("part{msn}.{part}.m4s")));
        assert!(took < Duration::from_secs(1), "round {round}: {took:?}");
    }

    // Nothing published: 503 after three target durations (1 s segments).
    let started = Instant::now();
    let (mut parked, _, _) = park_on_next_part(&server, &mut c);
    let r = parked.response(false);
    let waited = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        waited >= Duration::from_millis(2_900) && waited < Duration::from_secs(6),
        "503 after {waited:?}"
    );
    server.shutdown();
}

fn many_parked_then_shutdown(exec: Exec) {
    const PARKED: usize = 64;
    let (_engine, mut feed, server, mut c) = serving_cam(exec);
    let (msn, part) = hint_after_pump(&mut c);
    let target = format!("/live/cam/stream.m3u8?_HLS_msn={msn}&_HLS_part={part}");
    let mut parked: Vec<Conn> = (0..PARKED).map(|_| Conn::open(server.addr)).collect();
    for p in &mut parked {
        p.request("GET", &target, &[]);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.router.hls().unwrap().blocked_requests() < PARKED {
        assert!(Instant::now() < deadline, "requests not parked");
        std::thread::sleep(Duration::from_millis(10));
    }
    feed.until(2_000 + PART.as_millis() as i64 + 40);
    for p in &mut parked {
        let r = p.response(false);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains(&format!("part{msn}.{part}.m4s")));
    }
    assert_eq!(server.router.hls().unwrap().blocked_requests(), 0);

    // Parked at shutdown: 503 at once, and `serve_http` returns.
    let (mut last, _, _) = park_on_next_part(&server, &mut c);
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    server.shutdown();
    assert_eq!(last.response(false).status, 503);
    assert!(t.elapsed() < Duration::from_secs(2));
}

/// The connection limit (more are closed at once) and the header-read
/// timeout (hyper's timer on `async_io::Timer`): a silent or half-sent head
/// is closed within the timeout, a keep-alive connection stays usable.
fn connection_limit_and_header_timeout(exec: Exec) {
    let engine = Engine::with_defaults();
    let config = HttpServeConfig::default()
        .with_max_connections(2)
        .with_header_read_timeout(Duration::from_millis(500));
    let server = Server::start_with(exec, &engine, config);
    let mut a = Conn::open(server.addr);
    assert_eq!(a.get(HLS_JS_PATH).status, 200);
    let mut b = Conn::open(server.addr);
    b.reader
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHo")
        .unwrap();
    // A third connection is over the limit: closed without an answer.
    let mut third = Conn::open(server.addr);
    third.request("GET", HLS_JS_PATH, &[]);
    let mut rest = Vec::new();
    let closed = third.reader.read_to_end(&mut rest);
    assert!(
        matches!(closed, Ok(0)) || closed.is_err(),
        "over the limit: {closed:?} {rest:?}"
    );
    // The half-sent head is closed once the header-read timeout passed.
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = b.reader.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "slow head kept {took:?}");
    assert!(!String::from_utf8_lossy(&rest).contains(" 200 "));
    // That freed a slot: a new connection is served.
    std::thread::sleep(Duration::from_millis(100));
    let mut c = Conn::open(server.addr);
    assert_eq!(c.get(HLS_JS_PATH).status, 200);
    server.shutdown();
}

#[test]
fn smol_connection_limit_and_header_timeout() {
    connection_limit_and_header_timeout(Exec::Smol);
}

#[test]
fn async_std_connection_limit_and_header_timeout() {
    connection_limit_and_header_timeout(Exec::AsyncStd);
}

#[test]
fn smol_playlist_head_and_range() {
    playlist_head_and_range(Exec::Smol);
}

#[test]
fn async_std_playlist_head_and_range() {
    playlist_head_and_range(Exec::AsyncStd);
}

#[test]
fn smol_blocking_reload() {
    blocking_reload(Exec::Smol);
}

#[test]
fn async_std_blocking_reload() {
    blocking_reload(Exec::AsyncStd);
}

#[test]
fn smol_many_parked_then_shutdown() {
    many_parked_then_shutdown(Exec::Smol);
}

#[test]
fn async_std_many_parked_then_shutdown() {
    many_parked_then_shutdown(Exec::AsyncStd);
}

/// ffprobe and ffmpeg read the LL-HLS stream off the async-io server: real
/// H.264 + AAC (ffmpeg-encoded, through our TS demuxer) published live,
/// then ended, so the playlist is complete (`EXT-X-ENDLIST`).
#[test]
fn ffprobe_reads_and_ffmpeg_decodes_the_ll_hls_stream() {
    ffprobe_and_ffmpeg_read_the_ll_hls_stream("aio-http", |engine| {
        let server = Server::start(Exec::Smol, engine);
        (server.addr, Box::new(move || server.shutdown()))
    });
}
