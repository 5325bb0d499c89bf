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
//! Decoding is bounded by [`DecodeLimits`](super::amf::DecodeLimits) and never panics.
//!
//! The code is split by job: decoding of commands and data messages
//! (`decode.rs`), stream names and `tcUrl` (`name.rs`), status objects and
//! codes (`status.rs`), and the [`response`] and [`request`] builders.

mod decode;
mod name;
pub mod request;
pub mod response;
mod status;

pub use decode::{
    decode_command, decode_command_with_limits, decode_data, decode_data_with_limits, Command,
    Connect, DataMessage, Metadata, Play, PlayStart, PublishType,
};
pub use name::{query_param, split_query, StreamName, TcUrl};
pub use status::{Status, StatusCode};

use super::amf::AmfError;
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
#[non_exhaustive]
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

#[cfg(test)]
mod tests;
