//! Builders for what a server sends (RTMP spec §7.2). Each returns a message
//! body; send command bodies as type 20 and data bodies as type 18.

use bytes::Bytes;

use super::super::amf::{encode_values, Amf0Value, Properties};
use super::{Metadata, StatusCode};

/// `fmsVer` reported to clients.
pub const FMS_VERSION: &str = "FMS/3,0,1,123";

fn status_object(code: StatusCode, description: &str) -> Properties {
    vec![
        ("level".into(), code.level().into()),
        ("code".into(), code.code().into()),
        ("description".into(), description.into()),
    ]
}

/// `_result` to `connect` (§7.2.1.1): properties `fmsVer`,
/// `capabilities`, `mode`; information `NetConnection.Connect.Success`
/// with the client's `objectEncoding`. Stream id 0.
pub fn connect_result(transaction_id: f64, object_encoding: f64) -> Bytes {
    connect_result_with(transaction_id, object_encoding, &[])
}

/// [`connect_result`] with `extra` appended to the properties object,
/// e.g. the server's own `fourCcList` / `videoFourCcInfoMap` / `capsEx`
/// (E-RTMP v2, "Enhancing NetConnection connect Command").
pub fn connect_result_with(
    transaction_id: f64,
    object_encoding: f64,
    extra: &[(String, Amf0Value)],
) -> Bytes {
    let mut info = status_object(StatusCode::ConnectSuccess, "Connection succeeded.");
    info.push(("objectEncoding".into(), object_encoding.into()));
    let mut props: Properties = vec![
        ("fmsVer".into(), FMS_VERSION.into()),
        ("capabilities".into(), 31.0.into()),
        ("mode".into(), 1.0.into()),
    ];
    props.extend(extra.iter().cloned());
    encode_values(&[
        "_result".into(),
        transaction_id.into(),
        Amf0Value::Object(props),
        Amf0Value::Object(info),
    ])
}

/// `_error` to `connect`: `NetConnection.Connect.Rejected` with
/// `description`. Stream id 0.
pub fn connect_error(transaction_id: f64, description: &str) -> Bytes {
    error(transaction_id, StatusCode::ConnectRejected, description)
}

/// A generic `_error` with an information object (level, code,
/// description). Stream id 0.
pub fn error(transaction_id: f64, code: StatusCode, description: &str) -> Bytes {
    encode_values(&[
        "_error".into(),
        transaction_id.into(),
        Amf0Value::Null,
        Amf0Value::Object(status_object(code, description)),
    ])
}

/// `_error` for a command the server does not implement (only for a
/// non-zero transaction id). Stream id 0.
pub fn unknown_command_error(transaction_id: f64, name: &str) -> Bytes {
    encode_values(&[
        "_error".into(),
        transaction_id.into(),
        Amf0Value::Null,
        Amf0Value::object([
            ("level", "error".into()),
            ("code", "NetConnection.Call.Failed".into()),
            ("description", format!("unknown command {name}").into()),
        ]),
    ])
}

/// A plain `_result` (null, undefined), the reply to `releaseStream`,
/// `FCPublish`, `FCUnpublish`. Stream id 0.
pub fn empty_result(transaction_id: f64) -> Bytes {
    encode_values(&[
        "_result".into(),
        transaction_id.into(),
        Amf0Value::Null,
        Amf0Value::Undefined,
    ])
}

/// `_result` to `createStream` (§7.2.1.3) carrying the new stream id.
/// Stream id 0.
pub fn create_stream_result(transaction_id: f64, stream_id: u32) -> Bytes {
    encode_values(&[
        "_result".into(),
        transaction_id.into(),
        Amf0Value::Null,
        f64::from(stream_id).into(),
    ])
}

/// `_result` to `getStreamLength`: the duration in seconds (0 for live).
/// Stream id 0.
pub fn get_stream_length_result(transaction_id: f64, duration_secs: f64) -> Bytes {
    encode_values(&[
        "_result".into(),
        transaction_id.into(),
        Amf0Value::Null,
        duration_secs.into(),
    ])
}

/// `onStatus` (§7.2.2), transaction 0, null command object, information
/// object {level, code, description[, details]}. Sent on the NetStream's
/// message stream id. `details` is usually the stream name.
pub fn on_status(code: StatusCode, description: &str, details: Option<&str>) -> Bytes {
    let mut info = status_object(code, description);
    if let Some(d) = details {
        info.push(("details".into(), d.into()));
    }
    encode_values(&[
        "onStatus".into(),
        0.0.into(),
        Amf0Value::Null,
        Amf0Value::Object(info),
    ])
}

/// `onFCPublish` (FMLE) announcing `NetStream.Publish.Start` for `name`.
/// Stream id 0.
pub fn on_fc_publish(name: &str) -> Bytes {
    encode_values(&[
        "onFCPublish".into(),
        0.0.into(),
        Amf0Value::Null,
        Amf0Value::object([
            ("code", "NetStream.Publish.Start".into()),
            ("description", name.into()),
        ]),
    ])
}

/// `onFCUnpublish` (FMLE) announcing `NetStream.Unpublish.Success`.
/// Stream id 0.
pub fn on_fc_unpublish(name: &str) -> Bytes {
    encode_values(&[
        "onFCUnpublish".into(),
        0.0.into(),
        Amf0Value::Null,
        Amf0Value::object([
            ("code", "NetStream.Unpublish.Success".into()),
            ("description", name.into()),
        ]),
    ])
}

/// `onBWDone` (sent after the connect `_result` by FMS-compatible
/// servers). Stream id 0.
pub fn on_bw_done() -> Bytes {
    encode_values(&["onBWDone".into(), 0.0.into(), Amf0Value::Null])
}

/// Data message `|RtmpSampleAccess` (type 18) allowing players to read
/// raw audio / video samples. Sent on the play stream id.
pub fn sample_access(audio: bool, video: bool) -> Bytes {
    encode_values(&["|RtmpSampleAccess".into(), audio.into(), video.into()])
}

/// Data message `onStatus` `NetStream.Data.Start` (type 18), sent after
/// `NetStream.Play.Start` by FMS-compatible servers.
pub fn data_start() -> Bytes {
    encode_values(&[
        "onStatus".into(),
        Amf0Value::object([("code", StatusCode::DataStart.code().into())]),
    ])
}

/// Data message `onMetaData` + ECMA array (type 18); see
/// [`Metadata::to_on_metadata`].
pub fn on_metadata(metadata: &Metadata) -> Bytes {
    metadata.to_on_metadata()
}
