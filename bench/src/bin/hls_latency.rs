//! `hls-latency`: how long after a frame is published in-process
//! (`arcly::engine::Publisher::send`, timestamped) an HLS client sees it,
//! on loopback, with arcly's HTTP serving (`arcly_tokio::serve_http`).
//!
//! Two measurements (`--mode`):
//!
//! - `parts`: an LL-HLS client doing blocking playlist reloads
//!   (draft-pantos-hls-rfc8216bis §6.2.5.2: after each answer it asks for
//!   `_HLS_msn`/`_HLS_part` of the next part, as hls.js does). For every
//!   part, latency = arrival of the first playlist that lists it − publish
//!   time of the part's first video frame. The part's start time comes from
//!   the durations listed before it (the muxer's timeline starts at the
//!   first frame, dts 0, because the client subscribes before any media is
//!   sent), snapped to the frame grid. Parts starting with a keyframe
//!   (`INDEPENDENT=YES`) are the "keyframe to listed part" number. A part can
//!   only be complete once the first frame of the next part is published,
//!   so one part duration is the floor; the target is ≤ part duration + 50 ms.
//! - `ffmpeg`: `ffmpeg -i …/index.m3u8 -c:v copy -f framecrc pipe:1`
//!   (`-flush_packets 1`, `-copyts`), each output line timestamped on
//!   arrival; latency = arrival − publish time of the frame with that pts.
//!   ffmpeg's HLS demuxer ignores parts, so this is whole-segment latency.
//! - `browser`: hls.js in headless Chromium on arcly's player page (RTMP
//!   ingest from ffmpeg), its `hls.latency` sampled every second, for the
//!   LL-HLS and the TS playlist (not part of `both`).
//!
//! A measurement tool, not a test: loopback only, bounded by `--seconds`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use arcly::engine::StreamKey;
use arcly::http::{HttpConfig, HttpRouter};
use arcly::Engine;
use arcly_bench::stats::Summary;
use arcly_bench::synth::{SynthConfig, SynthStream};
use arcly_tests::http_client;
use arcly_tests::m3u8::MediaPlaylist;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Publish → part listed, seen by a blocking-reload client.
    Parts,
    /// Publish → packet out of ffmpeg reading the LL-HLS playlist.
    Ffmpeg,
    /// Both, one after the other (separate streams).
    Both,
    /// hls.js in headless Chromium on arcly's player page: its own latency
    /// estimate (`hls.latency`), sampled every second; ffmpeg publishes a
    /// real H.264/AAC stream over RTMP (Chromium must decode it).
    Browser,
}

/// Latency from in-process publish to an HLS client on loopback.
#[derive(Debug, Parser)]
#[command(name = "hls-latency", version, about)]
struct Cli {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,
    /// Seconds of publishing per measurement.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Video frames per second.
    #[arg(long, default_value_t = 25)]
    fps: u32,
    /// Keyframe interval in frames.
    #[arg(long, default_value_t = 10)]
    gop: u32,
    /// LL-HLS part target in milliseconds.
    #[arg(long, default_value_t = 200)]
    part_ms: u64,
    /// Segment target in milliseconds.
    #[arg(long, default_value_t = 2000)]
    segment_ms: u64,
    /// Video bitrate of the synthetic stream, bit/s.
    #[arg(long, default_value_t = 2_000_000)]
    video_bps: u64,
    /// Worker threads of the server's tokio runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The publish instant of every video frame, by dts (ms).
type PublishLog = Arc<Mutex<BTreeMap<i64, Instant>>>;

struct Server {
    addr: SocketAddr,
    engine: Engine,
    stop: tokio::sync::watch::Sender<bool>,
}

fn start_server(rt: &tokio::runtime::Runtime, cli: &Cli) -> Result<Server, Error> {
    let engine = Engine::with_defaults();
    let mut config = HttpConfig::default();
    config.hls.muxer = config
        .hls
        .muxer
        .with_segment_duration(Duration::from_millis(cli.segment_ms))
        .with_part_duration(Duration::from_millis(cli.part_ms));
    let router = Arc::new(HttpRouter::new(engine.clone(), config));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let listener = {
        let _guard = rt.enter();
        tokio::net::TcpListener::from_std(std_listener)?
    };
    rt.spawn(async move {
        let shutdown = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        if let Err(e) = arcly_tokio::serve_http(listener, router, shutdown).await {
            eprintln!("hls-latency: HTTP server failed: {e}");
        }
    });
    Ok(Server { addr, engine, stop })
}

/// Publishes `live/{name}` at real-time pace from a thread: the configs at
/// once, media after `go` is set, for `seconds`; logs video publish times.
fn start_publisher(
    server: &Server,
    name: &str,
    cli: &Cli,
    go: Arc<AtomicBool>,
) -> Result<(PublishLog, std::thread::JoinHandle<()>), Error> {
    let key = StreamKey::new("live", name)?;
    let mut publisher = server
        .engine
        .publish(key)
        .map_err(|e| format!("publish: {e:?}"))?;
    let mut synth = SynthStream::new(SynthConfig {
        video_bps: cli.video_bps,
        audio_bps: 128_000,
        fps: cli.fps,
        gop: cli.gop,
    });
    publisher.send(synth.next_frame());
    publisher.send(synth.next_frame());
    let log: PublishLog = Arc::new(Mutex::new(BTreeMap::new()));
    let out = log.clone();
    let end_ms = i64::try_from(cli.seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let handle = std::thread::spawn(move || {
        while !go.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let t0 = Instant::now();
        while synth.peek_dts() < end_ms {
            let due = t0 + Duration::from_millis(synth.peek_dts().unsigned_abs());
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let frame = synth.next_frame();
            let video = frame.codec == arcly::frame::Codec::H264;
            let dts = frame.dts;
            publisher.send(frame);
            if video {
                let at = Instant::now();
                out.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(dts, at);
            }
        }
        // Dropping the publisher ends the stream.
    });
    Ok((log, handle))
}

/// Starts the muxer (the first playlist request subscribes it) before any
/// media is sent, so its timeline origin is the first frame (dts 0).
fn subscribe_then_go(addr: SocketAddr, name: &str, go: &AtomicBool) -> Result<String, Error> {
    let url = format!("http://{addr}/live/{name}/stream.m3u8");
    let first = {
        let url = url.clone();
        std::thread::spawn(move || http_client::get(&url, Duration::from_secs(15)))
    };
    std::thread::sleep(Duration::from_millis(300));
    go.store(true, Ordering::Release);
    let r = first
        .join()
        .map_err(|_| "first request thread panicked")??;
    if r.status != 200 {
        return Err(format!("first playlist: status {}: {}", r.status, r.text()).into());
    }
    Ok(url)
}

#[derive(Debug, Clone, Copy)]
struct SeenPart {
    duration: f64,
    independent: bool,
    listed: Instant,
    baseline: bool,
}

fn parts(rt: &tokio::runtime::Runtime, cli: &Cli) -> Result<(), Error> {
    let server = start_server(rt, cli)?;
    let go = Arc::new(AtomicBool::new(false));
    let (log, publisher) = start_publisher(&server, "parts", cli, go.clone())?;
    let url = subscribe_then_go(server.addr, "parts", &go)?;
    let mut seen: BTreeMap<(u64, usize), SeenPart> = BTreeMap::new();
    let mut record = |p: &MediaPlaylist, at: Instant, baseline: bool| {
        let mut add = |msn: u64, i: usize, part: &arcly_tests::m3u8::Part| {
            seen.entry((msn, i)).or_insert(SeenPart {
                duration: part.duration,
                independent: part.independent,
                listed: at,
                baseline,
            });
        };
        for s in &p.segments {
            for (i, part) in s.parts.iter().enumerate() {
                add(s.msn, i, part);
            }
        }
        let next = p.last_msn().map_or(p.media_sequence, |m| m + 1);
        for (i, part) in p.trailing_parts.iter().enumerate() {
            add(next, i, part);
        }
    };
    let r = http_client::get(&url, Duration::from_secs(5))?;
    let mut playlist = MediaPlaylist::parse(&r.text())?;
    record(&playlist, Instant::now(), true);
    let deadline = Instant::now() + Duration::from_secs(cli.seconds.saturating_sub(1));
    let mut requests = 0u64;
    while Instant::now() < deadline && !playlist.ended {
        let Some((msn, part)) = playlist.last_part() else {
            std::thread::sleep(Duration::from_millis(10));
            let r = http_client::get(&url, Duration::from_secs(5))?;
            playlist = MediaPlaylist::parse(&r.text())?;
            continue;
        };
        let target = format!("{url}?_HLS_msn={msn}&_HLS_part={}", part + 1);
        let r = http_client::get(&target, Duration::from_secs(10))?;
        let at = Instant::now();
        requests += 1;
        if r.status != 200 {
            return Err(format!("{target}: status {}: {}", r.status, r.text()).into());
        }
        playlist = MediaPlaylist::parse(&r.text())?;
        record(&playlist, at, false);
    }
    let _ = server.stop.send(true);
    let _ = publisher.join();

    // Start time of each part = sum of the durations before it, snapped to
    // the frame grid.
    let frame_ms = 1000.0 / f64::from(cli.fps.max(1));
    let gop_ms = frame_ms * f64::from(cli.gop.max(1));
    let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut start = 0.0f64;
    let (mut all, mut keys, mut closing) = (Vec::new(), Vec::new(), Vec::new());
    let (mut missing, mut misaligned) = (0, 0);
    let mut expected = (0u64, 0usize);
    for (&(msn, i), p) in &seen {
        if (msn, i) != expected && (msn, i) != (expected.0 + 1, 0) {
            missing += 1; // a gap in what the client saw: restart the sum is impossible
        }
        expected = (msn, i + 1);
        let snap = |t: f64| (((t * 1000.0) / frame_ms).round() * frame_ms).round() as i64;
        let dts = snap(start) as f64;
        start += p.duration;
        if p.baseline {
            continue;
        }
        let Some(published) = log.get(&(dts as i64)) else {
            missing += 1;
            continue;
        };
        let since = |t: &Instant| p.listed.saturating_duration_since(*t).as_secs_f64() * 1000.0;
        let ms = since(published);
        all.push(ms);
        // The part is complete once the first frame after it is published.
        if let Some(closer) = log.get(&snap(start)) {
            closing.push(since(closer));
        }
        if p.independent {
            if (dts / gop_ms).fract().abs() > 1e-6 {
                misaligned += 1;
            }
            keys.push(ms);
        }
    }
    let show = |label: &str, v: &[f64]| {
        let s = Summary::of(v.iter().copied());
        println!(
            "| {label} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            s.count, s.min, s.median, s.p99, s.max
        );
    };
    println!(
        "\nparts: {} parts seen, {requests} blocking reloads, part target {} ms, GOP {} frames at {} fps",
        seen.len(),
        cli.part_ms,
        cli.gop,
        cli.fps
    );
    println!("| publish → part listed (ms) | n | min | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    show("keyframe → its part listed", &keys);
    show("first frame of any part → part listed", &all);
    show("frame closing the part → part listed", &closing);
    if missing > 0 || misaligned > 0 {
        println!(
            "warning: {missing} parts without a matching publish time or seen out of order, \
             {misaligned} independent parts not starting on the GOP grid"
        );
    }
    Ok(())
}

fn ffmpeg(rt: &tokio::runtime::Runtime, cli: &Cli) -> Result<(), Error> {
    let server = start_server(rt, cli)?;
    let go = Arc::new(AtomicBool::new(false));
    let (log, publisher) = start_publisher(&server, "ff", cli, go.clone())?;
    subscribe_then_go(server.addr, "ff", &go)?;
    let url = format!("http://{}/live/ff/index.m3u8", server.addr);
    // ffmpeg's HLS demuxer needs a complete segment to start.
    std::thread::sleep(Duration::from_millis(cli.segment_ms + 500));
    let ffmpeg_start = Instant::now();
    let mut child = Command::new("ffmpeg")
        // The synthetic pictures are filler: probing them makes the decoder
        // complain, which does not matter for `-c copy`.
        .args(["-hide_banner", "-nostdin", "-loglevel", "fatal"])
        .args(["-copyts", "-i", &url])
        .args(["-map", "0:v:0", "-c", "copy", "-flush_packets", "1"])
        .args(["-f", "framecrc", "pipe:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no ffmpeg stdout")?;
    let lines: Arc<Mutex<Vec<(Instant, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            let at = Instant::now();
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((at, line.trim().to_owned()));
            line.clear();
        }
    });
    let _ = publisher.join();
    // The stream ended; give ffmpeg a moment to read the last segment.
    std::thread::sleep(Duration::from_secs(3));
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let _ = server.stop.send(true);

    let lines = lines.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // `#tb 0: 1/90000` then `0, dts, pts, duration, size, crc`.
    let mut tb = (1i64, 90_000i64);
    let mut lat = Vec::new();
    let (mut unmatched, mut skipped) = (0, 0);
    // Steady state only: not the segments ffmpeg finds already listed when
    // it starts (it reads them at once), nor the last segment (closed early
    // by the end of the stream).
    let steady_from = ffmpeg_start + Duration::from_millis(3 * cli.segment_ms);
    let steady_until = log
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0)
        .saturating_sub(i64::try_from(2 * cli.segment_ms).unwrap_or(0));
    for (at, l) in &lines {
        if let Some(rest) = l.strip_prefix("#tb 0:") {
            if let Some((n, d)) = rest.trim().split_once('/') {
                tb = (n.parse().unwrap_or(1), d.parse().unwrap_or(90_000));
            }
            continue;
        }
        if l.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = l.split(',').map(str::trim).collect();
        let Some(pts) = fields.get(2).and_then(|p| p.parse::<i64>().ok()) else {
            continue;
        };
        let ms = (pts * tb.0 * 1000) as f64 / tb.1 as f64;
        let dts_ms = ms.round() as i64;
        match log.get(&dts_ms) {
            Some(published) if *published < steady_from || dts_ms > steady_until => skipped += 1,
            Some(published) => {
                lat.push(at.saturating_duration_since(*published).as_secs_f64() * 1000.0);
            }
            None => unmatched += 1,
        }
    }
    let s = Summary::of(lat.iter().copied());
    println!(
        "\nffmpeg -c copy reading LL-HLS (index.m3u8): {} packets in steady state, \
         {skipped} at the start/end left out, {unmatched} unmatched",
        s.count
    );
    println!("| publish → ffmpeg output (ms) | n | min | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| video packets | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
        s.count, s.min, s.median, s.p99, s.max
    );
    Ok(())
}

fn browser(cli: &Cli) -> Result<(), Error> {
    use arcly_tests::browser::Browser;
    use arcly_tests::ffmpeg::PublishSpec;
    use arcly_tests::hls::{publish_command, wait_for_ok, HlsServer};

    let browser = Browser::start("hls-latency").ok_or("chromium/chromedriver not found")?;
    let server = HlsServer::start();
    let spec = PublishSpec {
        seconds: u32::try_from(cli.seconds + 20).unwrap_or(u32::MAX),
        fps: cli.fps,
        gop: cli.fps * 2,
        ..PublishSpec::default()
    };
    let mut publisher = arcly_tests::Proc::spawn(
        "ffmpeg-publish",
        &mut publish_command(&server.rtmp_url("cam"), &spec),
    );
    wait_for_ok(
        &server.stream_url("cam", "index.m3u8"),
        Duration::from_secs(15),
    )?;
    let mut out = Vec::new();
    for (label, query) in [("LL-HLS (index.m3u8)", ""), ("TS (ts/index.m3u8)", "?ts")] {
        browser.navigate(&server.stream_url("cam", query))?;
        // Warm-up: until it plays, plus 5 s.
        let started = Instant::now();
        loop {
            let t = browser.execute(
                "const v = window.arclyPlayer && window.arclyPlayer.video; \
                 return v ? v.currentTime : 0;",
                serde_json::json!([]),
            )?;
            if t.as_f64().unwrap_or(0.0) > 0.0 || started.elapsed() > Duration::from_secs(20) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(5));
        let mut samples = Vec::new();
        let until = Instant::now() + Duration::from_secs(cli.seconds / 2);
        while Instant::now() < until {
            let v = browser.execute(
                "const h = window.arclyPlayer && window.arclyPlayer.hls; \
                 return h ? h.latency : null;",
                serde_json::json!([]),
            )?;
            if let Some(l) = v.as_f64() {
                samples.push(l * 1000.0);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        out.push((label, Summary::of(samples)));
    }
    publisher.stop();
    println!(
        "\nhls.js in headless Chromium, `hls.latency` sampled every second after a 5 s warm-up"
    );
    println!("| playlist | samples | min | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, s) in out {
        println!(
            "| {label} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            s.count, s.min, s.median, s.p99, s.max
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hls-latency: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut result = Ok(());
    if matches!(cli.mode, Mode::Parts | Mode::Both) {
        result = parts(&rt, &cli);
    }
    if result.is_ok() && matches!(cli.mode, Mode::Ffmpeg | Mode::Both) {
        result = ffmpeg(&rt, &cli);
    }
    if result.is_ok() && cli.mode == Mode::Browser {
        result = browser(&cli);
    }
    rt.shutdown_background();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hls-latency: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
