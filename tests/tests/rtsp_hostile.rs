//! Hostile RTSP peers over real TCP while a healthy session runs: ffmpeg
//! publishes H.264 (B-frames) + AAC over RTSP/TCP and ffprobe plays it over
//! RTSP, and that viewer must decode every frame from its cached keyframe on
//! (the interop scenario's check). Beside it:
//! - garbage bytes (a TLS ClientHello), a header block that never ends,
//!   an interleaved frame for a channel no SETUP assigned: each connection
//!   is closed at once with a logged reason naming its address;
//! - a URL with ESC / CR in it, SETUP and DESCRIBE of a stream that does
//!   not exist: refused (400, 404) with a logged reason, the connection
//!   stays usable;
//! - 2 000 idle TCP connections (from 127.0.0.2 to 127.0.0.9, the soft
//!   `RLIMIT_NOFILE` raised to the hard one): all accepted and answered
//!   (a sample sends OPTIONS and gets 200), none disturbs the healthy pair;
//! - no peer text reaches the log raw (no ESC, no CR in any line).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arcly::rtsp::RtspSessionFactory;
use arcly::Engine;
use arcly_tests::http_client::connect_from;
use arcly_tests::logs::{capture, LogBuf};
use arcly_tests::rawrtmp::{Closed, Raw};
use arcly_tests::scenario::{self, Player, Publisher};
use arcly_tests::{Adapter, TestServer, Watchdog};

/// Idle connections held open together.
const IDLE: usize = 2000;
/// A hostile connection must be closed well before the 60 s session timeout.
const CLOSE_WITHIN: Duration = Duration::from_secs(3);

fn logs() -> &'static LogBuf {
    capture("info,arcly::session::serve=debug")
}

/// Raises the soft descriptor limit to the hard one (the idle connections
/// and the server's ends of them are all in this process).
fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Sends `req` and reads one response head (to the blank line).
fn exchange(s: &mut TcpStream, req: &str) -> String {
    s.write_all(req.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The log lines naming `peer` that say why it was refused or dropped
/// (waits up to 1 s for the adapter's line).
fn reason(peer: SocketAddr) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let lines: Vec<String> = logs()
            .lines_with(&[&peer.to_string()])
            .into_iter()
            .filter(|l| l.contains("dropped") || l.contains("refused") || l.contains("closed"))
            .collect();
        if !lines.is_empty() || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hostile_rtsp_peers_are_dropped_and_a_healthy_session_loses_nothing() {
    let test = "rtsp_hostile";
    if !arcly_tests::require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(90));
    logs();
    let limit = raise_nofile();
    assert!(
        limit >= 2 * IDLE as u64 + 200,
        "{test}: the descriptor limit {limit} is too low for {IDLE} idle connections (both ends in this process)"
    );
    let engine = Engine::with_defaults();
    let server = TestServer::start_factory(
        Adapter::Tokio,
        engine.clone(),
        Arc::new(RtspSessionFactory::allow_all(engine.clone())),
    );
    let addr = server.addr;
    let url = format!("rtsp://{addr}/live/cam");
    let healthy = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            scenario::run_urls(
                "rtsp_hostile/healthy",
                &url,
                &url,
                "cam",
                Publisher::FfmpegRtsp,
                Player::Ffprobe,
                Some(&engine),
            )
        })
    };
    // Attacks start once the healthy stream is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    while engine
        .stream_stats(&arcly::StreamKey::new("live", "cam").unwrap())
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "{test}: the healthy publisher never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut failures = Vec::new();
    let mut endless = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n".to_vec();
    while endless.len() < 20 << 10 {
        endless.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let drops: Vec<(&str, Vec<u8>)> = vec![
        (
            "garbage (TLS ClientHello)",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage".to_vec(),
        ),
        ("a header block that never ends", endless),
        (
            "interleaved frame on a channel never set up",
            vec![b'$', 7, 0, 4, 0x80, 96, 0, 1],
        ),
    ];
    for (name, bytes) in drops {
        let mut raw = Raw::connect(addr).unwrap();
        let peer = raw.local_addr();
        let started = Instant::now();
        let _ = raw.send(&bytes);
        let closed = raw.wait_closed(CLOSE_WITHIN);
        let why = reason(peer);
        eprintln!(
            "{test}: {name}: {closed:?} after {:?}\n    log: {}",
            started.elapsed(),
            why.last().map(String::as_str).unwrap_or("<none>")
        );
        if matches!(closed, Closed::StillOpen { .. }) {
            failures.push(format!("{name}: still open after {CLOSE_WITHIN:?}"));
        }
        if !why.iter().any(|l| l.contains("rtsp connection dropped")) {
            failures.push(format!(
                "{name}: no 'rtsp connection dropped' line for {peer}"
            ));
        }
    }
    // Refused requests: answered, logged with the reason, connection usable.
    let mut s = TcpStream::connect(addr).unwrap();
    let peer = s.local_addr().unwrap();
    let refusals = [
        ("DESCRIBE rtsp://h/live/ca\x1b[31mm\rX RTSP/1.0\r\nCSeq: 1\r\n\r\n", "400"),
        ("DESCRIBE rtsp://h/live/nope RTSP/1.0\r\nCSeq: 2\r\n\r\n", "404"),
        (
            "SETUP rtsp://h/live/nope/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;interleaved=0-1\r\n\r\n",
            "404",
        ),
        ("OPTIONS * RTSP/1.0\r\nCSeq: 4\r\n\r\n", "200"),
    ];
    for (req, status) in refusals {
        let head = exchange(&mut s, req);
        if !head.starts_with(&format!("RTSP/1.0 {status}")) {
            failures.push(format!("{req:?}: answered {head:?}, not {status}"));
        }
    }
    let why = reason(peer);
    eprintln!("{test}: refusals logged:\n    {}", why.join("\n    "));
    if why
        .iter()
        .filter(|l| l.contains("rtsp request refused"))
        .count()
        < 3
    {
        failures.push(format!("refusals of {peer} not logged: {why:?}"));
    }
    drop(s);

    // 2 000 idle connections from 8 loopback addresses.
    let started = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8));
        match connect_from(src, addr, Duration::from_secs(5)) {
            Ok(c) => idle.push(c),
            Err(e) => {
                failures.push(format!("idle connection {i} failed: {e}"));
                break;
            }
        }
    }
    eprintln!(
        "{test}: {} idle connections in {:?}",
        idle.len(),
        started.elapsed()
    );
    std::thread::sleep(Duration::from_secs(1));
    // All accepted and served: a sample asks OPTIONS and gets 200.
    for (i, c) in idle.iter_mut().enumerate().step_by(97) {
        let head = exchange(c, "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n");
        if !head.starts_with("RTSP/1.0 200") {
            failures.push(format!("idle connection {i}: OPTIONS answered {head:?}"));
        }
    }
    // None was closed by the server.
    let mut closed = 0;
    for c in &mut idle {
        c.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1024];
        if matches!(c.read(&mut b), Ok(0)) {
            closed += 1;
        }
    }
    if closed > 0 {
        failures.push(format!(
            "{closed} of {IDLE} idle connections closed by the server"
        ));
    }

    let report = healthy.join().unwrap();
    drop(idle);
    report.assert_viewer_saw_everything();
    for line in logs().text().lines() {
        if line.contains(['\r', '\x1b']) {
            failures.push(format!("raw CR/ESC in a log line: {line:?}"));
        }
    }
    assert!(failures.is_empty(), "{test}:\n{}", failures.join("\n"));
}
