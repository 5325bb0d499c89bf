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

use std::sync::atomic::Ordering;
use std::time::Duration;

use arcly_tests::srt::{self, Caller, Flood, Player, Publisher, SrtOptions, SrtTestServer};
use arcly_tests::{require_tools, Adapter, Watchdog};

/// Callers ask for 250 ms: the flood competes for the CPU with two encoders
/// and decoders on a shared CI machine; the point here is that hostile
/// datagrams change no state, not the capacity of a starved machine.
const LATENCY_MS: u32 = 250;

fn flood(adapter: Adapter) {
    let test = format!("srt_hostile/{}", adapter.name());
    if !require_tools(&test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let _watchdog = Watchdog::new(&test, Duration::from_secs(60));
    arcly_tests::init_logging();
    let server = SrtTestServer::start_with(
        adapter,
        &SrtOptions {
            latency_ms: LATENCY_MS as u16,
            ..SrtOptions::default()
        },
    );
    let flood = Flood::start(server.addr, 20_000, 0xF100D);
    let publish = Caller::publish("cam", LATENCY_MS).ffmpeg_url(server.addr);
    let read = Caller::read("cam", LATENCY_MS).ffmpeg_url(server.addr);
    let report = srt::run(
        &test,
        "cam",
        &Publisher::Ffmpeg(publish),
        &Player::Ffprobe(read),
        Some(&server.engine),
    );
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
