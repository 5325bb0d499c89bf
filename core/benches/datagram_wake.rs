//! Cost of a media wake-up in a datagram service: SRT fan-out to 100
//! viewers on 10 streams (10 viewers each), one frame published on one
//! stream at a time, each followed by the UDP driver's media step
//! ([`DatagramDriver::media_and_timeout`]) and the drain of the datagrams it
//! queued. What is measured is the driver + service work per wake: finding
//! which stream moved and pulling for its viewers (a wake for one stream
//! should cost the viewers of that stream, not those of every stream).
//!
//! The viewers are SRT [`Endpoint`]s connected in memory (handshake only;
//! what they would do with the media is not part of the measurement). The
//! clock stands still during the measured part, so no timer fires.
//!
//! `cargo bench -p arcly --features srt --bench datagram_wake` prints the
//! wall time per wake (noisy on a shared machine); for repeatable
//! instruction counts collect only `wakes` under callgrind (`--oneshot`,
//! see `docs/benchmarks.md`, "Media wake-ups").
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::net::SocketAddr;

use arcly::codec::h264::AvcConfig;
use arcly::datagram::{DatagramDriver, DatagramService, Received, UdpConfig};
use arcly::engine::Publisher;
use arcly::srt::endpoint::{Endpoint, EndpointConfig};
use arcly::srt::service::{SrtService, SrtServiceConfig, SrtServiceFactory};
use arcly::{Codec, Engine, Frame, FrameFlags, Instant, StreamKey};
use bytes::Bytes;

const STREAMS: usize = 10;
const VIEWERS_PER_STREAM: usize = 10;
/// Frames published per stream in the measured part.
const FRAMES: usize = 100;

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
    0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

fn frame(flags: FrameFlags, dts: i64, payload: Bytes) -> Frame {
    Frame {
        codec: Codec::H264,
        flags,
        pts: dts,
        dts,
        timebase: 90_000,
        payload,
    }
}

/// One small H.264 access unit (one TS payload per viewer).
fn video(i: usize, key: bool) -> Frame {
    let len = 600;
    let mut p = Vec::with_capacity(len + 5);
    p.extend_from_slice(&((len + 1) as u32).to_be_bytes());
    p.push(if key { 0x65 } else { 0x41 });
    p.extend((0..len).map(|k| 1 + ((k + i * 7) % 250) as u8));
    let flags = if key {
        FrameFlags::KEYFRAME
    } else {
        FrameFlags::NONE
    };
    frame(flags, 90_000 + i as i64 * 3600, Bytes::from(p))
}

struct Setup {
    svc: SrtService,
    publishers: Vec<Publisher>,
    now: Instant,
    _viewers: Vec<Endpoint>,
}

fn server() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 8890))
}

fn setup() -> Setup {
    let engine = Engine::with_defaults();
    let now = Instant::from_millis(3_600_000);
    let mut publishers = Vec::new();
    for s in 0..STREAMS {
        let mut p = engine
            .publish(StreamKey::parse(&format!("live/s{s}")).unwrap())
            .unwrap();
        let c = AvcConfig::from_parameter_sets(
            vec![Bytes::from_static(SPS)],
            vec![Bytes::from_static(PPS)],
        )
        .unwrap();
        p.send(frame(FrameFlags::CONFIG, 0, c.to_bytes()));
        p.send(video(0, true));
        publishers.push(p);
    }
    let factory = SrtServiceFactory::allow_all(engine, SrtServiceConfig::default());
    let mut svc = factory.service(server(), now, 7);
    let mut viewers = Vec::new();
    let mut addrs = Vec::new();
    for v in 0..STREAMS * VIEWERS_PER_STREAM {
        let mut ep = Endpoint::new(EndpointConfig::default().with_rng_seed(v as u64 + 1));
        let sid = format!("read:live/s{}", v % STREAMS);
        ep.connect(now, server(), Some(&sid), None).unwrap();
        viewers.push(ep);
        addrs.push(SocketAddr::from((
            [10, 0, 1, (v / 200) as u8],
            20_000 + v as u16,
        )));
    }
    // Handshakes: a few exchanges until every viewer is connected.
    for _ in 0..6 {
        for (ep, addr) in viewers.iter_mut().zip(&addrs) {
            while let Some(t) = ep.poll_transmit() {
                svc.handle_datagram(now, Received::new(*addr, t.to_bytes()));
            }
        }
        svc.handle_media(now, &[]);
        while let Some(t) = svc.poll_transmit() {
            if let Some(i) = addrs.iter().position(|a| *a == t.destination) {
                viewers[i].handle_datagram(now, server(), t.to_bytes());
            }
        }
        for ep in &mut viewers {
            while ep.poll_event().is_some() {}
        }
    }
    for ep in &viewers {
        assert_eq!(ep.connection_count(), 1, "every viewer connected");
    }
    assert_eq!(svc.playing_count(), STREAMS * VIEWERS_PER_STREAM);
    Setup {
        svc,
        publishers,
        now,
        _viewers: viewers,
    }
}

/// The measured part: `FRAMES` rounds of one frame on each stream in turn,
/// each followed by the driver's media step and the drain of the transmits.
/// Returns the datagrams sent.
#[inline(never)]
fn wakes(
    driver: &mut DatagramDriver<'_>,
    publishers: &mut [Publisher],
    frames: &[Frame],
    now: Instant,
) -> usize {
    let mut sent = 0;
    for f in frames {
        for p in publishers.iter_mut() {
            p.send(f.clone());
            driver.media_and_timeout(now);
            while let Some(t) = driver.poll_transmit() {
                sent += black_box(t).contents.len().min(1);
            }
        }
    }
    sent
}

fn main() {
    let oneshot = std::env::args().any(|a| a == "--oneshot");
    let mut s = setup();
    let frames: Vec<Frame> = (1..=FRAMES).map(|i| video(i, false)).collect();
    let mut driver = DatagramDriver::new(&mut s.svc, &UdpConfig::default());
    // Warm up: the first round delivers the GOP to everyone.
    driver.media_and_timeout(s.now);
    while driver.poll_transmit().is_some() {}
    let wall = std::time::Instant::now();
    let sent = wakes(&mut driver, &mut s.publishers, &frames, s.now);
    let elapsed = wall.elapsed();
    let wakes = FRAMES * STREAMS;
    assert_eq!(
        sent,
        wakes * VIEWERS_PER_STREAM,
        "each wake sends one datagram per viewer of its stream"
    );
    println!(
        "{STREAMS} streams x {VIEWERS_PER_STREAM} viewers: {wakes} wakes, {sent} datagrams, {:.2} us per wake{}",
        elapsed.as_secs_f64() * 1e6 / wakes as f64,
        if oneshot { " (oneshot)" } else { "" }
    );
}
