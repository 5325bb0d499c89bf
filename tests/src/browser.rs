//! Headless Chromium driven through chromedriver's W3C WebDriver HTTP API
//! (<https://www.w3.org/TR/webdriver2/>), for tests that assert what a
//! viewer in a browser sees (e.g. hls.js playing a stream).
//!
//! [`Browser::start`] runs `chromedriver` on a free loopback port in its own
//! process group and opens a session on `/usr/bin/chromium` (Debian's
//! packages `chromium` and `chromium-driver`) with a fresh profile directory.
//! Dropping the [`Browser`] ends the session and kills the whole process
//! group, so no Chromium outlives a test, also on panic.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http_client::{request, Response};
use crate::net::TempDir;
use crate::process::Proc;

/// Chromium command-line switches for a quiet, sandbox-free headless run
/// that may autoplay media.
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    // WebRTC pages: a fake camera (test pattern) and microphone (beeps),
    // granted without a prompt; loopback candidates allowed.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
];

/// A Chromium found on this machine.
fn chromium_binary() -> Option<std::path::PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|n| crate::tools::find_tool(n))
}

/// A WebDriver session on headless Chromium.
pub struct Browser {
    driver: Proc,
    addr: SocketAddr,
    session: Option<String>,
    _profile: TempDir,
}

/// How long one WebDriver command may take (a new session starts Chromium).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    ///
    /// Returns `None` (after printing a notice) when Chromium or chromedriver
    /// is missing outside CI; under `CI=true` that is a failure.
    pub fn start(test: &str) -> Option<Browser> {
        if !crate::tools::require_tools(test, &["chromedriver"]) {
            return None;
        }
        let Some(chromium) = chromium_binary() else {
            let msg = format!("{test}: chromium not found on PATH (Debian package `chromium`)");
            if crate::tools::in_ci() {
                panic!("{msg}; CI=true so this test may not be skipped");
            }
            eprintln!("SKIPPED {msg}");
            return None;
        };
        let started = Instant::now();
        // The free port may be taken by another test's server between
        // `free_port` and chromedriver's bind (tests of a binary run in
        // parallel); then the session request reaches the wrong listener
        // and fails at the transport. Such a start is retried on a new port;
        // a WebDriver error is not.
        let mut attempt = 1;
        loop {
            match Self::try_start(test, &chromium) {
                Ok(browser) => {
                    if started.elapsed() > Duration::from_secs(5) {
                        eprintln!(
                            "{test}: chromedriver + Chromium took {:?} to start (loaded machine?)",
                            started.elapsed()
                        );
                    }
                    return Some(browser);
                }
                Err(e) if attempt < 3 => {
                    eprintln!(
                        "{test}: chromedriver start {attempt} failed ({e}); retrying on a new port"
                    );
                    attempt += 1;
                }
                Err(e) => panic!("{test}: new WebDriver session failed: {e}"),
            }
        }
    }

    /// One attempt of [`Browser::start`]: chromedriver on a free port and a
    /// new session. `Err` only for a transport failure of the session
    /// request (worth retrying on another port).
    fn try_start(test: &str, chromium: &std::path::Path) -> Result<Browser, String> {
        let port = crate::net::free_port();
        let mut cmd = Command::new("chromedriver");
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .process_group(0);
        let mut driver = Proc::spawn("chromedriver", &mut cmd);
        let addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
        if !crate::net::wait_for_port(addr, Duration::from_secs(10)) {
            driver.kill();
            panic!(
                "{test}: chromedriver did not listen on {addr}\n{}",
                driver.describe()
            );
        }
        let profile = TempDir::new("chromium-profile");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut browser = Browser {
            driver,
            addr,
            session: None,
            _profile: profile,
        };
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "eager",
                    "goog:chromeOptions": {
                        "binary": chromium.display().to_string(),
                        "args": args,
                    },
                    "timeouts": { "script": 20_000, "pageLoad": 20_000 },
                }
            }
        });
        let value = match browser.command("POST", "/session", Some(caps)) {
            Ok(v) => v,
            Err(e) if e.contains("i/o error") => return Err(e),
            Err(e) => panic!("{test}: new WebDriver session failed: {e}"),
        };
        let id = value
            .get("sessionId")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{test}: no sessionId in {value}"))
            .to_owned();
        browser.session = Some(id);
        Ok(browser)
    }

    /// Sends one WebDriver command; returns the response's `value`, or the
    /// WebDriver error (`error: message`) as text.
    pub fn command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body_bytes = body.map(|b| b.to_string().into_bytes());
        let host = self.addr.to_string();
        let resp: Response = request(
            self.addr,
            &host,
            method,
            path,
            &[],
            body_bytes
                .as_deref()
                .map(|b| ("application/json; charset=utf-8", b)),
            COMMAND_TIMEOUT,
        )
        .map_err(|e| format!("{method} {path}: {e}"))?;
        let parsed: Value = serde_json::from_slice(&resp.body).map_err(|e| {
            format!(
                "{method} {path}: status {} with a non-JSON body ({e}): {}",
                resp.status,
                resp.text()
            )
        })?;
        let value = parsed.get("value").cloned().unwrap_or(Value::Null);
        if resp.status == 200 {
            Ok(value)
        } else {
            let error = value.get("error").and_then(Value::as_str).unwrap_or("?");
            let message = value.get("message").and_then(Value::as_str).unwrap_or("");
            Err(format!(
                "{method} {path}: {} {error}: {message}",
                resp.status
            ))
        }
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session.as_deref().unwrap_or(""))
    }

    /// Navigates to `url` and waits for the DOM to be ready.
    pub fn navigate(&self, url: &str) -> Result<(), String> {
        self.command(
            "POST",
            &self.session_path("/url"),
            Some(json!({ "url": url })),
        )
        .map(|_| ())
    }

    /// Runs `script` as the body of a function (use `return`), with
    /// `arguments` = `args`; returns its JSON result.
    pub fn execute(&self, script: &str, args: Value) -> Result<Value, String> {
        self.command(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Runs an asynchronous `script`: it must call `arguments[arguments.length - 1](result)`.
    pub fn execute_async(&self, script: &str, args: Value) -> Result<Value, String> {
        self.command(
            "POST",
            &self.session_path("/execute/async"),
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Evaluates `script` every `every` until `done` accepts its result or
    /// `timeout` passes; returns the last result and whether `done` held.
    pub fn poll(
        &self,
        script: &str,
        timeout: Duration,
        every: Duration,
        mut done: impl FnMut(&Value) -> bool,
    ) -> (Value, bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.execute(script, json!([])) {
                Ok(v) if done(&v) => return (v, true),
                Ok(v) => v,
                Err(e) => Value::String(e),
            };
            if Instant::now() >= deadline {
                return (last, false);
            }
            std::thread::sleep(every);
        }
    }

    /// Where the page is now.
    pub fn current_url(&self) -> Result<String, String> {
        self.command("GET", &self.session_path("/url"), None)
            .map(|v| v.as_str().unwrap_or_default().to_owned())
    }

    /// A PNG screenshot of the viewport (for debugging a failing test).
    pub fn screenshot_png(&self) -> Result<Vec<u8>, String> {
        let v = self.command("GET", &self.session_path("/screenshot"), None)?;
        let b64 = v.as_str().ok_or("screenshot is not a string")?;
        base64_decode(b64).ok_or_else(|| "screenshot is not base64".to_owned())
    }

    /// chromedriver's output so far (for assertion messages).
    pub fn describe(&self) -> String {
        self.driver.describe()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.session.is_some() {
            // Closes Chromium cleanly; bounded by COMMAND_TIMEOUT.
            let t = Instant::now();
            if let Err(e) = self.command("DELETE", &self.session_path(""), None) {
                eprintln!(
                    "closing the WebDriver session failed after {:?}: {e}",
                    t.elapsed()
                );
            } else if t.elapsed() > Duration::from_secs(5) {
                eprintln!("closing the WebDriver session took {:?}", t.elapsed());
            }
            self.session = None;
        }
        // chromedriver leads its own process group; Chromium and its helper
        // processes are in it unless they moved themselves out.
        let pgid = self.driver.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        self.driver.kill();
    }
}

/// Decodes standard base64 (with or without padding); `None` on a bad symbol.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for &c in text.as_bytes() {
        if c == b'=' || c.is_ascii_whitespace() {
            continue;
        }
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// What a `<video>` element shows, read by [`VIDEO_STATS_JS`].
#[derive(Debug, Clone, Default)]
pub struct VideoStats {
    /// `video.currentTime` in seconds.
    pub current_time: f64,
    /// `getVideoPlaybackQuality().totalVideoFrames`.
    pub total_frames: u64,
    /// `getVideoPlaybackQuality().droppedVideoFrames`.
    pub dropped_frames: u64,
    /// `video.readyState` (4 = HAVE_ENOUGH_DATA).
    pub ready_state: u64,
    /// `video.paused`.
    pub paused: bool,
    /// `video.videoWidth` × `video.videoHeight`.
    pub size: (u64, u64),
    /// `video.error.message` if the element failed.
    pub media_error: Option<String>,
    /// The page's own error list (e.g. `window.arclyPlayer.errors`).
    pub page_errors: Vec<String>,
}

/// A script that returns the state of the video `arguments[0]` (a JS
/// expression evaluated in the page, e.g. `document.querySelector('video')`)
/// and the errors in the array expression `arguments[1]`.
pub const VIDEO_STATS_JS: &str = r#"
const v = eval(arguments[0]);
const errs = eval(arguments[1]);
if (!v) { return { missing: true, errors: errs ? errs.map(String) : [] }; }
const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {};
return {
  currentTime: v.currentTime,
  total: q.totalVideoFrames || 0,
  dropped: q.droppedVideoFrames || 0,
  readyState: v.readyState,
  paused: v.paused,
  width: v.videoWidth, height: v.videoHeight,
  error: v.error ? (v.error.code + ': ' + v.error.message) : null,
  errors: errs ? errs.map(e => typeof e === 'string' ? e : JSON.stringify(e)) : [],
};
"#;

impl VideoStats {
    /// Parses the result of [`VIDEO_STATS_JS`].
    pub fn from_json(v: &Value) -> VideoStats {
        let u = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        VideoStats {
            current_time: v.get("currentTime").and_then(Value::as_f64).unwrap_or(0.0),
            total_frames: u("total"),
            dropped_frames: u("dropped"),
            ready_state: u("readyState"),
            paused: v.get("paused").and_then(Value::as_bool).unwrap_or(true),
            size: (u("width"), u("height")),
            media_error: v.get("error").and_then(Value::as_str).map(str::to_owned),
            page_errors: v
                .get("errors")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

impl Browser {
    /// Reads [`VideoStats`] of the video at JS expression `video` and the
    /// error array at JS expression `errors`.
    pub fn video_stats(&self, video: &str, errors: &str) -> Result<VideoStats, String> {
        self.execute(VIDEO_STATS_JS, json!([video, errors]))
            .map(|v| VideoStats::from_json(&v))
    }

    /// Polls [`Browser::video_stats`] every 250 ms until `done` holds or
    /// `timeout` passes (or the page reports an error); returns the last stats
    /// and whether `done` held.
    pub fn wait_video(
        &self,
        video: &str,
        errors: &str,
        timeout: Duration,
        mut done: impl FnMut(&VideoStats) -> bool,
    ) -> (VideoStats, bool) {
        let deadline = Instant::now() + timeout;
        let mut last = VideoStats::default();
        loop {
            if let Ok(s) = self.video_stats(video, errors) {
                if done(&s) {
                    return (s, true);
                }
                let failed = s.media_error.is_some();
                last = s;
                if failed {
                    return (last, false);
                }
            }
            if Instant::now() >= deadline {
                return (last, false);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8gd29ybGQ").unwrap(), b"hello world");
        assert!(base64_decode("a$b").is_none());
    }
}
