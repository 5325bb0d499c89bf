//! The interop scenario every adapter runs: a real publisher streams a 10 s
//! test pattern, a real player joins mid-stream, and the test checks what the
//! player decoded against what was published after the join point.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arcly::{Engine, StreamKey};

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
    /// The publisher's frame count when the player joined: when the
    /// server's engine counted its subscription (in-process servers), else
    /// when the player was started.
    pub join_frame: u64,
    /// Whether `join_frame` was observed at the server (then player
    /// start-up time does not matter).
    pub join_seen_by_server: bool,
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

    /// [`expected_video`](Self::expected_video), plus the neighbouring GOP's
    /// count when the join point is within 3 frames of a keyframe (the
    /// publisher's progress report lags the stream by up to ~0.1 s).
    pub fn acceptable_video(&self) -> Vec<u64> {
        let mut v = vec![self.expected_video()];
        let off = self.join_frame % self.gop;
        if off <= 3 && self.join_frame >= self.gop {
            v.push(self.expected_video() + self.gop);
        }
        if off + 3 >= self.gop {
            v.push(self.expected_video().saturating_sub(self.gop));
        }
        v
    }

    /// Asserts what the viewer saw: video decoded within 1 frame of what was
    /// sent from the join point's keyframe on, starting on a keyframe, audio
    /// present for the same span, timestamps never going backwards, no error
    /// lines from either client.
    pub fn assert_viewer_saw_everything(&self) {
        let p = &self.playback;
        let expected = self.expected_video();
        eprintln!(
            "{}: published {} frames, player joined at frame {} ({}) (GOP {}), expected {} video frames, \
             decoded {} video + {} audio frames, {} keyframes, video pts span {:?}",
            self.label,
            self.published,
            self.join_frame,
            if self.join_seen_by_server {
                "seen by the server"
            } else {
                "player started"
            },
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
        let ok = self
            .acceptable_video()
            .iter()
            .any(|&e| (p.video as i64 - e as i64).abs() <= 1);
        assert!(
            ok,
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
            "{}: timestamps went backwards: {:?}",
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

/// Who publishes the test pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher {
    /// `ffmpeg -re` with lavfi `testsrc` + `sine`, libx264 + aac.
    Ffmpeg,
    /// The same over RTSP (`-rtsp_transport tcp`), H.264 with B-frames.
    FfmpegRtsp,
    /// The same over RTSP with RTP over UDP (`-rtsp_transport udp`).
    FfmpegRtspUdp,
    /// [`Publisher::Gst`] with `rtspclientsink protocols=udp` (an
    /// `rtsp://` URL).
    GstUdp,
    /// `gst-launch-1.0` with `videotestsrc` + `audiotestsrc`, x264enc +
    /// avenc_aac, `flvmux ! rtmp2sink`.
    Gst,
}

/// Who plays it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Player {
    /// `ffprobe -show_frames` (libavcodec decoding).
    Ffprobe,
    /// The same with `-rtsp_transport udp` (an `rtsp://` URL).
    FfprobeUdp,
    /// [`Player::Gst`] with `rtspsrc protocols=udp` (an `rtsp://` URL).
    GstUdp,
    /// `gst-launch-1.0 rtmp2src ! flvdemux`, avdec_h264 + avdec_aac.
    Gst,
}

/// Waits (up to 15 s, while the publisher runs) until the server of
/// `engine` subscribed a player to `live/<stream>`; then the publisher's
/// frame at that moment (`join_frame` when it reports none). `None` with no
/// engine or no subscriber seen.
pub fn server_join_frame(
    engine: Option<&Engine>,
    stream: &str,
    publisher: &mut Proc,
    join_frame: u64,
    frame_of: impl Fn(&Proc) -> Option<u64>,
) -> Option<u64> {
    let engine = engine?;
    let key = StreamKey::new("live", stream).unwrap_or_else(|e| panic!("stream key: {e}"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && publisher.try_status().is_none() {
        let subs = engine
            .stream_stats(&key)
            .map(|s| s.subscribers.load(std::sync::atomic::Ordering::Acquire))
            .unwrap_or(0);
        if subs > 0 {
            return Some(frame_of(publisher).unwrap_or(join_frame));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// ffmpeg publishes to `rtmp://addr/live/{stream}`, ffprobe plays it.
/// With `engine` (an in-process server's), the join point is read when the
/// engine counts the player's subscription.
pub fn run_ffmpeg(label: &str, addr: SocketAddr, stream: &str, engine: Option<&Engine>) -> Report {
    run(
        label,
        addr,
        stream,
        Publisher::Ffmpeg,
        Player::Ffprobe,
        engine,
    )
}

/// GStreamer `rtmp2sink` publishes to `rtmp://addr/live/{stream}`,
/// `rtmp2src` plays it.
pub fn run_gst(label: &str, addr: SocketAddr, stream: &str, engine: Option<&Engine>) -> Report {
    run(label, addr, stream, Publisher::Gst, Player::Gst, engine)
}

/// `publisher` streams 10 s to `rtmp://addr/live/{stream}`; `player` joins
/// mid-GOP and decodes until the stream ends.
pub fn run(
    label: &str,
    addr: SocketAddr,
    stream: &str,
    publisher_kind: Publisher,
    player_kind: Player,
    engine: Option<&Engine>,
) -> Report {
    let url = format!("rtmp://{addr}/live/{stream}");
    run_urls(
        label,
        &url,
        &url,
        stream,
        publisher_kind,
        player_kind,
        engine,
    )
}

/// [`run`] with the publisher's and the player's URLs given (any protocol
/// each: `rtmp://`, `rtsp://`); `stream` is the name under `live/`.
pub fn run_urls(
    label: &str,
    publish_url: &str,
    play_url: &str,
    stream: &str,
    publisher_kind: Publisher,
    player_kind: Player,
    engine: Option<&Engine>,
) -> Report {
    let spec = PublishSpec::default();
    let url = publish_url;
    let mut publisher = match publisher_kind {
        Publisher::Ffmpeg => Proc::spawn(
            &format!("{label}:ffmpeg-publish"),
            &mut ffmpeg::publish_command(url, &spec),
        ),
        Publisher::FfmpegRtsp => Proc::spawn(
            &format!("{label}:ffmpeg-rtsp-publish"),
            &mut ffmpeg::publish_rtsp_command(url, &spec),
        ),
        Publisher::FfmpegRtspUdp => Proc::spawn(
            &format!("{label}:ffmpeg-rtsp-udp-publish"),
            &mut ffmpeg::publish_rtsp_udp_command(url, &spec),
        ),
        Publisher::Gst => Proc::spawn(
            &format!("{label}:gst-publish"),
            &mut gst::publish_command(url, &spec),
        ),
        Publisher::GstUdp => Proc::spawn(
            &format!("{label}:gst-udp-publish"),
            &mut gst::publish_command_rtsp(url, &spec, "udp"),
        ),
    };
    let url = play_url;
    let gop = u64::from(spec.gop);
    let frame_of = |p: &Proc| match publisher_kind {
        Publisher::Ffmpeg | Publisher::FfmpegRtsp | Publisher::FfmpegRtspUdp => {
            ffmpeg::progress_frame(&p.stdout())
        }
        Publisher::Gst | Publisher::GstUdp => Some(gst::count_buffers(&p.stdout(), "vin")),
    };
    let join_frame = wait_join_point(&mut publisher, gop, frame_of);
    let player_start = Instant::now();
    let dir = crate::net::TempDir::new(label);
    let mut player = match player_kind {
        Player::Ffprobe => Proc::spawn(
            &format!("{label}:ffprobe-play"),
            &mut ffmpeg::play_command(url, Duration::from_secs(4)),
        ),
        Player::FfprobeUdp => Proc::spawn(
            &format!("{label}:ffprobe-udp-play"),
            &mut ffmpeg::play_command_rtsp(url, Duration::from_secs(4), "udp"),
        ),
        Player::Gst => Proc::spawn(
            &format!("{label}:gst-play"),
            &mut gst::play_command(url, dir.path()),
        ),
        Player::GstUdp => Proc::spawn(
            &format!("{label}:gst-udp-play"),
            &mut gst::play_command_rtsp(url, dir.path(), "udp"),
        ),
    };
    // The moment the server subscribed the player is the real join point
    // (a loaded machine can take seconds to start gst-launch).
    let server_join = server_join_frame(engine, stream, &mut publisher, join_frame, frame_of);
    let join_seen_by_server = server_join.is_some();
    let join_frame = server_join.unwrap_or(join_frame);
    let status = publisher.wait_timeout(Duration::from_secs(30));
    let played_for = player_start.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "{label}: publisher failed or hung:\n{}",
        publisher.describe()
    );
    let (published, publisher_errors) = match publisher_kind {
        Publisher::Ffmpeg | Publisher::FfmpegRtsp | Publisher::FfmpegRtspUdp => (
            ffmpeg::progress_frame(&publisher.stdout()).unwrap_or(0),
            ffmpeg::error_lines(&publisher.stderr()),
        ),
        // num-buffers makes the count exact (the `-v` trace is only approximate).
        Publisher::Gst | Publisher::GstUdp => (
            spec.total_frames(),
            gst::error_lines(&publisher.stdout(), &publisher.stderr()),
        ),
    };
    let (_, player_stopped) = player.wait_or_stop(Duration::from_secs(8));
    let (playback, player_errors) = match player_kind {
        Player::Ffprobe | Player::FfprobeUdp => (
            Playback::from_frames(&ffmpeg::parse_frames(&player.stdout())),
            ffmpeg::error_lines(&player.stderr()),
        ),
        Player::Gst | Player::GstUdp => (
            gst::playback(&player.stdout(), dir.path()),
            gst::error_lines(&player.stdout(), &player.stderr()),
        ),
    };
    let report = Report {
        label: label.to_owned(),
        published,
        join_frame,
        join_seen_by_server,
        gop,
        playback,
        player_errors,
        publisher_errors,
        player_stopped,
        played_for,
    };
    if report.playback.video == 0 {
        eprintln!("{}\n{}", publisher.describe(), player.describe());
    }
    report
}
