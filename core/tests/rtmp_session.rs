//! RTMP client ↔ server machines back to back in memory, through the engine
//! glue (`RtmpSession`) and directly (`ServerConnection`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod rtmp_util;

use std::sync::{Arc, Mutex};

use arcly::admission::{AdmissionKind, AdmissionRequest};
use arcly::rtmp::{
    ClientEvent, ClientMode, RtmpSessionFactory, ServerConfig, ServerConnection, ServerEvent,
};
use arcly::session::{CloseReason, StreamSession};
use arcly::{Engine, Frame};
use rtmp_util::*;

fn connected_publisher(
    factory: &RtmpSessionFactory,
    url: &str,
    port: u16,
) -> (arcly::rtmp::ClientConnection, arcly::rtmp::RtmpSession) {
    let mut c = client(url, ClientMode::Publish, u64::from(port));
    let mut s = factory.session(peer(port), at(0), u64::from(port));
    let ev = pump(&mut c, &mut s, at(1));
    assert!(ev.contains(&ClientEvent::Publishing), "events: {ev:?}");
    assert!(s.is_publishing());
    (c, s)
}

fn connected_player(
    factory: &RtmpSessionFactory,
    url: &str,
    port: u16,
) -> (
    arcly::rtmp::ClientConnection,
    arcly::rtmp::RtmpSession,
    Vec<ClientEvent>,
) {
    let mut c = client(url, ClientMode::Play, u64::from(port));
    let mut s = factory.session(peer(port), at(0), u64::from(port));
    let ev = pump(&mut c, &mut s, at(1));
    assert!(ev.contains(&ClientEvent::Playing), "events: {ev:?}");
    assert!(s.is_playing());
    (c, s, ev)
}

fn send_all(c: &mut arcly::rtmp::ClientConnection, frames: &[Frame]) {
    for f in frames {
        c.send_frame(f).unwrap();
    }
}

#[test]
fn publish_then_play_through_engine_instant_start_and_every_frame() {
    let engine = Engine::with_defaults();
    let factory = RtmpSessionFactory::allow_all(engine.clone());
    let (mut pc, mut ps) = connected_publisher(&factory, "rtmp://localhost/live/cam", 1);

    let all = stream(400, 25, 1000);
    let (before, after) = all.split_at(120);
    send_all(&mut pc, before);
    pump(&mut pc, &mut ps, at(2));
    assert_eq!(
        engine
            .stream_stats(&arcly::StreamKey::new("live", "cam").unwrap())
            .unwrap()
            .frames
            .load(std::sync::atomic::Ordering::Relaxed),
        120
    );

    let (mut vc, mut vs, ev) = connected_player(&factory, "rtmp://localhost/live/cam", 2);
    let mut got = frames(&ev);
    // Play sequence: StreamBegin before Play.Start, Play.Reset then Play.Start.
    let codes: Vec<&str> = ev
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Status { code, .. } => Some(code.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(codes, ["NetStream.Play.Reset", "NetStream.Play.Start"]);
    assert!(ev.contains(&ClientEvent::StreamBegin));

    send_all(&mut pc, after);
    pump(&mut pc, &mut ps, at(3));
    got.extend(frames(&pump(&mut vc, &mut vs, at(3))));

    // Configs first, then the cached GOP from its keyframe, then live.
    assert!(got.len() > 2);
    assert!(got[0].is_config() && got[1].is_config());
    assert_eq!(got[0], all[0]);
    assert_eq!(got[1], all[1]);
    assert!(got[2].is_keyframe() && got[2].kind() == arcly::MediaKind::Video);
    let key_idx = before
        .iter()
        .rposition(|f| f.is_keyframe() && !f.is_config() && f.kind() == arcly::MediaKind::Video)
        .unwrap();
    assert_eq!(
        &got[2..],
        &all[key_idx..],
        "every frame after the join keyframe, in order"
    );
}

#[test]
fn metadata_reaches_player_and_publisher_end_notifies() {
    let engine = Engine::with_defaults();
    let factory = RtmpSessionFactory::allow_all(engine.clone());
    let (mut pc, mut ps) = connected_publisher(&factory, "rtmp://localhost/live/md", 3);
    let md = arcly::rtmp::amf::encode_values(&[
        arcly::rtmp::amf::Amf0Value::String("onMetaData".into()),
        arcly::rtmp::amf::Amf0Value::object([(
            "width",
            arcly::rtmp::amf::Amf0Value::Number(640.0),
        )]),
    ]);
    pc.send_metadata(&md).unwrap();
    send_all(&mut pc, &stream(10, 25, 0));
    pump(&mut pc, &mut ps, at(2));

    let (mut vc, mut vs, ev) = connected_player(&factory, "rtmp://localhost/live/md", 4);
    assert!(ev.contains(&ClientEvent::Metadata(md.clone())), "{ev:?}");
    // Metadata comes before the first frame.
    let md_pos = ev
        .iter()
        .position(|e| matches!(e, ClientEvent::Metadata(_)))
        .unwrap();
    let f_pos = ev
        .iter()
        .position(|e| matches!(e, ClientEvent::Frame(_)))
        .unwrap();
    assert!(md_pos < f_pos);

    pc.shutdown();
    pump(&mut pc, &mut ps, at(3));
    assert!(!ps.is_publishing());
    let ev = pump(&mut vc, &mut vs, at(3));
    assert!(ev.contains(&ClientEvent::StreamEof), "{ev:?}");
    assert!(ev.iter().any(|e| matches!(e, ClientEvent::Status { code, .. } if code == "NetStream.Play.UnpublishNotify")));
    assert!(engine.streams().is_empty());
}

#[test]
fn stream_query_reaches_admission_and_refusals_are_reported() {
    let engine = Engine::with_defaults();
    let seen: Arc<Mutex<Vec<AdmissionRequest>>> = Arc::default();
    let log = seen.clone();
    let admission = move |r: &AdmissionRequest| {
        log.lock().unwrap().push(r.clone());
        match r.query_param("token") {
            Some("x") => Ok(()),
            _ => Err("bad token".to_owned()),
        }
    };
    let factory = RtmpSessionFactory::new(engine.clone(), Arc::new(admission));
    let (_pc, _ps) = connected_publisher(&factory, "rtmp://localhost/live/cam?token=x", 5);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].kind, AdmissionKind::Publish);
        assert_eq!(seen[0].key.to_string(), "live/cam");
        assert_eq!(seen[0].query, "token=x");
        assert_eq!(seen[0].protocol, "rtmp");
        assert_eq!(seen[0].peer, peer(5));
    }
    assert_eq!(engine.streams().len(), 1);

    // Wrong token: NetStream.Publish.BadName with the reason, then closed.
    let mut c = client(
        "rtmp://localhost/live/other?token=y",
        ClientMode::Publish,
        6,
    );
    let mut s = factory.session(peer(6), at(0), 6);
    let ev = pump(&mut c, &mut s, at(1));
    assert!(
        ev.iter().any(
            |e| matches!(e, ClientEvent::Status { code, description, .. }
        if code == "NetStream.Publish.BadName" && description == "bad token")
        ),
        "{ev:?}"
    );
    assert_eq!(
        s.close_reason(),
        Some(&CloseReason::Rejected("bad token".into()))
    );
    assert!(matches!(c.close_reason(), Some(CloseReason::Rejected(_))));
    assert_eq!(engine.streams().len(), 1);

    // A player's query goes to admission too.
    let (_vc, _vs, _) = connected_player(&factory, "rtmp://localhost/live/cam?token=x", 7);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.last().unwrap().kind, AdmissionKind::Play);
    assert_eq!(seen.last().unwrap().query, "token=x");
}

#[test]
fn play_of_unknown_stream_is_not_found_and_second_publisher_is_refused() {
    let engine = Engine::with_defaults();
    let factory = RtmpSessionFactory::allow_all(engine.clone());
    let mut c = client("rtmp://localhost/live/nothing", ClientMode::Play, 8);
    let mut s = factory.session(peer(8), at(0), 8);
    let ev = pump(&mut c, &mut s, at(1));
    assert!(ev.iter().any(|e| matches!(e, ClientEvent::Status { code, .. } if code == "NetStream.Play.StreamNotFound")), "{ev:?}");
    assert!(matches!(s.close_reason(), Some(CloseReason::Rejected(r)) if r.contains("not found")));

    let (_pc, _ps) = connected_publisher(&factory, "rtmp://localhost/live/cam", 9);
    let mut c = client("rtmp://localhost/live/cam", ClientMode::Publish, 10);
    let mut s = factory.session(peer(10), at(0), 10);
    let ev = pump(&mut c, &mut s, at(1));
    assert!(
        ev.iter().any(
            |e| matches!(e, ClientEvent::Status { code, description, .. }
        if code == "NetStream.Publish.BadName" && description.contains("already being published"))
        ),
        "{ev:?}"
    );
}

/// Drives a bare `ServerConnection` (no engine) from a `ClientConnection`.
fn pump_machine(
    c: &mut arcly::rtmp::ClientConnection,
    s: &mut ServerConnection,
    events: &mut Vec<ServerEvent>,
) -> Vec<ClientEvent> {
    let mut cev = Vec::new();
    loop {
        let mut moved = false;
        while let Some(b) = c.poll_transmit() {
            moved = true;
            s.handle_input(at(1), &b);
        }
        while let Some(e) = s.poll_event() {
            if let ServerEvent::PublishRequest { token, .. } = &e {
                s.accept_publish(*token);
            }
            events.push(e);
        }
        while let Some(b) = s.poll_transmit() {
            moved = true;
            c.handle_input(at(1), &b);
        }
        while let Some(e) = c.poll_event() {
            cev.push(e);
        }
        if !moved {
            return cev;
        }
    }
}

#[test]
fn server_machine_extends_timestamps_past_32_bit_wrap() {
    let mut c = client(
        "rtmp://localhost/live?app=1/cam?k=v",
        ClientMode::Publish,
        11,
    );
    let mut s = ServerConnection::new(ServerConfig::default(), at(0), 11);
    let mut ev = Vec::new();
    let cev = pump_machine(&mut c, &mut s, &mut ev);
    assert!(cev.contains(&ClientEvent::Publishing), "{cev:?}");
    assert!(ev
        .iter()
        .any(|e| matches!(e, ServerEvent::Connected { app, .. } if app == "live")));
    assert!(
        ev.iter().any(
            |e| matches!(e, ServerEvent::PublishRequest { app, stream_name, query, .. }
        if app == "live" && stream_name == "cam" && query == "app=1&k=v")
        ),
        "{ev:?}"
    );

    let wrap = 1i64 << 32;
    let sent = vec![
        video_config(wrap - 100),
        video_frame(0, wrap - 80, true, 9000),
        video_frame(1, wrap - 40, false, 500),
        video_frame(2, wrap, false, 500),
        video_frame(3, wrap + 40, false, 9000),
    ];
    for f in &sent {
        c.send_frame(f).unwrap();
    }
    ev.clear();
    pump_machine(&mut c, &mut s, &mut ev);
    let got: Vec<Frame> = ev
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Frame(f) => Some(f.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(got, sent);
}

#[test]
fn ping_request_is_answered_and_acknowledgements_sent() {
    use arcly::rtmp::chunk::{ChunkReader, RawMessage};
    use arcly::rtmp::message::{ProtocolControl, UserControl};
    let engine = Engine::with_defaults();
    let factory = RtmpSessionFactory::allow_all(engine);
    let mut s = factory.session(peer(12), at(0), 12);
    rtmp_util::raw::handshake(&mut s, at(0));
    let mut input = Vec::new();
    input.extend_from_slice(
        &arcly::rtmp::chunk::encode_message(
            &ProtocolControl::WindowAckSize(1000).to_message(),
            128,
        )
        .unwrap(),
    );
    input.extend_from_slice(&rtmp_util::raw::connect("live"));
    let ping = UserControl::PingRequest(1234).to_message();
    input.extend_from_slice(&arcly::rtmp::chunk::encode_message(&ping, 128).unwrap());
    // Enough bytes to pass the window of 1000.
    for _ in 0..60 {
        input.extend_from_slice(&rtmp_util::raw::message(
            3,
            0,
            20,
            0,
            bytes::Bytes::from(arcly::rtmp::amf::encode_values(&[
                arcly::rtmp::amf::Amf0Value::String("noop".into()),
                arcly::rtmp::amf::Amf0Value::Number(0.0),
            ])),
        ));
    }
    s.handle_input(at(1), &input);
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    let bytes: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
    let mut r = ChunkReader::default();
    r.handle_input(&bytes);
    let mut msgs: Vec<RawMessage> = Vec::new();
    while let Some(m) = r.poll_message().unwrap() {
        msgs.push(m);
    }
    assert!(msgs.iter().any(|m| m.type_id == 4
        && UserControl::decode(&m.payload).unwrap() == UserControl::PingResponse(1234)));
    assert!(
        msgs.iter().any(|m| m.type_id == 3),
        "no acknowledgement in {msgs:?}"
    );
    assert!(s.close_reason().is_none());
}
