//! Shared helpers of the HLS tests: synthetic streams and a playlist checker
//! that enforces the RFC 8216 / rfc8216bis rules a player relies on.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use arcly::container::hls::{HlsMuxer, PlaylistReply, PlaylistRequest, Resource, Variant};
use arcly::{Codec, Frame, FrameFlags};
use bytes::Bytes;

#[path = "../common/mod.rs"]
pub mod common;

/// The config frame of `codec` (640x360-ish H.264, 1280x720 H.265, AAC-LC 48 kHz stereo, Opus stereo).
pub fn config(codec: Codec) -> Frame {
    common::config_frame(codec, common::config_payload(codec, 48_000, 2))
}

/// A length-prefixed video access unit of about `len` bytes.
pub fn video_payload(codec: Codec, key: bool, len: usize, seed: u64) -> Bytes {
    let len = len.max(8);
    let mut v = Vec::with_capacity(len + 4);
    v.extend_from_slice(&((len) as u32).to_be_bytes());
    match (codec, key) {
        (Codec::H264, true) => v.push(0x65),
        (Codec::H264, false) => v.push(0x41),
        (_, true) => v.extend_from_slice(&[0x26, 0x01]),
        (_, false) => v.extend_from_slice(&[0x02, 0x01]),
    }
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < len + 4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push((x as u8) | 1);
    }
    Bytes::from(v)
}

/// Description of a synthetic stream.
#[derive(Debug, Clone)]
pub struct Synth {
    pub video: Option<Codec>,
    pub audio: Option<Codec>,
    /// Video frame duration as a fraction of a second: `num / den`.
    pub frame_num: i64,
    pub frame_den: i64,
    pub gop: u64,
    /// Timebase of the produced timestamps.
    pub timebase: u32,
    pub video_bytes: usize,
    pub key_bytes: usize,
    pub audio_bytes: usize,
}

impl Synth {
    /// 30 fps H.264 (2 s GOP, ~3 Mbit/s) + AAC 48 kHz, millisecond timestamps (RTMP-like).
    pub fn rtmp_3mbit() -> Synth {
        Synth {
            video: Some(Codec::H264),
            audio: Some(Codec::Aac),
            frame_num: 1,
            frame_den: 30,
            gop: 60,
            timebase: 1000,
            video_bytes: 11_500,
            key_bytes: 60_000,
            audio_bytes: 340,
        }
    }

    /// Every frame (configs first) until `seconds`, in dts order.
    pub fn frames(&self, seconds: u64) -> Vec<Frame> {
        let mut out = Vec::new();
        self.for_each(seconds, |f| out.push(f));
        out
    }

    /// Calls `f` with every frame (configs first) until `seconds`, in dts order.
    pub fn for_each(&self, seconds: u64, mut f: impl FnMut(Frame)) {
        let tb = i64::from(self.timebase);
        for c in self.video.iter().chain(self.audio.iter()) {
            f(config(*c));
        }
        let end = seconds as i64 * tb;
        let (mut vi, mut ai) = (0i64, 0i64);
        let audio_dur = |codec: Codec| match codec {
            Codec::Opus => (960, 48_000),
            _ => (1024, 48_000),
        };
        loop {
            let vd = self
                .video
                .map(|_| vi * self.frame_num * tb / self.frame_den)
                .filter(|d| *d < end);
            let ad = self
                .audio
                .map(|c| {
                    let (n, d) = audio_dur(c);
                    ai * n * tb / d
                })
                .filter(|d| *d < end);
            match (vd, ad) {
                (None, None) => break,
                (Some(v), a) if a.map_or(true, |a| v <= a) => {
                    let codec = self.video.unwrap();
                    let key = (vi as u64) % self.gop == 0;
                    let len = if key {
                        self.key_bytes
                    } else {
                        self.video_bytes
                    };
                    f(Frame {
                        codec,
                        flags: if key {
                            FrameFlags::KEYFRAME
                        } else {
                            FrameFlags::NONE
                        },
                        pts: v,
                        dts: v,
                        timebase: self.timebase,
                        payload: video_payload(codec, key, len, vi as u64),
                    });
                    vi += 1;
                }
                (_, Some(a)) => {
                    let codec = self.audio.unwrap();
                    f(Frame {
                        codec,
                        flags: FrameFlags::KEYFRAME,
                        pts: a,
                        dts: a,
                        timebase: self.timebase,
                        payload: Bytes::from(vec![0x21; self.audio_bytes]),
                    });
                    ai += 1;
                }
                _ => break,
            }
        }
    }
}

/// A part as listed in a playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedPart {
    pub duration: f64,
    pub uri: String,
    pub independent: bool,
}

/// A segment as listed in a playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedSegment {
    pub msn: u64,
    pub duration: f64,
    pub uri: String,
    pub parts: Vec<ListedPart>,
    pub discontinuity: bool,
}

/// A parsed media playlist.
#[derive(Debug, Clone, Default)]
pub struct Playlist {
    pub version: u32,
    pub target: u64,
    pub part_target: Option<f64>,
    pub part_hold_back: Option<f64>,
    pub can_skip_until: Option<f64>,
    pub can_block_reload: bool,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub independent_segments: bool,
    pub maps: Vec<String>,
    pub skipped: u64,
    pub segments: Vec<ListedSegment>,
    /// Parts after the last complete segment (the open segment).
    pub open_parts: Vec<ListedPart>,
    pub preload_hint: Option<String>,
    pub endlist: bool,
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let body = line.split_once(':')?.1;
    // Attribute lists here never have commas inside quoted strings except CODECS.
    let mut rest = body;
    while !rest.is_empty() {
        let (k, after) = rest.split_once('=')?;
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if k == name {
            return Some(v);
        }
        rest = next;
    }
    None
}

fn num(s: &str) -> f64 {
    assert!(
        s.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
        "not a decimal-floating-point: {s:?}"
    );
    s.parse().unwrap()
}

/// Parses a media playlist; panics on anything unexpected (unknown tags included).
pub fn parse(text: &str) -> Playlist {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("#EXTM3U"), "{text}");
    let mut p = Playlist::default();
    let mut parts = Vec::new();
    let mut pending_dur: Option<f64> = None;
    let mut disc = false;
    let mut next_msn = None;
    for l in lines {
        assert!(!l.trim().is_empty(), "blank line in {text}");
        if let Some(v) = l.strip_prefix("#EXT-X-VERSION:") {
            p.version = v.parse().unwrap();
        } else if let Some(v) = l.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target = v.parse().unwrap();
        } else if l.starts_with("#EXT-X-SERVER-CONTROL:") {
            p.can_block_reload = attr(l, "CAN-BLOCK-RELOAD") == Some("YES");
            p.part_hold_back = attr(l, "PART-HOLD-BACK").map(num);
            p.can_skip_until = attr(l, "CAN-SKIP-UNTIL").map(num);
        } else if l.starts_with("#EXT-X-PART-INF:") {
            p.part_target = attr(l, "PART-TARGET").map(num);
        } else if let Some(v) = l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            p.media_sequence = v.parse().unwrap();
        } else if let Some(v) = l.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            p.discontinuity_sequence = v.parse().unwrap();
        } else if l == "#EXT-X-INDEPENDENT-SEGMENTS" {
            p.independent_segments = true;
        } else if l.starts_with("#EXT-X-MAP:") {
            p.maps.push(attr(l, "URI").unwrap().to_owned());
        } else if l.starts_with("#EXT-X-SKIP:") {
            p.skipped = attr(l, "SKIPPED-SEGMENTS").unwrap().parse().unwrap();
        } else if l == "#EXT-X-DISCONTINUITY" {
            disc = true;
        } else if l.starts_with("#EXT-X-PART:") {
            parts.push(ListedPart {
                duration: num(attr(l, "DURATION").unwrap()),
                uri: attr(l, "URI").unwrap().to_owned(),
                independent: attr(l, "INDEPENDENT") == Some("YES"),
            });
        } else if l.starts_with("#EXT-X-PRELOAD-HINT:") {
            assert_eq!(attr(l, "TYPE"), Some("PART"));
            p.preload_hint = Some(attr(l, "URI").unwrap().to_owned());
        } else if let Some(v) = l.strip_prefix("#EXTINF:") {
            pending_dur = Some(num(v.strip_suffix(',').unwrap()));
        } else if l == "#EXT-X-ENDLIST" {
            p.endlist = true;
        } else if l.starts_with('#') {
            panic!("unexpected tag {l}");
        } else {
            let msn = next_msn.unwrap_or(p.media_sequence + p.skipped);
            next_msn = Some(msn + 1);
            p.segments.push(ListedSegment {
                msn,
                duration: pending_dur.take().expect("URI without EXTINF"),
                uri: l.to_owned(),
                parts: std::mem::take(&mut parts),
                discontinuity: std::mem::take(&mut disc),
            });
        }
    }
    p.open_parts = parts;
    p
}

/// The media playlist of `variant` without directives, parsed and checked.
pub fn playlist(m: &HlsMuxer, variant: Variant) -> Playlist {
    let text = match m.media_playlist(variant, &PlaylistRequest::default()) {
        PlaylistReply::Ready(t) => t,
        other => panic!("playlist not ready: {other:?}"),
    };
    let p = parse(&text);
    check(&p, m, variant, &text);
    p
}

/// Every rule a player relies on; panics with the playlist on failure.
pub fn check(p: &Playlist, m: &HlsMuxer, variant: Variant, text: &str) {
    assert!(p.target >= 1, "{text}");
    assert_eq!(p.target, m.target_duration().as_secs(), "{text}");
    for s in &p.segments {
        // RFC 8216 §4.3.3.1: EXTINF rounded to the nearest integer ≤ target.
        assert!(
            (s.duration + 0.5).floor() as u64 <= p.target,
            "EXTINF {} > target {}: {text}",
            s.duration,
            p.target
        );
        assert!(s.duration > 0.0, "{text}");
        let want = Resource::Segment(variant, s.msn).path();
        let want = want.strip_prefix("ts/").unwrap_or(&want);
        assert_eq!(s.uri, want, "{text}");
        let seg = m
            .segment(variant, s.msn)
            .unwrap_or_else(|| panic!("segment {} not served: {text}", s.msn));
        assert!(!seg.is_empty());
        if variant == Variant::Ts {
            // Every TS segment starts with PAT then PMT (RFC 8216 §3.2).
            assert_eq!(seg.len() % 188, 0);
            assert_eq!(&seg[..3], &[0x47, 0x40, 0x00][..], "PAT first");
            assert_eq!(seg[188 + 1] & 0x1F, 0x10, "PMT second");
        }
    }
    match variant {
        Variant::Ts => {
            assert_eq!(p.version, 3);
            assert!(p.part_target.is_none() && p.open_parts.is_empty() && p.preload_hint.is_none());
            assert!(p.segments.iter().all(|s| s.parts.is_empty()));
            assert!(p.maps.is_empty());
        }
        Variant::LowLatency => {
            assert!(p.version >= 6, "{text}");
            assert!(p.can_block_reload, "{text}");
            assert!(
                p.maps.first().is_some_and(|m| m.starts_with("init.mp4")),
                "{text}"
            );
            let pt = p.part_target.expect("PART-INF");
            let phb = p.part_hold_back.expect("PART-HOLD-BACK");
            // rfc8216bis §4.4.3.8: PART-HOLD-BACK ≥ 2 × PART-TARGET (3 × recommended).
            assert!(phb + 1e-9 >= 3.0 * pt, "{text}");
            if let Some(skip) = p.can_skip_until {
                assert!(skip + 1e-9 >= 6.0 * p.target as f64, "{text}");
            }
            let listed = p
                .segments
                .iter()
                .map(|s| (s.msn, &s.parts))
                .chain(std::iter::once((
                    p.segments
                        .last()
                        .map_or(p.media_sequence + p.skipped, |s| s.msn + 1),
                    &p.open_parts,
                )));
            for (msn, parts) in listed {
                for (i, part) in parts.iter().enumerate() {
                    // rfc8216bis §4.4.4.9: part duration ≤ PART-TARGET.
                    assert!(
                        part.duration <= pt + 1e-9,
                        "part {} > {pt}: {text}",
                        part.duration
                    );
                    assert_eq!(
                        Resource::parse(&part.uri),
                        Some(Resource::Part {
                            msn,
                            part: i as u32
                        }),
                        "{text}"
                    );
                    assert!(m.part(msn, i as u32).is_some(), "{} not served", part.uri);
                }
            }
            for s in &p.segments {
                if s.parts.is_empty() {
                    continue;
                }
                // All parts of a listed segment, concatenated, are the segment.
                let mut cat = Vec::new();
                for i in 0.. {
                    match m.part(s.msn, i) {
                        Some(b) => cat.extend_from_slice(&b),
                        None => break,
                    }
                }
                assert_eq!(s.parts.len(), m_parts(m, s.msn), "{text}");
                assert_eq!(cat, m.segment(variant, s.msn).unwrap().to_vec());
                let sum: f64 = s.parts.iter().map(|x| x.duration).sum();
                assert!(
                    (sum - s.duration).abs() < 1e-5 * (s.parts.len() as f64 + 1.0),
                    "parts sum {sum} != EXTINF {}: {text}",
                    s.duration
                );
            }
            if !p.endlist {
                // The hint names the part after the last one listed.
                let open = p
                    .segments
                    .last()
                    .map_or(p.media_sequence + p.skipped, |s| s.msn + 1);
                let want = Resource::Part {
                    msn: open,
                    part: p.open_parts.len() as u32,
                }
                .path();
                assert_eq!(p.preload_hint.as_deref(), Some(want.as_str()), "{text}");
            } else {
                assert!(p.preload_hint.is_none());
            }
        }
    }
}

fn m_parts(m: &HlsMuxer, msn: u64) -> usize {
    (0..).take_while(|i| m.part(msn, *i).is_some()).count()
}

/// Continuity between two successive playlists of the same variant
/// (RFC 8216 §6.2.1–§6.2.2): the media sequence never goes back, a segment
/// keeps its duration and URI, no segment number is skipped.
pub fn check_continuity(prev: &Playlist, next: &Playlist) {
    assert!(next.media_sequence >= prev.media_sequence);
    assert!(next.discontinuity_sequence >= prev.discontinuity_sequence);
    let last = |p: &Playlist| p.segments.last().map(|s| s.msn);
    assert!(last(next) >= last(prev));
    for s in &prev.segments {
        if let Some(n) = next.segments.iter().find(|n| n.msn == s.msn) {
            assert_eq!(
                (n.duration, &n.uri, n.discontinuity),
                (s.duration, &s.uri, s.discontinuity)
            );
        }
    }
    // Removed segments with a discontinuity advance the discontinuity sequence.
    let removed_disc = prev
        .segments
        .iter()
        .filter(|s| s.msn < next.media_sequence && s.discontinuity)
        .count() as u64;
    assert!(next.discontinuity_sequence >= prev.discontinuity_sequence + removed_disc);
    for w in next.segments.windows(2) {
        assert_eq!(w[0].msn + 1, w[1].msn);
    }
}
