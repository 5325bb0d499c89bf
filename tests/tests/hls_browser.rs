//! Headless Chromium as an HLS viewer.
//!
//! First what the browser itself can do, independent of arcly: Debian's
//! Chromium decodes H.264 + AAC through Media Source Extensions, and hls.js
//! (the copy vendored in `core/src/http/assets/`) plays a static HLS made by
//! ffmpeg, in fMP4 and in MPEG-TS. If one of these fails, the arcly player
//! tests cannot pass whatever the server does, and this test says why.
//!
//! Then arcly's own player page (`http://…/<app>/<stream>/`) playing a live
//! stream published with ffmpeg over RTMP (see `hls_interop.rs` for the
//! ffmpeg-side checks).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use arcly_tests::browser::Browser;
use arcly_tests::ffmpeg::PublishSpec;
use arcly_tests::hls::{self, HlsServer};
use arcly_tests::http_client::StaticServer;
use arcly_tests::net::TempDir;
use arcly_tests::{require_tools, Proc, Watchdog};
use serde_json::json;

/// hls.js as vendored into the server binary.
fn hlsjs_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/src/http/assets/hls.min.js")
}

/// Debian's Chromium must decode H.264 and AAC through MSE (it is built
/// with the proprietary codecs); without them no H.264/AAC HLS can play.
fn assert_mse_codecs(browser: &Browser) {
    browser.navigate("about:blank").unwrap();
    let types = [
        r#"video/mp4; codecs="avc1.64001f""#,
        r#"video/mp4; codecs="avc1.42e01e""#,
        r#"video/mp4; codecs="avc1.4d401f""#,
        r#"audio/mp4; codecs="mp4a.40.2""#,
        r#"video/mp4; codecs="avc1.64001f,mp4a.40.2""#,
    ];
    let v = browser
        .execute(
            "return arguments[0].map(t => [t, MediaSource.isTypeSupported(t)]);",
            json!([types]),
        )
        .unwrap();
    let unsupported: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[1] != json!(true))
        .map(|p| p[0].to_string())
        .collect();
    assert!(
        unsupported.is_empty(),
        "this Chromium cannot decode {unsupported:?} through MSE (built without \
         proprietary codecs?); H.264/AAC HLS cannot play in it"
    );
}

/// Writes a 12 s static HLS of testsrc + sine (H.264 High + AAC-LC, 2 s
/// segments) into `dir/<name>/index.m3u8`.
fn make_static_hls(dir: &Path, name: &str, segment_type: &str) {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", "12", "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-pix_fmt", "yuv420p", "-g", "50", "-keyint_min", "50"])
        .args(["-sc_threshold", "0", "-c:a", "aac", "-b:a", "64k"])
        .args(["-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod"])
        .args(["-hls_segment_type", segment_type])
        .arg(out.join("index.m3u8"));
    let mut p = Proc::spawn("ffmpeg-hls", &mut cmd);
    let status = p.wait_timeout(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "ffmpeg could not write a static HLS\n{}",
        p.describe()
    );
}

/// A page that plays `src` with hls.js and keeps errors in `window.errors`.
fn player_page(src: &str) -> String {
    format!(
        r#"<!doctype html><html><body>
<video id="v" muted autoplay playsinline></video>
<script src="/hls.min.js"></script>
<script>
window.errors = [];
const v = document.getElementById('v');
if (!Hls.isSupported()) {{ window.errors.push('Hls.isSupported() is false'); }}
const hls = new Hls();
hls.on(Hls.Events.ERROR, (e, d) => window.errors.push(d.type + ':' + d.details + (d.fatal ? ':fatal' : '')));
hls.loadSource('{src}');
hls.attachMedia(v);
v.play().catch(e => window.errors.push('play(): ' + e));
</script></body></html>"#
    )
}

fn plays_static(test: &str, browser: &Browser, server: &StaticServer, name: &str) {
    browser
        .navigate(&server.url(&format!("/{name}.html")))
        .unwrap();
    let (stats, ok) = browser.wait_video(
        "document.getElementById('v')",
        "window.errors",
        Duration::from_secs(20),
        |s| s.current_time > 5.0 && s.total_frames > 100,
    );
    assert!(
        ok,
        "{test}: hls.js in Chromium did not play the static {name} HLS made by ffmpeg: {stats:?}"
    );
    // hls.js reports recoverable events as non-fatal errors (e.g.
    // `bufferSeekOverHole` when a TS starts at 1.4 s); only fatal ones fail.
    let fatal: Vec<&String> = stats
        .page_errors
        .iter()
        .filter(|e| e.ends_with(":fatal") || !e.contains(':'))
        .collect();
    assert!(fatal.is_empty(), "{test}/{name}: fatal errors: {stats:?}");
    assert!(stats.media_error.is_none(), "{test}/{name}: {stats:?}");
    assert_eq!(stats.size, (320, 240), "{test}/{name}: {stats:?}");
    assert!(
        stats.dropped_frames * 5 <= stats.total_frames,
        "{test}/{name}: more than 20 % dropped: {stats:?}"
    );
    eprintln!("{test}/{name}: {stats:?}");
}

/// What the browser can do, independent of arcly: one Chromium checks the
/// MSE codecs, then plays a static fMP4 HLS and a static MPEG-TS HLS made
/// by ffmpeg with the vendored hls.js.
#[test]
fn chromium_decodes_h264_aac_and_plays_static_hls_with_hlsjs() {
    let test = "hls_browser/static";
    let _wd = Watchdog::new(test, Duration::from_secs(58));
    if !require_tools(test, &["ffmpeg"]) {
        return;
    }
    let Some(browser) = Browser::start(test) else {
        return;
    };
    assert_mse_codecs(&browser);
    let dir = TempDir::new(test);
    std::fs::copy(hlsjs_path(), dir.path().join("hls.min.js"))
        .unwrap_or_else(|e| panic!("{}: {e}", hlsjs_path().display()));
    for (name, segment_type) in [("fmp4", "fmp4"), ("ts", "mpegts")] {
        make_static_hls(dir.path(), name, segment_type);
        std::fs::write(
            dir.path().join(format!("{name}.html")),
            player_page(&format!("/{name}/index.m3u8")),
        )
        .unwrap();
    }
    let server = StaticServer::start(dir.path());
    plays_static(test, &browser, &server, "fmp4");
    plays_static(test, &browser, &server, "ts");
}

/// arcly's player page at `/live/cam/{query}` plays a stream that ffmpeg
/// publishes over RTMP: the video advances by 5 s past `currentTime` 5,
/// more than 100 frames decode, few drop, and the page lists no error;
/// hls.js knows the wall-clock time of what plays (`hls.playingDate`, from
/// `EXT-X-PROGRAM-DATE-TIME`) and it is a few seconds behind the browser's
/// clock (the latency), never ahead of it.
fn arcly_page_plays(test: &str, query: &str) {
    let _wd = Watchdog::new(test, Duration::from_secs(58));
    arcly_tests::init_logging();
    if !require_tools(test, &["ffmpeg"]) {
        return;
    }
    let Some(browser) = Browser::start(test) else {
        return;
    };
    let server = HlsServer::start();
    let spec = PublishSpec {
        seconds: 40,
        ..PublishSpec::default()
    };
    let mut publisher = Proc::spawn(
        "ffmpeg-publish",
        &mut hls::publish_command(&server.rtmp_url("cam"), &spec),
    );
    let playlist = if query.is_empty() {
        "index.m3u8"
    } else {
        "ts/index.m3u8"
    };
    hls::wait_for_ok(&server.stream_url("cam", playlist), Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{test}: {e}\n{}", publisher.describe()));
    browser
        .navigate(&server.stream_url("cam", query))
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    let video = "window.arclyPlayer && window.arclyPlayer.video";
    let errors = "window.arclyPlayer && window.arclyPlayer.errors";
    // First the picture starts moving...
    let (first, ok) = browser.wait_video(video, errors, Duration::from_secs(20), |s| {
        s.total_frames > 0 && s.current_time > 0.0 && !s.paused
    });
    assert!(
        ok,
        "{test}: the player page did not start playing: {first:?}\n{}",
        publisher.describe()
    );
    // ...then it plays on for 5 s of media time.
    let start = first.current_time;
    let (stats, ok) = browser.wait_video(video, errors, Duration::from_secs(20), |s| {
        s.current_time > 5.0 && s.current_time - start >= 5.0 && s.total_frames > 100
    });
    let extra = browser
        .execute(
            "const p = window.arclyPlayer; \
             return { mode: p.mode, latency: p.hls ? p.hls.latency : null, \
                      targetLatency: p.hls ? p.hls.targetLatency : null, \
                      lowLatency: p.hls ? p.hls.lowLatencyMode : null, \
                      playingDate: p.hls && p.hls.playingDate ? p.hls.playingDate.getTime() : null, \
                      now: Date.now() };",
            json!([]),
        )
        .unwrap_or_default();
    eprintln!("{test}: first {first:?}\nthen {stats:?}\nplayer {extra}");
    assert!(
        ok,
        "{test}: playback did not advance 5 s from {start} (> 100 frames): {stats:?}\n{}",
        publisher.describe()
    );
    assert!(
        stats.page_errors.is_empty(),
        "{test}: window.arclyPlayer.errors is not empty: {:?}",
        stats.page_errors
    );
    assert!(stats.media_error.is_none(), "{test}: {stats:?}");
    assert_eq!(stats.size, (320, 240), "{test}: {stats:?}");
    // Drops come from CPU starvation on a loaded 2-core CI machine (every
    // frame is decoded in software); a broken stream drops far more.
    assert!(
        stats.dropped_frames * 5 <= stats.total_frames,
        "{test}: more than 20 % of the frames dropped: {stats:?}"
    );
    assert_eq!(extra["mode"], json!("hls.js"), "{test}: {extra}");
    let (Some(playing), Some(now)) = (extra["playingDate"].as_f64(), extra["now"].as_f64()) else {
        panic!("{test}: hls.js has no playingDate (EXT-X-PROGRAM-DATE-TIME): {extra}");
    };
    let behind_ms = now - playing;
    eprintln!("{test}: playing {behind_ms:.0} ms behind the wall clock");
    // LL-HLS plays ~1-3 s behind; classic HLS three segments (~6-8 s).
    assert!(
        (-1_000.0..15_000.0).contains(&behind_ms),
        "{test}: playingDate is {behind_ms} ms behind the wall clock: {extra}"
    );
    // hls.js's own latency (live edge − currentTime) plus the age of the
    // live edge (≥ 0: dates are never ahead of arrival; at most about a
    // part + a reload for LL-HLS, a segment for TS): measured 3 ms / 1.6 s.
    if let Some(latency) = extra["latency"].as_f64() {
        let edge_age_ms = behind_ms - latency * 1000.0;
        let max = if query.is_empty() { 2_500.0 } else { 5_000.0 };
        assert!(
            (-200.0..max).contains(&edge_age_ms),
            "{test}: playingDate {behind_ms} ms behind, hls.js latency {latency} s: {extra}"
        );
    }
    publisher.stop();
}

#[test]
fn arcly_player_page_plays_ll_hls() {
    arcly_page_plays("hls_browser/arcly_ll_hls", "");
}

#[test]
fn arcly_player_page_plays_ts_hls() {
    arcly_page_plays("hls_browser/arcly_ts", "?ts");
}
