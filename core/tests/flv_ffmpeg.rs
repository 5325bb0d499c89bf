//! FLV mapping against real ffmpeg output: ffmpeg writes an FLV file with
//! H.264 (with B-frames, so composition times are non-zero) and AAC; every
//! tag goes through `FlvDemux` into frames and back out through
//! `frame_to_tag_body` into a new FLV file; ffmpeg must decode both files to
//! identical frames (framemd5) without errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;

use arcly::codec::{aac::AacConfig, h264::AvcConfig};
use arcly::rtmp::flv;
use arcly::{Codec, Frame};
use bytes::{Bytes, BytesMut};
use common::ffmpeg::{demux_flv, encode_test_source, ffmpeg, tmp_path, H264_BF_AAC};

/// framemd5 lines without the header comments.
fn framemd5(path: &Path) -> Vec<String> {
    let out = ffmpeg(&["-i", path.to_str().unwrap(), "-f", "framemd5", "-"]);
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn ffmpeg_h264_aac_flv_round_trip() {
    // ffmpeg is required here, also outside CI.
    let src = tmp_path("flv", "src.flv");
    let dst = tmp_path("flv", "dst.flv");
    encode_test_source(48_000, 2, H264_BF_AAC, &src);
    let data = Bytes::from(std::fs::read(&src).unwrap());
    assert_eq!(&data[..3], b"FLV");

    let flv_file = demux_flv(&data);
    assert_eq!(flv_file.trailing, 0, "trailing bytes after the last tag");
    assert_eq!(flv_file.script_tags, 1, "onMetaData");
    let frames = flv_file.frames;

    let video: Vec<&Frame> = frames.iter().filter(|f| f.codec == Codec::H264).collect();
    let audio: Vec<&Frame> = frames.iter().filter(|f| f.codec == Codec::Aac).collect();
    // Config first, then 50 pictures, 2 of them IDR (GOP 25).
    assert!(video[0].is_config());
    let avc = AvcConfig::parse(&video[0].payload).unwrap();
    let sps = avc.parse_sps().unwrap();
    assert_eq!((sps.width, sps.height), (320, 240));
    assert!(avc.codec_string().starts_with("avc1.64"));
    let pictures: Vec<&&Frame> = video.iter().filter(|f| !f.is_config()).collect();
    assert_eq!(pictures.len(), 50);
    assert_eq!(pictures.iter().filter(|f| f.is_keyframe()).count(), 2);
    assert!(pictures[0].is_keyframe());
    assert!(pictures.iter().all(|f| f.pts >= f.dts));
    assert!(
        pictures.iter().any(|f| f.pts > f.dts),
        "B-frames give cts > 0"
    );
    assert!(pictures.windows(2).all(|w| w[0].dts < w[1].dts));
    // AAC: config, then ~94 frames of 1024 samples at 48 kHz.
    assert!(audio[0].is_config());
    let asc = AacConfig::parse(&audio[0].payload).unwrap();
    assert_eq!((asc.sampling_frequency, asc.channel_config), (48_000, 2));
    assert_eq!(asc.codec_string(), "mp4a.40.2");
    assert!(audio[1..].iter().all(|f| f.is_keyframe() && !f.is_config()));
    assert!(
        (90..=96).contains(&(audio.len() - 1)),
        "{} AAC frames",
        audio.len()
    );

    // Egress: a new FLV file from the frames alone.
    let mut out = BytesMut::new();
    out.extend_from_slice(&flv::file_header(true, true));
    for f in &frames {
        let body = flv::frame_to_tag_body(f);
        flv::write_tag(
            &mut out,
            flv::tag_type(f.codec),
            flv::tag_timestamp_ms(f),
            &body,
        );
    }
    std::fs::write(&dst, &out).unwrap();

    let a = framemd5(&src);
    let b = framemd5(&dst);
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&dst);
    assert!(a.len() > 140, "decoded {} frames", a.len());
    assert_eq!(a, b, "decoded frames differ after FLV → frames → FLV");
}
