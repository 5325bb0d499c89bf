//! HLS end-to-end harness: an in-process arcly serving RTMP ingest and HLS
//! over HTTP from one engine (as `arcly --rtmp .. --http ..` does), an
//! ffmpeg publisher with a known H.264 profile and level, and a playlist
//! watcher that records every reload for continuity checks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arcly::http::{HttpConfig, HttpRouter};
use arcly::rtmp::{RtmpSessionFactory, ServerConfig};
use arcly::session::SessionFactory;
use arcly::Engine;

use crate::ffmpeg::PublishSpec;
use crate::http_client;
use crate::m3u8::{self, MediaPlaylist};
use crate::process::Proc;

/// arcly with RTMP ingest and HLS over HTTP on one engine, on the tokio
/// adapter (`arcly_tokio::serve_tcp` + `arcly_tokio::serve_http`), each on a
/// free loopback port. Stopped when dropped.
pub struct HlsServer {
    /// The RTMP listener.
    pub rtmp: SocketAddr,
    /// The HTTP listener.
    pub http: SocketAddr,
    /// The shared engine (publish in-process with `engine.publish`).
    pub engine: Engine,
    /// The HTTP router (for its counters).
    pub router: Arc<HttpRouter>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl HlsServer {
    /// Default HTTP/HLS settings (2 s segments, 200 ms parts).
    pub fn start() -> HlsServer {
        Self::start_with(HttpConfig::default())
    }

    /// With `config` for the HTTP router and its HLS service.
    pub fn start_with(config: HttpConfig) -> HlsServer {
        let engine = Engine::with_defaults();
        let router = Arc::new(HttpRouter::new(engine.clone(), config));
        let factory: Arc<dyn SessionFactory> = Arc::new(
            RtmpSessionFactory::allow_all(engine.clone()).with_config(ServerConfig::default()),
        );
        let rtmp_listener = crate::net::local_listener();
        let http_listener = crate::net::local_listener();
        let rtmp = rtmp_listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let http = http_listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let served = router.clone();
        let thread = crate::servers::tokio_thread("arcly-hls-server", move || async move {
            let rtmp_l = crate::servers::to_tokio_listener(rtmp_listener);
            let http_l = crate::servers::to_tokio_listener(http_listener);
            let mut rx1 = rx.clone();
            let mut rx2 = rx;
            let rtmp_task = arcly_tokio::serve_tcp(rtmp_l, factory, async move {
                let _ = rx1.wait_for(|s| *s).await;
            });
            let http_task = arcly_tokio::serve_http(http_l, served, async move {
                let _ = rx2.wait_for(|s| *s).await;
            });
            let (a, b) = tokio::join!(rtmp_task, http_task);
            if let Err(e) = a {
                eprintln!("RTMP server ended with an error: {e}");
            }
            if let Err(e) = b {
                eprintln!("HTTP server ended with an error: {e}");
            }
        });
        HlsServer {
            rtmp,
            http,
            engine,
            router,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// `rtmp://ADDR/live/{stream}`.
    pub fn rtmp_url(&self, stream: &str) -> String {
        format!("rtmp://{}/live/{stream}", self.rtmp)
    }

    /// `http://ADDR/live/{stream}/{rest}`.
    pub fn stream_url(&self, stream: &str, rest: &str) -> String {
        format!("http://{}/live/{stream}/{rest}", self.http)
    }

    /// GET `target` (sent verbatim) on the HTTP listener.
    pub fn get(
        &self,
        target: &str,
        timeout: Duration,
    ) -> Result<http_client::Response, http_client::HttpError> {
        http_client::request(
            self.http,
            &self.http.to_string(),
            "GET",
            target,
            &[],
            None,
            timeout,
        )
    }
}

impl Drop for HlsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// H.264 profile and level the publisher forces, so the test knows the
/// `CODECS` string independently of the server.
pub const PUBLISH_PROFILE: &str = "high";
/// See [`PUBLISH_PROFILE`]: level 3.1 (`level_idc` 31 = 0x1f).
pub const PUBLISH_LEVEL: &str = "3.1";

fn video_encoder_args(c: &mut Command, spec: &PublishSpec) {
    c.args([
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-tune",
        "zerolatency",
    ])
    .args(["-profile:v", PUBLISH_PROFILE, "-level:v", PUBLISH_LEVEL])
    .args(["-pix_fmt", "yuv420p"])
    .args(["-g", &spec.gop.to_string()])
    .args(["-keyint_min", &spec.gop.to_string()])
    .args(["-sc_threshold", "0", "-b:v", "500k"]);
}

fn testsrc(spec: &PublishSpec) -> String {
    format!(
        "testsrc=size={}x{}:rate={}",
        spec.width, spec.height, spec.fps
    )
}

/// `ffmpeg -re` publishing testsrc + a 440 Hz sine as H.264 (High@3.1,
/// fixed GOP) + AAC-LC in FLV to `url`, progress on stdout.
pub fn publish_command(url: &str, spec: &PublishSpec) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-nostats"])
        .args(["-loglevel", "level+warning"])
        .args(["-progress", "pipe:1", "-stats_period", "0.1"])
        .args(["-re", "-f", "lavfi", "-i", &testsrc(spec)])
        .args(["-re", "-f", "lavfi", "-i"])
        .arg("sine=frequency=440:sample_rate=44100")
        .args(["-t", &spec.seconds.to_string()]);
    video_encoder_args(&mut c, spec);
    c.args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", url]);
    c
}

/// The `avc1.PPCCLL` string of what [`publish_command`] sends: encodes one
/// frame with the same encoder settings into `dir` and reads its SPS.
pub fn expected_avc1(spec: &PublishSpec, dir: &Path) -> String {
    let out = dir.join("probe.h264");
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", &testsrc(spec), "-frames:v", "1"]);
    video_encoder_args(&mut c, spec);
    c.args(["-f", "h264"]).arg(&out);
    let mut p = Proc::spawn("ffmpeg-sps", &mut c);
    let ok = p
        .wait_timeout(Duration::from_secs(20))
        .is_some_and(|s| s.success());
    assert!(ok, "could not encode the SPS probe\n{}", p.describe());
    let bytes = std::fs::read(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    m3u8::avc1_from_annexb(&bytes).unwrap_or_else(|| panic!("no SPS in {}", out.display()))
}

/// One reload of a media playlist.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the response arrived, since the watcher started.
    pub at: Duration,
    /// The raw text.
    pub text: String,
    /// Parsed.
    pub playlist: MediaPlaylist,
}

/// Reloads a media playlist every `interval` in a background thread and
/// keeps every successful snapshot (and every failed request as text).
pub struct PlaylistWatcher {
    stop: Arc<AtomicBool>,
    snapshots: Arc<Mutex<Vec<Snapshot>>>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl PlaylistWatcher {
    /// Starts reloading `url` (at most 10 000 reloads).
    pub fn start(url: &str, interval: Duration) -> PlaylistWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let snapshots = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (s, snaps, fails, url) = (
            stop.clone(),
            snapshots.clone(),
            failures.clone(),
            url.to_owned(),
        );
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            for _ in 0..10_000 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                match http_client::get(&url, Duration::from_secs(10)) {
                    Ok(r) if r.status == 200 => match MediaPlaylist::parse(&r.text()) {
                        Ok(playlist) => {
                            snaps
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(Snapshot {
                                    at: t0.elapsed(),
                                    text: r.text(),
                                    playlist,
                                })
                        }
                        Err(e) => fails
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!("{e}: {}", r.text())),
                    },
                    Ok(r) => fails
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("status {}: {}", r.status, r.text())),
                    Err(e) => fails
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(e.to_string()),
                }
                std::thread::sleep(interval);
            }
        });
        PlaylistWatcher {
            stop,
            snapshots,
            failures,
            thread: Some(thread),
        }
    }

    /// Stops and returns (snapshots, failures).
    pub fn finish(mut self) -> (Vec<Snapshot>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let s = std::mem::take(&mut *self.snapshots.lock().unwrap_or_else(|p| p.into_inner()));
        let f = std::mem::take(&mut *self.failures.lock().unwrap_or_else(|p| p.into_inner()));
        (s, f)
    }
}

impl Drop for PlaylistWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What a series of playlist reloads showed.
#[derive(Debug, Clone, Default)]
pub struct SeriesReport {
    /// Every segment seen: msn → (duration, uri), consistent across reloads.
    pub segments: BTreeMap<u64, (f64, String)>,
    /// Violations: msn going backwards, a gap between reloads, a segment
    /// whose duration or URI changed, target duration changing.
    pub problems: Vec<String>,
}

/// Checks that media sequence numbers are continuous across `snapshots`:
/// within a playlist by construction of the parser, across reloads the
/// media sequence never decreases, no segment is skipped between two
/// reloads (the newer playlist's first msn ≤ the older's last msn + 1), and
/// a segment keeps its duration and URI.
pub fn check_series(snapshots: &[Snapshot]) -> SeriesReport {
    let mut r = SeriesReport::default();
    let mut prev: Option<&MediaPlaylist> = None;
    for s in snapshots {
        let p = &s.playlist;
        if let Some(q) = prev {
            if p.media_sequence < q.media_sequence {
                r.problems.push(format!(
                    "at {:?}: EXT-X-MEDIA-SEQUENCE went back from {} to {}",
                    s.at, q.media_sequence, p.media_sequence
                ));
            }
            if let (Some(first), Some(last)) = (p.segments.first(), q.last_msn()) {
                if first.msn > last + 1 {
                    r.problems.push(format!(
                        "at {:?}: segments {}..{} were never listed (previous reload ended at {last})",
                        s.at,
                        last + 1,
                        first.msn
                    ));
                }
            }
            if p.target_duration != q.target_duration {
                r.problems.push(format!(
                    "at {:?}: EXT-X-TARGETDURATION changed from {:?} to {:?}",
                    s.at, q.target_duration, p.target_duration
                ));
            }
        }
        for seg in &p.segments {
            match r.segments.get(&seg.msn) {
                Some((d, uri)) if (*d - seg.duration).abs() > 1e-6 || *uri != seg.uri => {
                    r.problems.push(format!(
                        "at {:?}: segment {} was ({d}, {uri}), now ({}, {})",
                        s.at, seg.msn, seg.duration, seg.uri
                    ));
                }
                Some(_) => {}
                None => {
                    r.segments.insert(seg.msn, (seg.duration, seg.uri.clone()));
                }
            }
        }
        prev = Some(p);
    }
    r
}

/// A synthetic stream published in-process (see [`crate::synth`]) at real
/// time pace: config frames, then one picture (and one audio frame) every
/// frame interval, from a background thread. The stream ends (the
/// `Publisher` is dropped) when every frame was sent or on [`stop`](Self::stop);
/// [`pause`](Self::pause) keeps it published but sends nothing more (a
/// stalled publisher).
pub struct LivePublisher {
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    sent: Arc<std::sync::atomic::AtomicU32>,
    thread: Option<JoinHandle<()>>,
}

impl LivePublisher {
    /// Publishes `live/{stream}` on `engine` with the shape `spec`.
    pub fn start(engine: &Engine, stream: &str, spec: crate::synth::SynthSpec) -> LivePublisher {
        let key = arcly::engine::StreamKey::new("live", stream)
            .unwrap_or_else(|e| panic!("stream key: {e}"));
        let mut publisher = engine
            .publish(key)
            .unwrap_or_else(|e| panic!("publish live/{stream}: {e:?}"));
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (s, p, n) = (stop.clone(), pause.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            publisher.send(crate::synth::video_config());
            if spec.audio {
                publisher.send(crate::synth::audio_config());
            }
            let t0 = Instant::now();
            let frame = Duration::from_millis(spec.frame_ms().unsigned_abs());
            for i in 0..spec.frames {
                let due = t0 + frame * i;
                loop {
                    if s.load(Ordering::Relaxed) {
                        return;
                    }
                    let now = Instant::now();
                    if now >= due {
                        break;
                    }
                    std::thread::sleep((due - now).min(Duration::from_millis(5)));
                }
                if p.load(Ordering::Relaxed) {
                    // Stalled: keep the stream, send nothing.
                    while !s.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    return;
                }
                let v = spec.video(i);
                let dts = v.dts;
                publisher.send(v);
                if spec.audio {
                    publisher.send(crate::synth::audio_frame(i, dts));
                }
                n.store(i + 1, Ordering::Relaxed);
            }
        });
        LivePublisher {
            stop,
            pause,
            sent,
            thread: Some(thread),
        }
    }

    /// Pictures sent so far.
    pub fn sent(&self) -> u32 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops sending but keeps the stream published (until drop or stop).
    pub fn pause(&self) {
        self.pause.store(true, Ordering::Relaxed);
    }

    /// Ends the stream (drops the publisher) and waits for the thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LivePublisher {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Polls `url` until it answers 200 (at most `timeout`); returns the last response.
pub fn wait_for_ok(url: &str, timeout: Duration) -> Result<http_client::Response, String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match http_client::get(url, Duration::from_secs(12)) {
            Ok(r) if r.status == 200 => return Ok(r),
            Ok(r) => last = format!("status {}: {}", r.status, r.text()),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "{url} did not answer 200 within {timeout:?}; last: {last}"
    ))
}

/// Waits (up to 10 s) until the media playlist at `media_url` lists a
/// complete segment. ffmpeg's HLS demuxer ignores LL-HLS parts and gives up
/// ("Empty segment") on a playlist without a complete segment, which an
/// LL-HLS playlist is during a stream's first segment.
pub fn wait_for_first_segment(test: &str, media_url: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = wait_for_ok(media_url, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{test}: {e}"));
        let p = MediaPlaylist::parse(&r.text())
            .unwrap_or_else(|e| panic!("{test}: {e}:\n{}", r.text()));
        if !p.segments.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{test}: no complete segment listed 10 s after the playlist was ready:\n{}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts what an ffprobe HLS viewer decoded and returns it: no errors in
/// its log, at least `min_video` pictures and `min_audio` audio frames,
/// starting on a keyframe, timestamps never going back, and the end of the
/// stream reached (`stopped`: it had to be killed, so no `EXT-X-ENDLIST`).
pub fn assert_hls_playback(
    test: &str,
    player: &Proc,
    stopped: bool,
    min_video: usize,
    min_audio: usize,
) -> crate::ffmpeg::Playback {
    let errors = crate::ffmpeg::error_lines(&player.stderr());
    assert!(
        errors.is_empty(),
        "{test}: ffprobe reported errors: {errors:#?}\n{}",
        player.describe()
    );
    let playback =
        crate::ffmpeg::Playback::from_frames(&crate::ffmpeg::parse_frames(&player.stdout()));
    assert!(
        playback.video >= min_video && playback.audio >= min_audio,
        "{test}: too little decoded: {playback:?}\n{}",
        player.describe()
    );
    assert!(playback.starts_on_keyframe, "{test}: {playback:?}");
    assert!(
        playback.non_monotonic.is_empty(),
        "{test}: {:?}",
        playback.non_monotonic
    );
    assert!(
        !stopped,
        "{test}: ffprobe did not reach the end of the stream (no EXT-X-ENDLIST after the publisher left?)\n{}",
        player.describe()
    );
    playback
}
