//! Deferred admission through real adapters and clients: a publish whose
//! decision the application gives 2 s later, while other sessions of the
//! same server flow; and one never decided, refused at its deadline.
//!
//! - RTMP (the project's RTMP client, on tokio and on the blocking
//!   adapter): the held publisher gets `NetStream.Publish.Start` only once
//!   allowed; meanwhile a player of another stream receives frames; the
//!   undecided one gets `NetStream.Publish.BadName` "timeout: no admission
//!   decision in time" 1 s after asking.
//! - SRT (ffmpeg/libsrt callers, on tokio): the held caller's handshake
//!   completes after the decision (within libsrt's 3 s connect timeout) and
//!   its stream reaches the engine; meanwhile another ffmpeg's stream keeps
//!   arriving; the undecided caller is refused (`SRT_REJ_TIMEOUT`) at its
//!   1 s deadline, well before libsrt would give up on its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use arcly::admission::{
    from_fn, Admission, AdmissionHandle, AdmissionRequest, Decision, PendingAdmission,
};
use arcly::rtmp::{ClientEvent, ClientMode, RtmpSessionFactory};
use arcly::{Engine, StreamKey};
use arcly_tests::client::{publish_synthetic, Client};
use arcly_tests::ffmpeg::PublishSpec;
use arcly_tests::srt::{ffmpeg_publish_ts, Caller, SrtOptions, SrtTestServer};
use arcly_tests::synth::SynthSpec;
use arcly_tests::{Adapter, Proc, TestServer, Watchdog};

/// Streams named `held` wait up to 10 s for a decision, `late` up to 1 s;
/// every other request is allowed at once. Each handle goes to `tx`.
fn deferring(tx: mpsc::Sender<(String, AdmissionHandle)>) -> impl Admission {
    let tx = Mutex::new(tx);
    from_fn(move |req: &AdmissionRequest| {
        let timeout = match req.key.name() {
            "held" => Duration::from_secs(10),
            "late" => Duration::from_secs(1),
            _ => return Decision::Allow,
        };
        let (pending, handle) = PendingAdmission::new(timeout);
        let _ = tx.lock().unwrap().send((req.key.name().to_owned(), handle));
        Decision::Later(pending)
    })
}

fn key(name: &str) -> StreamKey {
    StreamKey::new("live", name).unwrap()
}

fn frames_in(engine: &Engine, name: &str) -> u64 {
    engine
        .stream_stats(&key(name))
        .map_or(0, |s| s.frames.load(Ordering::Relaxed))
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

fn rtmp_deferred(adapter: Adapter) {
    let test = format!("admission_rtmp/{}", adapter.name());
    let _watchdog = Watchdog::new(&test, Duration::from_secs(60));
    arcly_tests::init_logging();
    let (tx, rx) = mpsc::channel();
    let engine = Engine::with_defaults();
    let factory = RtmpSessionFactory::new(engine.clone(), Arc::new(deferring(tx)));
    let server = TestServer::start_factory(adapter, engine.clone(), Arc::new(factory));
    let addr = server.addr;
    let rx = Arc::new(Mutex::new(rx));
    let next_handle = move || {
        let rx = rx.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                rx.lock().unwrap().recv_timeout(Duration::from_secs(10))
            })
            .await
            .unwrap()
            .expect("the admission was asked")
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Another stream flows: a paced publisher and a player.
        let spec = SynthSpec {
            frames: 200,
            ..SynthSpec::default()
        };
        let flow_url = server.url("flow");
        let flow = tokio::spawn(async move {
            publish_synthetic(addr, &flow_url, spec, Instant::now()).await
        });
        assert!(wait_until(Duration::from_secs(5), || frames_in(&engine, "flow") > 0));
        let mut player = Client::connect(addr, &server.url("flow"), ClientMode::Play)
            .await
            .unwrap();
        player.wait_started(Duration::from_secs(5)).await.unwrap();

        // The held publisher asks; the application answers 2 s later.
        let held_url = server.url("held");
        let asked = Instant::now();
        let held = tokio::spawn(async move {
            let mut c = Client::connect(addr, &held_url, ClientMode::Publish)
                .await
                .unwrap();
            let r = c.wait_started(Duration::from_secs(15)).await;
            (r, Instant::now(), c)
        });
        let (name, handle) = next_handle().await;
        assert_eq!(name, "held");
        let mut frames = 0;
        let until = asked + Duration::from_secs(2);
        while Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            match player.next_event(left).await.unwrap() {
                Some(ClientEvent::Frame(_)) => frames += 1,
                Some(ClientEvent::Closed(r)) => panic!("{test}: player closed: {r}"),
                Some(_) => {}
                None => break,
            }
        }
        assert!(
            frames >= 40,
            "{test}: the other stream flowed while the decision was pending ({frames} frames in 2 s)"
        );
        assert!(!held.is_finished(), "{test}: the held publish started early");
        assert!(
            !engine.streams().contains(&key("held")),
            "{test}: a pending publish holds an engine stream"
        );
        let allowed = Instant::now();
        handle.allow();
        let (r, started, _c) = held.await.unwrap();
        r.unwrap_or_else(|e| panic!("{test}: held publish: {e}"));
        assert!(started >= asked + Duration::from_secs(2));
        assert!(
            started < allowed + Duration::from_secs(1),
            "{test}: the decision took {:?} to reach the client",
            started - allowed
        );
        assert!(engine.streams().contains(&key("held")));

        // Never decided: refused at the 1 s deadline.
        let t = Instant::now();
        let mut late = Client::connect(addr, &server.url("late"), ClientMode::Publish)
            .await
            .unwrap();
        let r = late.wait_started(Duration::from_secs(10)).await;
        let (name, handle) = next_handle().await;
        assert_eq!(name, "late");
        let err = r.expect_err("an undecided publish is refused");
        assert!(
            err.contains("NetStream.Publish.BadName") && err.contains("no admission decision in time"),
            "{test}: {err}"
        );
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{test}: refused after {took:?}"
        );
        assert!(handle.is_abandoned());
        assert!(!engine.streams().contains(&key("late")));
        flow.abort();
    });
}

#[test]
fn rtmp_deferred_admission_tokio() {
    rtmp_deferred(Adapter::Tokio);
}

#[test]
fn rtmp_deferred_admission_blocking() {
    rtmp_deferred(Adapter::Blocking);
}

#[test]
fn srt_deferred_admission_tokio() {
    let test = "admission_srt/tokio";
    if !arcly_tests::require_tools(test, &["ffmpeg"]) {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(60));
    arcly_tests::init_logging();
    let (tx, rx) = mpsc::channel();
    let server = SrtTestServer::start_with_admission(
        Adapter::Tokio,
        &SrtOptions::default(),
        Arc::new(deferring(tx)),
    );
    let engine = server.engine.clone();
    let url = |name: &str| Caller::publish(name, 120).ffmpeg_url(server.addr);
    let spec = |seconds| PublishSpec {
        seconds,
        ..PublishSpec::default()
    };

    let mut flow = Proc::spawn(
        "ffmpeg flow",
        &mut ffmpeg_publish_ts(&url("flow"), &spec(10)),
    );
    assert!(
        wait_until(Duration::from_secs(10), || frames_in(&engine, "flow") > 0),
        "{test}: the flowing publisher never arrived: {}",
        flow.describe()
    );

    let mut held = Proc::spawn(
        "ffmpeg held",
        &mut ffmpeg_publish_ts(&url("held"), &spec(4)),
    );
    let (name, handle) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let asked = Instant::now();
    assert_eq!(name, "held");
    let before = frames_in(&engine, "flow");
    std::thread::sleep(Duration::from_secs(2));
    let during = frames_in(&engine, "flow") - before;
    assert!(
        during >= 40,
        "{test}: the other stream flowed while the decision was pending ({during} frames in 2 s)"
    );
    assert!(
        !engine.streams().contains(&key("held")),
        "{test}: a pending publish holds an engine stream"
    );
    assert!(held.try_status().is_none(), "{test}: {}", held.describe());
    handle.allow();
    assert!(
        wait_until(Duration::from_secs(5), || frames_in(&engine, "held") > 0),
        "{test}: the held caller never published after the decision: {}",
        held.describe()
    );
    assert!(asked.elapsed() >= Duration::from_secs(2));

    // Never decided: libsrt would wait 3 s (its connect timeout); the
    // service refuses at the 1 s deadline.
    let mut late = Proc::spawn(
        "ffmpeg late",
        &mut ffmpeg_publish_ts(&url("late"), &spec(4)),
    );
    let (name, handle) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let asked = Instant::now();
    assert_eq!(name, "late");
    let status = late.wait_timeout(Duration::from_secs(10));
    let took = asked.elapsed();
    assert!(
        status.is_some_and(|s| !s.success()),
        "{test}: the undecided caller was not refused: {}",
        late.describe()
    );
    assert!(
        took < Duration::from_millis(2500),
        "{test}: refused after {took:?} (the deadline is 1 s)"
    );
    assert!(handle.is_abandoned());
    assert!(!engine.streams().contains(&key("late")));
    held.stop();
    flow.stop();
}
