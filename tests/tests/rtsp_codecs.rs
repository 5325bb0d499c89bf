//! RTSP beyond H.264 + AAC, with real clients: ffmpeg publishes H.265
//! (`libx265`) + Opus (`libopus`) over RTSP/TCP to an in-process arcly
//! serving RTSP, SRT and HTTP from one engine; ffprobe plays the stream at
//! once over RTSP, over SRT (`streamid=read:live/cam`, MPEG-TS) and over
//! LL-HLS (fMP4). Each viewer must see the streams as `hevc` and `opus`,
//! decode pictures and audio frames, start on a keyframe, see timestamps
//! that never go back and print no decoder error.
//!
//! And the A/V timeline through RTSP: ffmpeg publishes H.264 with B-frames
//! and AAC over RTSP, ffprobe plays it over RTSP; the offset between the last
//! picture's and the last audio frame's presentation time differs from the
//! source's (the same encode written to a file) by less than 40 ms.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arcly::rtsp::RtspSessionFactory;
use arcly_tests::ffmpeg::{self, PublishSpec};
use arcly_tests::srt::{Caller, SrtOptions, SrtTestServer};
use arcly_tests::{hls, Adapter, Proc, TestServer};

/// ffprobe playing `url`, printing each stream's codec and each decoded
/// frame (with its presentation time in seconds).
fn probe_command(url: &str) -> Command {
    let mut c = Command::new("ffprobe");
    c.args(["-hide_banner", "-loglevel", "level+warning"]);
    if url.starts_with("rtsp://") {
        c.args(["-rtsp_transport", "tcp", "-timeout", "8000000"]);
    } else {
        c.args(["-rw_timeout", "8000000"]);
    }
    c.args([
        "-show_entries",
        "frame=media_type,key_frame,pts,pkt_dts,pict_type,pts_time:stream=codec_type,codec_name",
        "-of",
        "compact",
    ])
    .arg(url);
    c
}

/// The distinct `(codec_type, codec_name)` of ffprobe's `stream|` lines, sorted.
fn codecs(stdout: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("stream|"))
        .map(|rest| (field(rest, "codec_type"), field(rest, "codec_name")))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn field(line: &str, key: &str) -> String {
    line.split('|')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or("")
        .to_owned()
}

/// `ffmpeg -re` publishing 8 s of `testsrc` as H.265 (libx265, a keyframe
/// every 50 frames, no B-frames) + `sine` as Opus over RTSP/TCP.
fn publish_hevc_opus(url: &str) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args([
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "level+warning",
    ])
    .args(["-progress", "pipe:1", "-stats_period", "0.1"])
    .args(["-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
    .args([
        "-re",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
    ])
    .args(["-t", "8"])
    .args([
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
    ])
    .args([
        "-x265-params",
        "keyint=50:min-keyint=50:scenecut=0:bframes=0:log-level=error",
    ])
    .args(["-pix_fmt", "yuv420p", "-b:v", "400k"])
    .args(["-c:a", "libopus", "-b:a", "64k"])
    .args(["-rtsp_transport", "tcp", "-f", "rtsp", url]);
    c
}

/// Waits until ffmpeg's progress passes `frames` (or fails the test).
fn wait_frames(test: &str, p: &mut Proc, frames: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while ffmpeg::progress_frame(&p.stdout()).unwrap_or(0) < frames {
        assert!(
            p.try_status().is_none() && Instant::now() < deadline,
            "{test}: the publisher did not reach frame {frames}\n{}",
            p.describe()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hevc_opus_rtsp_publish_plays_over_rtsp_srt_and_hls() {
    let test = "rtsp_codecs/hevc_opus";
    let options = SrtOptions {
        http: true,
        ..SrtOptions::default()
    };
    let Some((_watchdog, server)) =
        SrtTestServer::for_test(test, &["ffmpeg", "ffprobe"], Adapter::Tokio, &options)
    else {
        return;
    };
    let rtsp = TestServer::start_factory(
        Adapter::Tokio,
        server.engine.clone(),
        Arc::new(RtspSessionFactory::allow_all(server.engine.clone())),
    );
    let url = format!("rtsp://{}/live/cam", rtsp.addr);
    let mut publisher = Proc::spawn(
        &format!("{test}:ffmpeg-publish"),
        &mut publish_hevc_opus(&url),
    );
    // Viewers join in the first GOP's second half (the GOP cache starts them).
    wait_frames(test, &mut publisher, 30);
    let index_url = server.http_url("cam", "index.m3u8");
    let mut players = vec![
        Proc::spawn(&format!("{test}:ffprobe-rtsp"), &mut probe_command(&url)),
        Proc::spawn(
            &format!("{test}:ffprobe-srt"),
            &mut probe_command(&Caller::read("cam", 120).ffmpeg_url(server.addr)),
        ),
    ];
    hls::wait_for_ok(&index_url, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{test}: {e}\n{}", publisher.describe()));
    let variants = arcly_tests::m3u8::parse_multivariant(
        &hls::wait_for_ok(&index_url, Duration::from_secs(5))
            .unwrap()
            .text(),
    )
    .unwrap();
    hls::wait_for_first_segment(test, &server.http_url("cam", &variants[0].uri));
    players.push(Proc::spawn(
        &format!("{test}:ffprobe-hls"),
        &mut probe_command(&index_url),
    ));
    let (status, _) = publisher.wait_or_stop(Duration::from_secs(25));
    assert!(
        status.is_some_and(|s| s.success()),
        "{test}: the publisher failed\n{}",
        publisher.describe()
    );
    let published = ffmpeg::progress_frame(&publisher.stdout()).unwrap_or(0);
    assert!(published >= 190, "{test}: published {published} frames");
    for mut player in players {
        let (_, stopped) = player.wait_or_stop(Duration::from_secs(12));
        let stdout = player.stdout();
        assert_eq!(
            codecs(&stdout),
            vec![
                ("audio".to_owned(), "opus".to_owned()),
                ("video".to_owned(), "hevc".to_owned()),
            ],
            "{test}: codecs\n{}",
            player.describe()
        );
        // Joined before frame ~50 of 200: a GOP or more before the end;
        // Opus frames are 20 ms (50 per second).
        let playback = hls::assert_hls_playback(test, &player, stopped, 100, 200);
        eprintln!("{test}: {}: {playback:?}", player.name());
    }
}

/// (last picture pts_time, last audio pts_time) from ffprobe's output.
fn last_times(stdout: &str) -> (f64, f64) {
    let mut v = f64::NEG_INFINITY;
    let mut a = f64::NEG_INFINITY;
    for l in stdout.lines().filter_map(|l| l.strip_prefix("frame|")) {
        let Ok(t) = field(l, "pts_time").parse::<f64>() else {
            continue;
        };
        match field(l, "media_type").as_str() {
            "video" => v = v.max(t),
            "audio" => a = a.max(t),
            _ => {}
        }
    }
    (v, a)
}

#[test]
fn rtsp_play_keeps_the_av_offset_of_the_source() {
    let test = "rtsp_codecs/av_offset";
    if !arcly_tests::require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let _watchdog = arcly_tests::Watchdog::new(test, Duration::from_secs(60));
    arcly_tests::init_logging();
    let spec = PublishSpec {
        seconds: 8,
        ..PublishSpec::default()
    };
    // The source: the same encode written to a file.
    let dir = arcly_tests::net::TempDir::new(test);
    let file = dir.path().join("source.mkv");
    let mut reference = Proc::spawn(
        &format!("{test}:ffmpeg-file"),
        &mut ffmpeg::publish_command_full(file.to_str().unwrap(), &spec, "matroska", true, &[]),
    );
    let engine = arcly::Engine::with_defaults();
    let rtsp = TestServer::start_factory(
        Adapter::Tokio,
        engine.clone(),
        Arc::new(RtspSessionFactory::allow_all(engine)),
    );
    let url = format!("rtsp://{}/live/cam", rtsp.addr);
    let mut publisher = Proc::spawn(
        &format!("{test}:ffmpeg-rtsp-publish"),
        // `-muxdelay 0`: one AAC frame per RTP packet, so ffmpeg's RTP
        // muxer holds none back at the end (it sends an aggregate packet
        // only when the next frame comes, and drops the rest at the end).
        &mut ffmpeg::publish_command_full(
            &url,
            &spec,
            "rtsp",
            true,
            &["-rtsp_transport", "tcp", "-muxdelay", "0"],
        ),
    );
    wait_frames(test, &mut publisher, 60);
    let mut player = Proc::spawn(&format!("{test}:ffprobe-rtsp"), &mut probe_command(&url));
    for p in [&mut publisher, &mut reference] {
        let (status, _) = p.wait_or_stop(Duration::from_secs(25));
        assert!(
            status.is_some_and(|s| s.success()),
            "{test}\n{}",
            p.describe()
        );
    }
    let (_, stopped) = player.wait_or_stop(Duration::from_secs(10));
    assert!(
        !stopped,
        "{test}: the player did not end\n{}",
        player.describe()
    );
    let mut probe = Proc::spawn(
        &format!("{test}:ffprobe-file"),
        &mut probe_command(file.to_str().unwrap()),
    );
    probe.wait_timeout(Duration::from_secs(20));
    let (sv, sa) = last_times(&probe.stdout());
    let (pv, pa) = last_times(&player.stdout());
    let playback = ffmpeg::Playback::from_frames(&ffmpeg::parse_frames(&player.stdout()));
    eprintln!(
        "{test}: source last video {sv:.3} s, audio {sa:.3} s; played last video {pv:.3} s, audio {pa:.3} s; {playback:?}"
    );
    assert!(
        sv.is_finite() && sa.is_finite(),
        "{test}: source\n{}",
        probe.describe()
    );
    assert!(
        pv.is_finite() && pa.is_finite(),
        "{test}: played\n{}",
        player.describe()
    );
    let source_offset = sv - sa;
    let played_offset = pv - pa;
    assert!(
        (played_offset - source_offset).abs() < 0.040,
        "{test}: A/V offset {played_offset:.3} s played vs {source_offset:.3} s in the source"
    );
    assert!(playback.starts_on_keyframe, "{test}: {playback:?}");
    assert!(
        playback.non_monotonic.is_empty(),
        "{test}: {:?}",
        playback.non_monotonic
    );
    assert!(
        playback.video_b_frames > 0 && playback.video >= 100,
        "{test}: {playback:?}"
    );
}
