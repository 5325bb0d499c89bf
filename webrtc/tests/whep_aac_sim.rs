//! A WHEP viewer of a stream published with H.264 + AAC (as from RTMP), on
//! a simulated clock and an in-memory link, no sockets: the session joins
//! the stream's shared AAC → Opus feed, and the viewer's str0m client gets
//! Opus packets 20 ms apart that decode (libopus) to the published tone,
//! with RTP times on the same timeline as the video (A/V in sync). A second
//! viewer shares the feed; when both are gone, the transcoding stops.

#![cfg(feature = "transcode")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use arcly::codec::aac::iter_adts;
use arcly::codec::h264::AvcConfig;
use arcly::engine::Publisher;
use arcly::{Codec, Engine, Frame, FrameFlags, Instant, StreamKey};
use arcly_webrtc::{OpusFeeds, WhepSession};
use bytes::Bytes;
use str0m::change::{SdpAnswer, SdpApi};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
    0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

/// The slice NAL (no length prefix) of video frame `n`: a keyframe (IDR) every
/// 25 frames, sizes varying so that some frames need FU-A fragmentation.
fn slice(n: i64) -> Vec<u8> {
    let key = n % 25 == 0;
    let len = if key {
        5000
    } else {
        300 + (n as usize * 97) % 2500
    };
    let mut v = vec![if key { 0x65 } else { 0x41 }];
    let mut x = (n as u32).wrapping_mul(2_654_435_761) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push((x as u8) | 1); // no zero bytes: no start-code emulation
    }
    v
}

const VIDEO_MS: i64 = 40;

/// 6 s of a 440 Hz tone, AAC-LC 44.1 kHz stereo from ffmpeg (ADTS):
/// (AudioSpecificConfig, raw frames).
fn aac_tone() -> (Bytes, Vec<Bytes>) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .args([
            "sine=frequency=440:sample_rate=44100",
            "-t",
            "6",
            "-ac",
            "2",
        ])
        .args(["-c:a", "aac", "-b:a", "128k", "-f", "adts", "-"])
        .output()
        .expect("ffmpeg must be installed");
    assert!(out.status.success());
    let data = Bytes::from(out.stdout);
    let mut config = None;
    let mut frames = Vec::new();
    for item in iter_adts(&data) {
        let (h, payload) = item.unwrap();
        config.get_or_insert(h.to_config().to_bytes());
        frames.push(payload);
    }
    (config.unwrap(), frames)
}

/// An RTMP-like publisher: millisecond timestamps, H.264 every 40 ms
/// (keyframe every second), AAC every 1024/44100 s.
struct Live {
    publisher: Publisher,
    aac: Vec<Bytes>,
    next_video: i64,
    next_audio: usize,
}

fn aac_ms(n: usize) -> i64 {
    n as i64 * 1024 * 1000 / 44_100
}

impl Live {
    fn start(engine: &Engine) -> Live {
        let mut publisher = engine
            .publish(StreamKey::new("live", "cam").unwrap())
            .unwrap();
        let (asc, aac) = aac_tone();
        let config = AvcConfig::from_parameter_sets(
            vec![Bytes::from_static(SPS)],
            vec![Bytes::from_static(PPS)],
        )
        .unwrap();
        for (codec, payload) in [(Codec::H264, config.to_bytes()), (Codec::Aac, asc)] {
            publisher.send(Frame {
                codec,
                flags: FrameFlags::CONFIG,
                pts: 0,
                dts: 0,
                timebase: 1000,
                payload,
            });
        }
        Live {
            publisher,
            aac,
            next_video: 0,
            next_audio: 0,
        }
    }

    fn until(&mut self, ms: i64) {
        loop {
            let v = self.next_video * VIDEO_MS;
            let a = aac_ms(self.next_audio);
            if v.min(a) > ms || self.next_audio >= self.aac.len() {
                return;
            }
            if v <= a {
                let n = self.next_video;
                let nal = slice(n);
                let mut avcc = (nal.len() as u32).to_be_bytes().to_vec();
                avcc.extend_from_slice(&nal);
                self.publisher.send(Frame {
                    codec: Codec::H264,
                    flags: if n % 25 == 0 {
                        FrameFlags::KEYFRAME
                    } else {
                        FrameFlags::NONE
                    },
                    pts: v,
                    dts: v,
                    timebase: 1000,
                    payload: Bytes::from(avcc),
                });
                self.next_video += 1;
            } else {
                self.publisher.send(Frame {
                    codec: Codec::Aac,
                    flags: FrameFlags::KEYFRAME,
                    pts: a,
                    dts: a,
                    timebase: 1000,
                    payload: self.aac[self.next_audio].clone(),
                });
                self.next_audio += 1;
            }
        }
    }
}

/// One viewer: a str0m client and the server session, linked in memory.
struct Viewer {
    client: Rtc,
    session: WhepSession,
    addr: SocketAddr,
    video_mid: Mid,
    audio_mid: Mid,
    to_server: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    to_client: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// (RTP time, keyframe) of each video frame.
    video: Vec<(u64, bool)>,
    /// (RTP time, packet) of each audio packet.
    audio: Vec<(u64, Vec<u8>)>,
}

const SERVER: &str = "10.0.0.1:8189";

impl Viewer {
    fn new(
        engine: &Engine,
        feeds: &OpusFeeds,
        port: u16,
        now_ms: u64,
        epoch: std::time::Instant,
    ) -> Viewer {
        let wall = epoch + Duration::from_millis(now_ms);
        let addr: SocketAddr = format!("10.0.0.2:{port}").parse().unwrap();
        let mut client = Rtc::new(wall);
        client.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut change: SdpApi = client.sdp_api();
        let video_mid = change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let audio_mid = change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        let subscriber = engine
            .subscribe(&StreamKey::new("live", "cam").unwrap())
            .unwrap();
        let (mut session, answer) = WhepSession::new(
            &offer.to_sdp_string(),
            &[SERVER.parse().unwrap()],
            subscriber,
            Instant::from_millis(now_ms),
            epoch,
            u64::from(port),
        )
        .unwrap();
        session.set_opus_feeds(feeds.clone());
        assert!(answer.contains("opus/48000"), "{answer}");
        client
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        Viewer {
            client,
            session,
            addr,
            video_mid,
            audio_mid,
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            video: Vec::new(),
            audio: Vec::new(),
        }
    }

    fn drain_client(&mut self) {
        loop {
            match self.client.poll_output().unwrap() {
                Output::Timeout(_) => break,
                Output::Transmit(t) => {
                    self.to_server
                        .push_back((t.source, t.destination, t.contents.to_vec()))
                }
                Output::Event(Event::MediaData(d)) if d.mid == self.video_mid => {
                    self.video.push((d.time.numer(), d.is_keyframe()))
                }
                Output::Event(Event::MediaData(d)) if d.mid == self.audio_mid => {
                    self.audio.push((d.time.numer(), d.data.to_vec()))
                }
                Output::Event(_) => {}
            }
        }
    }

    /// One 1 ms step of both peers.
    fn step(&mut self, now_ms: u64, epoch: std::time::Instant) {
        let wall = epoch + Duration::from_millis(now_ms);
        let now = Instant::from_millis(now_ms);
        self.client.handle_input(Input::Timeout(wall)).unwrap();
        self.drain_client();
        while let Some((src, dst, data)) = self.to_client.pop_front() {
            let input = Input::Receive(
                wall,
                Receive {
                    proto: Protocol::Udp,
                    source: src,
                    destination: dst,
                    contents: data.as_slice().try_into().unwrap(),
                },
            );
            self.client.handle_input(input).unwrap();
            self.drain_client();
        }
        while let Some((src, dst, data)) = self.to_server.pop_front() {
            assert_eq!(src, self.addr);
            self.session.handle_datagram(now, src, dst, &data).unwrap();
        }
        if self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.handle_timeout(now).unwrap();
        }
        self.session.handle_media(now).unwrap();
        while let Some(t) = self.session.poll_transmit() {
            self.to_client
                .push_back((t.source, t.destination, t.contents));
        }
    }
}

#[test]
fn whep_viewers_of_an_aac_stream_get_opus_in_sync_from_one_shared_transcoder() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let epoch = std::time::Instant::now();
    let engine = Engine::new();
    engine.add_app("live", arcly::AppConfig::default());
    let key = StreamKey::new("live", "cam").unwrap();
    let mut live = Live::start(&engine);
    live.until(500);
    let feeds = OpusFeeds::new(engine.clone());
    let mut now_ms: u64 = 500;
    let mut a = Viewer::new(&engine, &feeds, 50_000, now_ms, epoch);
    let mut b: Option<Viewer> = None;
    while now_ms < 4_500 {
        now_ms += 1;
        live.until(now_ms as i64);
        a.step(now_ms, epoch);
        if now_ms == 1_500 {
            b = Some(Viewer::new(&engine, &feeds, 50_001, now_ms, epoch));
        }
        if let Some(b) = b.as_mut() {
            b.step(now_ms, epoch);
        }
    }
    let b = b.unwrap();
    // One transcoder for both viewers: the source has the two viewers'
    // subscribers and the feed's, no more.
    assert_eq!(feeds.active(), 1);
    let stats = engine.stream_stats(&key).unwrap().snapshot();
    assert_eq!(stats.subscribers, 3);

    let lookahead_ms = opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio)
        .unwrap()
        .get_lookahead()
        .unwrap() as f64
        / 48.0;
    for (name, v) in [("first", &a), ("second", &b)] {
        assert!(v.video.len() > 50, "{name}: {} video frames", v.video.len());
        assert!(v.video[0].1, "{name}: first video frame is a keyframe");
        assert!(v.audio.len() > 90, "{name}: {} Opus packets", v.audio.len());
        // Opus RTP times 20 ms apart, in order.
        for w in v.audio.windows(2) {
            assert_eq!(w[1].0 - w[0].0, 960, "{name}: Opus RTP step");
        }
        // A/V sync: the session maps one engine timeline onto both RTP
        // clocks (0 = the first frame written: the GOP cache's keyframe, at
        // 0 ms for the first viewer, 1000 ms for the second). The feed's
        // Opus packets sit on the grid of the AAC clock it started from
        // (0 ms), less the encoder's lookahead: packet n at 20·n ms −
        // lookahead. Both viewers must see them exactly there.
        assert_eq!(v.video[0].0, 0, "{name}: video RTP time starts at 0");
        let base_ms = if name == "first" { 0.0 } else { 1000.0 };
        for (rtp, _) in &v.audio {
            let engine_ms = *rtp as f64 / 48.0 + base_ms;
            let phase = (engine_ms + lookahead_ms).rem_euclid(20.0);
            assert!(
                !(0.05..=19.95).contains(&phase),
                "{name}: Opus packet at {engine_ms} ms is off the AAC clock"
            );
        }
        // Audio starts at the live edge when the viewer is connected (the
        // feed's transcoded GOP-cache burst is skipped: it would fill the
        // browser's audio buffer), video at the cached keyframe.
        let first_audio_ms = v.audio[0].0 as f64 / 48.0 + base_ms;
        let joined = if name == "first" { 500.0 } else { 1500.0 };
        assert!(
            (joined - 100.0..joined + 400.0).contains(&first_audio_ms),
            "{name}: first audio at {first_audio_ms} ms, joined at {joined} ms"
        );
        // The audio decodes to the published tone.
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Stereo).unwrap();
        let mut pcm = Vec::new();
        let mut buf = vec![0f32; 5760 * 2];
        for (_, p) in &v.audio {
            let n = dec.decode_float(p, &mut buf, false).unwrap();
            assert_eq!(n, 960);
            pcm.extend(buf[..n * 2].iter().step_by(2).copied());
        }
        let mid = &pcm[9_600..pcm.len() - 9_600];
        let rms =
            (mid.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / mid.len() as f64).sqrt();
        assert!((0.055..0.07).contains(&rms), "{name}: RMS {rms}"); // 1/8 sine, stereo at −3 dB
        let crossings = mid.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        let hz = crossings as f64 * 48_000.0 / mid.len() as f64;
        assert!((435.0..445.0).contains(&hz), "{name}: {hz} Hz");
    }
    // Both viewers started at the GOP cache's keyframe: the video frame
    // timelines and the audio timelines line up with each other.
    eprintln!(
        "first: video {} audio {} (first audio RTP {}), second: video {} audio {} (first audio RTP {})",
        a.video.len(), a.audio.len(), a.audio[0].0, b.video.len(), b.audio.len(), b.audio[0].0
    );
    let ts = a.session.transcode_stats().unwrap();
    assert_eq!(ts.aac_errors, 0);
    assert_eq!(ts.resyncs, 0);

    // Both viewers leave: the transcoding stops, its subscriber is gone.
    drop(a);
    assert_eq!(feeds.active(), 1);
    drop(b);
    assert_eq!(feeds.active(), 0);
    assert_eq!(engine.stream_stats(&key).unwrap().snapshot().subscribers, 0);
}
