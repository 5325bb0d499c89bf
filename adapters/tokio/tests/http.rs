//! `serve_http` over real TCP sockets with a tiny HTTP/1.1 client: status
//! codes on the wire, HEAD and keep-alive, hyper's header bound, blocking
//! playlist reload answered within part duration + 50 ms of the frame that
//! completes the part, pump tasks ending on idle, parked requests answered
//! on shutdown. Media: a real engine publisher with synthetic H.264 + AAC.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arcly::container::hls::HlsConfig;
use arcly::http::{HlsServiceConfig, HttpConfig, HttpRouter};
use arcly::Engine;
use arcly_tokio::serve_http;
use tokio::sync::oneshot;

#[path = "../../../core/tests/common/mod.rs"]
mod common;
use common::feed::{preload_hint, Feed};

const PART: Duration = Duration::from_millis(200);

struct Server {
    addr: SocketAddr,
    router: Arc<HttpRouter>,
    stop: Option<oneshot::Sender<()>>,
    rt: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(engine: &Engine, idle: Duration) -> Server {
        let router = Arc::new(HttpRouter::new(
            engine.clone(),
            HttpConfig::default().with_hls(
                HlsServiceConfig::default()
                    .with_muxer(
                        HlsConfig::default()
                            .with_segment_duration(Duration::from_secs(1))
                            .with_part_duration(PART),
                    )
                    .with_idle_timeout(idle),
            ),
        ));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let r = router.clone();
        let rt = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let shutdown = async move {
                    let _ = stop_rx.await;
                };
                serve_http(listener, r, shutdown).await.unwrap();
            });
        });
        Server {
            addr: addr_rx.recv().unwrap(),
            router,
            stop: Some(stop_tx),
            rt: Some(rt),
        }
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(rt) = self.rt.take() {
            rt.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A keep-alive HTTP/1.1 connection with a 10 s read timeout (watchdog).
struct Client {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        sock.set_nodelay(true).unwrap();
        Client {
            sock,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, method: &str, target: &str, extra: &str) {
        let req = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n{extra}\r\n");
        self.sock.write_all(req.as_bytes()).unwrap();
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.sock.read(&mut chunk).unwrap();
        assert!(n > 0, "server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    fn read(&mut self, head_request: bool) -> Resp {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            self.fill();
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
        let body_len = if head_request || status == 204 {
            0
        } else {
            len
        };
        while self.buf.len() < body_len {
            self.fill();
        }
        let body = self.buf.drain(..body_len).collect();
        Resp {
            status,
            headers,
            body,
        }
    }

    fn get(&mut self, target: &str) -> Resp {
        self.send("GET", target, "");
        self.read(false)
    }
}

/// The preload hint once the pump has taken every published frame (the
/// same twice, 40 ms apart).
fn settled_hint(c: &mut Client) -> (u64, u32) {
    let started = Instant::now();
    let mut last = preload_hint(&c.get("/live/cam/stream.m3u8").text());
    loop {
        std::thread::sleep(Duration::from_millis(40));
        let now = preload_hint(&c.get("/live/cam/stream.m3u8").text());
        if now == last || started.elapsed() > Duration::from_secs(5) {
            return now;
        }
        last = now;
    }
}

#[test]
fn status_codes_head_and_keep_alive_on_the_wire() {
    let engine = Engine::with_defaults();
    let mut feed = Feed::start(&engine, "cam");
    feed.until(2_000);
    let mut server = Server::start(&engine, Duration::from_secs(30));
    let mut c = Client::connect(server.addr);

    let r = c.get("/live/cam/index.m3u8");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r.text().starts_with("#EXTM3U"));

    // All on the same keep-alive connection.
    assert_eq!(c.get("/live/nope/index.m3u8").status, 404);
    assert_eq!(c.get("/live/cam/nothing.bin").status, 404);
    assert_eq!(c.get("/live/%2e%2e/cam/index.m3u8").status, 400);
    assert_eq!(c.get("/live/../cam/index.m3u8").status, 400);
    assert_eq!(c.get("/live//cam/index.m3u8").status, 400);
    assert_eq!(c.get("/live/cam/stream.m3u8?_HLS_msn=abc").status, 400);
    assert_eq!(c.get("/live/cam/stream.m3u8?_HLS_msn=4000000").status, 400);
    let long = format!("/live/cam/stream.m3u8?pad={}", "x".repeat(4000));
    assert_eq!(c.get(&long).status, 414);
    c.send("DELETE", "/live/cam/index.m3u8", "");
    let r = c.read(false);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    c.send(
        "OPTIONS",
        "/live/cam/index.m3u8",
        "Origin: http://x.test\r\nAccess-Control-Request-Method: GET\r\n",
    );
    let r = c.read(false);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));

    // HEAD: the GET length, no body (the next response parses cleanly).
    c.send("HEAD", arcly::http::HLS_JS_PATH, "");
    let r = c.read(true);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(arcly::http::HLS_JS.len().to_string().as_str())
    );
    let page = c.get("/live/cam/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("lowLatencyMode: true"));

    // Range on the wire.
    c.send("GET", arcly::http::HLS_JS_PATH, "Range: bytes=0-99\r\n");
    let r = c.read(false);
    assert_eq!(r.status, 206);
    assert_eq!(r.body.len(), 100);
    assert_eq!(&r.body[..], &arcly::http::HLS_JS[..100]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-99/{}", arcly::http::HLS_JS.len()).as_str())
    );
    c.send(
        "GET",
        arcly::http::HLS_JS_PATH,
        "Range: bytes=99999999-\r\n",
    );
    assert_eq!(c.read(false).status, 416);

    // A request head past the 16 KiB bound is refused by hyper.
    let mut big = Client::connect(server.addr);
    let huge = format!("X-Pad: {}\r\n", "y".repeat(20_000));
    big.send("GET", "/live/cam/index.m3u8", &huge);
    let r = big.read(false);
    assert_eq!(r.status, 431);

    server.shutdown();
}

#[test]
fn blocked_playlist_answers_within_a_part_of_the_frame() {
    let engine = Engine::with_defaults();
    let mut feed = Feed::start(&engine, "cam");
    feed.until(2_000);
    let mut server = Server::start(&engine, Duration::from_secs(30));
    let mut c = Client::connect(server.addr);
    let pl = c.get("/live/cam/stream.m3u8");
    assert_eq!(pl.status, 200, "{}", pl.text());
    let (msn, part) = preload_hint(&pl.text());

    let mut worst = Duration::ZERO;
    let mut media_ms = 2_000;
    let (mut msn, mut part) = (msn, part);
    for round in 0..5 {
        if round > 0 {
            // The answer came as soon as the awaited part existed; let the
            // pump take the rest of the burst, then ask for the next part.
            (msn, part) = settled_hint(&mut c);
        }
        let mut blocked = Client::connect(server.addr);
        blocked.send(
            "GET",
            &format!("/live/cam/stream.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
            "",
        );
        // Parked: nothing comes back while nothing is published.
        std::thread::sleep(Duration::from_millis(300));
        blocked.sock.set_nonblocking(true).unwrap();
        let mut probe = [0u8; 1];
        let early = blocked.sock.read(&mut probe);
        assert!(
            matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "round {round}: answered before the part existed: {early:?}"
        );
        blocked.sock.set_nonblocking(false).unwrap();

        // Publish one part's worth of media (and the frame that closes it).
        media_ms += PART.as_millis() as i64 + 40;
        let published = Instant::now();
        feed.until(media_ms);
        let r = blocked.read(false);
        let took = published.elapsed();
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.text();
        assert!(
            body.contains(&format!("part{msn}.{part}.m4s")),
            "round {round}: the awaited part is listed:\n{body}"
        );
        worst = worst.max(took);
    }
    (msn, part) = settled_hint(&mut c);
    assert!(
        worst <= PART + Duration::from_millis(50),
        "blocked playlist answered {worst:?} after the frame (limit: part + 50 ms)"
    );
    eprintln!("blocking reload: worst answer {worst:?} after the frame");

    // Hinted part: held, then served.
    let mut hinted = Client::connect(server.addr);
    hinted.send("GET", &format!("/live/cam/part{msn}.{part}.m4s"), "");
    std::thread::sleep(Duration::from_millis(100));
    media_ms += PART.as_millis() as i64 + 40;
    feed.until(media_ms);
    let r = hinted.read(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("video/mp4"));
    assert!(r.body.len() > 8);

    // First request of a stream with no media yet waits for it (for a
    // complete segment: the multivariant playlist is for any client).
    let mut fresh = Feed::start(&engine, "fresh");
    let mut first = Client::connect(server.addr);
    first.send("GET", "/live/fresh/index.m3u8", "");
    std::thread::sleep(Duration::from_millis(200));
    let published = Instant::now();
    fresh.until(1_100);
    let r = first.read(false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(published.elapsed() < Duration::from_secs(2));

    server.shutdown();
}

#[test]
fn idle_streams_stop_and_shutdown_answers_parked_requests() {
    let engine = Engine::with_defaults();
    let mut feed = Feed::start(&engine, "cam");
    feed.until(2_000);
    let mut server = Server::start(&engine, Duration::from_millis(800));
    let mut c = Client::connect(server.addr);
    assert_eq!(c.get("/live/cam/index.m3u8").status, 200);
    assert_eq!(server.router.hls().unwrap().streams().len(), 1);
    let started = Instant::now();
    while !server.router.hls().unwrap().streams().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "idle stream still muxed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.elapsed() >= Duration::from_millis(700));

    // A parked request is answered (503) at shutdown, quickly.
    let pl = c.get("/live/cam/stream.m3u8");
    let (msn, part) = preload_hint(&pl.text());
    let mut blocked = Client::connect(server.addr);
    blocked.send(
        "GET",
        &format!("/live/cam/stream.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
        "",
    );
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    if let Some(s) = server.stop.take() {
        let _ = s.send(());
    }
    let r = blocked.read(false);
    assert_eq!(r.status, 503);
    assert!(t.elapsed() < Duration::from_secs(2));
    server.shutdown();
}

/// POST echo with a 16-byte body limit, mounted before HLS.
#[derive(Debug)]
struct Echo;

impl arcly::http::HttpService for Echo {
    fn handle(
        &self,
        req: &http::Request<bytes::Bytes>,
        _route: &arcly::http::RouteMatch,
        _now: arcly::Instant,
    ) -> arcly::http::Routed {
        arcly::http::Routed::Response(http::Response::new(req.body().clone()))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// One request on its own connection (`Connection: close`): status and body.
fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.as_bytes().to_vec())
        .unwrap_or_default();
    (status, body)
}

/// The route table on hyper: a second service gets its request body, a
/// body past the route's limit is 413 whether announced by Content-Length
/// (before it is read) or chunked (while it is read), a body that stops
/// coming is 408 after the header-read timeout, and HLS still answers next
/// to it.
#[test]
fn mounted_service_gets_bodies_up_to_its_limit() {
    use arcly::http::{Route, RouterConfig};
    let engine = Engine::with_defaults();
    let mut router = HttpRouter::empty(RouterConfig::default());
    router.mount(
        Route::new("/echo")
            .unwrap()
            .methods([http::Method::POST])
            .max_body(16),
        Arc::new(Echo),
    );
    router.mount_hls(engine.clone(), HlsServiceConfig::default());
    let router = Arc::new(router);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let rt = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let config = arcly_tokio::HttpServeConfig::default()
                .with_header_read_timeout(Duration::from_secs(1));
            let shutdown = async move {
                let _ = stop_rx.await;
            };
            arcly_tokio::serve_http_with(listener, router, shutdown, config)
                .await
                .unwrap();
        });
    });
    let addr = addr_rx.recv().unwrap();
    let (status, body) = exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!((status, body.as_slice()), (200, &b"hello"[..]));
    let (status, _) = exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 17\r\n\r\n0123456789abcdefg",
    );
    assert_eq!(status, 413, "by Content-Length");
    let (status, _) = exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n012345678\r\n9\r\n9abcdefgh\r\n0\r\n\r\n",
    );
    assert_eq!(status, 413, "chunked past the limit");
    let (status, body) = exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    );
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"abcde"[..]),
        "chunked within"
    );
    // A body that stops coming is bounded like a slow head: 408.
    let started = Instant::now();
    let (status, _) = exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
    );
    assert_eq!(status, 408, "slow body");
    assert!(started.elapsed() < Duration::from_secs(5));
    let (status, _) = exchange(
        addr,
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405);
    let (status, body) = exchange(
        addr,
        b"GET /live/cam/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "HLS player page next to the echo");
    assert!(String::from_utf8_lossy(&body).contains("<video"));
    let _ = stop_tx.send(());
    rt.join().unwrap();
}
