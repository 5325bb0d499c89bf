//! RTSP server strictness and leniency, driven directly (no sockets), one
//! test per point of issue 10 that a real client depends on: `Range` on
//! PLAY echoed (`npt=now-`, `npt=0-`), SETUP URLs relative / with a
//! trailing slash / `streamid=N`, the SSRC said at SETUP is the one every
//! packet and every viewer carries (also across PAUSE/PLAY), 455/459/404
//! where they apply, keep-alives (OPTIONS with a stale `Session`, empty
//! GET_/SET_PARAMETER) that hold an idle session open past its timeout,
//! `mode=record` in any case and an ANNOUNCE SDP with `b=TIAS`, no `s=`
//! and trailing spaces.

#![cfg(feature = "rtsp")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod rtsp_util;
use rtsp_util::*;

use arcly::engine::Recv;
use arcly::rtp::RtpPacket;
use arcly::rtsp::RtspSessionFactory;
use arcly::session::CloseReason;
use arcly::{Codec, Engine, FrameFlags, Instant, StreamKey};
use bytes::Bytes;

const URL: &str = "rtsp://127.0.0.1:8554/live/cam";

/// DESCRIBE + SETUP of both tracks (video on 0-1, audio on 2-3); the session id.
fn setup_both(c: &mut Client) -> String {
    assert_eq!(c.request("DESCRIBE", URL, &[], "").status, 200);
    let s = c.request(
        "SETUP",
        &format!("{URL}/trackID=0"),
        &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
        "",
    );
    assert_eq!(s.status, 200);
    let id = session_id(&s);
    let s = c.request(
        "SETUP",
        &format!("{URL}/trackID=1"),
        &[
            ("Transport", "RTP/AVP/TCP;unicast;interleaved=2-3"),
            ("Session", &id),
        ],
        "",
    );
    assert_eq!(s.status, 200);
    id
}

/// The RTP packets a client got on `channel` after item `n`.
fn rtp_on(c: &Client, n: usize, channel: u8) -> Vec<RtpPacket> {
    c.frames_after(n)
        .into_iter()
        .filter(|(ch, _)| *ch == channel)
        .map(|(_, d)| RtpPacket::parse(&d).unwrap())
        .collect()
}

/// RFC 2326 §12.29: the PLAY response says the range played; a client
/// asking for the live point with `npt=now-` or `npt=0-` gets that back
/// (before, every PLAY was answered `npt=0.000-`, which strict clients
/// such as live555-based ones take as "not the range I asked for").
#[test]
fn play_range_now_and_zero_are_echoed() {
    let engine = Engine::with_defaults();
    let _p = publish(&engine);
    let factory = RtspSessionFactory::allow_all(engine);
    for (seed, asked, said) in [
        (1, Some("npt=now-"), "npt=now-"),
        (2, Some("npt=0-"), "npt=0-"),
        (3, Some("npt=0.000-"), "npt=0.000-"),
        (4, None, "npt=0.000-"),
        (5, Some("clock=20261208T020000Z-"), "npt=0.000-"),
        (6, Some("npt=\u{1b}[31m-"), "npt=0.000-"),
    ] {
        let mut c = Client::new(&factory, seed);
        let id = setup_both(&mut c);
        let mut h = vec![("Session", id.as_str())];
        if let Some(r) = asked {
            h.push(("Range", r));
        }
        let play = c.request("PLAY", URL, &h, "");
        assert_eq!(play.status, 200, "{asked:?}");
        assert_eq!(play.headers.get("Range"), Some(said), "asked {asked:?}");
    }
}

/// SETUP URLs as sloppy clients send them: the control attribute alone
/// (relative, resolved against the DESCRIBE URL), with a trailing slash,
/// as a path without scheme and host, `streamid=N` for `trackID=N`. Each
/// selects the right track (its packets come on the channel that SETUP
/// assigned). Before, a relative SETUP URL on the play side was a 400.
#[test]
fn setup_url_variants_select_the_right_track() {
    let engine = Engine::with_defaults();
    let _p = publish(&engine);
    let factory = RtspSessionFactory::allow_all(engine);
    for (seed, video, audio) in [
        (1u64, "trackID=0".to_owned(), "trackID=1".to_owned()),
        (2, format!("{URL}/trackID=0/"), format!("{URL}/trackID=1/")),
        (
            3,
            "/live/cam/trackID=0".to_owned(),
            "/live/cam/trackID=1".to_owned(),
        ),
        (4, format!("{URL}/streamid=0"), format!("{URL}/streamid=1")),
    ] {
        let mut c = Client::new(&factory, seed);
        assert_eq!(
            c.request("DESCRIBE", &format!("{URL}/"), &[], "").status,
            200
        );
        // Audio first, on channels 4-5, video on 6-7: the URL picks the track.
        let a = c.request(
            "SETUP",
            &audio,
            &[("Transport", "RTP/AVP/TCP;unicast;interleaved=4-5")],
            "",
        );
        assert_eq!(a.status, 200, "SETUP {audio}");
        let id = session_id(&a);
        let v = c.request(
            "SETUP",
            &video,
            &[
                ("Transport", "RTP/AVP/TCP;unicast;interleaved=6-7"),
                ("Session", &id),
            ],
            "",
        );
        assert_eq!(v.status, 200, "SETUP {video}");
        assert_eq!(session_id(&v), id);
        let n = c.items.len();
        assert_eq!(c.request("PLAY", URL, &[("Session", &id)], "").status, 200);
        let audio_pkts = rtp_on(&c, n, 4);
        let video_pkts = rtp_on(&c, n, 6);
        assert!(!audio_pkts.is_empty() && !video_pkts.is_empty(), "{seed}");
        assert!(
            audio_pkts.iter().all(|p| p.payload_type == 97),
            "{seed}: audio on 4"
        );
        assert!(
            video_pkts.iter().all(|p| p.payload_type == 96),
            "{seed}: video on 6"
        );
    }
}

/// The SSRC a SETUP response names is the SSRC of every packet of that
/// track, for every viewer, and it stays across PAUSE and PLAY (sequence
/// numbers go on, no jump back).
#[test]
fn ssrc_is_stable_across_viewers_and_pause() {
    let engine = Engine::with_defaults();
    let mut p = publish(&engine);
    let factory = RtspSessionFactory::allow_all(engine);
    let mut a = Client::new(&factory, 1);
    let mut b = Client::new(&factory, 2);
    let mut ssrcs = Vec::new();
    for c in [&mut a, &mut b] {
        assert_eq!(c.request("DESCRIBE", URL, &[], "").status, 200);
        let s = c.request(
            "SETUP",
            &format!("{URL}/trackID=0"),
            &[("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")],
            "",
        );
        let t = s.headers.get("Transport").unwrap().to_owned();
        let ssrc = t
            .split(';')
            .find_map(|p| p.strip_prefix("ssrc="))
            .map(|h| u32::from_str_radix(h, 16).unwrap())
            .unwrap_or_else(|| panic!("no ssrc in {t}"));
        ssrcs.push((ssrc, session_id(&s)));
    }
    assert_eq!(ssrcs[0].0, ssrcs[1].0, "one SSRC per track for all viewers");
    let ssrc = ssrcs[0].0;
    let id = ssrcs[0].1.clone();
    let n = a.items.len();
    a.request("PLAY", URL, &[("Session", &id)], "");
    let first = rtp_on(&a, n, 0);
    assert!(!first.is_empty());
    assert!(
        first.iter().all(|p| p.ssrc == ssrc),
        "every packet has the SSRC of SETUP"
    );
    assert_eq!(a.request("PAUSE", URL, &[("Session", &id)], "").status, 200);
    p.send(frame(Codec::H264, FrameFlags::NONE, 200, avc_unit(1, 300)));
    let n = a.items.len();
    let play = a.request("PLAY", URL, &[("Session", &id)], "");
    assert_eq!(play.status, 200);
    a.session.handle_media(a.now);
    a.drain();
    let again = rtp_on(&a, n, 0);
    assert!(!again.is_empty(), "frames after PAUSE and PLAY");
    assert!(
        again.iter().all(|p| p.ssrc == ssrc),
        "SSRC kept across PAUSE/PLAY"
    );
    let last = first.last().unwrap().sequence;
    assert_eq!(again[0].sequence, last.wrapping_add(1), "sequence goes on");
    let n = b.items.len();
    b.request("PLAY", URL, &[("Session", &ssrcs[1].1)], "");
    assert!(rtp_on(&b, n, 0).iter().all(|p| p.ssrc == ssrc));
}

/// RFC 2326 §11.3: 455 for a method not valid in this state, 459 for a
/// SETUP of another stream in a play session, 404 for DESCRIBE and SETUP
/// of a stream that does not exist, 454 for a wrong session; the session
/// is not closed by any of them and plays afterwards.
#[test]
fn state_errors_have_their_status_and_the_session_goes_on() {
    let engine = Engine::with_defaults();
    let _p = publish(&engine);
    let _other = engine
        .publish(StreamKey::new("live", "other").unwrap())
        .unwrap();
    let factory = RtspSessionFactory::allow_all(engine);
    let mut c = Client::new(&factory, 1);
    assert_eq!(
        c.request("PLAY", URL, &[], "").status,
        455,
        "PLAY before SETUP"
    );
    assert_eq!(
        c.request("RECORD", URL, &[], "").status,
        455,
        "RECORD without ANNOUNCE"
    );
    assert_eq!(
        c.request("DESCRIBE", "rtsp://h/live/nope", &[], "").status,
        404
    );
    assert_eq!(
        c.request("DESCRIBE", "rtsp://h/live/other", &[], "").status,
        404,
        "a stream with no media yet"
    );
    let id = setup_both(&mut c);
    let s = c.request(
        "SETUP",
        "rtsp://h/live/other/trackID=0",
        &[
            ("Transport", "RTP/AVP/TCP;interleaved=4-5"),
            ("Session", &id),
        ],
        "",
    );
    assert_eq!(s.status, 459, "another stream in this session");
    assert_eq!(
        c.request("ANNOUNCE", URL, &[], "v=0\r\n").status,
        455,
        "play session announces"
    );
    assert_eq!(
        c.request("PLAY", URL, &[("Session", "0000")], "").status,
        454
    );
    assert_eq!(
        c.request(
            "SETUP",
            &format!("{URL}/trackID=7"),
            &[
                ("Transport", "RTP/AVP/TCP;interleaved=8-9"),
                ("Session", &id)
            ],
            ""
        )
        .status,
        404
    );
    assert!(c.session.close_reason().is_none());
    let n = c.items.len();
    assert_eq!(c.request("PLAY", URL, &[("Session", &id)], "").status, 200);
    assert!(!rtp_on(&c, n, 0).is_empty(), "plays after the refusals");
}

/// Keep-alives (RFC 2326 §10.8, MediaMTX users' clients): OPTIONS with a
/// stale `Session`, GET_PARAMETER and SET_PARAMETER with an empty body are
/// answered 200 and count as activity: a set-up, not-yet-playing session
/// sent one every 30 s lives past the 60 s timeout; without them it is
/// closed at 60 s.
#[test]
fn keep_alives_are_answered_and_keep_the_session() {
    let engine = Engine::with_defaults();
    let _p = publish(&engine);
    let factory = RtspSessionFactory::allow_all(engine);
    let mut kept = Client::new(&factory, 1);
    let mut idle = Client::new(&factory, 2);
    let id = setup_both(&mut kept);
    setup_both(&mut idle);
    let mut s = 1u64;
    for (i, (m, session)) in [
        ("OPTIONS", "DEADBEEF00000001"),
        ("GET_PARAMETER", id.as_str()),
        ("SET_PARAMETER", id.as_str()),
        ("GET_PARAMETER", id.as_str()),
    ]
    .into_iter()
    .enumerate()
    {
        s = 1 + 30 * (i as u64 + 1);
        for c in [&mut kept, &mut idle] {
            c.now = Instant::from_millis(s * 1000);
            c.session.handle_timeout(c.now);
        }
        let r = kept.request(m, URL, &[("Session", session)], "");
        assert_eq!(r.status, 200, "{m}");
        assert_eq!(kept.session.close_reason(), None, "{m} at {s} s");
    }
    assert!(s > 120);
    assert_eq!(idle.session.close_reason(), Some(&CloseReason::IdleTimeout));
    let n = kept.items.len();
    assert_eq!(
        kept.request("PLAY", URL, &[("Session", &id)], "").status,
        200
    );
    assert!(!rtp_on(&kept, n, 0).is_empty());
}

/// An ANNOUNCE as sloppy encoders write it (no `s=`, `b=TIAS`, trailing
/// spaces, bare LF, a `;` after the last fmtp parameter), SETUP with
/// `mode=Record` / `mode="RECORD"` (GStreamer) and relative track URLs:
/// the publish is accepted and its pictures arrive in the engine.
#[test]
fn sloppy_announce_and_record_mode_any_case_publish() {
    for (seed, mode) in [
        (1u64, "mode=Record"),
        (2, "mode=\"RECORD\""),
        (3, "mode=record"),
    ] {
        let engine = Engine::with_defaults();
        let factory = RtspSessionFactory::allow_all(engine.clone());
        let mut c = Client::new(&factory, seed);
        let url = "rtsp://127.0.0.1:8554/live/pub";
        let sdp = "v=0\no=- 0 0 IN IP4 127.0.0.1 \nc=IN IP4 0.0.0.0\nb=TIAS:2000000\nt=0 0\nm=video 0 RTP/AVP 96 \nb=TIAS:1500000\na=rtpmap:96 H264/90000 \na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAHqzZQKAv+XARAAADAAEAAAMAMg8WLZY=,aOvjyyLA; \na=control:trackID=0 \n";
        let a = c.request("ANNOUNCE", url, &[("Content-Type", "application/sdp")], sdp);
        assert_eq!(a.status, 200, "{mode}");
        let s = c.request(
            "SETUP",
            "trackID=0",
            &[(
                "Transport",
                &format!("RTP/AVP/TCP;unicast;interleaved=0-1;{mode}"),
            )],
            "",
        );
        assert_eq!(s.status, 200, "{mode}");
        let id = session_id(&s);
        assert_eq!(
            c.request("RECORD", url, &[("Session", &id)], "").status,
            200
        );
        let mut sub = engine
            .subscribe(&StreamKey::new("live", "pub").unwrap())
            .unwrap();
        for i in 0..3u16 {
            let nal = if i == 0 {
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
        let mut pictures = 0;
        while let Recv::Frame(f) = sub.recv() {
            if !f.frame.is_config() {
                pictures += 1;
            }
        }
        assert!(pictures >= 2, "{mode}: {pictures} pictures");
    }
}
