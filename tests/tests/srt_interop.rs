//! SRT interop: ffmpeg publishes H.264 + AAC in MPEG-TS to an in-process
//! arcly SRT server (`streamid=publish:live/cam`); ffprobe joins mid-stream
//! over SRT (`streamid=read:live/cam`) and decodes. Same checks as the RTMP
//! scenario (every frame from the cached keyframe on, audio, monotonic
//! timestamps, no errors in either client's log), on every adapter; plus
//! the cross-protocol paths (SRT → RTMP, RTMP → SRT) and the other SRT
//! clients (srt-live-transmit, GStreamer srtsink/srtsrc) on tokio.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use arcly_tests::srt::{self, Caller, Player, Publisher, SrtOptions, SrtTestServer};
use arcly_tests::tools::require_gst_elements;
use arcly_tests::{require_tools, Adapter, Watchdog};

/// The callers' TSBPD latency: libsrt's default is 120 ms; 200 ms leaves
/// room for a shared CI machine that deschedules the server for a while
/// (libsrt's sender drops what is not acknowledged within the latency).
const LATENCY_MS: u32 = 200;

fn ffmpeg_srt_publish_ffprobe_srt_play(adapter: Adapter) {
    let test = format!("srt_interop/{}", adapter.name());
    if !require_tools(&test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let _watchdog = Watchdog::new(&test, Duration::from_secs(60));
    arcly_tests::init_logging();
    let server = SrtTestServer::start(adapter);
    let publish = Caller::publish("cam", LATENCY_MS).ffmpeg_url(server.addr);
    let read = Caller::read("cam", LATENCY_MS).ffmpeg_url(server.addr);
    let report = srt::run(
        &test,
        "cam",
        &Publisher::Ffmpeg(publish),
        &Player::Ffprobe(read),
        Some(&server.engine),
    );
    report.assert_viewer_saw_everything();
}

#[test]
fn srt_on_tokio() {
    ffmpeg_srt_publish_ffprobe_srt_play(Adapter::Tokio);
}

#[test]
fn srt_on_async_io_smol() {
    ffmpeg_srt_publish_ffprobe_srt_play(Adapter::AsyncIoSmol);
}

#[test]
fn srt_on_async_io_async_std() {
    ffmpeg_srt_publish_ffprobe_srt_play(Adapter::AsyncIoAsyncStd);
}

#[test]
fn srt_on_blocking() {
    ffmpeg_srt_publish_ffprobe_srt_play(Adapter::Blocking);
}

/// Published over SRT, played over RTMP.
#[test]
fn srt_publish_rtmp_play_tokio() {
    let test = "srt_interop/srt-to-rtmp";
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(60));
    arcly_tests::init_logging();
    let server = SrtTestServer::start_with(
        Adapter::Tokio,
        &SrtOptions {
            rtmp: true,
            ..SrtOptions::default()
        },
    );
    let publish = Caller::publish("cam", LATENCY_MS).ffmpeg_url(server.addr);
    let report = srt::run(
        test,
        "cam",
        &Publisher::Ffmpeg(publish),
        &Player::Ffprobe(server.rtmp_url("cam")),
        Some(&server.engine),
    );
    report.assert_viewer_saw_everything();
}

/// Published over RTMP, played over SRT.
#[test]
fn rtmp_publish_srt_play_tokio() {
    let test = "srt_interop/rtmp-to-srt";
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(60));
    arcly_tests::init_logging();
    let server = SrtTestServer::start_with(
        Adapter::Tokio,
        &SrtOptions {
            rtmp: true,
            ..SrtOptions::default()
        },
    );
    let read = Caller::read("cam", LATENCY_MS).ffmpeg_url(server.addr);
    let report = srt::run(
        test,
        "cam",
        &Publisher::Ffmpeg(server.rtmp_url("cam")),
        &Player::Ffprobe(read),
        Some(&server.engine),
    );
    report.assert_viewer_saw_everything();
}

/// `srt-live-transmit 'srt://…?streamid=read:live/cam' file://con > out.ts`,
/// then ffprobe decodes the recording.
#[test]
fn srt_live_transmit_reads_tokio() {
    let test = "srt_interop/srt-live-transmit";
    if !require_tools(test, &["ffmpeg", "ffprobe", "srt-live-transmit"]) {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(60));
    arcly_tests::init_logging();
    let server = SrtTestServer::start(Adapter::Tokio);
    let publish = Caller::publish("cam", LATENCY_MS).ffmpeg_url(server.addr);
    let read = Caller::read("cam", LATENCY_MS).slt_url(server.addr);
    let report = srt::run(
        test,
        "cam",
        &Publisher::Ffmpeg(publish),
        &Player::SrtLiveTransmit(read),
        Some(&server.engine),
    );
    report.assert_viewer_saw_everything();
}

/// GStreamer `mpegtsmux ! srtsink` publishes, `srtsrc ! tsdemux` plays.
#[test]
fn gst_srtsink_srtsrc_tokio() {
    let test = "srt_interop/gst";
    if !require_gst_elements(test, srt::GST_ELEMENTS) {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(60));
    arcly_tests::init_logging();
    let server = SrtTestServer::start(Adapter::Tokio);
    let report = srt::run(
        test,
        "gst",
        &Publisher::Gst(Caller::publish("gst", LATENCY_MS), server.addr),
        &Player::Gst(Caller::read("gst", LATENCY_MS), server.addr),
        Some(&server.engine),
    );
    report.assert_viewer_saw_everything();
}
