//! Golden tests of the SRT replay (core/src/replay/srt.rs) on
//! `tests/fixtures/ffmpeg_publish_arcly_srt.pcap`: ffmpeg publishing 2 s of
//! H.264 + AAC in MPEG-TS over SRT to arcly (see tests/fixtures/README.md).
//! Regenerating the fixture means updating the numbers here.
#![cfg(feature = "replay")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use arcly::frame::{Codec, Frame};
use arcly::replay::{
    Capture, CaptureLimits, EventKind, Protocol, Replay, ReplayConfig, SrtFlowReplay, Transport,
};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/ffmpeg_publish_arcly_srt.pcap"
);

fn capture() -> Capture {
    Capture::from_reader(
        std::fs::File::open(FIXTURE).unwrap(),
        CaptureLimits::default(),
    )
    .unwrap()
}

fn only_srt(r: &Replay) -> &SrtFlowReplay {
    assert!(r.flows.is_empty(), "no TCP flow in the capture");
    assert!(r.udp.is_empty(), "the UDP flow is replayed as SRT");
    assert_eq!(r.srt.len(), 1);
    &r.srt[0]
}

fn media(f: &SrtFlowReplay, codec: Codec) -> Vec<&Frame> {
    f.frames()
        .filter(|x| x.codec == codec && !x.is_config())
        .collect()
}

/// The SRT data packet header's "is data" bit is clear (§3.1).
fn is_data(payload: &[u8]) -> bool {
    payload.len() > 16 && payload[0] & 0x80 == 0
}

#[test]
fn srt_publish_golden() {
    // Auto-detected by the packet shape: the listener port is 19364.
    let r = Replay::run(&capture(), &ReplayConfig::default());
    let f = only_srt(&r);
    assert_eq!(f.listener.port(), 19364);
    assert_eq!(f.cookie_source, "induction response");
    assert_eq!(f.handshake(), Some(("publish:live/fixture", 120, false)));
    assert!(f
        .events
        .iter()
        .any(|e| matches!(e.kind, EventKind::SrtConnected { latency_ms: 120 })));
    let s = f.stats;
    assert_eq!((s.c2s_datagrams, s.s2c_datagrams), (86, 32));
    assert_eq!(
        (s.data_packets, s.retransmitted, s.data_bytes),
        (53, 0, 53204)
    );
    assert_eq!((s.acks, s.naks, s.nak_lost), (30, 0, 0));
    assert_eq!(
        (s.recv_received, s.recv_dropped, s.recv_too_late),
        (53, 0, 0)
    );
    assert_eq!((s.delivered, s.delivered_bytes), (53, 53204));

    let video = media(f, Codec::H264);
    let audio = media(f, Codec::Aac);
    assert_eq!(video.len(), 30, "2 s of 15 fps");
    assert_eq!(audio.len(), 80);
    let keys: Vec<usize> = video
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_keyframe())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keys, vec![0, 15], "one keyframe per second");
    assert_eq!(f.frames().filter(|x| x.is_config()).count(), 2);
    assert_eq!((video[0].pts, video[0].dts), (128_090, 128_090));
    assert_eq!(video[29].dts, 302_090);
    assert_eq!(audio[0].dts, 126_000);
    assert_eq!(audio[79].dts, 291_094);
    assert!(video.iter().all(|v| v.timebase == 90_000));
    // 15 fps: 6000 ticks apart.
    assert!(video.windows(2).all(|w| w[1].dts - w[0].dts == 6000));
    assert!(f
        .events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Close { reason } if reason == "peer closed")));

    let sum = r.summary();
    assert!(
        sum.contains(
            "handshake: stream id \"publish:live/fixture\", latency 120 ms, not encrypted"
        ),
        "{sum}"
    );
    assert!(
        sum.contains("H264: 30 frames, 1 configs, 2 keyframes"),
        "{sum}"
    );
}

#[test]
fn srt_replay_is_deterministic() {
    let cap = capture();
    let cfg = ReplayConfig::default();
    let a = Replay::run(&cap, &cfg);
    let b = Replay::from_reader(std::fs::File::open(FIXTURE).unwrap(), &cfg).unwrap();
    assert_eq!(a.summary(), b.summary());
    assert_eq!(a.to_json_lines(), b.to_json_lines());
    assert!(a
        .to_json_lines()
        .contains("\"kind\":\"handshake\",\"stream_id\":\"publish:live/fixture\""));
}

#[test]
fn srt_protocol_selection() {
    let cap = capture();
    let forced = Replay::run(
        &cap,
        &ReplayConfig::default()
            .with_protocol(Some(Protocol::Srt))
            .with_port(Some(19364)),
    );
    assert_eq!(only_srt(&forced).frames().count(), 112);
    let rtmp = Replay::run(
        &cap,
        &ReplayConfig::default().with_protocol(Some(Protocol::Rtmp)),
    );
    assert!(rtmp.srt.is_empty());
    assert_eq!(rtmp.udp.len(), 1, "listed, not replayed");
    assert_eq!("srt".parse::<Protocol>(), Ok(Protocol::Srt));
}

#[test]
fn srt_dropped_datagrams_are_reported_as_loss() {
    let mut cap = capture();
    let mut n = 0;
    cap.packets.retain(|p| {
        if p.transport != Transport::Udp || p.dst.port() != 19364 || !is_data(&p.payload) {
            return true;
        }
        n += 1;
        n < 20 || n % 7 != 3 // drops data packets 24, 31, 38, 45, 52
    });
    let r = Replay::run(&cap, &ReplayConfig::default());
    let f = only_srt(&r);
    let s = f.stats;
    assert_eq!(s.data_packets, 53 - 5);
    assert!(
        s.replay_naks > 0,
        "the receiver asks for the missing packets: {s:?}"
    );
    // ... and gives them up at their TSBPD time; the last one (packet 52)
    // was still awaited when the caller's SHUTDOWN closed the connection.
    assert_eq!(s.recv_dropped, 4, "{s:?}");
    assert_eq!(s.delivered, 48);
    // Fewer frames (the demuxer drops the damaged PES), none invented.
    assert_eq!(f.frames().count(), 91, "{}", r.summary());
    assert_eq!(media(f, Codec::H264).len(), 24);
    assert_eq!(media(f, Codec::Aac).len(), 65);
    let sum = r.summary();
    assert!(sum.contains("4 lost (dropped)"), "{sum}");
    assert_eq!(f.handshake(), Some(("publish:live/fixture", 120, false)));
}

#[test]
fn srt_reordered_datagrams_are_put_back_in_order() {
    let mut cap = capture();
    let data: Vec<usize> = (0..cap.packets.len())
        .filter(|&i| cap.packets[i].dst.port() == 19364 && is_data(&cap.packets[i].payload))
        .collect();
    // Swap the payloads of neighbouring data datagrams (times stay put).
    for pair in data.chunks(2).skip(1).step_by(3) {
        if let [a, b] = pair {
            let pa = cap.packets[*a].payload.clone();
            cap.packets[*a].payload = cap.packets[*b].payload.clone();
            cap.packets[*b].payload = pa;
        }
    }
    let r = Replay::run(&cap, &ReplayConfig::default());
    let f = only_srt(&r);
    assert_eq!(f.stats.delivered, 53);
    assert_eq!(f.stats.recv_dropped, 0);
    assert_eq!(media(f, Codec::H264).len(), 30);
    assert_eq!(media(f, Codec::Aac).len(), 80);
}

#[test]
fn srt_garbage_and_truncation_do_not_panic() {
    let cap = capture();
    for cut in [1usize, 3, 4, 5, 20, 60, 100] {
        let mut c = capture();
        c.packets.truncate(cut);
        let _ = Replay::run(&c, &ReplayConfig::default()).summary();
    }
    let mut c = cap;
    for (i, p) in c.packets.iter_mut().enumerate() {
        if i % 5 == 4 {
            let mut v = p.payload.to_vec();
            v.truncate(v.len() / 2);
            if let Some(b) = v.get_mut(3) {
                *b ^= 0x5a;
            }
            p.payload = v.into();
        }
    }
    let r = Replay::run(&c, &ReplayConfig::default());
    assert_eq!(r.srt.len(), 1);
    let _ = r.to_json_lines();
}

const AES_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/ffmpeg_publish_arcly_srt_aes.pcap"
);

fn aes_replay(passphrase: Option<&str>) -> Replay {
    let mut cfg = ReplayConfig::default();
    cfg.srt.passphrase = passphrase.map(str::to_owned);
    Replay::from_reader(std::fs::File::open(AES_FIXTURE).unwrap(), &cfg).unwrap()
}

#[test]
fn srt_encrypted_capture_with_and_without_passphrase() {
    // With the passphrase: decrypted (AES-128 CTR, §6), 1 s of media.
    let r = aes_replay(Some("fixture-passphrase"));
    let f = only_srt(&r);
    assert_eq!(f.handshake(), Some(("publish:live/secret", 120, true)));
    assert_eq!((f.stats.data_packets, f.stats.delivered), (25, 25));
    let video = media(f, Codec::H264);
    assert_eq!(video.len(), 15);
    assert!(video[0].is_keyframe());
    assert_eq!(media(f, Codec::Aac).len(), 35);
    assert_eq!(
        aes_replay(Some("fixture-passphrase")).to_json_lines(),
        r.to_json_lines()
    );

    // Without it, or with a wrong one: the handshake is still reported,
    // the replay listener refuses the caller, no frame is invented.
    for (pass, why) in [(None, "Unsecure"), (Some("wrong-passphrase"), "BadSecret")] {
        let r = aes_replay(pass);
        let f = only_srt(&r);
        assert_eq!(f.handshake(), Some(("publish:live/secret", 120, true)));
        assert_eq!(f.frames().count(), 0);
        assert_eq!(f.stats.delivered, 0);
        let errors: Vec<&String> = f
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Error { message } => Some(message),
                _ => None,
            })
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains(why), "{errors:?}");
    }
}

#[test]
fn srt_capture_started_mid_stream_says_so() {
    let mut cap = capture();
    // Without its 4 handshake datagrams; the flow is still SRT by --protocol.
    cap.packets.drain(..4);
    let cfg = ReplayConfig::default().with_protocol(Some(Protocol::Srt));
    let r = Replay::run(&cap, &cfg);
    let f = only_srt(&r);
    assert_eq!(f.handshake(), None);
    assert_eq!(f.frames().count(), 0);
    assert!(f.events.iter().any(
        |e| matches!(&e.kind, EventKind::Error { message } if message.contains("mid-stream"))
    ));
}
