//! RTSP with real clients: ffmpeg publishes H.264 with B-frames + AAC over
//! RTSP/TCP (interleaved RTP), ffprobe plays over RTSP/TCP joining
//! mid-stream (on tokio, blocking, and async-io under smol and async-std); and across protocols, RTMP in → RTSP out and RTSP in → RTMP
//! out. The viewer must decode every frame from the cached keyframe on
//! (±1), start on a keyframe, get audio, see monotonic timestamps and print
//! no decoder warnings.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use arcly::rtsp::RtspSessionFactory;
use arcly::Engine;
use arcly_tests::scenario::{self, Player, Publisher};
use arcly_tests::{require_tools, Adapter, TestServer, Watchdog};

/// An RTSP and an RTMP server on one engine.
fn servers(adapter: Adapter) -> (TestServer, TestServer) {
    let engine = Engine::with_defaults();
    let rtsp = TestServer::start_factory(
        adapter,
        engine.clone(),
        Arc::new(RtspSessionFactory::allow_all(engine.clone())),
    );
    let rtmp = TestServer::start_with(adapter, engine, arcly::rtmp::ServerConfig::default());
    (rtsp, rtmp)
}

fn run(label: &str, adapter: Adapter, publish: Publisher, rtsp_in: bool, rtsp_out: bool) {
    run_with(label, adapter, publish, Player::Ffprobe, rtsp_in, rtsp_out);
}

fn run_with(
    label: &str,
    adapter: Adapter,
    publish: Publisher,
    player: Player,
    rtsp_in: bool,
    rtsp_out: bool,
) {
    let test = format!("rtsp_interop/{label}/{}", adapter.name());
    if !require_tools(&test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    if (publish == Publisher::Gst || player == Player::Gst)
        && !arcly_tests::tools::require_gst_elements(
            &test,
            &[
                "rtspclientsink",
                "rtspsrc",
                "rtph264depay",
                "rtpmp4gdepay",
                "x264enc",
                "avdec_h264",
                "avenc_aac",
            ],
        )
    {
        return;
    }
    let _watchdog = Watchdog::new(&test, Duration::from_secs(120));
    arcly_tests::init_logging();
    let (rtsp, rtmp) = servers(adapter);
    let url = |rtsp_url: bool| {
        if rtsp_url {
            format!("rtsp://{}/live/cam", rtsp.addr)
        } else {
            format!("rtmp://{}/live/cam", rtmp.addr)
        }
    };
    let report = scenario::run_urls(
        &test,
        &url(rtsp_in),
        &url(rtsp_out),
        "cam",
        publish,
        player,
        Some(&rtsp.engine),
    );
    report.assert_viewer_saw_everything();
    if publish == Publisher::FfmpegRtsp && player == Player::Ffprobe {
        // The composition offsets of B-frames survived RTP (which carries
        // presentation times only).
        assert!(
            report.playback.video_b_frames > report.playback.video / 3,
            "{test}: only {} of {} pictures are B-frames",
            report.playback.video_b_frames,
            report.playback.video
        );
    }
}

#[test]
fn ffmpeg_rtsp_publish_ffprobe_rtsp_play() {
    run(
        "rtsp-to-rtsp",
        Adapter::Tokio,
        Publisher::FfmpegRtsp,
        true,
        true,
    );
}

#[test]
fn ffmpeg_rtsp_on_blocking() {
    run(
        "rtsp-to-rtsp",
        Adapter::Blocking,
        Publisher::FfmpegRtsp,
        true,
        true,
    );
}

#[test]
fn rtmp_publish_rtsp_play() {
    run(
        "rtmp-to-rtsp",
        Adapter::Tokio,
        Publisher::Ffmpeg,
        false,
        true,
    );
}

#[test]
fn rtsp_publish_rtmp_play() {
    run(
        "rtsp-to-rtmp",
        Adapter::Tokio,
        Publisher::FfmpegRtsp,
        true,
        false,
    );
}

/// GStreamer `rtspclientsink` publishes (it sends `mode=RECORD` upper case),
/// ffprobe plays over RTSP.
#[test]
fn gst_rtspclientsink_publish_ffprobe_play() {
    run(
        "gst-rtsp-to-rtsp",
        Adapter::Tokio,
        Publisher::Gst,
        true,
        true,
    );
}

/// ffmpeg publishes over RTSP, GStreamer `rtspsrc` plays over TCP.
#[test]
fn ffmpeg_rtsp_publish_gst_rtspsrc_play() {
    run_with(
        "rtsp-to-gst-rtspsrc",
        Adapter::Tokio,
        Publisher::FfmpegRtsp,
        Player::Gst,
        true,
        true,
    );
}

/// The same RTSP publish and play on the async-io adapter under smol.
#[test]
fn ffmpeg_rtsp_on_async_io_smol() {
    run(
        "rtsp-to-rtsp",
        Adapter::AsyncIoSmol,
        Publisher::FfmpegRtsp,
        true,
        true,
    );
}

/// The same RTSP publish and play on the async-io adapter under async-std's executor.
#[test]
fn ffmpeg_rtsp_on_async_io_async_std() {
    run(
        "rtsp-to-rtsp",
        Adapter::AsyncIoAsyncStd,
        Publisher::FfmpegRtsp,
        true,
        true,
    );
}
