//! Shared helpers of the RTSP server tests (`rtsp_session`, `rtsp_strict`,
//! `rtsp_udp`): synthetic H.264/AAC frames, a publisher with one GOP, and an
//! in-memory client that sends requests to one session and collects what
//! comes back.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;

use arcly::codec::aac::AacConfig;
use arcly::codec::h264::AvcConfig;
use arcly::rtsp::message::{Decoder, Item, Response};
use arcly::rtsp::RtspSessionFactory;
use arcly::session::StreamSession;
use arcly::{Codec, Engine, Frame, FrameFlags, Instant, StreamKey};
use bytes::Bytes;

pub const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
    0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
];
pub const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

pub fn peer() -> SocketAddr {
    "127.0.0.1:5000".parse().unwrap()
}

pub fn frame(codec: Codec, flags: FrameFlags, ms: i64, payload: Vec<u8>) -> Frame {
    Frame {
        codec,
        flags,
        pts: ms,
        dts: ms,
        timebase: 1000,
        payload: Bytes::from(payload),
    }
}

pub fn avc_unit(nal_type: u8, size: usize) -> Vec<u8> {
    let mut v = (size as u32 + 1).to_be_bytes().to_vec();
    v.push(0x60 | nal_type);
    v.extend((0..size).map(|i| i as u8));
    v
}

/// A publisher with H.264 + AAC configs and one GOP (keyframe + 4 frames, audio between).
pub fn publish(engine: &Engine) -> arcly::engine::Publisher {
    let mut p = engine
        .publish(StreamKey::new("live", "cam").unwrap())
        .unwrap();
    let avc = AvcConfig::from_parameter_sets(
        vec![Bytes::from_static(SPS)],
        vec![Bytes::from_static(PPS)],
    )
    .unwrap()
    .to_bytes();
    p.send(Frame {
        payload: avc,
        ..frame(Codec::H264, FrameFlags::CONFIG, 0, vec![])
    });
    p.send(frame(
        Codec::H264,
        FrameFlags::KEYFRAME,
        0,
        avc_unit(5, 4000),
    ));
    p.send(Frame {
        payload: AacConfig::new(2, 48_000, 2).to_bytes(),
        ..frame(Codec::Aac, FrameFlags::CONFIG, 0, vec![])
    });
    for i in 1..5 {
        p.send(frame(
            Codec::Aac,
            FrameFlags::KEYFRAME,
            i * 21,
            vec![0x21; 200],
        ));
        p.send(frame(
            Codec::H264,
            FrameFlags::NONE,
            i * 40,
            avc_unit(1, 900),
        ));
    }
    p
}

/// A client talking to one session: sends requests, collects what comes back.
pub struct Client {
    pub session: Box<dyn StreamSession>,
    pub decoder: Decoder,
    pub items: Vec<Item>,
    pub now: Instant,
    pub cseq: u32,
}

impl Client {
    pub fn new(factory: &RtspSessionFactory, seed: u64) -> Client {
        Client {
            session: Box::new(factory.session(peer(), Instant::ZERO, seed)),
            decoder: Decoder::new(),
            items: Vec::new(),
            now: Instant::from_millis(1),
            cseq: 0,
        }
    }

    pub fn raw(&mut self, bytes: &[u8]) {
        self.session.handle_input(self.now, bytes);
        self.drain();
    }

    pub fn drain(&mut self) {
        let mut out = Vec::new();
        self.session.poll_transmit(&mut out);
        for b in out {
            self.decoder.extend(&b);
        }
        while let Some(i) = self.decoder.decode().unwrap() {
            self.items.push(i);
        }
    }

    pub fn request(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        self.cseq += 1;
        let mut msg = format!("{method} {url} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        for (k, v) in headers {
            msg.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            msg.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        msg.push_str("\r\n");
        msg.push_str(body);
        let before = self.items.len();
        self.raw(msg.as_bytes());
        self.items[before..]
            .iter()
            .find_map(|i| match i {
                Item::Response(r) => Some(r.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no response to {method}"))
    }

    pub fn frames_after(&self, n: usize) -> Vec<(u8, Bytes)> {
        self.items[n..]
            .iter()
            .filter_map(|i| match i {
                Item::Interleaved { channel, data } => Some((*channel, data.clone())),
                _ => None,
            })
            .collect()
    }
}

pub fn session_id(r: &Response) -> String {
    r.headers
        .get("Session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}
