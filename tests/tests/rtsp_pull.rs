//! `arcly --pull KEY=URL` with real sources and viewers.
//!
//! RTSP: a camera stand-in (GStreamer's RTSP server through python3-gi,
//! `tests/tools/rtsp_camera.py`: H.264 + AAC, Digest authentication only)
//! is pulled with `--pull live/cam=rtsp://cam:s3cret@…/cam`; ffprobe
//! viewers over RTMP and RTSP decode video and audio starting on a
//! keyframe; the camera is killed (the pull logs the loss and retries with
//! back-off) and restarted on the same port: an ffmpeg viewer that stayed
//! connected through the outage decodes on (its frame count grows by a
//! second's worth after the restart, without errors), and a new viewer
//! decodes the stream from a keyframe.
//!
//! RTMP: an RTMP source (an in-process arcly server fed by ffmpeg) is
//! pulled with `--pull live/copy=rtmp://…/live/cam` and an ffprobe viewer
//! of `live/copy` decodes it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use arcly::Engine;
use arcly_tests::ffmpeg::{self, Kind, PublishSpec};
use arcly_tests::net::free_port;
use arcly_tests::{binary, require_tools, Adapter, Proc, TestServer, Watchdog};

/// The `PROTO listening on ADDR` banner address of a spawned arcly.
fn listening(proc: &mut Proc, proto: &str) -> SocketAddr {
    let marker = format!("{proto} listening on ");
    let mut found = None;
    proc.wait_for(Duration::from_secs(10), |out, _| {
        found = out.lines().find_map(|l| {
            l.split(&marker)
                .nth(1)
                .and_then(|a| a.split_whitespace().next())
                .and_then(|a| a.parse().ok())
        });
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no {proto} address: {}", proc.describe()))
}

/// ffprobe reading `url` for 3 s of media: (video frames, audio frames,
/// first video frame is a keyframe).
fn view(label: &str, url: &str) -> (usize, usize, bool) {
    let mut c = Command::new("ffprobe");
    c.args(["-hide_banner", "-loglevel", "level+warning"]);
    if url.starts_with("rtsp://") {
        c.args(["-rtsp_transport", "tcp", "-timeout", "5000000"]);
    } else {
        c.args(["-rw_timeout", "5000000"]);
    }
    c.args(["-read_intervals", "%+3"])
        .args([
            "-show_entries",
            "frame=media_type,key_frame,pts,pkt_dts,pict_type",
            "-of",
            "compact",
        ])
        .arg(url);
    let mut p = Proc::spawn(label, &mut c);
    let status = p.wait_timeout(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "{label}: ffprobe failed: {}",
        p.describe()
    );
    let frames = ffmpeg::parse_frames(&p.stdout());
    let video: Vec<_> = frames.iter().filter(|f| f.kind == Kind::Video).collect();
    let audio = frames.iter().filter(|f| f.kind == Kind::Audio).count();
    (video.len(), audio, video.first().is_some_and(|f| f.key))
}

fn camera(port: u16) -> Proc {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/rtsp_camera.py");
    let mut c = Command::new("/usr/bin/python3");
    c.arg(script).args([&port.to_string(), "cam", "s3cret"]);
    let mut p = Proc::spawn("rtsp-camera", &mut c);
    assert!(
        p.wait_for(Duration::from_secs(10), |out, _| out.contains("ready")),
        "camera did not start: {}",
        p.describe()
    );
    p
}

fn camera_available(test: &str) -> bool {
    let ok = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); gi.require_version('GstRtsp', '1.0'); from gi.repository import GstRtspServer",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = format!("{test}: python3-gi with GstRtspServer is not installed");
        if arcly_tests::in_ci() {
            panic!("{msg}; CI=true so this test may not be skipped");
        }
        eprintln!("SKIPPED {msg}");
    }
    ok && arcly_tests::tools::require_gst_elements(
        test,
        &["x264enc", "avenc_aac", "rtph264pay", "rtpmp4gpay"],
    )
}

#[test]
fn pull_rtsp_camera_with_digest_and_resume_after_restart() {
    let test = "rtsp_pull/camera";
    if !require_tools(test, &["ffprobe"]) || !camera_available(test) {
        return;
    }
    let Some(bin) = binary::arcly_bin(test) else {
        return;
    };
    let _watchdog = Watchdog::new(test, Duration::from_secs(90));
    let port = free_port();
    let mut cam = camera(port);
    let pull = format!("live/cam=rtsp://cam:s3cret@127.0.0.1:{port}/cam");
    let mut server = binary::spawn(
        &bin,
        &[
            "--rtmp",
            "127.0.0.1:0",
            "--rtsp",
            "127.0.0.1:0",
            "--http",
            "off",
            "--srt",
            "off",
            "--pull",
            &pull,
        ],
    );
    let rtmp = listening(&mut server, "RTMP");
    let rtsp = listening(&mut server, "RTSP");
    assert!(
        server.wait_for(Duration::from_secs(15), |_, err| err
            .contains("source playing, stream published")),
        "{test}: the pull never played: {}",
        server.describe()
    );
    // The password never reaches the log.
    assert!(!server.stderr().contains("s3cret"), "{}", server.describe());

    let (v, a, key) = view(&format!("{test}:rtmp"), &format!("rtmp://{rtmp}/live/cam"));
    assert!(
        v >= 40 && a >= 50 && key,
        "{test}: rtmp viewer: {v} pictures, {a} audio frames, keyframe first {key}"
    );
    let (v, a, key) = view(&format!("{test}:rtsp"), &format!("rtsp://{rtsp}/live/cam"));
    assert!(
        v >= 40 && a >= 50 && key,
        "{test}: rtsp viewer: {v} pictures, {a} audio frames, keyframe first {key}"
    );

    // A viewer that stays through the outage: ffmpeg decoding to null,
    // reporting its decoded frame count.
    let mut stayer = Proc::spawn(
        &format!("{test}:stayer"),
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "level+warning"])
            .args(["-progress", "pipe:1", "-stats_period", "0.2"])
            .args(["-rw_timeout", "30000000"])
            .arg("-i")
            .arg(format!("rtmp://{rtmp}/live/cam"))
            .args(["-f", "null", "-"]),
    );
    let frames = |p: &Proc| ffmpeg::progress_frame(&p.stdout()).unwrap_or(0);
    assert!(
        stayer.wait_for(Duration::from_secs(15), |out, _| ffmpeg::progress_frame(
            out
        )
        .is_some_and(|n| n >= 25)),
        "{test}: the staying viewer did not start: {}",
        stayer.describe()
    );

    // The camera goes away: the pull says so and retries.
    cam.kill();
    assert!(
        server.wait_for(Duration::from_secs(15), |_, err| err
            .contains("pull: source lost; reconnecting")),
        "{test}: loss not logged: {}",
        server.describe()
    );
    // It comes back on the same address: the held stream resumes.
    let _cam = camera(port);
    assert!(
        server.wait_for(Duration::from_secs(30), |_, err| err
            .contains("source playing again, stream resumed")),
        "{test}: the pull did not resume: {}",
        server.describe()
    );
    let at_resume = frames(&stayer);
    assert!(
        stayer.wait_for(Duration::from_secs(15), |out, _| ffmpeg::progress_frame(
            out
        )
        .is_some_and(|n| n >= at_resume + 25)),
        "{test}: the viewer that stayed did not get the resumed stream (at {at_resume}): {}",
        stayer.describe()
    );
    assert!(
        stayer.try_status().is_none(),
        "{test}: {}",
        stayer.describe()
    );
    let errors = ffmpeg::error_lines(&stayer.stderr());
    assert!(errors.is_empty(), "{test}: viewer errors: {errors:?}");
    // The timeline went on across the outage (no timestamps going back).
    assert!(
        !stayer.stderr().to_ascii_lowercase().contains("non-monoton"),
        "{test}: timestamps went back: {}",
        stayer.describe()
    );
    stayer.stop();
    let (v, a, key) = view(
        &format!("{test}:rtmp-again"),
        &format!("rtmp://{rtmp}/live/cam"),
    );
    assert!(
        v >= 40 && a >= 50 && key,
        "{test}: after restart: {v} pictures, {a} audio frames, keyframe first {key}"
    );
    assert!(server.try_status().is_none(), "{}", server.describe());
}

#[test]
fn pull_rtmp_source() {
    let test = "rtsp_pull/rtmp";
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let Some(bin) = binary::arcly_bin(test) else {
        return;
    };
    let _watchdog = Watchdog::new(test, Duration::from_secs(60));
    let source = TestServer::start_with(
        Adapter::Tokio,
        Engine::with_defaults(),
        arcly::rtmp::ServerConfig::default(),
    );
    let spec = PublishSpec {
        seconds: 20,
        ..PublishSpec::default()
    };
    let mut publisher = Proc::spawn(
        &format!("{test}:ffmpeg-publish"),
        &mut ffmpeg::publish_command(&format!("rtmp://{}/live/cam", source.addr), &spec),
    );
    let pull = format!("live/copy=rtmp://{}/live/cam", source.addr);
    let mut server = binary::spawn(
        &bin,
        &[
            "--rtmp",
            "127.0.0.1:0",
            "--rtsp",
            "off",
            "--http",
            "off",
            "--srt",
            "off",
            "--pull",
            &pull,
        ],
    );
    let rtmp = listening(&mut server, "RTMP");
    assert!(
        server.wait_for(Duration::from_secs(20), |_, err| err
            .contains("source playing, stream published")),
        "{test}: the pull never played: {}\n{}",
        server.describe(),
        publisher.describe()
    );
    let (v, a, key) = view(&format!("{test}:view"), &format!("rtmp://{rtmp}/live/copy"));
    assert!(
        v >= 40 && a >= 50 && key,
        "{test}: {v} pictures, {a} audio frames, keyframe first {key}"
    );
    publisher.stop();
}
