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

use std::path::{Path, PathBuf};
use std::process::Command;

use arcly::codec::{aac::AacConfig, h264::AvcConfig};
use arcly::rtmp::flv::{self, FlvDemux};
use arcly::{Codec, Frame};
use bytes::{Bytes, BytesMut};

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("arcly-flv-{}-{name}", std::process::id()))
}

fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(args)
        .output()
        .expect("ffmpeg must be installed for the FLV interop test");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "ffmpeg {args:?} reported errors: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// framemd5 lines without the header comments.
fn framemd5(path: &Path) -> Vec<String> {
    let out = ffmpeg(&["-i", path.to_str().unwrap(), "-f", "framemd5", "-"]);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn ffmpeg_h264_aac_flv_round_trip() {
    let src = tmp("src.flv");
    let dst = tmp("dst.flv");
    ffmpeg(&[
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "2",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-g",
        "25",
        "-bf",
        "2",
        "-c:a",
        "aac",
        "-ac",
        "2",
        src.to_str().unwrap(),
    ]);
    let data = Bytes::from(std::fs::read(&src).unwrap());
    assert_eq!(&data[..3], b"FLV");

    let mut demux = FlvDemux::new();
    let mut frames: Vec<Frame> = Vec::new();
    let mut rest = data.slice(flv::FILE_HEADER_LEN..);
    let mut script_tags = 0;
    while let Some((tag, used)) = flv::read_tag(&rest).unwrap() {
        rest = rest.slice(used..);
        let ts = i64::from(tag.timestamp_ms);
        let f = match tag.tag_type {
            flv::TAG_TYPE_VIDEO => demux.video(ts, tag.body).unwrap(),
            flv::TAG_TYPE_AUDIO => demux.audio(ts, tag.body).unwrap(),
            _ => {
                script_tags += 1;
                None
            }
        };
        frames.extend(f);
    }
    assert!(rest.is_empty(), "trailing bytes after the last tag");
    assert_eq!(script_tags, 1, "onMetaData");

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
