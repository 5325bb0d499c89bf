//! The MPEG-TS muxer (ISO/IEC 13818-1 §2.4).

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::pes::{self, STREAM_ID_AUDIO, STREAM_ID_PRIVATE_1, STREAM_ID_VIDEO};
use super::psi::{self, PmtEntry};
use super::{
    TsError, AUDIO_PID, PACKET_SIZE, PAT_PID, PMT_PID, STREAM_TYPE_AAC_ADTS, STREAM_TYPE_H264,
    STREAM_TYPE_H265, STREAM_TYPE_PRIVATE, SYNC_BYTE, TIMEBASE, TS_MASK, VIDEO_PID,
};
use crate::codec::aac::AacConfig;
use crate::codec::opus::OpusHead;
use crate::codec::{h264, h265};
use crate::frame::{Codec, Frame, FrameFlags, MediaKind};

/// Largest frame payload the muxer accepts (bytes), so one PES stays bounded.
pub const MAX_FRAME_SIZE: usize = 16 << 20;

/// For audio-only programs, PAT/PMT are repeated at least this often (90 kHz ticks: 0.5 s).
const AUDIO_ONLY_PSI_INTERVAL: i64 = 45_000;

const AUD_H264: [u8; 6] = [0, 0, 0, 1, 0x09, 0xF0];
const AUD_H265: [u8; 7] = [0, 0, 0, 1, 0x46, 0x01, 0x50];
const START_CODE: [u8; 4] = [0, 0, 0, 1];

#[derive(Debug)]
enum Config {
    None,
    /// Annex-B parameter sets (SPS/PPS, or VPS/SPS/PPS) for keyframes.
    Video(Bytes),
    Aac(AacConfig),
    Opus(u8),
}

#[derive(Debug)]
struct Track {
    codec: Codec,
    pid: u16,
    stream_id: u8,
    cc: u8,
    config: Config,
}

impl Track {
    fn new(codec: Codec, pid: u16) -> Result<Self, TsError> {
        let stream_id = match codec {
            Codec::H264 | Codec::H265 => STREAM_ID_VIDEO,
            Codec::Aac => STREAM_ID_AUDIO,
            Codec::Opus => STREAM_ID_PRIVATE_1,
            Codec::Av1 | Codec::Vp8 | Codec::Vp9 => return Err(TsError::UnsupportedCodec(codec)),
        };
        Ok(Self {
            codec,
            pid,
            stream_id,
            cc: 0,
            config: Config::None,
        })
    }

    fn pmt_entry(&self) -> PmtEntry {
        let (stream_type, opus_channels) = match (self.codec, &self.config) {
            (Codec::H264, _) => (STREAM_TYPE_H264, None),
            (Codec::H265, _) => (STREAM_TYPE_H265, None),
            (Codec::Aac, _) => (STREAM_TYPE_AAC_ADTS, None),
            (_, Config::Opus(ch)) => (STREAM_TYPE_PRIVATE, Some(*ch)),
            _ => (STREAM_TYPE_PRIVATE, Some(2)),
        };
        PmtEntry {
            stream_type,
            pid: self.pid,
            opus_channels,
        }
    }
}

/// A stateful MPEG-TS muxer for one program with at most one video track
/// (H.264 / H.265) and one audio track (AAC / Opus).
///
/// **Use exactly one muxer per stream and feed it every frame of the stream,
/// in order** (config frames included): continuity counters, the stored
/// parameter sets and the PSI schedule live here. The bytes returned for a
/// frame are whole 188-byte packets meant to be built once and shared by
/// every consumer — e.g. the stream's TS task calls
/// `entry.egress(EgressSlot::Ts, |f| muxer.mux(f).unwrap_or_default())` for each
/// ring entry in sequence order, and every viewer then reuses the cached
/// `Bytes`. A viewer that joins at a keyframe gets PAT/PMT first (they are
/// repeated before every video keyframe), SPS/PPS in the access unit, and
/// sees a continuity-counter jump at its join point only, which decoders
/// treat as the start of reception.
///
/// Output per frame (ISO/IEC 13818-1):
/// - PAT + PMT (§2.4.4) before the first frame and before each video keyframe
///   (every 0.5 s for audio-only programs);
/// - one PES (§2.4.3.6) with PTS, and DTS when it differs, in 90 kHz 33-bit;
/// - PCR (§2.4.3.5, = DTS) in the adaptation field of the first packet of
///   each PES on the PCR PID (video, or audio for audio-only programs);
/// - `random_access_indicator` on keyframes, `discontinuity_indicator` on
///   frames flagged `DISCONTINUITY`; adaptation-field stuffing in the last
///   packet of each PES.
///
/// Video is written in Annex-B with an access unit delimiter, and the
/// parameter sets of the last config frame before each keyframe (unless the
/// access unit carries its own). AAC gets an ADTS header built from the
/// `AudioSpecificConfig`; Opus gets the `opus_control_header` of the Opus
/// TS multiplexing draft (ETSI / Xiph OpusTS).
#[derive(Debug)]
pub struct TsMuxer {
    video: Option<Track>,
    audio: Option<Track>,
    pat: Vec<u8>,
    pmt: Vec<u8>,
    pat_cc: u8,
    pmt_cc: u8,
    pmt_version: u8,
    psi_due: bool,
    last_psi_dts: Option<i64>,
}

impl TsMuxer {
    /// A muxer for a program with the given video and audio codecs (at
    /// least one). Fails for codecs MPEG-TS cannot carry here (AV1) or a
    /// codec given for the wrong kind.
    pub fn new(video: Option<Codec>, audio: Option<Codec>) -> Result<Self, TsError> {
        let video = match video {
            Some(c) if c.kind() == MediaKind::Video => Some(Track::new(c, VIDEO_PID)?),
            Some(c) => return Err(TsError::UnsupportedCodec(c)),
            None => None,
        };
        let audio = match audio {
            Some(c) if c.kind() == MediaKind::Audio => Some(Track::new(c, AUDIO_PID)?),
            Some(c) => return Err(TsError::UnsupportedCodec(c)),
            None => None,
        };
        let mut m = Self {
            video,
            audio,
            pat: psi::build_pat(1, PMT_PID),
            pmt: Vec::new(),
            pat_cc: 0,
            pmt_cc: 0,
            pmt_version: 0,
            psi_due: true,
            last_psi_dts: None,
        };
        m.rebuild_pmt();
        Ok(m)
    }

    fn rebuild_pmt(&mut self) {
        let pcr_pid = self
            .video
            .as_ref()
            .or(self.audio.as_ref())
            .map_or(VIDEO_PID, |t| t.pid);
        let entries: Vec<PmtEntry> = self
            .video
            .iter()
            .chain(self.audio.iter())
            .map(Track::pmt_entry)
            .collect();
        self.pmt = psi::build_pmt(1, self.pmt_version, pcr_pid, &entries);
    }

    /// Makes the next media frame start with PAT + PMT (e.g. at the start
    /// of an HLS segment, RFC 8216 §3.2: each TS segment carries its own PSI).
    pub fn request_psi(&mut self) {
        self.psi_due = true;
    }

    /// The PID that carries the PCR.
    pub fn pcr_pid(&self) -> u16 {
        if self.video.is_some() {
            VIDEO_PID
        } else {
            AUDIO_PID
        }
    }

    /// The codecs of the video and audio tracks.
    pub fn codecs(&self) -> (Option<Codec>, Option<Codec>) {
        (
            self.video.as_ref().map(|t| t.codec),
            self.audio.as_ref().map(|t| t.codec),
        )
    }

    /// Adds a track for `codec` when the program has none of its kind yet
    /// (e.g. audio that starts after video): the PMT gets a new
    /// `version_number` (§2.4.4.9) and PAT/PMT go out before the next frame;
    /// continuity counters of the other PIDs carry on. `Ok(false)` if the
    /// track exists already; a different codec of the same kind is refused
    /// with [`TsError::NoTrack`].
    pub fn add_track(&mut self, codec: Codec) -> Result<bool, TsError> {
        let (slot, pid) = match codec.kind() {
            MediaKind::Video => (&mut self.video, VIDEO_PID),
            MediaKind::Audio => (&mut self.audio, AUDIO_PID),
        };
        match slot {
            Some(t) if t.codec == codec => return Ok(false),
            Some(_) => return Err(TsError::NoTrack(codec)),
            None => *slot = Some(Track::new(codec, pid)?),
        }
        self.pmt_version = (self.pmt_version + 1) & 0x1F;
        self.rebuild_pmt();
        self.psi_due = true;
        Ok(true)
    }

    /// PAT and PMT as two packets carrying the continuity counters of the
    /// last ones written (§2.4.3.3 allows one duplicate packet): what a
    /// consumer joining between the muxer's own PSI repetitions (audio-only
    /// programs repeat them every 0.5 s) sends first, so that it can decode
    /// at once. The muxer's next PAT/PMT then continues the counters.
    pub fn psi_packets(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(2 * PACKET_SIZE);
        psi::write_section_packet(&mut out, PAT_PID, (self.pat_cc + 15) & 0x0F, &self.pat);
        psi::write_section_packet(&mut out, PMT_PID, (self.pmt_cc + 15) & 0x0F, &self.pmt);
        out.freeze()
    }

    /// Muxes one frame. A config frame only updates the stored parameter
    /// sets / AudioSpecificConfig and returns empty `Bytes`; a media frame
    /// returns its whole 188-byte packets (PSI included when due).
    pub fn mux(&mut self, frame: &Frame) -> Result<Bytes, TsError> {
        let mut out = BytesMut::new();
        self.mux_into(frame, &mut out)?;
        Ok(out.freeze())
    }

    /// Like [`mux`](Self::mux), appending the packets to `out` (e.g. an HLS
    /// segment being built) instead of returning them. On error nothing is
    /// appended.
    pub fn mux_into(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), TsError> {
        if frame.payload.len() > MAX_FRAME_SIZE {
            return Err(TsError::FrameTooLarge {
                size: frame.payload.len(),
                limit: MAX_FRAME_SIZE,
            });
        }
        let is_video = frame.kind() == MediaKind::Video;
        let has_video = self.video.is_some();
        let track = match if is_video {
            self.video.as_mut()
        } else {
            self.audio.as_mut()
        } {
            Some(t) if t.codec == frame.codec => t,
            _ => return Err(TsError::NoTrack(frame.codec)),
        };
        if frame.is_config() {
            let rebuild = Self::set_config(track, frame)?;
            if rebuild {
                self.pmt_version = (self.pmt_version + 1) & 0x1F;
                self.rebuild_pmt();
                self.psi_due = true;
            }
            return Ok(());
        }

        // The PES as a list of slices (headers, start codes and the frame's
        // own NAL units): packetized with a single copy of the payload.
        let dts = frame.dts_in(TIMEBASE);
        let pts = frame.pts_in(TIMEBASE);
        let key = frame.is_keyframe();
        let mut ctl: SmallVec<[u8; 16]> = SmallVec::new();
        let adts: [u8; 7];
        let mut ps: Option<Bytes> = None;
        let mut body: SmallVec<[&[u8]; 32]> = SmallVec::new();
        match track.codec {
            Codec::H264 | Codec::H265 => {
                let h265 = track.codec == Codec::H265;
                let mut first_type = None;
                let mut has_ps = false;
                for n in h264::iter_length_prefixed(&frame.payload, 4) {
                    let n = n?;
                    let t = n.first().map(|b| {
                        if h265 {
                            h265::nal_type(*b)
                        } else {
                            h264::nal_type(*b)
                        }
                    });
                    first_type = first_type.or(t);
                    has_ps |= if h265 {
                        t == Some(h265::NAL_SPS)
                    } else {
                        t == Some(h264::NAL_SPS)
                    };
                }
                let aud_type = if h265 { h265::NAL_AUD } else { h264::NAL_AUD };
                if first_type != Some(aud_type) {
                    body.push(if h265 { &AUD_H265[..] } else { &AUD_H264[..] });
                }
                if let (true, false, Config::Video(p)) = (key, has_ps, &track.config) {
                    ps = Some(p.clone());
                }
                if let Some(p) = &ps {
                    body.push(p);
                }
                for n in h264::iter_length_prefixed(&frame.payload, 4).map_while(Result::ok) {
                    body.push(&START_CODE);
                    body.push(n);
                }
            }
            Codec::Aac => {
                let Config::Aac(asc) = &track.config else {
                    return Err(TsError::MissingConfig(Codec::Aac));
                };
                adts = asc.adts_header(frame.payload.len())?;
                body.push(&adts);
                body.push(&frame.payload);
            }
            _ => {
                // opus_control_header (Opus TS multiplexing draft, Xiph
                // OpusTS): 11-bit 0x3FF prefix, no trim / extension flags,
                // au_size as a run of 0xFF bytes plus a final byte.
                ctl.extend_from_slice(&[0x7F, 0xE0]);
                let mut n = frame.payload.len();
                while n >= 255 {
                    ctl.push(0xFF);
                    n -= 255;
                }
                ctl.push(n as u8);
                body.push(&ctl);
                body.push(&frame.payload);
            }
        }
        let payload_len: usize = body.iter().map(|b| b.len()).sum();
        let mut hdr = [0u8; pes::header_len(true)];
        let hdr_len = pes::header_len((pts as u64 & TS_MASK) != (dts as u64 & TS_MASK));
        {
            let mut w: &mut [u8] = &mut hdr;
            pes::write_header(&mut w, track.stream_id, pts as u64, dts as u64, payload_len);
        }
        let total = hdr_len + payload_len;
        let rope = Rope {
            cur: hdr.get(..hdr_len).unwrap_or_default(),
            parts: &body,
            next: 0,
        };
        let pid = track.pid;
        let pcr = (is_video || !has_video).then_some(dts as u64 & TS_MASK);
        let rai = key && (is_video || !has_video);
        let psi = self.psi_due
            || (is_video && key)
            || (!has_video
                && match self.last_psi_dts {
                    None => true,
                    Some(l) => dts.saturating_sub(l) >= AUDIO_ONLY_PSI_INTERVAL || dts < l,
                });
        out.reserve((total / 184 + 4) * PACKET_SIZE);
        if psi {
            psi::write_section_packet(out, PAT_PID, self.pat_cc, &self.pat);
            self.pat_cc = (self.pat_cc + 1) & 0x0F;
            psi::write_section_packet(out, PMT_PID, self.pmt_cc, &self.pmt);
            self.pmt_cc = (self.pmt_cc + 1) & 0x0F;
            self.psi_due = false;
            self.last_psi_dts = Some(dts);
        }
        let track = match if is_video {
            self.video.as_mut()
        } else {
            self.audio.as_mut()
        } {
            Some(t) => t,
            None => return Err(TsError::NoTrack(frame.codec)),
        };
        let flags = AfFlags {
            pcr,
            rai,
            discontinuity: frame.flags.contains(FrameFlags::DISCONTINUITY),
        };
        packetize(out, pid, &mut track.cc, total, rope, flags);
        Ok(())
    }

    /// Stores a config frame; returns whether the PMT must change.
    fn set_config(track: &mut Track, frame: &Frame) -> Result<bool, TsError> {
        match track.codec {
            Codec::H264 => {
                let c = h264::AvcConfig::parse(&frame.payload)?;
                track.config = Config::Video(c.annex_b_parameter_sets());
            }
            Codec::H265 => {
                let c = h265::HevcConfig::parse(&frame.payload)?;
                track.config = Config::Video(c.annex_b_parameter_sets());
            }
            Codec::Aac => {
                let c = AacConfig::parse(&frame.payload)?;
                c.adts_header(0)?;
                track.config = Config::Aac(c);
            }
            Codec::Opus => {
                let h = OpusHead::parse(&frame.payload)?;
                let prev = match track.config {
                    Config::Opus(c) => c,
                    _ => 2,
                };
                track.config = Config::Opus(h.channels);
                return Ok(prev != h.channels);
            }
            c @ (Codec::Av1 | Codec::Vp8 | Codec::Vp9) => return Err(TsError::UnsupportedCodec(c)),
        }
        Ok(false)
    }
}

/// A PES held as a sequence of slices, read front to back.
struct Rope<'a> {
    cur: &'a [u8],
    parts: &'a [&'a [u8]],
    next: usize,
}

impl Rope<'_> {
    /// Appends the next `n` bytes (fewer if the rope ends) to `out`.
    fn copy_into(&mut self, out: &mut BytesMut, mut n: usize) {
        while n > 0 {
            if self.cur.is_empty() {
                match self.parts.get(self.next) {
                    Some(p) => {
                        self.cur = p;
                        self.next += 1;
                        continue;
                    }
                    None => {
                        // Cannot happen (total is the rope's length); keep packets whole.
                        out.put_bytes(0xFF, n);
                        return;
                    }
                }
            }
            let k = n.min(self.cur.len());
            let (a, b) = self.cur.split_at(k);
            out.put_slice(a);
            self.cur = b;
            n -= k;
        }
    }
}

/// What the adaptation field of a PES's first packet carries (§2.4.3.5).
#[derive(Debug, Clone, Copy)]
struct AfFlags {
    /// `program_clock_reference_base` (27 MHz extension 0).
    pcr: Option<u64>,
    /// `random_access_indicator`.
    rai: bool,
    /// `discontinuity_indicator` (the frame has `FrameFlags::DISCONTINUITY`).
    discontinuity: bool,
}

/// Splits one PES (`pes`) into packets on `pid`, with PCR and
/// `random_access_indicator` in the first packet and adaptation-field
/// stuffing in the last (§2.4.3.4, §2.4.3.5).
fn packetize(
    out: &mut BytesMut,
    pid: u16,
    cc: &mut u8,
    total: usize,
    mut pes: Rope<'_>,
    af: AfFlags,
) {
    let AfFlags {
        pcr,
        rai,
        discontinuity,
    } = af;
    let mut left = total;
    let mut first = true;
    while left > 0 {
        // Adaptation field body (after its length byte) that must be present.
        let mut af_body = 0usize;
        let mut flags = 0u8;
        if first && (pcr.is_some() || rai || discontinuity) {
            af_body = 1;
            if discontinuity {
                flags |= 0x80;
            }
            if rai {
                flags |= 0x40;
            }
            if pcr.is_some() {
                flags |= 0x10;
                af_body += 6;
            }
        }
        let mut af_total = if af_body > 0 { 1 + af_body } else { 0 };
        let room = 184 - af_total;
        let take = left.min(room);
        let stuffing = room - take;
        if stuffing > 0 {
            if af_total == 0 {
                // A 1-byte AF is the length byte alone; longer ones need the flags byte.
                af_body = stuffing - 1;
                af_total = stuffing;
            } else {
                af_body += stuffing;
                af_total += stuffing;
            }
        }
        out.put_u8(SYNC_BYTE);
        out.put_u16((if first { 0x4000 } else { 0 }) | (pid & 0x1FFF));
        out.put_u8(if af_total > 0 { 0x30 } else { 0x10 } | (*cc & 0x0F));
        *cc = (*cc + 1) & 0x0F;
        if af_total > 0 {
            out.put_u8(af_body as u8);
            if af_body > 0 {
                out.put_u8(flags);
                let mut written = 1;
                if let (true, Some(base)) = (first, pcr) {
                    if flags & 0x10 != 0 {
                        out.put_slice(&[
                            (base >> 25) as u8,
                            (base >> 17) as u8,
                            (base >> 9) as u8,
                            (base >> 1) as u8,
                            ((base & 1) as u8) << 7 | 0x7E,
                            0,
                        ]);
                        written += 6;
                    }
                }
                out.put_bytes(0xFF, af_body - written);
            }
        }
        pes.copy_into(out, take);
        left -= take;
        first = false;
    }
}
