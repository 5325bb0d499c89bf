//! The RTMP server connection machine (RTMP spec §5, §7): handshake, chunk
//! stream, NetConnection and NetStream commands, media in from publishers
//! and out to players.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::chunk::{encode_message, ChunkLimits, RawMessage, SharedPartialBudget};
use super::command::{
    decode_command, decode_data, response, Command, Connect, DataMessage, Play, StatusCode,
    StreamName,
};
use super::conn::{self, msg_type, Demuxer, Inbound, Stash, Wire, CSID_COMMAND, CSID_DATA};
use super::handshake::ServerHandshake;
use super::message::{PeerBandwidthLimit, ProtocolControl, UserControl};
use super::{RtmpError, OUT_CHUNK_SIZE, PLAY_STREAM_ID};
use crate::admission::{RejectCode, Rejection};
use crate::engine::{EgressSlot, SharedFrame};
use crate::frame::{Frame, MediaKind};
use crate::log_limit::LogLimiter;
use crate::peer_text::{
    check_name, escaped, without_query, NameError, MAX_APP_LEN, MAX_STREAM_NAME_LEN, MAX_URL_LEN,
};
use crate::session::{CloseReason, ProtocolError};
use crate::time::Instant;

/// Log lines for connects and requests refused for their names (a peer can
/// cause them in a flood).
static NAME_REFUSED: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));

/// Settings of a [`ServerConnection`]. Every limit is enforced; exceeding one
/// closes the connection with a protocol error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Window Acknowledgement Size sent at connect (RTMP spec §5.4.4).
    pub window_ack_size: u32,
    /// Set Peer Bandwidth sent at connect (RTMP spec §5.4.5), limit type dynamic.
    pub peer_bandwidth: u32,
    /// Largest inbound message accepted, in bytes (the spec allows 2^24-1).
    pub max_message_len: u32,
    /// Largest number of message streams (createStream) open at once.
    pub max_streams: usize,
    /// Time allowed from accept until `connect` is answered.
    pub handshake_timeout: Duration,
    /// A connection that is not playing and receives nothing for this long is closed.
    pub idle_timeout: Duration,
    /// Input buffered while a publish/play decision is pending, in bytes.
    pub max_pending_input: usize,
    /// Replies (acks, pongs, command results) queued and not yet drained by
    /// the owner, in bytes. A peer whose requests push the queue past this
    /// (it sends but never reads) is closed with a protocol error. Media for
    /// players is bounded separately, before it is queued.
    pub max_unread_output: usize,
    /// Bytes a connection whose publish was admitted may hold in unfinished
    /// inbound messages, over all chunk streams together (RTMP spec §5.3;
    /// [`ChunkLimits::max_partial_bytes`](super::chunk::ChunkLimits::max_partial_bytes)).
    /// Default 10 MiB: one largest message plus room for the others. More
    /// closes the connection with a protocol error saying so.
    pub max_partial_bytes: usize,
    /// The same budget for every connection that is not (yet) an admitted
    /// publisher: players and connections before their publish is admitted
    /// send only commands. Default 1 MiB.
    pub max_partial_bytes_unpublished: usize,
    /// Unfinished inbound messages of all connections of one
    /// [`RtmpSessionFactory`](super::RtmpSessionFactory) together (a
    /// [`SharedPartialBudget`]); the
    /// connection whose growth would pass it is closed. Default 256 MiB.
    pub max_partial_bytes_total: usize,
}
/// Builder-style setters: the struct is `#[non_exhaustive]`, so other
/// crates start from its default (or constructor) value and chain these.
impl ServerConfig {
    /// Sets [`window_ack_size`](Self::window_ack_size).
    #[must_use]
    pub fn with_window_ack_size(mut self, window_ack_size: u32) -> Self {
        self.window_ack_size = window_ack_size;
        self
    }

    /// Sets [`peer_bandwidth`](Self::peer_bandwidth).
    #[must_use]
    pub fn with_peer_bandwidth(mut self, peer_bandwidth: u32) -> Self {
        self.peer_bandwidth = peer_bandwidth;
        self
    }

    /// Sets [`max_message_len`](Self::max_message_len).
    #[must_use]
    pub fn with_max_message_len(mut self, max_message_len: u32) -> Self {
        self.max_message_len = max_message_len;
        self
    }

    /// Sets [`max_streams`](Self::max_streams).
    #[must_use]
    pub fn with_max_streams(mut self, max_streams: usize) -> Self {
        self.max_streams = max_streams;
        self
    }

    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    #[must_use]
    pub fn with_handshake_timeout(mut self, handshake_timeout: Duration) -> Self {
        self.handshake_timeout = handshake_timeout;
        self
    }

    /// Sets [`idle_timeout`](Self::idle_timeout).
    #[must_use]
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Sets [`max_pending_input`](Self::max_pending_input).
    #[must_use]
    pub fn with_max_pending_input(mut self, max_pending_input: usize) -> Self {
        self.max_pending_input = max_pending_input;
        self
    }

    /// Sets [`max_unread_output`](Self::max_unread_output).
    #[must_use]
    pub fn with_max_unread_output(mut self, max_unread_output: usize) -> Self {
        self.max_unread_output = max_unread_output;
        self
    }

    /// Sets [`max_partial_bytes`](Self::max_partial_bytes).
    #[must_use]
    pub fn with_max_partial_bytes(mut self, max_partial_bytes: usize) -> Self {
        self.max_partial_bytes = max_partial_bytes;
        self
    }

    /// Sets [`max_partial_bytes_unpublished`](Self::max_partial_bytes_unpublished).
    #[must_use]
    pub fn with_max_partial_bytes_unpublished(
        mut self,
        max_partial_bytes_unpublished: usize,
    ) -> Self {
        self.max_partial_bytes_unpublished = max_partial_bytes_unpublished;
        self
    }

    /// Sets [`max_partial_bytes_total`](Self::max_partial_bytes_total).
    #[must_use]
    pub fn with_max_partial_bytes_total(mut self, max_partial_bytes_total: usize) -> Self {
        self.max_partial_bytes_total = max_partial_bytes_total;
        self
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            max_message_len: 8 << 20,
            max_streams: 8,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_pending_input: 4 << 20,
            max_unread_output: 16 << 20,
            max_partial_bytes: super::chunk::DEFAULT_MAX_PARTIAL_BYTES,
            max_partial_bytes_unpublished: 1 << 20,
            max_partial_bytes_total: 256 << 20,
        }
    }
}

/// Identifies one publish or play request until the application decides on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestToken(pub u64);

/// What a [`ServerConnection`] reports to its owner.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// The peer sent `connect` and got `NetConnection.Connect.Success`
    /// (RTMP spec §7.2.1.1).
    Connected {
        /// The application name, query string removed.
        app: String,
        /// The `tcUrl` the peer connected to (empty if it sent none).
        tc_url: String,
    },
    /// The peer wants to publish (RTMP spec §7.2.2.6). Answer with
    /// [`ServerConnection::accept_publish`] or [`ServerConnection::reject`];
    /// input is held until then.
    PublishRequest {
        /// The token to answer with.
        token: RequestToken,
        /// The application name (query removed).
        app: String,
        /// The stream name (query removed).
        stream_name: String,
        /// The query of the app and of the stream name joined by `&`, without `?`.
        query: String,
    },
    /// The peer wants to play (RTMP spec §7.2.2.1). Answer with
    /// [`ServerConnection::accept_play`] or [`ServerConnection::reject`].
    PlayRequest {
        /// The token to answer with.
        token: RequestToken,
        /// The application name (query removed).
        app: String,
        /// The stream name (query removed).
        stream_name: String,
        /// The query of the app and of the stream name joined by `&`, without `?`.
        query: String,
        /// `start` argument in seconds (-2: live or recorded, -1: live only).
        start: f64,
        /// `duration` argument in seconds (-1: until the end).
        duration: f64,
        /// `reset` argument.
        reset: bool,
    },
    /// A media frame from the publisher, timestamps in ms extended past the
    /// 32-bit wrap.
    Frame(Frame),
    /// Stream metadata from the publisher: the AMF0 body starting with the
    /// string `onMetaData` (`@setDataFrame` removed).
    Metadata(Bytes),
    /// The publisher stopped (FCUnpublish, closeStream or deleteStream).
    Unpublished,
    /// The player stopped (closeStream or deleteStream).
    PlayStopped,
    /// The connection is over; the last event.
    Closed(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Publish,
    Play,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Idle,
    Pending(RequestToken, Kind),
    Publishing,
    Playing,
}

#[derive(Debug)]
struct Stream {
    id: u32,
    role: Role,
    /// The stream name of the last publish/play on it, for logs.
    name: String,
}

#[derive(Debug)]
enum Phase {
    Handshake(Box<ServerHandshake>),
    Connect,
    Connected,
    Closed,
}

/// A server-side RTMP connection, sans-IO.
///
/// Drive it with [`handle_input`](Self::handle_input) (bytes read from the
/// socket; an empty slice is EOF) and [`handle_timeout`](Self::handle_timeout);
/// drain [`poll_transmit`](Self::poll_transmit) and
/// [`poll_event`](Self::poll_event) until `None` after each call.
///
/// Invariants:
/// - at most one publish or play decision is pending at a time; while it is,
///   input is stashed unparsed (bounded by
///   [`ServerConfig::max_pending_input`]) so that no media of a stream is
///   seen before its publish is accepted;
/// - at most one stream publishes and one plays per connection, and at most
///   [`ServerConfig::max_streams`] message streams exist;
/// - a protocol error queues [`ServerEvent::Closed`] with the reason, logs
///   it, and ignores all later input; what is already queued for transmit can
///   still be drained;
/// - media to a player on message stream [`PLAY_STREAM_ID`] is the chunk
///   bytes cached in the frame's [`EgressSlot::Rtmp`], identical for every
///   viewer: type-0 first chunk with the absolute timestamp,
///   [`OUT_CHUNK_SIZE`] chunks.
#[derive(Debug)]
pub struct ServerConnection {
    id: u64,
    config: ServerConfig,
    phase: Phase,
    wire: Wire,
    events: VecDeque<ServerEvent>,
    stash: Stash,
    streams: Vec<Stream>,
    app: String,
    app_query: String,
    next_token: u64,
    started: Instant,
    last_input: Instant,
    demux: Demuxer,
    dropped_tags: u64,
    close_reason: Option<CloseReason>,
}

impl ServerConnection {
    /// A connection accepted at `now`. `seed` feeds the handshake randomness
    /// and names the connection in logs.
    pub fn new(config: ServerConfig, now: Instant, seed: u64) -> Self {
        Self::with_shared_budget(config, now, seed, None)
    }

    /// [`new`](Self::new), with the chunk reader attached to a budget for
    /// unfinished messages shared by every connection of a server
    /// ([`ServerConfig::max_partial_bytes_total`]).
    pub fn with_shared_budget(
        config: ServerConfig,
        now: Instant,
        seed: u64,
        shared: Option<Arc<SharedPartialBudget>>,
    ) -> Self {
        let wire = Wire::with_limits(
            ChunkLimits {
                max_message_len: config.max_message_len,
                max_partial_bytes: config.max_partial_bytes_unpublished,
                ..ChunkLimits::default()
            },
            shared,
        );
        ServerConnection {
            id: seed,
            phase: Phase::Handshake(Box::new(ServerHandshake::new(seed))),
            wire,
            config,
            events: VecDeque::new(),
            stash: Stash::default(),
            streams: Vec::new(),
            app: String::new(),
            app_query: String::new(),
            next_token: 1,
            started: now,
            last_input: now,
            demux: Demuxer::default(),
            dropped_tags: 0,
            close_reason: None,
        }
    }

    /// Bytes read from the peer; an empty slice means the peer closed.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.is_closed() {
            return;
        }
        self.last_input = now;
        if data.is_empty() {
            self.close_with(CloseReason::PeerClosed);
            return;
        }
        if let Err(e) = self.input(data) {
            self.protocol_error(e);
            return;
        }
        let pending = self.wire.pending();
        if pending > self.config.max_unread_output {
            self.protocol_error(RtmpError::Protocol(format!(
                "peer does not read: {pending} bytes of replies unread (limit {})",
                self.config.max_unread_output
            )));
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
                debug!(conn = self.id, "rtmp handshake done");
                self.phase = Phase::Connect;
                data.get(consumed..).unwrap_or_default()
            }
            Phase::Closed => return Ok(()),
            Phase::Connect | Phase::Connected => data,
        };
        if rest.is_empty() {
            return Ok(());
        }
        if self.pending_decision() {
            return self.stash.push(rest, self.config.max_pending_input);
        }
        self.wire.feed(rest);
        self.process()
    }

    fn pending_decision(&self) -> bool {
        self.streams
            .iter()
            .any(|s| matches!(s.role, Role::Pending(..)))
    }

    /// Handles every complete message, stopping early while a decision is pending.
    fn process(&mut self) -> Result<(), RtmpError> {
        while !self.pending_decision() && !self.is_closed() {
            match self.wire.next()? {
                None => break,
                Some(Inbound::UserControl(ev)) => {
                    debug!(conn = self.id, ?ev, "rtmp user control event ignored");
                }
                Some(Inbound::Message(m)) => self.message(m)?,
            }
        }
        Ok(())
    }

    fn message(&mut self, m: RawMessage) -> Result<(), RtmpError> {
        match m.type_id {
            msg_type::COMMAND_AMF0 | msg_type::COMMAND_AMF3 => self.command(&m),
            msg_type::AUDIO | msg_type::VIDEO => self.media(m),
            msg_type::DATA_AMF0 | msg_type::DATA_AMF3 => {
                if m.stream_id == 0 && matches!(self.phase, Phase::Connected) {
                    // NetConnection-level data (no stream): nothing to do.
                    return Ok(());
                }
                let role = self.stream_role(m.stream_id)?;
                if role != Role::Publishing {
                    return Ok(());
                }
                match decode_data(m.type_id, &m.payload)? {
                    DataMessage::SetDataFrame(md) | DataMessage::OnMetaData(md) => {
                        let body = md.to_on_metadata();
                        debug!(conn = self.id, len = body.len(), "rtmp metadata");
                        self.events.push_back(ServerEvent::Metadata(body));
                    }
                    DataMessage::ClearDataFrame | DataMessage::Other { .. } => {}
                }
                Ok(())
            }
            msg_type::SHARED_OBJECT_AMF0 | msg_type::SHARED_OBJECT_AMF3 | msg_type::AGGREGATE => {
                debug!(
                    conn = self.id,
                    type_id = m.type_id,
                    "rtmp message type ignored"
                );
                Ok(())
            }
            t => Err(RtmpError::Protocol(format!("unknown message type {t}"))),
        }
    }

    fn stream_role(&self, id: u32) -> Result<Role, RtmpError> {
        if !matches!(self.phase, Phase::Connected) {
            return Err(RtmpError::Protocol(format!(
                "message on stream {id} before connect"
            )));
        }
        self.streams
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.role.clone())
            .ok_or_else(|| RtmpError::Protocol(format!("message on unknown stream id {id}")))
    }

    fn media(&mut self, m: RawMessage) -> Result<(), RtmpError> {
        let role = self.stream_role(m.stream_id)?;
        if role != Role::Publishing {
            debug!(
                conn = self.id,
                stream = m.stream_id,
                "media on a stream that is not publishing ignored"
            );
            return Ok(());
        }
        match self.demux.demux(m.type_id, m.timestamp, &m.payload) {
            Ok(Some(f)) => self.events.push_back(ServerEvent::Frame(f)),
            Ok(None) => {}
            // A tag we cannot map (e.g. MP3 audio) is dropped, not fatal.
            Err(e) => {
                self.dropped_tags += 1;
                if self.dropped_tags == 1 {
                    warn!(conn = self.id, app = %escaped(&self.app), error = %e, "rtmp media tag dropped");
                } else {
                    debug!(conn = self.id, error = %e, "rtmp media tag dropped");
                }
            }
        }
        Ok(())
    }

    fn command(&mut self, m: &RawMessage) -> Result<(), RtmpError> {
        let cmd = decode_command(m.type_id, &m.payload)?;
        if !matches!(self.phase, Phase::Connected) {
            return match cmd {
                Command::Connect(c) if m.stream_id == 0 => self.connect(&c),
                other => Err(RtmpError::Protocol(format!(
                    "command `{}` before connect",
                    escaped(other.name())
                ))),
            };
        }
        if m.stream_id != 0 {
            self.stream_role(m.stream_id)?;
        }
        match cmd {
            Command::Connect(_) => Err(RtmpError::Protocol("second connect".into())),
            Command::ReleaseStream { transaction_id, .. }
            | Command::FcPublish { transaction_id, .. } => {
                self.result(transaction_id, response::empty_result(transaction_id));
                Ok(())
            }
            Command::GetStreamLength { transaction_id, .. } => {
                let body = response::get_stream_length_result(transaction_id, 0.0);
                self.result(transaction_id, body);
                Ok(())
            }
            Command::CreateStream { transaction_id } => self.create_stream(transaction_id),
            Command::Publish { name, .. } => self.publish(m.stream_id, name),
            Command::Play(p) => self.play(m.stream_id, p),
            Command::DeleteStream { stream_id, .. } => {
                self.end_role(stream_id);
                self.streams.retain(|s| s.id != stream_id);
                Ok(())
            }
            Command::CloseStream { .. } => {
                self.end_role(m.stream_id);
                Ok(())
            }
            Command::FcUnpublish { transaction_id, .. } => {
                if let Some(id) = self
                    .streams
                    .iter()
                    .find(|s| s.role == Role::Publishing)
                    .map(|s| s.id)
                {
                    self.end_role(id);
                }
                self.result(transaction_id, response::empty_result(transaction_id));
                Ok(())
            }
            Command::Unknown {
                name,
                transaction_id,
                ..
            } => {
                debug!(conn = self.id, command = %escaped(&name), "rtmp command not implemented");
                let body = response::unknown_command_error(transaction_id, &name);
                self.result(transaction_id, body);
                Ok(())
            }
            other => {
                debug!(
                    conn = self.id,
                    command = %escaped(other.name()),
                    "rtmp command ignored"
                );
                Ok(())
            }
        }
    }

    fn connect(&mut self, c: &Connect) -> Result<(), RtmpError> {
        let app = c.app_name();
        if app.name.is_empty() {
            return Err(RtmpError::Protocol("connect without app".into()));
        }
        // Peer names become stream keys and log fields: no control
        // characters, bounded lengths (docs/security.md, section 4).
        let refused = check_name(&app.name, MAX_APP_LEN)
            .and_then(|()| check_name(&c.app, MAX_URL_LEN))
            .map_err(|e| format!("app name refused: {e}"))
            .and_then(|()| match c.tc_url.as_deref() {
                None | Some("") => Ok(()),
                Some(t) => check_name(t, MAX_URL_LEN).map_err(|e| format!("tcUrl refused: {e}")),
            });
        if let Err(reason) = refused {
            if let Some(suppressed) = NAME_REFUSED.check(self.last_input) {
                warn!(
                    conn = self.id,
                    suppressed,
                    // Queries may carry credentials: never logged.
                    app = %escaped(without_query(&c.app)),
                    tc_url = %escaped(without_query(c.tc_url.as_deref().unwrap_or_default())),
                    %reason,
                    "rtmp connect rejected"
                );
            }
            self.send_command(0, response::connect_error(c.transaction_id, &reason));
            self.close_with(CloseReason::Rejected(Rejection::new(
                RejectCode::BadRequest,
                reason,
            )));
            return Ok(());
        }
        self.app = app.name;
        self.app_query = app.query.unwrap_or_default();
        let tc_url = c.tc_url.clone().unwrap_or_default();
        self.wire
            .send_control(&ProtocolControl::WindowAckSize(self.config.window_ack_size));
        self.wire.send_control(&ProtocolControl::SetPeerBandwidth {
            window: self.config.peer_bandwidth,
            limit: PeerBandwidthLimit::Dynamic,
        });
        self.wire
            .send_control(&ProtocolControl::SetChunkSize(OUT_CHUNK_SIZE));
        let body = response::connect_result(c.transaction_id, c.object_encoding);
        self.send_command(0, body);
        self.phase = Phase::Connected;
        debug!(conn = self.id, app = %escaped(&self.app), tc_url = %escaped(without_query(&tc_url)), "rtmp connect");
        self.events.push_back(ServerEvent::Connected {
            app: self.app.clone(),
            tc_url,
        });
        Ok(())
    }

    fn create_stream(&mut self, tid: f64) -> Result<(), RtmpError> {
        if self.streams.len() >= self.config.max_streams {
            return Err(RtmpError::Protocol(format!(
                "more than {} streams on one connection",
                self.config.max_streams
            )));
        }
        let mut id = PLAY_STREAM_ID;
        while self.streams.iter().any(|s| s.id == id) {
            id += 1;
        }
        self.streams.push(Stream {
            id,
            role: Role::Idle,
            name: String::new(),
        });
        self.result(tid, response::create_stream_result(tid, id));
        Ok(())
    }

    /// Checks that `kind` may start on `stream_id`; returns the stream name
    /// and the query of the app and the name joined by `&`.
    fn request_name(
        &self,
        stream_id: u32,
        name: StreamName,
        kind: Kind,
    ) -> Result<(String, String), RtmpError> {
        if stream_id == 0 {
            return Err(RtmpError::Protocol(format!("{kind:?} on stream 0")));
        }
        let role = self.stream_role(stream_id)?;
        if role != Role::Idle {
            return Err(RtmpError::Protocol(format!(
                "{kind:?} on stream {stream_id} which is busy"
            )));
        }
        let want = match kind {
            Kind::Publish => Role::Publishing,
            Kind::Play => Role::Playing,
        };
        if self.streams.iter().any(|s| s.role == want) {
            return Err(RtmpError::Protocol(format!(
                "second {kind:?} on one connection"
            )));
        }
        if name.name.is_empty() {
            return Err(RtmpError::Protocol(format!(
                "{kind:?} without a stream name"
            )));
        }
        let query = match (self.app_query.as_str(), name.query.as_deref()) {
            ("", q) => q.unwrap_or_default().to_owned(),
            (a, None | Some("")) => a.to_owned(),
            (a, Some(q)) => format!("{a}&{q}"),
        };
        Ok((name.name, query))
    }

    fn set_name(&mut self, id: u32, name: &str) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.id == id) {
            s.name = name.to_owned();
        }
    }

    fn stream_name(&self, id: u32) -> &str {
        self.streams
            .iter()
            .find(|s| s.id == id)
            .map_or("", |s| s.name.as_str())
    }

    fn set_role(&mut self, id: u32, role: Role) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.id == id) {
            s.role = role;
        }
    }

    /// Refuses a publish or play whose stream name holds a control
    /// character or is too long (docs/security.md, section 4): the status
    /// error of the request (`NetStream.Publish.BadName`,
    /// `NetStream.Play.Failed`), then a close. `true` when refused.
    fn refuse_bad_name(&mut self, stream_id: u32, name: &StreamName, kind: Kind) -> bool {
        let full_len = name.name.len() + name.query.as_ref().map_or(0, |q| q.len() + 1);
        let checked = check_name(&name.name, MAX_STREAM_NAME_LEN).and_then(|()| {
            if full_len > MAX_STREAM_NAME_LEN {
                return Err(NameError::TooLong {
                    len: full_len,
                    max: MAX_STREAM_NAME_LEN,
                });
            }
            match name.query.as_deref() {
                Some(q) if !q.is_empty() => check_name(q, MAX_STREAM_NAME_LEN),
                _ => Ok(()),
            }
        });
        let Err(e) = checked else {
            return false;
        };
        let reason = format!("stream name refused: {e}");
        let code = match kind {
            Kind::Publish => StatusCode::PublishBadName,
            Kind::Play => StatusCode::PlayFailed,
        };
        if let Some(suppressed) = NAME_REFUSED.check(self.last_input) {
            warn!(
                conn = self.id,
                suppressed,
                app = %escaped(&self.app),
                stream = %escaped(&name.name),
                code = code.code(),
                %reason,
                "rtmp request rejected"
            );
        }
        self.on_status(stream_id, code, &reason);
        self.close_with(CloseReason::Rejected(Rejection::new(
            RejectCode::BadRequest,
            reason,
        )));
        true
    }

    fn publish(&mut self, stream_id: u32, name: StreamName) -> Result<(), RtmpError> {
        if self.refuse_bad_name(stream_id, &name, Kind::Publish) {
            return Ok(());
        }
        let (stream_name, query) = self.request_name(stream_id, name, Kind::Publish)?;
        let token = RequestToken(self.next_token);
        self.next_token += 1;
        self.set_role(stream_id, Role::Pending(token, Kind::Publish));
        self.set_name(stream_id, &stream_name);
        debug!(conn = self.id, app = %escaped(&self.app), stream = %escaped(&stream_name), "rtmp publish request");
        self.events.push_back(ServerEvent::PublishRequest {
            token,
            app: self.app.clone(),
            stream_name,
            query,
        });
        Ok(())
    }

    fn play(&mut self, stream_id: u32, p: Play) -> Result<(), RtmpError> {
        if self.refuse_bad_name(stream_id, &p.name, Kind::Play) {
            return Ok(());
        }
        let (stream_name, query) = self.request_name(stream_id, p.name, Kind::Play)?;
        let token = RequestToken(self.next_token);
        self.next_token += 1;
        self.set_role(stream_id, Role::Pending(token, Kind::Play));
        self.set_name(stream_id, &stream_name);
        debug!(conn = self.id, app = %escaped(&self.app), stream = %escaped(&stream_name), "rtmp play request");
        self.events.push_back(ServerEvent::PlayRequest {
            token,
            app: self.app.clone(),
            stream_name,
            query,
            start: p.start,
            duration: p.duration,
            reset: p.reset,
        });
        Ok(())
    }

    /// Ends whatever stream `id` does (publishing or playing) and reports it.
    fn end_role(&mut self, id: u32) {
        let Some(s) = self.streams.iter_mut().find(|s| s.id == id) else {
            return;
        };
        let old = std::mem::replace(&mut s.role, Role::Idle);
        let name = s.name.clone();
        match old {
            Role::Publishing => {
                self.wire
                    .set_max_partial_bytes(self.config.max_partial_bytes_unpublished);
                info!(conn = self.id, app = %escaped(&self.app), stream = %escaped(&name), "rtmp unpublish");
                self.on_status(id, StatusCode::UnpublishSuccess, "Stop publishing.");
                self.events.push_back(ServerEvent::Unpublished);
            }
            Role::Playing => {
                info!(conn = self.id, app = %escaped(&self.app), stream = %escaped(&name), "rtmp play stopped");
                self.events.push_back(ServerEvent::PlayStopped);
            }
            Role::Idle | Role::Pending(..) => {}
        }
    }

    fn find_pending(&self, token: RequestToken) -> Option<(u32, Kind)> {
        self.streams.iter().find_map(|s| match s.role {
            Role::Pending(t, k) if t == token => Some((s.id, k)),
            _ => None,
        })
    }

    /// Accepts a [`ServerEvent::PublishRequest`]: replies
    /// `NetStream.Publish.Start` and resumes reading input.
    pub fn accept_publish(&mut self, token: RequestToken) {
        let Some((id, Kind::Publish)) = self.find_pending(token) else {
            debug!(
                conn = self.id,
                ?token,
                "accept_publish for no pending publish"
            );
            return;
        };
        self.set_role(id, Role::Publishing);
        // Media may now arrive: the publisher's budget for unfinished messages.
        self.wire
            .set_max_partial_bytes(self.config.max_partial_bytes);
        self.wire.send_user_control(&UserControl::StreamBegin(id));
        self.on_status(id, StatusCode::PublishStart, "Start publishing.");
        self.resume();
    }

    /// Accepts a [`ServerEvent::PlayRequest`]: sends StreamBegin,
    /// `NetStream.Play.Reset`, `NetStream.Play.Start` and `|RtmpSampleAccess`
    /// (RTMP spec §7.2.2.1). Feed metadata with
    /// [`send_metadata`](Self::send_metadata), then frames with
    /// [`send_frame`](Self::send_frame).
    pub fn accept_play(&mut self, token: RequestToken) {
        let Some((id, Kind::Play)) = self.find_pending(token) else {
            debug!(conn = self.id, ?token, "accept_play for no pending play");
            return;
        };
        self.set_role(id, Role::Playing);
        self.wire.send_user_control(&UserControl::StreamBegin(id));
        self.on_status(id, StatusCode::PlayReset, "Playing and resetting.");
        self.on_status(id, StatusCode::PlayStart, "Started playing.");
        let access = response::sample_access(true, true);
        self.wire
            .send(CSID_DATA, 0, msg_type::DATA_AMF0, id, access);
        self.resume();
    }

    /// Refuses a pending request: `NetStream.Publish.BadName` for a publish;
    /// for a play `NetStream.Play.StreamNotFound` when the code is
    /// [`RejectCode::NotFound`], else `NetStream.Play.Failed` (RTMP spec
    /// §7.2.2); the description is the rejection's reason. Then the
    /// connection closes with [`CloseReason::Rejected`].
    pub fn reject(&mut self, token: RequestToken, rejection: Rejection) {
        let Some((id, kind)) = self.find_pending(token) else {
            debug!(conn = self.id, ?token, "reject for no pending request");
            return;
        };
        let code = match (kind, rejection.code) {
            (Kind::Publish, _) => StatusCode::PublishBadName,
            (Kind::Play, RejectCode::NotFound) => StatusCode::PlayStreamNotFound,
            (Kind::Play, _) => StatusCode::PlayFailed,
        };
        debug!(conn = self.id, stream = id, "rtmp reject");
        self.reject_with_code(token, code, rejection);
    }

    /// Refuses a pending request with an explicit onStatus `code` (e.g.
    /// [`StatusCode::PublishDenied`], RTMP spec §7.2.2) and the rejection's
    /// reason as description, then closes with [`CloseReason::Rejected`].
    pub fn reject_with_code(
        &mut self,
        token: RequestToken,
        code: StatusCode,
        rejection: Rejection,
    ) {
        let Some((id, _)) = self.find_pending(token) else {
            return;
        };
        self.set_role(id, Role::Idle);
        info!(
            conn = self.id,
            app = %escaped(&self.app),
            stream = %escaped(self.stream_name(id)),
            code = code.code(),
            reason = %rejection,
            "rtmp request rejected"
        );
        self.on_status(id, code, &rejection.reason);
        self.stash.take();
        self.close_with(CloseReason::Rejected(rejection));
    }

    fn resume(&mut self) {
        if self.stash.is_empty() {
            if let Err(e) = self.process() {
                self.protocol_error(e);
            }
            return;
        }
        let data = self.stash.take();
        self.wire.feed(&data);
        if let Err(e) = self.process() {
            self.protocol_error(e);
        }
    }

    fn playing_stream(&self) -> Option<u32> {
        self.streams
            .iter()
            .find(|s| s.role == Role::Playing)
            .map(|s| s.id)
    }

    /// Whether a stream is playing (frames passed to
    /// [`send_frame`](Self::send_frame) are sent).
    pub fn is_playing(&self) -> bool {
        self.playing_stream().is_some() && !self.is_closed()
    }

    /// Sends the stream's metadata (an AMF0 body starting with `onMetaData`)
    /// to the player.
    pub fn send_metadata(&mut self, metadata: &Bytes) {
        if let (Some(id), false) = (self.playing_stream(), self.is_closed()) {
            self.wire
                .send(CSID_DATA, 0, msg_type::DATA_AMF0, id, metadata.clone());
        }
    }

    /// Sends one frame to the player. On message stream [`PLAY_STREAM_ID`]
    /// this queues the chunk bytes cached in the frame (built once per stream
    /// by [`egress_chunks`]); otherwise the chunks are built for this
    /// connection. Ignored when nothing plays.
    pub fn send_frame(&mut self, frame: &SharedFrame) {
        let Some(id) = self.playing_stream() else {
            return;
        };
        if self.is_closed() {
            return;
        }
        let bytes = if id == PLAY_STREAM_ID {
            frame.egress(EgressSlot::Rtmp, egress_chunks)
        } else {
            build_chunks(&frame.frame, id)
        };
        self.wire.push_raw(bytes);
    }

    /// The publisher of the played stream ended: sends StreamEOF and
    /// `NetStream.Play.UnpublishNotify`; later frames are ignored.
    pub fn end_play(&mut self) {
        let Some(id) = self.playing_stream() else {
            return;
        };
        if self.is_closed() {
            return;
        }
        self.set_role(id, Role::Idle);
        info!(conn = self.id, app = %escaped(&self.app), stream = %escaped(self.stream_name(id)), "rtmp play ended by publisher");
        self.wire.send_user_control(&UserControl::StreamEof(id));
        self.on_status(id, StatusCode::PlayUnpublishNotify, "Stream unpublished.");
    }

    fn on_status(&mut self, stream_id: u32, code: StatusCode, description: &str) {
        let details = self.stream_name(stream_id).to_owned();
        let details = (!details.is_empty()).then_some(details.as_str());
        let body = response::on_status(code, description, details);
        self.send_command(stream_id, body);
    }

    /// Sends a `_result`/`_error` body unless the request's transaction id
    /// is 0 (no answer expected, RTMP spec §7.2.1).
    fn result(&mut self, tid: f64, body: Bytes) {
        if tid != 0.0 {
            self.send_command(0, body);
        }
    }

    fn send_command(&mut self, stream_id: u32, body: Bytes) {
        self.wire
            .send(CSID_COMMAND, 0, msg_type::COMMAND_AMF0, stream_id, body);
    }

    /// Timers: handshake/connect deadline and idle timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if !matches!(self.phase, Phase::Connected)
            && now >= self.started + self.config.handshake_timeout
        {
            // The one line for this peer is the session's close line.
            debug!(conn = self.id, "rtmp handshake/connect timed out");
            self.close_with(CloseReason::IdleTimeout);
            return;
        }
        if self.playing_stream().is_none() && now >= self.last_input + self.config.idle_timeout {
            debug!(conn = self.id, app = %escaped(&self.app), "rtmp idle timeout");
            self.close_with(CloseReason::IdleTimeout);
        }
    }

    /// The next deadline for [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let idle =
            (self.playing_stream().is_none()).then(|| self.last_input + self.config.idle_timeout);
        let hs = (!matches!(self.phase, Phase::Connected))
            .then(|| self.started + self.config.handshake_timeout);
        match (idle, hs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
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

    /// Bytes held for unfinished inbound messages (bounded by
    /// [`ServerConfig::max_partial_bytes`] /
    /// [`ServerConfig::max_partial_bytes_unpublished`]).
    pub fn partial_bytes(&self) -> usize {
        self.wire.partial_bytes()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// The local side ends the connection ([`CloseReason::LocalShutdown`]).
    pub fn close(&mut self, _now: Instant) {
        if !self.is_closed() {
            info!(conn = self.id, app = %escaped(&self.app), "rtmp connection shut down");
            self.close_with(CloseReason::LocalShutdown);
        }
    }

    /// Media tags dropped because they could not be mapped to frames.
    pub fn dropped_tags(&self) -> u64 {
        self.dropped_tags
    }

    /// Whether the connection is over.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Why the connection closed.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.close_reason.as_ref()
    }

    fn protocol_error(&mut self, e: RtmpError) {
        // The one line for this peer is the close line (`log_end`,
        // rate-limited); this detail is `debug`.
        debug!(conn = self.id, app = %escaped(&self.app), error = %e, "rtmp protocol error, closing");
        self.close_with(CloseReason::ProtocolError(ProtocolError::Rtmp(e)));
    }

    /// Ends the connection for `reason` (also used by the engine glue, e.g.
    /// when its [`MediaWatchdog`](crate::engine::MediaWatchdog) gave up on
    /// a publisher). Does nothing once closed.
    pub fn close_with(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        let ids: Vec<u32> = self.streams.iter().map(|s| s.id).collect();
        for id in ids {
            self.end_role(id);
        }
        self.phase = Phase::Closed;
        debug!(conn = self.id, %reason, "rtmp connection closed");
        self.close_reason = Some(reason.clone());
        self.events.push_back(ServerEvent::Closed(reason));
    }
}

/// Builds the chunked RTMP message for `frame` on message stream
/// [`PLAY_STREAM_ID`]: the form cached in [`EgressSlot::Rtmp`] and shared by
/// every viewer (RTMP spec §5.3: type-0 first chunk with the absolute
/// timestamp, then type-3 chunks of [`OUT_CHUNK_SIZE`]). Empty when the codec
/// has no FLV mapping.
pub fn egress_chunks(frame: &Frame) -> Bytes {
    build_chunks(frame, PLAY_STREAM_ID)
}

fn build_chunks(frame: &Frame, stream_id: u32) -> Bytes {
    let body = conn::mux(frame);
    let (csid, type_id) = match frame.kind() {
        MediaKind::Audio => (conn::CSID_AUDIO, msg_type::AUDIO),
        MediaKind::Video => (conn::CSID_VIDEO, msg_type::VIDEO),
    };
    // RTMP timestamps are 32-bit ms and wrap (RTMP spec §5.3.1.1).
    let ts = frame.dts_in(1000) as u32;
    let msg = RawMessage {
        csid,
        timestamp: ts,
        type_id,
        stream_id,
        payload: body,
    };
    encode_message(&msg, OUT_CHUNK_SIZE).unwrap_or_default()
}
