//! ffmpeg publishes H.264 + AAC over RTMP to an in-process arcly; ffprobe
//! reads it back over HLS from the same server, once as LL-HLS with fMP4
//! (`/live/cam/index.m3u8`) and once as classic HLS with MPEG-TS
//! (`/live/cam/ts/index.m3u8`). Asserted, as a viewer sees it:
//! - video and audio frames decode, the first picture is a keyframe,
//!   timestamps never go back, and ffprobe prints no decoding error;
//! - the multivariant playlist's `CODECS` names the stream's real profile
//!   and level (read from the SPS of the same encoder settings) and AAC-LC;
//! - every complete segment lasts the target (2 s, the publisher's GOP)
//!   within 10 %, and `EXTINF` never exceeds `EXT-X-TARGETDURATION`;
//! - media sequence numbers are continuous across playlist reloads;
//! - LL-HLS: parts no longer than `PART-TARGET`, adding up to their
//!   segment, `CAN-BLOCK-RELOAD=YES`, an `EXT-X-MAP` init segment.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use arcly_tests::ffmpeg::{self, PublishSpec};
use arcly_tests::hls::{self, check_series, HlsServer, PlaylistWatcher};
use arcly_tests::m3u8;
use arcly_tests::net::TempDir;
use arcly_tests::{init_logging, require_tools, Proc, Watchdog};

/// Segment target of the default HLS settings, and the publisher's GOP.
const TARGET: f64 = 2.0;

#[derive(Clone, Copy)]
enum Variant {
    LowLatency,
    Ts,
}

fn ffmpeg_reads(test: &str, variant: Variant) {
    let _wd = Watchdog::new(test, Duration::from_secs(58));
    init_logging();
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let dir = TempDir::new(test);
    let spec = PublishSpec {
        fps: 25,
        gop: 50,
        seconds: 18,
        width: 320,
        height: 240,
    };
    let avc1 = hls::expected_avc1(&spec, dir.path());
    let server = HlsServer::start();
    let mut publisher = Proc::spawn(
        "ffmpeg-publish",
        &mut hls::publish_command(&server.rtmp_url("cam"), &spec),
    );
    let prefix = match variant {
        Variant::LowLatency => "",
        Variant::Ts => "ts/",
    };

    // The multivariant playlist: one variant naming the real codecs.
    let index_url = server.stream_url("cam", &format!("{prefix}index.m3u8"));
    let index = hls::wait_for_ok(&index_url, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{test}: {e}\n{}", publisher.describe()));
    assert_eq!(
        index.header("content-type"),
        Some("application/vnd.apple.mpegurl"),
        "{test}: multivariant Content-Type"
    );
    let variants = m3u8::parse_multivariant(&index.text())
        .unwrap_or_else(|e| panic!("{test}: {e}:\n{}", index.text()));
    assert_eq!(variants.len(), 1, "{test}: {}", index.text());
    // The order of the CODECS entries carries no meaning (RFC 8216 §4.3.4.2).
    let mut codecs = variants[0].codecs();
    codecs.sort();
    let mut want = vec![avc1.clone(), "mp4a.40.2".to_owned()];
    want.sort();
    assert_eq!(
        codecs,
        want,
        "{test}: CODECS does not match the stream (encoder SPS says {avc1}):\n{}",
        index.text()
    );
    let media_url = server.stream_url("cam", &format!("{prefix}{}", variants[0].uri));

    // ffmpeg's HLS demuxer ignores parts and gives up ("Empty segment") on
    // a playlist without a complete segment, which an LL-HLS playlist is
    // during the stream's first segment: start it once one is listed.
    hls::wait_for_first_segment(test, &media_url);

    // Reload the media playlist every 300 ms while ffprobe plays the
    // multivariant URL (as a player would).
    let watcher = PlaylistWatcher::start(&media_url, Duration::from_millis(300));
    let mut player = Proc::spawn(
        "ffprobe-hls",
        &mut ffmpeg::play_command(&index_url, Duration::from_secs(8)),
    );
    let (pub_status, _) =
        publisher.wait_or_stop(Duration::from_secs(spec.seconds.into()) + Duration::from_secs(8));
    assert!(
        pub_status.is_some_and(|s| s.success()),
        "{test}: the publisher failed\n{}",
        publisher.describe()
    );
    // The stream ended: the playlist gets EXT-X-ENDLIST and ffprobe reaches
    // its end (bounded: a server that never ends the playlist fails below).
    let (_, stopped) = player.wait_or_stop(Duration::from_secs(10));
    let (snapshots, failures) = watcher.finish();

    // What ffprobe decoded: ffprobe joins at the live edge a few seconds
    // in, so at least 8 s of the 18 s must play.
    hls::assert_hls_playback(test, &player, stopped, 200, 300);

    // What the playlist reloads showed.
    assert!(
        snapshots.len() >= 20,
        "{test}: only {} playlist reloads succeeded; failures: {failures:?}",
        snapshots.len()
    );
    let series = check_series(&snapshots);
    assert!(
        series.problems.is_empty(),
        "{test}: playlist reloads are not continuous: {:#?}",
        series.problems
    );
    let last = snapshots.last().unwrap();
    assert!(
        last.playlist.ended,
        "{test}: no EXT-X-ENDLIST after the publisher left:\n{}",
        last.text
    );
    let target = last
        .playlist
        .target_duration
        .unwrap_or_else(|| panic!("{test}: no EXT-X-TARGETDURATION:\n{}", last.text));
    assert_eq!(
        target, TARGET as u64,
        "{test}: EXT-X-TARGETDURATION:\n{}",
        last.text
    );
    let final_msn = last.playlist.last_msn();
    let mut checked = 0;
    for (msn, (duration, uri)) in &series.segments {
        assert!(
            *duration <= target as f64 + 0.5,
            "{test}: segment {msn} ({uri}) lasts {duration} s > EXT-X-TARGETDURATION {target} (rounded)"
        );
        // The final segment ends where the publisher stopped.
        if Some(*msn) == final_msn {
            continue;
        }
        assert!(
            (duration - TARGET).abs() <= TARGET * 0.10,
            "{test}: segment {msn} ({uri}) lasts {duration} s, not {TARGET} s ± 10 %"
        );
        checked += 1;
    }
    assert!(
        checked >= 5,
        "{test}: only {checked} complete segments seen: {:?}",
        series.segments
    );

    if let Variant::LowLatency = variant {
        let p = &last.playlist;
        let part_target = p
            .part_target
            .unwrap_or_else(|| panic!("{test}: no EXT-X-PART-INF:\n{}", last.text));
        assert!(p.map_uri.is_some(), "{test}: no EXT-X-MAP:\n{}", last.text);
        // Server control is read on a live playlist (an ended one may drop it).
        let live = snapshots.iter().find(|s| !s.playlist.ended).unwrap();
        assert!(
            live.playlist.can_block_reload(),
            "{test}: no CAN-BLOCK-RELOAD=YES:\n{}",
            live.text
        );
        let mut with_parts = 0;
        for s in &snapshots {
            for seg in &s.playlist.segments {
                if seg.parts.is_empty() {
                    continue;
                }
                with_parts += 1;
                let sum: f64 = seg.parts.iter().map(|x| x.duration).sum();
                assert!(
                    (sum - seg.duration).abs() <= 0.002 * seg.parts.len() as f64 + 0.001,
                    "{test}: parts of segment {} add up to {sum}, EXTINF {}:\n{}",
                    seg.msn,
                    seg.duration,
                    s.text
                );
                assert!(
                    seg.parts[0].independent,
                    "{test}: first part of segment {} is not INDEPENDENT:\n{}",
                    seg.msn, s.text
                );
                for part in &seg.parts {
                    assert!(
                        part.duration <= part_target + 0.001,
                        "{test}: part {} lasts {} > PART-TARGET {part_target}:\n{}",
                        part.uri,
                        part.duration,
                        s.text
                    );
                }
            }
        }
        assert!(
            with_parts > 0,
            "{test}: no segment listed parts:\n{}",
            live.text
        );
    }
}

#[test]
fn ffmpeg_reads_ll_hls_fmp4() {
    ffmpeg_reads("hls_interop/ll_hls_fmp4", Variant::LowLatency);
}

#[test]
fn ffmpeg_reads_classic_hls_ts() {
    ffmpeg_reads("hls_interop/classic_ts", Variant::Ts);
}
