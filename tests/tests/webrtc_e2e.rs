//! WebRTC end to end over real UDP against the `arcly` binary, with a str0m
//! client (tests/src/webrtc.rs):
//!
//! - ffmpeg publishes H.264 over RTMP; a WHEP viewer's first video frame is
//!   the cached keyframe (SPS, PPS, IDR in that order), the frames keep
//!   coming, and ffmpeg decodes what the viewer got without an error;
//! - random junk datagrams at the WebRTC port change nothing for it;
//! - a viewer that vanishes without DELETE is closed after the ICE timeout
//!   (its session is 404 afterwards).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use arcly_tests::binary;
use arcly_tests::ffmpeg::{
    error_lines, parse_frames, play_command, publish_command, publish_command_full, Kind,
    PublishSpec,
};
use arcly_tests::http_client::request;
use arcly_tests::process::Proc;
use arcly_tests::tools::require_tools;
use arcly_tests::webrtc::{nal_types, Peer};
use str0m::media::Direction;
use str0m::media::{Frequency, MediaTime};
use str0m::Event;

const T: Duration = Duration::from_secs(10);

fn wait_webrtc_addr(proc: &mut Proc) -> SocketAddr {
    let mut found = None;
    proc.wait_for(T, |out, _| {
        found = out.lines().find_map(|l| {
            l.split("WebRTC listening on ")
                .nth(1)
                .and_then(|a| a.trim().strip_suffix("/udp"))
                .and_then(|a| a.parse().ok())
        });
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no WebRTC banner:\n{}", proc.describe()))
}

/// xorshift bytes for junk datagrams.
fn junk(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed as u8
        })
        .collect()
}

#[test]
fn rtmp_publish_whep_viewer_junk_and_vanishing_viewer() {
    if !require_tools("webrtc_e2e", &["ffmpeg"]) {
        return;
    }
    let Some(bin) = binary::arcly_bin("webrtc_e2e") else {
        return;
    };
    let mut server = binary::spawn(
        &bin,
        &[
            "--rtmp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--rtsp",
            "off",
            "--srt",
            "off",
            "--webrtc",
            "127.0.0.1:0",
        ],
    );
    let udp = wait_webrtc_addr(&mut server);
    let rtmp = binary::wait_rtmp_addr(&mut server, T).expect("RTMP banner");
    let http = binary::wait_http_addr(&mut server, T).expect("HTTP banner");

    let spec = PublishSpec {
        fps: 25,
        gop: 25,
        seconds: 40,
        ..PublishSpec::default()
    };
    let mut publisher = Proc::spawn(
        "ffmpeg",
        &mut publish_command(&format!("rtmp://{rtmp}/live/cam"), &spec),
    );

    // The viewer arrives once the stream is live (404 before).
    let started = Instant::now();
    let (mut viewer, resp) = loop {
        let (mut peer, offer) = Peer::new(Direction::RecvOnly);
        let resp = peer.signal(http, "/live/cam/whep", &offer);
        if resp.status == 201 {
            break (peer, resp);
        }
        assert_eq!(resp.status, 404, "WHEP before live: {}", resp.text());
        assert!(
            started.elapsed() < T,
            "the stream never went live:\n{}\n{}",
            server.describe(),
            publisher.describe()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let location = resp.header("location").unwrap().to_owned();
    let answered = Instant::now();

    // Video for 3 s after the first frame.
    let video = viewer.video;
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut first_at = None;
    let mut connected_at = None;
    viewer.run_until(answered + Duration::from_secs(8), |_, e| {
        match e {
            Event::Connected => connected_at = Some(answered.elapsed()),
            Event::MediaData(d) if d.mid == video => {
                first_at.get_or_insert(answered.elapsed());
                frames.push(d.data.to_vec());
            }
            _ => {}
        }
        first_at.is_some_and(|f| answered.elapsed() > f + Duration::from_secs(3))
    });
    let first_at = first_at.unwrap_or_else(|| {
        panic!(
            "no video frame in 8 s (connected: {connected_at:?})\n{}",
            server.describe()
        )
    });
    eprintln!(
        "connected after {connected_at:?}, first frame after {first_at:?}, {} frames in 3 s",
        frames.len()
    );
    let types = nal_types(&frames[0]);
    let idr = types
        .iter()
        .position(|&t| t == 5)
        .expect("IDR in the first frame");
    let sps = types
        .iter()
        .position(|&t| t == 7)
        .expect("SPS in the first frame");
    let pps = types
        .iter()
        .position(|&t| t == 8)
        .expect("PPS in the first frame");
    assert!(sps < pps && pps < idr, "first frame NAL types {types:?}");
    assert!(
        first_at < Duration::from_secs(2),
        "first frame {first_at:?} after the answer (GOP cache: at once)"
    );
    assert!(
        frames.len() >= 40,
        "{} frames in 3 s of a 25 fps stream",
        frames.len()
    );

    // What the viewer got decodes.
    let dir = std::env::temp_dir().join(format!("arcly-webrtc-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("whep.h264");
    std::fs::write(&file, frames.concat()).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "h264", "-i"])
        .arg(&file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "ffmpeg decode: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    // Junk at the port: 2000 random datagrams (some shaped like STUN with
    // a USERNAME) from a stranger; the viewer keeps getting frames.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..2000usize {
        let mut d = junk(&mut seed, 32 + i % 1200);
        if i % 4 == 0 {
            d[0] = 0;
            d[1] = 1;
            d[2] = 0;
            d[3] = 12;
            d[4..8].copy_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
            d[20..24].copy_from_slice(&[0, 6, 0, 8]);
        }
        let _ = stranger.send_to(&d, udp);
    }
    let mut after_junk = 0;
    viewer.run_until(Instant::now() + Duration::from_secs(2), |_, e| {
        if matches!(e, Event::MediaData(ref d) if d.mid == video) {
            after_junk += 1;
        }
        false
    });
    assert!(
        after_junk >= 25,
        "only {after_junk} frames in the 2 s after the junk"
    );

    // The viewer vanishes (no DELETE, no more datagrams): closed after the
    // ICE timeout, its resource 404 afterwards.
    drop(viewer);
    let vanished = Instant::now();
    let closed = server.wait_for(Duration::from_secs(30), |_, err| {
        err.contains("WebRTC session closed: ICE disconnected")
    });
    assert!(
        closed,
        "the vanished viewer was not closed in 30 s:\n{}",
        server.describe()
    );
    eprintln!("vanished viewer closed after {:?}", vanished.elapsed());
    let r = request(http, &http.to_string(), "DELETE", &location, &[], None, T).unwrap();
    assert_eq!(r.status, 404, "the vanished session is gone");
    publisher.kill();
}

#[test]
fn whep_of_h264_with_b_frames_is_refused_with_a_reason() {
    if !require_tools("webrtc_e2e", &["ffmpeg"]) {
        return;
    }
    let Some(bin) = binary::arcly_bin("webrtc_e2e") else {
        return;
    };
    let mut server = binary::spawn(
        &bin,
        &[
            "--rtmp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--rtsp",
            "off",
            "--srt",
            "off",
            "--webrtc",
            "127.0.0.1:0",
        ],
    );
    let _udp = wait_webrtc_addr(&mut server);
    let rtmp = binary::wait_rtmp_addr(&mut server, T).expect("RTMP banner");
    let http = binary::wait_http_addr(&mut server, T).expect("HTTP banner");
    let spec = PublishSpec {
        fps: 25,
        gop: 25,
        seconds: 20,
        ..PublishSpec::default()
    };
    let mut publisher = Proc::spawn(
        "ffmpeg",
        &mut publish_command_full(&format!("rtmp://{rtmp}/live/bf"), &spec, "flv", true, &[]),
    );
    let started = Instant::now();
    let refused = loop {
        let (mut peer, offer) = Peer::new(Direction::RecvOnly);
        let resp = peer.signal(http, "/live/bf/whep", &offer);
        match resp.status {
            422 => break resp,
            // Not live yet, or live with an empty GOP cache (the session
            // then ends at the first B-frame): try again.
            404 | 201 => {
                if let Some(loc) = resp.header("location") {
                    let _ = request(http, &http.to_string(), "DELETE", loc, &[], None, T);
                }
            }
            other => panic!("WHEP of a B-frame stream: {other} {}", resp.text()),
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never refused:\n{}\n{}",
            server.describe(),
            publisher.describe()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(refused.text().contains("B-frames"), "{}", refused.text());
    assert!(
        server.wait_for(T, |_, err| err.contains("WHIP/WHEP request refused")
            && err.contains("B-frames")),
        "no log line names the B-frames:\n{}",
        server.describe()
    );
    publisher.kill();
}

/// H.264 access units (Annex B) of a lavfi test pattern encoded by x264
/// with an AUD before each one and SPS/PPS before every IDR.
fn x264_access_units(dir: &std::path::Path, frames: u32) -> Vec<Vec<u8>> {
    let file = dir.join("whip.h264");
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc=size=320x240:rate=25")
        .args(["-frames:v", &frames.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
        ])
        .args(["-pix_fmt", "yuv420p", "-g", "25", "-bf", "0"])
        .args(["-x264-params", "aud=1:repeat-headers=1", "-f", "h264"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = std::fs::read(&file).unwrap();
    // Split before every 4-byte start code followed by an AUD (type 9).
    let mut starts: Vec<usize> = (0..data.len().saturating_sub(5))
        .filter(|&i| data[i..i + 4] == [0, 0, 0, 1] && data[i + 4] & 0x1f == 9)
        .collect();
    starts.push(data.len());
    starts
        .windows(2)
        .map(|w| data[w[0]..w[1]].to_vec())
        .collect()
}

#[test]
fn whip_publisher_is_watched_over_rtmp() {
    if !require_tools("webrtc_e2e", &["ffmpeg", "ffprobe"]) {
        return;
    }
    let Some(bin) = binary::arcly_bin("webrtc_e2e") else {
        return;
    };
    let mut server = binary::spawn(
        &bin,
        &[
            "--rtmp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--rtsp",
            "off",
            "--srt",
            "off",
            "--webrtc",
            "127.0.0.1:0",
        ],
    );
    let _udp = wait_webrtc_addr(&mut server);
    let rtmp = binary::wait_rtmp_addr(&mut server, T).expect("RTMP banner");
    let http = binary::wait_http_addr(&mut server, T).expect("HTTP banner");
    let dir = std::env::temp_dir().join(format!("arcly-whip-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let aus = x264_access_units(&dir, 200);
    assert!(aus.len() >= 190, "{} access units", aus.len());

    let (mut peer, offer) = Peer::new(Direction::SendOnly);
    let resp = peer.signal(http, "/live/whip/whip", &offer);
    assert_eq!(resp.status, 201, "WHIP: {}", resp.text());
    let location = resp.header("location").unwrap().to_owned();
    let connected = peer.run_until(Instant::now() + T, |_, e| matches!(e, Event::Connected));
    assert!(connected, "WHIP peer not connected:\n{}", server.describe());

    // ffprobe plays the stream over RTMP while the WHIP peer sends 8 s of
    // video in real time.
    let mut probe = Proc::spawn(
        "ffprobe",
        &mut play_command(&format!("rtmp://{rtmp}/live/whip"), Duration::from_secs(5)),
    );
    let video = peer.video;
    let t0 = Instant::now();
    for (n, au) in aus.iter().enumerate() {
        let due = t0 + Duration::from_millis(40 * n as u64);
        peer.run_until(due, |_, _| false);
        let writer = peer.rtc.writer(video).expect("video writer");
        let pt = writer
            .payload_params()
            .find(|p| p.spec().codec == str0m::format::Codec::H264)
            .map(|p| p.pt())
            .expect("H.264 negotiated");
        let rtp = MediaTime::new(n as u64 * 3600, Frequency::NINETY_KHZ);
        writer.write(pt, Instant::now(), rtp, au.clone()).unwrap();
    }
    peer.run_until(Instant::now() + Duration::from_millis(300), |_, _| false);
    // DELETE ends the stream: ffprobe sees its end and exits.
    let r = request(http, &http.to_string(), "DELETE", &location, &[], None, T).unwrap();
    assert_eq!(r.status, 200);
    let (status, _) = probe.wait_or_stop(Duration::from_secs(15));
    let frames = parse_frames(&probe.stdout());
    let video_frames: Vec<_> = frames.iter().filter(|f| f.kind == Kind::Video).collect();
    eprintln!(
        "ffprobe decoded {} video frames over RTMP",
        video_frames.len()
    );
    assert!(
        video_frames.len() >= 100,
        "ffprobe decoded {} video frames of ~190 sent (status {status:?}):\n{}\n{}",
        video_frames.len(),
        probe.describe(),
        server.describe()
    );
    assert!(video_frames[0].key, "the first decoded frame is a keyframe");
    let errors = error_lines(&probe.stderr());
    assert!(errors.is_empty(), "ffprobe errors: {errors:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
