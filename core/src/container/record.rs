//! Recording: the frames of one stream → fragmented MP4 files
//! (ISO/IEC 14496-12 §8.8, one `moov` then `moof`+`mdat` pairs), runtime-free.
//!
//! A [`Recorder`] is fed the frames of one engine stream in decode order
//! (what [`crate::engine::Subscriber::recv`] delivers) and produces
//! [`RecordOutput`] commands that an adapter executes: open a file, append
//! bytes, close (and sync) it. No file I/O happens here.
//!
//! - A file starts with the init segment (`ftyp` + `moov` with one track per
//!   configured kind: video track 1, audio track 2) once a video keyframe is
//!   seen (or, for audio-only streams, after [`RecordConfig::start_wait`]).
//! - A fragment (one `moof`+`mdat` per track, `sequence_number` counting up
//!   from 1 per file) is cut at each video keyframe and at least every
//!   [`RecordConfig::fragment_duration`] of media time.
//! - A new file starts at a codec change (a new config frame), a timestamp
//!   discontinuity, and, with [`RecordConfig::max_file_duration`], at the
//!   first keyframe after that much media time. Each file's timeline starts
//!   at 0 (`tfdt` of its first fragment).
//! - Bounds: the output queue holds at most [`RecordConfig::max_queued_bytes`]
//!   bytes / [`RecordConfig::max_queued_commands`] commands. When the writer
//!   lags beyond that, frames are dropped ([`Recorder::dropped_frames`], a
//!   warning is logged) and video resumes at the next keyframe. Frames
//!   waiting for the start are capped at [`MAX_START_FRAMES`].

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::fmp4_track::{Admit, Fmp4Track, Fmp4Tracks, Opened};
use super::start_gate::{AudioTrim, StartGate, StartLimits};
use crate::frame::{Frame, MediaKind};

/// `track_ID` of the video track.
pub const VIDEO_TRACK_ID: u32 = super::fmp4_track::VIDEO_TRACK_ID;
/// `track_ID` of the audio track.
pub const AUDIO_TRACK_ID: u32 = super::fmp4_track::AUDIO_TRACK_ID;
/// Most frames held while waiting for the first keyframe / second config.
pub const MAX_START_FRAMES: usize = 1024;
/// Most payload bytes held while waiting for the start.
const MAX_START_BYTES: usize = 32 << 20;
/// A fragment is cut when a track has this many payload bytes waiting.
const MAX_FRAGMENT_PENDING_BYTES: usize = 16 << 20;
/// Nanoseconds per second.
const NS: u32 = 1_000_000_000;

/// Settings of a [`Recorder`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RecordConfig {
    /// A fragment is cut at least this often (media time), and at every
    /// video keyframe.
    pub fragment_duration: Duration,
    /// Start a new file at the first keyframe after this much media time
    /// (`None`: one file per stream session and codec configuration).
    pub max_file_duration: Option<Duration>,
    /// How long (media time) the start waits for a second track's config.
    pub start_wait: Duration,
    /// Most bytes waiting in the output queue; more → frames are dropped.
    pub max_queued_bytes: usize,
    /// Most commands waiting in the output queue; more → frames are dropped.
    pub max_queued_commands: usize,
}
/// Builder-style setters: the struct is `#[non_exhaustive]`, so other
/// crates start from its default (or constructor) value and chain these.
impl RecordConfig {
    /// Sets [`fragment_duration`](Self::fragment_duration).
    #[must_use]
    pub fn with_fragment_duration(mut self, fragment_duration: Duration) -> Self {
        self.fragment_duration = fragment_duration;
        self
    }

    /// Sets [`max_file_duration`](Self::max_file_duration).
    #[must_use]
    pub fn with_max_file_duration(mut self, max_file_duration: Option<Duration>) -> Self {
        self.max_file_duration = max_file_duration;
        self
    }

    /// Sets [`start_wait`](Self::start_wait).
    #[must_use]
    pub fn with_start_wait(mut self, start_wait: Duration) -> Self {
        self.start_wait = start_wait;
        self
    }

    /// Sets [`max_queued_bytes`](Self::max_queued_bytes).
    #[must_use]
    pub fn with_max_queued_bytes(mut self, max_queued_bytes: usize) -> Self {
        self.max_queued_bytes = max_queued_bytes;
        self
    }

    /// Sets [`max_queued_commands`](Self::max_queued_commands).
    #[must_use]
    pub fn with_max_queued_commands(mut self, max_queued_commands: usize) -> Self {
        self.max_queued_commands = max_queued_commands;
        self
    }
}

impl Default for RecordConfig {
    fn default() -> Self {
        RecordConfig {
            fragment_duration: Duration::from_secs(1),
            max_file_duration: None,
            start_wait: Duration::from_secs(1),
            max_queued_bytes: 64 << 20,
            max_queued_commands: 4096,
        }
    }
}

/// What the adapter does next (in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutput {
    /// Open a new file (closing none: a `Close` always comes first).
    /// `path_hint` is `<app>/<stream>`; the adapter picks the real name.
    NewFile {
        /// `<app>/<stream>` of the recorded stream.
        path_hint: String,
    },
    /// Append these bytes to the open file.
    Write(Bytes),
    /// The file is complete: flush, sync and close it.
    Close,
}

/// The file being written.
#[derive(Debug)]
struct File {
    /// Its tracks; a forward timestamp jump larger than
    /// [`MAX_GAP_NS`](super::fmp4_track::MAX_GAP_NS) starts a new file.
    tracks: Fmp4Tracks,
    /// First frame's decode time (its timebase): time 0 of this file.
    origin: (i64, u32),
    /// Decode time of the first primary sample (primary ticks).
    start: Option<i64>,
    /// Decode time where the current fragment started (primary ticks).
    frag_start: Option<i64>,
    sequence: u32,
}

/// Turns the frames of one stream into fragmented-MP4 file commands (see
/// the module documentation).
#[derive(Debug)]
pub struct Recorder {
    config: RecordConfig,
    path_hint: String,
    start_gate: StartGate,
    file: Option<File>,
    out: VecDeque<RecordOutput>,
    out_bytes: usize,
    dropped: u64,
    /// Dropping because the writer lags (for one warning per episode).
    lagging: bool,
    /// Video frames are skipped until a keyframe (after a drop).
    need_keyframe: bool,
    files: u64,
    finished: bool,
}

impl Recorder {
    /// A recorder for the stream `path_hint` (`<app>/<stream>`).
    pub fn new(path_hint: impl Into<String>, config: RecordConfig) -> Self {
        let start_gate = StartGate::new(StartLimits {
            max_frames: MAX_START_FRAMES,
            max_bytes: MAX_START_BYTES,
            wait_ns: i64::try_from(config.start_wait.as_nanos()).unwrap_or(i64::MAX),
            trim: AudioTrim::ArrivedBefore,
        });
        Recorder {
            config,
            path_hint: path_hint.into(),
            start_gate,
            file: None,
            out: VecDeque::new(),
            out_bytes: 0,
            dropped: 0,
            lagging: false,
            need_keyframe: false,
            files: 0,
            finished: false,
        }
    }

    /// Media frames dropped so far (writer lagging, before the first
    /// keyframe, without a config, unusable timestamps).
    pub fn dropped_frames(&self) -> u64 {
        self.dropped
    }

    /// Files started so far.
    pub fn files_started(&self) -> u64 {
        self.files
    }

    /// Bytes waiting in the output queue.
    pub fn queued_bytes(&self) -> usize {
        self.out_bytes
    }

    /// The next command for the adapter.
    pub fn poll_output(&mut self) -> Option<RecordOutput> {
        let o = self.out.pop_front()?;
        if let RecordOutput::Write(b) = &o {
            self.out_bytes -= b.len();
        }
        if self.lagging && self.has_room() {
            self.lagging = false;
            tracing::info!(stream = %self.path_hint, dropped = self.dropped, "recording writer caught up");
        }
        Some(o)
    }

    fn has_room(&self) -> bool {
        self.out_bytes < self.config.max_queued_bytes
            && self.out.len() < self.config.max_queued_commands
    }

    fn emit(&mut self, o: RecordOutput) {
        if let RecordOutput::Write(b) = &o {
            if b.is_empty() {
                return;
            }
            self.out_bytes += b.len();
        }
        self.out.push_back(o);
    }

    fn drop_frame(&mut self, why: &'static str) {
        self.dropped += 1;
        tracing::trace!(why, "record: frame dropped");
    }

    /// Adds a frame (config or media) in decode order. Frames after
    /// [`finish`](Self::finish) are ignored.
    pub fn push(&mut self, frame: &Frame) {
        if self.finished {
            return;
        }
        if frame.is_config() {
            return self.on_config(frame);
        }
        if !self.has_room() {
            if !self.lagging {
                self.lagging = true;
                tracing::warn!(
                    stream = %self.path_hint,
                    queued_bytes = self.out_bytes,
                    "recording writer lags; dropping frames"
                );
            }
            self.need_keyframe = true;
            return self.drop_frame("writer lags");
        }
        if self.need_keyframe && frame.kind() == MediaKind::Video {
            if !frame.is_keyframe() {
                return self.drop_frame("waiting for a keyframe after a drop");
            }
            self.need_keyframe = false;
        }
        // Held by the start gate until a file opens.
        self.on_media(frame);
    }

    /// The stream ended: writes what is waiting and closes the file.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        if self.file.is_none() {
            let frames = self.start_gate.take_all();
            let opened = Fmp4Tracks::open(&self.start_gate, frames, &mut self.dropped, "record");
            self.open_file(opened);
        }
        self.close_file();
        self.finished = true;
    }

    fn on_config(&mut self, frame: &Frame) {
        if self.start_gate.update_config(frame, "record") && self.file.is_some() {
            tracing::debug!(stream = %self.path_hint, "record: codec config changed; new file");
            self.close_file();
        }
    }

    fn buffer_start(&mut self, frame: Frame) {
        let opened = self
            .start_gate
            .admit(frame, None, &mut self.dropped, "record");
        self.open_file(opened);
    }

    /// Opens a file on the frames the start gate released, then feeds them.
    fn open_file(&mut self, opened: Option<Opened>) {
        let Some(Opened {
            tracks,
            init,
            origin,
            frames,
        }) = opened
        else {
            return;
        };
        self.file = Some(File {
            tracks,
            origin,
            start: None,
            frag_start: None,
            sequence: 0,
        });
        self.files += 1;
        let path_hint = self.path_hint.clone();
        self.emit(RecordOutput::NewFile { path_hint });
        self.emit(RecordOutput::Write(init));
        for f in frames {
            self.on_media(&f);
        }
    }

    fn on_media(&mut self, frame: &Frame) {
        let Some(file) = self.file.as_mut() else {
            return self.buffer_start(frame.clone());
        };
        let kind = frame.kind();
        let (primary, dts, pts) = match file.tracks.admit(frame, file.origin, 0) {
            Admit::Media { primary, dts, pts } => (primary, dts, pts),
            Admit::Drop(why) => return self.drop_frame(why),
            Admit::Discontinuity => {
                tracing::debug!(stream = %self.path_hint, dts = frame.dts, "record: timestamp discontinuity; new file");
                self.close_file();
                return self.buffer_start(frame.clone());
            }
        };
        let scale = file.tracks.get(kind).map_or(1, Fmp4Track::timescale);
        let sync = frame.is_keyframe() || kind == MediaKind::Audio;
        if primary && sync {
            if let (Some(max), Some(start)) = (self.config.max_file_duration, file.start) {
                if dts - start >= duration_ticks(max, scale) {
                    self.close_file();
                    return self.buffer_start(frame.clone());
                }
            }
        }
        // Re-borrow after the possible rotation above.
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let Some(track) = file.tracks.get_mut(kind) else {
            return;
        };
        if let Err(e) = track.push(frame, dts, pts) {
            tracing::debug!(error = %e, "record: fMP4 fragmenter rejected a frame");
            return self.drop_frame("fragmenter");
        }
        let big = track.pending_bytes() >= MAX_FRAGMENT_PENDING_BYTES;
        let mut cut = big;
        if primary {
            file.start.get_or_insert(dts);
            match file.frag_start {
                None => file.frag_start = Some(dts),
                Some(fs) => {
                    let elapsed = dts - fs;
                    let video_kf = kind == MediaKind::Video && frame.is_keyframe();
                    if video_kf || elapsed >= duration_ticks(self.config.fragment_duration, scale) {
                        cut = true;
                    }
                }
            }
            if cut {
                file.frag_start = Some(dts);
            }
        }
        if cut {
            self.cut(false);
        }
    }

    /// Writes one fragment per track holding its samples with a known
    /// duration (`flush`: every sample).
    fn cut(&mut self, flush: bool) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let mut buf = BytesMut::new();
        file.tracks
            .fragment_into(&mut buf, &mut file.sequence, flush);
        self.emit(RecordOutput::Write(buf.freeze()));
    }

    /// Writes everything waiting and closes the file (if one is open).
    fn close_file(&mut self) {
        if self.file.is_none() {
            return;
        }
        self.cut(true);
        self.file = None;
        self.emit(RecordOutput::Close);
    }
}

fn duration_ticks(d: Duration, timescale: u32) -> i64 {
    let ticks = d.as_nanos().saturating_mul(u128::from(timescale)) / u128::from(NS);
    i64::try_from(ticks).unwrap_or(i64::MAX)
}
