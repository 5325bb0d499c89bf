//! Hostile HTTP/HLS clients against an in-process arcly (tokio adapter,
//! RTMP ingest + HLS), docs/security.md items 3 and 7. One attacker at
//! 127.0.0.1; the healthy clients come from 127.0.0.2 (another client IP on
//! loopback): an RTMP publisher and an RTMP player that must see every
//! picture, and an LL-HLS reader doing blocking playlist reloads that must
//! all be answered 200.
//!
//! - A flood of parked blocking reloads from one client takes at most its
//!   per-client share of the parked pool; the other client's reloads are
//!   served (the whole pool went to the attacker before: every other
//!   reload was a 503).
//! - Streams that are published but send no media take no HLS muxer
//!   (before: 255 of them filled the 256 muxers and a new stream got 503),
//!   and one client can create at most its share of muxers.
//! - Every refusal is logged, rate-limited: a flood of thousands of
//!   refused requests and dropped connections writes a bounded number of
//!   lines, one of which reports how many similar lines were suppressed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arcly::http::{HlsServiceConfig, HttpConfig};
use arcly::StreamKey;
use arcly_tests::client::publish_and_play;
use arcly_tests::hls::{HlsServer, LivePublisher};
use arcly_tests::http_client;
use arcly_tests::logs::logs;
use arcly_tests::m3u8::MediaPlaylist;
use arcly_tests::synth::{self, SynthSpec};
use arcly_tests::Watchdog;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const HEALTHY: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The `suppressed=N` field of a log line.
fn suppressed(line: &str) -> u64 {
    line.split("suppressed=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The healthy side: an RTMP publisher of `live/good` (`secs` seconds of
/// synthetic 25 fps video), an RTMP player of it, and an LL-HLS reader of it
/// from [`HEALTHY`] doing blocking reloads until stopped.
struct Healthy {
    rt: tokio::runtime::Runtime,
    spec: SynthSpec,
    publisher: tokio::task::JoinHandle<Result<(), String>>,
    player: tokio::task::JoinHandle<Vec<u32>>,
    stop: Arc<AtomicBool>,
    reloads: Arc<AtomicU32>,
    reader: JoinHandle<Vec<String>>,
}

impl Healthy {
    fn start(server: &HlsServer, secs: u32) -> Healthy {
        let rt = runtime();
        let spec = SynthSpec {
            frames: secs * 25,
            ..SynthSpec::default()
        };
        let addr = server.rtmp;
        let url = server.rtmp_url("good");
        let (publisher, player) = publish_and_play(&rt, addr, url, spec);
        let stop = Arc::new(AtomicBool::new(false));
        let reloads = Arc::new(AtomicU32::new(0));
        let (http, s, n) = (server.http, stop.clone(), reloads.clone());
        let reader = std::thread::spawn(move || hls_reader(http, &s, &n));
        // The reader is reloading before any attack starts.
        let deadline = Instant::now() + Duration::from_secs(15);
        while reloads.load(Ordering::Relaxed) < 3 {
            assert!(Instant::now() < deadline, "the HLS reader never got going");
            std::thread::sleep(Duration::from_millis(50));
        }
        Healthy {
            rt,
            spec,
            publisher,
            player,
            stop,
            reloads,
            reader,
        }
    }

    /// Asserts that nothing healthy was disturbed.
    fn finish(self, test: &str) {
        self.stop.store(true, Ordering::Relaxed);
        let problems = self.reader.join().unwrap();
        let reloads = self.reloads.load(Ordering::Relaxed);
        let publish_result = self.rt.block_on(self.publisher).unwrap();
        let seqs = self.rt.block_on(self.player).unwrap();
        publish_result.unwrap_or_else(|e| panic!("{test}: the good publisher failed: {e}"));
        let first = seqs.first().copied();
        let contiguous = seqs.windows(2).all(|w| w[1] == w[0] + 1);
        eprintln!(
            "{test}: RTMP player got {} pictures ({first:?}..{:?}), contiguous {contiguous}; \
             HLS reader: {reloads} blocking reloads, problems: {problems:?}",
            seqs.len(),
            seqs.last()
        );
        assert!(
            problems.is_empty(),
            "{test}: the other client's LL-HLS reloads failed: {problems:#?}"
        );
        assert!(reloads >= 10, "{test}: only {reloads} reloads");
        let spec = self.spec;
        assert!(
            first.is_some_and(|f| f % spec.gop == 0)
                && contiguous
                && seqs.last() == Some(&(spec.frames - 1)),
            "{test}: the RTMP viewer lost frames: {} pictures from {first:?} to {:?}",
            seqs.len(),
            seqs.last()
        );
    }
}

/// An LL-HLS client of `live/good` from [`HEALTHY`]: blocking reloads for
/// the next part until `stop`; returns what went wrong (status other than
/// 200, an answer later than 3 s, an I/O error).
fn hls_reader(http: SocketAddr, stop: &AtomicBool, reloads: &AtomicU32) -> Vec<String> {
    let get = |target: &str| {
        http_client::request_from(HEALTHY, http, "GET", target, Duration::from_secs(12))
    };
    // First playlist (waits for the muxer's first segment).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut pl = loop {
        if let Ok(r) = get("/live/good/stream.m3u8") {
            if r.status == 200 {
                if let Ok(p) = MediaPlaylist::parse(&r.text()) {
                    if p.last_part().is_some() {
                        break p;
                    }
                }
            }
        }
        if Instant::now() > deadline {
            return vec!["no first playlist within 15 s".into()];
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut problems = Vec::new();
    while !stop.load(Ordering::Relaxed) && !pl.ended {
        let Some((msn, part)) = pl.last_part() else {
            problems.push("playlist without parts".to_string());
            break;
        };
        let target = format!(
            "/live/good/stream.m3u8?_HLS_msn={msn}&_HLS_part={}",
            part + 1
        );
        match get(&target) {
            Ok(r) if r.status == 200 => {
                if r.elapsed > Duration::from_secs(3) {
                    problems.push(format!("{target}: answered after {:?}", r.elapsed));
                }
                match MediaPlaylist::parse(&r.text()) {
                    Ok(p) => pl = p,
                    Err(e) => problems.push(format!("{target}: {e}")),
                }
                reloads.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => {
                problems.push(format!("{target}: {} {}", r.status, r.text().trim()));
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => problems.push(format!("{target}: {e}")),
        }
        if problems.len() > 20 {
            break;
        }
    }
    problems
}

/// Reads one HTTP/1.1 response (head and `Content-Length` body) from a
/// keep-alive connection; returns its status.
async fn read_response(sock: &mut tokio::net::TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head.get(9..12)?.parse().ok()?;
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = sock.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(status);
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn parked_reloads_of_one_client_leave_the_pool_to_others() {
    let test = "http_hostile/parked";
    let _wd = Watchdog::new(test, Duration::from_secs(90));
    logs();
    // The reported attack scaled down 10x (4 200 parked against a pool of
    // 4 096): 420 parked against a pool of 400, 50 per client.
    const POOL: usize = 400;
    const PER_CLIENT: usize = 50;
    const ATTACK: usize = 420;
    let server = HlsServer::start_with(
        HttpConfig::default().with_hls(
            HlsServiceConfig::default()
                .with_max_blocked_requests(POOL)
                .with_max_blocked_per_client(PER_CLIENT),
        ),
    );
    // A stream that stalls after its first segment: reloads for its next
    // part park for three target durations, then 503, and park again.
    let stall = LivePublisher::start(
        &server.engine,
        "stall",
        SynthSpec {
            frames: 1_000,
            ..SynthSpec::default()
        },
    );
    let healthy = Healthy::start(&server, 16);
    let next = loop {
        let r = server.get("/live/stall/stream.m3u8", Duration::from_secs(12));
        if let Ok(p) = r.map(|r| MediaPlaylist::parse(&r.text())) {
            if let Some(m) = p.ok().and_then(|p| p.last_msn()) {
                break m + 1;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    stall.pause();

    let rt = runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU32::new(0));
    let http = server.http;
    let mut tasks = Vec::new();
    for _ in 0..ATTACK {
        let (stop, refused) = (stop.clone(), refused.clone());
        tasks.push(rt.spawn(async move {
            let Ok(mut sock) = tokio::net::TcpStream::connect(http).await else {
                return;
            };
            let req =
                format!("GET /live/stall/stream.m3u8?_HLS_msn={next} HTTP/1.1\r\nHost: x\r\n\r\n");
            while !stop.load(Ordering::Relaxed) {
                if sock.write_all(req.as_bytes()).await.is_err() {
                    return;
                }
                match read_response(&mut sock).await {
                    Some(503) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Some(_) => {}
                    None => return,
                }
            }
        }));
    }
    // 11 s: past one 10 s log window, so a line reports what it suppressed.
    let attack_end = Instant::now() + Duration::from_secs(11);
    let mut max_parked = 0;
    while Instant::now() < attack_end {
        max_parked = max_parked.max(server.router.hls().unwrap().blocked_requests_from(ATTACKER));
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let refused = refused.load(Ordering::Relaxed);
    eprintln!("{test}: attacker parked at most {max_parked}, refused {refused} times");
    healthy.finish(test);
    rt.shutdown_timeout(Duration::from_secs(1));

    assert!(
        max_parked <= PER_CLIENT,
        "{test}: one client parked {max_parked} > {PER_CLIENT}"
    );
    assert!(refused > 100, "{test}: the flood was not refused");
    let lines = logs().lines_with(&["HTTP request refused", "from this client"]);
    eprintln!("{test}: {} log lines, e.g. {:?}", lines.len(), lines.last());
    // 10 lines per 10 s window: two windows, a third at most.
    assert!(
        (1..=30).contains(&lines.len()),
        "{test}: {refused} refusals wrote {} log lines (want 1..=30)",
        lines.len()
    );
    assert!(
        lines.iter().any(|l| suppressed(l) > 0),
        "{test}: no line says how many similar lines were suppressed"
    );
    assert!(
        lines.iter().all(|l| l.contains("client=127.0.0.1:")),
        "{test}: the refusal lines do not name the client: {lines:?}"
    );
}

#[test]
fn streams_without_media_take_no_muxer() {
    let test = "http_hostile/no_media";
    let _wd = Watchdog::new(test, Duration::from_secs(90));
    logs();
    let server = HlsServer::start();
    let healthy = Healthy::start(&server, 12);
    let rt = runtime();
    // 255 streams published that never send a frame.
    let silent: Vec<_> = (0..255)
        .map(|i| {
            let key = StreamKey::new("live", &format!("empty{i}")).unwrap();
            server.engine.publish(key).unwrap()
        })
        .collect();
    let http = server.http;
    let ask = |names: Vec<String>| {
        let tasks: Vec<_> = names
            .into_iter()
            .map(|name| {
                rt.spawn(async move {
                    let mut sock = tokio::net::TcpStream::connect(http).await.ok()?;
                    let req = format!("GET /live/{name}/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n");
                    sock.write_all(req.as_bytes()).await.ok()?;
                    // A parked request is left parked (the status is None).
                    tokio::time::timeout(Duration::from_millis(1500), read_response(&mut sock))
                        .await
                        .ok()
                        .flatten()
                })
            })
            .collect();
        tasks
            .into_iter()
            .map(|t| rt.block_on(t).unwrap())
            .collect::<Vec<_>>()
    };
    let answers = ask((0..255).map(|i| format!("empty{i}")).collect());
    let muxed = server.router.hls().unwrap().streams();
    eprintln!(
        "{test}: 255 requests for streams without media: {} answered, {} muxed streams",
        answers.iter().filter(|a| a.is_some()).count(),
        muxed.len()
    );
    assert!(
        muxed.len() <= 1,
        "{test}: streams without media took muxers: {muxed:?}"
    );
    // A new stream is served to another client at once.
    let fresh = LivePublisher::start(&server.engine, "fresh", SynthSpec::default());
    let r = (0..100)
        .find_map(|_| {
            let r = http_client::request_from(
                HEALTHY,
                http,
                "GET",
                "/live/fresh/index.m3u8",
                Duration::from_secs(12),
            )
            .ok()?;
            if r.status != 200 {
                eprintln!("{test}: fresh stream: {} {}", r.status, r.text().trim());
                std::thread::sleep(Duration::from_millis(100));
                return None;
            }
            Some(r)
        })
        .expect("the fresh stream was never served");
    assert_eq!(r.status, 200);

    // Streams with media: one client creates at most its share of muxers.
    let per_client = HlsServiceConfig::default().max_streams_per_client;
    let mut with_media = Vec::new();
    for i in 0..per_client + 8 {
        let key = StreamKey::new("live", &format!("one{i}")).unwrap();
        let mut p = server.engine.publish(key).unwrap();
        p.send(synth::video_config());
        with_media.push(p);
    }
    let answers = ask((0..per_client + 8).map(|i| format!("one{i}")).collect());
    let refused = answers.iter().filter(|a| **a == Some(503)).count();
    let from_attacker = server.router.hls().unwrap().streams_from(ATTACKER);
    eprintln!(
        "{test}: {} streams asked: {refused} refused, {from_attacker} muxed for the client",
        per_client + 8
    );
    assert_eq!(
        from_attacker, per_client,
        "{test}: muxers created by one client"
    );
    assert_eq!(
        refused, 8,
        "{test}: requests past the client's share: {answers:?}"
    );
    let lines = logs().lines_with(&["HTTP request refused", "started by this client"]);
    assert!(
        !lines.is_empty(),
        "{test}: the refused muxers were not logged"
    );
    healthy.finish(test);
    drop((silent, with_media, fresh));
}

#[test]
fn floods_of_bad_requests_and_connections_log_bounded_lines() {
    let test = "http_hostile/log_flood";
    let _wd = Watchdog::new(test, Duration::from_secs(90));
    logs();
    let server = HlsServer::start();
    let rt = runtime();
    let http = server.http;
    // One silent connection: dropped at the 10 s header read timeout.
    let silent = rt.block_on(tokio::net::TcpStream::connect(http)).unwrap();
    let silent_peer = silent.local_addr().unwrap();
    let started = Instant::now();
    // 600 malformed requests, 600 request heads over 16 KiB, 600
    // traversal attempts (400 from the router).
    let flood = |payload: Vec<u8>| {
        let payload = Arc::new(payload);
        let tasks: Vec<_> = (0..600)
            .map(|_| {
                let payload = payload.clone();
                rt.spawn(async move {
                    let mut sock = tokio::net::TcpStream::connect(http).await.ok()?;
                    let _ = sock.write_all(&payload).await;
                    tokio::time::timeout(Duration::from_secs(3), read_response(&mut sock))
                        .await
                        .ok()
                        .flatten()
                })
            })
            .collect();
        tasks
            .into_iter()
            .map(|t| rt.block_on(t).unwrap())
            .collect::<Vec<_>>()
    };
    let garbage = flood(b"\x16\x03\x01 NOT HTTP AT ALL\r\n\r\n".to_vec());
    let mut big = b"GET /live/x/index.m3u8 HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 20_000));
    big.extend_from_slice(b"\r\n\r\n");
    let too_large = flood(big);
    let traversal = flood(b"GET /live/%2e%2e/x/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
    let count = |v: &[Option<u16>], s: u16| v.iter().filter(|a| **a == Some(s)).count();
    eprintln!(
        "{test}: garbage 400: {}, large 431: {}, traversal 400: {}",
        count(&garbage, 400),
        count(&too_large, 431),
        count(&traversal, 400)
    );
    assert!(count(&garbage, 400) > 500 && count(&too_large, 431) > 500);
    assert_eq!(count(&traversal, 400), 600);
    // Wait for the silent connection's timeout.
    let until = started + Duration::from_secs(12);
    let silent_line = loop {
        let l = logs().lines_with(&["no request head", &silent_peer.to_string()]);
        if !l.is_empty() || Instant::now() > until {
            break l;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(silent);
    // One more of each after the 10 s window: it reports the suppressed.
    let _ = flood(b"\x16\x03\x01 NOT HTTP AT ALL\r\n\r\n".to_vec());
    let malformed = logs().lines_with(&["HTTP connection dropped", "malformed request"]);
    let large = logs().lines_with(&["HTTP connection dropped", "request head too large"]);
    let bad = logs().lines_with(&["HTTP request refused", "dot segment"]);
    eprintln!(
        "{test}: lines: silent {}, malformed {}, too large {}, traversal {}; e.g. {:?}",
        silent_line.len(),
        malformed.len(),
        large.len(),
        bad.len(),
        malformed.last()
    );
    assert_eq!(silent_line.len(), 1, "{test}: the silent connection's drop");
    for (what, lines) in [
        ("malformed", &malformed),
        ("too large", &large),
        ("traversal", &bad),
    ] {
        assert!(
            (1..=30).contains(&lines.len()),
            "{test}: 600+ {what} wrote {} lines",
            lines.len()
        );
    }
    assert!(
        malformed.iter().any(|l| suppressed(l) > 0),
        "{test}: no malformed line reports suppressed lines: {malformed:?}"
    );
    assert!(
        bad.iter().all(|l| l.contains("%2e%2e")),
        "{test}: the refused target is quoted: {bad:?}"
    );
}

/// Everything captured so far, as lines.
fn all_log_lines() -> Vec<String> {
    logs().lines_with(&[])
}

/// docs/security.md item 7 for RTMP: a flood of connections with garbage
/// handshakes writes a bounded number of lines (one per dropped peer,
/// rate-limited, the next line after the window reporting how many were
/// suppressed), while a healthy publisher and viewer lose no frame. Before,
/// each such connection wrote three lines (`rtmp protocol error, closing`,
/// `rtmp session closed`, `connection closed`): ~1 500 for this flood.
#[test]
fn rtmp_garbage_handshake_flood_logs_bounded_lines() {
    let test = "http_hostile/rtmp_log_flood";
    let _wd = Watchdog::new(test, Duration::from_secs(90));
    logs();
    let server = HlsServer::start();
    let healthy = Healthy::start(&server, 16);
    let rtmp = server.rtmp;
    let rt = runtime();
    let flood = |n: usize| {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                rt.spawn(async move {
                    let mut sock = tokio::net::TcpStream::connect(rtmp).await.ok()?;
                    // Not RTMP version 3: a protocol error at the first byte.
                    let _ = sock
                        .write_all(b"GET / HTTP/1.1\r\n\r\n\x1b[2Jgarbage")
                        .await;
                    let mut buf = [0u8; 4096];
                    // Closed by the server: EOF (or a reset) within 5 s.
                    tokio::time::timeout(Duration::from_secs(5), async {
                        loop {
                            match sock.read(&mut buf).await {
                                Ok(0) | Err(_) => return true,
                                Ok(_) => {}
                            }
                        }
                    })
                    .await
                    .ok()
                })
            })
            .collect();
        tasks
            .into_iter()
            .map(|t| rt.block_on(t).unwrap())
            .filter(|closed| *closed == Some(true))
            .count()
    };
    let before = all_log_lines().len();
    let started = Instant::now();
    let closed = flood(500);
    // Let the closes be logged.
    std::thread::sleep(Duration::from_millis(500));
    let flood_lines = all_log_lines().len() - before;
    eprintln!(
        "{test}: {closed} of 500 garbage connections closed by the server, {flood_lines} log lines"
    );
    assert!(
        closed > 450,
        "{test}: only {closed} garbage connections were closed"
    );
    assert!(
        flood_lines <= 40,
        "{test}: 500 garbage connections wrote {flood_lines} lines: {:#?}",
        &all_log_lines()[before..(before + 20).min(before + flood_lines)]
    );
    // One more after the 10 s window: its line reports the suppressed.
    let wait = (started + Duration::from_millis(10_500)).saturating_duration_since(Instant::now());
    std::thread::sleep(wait);
    assert_eq!(flood(1), 1);
    std::thread::sleep(Duration::from_millis(300));
    let closes = logs().lines_with(&["connection closed", "protocol error"]);
    eprintln!(
        "{test}: {} close lines, last {:?}",
        closes.len(),
        closes.last()
    );
    assert!(
        (1..=30).contains(&closes.len()),
        "{test}: {} close lines",
        closes.len()
    );
    assert!(
        closes.iter().any(|l| suppressed(l) > 400),
        "{test}: no close line reports the suppressed ones: {closes:?}"
    );
    assert!(
        closes
            .iter()
            .all(|l| l.contains("peer=127.0.0.1:") && !l.contains('\x1b')),
        "{test}: close lines name the peer and carry no raw control byte: {closes:?}"
    );
    healthy.finish(test);
}
