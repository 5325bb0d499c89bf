//! Smoke tests of the built `arcly` binary: `--help`, listening on a given
//! address, serving RTMP end to end (ffmpeg → ffprobe), a bind failure that
//! names the address, bad flags, and graceful shutdown on SIGTERM.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;
use std::time::Duration;

use arcly::rtmp::ClientMode;
use arcly_tests::binary::{
    arcly_bin, assert_refused, assert_stops_on_sigterm, spawn, wait_rtmp_addr,
};
use arcly_tests::client::Client;
use arcly_tests::{require_tools, scenario, Watchdog};

#[test]
fn help_lists_the_listen_flags() {
    let Some(bin) = arcly_bin("server_binary/help") else {
        return;
    };
    let out = Command::new(&bin).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "arcly --help failed: {out:?}");
    assert!(
        text.contains("--rtmp"),
        "--help does not mention --rtmp:\n{text}"
    );
    assert!(
        text.contains("off"),
        "--help does not say a listener can be `off`:\n{text}"
    );
}

#[test]
fn bad_listen_address_is_a_usage_error() {
    let Some(bin) = arcly_bin("server_binary/bad_flag") else {
        return;
    };
    assert_refused(
        &bin,
        &["--rtmp", "not-an-address"],
        "not-an-address",
        "arcly accepted --rtmp not-an-address",
        "the usage error does not name the bad value",
    );
}

#[test]
fn bind_failure_names_the_address() {
    let Some(bin) = arcly_bin("server_binary/bind_failure") else {
        return;
    };
    let _watchdog = Watchdog::new("bind_failure", Duration::from_secs(30));
    // Hold the port so the server cannot bind it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut server = spawn(
        &bin,
        &[
            "--rtmp", &addr, "--http", "off", "--srt", "off", "--rtsp", "off",
        ],
    );
    let status = server.wait_timeout(Duration::from_secs(10));
    let err = server.stderr();
    assert!(
        status.is_some_and(|s| !s.success()),
        "arcly did not fail when {addr} was taken:\n{}",
        server.describe()
    );
    assert!(
        err.contains(&addr),
        "the bind failure message does not name {addr}:\n{err}"
    );
    eprintln!("bind failure message: {}", err.trim());
}

#[test]
fn serves_rtmp_on_the_given_address_and_stops_on_sigterm() {
    let Some(bin) = arcly_bin("server_binary/serve") else {
        return;
    };
    let _watchdog = Watchdog::new("serve", Duration::from_secs(60));
    let mut server = spawn(
        &bin,
        &[
            "--rtmp",
            "127.0.0.1:0",
            "--rtsp",
            "off",
            "--srt",
            "127.0.0.1:0",
            "--http",
            "off",
        ],
    );
    let addr = wait_rtmp_addr(&mut server, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no `RTMP listening on` banner:\n{}", server.describe()));
    assert!(
        addr.ip().is_loopback() && addr.port() != 0,
        "listening on {addr}"
    );
    let out = server.stdout();
    assert!(
        out.contains(&format!("rtmp://127.0.0.1:{}/live", addr.port())),
        "the banner does not say where to publish and play:\n{out}"
    );

    // The server speaks RTMP: a player of a missing stream is told so.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let res = rt.block_on(async {
        let mut c = Client::connect(addr, &format!("rtmp://{addr}/live/none"), ClientMode::Play)
            .await
            .unwrap();
        c.wait_started(Duration::from_secs(5)).await
    });
    assert!(
        res.as_ref().is_err_and(|e| e.contains("StreamNotFound")),
        "expected NetStream.Play.StreamNotFound, got {res:?}"
    );

    // Real clients through the shipped binary.
    if require_tools("server_binary/serve", &["ffmpeg", "ffprobe"]) {
        let report = scenario::run_ffmpeg("server_binary/ffmpeg", addr, "cam", None);
        report.assert_viewer_saw_everything();
    }

    assert_stops_on_sigterm(&mut server);
}
