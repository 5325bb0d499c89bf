//! Log capture for the hostile-input tests: every `tracing` line of the
//! test binary (level `info` and up, no ANSI colours) into one shared
//! buffer, so a test can check what an operator would read: a refusal
//! logged once per flood with its `suppressed=N` count, and no peer text
//! reaching the log raw (`arcly::peer_text`).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// The captured log of this test binary (shared by all its tests).
#[derive(Clone, Default)]
pub struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuf {
    /// Everything captured so far (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Captured log lines containing every one of `needles`.
    pub fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .collect()
    }
}

/// Captures every log line of this test binary at level `info` and up
/// ([`capture`] with `"info"`).
pub fn logs() -> &'static LogBuf {
    capture("info")
}

/// Captures every log line of this test binary that `filter` (an
/// `EnvFilter` directive, e.g. `"info,arcly::session::serve=debug"`)
/// passes. The subscriber is installed on the first call of the binary and
/// that call's filter stays: call it, with the same filter, before any
/// server starts.
pub fn capture(filter: &str) -> &'static LogBuf {
    static LOGS: OnceLock<LogBuf> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuf::default();
        let w = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(move || w.clone())
            .try_init();
        buf
    })
}
