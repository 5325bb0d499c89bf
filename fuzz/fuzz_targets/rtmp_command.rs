//! RTMP command and data message decoding (core/src/rtmp/command.rs) on
//! arbitrary bodies, plus every accessor the server uses on the result.
//!
//! Input: byte 0 = message type selector, rest = message body.
//! Invariants: no panic in decoding or in the accessors; a decoded name is
//! never longer than the body; stream-name and tcUrl parsing is lossless
//! (`StreamName` displays back to its input; a parsed tcUrl's app and query
//! are substrings of the URL).
#![no_main]

use arcly::rtmp::command::{
    decode_command, decode_data, split_query, Command, DataMessage, StreamName, TcUrl,
};
use libfuzzer_sys::fuzz_target;

fn check_name(raw: &str) {
    let n = StreamName::parse(raw);
    assert_eq!(n.to_string(), raw, "StreamName does not display back");
    let _ = n.query_param("token");
    let (a, q) = split_query(raw);
    assert_eq!(a, n.name);
    assert_eq!(q, n.query.as_deref());
    if let Some(t) = TcUrl::parse(raw) {
        assert!(raw.contains(&t.host));
        assert!(raw.contains(&t.app));
        if let Some(q) = &t.query {
            assert!(raw.contains(q.as_str()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [sel, body @ ..] = data else {
        return;
    };
    let (cmd_type, data_type) = if sel & 1 == 0 { (20, 18) } else { (17, 15) };
    if let Ok(c) = decode_command(cmd_type, body) {
        assert!(c.name().len() <= body.len());
        let _ = c.transaction_id();
        let _ = c.result_stream_id();
        let _ = c.result_status();
        match &c {
            Command::Connect(conn) => {
                let app = conn.app_name();
                check_name(&app.to_string());
                let _ = conn.tc_url();
                let _ = conn.caps_ex();
                let _ = conn.video_fourcc_info_map();
                let _ = conn.audio_fourcc_info_map();
                let _ = conn.property("app");
            }
            Command::Play(p) => {
                let _ = p.start_mode();
                check_name(&p.name.to_string());
            }
            Command::Publish { name, .. }
            | Command::FcPublish { name, .. }
            | Command::FcUnpublish { name, .. }
            | Command::ReleaseStream { name, .. }
            | Command::GetStreamLength { name, .. } => check_name(&name.to_string()),
            _ => {}
        }
    }
    if let Ok(d) = decode_data(data_type, body) {
        match d {
            DataMessage::SetDataFrame(m) | DataMessage::OnMetaData(m) => {
                let _ = m.number("width");
                let _ = m.get("videocodecid");
                let a = m.to_on_metadata();
                let b = m.to_set_data_frame();
                // Our own encodings decode as what they claim to be.
                assert!(matches!(
                    decode_data(18, &a),
                    Ok(DataMessage::OnMetaData(_))
                ));
                assert!(matches!(
                    decode_data(18, &b),
                    Ok(DataMessage::SetDataFrame(_))
                ));
            }
            DataMessage::ClearDataFrame | DataMessage::Other { .. } => {}
        }
    }
    if let Ok(s) = std::str::from_utf8(body) {
        check_name(s);
    }
});
