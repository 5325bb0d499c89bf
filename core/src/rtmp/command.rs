//! Typed RTMP command and data messages (RTMP spec §7.1.1, §7.1.2, §7.2).
//!
//! * [`decode_command`] turns the body of a command message (type 20 AMF0,
//!   type 17 AMF3 wrapper) into a [`Command`]: NetConnection commands
//!   (RTMP spec §7.2.1), NetStream commands (§7.2.2), the FMLE additions
//!   (`releaseStream`, `FCPublish`, `FCUnpublish`) and, for the client side,
//!   `_result` / `_error` / `onStatus`. A command this crate does not know is
//!   [`Command::Unknown`], never an error, so it cannot end a session.
//! * [`decode_data`] turns a data message (type 18 AMF0, type 15 AMF3) into a
//!   [`DataMessage`]; `@setDataFrame` / `onMetaData` become a [`Metadata`]
//!   that a server keeps and replays with [`Metadata::to_on_metadata`].
//! * [`response`] builds what a server sends, [`request`] what a client sends.
//!   Every builder returns the message body; the caller picks the message
//!   stream id (0 for NetConnection, the stream id for NetStream) and the
//!   message type ([`MSG_COMMAND_AMF0`] or [`MSG_DATA_AMF0`]).
//! * [`StreamName`] splits `cam?token=x` into name and query, [`TcUrl`] parses
//!   `rtmp://host:port/app?query`, so that the query reaches the admission
//!   decision.
//!
//! Decoding is bounded by [`DecodeLimits`] and never panics.

use core::fmt;

use bytes::Bytes;

use super::amf::{encode_values, Amf0Decoder, Amf0Value, AmfError, DecodeLimits, Properties};

/// Message type id of an AMF0 command message (RTMP spec §7.1.1).
pub const MSG_COMMAND_AMF0: u8 = 20;
/// Message type id of an AMF3 command message (RTMP spec §7.1.1).
pub const MSG_COMMAND_AMF3: u8 = 17;
/// Message type id of an AMF0 data message (RTMP spec §7.1.2).
pub const MSG_DATA_AMF0: u8 = 18;
/// Message type id of an AMF3 data message (RTMP spec §7.1.2).
pub const MSG_DATA_AMF3: u8 = 15;

/// Why a command or data message could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The AMF body is malformed or exceeds the decode limits.
    #[error("bad AMF in command/data message: {0}")]
    Amf(#[from] AmfError),
    /// The message type is not 20/17 (command) or 18/15 (data).
    #[error("message type {0} is not a command/data message of the expected kind")]
    WrongMessageType(u8),
    /// The body holds no value at all.
    #[error("empty command/data message")]
    Empty,
    /// The first value (the command or handler name) is not a string
    /// (RTMP spec §7.1.1).
    #[error("command/data name is not a string")]
    NameNotString,
    /// A known command lacks an argument it cannot do without.
    #[error("{command}: missing or invalid {field}")]
    MissingField {
        /// The command name.
        command: &'static str,
        /// The argument.
        field: &'static str,
    },
}

/// A stream name with its query string split off: `cam?token=x` →
/// name `cam`, query `token=x`. The query is kept for the admission
/// decision, never dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct StreamName {
    /// The name before the first `?`.
    pub name: String,
    /// The text after the first `?` (without it), if there was a `?`.
    pub query: Option<String>,
}

impl StreamName {
    /// Splits `raw` at its first `?`.
    pub fn parse(raw: &str) -> StreamName {
        let (name, query) = split_query(raw);
        StreamName {
            name: name.to_owned(),
            query: query.map(str::to_owned),
        }
    }

    /// The value of the first `key=value` pair named `key` in the query
    /// (no percent-decoding).
    pub fn query_param(&self, key: &str) -> Option<&str> {
        query_param(self.query.as_deref()?, key)
    }
}

impl fmt::Display for StreamName {
    /// The raw form, `name` or `name?query`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.query {
            Some(q) => write!(f, "{}?{}", self.name, q),
            None => f.write_str(&self.name),
        }
    }
}

/// Splits `raw` at its first `?` into (before, after).
pub fn split_query(raw: &str) -> (&str, Option<&str>) {
    match raw.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (raw, None),
    }
}

/// The value of the first `key=value` pair named `key` in a `&`-separated
/// query (a bare `key` yields `""`). No percent-decoding.
pub fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == key => Some(v),
            None if pair == key => Some(""),
            _ => None,
        })
}

/// A parsed `tcUrl` (RTMP spec §7.2.1.1): `rtmp://host[:port]/app[?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcUrl {
    /// `rtmp`, `rtmps`, `rtmpt`, … (lower-cased).
    pub scheme: String,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// The path after the host, without the leading `/` and the query
    /// (may contain `/`, e.g. `live/sub`).
    pub app: String,
    /// The query string after `?`, if any.
    pub query: Option<String>,
}

impl TcUrl {
    /// Parses a tcUrl; `None` if it has no `scheme://` or the port is not a number.
    pub fn parse(url: &str) -> Option<TcUrl> {
        let (scheme, rest) = url.split_once("://")?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (rest.get(..i)?, rest.get(i..)?),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse().ok()?),
                None => None,
            };
            (h, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p.parse().ok()?)),
                None => (authority, None),
            }
        };
        let path = path.strip_prefix('/').unwrap_or(path);
        let (app, query) = split_query(path);
        Some(TcUrl {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_owned(),
            port,
            app: app.trim_end_matches('/').to_owned(),
            query: query.map(str::to_owned),
        })
    }
}

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

/// The information object of `onStatus`, `_result` or `_error`
/// (RTMP spec §7.2.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Transaction id (0 for onStatus).
    pub transaction_id: f64,
    /// `level`: `status`, `warning` or `error`.
    pub level: String,
    /// `code`, e.g. `NetStream.Play.Start`.
    pub code: String,
    /// `description`, human readable.
    pub description: String,
    /// The whole information object, in order.
    pub info: Properties,
}

impl Status {
    fn from_info(transaction_id: f64, info: &Amf0Value) -> Status {
        let text = |k| {
            info.get(k)
                .and_then(Amf0Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        Status {
            transaction_id,
            level: text("level"),
            code: text("code"),
            description: text("description"),
            info: info.properties().map(<[_]>::to_vec).unwrap_or_default(),
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

/// NetConnection / NetStream status codes a server sends (RTMP spec §7.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    /// `NetConnection.Connect.Success` (status).
    ConnectSuccess,
    /// `NetConnection.Connect.Rejected` (error).
    ConnectRejected,
    /// `NetConnection.Connect.Closed` (status).
    ConnectClosed,
    /// `NetStream.Publish.Start` (status).
    PublishStart,
    /// `NetStream.Publish.BadName` (error): e.g. already publishing.
    PublishBadName,
    /// `NetStream.Publish.Denied` (error): admission refused.
    PublishDenied,
    /// `NetStream.Unpublish.Success` (status).
    UnpublishSuccess,
    /// `NetStream.Play.Reset` (status).
    PlayReset,
    /// `NetStream.Play.Start` (status).
    PlayStart,
    /// `NetStream.Play.Stop` (status).
    PlayStop,
    /// `NetStream.Play.StreamNotFound` (error).
    PlayStreamNotFound,
    /// `NetStream.Play.Failed` (error): e.g. admission refused.
    PlayFailed,
    /// `NetStream.Play.PublishNotify` (status): the publisher (re)started.
    PlayPublishNotify,
    /// `NetStream.Play.UnpublishNotify` (status): the publisher stopped.
    PlayUnpublishNotify,
    /// `NetStream.Data.Start` (status).
    DataStart,
    /// `NetStream.Pause.Notify` (status).
    PauseNotify,
    /// `NetStream.Unpause.Notify` (status).
    UnpauseNotify,
}

impl StatusCode {
    /// The `code` string.
    pub fn code(self) -> &'static str {
        match self {
            StatusCode::ConnectSuccess => "NetConnection.Connect.Success",
            StatusCode::ConnectRejected => "NetConnection.Connect.Rejected",
            StatusCode::ConnectClosed => "NetConnection.Connect.Closed",
            StatusCode::PublishStart => "NetStream.Publish.Start",
            StatusCode::PublishBadName => "NetStream.Publish.BadName",
            StatusCode::PublishDenied => "NetStream.Publish.Denied",
            StatusCode::UnpublishSuccess => "NetStream.Unpublish.Success",
            StatusCode::PlayReset => "NetStream.Play.Reset",
            StatusCode::PlayStart => "NetStream.Play.Start",
            StatusCode::PlayStop => "NetStream.Play.Stop",
            StatusCode::PlayStreamNotFound => "NetStream.Play.StreamNotFound",
            StatusCode::PlayFailed => "NetStream.Play.Failed",
            StatusCode::PlayPublishNotify => "NetStream.Play.PublishNotify",
            StatusCode::PlayUnpublishNotify => "NetStream.Play.UnpublishNotify",
            StatusCode::DataStart => "NetStream.Data.Start",
            StatusCode::PauseNotify => "NetStream.Pause.Notify",
            StatusCode::UnpauseNotify => "NetStream.Unpause.Notify",
        }
    }

    /// The `level` string: `status` or `error`.
    pub fn level(self) -> &'static str {
        match self {
            StatusCode::ConnectRejected
            | StatusCode::PublishBadName
            | StatusCode::PublishDenied
            | StatusCode::PlayStreamNotFound
            | StatusCode::PlayFailed => "error",
            _ => "status",
        }
    }
}

/// Builders for what a server sends (RTMP spec §7.2). Each returns a message
/// body; send command bodies as type 20 and data bodies as type 18.
pub mod response {
    use super::*;

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
}

/// Builders for what a client sends (RTMP spec §7.2). Each returns a
/// command body (type 20).
pub mod request {
    use super::*;

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
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::request::ConnectRequest;
    use super::*;
    use proptest::prelude::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("amf/testdata/", $name, ".bin"))
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
}
