//! Structure-aware: two RTMP server sessions (`RtmpSession`, the
//! `ServerConnection` joined to an `Engine`, core/src/rtmp/session.rs) on one
//! engine, each driven after a valid handshake by a sequence of valid-ish
//! client messages (built with `command::request::*`, `flv::frame_to_tag_body`
//! and a client `ChunkWriter`), raw messages, raw bytes, byte flips, chunk
//! size changes, timeouts, EOF and local close.
//!
//! Invariants: no panic; the server's output is S0+S1+S2 followed by a valid
//! chunk stream (a `ChunkReader` reads it without error, every command and
//! data message in it decodes); frames a player receives demux; once a
//! session is closed and its last output drained, further input, timeouts
//! and media produce no output, its close reason never changes and it
//! neither publishes nor plays (no state after close).
#![no_main]

use std::net::SocketAddr;

use arbitrary::Arbitrary;
use arcly::rtmp::chunk::{ChunkReader, ChunkWriter, RawMessage};
use arcly::rtmp::command::{decode_command, decode_data, request, PublishType};
use arcly::rtmp::flv::{frame_to_tag_body, FlvDemux};
use arcly::rtmp::handshake::{ClientHandshake, HandshakeMode, HANDSHAKE_SIZE};
use arcly::rtmp::message::{ProtocolControl, UserControl};
use arcly::rtmp::{RtmpSession, RtmpSessionFactory, ServerConfig};
use arcly::session::{CloseReason, StreamSession};
use arcly::time::Instant;
use arcly::{Codec, Engine, Frame, FrameFlags};
use bytes::{BufMut, Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    digest: bool,
    small_limits: bool,
    ops: Vec<(bool, Op)>,
}

#[derive(Debug, Arbitrary)]
enum Name {
    Cam,
    CamQuery,
    Empty,
    Other,
    Any(String),
}

impl Name {
    fn get(&self) -> &str {
        match self {
            Name::Cam => "cam",
            Name::CamQuery => "cam?token=1&x",
            Name::Empty => "",
            Name::Other => "other/sub",
            Name::Any(s) => s,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum StreamSel {
    Zero,
    One,
    Two,
    Any(u32),
}

impl StreamSel {
    fn id(&self) -> u32 {
        match self {
            StreamSel::Zero => 0,
            StreamSel::One => 1,
            StreamSel::Two => 2,
            StreamSel::Any(v) => *v,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Cmd {
    Connect {
        app: Name,
        tc_url: bool,
        fourcc: bool,
        amf3: bool,
    },
    CreateStream,
    ReleaseStream(Name),
    FcPublish(Name),
    Publish(Name, u8),
    Play {
        name: Name,
        start: i8,
        duration: i8,
        reset: bool,
    },
    DeleteStream(u8),
    CloseStream,
    FcUnpublish(Name),
    GetStreamLength(Name),
    /// A command with any name and a few scalar arguments.
    Other {
        name: String,
        args: Vec<f64>,
    },
}

#[derive(Debug, Arbitrary)]
enum Media {
    AvcConfig,
    AacConfig,
    Key(u16),
    Inter(u16),
    Audio(u16),
    /// A video or audio body as given.
    RawVideo(Vec<u8>),
    RawAudio(Vec<u8>),
    Metadata(Vec<(String, f64)>),
    RawData(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
enum Op {
    Cmd {
        stream: StreamSel,
        tid: u8,
        cmd: Cmd,
    },
    Media {
        stream: StreamSel,
        ts: u16,
        media: Media,
    },
    ChunkSize(u16),
    WindowAck(u32),
    Ack(u32),
    Abort(u8),
    User(u16, u32),
    Message {
        csid: u8,
        type_id: u8,
        stream: StreamSel,
        ts: u32,
        payload: Vec<u8>,
    },
    Bytes(Vec<u8>),
    /// XOR a byte of the next write.
    Flip {
        at: u16,
        xor: u8,
    },
    /// Feed the next write in two pieces cut here.
    Cut(u16),
    Tick(u16),
    Eof,
    Close,
}

fn avc_record() -> Bytes {
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

fn frame(codec: Codec, flags: FrameFlags, ts: i64, payload: Bytes) -> Frame {
    Frame {
        codec,
        flags,
        pts: ts,
        dts: ts,
        timebase: 1000,
        payload,
    }
}

fn nal(first: u8, len: u16) -> Bytes {
    let n = usize::from(len % 2000) + 1;
    let mut b = BytesMut::with_capacity(n + 4);
    b.put_u32(n as u32);
    b.put_u8(first);
    b.put_bytes(0xAB, n - 1);
    b.freeze()
}

/// Checks the server → client byte stream as it arrives.
struct Observer {
    skipped: usize,
    reader: ChunkReader,
    demux: FlvDemux,
}

impl Observer {
    fn new() -> Self {
        Observer {
            skipped: 0,
            reader: ChunkReader::default(),
            demux: FlvDemux::new(),
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        const S: usize = 1 + 2 * HANDSHAKE_SIZE;
        if self.skipped < S {
            let n = (S - self.skipped).min(data.len());
            self.skipped += n;
            data = &data[n..];
        }
        self.reader.handle_input(data);
        loop {
            match self.reader.poll_message() {
                Ok(Some(m)) => self.check(&m),
                Ok(None) => break,
                Err(e) => panic!("server output is not a valid chunk stream: {e}"),
            }
        }
    }

    fn check(&mut self, m: &RawMessage) {
        match m.type_id {
            20 | 17 => {
                if let Err(e) = decode_command(m.type_id, &m.payload) {
                    panic!("server sent an undecodable command: {e}: {:?}", m.payload);
                }
            }
            18 | 15 => {
                if let Err(e) = decode_data(m.type_id, &m.payload) {
                    panic!(
                        "server sent an undecodable data message: {e}: {:?}",
                        m.payload
                    );
                }
            }
            9 => {
                if let Err(e) = self.demux.video(i64::from(m.timestamp), m.payload.clone()) {
                    panic!("server sent a video tag it cannot demux: {e}");
                }
            }
            8 => {
                if let Err(e) = self.demux.audio(i64::from(m.timestamp), m.payload.clone()) {
                    panic!("server sent an audio tag it cannot demux: {e}");
                }
            }
            _ => {}
        }
    }
}

struct Conn {
    session: RtmpSession,
    writer: ChunkWriter,
    observer: Observer,
    flip: Option<(u16, u8)>,
    cut: Option<u16>,
    /// Close reason once seen, and whether its last output was drained.
    closed: Option<(CloseReason, bool)>,
}

impl Conn {
    fn new(factory: &RtmpSessionFactory, n: u16, digest: bool, now: Instant) -> Conn {
        let peer = SocketAddr::from(([127, 0, 0, 1], 40_000 + n));
        let mut session = factory.session(peer, now, u64::from(n));
        let mode = if digest {
            HandshakeMode::Digest
        } else {
            HandshakeMode::Simple
        };
        let mut hs = ClientHandshake::new(u64::from(n) + 100, mode);
        let mut observer = Observer::new();
        if let Some(c0c1) = hs.poll_transmit() {
            session.handle_input(now, &c0c1);
        }
        let mut out = Vec::new();
        session.poll_transmit(&mut out);
        for b in &out {
            observer.feed(b);
            if let Err(e) = hs.handle_input(b) {
                panic!("client rejected the server handshake: {e}");
            }
        }
        assert!(hs.is_done(), "server handshake incomplete");
        if let Some(c2) = hs.poll_transmit() {
            session.handle_input(now, &c2);
        }
        Conn {
            session,
            writer: ChunkWriter::new(),
            observer,
            flip: None,
            cut: None,
            closed: None,
        }
    }

    fn drain(&mut self) {
        let mut out = Vec::new();
        let n = self.session.poll_transmit(&mut out);
        if let Some((_, drained)) = &self.closed {
            if *drained {
                assert_eq!(n, 0, "a closed session produced {n} more bytes");
            }
        }
        for b in &out {
            self.observer.feed(b);
        }
        self.after();
    }

    /// Records the close and checks there is no state after it.
    fn after(&mut self) {
        match (&mut self.closed, self.session.close_reason()) {
            // Everything queued before the close was just drained.
            (None, Some(r)) => self.closed = Some((r.clone(), true)),
            (Some((r, drained)), now) => {
                assert_eq!(Some(&*r), now, "close reason changed");
                assert!(!self.session.is_publishing(), "publishing after close");
                assert!(!self.session.is_playing(), "playing after close");
                *drained = true;
            }
            (None, None) => {}
        }
    }

    fn send_bytes(&mut self, now: Instant, mut data: Vec<u8>) {
        if let Some((at, xor)) = self.flip.take() {
            if !data.is_empty() {
                let i = usize::from(at) % data.len();
                data[i] ^= xor;
            }
        }
        match self.cut.take() {
            Some(c) if !data.is_empty() => {
                let (a, b) = data.split_at(usize::from(c) % data.len());
                self.session.handle_input(now, a);
                self.drain();
                self.session.handle_input(now, b);
            }
            _ => self.session.handle_input(now, &data),
        }
        self.drain();
    }

    fn send(&mut self, now: Instant, msg: RawMessage) {
        let mut pieces = Vec::new();
        if self.writer.write_message(&msg, &mut pieces).is_err() {
            return;
        }
        let data: Vec<u8> = pieces.iter().flat_map(|b| b.iter().copied()).collect();
        self.send_bytes(now, data);
    }
}

fn msg(csid: u32, type_id: u8, stream_id: u32, timestamp: u32, payload: Bytes) -> RawMessage {
    RawMessage {
        csid,
        timestamp,
        type_id,
        stream_id,
        payload,
    }
}

fn command(tid: f64, cmd: &Cmd) -> Bytes {
    match cmd {
        Cmd::Connect {
            app,
            tc_url,
            fourcc,
            amf3,
        } => {
            let mut req = request::ConnectRequest::new(
                app.get(),
                if *tc_url {
                    format!("rtmp://localhost/{}", app.get())
                } else {
                    String::new()
                },
            );
            if *fourcc {
                req.fourcc_list = vec!["hvc1".into(), "av01".into(), "Opus".into()];
            }
            if *amf3 {
                req.object_encoding = 3.0;
            }
            request::connect(tid, &req)
        }
        Cmd::CreateStream => request::create_stream(tid),
        Cmd::ReleaseStream(n) => request::release_stream(tid, n.get()),
        Cmd::FcPublish(n) => request::fc_publish(tid, n.get()),
        Cmd::Publish(n, t) => {
            let ty = match t % 3 {
                0 => PublishType::Live,
                1 => PublishType::Record,
                _ => PublishType::Append,
            };
            request::publish(tid, n.get(), ty)
        }
        Cmd::Play {
            name,
            start,
            duration,
            reset,
        } => request::play(
            tid,
            name.get(),
            f64::from(*start),
            f64::from(*duration),
            *reset,
        ),
        Cmd::DeleteStream(id) => request::delete_stream(tid, u32::from(*id)),
        Cmd::CloseStream => request::close_stream(tid),
        Cmd::FcUnpublish(n) => request::fc_unpublish(tid, n.get()),
        Cmd::GetStreamLength(n) => request::get_stream_length(tid, n.get()),
        Cmd::Other { name, args } => {
            use arcly::rtmp::amf::{encode_values, Amf0Value};
            let mut v = vec![
                Amf0Value::from(name.as_str()),
                Amf0Value::Number(tid),
                Amf0Value::Null,
            ];
            v.extend(args.iter().take(8).map(|a| Amf0Value::Number(*a)));
            encode_values(&v)
        }
    }
}

fuzz_target!(|input: Input| {
    let engine = Engine::with_defaults();
    let mut factory = RtmpSessionFactory::allow_all(engine.clone());
    if input.small_limits {
        factory = factory.with_config(
            ServerConfig::default()
                .with_max_message_len(4096)
                .with_max_streams(2)
                .with_max_pending_input(4096),
        );
    }
    let mut now_ms = 0u64;
    let now = |ms: u64| Instant::from_millis(ms);
    let mut conns = [
        Conn::new(&factory, 1, input.digest, now(0)),
        Conn::new(&factory, 2, !input.digest, now(0)),
    ];
    for (which, op) in input.ops.iter().take(256) {
        let c = &mut conns[usize::from(*which)];
        let t = now(now_ms);
        match op {
            Op::Cmd { stream, tid, cmd } => {
                let csid = if stream.id() == 0 { 3 } else { 8 };
                c.send(
                    t,
                    msg(csid, 20, stream.id(), 0, command(f64::from(*tid), cmd)),
                );
            }
            Op::Media { stream, ts, media } => {
                let ts64 = i64::from(*ts);
                let (ty, body) = match media {
                    Media::AvcConfig => (
                        9,
                        frame_to_tag_body(&frame(
                            Codec::H264,
                            FrameFlags::CONFIG,
                            ts64,
                            avc_record(),
                        )),
                    ),
                    Media::AacConfig => (
                        8,
                        frame_to_tag_body(&frame(
                            Codec::Aac,
                            FrameFlags::CONFIG,
                            ts64,
                            Bytes::from_static(&[0x12, 0x10]),
                        )),
                    ),
                    Media::Key(n) => (
                        9,
                        frame_to_tag_body(&frame(
                            Codec::H264,
                            FrameFlags::KEYFRAME,
                            ts64,
                            nal(0x65, *n),
                        )),
                    ),
                    Media::Inter(n) => (
                        9,
                        frame_to_tag_body(&frame(
                            Codec::H264,
                            FrameFlags::NONE,
                            ts64,
                            nal(0x41, *n),
                        )),
                    ),
                    Media::Audio(n) => (
                        8,
                        frame_to_tag_body(&frame(
                            Codec::Aac,
                            FrameFlags::KEYFRAME,
                            ts64,
                            Bytes::from(vec![0x21; usize::from(n % 500) + 1]),
                        )),
                    ),
                    Media::RawVideo(b) => (9, Bytes::copy_from_slice(b)),
                    Media::RawAudio(b) => (8, Bytes::copy_from_slice(b)),
                    Media::Metadata(props) => {
                        let mut md = arcly::rtmp::command::Metadata::default();
                        for (k, v) in props.iter().take(16) {
                            md.set(k, (*v).into());
                        }
                        (18, md.to_set_data_frame())
                    }
                    Media::RawData(b) => (18, Bytes::copy_from_slice(b)),
                };
                let csid = match ty {
                    9 => 6,
                    8 => 4,
                    _ => 5,
                };
                c.send(t, msg(csid, ty, stream.id(), u32::from(*ts), body));
            }
            Op::ChunkSize(s) => {
                let size = u32::from(*s).max(1);
                c.send(t, ProtocolControl::SetChunkSize(size).to_message());
                let _ = c.writer.set_chunk_size(size);
            }
            Op::WindowAck(v) => c.send(t, ProtocolControl::WindowAckSize(*v).to_message()),
            Op::Ack(v) => c.send(t, ProtocolControl::Acknowledgement(*v).to_message()),
            Op::Abort(cs) => c.send(t, ProtocolControl::Abort(u32::from(*cs)).to_message()),
            Op::User(ev, v) => {
                let uc = match ev % 4 {
                    0 => UserControl::SetBufferLength {
                        stream_id: 1,
                        buffer_ms: *v,
                    },
                    1 => UserControl::PingRequest(*v),
                    2 => UserControl::PingResponse(*v),
                    _ => UserControl::StreamBegin(*v),
                };
                c.send(t, uc.to_message());
            }
            Op::Message {
                csid,
                type_id,
                stream,
                ts,
                payload,
            } => {
                let m = msg(
                    2 + u32::from(*csid),
                    *type_id,
                    stream.id(),
                    *ts,
                    Bytes::copy_from_slice(payload),
                );
                c.send(t, m);
            }
            Op::Bytes(b) => c.send_bytes(t, b.clone()),
            Op::Flip { at, xor } => c.flip = Some((*at, *xor)),
            Op::Cut(at) => c.cut = Some(*at),
            Op::Tick(ms) => {
                now_ms += u64::from(*ms) * 10;
                let t = now(now_ms);
                for c in conns.iter_mut() {
                    if c.session.poll_timeout().is_some_and(|d| d <= t) {
                        c.session.handle_timeout(t);
                    }
                    c.session.handle_media(t);
                    c.drain();
                }
            }
            Op::Eof => {
                c.session.handle_input(t, &[]);
                c.drain();
            }
            Op::Close => {
                c.session.close(t);
                c.drain();
            }
        }
        // Media may have arrived for the other session.
        let t = now(now_ms);
        for c in conns.iter_mut() {
            c.session.handle_media(t);
            c.drain();
        }
    }
    // Everyone closes; afterwards nothing moves.
    let t = now(now_ms + 1);
    for c in conns.iter_mut() {
        c.session.close(t);
        c.drain();
        c.drain();
        c.session
            .handle_input(t, &[0x03, 0, 0, 0, 0, 0, 4, 20, 0, 0, 0, 0, 1, 2, 3, 4]);
        c.session
            .handle_timeout(Instant::from_millis(now_ms + 100_000));
        c.session.handle_media(t);
        c.drain();
        assert!(c.session.close_reason().is_some());
    }
});
