//! RTSP authentication with real clients: behind a policy that knows one
//! user's password, ffmpeg publishes and ffprobe plays with
//! `rtsp://user:pass@…` (both answer the server's Digest challenge; the
//! password never crosses the wire) and the viewer decodes every frame;
//! without credentials ffprobe fails with 401, with a wrong password with
//! 403. GStreamer `rtspsrc` plays with Digest from the URL too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use arcly::admission::{Admission, AdmissionRequest, Credentials, Decision, RejectCode, Rejection};
use arcly::rtsp::RtspSessionFactory;
use arcly::Engine;
use arcly_tests::process::Proc;
use arcly_tests::scenario::{self, Player, Publisher};
use arcly_tests::{ffmpeg, require_tools, Adapter, TestServer, Watchdog};

/// User `cam`, password `s3cret`, and which kind of credentials came.
struct OneUser(std::sync::Mutex<Vec<&'static str>>);

impl Admission for OneUser {
    fn admit(&self, req: &AdmissionRequest) -> Decision {
        let (kind, ok) = match &req.credentials {
            Credentials::None => {
                self.0.lock().unwrap().push("none");
                return Decision::Deny(Rejection::new(RejectCode::Unauthorized, "log in"));
            }
            Credentials::Password { user, password } => {
                ("basic", user == "cam" && password == "s3cret")
            }
            Credentials::Digest(d) => ("digest", d.user() == "cam" && d.verify("s3cret")),
            _ => ("other", false),
        };
        self.0.lock().unwrap().push(kind);
        if ok {
            Decision::Allow
        } else {
            Decision::Deny(Rejection::forbidden("wrong user or password"))
        }
    }
}

/// ffprobe against `url`: (exit success, stderr).
fn probe(label: &str, url: &str) -> (bool, String) {
    let mut p = Proc::spawn(
        label,
        &mut ffmpeg::play_command(url, Duration::from_secs(4)),
    );
    let status = p.wait_timeout(Duration::from_secs(15));
    (status.is_some_and(|s| s.success()), p.stderr())
}

#[test]
fn ffmpeg_publishes_and_plays_with_digest_and_is_refused_without() {
    let test = "rtsp_auth/ffmpeg-digest";
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(90));
    arcly_tests::init_logging();
    let engine = Engine::with_defaults();
    let policy = Arc::new(OneUser(Default::default()));
    let rtsp = TestServer::start_factory(
        Adapter::Tokio,
        engine.clone(),
        Arc::new(RtspSessionFactory::new(engine, policy.clone())),
    );
    let addr = rtsp.addr;

    // No credentials: 401, ffprobe gives up.
    let (ok, err) = probe(&format!("{test}:none"), &format!("rtsp://{addr}/live/cam"));
    assert!(
        !ok && err.contains("401"),
        "{test}: without credentials: {err}"
    );
    // A wrong password: 403.
    let (ok, err) = probe(
        &format!("{test}:wrong"),
        &format!("rtsp://cam:guess@{addr}/live/cam"),
    );
    assert!(!ok && err.contains("403"), "{test}: wrong password: {err}");

    let url = format!("rtsp://cam:s3cret@{addr}/live/cam");
    let report = scenario::run_urls(
        test,
        &url,
        &url,
        "cam",
        Publisher::FfmpegRtsp,
        Player::Ffprobe,
        Some(&rtsp.engine),
    );
    report.assert_viewer_saw_everything();
    let kinds = policy.0.lock().unwrap().clone();
    assert!(
        kinds.iter().filter(|k| **k == "digest").count() >= 2,
        "{test}: publisher and player answered with Digest: {kinds:?}"
    );
    assert!(
        !kinds.contains(&"basic"),
        "{test}: ffmpeg fell back to Basic: {kinds:?}"
    );
}

/// GStreamer `rtspsrc` answers the Digest challenge from the URL's userinfo
/// too (ffmpeg publishes with credentials).
#[test]
fn gst_rtspsrc_plays_with_digest() {
    let test = "rtsp_auth/gst-digest";
    if !require_tools(test, &["ffmpeg", "ffprobe"])
        || !arcly_tests::tools::require_gst_elements(
            test,
            &[
                "rtspsrc",
                "rtph264depay",
                "rtpmp4gdepay",
                "avdec_h264",
                "avdec_aac",
            ],
        )
    {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(90));
    arcly_tests::init_logging();
    let engine = Engine::with_defaults();
    let policy = Arc::new(OneUser(Default::default()));
    let rtsp = TestServer::start_factory(
        Adapter::Tokio,
        engine.clone(),
        Arc::new(RtspSessionFactory::new(engine, policy.clone())),
    );
    let url = format!("rtsp://cam:s3cret@{}/live/cam", rtsp.addr);
    let report = scenario::run_urls(
        test,
        &url,
        &url,
        "cam",
        Publisher::FfmpegRtsp,
        Player::Gst,
        Some(&rtsp.engine),
    );
    report.assert_viewer_saw_everything();
    let kinds = policy.0.lock().unwrap().clone();
    assert!(
        !kinds.contains(&"basic"),
        "{test}: a client fell back to Basic: {kinds:?}"
    );
}
