//! The per-track plumbing shared by the fMP4 outputs (the HLS muxer's
//! epochs, the recorder's files): input timestamps mapped onto an output
//! timeline, discontinuity detection, and one [`Fragmenter`] per track
//! (ISO/IEC 14496-12 §8.8: one `moof`+`mdat` per track and fragment, with
//! `sequence_number` counting up across the tracks, §8.8.5).
//!
//! Invariants:
//! - every output time of a track is converted absolutely from the input
//!   time (`origin` of the output ↦ `base_ns`), so there is no drift;
//! - a frame flagged `DISCONTINUITY`, a decode time going backwards or
//!   jumping ahead more than [`MAX_GAP_NS`] is reported, never pushed;
//! - a fragment written with `flush` gives each track's newest sample the
//!   track's last sample delta (or 1/50 s when none is known).

use bytes::{Bytes, BytesMut};

use super::fmp4::{Fmp4Error, Fragmenter, TrackInfo};
use super::start_gate::StartGate;
use crate::frame::{rescale, Frame, FrameFlags, MediaKind};

/// `track_ID` of the video track (ISO/IEC 14496-12 §8.3.2).
pub(crate) const VIDEO_TRACK_ID: u32 = 1;
/// `track_ID` of the audio track.
pub(crate) const AUDIO_TRACK_ID: u32 = 2;
/// A forward decode-time jump larger than this (ns) is a discontinuity.
pub(crate) const MAX_GAP_NS: i64 = 10_000_000_000;
/// Nanoseconds per second.
const NS: u32 = 1_000_000_000;

/// Where an input frame falls on a track's output timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timing {
    /// Decode and presentation time in the track's timescale.
    Media {
        /// Output decode time.
        dts: i64,
        /// Output presentation time.
        pts: i64,
    },
    /// A `DISCONTINUITY` flag or a timestamp jump: the output restarts.
    Discontinuity,
    /// Before the output's time 0 (dropped).
    BeforeStart,
}

/// What an output does with a media frame (see [`Fmp4Tracks::admit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Push it to its track at these output times.
    Media {
        /// The frame is of the primary kind (it paces cuts).
        primary: bool,
        /// Output decode time (track timescale).
        dts: i64,
        /// Output presentation time (track timescale).
        pts: i64,
    },
    /// Drop it, for this reason.
    Drop(&'static str),
    /// The timeline broke ([`Timing::Discontinuity`]): restart the output.
    Discontinuity,
}

/// A started output: its tracks, init segment, time origin and first
/// frames (see [`Fmp4Tracks::open`]).
#[derive(Debug)]
pub(crate) struct Opened {
    /// The tracks of the current configs.
    pub tracks: Fmp4Tracks,
    /// Their init segment (`ftyp` + `moov`, ISO/IEC 14496-12 §8.2).
    pub init: Bytes,
    /// Decode time (ticks, timebase) of the first frame: the output's origin.
    pub origin: (i64, u32),
    /// The frames to feed, in order (`frames[0]` is at the origin).
    pub frames: Vec<Frame>,
}

/// One fMP4 track: its fragmenter and the last decode time / delta.
#[derive(Debug)]
pub(crate) struct Fmp4Track {
    frag: Fragmenter,
    last_dts: Option<i64>,
    last_delta: i64,
}

impl Fmp4Track {
    /// An empty track described by `info`.
    pub(crate) fn new(info: TrackInfo) -> Self {
        Fmp4Track {
            frag: Fragmenter::new(info),
            last_dts: None,
            last_delta: 0,
        }
    }

    /// The track's description (codec, timescale, …).
    pub(crate) fn info(&self) -> &TrackInfo {
        self.frag.track()
    }

    /// The track's timescale (ticks per second of its output times).
    pub(crate) fn timescale(&self) -> u32 {
        self.frag.track().timescale
    }

    /// Payload bytes waiting in the fragmenter.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.frag.pending_bytes()
    }

    /// Decode time of the newest sample pushed (output ticks).
    pub(crate) fn last_dts(&self) -> Option<i64> {
        self.last_dts
    }

    /// Decode-time delta between the two newest samples (0 with fewer).
    pub(crate) fn last_delta(&self) -> i64 {
        self.last_delta
    }

    /// Maps `frame`'s times onto the output timeline on which input time
    /// `origin` (ticks, timebase) is `base_ns`, and checks it continues
    /// the track.
    pub(crate) fn timing(&self, frame: &Frame, origin: (i64, u32), base_ns: i64) -> Timing {
        let scale = self.timescale();
        let map = |t: i64| {
            rescale(t, frame.timebase, scale)
                .saturating_sub(rescale(origin.0, origin.1, scale))
                .saturating_add(rescale(base_ns, NS, scale))
        };
        let (dts, pts) = (map(frame.dts), map(frame.pts));
        let max_gap = rescale(MAX_GAP_NS, NS, scale);
        let jump = self
            .last_dts
            .is_some_and(|l| dts < l || dts.saturating_sub(l) > max_gap);
        if frame.flags.contains(FrameFlags::DISCONTINUITY) || jump {
            Timing::Discontinuity
        } else if dts < 0 {
            Timing::BeforeStart
        } else {
            Timing::Media { dts, pts }
        }
    }

    /// Adds `frame` at output times `dts` / `pts` (from
    /// [`timing`](Self::timing)); returns the frame as written (output
    /// times and timescale, flags reduced to `KEYFRAME`).
    pub(crate) fn push(&mut self, frame: &Frame, dts: i64, pts: i64) -> Result<Frame, Fmp4Error> {
        let out = Frame {
            codec: frame.codec,
            flags: if frame.is_keyframe() {
                FrameFlags::KEYFRAME
            } else {
                FrameFlags::NONE
            },
            pts,
            dts,
            timebase: self.timescale(),
            payload: frame.payload.clone(),
        };
        self.frag.push(&out)?;
        if let Some(l) = self.last_dts {
            self.last_delta = dts.saturating_sub(l);
        }
        self.last_dts = Some(dts);
        Ok(out)
    }

    /// Appends a fragment of the samples with a known duration (`flush`:
    /// all of them, the newest one lasting the last delta) to `out`;
    /// `false` when there was none.
    fn fragment_into(&mut self, out: &mut BytesMut, sequence: u32, flush: bool) -> bool {
        let default = u32::try_from(self.last_delta)
            .ok()
            .filter(|d| *d > 0)
            .unwrap_or(self.timescale() / 50);
        self.frag
            .fragment_into(out, sequence, flush.then_some(default))
    }
}

/// The video and audio tracks of one fMP4 output and which of them paces
/// it (video when there is video).
#[derive(Debug)]
pub(crate) struct Fmp4Tracks {
    video: Option<Fmp4Track>,
    audio: Option<Fmp4Track>,
    primary: MediaKind,
}

impl Fmp4Tracks {
    /// Opens an output on the frames a [`StartGate`] released
    /// (`frames[0]` is its time origin), with the gate's configs as tracks
    /// [`VIDEO_TRACK_ID`] / [`AUDIO_TRACK_ID`]. `None` (the frames counted
    /// in `dropped`, the reason logged) without frames or when no init
    /// segment can be built.
    pub(crate) fn open(
        gate: &StartGate,
        frames: Vec<Frame>,
        dropped: &mut u64,
        who: &'static str,
    ) -> Option<Opened> {
        let origin = frames.first().map(|f| (f.dts, f.timebase))?;
        match gate.tracks(VIDEO_TRACK_ID, AUDIO_TRACK_ID) {
            Ok(t) => Some(Opened {
                tracks: Fmp4Tracks::new(t.video, t.audio, t.primary),
                init: t.init,
                origin,
                frames,
            }),
            Err(e) => {
                tracing::warn!(who, error = %e, "cannot build the init segment");
                *dropped += frames.len() as u64;
                None
            }
        }
    }

    /// Tracks for the given descriptions.
    pub(crate) fn new(
        video: Option<TrackInfo>,
        audio: Option<TrackInfo>,
        primary: MediaKind,
    ) -> Self {
        Fmp4Tracks {
            video: video.map(Fmp4Track::new),
            audio: audio.map(Fmp4Track::new),
            primary,
        }
    }

    /// The track of `kind`, if the output has one.
    pub(crate) fn get(&self, kind: MediaKind) -> Option<&Fmp4Track> {
        match kind {
            MediaKind::Video => self.video.as_ref(),
            MediaKind::Audio => self.audio.as_ref(),
        }
    }

    /// The track of `kind`, if the output has one.
    pub(crate) fn get_mut(&mut self, kind: MediaKind) -> Option<&mut Fmp4Track> {
        match kind {
            MediaKind::Video => self.video.as_mut(),
            MediaKind::Audio => self.audio.as_mut(),
        }
    }

    /// Where `frame` (a media frame) goes on the output timeline on which
    /// input time `origin` is `base_ns`: its track must exist and have its
    /// codec, its times must continue the track ([`Fmp4Track::timing`]).
    pub(crate) fn admit(&self, frame: &Frame, origin: (i64, u32), base_ns: i64) -> Admit {
        let kind = frame.kind();
        let Some(track) = self.get(kind) else {
            return Admit::Drop("no track of this kind");
        };
        if track.info().codec != frame.codec {
            return Admit::Drop("codec differs from the config");
        }
        match track.timing(frame, origin, base_ns) {
            Timing::Media { dts, pts } => Admit::Media {
                primary: kind == self.primary,
                dts,
                pts,
            },
            Timing::Discontinuity => Admit::Discontinuity,
            Timing::BeforeStart => Admit::Drop("before the start"),
        }
    }

    /// The primary track.
    pub(crate) fn primary(&self) -> Option<&Fmp4Track> {
        self.get(self.primary)
    }

    /// Whether there is a video / an audio track.
    pub(crate) fn kinds(&self) -> (bool, bool) {
        (self.video.is_some(), self.audio.is_some())
    }

    /// Video, then audio.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Fmp4Track> {
        [self.video.as_ref(), self.audio.as_ref()]
            .into_iter()
            .flatten()
    }

    /// Payload bytes waiting in the fragmenters.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.iter().map(Fmp4Track::pending_bytes).sum()
    }

    /// End of the output timeline so far (ns): the latest track end.
    pub(crate) fn end_ns(&self) -> Option<i64> {
        self.iter()
            .filter_map(|t| {
                let end = t.last_dts?.saturating_add(t.last_delta);
                Some(rescale(end, t.timescale(), NS))
            })
            .max()
    }

    /// Appends one fragment per track that has samples ready (video, then
    /// audio; `flush`: every sample) to `out`; each fragment takes the next
    /// `sequence` number (ISO/IEC 14496-12 §8.8.5).
    pub(crate) fn fragment_into(&mut self, out: &mut BytesMut, sequence: &mut u32, flush: bool) {
        for t in [self.video.as_mut(), self.audio.as_mut()]
            .into_iter()
            .flatten()
        {
            let seq = sequence.wrapping_add(1);
            if t.fragment_into(out, seq, flush) {
                *sequence = seq;
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;
    use crate::frame::Codec;
    use bytes::Bytes;

    fn aac() -> TrackInfo {
        let config = Frame {
            codec: Codec::Aac,
            flags: FrameFlags::CONFIG,
            pts: 0,
            dts: 0,
            timebase: 1000,
            payload: Bytes::from_static(&[0x11, 0x90]),
        };
        TrackInfo::from_config(2, &config).unwrap()
    }

    fn frame(ms: i64, flags: FrameFlags) -> Frame {
        Frame {
            codec: Codec::Aac,
            flags,
            pts: ms,
            dts: ms,
            timebase: 1000,
            payload: Bytes::from_static(&[1, 2, 3, 4]),
        }
    }

    #[test]
    fn maps_absolutely_and_detects_jumps() {
        let mut t = Fmp4Track::new(aac());
        let scale = i64::from(t.timescale());
        // Input 1000 ms is time 0 + 2 s of base.
        let origin = (1000, 1000);
        let base_ns = 2_000_000_000;
        let f = frame(1500, FrameFlags::NONE);
        let Timing::Media { dts, pts } = t.timing(&f, origin, base_ns) else {
            panic!("not media");
        };
        assert_eq!(dts, 5 * scale / 2);
        assert_eq!(pts, dts);
        let out = t.push(&f, dts, pts).unwrap();
        assert_eq!(out.timebase, t.timescale());
        assert_eq!(t.last_dts(), Some(dts));
        let next = frame(1521, FrameFlags::NONE);
        let Timing::Media { dts: d2, pts: p2 } = t.timing(&next, origin, base_ns) else {
            panic!("not media");
        };
        t.push(&next, d2, p2).unwrap();
        assert_eq!(t.last_delta(), d2 - dts);
        // Backwards, far ahead, flagged: discontinuities; before 0: dropped.
        assert_eq!(
            t.timing(&frame(1400, FrameFlags::NONE), origin, base_ns),
            Timing::Discontinuity
        );
        assert_eq!(
            t.timing(&frame(20_000, FrameFlags::NONE), origin, base_ns),
            Timing::Discontinuity
        );
        assert_eq!(
            t.timing(&frame(1530, FrameFlags::DISCONTINUITY), origin, base_ns),
            Timing::Discontinuity
        );
        let fresh = Fmp4Track::new(aac());
        assert_eq!(
            fresh.timing(&frame(0, FrameFlags::NONE), origin, 0),
            Timing::BeforeStart
        );
    }

    #[test]
    fn fragments_count_sequence_numbers_and_flush() {
        let mut tracks = Fmp4Tracks::new(None, Some(aac()), MediaKind::Audio);
        assert_eq!(tracks.kinds(), (false, true));
        let origin = (0, 1000);
        for ms in [0, 21, 42] {
            let f = frame(ms, FrameFlags::NONE);
            let t = tracks.get_mut(MediaKind::Audio).unwrap();
            let Timing::Media { dts, pts } = t.timing(&f, origin, 0) else {
                panic!("not media");
            };
            t.push(&f, dts, pts).unwrap();
        }
        assert_eq!(tracks.pending_bytes(), 12);
        let mut seq = 0;
        let mut out = BytesMut::new();
        // Two samples have a known duration; the newest waits.
        tracks.fragment_into(&mut out, &mut seq, false);
        assert_eq!(seq, 1);
        assert!(!out.is_empty());
        assert_eq!(tracks.pending_bytes(), 4);
        let before = out.len();
        tracks.fragment_into(&mut out, &mut seq, false);
        assert_eq!((seq, out.len()), (1, before), "nothing ready: no fragment");
        tracks.fragment_into(&mut out, &mut seq, true);
        assert_eq!(seq, 2);
        assert_eq!(tracks.pending_bytes(), 0);
        // 42 ms + the last delta (21 ms), in ns.
        assert_eq!(tracks.end_ns(), Some(63_000_000));
        assert!(tracks.primary().is_some() && tracks.get(MediaKind::Video).is_none());
    }
}
