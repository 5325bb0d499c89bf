//! Golden tests of the capture fixtures (`tests/fixtures/`, see its README):
//! each fixture's event list is asserted explicitly — frame counts per codec,
//! keyframe positions, first/last timestamps, codec configs, requests — and
//! for the sessions whose server was arcly, the server machine's output
//! equals the captured server bytes byte for byte.
#![cfg(feature = "replay")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use arcly::replay::{Direction, EventKind, FlowReplay, Protocol, Replay, ReplayConfig};
use arcly::{Codec, MediaKind};

fn fixture_path(name: &str) -> String {
    format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Replay {
    Replay::from_reader(
        std::fs::File::open(fixture_path(name)).unwrap(),
        &ReplayConfig::default(),
    )
    .unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What a golden test pins for one codec in one direction.
#[derive(Debug, PartialEq, Eq)]
struct Track {
    /// Media frames (configs excluded).
    frames: usize,
    /// Indices of keyframes among the media frames (video only).
    keyframes: Vec<usize>,
    /// First and last DTS in ms, and first and last PTS.
    dts: (i64, i64),
    pts: (i64, i64),
    /// Payload bytes of the media frames.
    bytes: usize,
    /// The config records, hex.
    configs: Vec<String>,
}

fn track(f: &FlowReplay, dir: Direction, codec: Codec) -> Track {
    let all: Vec<_> = f.frames(dir).filter(|x| x.codec == codec).collect();
    let media: Vec<_> = all.iter().filter(|x| !x.is_config()).collect();
    assert!(media.iter().all(|x| x.timebase == 1000));
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
        dts: (media[0].dts, media[media.len() - 1].dts),
        pts: (media[0].pts, media[media.len() - 1].pts),
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
                EventKind::Connected { app, tc_url } => format!("{d} connected {app} {tc_url}"),
                EventKind::Publish { app, stream, .. } => format!("{d} publish {app}/{stream}"),
                EventKind::Play { app, stream, .. } => format!("{d} play {app}/{stream}"),
                EventKind::Status { code } => format!("{d} status {code}"),
                EventKind::End { reason } => format!("{d} end {reason}"),
                EventKind::Close { reason } => format!("{d} close {reason}"),
                EventKind::Gap { offset, len } => format!("{d} gap {offset}+{len}"),
                EventKind::Error { message } => format!("{d} error {message}"),
                EventKind::Frame(_) | EventKind::Metadata { .. } => return None,
                _ => return None, // SRT events (core/tests/replay_srt.rs)
            })
        })
        .collect()
}

fn metadata_count(f: &FlowReplay, dir: Direction) -> usize {
    f.events
        .iter()
        .filter(|e| e.dir == dir && matches!(e.kind, EventKind::Metadata { .. }))
        .count()
}

/// The one flow of a capture, which must be RTMP.
fn single_rtmp_flow(r: &Replay) -> &FlowReplay {
    assert_eq!(r.flows.len(), 1);
    let f = &r.flows[0];
    assert_eq!(f.protocol, Some(Protocol::Rtmp));
    f
}

/// The server of `f` was arcly: its seed is learned and the server machine's
/// output equals the captured server bytes, byte for byte.
fn assert_reproduced(f: &FlowReplay) {
    assert!(f.seed_learned, "flow {}: seed not learned", f.flow.id);
    assert!(!f.captured_output.is_empty());
    assert!(
        f.output == f.captured_output,
        "flow {}: reproduced {} of {}",
        f.flow.id,
        f.matching_output_prefix(),
        f.captured_output.len()
    );
}

/// The expected [`Track`] of a stream whose PTS equal its DTS (no B-frames)
/// and whose one config record is `config` (hex).
fn pinned(frames: usize, keyframes: &[usize], ts: (i64, i64), bytes: usize, config: &str) -> Track {
    Track {
        frames,
        keyframes: keyframes.to_vec(),
        dts: ts,
        pts: ts,
        bytes,
        configs: vec![config.to_owned()],
    }
}

/// ffmpeg's libx264 ultrafast 160x120 config (Constrained Baseline 1.2).
const FFMPEG_AVC: &str =
    "0142c00cffe100186742c00cda0a11f970110000030001000003001e8f142aa001000468ce3c80";
/// AAC LC, 44.1 kHz, mono, with the explicit SBR-absent extension ffmpeg and
/// GStreamer's avenc_aac write.
const AAC_CONFIG: &str = "120856e500";

fn assert_ffmpeg_three_second_publish(f: &FlowReplay) {
    assert_eq!(
        track(f, Direction::ToServer, Codec::H264),
        pinned(45, &[0, 15, 30], (23, 2956), 40915, FFMPEG_AVC)
    );
    assert_eq!(
        track(f, Direction::ToServer, Codec::Aac),
        pinned(131, &[], (0, 3018), 24475, AAC_CONFIG)
    );
    assert_eq!(metadata_count(f, Direction::ToServer), 1);
    assert_eq!(f.frames(Direction::ToClient).count(), 0);
    // Every audio frame is a random access point.
    assert!(f
        .frames(Direction::ToServer)
        .filter(|x| x.codec == Codec::Aac && !x.is_config())
        .all(|x| x.is_keyframe()));
}

#[test]
fn ffmpeg_publish_to_arcly() {
    let r = fixture("ffmpeg_publish_arcly.pcap");
    let f = single_rtmp_flow(&r);
    assert_eq!(f.flow.server.port(), 19360);
    assert_eq!(
        story(f),
        [
            "c2s connected live rtmp://127.0.0.1:19360/live",
            "c2s publish live/fixture",
            "s2c status NetStream.Publish.Start",
            "c2s end unpublished",
            "c2s close peer closed",
            "s2c status NetStream.Unpublish.Success",
        ]
    );
    assert_ffmpeg_three_second_publish(f);
    // The server was arcly: its seed is learned and its side reproduced.
    assert_reproduced(f);
    assert_eq!(f.captured_output.len(), 3739);
    assert_eq!(f.output_len, 3739);
}

#[test]
fn ffmpeg_publish_to_nginx_rtmp_replays_through_arcly() {
    let r = fixture("ffmpeg_publish_nginx.pcap");
    let f = single_rtmp_flow(&r);
    assert_eq!(f.flow.server.port(), 19362);
    let s = story(f);
    assert_eq!(
        &s[..5],
        [
            "c2s connected live rtmp://127.0.0.1:19362/live",
            "c2s publish live/fixture",
            "s2c status NetStream.Publish.Start",
            "c2s end unpublished",
            "c2s close peer closed",
        ]
    );
    assert_ffmpeg_three_second_publish(f);
    // nginx is not arcly: no seed to learn, its bytes are its own.
    assert!(!f.seed_learned);
    assert_eq!(f.seed, arcly::replay::DEFAULT_SEED);
    assert_ne!(f.output, f.captured_output);
    // ffmpeg encoded bit-exactly: the very same frames as into arcly.
    let a = fixture("ffmpeg_publish_arcly.pcap");
    let here: Vec<_> = f.frames(Direction::ToServer).collect();
    let there: Vec<_> = a.flows[0].frames(Direction::ToServer).collect();
    assert_eq!(here, there);
}

#[test]
fn gstreamer_rtmp2sink_publish_to_arcly() {
    let r = fixture("gst_publish_arcly.pcap");
    let f = single_rtmp_flow(&r);
    assert_eq!(
        story(f),
        [
            "c2s connected live rtmp://127.0.0.1:19363/live",
            "c2s publish live/gst",
            "s2c status NetStream.Publish.Start",
            "c2s end unpublished",
            "s2c status NetStream.Unpublish.Success",
            "c2s close peer closed",
        ]
    );
    assert_eq!(
        track(f, Direction::ToServer, Codec::H264),
        pinned(
            45,
            &[0, 15, 30],
            (0, 2933),
            40680,
            "0142d00bffe1001c6742d00bda0a11f97016a0c0c0d4a0000003002000000303d1e244d401000468ce3c80"
        )
    );
    assert_eq!(
        track(f, Direction::ToServer, Codec::Aac),
        pinned(131, &[], (0, 3018), 24668, AAC_CONFIG)
    );
    // flvmux streamable=true repeats onMetaData.
    assert_eq!(metadata_count(f, Direction::ToServer), 25);
    assert_reproduced(f);
    assert_eq!(f.output_len, 3647);
}

#[test]
fn arcly_play_to_ffmpeg() {
    let r = fixture("arcly_play_ffmpeg.pcapng");
    assert_eq!(r.flows.len(), 2);
    // Flow 0: ffmpeg publishing 4 s in real time.
    let p = &r.flows[0];
    assert_eq!(
        story(p)[..3],
        [
            "c2s connected live rtmp://127.0.0.1:19361/live",
            "c2s publish live/fixture",
            "s2c status NetStream.Publish.Start",
        ]
    );
    let v = track(p, Direction::ToServer, Codec::H264);
    assert_eq!(
        (v.frames, v.keyframes, v.dts),
        (60, vec![0, 15, 30, 45], (23, 3956))
    );
    let a = track(p, Direction::ToServer, Codec::Aac);
    assert_eq!((a.frames, a.dts), (174, (0, 4017)));
    assert_eq!(v.configs, [FFMPEG_AVC]);
    assert_eq!(a.configs, [AAC_CONFIG]);

    // Flow 1: ffmpeg playing for 1.5 s, joining 1.74 s in.
    let f = &r.flows[1];
    assert_eq!(f.flow.first.as_millis(), 1739);
    assert_eq!(
        story(f),
        [
            "c2s connected live rtmp://127.0.0.1:19361/live",
            "c2s play live/fixture",
            "s2c status NetStream.Play.Reset",
            "s2c status NetStream.Play.Start",
            "c2s end play stopped",
            "c2s close peer closed",
        ]
    );
    assert_eq!(f.frames(Direction::ToServer).count(), 0);
    assert_eq!(metadata_count(f, Direction::ToClient), 1);
    // Instant start: configs first, then the cached GOP from its keyframe
    // (1023 ms: the second GOP of the publisher, whose keyframes are at 23,
    // 1023, 2023, 3023 ms).
    let played: Vec<_> = f.frames(Direction::ToClient).collect();
    assert!(played[0].is_config() && played[1].is_config());
    assert_eq!(
        (played[0].codec, played[1].codec, played[2].codec),
        (Codec::H264, Codec::Aac, Codec::H264)
    );
    assert!(played[2].is_keyframe());
    assert_eq!(
        track(f, Direction::ToClient, Codec::H264),
        pinned(41, &[0, 15, 30], (1023, 3690), 38865, FFMPEG_AVC)
    );
    let a = track(f, Direction::ToClient, Codec::Aac);
    assert_eq!((a.frames, a.dts, a.bytes), (114, (1045, 3669), 21214));
    // Every played frame is one the publisher sent.
    let published: Vec<_> = p.frames(Direction::ToServer).collect();
    for x in &played {
        assert!(published.contains(x), "{x:?} was never published");
    }
    // Both server sides reproduced byte for byte, media chunks included.
    for flow in &r.flows {
        assert_reproduced(flow);
    }
    assert_eq!(f.output_len, 66442);
}

#[test]
fn flow_selection_and_named_protocol() {
    let path = fixture_path("arcly_play_ffmpeg.pcapng");
    let run =
        |cfg: ReplayConfig| Replay::from_reader(std::fs::File::open(&path).unwrap(), &cfg).unwrap();
    let by_port = run(ReplayConfig::default().with_port(Some(35904)));
    assert_eq!(by_port.flows.len(), 1);
    assert_eq!(by_port.flows[0].flow.client.port(), 35904);
    assert_eq!(
        run(ReplayConfig::default().with_port(Some(19361)))
            .flows
            .len(),
        2
    );
    assert_eq!(
        run(ReplayConfig::default().with_addr(Some("127.0.0.2".parse().unwrap())))
            .flows
            .len(),
        0
    );
    let named = run(ReplayConfig::default()
        .with_addr(Some("127.0.0.1".parse().unwrap()))
        .with_protocol(Some(Protocol::Rtmp)));
    assert_eq!(
        named.to_json_lines(),
        fixture("arcly_play_ffmpeg.pcapng").to_json_lines()
    );
}
