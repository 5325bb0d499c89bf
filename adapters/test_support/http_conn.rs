//! The blocking keep-alive HTTP/1.1 test client shared by the arcly-blocking
//! and arcly-async-io `serve_http` tests (included with
//! `#[path = "../../test_support/http_conn.rs"] mod http_conn;` next to
//! `mod common;` from `core/tests/common`): one response read off the wire,
//! a connection that writes requests and reads responses, the settled
//! LL-HLS preload hint, and the ffprobe / ffmpeg LL-HLS check.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use arcly::{Engine, StreamKey};

use crate::common::feed::preload_hint;

/// One response as read off the wire.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        let found = self.headers.iter().find(|(k, _)| k == name);
        found.map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A keep-alive HTTP/1.1 client on a blocking socket (10 s read watchdog).
pub struct Conn {
    pub reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Conn {
            reader: BufReader::new(sock),
        }
    }

    pub fn request(&mut self, method: &str, target: &str, headers: &[&str]) {
        let mut text = format!("{method} {target} HTTP/1.1\r\nHost: t\r\n");
        for h in headers {
            text.push_str(h);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        self.reader.get_mut().write_all(text.as_bytes()).unwrap();
    }

    pub fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "server closed the connection");
        line.trim_end().to_owned()
    }

    pub fn response(&mut self, bodyless: bool) -> Reply {
        let status_line = self.line();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = reply
            .header("content-length")
            .map_or(0, |v| v.parse().unwrap());
        if !bodyless && status != 204 {
            reply.body = vec![0; len];
            self.reader.read_exact(&mut reply.body).unwrap();
        }
        reply
    }

    pub fn get(&mut self, target: &str) -> Reply {
        self.request("GET", target, &[]);
        self.response(false)
    }

    /// Whether a response has started arriving (without waiting).
    pub fn answered_yet(&mut self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let sock = self.reader.get_ref();
        sock.set_nonblocking(true).unwrap();
        let mut probe = [0u8; 1];
        let got = sock.peek(&mut probe);
        sock.set_nonblocking(false).unwrap();
        match got {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(e) => panic!("{e}"),
        }
    }
}

/// The stream's preload hint once the pump took every published frame.
pub fn hint_after_pump(c: &mut Conn) -> (u64, u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut prev = preload_hint(&c.get("/live/cam/stream.m3u8").text());
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(40));
        let hint = preload_hint(&c.get("/live/cam/stream.m3u8").text());
        if hint == prev {
            break;
        }
        prev = hint;
    }
    prev
}

/// The server started by an adapter's test: its address, and its shutdown
/// (returns once `serve_http` has returned).
pub type Started = (SocketAddr, Box<dyn FnOnce()>);

/// ffprobe and ffmpeg read the LL-HLS stream off the server that `start`
/// runs on an engine: real H.264 + AAC (ffmpeg-encoded, through our TS
/// demuxer, temporary file named after `tmp_tag`) published live, then
/// ended, so the playlist is complete (`EXT-X-ENDLIST`); ffprobe must see
/// H.264 with every video frame and audio, ffmpeg decode without warnings.
/// A missing tool fails under `CI`, else the check is skipped.
pub fn ffprobe_and_ffmpeg_read_the_ll_hls_stream(
    tmp_tag: &str,
    start: impl FnOnce(&Engine) -> Started,
) {
    use crate::common::ffmpeg::{
        decode_without_warnings, encode_test_source, probe_streams, tmp_path, tools_present,
        H264_BF_AAC,
    };
    if !tools_present() {
        return;
    }
    let src = tmp_path(tmp_tag, "src.ts");
    let mut args = H264_BF_AAC.to_vec();
    args.extend_from_slice(&["-f", "mpegts"]);
    encode_test_source(48_000, 4, &args, &src);
    let frames = crate::common::demux_ts(&std::fs::read(&src).unwrap(), 1316).0;
    let _ = std::fs::remove_file(&src);
    let videos = frames
        .iter()
        .filter(|f| !f.is_config() && f.kind() == arcly::MediaKind::Video)
        .count();

    let engine = Engine::with_defaults();
    let mut publisher = engine
        .publish(StreamKey::new("live", "cam").unwrap())
        .unwrap();
    let (addr, shutdown) = start(&engine);
    // The first request starts the muxing; it waits for a complete segment.
    let mut first = Conn::open(addr);
    first.request("GET", "/live/cam/index.m3u8", &[]);
    std::thread::sleep(Duration::from_millis(200));
    for (i, f) in frames.into_iter().enumerate() {
        publisher.send(f);
        if i % 8 == 7 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(publisher);
    assert_eq!(first.response(false).status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !first
        .get("/live/cam/stream.m3u8")
        .text()
        .contains("#EXT-X-ENDLIST")
    {
        assert!(Instant::now() < deadline, "stream did not end");
        std::thread::sleep(Duration::from_millis(50));
    }

    let url = format!("http://{}/live/cam/stream.m3u8", addr);
    let streams = probe_streams(Path::new(&url));
    let video = streams
        .iter()
        .find(|s| s.codec_type == "video")
        .unwrap_or_else(|| panic!("no video in {streams:?}"));
    assert_eq!(video.codec_name, "h264");
    assert_eq!(video.frames, videos, "every video frame decodes");
    assert!(streams.iter().any(|s| s.codec_type == "audio"));
    decode_without_warnings(Path::new(&url));
    shutdown();
}
