//! SRT over a lossy link: ffmpeg publishes through an in-process UDP relay
//! that drops 5 % of the datagrams at random and reorders 2 % (both
//! directions, seeded), and ffprobe plays through a second such relay.
//! With a 1000 ms latency budget SRT's ARQ (NAK + retransmission, on the
//! server's receive side and on its send side) must repair everything: the
//! viewer decodes every frame from its join keyframe on, with no decoder
//! errors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::Ordering;

use arcly_tests::srt::{self, Caller, LossyRelay, Player, Publisher, SrtOptions, SrtTestServer};
use arcly_tests::Adapter;

/// Loopback RTT is ~0, but the viewer's libsrt starts with its default RTT
/// estimate (100 ms ± 50 ms), so until ACKs have converged it re-sends a
/// lost NAK only every (RTT + 4·RTTVar)/2 ≈ 150 ms. The viewer joins
/// with a burst (the cached GOP), and a packet of that burst whose NAK and
/// retransmissions are all lost on the 5 % link (each direction
/// impaired) needs several such rounds. At 500 ms, ~1 run in 10 under load
/// lost one packet of the join keyframe in the viewer's libsrt: ffprobe
/// reported "error while decoding MB 14 13". Every time, arcly's close log
/// showed `tx_dropped=0` (nothing expired in our send buffer) and the
/// publisher leg `rx_dropped=0` (arcly's receiver caps its NAK period at
/// latency/4). 1000 ms leaves room for ~6 NAK rounds: 14/14 runs under
/// the same load passed.
const LATENCY_MS: u32 = 1000;

fn lossy(adapter: Adapter) {
    let test = format!("srt_loss/{}", adapter.name());
    let options = SrtOptions::latency(LATENCY_MS);
    let tools = ["ffmpeg", "ffprobe"];
    let Some((_watchdog, server)) = SrtTestServer::for_test(&test, &tools, adapter, &options)
    else {
        return;
    };
    let up = LossyRelay::start(server.addr, 0.05, 0.02, 0x00C0_FFEE);
    let down = LossyRelay::start(server.addr, 0.05, 0.02, 0x0BAD_CAFE);
    let publish = Caller::publish("cam", LATENCY_MS).ffmpeg_url(up.addr);
    let read = Caller::read("cam", LATENCY_MS).ffmpeg_url(down.addr);
    let report = srt::run(
        &test,
        "cam",
        &Publisher::Ffmpeg(publish),
        &Player::Ffprobe(read),
        Some(&server.engine),
    );
    for (name, r) in [("publisher", &up), ("viewer", &down)] {
        let (f, d, o) = (
            r.stats.forwarded.load(Ordering::Relaxed),
            r.stats.dropped.load(Ordering::Relaxed),
            r.stats.reordered.load(Ordering::Relaxed),
        );
        eprintln!("{test}: {name} relay forwarded {f}, dropped {d}, reordered {o}");
        assert!(
            d * 100 >= (f + d) * 3 && o > 0,
            "{test}: the {name} relay did not impair the link (forwarded {f}, dropped {d}, reordered {o})"
        );
    }
    report.assert_viewer_saw_everything();
}

#[test]
fn loss_on_tokio() {
    lossy(Adapter::Tokio);
}

#[test]
fn loss_on_blocking() {
    lossy(Adapter::Blocking);
}
