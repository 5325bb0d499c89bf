//! Shared helpers of the RTMP integration tests: synthetic H.264/AAC frames,
//! and pumps that move bytes between machines in memory with a test clock.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;

use arcly::rtmp::{ClientConfig, ClientConnection, ClientEvent, ClientMode};
use arcly::session::StreamSession;
use arcly::time::Instant;
use arcly::{Codec, Frame, FrameFlags};
use bytes::{BufMut, Bytes, BytesMut};

/// An AVCDecoderConfigurationRecord with one SPS and one PPS, 4-byte lengths.
pub fn avc_record() -> Bytes {
    let sps: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x47, 0xfe, 0xc8];
    let pps: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
    let mut b = BytesMut::new();
    b.put_slice(&[1, 0x42, 0xc0, 0x1e, 0xff, 0xe1]);
    b.put_u16(sps.len() as u16);
    b.put_slice(sps);
    b.put_u8(1);
    b.put_u16(pps.len() as u16);
    b.put_slice(pps);
    b.freeze()
}

pub fn video_config(ts: i64) -> Frame {
    Frame {
        codec: Codec::H264,
        flags: FrameFlags::CONFIG,
        pts: ts,
        dts: ts,
        timebase: 1000,
        payload: avc_record(),
    }
}

pub fn audio_config(ts: i64) -> Frame {
    Frame {
        codec: Codec::Aac,
        flags: FrameFlags::CONFIG,
        pts: ts,
        dts: ts,
        timebase: 1000,
        payload: Bytes::from_static(&[0x12, 0x10]),
    }
}

/// A video access unit: one IDR (keyframe) or non-IDR NAL of `len` bytes,
/// its bytes derived from `n` so every frame is distinct.
pub fn video_frame(n: u32, ts: i64, key: bool, len: usize) -> Frame {
    let mut b = BytesMut::with_capacity(len + 4);
    let nal_len = len.max(2);
    b.put_u32(nal_len as u32);
    b.put_u8(if key { 0x65 } else { 0x41 });
    for i in 1..nal_len {
        b.put_u8((n as usize + i) as u8);
    }
    Frame {
        codec: Codec::H264,
        flags: if key {
            FrameFlags::KEYFRAME
        } else {
            FrameFlags::NONE
        },
        pts: ts + 40,
        dts: ts,
        timebase: 1000,
        payload: b.freeze(),
    }
}

pub fn audio_frame(n: u32, ts: i64) -> Frame {
    let mut b = BytesMut::new();
    b.put_u32(n);
    b.put_slice(&[0x21, 0x10, 0x05]);
    Frame {
        codec: Codec::Aac,
        flags: FrameFlags::KEYFRAME,
        pts: ts,
        dts: ts,
        timebase: 1000,
        payload: b.freeze(),
    }
}

/// A stream of `n` frames: configs, then video every 40 ms (keyframe every
/// `gop` frames) interleaved with audio every 23 ms.
pub fn stream(n: usize, gop: u32, start: i64) -> Vec<Frame> {
    let mut v = vec![video_config(start), audio_config(start)];
    let (mut vi, mut ai) = (0u32, 0u32);
    while v.len() < n {
        let vt = start + i64::from(vi) * 40;
        let at = start + i64::from(ai) * 23;
        if vt <= at {
            v.push(video_frame(
                vi,
                vt,
                vi % gop == 0,
                300 + (vi as usize % 7) * 1000,
            ));
            vi += 1;
        } else {
            v.push(audio_frame(ai, at));
            ai += 1;
        }
    }
    v
}

pub fn peer(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A test clock in milliseconds.
pub fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// Moves bytes between a client machine and a server session until both are
/// quiet; returns the client's events.
pub fn pump(
    client: &mut ClientConnection,
    server: &mut dyn StreamSession,
    now: Instant,
) -> Vec<ClientEvent> {
    let mut events = Vec::new();
    for _ in 0..10_000 {
        let mut moved = false;
        let mut buf = Vec::new();
        while let Some(b) = client.poll_transmit() {
            buf.extend_from_slice(&b);
        }
        if !buf.is_empty() {
            moved = true;
            server.handle_input(now, &buf);
        }
        server.handle_media(now);
        let mut out = Vec::new();
        if server.poll_transmit(&mut out) > 0 {
            moved = true;
            let mut all = Vec::new();
            for b in out {
                all.extend_from_slice(&b);
            }
            client.handle_input(now, &all);
        }
        while let Some(e) = client.poll_event() {
            events.push(e);
        }
        if !moved {
            return events;
        }
    }
    panic!("pump did not settle");
}

pub fn client(url: &str, mode: ClientMode, seed: u64) -> ClientConnection {
    ClientConnection::new(ClientConfig::from_url(url, mode).unwrap(), at(0), seed)
}

/// Media frames among `events`.
pub fn frames(events: &[ClientEvent]) -> Vec<Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Frame(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

/// Raw-byte peer helpers: a simple handshake, then hand-made chunks.
pub mod raw {
    use super::*;
    use arcly::rtmp::amf::{encode_values, Amf0Value};
    use arcly::rtmp::chunk::{encode_message, RawMessage};
    use arcly::rtmp::handshake::{ClientHandshake, HandshakeMode};

    /// Runs a simple-variant client handshake against `server`; returns what
    /// the server sent after its S0+S1+S2 (normally nothing).
    pub fn handshake(server: &mut dyn StreamSession, now: Instant) {
        let mut hs = ClientHandshake::new(7, HandshakeMode::Simple);
        let c0c1 = hs.poll_transmit().unwrap();
        server.handle_input(now, &c0c1);
        let mut out = Vec::new();
        server.poll_transmit(&mut out);
        let s: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
        let used = hs.handle_input(&s).unwrap();
        assert_eq!(used, s.len());
        assert!(hs.is_done());
        let c2 = hs.poll_transmit().unwrap();
        server.handle_input(now, &c2);
    }

    /// One message as chunks of 128 bytes (the default chunk size).
    pub fn message(csid: u32, ts: u32, type_id: u8, stream_id: u32, payload: Bytes) -> Bytes {
        encode_message(
            &RawMessage {
                csid,
                timestamp: ts,
                type_id,
                stream_id,
                payload,
            },
            128,
        )
        .unwrap()
    }

    /// An AMF0 command message on chunk stream 3.
    pub fn command(stream_id: u32, values: &[Amf0Value]) -> Bytes {
        message(3, 0, 20, stream_id, encode_values(values))
    }

    pub fn connect(app: &str) -> Bytes {
        command(
            0,
            &[
                Amf0Value::String("connect".into()),
                Amf0Value::Number(1.0),
                Amf0Value::object([
                    ("app", Amf0Value::String(app.into())),
                    (
                        "tcUrl",
                        Amf0Value::String(format!("rtmp://localhost/{app}")),
                    ),
                ]),
            ],
        )
    }

    pub fn create_stream(tid: f64) -> Bytes {
        command(
            0,
            &[
                Amf0Value::String("createStream".into()),
                Amf0Value::Number(tid),
                Amf0Value::Null,
            ],
        )
    }

    pub fn publish(stream_id: u32, name: &str) -> Bytes {
        command(
            stream_id,
            &[
                Amf0Value::String("publish".into()),
                Amf0Value::Number(0.0),
                Amf0Value::Null,
                Amf0Value::String(name.into()),
                Amf0Value::String("live".into()),
            ],
        )
    }
}
