//! One received track: sequence order, loss, depacketizing and timing.
//!
//! [`TrackReceiver`] turns the RTP packets of one track into engine
//! [`Frame`]s. [`Timeline`] puts the tracks of one publisher on one time
//! axis: a track's first frame is placed by the RTCP sender report of its
//! source when one came before it (NTP ↔ RTP mapping), else by its arrival
//! time; both are measured from the session's first packet, so audio and
//! video start aligned and stay on their own RTP clocks afterwards.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use bytes::Bytes;

use super::rtcp::{ntp_to_micros, SenderReport};
use super::{aac, h264, h265, opus, Result, RtpPacket, Unit};
use crate::frame::{rescale, Codec, Frame, FrameFlags};
use crate::time::{Instant, WrapExtender};

/// Packets held to put reordered packets back in sequence (per track).
pub const REORDER_WINDOW: usize = 64;

/// Largest reorder depth assumed when guessing decode times of video.
pub const MAX_REORDER_DEPTH: usize = 4;

/// What a track's codec needs from the SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackParams {
    /// H.264 with the parameter sets of `sprop-parameter-sets`, if any.
    H264 {
        /// The SPS.
        sps: Option<Bytes>,
        /// The PPS.
        pps: Option<Bytes>,
    },
    /// H.265 with `sprop-vps/sps/pps`, if any.
    H265 {
        /// The VPS.
        vps: Option<Bytes>,
        /// The SPS.
        sps: Option<Bytes>,
        /// The PPS.
        pps: Option<Bytes>,
    },
    /// AAC (`mpeg4-generic`) with its `AudioSpecificConfig` and AU header layout.
    Aac {
        /// The `config=` AudioSpecificConfig.
        config: Bytes,
        /// The AU header layout.
        layout: aac::AuHeaderLayout,
    },
    /// AAC in MP4A-LATM (RFC 6416, `cpresent=0`) with the
    /// `AudioSpecificConfig` taken from its `StreamMuxConfig`.
    AacLatm {
        /// The AudioSpecificConfig.
        config: Bytes,
    },
    /// Opus with its `OpusHead`.
    Opus {
        /// The identification header (built from the channel count).
        head: Bytes,
    },
}

impl TrackParams {
    /// The engine codec.
    pub fn codec(&self) -> Codec {
        match self {
            TrackParams::H264 { .. } => Codec::H264,
            TrackParams::H265 { .. } => Codec::H265,
            TrackParams::Aac { .. } | TrackParams::AacLatm { .. } => Codec::Aac,
            TrackParams::Opus { .. } => Codec::Opus,
        }
    }
}

#[derive(Debug)]
enum Depack {
    H264(h264::Depacketizer),
    H265(h265::Depacketizer),
    Aac(aac::Depacketizer),
    Latm,
    Opus,
}

/// Puts packets back in sequence order within [`REORDER_WINDOW`].
///
/// Invariant: at most `REORDER_WINDOW` packets are held; a gap that is not
/// filled once half the window is waiting behind it counts as loss.
#[derive(Debug)]
struct Reorder {
    expected: Option<u16>,
    slots: Vec<Option<RtpPacket>>,
    held: usize,
}

/// A packet in order, or a loss before the next one.
#[derive(Debug)]
enum Ordered {
    Packet(RtpPacket),
    Lost,
}

impl Reorder {
    fn new() -> Self {
        Reorder {
            expected: None,
            slots: (0..REORDER_WINDOW).map(|_| None).collect(),
            held: 0,
        }
    }

    fn push(&mut self, pkt: RtpPacket, out: &mut Vec<Ordered>) {
        let expected = *self.expected.get_or_insert(pkt.sequence);
        let diff = pkt.sequence.wrapping_sub(expected) as i16;
        if diff < 0 {
            return; // late or duplicate
        }
        let diff = diff as usize;
        if diff >= REORDER_WINDOW {
            // A jump: everything held is older; deliver it, then restart.
            self.drain_all(out);
            out.push(Ordered::Lost);
            self.expected = Some(pkt.sequence.wrapping_add(1));
            out.push(Ordered::Packet(pkt));
            return;
        }
        if let Some(slot) = self.slots.get_mut(diff) {
            if slot.is_none() {
                self.held += 1;
            }
            *slot = Some(pkt);
        }
        self.drain_ready(out);
        if self.held >= REORDER_WINDOW / 2 {
            // The gap at the head is not going to be filled.
            out.push(Ordered::Lost);
            while self.slots.first().is_some_and(Option::is_none) {
                self.advance();
            }
            self.drain_ready(out);
        }
    }

    fn advance(&mut self) -> Option<RtpPacket> {
        self.slots.rotate_left(1);
        self.expected = self.expected.map(|e| e.wrapping_add(1));
        let p = self.slots.last_mut().and_then(Option::take);
        // `rotate_left` moved the head slot to the end: take it from there.
        if p.is_some() {
            self.held -= 1;
        }
        p
    }

    fn drain_ready(&mut self, out: &mut Vec<Ordered>) {
        while self.slots.first().is_some_and(Option::is_some) {
            if let Some(p) = self.advance() {
                out.push(Ordered::Packet(p));
            }
        }
    }

    /// Delivers everything held, with one `Lost` before each packet that
    /// follows a gap (also a gap at the head, when `out` is still empty).
    fn drain_all(&mut self, out: &mut Vec<Ordered>) {
        let mut gap = false;
        while self.held > 0 {
            match self.advance() {
                Some(p) => {
                    if std::mem::take(&mut gap) {
                        out.push(Ordered::Lost);
                    }
                    out.push(Ordered::Packet(p));
                }
                None => gap = true,
            }
        }
    }
}

/// Guesses decode times of video from presentation times (RTP carries only
/// the latter): the decode time of the k-th unit is the smallest
/// presentation time not yet used once `depth` more units arrived, which is
/// exact for any stream whose reorder depth is at most `depth`.
#[derive(Debug)]
struct DtsGuess {
    depth: usize,
    heap: BinaryHeap<Reverse<i64>>,
    first: Option<i64>,
    last: Option<i64>,
    step: i64,
}

impl DtsGuess {
    fn new(depth: usize, clock_rate: u32) -> Self {
        DtsGuess {
            depth,
            heap: BinaryHeap::new(),
            first: None,
            last: None,
            step: i64::from(clock_rate / 100).max(1),
        }
    }

    fn dts(&mut self, pts: i64) -> i64 {
        let first = *self.first.get_or_insert(pts);
        self.heap.push(Reverse(pts));
        let popped = self.heap.len() > self.depth;
        let mut dts = if popped {
            self.heap.pop().map_or(pts, |Reverse(v)| v)
        } else {
            first - (self.depth + 1 - self.heap.len()) as i64 * self.step
        };
        let candidate = dts;
        if let Some(l) = self.last {
            dts = dts.max(l + 1);
        }
        if dts > pts && self.depth < MAX_REORDER_DEPTH {
            // Deeper reordering than assumed: keep one more unit back.
            self.depth += 1;
            if popped {
                self.heap.push(Reverse(candidate));
            }
        }
        self.last = Some(dts);
        dts
    }
}

/// The common time axis of one publishing session (see the module documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct Timeline {
    t0: Option<Instant>,
    /// NTP time (µs) at `t0`, from the first sender report.
    ntp0: Option<u64>,
}

impl Timeline {
    /// A timeline that starts with the first packet.
    pub fn new() -> Self {
        Self::default()
    }

    fn start(&mut self, now: Instant) -> Instant {
        *self.t0.get_or_insert(now)
    }

    fn sender_report(&mut self, now: Instant, ntp_us: u64) {
        let t0 = self.start(now);
        if self.ntp0.is_none() {
            let since = now.saturating_duration_since(t0).as_micros() as u64;
            self.ntp0 = Some(ntp_us.saturating_sub(since));
        }
    }
}

/// Receives one track (see the module documentation).
///
/// Invariants: holds at most [`REORDER_WINDOW`] packets and one access unit
/// in assembly; frames come out in decode order with strictly increasing
/// `dts` per track.
#[derive(Debug)]
pub struct TrackReceiver {
    codec: Codec,
    clock_rate: u32,
    depack: Depack,
    reorder: Reorder,
    ext: WrapExtender<32>,
    dts: Option<DtsGuess>,
    audio_config: Option<Bytes>,
    /// Extended RTP time → engine ticks: added to every timestamp.
    offset: Option<i64>,
    /// The last sender report: (NTP µs, RTP time).
    sr: Option<(u64, u32)>,
    ordered: Vec<Ordered>,
    units: Vec<Unit>,
    lost: u64,
    last_dts: Option<i64>,
}

impl TrackReceiver {
    /// A receiver for a track with these parameters and RTP clock rate.
    pub fn new(params: TrackParams, clock_rate: u32) -> Self {
        let clock_rate = clock_rate.max(1);
        let codec = params.codec();
        let (depack, audio_config, depth) = match params {
            TrackParams::H264 { sps, pps } => {
                // Baseline has no B-frames; others may reorder.
                let depth = match sps.as_ref().and_then(|s| s.get(1)) {
                    Some(66) => 0,
                    _ => 2,
                };
                (Depack::H264(h264::Depacketizer::new(sps, pps)), None, depth)
            }
            TrackParams::H265 { vps, sps, pps } => (
                Depack::H265(h265::Depacketizer::new(vps, sps, pps)),
                None,
                2,
            ),
            TrackParams::Aac { config, layout } => {
                (Depack::Aac(aac::Depacketizer::new(layout)), Some(config), 0)
            }
            TrackParams::AacLatm { config } => (Depack::Latm, Some(config), 0),
            TrackParams::Opus { head } => (Depack::Opus, Some(head), 0),
        };
        TrackReceiver {
            codec,
            clock_rate,
            depack,
            reorder: Reorder::new(),
            ext: WrapExtender::new(),
            dts: codec
                .kind()
                .eq(&crate::frame::MediaKind::Video)
                .then(|| DtsGuess::new(depth, clock_rate)),
            audio_config,
            offset: None,
            sr: None,
            ordered: Vec::new(),
            units: Vec::new(),
            lost: 0,
            last_dts: None,
        }
    }

    /// The codec of this track.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Gaps in the sequence seen so far.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// An RTCP sender report for this track's source.
    pub fn handle_sender_report(
        &mut self,
        now: Instant,
        timeline: &mut Timeline,
        sr: &SenderReport,
    ) {
        let ntp_us = ntp_to_micros(sr.ntp);
        timeline.sender_report(now, ntp_us);
        self.sr = Some((ntp_us, sr.rtp_time));
    }

    /// One RTP packet of this track, in arrival order; frames completed by
    /// it are appended to `out`. A payload error drops the damaged unit and
    /// is returned for the caller to count or log; the track goes on.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        timeline: &mut Timeline,
        pkt: RtpPacket,
        out: &mut Vec<Frame>,
    ) -> Result<()> {
        timeline.start(now);
        let mut ordered = std::mem::take(&mut self.ordered);
        self.reorder.push(pkt, &mut ordered);
        let mut result = Ok(());
        for o in ordered.drain(..) {
            let r = match o {
                Ordered::Lost => {
                    self.lost += 1;
                    match &mut self.depack {
                        Depack::H264(d) => d.lost(),
                        Depack::H265(d) => d.lost(),
                        Depack::Aac(d) => d.lost(),
                        Depack::Latm | Depack::Opus => {}
                    }
                    Ok(())
                }
                Ordered::Packet(p) => match &mut self.depack {
                    Depack::H264(d) => d.push(&p, &mut self.units),
                    Depack::H265(d) => d.push(&p, &mut self.units),
                    Depack::Aac(d) => d.push(&p, &mut self.units),
                    Depack::Latm => aac::depacketize_latm(&p, &mut self.units),
                    Depack::Opus => opus::depacketize(&p, &mut self.units),
                },
            };
            if r.is_err() && result.is_ok() {
                result = r;
            }
            self.frames(now, timeline, out);
        }
        self.ordered = ordered;
        result
    }

    fn frames(&mut self, now: Instant, timeline: &Timeline, out: &mut Vec<Frame>) {
        let mut units = std::mem::take(&mut self.units);
        for u in units.drain(..) {
            let ext = self.ext.extend(u64::from(u.timestamp));
            let offset = *self
                .offset
                .get_or_insert_with(|| first_offset(timeline, now, self.clock_rate, ext, self.sr));
            let mut pts = ext + offset;
            let mut dts = self.dts.as_mut().map_or(pts, |g| g.dts(pts));
            if let Some(l) = self.last_dts {
                if dts <= l {
                    // A peer's repeated or backward timestamps (audio has no
                    // decode-time guess to keep order): one tick on.
                    dts = l + 1;
                    pts = pts.max(dts);
                }
            }
            self.last_dts = Some(dts);
            let config = match &mut self.depack {
                Depack::H264(d) => d.take_config(),
                Depack::H265(d) => d.take_config(),
                _ => self.audio_config.take(),
            };
            if let Some(c) = config {
                out.push(Frame {
                    codec: self.codec,
                    flags: FrameFlags::CONFIG,
                    pts: dts,
                    dts,
                    timebase: self.clock_rate,
                    payload: c,
                });
            }
            out.push(Frame {
                codec: self.codec,
                flags: if u.keyframe {
                    FrameFlags::KEYFRAME
                } else {
                    FrameFlags::NONE
                },
                pts,
                dts,
                timebase: self.clock_rate,
                payload: u.data,
            });
        }
        self.units = units;
    }
}

/// The offset that places a track's first unit (extended RTP time `ext`)
/// on the session's time axis.
fn first_offset(
    timeline: &Timeline,
    now: Instant,
    rate: u32,
    ext: i64,
    sr: Option<(u64, u32)>,
) -> i64 {
    let t0 = timeline.t0.unwrap_or(now);
    match (sr, timeline.ntp0) {
        (Some((ntp_us, rtp)), Some(ntp0)) => {
            let since =
                i64::try_from(ntp_us).unwrap_or(i64::MAX) - i64::try_from(ntp0).unwrap_or(0);
            let sr_ext = WrapExtender::<32>::near(ext, u64::from(rtp));
            rescale(since, 1_000_000, rate) - sr_ext
        }
        _ => {
            let since = now.saturating_duration_since(t0).as_micros() as i64;
            rescale(since, 1_000_000, rate) - ext
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::rtp::h264::tests::pkt;

    #[test]
    fn reorder_restores_order_and_reports_loss() {
        let mut r = Reorder::new();
        let mut out = Vec::new();
        for s in [65534u16, 0, 65535, 1] {
            r.push(pkt(s, 0, false, &[1]), &mut out);
        }
        let seqs: Vec<_> = out
            .iter()
            .map(|o| match o {
                Ordered::Packet(p) => i32::from(p.sequence),
                Ordered::Lost => -1,
            })
            .collect();
        assert_eq!(seqs, vec![65534, 65535, 0, 1]);
        out.clear();
        // 2 never comes: after half the window, loss then the rest.
        for s in 3..(3 + REORDER_WINDOW as u16 / 2) {
            r.push(pkt(s, 0, false, &[1]), &mut out);
        }
        assert!(matches!(out[0], Ordered::Lost));
        assert_eq!(out.len(), 1 + REORDER_WINDOW / 2);
        // Duplicates and late packets are dropped.
        out.clear();
        r.push(pkt(3, 0, false, &[1]), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn dts_guess_handles_b_frames() {
        // Decode order I0 P4 B2 b1 b3 P8 B6 b5 b7 (pyramid, depth 2).
        let mut g = DtsGuess::new(2, 90_000);
        let pts = [0i64, 4, 2, 1, 3, 8, 6, 5, 7].map(|p| p * 3000);
        let dts: Vec<_> = pts.iter().map(|p| g.dts(*p)).collect();
        for (d, p) in dts.iter().zip(pts) {
            assert!(*d <= p, "{dts:?}");
        }
        assert!(dts.windows(2).all(|w| w[0] < w[1]), "{dts:?}");
        // Deeper than assumed: depth grows, order stays.
        let mut g = DtsGuess::new(0, 90_000);
        let pts = [0i64, 3, 1, 2, 6, 4, 5, 9, 7, 8].map(|p| p * 3000);
        let dts: Vec<_> = pts.iter().map(|p| g.dts(*p)).collect();
        assert!(dts.windows(2).all(|w| w[0] < w[1]), "{dts:?}");
        assert!(
            dts[4..].iter().zip(&pts[4..]).all(|(d, p)| d <= p),
            "{dts:?}"
        );
    }

    #[test]
    fn tracks_share_a_timeline() {
        let mut tl = Timeline::new();
        let mut v = TrackReceiver::new(
            TrackParams::H264 {
                sps: None,
                pps: None,
            },
            90_000,
        );
        let mut a = TrackReceiver::new(
            TrackParams::Aac {
                config: Bytes::from_static(&[0x11, 0x90]),
                layout: aac::AuHeaderLayout::default(),
            },
            48_000,
        );
        let mut out = Vec::new();
        let t = Instant::from_millis(1000);
        v.handle_packet(t, &mut tl, pkt(10, 123_456, true, &[0x65, 1]), &mut out)
            .unwrap();
        // Audio starts 100 ms later with an unrelated RTP origin.
        let t2 = Instant::from_millis(1100);
        a.handle_packet(t2, &mut tl, pkt(99, 7, true, &[0, 16, 0, 8, 9]), &mut out)
            .unwrap();
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out[0].pts, 0);
        assert!(out[1].is_config());
        assert_eq!(out[2].pts, 4800);
        // Timestamp wrap keeps counting.
        v.handle_packet(
            t2,
            &mut tl,
            pkt(11, 123_456 + 3000, true, &[0x41, 1]),
            &mut out,
        )
        .unwrap();
        assert_eq!(out[3].pts, 3000);
    }
}
