//! Recording (`arcly_tokio::record`): ffmpeg publishes 6 s of H.264 + AAC
//! over RTMP to an in-process arcly with recording on; once the publisher
//! is gone, the recorded fragmented MP4 is checked as a player sees it:
//! - one file per publishing session, `DIR/live/cam/<YYYYmmdd-HHMMSS>.mp4`
//!   (a second 2 s session of the same stream gets its own, complete file);
//! - ffprobe (`-count_frames`) finds a video and an audio stream, at least
//!   95 % of the published video frames, and a duration within 0.5 s of
//!   what was published;
//! - `ffmpeg -v error -i FILE -f null -` decodes it without any error.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use arcly_tests::ffmpeg::{self, PublishSpec};
use arcly_tests::net::TempDir;
use arcly_tests::servers::tokio_thread;
use arcly_tests::{init_logging, require_tools, Adapter, Proc, TestServer, Watchdog};
use arcly_tokio::record::{record_streams, RecordingConfig};

fn recorded_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Video frames counted by `ffprobe -count_frames` and the duration.
fn probe_video(test: &str, file: &std::path::Path) -> (u64, f64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames:format=duration"])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{test}: no {k} in {text}"))
            .to_owned()
    };
    (
        value("nb_read_frames").parse().unwrap_or(0),
        value("duration").parse().unwrap_or(0.0),
    )
}

#[test]
fn ffmpeg_publish_is_recorded_to_a_playable_mp4() {
    let test = "ffmpeg_publish_is_recorded_to_a_playable_mp4";
    let _wd = Watchdog::new(test, Duration::from_secs(55));
    init_logging();
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let dir = TempDir::new(test);
    let server = TestServer::start(Adapter::Tokio);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let engine = server.engine.clone();
    let root = dir.path().join("rec");
    let config = RecordingConfig::new(&root);
    let recorder = tokio_thread("arcly-recorder", move || async move {
        record_streams(engine, config, async move {
            let _ = stop_rx.await;
        })
        .await;
    });

    let spec = PublishSpec {
        seconds: 6,
        ..PublishSpec::default()
    };
    let mut publisher = Proc::spawn(
        "ffmpeg-publish",
        &mut ffmpeg::publish_command(&server.url("cam"), &spec),
    );
    let (status, stopped) = publisher.wait_or_stop(Duration::from_secs(25));
    assert!(
        !stopped && status.is_some_and(|s| s.success()),
        "{test}: publisher failed\n{}",
        publisher.describe()
    );
    let published = ffmpeg::progress_frame(&publisher.stdout()).unwrap_or(spec.total_frames());
    assert!(
        published >= spec.total_frames() - 1,
        "{test}: published {published}"
    );

    // The stream ends with the publisher; the recording task then completes
    // its file on its own.
    let wait_ended = || {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !server.engine.streams().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            server.engine.streams().is_empty(),
            "{test}: stream did not end"
        );
        std::thread::sleep(Duration::from_millis(700));
    };
    wait_ended();

    // A second session of the same stream gets a file of its own.
    let second = PublishSpec {
        seconds: 2,
        ..PublishSpec::default()
    };
    let mut publisher = Proc::spawn(
        "ffmpeg-publish-2",
        &mut ffmpeg::publish_command(&server.url("cam"), &second),
    );
    let (status, stopped) = publisher.wait_or_stop(Duration::from_secs(15));
    assert!(
        !stopped && status.is_some_and(|s| s.success()),
        "{test}: second publisher failed\n{}",
        publisher.describe()
    );
    wait_ended();
    let _ = stop_tx.send(());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !recorder.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(recorder.is_finished(), "{test}: recorder did not stop");
    let _ = recorder.join();

    let mut files = recorded_files(&root.join("live").join("cam"));
    assert_eq!(
        files.len(),
        2,
        "{test}: one recording per session: {files:?}"
    );
    // The 6 s session is the larger file.
    files.sort_by_key(|f| std::cmp::Reverse(std::fs::metadata(f).map_or(0, |m| m.len())));
    let (short_frames, short_secs) = probe_video(test, &files[1]);
    assert!(
        short_frames * 100 >= second.total_frames() * 95 && (short_secs - 2.0).abs() <= 0.5,
        "{test}: second session: {short_frames} frames, {short_secs} s"
    );
    let file = &files[0];
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.len() == "YYYYmmdd-HHMMSS.mp4".len()
            && name.ends_with(".mp4")
            && name.as_bytes()[8] == b'-',
        "{test}: file name {name}"
    );

    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-of", "json"])
        .args([
            "-show_entries",
            "stream=codec_type,codec_name,nb_read_frames:format=duration",
        ])
        .arg(file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&probe.stderr);
    assert!(
        probe.status.success() && stderr.trim().is_empty(),
        "{test}: ffprobe: {stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&probe.stdout).unwrap();
    let streams = json["streams"].as_array().unwrap();
    let of = |kind: &str| {
        streams
            .iter()
            .find(|s| s["codec_type"] == kind)
            .unwrap_or_else(|| panic!("{test}: no {kind} stream: {json}"))
    };
    let (video, audio) = (of("video"), of("audio"));
    assert_eq!(video["codec_name"], "h264", "{test}: {json}");
    assert_eq!(audio["codec_name"], "aac", "{test}: {json}");
    let count = |s: &serde_json::Value| {
        s["nb_read_frames"]
            .as_str()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let frames = count(video);
    assert!(
        frames * 100 >= published * 95 && frames <= published,
        "{test}: {frames} of {published} video frames recorded"
    );
    assert!(count(audio) > 0, "{test}: no audio frames: {json}");
    let duration: f64 = json["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("{test}: no duration: {json}"));
    let published_secs = published as f64 / f64::from(spec.fps);
    assert!(
        (duration - published_secs).abs() <= 0.5,
        "{test}: duration {duration} s, published {published_secs} s"
    );

    let decode = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&decode.stderr);
    assert!(
        decode.status.success() && errors.trim().is_empty(),
        "{test}: decoding errors: {errors}"
    );
    eprintln!("{test}: {frames}/{published} video frames, {duration:.3} s recorded in {name}");
}
