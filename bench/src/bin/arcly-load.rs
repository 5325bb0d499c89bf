//! `arcly-load`: opens N RTMP players (or one synthetic publisher) against
//! `rtmp://host:port/app/stream` with arcly's own sans-IO client machine
//! (`arcly::rtmp::ClientConnection`) driven over tokio `TcpStream`s, or N
//! RTSP players against `rtsp://host:port/app/stream` (RTP interleaved on
//! the TCP connection, `arcly::rtsp::client::RtspClient`), and
//! reports what the players received and, with `--watch-pid`, what the
//! server process spent (CPU seconds per delivered GB, resident memory per
//! player). Loopback only; a benchmark tool, not a test.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use arcly::frame::MediaKind;
use arcly::rtmp::{ClientConfig, ClientConnection, ClientEvent, ClientMode};
use arcly::time::Clock;
use arcly_bench::procstat;
use arcly_bench::stats::Summary;
use arcly_bench::synth::{SynthConfig, SynthStream};

/// What the players do once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// `play` the stream and count what arrives.
    Play,
    /// Handshake and `connect`, then hold the connection open without
    /// creating a stream: an idle player, for memory per connection.
    Idle,
}

/// RTMP load generator for arcly (and any RTMP server) on loopback.
#[derive(Debug, Parser)]
#[command(name = "arcly-load", version, about)]
struct Cli {
    /// The stream, `rtmp://host:port/app/stream` (host must be loopback).
    url: String,
    /// Number of players.
    #[arg(short = 'n', long, default_value_t = 1000)]
    players: usize,
    /// New connections per second while ramping up.
    #[arg(long, default_value_t = 200.0)]
    ramp: f64,
    /// Seconds to wait after the ramp before measuring.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Length of the measurement window in seconds (publish mode: run time,
    /// 0 = until killed).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// What players do.
    #[arg(long, value_enum, default_value_t = Mode::Play)]
    mode: Mode,
    /// Publish a synthetic H.264 + AAC stream instead of playing.
    #[arg(long)]
    publish: bool,
    /// Publish mode: video bitrate in kbit/s (audio adds 128 kbit/s).
    #[arg(long, default_value_t = 3000)]
    bitrate_kbps: u64,
    /// Server process to measure (CPU from /proc/PID/stat, VmRSS).
    #[arg(long)]
    watch_pid: Option<u32>,
    /// Tokio worker threads of the load generator (it competes with the
    /// server for the same cores).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Read buffer per player in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    read_buf: usize,
    /// Also write the results as one JSON object to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A label carried into the JSON (e.g. `arcly` or `nginx-rtmp`).
    #[arg(long, default_value = "")]
    label: String,
}

const ST_PENDING: u8 = 0;
const ST_TCP: u8 = 1;
const ST_CONNECTED: u8 = 2;
const ST_ACTIVE: u8 = 3;
const ST_CLOSED: u8 = 4;
const ST_FAILED: u8 = 5;

/// Counters of one player, written by its task and read by the reporter.
#[derive(Debug)]
struct PlayerStats {
    state: AtomicU8,
    wire_bytes: AtomicU64,
    frames: AtomicU64,
    video_frames: AtomicU64,
    last_video_dts: AtomicI64,
    ttff_us: AtomicU64,
    /// RTSP: from writing PLAY to the first video frame decoded.
    ttff_play_us: AtomicU64,
}

impl PlayerStats {
    fn new() -> Self {
        PlayerStats {
            state: AtomicU8::new(ST_PENDING),
            wire_bytes: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            video_frames: AtomicU64::new(0),
            last_video_dts: AtomicI64::new(i64::MIN),
            ttff_us: AtomicU64::new(u64::MAX),
            ttff_play_us: AtomicU64::new(u64::MAX),
        }
    }
}

/// Why players ended, counted.
type Reasons = Arc<Mutex<BTreeMap<String, u64>>>;

fn note(reasons: &Reasons, why: String) {
    if let Ok(mut m) = reasons.lock() {
        *m.entry(why).or_default() += 1;
    }
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
            eprintln!("arcly-load: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        if cli.publish {
            publish(&cli).await
        } else {
            play(&cli).await
        }
    });
    rt.shutdown_background();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arcly-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The server address of an `rtmp://` or `rtsp://` URL; refuses anything
/// not loopback.
fn loopback_addr(url: &str) -> Result<SocketAddr, String> {
    let (rest, default_port) = match (url.strip_prefix("rtmp://"), url.strip_prefix("rtsp://")) {
        (Some(r), _) => (r, 1935),
        (_, Some(r)) => (r, 554),
        _ => return Err(format!("not an rtmp:// or rtsp:// URL: {url}")),
    };
    let host = rest.split('/').next().unwrap_or_default();
    let with_port = if host.contains(':') && !host.ends_with(']') {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {with_port}: {e}"))?
        .collect();
    match addrs.first() {
        Some(a) if addrs.iter().all(|a| a.ip().is_loopback()) => Ok(*a),
        Some(_) => Err(format!(
            "{host} is not a loopback address; arcly-load only targets loopback"
        )),
        None => Err(format!("{host} resolves to nothing")),
    }
}

fn client_config(url: &str, mode: ClientMode) -> Result<ClientConfig, String> {
    ClientConfig::from_url(url, mode).map_err(|e| e.to_string())
}

/// Publish mode: one synthetic stream, paced in real time.
async fn publish(cli: &Cli) -> Result<(), String> {
    let addr = loopback_addr(&cli.url)?;
    let config = client_config(&cli.url, ClientMode::Publish)?;
    let clock = Clock::new(std::time::Instant::now());
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut conn = ClientConnection::new(config, clock.instant(std::time::Instant::now()), 1);
    let mut synth = SynthStream::new(SynthConfig {
        video_bps: cli.bitrate_kbps.saturating_mul(1000),
        ..SynthConfig::default()
    });
    let mut buf = vec![0u8; 16 * 1024];
    let mut started: Option<std::time::Instant> = None;
    let (mut sent_frames, mut sent_bytes) = (0u64, 0u64);
    let run_for = (cli.seconds > 0).then(|| Duration::from_secs(cli.seconds));
    loop {
        while let Some(ev) = conn.poll_event() {
            match ev {
                ClientEvent::Publishing => {
                    eprintln!("arcly-load: publishing {}", cli.url);
                    started = Some(std::time::Instant::now());
                }
                ClientEvent::Closed(reason) => {
                    return Err(format!("publisher closed: {reason}"));
                }
                _ => {}
            }
        }
        if let Some(t0) = started {
            let elapsed = t0.elapsed();
            if run_for.is_some_and(|d| elapsed >= d) {
                conn.close(clock.instant(std::time::Instant::now()));
                while let Some(b) = conn.poll_transmit() {
                    let _ = wr.write_all(&b).await;
                }
                eprintln!(
                    "arcly-load: published {sent_frames} frames, {:.1} MB in {:.1} s",
                    sent_bytes as f64 / 1e6,
                    elapsed.as_secs_f64()
                );
                return Ok(());
            }
            let now_ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
            while synth.peek_dts() <= now_ms {
                let f = synth.next_frame();
                sent_bytes += f.payload.len() as u64;
                sent_frames += 1;
                conn.send_frame(&f)
                    .map_err(|e| format!("send_frame: {e}"))?;
            }
        }
        while let Some(b) = conn.poll_transmit() {
            wr.write_all(&b)
                .await
                .map_err(|e| format!("write to {addr}: {e}"))?;
        }
        let wake = match (started, conn.poll_timeout()) {
            (Some(t0), _) => {
                t0 + Duration::from_millis(u64::try_from(synth.peek_dts()).unwrap_or(0))
            }
            (None, Some(deadline)) => clock.to_std(deadline),
            (None, None) => std::time::Instant::now() + Duration::from_secs(1),
        };
        tokio::select! {
            r = rd.read(&mut buf) => {
                let n = r.map_err(|e| format!("read from {addr}: {e}"))?;
                let now = clock.instant(std::time::Instant::now());
                conn.handle_input(now, buf.get(..n).unwrap_or_default());
            }
            () = tokio::time::sleep_until(wake.into()) => {
                conn.handle_timeout(clock.instant(std::time::Instant::now()));
            }
        }
    }
}

/// What every player shares.
#[derive(Debug)]
struct PlayerCtx {
    addr: SocketAddr,
    /// The RTSP URL of RTSP players (`None`: RTMP with `config`).
    rtsp_url: Option<String>,
    config: ClientConfig,
    mode: Mode,
    read_buf: usize,
    clock: Clock,
    reasons: Reasons,
}

/// One RTSP player: connect, drive [`RtspClient`] (OPTIONS, DESCRIBE,
/// SETUP per track over TCP interleaved, PLAY), count what arrives. Idle:
/// connect and send nothing.
async fn rtsp_player(idx: usize, url: String, ctx: Arc<PlayerCtx>, st: Arc<PlayerStats>) {
    use arcly::rtsp::client::{ClientEvent as RtspEvent, RtspClient};
    let clock = ctx.clock;
    let reasons = &ctx.reasons;
    let t_start = std::time::Instant::now();
    let stream = match TcpStream::connect(ctx.addr).await {
        Ok(s) => s,
        Err(e) => {
            st.state.store(ST_FAILED, Ordering::Relaxed);
            note(reasons, format!("tcp connect: {}", e.kind()));
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    st.state.store(ST_TCP, Ordering::Relaxed);
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; ctx.read_buf.max(1024)];
    if ctx.mode == Mode::Idle {
        st.state.store(ST_ACTIVE, Ordering::Relaxed);
        let why = match rd.read(&mut buf).await {
            Ok(0) => "idle: peer closed".to_owned(),
            Ok(_) => "idle: server sent bytes".to_owned(),
            Err(e) => format!("idle read: {}", e.kind()),
        };
        st.state.store(ST_CLOSED, Ordering::Relaxed);
        note(reasons, why);
        return;
    }
    let mut conn = match RtspClient::new(&url, clock.instant(t_start), idx as u64 + 1) {
        Ok(c) => c,
        Err(e) => {
            st.state.store(ST_FAILED, Ordering::Relaxed);
            note(reasons, format!("rtsp url: {e}"));
            return;
        }
    };
    let mut t_play: Option<std::time::Instant> = None;
    let why: String = 'run: loop {
        while let Some(ev) = conn.poll_event() {
            match ev {
                RtspEvent::Playing(_) => st.state.store(ST_ACTIVE, Ordering::Relaxed),
                RtspEvent::Frame(f) => {
                    st.frames.fetch_add(1, Ordering::Relaxed);
                    if f.kind() == MediaKind::Video && !f.is_config() {
                        if st.video_frames.fetch_add(1, Ordering::Relaxed) == 0 {
                            let us =
                                u64::try_from(t_start.elapsed().as_micros()).unwrap_or(u64::MAX);
                            st.ttff_us.store(us, Ordering::Relaxed);
                            if let Some(t) = t_play {
                                let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                                st.ttff_play_us.store(us, Ordering::Relaxed);
                            }
                        }
                        st.last_video_dts.store(f.dts_in(1000), Ordering::Relaxed);
                    }
                }
            }
        }
        if let Some(e) = conn.error() {
            break 'run format!("rtsp: {e}");
        }
        while let Some(b) = conn.poll_transmit() {
            if t_play.is_none() && b.starts_with(b"PLAY ") {
                t_play = Some(std::time::Instant::now());
            }
            if let Err(e) = wr.write_all(&b).await {
                break 'run format!("write: {}", e.kind());
            }
        }
        let read = rd.read(&mut buf);
        let r = match conn.poll_timeout() {
            Some(deadline) => tokio::time::timeout_at(clock.to_std(deadline).into(), read)
                .await
                .ok(),
            None => Some(read.await),
        };
        let now = clock.instant(std::time::Instant::now());
        match r {
            None => conn.handle_timeout(now),
            Some(Ok(0)) => break 'run "peer closed".into(),
            Some(Ok(n)) => {
                st.wire_bytes.fetch_add(n as u64, Ordering::Relaxed);
                conn.handle_input(now, buf.get(..n).unwrap_or_default());
            }
            Some(Err(e)) => break 'run format!("read: {}", e.kind()),
        }
    };
    st.state.store(ST_CLOSED, Ordering::Relaxed);
    note(reasons, why);
}

/// One player: connect, drive the client machine, count what arrives.
async fn player(idx: usize, ctx: Arc<PlayerCtx>, st: Arc<PlayerStats>) {
    if let Some(url) = ctx.rtsp_url.clone() {
        return rtsp_player(idx, url, ctx, st).await;
    }
    let PlayerCtx {
        addr,
        ref config,
        rtsp_url: _,
        mode,
        read_buf,
        clock,
        ref reasons,
    } = *ctx;
    let t_start = std::time::Instant::now();
    let stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            st.state.store(ST_FAILED, Ordering::Relaxed);
            note(reasons, format!("tcp connect: {}", e.kind()));
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    st.state.store(ST_TCP, Ordering::Relaxed);
    let (mut rd, mut wr) = stream.into_split();
    let mut conn = ClientConnection::new(config.clone(), clock.instant(t_start), idx as u64 + 1);
    let mut buf = vec![0u8; read_buf.max(1024)];
    let mut hold = false;
    let why: String = 'run: loop {
        while let Some(ev) = conn.poll_event() {
            match ev {
                ClientEvent::Connected => {
                    st.state.store(ST_CONNECTED, Ordering::Relaxed);
                    if mode == Mode::Idle {
                        hold = true;
                        st.state.store(ST_ACTIVE, Ordering::Relaxed);
                    }
                }
                ClientEvent::Playing => st.state.store(ST_ACTIVE, Ordering::Relaxed),
                ClientEvent::Frame(f) => {
                    st.frames.fetch_add(1, Ordering::Relaxed);
                    if f.kind() == MediaKind::Video && !f.is_config() {
                        if st.video_frames.fetch_add(1, Ordering::Relaxed) == 0 {
                            let us =
                                u64::try_from(t_start.elapsed().as_micros()).unwrap_or(u64::MAX);
                            st.ttff_us.store(us, Ordering::Relaxed);
                        }
                        st.last_video_dts.store(f.dts_in(1000), Ordering::Relaxed);
                    }
                }
                ClientEvent::StreamEof => note(reasons, "stream EOF".into()),
                ClientEvent::Closed(reason) => break 'run format!("closed: {reason}"),
                _ => {}
            }
        }
        if hold {
            // Idle: the createStream the machine queued is never sent; the
            // connection stays open and whatever arrives is only counted.
            drop(conn);
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) => break 'run "idle: peer closed".into(),
                    Ok(n) => {
                        st.wire_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) => break 'run format!("idle read: {}", e.kind()),
                }
            }
        }
        while let Some(b) = conn.poll_transmit() {
            if let Err(e) = wr.write_all(&b).await {
                break 'run format!("write: {}", e.kind());
            }
        }
        let read = rd.read(&mut buf);
        let r = match conn.poll_timeout() {
            Some(deadline) => tokio::time::timeout_at(clock.to_std(deadline).into(), read)
                .await
                .ok(),
            None => Some(read.await),
        };
        let now = clock.instant(std::time::Instant::now());
        match r {
            None => conn.handle_timeout(now),
            Some(Ok(n)) => {
                st.wire_bytes.fetch_add(n as u64, Ordering::Relaxed);
                conn.handle_input(now, buf.get(..n).unwrap_or_default());
            }
            Some(Err(e)) => break 'run format!("read: {}", e.kind()),
        }
    };
    st.state.store(ST_CLOSED, Ordering::Relaxed);
    note(reasons, why);
}

/// A snapshot of every player's counters.
fn snapshot(players: &[Arc<PlayerStats>]) -> Vec<(u64, u64, i64)> {
    players
        .iter()
        .map(|p| {
            (
                p.wire_bytes.load(Ordering::Relaxed),
                p.frames.load(Ordering::Relaxed),
                p.last_video_dts.load(Ordering::Relaxed),
            )
        })
        .collect()
}

fn count_state(players: &[Arc<PlayerStats>], f: impl Fn(u8) -> bool) -> usize {
    players
        .iter()
        .filter(|p| f(p.state.load(Ordering::Relaxed)))
        .count()
}

/// Per-player lag behind the live edge (the newest video dts any player has),
/// in ms, over the players that have video.
fn lags(players: &[Arc<PlayerStats>]) -> Vec<f64> {
    let dts: Vec<i64> = players
        .iter()
        .map(|p| p.last_video_dts.load(Ordering::Relaxed))
        .filter(|d| *d != i64::MIN)
        .collect();
    let edge = dts.iter().copied().max().unwrap_or(0);
    dts.iter().map(|d| (edge - d) as f64).collect()
}

/// Play mode: ramp the players, measure a window, report.
async fn play(cli: &Cli) -> Result<(), String> {
    let addr = loopback_addr(&cli.url)?;
    let rtsp_url = cli.url.starts_with("rtsp://").then(|| cli.url.clone());
    // RTSP players use only the URL; the RTMP config is built from its
    // path either way.
    let config = client_config(&cli.url.replacen("rtsp://", "rtmp://", 1), ClientMode::Play)?;
    let clock = Clock::new(std::time::Instant::now());
    let reasons: Reasons = Arc::default();
    let pid = cli.watch_pid;
    let own = std::process::id();
    let players: Vec<Arc<PlayerStats>> = (0..cli.players)
        .map(|_| Arc::new(PlayerStats::new()))
        .collect();

    let rss_base = pid.and_then(procstat::rss_kib);
    let ramp_start = std::time::Instant::now();
    let gap = Duration::from_secs_f64(1.0 / cli.ramp.max(0.1));
    let ctx = Arc::new(PlayerCtx {
        addr,
        rtsp_url,
        config,
        mode: cli.mode,
        read_buf: cli.read_buf,
        clock,
        reasons: Arc::clone(&reasons),
    });
    for (i, st) in players.iter().enumerate() {
        tokio::spawn(player(i, Arc::clone(&ctx), Arc::clone(st)));
        tokio::time::sleep_until((ramp_start + gap.mul_f64((i + 1) as f64)).into()).await;
    }
    // Wait until every player is active or gone, at most 15 s past the ramp.
    let settle_deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < settle_deadline
        && count_state(&players, |s| s < ST_ACTIVE) > 0
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ramp_s = ramp_start.elapsed().as_secs_f64();
    eprintln!(
        "arcly-load: ramp done in {ramp_s:.1} s: {} active, {} not yet, {} closed/failed",
        count_state(&players, |s| s == ST_ACTIVE),
        count_state(&players, |s| s < ST_ACTIVE),
        count_state(&players, |s| s > ST_ACTIVE),
    );
    tokio::time::sleep(Duration::from_secs(cli.warmup)).await;

    // Measurement window.
    let before = snapshot(&players);
    let cpu0 = pid.and_then(procstat::cpu_seconds);
    let own0 = procstat::cpu_seconds(own);
    let t0 = std::time::Instant::now();
    let mut rss_samples = Vec::new();
    let mut max_lag = 0.0f64;
    let mut last_lags = Vec::new();
    for sec in 1..=cli.seconds.max(1) {
        tokio::time::sleep_until((t0 + Duration::from_secs(sec)).into()).await;
        if let Some(kib) = pid.and_then(procstat::rss_kib) {
            rss_samples.push(kib as f64);
        }
        last_lags = lags(&players);
        let s = Summary::of(last_lags.iter().copied());
        max_lag = max_lag.max(s.max);
        if sec % 5 == 0 {
            eprintln!(
                "arcly-load: t={sec}s active={} lag p50={:.0} max={:.0} ms",
                count_state(&players, |s| s == ST_ACTIVE),
                s.median,
                s.max
            );
        }
    }
    let window = t0.elapsed().as_secs_f64();
    let after = snapshot(&players);
    let cpu1 = pid.and_then(procstat::cpu_seconds);
    let own1 = procstat::cpu_seconds(own);

    let active = count_state(&players, |s| s == ST_ACTIVE);
    // Summed as integers: an empty f64 sum is -0.0.
    let bytes = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.0 - b.0)
        .sum::<u64>() as f64;
    let frames = Summary::of(before.iter().zip(&after).map(|(b, a)| (a.1 - b.1) as f64));
    let total_frames = Summary::of(
        players
            .iter()
            .map(|p| p.frames.load(Ordering::Relaxed) as f64),
    );
    let lag = Summary::of(last_lags);
    // How much further behind real time each player fell during the window:
    // wall time minus the media time (video dts) it advanced.
    let window_ms = window * 1000.0;
    let lag_growth = Summary::of(
        before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b.2 != i64::MIN && a.2 != i64::MIN)
            .map(|(b, a)| window_ms - (a.2 - b.2) as f64),
    );
    let ttff = Summary::of(
        players
            .iter()
            .map(|p| p.ttff_us.load(Ordering::Relaxed))
            .filter(|us| *us != u64::MAX)
            .map(|us| us as f64 / 1000.0),
    );
    let ttff_play = Summary::of(
        players
            .iter()
            .map(|p| p.ttff_play_us.load(Ordering::Relaxed))
            .filter(|us| *us != u64::MAX)
            .map(|us| us as f64 / 1000.0),
    );
    let server_cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let own_cpu = own0.zip(own1).map(|(a, b)| b - a);
    let gb = bytes / 1e9;
    let cpu_per_gb = server_cpu.filter(|_| gb > 0.0).map(|c| c / gb);
    let rss = Summary::of(rss_samples);
    let rss_per_player = rss_base
        .filter(|_| active > 0 && rss.count > 0)
        .map(|base| (rss.median - base as f64) / active as f64);
    let reasons = reasons.lock().map(|m| m.clone()).unwrap_or_default();

    let fmt_opt =
        |v: Option<f64>, prec: usize| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.prec$}"));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "url               {}  ({:?}, label {:?})",
        cli.url, cli.mode, cli.label
    );
    let _ = writeln!(
        out,
        "players           {} requested, {} active at end, ramp {:.1} s",
        cli.players, active, ramp_s
    );
    let _ = writeln!(out, "window            {window:.1} s");
    let _ = writeln!(out, "frames/player     min {:.0}  median {:.0}  max {:.0}  (in window; since start median {:.0})", frames.min, frames.median, frames.max, total_frames.median);
    let _ = writeln!(
        out,
        "delivered         {:.3} GB  ({:.1} Mbit/s total, {:.2} Mbit/s per active player)",
        gb,
        bytes * 8.0 / window / 1e6,
        if active > 0 {
            bytes * 8.0 / window / 1e6 / active as f64
        } else {
            0.0
        }
    );
    let _ = writeln!(
        out,
        "lag behind edge   p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms  (max over window {:.0} ms)",
        lag.median, lag.p99, lag.max, max_lag
    );
    let _ = writeln!(out, "lag growth        min {:.0} ms  median {:.0} ms  max {:.0} ms  (wall time minus media time advanced in window, +-1 frame)", lag_growth.min, lag_growth.median, lag_growth.max);
    let _ = writeln!(
        out,
        "first video frame p50 {:.0} ms  max {:.0} ms after connect",
        ttff.median, ttff.max
    );
    if ttff_play.count > 0 {
        let _ = writeln!(
            out,
            "first video frame after PLAY (RTSP) p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} players)",
            ttff_play.median, ttff_play.p99, ttff_play.max, ttff_play.count
        );
    }
    if pid.is_some() {
        let _ = writeln!(
            out,
            "server CPU        {} s in window = {} CPU-s/s, {} CPU-s per delivered GB",
            fmt_opt(server_cpu, 2),
            fmt_opt(server_cpu.map(|c| c / window), 3),
            fmt_opt(cpu_per_gb, 3)
        );
        let _ = writeln!(out, "server RSS        {} KiB before players, {:.0} KiB median in window (max {:.0}) => {} KiB per player", rss_base.map_or_else(|| "n/a".into(), |v| v.to_string()), rss.median, rss.max, fmt_opt(rss_per_player, 1));
    }
    let _ = writeln!(
        out,
        "load generator    {} CPU-s in window ({} threads)",
        fmt_opt(own_cpu, 2),
        cli.threads
    );
    let _ = writeln!(out, "player endings    {reasons:?}");
    print!("{out}");

    if let Some(path) = &cli.json {
        let num = |v: Option<f64>| {
            v.filter(|v| v.is_finite())
                .map_or_else(|| "null".to_owned(), |v| format!("{v:.4}"))
        };
        let mut j = String::from("{");
        let _ = write!(
            j,
            "\"label\":{:?},\"url\":{:?},\"mode\":\"{:?}\",",
            cli.label, cli.url, cli.mode
        );
        let _ = write!(
            j,
            "\"players\":{},\"active\":{},\"ramp_s\":{:.2},\"window_s\":{:.2},",
            cli.players, active, ramp_s, window
        );
        let _ = write!(
            j,
            "\"frames_min\":{},\"frames_median\":{},\"frames_max\":{},",
            frames.min, frames.median, frames.max
        );
        let _ = write!(j, "\"bytes\":{bytes},\"lag_ms_p50\":{},\"lag_ms_p99\":{},\"lag_ms_max\":{},\"lag_ms_max_window\":{},", lag.median, lag.p99, lag.max, max_lag);
        let _ = write!(
            j,
            "\"lag_growth_ms_median\":{:.1},\"lag_growth_ms_max\":{:.1},",
            lag_growth.median, lag_growth.max
        );
        let _ = write!(
            j,
            "\"ttff_ms_p50\":{:.1},\"ttff_ms_max\":{:.1},\"ttff_after_play_ms_p50\":{},\"ttff_after_play_ms_max\":{},",
            ttff.median,
            ttff.max,
            num((ttff_play.count > 0).then_some(ttff_play.median)),
            num((ttff_play.count > 0).then_some(ttff_play.max))
        );
        let _ = write!(
            j,
            "\"server_cpu_s\":{},\"server_cpu_per_s\":{},\"cpu_s_per_gb\":{},",
            num(server_cpu),
            num(server_cpu.map(|c| c / window)),
            num(cpu_per_gb)
        );
        let _ = write!(j, "\"rss_base_kib\":{},\"rss_median_kib\":{},\"rss_max_kib\":{},\"rss_per_player_kib\":{},", num(rss_base.map(|v| v as f64)), num((rss.count > 0).then_some(rss.median)), num((rss.count > 0).then_some(rss.max)), num(rss_per_player));
        let _ = write!(j, "\"load_cpu_s\":{},\"endings\":{{", num(own_cpu));
        for (i, (k, v)) in reasons.iter().enumerate() {
            let _ = write!(j, "{}{:?}:{v}", if i > 0 { "," } else { "" }, k);
        }
        j.push_str("}}\n");
        std::fs::write(path, j).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert_eq!(
            loopback_addr("rtmp://127.0.0.1:29350/live/x").unwrap(),
            "127.0.0.1:29350".parse().unwrap()
        );
        assert_eq!(
            loopback_addr("rtmp://[::1]/live/x").unwrap(),
            "[::1]:1935".parse().unwrap()
        );
        assert!(loopback_addr("rtmp://192.0.2.1:1935/live/x").is_err());
        assert_eq!(
            loopback_addr("rtsp://127.0.0.1:8554/live/x").unwrap(),
            "127.0.0.1:8554".parse().unwrap()
        );
        assert!(loopback_addr("rtsp://192.0.2.1/live/x").is_err());
        assert!(loopback_addr("http://127.0.0.1/live/x").is_err());
    }

    #[test]
    fn lag_is_measured_from_the_newest_player() {
        let players: Vec<Arc<PlayerStats>> = [1000, 1400, i64::MIN, 900]
            .into_iter()
            .map(|d| {
                let p = PlayerStats::new();
                p.last_video_dts.store(d, Ordering::Relaxed);
                Arc::new(p)
            })
            .collect();
        assert_eq!(lags(&players), vec![400.0, 0.0, 500.0]);
    }

    #[test]
    fn cli_defaults() {
        let cli = Cli::try_parse_from(["arcly-load", "rtmp://127.0.0.1/live/x"]).unwrap();
        assert_eq!((cli.players, cli.seconds, cli.mode), (1000, 30, Mode::Play));
        assert!(!cli.publish);
    }
}
