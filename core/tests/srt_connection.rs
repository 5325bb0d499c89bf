//! Two live-mode connection machines back to back through a simulated
//! lossy, delayed link (both directions, control packets lost too),
//! deterministic from a seed (draft-sharabayko-srt-01 §4.4–§4.10).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::VecDeque;
use std::time::Duration;

use arcly::srt::connection::{Closed, Connection, ConnectionConfig, IDLE_TIMEOUT};
use arcly::srt::packet::{Control, Packet, SocketId};
use arcly::srt::SeqNo;
use arcly::Instant;
use bytes::Bytes;
use proptest::prelude::*;

const LATENCY: Duration = Duration::from_millis(120);

fn pair(start: Instant, isn_a: SeqNo, isn_b: SeqNo) -> (Connection, Connection) {
    let a = Connection::new(ConnectionConfig {
        peer_socket: SocketId(2),
        send_isn: isn_a,
        recv_isn: isn_b,
        latency: LATENCY,
        flow_window: 8192,
        start,
    });
    let b = Connection::new(ConnectionConfig {
        peer_socket: SocketId(1),
        send_isn: isn_b,
        recv_isn: isn_a,
        latency: LATENCY,
        flow_window: 8192,
        start,
    });
    (a, b)
}

struct Link {
    delay: Duration,
    loss_per_mille: u64,
    rng: u64,
    queue: VecDeque<(Instant, Packet)>,
    sent: u64,
}

impl Link {
    fn new(seed: u64, loss_per_mille: u64) -> Self {
        Link {
            delay: Duration::from_millis(10),
            loss_per_mille,
            rng: seed | 1,
            queue: VecDeque::new(),
            sent: 0,
        }
    }
    fn send(&mut self, now: Instant, p: Packet) {
        self.sent += 1;
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        if self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % 1000 >= self.loss_per_mille {
            // Through the codec, as on the wire.
            let p = Packet::decode(&p.to_bytes()).unwrap();
            self.queue.push_back((now + self.delay, p));
        }
    }
    fn recv(&mut self, now: Instant) -> Option<Packet> {
        if self.queue.front()?.0 <= now {
            self.queue.pop_front().map(|x| x.1)
        } else {
            None
        }
    }
}

struct Run {
    delivered: Vec<(Instant, u32)>,
    a: Connection,
    b: Connection,
    a_to_b: Vec<Packet>,
}

/// A sends one 188-byte payload per ms for `n` ms (numbered in the payload),
/// then idles; both links lose `loss` per mille; runs `total` ms.
fn run(seed: u64, isn: SeqNo, n: u64, loss: u64, total: u64) -> Run {
    let start = Instant::from_millis(50_000);
    let (mut a, mut b) = pair(start, isn, SeqNo::new(77));
    let mut ab = Link::new(seed, loss);
    let mut ba = Link::new(seed.rotate_left(17), loss);
    let mut delivered = Vec::new();
    let mut a_to_b = Vec::new();
    for ms in 0..total {
        let now = start + Duration::from_millis(ms);
        if ms < n {
            let mut payload = vec![0u8; 188];
            payload[..4].copy_from_slice(&(ms as u32).to_be_bytes());
            a.send(now, Bytes::from(payload)).unwrap();
        }
        a.handle_timeout(now);
        b.handle_timeout(now);
        while let Some(p) = a.poll_packet(now) {
            if a_to_b.len() < 4096 {
                a_to_b.push(p.clone());
            }
            ab.send(now, p);
        }
        while let Some(p) = b.poll_packet(now) {
            ba.send(now, p);
        }
        while let Some(p) = ab.recv(now) {
            b.handle_packet(now, p);
        }
        while let Some(p) = ba.recv(now) {
            a.handle_packet(now, p);
        }
        while let Some(d) = b.poll_delivered(now) {
            let k = u32::from_be_bytes(d.payload[..4].try_into().unwrap());
            delivered.push((now, k));
        }
    }
    Run {
        delivered,
        a,
        b,
        a_to_b,
    }
}

#[test]
fn lossless_exchange_acks_rtt_and_keepalive() {
    let r = run(1, SeqNo::MAX.sub(10), 300, 0, 2500);
    assert_eq!(r.delivered.len(), 300);
    for (i, (at, k)) in r.delivered.iter().enumerate() {
        assert_eq!(*k as usize, i);
        // Sent at start + k ms, delivered after one-way delay + latency
        // (within the 1 ms step of the simulation).
        let sent = Instant::from_millis(50_000 + u64::from(*k));
        let delay = at.saturating_duration_since(sent);
        assert!(
            delay >= LATENCY + Duration::from_millis(10)
                && delay <= LATENCY + Duration::from_millis(11),
            "{delay:?}"
        );
    }
    // The receiver measured the 20 ms round trip through ACK/ACKACK.
    let rtt = r.b.rtt().rtt_us();
    assert!((19_000..=23_000).contains(&rtt), "rtt {rtt}");
    // The sender learnt it from the ACKs.
    assert!(
        r.a.rtt().rtt_us() < 60_000,
        "sender rtt {}",
        r.a.rtt().rtt_us()
    );
    assert_eq!(r.a.send_stats().retransmitted, 0);
    // Idle after 300 ms: A sends keep-alives; nothing closes.
    assert!(r
        .a_to_b
        .iter()
        .any(|p| matches!(p, Packet::Control(c) if c.body == Control::KeepAlive)));
    assert!(r.a.closed().is_none() && r.b.closed().is_none());
    assert!(r.a.poll_timeout().is_some());
}

#[test]
fn shutdown_and_idle_timeout() {
    let start = Instant::from_millis(1);
    let (mut a, mut b) = pair(start, SeqNo::ZERO, SeqNo::ZERO);
    a.close(start);
    assert_eq!(a.closed(), Some(Closed::Locally));
    let p = a.poll_packet(start).unwrap();
    assert!(
        matches!(&p, Packet::Control(c) if c.body == Control::Shutdown && c.dest == SocketId(2))
    );
    assert!(a.poll_packet(start).is_none());
    assert!(a.send(start, Bytes::new()).is_ok(), "queued, never sent");
    assert!(a.poll_packet(start).is_none());
    b.handle_packet(start, p);
    assert_eq!(b.closed(), Some(Closed::ByPeer));
    // The tail of a stream is flushed at once after the peer's shutdown.
    let (mut a2, mut b2) = pair(start, SeqNo::new(5), SeqNo::new(5));
    for i in 0..3u8 {
        a2.send(start, Bytes::from(vec![i])).unwrap();
    }
    a2.close(start);
    while let Some(p) = a2.poll_packet(start) {
        b2.handle_packet(start, p);
    }
    assert!(
        b2.poll_delivered(start).is_none(),
        "SHUTDOWN went first: nothing sent after it"
    );
    let (mut a3, mut b3) = pair(start, SeqNo::new(5), SeqNo::new(5));
    for i in 0..3u8 {
        a3.send(start, Bytes::from(vec![i])).unwrap();
    }
    while let Some(p) = a3.poll_packet(start) {
        b3.handle_packet(start, p);
    }
    a3.close(start);
    b3.handle_packet(start, a3.poll_packet(start).unwrap());
    let tail: Vec<u8> = std::iter::from_fn(|| b3.poll_delivered(start))
        .map(|d| d.payload[0])
        .collect();
    assert_eq!(tail, vec![0, 1, 2], "delivered before their TSBPD time");
    let (_, mut c) = pair(start, SeqNo::ZERO, SeqNo::ZERO);
    c.handle_timeout(start + (IDLE_TIMEOUT - Duration::from_millis(1)));
    assert!(c.closed().is_none());
    c.handle_timeout(start + IDLE_TIMEOUT);
    assert_eq!(c.closed(), Some(Closed::IdleTimeout));
    assert_eq!(c.poll_timeout(), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Loss the latency budget can repair (≤ 3 % each way, data and
    /// control): every payload is delivered once, in order, within the
    /// latency, and nothing is dropped.
    #[test]
    fn repairs_loss_in_both_directions(seed in any::<u64>(), isn in prop_oneof![Just(SeqNo::MAX.sub(50).value()), 0u32..SeqNo::MODULUS], loss in 0u64..=30) {
        // A keeps sending after the 800 judged payloads so that a loss among
        // them always has a successor (live mode detects loss by gaps).
        let r = run(seed, SeqNo::new(isn), 1000, loss, 1400);
        let ks: Vec<u32> = r.delivered.iter().map(|d| d.1).filter(|k| *k < 800).collect();
        prop_assert_eq!(ks, (0..800).collect::<Vec<u32>>());
        for (at, k) in r.delivered.iter().filter(|d| d.1 < 800) {
            let sent = Instant::from_millis(50_000 + u64::from(*k));
            prop_assert!(at.saturating_duration_since(sent) <= LATENCY + Duration::from_millis(11));
        }
        prop_assert_eq!(r.b.recv_stats().dropped, 0);
        prop_assert_eq!(r.b.recv_stats().too_late, 0);
        if loss >= 10 {
            // 800 data packets at ≥ 1 % loss: some were retransmitted.
            prop_assert!(r.a.send_stats().retransmitted > 0);
        }
    }
}

#[test]
fn expired_packets_are_announced_with_dropreq_and_stop_naks() {
    let start = Instant::from_millis(1000);
    let (mut a, mut b) = pair(start, SeqNo::new(100), SeqNo::new(500));
    // Ten packets from A are lost on the way; the eleventh arrives and
    // reveals the gap.
    for i in 0..11u8 {
        a.send(start, Bytes::from(vec![i; 188])).unwrap();
    }
    let mut last = None;
    while let Some(p) = a.poll_packet(start) {
        last = Some(p);
    }
    b.handle_packet(start, last.unwrap());
    assert_eq!(b.recv_stats().received, 1);
    // A keeps its packets until latency + 1 s, then drops them unacked and
    // sends a DROPREQ for the range.
    let mut t = start;
    let mut dropreq = None;
    while t < start + LATENCY + Duration::from_secs(2) {
        t += Duration::from_millis(10);
        a.handle_timeout(t);
        b.handle_packet(
            t,
            Packet::Control(arcly::srt::packet::ControlPacket {
                timestamp: arcly::srt::Timestamp(0),
                dest: SocketId(1),
                body: Control::KeepAlive,
            }),
        );
        while let Some(p) = a.poll_packet(t) {
            if let Packet::Control(c) = &p {
                if let Control::DropReq { first, last, .. } = c.body {
                    dropreq = Some((first, last, p.clone()));
                }
            }
        }
    }
    let (first, last, p) = dropreq.expect("a DROPREQ");
    assert_eq!(first, SeqNo::new(100));
    assert!(!last.is_before(SeqNo::new(109)));
    assert!(a.send_stats().dropped >= 10);
    // B: before the DROPREQ it NAKs the gap periodically; after it, never.
    b.handle_timeout(t);
    let naks = |b: &mut Connection, t| {
        std::iter::from_fn(|| b.poll_packet(t))
            .filter(|p| matches!(p, Packet::Control(c) if matches!(c.body, Control::Nak(_))))
            .count()
    };
    assert!(naks(&mut b, t) > 0, "the gap is still reported");
    b.handle_packet(t, p);
    for _ in 0..50 {
        t += Duration::from_millis(20);
        b.handle_timeout(t);
        assert_eq!(naks(&mut b, t), 0, "no NAK after the DROPREQ");
    }
}
