//! HLS / LL-HLS segmenter: playlists obey RFC 8216 and rfc8216bis at every
//! step (checked by the parser in `hls_common`), blocking reload semantics,
//! a bounded window over 3 hours of frames, and random frame timing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod hls_common;

use std::time::Duration;

use arcly::container::hls::{
    HlsConfig, HlsMuxer, PlaylistReply, PlaylistRequest, Resource, Variant,
};
use arcly::{Codec, Frame, FrameFlags};
use hls_common::*;
use proptest::prelude::*;

const BOTH: [Variant; 2] = [Variant::LowLatency, Variant::Ts];

fn req(msn: Option<u64>, part: Option<u32>) -> PlaylistRequest {
    PlaylistRequest {
        msn,
        part,
        skip: false,
    }
}

/// Pushes `frames`, checking both playlists and their continuity every `every` frames.
fn push_checked(m: &mut HlsMuxer, frames: &[Frame], every: usize) -> [Option<Playlist>; 2] {
    let mut prev: [Option<Playlist>; 2] = [None, None];
    for (i, f) in frames.iter().enumerate() {
        m.push(f);
        if i % every == 0 {
            for (k, v) in BOTH.iter().enumerate() {
                if m.is_ready(*v) {
                    let p = playlist(m, *v);
                    if let Some(q) = &prev[k] {
                        check_continuity(q, &p);
                    }
                    prev[k] = Some(p);
                }
            }
        }
    }
    prev
}

#[test]
fn h264_aac_playlists_follow_the_rules() {
    let mut m = HlsMuxer::new(HlsConfig::default());
    m.enable_ts();
    assert!(m.multivariant_playlist(Variant::LowLatency).is_none());
    let frames = Synth::rtmp_3mbit().frames(30);
    push_checked(&mut m, &frames, 7);
    let ll = playlist(&m, Variant::LowLatency);
    let ts = playlist(&m, Variant::Ts);
    // 30 s of 2 s GOPs: 14 complete segments, window of 7.
    assert_eq!(ll.segments.len(), 7);
    assert_eq!(ts.segments.len(), 7);
    assert_eq!(ll.media_sequence, 7);
    assert_eq!(ts.media_sequence, 7);
    assert_eq!(ll.target, 2);
    assert!(ll.independent_segments && ts.independent_segments);
    assert_eq!(ll.part_target, Some(0.2));
    for s in ll.segments.iter().chain(ts.segments.iter()) {
        assert_eq!(s.duration, 2.0, "exact 2 s GOPs give exact 2 s segments");
    }
    // Parts only for the last ~3 target durations.
    let with_parts = ll.segments.iter().filter(|s| !s.parts.is_empty()).count();
    assert!((2..=4).contains(&with_parts), "{with_parts}");
    for s in ll.segments.iter().filter(|s| !s.parts.is_empty()) {
        assert_eq!(s.parts.len(), 10);
        assert!(s.parts[0].independent);
        assert!(s.parts[1..].iter().all(|p| !p.independent));
    }
    // Multivariant names codecs and resolution; bandwidth ~3 Mbit/s.
    let mv = m.multivariant_playlist(Variant::LowLatency).unwrap();
    assert!(mv.contains("CODECS=\"avc1.64001e,mp4a.40.2\""), "{mv}");
    assert!(mv.contains("RESOLUTION="), "{mv}");
    assert!(mv.ends_with("\nstream.m3u8\n"), "{mv}");
    let bw: u64 = mv
        .split("BANDWIDTH=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((2_500_000..5_000_000).contains(&bw), "{bw}");
    let mv_ts = m.multivariant_playlist(Variant::Ts).unwrap();
    assert!(mv_ts.ends_with("\nstream.m3u8\n"));
    // Init segment is an ftyp/moov.
    let init = m.init_segment().unwrap();
    assert_eq!(&init[4..8], b"ftyp");

    m.finish();
    let ll = playlist(&m, Variant::LowLatency);
    let ts = playlist(&m, Variant::Ts);
    assert!(ll.endlist && ts.endlist);
    assert!(ll.open_parts.is_empty());
    assert_eq!(ll.segments.last().unwrap().msn, 14);
    // The final segment covers the remaining frames.
    let last = ll.segments.last().unwrap();
    assert!((last.duration - 2.0).abs() < 0.05, "{}", last.duration);
}

#[test]
fn blocking_reload_semantics() {
    let mut m = HlsMuxer::new(HlsConfig::default());
    m.enable_ts();
    let frames = Synth::rtmp_3mbit().frames(10);
    let mut it = frames.iter();
    // Nothing yet.
    assert_eq!(
        m.media_playlist(Variant::LowLatency, &PlaylistRequest::default()),
        PlaylistReply::NotYet
    );
    assert!(matches!(
        m.media_playlist(Variant::LowLatency, &req(None, Some(0))),
        PlaylistReply::BadRequest(_)
    ));
    assert!(matches!(
        m.media_playlist(Variant::LowLatency, &req(Some(3), None)),
        PlaylistReply::BadRequest(_)
    ));
    assert_eq!(
        m.media_playlist(Variant::LowLatency, &req(Some(0), Some(0))),
        PlaylistReply::NotYet
    );
    // Push until segment 0 has 2 parts.
    while m.part(0, 1).is_none() {
        m.push(it.next().unwrap());
    }
    assert!(m.part(0, 2).is_none());
    assert!(m.part_pending(0, 2));
    assert!(matches!(
        m.media_playlist(Variant::LowLatency, &req(Some(0), Some(1))),
        PlaylistReply::Ready(_)
    ));
    assert!(matches!(
        m.media_playlist(Variant::LowLatency, &req(Some(0), Some(0))),
        PlaylistReply::Ready(_)
    ));
    assert_eq!(
        m.media_playlist(Variant::LowLatency, &req(Some(0), Some(2))),
        PlaylistReply::NotYet
    );
    // _HLS_msn alone waits for the whole segment.
    assert_eq!(
        m.media_playlist(Variant::LowLatency, &req(Some(0), None)),
        PlaylistReply::NotYet
    );
    assert_eq!(
        m.media_playlist(Variant::LowLatency, &req(Some(2), None)),
        PlaylistReply::NotYet
    );
    assert!(matches!(
        m.media_playlist(Variant::LowLatency, &req(Some(3), None)),
        PlaylistReply::BadRequest(_)
    ));
    // Advance Part Limit.
    assert!(matches!(
        m.media_playlist(Variant::LowLatency, &req(Some(0), Some(6))),
        PlaylistReply::BadRequest(_)
    ));
    // TS: not ready, no segment.
    assert_eq!(
        m.media_playlist(Variant::Ts, &PlaylistRequest::default()),
        PlaylistReply::NotYet
    );
    assert_eq!(
        m.media_playlist(Variant::Ts, &req(Some(0), Some(0))),
        PlaylistReply::NotYet,
        "TS ignores _HLS_part and waits for the segment"
    );
    // After the next push that makes part 2, the waiting request is answered.
    while m.part(0, 2).is_none() {
        m.push(it.next().unwrap());
    }
    let PlaylistReply::Ready(t) = m.media_playlist(Variant::LowLatency, &req(Some(0), Some(2)))
    else {
        panic!()
    };
    assert!(t.contains("part0.2.m4s"));
    // A part past the end of segment 0 is satisfied by part 0 of segment 1.
    while m.segment(Variant::Ts, 0).is_none() {
        m.push(it.next().unwrap());
    }
    let parts0 = (0..).take_while(|i| m.part(0, *i).is_some()).count() as u32;
    assert_eq!(parts0, 10);
    assert!(!m.part_pending(0, parts0));
    assert!(m.part_pending(1, 0));
    assert_eq!(
        m.media_playlist(Variant::LowLatency, &req(Some(0), Some(parts0))),
        PlaylistReply::NotYet
    );
    while m.part(1, 0).is_none() {
        m.push(it.next().unwrap());
    }
    assert!(m.part_pending(1, 1));
    assert!(matches!(
        m.media_playlist(Variant::LowLatency, &req(Some(0), Some(parts0))),
        PlaylistReply::Ready(_)
    ));
    assert!(matches!(
        m.media_playlist(Variant::LowLatency, &req(Some(0), None)),
        PlaylistReply::Ready(_)
    ));
    assert!(matches!(
        m.media_playlist(Variant::Ts, &req(Some(0), None)),
        PlaylistReply::Ready(_)
    ));
    assert_eq!(
        m.media_playlist(Variant::Ts, &req(Some(1), None)),
        PlaylistReply::NotYet
    );
    // After finish nothing blocks.
    m.finish();
    assert!(matches!(
        m.media_playlist(Variant::Ts, &req(Some(2), None)),
        PlaylistReply::Ready(_)
    ));
    assert!(matches!(
        m.media_playlist(Variant::LowLatency, &req(Some(1), Some(20))),
        PlaylistReply::Ready(_)
    ));
    assert!(!m.part_pending(1, 20));
}

#[test]
fn delta_update_skips_old_segments() {
    let mut m = HlsMuxer::new(HlsConfig::default().with_window_segments(12));
    m.enable_ts();
    for f in Synth::rtmp_3mbit().frames(40) {
        m.push(&f);
    }
    let full = playlist(&m, Variant::LowLatency);
    let PlaylistReply::Ready(t) = m.media_playlist(
        Variant::LowLatency,
        &PlaylistRequest {
            skip: true,
            ..Default::default()
        },
    ) else {
        panic!()
    };
    let delta = parse(&t);
    check(&delta, &m, Variant::LowLatency, &t);
    assert_eq!(delta.version, 9);
    // 24 s in the window, CAN-SKIP-UNTIL 12 s: the oldest ~6 segments are skipped.
    assert!(delta.skipped >= 5, "{t}");
    assert_eq!(
        delta.skipped as usize + delta.segments.len(),
        full.segments.len()
    );
    assert_eq!(
        delta.segments.last().unwrap(),
        full.segments.last().unwrap()
    );
}

#[test]
fn audio_only_video_only_and_other_codecs() {
    let cases = [
        (None, Some(Codec::Aac), "mp4a.40.2"),
        (None, Some(Codec::Opus), "opus"),
        (Some(Codec::H264), None, "avc1.64001e"),
        (Some(Codec::H265), Some(Codec::Opus), "hvc1."),
    ];
    for (video, audio, codecs) in cases {
        let synth = Synth {
            video,
            audio,
            ..Synth::rtmp_3mbit()
        };
        let mut m = HlsMuxer::new(HlsConfig::default());
        m.enable_ts();
        let frames = synth.frames(12);
        push_checked(&mut m, &frames, 5);
        for v in BOTH {
            let p = playlist(&m, v);
            assert!(
                p.segments.len() >= 4,
                "{video:?}/{audio:?}: {} segments",
                p.segments.len()
            );
            for s in &p.segments {
                assert!(
                    (s.duration - 2.0).abs() < 0.05,
                    "{video:?}/{audio:?}: {}",
                    s.duration
                );
            }
            let mv = m.multivariant_playlist(v).unwrap();
            assert!(mv.contains(codecs), "{mv}");
            assert_eq!(mv.contains("RESOLUTION"), video.is_some());
        }
    }
}

#[test]
fn discontinuity_and_config_change() {
    let mut m = HlsMuxer::new(HlsConfig::default());
    m.enable_ts();
    let synth = Synth::rtmp_3mbit();
    for f in synth.frames(9) {
        m.push(&f);
    }
    // Publisher restarts its clock: timestamps go back to 0.
    let mut first = true;
    for mut f in synth.frames(9) {
        if !f.is_config() && first {
            f.flags = f.flags | FrameFlags::DISCONTINUITY;
            first = false;
        }
        m.push(&f);
    }
    // Timestamps jump back without a flag, and a new SPS (H.265 now).
    let h265 = Synth {
        video: Some(Codec::H265),
        ..synth.clone()
    };
    for f in h265.frames(9) {
        m.push(&f);
    }
    for v in BOTH {
        let p = playlist(&m, v);
        let disc = p.segments.iter().filter(|s| s.discontinuity).count();
        assert_eq!(disc, 1, "{v:?}: the window holds the last discontinuity");
        assert_eq!(p.discontinuity_sequence, 1, "{v:?}");
    }
    let ll = playlist(&m, Variant::LowLatency);
    // The restart with the same configs keeps the init section; the H.265
    // one gets a new URI (the window still holds H.264 segments before it).
    assert_eq!(
        ll.maps,
        ["init.mp4", "init.mp4?v=1"].map(String::from).to_vec(),
        "{ll:?}"
    );
    assert!(m
        .multivariant_playlist(Variant::LowLatency)
        .unwrap()
        .contains("hvc1"));
    // No frame was lost at the restarts (each starts on a keyframe).
    assert_eq!(m.dropped_frames(), 0);
    // Both init sections are served while segments name them.
    let v0 = m.init_segment_for_query(None).unwrap();
    let v1 = m.init_segment_for_query(Some("v=1")).unwrap();
    assert!(v0.windows(4).any(|w| w == b"avcC"));
    assert!(v1.windows(4).any(|w| w == b"hvcC"));
    assert_eq!(Some(v1), m.init_segment());
    assert_eq!(m.init_segment_for_query(Some("v=2")), None);
    assert_eq!(m.init_segment_for_query(Some("v=x")), None);
    // Once the H.264 segments slid out, its init section is gone.
    let h265_more = Synth {
        video: Some(Codec::H265),
        ..synth.clone()
    };
    for mut f in h265_more.frames(20) {
        if f.is_config() {
            continue;
        }
        f.dts += 9000;
        f.pts += 9000;
        m.push(&f);
    }
    assert_eq!(m.init_segment_for_query(None), None);
    assert!(m.init_segment_for_query(Some("v=1")).is_some());
    assert_eq!(playlist(&m, Variant::LowLatency).maps, ["init.mp4?v=1"]);
}

#[test]
fn bounded_memory_and_no_drift_over_three_hours() {
    // Small payloads keep this fast; 90 kHz 29.97 fps timing (3003 ticks):
    // every 60-frame GOP is exactly 2.002 s.
    let synth = Synth {
        frame_num: 1001,
        frame_den: 30_000,
        timebase: 90_000,
        video_bytes: 200,
        key_bytes: 1000,
        audio_bytes: 20,
        ..Synth::rtmp_3mbit()
    };
    let mut m = HlsMuxer::new(HlsConfig::default());
    m.enable_ts();
    let mut samples = Vec::new();
    let mut n = 0u64;
    let mut prev: Option<Playlist> = None;
    synth.for_each(3 * 3600, |f| {
        m.push(&f);
        n += 1;
        if n % 50_000 == 0 {
            samples.push(m.memory_bytes());
            let p = playlist(&m, Variant::LowLatency);
            if let Some(q) = &prev {
                check_continuity(q, &p);
            }
            prev = Some(p);
        }
    });
    let (lo, hi) = (
        samples[2..].iter().min().unwrap(),
        samples[2..].iter().max().unwrap(),
    );
    assert!(*hi < lo * 3 / 2, "memory not flat: {samples:?}");
    for v in BOTH {
        let p = playlist(&m, v);
        assert_eq!(p.segments.len(), 7);
        for s in &p.segments {
            assert_eq!(s.duration, 2.002, "drift after 3 h: {v:?} {s:?}");
        }
        // 3 h / 2.002 s ≈ 5394 segments.
        assert_eq!(p.segments.last().unwrap().msn, 5393, "{v:?}");
    }
}

#[test]
fn max_segment_bytes_cuts_without_keyframes() {
    let synth = Synth {
        gop: 100_000, // one keyframe only
        ..Synth::rtmp_3mbit()
    };
    let mut m = HlsMuxer::new(HlsConfig::default().with_max_segment_bytes(400_000));
    m.enable_ts();
    let mut peak = 0;
    synth.for_each(120, |f| {
        m.push(&f);
        peak = peak.max(m.memory_bytes());
    });
    // 7 segments × (~400 kB fMP4 + ~420 kB TS) + open one.
    assert!(peak < 9 * 900_000, "{peak}");
    let p = playlist(&m, Variant::Ts);
    assert!(!p.independent_segments);
    assert_eq!(p.segments.len(), 7);
}

#[test]
fn frames_before_keyframe_and_without_config_are_dropped() {
    let mut m = HlsMuxer::new(HlsConfig::default());
    m.enable_ts();
    let frames = Synth::rtmp_3mbit().frames(6);
    // Media before the configs: dropped.
    let media: Vec<&Frame> = frames.iter().filter(|f| !f.is_config()).collect();
    for f in media.iter().take(10) {
        m.push(f);
    }
    assert_eq!(m.dropped_frames(), 10);
    for f in frames.iter().filter(|f| f.is_config()) {
        m.push(f);
    }
    // Start mid-GOP: everything up to the next keyframe is dropped.
    for f in media.iter().skip(10) {
        m.push(f);
    }
    let p = playlist(&m, Variant::LowLatency);
    assert!(p.segments[0].parts[0].independent);
    assert!(m.dropped_frames() > 60);
    assert_eq!(
        m.media_playlist(Variant::LowLatency, &req(Some(0), None)),
        m.media_playlist(Variant::LowLatency, &PlaylistRequest::default())
    );
}

#[test]
fn resource_names() {
    for (path, r) in [
        ("index.m3u8", Resource::Multivariant(Variant::LowLatency)),
        ("ts/index.m3u8", Resource::Multivariant(Variant::Ts)),
        ("stream.m3u8", Resource::MediaPlaylist(Variant::LowLatency)),
        ("ts/stream.m3u8", Resource::MediaPlaylist(Variant::Ts)),
        ("init.mp4", Resource::Init),
        ("seg42.m4s", Resource::Segment(Variant::LowLatency, 42)),
        ("ts/seg42.ts", Resource::Segment(Variant::Ts, 42)),
        ("part42.3.m4s", Resource::Part { msn: 42, part: 3 }),
    ] {
        assert_eq!(Resource::parse(path), Some(r));
        assert_eq!(r.path(), path);
    }
    assert_eq!(Resource::parse("../init.mp4"), None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random frame timing (jittered intervals, random GOPs, B-frame-like
    /// composition offsets, random durations): every playlist along the way
    /// obeys the rules, and segment durations add up to the timeline.
    #[test]
    fn random_timing(
        seed in any::<u64>(),
        has_audio in any::<bool>(),
        fps in 10u32..61,
        gop in 1u64..150,
        seg_ms in 500u64..4000,
        part_ms in 100u64..600,
        timebase in prop::sample::select(vec![1000u32, 90_000, 48_000]),
        jumps in any::<bool>(),
    ) {
        let mut m = HlsMuxer::new(HlsConfig::default().with_segment_duration(Duration::from_millis(seg_ms)).with_part_duration(Duration::from_millis(part_ms)).with_window_segments(5).with_max_segment_bytes(1 << 20));
        m.enable_ts();
        let mut x = seed | 1;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n.max(1)
        };
        m.push(&config(Codec::H264));
        if has_audio {
            m.push(&config(Codec::Aac));
        }
        let tb = i64::from(timebase);
        let (mut vt, mut at) = (0i64, 0i64);
        let mut i = 0u64;
        let mut prev: [Option<Playlist>; 2] = [None, None];
        let mut restarts = 0;
        while vt < 20 * tb {
            // The publisher's clock jumps back (or far ahead), now and then.
            if jumps && rnd(400) == 0 && restarts < 3 {
                restarts += 1;
                let to = if rnd(2) == 0 { 0 } else { vt + 60 * tb };
                let d = to - vt;
                vt += d;
                at += d;
            }
            let video_next = !has_audio || vt <= at;
            if video_next {
                let key = i % gop == 0;
                let cts = if key { 0 } else { (rnd(3) as i64) * tb / i64::from(fps) };
                m.push(&Frame {
                    codec: Codec::H264,
                    flags: if key { FrameFlags::KEYFRAME } else { FrameFlags::NONE },
                    pts: vt + cts,
                    dts: vt,
                    timebase,
                    payload: video_payload(Codec::H264, key, 50 + rnd(3000) as usize, i),
                });
                i += 1;
                // Jittered interval around 1/fps, never zero.
                let base = tb / i64::from(fps);
                vt += (base / 2 + rnd(base as u64 + 1) as i64).max(1);
            } else {
                m.push(&Frame {
                    codec: Codec::Aac,
                    flags: FrameFlags::KEYFRAME,
                    pts: at,
                    dts: at,
                    timebase,
                    payload: bytes::Bytes::from(vec![0x21; 10 + rnd(300) as usize]),
                });
                at += (1024 * tb / 48_000).max(1);
            }
            if i % 17 == 0 {
                for (k, v) in BOTH.iter().enumerate() {
                    if m.is_ready(*v) {
                        let p = playlist(&m, *v);
                        if let Some(q) = &prev[k] {
                            check_continuity(q, &p);
                        }
                        prev[k] = Some(p);
                    }
                }
            }
        }
        m.finish();
        for v in BOTH {
            let p = playlist(&m, v);
            prop_assert!(p.endlist);
            prop_assert!(!p.segments.is_empty());
        }
        prop_assert!(m.memory_bytes() < 6 * 2 * (1 << 20) + (1 << 20));
        if !jumps {
            prop_assert_eq!(m.dropped_frames(), 0);
        }
    }
}

#[test]
fn audio_alone_cannot_grow_an_open_segment_when_video_stops() {
    let mut m = HlsMuxer::new(HlsConfig::default().with_max_segment_bytes(100_000));
    m.enable_ts();
    let synth = Synth::rtmp_3mbit();
    for f in synth.frames(4) {
        m.push(&f);
    }
    // 10 minutes of audio only (video stalled): memory stays bounded.
    let audio_only = Synth {
        video: None,
        audio_bytes: 400,
        ..synth
    };
    let mut peak = 0;
    for mut f in audio_only.frames(600) {
        if f.is_config() {
            continue;
        }
        f.dts += 4000;
        f.pts += 4000;
        m.push(&f);
        peak = peak.max(m.memory_bytes());
    }
    assert!(peak < 7 * 2 * 420_000 + 400_000, "{peak}");
    assert!(m.dropped_frames() > 10_000);
}

#[test]
#[ignore = "prints sample playlists"]
fn print_sample() {
    let mut m = HlsMuxer::new(HlsConfig::default());
    m.enable_ts();
    for f in Synth::rtmp_3mbit().frames(17) {
        m.push(&f);
    }
    for v in BOTH {
        if let PlaylistReply::Ready(t) = m.media_playlist(v, &PlaylistRequest::default()) {
            println!("{t}");
        }
        println!("{}", m.multivariant_playlist(v).unwrap());
    }
}

#[test]
fn memoized_playlists_follow_every_change() {
    let mut m = HlsMuxer::new(HlsConfig::default());
    m.enable_ts();
    for f in Synth::rtmp_3mbit().frames(9) {
        m.push(&f);
        for (v, skip) in [
            (Variant::LowLatency, false),
            (Variant::LowLatency, true),
            (Variant::Ts, false),
        ] {
            let req = PlaylistRequest {
                skip,
                ..PlaylistRequest::default()
            };
            if let PlaylistReply::Ready(t) = m.media_playlist(v, &req) {
                assert_eq!(t, m.render_media_playlist(v, skip));
            }
        }
    }
    m.finish();
    let PlaylistReply::Ready(t) = m.media_playlist(Variant::Ts, &PlaylistRequest::default()) else {
        panic!()
    };
    assert!(t.ends_with("#EXT-X-ENDLIST\n"));
}
