//! A synthetic H.264 + AAC stream at a chosen bitrate, for `arcly-load
//! --publish`: real codec configuration records (an x264 720p SPS/PPS and an
//! AAC-LC AudioSpecificConfig), then access units of the right size and
//! cadence whose bodies are filler. Servers relay it like a real stream;
//! decoders would not show a picture.

use bytes::{BufMut, Bytes, BytesMut};

use arcly::frame::{Codec, Frame, FrameFlags};

/// An x264 (preset ultrafast) SPS for 1280x720, constrained baseline 3.1.
const SPS: [u8; 23] = [
    0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40,
    0x00, 0x00, 0x0c, 0x83, 0xc6, 0x0c, 0xa8,
];
/// The matching PPS.
const PPS: [u8; 4] = [0x68, 0xce, 0x0f, 0xc8];
/// AudioSpecificConfig: AAC-LC, 44.1 kHz, stereo (ISO/IEC 14496-3 §1.6.2.1).
const ASC: [u8; 2] = [0x12, 0x10];
/// AAC samples per access unit.
const AAC_FRAME_SAMPLES: i64 = 1024;
/// AAC sample rate of [`ASC`].
const AAC_RATE: i64 = 44_100;

/// Settings of a [`SynthStream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthConfig {
    /// Video bitrate, bits per second.
    pub video_bps: u64,
    /// Audio bitrate, bits per second.
    pub audio_bps: u64,
    /// Video frames per second.
    pub fps: u32,
    /// Frames per GOP (a keyframe every `gop` video frames).
    pub gop: u32,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            video_bps: 3_000_000,
            audio_bps: 128_000,
            fps: 25,
            gop: 50,
        }
    }
}

/// An endless synthetic stream; frames come out in dts order (ms timebase).
///
/// Invariant: the first two frames are the video and audio configuration
/// records; then video and audio access units interleave by dts, a keyframe
/// every `gop` video frames, keyframes four times the size of a P frame.
#[derive(Debug)]
pub struct SynthStream {
    config: SynthConfig,
    video_index: u64,
    audio_index: u64,
    configs_sent: u8,
    filler: Bytes,
}

impl SynthStream {
    /// A stream starting at dts 0.
    pub fn new(config: SynthConfig) -> Self {
        let config = SynthConfig {
            fps: config.fps.max(1),
            gop: config.gop.max(1),
            ..config
        };
        // Enough filler for the largest frame; frames are slices of it.
        let max = Self::video_sizes(&config).0 + 64;
        let filler: Vec<u8> = (0..max)
            .map(|i| (i.wrapping_mul(151) % 251) as u8 | 1)
            .collect();
        SynthStream {
            config,
            video_index: 0,
            audio_index: 0,
            configs_sent: 0,
            filler: Bytes::from(filler),
        }
    }

    /// (keyframe size, P-frame size) in bytes so that one GOP averages the
    /// video bitrate.
    fn video_sizes(c: &SynthConfig) -> (usize, usize) {
        let gop_bytes = c.video_bps as f64 / 8.0 * f64::from(c.gop) / f64::from(c.fps.max(1));
        // One keyframe weighs four P frames: gop_bytes = p * (gop - 1 + 4).
        let p = gop_bytes / (f64::from(c.gop) + 3.0);
        ((p * 4.0) as usize, p as usize)
    }

    /// The video configuration record (AVCDecoderConfigurationRecord,
    /// ISO/IEC 14496-15 §5.3.3).
    pub fn avc_config() -> Bytes {
        let mut b = BytesMut::with_capacity(16 + SPS.len() + PPS.len());
        b.put_u8(1);
        b.put_slice(SPS.get(1..4).unwrap_or_default());
        b.put_u8(0xff); // 4-byte NAL lengths
        b.put_u8(0xe1); // one SPS
        b.put_u16(SPS.len() as u16);
        b.put_slice(&SPS);
        b.put_u8(1); // one PPS
        b.put_u16(PPS.len() as u16);
        b.put_slice(&PPS);
        b.freeze()
    }

    fn next_video_dts(&self) -> i64 {
        (self.video_index as i64 * 1000) / i64::from(self.config.fps)
    }

    fn next_audio_dts(&self) -> i64 {
        (self.audio_index as i64 * AAC_FRAME_SAMPLES * 1000) / AAC_RATE
    }

    /// The dts (ms) of the frame [`next_frame`](Self::next_frame) returns next.
    pub fn peek_dts(&self) -> i64 {
        if self.configs_sent < 2 {
            return 0;
        }
        if self.config.audio_bps == 0 {
            return self.next_video_dts();
        }
        self.next_video_dts().min(self.next_audio_dts())
    }

    /// The next frame.
    pub fn next_frame(&mut self) -> Frame {
        match self.configs_sent {
            0 => {
                self.configs_sent = 1;
                return frame(Codec::H264, FrameFlags::CONFIG, 0, Self::avc_config());
            }
            1 => {
                self.configs_sent = 2;
                return frame(Codec::Aac, FrameFlags::CONFIG, 0, Bytes::from_static(&ASC));
            }
            _ => {}
        }
        let v = self.next_video_dts();
        let a = self.next_audio_dts();
        if self.config.audio_bps > 0 && a < v {
            self.audio_index += 1;
            let size = (self.config.audio_bps as i64 * AAC_FRAME_SAMPLES / AAC_RATE / 8).max(8);
            let body = self.filler.slice(0..(size as usize).min(self.filler.len()));
            return frame(Codec::Aac, FrameFlags::NONE, a, body);
        }
        let key = self.video_index % u64::from(self.config.gop) == 0;
        self.video_index += 1;
        let (k, p) = Self::video_sizes(&self.config);
        let size = if key { k } else { p }.clamp(16, self.filler.len().saturating_sub(4));
        let mut b = BytesMut::with_capacity(size + 4);
        b.put_u32((size) as u32);
        // NAL header: IDR slice (5) or non-IDR slice (1), nal_ref_idc 3 / 2.
        b.put_u8(if key { 0x65 } else { 0x41 });
        b.put_slice(self.filler.get(1..size).unwrap_or_default());
        let flags = if key {
            FrameFlags::KEYFRAME
        } else {
            FrameFlags::NONE
        };
        frame(Codec::H264, flags, v, b.freeze())
    }
}

fn frame(codec: Codec, flags: FrameFlags, dts: i64, payload: Bytes) -> Frame {
    Frame {
        codec,
        flags,
        pts: dts,
        dts,
        timebase: 1000,
        payload,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn configs_first_then_dts_order() {
        let mut s = SynthStream::new(SynthConfig::default());
        let a = s.next_frame();
        let b = s.next_frame();
        assert!(a.is_config() && a.codec == Codec::H264);
        assert!(b.is_config() && b.codec == Codec::Aac);
        assert_eq!(a.payload[0], 1);
        let mut last = -1;
        let first = s.next_frame();
        assert!(first.is_keyframe(), "stream starts on a keyframe");
        for _ in 0..1000 {
            let f = s.next_frame();
            assert!(f.dts >= last);
            last = f.dts;
        }
    }

    #[test]
    fn ten_seconds_hit_the_bitrate() {
        let cfg = SynthConfig::default();
        let mut s = SynthStream::new(cfg);
        let (mut video, mut audio, mut keys) = (0usize, 0usize, 0);
        while s.peek_dts() < 10_000 {
            let f = s.next_frame();
            if f.is_config() {
                continue;
            }
            match f.codec {
                Codec::H264 => {
                    video += f.payload.len();
                    keys += usize::from(f.is_keyframe());
                    let len = u32::from_be_bytes(f.payload[..4].try_into().unwrap()) as usize;
                    assert_eq!(len + 4, f.payload.len(), "AVCC length prefix");
                }
                _ => audio += f.payload.len(),
            }
        }
        let vbps = video as f64 * 8.0 / 10.0;
        let abps = audio as f64 * 8.0 / 10.0;
        assert!((vbps / 3_000_000.0 - 1.0).abs() < 0.02, "video {vbps}");
        assert!((abps / 128_000.0 - 1.0).abs() < 0.05, "audio {abps}");
        assert_eq!(keys, 5, "2 s GOP over 10 s");
    }
}
