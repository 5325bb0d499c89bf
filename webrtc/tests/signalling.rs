//! The WHIP/WHEP routes in process (no sockets): `Authorization: Bearer`
//! reaches admission as `Credentials::Token` with the protocol, kind and
//! query; a refusal maps to its status; a deferred decision parks the POST
//! until the application decides, then the service answers 201.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use arcly::admission::{
    from_fn, AdmissionHandle, AdmissionKind, Credentials, Decision, PendingAdmission, RejectCode,
    Rejection,
};
use arcly::datagram::DatagramServiceFactory;
use arcly::http::{HttpRouter, Routed, RouterConfig};
use arcly::{Engine, Instant, StreamKey};
use arcly_webrtc::signalling::{mount, SignallingConfig};
use arcly_webrtc::{WebRtcConfig, WebRtcServiceFactory};
use bytes::Bytes;
use std::time::Duration;
use str0m::media::{Direction, MediaKind};

fn offer() -> String {
    let mut rtc = str0m::Rtc::new(std::time::Instant::now());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    change.apply().unwrap().0.to_sdp_string()
}

type Seen = Arc<Mutex<Vec<(&'static str, AdmissionKind, Credentials, String)>>>;

#[test]
fn bearer_tokens_reach_admission_and_deferred_decisions_park_the_post() {
    let engine = Engine::with_defaults();
    let _publisher = engine
        .publish(StreamKey::new("live", "cam").unwrap())
        .unwrap();
    let seen: Seen = Arc::default();
    let later: Arc<Mutex<Option<AdmissionHandle>>> = Arc::default();
    let admission = {
        let seen = seen.clone();
        let later = later.clone();
        from_fn(move |req| {
            seen.lock().unwrap().push((
                req.protocol,
                req.kind,
                req.credentials.clone(),
                req.query.clone(),
            ));
            match &req.credentials {
                Credentials::Token(t) if t == "good" => Decision::Allow,
                Credentials::Token(t) if t == "later" => {
                    let (pending, handle) = PendingAdmission::new(Duration::from_secs(5));
                    *later.lock().unwrap() = Some(handle);
                    Decision::Later(pending)
                }
                _ => Decision::Deny(Rejection::new(RejectCode::Unauthorized, "token needed")),
            }
        })
    };
    let local = "127.0.0.1:8189".parse().unwrap();
    let mut config = WebRtcConfig::new(std::time::Instant::now());
    config.host_candidates = vec![local];
    let factory = WebRtcServiceFactory::new(config);
    let mut now = Instant::ZERO;
    let mut service = factory.new_service(&[local], now, 1);
    let counter = Arc::new(std::sync::atomic::AtomicU8::new(0x5a));
    let mut router = HttpRouter::empty(RouterConfig::default());
    mount(
        &mut router,
        SignallingConfig {
            engine: engine.clone(),
            admission: Arc::new(admission),
            sender: factory.sender(),
            random: Arc::new(move |b: &mut [u8]| {
                b.fill(counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
            }),
            ice_servers: vec!["stun:stun.example.org:3478".to_owned()],
        },
    );
    let offer = offer();
    let post = |auth: Option<&str>| {
        let mut b = http::Request::builder()
            .method("POST")
            .uri("/live/cam/whep?sig=abc")
            .header("content-type", "application/sdp");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(Bytes::from(offer.clone())).unwrap()
    };

    // No token: 401 from the admission's refusal; nothing reached the service.
    let req = post(None);
    let Routed::Response(resp) = router.handle(&req, now) else {
        panic!("a refusal is answered at once");
    };
    assert_eq!(resp.status(), 401);
    assert_eq!(seen.lock().unwrap().last().unwrap().2, Credentials::None);

    // A good token: parked on the service's reply, then 201.
    let req = post(Some("Bearer good"));
    let Routed::Wait(wait) = router.handle(&req, now) else {
        panic!("the POST waits for the service");
    };
    assert_eq!(wait.signal.epoch(), wait.epoch, "nothing answered yet");
    service.handle_commands(now);
    assert_ne!(
        wait.signal.epoch(),
        wait.epoch,
        "the reply wakes the request"
    );
    let Routed::Response(resp) = router.resume(&req, wait, now) else {
        panic!("answered after the service ran");
    };
    assert_eq!(resp.status(), 201);
    let loc = resp.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(loc, format!("/live/cam/whep/{}", "5a".repeat(16)));
    assert_eq!(
        resp.headers()["link"].to_str().unwrap(),
        "<stun:stun.example.org:3478>; rel=\"ice-server\""
    );
    {
        let seen = seen.lock().unwrap();
        let (protocol, kind, creds, query) = seen.last().unwrap();
        assert_eq!(*protocol, "whep");
        assert_eq!(*kind, AdmissionKind::Play);
        assert_eq!(*creds, Credentials::Token("good".to_owned()));
        assert_eq!(query, "sig=abc");
    }
    assert!(
        service.poll_timeout().is_some(),
        "the session's timer is filed"
    );

    // A deferred decision: parked on the admission's signal, then on the
    // service's reply, then 201.
    let req = post(Some("bearer later"));
    let Routed::Wait(wait) = router.handle(&req, now) else {
        panic!("the POST waits for the admission");
    };
    now += Duration::from_millis(300);
    let Routed::Wait(wait) = router.resume(&req, wait, now) else {
        panic!("still undecided");
    };
    let before = wait.signal.epoch();
    later.lock().unwrap().take().unwrap().allow();
    assert_ne!(
        wait.signal.epoch(),
        before,
        "the decision wakes the request"
    );
    let Routed::Wait(wait) = router.resume(&req, wait, now) else {
        panic!("allowed: now it waits for the service");
    };
    service.handle_commands(now);
    let Routed::Response(resp) = router.resume(&req, wait, now) else {
        panic!("answered");
    };
    assert_eq!(resp.status(), 201);
    let stats = factory.stats();
    assert_eq!(stats.sessions.load(std::sync::atomic::Ordering::Relaxed), 2);
}
