//! 200 concurrent players (the project's own RTMP client over tokio TCP)
//! each receive every frame from their start keyframe to the end, and a
//! deliberately stalled player (tiny receive buffer, never reads) does not
//! delay them: the others' lag behind the publisher is measured and bounded,
//! while the stalled one falls behind the ring and skips to a keyframe.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arcly::rtmp::{ClientEvent, ClientMode, ServerConfig};
use arcly::{AppConfig, Engine, StreamKey};
use arcly_tests::client::{publish_synthetic_logged, Client, ConnectOptions};
use arcly_tests::synth::{self, SynthSpec};
use arcly_tests::{Adapter, TestServer, Watchdog};

/// One fan-out scenario.
#[derive(Debug, Clone, Copy)]
struct Params {
    players: usize,
    frames: u32,
    video_bytes: usize,
    ring_frames: usize,
    /// The stalled player must have fallen off the ring and skipped.
    expect_skip: bool,
}

/// What one player saw.
#[derive(Debug, Default)]
struct Seen {
    video: Vec<(u32, Instant)>,
    audio: Vec<u32>,
    ended: bool,
    error: Option<String>,
}

async fn player(addr: std::net::SocketAddr, url: String, limit: Duration) -> Seen {
    let mut seen = Seen::default();
    let mut c = match Client::connect(addr, &url, ClientMode::Play).await {
        Ok(c) => c,
        Err(e) => {
            seen.error = Some(format!("connect: {e}"));
            return seen;
        }
    };
    let deadline = Instant::now() + limit;
    let mut last_dts: (Option<i64>, Option<i64>) = (None, None);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_event(left).await {
            Ok(Some(ClientEvent::Frame(f))) => {
                if let Some(s) = synth::video_seq(&f) {
                    seen.video.push((s, Instant::now()));
                } else if let Some(s) = synth::audio_seq(&f) {
                    seen.audio.push(s);
                }
                if !f.is_config() {
                    let last = match f.kind() {
                        arcly::MediaKind::Video => &mut last_dts.0,
                        arcly::MediaKind::Audio => &mut last_dts.1,
                    };
                    if last.is_some_and(|d| f.dts <= d) && seen.error.is_none() {
                        seen.error = Some(format!(
                            "{:?} dts {} after {:?}: not increasing",
                            f.kind(),
                            f.dts,
                            last
                        ));
                    }
                    *last = Some(f.dts);
                }
            }
            Ok(Some(ClientEvent::StreamEof)) => {
                seen.ended = true;
                return seen;
            }
            Ok(Some(ClientEvent::Status { code, .. }))
                if code.contains("UnpublishNotify") || code.ends_with("Play.Stop") =>
            {
                seen.ended = true;
                return seen;
            }
            Ok(Some(ClientEvent::Closed(r))) => {
                seen.ended = true;
                if !matches!(r, arcly::session::CloseReason::PeerClosed) {
                    seen.error = Some(format!("closed: {r}"));
                }
                return seen;
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                seen.error = Some(format!("no end of stream within {limit:?}"));
                return seen;
            }
            Err(e) => {
                seen.error = Some(format!("I/O: {e}"));
                return seen;
            }
        }
    }
}

/// Checks that `seqs` runs contiguously from a keyframe to `last`.
fn contiguous_from_keyframe(seqs: &[u32], gop: u32, last: u32) -> Result<(), String> {
    let first = *seqs.first().ok_or("no frames")?;
    if first % gop != 0 {
        return Err(format!("starts at {first}, not a keyframe"));
    }
    for w in seqs.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(format!("gap: {} then {}", w[0], w[1]));
        }
    }
    let end = *seqs.last().unwrap_or(&0);
    if end != last {
        return Err(format!("ends at {end}, the publisher sent up to {last}"));
    }
    Ok(())
}

fn failed_players(failures: &[String]) -> usize {
    let mut ids: Vec<&str> = failures
        .iter()
        .filter_map(|f| f.split([' ', ':']).nth(1))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Fan-out tests measure lag, so they run one at a time (the test harness
/// runs tests of one binary in parallel).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn fanout_on(adapter: Adapter, params: Params, label: &str) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let players_n = params.players;
    let test = format!("fanout/{label}/{}", adapter.name());
    let _watchdog = Watchdog::new(&test, Duration::from_secs(60));
    arcly_tests::init_logging();
    // A short ring (about 5 s of this stream) so the stalled player falls
    // off it within the test; the 200 readers must never come near it.
    let engine = Engine::new();
    engine.add_app(
        "live",
        AppConfig::default().with_ring_frames(params.ring_frames),
    );
    let server = TestServer::start_with(adapter, engine.clone(), ServerConfig::default());
    let spec = SynthSpec {
        fps: 25,
        gop: 50,
        frames: params.frames,
        video_bytes: params.video_bytes,
        audio: true,
    };
    let last = spec.frames - 1;
    let url = server.url("fan");
    let addr = server.addr;

    // Publisher on its own runtime thread, paced from t0; it logs when it
    // actually wrote each picture.
    let t0 = Instant::now() + Duration::from_millis(300);
    let sent: Arc<Mutex<Vec<Option<Instant>>>> =
        Arc::new(Mutex::new(vec![None; spec.frames as usize]));
    let pub_sent = sent.clone();
    let pub_url = url.clone();
    let publisher = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(publish_synthetic_logged(addr, &pub_url, spec, t0, pub_sent))
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Wait for the stream to exist, then start the players within its first GOP.
    let key = StreamKey::new("live", "fan").unwrap();
    let wait_until = Instant::now() + Duration::from_secs(5);
    while engine.stream_stats(&key).is_none() {
        assert!(
            Instant::now() < wait_until,
            "{test}: publisher never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = engine.stream_stats(&key).unwrap();

    let (stalled_tx, stalled_rx) = tokio::sync::oneshot::channel::<()>();
    let stall_url = url.clone();
    let stalled = rt.spawn(async move {
        let mut c = Client::connect_with(
            addr,
            &stall_url,
            ClientMode::Play,
            ConnectOptions {
                recv_buffer: Some(4096),
            },
        )
        .await
        .unwrap();
        c.wait_started(Duration::from_secs(10)).await.unwrap();
        // Never read again until told to; then drain what is left.
        let _ = stalled_rx.await;
        let mut video = Vec::new();
        while let Ok(Some(ev)) = c.next_event(Duration::from_secs(3)).await {
            match ev {
                ClientEvent::Frame(f) => {
                    if let Some(s) = synth::video_seq(&f) {
                        video.push(s);
                    }
                }
                ClientEvent::Closed(_) | ClientEvent::StreamEof => break,
                _ => {}
            }
        }
        video
    });

    let started = Instant::now();
    let mut players = Vec::new();
    for _ in 0..players_n {
        let url = url.clone();
        players.push(rt.spawn(player(addr, url, Duration::from_secs(40))));
    }
    let results: Vec<Seen> = rt.block_on(async {
        let mut v = Vec::new();
        for p in players {
            v.push(p.await.unwrap());
        }
        v
    });
    let publish_result = publisher.join().unwrap();
    eprintln!(
        "{test}: players started {:?} after the publisher's first picture",
        started.saturating_duration_since(t0)
    );
    publish_result.unwrap_or_else(|e| panic!("{test}: publisher failed: {e}"));
    let _ = stalled_tx.send(());
    let stalled_video = rt.block_on(stalled).unwrap();

    // Every player: every frame from its start keyframe to the end.
    let sent = sent.lock().unwrap().clone();
    let mut lags = Vec::new();
    let mut failures = Vec::new();
    for (i, s) in results.iter().enumerate() {
        if let Some(e) = &s.error {
            failures.push(format!("player {i}: {e}"));
            continue;
        }
        let seqs: Vec<u32> = s.video.iter().map(|(q, _)| *q).collect();
        if let Err(e) = contiguous_from_keyframe(&seqs, spec.gop, last) {
            failures.push(format!("player {i} video: {e}"));
        }
        if let Some(&a0) = s.audio.first() {
            let expect: Vec<u32> = (a0..=last).collect();
            if s.audio != expect {
                failures.push(format!(
                    "player {i} audio: {} frames from {a0}, expected {} up to {last}",
                    s.audio.len(),
                    expect.len()
                ));
            }
        } else {
            failures.push(format!("player {i}: no audio"));
        }
        // Lag: arrival minus the moment the publisher wrote the picture,
        // for live frames (the GOP-cache burst at start is not lag).
        for (q, at) in &s.video {
            if let Some(Some(w)) = sent.get(*q as usize) {
                if *q >= spec.gop {
                    lags.push(at.saturating_duration_since(*w));
                }
            }
        }
    }
    lags.sort();
    let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
    let stalled_gap = stalled_video
        .windows(2)
        .find(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]));
    eprintln!(
        "{test}: {} players OK; lag behind the publisher over {} live frames: p50 {:?}, p99 {:?}, max {:?}",
        results.len() - failed_players(&failures),
        lags.len(),
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or_default()
    );
    eprintln!(
        "{test}: stalled player got {} pictures after resuming, first gap {:?}; engine counted {dropped} dropped frames",
        stalled_video.len(),
        stalled_gap
    );
    assert!(
        failures.is_empty(),
        "{test}: {} of {players_n} players did not get every frame:\n{}",
        failed_players(&failures),
        failures[..failures.len().min(20)].join("\n")
    );
    let p99 = percentile(&lags, 0.99);
    let max = lags.last().copied().unwrap_or_default();
    assert!(
        // A server blocked by the stalled socket would add seconds here.
        p99 < Duration::from_millis(500) && max < Duration::from_millis(2000),
        "{test}: players lag behind the publisher: p99 {p99:?}, max {max:?}"
    );
    // The stalled player: when it skipped, it resumed on a keyframe.
    if params.expect_skip {
        assert!(
            dropped > 0 && stalled_gap.is_some(),
            "{test}: the stalled player never fell behind the ring (dropped {dropped}, gap {stalled_gap:?}): \
             the test did not exercise a stall"
        );
    }
    if let Some((_, after)) = stalled_gap {
        assert_eq!(
            after % spec.gop,
            0,
            "{test}: the stalled player resumed after a gap on picture {after}, not on a keyframe"
        );
    }
}

/// 200 players of a ~1 Mbit/s stream for 6 s, plus one that stalls.
const TWO_HUNDRED: Params = Params {
    players: 200,
    frames: 150,
    video_bytes: 4_000,
    ring_frames: 256,
    expect_skip: false,
};

/// 20 players of a ~12 Mbit/s stream and a short ring (2.5 s): the stalled
/// player's socket buffers fill within seconds, it falls off the ring and
/// must skip to a keyframe, while the others keep up.
const HEAVY_STALL: Params = Params {
    players: 20,
    frames: 250,
    video_bytes: 60_000,
    ring_frames: 128,
    expect_skip: true,
};

#[test]
fn two_hundred_players_and_a_stalled_one_tokio() {
    fanout_on(Adapter::Tokio, TWO_HUNDRED, "200");
}

#[test]
fn stalled_player_skips_and_others_keep_up_tokio() {
    fanout_on(Adapter::Tokio, HEAVY_STALL, "stall");
}

#[test]
fn two_hundred_players_and_a_stalled_one_async_io_smol() {
    fanout_on(Adapter::AsyncIoSmol, TWO_HUNDRED, "200");
}

#[test]
fn stalled_player_skips_and_others_keep_up_async_io_smol() {
    fanout_on(Adapter::AsyncIoSmol, HEAVY_STALL, "stall");
}

#[test]
fn two_hundred_players_and_a_stalled_one_async_io_async_std() {
    fanout_on(Adapter::AsyncIoAsyncStd, TWO_HUNDRED, "200");
}

#[test]
fn stalled_player_skips_and_others_keep_up_async_io_async_std() {
    fanout_on(Adapter::AsyncIoAsyncStd, HEAVY_STALL, "stall");
}

#[test]
fn two_hundred_players_and_a_stalled_one_blocking() {
    fanout_on(Adapter::Blocking, TWO_HUNDRED, "200");
}

#[test]
fn stalled_player_skips_and_others_keep_up_blocking() {
    fanout_on(Adapter::Blocking, HEAVY_STALL, "stall");
}
