#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::super::amf::{encode_values, Amf0Value};
use super::request::ConnectRequest;
use super::*;
use proptest::prelude::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../amf/testdata/", $name, ".bin"))
    };
}

fn cmd(payload: &[u8]) -> Command {
    decode_command(MSG_COMMAND_AMF0, payload).unwrap()
}

fn cam() -> StreamName {
    StreamName {
        name: "cam".into(),
        query: Some("token=x".into()),
    }
}

#[test]
fn ffmpeg_publish_sequence() {
    let Command::Connect(c) = cmd(fixture!("ffmpeg_publish_connect")) else {
        panic!("not connect");
    };
    assert_eq!(c.transaction_id, 1.0);
    assert_eq!(c.app, "live");
    assert_eq!(c.connect_type.as_deref(), Some("nonprivate"));
    assert_eq!(
        c.flash_ver.as_deref(),
        Some("FMLE/3.0 (compatible; Lavf59.27.100)")
    );
    assert_eq!(c.tc_url.as_deref(), Some("rtmp://127.0.0.1:19351/live"));
    assert_eq!(c.object_encoding, 0.0);
    assert_eq!(c.command_object.len(), 4);
    assert_eq!(
        c.app_name(),
        StreamName {
            name: "live".into(),
            query: None
        }
    );
    assert_eq!(
        cmd(fixture!("ffmpeg_release_stream")),
        Command::ReleaseStream {
            transaction_id: 2.0,
            name: cam()
        }
    );
    assert_eq!(
        cmd(fixture!("ffmpeg_fcpublish")),
        Command::FcPublish {
            transaction_id: 3.0,
            name: cam()
        }
    );
    assert_eq!(
        cmd(fixture!("ffmpeg_create_stream")),
        Command::CreateStream {
            transaction_id: 4.0
        }
    );
    assert_eq!(
        cmd(fixture!("ffmpeg_publish")),
        Command::Publish {
            transaction_id: 5.0,
            name: cam(),
            publish_type: PublishType::Live
        }
    );
    let DataMessage::SetDataFrame(m) =
        decode_data(MSG_DATA_AMF0, fixture!("ffmpeg_set_data_frame")).unwrap()
    else {
        panic!("not @setDataFrame");
    };
    assert_eq!(m.number("width"), Some(320.0));
    assert_eq!(m.number("height"), Some(240.0));
    assert_eq!(m.number("videocodecid"), Some(7.0));
    assert_eq!(m.number("audiocodecid"), Some(10.0));
    assert_eq!(m.number("framerate"), Some(25.0));
    assert_eq!(
        m.get("encoder").and_then(Amf0Value::as_str),
        Some("Lavf59.27.100")
    );
    assert_eq!(m.properties.len(), 13);
}

#[test]
fn ffmpeg_play_sequence() {
    let Command::Connect(c) = cmd(fixture!("ffmpeg_play_connect")) else {
        panic!("not connect");
    };
    assert_eq!(c.app, "live");
    assert_eq!(c.flash_ver.as_deref(), Some("LNX 9,0,124,2"));
    assert_eq!(c.connect_type, None);
    assert_eq!(
        c.command_object
            .iter()
            .find(|(k, _)| k == "capabilities")
            .map(|(_, v)| v),
        Some(&Amf0Value::Number(15.0))
    );
    assert_eq!(
        cmd(fixture!("ffmpeg_get_stream_length")),
        Command::GetStreamLength {
            transaction_id: 3.0,
            name: cam()
        }
    );
    let Command::Play(p) = cmd(fixture!("ffmpeg_play")) else {
        panic!("not play");
    };
    assert_eq!(p.transaction_id, 4.0);
    assert_eq!(p.name, cam());
    assert_eq!(p.start, -2000.0);
    assert_eq!(p.start_mode(), PlayStart::LiveOrRecorded);
    assert_eq!(p.duration, -1.0);
    assert!(p.reset);
}

#[test]
fn gstreamer_publish_and_play() {
    let Command::Connect(c) = cmd(fixture!("gst_publish_connect")) else {
        panic!("not connect");
    };
    assert_eq!(c.flash_ver.as_deref(), Some("LNX 10,0,32,18"));
    assert_eq!(
        cmd(fixture!("gst_publish")),
        Command::Publish {
            transaction_id: 0.0,
            name: cam(),
            publish_type: PublishType::Live
        }
    );
    let Command::Play(p) = cmd(fixture!("gst_play")) else {
        panic!("not play");
    };
    assert_eq!((p.transaction_id, p.start), (0.0, -2.0));
    assert_eq!(p.start_mode(), PlayStart::LiveOrRecorded);
    let DataMessage::SetDataFrame(m) =
        decode_data(MSG_DATA_AMF0, fixture!("gst_set_data_frame")).unwrap()
    else {
        panic!("not @setDataFrame");
    };
    assert_eq!(m.number("videocodecid"), Some(7.0));
}

#[test]
fn metadata_is_kept_and_replayed_as_on_metadata() {
    let DataMessage::SetDataFrame(m) =
        decode_data(MSG_DATA_AMF0, fixture!("ffmpeg_set_data_frame")).unwrap()
    else {
        panic!("not @setDataFrame");
    };
    let body = m.to_on_metadata();
    // what players expect: "onMetaData" then an ECMA array
    let values = crate::rtmp::amf::decode_all(&body).unwrap();
    assert_eq!(values[0], Amf0Value::string("onMetaData"));
    assert!(matches!(values[1], Amf0Value::EcmaArray(_)));
    assert_eq!(
        decode_data(MSG_DATA_AMF0, &body).unwrap(),
        DataMessage::OnMetaData(m.clone())
    );
    // the client-side form decodes to the same metadata
    assert_eq!(
        decode_data(MSG_DATA_AMF0, &m.to_set_data_frame()).unwrap(),
        DataMessage::SetDataFrame(m.clone())
    );
    // and an AMF3 data message (type 15, format byte 0) as well
    let mut amf3 = vec![0x00];
    amf3.extend_from_slice(fixture!("ffmpeg_set_data_frame"));
    assert_eq!(
        decode_data(MSG_DATA_AMF3, &amf3).unwrap(),
        DataMessage::SetDataFrame(m)
    );
}

#[test]
fn other_data_messages() {
    assert_eq!(
        decode_data(MSG_DATA_AMF0, &encode_values(&["@clearDataFrame".into()])).unwrap(),
        DataMessage::ClearDataFrame
    );
    assert_eq!(
        decode_data(MSG_DATA_AMF0, &response::sample_access(true, false)).unwrap(),
        DataMessage::Other {
            name: "|RtmpSampleAccess".into(),
            values: vec![true.into(), false.into()]
        }
    );
    let direct = encode_values(&[
        "@setDataFrame".into(),
        Amf0Value::object([("width", 1.0.into())]),
    ]);
    let DataMessage::SetDataFrame(m) = decode_data(MSG_DATA_AMF0, &direct).unwrap() else {
        panic!()
    };
    assert_eq!(m.number("width"), Some(1.0));
    assert_eq!(
        decode_data(MSG_COMMAND_AMF0, &direct),
        Err(CommandError::WrongMessageType(MSG_COMMAND_AMF0))
    );
}

#[test]
fn amf3_command_wrapper() {
    // type 17: format byte 0x00, then AMF0 values; the connect object is
    // switched to AMF3 (dynamic anonymous object).
    let mut b = vec![0x00];
    b.extend_from_slice(&encode_values(&["connect".into(), 1.0.into()]));
    b.extend_from_slice(&[0x11, 0x0A, 0x0B, 0x01]);
    b.extend_from_slice(&[0x07, b'a', b'p', b'p', 0x06, 0x09, b'l', b'i', b'v', b'e']);
    b.extend_from_slice(&[0x1D]);
    b.extend_from_slice(b"objectEncoding");
    b.extend_from_slice(&[0x04, 0x03, 0x01]);
    let Command::Connect(c) = decode_command(MSG_COMMAND_AMF3, &b).unwrap() else {
        panic!("not connect");
    };
    assert_eq!(c.app, "live");
    assert_eq!(c.object_encoding, 3.0);
    // type 17 without the format byte is accepted too
    assert_eq!(
        decode_command(MSG_COMMAND_AMF3, fixture!("ffmpeg_create_stream")).unwrap(),
        Command::CreateStream {
            transaction_id: 4.0
        }
    );
}

#[test]
fn play_defaults_and_start_modes() {
    let p = |start: f64| match cmd(&request::play(0.0, "s", start, 10.0, false)) {
        Command::Play(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(p(-1000.0).start_mode(), PlayStart::LiveOnly);
    assert_eq!(p(-1.0).start_mode(), PlayStart::LiveOnly);
    assert_eq!(p(-2.0).start_mode(), PlayStart::LiveOrRecorded);
    assert_eq!(p(0.0).start_mode(), PlayStart::Recorded(0.0));
    assert_eq!(p(5.0).duration, 10.0);
    assert!(!p(5.0).reset);
    // only the name: start -2, duration -1, reset true
    let Command::Play(d) = cmd(&encode_values(&[
        "play".into(),
        0.0.into(),
        Amf0Value::Null,
        "x".into(),
    ])) else {
        panic!()
    };
    assert_eq!((d.start, d.duration, d.reset), (-2.0, -1.0, true));
    // reset sent as a number by old clients
    let Command::Play(n) = cmd(&encode_values(&[
        "play".into(),
        0.0.into(),
        Amf0Value::Null,
        "x".into(),
        (-2.0).into(),
        (-1.0).into(),
        0.0.into(),
    ])) else {
        panic!()
    };
    assert!(!n.reset);
}

#[test]
fn client_requests_parse_on_the_server() {
    let mut req = ConnectRequest::new("live?key=1", "rtmp://h:1935/live?key=1");
    req.fourcc_list = vec!["hvc1".into(), "av01".into(), "Opus".into()];
    let Command::Connect(c) = cmd(&request::connect(1.0, &req)) else {
        panic!()
    };
    assert_eq!(c.app, "live?key=1");
    assert_eq!(
        c.app_name(),
        StreamName {
            name: "live".into(),
            query: Some("key=1".into())
        }
    );
    assert_eq!(c.fourcc_list, vec!["hvc1", "av01", "Opus"]);
    assert_eq!(c.caps_ex(), None);
    let mut v2 = ConnectRequest::new("live", "rtmp://h/live");
    v2.extra = vec![
        ("capsEx".into(), 3.0.into()),
        (
            "videoFourCcInfoMap".into(),
            Amf0Value::object([
                ("hvc1", 7.0.into()),
                ("*", 4.0.into()),
                ("bad", Amf0Value::Null),
            ]),
        ),
    ];
    let Command::Connect(c2) = cmd(&request::connect(1.0, &v2)) else {
        panic!()
    };
    assert_eq!(c2.caps_ex(), Some(3));
    assert_eq!(
        c2.video_fourcc_info_map(),
        vec![("hvc1".to_owned(), 7), ("*".to_owned(), 4)]
    );
    assert!(c2.audio_fourcc_info_map().is_empty());
    assert_eq!(c.connect_type.as_deref(), Some("nonprivate"));
    assert_eq!(
        cmd(&request::create_stream(2.0)),
        Command::CreateStream {
            transaction_id: 2.0
        }
    );
    assert_eq!(
        cmd(&request::release_stream(3.0, "cam?token=x")),
        Command::ReleaseStream {
            transaction_id: 3.0,
            name: cam()
        }
    );
    assert_eq!(
        cmd(&request::fc_publish(4.0, "cam?token=x")),
        Command::FcPublish {
            transaction_id: 4.0,
            name: cam()
        }
    );
    assert_eq!(
        cmd(&request::fc_unpublish(5.0, "cam")),
        Command::FcUnpublish {
            transaction_id: 5.0,
            name: StreamName::parse("cam")
        }
    );
    assert_eq!(
        cmd(&request::publish(6.0, "cam?token=x", PublishType::Record)),
        Command::Publish {
            transaction_id: 6.0,
            name: cam(),
            publish_type: PublishType::Record
        }
    );
    assert_eq!(
        cmd(&request::delete_stream(7.0, 1)),
        Command::DeleteStream {
            transaction_id: 7.0,
            stream_id: 1
        }
    );
    assert_eq!(
        cmd(&request::close_stream(0.0)),
        Command::CloseStream {
            transaction_id: 0.0
        }
    );
    assert_eq!(
        cmd(&request::get_stream_length(8.0, "cam?token=x")),
        Command::GetStreamLength {
            transaction_id: 8.0,
            name: cam()
        }
    );
}

#[test]
fn server_responses_parse_on_the_client() {
    let r = cmd(&response::connect_result(1.0, 0.0));
    let Command::Result {
        transaction_id,
        command_object,
        ..
    } = &r
    else {
        panic!("{r:?}")
    };
    assert_eq!(*transaction_id, 1.0);
    assert_eq!(
        command_object.get("fmsVer").and_then(Amf0Value::as_str),
        Some(response::FMS_VERSION)
    );
    let st = r.result_status().unwrap();
    assert_eq!(
        (st.level.as_str(), st.code.as_str()),
        ("status", "NetConnection.Connect.Success")
    );
    assert_eq!(
        st.info
            .iter()
            .find(|(k, _)| k == "objectEncoding")
            .map(|(_, v)| v),
        Some(&Amf0Value::Number(0.0))
    );

    let enhanced = cmd(&response::connect_result_with(
        1.0,
        0.0,
        &[("capsEx".into(), 1.0.into())],
    ));
    let Command::Result { command_object, .. } = &enhanced else {
        panic!()
    };
    assert_eq!(command_object.get("capsEx"), Some(&Amf0Value::Number(1.0)));
    assert_eq!(command_object.get("mode"), Some(&Amf0Value::Number(1.0)));

    let e = cmd(&response::connect_error(1.0, "app not found"));
    assert!(matches!(e, Command::Error { .. }));
    let st = e.result_status().unwrap();
    assert_eq!(st.code, "NetConnection.Connect.Rejected");
    assert_eq!(st.level, "error");
    assert_eq!(st.description, "app not found");

    assert_eq!(
        cmd(&response::create_stream_result(4.0, 1)).result_stream_id(),
        Some(1)
    );
    assert_eq!(cmd(&response::empty_result(2.0)).result_stream_id(), None);
    assert_eq!(
        cmd(&response::get_stream_length_result(3.0, 0.0)).transaction_id(),
        3.0
    );

    for (code, level) in [
        (StatusCode::PublishStart, "status"),
        (StatusCode::PublishBadName, "error"),
        (StatusCode::PlayReset, "status"),
        (StatusCode::PlayStart, "status"),
        (StatusCode::PlayStreamNotFound, "error"),
        (StatusCode::PlayUnpublishNotify, "status"),
        (StatusCode::UnpublishSuccess, "status"),
    ] {
        let Command::OnStatus(s) = cmd(&response::on_status(code, "d", Some("cam"))) else {
            panic!()
        };
        assert_eq!(s.code, code.code());
        assert_eq!(s.level, level);
        assert_eq!(s.description, "d");
        assert_eq!(
            s.info.iter().find(|(k, _)| k == "details").map(|(_, v)| v),
            Some(&Amf0Value::string("cam"))
        );
    }
    assert!(matches!(
        cmd(&response::on_fc_publish("cam")),
        Command::Unknown { ref name, .. } if name == "onFCPublish"
    ));
    assert!(matches!(
        cmd(&response::on_bw_done()),
        Command::Unknown { ref name, .. } if name == "onBWDone"
    ));
    let err = cmd(&response::unknown_command_error(9.0, "foo"));
    assert_eq!(
        err.result_status().unwrap().code,
        "NetConnection.Call.Failed"
    );
}

#[test]
fn connect_result_matches_spec_bytes() {
    // "_result", 1, {fmsVer, capabilities 31, mode 1},
    // {level, code, description, objectEncoding}
    let b = response::connect_result(1.0, 0.0);
    let v = crate::rtmp::amf::decode_all(&b).unwrap();
    assert_eq!(v.len(), 4);
    assert_eq!(&b[..10], b"\x02\x00\x07_result");
    assert_eq!(v[2].get("capabilities"), Some(&Amf0Value::Number(31.0)));
    assert_eq!(
        v[3].get("code").and_then(Amf0Value::as_str),
        Some("NetConnection.Connect.Success")
    );
}

#[test]
fn unknown_commands_do_not_fail() {
    assert_eq!(
        cmd(&encode_values(&[
            "_checkbw".into(),
            5.0.into(),
            Amf0Value::Null
        ])),
        Command::Unknown {
            name: "_checkbw".into(),
            transaction_id: 5.0,
            arguments: vec![Amf0Value::Null]
        }
    );
    // a name alone: transaction id 0
    assert_eq!(cmd(&encode_values(&["x".into()])).transaction_id(), 0.0);
    // other NetStream commands
    assert_eq!(
        cmd(&encode_values(&[
            "pause".into(),
            0.0.into(),
            Amf0Value::Null,
            true.into(),
            1500.0.into()
        ])),
        Command::Pause {
            transaction_id: 0.0,
            pause: true,
            position_ms: 1500.0
        }
    );
    assert_eq!(
        cmd(&encode_values(&[
            "receiveVideo".into(),
            0.0.into(),
            Amf0Value::Null,
            false.into()
        ])),
        Command::ReceiveVideo {
            transaction_id: 0.0,
            enabled: false
        }
    );
    assert_eq!(
        cmd(&encode_values(&[
            "receiveAudio".into(),
            0.0.into(),
            Amf0Value::Null,
            true.into()
        ])),
        Command::ReceiveAudio {
            transaction_id: 0.0,
            enabled: true
        }
    );
    assert_eq!(
        cmd(&encode_values(&[
            "seek".into(),
            0.0.into(),
            Amf0Value::Null,
            20.0.into()
        ])),
        Command::Seek {
            transaction_id: 0.0,
            position_ms: 20.0
        }
    );
    let Command::Play2 { parameters, .. } = cmd(&encode_values(&[
        "play2".into(),
        0.0.into(),
        Amf0Value::Null,
        Amf0Value::object([("streamName", "hd".into())]),
    ])) else {
        panic!()
    };
    assert_eq!(parameters, vec![("streamName".into(), "hd".into())]);
}

#[test]
fn malformed_command_messages() {
    assert_eq!(
        decode_command(MSG_COMMAND_AMF0, &[]),
        Err(CommandError::Empty)
    );
    assert_eq!(
        decode_command(MSG_COMMAND_AMF3, &[0x00]),
        Err(CommandError::Empty)
    );
    assert_eq!(
        decode_command(MSG_COMMAND_AMF0, &encode_values(&[1.0.into()])),
        Err(CommandError::NameNotString)
    );
    assert_eq!(
        decode_command(MSG_DATA_AMF0, fixture!("ffmpeg_publish")),
        Err(CommandError::WrongMessageType(MSG_DATA_AMF0))
    );
    let full = fixture!("ffmpeg_publish_connect");
    // cut after the name or the transaction id: a connect without object
    for cut in [10, 19] {
        let Ok(Command::Connect(c)) = decode_command(MSG_COMMAND_AMF0, &full[..cut]) else {
            panic!("cut {cut}")
        };
        assert_eq!(c.app, "");
    }
    // cut anywhere else: truncated
    for cut in (1..full.len()).filter(|c| ![10, 19].contains(c)) {
        assert!(
            matches!(
                decode_command(MSG_COMMAND_AMF0, &full[..cut]),
                Err(CommandError::Amf(AmfError::Truncated { .. }))
            ),
            "cut {cut}"
        );
    }
    // an AMF nesting bomb as the connect command object
    let mut bomb = encode_values(&["connect".into(), 1.0.into()]).to_vec();
    for _ in 0..100_000 {
        bomb.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
    }
    assert_eq!(
        decode_command(MSG_COMMAND_AMF0, &bomb),
        Err(CommandError::Amf(AmfError::DepthExceeded { max: 32 }))
    );
}

#[test]
fn message_type_ids_agree_with_the_message_module() {
    use crate::rtmp::message::type_id;
    assert_eq!(MSG_COMMAND_AMF0, type_id::COMMAND_AMF0);
    assert_eq!(MSG_COMMAND_AMF3, type_id::COMMAND_AMF3);
    assert_eq!(MSG_DATA_AMF0, type_id::DATA_AMF0);
    assert_eq!(MSG_DATA_AMF3, type_id::DATA_AMF3);
}

#[test]
fn stream_names_and_tc_urls() {
    assert_eq!(StreamName::parse("cam?token=x"), cam());
    assert_eq!(StreamName::parse("cam").query, None);
    assert_eq!(StreamName::parse("cam?").query.as_deref(), Some(""));
    assert_eq!(StreamName::parse("a?b?c").query.as_deref(), Some("b?c"));
    assert_eq!(cam().to_string(), "cam?token=x");
    let n = StreamName::parse("cam?token=x&user=bob&flag");
    assert_eq!(n.query_param("user"), Some("bob"));
    assert_eq!(n.query_param("token"), Some("x"));
    assert_eq!(n.query_param("flag"), Some(""));
    assert_eq!(n.query_param("nope"), None);

    assert_eq!(
        TcUrl::parse("rtmp://127.0.0.1:1935/live?key=1"),
        Some(TcUrl {
            scheme: "rtmp".into(),
            host: "127.0.0.1".into(),
            port: Some(1935),
            app: "live".into(),
            query: Some("key=1".into())
        })
    );
    let t = TcUrl::parse("RTMPS://[::1]:443/live/sub/").unwrap();
    assert_eq!(
        (t.scheme.as_str(), t.host.as_str(), t.port, t.app.as_str()),
        ("rtmps", "::1", Some(443), "live/sub")
    );
    let t = TcUrl::parse("rtmp://example.com?x=1").unwrap();
    assert_eq!(
        (t.port, t.app.as_str(), t.query.as_deref()),
        (None, "", Some("x=1"))
    );
    assert_eq!(TcUrl::parse("example.com/live"), None);
    assert_eq!(TcUrl::parse("rtmp://h:notaport/live"), None);

    // query from tcUrl when app has none
    let mut req = ConnectRequest::new("live", "rtmp://h/live?key=2");
    req.extra.push(("x".into(), Amf0Value::Null));
    let Command::Connect(c) = cmd(&request::connect(1.0, &req)) else {
        panic!()
    };
    assert_eq!(c.app_name().query.as_deref(), Some("key=2"));
    assert_eq!(c.tc_url().unwrap().host, "h");
}

proptest! {
    #[test]
    fn decoding_arbitrary_messages_never_panics(
        t in prop_oneof![Just(15u8), Just(17), Just(18), Just(20), any::<u8>()],
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = decode_command(t, &bytes);
        let _ = decode_data(t, &bytes);
    }

    #[test]
    fn stream_name_display_round_trips(raw in "[a-z0-9?=&_/]{0,24}") {
        prop_assert_eq!(StreamName::parse(&raw).to_string(), raw);
    }
}
