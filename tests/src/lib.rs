//! Test helpers for arcly's interop tests: real clients (ffmpeg, ffprobe,
//! GStreamer), child processes with timeouts that die with the test, free
//! ports, output parsing, a raw RTMP byte writer for hostile input, and
//! in-process servers on each adapter.
//!
//! Rules the helpers enforce:
//! - every wait is bounded (a hung peer fails the test, it never hangs CI);
//! - a child process is killed when its handle drops (also on panic);
//! - under `CI=true` a missing tool is a failure with a clear message; outside
//!   CI the test prints a notice and skips.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod binary;
pub mod browser;
pub mod client;
pub mod ffmpeg;
pub mod gst;
pub mod hls;
pub mod http_client;
pub mod logs;
pub mod m3u8;
pub mod net;
pub mod process;
pub mod rawrtmp;
pub mod scenario;
pub mod servers;
pub mod srt;
pub mod synth;
pub mod tools;
pub mod webrtc;

pub use net::{local_listener, wait_for_port};
pub use process::{Proc, Watchdog};
pub use servers::{Adapter, TcpSettings, TestServer};
pub use tools::{in_ci, require_tools};

/// Installs a `tracing` subscriber for the test binary (once): `RUST_LOG`
/// filter, default `info`, written through the test harness's capture so a
/// failing test shows the server's log (e.g. why a connection closed).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
