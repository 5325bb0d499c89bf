//! Recording: frames → fragmented-MP4 file commands, checked by an
//! independent parser (`mp4-atom`): the `moov` has the right tracks, the
//! `moof`s count up and each track's `tfdt` continues where the previous
//! fragment ended.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use arcly::container::record::{RecordConfig, RecordOutput, Recorder};
use arcly::{Codec, Frame};
use bytes::Bytes;
use mp4_atom::{Decode, Ftyp, Mdat, Moof, Moov};

mod common;
use common::{config_frame, config_payload};

const AAC_RATE: u32 = 48_000;

fn media(codec: Codec, key: bool, ms: i64, payload: &[u8]) -> Frame {
    Frame {
        codec,
        flags: common::key_flags(key),
        pts: ms,
        dts: ms,
        timebase: 1000,
        payload: Bytes::copy_from_slice(payload),
    }
}

/// `secs` of 25 fps video (keyframe every `gop` frames) interleaved with
/// AAC frames (1024 samples at 48 kHz ≈ 21.33 ms), RTMP-style ms timestamps.
fn stream(secs: i64, gop: i64) -> Vec<Frame> {
    let mut v = vec![
        config_frame(Codec::H264, config_payload(Codec::H264, AAC_RATE, 2)),
        config_frame(Codec::Aac, config_payload(Codec::Aac, AAC_RATE, 2)),
    ];
    let mut a = 0i64;
    for i in 0..secs * 25 {
        let t = i * 40;
        while a * 1024 * 1000 / i64::from(AAC_RATE) <= t {
            let at = a * 1024 * 1000 / i64::from(AAC_RATE);
            v.push(media(Codec::Aac, false, at, &[0x21, a as u8, 0x00]));
            a += 1;
        }
        let key = i % gop == 0;
        v.push(media(
            Codec::H264,
            key,
            t,
            &[0, 0, 0, 2, if key { 0x65 } else { 0x41 }, i as u8],
        ));
    }
    v
}

/// Executes the commands like an adapter would: one `Vec<u8>` per
/// NewFile … Close.
#[derive(Default)]
struct Sink {
    open: Option<Vec<u8>>,
    files: Vec<Vec<u8>>,
}

impl Sink {
    fn drain(&mut self, rec: &mut Recorder) {
        while let Some(o) = rec.poll_output() {
            match o {
                RecordOutput::NewFile { path_hint } => {
                    assert_eq!(path_hint, "live/cam");
                    assert!(self.open.is_none(), "NewFile while a file is open");
                    self.open = Some(Vec::new());
                }
                RecordOutput::Write(b) => self.open.as_mut().expect("no file").extend(&b),
                RecordOutput::Close => self.files.push(self.open.take().expect("no file")),
            }
        }
    }
}

fn run(rec: &mut Recorder, frames: &[Frame]) -> Vec<Vec<u8>> {
    let mut sink = Sink::default();
    for f in frames {
        rec.push(f);
        sink.drain(rec);
    }
    rec.finish();
    sink.drain(rec);
    assert!(sink.open.is_none());
    sink.files
}

struct Frag {
    seq: u32,
    track: u32,
    tfdt: u64,
    durations: Vec<u32>,
    sync: Vec<bool>,
}

fn parse(file: &[u8]) -> (Moov, Vec<Frag>) {
    let mut buf = file;
    let ftyp = Ftyp::decode(&mut buf).unwrap();
    assert_eq!(ftyp.major_brand, b"iso6".into());
    let moov = Moov::decode(&mut buf).unwrap();
    let mut frags = Vec::new();
    while !buf.is_empty() {
        let moof = Moof::decode(&mut buf).unwrap();
        let mdat = Mdat::decode(&mut buf).unwrap();
        let traf = &moof.traf[0];
        let trun = &traf.trun[0];
        let sizes: u32 = trun.samples.iter().map(|s| s.size.unwrap()).sum();
        assert_eq!(sizes as usize, mdat.data.len());
        frags.push(Frag {
            seq: moof.mfhd.sequence_number,
            track: traf.tfhd.track_id,
            tfdt: traf.tfdt.as_ref().unwrap().base_media_decode_time,
            durations: trun.samples.iter().map(|s| s.duration.unwrap()).collect(),
            sync: trun
                .samples
                .iter()
                .map(|s| s.flags.unwrap() & 0x0001_0000 == 0)
                .collect(),
        });
    }
    (moov, frags)
}

/// Sequence numbers count up by one from 1; per track, each fragment's
/// `tfdt` is the previous one's plus its durations, starting at 0 (video).
fn check_fragments(frags: &[Frag]) -> (u64, u64) {
    assert!(!frags.is_empty());
    for (i, f) in frags.iter().enumerate() {
        assert_eq!(f.seq, i as u32 + 1, "sequence numbers increase by one");
    }
    let mut ends = [None::<u64>, None];
    for f in frags {
        let slot = &mut ends[(f.track - 1) as usize];
        if let Some(end) = *slot {
            assert_eq!(f.tfdt, end, "tfdt continuity on track {}", f.track);
        }
        *slot = Some(f.tfdt + f.durations.iter().map(|d| u64::from(*d)).sum::<u64>());
    }
    let first_video = frags.iter().find(|f| f.track == 1).unwrap();
    assert_eq!(first_video.tfdt, 0, "a file's timeline starts at 0");
    assert!(first_video.sync[0], "a file starts with a keyframe");
    (ends[0].unwrap(), ends[1].unwrap())
}

#[test]
fn one_file_with_video_and_audio() {
    let frames = stream(6, 50);
    let mut rec = Recorder::new("live/cam", RecordConfig::default());
    let files = run(&mut rec, &frames);
    assert_eq!(files.len(), 1);
    let (moov, frags) = parse(&files[0]);
    assert_eq!(moov.trak.len(), 2);
    let handlers: Vec<_> = moov.trak.iter().map(|t| t.mdia.hdlr.handler).collect();
    assert_eq!(handlers, [b"vide".into(), b"soun".into()]);
    assert_eq!(moov.trak[0].tkhd.track_id, 1);
    assert_eq!(moov.trak[1].tkhd.track_id, 2);
    assert_eq!(moov.trak[0].mdia.mdhd.timescale, 90_000);
    assert_eq!(moov.trak[1].mdia.mdhd.timescale, AAC_RATE);
    let (video_end, audio_end) = check_fragments(&frags);
    // Every frame is in the file: 150 video samples, 6 s of video.
    let video_samples: usize = frags
        .iter()
        .filter(|f| f.track == 1)
        .map(|f| f.durations.len())
        .sum();
    assert_eq!(video_samples, 150);
    assert_eq!(video_end, 6 * 90_000);
    assert!((audio_end as i64 - 6 * i64::from(AAC_RATE)).abs() < 2048);
    // A fragment about every second (cut at keyframes every 2 s, and at 1 s).
    let video_frags = frags.iter().filter(|f| f.track == 1).count();
    assert!(
        (5..=8).contains(&video_frags),
        "{video_frags} video fragments"
    );
    assert_eq!(rec.dropped_frames(), 0);
}

#[test]
fn codec_change_and_rotation_start_new_files() {
    // Rotation every 2 s with a keyframe every second: 3 files of 2 s.
    let cfg = RecordConfig::default().with_max_file_duration(Some(Duration::from_secs(2)));
    let mut rec = Recorder::new("live/cam", cfg);
    let files = run(&mut rec, &stream(6, 25));
    assert_eq!(files.len(), 3);
    for f in &files {
        let (moov, frags) = parse(f);
        assert_eq!(moov.trak.len(), 2);
        let (video_end, _) = check_fragments(&frags);
        assert_eq!(video_end, 2 * 90_000);
    }

    // A new audio config (other sampling rate) mid-stream: a second file
    // whose moov carries the new timescale.
    let mut frames = stream(2, 25);
    frames.push(config_frame(
        Codec::Aac,
        config_payload(Codec::Aac, 44_100, 2),
    ));
    for mut f in stream(2, 25).into_iter().skip(2) {
        f.dts += 2000;
        f.pts += 2000;
        frames.push(f);
    }
    let mut rec = Recorder::new("live/cam", RecordConfig::default());
    let files = run(&mut rec, &frames);
    assert_eq!(files.len(), 2);
    assert_eq!(parse(&files[0]).0.trak[1].mdia.mdhd.timescale, AAC_RATE);
    let (moov, frags) = parse(&files[1]);
    assert_eq!(moov.trak[1].mdia.mdhd.timescale, 44_100);
    check_fragments(&frags);
}

#[test]
fn lagging_writer_drops_frames_with_bounded_queue() {
    let cfg = RecordConfig::default().with_max_queued_bytes(2_000);
    let mut rec = Recorder::new("live/cam", cfg);
    let frames = stream(10, 25);
    let (first, rest): (Vec<Frame>, Vec<Frame>) = frames
        .into_iter()
        .partition(|f| f.dts < 5000 || f.is_config());
    // Nobody drains for 5 s: the queue stays bounded, frames are dropped.
    for f in &first {
        rec.push(f);
        assert!(rec.queued_bytes() < 4_000, "{}", rec.queued_bytes());
    }
    let dropped = rec.dropped_frames();
    assert!(dropped > 100, "{dropped}");
    // The writer catches up: recording resumes (at the keyframe at 5 s)
    // in the same file, which stays valid.
    let mut sink = Sink::default();
    sink.drain(&mut rec);
    for f in &rest {
        rec.push(f);
        sink.drain(&mut rec);
    }
    rec.finish();
    sink.drain(&mut rec);
    assert_eq!(rec.dropped_frames(), dropped);
    assert_eq!(sink.files.len(), 1);
    let (_, frags) = parse(&sink.files[0]);
    let (video_end, _) = check_fragments(&frags);
    assert_eq!(video_end, 10 * 90_000);
    let video_samples: usize = frags
        .iter()
        .filter(|f| f.track == 1)
        .map(|f| f.durations.len())
        .sum();
    assert!((125..250).contains(&video_samples), "{video_samples}");
}
