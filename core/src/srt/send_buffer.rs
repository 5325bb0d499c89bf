//! Live-mode send buffer: sequence numbering, retransmission on NAK,
//! release on ACK and sender-side too-late drop (draft-sharabayko-srt-01
//! §4.6 "Too-Late Packet Drop", §4.8.2 "Packet Retransmission").
//!
//! Invariants: the buffer holds at most `capacity` packets, oldest first,
//! with consecutive sequence numbers from [`SendBuffer::oldest`]; the
//! retransmission set only ever names packets still held. A NAK naming
//! packets never sent or already released is clamped to what is held and
//! counted, so a hostile loss list costs no memory.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::loss::LossSet;
use super::packet::{DataPacket, KeyFlag, LossList, PacketPosition, SocketId};
use super::seq::{MsgNo, SeqNo, Timestamp};
use crate::time::Instant;

/// Counters of the send path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    /// New packets handed out for sending.
    pub sent: u64,
    /// Retransmissions handed out.
    pub retransmitted: u64,
    /// Packets released by ACK.
    pub acked: u64,
    /// Packets dropped as too old before being acknowledged.
    pub dropped: u64,
    /// NAK sequence numbers outside the held packets (ignored).
    pub bogus_nak: u64,
}

/// Why [`SendBuffer::push`] refused a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The buffer holds `capacity` unacknowledged packets.
    #[error("send buffer full ({0} packets)")]
    Full(usize),
}

#[derive(Debug, Clone)]
struct Entry {
    msg_no: MsgNo,
    timestamp: Timestamp,
    payload: Bytes,
    queued_at: Instant,
    sent: bool,
}

/// The live-mode send buffer (see the module docs).
#[derive(Debug)]
pub struct SendBuffer {
    dest: SocketId,
    oldest: SeqNo,
    next_msg: MsgNo,
    entries: VecDeque<Entry>,
    rexmit: LossSet,
    capacity: usize,
    drop_after: Duration,
    stats: SendStats,
}

impl SendBuffer {
    /// A buffer whose first packet gets `initial_seq` (our Initial Packet
    /// Sequence Number), addressed to the peer's socket `dest`, holding at
    /// most `capacity` packets; unacknowledged packets older than
    /// `drop_after` (the peer's latency plus margin) are dropped.
    pub fn new(initial_seq: SeqNo, dest: SocketId, capacity: usize, drop_after: Duration) -> Self {
        let capacity = capacity.clamp(1, SeqNo::HALF as usize);
        SendBuffer {
            dest,
            oldest: initial_seq,
            next_msg: MsgNo::new(1),
            entries: VecDeque::new(),
            rexmit: LossSet::new(capacity as u32),
            capacity,
            drop_after,
            stats: SendStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> SendStats {
        self.stats
    }

    /// Sequence number of the oldest packet held.
    pub fn oldest(&self) -> SeqNo {
        self.oldest
    }

    /// Sequence number the next new packet will get.
    pub fn next_seq(&self) -> SeqNo {
        self.oldest.add(self.entries.len() as u32)
    }

    /// Packets held (sent or not, not yet acknowledged).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Packets waiting for retransmission.
    pub fn pending_retransmissions(&self) -> u64 {
        self.rexmit.len()
    }

    /// Queues one payload (one live-mode message) with its timestamp.
    pub fn push(
        &mut self,
        now: Instant,
        timestamp: Timestamp,
        payload: Bytes,
    ) -> Result<SeqNo, SendError> {
        if self.entries.len() >= self.capacity {
            return Err(SendError::Full(self.capacity));
        }
        let seq = self.next_seq();
        self.entries.push_back(Entry {
            msg_no: self.next_msg,
            timestamp,
            payload,
            queued_at: now,
            sent: false,
        });
        self.next_msg = self.next_msg.next();
        if self.next_msg.value() == 0 {
            self.next_msg = MsgNo::new(1); // libsrt skips message number 0
        }
        Ok(seq)
    }

    fn packet(&self, idx: usize, retransmitted: bool) -> Option<DataPacket> {
        let e = self.entries.get(idx)?;
        Some(DataPacket {
            seq: self.oldest.add(idx as u32),
            position: PacketPosition::Only,
            in_order: true,
            key: KeyFlag::None,
            retransmitted,
            msg_no: e.msg_no,
            timestamp: e.timestamp,
            dest: self.dest,
            payload: e.payload.clone(),
        })
    }

    /// Packets sent and not yet acknowledged (the flight span of §3.2.4:
    /// from the last acknowledged sequence number to the last one sent).
    pub fn in_flight(&self) -> usize {
        // Packets go out in sequence order, so the sent ones are a prefix.
        self.entries.partition_point(|e| e.sent)
    }

    /// `true` once every queued packet was acknowledged (or given up by
    /// too-late drop): nothing is left to send or to retransmit.
    pub fn is_drained(&self) -> bool {
        self.entries.is_empty()
    }

    /// The next packet to put on the wire: retransmissions first (lowest
    /// sequence number first), then the oldest packet never sent.
    pub fn poll_packet(&mut self) -> Option<DataPacket> {
        self.poll_packet_within(usize::MAX)
    }

    /// Like [`SendBuffer::poll_packet`], but a new (never sent) packet only
    /// goes out while fewer than `max_in_flight` packets are unacknowledged:
    /// the sender's flow control (§3.2.4 "Available Buffer Size"; libsrt
    /// keeps the flight span under the peer's flow window and its last
    /// advertised free buffer). Retransmissions are not limited: they fill
    /// slots the receiver already reserved.
    pub fn poll_packet_within(&mut self, max_in_flight: usize) -> Option<DataPacket> {
        while let Some(seq) = self.rexmit.first() {
            self.rexmit.remove(seq);
            let idx = self.oldest.offset_to(seq);
            if idx >= 0 {
                if let Some(p) = self.packet(idx as usize, true) {
                    self.stats.retransmitted += 1;
                    return Some(p);
                }
            }
        }
        let idx = self.in_flight();
        if idx >= max_in_flight {
            return None;
        }
        let e = self.entries.get_mut(idx)?;
        e.sent = true;
        self.stats.sent += 1;
        self.packet(idx, false)
    }

    /// Applies an ACK: releases every packet before `last_ack` (§3.2.4).
    /// An ACK for packets never sent is clamped to the sent ones.
    pub fn handle_ack(&mut self, last_ack: SeqNo) {
        let sent = self.entries.iter().take_while(|e| e.sent).count();
        let off = self.oldest.offset_to(last_ack);
        if off <= 0 {
            return;
        }
        let n = (off as usize).min(sent);
        self.entries.drain(..n);
        self.oldest = self.oldest.add(n as u32);
        self.stats.acked += n as u64;
        self.rexmit.remove_before(self.oldest);
    }

    /// Applies a NAK: schedules the named packets that were sent and are
    /// still held for retransmission (§3.2.5).
    pub fn handle_nak(&mut self, list: &LossList) {
        let sent = self.entries.iter().take_while(|e| e.sent).count() as u32;
        if sent == 0 {
            self.stats.bogus_nak += list.count();
            return;
        }
        let lo = self.oldest;
        let hi = self.oldest.add(sent - 1);
        for &(a, b) in list.ranges() {
            let total = u64::from(a.range_len(b).unwrap_or(0));
            let first = if a.is_before(lo) { lo } else { a };
            let last = if b.is_after(hi) { hi } else { b };
            if first.is_after(hi) || last.is_before(lo) || first.is_after(last) {
                self.stats.bogus_nak += total;
                continue;
            }
            let kept = u64::from(first.range_len(last).unwrap_or(0));
            self.stats.bogus_nak += total - kept;
            // Within [oldest, oldest + capacity), so this cannot fail.
            let _ = self.rexmit.insert(first, last);
        }
    }

    /// Drops packets queued more than `drop_after` ago that are still
    /// unacknowledged; returns the dropped sequence range (for a DROPREQ,
    /// §3.2.9) if any.
    pub fn drop_expired(&mut self, now: Instant) -> Option<(SeqNo, SeqNo)> {
        let n = self
            .entries
            .iter()
            .take_while(|e| now.saturating_duration_since(e.queued_at) > self.drop_after)
            .count();
        if n == 0 {
            return None;
        }
        let first = self.oldest;
        self.entries.drain(..n);
        self.oldest = self.oldest.add(n as u32);
        self.stats.dropped += n as u64;
        self.rexmit.remove_before(self.oldest);
        Some((first, self.oldest.sub(1)))
    }

    /// When the oldest packet expires (for `poll_timeout`).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.entries.front().map(|e| e.queued_at + self.drop_after)
    }
}
