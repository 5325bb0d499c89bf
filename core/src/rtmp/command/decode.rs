//! Decoding of command messages (RTMP spec §7.1.1, §7.2) into [`Command`]
//! and of data messages (§7.1.2) into [`DataMessage`], bounded by
//! [`DecodeLimits`].

use bytes::Bytes;

use super::super::amf::{encode_values, Amf0Decoder, Amf0Value, DecodeLimits, Properties};
use super::{
    CommandError, Status, StreamName, TcUrl, MSG_COMMAND_AMF0, MSG_COMMAND_AMF3, MSG_DATA_AMF0,
    MSG_DATA_AMF3,
};

/// The `connect` command (RTMP spec §7.2.1.1) with the well-known fields of
/// its command object pulled out.
#[derive(Debug, Clone, PartialEq)]
pub struct Connect {
    /// Transaction id (always 1 in practice).
    pub transaction_id: f64,
    /// The `app` field as sent; may carry a query (`live?key=1`), see
    /// [`Connect::app_name`].
    pub app: String,
    /// `tcUrl`, the URL the client connected to.
    pub tc_url: Option<String>,
    /// `flashVer`, e.g. `FMLE/3.0 (compatible; FMSc/1.0)`.
    pub flash_ver: Option<String>,
    /// `swfUrl`.
    pub swf_url: Option<String>,
    /// `pageUrl`.
    pub page_url: Option<String>,
    /// `type` (ffmpeg sends `nonprivate`).
    pub connect_type: Option<String>,
    /// `objectEncoding`: 0 (AMF0, the default) or 3 (AMF3).
    pub object_encoding: f64,
    /// `fourCcList` of Enhanced RTMP (E-RTMP v1): codecs the client supports.
    pub fourcc_list: Vec<String>,
    /// The whole command object, in order.
    pub command_object: Properties,
    /// Optional user arguments after the command object.
    pub arguments: Vec<Amf0Value>,
}

impl Connect {
    /// The application name with its query split off. The query comes from
    /// `app` (`live?key=1`) or, failing that, from `tcUrl`.
    pub fn app_name(&self) -> StreamName {
        let mut n = StreamName::parse(&self.app);
        if n.query.is_none() {
            n.query = self
                .tc_url
                .as_deref()
                .and_then(TcUrl::parse)
                .and_then(|t| t.query);
        }
        n.name = n.name.trim_end_matches('/').to_owned();
        n
    }

    /// The parsed `tcUrl`, if present and well-formed.
    pub fn tc_url(&self) -> Option<TcUrl> {
        TcUrl::parse(self.tc_url.as_deref()?)
    }

    /// A property of the command object by name.
    pub fn property(&self, key: &str) -> Option<&Amf0Value> {
        self.command_object
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// `capsEx` (E-RTMP v2): extended capability bits (reconnect 0x01,
    /// multitrack 0x02, ModEx 0x04, timestamp nano offset 0x08).
    pub fn caps_ex(&self) -> Option<u32> {
        self.property("capsEx")
            .and_then(Amf0Value::as_f64)
            .and_then(f64_to_u32)
    }

    /// `videoFourCcInfoMap` (E-RTMP v2): FourCC (or `*`) → capability bits
    /// (can decode 0x01, can encode 0x02, can forward 0x04).
    pub fn video_fourcc_info_map(&self) -> Vec<(String, u32)> {
        Self::info_map(self.property("videoFourCcInfoMap"))
    }

    /// `audioFourCcInfoMap` (E-RTMP v2), like
    /// [`video_fourcc_info_map`](Self::video_fourcc_info_map).
    pub fn audio_fourcc_info_map(&self) -> Vec<(String, u32)> {
        Self::info_map(self.property("audioFourCcInfoMap"))
    }

    fn info_map(v: Option<&Amf0Value>) -> Vec<(String, u32)> {
        v.and_then(Amf0Value::properties)
            .unwrap_or_default()
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_f64().and_then(f64_to_u32)?)))
            .collect()
    }
}

/// How a published stream is to be stored (RTMP spec §7.2.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublishType {
    /// Live only, nothing recorded (default; also used for unknown values).
    #[default]
    Live,
    /// Recorded, replacing any earlier recording.
    Record,
    /// Recorded, appended to an earlier recording.
    Append,
}

impl PublishType {
    /// Parses `live` / `record` / `append` (case-insensitive); anything else is
    /// [`PublishType::Live`].
    pub fn parse(s: &str) -> PublishType {
        if s.eq_ignore_ascii_case("record") {
            PublishType::Record
        } else if s.eq_ignore_ascii_case("append") {
            PublishType::Append
        } else {
            PublishType::Live
        }
    }

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            PublishType::Live => "live",
            PublishType::Record => "record",
            PublishType::Append => "append",
        }
    }
}

/// The `play` command (RTMP spec §7.2.2.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Play {
    /// Transaction id (0 in practice).
    pub transaction_id: f64,
    /// The stream name and its query.
    pub name: StreamName,
    /// Start as sent: -2 live-or-recorded (default), -1 live only, ≥ 0 a
    /// position in seconds. ffmpeg sends these ×1000 (-2000, -1000).
    pub start: f64,
    /// Duration: -1 until the end (default), 0 a single frame, > 0 seconds.
    pub duration: f64,
    /// Whether to flush previous playlists (default true).
    pub reset: bool,
}

/// What [`Play::start`] asks for (RTMP spec §7.2.2.1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PlayStart {
    /// Live if such a stream exists, else recorded (-2, -2000, or any other
    /// negative value).
    LiveOrRecorded,
    /// Live only (-1 or -1000).
    LiveOnly,
    /// Recorded, from this position (as sent).
    Recorded(f64),
}

impl Play {
    /// Interprets [`Play::start`].
    pub fn start_mode(&self) -> PlayStart {
        if self.start >= 0.0 {
            PlayStart::Recorded(self.start)
        } else if self.start == -1.0 || self.start == -1000.0 {
            PlayStart::LiveOnly
        } else {
            PlayStart::LiveOrRecorded
        }
    }
}

/// A decoded command message (RTMP spec §7.2).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `connect` (§7.2.1.1).
    Connect(Box<Connect>),
    /// `releaseStream` (FMLE): release a stream name before publishing.
    ReleaseStream {
        /// Transaction id.
        transaction_id: f64,
        /// Stream name.
        name: StreamName,
    },
    /// `FCPublish` (FMLE): announce a publish.
    FcPublish {
        /// Transaction id.
        transaction_id: f64,
        /// Stream name.
        name: StreamName,
    },
    /// `FCUnpublish` (FMLE): announce the end of a publish.
    FcUnpublish {
        /// Transaction id.
        transaction_id: f64,
        /// Stream name.
        name: StreamName,
    },
    /// `createStream` (§7.2.1.3).
    CreateStream {
        /// Transaction id, echoed in the `_result`.
        transaction_id: f64,
    },
    /// `publish` (§7.2.2.6).
    Publish {
        /// Transaction id.
        transaction_id: f64,
        /// Stream name and query.
        name: StreamName,
        /// `live` / `record` / `append`.
        publish_type: PublishType,
    },
    /// `play` (§7.2.2.1).
    Play(Play),
    /// `play2` (§7.2.2.2): switch bitrate; parameters as sent.
    Play2 {
        /// Transaction id.
        transaction_id: f64,
        /// The NetStreamPlayOptions object.
        parameters: Properties,
    },
    /// `deleteStream` (§7.2.2.3).
    DeleteStream {
        /// Transaction id.
        transaction_id: f64,
        /// The message stream id to delete.
        stream_id: u32,
    },
    /// `closeStream` (sent by some players before `deleteStream`).
    CloseStream {
        /// Transaction id.
        transaction_id: f64,
    },
    /// `getStreamLength` (sent by Flash players before play).
    GetStreamLength {
        /// Transaction id.
        transaction_id: f64,
        /// Stream name.
        name: StreamName,
    },
    /// `pause` (§7.2.2.8).
    Pause {
        /// Transaction id.
        transaction_id: f64,
        /// true: pause, false: resume.
        pause: bool,
        /// Stream time in milliseconds where it was paused / resumed.
        position_ms: f64,
    },
    /// `seek` (§7.2.2.7).
    Seek {
        /// Transaction id.
        transaction_id: f64,
        /// Target in milliseconds.
        position_ms: f64,
    },
    /// `receiveAudio` (§7.2.2.4).
    ReceiveAudio {
        /// Transaction id.
        transaction_id: f64,
        /// Whether to send audio.
        enabled: bool,
    },
    /// `receiveVideo` (§7.2.2.5).
    ReceiveVideo {
        /// Transaction id.
        transaction_id: f64,
        /// Whether to send video.
        enabled: bool,
    },
    /// `_result` (client side): the answer to a request.
    Result {
        /// The request's transaction id.
        transaction_id: f64,
        /// The command object (properties, or null).
        command_object: Amf0Value,
        /// The remaining values (information object, stream id, …).
        values: Vec<Amf0Value>,
    },
    /// `_error` (client side): the request failed.
    Error {
        /// The request's transaction id.
        transaction_id: f64,
        /// The command object (properties, or null).
        command_object: Amf0Value,
        /// The remaining values (usually an information object).
        values: Vec<Amf0Value>,
    },
    /// `onStatus` (client side, §7.2.2).
    OnStatus(Status),
    /// Any other command (`onBWDone`, `_checkbw`, `onFCPublish`, …). Must not
    /// end the session; answer `_error` only if `transaction_id` is non-zero.
    Unknown {
        /// The command name.
        name: String,
        /// Transaction id (0 when absent).
        transaction_id: f64,
        /// Every value after the transaction id.
        arguments: Vec<Amf0Value>,
    },
}

impl Command {
    /// The transaction id.
    pub fn transaction_id(&self) -> f64 {
        match self {
            Command::Connect(c) => c.transaction_id,
            Command::Play(p) => p.transaction_id,
            Command::OnStatus(s) => s.transaction_id,
            Command::ReleaseStream { transaction_id, .. }
            | Command::FcPublish { transaction_id, .. }
            | Command::FcUnpublish { transaction_id, .. }
            | Command::CreateStream { transaction_id }
            | Command::Publish { transaction_id, .. }
            | Command::Play2 { transaction_id, .. }
            | Command::DeleteStream { transaction_id, .. }
            | Command::CloseStream { transaction_id }
            | Command::GetStreamLength { transaction_id, .. }
            | Command::Pause { transaction_id, .. }
            | Command::Seek { transaction_id, .. }
            | Command::ReceiveAudio { transaction_id, .. }
            | Command::ReceiveVideo { transaction_id, .. }
            | Command::Result { transaction_id, .. }
            | Command::Error { transaction_id, .. }
            | Command::Unknown { transaction_id, .. } => *transaction_id,
        }
    }

    /// The command name as on the wire (for logs).
    pub fn name(&self) -> &str {
        match self {
            Command::Connect(_) => "connect",
            Command::ReleaseStream { .. } => "releaseStream",
            Command::FcPublish { .. } => "FCPublish",
            Command::FcUnpublish { .. } => "FCUnpublish",
            Command::CreateStream { .. } => "createStream",
            Command::Publish { .. } => "publish",
            Command::Play(_) => "play",
            Command::Play2 { .. } => "play2",
            Command::DeleteStream { .. } => "deleteStream",
            Command::CloseStream { .. } => "closeStream",
            Command::GetStreamLength { .. } => "getStreamLength",
            Command::Pause { .. } => "pause",
            Command::Seek { .. } => "seek",
            Command::ReceiveAudio { .. } => "receiveAudio",
            Command::ReceiveVideo { .. } => "receiveVideo",
            Command::Result { .. } => "_result",
            Command::Error { .. } => "_error",
            Command::OnStatus(_) => "onStatus",
            Command::Unknown { name, .. } => name,
        }
    }

    /// For a `_result` of `createStream`: the new stream id (the first
    /// number after the command object).
    pub fn result_stream_id(&self) -> Option<u32> {
        match self {
            Command::Result { values, .. } => values
                .iter()
                .find_map(Amf0Value::as_f64)
                .and_then(f64_to_u32),
            _ => None,
        }
    }

    /// For `_result` / `_error`: the information object (first object among
    /// the values) as a [`Status`].
    pub fn result_status(&self) -> Option<Status> {
        match self {
            Command::Result {
                transaction_id,
                values,
                ..
            }
            | Command::Error {
                transaction_id,
                values,
                ..
            } => values
                .iter()
                .find(|v| v.properties().is_some())
                .map(|info| Status::from_info(*transaction_id, info)),
            _ => None,
        }
    }
}

/// A non-negative integral number that fits `u32`.
fn f64_to_u32(n: f64) -> Option<u32> {
    if n.is_finite() && n >= 0.0 && n <= f64::from(u32::MAX) && n.fract() == 0.0 {
        Some(n as u32)
    } else {
        None
    }
}

/// The AMF0 part of a type-17/15 body: the leading format byte 0x00 is
/// skipped (RTMP spec §7.1.1; librtmp does the same), a body that starts with
/// a string marker directly is taken as is.
fn amf3_wrapper_body(payload: &[u8]) -> &[u8] {
    match payload.first() {
        Some(0x00) => payload.get(1..).unwrap_or_default(),
        _ => payload,
    }
}

/// Decodes all values of a command/data body and splits off the name.
fn decode_named(
    payload: &[u8],
    limits: DecodeLimits,
) -> Result<(String, Vec<Amf0Value>), CommandError> {
    let mut values = Amf0Decoder::with_limits(payload, limits).decode_all()?;
    if values.is_empty() {
        return Err(CommandError::Empty);
    }
    let name = match values.remove(0) {
        Amf0Value::String(s) | Amf0Value::LongString(s) => s,
        _ => return Err(CommandError::NameNotString),
    };
    Ok((name, values))
}

/// Decodes a command message body of type [`MSG_COMMAND_AMF0`] or
/// [`MSG_COMMAND_AMF3`] with the default [`DecodeLimits`].
pub fn decode_command(message_type: u8, payload: &[u8]) -> Result<Command, CommandError> {
    decode_command_with_limits(message_type, payload, DecodeLimits::DEFAULT)
}

/// [`decode_command`] with explicit limits.
pub fn decode_command_with_limits(
    message_type: u8,
    payload: &[u8],
    limits: DecodeLimits,
) -> Result<Command, CommandError> {
    let body = match message_type {
        MSG_COMMAND_AMF0 => payload,
        MSG_COMMAND_AMF3 => amf3_wrapper_body(payload),
        other => return Err(CommandError::WrongMessageType(other)),
    };
    let (name, values) = decode_named(body, limits)?;
    Ok(interpret_command(name, values))
}

/// Typed view of a named command (RTMP spec §7.2). Never fails: missing
/// arguments take their spec defaults (play start -2, duration -1, reset
/// true, publish type live), missing stream names are "" and a missing
/// transaction id is 0; unknown names become [`Command::Unknown`].
fn interpret_command(name: String, values: Vec<Amf0Value>) -> Command {
    let mut it = values.into_iter();
    let transaction_id = it.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
    let args: Vec<Amf0Value> = it.collect();
    // After the transaction id comes the command object (null for most
    // NetStream commands); tolerate clients that leave it out.
    let rest: &[Amf0Value] = match args.first() {
        Some(v) if v.is_null_or_undefined() || v.properties().is_some() => {
            args.get(1..).unwrap_or_default()
        }
        _ => &args,
    };
    let str_arg = |i: usize| rest.get(i).and_then(Amf0Value::as_str);
    let num_arg = |i: usize| rest.get(i).and_then(Amf0Value::as_f64);
    let bool_arg = |i: usize| match rest.get(i) {
        Some(Amf0Value::Boolean(b)) => Some(*b),
        Some(Amf0Value::Number(n)) => Some(*n != 0.0),
        _ => None,
    };
    let stream_name = |i: usize| StreamName::parse(str_arg(i).unwrap_or(""));
    match name.as_str() {
        "connect" => {
            let obj = args
                .first()
                .and_then(Amf0Value::properties)
                .unwrap_or_default();
            let get = |k: &str| obj.iter().find(|(key, _)| key == k).map(|(_, v)| v);
            let text = |k: &str| get(k).and_then(Amf0Value::as_str).map(str::to_owned);
            let fourcc_list = match get("fourCcList") {
                Some(Amf0Value::StrictArray(items)) => items
                    .iter()
                    .filter_map(Amf0Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            };
            Command::Connect(Box::new(Connect {
                transaction_id,
                app: text("app").unwrap_or_default(),
                tc_url: text("tcUrl"),
                flash_ver: text("flashVer").or_else(|| text("flashver")),
                swf_url: text("swfUrl"),
                page_url: text("pageUrl"),
                connect_type: text("type"),
                object_encoding: get("objectEncoding")
                    .and_then(Amf0Value::as_f64)
                    .unwrap_or(0.0),
                fourcc_list,
                command_object: obj.to_vec(),
                arguments: args.get(1..).unwrap_or_default().to_vec(),
            }))
        }
        "releaseStream" => Command::ReleaseStream {
            transaction_id,
            name: stream_name(0),
        },
        "FCPublish" => Command::FcPublish {
            transaction_id,
            name: stream_name(0),
        },
        "FCUnpublish" => Command::FcUnpublish {
            transaction_id,
            name: stream_name(0),
        },
        "createStream" => Command::CreateStream { transaction_id },
        "publish" => Command::Publish {
            transaction_id,
            name: stream_name(0),
            publish_type: str_arg(1).map(PublishType::parse).unwrap_or_default(),
        },
        "play" => Command::Play(Play {
            transaction_id,
            name: stream_name(0),
            start: num_arg(1).unwrap_or(-2.0),
            duration: num_arg(2).unwrap_or(-1.0),
            reset: bool_arg(3).unwrap_or(true),
        }),
        "play2" => Command::Play2 {
            transaction_id,
            parameters: rest
                .first()
                .and_then(Amf0Value::properties)
                .or_else(|| args.first().and_then(Amf0Value::properties))
                .unwrap_or_default()
                .to_vec(),
        },
        "deleteStream" => Command::DeleteStream {
            transaction_id,
            stream_id: num_arg(0).and_then(f64_to_u32).unwrap_or(0),
        },
        "closeStream" => Command::CloseStream { transaction_id },
        "getStreamLength" => Command::GetStreamLength {
            transaction_id,
            name: stream_name(0),
        },
        "pause" => Command::Pause {
            transaction_id,
            pause: bool_arg(0).unwrap_or(true),
            position_ms: num_arg(1).unwrap_or(0.0),
        },
        "seek" => Command::Seek {
            transaction_id,
            position_ms: num_arg(0).unwrap_or(0.0),
        },
        "receiveAudio" => Command::ReceiveAudio {
            transaction_id,
            enabled: bool_arg(0).unwrap_or(true),
        },
        "receiveVideo" => Command::ReceiveVideo {
            transaction_id,
            enabled: bool_arg(0).unwrap_or(true),
        },
        "_result" | "_error" => {
            let mut a = args.into_iter();
            let command_object = a.next().unwrap_or(Amf0Value::Null);
            let values = a.collect();
            if name == "_result" {
                Command::Result {
                    transaction_id,
                    command_object,
                    values,
                }
            } else {
                Command::Error {
                    transaction_id,
                    command_object,
                    values,
                }
            }
        }
        "onStatus" => {
            let info = args
                .iter()
                .rev()
                .find(|v| v.properties().is_some())
                .cloned()
                .unwrap_or(Amf0Value::Null);
            Command::OnStatus(Status::from_info(transaction_id, &info))
        }
        _ => Command::Unknown {
            name,
            transaction_id,
            arguments: args,
        },
    }
}

/// Stream metadata from `@setDataFrame` / `onMetaData` (RTMP spec §7.1.2,
/// FLV spec E.5 onMetaData): the properties as the publisher sent them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metadata {
    /// The properties in order (`width`, `height`, `videocodecid`,
    /// `framerate`, `audiocodecid`, `audiosamplerate`, `encoder`, …).
    pub properties: Properties,
}

impl Metadata {
    /// The first property named `key`.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// A numeric property.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Amf0Value::as_f64)
    }

    /// Sets `key` (replacing the first existing one) to `value`.
    pub fn set(&mut self, key: &str, value: Amf0Value) {
        match self.properties.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.properties.push((key.to_owned(), value)),
        }
    }

    /// The body of the `onMetaData` data message a server sends to players:
    /// the string `onMetaData` then an ECMA array of the properties (type 18).
    pub fn to_on_metadata(&self) -> Bytes {
        encode_values(&[
            Amf0Value::string("onMetaData"),
            Amf0Value::EcmaArray(self.properties.clone()),
        ])
    }

    /// The body of the `@setDataFrame` data message a publishing client
    /// sends: `@setDataFrame`, `onMetaData`, ECMA array (type 18).
    pub fn to_set_data_frame(&self) -> Bytes {
        encode_values(&[
            Amf0Value::string("@setDataFrame"),
            Amf0Value::string("onMetaData"),
            Amf0Value::EcmaArray(self.properties.clone()),
        ])
    }

    fn from_value(v: Option<&Amf0Value>) -> Metadata {
        Metadata {
            properties: v
                .and_then(Amf0Value::properties)
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
        }
    }
}

/// A decoded data message (RTMP spec §7.1.2).
#[derive(Debug, Clone, PartialEq)]
pub enum DataMessage {
    /// `@setDataFrame` `onMetaData` {…}: the publisher sets the metadata the
    /// server keeps and sends to players.
    SetDataFrame(Metadata),
    /// `onMetaData` {…} sent directly (some publishers; what players receive).
    OnMetaData(Metadata),
    /// `@clearDataFrame`: forget the kept metadata.
    ClearDataFrame,
    /// Anything else (`onCuePoint`, `onTextData`, `|RtmpSampleAccess`, …).
    Other {
        /// The handler name.
        name: String,
        /// The values after the name.
        values: Vec<Amf0Value>,
    },
}

/// Decodes a data message body of type [`MSG_DATA_AMF0`] or
/// [`MSG_DATA_AMF3`] with the default [`DecodeLimits`].
pub fn decode_data(message_type: u8, payload: &[u8]) -> Result<DataMessage, CommandError> {
    decode_data_with_limits(message_type, payload, DecodeLimits::DEFAULT)
}

/// [`decode_data`] with explicit limits.
pub fn decode_data_with_limits(
    message_type: u8,
    payload: &[u8],
    limits: DecodeLimits,
) -> Result<DataMessage, CommandError> {
    let body = match message_type {
        MSG_DATA_AMF0 => payload,
        MSG_DATA_AMF3 => amf3_wrapper_body(payload),
        other => return Err(CommandError::WrongMessageType(other)),
    };
    let (name, values) = decode_named(body, limits)?;
    Ok(match name.as_str() {
        "@setDataFrame" => match values.first().and_then(Amf0Value::as_str) {
            Some("onMetaData") => DataMessage::SetDataFrame(Metadata::from_value(values.get(1))),
            // `@setDataFrame` with the object directly (seen from some encoders).
            None if values.first().is_some_and(|v| v.properties().is_some()) => {
                DataMessage::SetDataFrame(Metadata::from_value(values.first()))
            }
            _ => DataMessage::Other { name, values },
        },
        "onMetaData" => DataMessage::OnMetaData(Metadata::from_value(values.first())),
        "@clearDataFrame" => DataMessage::ClearDataFrame,
        _ => DataMessage::Other { name, values },
    })
}
