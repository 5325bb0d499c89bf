//! Locating and running the built `arcly` server binary.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::process::Proc;

/// The `arcly` binary: `$ARCLY_BIN`, else `arcly` next to the test
/// executable's `deps/` folder (where `cargo build -p arcly-server` puts it
/// in the same target dir and profile). `None` if it is not built; under CI
/// that is a failure (`./scripts/test.sh` builds it before the tests).
pub fn arcly_bin(test: &str) -> Option<PathBuf> {
    let candidate = std::env::var_os("ARCLY_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            // target/<profile>/deps/<test>-<hash>
            Some(exe.parent()?.parent()?.join("arcly"))
        });
    match candidate {
        Some(p) if p.is_file() => Some(p),
        other => {
            let msg = format!(
                "{test}: the arcly binary is not built (looked at {other:?}); run \
                 `cargo build -p arcly-server` (./scripts/test.sh does) or set ARCLY_BIN"
            );
            if crate::tools::in_ci() {
                panic!("{msg}; CI=true so this test may not be skipped");
            }
            eprintln!("SKIPPED {msg}");
            None
        }
    }
}

/// `--webrtc off` unless `args` set `--webrtc`: the WebRTC default
/// (`0.0.0.0:8189`) is one fixed port, which tests running in parallel would
/// fight over.
fn webrtc_off(args: &[&str]) -> &'static [&'static str] {
    if args.contains(&"--webrtc") {
        &[]
    } else {
        &["--webrtc", "off"]
    }
}

/// Starts `arcly` with `args` (logs at `info`; WebRTC off unless `args`
/// set `--webrtc`).
pub fn spawn(bin: &PathBuf, args: &[&str]) -> Proc {
    let mut c = Command::new(bin);
    c.args(webrtc_off(args))
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("RUST_LOG_STYLE");
    Proc::spawn("arcly", &mut c)
}

/// Waits for the `HTTP listening on ADDR` banner line and returns ADDR
/// (the first word after the marker).
pub fn wait_http_addr(proc: &mut Proc, timeout: Duration) -> Option<std::net::SocketAddr> {
    let mut found = None;
    proc.wait_for(timeout, |out, _| {
        found = out.lines().find_map(|l| {
            l.split("HTTP listening on ")
                .nth(1)
                .and_then(|a| a.split_whitespace().next())
                .and_then(|a| a.parse().ok())
        });
        found.is_some()
    });
    found
}

/// Starts `arcly` with RTMP and HTTP on ephemeral loopback ports (RTSP and
/// SRT off) and returns it with the RTMP and HTTP addresses from its
/// banners; panics with its output if a banner is missing after 10 s.
pub fn spawn_rtmp_http(bin: &PathBuf) -> (Proc, std::net::SocketAddr, std::net::SocketAddr) {
    let mut server = spawn(
        bin,
        &[
            "--rtmp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--rtsp",
            "off",
            "--srt",
            "off",
        ],
    );
    let rtmp = wait_rtmp_addr(&mut server, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no RTMP banner:\n{}", server.describe()));
    let http = wait_http_addr(&mut server, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no `HTTP listening on` banner:\n{}", server.describe()));
    (server, rtmp, http)
}

/// Waits for the `RTMP listening on ADDR` banner line and returns ADDR.
pub fn wait_rtmp_addr(proc: &mut Proc, timeout: Duration) -> Option<std::net::SocketAddr> {
    let mut found = None;
    proc.wait_for(timeout, |out, _| {
        found = out.lines().find_map(|l| {
            l.split("RTMP listening on ")
                .nth(1)
                .and_then(|a| a.trim().parse().ok())
        });
        found.is_some()
    });
    found
}

/// Runs `bin args` and asserts that it fails (else panics with `accepted`)
/// with `needle` in its stderr (else panics with `missing` and the stderr).
pub fn assert_refused(bin: &PathBuf, args: &[&str], needle: &str, accepted: &str, missing: &str) {
    let out = Command::new(bin)
        .args(webrtc_off(args))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{accepted}");
    assert!(err.contains(needle), "{missing}:\n{err}");
}

/// Sends SIGTERM to the `arcly` process and asserts it exits with success
/// within 10 s.
pub fn assert_stops_on_sigterm(server: &mut Proc) {
    server.signal("TERM");
    let status = server.wait_timeout(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "arcly did not exit cleanly within 10 s of SIGTERM:\n{}",
        server.describe()
    );
}
