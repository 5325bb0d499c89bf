//! A viewer joining mid-GOP gets its first decodable keyframe at once: the
//! server serves the codec configs and the cached GOP from its keyframe.
//! Time-to-first-frame is measured with the project's own RTMP client (from
//! TCP connect to the first video keyframe event) while the GOP is 2 s, so
//! a server without a GOP cache would need up to 2 s.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use arcly::rtmp::{ClientEvent, ClientMode};
use arcly_tests::client::Client;
use arcly_tests::ffmpeg::{self, PublishSpec};
use arcly_tests::synth::SynthSpec;
use arcly_tests::{require_tools, scenario, Adapter, Proc, TestServer, Watchdog};

/// What a viewer saw until its first video keyframe.
struct FirstFrame {
    ttff: Duration,
    keyframe_dts: i64,
    had_video_config: bool,
    had_audio_config: bool,
}

async fn first_keyframe(server: &TestServer, stream: &str) -> FirstFrame {
    let mut c = Client::connect(server.addr, &server.url(stream), ClientMode::Play)
        .await
        .unwrap();
    let mut had_video_config = false;
    let mut had_audio_config = false;
    loop {
        let ev = c
            .next_event(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no video keyframe within 5 s"));
        match ev {
            ClientEvent::Frame(f) if f.is_config() => match f.kind() {
                arcly::MediaKind::Video => had_video_config = true,
                arcly::MediaKind::Audio => had_audio_config = true,
            },
            ClientEvent::Frame(f) if f.kind() == arcly::MediaKind::Video => {
                assert!(
                    f.is_keyframe(),
                    "the first video frame a viewer gets must be a keyframe (dts {})",
                    f.dts
                );
                return FirstFrame {
                    ttff: c.started.elapsed(),
                    keyframe_dts: f.dts_in(1000),
                    had_video_config,
                    had_audio_config,
                };
            }
            ClientEvent::Closed(r) => panic!("closed before the first frame: {r}"),
            _ => {}
        }
    }
}

/// ffmpeg publishes (2 s GOP); four viewers join mid-GOP one after another.
#[test]
fn viewer_joining_mid_gop_starts_at_once_ffmpeg() {
    let test = "instant_start/ffmpeg";
    if !require_tools(test, &["ffmpeg"]) {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(90));
    arcly_tests::init_logging();
    let server = TestServer::start(Adapter::Tokio);
    let spec = PublishSpec::default();
    let mut publisher = Proc::spawn(
        "ffmpeg-publish",
        &mut ffmpeg::publish_command(&server.url("cam"), &spec),
    );
    let gop = u64::from(spec.gop);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut ttffs = Vec::new();
    for _ in 0..4 {
        let join =
            scenario::wait_join_point(&mut publisher, gop, |p| ffmpeg::progress_frame(&p.stdout()));
        let first = rt.block_on(first_keyframe(&server, "cam"));
        let join_ms = join as i64 * 1000 / i64::from(spec.fps);
        eprintln!(
            "instant_start/ffmpeg: joined at frame {join} (~{join_ms} ms), first keyframe dts {} ms after {:?}",
            first.keyframe_dts, first.ttff
        );
        assert!(
            first.had_video_config,
            "no H.264 config before the first keyframe"
        );
        assert!(
            first.had_audio_config,
            "no AAC config before the first keyframe"
        );
        assert!(
            first.keyframe_dts <= join_ms,
            "first keyframe (dts {} ms) is newer than the join point ({join_ms} ms): \
             it was not served from the GOP cache",
            first.keyframe_dts
        );
        ttffs.push(first.ttff);
        // Next viewer in the next GOP.
        std::thread::sleep(Duration::from_millis(1200));
    }
    publisher.stop();
    ttffs.sort();
    eprintln!(
        "instant_start/ffmpeg: time to first keyframe over {} joins: min {:?}, median {:?}, max {:?} (GOP 2 s)",
        ttffs.len(),
        ttffs[0],
        ttffs[ttffs.len() / 2],
        ttffs[ttffs.len() - 1]
    );
    assert!(
        ttffs[ttffs.len() - 1] < Duration::from_millis(1000),
        "time to first keyframe {:?} is not 'at once' (GOP is 2 s)",
        ttffs[ttffs.len() - 1]
    );
}

/// The same with the synthetic publisher, on every adapter: no external tool.
fn synthetic_on(adapter: Adapter) {
    let test = format!("instant_start/synthetic/{}", adapter.name());
    let _watchdog = Watchdog::new(&test, Duration::from_secs(60));
    let server = TestServer::start(adapter);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let spec = SynthSpec {
        frames: 125,
        ..SynthSpec::default()
    };
    let t0 = Instant::now() + Duration::from_millis(200);
    let addr = server.addr;
    let url = server.url("syn");
    let publisher = rt.spawn(async move { synth_publish(addr, url, spec, t0).await });
    // Join 2.5 s in: frame 62, mid-way through the GOP that began at frame 50.
    std::thread::sleep(t0 + Duration::from_millis(2500) - Instant::now());
    let first = rt.block_on(first_keyframe(&server, "syn"));
    eprintln!(
        "{test}: first keyframe dts {} ms after {:?}",
        first.keyframe_dts, first.ttff
    );
    assert_eq!(
        first.keyframe_dts, 2000,
        "expected the cached keyframe of frame 50"
    );
    assert!(first.had_video_config && first.had_audio_config);
    assert!(
        first.ttff < Duration::from_millis(500),
        "{test}: time to first keyframe {:?}",
        first.ttff
    );
    rt.block_on(publisher).unwrap().unwrap();
}

async fn synth_publish(
    addr: std::net::SocketAddr,
    url: String,
    spec: SynthSpec,
    t0: Instant,
) -> Result<(), String> {
    arcly_tests::client::publish_synthetic(addr, &url, spec, t0).await
}

#[test]
fn viewer_joining_mid_gop_starts_at_once_tokio() {
    synthetic_on(Adapter::Tokio);
}

#[test]
fn viewer_joining_mid_gop_starts_at_once_async_io_smol() {
    synthetic_on(Adapter::AsyncIoSmol);
}

#[test]
fn viewer_joining_mid_gop_starts_at_once_async_io_async_std() {
    synthetic_on(Adapter::AsyncIoAsyncStd);
}

#[test]
fn viewer_joining_mid_gop_starts_at_once_blocking() {
    synthetic_on(Adapter::Blocking);
}
