//! `arcly --config FILE` through the binary (docs/config.md): every kind
//! of error names the file, the line and what is wrong; `--print-config`
//! shows defaults, file values and flags (flags winning); SIGHUP reloads
//! new rules for new sessions while a running RTMP viewer keeps playing,
//! and a bad file on reload is refused with the old rules kept.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use arcly_tests::binary::{arcly_bin, spawn, wait_rtmp_addr};
use arcly_tests::ffmpeg::{self, PublishSpec};
use arcly_tests::process::Proc;
use arcly_tests::scenario::{self, Player, Publisher};
use arcly_tests::{require_tools, Watchdog};

struct TempConfig(PathBuf);

impl TempConfig {
    fn new(name: &str, text: &str) -> TempConfig {
        let p =
            std::env::temp_dir().join(format!("arcly-config-{name}-{}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        TempConfig(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
    fn write(&self, text: &str) {
        std::fs::write(&self.0, text).unwrap();
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn every_error_kind_names_the_file_the_line_and_the_reason() {
    let Some(bin) = arcly_bin("config/errors") else {
        return;
    };
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "unknown-key",
            "max_connections = 5\nmax_conections = 5\n",
            2,
            "unknown key `max_conections`",
        ),
        (
            "bad-value",
            "# listeners\nrtmp = \"nowhere\"\n",
            2,
            "`rtmp`: invalid value 'nowhere'",
        ),
        (
            "bad-type",
            "max_connections = 5\nsrt_latency = [1, 2]\n",
            2,
            "srt_latency",
        ),
        (
            "bad-toml",
            "max_connections = 5\nrtmp = \n",
            2,
            "not valid TOML",
        ),
        (
            "path-unknown-key",
            "[paths.\"live/*\"]\npublish_usr = \"u\"\n",
            2,
            "unknown key `publish_usr`",
        ),
        (
            "path-half-user",
            "\n[paths.\"live/*\"]\npublish_user = \"u\"\n",
            2,
            "`publish_user` and `publish_pass` go together",
        ),
        (
            "path-conflict",
            "[paths.\"live/*\"]\nhls = true\n\n[paths.\"live/cam*\"]\nhls = false\n",
            4,
            "conflicts with `live/*` (line 1)",
        ),
        (
            "path-bad-regex",
            "[paths.\"~cam[0-9\"]\n",
            1,
            "bad regular expression",
        ),
        (
            "path-bad-ip",
            "[paths.\"live/*\"]\nread_ips = [\"10.0.0.0/40\"]\n",
            2,
            "prefix length",
        ),
        (
            "path-bad-hash",
            "[paths.\"live/*\"]\nread_user = \"v\"\nread_pass = \"sha256:1234\"\n",
            3,
            "64 hex digits",
        ),
        (
            "path-bad-push",
            "[paths.\"live/*\"]\npush = [\"http://x/{name}\"]\n",
            2,
            "scheme `http`",
        ),
        (
            "path-bad-bool",
            "[paths.\"live/*\"]\nrecord = \"yes\"\n",
            2,
            "`record` must be true or false",
        ),
        (
            "path-on-demand",
            "[paths.\"cam/*\"]\nsource_on_demand = true\n",
            1,
            "needs a `source`",
        ),
        ("path-not-a-path", "[paths.\"live\"]\n", 1, "APP/STREAM"),
    ];
    for (name, text, line, reason) in cases {
        let cfg = TempConfig::new(name, text);
        let out = Command::new(&bin)
            .args([
                "--config",
                cfg.path(),
                "--rtmp",
                "127.0.0.1:0",
                "--http",
                "off",
                "--rtsp",
                "off",
                "--srt",
                "off",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{name}: arcly started with a bad file:\n{err}"
        );
        let want = format!("{}:{line}: ", cfg.path());
        assert!(
            err.contains(&want),
            "{name}: the error does not say `{want}`:\n{err}"
        );
        assert!(
            err.contains(reason),
            "{name}: the error does not say `{reason}`:\n{err}"
        );
    }
    // A missing file is named too.
    let out = Command::new(&bin)
        .args(["--config", "/nonexistent/arcly.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/nonexistent/arcly.toml"),
        "{err}"
    );
}

#[test]
fn print_config_shows_defaults_the_file_and_flags_winning() {
    let Some(bin) = arcly_bin("config/print") else {
        return;
    };
    let cfg = TempConfig::new(
        "print",
        "max_connections = 500\nsrt_latency = 200\n[paths.\"live/*\"]\npublish_user = \"u\"\npublish_pass = \"p\"\nread_ips = [\"127.0.0.1\"]\npush = [\"rtmp://10.0.0.2:1935/app/{name}\"]\n[paths.\"cam1/*\"]\nsource = \"rtmp://origin:1935/live/{name}\"\nsource_on_demand = true\n",
    );
    let out = Command::new(&bin)
        .args([
            "--config",
            cfg.path(),
            "--print-config",
            "--srt-latency",
            "80",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "max_connections = 500",
        "srt_latency = 80",
        "rtmp = \"0.0.0.0:1935\"",
        "media_timeout = ",
        "[paths.\"live/*\"]",
        "publish_user = \"u\"",
        // The password is shown hashed, never in clear.
        "publish_pass = \"sha256:148de9c5a7a44d19e56cd9ae1a554bf67847afb0c58f6e12fa29ac7ddfca9940\"",
        "push = [\"rtmp://10.0.0.2:1935/app/{name}\"]",
        "source_on_demand = true",
    ] {
        assert!(text.contains(want), "--print-config lacks `{want}`:\n{text}");
    }
    // What it prints is a valid configuration that prints the same.
    let again = TempConfig::new("print-again", &text);
    let out2 = Command::new(&bin)
        .args(["--config", again.path(), "--print-config"])
        .output()
        .unwrap();
    assert!(
        out2.status.success(),
        "{}",
        String::from_utf8_lossy(&out2.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out2.stdout), text);
}

fn try_publish(label: &str, url: &str) -> bool {
    let spec = PublishSpec {
        seconds: 1,
        ..PublishSpec::default()
    };
    let mut p = Proc::spawn(label, &mut ffmpeg::publish_command(url, &spec));
    let ok = p
        .wait_timeout(Duration::from_secs(20))
        .is_some_and(|s| s.success());
    if !ok {
        p.kill();
    }
    ok
}

#[test]
fn sighup_reload_applies_to_new_sessions_keeps_running_ones_and_refuses_a_bad_file() {
    let Some(bin) = arcly_bin("config/reload") else {
        return;
    };
    if !require_tools("config/reload", &["ffmpeg", "ffprobe"]) {
        return;
    }
    let _w = Watchdog::new("config/reload", Duration::from_secs(90));
    let cfg = TempConfig::new("reload", "max_connections = 100\n");
    let mut server = spawn(
        &bin,
        &[
            "--config",
            cfg.path(),
            "--rtmp",
            "127.0.0.1:0",
            "--http",
            "off",
            "--rtsp",
            "off",
            "--srt",
            "off",
        ],
    );
    let addr = wait_rtmp_addr(&mut server, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no RTMP banner:\n{}", server.describe()));
    // A viewer admitted under the open rules keeps playing through reloads.
    let flowing = std::thread::spawn(move || {
        scenario::run_urls(
            "config/reload-flowing",
            &format!("rtmp://{addr}/live/main"),
            &format!("rtmp://{addr}/live/main"),
            "main",
            Publisher::Ffmpeg,
            Player::Ffprobe,
            None,
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        try_publish("config/open", &format!("rtmp://{addr}/live/a")),
        "open rules refused"
    );
    cfg.write(
        "max_connections = 100\n[paths.\"live/*\"]\npublish_user = \"u\"\npublish_pass = \"p\"\n",
    );
    server.signal("HUP");
    let reloaded = server.wait_for(Duration::from_secs(5), |_, err| {
        err.contains("configuration reloaded")
    });
    assert!(reloaded, "no reload line:\n{}", server.describe());
    assert!(
        !try_publish("config/new-rules-none", &format!("rtmp://{addr}/live/b")),
        "the new rules did not apply"
    );
    assert!(
        try_publish(
            "config/new-rules-right",
            &format!("rtmp://{addr}/live/b?user=u&pass=p")
        ),
        "right credentials refused"
    );
    // A bad file: refused with its error, the rules in force stay.
    cfg.write("max_connections = 100\n[paths.\"live/*\"]\npublish_user = \"u\"\n");
    server.signal("HUP");
    let refused = server.wait_for(Duration::from_secs(5), |_, err| {
        err.contains("reload refused")
    });
    assert!(refused, "no refusal line:\n{}", server.describe());
    assert!(
        server.stderr().contains(&format!("{}:2: ", cfg.path())),
        "{}",
        server.describe()
    );
    assert!(
        !try_publish("config/old-rules-none", &format!("rtmp://{addr}/live/c")),
        "the old rules were dropped"
    );
    assert!(try_publish(
        "config/old-rules-right",
        &format!("rtmp://{addr}/live/c?user=u&pass=p")
    ));
    let report = flowing.join().unwrap();
    report.assert_viewer_saw_everything();
    server.kill();
}
