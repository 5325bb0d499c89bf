//! Outbound chunk stream: messages in, chunk bytes out (RTMP spec §5.3).

use bytes::{BufMut, Bytes, BytesMut};

use super::header::{
    chunk_header_len, is_valid_csid, put_chunk_header, ChunkType, DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE, MAX_MESSAGE_LEN_FIELD,
};
use super::{ChunkError, RawMessage};

/// Last header sent on one chunk stream, for header compression.
#[derive(Debug, Clone, Copy)]
struct SentHeader {
    csid: u32,
    timestamp: u32,
    ts_field: u32,
    ty: ChunkType,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

/// Splits outbound messages into chunks (RTMP spec §5.3), sans-IO.
///
/// Keeps the last header sent on each chunk stream and picks the smallest
/// header type: 0 (new stream id, first message, timestamp going backwards),
/// 1 (length or type changed), 2 (only the timestamp delta changed) or 3
/// (everything repeated, after a type 1/2 header). Continuation chunks are
/// type 3 and repeat the extended timestamp when it is used (RTMP spec
/// §5.3.1.3, as FMS, ffmpeg and librtmp expect).
///
/// Output is zero-copy: header bytes of one message share one small buffer,
/// payload pieces are slices of the message's `Bytes`.
///
/// Invariant: the chunk size set here must be the one last announced to the
/// peer with Set Chunk Size; call [`set_chunk_size`](Self::set_chunk_size)
/// right after queueing that message. The per-stream state is bounded by the
/// number of chunk streams the caller uses.
#[derive(Debug)]
pub struct ChunkWriter {
    chunk_size: u32,
    streams: Vec<SentHeader>,
}

impl Default for ChunkWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkWriter {
    /// A writer at the default chunk size of 128 bytes.
    pub fn new() -> Self {
        ChunkWriter {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
        }
    }

    /// Current outbound chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Sets the outbound chunk size, 1..=2^31-1 (RTMP spec §5.4.1).
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::InvalidChunkSize {
                size,
                max: MAX_CHUNK_SIZE,
            });
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Records that `msg` was sent on its chunk stream with a type-0 header
    /// by other means (e.g. a cached [`encode_message`] buffer), so the next
    /// compressed header on that chunk stream is relative to it.
    pub fn note_sent(&mut self, msg: &RawMessage) {
        self.remember(SentHeader {
            csid: msg.csid,
            timestamp: msg.timestamp,
            ts_field: msg.timestamp,
            ty: ChunkType::Full,
            length: msg.payload.len() as u32,
            type_id: msg.type_id,
            stream_id: msg.stream_id,
        });
    }

    /// Forgets the header state of every chunk stream: the next message on
    /// each starts with a type-0 header.
    pub fn reset(&mut self) {
        self.streams.clear();
    }

    fn remember(&mut self, h: SentHeader) {
        match self.streams.iter_mut().find(|s| s.csid == h.csid) {
            Some(s) => *s = h,
            None => self.streams.push(h),
        }
    }

    /// Appends the chunks of `msg` to `out` (header pieces and payload
    /// slices); returns the number of bytes appended.
    ///
    /// Errors: chunk stream id outside 2..=65599, payload over 2^24-1 bytes.
    pub fn write_message(
        &mut self,
        msg: &RawMessage,
        out: &mut Vec<Bytes>,
    ) -> Result<usize, ChunkError> {
        if !is_valid_csid(msg.csid) {
            return Err(ChunkError::InvalidCsid(msg.csid));
        }
        let len = msg.payload.len();
        if len > MAX_MESSAGE_LEN_FIELD as usize {
            return Err(ChunkError::PayloadTooLong(len));
        }
        let length = len as u32;
        let prev = self.streams.iter().find(|s| s.csid == msg.csid).copied();
        let (ty, ts_field) = match prev {
            Some(p) if p.stream_id == msg.stream_id && msg.timestamp >= p.timestamp => {
                let delta = msg.timestamp - p.timestamp;
                if p.length != length || p.type_id != msg.type_id {
                    (ChunkType::SameStream, delta)
                } else if delta == p.ts_field && p.ty != ChunkType::Full {
                    (ChunkType::Continuation, delta)
                } else {
                    (ChunkType::TimestampDelta, delta)
                }
            }
            _ => (ChunkType::Full, msg.timestamp),
        };
        self.remember(SentHeader {
            csid: msg.csid,
            timestamp: msg.timestamp,
            ts_field,
            ty,
            length,
            type_id: msg.type_id,
            stream_id: msg.stream_id,
        });

        let cs = self.chunk_size as usize;
        let n_chunks = len.div_ceil(cs).max(1);
        let first_len = chunk_header_len(ty, msg.csid, ts_field);
        let cont_len = chunk_header_len(ChunkType::Continuation, msg.csid, ts_field);
        let mut headers = BytesMut::with_capacity(first_len + (n_chunks - 1) * cont_len);
        put_chunk_header(
            &mut headers,
            ty,
            msg.csid,
            ts_field,
            (length, msg.type_id, msg.stream_id),
        );
        for _ in 1..n_chunks {
            put_chunk_header(
                &mut headers,
                ChunkType::Continuation,
                msg.csid,
                ts_field,
                (0, 0, 0),
            );
        }
        let headers = headers.freeze();
        out.reserve(n_chunks * 2);
        out.push(headers.slice(..first_len));
        let mut off = 0usize;
        let mut hoff = first_len;
        loop {
            let end = (off + cs).min(len);
            if end > off {
                out.push(msg.payload.slice(off..end));
            }
            off = end;
            if off >= len {
                break;
            }
            out.push(headers.slice(hoff..hoff + cont_len));
            hoff += cont_len;
        }
        Ok(headers.len() + len)
    }
}

/// One contiguous buffer holding all chunks of `msg`: a type-0 first chunk
/// (absolute timestamp) and type-3 continuations, each repeating the extended
/// timestamp when the timestamp is ≥ 0xFFFFFF (RTMP spec §5.3.1).
///
/// Built once per frame per stream and shared by every viewer whose writer
/// uses `chunk_size`; after sending it, call [`ChunkWriter::note_sent`].
pub fn encode_message(msg: &RawMessage, chunk_size: u32) -> Result<Bytes, ChunkError> {
    if !is_valid_csid(msg.csid) {
        return Err(ChunkError::InvalidCsid(msg.csid));
    }
    if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
        return Err(ChunkError::InvalidChunkSize {
            size: chunk_size,
            max: MAX_CHUNK_SIZE,
        });
    }
    let len = msg.payload.len();
    if len > MAX_MESSAGE_LEN_FIELD as usize {
        return Err(ChunkError::PayloadTooLong(len));
    }
    let cs = chunk_size as usize;
    let n_chunks = len.div_ceil(cs).max(1);
    let ts = msg.timestamp;
    let first_len = chunk_header_len(ChunkType::Full, msg.csid, ts);
    let cont_len = chunk_header_len(ChunkType::Continuation, msg.csid, ts);
    let mut out = BytesMut::with_capacity(first_len + (n_chunks - 1) * cont_len + len);
    put_chunk_header(
        &mut out,
        ChunkType::Full,
        msg.csid,
        ts,
        (len as u32, msg.type_id, msg.stream_id),
    );
    let mut rest: &[u8] = &msg.payload;
    loop {
        let (piece, tail) = rest.split_at(cs.min(rest.len()));
        out.put_slice(piece);
        rest = tail;
        if rest.is_empty() {
            break;
        }
        put_chunk_header(&mut out, ChunkType::Continuation, msg.csid, ts, (0, 0, 0));
    }
    Ok(out.freeze())
}
