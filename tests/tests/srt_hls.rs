//! A stream published over SRT plays over HLS: ffmpeg publishes H.264 + AAC
//! in MPEG-TS over SRT (`streamid=publish:live/cam`) to an in-process arcly
//! serving SRT and HTTP from one engine; ffprobe plays it back over HTTP,
//! once as LL-HLS with fMP4 (`/live/cam/index.m3u8`) and once as classic HLS
//! with MPEG-TS (`/live/cam/ts/index.m3u8`). Asserted, as a viewer sees it:
//! the streams are `h264` and `aac`, video and audio frames decode, the
//! first picture is a keyframe, timestamps never go back, ffprobe prints no
//! decoding error and reaches the end of the stream (`EXT-X-ENDLIST`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;
use std::time::Duration;

use arcly_tests::ffmpeg::{self, PublishSpec};
use arcly_tests::srt::{self, Caller, SrtOptions, SrtTestServer};
use arcly_tests::{hls, m3u8, Adapter, Proc};

/// The publisher's TSBPD latency (as in `srt_interop`).
const LATENCY_MS: u32 = 200;

/// `ffprobe` playing `url` like [`ffmpeg::play_command`], also printing
/// each stream's codec (`stream|codec_name=..|codec_type=..` lines).
fn probe_command(url: &str) -> Command {
    let mut c = Command::new("ffprobe");
    c.args(["-hide_banner", "-loglevel", "level+warning"])
        .args(["-rw_timeout", "8000000"])
        .args([
            "-show_entries",
            "frame=media_type,key_frame,pts,pkt_dts,pict_type:stream=codec_type,codec_name",
            "-of",
            "compact",
        ])
        .arg(url);
    c
}

/// The distinct `(codec_type, codec_name)` of the `stream|` lines, sorted
/// (ffprobe lists each stream once per program and once on its own).
fn codecs(stdout: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("stream|"))
        .map(|rest| {
            let field = |k: &str| {
                rest.split('|')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                    .unwrap_or("")
                    .to_owned()
            };
            (field("codec_type"), field("codec_name"))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn srt_publish_hls_play(test: &str, prefix: &str) {
    let options = SrtOptions {
        http: true,
        ..SrtOptions::default()
    };
    let Some((_watchdog, server)) =
        SrtTestServer::for_test(test, &["ffmpeg", "ffprobe"], Adapter::Tokio, &options)
    else {
        return;
    };
    let spec = PublishSpec {
        seconds: 14,
        ..PublishSpec::default()
    };
    let url = Caller::publish("cam", LATENCY_MS).ffmpeg_url(server.addr);
    let mut publisher = Proc::spawn(
        &format!("{test}:ffmpeg-publish"),
        &mut srt::ffmpeg_publish_ts(&url, &spec),
    );

    // The multivariant playlist and its one variant.
    let index_url = server.http_url("cam", &format!("{prefix}index.m3u8"));
    let index = hls::wait_for_ok(&index_url, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{test}: {e}\n{}", publisher.describe()));
    let variants = m3u8::parse_multivariant(&index.text())
        .unwrap_or_else(|e| panic!("{test}: {e}:\n{}", index.text()));
    assert_eq!(variants.len(), 1, "{test}: {}", index.text());
    let media_url = server.http_url("cam", &format!("{prefix}{}", variants[0].uri));

    // ffmpeg's HLS demuxer gives up on a playlist without a complete
    // segment: start ffprobe once one is listed (see `hls_interop`).
    hls::wait_for_first_segment(test, &media_url);

    let mut player = Proc::spawn(
        &format!("{test}:ffprobe-hls"),
        &mut probe_command(&index_url),
    );
    let (pub_status, _) =
        publisher.wait_or_stop(Duration::from_secs(spec.seconds.into()) + Duration::from_secs(8));
    assert!(
        pub_status.is_some_and(|s| s.success()),
        "{test}: the publisher failed\n{}",
        publisher.describe()
    );
    let publisher_errors = ffmpeg::error_lines(&publisher.stderr());
    assert!(
        publisher_errors.is_empty(),
        "{test}: the publisher reported errors: {publisher_errors:#?}"
    );
    let (_, stopped) = player.wait_or_stop(Duration::from_secs(10));

    let stdout = player.stdout();
    assert_eq!(
        codecs(&stdout),
        vec![
            ("audio".to_owned(), "aac".to_owned()),
            ("video".to_owned(), "h264".to_owned()),
        ],
        "{test}: codecs\n{}",
        player.describe()
    );
    // ffprobe starts a few seconds in: at least 6 s of the 14 s must play.
    let playback = hls::assert_hls_playback(test, &player, stopped, 150, 250);
    eprintln!("{test}: {playback:?}");
}

#[test]
fn srt_publish_ll_hls_play() {
    srt_publish_hls_play("srt_hls/ll_hls", "");
}

#[test]
fn srt_publish_ts_hls_play() {
    srt_publish_hls_play("srt_hls/ts", "ts/");
}
