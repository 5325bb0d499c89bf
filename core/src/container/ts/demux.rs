//! The MPEG-TS demuxer (ISO/IEC 13818-1 §2.4): bytes in, engine frames out.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tracing::debug;

use super::pes;
use super::psi::{self, MAX_SECTION_LENGTH};
use super::{
    TsError, Wrap33, PACKET_SIZE, PAT_PID, STREAM_TYPE_AAC_ADTS, STREAM_TYPE_H264,
    STREAM_TYPE_H265, STREAM_TYPE_PRIVATE, SYNC_BYTE, TIMEBASE,
};
use crate::codec::aac;
use crate::codec::opus::OpusHead;
use crate::codec::{h264, h265};
use crate::frame::{Codec, Frame, FrameFlags};

/// Largest amount of unread input the demuxer buffers (bytes): feed at most
/// this much between draining [`TsDemuxer::poll_frame`].
pub const MAX_PENDING_INPUT: usize = 8 << 20;
/// Largest PES packet reassembled (bytes); a longer one is dropped and counted.
pub const MAX_PES_SIZE: usize = 8 << 20;
/// Largest number of elementary streams followed at once (the first ones of the PMT).
pub const MAX_STREAMS: usize = 8;

/// Counters of what the demuxer saw and recovered from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TsDemuxStats {
    /// Transport packets processed.
    pub packets: u64,
    /// Times sync was lost and searched for again.
    pub resyncs: u64,
    /// Bytes skipped while searching for sync.
    pub skipped_bytes: u64,
    /// Continuity-counter errors on elementary-stream PIDs (§2.4.3.3).
    pub cc_errors: u64,
    /// PES packets dropped (continuity error, oversize, bad header).
    pub dropped_pes: u64,
    /// Packets with `transport_error_indicator` or a malformed adaptation field.
    pub bad_packets: u64,
    /// PSI sections rejected (CRC, length).
    pub psi_errors: u64,
    /// Access units dropped because they were malformed or came before the
    /// stream's first config (a stream that starts mid-GOP).
    pub dropped_frames: u64,
    /// Frames emitted (config frames included).
    pub frames: u64,
}

#[derive(Debug, Default)]
struct Section {
    buf: Vec<u8>,
    active: bool,
}

#[derive(Debug)]
struct Stream {
    pid: u16,
    codec: Codec,
    opus_channels: u8,
    cc: Option<u8>,
    pes: BytesMut,
    /// Size of the last PES, to reserve the next one's buffer at once.
    last_len: usize,
    /// A `discontinuity_indicator` was seen: flag the next frame.
    discontinuity: bool,
    active: bool,
    config: Option<Bytes>,
}

/// A sans-IO MPEG-TS demuxer for one program (the first of the PAT).
///
/// Use: [`handle_input`](Self::handle_input) with any slice of the byte
/// stream (packet boundaries need not line up), then
/// [`poll_frame`](Self::poll_frame) until `None`; at the end of the stream
/// call [`flush`](Self::flush) and drain again.
///
/// Output frames are in the canonical form of [`crate::frame`], timebase
/// 90 kHz, timestamps extended past the 33-bit wrap (one timeline for the
/// whole program):
/// - H.264 / H.265: Annex-B access units → 4-byte length-prefixed NAL units
///   without AUD and parameter sets; the in-band SPS/PPS (VPS) become a
///   config frame (record of ISO/IEC 14496-15), emitted before the first
///   access unit and again whenever they change. `KEYFRAME` marks H.264 IDR
///   pictures and every H.265 IRAP picture ([`h265::is_irap`]: IDR, CRA,
///   BLA, reserved 22/23), so x265's open-GOP CRA pictures are start points;
///   a decoder starting there drops their RASL pictures (H.265 §8.1.3).
///   Access units before the first parameter sets are dropped (counted).
/// - AAC: each ADTS frame → one raw frame; the `AudioSpecificConfig` implied
///   by the ADTS header is a config frame (again on change).
/// - A `discontinuity_indicator` (§2.4.3.5) sets `FrameFlags::DISCONTINUITY`
///   on the next media frame of that stream.
/// - Opus (stream type 0x06 with the `Opus` registration descriptor): each
///   access unit after its control header → one frame; config `OpusHead`
///   from the channel count of the extension descriptor.
///
/// Invariants and recovery: input waiting is at most [`MAX_PENDING_INPUT`]
/// bytes, a PES at most [`MAX_PES_SIZE`], at most [`MAX_STREAMS`] streams.
/// Sync is found again by searching for a `0x47` followed by another one a
/// packet later; a continuity error drops the PES being assembled and the
/// stream waits for the next `payload_unit_start_indicator`, which is also
/// how a stream that starts mid-PES begins. Everything is counted in
/// [`TsDemuxStats`]; nothing panics.
#[derive(Debug, Default)]
pub struct TsDemuxer {
    input: BytesMut,
    in_sync: bool,
    flushing: bool,
    pmt_pid: Option<u16>,
    pmt_last: Option<psi::Pmt>,
    pat: Section,
    pmt: Section,
    streams: Vec<Stream>,
    wrap: Wrap33,
    out: VecDeque<Frame>,
    stats: TsDemuxStats,
}

impl TsDemuxer {
    /// A demuxer waiting for a PAT.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters so far.
    pub fn stats(&self) -> TsDemuxStats {
        self.stats
    }

    /// Appends bytes of the transport stream. Fails (taking nothing) when
    /// more than [`MAX_PENDING_INPUT`] bytes would be waiting.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), TsError> {
        if self.input.len().saturating_add(data.len()) > MAX_PENDING_INPUT {
            return Err(TsError::InputOverflow {
                limit: MAX_PENDING_INPUT,
            });
        }
        self.input.extend_from_slice(data);
        Ok(())
    }

    /// Marks the end of the input: the last packets are taken without
    /// waiting to confirm sync, and PES packets still being assembled
    /// (unbounded video PES end only at the next start) are emitted by the
    /// following [`poll_frame`](Self::poll_frame) calls.
    pub fn flush(&mut self) {
        self.flushing = true;
    }

    /// The next frame, or `None` when the buffered input is used up.
    pub fn poll_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.out.pop_front() {
                self.stats.frames += 1;
                return Some(f);
            }
            if self.next_packet() {
                continue;
            }
            if self.flushing {
                self.flushing = false;
                for i in 0..self.streams.len() {
                    if self.streams.get(i).is_some_and(|s| s.active) {
                        self.finish_pes(i);
                    }
                }
                continue;
            }
            return None;
        }
    }

    /// Processes one packet; `false` when more input is needed.
    fn next_packet(&mut self) -> bool {
        loop {
            if self.input.len() < PACKET_SIZE {
                if self.flushing && !self.input.is_empty() {
                    self.stats.skipped_bytes += self.input.len() as u64;
                    self.input.clear();
                }
                return false;
            }
            if self.input.first() == Some(&SYNC_BYTE) {
                let confirmed = match self.input.get(PACKET_SIZE) {
                    Some(b) => *b == SYNC_BYTE,
                    None => self.flushing || self.in_sync,
                };
                if confirmed || self.in_sync || self.plausible_packet() {
                    break;
                }
                if self.input.get(PACKET_SIZE).is_none() {
                    return false; // wait to confirm the candidate
                }
                self.input.advance(1);
                self.stats.skipped_bytes += 1;
            }
            if self.in_sync {
                self.in_sync = false;
                self.stats.resyncs += 1;
                debug!("MPEG-TS sync lost");
            }
            // Bounded search: at most the buffered input is scanned and dropped.
            let skip = self
                .input
                .iter()
                .position(|b| *b == SYNC_BYTE)
                .unwrap_or(self.input.len());
            self.stats.skipped_bytes += skip as u64;
            self.input.advance(skip);
        }
        let mut pkt = [0u8; PACKET_SIZE];
        pkt.copy_from_slice(self.input.get(..PACKET_SIZE).unwrap_or(&[0; PACKET_SIZE]));
        self.input.advance(PACKET_SIZE);
        self.in_sync = true;
        self.stats.packets += 1;
        self.packet(&pkt);
        true
    }

    /// Whether the candidate packet at the start of the input continues a
    /// PID we follow (PAT, PMT, or a stream's first packet or one with the
    /// next continuity counter): sync is taken on it even when garbage
    /// follows it.
    fn plausible_packet(&self) -> bool {
        let (Some(&b1), Some(&b2), Some(&b3)) =
            (self.input.get(1), self.input.get(2), self.input.get(3))
        else {
            return false;
        };
        let pid = (u16::from(b1 & 0x1F) << 8) | u16::from(b2);
        if b1 & 0x80 != 0 || b3 & 0x30 == 0 {
            return false;
        }
        if pid == PAT_PID || Some(pid) == self.pmt_pid {
            return true;
        }
        self.streams
            .iter()
            .find(|s| s.pid == pid)
            .is_some_and(|s| s.cc.map_or(true, |cc| b3 & 0x0F == (cc + 1) & 0x0F))
    }

    fn packet(&mut self, pkt: &[u8; PACKET_SIZE]) {
        let [_, b1, b2, b3, ..] = *pkt;
        if b1 & 0x80 != 0 {
            self.stats.bad_packets += 1;
            return;
        }
        let pusi = b1 & 0x40 != 0;
        let pid = (u16::from(b1 & 0x1F) << 8) | u16::from(b2);
        let afc = (b3 >> 4) & 3;
        let cc = b3 & 0x0F;
        let mut offset = 4usize;
        let mut discontinuity = false;
        if afc & 2 != 0 {
            let af_len = usize::from(pkt.get(4).copied().unwrap_or(0));
            discontinuity = af_len > 0 && pkt.get(5).is_some_and(|f| f & 0x80 != 0);
            offset = 5 + af_len;
            if offset > PACKET_SIZE || (afc == 2 && af_len > 183) {
                self.stats.bad_packets += 1;
                return;
            }
        }
        if afc == 0 {
            self.stats.bad_packets += 1;
            return;
        }
        let payload: &[u8] = if afc & 1 != 0 {
            pkt.get(offset..).unwrap_or_default()
        } else {
            &[]
        };
        if pid == PAT_PID {
            self.psi(true, pusi, payload);
        } else if Some(pid) == self.pmt_pid {
            self.psi(false, pusi, payload);
        } else if let Some(i) = self.streams.iter().position(|s| s.pid == pid) {
            self.es_packet(i, pusi, cc, afc & 1 != 0, discontinuity, payload);
        }
    }

    fn psi(&mut self, is_pat: bool, pusi: bool, payload: &[u8]) {
        let sec = if is_pat { &mut self.pat } else { &mut self.pmt };
        let mut complete: Option<Vec<u8>> = None;
        if pusi {
            let ptr = usize::from(payload.first().copied().unwrap_or(0));
            let rest = payload.get(1..).unwrap_or_default();
            let tail = rest.get(..ptr.min(rest.len())).unwrap_or_default();
            if sec.active {
                sec.buf.extend_from_slice(tail);
                complete = take_section(sec);
            }
            let new = rest.get(ptr..).unwrap_or_default();
            sec.buf.clear();
            sec.active = new.first().is_some_and(|t| *t != 0xFF);
            if sec.active {
                sec.buf.extend_from_slice(
                    new.get(..new.len().min(MAX_SECTION_LENGTH + 3))
                        .unwrap_or_default(),
                );
            }
        } else if sec.active {
            let room = (MAX_SECTION_LENGTH + 3).saturating_sub(sec.buf.len());
            sec.buf
                .extend_from_slice(payload.get(..payload.len().min(room)).unwrap_or_default());
        }
        let next = take_section(sec);
        for s in complete.into_iter().chain(next) {
            if is_pat {
                self.on_pat(&s);
            } else {
                self.on_pmt(&s);
            }
        }
    }

    fn on_pat(&mut self, sec: &[u8]) {
        match psi::parse_pat(sec) {
            Ok(Some((_, pid))) => {
                if self.pmt_pid != Some(pid) {
                    debug!(pid, "MPEG-TS PMT PID");
                    self.pmt_pid = Some(pid);
                    self.pmt_last = None;
                    self.pmt = Section::default();
                }
            }
            Ok(None) | Err(psi::PsiError::NotCurrent) => {}
            Err(_) => self.stats.psi_errors += 1,
        }
    }

    fn on_pmt(&mut self, sec: &[u8]) {
        let pmt = match psi::parse_pmt(sec) {
            Ok(p) => p,
            Err(psi::PsiError::NotCurrent) => return,
            Err(_) => {
                self.stats.psi_errors += 1;
                return;
            }
        };
        // Compared by content, not only version: a restarted muxer starts at version 0 again.
        if self.pmt_last.as_ref() == Some(&pmt) {
            return;
        }
        // Streams the new PMT drops or changes end here: emit what they were assembling.
        for i in 0..self.streams.len() {
            let keep = self.streams.get(i).is_some_and(|s| {
                !s.active
                    || pmt
                        .streams
                        .iter()
                        .any(|e| e.pid == s.pid && stream_codec(e) == Some(s.codec))
            });
            if !keep {
                self.finish_pes(i);
            }
        }
        let mut streams = Vec::new();
        for e in &pmt.streams {
            let Some(codec) = stream_codec(e) else {
                continue;
            };
            if streams.len() >= MAX_STREAMS {
                break;
            }
            let opus_channels = e
                .opus_channel_config
                .filter(|c| (1..=2).contains(c))
                .unwrap_or(2);
            // Keep the state of a stream the new PMT still lists unchanged.
            let idx = self
                .streams
                .iter()
                .position(|s| s.pid == e.pid && s.codec == codec);
            let s = match idx {
                Some(i) => self.streams.swap_remove(i),
                None => Stream {
                    pid: e.pid,
                    codec,
                    opus_channels,
                    cc: None,
                    pes: BytesMut::new(),
                    last_len: 0,
                    discontinuity: false,
                    active: false,
                    config: None,
                },
            };
            streams.push(Stream { opus_channels, ..s });
        }
        debug!(
            streams = streams.len(),
            version = pmt.version,
            "MPEG-TS PMT"
        );
        self.streams = streams;
        self.pmt_last = Some(pmt);
    }

    fn es_packet(
        &mut self,
        i: usize,
        pusi: bool,
        cc: u8,
        has_payload: bool,
        discontinuity: bool,
        payload: &[u8],
    ) {
        let Some(s) = self.streams.get_mut(i) else {
            return;
        };
        s.discontinuity |= discontinuity;
        if has_payload {
            if let Some(last) = s.cc {
                if cc == last && !discontinuity {
                    return; // duplicate packet (§2.4.3.3)
                }
                if cc != (last + 1) & 0x0F && !discontinuity {
                    self.stats.cc_errors += 1;
                    debug!(
                        pid = s.pid,
                        expected = (last + 1) & 0x0F,
                        got = cc,
                        "MPEG-TS continuity error"
                    );
                    if s.active {
                        s.active = false;
                        s.pes.clear();
                        self.stats.dropped_pes += 1;
                    }
                }
            }
            s.cc = Some(cc);
        }
        if pusi {
            if s.active {
                self.finish_pes(i);
            }
            let Some(s) = self.streams.get_mut(i) else {
                return;
            };
            s.pes.clear();
            s.pes.reserve(s.last_len.max(payload.len()));
            s.pes.extend_from_slice(payload);
            s.active = true;
        } else if s.active {
            if s.pes.len() + payload.len() > MAX_PES_SIZE {
                s.active = false;
                s.pes.clear();
                self.stats.dropped_pes += 1;
                return;
            }
            s.pes.extend_from_slice(payload);
        }
        let Some(s) = self.streams.get_mut(i) else {
            return;
        };
        if s.active {
            if let (Some(h), Some(l)) = (s.pes.get(4), s.pes.get(5)) {
                let len = usize::from(u16::from_be_bytes([*h, *l]));
                if len != 0 && s.pes.len() >= 6 + len {
                    self.finish_pes(i);
                }
            }
        }
    }

    /// Ends the PES being assembled on stream `i` and turns it into frames.
    fn finish_pes(&mut self, i: usize) {
        let Some(s) = self.streams.get_mut(i) else {
            return;
        };
        s.active = false;
        s.last_len = s.pes.len().min(MAX_PES_SIZE);
        let data = s.pes.split().freeze();
        let h = match pes::parse_header(&data) {
            Ok(h) => h,
            Err(_) => {
                self.stats.dropped_pes += 1;
                return;
            }
        };
        let Some(pts_raw) = h.pts else {
            self.stats.dropped_pes += 1;
            return;
        };
        let end = if h.packet_length != 0 {
            (6 + h.packet_length).min(data.len())
        } else {
            data.len()
        };
        if end < h.payload_offset {
            self.stats.dropped_pes += 1;
            return;
        }
        let payload = data.slice(h.payload_offset..end);
        let dts = self.wrap.extend(h.dts.unwrap_or(pts_raw));
        let pts = Wrap33::near(dts, pts_raw);
        let Some(s) = self.streams.get_mut(i) else {
            return;
        };
        let first_new = self.out.len();
        let ok = match s.codec {
            Codec::H264 | Codec::H265 => video_au(s, &payload, pts, dts, &mut self.out),
            Codec::Aac => aac_pes(s, &payload, pts, &mut self.out),
            Codec::Opus => opus_pes(s, &payload, pts, &mut self.out),
            Codec::Av1 | Codec::Vp8 | Codec::Vp9 => false,
        };
        if s.discontinuity {
            if let Some(f) = self.out.iter_mut().skip(first_new).find(|f| !f.is_config()) {
                f.flags = f.flags | FrameFlags::DISCONTINUITY;
                s.discontinuity = false;
            }
        }
        if !ok {
            self.stats.dropped_frames += 1;
        }
    }
}

/// The codec of a PMT entry, if it is one this demuxer handles.
fn stream_codec(e: &psi::PmtStream) -> Option<Codec> {
    Some(match e.stream_type {
        STREAM_TYPE_H264 => Codec::H264,
        STREAM_TYPE_H265 => Codec::H265,
        STREAM_TYPE_AAC_ADTS => Codec::Aac,
        STREAM_TYPE_PRIVATE if e.opus => Codec::Opus,
        _ => return None,
    })
}

/// Takes a complete section out of `sec`, if there is one.
fn take_section(sec: &mut Section) -> Option<Vec<u8>> {
    if !sec.active {
        return None;
    }
    let total = psi::section_total_len(&sec.buf)?;
    if total > MAX_SECTION_LENGTH + 3 {
        sec.active = false;
        sec.buf.clear();
        return None;
    }
    if sec.buf.len() < total {
        return None;
    }
    sec.active = false;
    let mut v = core::mem::take(&mut sec.buf);
    v.truncate(total);
    Some(v)
}

fn frame(codec: Codec, flags: FrameFlags, pts: i64, dts: i64, payload: Bytes) -> Frame {
    Frame {
        codec,
        flags,
        pts,
        dts,
        timebase: TIMEBASE,
        payload,
    }
}

/// Converts one Annex-B access unit; `false` when it was dropped.
fn video_au(s: &mut Stream, data: &Bytes, pts: i64, dts: i64, out: &mut VecDeque<Frame>) -> bool {
    let hevc = s.codec == Codec::H265;
    let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
    let mut au = BytesMut::with_capacity(data.len() + 16);
    let mut key = false;
    for u in AnnexB::new(data) {
        let Some(&b0) = u.first() else { continue };
        let unit = data.slice_ref(u);
        if hevc {
            match h265::nal_type(b0) {
                h265::NAL_AUD => {}
                h265::NAL_VPS => vps.push(unit),
                h265::NAL_SPS => sps.push(unit),
                h265::NAL_PPS => pps.push(unit),
                t => {
                    key |= h265::is_irap(t);
                    au.put_u32(u.len() as u32);
                    au.extend_from_slice(u);
                }
            }
        } else {
            match h264::nal_type(b0) {
                h264::NAL_AUD => {}
                h264::NAL_SPS => sps.push(unit),
                h264::NAL_PPS => pps.push(unit),
                t => {
                    key |= t == h264::NAL_IDR;
                    au.put_u32(u.len() as u32);
                    au.extend_from_slice(u);
                }
            }
        }
    }
    if !sps.is_empty() && !pps.is_empty() && (!hevc || !vps.is_empty()) {
        let cap = crate::codec::MAX_PARAM_SETS;
        sps.truncate(cap);
        pps.truncate(cap);
        vps.truncate(cap);
        let record = if hevc {
            h265::HevcConfig::from_parameter_sets(vps, sps, pps).map(|c| c.to_bytes())
        } else {
            h264::AvcConfig::from_parameter_sets(sps, pps).map(|c| c.to_bytes())
        };
        match record {
            Ok(r) if s.config.as_ref() != Some(&r) => {
                s.config = Some(r.clone());
                out.push_back(frame(s.codec, FrameFlags::CONFIG, pts, dts, r));
            }
            Ok(_) => {}
            Err(e) => debug!(%e, "MPEG-TS: bad in-band parameter sets"),
        }
    }
    if au.is_empty() {
        return true;
    }
    if s.config.is_none() {
        return false;
    }
    let flags = if key {
        FrameFlags::KEYFRAME
    } else {
        FrameFlags::NONE
    };
    out.push_back(frame(s.codec, flags, pts, dts, au.freeze()));
    true
}

/// Position of the first `00 00 01` start code (H.264 Annex B.1) at or after
/// `from`. Skips 8 bytes at a time while a word holds no zero byte (a start
/// code begins with one), so long slices are scanned at memory speed.
fn find_start_code(data: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while let Some(w) = data.get(i..i + 8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let x = u64::from_le_bytes(b);
        if x.wrapping_sub(LO) & !x & HI != 0 {
            for j in i..i + 8 {
                if data.get(j..j + 3) == Some(&[0, 0, 1][..]) {
                    return Some(j);
                }
            }
        }
        i += 8;
    }
    (i..data.len()).find(|&j| data.get(j..j + 3) == Some(&[0, 0, 1][..]))
}

/// Iterates the NAL units of an Annex-B buffer: bytes between start codes,
/// without trailing zero bytes (which belong to a 4-byte start code or are
/// `trailing_zero_8bits`); bytes before the first start code are ignored.
struct AnnexB<'a> {
    data: &'a [u8],
    next: Option<usize>,
}

impl<'a> AnnexB<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            next: find_start_code(data, 0),
        }
    }
}

impl<'a> Iterator for AnnexB<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let start = self.next? + 3;
            let following = find_start_code(self.data, start);
            self.next = following;
            let mut end = following.unwrap_or(self.data.len());
            while end > start && self.data.get(end - 1) == Some(&0) {
                end -= 1;
            }
            match self.data.get(start..end) {
                Some(u) if !u.is_empty() => return Some(u),
                _ => continue,
            }
        }
    }
}

/// Splits an ADTS PES payload into raw AAC frames.
fn aac_pes(s: &mut Stream, data: &Bytes, pts: i64, out: &mut VecDeque<Frame>) -> bool {
    let mut samples: i64 = 0;
    for r in aac::iter_adts(data) {
        let Ok((h, raw)) = r else {
            return false;
        };
        let rate = i64::from(h.sampling_frequency().max(1));
        // Rounded to nearest, as ffmpeg's parsers do.
        let t = pts + (samples * i64::from(TIMEBASE) + rate / 2) / rate;
        let cfg = h.to_config().to_bytes();
        if s.config.as_ref() != Some(&cfg) {
            s.config = Some(cfg.clone());
            out.push_back(frame(Codec::Aac, FrameFlags::CONFIG, t, t, cfg));
        }
        out.push_back(frame(Codec::Aac, FrameFlags::KEYFRAME, t, t, raw));
        samples += 1024 * i64::from(h.raw_blocks);
    }
    true
}

/// Samples (at 48 kHz) in an Opus packet, from its TOC byte (RFC 6716 §3.1).
pub(crate) fn opus_packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame = match config {
        // SILK: 10, 20, 40, 60 ms.
        0..=11 => match config & 3 {
            0 => 480,
            1 => 960,
            2 => 1920,
            _ => 2880,
        },
        // Hybrid: 10, 20 ms.
        12..=15 => 480 << (config & 1),
        // CELT: 2.5, 5, 10, 20 ms.
        _ => 120 << (config & 3),
    };
    let count = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3F),
    };
    Some(frame * count)
}

/// Splits an Opus-in-TS PES payload (control header + access unit, repeated).
fn opus_pes(s: &mut Stream, data: &Bytes, pts: i64, out: &mut VecDeque<Frame>) -> bool {
    let cfg = OpusHead::new(s.opus_channels).to_bytes();
    if s.config.as_ref() != Some(&cfg) {
        s.config = Some(cfg.clone());
        out.push_back(frame(Codec::Opus, FrameFlags::CONFIG, pts, pts, cfg));
    }
    let mut pos = 0usize;
    let mut samples: i64 = 0;
    while pos < data.len() {
        let (Some(&b0), Some(&b1)) = (data.get(pos), data.get(pos + 1)) else {
            return false;
        };
        if b0 != 0x7F || b1 & 0xE0 != 0xE0 {
            return false;
        }
        pos += 2;
        let mut size = 0usize;
        loop {
            let Some(&b) = data.get(pos) else {
                return false;
            };
            pos += 1;
            size += usize::from(b);
            if b != 0xFF {
                break;
            }
        }
        if b1 & 0x10 != 0 {
            pos += 2;
        }
        if b1 & 0x08 != 0 {
            pos += 2;
        }
        if b1 & 0x04 != 0 {
            pos += 1 + usize::from(data.get(pos).copied().unwrap_or(0));
        }
        let Some(end) = pos.checked_add(size).filter(|e| *e <= data.len()) else {
            return false;
        };
        let packet = data.slice(pos..end);
        pos = end;
        let t = pts + samples * 15 / 8; // 48 kHz → 90 kHz
        samples += i64::from(opus_packet_samples(&packet).unwrap_or(960));
        out.push_back(frame(Codec::Opus, FrameFlags::KEYFRAME, t, t, packet));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The word-at-a-time splitter agrees with the codec helper.
        #[test]
        fn annex_b_split_matches_reference(
            parts in prop::collection::vec((prop::collection::vec(0u8..4, 0..40), any::<bool>()), 0..12),
            lead in prop::collection::vec(0u8..3, 0..10),
        ) {
            let mut data = lead;
            for (p, four) in &parts {
                data.extend_from_slice(if *four { &[0, 0, 0, 1][..] } else { &[0, 0, 1][..] });
                data.extend_from_slice(p);
            }
            let ours: Vec<&[u8]> = AnnexB::new(&data).collect();
            prop_assert_eq!(ours, h264::split_annex_b(&data));
        }
    }

    /// Every H.265 IRAP picture (CRA of an open GOP included) is a keyframe;
    /// leading (RASL/RADL) and trailing pictures are not (H.265 §3.73, §8.1.3).
    #[test]
    #[allow(clippy::unwrap_used)]
    fn h265_irap_pictures_are_keyframes() {
        // libx265 VPS / SPS / PPS (1280x720, Main).
        const PS: &[u8] = &[
            0, 0, 0, 1, 0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00,
            0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x5d, 0x95, 0x98, 0x09, 0, 0, 0, 1,
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
            0x00, 0x03, 0x00, 0x5d, 0xa0, 0x02, 0x80, 0x80, 0x2d, 0x16, 0x59, 0x59, 0xa4, 0x93,
            0x2b, 0xc0, 0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x32,
            0x10, 0, 0, 0, 1, 0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40,
        ];
        let mut s = Stream {
            pid: 0x100,
            codec: Codec::H265,
            opus_channels: 0,
            cc: None,
            pes: BytesMut::new(),
            last_len: 0,
            discontinuity: false,
            active: true,
            config: None,
        };
        let mut out = VecDeque::new();
        // Parameter sets + CRA (the access unit x265 repeats every keyint).
        let mut cra = PS.to_vec();
        cra.extend_from_slice(&[0, 0, 0, 1, h265::NAL_CRA << 1, 0x01, 0xaf, 0x10]);
        assert!(video_au(&mut s, &Bytes::from(cra), 0, 0, &mut out));
        let config = out.pop_front().unwrap();
        assert!(config.is_config());
        let f = out.pop_front().unwrap();
        assert!(f.is_keyframe() && !f.is_config());
        assert_eq!(h265::hvcc_picture_type(&f.payload), Some(h265::NAL_CRA));
        for t in 0..32u8 {
            let au = Bytes::from(vec![0, 0, 0, 1, t << 1, 0x01, 0xaf, 0x10]);
            assert!(video_au(&mut s, &au, 0, 0, &mut out));
            let f = out.pop_front().unwrap();
            assert_eq!(f.is_keyframe(), (16..=23).contains(&t), "type {t}");
            assert!(out.is_empty());
        }
    }

    #[test]
    fn opus_durations() {
        assert_eq!(opus_packet_samples(&[0xFC]), Some(960)); // CELT 20 ms, 1 frame
        assert_eq!(opus_packet_samples(&[0x19]), Some(5760)); // SILK 60 ms, 2 frames
        assert_eq!(opus_packet_samples(&[0x63, 0x03]), Some(480 * 3)); // Hybrid 10 ms, code 3, 3 frames
        assert_eq!(opus_packet_samples(&[0x7B, 0x03]), Some(960 * 3)); // Hybrid 20 ms
        assert_eq!(opus_packet_samples(&[0x7B]), None);
        assert_eq!(opus_packet_samples(&[]), None);
    }
}
