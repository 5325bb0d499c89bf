//! SRT interop helpers: an in-process SRT server (plus RTMP on the same
//! engine) on each adapter, SRT URLs for ffmpeg / srt-live-transmit /
//! GStreamer, the publish→play scenario over any mix of SRT and RTMP, a
//! seeded lossy/reordering UDP relay and a datagram flooder.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arcly::srt::endpoint::EndpointConfig;
use arcly::srt::service::{SrtServiceConfig, SrtServiceFactory};
use arcly::Engine;

use crate::ffmpeg::{self, Playback, PublishSpec};
use crate::gst;
use crate::process::Proc;
use crate::scenario::{wait_join_point, Report};
use crate::servers::{Adapter, TestServer};

/// GStreamer elements the SRT GStreamer tests need.
pub const GST_ELEMENTS: &[&str] = &[
    "videotestsrc",
    "audiotestsrc",
    "x264enc",
    "h264parse",
    "avenc_aac",
    "aacparse",
    "mpegtsmux",
    "tsdemux",
    "srtsink",
    "srtsrc",
    "avdec_h264",
    "avdec_aac",
    "identity",
    "filesink",
];

/// Settings of an [`SrtTestServer`].
#[derive(Debug, Clone)]
pub struct SrtOptions {
    /// The server's TSBPD latency (ms).
    pub latency_ms: u16,
    /// Passphrase callers must use.
    pub passphrase: Option<String>,
    /// Also serve RTMP on the same engine (cross-protocol tests).
    pub rtmp: bool,
    /// Also serve HTTP (HLS, LL-HLS) on the same engine, on tokio.
    pub http: bool,
}

impl Default for SrtOptions {
    fn default() -> Self {
        SrtOptions {
            latency_ms: 120,
            passphrase: None,
            rtmp: false,
            http: false,
        }
    }
}

impl SrtOptions {
    /// The defaults with a server TSBPD latency of `latency_ms`.
    pub fn latency(latency_ms: u32) -> SrtOptions {
        SrtOptions {
            latency_ms: u16::try_from(latency_ms).unwrap_or(u16::MAX),
            ..SrtOptions::default()
        }
    }
}

/// An in-process SRT server on one adapter; stopped when dropped.
pub struct SrtTestServer {
    /// The SRT (UDP) address.
    pub addr: SocketAddr,
    /// The engine (shared with the RTMP server, if any).
    pub engine: Engine,
    /// The RTMP server on the same engine, with [`SrtOptions::rtmp`].
    pub rtmp: Option<TestServer>,
    /// The HTTP (HLS) address, with [`SrtOptions::http`].
    pub http: Option<SocketAddr>,
    /// What runs (UDP, HTTP): stopped and joined on drop.
    running: Vec<Started>,
}

impl SrtTestServer {
    /// An SRT server with default options (latency 120 ms, no passphrase).
    pub fn start(adapter: Adapter) -> SrtTestServer {
        Self::start_with(adapter, &SrtOptions::default())
    }

    /// The start of an SRT interop test: `None` when one of `tools` is
    /// missing (outside CI); else a 60 s watchdog named `test`, logging, and
    /// an SRT server with `options`.
    pub fn for_test(
        test: &str,
        tools: &[&str],
        adapter: Adapter,
        options: &SrtOptions,
    ) -> Option<(crate::Watchdog, SrtTestServer)> {
        if !crate::require_tools(test, tools) {
            return None;
        }
        let watchdog = crate::Watchdog::new(test, Duration::from_secs(60));
        crate::init_logging();
        Some((watchdog, Self::start_with(adapter, options)))
    }

    /// An SRT server with `options`.
    pub fn start_with(adapter: Adapter, options: &SrtOptions) -> SrtTestServer {
        Self::start_with_admission(adapter, options, Arc::new(arcly::admission::AllowAll))
    }

    /// An SRT server with `options` admitting through `admission`.
    pub fn start_with_admission(
        adapter: Adapter,
        options: &SrtOptions,
        admission: Arc<dyn arcly::admission::Admission>,
    ) -> SrtTestServer {
        let engine = Engine::with_defaults();
        let endpoint = EndpointConfig::default()
            .with_latency_ms(options.latency_ms)
            .with_passphrase(options.passphrase.clone())
            .with_cookie_secret(*b"arcly-tests-srt-cookie-secret-32");
        let factory = SrtServiceFactory::new(
            engine.clone(),
            SrtServiceConfig::with_endpoint(endpoint),
            admission,
        );
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind UDP: {e}"));
        let addr = socket
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let mut running = vec![start_udp(adapter, socket, factory)];
        let http = options.http.then(|| {
            let (addr, started) = start_http(&engine);
            running.push(started);
            addr
        });
        let rtmp = options.rtmp.then(|| {
            TestServer::start_with(
                adapter,
                engine.clone(),
                arcly::rtmp::ServerConfig::default(),
            )
        });
        SrtTestServer {
            addr,
            engine,
            rtmp,
            http,
            running,
        }
    }

    /// `http://ADDR/live/{stream}/{rest}` (with [`SrtOptions::http`]).
    pub fn http_url(&self, stream: &str, rest: &str) -> String {
        match &self.http {
            Some(a) => format!("http://{a}/live/{stream}/{rest}"),
            None => panic!("this SRT test server was started without HTTP"),
        }
    }

    /// The RTMP URL of `live/{stream}` (with [`SrtOptions::rtmp`]).
    pub fn rtmp_url(&self, stream: &str) -> String {
        match &self.rtmp {
            Some(r) => r.url(stream),
            None => panic!("this SRT test server was started without RTMP"),
        }
    }
}

impl Drop for SrtTestServer {
    fn drop(&mut self) {
        let running = std::mem::take(&mut self.running);
        let mut threads = Vec::with_capacity(running.len());
        for (stop, thread) in running {
            stop();
            threads.push(thread);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for t in threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

type Started = (Box<dyn FnOnce() + Send>, JoinHandle<()>);

/// `arcly_tokio::serve_http` with the default HTTP router on `engine`, on a
/// free loopback port of its own.
fn start_http(engine: &Engine) -> (SocketAddr, Started) {
    let router = Arc::new(arcly::http::HttpRouter::new(
        engine.clone(),
        arcly::http::HttpConfig::default(),
    ));
    let listener = crate::net::local_listener();
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = crate::servers::tokio_thread("arcly-srt-http", move || async move {
        let listener = crate::servers::to_tokio_listener(listener);
        let shutdown = async move {
            let _ = rx.await;
        };
        if let Err(e) = arcly_tokio::serve_http(listener, router, shutdown).await {
            eprintln!("HTTP server ended with an error: {e}");
        }
    });
    let stop: Box<dyn FnOnce() + Send> = Box::new(move || {
        let _ = tx.send(());
    });
    (addr, (stop, thread))
}

fn start_udp(adapter: Adapter, socket: UdpSocket, factory: SrtServiceFactory) -> Started {
    match adapter {
        Adapter::Tokio => {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let thread = crate::servers::tokio_thread("arcly-srt-tokio", move || async move {
                socket
                    .set_nonblocking(true)
                    .unwrap_or_else(|e| panic!("set_nonblocking: {e}"));
                let socket = tokio::net::UdpSocket::from_std(socket)
                    .unwrap_or_else(|e| panic!("tokio socket: {e}"));
                let shutdown = async move {
                    let _ = rx.await;
                };
                // A task of its own, as an application would run it.
                let task = tokio::spawn(arcly_tokio::serve_udp(socket, factory, shutdown));
                match task.await {
                    Ok(Err(e)) => eprintln!("tokio SRT server ended with an error: {e}"),
                    Err(e) => eprintln!("tokio SRT server task failed: {e}"),
                    Ok(Ok(())) => {}
                }
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
            let async_std_executor = adapter == Adapter::AsyncIoAsyncStd;
            let thread = std::thread::Builder::new()
                .name("arcly-srt-async-io".into())
                .spawn(move || {
                    let socket = async_io::Async::new(socket)
                        .unwrap_or_else(|e| panic!("async-io socket: {e}"));
                    let fut = arcly_async_io::serve_udp(socket, factory, async move {
                        wait.wait(seen).await;
                    });
                    let r = if async_std_executor {
                        async_std::task::block_on(async_std::task::spawn(fut))
                    } else {
                        let ex = smol::Executor::new();
                        smol::block_on(ex.run(ex.spawn(fut)))
                    };
                    if let Err(e) = r {
                        eprintln!("async-io SRT server ended with an error: {e}");
                    }
                })
                .unwrap_or_else(|e| panic!("spawn server thread: {e}"));
            (Box::new(move || stop.notify()), thread)
        }
        Adapter::Blocking => {
            let shutdown = arcly_blocking::Shutdown::new();
            let trigger = shutdown.clone();
            let thread = std::thread::Builder::new()
                .name("arcly-srt-blocking".into())
                .spawn(move || {
                    if let Err(e) = arcly_blocking::serve_udp(socket, factory, shutdown) {
                        eprintln!("blocking SRT server ended with an error: {e}");
                    }
                })
                .unwrap_or_else(|e| panic!("spawn server thread: {e}"));
            (Box::new(move || trigger.trigger()), thread)
        }
    }
}

/// Caller options of one SRT URL.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// `publish:live/cam`, `read:live/cam`, ...
    pub streamid: String,
    /// TSBPD latency the caller asks for (ms).
    pub latency_ms: u32,
    /// Passphrase (sent with `pbkeylen=16`).
    pub passphrase: Option<String>,
}

impl Caller {
    /// `publish:live/{stream}` at `latency_ms`.
    pub fn publish(stream: &str, latency_ms: u32) -> Caller {
        Caller {
            streamid: format!("publish:live/{stream}"),
            latency_ms,
            passphrase: None,
        }
    }

    /// `read:live/{stream}` at `latency_ms`.
    pub fn read(stream: &str, latency_ms: u32) -> Caller {
        Caller {
            streamid: format!("read:live/{stream}"),
            latency_ms,
            passphrase: None,
        }
    }

    /// With a passphrase.
    pub fn with_passphrase(mut self, p: &str) -> Caller {
        self.passphrase = Some(p.to_owned());
        self
    }

    fn crypto(&self) -> String {
        match &self.passphrase {
            Some(p) => format!("&passphrase={p}&pbkeylen=16"),
            None => String::new(),
        }
    }

    /// The URL for ffmpeg/ffprobe (whose `latency` is in microseconds).
    pub fn ffmpeg_url(&self, addr: SocketAddr) -> String {
        format!(
            "srt://{addr}?streamid={}&latency={}{}",
            self.streamid,
            u64::from(self.latency_ms) * 1000,
            self.crypto()
        )
    }

    /// The URL for srt-live-transmit (`latency` in milliseconds).
    pub fn slt_url(&self, addr: SocketAddr) -> String {
        format!(
            "srt://{addr}?streamid={}&latency={}{}",
            self.streamid,
            self.latency_ms,
            self.crypto()
        )
    }

    /// GStreamer `srtsrc`/`srtsink` properties.
    pub fn gst_props(&self, addr: SocketAddr) -> String {
        let mut s = format!(
            "uri=srt://{addr} mode=caller streamid={} latency={}",
            self.streamid, self.latency_ms
        );
        if let Some(p) = &self.passphrase {
            s.push_str(&format!(" passphrase={p} pbkeylen=16"));
        }
        s
    }
}

/// `ffmpeg -re` publishing the lavfi test pattern (H.264 + AAC) as MPEG-TS
/// to an `srt://` URL, with the same encoding settings as the RTMP tests.
pub fn ffmpeg_publish_ts(url: &str, spec: &PublishSpec) -> Command {
    crate::ffmpeg::publish_command_as(url, spec, "mpegts")
}

/// GStreamer publishing the test pattern as MPEG-TS over SRT:
/// `x264enc ! mpegtsmux ! srtsink` (`vin` traces every video frame).
pub fn gst_publish_command(caller: &Caller, addr: SocketAddr, spec: &PublishSpec) -> Command {
    let mut c = crate::gst::gst_launch();
    let audio_buffers = u64::from(spec.seconds) * 44_100 / 1024 + 1;
    let pipeline = format!(
        "videotestsrc is-live=true num-buffers={frames} pattern=ball \
         ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 \
         ! x264enc key-int-max={gop} tune=zerolatency speed-preset=veryfast bitrate=500 option-string=scenecut=0 \
         ! h264parse ! identity name=vin silent=false ! queue ! m. \
         audiotestsrc is-live=true num-buffers={audio_buffers} samplesperbuffer=1024 \
         ! audio/x-raw,rate=44100,channels=1 ! audioconvert ! avenc_aac ! aacparse ! queue ! m. \
         mpegtsmux name=m alignment=7 ! srtsink {props} wait-for-connection=false",
        frames = spec.total_frames(),
        w = spec.width,
        h = spec.height,
        fps = spec.fps,
        gop = spec.gop,
        props = caller.gst_props(addr),
    );
    c.args(pipeline.split_whitespace());
    c
}

/// GStreamer playing over SRT: `srtsrc ! tsdemux`, decoding to files in
/// `dir` like [`gst::play_command`] (read back with [`gst::playback`]).
pub fn gst_play_command(caller: &Caller, addr: SocketAddr, dir: &std::path::Path) -> Command {
    let mut c = crate::gst::gst_launch();
    c.arg("-m");
    let video = dir.join("video.yuv");
    let audio = dir.join("audio.pcm");
    let pipeline = format!(
        "srtsrc {props} auto-reconnect=false ! tsdemux name=d \
         d. ! queue max-size-time=0 max-size-buffers=0 max-size-bytes=0 ! video/x-h264 ! h264parse \
         ! identity name=vpkt silent=false ! avdec_h264 ! video/x-raw,format=I420,width=320,height=240 \
         ! identity name=vout check-imperfect-timestamp=true \
         ! filesink location={video} sync=false async=false \
         d. ! queue max-size-time=0 max-size-buffers=0 max-size-bytes=0 ! audio/mpeg ! aacparse ! avdec_aac \
         ! audioconvert ! audio/x-raw,format=S16LE,channels=1 \
         ! filesink location={audio} sync=false async=false",
        props = caller.gst_props(addr),
        video = video.display(),
        audio = audio.display(),
    );
    c.args(pipeline.split_whitespace());
    c
}

/// `srt-live-transmit URL file://con > {out}` (no auto-reconnect: it ends
/// when the server ends the stream).
pub fn slt_read_command(url: &str, out: &std::path::Path) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(format!(
        "exec srt-live-transmit -a:no -ll:warn '{url}' file://con > '{}'",
        out.display()
    ));
    c
}

/// `ffprobe` decoding a recorded TS file, one compact line per frame.
pub fn ffprobe_file(path: &std::path::Path) -> (Playback, Vec<String>) {
    let out = Command::new("ffprobe")
        .args(["-hide_banner", "-loglevel", "level+warning"])
        .args([
            "-show_entries",
            "frame=media_type,key_frame,pts,pkt_dts,pict_type",
            "-of",
            "compact",
        ])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("ffprobe: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        Playback::from_frames(&ffmpeg::parse_frames(&stdout)),
        ffmpeg::error_lines(&stderr),
    )
}

/// Error lines of a GStreamer SRT player, except the one `srtsrc` (1.22)
/// posts when the server ends the stream with an SRT SHUTDOWN: with
/// `auto-reconnect=false` a closed connection is reported as an error of
/// `srtsrc0` ("Could not read from resource" or "Internal data stream
/// error", "Error on SRT socket") instead of EOS. The frame counts still
/// prove that the end came after the last frame.
pub fn gst_srt_player_errors(stdout: &str, stderr: &str) -> Vec<String> {
    gst::error_lines(stdout, stderr)
        .into_iter()
        .filter(|l| {
            // The error itself names the element (`GstSRTSrc:srtsrc0`,
            // "Error on SRT socket"); its continuation line ("streaming
            // stopped, reason error") follows it. Another element's error
            // keeps its own `ERROR: from element` line.
            !(l.contains("srtsrc")
                || l.contains("Error on SRT socket")
                || l.contains("streaming stopped, reason error"))
        })
        .collect()
}

/// Who publishes.
#[derive(Debug, Clone)]
pub enum Publisher {
    /// ffmpeg to this URL: MPEG-TS for `srt://`, FLV for `rtmp://`.
    Ffmpeg(String),
    /// GStreamer `srtsink` as this caller to this address.
    Gst(Caller, SocketAddr),
}

impl Publisher {
    /// The TSBPD latency it asks for (0 for RTMP), from the URL's
    /// `latency` (microseconds for ffmpeg).
    fn latency_ms(&self) -> u64 {
        match self {
            Publisher::Ffmpeg(url) if url.starts_with("srt://") => url
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("latency="))
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(120, |us| us / 1000),
            Publisher::Ffmpeg(_) => 0,
            Publisher::Gst(caller, _) => u64::from(caller.latency_ms),
        }
    }
}

/// Who plays.
#[derive(Debug, Clone)]
pub enum Player {
    /// ffprobe from this URL (`srt://` or `rtmp://`).
    Ffprobe(String),
    /// GStreamer `srtsrc` as this caller from this address.
    Gst(Caller, SocketAddr),
    /// srt-live-transmit from this URL to a file, then ffprobe on the file.
    SrtLiveTransmit(String),
}

/// The publish→play scenario of `scenario::run` with any publisher and
/// player: the publisher streams 10 s; the player joins mid-GOP (the join
/// point is read when `engine`, if given, counts its subscription; else it
/// is when the player starts) and decodes until
/// the stream ends. Assert with [`Report::assert_viewer_saw_everything`].
pub fn run(
    label: &str,
    stream: &str,
    publisher_kind: &Publisher,
    player_kind: &Player,
    engine: Option<&Engine>,
) -> Report {
    let spec = PublishSpec::default();
    let mut publisher = match publisher_kind {
        Publisher::Ffmpeg(url) if url.starts_with("rtmp://") => Proc::spawn(
            &format!("{label}:ffmpeg-publish"),
            &mut ffmpeg::publish_command(url, &spec),
        ),
        Publisher::Ffmpeg(url) => Proc::spawn(
            &format!("{label}:ffmpeg-publish"),
            &mut ffmpeg_publish_ts(url, &spec),
        ),
        Publisher::Gst(caller, addr) => Proc::spawn(
            &format!("{label}:gst-publish"),
            &mut gst_publish_command(caller, *addr, &spec),
        ),
    };
    let gop = u64::from(spec.gop);
    // The server hands a publisher's frames to the engine TSBPD-latency
    // after they were sent: count the publisher's progress in frames the
    // engine has seen, so the join point is where the server's GOP cache is.
    let lag = publisher_kind.latency_ms() * u64::from(spec.fps) / 1000;
    let frame_of = |p: &Proc| {
        match publisher_kind {
            Publisher::Ffmpeg(_) => ffmpeg::progress_frame(&p.stdout()),
            Publisher::Gst(..) => Some(gst::count_buffers(&p.stdout(), "vin")),
        }
        .map(|f| f.saturating_sub(lag))
    };
    let join_frame = wait_join_point(&mut publisher, gop, frame_of);
    let player_start = Instant::now();
    let dir = crate::net::TempDir::new(label);
    let recording = dir.path().join("out.ts");
    let mut player = match player_kind {
        Player::Ffprobe(url) => Proc::spawn(
            &format!("{label}:ffprobe-play"),
            &mut ffmpeg::play_command(url, Duration::from_secs(4)),
        ),
        Player::Gst(caller, addr) => Proc::spawn(
            &format!("{label}:gst-play"),
            &mut gst_play_command(caller, *addr, dir.path()),
        ),
        Player::SrtLiveTransmit(url) => Proc::spawn(
            &format!("{label}:srt-live-transmit"),
            &mut slt_read_command(url, &recording),
        ),
    };
    let server_join =
        crate::scenario::server_join_frame(engine, stream, &mut publisher, join_frame, frame_of);
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
        Publisher::Ffmpeg(_) => (
            ffmpeg::progress_frame(&publisher.stdout()).unwrap_or(0),
            ffmpeg::error_lines(&publisher.stderr()),
        ),
        Publisher::Gst(..) => (
            spec.total_frames(),
            gst::error_lines(&publisher.stdout(), &publisher.stderr()),
        ),
    };
    // Players end on their own once the server closes (drain ≤ 2 × latency
    // + 500 ms); a stopped (SIGINT) GStreamer player can fail mid-write to
    // its filesink, so under a loaded CI give them room before stopping.
    let (_, player_stopped) = player.wait_or_stop(Duration::from_secs(15));
    let (playback, player_errors) = match player_kind {
        Player::Ffprobe(_) => (
            Playback::from_frames(&ffmpeg::parse_frames(&player.stdout())),
            ffmpeg::error_lines(&player.stderr()),
        ),
        Player::Gst(..) => (
            gst::playback(&player.stdout(), dir.path()),
            gst_srt_player_errors(&player.stdout(), &player.stderr()),
        ),
        Player::SrtLiveTransmit(_) => {
            let (p, mut errors) = ffprobe_file(&recording);
            errors.extend(ffmpeg::error_lines(&player.stderr()));
            (p, errors)
        }
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

/// Waits for the `SRT listening on ADDR/udp` banner line of the `arcly`
/// binary and returns ADDR.
pub fn wait_srt_addr(proc: &mut Proc, timeout: Duration) -> Option<SocketAddr> {
    let mut found = None;
    proc.wait_for(timeout, |out, _| {
        found = out.lines().find_map(|l| {
            l.split("SRT listening on ")
                .nth(1)
                .and_then(|a| a.trim().trim_end_matches("/udp").parse().ok())
        });
        found.is_some()
    });
    found
}

/// A tiny seeded PRNG (xorshift64*), so loss patterns repeat.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded (a zero seed is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// Counters of a [`LossyRelay`].
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Datagrams forwarded (both directions).
    pub forwarded: AtomicU64,
    /// Datagrams dropped on purpose.
    pub dropped: AtomicU64,
    /// Datagrams held back and sent after a later one.
    pub reordered: AtomicU64,
}

/// A UDP relay for one caller: datagrams to [`LossyRelay::addr`] go to the
/// server from a socket of the relay, answers go back to the caller. Each
/// direction drops with probability `loss` and holds a datagram back with
/// probability `reorder` (sent after the next one, or after 20 ms), from a
/// seeded PRNG.
pub struct LossyRelay {
    /// Where callers connect.
    pub addr: SocketAddr,
    /// What it did.
    pub stats: Arc<RelayStats>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl LossyRelay {
    /// Starts relaying to `server`.
    pub fn start(server: SocketAddr, loss: f64, reorder: f64, seed: u64) -> LossyRelay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("relay bind: {e}"));
        let back = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("relay bind: {e}"));
        let addr = front
            .local_addr()
            .unwrap_or_else(|e| panic!("relay addr: {e}"));
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(5)))
                .unwrap_or_else(|e| panic!("relay timeout: {e}"));
        }
        let stats = Arc::new(RelayStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let caller: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
        let mut threads = Vec::new();
        for upstream in [true, false] {
            let (from, to) = if upstream {
                (
                    front.try_clone().unwrap_or_else(|e| panic!("clone: {e}")),
                    back.try_clone().unwrap_or_else(|e| panic!("clone: {e}")),
                )
            } else {
                (
                    back.try_clone().unwrap_or_else(|e| panic!("clone: {e}")),
                    front.try_clone().unwrap_or_else(|e| panic!("clone: {e}")),
                )
            };
            let (stats, stop, caller) = (stats.clone(), stop.clone(), caller.clone());
            let mut rng = Rng::new(seed ^ if upstream { 0x5EED } else { 0xBAC4 });
            threads.push(std::thread::spawn(move || {
                let mut buf = vec![0u8; 2048];
                let mut held: Option<(Vec<u8>, SocketAddr, Instant)> = None;
                while !stop.load(Ordering::Relaxed) {
                    let got = from.recv_from(&mut buf);
                    let now = Instant::now();
                    if let Some((_, _, at)) = &held {
                        if now.duration_since(*at) > Duration::from_millis(20) {
                            if let Some((d, dst, _)) = held.take() {
                                let _ = to.send_to(&d, dst);
                            }
                        }
                    }
                    let Ok((n, src)) = got else { continue };
                    let dst = if upstream {
                        if let Ok(mut c) = caller.lock() {
                            *c = Some(src);
                        }
                        server
                    } else {
                        match caller.lock().ok().and_then(|c| *c) {
                            Some(c) => c,
                            None => continue,
                        }
                    };
                    let data = &buf[..n];
                    if rng.chance(loss) {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if held.is_none() && rng.chance(reorder) {
                        stats.reordered.fetch_add(1, Ordering::Relaxed);
                        held = Some((data.to_vec(), dst, now));
                        continue;
                    }
                    let _ = to.send_to(data, dst);
                    stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    if let Some((d, dst, _)) = held.take() {
                        let _ = to.send_to(&d, dst);
                        stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        LossyRelay {
            addr,
            stats,
            stop,
            threads,
        }
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A well-formed SRT induction request (draft-sharabayko-srt-01 §3.2.1,
/// §4.3.1.1): control packet type 0, version 4, extension field 2,
/// handshake type INDUCTION (1), with `socket_id` and `isn`.
pub fn induction_packet(socket_id: u32, isn: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&0x8000_0000u32.to_be_bytes()); // control, HANDSHAKE
    p.extend_from_slice(&0u32.to_be_bytes()); // type-specific
    p.extend_from_slice(&0u32.to_be_bytes()); // timestamp
    p.extend_from_slice(&0u32.to_be_bytes()); // destination socket id
    p.extend_from_slice(&4u32.to_be_bytes()); // version
    p.extend_from_slice(&0u16.to_be_bytes()); // encryption field
    p.extend_from_slice(&2u16.to_be_bytes()); // extension field
    p.extend_from_slice(&(isn & 0x7FFF_FFFF).to_be_bytes());
    p.extend_from_slice(&1500u32.to_be_bytes()); // MTU
    p.extend_from_slice(&8192u32.to_be_bytes()); // flow window
    p.extend_from_slice(&1u32.to_be_bytes()); // INDUCTION
    p.extend_from_slice(&socket_id.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes()); // SYN cookie
    p.extend_from_slice(&[127, 0, 0, 1]); // peer IP
    p.extend_from_slice(&[0; 12]);
    p
}

/// Counters of a [`Flood`].
#[derive(Debug, Default)]
pub struct FloodStats {
    /// Datagrams sent.
    pub sent: AtomicU64,
    /// Datagrams the server answered (induction responses).
    pub answered: AtomicU64,
}

/// Hostile traffic at an SRT port from several sockets: random garbage,
/// truncated headers, data packets for bogus socket ids, conclusions
/// without a cookie, and induction requests (answered with a cookie, which
/// must cost the server no state), at about `rate` datagrams per second.
pub struct Flood {
    /// What it did.
    pub stats: Arc<FloodStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Flood {
    /// Starts flooding `target`.
    pub fn start(target: SocketAddr, rate: u64, seed: u64) -> Flood {
        let stats = Arc::new(FloodStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (stats.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let socks: Vec<UdpSocket> = (0..8)
                .filter_map(|_| UdpSocket::bind("127.0.0.1:0").ok())
                .collect();
            for s in &socks {
                let _ = s.set_nonblocking(true);
            }
            let mut rng = Rng::new(seed);
            let start = Instant::now();
            let mut sent = 0u64;
            let mut buf = [0u8; 2048];
            while !sp.load(Ordering::Relaxed) {
                // Pace: at most `rate` per second on average, in bursts of 64.
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                if sent >= due {
                    std::thread::sleep(Duration::from_millis(2));
                    for s in &socks {
                        while let Ok((_, _)) = s.recv_from(&mut buf) {
                            st.answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    continue;
                }
                for _ in 0..64 {
                    let Some(sock) =
                        socks.get((rng.next_u64() % socks.len().max(1) as u64) as usize)
                    else {
                        return;
                    };
                    let kind = rng.next_u64() % 5;
                    let d: Vec<u8> = match kind {
                        0 => induction_packet(rng.next_u64() as u32, rng.next_u64() as u32),
                        1 => {
                            // Conclusion without a valid cookie.
                            let mut p = induction_packet(rng.next_u64() as u32, 7);
                            p[36..40].copy_from_slice(&0xFFFF_FFFFu32.to_be_bytes());
                            p[44..48].copy_from_slice(&(rng.next_u64() as u32).to_be_bytes());
                            p
                        }
                        2 => {
                            // Data packet for a bogus socket id.
                            let mut p = vec![0u8; 16 + 1316];
                            p[0..4].copy_from_slice(
                                &((rng.next_u64() as u32) & 0x7FFF_FFFF).to_be_bytes(),
                            );
                            p[12..16].copy_from_slice(&(rng.next_u64() as u32).to_be_bytes());
                            p
                        }
                        3 => {
                            // Truncated header.
                            let n = (rng.next_u64() % 16) as usize;
                            (0..n).map(|_| rng.next_u64() as u8).collect()
                        }
                        _ => {
                            // Random bytes, control bit set half the time.
                            let n = 16 + (rng.next_u64() % 200) as usize;
                            (0..n).map(|_| rng.next_u64() as u8).collect()
                        }
                    };
                    if sock.send_to(&d, target).is_ok() {
                        st.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    sent += 1;
                }
            }
        });
        Flood {
            stats,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
