//! SRT with a passphrase (AES-128, `pbkeylen=16`): ffmpeg publishes
//! encrypted, ffprobe and srt-live-transmit play encrypted, everything
//! decodes; GStreamer `srtsink` publishes and `srtsrc` plays encrypted
//! (`passphrase`/`pbkeylen` element properties), frames decode. A wrong passphrase and a caller without one are refused at the
//! handshake (libsrt logs the reject reason) and create no stream.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;
use std::time::Duration;

use arcly::StreamKey;
use arcly_tests::ffmpeg::PublishSpec;
use arcly_tests::srt::{self, Caller, Player, Publisher, SrtOptions, SrtTestServer};
use arcly_tests::tools::require_gst_elements;
use arcly_tests::{require_tools, Adapter, Proc, Watchdog};

const PASSPHRASE: &str = "arcly-secret-42";

fn encrypted() -> SrtOptions {
    SrtOptions {
        passphrase: Some(PASSPHRASE.to_owned()),
        ..SrtOptions::default()
    }
}

fn encrypted_publish_and_play(adapter: Adapter, player: fn(&SrtTestServer) -> Player) {
    let test = format!("srt_encryption/{}", adapter.name());
    let tools = ["ffmpeg", "ffprobe", "srt-live-transmit"];
    let Some((_watchdog, server)) = SrtTestServer::for_test(&test, &tools, adapter, &encrypted())
    else {
        return;
    };
    let publish = Caller::publish("cam", 120)
        .with_passphrase(PASSPHRASE)
        .ffmpeg_url(server.addr);
    let report = srt::run(
        &test,
        "cam",
        &Publisher::Ffmpeg(publish),
        &player(&server),
        Some(&server.engine),
    );
    report.assert_viewer_saw_everything();
}

#[test]
fn encrypted_ffprobe_on_tokio() {
    encrypted_publish_and_play(Adapter::Tokio, |s| {
        Player::Ffprobe(
            Caller::read("cam", 120)
                .with_passphrase(PASSPHRASE)
                .ffmpeg_url(s.addr),
        )
    });
}

#[test]
fn encrypted_srt_live_transmit_on_blocking() {
    encrypted_publish_and_play(Adapter::Blocking, |s| {
        Player::SrtLiveTransmit(
            Caller::read("cam", 120)
                .with_passphrase(PASSPHRASE)
                .slt_url(s.addr),
        )
    });
}

/// GStreamer `mpegtsmux ! srtsink` publishes and `srtsrc ! tsdemux` plays,
/// both with the server's passphrase (AES-128): same checks as the clear
/// GStreamer test of `srt_interop`.
#[test]
fn encrypted_gst_srtsink_srtsrc_tokio() {
    let test = "srt_encryption/gst";
    if !require_gst_elements(test, srt::GST_ELEMENTS) {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(60));
    arcly_tests::init_logging();
    let server = SrtTestServer::start_with(Adapter::Tokio, &encrypted());
    // 200 ms like the clear GStreamer test (room for a loaded machine).
    let publisher = Publisher::Gst(
        Caller::publish("cam", 200).with_passphrase(PASSPHRASE),
        server.addr,
    );
    let player = Player::Gst(
        Caller::read("cam", 200).with_passphrase(PASSPHRASE),
        server.addr,
    );
    let report = srt::run(test, "cam", &publisher, &player, Some(&server.engine));
    report.assert_viewer_saw_everything();
}

/// An ffmpeg publisher with `caller`'s settings must be refused: it fails
/// within 10 s, its log names `reason`, and the stream never exists.
fn refused(test: &str, caller: Caller, reason: &str) {
    if !require_tools(test, &["ffmpeg"]) {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(30));
    arcly_tests::init_logging();
    let server = SrtTestServer::start_with(Adapter::Tokio, &encrypted());
    let spec = PublishSpec {
        seconds: 3,
        ..PublishSpec::default()
    };
    let mut c: Command = srt::ffmpeg_publish_ts(&caller.ffmpeg_url(server.addr), &spec);
    let mut p = Proc::spawn(&format!("{test}:ffmpeg-publish"), &mut c);
    let status = p.wait_timeout(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| !s.success()),
        "{test}: the publisher was not refused:\n{}",
        p.describe()
    );
    let log = p.stderr();
    assert!(
        log.contains(reason),
        "{test}: the publisher's log does not say `{reason}`:\n{log}"
    );
    let key = StreamKey::new("live", "cam").unwrap();
    assert!(
        server.engine.stream_stats(&key).is_none(),
        "{test}: a refused publisher created the stream"
    );
}

#[test]
fn wrong_passphrase_is_refused() {
    refused(
        "srt_encryption/wrong-passphrase",
        Caller::publish("cam", 120).with_passphrase("not-the-passphrase"),
        "Incorrect passphrase",
    );
}

#[test]
fn missing_passphrase_is_refused() {
    refused(
        "srt_encryption/no-passphrase",
        Caller::publish("cam", 120),
        "Password required or unexpected",
    );
}
