//! Finding external tools, and the CI policy for missing ones.

use std::path::PathBuf;

/// Whether the tests run under CI (`CI` set to `true` or `1`).
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI")
            .ok()
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("true" | "1" | "yes")
    )
}

/// The full path of `name` found on `PATH`, if any.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Checks that every tool in `names` is on `PATH`.
///
/// Returns `true` when all are there. When one is missing: under CI this
/// panics with a message naming it (a CI run must never skip an interop test);
/// outside CI it prints a notice and returns `false` so the test can return early.
pub fn require_tools(test: &str, names: &[&str]) -> bool {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| find_tool(n).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{test}: required tool(s) not found on PATH: {} (install with ./scripts/test.sh, \
         which installs ffmpeg and gstreamer1.0-* on Debian)",
        missing.join(", ")
    );
    if in_ci() {
        panic!("{msg}; CI=true so this test may not be skipped");
    }
    eprintln!("SKIPPED {msg}");
    false
}

/// Checks that GStreamer has every element in `elements` (via `gst-inspect-1.0`).
/// Same CI policy as [`require_tools`].
pub fn require_gst_elements(test: &str, elements: &[&str]) -> bool {
    if !require_tools(test, &["gst-launch-1.0", "gst-inspect-1.0"]) {
        return false;
    }
    let missing: Vec<&str> = elements
        .iter()
        .copied()
        .filter(|e| {
            !std::process::Command::new("gst-inspect-1.0")
                .arg("--exists")
                .arg(e)
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{test}: GStreamer element(s) missing: {} (packages gstreamer1.0-plugins-bad/-good/-ugly, gstreamer1.0-libav)",
        missing.join(", ")
    );
    if in_ci() {
        panic!("{msg}; CI=true so this test may not be skipped");
    }
    eprintln!("SKIPPED {msg}");
    false
}
