//! Builders for what a client sends (RTMP spec §7.2). Each returns a
//! command body (type 20).

use bytes::Bytes;

use super::super::amf::{encode_values, Amf0Value, Properties};
use super::PublishType;

/// The fields of a client's `connect` command object.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRequest {
    /// `app`, e.g. `live` (may carry a query).
    pub app: String,
    /// `tcUrl`, e.g. `rtmp://host:1935/live`.
    pub tc_url: String,
    /// `flashVer`.
    pub flash_ver: String,
    /// `type` (`nonprivate`).
    pub connect_type: String,
    /// `objectEncoding` (0: AMF0).
    pub object_encoding: f64,
    /// `fourCcList` (E-RTMP v1); empty: not sent.
    pub fourcc_list: Vec<String>,
    /// Extra properties appended to the command object.
    pub extra: Properties,
}

impl ConnectRequest {
    /// A request like ffmpeg's: `type: nonprivate`, an FMLE `flashVer`,
    /// AMF0.
    pub fn new(app: impl Into<String>, tc_url: impl Into<String>) -> Self {
        ConnectRequest {
            app: app.into(),
            tc_url: tc_url.into(),
            flash_ver: "FMLE/3.0 (compatible; arcly)".into(),
            connect_type: "nonprivate".into(),
            object_encoding: 0.0,
            fourcc_list: Vec::new(),
            extra: Properties::new(),
        }
    }
}

/// `connect` (§7.2.1.1). Stream id 0.
pub fn connect(transaction_id: f64, req: &ConnectRequest) -> Bytes {
    let mut obj: Properties = vec![
        ("app".into(), req.app.as_str().into()),
        ("type".into(), req.connect_type.as_str().into()),
        ("flashVer".into(), req.flash_ver.as_str().into()),
        ("tcUrl".into(), req.tc_url.as_str().into()),
        ("objectEncoding".into(), req.object_encoding.into()),
    ];
    if !req.fourcc_list.is_empty() {
        obj.push((
            "fourCcList".into(),
            Amf0Value::StrictArray(
                req.fourcc_list
                    .iter()
                    .map(|s| Amf0Value::from(s.as_str()))
                    .collect(),
            ),
        ));
    }
    obj.extend(req.extra.iter().cloned());
    encode_values(&[
        "connect".into(),
        transaction_id.into(),
        Amf0Value::Object(obj),
    ])
}

fn with_name(command: &str, transaction_id: f64, name: &str) -> Bytes {
    encode_values(&[
        command.into(),
        transaction_id.into(),
        Amf0Value::Null,
        name.into(),
    ])
}

/// `createStream` (§7.2.1.3). Stream id 0.
pub fn create_stream(transaction_id: f64) -> Bytes {
    encode_values(&[
        "createStream".into(),
        transaction_id.into(),
        Amf0Value::Null,
    ])
}

/// `releaseStream` (FMLE). Stream id 0.
pub fn release_stream(transaction_id: f64, name: &str) -> Bytes {
    with_name("releaseStream", transaction_id, name)
}

/// `FCPublish` (FMLE). Stream id 0.
pub fn fc_publish(transaction_id: f64, name: &str) -> Bytes {
    with_name("FCPublish", transaction_id, name)
}

/// `FCUnpublish` (FMLE). Stream id 0.
pub fn fc_unpublish(transaction_id: f64, name: &str) -> Bytes {
    with_name("FCUnpublish", transaction_id, name)
}

/// `publish` (§7.2.2.6). Sent on the created stream id.
pub fn publish(transaction_id: f64, name: &str, publish_type: PublishType) -> Bytes {
    encode_values(&[
        "publish".into(),
        transaction_id.into(),
        Amf0Value::Null,
        name.into(),
        publish_type.as_str().into(),
    ])
}

/// `play` (§7.2.2.1) with start (-2: live or recorded), duration (-1:
/// all) and reset. Sent on the created stream id.
pub fn play(transaction_id: f64, name: &str, start: f64, duration: f64, reset: bool) -> Bytes {
    encode_values(&[
        "play".into(),
        transaction_id.into(),
        Amf0Value::Null,
        name.into(),
        start.into(),
        duration.into(),
        reset.into(),
    ])
}

/// `deleteStream` (§7.2.2.3). Sent on stream id 0 (ffmpeg) or the
/// stream itself; servers accept both.
pub fn delete_stream(transaction_id: f64, stream_id: u32) -> Bytes {
    encode_values(&[
        "deleteStream".into(),
        transaction_id.into(),
        Amf0Value::Null,
        f64::from(stream_id).into(),
    ])
}

/// `closeStream`. Sent on the stream id.
pub fn close_stream(transaction_id: f64) -> Bytes {
    encode_values(&["closeStream".into(), transaction_id.into(), Amf0Value::Null])
}

/// `getStreamLength`. Stream id 0.
pub fn get_stream_length(transaction_id: f64, name: &str) -> Bytes {
    with_name("getStreamLength", transaction_id, name)
}
