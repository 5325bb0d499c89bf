//! Live-mode receive buffer on a simulated clock: reordering, loss
//! reports, TSBPD delivery at a constant delay and too-late packet drop
//! (draft-sharabayko-srt-01 §4.5, §4.6).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use arcly::srt::packet::{DataPacket, KeyFlag, PacketPosition, SocketId};
use arcly::srt::recv_buffer::{Received, RecvBuffer};
use arcly::srt::{MsgNo, SeqNo, Timestamp};
use arcly::Instant;
use bytes::Bytes;
use proptest::prelude::*;

const LATENCY: Duration = Duration::from_millis(120);

fn pkt(seq: SeqNo, ts: u32, retransmitted: bool) -> DataPacket {
    DataPacket {
        seq,
        position: PacketPosition::Only,
        in_order: false,
        key: KeyFlag::None,
        retransmitted,
        msg_no: MsgNo::new(1),
        timestamp: Timestamp(ts),
        dest: SocketId(1),
        payload: Bytes::copy_from_slice(&seq.value().to_be_bytes()),
    }
}

#[test]
fn gap_ack_duplicate_and_window() {
    let s0 = SeqNo::MAX.sub(1);
    let mut rb = RecvBuffer::new(s0, LATENCY, 64);
    let t0 = Instant::from_millis(1000);
    assert_eq!(rb.handle_data(t0, &pkt(s0, 0, false)), Received::Stored);
    assert_eq!(rb.ack_seq(), s0.next());
    // s0+1 and s0+2 lost (across the wrap), s0+3 arrives.
    assert_eq!(
        rb.handle_data(t0, &pkt(s0.add(3), 3000, false)),
        Received::StoredWithGap {
            first: s0.add(1),
            last: s0.add(2)
        }
    );
    assert_eq!(rb.ack_seq(), s0.add(1));
    assert_eq!(rb.loss().len(), 2);
    assert_eq!(
        rb.handle_data(t0, &pkt(s0.add(3), 3000, false)),
        Received::DuplicateOrLate
    );
    assert_eq!(
        rb.handle_data(t0, &pkt(s0.add(64), 0, false)),
        Received::OutOfWindow
    );
    // Retransmission fills one hole.
    assert_eq!(
        rb.handle_data(t0, &pkt(s0.add(1), 1000, true)),
        Received::Stored
    );
    assert_eq!(
        rb.loss().ranges().collect::<Vec<_>>(),
        vec![(s0.add(2), s0.add(2))]
    );
    assert_eq!(rb.ack_seq(), s0.add(2));
    // Nothing is due before the latency.
    assert_eq!(rb.next_deadline(), Some(t0 + LATENCY));
    assert!(rb
        .poll_deliver(t0 + (LATENCY - Duration::from_micros(1)))
        .is_none());
    let d = rb.poll_deliver(t0 + LATENCY).unwrap();
    assert_eq!(d.seq, s0);
    let d = rb
        .poll_deliver(t0 + LATENCY + Duration::from_millis(1))
        .unwrap();
    assert_eq!(d.seq, s0.add(1));
    // s0+2 never comes: dropped when s0+3 is due.
    assert!(rb
        .poll_deliver(t0 + LATENCY + Duration::from_millis(2))
        .is_none());
    let d = rb
        .poll_deliver(t0 + LATENCY + Duration::from_millis(3))
        .unwrap();
    assert_eq!(d.seq, s0.add(3));
    let st = rb.stats();
    assert_eq!(
        (
            st.delivered,
            st.dropped,
            st.retransmitted,
            st.duplicate_or_late,
            st.out_of_window
        ),
        (3, 1, 1, 1, 1)
    );
    assert!(rb.loss().is_empty());
    // The dropped packet arriving now is late.
    assert_eq!(
        rb.handle_data(t0, &pkt(s0.add(2), 2000, true)),
        Received::DuplicateOrLate
    );
}

#[test]
fn late_arrival_is_not_stored_and_is_counted_once() {
    let s0 = SeqNo::new(100);
    let mut rb = RecvBuffer::new(s0, LATENCY, 64);
    let t0 = Instant::from_millis(1000);
    rb.handle_data(t0, &pkt(s0, 0, false));
    // s0+1 is lost; s0+2 arrives on time; s0+1 comes back 200 ms late.
    rb.handle_data(t0 + Duration::from_millis(2), &pkt(s0.add(2), 2000, false));
    let mut out = Vec::new();
    for ms in 0..200u64 {
        while let Some(d) = rb.poll_deliver(t0 + Duration::from_millis(ms)) {
            out.push(d.seq);
        }
    }
    assert_eq!(out, vec![s0, s0.add(2)]);
    let late = t0 + Duration::from_millis(200);
    assert_eq!(
        rb.handle_data(late, &pkt(s0.add(1), 1000, true)),
        Received::DuplicateOrLate
    );
    // A new packet delayed beyond the latency is refused as too late.
    assert_eq!(
        rb.handle_data(late, &pkt(s0.add(3), 3000, false)),
        Received::TooLate
    );
    rb.handle_data(late, &pkt(s0.add(4), 200_000, false));
    let d = rb.poll_deliver(late + LATENCY).unwrap();
    assert_eq!(d.seq, s0.add(4));
    let st = rb.stats();
    assert_eq!((st.too_late, st.dropped, st.delivered), (1, 2, 3));
}

proptest! {
    /// Packets sent every millisecond through a link that loses some and
    /// delays the rest by less than the latency: every received packet is
    /// delivered in order at exactly send time + first delay + latency, and
    /// exactly the lost packets before the last received one are dropped.
    #[test]
    fn delivers_in_order_at_constant_delay(
        initial in prop_oneof![Just(SeqNo::MAX.sub(20).value()), 0u32..SeqNo::MODULUS],
        ts0 in prop_oneof![Just(u32::MAX - 30_000), any::<u32>()],
        link in proptest::collection::vec(prop_oneof![1 => Just(None), 9 => (0u64..119_000).prop_map(Some)], 1..300),
    ) {
        let s0 = SeqNo::new(initial);
        let send = |i: usize| Instant::from_millis(10_000) + Duration::from_millis(i as u64);
        let mut arrivals: Vec<(Instant, usize)> = link
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.map(|d| (send(i) + Duration::from_micros(d), i)))
            .collect();
        arrivals.sort();
        let Some(&(first_arrival, first_i)) = arrivals.first() else { return Ok(()) };
        let received: Vec<usize> = { let mut v: Vec<usize> = arrivals.iter().map(|a| a.1).collect(); v.sort(); v };
        let last_received = *received.last().unwrap();
        let lost_before_last = (0..last_received).filter(|i| link[*i].is_none()).count() as u64;

        let mut rb = RecvBuffer::new(s0, LATENCY, 1024);
        let mut delivered = Vec::new();
        let mut next_arrival = 0;
        loop {
            let a = arrivals.get(next_arrival).map(|a| a.0);
            let d = rb.next_deadline();
            let now = match (a, d) {
                (None, None) => break,
                (Some(a), Some(d)) => a.min(d),
                (Some(a), None) => a,
                (None, Some(d)) => d,
            };
            while let Some(&(t, i)) = arrivals.get(next_arrival) {
                if t > now { break; }
                let ts = ts0.wrapping_add(i as u32 * 1000);
                let r = rb.handle_data(t, &pkt(s0.add(i as u32), ts, false));
                prop_assert!(matches!(r, Received::Stored | Received::StoredWithGap { .. }), "{:?}", r);
                next_arrival += 1;
            }
            while let Some(p) = rb.poll_deliver(now) {
                delivered.push((now, p));
            }
        }
        let seqs: Vec<usize> = delivered.iter().map(|(_, p)| s0.offset_to(p.seq) as usize).collect();
        prop_assert_eq!(&seqs, &received);
        let expected_delay = first_arrival.as_micros() as i64 - send(first_i).as_micros() as i64;
        for (at, p) in &delivered {
            let i = s0.offset_to(p.seq) as usize;
            prop_assert_eq!(at.as_micros() as i64, send(i).as_micros() as i64 + expected_delay + LATENCY.as_micros() as i64);
            prop_assert_eq!(p.payload.as_ref(), &p.seq.value().to_be_bytes());
        }
        let st = rb.stats();
        prop_assert_eq!(st.dropped, lost_before_last);
        prop_assert_eq!(st.delivered, received.len() as u64);
        prop_assert!(rb.loss().is_empty());
    }
}

#[test]
fn too_late_packets_do_not_stall_a_full_buffer() {
    // A 4-packet buffer; seq 0 on time, then seq 1..=3 arrive after their
    // delivery time (a sender that fell behind). Their empty slots are
    // skipped at once, so later packets fit again instead of being refused
    // as out of window forever.
    let lat = Duration::from_millis(100);
    let mut rb = RecvBuffer::new(SeqNo::new(0), lat, 4);
    let t0 = Instant::from_millis(1000);
    let pkt = |seq: u32, ts_ms: u32| DataPacket {
        seq: SeqNo::new(seq),
        position: PacketPosition::Only,
        in_order: true,
        key: KeyFlag::None,
        retransmitted: false,
        msg_no: MsgNo::new(seq + 1),
        timestamp: Timestamp(ts_ms * 1000),
        dest: SocketId(1),
        payload: Bytes::from_static(b"x"),
    };
    assert_eq!(rb.handle_data(t0, &pkt(0, 0)), Received::Stored);
    let late = t0 + Duration::from_millis(500);
    for s in 1..=3 {
        assert_eq!(rb.handle_data(late, &pkt(s, s)), Received::TooLate);
    }
    assert_eq!(rb.available(), 0);
    assert_eq!(rb.poll_deliver(late).map(|d| d.seq), Some(SeqNo::new(0)));
    assert!(rb.poll_deliver(late).is_none());
    assert_eq!(rb.available(), 4, "too-late slots skipped");
    assert_eq!(rb.stats().dropped, 3);
    assert_eq!(rb.handle_data(late, &pkt(4, 500)), Received::Stored);
    let due = late + lat;
    assert_eq!(rb.poll_deliver(due).map(|d| d.seq), Some(SeqNo::new(4)));
}
