//! The part of an RTMP connection shared by the server and the client role:
//! the chunk stream in both directions, protocol control messages (RTMP spec
//! §5.4), user control ping (§6.2), acknowledgements, the transmit queue and
//! the extension of 32-bit timestamps.
//!
//! Invariants:
//! - inbound bytes are counted once, when fed; an Acknowledgement (§5.4.3) is
//!   queued every time the count passes the peer's window since the last one;
//! - the transmit queue holds whole chunked messages only, so cached egress
//!   (a message built once per stream) and per-connection messages never
//!   interleave inside a message;
//! - nothing here grows without bound: the inbound buffer is capped at the
//!   largest message plus one chunk, the transmit queue is drained by the owner.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use std::sync::Arc;

use super::chunk::{ChunkLimits, ChunkReader, ChunkWriter, RawMessage, SharedPartialBudget};
use super::flv::FlvDemux;
use super::message::{ProtocolControl, UserControl};
use super::RtmpError;
use crate::frame::Frame;

/// Chunk stream id of command messages.
pub(crate) const CSID_COMMAND: u32 = 3;
/// Chunk stream id of data messages (`onMetaData`, `|RtmpSampleAccess`).
pub(crate) const CSID_DATA: u32 = 5;
/// Chunk stream id of audio messages.
pub(crate) const CSID_AUDIO: u32 = 6;
/// Chunk stream id of video messages.
pub(crate) const CSID_VIDEO: u32 = 7;

pub(crate) use super::message::type_id as msg_type;

/// What the shared core surfaced from the chunk stream.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A command, data or media message for the role to handle.
    Message(RawMessage),
    /// A user control event other than ping (StreamBegin, StreamEOF, …).
    UserControl(UserControl),
}

/// Chunk stream state of one connection after the handshake.
#[derive(Debug)]
pub(crate) struct Wire {
    reader: ChunkReader,
    writer: ChunkWriter,
    out: VecDeque<Bytes>,
    out_bytes: usize,
    scratch: Vec<Bytes>,
}

impl Wire {
    /// A chunk stream with the default chunk size (128) both ways, accepting
    /// messages up to `max_message_len` bytes.
    pub(crate) fn new(max_message_len: u32) -> Self {
        Wire {
            reader: ChunkReader::new(ChunkLimits {
                max_message_len,
                ..ChunkLimits::default()
            }),
            writer: ChunkWriter::new(),
            out: VecDeque::new(),
            out_bytes: 0,
            scratch: Vec::new(),
        }
    }

    /// A chunk stream whose reader enforces `limits` and, when given, a
    /// budget shared with other connections.
    pub(crate) fn with_limits(
        limits: ChunkLimits,
        shared: Option<Arc<SharedPartialBudget>>,
    ) -> Self {
        let mut reader = ChunkReader::new(limits);
        if let Some(b) = shared {
            reader = reader.with_shared_budget(b);
        }
        Wire {
            reader,
            ..Wire::new(limits.max_message_len)
        }
    }

    /// Changes the reader's budget for unfinished messages.
    pub(crate) fn set_max_partial_bytes(&mut self, max: usize) {
        self.reader.set_max_partial_bytes(max);
    }

    /// Bytes the reader holds for unfinished messages.
    pub(crate) fn partial_bytes(&self) -> usize {
        self.reader.partial_bytes()
    }

    /// Bytes received from the peer after the handshake.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        self.reader.handle_input(data);
    }

    /// The next message for the role, handling protocol control, ping and
    /// acknowledgements on the way.
    pub(crate) fn next(&mut self) -> Result<Option<Inbound>, RtmpError> {
        loop {
            let m = self.reader.poll_message();
            // Acknowledge as soon as a window is complete (RTMP spec §5.4.3).
            while let Some(seq) = self.reader.poll_ack() {
                self.send_control(&ProtocolControl::Acknowledgement(seq));
            }
            let Some(m) = m? else {
                return Ok(None);
            };
            match m.type_id {
                // Set Chunk Size, Abort and Window Ack Size are applied by the
                // reader; Acknowledgement and Set Peer Bandwidth need nothing.
                msg_type::SET_CHUNK_SIZE
                | msg_type::ABORT
                | msg_type::ACKNOWLEDGEMENT
                | msg_type::WINDOW_ACK_SIZE
                | msg_type::SET_PEER_BANDWIDTH => {
                    ProtocolControl::decode(m.type_id, &m.payload)?;
                }
                msg_type::USER_CONTROL => match UserControl::decode(&m.payload)? {
                    UserControl::PingRequest(t) => {
                        self.send_user_control(&UserControl::PingResponse(t));
                    }
                    other => return Ok(Some(Inbound::UserControl(other))),
                },
                _ => return Ok(Some(Inbound::Message(m))),
            }
        }
    }

    /// Queues a protocol control message (message stream 0, csid 2). A Set
    /// Chunk Size switches our writer right after it is queued.
    pub(crate) fn send_control(&mut self, c: &ProtocolControl) {
        self.send_message(&c.to_message());
        if let ProtocolControl::SetChunkSize(n) = c {
            // A valid size by construction; an invalid one keeps the old size
            // and was not announced either.
            let _ = self.writer.set_chunk_size(*n);
        }
    }

    /// Queues a user control event (RTMP spec §6.2).
    pub(crate) fn send_user_control(&mut self, ev: &UserControl) {
        self.send_message(&ev.to_message());
    }

    /// Chunks and queues one message.
    pub(crate) fn send(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: Bytes,
    ) {
        self.send_message(&RawMessage {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload,
        });
    }

    fn send_message(&mut self, m: &RawMessage) {
        self.scratch.clear();
        match self.writer.write_message(m, &mut self.scratch) {
            Ok(n) => {
                self.out_bytes += n;
                self.out.extend(self.scratch.drain(..));
            }
            Err(e) => tracing::warn!(error = %e, "rtmp message not sent"),
        }
    }

    /// Queues bytes that already are whole chunked messages.
    pub(crate) fn push_raw(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.out_bytes += b.len();
        self.out.push_back(b);
    }

    /// The next buffer to write.
    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        let b = self.out.pop_front()?;
        self.out_bytes -= b.len();
        Some(b)
    }

    /// Bytes queued and not yet polled.
    pub(crate) fn pending(&self) -> usize {
        self.out_bytes
    }
}

/// FLV tag body → frame, with the timestamp extension of each media kind.
#[derive(Debug, Default)]
pub(crate) struct Demuxer {
    flv: FlvDemux,
    audio_ts: TsExtender,
    video_ts: TsExtender,
}

impl Demuxer {
    /// One audio (8) or video (9) message body at RTMP timestamp `ts`.
    pub(crate) fn demux(
        &mut self,
        type_id: u8,
        ts: u32,
        body: &Bytes,
    ) -> Result<Option<Frame>, RtmpError> {
        if body.is_empty() {
            return Ok(None);
        }
        let f = if type_id == msg_type::AUDIO {
            let ts = self.audio_ts.extend(u64::from(ts));
            self.flv.audio(ts, body.clone())?
        } else {
            let ts = self.video_ts.extend(u64::from(ts));
            self.flv.video(ts, body.clone())?
        };
        Ok(f)
    }
}

/// The FLV tag body carrying `frame` (legacy for H.264/AAC, E-RTMP otherwise).
pub(crate) fn mux(frame: &Frame) -> Bytes {
    super::flv::frame_to_tag_body(frame)
}

/// 32-bit RTMP millisecond timestamps (RTMP spec §5.3.1.1, wrapping every
/// ~49.7 days) extended into `i64`.
pub(crate) type TsExtender = crate::time::WrapExtender<32>;

/// Keeps unparsed input while an admission decision is pending.
#[derive(Debug, Default)]
pub(crate) struct Stash {
    buf: BytesMut,
}

impl Stash {
    pub(crate) fn push(&mut self, data: &[u8], limit: usize) -> Result<(), RtmpError> {
        if self.buf.len() + data.len() > limit {
            return Err(RtmpError::Protocol(format!(
                "more than {limit} bytes of input while an admission decision is pending"
            )));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }
    pub(crate) fn take(&mut self) -> BytesMut {
        std::mem::take(&mut self.buf)
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}
