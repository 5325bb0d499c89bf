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
        recv_buffer: 8192,
        start,
    });
    let b = Connection::new(ConnectionConfig {
        peer_socket: SocketId(1),
        send_isn: isn_b,
        recv_isn: isn_a,
        latency: LATENCY,
        flow_window: 8192,
        recv_buffer: 8192,
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

/// What a flow-control or drain run saw.
struct FlowRun {
    a: Connection,
    b: Connection,
    delivered: Vec<u32>,
    /// Most packets A had in flight at any step.
    max_in_flight: usize,
    /// Most packets in flight beyond the free buffer B last advertised.
    max_over_advertised: i64,
    /// Payloads A could not queue (send buffer full).
    refused: u64,
}

/// A sends `per_ms` payloads per ms for `n` ms at live rate; both sides
/// announce `flow_window`, B's receive buffer holds `recv_buffer` packets;
/// a 5 ms one-way link losing `loss` per mille; `drain` = Some(max_wait)
/// closes A gracefully right after its last payload. Runs `total` ms.
#[allow(clippy::too_many_arguments)]
fn flow_run(
    seed: u64,
    flow_window: u32,
    recv_buffer: u32,
    per_ms: u64,
    n: u64,
    loss: u64,
    drain: Option<Duration>,
    total: u64,
) -> FlowRun {
    let start = Instant::from_millis(10_000);
    let cfg = |peer: u32, send_isn: u32, recv_isn: u32| ConnectionConfig {
        peer_socket: SocketId(peer),
        send_isn: SeqNo::new(send_isn),
        recv_isn: SeqNo::new(recv_isn),
        latency: LATENCY,
        flow_window,
        recv_buffer,
        start,
    };
    let mut a = Connection::new(cfg(2, 1000, 5));
    let mut b = Connection::new(cfg(1, 5, 1000));
    let mut ab = Link::new(seed, loss);
    let mut ba = Link::new(seed.rotate_left(9), loss);
    ab.delay = Duration::from_millis(5);
    ba.delay = Duration::from_millis(5);
    let mut run = FlowRun {
        a: Connection::new(cfg(9, 0, 0)),
        b: Connection::new(cfg(9, 0, 0)),
        delivered: Vec::new(),
        max_in_flight: 0,
        max_over_advertised: 0,
        refused: 0,
    };
    let mut advertised: Option<u32> = None;
    let mut k = 0u32;
    // The application's backpressure: what the send buffer refused is
    // offered again next time, as the service does with its ring.
    let mut backlog: VecDeque<Bytes> = VecDeque::new();
    for ms in 0..total {
        let now = start + Duration::from_millis(ms);
        if ms < n {
            for _ in 0..per_ms {
                let mut payload = vec![0u8; 1316];
                payload[..4].copy_from_slice(&k.to_be_bytes());
                k += 1;
                backlog.push_back(Bytes::from(payload));
            }
        }
        while let Some(p) = backlog.front() {
            if a.send(now, p.clone()).is_err() {
                run.refused += 1;
                break;
            }
            backlog.pop_front();
        }
        if ms + 1 == n {
            if let Some(w) = drain {
                a.close_after_drain(now, w);
            }
        }
        a.handle_timeout(now);
        b.handle_timeout(now);
        while let Some(p) = a.poll_packet(now) {
            ab.send(now, p);
        }
        run.max_in_flight = run.max_in_flight.max(a.in_flight());
        if let Some(adv) = advertised {
            run.max_over_advertised = run
                .max_over_advertised
                .max(a.in_flight() as i64 - i64::from(adv.max(2)));
        }
        while let Some(p) = b.poll_packet(now) {
            ba.send(now, p);
        }
        while let Some(p) = ab.recv(now) {
            b.handle_packet(now, p);
        }
        while let Some(p) = ba.recv(now) {
            if let Packet::Control(c) = &p {
                if let Control::Ack(ack) = &c.body {
                    if let arcly::srt::packet::AckKind::Small(s)
                    | arcly::srt::packet::AckKind::Full(s, _) = ack.kind
                    {
                        assert!(
                            s.buffer_available <= recv_buffer.max(2),
                            "advertises at most its buffer"
                        );
                        advertised = Some(s.buffer_available);
                    }
                }
            }
            a.handle_packet(now, p);
        }
        while let Some(d) = b.poll_delivered(now) {
            run.delivered
                .push(u32::from_be_bytes(d.payload[..4].try_into().unwrap()));
        }
    }
    run.a = a;
    run.b = b;
    run
}

#[test]
fn small_flow_window_at_live_rate_loses_nothing() {
    // A 32-packet flow window, 1000 packets/s (~10.5 Mbit/s of 1316-byte
    // TS payloads) and 120 ms latency: B holds ~125 packets acknowledged
    // but not yet due. The flow window limits what is in flight (~20 at a
    // 10 ms RTT), not what the receive buffer (8192) holds.
    let r = flow_run(3, 32, 8192, 1, 2000, 0, None, 2600);
    let rs = r.b.recv_stats();
    assert_eq!(rs.out_of_window, 0, "{rs:?}");
    assert_eq!(rs.dropped, 0, "{rs:?}");
    assert_eq!(r.refused, 0);
    assert_eq!(
        r.delivered,
        (0..2000).collect::<Vec<u32>>(),
        "in order, no loss"
    );
    assert!(
        r.max_in_flight <= 32,
        "in flight {} within the window",
        r.max_in_flight
    );
    assert_eq!(r.a.send_stats().retransmitted, 0);
}

#[test]
fn small_flow_window_with_loss_repairs_everything() {
    // Same with 2 % loss both ways: retransmissions are not held back by
    // the window, and the window never overflows the receiver.
    let r = flow_run(11, 32, 8192, 1, 2000, 20, None, 2800);
    let rs = r.b.recv_stats();
    assert_eq!(rs.out_of_window, 0, "{rs:?}");
    assert_eq!(rs.dropped, 0, "{rs:?}");
    assert_eq!(r.delivered.len(), 2000, "{rs:?}");
    assert!(r.a.send_stats().retransmitted > 0);
    assert!(r.max_in_flight <= 32, "{}", r.max_in_flight);
}

#[test]
fn sender_respects_the_advertised_free_buffer() {
    // B's receive buffer (64) is smaller than the ~125 packets TSBPD holds
    // at this rate: the stream cannot fit. A must keep what it has in
    // flight within the free space B advertises, so B refuses (almost)
    // nothing as out of window: only the probes of the 2-packet minimum
    // window (libsrt's deadlock breaker) when B is full. Without the limit
    // A sent ~1400 packets into a full buffer. The excess waits at A and
    // arrives too late (counted as dropped by B).
    let r = flow_run(5, 8192, 64, 1, 1500, 0, None, 3500);
    let rs = r.b.recv_stats();
    assert!(rs.out_of_window <= 4, "{rs:?}");
    assert!(
        r.max_over_advertised <= 0,
        "in flight beyond the advertised buffer by {}",
        r.max_over_advertised
    );
    assert!(r.delivered.len() >= 64, "{}", r.delivered.len());
    assert!(r.delivered.windows(2).all(|w| w[0] < w[1]), "in order");
}

#[test]
fn close_after_drain_delivers_the_tail_and_close_does_not() {
    // 300 packets at 1/ms through a 5 % lossy link; A closes right after
    // queueing the last one.
    let r = flow_run(
        7,
        8192,
        8192,
        1,
        300,
        50,
        Some(Duration::from_secs(3)),
        2000,
    );
    assert_eq!(r.a.closed(), Some(Closed::Locally));
    assert!(r.a.is_send_drained());
    assert_eq!(r.b.closed(), Some(Closed::ByPeer), "SHUTDOWN arrived");
    assert_eq!(
        r.delivered,
        (0..300).collect::<Vec<u32>>(),
        "every packet, repaired, before the SHUTDOWN"
    );
    assert_eq!(r.b.recv_stats().dropped, 0);
    // A plain close at the same moment loses the unacknowledged tail.
    let start = Instant::from_millis(1);
    let (mut a, mut b) = pair(start, SeqNo::new(5), SeqNo::new(5));
    for i in 0..3u8 {
        a.send(start, Bytes::from(vec![i])).unwrap();
    }
    assert!(!a.is_send_drained());
    a.close(start);
    while let Some(p) = a.poll_packet(start) {
        b.handle_packet(start, p);
    }
    assert!(
        b.poll_delivered(start).is_none(),
        "nothing sent after SHUTDOWN"
    );
}

#[test]
fn close_after_drain_gives_up_at_the_deadline() {
    // The peer never answers: the wait ends at max_wait.
    let start = Instant::from_millis(1);
    let (mut a, _b) = pair(start, SeqNo::new(5), SeqNo::new(5));
    a.send(start, Bytes::from_static(b"x")).unwrap();
    a.close_after_drain(start, Duration::from_millis(300));
    assert!(a.is_draining() && a.closed().is_none());
    while a.poll_packet(start).is_some() {}
    let t = a.poll_timeout().unwrap();
    assert!(t <= start + Duration::from_millis(300));
    a.handle_timeout(start + Duration::from_millis(299));
    assert!(a.closed().is_none());
    a.handle_timeout(start + Duration::from_millis(300));
    assert_eq!(a.closed(), Some(Closed::Locally));
    let p = a.poll_packet(start + Duration::from_millis(300)).unwrap();
    assert!(matches!(p, Packet::Control(c) if c.body == Control::Shutdown));
    // Nothing queued: closes at once.
    let (mut c, _d) = pair(start, SeqNo::new(5), SeqNo::new(5));
    c.close_after_drain(start, Duration::from_secs(1));
    assert_eq!(c.closed(), Some(Closed::Locally));
}
