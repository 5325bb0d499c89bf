//! The hand-written `mio` loop of `examples/` (`arcly_examples::mio_loop`,
//! run by the `mio_loop` and `mio_srt` examples) serves real clients: ffmpeg
//! publishes over RTMP (a TCP session through `StreamDriver`'s steps) and
//! ffprobe plays over SRT (the datagram service through `DatagramDriver`'s
//! steps) or over RTMP, all on the loop's one thread; the checks are the
//! interop scenario's (every frame from the cached keyframe on, audio,
//! monotonic timestamps, no client errors). Then a stop ends the loop.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arcly::datagram::UdpConfig;
use arcly::engine::Engine;
use arcly::rtmp::RtmpSessionFactory;
use arcly::session::DriveConfig;
use arcly::srt::service::{SrtServiceConfig, SrtServiceFactory};
use arcly_examples::mio_loop::{MioServer, StopHandle};
use arcly_tests::srt::{self, Caller, Player, Publisher};
use arcly_tests::{require_tools, Watchdog};

const LINGER: Duration = Duration::from_secs(2);

struct Running {
    rtmp: SocketAddr,
    srt: SocketAddr,
    engine: Engine,
    stop: StopHandle,
    thread: JoinHandle<std::io::Result<()>>,
}

fn start() -> Running {
    let engine = Engine::with_defaults();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = MioServer::bind(
        Some((any, Box::new(RtmpSessionFactory::allow_all(engine.clone())))),
        Some((
            any,
            Box::new(SrtServiceFactory::allow_all(
                engine.clone(),
                SrtServiceConfig::default(),
            )),
        )),
        DriveConfig::default().with_close_linger(LINGER),
        UdpConfig::default().with_close_linger(LINGER),
    )
    .unwrap();
    Running {
        rtmp: server.tcp_addr().unwrap(),
        srt: server.udp_addr().unwrap(),
        engine,
        stop: server.stop_handle(),
        thread: std::thread::spawn(move || server.run()),
    }
}

/// Stops the loop and checks it returns within the close linger.
fn stop(running: Running) {
    let t0 = Instant::now();
    running.stop.stop();
    running.thread.join().unwrap().unwrap();
    assert!(
        t0.elapsed() < LINGER + Duration::from_secs(1),
        "the loop took {:?} to stop",
        t0.elapsed()
    );
}

fn rtmp_publish_and_play(test: &str, player: impl FnOnce(&Running) -> Player) {
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(60));
    arcly_tests::init_logging();
    let running = start();
    let publisher = Publisher::Ffmpeg(format!("rtmp://{}/live/cam", running.rtmp));
    let report = srt::run(
        test,
        "cam",
        &publisher,
        &player(&running),
        Some(&running.engine),
    );
    report.assert_viewer_saw_everything();
    stop(running);
}

#[test]
fn mio_loop_rtmp_publish_srt_play() {
    rtmp_publish_and_play("examples_loop/rtmp-to-srt", |r| {
        Player::Ffprobe(Caller::read("cam", 200).ffmpeg_url(r.srt))
    });
}

#[test]
fn mio_loop_rtmp_publish_rtmp_play() {
    rtmp_publish_and_play("examples_loop/rtmp-to-rtmp", |r| {
        Player::Ffprobe(format!("rtmp://{}/live/cam", r.rtmp))
    });
}
