//! MPEG-TS round trips: frames → `TsMuxer` → bytes (split at random points,
//! with garbage between packets, cut at the start, packets lost) →
//! `TsDemuxer` → the same frames. Codecs H.264, H.265, AAC and Opus;
//! timestamps across the 33-bit wrap.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use arcly::codec::opus::OpusHead;
use arcly::container::ts::{TsDemuxer, TsMuxer, PACKET_SIZE, SYNC_BYTE};
use arcly::{Codec, Frame, FrameFlags};
use bytes::Bytes;
use proptest::prelude::*;

mod common;

fn config_payload(codec: Codec) -> Bytes {
    common::config_payload(codec, 48_000, 2)
}

/// One generated access unit: NAL bodies (video) or a raw payload (audio).
#[derive(Debug, Clone)]
struct Unit {
    key: bool,
    /// `FrameFlags::DISCONTINUITY` (carried as `discontinuity_indicator`).
    disc: bool,
    cts: i64,
    step: i64,
    parts: Vec<Vec<u8>>,
}

/// NAL bodies never contain a zero byte, so no start-code emulation is needed.
fn unit_strategy(max_len: usize) -> impl Strategy<Value = Unit> {
    (
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.05),
        prop::sample::select(vec![0i64, 3000, 6000]),
        prop::sample::select(vec![1500i64, 3000, 3003, 3600]),
        prop::collection::vec(prop::collection::vec(1u8..=255, 1..max_len), 1..4),
    )
        .prop_map(|(key, disc, cts, step, parts)| Unit {
            key,
            disc,
            cts,
            step,
            parts,
        })
}

fn video_payload(codec: Codec, key: bool, parts: &[Vec<u8>]) -> Bytes {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let header: &[u8] = match (codec, i == 0, key) {
            (Codec::H264, true, true) => &[0x65],
            (Codec::H264, _, _) => &[0x41],
            (_, true, true) => &[19 << 1, 0x01], // IDR_W_RADL
            _ => &[1 << 1, 0x01],                // TRAIL_R
        };
        out.extend_from_slice(&((header.len() + p.len()) as u32).to_be_bytes());
        out.extend_from_slice(header);
        out.extend_from_slice(p);
    }
    Bytes::from(out)
}

/// Frames of a stream: a config frame per track, then media frames in dts order.
fn make_frames(
    video: Option<Codec>,
    audio: Option<Codec>,
    base: i64,
    vunits: &[Unit],
    aunits: &[Unit],
) -> Vec<Frame> {
    let mut v = Vec::new();
    let mut a = Vec::new();
    let frame = common::frame_90k;
    if let Some(c) = video {
        let mut dts = base;
        v.push(frame(c, FrameFlags::CONFIG, base, base, config_payload(c)));
        for (i, u) in vunits.iter().enumerate() {
            let key = i == 0 || u.key;
            let mut flags = if key {
                FrameFlags::KEYFRAME
            } else {
                FrameFlags::NONE
            };
            if u.disc {
                flags = flags | FrameFlags::DISCONTINUITY;
            }
            v.push(frame(
                c,
                flags,
                dts + u.cts,
                dts,
                video_payload(c, key, &u.parts),
            ));
            dts += u.step;
        }
    }
    if let Some(c) = audio {
        let (step, toc): (i64, &[u8]) = if c == Codec::Aac {
            (1920, &[])
        } else {
            (1800, &[0xFC])
        };
        let mut t = base;
        a.push(frame(c, FrameFlags::CONFIG, base, base, config_payload(c)));
        for u in aunits {
            let mut p = toc.to_vec();
            p.extend(u.parts.concat());
            p.truncate(8000);
            let flags = if u.disc {
                FrameFlags::KEYFRAME | FrameFlags::DISCONTINUITY
            } else {
                FrameFlags::KEYFRAME
            };
            a.push(frame(c, flags, t, t, Bytes::from(p)));
            t += step;
        }
    }
    // Interleave by dts (configs first).
    let mut all: Vec<Frame> = v.into_iter().chain(a).collect();
    all.sort_by_key(|f| (!f.is_config(), f.dts));
    all
}

fn mux_all(video: Option<Codec>, audio: Option<Codec>, frames: &[Frame]) -> Vec<Bytes> {
    let mut m = TsMuxer::new(video, audio).unwrap();
    frames.iter().map(|f| m.mux(f).unwrap()).collect()
}

fn demux_chunks(chunks: &[&[u8]]) -> (Vec<Frame>, TsDemuxer) {
    common::demux_chunks(chunks.iter().copied())
}

fn track(frames: &[Frame], codec: Codec) -> Vec<Frame> {
    frames
        .iter()
        .filter(|f| f.codec == codec)
        .cloned()
        .collect()
}

/// Config frames compare by payload (their timestamps are the next access unit's).
fn assert_same(got: &[Frame], want: &[Frame]) {
    assert_eq!(got.len(), want.len(), "frame count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if w.is_config() {
            assert!(g.is_config(), "#{i}: {g:?}");
            assert_eq!(g.payload, w.payload, "#{i} config");
        } else {
            assert_eq!(g, w, "#{i}");
        }
    }
}

fn codecs() -> impl Strategy<Value = (Option<Codec>, Option<Codec>)> {
    prop::sample::select(vec![
        (Some(Codec::H264), Some(Codec::Aac)),
        (Some(Codec::H265), Some(Codec::Aac)),
        (Some(Codec::H264), Some(Codec::Opus)),
        (Some(Codec::H264), None),
        (Some(Codec::H265), None),
        (None, Some(Codec::Aac)),
        (None, Some(Codec::Opus)),
    ])
}

fn base_ts() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        // Just below the 33-bit wrap: the stream crosses it.
        (1i64..200_000).prop_map(|k| (1i64 << 33) - k),
        0i64..(1i64 << 33),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn ts_round_trip(
        (video, audio) in codecs(),
        base in base_ts(),
        vunits in prop::collection::vec(unit_strategy(700), 1..25),
        aunits in prop::collection::vec(unit_strategy(300), 1..25),
        splits in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        garbage in prop::collection::vec((any::<prop::sample::Index>(), prop::collection::vec(any::<u8>().prop_filter("no sync", |b| *b != SYNC_BYTE), 1..400)), 0..4),
    ) {
        let frames = make_frames(video, audio, base, &vunits, &aunits);
        let packets: Vec<u8> = mux_all(video, audio, &frames).concat();
        prop_assert_eq!(packets.len() % PACKET_SIZE, 0);
        let n = packets.len() / PACKET_SIZE;
        // Garbage between packets.
        let mut cuts: Vec<usize> = garbage.iter().map(|(i, _)| i.index(n) ).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut stream = Vec::new();
        for (p, pkt) in packets.chunks(PACKET_SIZE).enumerate() {
            if let Some(k) = cuts.iter().position(|c| *c == p) {
                stream.extend_from_slice(&garbage[k % garbage.len()].1);
            }
            stream.extend_from_slice(pkt);
        }
        let mut points: Vec<usize> = splits.iter().map(|i| i.index(stream.len())).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain([stream.len()]) {
            chunks.push(&stream[last..p]);
            last = p;
        }
        let (out, d) = demux_chunks(&chunks);
        let lens: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        prop_assert_eq!(out.len(), frames.len(), "{:?} cuts {:?} chunks {:?} packets {}", d.stats(), cuts, lens, n);
        for c in [video, audio].into_iter().flatten() {
            assert_same(&track(&out, c), &track(&frames, c));
        }
        prop_assert_eq!(d.stats().cc_errors, 0);
        prop_assert_eq!(d.stats().resyncs, cuts.iter().filter(|c| **c > 0).count() as u64);
    }

    #[test]
    fn ts_join_mid_stream_gives_a_suffix(
        base in base_ts(),
        vunits in prop::collection::vec(unit_strategy(900), 4..30),
        aunits in prop::collection::vec(unit_strategy(300), 4..30),
        cut in any::<prop::sample::Index>(),
        byte_cut in 0usize..PACKET_SIZE,
    ) {
        let (video, audio) = (Some(Codec::H264), Some(Codec::Aac));
        let frames = make_frames(video, audio, base, &vunits, &aunits);
        let packets: Vec<u8> = mux_all(video, audio, &frames).concat();
        let start = cut.index(packets.len() / PACKET_SIZE) * PACKET_SIZE + byte_cut;
        let (out, d) = demux_chunks(&[&packets[start.min(packets.len())..]]);
        prop_assert_eq!(d.stats().cc_errors, 0);
        for c in [Codec::H264, Codec::Aac] {
            let got = track(&out, c);
            let want = track(&frames, c);
            if got.is_empty() {
                continue;
            }
            prop_assert!(got[0].is_config());
            prop_assert_eq!(&got[0].payload, &want[0].payload);
            // Joined after a wrap, the demuxer's timeline starts at the wire
            // value: equal modulo 2^33, one offset for the whole output.
            let shift = match (got.get(1), want.iter().find(|w| Some(&w.payload) == got.get(1).map(|g| &g.payload))) {
                (Some(g), Some(w)) => w.dts - g.dts,
                _ => 0,
            };
            prop_assert_eq!(shift.rem_euclid(1 << 33), 0);
            let media: Vec<Frame> = got[1..].iter().map(|f| Frame { pts: f.pts + shift, dts: f.dts + shift, ..f.clone() }).collect();
            let media = &media[..];
            let tail = &want[want.len() - media.len()..];
            prop_assert_eq!(media, tail, "{} output is the tail of the input", c);
            if c == Codec::H264 {
                prop_assert!(media.first().map_or(true, |f| f.is_keyframe()));
            }
        }
    }

    #[test]
    fn ts_lost_packet_is_detected_and_dropped(
        base in base_ts(),
        vunits in prop::collection::vec(unit_strategy(900), 6..30),
        aunits in prop::collection::vec(unit_strategy(300), 6..30),
        lose in any::<prop::sample::Index>(),
    ) {
        let (video, audio) = (Some(Codec::H265), Some(Codec::Aac));
        // No DISCONTINUITY flags here: a discontinuity_indicator legitimately allows a CC jump.
        let no_disc = |u: &Vec<Unit>| u.iter().cloned().map(|u| Unit { disc: false, ..u }).collect::<Vec<_>>();
        let frames = make_frames(video, audio, base, &no_disc(&vunits), &no_disc(&aunits));
        let packets: Vec<u8> = mux_all(video, audio, &frames).concat();
        let pkts: Vec<&[u8]> = packets.chunks(PACKET_SIZE).collect();
        let pid = |p: &[u8]| (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
        // An elementary-stream packet, not the first of its PID, followed by two more.
        let candidates: Vec<usize> = (0..pkts.len())
            .filter(|&i| {
                let p = pid(pkts[i]);
                (p == 0x100 || p == 0x101)
                    && pkts[..i].iter().any(|q| pid(q) == p)
                    && pkts[i + 1..].iter().filter(|q| pid(q) == p).count() >= 2
            })
            .collect();
        prop_assume!(!candidates.is_empty());
        let lost = candidates[lose.index(candidates.len())];
        let stream: Vec<u8> = pkts.iter().enumerate().filter(|(i, _)| *i != lost).flat_map(|(_, p)| p.to_vec()).collect();
        let (out, d) = demux_chunks(&[&stream]);
        prop_assert_eq!(d.stats().cc_errors, 1);
        prop_assert!(out.len() < frames.len(), "a frame was dropped");
        // Everything that came out is intact and in order.
        for c in [Codec::H265, Codec::Aac] {
            let want = track(&frames, c);
            let mut it = want.iter();
            for g in track(&out, c).iter().filter(|f| !f.is_config()) {
                prop_assert!(it.any(|w| w == g), "{:?} not in the input", g);
            }
        }
    }

    #[test]
    fn ts_demux_survives_bit_errors(
        (video, audio) in codecs(),
        vunits in prop::collection::vec(unit_strategy(400), 1..10),
        aunits in prop::collection::vec(unit_strategy(200), 1..10),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..40),
    ) {
        // Corrupted headers, lengths, PSI and PES fields anywhere: never a
        // panic, never more frames than went in (plus re-sent configs).
        let frames = make_frames(video, audio, 0, &vunits, &aunits);
        let mut s = mux_all(video, audio, &frames).concat();
        for (i, x) in &flips {
            let i = i.index(s.len());
            s[i] ^= x | 1;
        }
        let (out, d) = demux_chunks(&[&s]);
        prop_assert!(out.iter().filter(|f| !f.is_config()).count() <= frames.len());
        prop_assert!(d.stats().packets <= (s.len() / PACKET_SIZE) as u64);
    }

    #[test]
    fn ts_demux_never_panics(data in prop::collection::vec(any::<u8>(), 0..3000), splice in prop::collection::vec(any::<u8>(), 0..200), at in any::<prop::sample::Index>()) {
        // Arbitrary bytes, and a valid stream with arbitrary bytes spliced in anywhere.
        let (_, _) = demux_chunks(&[&data]);
        let frames = make_frames(Some(Codec::H264), Some(Codec::Aac), 0, &vec![Unit { disc: false, key: true, cts: 0, step: 3000, parts: vec![vec![7; 500]] }; 3], &vec![Unit { disc: false, key: true, cts: 0, step: 0, parts: vec![vec![9; 100]] }; 3]);
        let mut s = mux_all(Some(Codec::H264), Some(Codec::Aac), &frames).concat();
        let i = at.index(s.len());
        s.splice(i..i, splice);
        let (out, _) = demux_chunks(&[&s]);
        prop_assert!(out.len() <= frames.len() + 2);
    }
}

#[test]
fn ts_packets_are_well_formed() {
    let frames = make_frames(
        Some(Codec::H264),
        Some(Codec::Aac),
        (1 << 33) - 6000,
        &[
            Unit {
                disc: false,
                key: true,
                cts: 3000,
                step: 3000,
                parts: vec![vec![1; 70_000]],
            },
            Unit {
                disc: false,
                key: false,
                cts: 0,
                step: 3000,
                parts: vec![vec![2; 10]],
            },
        ],
        &[Unit {
            disc: false,
            key: true,
            cts: 0,
            step: 0,
            parts: vec![vec![3; 183]],
        }],
    );
    let out = mux_all(Some(Codec::H264), Some(Codec::Aac), &frames);
    assert!(
        out[0].is_empty() && out[1].is_empty(),
        "config frames give no packets"
    );
    let mut cc = std::collections::HashMap::new();
    for (i, b) in out.iter().enumerate().skip(2) {
        assert_eq!(b.len() % PACKET_SIZE, 0);
        let first = &b[..PACKET_SIZE];
        let pid0 = (u16::from(first[1] & 0x1F) << 8) | u16::from(first[2]);
        if frames[i].is_keyframe() && frames[i].codec == Codec::H264 {
            assert_eq!(pid0, 0, "PAT before a keyframe");
        }
        for p in b.chunks(PACKET_SIZE) {
            assert_eq!(p[0], SYNC_BYTE);
            let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
            let c = p[3] & 0x0F;
            if let Some(prev) = cc.insert(pid, c) {
                assert_eq!(c, (prev + 1) & 0x0F, "continuity on PID {pid:#x}");
            }
            if pid == 0x100 && p[1] & 0x40 != 0 {
                // First packet of a video PES: PCR present, RAI on the keyframe.
                assert_eq!(p[3] & 0x20, 0x20);
                assert_ne!(p[5] & 0x10, 0, "PCR flag");
                assert_eq!(p[5] & 0x40 != 0, frames[i].is_keyframe());
            }
        }
    }
}

#[test]
fn muxer_rejects_bad_input() {
    assert!(TsMuxer::new(Some(Codec::Av1), None).is_err());
    assert!(TsMuxer::new(Some(Codec::Aac), None).is_err());
    let mut m = TsMuxer::new(Some(Codec::H264), Some(Codec::Aac)).unwrap();
    let f = |codec, flags, payload: &'static [u8]| Frame {
        codec,
        flags,
        pts: 0,
        dts: 0,
        timebase: 90_000,
        payload: Bytes::from_static(payload),
    };
    assert!(
        m.mux(&f(Codec::Opus, FrameFlags::KEYFRAME, b"x")).is_err(),
        "no Opus track"
    );
    assert!(
        m.mux(&f(Codec::Aac, FrameFlags::KEYFRAME, b"x")).is_err(),
        "AAC before its config"
    );
    assert!(
        m.mux(&f(Codec::H264, FrameFlags::CONFIG, b"\x01")).is_err(),
        "bad avcC"
    );
    assert!(
        m.mux(&f(
            Codec::H264,
            FrameFlags::KEYFRAME,
            b"\x00\x00\x00\x09abc"
        ))
        .is_err(),
        "truncated AVCC"
    );
}

#[test]
fn ts_pmt_change_switches_codecs() {
    let units = |n: usize| -> Vec<Unit> {
        (0..n)
            .map(|i| Unit {
                disc: false,
                key: i % 4 == 0,
                cts: 0,
                step: 3000,
                parts: vec![vec![i as u8 + 1; 400]],
            })
            .collect()
    };
    // A publisher restarts with other codecs: a new muxer (PMT version 0
    // again, new continuity counters) on the same PIDs.
    let a = make_frames(Some(Codec::H264), Some(Codec::Aac), 0, &units(6), &units(6));
    let b = make_frames(
        Some(Codec::H265),
        Some(Codec::Opus),
        90_000,
        &units(6),
        &units(6),
    );
    let mut s = mux_all(Some(Codec::H264), Some(Codec::Aac), &a).concat();
    s.extend(mux_all(Some(Codec::H265), Some(Codec::Opus), &b).concat());
    let (out, _) = demux_chunks(&[&s]);
    assert_same(&track(&out, Codec::H264), &track(&a, Codec::H264));
    assert_same(&track(&out, Codec::Aac), &track(&a, Codec::Aac));
    assert_same(&track(&out, Codec::H265), &track(&b, Codec::H265));
    assert_same(&track(&out, Codec::Opus), &track(&b, Codec::Opus));

    // A PMT version change within one muxer: the Opus channel count.
    let mut m = TsMuxer::new(None, Some(Codec::Opus)).unwrap();
    let opus = |flags, payload: Bytes, t: i64| Frame {
        codec: Codec::Opus,
        flags,
        pts: t,
        dts: t,
        timebase: 90_000,
        payload,
    };
    let mut s = Vec::new();
    s.extend(
        m.mux(&opus(FrameFlags::CONFIG, OpusHead::new(2).to_bytes(), 0))
            .unwrap(),
    );
    s.extend(
        m.mux(&opus(
            FrameFlags::KEYFRAME,
            Bytes::from_static(&[0xFC, 1, 2]),
            0,
        ))
        .unwrap(),
    );
    s.extend(
        m.mux(&opus(FrameFlags::CONFIG, OpusHead::new(1).to_bytes(), 1800))
            .unwrap(),
    );
    s.extend(
        m.mux(&opus(
            FrameFlags::KEYFRAME,
            Bytes::from_static(&[0xFC, 3, 4]),
            1800,
        ))
        .unwrap(),
    );
    let (out, _) = demux_chunks(&[&s]);
    let heads: Vec<u8> = out
        .iter()
        .filter(|f| f.is_config())
        .map(|f| OpusHead::parse(&f.payload).unwrap().channels)
        .collect();
    assert_eq!(heads, [2, 1]);
    assert_eq!(out.iter().filter(|f| !f.is_config()).count(), 2);
}

#[test]
fn ts_audio_only_carries_pcr_and_repeats_psi() {
    let aunits: Vec<Unit> = (0..60)
        .map(|i| Unit {
            key: true,
            disc: false,
            cts: 0,
            step: 0,
            parts: vec![vec![i as u8 + 1; 50]],
        })
        .collect();
    let frames = make_frames(None, Some(Codec::Aac), 1000, &[], &aunits);
    let out = mux_all(None, Some(Codec::Aac), &frames);
    let pid = |p: &[u8]| (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
    let mut pats = 0;
    for b in &out {
        for p in b.chunks(PACKET_SIZE) {
            match pid(p) {
                0 => pats += 1,
                0x1000 => {
                    // PMT: PCR_PID is the audio PID.
                    let sec = &p[5..];
                    assert_eq!((u16::from(sec[8] & 0x1F) << 8) | u16::from(sec[9]), 0x101);
                }
                0x101 if p[1] & 0x40 != 0 => {
                    assert_eq!(p[3] & 0x20, 0x20, "adaptation field");
                    assert_eq!(
                        p[5] & 0x50,
                        0x50,
                        "PCR and random access on every audio PES"
                    );
                }
                _ => {}
            }
        }
    }
    // 60 frames of 1920 ticks = 115 200 ticks: PSI at 0 and every 45 000 ticks.
    assert_eq!(pats, 3);
    let (got, _) = demux_chunks(&[&out.concat()]);
    assert_same(&got, &frames);
}

#[test]
fn ts_timestamps_survive_days() {
    // One AAC frame every 10 hours for 5 days: the 33-bit wire clock wraps
    // four times; the demuxer's i64 timeline keeps going.
    let step = 10 * 3600 * 90_000i64;
    let mut m = TsMuxer::new(None, Some(Codec::Aac)).unwrap();
    let mut d = TsDemuxer::new();
    let cfg = Frame {
        codec: Codec::Aac,
        flags: FrameFlags::CONFIG,
        pts: 0,
        dts: 0,
        timebase: 90_000,
        payload: config_payload(Codec::Aac),
    };
    d.handle_input(&m.mux(&cfg).unwrap()).unwrap();
    let mut got = Vec::new();
    for i in 0..12 {
        let t = 1_000 + i * step;
        let f = Frame {
            flags: FrameFlags::KEYFRAME,
            pts: t,
            dts: t,
            payload: Bytes::from(vec![i as u8 + 1; 20]),
            ..cfg.clone()
        };
        d.handle_input(&m.mux(&f).unwrap()).unwrap();
        while let Some(f) = d.poll_frame() {
            if !f.is_config() {
                got.push(f.dts);
            }
        }
    }
    let want: Vec<i64> = (0..12).map(|i| 1_000 + i * step).collect();
    assert_eq!(got, want);
    assert!(*got.last().unwrap() > 4 * (1i64 << 33));
}
