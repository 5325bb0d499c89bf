//! The `arcly` binary: flags, bind failures, start-up banner, graceful
//! shutdown on SIGTERM/SIGINT.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The binary with only the listeners a test names: HTTP (8888), SRT
/// (8890/udp) and RTSP (8554) are on by default and would collide between
/// parallel tests.
fn arcly() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_arcly"));
    c.env("RUST_LOG", "info");
    c.args(["--http", "off", "--srt", "off", "--rtsp", "off"]);
    c
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn version_and_help() {
    let out = arcly().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("arcly {}", env!("CARGO_PKG_VERSION"))
    );
    let out = arcly().arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--rtmp <ADDR|off>"));
}

#[test]
fn a_listener_that_cannot_bind_says_where_and_why() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = arcly()
        .args(["--rtmp", &addr.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen for RTMP on {addr}")) && err.contains("in use"),
        "stderr: {err}"
    );
}

#[test]
fn bad_flags_are_refused() {
    let out = arcly().args(["--rtmp", "nowhere"]).output().unwrap();
    assert!(!out.status.success());
    let out = arcly().args(["--rtmp", "off"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("every listener is off"));
}

fn start_and_signal(signal: &str) {
    let port = free_port();
    let rtsp_port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_arcly"))
        .env("RUST_LOG", "info")
        // The WebRTC default is one fixed UDP port (8189): the SIGINT and
        // SIGTERM tests run at once, and the second server would fail to
        // bind it and exit before its banner.
        .args(["--http", "off", "--srt", "off", "--webrtc", "off"])
        .args(["--rtmp", &format!("127.0.0.1:{port}")])
        .args(["--rtsp", &format!("127.0.0.1:{rtsp_port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("play:") && line.contains("rtsp://") {
            break;
        }
    }
    assert!(
        banner.contains(&format!("rtmp://127.0.0.1:{port}/live/<name>")),
        "banner: {banner}"
    );
    assert!(
        banner.contains(&format!(
            "-f rtsp -rtsp_transport tcp rtsp://127.0.0.1:{rtsp_port}/live/<name>"
        )),
        "banner: {banner}"
    );
    // The listener is up: a connection is accepted.
    let conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st}");
            break;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("arcly did not exit after {signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(conn);
}

#[test]
fn sigterm_shuts_down_gracefully() {
    start_and_signal("-TERM");
}

#[test]
fn sigint_shuts_down_gracefully() {
    start_and_signal("-INT");
}
