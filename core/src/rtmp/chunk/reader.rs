//! Inbound chunk stream: bytes in, reassembled messages out (RTMP spec §5.3).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Buf, BytesMut};

use super::header::{ChunkType, DEFAULT_CHUNK_SIZE, EXTENDED_TIMESTAMP_MARKER, MAX_CHUNK_SIZE};
use super::{ChunkError, RawMessage};
use crate::rtmp::message::type_id;

/// Bounds a [`ChunkReader`] enforces on its peer. Every byte the reader
/// holds is bounded by these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Largest message length accepted (default 8 MiB). A header announcing
    /// more is [`ChunkError::MessageTooLong`].
    pub max_message_len: u32,
    /// Most chunk streams tracked at once (default 64). One more is
    /// [`ChunkError::TooManyChunkStreams`].
    pub max_chunk_streams: usize,
    /// Largest inbound chunk size accepted from Set Chunk Size (default
    /// 2^31-1, the protocol maximum, RTMP spec §5.4.1).
    pub max_chunk_size: u32,
    /// Most bytes the reader may hold for messages not yet complete, over
    /// all chunk streams together: the capacity of every partial message
    /// plus the received part of a single-chunk message still waiting for
    /// its end (default [`DEFAULT_MAX_PARTIAL_BYTES`], one largest message
    /// plus room for the other chunk streams). More is
    /// [`ChunkError::PartialBudgetExceeded`]. Checked every time
    /// [`ChunkReader::poll_message`] returns, so the overshoot is at most
    /// what one [`ChunkReader::handle_input`] fed.
    pub max_partial_bytes: usize,
}

/// Default of [`ChunkLimits::max_partial_bytes`] (10 MiB).
pub const DEFAULT_MAX_PARTIAL_BYTES: usize = 10 << 20;

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_message_len: 8 * 1024 * 1024,
            max_chunk_streams: 64,
            max_chunk_size: MAX_CHUNK_SIZE,
            max_partial_bytes: DEFAULT_MAX_PARTIAL_BYTES,
        }
    }
}

/// A budget for partial-message bytes shared by many [`ChunkReader`]s (all
/// connections of a server): the second line behind each reader's own
/// [`ChunkLimits::max_partial_bytes`], so that many connections together
/// cannot pin more than `limit` bytes in unfinished messages.
///
/// Invariant: `used` is the sum of what every live reader attached to it
/// holds (as of its last `poll_message`); a reader releases its share when
/// it fails or is dropped. A reader whose growth would take `used` past
/// `limit` fails with [`ChunkError::SharedBudgetExceeded`] and releases
/// everything it held.
#[derive(Debug)]
pub struct SharedPartialBudget {
    used: AtomicUsize,
    limit: usize,
}

impl SharedPartialBudget {
    /// A budget of `limit` bytes, none used.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(SharedPartialBudget {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    /// Bytes held by all attached readers right now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes `n` more bytes; `false` (and nothing taken) when that would
    /// pass the limit.
    fn reserve(&self, n: usize) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = cur.checked_add(n).filter(|&v| v <= self.limit) else {
                return false;
            };
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    fn release(&self, n: usize) {
        // Never below zero, even if a bug released twice.
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }
}

/// Per chunk stream state: the last header seen and the message in progress.
#[derive(Debug)]
struct ChunkStream {
    csid: u32,
    /// Absolute timestamp of the current (or last) message.
    timestamp: u32,
    /// Last timestamp field value (absolute for type 0, else the delta);
    /// a type-3 chunk that starts a new message adds it (RTMP spec §5.3.1.2.4).
    ts_field: u32,
    /// The last type 0/1/2 header used an extended timestamp.
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Payload bytes still missing from the message in progress (0: none).
    remaining: u32,
    /// Payload gathered so far when the message spans chunks; its capacity
    /// grows with the bytes received, up to the message length
    /// (≤ `max_message_len`).
    partial: BytesMut,
}

/// Smallest allocation for a message that spans chunks; longer messages grow
/// (doubling, capped at their length) as their bytes arrive, so memory held
/// follows bytes received (at most twice them, or this much) rather than
/// lengths announced.
const INITIAL_MESSAGE_CAPACITY: usize = 8 * 1024;

/// Appends `src` to the partial message `buf` of total length `length`,
/// never allocating more than `length` bytes.
#[inline]
fn append_bounded(buf: &mut BytesMut, length: usize, src: &[u8]) {
    let need = buf.len() + src.len();
    if need > buf.capacity() {
        let cap = (buf.capacity() * 2)
            .max(need)
            .max(INITIAL_MESSAGE_CAPACITY)
            .min(length.max(need));
        let mut grown = BytesMut::with_capacity(cap);
        grown.extend_from_slice(buf);
        *buf = grown;
    }
    buf.extend_from_slice(src);
}

/// The exact bytes of a type-3 continuation chunk header on `st`'s chunk
/// stream (basic header, plus the repeated extended timestamp when this peer
/// repeats it), or `None` while that is not known yet.
fn continuation_header(st: &ChunkStream, type3_extended: Option<bool>) -> Option<([u8; 7], usize)> {
    let mut h = [0u8; 7];
    let mut n = match st.csid {
        c @ 0..=63 => {
            h[0] = 0xC0 | c as u8;
            1
        }
        c @ 64..=319 => {
            h[0] = 0xC0;
            h[1] = (c - 64) as u8;
            2
        }
        c => {
            h[0] = 0xC1;
            h[1] = ((c - 64) & 0xFF) as u8;
            h[2] = ((c - 64) >> 8) as u8;
            3
        }
    };
    if st.extended {
        match type3_extended {
            None => return None,
            Some(false) => {}
            Some(true) => {
                let ext = st.ts_field.to_be_bytes();
                h.get_mut(n..n + 4)?.copy_from_slice(&ext);
                n += 4;
            }
        }
    }
    Some((h, n))
}

/// Reassembles RTMP messages from a chunk stream (RTMP spec §5.3), sans-IO.
///
/// Feed received bytes with [`handle_input`](Self::handle_input) (after the
/// handshake), then drain [`poll_message`](Self::poll_message) until it
/// returns `Ok(None)`.
///
/// Invariants and behaviour:
/// - Header types 0–3, 1/2/3-byte chunk stream ids, extended timestamps on
///   every header type. On type-3 chunks the extended timestamp is detected
///   once per connection by comparing the 4 bytes with the header's value,
///   so peers that repeat it (FMS, the spec) and peers that omit it both work.
/// - Timestamps are absolute, accumulated from deltas with 32-bit wrap.
/// - Set Chunk Size (type 1), Abort (type 2) and Window Acknowledgement Size
///   (type 5) are applied by the reader before the message is returned; the
///   caller may ignore them.
/// - A message that fits in one chunk is a zero-copy slice of the input
///   buffer; a longer one is gathered into one buffer of exactly its length.
///   A single-chunk payload keeps its input buffer allocation alive: a
///   consumer that stores a small payload for long (a sequence header,
///   metadata) should copy it (`Bytes::copy_from_slice`).
/// - Held memory is bounded: unparsed input is at most what the caller fed
///   since the last drain, plus at most one single-chunk message
///   (≤ `max_message_len`); partial messages are ≤ `max_message_len` each on
///   ≤ `max_chunk_streams` chunk streams, and grow only as their bytes
///   arrive (a header announcing 8 MiB allocates at most 8 KiB up front).
///   All of it together (partial capacities plus a waiting single-chunk
///   message) stays within [`ChunkLimits::max_partial_bytes`] and, when a
///   [`SharedPartialBudget`] is attached, within its share of that budget;
///   both are checked whenever [`poll_message`](Self::poll_message) returns.
/// - After an error the connection must be closed; further calls return the
///   same error.
#[derive(Debug)]
pub struct ChunkReader {
    limits: ChunkLimits,
    chunk_size: u32,
    buf: BytesMut,
    streams: Vec<ChunkStream>,
    /// Index into `streams` for chunk stream ids below 64 (`u32::MAX`: none).
    low_index: [u32; 64],
    /// Index into `streams` for chunk stream ids from 64 up.
    high_index: HashMap<u32, usize>,
    /// Chunk whose payload is being read: index into `streams`, bytes left.
    current: Option<(usize, u32)>,
    /// Whether this peer repeats the extended timestamp on type-3 chunks;
    /// `None` until the first such chunk shows it.
    type3_extended: Option<bool>,
    bytes_received: u64,
    ack_window: u32,
    last_ack: u64,
    failed: Option<ChunkError>,
    /// Sum of the capacities of every `partial` buffer.
    partial_total: usize,
    /// The budget shared with other readers, and how much of it we hold.
    shared: Option<Arc<SharedPartialBudget>>,
    reserved: usize,
}

impl Drop for ChunkReader {
    fn drop(&mut self) {
        if let Some(b) = &self.shared {
            b.release(self.reserved);
        }
    }
}

impl Default for ChunkReader {
    fn default() -> Self {
        Self::new(ChunkLimits::default())
    }
}

impl ChunkReader {
    /// A reader at the default chunk size of 128 bytes with these limits.
    pub fn new(limits: ChunkLimits) -> Self {
        ChunkReader {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            buf: BytesMut::new(),
            streams: Vec::new(),
            low_index: [u32::MAX; 64],
            high_index: HashMap::new(),
            current: None,
            type3_extended: None,
            bytes_received: 0,
            ack_window: 0,
            last_ack: 0,
            failed: None,
            partial_total: 0,
            shared: None,
            reserved: 0,
        }
    }

    /// Attaches a budget shared with other readers (see
    /// [`SharedPartialBudget`]).
    pub fn with_shared_budget(mut self, budget: Arc<SharedPartialBudget>) -> Self {
        if let Some(old) = self.shared.take() {
            old.release(self.reserved);
        }
        self.reserved = 0;
        self.shared = Some(budget);
        self
    }

    /// Changes [`ChunkLimits::max_partial_bytes`] (e.g. raised once a
    /// publish is admitted); checked at the next
    /// [`poll_message`](Self::poll_message).
    pub fn set_max_partial_bytes(&mut self, max: usize) {
        self.limits.max_partial_bytes = max;
    }

    /// Bytes held for messages not yet complete: what
    /// [`ChunkLimits::max_partial_bytes`] bounds.
    pub fn partial_bytes(&self) -> usize {
        self.held(true)
    }

    fn held(&self, waiting: bool) -> usize {
        let partial = self.partial_total;
        // When no complete message is left to parse, `buf` holds only the
        // start of a chunk still waiting for the rest of its bytes.
        if waiting {
            partial.saturating_add(self.buf.len())
        } else {
            partial
        }
    }

    /// Checks what the reader holds against its own and the shared budget.
    fn check_budget(&mut self, waiting: bool) -> Result<(), ChunkError> {
        let held = self.held(waiting);
        if held > self.limits.max_partial_bytes {
            return Err(ChunkError::PartialBudgetExceeded {
                held,
                max: self.limits.max_partial_bytes,
            });
        }
        if let Some(b) = &self.shared {
            if held > self.reserved {
                if !b.reserve(held - self.reserved) {
                    return Err(ChunkError::SharedBudgetExceeded { max: b.limit() });
                }
            } else {
                b.release(self.reserved - held);
            }
            self.reserved = held;
        }
        Ok(())
    }

    /// After an error: frees every partial message and returns the share.
    fn release_all(&mut self) {
        for st in &mut self.streams {
            st.partial = BytesMut::new();
            st.remaining = 0;
        }
        self.partial_total = 0;
        self.buf = BytesMut::new();
        self.current = None;
        if let Some(b) = &self.shared {
            b.release(self.reserved);
        }
        self.reserved = 0;
    }

    /// The limits this reader enforces.
    pub fn limits(&self) -> &ChunkLimits {
        &self.limits
    }

    /// Current inbound chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Sets the inbound chunk size (as a received Set Chunk Size does, RTMP
    /// spec §5.4.1). `0`, more than 2^31-1 or more than
    /// [`ChunkLimits::max_chunk_size`] is [`ChunkError::InvalidChunkSize`].
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE || size > self.limits.max_chunk_size {
            return Err(ChunkError::InvalidChunkSize {
                size,
                max: self.limits.max_chunk_size.min(MAX_CHUNK_SIZE),
            });
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Appends received bytes. Drain [`poll_message`](Self::poll_message)
    /// afterwards; bytes stay buffered until it consumes them.
    pub fn handle_input(&mut self, data: &[u8]) {
        self.bytes_received = self.bytes_received.wrapping_add(data.len() as u64);
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Capacity held by partial messages (for tests of the memory bounds).
    #[cfg(test)]
    pub(crate) fn partial_capacity(&self) -> usize {
        let sum = self.streams.iter().map(|s| s.partial.capacity()).sum();
        assert_eq!(sum, self.partial_total, "partial_total out of step");
        sum
    }

    /// Total bytes passed to [`handle_input`](Self::handle_input).
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// Bytes fed but not yet parsed.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Sets the acknowledgement window (RTMP spec §5.4.4); `0` disables
    /// acknowledgements. A received Window Acknowledgement Size message sets
    /// it too.
    pub fn set_ack_window(&mut self, window: u32) {
        self.ack_window = window;
    }

    /// The acknowledgement window in force (0: none).
    pub fn ack_window(&self) -> u32 {
        self.ack_window
    }

    /// `Some(sequence_number)` when at least one window of bytes arrived since
    /// the last acknowledgement: the caller sends an Acknowledgement
    /// (RTMP spec §5.4.3) carrying it (the byte count, mod 2^32).
    pub fn poll_ack(&mut self) -> Option<u32> {
        if self.ack_window == 0 {
            return None;
        }
        if self.bytes_received.wrapping_sub(self.last_ack) >= u64::from(self.ack_window) {
            self.last_ack = self.bytes_received;
            Some(self.bytes_received as u32)
        } else {
            None
        }
    }

    /// The next complete message, `Ok(None)` when more input is needed.
    pub fn poll_message(&mut self) -> Result<Option<RawMessage>, ChunkError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.poll_inner().and_then(|m| {
            self.check_budget(m.is_none())?;
            Ok(m)
        });
        match r {
            Ok(m) => Ok(m),
            Err(e) => {
                tracing::debug!(error = %e, "rtmp chunk stream error");
                self.release_all();
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn poll_inner(&mut self) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            let (idx, chunk_left) = match self.current {
                Some(c) => c,
                None => match self.parse_header()? {
                    Some(c) => c,
                    None => return Ok(None),
                },
            };
            let Some(st) = self.streams.get_mut(idx) else {
                // Unreachable by construction; fail closed rather than panic.
                self.current = None;
                return Err(ChunkError::Internal);
            };
            let left = chunk_left as usize;
            if st.partial.is_empty() && chunk_left == st.remaining && st.remaining == st.length {
                // Whole message in this one chunk: zero-copy slice.
                if self.buf.len() < left {
                    self.current = Some((idx, chunk_left));
                    return Ok(None);
                }
                self.current = None;
                st.remaining = 0;
                let payload = self.buf.split_to(left).freeze();
                let msg = RawMessage {
                    csid: st.csid,
                    timestamp: st.timestamp,
                    type_id: st.type_id,
                    stream_id: st.stream_id,
                    payload,
                };
                self.apply_control(&msg)?;
                return Ok(Some(msg));
            }
            if self.buf.is_empty() {
                self.current = Some((idx, chunk_left));
                return Ok(None);
            }
            // Copy this chunk's payload, then keep going through directly
            // following type-3 continuation chunks of the same message (the
            // common case) without returning to the general header parser.
            let cont = continuation_header(st, self.type3_extended);
            let chunk_size = self.chunk_size as usize;
            let data = &self.buf[..];
            let mut pos = 0usize;
            let mut left = left;
            let mut remaining = st.remaining as usize;
            let cap_before = st.partial.capacity();
            loop {
                let n = left.min(data.len() - pos);
                if let Some(src) = data.get(pos..pos + n) {
                    append_bounded(&mut st.partial, st.length as usize, src);
                }
                pos += n;
                left -= n;
                remaining -= n;
                if remaining == 0 || left > 0 {
                    break;
                }
                let Some((hdr, hlen)) = &cont else {
                    break;
                };
                let matched = if *hlen == 1 {
                    // The usual 1-byte basic header: skip the slice compare.
                    data.get(pos) == hdr.first()
                } else {
                    data.get(pos..pos + hlen) == hdr.get(..*hlen)
                };
                if !matched {
                    break;
                }
                pos += hlen;
                left = remaining.min(chunk_size);
            }
            self.buf.advance(pos);
            st.remaining = remaining as u32;
            self.partial_total =
                (self.partial_total + st.partial.capacity()).saturating_sub(cap_before);
            if remaining == 0 {
                self.current = None;
                self.partial_total = self.partial_total.saturating_sub(st.partial.capacity());
                let payload = std::mem::take(&mut st.partial).freeze();
                let msg = RawMessage {
                    csid: st.csid,
                    timestamp: st.timestamp,
                    type_id: st.type_id,
                    stream_id: st.stream_id,
                    payload,
                };
                self.apply_control(&msg)?;
                return Ok(Some(msg));
            }
            if left == 0 {
                self.current = None;
            } else {
                self.current = Some((idx, left as u32));
                return Ok(None);
            }
        }
    }

    /// Applies Set Chunk Size, Abort and Window Acknowledgement Size.
    fn apply_control(&mut self, msg: &RawMessage) -> Result<(), ChunkError> {
        let value = || -> Result<u32, ChunkError> {
            match msg.payload.get(..4) {
                Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
                _ => Err(ChunkError::MalformedControl {
                    type_id: msg.type_id,
                    len: msg.payload.len(),
                }),
            }
        };
        match msg.type_id {
            type_id::SET_CHUNK_SIZE => {
                let size = value()?;
                self.set_chunk_size(size)?;
                tracing::trace!(size, "rtmp inbound chunk size");
            }
            type_id::ABORT => {
                let csid = value()?;
                if let Some(st) = self.lookup(csid).and_then(|i| self.streams.get_mut(i)) {
                    st.remaining = 0;
                    self.partial_total = self.partial_total.saturating_sub(st.partial.capacity());
                    st.partial = BytesMut::new();
                }
            }
            type_id::WINDOW_ACK_SIZE => {
                self.ack_window = value()?;
            }
            _ => {}
        }
        Ok(())
    }

    fn lookup(&self, csid: u32) -> Option<usize> {
        match self.low_index.get(csid as usize) {
            Some(&i) if i != u32::MAX => Some(i as usize),
            Some(_) => None,
            None => self.high_index.get(&csid).copied(),
        }
    }

    /// Parses one chunk header if complete; consumes it and returns the
    /// chunk's stream index and payload length.
    fn parse_header(&mut self) -> Result<Option<(usize, u32)>, ChunkError> {
        let b = &self.buf[..];
        let Some(&b0) = b.first() else {
            return Ok(None);
        };
        let ty = ChunkType::from_fmt(b0 >> 6);
        let (csid, mut pos) = match b0 & 0x3F {
            0 => match b.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2usize),
                None => return Ok(None),
            },
            1 => match (b.get(1), b.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + u32::from(b1) + u32::from(b2) * 256, 3),
                _ => return Ok(None),
            },
            n => (u32::from(n), 1),
        };
        let Some(mh) = b.get(pos..pos + ty.message_header_len()) else {
            return Ok(None);
        };
        pos += mh.len();
        let idx = self.lookup(csid);
        let be24 = |i: usize| -> u32 {
            match mh.get(i..i + 3) {
                Some(&[x, y, z]) => u32::from_be_bytes([0, x, y, z]),
                _ => 0,
            }
        };
        let read_ext = |pos: usize| -> Option<u32> {
            match b.get(pos..pos + 4) {
                Some(&[w, x, y, z]) => Some(u32::from_be_bytes([w, x, y, z])),
                _ => None,
            }
        };

        if ty == ChunkType::Continuation {
            let Some(idx) = idx else {
                return Err(ChunkError::NoPreviousHeader { csid, fmt: 3 });
            };
            let Some(st) = self.streams.get(idx) else {
                return Err(ChunkError::Internal);
            };
            let mut type3_mode = self.type3_extended;
            if st.extended && type3_mode != Some(false) {
                let Some(v) = read_ext(pos) else {
                    return Ok(None);
                };
                let repeated = v == st.ts_field;
                if type3_mode.is_none() {
                    type3_mode = Some(repeated);
                }
                if type3_mode == Some(true) {
                    pos += 4;
                }
            }
            self.type3_extended = type3_mode;
            self.buf.advance(pos);
            let chunk_size = self.chunk_size;
            let st = self.streams.get_mut(idx).ok_or(ChunkError::Internal)?;
            if st.remaining == 0 {
                // A new message repeating the previous header (§5.3.1.2.4).
                st.timestamp = st.timestamp.wrapping_add(st.ts_field);
                st.remaining = st.length;
            }
            return Ok(Some((idx, st.remaining.min(chunk_size))));
        }

        let ts24 = be24(0);
        let extended = ts24 == EXTENDED_TIMESTAMP_MARKER;
        let ts_field = if extended {
            match read_ext(pos) {
                Some(v) => {
                    pos += 4;
                    v
                }
                None => return Ok(None),
            }
        } else {
            ts24
        };
        let (length, msg_type) = match ty {
            ChunkType::Full | ChunkType::SameStream => {
                (be24(3), mh.get(6).copied().unwrap_or_default())
            }
            _ => (0, 0),
        };
        let stream_id = match mh.get(7..11) {
            Some(&[w, x, y, z]) if ty == ChunkType::Full => u32::from_le_bytes([w, x, y, z]),
            _ => 0,
        };

        let idx = match idx {
            Some(i) => i,
            None => {
                if ty != ChunkType::Full {
                    return Err(ChunkError::NoPreviousHeader {
                        csid,
                        fmt: ty as u8,
                    });
                }
                if self.streams.len() >= self.limits.max_chunk_streams {
                    return Err(ChunkError::TooManyChunkStreams {
                        max: self.limits.max_chunk_streams,
                    });
                }
                self.streams.push(ChunkStream {
                    csid,
                    timestamp: 0,
                    ts_field: 0,
                    extended: false,
                    length: 0,
                    type_id: 0,
                    stream_id: 0,
                    remaining: 0,
                    partial: BytesMut::new(),
                });
                let i = self.streams.len() - 1;
                match self.low_index.get_mut(csid as usize) {
                    Some(slot) => *slot = i as u32,
                    None => {
                        self.high_index.insert(csid, i);
                    }
                }
                i
            }
        };
        let max_len = self.limits.max_message_len;
        let chunk_size = self.chunk_size;
        let st = self.streams.get_mut(idx).ok_or(ChunkError::Internal)?;
        if st.remaining > 0 {
            // A full header in the middle of a message: tolerated only when it
            // repeats the message's length and type (continuation).
            if matches!(ty, ChunkType::Full | ChunkType::SameStream)
                && (length != st.length || msg_type != st.type_id)
            {
                return Err(ChunkError::LengthChangedMidMessage {
                    csid,
                    old: st.length,
                    new: length,
                });
            }
            self.buf.advance(pos);
            return Ok(Some((idx, st.remaining.min(chunk_size))));
        }
        if matches!(ty, ChunkType::Full | ChunkType::SameStream) && length > max_len {
            return Err(ChunkError::MessageTooLong {
                csid,
                len: length,
                max: max_len,
            });
        }
        match ty {
            ChunkType::Full => {
                st.timestamp = ts_field;
                st.length = length;
                st.type_id = msg_type;
                st.stream_id = stream_id;
            }
            ChunkType::SameStream => {
                st.timestamp = st.timestamp.wrapping_add(ts_field);
                st.length = length;
                st.type_id = msg_type;
            }
            _ => {
                st.timestamp = st.timestamp.wrapping_add(ts_field);
            }
        }
        st.ts_field = ts_field;
        st.extended = extended;
        st.remaining = st.length;
        self.buf.advance(pos);
        Ok(Some((idx, st.remaining.min(chunk_size))))
    }
}
