//! FLV tag bodies ↔ [`Frame`]s: the media mapping of RTMP.
//!
//! Ingest reads the body of an RTMP audio (type 8) or video (type 9) message,
//! which is an FLV `AUDIODATA` / `VIDEODATA` tag body (FLV spec v10.1
//! Annex E.4.2 / E.4.3), in either form:
//! - legacy: H.264 (CodecID 7, `AVCPacketType` + SI24 composition time), HEVC
//!   under the de-facto CodecID 12 (same layout), AAC (SoundFormat 10);
//! - Enhanced RTMP (veovera E-RTMP v1/v2): `IsExHeader` video with FourCC
//!   `avc1`, `hvc1`, `av01`, and `SoundFormat 9` ex-header audio with FourCC
//!   `Opus`, `mp4a`; `ModEx` prefixes are skipped and of a multitrack tag
//!   only track 0 is taken.
//!
//! Frames come out in the canonical form of [`crate::frame`]: NAL units with
//! 4-byte lengths (converted when the configuration record says otherwise,
//! and the record rewritten to say 4), timestamps in milliseconds
//! (`timebase` 1000), `pts = dts + composition time`.
//!
//! Egress writes legacy tags for H.264 and AAC (what every player reads) and
//! E-RTMP tags for H.265, AV1 and Opus.
//!
//! Errors are per tag: a caller may drop the tag and carry on, or close the
//! session. No input panics; every read is bounds-checked.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{aac, av1, h264, h265, opus, CodecError};
use crate::frame::{Codec, Frame, FrameFlags};

/// RTMP message type / FLV `TagType` of audio data (FLV spec Annex E.4.1).
pub const TAG_TYPE_AUDIO: u8 = 8;
/// RTMP message type / FLV `TagType` of video data (FLV spec Annex E.4.1).
pub const TAG_TYPE_VIDEO: u8 = 9;
/// The timebase of every frame produced here (RTMP timestamps are milliseconds).
pub const TIMEBASE: u32 = 1000;

/// Largest number of `ModEx` prefixes followed in one tag (E-RTMP v2).
const MAX_MODEX: usize = 8;
/// Largest number of tracks walked in one multitrack tag (E-RTMP v2).
const MAX_TRACKS: usize = 64;

/// FourCC of H.264 in E-RTMP.
pub const FOURCC_AVC: [u8; 4] = *b"avc1";
/// FourCC of H.265 in E-RTMP.
pub const FOURCC_HEVC: [u8; 4] = *b"hvc1";
/// FourCC of AV1 in E-RTMP.
pub const FOURCC_AV1: [u8; 4] = *b"av01";
/// FourCC of VP9 in E-RTMP.
pub const FOURCC_VP9: [u8; 4] = *b"vp09";
/// FourCC of VP8 in E-RTMP v2.
pub const FOURCC_VP8: [u8; 4] = *b"vp08";
/// FourCC of Opus in E-RTMP v2 audio.
pub const FOURCC_OPUS: [u8; 4] = *b"Opus";
/// FourCC of AAC in E-RTMP v2 audio.
pub const FOURCC_AAC: [u8; 4] = *b"mp4a";

/// Legacy `CodecID` of AVC (FLV spec Annex E.4.3.1).
const CODEC_ID_AVC: u8 = 7;
/// De-facto legacy `CodecID` of HEVC (used by several Chinese CDNs, ffmpeg ≥ 6.1 reads it).
const CODEC_ID_HEVC: u8 = 12;
/// Legacy `SoundFormat` of AAC (FLV spec Annex E.4.2.1).
const SOUND_FORMAT_AAC: u8 = 10;
/// `SoundFormat` value meaning "E-RTMP audio ex header" (E-RTMP v2).
const SOUND_FORMAT_EX: u8 = 9;

/// E-RTMP video packet types (E-RTMP v1 `VideoPacketType`).
mod vpt {
    pub const SEQUENCE_START: u8 = 0;
    pub const CODED_FRAMES: u8 = 1;
    pub const SEQUENCE_END: u8 = 2;
    pub const CODED_FRAMES_X: u8 = 3;
    pub const METADATA: u8 = 4;
    pub const MPEG2TS_SEQUENCE_START: u8 = 5;
    pub const MULTITRACK: u8 = 6;
    pub const MODEX: u8 = 7;
}

/// E-RTMP audio packet types (E-RTMP v2 `AudioPacketType`).
mod apt {
    pub const SEQUENCE_START: u8 = 0;
    pub const CODED_FRAMES: u8 = 1;
    pub const SEQUENCE_END: u8 = 2;
    pub const MULTICHANNEL_CONFIG: u8 = 4;
    pub const MULTITRACK: u8 = 5;
    pub const MODEX: u8 = 7;
}

/// `FrameType` values (FLV spec Annex E.4.3.1, E-RTMP `VideoFrameType`).
const FRAME_KEY: u8 = 1;
const FRAME_INTER: u8 = 2;
const FRAME_COMMAND: u8 = 5;

/// Why an FLV tag body could not be turned into a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlvError {
    /// The tag body is empty.
    #[error("empty tag body")]
    Empty,
    /// The tag body ended inside a header field.
    #[error("tag body truncated in {0}")]
    Truncated(&'static str),
    /// A legacy video `CodecID` other than AVC (7) / HEVC (12).
    #[error("unsupported legacy video codec id {0}")]
    UnsupportedVideoCodec(u8),
    /// A legacy `SoundFormat` other than AAC (10).
    #[error("unsupported audio sound format {0}")]
    UnsupportedSoundFormat(u8),
    /// An E-RTMP FourCC this crate does not carry.
    #[error("unsupported E-RTMP FourCC {0:?}")]
    UnsupportedFourCc([u8; 4]),
    /// A packet type the specification does not define.
    #[error("unknown {kind} packet type {value}")]
    UnknownPacketType {
        /// `"AVC"`, `"AAC"`, `"E-RTMP video"` or `"E-RTMP audio"`.
        kind: &'static str,
        /// The value.
        value: u8,
    },
    /// Too many `ModEx` prefixes or tracks.
    #[error("{0} exceeds its limit")]
    TooMany(&'static str),
    /// The codec payload (configuration record, NAL lengths) is malformed.
    #[error("bad codec payload: {0}")]
    Codec(#[from] CodecError),
}

impl FlvError {
    /// Whether the error concerns only this tag (an unsupported codec or a
    /// malformed payload) so a session may drop the tag, log it and carry on;
    /// `false` only for structurally broken tag headers.
    pub fn is_tag_local(&self) -> bool {
        matches!(
            self,
            FlvError::UnsupportedVideoCodec(_)
                | FlvError::UnsupportedSoundFormat(_)
                | FlvError::UnsupportedFourCc(_)
                | FlvError::Codec(_)
                | FlvError::Empty
        )
    }
}

/// Turns FLV tag bodies into frames, remembering what the configuration
/// records say about later tags (NAL unit length size).
///
/// Invariant: `avc_length_size` / `hevc_length_size` are 1, 2 or 4 and
/// describe the last sequence header accepted (4 before any).
#[derive(Debug, Clone)]
pub struct FlvDemux {
    avc_length_size: u8,
    hevc_length_size: u8,
}

impl Default for FlvDemux {
    fn default() -> Self {
        Self::new()
    }
}

/// A parsed video tag header: what follows and where.
struct VideoBody {
    codec: Codec,
    frame_type: u8,
    packet: VideoPacket,
    /// Payload after all headers.
    data: Bytes,
}

enum VideoPacket {
    Config,
    Coded { cts: i32 },
    Ignore,
}

fn byte(body: &[u8], pos: usize, what: &'static str) -> Result<u8, FlvError> {
    body.get(pos).copied().ok_or(FlvError::Truncated(what))
}

fn fourcc(body: &[u8], pos: usize) -> Result<[u8; 4], FlvError> {
    let s = body
        .get(pos..pos + 4)
        .ok_or(FlvError::Truncated("FourCC"))?;
    let mut f = [0u8; 4];
    f.copy_from_slice(s);
    Ok(f)
}

fn u24(body: &[u8], pos: usize, what: &'static str) -> Result<u32, FlvError> {
    crate::big_endian::read_be(body, pos, 3).ok_or(FlvError::Truncated(what))
}

fn si24(body: &[u8], pos: usize) -> Result<i32, FlvError> {
    let v = u24(body, pos, "composition time")?;
    Ok(((v << 8) as i32) >> 8)
}

/// Skips E-RTMP v2 `ModEx` prefixes starting at `pos` (after the first
/// header byte whose low nibble was ModEx). Returns the real packet type and
/// the position after the prefixes.
fn skip_modex(body: &[u8], mut pos: usize, modex: u8) -> Result<(u8, usize), FlvError> {
    for _ in 0..MAX_MODEX {
        let mut size = usize::from(byte(body, pos, "ModEx size")?) + 1;
        pos += 1;
        if size == 256 {
            let hi = byte(body, pos, "ModEx size")?;
            let lo = byte(body, pos + 1, "ModEx size")?;
            size = usize::from(u16::from_be_bytes([hi, lo])) + 1;
            pos += 2;
        }
        pos += size;
        // modExType (high nibble) | packetType (low nibble).
        let packet_type = byte(body, pos, "ModEx packet type")? & 0x0F;
        pos += 1;
        if packet_type != modex {
            return Ok((packet_type, pos));
        }
    }
    Err(FlvError::TooMany("ModEx prefixes"))
}

/// Track 0 of a multitrack tag.
struct Track {
    packet_type: u8,
    fourcc: [u8; 4],
    range: core::ops::Range<usize>,
}

/// Walks an E-RTMP v2 multitrack header at `pos` (the byte holding
/// `AvMultitrackType | PacketType`). Returns the packet type, FourCC and the
/// byte range of track 0, or `None` when the tag has no track 0.
fn multitrack_track0(body: &[u8], mut pos: usize) -> Result<Option<Track>, FlvError> {
    let b = byte(body, pos, "multitrack type")?;
    pos += 1;
    let (mt_type, packet_type) = (b >> 4, b & 0x0F);
    // 0 = OneTrack, 1 = ManyTracks, 2 = ManyTracksManyCodecs.
    if mt_type > 2 {
        return Err(FlvError::UnknownPacketType {
            kind: "multitrack",
            value: mt_type,
        });
    }
    let mut four = [0u8; 4];
    if mt_type != 2 {
        four = fourcc(body, pos)?;
        pos += 4;
    }
    for _ in 0..MAX_TRACKS {
        if pos >= body.len() {
            return Ok(None);
        }
        if mt_type == 2 {
            four = fourcc(body, pos)?;
            pos += 4;
        }
        let track_id = byte(body, pos, "track id")?;
        pos += 1;
        let end = if mt_type == 0 {
            body.len()
        } else {
            let size = u24(body, pos, "track size")? as usize;
            pos += 3;
            pos + size
        };
        if end > body.len() {
            return Err(FlvError::Truncated("track"));
        }
        if track_id == 0 {
            return Ok(Some(Track {
                packet_type,
                fourcc: four,
                range: pos..end,
            }));
        }
        if mt_type == 0 {
            return Ok(None);
        }
        pos = end;
    }
    Err(FlvError::TooMany("tracks"))
}

impl FlvDemux {
    /// A demuxer that has seen no sequence header yet (assumes 4-byte NAL lengths).
    pub fn new() -> Self {
        Self {
            avc_length_size: 4,
            hevc_length_size: 4,
        }
    }

    /// Maps one video tag body (RTMP message type 9) at `ts_ms` (its extended
    /// RTMP timestamp) to a frame. `Ok(None)` for tags that carry no frame:
    /// end of sequence, metadata, command frames, empty coded frames, tracks
    /// other than 0.
    pub fn video(&mut self, ts_ms: i64, body: Bytes) -> Result<Option<Frame>, FlvError> {
        let Some(v) = parse_video(&body)? else {
            return Ok(None);
        };
        self.video_frame(ts_ms, v)
    }

    fn video_frame(&mut self, ts_ms: i64, v: VideoBody) -> Result<Option<Frame>, FlvError> {
        match v.packet {
            VideoPacket::Ignore => Ok(None),
            VideoPacket::Config => {
                let payload = match v.codec {
                    Codec::H264 => {
                        let rec = h264::AvcConfig::parse(&v.data)?;
                        self.avc_length_size = rec.length_size;
                        h264::record_with_length_size4(v.data, 4)
                    }
                    Codec::H265 => {
                        let rec = h265::HevcConfig::parse(&v.data)?;
                        self.hevc_length_size = rec.length_size;
                        h264::record_with_length_size4(v.data, 21)
                    }
                    Codec::Vp8 | Codec::Vp9 => v.data,
                    _ => {
                        av1::Av1Config::parse(&v.data)?;
                        v.data
                    }
                };
                Ok(Some(Frame {
                    codec: v.codec,
                    flags: FrameFlags::CONFIG,
                    pts: ts_ms,
                    dts: ts_ms,
                    timebase: TIMEBASE,
                    payload,
                }))
            }
            VideoPacket::Coded { cts } => {
                if v.data.is_empty() {
                    return Ok(None);
                }
                let (payload, irap) = match v.codec {
                    Codec::H264 => {
                        let p = nal_units(v.data, self.avc_length_size)?;
                        let idr = h264::avcc_has_idr(&p);
                        (p, idr)
                    }
                    Codec::H265 => {
                        let p = nal_units(v.data, self.hevc_length_size)?;
                        let irap = h265::hvcc_has_irap(&p);
                        (p, irap)
                    }
                    _ => (v.data, false),
                };
                let key = v.frame_type == FRAME_KEY || irap;
                Ok(Some(Frame {
                    codec: v.codec,
                    flags: if key {
                        FrameFlags::KEYFRAME
                    } else {
                        FrameFlags::NONE
                    },
                    pts: ts_ms.saturating_add(i64::from(cts)),
                    dts: ts_ms,
                    timebase: TIMEBASE,
                    payload,
                }))
            }
        }
    }

    /// Maps one audio tag body (RTMP message type 8) at `ts_ms` to a frame.
    /// `Ok(None)` for sequence end, multichannel config, empty frames and
    /// tracks other than 0. Audio frames are always keyframes.
    pub fn audio(&mut self, ts_ms: i64, body: Bytes) -> Result<Option<Frame>, FlvError> {
        let b0 = byte(&body, 0, "audio header").map_err(|_| FlvError::Empty)?;
        let format = b0 >> 4;
        let (codec, config, data) = match format {
            SOUND_FORMAT_AAC => {
                let pt = byte(&body, 1, "AACPacketType")?;
                let config = match pt {
                    0 => true,
                    1 => false,
                    value => {
                        return Err(FlvError::UnknownPacketType { kind: "AAC", value });
                    }
                };
                (Codec::Aac, config, body.slice(2..))
            }
            SOUND_FORMAT_EX => {
                let mut pt = b0 & 0x0F;
                let mut pos = 1;
                if pt == apt::MODEX {
                    (pt, pos) = skip_modex(&body, pos, apt::MODEX)?;
                }
                let (four, range) = if pt == apt::MULTITRACK {
                    match multitrack_track0(&body, pos)? {
                        Some(t) => {
                            pt = t.packet_type;
                            (t.fourcc, t.range)
                        }
                        None => return Ok(None),
                    }
                } else {
                    let f = fourcc(&body, pos)?;
                    (f, pos + 4..body.len())
                };
                let codec = match four {
                    FOURCC_OPUS => Codec::Opus,
                    FOURCC_AAC => Codec::Aac,
                    other => return Err(FlvError::UnsupportedFourCc(other)),
                };
                let config = match pt {
                    apt::SEQUENCE_START => true,
                    apt::CODED_FRAMES => false,
                    apt::SEQUENCE_END | apt::MULTICHANNEL_CONFIG => return Ok(None),
                    value => {
                        return Err(FlvError::UnknownPacketType {
                            kind: "E-RTMP audio",
                            value,
                        })
                    }
                };
                (codec, config, body.slice(range))
            }
            other => return Err(FlvError::UnsupportedSoundFormat(other)),
        };
        if config {
            match codec {
                Codec::Opus => {
                    opus::OpusHead::parse(&data)?;
                }
                _ => {
                    aac::AacConfig::parse(&data)?;
                }
            }
        } else if data.is_empty() {
            return Ok(None);
        }
        Ok(Some(Frame {
            codec,
            flags: if config {
                FrameFlags::CONFIG
            } else {
                FrameFlags::KEYFRAME
            },
            pts: ts_ms,
            dts: ts_ms,
            timebase: TIMEBASE,
            payload: data,
        }))
    }
}

/// NAL units of a coded frame in canonical 4-byte-length form. Some cameras
/// put Annex-B start codes in FLV; when the length-prefixed reading fails and
/// the data starts with a start code it is converted from Annex-B instead.
fn nal_units(data: Bytes, length_size: u8) -> Result<Bytes, FlvError> {
    match h264::to_avcc4(data.clone(), usize::from(length_size)) {
        Ok(p) => Ok(p),
        Err(e) => {
            if data.starts_with(&[0, 0, 1]) || data.starts_with(&[0, 0, 0, 1]) {
                let p = h264::annex_b_to_avcc(&data);
                if !p.is_empty() {
                    return Ok(p);
                }
            }
            Err(e.into())
        }
    }
}

fn parse_video(body: &Bytes) -> Result<Option<VideoBody>, FlvError> {
    let b0 = byte(body, 0, "video header").map_err(|_| FlvError::Empty)?;
    if b0 & 0x80 == 0 {
        // Legacy VIDEODATA (FLV spec Annex E.4.3.1).
        let frame_type = b0 >> 4;
        let codec = match b0 & 0x0F {
            CODEC_ID_AVC => Codec::H264,
            CODEC_ID_HEVC => Codec::H265,
            other => {
                if frame_type == FRAME_COMMAND {
                    return Ok(None);
                }
                return Err(FlvError::UnsupportedVideoCodec(other));
            }
        };
        if frame_type == FRAME_COMMAND {
            return Ok(None);
        }
        let pt = byte(body, 1, "AVCPacketType")?;
        let packet = match pt {
            0 => VideoPacket::Config,
            1 => VideoPacket::Coded {
                cts: si24(body, 2)?,
            },
            // End of sequence: some encoders omit the composition time.
            2 => return Ok(None),
            value => return Err(FlvError::UnknownPacketType { kind: "AVC", value }),
        };
        if body.len() < 5 {
            return Err(FlvError::Truncated("composition time"));
        }
        return Ok(Some(VideoBody {
            codec,
            frame_type,
            packet,
            data: body.slice(5..),
        }));
    }
    // E-RTMP ExVideoTagHeader.
    let frame_type = (b0 >> 4) & 0x07;
    let mut pt = b0 & 0x0F;
    let mut pos = 1;
    if pt == vpt::MODEX {
        (pt, pos) = skip_modex(body, pos, vpt::MODEX)?;
    }
    let (four, range) = if pt == vpt::MULTITRACK {
        match multitrack_track0(body, pos)? {
            Some(t) => {
                pt = t.packet_type;
                (t.fourcc, t.range)
            }
            None => return Ok(None),
        }
    } else {
        let f = fourcc(body, pos)?;
        (f, pos + 4..body.len())
    };
    if frame_type == FRAME_COMMAND && pt != vpt::METADATA {
        return Ok(None);
    }
    let codec = match four {
        FOURCC_AVC => Codec::H264,
        FOURCC_HEVC => Codec::H265,
        FOURCC_AV1 => Codec::Av1,
        FOURCC_VP9 => Codec::Vp9,
        FOURCC_VP8 => Codec::Vp8,
        other => return Err(FlvError::UnsupportedFourCc(other)),
    };
    let mut start = range.start;
    let packet = match pt {
        vpt::SEQUENCE_START => VideoPacket::Config,
        // Only AVC and HEVC CodedFrames carry a composition time.
        vpt::CODED_FRAMES if matches!(codec, Codec::H264 | Codec::H265) => {
            let cts = si24(body, start)?;
            start += 3;
            VideoPacket::Coded { cts }
        }
        vpt::CODED_FRAMES | vpt::CODED_FRAMES_X => VideoPacket::Coded { cts: 0 },
        vpt::SEQUENCE_END | vpt::METADATA | vpt::MPEG2TS_SEQUENCE_START => VideoPacket::Ignore,
        value => {
            return Err(FlvError::UnknownPacketType {
                kind: "E-RTMP video",
                value,
            })
        }
    };
    if start > range.end {
        return Err(FlvError::Truncated("video payload"));
    }
    Ok(Some(VideoBody {
        codec,
        frame_type,
        packet,
        data: body.slice(start..range.end),
    }))
}

/// The RTMP message type / FLV tag type that carries `codec`.
pub fn tag_type(codec: Codec) -> u8 {
    match codec.kind() {
        crate::frame::MediaKind::Video => TAG_TYPE_VIDEO,
        crate::frame::MediaKind::Audio => TAG_TYPE_AUDIO,
    }
}

/// The RTMP timestamp (milliseconds, before 32-bit truncation) of the tag carrying `frame`: its dts.
pub fn tag_timestamp_ms(frame: &Frame) -> i64 {
    frame.dts_in(TIMEBASE)
}

/// The tag header bytes for `frame` (at most 9 bytes): the first part of
/// [`frame_to_tag_body`], for callers that send header and payload as two slices.
pub fn tag_header(frame: &Frame) -> heapless::Vec<u8, 16> {
    let mut h = heapless::Vec::new();
    let config = frame.is_config();
    let frame_type = if config || frame.is_keyframe() {
        FRAME_KEY
    } else {
        FRAME_INTER
    };
    let cts = if config {
        0
    } else {
        (frame.pts_in(TIMEBASE) - frame.dts_in(TIMEBASE)).clamp(-0x80_0000, 0x7F_FFFF) as i32
    };
    let cts_bytes = {
        let b = cts.to_be_bytes();
        [b[1], b[2], b[3]]
    };
    let mut push = |bytes: &[u8]| {
        let _ = h.extend_from_slice(bytes);
    };
    match frame.codec {
        Codec::H264 => {
            push(&[(frame_type << 4) | CODEC_ID_AVC, u8::from(!config)]);
            push(&cts_bytes);
        }
        Codec::H265 => {
            let pt = if config {
                vpt::SEQUENCE_START
            } else if cts != 0 {
                vpt::CODED_FRAMES
            } else {
                vpt::CODED_FRAMES_X
            };
            push(&[0x80 | (frame_type << 4) | pt]);
            push(&FOURCC_HEVC);
            if pt == vpt::CODED_FRAMES {
                push(&cts_bytes);
            }
        }
        Codec::Av1 => {
            let pt = if config {
                vpt::SEQUENCE_START
            } else {
                vpt::CODED_FRAMES
            };
            push(&[0x80 | (frame_type << 4) | pt]);
            push(&FOURCC_AV1);
        }
        Codec::Vp8 | Codec::Vp9 => {
            let pt = if config {
                vpt::SEQUENCE_START
            } else {
                vpt::CODED_FRAMES
            };
            push(&[0x80 | (frame_type << 4) | pt]);
            push(if frame.codec == Codec::Vp9 {
                &FOURCC_VP9
            } else {
                &FOURCC_VP8
            });
        }
        Codec::Aac => push(&[(SOUND_FORMAT_AAC << 4) | 0x0F, u8::from(!config)]),
        Codec::Opus => {
            let pt = if config {
                apt::SEQUENCE_START
            } else {
                apt::CODED_FRAMES
            };
            push(&[(SOUND_FORMAT_EX << 4) | pt]);
            push(&FOURCC_OPUS);
        }
    }
    h
}

/// Builds the FLV tag body (header + payload, one contiguous buffer) that
/// carries `frame`: legacy tags for H.264 (FLV Annex E.4.3) and AAC
/// (Annex E.4.2, `0xAF`), E-RTMP tags for H.265 (`hvc1`, CodedFramesX when
/// the composition time is 0), AV1 (`av01`), VP9 (`vp09`), VP8 (`vp08`,
/// E-RTMP v2) and Opus (`Opus`). Timestamps
/// of other timebases are converted to milliseconds; the composition time is
/// clamped to SI24. Build it once per frame per stream.
pub fn frame_to_tag_body(frame: &Frame) -> Bytes {
    let h = tag_header(frame);
    let mut out = BytesMut::with_capacity(h.len() + frame.payload.len());
    out.extend_from_slice(&h);
    out.put_slice(&frame.payload);
    out.freeze()
}

/// Length of the FLV file header plus `PreviousTagSize0` (FLV spec Annex E.2, E.3).
pub const FILE_HEADER_LEN: usize = 13;
/// Length of an FLV tag header (FLV spec Annex E.4.1).
pub const TAG_HEADER_LEN: usize = 11;
/// Largest tag body accepted by [`read_tag`] (the 24-bit `DataSize` limit).
pub const MAX_TAG_BODY: usize = 0xFF_FFFF;

/// The FLV file header and `PreviousTagSize0` (FLV spec Annex E.2): for
/// writing an `.flv` file or an HTTP-FLV stream.
pub fn file_header(has_audio: bool, has_video: bool) -> [u8; FILE_HEADER_LEN] {
    let flags = (u8::from(has_audio) << 2) | u8::from(has_video);
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// Appends one FLV tag (header, `body`, `PreviousTagSize`, FLV spec Annex
/// E.3–E.4.1) to `out`. The timestamp is truncated to the 32-bit FLV clock;
/// a body longer than [`MAX_TAG_BODY`] is cut at that size.
pub fn write_tag(out: &mut BytesMut, tag_type: u8, timestamp_ms: i64, body: &[u8]) {
    let body = body.get(..body.len().min(MAX_TAG_BODY)).unwrap_or_default();
    let len = body.len() as u32;
    let ts = timestamp_ms as u32;
    out.reserve(TAG_HEADER_LEN + body.len() + 4);
    out.put_u8(tag_type & 0x1F);
    out.put_uint(u64::from(len), 3);
    out.put_uint(u64::from(ts & 0xFF_FFFF), 3);
    out.put_u8((ts >> 24) as u8);
    out.put_uint(0, 3);
    out.put_slice(body);
    out.put_u32(len + TAG_HEADER_LEN as u32);
}

/// One tag read from an FLV byte stream by [`read_tag`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTag {
    /// `TagType` (8 audio, 9 video, 18 script data).
    pub tag_type: u8,
    /// The 32-bit timestamp in milliseconds (`Timestamp` + `TimestampExtended`).
    pub timestamp_ms: u32,
    /// The tag body (zero-copy slice).
    pub body: Bytes,
}

/// Reads the tag at the start of `data` (after the file header: a tag
/// followed by its `PreviousTagSize`). Returns the tag and the bytes it
/// used, or `Ok(None)` when more input is needed.
pub fn read_tag(data: &Bytes) -> Result<Option<(RawTag, usize)>, FlvError> {
    let Some(h) = data.get(..TAG_HEADER_LEN) else {
        return Ok(None);
    };
    let b = |i: usize| u32::from(h.get(i).copied().unwrap_or(0));
    if b(0) & 0x20 != 0 {
        return Err(FlvError::UnknownPacketType {
            kind: "FLV tag (encrypted)",
            value: b(0) as u8,
        });
    }
    let len = ((b(1) << 16) | (b(2) << 8) | b(3)) as usize;
    let ts = (b(7) << 24) | (b(4) << 16) | (b(5) << 8) | b(6);
    let total = TAG_HEADER_LEN + len + 4;
    if data.len() < total {
        return Ok(None);
    }
    Ok(Some((
        RawTag {
            tag_type: (b(0) & 0x1F) as u8,
            timestamp_ms: ts,
            body: data.slice(TAG_HEADER_LEN..TAG_HEADER_LEN + len),
        },
        total,
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn frame(codec: Codec, flags: FrameFlags, dts: i64, pts: i64, payload: &[u8]) -> Frame {
        Frame {
            codec,
            flags,
            pts,
            dts,
            timebase: 1000,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    const AVCC: &[u8] = &[
        0x01, 0x64, 0x00, 0x1e, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40,
        0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x32,
        0x0f, 0x16, 0x2d, 0x96, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8,
        0xf8, 0x00,
    ];

    /// hvcC of libx265 1280x720 (VPS, SPS, PPS arrays).
    const HVCC: &[u8] = &[
        0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x5d, 0xf0, 0x00,
        0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03, 0xa0, 0x00, 0x01, 0x00, 0x18, 0x40, 0x01,
        0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x03, 0x00, 0x5d, 0x95, 0x98, 0x09, 0xa1, 0x00, 0x01, 0x00, 0x2b, 0x42, 0x01, 0x01,
        0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x5d,
        0xa0, 0x02, 0x80, 0x80, 0x2d, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b, 0xc0, 0x5a, 0x02, 0x00,
        0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x32, 0x10, 0xa2, 0x00, 0x01, 0x00, 0x07,
        0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40,
    ];

    #[test]
    fn hevc_config_validated_and_length_size_converted() {
        let mut d = FlvDemux::new();
        let mut rec = HVCC.to_vec();
        let parsed = h265::HevcConfig::parse(&Bytes::copy_from_slice(&rec)).unwrap();
        assert_eq!(parsed.codec_string(), "hvc1.1.6.L93.90");
        rec[21] = (rec[21] & !3) | 1; // 2-byte NAL lengths
        let mut body = vec![0x90, b'h', b'v', b'c', b'1'];
        body.extend_from_slice(&rec);
        let cfg = d.video(0, Bytes::from(body)).unwrap().unwrap();
        assert_eq!(&cfg.payload[..], HVCC);
        let f = d
            .video(
                40,
                Bytes::from_static(&[0x93, b'h', b'v', b'c', b'1', 0, 3, 0x26, 0x01, 0xAF]),
            )
            .unwrap()
            .unwrap();
        assert_eq!(&f.payload[..], &[0, 0, 0, 3, 0x26, 0x01, 0xAF]);
        assert!(f.is_keyframe());
        // A truncated record is an error.
        let mut body = vec![0x90, b'h', b'v', b'c', b'1'];
        body.extend_from_slice(&HVCC[..30]);
        assert!(matches!(
            d.video(0, Bytes::from(body)),
            Err(FlvError::Codec(_))
        ));
    }

    #[test]
    fn legacy_avc_ingest() {
        let mut d = FlvDemux::new();
        let mut body = vec![0x17, 0, 0, 0, 0];
        body.extend_from_slice(AVCC);
        let f = d.video(40, Bytes::from(body)).unwrap().unwrap();
        assert!(f.is_config());
        assert_eq!(f.codec, Codec::H264);
        assert_eq!(&f.payload[..], AVCC);
        // Keyframe with cts -40 (signed 24-bit).
        let body = [0x17, 1, 0xFF, 0xFF, 0xD8, 0, 0, 0, 2, 0x65, 0x88];
        let f = d
            .video(1000, Bytes::copy_from_slice(&body))
            .unwrap()
            .unwrap();
        assert!(f.is_keyframe());
        assert_eq!((f.dts, f.pts), (1000, 960));
        assert_eq!(&f.payload[..], &[0, 0, 0, 2, 0x65, 0x88]);
        // Inter frame with IDR NAL inside is upgraded to keyframe; without it is not.
        let f = d
            .video(
                1040,
                Bytes::from_static(&[0x27, 1, 0, 0, 80, 0, 0, 0, 1, 0x41]),
            )
            .unwrap()
            .unwrap();
        assert!(!f.is_keyframe());
        assert_eq!(f.pts, 1120);
        // End of sequence.
        assert!(d
            .video(0, Bytes::from_static(&[0x17, 2, 0, 0, 0]))
            .unwrap()
            .is_none());
        // Truncated NAL.
        let e = d
            .video(0, Bytes::from_static(&[0x27, 1, 0, 0, 0, 0, 0, 0, 9, 0x41]))
            .unwrap_err();
        assert!(e.is_tag_local());
        // Annex-B inside FLV (some IP cameras) is converted.
        let f = d
            .video(
                0,
                Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65, 0x88, 0, 0, 1, 0x06, 5]),
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            &f.payload[..],
            &[0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 2, 0x06, 5]
        );
        assert!(f.is_keyframe());
    }

    #[test]
    fn avc_length_size_two_is_converted() {
        let mut d = FlvDemux::new();
        let mut rec = AVCC.to_vec();
        rec[4] = 0xFD; // lengthSizeMinusOne = 1
        let mut body = vec![0x17, 0, 0, 0, 0];
        body.extend_from_slice(&rec);
        let cfg = d.video(0, Bytes::from(body)).unwrap().unwrap();
        assert_eq!(cfg.payload[4], 0xFF, "record rewritten to 4-byte lengths");
        let f = d
            .video(
                0,
                Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 2, 0x65, 0x88, 0, 1, 0x06]),
            )
            .unwrap()
            .unwrap();
        assert_eq!(&f.payload[..], &[0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 1, 0x06]);
    }

    #[test]
    fn legacy_aac() {
        assert!(matches!(
            FlvDemux::new().audio(5, Bytes::from_static(&[0xAF, 0, 0x00])),
            Err(FlvError::Codec(_))
        ));
        let f = FlvDemux::new()
            .audio(5, Bytes::from_static(&[0xAF, 0, 0x12, 0x10]))
            .unwrap()
            .unwrap();
        assert!(f.is_config());
        assert_eq!(&f.payload[..], &[0x12, 0x10]);
        let f = FlvDemux::new()
            .audio(26, Bytes::from_static(&[0xAF, 1, 0x21, 0x10]))
            .unwrap()
            .unwrap();
        assert!(f.is_keyframe() && !f.is_config());
        assert_eq!((f.pts, f.dts), (26, 26));
        assert_eq!(
            FlvDemux::new().audio(0, Bytes::from_static(&[0x2F, 1])),
            Err(FlvError::UnsupportedSoundFormat(2))
        );
        assert_eq!(FlvDemux::new().audio(0, Bytes::new()), Err(FlvError::Empty));
    }

    #[test]
    fn enhanced_hevc_and_modex() {
        // CodedFrames (pt 1) with cts 33, keyframe.
        let body = [
            0x91, b'h', b'v', b'c', b'1', 0, 0, 33, 0, 0, 0, 3, 0x26, 0x01, 0xAA,
        ];
        let f = FlvDemux::new()
            .video(100, Bytes::copy_from_slice(&body))
            .unwrap()
            .unwrap();
        assert_eq!((f.codec, f.dts, f.pts), (Codec::H265, 100, 133));
        assert!(f.is_keyframe());
        // Same via a ModEx prefix (1 byte of modExData, type 0) then CodedFramesX.
        let body = [
            0xA7, 0x00, 0x55, 0x03, b'h', b'v', b'c', b'1', 0, 0, 0, 3, 0x02, 0x01, 0xAA,
        ];
        let f = FlvDemux::new()
            .video(100, Bytes::copy_from_slice(&body))
            .unwrap()
            .unwrap();
        assert_eq!((f.codec, f.dts, f.pts), (Codec::H265, 100, 100));
        assert!(!f.is_keyframe());
        // Metadata and command frames carry no frame.
        assert!(FlvDemux::new()
            .video(0, Bytes::from_static(&[0x94, b'h', b'v', b'c', b'1', 2]))
            .unwrap()
            .is_none());
        assert!(FlvDemux::new()
            .video(0, Bytes::from_static(&[0xD1, b'h', b'v', b'c', b'1', 0]))
            .unwrap()
            .is_none());
        assert_eq!(
            FlvDemux::new().video(0, Bytes::from_static(&[0x91, b'v', b'v', b'c', b'1'])),
            Err(FlvError::UnsupportedFourCc(*b"vvc1"))
        );
        // VP9 (E-RTMP `vp09`): CodedFrames carry no composition time.
        let f = FlvDemux::new()
            .video(
                7,
                Bytes::from_static(&[0x91, b'v', b'p', b'0', b'9', 0x82, 0x49]),
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            (f.codec, f.is_keyframe(), f.payload.as_ref(), f.pts),
            (Codec::Vp9, true, &[0x82, 0x49][..], 7)
        );
    }

    #[test]
    fn multitrack_takes_track_zero() {
        // ManyTracks (1), CodedFramesX (3), av01: track 1 (2 bytes) then track 0 (3 bytes).
        let body = [
            0x96, 0x13, b'a', b'v', b'0', b'1', 1, 0, 0, 2, 0xEE, 0xEE, 0, 0, 0, 3, 0x12, 0, 0x0A,
        ];
        let f = FlvDemux::new()
            .video(7, Bytes::copy_from_slice(&body))
            .unwrap()
            .unwrap();
        assert_eq!(f.codec, Codec::Av1);
        assert_eq!(&f.payload[..], &[0x12, 0, 0x0A]);
        assert!(f.is_keyframe());
        // Only track 1: nothing.
        let body = [0x96, 0x13, b'a', b'v', b'0', b'1', 1, 0, 0, 1, 0xEE];
        assert!(FlvDemux::new()
            .video(7, Bytes::copy_from_slice(&body))
            .unwrap()
            .is_none());
        // Audio OneTrack Opus coded frame.
        let body = [0x95, 0x01, b'O', b'p', b'u', b's', 0, 0xFC, 0xFF];
        let f = FlvDemux::new()
            .audio(3, Bytes::copy_from_slice(&body))
            .unwrap()
            .unwrap();
        assert_eq!((f.codec, &f.payload[..]), (Codec::Opus, &[0xFC, 0xFF][..]));
    }

    #[test]
    fn egress_bytes() {
        let f = frame(
            Codec::H264,
            FrameFlags::KEYFRAME,
            0,
            80,
            &[0, 0, 0, 1, 0x65],
        );
        assert_eq!(
            &frame_to_tag_body(&f)[..],
            &[0x17, 1, 0, 0, 80, 0, 0, 0, 1, 0x65]
        );
        let f = frame(Codec::Aac, FrameFlags::CONFIG, 0, 0, &[0x12, 0x10]);
        assert_eq!(&frame_to_tag_body(&f)[..], &[0xAF, 0, 0x12, 0x10]);
        let f = frame(Codec::Opus, FrameFlags::KEYFRAME, 0, 0, &[0xFC]);
        assert_eq!(
            &frame_to_tag_body(&f)[..],
            &[0x91, b'O', b'p', b'u', b's', 0xFC]
        );
        let f = frame(Codec::H265, FrameFlags::NONE, 0, 0, &[0, 0, 0, 1, 0x02]);
        assert_eq!(
            &frame_to_tag_body(&f)[..],
            &[0xA3, b'h', b'v', b'c', b'1', 0, 0, 0, 1, 0x02]
        );
        // 90 kHz input is converted to milliseconds.
        let f = Frame {
            timebase: 90_000,
            dts: 90_000,
            pts: 93_600,
            ..frame(Codec::H264, FrameFlags::NONE, 0, 0, &[0, 0, 0, 1, 0x41])
        };
        assert_eq!(tag_timestamp_ms(&f), 1000);
        assert_eq!(&frame_to_tag_body(&f)[..5], &[0x27, 1, 0, 0, 40]);
        assert_eq!(tag_type(Codec::Opus), TAG_TYPE_AUDIO);
        assert_eq!(tag_type(Codec::Av1), TAG_TYPE_VIDEO);
    }

    fn nal_units(key: bool) -> impl Strategy<Value = Vec<u8>> {
        // H.264 non-IDR slices (type 1) or an IDR (type 5) first.
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..4).prop_map(
            move |units| {
                let mut out = Vec::new();
                for (i, mut u) in units.into_iter().enumerate() {
                    let t = if key && i == 0 { 0x65 } else { 0x41 };
                    u.insert(0, t);
                    out.extend_from_slice(&(u.len() as u32).to_be_bytes());
                    out.extend_from_slice(&u);
                }
                out
            },
        )
    }

    fn hevc_units(key: bool) -> impl Strategy<Value = Vec<u8>> {
        nal_units(key).prop_map(move |mut v| {
            // Rewrite NAL headers: IDR_W_RADL (19) for key, TRAIL_R (1) otherwise.
            let mut pos = 0;
            while pos + 4 < v.len() {
                let len = u32::from_be_bytes([v[pos], v[pos + 1], v[pos + 2], v[pos + 3]]) as usize;
                v[pos + 4] = if key && pos == 0 { 19 << 1 } else { 1 << 1 };
                pos += 4 + len;
            }
            v
        })
    }

    fn any_frame() -> impl Strategy<Value = Frame> {
        let dts = -(1i64 << 40)..(1i64 << 40);
        let cts = -0x80_0000i64..0x80_0000;
        prop_oneof![
            (dts.clone(), cts.clone(), any::<bool>()).prop_flat_map(|(d, c, k)| nal_units(k)
                .prop_map(move |p| frame(
                    Codec::H264,
                    if k {
                        FrameFlags::KEYFRAME
                    } else {
                        FrameFlags::NONE
                    },
                    d,
                    d + c,
                    &p
                ))),
            (dts.clone(), cts, any::<bool>()).prop_flat_map(|(d, c, k)| hevc_units(k).prop_map(
                move |p| frame(
                    Codec::H265,
                    if k {
                        FrameFlags::KEYFRAME
                    } else {
                        FrameFlags::NONE
                    },
                    d,
                    d + c,
                    &p
                )
            )),
            (
                dts.clone(),
                any::<bool>(),
                prop::collection::vec(any::<u8>(), 1..64)
            )
                .prop_map(|(d, k, p)| frame(
                    Codec::Av1,
                    if k {
                        FrameFlags::KEYFRAME
                    } else {
                        FrameFlags::NONE
                    },
                    d,
                    d,
                    &p
                )),
            (
                dts.clone(),
                any::<bool>(),
                any::<bool>(),
                prop::collection::vec(any::<u8>(), 1..64)
            )
                .prop_map(|(d, vp9, k, p)| frame(
                    if vp9 { Codec::Vp9 } else { Codec::Vp8 },
                    if k {
                        FrameFlags::KEYFRAME
                    } else {
                        FrameFlags::NONE
                    },
                    d,
                    d,
                    &p
                )),
            (dts.clone(), prop::collection::vec(any::<u8>(), 1..64)).prop_map(|(d, p)| frame(
                Codec::Aac,
                FrameFlags::KEYFRAME,
                d,
                d,
                &p
            )),
            (dts.clone(), prop::collection::vec(any::<u8>(), 1..64)).prop_map(|(d, p)| frame(
                Codec::Opus,
                FrameFlags::KEYFRAME,
                d,
                d,
                &p
            )),
            (
                dts.clone(),
                1u8..=4,
                prop::sample::select(vec![8000u32, 44_100, 48_000, 50_000]),
                1u8..=7
            )
                .prop_map(|(d, aot, rate, ch)| {
                    let asc = aac::AacConfig::new(aot, rate, ch).to_bytes();
                    frame(Codec::Aac, FrameFlags::CONFIG, d, d, &asc)
                }),
            (dts.clone(), 1u8..=2, any::<u16>()).prop_map(|(d, ch, skip)| {
                let head = opus::OpusHead {
                    pre_skip: skip,
                    ..opus::OpusHead::new(ch)
                };
                frame(Codec::Opus, FrameFlags::CONFIG, d, d, &head.to_bytes())
            }),
            dts.clone()
                .prop_map(|d| frame(Codec::H265, FrameFlags::CONFIG, d, d, HVCC)),
            dts.clone()
                .prop_map(|d| frame(Codec::H264, FrameFlags::CONFIG, d, d, AVCC)),
            (dts, prop::collection::vec(any::<u8>(), 3..32)).prop_map(|(d, mut p)| {
                p.insert(0, 0x81);
                frame(Codec::Av1, FrameFlags::CONFIG, d, d, &p)
            }),
        ]
    }

    fn ingest(d: &mut FlvDemux, f: &Frame) -> Option<Frame> {
        let body = frame_to_tag_body(f);
        let ts = tag_timestamp_ms(f);
        match tag_type(f.codec) {
            TAG_TYPE_VIDEO => d.video(ts, body).unwrap(),
            _ => d.audio(ts, body).unwrap(),
        }
    }

    proptest! {
        #[test]
        fn round_trip(f in any_frame()) {
            let mut d = FlvDemux::new();
            prop_assert_eq!(ingest(&mut d, &f), Some(f));
        }

        #[test]
        fn file_tags_round_trip(
            tags in prop::collection::vec((prop::sample::select(vec![8u8, 9, 18]), any::<u32>(), prop::collection::vec(any::<u8>(), 0..40)), 0..8)
        ) {
            let mut out = BytesMut::new();
            out.extend_from_slice(&file_header(true, true));
            for (t, ts, body) in &tags {
                write_tag(&mut out, *t, i64::from(*ts), body);
            }
            let all = out.freeze();
            prop_assert_eq!(&all[..5], b"FLV\x01\x05");
            let mut rest = all.slice(FILE_HEADER_LEN..);
            for (t, ts, body) in &tags {
                // Any prefix asks for more input, never errors.
                for cut in [0, 5, TAG_HEADER_LEN, rest.len().saturating_sub(1)] {
                    if cut < TAG_HEADER_LEN + body.len() + 4 {
                        prop_assert_eq!(read_tag(&rest.slice(..cut.min(rest.len()))).unwrap(), None);
                    }
                }
                let (tag, used) = read_tag(&rest).unwrap().unwrap();
                prop_assert_eq!((tag.tag_type, tag.timestamp_ms, &tag.body[..]), (*t, *ts, &body[..]));
                rest = rest.slice(used..);
            }
            prop_assert!(rest.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..64), ts in any::<i64>()) {
            let mut d = FlvDemux::new();
            let _ = d.video(ts, Bytes::from(body.clone()));
            let _ = d.audio(ts, Bytes::from(body));
        }

        #[test]
        fn structured_headers_never_panic(
            b0 in any::<u8>(),
            pt in any::<u8>(),
            rest in prop::collection::vec(any::<u8>(), 0..48),
            four in prop::sample::select(vec![*b"avc1", *b"hvc1", *b"av01", *b"Opus", *b"mp4a"]),
        ) {
            let mut d = FlvDemux::new();
            let mut v = vec![b0 | 0x80];
            v.extend_from_slice(&four);
            v.extend_from_slice(&rest);
            let _ = d.video(0, Bytes::from(v.clone()));
            v[0] = 0x90 | (b0 & 0x0F);
            let _ = d.audio(0, Bytes::from(v));
            let mut l = vec![b0, pt];
            l.extend_from_slice(&rest);
            let _ = d.video(0, Bytes::from(l.clone()));
            let _ = d.audio(0, Bytes::from(l));
        }
    }
}
