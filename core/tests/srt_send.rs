//! Live-mode send buffer, and the send and receive buffers back to back
//! through a simulated lossy, delayed link driven by a seeded RNG
//! (draft-sharabayko-srt-01 §4.6, §4.8.2).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::VecDeque;
use std::time::Duration;

use arcly::srt::packet::{LossList, SocketId};
use arcly::srt::recv_buffer::{Received, RecvBuffer};
use arcly::srt::send_buffer::{SendBuffer, SendError};
use arcly::srt::{SeqNo, Timestamp};
use arcly::Instant;
use bytes::Bytes;
use proptest::prelude::*;

fn list(ranges: &[(u32, u32)], base: SeqNo) -> LossList {
    let mut l = LossList::new();
    for &(a, b) in ranges {
        assert!(l.push(base.add(a), base.add(b)));
    }
    l
}

#[test]
fn retransmits_nak_ranges_and_releases_on_ack() {
    let s0 = SeqNo::MAX.sub(2);
    let t = Instant::from_millis(5);
    let mut sb = SendBuffer::new(s0, SocketId(9), 8, Duration::from_secs(1));
    for i in 0..5u32 {
        assert_eq!(
            sb.push(t, Timestamp(i * 1000), Bytes::from(vec![i as u8]))
                .unwrap(),
            s0.add(i)
        );
    }
    for i in 0..5u32 {
        let p = sb.poll_packet().unwrap();
        assert_eq!(
            (p.seq, p.retransmitted, p.msg_no.value(), p.dest),
            (s0.add(i), false, i + 1, SocketId(9))
        );
        assert_eq!(p.payload.as_ref(), &[i as u8]);
    }
    assert!(sb.poll_packet().is_none());
    sb.handle_nak(&list(&[(2, 3), (0, 0)], s0));
    let re: Vec<_> = std::iter::from_fn(|| sb.poll_packet()).collect();
    assert_eq!(
        re.iter().map(|p| p.seq).collect::<Vec<_>>(),
        vec![s0, s0.add(2), s0.add(3)]
    );
    assert!(re.iter().all(|p| p.retransmitted));
    sb.handle_ack(s0.add(4));
    assert_eq!((sb.len(), sb.oldest()), (1, s0.add(4)));
    assert_eq!(sb.stats().acked, 4);
    // An ACK beyond what was sent is clamped.
    sb.push(t, Timestamp(9), Bytes::new()).unwrap();
    sb.handle_ack(s0.add(1000));
    assert_eq!(
        (sb.len(), sb.oldest()),
        (1, s0.add(5)),
        "the unsent packet stays"
    );
}

#[test]
fn absurd_naks_cost_nothing() {
    let s0 = SeqNo::new(1000);
    let mut sb = SendBuffer::new(s0, SocketId(1), 16, Duration::from_secs(1));
    for i in 0..4 {
        sb.push(Instant::ZERO, Timestamp(i), Bytes::new()).unwrap();
    }
    sb.poll_packet();
    sb.poll_packet(); // 1000, 1001 sent; 1002, 1003 queued
    let mut l = LossList::new();
    l.push(SeqNo::new(0), SeqNo::new(999)); // before anything held
    l.push(SeqNo::new(1002), SeqNo::new(1003)); // not sent yet
    l.push(SeqNo::new(5000), SeqNo::new(1 << 29)); // far future
    l.push(SeqNo::new(990), SeqNo::new(1000)); // partly valid: only 1000
    sb.handle_nak(&l);
    assert_eq!(sb.pending_retransmissions(), 1);
    let p = sb.poll_packet().unwrap();
    assert_eq!((p.seq, p.retransmitted), (SeqNo::new(1000), true));
    assert_eq!(sb.stats().bogus_nak, 1000 + 2 + ((1 << 29) - 5000 + 1) + 10);
}

#[test]
fn full_and_expiry() {
    let mut sb = SendBuffer::new(SeqNo::ZERO, SocketId(1), 2, Duration::from_millis(100));
    sb.push(Instant::ZERO, Timestamp(0), Bytes::new()).unwrap();
    sb.push(Instant::from_millis(50), Timestamp(0), Bytes::new())
        .unwrap();
    assert_eq!(
        sb.push(Instant::ZERO, Timestamp(0), Bytes::new()),
        Err(SendError::Full(2))
    );
    assert_eq!(sb.next_expiry(), Some(Instant::from_millis(100)));
    assert_eq!(sb.drop_expired(Instant::from_millis(100)), None);
    assert_eq!(
        sb.drop_expired(Instant::from_millis(101)),
        Some((SeqNo::ZERO, SeqNo::ZERO))
    );
    assert_eq!(
        (sb.len(), sb.oldest(), sb.stats().dropped),
        (1, SeqNo::new(1), 1)
    );
}

/// A one-way link with a fixed delay that loses packets per a seeded RNG.
struct Link<T> {
    delay: Duration,
    loss_per_mille: u64,
    rng: u64,
    queue: VecDeque<(Instant, T)>,
}

impl<T> Link<T> {
    fn send(&mut self, now: Instant, item: T, blackout: bool) {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % 1000;
        if !blackout && r >= self.loss_per_mille {
            self.queue.push_back((now + self.delay, item));
        }
    }
    fn recv(&mut self, now: Instant) -> Option<T> {
        if self.queue.front()?.0 <= now {
            self.queue.pop_front().map(|x| x.1)
        } else {
            None
        }
    }
}

struct Outcome {
    delivered: Vec<SeqNo>,
    dropped: u64,
}

/// 1 packet/ms for `n` + 400 ms (the first `n` are judged); forward link loses `loss` per mille and is cut
/// during `blackout` (ms range); the return path (ACK/NAK) is reliable.
/// NAK on gap detection and every 10 ms; ACK every 10 ms; latency 120 ms;
/// one-way delay 10 ms.
fn simulate(seed: u64, s0: SeqNo, n: u32, loss: u64, blackout: std::ops::Range<u64>) -> Outcome {
    let latency = Duration::from_millis(120);
    let mut sb = SendBuffer::new(s0, SocketId(2), 4096, Duration::from_secs(2));
    let mut rb = RecvBuffer::new(s0, latency, 4096);
    let mut fwd = Link {
        delay: Duration::from_millis(10),
        loss_per_mille: loss,
        rng: seed | 1,
        queue: VecDeque::new(),
    };
    let mut back: Link<Result<SeqNo, LossList>> = Link {
        delay: Duration::from_millis(10),
        loss_per_mille: 0,
        rng: 1,
        queue: VecDeque::new(),
    };
    let mut delivered = Vec::new();
    for ms in 0..u64::from(n) + 400 {
        let now = Instant::from_millis(ms);
        {
            sb.push(now, Timestamp(ms as u32 * 1000), Bytes::new())
                .unwrap();
        }
        while let Some(p) = sb.poll_packet() {
            fwd.send(now, p, blackout.contains(&ms));
        }
        while let Some(p) = fwd.recv(now) {
            if let Received::StoredWithGap { first, last } = rb.handle_data(now, &p) {
                let mut l = LossList::new();
                l.push(first, last);
                back.send(now, Err(l), false);
            }
        }
        if ms % 10 == 0 {
            back.send(now, Ok(rb.ack_seq()), false);
            if !rb.loss().is_empty() {
                back.send(now, Err(rb.loss().to_nak()), false);
            }
        }
        while let Some(fb) = back.recv(now) {
            match fb {
                Ok(ack) => sb.handle_ack(ack),
                Err(nak) => sb.handle_nak(&nak),
            }
        }
        while let Some(d) = rb.poll_deliver(now) {
            delivered.push(d.seq);
        }
    }
    // Only the first `n` packets are judged; the later ones give every
    // loss among them a successor, so it can be detected.
    delivered.retain(|s| s0.offset_to(*s) < n as i32);
    Outcome {
        delivered,
        dropped: rb.stats().dropped,
    }
}

fn assert_in_order(s0: SeqNo, seqs: &[SeqNo]) {
    for w in seqs.windows(2) {
        assert!(w[0].is_before(w[1]), "out of order: {:?}", w);
    }
    if let Some(f) = seqs.first() {
        assert!(!f.is_before(s0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Loss the latency budget can repair: every packet arrives, in order.
    #[test]
    fn repairable_loss_is_fully_repaired(seed in any::<u64>(), s0 in prop_oneof![Just(SeqNo::MAX.sub(100).value()), 0u32..SeqNo::MODULUS], loss in 0u64..=50) {
        let s0 = SeqNo::new(s0);
        let out = simulate(seed, s0, 600, loss, 0..0);
        assert_in_order(s0, &out.delivered);
        prop_assert_eq!(out.dropped, 0);
        prop_assert_eq!(out.delivered.len(), 600);
        let expect: Vec<SeqNo> = (0..600).map(|i| s0.add(i)).collect();
        prop_assert_eq!(out.delivered, expect);
    }

    /// A blackout longer than the latency: the packets sent during it are
    /// dropped (and counted), everything else arrives in order.
    #[test]
    fn losses_beyond_the_budget_are_dropped_and_counted(seed in any::<u64>(), start in 50u64..300, len in 150u64..300) {
        let s0 = SeqNo::new(7);
        let out = simulate(seed, s0, 600, 0, start..start + len);
        assert_in_order(s0, &out.delivered);
        prop_assert_eq!(out.delivered.len() as u64 + out.dropped, 600);
        prop_assert!(out.dropped > 0);
        prop_assert!(out.dropped <= len, "dropped {} of a {} ms blackout", out.dropped, len);
    }
}
