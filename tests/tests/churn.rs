//! Churn against the built `arcly` binary (docs/security.md, Churn):
//! thousands of connect → publish → play → close cycles over RTMP, each
//! also fetching the stream's HLS init segment, with the server's open file
//! descriptors and resident memory (from `/proc/PID`) back to their
//! baseline afterwards. MediaMTX users reported a leak exactly there.
//!
//! `CHURN_CYCLES` (default 2 000) sets the number of cycles;
//! `bench/churn.sh` runs 40 000 against the release binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arcly::rtmp::{ClientEvent, ClientMode};
use arcly_tests::binary::{arcly_bin, spawn_rtmp_http};
use arcly_tests::client::Client;
use arcly_tests::http_client;
use arcly_tests::synth::{self, SynthSpec};
use arcly_tests::Watchdog;

/// Concurrent cycles.
const WORKERS: u32 = 4;

/// Open file descriptors of `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident set size of `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// One cycle on `live/{name}`: publish a config and a keyframe, play until
/// the keyframe arrives, fetch the HLS init segment, close both.
async fn cycle(rtmp: SocketAddr, http: SocketAddr, name: &str) -> Result<(), String> {
    let url = format!("rtmp://{rtmp}/live/{name}");
    let io = |e: std::io::Error| e.to_string();
    let mut publisher = Client::connect(rtmp, &url, ClientMode::Publish)
        .await
        .map_err(io)?;
    publisher.wait_started(Duration::from_secs(5)).await?;
    let spec = SynthSpec::default();
    publisher.send(&synth::video_config()).await.map_err(io)?;
    publisher.send(&spec.video(0)).await.map_err(io)?;
    let mut player = Client::connect(rtmp, &url, ClientMode::Play)
        .await
        .map_err(io)?;
    let mut got = false;
    while let Some(ev) = player
        .next_event(Duration::from_secs(5))
        .await
        .map_err(io)?
    {
        match ev {
            ClientEvent::Frame(f) if synth::video_seq(&f).is_some() => {
                got = true;
                break;
            }
            ClientEvent::StreamEof | ClientEvent::Closed(_) => break,
            _ => {}
        }
    }
    if !got {
        return Err(format!("{name}: the player got no picture"));
    }
    // HLS too: a request for the init segment creates the stream's muxer
    // (it idles out 30 s later) and is answered at once (200, or 404
    // before the muxer has one).
    let target = format!("/live/{name}/init.mp4");
    let resp = tokio::task::spawn_blocking(move || {
        http_client::request(http, "x", "GET", &target, &[], None, Duration::from_secs(5))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("{name}: HLS: {e}"))?;
    if resp.status != 200 && resp.status != 404 {
        return Err(format!("{name}: HLS init.mp4: {}", resp.status));
    }
    player.shutdown().await;
    publisher.shutdown().await;
    Ok(())
}

#[test]
fn churn_leaves_no_fd_or_memory_behind() {
    let test = "churn";
    let Some(bin) = arcly_bin(test) else {
        return;
    };
    let cycles: u32 = std::env::var("CHURN_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let _watchdog = Watchdog::new(test, Duration::from_secs(60 + u64::from(cycles) / 20));
    let (mut server, rtmp, http) = spawn_rtmp_http(&bin);
    let pid = server.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = |from: u32, count: u32| {
        let done = Arc::new(AtomicU32::new(0));
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let done = done.clone();
                rt.spawn(async move {
                    let mut i = from + w;
                    while i < from + count {
                        cycle(rtmp, http, &format!("churn{}", i % 64)).await?;
                        done.fetch_add(1, Ordering::Relaxed);
                        i += WORKERS;
                    }
                    Ok::<_, String>(())
                })
            })
            .collect();
        for w in workers {
            rt.block_on(w)
                .unwrap()
                .unwrap_or_else(|e| panic!("{test}: {e}\n{}", server_tail(pid)));
        }
        done.load(Ordering::Relaxed)
    };
    // Warm-up: thread pools, the allocator's arenas, the 64 stream names.
    let started = Instant::now();
    run(0, 200);
    std::thread::sleep(Duration::from_secs(1));
    let (fds0, rss0) = (open_fds(pid), rss_kib(pid));
    let done = run(200, cycles);
    let took = started.elapsed();
    // Sessions end asynchronously: let the last closes land.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut fds1, mut rss1) = (open_fds(pid), rss_kib(pid));
    while fds1 > fds0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        (fds1, rss1) = (open_fds(pid), rss_kib(pid));
    }
    eprintln!(
        "{test}: {done} cycles in {took:.1?} ({:.0}/s); fds {fds0} -> {fds1}; RSS {} -> {} KiB",
        f64::from(done) / took.as_secs_f64(),
        rss0,
        rss1
    );
    assert_eq!(done, cycles);
    assert!(
        fds1 <= fds0,
        "{test}: {} file descriptors more than before the churn",
        fds1 - fds0
    );
    // Back to baseline: allow allocator noise (a few MiB), not a per-cycle
    // leak (2 000 cycles leaking even 1 KiB each would be 2 MiB; 40 000, 40).
    let allowed = rss0 + rss0 / 4 + 8 * 1024;
    assert!(
        rss1 <= allowed,
        "{test}: RSS {rss0} KiB before, {rss1} KiB after {done} cycles (allowed {allowed})"
    );
    server.stop();
}

/// The server's last log lines (for a failure message).
fn server_tail(pid: u32) -> String {
    format!("server pid {pid}, {} fds open", open_fds(pid))
}
