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

/// Starts an SRT server on `adapter` with `options` (after a watchdog and
/// logging), then publishes and plays `live/<stream>` with the clients
/// `clients` picks for that server, and checks what the viewer saw.
fn publish_and_play(
    test: &str,
    adapter: Adapter,
    options: &SrtOptions,
    stream: &str,
    clients: impl FnOnce(&SrtTestServer) -> (Publisher, Player),
) {
    let _watchdog = Watchdog::new(test, Duration::from_secs(60));
    arcly_tests::init_logging();
    let server = SrtTestServer::start_with(adapter, options);
    let (publisher, player) = clients(&server);
    let report = srt::run(test, stream, &publisher, &player, Some(&server.engine));
    report.assert_viewer_saw_everything();
}

/// ffmpeg publishes over SRT to `cam`, ffprobe reads it over SRT.
fn srt_callers(server: &SrtTestServer) -> (Publisher, Player) {
    (
        Publisher::Ffmpeg(Caller::publish("cam", LATENCY_MS).ffmpeg_url(server.addr)),
        Player::Ffprobe(Caller::read("cam", LATENCY_MS).ffmpeg_url(server.addr)),
    )
}

/// Both SRT and RTMP listeners.
fn with_rtmp() -> SrtOptions {
    SrtOptions {
        rtmp: true,
        ..SrtOptions::default()
    }
}

fn ffmpeg_srt_publish_ffprobe_srt_play(adapter: Adapter) {
    let test = format!("srt_interop/{}", adapter.name());
    if !require_tools(&test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    publish_and_play(&test, adapter, &SrtOptions::default(), "cam", srt_callers);
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
    publish_and_play(test, Adapter::Tokio, &with_rtmp(), "cam", |server| {
        let (publisher, _) = srt_callers(server);
        (publisher, Player::Ffprobe(server.rtmp_url("cam")))
    });
}

/// Published over RTMP, played over SRT.
#[test]
fn rtmp_publish_srt_play_tokio() {
    let test = "srt_interop/rtmp-to-srt";
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    publish_and_play(test, Adapter::Tokio, &with_rtmp(), "cam", |server| {
        let (_, player) = srt_callers(server);
        (Publisher::Ffmpeg(server.rtmp_url("cam")), player)
    });
}

/// `srt-live-transmit 'srt://…?streamid=read:live/cam' file://con > out.ts`,
/// then ffprobe decodes the recording.
#[test]
fn srt_live_transmit_reads_tokio() {
    let test = "srt_interop/srt-live-transmit";
    if !require_tools(test, &["ffmpeg", "ffprobe", "srt-live-transmit"]) {
        return;
    }
    let options = SrtOptions::default();
    publish_and_play(test, Adapter::Tokio, &options, "cam", |server| {
        let (publisher, _) = srt_callers(server);
        let read = Caller::read("cam", LATENCY_MS).slt_url(server.addr);
        (publisher, Player::SrtLiveTransmit(read))
    });
}

/// GStreamer `mpegtsmux ! srtsink` publishes, `srtsrc ! tsdemux` plays.
#[test]
fn gst_srtsink_srtsrc_tokio() {
    let test = "srt_interop/gst";
    if !require_gst_elements(test, srt::GST_ELEMENTS) {
        return;
    }
    let options = SrtOptions::default();
    publish_and_play(test, Adapter::Tokio, &options, "gst", |server| {
        (
            Publisher::Gst(Caller::publish("gst", LATENCY_MS), server.addr),
            Player::Gst(Caller::read("gst", LATENCY_MS), server.addr),
        )
    });
}
