//! Origin–edge relay with `arcly --pull-on-demand` (server/src/relay.rs).
//!
//! One origin arcly fed by ffmpeg over RTMP and two edge arclys pulling
//! `cam/*` from it on demand (`rtmp://ORIGIN/live/{name}`):
//! - viewers on both edges (ffprobe over RTMP on each edge, over RTSP on
//!   the second) are held while the edge connects to the origin, then
//!   decode every frame from their first keyframe to the publisher's last
//!   one (no gap in the 40 ms video timeline), and exit when the publisher
//!   ends (the end travels origin → edge → viewer);
//! - with a new publisher, an ffmpeg viewer on an edge decodes; the origin
//!   is killed (SIGKILL): the edge logs the loss and the viewer's ffmpeg
//!   exits within seconds (no hang); the origin comes back on the same
//!   port with a new publisher and new viewers on both edges play;
//! - with no viewer left, the edge closes the pull after its grace time;
//! - a source that cannot be reached: the viewer waits, then is refused
//!   (the edge logs the reason, the viewer exits with an error).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use arcly_tests::ffmpeg::{self, Kind, PublishSpec};
use arcly_tests::net::free_port;
use arcly_tests::{binary, require_tools, Proc, Watchdog};

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

fn origin(bin: &std::path::PathBuf, port: u16) -> Proc {
    let addr = format!("127.0.0.1:{port}");
    let mut p = binary::spawn(
        bin,
        &[
            "--rtmp", &addr, "--rtsp", "off", "--http", "off", "--srt", "off",
        ],
    );
    listening(&mut p, "RTMP");
    p
}

fn edge(bin: &std::path::PathBuf, source: &str) -> (Proc, SocketAddr, SocketAddr) {
    let mut p = binary::spawn(
        bin,
        &[
            "--rtmp",
            "127.0.0.1:0",
            "--rtsp",
            "127.0.0.1:0",
            "--http",
            "off",
            "--srt",
            "off",
            "--pull-on-demand",
            source,
            "--pull-on-demand-grace",
            "2",
            "--pull-on-demand-wait",
            "5",
        ],
    );
    let rtmp = listening(&mut p, "RTMP");
    let rtsp = listening(&mut p, "RTSP");
    (p, rtmp, rtsp)
}

fn publish(test: &str, origin: u16, seconds: u32) -> Proc {
    let spec = PublishSpec {
        seconds,
        ..PublishSpec::default()
    };
    let mut p = Proc::spawn(
        &format!("{test}:publish"),
        &mut ffmpeg::publish_command(&format!("rtmp://127.0.0.1:{origin}/live/cam"), &spec),
    );
    assert!(
        p.wait_for(Duration::from_secs(15), |out, _| ffmpeg::progress_frame(
            out
        )
        .is_some_and(|n| n >= 5)),
        "{test}: publisher did not start: {}",
        p.describe()
    );
    p
}

/// Video pts (ms) a viewer decoded, checking it exited cleanly without
/// decoding errors.
fn video_pts(test: &str, p: &mut Proc) -> Vec<i64> {
    let status = p.wait_timeout(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "{test}: {} did not end cleanly: {}",
        p.name(),
        p.describe()
    );
    let errors = ffmpeg::error_lines(&p.stderr());
    assert!(errors.is_empty(), "{test}: {} errors: {errors:?}", p.name());
    let frames = ffmpeg::parse_frames(&p.stdout());
    let video: Vec<_> = frames.iter().filter(|f| f.kind == Kind::Video).collect();
    assert!(
        video.first().is_some_and(|f| f.key),
        "{test}: {} does not start on a keyframe",
        p.name()
    );
    let mut pts: Vec<i64> = video.iter().filter_map(|f| f.pts).collect();
    pts.sort_unstable();
    pts
}

#[test]
fn origin_two_edges_on_demand() {
    let test = "relay/origin_edge";
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let Some(bin) = binary::arcly_bin(test) else {
        return;
    };
    let _watchdog = Watchdog::new(test, Duration::from_secs(100));
    let port = free_port();
    let mut org = origin(&bin, port);
    let source = format!("cam/*=rtmp://127.0.0.1:{port}/live/{{name}}");
    let (mut edge1, e1_rtmp, _) = edge(&bin, &source);
    let (mut edge2, e2_rtmp, e2_rtsp) = edge(&bin, &source);

    // 1. Every frame through both edges; the publisher's end reaches the
    // viewers.
    let mut publisher = publish(test, port, 8);
    let rw = Duration::from_secs(10);
    let mut viewers = [
        Proc::spawn(
            "edge1-rtmp",
            &mut ffmpeg::play_command(&format!("rtmp://{e1_rtmp}/cam/cam"), rw),
        ),
        Proc::spawn(
            "edge2-rtmp",
            &mut ffmpeg::play_command(&format!("rtmp://{e2_rtmp}/cam/cam"), rw),
        ),
        Proc::spawn(
            "edge2-rtsp",
            &mut ffmpeg::play_command(&format!("rtsp://{e2_rtsp}/cam/cam"), rw),
        ),
    ];
    let published = publisher.wait_timeout(Duration::from_secs(20));
    assert!(
        published.is_some_and(|s| s.success()),
        "{test}: {}",
        publisher.describe()
    );
    let total = ffmpeg::progress_frame(&publisher.stdout()).unwrap_or(0);
    for v in &mut viewers {
        let pts = video_pts(test, v);
        let name = v.name().to_owned();
        // Every frame from the first keyframe on: 40 ms apart (FLV: ms;
        // RTSP: 90 kHz), no gap.
        let step = if name.ends_with("rtsp") { 3600 } else { 40 };
        let gaps: Vec<_> = pts
            .windows(2)
            .filter(|w| w[1] - w[0] > step + step / 40)
            .collect();
        assert!(gaps.is_empty(), "{test}: {name} missed frames: {gaps:?}");
        // Up to the publisher's last frame.
        assert!(
            pts.len() >= 100,
            "{test}: {name}: only {} pictures of {total}",
            pts.len()
        );
        let last = pts.last().copied().unwrap_or_default();
        assert!(
            last >= (i64::try_from(total).unwrap() - 2) * step,
            "{test}: {name}: last picture at {last} ({step} a frame), publisher sent {total} frames"
        );
    }
    for e in [&mut edge1, &mut edge2] {
        assert!(
            e.stderr()
                .contains("first viewer, connecting to the source")
                && e.stderr().contains("request waits for admission"),
            "{test}: {}",
            e.describe()
        );
    }

    // 2. The origin dies under a playing viewer: it ends, no hang.
    let mut publisher = publish(test, port, 40);
    let mut stayer = Proc::spawn(
        "edge1-stayer",
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "level+warning"])
            .args(["-progress", "pipe:1", "-stats_period", "0.2"])
            .args(["-rw_timeout", "30000000"])
            .arg("-i")
            .arg(format!("rtmp://{e1_rtmp}/cam/cam"))
            .args(["-f", "null", "-"]),
    );
    assert!(
        stayer.wait_for(Duration::from_secs(15), |out, _| {
            ffmpeg::progress_frame(out).is_some_and(|n| n >= 25)
        }),
        "{test}: viewer did not play: {}\n{}",
        stayer.describe(),
        edge1.describe()
    );
    org.kill();
    assert!(
        stayer.wait_timeout(Duration::from_secs(10)).is_some(),
        "{test}: the viewer hangs after the origin died: {}",
        stayer.describe()
    );
    assert!(
        edge1.wait_for(Duration::from_secs(5), |_, err| err
            .contains("source lost; stream ended")),
        "{test}: {}",
        edge1.describe()
    );
    publisher.kill();

    // 3. The origin returns: new viewers on both edges play.
    let _org = origin(&bin, port);
    let mut publisher = publish(test, port, 30);
    for (name, url) in [
        ("edge1-again", format!("rtmp://{e1_rtmp}/cam/cam")),
        ("edge2-again", format!("rtsp://{e2_rtsp}/cam/cam")),
    ] {
        let mut c = ffmpeg::play_command(&url, rw);
        c.args(["-read_intervals", "%+3"]);
        let mut v = Proc::spawn(name, &mut c);
        let pts = video_pts(test, &mut v);
        assert!(pts.len() >= 40, "{test}: {name}: {} pictures", pts.len());
    }

    // 4. Nobody watches: the pull is closed after the grace time (2 s).
    assert!(
        edge1.wait_for(Duration::from_secs(8), |_, err| err
            .contains("no viewer for the grace time")),
        "{test}: {}",
        edge1.describe()
    );
    publisher.kill();
    assert!(edge1.try_status().is_none() && edge2.try_status().is_none());
}

#[test]
fn unreachable_source_refuses_after_the_wait() {
    let test = "relay/unreachable";
    if !require_tools(test, &["ffprobe"]) {
        return;
    }
    let Some(bin) = binary::arcly_bin(test) else {
        return;
    };
    let _watchdog = Watchdog::new(test, Duration::from_secs(40));
    let dead = free_port();
    let (mut e, rtmp, _) = edge(
        &bin,
        &format!("cam/*=rtmp://127.0.0.1:{dead}/live/{{name}}"),
    );
    let mut v = Proc::spawn(
        "viewer",
        &mut ffmpeg::play_command(&format!("rtmp://{rtmp}/cam/x"), Duration::from_secs(20)),
    );
    // Held for the 5 s wait, then refused: well before its own 20 s timeout.
    let status = v.wait_timeout(Duration::from_secs(12));
    assert!(
        status.is_some_and(|s| !s.success()),
        "{test}: the viewer was not refused: {}",
        v.describe()
    );
    assert!(
        v.elapsed() >= Duration::from_secs(4),
        "{test}: refused at once instead of waiting: {:?}",
        v.elapsed()
    );
    assert!(
        e.wait_for(Duration::from_secs(2), |_, err| err
            .contains("unreachable: connect")
            && err.contains("viewer refused")),
        "{test}: {}",
        e.describe()
    );
    assert!(e.try_status().is_none(), "{}", e.describe());
}

#[test]
fn config_file_source_on_demand() {
    let test = "relay/config";
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let Some(bin) = binary::arcly_bin(test) else {
        return;
    };
    let _watchdog = Watchdog::new(test, Duration::from_secs(60));
    let port = free_port();
    let _org = origin(&bin, port);
    let dir = std::env::temp_dir().join(format!("arcly-relay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("arcly.toml");
    std::fs::write(
        &file,
        format!(
            "[paths.\"cam/*\"]\nsource = \"rtmp://127.0.0.1:{port}/live/{{name}}\"\nsource_on_demand = true\n"
        ),
    )
    .unwrap();
    let mut e = binary::spawn(
        &bin,
        &[
            "--config",
            file.to_str().unwrap(),
            "--rtmp",
            "127.0.0.1:0",
            "--rtsp",
            "off",
            "--http",
            "off",
            "--srt",
            "off",
        ],
    );
    let rtmp = listening(&mut e, "RTMP");
    let mut publisher = publish(test, port, 20);
    let mut c = ffmpeg::play_command(&format!("rtmp://{rtmp}/cam/cam"), Duration::from_secs(10));
    c.args(["-read_intervals", "%+3"]);
    let mut v = Proc::spawn("config-viewer", &mut c);
    let pts = video_pts(test, &mut v);
    assert!(
        pts.len() >= 40
            && e.stderr()
                .contains("first viewer, connecting to the source"),
        "{test}: {} pictures: {}",
        pts.len(),
        e.describe()
    );
    publisher.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
