//! The SRT endpoint against real libsrt peers over a real UDP socket
//! (draft-sharabayko-srt-01 §4.3.1, §6): `srt-live-transmit` and ffmpeg as
//! callers into our listener and as listeners for our caller, with and
//! without a passphrase, and wrong passphrases refused at handshake.
//!
//! Each test drives the [`Endpoint`] from a small blocking loop with a
//! watchdog. A missing tool fails the test under `CI=true` and skips it
//! otherwise.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use arcly::srt::caller::ConnectError;
use arcly::srt::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use arcly::srt::handshake::RejectReason;
use arcly::srt::packet::SocketId;
use arcly::time::Clock;
use bytes::Bytes;
use common::in_ci;
use common::srt::{connect_failure, connected_id, first_request};

const PASS: &str = "arcly-interop-secret";

/// (listener, caller) passphrases a handshake must refuse: a wrong one, none
/// on the caller, none on the listener.
const MISMATCHES: [(Option<&str>, Option<&str>); 3] = [
    (Some(PASS), Some("not-the-passphrase")),
    (Some(PASS), None),
    (None, Some(PASS)),
];

/// The libsrt sample application most tests run against.
const SLT: &[&str] = &["srt-live-transmit"];

/// Whether every tool is on PATH; under CI a missing one fails the test.
fn require(test: &str, tools: &[&str]) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&&str> = tools
        .iter()
        .filter(|t| !std::env::split_paths(&path).any(|d| d.join(t).is_file()))
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(!in_ci(), "{test}: missing {missing:?} under CI=true");
    eprintln!("SKIPPED {test}: missing {missing:?}");
    false
}

/// A child process whose stdout and stderr are drained by threads (a
/// full pipe would stall it); killed when dropped (the watchdog's
/// backstop).
struct Proc {
    child: Child,
    out: Option<std::thread::JoinHandle<Vec<u8>>>,
    err: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> Option<std::thread::JoinHandle<Vec<u8>>> {
    let mut r = r?;
    Some(std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    }))
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd.spawn().expect("spawn");
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        Proc { child, out, err }
    }

    /// Waits for exit up to `d`, then kills; returns (stdout, stderr).
    fn finish(mut self, d: Duration) -> (Vec<u8>, String) {
        let end = std::time::Instant::now() + d;
        while std::time::Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let out = self
            .out
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        let err = self
            .err
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default();
        (out, String::from_utf8_lossy(&err).into_owned())
    }
}

/// Our endpoint on a real socket.
struct Host {
    ep: Endpoint,
    sock: UdpSocket,
    clock: Clock,
    events: Vec<EndpointEvent>,
    accept: bool,
    /// Payload bytes received so far (cheap to poll in a loop).
    rx_bytes: usize,
}

impl Host {
    fn new(cfg: EndpointConfig) -> Host {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        Host {
            ep: Endpoint::new(cfg),
            sock,
            clock: Clock::new(std::time::Instant::now()),
            events: Vec::new(),
            accept: true,
            rx_bytes: 0,
        }
    }

    fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    fn now(&self) -> arcly::Instant {
        self.clock.instant(std::time::Instant::now())
    }

    fn flush(&mut self) {
        let now = self.now();
        while let Some(ev) = self.ep.poll_event() {
            if let EndpointEvent::Request(r) = &ev {
                if self.accept {
                    self.ep.accept(now, r.token).unwrap();
                } else {
                    self.ep.reject(r.token, RejectReason::FORBIDDEN);
                }
            }
            if let EndpointEvent::Data { payload, .. } = &ev {
                self.rx_bytes += payload.len();
            }
            self.events.push(ev);
        }
        while let Some(t) = self.ep.poll_transmit() {
            let _ = self.sock.send_to(&t.to_bytes(), t.destination);
        }
    }

    /// Runs the endpoint until `done` or `limit` (the watchdog).
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Host) -> bool) -> bool {
        let end = std::time::Instant::now() + limit;
        let mut buf = [0u8; 1500];
        loop {
            self.flush();
            if done(self) {
                return true;
            }
            let now_std = std::time::Instant::now();
            if now_std >= end {
                return false;
            }
            let wait = self
                .ep
                .poll_timeout()
                .map(|t| self.clock.to_std(t).saturating_duration_since(now_std))
                .unwrap_or(Duration::from_millis(5))
                .clamp(Duration::from_micros(200), Duration::from_millis(5));
            self.sock.set_read_timeout(Some(wait)).unwrap();
            if let Ok((n, src)) = self.sock.recv_from(&mut buf) {
                let now = self.now();
                self.ep
                    .handle_datagram(now, src, Bytes::copy_from_slice(&buf[..n]));
            }
            let now = self.now();
            if self.ep.poll_timeout().is_some_and(|t| t <= now) {
                self.ep.handle_timeout(now);
            }
        }
    }

    fn connected(&self) -> Option<SocketId> {
        connected_id(&self.events)
    }

    fn failure(&self) -> Option<ConnectError> {
        connect_failure(&self.events)
    }

    fn received(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.events {
            if let EndpointEvent::Data { payload, .. } = e {
                out.extend_from_slice(payload);
            }
        }
        out
    }

    fn closed(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, EndpointEvent::Closed { .. }))
    }
}

fn config(passphrase: Option<&str>) -> EndpointConfig {
    EndpointConfig::default()
        .with_cookie_secret([0x5a; 32])
        .with_rng_seed(7)
        // Generous, so a loaded machine does not turn scheduling delays
        // into too-late drops in these byte-exact comparisons.
        .with_latency_ms(400)
        .with_passphrase(passphrase.map(str::to_owned))
}

/// Distinct, checkable content: 1316-byte chunks whose bytes depend on
/// their position.
fn content(chunks: usize) -> Vec<u8> {
    (0..chunks * 1316)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1])
        .collect()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn slt_uri(port: u16, listener: bool, pass: Option<&str>, extra: &str) -> String {
    let mut q = vec![];
    if listener {
        q.push("mode=listener".to_owned());
    }
    if let Some(p) = pass {
        q.push(format!("passphrase={p}"));
        q.push("pbkeylen=16".to_owned());
    }
    if !extra.is_empty() {
        q.push(extra.to_owned());
    }
    let host = if listener { "" } else { "127.0.0.1" };
    format!("srt://{host}:{port}?{}", q.join("&"))
}

/// `ffmpeg -re` sending 2 s of a 160x120 H.264 test pattern as MPEG-TS to
/// the SRT `url`.
fn ffmpeg_testsrc_ts(url: &str) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-loglevel", "info", "-re", "-f", "lavfi"])
        .args(["-i", "testsrc=size=160x120:rate=25", "-t", "2"])
        .args(["-c:v", "libx264", "-g", "25", "-preset", "ultrafast"])
        .args(["-f", "mpegts", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Writes `data` to `stdin` from a thread, paced at 10 packets of 1316
/// bytes every 10 ms, then waits `tail` before dropping `stdin`.
fn paced_writer(
    mut stdin: std::process::ChildStdin,
    data: Vec<u8>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tail: Duration,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for c in data.chunks(1316 * 10) {
            if stdin.write_all(c).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Keep stdin open until the receiver has everything (or `tail`
        // passed): on EOF libsrt closes and drops what it has not sent yet,
        // which on a loaded machine can be the last packets.
        let until = std::time::Instant::now() + tail;
        while !done.load(std::sync::atomic::Ordering::Acquire) && std::time::Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// srt-live-transmit reads stdin and calls our listener.
fn slt_publishes_to_us(pass_listener: Option<&str>, pass_caller: Option<&str>) {
    slt_publishes_to_us_with(pass_listener, pass_caller, "");
}

fn slt_publishes_to_us_with(
    pass_listener: Option<&str>,
    pass_caller: Option<&str>,
    extra: &str,
) -> Host {
    let mut host = Host::new(config(pass_listener));
    let data = content(300);
    let mut child = Proc::spawn(
        Command::new("srt-live-transmit")
            .args(["-v", "-chunk", "1316"])
            .arg("file://con")
            .arg(slt_uri(
                host.port(),
                false,
                pass_caller,
                &format!("streamid=publish:live/cam{extra}"),
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let stdin = child.child.stdin.take().unwrap();
    let ok = host.run_until(Duration::from_secs(10), |h| {
        h.connected().is_some() || h.ep.stats().rejections > 0
    });
    assert!(ok, "handshake finished: {:?}", host.events);
    let expect_ok = pass_listener == pass_caller;
    if !expect_ok {
        drop(stdin);
        let (out, err) = child.finish(Duration::from_secs(3));
        let log = format!("{}{err}", String::from_utf8_lossy(&out));
        assert!(host.connected().is_none());
        eprintln!("srt-live-transmit refused: {}", log.trim());
        // libsrt's words for SRT_REJ_BADSECRET and SRT_REJ_UNSECURE.
        let want = if pass_listener.is_some() && pass_caller.is_some() {
            "Incorrect passphrase"
        } else {
            "Password required or unexpected"
        };
        assert!(
            log.contains("REJECT") && log.contains(want),
            "srt-live-transmit reports the rejection ({want}): {log}"
        );
        return host;
    }
    let req = first_request(&host.events).unwrap();
    assert_eq!(req.raw_stream_id, "publish:live/cam");
    assert_eq!(req.encrypted, pass_listener.is_some());
    // Dropping stdin ends srt-live-transmit's input; libsrt drops what it
    // has not sent yet when it closes (live mode, no linger), so give it
    // time to send the tail first.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = paced_writer(stdin, data.clone(), done.clone(), Duration::from_secs(12));
    let n = data.len();
    let ok = host.run_until(Duration::from_secs(15), |h| h.rx_bytes >= n || h.closed());
    done.store(true, std::sync::atomic::Ordering::Release);
    writer.join().unwrap();
    let got = host.received();
    let same = got.iter().zip(&data).take_while(|(a, b)| a == b).count();
    assert!(
        ok,
        "received {} of {n} bytes, first {same} equal; stats {:?} {:?}",
        got.len(),
        host.ep.stats(),
        host.connected().and_then(|id| host.ep.connection_stats(id))
    );
    assert_eq!(got.len(), n);
    assert!(got == data, "the decrypted stream equals what was sent");
    let id = host.connected().unwrap();
    assert_eq!(host.ep.is_encrypted(id), pass_listener.is_some());
    assert_eq!(host.ep.stats().undecryptable, 0);
    drop(child);
    host
}

#[test]
fn srt_live_transmit_caller_publishes_clear() {
    if !require("srt_live_transmit_caller_publishes_clear", SLT) {
        return;
    }
    slt_publishes_to_us(None, None);
}

#[test]
fn srt_live_transmit_caller_publishes_encrypted() {
    if !require("srt_live_transmit_caller_publishes_encrypted", SLT) {
        return;
    }
    slt_publishes_to_us(Some(PASS), Some(PASS));
}

#[test]
fn srt_live_transmit_caller_rotating_keys_is_decrypted() {
    if !require("srt_live_transmit_caller_rotating_keys", SLT) {
        return;
    }
    // A key refresh every 100 packets, announced 30 packets ahead: the
    // sender switches even → odd → even while streaming 300 packets.
    let host = slt_publishes_to_us_with(
        Some(PASS),
        Some(PASS),
        "&kmrefreshrate=100&kmpreannounce=30",
    );
    assert!(host.ep.stats().key_refreshes >= 2, "{:?}", host.ep.stats());
}

#[test]
fn srt_live_transmit_caller_adopts_our_advertised_key_length() {
    if !require("srt_live_transmit_adopts_key_length", SLT) {
        return;
    }
    // No pbkeylen on the caller: it takes the 256-bit length our induction
    // answer advertises.
    let mut host =
        Host::new(config(Some(PASS)).with_key_length(arcly::srt::crypto::KeyLength::Aes256));
    let child = Proc::spawn(
        Command::new("srt-live-transmit")
            .arg("file://con")
            .arg(format!(
                "srt://127.0.0.1:{}?passphrase={PASS}&streamid=publish:k",
                host.port()
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    assert!(host.run_until(Duration::from_secs(10), |h| h.connected().is_some()));
    let req = first_request(&host.events).unwrap();
    assert_eq!(req.key_length, Some(arcly::srt::crypto::KeyLength::Aes256));
    drop(child);
}

#[test]
fn srt_live_transmit_caller_with_wrong_or_no_passphrase_is_refused() {
    if !require("srt_live_transmit_wrong_passphrase", SLT) {
        return;
    }
    for (listener, caller) in MISMATCHES {
        slt_publishes_to_us(listener, caller);
    }
}

/// Our caller publishes into a srt-live-transmit listener that writes to
/// stdout.
fn we_publish_to_slt(pass_listener: Option<&str>, pass_caller: Option<&str>) {
    we_publish_to_slt_after(pass_listener, pass_caller, Duration::ZERO);
}

/// As [`we_publish_to_slt`]; with a `delay`, our caller starts first and
/// the listener only appears `delay` later (unanswered inductions).
fn we_publish_to_slt_after(
    pass_listener: Option<&str>,
    pass_caller: Option<&str>,
    delay: Duration,
) {
    let port = free_udp_port();
    let spawn = || {
        Proc::spawn(
            Command::new("srt-live-transmit")
                .arg(slt_uri(port, true, pass_listener, ""))
                .arg("file://con")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
    };
    let mut early = None;
    if delay.is_zero() {
        early = Some(spawn());
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut host = Host::new(config(None));
    let remote: SocketAddr = ([127, 0, 0, 1], port).into();
    let now = host.now();
    let id = host
        .ep
        .connect(now, remote, Some("publish:live/cam"), pass_caller)
        .unwrap();
    if !delay.is_zero() {
        host.run_until(delay, |_| false);
    }
    let child = early.unwrap_or_else(spawn);
    let ok = host.run_until(Duration::from_secs(5), |h| {
        h.connected().is_some() || h.failure().is_some()
    });
    assert!(ok, "connect finished");
    if pass_listener != pass_caller {
        let f = host.failure();
        let want = if pass_listener.is_some() && pass_caller.is_some() {
            RejectReason::BadSecret
        } else {
            RejectReason::Unsecure
        };
        assert_eq!(f, Some(ConnectError::Rejected(want)), "{:?}", host.events);
        drop(child);
        return;
    }
    assert_eq!(host.connected(), Some(id));
    let data = content(200);
    for c in data.chunks(1316) {
        let now = host.now();
        host.ep.send(now, id, Bytes::copy_from_slice(c)).unwrap();
        let until = std::time::Instant::now() + Duration::from_millis(1);
        host.run_until(Duration::from_millis(2), |_| {
            std::time::Instant::now() >= until
        });
    }
    // Let retransmissions and TSBPD finish, then close.
    host.run_until(Duration::from_millis(800), |_| false);
    let now = host.now();
    host.ep.close(now, id);
    host.flush();
    let (out, err) = child.finish(Duration::from_millis(1500));
    assert_eq!(
        out.len(),
        data.len(),
        "srt-live-transmit wrote everything: {err}"
    );
    assert!(out == data, "srt-live-transmit decrypted what we sent");
}

#[test]
fn our_caller_publishes_to_srt_live_transmit() {
    if !require("our_caller_publishes_to_srt_live_transmit", SLT) {
        return;
    }
    we_publish_to_slt(None, None);
    we_publish_to_slt(Some(PASS), Some(PASS));
}

#[test]
fn our_caller_publishes_after_a_slow_handshake() {
    if !require("our_caller_slow_handshake", SLT) {
        return;
    }
    // The listener appears 1 s after our first induction: the repeated
    // inductions (every 250 ms) reach it and the stream goes through. (The
    // data timestamps continuing the handshake's time base, which libsrt
    // uses as our start time, is asserted in srt_caller.rs: libsrt plays
    // late packets at once instead of dropping them, so it is not visible
    // here.)
    we_publish_to_slt_after(Some(PASS), Some(PASS), Duration::from_millis(1000));
}

#[test]
fn our_caller_is_refused_by_srt_live_transmit_on_passphrase_mismatch() {
    if !require("our_caller_refused", SLT) {
        return;
    }
    for (listener, caller) in MISMATCHES {
        we_publish_to_slt(listener, caller);
    }
}

#[test]
fn our_caller_reads_from_srt_live_transmit_listener() {
    if !require("our_caller_reads", SLT) {
        return;
    }
    let port = free_udp_port();
    let mut child = Proc::spawn(
        Command::new("srt-live-transmit")
            .args(["-chunk", "1316"])
            .arg("file://con")
            .arg(slt_uri(port, true, Some(PASS), ""))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let stdin = child.child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut host = Host::new(config(None));
    let remote: SocketAddr = ([127, 0, 0, 1], port).into();
    let now = host.now();
    let id = host
        .ep
        .connect(now, remote, Some("read:live/cam"), Some(PASS))
        .unwrap();
    assert!(host.run_until(Duration::from_secs(5), |h| h.connected().is_some()));
    assert!(host.ep.is_encrypted(id));
    let data = content(200);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = paced_writer(stdin, data.clone(), done.clone(), Duration::from_secs(10));
    let n = data.len();
    let ok = host.run_until(Duration::from_secs(10), |h| h.rx_bytes >= n);
    done.store(true, std::sync::atomic::Ordering::Release);
    writer.join().unwrap();
    let got = host.received();
    assert!(ok, "received {} of {n}", got.len());
    assert!(got == data);
    drop(child);
}

/// ffmpeg publishes H.264 in MPEG-TS with a passphrase and a stream id.
fn ffmpeg_publishes(pass_listener: Option<&str>, pass_caller: Option<&str>) -> (Host, String) {
    let mut host = Host::new(config(pass_listener));
    let mut url = format!(
        "srt://127.0.0.1:{}?streamid=publish:live/cam&latency=120000",
        host.port()
    );
    if let Some(p) = pass_caller {
        url.push_str(&format!("&passphrase={p}&pbkeylen=16"));
    }
    let child = Proc::spawn(&mut ffmpeg_testsrc_ts(&url));
    host.run_until(Duration::from_secs(15), |h| {
        h.closed() || h.ep.stats().rejections > 0
    });
    let (_, err) = child.finish(Duration::from_secs(5));
    (host, err)
}

#[test]
fn ffmpeg_publishes_encrypted_ts() {
    if !require("ffmpeg_publishes_encrypted_ts", &["ffmpeg"]) {
        return;
    }
    let (host, err) = ffmpeg_publishes(Some(PASS), Some(PASS));
    let id = host.connected().expect("ffmpeg connected");
    assert!(host.ep.is_encrypted(id) || host.closed());
    let ts = host.received();
    assert!(
        ts.len() > 188 * 100,
        "got {} bytes; ffmpeg: {err}",
        ts.len()
    );
    assert_eq!(ts.len() % 188, 0);
    assert!(
        ts.chunks(188).all(|p| p[0] == 0x47),
        "every decrypted TS packet starts with the sync byte"
    );
    assert_eq!(host.ep.stats().undecryptable, 0);
}

#[test]
fn ffmpeg_with_wrong_passphrase_is_refused() {
    if !require("ffmpeg_with_wrong_passphrase_is_refused", &["ffmpeg"]) {
        return;
    }
    let (host, err) = ffmpeg_publishes(Some(PASS), Some("a-wrong-passphrase"));
    assert!(host.connected().is_none());
    assert!(host.received().is_empty());
    eprintln!("ffmpeg refused: {}", err.trim());
    assert!(
        err.contains("REJECT") && err.contains("Incorrect passphrase"),
        "ffmpeg's log names the rejection: {err}"
    );
}

#[test]
fn our_caller_reads_encrypted_ts_from_an_ffmpeg_listener() {
    if !require("our_caller_reads_from_ffmpeg", &["ffmpeg", "ffprobe"]) {
        return;
    }
    let port = free_udp_port();
    let url = format!("srt://127.0.0.1:{port}?mode=listener&passphrase={PASS}&pbkeylen=32");
    let child = Proc::spawn(&mut ffmpeg_testsrc_ts(&url));
    let mut host = Host::new(config(None).with_key_length(arcly::srt::crypto::KeyLength::Aes256));
    let remote: SocketAddr = ([127, 0, 0, 1], port).into();
    // ffmpeg needs a moment to open its listener: retry the connect.
    let mut id = None;
    for _ in 0..10 {
        let now = host.now();
        let attempt = host
            .ep
            .connect(now, remote, Some("read:live/cam"), Some(PASS))
            .unwrap();
        host.events.clear();
        host.run_until(Duration::from_secs(1), |h| {
            h.connected().is_some() || h.failure().is_some()
        });
        if host.connected() == Some(attempt) {
            id = Some(attempt);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let id = id.expect("connected to ffmpeg's listener");
    assert!(host.ep.is_encrypted(id));
    host.run_until(Duration::from_secs(10), |h| h.closed());
    let (_, err) = child.finish(Duration::from_secs(2));
    let ts = host.received();
    assert!(ts.len() > 188 * 50, "got {} bytes; ffmpeg: {err}", ts.len());
    let path = std::env::temp_dir().join(format!("arcly-srt-caller-{port}.ts"));
    std::fs::write(&path, &ts).unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    // ffprobe prints the count once per program section: take the first.
    let frames: u32 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        frames >= 45,
        "a viewer decodes the stream: {frames} frames; ffprobe: {:?} {}; {} bytes; ffmpeg: {err}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        ts.len()
    );
}
