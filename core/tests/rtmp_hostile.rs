//! Hostile input: each bad connection closes with a protocol-error reason,
//! while a concurrent publish/play pair on the same engine keeps working.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod rtmp_util;

use arcly::rtmp::chunk::{encode_message, RawMessage};
use arcly::rtmp::{
    ClientEvent, ClientMode, RtmpSessionFactory, ServerConfig, ServerConnection, ServerEvent,
};
use arcly::session::{CloseReason, StreamSession};
use arcly::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use rtmp_util::raw;
use rtmp_util::*;

/// Feeds `input` to a fresh session (after a valid handshake if
/// `handshake`); returns its close reason text.
fn run_hostile(factory: &RtmpSessionFactory, port: u16, handshake: bool, input: &[u8]) -> String {
    let mut s = factory.session(peer(port), at(0), u64::from(port));
    if handshake {
        raw::handshake(&mut s, at(0));
        assert!(s.close_reason().is_none());
    }
    s.handle_input(at(1), input);
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    match s.close_reason() {
        Some(CloseReason::ProtocolError(r)) => r.to_string(),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

fn set_chunk_size_raw(size: u32) -> Bytes {
    raw::message(2, 0, 1, 0, Bytes::copy_from_slice(&size.to_be_bytes()))
}

/// A connect whose command object nests `depth` objects.
fn amf_bomb(depth: usize) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(0x02);
    b.put_u16(7);
    b.put_slice(b"connect");
    b.put_u8(0x00);
    b.put_f64(1.0);
    for _ in 0..depth {
        b.put_u8(0x03); // object
        b.put_u16(1);
        b.put_slice(b"a");
    }
    b.put_u8(0x05);
    raw::message(3, 0, 20, 0, b.freeze())
}

#[test]
fn hostile_connections_close_with_a_reason_and_others_are_unaffected() {
    let engine = Engine::with_defaults();
    let factory = RtmpSessionFactory::allow_all(engine.clone());

    // The healthy pair.
    let mut pc = client("rtmp://localhost/live/cam", ClientMode::Publish, 1);
    let mut ps = factory.session(peer(1), at(0), 1);
    assert!(pump(&mut pc, &mut ps, at(1)).contains(&ClientEvent::Publishing));
    let all = stream(200, 25, 0);
    for f in &all[..50] {
        pc.send_frame(f).unwrap();
    }
    pump(&mut pc, &mut ps, at(1));
    let mut vc = client("rtmp://localhost/live/cam", ClientMode::Play, 2);
    let mut vs = factory.session(peer(2), at(0), 2);
    let mut got = frames(&pump(&mut vc, &mut vs, at(1)));
    assert!(!got.is_empty());

    let mut reasons = Vec::new();
    // Garbage instead of C0+C1.
    reasons.push((
        "garbage handshake",
        run_hostile(&factory, 10, false, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ));
    // Set Chunk Size 0 and one with the reserved top bit (> 2^31-1).
    reasons.push((
        "chunk size 0",
        run_hostile(&factory, 11, true, &set_chunk_size_raw(0)),
    ));
    reasons.push((
        "chunk size huge",
        run_hostile(&factory, 12, true, &set_chunk_size_raw(0x8000_0000)),
    ));
    // A header announcing a message beyond the limit (16 MiB - 1 > 8 MiB).
    let mut long = BytesMut::new();
    long.put_slice(&[0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 20, 0, 0, 0, 0]);
    long.put_slice(&[0u8; 64]);
    reasons.push(("message too long", run_hostile(&factory, 13, true, &long)));
    // A type-1 chunk on a chunk stream that never had a type-0 header.
    reasons.push((
        "unknown chunk stream",
        run_hostile(
            &factory,
            14,
            true,
            &[0x49, 0, 0, 0, 0, 0, 4, 20, 1, 2, 3, 4],
        ),
    ));
    // A type-3 chunk before any header.
    reasons.push((
        "type-3 first",
        run_hostile(&factory, 15, true, &[0xC3, 1, 2, 3, 4]),
    ));
    // AMF nesting bomb in connect.
    reasons.push((
        "amf bomb",
        run_hostile(&factory, 16, true, &amf_bomb(10_000)),
    ));
    // publish before connect.
    let mut p = BytesMut::new();
    p.put_slice(&raw::create_stream(2.0));
    p.put_slice(&raw::publish(1, "cam2"));
    reasons.push((
        "publish before connect",
        run_hostile(&factory, 17, true, &p),
    ));
    // Media on a stream id that was never created.
    let mut m = BytesMut::new();
    m.put_slice(&raw::connect("live"));
    m.put_slice(&raw::message(
        7,
        0,
        9,
        5,
        Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]),
    ));
    reasons.push(("unknown stream id", run_hostile(&factory, 18, true, &m)));
    // Too many streams on one connection.
    let mut m = BytesMut::new();
    m.put_slice(&raw::connect("live"));
    for i in 0..20 {
        m.put_slice(&raw::create_stream(f64::from(2 + i)));
    }
    reasons.push(("too many streams", run_hostile(&factory, 19, true, &m)));

    let expect = [
        ("garbage handshake", "version"),
        ("chunk size 0", "chunk size 0"),
        ("chunk size huge", "chunk size 2147483648"),
        ("message too long", "exceeds the limit"),
        ("unknown chunk stream", "before any type 0 header"),
        ("type-3 first", "before any type 0 header"),
        ("amf bomb", "nested deeper"),
        ("publish before connect", "before connect"),
        ("unknown stream id", "unknown stream id 5"),
        ("too many streams", "more than 8 streams"),
    ];
    for ((name, reason), (ename, needle)) in reasons.iter().zip(expect) {
        assert_eq!(*name, ename);
        assert!(
            reason.contains(needle),
            "{name}: reason `{reason}` lacks `{needle}`"
        );
    }

    // The healthy pair is unaffected: every later frame arrives.
    for f in &all[50..] {
        pc.send_frame(f).unwrap();
    }
    pump(&mut pc, &mut ps, at(2));
    got.extend(frames(&pump(&mut vc, &mut vs, at(2))));
    assert!(ps.close_reason().is_none() && vs.close_reason().is_none());
    let last = got.len();
    assert_eq!(&got[last - 150..], &all[50..]);
    assert_eq!(engine.streams().len(), 1);
}

#[test]
fn type3_chunks_with_extended_timestamp_both_styles() {
    // Server machine directly; raw chunks after connect/createStream/publish.
    for repeat_extended in [true, false] {
        let mut s = ServerConnection::new(ServerConfig::default(), at(0), 3);
        let mut hs = arcly::rtmp::handshake::ClientHandshake::new(
            1,
            arcly::rtmp::handshake::HandshakeMode::Simple,
        );
        s.handle_input(at(0), &hs.poll_transmit().unwrap());
        let mut sb = Vec::new();
        while let Some(b) = s.poll_transmit() {
            sb.extend_from_slice(&b);
        }
        hs.handle_input(&sb).unwrap();
        s.handle_input(at(0), &hs.poll_transmit().unwrap());
        let mut input = BytesMut::new();
        input.put_slice(&raw::connect("live"));
        input.put_slice(&raw::create_stream(2.0));
        input.put_slice(&raw::publish(1, "ext"));
        s.handle_input(at(1), &input);
        let mut token = None;
        while let Some(e) = s.poll_event() {
            if let ServerEvent::PublishRequest { token: t, .. } = e {
                token = Some(t);
            }
        }
        s.accept_publish(token.unwrap());

        let ts: u32 = 0x0123_4567; // needs the extended timestamp field
        let config = video_config(i64::from(ts));
        let body = arcly::rtmp::flv::frame_to_tag_body(&config);
        let frame = video_frame(0, i64::from(ts) + 40, true, 700);
        let fbody = arcly::rtmp::flv::frame_to_tag_body(&frame);
        let mut input = BytesMut::new();
        input.put_slice(
            &encode_message(
                &RawMessage {
                    csid: 7,
                    timestamp: ts,
                    type_id: 9,
                    stream_id: 1,
                    payload: body,
                },
                128,
            )
            .unwrap(),
        );
        // The frame: type-0 with extended timestamp, then type-3 chunks that
        // repeat it (spec, FMS) or omit it (some encoders).
        let fts = ts + 40;
        let mut first = true;
        for piece in fbody.chunks(128) {
            if first {
                input.put_slice(&[0x07, 0xFF, 0xFF, 0xFF]);
                input.put_uint(fbody.len() as u64, 3);
                input.put_u8(9);
                input.put_u32_le(1);
                input.put_u32(fts);
                first = false;
            } else {
                input.put_u8(0xC7);
                if repeat_extended {
                    input.put_u32(fts);
                }
            }
            input.put_slice(piece);
        }
        s.handle_input(at(2), &input);
        let got: Vec<_> = std::iter::from_fn(|| s.poll_event())
            .filter_map(|e| match e {
                ServerEvent::Frame(f) => Some(f),
                ServerEvent::Closed(r) => panic!("closed: {r}"),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            vec![config.clone(), frame.clone()],
            "repeat_extended={repeat_extended}"
        );
    }
}

#[test]
fn handshake_timeout_and_idle_timeout_close() {
    let factory = RtmpSessionFactory::allow_all(Engine::with_defaults()).with_config(
        ServerConfig::default().with_handshake_timeout(std::time::Duration::from_secs(5)),
    );
    let mut s = factory.session(peer(30), at(0), 30);
    s.handle_input(at(10), &[3]); // only C0
    let t = s.poll_timeout().unwrap();
    assert_eq!(t, at(5000));
    s.handle_timeout(at(4999));
    assert!(s.close_reason().is_none());
    s.handle_timeout(t);
    assert_eq!(s.close_reason(), Some(&CloseReason::IdleTimeout));
}

mod random_input {
    use super::*;
    use proptest::prelude::*;

    /// A valid connect + createStream + publish prefix, as raw chunks.
    fn prefix() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&raw::connect("live"));
        v.extend_from_slice(&raw::create_stream(2.0));
        v.extend_from_slice(&raw::publish(1, "fuzz"));
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Arbitrary bytes after the handshake (alone, or after a valid
        /// publish) never panic, and the machine either stays up or closes
        /// with a reason; split points do not matter.
        #[test]
        fn arbitrary_bytes_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 1..3000),
            with_prefix in any::<bool>(),
            split in 1usize..700,
        ) {
            let factory = RtmpSessionFactory::allow_all(Engine::with_defaults());
            let mut input = if with_prefix { prefix() } else { Vec::new() };
            input.extend_from_slice(&tail);
            let mut whole = factory.session(peer(40), at(0), 40);
            raw::handshake(&mut whole, at(0));
            whole.handle_input(at(1), &input);
            let factory2 = RtmpSessionFactory::allow_all(Engine::with_defaults());
            let mut parts = factory2.session(peer(41), at(0), 41);
            raw::handshake(&mut parts, at(0));
            for c in input.chunks(split) {
                parts.handle_input(at(1), c);
            }
            let mut out = Vec::new();
            whole.poll_transmit(&mut out);
            parts.poll_transmit(&mut out);
            prop_assert_eq!(whole.close_reason(), parts.close_reason());
            if let Some(r) = whole.close_reason() {
                prop_assert!(matches!(r, CloseReason::ProtocolError(t) if !t.to_string().is_empty()));
            }
        }

        /// Arbitrary bytes as the handshake.
        #[test]
        fn arbitrary_handshake_never_panics(data in proptest::collection::vec(any::<u8>(), 1..4000)) {
            let factory = RtmpSessionFactory::allow_all(Engine::with_defaults());
            let mut s = factory.session(peer(42), at(0), 42);
            s.handle_input(at(1), &data);
            let mut out = Vec::new();
            s.poll_transmit(&mut out);
            if data.first().is_some_and(|v| *v != 3) {
                prop_assert!(s.close_reason().is_some());
            }
        }
    }
}

/// The largest legal inbound chunk size (2^31-1, RTMP spec §5.4.1) is
/// accepted and costs no memory up front; messages still flow.
#[test]
fn max_legal_chunk_size_is_accepted() {
    let factory = RtmpSessionFactory::allow_all(Engine::with_defaults());
    let mut s = factory.session(peer(50), at(0), 50);
    raw::handshake(&mut s, at(0));
    let mut input = BytesMut::new();
    input.put_slice(&set_chunk_size_raw(0x7FFF_FFFF));
    // One 300-byte command now fits a single chunk.
    let body = arcly::rtmp::amf::encode_values(&[
        arcly::rtmp::amf::Amf0Value::String("connect".into()),
        arcly::rtmp::amf::Amf0Value::Number(1.0),
        arcly::rtmp::amf::Amf0Value::object([
            ("app", arcly::rtmp::amf::Amf0Value::String("live".into())),
            ("pad", arcly::rtmp::amf::Amf0Value::String("x".repeat(300))),
        ]),
    ]);
    input.put_slice(
        &encode_message(
            &RawMessage {
                csid: 3,
                timestamp: 0,
                type_id: 20,
                stream_id: 0,
                payload: body,
            },
            0x7FFF_FFFF,
        )
        .unwrap(),
    );
    s.handle_input(at(1), &input);
    assert!(s.close_reason().is_none(), "{:?}", s.close_reason());
    let mut out = Vec::new();
    assert!(s.poll_transmit(&mut out) > 0, "connect answered");
}

/// A peer that keeps sending requests (here: ping requests, each answered
/// with a ping response) but never reads the answers is closed once the
/// unread replies pass `max_unread_output`; a peer whose answers are drained
/// as they come is not, however many requests it sends.
#[test]
fn peer_that_never_reads_its_replies_is_closed() {
    let config = ServerConfig::default().with_max_unread_output(64 << 10);
    let factory = RtmpSessionFactory::allow_all(Engine::with_defaults()).with_config(config);
    let pings: Vec<u8> = (0..200u32)
        .flat_map(|t| {
            let mut p = BytesMut::new();
            p.put_u16(6); // PingRequest (RTMP spec §7.1.7)
            p.put_u32(t);
            raw::message(2, 0, 4, 0, p.freeze()).to_vec()
        })
        .collect();

    for (port, drain) in [(60u16, false), (61, true)] {
        let mut s = factory.session(peer(port), at(0), u64::from(port));
        raw::handshake(&mut s, at(0));
        s.handle_input(at(1), &raw::connect("live"));
        let mut out = Vec::new();
        s.poll_transmit(&mut out);
        let mut batches = 0;
        while s.close_reason().is_none() && batches < 100 {
            s.handle_input(at(2), &pings);
            if drain {
                out.clear();
                s.poll_transmit(&mut out);
            }
            batches += 1;
        }
        if drain {
            assert!(
                s.close_reason().is_none(),
                "a reading peer was closed: {:?}",
                s.close_reason()
            );
        } else {
            let reason = format!("{:?}", s.close_reason());
            assert!(reason.contains("does not read"), "{reason}");
            // 200 pings answered per batch; the limit is hit within a few batches.
            assert!(batches < 100, "never closed");
        }
    }
}

/// The start of a message on chunk stream `csid` announcing `len` bytes,
/// followed by one chunk of `chunk` zero bytes (type-0 header, RTMP spec
/// §5.3.1.2.1; `csid` < 64). Never finished.
fn unfinished_message(csid: u8, stream_id: u32, len: u32, chunk: usize) -> Vec<u8> {
    let mut b = vec![csid];
    b.extend_from_slice(&[0, 0, 0]);
    b.extend_from_slice(&len.to_be_bytes()[1..]);
    b.push(9);
    b.extend_from_slice(&stream_id.to_le_bytes());
    b.resize(b.len() + chunk, 0);
    b
}

/// Issue 14 item 1: after `connect`, a chunk size of 4 MiB and an 8 MiB-1
/// message started on each of 60 chunk streams, one chunk each, never
/// finished. Before publish is admitted the connection may hold 1 MiB of
/// unfinished messages, an admitted publisher 10 MiB; past that it closes
/// with a protocol error saying so. Every connection together may hold the
/// shared budget; the one whose growth would pass it is closed, and a
/// closed or dropped connection gives its share back.
#[test]
fn unfinished_messages_are_bounded_per_connection_and_in_total() {
    const CHUNK: usize = 4 << 20;
    let config = ServerConfig::default().with_max_partial_bytes_total(20 << 20);
    let factory = RtmpSessionFactory::allow_all(Engine::with_defaults()).with_config(config);
    let budget = factory.partial_budget().clone();
    let attack = |s: &mut dyn StreamSession, stream_id: u32| {
        s.handle_input(at(1), &set_chunk_size_raw(CHUNK as u32));
        let mut started = 0;
        for csid in 4..64u8 {
            s.handle_input(
                at(2),
                &unfinished_message(csid, stream_id, (8 << 20) - 1, CHUNK),
            );
            if s.close_reason().is_some() {
                break;
            }
            started += 1;
        }
        started
    };

    // Connected, nothing published: closed within the first chunk.
    let mut s = factory.session(peer(70), at(0), 70);
    raw::handshake(&mut s, at(0));
    s.handle_input(at(1), &raw::connect("live"));
    assert_eq!(attack(&mut s, 0), 0);
    let reason = s
        .close_reason()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        reason.contains("over the per-connection budget of 1048576"),
        "{reason}"
    );
    assert_eq!(s.connection().partial_bytes(), 0);
    assert_eq!(budget.used(), 0);

    // Two admitted publishers: each may hold two 4 MiB chunks (8 MiB of its
    // 10 MiB); the third chunk closes it.
    let publisher = |port: u16, name: &str| {
        let mut s = factory.session(peer(port), at(0), u64::from(port));
        raw::handshake(&mut s, at(0));
        let mut m = BytesMut::new();
        m.put_slice(&raw::connect("live"));
        m.put_slice(&raw::create_stream(2.0));
        m.put_slice(&raw::publish(1, name));
        s.handle_input(at(1), &m);
        assert!(s.is_publishing(), "{:?}", s.close_reason());
        s
    };
    let mut a = publisher(71, "a");
    assert_eq!(attack(&mut a, 1), 2);
    let reason = a
        .close_reason()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        reason.contains("over the per-connection budget of 10485760"),
        "{reason}"
    );
    assert_eq!(budget.used(), 0);

    // Shared budget of 20 MiB: b and c hold 8 MiB each; d's first chunk
    // fills the total to 20 MiB, its second (within d's own 10 MiB) would
    // pass it.
    let mut b = publisher(72, "b");
    let mut c = publisher(73, "c");
    let mut d = publisher(74, "d");
    for s in [&mut b, &mut c] {
        s.handle_input(at(1), &set_chunk_size_raw(CHUNK as u32));
        for csid in 4..6u8 {
            s.handle_input(at(2), &unfinished_message(csid, 1, (8 << 20) - 1, CHUNK));
        }
        assert!(s.close_reason().is_none(), "{:?}", s.close_reason());
    }
    assert_eq!(budget.used(), 16 << 20);
    assert_eq!(attack(&mut d, 1), 1);
    let reason = d
        .close_reason()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(reason.contains("shared budget of 20971520"), "{reason}");
    assert_eq!(budget.used(), 16 << 20);
    drop(b);
    assert_eq!(budget.used(), 8 << 20);
    drop(c);
    assert_eq!(budget.used(), 0);
}

/// What the server sent, as text (AMF strings are plain bytes in it).
fn sent_text(s: &mut dyn StreamSession) -> String {
    let mut out = Vec::new();
    s.poll_transmit(&mut out);
    String::from_utf8_lossy(&out.concat()).into_owned()
}

/// Issue 14 item 4: app names and tcUrls with control characters or over
/// their maximum are refused at connect with `NetConnection.Connect.Rejected`;
/// stream names likewise at publish (`NetStream.Publish.BadName`) and play
/// (`NetStream.Play.Failed`). Each closes with a bad-request rejection.
#[test]
fn names_with_control_characters_or_too_long_are_refused() {
    use arcly::rtmp::amf::Amf0Value;
    use arcly::session::RejectCode;
    let factory = RtmpSessionFactory::allow_all(Engine::with_defaults());
    let long_app = "a".repeat(60_000);
    let long_url = format!("rtmp://localhost/{}", "u".repeat(3000));
    let connects: [(&str, String); 4] = [
        (
            "live\r\n2026-01-01 ERROR forged",
            "rtmp://localhost/live".into(),
        ),
        ("live\x1b[31m", "rtmp://localhost/live".into()),
        (&long_app, "rtmp://localhost/x".into()),
        ("live", long_url),
    ];
    for (port, (app, tc_url)) in (80u16..).zip(connects) {
        let mut s = factory.session(peer(port), at(0), u64::from(port));
        raw::handshake(&mut s, at(0));
        sent_text(&mut s);
        s.handle_input(
            at(1),
            &raw::command(
                0,
                &[
                    Amf0Value::String("connect".into()),
                    Amf0Value::Number(1.0),
                    Amf0Value::object([
                        ("app", Amf0Value::String(app.into())),
                        ("tcUrl", Amf0Value::String(tc_url)),
                    ]),
                ],
            ),
        );
        let text = sent_text(&mut s);
        assert!(
            text.contains("NetConnection.Connect.Rejected"),
            "{port}: {text:?}"
        );
        assert!(!text.contains("NetConnection.Connect.Success"), "{port}");
        let rejection = s.close_reason().and_then(|r| r.rejection());
        assert_eq!(
            rejection.map(|r| r.code),
            Some(RejectCode::BadRequest),
            "{port}"
        );
    }

    let names = [
        ("cam\r\nforged", "NetStream.Publish.BadName", true),
        ("cam\x1b]0;title\x07", "NetStream.Play.Failed", false),
        (&*"n".repeat(300), "NetStream.Publish.BadName", true),
        (
            &*format!("cam?{}", "q".repeat(300)),
            "NetStream.Play.Failed",
            false,
        ),
    ];
    for (port, (name, code, publish)) in (90u16..).zip(names) {
        let mut s = factory.session(peer(port), at(0), u64::from(port));
        raw::handshake(&mut s, at(0));
        let mut m = BytesMut::new();
        m.put_slice(&raw::connect("live"));
        m.put_slice(&raw::create_stream(2.0));
        if publish {
            m.put_slice(&raw::publish(1, name));
        } else {
            m.put_slice(&raw::command(
                1,
                &[
                    Amf0Value::String("play".into()),
                    Amf0Value::Number(0.0),
                    Amf0Value::Null,
                    Amf0Value::String(name.into()),
                ],
            ));
        }
        s.handle_input(at(1), &m);
        let text = sent_text(&mut s);
        assert!(text.contains(code), "{port}: {text:?}");
        let rejection = s.close_reason().and_then(|r| r.rejection());
        assert_eq!(
            rejection.map(|r| r.code),
            Some(RejectCode::BadRequest),
            "{port}"
        );
        assert!(!s.is_publishing() && !s.is_playing());
    }
}
