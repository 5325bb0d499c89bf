//! A live publisher of synthetic H.264 + AAC into a real [`Engine`], for the
//! HTTP / HLS tests (the sans-IO router in core and `serve_http` in
//! arcly-tokio).

use arcly::engine::Publisher;
use arcly::{Codec, Engine, Frame, FrameFlags, StreamKey};
use bytes::Bytes;

use super::{config_frame, config_payload};

/// Video every 40 ms (keyframe every second), AAC 48 kHz every ~21 ms.
pub struct Feed {
    publisher: Publisher,
    video_ms: i64,
    audio_frames: i64,
}

impl Feed {
    /// Publishes `live/<name>` and sends the H.264 and AAC configs.
    pub fn start(engine: &Engine, name: &str) -> Feed {
        let mut publisher = engine
            .publish(StreamKey::new("live", name).unwrap())
            .unwrap();
        for codec in [Codec::H264, Codec::Aac] {
            publisher.send(config_frame(codec, config_payload(codec, 48_000, 2)));
        }
        Feed {
            publisher,
            video_ms: 0,
            audio_frames: 0,
        }
    }

    /// Publishes media up to (excluding) `until_ms` of media time.
    pub fn until(&mut self, until_ms: i64) {
        loop {
            // 1024 samples at 48 kHz per AAC frame.
            let audio_ms = self.audio_frames * 1024 * 1000 / 48_000;
            if self.video_ms >= until_ms && audio_ms >= until_ms {
                break;
            }
            if audio_ms <= self.video_ms && audio_ms < until_ms {
                self.publisher.send(Frame {
                    codec: Codec::Aac,
                    flags: FrameFlags::KEYFRAME,
                    pts: audio_ms,
                    dts: audio_ms,
                    timebase: 1000,
                    payload: Bytes::from_static(&[0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c]),
                });
                self.audio_frames += 1;
            } else {
                let t = self.video_ms;
                let key = t % 1000 == 0;
                let nal: &[u8] = if key {
                    &[0x65, 0x88, 0x84, 0x00, 0x33, 0xff]
                } else {
                    &[0x41, 0x9a, 0x02, 0x04, 0x0c]
                };
                let mut payload = vec![0; 4];
                payload.extend_from_slice(nal);
                payload.extend_from_slice(&[0xab; 600]);
                let len = (payload.len() - 4) as u32;
                payload[..4].copy_from_slice(&len.to_be_bytes());
                self.publisher.send(Frame {
                    codec: Codec::H264,
                    flags: if key {
                        FrameFlags::KEYFRAME
                    } else {
                        FrameFlags::NONE
                    },
                    pts: t,
                    dts: t,
                    timebase: 1000,
                    payload: Bytes::from(payload),
                });
                self.video_ms += 40;
            }
        }
    }
}

/// (msn, part) of the playlist's `EXT-X-PRELOAD-HINT` (`partMSN.PART.m4s`).
pub fn preload_hint(playlist: &str) -> (u64, u32) {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))
        .unwrap_or_else(|| panic!("no preload hint in\n{playlist}"));
    let uri = line.split("URI=\"").nth(1).unwrap().trim_end_matches('"');
    let body = uri
        .strip_prefix("part")
        .unwrap()
        .strip_suffix(".m4s")
        .unwrap();
    let (m, p) = body.split_once('.').unwrap();
    (m.parse().unwrap(), p.parse().unwrap())
}
