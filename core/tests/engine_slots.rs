//! Stream slots cannot be squatted (issue 14, item 2), on a simulated
//! clock: RTMP publishers that send no media (only an Acknowledgement now
//! and then, which keeps the idle timer from firing) are closed at the
//! app's first-media deadline and their slots are free at once; a publisher
//! whose media stops is closed after the media timeout; a publisher that
//! sends media keeps its slot; one address cannot publish more than the
//! per-address limit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod rtmp_util;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use arcly::engine::{MediaStall, PublishError};
use arcly::rtmp::{ClientMode, RtmpSessionFactory};
use arcly::session::{CloseReason, StreamSession};
use arcly::{AppConfig, Engine, StreamKey};
use bytes::Bytes;
use rtmp_util::*;

const SLOTS: usize = 4;

fn engine() -> Engine {
    let engine = Engine::new();
    engine.add_app("live", AppConfig::default().with_max_streams(SLOTS));
    engine
}

/// An RTMP Acknowledgement (type 3) on the protocol control chunk stream.
fn acknowledgement(seq: u32) -> Bytes {
    raw::message(2, 0, 3, 0, Bytes::copy_from_slice(&seq.to_be_bytes()))
}

/// Runs a session's timers up to `ms` the way a driver does.
fn advance(s: &mut dyn StreamSession, ms: u64) {
    while let Some(t) = s.poll_timeout() {
        if t > at(ms) || s.close_reason().is_some() {
            break;
        }
        s.handle_timeout(t);
    }
}

#[test]
fn publishers_without_media_are_closed_at_the_deadline_and_free_their_slots() {
    let engine = engine();
    let factory = RtmpSessionFactory::allow_all(engine.clone());
    // A healthy publisher that sends a frame every 40 ms throughout.
    let mut healthy_c = client("rtmp://h/live/good", ClientMode::Publish, 1);
    let mut healthy = factory.session(peer(1), at(0), 1);
    pump(&mut healthy_c, &mut healthy, at(1));
    assert!(healthy.is_publishing());
    // Squatters fill the other slots, then send only Acknowledgements.
    let mut squatters = Vec::new();
    for i in 0..SLOTS - 1 {
        let port = 100 + i as u16;
        let url = format!("rtmp://h/live/squat{i}");
        let mut c = client(&url, ClientMode::Publish, u64::from(port));
        let mut s = factory.session(peer(port), at(0), u64::from(port));
        pump(&mut c, &mut s, at(1));
        assert!(s.is_publishing());
        squatters.push(s);
    }
    let legit_url = "rtmp://h/live/legit";
    let try_legit = |now: u64| {
        let mut c = client(legit_url, ClientMode::Publish, 9);
        let mut s = factory.session(peer(9), at(now), 9);
        pump(&mut c, &mut s, at(now));
        s
    };
    assert!(!try_legit(5_000).is_publishing(), "every slot is taken");

    let stream = stream(400, 25, 0);
    let mut sent = 0;
    for ms in (0..=10_040u64).step_by(40) {
        // The healthy publisher's media.
        healthy_c.send_frame(&stream[sent]).unwrap();
        sent += 1;
        pump(&mut healthy_c, &mut healthy, at(ms));
        for s in &mut squatters {
            if ms % 5_000 == 0 {
                s.handle_input(at(ms), &acknowledgement(ms as u32));
            }
            advance(s.as_mut_dyn(), ms);
        }
        advance(&mut healthy, ms);
        if ms <= 10_000 {
            assert!(squatters.iter().all(|s| s.close_reason().is_none()), "{ms}");
        }
    }
    // At the first-media deadline (10 s after the admission at 1 ms):
    // closed, slots free at once.
    for s in &squatters {
        assert_eq!(
            s.close_reason(),
            Some(&CloseReason::MediaTimeout(MediaStall::NoMedia(
                Duration::from_secs(10)
            )))
        );
        assert!(!s.is_publishing());
    }
    assert_eq!(
        engine.streams(),
        vec![StreamKey::new("live", "good").unwrap()]
    );
    assert!(healthy.close_reason().is_none(), "media keeps the slot");
    let legit = try_legit(10_041);
    assert!(legit.is_publishing(), "a legitimate publish gets a slot");
    let stats = engine.stream_stats(&StreamKey::new("live", "good").unwrap());
    assert_eq!(
        stats.unwrap().snapshot().frames,
        sent as u64,
        "no frame lost"
    );

    // The healthy publisher's media stops: closed 15 s after its last frame.
    let last = 10_040;
    advance(&mut healthy, last + 14_999);
    assert!(healthy.close_reason().is_none());
    advance(&mut healthy, last + 15_000);
    assert_eq!(
        healthy.close_reason(),
        Some(&CloseReason::MediaTimeout(MediaStall::Stopped(
            Duration::from_secs(15)
        )))
    );
    assert_eq!(
        engine.streams(),
        vec![StreamKey::new("live", "legit").unwrap()]
    );
}

trait AsDyn {
    fn as_mut_dyn(&mut self) -> &mut dyn StreamSession;
}

impl AsDyn for arcly::rtmp::RtmpSession {
    fn as_mut_dyn(&mut self) -> &mut dyn StreamSession {
        self
    }
}

#[test]
fn one_address_cannot_publish_more_than_its_limit() {
    let engine = Engine::with_defaults();
    engine.set_max_publishers_per_ip(3);
    let a = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let key = |n: &str| StreamKey::new("live", n).unwrap();
    let mut held: Vec<_> = (0..3)
        .map(|i| engine.publish_from(key(&format!("a{i}")), a).unwrap())
        .collect();
    assert_eq!(
        engine.publish_from(key("a3"), a).unwrap_err(),
        PublishError::TooManyFromPeer(a, 3)
    );
    let other = engine.publish_from(key("b0"), b).unwrap();
    assert_eq!(engine.publishers_from(a), 3);
    // A refused publish (stream taken) does not count.
    assert!(engine.publish_from(key("b0"), a).is_err());
    held.pop();
    assert_eq!(
        engine.publishers_from(a),
        2,
        "freed when the publisher drops"
    );
    held.push(engine.publish_from(key("a3"), a).unwrap());
    drop(held);
    drop(other);
    assert_eq!(engine.publishers_from(a), 0);
    assert_eq!(engine.publishers_from(b), 0);
    assert!(engine.streams().is_empty());

    // Over RTMP the refusal reaches the peer as a publish failure.
    engine.set_max_publishers_per_ip(1);
    let factory = RtmpSessionFactory::allow_all(engine.clone());
    let mut c1 = client("rtmp://h/live/x", ClientMode::Publish, 1);
    let mut s1 = factory.session(peer(1), at(0), 1);
    pump(&mut c1, &mut s1, at(1));
    assert!(s1.is_publishing());
    let mut c2 = client("rtmp://h/live/y", ClientMode::Publish, 2);
    let mut s2 = factory.session(peer(2), at(0), 2);
    pump(&mut c2, &mut s2, at(1));
    assert!(!s2.is_publishing(), "second stream from the same address");
    // The slot and the address count are freed the moment the session ends.
    s1.close(at(2));
    assert_eq!(engine.publishers_from(a), 0);
    assert!(engine.streams().is_empty());
}
