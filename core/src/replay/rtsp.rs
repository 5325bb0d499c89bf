//! Replaying one RTSP connection over TCP (RFC 2326, RTP interleaved on the
//! connection, §10.12): the client→server bytes drive an [`RtspSession`](crate::rtsp::RtspSession) on
//! an engine of its own with the capture's timestamps as `now`; what the
//! session publishes into that engine is read back as the flow's frames
//! (the depacketized RTP of a publish: ANNOUNCE + SETUP + RECORD). The
//! requests of the client and the status lines of the captured server are
//! decoded by passive observers and reported as events.
//!
//! Invariants:
//! - every request is admitted (the capture shows what the real server did);
//! - after a gap in a direction nothing more of it is fed: a byte stream of
//!   messages and `$` frames cannot be resynchronised without inventing bytes;
//! - the session's output is kept up to [`RtspReplayLimits::max_output`]
//!   bytes; the length is always counted; observers are bounded by the
//!   message decoder's own limits.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

use super::tcp::StreamEvent;
use super::{Direction, EventKind, ReplayEvent};
use crate::engine::{Engine, Recv, Subscriber};
use crate::rtsp::message::{reason_phrase, Decoder, Item, Method};
use crate::rtsp::RtspSessionFactory;
use crate::session::{CloseReason, StreamSession};
use crate::time::Instant;
use crate::StreamKey;

/// The RTSP port (RFC 2326 §3.2: "default port is 554").
pub const RTSP_PORT: u16 = 554;
/// The RTSP port of arcly and most media servers (MediaMTX, GStreamer's
/// test server): 8554.
pub const RTSP_ALT_PORT: u16 = 8554;

/// Bounds of an RTSP replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtspReplayLimits {
    /// Session output kept for comparison, in bytes (default 64 MiB).
    pub max_output: usize,
    /// Server bytes looked at to learn the seed (default 64 KiB).
    pub seed_scan: usize,
}

impl Default for RtspReplayLimits {
    fn default() -> Self {
        RtspReplayLimits {
            max_output: 64 << 20,
            seed_scan: 64 << 10,
        }
    }
}

/// The multiplier of arcly's RTSP session id (`seed * K | 1`, hex).
const SESSION_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// The session id an arcly RTSP session created with `seed` says.
fn session_id(seed: u64) -> String {
    format!("{:016X}", seed.wrapping_mul(SESSION_MUL) | 1)
}

/// Learns a seed that makes an [`RtspSession`](crate::rtsp::RtspSession)
/// say the `Session` id the captured server said: arcly's id is
/// `seed * K | 1` in hex, and `K` is odd, so `id * K⁻¹` (mod 2^64) gives
/// such a seed. `None` when no response carries a 16-digit id of that
/// shape (the server was not arcly).
pub fn learn_rtsp_seed(server_bytes: &[u8]) -> Option<u64> {
    let mut d = Decoder::new();
    d.extend(server_bytes);
    while let Ok(Some(item)) = d.decode() {
        let Item::Response(r) = item else { continue };
        let Some(s) = r.headers.get("Session") else {
            continue;
        };
        let id = s.split(';').next().unwrap_or_default().trim();
        if id.len() != 16 {
            return None;
        }
        let v = u64::from_str_radix(id, 16).ok()?;
        let seed = v.wrapping_mul(super::rtmp::inverse(SESSION_MUL));
        return (session_id(seed) == id).then_some(seed);
    }
    None
}

/// Whether the first bytes a client sent look like an RTSP request line
/// (`METHOD URL RTSP/1.x`).
pub fn looks_like_rtsp(client_prefix: &[u8]) -> bool {
    let line = client_prefix
        .split(|b| *b == b'\n')
        .next()
        .unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return false;
    };
    let mut parts = line.trim_end().split(' ');
    let method = parts.next().unwrap_or_default();
    let _url = parts.next();
    let version = parts.next().unwrap_or_default();
    !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        && version.starts_with("RTSP/1.")
}

/// `app` and `stream` of an RTSP URL (`rtsp://h/app/name/trackID=1?q`).
fn app_stream(uri: &str) -> (String, String, String) {
    let rest = match uri.split_once("://") {
        Some((_, r)) => r.find('/').and_then(|i| r.get(i..)).unwrap_or("/"),
        None => uri,
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.len() > 2 {
        segs.truncate(2);
    }
    let app = segs.first().copied().unwrap_or_default().to_owned();
    let stream = segs.get(1).copied().unwrap_or_default().to_owned();
    (app, stream, query.to_owned())
}

/// The result of replaying one RTSP connection.
#[derive(Debug, Clone)]
pub(super) struct RtspOutcome {
    pub events: Vec<ReplayEvent>,
    pub output: Bytes,
    pub output_len: u64,
    pub captured_output: Bytes,
    pub seed: u64,
    pub seed_learned: bool,
}

/// Replays one connection from `peer`. `merged` are both directions'
/// stream events in capture order with their direction.
pub(super) fn replay(
    flow: usize,
    peer: SocketAddr,
    merged: &[(Direction, StreamEvent)],
    seed: Option<u64>,
    start: Instant,
    limits: RtspReplayLimits,
) -> RtspOutcome {
    let server_prefix: Vec<u8> = {
        let to_client: Vec<StreamEvent> = merged
            .iter()
            .filter(|(d, _)| *d == Direction::ToClient)
            .map(|(_, e)| e.clone())
            .collect();
        super::rtmp::prefix(&to_client, limits.seed_scan)
    };
    let (seed, seed_learned) = match seed {
        Some(s) => (s, false),
        None => match learn_rtsp_seed(&server_prefix) {
            Some(s) => (s, true),
            None => (super::DEFAULT_SEED, false),
        },
    };
    let engine = Engine::with_defaults();
    let factory = RtspSessionFactory::allow_all(engine.clone());
    let mut session = factory.session(peer, start, seed);
    let mut requests = Decoder::new();
    let mut responses = Decoder::new();
    let mut observers_dead = [false, false];
    let mut published: Option<StreamKey> = None;
    let mut subscriber: Option<Subscriber> = None;
    let mut ended = false;
    let mut closed = false;
    let mut events = Vec::new();
    let mut output = BytesMut::new();
    let mut output_len = 0u64;
    let mut captured = BytesMut::new();
    let mut stopped = [false, false];
    let mut out = Vec::new();

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
        let stopped_dir = match dir {
            Direction::ToServer => &mut stopped[0],
            Direction::ToClient => &mut stopped[1],
        };
        if let StreamEvent::Gap { offset, len, .. } = ev {
            push(
                &mut events,
                *dir,
                EventKind::Gap {
                    offset: *offset,
                    len: *len,
                },
            );
            if !*stopped_dir {
                *stopped_dir = true;
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
        if *stopped_dir {
            continue;
        }
        match (dir, ev) {
            (Direction::ToServer, StreamEvent::Data { data, .. }) => {
                // Timers first: what the real server would have fired
                // before this input arrived.
                for _ in 0..4 {
                    match session.poll_timeout() {
                        Some(t) if t <= time => session.handle_timeout(t),
                        _ => break,
                    }
                }
                if !observers_dead[0] {
                    requests.extend(data);
                    loop {
                        match requests.decode() {
                            Ok(Some(Item::Request(req))) => {
                                let (app, stream, query) = app_stream(&req.uri);
                                match req.method {
                                    Method::Announce => {
                                        published = StreamKey::new(&app, &stream).ok();
                                        push(
                                            &mut events,
                                            *dir,
                                            EventKind::Publish { app, stream, query },
                                        );
                                    }
                                    Method::Play => push(
                                        &mut events,
                                        *dir,
                                        EventKind::Play { app, stream, query },
                                    ),
                                    _ => {}
                                }
                            }
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(_) => {
                                observers_dead[0] = true;
                                break;
                            }
                        }
                    }
                }
                session.handle_input(time, data);
            }
            (Direction::ToServer, StreamEvent::Fin { .. } | StreamEvent::Reset { .. }) => {
                session.handle_input(time, &[]);
            }
            (Direction::ToClient, StreamEvent::Data { data, .. }) => {
                if captured.len() < limits.max_output {
                    let take = (limits.max_output - captured.len()).min(data.len());
                    captured.extend_from_slice(data.get(..take).unwrap_or_default());
                }
                if !observers_dead[1] {
                    responses.extend(data);
                    loop {
                        match responses.decode() {
                            Ok(Some(Item::Response(r))) => push(
                                &mut events,
                                *dir,
                                EventKind::Status {
                                    code: format!("{} {}", r.status, reason_phrase(r.status)),
                                },
                            ),
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(_) => {
                                observers_dead[1] = true;
                                break;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        // What the session published, as a viewer of its stream reads it.
        if subscriber.is_none() {
            if let Some(key) = &published {
                if engine.stream_stats(key).is_some() {
                    subscriber = engine.subscribe(key).ok();
                }
            }
        }
        if let Some(sub) = &mut subscriber {
            loop {
                match sub.recv() {
                    Recv::Frame(f) => push(
                        &mut events,
                        Direction::ToServer,
                        EventKind::Frame(f.frame.clone()),
                    ),
                    Recv::Empty => break,
                    Recv::End => {
                        if !ended {
                            ended = true;
                            push(
                                &mut events,
                                Direction::ToServer,
                                EventKind::End {
                                    reason: "unpublished".into(),
                                },
                            );
                        }
                        break;
                    }
                }
            }
        }
        if !closed {
            if let Some(reason) = session.close_reason() {
                closed = true;
                let kind = match reason {
                    CloseReason::ProtocolError(e) => EventKind::Error {
                        message: format!("protocol error: {e}"),
                    },
                    r => EventKind::Close {
                        reason: r.to_string(),
                    },
                };
                push(&mut events, Direction::ToServer, kind);
            }
        }
        out.clear();
        session.poll_transmit(&mut out);
        for b in &out {
            output_len += b.len() as u64;
            if output.len() < limits.max_output {
                let take = (limits.max_output - output.len()).min(b.len());
                output.extend_from_slice(b.get(..take).unwrap_or_default());
            }
        }
    }
    RtspOutcome {
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
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seed_is_learned_from_the_session_header() {
        for seed in [0u64, 7, 0x1234_5678_9abc_def0, u64::MAX] {
            let id = session_id(seed);
            let resp = format!("RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: {id};timeout=60\r\n\r\n");
            let learned = learn_rtsp_seed(resp.as_bytes()).unwrap();
            assert_eq!(session_id(learned), id);
        }
        assert_eq!(
            learn_rtsp_seed(b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: 12345678\r\n\r\n"),
            None,
            "not arcly's id"
        );
    }

    #[test]
    fn rtsp_request_lines_are_recognised() {
        assert!(looks_like_rtsp(
            b"OPTIONS rtsp://h/live/x RTSP/1.0\r\nCSeq: 1\r\n"
        ));
        assert!(looks_like_rtsp(b"GET_PARAMETER * RTSP/1.0\r\n"));
        assert!(!looks_like_rtsp(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_rtsp(&[3, 0, 0, 0]));
    }
}
