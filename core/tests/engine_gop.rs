//! Property tests of the GOP cache and start rules: random streams of video
//! keyframes, delta frames, audio frames and (changing) configs of random
//! sizes, with subscribers attaching at random points, checked against a
//! model of the rules in `engine::bus`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use arcly::engine::{AppConfig, Publisher, Recv, SharedFrame, StreamKey, Subscriber};
use arcly::{Codec, Frame, FrameFlags};
use bytes::Bytes;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    VideoKey,
    VideoDelta,
    Audio,
    VideoConfig,
    AudioConfig,
}

#[derive(Debug, Clone)]
enum Op {
    Send(Kind, usize),
    Attach,
    /// Read every subscriber (only in the lagging property).
    Drain,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        2 => Just(Kind::VideoKey),
        8 => Just(Kind::VideoDelta),
        6 => Just(Kind::Audio),
        1 => Just(Kind::VideoConfig),
        1 => Just(Kind::AudioConfig),
    ]
}

fn op(with_drain: bool) -> impl Strategy<Value = Op> {
    let drain_weight = if with_drain { 2 } else { 0 };
    prop_oneof![
        20 => (kind(), 1usize..400).prop_map(|(k, n)| Op::Send(k, n)),
        2 => Just(Op::Attach),
        drain_weight => Just(Op::Drain),
    ]
}

fn make(k: Kind, len: usize, ts: i64) -> Frame {
    let (codec, flags) = match k {
        Kind::VideoKey => (Codec::H264, FrameFlags::KEYFRAME),
        Kind::VideoDelta => (Codec::H264, FrameFlags::NONE),
        Kind::Audio => (Codec::Aac, FrameFlags::KEYFRAME),
        Kind::VideoConfig => (Codec::H264, FrameFlags::CONFIG),
        Kind::AudioConfig => (Codec::Aac, FrameFlags::CONFIG),
    };
    Frame {
        codec,
        flags,
        pts: ts,
        dts: ts,
        timebase: 1000,
        payload: Bytes::from(vec![0u8; len]),
    }
}

/// What the model knows about each published frame.
#[derive(Debug, Clone, Copy)]
struct Pub {
    kind: Kind,
    len: u64,
    /// Start point by the rules: video keyframe, or audio before any video.
    start: bool,
}

fn is_video(k: Kind) -> bool {
    matches!(k, Kind::VideoKey | Kind::VideoDelta | Kind::VideoConfig)
}

/// Where the model says a subscriber attaching at `head` starts: `Some(seq)`
/// of its first frame (the cached start point or the first one after head).
fn model_start(p: &[Pub], head: usize, frames_cap: u64, bytes_cap: u64) -> Option<usize> {
    if let Some(s) = (0..head).rev().find(|&i| p[i].start) {
        let gop = &p[s..head];
        let frames = gop.len() as u64;
        let bytes: u64 = gop.iter().map(|f| f.len).sum();
        let audio_start_then_video =
            p[s].kind == Kind::Audio && gop.iter().any(|f| is_video(f.kind));
        if frames <= frames_cap && bytes <= bytes_cap && !audio_start_then_video {
            return Some(s);
        }
    }
    (head..p.len()).find(|&i| p[i].start)
}

/// Configs in force just before `seq`: latest video config, latest audio config.
fn configs_before(p: &[Pub], seq: usize) -> Vec<usize> {
    let v = (0..seq).rev().find(|&i| p[i].kind == Kind::VideoConfig);
    let a = (0..seq).rev().find(|&i| p[i].kind == Kind::AudioConfig);
    v.into_iter().chain(a).collect()
}

struct Sub {
    sub: Subscriber,
    head: usize,
    got: Vec<SharedFrame>,
}

fn drain(s: &mut Sub) {
    while let Recv::Frame(f) = s.sub.recv() {
        s.got.push(f);
    }
}

fn run(
    ops: &[Op],
    ring: usize,
    gop_frames: usize,
    gop_bytes: usize,
    drain_always: bool,
) -> (Vec<Pub>, Vec<Sub>, Publisher) {
    let key = StreamKey::new("live", "prop").unwrap();
    let cfg = AppConfig::default()
        .with_ring_frames(ring)
        .with_gop_cache_frames(gop_frames)
        .with_gop_cache_bytes(gop_bytes);
    let mut p = Publisher::detached(key, cfg);
    let mut model: Vec<Pub> = Vec::new();
    let mut subs: Vec<Sub> = Vec::new();
    let mut has_video = false;
    for (t, op) in ops.iter().enumerate() {
        match op {
            Op::Send(k, len) => {
                has_video |= is_video(*k);
                let start = match k {
                    Kind::VideoKey => true,
                    Kind::Audio => !has_video,
                    _ => false,
                };
                model.push(Pub {
                    kind: *k,
                    len: *len as u64,
                    start,
                });
                p.send(make(*k, *len, t as i64 * 20));
            }
            Op::Attach => subs.push(Sub {
                sub: p.subscribe().unwrap(),
                head: model.len(),
                got: Vec::new(),
            }),
            Op::Drain => subs.iter_mut().for_each(drain),
        }
        if drain_always {
            subs.iter_mut().for_each(drain);
        }
    }
    subs.iter_mut().for_each(drain);
    (model, subs, p)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Subscribers that keep up: configs, then the start point the model
    /// picks (a video keyframe once the stream has video), within both caps,
    /// then every later frame in order.
    #[test]
    fn new_subscriber_starts_on_configs_then_keyframe(
        ops in prop::collection::vec(op(false), 1..200),
        ring_pow in 3u32..8,
        gop_frames in 1usize..40,
        gop_bytes in 1usize..3000,
    ) {
        let ring = 1usize << ring_pow;
        let frames_cap = (gop_frames as u64).min(ring as u64 / 2);
        let bytes_cap = gop_bytes as u64;
        let (model, subs, _p) = run(&ops, ring, gop_frames, gop_bytes, true);
        for s in &subs {
            let expect_start = model_start(&model, s.head, frames_cap, bytes_cap);
            let Some(i) = s.got.iter().position(|f| !f.frame.is_config()) else {
                prop_assert!(s.got.is_empty(), "configs delivered without a start point");
                prop_assert_eq!(expect_start, None);
                continue;
            };
            let first = &s.got[i];
            let start = first.seq as usize;
            prop_assert_eq!(Some(start), expect_start, "start point");
            prop_assert!(first.is_start_point());
            // Configs first: exactly those in force at the start point.
            let cfgs: Vec<usize> = s.got[..i].iter().map(|f| f.seq as usize).collect();
            prop_assert_eq!(cfgs, configs_before(&model, start));
            // Once the stream has video, the first frame is a video keyframe.
            if model[..=start].iter().any(|f| is_video(f.kind)) {
                prop_assert_eq!(model[start].kind, Kind::VideoKey);
            }
            // The cache respects both caps.
            let cached: Vec<&SharedFrame> =
                s.got[i..].iter().filter(|f| (f.seq as usize) < s.head).collect();
            prop_assert!(cached.len() as u64 <= frames_cap);
            prop_assert!(cached.iter().map(|f| f.frame.payload.len() as u64).sum::<u64>() <= bytes_cap);
            // Then every frame in order, except video deltas before the first
            // video keyframe (a stream that started audio-only).
            let mut synced = is_video(model[start].kind);
            let mut expect = Vec::new();
            for (seq, f) in model.iter().enumerate().skip(start) {
                match f.kind {
                    Kind::VideoKey => synced = true,
                    Kind::VideoDelta if !synced => continue,
                    _ => {}
                }
                expect.push(seq as u64);
            }
            let got: Vec<u64> = s.got[i..].iter().map(|f| f.seq).collect();
            prop_assert_eq!(got, expect);
            for f in &s.got[i..] {
                prop_assert_eq!(f.frame.payload.len() as u64, model[f.seq as usize].len);
            }
        }
    }

    /// Subscribers read only now and then, on a small ring: they lag. Every
    /// gap is followed by (re-sent) configs and a start point; frames never
    /// go backwards otherwise; a gap means `dropped > 0`.
    #[test]
    fn lagging_subscriber_resumes_on_start_points(
        ops in prop::collection::vec(op(true), 1..300),
        ring_pow in 2u32..5,
    ) {
        let ring = 1usize << ring_pow;
        let (model, subs, _p) = run(&ops, ring, 1000, usize::MAX, false);
        for s in &subs {
            let got = &s.got;
            let mut last: Option<u64> = None;
            let mut gaps = 0;
            let mut k = 0;
            while k < got.len() {
                let f = &got[k];
                if let Some(l) = last {
                    if f.seq == l + 1 {
                        last = Some(f.seq);
                        k += 1;
                        continue;
                    }
                    gaps += 1;
                    let skipped = (l + 1) as usize..f.seq as usize;
                    if f.seq > l && model[skipped].iter().all(|m| m.kind == Kind::VideoDelta) {
                        // Video deltas held back until a video keyframe.
                        last = Some(f.seq);
                        k += 1;
                        continue;
                    }
                }
                // Start or resume: (re-sent) configs, then a start point.
                let mut j = k;
                while j < got.len() && got[j].frame.is_config() {
                    j += 1;
                }
                prop_assert!(j < got.len(), "configs without a start point");
                let sp = &got[j];
                prop_assert!(sp.is_start_point(), "must resume at a start point");
                prop_assert!(last.is_none_or(|l| sp.seq > l), "frames went backwards");
                for c in &got[k..j] {
                    prop_assert!(c.seq < sp.seq);
                }
                last = Some(sp.seq);
                k = j + 1;
            }
            if gaps > 0 {
                prop_assert!(s.sub.stats().snapshot().dropped > 0);
            }
            // Nothing beyond what was published.
            prop_assert!(s.got.iter().all(|f| (f.seq as usize) < model.len()));
        }
    }
}
