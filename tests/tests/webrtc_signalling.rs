//! WHIP (RFC 9725) / WHEP (draft-ietf-wish-whep) signalling against the real
//! `arcly` binary with a plain HTTP client: every status code of
//! docs/webrtc.md, CORS headers, `Location`/`ETag`, `DELETE` then 404, and
//! the session cap answered 503 + `Retry-After`. Offers are made by a str0m
//! client (the SDP a browser would send).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arcly_tests::binary;
use arcly_tests::http_client::{request, Response};
use arcly_tests::process::Proc;
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};

const T: Duration = Duration::from_secs(10);

/// A browser-like offer: recvonly (WHEP) or sendonly (WHIP) audio + video.
fn offer(direction: Direction) -> String {
    let mut client = Rtc::new(Instant::now());
    client.add_local_candidate(Candidate::host("127.0.0.1:40000".parse().unwrap(), "udp").unwrap());
    let mut change = client.sdp_api();
    change.add_media(MediaKind::Audio, direction, None, None, None);
    change.add_media(MediaKind::Video, direction, None, None, None);
    let (offer, _pending) = change.apply().unwrap();
    offer.to_sdp_string()
}

/// Waits for the `WebRTC listening on ADDR/udp` banner line.
fn wait_webrtc_addr(proc: &mut Proc) -> SocketAddr {
    let mut found = None;
    proc.wait_for(T, |out, _| {
        found = out.lines().find_map(|l| {
            l.split("WebRTC listening on ")
                .nth(1)
                .and_then(|a| a.trim().strip_suffix("/udp"))
                .and_then(|a| a.parse().ok())
        });
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no WebRTC banner:\n{}", proc.describe()))
}

struct Server {
    proc: Proc,
    http: SocketAddr,
    udp: SocketAddr,
}

fn start(test: &str, extra: &[&str]) -> Option<Server> {
    let bin = binary::arcly_bin(test)?;
    let mut args = vec![
        "--rtmp",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--rtsp",
        "off",
        "--srt",
        "off",
        "--webrtc",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut proc = binary::spawn(&bin, &args);
    let udp = wait_webrtc_addr(&mut proc);
    let http = binary::wait_http_addr(&mut proc, T)
        .unwrap_or_else(|| panic!("no HTTP banner:\n{}", proc.describe()));
    Some(Server { proc, http, udp })
}

impl Server {
    fn req(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Response {
        request(
            self.http,
            &self.http.to_string(),
            method,
            target,
            headers,
            body,
            T,
        )
        .unwrap_or_else(|e| panic!("{method} {target}: {e}\n{}", self.proc.describe()))
    }

    fn post(&self, target: &str, ctype: &str, body: &str) -> Response {
        self.req("POST", target, &[], Some((ctype, body.as_bytes())))
    }
}

fn assert_status(resp: &Response, status: u16, what: &str) {
    assert_eq!(
        resp.status,
        status,
        "{what}: got {} {:?}\n{}",
        resp.status,
        resp.headers,
        resp.text()
    );
}

/// A 201's `Location`: `/live/<stream>/<kind>/<32 hex>`.
fn location(resp: &Response, prefix: &str) -> String {
    let loc = resp.header("location").expect("Location").to_owned();
    let id = loc
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("Location {loc} not under {prefix}"));
    assert_eq!(id.len(), 32, "{loc}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{loc}");
    loc
}

#[test]
fn whip_whep_signalling_status_codes() {
    let Some(s) = start("webrtc_signalling", &[]) else {
        return;
    };
    let whep_offer = offer(Direction::RecvOnly);
    let whip_offer = offer(Direction::SendOnly);

    // OPTIONS: CORS preflight with Accept-Post.
    let r = s.req("OPTIONS", "/live/cam/whip", &[], None);
    assert_status(&r, 204, "OPTIONS whip");
    assert_eq!(r.header("accept-post"), Some("application/sdp"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let expose = r.header("access-control-expose-headers").unwrap_or("");
    for h in ["Location", "ETag", "Link"] {
        assert!(expose.contains(h), "expose {expose} lacks {h}");
    }
    let methods = r.header("access-control-allow-methods").unwrap_or("");
    assert!(methods.contains("POST"), "{methods}");

    // 415, 400, 422 before anything is taken from the engine.
    let r = s.post("/live/cam/whip", "text/plain", &whip_offer);
    assert_status(&r, 415, "text/plain offer");
    let r = s.post("/live/cam/whip", "application/sdp", "hello");
    assert_status(&r, 400, "not SDP");
    let r = s.post(
        "/live/cam/whip",
        "application/sdp",
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n",
    );
    assert_status(&r, 400, "SDP without o=, s=, fingerprint");
    let vp8_only = whip_offer
        .lines()
        .filter(|l| !l.to_ascii_lowercase().contains("h264"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let r = s.post("/live/cam/whip", "application/sdp", &vp8_only);
    assert_status(&r, 422, "video m-line without H.264");
    let video_section = &whip_offer[whip_offer.find("m=video").unwrap()..];
    let two_videos = format!("{whip_offer}{video_section}");
    let r = s.post("/live/cam/whip", "application/sdp", &two_videos);
    assert_status(&r, 422, "two video tracks");
    assert!(r.text().contains("too many tracks"), "{}", r.text());

    // 413 by Content-Length.
    let big = "a".repeat(70 * 1024);
    let r = s.post("/live/cam/whip", "application/sdp", &big);
    assert_status(&r, 413, "70 KiB offer");

    // WHEP of a stream that is not live.
    let r = s.post("/live/cam/whep", "application/sdp", &whep_offer);
    assert_status(&r, 404, "WHEP before publish");

    // WHIP: 201 with Location, ETag and an answer naming the server's port.
    let r = s.post("/live/cam/whip", "application/sdp", &whip_offer);
    assert_status(&r, 201, "WHIP");
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    let whip_loc = location(&r, "/live/cam/whip/");
    let etag = r.header("etag").expect("ETag").to_owned();
    let answer = r.text();
    assert!(answer.contains("a=ice-lite"), "{answer}");
    let cand = format!("127.0.0.1 {} typ host", s.udp.port());
    assert!(answer.contains(&cand), "answer lacks {cand}:\n{answer}");
    let expose = r.header("access-control-expose-headers").unwrap_or("");
    assert!(
        expose.contains("Location") && expose.contains("ETag"),
        "{expose}"
    );

    // A second publisher of a live key.
    let r = s.post("/live/cam/whip", "application/sdp", &whip_offer);
    assert_status(&r, 409, "second WHIP publisher");

    // WHEP of the live stream.
    let r = s.post("/live/cam/whep", "application/sdp", &whep_offer);
    assert_status(&r, 201, "WHEP of a live stream");
    let whep_loc = location(&r, "/live/cam/whep/");
    let whep_etag = r.header("etag").expect("ETag").to_owned();
    assert_ne!(whep_loc, whip_loc);

    // PATCH: content type, If-Match, trickle, ICE restart.
    let frag = "a=ice-ufrag:zzzz\r\na=ice-pwd:yyyyyyyyyyyyyyyyyyyyyyyy\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2113937151 127.0.0.1 40001 typ host\r\n";
    let trickle_ufrag = whep_offer
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .trim()
        .to_owned();
    let trickle = format!(
        "a=ice-ufrag:{trickle_ufrag}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2113937151 127.0.0.1 40001 typ host\r\n"
    );
    let sdpfrag = "application/trickle-ice-sdpfrag";
    let r = s.req(
        "PATCH",
        &whep_loc,
        &[],
        Some(("application/sdp", trickle.as_bytes())),
    );
    assert_status(&r, 415, "PATCH with application/sdp");
    let r = s.req(
        "PATCH",
        &whep_loc,
        &[("If-Match", "\"stale\"")],
        Some((sdpfrag, trickle.as_bytes())),
    );
    assert_status(&r, 412, "PATCH with a stale If-Match");
    let r = s.req(
        "PATCH",
        &whep_loc,
        &[("If-Match", &whep_etag)],
        Some((sdpfrag, trickle.as_bytes())),
    );
    assert_status(&r, 204, "trickle PATCH");
    let r = s.req(
        "PATCH",
        &whep_loc,
        &[("If-Match", &whep_etag)],
        Some((sdpfrag, frag.as_bytes())),
    );
    assert_status(&r, 422, "ICE restart PATCH");
    let r = s.req("OPTIONS", &whep_loc, &[], None);
    assert_status(&r, 204, "OPTIONS on a session");
    assert!(r
        .header("access-control-allow-methods")
        .unwrap_or("")
        .contains("DELETE"));

    // A session id that does not exist, and one under another stream.
    let bogus = format!("/live/cam/whep/{}", "0".repeat(32));
    let r = s.req("DELETE", &bogus, &[], None);
    assert_status(&r, 404, "DELETE of an unknown session");
    let other = whep_loc.replace("/live/cam/", "/live/other/");
    let r = s.req("DELETE", &other, &[], None);
    assert_status(&r, 404, "DELETE of a session under another stream");

    // DELETE the publisher: 200, the stream is gone at once (WHEP 404,
    // a new WHIP is not a conflict), and the session is 404 afterwards.
    let r = s.req("DELETE", &whip_loc, &[("If-Match", &etag)], None);
    assert_status(&r, 200, "DELETE WHIP");
    let r = s.req("DELETE", &whip_loc, &[], None);
    assert_status(&r, 404, "second DELETE");
    let r = s.req("PATCH", &whip_loc, &[], Some((sdpfrag, trickle.as_bytes())));
    assert_status(&r, 404, "PATCH after DELETE");
    let r = s.post("/live/cam/whep", "application/sdp", &whep_offer);
    assert_status(&r, 404, "WHEP after the publisher was deleted");
    let r = s.post("/live/cam/whip", "application/sdp", &whip_offer);
    assert_status(&r, 201, "WHIP again after DELETE");
    let r = s.req("DELETE", &whep_loc, &[], None);
    assert!(
        r.status == 200 || r.status == 404,
        "the viewer's session ended with its stream or is deleted now: {}",
        r.status
    );
}

#[test]
fn session_cap_answers_503_with_retry_after() {
    let Some(s) = start("webrtc_signalling", &["--webrtc-max-sessions", "200"]) else {
        return;
    };
    let whip_offer = offer(Direction::SendOnly);
    let whep_offer = offer(Direction::RecvOnly);
    let r = s.post("/live/cap/whip", "application/sdp", &whip_offer);
    assert_status(&r, 201, "WHIP");
    let started = Instant::now();
    let mut locations = Vec::new();
    for i in 1..200 {
        let r = s.post("/live/cap/whep", "application/sdp", &whep_offer);
        assert_status(&r, 201, &format!("WHEP session {i}"));
        locations.push(r.header("location").unwrap().to_owned());
    }
    eprintln!("200 sessions in {:?}", started.elapsed());
    let r = s.post("/live/cap/whep", "application/sdp", &whep_offer);
    assert_status(&r, 503, "session 201");
    assert_eq!(r.header("retry-after"), Some("1"));
    // A DELETE frees a slot.
    let r = s.req("DELETE", &locations[0], &[], None);
    assert_status(&r, 200, "DELETE");
    let r = s.post("/live/cap/whep", "application/sdp", &whep_offer);
    assert_status(&r, 201, "a session after one was deleted");
}
