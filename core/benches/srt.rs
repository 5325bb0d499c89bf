//! SRT packet path through the [`Endpoint`] (draft-sharabayko-srt-01 §4,
//! §6): packets per second for 1316-byte live-mode data packets (seven TS
//! packets), clear and AES-128-CTR.
//!
//! - `recv`: `Endpoint::handle_datagram` + `poll_event` (decode, route,
//!   decrypt, receive buffer, TSBPD delivery at latency 0).
//! - `send`: `Endpoint::send` + `poll_transmit` (send buffer, packetize,
//!   encrypt).
//!
//! Two endpoints are connected in memory by our caller and listener; the
//! other side of each measured path (ACKs, feeding the peer) runs outside
//! the timed section, in batches of [`BATCH`] packets, with simulated time
//! advancing 100 µs per packet (≈ 105 Mbit/s).
//!
//! `cargo bench -p arcly --bench srt`. Results: `docs/benchmarks.md`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use arcly::srt::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use arcly::srt::packet::SocketId;
use arcly::Instant;
use bytes::Bytes;
use criterion::{criterion_group, Criterion, Throughput};

const BATCH: usize = 256;
const PASS: &str = "benchmark passphrase";
const STEP: Duration = Duration::from_micros(100);

struct Pair {
    now: Instant,
    tx: Endpoint,
    rx: Endpoint,
    tx_id: SocketId,
    tx_addr: SocketAddr,
    rx_addr: SocketAddr,
    payload: Bytes,
}

impl Pair {
    fn new(encrypted: bool) -> Pair {
        let cfg = |seed: u8| {
            EndpointConfig::default()
                .with_cookie_secret([seed; 32])
                .with_rng_seed(u64::from(seed))
                .with_latency_ms(0)
                .with_passphrase(encrypted.then(|| PASS.to_owned()))
        };
        let mut tx = Endpoint::new(cfg(1).with_passphrase(None));
        let rx = Endpoint::new(cfg(2));
        let tx_addr: SocketAddr = ([10, 0, 0, 1], 1000).into();
        let rx_addr: SocketAddr = ([10, 0, 0, 2], 2000).into();
        let now = Instant::from_millis(10_000);
        let tx_id = tx
            .connect(
                now,
                rx_addr,
                Some("publish:live/bench"),
                encrypted.then_some(PASS),
            )
            .unwrap();
        let mut pair = Pair {
            now,
            tx,
            rx,
            tx_id,
            tx_addr,
            rx_addr,
            payload: Bytes::from(vec![0x47u8; 1316]),
        };
        for _ in 0..4 {
            pair.exchange();
        }
        assert!(pair.tx.connection_count() == 1 && pair.rx.connection_count() == 1);
        assert_eq!(pair.tx.is_encrypted(tx_id), encrypted);
        pair
    }

    /// Moves every pending datagram both ways and drains events.
    fn exchange(&mut self) {
        while let Some(t) = self.tx.poll_transmit() {
            self.rx
                .handle_datagram(self.now, self.tx_addr, t.to_bytes());
        }
        while let Some(ev) = self.rx.poll_event() {
            if let EndpointEvent::Request(r) = ev {
                self.rx.accept(self.now, r.token).unwrap();
            }
        }
        while let Some(t) = self.rx.poll_transmit() {
            self.tx
                .handle_datagram(self.now, self.rx_addr, t.to_bytes());
        }
        while self.tx.poll_event().is_some() {}
    }

    fn tick(&mut self, packets: usize) {
        self.now += STEP * packets as u32;
        for ep in [&mut self.tx, &mut self.rx] {
            if ep.poll_timeout().is_some_and(|t| t <= self.now) {
                ep.handle_timeout(self.now);
            }
        }
    }

    /// The sender's next `n` datagrams (untimed part of the recv bench).
    fn next_datagrams(&mut self, n: usize) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            self.tx
                .send(self.now, self.tx_id, self.payload.clone())
                .unwrap();
            while let Some(t) = self.tx.poll_transmit() {
                out.push(t.to_bytes());
            }
        }
        out
    }

    /// Timed: the receive path for `dgrams`.
    fn receive(&mut self, dgrams: Vec<Bytes>) -> usize {
        let mut delivered = 0;
        for d in dgrams {
            self.rx.handle_datagram(self.now, self.tx_addr, d);
            while let Some(ev) = self.rx.poll_event() {
                if let EndpointEvent::Data { payload, .. } = ev {
                    delivered += payload.len();
                }
            }
        }
        delivered
    }

    /// Untimed: ACKs back to the sender, timers.
    fn settle(&mut self, packets: usize) {
        self.tick(packets);
        while let Some(t) = self.rx.poll_transmit() {
            self.tx
                .handle_datagram(self.now, self.rx_addr, t.to_bytes());
        }
        while self.rx.poll_event().is_some() {}
        while self.tx.poll_event().is_some() {}
    }
}

fn recv(c: &mut Criterion) {
    let mut g = c.benchmark_group("srt_recv");
    g.throughput(Throughput::Elements(1));
    for (name, enc) in [("clear", false), ("aes128", true)] {
        g.bench_function(name, |b| {
            let mut pair = Pair::new(enc);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let n = left.min(BATCH);
                    left -= n;
                    let dgrams = pair.next_datagrams(n);
                    let t0 = std::time::Instant::now();
                    black_box(pair.receive(dgrams));
                    total += t0.elapsed();
                    pair.settle(n);
                }
                total
            });
        });
    }
    g.finish();
}

fn send(c: &mut Criterion) {
    let mut g = c.benchmark_group("srt_send");
    g.throughput(Throughput::Elements(1));
    for (name, enc) in [("clear", false), ("aes128", true)] {
        g.bench_function(name, |b| {
            let mut pair = Pair::new(enc);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters as usize;
                let mut out = Vec::with_capacity(BATCH);
                while left > 0 {
                    let n = left.min(BATCH);
                    left -= n;
                    let t0 = std::time::Instant::now();
                    for _ in 0..n {
                        pair.tx
                            .send(pair.now, pair.tx_id, pair.payload.clone())
                            .unwrap();
                        while let Some(t) = pair.tx.poll_transmit() {
                            out.push(t);
                        }
                    }
                    total += t0.elapsed();
                    // Untimed: the receiver consumes them and ACKs.
                    for t in out.drain(..) {
                        pair.rx
                            .handle_datagram(pair.now, pair.tx_addr, t.to_bytes());
                    }
                    pair.settle(n);
                }
                total
            });
        });
    }
    g.finish();
}

criterion_group!(benches, recv, send);
criterion::criterion_main!(benches);
