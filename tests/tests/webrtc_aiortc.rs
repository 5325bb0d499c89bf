//! aiortc (an independent Python WebRTC stack, Debian `python3-aiortc`)
//! against the arcly binary over real UDP: it publishes H.264 + Opus over
//! WHIP (`/live/ai/whip`, 201, ICE+DTLS connected) and then plays the same
//! stream over WHEP, decoding at least 50 video frames (320 px wide, from
//! the GOP cache's keyframe on) and 100 Opus audio frames (48 kHz).
//! Script: `tests/scripts/aiortc_whip_whep.py`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use arcly_tests::{binary, Watchdog};
use serde_json::Value;

const T: Duration = Duration::from_secs(15);

/// Debian's Python, where `apt-get install python3-aiortc` puts aiortc.
const PYTHON: &str = "/usr/bin/python3";

/// Whether Python's aiortc is importable (under `CI=true` it must be).
fn have_aiortc(test: &str) -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import aiortc"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = format!("{test}: python3-aiortc is not installed");
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{msg}; CI=true so this test may not be skipped");
        }
        eprintln!("SKIPPED {msg}");
    }
    ok
}

#[test]
fn aiortc_publishes_whip_and_plays_whep() {
    let test = "webrtc_aiortc/whip_whep";
    let _wd = Watchdog::new(test, Duration::from_secs(58));
    arcly_tests::init_logging();
    if !have_aiortc(test) {
        return;
    }
    let Some(bin) = binary::arcly_bin(test) else {
        return;
    };
    let mut server = binary::spawn(
        &bin,
        &[
            "--rtmp",
            "off",
            "--http",
            "127.0.0.1:0",
            "--rtsp",
            "off",
            "--srt",
            "off",
            "--webrtc",
            "127.0.0.1:0",
        ],
    );
    let http = binary::wait_http_addr(&mut server, T)
        .unwrap_or_else(|| panic!("no HTTP banner:\n{}", server.describe()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/aiortc_whip_whep.py");
    let out = Command::new(PYTHON)
        .arg(&script)
        .arg(format!("http://{http}/live/ai"))
        .output()
        .expect("/usr/bin/python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    let Some(result) = line.and_then(|l| serde_json::from_str::<Value>(l).ok()) else {
        panic!(
            "{test}: no result from aiortc (exit {:?})\nstdout:\n{stdout}\nstderr tail:\n{}\n{}",
            out.status,
            stderr.lines().rev().take(30).collect::<Vec<_>>().join("\n"),
            server.describe()
        );
    };
    eprintln!("{test}: {result}");
    assert_eq!(result["whip_status"], 201, "{test}: {result}");
    assert_eq!(result["whip_state"], "connected", "{test}: {result}");
    assert_eq!(result["whep_status"], 201, "{test}: {result}");
    assert!(
        result["video"].as_u64().unwrap_or(0) >= 50,
        "{test}: aiortc decoded too few video frames: {result}\n{}",
        server.describe()
    );
    assert_eq!(result["width"], 320, "{test}: {result}");
    assert!(
        result["audio"].as_u64().unwrap_or(0) >= 100,
        "{test}: aiortc got too few audio frames: {result}"
    );
    assert_eq!(result["audio_rate"], 48_000, "{test}: {result}");
    assert!(
        result["whip_location"]
            .as_str()
            .is_some_and(|l| l.starts_with("/live/ai/whip/")),
        "{test}: {result}"
    );
}
