//! The RTMP client connection machine (RTMP spec §5, §7): handshake client
//! side, `connect`, `createStream`, then `publish` (sending frames) or `play`
//! (receiving them). Used by the load generator, tests and relays.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::amf::{encode_values, Amf0Value};
use super::chunk::RawMessage;
use super::command::{decode_command, decode_data, request, Command, DataMessage, PublishType};
use super::conn::{
    msg_type, Demuxer, Inbound, Wire, CSID_AUDIO, CSID_COMMAND, CSID_DATA, CSID_VIDEO,
};
use super::handshake::{ClientHandshake, HandshakeMode};
use super::message::{ProtocolControl, UserControl};
use super::{RtmpError, OUT_CHUNK_SIZE};
use crate::admission::{RejectCode, Rejection};
use crate::frame::{Frame, MediaKind};
use crate::peer_text::escaped;
use crate::session::{CloseReason, ProtocolError};
use crate::time::Instant;

/// Whether the client publishes or plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMode {
    /// `publish` the stream (RTMP spec §7.2.2.6) and send frames.
    Publish,
    /// `play` the stream (RTMP spec §7.2.2.1) and receive frames.
    Play,
}

/// Settings of a [`ClientConnection`].
///
/// `#[non_exhaustive]`: build it with [`ClientConfig::from_url`] and assign
/// fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The application (`live` of `rtmp://host/live/cam`).
    pub app: String,
    /// The `tcUrl` sent in `connect` (`rtmp://host/live`).
    pub tc_url: String,
    /// The stream name, query included (`cam?token=x`).
    pub stream: String,
    /// Publish or play.
    pub mode: ClientMode,
    /// Largest inbound message accepted, in bytes.
    pub max_message_len: u32,
    /// Time allowed from start until publishing or playing.
    pub connect_timeout: Duration,
    /// Handshake variant to send (RTMP spec §5.2 simple, or FP9 digest).
    pub handshake: HandshakeMode,
}

impl ClientConfig {
    /// Settings from `rtmp://host[:port]/app/stream[?query]`: the first path
    /// segment is the app, the rest the stream name.
    pub fn from_url(url: &str, mode: ClientMode) -> Result<Self, RtmpError> {
        let rest = url
            .strip_prefix("rtmp://")
            .ok_or_else(|| RtmpError::Protocol(format!("not an rtmp:// URL: {url}")))?;
        let (host, path) = rest
            .split_once('/')
            .ok_or_else(|| RtmpError::Protocol(format!("URL without an app: {url}")))?;
        let (app, stream) = path
            .split_once('/')
            .ok_or_else(|| RtmpError::Protocol(format!("URL without a stream name: {url}")))?;
        if host.is_empty() || app.is_empty() || stream.is_empty() {
            return Err(RtmpError::Protocol(format!("incomplete RTMP URL: {url}")));
        }
        Ok(ClientConfig {
            app: app.to_owned(),
            tc_url: format!("rtmp://{host}/{app}"),
            stream: stream.to_owned(),
            mode,
            max_message_len: 8 << 20,
            connect_timeout: Duration::from_secs(10),
            handshake: HandshakeMode::Digest,
        })
    }
}

/// What a [`ClientConnection`] reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// `connect` succeeded (`NetConnection.Connect.Success`).
    Connected,
    /// `NetStream.Publish.Start`: [`ClientConnection::send_frame`] may be used.
    Publishing,
    /// `NetStream.Play.Start`: frames follow.
    Playing,
    /// Any `onStatus` the server sent (RTMP spec §7.2.2).
    Status {
        /// `status`, `warning` or `error`.
        level: String,
        /// E.g. `NetStream.Play.UnpublishNotify`.
        code: String,
        /// Human-readable text.
        description: String,
    },
    /// A media frame (playing), timestamps in ms extended past the 32-bit wrap.
    Frame(Frame),
    /// Stream metadata (playing): the AMF0 body starting with `onMetaData`.
    Metadata(Bytes),
    /// User control StreamBegin (RTMP spec §7.1.7).
    StreamBegin,
    /// User control StreamEOF: the played stream ended.
    StreamEof,
    /// The connection is over; the last event.
    Closed(CloseReason),
}

#[derive(Debug)]
enum Phase {
    Handshake(Box<ClientHandshake>),
    Connecting,
    CreatingStream,
    Starting,
    Active,
    Closed,
}

const TID_CONNECT: f64 = 1.0;
const TID_CREATE_STREAM: f64 = 4.0;

/// A client-side RTMP connection, sans-IO.
///
/// Drive it like [`ServerConnection`](super::ServerConnection): feed input
/// and timeouts, drain [`poll_transmit`](Self::poll_transmit) and
/// [`poll_event`](Self::poll_event) until `None`. The handshake's C0+C1 is
/// queued by [`new`](Self::new).
///
/// Invariants: frames are only sent after `NetStream.Publish.Start`; an
/// `_error` or an `onStatus` of level `error` closes the connection with
/// [`CloseReason::Rejected`]; after [`ClientEvent::Closed`] input is ignored.
#[derive(Debug)]
pub struct ClientConnection {
    config: ClientConfig,
    phase: Phase,
    wire: Wire,
    events: VecDeque<ClientEvent>,
    stream_id: u32,
    started: Instant,
    demux: Demuxer,
    close_reason: Option<CloseReason>,
    frames_sent: u64,
}

impl ClientConnection {
    /// Starts a connection at `now`; `seed` feeds the handshake randomness.
    pub fn new(config: ClientConfig, now: Instant, seed: u64) -> Self {
        let mut hs = ClientHandshake::new(seed, config.handshake);
        let mut wire = Wire::new(config.max_message_len);
        while let Some(b) = hs.poll_transmit() {
            wire.push_raw(b);
        }
        ClientConnection {
            config,
            phase: Phase::Handshake(Box::new(hs)),
            wire,
            events: VecDeque::new(),
            stream_id: 0,
            started: now,
            demux: Demuxer::default(),
            close_reason: None,
            frames_sent: 0,
        }
    }

    /// Bytes read from the server; an empty slice means it closed.
    pub fn handle_input(&mut self, _now: Instant, data: &[u8]) {
        if self.is_closed() {
            return;
        }
        if data.is_empty() {
            self.close_with(CloseReason::PeerClosed);
            return;
        }
        if let Err(e) = self.input(data) {
            warn!(error = %e, "rtmp client protocol error, closing");
            self.close_with(CloseReason::ProtocolError(ProtocolError::Rtmp(e)));
        }
    }

    fn input(&mut self, data: &[u8]) -> Result<(), RtmpError> {
        let rest = match &mut self.phase {
            Phase::Handshake(hs) => {
                let consumed = hs.handle_input(data)?;
                while let Some(b) = hs.poll_transmit() {
                    self.wire.push_raw(b);
                }
                if !hs.is_done() {
                    return Ok(());
                }
                self.phase = Phase::Connecting;
                self.after_handshake();
                data.get(consumed..).unwrap_or_default()
            }
            Phase::Closed => return Ok(()),
            _ => data,
        };
        if rest.is_empty() {
            return Ok(());
        }
        self.wire.feed(rest);
        while !self.is_closed() {
            match self.wire.next()? {
                None => break,
                Some(Inbound::UserControl(UserControl::StreamBegin(_))) => {
                    self.events.push_back(ClientEvent::StreamBegin);
                }
                Some(Inbound::UserControl(UserControl::StreamEof(_))) => {
                    self.events.push_back(ClientEvent::StreamEof);
                }
                Some(Inbound::UserControl(_)) => {}
                Some(Inbound::Message(m)) => self.message(m)?,
            }
        }
        Ok(())
    }

    fn after_handshake(&mut self) {
        self.wire
            .send_control(&ProtocolControl::SetChunkSize(OUT_CHUNK_SIZE));
        let req = request::ConnectRequest::new(self.config.app.clone(), self.config.tc_url.clone());
        self.command(0, request::connect(TID_CONNECT, &req));
    }

    fn command(&mut self, stream_id: u32, body: Bytes) {
        self.wire
            .send(CSID_COMMAND, 0, msg_type::COMMAND_AMF0, stream_id, body);
    }

    fn message(&mut self, m: RawMessage) -> Result<(), RtmpError> {
        match m.type_id {
            msg_type::COMMAND_AMF0 | msg_type::COMMAND_AMF3 => {
                let cmd = decode_command(m.type_id, &m.payload)?;
                self.on_command(cmd)
            }
            msg_type::DATA_AMF0 | msg_type::DATA_AMF3 => {
                match decode_data(m.type_id, &m.payload)? {
                    DataMessage::OnMetaData(md) | DataMessage::SetDataFrame(md) => {
                        self.events
                            .push_back(ClientEvent::Metadata(md.to_on_metadata()));
                    }
                    DataMessage::ClearDataFrame | DataMessage::Other { .. } => {}
                }
                Ok(())
            }
            msg_type::AUDIO | msg_type::VIDEO => {
                if !matches!(self.phase, Phase::Active) || self.config.mode != ClientMode::Play {
                    return Ok(());
                }
                match self.demux.demux(m.type_id, m.timestamp, &m.payload) {
                    Ok(Some(f)) => self.events.push_back(ClientEvent::Frame(f)),
                    Ok(None) => {}
                    Err(e) => debug!(error = %e, "rtmp client dropped a media tag"),
                }
                Ok(())
            }
            msg_type::AGGREGATE => {
                for sub in super::message::split_aggregate(&m) {
                    let sub = sub?;
                    if matches!(
                        sub.type_id,
                        msg_type::AUDIO | msg_type::VIDEO | msg_type::DATA_AMF0
                    ) {
                        self.message(sub)?;
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_command(&mut self, cmd: Command) -> Result<(), RtmpError> {
        match cmd {
            Command::Result { transaction_id, .. } if transaction_id == TID_CONNECT => {
                if !matches!(self.phase, Phase::Connecting) {
                    return Ok(());
                }
                info!(app = %escaped(&self.config.app), "rtmp client connected");
                self.events.push_back(ClientEvent::Connected);
                self.wire
                    .send_control(&ProtocolControl::WindowAckSize(2_500_000));
                if self.config.mode == ClientMode::Publish {
                    let name = self.config.stream.clone();
                    self.command(0, request::release_stream(2.0, &name));
                    self.command(0, request::fc_publish(3.0, &name));
                }
                self.command(0, request::create_stream(TID_CREATE_STREAM));
                self.phase = Phase::CreatingStream;
                Ok(())
            }
            Command::Result { transaction_id, .. } if transaction_id == TID_CREATE_STREAM => {
                if !matches!(self.phase, Phase::CreatingStream) {
                    return Ok(());
                }
                self.stream_id = cmd
                    .result_stream_id()
                    .filter(|id| *id != 0)
                    .ok_or_else(|| {
                        RtmpError::Protocol("createStream result without a stream id".into())
                    })?;
                let name = self.config.stream.clone();
                match self.config.mode {
                    ClientMode::Publish => self.command(
                        self.stream_id,
                        request::publish(0.0, &name, PublishType::Live),
                    ),
                    ClientMode::Play => {
                        self.wire.send_user_control(&UserControl::SetBufferLength {
                            stream_id: self.stream_id,
                            buffer_ms: 1000,
                        });
                        self.command(self.stream_id, request::play(0.0, &name, -2.0, -1.0, true));
                    }
                }
                self.phase = Phase::Starting;
                Ok(())
            }
            Command::Error { .. } => {
                let st = cmd.result_status();
                let (code, description) = st.map(|s| (s.code, s.description)).unwrap_or_default();
                warn!(app = %escaped(&self.config.app), code = %escaped(&code), description = %escaped(&description), "rtmp client got _error");
                self.close_with(CloseReason::Rejected(Rejection::new(
                    reject_code(&code),
                    format!("{code}: {description}"),
                )));
                Ok(())
            }
            Command::OnStatus(st) => {
                debug!(level = %st.level, code = %st.code, description = %st.description, "rtmp client onStatus");
                let (level, code) = (st.level.clone(), st.code.clone());
                let reason = format!("{}: {}", st.code, st.description);
                self.events.push_back(ClientEvent::Status {
                    level: st.level,
                    code: st.code,
                    description: st.description,
                });
                if level == "error" {
                    self.close_with(CloseReason::Rejected(Rejection::new(
                        reject_code(&code),
                        reason,
                    )));
                } else if matches!(self.phase, Phase::Starting) {
                    if code == "NetStream.Publish.Start" && self.config.mode == ClientMode::Publish
                    {
                        self.phase = Phase::Active;
                        self.events.push_back(ClientEvent::Publishing);
                    } else if code == "NetStream.Play.Start" && self.config.mode == ClientMode::Play
                    {
                        self.phase = Phase::Active;
                        self.events.push_back(ClientEvent::Playing);
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Whether frames can be sent (publishing after `NetStream.Publish.Start`).
    pub fn is_publishing(&self) -> bool {
        matches!(self.phase, Phase::Active) && self.config.mode == ClientMode::Publish
    }

    /// Sends one frame while publishing; its FLV tag goes on the audio or
    /// video chunk stream with the dts as RTMP timestamp (mod 2^32).
    pub fn send_frame(&mut self, frame: &Frame) -> Result<(), RtmpError> {
        if !self.is_publishing() {
            return Err(RtmpError::Protocol(
                "send_frame while not publishing".into(),
            ));
        }
        let (csid, type_id) = match frame.kind() {
            MediaKind::Audio => (CSID_AUDIO, msg_type::AUDIO),
            MediaKind::Video => (CSID_VIDEO, msg_type::VIDEO),
        };
        let ts = frame.dts_in(1000) as u32;
        self.wire
            .send(csid, ts, type_id, self.stream_id, super::conn::mux(frame));
        self.frames_sent += 1;
        Ok(())
    }

    /// Sends stream metadata while publishing: `body` is the AMF0 body
    /// starting with `onMetaData`; it goes out as `@setDataFrame`.
    pub fn send_metadata(&mut self, body: &Bytes) -> Result<(), RtmpError> {
        if !self.is_publishing() {
            return Err(RtmpError::Protocol(
                "send_metadata while not publishing".into(),
            ));
        }
        let mut b =
            bytes::BytesMut::from(&encode_values(&[Amf0Value::string("@setDataFrame")])[..]);
        b.extend_from_slice(body);
        self.wire.send(
            CSID_DATA,
            0,
            msg_type::DATA_AMF0,
            self.stream_id,
            b.freeze(),
        );
        Ok(())
    }

    /// Frames sent so far.
    pub fn frames_sent(&self) -> u64 {
        self.frames_sent
    }

    /// Timers: the connect deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() || matches!(self.phase, Phase::Active) {
            return;
        }
        if now >= self.started + self.config.connect_timeout {
            warn!(app = %escaped(&self.config.app), "rtmp client connect timed out");
            self.close_with(CloseReason::IdleTimeout);
        }
    }

    /// The next deadline for [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Active | Phase::Closed => None,
            _ => Some(self.started + self.config.connect_timeout),
        }
    }

    /// The next buffer to write to the socket.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.wire.poll_transmit()
    }

    /// Bytes queued for transmit and not yet polled.
    pub fn pending_transmit(&self) -> usize {
        self.wire.pending()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Ends the session politely (FCUnpublish / deleteStream), then closes
    /// with [`CloseReason::LocalShutdown`].
    pub fn close(&mut self, _now: Instant) {
        if self.is_closed() {
            return;
        }
        if self.stream_id != 0 {
            if self.config.mode == ClientMode::Publish {
                let name = self.config.stream.clone();
                self.command(0, request::fc_unpublish(5.0, &name));
            }
            self.command(0, request::delete_stream(6.0, self.stream_id));
        }
        self.close_with(CloseReason::LocalShutdown);
    }

    /// Whether the connection is over.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Why the connection closed.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.close_reason.as_ref()
    }

    fn close_with(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        self.phase = Phase::Closed;
        self.close_reason = Some(reason.clone());
        self.events.push_back(ClientEvent::Closed(reason));
    }
}

/// The [`RejectCode`] for a server's refusal status code (RTMP spec §7.2.2).
fn reject_code(status: &str) -> RejectCode {
    match status {
        "NetStream.Play.StreamNotFound" => RejectCode::NotFound,
        _ => RejectCode::Forbidden,
    }
}
