//! Hostile datagrams at a live SRT port: while ffmpeg publishes and ffprobe
//! plays over SRT, a flooder sends ~20 000 datagrams per second of garbage,
//! truncated headers, data for bogus socket ids, conclusions without a
//! cookie and induction requests from 8 sockets. The session must lose
//! nothing (every frame decoded, no errors), the inductions are answered
//! statelessly, and no bogus connection appears in the engine.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arcly::StreamKey;
use arcly_tests::srt::{self, Caller, Flood, Player, Publisher, SrtOptions, SrtTestServer};
use arcly_tests::Adapter;

/// Callers ask for 250 ms: the flood competes for the CPU with two encoders
/// and decoders on a shared CI machine; the point here is that hostile
/// datagrams change no state, not the capacity of a starved machine.
const LATENCY_MS: u32 = 250;

/// The two floods run one after the other: each is meant to be hostile to
/// one server, not to starve the other test's clients of the two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn flood(adapter: Adapter) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let test = format!("srt_hostile/{}", adapter.name());
    let options = SrtOptions::latency(LATENCY_MS);
    let tools = ["ffmpeg", "ffprobe"];
    let Some((_watchdog, server)) = SrtTestServer::for_test(&test, &tools, adapter, &options)
    else {
        return;
    };
    let flood = Flood::start(server.addr, 20_000, 0xF100D);
    // Watch the engine while the flood runs: no stream but live/cam, never
    // more than the one real viewer.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (engine, stop) = (server.engine.clone(), stop.clone());
        std::thread::spawn(move || {
            let key = StreamKey::new("live", "cam").unwrap();
            let (mut others, mut max_subs) = (Vec::new(), 0);
            while !stop.load(Ordering::Relaxed) {
                for k in engine.streams() {
                    if k != key && !others.contains(&k) {
                        others.push(k);
                    }
                }
                if let Some(s) = engine.stream_stats(&key) {
                    max_subs = max_subs.max(s.subscribers.load(Ordering::Relaxed));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (others, max_subs)
        })
    };
    let publish = Caller::publish("cam", LATENCY_MS).ffmpeg_url(server.addr);
    let read = Caller::read("cam", LATENCY_MS).ffmpeg_url(server.addr);
    let report = srt::run(
        &test,
        "cam",
        &Publisher::Ffmpeg(publish),
        &Player::Ffprobe(read),
        Some(&server.engine),
    );
    stop.store(true, Ordering::Relaxed);
    let (others, max_subs) = watcher.join().unwrap();
    assert!(
        others.is_empty(),
        "{test}: the flood created streams: {others:?}"
    );
    assert_eq!(max_subs, 1, "{test}: the flood added or lost viewers");
    let sent = flood.stats.sent.load(Ordering::Relaxed);
    let answered = flood.stats.answered.load(Ordering::Relaxed);
    drop(flood);
    eprintln!("{test}: flood sent {sent} datagrams, {answered} answered");
    assert!(
        sent > 100_000,
        "{test}: the flood sent only {sent} datagrams"
    );
    assert!(
        answered > 0,
        "{test}: no induction was answered during the flood"
    );
    report.assert_viewer_saw_everything();
}

#[test]
fn flood_on_tokio() {
    flood(Adapter::Tokio);
}

#[test]
fn flood_on_blocking() {
    flood(Adapter::Blocking);
}
