//! Reading a process's CPU time and resident memory from Linux `/proc`
//! (proc(5): `/proc/PID/stat` fields 14 `utime` and 15 `stime`,
//! `/proc/PID/status` line `VmRSS`).

use std::path::PathBuf;

/// Clock ticks per second of `utime`/`stime`. Linux reports `USER_HZ`, which
/// is 100 on every architecture the kernel ABI exposes it for.
pub const USER_HZ: f64 = 100.0;

/// CPU time of a process, user plus system, in seconds; `None` if the process
/// is gone or the file does not parse.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(proc_path(pid, "stat")).ok()?;
    parse_stat_cpu_ticks(&text).map(|t| t as f64 / USER_HZ)
}

/// Resident set size (`VmRSS`) in KiB; `None` if the process is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(proc_path(pid, "status")).ok()?;
    parse_status_rss_kib(&text)
}

/// Number of threads of a process (`Threads` in `/proc/PID/status`).
pub fn threads(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(proc_path(pid, "status")).ok()?;
    status_field(&text, "Threads:")
}

fn proc_path(pid: u32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

/// `utime + stime` in ticks from the text of `/proc/PID/stat`. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted
/// after the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    // After ")" the fields start at 3 (state); utime is 14, stime 15.
    let mut it = after.split_whitespace().skip(14 - 3);
    let utime: u64 = it.next()?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in KiB from the text of `/proc/PID/status`.
pub fn parse_status_rss_kib(status: &str) -> Option<u64> {
    status_field(status, "VmRSS:")
}

fn status_field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_name() {
        let stat =
            "1234 (ar cly) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_status_rss() {
        let status = "Name:\tarcly\nVmPeak:\t  9000 kB\nVmRSS:\t    4321 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss_kib(status), Some(4321));
        assert_eq!(status_field(status, "Threads:"), Some(3));
        assert_eq!(parse_status_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_some());
        assert!(rss_kib(pid).is_some_and(|kib| kib > 0));
    }
}
