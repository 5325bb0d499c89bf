//! Engine behaviour through the public API: instant start, GOP cache caps,
//! audio-only streams, config changes, slow subscribers, end of stream,
//! admission, counters and the async / blocking notifier.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use arcly::engine::{
    AppConfig, EgressSlot, Engine, PublishError, Publisher, Recv, SharedFrame, StreamKey,
    SubscribeError, Subscriber,
};
use arcly::{Codec, Frame, FrameFlags};
use arcly_blocking::BlockingWait;
use bytes::Bytes;

fn key() -> StreamKey {
    StreamKey::new("live", "cam").unwrap()
}

fn frame(codec: Codec, flags: FrameFlags, ms: i64, len: usize) -> Frame {
    Frame {
        codec,
        flags,
        pts: ms,
        dts: ms,
        timebase: 1000,
        payload: Bytes::from(vec![0u8; len]),
    }
}
fn vcfg(tag: u8) -> Frame {
    let mut f = frame(Codec::H264, FrameFlags::CONFIG, 0, 4);
    f.payload = Bytes::from(vec![tag; 4]);
    f
}
fn acfg(tag: u8) -> Frame {
    let mut f = frame(Codec::Aac, FrameFlags::CONFIG, 0, 2);
    f.payload = Bytes::from(vec![tag; 2]);
    f
}
fn key_frame(ms: i64) -> Frame {
    frame(Codec::H264, FrameFlags::KEYFRAME, ms, 100)
}
fn delta(ms: i64) -> Frame {
    frame(Codec::H264, FrameFlags::NONE, ms, 10)
}
fn audio(ms: i64) -> Frame {
    frame(Codec::Aac, FrameFlags::KEYFRAME, ms, 5)
}

fn cfg(ring: usize, gop_frames: usize, gop_bytes: usize) -> AppConfig {
    AppConfig::default()
        .with_ring_frames(ring)
        .with_gop_cache_frames(gop_frames)
        .with_gop_cache_bytes(gop_bytes)
}

/// Drains every frame available now.
fn drain(sub: &mut Subscriber) -> Vec<SharedFrame> {
    let mut out = Vec::new();
    while let Recv::Frame(f) = sub.recv() {
        out.push(f);
    }
    out
}

fn seqs(v: &[SharedFrame]) -> Vec<u64> {
    v.iter().map(|f| f.seq).collect()
}

#[test]
fn instant_start_configs_then_gop_then_live() {
    let mut p = Publisher::detached(key(), AppConfig::default());
    p.send(vcfg(1)); // 0
    p.send(acfg(1)); // 1
    p.send(key_frame(0)); // 2
    p.send(audio(0)); // 3
    p.send(delta(40)); // 4
    p.send(key_frame(80)); // 5  <- latest GOP
    p.send(audio(80)); // 6
    p.send(delta(120)); // 7
    let mut s = p.subscribe().unwrap();
    let got = drain(&mut s);
    assert_eq!(seqs(&got), vec![0, 1, 5, 6, 7]);
    assert!(got[0].frame.is_config() && got[1].frame.is_config());
    assert!(got[2].is_start_point());
    p.send(delta(160));
    assert_eq!(seqs(&drain(&mut s)), vec![8]);
    assert!(matches!(s.recv(), Recv::Empty));
    assert_eq!(s.stats().snapshot().dropped, 0);
    assert_eq!(s.stats().snapshot().frames, 6);
}

#[test]
fn subscriber_before_first_keyframe_waits_for_it() {
    let mut p = Publisher::detached(key(), AppConfig::default());
    let mut s = p.subscribe().unwrap();
    assert!(matches!(s.recv(), Recv::Empty));
    p.send(vcfg(1));
    p.send(acfg(1));
    p.send(delta(0)); // not decodable: skipped, not counted as dropped
    p.send(audio(0)); // stream has video: audio is no start point
    assert!(matches!(s.recv(), Recv::Empty));
    p.send(key_frame(40));
    assert_eq!(seqs(&drain(&mut s)), vec![0, 1, 4]);
    assert_eq!(s.stats().snapshot().dropped, 0);
}

#[test]
fn audio_only_stream_starts_at_once() {
    let mut p = Publisher::detached(key(), AppConfig::default());
    p.send(acfg(7));
    for i in 0..10 {
        p.send(audio(i * 21));
    }
    let mut s = p.subscribe().unwrap();
    let got = drain(&mut s);
    // The config, then the latest audio frame (a one-frame GOP).
    assert_eq!(seqs(&got), vec![0, 10]);
    p.send(audio(300));
    assert_eq!(seqs(&drain(&mut s)), vec![11]);
    // A subscriber that came before any frame starts on the first one.
    let mut p2 = Publisher::detached(key(), AppConfig::default());
    let mut s2 = p2.subscribe().unwrap();
    p2.send(acfg(1));
    p2.send(audio(0));
    assert_eq!(seqs(&drain(&mut s2)), vec![0, 1]);
}

#[test]
fn audio_then_video_waits_for_video_keyframe() {
    let mut p = Publisher::detached(key(), AppConfig::default());
    p.send(acfg(1)); // 0
    p.send(audio(0)); // 1
    let mut early = p.subscribe().unwrap();
    assert_eq!(seqs(&drain(&mut early)), vec![0, 1]);
    p.send(vcfg(1)); // 2: video appears
    p.send(delta(10)); // 3: not decodable
    p.send(audio(20)); // 4
    let mut late = p.subscribe().unwrap();
    p.send(key_frame(40)); // 5
    p.send(delta(80)); // 6
                       // The early subscriber keeps audio, holds video back until the keyframe.
    assert_eq!(seqs(&drain(&mut early)), vec![2, 4, 5, 6]);
    // The late one starts on the video keyframe with both configs.
    assert_eq!(seqs(&drain(&mut late)), vec![2, 0, 5, 6]);
}

#[test]
fn config_change_mid_stream_is_delivered_in_order() {
    let mut p = Publisher::detached(key(), AppConfig::default());
    p.send(vcfg(1)); // 0
    p.send(key_frame(0)); // 1
    let mut s = p.subscribe().unwrap();
    p.send(delta(40)); // 2
    p.send(vcfg(2)); // 3: new SPS/PPS
    p.send(key_frame(80)); // 4
    let got = drain(&mut s);
    assert_eq!(seqs(&got), vec![0, 1, 2, 3, 4]);
    assert_eq!(got[3].frame.payload[0], 2);
    // A new subscriber gets only the config in force at its keyframe.
    let mut s2 = p.subscribe().unwrap();
    let got2 = drain(&mut s2);
    assert_eq!(seqs(&got2), vec![3, 4]);
}

#[test]
fn gop_cache_frame_cap() {
    let mut p = Publisher::detached(key(), cfg(64, 4, usize::MAX));
    p.send(vcfg(1));
    p.send(key_frame(0)); // 1
    p.send(delta(1));
    p.send(delta(2));
    p.send(delta(3)); // GOP = 4 frames: still cached
    let mut s = p.subscribe().unwrap();
    assert_eq!(seqs(&drain(&mut s)), vec![0, 1, 2, 3, 4]);
    p.send(delta(4)); // 5 frames: over the cap
    let mut s2 = p.subscribe().unwrap();
    assert!(drain(&mut s2).is_empty());
    p.send(key_frame(5)); // 6
    assert_eq!(seqs(&drain(&mut s2)), vec![0, 6]);
}

#[test]
fn gop_cache_frame_cap_is_at_most_half_the_ring() {
    let mut p = Publisher::detached(key(), cfg(8, 1000, usize::MAX));
    assert_eq!(p.ring_capacity(), 8);
    p.send(key_frame(0));
    for i in 1..4 {
        p.send(delta(i));
    }
    assert_eq!(drain(&mut p.subscribe().unwrap()).len(), 4);
    p.send(delta(5));
    assert!(drain(&mut p.subscribe().unwrap()).is_empty());
}

#[test]
fn gop_cache_byte_cap() {
    // keyframe 100 B + deltas 10 B; cap 125 B: key + 2 deltas fit, 3 do not.
    let mut p = Publisher::detached(key(), cfg(64, 1000, 125));
    p.send(key_frame(0));
    p.send(delta(1));
    p.send(delta(2));
    assert_eq!(seqs(&drain(&mut p.subscribe().unwrap())), vec![0, 1, 2]);
    p.send(delta(3));
    assert!(drain(&mut p.subscribe().unwrap()).is_empty());
    // A keyframe bigger than the cap is never cached.
    let mut p = Publisher::detached(key(), cfg(64, 1000, 50));
    p.send(key_frame(0));
    assert!(drain(&mut p.subscribe().unwrap()).is_empty());
}

#[test]
fn slow_subscriber_skips_to_keyframe_and_counts_drops() {
    let mut p = Publisher::detached(key(), cfg(16, 8, usize::MAX));
    p.send(vcfg(1)); // 0
    p.send(key_frame(0)); // 1
    let mut s = p.subscribe().unwrap();
    assert_eq!(seqs(&drain(&mut s)), vec![0, 1]);
    // 20 more frames, keyframe every 5: 2..=21, keyframes at 5,10,15,20.
    for i in 2..22u64 {
        let ms = i as i64 * 40;
        if i % 5 == 0 {
            p.send(key_frame(ms));
        } else {
            p.send(delta(ms));
        }
    }
    let got = drain(&mut s);
    // Lagged (head 22 - next 2 > 16): resumes at the latest keyframe, 20.
    assert_eq!(seqs(&got), vec![20, 21]);
    assert!(got[0].frame.is_keyframe());
    assert_eq!(s.stats().snapshot().dropped, 18);
    assert_eq!(s.stream_stats().snapshot().dropped, 18);
    assert_eq!(s.lag(), 0);
}

#[test]
fn slow_subscriber_resends_changed_configs() {
    let mut p = Publisher::detached(key(), cfg(8, 4, usize::MAX));
    p.send(vcfg(1)); // 0
    p.send(acfg(1)); // 1
    p.send(key_frame(0)); // 2
    let mut s = p.subscribe().unwrap();
    assert_eq!(seqs(&drain(&mut s)), vec![0, 1, 2]);
    p.send(vcfg(2)); // 3: changed video config
    for i in 4..12 {
        p.send(delta(i));
    }
    p.send(key_frame(12)); // 12
    p.send(delta(13)); // 13
    let got = drain(&mut s);
    // Video config re-sent (it changed), audio config not (unchanged).
    assert_eq!(seqs(&got), vec![3, 12, 13]);
    assert_eq!(got[0].frame.payload[0], 2);
    assert_eq!(s.stats().snapshot().dropped, 12 - 3);
}

#[test]
fn lag_without_keyframe_in_ring_waits_for_next_one() {
    let mut p = Publisher::detached(key(), cfg(8, 4, usize::MAX));
    p.send(key_frame(0)); // 0
    let mut s = p.subscribe().unwrap();
    assert_eq!(seqs(&drain(&mut s)), vec![0]);
    for i in 1..20 {
        p.send(delta(i));
    }
    assert!(drain(&mut s).is_empty());
    p.send(key_frame(20)); // 20
    assert_eq!(seqs(&drain(&mut s)), vec![20]);
    assert_eq!(s.stats().snapshot().dropped, 19);
}

#[test]
fn end_of_stream_drains_then_ends() {
    let engine = Engine::with_defaults();
    let mut p = engine.publish(key()).unwrap();
    p.send(key_frame(0));
    let mut s = engine.subscribe(&key()).unwrap();
    p.send(delta(40));
    p.send(delta(80));
    drop(p);
    assert_eq!(seqs(&drain(&mut s)), vec![0, 1, 2]);
    assert!(matches!(s.recv(), Recv::End));
    assert!(matches!(s.recv(), Recv::End));
    // The stream left the registry: new players get "not found".
    assert_eq!(
        engine.subscribe(&key()).unwrap_err(),
        SubscribeError::NotFound(key())
    );
    // And it can be published again.
    let _p = engine.publish(key()).unwrap();
}

#[test]
fn admission() {
    let engine = Engine::new();
    assert_eq!(
        engine.publish(key()).unwrap_err(),
        PublishError::UnknownApp("live".into())
    );
    engine.add_app(
        "live",
        AppConfig::default()
            .with_max_subscribers(2)
            .with_max_streams(1),
    );
    let p = engine.publish(key()).unwrap();
    let err = engine.publish(key()).unwrap_err();
    assert_eq!(err, PublishError::AlreadyPublishing(key()));
    assert_eq!(
        err.to_string(),
        "stream `live/cam` is already being published"
    );
    let other = StreamKey::new("live", "other").unwrap();
    assert!(matches!(
        engine.publish(other.clone()),
        Err(PublishError::TooManyStreams(_, 1))
    ));
    assert_eq!(
        engine.subscribe(&other).unwrap_err(),
        SubscribeError::NotFound(other)
    );
    let a = engine.subscribe(&key()).unwrap();
    let _b = engine.subscribe(&key()).unwrap();
    assert!(matches!(
        engine.subscribe(&key()),
        Err(SubscribeError::TooManySubscribers(_, 2))
    ));
    assert_eq!(p.stats().subscribers.load(Ordering::Relaxed), 2);
    drop(a);
    assert_eq!(p.stats().snapshot().subscribers, 1);
    let _c = engine.subscribe(&key()).unwrap();
}

#[test]
fn counters_and_snapshot() {
    let engine = Engine::with_defaults();
    let mut p = engine.publish(key()).unwrap();
    let mut s = engine.subscribe(&key()).unwrap();
    // 25 fps of 5000-byte keyframes for just over one second: 1 Mbit/s.
    for i in 0..=25 {
        p.send(frame(Codec::H264, FrameFlags::KEYFRAME, i * 40, 5000));
    }
    let snap = engine.stats_snapshot();
    assert_eq!(snap.len(), 1);
    let (k, st) = &snap[0];
    assert_eq!(k, &key());
    assert_eq!(st.frames, 26);
    assert_eq!(st.keyframes, 26);
    assert_eq!(st.bytes, 26 * 5000);
    assert_eq!(st.subscribers, 1);
    assert_eq!(st.bitrate_bps, 1_000_000);
    assert_eq!(drain(&mut s).len(), 26);
    let ss = s.stats().snapshot();
    assert_eq!((ss.frames, ss.bytes, ss.dropped), (26, 26 * 5000, 0));
    assert_eq!(ss.bitrate_bps, 1_000_000);
}

#[test]
fn metadata_and_egress_cache() {
    let mut p = Publisher::detached(key(), AppConfig::default());
    let s = p.subscribe().unwrap();
    assert_eq!(s.metadata(), None);
    p.set_metadata(Bytes::from_static(b"meta"));
    assert_eq!(s.metadata().as_deref(), Some(&b"meta"[..]));
    p.send(key_frame(0));
    let mut a = p.subscribe().unwrap();
    let mut b = p.subscribe().unwrap();
    let (Recv::Frame(fa), Recv::Frame(fb)) = (a.recv(), b.recv()) else {
        panic!("expected frames");
    };
    assert!(std::sync::Arc::ptr_eq(&fa, &fb), "one shared entry");
    let mut builds = 0;
    let x = fa.egress(EgressSlot::Rtmp, |_| {
        builds += 1;
        Bytes::from_static(b"x")
    });
    let y = fb.egress(EgressSlot::Rtmp, |_| {
        builds += 1;
        Bytes::from_static(b"y")
    });
    assert_eq!(
        (x, y, builds),
        (Bytes::from_static(b"x"), Bytes::from_static(b"x"), 1)
    );
}

#[test]
fn blocking_subscriber_is_woken() {
    let mut p = Publisher::detached(key(), AppConfig::default());
    let mut s = p.subscribe().unwrap();
    let t = std::thread::spawn(move || {
        let sig = s.signal();
        let mut got = Vec::new();
        loop {
            let e = sig.epoch();
            match s.recv() {
                Recv::Frame(f) => got.push(f.seq),
                Recv::Empty => {
                    sig.wait_blocking(e, Some(Duration::from_secs(10)));
                }
                Recv::End => return got,
            }
        }
    });
    for i in 0..50 {
        p.send(if i % 10 == 0 { key_frame(i) } else { delta(i) });
        if i % 7 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    drop(p);
    assert_eq!(t.join().unwrap(), (0..50).collect::<Vec<u64>>());
}

#[test]
fn async_subscribers_on_tokio() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut p = Publisher::detached(key(), AppConfig::default());
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let mut s = p.subscribe().unwrap();
            tasks.push(tokio::spawn(async move {
                let sig = s.signal();
                let mut got = Vec::new();
                loop {
                    let e = sig.epoch();
                    match s.recv() {
                        Recv::Frame(f) => got.push(f.seq),
                        Recv::Empty => sig.wait(e).await,
                        Recv::End => return got,
                    }
                }
            }));
        }
        for i in 0..200 {
            p.send(if i % 25 == 0 { key_frame(i) } else { delta(i) });
            if i % 16 == 0 {
                tokio::task::yield_now().await;
            }
        }
        drop(p);
        for t in tasks {
            let got = tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("subscriber task finished")
                .unwrap();
            assert_eq!(got, (0..200).collect::<Vec<u64>>());
        }
    });
}
