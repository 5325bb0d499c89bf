//! The RTMP session against real ffmpeg, driven by a minimal std::net loop
//! (a thread per connection, short read timeouts). The full interop matrix
//! lives in the `arcly-tests` crate; this checks the machines alone.
//! Skipped (with a message) when ffmpeg / ffprobe are not installed, a
//! failure when `CI` is set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arcly::rtmp::RtmpSessionFactory;
use arcly::session::{SessionFactory, StreamSession};
use arcly::time::Clock;
use arcly::Engine;

fn drive(mut sock: TcpStream, mut s: Box<dyn StreamSession>, clock: Clock) {
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    sock.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        let now = clock.instant(std::time::Instant::now());
        match sock.read(&mut buf) {
            Ok(0) => s.handle_input(now, &[]),
            Ok(n) => s.handle_input(now, &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => s.handle_input(now, &[]),
        }
        s.handle_media(now);
        if s.poll_timeout().is_some_and(|t| t <= now) {
            s.handle_timeout(now);
        }
        out.clear();
        if s.poll_transmit(&mut out) > 0 {
            for b in &out {
                if sock.write_all(b).is_err() {
                    return;
                }
            }
        }
        if s.close_reason().is_some() {
            return;
        }
    }
}

fn serve(factory: RtmpSessionFactory, stop: Arc<AtomicBool>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let clock = Clock::new(std::time::Instant::now());
    std::thread::spawn(move || {
        for (i, sock) in l.incoming().enumerate() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(sock) = sock else { continue };
            let peer = sock.peer_addr().unwrap();
            let conn = arcly::session::StreamConn::new(peer, sock.local_addr().unwrap());
            let s = factory.new_session(conn, clock.instant(std::time::Instant::now()), i as u64);
            std::thread::spawn(move || drive(sock, s, clock));
        }
    });
    port
}

#[test]
fn ffmpeg_publishes_and_plays_back() {
    if !common::ffmpeg::tools_present() {
        return;
    }
    let engine = Engine::with_defaults();
    let stop = Arc::new(AtomicBool::new(false));
    let port = serve(RtmpSessionFactory::allow_all(engine.clone()), stop.clone());
    let url = format!("rtmp://127.0.0.1:{port}/live/cam");
    let mut publisher = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(common::ffmpeg::lavfi_source(44_100, 6))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "50",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-f",
            "flv",
        ])
        .arg(&url)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the stream is live, then play it for a few seconds.
    let key = arcly::StreamKey::new("live", "cam").unwrap();
    let t0 = std::time::Instant::now();
    while engine.stream_stats(&key).is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "publisher never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let player = Command::new("ffprobe")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-rw_timeout",
            "8000000",
            "-show_entries",
            "stream=codec_name:packet=stream_index",
            "-of",
            "csv=p=0",
            "-read_intervals",
            "%+3",
        ])
        .arg(&url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&player.stdout);
    let err = String::from_utf8_lossy(&player.stderr);
    let st = publisher.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(st.success(), "ffmpeg publisher failed");
    assert!(out.contains("h264"), "ffprobe output: {out} / {err}");
    assert!(out.contains("aac"), "ffprobe output: {out} / {err}");
    let s0 = out.lines().filter(|l| l.trim() == "0").count();
    let s1 = out.lines().filter(|l| l.trim() == "1").count();
    eprintln!("ffprobe packets per stream: {s0} / {s1}");
    // ~3 s of 25 fps video and ~43 AAC frames/s.
    assert!(s0 > 40 && s1 > 40, "packets per stream {s0} / {s1}: {err}");
    let t0 = std::time::Instant::now();
    while engine.stream_stats(&key).is_some() {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "stream should end with the publisher"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
