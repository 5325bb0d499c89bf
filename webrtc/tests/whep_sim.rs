//! A WHEP viewer on a simulated clock and an in-memory link, no sockets: a
//! str0m client offers recvonly H.264 + Opus, the server's [`WhepSession`]
//! (behind a [`Router`]) answers and plays an engine stream that a publisher
//! fills live. Asserts what the viewer's decoder would get: the keyframe
//! first with SPS/PPS before the IDR, then every frame in order with the
//! publisher's timestamps, and every Opus packet.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use arcly::codec::h264::AvcConfig;
use arcly::codec::opus::OpusHead;
use arcly::engine::Publisher;
use arcly::{Codec, Engine, Frame, FrameFlags, Instant, StreamKey};
use arcly_webrtc::{Router, WhepSession};
use bytes::Bytes;
use str0m::change::{SdpAnswer, SdpApi};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
    0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

/// Video every 40 ms (keyframe every 25 frames), Opus every 20 ms.
const VIDEO_MS: i64 = 40;
const AUDIO_MS: i64 = 20;

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

fn opus_packet(n: i64) -> Vec<u8> {
    let mut v = vec![0xFC]; // TOC: CELT FB 20 ms, one frame
    v.extend((0..80).map(|i| (n as u8).wrapping_add(i) | 1));
    v
}

struct Live {
    publisher: Publisher,
    next_video: i64,
    next_audio: i64,
}

impl Live {
    fn start(engine: &Engine) -> Live {
        let mut publisher = engine
            .publish(StreamKey::new("live", "cam").unwrap())
            .unwrap();
        let config = AvcConfig::from_parameter_sets(
            vec![Bytes::from_static(SPS)],
            vec![Bytes::from_static(PPS)],
        )
        .unwrap();
        for (codec, payload) in [
            (Codec::H264, config.to_bytes()),
            (Codec::Opus, OpusHead::new(2).to_bytes()),
        ] {
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
            next_video: 0,
            next_audio: 0,
        }
    }

    /// Publishes everything with a timestamp up to `ms` (the live edge).
    fn until(&mut self, ms: i64) {
        while self.next_video * VIDEO_MS <= ms || self.next_audio * AUDIO_MS <= ms {
            if self.next_video * VIDEO_MS <= self.next_audio * AUDIO_MS {
                let n = self.next_video;
                let nal = slice(n);
                let mut avcc = (nal.len() as u32).to_be_bytes().to_vec();
                avcc.extend_from_slice(&nal);
                let pts = n * VIDEO_MS * 90;
                self.publisher.send(Frame {
                    codec: Codec::H264,
                    flags: if n % 25 == 0 {
                        FrameFlags::KEYFRAME
                    } else {
                        FrameFlags::NONE
                    },
                    pts,
                    dts: pts,
                    timebase: 90_000,
                    payload: Bytes::from(avcc),
                });
                self.next_video += 1;
            } else {
                let n = self.next_audio;
                self.publisher.send(Frame {
                    codec: Codec::Opus,
                    flags: FrameFlags::KEYFRAME,
                    pts: n * AUDIO_MS * 48,
                    dts: n * AUDIO_MS * 48,
                    timebase: 48_000,
                    payload: Bytes::from(opus_packet(n)),
                });
                self.next_audio += 1;
            }
        }
    }
}

/// Splits an Annex B access unit into NAL units.
fn nals(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
        while end > s && data[end - 1] == 0 {
            end -= 1; // 4-byte start code's leading zero
        }
        out.push(&data[s..end]);
    }
    out
}

#[test]
fn whep_viewer_gets_keyframe_first_then_every_frame_in_order() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let epoch = std::time::Instant::now();
    let wall = |ms: u64| epoch + Duration::from_millis(ms);
    let server_addr: SocketAddr = "10.0.0.1:8189".parse().unwrap();
    let client_addr: SocketAddr = "10.0.0.2:50000".parse().unwrap();

    // The stream is live for 500 ms before the viewer arrives (GOP cache:
    // keyframe 0 and 12 P-frames).
    let engine = Engine::new();
    engine.add_app("live", arcly::AppConfig::default());
    let mut live = Live::start(&engine);
    live.until(500);
    let mut now_ms: u64 = 500;

    // Client: a full-ICE str0m peer offering recvonly H.264 + Opus.
    let mut client = Rtc::new(wall(now_ms));
    client.add_local_candidate(Candidate::host(client_addr, "udp").unwrap());
    let mut change: SdpApi = client.sdp_api();
    let video_mid: Mid = change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let audio_mid: Mid = change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, pending) = change.apply().unwrap();

    // Server: session + router.
    let subscriber = engine
        .subscribe(&StreamKey::new("live", "cam").unwrap())
        .unwrap();
    let (mut session, answer) = WhepSession::new(
        &offer.to_sdp_string(),
        &[server_addr],
        subscriber,
        Instant::from_millis(now_ms),
        epoch,
        0x5eed,
    )
    .unwrap();
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("10.0.0.1 8189 typ host"), "{answer}");
    assert!(
        answer.contains("H264/90000") && answer.contains("opus/48000"),
        "{answer}"
    );
    let mut router = Router::new(4);
    let id = router.insert(session.local_ufrag()).unwrap();
    client
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();

    let mut to_server: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut to_client: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut video: Vec<(u64, Vec<u8>, bool)> = Vec::new();
    let mut audio: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut connected_at = None;
    let mut junk_dropped = 0;

    // 3 s of simulated time in 1 ms steps; each step: publish the live edge,
    // run both timers, deliver both directions (1 ms link), pump media.
    let end_ms = now_ms + 3000;
    while now_ms < end_ms {
        now_ms += 1;
        live.until(now_ms as i64);
        let now = Instant::from_millis(now_ms);

        // Like a real driver, drain the client's outputs after every input.
        let mut drain = |client: &mut Rtc, to_server: &mut VecDeque<_>| loop {
            match client.poll_output().unwrap() {
                Output::Timeout(_) => break,
                Output::Transmit(t) => {
                    to_server.push_back((t.source, t.destination, t.contents.to_vec()))
                }
                Output::Event(Event::Connected) => connected_at = Some(now_ms),
                Output::Event(Event::MediaData(d)) if d.mid == video_mid => {
                    video.push((d.time.numer(), d.data.to_vec(), d.is_keyframe()))
                }
                Output::Event(Event::MediaData(d)) if d.mid == audio_mid => {
                    audio.push((d.time.numer(), d.data.to_vec()))
                }
                Output::Event(_) => {}
            }
        };
        client.handle_input(Input::Timeout(wall(now_ms))).unwrap();
        drain(&mut client, &mut to_server);
        while let Some((src, dst, data)) = to_client.pop_front() {
            let input = Input::Receive(
                wall(now_ms),
                Receive {
                    proto: Protocol::Udp,
                    source: src,
                    destination: dst,
                    contents: data.as_slice().try_into().unwrap(),
                },
            );
            client.handle_input(input).unwrap();
            drain(&mut client, &mut to_server);
        }

        // The viewer asks for a keyframe (PLI) at 2 s: forwarded to the
        // publisher, who had no request before.
        if now_ms == 2000 {
            assert_eq!(live.publisher.take_keyframe_requests(), 0);
            let mut writer = client.writer(video_mid).unwrap();
            writer
                .request_keyframe(None, KeyframeRequestKind::Pli)
                .unwrap();
            drain(&mut client, &mut to_server);
        }
        // Junk from the viewer's own address reaches its session, which
        // refuses it without dying.
        if now_ms == 1500 {
            assert_eq!(router.route(client_addr, &[0xff, 1, 2, 3]), Some(id));
            assert!(session
                .handle_datagram(now, client_addr, server_addr, &[0xff, 1, 2, 3])
                .is_err());
        }
        // Junk on the shared socket from a stranger is routed nowhere.
        if now_ms % 100 == 0 {
            let stranger: SocketAddr = "10.9.9.9:1234".parse().unwrap();
            if router
                .route(stranger, &[0x16, 0xfe, 0xfd, 0, 1, 2])
                .is_none()
            {
                junk_dropped += 1;
            }
        }
        while let Some((src, dst, data)) = to_server.pop_front() {
            assert_eq!(dst, server_addr);
            assert_eq!(router.route(src, &data), Some(id));
            session.handle_datagram(now, src, dst, &data).unwrap();
        }
        if session.poll_timeout().is_some_and(|t| t <= now) {
            session.handle_timeout(now).unwrap();
        }
        session.handle_media(now).unwrap();
        while let Some(t) = session.poll_transmit() {
            assert_eq!(t.source, server_addr);
            to_client.push_back((t.source, t.destination, t.contents));
        }
    }

    let connected_at = connected_at.expect("client never connected");
    assert!(session.is_connected() && session.is_alive());
    assert!(connected_at < 700, "connected only at {connected_at} ms");
    assert_eq!(junk_dropped, 30);

    // Video: the first access unit is the GOP cache's keyframe (frame 0),
    // SPS and PPS before the IDR, then every published frame in order.
    assert!(video.len() > 60, "only {} video frames", video.len());
    let (t0, first, first_key) = &video[0];
    let types: Vec<u8> = nals(first).iter().map(|n| n[0] & 0x1f).collect();
    assert!(
        first_key,
        "first video frame is not a keyframe: NAL types {types:?}, {} bytes, {} frames",
        first.len(),
        video.len()
    );
    let units = nals(first);
    assert_eq!(units.len(), 3, "SPS, PPS, IDR expected");
    assert_eq!(units[0], SPS);
    assert_eq!(units[1], PPS);
    assert_eq!(units[2], slice(0).as_slice());
    for (n, (t, data, key)) in video.iter().enumerate() {
        let n = n as i64;
        let units = nals(data);
        assert_eq!(
            units.last().copied(),
            Some(slice(n).as_slice()),
            "video frame {n} differs"
        );
        assert_eq!(*key, n % 25 == 0, "keyframe flag of frame {n}");
        if n % 25 == 0 {
            assert_eq!(&units[..2], &[SPS, PPS], "parameter sets before IDR {n}");
        }
        assert_eq!(
            t.wrapping_sub(*t0),
            (n * VIDEO_MS * 90) as u64,
            "timestamp of video frame {n}"
        );
    }
    // Everything published until ~the end arrived (not a stall).
    let published = live.next_video;
    assert!(
        video.len() as i64 >= published - 3,
        "{} of {published}",
        video.len()
    );

    // Audio: every Opus packet from the start point on, in order, 20 ms apart.
    assert!(audio.len() > 120, "only {} audio packets", audio.len());
    let (a0, _) = audio[0];
    let first_audio = (0..live.next_audio)
        .find(|&n| opus_packet(n) == audio[0].1)
        .expect("unknown first audio packet");
    for (k, (t, data)) in audio.iter().enumerate() {
        let n = first_audio + k as i64;
        assert_eq!(data, &opus_packet(n), "audio packet {n} differs");
        assert_eq!(t.wrapping_sub(a0), (k as i64 * AUDIO_MS * 48) as u64);
    }
    assert!(audio.len() as i64 >= live.next_audio - first_audio - 5);
    let stats = session.stats();
    assert_eq!(stats.keyframe_requests, 1);
    assert!(
        live.publisher.take_keyframe_requests() > 0,
        "PLI not forwarded"
    );
    assert_eq!(stats.transmits_dropped, 0);
    assert_eq!(stats.frames_skipped, 0);

    // The viewer vanishes without DELETE: nothing more from it. The session
    // notices through ICE (consent checks stop) and reports itself dead.
    let vanished = now_ms;
    while session.is_alive() && now_ms < vanished + 120_000 {
        now_ms = session
            .poll_timeout()
            .map_or(now_ms + 1000, |t| t.as_millis().max(now_ms + 1));
        session
            .handle_timeout(Instant::from_millis(now_ms))
            .unwrap();
        while session.poll_transmit().is_some() {}
    }
    assert!(
        !session.is_alive(),
        "session still alive 120 s after the viewer vanished"
    );
    let gone_after = now_ms - vanished;
    assert!(gone_after <= 60_000, "gone only after {gone_after} ms");
    eprintln!("WHEP session gone {gone_after} ms after its viewer vanished");
}
