//! The shipped `arcly` binary serves SRT: `--srt 127.0.0.1:0` binds a UDP
//! port and the banner prints the publish/read URLs; ffmpeg publishes over
//! SRT and ffprobe plays over SRT through it; a bad `--srt-passphrase` is
//! refused with a clear message.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use arcly_tests::binary::{arcly_bin, assert_refused, assert_stops_on_sigterm, spawn};
use arcly_tests::srt::{self, Caller, Player, Publisher};
use arcly_tests::{require_tools, Watchdog};

#[test]
fn short_passphrase_is_refused_with_a_clear_message() {
    let Some(bin) = arcly_bin("srt_server_binary/passphrase") else {
        return;
    };
    assert_refused(
        &bin,
        &["--srt-passphrase", "short"],
        "10 to 79",
        "arcly accepted a 5-character passphrase",
        "the error does not give the allowed length",
    );
}

#[test]
fn serves_srt_and_prints_the_urls() {
    let test = "srt_server_binary/serve";
    let Some(bin) = arcly_bin(test) else {
        return;
    };
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(60));
    let mut server = spawn(
        &bin,
        &[
            "--rtmp",
            "127.0.0.1:0",
            "--http",
            "off",
            "--rtsp",
            "off",
            "--srt",
            "127.0.0.1:0",
            "--srt-latency",
            "150",
        ],
    );
    let addr = srt::wait_srt_addr(&mut server, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no `SRT listening on` banner:\n{}", server.describe()));
    let out = server.stdout();
    for want in [
        format!("srt://127.0.0.1:{}?streamid=publish:live/", addr.port()),
        format!("srt://127.0.0.1:{}?streamid=read:live/", addr.port()),
    ] {
        assert!(
            out.contains(&want),
            "the banner does not show {want}:\n{out}"
        );
    }
    let report = srt::run(
        test,
        "cam",
        &Publisher::Ffmpeg(Caller::publish("cam", 150).ffmpeg_url(addr)),
        &Player::Ffprobe(Caller::read("cam", 150).ffmpeg_url(addr)),
        None,
    );
    report.assert_viewer_saw_everything();
    assert_stops_on_sigterm(&mut server);
}
