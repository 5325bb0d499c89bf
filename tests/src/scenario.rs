//! The interop scenario every adapter runs: a real publisher streams a 10 s
//! test pattern, a real player joins mid-stream, and the test checks what the
//! player decoded against what was published after the join point.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::ffmpeg::{self, Playback, PublishSpec};
use crate::gst;
use crate::process::Proc;

/// What one run of the scenario saw.
#[derive(Debug, Clone)]
pub struct Report {
    /// Label for messages (`ffmpeg/tokio`, ...).
    pub label: String,
    /// Video frames the publisher sent in total.
    pub published: u64,
    /// The publisher's frame count when the player was started.
    pub join_frame: u64,
    /// Keyframe interval in frames.
    pub gop: u64,
    /// Summary of what the player decoded.
    pub playback: Playback,
    /// Error lines printed by the player.
    pub player_errors: Vec<String>,
    /// Error lines printed by the publisher.
    pub publisher_errors: Vec<String>,
    /// Whether the player had to be stopped (did not end by itself).
    pub player_stopped: bool,
    /// Seconds from the player's start to the publisher's end.
    pub played_for: Duration,
}

impl Report {
    /// Frames a viewer joining at `join_frame` must decode: everything from
    /// the keyframe at or before the join point (served from the GOP cache)
    /// to the end.
    pub fn expected_video(&self) -> u64 {
        let first = self.join_frame / self.gop * self.gop;
        self.published.saturating_sub(first)
    }

    /// Asserts what the viewer saw: video decoded within 1 frame of what was
    /// sent from the join point's keyframe on, starting on a keyframe, audio
    /// present for the same span, timestamps strictly increasing, no error
    /// lines from either client.
    pub fn assert_viewer_saw_everything(&self) {
        let p = &self.playback;
        let expected = self.expected_video();
        eprintln!(
            "{}: published {} frames, player joined at frame {} (GOP {}), expected {} video frames, \
             decoded {} video + {} audio frames, {} keyframes, video pts span {:?}",
            self.label,
            self.published,
            self.join_frame,
            self.gop,
            expected,
            p.video,
            p.audio,
            p.video_keyframes,
            p.video_span
        );
        assert!(
            self.publisher_errors.is_empty(),
            "{}: publisher printed errors:\n{}",
            self.label,
            self.publisher_errors.join("\n")
        );
        assert!(
            self.player_errors.is_empty(),
            "{}: player printed errors:\n{}",
            self.label,
            self.player_errors.join("\n")
        );
        let diff = (p.video as i64 - expected as i64).abs();
        assert!(
            diff <= 1,
            "{}: player decoded {} video frames, expected {} (published {}, joined at frame {}, \
             GOP {}: the viewer must start at the cached keyframe {} and get every frame after it)",
            self.label,
            p.video,
            expected,
            self.published,
            self.join_frame,
            self.gop,
            self.join_frame / self.gop * self.gop
        );
        assert!(
            p.starts_on_keyframe,
            "{}: the first decoded picture is not a keyframe",
            self.label
        );
        assert!(
            p.non_monotonic.is_empty(),
            "{}: timestamps not strictly increasing: {:?}",
            self.label,
            &p.non_monotonic[..p.non_monotonic.len().min(10)]
        );
        // Audio: AAC frames of 1024 samples at 44.1 kHz (43 per second),
        // covering at least 80 % of the video span.
        let video_secs = expected as f64 / 25.0;
        let min_audio = (video_secs * 44_100.0 / 1024.0 * 0.8) as usize;
        assert!(
            p.audio >= min_audio,
            "{}: only {} audio frames decoded, expected at least {} for {:.1} s of video",
            self.label,
            p.audio,
            min_audio,
            video_secs
        );
        assert!(
            !self.player_stopped,
            "{}: the player did not end by itself after the publisher stopped \
             (no end-of-stream signalled to it)",
            self.label
        );
    }
}

/// Returns once the publisher is 4 to 20 frames past a keyframe (and past
/// the first GOP): the player started then joins mid-GOP, with a margin of
/// at least 30 frames (1.2 s) for its start-up before the next keyframe.
pub fn wait_join_point(
    publisher: &mut Proc,
    gop: u64,
    frame_of: impl Fn(&Proc) -> Option<u64>,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(f) = frame_of(publisher) {
            if f >= gop + 4 && (4..=20).contains(&(f % gop)) {
                return f;
            }
        }
        assert!(
            publisher.try_status().is_none(),
            "publisher exited before the join point:\n{}",
            publisher.describe()
        );
        assert!(
            Instant::now() < deadline,
            "publisher did not reach the join point within 15 s:\n{}",
            publisher.describe()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// ffmpeg publishes to `rtmp://addr/live/{stream}`, ffprobe plays it.
pub fn run_ffmpeg(label: &str, addr: SocketAddr, stream: &str) -> Report {
    let spec = PublishSpec::default();
    let url = format!("rtmp://{addr}/live/{stream}");
    let mut publisher = Proc::spawn(
        &format!("{label}:ffmpeg-publish"),
        &mut ffmpeg::publish_command(&url, &spec),
    );
    let gop = u64::from(spec.gop);
    let join_frame = wait_join_point(&mut publisher, gop, |p| ffmpeg::progress_frame(&p.stdout()));
    let player_start = Instant::now();
    let mut player = Proc::spawn(
        &format!("{label}:ffprobe-play"),
        &mut ffmpeg::play_command(&url, Duration::from_secs(4)),
    );
    let status = publisher.wait_timeout(Duration::from_secs(30));
    let played_for = player_start.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "{label}: publisher failed or hung:\n{}",
        publisher.describe()
    );
    let published = ffmpeg::progress_frame(&publisher.stdout()).unwrap_or(0);
    let (_, player_stopped) = player.wait_or_stop(Duration::from_secs(8));
    let frames = ffmpeg::parse_frames(&player.stdout());
    let report = Report {
        label: label.to_owned(),
        published,
        join_frame,
        gop,
        playback: Playback::from_frames(&frames),
        player_errors: ffmpeg::error_lines(&player.stderr()),
        publisher_errors: ffmpeg::error_lines(&publisher.stderr()),
        player_stopped,
        played_for,
    };
    if report.playback.video == 0 {
        eprintln!("{}\n{}", publisher.describe(), player.describe());
    }
    report
}

/// GStreamer `rtmp2sink` publishes to `rtmp://addr/live/{stream}`,
/// `rtmp2src` plays it.
pub fn run_gst(label: &str, addr: SocketAddr, stream: &str) -> Report {
    let spec = PublishSpec::default();
    let url = format!("rtmp://{addr}/live/{stream}");
    let mut publisher = Proc::spawn(
        &format!("{label}:gst-publish"),
        &mut gst::publish_command(&url, &spec),
    );
    let gop = u64::from(spec.gop);
    let join_frame = wait_join_point(&mut publisher, gop, |p| {
        Some(gst::count_buffers(&p.stdout(), "vin"))
    });
    let player_start = Instant::now();
    let dir = crate::net::TempDir::new(label);
    let mut player = Proc::spawn(
        &format!("{label}:gst-play"),
        &mut gst::play_command(&url, dir.path()),
    );
    let status = publisher.wait_timeout(Duration::from_secs(30));
    let played_for = player_start.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "{label}: publisher failed or hung:\n{}",
        publisher.describe()
    );
    // num-buffers makes the count exact (the `-v` trace is only approximate).
    let published = spec.total_frames();
    let (_, player_stopped) = player.wait_or_stop(Duration::from_secs(8));
    let out = player.stdout();
    let report = Report {
        label: label.to_owned(),
        published,
        join_frame,
        gop,
        playback: gst::playback(&out, dir.path()),
        player_errors: gst::error_lines(&player.stdout(), &player.stderr()),
        publisher_errors: gst::error_lines(&publisher.stdout(), &publisher.stderr()),
        player_stopped,
        played_for,
    };
    if report.playback.video == 0 {
        eprintln!("{}\n{}", publisher.describe(), player.describe());
    }
    report
}
