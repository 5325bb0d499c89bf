//! fMP4 / CMAF: init segments and fragments checked by an independent parser
//! (`mp4-atom`), and durations with no drift over hours.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use arcly::container::fmp4::{init_segment, Fmp4Error, Fragmenter, TrackInfo};
use arcly::{Codec, Frame};
use bytes::Bytes;
use mp4_atom::{Decode, Ftyp, Mdat, Moof, Moov};
use proptest::prelude::*;

mod common;
use common::{config_frame, config_payload, PPS_H264, SPS_H264};

fn config(codec: Codec) -> Frame {
    config_frame(codec, config_payload(codec, 44_100, 1))
}

fn media(codec: Codec, key: bool, pts: i64, dts: i64, timebase: u32, payload: Vec<u8>) -> Frame {
    Frame {
        codec,
        flags: common::key_flags(key),
        pts,
        dts,
        timebase,
        payload: Bytes::from(payload),
    }
}

struct Parsed {
    seq: u32,
    track_id: u32,
    base: u64,
    /// (duration, size, flags, cts)
    samples: Vec<(u32, u32, u32, i64)>,
    data: Vec<u8>,
}

/// Parses `moof` + `mdat` pairs with mp4-atom and checks `data_offset`.
fn parse_fragments(mut buf: &[u8]) -> Vec<Parsed> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let whole = buf;
        let moof = Moof::decode(&mut buf).unwrap();
        let moof_len = whole.len() - buf.len();
        let mdat = Mdat::decode(&mut buf).unwrap();
        assert_eq!(moof.traf.len(), 1, "one track per moof");
        let traf = &moof.traf[0];
        assert!(traf.tfhd.default_base_is_moof);
        assert_eq!(traf.trun.len(), 1);
        let trun = &traf.trun[0];
        let off = trun.data_offset.unwrap() as usize;
        assert_eq!(off, moof_len + 8, "data_offset points at the mdat payload");
        let samples: Vec<_> = trun
            .samples
            .iter()
            .map(|e| {
                (
                    e.duration.unwrap(),
                    e.size.unwrap(),
                    e.flags.unwrap(),
                    e.cts.unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            samples.iter().map(|s| s.1 as usize).sum::<usize>(),
            mdat.data.len()
        );
        out.push(Parsed {
            seq: moof.mfhd.sequence_number,
            track_id: traf.tfhd.track_id,
            base: traf.tfdt.as_ref().unwrap().base_media_decode_time,
            samples,
            data: mdat.data,
        });
    }
    out
}

#[test]
fn init_segment_parses_with_mp4_atom() {
    let tracks: Vec<TrackInfo> = [Codec::H264, Codec::Aac, Codec::H265, Codec::Opus]
        .iter()
        .enumerate()
        .map(|(i, c)| TrackInfo::from_config(i as u32 + 1, &config(*c)).unwrap())
        .collect();
    let init = init_segment(&tracks).unwrap();
    let mut buf = &init[..];
    let ftyp = Ftyp::decode(&mut buf).unwrap();
    assert_eq!(ftyp.major_brand, b"iso6".into());
    assert!(ftyp.compatible_brands.contains(&b"cmfc".into()));
    let moov = Moov::decode(&mut buf).unwrap();
    assert!(buf.is_empty(), "nothing after moov");
    assert_eq!(moov.mvhd.next_track_id, 5);
    assert_eq!(moov.trak.len(), 4);
    let trex: Vec<u32> = moov
        .mvex
        .as_ref()
        .unwrap()
        .trex
        .iter()
        .map(|t| t.track_id)
        .collect();
    assert_eq!(trex, [1, 2, 3, 4]);
    let timescales: Vec<u32> = moov.trak.iter().map(|t| t.mdia.mdhd.timescale).collect();
    assert_eq!(timescales, [90_000, 44_100, 90_000, 48_000]);
    use mp4_atom::Codec as C;
    let stsd = |i: usize| &moov.trak[i].mdia.minf.stbl.stsd.codecs[0];
    match stsd(0) {
        C::Avc1(a) => {
            assert_eq!((a.visual.width, a.visual.height), (640, 360));
            assert_eq!(a.avcc.length_size, 4);
            assert_eq!(a.avcc.sequence_parameter_sets, [SPS_H264.to_vec()]);
            assert_eq!(a.avcc.picture_parameter_sets, [PPS_H264.to_vec()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(moov.trak[0].tkhd.width.integer(), 640);
    match stsd(1) {
        C::Mp4a(a) => {
            assert_eq!(a.audio.channel_count, 2);
            assert_eq!(a.audio.sample_rate.integer(), 44_100);
            let ds = a.esds.es_desc.dec_config.dec_specific.as_ref().unwrap();
            assert_eq!((ds.profile, ds.freq_index, ds.chan_conf), (2, 4, 2));
            assert_eq!(a.esds.es_desc.dec_config.object_type_indication, 0x40);
        }
        other => panic!("{other:?}"),
    }
    match stsd(2) {
        C::Hvc1(h) => {
            assert_eq!((h.visual.width, h.visual.height), (1280, 720));
            assert_eq!(h.hvcc.length_size_minus_one, 3);
        }
        other => panic!("{other:?}"),
    }
    match stsd(3) {
        C::Opus(o) => {
            assert_eq!(o.audio.channel_count, 1);
            assert_eq!(o.dops.output_channel_count, 1);
            assert_eq!(o.dops.pre_skip, 312);
            assert_eq!(o.dops.input_sample_rate, 48_000);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        init_segment(&[tracks[0].clone(), tracks[0].clone()]),
        Err(Fmp4Error::Tracks(_))
    ));
    assert!(init_segment(&[]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Frames → fragments → mp4-atom: every sample's size, sync flag,
    /// composition offset, bytes, and duration (from timestamps) survive.
    #[test]
    fn fragments_parse_with_mp4_atom(
        codec in prop::sample::select(vec![Codec::H264, Codec::H265, Codec::Aac, Codec::Opus]),
        timebase in prop::sample::select(vec![1000u32, 90_000, 48_000]),
        start in 0i64..10_000_000,
        frames in prop::collection::vec((any::<bool>(), 0i64..5, 1i64..4000, prop::collection::vec(any::<u8>(), 1..300)), 1..60),
        cut_every in 1usize..20,
    ) {
        let track = TrackInfo::from_config(7, &config(codec)).unwrap();
        let ts = track.timescale;
        let video = matches!(codec, Codec::H264 | Codec::H265);
        let mut fr = Fragmenter::new(track);
        let mut dts = start;
        let mut input = Vec::new();
        let mut out = Vec::new();
        let mut seq = 1;
        for (i, (key, cts, step, payload)) in frames.iter().enumerate() {
            let cts = if video { *cts * i64::from(timebase) / 25 } else { 0 };
            let f = media(codec, *key || i == 0, dts + cts, dts, timebase, payload.clone());
            fr.push(&f).unwrap();
            input.push(f);
            dts += step;
            if i % cut_every == cut_every - 1 {
                if let Some(b) = fr.fragment(seq) {
                    out.extend_from_slice(&b);
                    seq += 1;
                }
            }
        }
        out.extend_from_slice(&fr.flush(seq, 1234).unwrap());
        prop_assert!(fr.flush(seq + 1, 1).is_none());
        let parsed = parse_fragments(&out);
        let conv = |t: i64| arcly::frame::rescale(t, timebase, ts);
        let mut k = 0;
        for (n, p) in parsed.iter().enumerate() {
            prop_assert_eq!(p.seq, n as u32 + 1);
            prop_assert_eq!(p.track_id, 7);
            prop_assert_eq!(p.base as i64, conv(input[k].dts));
            let mut pos = 0;
            for (d, size, flags, cts) in &p.samples {
                let f = &input[k];
                let want_d = match input.get(k + 1) {
                    Some(next) => conv(next.dts) - conv(f.dts),
                    None if k > 0 => conv(f.dts) - conv(input[k - 1].dts),
                    None => 1234,
                };
                prop_assert_eq!(i64::from(*d), want_d);
                prop_assert_eq!(*size as usize, f.payload.len());
                prop_assert_eq!(&p.data[pos..pos + f.payload.len()], &f.payload[..]);
                pos += f.payload.len();
                let sync = f.is_keyframe() || !video;
                prop_assert_eq!(*flags, if sync { 0x0200_0000 } else { 0x0101_0000 });
                prop_assert_eq!(*cts, conv(f.pts) - conv(f.dts));
                k += 1;
            }
        }
        prop_assert_eq!(k, input.len());
    }
}

/// Three hours of AAC at 44.1 kHz with millisecond (RTMP) timestamps, and
/// 29.97 fps video: the fragments' durations add up exactly to the timeline
/// and every `tfdt` is the frame's own time — no drift.
#[test]
fn no_drift_over_hours() {
    for (codec, tb, step_num, step_den) in [
        (Codec::Aac, 1000u32, 1024 * 1000, 44_100),
        (Codec::H264, 1000, 1001, 30),
        (Codec::Aac, 90_000, 1024 * 90_000, 44_100),
    ] {
        let track = TrackInfo::from_config(1, &config(codec)).unwrap();
        let ts = track.timescale;
        let mut fr = Fragmenter::new(track);
        let frames = 3 * 3600 * i64::from(tb) * step_den / step_num;
        let mut total: u64 = 0;
        let mut first_base = None;
        let mut seq = 1;
        let mut last_dts = 0;
        for n in 0..frames {
            let dts = n * step_num / step_den;
            last_dts = dts;
            fr.push(&media(codec, true, dts, dts, tb, vec![1, 2, 3]))
                .unwrap();
            if n % 200 == 199 {
                let b = fr.fragment(seq).unwrap();
                seq += 1;
                let p = parse_fragments(&b);
                let base = p[0].base;
                first_base.get_or_insert(base);
                // tfdt equals the sum of all durations before it.
                assert_eq!(
                    base,
                    first_base.unwrap() + total,
                    "{codec} tfdt drift at frame {n}"
                );
                total += p[0].samples.iter().map(|s| u64::from(s.0)).sum::<u64>();
            }
        }
        let last = arcly::frame::rescale(last_dts, tb, ts) as u64;
        if let Some(b) = fr.fragment(seq) {
            total += parse_fragments(&b)[0]
                .samples
                .iter()
                .map(|s| u64::from(s.0))
                .sum::<u64>();
        }
        assert_eq!(
            total, last,
            "{codec}: durations sum to the last decode time"
        );
        assert!(
            last > 3 * 3600 * u64::from(ts) - 2 * u64::from(ts),
            "{codec} covers 3 h ({last})"
        );
    }
}

#[test]
fn fragmenter_rejects_bad_timing() {
    let track = TrackInfo::from_config(1, &config(Codec::H264)).unwrap();
    let mut fr = Fragmenter::new(track);
    assert!(matches!(
        fr.push(&media(Codec::H264, true, -10, -10, 1000, vec![1])),
        Err(Fmp4Error::NegativeDts(_))
    ));
    fr.push(&media(Codec::H264, true, 100, 100, 1000, vec![1]))
        .unwrap();
    assert!(matches!(
        fr.push(&media(Codec::H264, false, 99, 99, 1000, vec![1])),
        Err(Fmp4Error::NonMonotonicDts { .. })
    ));
    assert!(matches!(
        fr.push(&media(Codec::Aac, true, 200, 200, 1000, vec![1])),
        Err(Fmp4Error::CodecMismatch { .. })
    ));
    assert!(fr.fragment(1).is_none(), "one sample: duration unknown yet");
    assert!(TrackInfo::from_config(1, &media(Codec::H264, true, 0, 0, 1000, vec![1])).is_err());
}
