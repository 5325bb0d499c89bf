//! `EXT-X-PROGRAM-DATE-TIME` (draft-pantos-hls-rfc8216bis §4.4.4.6) in both
//! media playlists: present on the first listed segment and after each
//! discontinuity (also in delta updates), the same date for segment `N` in
//! the TS and fMP4 variants, dates spaced exactly by `EXTINF` (anchored
//! once per epoch, no arrival jitter, no drift over an hour), re-anchored
//! on a discontinuity, never changed once listed, and absent without a
//! wall clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod hls_common;

use std::collections::BTreeMap;
use std::time::Duration;

use arcly::container::hls::{HlsConfig, HlsMuxer, PlaylistReply, PlaylistRequest, Variant};
use arcly::http::{HlsServiceConfig, HttpConfig, HttpRouter, Routed, WallClock};
use arcly::time::Instant;
use arcly::{Engine, Frame, StreamKey};
use hls_common::*;

/// 2026-11-26T13:05:00.000Z in Unix µs.
const BASE_US: u64 = 1_795_698_300_000_000;

/// Unix µs of an ISO 8601 UTC date-time `YYYY-MM-DDTHH:MM:SS.mmmZ` (the
/// only form the server writes); panics on anything else.
fn parse_date(s: &str) -> u64 {
    let b = s.as_bytes();
    assert_eq!(s.len(), 24, "{s}");
    assert_eq!(
        (b[4], b[7], b[10], b[13], b[16], b[19], b[23]),
        (b'-', b'-', b'T', b':', b':', b'.', b'Z'),
        "{s}"
    );
    let n = |r: std::ops::Range<usize>| s[r].parse::<u64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    assert!((1..=12).contains(&m) && (1..=31).contains(&d), "{s}");
    // Days before year y since 1970, then before month m, then the day.
    let leap = |y: u64| y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let mut days: u64 = (1970..y).map(|y| if leap(y) { 366 } else { 365 }).sum();
    let months = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    days += months[..(m - 1) as usize].iter().sum::<u64>() + d - 1;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    secs * 1_000_000 + n(20..23) * 1000
}

#[test]
fn date_parser_matches_known_dates() {
    assert_eq!(parse_date("1970-01-01T00:00:00.000Z"), 0);
    assert_eq!(parse_date("2026-11-26T13:05:00.000Z"), BASE_US);
    assert_eq!(parse_date("2000-02-29T00:00:00.001Z"), 951_782_400_001_000);
}

/// A media playlist as far as dates go.
#[derive(Debug, Default)]
struct Dated {
    /// Listed segments: (msn, EXTINF µs, date if tagged, discontinuity).
    segments: Vec<(u64, u64, Option<u64>, bool)>,
    /// The date tagged on the open segment (parts only), if any.
    open_date: Option<u64>,
    skipped: u64,
}

/// Reads the segments and their dates; checks the tag rules on the way:
/// a date before the first listed segment and after each discontinuity,
/// nowhere else, and each one followed by a segment (or its parts).
fn dated(text: &str) -> Dated {
    let mut d = Dated::default();
    let mut media_sequence = 0;
    let mut pending_date = None;
    let mut pending_dur = None;
    let mut disc = false;
    let mut first = true;
    let mut parts_pending = false;
    for l in text.lines() {
        if let Some(v) = l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            media_sequence = v.parse().unwrap();
        } else if let Some(v) = l.strip_prefix("#EXT-X-SKIP:SKIPPED-SEGMENTS=") {
            d.skipped = v.parse().unwrap();
        } else if let Some(v) = l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            assert!(pending_date.is_none(), "two dates for one segment:\n{text}");
            assert!(!parts_pending, "date after a part:\n{text}");
            pending_date = Some(parse_date(v));
        } else if l == "#EXT-X-DISCONTINUITY" {
            disc = true;
        } else if l.starts_with("#EXT-X-PART:") {
            if !parts_pending {
                assert_eq!(
                    pending_date.is_some(),
                    first || disc,
                    "a date exactly on the first segment and after a discontinuity:\n{text}"
                );
            }
            parts_pending = true;
        } else if let Some(v) = l.strip_prefix("#EXTINF:") {
            let secs: f64 = v.trim_end_matches(',').parse().unwrap();
            pending_dur = Some((secs * 1e6).round() as u64);
        } else if !l.starts_with('#') {
            if !parts_pending {
                assert_eq!(
                    pending_date.is_some(),
                    first || disc,
                    "a date exactly on the first segment and after a discontinuity:\n{text}"
                );
            }
            let msn = media_sequence + d.skipped + d.segments.len() as u64;
            d.segments.push((
                msn,
                pending_dur.take().unwrap(),
                pending_date.take(),
                std::mem::take(&mut disc),
            ));
            first = false;
            parts_pending = false;
        }
    }
    if parts_pending {
        d.open_date = pending_date.take();
    }
    assert!(pending_date.is_none(), "a date with no segment:\n{text}");
    d
}

fn text(m: &HlsMuxer, variant: Variant, skip: bool) -> String {
    match m.media_playlist(
        variant,
        &PlaylistRequest {
            skip,
            ..Default::default()
        },
    ) {
        PlaylistReply::Ready(t) => t,
        other => panic!("not ready: {other:?}"),
    }
}

/// The playlist checked by the shared spec checker (which knows no dates).
fn check_spec(m: &HlsMuxer, variant: Variant, t: &str) {
    let stripped: String = t
        .lines()
        .filter(|l| !l.starts_with("#EXT-X-PROGRAM-DATE-TIME:"))
        .flat_map(|l| [l, "\n"])
        .collect();
    check(&parse(&stripped), m, variant, &stripped);
}

/// A small stream (30 fps H.264 with a 2 s GOP + AAC, ms timestamps) with
/// tiny payloads, so an hour of it muxes quickly.
fn light() -> Synth {
    Synth {
        video_bytes: 120,
        key_bytes: 600,
        audio_bytes: 16,
        ..Synth::rtmp_3mbit()
    }
}

/// Arrival jitter of frame `i` (0–80 ms, deterministic).
fn jitter_us(i: u64) -> u64 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 80_000
}

/// Records every segment's date the first time it is seen and checks it
/// never changes; returns nothing, fills `dates` (msn → (date, EXTINF)).
fn record(m: &HlsMuxer, variant: Variant, dates: &mut BTreeMap<u64, (u64, u64)>) {
    let t = text(m, variant, false);
    check_spec(m, variant, &t);
    let d = dated(&t);
    // Dates of every listed segment: tagged ones, the others by EXTINF.
    let mut at: Option<u64> = None;
    for (msn, dur, date, _) in d.segments {
        let date = date.or(at).expect("first segment has a date");
        if let Some((old, old_dur)) = dates.insert(msn, (date, dur)) {
            assert_eq!(old, date, "the date of segment {msn} changed:\n{t}");
            assert_eq!(old_dur, dur);
        }
        at = Some(date + dur);
    }
}

#[test]
fn dates_are_spaced_by_extinf_over_an_hour_in_both_variants() {
    let mut m = HlsMuxer::new(HlsConfig::default());
    m.enable_ts();
    let mut ll = BTreeMap::new();
    let mut ts = BTreeMap::new();
    let mut next_msn = 0;
    let mut i = 0u64;
    light().for_each(3600, |f: Frame| {
        let media_us = f.dts as u64 * 1000;
        m.push_at(&f, BASE_US + media_us + jitter_us(i));
        i += 1;
        // After every completed segment: each one is the first of a
        // window at some point (and dated explicitly there).
        if m.segment(Variant::LowLatency, next_msn).is_some() {
            next_msn += 1;
            record(&m, Variant::LowLatency, &mut ll);
            if m.is_ready(Variant::Ts) {
                record(&m, Variant::Ts, &mut ts);
            }
        }
    });
    m.finish();
    record(&m, Variant::LowLatency, &mut ll);
    record(&m, Variant::Ts, &mut ts);
    assert!(ll.len() >= 1795, "an hour of 2 s segments: {}", ll.len());
    // The same date for segment N in both variants.
    assert_eq!(ll.len(), ts.len());
    for (msn, v) in &ll {
        assert_eq!(ts.get(msn), Some(v), "segment {msn}");
    }
    // Consecutive dates differ by EXTINF to the millisecond (dates are
    // written in ms, EXTINF in 10 µs), however the frames arrived.
    let v: Vec<_> = ll.values().copied().collect();
    for w in v.windows(2) {
        let ((a, dur), (b, _)) = (w[0], w[1]);
        assert!(b.abs_diff(a + dur) <= 1_000, "{a} + {dur} vs {b}");
    }
    // No drift: a segment's date is its media time on the anchor of the
    // first frames (which came at most 80 ms late).
    let (first_date, _) = v[0];
    assert!((BASE_US..BASE_US + 80_000).contains(&first_date));
    let mut media = 0;
    for (date, dur) in &v {
        assert!(
            date.abs_diff(first_date + media) <= 1_000,
            "drift at {media} µs: {date} vs {}",
            first_date + media
        );
        media += dur;
    }
    assert!(media > 3_590_000_000, "{media}");
}

/// Pushes the frames of `synth` from media second `from` to `to`
/// (exclusive), their dts shifted by `shift_ms`, arriving at `wall(dts)`.
fn feed(m: &mut HlsMuxer, frames: &[Frame], shift_ms: i64, wall: impl Fn(i64) -> u64) {
    for f in frames {
        let mut f = f.clone();
        f.dts += shift_ms;
        f.pts += shift_ms;
        m.push_at(&f, wall(f.dts));
    }
}

#[test]
fn a_discontinuity_gets_a_new_date_in_both_variants() {
    let mut m = HlsMuxer::new(HlsConfig::default());
    m.enable_ts();
    let frames = light().frames(10);
    feed(&mut m, &frames, 0, |dts| BASE_US + dts as u64 * 1000);
    // The publisher comes back 7 s later (wall) with timestamps from 0
    // again: a discontinuity; the new epoch is anchored on its own arrival.
    let back = BASE_US + 17_000_000;
    feed(&mut m, &frames, 0, |dts| back + dts as u64 * 1000);
    m.finish();
    for variant in [Variant::LowLatency, Variant::Ts] {
        let t = text(&m, variant, false);
        check_spec(&m, variant, &t);
        let d = dated(&t);
        let (disc_at, seg) = d
            .segments
            .iter()
            .enumerate()
            .find(|(_, s)| s.3)
            .expect("a discontinuity in the window");
        assert!(disc_at > 0, "{t}");
        let date = seg.2.expect("a date after the discontinuity");
        assert_eq!(date, back, "re-anchored on the new arrival:\n{t}");
        // Before it: the old anchor, spaced by EXTINF.
        let first = d.segments[0].2.unwrap();
        let before: u64 = d.segments[..disc_at].iter().map(|s| s.1).sum();
        let last_old_msn = d.segments[disc_at - 1].0;
        assert!(first >= BASE_US, "{t}");
        assert!(first + before <= BASE_US + 10_100_000, "{t}");
        assert!(last_old_msn + 1 == seg.0);
    }
    // The same text in both variants for the dated lines.
    let dates = |v| -> Vec<String> {
        text(&m, v, false)
            .lines()
            .filter(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(dates(Variant::LowLatency), dates(Variant::Ts));
}

#[test]
fn delta_updates_date_the_first_segment_after_the_skip() {
    let mut m = HlsMuxer::new(HlsConfig::default());
    let frames = light().frames(40);
    feed(&mut m, &frames, 0, |dts| {
        BASE_US + dts as u64 * 1000 + 30_000
    });
    let full = dated(&text(&m, Variant::LowLatency, false));
    let t = text(&m, Variant::LowLatency, true);
    let delta = dated(&t);
    assert!(delta.skipped > 0, "{t}");
    // Implied dates of the full playlist.
    let mut at = full.segments[0].2.unwrap();
    let mut implied = BTreeMap::new();
    for s in &full.segments {
        implied.insert(s.0, at);
        at += s.1;
    }
    let (msn, _, date, _) = delta.segments[0];
    let date = date.expect("the first segment after EXT-X-SKIP has a date");
    assert!(date.abs_diff(implied[&msn]) <= 1_000, "{t}");
    assert!(delta.segments[1..].iter().all(|s| s.2.is_none()), "{t}");
    // The open segment is dated only when it is the first listed one.
    assert_eq!(delta.open_date, None);
}

#[test]
fn a_cache_taken_in_late_is_anchored_on_the_live_edge_then_fixed() {
    let mut m = HlsMuxer::new(HlsConfig::default());
    let frames = light().frames(10);
    // The first 1.9 s (a GOP cache) are taken in at once, 1.9 s after the
    // first of them arrived; the muxer has then caught up.
    let cached = BASE_US + 1_900_000;
    let split = frames
        .iter()
        .position(|f| !f.is_config() && f.dts >= 1_900)
        .unwrap();
    feed(&mut m, &frames[..split], 0, |_| cached);
    m.live_edge(cached + 5_000);
    // Parts only so far: the segment being built is dated.
    let early = dated(&text(&m, Variant::LowLatency, false));
    assert!(early.segments.is_empty());
    let open_date = early.open_date.expect("the open segment is dated");
    // The newest cached frame (dts ≈ 1.87 s) was live: the stream started
    // about 1.9 s before the intake (not at it).
    assert!(
        open_date.abs_diff(BASE_US) <= 50_000,
        "first segment dated {} ms off",
        (open_date as i64 - BASE_US as i64) / 1000
    );
    // Later frames come 60 ms "earlier" than the cache's edge did (the
    // anchor is fixed: a listed date never moves between reloads).
    feed(&mut m, &frames[split..], 0, |dts| {
        BASE_US + dts as u64 * 1000 - 60_000
    });
    let d = dated(&text(&m, Variant::LowLatency, false));
    assert_eq!(d.segments[0].0, 0);
    assert_eq!(d.segments[0].2, Some(open_date));
}

#[test]
fn without_wall_times_there_are_no_dates() {
    let mut m = HlsMuxer::new(HlsConfig::default());
    m.enable_ts();
    for f in light().frames(10) {
        m.push(&f);
    }
    m.finish();
    for v in [Variant::LowLatency, Variant::Ts] {
        assert!(!text(&m, v, false).contains("PROGRAM-DATE-TIME"));
    }
}

/// Through the HTTP service: a configured [`WallClock`] dates the
/// playlists (µs of the router's `now` + the anchor), the default does not.
#[test]
fn http_service_dates_playlists_with_its_wall_clock() {
    for wall in [Some(WallClock::new(BASE_US)), None] {
        let engine = Engine::with_defaults();
        let key = StreamKey::new("live", "cam").unwrap();
        let mut publisher = engine.publish(key.clone()).unwrap();
        let router = HttpRouter::new(
            engine.clone(),
            HttpConfig::default().with_hls(
                HlsServiceConfig::default()
                    .with_wall_clock(wall)
                    .with_muxer(HlsConfig::default().with_segment_duration(Duration::from_secs(1))),
            ),
        );
        let get = |path: &str, now: Instant| {
            let req = http::Request::get(path).body(bytes::Bytes::new()).unwrap();
            match router.handle(&req, now) {
                Routed::Response(r) => r,
                Routed::Wait(_) => panic!("{path}: parked"),
            }
        };
        let frames = light().frames(6);
        let mut sent = 0;
        let mut send_until = |ms: i64, publisher: &mut arcly::engine::Publisher| {
            while let Some(f) = frames.get(sent) {
                if !f.is_config() && f.dts >= ms {
                    break;
                }
                publisher.send(f.clone());
                sent += 1;
            }
        };
        // Frames up to 0.5 s, then the first request at 0.5 s (stream time
        // = router time here): the muxer takes in the cache.
        send_until(500, &mut publisher);
        let first = http::Request::get("/live/cam/ts/stream.m3u8")
            .body(bytes::Bytes::new())
            .unwrap();
        // Parked: nothing complete yet.
        assert!(matches!(
            router.handle(&first, Instant::from_millis(500)),
            Routed::Wait(_)
        ));
        let stream = router.hls().unwrap().get(&key).unwrap();
        for ms in (600..=6_000).step_by(100) {
            send_until(ms, &mut publisher);
            let _ = stream.pump(Instant::from_millis(ms as u64));
        }
        let body = |p| {
            let r = get(p, Instant::from_millis(6_000));
            assert_eq!(r.status(), 200, "{p}");
            String::from_utf8(r.body().to_vec()).unwrap()
        };
        let ll = body("/live/cam/stream.m3u8");
        let ts = body("/live/cam/ts/stream.m3u8");
        let dates = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME:"))
                .map(str::to_owned)
                .collect()
        };
        match wall {
            None => {
                assert!(dates(&ll).is_empty() && dates(&ts).is_empty(), "{ll}\n{ts}");
            }
            Some(_) => {
                let (dl, dt) = (dated(&ll), dated(&ts));
                // Segment 0 started at stream time 0, router time ~0.
                let first = dl.segments[0];
                assert_eq!(first.0, 0, "{ll}");
                let date = first.2.unwrap();
                assert!(date.abs_diff(BASE_US) <= 100_000, "{ll}");
                // TS segment N: the date of fMP4 segment N.
                let mut at = date;
                let mut by_msn = BTreeMap::new();
                for s in &dl.segments {
                    by_msn.insert(s.0, at);
                    at += s.1;
                }
                let ts_first = dt.segments[0];
                assert_eq!(
                    Some(&ts_first.2.unwrap()),
                    by_msn.get(&ts_first.0),
                    "{ll}\n{ts}"
                );
            }
        }
    }
}
