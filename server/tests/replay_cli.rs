//! `arcly replay`: the subcommand on the real binary, over the committed
//! capture fixtures (`tests/fixtures/`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;

fn fixture(name: &str) -> String {
    format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn arcly(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_arcly"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run arcly");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The value of `"key":` in a JSON line (numbers, booleans and strings
/// without escapes are all the test needs).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let rest = &line[line.find(&pat)? + pat.len()..];
    let end = if let Some(s) = rest.strip_prefix('"') {
        return s.split('"').next();
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(&rest[..end])
}

#[test]
fn json_lines_per_event_with_kinds_codecs_and_timestamps() {
    let path = fixture("ffmpeg_publish_arcly.pcap");
    let (ok, out, err) = arcly(&["replay", &path, "--json"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.iter().all(|l| l.starts_with('{') && l.ends_with('}')));
    let kind = |k: &str| lines.iter().filter(|l| field(l, "kind") == Some(k)).count();
    assert_eq!(kind("publish"), 1);
    assert_eq!(kind("end"), 1);
    // 45 video + 131 audio frames and one config of each.
    assert_eq!(kind("frame"), 45 + 131 + 2);
    let frames: Vec<&&str> = lines
        .iter()
        .filter(|l| field(l, "kind") == Some("frame"))
        .collect();
    let h264 = frames
        .iter()
        .filter(|l| field(l, "codec") == Some("H264") && field(l, "config") == Some("false"))
        .count();
    assert_eq!(h264, 45);
    let keys: Vec<&str> = frames
        .iter()
        .filter(|l| field(l, "codec") == Some("H264") && field(l, "keyframe") == Some("true"))
        .map(|l| field(l, "dts").unwrap())
        .collect();
    assert_eq!(keys, ["23", "1023", "2023"]);
    assert!(frames.iter().all(
        |l| field(l, "pts").is_some() && field(l, "len").unwrap().parse::<usize>().unwrap() > 0
    ));
    let publish = lines
        .iter()
        .find(|l| field(l, "kind") == Some("publish"))
        .unwrap();
    assert_eq!(field(publish, "stream"), Some("fixture"));
    // Deterministic: a second run prints the very same bytes.
    let (_, again, _) = arcly(&["replay", &path, "--json"]);
    assert_eq!(out, again);
}

#[test]
fn summary_port_filter_and_errors() {
    let path = fixture("arcly_play_ffmpeg.pcapng");
    let (ok, out, err) = arcly(&["replay", &path]);
    assert!(ok, "{err}");
    assert!(out.contains("tcp flows: 2"), "{out}");
    assert!(out.contains("publish live/fixture"), "{out}");
    assert!(out.contains("play live/fixture"), "{out}");
    assert!(
        out.contains("H264: 41 frames, 1 configs, 3 keyframes, dts 1023..3690 ms"),
        "{out}"
    );
    assert!(
        out.contains("66442 of 66442 captured server bytes reproduced"),
        "{out}"
    );
    // No connection on that port: nothing replayed.
    let (ok, out, _) = arcly(&["replay", &path, "--port", "1"]);
    assert!(ok);
    assert!(out.contains("tcp flows: 0"), "{out}");
    // A missing file and a file that is no capture fail with a message.
    let (ok, _, err) = arcly(&["replay", "/nonexistent.pcap"]);
    assert!(!ok && err.contains("cannot read"), "{err}");
    let (ok, _, err) = arcly(&["replay", &fixture("README.md")]);
    assert!(!ok && err.contains("not a pcap"), "{err}");
}

#[test]
fn srt_capture_replayed_by_shape_and_by_flag() {
    let path = fixture("ffmpeg_publish_arcly_srt.pcap");
    // Port 19364, not 8890: recognised by the handshake-shaped datagrams.
    let (ok, guessed, err) = arcly(&["replay", &path]);
    assert!(ok, "{err}");
    assert!(
        guessed.contains(
            "handshake: stream id \"publish:live/fixture\", latency 120 ms, not encrypted"
        ),
        "{guessed}"
    );
    assert!(
        guessed.contains("H264: 30 frames, 1 configs, 2 keyframes"),
        "{guessed}"
    );
    assert!(!guessed.contains("not replayed"), "{guessed}");
    let (ok, forced, err) = arcly(&["replay", &path, "--protocol", "srt", "--port", "19364"]);
    assert!(ok, "{err}");
    assert_eq!(forced, guessed);
    let (ok, json, err) = arcly(&["replay", &path, "--protocol", "srt", "--json"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = json.lines().collect();
    let hs: Vec<&&str> = lines
        .iter()
        .filter(|l| field(l, "kind") == Some("handshake"))
        .collect();
    assert_eq!(hs.len(), 1);
    assert_eq!(field(hs[0], "stream_id"), Some("publish:live/fixture"));
    assert_eq!(field(hs[0], "encrypted"), Some("false"));
    let frames = lines
        .iter()
        .filter(|l| field(l, "kind") == Some("frame"))
        .count();
    assert_eq!(frames, 30 + 80 + 2);
    let stats = lines.last().copied().unwrap_or_default();
    assert_eq!(field(stats, "kind"), Some("stats"));
    assert_eq!(field(stats, "delivered_bytes"), Some("53204"));
    // Deterministic: a second run prints the same bytes.
    let (_, again, _) = arcly(&["replay", &path, "--protocol", "srt", "--json"]);
    assert_eq!(again, json);
    // `--protocol rtmp` leaves the UDP flow listed, not replayed.
    let (ok, rtmp, _) = arcly(&["replay", &path, "--protocol", "rtmp"]);
    assert!(ok);
    assert!(rtmp.contains("(not replayed)"), "{rtmp}");
}

#[test]
fn srt_encrypted_capture_needs_the_passphrase() {
    let path = fixture("ffmpeg_publish_arcly_srt_aes.pcap");
    let (ok, out, err) = arcly(&["replay", &path, "--passphrase", "fixture-passphrase"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("stream id \"publish:live/secret\", latency 120 ms, encrypted"),
        "{out}"
    );
    assert!(
        out.contains("H264: 15 frames, 1 configs, 1 keyframes"),
        "{out}"
    );
    let (ok, out, err) = arcly(&["replay", &path]);
    assert!(ok, "{err}");
    assert!(out.contains("the replay needs its passphrase"), "{out}");
    assert!(!out.contains("H264:"), "{out}");
}

/// The RTSP fixtures through `arcly replay`: recognised as RTSP by the
/// request line (ports 19366/19367, not 554/8554), the server's bytes
/// reproduced with the seed learned from its `Session` header, and the
/// published frames counted per codec.
#[test]
fn rtsp_captures_replayed_by_the_request_line() {
    for (name, stream, aac) in [
        ("ffmpeg_publish_arcly_rtsp.pcapng", "live/fixture", 125),
        ("gst_publish_arcly_rtsp.pcapng", "live/gst", 131),
    ] {
        let (ok, out, err) = arcly(&["replay", &fixture(name)]);
        assert!(ok, "{name}: {err}");
        assert!(out.contains("  rtsp  "), "{name}: {out}");
        assert!(out.contains(&format!("publish {stream}")), "{name}: {out}");
        assert!(
            out.contains("(learned from the Session header)"),
            "{name}: {out}"
        );
        let (bytes, of) = out
            .lines()
            .find_map(|l| {
                let (_, rest) = l.split_once("machine output ")?;
                let (_, rest) = rest.split_once(" bytes, ")?;
                let (n, rest) = rest.split_once(" of ")?;
                Some((n.to_owned(), rest.split(' ').next()?.to_owned()))
            })
            .expect("a machine output line");
        assert_eq!(bytes, of, "{name}: every captured server byte reproduced");
        assert!(
            out.contains("H264: 45 frames, 1 configs, 3 keyframes"),
            "{name}: {out}"
        );
        assert!(
            out.contains(&format!("AAC: {aac} frames, 1 configs")),
            "{name}: {out}"
        );
        let (ok, json, _) = arcly(&["replay", &fixture(name), "--protocol", "rtsp", "--json"]);
        assert!(ok);
        assert_eq!(
            json.lines()
                .filter(|l| l.contains("\"kind\":\"frame\"") && l.contains("\"codec\":\"H264\""))
                .count(),
            46,
            "{name}: 45 pictures and the config"
        );
    }
}
