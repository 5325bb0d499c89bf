//! `auth-bench`: publish admissions per second through the `arcly` binary
//! when every publish asks an HTTP auth hook that answers after a fixed
//! delay (5 ms by default). Starts the hook (in this process) and arcly
//! (`--arcly PATH`, with a config naming the hook, its cache off and the
//! failure slow-down off), then `--workers` RTMP clients (arcly's own
//! client machine) loop: connect, publish `live/sN?token=tN`, wait for
//! `Publishing`, close. Reports admissions per second and the admission
//! latency (publish sent → Publishing). A benchmark tool, not a test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use arcly::rtmp::{ClientConfig, ClientConnection, ClientEvent, ClientMode};
use arcly::time::Clock;
use arcly_bench::stats::Summary;

/// Admission throughput of arcly with an HTTP auth hook.
#[derive(Debug, Parser)]
#[command(name = "auth-bench", version, about)]
struct Cli {
    /// The arcly binary.
    #[arg(long, default_value = "target/release/arcly")]
    arcly: std::path::PathBuf,
    /// Milliseconds the hook waits before answering 200.
    #[arg(long, default_value_t = 5)]
    hook_ms: u64,
    /// Concurrent publishing clients.
    #[arg(long, default_value_t = 64)]
    workers: usize,
    /// Seconds to measure.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

async fn hook(l: TcpListener, delay: Duration, asked: Arc<AtomicU64>) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            continue;
        };
        let asked = asked.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let Ok(n) = s.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                let text = String::from_utf8_lossy(&buf);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            asked.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        });
    }
}

/// One publish admission: connect, publish, wait for `Publishing`; the
/// time from connect to `Publishing`.
async fn admit_once(addr: std::net::SocketAddr, url: &str) -> Result<Duration, String> {
    let config = ClientConfig::from_url(url, ClientMode::Publish).map_err(|e| e.to_string())?;
    let clock = Clock::new(Instant::now());
    let t0 = Instant::now();
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut conn = ClientConnection::new(config, clock.instant(Instant::now()), 1);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(ev) = conn.poll_event() {
            match ev {
                ClientEvent::Publishing => {
                    let took = t0.elapsed();
                    conn.close(clock.instant(Instant::now()));
                    while let Some(b) = conn.poll_transmit() {
                        let _ = wr.write_all(&b).await;
                    }
                    return Ok(took);
                }
                ClientEvent::Closed(reason) => return Err(format!("closed: {reason}")),
                _ => {}
            }
        }
        while let Some(b) = conn.poll_transmit() {
            wr.write_all(&b).await.map_err(|e| e.to_string())?;
        }
        let wake = conn
            .poll_timeout()
            .map_or(Instant::now() + Duration::from_secs(1), |d| clock.to_std(d));
        tokio::select! {
            r = rd.read(&mut buf) => {
                let n = r.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("server closed".into());
                }
                conn.handle_input(clock.instant(Instant::now()), buf.get(..n).unwrap_or_default());
            }
            () = tokio::time::sleep_until(wake.into()) => {
                conn.handle_timeout(clock.instant(Instant::now()));
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let Ok(l) = TcpListener::bind("127.0.0.1:0").await else {
        eprintln!("auth-bench: cannot bind the hook");
        return std::process::ExitCode::FAILURE;
    };
    let hook_addr = l.local_addr().ok();
    let asked = Arc::new(AtomicU64::new(0));
    tokio::spawn(hook(l, Duration::from_millis(cli.hook_ms), asked.clone()));
    let port = free_port();
    let cfg = std::env::temp_dir().join(format!("auth-bench-{}.toml", std::process::id()));
    let text = format!(
        "rtmp = \"127.0.0.1:{port}\"\nhttp = \"off\"\nrtsp = \"off\"\nsrt = \"off\"\nwebrtc = \"off\"\n\
         auth_hook_url = \"http://{}/auth\"\nauth_hook_cache = 0\nauth_fail_limit = 0\nmax_publishers_per_ip = 0\n",
        hook_addr.map(|a| a.to_string()).unwrap_or_default()
    );
    if let Err(e) = std::fs::write(&cfg, text) {
        eprintln!("auth-bench: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let mut server = match std::process::Command::new(&cli.arcly)
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("auth-bench: cannot start {}: {e}", cli.arcly.display());
            return std::process::ExitCode::FAILURE;
        }
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lat = Arc::new(Mutex::new(Vec::<f64>::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(cli.seconds);
    let mut tasks = Vec::new();
    for w in 0..cli.workers {
        let lat = lat.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < end {
                i += 1;
                let url = format!("rtmp://{addr}/live/s{w}x{i}?token=t{w}x{i}");
                match admit_once(addr, &url).await {
                    Ok(d) => {
                        if let Ok(mut l) = lat.lock() {
                            l.push(d.as_secs_f64() * 1000.0);
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_file(&cfg);
    let lat = lat.lock().map(|l| l.clone()).unwrap_or_default();
    let n = lat.len();
    let s = Summary::of(lat.iter().copied());
    println!(
        "auth-bench: {n} publishes admitted in {} s = {:.0}/s with a {} ms hook ({} hook requests, {} errors, {} workers); connect->Publishing ms: median {:.1}, p99 {:.1}, max {:.1}",
        cli.seconds,
        n as f64 / cli.seconds as f64,
        cli.hook_ms,
        asked.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        cli.workers,
        s.median,
        s.p99,
        s.max,
    );
    std::process::ExitCode::SUCCESS
}
