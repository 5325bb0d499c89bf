//! The start gate shared by the HLS muxer and the fMP4 recorder: frames are
//! held until a stream can start (its first video keyframe and the configs
//! of its tracks are known, or a wait has passed), then released in the
//! order the output is built from.
//!
//! Invariants:
//! - the gate keeps the current config frame of each kind: only configs
//!   fMP4 can describe (not AV1) are kept, a repeated identical one is no
//!   change;
//! - only frames whose kind has a config of the same codec are held; their
//!   flags are reduced to `KEYFRAME` (a discontinuity is handled by the
//!   start itself, replaying must not trigger another one);
//! - the first held video frame is always a keyframe: a video frame is not
//!   held before one, and bounding never leaves a delta frame first;
//! - at most [`StartLimits::max_frames`] frames and
//!   [`StartLimits::max_bytes`] payload bytes are held: the oldest are
//!   dropped first;
//! - with a video config and no video held yet, only the last
//!   [`StartLimits::wait_ns`] of audio is kept;
//! - every frame that is dropped is counted in the caller's counter (the
//!   rejected ones are reported as [`StartStep::Rejected`] for the caller
//!   to count with its reason);
//! - the start is decided, with a video config, once a video keyframe is
//!   held and the audio config is known, or [`StartLimits::wait_ns`] has
//!   passed since the keyframe, or a restart had no audio; with only an
//!   audio config, once `wait_ns` of audio is held or a restart had no
//!   video; the caller then builds its output from [`StartStep::Start`];
//! - a released start begins with the video keyframe (it sets the output's
//!   time 0) when there is video, followed by the other frames in arrival
//!   order; audio older than the keyframe is dropped (see [`AudioTrim`]).

use std::collections::VecDeque;

use bytes::Bytes;

use super::fmp4::{init_segment, Fmp4Error, TrackInfo};
use super::fmp4_track::{Fmp4Tracks, Opened};
use crate::frame::{rescale, Codec, Frame, FrameFlags, MediaKind};

/// Nanoseconds per second.
const NS: u32 = 1_000_000_000;

/// Which audio frames older (decode time) than the starting keyframe are
/// dropped when the start is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AudioTrim {
    /// Only those that arrived before the keyframe.
    ArrivedBefore,
    /// All of them, also those that arrived after the keyframe.
    All,
}

/// What differs between users of a [`StartGate`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct StartLimits {
    /// Most frames held.
    pub max_frames: usize,
    /// Most payload bytes held.
    pub max_bytes: usize,
    /// How long (media time, ns) the start waits for a second track.
    pub wait_ns: i64,
    /// Audio dropped at the start.
    pub trim: AudioTrim,
}

/// The result of [`StartGate::set_config`].
#[derive(Debug)]
pub(crate) enum ConfigUpdate {
    /// AV1 has no fMP4 sample entry here: the track is ignored.
    Unsupported,
    /// The config frame cannot be described (ignored).
    Unusable(Fmp4Error),
    /// The same config as before.
    Unchanged,
    /// A new config: a running output needs a new init section.
    Changed,
}

/// The tracks a start opens (see [`StartGate::tracks`]).
#[derive(Debug)]
pub(crate) struct StartTracks {
    /// The video track, if configured.
    pub video: Option<TrackInfo>,
    /// The audio track, if configured.
    pub audio: Option<TrackInfo>,
    /// The init segment describing both.
    pub init: Bytes,
    /// The track that drives timing: video if there is one, else audio.
    pub primary: MediaKind,
}

/// Why a frame was not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// No config of the frame's kind and codec.
    NoConfig,
    /// A video frame before the first keyframe.
    BeforeKeyframe,
}

/// The result of [`StartGate::push`].
#[derive(Debug)]
pub(crate) enum StartStep {
    /// The frame is dropped (not yet counted).
    Rejected(Rejected),
    /// Still waiting.
    Held,
    /// Start now with these frames (`frames[0]` is the first of the output).
    Start(Vec<Frame>),
}

/// Frames waiting for the start (see the module documentation).
#[derive(Debug)]
pub(crate) struct StartGate {
    limits: StartLimits,
    video_cfg: Option<Frame>,
    audio_cfg: Option<Frame>,
    buf: VecDeque<Frame>,
    bytes: usize,
}

impl StartGate {
    /// An empty gate.
    pub(crate) fn new(limits: StartLimits) -> Self {
        StartGate {
            limits,
            video_cfg: None,
            audio_cfg: None,
            buf: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Keeps `frame` (a config frame) as the config of its kind.
    pub(crate) fn set_config(&mut self, frame: &Frame) -> ConfigUpdate {
        if frame.codec == Codec::Av1 {
            return ConfigUpdate::Unsupported;
        }
        if let Err(e) = TrackInfo::from_config(1, frame) {
            return ConfigUpdate::Unusable(e);
        }
        let slot = match frame.kind() {
            MediaKind::Video => &mut self.video_cfg,
            MediaKind::Audio => &mut self.audio_cfg,
        };
        if slot
            .as_ref()
            .is_some_and(|c| c.codec == frame.codec && c.payload == frame.payload)
        {
            return ConfigUpdate::Unchanged;
        }
        *slot = Some(frame.clone());
        ConfigUpdate::Changed
    }

    /// The current config frames: video first, then audio.
    pub(crate) fn configs(&self) -> impl Iterator<Item = &Frame> {
        self.video_cfg.iter().chain(self.audio_cfg.iter())
    }

    /// The tracks described by the current configs, numbered `video_id`
    /// and `audio_id`, with their init segment (`ftyp` + `moov`).
    pub(crate) fn tracks(&self, video_id: u32, audio_id: u32) -> Result<StartTracks, Fmp4Error> {
        let info = |id: u32, c: &Option<Frame>| {
            c.as_ref().and_then(|c| TrackInfo::from_config(id, c).ok())
        };
        let (video, audio) = (
            info(video_id, &self.video_cfg),
            info(audio_id, &self.audio_cfg),
        );
        let infos: Vec<TrackInfo> = video.iter().chain(audio.iter()).cloned().collect();
        let init = init_segment(&infos)?;
        let primary = if video.is_some() {
            MediaKind::Video
        } else {
            MediaKind::Audio
        };
        Ok(StartTracks {
            video,
            audio,
            init,
            primary,
        })
    }

    /// Payload bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Releases every held frame, as they arrived.
    pub(crate) fn take_all(&mut self) -> Vec<Frame> {
        self.bytes = 0;
        self.buf.drain(..).collect()
    }

    /// Offers a media frame; drops are added to `dropped` (except a
    /// [`StartStep::Rejected`] frame). `prev_tracks` is `(had video, had
    /// audio)` of the previous start after a restart: a restart need not
    /// wait for a track that was not there before.
    pub(crate) fn push(
        &mut self,
        mut frame: Frame,
        prev_tracks: Option<(bool, bool)>,
        dropped: &mut u64,
    ) -> StartStep {
        frame.flags = if frame.is_keyframe() {
            FrameFlags::KEYFRAME
        } else {
            FrameFlags::NONE
        };
        let known = match frame.kind() {
            MediaKind::Video => self.video_cfg.as_ref(),
            MediaKind::Audio => self.audio_cfg.as_ref(),
        }
        .is_some_and(|c| c.codec == frame.codec);
        if !known {
            return StartStep::Rejected(Rejected::NoConfig);
        }
        let has_video = self.buf.iter().any(|f| f.kind() == MediaKind::Video);
        if frame.kind() == MediaKind::Video && !has_video && !frame.is_keyframe() {
            return StartStep::Rejected(Rejected::BeforeKeyframe);
        }
        self.bytes += frame.payload.len();
        self.buf.push_back(frame);
        while self.buf.len() > self.limits.max_frames || self.bytes > self.limits.max_bytes {
            self.pop_front(dropped);
            // Keep the first buffered video frame a keyframe.
            while let Some(i) = self.buf.iter().position(|f| f.kind() == MediaKind::Video) {
                if self.buf.get(i).is_some_and(Frame::is_keyframe) {
                    break;
                }
                if let Some(f) = self.buf.remove(i) {
                    self.bytes -= f.payload.len();
                    *dropped += 1;
                }
            }
        }
        match self.try_start(prev_tracks, dropped) {
            Some(frames) => StartStep::Start(frames),
            None => StartStep::Held,
        }
    }

    /// [`push`](Self::push) for an fMP4 output (`who`: `"hls"`,
    /// `"record"`): a rejected frame is counted in `dropped` (and traced)
    /// too; when it is time, the output opened on the released frames
    /// ([`Fmp4Tracks::open`]).
    pub(crate) fn admit(
        &mut self,
        frame: Frame,
        prev_tracks: Option<(bool, bool)>,
        dropped: &mut u64,
        who: &'static str,
    ) -> Option<Opened> {
        match self.push(frame, prev_tracks, dropped) {
            StartStep::Rejected(why) => {
                *dropped += 1;
                tracing::trace!(who, ?why, "frame dropped before the start");
                None
            }
            StartStep::Held => None,
            StartStep::Start(frames) => Fmp4Tracks::open(self, frames, dropped, who),
        }
    }

    /// [`set_config`](Self::set_config) for an output (`who`), the
    /// ignored configs logged: whether a running output needs a new init
    /// section (a changed config).
    pub(crate) fn update_config(&mut self, frame: &Frame, who: &'static str) -> bool {
        match self.set_config(frame) {
            ConfigUpdate::Unsupported => {
                tracing::debug!(who, "AV1 is not supported in fMP4, track ignored");
                false
            }
            ConfigUpdate::Unusable(e) => {
                tracing::debug!(who, error = %e, "unusable config frame ignored");
                false
            }
            ConfigUpdate::Unchanged => false,
            ConfigUpdate::Changed => true,
        }
    }

    fn pop_front(&mut self, dropped: &mut u64) {
        if let Some(f) = self.buf.pop_front() {
            self.bytes -= f.payload.len();
            *dropped += 1;
        }
    }

    fn try_start(
        &mut self,
        prev_tracks: Option<(bool, bool)>,
        dropped: &mut u64,
    ) -> Option<Vec<Frame>> {
        let ns = |f: &Frame| rescale(f.dts, f.timebase, NS);
        let last = self.buf.back().map(ns)?;
        let wait = self.limits.wait_ns;
        let (had_video, had_audio) = prev_tracks.unwrap_or((false, false));
        let restarted = prev_tracks.is_some();
        if self.video_cfg.is_some() {
            let Some(kf) = self.buf.iter().position(|f| f.kind() == MediaKind::Video) else {
                // No video yet: keep only the last `wait` of audio.
                while self.buf.front().is_some_and(|f| last - ns(f) > wait) {
                    self.pop_front(dropped);
                }
                return None;
            };
            let kf_ns = self.buf.get(kf).map(ns)?;
            let waited = last - kf_ns >= wait;
            let ready = self.audio_cfg.is_some() || waited || (restarted && !had_audio);
            if !ready {
                return None;
            }
            let mut frames: Vec<Frame> = Vec::with_capacity(self.buf.len());
            let mut keyframe = None;
            for (i, f) in self.buf.drain(..).enumerate() {
                if i == kf {
                    keyframe = Some(f);
                    continue;
                }
                let trimmed = match self.limits.trim {
                    AudioTrim::ArrivedBefore => i < kf,
                    AudioTrim::All => true,
                };
                if trimmed && f.kind() == MediaKind::Audio && ns(&f) < kf_ns {
                    *dropped += 1;
                    continue;
                }
                frames.push(f);
            }
            self.bytes = 0;
            // The keyframe first: it sets the output's time 0.
            if let Some(k) = keyframe {
                frames.insert(0, k);
            }
            Some(frames)
        } else if self.audio_cfg.is_some() {
            let first = self.buf.front().map_or(last, ns);
            if last - first >= wait || (restarted && !had_video) {
                return Some(self.take_all());
            }
            None
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use crate::codec::{aac::AacConfig, h264};

    fn frame(codec: Codec, flags: FrameFlags, ms: i64, payload: Bytes) -> Frame {
        Frame {
            codec,
            flags,
            pts: ms,
            dts: ms,
            timebase: 1000,
            payload,
        }
    }

    fn gate(trim: AudioTrim, max_frames: usize) -> StartGate {
        let mut g = StartGate::new(StartLimits {
            max_frames,
            max_bytes: 1 << 20,
            wait_ns: 1_000_000_000,
            trim,
        });
        let avc = h264::AvcConfig::from_parameter_sets(
            vec![Bytes::from_static(h264::tests::SPS_640X360)],
            vec![Bytes::from_static(h264::tests::PPS_640X360)],
        )
        .unwrap()
        .to_bytes();
        let c = frame(Codec::H264, FrameFlags::CONFIG, 0, avc);
        assert!(matches!(g.set_config(&c), ConfigUpdate::Changed));
        assert!(matches!(g.set_config(&c), ConfigUpdate::Unchanged));
        g
    }

    fn aac_config() -> Frame {
        let asc = AacConfig::new(2, 48_000, 2).to_bytes();
        frame(Codec::Aac, FrameFlags::CONFIG, 0, asc)
    }

    fn video(key: bool, ms: i64) -> Frame {
        let flags = if key {
            FrameFlags::KEYFRAME
        } else {
            FrameFlags::NONE
        };
        frame(Codec::H264, flags, ms, Bytes::from_static(&[1, 2, 3]))
    }

    fn audio(ms: i64) -> Frame {
        frame(Codec::Aac, FrameFlags::NONE, ms, Bytes::from_static(&[4]))
    }

    #[test]
    fn admit_counts_rejections_and_opens_the_output() {
        let mut g = gate(AudioTrim::All, 16);
        assert!(g.update_config(&aac_config(), "test"));
        assert!(!g.update_config(&aac_config(), "test"));
        let av1 = frame(
            Codec::Av1,
            FrameFlags::CONFIG,
            0,
            Bytes::from_static(&[0x81]),
        );
        assert!(!g.update_config(&av1, "test"));
        let mut dropped = 0;
        assert!(g
            .admit(video(false, 0), None, &mut dropped, "test")
            .is_none());
        assert_eq!(dropped, 1, "a rejected frame is counted");
        // Both configs known: the keyframe starts the output at once.
        let opened = g
            .admit(video(true, 40), None, &mut dropped, "test")
            .unwrap();
        assert_eq!(opened.origin, (40, 1000));
        assert_eq!(opened.frames.len(), 1);
        assert_eq!(opened.tracks.kinds(), (true, true));
        assert_eq!(&opened.init[4..8], b"ftyp");
        assert_eq!(dropped, 1);
    }

    #[test]
    fn rejects_before_keyframe_and_without_config() {
        let mut g = gate(AudioTrim::All, 16);
        let mut dropped = 0;
        assert!(matches!(
            g.push(video(false, 0), None, &mut dropped),
            StartStep::Rejected(Rejected::BeforeKeyframe)
        ));
        assert!(matches!(
            g.push(audio(0), None, &mut dropped),
            StartStep::Rejected(Rejected::NoConfig)
        ));
        assert_eq!((dropped, g.bytes()), (0, 0));
    }

    #[test]
    fn bounding_keeps_a_keyframe_first() {
        let mut g = gate(AudioTrim::All, 3);
        let mut dropped = 0;
        for (key, ms) in [(true, 0), (false, 40), (false, 80), (true, 120)] {
            assert!(matches!(
                g.push(video(key, ms), None, &mut dropped),
                StartStep::Held
            ));
        }
        // The first keyframe went over the bound, its delta frames with it.
        assert_eq!(dropped, 3);
        assert_eq!(g.bytes(), 3);
        let left = g.take_all();
        assert_eq!(left.len(), 1);
        assert!(left[0].is_keyframe() && left[0].dts == 120);
    }

    #[test]
    fn audio_trim_differs_only_for_late_arrivals() {
        for (trim, kept) in [(AudioTrim::ArrivedBefore, 2), (AudioTrim::All, 1)] {
            let mut g = gate(trim, 16);
            let mut dropped = 0;
            assert!(matches!(g.set_config(&aac_config()), ConfigUpdate::Changed));
            assert!(matches!(
                g.push(audio(0), None, &mut dropped),
                StartStep::Held
            ));
            // Audio that arrived before the keyframe and is older: dropped.
            let StartStep::Start(f) = g.push(video(true, 100), None, &mut dropped) else {
                panic!("{trim:?}: no start");
            };
            assert_eq!((f.len(), dropped), (1, 1), "{trim:?}");
            // The keyframe waits for the audio config; then audio arrives
            // that is older than the keyframe: only `All` drops it.
            let mut g = gate(trim, 16);
            let mut dropped = 0;
            assert!(matches!(
                g.push(video(true, 100), None, &mut dropped),
                StartStep::Held
            ));
            assert!(matches!(g.set_config(&aac_config()), ConfigUpdate::Changed));
            let StartStep::Start(f) = g.push(audio(50), None, &mut dropped) else {
                panic!("{trim:?}: no start");
            };
            assert!(f[0].is_keyframe());
            assert_eq!((f.len() as u64, dropped), (kept, 2 - kept), "{trim:?}");
        }
    }
}
