//! MPEG-TS egress built once per stream and shared by every SRT viewer
//! (and by any other consumer of [`EgressSlot::Ts`]).
//!
//! One [`TsMuxer`] per live stream instance, behind a mutex, fills the
//! frame's [`EgressSlot::Ts`] cache the first time any viewer reaches the
//! frame; every later viewer reuses the same `Bytes`. Because continuity
//! counters (ISO/IEC 13818-1 §2.4.3.3) live in the muxer, the muxer must see
//! the stream's frames in sequence order: it remembers the next sequence
//! number it expects, skips forward over frames nobody read, and refuses to
//! go back. A media frame reached only after the muxer moved past it (a
//! viewer lagging behind every other one, over frames none of them read)
//! gets empty TS bytes: [`StreamMux::ts_bytes`] reports it as
//! [`TsFrame::Unavailable`] and the viewer waits for the next start point,
//! exactly as if it had lagged in the engine's ring.
//!
//! Codecs are learnt from the frames: the muxer is created at the first media
//! frame with the codecs of the configs seen so far plus that frame's, and a
//! track of a kind that appears later is added with a new PMT version. A
//! codec change of the same kind starts a new muxer (a discontinuity every
//! viewer sees at the same frame).
//!
//! Invariants: one muxer per live stream (keyed by [`StreamKey`] and the
//! stream instance, so a republished stream starts afresh); the map holds
//! weak references only and is pruned on every lookup, so its size is
//! bounded by the streams being played.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;

use crate::container::ts::{TsError, TsMuxer, PACKET_SIZE, PAT_PID, SYNC_BYTE};
use crate::engine::{EgressSlot, FrameEntry, StreamKey, StreamStats, Subscriber};
use crate::frame::{Codec, Frame, MediaKind};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// What [`StreamMux::ts_bytes`] found for one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsFrame {
    /// A codec configuration: absorbed by the muxer, nothing to send.
    Config,
    /// Whole 188-byte packets to send (PAT/PMT included when due).
    Packets(Bytes),
    /// No TS form for this frame (out of order for the shared muxer, or a
    /// frame the muxer refused): skip to the next start point.
    Unavailable,
}

/// State of one stream's muxer.
#[derive(Debug, Default)]
struct MuxState {
    muxer: Option<TsMuxer>,
    /// Next sequence number the muxer may take (frames are muxed in order).
    next_seq: u64,
    /// Latest config frame of each kind with its sequence number.
    video_config: Option<(u64, Frame)>,
    audio_config: Option<(u64, Frame)>,
    /// Frames the muxer refused (codec errors, out of order).
    refused: u64,
}

impl MuxState {
    fn config_slot(&mut self, kind: MediaKind) -> &mut Option<(u64, Frame)> {
        match kind {
            MediaKind::Video => &mut self.video_config,
            MediaKind::Audio => &mut self.audio_config,
        }
    }

    /// Builds the TS bytes of frame `seq` (called once per frame, from the
    /// frame's egress cache).
    fn build(&mut self, seq: u64, frame: &Frame, key: &StreamKey) -> Bytes {
        if frame.is_config() {
            let slot = self.config_slot(frame.kind());
            if slot.as_ref().is_some_and(|(s, _)| *s > seq) {
                return Bytes::new(); // an older config than the one in force
            }
            *slot = Some((seq, frame.clone()));
            if let Some(m) = &mut self.muxer {
                let _ = m.add_track(frame.codec);
                if let Err(e) = m.mux(frame) {
                    tracing::debug!(stream = %key, error = %e, "ts egress: config refused");
                }
            }
            self.next_seq = self.next_seq.max(seq + 1);
            return Bytes::new();
        }
        if seq < self.next_seq {
            self.refused += 1;
            tracing::debug!(stream = %key, seq, next = self.next_seq, "ts egress: frame behind the shared muxer");
            return Bytes::new();
        }
        self.next_seq = seq + 1;
        match self.mux_media(frame) {
            Ok(b) => b,
            Err(e) => {
                self.refused += 1;
                tracing::debug!(stream = %key, error = %e, "ts egress: frame refused");
                Bytes::new()
            }
        }
    }

    fn mux_media(&mut self, frame: &Frame) -> Result<Bytes, TsError> {
        let kind = frame.kind();
        let fits = |m: &TsMuxer| {
            let (v, a) = m.codecs();
            match kind {
                MediaKind::Video => v.is_none() || v == Some(frame.codec),
                MediaKind::Audio => a.is_none() || a == Some(frame.codec),
            }
        };
        if !self.muxer.as_ref().is_some_and(fits) {
            self.muxer = Some(self.new_muxer(frame.codec)?);
        }
        let Some(m) = &mut self.muxer else {
            return Err(TsError::NoTrack(frame.codec));
        };
        if m.add_track(frame.codec)? {
            // A kind that appears late: give the muxer its config, if any.
            let config = match kind {
                MediaKind::Video => self.video_config.as_ref(),
                MediaKind::Audio => self.audio_config.as_ref(),
            };
            if let Some((_, c)) = config.filter(|(_, c)| c.codec == frame.codec) {
                m.mux(c)?;
            }
        }
        m.mux(frame)
    }

    /// A muxer for the configs seen so far and `codec`.
    fn new_muxer(&self, codec: Codec) -> Result<TsMuxer, TsError> {
        let cfg_codec = |c: &Option<(u64, Frame)>| c.as_ref().map(|(_, f)| f.codec);
        let mut video = cfg_codec(&self.video_config).filter(|c| *c != Codec::Av1);
        let mut audio = cfg_codec(&self.audio_config);
        match codec.kind() {
            MediaKind::Video => video = Some(codec),
            MediaKind::Audio => audio = Some(codec),
        }
        let mut m = TsMuxer::new(video, audio)?;
        for (_, c) in self.video_config.iter().chain(self.audio_config.iter()) {
            if m.codecs().0 == Some(c.codec) || m.codecs().1 == Some(c.codec) {
                m.mux(c)?;
            }
        }
        Ok(m)
    }
}

/// One stream's shared muxer; viewers hold it while they play.
#[derive(Debug)]
pub struct StreamMux {
    key: StreamKey,
    /// Identifies the stream instance (a republished key gets a new one).
    instance: Weak<StreamStats>,
    state: Mutex<MuxState>,
}

impl StreamMux {
    /// The TS form of `entry`, built by the shared muxer on first use and
    /// cached in the frame (see the module docs).
    pub fn ts_bytes(&self, entry: &FrameEntry) -> TsFrame {
        let b = entry.egress(EgressSlot::Ts, |f| {
            lock(&self.state).build(entry.seq, f, &self.key)
        });
        if entry.frame.is_config() {
            TsFrame::Config
        } else if b.is_empty() {
            TsFrame::Unavailable
        } else {
            TsFrame::Packets(b)
        }
    }

    /// PAT and PMT of the current program (see [`TsMuxer::psi_packets`]),
    /// if the muxer exists yet.
    pub fn psi_packets(&self) -> Option<Bytes> {
        lock(&self.state).muxer.as_ref().map(TsMuxer::psi_packets)
    }

    /// Frames the shared muxer could not build (behind it, or refused).
    pub fn refused(&self) -> u64 {
        lock(&self.state).refused
    }
}

/// Whether `ts` begins with a PAT packet.
pub fn starts_with_pat(ts: &[u8]) -> bool {
    ts.len() >= PACKET_SIZE
        && ts.first() == Some(&SYNC_BYTE)
        && matches!((ts.get(1), ts.get(2)), (Some(a), Some(b)) if (u16::from(a & 0x1F) << 8 | u16::from(*b)) == PAT_PID)
}

/// The per-stream shared muxers (see the module docs). Share one among
/// every service of a process (the [`SrtServiceFactory`](super::service::SrtServiceFactory)
/// does) so that each stream is muxed once.
#[derive(Debug, Default)]
pub struct TsEgress {
    streams: Mutex<HashMap<StreamKey, Weak<StreamMux>>>,
}

impl TsEgress {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared muxer of the stream `sub` reads (created on first use).
    pub fn stream(&self, sub: &Subscriber) -> Arc<StreamMux> {
        let stats = sub.stream_stats();
        let mut map = lock(&self.streams);
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(m) = map.get(sub.key()).and_then(Weak::upgrade) {
            if m.instance
                .upgrade()
                .is_some_and(|s| Arc::ptr_eq(&s, &stats))
            {
                return m;
            }
        }
        let m = Arc::new(StreamMux {
            key: sub.key().clone(),
            instance: Arc::downgrade(&stats),
            state: Mutex::new(MuxState::default()),
        });
        map.insert(sub.key().clone(), Arc::downgrade(&m));
        m
    }

    /// Streams with a live shared muxer.
    pub fn len(&self) -> usize {
        lock(&self.streams)
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    /// Whether no stream has a shared muxer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
