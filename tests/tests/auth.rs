//! Authentication through the `arcly` binary with real clients
//! (docs/auth.md): static users of a `[paths]` section over RTMP
//! (`?user=&pass=`, ffmpeg) and SRT (`#!::u=,s=`, srt-live-transmit), the
//! HTTP hook with RTMP `?token=` (up, down, slow, cached) while another
//! session keeps flowing, and the slow-down of an address that keeps
//! failing. Refusals must be the protocol's own and the log must say why
//! without the secret.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arcly_tests::binary::{arcly_bin, spawn, wait_rtmp_addr};
use arcly_tests::ffmpeg::{self, PublishSpec};
use arcly_tests::process::Proc;
use arcly_tests::scenario::{self, Player, Publisher};
use arcly_tests::{require_tools, Watchdog};

/// A temporary config file, removed on drop.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(name: &str, text: &str) -> TempConfig {
        let p = std::env::temp_dir().join(format!("arcly-auth-{name}-{}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        TempConfig(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// arcly with `config`, RTMP on an ephemeral port (and SRT when asked).
fn start(config: &TempConfig, srt: bool) -> (Proc, SocketAddr) {
    let bin = arcly_bin("auth").unwrap();
    let mut args = vec![
        "--config",
        config.path(),
        "--rtmp",
        "127.0.0.1:0",
        "--http",
        "off",
        "--rtsp",
        "off",
        "--srt",
    ];
    args.push(if srt { "127.0.0.1:0" } else { "off" });
    let mut server = spawn(&bin, &args);
    let addr = wait_rtmp_addr(&mut server, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no RTMP banner:\n{}", server.describe()));
    (server, addr)
}

/// ffmpeg publishes 2 s to `url`: whether it was admitted (ran to its end)
/// and how long it took.
fn try_publish(label: &str, url: &str) -> (bool, Duration) {
    let spec = PublishSpec {
        seconds: 2,
        ..PublishSpec::default()
    };
    let t0 = Instant::now();
    let mut p = Proc::spawn(label, &mut ffmpeg::publish_command(url, &spec));
    let status = p.wait_timeout(Duration::from_secs(20));
    let ok = status.is_some_and(|s| s.success());
    if status.is_none() {
        p.kill();
    }
    if !ok {
        eprintln!(
            "{label}: refused as expected? {}",
            p.describe().lines().take(6).collect::<Vec<_>>().join(" | ")
        );
    }
    (ok, t0.elapsed())
}

fn bins() -> bool {
    arcly_bin("auth").is_some() && require_tools("auth", &["ffmpeg", "ffprobe"])
}

#[test]
fn rtmp_user_and_password_right_wrong_missing_and_slowed_down() {
    if !bins() {
        return;
    }
    let _w = Watchdog::new("auth/rtmp", Duration::from_secs(90));
    let cfg = TempConfig::new(
        "rtmp",
        "auth_fail_limit = 4\nauth_fail_window = 30\nauth_fail_delay = 2\n\n\
         [paths.\"live/*\"]\npublish_user = \"alice\"\npublish_pass = \"s3cret\"\n",
    );
    let (mut server, addr) = start(&cfg, false);
    // Right credentials: admitted, and a viewer sees every frame.
    let report = scenario::run_urls(
        "auth/rtmp-right",
        &format!("rtmp://{addr}/live/cam?user=alice&pass=s3cret"),
        &format!("rtmp://{addr}/live/cam"),
        "cam",
        Publisher::Ffmpeg,
        Player::Ffprobe,
        None,
    );
    report.assert_viewer_saw_everything();
    // Wrong password, unknown user, nothing: NetStream.Publish.BadName.
    for (label, q) in [
        ("wrong", "?user=alice&pass=guess1"),
        ("user", "?user=mallory&pass=s3cret"),
        ("missing", ""),
    ] {
        let (ok, took) = try_publish(
            &format!("auth/rtmp-{label}"),
            &format!("rtmp://{addr}/live/cam{q}"),
        );
        assert!(!ok, "{label}: publish admitted");
        assert!(
            took < Duration::from_secs(2),
            "{label}: refusal took {took:?}"
        );
    }
    let err = server.stderr();
    assert!(
        err.matches("auth: request refused").count() >= 3,
        "the refusals are not logged:\n{err}"
    );
    assert!(
        !err.contains("guess1") && !err.contains("s3cret"),
        "a password reached the log:\n{err}"
    );
    // The 4th failure within the window: from now on this address is
    // refused after a delay, right password or not.
    let (ok, _) = try_publish(
        "auth/rtmp-wrong4",
        &format!("rtmp://{addr}/live/cam?user=alice&pass=guess4"),
    );
    assert!(!ok);
    let (ok, took) = try_publish(
        "auth/rtmp-throttled",
        &format!("rtmp://{addr}/live/cam?user=alice&pass=s3cret"),
    );
    assert!(!ok, "a throttled address was admitted");
    assert!(
        took >= Duration::from_millis(1900),
        "the throttled refusal came after {took:?}, not the 2 s delay"
    );
    assert!(
        server.stderr().contains("too many failed attempts"),
        "{}",
        server.describe()
    );
    server.kill();
}

#[test]
fn srt_stream_id_user_and_secret() {
    if !bins() || !require_tools("auth/srt", &["srt-live-transmit"]) {
        return;
    }
    let _w = Watchdog::new("auth/srt", Duration::from_secs(60));
    let cfg = TempConfig::new(
        "srt",
        "[paths.\"live/*\"]\nread_user = \"viewer\"\nread_pass = \"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n",
    ); // sha256("test")
    let (mut server, addr) = start(&cfg, true);
    let srt = arcly_tests::srt::wait_srt_addr(&mut server, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no SRT banner:\n{}", server.describe()));
    let spec = PublishSpec {
        seconds: 8,
        ..PublishSpec::default()
    };
    let mut publisher = Proc::spawn(
        "auth/srt-publisher",
        &mut ffmpeg::publish_command(&format!("rtmp://{addr}/live/cam"), &spec),
    );
    std::thread::sleep(Duration::from_secs(1));
    let dir = std::env::temp_dir();
    let read = |label: &str, secret: &str| {
        let out = dir.join(format!(
            "arcly-auth-{}-{}.ts",
            label.replace('/', "-"),
            std::process::id()
        ));
        let url = format!(
            "srt://{srt}?streamid=#!::r=live/cam,m=request,u=viewer,s={secret}&latency=120"
        );
        let mut p = Proc::spawn(label, &mut arcly_tests::srt::slt_read_command(&url, &out));
        std::thread::sleep(Duration::from_secs(3));
        p.kill();
        let bytes = std::fs::metadata(&out).map_or(0, |m| m.len());
        let _ = std::fs::remove_file(&out);
        (bytes, p.describe())
    };
    let (good, good_log) = read("auth/srt-right", "test");
    let (bad, _) = read("auth/srt-wrong", "nope-wrong");
    assert!(
        good > 50_000,
        "the viewer with the right secret got {good} bytes:\n{good_log}\n{}",
        server.describe()
    );
    assert_eq!(bad, 0, "the viewer with a wrong secret got {bad} bytes");
    let err = server.stderr();
    assert!(err.contains("auth: request refused"), "{err}");
    assert!(
        !err.contains("nope-wrong"),
        "the SRT secret reached the log:\n{err}"
    );
    let _ = publisher.wait_timeout(Duration::from_secs(15));
    server.kill();
}

/// What the test's auth hook does with the next request.
const ANSWER: u8 = 0;
const HANG_UP: u8 = 1;
const SLOW: u8 = 2;

/// A tiny HTTP hook: admits (200) bodies with `"token":"good…"`, else 403;
/// or hangs up, or answers after 4 s, per `mode`. Keeps the requests.
fn hook(mode: Arc<AtomicU8>, asked: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mode = mode.clone();
            let asked = asked.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                while let Ok(n) = c.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if body.len() >= len {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&buf).into_owned();
                asked.lock().unwrap().push(text.clone());
                match mode.load(Ordering::SeqCst) {
                    HANG_UP => return,
                    SLOW => std::thread::sleep(Duration::from_secs(4)),
                    _ => {}
                }
                let status = if text.contains("\"token\":\"good") {
                    "200 OK"
                } else {
                    "403 Forbidden"
                };
                let _ = c.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                );
            });
        }
    });
    addr
}

#[test]
fn hook_admits_refuses_hangs_up_and_times_out_while_others_flow() {
    if !bins() {
        return;
    }
    let _w = Watchdog::new("auth/hook", Duration::from_secs(90));
    let mode = Arc::new(AtomicU8::new(ANSWER));
    let asked = Arc::new(Mutex::new(Vec::new()));
    let hook_addr = hook(mode.clone(), asked.clone());
    let cfg = TempConfig::new(
        "hook",
        &format!(
            "auth_hook_url = \"http://{hook_addr}/auth\"\nauth_hook_timeout = 1\nauth_hook_cache = 30\nauth_fail_limit = 0\n"
        ),
    );
    let (mut server, addr) = start(&cfg, false);
    // A session admitted by the hook keeps flowing through what follows.
    let flowing = std::thread::spawn(move || {
        scenario::run_urls(
            "auth/hook-flowing",
            &format!("rtmp://{addr}/live/main?token=good-main"),
            &format!("rtmp://{addr}/live/main?token=good-viewer"),
            "main",
            Publisher::Ffmpeg,
            Player::Ffprobe,
            None,
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let url = |stream: &str, token: &str| format!("rtmp://{addr}/live/{stream}?token={token}");
    let (ok, _) = try_publish("auth/hook-good", &url("a", "good-a"));
    assert!(
        ok,
        "the hook admitted, the publish did not run:\n{}",
        server.describe()
    );
    let (ok, _) = try_publish("auth/hook-cached", &url("a", "good-a"));
    assert!(ok, "second publish refused");
    {
        let asked = asked.lock().unwrap();
        let a: Vec<&String> = asked.iter().filter(|b| b.contains("good-a")).collect();
        assert_eq!(a.len(), 1, "the hook's answer was not reused: {a:?}");
        // What the hook is told (docs/auth.md).
        for field in [
            "\"protocol\":\"rtmp\"",
            "\"action\":\"publish\"",
            "\"path\":\"live/a\"",
            "\"query\":\"token=good-a\"",
            "\"ip\":\"127.0.0.1\"",
            "\"id\":",
        ] {
            assert!(
                a[0].contains(field),
                "the hook request lacks {field}: {}",
                a[0]
            );
        }
    }
    let (ok, _) = try_publish("auth/hook-bad", &url("b", "bad-b"));
    assert!(!ok, "the hook answered 403, the publish ran");
    let (ok, _) = try_publish("auth/hook-none", &format!("rtmp://{addr}/live/c"));
    assert!(!ok, "no token, the publish ran");
    mode.store(HANG_UP, Ordering::SeqCst);
    let (ok, _) = try_publish("auth/hook-down", &url("d", "good-d"));
    assert!(!ok, "the hook hung up, the publish ran");
    mode.store(SLOW, Ordering::SeqCst);
    let (ok, took) = try_publish("auth/hook-slow", &url("e", "good-e"));
    assert!(!ok, "the hook did not answer in time, the publish ran");
    assert!(
        took < Duration::from_secs(4),
        "the timeout refusal took {took:?}"
    );
    mode.store(ANSWER, Ordering::SeqCst);
    let report = flowing.join().unwrap();
    report.assert_viewer_saw_everything();
    let err = server.stderr();
    for why in [
        "answered 403",
        "closed without answering",
        "no answer within",
    ] {
        assert!(err.contains(why), "no `{why}` refusal in the log:\n{err}");
    }
    server.kill();
}

/// Waits for the `RTSP listening on ADDR` banner line.
fn wait_rtsp_addr(proc: &mut Proc) -> Option<SocketAddr> {
    let mut found = None;
    proc.wait_for(Duration::from_secs(10), |out, _| {
        found = out.lines().find_map(|l| {
            l.split("RTSP listening on ")
                .nth(1)
                .and_then(|a| a.split_whitespace().next())
                .and_then(|a| a.parse().ok())
        });
        found.is_some()
    });
    found
}

#[test]
fn rtsp_user_and_password_through_the_config() {
    if !bins() {
        return;
    }
    let _w = Watchdog::new("auth/rtsp", Duration::from_secs(60));
    let cfg = TempConfig::new(
        "rtsp",
        "[paths.\"live/*\"]\npublish_user = \"alice\"\npublish_pass = \"s3cret\"\n",
    );
    let bin = arcly_bin("auth").unwrap();
    let mut server = spawn(
        &bin,
        &[
            "--config",
            cfg.path(),
            "--rtsp",
            "127.0.0.1:0",
            "--rtsp-udp",
            "off",
            "--rtmp",
            "off",
            "--http",
            "off",
            "--srt",
            "off",
        ],
    );
    let addr = wait_rtsp_addr(&mut server)
        .unwrap_or_else(|| panic!("no RTSP banner:\n{}", server.describe()));
    let spec = PublishSpec {
        seconds: 2,
        ..PublishSpec::default()
    };
    let publish = |label: &str, userinfo: &str| {
        let url = format!("rtsp://{userinfo}{addr}/live/cam");
        let mut p = Proc::spawn(label, &mut ffmpeg::publish_rtsp_command(&url, &spec));
        let ok = p
            .wait_timeout(Duration::from_secs(20))
            .is_some_and(|s| s.success());
        if !ok {
            p.kill();
        }
        ok
    };
    // ffmpeg answers the 401 with Digest (or Basic): right → admitted.
    assert!(
        publish("auth/rtsp-right", "alice:s3cret@"),
        "right credentials refused:\n{}",
        server.describe()
    );
    assert!(
        !publish("auth/rtsp-wrong", "alice:guess@"),
        "wrong password admitted"
    );
    assert!(!publish("auth/rtsp-none", ""), "no credentials admitted");
    let err = server.stderr();
    assert!(err.contains("auth: request refused"), "{err}");
    assert!(
        !err.contains("guess") && !err.contains("s3cret"),
        "a password reached the log:\n{err}"
    );
    server.kill();
}
