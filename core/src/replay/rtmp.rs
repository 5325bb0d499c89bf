//! Replaying one RTMP connection: the client→server bytes drive a
//! [`ServerConnection`] (RTMP spec §5, §7) with the capture's timestamps as
//! `now`; the server→client bytes are decoded by a passive observer (chunk
//! stream reader and FLV demuxer, RTMP spec §5.3, FLV spec Annex E) so that a
//! play session's media is seen too.
//!
//! Invariants:
//! - every request is accepted (the capture shows what the real server did;
//!   a rejected publish appears as the peer's later behaviour);
//! - after a gap in a direction nothing more of it is fed: the chunk stream
//!   cannot be resynchronised without inventing bytes;
//! - the machine's output is kept up to [`RtmpReplayLimits::max_output`]
//!   bytes; the length is always counted.

use bytes::{Bytes, BytesMut};

use super::tcp::StreamEvent;
use super::{Direction, EventKind, ReplayEvent};
use crate::engine::{Publisher, Recv, Subscriber};
use crate::rtmp::amf::amf0::decode_all;
use crate::rtmp::chunk::{ChunkLimits, ChunkReader, RawMessage};
use crate::rtmp::flv::FlvDemux;
use crate::rtmp::handshake::ServerHandshake;
use crate::rtmp::message::{split_aggregate, type_id, UserControl};
use crate::rtmp::{ServerConfig, ServerConnection, ServerEvent};
use crate::session::CloseReason;
use crate::time::Instant;
use crate::{AppConfig, StreamKey};

/// Bounds of an RTMP replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtmpReplayLimits {
    /// Machine output kept for comparison, in bytes (default 64 MiB).
    pub max_output: usize,
}

impl Default for RtmpReplayLimits {
    fn default() -> Self {
        RtmpReplayLimits {
            max_output: 64 << 20,
        }
    }
}

/// Size of C0+C1 and of S0+S1+S2 (RTMP spec §5.2).
const C0C1_LEN: usize = 1 + 1536;
const S0S1S2_LEN: usize = 1 + 2 * 1536;

/// SplitMix64 increment (the state step of the handshake PRNG).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Multiplicative inverse of an odd `a` modulo 2^64 (Newton iteration).
pub(super) const fn inverse(a: u64) -> u64 {
    let mut x = a; // correct to 3 bits for odd a
    let mut i = 0;
    while i < 6 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
}

/// Inverts `x ^= x >> s`.
fn unshift(y: u64, s: u32) -> u64 {
    let mut x = y;
    let mut i = 0;
    while i < 64 / s + 1 {
        x = y ^ (x >> s);
        i += 1;
    }
    x
}

/// The SplitMix64 state that produced `out` (the output mix is a bijection).
fn unmix(out: u64) -> u64 {
    let mut z = unshift(out, 31);
    z = z.wrapping_mul(inverse(0x94D0_49BB_1331_11EB));
    z = unshift(z, 27);
    z = z.wrapping_mul(inverse(0xBF58_476D_1CE4_E5B9));
    unshift(z, 30)
}

/// Learns the seed a [`ServerConnection`] was created with from the
/// handshake it sent: S1's random bytes are consecutive SplitMix64 outputs
/// from that seed, and SplitMix64's output function can be inverted. Each
/// 8-byte block of S1 yields a candidate; the candidate is confirmed by
/// answering `c0c1` with it and comparing all of S0+S1+S2. `None` when the
/// server was not arcly (or the handshake bytes are missing).
pub fn learn_server_seed(c0c1: &[u8], s0s1s2: &[u8]) -> Option<u64> {
    let c0c1 = c0c1.get(..C0C1_LEN)?;
    let s0s1s2 = s0s1s2.get(..S0S1S2_LEN)?;
    // S1 = s0s1s2[1..1537]; random fill starts at S1 byte 8.
    let s1_random = s0s1s2.get(9..C0C1_LEN)?;
    for (k, block) in s1_random.chunks_exact(8).enumerate().take(8) {
        let v = u64::from_le_bytes(block.try_into().ok()?);
        let state = unmix(v);
        let seed = state.wrapping_sub(GAMMA.wrapping_mul(k as u64 + 1));
        let mut hs = ServerHandshake::new(seed);
        if hs.handle_input(c0c1).is_err() {
            return None;
        }
        let mut out = Vec::with_capacity(S0S1S2_LEN);
        while let Some(b) = hs.poll_transmit() {
            out.extend_from_slice(&b);
        }
        if out == s0s1s2 {
            return Some(seed);
        }
    }
    None
}

/// The first `n` bytes of a direction (before any gap), for seed learning.
pub(super) fn prefix(events: &[StreamEvent], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    for e in events {
        match e {
            StreamEvent::Data { data, .. } => {
                let take = (n - out.len()).min(data.len());
                out.extend_from_slice(data.get(..take).unwrap_or_default());
                if out.len() >= n {
                    break;
                }
            }
            _ => break,
        }
    }
    out
}

/// 32-bit RTMP timestamps extended past the wrap (RTMP spec §5.3.1.1).
type TsExt = crate::time::WrapExtender<32>;

/// Decodes what a server sent to its client, without answering.
struct Observer {
    handshake_left: usize,
    reader: ChunkReader,
    demux: FlvDemux,
    audio_ts: TsExt,
    video_ts: TsExt,
    dead: bool,
}

impl Observer {
    fn new() -> Self {
        Observer {
            handshake_left: S0S1S2_LEN,
            reader: ChunkReader::new(ChunkLimits::default()),
            demux: FlvDemux::new(),
            audio_ts: TsExt::default(),
            video_ts: TsExt::default(),
            dead: false,
        }
    }

    fn input(&mut self, data: &[u8], out: &mut Vec<EventKind>) {
        if self.dead {
            return;
        }
        let skip = self.handshake_left.min(data.len());
        self.handshake_left -= skip;
        let rest = data.get(skip..).unwrap_or_default();
        if rest.is_empty() {
            return;
        }
        self.reader.handle_input(rest);
        loop {
            match self.reader.poll_message() {
                Ok(Some(m)) => self.message(&m, out),
                Ok(None) => break,
                Err(e) => {
                    out.push(EventKind::Error {
                        message: format!("server→client chunk stream: {e}"),
                    });
                    self.dead = true;
                    break;
                }
            }
        }
    }

    fn message(&mut self, m: &RawMessage, out: &mut Vec<EventKind>) {
        match m.type_id {
            type_id::AUDIO | type_id::VIDEO => {
                if m.payload.is_empty() {
                    return;
                }
                let r = if m.type_id == type_id::AUDIO {
                    let ts = self.audio_ts.extend(u64::from(m.timestamp));
                    self.demux.audio(ts, m.payload.clone())
                } else {
                    let ts = self.video_ts.extend(u64::from(m.timestamp));
                    self.demux.video(ts, m.payload.clone())
                };
                match r {
                    Ok(Some(f)) => out.push(EventKind::Frame(f)),
                    Ok(None) => {}
                    Err(e) => out.push(EventKind::Error {
                        message: format!("server→client media tag dropped: {e}"),
                    }),
                }
            }
            type_id::DATA_AMF0 => {
                if let Ok(values) = decode_all(&m.payload) {
                    let name = values.first().and_then(|v| v.as_str()).unwrap_or_default();
                    if name == "onMetaData" {
                        out.push(EventKind::Metadata {
                            body: m.payload.clone(),
                        });
                    }
                }
            }
            type_id::COMMAND_AMF0 => {
                if let Ok(values) = decode_all(&m.payload) {
                    let name = values.first().and_then(|v| v.as_str()).unwrap_or_default();
                    if name == "onStatus" {
                        let code = values
                            .iter()
                            .find_map(|v| v.get("code").and_then(|c| c.as_str()))
                            .unwrap_or_default()
                            .to_owned();
                        out.push(EventKind::Status { code });
                    }
                }
            }
            type_id::USER_CONTROL => {
                if let Ok(UserControl::StreamEof(_)) = UserControl::decode(&m.payload) {
                    out.push(EventKind::End {
                        reason: "StreamEOF".into(),
                    });
                }
            }
            type_id::AGGREGATE => {
                for sub in split_aggregate(m) {
                    match sub {
                        Ok(sub) => self.message(&sub, out),
                        Err(e) => {
                            out.push(EventKind::Error {
                                message: format!("server→client aggregate: {e}"),
                            });
                            break;
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// The result of replaying one RTMP connection.
#[derive(Debug, Clone)]
pub(super) struct RtmpOutcome {
    pub events: Vec<ReplayEvent>,
    pub output: Bytes,
    pub output_len: u64,
    pub captured_output: Bytes,
    pub seed: u64,
    pub seed_learned: bool,
}

/// Feeds the media the server sent back into the machine as the engine would.
struct Feeder {
    publisher: Publisher,
    subscriber: Subscriber,
}

impl Feeder {
    fn new() -> Option<Feeder> {
        let key = StreamKey::new("replay", "replay").ok()?;
        let publisher = Publisher::detached(key, AppConfig::default());
        let subscriber = publisher.subscribe().ok()?;
        Some(Feeder {
            publisher,
            subscriber,
        })
    }
}

#[derive(Default)]
struct DirState {
    stopped: bool,
}

/// Replays one connection. `events` are both directions' stream events in
/// capture order with their direction.
pub(super) fn replay(
    flow: usize,
    merged: &[(Direction, StreamEvent)],
    seed: Option<u64>,
    start: Instant,
    limits: RtmpReplayLimits,
) -> RtmpOutcome {
    let to_server: Vec<StreamEvent> = merged
        .iter()
        .filter(|(d, _)| *d == Direction::ToServer)
        .map(|(_, e)| e.clone())
        .collect();
    let to_client: Vec<StreamEvent> = merged
        .iter()
        .filter(|(d, _)| *d == Direction::ToClient)
        .map(|(_, e)| e.clone())
        .collect();
    let (seed, seed_learned) = match seed {
        Some(s) => (s, false),
        None => match learn_server_seed(
            &prefix(&to_server, C0C1_LEN),
            &prefix(&to_client, S0S1S2_LEN),
        ) {
            Some(s) => (s, true),
            None => (super::DEFAULT_SEED, false),
        },
    };

    let mut conn = ServerConnection::new(ServerConfig::default(), start, seed);
    let mut observer = Observer::new();
    let mut feeder: Option<Feeder> = None;
    let mut events = Vec::new();
    let mut output = BytesMut::new();
    let mut output_len = 0u64;
    let mut captured = BytesMut::new();
    let mut dirs = [DirState::default(), DirState::default()];
    let mut kinds = Vec::new();

    for (dir, ev) in merged {
        let time = ev.time();
        let packet = ev.packet();
        let push = |events: &mut Vec<ReplayEvent>, dir: Direction, kind: EventKind| {
            events.push(ReplayEvent {
                flow,
                time,
                packet,
                dir,
                kind,
            });
        };
        let state = match dir {
            Direction::ToServer => &mut dirs[0],
            Direction::ToClient => &mut dirs[1],
        };
        match ev {
            StreamEvent::Gap { offset, len, .. } => {
                push(
                    &mut events,
                    *dir,
                    EventKind::Gap {
                        offset: *offset,
                        len: *len,
                    },
                );
                if !state.stopped {
                    state.stopped = true;
                    push(
                        &mut events,
                        *dir,
                        EventKind::Error {
                            message: format!(
                                "{len} bytes missing at offset {offset}: no more input of this direction is replayed"
                            ),
                        },
                    );
                }
                continue;
            }
            _ if state.stopped => continue,
            _ => {}
        }
        match dir {
            Direction::ToServer => {
                // Timers first: what the real server would have fired before
                // this input arrived.
                for _ in 0..4 {
                    match conn.poll_timeout() {
                        Some(d) if d <= time => conn.handle_timeout(d),
                        _ => break,
                    }
                }
                match ev {
                    StreamEvent::Data { data, .. } => conn.handle_input(time, data),
                    StreamEvent::Fin { .. } | StreamEvent::Reset { .. } => {
                        conn.handle_input(time, &[]);
                    }
                    StreamEvent::Gap { .. } => {}
                }
            }
            Direction::ToClient => match ev {
                StreamEvent::Data { data, .. } => {
                    if captured.len() < limits.max_output {
                        let take = (limits.max_output - captured.len()).min(data.len());
                        captured.extend_from_slice(data.get(..take).unwrap_or_default());
                    }
                    kinds.clear();
                    observer.input(data, &mut kinds);
                    for k in kinds.drain(..) {
                        // A play session: what the server played goes back
                        // through the machine, as the engine fed it.
                        if conn.is_playing() {
                            match &k {
                                EventKind::Frame(f) => {
                                    if feeder.is_none() {
                                        feeder = Feeder::new();
                                    }
                                    if let Some(fd) = &mut feeder {
                                        fd.publisher.send(f.clone());
                                        while let Recv::Frame(sf) = fd.subscriber.recv() {
                                            conn.send_frame(&sf);
                                        }
                                    }
                                }
                                EventKind::Metadata { body } => conn.send_metadata(body),
                                _ => {}
                            }
                        }
                        push(&mut events, *dir, k);
                    }
                }
                StreamEvent::Fin { .. } | StreamEvent::Reset { .. } => {}
                StreamEvent::Gap { .. } => {}
            },
        }
        while let Some(se) = conn.poll_event() {
            let kind = match se {
                ServerEvent::Connected { app, tc_url } => EventKind::Connected { app, tc_url },
                ServerEvent::PublishRequest {
                    token,
                    app,
                    stream_name,
                    query,
                } => {
                    conn.accept_publish(token);
                    EventKind::Publish {
                        app,
                        stream: stream_name,
                        query,
                    }
                }
                ServerEvent::PlayRequest {
                    token,
                    app,
                    stream_name,
                    query,
                    ..
                } => {
                    conn.accept_play(token);
                    EventKind::Play {
                        app,
                        stream: stream_name,
                        query,
                    }
                }
                ServerEvent::Frame(f) => EventKind::Frame(f),
                ServerEvent::Metadata(body) => EventKind::Metadata { body },
                ServerEvent::Unpublished => EventKind::End {
                    reason: "unpublished".into(),
                },
                ServerEvent::PlayStopped => EventKind::End {
                    reason: "play stopped".into(),
                },
                ServerEvent::Closed(CloseReason::ProtocolError(e)) => EventKind::Error {
                    message: format!("protocol error: {e}"),
                },
                ServerEvent::Closed(reason) => EventKind::Close {
                    reason: reason.to_string(),
                },
            };
            push(&mut events, Direction::ToServer, kind);
        }
        while let Some(b) = conn.poll_transmit() {
            output_len += b.len() as u64;
            if output.len() < limits.max_output {
                let take = (limits.max_output - output.len()).min(b.len());
                output.extend_from_slice(b.get(..take).unwrap_or_default());
            }
        }
    }
    RtmpOutcome {
        events,
        output: output.freeze(),
        output_len,
        captured_output: captured.freeze(),
        seed,
        seed_learned,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::rtmp::handshake::{ClientHandshake, HandshakeMode, SplitMix64};

    #[test]
    fn splitmix_output_inverts() {
        for seed in [0u64, 1, 42, u64::MAX, 0xdead_beef] {
            let mut r = SplitMix64::new(seed);
            let v = r.next_u64();
            assert_eq!(unmix(v), seed.wrapping_add(GAMMA));
        }
    }

    #[test]
    fn seed_is_learned_from_simple_and_digest_handshakes() {
        for mode in [HandshakeMode::Simple, HandshakeMode::Digest] {
            for seed in [7u64, 0x1234_5678_9abc_def0] {
                let mut c = ClientHandshake::new(99, mode);
                let mut c0c1 = Vec::new();
                while let Some(b) = c.poll_transmit() {
                    c0c1.extend_from_slice(&b);
                }
                let mut s = ServerHandshake::new(seed);
                s.handle_input(&c0c1).unwrap();
                let mut s0s1s2 = Vec::new();
                while let Some(b) = s.poll_transmit() {
                    s0s1s2.extend_from_slice(&b);
                }
                assert_eq!(learn_server_seed(&c0c1, &s0s1s2), Some(seed), "{mode:?}");
                // A server that is not arcly: no seed.
                s0s1s2[20] ^= 1;
                s0s1s2[30] ^= 1;
                assert_eq!(learn_server_seed(&c0c1, &s0s1s2), None);
            }
        }
    }
}
