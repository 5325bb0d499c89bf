//! ffmpeg publishes a 10 s lavfi test pattern (H.264 + AAC, 2 s GOP) to an
//! in-process arcly server; ffprobe joins mid-stream and decodes. The viewer
//! must decode every frame from the cached keyframe on (±1), start on a
//! keyframe, get audio, see monotonic timestamps and no decoder errors.
//! The same scenario runs on every adapter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use arcly_tests::{require_tools, scenario, Adapter, TestServer, Watchdog};

fn ffmpeg_publish_ffprobe_play(adapter: Adapter) {
    let test = format!("ffmpeg_interop/{}", adapter.name());
    if !require_tools(&test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let _watchdog = Watchdog::new(&test, Duration::from_secs(120));
    arcly_tests::init_logging();
    let server = TestServer::start(adapter);
    let report = scenario::run_ffmpeg(&test, server.addr, "cam", Some(&server.engine));
    report.assert_viewer_saw_everything();
}

#[test]
fn ffmpeg_on_tokio() {
    ffmpeg_publish_ffprobe_play(Adapter::Tokio);
}

#[test]
fn ffmpeg_on_async_io_smol() {
    ffmpeg_publish_ffprobe_play(Adapter::AsyncIoSmol);
}

#[test]
fn ffmpeg_on_async_io_async_std() {
    ffmpeg_publish_ffprobe_play(Adapter::AsyncIoAsyncStd);
}

#[test]
fn ffmpeg_on_blocking() {
    ffmpeg_publish_ffprobe_play(Adapter::Blocking);
}
