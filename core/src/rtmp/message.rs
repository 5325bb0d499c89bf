//! RTMP message types: type ids, protocol control messages (RTMP spec §5.4),
//! user control messages (RTMP spec §6.2, §7.1.7) and the aggregate message
//! splitter (RTMP spec §7.1.6).

use bytes::{BufMut, Bytes, BytesMut};

use super::chunk::{RawMessage, PROTOCOL_CONTROL_CSID};

/// Message type ids (RTMP spec §5.4, §6.2, §7.1).
pub mod type_id {
    /// Set Chunk Size (RTMP spec §5.4.1).
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message (RTMP spec §5.4.2).
    pub const ABORT: u8 = 2;
    /// Acknowledgement (RTMP spec §5.4.3).
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message (RTMP spec §6.2).
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size (RTMP spec §5.4.4).
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth (RTMP spec §5.4.5).
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio message (RTMP spec §7.1.4).
    pub const AUDIO: u8 = 8;
    /// Video message (RTMP spec §7.1.5).
    pub const VIDEO: u8 = 9;
    /// Data message, AMF3 (RTMP spec §7.1.2).
    pub const DATA_AMF3: u8 = 15;
    /// Shared object message, AMF3 (RTMP spec §7.1.3).
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    /// Command message, AMF3 (RTMP spec §7.1.1).
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message, AMF0 (RTMP spec §7.1.2).
    pub const DATA_AMF0: u8 = 18;
    /// Shared object message, AMF0 (RTMP spec §7.1.3).
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    /// Command message, AMF0 (RTMP spec §7.1.1).
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate message (RTMP spec §7.1.6).
    pub const AGGREGATE: u8 = 22;
}

/// A malformed control, user control or aggregate message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The payload is shorter than the message type requires.
    #[error("message type {type_id}: payload of {len} bytes, need {need}")]
    Truncated {
        /// Message type id.
        type_id: u8,
        /// Payload length.
        len: usize,
        /// Bytes required.
        need: usize,
    },
    /// The type id is not a protocol control message type (1, 2, 3, 5, 6).
    #[error("message type {0} is not a protocol control message")]
    NotProtocolControl(u8),
    /// Set Peer Bandwidth with a limit type other than 0, 1, 2 (RTMP spec §5.4.5).
    #[error("invalid Set Peer Bandwidth limit type {0}")]
    InvalidLimitType(u8),
    /// An aggregate sub-message runs past the end of the aggregate payload.
    #[error("aggregate message truncated at offset {offset}")]
    AggregateTruncated {
        /// Offset of the truncated sub-message header.
        offset: usize,
    },
}

/// Limit type of Set Peer Bandwidth (RTMP spec §5.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerBandwidthLimit {
    /// 0: limit output bandwidth to the window size.
    Hard = 0,
    /// 1: limit to the window or the limit in effect, whichever is smaller.
    Soft = 1,
    /// 2: hard if the previous limit was hard, else ignore.
    Dynamic = 2,
}

/// A protocol control message (RTMP spec §5.4), sent on chunk stream 2,
/// message stream 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolControl {
    /// Set Chunk Size (type 1): new maximum chunk size, 1..=2^31-1 (§5.4.1).
    SetChunkSize(u32),
    /// Abort Message (type 2): discard the partial message on this chunk
    /// stream id (§5.4.2).
    Abort(u32),
    /// Acknowledgement (type 3): bytes received so far, mod 2^32 (§5.4.3).
    Acknowledgement(u32),
    /// Window Acknowledgement Size (type 5): acknowledge every this many bytes (§5.4.4).
    WindowAckSize(u32),
    /// Set Peer Bandwidth (type 6): window size and limit type (§5.4.5).
    SetPeerBandwidth {
        /// Window size in bytes.
        window: u32,
        /// Limit type.
        limit: PeerBandwidthLimit,
    },
}

fn be32(payload: &[u8], type_id: u8, need: usize) -> Result<u32, MessageError> {
    crate::big_endian::read_be(payload, 0, 4).ok_or(MessageError::Truncated {
        type_id,
        len: payload.len(),
        need,
    })
}

impl ProtocolControl {
    /// Decodes a protocol control message payload of type `type_id`.
    /// Trailing bytes are ignored.
    pub fn decode(type_id: u8, payload: &[u8]) -> Result<Self, MessageError> {
        match type_id {
            type_id::SET_CHUNK_SIZE => Ok(ProtocolControl::SetChunkSize(
                be32(payload, type_id, 4)? & 0x7FFF_FFFF,
            )),
            type_id::ABORT => Ok(ProtocolControl::Abort(be32(payload, type_id, 4)?)),
            type_id::ACKNOWLEDGEMENT => {
                Ok(ProtocolControl::Acknowledgement(be32(payload, type_id, 4)?))
            }
            type_id::WINDOW_ACK_SIZE => {
                Ok(ProtocolControl::WindowAckSize(be32(payload, type_id, 4)?))
            }
            type_id::SET_PEER_BANDWIDTH => {
                let window = be32(payload, type_id, 5)?;
                let limit = match payload.get(4) {
                    Some(0) => PeerBandwidthLimit::Hard,
                    Some(1) => PeerBandwidthLimit::Soft,
                    Some(2) => PeerBandwidthLimit::Dynamic,
                    Some(&other) => return Err(MessageError::InvalidLimitType(other)),
                    None => {
                        return Err(MessageError::Truncated {
                            type_id,
                            len: payload.len(),
                            need: 5,
                        })
                    }
                };
                Ok(ProtocolControl::SetPeerBandwidth { window, limit })
            }
            other => Err(MessageError::NotProtocolControl(other)),
        }
    }

    /// The message type id of this message.
    pub fn type_id(&self) -> u8 {
        match self {
            ProtocolControl::SetChunkSize(_) => type_id::SET_CHUNK_SIZE,
            ProtocolControl::Abort(_) => type_id::ABORT,
            ProtocolControl::Acknowledgement(_) => type_id::ACKNOWLEDGEMENT,
            ProtocolControl::WindowAckSize(_) => type_id::WINDOW_ACK_SIZE,
            ProtocolControl::SetPeerBandwidth { .. } => type_id::SET_PEER_BANDWIDTH,
        }
    }

    /// The payload bytes (4 bytes, 5 for Set Peer Bandwidth).
    pub fn encode_payload(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(5);
        match *self {
            ProtocolControl::SetChunkSize(v) => b.put_u32(v & 0x7FFF_FFFF),
            ProtocolControl::Abort(v)
            | ProtocolControl::Acknowledgement(v)
            | ProtocolControl::WindowAckSize(v) => b.put_u32(v),
            ProtocolControl::SetPeerBandwidth { window, limit } => {
                b.put_u32(window);
                b.put_u8(limit as u8);
            }
        }
        b.freeze()
    }

    /// The whole message: chunk stream 2, message stream 0, timestamp 0.
    pub fn to_message(&self) -> RawMessage {
        RawMessage {
            csid: PROTOCOL_CONTROL_CSID,
            timestamp: 0,
            type_id: self.type_id(),
            stream_id: 0,
            payload: self.encode_payload(),
        }
    }
}

/// A User Control message (type 4, RTMP spec §6.2 and §7.1.7): a 16-bit
/// event type and its data, sent on chunk stream 2, message stream 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserControl {
    /// Event 0: the stream became functional.
    StreamBegin(u32),
    /// Event 1: playback of the stream ended.
    StreamEof(u32),
    /// Event 2: no more data on the stream.
    StreamDry(u32),
    /// Event 3: the client's buffer length in milliseconds.
    SetBufferLength {
        /// Message stream id.
        stream_id: u32,
        /// Buffer length in milliseconds.
        buffer_ms: u32,
    },
    /// Event 4: the stream is a recorded stream.
    StreamIsRecorded(u32),
    /// Event 6: ping from the server, carrying its local time.
    PingRequest(u32),
    /// Event 7: the answer to a ping, echoing its timestamp.
    PingResponse(u32),
    /// Any other event type (e.g. 0x1A SWF verification, 0x1F/0x20 buffer
    /// empty/ready), kept as raw data.
    Other {
        /// Event type.
        event_type: u16,
        /// Event data.
        data: Bytes,
    },
}

impl UserControl {
    /// Stream Begin event type (RTMP spec §7.1.7).
    pub const STREAM_BEGIN: u16 = 0;
    /// Stream EOF event type.
    pub const STREAM_EOF: u16 = 1;
    /// Stream Dry event type.
    pub const STREAM_DRY: u16 = 2;
    /// Set Buffer Length event type.
    pub const SET_BUFFER_LENGTH: u16 = 3;
    /// Stream Is Recorded event type.
    pub const STREAM_IS_RECORDED: u16 = 4;
    /// Ping Request event type.
    pub const PING_REQUEST: u16 = 6;
    /// Ping Response event type.
    pub const PING_RESPONSE: u16 = 7;

    /// Decodes a User Control message payload.
    pub fn decode(payload: &Bytes) -> Result<Self, MessageError> {
        let truncated = |need| MessageError::Truncated {
            type_id: type_id::USER_CONTROL,
            len: payload.len(),
            need,
        };
        let event_type = match payload.get(..2) {
            Some(&[a, b]) => u16::from_be_bytes([a, b]),
            _ => return Err(truncated(2)),
        };
        let data = payload.get(2..).unwrap_or_default();
        let word = |i: usize| -> Result<u32, MessageError> {
            match data.get(i..i + 4) {
                Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
                _ => Err(truncated(2 + i + 4)),
            }
        };
        Ok(match event_type {
            Self::STREAM_BEGIN => UserControl::StreamBegin(word(0)?),
            Self::STREAM_EOF => UserControl::StreamEof(word(0)?),
            Self::STREAM_DRY => UserControl::StreamDry(word(0)?),
            Self::SET_BUFFER_LENGTH => UserControl::SetBufferLength {
                stream_id: word(0)?,
                buffer_ms: word(4)?,
            },
            Self::STREAM_IS_RECORDED => UserControl::StreamIsRecorded(word(0)?),
            Self::PING_REQUEST => UserControl::PingRequest(word(0)?),
            Self::PING_RESPONSE => UserControl::PingResponse(word(0)?),
            other => UserControl::Other {
                event_type: other,
                data: payload.slice(2..),
            },
        })
    }

    /// The event type.
    pub fn event_type(&self) -> u16 {
        match self {
            UserControl::StreamBegin(_) => Self::STREAM_BEGIN,
            UserControl::StreamEof(_) => Self::STREAM_EOF,
            UserControl::StreamDry(_) => Self::STREAM_DRY,
            UserControl::SetBufferLength { .. } => Self::SET_BUFFER_LENGTH,
            UserControl::StreamIsRecorded(_) => Self::STREAM_IS_RECORDED,
            UserControl::PingRequest(_) => Self::PING_REQUEST,
            UserControl::PingResponse(_) => Self::PING_RESPONSE,
            UserControl::Other { event_type, .. } => *event_type,
        }
    }

    /// The payload bytes: event type then event data.
    pub fn encode_payload(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(10);
        b.put_u16(self.event_type());
        match self {
            UserControl::StreamBegin(v)
            | UserControl::StreamEof(v)
            | UserControl::StreamDry(v)
            | UserControl::StreamIsRecorded(v)
            | UserControl::PingRequest(v)
            | UserControl::PingResponse(v) => b.put_u32(*v),
            UserControl::SetBufferLength {
                stream_id,
                buffer_ms,
            } => {
                b.put_u32(*stream_id);
                b.put_u32(*buffer_ms);
            }
            UserControl::Other { data, .. } => b.put_slice(data),
        }
        b.freeze()
    }

    /// The whole message: type 4 on chunk stream 2, message stream 0,
    /// timestamp 0.
    pub fn to_message(&self) -> RawMessage {
        RawMessage {
            csid: PROTOCOL_CONTROL_CSID,
            timestamp: 0,
            type_id: type_id::USER_CONTROL,
            stream_id: 0,
            payload: self.encode_payload(),
        }
    }
}

/// Splits an aggregate message (type 22, RTMP spec §7.1.6) into its
/// sub-messages.
///
/// The body is a sequence of FLV-tag-like records: type (1), length (3),
/// timestamp (3 + 1 extension byte, upper 8 bits), stream id (3), data, and a
/// 4-byte back pointer. Sub-message timestamps are rebased so the first one
/// gets the aggregate's timestamp; the aggregate's chunk stream and message
/// stream ids override the sub-messages' own. Payloads are zero-copy slices.
/// Iteration stops after the first error.
#[derive(Debug, Clone)]
pub struct AggregateIter {
    csid: u32,
    stream_id: u32,
    base: u32,
    first_ts: Option<u32>,
    payload: Bytes,
    offset: usize,
    done: bool,
}

/// Returns an iterator over the sub-messages of aggregate message `msg`.
pub fn split_aggregate(msg: &RawMessage) -> AggregateIter {
    AggregateIter {
        csid: msg.csid,
        stream_id: msg.stream_id,
        base: msg.timestamp,
        first_ts: None,
        payload: msg.payload.clone(),
        offset: 0,
        done: false,
    }
}

impl Iterator for AggregateIter {
    type Item = Result<RawMessage, MessageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.offset >= self.payload.len() {
            return None;
        }
        let off = self.offset;
        let truncated = MessageError::AggregateTruncated { offset: off };
        let Some(&[ty, l0, l1, l2, t0, t1, t2, t3, _, _, _]) = self.payload.get(off..off + 11)
        else {
            self.done = true;
            return Some(Err(truncated));
        };
        let len = u32::from_be_bytes([0, l0, l1, l2]) as usize;
        let ts = u32::from_be_bytes([t3, t0, t1, t2]);
        let start = off + 11;
        let end = start + len;
        if end > self.payload.len() {
            self.done = true;
            return Some(Err(truncated));
        }
        let data = self.payload.slice(start..end);
        // Back pointer (previous tag size); a missing one at the very end is
        // tolerated, a partial one is not.
        let rest = self.payload.len() - end;
        if rest == 0 {
            self.offset = end;
        } else if rest < 4 {
            self.done = true;
            return Some(Err(MessageError::AggregateTruncated { offset: end }));
        } else {
            self.offset = end + 4;
        }
        let first = *self.first_ts.get_or_insert(ts);
        Some(Ok(RawMessage {
            csid: self.csid,
            timestamp: self.base.wrapping_add(ts.wrapping_sub(first)),
            type_id: ty,
            stream_id: self.stream_id,
            payload: data,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn protocol_control_round_trip() {
        let all = [
            ProtocolControl::SetChunkSize(4096),
            ProtocolControl::SetChunkSize(0x7FFF_FFFF),
            ProtocolControl::Abort(5),
            ProtocolControl::Acknowledgement(u32::MAX),
            ProtocolControl::WindowAckSize(2_500_000),
            ProtocolControl::SetPeerBandwidth {
                window: 2_500_000,
                limit: PeerBandwidthLimit::Dynamic,
            },
            ProtocolControl::SetPeerBandwidth {
                window: 1,
                limit: PeerBandwidthLimit::Hard,
            },
        ];
        for pc in all {
            let m = pc.to_message();
            assert_eq!(m.csid, 2);
            assert_eq!(m.stream_id, 0);
            assert_eq!(ProtocolControl::decode(m.type_id, &m.payload), Ok(pc));
        }
        assert_eq!(
            &ProtocolControl::WindowAckSize(0x0102_0304).encode_payload()[..],
            &[1, 2, 3, 4]
        );
        assert_eq!(
            &ProtocolControl::SetPeerBandwidth {
                window: 0x0102_0304,
                limit: PeerBandwidthLimit::Soft
            }
            .encode_payload()[..],
            &[1, 2, 3, 4, 1]
        );
    }

    #[test]
    fn protocol_control_errors() {
        assert_eq!(
            ProtocolControl::decode(type_id::SET_CHUNK_SIZE, &[0, 0, 1]),
            Err(MessageError::Truncated {
                type_id: 1,
                len: 3,
                need: 4
            })
        );
        assert_eq!(
            ProtocolControl::decode(type_id::SET_PEER_BANDWIDTH, &[0, 0, 1, 0]),
            Err(MessageError::Truncated {
                type_id: 6,
                len: 4,
                need: 5
            })
        );
        assert_eq!(
            ProtocolControl::decode(type_id::SET_PEER_BANDWIDTH, &[0, 0, 1, 0, 3]),
            Err(MessageError::InvalidLimitType(3))
        );
        assert_eq!(
            ProtocolControl::decode(type_id::VIDEO, &[0, 0, 1, 0]),
            Err(MessageError::NotProtocolControl(9))
        );
    }

    #[test]
    fn user_control_round_trip() {
        let all = [
            UserControl::StreamBegin(1),
            UserControl::StreamEof(1),
            UserControl::StreamDry(2),
            UserControl::SetBufferLength {
                stream_id: 1,
                buffer_ms: 3000,
            },
            UserControl::StreamIsRecorded(1),
            UserControl::PingRequest(123_456),
            UserControl::PingResponse(123_456),
            UserControl::Other {
                event_type: 0x1F,
                data: Bytes::from_static(&[0, 0, 0, 1]),
            },
        ];
        for uc in all {
            let m = uc.to_message();
            assert_eq!(m.type_id, type_id::USER_CONTROL);
            assert_eq!((m.csid, m.stream_id), (2, 0));
            assert_eq!(UserControl::decode(&m.payload), Ok(uc));
        }
        assert_eq!(
            &UserControl::PingResponse(0x0A0B_0C0D).encode_payload()[..],
            &[0, 7, 0x0A, 0x0B, 0x0C, 0x0D]
        );
    }

    #[test]
    fn user_control_truncated() {
        assert!(matches!(
            UserControl::decode(&Bytes::from_static(&[0])),
            Err(MessageError::Truncated { need: 2, .. })
        ));
        assert!(matches!(
            UserControl::decode(&Bytes::from_static(&[0, 6, 1, 2])),
            Err(MessageError::Truncated { need: 6, .. })
        ));
        assert!(matches!(
            UserControl::decode(&Bytes::from_static(&[0, 3, 0, 0, 0, 1, 0, 0])),
            Err(MessageError::Truncated { need: 10, .. })
        ));
    }

    fn sub(ty: u8, ts: u32, data: &[u8]) -> Vec<u8> {
        let mut v = vec![ty];
        v.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        v.extend_from_slice(&ts.to_be_bytes()[1..]);
        v.push((ts >> 24) as u8);
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(data);
        v.extend_from_slice(&(11 + data.len() as u32).to_be_bytes());
        v
    }

    #[test]
    fn aggregate_split_rebases_timestamps() {
        let mut body = sub(type_id::VIDEO, 0x0100_0000 + 500, b"video-1");
        body.extend(sub(type_id::AUDIO, 0x0100_0000 + 520, b"aa"));
        body.extend(sub(type_id::VIDEO, 0x0100_0000 + 540, b""));
        let agg = RawMessage {
            csid: 6,
            timestamp: 1000,
            type_id: type_id::AGGREGATE,
            stream_id: 1,
            payload: Bytes::from(body),
        };
        let got: Vec<_> = split_aggregate(&agg).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got.iter().map(|m| m.timestamp).collect::<Vec<_>>(),
            vec![1000, 1020, 1040]
        );
        assert_eq!(&got[0].payload[..], b"video-1");
        assert_eq!(got[1].type_id, type_id::AUDIO);
        assert!(got.iter().all(|m| m.stream_id == 1 && m.csid == 6));
    }

    #[test]
    fn aggregate_truncated_is_error() {
        let mut body = sub(type_id::VIDEO, 0, b"12345");
        body.truncate(body.len() - 6); // cut into the data
        let agg = RawMessage {
            csid: 6,
            timestamp: 0,
            type_id: type_id::AGGREGATE,
            stream_id: 1,
            payload: Bytes::from(body),
        };
        let got: Vec<_> = split_aggregate(&agg).collect();
        assert_eq!(
            got,
            vec![Err(MessageError::AggregateTruncated { offset: 0 })]
        );
        // Missing final back pointer is tolerated; a partial one is not.
        let mut body = sub(type_id::VIDEO, 0, b"12345");
        body.truncate(body.len() - 4);
        let agg = RawMessage {
            payload: Bytes::from(body.clone()),
            ..agg
        };
        assert_eq!(split_aggregate(&agg).filter(Result::is_ok).count(), 1);
        body.push(0);
        let agg = RawMessage {
            payload: Bytes::from(body),
            ..agg
        };
        let got: Vec<_> = split_aggregate(&agg).collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].is_err());
    }
}
