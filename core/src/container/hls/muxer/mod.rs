//! The segmenter: frames → fMP4 parts/segments and TS segments, and the
//! playlists describing them.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::playlist::round_secs;
use super::{HlsConfig, Variant};
use crate::codec::codec_string;
use crate::container::fmp4_track::{Admit, Fmp4Track, Fmp4Tracks, Opened};
use crate::container::start_gate::{AudioTrim, StartGate, StartLimits};
use crate::container::ts::TsMuxer;
use crate::frame::{rescale, Frame, MediaKind};

mod render;

/// Most frames held while waiting for the stream's first keyframe / configs.
pub const MAX_START_FRAMES: usize = 1024;
/// Most parts in one segment: a segment with more is cut (bounded playlist).
pub const MAX_PARTS_PER_SEGMENT: usize = 256;
/// How long (media time) the start waits for a second track's config.
const START_WAIT_NS: i64 = 1_000_000_000;
/// Microseconds per second.
const US: u32 = 1_000_000;
/// Advance Part Limit (draft-pantos-hls-rfc8216bis §6.2.5.2).
const ADVANCE_PART_LIMIT: usize = 3;

/// A partial segment (rfc8216bis §4.4.4.9): one fMP4 fragment per track.
#[derive(Debug, Clone)]
struct Part {
    bytes: Bytes,
    duration_us: u64,
    independent: bool,
}

/// A completed media segment of the window (both variants).
#[derive(Debug)]
struct Segment {
    msn: u64,
    duration_us: u64,
    /// Slices of `fmp4` (zero copy).
    parts: Vec<Part>,
    fmp4: Bytes,
    /// The same media as MPEG-TS, when the TS variant was on for all of it.
    ts: Option<Bytes>,
    discontinuity: bool,
    independent: bool,
    init_version: u32,
    /// Start on the output timeline (µs) and the epoch it belongs to: its
    /// `EXT-X-PROGRAM-DATE-TIME` is that epoch's wall offset + `start_us`.
    start_us: i64,
    epoch: u64,
}

/// The segment being built.
#[derive(Debug)]
struct Open {
    msn: u64,
    /// Start and current part start, primary-track ticks.
    start: i64,
    /// Presentation time of the segment's first primary sample (ticks).
    start_pts: i64,
    part_start: i64,
    /// Whether the current part's first primary sample is a sync sample.
    part_independent: Option<bool>,
    parts: Vec<Part>,
    /// TS bytes, when the TS variant is on for this segment.
    ts: Option<BytesMut>,
    /// Media payload bytes pushed into this segment (both tracks): the
    /// size bound, the same whether the TS variant is on or not.
    media_bytes: usize,
    discontinuity: bool,
    independent: bool,
    init_version: u32,
    /// See [`Segment::start_us`].
    start_us: i64,
    epoch: u64,
}

/// The mapping of an epoch's output timeline to UTC (rfc8216bis §4.4.4.6):
/// wall µs = output µs + `offset_us`.
#[derive(Debug, Clone, Copy)]
struct WallAnchor {
    /// The smallest (arrival wall time − output decode time) seen: the
    /// frame that came nearest to real time (frames of the GOP cache,
    /// pushed long after they arrived, give larger values).
    offset_us: i64,
    /// Fixed once the muxer caught up with the live edge or completed a
    /// segment of the epoch: a listed segment's date never changes.
    frozen: bool,
}

/// One run of the stream with fixed tracks and a continuous timeline.
#[derive(Debug)]
struct Epoch {
    tracks: Fmp4Tracks,
    /// The TS muxer, while the TS variant is on.
    ts: Option<TsMuxer>,
    /// Input time (ticks, timebase) that maps to `base_ns` on the output timeline.
    origin: (i64, u32),
    base_ns: i64,
    /// Number of this epoch (counts from 0 per muxer).
    id: u64,
    /// Wall-clock anchor, once a wall time was given.
    wall: Option<WallAnchor>,
    /// Newest output decode time pushed (µs).
    newest_us: i64,
}

impl Epoch {
    fn primary_timescale(&self) -> u32 {
        self.tracks.primary().map_or(90_000, |t| t.timescale())
    }

    /// End of the output timeline so far (ns).
    fn end_ns(&self) -> i64 {
        self.tracks.end_ns().unwrap_or(self.base_ns)
    }
}

/// Whether the classic TS variant is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TsState {
    /// Nobody asked for TS: no TS muxing, no TS bytes held.
    Off,
    /// Asked for: TS starts with the next segment that starts on a keyframe.
    Starting,
    /// Every new segment gets its TS bytes.
    On,
}

/// Media playlists rendered since the last change (filled on demand).
#[derive(Debug, Default)]
struct Rendered {
    ll: Option<String>,
    ll_skip: Option<String>,
    ts: Option<String>,
}

/// Codecs and picture size of the stream, for the multivariant playlist.
#[derive(Debug, Clone)]
struct StreamInfo {
    codecs: String,
    resolution: Option<(u32, u32)>,
    has_video: bool,
}

/// One stream's HLS state: builds LL-HLS (fMP4 parts and segments) from
/// the frames, and classic HLS (MPEG-TS segments) from the same frames
/// while it is on, with the same segment boundaries and media sequence
/// numbers: TS segment `N` holds the frames of fMP4 segment `N`.
///
/// The TS variant is lazy ([`enable_ts`](Self::enable_ts),
/// [`disable_ts`](Self::disable_ts)): off, it costs neither muxing time nor
/// memory. Enabled, it starts with the next segment that starts on a
/// keyframe (RFC 8216 §3.2 / §6.2.1 ask each TS segment to be decodable from
/// its start with its own PAT/PMT), so its first playlist lists whole
/// segments only and its `EXT-X-MEDIA-SEQUENCE` is the number the fMP4
/// variant uses for the same media (the segments of the window before it
/// have no TS form and are not listed).
///
/// Segmentation (RFC 8216 §3, §6.2.1; draft-pantos-hls-rfc8216bis §4.4.4.9):
/// - the stream starts on the first video keyframe (frames before it are
///   dropped); audio-only streams start on their first frame;
/// - a segment is cut at the first video keyframe once `segment_duration`
///   has elapsed in decode or presentation time (an open-GOP H.265 CRA
///   trails its presentation time by more than an IDR does; audio-only: at
///   the first frame past it), when it grows past
///   `max_segment_bytes`, or past [`MAX_PARTS_PER_SEGMENT`] parts;
/// - a part is cut at the first primary-track frame (video, else audio)
///   once `part_duration` has elapsed; a part is `INDEPENDENT=YES` when its
///   first video sample is a keyframe. A segment's fMP4 bytes are exactly its
///   parts concatenated (parts are zero-copy slices of the segment once it
///   completes);
/// - timestamps: the first frame's decode time is the origin; every output
///   time is converted absolutely from the input (no drift over hours).
///   A `DISCONTINUITY` flag, a decode time going backwards or jumping ahead
///   more than 10 s, or a changed codec config closes the segment and starts
///   a new one with `EXT-X-DISCONTINUITY` (and a new init section), with the
///   output timeline continuing where it was.
///
/// Memory is bounded by `window_segments` complete segments plus the open
/// one (≤ `max_segment_bytes` of media + one frame, per variant that is
/// on), see [`memory_bytes`](Self::memory_bytes) and
/// [`ts_bytes`](Self::ts_bytes).
#[derive(Debug)]
pub struct HlsMuxer {
    config: HlsConfig,
    start_gate: StartGate,
    epoch: Option<Epoch>,
    /// Track kinds of the previous epoch (a restart need not wait for configs).
    prev_tracks: Option<(bool, bool)>,
    open: Option<Open>,
    segments: VecDeque<Segment>,
    next_msn: u64,
    discontinuity_sequence: u64,
    pending_discontinuity: bool,
    timeline_end_ns: i64,
    init: Option<Bytes>,
    /// Earlier init sections still named by segments of the window.
    old_inits: VecDeque<(u32, Bytes)>,
    init_version: u32,
    fragment_sequence: u32,
    max_segment_secs: u64,
    max_part_us: u64,
    info: Option<StreamInfo>,
    finished: bool,
    dropped_frames: u64,
    ts_state: TsState,
    /// Epochs started so far (the next epoch's id).
    epochs: u64,
    /// Wall offsets of earlier epochs still named by segments of the window.
    old_anchors: VecDeque<(u64, i64)>,
    /// Arrival wall time (Unix µs) of the frame being pushed ([`push_at`](Self::push_at)).
    arrival_wall: Option<u64>,
    /// Memo of the playlist texts: many viewers ask for the same playlist
    /// between two parts. Cleared by every change (`&mut self`); filled by
    /// the `&self` readers, hence the (uncontended) lock.
    rendered: Mutex<Rendered>,
}

impl HlsMuxer {
    /// A muxer with `config` (durations of zero are raised to 1 ms, a
    /// window of zero segments to one).
    pub fn new(config: HlsConfig) -> Self {
        let mut config = config;
        config.segment_duration = config.segment_duration.max(Duration::from_millis(1));
        config.part_duration = config
            .part_duration
            .max(Duration::from_millis(1))
            .min(config.segment_duration);
        config.window_segments = config.window_segments.max(1);
        let start_gate = StartGate::new(StartLimits {
            max_frames: MAX_START_FRAMES,
            max_bytes: config.max_segment_bytes,
            wait_ns: START_WAIT_NS,
            trim: AudioTrim::All,
        });
        Self {
            config,
            start_gate,
            epoch: None,
            prev_tracks: None,
            open: None,
            segments: VecDeque::new(),
            next_msn: 0,
            discontinuity_sequence: 0,
            pending_discontinuity: false,
            timeline_end_ns: 0,
            init: None,
            old_inits: VecDeque::new(),
            init_version: 0,
            fragment_sequence: 0,
            max_segment_secs: 0,
            max_part_us: 0,
            info: None,
            finished: false,
            dropped_frames: 0,
            ts_state: TsState::Off,
            epochs: 0,
            old_anchors: VecDeque::new(),
            arrival_wall: None,
            rendered: Mutex::new(Rendered::default()),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &HlsConfig {
        &self.config
    }

    /// Media frames dropped so far (before the first keyframe, without a
    /// config, with unusable timestamps or codecs).
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    /// Someone asked for the classic TS variant (RFC 8216 §3.2 segments):
    /// if it is off, it starts with the next segment that starts on a
    /// keyframe (its first playlist is ready once that segment is
    /// complete, see [`is_ready`](Self::is_ready)); if it is on, nothing
    /// changes. The HTTP layer calls it on every TS request.
    pub fn enable_ts(&mut self) {
        if self.ts_state == TsState::Off {
            self.ts_state = TsState::Starting;
            tracing::debug!("hls: TS variant requested");
        }
    }

    /// Stops building the TS variant and frees its segments (nobody asked
    /// for it for a while); LL-HLS goes on unchanged. A later
    /// [`enable_ts`](Self::enable_ts) starts it afresh.
    pub fn disable_ts(&mut self) {
        if self.ts_state == TsState::Off {
            return;
        }
        self.ts_state = TsState::Off;
        self.free_ts();
        tracing::debug!("hls: TS variant stopped");
    }

    /// Drops every TS byte and the TS muxer.
    fn free_ts(&mut self) {
        if let Some(e) = self.epoch.as_mut() {
            e.ts = None;
        }
        if let Some(o) = self.open.as_mut() {
            o.ts = None;
        }
        for s in &mut self.segments {
            s.ts = None;
        }
        self.invalidate();
    }

    /// Whether the TS variant is wanted ([`enable_ts`](Self::enable_ts)
    /// called and no [`disable_ts`](Self::disable_ts) since), built or
    /// waiting for its first keyframe.
    pub fn ts_enabled(&self) -> bool {
        self.ts_state != TsState::Off
    }

    /// Adds a frame (config or media) in decode order, as the ingest
    /// produced it. Frames after [`finish`](Self::finish) are ignored.
    pub fn push(&mut self, frame: &Frame) {
        if self.finished {
            return;
        }
        if frame.is_config() {
            self.on_config(frame);
        } else {
            // Held by the start gate until an epoch starts.
            self.on_media(frame);
        }
    }

    /// [`push`](Self::push) of a frame that arrived at `unix_micros` (UTC,
    /// µs since 1970-01-01; the caller's wall clock, see
    /// [`WallClock`](super::WallClock)): the playlists then carry
    /// `EXT-X-PROGRAM-DATE-TIME` (rfc8216bis §4.4.4.6).
    ///
    /// Each epoch (a run without discontinuity) is anchored once: its
    /// output timeline maps to UTC with the smallest (arrival − decode
    /// time) of its frames, fixed when [`live_edge`](Self::live_edge) is
    /// called or its first segment completes. Segment dates are then the
    /// anchor + media time, so `PDT(N+1) − PDT(N) = EXTINF(N)` exactly
    /// (no arrival jitter); after a discontinuity the new epoch is anchored
    /// afresh.
    pub fn push_at(&mut self, frame: &Frame, unix_micros: u64) {
        self.arrival_wall = Some(unix_micros);
        self.push(frame);
        self.arrival_wall = None;
    }

    /// Every frame received so far was pushed, and it is `unix_micros`
    /// (UTC) now: the newest frame is live. Fixes the current epoch's
    /// wall-clock anchor (see [`push_at`](Self::push_at)) if it is not yet;
    /// frames taken from a cache long after they arrived do not shift it.
    pub fn live_edge(&mut self, unix_micros: u64) {
        let Some(epoch) = self.epoch.as_mut() else {
            return;
        };
        // Frozen already, or no frame admitted yet (nothing to anchor).
        if epoch.wall.is_some_and(|w| w.frozen) || epoch.newest_us == i64::MIN {
            return;
        }
        let now = i64::try_from(unix_micros).unwrap_or(i64::MAX);
        let edge = now.saturating_sub(epoch.newest_us);
        let offset_us = epoch.wall.map_or(edge, |w| w.offset_us.min(edge));
        epoch.wall = Some(WallAnchor {
            offset_us,
            frozen: true,
        });
        self.invalidate();
    }

    /// The stream ended: closes the open segment; playlists get
    /// `EXT-X-ENDLIST` (RFC 8216 §4.3.3.4) and blocking requests stop waiting.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.close_open();
        self.finished = true;
        self.invalidate();
    }

    /// Forgets the rendered playlists (the window changed).
    fn invalidate(&mut self) {
        *self
            .rendered
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = Rendered::default();
    }

    fn drop_frame(&mut self, why: &'static str) {
        self.dropped_frames += 1;
        tracing::trace!(why, "hls: frame dropped");
    }

    fn on_config(&mut self, frame: &Frame) {
        if self.start_gate.update_config(frame, "hls") && self.epoch.is_some() {
            // A new init section is needed (new sample entry): new epoch.
            self.restart();
        }
    }

    /// Closes the open segment and returns to the start state; the next
    /// segment carries `EXT-X-DISCONTINUITY`.
    fn restart(&mut self) {
        self.close_open();
        if let Some(e) = self.epoch.take() {
            self.timeline_end_ns = e.end_ns().max(self.timeline_end_ns);
            self.prev_tracks = Some(e.tracks.kinds());
            if let Some(w) = e.wall {
                self.old_anchors.push_back((e.id, w.offset_us));
            }
        }
        self.prune_anchors();
        self.pending_discontinuity = true;
    }

    /// Drops the wall anchors of epochs no segment of the window belongs to.
    fn prune_anchors(&mut self) {
        let segments = &self.segments;
        let open = self.open.as_ref().map(|o| o.epoch);
        self.old_anchors
            .retain(|(id, _)| open == Some(*id) || segments.iter().any(|s| s.epoch == *id));
    }

    /// The wall offset (µs) of epoch `id`, when it has one.
    fn wall_offset(&self, id: u64) -> Option<i64> {
        match self.epoch.as_ref().filter(|e| e.id == id) {
            Some(e) => e.wall.map(|w| w.offset_us),
            None => self
                .old_anchors
                .iter()
                .find(|(e, _)| *e == id)
                .map(|(_, o)| *o),
        }
    }

    /// `EXT-X-PROGRAM-DATE-TIME` (Unix µs) of a segment starting at
    /// output time `start_us` of epoch `id`.
    fn program_date_time(&self, id: u64, start_us: i64) -> Option<u64> {
        let offset = self.wall_offset(id)?;
        u64::try_from(offset.saturating_add(start_us)).ok()
    }

    fn buffer_start(&mut self, frame: Frame) {
        let prev = self.prev_tracks;
        let dropped = &mut self.dropped_frames;
        if let Some(opened) = self.start_gate.admit(frame, prev, dropped, "hls") {
            self.start(opened);
        }
    }

    /// Starts an epoch on the frames the start gate released, then feeds them.
    fn start(&mut self, opened: Opened) {
        let Opened {
            tracks,
            init,
            origin,
            frames,
        } = opened;
        let video = tracks.get(MediaKind::Video).map(Fmp4Track::info);
        let mut codecs = Vec::new();
        for c in self.start_gate.configs() {
            if let Ok(s) = codec_string(c.codec, &c.payload) {
                codecs.push(s);
            }
        }
        self.info = Some(StreamInfo {
            codecs: codecs.join(","),
            resolution: video.map(|v| (v.width, v.height)),
            has_video: video.is_some(),
        });
        if let Some(old) = self.init.take().filter(|i| *i != init) {
            self.old_inits.push_back((self.init_version, old));
            self.init_version += 1;
        }
        self.init = Some(init);
        self.prune_inits();
        self.epoch = Some(Epoch {
            tracks,
            ts: None,
            origin,
            base_ns: self.timeline_end_ns,
            id: self.epochs,
            wall: None,
            newest_us: i64::MIN,
        });
        self.epochs += 1;
        for f in frames {
            self.on_media(&f);
        }
    }

    fn on_media(&mut self, frame: &Frame) {
        let Some(epoch) = self.epoch.as_mut() else {
            return self.buffer_start(frame.clone());
        };
        let kind = frame.kind();
        let (primary, dts, pts) = match epoch.tracks.admit(frame, epoch.origin, epoch.base_ns) {
            Admit::Media { primary, dts, pts } => (primary, dts, pts),
            Admit::Drop(why) => return self.drop_frame(why),
            Admit::Discontinuity => {
                tracing::debug!(dts = frame.dts, "hls: timestamp discontinuity");
                self.restart();
                return self.buffer_start(frame.clone());
            }
        };
        let Some(track) = epoch.tracks.get_mut(kind) else {
            return;
        };
        let ts_scale = track.timescale();
        let dts_us = rescale(dts, ts_scale, US);
        epoch.newest_us = epoch.newest_us.max(dts_us);
        if let Some(wall) = self.arrival_wall {
            let offset = i64::try_from(wall)
                .unwrap_or(i64::MAX)
                .saturating_sub(dts_us);
            match epoch.wall.as_mut() {
                None => {
                    epoch.wall = Some(WallAnchor {
                        offset_us: offset,
                        frozen: false,
                    })
                }
                Some(w) if !w.frozen && offset < w.offset_us => w.offset_us = offset,
                Some(_) => {}
            }
        }
        let sync = frame.is_keyframe() || kind == MediaKind::Audio;
        // Cuts happen on primary frames: if those stop, the other track must
        // not grow the open segment without bound.
        let over = track.pending_bytes() >= self.config.max_segment_bytes
            || self
                .open
                .as_ref()
                .is_some_and(|o| o.media_bytes >= self.config.max_segment_bytes.saturating_mul(2));
        if !primary && over {
            return self.drop_frame("segment over its byte budget");
        }
        let out = match track.push(frame, dts, pts) {
            Ok(out) => out,
            Err(e) => {
                tracing::debug!(error = %e, "hls: fMP4 fragmenter rejected a frame");
                return self.drop_frame("fragmenter");
            }
        };

        if primary {
            let seg_ticks = duration_ticks(self.config.segment_duration, ts_scale);
            let part_ticks = duration_ticks(self.config.part_duration, ts_scale);
            match self.open.as_ref() {
                None => self.open_segment(dts, pts, sync),
                Some(open) => {
                    // Decode or presentation span, whichever is longer: an
                    // open-GOP CRA (H.265 §8.1.3) is decoded earlier, relative
                    // to its presentation, than an IDR (its RASL pictures
                    // follow it in decode order but precede it in output
                    // order), so by decode time alone x265's CRA every 2 s
                    // looks 1.88 s after its IDR and a 2 s target would skip
                    // it.
                    let elapsed = (dts - open.start).max(pts.saturating_sub(open.start_pts));
                    let cut_segment = (elapsed >= seg_ticks && sync)
                        || open.media_bytes >= self.config.max_segment_bytes
                        || open.parts.len() + 1 >= MAX_PARTS_PER_SEGMENT;
                    if cut_segment || dts - open.part_start >= part_ticks {
                        self.cut_part(dts);
                    }
                    if cut_segment {
                        self.complete_segment(dts);
                        self.open_segment(dts, pts, sync);
                    }
                }
            }
            if let Some(open) = self.open.as_mut() {
                open.part_independent.get_or_insert(sync);
            }
        }
        let Some(open) = self.open.as_mut() else {
            return;
        };
        open.media_bytes = open.media_bytes.saturating_add(out.payload.len());
        let (Some(ts), Some(buf)) = (
            self.epoch.as_mut().and_then(|e| e.ts.as_mut()),
            open.ts.as_mut(),
        ) else {
            return;
        };
        if let Err(e) = ts.mux_into(&out, buf) {
            tracing::debug!(error = %e, "hls: TS muxer rejected a frame");
        }
    }

    fn open_segment(&mut self, start: i64, start_pts: i64, independent: bool) {
        let ts = self.open_ts(independent);
        let start_us = self.to_us(start);
        let epoch = self.epoch.as_ref().map_or(0, |e| e.id);
        self.open = Some(Open {
            msn: self.next_msn,
            start,
            start_pts,
            part_start: start,
            part_independent: None,
            parts: Vec::new(),
            ts,
            media_bytes: 0,
            discontinuity: std::mem::take(&mut self.pending_discontinuity),
            independent,
            init_version: self.init_version,
            start_us,
            epoch,
        });
        self.next_msn += 1;
        self.invalidate();
    }

    /// The TS buffer of a segment being opened, when the TS variant is on
    /// (or starts here: on a keyframe). Every TS segment starts with PAT
    /// and PMT (RFC 8216 §3.2).
    fn open_ts(&mut self, independent: bool) -> Option<BytesMut> {
        let starting = match self.ts_state {
            TsState::Off => return None,
            TsState::Starting if !independent => return None,
            TsState::Starting => true,
            TsState::On => false,
        };
        let epoch = self.epoch.as_mut()?;
        if epoch.ts.is_none() {
            let codec = |k| epoch.tracks.get(k).map(|t| t.info().codec);
            let mut ts = match TsMuxer::new(codec(MediaKind::Video), codec(MediaKind::Audio)) {
                Ok(m) => m,
                Err(e) => {
                    // The TS segments must stay contiguous: start over.
                    tracing::warn!(error = %e, "hls: cannot build the TS muxer");
                    self.ts_state = TsState::Starting;
                    self.free_ts();
                    return None;
                }
            };
            for c in self.start_gate.configs() {
                if let Err(e) = ts.mux(c) {
                    tracing::debug!(error = %e, "hls: TS muxer rejected a config");
                }
            }
            epoch.ts = Some(ts);
        }
        if let Some(ts) = epoch.ts.as_mut() {
            ts.request_psi();
        }
        if starting {
            self.ts_state = TsState::On;
            tracing::debug!(msn = self.next_msn, "hls: TS variant starts");
        }
        // Sized like the previous segment + 1/8: rarely a regrowth copy,
        // little slack kept alive by the frozen segment.
        let previous = self.segments.back().map_or(0, |s| {
            let len = s.ts.as_ref().map_or(s.fmp4.len(), Bytes::len);
            len + len / 8
        });
        Some(BytesMut::with_capacity(
            previous.min(self.config.max_segment_bytes),
        ))
    }

    fn to_us(&self, ticks: i64) -> i64 {
        let scale = self.epoch.as_ref().map_or(90_000, Epoch::primary_timescale);
        rescale(ticks, scale, US)
    }

    /// Cuts the current part at primary time `end`: every sample with a
    /// known duration goes into it (video, then audio fragment).
    fn cut_part(&mut self, end: i64) {
        self.emit_part(end, false);
    }

    /// Writes the part ending at `end`; `flush` also writes each track's
    /// newest sample (end of segment at a restart / finish).
    fn emit_part(&mut self, end: i64, flush: bool) {
        let Some(epoch) = self.epoch.as_mut() else {
            return;
        };
        let pending: usize = epoch.tracks.iter().map(|t| t.pending_bytes() + 256).sum();
        let mut buf = BytesMut::with_capacity(pending);
        epoch
            .tracks
            .fragment_into(&mut buf, &mut self.fragment_sequence, flush);
        let Some(open) = self.open.as_ref() else {
            return;
        };
        let start_us = self.to_us(open.part_start);
        let end_us = self.to_us(end);
        let Some(open) = self.open.as_mut() else {
            return;
        };
        if buf.is_empty() {
            return;
        }
        let bytes = buf.freeze();
        let duration_us = u64::try_from(end_us - start_us).unwrap_or(0);
        self.max_part_us = self.max_part_us.max(duration_us);
        open.parts.push(Part {
            bytes,
            duration_us,
            independent: open.part_independent.take().unwrap_or(false),
        });
        open.part_start = end;
        self.invalidate();
    }

    /// Completes the open segment at primary time `end`.
    fn complete_segment(&mut self, end: i64) {
        let Some(open) = self.open.take() else {
            return;
        };
        let duration_us = u64::try_from(self.to_us(end) - self.to_us(open.start)).unwrap_or(0);
        let chunks: Vec<Bytes> = open.parts.iter().map(|p| p.bytes.clone()).collect();
        let fmp4 = concat(&chunks);
        let mut parts = open.parts;
        let mut at = 0;
        for p in &mut parts {
            let n = p.bytes.len();
            p.bytes = fmp4.slice(at..at + n);
            at += n;
        }
        self.max_segment_secs = self.max_segment_secs.max(round_secs(duration_us));
        self.segments.push_back(Segment {
            msn: open.msn,
            duration_us,
            parts,
            fmp4,
            ts: open.ts.map(BytesMut::freeze),
            discontinuity: open.discontinuity,
            independent: open.independent,
            init_version: open.init_version,
            start_us: open.start_us,
            epoch: open.epoch,
        });
        // A listed segment's date never changes (see `push_at`).
        if let Some(w) = self
            .epoch
            .as_mut()
            .filter(|e| e.id == open.epoch)
            .and_then(|e| e.wall.as_mut())
        {
            w.frozen = true;
        }
        self.invalidate();
        while self.segments.len() > self.config.window_segments {
            if let Some(s) = self.segments.pop_front() {
                if s.discontinuity {
                    self.discontinuity_sequence += 1;
                }
            }
        }
        self.prune_inits();
        self.prune_anchors();
    }

    /// Flushes every waiting sample into a last part and completes the open segment.
    fn close_open(&mut self) {
        let Some(epoch) = self.epoch.as_ref() else {
            return;
        };
        let end = epoch
            .tracks
            .primary()
            .and_then(|t| Some(t.last_dts()? + t.last_delta().max(1)));
        let (Some(end), true) = (end, self.open.is_some()) else {
            return;
        };
        self.emit_part(end, true);
        self.complete_segment(end);
    }

    // ----- serving -----

    /// The fMP4 init section (`init.mp4`, `EXT-X-MAP`, RFC 8216 §4.3.2.5) of
    /// the current tracks; `None` before the stream started.
    pub fn init_segment(&self) -> Option<Bytes> {
        self.init.clone()
    }

    /// The init section a playlist names with `init.mp4?<query>`: version
    /// `N` for `v=N`, version 0 without `v` (after a codec change the
    /// window may still hold segments of the previous init section). `None`
    /// for a version no segment of the window uses any more.
    pub fn init_segment_for_query(&self, query: Option<&str>) -> Option<Bytes> {
        let v = query
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("v="))
            .map_or(Some(0), |n| n.parse::<u32>().ok())?;
        if v == self.init_version {
            return self.init.clone();
        }
        self.old_inits
            .iter()
            .find(|(n, _)| *n == v)
            .map(|(_, b)| b.clone())
    }

    /// Drops init sections no segment of the window names.
    fn prune_inits(&mut self) {
        let oldest = self
            .segments
            .front()
            .map(|s| s.init_version)
            .or(self.open.as_ref().map(|o| o.init_version))
            .unwrap_or(self.init_version);
        self.old_inits.retain(|(v, _)| *v >= oldest);
    }

    /// A complete segment of the window (`None` for the open one, or one
    /// that slid out of the window).
    pub fn segment(&self, variant: Variant, msn: u64) -> Option<Bytes> {
        let first = self.segments.front()?.msn;
        let seg = self
            .segments
            .get(usize::try_from(msn.checked_sub(first)?).ok()?)?;
        match variant {
            Variant::LowLatency => Some(seg.fmp4.clone()),
            Variant::Ts => seg.ts.clone(),
        }
    }

    /// A partial segment (rfc8216bis §4.4.4.9) of the window or of the open segment.
    pub fn part(&self, msn: u64, part: u32) -> Option<Bytes> {
        let parts = match self.open.as_ref().filter(|o| o.msn == msn) {
            Some(o) => &o.parts,
            None => {
                let first = self.segments.front()?.msn;
                &self
                    .segments
                    .get(usize::try_from(msn.checked_sub(first)?).ok()?)?
                    .parts
            }
        };
        parts.get(part as usize).map(|p| p.bytes.clone())
    }

    /// Whether a part that is not there yet may still appear: it is the
    /// next part of the open segment or the first of the next segment (the
    /// `EXT-X-PRELOAD-HINT` target). The HTTP layer holds such requests.
    pub fn part_pending(&self, msn: u64, part: u32) -> bool {
        if self.finished {
            return false;
        }
        match &self.open {
            Some(o) => {
                (msn == o.msn && part as usize >= o.parts.len()) || (msn == o.msn + 1 && part == 0)
            }
            None => msn == self.next_msn && part == 0,
        }
    }

    /// `EXT-X-TARGETDURATION` (RFC 8216 §4.3.3.1) as a duration: the
    /// configured segment duration rounded up, raised to the longest
    /// segment seen (rounded to nearest). A blocking reload times out after
    /// three of these (rfc8216bis §6.2.5.2).
    pub fn target_duration(&self) -> Duration {
        Duration::from_secs(self.target_secs())
    }

    /// Whether the media playlist of `variant` has something a player can
    /// start on: a complete TS segment (TS: none before
    /// [`enable_ts`](Self::enable_ts) and one segment after it), or a
    /// complete segment or a part (LL-HLS).
    pub fn is_ready(&self, variant: Variant) -> bool {
        match variant {
            Variant::Ts => self.segments.back().is_some_and(|s| s.ts.is_some()),
            Variant::LowLatency => {
                self.has_segment() || self.open.as_ref().is_some_and(|o| !o.parts.is_empty())
            }
        }
    }

    /// Whether a complete segment exists (what a player without LL-HLS
    /// needs in the playlist to start, RFC 8216 §6.3.3).
    pub fn has_segment(&self) -> bool {
        !self.segments.is_empty()
    }

    /// Whether [`finish`](Self::finish) was called.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Bytes held: segments of the window (fMP4, and TS while that variant
    /// is on; parts are slices of their segment), the open segment, samples
    /// waiting in the fragmenters, frames waiting for the start, and the
    /// init section. (Allocations may be up to ~1/8 larger for TS segments,
    /// which are reserved at the previous segment's size + 1/8.) Bounded by
    /// about `(window_segments + 1) × max_segment_bytes`, twice that with
    /// the TS variant on.
    pub fn memory_bytes(&self) -> usize {
        let segs: usize = self.segments.iter().map(|s| s.fmp4.len()).sum();
        let open = self
            .open
            .as_ref()
            .map_or(0, |o| o.parts.iter().map(|p| p.bytes.len()).sum::<usize>());
        let pending = self.epoch.as_ref().map_or(0, |e| e.tracks.pending_bytes());
        let inits = self.init.as_ref().map_or(0, Bytes::len)
            + self.old_inits.iter().map(|(_, b)| b.len()).sum::<usize>();
        segs + open + pending + self.start_gate.bytes() + inits + self.ts_bytes()
    }

    /// The part of [`memory_bytes`](Self::memory_bytes) held by the TS
    /// variant: 0 while it is off.
    pub fn ts_bytes(&self) -> usize {
        let segs: usize = self
            .segments
            .iter()
            .filter_map(|s| s.ts.as_ref().map(Bytes::len))
            .sum();
        segs + self
            .open
            .as_ref()
            .and_then(|o| o.ts.as_ref())
            .map_or(0, BytesMut::len)
    }
}

fn duration_ticks(d: Duration, timescale: u32) -> i64 {
    let t = d.as_micros().saturating_mul(u128::from(timescale)) / 1_000_000;
    i64::try_from(t).unwrap_or(i64::MAX)
}

fn concat(chunks: &[Bytes]) -> Bytes {
    match chunks {
        [one] => one.clone(),
        _ => {
            let mut b = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for c in chunks {
                b.put_slice(c);
            }
            b.freeze()
        }
    }
}
