//! Golden tests of the RTSP capture fixtures (`tests/fixtures/`, see its
//! README): ffmpeg and GStreamer `rtspclientsink` publishing to arcly over
//! RTSP/TCP (RTP interleaved). Replayed through arcly's RTSP server
//! session, each gives its requests and the captured server's statuses in
//! order, the frames the session published (counts per codec, keyframe
//! positions, first/last timestamps, codec configs), and the session's
//! output equals the captured server bytes byte for byte (its seed learned
//! from the `Session` header). Replays are deterministic: twice the same
//! JSON lines.
#![cfg(feature = "replay")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use arcly::replay::{Direction, EventKind, FlowReplay, Protocol, Replay, ReplayConfig};
use arcly::{Codec, MediaKind};

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn replay(name: &str) -> Replay {
    Replay::from_bytes(&fixture_bytes(name), &ReplayConfig::default()).unwrap()
}

/// ffmpeg's libx264 ultrafast 160x120 config (Constrained Baseline 1.2),
/// the same as in the RTMP fixtures (`replay_golden.rs`).
const FFMPEG_AVC: &str =
    "0142c00cffe100186742c00cda0a11f970110000030001000003001e8f142aa001000468ce3c80";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What a golden test pins for one codec.
#[derive(Debug, PartialEq, Eq)]
struct Track {
    /// Media frames (configs excluded).
    frames: usize,
    /// Indices of keyframes among the media frames (video only).
    keyframes: Vec<usize>,
    /// First and last PTS, in ms.
    pts_ms: (i64, i64),
    /// Payload bytes of the media frames.
    bytes: usize,
    /// The config records, hex.
    configs: Vec<String>,
}

fn track(f: &FlowReplay, codec: Codec) -> Track {
    let all: Vec<_> = f
        .frames(Direction::ToServer)
        .filter(|x| x.codec == codec)
        .collect();
    let media: Vec<_> = all.iter().filter(|x| !x.is_config()).collect();
    let ms = |x: &arcly::Frame| x.pts * 1000 / i64::from(x.timebase);
    Track {
        frames: media.len(),
        keyframes: if codec.kind() == MediaKind::Video {
            media
                .iter()
                .enumerate()
                .filter(|(_, x)| x.is_keyframe())
                .map(|(i, _)| i)
                .collect()
        } else {
            Vec::new()
        },
        pts_ms: (
            media.first().map_or(0, |x| ms(x)),
            media.last().map_or(0, |x| ms(x)),
        ),
        bytes: media.iter().map(|x| x.payload.len()).sum(),
        configs: all
            .iter()
            .filter(|x| x.is_config())
            .map(|x| hex(&x.payload))
            .collect(),
    }
}

/// The non-media events of a flow as short strings.
fn story(f: &FlowReplay) -> Vec<String> {
    f.events
        .iter()
        .filter_map(|e| {
            let d = e.dir.name();
            Some(match &e.kind {
                EventKind::Publish { app, stream, .. } => format!("{d} publish {app}/{stream}"),
                EventKind::Play { app, stream, .. } => format!("{d} play {app}/{stream}"),
                EventKind::Status { code } => format!("{d} status {code}"),
                EventKind::End { reason } => format!("{d} end {reason}"),
                EventKind::Close { reason } => format!("{d} close {reason}"),
                EventKind::Gap { offset, len } => format!("{d} gap {offset}+{len}"),
                EventKind::Error { message } => format!("{d} error {message}"),
                _ => return None,
            })
        })
        .collect()
}

/// The one flow of a capture: RTSP, the server arcly, reproduced.
fn single_rtsp_flow(r: &Replay) -> &FlowReplay {
    assert_eq!(r.flows.len(), 1);
    let f = &r.flows[0];
    assert_eq!(f.protocol, Some(Protocol::Rtsp));
    assert!(f.seed_learned, "seed not learned");
    assert!(!f.captured_output.is_empty());
    assert!(
        f.output == f.captured_output,
        "reproduced {} of {} captured server bytes:\n{}\nvs\n{}",
        f.matching_output_prefix(),
        f.captured_output.len(),
        String::from_utf8_lossy(&f.output),
        String::from_utf8_lossy(&f.captured_output)
    );
    f
}

#[test]
fn ffmpeg_rtsp_publish_replays_to_the_same_frames() {
    let name = "ffmpeg_publish_arcly_rtsp.pcapng";
    let r = replay(name);
    let f = single_rtsp_flow(&r);
    let (stream, setups) = ("live/fixture", 4);
    assert_eq!(
        story(f),
        [
            "s2c status 200 OK".to_owned(),
            format!("c2s publish {stream}"),
        ]
        .into_iter()
        .chain(std::iter::repeat("s2c status 200 OK".to_owned()).take(setups))
        .chain([
            "c2s end unpublished".to_owned(),
            "c2s close peer closed".to_owned(),
            "s2c status 200 OK".to_owned(),
        ])
        .collect::<Vec<_>>(),
        "OPTIONS, ANNOUNCE, SETUP x2, RECORD (GStreamer: and PAUSE), TEARDOWN"
    );
    assert_eq!(
        track(f, Codec::H264),
        Track {
            frames: 45,
            keyframes: vec![0, 15, 30],
            pts_ms: (-32, 2900),
            bytes: 40915,
            configs: vec![FFMPEG_AVC.to_owned()],
        }
    );
    // 3 s of 1024-sample frames at 44.1 kHz is 129; ffmpeg's RTP muxer
    // holds the last 4 back (it sends an aggregate packet when the next
    // frame comes) and drops them at the end.
    assert_eq!(
        track(f, Codec::Aac),
        Track {
            frames: 125,
            keyframes: vec![],
            pts_ms: (-56, 2823),
            bytes: 23491,
            configs: vec!["120856e500".to_owned()],
        }
    );
    assert_eq!(
        replay(name).to_json_lines(),
        r.to_json_lines(),
        "deterministic"
    );
}

#[test]
fn gst_rtspclientsink_publish_replays_to_the_same_frames() {
    let name = "gst_publish_arcly_rtsp.pcapng";
    let r = replay(name);
    let f = single_rtsp_flow(&r);
    // GStreamer sends PAUSE before TEARDOWN on its RECORD session.
    let (stream, setups) = ("live/gst", 5);
    assert_eq!(
        story(f),
        [
            "s2c status 200 OK".to_owned(),
            format!("c2s publish {stream}"),
        ]
        .into_iter()
        .chain(std::iter::repeat("s2c status 200 OK".to_owned()).take(setups))
        .chain([
            "c2s end unpublished".to_owned(),
            "c2s close peer closed".to_owned(),
            "s2c status 200 OK".to_owned(),
        ])
        .collect::<Vec<_>>(),
        "OPTIONS, ANNOUNCE, SETUP x2, RECORD (GStreamer: and PAUSE), TEARDOWN"
    );
    assert_eq!(
        track(f, Codec::H264),
        Track {
            frames: 45,
            keyframes: vec![0, 15, 30],
            pts_ms: (45, 2979),
            bytes: 40290,
            configs: vec!["0142d00bffe1001c6742d00bda0a11f97016a0c0c0d4a0000003002000000303d1e244d401000468ce3c80".to_owned()],
        }
    );
    // MP4A-LATM (RFC 6416) received: the AudioSpecificConfig from its
    // StreamMuxConfig, AAC LC 44.1 kHz mono.
    assert_eq!(
        track(f, Codec::Aac),
        Track {
            frames: 131,
            keyframes: vec![],
            pts_ms: (45, 3064),
            bytes: 24668,
            configs: vec!["1208".to_owned()],
        }
    );
    assert_eq!(
        replay(name).to_json_lines(),
        r.to_json_lines(),
        "deterministic"
    );
}
