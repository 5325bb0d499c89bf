//! Synthetic media with a sequence number in every frame, so a test can tell
//! exactly which frames a viewer received.
//!
//! The H.264 config is a real `AVCDecoderConfigurationRecord` (x264, 320x240
//! High profile); pictures are one AVCC NAL unit (IDR type 5 for keyframes,
//! type 1 otherwise) whose first body bytes are the big-endian sequence number.

use bytes::{BufMut, Bytes, BytesMut};

use arcly::frame::{Codec, Frame, FrameFlags};

/// AVCDecoderConfigurationRecord of a 320x240 x264 stream (ISO/IEC 14496-15 §5.3.3).
pub const AVC_CONFIG: &[u8] = &[
    0x01, 0x64, 0x00, 0x0d, 0xff, 0xe1, 0x00, 0x17, 0x67, 0x64, 0x00, 0x0d, 0xac, 0xb4, 0x0a, 0x0f,
    0xd8, 0x08, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x19, 0x47, 0x8a, 0x15, 0x50, 0x01,
    0x00, 0x04, 0x68, 0xef, 0x0f, 0xcb, 0xfd, 0xf8, 0xf8, 0x00,
];

/// AudioSpecificConfig: AAC LC, 44.1 kHz, mono (ISO/IEC 14496-3 §1.6.2.1).
pub const AAC_CONFIG: &[u8] = &[0x12, 0x08];

/// The H.264 config frame.
pub fn video_config() -> Frame {
    Frame {
        codec: Codec::H264,
        flags: FrameFlags::CONFIG | FrameFlags::KEYFRAME,
        pts: 0,
        dts: 0,
        timebase: 1000,
        payload: Bytes::from_static(AVC_CONFIG),
    }
}

/// The AAC config frame.
pub fn audio_config() -> Frame {
    Frame {
        codec: Codec::Aac,
        flags: FrameFlags::CONFIG | FrameFlags::KEYFRAME,
        pts: 0,
        dts: 0,
        timebase: 1000,
        payload: Bytes::from_static(AAC_CONFIG),
    }
}

/// Video picture number `seq` at `dts_ms`, `size` payload bytes (at least 9).
pub fn video_frame(seq: u32, key: bool, dts_ms: i64, size: usize) -> Frame {
    let size = size.max(9);
    let nal_len = u32::try_from(size - 4).unwrap_or(u32::MAX);
    let mut b = BytesMut::with_capacity(size);
    b.put_u32(nal_len);
    b.put_u8(if key { 0x65 } else { 0x41 });
    b.put_u32(seq);
    b.resize(size, 0xA5);
    Frame {
        codec: Codec::H264,
        flags: if key {
            FrameFlags::KEYFRAME
        } else {
            FrameFlags::NONE
        },
        pts: dts_ms,
        dts: dts_ms,
        timebase: 1000,
        payload: b.freeze(),
    }
}

/// Audio frame number `seq` at `dts_ms` (a fake raw AAC access unit).
pub fn audio_frame(seq: u32, dts_ms: i64) -> Frame {
    let mut b = BytesMut::with_capacity(64);
    b.put_u8(0x21);
    b.put_u32(seq);
    b.resize(64, 0x5A);
    Frame {
        codec: Codec::Aac,
        flags: FrameFlags::KEYFRAME,
        pts: dts_ms,
        dts: dts_ms,
        timebase: 1000,
        payload: b.freeze(),
    }
}

/// The sequence number of a synthetic video picture (not a config frame).
pub fn video_seq(frame: &Frame) -> Option<u32> {
    if frame.codec != Codec::H264 || frame.is_config() {
        return None;
    }
    let b = frame.payload.get(5..9)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The sequence number of a synthetic audio frame.
pub fn audio_seq(frame: &Frame) -> Option<u32> {
    if frame.codec != Codec::Aac || frame.is_config() {
        return None;
    }
    let b = frame.payload.get(1..5)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// A synthetic stream's shape.
#[derive(Debug, Clone, Copy)]
pub struct SynthSpec {
    /// Video frames per second.
    pub fps: u32,
    /// Keyframe interval in frames.
    pub gop: u32,
    /// Video frames in total.
    pub frames: u32,
    /// Payload bytes of each picture.
    pub video_bytes: usize,
    /// Send an audio frame for every video frame too.
    pub audio: bool,
}

impl Default for SynthSpec {
    fn default() -> Self {
        SynthSpec {
            fps: 25,
            gop: 50,
            frames: 250,
            video_bytes: 4000,
            audio: true,
        }
    }
}

impl SynthSpec {
    /// Milliseconds between pictures.
    pub fn frame_ms(&self) -> i64 {
        1000 / i64::from(self.fps.max(1))
    }

    /// The picture `i` of the stream.
    pub fn video(&self, i: u32) -> Frame {
        video_frame(
            i,
            i % self.gop.max(1) == 0,
            i64::from(i) * self.frame_ms(),
            self.video_bytes,
        )
    }
}
