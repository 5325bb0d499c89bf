//! A WHIP publisher on a simulated clock and an in-memory link, no sockets: a
//! str0m client offers sendonly H.264 + Opus and sends live media; the
//! server's [`WhipSession`] (behind a [`Router`]) publishes it into the
//! engine. Asserts what an engine viewer (any protocol) gets: the H.264
//! config record from the in-band SPS/PPS, the keyframe first, then every
//! frame in order in AVCC with the sender's timestamps; every Opus packet
//! after an OpusHead config.

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
use arcly::engine::Recv;
use arcly::{Codec, Engine, Instant, StreamKey};
use arcly_webrtc::{Router, WhipSession};
use str0m::change::{SdpAnswer, SdpApi};
use str0m::format::Codec as RtcCodec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
    0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

/// The slice NAL of video frame `n` (IDR every 25 frames, no zero bytes).
fn slice(n: u64) -> Vec<u8> {
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
        v.push((x as u8) | 1);
    }
    v
}

fn opus_packet(n: u64) -> Vec<u8> {
    let mut v = vec![0xFC];
    v.extend((0..80).map(|i| (n as u8).wrapping_add(i) | 1));
    v
}

fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for nal in nals {
        v.extend_from_slice(&[0, 0, 0, 1]);
        v.extend_from_slice(nal);
    }
    v
}

#[test]
fn whip_publisher_reaches_engine_keyframe_first_every_frame_in_order() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let epoch = std::time::Instant::now();
    let wall = |ms: u64| epoch + Duration::from_millis(ms);
    let server_addr: SocketAddr = "10.0.0.1:8189".parse().unwrap();
    let client_addr: SocketAddr = "10.0.0.2:50000".parse().unwrap();
    let engine = Engine::new();
    engine.add_app("live", arcly::AppConfig::default());
    let key = StreamKey::new("live", "cam").unwrap();
    let publisher = engine.publish(key.clone()).unwrap();
    let mut subscriber = engine.subscribe(&key).unwrap();

    let mut now_ms: u64 = 0;
    let mut client = Rtc::new(wall(now_ms));
    client.add_local_candidate(Candidate::host(client_addr, "udp").unwrap());
    let mut change: SdpApi = client.sdp_api();
    let video_mid: Mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let audio_mid: Mid = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = change.apply().unwrap();

    let (mut session, answer) = WhipSession::new(
        &offer.to_sdp_string(),
        &[server_addr],
        publisher,
        Instant::from_millis(now_ms),
        epoch,
        7,
    )
    .unwrap();
    assert!(answer.contains("a=recvonly"), "{answer}");
    let mut router = Router::new(4);
    let id = router.insert(session.local_ufrag()).unwrap();
    client
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();

    let mut to_server: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut to_client: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
    let mut connected = false;
    let (mut next_video, mut next_audio) = (0u64, 0u64);
    let mut frames = Vec::new();
    let mut plis: Vec<u64> = Vec::new();

    while now_ms < 3000 {
        now_ms += 1;
        let now = Instant::from_millis(now_ms);
        let drain = |client: &mut Rtc, to_server: &mut VecDeque<_>, plis: &mut Vec<u64>| -> bool {
            let mut up = false;
            loop {
                match client.poll_output().unwrap() {
                    Output::Timeout(_) => return up,
                    Output::Transmit(t) => {
                        to_server.push_back((t.source, t.destination, t.contents.to_vec()))
                    }
                    Output::Event(Event::Connected) => up = true,
                    Output::Event(Event::KeyframeRequest(r)) => {
                        assert_eq!(r.mid, video_mid);
                        plis.push(now_ms);
                    }
                    Output::Event(_) => {}
                }
            }
        };
        client.handle_input(Input::Timeout(wall(now_ms))).unwrap();
        connected |= drain(&mut client, &mut to_server, &mut plis);
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
            connected |= drain(&mut client, &mut to_server, &mut plis);
        }
        // Live media once connected: video every 40 ms, Opus every 20 ms,
        // RTP time from the sender's capture clock (starts at 1 s).
        if connected {
            while (next_video * 40) + 1000 <= now_ms {
                let n = next_video;
                let s = slice(n);
                let data = if n % 25 == 0 {
                    annex_b(&[SPS, PPS, &s])
                } else {
                    annex_b(&[&s])
                };
                let writer = client.writer(video_mid).unwrap();
                let pt = writer
                    .payload_params()
                    .find(|p| p.spec().codec == RtcCodec::H264)
                    .unwrap()
                    .pt();
                let rtp = MediaTime::new(90_000 + n * 3600, Frequency::NINETY_KHZ);
                writer.write(pt, wall(now_ms), rtp, data).unwrap();
                next_video += 1;
            }
            while (next_audio * 20) + 1000 <= now_ms {
                let n = next_audio;
                let writer = client.writer(audio_mid).unwrap();
                let pt = writer
                    .payload_params()
                    .find(|p| p.spec().codec == RtcCodec::Opus)
                    .unwrap()
                    .pt();
                let rtp = MediaTime::new(48_000 + n * 960, Frequency::FORTY_EIGHT_KHZ);
                writer.write(pt, wall(now_ms), rtp, opus_packet(n)).unwrap();
                next_audio += 1;
            }
            connected |= drain(&mut client, &mut to_server, &mut plis);
        }
        while let Some((src, dst, data)) = to_server.pop_front() {
            assert_eq!(router.route(src, &data), Some(id));
            session.handle_datagram(now, src, dst, &data).unwrap();
        }
        if session.poll_timeout().is_some_and(|t| t <= now) {
            session.handle_timeout(now).unwrap();
        }
        while let Some(t) = session.poll_transmit() {
            to_client.push_back((t.source, t.destination, t.contents));
        }
        // A viewer (any protocol) asks for a keyframe every 10 ms from 2 s
        // to 2.1 s: one PLI at once, the rest folded into one more after
        // PLI_INTERVAL.
        if (2000..=2100).contains(&now_ms) && now_ms % 10 == 0 {
            subscriber.request_keyframe();
        }
        while let Recv::Frame(entry) = subscriber.recv() {
            frames.push(entry.frame.clone());
        }
    }
    assert!(session.is_connected());

    let video: Vec<_> = frames.iter().filter(|f| f.codec == Codec::H264).collect();
    let audio: Vec<_> = frames.iter().filter(|f| f.codec == Codec::Opus).collect();
    // The engine viewer gets the config record, then the keyframe.
    assert!(video[0].is_config(), "first H.264 frame is not the config");
    let config = AvcConfig::parse(&video[0].payload).unwrap();
    assert_eq!(
        config.annex_b_parameter_sets().as_ref(),
        &annex_b(&[SPS, PPS])[..]
    );
    let media: Vec<_> = video.iter().filter(|f| !f.is_config()).collect();
    assert!(media.len() > 40, "only {} video frames", media.len());
    let p0 = media[0].pts;
    for (n, f) in media.iter().enumerate() {
        let n = n as u64;
        let mut avcc = (slice(n).len() as u32).to_be_bytes().to_vec();
        avcc.extend_from_slice(&slice(n));
        assert_eq!(f.payload.as_ref(), &avcc[..], "video frame {n} differs");
        assert_eq!(f.is_keyframe(), n % 25 == 0, "keyframe flag of {n}");
        assert_eq!(f.timebase, 90_000);
        assert_eq!(f.pts - p0, (n * 3600) as i64, "pts of video frame {n}");
    }
    assert!(
        media.len() as u64 >= next_video - 2,
        "{} of {next_video}",
        media.len()
    );
    // Only one config (SPS/PPS repeated identically on every IDR).
    assert_eq!(video.iter().filter(|f| f.is_config()).count(), 1);

    assert!(audio[0].is_config());
    let audio_media: Vec<_> = audio.iter().filter(|f| !f.is_config()).collect();
    assert!(audio_media.len() as u64 >= next_audio - 2);
    let a0 = audio_media[0].pts;
    for (n, f) in audio_media.iter().enumerate() {
        assert_eq!(f.payload.as_ref(), &opus_packet(n as u64)[..], "opus {n}");
        assert_eq!(f.pts - a0, n as i64 * 960);
    }
    // Audio and video start together (both captured at 1 s).
    let v_ms = media[0].pts * 1000 / 90_000;
    let a_ms = audio_media[0].pts * 1000 / 48_000;
    assert!(
        (v_ms - a_ms).abs() <= 20,
        "video {v_ms} ms, audio {a_ms} ms"
    );
    let stats = session.stats();
    assert_eq!(stats.pli_sent(), 2, "PLIs sent");
    assert_eq!(plis.len(), 2, "PLIs the publisher got: {plis:?}");
    assert!(plis[0] >= 2000 && plis[0] <= 2005, "{plis:?}");
    assert!(plis[1] >= 2500 && plis[1] <= 2510, "{plis:?}");
    assert_eq!(stats.frames_skipped, 0);
    assert_eq!(stats.transmits_dropped, 0);

    // The publisher vanishes without DELETE: the session reports itself dead
    // (the driver then drops it, which ends the engine stream).
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
        "WHIP session alive 120 s after its publisher vanished"
    );
    assert!(now_ms - vanished <= 60_000);
}
