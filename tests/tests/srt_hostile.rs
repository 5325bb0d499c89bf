//! Hostile datagrams at a live SRT port: while ffmpeg publishes and ffprobe
//! plays over SRT, a flooder sends ~20 000 datagrams per second of garbage,
//! truncated headers, data for bogus socket ids, conclusions without a
//! cookie and induction requests from 8 sockets. The session must lose
//! nothing (every frame decoded, no errors), the inductions are answered
//! statelessly, and no bogus connection appears in the engine.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use arcly_tests::logs::logs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arcly::StreamKey;
use arcly_tests::srt::{self, Caller, Flood, Player, Publisher, SrtOptions, SrtTestServer};
use arcly_tests::Adapter;

/// Callers ask for 250 ms: the flood competes for the CPU with two encoders
/// and decoders on a shared CI machine; the point here is that hostile
/// datagrams change no state, not the capacity of a starved machine.
const LATENCY_MS: u32 = 250;

/// The two floods run one after the other: each is meant to be hostile to
/// one server, not to starve the other test's clients of the two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn flood(adapter: Adapter) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    logs();
    let test = format!("srt_hostile/{}", adapter.name());
    let options = SrtOptions::latency(LATENCY_MS);
    let tools = ["ffmpeg", "ffprobe"];
    let Some((_watchdog, server)) = SrtTestServer::for_test(&test, &tools, adapter, &options)
    else {
        return;
    };
    let flood = Flood::start(server.addr, 20_000, 0xF100D);
    // Watch the engine while the flood runs: no stream but live/cam, never
    // more than the one real viewer.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (engine, stop) = (server.engine.clone(), stop.clone());
        std::thread::spawn(move || {
            let key = StreamKey::new("live", "cam").unwrap();
            let (mut others, mut max_subs) = (Vec::new(), 0);
            while !stop.load(Ordering::Relaxed) {
                for k in engine.streams() {
                    if k != key && !others.contains(&k) {
                        others.push(k);
                    }
                }
                if let Some(s) = engine.stream_stats(&key) {
                    max_subs = max_subs.max(s.subscribers.load(Ordering::Relaxed));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (others, max_subs)
        })
    };
    let publish = Caller::publish("cam", LATENCY_MS).ffmpeg_url(server.addr);
    let read = Caller::read("cam", LATENCY_MS).ffmpeg_url(server.addr);
    let report = srt::run(
        &test,
        "cam",
        &Publisher::Ffmpeg(publish),
        &Player::Ffprobe(read),
        Some(&server.engine),
    );
    stop.store(true, Ordering::Relaxed);
    let (others, max_subs) = watcher.join().unwrap();
    assert!(
        others.is_empty(),
        "{test}: the flood created streams: {others:?}"
    );
    assert_eq!(max_subs, 1, "{test}: the flood added or lost viewers");
    let sent = flood.stats.sent.load(Ordering::Relaxed);
    let answered = flood.stats.answered.load(Ordering::Relaxed);
    drop(flood);
    eprintln!("{test}: flood sent {sent} datagrams, {answered} answered");
    assert!(
        sent > 100_000,
        "{test}: the flood sent only {sent} datagrams"
    );
    assert!(
        answered > 0,
        "{test}: no induction was answered during the flood"
    );
    report.assert_viewer_saw_everything();
}

#[test]
fn flood_on_tokio() {
    flood(Adapter::Tokio);
}

#[test]
fn flood_on_blocking() {
    flood(Adapter::Blocking);
}

/// Captured log lines of this test binary that contain `needle`. The
/// capture must be installed before any server starts, or the harness's own
/// subscriber (`init_logging`) wins and nothing is captured: every test of
/// this binary calls [`logs`] first.
fn log_lines(needle: &str) -> Vec<String> {
    logs().lines_with(&[needle])
}

fn bad_stream_id_callers(server: std::net::SocketAddr, n: usize) -> usize {
    use arcly::srt::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let origin = std::time::Instant::now();
    let now = || arcly::Instant::from_millis(origin.elapsed().as_millis() as u64);
    let mut ep = Endpoint::new(EndpointConfig::default().with_max_connections(n + 8));
    for _ in 0..n {
        ep.connect(now(), server, Some("#!::r=live/bad\x1b[2J,m=publish"), None)
            .unwrap();
    }
    let (mut refused, mut buf) = (0, [0u8; 2048]);
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while refused < n && std::time::Instant::now() < deadline {
        while let Some(t) = ep.poll_transmit() {
            let bytes: Vec<u8> = t.contents.iter().flat_map(|b| b.iter().copied()).collect();
            let _ = sock.send_to(&bytes, t.destination);
        }
        if let Ok((len, from)) = sock.recv_from(&mut buf) {
            ep.handle_datagram(now(), from, bytes::Bytes::copy_from_slice(&buf[..len]));
        }
        ep.handle_timeout(now());
        while let Some(ev) = ep.poll_event() {
            if matches!(ev, EndpointEvent::ConnectFailed { .. }) {
                refused += 1;
            }
        }
    }
    refused
}

/// docs/security.md item 7 for SRT: 500 handshakes with a bad stream id
/// (then one more after the 10 s window) write a bounded number of
/// `srt: connection refused` lines, the last reporting how many were
/// suppressed, while ffmpeg publishes and ffprobe plays without loss.
/// Before, every refusal wrote its line (a repeated conclusion is refused
/// again): 680 lines.
#[test]
fn bad_stream_id_flood_logs_bounded_lines() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let test = "srt_hostile/log_flood";
    logs();
    let options = SrtOptions::latency(LATENCY_MS);
    let Some((_watchdog, server)) =
        SrtTestServer::for_test(test, &["ffmpeg", "ffprobe"], Adapter::Tokio, &options)
    else {
        return;
    };
    let addr = server.addr;
    let flooder = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let first = bad_stream_id_callers(addr, 500);
        std::thread::sleep(
            (started + Duration::from_millis(10_500))
                .saturating_duration_since(std::time::Instant::now()),
        );
        first + bad_stream_id_callers(addr, 1)
    });
    let publish = Caller::publish("cam", LATENCY_MS).ffmpeg_url(server.addr);
    let read = Caller::read("cam", LATENCY_MS).ffmpeg_url(server.addr);
    let report = srt::run(
        test,
        "cam",
        &Publisher::Ffmpeg(publish),
        &Player::Ffprobe(read),
        Some(&server.engine),
    );
    let refused = flooder.join().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let lines = log_lines("srt: connection refused");
    eprintln!(
        "{test}: {refused} of 501 refused, {} lines, last {:?}",
        lines.len(),
        lines.last()
    );
    assert_eq!(refused, 501, "{test}: not every bad caller was refused");
    assert!(
        (1..=30).contains(&lines.len()),
        "{test}: 501 refusals wrote {} lines",
        lines.len()
    );
    assert!(
        lines.iter().any(|l| l
            .split("suppressed=")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 400)),
        "{test}: no line reports the suppressed refusals: {lines:?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains('\x1b')),
        "{test}: a raw ESC reached the log"
    );
    report.assert_viewer_saw_everything();
}
