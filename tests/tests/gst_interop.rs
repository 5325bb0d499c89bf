//! GStreamer `rtmp2sink` publishes 10 s of H.264 + AAC (2 s GOP) to an
//! in-process arcly server; `rtmp2src` joins mid-stream and decodes with
//! libav. Same checks as the ffmpeg scenario, on every adapter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use arcly_tests::tools::require_gst_elements;
use arcly_tests::{gst, scenario, Adapter, TestServer, Watchdog};

fn gst_publish_gst_play(adapter: Adapter) {
    let test = format!("gst_interop/{}", adapter.name());
    if !require_gst_elements(&test, gst::ELEMENTS) {
        return;
    }
    let _watchdog = Watchdog::new(&test, Duration::from_secs(120));
    arcly_tests::init_logging();
    let server = TestServer::start(adapter);
    let report = scenario::run_gst(&test, server.addr, "gst", Some(&server.engine));
    report.assert_viewer_saw_everything();
}

#[test]
fn gst_on_tokio() {
    gst_publish_gst_play(Adapter::Tokio);
}

#[test]
fn gst_on_async_io_smol() {
    gst_publish_gst_play(Adapter::AsyncIoSmol);
}

#[test]
fn gst_on_async_io_async_std() {
    gst_publish_gst_play(Adapter::AsyncIoAsyncStd);
}

#[test]
fn gst_on_blocking() {
    gst_publish_gst_play(Adapter::Blocking);
}

/// Cross-client: ffmpeg publishes, GStreamer plays.
#[test]
fn ffmpeg_publishes_gst_plays_tokio() {
    let test = "gst_interop/ffmpeg-to-gst";
    if !require_gst_elements(test, gst::ELEMENTS) || !arcly_tests::require_tools(test, &["ffmpeg"])
    {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(120));
    arcly_tests::init_logging();
    let server = TestServer::start(Adapter::Tokio);
    let report = scenario::run(
        test,
        server.addr,
        "x1",
        scenario::Publisher::Ffmpeg,
        scenario::Player::Gst,
        Some(&server.engine),
    );
    report.assert_viewer_saw_everything();
}

/// Cross-client: GStreamer publishes, ffprobe plays.
#[test]
fn gst_publishes_ffprobe_plays_tokio() {
    let test = "gst_interop/gst-to-ffprobe";
    if !require_gst_elements(test, gst::ELEMENTS) || !arcly_tests::require_tools(test, &["ffprobe"])
    {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(120));
    arcly_tests::init_logging();
    let server = TestServer::start(Adapter::Tokio);
    let report = scenario::run(
        test,
        server.addr,
        "x2",
        scenario::Publisher::Gst,
        scenario::Player::Ffprobe,
        Some(&server.engine),
    );
    report.assert_viewer_saw_everything();
}
