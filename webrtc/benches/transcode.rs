//! CPU cost of the AAC → Opus transcoder (one stream): transcodes 1 s of
//! AAC-LC (ffmpeg's encoder, 128 kbit/s, music-like: two tones plus noise)
//! per iteration, so the time per iteration is the share of one core one
//! transcoded stream takes (e.g. 20 ms/iter = 2 % of a core).
//!
//! `cargo bench -p arcly-webrtc --bench transcode`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::process::Command;

use arcly::codec::aac::iter_adts;
use arcly::{Codec, Frame, FrameFlags};
use arcly_webrtc::AacToOpus;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};

/// 1 s of AAC at `rate` Hz stereo as engine frames (config first).
fn aac_second(rate: u32) -> Vec<Frame> {
    let src = format!(
        "aevalsrc=0.2*sin(2*PI*440*t)+0.1*sin(2*PI*1250*t)+0.05*(random(0)-0.5):s={rate}:c=stereo"
    );
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            &src,
        ])
        .args(["-t", "1", "-c:a", "aac", "-b:a", "128k", "-f", "adts", "-"])
        .output()
        .expect("ffmpeg must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = Bytes::from(out.stdout);
    let mut frames = Vec::new();
    for (i, item) in iter_adts(&data).enumerate() {
        let (h, payload) = item.unwrap();
        if i == 0 {
            frames.push(Frame {
                codec: Codec::Aac,
                flags: FrameFlags::CONFIG,
                pts: 0,
                dts: 0,
                timebase: rate,
                payload: h.to_config().to_bytes(),
            });
        }
        let pts = i as i64 * 1024;
        frames.push(Frame {
            codec: Codec::Aac,
            flags: FrameFlags::KEYFRAME,
            pts,
            dts: pts,
            timebase: rate,
            payload,
        });
    }
    frames
}

fn bench(c: &mut Criterion) {
    for rate in [44_100, 48_000] {
        let frames = aac_second(rate);
        let (config, media) = frames.split_at(1);
        let audio_ticks = media.len() as i64 * 1024;
        c.bench_function(&format!("aac_to_opus_1s_stereo_{rate}"), |b| {
            let mut t = AacToOpus::new();
            t.handle_frame(&config[0]).unwrap();
            let mut offset = 0;
            b.iter(|| {
                for f in media {
                    let mut f = f.clone();
                    f.pts += offset;
                    f.dts += offset;
                    t.handle_frame(&f).unwrap();
                    while t.poll_frame().is_some() {}
                }
                offset += audio_ticks;
            });
            assert_eq!(t.stats().resyncs, 0);
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
