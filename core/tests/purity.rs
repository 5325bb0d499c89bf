//! Core stays pure: no clock read, sleep, socket, thread, spawn, file system,
//! process, environment, terminal or blocking wait anywhere in `core/src`
//! (docs/architecture.md, "Purity"). Time and randomness are inputs; the
//! adapters (`arcly-tokio`, `arcly-async-io`, `arcly-blocking`) do the I/O and
//! the blocking (`arcly_blocking::BlockingWait` is the one blocked-thread
//! wait, outside core).
//!
//! The scan reads every `.rs` file under `core/src`, blanks comments and
//! string literals, skips test-only code (`#[cfg(test)]` /
//! `#[cfg(all(test, …))]` items and the files of such `mod x;`
//! declarations), and fails naming file, line and what was found.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What is forbidden in core, and why.
const FORBIDDEN: &[(&str, &str)] = &[
    ("Instant::now", "clock read"),
    ("SystemTime::now", "clock read"),
    ("UNIX_EPOCH.elapsed", "clock read"),
    ("::sleep", "sleep"),
    ("TcpStream", "socket"),
    ("TcpListener", "socket"),
    ("UdpSocket", "socket"),
    ("UnixStream", "socket"),
    ("UnixListener", "socket"),
    ("UnixDatagram", "socket"),
    ("ToSocketAddrs", "socket (name resolution)"),
    ("std::thread", "thread"),
    ("thread::spawn", "thread"),
    ("thread::park", "blocking wait"),
    ("::spawn(", "spawn"),
    ("spawn_blocking", "spawn"),
    ("std::fs", "file system"),
    ("tokio::fs", "file system"),
    ("File::open", "file system"),
    ("File::create", "file system"),
    ("OpenOptions", "file system"),
    ("std::process", "process"),
    ("std::env", "environment"),
    ("Condvar", "blocking wait (condvar)"),
    ("Barrier", "blocking wait"),
    ("park_timeout", "blocking wait"),
    ("recv_timeout", "blocking wait"),
    ("std::sync::mpsc", "blocking channel"),
    ("block_on", "blocking wait"),
    (".wait_timeout(", "blocking wait"),
    ("println!", "terminal output"),
    ("eprintln!", "terminal output"),
    ("print!", "terminal output"),
    ("eprint!", "terminal output"),
    ("dbg!", "terminal output"),
    ("stdin()", "terminal input"),
];

/// One forbidden use: file, 1-based line, pattern, reason.
#[derive(Debug, PartialEq, Eq)]
struct Finding {
    file: String,
    line: usize,
    pattern: &'static str,
    reason: &'static str,
}

/// `src` with comments and the contents of string and character literals
/// replaced by spaces (newlines kept, so line numbers stay).
fn blank_comments_and_strings(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_'))
        {
            // Raw string r"…" / r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            out.push('"');
            j += 1;
            loop {
                match c.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| c.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    Some(&ch) => {
                        out.push(blank(ch));
                        j += 1;
                    }
                }
            }
            out.push('"');
            i = j;
        } else if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if let Some(&ch) = c.get(i) {
                    out.push(blank(ch));
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else if c[i] == '\'' {
            // A character literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let close = if next == Some('\\') {
                (i + 2..(i + 12).min(c.len())).find(|&k| c[k] == '\'')
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(k) => {
                    out.push_str("' ");
                    out.extend(std::iter::repeat(' ').take(k - i - 2));
                    out.push('\'');
                    i = k + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Whether an attribute line gates the next item on tests only.
fn is_test_cfg(line: &str) -> bool {
    let l: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    l.starts_with("#[cfg(test)]") || l.starts_with("#[cfg(all(test")
}

/// Scans one file's text. Returns the findings and the names of the
/// modules declared test-only (`#[cfg(test)] mod x;`).
fn scan(file: &str, src: &str) -> (Vec<Finding>, Vec<String>) {
    let code = blank_comments_and_strings(src);
    let lines: Vec<&str> = code.lines().collect();
    let mut findings = Vec::new();
    let mut test_mods = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if is_test_cfg(lines[i]) {
            // Skip further attributes, then the item: one line ending in `;`
            // before any `{`, or up to the brace that closes the first `{`.
            let mut j = i + 1;
            while j < lines.len() && lines[j].trim_start().starts_with("#[") {
                j += 1;
            }
            let mut depth = 0i64;
            let mut opened = false;
            while j < lines.len() {
                let l = lines[j];
                let t = l.trim();
                if !opened {
                    if let Some(name) = t
                        .strip_prefix("pub(crate) mod ")
                        .or_else(|| t.strip_prefix("pub mod "))
                        .or_else(|| t.strip_prefix("mod "))
                        .and_then(|r| r.strip_suffix(';'))
                    {
                        test_mods.push(name.trim().to_owned());
                        break;
                    }
                }
                for ch in l.chars() {
                    match ch {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if (opened && depth <= 0) || (!opened && t.ends_with(';')) {
                    break;
                }
                j += 1;
            }
            i = j + 1;
            continue;
        }
        let line = lines[i];
        for &(pattern, reason) in FORBIDDEN {
            let starts_ident = pattern
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            let hit = line.match_indices(pattern).any(|(at, _)| {
                !starts_ident
                    || line[..at]
                        .chars()
                        .next_back()
                        .map_or(true, |c| !(c.is_alphanumeric() || c == '_'))
            });
            if hit {
                findings.push(Finding {
                    file: file.to_owned(),
                    line: i + 1,
                    pattern,
                    reason,
                });
            }
        }
        i += 1;
    }
    (findings, test_mods)
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The files a test-only `mod name;` declared in `file` may live in.
fn module_files(file: &Path, name: &str) -> [PathBuf; 2] {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let parent = file.parent().unwrap_or(Path::new(""));
    let dir = if stem == "mod" || stem == "lib" {
        parent.to_path_buf()
    } else {
        parent.join(stem)
    };
    [
        dir.join(format!("{name}.rs")),
        dir.join(name).join("mod.rs"),
    ]
}

fn scan_core() -> Vec<Finding> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rs_files(&root.join("src"), &mut files);
    assert!(files.len() > 50, "core/src not found: {files:?}");
    // Test-only files first (declared anywhere), then scan the rest.
    let mut test_only = HashSet::new();
    let mut per_file = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        let rel = f.strip_prefix(root).unwrap().display().to_string();
        let (findings, mods) = scan(&format!("core/{rel}"), &src);
        for m in mods {
            test_only.extend(module_files(f, &m));
        }
        per_file.push((f.clone(), findings));
    }
    // A file under a test-only directory module is test-only too.
    per_file
        .into_iter()
        .filter(|(f, _)| {
            !test_only.iter().any(|t| {
                f == t || (t.ends_with("mod.rs") && t.parent().is_some_and(|d| f.starts_with(d)))
            })
        })
        .flat_map(|(_, findings)| findings)
        .collect()
}

#[test]
fn core_reads_no_clock_and_does_no_io() {
    let findings = scan_core();
    let report: Vec<String> = findings
        .iter()
        .map(|f| format!("{}:{}: `{}` ({})", f.file, f.line, f.pattern, f.reason))
        .collect();
    assert!(
        report.is_empty(),
        "core must stay pure (docs/architecture.md, \"Purity\"); move these to an adapter, \
         or take the value as an input:\n{}",
        report.join("\n")
    );
}

#[test]
fn core_forbids_unsafe_code() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    assert!(
        lib.lines().any(|l| l.trim() == "#![forbid(unsafe_code)]"),
        "core/src/lib.rs must say #![forbid(unsafe_code)]"
    );
}

/// The scanner itself: it finds what it must (with the line), and ignores
/// comments, strings, character literals and test-only code.
#[test]
fn the_scan_finds_forbidden_calls_and_ignores_tests_and_comments() {
    let src = r##"use std::time::Duration;
// std::thread::sleep in a comment
/* Instant::now() in a block comment */
fn pure(now: Instant) -> &'static str { let _q = '"'; "std::fs::read in a string" }
fn clock() -> std::time::Instant { std::time::Instant::now() }
fn nap() { std::thread::sleep(Duration::from_millis(1)); }
fn net() { let _ = std::net::UdpSocket::bind("0.0.0.0:0"); }
fn disk() { let _ = std::fs::read("x"); let _ = r#"File::open"#; }
fn run() { tokio::spawn(async {}); }
#[cfg(test)]
mod tests {
    fn t() { std::thread::sleep(std::time::Duration::ZERO); }
}
#[cfg(test)]
mod more_tests;
fn lock(c: &std::sync::Condvar) {}
"##;
    let (findings, mods) = scan("x.rs", src);
    let got: Vec<(usize, &str)> = findings.iter().map(|f| (f.line, f.pattern)).collect();
    assert_eq!(
        got,
        [
            (5, "Instant::now"),
            (6, "::sleep"),
            (6, "std::thread"),
            (7, "UdpSocket"),
            (8, "std::fs"),
            (9, "::spawn("),
            (16, "Condvar"),
        ]
    );
    assert_eq!(mods, ["more_tests"]);
}
