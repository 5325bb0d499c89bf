//! The classic-HLS TS variant is built only while someone asks for it
//! (`HlsMuxer::enable_ts` / `disable_ts`): no TS bytes for LL-HLS-only
//! viewers; once asked for, TS starts at the next keyframe-aligned segment,
//! with the fMP4 segments' media sequence numbers and the same frames in
//! segment `N` of both variants; stopped, its bytes are freed while LL-HLS
//! goes on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod hls_common;

use arcly::container::hls::{HlsConfig, HlsMuxer, PlaylistReply, PlaylistRequest, Variant};
use arcly::container::ts::TsDemuxer;
use arcly::{Frame, MediaKind};
use hls_common::*;

/// `frames` whose decode time is below `until_ms` (ms timebase), pushed.
fn push_until(m: &mut HlsMuxer, frames: &[Frame], at: &mut usize, until_ms: i64) {
    while let Some(f) = frames.get(*at) {
        if !f.is_config() && f.dts >= until_ms {
            break;
        }
        m.push(f);
        *at += 1;
    }
}

/// `baseMediaDecodeTime` of the first `tfdt` (the video track's: track 1
/// is written first) of an fMP4 segment (ISO/IEC 14496-12 §8.8.12).
fn first_tfdt(seg: &[u8]) -> u64 {
    let at = seg.windows(4).position(|w| w == b"tfdt").unwrap();
    let body = &seg[at + 4..];
    if body[0] == 1 {
        u64::from_be_bytes(body[4..12].try_into().unwrap())
    } else {
        u64::from(u32::from_be_bytes(body[4..8].try_into().unwrap()))
    }
}

/// The video frames of a TS segment: (dts in 90 kHz, keyframe).
fn ts_video(seg: &[u8]) -> Vec<(i64, bool)> {
    let mut d = TsDemuxer::new();
    d.handle_input(seg).unwrap();
    d.flush();
    let mut out = Vec::new();
    while let Some(f) = d.poll_frame() {
        if f.kind() == MediaKind::Video && !f.is_config() {
            out.push((f.dts * 90_000 / i64::from(f.timebase), f.is_keyframe()));
        }
    }
    out
}

#[test]
fn ll_hls_only_holds_no_ts_bytes() {
    let mut m = HlsMuxer::new(HlsConfig::default());
    let frames = Synth::rtmp_3mbit().frames(20);
    let mut at = 0;
    push_until(&mut m, &frames, &mut at, 20_000);
    assert!(!m.ts_enabled());
    assert_eq!(m.ts_bytes(), 0, "no TS bytes without a TS viewer");
    assert!(m.memory_bytes() > 1 << 20, "the fMP4 window is held");
    let ll = playlist(&m, Variant::LowLatency);
    assert!(ll.segments.len() >= 7);
    for s in &ll.segments {
        assert!(m.segment(Variant::Ts, s.msn).is_none());
    }
    assert!(!m.is_ready(Variant::Ts));
    assert_eq!(
        m.media_playlist(Variant::Ts, &PlaylistRequest::default()),
        PlaylistReply::NotYet
    );
}

#[test]
fn first_ts_request_starts_at_the_next_keyframe_with_shared_numbers() {
    let mut m = HlsMuxer::new(HlsConfig::default());
    // 2 s GOP, 2 s segments: segments start at 0, 2, 4, 6, … s.
    let frames = Synth::rtmp_3mbit().frames(16);
    let mut at = 0;
    push_until(&mut m, &frames, &mut at, 5_500);
    let before = m.memory_bytes();
    m.enable_ts();
    // Segment 2 (4–6 s) is open without TS: TS starts with segment 3 (6 s).
    push_until(&mut m, &frames, &mut at, 7_900);
    assert!(!m.is_ready(Variant::Ts), "no complete TS segment yet");
    assert_eq!(
        m.media_playlist(Variant::Ts, &PlaylistRequest::default()),
        PlaylistReply::NotYet,
        "the first TS playlist is not an empty one"
    );
    assert!(m.ts_bytes() > 0, "segment 3 is being muxed to TS");
    push_until(&mut m, &frames, &mut at, 8_100);
    assert!(m.is_ready(Variant::Ts));
    let ts = playlist(&m, Variant::Ts);
    assert_eq!(ts.media_sequence, 3, "TS numbering is the fMP4 numbering");
    assert_eq!(ts.segments.len(), 1);
    assert!(ts.independent_segments);
    assert!(m.memory_bytes() > before);

    push_until(&mut m, &frames, &mut at, 16_000);
    m.finish();
    let ts = playlist(&m, Variant::Ts);
    let ll = playlist(&m, Variant::LowLatency);
    assert_eq!(ts.media_sequence, 3);
    assert_eq!(
        ts.segments.iter().map(|s| s.msn).collect::<Vec<_>>(),
        (3..=7).collect::<Vec<_>>()
    );
    for s in &ts.segments {
        let l = ll.segments.iter().find(|l| l.msn == s.msn).unwrap();
        assert_eq!(l.duration, s.duration, "segment {}", s.msn);
        // The same frames: same first decode time, a keyframe first, 60 frames.
        let fmp4 = m.segment(Variant::LowLatency, s.msn).unwrap();
        let video = ts_video(&m.segment(Variant::Ts, s.msn).unwrap());
        assert_eq!(video.len(), 60, "segment {}", s.msn);
        assert!(video[0].1, "TS segment {} starts on a keyframe", s.msn);
        assert_eq!(video[0].0 as u64, first_tfdt(&fmp4), "segment {}", s.msn);
        assert_eq!(video[0].0, s.msn as i64 * 2 * 90_000);
    }
}

#[test]
fn disabled_ts_is_freed_and_ll_hls_goes_on() {
    let mut m = HlsMuxer::new(HlsConfig::default());
    m.enable_ts();
    let frames = Synth::rtmp_3mbit().frames(40);
    let mut at = 0;
    push_until(&mut m, &frames, &mut at, 15_000);
    let ts_held = m.ts_bytes();
    let with_ts = m.memory_bytes();
    assert!(ts_held > 1 << 20, "{ts_held}");
    assert_eq!(playlist(&m, Variant::Ts).media_sequence, 0);
    let ll_before = playlist(&m, Variant::LowLatency);

    m.disable_ts();
    assert!(!m.ts_enabled());
    assert_eq!(m.ts_bytes(), 0);
    assert_eq!(m.memory_bytes(), with_ts - ts_held);
    assert!(!m.is_ready(Variant::Ts));
    assert!(m.segment(Variant::Ts, ll_before.segments[0].msn).is_none());
    // LL-HLS is untouched and continues.
    assert_eq!(
        playlist(&m, Variant::LowLatency).segments,
        ll_before.segments
    );
    push_until(&mut m, &frames, &mut at, 30_000);
    let ll = playlist(&m, Variant::LowLatency);
    assert!(ll.segments.last().unwrap().msn > ll_before.segments.last().unwrap().msn);
    assert_eq!(m.ts_bytes(), 0, "nothing muxed to TS while off");

    // Asked for again: a fresh start at the next segment.
    m.enable_ts();
    push_until(&mut m, &frames, &mut at, 34_100);
    let ts = playlist(&m, Variant::Ts);
    let first_new = ll.segments.last().unwrap().msn + 2;
    assert_eq!(ts.media_sequence, first_new);
}
