//! The shipped `arcly` binary with `--http`: ffmpeg publishes over RTMP,
//! the banner says where to watch, the player page and its hls.js are
//! served, and ffprobe plays the classic TS playlist through the binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use arcly_tests::binary::{arcly_bin, assert_stops_on_sigterm, spawn_rtmp_http};
use arcly_tests::ffmpeg::{self, PublishSpec};
use arcly_tests::hls;
use arcly_tests::http_client;
use arcly_tests::{require_tools, Proc, Watchdog};

#[test]
fn binary_serves_hls_and_the_player_page() {
    let test = "hls_binary/serve";
    let Some(bin) = arcly_bin(test) else {
        return;
    };
    let _wd = Watchdog::new(test, Duration::from_secs(55));
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let (mut server, rtmp, http) = spawn_rtmp_http(&bin);
    let out = server.stdout();
    let base = format!("http://127.0.0.1:{}/live/", http.port());
    assert!(
        out.contains(&base) && out.contains("index.m3u8"),
        "the banner does not say where to watch ({base}...):\n{out}"
    );

    let spec = PublishSpec {
        seconds: 12,
        ..PublishSpec::default()
    };
    let mut publisher = Proc::spawn(
        "ffmpeg-publish",
        &mut hls::publish_command(&format!("rtmp://{rtmp}/live/cam"), &spec),
    );
    let index = format!("http://{http}/live/cam/ts/index.m3u8");
    hls::wait_for_ok(&index, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{test}: {e}\n{}", publisher.describe()));

    // The player page and the hls.js it loads.
    let page =
        http_client::get(&format!("http://{http}/live/cam/"), Duration::from_secs(5)).unwrap();
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    let html = page.text();
    let script = html
        .split("<script src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("the page loads no script:\n{html}"));
    let js = http_client::get(&format!("http://{http}{script}"), Duration::from_secs(5)).unwrap();
    assert_eq!(js.status, 200, "{script}");
    assert!(
        js.body.len() > 100_000 && js.text().contains("Hls"),
        "{script} is not hls.js ({} bytes)",
        js.body.len()
    );

    // ffprobe plays the TS playlist through the binary.
    let mut player = Proc::spawn(
        "ffprobe-hls",
        &mut ffmpeg::play_command(&index, Duration::from_secs(8)),
    );
    let _ = publisher.wait_or_stop(Duration::from_secs(u64::from(spec.seconds) + 8));
    let _ = player.wait_or_stop(Duration::from_secs(10));
    let playback = ffmpeg::Playback::from_frames(&ffmpeg::parse_frames(&player.stdout()));
    let errors = ffmpeg::error_lines(&player.stderr());
    assert!(errors.is_empty(), "{errors:#?}\n{}", player.describe());
    assert!(
        playback.video >= 100 && playback.audio >= 150 && playback.starts_on_keyframe,
        "{playback:?}\n{}",
        player.describe()
    );

    assert_stops_on_sigterm(&mut server);
}
