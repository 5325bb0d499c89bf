//! AAC → Opus for WHEP viewers of streams published with AAC audio (RTMP,
//! SRT, RTSP): browsers do not decode AAC (WebRTC audio is Opus, RFC 7874
//! §3).
//!
//! [`AacToOpus`] is the codec step, sans-IO like the rest of the crate:
//! engine frames in ([`AacToOpus::handle_frame`]), engine frames out
//! ([`AacToOpus::poll_frame`]). AAC-LC (ISO/IEC 14496-3; mono or stereo) is
//! decoded by symphonia's pure-Rust decoder, resampled to 48 kHz when its
//! rate is not one libopus takes, and encoded by libopus (RFC 6716) in 20 ms
//! frames. [`OpusFeed`] runs it once per stream and publishes the packets as
//! a derived engine stream every WHEP viewer of that stream reads;
//! [`OpusFeeds`] hands the feeds out (see its documentation for the life
//! cycle).

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, Weak};

use arcly::codec::aac::AacConfig;
use arcly::codec::opus::OpusHead;
use arcly::engine::{Publisher, Recv, Subscriber};
use arcly::{Codec, Engine, Frame, FrameFlags, StreamKey};
use bytes::Bytes;
use symphonia_codec_aac::AacDecoder;
use symphonia_core::audio::{SampleBuffer, SignalSpec};
use symphonia_core::codecs::{CodecParameters, Decoder, DecoderOptions, CODEC_TYPE_AAC};
use symphonia_core::formats::Packet;

/// Opus's clock (RFC 7587 §4.1: the RTP clock of Opus is always 48 kHz).
pub const OPUS_RATE: u32 = 48_000;

/// One Opus packet: 20 ms (RFC 7587 §4.2's default `ptime`).
pub const OPUS_FRAME_TICKS: i64 = 960;

/// Largest Opus packet written (RFC 6716 §3.4: 1275 bytes per frame).
const MAX_OPUS_PACKET: usize = 1500;

/// Most output frames queued before the oldest are dropped (counted in
/// [`TranscodeStats::frames_dropped`]); the caller drains after each input.
pub const MAX_QUEUED_FRAMES: usize = 256;

/// A timestamp jump (either way) larger than this restarts the audio clock
/// at the new timestamp instead of filling it with silence (48 kHz ticks: 1 s).
const MAX_GAP_FILL: i64 = 48_000;

/// Why the transcoder refused a frame or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    /// The AAC `AudioSpecificConfig` could not be parsed.
    #[error("bad AAC AudioSpecificConfig: {0}")]
    BadConfig(String),
    /// The AAC profile or layout is not supported (symphonia decodes AAC-LC
    /// with one or two channels; HE-AAC is decoded as its AAC-LC core).
    #[error("unsupported AAC stream: {0}")]
    Unsupported(String),
    /// One AAC frame could not be decoded (it is replaced by silence).
    #[error("AAC decode error: {0}")]
    Decode(String),
    /// The AAC decoder panicked on peer data: the transcoder stops.
    #[error("the AAC decoder failed on this stream; transcoding stopped")]
    DecoderPanicked,
    /// libopus refused to create the encoder or to encode.
    #[error("Opus encoder: {0}")]
    Encode(String),
}

/// Counters of one transcoder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranscodeStats {
    /// AAC frames decoded.
    pub aac_frames: u64,
    /// AAC frames that failed to decode (replaced by silence).
    pub aac_errors: u64,
    /// Opus packets produced.
    pub opus_packets: u64,
    /// Audio clock restarts (timestamp jumps over a second, or backwards).
    pub resyncs: u64,
    /// 48 kHz samples of silence inserted for gaps and undecodable frames.
    pub silence_samples: u64,
    /// Output frames dropped because [`MAX_QUEUED_FRAMES`] were queued.
    pub frames_dropped: u64,
}

/// Streaming cubic (Catmull-Rom) resampler to 48 kHz, interleaved.
///
/// Used only for AAC rates libopus cannot take directly (44.1, 32, 22.05,
/// 11.025, 64, 88.2, 96 kHz): upsampling 44.1 → 48 kHz (the common case)
/// adds no aliasing; downsampling from 64 kHz and above may alias above
/// 20 kHz, where Opus's own low-pass removes most of it.
#[derive(Debug)]
struct Resampler {
    channels: usize,
    /// Input frames per output frame.
    step: f64,
    /// Position of the next output in `hist` (in input frames).
    pos: f64,
    /// Input not yet consumed, interleaved; starts with one frame of zeros
    /// (the "previous" sample of the first one).
    hist: Vec<f32>,
}

impl Resampler {
    fn new(in_rate: u32, channels: usize) -> Resampler {
        Resampler {
            channels,
            step: f64::from(in_rate) / f64::from(OPUS_RATE),
            pos: 1.0,
            hist: vec![0.0; channels],
        }
    }

    /// Appends `input` (interleaved) and pushes every output frame that can
    /// be computed onto `out`.
    fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let ch = self.channels;
        self.hist.extend_from_slice(input);
        let frames = self.hist.len() / ch;
        // Frame i needs i-1 ..= i+2.
        loop {
            let i = self.pos.floor() as usize;
            if i + 2 >= frames || i == 0 {
                break;
            }
            let t = (self.pos - i as f64) as f32;
            for c in 0..ch {
                let at = |k: usize| self.hist.get(k * ch + c).copied().unwrap_or(0.0);
                let (p0, p1, p2, p3) = (at(i - 1), at(i), at(i + 1), at(i + 2));
                let v = p1
                    + 0.5
                        * t
                        * (p2 - p0
                            + t * (2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3
                                + t * (3.0 * (p1 - p2) + p3 - p0)));
                out.push(v);
            }
            self.pos += self.step;
        }
        // Keep frame floor(pos)-1 onward.
        let keep_from = (self.pos.floor() as usize).saturating_sub(1).min(frames);
        if keep_from > 0 {
            self.hist.drain(..keep_from * ch);
            self.pos -= keep_from as f64;
        }
    }
}

/// The decoder half: symphonia's AAC decoder for one `AudioSpecificConfig`.
struct Aac {
    decoder: AacDecoder,
    rate: u32,
    channels: usize,
    /// Reused interleaved output buffer.
    samples: Option<SampleBuffer<f32>>,
}

impl Aac {
    fn new(asc: &[u8]) -> Result<Aac, TranscodeError> {
        let config = AacConfig::parse(asc).map_err(|e| TranscodeError::BadConfig(e.to_string()))?;
        let channels = usize::from(config.channel_config);
        if !(1..=2).contains(&channels) {
            return Err(TranscodeError::Unsupported(format!(
                "{} channels (channel configuration {}); mono and stereo are supported",
                channels, config.channel_config
            )));
        }
        // HE-AAC (explicit SBR/PS signalling): decode the AAC-LC core at its
        // own rate (no spectral band replication: lower bandwidth, in sync).
        let lc = AacConfig::new(
            config.core_object_type,
            config.sampling_frequency,
            config.channel_config,
        );
        if lc.object_type != arcly::codec::aac::AOT_AAC_LC {
            return Err(TranscodeError::Unsupported(format!(
                "audio object type {} (AAC-LC is supported)",
                config.core_object_type
            )));
        }
        let mut params = CodecParameters::new();
        params
            .for_codec(CODEC_TYPE_AAC)
            .with_sample_rate(lc.sampling_frequency)
            .with_extra_data(lc.to_bytes().to_vec().into_boxed_slice());
        let decoder = catch_unwind(|| AacDecoder::try_new(&params, &DecoderOptions::default()))
            .map_err(|_| TranscodeError::DecoderPanicked)?
            .map_err(|e| TranscodeError::Unsupported(e.to_string()))?;
        Ok(Aac {
            decoder,
            rate: lc.sampling_frequency,
            channels,
            samples: None,
        })
    }

    /// Decodes one raw AAC frame into interleaved f32 (`channels` wide).
    fn decode(&mut self, data: &[u8], out: &mut Vec<f32>) -> Result<(), TranscodeError> {
        let packet = Packet::new_from_slice(0, 0, 0, data);
        let decoder = &mut self.decoder;
        let samples = &mut self.samples;
        let channels = self.channels;
        let result = catch_unwind(AssertUnwindSafe(|| -> Result<(), TranscodeError> {
            let buf = decoder
                .decode(&packet)
                .map_err(|e| TranscodeError::Decode(e.to_string()))?;
            let spec: SignalSpec = *buf.spec();
            if spec.channels.count() != channels {
                return Err(TranscodeError::Decode(format!(
                    "{} channels decoded, {channels} configured",
                    spec.channels.count()
                )));
            }
            let frames = buf.frames();
            let need = buf.capacity() as u64;
            let sb = match samples {
                Some(sb) if sb.capacity() >= frames * channels => sb,
                _ => samples.insert(SampleBuffer::new(need, spec)),
            };
            sb.copy_interleaved_ref(buf);
            out.extend_from_slice(sb.samples());
            Ok(())
        }));
        result.map_err(|_| TranscodeError::DecoderPanicked)?
    }
}

/// The encoder half: libopus at the input rate (8/12/16/24/48 kHz) or at
/// 48 kHz after the [`Resampler`].
struct OpusEnc {
    encoder: opus::Encoder,
    /// Samples per channel of one 20 ms frame at the encoder's rate.
    frame: usize,
    channels: usize,
    /// The encoder's algorithmic delay in 48 kHz ticks.
    lookahead: i64,
    packet: Vec<u8>,
}

impl OpusEnc {
    fn new(rate: u32, channels: usize) -> Result<OpusEnc, TranscodeError> {
        let err = |e: opus::Error| TranscodeError::Encode(e.to_string());
        let layout = if channels == 1 {
            opus::Channels::Mono
        } else {
            opus::Channels::Stereo
        };
        let mut encoder =
            opus::Encoder::new(rate, layout, opus::Application::Audio).map_err(err)?;
        encoder
            .set_bitrate(opus::Bitrate::Bits(if channels == 1 {
                48_000
            } else {
                96_000
            }))
            .map_err(err)?;
        let lookahead = i64::from(encoder.get_lookahead().map_err(err)?) * i64::from(OPUS_RATE)
            / i64::from(rate);
        Ok(OpusEnc {
            encoder,
            frame: rate as usize / 50,
            channels,
            lookahead,
            packet: vec![0; MAX_OPUS_PACKET],
        })
    }
}

/// Rates libopus encodes without resampling (RFC 6716 §2).
fn opus_native(rate: u32) -> bool {
    matches!(rate, 8_000 | 12_000 | 16_000 | 24_000 | 48_000)
}

/// The state after an `AudioSpecificConfig`.
struct Chain {
    aac: Aac,
    resampler: Option<Resampler>,
    encoder: OpusEnc,
    /// Decoded (and resampled) PCM waiting for a full 20 ms frame.
    pcm: Vec<f32>,
    /// Scratch for one decoded AAC frame.
    decoded: Vec<f32>,
    /// 48 kHz time of the first sample since the last (re)start of the clock.
    clock_start: Option<i64>,
    /// Input samples (at the AAC rate) since `clock_start`.
    in_samples: i64,
    /// Opus packets since `clock_start`.
    packets: i64,
}

/// AAC → Opus for one stream (sans-IO: no thread, no clock).
///
/// Feed it the stream's frames ([`handle_frame`](Self::handle_frame): AAC
/// configs and frames; anything else is ignored) and drain
/// [`poll_frame`](Self::poll_frame) until `None`.
///
/// Output: an Opus config frame (`OpusHead`, RFC 7845 §5.1, pre-skip = the
/// encoder's lookahead) before the first packet and after every change of
/// channel count, then one Opus packet per 20 ms, `timebase` 48 kHz.
///
/// Timestamps (invariants): within one run of the audio clock, packet `n`
/// has PTS `start + 960·n − lookahead`, where `start` is the PTS of the
/// first AAC frame of the run (so a packet carries the same instant as the
/// AAC samples it encodes, and stays in sync with video whose PTS share the
/// stream's timeline); PTS are strictly increasing, 960 ticks (20 ms) apart.
/// A gap in the AAC timestamps (a lost or undecodable frame) up to 1 s is
/// filled with silence; a larger jump, or a jump backwards by more than
/// 20 ms, restarts the clock (the encoder is reset, the first packet of the
/// new run carries the [`FrameFlags::DISCONTINUITY`] flag). At most
/// [`MAX_QUEUED_FRAMES`] frames are queued.
pub struct AacToOpus {
    chain: Option<Chain>,
    /// The AAC config the chain was built from.
    asc: Option<Bytes>,
    /// Channels of the last `OpusHead` sent.
    head_channels: Option<usize>,
    out: VecDeque<Frame>,
    stats: TranscodeStats,
    /// The decoder panicked once: every later frame is ignored.
    broken: bool,
    discontinuity: bool,
}

impl core::fmt::Debug for AacToOpus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AacToOpus")
            .field("configured", &self.chain.is_some())
            .field("broken", &self.broken)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Default for AacToOpus {
    fn default() -> Self {
        Self::new()
    }
}

impl AacToOpus {
    /// A transcoder waiting for the stream's AAC config frame.
    pub fn new() -> AacToOpus {
        AacToOpus {
            chain: None,
            asc: None,
            head_channels: None,
            out: VecDeque::new(),
            stats: TranscodeStats::default(),
            broken: false,
            discontinuity: false,
        }
    }

    /// Counters.
    pub fn stats(&self) -> TranscodeStats {
        self.stats
    }

    /// Whether the decoder failed for good ([`TranscodeError::DecoderPanicked`]).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The next output frame; drain until `None`.
    pub fn poll_frame(&mut self) -> Option<Frame> {
        self.out.pop_front()
    }

    fn push(&mut self, frame: Frame) {
        if self.out.len() >= MAX_QUEUED_FRAMES {
            self.out.pop_front();
            self.stats.frames_dropped += 1;
        }
        self.out.push_back(frame);
    }

    /// One frame of the source stream. AAC configs (re)build the decoder and
    /// encoder, AAC frames are decoded and encoded; other codecs are ignored.
    /// An error on one frame leaves the transcoder usable (the frame becomes
    /// silence), except [`TranscodeError::DecoderPanicked`].
    pub fn handle_frame(&mut self, frame: &Frame) -> Result<(), TranscodeError> {
        if frame.codec != Codec::Aac || self.broken {
            return Ok(());
        }
        if frame.is_config() {
            if self.asc.as_ref() == Some(&frame.payload) {
                return Ok(());
            }
            self.asc = Some(frame.payload.clone());
            self.chain = None;
            let aac = match Aac::new(&frame.payload) {
                Ok(aac) => aac,
                Err(e) => {
                    if matches!(e, TranscodeError::DecoderPanicked) {
                        self.broken = true;
                    }
                    return Err(e);
                }
            };
            let (resampler, enc_rate) = if opus_native(aac.rate) {
                (None, aac.rate)
            } else {
                (Some(Resampler::new(aac.rate, aac.channels)), OPUS_RATE)
            };
            let encoder = OpusEnc::new(enc_rate, aac.channels)?;
            self.discontinuity = self.head_channels.is_some();
            self.chain = Some(Chain {
                aac,
                resampler,
                encoder,
                pcm: Vec::new(),
                decoded: Vec::new(),
                clock_start: None,
                in_samples: 0,
                packets: 0,
            });
            return Ok(());
        }
        let Some(chain) = self.chain.as_mut() else {
            return Ok(()); // no config yet
        };
        let pts = frame.pts_in(OPUS_RATE);
        let rate = i64::from(chain.aac.rate);
        let ch = chain.aac.channels;

        // Where this frame's samples fall on the running audio clock.
        if let Some(start) = chain.clock_start {
            let expected = start + chain.in_samples * i64::from(OPUS_RATE) / rate;
            let gap = pts - expected;
            if !(-OPUS_FRAME_TICKS..=MAX_GAP_FILL).contains(&gap) {
                chain.clock_start = None;
                self.stats.resyncs += 1;
                self.discontinuity = true;
            } else if gap > OPUS_FRAME_TICKS {
                // A lost frame: keep the clock, fill with silence.
                let samples = gap * rate / i64::from(OPUS_RATE);
                chain.decoded.clear();
                chain.decoded.resize(samples as usize * ch, 0.0);
                self.stats.silence_samples += gap as u64;
                Self::feed_pcm(chain);
            }
        }
        if chain.clock_start.is_none() {
            chain.clock_start = Some(pts);
            chain.in_samples = 0;
            chain.packets = 0;
            chain.pcm.clear();
            if chain.resampler.is_some() {
                chain.resampler = Some(Resampler::new(chain.aac.rate, ch));
            }
            if let Err(e) = chain.encoder.encoder.reset_state() {
                return Err(TranscodeError::Encode(e.to_string()));
            }
        }

        chain.decoded.clear();
        let result = chain.aac.decode(&frame.payload, &mut chain.decoded);
        match &result {
            Ok(()) => self.stats.aac_frames += 1,
            Err(TranscodeError::DecoderPanicked) => {
                self.broken = true;
                self.chain = None;
                return result;
            }
            Err(_) => {
                // One frame of silence keeps the clock (1024 samples: AAC-LC).
                self.stats.aac_errors += 1;
                chain.decoded.clear();
                chain.decoded.resize(1024 * ch, 0.0);
                self.stats.silence_samples += (1024 * i64::from(OPUS_RATE) / rate) as u64;
            }
        }
        Self::feed_pcm(chain);
        self.encode_ready()?;
        result
    }

    /// Moves `chain.decoded` through the resampler into `chain.pcm`.
    fn feed_pcm(chain: &mut Chain) {
        let ch = chain.aac.channels;
        chain.in_samples += (chain.decoded.len() / ch) as i64;
        match chain.resampler.as_mut() {
            Some(r) => r.process(&chain.decoded, &mut chain.pcm),
            None => chain.pcm.extend_from_slice(&chain.decoded),
        }
        chain.decoded.clear();
    }

    /// Encodes every complete 20 ms frame of `pcm`.
    fn encode_ready(&mut self) -> Result<(), TranscodeError> {
        loop {
            let Some(chain) = self.chain.as_mut() else {
                return Ok(());
            };
            let enc = &mut chain.encoder;
            let need = enc.frame * enc.channels;
            if chain.pcm.len() < need {
                return Ok(());
            }
            let Some(start) = chain.clock_start else {
                return Ok(());
            };
            let len = enc
                .encoder
                .encode_float(chain.pcm.get(..need).unwrap_or_default(), &mut enc.packet)
                .map_err(|e| TranscodeError::Encode(e.to_string()))?;
            chain.pcm.drain(..need);
            let payload = Bytes::copy_from_slice(enc.packet.get(..len).unwrap_or_default());
            let pts = start + chain.packets * OPUS_FRAME_TICKS - enc.lookahead;
            chain.packets += 1;
            let channels = enc.channels;
            let lookahead = enc.lookahead;
            if self.head_channels != Some(channels) {
                self.head_channels = Some(channels);
                let mut head = OpusHead::new(channels as u8);
                head.pre_skip = lookahead.clamp(0, i64::from(u16::MAX)) as u16;
                self.push(Frame {
                    codec: Codec::Opus,
                    flags: FrameFlags::CONFIG,
                    pts,
                    dts: pts,
                    timebase: OPUS_RATE,
                    payload: head.to_bytes(),
                });
            }
            let mut flags = FrameFlags::KEYFRAME;
            if std::mem::take(&mut self.discontinuity) {
                flags = flags | FrameFlags::DISCONTINUITY;
            }
            self.stats.opus_packets += 1;
            self.push(Frame {
                codec: Codec::Opus,
                flags,
                pts,
                dts: pts,
                timebase: OPUS_RATE,
                payload,
            });
        }
    }
}

/// One stream's shared AAC → Opus feed: reads the source stream through its
/// own engine subscriber, transcodes, and publishes the Opus frames into a
/// derived stream (a detached [`Publisher`], outside the registry: RTMP,
/// HLS or SRT viewers never see it) that each WHEP viewer subscribes to.
///
/// Sans-IO: it works when [`pump`](Self::pump) is called (the WHEP sessions
/// of the stream call it whenever the source stream's signal wakes them, so
/// the transcoding happens once per stream, by whichever session comes
/// first, on the driver's thread). Dropped with the last viewer's
/// [`OpusFeedLease`].
pub struct OpusFeed {
    source: Subscriber,
    transcoder: AacToOpus,
    output: Publisher,
    ended: bool,
    warned: bool,
}

impl core::fmt::Debug for OpusFeed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OpusFeed")
            .field("stream", self.source.key())
            .field("transcoder", &self.transcoder)
            .finish_non_exhaustive()
    }
}

impl OpusFeed {
    /// Transcodes every frame the source has published since the last call
    /// and publishes the Opus output.
    pub fn pump(&mut self) {
        while !self.ended {
            match self.source.recv() {
                Recv::Frame(entry) => {
                    if let Err(e) = self.transcoder.handle_frame(&entry.frame) {
                        self.warn(&e);
                    }
                    while let Some(frame) = self.transcoder.poll_frame() {
                        self.output.send(frame);
                    }
                }
                Recv::Empty => break,
                Recv::End => self.ended = true,
            }
        }
    }

    fn warn(&mut self, e: &TranscodeError) {
        // One warning per feed for a lasting failure; per-frame decode errors
        // are debug (they become silence).
        if matches!(e, TranscodeError::Decode(_)) {
            tracing::debug!(stream = %arcly::peer_text::escaped(&self.source.key().to_string()), error = %e, "AAC frame replaced by silence");
        } else if !self.warned {
            self.warned = true;
            tracing::warn!(stream = %arcly::peer_text::escaped(&self.source.key().to_string()), error = %e, "AAC → Opus: WHEP viewers of this stream get no audio");
        }
    }

    /// Counters of the transcoder.
    pub fn stats(&self) -> TranscodeStats {
        self.transcoder.stats()
    }
}

/// A WHEP viewer's hold on a stream's [`OpusFeed`]: the feed lives while
/// any lease of it does.
#[derive(Debug, Clone)]
pub struct OpusFeedLease {
    feed: Arc<Mutex<OpusFeed>>,
}

impl OpusFeedLease {
    /// Runs the feed (see [`OpusFeed::pump`]); a no-op while another thread
    /// holds it (that thread is doing the work).
    pub fn pump(&self) {
        if let Ok(mut feed) = self.feed.try_lock() {
            feed.pump();
        }
    }

    /// Counters of the feed's transcoder.
    pub fn stats(&self) -> TranscodeStats {
        self.feed
            .lock()
            .map(|f| f.stats())
            .unwrap_or_else(|p| p.into_inner().stats())
    }
}

/// The per-stream Opus feeds of one engine.
///
/// Life cycle: [`subscribe`](Self::subscribe) for the first WHEP viewer of
/// a stream with AAC audio creates the stream's [`OpusFeed`] (one engine
/// subscriber of the source); later viewers of the same stream share it.
/// Each viewer holds an [`OpusFeedLease`]; when the last lease is dropped
/// (the last WebRTC viewer left) the feed, its source subscriber and its
/// derived stream are dropped: no transcoding happens for a stream nobody
/// watches over WebRTC. The map holds weak references only, pruned on each
/// call, so it is bounded by the number of streams being transcoded.
#[derive(Debug, Clone)]
pub struct OpusFeeds {
    engine: Engine,
    feeds: Arc<Mutex<HashMap<StreamKey, Weak<Mutex<OpusFeed>>>>>,
}

impl OpusFeeds {
    /// Feeds of the streams of `engine`.
    pub fn new(engine: Engine) -> OpusFeeds {
        OpusFeeds {
            engine,
            feeds: Arc::default(),
        }
    }

    /// Streams being transcoded now.
    pub fn active(&self) -> usize {
        let mut map = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        map.len()
    }

    /// A subscriber of `key`'s Opus feed and the lease that keeps the feed
    /// running; creates the feed (subscribing to the source stream) if this
    /// is its first viewer. `None` if the source stream is not live or has
    /// no room for the feed's subscriber.
    pub fn subscribe(&self, key: &StreamKey) -> Option<(Subscriber, OpusFeedLease)> {
        let mut map = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        let feed = match map.get(key).and_then(Weak::upgrade) {
            Some(feed) => feed,
            None => {
                let source = self.engine.subscribe(key).ok()?;
                let config = self.engine.app_config(key.app()).unwrap_or_default();
                let output = Publisher::detached(key.clone(), config);
                tracing::info!(stream = %arcly::peer_text::escaped(&key.to_string()), "AAC → Opus transcoding started for WebRTC viewers");
                let feed = Arc::new(Mutex::new(OpusFeed {
                    source,
                    transcoder: AacToOpus::new(),
                    output,
                    ended: false,
                    warned: false,
                }));
                map.insert(key.clone(), Arc::downgrade(&feed));
                feed
            }
        };
        let subscriber = {
            let guard = feed.lock().unwrap_or_else(|p| p.into_inner());
            guard.output.subscribe().ok()?
        };
        Some((subscriber, OpusFeedLease { feed }))
    }
}

impl Drop for OpusFeed {
    fn drop(&mut self) {
        tracing::info!(stream = %arcly::peer_text::escaped(&self.source.key().to_string()), "AAC → Opus transcoding stopped (no WebRTC viewer left)");
    }
}
