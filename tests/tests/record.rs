//! Recording (`arcly::record` jobs run by `arcly_tokio::record` and, in the
//! last test, `arcly_blocking::record_streams`): ffmpeg publishes 6 s of H.264 + AAC
//! over RTMP to an in-process arcly with recording on; once the publisher
//! is gone, the recorded fragmented MP4 is checked as a player sees it:
//! - one file per publishing session, `DIR/live/cam/<YYYYmmdd-HHMMSS>.mp4`
//!   (a second 2 s session of the same stream gets its own, complete file);
//! - ffprobe (`-count_frames`) finds a video and an audio stream, at least
//!   95 % of the published video frames, and a duration within 0.5 s of
//!   what was published;
//! - `ffmpeg -v error -i FILE -f null -` decodes it without any error.
//!
//! A second test keeps only a few frames in the GOP cache, so a recorder
//! that subscribed late (as the old 500 ms poll of the stream list did)
//! would lose the stream's first GOP: the recording must start with the
//! stream's first keyframe (duration and frame count of the whole publish),
//! because the recorder is woken by the engine's stream announcement.
//!
//! A third, tool-free test publishes in-process: a stream that refused the
//! recorder (subscriber limit) is recorded after the 1 s retry once a slot
//! frees, a new session published while the previous one's recording is
//! still finishing gets its own file, and the recorder subscribes to a new
//! stream within 300 ms of the publish (2 ms measured).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use arcly::engine::{AppConfig, StreamKey};
use arcly::Engine;
use arcly_tests::ffmpeg::{self, PublishSpec};
use arcly_tests::net::TempDir;
use arcly_tests::servers::tokio_thread;
use arcly_tests::synth::{self, SynthSpec};
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

/// A `record_streams` task on its own tokio thread, stopped by [`stop`](Self::stop).
struct RecorderTask {
    stop_tx: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl RecorderTask {
    fn start(engine: Engine, root: &std::path::Path) -> Self {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let config = RecordingConfig::new(root);
        let thread = tokio_thread("arcly-recorder", move || async move {
            record_streams(engine, config, async move {
                let _ = stop_rx.await;
            })
            .await;
        });
        RecorderTask { stop_tx, thread }
    }

    /// Shuts the recorder down and waits (10 s at most) for it to finish.
    fn stop(self, test: &str) {
        let _ = self.stop_tx.send(());
        assert!(
            wait_for(Duration::from_secs(10), || self.thread.is_finished()).is_some(),
            "{test}: recorder did not stop"
        );
        let _ = self.thread.join();
    }
}

/// ffmpeg publishes `spec` to `live/cam`; returns the frames it sent.
fn publish(
    test: &str,
    label: &str,
    server: &TestServer,
    spec: &PublishSpec,
    limit: Duration,
) -> u64 {
    let mut publisher = Proc::spawn(
        label,
        &mut ffmpeg::publish_command(&server.url("cam"), spec),
    );
    let (status, stopped) = publisher.wait_or_stop(limit);
    assert!(
        !stopped && status.is_some_and(|s| s.success()),
        "{test}: {label} failed\n{}",
        publisher.describe()
    );
    ffmpeg::progress_frame(&publisher.stdout()).unwrap_or(spec.total_frames())
}

/// Waits (5 s at most) until the engine lists no stream.
fn wait_streams_ended(test: &str, engine: &Engine) {
    assert!(
        wait_for(Duration::from_secs(5), || engine.streams().is_empty()).is_some(),
        "{test}: stream did not end"
    );
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
    let root = dir.path().join("rec");
    let recorder = RecorderTask::start(server.engine.clone(), &root);

    let spec = PublishSpec {
        seconds: 6,
        ..PublishSpec::default()
    };
    let published = publish(
        test,
        "ffmpeg-publish",
        &server,
        &spec,
        Duration::from_secs(25),
    );
    assert!(
        published >= spec.total_frames() - 1,
        "{test}: published {published}"
    );

    // The stream ends with the publisher; the recording task then completes
    // its file on its own.
    let wait_ended = || {
        wait_streams_ended(test, &server.engine);
        std::thread::sleep(Duration::from_millis(700));
    };
    wait_ended();

    // A second session of the same stream gets a file of its own.
    let second = PublishSpec {
        seconds: 2,
        ..PublishSpec::default()
    };
    publish(
        test,
        "ffmpeg-publish-2",
        &server,
        &second,
        Duration::from_secs(15),
    );
    wait_ended();
    recorder.stop(test);

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

/// With a GOP cache of a few frames, a recorder that subscribed more than a
/// few frames after the publish would start at the second keyframe (2 s
/// later): the file must hold the whole publish, from its first keyframe.
#[test]
fn recording_starts_with_the_first_keyframe_without_gop_cache() {
    let test = "recording_starts_with_the_first_keyframe_without_gop_cache";
    let _wd = Watchdog::new(test, Duration::from_secs(45));
    init_logging();
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let dir = TempDir::new(test);
    let server = TestServer::start(Adapter::Tokio);
    // Keyframe + 11 frames (~0.17 s of H.264 + AAC at 25 fps / 44.1 kHz):
    // past that, a new subscriber waits for the next keyframe.
    server
        .engine
        .add_app("live", AppConfig::default().with_gop_cache_frames(12));
    let root = dir.path().join("rec");
    let recorder = RecorderTask::start(server.engine.clone(), &root);

    // A 2 s GOP over 3 s: starting late means starting at 2 s.
    let spec = PublishSpec {
        seconds: 3,
        gop: 50,
        ..PublishSpec::default()
    };
    let published = publish(
        test,
        "ffmpeg-publish",
        &server,
        &spec,
        Duration::from_secs(20),
    );
    wait_streams_ended(test, &server.engine);
    recorder.stop(test);

    let files = recorded_files(&root.join("live").join("cam"));
    assert_eq!(files.len(), 1, "{test}: one recording: {files:?}");
    let (frames, secs) = probe_video(test, &files[0]);
    let published_secs = published as f64 / f64::from(spec.fps);
    assert!(
        frames + 1 >= published && (secs - published_secs).abs() <= 0.2,
        "{test}: recorded {frames} video frames / {secs} s of {published} / {published_secs} s"
    );
    eprintln!("{test}: {frames}/{published} video frames, {secs:.3} s recorded");
}

/// Sends synthetic pictures `range` (each with an audio frame; 0 is a
/// keyframe and comes after the configs).
fn send_frames(p: &mut arcly::engine::Publisher, range: std::ops::Range<u32>) {
    let spec = SynthSpec::default();
    if range.start == 0 {
        p.send(synth::video_config());
        p.send(synth::audio_config());
    }
    for i in range {
        let v = spec.video(i);
        let dts = v.dts;
        p.send(v);
        p.send(synth::audio_frame(i, dts));
    }
}

/// Subscribers of `key` (the recorder's subscription counts).
fn subscribers(engine: &Engine, key: &StreamKey) -> u64 {
    engine
        .stream_stats(key)
        .map_or(0, |s| s.snapshot().subscribers)
}

/// Waits until `cond` holds; the time it took, or `None` after `limit`.
fn wait_for(limit: Duration, cond: impl Fn() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Some(t0.elapsed())
}

/// In-process publishers (no external tool), the recorder's two paths that
/// are not a plain publish:
/// - a stream at its subscriber limit refuses the recorder; once a slot is
///   free (which announces nothing) it is recorded after the 1 s retry;
/// - a new session of a stream published while the recording of the
///   previous one is still finishing is recorded too (the end of that
///   recording makes the recorder read the list again), into its own file.
///
/// Also: the recorder subscribes to a new stream right after the publish.
#[test]
fn in_process_refused_subscription_and_session_handover_are_recorded() {
    let test = "in_process_refused_subscription_and_session_handover_are_recorded";
    let _wd = Watchdog::new(test, Duration::from_secs(30));
    init_logging();
    let dir = TempDir::new(test);
    let engine = Engine::new();
    engine.add_app("live", AppConfig::default().with_max_subscribers(1));
    let full = StreamKey::new("live", "full").unwrap();
    let cam = StreamKey::new("live", "cam").unwrap();

    // `full` is published and its only subscriber slot taken before the
    // recorder starts.
    let mut full_pub = engine.publish(full.clone()).unwrap();
    send_frames(&mut full_pub, 0..5);
    let viewer = engine.subscribe(&full).unwrap();

    let root = dir.path().join("rec");
    let recorder = RecorderTask::start(engine.clone(), &root);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(subscribers(&engine, &full), 1, "{test}: only the viewer");
    drop(viewer);
    let retried = wait_for(Duration::from_secs(3), || subscribers(&engine, &full) == 1);
    assert!(
        retried.is_some(),
        "{test}: the recorder never subscribed to the stream it was refused"
    );
    send_frames(&mut full_pub, 5..10);
    drop(full_pub);

    // Session A of `cam`: the recorder subscribes at once.
    let mut a = engine.publish(cam.clone()).unwrap();
    let joined = wait_for(Duration::from_secs(3), || subscribers(&engine, &cam) == 1);
    let joined = joined.unwrap_or_else(|| panic!("{test}: session A not recorded"));
    assert!(
        joined < Duration::from_millis(300),
        "{test}: recorder subscribed {joined:?} after the publish"
    );
    send_frames(&mut a, 0..10);
    drop(a);
    // Session B right away, while A's recording is still finishing.
    let mut b = engine.publish(cam.clone()).unwrap();
    let handed_over = wait_for(Duration::from_secs(5), || subscribers(&engine, &cam) == 1);
    assert!(handed_over.is_some(), "{test}: session B not recorded");
    send_frames(&mut b, 0..10);
    // B ends only once its recording holds data: `subscribers == 1` above
    // can still be A's finishing recorder, and a recorder joining B after
    // it ended would find nothing to record.
    let cam_dir = root.join("live").join("cam");
    let b_written = wait_for(Duration::from_secs(5), || {
        recorded_files(&cam_dir)
            .iter()
            .filter(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0))
            .count()
            == 2
    });
    assert!(
        b_written.is_some(),
        "{test}: session B's recording holds no data"
    );
    drop(b);

    wait_streams_ended(test, &engine);
    recorder.stop(test);
    let sizes = |name: &str| -> Vec<u64> {
        recorded_files(&root.join("live").join(name))
            .iter()
            .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
            .collect()
    };
    let (full_files, cam_files) = (sizes("full"), sizes("cam"));
    assert!(
        full_files.len() == 1 && full_files.iter().all(|&n| n > 0),
        "{test}: `full` files {full_files:?}"
    );
    assert!(
        cam_files.len() == 2 && cam_files.iter().all(|&n| n > 0),
        "{test}: one `cam` file per session: {cam_files:?}"
    );
    eprintln!(
        "{test}: retry after {retried:?}, subscribed {joined:?} after publish, \
         handover after {handed_over:?}"
    );
}

/// The same recording jobs on the blocking adapter
/// (`arcly_blocking::record_streams`: one thread per job, blocking file
/// calls): ffmpeg publishes 4 s to a blocking-adapter server, and the
/// recorded file holds at least 95 % of the published video frames, which
/// ffprobe counts and ffmpeg decodes without an error.
#[test]
fn ffmpeg_publish_is_recorded_on_blocking() {
    let test = "ffmpeg_publish_is_recorded_on_blocking";
    let _wd = Watchdog::new(test, Duration::from_secs(50));
    init_logging();
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let dir = TempDir::new(test);
    let server = TestServer::start(Adapter::Blocking);
    let root = dir.path().join("rec");
    let shutdown = arcly_blocking::Shutdown::new();
    let recorder = {
        let (engine, root, shutdown) = (server.engine.clone(), root.clone(), shutdown.clone());
        std::thread::spawn(move || {
            arcly_blocking::record_streams(engine, RecordingConfig::new(root), &shutdown);
        })
    };
    let spec = PublishSpec {
        seconds: 4,
        ..PublishSpec::default()
    };
    let published = publish(
        test,
        "ffmpeg-publish",
        &server,
        &spec,
        Duration::from_secs(20),
    );
    wait_streams_ended(test, &server.engine);
    std::thread::sleep(Duration::from_millis(700));
    shutdown.trigger();
    assert!(
        wait_for(Duration::from_secs(10), || recorder.is_finished()).is_some(),
        "{test}: recorder did not stop"
    );
    let _ = recorder.join();

    let files = recorded_files(&root.join("live").join("cam"));
    assert_eq!(files.len(), 1, "{test}: one recording: {files:?}");
    let (frames, secs) = probe_video(test, &files[0]);
    assert!(
        frames * 100 >= published * 95 && frames <= published,
        "{test}: {frames} of {published} video frames recorded"
    );
    assert!(
        (secs - 4.0).abs() <= 0.5,
        "{test}: duration {secs} s, published 4 s"
    );
    let decode = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(&files[0])
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&decode.stderr);
    assert!(
        decode.status.success() && errors.trim().is_empty(),
        "{test}: decoding errors: {errors}"
    );
    eprintln!("{test}: {frames}/{published} video frames, {secs:.3} s");
}
