//! RTMP: handshake, chunk stream, AMF, FLV mapping, server and client machines.
//!
//! Every machine here is sans-IO (see `docs/architecture.md`): bytes and
//! `now` in through `handle_*`, bytes, events and deadlines out through
//! `poll_*`, drained until `None`.
//!
//! - [`ServerConnection`]: the server role (RTMP spec §5, §7): handshake,
//!   chunk stream, `connect`/`createStream`/`publish`/`play`…, media in from
//!   publishers, cached chunk bytes out to players. Admission is the caller's
//!   decision ([`ServerEvent::PublishRequest`] / [`ServerEvent::PlayRequest`]).
//! - [`ClientConnection`]: the client role (publish or play), used by the
//!   load generator, tests and relays.
//! - [`RtmpSessionFactory`] / [`RtmpSession`]: the server machine joined to
//!   the [`Engine`](crate::Engine) and an [`Admission`](crate::admission::Admission),
//!   as the [`StreamSession`](crate::session::StreamSession) adapters drive.
//! - Building blocks: [`handshake`], [`chunk`], [`message`], [`amf`],
//!   [`command`], [`flv`].
pub mod amf;
pub mod chunk;
pub mod command;
pub mod flv;
pub mod handshake;
pub mod message;

pub mod client;
mod conn;
pub mod server;
pub mod session;

pub use client::{ClientConfig, ClientConnection, ClientEvent, ClientMode};
pub use server::{egress_chunks, RequestToken, ServerConfig, ServerConnection, ServerEvent};
pub use session::{RtmpSession, RtmpSessionFactory, MAX_PENDING_OUTPUT};

/// Our outbound chunk size, announced with Set Chunk Size at connect (RTMP
/// spec §5.4.1) and used by the per-stream cached egress chunks, so the
/// cached bytes are valid on every server connection.
pub const OUT_CHUNK_SIZE: u32 = 4096;

/// The message stream id a player's first `createStream` returns; cached
/// egress chunks carry it (RTMP spec §7.2.1.3).
pub const PLAY_STREAM_ID: u32 = 1;

/// Why an RTMP connection failed. Every variant closes the connection.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RtmpError {
    /// The handshake bytes are invalid (RTMP spec §5.2).
    #[error("handshake: {0}")]
    Handshake(#[from] handshake::HandshakeError),
    /// The chunk stream is invalid (RTMP spec §5.3).
    #[error("chunk stream: {0}")]
    Chunk(#[from] chunk::ChunkError),
    /// A protocol control or user control message is malformed (§5.4, §6.2).
    #[error("control message: {0}")]
    Message(#[from] message::MessageError),
    /// A command or data message is not valid AMF (AMF0 spec, AMF3 spec).
    #[error("AMF: {0}")]
    Amf(#[from] amf::AmfError),
    /// A command message is malformed (RTMP spec §7.2).
    #[error("command: {0}")]
    Command(#[from] command::CommandError),
    /// An audio/video message is not a valid FLV tag body (FLV spec Annex E, E-RTMP).
    #[error("media: {0}")]
    Flv(#[from] flv::FlvError),
    /// The peer broke the command sequence or a limit; the text says how.
    #[error("{0}")]
    Protocol(String),
}
