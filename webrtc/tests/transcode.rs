//! AAC → Opus on real AAC made by ffmpeg (its native AAC-LC encoder, ADTS):
//! the Opus packets decode back (libopus) to the same tone, for as long as
//! the input, with timestamps 20 ms apart on the input's timeline; lost AAC
//! frames become silence without moving the clock; the shared per-stream
//! feed starts with the first viewer and stops with the last.

#![cfg(feature = "transcode")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::process::Command;

use arcly::codec::aac::iter_adts;
use arcly::codec::opus::OpusHead;
use arcly::engine::Recv;
use arcly::{Codec, Engine, Frame, FrameFlags, StreamKey};
use arcly_webrtc::{AacToOpus, OpusFeeds, OPUS_FRAME_TICKS, OPUS_RATE};
use bytes::Bytes;

/// `seconds` of a `freq` Hz sine (ffmpeg's `sine` source: amplitude 1/8)
/// encoded as AAC-LC at `rate` Hz with `channels`, as (AudioSpecificConfig,
/// raw AAC frames).
fn aac_tone(freq: u32, rate: u32, channels: u32, seconds: f64) -> (Bytes, Vec<Bytes>) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!("sine=frequency={freq}:sample_rate={rate}"))
        .args(["-t", &seconds.to_string(), "-ac", &channels.to_string()])
        .args(["-c:a", "aac", "-b:a", "128k", "-f", "adts", "-"])
        .output()
        .expect("ffmpeg (apt-get install ffmpeg) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = Bytes::from(out.stdout);
    let mut config = None;
    let mut frames = Vec::new();
    for item in iter_adts(&data) {
        let (header, payload) = item.unwrap();
        config.get_or_insert(header.to_config().to_bytes());
        frames.push(payload);
    }
    (config.unwrap(), frames)
}

/// AAC frames as an RTMP publisher sends them: millisecond timestamps
/// (rounded down), a config frame first.
fn rtmp_frames(config: Bytes, aac: &[Bytes], rate: u32, start_ms: i64) -> Vec<Frame> {
    let mut frames = vec![Frame {
        codec: Codec::Aac,
        flags: FrameFlags::CONFIG,
        pts: start_ms,
        dts: start_ms,
        timebase: 1000,
        payload: config,
    }];
    for (i, payload) in aac.iter().enumerate() {
        let pts = start_ms + i as i64 * 1024 * 1000 / i64::from(rate);
        frames.push(Frame {
            codec: Codec::Aac,
            flags: FrameFlags::KEYFRAME,
            pts,
            dts: pts,
            timebase: 1000,
            payload: payload.clone(),
        });
    }
    frames
}

fn transcode(frames: &[Frame]) -> (AacToOpus, Vec<Frame>) {
    let mut t = AacToOpus::new();
    let mut out = Vec::new();
    for f in frames {
        t.handle_frame(f).unwrap();
        while let Some(o) = t.poll_frame() {
            out.push(o);
        }
    }
    (t, out)
}

/// Decodes Opus packets back to 48 kHz PCM (interleaved, `channels`).
fn decode(packets: &[&Frame], channels: usize) -> Vec<f32> {
    let layout = if channels == 1 {
        opus::Channels::Mono
    } else {
        opus::Channels::Stereo
    };
    let mut dec = opus::Decoder::new(OPUS_RATE, layout).unwrap();
    let mut pcm = Vec::new();
    let mut buf = vec![0f32; 5760 * channels];
    for p in packets {
        let n = dec.decode_float(&p.payload, &mut buf, false).unwrap();
        assert_eq!(n, 960, "an Opus packet is 20 ms");
        pcm.extend_from_slice(&buf[..n * channels]);
    }
    pcm
}

/// RMS of channel `c` over `range` (in frames).
fn rms(pcm: &[f32], channels: usize, c: usize, range: std::ops::Range<usize>) -> f64 {
    let sum: f64 = range
        .clone()
        .map(|i| f64::from(pcm[i * channels + c]).powi(2))
        .sum();
    (sum / range.len() as f64).sqrt()
}

/// Frequency of channel `c` by counting upward zero crossings.
fn frequency(pcm: &[f32], channels: usize, c: usize, range: std::ops::Range<usize>) -> f64 {
    let mut crossings = 0;
    let mut prev = pcm[range.start * channels + c];
    for i in range.clone().skip(1) {
        let v = pcm[i * channels + c];
        if prev < 0.0 && v >= 0.0 {
            crossings += 1;
        }
        prev = v;
    }
    f64::from(crossings) * f64::from(OPUS_RATE) / range.len() as f64
}

/// Checks the stream shape: one `OpusHead` config first, then packets with
/// PTS exactly 960 apart starting at `start` − lookahead; returns the packets.
fn check_shape(out: &[Frame], channels: u8, start_48k: i64) -> Vec<&Frame> {
    assert!(out[0].is_config(), "OpusHead first");
    assert_eq!(out[0].codec, Codec::Opus);
    let head = OpusHead::parse(&out[0].payload).unwrap();
    assert_eq!(head.channels, channels);
    assert!(
        (100..=1000).contains(&head.pre_skip),
        "pre-skip {}",
        head.pre_skip
    );
    let packets: Vec<&Frame> = out[1..].iter().collect();
    assert!(packets.iter().all(|f| f.codec == Codec::Opus
        && !f.is_config()
        && f.is_keyframe()
        && f.timebase == OPUS_RATE));
    let lookahead = i64::from(head.pre_skip);
    for (n, p) in packets.iter().enumerate() {
        assert_eq!(
            p.pts,
            start_48k + n as i64 * OPUS_FRAME_TICKS - lookahead,
            "PTS of packet {n}"
        );
        assert_eq!(p.dts, p.pts);
    }
    packets
}

#[test]
fn aac_44100_stereo_becomes_opus_with_the_same_tone_and_duration() {
    let (config, aac) = aac_tone(440, 44_100, 2, 2.0);
    let frames = rtmp_frames(config, &aac, 44_100, 1_000);
    let (t, out) = transcode(&frames);
    let packets = check_shape(&out, 2, 48_000);
    // Duration: every input sample is in a packet but the last partial one.
    let input_s = aac.len() as f64 * 1024.0 / 44_100.0;
    let output_s = packets.len() as f64 * 0.020;
    assert!(
        (input_s - output_s).abs() < 0.025,
        "{input_s} s of AAC gave {output_s} s of Opus"
    );
    let pcm = decode(&packets, 2);
    // Skip the codecs' start-up (AAC priming + Opus pre-skip), check the
    // middle: a 440 Hz tone with the source's level in both channels
    // (ffmpeg's sine has amplitude 1/8, RMS 0.088; upmixed to stereo at
    // −3 dB: RMS 0.0625).
    let mid = 24_000..(pcm.len() / 2 - 24_000);
    for c in 0..2 {
        let level = rms(&pcm, 2, c, mid.clone());
        assert!((0.055..0.07).contains(&level), "channel {c} RMS {level}");
        let f = frequency(&pcm, 2, c, mid.clone());
        assert!((435.0..445.0).contains(&f), "channel {c} at {f} Hz");
    }
    let stats = t.stats();
    assert_eq!(stats.aac_frames, aac.len() as u64);
    assert_eq!(stats.aac_errors, 0);
    assert_eq!(stats.resyncs, 0);
    assert_eq!(stats.silence_samples, 0);
    assert_eq!(stats.opus_packets, packets.len() as u64);
}

#[test]
fn aac_48000_mono_is_encoded_without_resampling() {
    let (config, aac) = aac_tone(1000, 48_000, 1, 1.0);
    let frames = rtmp_frames(config, &aac, 48_000, 0);
    let (_, out) = transcode(&frames);
    let packets = check_shape(&out, 1, 0);
    let pcm = decode(&packets, 1);
    let mid = 9_600..(pcm.len() - 9_600);
    let level = rms(&pcm, 1, 0, mid.clone());
    assert!((0.075..0.10).contains(&level), "RMS {level}");
    let f = frequency(&pcm, 1, 0, mid);
    assert!((990.0..1010.0).contains(&f), "{f} Hz");
}

#[test]
fn lost_aac_frames_become_silence_and_a_jump_restarts_the_clock() {
    let (config, aac) = aac_tone(440, 48_000, 2, 2.0);
    let mut frames = rtmp_frames(config, &aac, 48_000, 0);
    // Frames 20..25 are lost (a 107 ms hole in the timestamps).
    frames.drain(21..26);
    let (t, out) = transcode(&frames);
    // The clock holds: no restart, the hole is silence, PTS stay 960 apart
    // from the first frame (the same packets as without loss).
    let packets = check_shape(&out, 2, 0);
    let stats = t.stats();
    assert_eq!(stats.resyncs, 0);
    // (5 frames of 1024 samples, measured on the millisecond timestamps)
    assert!(
        stats.silence_samples.abs_diff(5 * 1024) <= 48,
        "{} samples of silence",
        stats.silence_samples
    );
    let pcm = decode(&packets, 2);
    // The hole (the decoded frames 20..25, delayed by the encoder's
    // lookahead) is quiet, the tone before and after is not.
    let delay = 312;
    let hole = (20 * 1024 + delay + 200)..(25 * 1024 + delay - 200);
    assert!(rms(&pcm, 2, 0, hole.clone()) < 0.01, "hole not silent");
    assert!(rms(&pcm, 2, 0, 10_000..18_000) > 0.055);
    assert!(rms(&pcm, 2, 0, (hole.end + 4_000)..(hole.end + 12_000)) > 0.055);

    // A publisher that restarts its clock 10 s later: a new run of the audio
    // clock at the new timestamp, flagged as a discontinuity.
    let (config, aac) = aac_tone(440, 48_000, 2, 0.5);
    let mut later = rtmp_frames(config, &aac, 48_000, 0);
    later.remove(0);
    for f in &mut later {
        f.pts += 10_000;
        f.dts += 10_000;
    }
    let mut t = t;
    let mut out = Vec::new();
    for f in &later {
        t.handle_frame(f).unwrap();
        while let Some(o) = t.poll_frame() {
            out.push(o);
        }
    }
    assert_eq!(t.stats().resyncs, 1);
    assert!(out[0].flags.contains(FrameFlags::DISCONTINUITY));
    assert!(out[1..]
        .iter()
        .all(|f| !f.flags.contains(FrameFlags::DISCONTINUITY)));
    let lookahead = packets[0].pts.abs();
    for (n, p) in out.iter().enumerate() {
        assert_eq!(p.pts, 480_000 + n as i64 * OPUS_FRAME_TICKS - lookahead);
    }
}

#[test]
fn garbage_aac_is_an_error_or_silence_never_a_panic() {
    let (config, aac) = aac_tone(440, 44_100, 2, 0.5);
    let mut t = AacToOpus::new();
    // Bad configs are refused.
    for bad in [&[][..], &[0x00, 0x00], &[0xf8, 0x88], &[0x12, 0x38]] {
        let f = Frame {
            codec: Codec::Aac,
            flags: FrameFlags::CONFIG,
            pts: 0,
            dts: 0,
            timebase: 1000,
            payload: Bytes::copy_from_slice(bad),
        };
        assert!(t.handle_frame(&f).is_err(), "config {bad:?} accepted");
    }
    let mut frames = rtmp_frames(config, &aac, 44_100, 0);
    // Corrupt every other frame: truncated, bit-flipped, random.
    let mut x: u32 = 0x1234_5678;
    for (i, f) in frames.iter_mut().enumerate().skip(1) {
        if i % 2 == 0 {
            let mut v = f.payload.to_vec();
            match i % 6 {
                0 => v.truncate(v.len() / 3),
                2 => v.iter_mut().for_each(|b| *b ^= 0x5a),
                _ => v.iter_mut().for_each(|b| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    *b = x as u8;
                }),
            }
            f.payload = Bytes::from(v);
        }
    }
    let mut packets = 0;
    for f in &frames {
        let _ = t.handle_frame(f);
        while let Some(o) = t.poll_frame() {
            if !o.is_config() {
                packets += 1;
            }
        }
    }
    // The clock kept going through the damage: as many packets as audio.
    let expected = (aac.len() as f64 * 1024.0 / 44_100.0 / 0.020) as i64;
    assert!(
        t.is_broken() || (packets as i64 - expected).abs() <= 2,
        "{packets} packets for {expected}"
    );
}

#[test]
fn one_feed_per_stream_started_by_the_first_viewer_and_stopped_by_the_last() {
    let engine = Engine::new();
    engine.add_app("live", arcly::AppConfig::default());
    let key = StreamKey::new("live", "cam").unwrap();
    let mut publisher = engine.publish(key.clone()).unwrap();
    let (config, aac) = aac_tone(440, 48_000, 2, 1.0);
    let frames = rtmp_frames(config, &aac, 48_000, 0);
    let (head, rest) = frames.split_at(20);
    for f in head {
        publisher.send(f.clone());
    }
    let feeds = OpusFeeds::new(engine.clone());
    assert_eq!(feeds.active(), 0);
    let subscribers = || engine.stream_stats(&key).unwrap().snapshot().subscribers;
    assert_eq!(subscribers(), 0);

    let (mut a, lease_a) = feeds.subscribe(&key).unwrap();
    let (mut b, lease_b) = feeds.subscribe(&key).unwrap();
    assert_eq!(feeds.active(), 1);
    assert_eq!(subscribers(), 1, "one source subscriber for two viewers");
    for f in rest {
        publisher.send(f.clone());
        // Both viewers pump; only the first call transcodes new frames.
        lease_a.pump();
        lease_b.pump();
    }
    let drain = |s: &mut arcly::engine::Subscriber| {
        let mut pts = Vec::new();
        while let Recv::Frame(e) = s.recv() {
            if !e.frame.is_config() {
                pts.push(e.frame.pts);
            }
        }
        pts
    };
    let pa = drain(&mut a);
    let pb = drain(&mut b);
    assert_eq!(pa, pb, "both viewers read the same packets");
    // An audio-only stream's GOP cache is its latest frame: the feed starts
    // there (AAC frame 18) and transcodes everything after it.
    let expected = (frames.len() - 20) as f64 * 1024.0 / 48_000.0 / 0.020;
    assert!(
        (pa.len() as f64 - expected).abs() <= 2.0,
        "{} packets, {expected} expected",
        pa.len()
    );
    assert!(
        (pa[0] - 18 * 1024).abs() <= OPUS_FRAME_TICKS,
        "starts at {}",
        pa[0]
    );
    assert!(pa.windows(2).all(|w| w[1] - w[0] == OPUS_FRAME_TICKS));
    assert_eq!(lease_a.stats().opus_packets, pa.len() as u64);

    drop((a, lease_a));
    assert_eq!(feeds.active(), 1);
    drop((b, lease_b));
    assert_eq!(feeds.active(), 0, "the last viewer left: feed stopped");
    assert_eq!(subscribers(), 0, "its source subscriber is gone");
    // A stream that is not live has no feed.
    assert!(feeds
        .subscribe(&StreamKey::new("live", "nope").unwrap())
        .is_none());
}
