//! TCP reassembly of one direction of a connection (RFC 9293 §3.4, §3.10.7):
//! out-of-order segments, retransmitted duplicates, overlapping segments,
//! SYN/FIN/RST. Missing bytes are reported as a [`StreamEvent::Gap`]; no byte
//! is ever invented.
//!
//! Invariants:
//! - [`StreamEvent::Data`] offsets are contiguous: each one starts where the
//!   previous `Data` or `Gap` ended;
//! - out-of-order data held is at most [`ReassemblyLimits::max_out_of_order`]
//!   bytes; past that the hole before the buffered data is declared a gap;
//! - where a retransmission overlaps bytes already delivered, the bytes first
//!   seen win and a conflict is counted in [`DirectionStats::conflicts`].

use std::collections::BTreeMap;

use bytes::Bytes;

use super::capture::{Packet, Transport};
use crate::time::Instant;

/// Bounds of one direction's reassembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Out-of-order bytes held waiting for a hole to fill (default 4 MiB).
    pub max_out_of_order: usize,
    /// Out-of-order segments held (default 4096).
    pub max_segments: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_out_of_order: 4 << 20,
            max_segments: 4096,
        }
    }
}

/// What one direction of a TCP connection delivered, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// Contiguous bytes at `offset` (bytes since the first data byte).
    Data {
        /// When the packet that made these bytes deliverable was captured.
        time: Instant,
        /// Its index among the capture's packets.
        packet: usize,
        /// Stream offset of the first byte.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// `len` bytes at `offset` were never captured (or were dropped by a limit).
    Gap {
        /// When the gap was declared.
        time: Instant,
        /// The packet that made the replay give up on the hole.
        packet: usize,
        /// Stream offset of the first missing byte.
        offset: u64,
        /// Missing bytes.
        len: u64,
    },
    /// The sender closed its direction (FIN, after all bytes before it).
    Fin {
        /// Capture time.
        time: Instant,
        /// Packet index.
        packet: usize,
    },
    /// The connection was reset (RST).
    Reset {
        /// Capture time.
        time: Instant,
        /// Packet index.
        packet: usize,
    },
}

impl StreamEvent {
    /// The packet index the event is tied to (for ordering both directions).
    pub fn packet(&self) -> usize {
        match self {
            StreamEvent::Data { packet, .. }
            | StreamEvent::Gap { packet, .. }
            | StreamEvent::Fin { packet, .. }
            | StreamEvent::Reset { packet, .. } => *packet,
        }
    }

    /// The capture time of the event.
    pub fn time(&self) -> Instant {
        match self {
            StreamEvent::Data { time, .. }
            | StreamEvent::Gap { time, .. }
            | StreamEvent::Fin { time, .. }
            | StreamEvent::Reset { time, .. } => *time,
        }
    }
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Segments carrying data or SYN/FIN/RST.
    pub segments: u64,
    /// Segments entirely made of bytes already delivered or held.
    pub duplicates: u64,
    /// Segments that arrived ahead of a hole.
    pub out_of_order: u64,
    /// Segments partly overlapping delivered or held bytes.
    pub overlaps: u64,
    /// Overlaps whose bytes differ from the ones first seen.
    pub conflicts: u64,
    /// Bytes delivered.
    pub delivered: u64,
    /// Bytes reported missing.
    pub missing: u64,
    /// Whether the first captured segment was not a SYN (capture started mid-stream).
    pub mid_stream: bool,
}

/// Reassembles one direction of a TCP connection, sans-IO: feed segments with
/// [`segment`](Self::segment), call [`finish`](Self::finish) at the end of the
/// capture, drain [`poll_event`](Self::poll_event).
#[derive(Debug)]
pub struct Reassembler {
    limits: ReassemblyLimits,
    /// Sequence number of stream offset 0 (the byte after the SYN).
    isn: Option<u32>,
    /// Next offset to deliver.
    next: u64,
    /// Held out-of-order segments by offset.
    held: BTreeMap<u64, Bytes>,
    held_bytes: usize,
    /// Offset of the FIN, once seen.
    fin_at: Option<u64>,
    fin_sent: bool,
    reset: bool,
    events: std::collections::VecDeque<StreamEvent>,
    stats: DirectionStats,
}

impl Reassembler {
    /// An empty direction.
    pub fn new(limits: ReassemblyLimits) -> Self {
        Reassembler {
            limits,
            isn: None,
            next: 0,
            held: BTreeMap::new(),
            held_bytes: 0,
            fin_at: None,
            fin_sent: false,
            reset: false,
            events: std::collections::VecDeque::new(),
            stats: DirectionStats::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> DirectionStats {
        self.stats
    }

    /// The next event in stream order.
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    /// Stream offset of sequence number `seq`, read relative to the next
    /// expected byte so that 32-bit wrap is handled (RFC 9293 §3.4).
    fn offset_of(&self, isn: u32, seq: u32) -> i128 {
        let next_seq = isn.wrapping_add(self.next as u32);
        let delta = i64::from(seq.wrapping_sub(next_seq) as i32);
        i128::from(self.next) + i128::from(delta)
    }

    /// One captured segment of this direction (a UDP packet is ignored).
    pub fn segment(&mut self, p: &Packet) {
        let Transport::Tcp { seq, syn, fin, rst } = p.transport else {
            return;
        };
        let (time, packet, payload) = (p.time, p.index, &p.payload);
        if self.reset || self.fin_sent {
            if !payload.is_empty() {
                self.stats.duplicates += 1;
            }
            return;
        }
        self.stats.segments += 1;
        let mut data_seq = seq;
        if syn {
            if self.isn.is_none() {
                self.isn = Some(seq.wrapping_add(1));
            }
            data_seq = seq.wrapping_add(1);
        }
        let isn = match self.isn {
            Some(i) => i,
            None => {
                if payload.is_empty() && !fin && !rst {
                    // A bare ACK before any data: nothing to anchor on yet.
                    return;
                }
                self.stats.mid_stream = true;
                self.isn = Some(data_seq);
                data_seq
            }
        };
        let start = self.offset_of(isn, data_seq);
        if !payload.is_empty() {
            self.data(time, packet, start, payload);
        }
        if fin {
            let at = start + payload.len() as i128;
            if at >= 0 && self.fin_at.is_none() {
                self.fin_at = u64::try_from(at).ok();
            }
        }
        if rst {
            // Everything held is as far as the stream gets.
            self.flush(time, packet);
            self.reset = true;
            self.events.push_back(StreamEvent::Reset { time, packet });
            return;
        }
        self.check_fin(time, packet);
    }

    fn data(&mut self, time: Instant, packet: usize, start: i128, payload: &Bytes) {
        let end = start + payload.len() as i128;
        let next = i128::from(self.next);
        if end <= next {
            self.stats.duplicates += 1;
            return;
        }
        let (start, payload) = if start < next {
            self.stats.overlaps += 1;
            let skip = usize::try_from(next - start).unwrap_or(usize::MAX);
            (next, payload.slice(skip.min(payload.len())..))
        } else {
            (start, payload.clone())
        };
        let Ok(start) = u64::try_from(start) else {
            return;
        };
        if start == self.next {
            self.deliver(time, packet, payload);
            self.drain(time, packet);
        } else {
            self.stats.out_of_order += 1;
            self.hold(start, payload);
            self.enforce_limits(time, packet);
        }
    }

    fn hold(&mut self, start: u64, payload: Bytes) {
        match self.held.get(&start) {
            Some(old) if old.len() >= payload.len() => {
                self.stats.duplicates += 1;
                if !payload.is_empty() && old.get(..payload.len()) != Some(payload.as_ref()) {
                    self.stats.conflicts += 1;
                }
            }
            Some(old) => {
                self.held_bytes = self.held_bytes - old.len() + payload.len();
                self.held.insert(start, payload);
            }
            None => {
                self.held_bytes += payload.len();
                self.held.insert(start, payload);
            }
        }
    }

    fn deliver(&mut self, time: Instant, packet: usize, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let offset = self.next;
        self.next += data.len() as u64;
        self.stats.delivered += data.len() as u64;
        self.events.push_back(StreamEvent::Data {
            time,
            packet,
            offset,
            data,
        });
    }

    /// Delivers held segments that now touch `next`, trimming overlaps.
    fn drain(&mut self, time: Instant, packet: usize) {
        while let Some(entry) = self.held.first_entry() {
            let start = *entry.key();
            if start > self.next {
                break;
            }
            let seg = entry.remove();
            self.held_bytes -= seg.len();
            let end = start + seg.len() as u64;
            if end <= self.next {
                self.stats.duplicates += 1;
                continue;
            }
            let skip = usize::try_from(self.next - start).unwrap_or(usize::MAX);
            if skip > 0 {
                self.stats.overlaps += 1;
            }
            self.deliver(time, packet, seg.slice(skip.min(seg.len())..));
        }
    }

    /// Declares the hole before the first held segment a gap and delivers.
    fn skip_hole(&mut self, time: Instant, packet: usize) {
        let Some((&start, _)) = self.held.first_key_value() else {
            return;
        };
        if start > self.next {
            let len = start - self.next;
            self.events.push_back(StreamEvent::Gap {
                time,
                packet,
                offset: self.next,
                len,
            });
            self.stats.missing += len;
            self.next = start;
        }
        self.drain(time, packet);
    }

    fn enforce_limits(&mut self, time: Instant, packet: usize) {
        while self.held_bytes > self.limits.max_out_of_order
            || self.held.len() > self.limits.max_segments
        {
            self.skip_hole(time, packet);
        }
    }

    fn flush(&mut self, time: Instant, packet: usize) {
        while !self.held.is_empty() {
            self.skip_hole(time, packet);
        }
    }

    fn check_fin(&mut self, time: Instant, packet: usize) {
        if let Some(at) = self.fin_at {
            if !self.fin_sent && self.next >= at && self.held.is_empty() {
                self.fin_sent = true;
                self.events.push_back(StreamEvent::Fin { time, packet });
            }
        }
    }

    /// The end of the capture: held data behind holes is delivered after a
    /// gap, and a FIN whose bytes were all seen after that is reported. A FIN
    /// beyond missing bytes at the very end is reported after a final gap.
    pub fn finish(&mut self, time: Instant, packet: usize) {
        if self.reset || self.fin_sent {
            return;
        }
        self.flush(time, packet);
        if let Some(at) = self.fin_at {
            if at > self.next {
                let len = at - self.next;
                self.events.push_back(StreamEvent::Gap {
                    time,
                    packet,
                    offset: self.next,
                    len,
                });
                self.stats.missing += len;
                self.next = at;
            }
        }
        self.check_fin(time, packet);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn pkt(i: usize, seq: u32, flags: (bool, bool, bool), data: &[u8]) -> Packet {
        Packet {
            index: i,
            time: Instant::from_millis(i as u64),
            src: "10.0.0.1:5000".parse().unwrap(),
            dst: "10.0.0.2:1935".parse().unwrap(),
            transport: Transport::Tcp {
                seq,
                syn: flags.0,
                fin: flags.1,
                rst: flags.2,
            },
            payload: Bytes::copy_from_slice(data),
        }
    }

    fn seg(r: &mut Reassembler, i: usize, seq: u32, data: &[u8]) {
        r.segment(&pkt(i, seq, (false, false, false), data));
    }

    fn drain(r: &mut Reassembler) -> Vec<StreamEvent> {
        std::iter::from_fn(|| r.poll_event()).collect()
    }

    /// The bytes delivered and the gaps, as a compact string.
    fn stream(events: &[StreamEvent]) -> String {
        let mut s = String::new();
        for e in events {
            match e {
                StreamEvent::Data { data, .. } => s.push_str(std::str::from_utf8(data).unwrap()),
                StreamEvent::Gap { offset, len, .. } => {
                    s.push_str(&format!("[gap {offset}+{len}]"))
                }
                StreamEvent::Fin { .. } => s.push_str("[fin]"),
                StreamEvent::Reset { .. } => s.push_str("[rst]"),
            }
        }
        s
    }

    fn syn(r: &mut Reassembler, isn: u32) {
        r.segment(&pkt(0, isn, (true, false, false), b""));
    }

    #[test]
    fn in_order_out_of_order_duplicates_and_overlaps() {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        syn(&mut r, 999);
        seg(&mut r, 1, 1000, b"abc");
        seg(&mut r, 2, 1006, b"ghi"); // ahead of a hole
        seg(&mut r, 3, 1000, b"abc"); // retransmission
        seg(&mut r, 4, 1002, b"cdef"); // overlaps delivered "c", fills the hole
        seg(&mut r, 5, 1008, b"ijk"); // overlaps "i"
        let ev = drain(&mut r);
        assert_eq!(stream(&ev), "abcdefghijk");
        let st = r.stats();
        assert_eq!(st.duplicates, 1);
        assert_eq!(st.out_of_order, 1);
        assert_eq!(st.overlaps, 2);
        assert_eq!(st.delivered, 11);
        assert!(!st.mid_stream);
    }

    #[test]
    fn hole_is_a_gap_at_the_end_never_invented_bytes() {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        syn(&mut r, 0);
        seg(&mut r, 1, 1, b"ab");
        seg(&mut r, 2, 6, b"fg");
        r.segment(&pkt(3, 8, (false, true, false), b""));
        assert_eq!(stream(&drain(&mut r)), "ab");
        r.finish(Instant::ZERO, 3);
        assert_eq!(stream(&drain(&mut r)), "[gap 2+3]fg[fin]");
        assert_eq!(r.stats().missing, 3);
    }

    #[test]
    fn sequence_wrap_and_mid_stream_start() {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        seg(&mut r, 0, u32::MAX - 1, b"ab");
        seg(&mut r, 1, 0, b"cd");
        seg(&mut r, 2, 2, b"ef");
        assert_eq!(stream(&drain(&mut r)), "abcdef");
        assert!(r.stats().mid_stream);
    }

    #[test]
    fn out_of_order_memory_is_bounded() {
        let mut r = Reassembler::new(ReassemblyLimits {
            max_out_of_order: 4,
            max_segments: 100,
        });
        syn(&mut r, 0);
        seg(&mut r, 1, 11, b"kl");
        seg(&mut r, 2, 21, b"uv");
        seg(&mut r, 3, 31, b"XY"); // 6 bytes held > 4: the first hole is given up
        assert_eq!(stream(&drain(&mut r)), "[gap 0+10]kl");
        seg(&mut r, 4, 13, b"mnopqrst"); // fills the next hole exactly
        assert_eq!(stream(&drain(&mut r)), "mnopqrstuv");
    }

    #[test]
    fn fin_waits_for_the_bytes_before_it_and_reset_flushes() {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        syn(&mut r, 0);
        r.segment(&pkt(1, 3, (false, true, false), b"c"));
        assert_eq!(stream(&drain(&mut r)), "");
        seg(&mut r, 2, 1, b"ab");
        assert_eq!(stream(&drain(&mut r)), "abc[fin]");
        seg(&mut r, 3, 4, b"late");
        assert_eq!(stream(&drain(&mut r)), "");

        let mut r = Reassembler::new(ReassemblyLimits::default());
        syn(&mut r, 0);
        seg(&mut r, 1, 3, b"cd");
        r.segment(&pkt(2, 5, (false, false, true), b""));
        assert_eq!(stream(&drain(&mut r)), "[gap 0+2]cd[rst]");
    }

    #[test]
    fn conflicting_retransmission_keeps_first_bytes() {
        let mut r = Reassembler::new(ReassemblyLimits::default());
        syn(&mut r, 0);
        seg(&mut r, 1, 5, b"XY");
        seg(&mut r, 2, 5, b"ZZ");
        seg(&mut r, 3, 1, b"abcd");
        assert_eq!(stream(&drain(&mut r)), "abcdXY");
        assert_eq!(r.stats().conflicts, 1);
    }
}
