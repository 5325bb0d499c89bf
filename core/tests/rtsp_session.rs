//! The RTSP server session driven directly (no sockets): what a strict
//! player sees at PLAY (RTP-Info names the first packet each track really
//! sends, an RTCP sender report precedes it, the same session id on every
//! response), an RTSP publish arriving in the engine, deferred admission,
//! and hostile peers dropped with a reason while another session carries on.

#![cfg(feature = "rtsp")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod rtsp_util;
use rtsp_util::*;

use std::sync::{Arc, Mutex};

use arcly::admission::{Admission, AdmissionHandle, AdmissionRequest, Decision, PendingAdmission};
use arcly::engine::Recv;
use arcly::rtp::rtcp::{parse_compound, RtcpPacket};
use arcly::rtp::RtpPacket;
use arcly::rtsp::message::Item;
use arcly::rtsp::RtspSessionFactory;
use arcly::session::CloseReason;
use arcly::{Codec, Engine, FrameFlags, Instant, StreamKey};
use bytes::Bytes;

#[test]
fn play_rtp_info_names_the_first_packet_and_sr_comes_first() {
    let engine = Engine::with_defaults();
    let _p = publish(&engine);
    let factory = RtspSessionFactory::allow_all(engine.clone());
    let mut c = Client::new(&factory, 7);
    let url = "rtsp://127.0.0.1:8554/live/cam";
    let d = c.request("DESCRIBE", url, &[], "");
    assert_eq!(d.status, 200);
    let sdp = std::str::from_utf8(&d.body).unwrap();
    assert!(
        sdp.contains("H264/90000") && sdp.contains("MPEG4-GENERIC/48000/2"),
        "{sdp}"
    );
    let s1 = c.request(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
        "",
    );
    assert_eq!(s1.status, 200);
    let id = session_id(&s1);
    let s2 = c.request(
        "SETUP",
        &format!("{url}/trackID=1"),
        &[
            (
                "Transport",
                "RTP/AVP;unicast;client_port=5000-5001,RTP/AVP/TCP;unicast;interleaved=2-3",
            ),
            ("Session", &id),
        ],
        "",
    );
    assert_eq!(s2.status, 200);
    assert_eq!(session_id(&s2), id, "the same session id on every SETUP");
    let n = c.items.len();
    let play = c.request("PLAY", &format!("{url}/"), &[("Session", &id)], "");
    assert_eq!(play.status, 200);
    let rtp_info = play.headers.get("RTP-Info").unwrap().to_owned();
    let frames = c.frames_after(n);
    for (track, (rtp_ch, rtcp_ch)) in [(0, (0u8, 1u8)), (1, (2, 3))] {
        let first_rtp = frames.iter().position(|(ch, _)| *ch == rtp_ch).unwrap();
        let first_sr = frames.iter().position(|(ch, _)| *ch == rtcp_ch).unwrap();
        assert!(
            first_sr < first_rtp,
            "track {track}: SR before the first RTP packet"
        );
        let pkt = RtpPacket::parse(&frames[first_rtp].1).unwrap();
        let entry = rtp_info
            .split(',')
            .find(|e| e.contains(&format!("trackID={track};")))
            .unwrap_or_else(|| panic!("no RTP-Info for track {track}: {rtp_info}"));
        assert!(
            entry.contains(&format!("seq={};", pkt.sequence)),
            "{entry} vs {pkt:?}"
        );
        assert!(
            entry.ends_with(&format!("rtptime={}", pkt.timestamp)),
            "{entry} vs {pkt:?}"
        );
        let sr = parse_compound(&frames[first_sr].1).unwrap();
        let RtcpPacket::SenderReport(sr) = &sr[0] else {
            panic!("not an SR")
        };
        assert_eq!(sr.ssrc, pkt.ssrc);
        assert_eq!(sr.rtp_time, pkt.timestamp);
    }
    // A second viewer gets the very same packets (built once per stream).
    let mut c2 = Client::new(&factory, 8);
    c2.request("DESCRIBE", url, &[], "");
    let s = c2.request(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[("Transport", "RTP/AVP/TCP;interleaved=0-1")],
        "",
    );
    let id2 = session_id(&s);
    assert_ne!(id2, id);
    let n2 = c2.items.len();
    c2.request("PLAY", url, &[("Session", &id2)], "");
    let v1: Vec<_> = frames.iter().filter(|(ch, _)| *ch == 0).collect();
    let v2: Vec<_> = c2
        .frames_after(n2)
        .into_iter()
        .filter(|(ch, _)| *ch == 0)
        .collect();
    assert_eq!(v1.len(), v2.len());
    assert!(v1.iter().zip(&v2).all(|(a, b)| a.1 == b.1));
    assert!(
        c2.frames_after(n2).iter().all(|(ch, _)| *ch <= 1),
        "only the track it set up"
    );
}

#[test]
fn rtsp_publish_arrives_in_the_engine() {
    let engine = Engine::with_defaults();
    let factory = RtspSessionFactory::allow_all(engine.clone());
    let mut c = Client::new(&factory, 1);
    let url = "rtsp://127.0.0.1:8554/live/pub";
    let sdp = "v=0\r\ns=x\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAHqzZQKAv+XARAAADAAEAAAMAMg8WLZY=,aOvjyyLA\r\na=control:streamid=0\r\n";
    assert_eq!(
        c.request("ANNOUNCE", url, &[("Content-Type", "application/sdp")], sdp)
            .status,
        200
    );
    // A second publisher of the same stream is refused.
    let mut other = Client::new(&factory, 2);
    assert_eq!(other.request("ANNOUNCE", url, &[], sdp).status, 403);
    let s = c.request(
        "SETUP",
        &format!("{url}/streamid=0"),
        &[(
            "Transport",
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=RECORD",
        )],
        "",
    );
    assert_eq!(s.status, 200);
    let id = session_id(&s);
    assert_eq!(
        c.request("RECORD", url, &[("Session", &id)], "").status,
        200
    );
    let mut sub = engine
        .subscribe(&StreamKey::new("live", "pub").unwrap())
        .unwrap();
    for (i, nal) in [vec![0x65u8, 1, 2, 3], vec![0x41, 4], vec![0x41, 5]]
        .into_iter()
        .enumerate()
    {
        let pkt = RtpPacket {
            marker: true,
            payload_type: 96,
            sequence: 100 + i as u16,
            timestamp: 9000 + 3600 * i as u32,
            ssrc: 3,
            payload: Bytes::from(nal),
        }
        .to_bytes();
        let mut b = vec![b'$', 0, 0, pkt.len() as u8];
        b.extend_from_slice(&pkt);
        c.raw(&b);
    }
    let mut got = Vec::new();
    while let Recv::Frame(f) = sub.recv() {
        got.push(f.frame.clone());
    }
    assert!(got[0].is_config());
    assert!(got[1].is_keyframe());
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[2].pts - got[1].pts, 3600);
    // PAUSE on a RECORD session, then TEARDOWN: clean end.
    assert_eq!(c.request("PAUSE", url, &[("Session", &id)], "").status, 200);
    assert_eq!(
        c.request("TEARDOWN", url, &[("Session", &id)], "").status,
        200
    );
    assert_eq!(c.session.close_reason(), Some(&CloseReason::PeerClosed));
}

struct Deferred(Mutex<Option<AdmissionHandle>>);

impl Admission for Deferred {
    fn admit(&self, _req: &AdmissionRequest) -> Decision {
        let (pending, handle) = PendingAdmission::new(std::time::Duration::from_secs(5));
        *self.0.lock().unwrap() = Some(handle);
        Decision::Later(pending)
    }
}

#[test]
fn deferred_admission_answers_when_decided() {
    let engine = Engine::with_defaults();
    let _p = publish(&engine);
    let policy = Arc::new(Deferred(Mutex::new(None)));
    let factory = RtspSessionFactory::new(engine, policy.clone());
    let mut c = Client::new(&factory, 3);
    c.raw(b"DESCRIBE rtsp://h/live/cam RTSP/1.0\r\nCSeq: 1\r\n\r\nOPTIONS * RTSP/1.0\r\nCSeq: 2\r\n\r\n");
    assert!(c.items.is_empty(), "held until the decision");
    assert!(c.session.media_signal().is_some());
    policy.0.lock().unwrap().take().unwrap().allow();
    c.session.handle_media(c.now);
    c.drain();
    let statuses: Vec<_> = c
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Response(r) => Some((r.headers.cseq(), r.status)),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        vec![(Some(1), 200), (Some(2), 200)],
        "in order, after the decision"
    );
}

#[test]
fn hostile_peers_are_dropped_and_others_carry_on() {
    let engine = Engine::with_defaults();
    let mut p = publish(&engine);
    let factory = RtspSessionFactory::allow_all(engine.clone());
    let url = "rtsp://127.0.0.1:8554/live/cam";
    let mut viewer = Client::new(&factory, 9);
    viewer.request("DESCRIBE", url, &[], "");
    let s = viewer.request(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[("Transport", "RTP/AVP/TCP;interleaved=0-1")],
        "",
    );
    let id = session_id(&s);
    viewer.request("PLAY", url, &[("Session", &id)], "");

    let proto_error = |c: &Client| {
        matches!(
            c.session.close_reason(),
            Some(CloseReason::ProtocolError(_))
        )
    };
    // Garbage.
    let mut g = Client::new(&factory, 10);
    g.raw(b"\x16\x03\x01\x02\x00garbage");
    assert!(proto_error(&g));
    // A header block that never ends.
    let mut h = Client::new(&factory, 11);
    h.raw(b"OPTIONS * RTSP/1.0\r\n");
    for _ in 0..2000 {
        h.raw(b"X-Filler: aaaaaaaaaaaaaaaa\r\n");
        if h.session.close_reason().is_some() {
            break;
        }
    }
    assert!(proto_error(&h));
    // An interleaved frame on a channel never set up.
    let mut u = Client::new(&factory, 12);
    u.raw(&[b'$', 7, 0, 2, 0x80, 0]);
    assert!(proto_error(&u));
    // SETUP for a stream that does not exist: 404, the session stays.
    let mut n = Client::new(&factory, 13);
    let r = n.request(
        "SETUP",
        "rtsp://h/live/nope/trackID=0",
        &[("Transport", "RTP/AVP/TCP;interleaved=0-1")],
        "",
    );
    assert_eq!(r.status, 404);
    assert!(n.session.close_reason().is_none());
    assert_eq!(n.request("FOO", "rtsp://h/live/cam", &[], "").status, 501);
    assert_eq!(
        n.request("PLAY", "rtsp://h/live/cam", &[("Session", "bogus")], "")
            .status,
        454
    );
    assert_eq!(
        n.request("DESCRIBE", "rtsp://h/live/ca\u{1b}m", &[], "")
            .status,
        400
    );
    // UDP only: 461.
    let r = n.request(
        "SETUP",
        &format!("{url}/trackID=0"),
        &[("Transport", "RTP/AVP;unicast;client_port=0-0")],
        "",
    );
    assert_eq!(r.status, 461);
    // The viewer still gets new frames.
    let before = viewer.items.len();
    p.send(frame(Codec::H264, FrameFlags::NONE, 400, avc_unit(1, 100)));
    viewer.session.handle_media(viewer.now);
    viewer.drain();
    assert!(viewer.frames_after(before).iter().any(|(ch, _)| *ch == 0));
    assert!(viewer.session.close_reason().is_none());
}

/// ANNOUNCE, SETUP and RECORD of `live/<name>` on client `c`; the status
/// of RECORD.
fn record(c: &mut Client, name: &str) -> u16 {
    let url = format!("rtsp://127.0.0.1:8554/live/{name}");
    let sdp = "v=0\r\ns=x\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAHqzZQKAv+XARAAADAAEAAAMAMg8WLZY=,aOvjyyLA\r\na=control:streamid=0\r\n";
    let a = c.request(
        "ANNOUNCE",
        &url,
        &[("Content-Type", "application/sdp")],
        sdp,
    );
    if a.status != 200 {
        return a.status;
    }
    let s = c.request(
        "SETUP",
        &format!("{url}/streamid=0"),
        &[(
            "Transport",
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=RECORD",
        )],
        "",
    );
    assert_eq!(s.status, 200);
    let id = session_id(&s);
    c.request("RECORD", &url, &[("Session", &id)], "").status
}

/// One H.264 picture (a one-NAL RTP packet on channel 0) at `i` * 40 ms.
fn send_picture(c: &mut Client, i: u16, key: bool) {
    let nal = if key {
        vec![0x65u8, 1, 2, 3]
    } else {
        vec![0x41, 4]
    };
    let pkt = RtpPacket {
        marker: true,
        payload_type: 96,
        sequence: 100 + i,
        timestamp: 9000 + 3600 * u32::from(i),
        ssrc: 3,
        payload: Bytes::from(nal),
    }
    .to_bytes();
    let mut b = vec![b'$', 0, 0, pkt.len() as u8];
    b.extend_from_slice(&pkt);
    c.raw(&b);
}

/// docs/security.md item 2 for RTSP: a publisher (ANNOUNCE + RECORD) that
/// sends no media is closed at the app's first-media deadline (10 s) with
/// `MediaTimeout`, and its stream slot is free at once; a publisher that
/// sends media alongside is not closed. Before, nothing closed it: a
/// recording session had no timer at all.
#[test]
fn rtsp_publisher_without_media_is_closed_at_the_deadline_and_frees_its_slot() {
    let engine = Engine::with_defaults();
    let factory = RtspSessionFactory::allow_all(engine.clone());
    let mut squatter = Client::new(&factory, 1);
    assert_eq!(record(&mut squatter, "squat"), 200);
    let mut healthy = Client::new(&factory, 2);
    assert_eq!(record(&mut healthy, "good"), 200);
    let deadline = squatter.session.poll_timeout();
    assert!(
        deadline.is_some_and(|d| d <= Instant::from_millis(10_001)),
        "the squatter's session asks for no timer by 10 s: {deadline:?}"
    );
    // Healthy: a picture every 40 ms for 12 s.
    let mut t = 1;
    for i in 0..300u16 {
        t = 1 + u64::from(i) * 40;
        for c in [&mut squatter, &mut healthy] {
            c.now = Instant::from_millis(t);
            c.session.handle_timeout(c.now);
        }
        send_picture(&mut healthy, i, i % 50 == 0);
        if t < 10_000 {
            assert_eq!(
                squatter.session.close_reason(),
                None,
                "closed early at {t} ms"
            );
        }
    }
    assert!(t > 11_000);
    assert!(
        matches!(
            squatter.session.close_reason(),
            Some(CloseReason::MediaTimeout(_))
        ),
        "the squatter was not closed: {:?}",
        squatter.session.close_reason()
    );
    assert_eq!(
        healthy.session.close_reason(),
        None,
        "the healthy publisher was closed"
    );
    // The squatter's slot is free: a new publisher of the stream is admitted.
    let mut next = Client::new(&factory, 3);
    next.now = Instant::from_millis(t);
    assert_eq!(record(&mut next, "squat"), 200);
    let mut sub = engine
        .subscribe(&StreamKey::new("live", "good").unwrap())
        .unwrap();
    assert!(
        matches!(sub.recv(), Recv::Frame(_)),
        "the healthy stream has frames"
    );
}
