//! Counters readable without locks.
//!
//! Every counter is a `Relaxed` atomic with a single writer (the publisher
//! for [`StreamStats`], the subscriber for [`SubscriberStats`]; the stream's
//! `dropped` and `subscribers` are shared by its subscribers). Readers on any
//! thread load them at any time; a [`snapshot`](StreamStats::snapshot) is a
//! set of loads, not an atomic picture, which is what counters need.
//!
//! **Bitrate** is measured on media time, not wall-clock time (the kernel
//! reads no clock): payload bytes of the frames whose decode timestamps fall
//! in a window of at least one second, divided by the window's length, in
//! bits per second. It is updated when a window closes (the first frame at or
//! past one second after the window start), so it lags by up to a second.
//! A timestamp jump backwards or of more than 10 s (discontinuity, publisher
//! restart) restarts the window without updating the value.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::frame::Frame;

/// Per-stream counters, updated by the publisher (and by subscribers for
/// `subscribers` and `dropped`).
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Frames published.
    pub frames: AtomicU64,
    /// Payload bytes published.
    pub bytes: AtomicU64,
    /// Keyframes published.
    pub keyframes: AtomicU64,
    /// Subscribers currently attached.
    pub subscribers: AtomicU64,
    /// Frames skipped by this stream's subscribers because they fell behind
    /// the ring (sum over subscribers, past and present).
    pub dropped: AtomicU64,
    /// Published bitrate in bits per second (see the module documentation).
    pub bitrate_bps: AtomicU64,
    /// Decode-time distance between the last two video keyframes, in
    /// milliseconds (0 until two were published).
    pub keyframe_interval_ms: AtomicU64,
}

/// Adds to a counter that has one writer: a load and a store, no locked RMW.
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl StreamStats {
    /// Counts one published frame (publisher only: single writer).
    pub(crate) fn add_frame(&self, len: usize, key: bool) {
        bump(&self.frames, 1);
        bump(&self.bytes, len as u64);
        if key {
            bump(&self.keyframes, 1);
        }
    }

    /// A copy of the counters, for JSON or Prometheus export.
    pub fn snapshot(&self) -> StreamStatsSnapshot {
        StreamStatsSnapshot {
            frames: self.frames.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            keyframes: self.keyframes.load(Ordering::Relaxed),
            subscribers: self.subscribers.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            bitrate_bps: self.bitrate_bps.load(Ordering::Relaxed),
            keyframe_interval_ms: self.keyframe_interval_ms.load(Ordering::Relaxed),
        }
    }
}

/// A copy of a stream's counters (see [`StreamStats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamStatsSnapshot {
    /// Frames published.
    pub frames: u64,
    /// Payload bytes published.
    pub bytes: u64,
    /// Keyframes published.
    pub keyframes: u64,
    /// Subscribers attached.
    pub subscribers: u64,
    /// Frames skipped by lagging subscribers.
    pub dropped: u64,
    /// Published bitrate, bits per second of media time.
    pub bitrate_bps: u64,
    /// Media-time distance between the last two video keyframes, in ms.
    pub keyframe_interval_ms: u64,
}

/// Per-subscriber counters, updated by the subscriber.
#[derive(Debug, Default)]
pub struct SubscriberStats {
    /// Frames delivered (configs re-sent on start or after a skip included).
    pub frames: AtomicU64,
    /// Payload bytes delivered.
    pub bytes: AtomicU64,
    /// Frames skipped because the subscriber fell behind the ring, and frames
    /// passed over after that while waiting for a keyframe. (The frames a new
    /// subscriber that keeps up passes over while waiting for its very first
    /// keyframe are not counted: it could not have used them.)
    pub dropped: AtomicU64,
    /// Delivered bitrate in bits per second (see the module documentation).
    pub bitrate_bps: AtomicU64,
    /// Sequence number of the next frame this subscriber reads from the
    /// ring (for its lag: the stream's published frames minus this).
    pub position: AtomicU64,
}

impl SubscriberStats {
    /// A copy of the counters, for JSON or Prometheus export.
    pub fn snapshot(&self) -> SubscriberStatsSnapshot {
        SubscriberStatsSnapshot {
            frames: self.frames.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            bitrate_bps: self.bitrate_bps.load(Ordering::Relaxed),
            position: self.position.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn set_position(&self, seq: u64) {
        self.position.store(seq, Ordering::Relaxed);
    }

    pub(crate) fn add_frame(&self, len: usize) {
        bump(&self.frames, 1);
        bump(&self.bytes, len as u64);
    }

    pub(crate) fn add_dropped(&self, n: u64) {
        bump(&self.dropped, n);
    }
}

/// A copy of a subscriber's counters (see [`SubscriberStats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriberStatsSnapshot {
    /// Frames delivered.
    pub frames: u64,
    /// Payload bytes delivered.
    pub bytes: u64,
    /// Frames skipped after falling behind.
    pub dropped: u64,
    /// Delivered bitrate, bits per second of media time.
    pub bitrate_bps: u64,
    /// Ring sequence number of the next frame to read.
    pub position: u64,
}

/// Window length of the bitrate meter, in milliseconds of media time.
const WINDOW_MS: i64 = 1000;
/// A forward jump larger than this restarts the window (discontinuity).
const MAX_JUMP_MS: i64 = 10_000;

/// The single writer's side of a bitrate counter (see the module docs).
#[derive(Debug, Default, Clone)]
pub(crate) struct BitrateMeter {
    start_ms: Option<i64>,
    bytes: u64,
}

impl BitrateMeter {
    /// Accounts `frame`; stores the bitrate into `out` when a window closes.
    pub(crate) fn add(&mut self, frame: &Frame, out: &AtomicU64) {
        let now = frame.dts_in(1000);
        let len = frame.payload.len() as u64;
        match self.start_ms {
            Some(start) if now >= start && now - start <= MAX_JUMP_MS => {
                let span = now - start;
                if span >= WINDOW_MS {
                    // Bytes of [start, now) over the span, in bit/s.
                    let bps = self.bytes.saturating_mul(8000) / span.unsigned_abs();
                    out.store(bps, Ordering::Relaxed);
                    self.start_ms = Some(now);
                    self.bytes = len;
                } else {
                    self.bytes = self.bytes.saturating_add(len);
                }
            }
            _ => {
                self.start_ms = Some(now);
                self.bytes = len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::frame::{Codec, FrameFlags};
    use bytes::Bytes;

    fn frame(dts: i64, len: usize) -> Frame {
        Frame {
            codec: Codec::H264,
            flags: FrameFlags::NONE,
            pts: dts,
            dts,
            timebase: 1000,
            payload: Bytes::from(vec![0u8; len]),
        }
    }

    #[test]
    fn bitrate_over_one_second_window() {
        let out = AtomicU64::new(0);
        let mut m = BitrateMeter::default();
        // 25 fps, 5000 bytes per frame = 1 Mbit/s.
        for i in 0..=25 {
            m.add(&frame(i * 40, 5000), &out);
        }
        assert_eq!(out.load(Ordering::Relaxed), 1_000_000);
        // A jump back restarts the window, keeping the last value.
        m.add(&frame(0, 100), &out);
        assert_eq!(out.load(Ordering::Relaxed), 1_000_000);
    }
}
