//! The control API (`/v1/...`) and `/metrics` of the `arcly` binary,
//! checked against what real clients did (docs/api.md):
//!
//! - ffmpeg publishes over RTMP; two ffmpeg viewers play over RTMP, one
//!   over SRT, and HLS is requested over HTTP. `GET /v1/streams` names the
//!   publisher (rtmp, its address), the codecs with the picture size the
//!   encoder used, and the viewers per protocol; `GET /v1/sessions` lists
//!   each viewer.
//! - `DELETE /v1/sessions/{id}` kicks one RTMP viewer: its ffmpeg sees the
//!   connection close and exits, the other RTMP viewer keeps receiving.
//! - `/metrics` is parsed by a strict Prometheus text-format parser (HELP
//!   and TYPE before samples, no duplicate series, valid names, escapes and
//!   values, counters named `_total`) and agrees with the API; after the
//!   stream ends, the bytes the RTMP viewers' files hold match the
//!   delivered-bytes counter (payload plus FLV framing).
//! - Without the bearer token, or with a wrong one, every route answers 401;
//!   `docs/openapi.yaml` names only routes the server has.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use arcly_tests::binary::{arcly_bin, spawn, wait_http_addr, wait_rtmp_addr};
use arcly_tests::ffmpeg::{publish_command, PublishSpec};
use arcly_tests::http_client::{self, Response};
use arcly_tests::net::TempDir;
use arcly_tests::process::Proc;
use arcly_tests::srt::{wait_srt_addr, Caller};
use arcly_tests::{require_tools, Watchdog};
use serde_json::Value;

const TOKEN: &str = "s3cret-token";

fn call(http: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    http_client::request(
        http,
        &http.to_string(),
        method,
        path,
        &headers,
        None,
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e:?}"))
}

fn get_json(http: SocketAddr, path: &str) -> Value {
    let r = call(http, "GET", path, Some(TOKEN));
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.text()))
}

/// Polls `GET path` until `pred` holds (10 s), returning the last answer.
fn wait_json(http: SocketAddr, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = get_json(http, path);
        if pred(&v) {
            return v;
        }
        if Instant::now() > deadline {
            panic!("{what}: GET {path} never showed it; last answer {v:#}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stream_of<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v["streams"].as_array()?.iter().find(|s| s["key"] == key)
}

fn viewers(v: &Value, key: &str, protocol: &str) -> u64 {
    stream_of(v, key)
        .and_then(|s| s["viewers_by_protocol"][protocol].as_u64())
        .unwrap_or(0)
}

fn ffmpeg_copy(name: &str, url: &str, out: &std::path::Path, format: &str) -> Proc {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
        .args(["-rw_timeout", "8000000"])
        .args(["-i", url])
        .args(["-c", "copy", "-f", format, "-y"])
        .arg(out);
    Proc::spawn(name, &mut c)
}

fn file_len(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// A strict parser of the Prometheus text exposition format 0.0.4.
// ---------------------------------------------------------------------------

/// One series: metric name and sorted labels.
type Series = (String, BTreeMap<String, String>);

/// Parses `text`, panicking with the line on any violation of the format:
/// names `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`,
/// label values with only `\\`, `\"`, `\n` escapes, float values, one TYPE
/// and one HELP per family given before its samples, families contiguous,
/// no duplicate series, counters named `*_total`, a final newline.
fn parse_prometheus(text: &str) -> BTreeMap<Series, f64> {
    fn name_ok(n: &str, colon: bool) -> bool {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    assert!(
        text.ends_with('\n'),
        "the exposition must end with a newline"
    );
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeMap<String, ()> = BTreeMap::new();
    let mut closed: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kw = parts.next().unwrap_or("");
            let name = parts.next().unwrap_or("").to_owned();
            let arg = parts.next().unwrap_or("");
            match kw {
                "TYPE" | "HELP" => {
                    assert!(name_ok(&name, true), "bad metric name in `{line}`");
                    assert!(
                        !closed.contains(&name),
                        "`{line}`: family {name} is not contiguous"
                    );
                    if current.as_deref() != Some(name.as_str()) {
                        if let Some(c) = current.take() {
                            closed.push(c);
                        }
                        current = Some(name.clone());
                    }
                    if kw == "TYPE" {
                        assert!(
                            ["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg),
                            "bad type in `{line}`"
                        );
                        assert!(
                            types.insert(name.clone(), arg.to_owned()).is_none(),
                            "second TYPE: `{line}`"
                        );
                        if arg == "counter" {
                            assert!(name.ends_with("_total"), "counter without _total: `{line}`");
                        }
                    } else {
                        assert!(helps.insert(name, ()).is_none(), "second HELP: `{line}`");
                    }
                }
                _ => {} // other comments are allowed
            }
            continue;
        }
        assert!(!line.starts_with('#'), "comment without a space: `{line}`");
        // name, optional {labels}, value, optional timestamp.
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: `{line}`"));
        let name = &line[..name_end];
        assert!(name_ok(name, true), "bad metric name: `{line}`");
        assert_eq!(
            current.as_deref(),
            Some(name),
            "sample outside its family's TYPE/HELP block: `{line}`"
        );
        assert!(types.contains_key(name), "sample before TYPE: `{line}`");
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end;
            loop {
                // label name
                let start = chars.peek().map(|(i, _)| *i).unwrap();
                if body[start..].starts_with('}') {
                    end = start + 1;
                    break;
                }
                let eq = body[start..]
                    .find('=')
                    .unwrap_or_else(|| panic!("label without `=`: `{line}`"));
                let lname = &body[start..start + eq];
                assert!(name_ok(lname, false), "bad label name `{lname}`: `{line}`");
                while chars.peek().is_some_and(|(i, _)| *i < start + eq + 1) {
                    chars.next();
                }
                assert_eq!(
                    chars.next().map(|c| c.1),
                    Some('"'),
                    "unquoted value: `{line}`"
                );
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            other => panic!("bad escape {other:?}: `{line}`"),
                        },
                        Some((_, '"')) => break,
                        Some((_, '\n')) | None => panic!("unterminated label value: `{line}`"),
                        Some((_, c)) => value.push(c),
                    }
                }
                assert!(
                    labels.insert(lname.to_owned(), value).is_none(),
                    "duplicate label `{lname}`: `{line}`"
                );
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((i, '}')) => {
                        end = i + 1;
                        break;
                    }
                    other => panic!("expected `,` or `}}`, got {other:?}: `{line}`"),
                }
            }
            rest = &body[end..];
        }
        let rest = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value: `{line}`"));
        let mut fields = rest.split(' ');
        let value = fields.next().unwrap();
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value `{v}`: `{line}`")),
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .unwrap_or_else(|_| panic!("bad timestamp: `{line}`"));
        }
        assert!(fields.next().is_none(), "trailing fields: `{line}`");
        let key = (name.to_owned(), labels);
        assert!(
            out.insert(key.clone(), v).is_none(),
            "duplicate series {key:?}"
        );
    }
    out
}

fn metric(m: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    m.get(&(name.to_owned(), labels)).copied()
}

fn scrape(http: SocketAddr) -> BTreeMap<Series, f64> {
    let r = call(http, "GET", "/metrics", Some(TOKEN));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.header("content-type")
    );
    parse_prometheus(&r.text())
}

#[test]
fn the_prometheus_parser_is_strict() {
    let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{s=\"q\\\"\\\\\\n\"} 1\n";
    let m = parse_prometheus(ok);
    assert_eq!(metric(&m, "a_total", &[("s", "q\"\\\n")]), Some(1.0));
    for bad in [
        "a 1\n",                                                  // no TYPE
        "# TYPE a gauge\na{s=\"x\\t\"} 1\n",                      // bad escape
        "# TYPE a gauge\na{s=\"x\"} 1\na{s=\"x\"} 2\n",           // duplicate series
        "# TYPE a counter\na 1\n",                                // counter without _total
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n# HELP a x\n", // not contiguous
        "# TYPE a gauge\na one\n",                                // bad value
        "# TYPE a gauge\na{1s=\"x\"} 1\n",                        // bad label name
        "# TYPE a gauge\na 1",                                    // no final newline
    ] {
        assert!(
            std::panic::catch_unwind(|| parse_prometheus(bad)).is_err(),
            "accepted: {bad:?}"
        );
    }
}

#[test]
fn openapi_names_only_routes_the_server_has() {
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml"))
            .expect("docs/openapi.yaml");
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md"))
        .expect("docs/api.md");
    // Paths are the keys indented by two spaces under `paths:`.
    let paths: Vec<&str> = spec
        .lines()
        .skip_while(|l| l.trim_end() != "paths:")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter_map(|l| l.strip_prefix("  ")?.strip_suffix(':'))
        .filter(|l| l.starts_with('/'))
        .collect();
    let expected = [
        "/v1/streams",
        "/v1/streams/{app}/{name}",
        "/v1/sessions",
        "/v1/sessions/{id}",
        "/v1/publishers",
        "/v1/publishers/{id}",
        "/v1/server",
        "/v1/config/reload",
        "/metrics",
    ];
    assert_eq!(paths, expected, "docs/openapi.yaml paths");
    for p in expected {
        assert!(doc.contains(p), "docs/api.md does not document {p}");
    }
}

#[test]
fn api_and_metrics_match_what_the_clients_did() {
    let test = "api/clients";
    let Some(bin) = arcly_bin(test) else {
        return;
    };
    if !require_tools(test, &["ffmpeg"]) {
        return;
    }
    let _watchdog = Watchdog::new(test, Duration::from_secs(90));
    let dir = TempDir::new("api");
    let mut server = spawn(
        &bin,
        &[
            "--rtmp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--rtsp",
            "off",
            "--srt",
            "127.0.0.1:0",
            "--api-token",
            TOKEN,
        ],
    );
    let rtmp = wait_rtmp_addr(&mut server, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no RTMP banner:\n{}", server.describe()));
    let http = wait_http_addr(&mut server, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no HTTP banner:\n{}", server.describe()));
    let srt = wait_srt_addr(&mut server, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no SRT banner:\n{}", server.describe()));

    // Auth: every route refuses a missing or wrong token.
    for (method, path) in [
        ("GET", "/v1/streams"),
        ("GET", "/v1/sessions"),
        ("DELETE", "/v1/sessions/1"),
        ("GET", "/v1/server"),
        ("POST", "/v1/config/reload"),
        ("GET", "/metrics"),
    ] {
        for token in [None, Some("wrong")] {
            let r = call(http, method, path, token);
            assert_eq!(
                r.status,
                401,
                "{method} {path} with {token:?}: {}",
                r.text()
            );
            assert!(r.header("www-authenticate").is_some());
        }
    }
    let server_info = get_json(http, "/v1/server");
    assert_eq!(server_info["version"], env!("CARGO_PKG_VERSION"));
    assert!(server_info["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["protocol"] == "http" && l["address"] == http.to_string()));
    assert_eq!(
        call(http, "POST", "/v1/config/reload", Some(TOKEN)).status,
        501
    );

    let spec = PublishSpec {
        seconds: 16,
        gop: 25,
        width: 320,
        height: 240,
        ..PublishSpec::default()
    };
    let rtmp_url = format!("rtmp://{rtmp}/live/cam");
    let mut publisher = Proc::spawn("publisher", &mut publish_command(&rtmp_url, &spec));
    let streams = wait_json(http, "/v1/streams", "the published stream", |v| {
        stream_of(v, "live/cam")
            .is_some_and(|s| s["codecs"].as_array().is_some_and(|c| c.len() == 2))
    });
    let s = stream_of(&streams, "live/cam").unwrap();
    assert_eq!(s["publisher"]["protocol"], "rtmp", "{s:#}");
    assert!(s["publisher"]["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let codecs = s["codecs"].as_array().unwrap();
    assert_eq!(codecs[0]["codec"], "H264");
    assert_eq!(
        (codecs[0]["width"].as_u64(), codecs[0]["height"].as_u64()),
        (Some(320), Some(240)),
        "{s:#}"
    );
    assert_eq!(codecs[1]["codec"], "AAC");

    let a_path = dir.path().join("a.flv");
    let b_path = dir.path().join("b.flv");
    let c_path = dir.path().join("c.ts");
    let mut a = ffmpeg_copy("viewer-a", &rtmp_url, &a_path, "flv");
    let mut b = ffmpeg_copy("viewer-b", &rtmp_url, &b_path, "flv");
    let mut c = ffmpeg_copy(
        "viewer-srt",
        &Caller::read("cam", 120).ffmpeg_url(srt),
        &c_path,
        "mpegts",
    );
    let hls = http_client::get(
        &format!("http://{http}/live/cam/ts/index.m3u8"),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(hls.status, 200, "{}", hls.text());

    let streams = wait_json(
        http,
        "/v1/streams",
        "2 RTMP, 1 SRT and the HLS viewer",
        |v| {
            viewers(v, "live/cam", "rtmp") == 2
                && viewers(v, "live/cam", "srt") == 1
                && viewers(v, "live/cam", "hls") == 1
        },
    );
    assert_eq!(stream_of(&streams, "live/cam").unwrap()["viewers"], 4);
    let sessions = get_json(http, "/v1/sessions");
    let rtmp_viewers: Vec<&Value> = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["protocol"] == "rtmp" && s["role"] == "viewer")
        .collect();
    assert_eq!(rtmp_viewers.len(), 2, "{sessions:#}");
    let publishers = get_json(http, "/v1/publishers");
    assert_eq!(publishers["sessions"].as_array().unwrap().len(), 1);

    // Kick one RTMP viewer: exactly one ffmpeg sees its connection close.
    let kicked = rtmp_viewers[0]["id"].as_u64().unwrap();
    assert_eq!(
        call(
            http,
            "DELETE",
            &format!("/v1/sessions/{kicked}"),
            Some(TOKEN)
        )
        .status,
        204
    );
    assert_eq!(
        call(http, "DELETE", "/v1/sessions/999999", Some(TOKEN)).status,
        404
    );
    let deadline = Instant::now() + Duration::from_secs(8);
    let (gone, stays) = loop {
        match (a.try_status(), b.try_status()) {
            (Some(_), None) => break (&mut a, &mut b),
            (None, Some(_)) => break (&mut b, &mut a),
            (Some(_), Some(_)) => panic!(
                "both RTMP viewers ended:\n{}\n{}",
                a.describe(),
                b.describe()
            ),
            (None, None) if Instant::now() > deadline => {
                panic!("no RTMP viewer saw the kick:\n{}", server.describe())
            }
            (None, None) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert!(
        server.stderr().contains("kicked by an operator"),
        "{}",
        server.describe()
    );
    let _ = gone;
    // The other RTMP viewer goes on: its session keeps delivering.
    let other = rtmp_viewers[1]["id"].as_u64().unwrap();
    let delivered = |id: u64| get_json(http, &format!("/v1/sessions/{id}"))["bytes_out"].as_u64();
    let before = delivered(other).expect("the other RTMP viewer is still listed");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        delivered(other).unwrap() > before,
        "the other RTMP viewer stopped receiving after the kick"
    );
    assert!(stays.try_status().is_none(), "{}", stays.describe());
    assert_eq!(
        call(http, "GET", &format!("/v1/sessions/{kicked}"), Some(TOKEN)).status,
        404,
        "the kicked session left the list"
    );

    let streams = wait_json(http, "/v1/streams", "one RTMP viewer left", |v| {
        viewers(v, "live/cam", "rtmp") == 1
    });
    assert_eq!(viewers(&streams, "live/cam", "srt"), 1);

    let m = scrape(http);
    let stream = [("stream", "live/cam"), ("protocol", "rtmp")];
    assert_eq!(metric(&m, "arcly_stream_viewers", &stream), Some(1.0));
    assert_eq!(
        metric(
            &m,
            "arcly_stream_viewers",
            &[("stream", "live/cam"), ("protocol", "srt")]
        ),
        Some(1.0)
    );
    assert_eq!(metric(&m, "arcly_streams", &[]), Some(1.0));
    assert_eq!(
        metric(
            &m,
            "arcly_sessions_started_total",
            &[("protocol", "rtmp"), ("role", "viewer")]
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &m,
            "arcly_sessions",
            &[("protocol", "rtmp"), ("role", "viewer")]
        ),
        Some(1.0)
    );
    assert!(metric(&m, "arcly_hls_requests_total", &[]).unwrap() >= 1.0);
    let api_bytes_in = stream_of(&get_json(http, "/v1/streams"), "live/cam").unwrap()["bytes_in"]
        .as_u64()
        .unwrap() as f64;
    let metric_bytes_in = metric(&m, "arcly_stream_bytes_in_total", &stream).unwrap();
    assert!(
        metric_bytes_in > 0.0 && metric_bytes_in <= api_bytes_in,
        "scrape {metric_bytes_in}, API read after it {api_bytes_in}"
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(metric(&m, name, &[]).is_some_and(|v| v > 0.0), "{name}");
    }

    // The stream ends: the viewers finish their files; the delivered-bytes
    // counter (payload) matches what the RTMP viewers wrote (payload plus
    // FLV framing: 11-byte tag headers, 4-byte back pointers and the
    // 5-/2-byte AVC/AAC headers, ~10% at this bitrate).
    let (status, _) = publisher.wait_or_stop(Duration::from_secs(30));
    assert!(status.is_some());
    for p in [&mut a, &mut b, &mut c] {
        // They end with the stream (RTMP onStatus Play.Stop, SRT close).
        let (status, stopped) = p.wait_or_stop(Duration::from_secs(10));
        assert!(status.is_some() && !stopped, "{}", p.describe());
    }
    let m = scrape(http);
    let delivered = metric(
        &m,
        "arcly_protocol_bytes_total",
        &[("protocol", "rtmp"), ("role", "viewer")],
    )
    .unwrap();
    let written = (file_len(&a_path) + file_len(&b_path)) as f64;
    assert!(
        written >= delivered && written <= delivered * 1.3 + 8192.0,
        "RTMP viewers wrote {written} bytes; arcly counted {delivered} payload bytes delivered"
    );
    let srt_delivered = metric(
        &m,
        "arcly_protocol_bytes_total",
        &[("protocol", "srt"), ("role", "viewer")],
    )
    .unwrap();
    let ts = file_len(&c_path) as f64;
    assert!(
        ts >= srt_delivered && ts <= srt_delivered * 2.0 + 65536.0,
        "SRT viewer wrote {ts} TS bytes; arcly counted {srt_delivered} payload bytes delivered"
    );
    assert_eq!(metric(&m, "arcly_streams", &[]), Some(0.0));
    assert_eq!(
        metric(
            &m,
            "arcly_sessions",
            &[("protocol", "rtmp"), ("role", "viewer")]
        ),
        Some(0.0)
    );
    server.stop();
}
