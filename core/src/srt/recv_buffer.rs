//! Live-mode receive buffer: reordering, loss detection and TSBPD delivery
//! with too-late packet drop (draft-sharabayko-srt-01 §4.5 "Timestamp-Based
//! Packet Delivery", §4.6 "Too-Late Packet Drop", §4.8.2 loss detection).
//!
//! Each data packet is due for delivery at
//! `time_base + unwrapped timestamp + latency`, where `time_base` is fixed
//! by the first packet received (`now - its timestamp`), so the first packet
//! plays exactly `latency` after it arrived. Packets are delivered in
//! sequence order; when the earliest present packet after a gap is due, the
//! missing packets before it are given up (counted in
//! [`RecvStats::dropped`]) instead of stalling the stream. A packet that
//! arrives after its own delivery time is not stored
//! ([`Received::TooLate`]), so the configured latency is an upper bound on
//! the delay the buffer adds.
//!
//! Invariants: the buffer holds at most `window` slots counted from the next
//! sequence number to deliver; packets outside that window are refused and
//! counted. The loss set covers exactly the missing slots between the next
//! packet to deliver and the highest sequence number received.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::loss::LossSet;
use super::packet::DataPacket;
use super::seq::{SeqNo, Timestamp, TimestampUnwrapper};
use crate::time::Instant;

/// Counters of the receive path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecvStats {
    /// Packets stored.
    pub received: u64,
    /// Stored packets that had the R (retransmitted) flag.
    pub retransmitted: u64,
    /// Packets already stored, or already delivered or dropped.
    pub duplicate_or_late: u64,
    /// Packets beyond the window, refused.
    pub out_of_window: u64,
    /// Packets never delivered: missing (or too late) when a later packet
    /// became due, and skipped by too-late packet drop.
    pub dropped: u64,
    /// Packets that arrived after their delivery time (not stored; they
    /// are also counted in `dropped` once skipped).
    pub too_late: u64,
    /// Packets delivered.
    pub delivered: u64,
}

/// What [`RecvBuffer::handle_data`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Stored for delivery.
    Stored,
    /// Stored, and it revealed a gap `first ..= last` (send a NAK).
    StoredWithGap {
        /// First missing sequence number.
        first: SeqNo,
        /// Last missing sequence number.
        last: SeqNo,
    },
    /// Already have it, or already delivered/dropped.
    DuplicateOrLate,
    /// Beyond the window.
    OutOfWindow,
    /// Arrived after its delivery time; not stored (§4.6).
    TooLate,
}

#[derive(Debug, Clone)]
struct Slot {
    play_at: Instant,
    payload: Bytes,
}

/// A delivered packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Its sequence number.
    pub seq: SeqNo,
    /// Its timestamp.
    pub timestamp: Timestamp,
    /// Its payload.
    pub payload: Bytes,
}

/// The live-mode receive buffer (see the module docs).
#[derive(Debug)]
pub struct RecvBuffer {
    latency: Duration,
    window: u32,
    next: SeqNo,
    highest: Option<SeqNo>,
    slots: VecDeque<Option<(Slot, Timestamp)>>,
    loss: LossSet,
    time_base: Option<i64>,
    unwrapper: TimestampUnwrapper,
    /// The highest sequence number that arrived too late: every empty slot
    /// up to it is past its delivery time and is skipped at once, so empty
    /// slots of too-late packets never stall the buffer.
    late_mark: Option<SeqNo>,
    stats: RecvStats,
}

impl RecvBuffer {
    /// A buffer expecting `initial_seq` first (the peer's Initial Packet
    /// Sequence Number from the handshake), delivering `latency` after the
    /// time base, holding at most `window` packets (the receive buffer
    /// size, libsrt `SRTO_RCVBUF`; not the flow window, which limits only
    /// what the peer has in flight).
    pub fn new(initial_seq: SeqNo, latency: Duration, window: u32) -> Self {
        let window = window.clamp(1, SeqNo::HALF);
        RecvBuffer {
            latency,
            window,
            next: initial_seq,
            highest: None,
            slots: VecDeque::new(),
            loss: LossSet::new(window),
            time_base: None,
            unwrapper: TimestampUnwrapper::new(),
            late_mark: None,
            stats: RecvStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> RecvStats {
        self.stats
    }

    /// The missing sequence numbers (for NAK reports).
    pub fn loss(&self) -> &LossSet {
        &self.loss
    }

    /// The sequence number to acknowledge: the first one not received in
    /// order (§3.2.4 "Last Acknowledged Packet Sequence Number").
    pub fn ack_seq(&self) -> SeqNo {
        match (self.loss.first(), self.highest) {
            (Some(f), _) => f,
            (None, Some(h)) if !h.is_before(self.next) => h.next(),
            _ => self.next,
        }
    }

    /// Number of packets held.
    pub fn buffered(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// The buffer capacity in packets (`SRTO_RCVBUF`).
    pub fn capacity(&self) -> u32 {
        self.window
    }

    /// Free space in packets: the capacity minus the span from the next
    /// packet to deliver to the highest one received, so packets already
    /// acknowledged but held for TSBPD, and the holes before them, count
    /// as occupied. This is the "Available Buffer Size" of the ACK
    /// (§3.2.4), as libsrt computes it.
    pub fn available(&self) -> u32 {
        self.window.saturating_sub(self.slots.len() as u32)
    }

    /// Stores one data packet received at `now`.
    pub fn handle_data(&mut self, now: Instant, pkt: &DataPacket) -> Received {
        let off = self.next.offset_to(pkt.seq);
        if off < 0 {
            self.stats.duplicate_or_late += 1;
            return Received::DuplicateOrLate;
        }
        let off = off as u32;
        if off >= self.window {
            self.stats.out_of_window += 1;
            return Received::OutOfWindow;
        }
        let ts64 = self.unwrapper.unwrap(pkt.timestamp);
        let base = *self
            .time_base
            .get_or_insert((now.as_micros() as i64).saturating_sub(ts64));
        let play_us = base
            .saturating_add(ts64)
            .saturating_add(self.latency.as_micros() as i64);
        let play_at = Instant::from_micros(u64::try_from(play_us).unwrap_or(0));
        let idx = off as usize;
        while self.slots.len() <= idx {
            self.slots.push_back(None);
        }
        if self.slots.get(idx).is_some_and(|s| s.is_some()) {
            self.stats.duplicate_or_late += 1;
            return Received::DuplicateOrLate;
        }
        let expected = match self.highest {
            Some(h) if !h.is_before(self.next) => h.next(),
            _ => self.next,
        };
        let mut result = Received::Stored;
        if pkt.seq.is_after(expected) {
            let last = pkt.seq.sub(1);
            // Within the window by construction, so the insert cannot fail.
            if self.loss.insert(expected, last).is_ok() {
                result = Received::StoredWithGap {
                    first: expected,
                    last,
                };
            }
        } else {
            self.loss.remove(pkt.seq);
        }
        if self.highest.map_or(true, |h| pkt.seq.is_after(h)) {
            self.highest = Some(pkt.seq);
        }
        if play_at < now {
            // Arrived after its delivery time: it can no longer be played
            // within the latency budget. Its slot stays empty and is
            // skipped (and counted as dropped) by too-late packet drop.
            self.stats.too_late += 1;
            if self.late_mark.map_or(true, |m| pkt.seq.is_after(m)) {
                self.late_mark = Some(pkt.seq);
            }
            return Received::TooLate;
        }
        let Some(slot) = self.slots.get_mut(idx) else {
            return Received::OutOfWindow;
        };
        *slot = Some((
            Slot {
                play_at,
                payload: pkt.payload.clone(),
            },
            pkt.timestamp,
        ));
        self.stats.received += 1;
        if pkt.retransmitted {
            self.stats.retransmitted += 1;
        }
        result
    }

    /// The sender gave up `first ..= last` (DROPREQ, §3.2.9): stop
    /// reporting them lost. Missing ones are skipped (and counted as
    /// dropped) at delivery; packets already stored are kept.
    pub fn drop_request(&mut self, first: SeqNo, last: SeqNo) -> u64 {
        self.loss.remove_range(first, last)
    }

    /// When the next packet becomes due (for `poll_timeout`).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots.iter().flatten().map(|(s, _)| s.play_at).next()
    }

    /// Skips the empty slots at the front up to the latest too-late packet:
    /// their delivery time has passed (sequence order is play order).
    fn skip_late(&mut self) {
        let Some(mark) = self.late_mark else {
            return;
        };
        let span = self.next.offset_to(mark);
        if span < 0 {
            self.late_mark = None;
            return;
        }
        let n = self
            .slots
            .iter()
            .take(span as usize + 1)
            .take_while(|s| s.is_none())
            .count();
        if n > 0 {
            self.slots.drain(..n);
            self.stats.dropped += n as u64;
            self.next = self.next.add(n as u32);
            self.loss.remove_before(self.next);
        }
    }

    /// The next stored packet regardless of its delivery time, skipping
    /// (and counting as dropped) missing ones: for flushing the tail of a
    /// stream whose sender has shut down.
    pub fn poll_flush(&mut self) -> Option<Delivered> {
        let gap = self.slots.iter().position(|s| s.is_some())?;
        if gap > 0 {
            self.slots.drain(..gap);
            self.stats.dropped += gap as u64;
            self.next = self.next.add(gap as u32);
            self.loss.remove_before(self.next);
        }
        let (slot, timestamp) = self.slots.pop_front().flatten()?;
        let seq = self.next;
        self.next = self.next.next();
        self.stats.delivered += 1;
        Some(Delivered {
            seq,
            timestamp,
            payload: slot.payload,
        })
    }

    /// The next packet due at `now`, in sequence order, dropping missing
    /// packets whose successor is already due (too-late packet drop).
    pub fn poll_deliver(&mut self, now: Instant) -> Option<Delivered> {
        self.skip_late();
        let (gap, play_at) = self
            .slots
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.as_ref().map(|(slot, _)| (i, slot.play_at)))?;
        if play_at > now {
            return None;
        }
        if gap > 0 {
            self.slots.drain(..gap);
            self.stats.dropped += gap as u64;
            self.next = self.next.add(gap as u32);
            self.loss.remove_before(self.next);
            tracing::debug!(dropped = gap, next = %self.next, "srt: too-late packet drop");
        }
        let (slot, timestamp) = self.slots.pop_front().flatten()?;
        let seq = self.next;
        self.next = self.next.next();
        self.stats.delivered += 1;
        Some(Delivered {
            seq,
            timestamp,
            payload: slot.payload,
        })
    }
}
