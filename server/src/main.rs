//! `arcly`: the ready-to-run streaming server.
//!
//! Builds one [`Engine`] (any app name accepted, default settings), joins each
//! protocol's session factory to it and serves every listener on the tokio
//! adapter (`arcly-tokio`, multi-thread runtime). Logs through `tracing`
//! (`RUST_LOG`, default `info`). SIGINT/SIGTERM shut down gracefully: stop
//! accepting, close every session, let them flush; a second signal exits at
//! once.
//!
//! Adding a protocol: one more `Listen` flag in [`Cli`] (e.g. `--rtsp`,
//! `--srt`, `--http`), one more entry in [`listeners`] with its factory and
//! a [`Listener::hints`] text; the binding, error reporting and shutdown are
//! shared.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arcly::rtmp::{RtmpSessionFactory, ServerConfig};
use arcly::session::SessionFactory;
use arcly::Engine;
use arcly_tokio::ServeConfig;
use clap::Parser;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

mod api;
mod auth;
mod config;
mod metrics;
mod pull;
mod relay;
mod replay;
mod rtsp_udp;
mod srt;
mod trim;
mod webrtc;

/// A listen address, or `off` to disable that protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listen {
    /// The protocol is disabled.
    Off,
    /// Listen on this address.
    On(SocketAddr),
}

impl FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Listen::Off);
        }
        // `:1935` is short for every interface.
        if let Some(port) = s.strip_prefix(':') {
            let port: u16 = port
                .parse()
                .map_err(|_| format!("`{s}`: not a port number"))?;
            return Ok(Listen::On(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                port,
            )));
        }
        s.parse()
            .map(Listen::On)
            .map_err(|_| format!("`{s}`: expected IP:PORT (e.g. 0.0.0.0:1935), :PORT or off"))
    }
}

/// arcly — a sans-IO live streaming server.
///
/// Publish live audio/video over RTMP and play it back to any number of
/// viewers. Every listener takes an address (IP:PORT or :PORT) or `off`.
#[derive(Debug, Parser)]
#[command(name = "arcly", version, about, long_about)]
struct Cli {
    /// RTMP listen address (publish and play), or `off`.
    #[arg(long, value_name = "ADDR|off", default_value = "0.0.0.0:1935")]
    rtmp: Listen,

    /// RTSP listen address (TCP; publish with ANNOUNCE/RECORD and play with
    /// DESCRIBE/PLAY at rtsp://HOST:PORT/live/NAME, RTP interleaved on the
    /// connection), or `off`.
    #[arg(long, value_name = "ADDR|off", default_value = "0.0.0.0:8554")]
    rtsp: Listen,

    /// RTSP over UDP: the RTP port for every RTSP session that asks for
    /// `RTP/AVP;unicast;client_port=…` (RTCP on the next port), or `off`.
    /// Default 0.0.0.0:8000 (a bind failure of the default only warns);
    /// off when --rtsp is off.
    #[arg(long, value_name = "ADDR|off")]
    rtsp_udp: Option<Listen>,

    /// Seconds without a datagram (RTCP receiver report) from a UDP RTSP
    /// client's ports after which its session is dropped.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    rtsp_udp_timeout: f64,

    /// HTTP listen address (HLS / LL-HLS playlists and segments, player
    /// page at /<app>/<stream>/), or `off`.
    #[arg(long, value_name = "ADDR|off", default_value = "0.0.0.0:8888")]
    http: Listen,

    /// SRT listen address (UDP; publish with `streamid=publish:live/NAME`,
    /// play with `streamid=read:live/NAME`), or `off`.
    #[arg(long, value_name = "ADDR|off", default_value = "0.0.0.0:8890")]
    srt: Listen,

    /// Passphrase SRT callers must encrypt with (10 to 79 characters);
    /// without it only unencrypted callers are accepted.
    #[arg(long, value_name = "P", value_parser = srt::parse_passphrase)]
    srt_passphrase: Option<String>,

    /// SRT receive latency (TSBPD) in milliseconds; each connection uses
    /// the larger of both sides' values.
    #[arg(long, value_name = "MS", default_value_t = 120)]
    srt_latency: u16,

    /// Most connections served at once per listener; more are refused.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_connections: usize,

    /// Most TCP connections (RTMP) served at once from one source address
    /// (0: no limit); more are closed at once, with a rate-limited
    /// `refusing connection: too many connections from this address`.
    #[arg(long, value_name = "N", default_value_t = arcly::session::serve::DEFAULT_MAX_CONNECTIONS_PER_IP)]
    max_connections_per_ip: usize,

    /// Most streams one source address may publish at once, on every
    /// protocol (0: no limit); more are refused (RTMP
    /// `NetStream.Publish.BadName`, SRT reject 1402).
    #[arg(long, value_name = "N", default_value_t = arcly::engine::DEFAULT_MAX_PUBLISHERS_PER_IP)]
    max_publishers_per_ip: usize,

    /// Seconds an admitted publisher has to send its first media frame;
    /// then it is closed and its stream slot freed (every protocol).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    first_media_timeout: f64,

    /// Seconds without a media frame after which a publisher is closed and
    /// its stream slot freed (every protocol).
    #[arg(long, value_name = "SECS", default_value_t = 15.0)]
    media_timeout: f64,

    /// SRT: most connections (publishers and viewers) from one source
    /// address (0: no limit); more are rejected with 1402 (overload).
    #[arg(long, value_name = "N", default_value_t = 256)]
    srt_max_connections_per_ip: usize,

    /// SRT: play admissions one source address may make in a burst (0: no
    /// limit); refilled at --srt-play-rate-per-ip per second, beyond that
    /// play requests are rejected with 1402 (overload).
    #[arg(long, value_name = "N", default_value_t = 128)]
    srt_play_burst_per_ip: u32,

    /// SRT: play admissions per second one source address regains.
    #[arg(long, value_name = "N", default_value_t = 32)]
    srt_play_rate_per_ip: u32,

    /// Seconds sessions get to say goodbye on shutdown.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    shutdown_grace: f64,

    /// Merge each player's writes over this many milliseconds (0: write
    /// every frame at once, lowest latency; ~200-350: SRS-like batching,
    /// less CPU per viewer).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    write_merge: u64,

    /// Seconds a TCP viewer (RTMP) may leave pending output unread before
    /// it is dropped (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 15.0)]
    write_stall_timeout: f64,

    /// Kernel send buffer (SO_SNDBUF) of each accepted TCP connection in
    /// bytes, so a viewer that never reads cannot hold megabytes (0: the
    /// kernel's default, autotuned).
    #[arg(long, value_name = "BYTES", default_value_t = arcly::session::serve::DEFAULT_TCP_SEND_BUFFER)]
    tcp_send_buffer: usize,

    /// RTMP: bytes one publishing connection may hold in unfinished
    /// messages (all chunk streams together); more closes it.
    #[arg(long, value_name = "BYTES", default_value_t = 10 << 20)]
    rtmp_max_partial_bytes: usize,

    /// RTMP: the same budget for connections that have not been admitted
    /// as publishers (players, connections before publish).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    rtmp_max_partial_bytes_unpublished: usize,

    /// RTMP: bytes all connections together may hold in unfinished
    /// messages; the connection that would pass it is closed.
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 20)]
    rtmp_max_partial_bytes_total: usize,

    /// Give freed heap memory back to the system every SECS seconds
    /// (glibc `malloc_trim`), so RSS falls back after a burst of
    /// connections or requests; 0 turns it off.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    trim_interval: f64,

    /// Record every published stream as fragmented MP4 under
    /// DIR/<app>/<stream>/<YYYYmmdd-HHMMSS>.mp4 (off by default).
    #[arg(long, value_name = "DIR")]
    record: Option<std::path::PathBuf>,

    /// Keep stream KEY (app/name, e.g. live/cam) filled from an rtsp:// or
    /// rtmp:// source (a camera: rtsp://user:pass@cam/stream), reconnecting
    /// with back-off; repeatable.
    #[arg(long = "pull", value_name = "KEY=URL", value_parser = pull::parse)]
    pull: Vec<pull::PullSpec>,

    /// WebRTC UDP address (one socket for every WHIP publisher and WHEP
    /// viewer; signalling is `POST http://HOST:HTTP_PORT/live/NAME/whip`
    /// or `/whep` on the HTTP listener), or `off`.
    #[arg(long, value_name = "ADDR|off", default_value = "0.0.0.0:8189")]
    webrtc: Listen,

    /// A further IP address to offer WebRTC peers as a host candidate
    /// (the public address of a NAT or a container host); repeatable.
    #[arg(long = "webrtc-ip", value_name = "IP")]
    webrtc_ip: Vec<IpAddr>,

    /// WebRTC: most sessions (publishers and viewers) at once; more are
    /// answered 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = arcly_webrtc::service::DEFAULT_MAX_SESSIONS)]
    webrtc_max_sessions: usize,

    /// WebRTC: most sessions from one client IP; more are answered 503.
    #[arg(long, value_name = "N", default_value_t = arcly_webrtc::service::DEFAULT_MAX_SESSIONS_PER_IP)]
    webrtc_max_sessions_per_ip: usize,

    /// Configuration file, auth hook, JWT key and failure slow-down
    /// (src/config.rs; every flag is also a key of the file).
    #[command(flatten)]
    config: config::ConfigArgs,

    /// Pull on demand (src/relay.rs): `--pull-on-demand PATTERN=URL`, its
    /// grace and wait times.
    #[command(flatten)]
    relay: relay::RelayArgs,

    /// Bearer token of the control API (`/v1/...`) and `/metrics` on the
    /// HTTP listener (docs/api.md); without it both answer 403.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ARCLY_API_TOKEN",
        hide_env_values = true
    )]
    api_token: Option<String>,

    /// Without a subcommand the server runs.
    #[command(subcommand)]
    command: Option<Command>,
}

/// Subcommands other than serving.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Replay a pcap/pcapng capture through the protocol machines and print
    /// the events (docs/replay.md).
    Replay(replay::ReplayArgs),
}

/// One protocol listener of the server.
struct Listener {
    /// Protocol name for logs and messages (`RTMP`).
    name: &'static str,
    addr: SocketAddr,
    factory: Arc<dyn SessionFactory>,
    /// What to tell the user once bound (publish / play commands).
    hints: fn(SocketAddr) -> Vec<String>,
}

/// The listeners enabled by the command line.
fn listeners(cli: &Cli, engine: &Engine, udp: Option<&rtsp_udp::RtspUdp>) -> Vec<Listener> {
    let mut out = Vec::new();
    if let Listen::On(addr) = cli.rtmp {
        out.push(Listener {
            name: "RTMP",
            addr,
            factory: Arc::new(
                RtmpSessionFactory::new(engine.clone(), relay::admission(auth::admission()))
                    .with_config(rtmp_config(cli)),
            ),
            hints: rtmp_hints,
        });
    }
    if let Listen::On(addr) = cli.rtsp {
        out.push(Listener {
            name: "RTSP",
            addr,
            factory: Arc::new(rtsp_udp::session_factory(engine, udp)),
            hints: rtsp_hints,
        });
    }
    out
}

/// The RTMP server settings the command line chose.
/// Every app's settings: the defaults, with the write-merge window and the
/// publisher media timeouts from the command line.
fn app_config(cli: &Cli) -> arcly::AppConfig {
    let secs = |s: f64, default: u64| {
        Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::from_secs(default))
    };
    arcly::AppConfig::default()
        .with_write_merge(Duration::from_millis(cli.write_merge))
        .with_first_media_timeout(secs(cli.first_media_timeout, 10))
        .with_media_timeout(secs(cli.media_timeout, 15))
}

fn rtmp_config(cli: &Cli) -> ServerConfig {
    ServerConfig::default()
        .with_max_partial_bytes(cli.rtmp_max_partial_bytes)
        .with_max_partial_bytes_unpublished(cli.rtmp_max_partial_bytes_unpublished)
        .with_max_partial_bytes_total(cli.rtmp_max_partial_bytes_total)
}

/// A host name to show in URLs for a bound address.
fn display_host(addr: SocketAddr) -> String {
    match addr.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

fn rtmp_hints(addr: SocketAddr) -> Vec<String> {
    let base = format!("rtmp://{}:{}/live", display_host(addr), addr.port());
    vec![
        format!("publish: ffmpeg -re -i input.mp4 -c copy -f flv {base}/<name>"),
        format!("         (OBS: server {base}, stream key <name>)"),
        format!("play:    ffplay {base}/<name>"),
    ]
}

fn rtsp_hints(addr: SocketAddr) -> Vec<String> {
    let base = format!("rtsp://{}:{}/live", display_host(addr), addr.port());
    vec![
        format!(
            "publish: ffmpeg -re -i input.mp4 -c copy -f rtsp -rtsp_transport tcp {base}/<name>"
        ),
        format!("play:    ffplay -rtsp_transport tcp {base}/<name>"),
    ]
}

fn main() -> ExitCode {
    // The command line merged with `--config FILE` (flags win).
    let cli: Cli = match config::load() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if let Some(Command::Replay(args)) = &cli.command {
        // Replay logs only warnings by default: the output is the events.
        tracing_subscriber::fmt()
            .with_env_filter(
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error")),
            )
            .with_writer(std::io::stderr)
            .init();
        return replay::run(args);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("arcly")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("arcly: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    config::spawn_reload_on_sighup();
    if cli.trim_interval > 0.0 && cli.trim_interval.is_finite() {
        tokio::spawn(trim::run(Duration::from_secs_f64(cli.trim_interval)));
    }
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("arcly: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Apps are not configured in code here: every app name gets the default
    // settings, with the write-merge window from the command line.
    let engine = Engine::new();
    engine.set_default_app(Some(app_config(&cli)));
    engine.set_max_publishers_per_ip(cli.max_publishers_per_ip);
    relay::install(&cli.relay, &engine);
    let udp = match (cli.rtsp, cli.rtsp_udp) {
        (Listen::Off, _) | (_, Some(Listen::Off)) => None,
        (Listen::On(_), Some(Listen::On(a))) => {
            match rtsp_udp::bind(a, true, cli.rtsp_udp_timeout).await {
                Ok(u) => u,
                Err(code) => return code,
            }
        }
        (Listen::On(_), None) => {
            let a = rtsp_udp::DEFAULT_ADDR
                .parse()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 8000)));
            rtsp_udp::bind(a, false, cli.rtsp_udp_timeout)
                .await
                .ok()
                .flatten()
        }
    };
    let wanted = listeners(&cli, &engine, udp.as_ref());
    if wanted.is_empty() && cli.http == Listen::Off && cli.srt == Listen::Off {
        eprintln!("arcly: every listener is off; nothing to serve");
        return ExitCode::FAILURE;
    }
    let config = ServeConfig::default()
        .with_max_connections(cli.max_connections.max(1))
        .with_max_connections_per_ip(cli.max_connections_per_ip)
        .with_shutdown_grace(
            Duration::try_from_secs_f64(cli.shutdown_grace.max(0.0))
                .unwrap_or(Duration::from_secs(2)),
        )
        // The write-merge window comes from each session's app (above).
        .with_drive(
            arcly_tokio::DriveConfig::default().with_write_stall_timeout(
                Duration::try_from_secs_f64(cli.write_stall_timeout.max(0.0))
                    .unwrap_or(arcly::session::driver::DEFAULT_WRITE_STALL_TIMEOUT),
            ),
        )
        .with_send_buffer(cli.tcp_send_buffer);

    // Bind everything first: a listener that cannot bind fails the start.
    let mut bound = Vec::new();
    for l in wanted {
        match tokio::net::TcpListener::bind(l.addr).await {
            Ok(sock) => {
                let addr = sock.local_addr().unwrap_or(l.addr);
                bound.push((l, sock, addr));
            }
            Err(e) => {
                eprintln!("arcly: cannot listen for {} on {}: {e}", l.name, l.addr);
                return ExitCode::FAILURE;
            }
        }
    }

    let http = match bind_http(&cli).await {
        Ok(h) => h,
        Err(code) => return code,
    };
    let srt_bound = match cli.srt {
        Listen::On(addr) => match srt::bind(addr).await {
            Ok(b) => Some(b),
            Err(code) => return code,
        },
        Listen::Off => None,
    };
    let webrtc_bound = match cli.webrtc {
        Listen::On(addr) => match webrtc::bind(addr).await {
            Ok(b) => Some(b),
            Err(code) => return code,
        },
        Listen::Off => None,
    };

    println!("arcly {} ready", env!("CARGO_PKG_VERSION"));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let rtsp_addr = bound
        .iter()
        .find(|(l, _, _)| l.name == "RTSP")
        .map(|(_, _, a)| *a);
    for (l, sock, addr) in bound {
        println!("  {} listening on {addr}", l.name);
        for hint in (l.hints)(addr) {
            println!("    {hint}");
        }
        tracing::info!(protocol = l.name, %addr, "listening");
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let name = l.name;
        let config = config.clone();
        servers.spawn(async move {
            if let Err(e) = arcly_tokio::serve_tcp_with(sock, l.factory, shutdown, config).await {
                tracing::error!(protocol = name, "listener failed: {e}");
            }
        });
    }

    let webrtc = webrtc_bound.map(|(sock, addr)| {
        let options = webrtc::Options {
            public_ips: cli.webrtc_ip.clone(),
            max_sessions: cli.webrtc_max_sessions,
            max_sessions_per_ip: cli.webrtc_max_sessions_per_ip,
        };
        webrtc::spawn(&mut servers, sock, addr, &engine, &options, stop_rx.clone())
    });
    if let Some(u) = udp {
        let rtsp = match cli.rtsp {
            Listen::On(_) => rtsp_addr,
            Listen::Off => None,
        };
        rtsp_udp::spawn(&mut servers, u, rtsp, stop_rx.clone());
    }
    if let Some((sock, addr)) = http {
        spawn_http(
            &mut servers,
            sock,
            addr,
            &cli,
            &engine,
            &config,
            webrtc.as_ref(),
            stop_rx.clone(),
        );
    }
    if let Some((sock, addr)) = srt_bound {
        println!("  SRT listening on {addr}/udp");
        let encrypted = cli.srt_passphrase.is_some();
        for hint in srt::hints(addr, &display_host(addr), encrypted) {
            println!("    {hint}");
        }
        tracing::info!(protocol = "SRT", %addr, encrypted, latency_ms = cli.srt_latency, "listening");
        let passphrase = cli.srt_passphrase.clone();
        let limits = srt::PeerLimits {
            max_connections: cli.srt_max_connections_per_ip,
            play_burst: cli.srt_play_burst_per_ip,
            play_rate: cli.srt_play_rate_per_ip,
        };
        let factory = srt::factory(
            &engine,
            cli.srt_latency,
            passphrase,
            cli.max_connections,
            limits,
        );
        srt::spawn(&mut servers, sock, factory, stop_rx.clone());
    }
    pull::spawn_all(&mut servers, &engine, &cli.pull, stop_rx.clone());
    if let Some(dir) = cli.record.clone() {
        println!("  recording to {}", dir.display());
        tracing::info!(dir = %dir.display(), "recording");
        let mut stop = stop_rx.clone();
        let config = arcly_tokio::record::RecordingConfig::new(dir);
        servers.spawn(arcly_tokio::record::record_streams(
            engine.clone(),
            config,
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ));
    }

    tokio::select! {
        _ = signals.recv() => {}
        _ = servers.join_next() => {
            tracing::error!("a listener stopped unexpectedly; shutting down");
        }
    }
    tracing::info!("shutting down (send the signal again to exit at once)");
    let _ = stop_tx.send(true);
    tokio::select! {
        _ = async { while servers.join_next().await.is_some() {} } => {}
        _ = signals.recv() => {
            tracing::warn!("second signal: exiting now");
            return ExitCode::from(130);
        }
    }
    tracing::info!("bye");
    ExitCode::SUCCESS
}

/// `--http`: binds the HLS listener (`None` when off).
async fn bind_http(cli: &Cli) -> Result<Option<(tokio::net::TcpListener, SocketAddr)>, ExitCode> {
    let Listen::On(addr) = cli.http else {
        return Ok(None);
    };
    match tokio::net::TcpListener::bind(addr).await {
        Ok(sock) => {
            let bound = sock.local_addr().unwrap_or(addr);
            Ok(Some((sock, bound)))
        }
        Err(e) => {
            eprintln!("arcly: cannot listen for HTTP on {addr}: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

fn http_hints(addr: SocketAddr) -> Vec<String> {
    let base = format!("http://{}:{}/live/<name>", display_host(addr), addr.port());
    vec![
        format!("LL-HLS:  {base}/index.m3u8"),
        format!("HLS/TS:  {base}/ts/index.m3u8"),
        format!("player:  {base}/"),
    ]
}

/// Serves HLS / LL-HLS for every stream of `engine` (`arcly::http`), and
/// the WHIP/WHEP routes when WebRTC is on.
#[allow(clippy::too_many_arguments)]
fn spawn_http(
    servers: &mut tokio::task::JoinSet<()>,
    sock: tokio::net::TcpListener,
    addr: SocketAddr,
    cli: &Cli,
    engine: &Engine,
    config: &ServeConfig,
    webrtc: Option<&webrtc::Running>,
    mut stop: watch::Receiver<bool>,
) {
    println!("  HTTP listening on {addr}");
    for hint in http_hints(addr) {
        println!("    {hint}");
    }
    tracing::info!(protocol = "HTTP", %addr, "listening");
    let mut router = api::http_router(engine, api::settings(cli, addr));
    if let Some(w) = webrtc {
        webrtc::mount(&mut router, w, addr, &display_host(addr));
    }
    let router = Arc::new(router);
    let http_config = arcly_tokio::HttpServeConfig::default()
        .with_max_connections(cli.max_connections.max(1))
        .with_shutdown_grace(config.shutdown_grace);
    servers.spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = arcly_tokio::serve_http_with(sock, router, shutdown, http_config).await {
            tracing::error!(protocol = "HTTP", "listener failed: {e}");
        }
    });
}

/// SIGINT and SIGTERM, installed before the listeners start so that a
/// signal sent as soon as the banner shows is never missed.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Completes on the next SIGINT or SIGTERM (Ctrl-C elsewhere).
    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.int.recv() => tracing::info!("SIGINT"),
            _ = self.term.recv() => tracing::info!("SIGTERM"),
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_listen_addresses() {
        assert_eq!("off".parse::<Listen>(), Ok(Listen::Off));
        assert_eq!(
            ":1935".parse::<Listen>(),
            Ok(Listen::On("0.0.0.0:1935".parse().unwrap()))
        );
        assert_eq!(
            "127.0.0.1:19350".parse::<Listen>(),
            Ok(Listen::On("127.0.0.1:19350".parse().unwrap()))
        );
        assert!("nonsense".parse::<Listen>().is_err());
        assert!(":99999".parse::<Listen>().is_err());
    }

    #[test]
    fn rtmp_limits_default_to_the_library_and_are_settable() {
        let cli = Cli::try_parse_from(["arcly"]).unwrap();
        assert_eq!(rtmp_config(&cli), ServerConfig::default());
        let cli = Cli::try_parse_from(["arcly", "--rtmp-max-partial-bytes", "4096"]).unwrap();
        assert_eq!(rtmp_config(&cli).max_partial_bytes, 4096);
    }

    #[test]
    fn peer_limits_default_to_the_library_and_are_settable() {
        let cli = Cli::try_parse_from(["arcly"]).unwrap();
        let app = app_config(&cli);
        assert_eq!(
            app.first_media_timeout,
            arcly::AppConfig::default().first_media_timeout
        );
        assert_eq!(app.media_timeout, arcly::AppConfig::default().media_timeout);
        assert_eq!(
            cli.max_connections_per_ip,
            ServeConfig::default().max_connections_per_ip
        );
        let srt = arcly::srt::service::SrtServiceConfig::default();
        assert_eq!(cli.srt_max_connections_per_ip, srt.max_connections_per_ip);
        assert_eq!(cli.srt_play_burst_per_ip, srt.play_burst_per_ip);
        assert_eq!(cli.srt_play_rate_per_ip, srt.play_rate_per_ip);
        let cli = Cli::try_parse_from([
            "arcly",
            "--first-media-timeout",
            "2.5",
            "--max-publishers-per-ip",
            "0",
        ])
        .unwrap();
        assert_eq!(
            app_config(&cli).first_media_timeout,
            Duration::from_millis(2500)
        );
        assert_eq!(cli.max_publishers_per_ip, 0);
    }

    #[test]
    fn cli_defaults_and_off() {
        let cli = Cli::try_parse_from(["arcly"]).unwrap();
        assert_eq!(cli.rtmp, Listen::On("0.0.0.0:1935".parse().unwrap()));
        let cli = Cli::try_parse_from(["arcly", "--rtmp", "off"]).unwrap();
        assert_eq!(cli.rtmp, Listen::Off);
        let cli = Cli::try_parse_from(["arcly"]).unwrap();
        assert_eq!(cli.http, Listen::On("0.0.0.0:8888".parse().unwrap()));
        let cli = Cli::try_parse_from(["arcly", "--http", ":18888"]).unwrap();
        assert_eq!(cli.http, Listen::On("0.0.0.0:18888".parse().unwrap()));
        let cli = Cli::try_parse_from(["arcly", "--http", "off"]).unwrap();
        assert_eq!(cli.http, Listen::Off);
        assert!(Cli::try_parse_from(["arcly", "--rtmp", "bogus"]).is_err());
        let cli = Cli::try_parse_from(["arcly"]).unwrap();
        assert_eq!(cli.rtsp, Listen::On("0.0.0.0:8554".parse().unwrap()));
        let cli = Cli::try_parse_from(["arcly", "--rtsp", "off"]).unwrap();
        assert_eq!(cli.rtsp, Listen::Off);
    }
}

#[cfg(test)]
mod replay_cli_tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn replay_subcommand_parses_and_serving_stays_the_default() {
        let cli = Cli::try_parse_from(["arcly"]).unwrap();
        assert!(cli.command.is_none());
        let cli =
            Cli::try_parse_from(["arcly", "replay", "x.pcap", "--port", "1935", "--json"]).unwrap();
        let Some(Command::Replay(args)) = cli.command else {
            panic!("no replay subcommand");
        };
        assert_eq!(args.capture, std::path::PathBuf::from("x.pcap"));
        assert_eq!(args.port, Some(1935));
        assert!(args.json);
        assert!(Cli::try_parse_from(["arcly", "replay"]).is_err());
        assert!(Cli::try_parse_from(["arcly", "replay", "x", "--protocol", "gopher"]).is_err());
    }
}
