//! RTMP chunk stream (RTMP spec §5.3): splitting messages into chunks and
//! reassembling them, sans-IO.
//!
//! - [`ChunkReader`]: bytes in, [`RawMessage`]s out, bounded by [`ChunkLimits`].
//! - [`ChunkWriter`]: messages in, header pieces plus zero-copy payload slices
//!   out, with per-chunk-stream header compression (types 0–3).
//! - [`encode_message`]: one contiguous buffer for a whole message (type-0
//!   first chunk, type-3 continuations), built once per frame and shared by
//!   every viewer.

pub mod header;
pub mod reader;
pub mod writer;

#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use header::{
    ChunkType, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MAX_CSID, MIN_CSID, PROTOCOL_CONTROL_CSID,
};
pub use reader::{ChunkLimits, ChunkReader, SharedPartialBudget, DEFAULT_MAX_PARTIAL_BYTES};
pub use writer::{encode_message, ChunkWriter};

/// One RTMP message with the chunk stream it travels on (RTMP spec §5.3.1,
/// §6.1). Used in both directions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// Chunk stream id, 2..=65599.
    pub csid: u32,
    /// Absolute timestamp in milliseconds, mod 2^32 (deltas are accumulated
    /// with 32-bit wrap).
    pub timestamp: u32,
    /// Message type id (see [`crate::rtmp::message::type_id`]).
    pub type_id: u8,
    /// Message stream id (little-endian on the wire).
    pub stream_id: u32,
    /// Message payload.
    pub payload: Bytes,
}

/// What went wrong in a chunk stream. Every variant is fatal for the
/// connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// A type 1/2/3 chunk on a chunk stream with no earlier type-0 header
    /// (RTMP spec §5.3.1.2).
    #[error("chunk stream {csid}: type {fmt} chunk before any type 0 header on it")]
    NoPreviousHeader {
        /// Chunk stream id.
        csid: u32,
        /// Header type (`fmt`) of the offending chunk.
        fmt: u8,
    },
    /// A header announced a message longer than the configured limit.
    #[error("chunk stream {csid}: message length {len} exceeds the limit of {max} bytes")]
    MessageTooLong {
        /// Chunk stream id.
        csid: u32,
        /// Announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// More chunk streams in use than [`ChunkLimits::max_chunk_streams`].
    #[error("more than {max} chunk streams in use")]
    TooManyChunkStreams {
        /// The limit.
        max: usize,
    },
    /// Set Chunk Size of 0, of 2^31 or more, or above the configured limit
    /// (RTMP spec §5.4.1).
    #[error("invalid chunk size {size} (allowed 1..={max})")]
    InvalidChunkSize {
        /// The requested size.
        size: u32,
        /// Largest allowed size.
        max: u32,
    },
    /// A type 0/1 header changed length or type in the middle of a message.
    #[error("chunk stream {csid}: message length changed from {old} to {new} mid-message")]
    LengthChangedMidMessage {
        /// Chunk stream id.
        csid: u32,
        /// Length of the message in progress.
        old: u32,
        /// Length in the new header.
        new: u32,
    },
    /// A Set Chunk Size, Abort or Window Acknowledgement Size message whose
    /// payload is shorter than 4 bytes (RTMP spec §5.4).
    #[error("protocol control message type {type_id} with a {len}-byte payload")]
    MalformedControl {
        /// Message type id.
        type_id: u8,
        /// Payload length.
        len: usize,
    },
    /// Writer: chunk stream id outside 2..=65599 (RTMP spec §5.3.1.1).
    #[error("invalid chunk stream id {0}")]
    InvalidCsid(u32),
    /// Writer: payload longer than the 24-bit length field (RTMP spec §5.3.1.2.1).
    #[error("message of {0} bytes does not fit the 24-bit length field")]
    PayloadTooLong(usize),
    /// Unfinished messages hold more than
    /// [`ChunkLimits::max_partial_bytes`] (a peer that starts messages and
    /// never ends them).
    #[error("unfinished messages hold {held} bytes, over the per-connection budget of {max}")]
    PartialBudgetExceeded {
        /// Bytes held.
        held: usize,
        /// The budget.
        max: usize,
    },
    /// Unfinished messages of all connections together would pass the
    /// [`SharedPartialBudget`].
    #[error("unfinished messages of all connections would pass the shared budget of {max} bytes")]
    SharedBudgetExceeded {
        /// The shared budget.
        max: usize,
    },
    /// An internal invariant failed (a bug); the connection is closed.
    #[error("internal chunk reader error")]
    Internal,
}
