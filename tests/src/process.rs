//! Child processes that cannot outlive or hang a test.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Output collected from a child's pipe, line by line, as it arrives.
#[derive(Debug, Default)]
struct Collected {
    text: String,
    lines: usize,
}

/// A spawned child process whose stdout and stderr are collected in the
/// background. Killed (and reaped) when dropped, so a failing test leaves no
/// stray ffmpeg behind.
pub struct Proc {
    name: String,
    child: Child,
    stdout: Arc<Mutex<Collected>>,
    stderr: Arc<Mutex<Collected>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
    started: Instant,
}

fn echo_enabled() -> bool {
    std::env::var("ARCLY_TEST_ECHO").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn collect(
    name: String,
    pipe: impl Read + Send + 'static,
    into: Arc<Mutex<Collected>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        let echo = echo_enabled();
        loop {
            buf.clear();
            // Split on \n and \r: ffmpeg rewrites its status line with \r.
            match read_line_any(&mut reader, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\r', '\n']);
                    if echo {
                        eprintln!("[{name}] {line}");
                    }
                    let mut c = into.lock().unwrap_or_else(|p| p.into_inner());
                    c.text.push_str(line);
                    c.text.push('\n');
                    c.lines += 1;
                }
            }
        }
    })
}

fn read_line_any(r: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut n = 0;
    loop {
        let (done, used) = {
            let avail = r.fill_buf()?;
            if avail.is_empty() {
                return Ok(n);
            }
            match avail.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    out.extend_from_slice(&avail[..=i]);
                    (true, i + 1)
                }
                None => {
                    out.extend_from_slice(avail);
                    (false, avail.len())
                }
            }
        };
        r.consume(used);
        n += used;
        if done {
            return Ok(n);
        }
    }
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout/stderr collected. `name`
    /// labels messages (and echoed lines when `ARCLY_TEST_ECHO` is set).
    ///
    /// Panics if the program cannot be started (use
    /// [`require_tools`](crate::require_tools) first).
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {cmd:?}: {e}"));
        let stdout = Arc::new(Mutex::new(Collected::default()));
        let stderr = Arc::new(Mutex::new(Collected::default()));
        let mut readers = Vec::new();
        if let Some(p) = child.stdout.take() {
            readers.push(collect(format!("{name}:out"), p, stdout.clone()));
        }
        if let Some(p) = child.stderr.take() {
            readers.push(collect(format!("{name}:err"), p, stderr.clone()));
        }
        Proc {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            readers,
            status: None,
            started: Instant::now(),
        }
    }

    /// The label given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Time since spawn.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Everything printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .text
            .clone()
    }

    /// Everything printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .text
            .clone()
    }

    /// Lines printed on stdout so far.
    pub fn stdout_lines(&self) -> usize {
        self.stdout.lock().unwrap_or_else(|p| p.into_inner()).lines
    }

    /// Exit status if the process has exited (non-blocking).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
            }
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                self.join_readers();
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout`; then asks the process to stop (SIGINT, which
    /// ffmpeg and `gst-launch-1.0 -e` handle by finishing their output),
    /// then SIGKILL after 5 s. Returns the exit status and whether the
    /// process had to be stopped.
    pub fn wait_or_stop(&mut self, timeout: Duration) -> (Option<ExitStatus>, bool) {
        if let Some(s) = self.wait_timeout(timeout) {
            return (Some(s), false);
        }
        (self.stop(), true)
    }

    /// Sends SIGINT, waits up to 5 s, then kills. Returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.try_status().is_none() {
            self.signal("INT");
            if let Some(s) = self.wait_timeout(Duration::from_secs(5)) {
                return Some(s);
            }
            self.kill();
        }
        self.status
    }

    /// Sends a signal by name (`INT`, `TERM`) with the `kill` utility.
    /// Falls back to SIGKILL when `kill` cannot be run.
    pub fn signal(&mut self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = self.child.kill();
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            if let Ok(s) = self.child.wait() {
                self.status = Some(s);
            }
        }
        self.join_readers();
    }

    /// Polls `pred` on (stdout, stderr) every 20 ms until it holds, the
    /// process exits, or `timeout` passes. Returns whether it held.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&str, &str) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.stdout(), &self.stderr()) {
                return true;
            }
            if self.try_status().is_some() {
                // Give the readers a moment to drain, then check once more.
                self.join_readers();
                return pred(&self.stdout(), &self.stderr());
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn join_readers(&mut self) {
        // Readers end at EOF, which follows process exit (unless a grandchild
        // holds the pipe: bound the wait).
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Some(h) = self.readers.pop() {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }

    /// A short description of the process and the tail of its output, for
    /// assertion messages.
    pub fn describe(&self) -> String {
        fn tail(s: &str, n: usize) -> String {
            let lines: Vec<&str> = s.lines().collect();
            let start = lines.len().saturating_sub(n);
            lines[start..].join("\n")
        }
        format!(
            "--- {} (status {:?}) stderr tail ---\n{}\n--- stdout tail ---\n{}",
            self.name,
            self.status,
            tail(&self.stderr(), 25),
            tail(&self.stdout(), 10)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Aborts the whole test process if a test runs longer than its bound: a
/// hung peer must fail CI quickly, not eat its time budget. Disarmed on drop.
pub struct Watchdog {
    done: Arc<AtomicBool>,
}

impl Watchdog {
    /// Arms a watchdog for `test` that fires after `limit`.
    pub fn new(test: &str, limit: Duration) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let test = test.to_owned();
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !flag.load(Ordering::Relaxed) {
                eprintln!("WATCHDOG: test `{test}` exceeded {limit:?}; aborting the test binary");
                std::process::exit(124);
            }
        });
        Watchdog { done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}
