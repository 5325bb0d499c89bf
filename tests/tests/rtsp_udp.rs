//! RTSP over UDP with real clients: ffmpeg publishes H.264 with B-frames +
//! AAC with `-rtsp_transport udp` and ffprobe plays with `-rtsp_transport
//! udp` joining mid-stream (every frame decoded from the cached keyframe,
//! first a keyframe, audio present, no decoder warnings, monotonic
//! timestamps); GStreamer `rtspclientsink protocols=udp` publishes and
//! `rtspsrc protocols=udp` plays; UDP play on every adapter; a UDP viewer
//! that vanishes is dropped at the (short, configured) timeout while a
//! reporting one stays; a junk flood at the RTP/RTCP ports is counted and
//! logged rate-limited while a UDP viewer loses nothing; the real clients'
//! NAT punch packets (after SETUP, before PLAY/RECORD) are not junk: no
//! "datagram dropped" warning for a normal client.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arcly::datagram::UdpConfig;
use arcly::rtsp::{RtspSessionFactory, RtspUdpConfig, RtspUdpServiceFactory};
use arcly::{Engine, StreamKey};
use arcly_tests::scenario::{self, Player, Publisher};
use arcly_tests::{require_tools, Adapter, TestServer, Watchdog};

type Stop = Box<dyn FnOnce() + Send>;

/// An RTSP server (TCP control on `rtsp.addr`) with its UDP service on a
/// loopback RTP + RTCP port pair, both on `adapter`.
struct UdpServer {
    rtsp: TestServer,
    factory: Arc<RtspUdpServiceFactory>,
    rtp: SocketAddr,
    stop: Option<(Stop, std::thread::JoinHandle<()>)>,
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.stop.take() {
            stop();
            let deadline = Instant::now() + Duration::from_secs(5);
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A free loopback port pair (even RTP port, RTCP on the next).
fn port_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..200 {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p % 2 != 0 || p == u16::MAX {
            continue;
        }
        if let Ok(b) = UdpSocket::bind(("127.0.0.1", p + 1)) {
            return (a, b);
        }
    }
    panic!("no free UDP port pair");
}

fn start(adapter: Adapter, config: RtspUdpConfig) -> UdpServer {
    let engine = Engine::with_defaults();
    let factory = Arc::new(RtspUdpServiceFactory::new(config));
    let rtsp = TestServer::start_factory(
        adapter,
        engine.clone(),
        Arc::new(RtspSessionFactory::allow_all(engine).with_udp(factory.handle())),
    );
    let (rtp, rtcp) = port_pair();
    let rtp_addr = rtp.local_addr().unwrap();
    let f = factory.clone();
    let stop: (Stop, std::thread::JoinHandle<()>) = match adapter {
        Adapter::Tokio => {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let thread = arcly_tests::servers::tokio_thread("rtsp-udp-tokio", move || async move {
                let socks = [rtp, rtcp].map(|s| {
                    s.set_nonblocking(true).unwrap();
                    tokio::net::UdpSocket::from_std(s).unwrap()
                });
                let shutdown = async move {
                    let _ = rx.await;
                };
                let config = UdpConfig::default();
                arcly_tokio::serve_udp_sockets(socks.into(), f, shutdown, &config)
                    .await
                    .unwrap();
            });
            (
                Box::new(move || {
                    let _ = tx.send(());
                }),
                thread,
            )
        }
        Adapter::AsyncIoSmol | Adapter::AsyncIoAsyncStd => {
            let stop = arcly::engine::Signal::new();
            let seen = stop.epoch();
            let wait = stop.clone();
            let thread = std::thread::spawn(move || {
                let socks = [rtp, rtcp].map(|s| async_io::Async::new(s).unwrap());
                let config = UdpConfig::default();
                let fut = arcly_async_io::serve_udp_sockets(
                    socks.into(),
                    f,
                    async move {
                        wait.wait(seen).await;
                    },
                    &config,
                );
                let ex = smol::Executor::new();
                smol::block_on(ex.run(fut)).unwrap();
            });
            (Box::new(move || stop.notify()), thread)
        }
        Adapter::Blocking => {
            let shutdown = arcly_blocking::Shutdown::new();
            let trigger = shutdown.clone();
            let thread = std::thread::spawn(move || {
                let config = UdpConfig::default();
                arcly_blocking::serve_udp_sockets(vec![rtp, rtcp], f, shutdown, &config).unwrap();
            });
            (Box::new(move || trigger.trigger()), thread)
        }
    };
    // The service publishes its ports when it starts; SETUP offers UDP then.
    let deadline = Instant::now() + Duration::from_secs(5);
    while factory.handle().server_ports().is_none() {
        assert!(Instant::now() < deadline, "the UDP service did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    UdpServer {
        rtsp,
        factory,
        rtp: rtp_addr,
        stop: Some(stop),
    }
}

fn tools(test: &str, gst: bool) -> bool {
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return false;
    }
    !gst || arcly_tests::tools::require_gst_elements(
        test,
        &[
            "rtspclientsink",
            "rtspsrc",
            "rtph264depay",
            "rtpmp4gdepay",
            "x264enc",
            "avdec_h264",
            "avenc_aac",
        ],
    )
}

fn play(label: &str, adapter: Adapter, publisher: Publisher, player: Player) {
    let test = format!("rtsp_udp/{label}/{}", adapter.name());
    let gst = matches!(publisher, Publisher::GstUdp) || matches!(player, Player::GstUdp);
    if !tools(&test, gst) {
        return;
    }
    let _watchdog = Watchdog::new(&test, Duration::from_secs(120));
    let logs = arcly_tests::logs::logs();
    let server = start(adapter, RtspUdpConfig::default());
    let url = format!("rtsp://{}/live/cam", server.rtsp.addr);
    let report = scenario::run_urls(
        &test,
        &url,
        &url,
        "cam",
        publisher,
        player,
        Some(&server.rtsp.engine),
    );
    report.assert_viewer_saw_everything();
    // The clients' NAT punch packets (sent right after SETUP, before PLAY
    // or RECORD) and their RTCP are expected: nothing from them is counted
    // as junk or logged as a dropped datagram (the warning an operator sees).
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        server.factory.dropped_datagrams(),
        0,
        "{test}: datagrams of normal clients counted as junk"
    );
    let lines = logs.lines_with(&["rtsp udp datagram dropped", "src=127.0.0.1:"]);
    assert!(lines.is_empty(), "{test}: {}", lines.join("\n"));
    if publisher == Publisher::FfmpegRtspUdp && player == Player::FfprobeUdp {
        // B-frames' composition offsets survived RTP over UDP.
        assert!(
            report.playback.video_b_frames > report.playback.video / 3,
            "{test}: only {} of {} pictures are B-frames",
            report.playback.video_b_frames,
            report.playback.video
        );
    }
}

#[test]
fn ffmpeg_udp_publish_ffprobe_udp_play() {
    play(
        "ffmpeg-udp",
        Adapter::Tokio,
        Publisher::FfmpegRtspUdp,
        Player::FfprobeUdp,
    );
}

#[test]
fn gst_udp_publish_gst_udp_play() {
    play("gst-udp", Adapter::Tokio, Publisher::GstUdp, Player::GstUdp);
}

#[test]
fn ffprobe_udp_play_on_blocking() {
    play(
        "tcp-in-udp-out",
        Adapter::Blocking,
        Publisher::FfmpegRtsp,
        Player::FfprobeUdp,
    );
}

#[test]
fn ffprobe_udp_play_on_async_io() {
    play(
        "tcp-in-udp-out",
        Adapter::AsyncIoSmol,
        Publisher::FfmpegRtsp,
        Player::FfprobeUdp,
    );
}

/// A raw RTSP control connection.
struct Rtsp {
    tcp: TcpStream,
    cseq: u32,
    session: Option<String>,
}

impl Rtsp {
    fn connect(addr: SocketAddr) -> Rtsp {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Rtsp {
            tcp,
            cseq: 0,
            session: None,
        }
    }

    /// Sends a request; returns the status and the headers + body text.
    fn request(&mut self, method: &str, url: &str, extra: &str) -> (u16, String) {
        self.cseq += 1;
        let session = self
            .session
            .as_ref()
            .map(|s| format!("Session: {s}\r\n"))
            .unwrap_or_default();
        let msg = format!(
            "{method} {url} RTSP/1.0\r\nCSeq: {}\r\n{session}{extra}\r\n",
            self.cseq
        );
        self.tcp.write_all(msg.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let mut b = [0u8; 4096];
        loop {
            let n = self.tcp.read(&mut b).unwrap();
            assert!(n > 0, "connection closed during {method}");
            buf.extend_from_slice(&b[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buf.len() >= end + 4 + len {
                    let status = text[9..12].parse().unwrap();
                    if let Some(s) = text.lines().find_map(|l| l.strip_prefix("Session:")) {
                        self.session = Some(s.split(';').next().unwrap().trim().to_owned());
                    }
                    return (status, text);
                }
            }
        }
    }

    /// DESCRIBE, SETUP of the video track to `client` (RTP) and the next
    /// port (RTCP), PLAY.
    fn play_udp(&mut self, url: &str, client: u16) {
        assert_eq!(self.request("DESCRIBE", url, "").0, 200);
        let t = format!(
            "Transport: RTP/AVP;unicast;client_port={client}-{}\r\n",
            client + 1
        );
        let (status, text) = self.request("SETUP", &format!("{url}/trackID=0"), &t);
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("server_port="), "{text}");
        assert_eq!(self.request("PLAY", url, "").0, 200);
    }

    /// Whether the server closed the connection within `within`.
    fn closed_within(&mut self, within: Duration) -> bool {
        self.tcp.set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 1024];
        loop {
            match self.tcp.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// A synthetic H.264 stream, 25 fps, into `engine` until dropped.
struct Synth {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Synth {
    fn start(engine: &Engine) -> Synth {
        let mut p = engine
            .publish(StreamKey::new("live", "cam").unwrap())
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            p.send(arcly_tests::synth::video_config());
            let mut i = 0u32;
            while !s.load(Ordering::Relaxed) {
                p.send(arcly_tests::synth::video_frame(
                    i,
                    i % 25 == 0,
                    i64::from(i) * 40,
                    2000,
                ));
                i += 1;
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        Synth {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Synth {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Datagrams that arrive at `sock` within `within`.
fn count_datagrams(sock: &UdpSocket, within: Duration) -> usize {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let end = Instant::now() + within;
    let mut n = 0;
    let mut b = [0u8; 2048];
    while Instant::now() < end {
        if sock.recv(&mut b).is_ok() {
            n += 1;
        }
    }
    n
}

/// A UDP viewer that vanishes (its ports go silent: no receiver report)
/// is dropped at the service's timeout (2 s here; 60 s by default): its
/// control connection is closed and nothing more is sent to its ports. A
/// viewer that sends receiver reports keeps playing.
#[test]
fn a_vanished_udp_viewer_is_dropped_at_the_timeout() {
    let test = "rtsp_udp/vanished-viewer";
    let _watchdog = Watchdog::new(test, Duration::from_secs(60));
    arcly_tests::logs::logs();
    let server = start(
        Adapter::Tokio,
        RtspUdpConfig::default().with_timeout(Duration::from_secs(2)),
    );
    let _synth = Synth::start(&server.rtsp.engine);
    std::thread::sleep(Duration::from_millis(300));
    let url = format!("rtsp://{}/live/cam", server.rtsp.addr);
    let (gone_rtp, _gone_rtcp) = port_pair();
    let (live_rtp, live_rtcp) = port_pair();
    let mut gone = Rtsp::connect(server.rtsp.addr);
    gone.play_udp(&url, gone_rtp.local_addr().unwrap().port());
    let mut live = Rtsp::connect(server.rtsp.addr);
    live.play_udp(&url, live_rtp.local_addr().unwrap().port());
    assert!(
        count_datagrams(&gone_rtp, Duration::from_millis(500)) > 0,
        "the viewer got no RTP"
    );
    // The live viewer reports every 300 ms from its RTCP port.
    let rtcp_server = SocketAddr::new(server.rtp.ip(), server.rtp.port() + 1);
    let reporting = Arc::new(AtomicBool::new(true));
    let r = reporting.clone();
    let reporter = std::thread::spawn(move || {
        let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 9];
        while r.load(Ordering::Relaxed) {
            let _ = live_rtcp.send_to(&rr, rtcp_server);
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let started = Instant::now();
    assert!(
        gone.closed_within(Duration::from_secs(6)),
        "the silent viewer's control connection was not closed"
    );
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(1000),
        "dropped after {after:?}, before the timeout"
    );
    std::thread::sleep(Duration::from_millis(300));
    // What arrived before the drop waits in the socket's buffer: drained.
    gone_rtp.set_nonblocking(true).unwrap();
    let mut b = [0u8; 2048];
    while gone_rtp.recv(&mut b).is_ok() {}
    gone_rtp.set_nonblocking(false).unwrap();
    assert_eq!(
        count_datagrams(&gone_rtp, Duration::from_millis(700)),
        0,
        "RTP still sent to a dropped viewer"
    );
    assert!(
        count_datagrams(&live_rtp, Duration::from_millis(700)) > 5,
        "the reporting viewer stopped getting RTP"
    );
    reporting.store(false, Ordering::Relaxed);
    reporter.join().unwrap();
    assert_eq!(live.request("TEARDOWN", &url, "").0, 200);
}

/// 20 000 junk datagrams from 50 sources at the RTP and RTCP ports while
/// ffprobe plays over UDP: it loses nothing, every junk datagram is
/// counted, and the log has a bounded number of drop lines (rate-limited:
/// 10 per 10 s, each with the running total).
#[test]
fn a_junk_flood_at_the_udp_ports_is_counted_and_a_udp_viewer_loses_nothing() {
    let test = "rtsp_udp/junk-flood";
    if !tools(test, false) {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(120));
    let logs = arcly_tests::logs::logs();
    let server = start(Adapter::Tokio, RtspUdpConfig::default());
    let url = format!("rtsp://{}/live/cam", server.rtsp.addr);
    let rtp = server.rtp;
    let flooding = Arc::new(AtomicBool::new(true));
    let f = flooding.clone();
    let flooder = std::thread::spawn(move || {
        let socks: Vec<UdpSocket> = (0..50)
            // Strangers: another loopback address than the clients'.
            .map(|_| UdpSocket::bind("127.0.0.2:0").unwrap())
            .collect();
        let rtcp = SocketAddr::new(rtp.ip(), rtp.port() + 1);
        let mut sent = 0u64;
        // Paced so that the flood spans the whole playback.
        while f.load(Ordering::Relaxed) && sent < 20_000 {
            for (i, s) in socks.iter().enumerate() {
                let junk = [0x80u8, 96, (sent >> 8) as u8, sent as u8, 0xde, 0xad];
                let to = if i % 2 == 0 { rtp } else { rtcp };
                if s.send_to(&junk, to).is_ok() {
                    sent += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        sent
    });
    let report = scenario::run_urls(
        test,
        &url,
        &url,
        "cam",
        Publisher::FfmpegRtsp,
        Player::FfprobeUdp,
        Some(&server.rtsp.engine),
    );
    flooding.store(false, Ordering::Relaxed);
    let sent = flooder.join().unwrap();
    report.assert_viewer_saw_everything();
    std::thread::sleep(Duration::from_millis(200));
    let dropped = server.factory.dropped_datagrams();
    assert!(
        dropped >= sent * 9 / 10 && sent > 1000,
        "sent {sent} junk datagrams, {dropped} counted as dropped"
    );
    let lines = logs.lines_with(&["rtsp udp datagram dropped"]);
    assert!(
        !lines.is_empty() && lines.len() <= 40,
        "{} drop lines for {sent} junk datagrams",
        lines.len()
    );
    // Each line carries the running total for the operator.
    assert!(
        lines.iter().all(|l| l.contains("dropped_total=")),
        "{}",
        lines.join("\n")
    );
}
