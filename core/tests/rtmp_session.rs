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

use arcly::admission::{AdmissionKind, AdmissionRequest, RejectCode};
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
    let md = arcly::rtmp::command::Metadata {
        properties: vec![("width".into(), arcly::rtmp::amf::Amf0Value::Number(640.0))],
    }
    .to_on_metadata();
    pc.send_metadata(&md).unwrap();
    send_all(&mut pc, &stream(10, 25, 0));
    pump(&mut pc, &mut ps, at(2));

    let (mut vc, mut vs, ev) = connected_player(&factory, "rtmp://localhost/live/md", 4);
    assert!(ev.contains(&ClientEvent::Metadata(md.clone())));
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

    // New metadata mid-stream reaches the player before the next frames.
    let md2 = arcly::rtmp::command::Metadata {
        properties: vec![("width".into(), arcly::rtmp::amf::Amf0Value::Number(1280.0))],
    }
    .to_on_metadata();
    pc.send_metadata(&md2).unwrap();
    send_all(&mut pc, &[video_frame(99, 2000, false, 100)]);
    pump(&mut pc, &mut ps, at(2));
    let ev = pump(&mut vc, &mut vs, at(2));
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[0], ClientEvent::Metadata(md2));
    assert!(matches!(&ev[1], ClientEvent::Frame(f) if f.dts == 2000));

    pc.close(at(3));
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
        Some(&CloseReason::rejected(RejectCode::Forbidden, "bad token"))
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
    assert!(
        matches!(s.close_reason(), Some(CloseReason::Rejected(r)) if r.code == RejectCode::NotFound && r.reason.contains("not found"))
    );

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
            arcly::rtmp::amf::encode_values(&[
                arcly::rtmp::amf::Amf0Value::String("noop".into()),
                arcly::rtmp::amf::Amf0Value::Number(0.0),
            ]),
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

/// Collects the messages a server session sent, decoded with a ChunkReader.
fn sent_messages(
    s: &mut dyn StreamSession,
    r: &mut arcly::rtmp::chunk::ChunkReader,
) -> Vec<arcly::rtmp::chunk::RawMessage> {
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    for b in out {
        r.handle_input(&b);
    }
    std::iter::from_fn(|| r.poll_message().unwrap()).collect()
}

fn command_names(
    msgs: &[arcly::rtmp::chunk::RawMessage],
) -> Vec<(String, Vec<arcly::rtmp::amf::Amf0Value>)> {
    msgs.iter()
        .filter(|m| m.type_id == 20)
        .map(|m| {
            let mut v = arcly::rtmp::amf::decode_all(&m.payload).unwrap();
            let name = v.remove(0).as_str().unwrap().to_owned();
            (name, v)
        })
        .collect()
}

#[test]
fn amf3_connect_stream_ids_and_stream_lifecycle_commands() {
    use arcly::rtmp::amf::Amf0Value as V;
    use rtmp_util::raw;
    let engine = Engine::with_defaults();
    let factory = RtmpSessionFactory::allow_all(engine.clone());
    let (mut pc, mut ps) = connected_publisher(&factory, "rtmp://localhost/live/cam", 20);
    send_all(&mut pc, &stream(20, 10, 0));
    pump(&mut pc, &mut ps, at(1));

    let mut s = factory.session(peer(21), at(0), 21);
    let mut r = arcly::rtmp::chunk::ChunkReader::default();
    raw::handshake(&mut s, at(0));
    // connect as an AMF3 command message (type 17: format byte 0 + AMF0).
    let mut body = vec![0u8];
    body.extend_from_slice(&arcly::rtmp::amf::encode_values(&[
        V::String("connect".into()),
        V::Number(1.0),
        V::object([
            ("app", V::String("live".into())),
            ("objectEncoding", V::Number(3.0)),
        ]),
    ]));
    s.handle_input(at(1), &raw::message(3, 0, 17, 0, bytes::Bytes::from(body)));
    let msgs = sent_messages(&mut s, &mut r);
    // Window ack size, peer bandwidth, chunk size 4096, then _result.
    assert_eq!(
        msgs.iter().map(|m| m.type_id).collect::<Vec<_>>(),
        [5, 6, 1, 20]
    );
    assert_eq!(&msgs[2].payload[..], &4096u32.to_be_bytes());
    let cmds = command_names(&msgs);
    assert_eq!(cmds[0].0, "_result");
    assert_eq!(
        cmds[0].1[2].get("code").unwrap().as_str(),
        Some("NetConnection.Connect.Success")
    );
    assert_eq!(
        cmds[0].1[2].get("objectEncoding").unwrap().as_f64(),
        Some(3.0)
    );

    // createStream twice: ids 1 and 2; getStreamLength answers.
    let mut input = Vec::new();
    input.extend_from_slice(&raw::create_stream(2.0));
    input.extend_from_slice(&raw::create_stream(3.0));
    input.extend_from_slice(&raw::command(
        0,
        &[
            V::String("getStreamLength".into()),
            V::Number(4.0),
            V::Null,
            V::String("cam".into()),
        ],
    ));
    s.handle_input(at(1), &input);
    let cmds = command_names(&sent_messages(&mut s, &mut r));
    assert_eq!(cmds.len(), 3);
    assert_eq!(
        (cmds[0].1[0].as_f64(), cmds[0].1[2].as_f64()),
        (Some(2.0), Some(1.0))
    );
    assert_eq!(
        (cmds[1].1[0].as_f64(), cmds[1].1[2].as_f64()),
        (Some(3.0), Some(2.0))
    );
    assert_eq!(cmds[2].1[0].as_f64(), Some(4.0));

    // Play on stream 2 (not the cached stream id 1): media still arrives,
    // chunked for this connection, on message stream 2.
    s.handle_input(
        at(1),
        &raw::command(
            2,
            &[
                V::String("play".into()),
                V::Number(0.0),
                V::Null,
                V::String("cam".into()),
            ],
        ),
    );
    let msgs = sent_messages(&mut s, &mut r);
    let media: Vec<_> = msgs
        .iter()
        .filter(|m| m.type_id == 8 || m.type_id == 9)
        .collect();
    assert!(!media.is_empty());
    assert!(media.iter().all(|m| m.stream_id == 2));
    assert!(s.is_playing());

    // closeStream stops the play; deleteStream removes the stream; a second
    // play on a fresh stream id 2 works again (ids are reused).
    s.handle_input(
        at(2),
        &raw::command(
            2,
            &[V::String("closeStream".into()), V::Number(0.0), V::Null],
        ),
    );
    assert!(!s.is_playing());
    s.handle_input(
        at(2),
        &raw::command(
            0,
            &[
                V::String("deleteStream".into()),
                V::Number(0.0),
                V::Null,
                V::Number(2.0),
            ],
        ),
    );
    sent_messages(&mut s, &mut r);
    s.handle_input(at(2), &raw::create_stream(5.0));
    let cmds = command_names(&sent_messages(&mut s, &mut r));
    assert_eq!(cmds[0].1[2].as_f64(), Some(2.0));
    assert!(s.close_reason().is_none());

    // A second connect is a protocol error.
    s.handle_input(at(3), &raw::connect("live"));
    assert!(
        matches!(s.close_reason(), Some(CloseReason::ProtocolError(r)) if r.to_string().contains("second connect"))
    );

    // The publisher ends with FCUnpublish + deleteStream (ClientConnection::close).
    pc.close(at(0));
    let mut out = Vec::new();
    while let Some(b) = pc.poll_transmit() {
        out.extend_from_slice(&b);
    }
    ps.handle_input(at(4), &out);
    assert!(!ps.is_publishing());
    assert!(ps.close_reason().is_none());
    assert!(engine.streams().is_empty());
}

#[test]
fn client_url_parsing_and_connect_rejection() {
    use arcly::rtmp::ClientConfig;
    let c = ClientConfig::from_url("rtmp://example.com:1936/live/cam?token=x", ClientMode::Play)
        .unwrap();
    assert_eq!(c.app, "live");
    assert_eq!(c.tc_url, "rtmp://example.com:1936/live");
    assert_eq!(c.stream, "cam?token=x");
    assert!(ClientConfig::from_url("http://x/live/cam", ClientMode::Play).is_err());
    assert!(ClientConfig::from_url("rtmp://x/live", ClientMode::Play).is_err());
    assert!(ClientConfig::from_url("rtmp://x//cam", ClientMode::Play).is_err());

    // An app name the engine refuses: publish gets BadName with the engine's reason.
    let engine = Engine::new();
    engine.add_app("live", arcly::AppConfig::default());
    let factory = RtmpSessionFactory::allow_all(engine);
    let mut c = client("rtmp://localhost/other/cam", ClientMode::Publish, 22);
    let mut s = factory.session(peer(22), at(0), 22);
    let ev = pump(&mut c, &mut s, at(1));
    assert!(
        ev.iter().any(
            |e| matches!(e, ClientEvent::Status { code, description, .. }
        if code == "NetStream.Publish.BadName" && description.contains("unknown app"))
        ),
        "{ev:?}"
    );
    assert!(matches!(
        ev.last(),
        Some(ClientEvent::Closed(CloseReason::Rejected(_)))
    ));
}

#[test]
fn client_connect_timeout() {
    let mut c = client("rtmp://localhost/live/cam", ClientMode::Play, 23);
    assert!(c.poll_transmit().is_some(), "C0+C1 queued at start");
    let t = c.poll_timeout().unwrap();
    c.handle_timeout(t);
    assert_eq!(c.close_reason(), Some(&CloseReason::IdleTimeout));
}

#[test]
fn media_chunks_are_built_once_and_shared_by_every_viewer() {
    use arcly::rtmp::chunk::ChunkReader;
    let engine = Engine::with_defaults();
    let factory = RtmpSessionFactory::allow_all(engine.clone());
    let (mut pc, mut ps) = connected_publisher(&factory, "rtmp://localhost/live/cam", 30);
    send_all(&mut pc, &stream(2, 25, 0)); // configs
    pump(&mut pc, &mut ps, at(1));
    let (_c1, mut v1, _) = connected_player(&factory, "rtmp://localhost/live/cam", 31);
    let (_c2, mut v2, _) = connected_player(&factory, "rtmp://localhost/live/cam", 32);

    let frames_sent = stream(60, 25, 0);
    send_all(&mut pc, &frames_sent[2..]);
    pump(&mut pc, &mut ps, at(2));
    let mut out1 = Vec::new();
    let mut out2 = Vec::new();
    v1.handle_media(at(2));
    v2.handle_media(at(2));
    v1.poll_transmit(&mut out1);
    v2.poll_transmit(&mut out2);
    // The player joined before any keyframe: the engine sends the configs
    // with the first keyframe, then every frame. One buffer per frame.
    assert_eq!(out1.len(), 60, "one buffer per frame");
    assert_eq!(out2.len(), 60);
    for (a, b) in out1.iter().zip(&out2) {
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same cached bytes, not a copy");
        assert_eq!(a.len(), b.len());
    }
    // The cached form: type-0 first chunk, absolute timestamp, message
    // stream 1, 4096-byte chunks, fixed chunk stream per kind.
    let mut r = ChunkReader::default();
    r.set_chunk_size(4096).unwrap();
    for b in &out1 {
        r.handle_input(b);
    }
    let msgs: Vec<_> = std::iter::from_fn(|| r.poll_message().unwrap()).collect();
    assert_eq!(msgs.len(), 60);
    for (m, f) in msgs.iter().zip(&frames_sent) {
        assert_eq!(m.stream_id, 1);
        assert_eq!(i64::from(m.timestamp), f.dts);
        let (csid, ty) = if f.kind() == arcly::MediaKind::Video {
            (7, 9)
        } else {
            (6, 8)
        };
        assert_eq!((m.csid, m.type_id), (csid, ty));
        assert_eq!(m.payload, arcly::rtmp::flv::frame_to_tag_body(f));
    }
    for b in &out1 {
        assert_eq!(
            b[0] & 0xC0,
            0,
            "every cached message starts with a type-0 header"
        );
    }
}

/// Per-viewer egress cost through the glue: 500 playing sessions, each frame
/// pulled by every session (`handle_media` + `poll_transmit`). Run with
/// `cargo test --release -p arcly --test rtmp_session -- --ignored --nocapture`.
#[test]
#[ignore = "measurement; run in release"]
fn egress_cost_per_viewer_and_frame() {
    use arcly::rtmp::amf::Amf0Value as V;
    use rtmp_util::raw;
    let engine = Engine::with_defaults();
    let factory = RtmpSessionFactory::allow_all(engine.clone());
    let mut publisher = engine
        .publish(arcly::StreamKey::new("live", "bench").unwrap())
        .unwrap();
    let frames = stream(1002, 50, 0);
    publisher.send(frames[0].clone());
    publisher.send(frames[1].clone());
    let mut viewers: Vec<_> = (0..500u16)
        .map(|i| {
            let mut s = factory.session(peer(1000 + i), at(0), u64::from(i));
            raw::handshake(&mut s, at(0));
            let mut input = Vec::new();
            input.extend_from_slice(&raw::connect("live"));
            input.extend_from_slice(&raw::create_stream(2.0));
            input.extend_from_slice(&raw::command(
                1,
                &[
                    V::String("play".into()),
                    V::Number(0.0),
                    V::Null,
                    V::String("bench".into()),
                ],
            ));
            s.handle_input(at(1), &input);
            assert!(s.is_playing());
            let mut out = Vec::new();
            s.poll_transmit(&mut out);
            s
        })
        .collect();
    let mut out = Vec::new();
    let t0 = std::time::Instant::now();
    let mut bytes = 0usize;
    for f in &frames[2..] {
        publisher.send(f.clone());
        for v in &mut viewers {
            v.handle_media(at(2));
            out.clear();
            bytes += v.poll_transmit(&mut out);
        }
    }
    let dt = t0.elapsed();
    let per = dt.as_nanos() as f64 / (1000.0 * viewers.len() as f64);
    eprintln!(
        "size_of::<RtmpSession>() = {} bytes",
        std::mem::size_of::<arcly::rtmp::RtmpSession>()
    );
    eprintln!(
        "{} viewers x 1000 frames: {:?}, {per:.0} ns per viewer-frame, {:.2} GB/s of egress handed out",
        viewers.len(),
        dt,
        bytes as f64 / dt.as_secs_f64() / 1e9
    );
    assert!(bytes > 500 * 1000 * 300);
    assert!(per < 20_000.0, "egress per viewer-frame too slow: {per} ns");
}

/// A publish decision may come later than the request: input that arrives
/// meanwhile (media pipelined behind `publish`) is held, bounded, and
/// handled in order once the decision is made.
#[test]
fn deferred_admission_holds_input_until_decided() {
    use arcly::rtmp::handshake::{ClientHandshake, HandshakeMode};
    use rtmp_util::raw;
    let handshake = |s: &mut ServerConnection| {
        let mut hs = ClientHandshake::new(1, HandshakeMode::Simple);
        s.handle_input(at(0), &hs.poll_transmit().unwrap());
        let mut sb = Vec::new();
        while let Some(b) = s.poll_transmit() {
            sb.extend_from_slice(&b);
        }
        hs.handle_input(&sb).unwrap();
        s.handle_input(at(0), &hs.poll_transmit().unwrap());
    };
    let frames = stream(12, 5, 0);
    let media = |fs: &[Frame]| {
        let mut v = Vec::new();
        for f in fs {
            let (csid, ty) = if f.kind() == arcly::MediaKind::Video {
                (7, 9)
            } else {
                (6, 8)
            };
            v.extend_from_slice(&raw::message(
                csid,
                f.dts as u32,
                ty,
                1,
                arcly::rtmp::flv::frame_to_tag_body(f),
            ));
        }
        v
    };
    let config = ServerConfig::default().with_max_pending_input(64 << 10);
    let mut s = ServerConnection::new(config.clone(), at(0), 1);
    handshake(&mut s);
    let mut input = Vec::new();
    input.extend_from_slice(&raw::connect("live"));
    input.extend_from_slice(&raw::create_stream(2.0));
    input.extend_from_slice(&raw::publish(1, "late"));
    input.extend_from_slice(&media(&frames[..6]));
    s.handle_input(at(1), &input);
    s.handle_input(at(2), &media(&frames[6..]));
    let ev: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    let token = ev
        .iter()
        .find_map(|e| match e {
            ServerEvent::PublishRequest { token, .. } => Some(*token),
            _ => None,
        })
        .unwrap();
    assert!(
        !ev.iter().any(|e| matches!(e, ServerEvent::Frame(_))),
        "no media before the decision"
    );
    s.accept_publish(token);
    let got: Vec<Frame> = std::iter::from_fn(|| s.poll_event())
        .filter_map(|e| match e {
            ServerEvent::Frame(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(got, frames);

    // The held input is bounded.
    let mut s = ServerConnection::new(config, at(0), 2);
    handshake(&mut s);
    let mut input = Vec::new();
    input.extend_from_slice(&raw::connect("live"));
    input.extend_from_slice(&raw::create_stream(2.0));
    input.extend_from_slice(&raw::publish(1, "late"));
    s.handle_input(at(1), &input);
    let big = video_frame(0, 0, true, 40_000);
    s.handle_input(at(2), &media(std::slice::from_ref(&big)));
    assert!(s.close_reason().is_none());
    s.handle_input(at(2), &media(&[big]));
    assert!(
        matches!(s.close_reason(), Some(CloseReason::ProtocolError(r)) if r.to_string().contains("admission decision is pending"))
    );
}

/// Opus travels as an Enhanced RTMP (E-RTMP v2) audio tag end to end.
#[test]
fn opus_over_enhanced_rtmp_round_trips() {
    let engine = Engine::with_defaults();
    let factory = RtmpSessionFactory::allow_all(engine.clone());
    let (mut pc, mut ps) = connected_publisher(&factory, "rtmp://localhost/live/opus", 50);
    let (mut vc, mut vs, _) = connected_player(&factory, "rtmp://localhost/live/opus", 51);
    let opus = |n: u32, config: bool| Frame {
        codec: arcly::Codec::Opus,
        flags: if config {
            arcly::FrameFlags::CONFIG
        } else {
            arcly::FrameFlags::KEYFRAME
        },
        pts: i64::from(n) * 20,
        dts: i64::from(n) * 20,
        timebase: 1000,
        payload: if config {
            arcly::codec::opus::OpusHead::new(2).to_bytes()
        } else {
            bytes::Bytes::from(vec![0xFC, n as u8, 1, 2, 3])
        },
    };
    let mut sent = vec![video_config(0), opus(0, true), video_frame(0, 0, true, 500)];
    sent.extend((1..20).map(|n| opus(n, false)));
    send_all(&mut pc, &sent);
    pump(&mut pc, &mut ps, at(1));
    let got = frames(&pump(&mut vc, &mut vs, at(1)));
    assert_eq!(got, sent);
}

#[test]
fn player_reports_its_apps_write_merge_window() {
    let engine = Engine::new();
    engine.add_app("live", arcly::AppConfig::default());
    engine.add_app(
        "batched",
        arcly::AppConfig::default().with_write_merge(std::time::Duration::from_millis(300)),
    );
    let factory = RtmpSessionFactory::allow_all(engine.clone());
    let (_p1, s1) = connected_publisher(&factory, "rtmp://localhost/live/cam", 40);
    let (_p2, s2) = connected_publisher(&factory, "rtmp://localhost/batched/cam", 41);
    // Publishers never merge: there is no media to hold back.
    assert_eq!(s1.write_merge(), std::time::Duration::ZERO);
    assert_eq!(s2.write_merge(), std::time::Duration::ZERO);
    let (_c, low, _) = connected_player(&factory, "rtmp://localhost/live/cam", 42);
    let (_c, batched, _) = connected_player(&factory, "rtmp://localhost/batched/cam", 43);
    assert_eq!(low.write_merge(), std::time::Duration::ZERO);
    assert_eq!(batched.write_merge(), std::time::Duration::from_millis(300));
}

/// A deferred admission: the publish waits (no engine stream) while another publisher and player flow for 2 s; the
/// decision wakes the session through its media signal and the publish
/// starts with every held frame. Another one, never decided, is refused
/// with `NetStream.Publish.BadName` at its deadline.
#[test]
fn deferred_admission_resolves_later_while_others_flow() {
    use arcly::admission::{from_fn, AdmissionHandle, Decision, PendingAdmission};
    use std::time::Duration;

    let engine = Engine::with_defaults();
    let handles: Arc<Mutex<Vec<AdmissionHandle>>> = Arc::default();
    let h = handles.clone();
    let admission = from_fn(move |req: &AdmissionRequest| {
        let timeout = match req.key.name() {
            "held" => Duration::from_secs(10),
            "late" => Duration::from_secs(1),
            _ => return Decision::Allow,
        };
        let (pending, handle) = PendingAdmission::new(timeout);
        h.lock().unwrap().push(handle);
        Decision::Later(pending)
    });
    let factory = RtmpSessionFactory::new(engine.clone(), Arc::new(admission));
    let (mut pc, mut ps) = connected_publisher(&factory, "rtmp://localhost/live/cam", 1);
    let (mut vc, mut vs, _) = connected_player(&factory, "rtmp://localhost/live/cam", 2);

    let mut hc = client("rtmp://localhost/live/held", ClientMode::Publish, 3);
    let mut hs = factory.session(peer(3), at(0), 3);
    let ev = pump(&mut hc, &mut hs, at(1));
    assert!(!ev.contains(&ClientEvent::Publishing), "{ev:?}");
    assert!(hs.is_waiting_for_admission() && !hs.is_publishing());
    assert_eq!(handles.lock().unwrap().len(), 1);
    let signal = hs
        .media_signal()
        .expect("the session waits on the decision");
    let epoch = signal.epoch();
    assert_eq!(
        hs.poll_timeout(),
        Some(at(10_001)),
        "the decision's deadline"
    );
    // 2 s of media between the other publisher and player meanwhile.
    let all = stream(50, 25, 1000);
    let mut got = Vec::new();
    for (i, f) in all.iter().enumerate() {
        let now = at(40 * i as u64 + 2);
        pc.send_frame(f).unwrap();
        pump(&mut pc, &mut ps, now);
        got.extend(frames(&pump(&mut vc, &mut vs, now)));
        pump(&mut hc, &mut hs, now);
    }
    assert_eq!(
        got, all,
        "the other sessions flowed while the decision was pending"
    );
    assert_eq!(
        engine.streams(),
        [arcly::StreamKey::new("live", "cam").unwrap()],
        "a pending publish holds no engine stream"
    );
    assert!(hs.is_waiting_for_admission());

    // The application decides at 2 s: the signal the driver waits on fires.
    handles.lock().unwrap().pop().unwrap().allow();
    assert_ne!(signal.epoch(), epoch, "the driver is woken");
    hs.handle_media(at(2000));
    let ev = pump(&mut hc, &mut hs, at(2000));
    assert!(ev.contains(&ClientEvent::Publishing), "{ev:?}");
    assert!(hs.is_publishing() && !hs.is_waiting_for_admission());
    let held_key = arcly::StreamKey::new("live", "held").unwrap();
    assert!(engine.streams().contains(&held_key));

    // Never decided: refused at the deadline, protocol-correctly.
    let mut lc = client("rtmp://localhost/live/late", ClientMode::Publish, 4);
    let mut ls = factory.session(peer(4), at(2000), 4);
    pump(&mut lc, &mut ls, at(2001));
    assert!(ls.is_waiting_for_admission());
    assert_eq!(ls.poll_timeout(), Some(at(3001)));
    ls.handle_timeout(at(3000));
    assert!(ls.close_reason().is_none(), "not before the deadline");
    ls.handle_timeout(at(3001));
    let ev = pump(&mut lc, &mut ls, at(3001));
    assert!(
        ev.iter().any(|e| matches!(e, ClientEvent::Status { code, description, .. }
            if code == "NetStream.Publish.BadName" && description.contains("no admission decision in time"))),
        "{ev:?}"
    );
    assert!(
        matches!(ls.close_reason(), Some(CloseReason::Rejected(r)) if r.code == RejectCode::Timeout)
    );
    let late = handles.lock().unwrap().pop().unwrap();
    assert!(late.is_abandoned());
    assert!(!engine
        .streams()
        .contains(&arcly::StreamKey::new("live", "late").unwrap()));
}

/// A viewer's keyframe request reaches the RTMP publisher's session as a
/// counter (RTMP cannot ask the encoder; the session notes it).
#[test]
fn keyframe_requests_reach_the_rtmp_publisher_session_as_a_counter() {
    let engine = Engine::with_defaults();
    let factory = RtmpSessionFactory::allow_all(engine.clone());
    let (mut pc, mut ps) = connected_publisher(&factory, "rtmp://localhost/live/cam", 1);
    let all = stream(10, 25, 0);
    send_all(&mut pc, &all[..5]);
    pump(&mut pc, &mut ps, at(2));
    assert_eq!(ps.keyframe_requests(), 0);
    // Viewers of any protocol ask through their engine subscriber.
    let key = arcly::StreamKey::new("live", "cam").unwrap();
    let a = engine.subscribe(&key).unwrap();
    let b = engine.subscribe(&key).unwrap();
    a.request_keyframe();
    a.request_keyframe();
    b.request_keyframe();
    send_all(&mut pc, &all[5..6]);
    pump(&mut pc, &mut ps, at(3));
    assert_eq!(ps.keyframe_requests(), 3, "every request, once");
    send_all(&mut pc, &all[6..]);
    pump(&mut pc, &mut ps, at(4));
    assert_eq!(ps.keyframe_requests(), 3, "no request counted twice");
    b.request_keyframe();
    ps.handle_timeout(at(5));
    assert_eq!(ps.keyframe_requests(), 4);
}
