//! The engine's session table (`Engine::sessions`, `streams_snapshot`,
//! `protocol_totals`, `refusals`, `kick`): what an operator's API and
//! `/metrics` read. Every tagged publisher and subscriber is listed with its
//! protocol and peer and the bytes it moved; viewers are counted per
//! protocol; a kick ends a subscriber's reads and flags a publisher; ended
//! sessions leave the list but not the totals (counters never run
//! backwards); the engine's refusals are counted by reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;

use arcly::engine::{Engine, Recv, SessionRole, SessionTag, StreamKey};
use arcly::{Codec, Frame, FrameFlags};
use bytes::Bytes;

fn key(name: &str) -> StreamKey {
    StreamKey::new("live", name).unwrap()
}

fn frame(i: i64, len: usize) -> Frame {
    Frame {
        codec: Codec::H264,
        flags: if i % 25 == 0 {
            FrameFlags::KEYFRAME
        } else {
            FrameFlags::NONE
        },
        pts: i * 40,
        dts: i * 40,
        timebase: 1000,
        payload: Bytes::from(vec![7u8; len]),
    }
}

fn drain(sub: &mut arcly::engine::Subscriber) -> usize {
    let mut n = 0;
    while let Recv::Frame(_) = sub.recv() {
        n += 1;
    }
    n
}

fn peer(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn sessions_are_listed_with_protocol_peer_and_bytes() {
    let engine = Engine::with_defaults();
    let mut publisher = engine
        .publish_as(key("cam"), SessionTag::new("rtmp", peer(5000)))
        .unwrap();
    let mut rtmp = engine
        .subscribe_as(&key("cam"), SessionTag::new("rtmp", peer(5001)))
        .unwrap();
    let mut srt = engine
        .subscribe_as(&key("cam"), SessionTag::new("srt", peer(5002)))
        .unwrap();
    let mut internal = engine.subscribe(&key("cam")).unwrap();
    for i in 0..60 {
        publisher.send(frame(i, 1000));
    }
    assert_eq!(drain(&mut rtmp), 60);
    for _ in 0..40 {
        assert!(
            matches!(srt.recv(), Recv::Frame(_)),
            "a viewer that read 40"
        );
    }
    let _ = internal.recv();

    let sessions = engine.sessions();
    assert_eq!(sessions.len(), 4);
    let p = sessions
        .iter()
        .find(|s| s.role == SessionRole::Publisher)
        .unwrap();
    assert_eq!(Some(p.id), publisher.id());
    assert_eq!(p.tag.protocol, "rtmp");
    assert_eq!(p.tag.peer, Some(peer(5000)));
    assert_eq!((p.bytes, p.frames), (60_000, 60));
    let s = engine.session(rtmp.id().unwrap()).unwrap();
    assert_eq!((s.bytes, s.frames, s.lag), (60_000, 60, 0));
    let s = engine.session(srt.id().unwrap()).unwrap();
    assert_eq!(s.tag.protocol, "srt");
    assert_eq!((s.bytes, s.frames, s.lag), (40_000, 40, 20));

    let streams = engine.streams_snapshot();
    assert_eq!(streams.len(), 1);
    let st = &streams[0];
    assert_eq!(st.key, key("cam"));
    let pi = st.publisher.unwrap();
    assert_eq!((pi.protocol, pi.peer), ("rtmp", Some(peer(5000))));
    assert_eq!(
        st.viewers_by_protocol,
        vec![("internal", 1), ("rtmp", 1), ("srt", 1)]
    );
    assert_eq!(st.stats.subscribers, 3);
    assert_eq!(st.stats.keyframe_interval_ms, 1000, "25 frames of 40 ms");
    assert_eq!(st.video, None, "no config frame published");
}

#[test]
fn the_codec_in_force_comes_from_the_config_frame() {
    let engine = Engine::with_defaults();
    let mut publisher = engine.publish(key("cam")).unwrap();
    publisher.send(Frame {
        flags: FrameFlags::CONFIG,
        payload: Bytes::from_static(b"not an avcC"),
        ..frame(0, 0)
    });
    publisher.send(frame(0, 100));
    let st = engine.stream_snapshot(&key("cam")).unwrap();
    let v = st.video.unwrap();
    assert_eq!((v.codec, v.width, v.height), (Codec::H264, None, None));
    assert_eq!(st.audio, None);
    assert_eq!(st.publisher.unwrap().protocol, "internal");
}

#[test]
fn a_kick_ends_a_viewer_and_flags_a_publisher() {
    let engine = Engine::with_defaults();
    let mut publisher = engine
        .publish_as(key("cam"), SessionTag::new("srt", peer(6000)))
        .unwrap();
    let mut kicked = engine
        .subscribe_as(&key("cam"), SessionTag::new("rtmp", peer(6001)))
        .unwrap();
    let mut other = engine
        .subscribe_as(&key("cam"), SessionTag::new("rtmp", peer(6002)))
        .unwrap();
    publisher.send(frame(0, 10));
    let signal = kicked.signal();
    let epoch = signal.epoch();
    assert!(engine.kick(kicked.id().unwrap()));
    assert_ne!(signal.epoch(), epoch, "a waiting session is woken");
    assert!(kicked.is_kicked());
    assert!(matches!(kicked.recv(), Recv::End), "kicked: no more frames");
    assert!(!other.is_kicked());
    assert!(matches!(other.recv(), Recv::Frame(_)), "the others go on");
    assert!(!publisher.is_kicked());
    assert!(engine.kick(publisher.id().unwrap()));
    assert!(publisher.is_kicked());
    assert!(!engine.kick(999), "no such session");
    let listed = engine.session(kicked.id().unwrap()).unwrap();
    assert!(listed.kicked);
}

#[test]
fn ended_sessions_leave_the_list_but_not_the_totals() {
    let engine = Engine::with_defaults();
    let mut publisher = engine
        .publish_as(key("cam"), SessionTag::new("rtmp", peer(7000)))
        .unwrap();
    let mut a = engine
        .subscribe_as(&key("cam"), SessionTag::new("rtmp", peer(7001)))
        .unwrap();
    for i in 0..10 {
        publisher.send(frame(i, 100));
    }
    drain(&mut a);
    let before = engine.protocol_totals();
    let viewers = |t: &[arcly::engine::ProtocolTotals]| {
        t.iter()
            .find(|t| t.protocol == "rtmp" && t.role == SessionRole::Viewer)
            .map(|t| (t.sessions, t.live, t.bytes, t.frames))
    };
    assert_eq!(viewers(&before), Some((1, 1, 1000, 10)));
    drop(a);
    assert_eq!(engine.sessions().len(), 1, "only the publisher is left");
    let after = engine.protocol_totals();
    assert_eq!(
        viewers(&after),
        Some((1, 0, 1000, 10)),
        "the ended viewer's bytes stay counted"
    );
    drop(publisher);
    assert!(engine.sessions().is_empty());
    assert!(engine.streams_snapshot().is_empty());
    let pubs = engine
        .protocol_totals()
        .into_iter()
        .find(|t| t.role == SessionRole::Publisher)
        .unwrap();
    assert_eq!((pubs.sessions, pubs.live, pubs.bytes), (1, 0, 1000));
}

#[test]
fn refusals_are_counted_by_reason() {
    let engine = Engine::with_defaults();
    assert!(engine.subscribe(&key("nobody")).is_err());
    let _p = engine.publish(key("cam")).unwrap();
    assert!(engine
        .publish_as(key("cam"), SessionTag::new("rtmp", peer(1)))
        .is_err());
    let r = engine.refusals();
    assert_eq!((r.not_found, r.already_publishing), (1, 1));
    let named: Vec<_> = r.by_reason().into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(named, vec![("already_publishing", 1), ("not_found", 1)]);
}
