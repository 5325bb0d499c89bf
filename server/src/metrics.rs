//! `GET /metrics`: the engine's numbers in the Prometheus text exposition
//! format 0.0.4 (HELP and TYPE lines, `arcly_..._total` counters, units in
//! names, label values escaped: stream keys are peer text), plus the
//! standard process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`,
//! `process_start_time_seconds`) read from `/proc` on Linux.
//!
//! Built from one engine snapshot per scrape (atomics; no lock a session
//! waits on is held while formatting).

use std::fmt::Write as _;

use arcly::engine::SessionRole;
use arcly::Engine;

use crate::api::CountingHls;

/// Appends `v` escaped as a label value (backslash, double quote, newline).
fn label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// One metric family: HELP and TYPE, then its samples.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out, name }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                label(self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// The whole `/metrics` page.
pub fn render(engine: &Engine, hls: &CountingHls) -> String {
    let mut out = String::with_capacity(4096);
    let streams = engine.streams_snapshot();
    let totals = engine.protocol_totals();

    let mut f = Family::new(&mut out, "arcly_streams", "gauge", "Live streams.");
    f.sample(&[], streams.len());

    let mut f = Family::new(
        &mut out,
        "arcly_sessions",
        "gauge",
        "Live publishers and viewers, by protocol and role.",
    );
    for t in &totals {
        f.sample(&[("protocol", t.protocol), ("role", t.role.name())], t.live);
    }
    let mut f = Family::new(
        &mut out,
        "arcly_sessions_started_total",
        "counter",
        "Publishers and viewers started, by protocol and role.",
    );
    for t in &totals {
        f.sample(
            &[("protocol", t.protocol), ("role", t.role.name())],
            t.sessions,
        );
    }
    for (name, help, pick) in [
        (
            "arcly_protocol_bytes_total",
            "Media payload bytes published (role=publisher) or delivered (role=viewer), by protocol.",
            0usize,
        ),
        (
            "arcly_protocol_frames_total",
            "Media frames published or delivered, by protocol.",
            1,
        ),
        (
            "arcly_protocol_dropped_frames_total",
            "Frames viewers skipped for falling behind, by protocol.",
            2,
        ),
    ] {
        let mut f = Family::new(&mut out, name, "counter", help);
        for t in &totals {
            if pick == 2 && t.role == SessionRole::Publisher {
                continue;
            }
            let v = match pick {
                0 => t.bytes,
                1 => t.frames,
                _ => t.dropped,
            };
            f.sample(&[("protocol", t.protocol), ("role", t.role.name())], v);
        }
    }

    let keys: Vec<String> = streams.iter().map(|s| s.key.to_string()).collect();
    let publisher = |s: &arcly::engine::StreamSnapshot| s.publisher.map_or("", |p| p.protocol);
    let mut f = Family::new(
        &mut out,
        "arcly_stream_bytes_in_total",
        "counter",
        "Media payload bytes published on the stream.",
    );
    for (s, k) in streams.iter().zip(&keys) {
        f.sample(&[("stream", k), ("protocol", publisher(s))], s.stats.bytes);
    }
    let mut f = Family::new(
        &mut out,
        "arcly_stream_frames_in_total",
        "counter",
        "Media frames published on the stream.",
    );
    for (s, k) in streams.iter().zip(&keys) {
        f.sample(&[("stream", k), ("protocol", publisher(s))], s.stats.frames);
    }
    let mut f = Family::new(
        &mut out,
        "arcly_stream_keyframes_total",
        "counter",
        "Keyframes published on the stream.",
    );
    for (s, k) in streams.iter().zip(&keys) {
        f.sample(&[("stream", k)], s.stats.keyframes);
    }
    let mut f = Family::new(
        &mut out,
        "arcly_stream_dropped_frames_total",
        "counter",
        "Frames the stream's viewers skipped because they fell behind.",
    );
    for (s, k) in streams.iter().zip(&keys) {
        f.sample(&[("stream", k)], s.stats.dropped);
    }
    let mut f = Family::new(
        &mut out,
        "arcly_stream_bitrate_bits_per_second",
        "gauge",
        "Published bitrate over the last second of media time.",
    );
    for (s, k) in streams.iter().zip(&keys) {
        f.sample(&[("stream", k)], s.stats.bitrate_bps);
    }
    let mut f = Family::new(
        &mut out,
        "arcly_stream_keyframe_interval_seconds",
        "gauge",
        "Media time between the last two video keyframes.",
    );
    for (s, k) in streams.iter().zip(&keys) {
        f.sample(
            &[("stream", k)],
            s.stats.keyframe_interval_ms as f64 / 1000.0,
        );
    }
    let mut f = Family::new(
        &mut out,
        "arcly_stream_viewers",
        "gauge",
        "Subscribers of the stream, by protocol (hls: the one muxer serving every HLS client).",
    );
    for (s, k) in streams.iter().zip(&keys) {
        for (p, n) in &s.viewers_by_protocol {
            f.sample(&[("stream", k), ("protocol", p)], n);
        }
    }

    let refusals = engine.refusals();
    let mut f = Family::new(
        &mut out,
        "arcly_engine_refusals_total",
        "counter",
        "Publishes and plays the engine refused, by reason.",
    );
    for (reason, n) in refusals.by_reason() {
        f.sample(&[("reason", reason)], n);
    }

    let mut f = Family::new(
        &mut out,
        "arcly_hls_requests_total",
        "counter",
        "HTTP requests the HLS service answered or parked.",
    );
    f.sample(&[], hls.requests());
    let mut f = Family::new(
        &mut out,
        "arcly_hls_parked_requests",
        "gauge",
        "Blocking playlist reloads parked right now.",
    );
    f.sample(&[], hls.parked());

    process(&mut out);
    out
}

/// Standard process metrics (Linux `/proc`; nothing elsewhere).
fn process(out: &mut String) {
    let Some(p) = ProcStat::read() else {
        return;
    };
    let mut f = Family::new(
        out,
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
    );
    f.sample(&[], p.cpu_seconds);
    let mut f = Family::new(
        out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    );
    f.sample(&[], p.rss_bytes);
    let mut f = Family::new(
        out,
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
    );
    f.sample(&[], p.vsize_bytes);
    if let Some(start) = p.start_time_seconds {
        let mut f = Family::new(
            out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
        );
        f.sample(&[], start);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let mut f = Family::new(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        );
        f.sample(&[], fds.count());
    }
}

struct ProcStat {
    cpu_seconds: f64,
    rss_bytes: u64,
    vsize_bytes: u64,
    start_time_seconds: Option<f64>,
}

impl ProcStat {
    /// `/proc/self/stat` (proc(5)): fields after the `)` that ends the
    /// command name; utime 14, stime 15, starttime 22, vsize 23, rss 24.
    fn read() -> Option<ProcStat> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state).
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        let ticks = clock_ticks() as f64;
        let cpu_seconds = (field(14)? + field(15)?) as f64 / ticks;
        let rss_bytes = field(24)?.saturating_mul(page_size());
        let vsize_bytes = field(23)?;
        let btime = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        let start_time_seconds = btime
            .zip(field(22))
            .map(|(b, st)| b as f64 + st as f64 / ticks);
        Some(ProcStat {
            cpu_seconds,
            rss_bytes,
            vsize_bytes,
            start_time_seconds,
        })
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn clock_ticks() -> u64 {
    100
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn page_size() -> u64 {
    4096
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        label(&mut s, "a\"b\\c\nd");
        assert_eq!(s, "a\\\"b\\\\c\\nd");
    }
}
