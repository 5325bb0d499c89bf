//! The sans-IO HTTP/1.1 server machine (`arcly::http::h1`): keep-alive,
//! pipelining answered in order, HEAD, bodies by Content-Length split
//! anywhere, every refusal (400, 411, 413, 431, 408) with the connection
//! closed after it; property tests: any split of any pipelined sequence
//! of requests yields the same requests in order, and arbitrary bytes never
//! panic nor grow the buffer past its bound.
#![cfg(feature = "http")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use arcly::http::h1::{H1Config, H1Connection, H1Error};
use arcly::http::{Admit, HttpConfig, HttpRouter, Routed};
use arcly::{Engine, Instant};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use proptest::prelude::*;

const T0: Instant = Instant::from_millis(1_000);

fn conn() -> H1Connection {
    H1Connection::new(H1Config::default(), T0)
}

fn read_all(c: &mut H1Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = c.poll_transmit() {
        out.extend_from_slice(&b);
    }
    out
}

fn admit_limit(limit: usize) -> impl FnMut(&Request<()>) -> Admit {
    move |_| Admit::Read { limit }
}

fn ok(body: &'static str) -> Response<Bytes> {
    Response::new(Bytes::from_static(body.as_bytes()))
}

/// Status code, headers (lowercase) and body of one response.
type Parsed = (u16, Vec<(String, String)>, Vec<u8>);

/// Each response in `wire`.
fn parse_responses(mut wire: &[u8]) -> Vec<Parsed> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut fields);
        let n = match resp.parse(wire).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial response head"),
        };
        let code = resp.code.unwrap();
        let headers: Vec<(String, String)> = resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8(h.value.to_vec()).unwrap(),
                )
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        wire = &wire[n..];
        // Responses to HEAD and 1xx/204 have no body on the wire; the tests
        // below only send those where they say so.
        let take = if code == 100 || code == 204 { 0 } else { len };
        let take = take.min(wire.len());
        out.push((code, headers, wire[..take].to_vec()));
        wire = &wire[take..];
    }
    out
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn keep_alive_and_pipelining_in_order() {
    let mut c = conn();
    let mut ext = http::Extensions::new();
    ext.insert(7u32);
    c.set_request_extensions(ext);
    c.handle_input(
        T0,
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcHEAD /c HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let first = c.poll_request(admit_limit(16)).expect("first request");
    assert_eq!(first.uri().path(), "/a");
    assert_eq!(
        first.extensions().get::<u32>(),
        Some(&7),
        "adapter extensions"
    );
    // The second is not handed out before the first is answered.
    assert!(c.poll_request(admit_limit(16)).is_none());
    assert!(!c.wants_input(), "pipelined bytes buffered: stop reading");
    c.send_response(T0, ok("one"));
    let second = c.poll_request(admit_limit(16)).expect("second request");
    assert_eq!(second.method(), Method::POST);
    assert_eq!(second.body().as_ref(), b"abc");
    c.send_response(T0, ok("two!"));
    let third = c.poll_request(admit_limit(16)).expect("third request");
    assert_eq!(third.method(), Method::HEAD);
    c.send_response(T0, ok("three"));
    assert!(!c.is_closed(), "keep-alive");
    assert!(c.wants_input());
    let wire = read_all(&mut c);
    let text = String::from_utf8_lossy(&wire);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.ends_with("content-length: 5\r\n\r\n"),
        "HEAD: length, no body: {text}"
    );
    let rs = parse_responses(&wire[..wire.len()]);
    assert_eq!(rs[0].2, b"one");
    assert_eq!(rs[1].2, b"two!");
    assert_eq!(c.requests(), 3);
    // EOF between requests: a clean close.
    c.handle_input(T0, &[]);
    assert!(c.poll_request(admit_limit(0)).is_none());
    assert!(c.is_closed());
    assert_eq!(c.error(), None);
}

#[test]
fn body_split_anywhere_and_expect_continue() {
    let mut c = conn();
    c.handle_input(
        T0,
        b"PUT /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhe",
    );
    assert!(c.poll_request(admit_limit(5)).is_none());
    assert_eq!(read_all(&mut c), b"HTTP/1.1 100 Continue\r\n\r\n");
    c.handle_input(T0, b"l");
    assert!(c.poll_request(admit_limit(5)).is_none());
    c.handle_input(T0, b"lo");
    let r = c.poll_request(admit_limit(5)).unwrap();
    assert_eq!(r.body().as_ref(), b"hello");
}

fn refused(input: &[u8], limit: usize) -> (H1Connection, u16) {
    let mut c = conn();
    c.handle_input(T0, input);
    assert!(c.poll_request(admit_limit(limit)).is_none());
    assert!(c.is_closed(), "closed after a refusal");
    let rs = parse_responses(&read_all(&mut c));
    assert_eq!(rs.len(), 1);
    assert_eq!(header(&rs[0].1, "connection"), Some("close"));
    (c, rs[0].0)
}

#[test]
fn refusals_close_the_connection() {
    let (c, s) = refused(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n",
        16,
    );
    assert_eq!(s, 413);
    assert_eq!(
        c.error(),
        Some(&H1Error::BodyTooLarge { len: 17, limit: 16 })
    );
    let (_, s) = refused(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        16,
    );
    assert_eq!(s, 411);
    let (_, s) = refused(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        16,
    );
    assert_eq!(s, 400);
    let (_, s) = refused(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        16,
    );
    assert_eq!(s, 400);
    let (_, s) = refused(b"GET / HTTP/1.1\r\n\r\n", 0);
    assert_eq!(s, 400, "HTTP/1.1 needs Host");
    let (_, s) = refused(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0);
    assert_eq!(s, 400, "TLS to a plain port");
    let (_, s) = refused(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 0);
    assert_eq!(s, 400);

    // A head past the bound: 431 without waiting for its end.
    let mut c = conn();
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    while big.len() <= 16 * 1024 {
        big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    for chunk in big.chunks(1000) {
        c.handle_input(T0, chunk);
        let _ = c.poll_request(admit_limit(0));
    }
    assert!(c.is_closed());
    assert_eq!(c.error(), Some(&H1Error::HeadTooLarge));
    assert_eq!(parse_responses(&read_all(&mut c))[0].0, 431);
    // Too many fields.
    let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..80 {
        many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(refused(&many, 0).1, 431);

    // An admit answer with an unread body closes after the answer.
    let mut c = conn();
    c.handle_input(
        T0,
        b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert!(c
        .poll_request(|_| Admit::Respond(Response::new(Bytes::new())))
        .is_none());
    assert!(c.is_closed());
    assert_eq!(c.requests(), 1);
}

#[test]
fn slow_requests_time_out() {
    let mut c = conn();
    assert_eq!(c.poll_timeout(), Some(T0 + Duration::from_secs(10)));
    c.handle_input(T0, b"GET / HTT");
    assert!(c.poll_request(admit_limit(0)).is_none());
    c.handle_timeout(T0 + Duration::from_secs(9));
    assert!(!c.is_closed());
    c.handle_timeout(T0 + Duration::from_secs(10));
    assert!(c.is_closed());
    assert_eq!(parse_responses(&read_all(&mut c))[0].0, 408);
    // An idle keep-alive connection closes silently; the deadline restarts
    // with each response.
    let mut c = conn();
    c.handle_input(T0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let _ = c.poll_request(admit_limit(0)).unwrap();
    assert_eq!(c.poll_timeout(), None, "no deadline while answering");
    let later = T0 + Duration::from_secs(30);
    c.send_response(later, ok(""));
    let _ = read_all(&mut c);
    assert_eq!(c.poll_timeout(), Some(later + Duration::from_secs(10)));
    c.handle_timeout(later + Duration::from_secs(10));
    assert!(c.is_closed());
    assert!(read_all(&mut c).is_empty(), "nothing sent to an idle peer");
}

#[test]
fn http10_and_connection_close() {
    let mut c = conn();
    c.handle_input(T0, b"GET / HTTP/1.0\r\n\r\n");
    let _ = c.poll_request(admit_limit(0)).unwrap();
    c.send_response(T0, ok("x"));
    assert!(c.is_closed(), "HTTP/1.0 without keep-alive closes");
    let rs = parse_responses(&read_all(&mut c));
    assert_eq!(header(&rs[0].1, "connection"), Some("close"));

    let mut c = conn();
    c.handle_input(T0, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let _ = c.poll_request(admit_limit(0)).unwrap();
    c.send_response(T0, ok("x"));
    assert!(!c.is_closed());
    let rs = parse_responses(&read_all(&mut c));
    assert_eq!(header(&rs[0].1, "connection"), Some("keep-alive"));

    let mut c = conn();
    c.handle_input(
        T0,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let _ = c.poll_request(admit_limit(0)).unwrap();
    c.send_response(T0, ok("x"));
    assert!(c.is_closed());
}

#[test]
fn serves_the_router() {
    let engine = Engine::with_defaults();
    let router = HttpRouter::new(engine, HttpConfig::default());
    let mut c = conn();
    c.handle_input(
        T0,
        b"GET /live/cam/ HTTP/1.1\r\nHost: x\r\n\r\nHEAD /_arcly/hls.min.js HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let mut statuses = Vec::new();
    while let Some(req) = c.poll_request(|h| router.admit(h)) {
        let Routed::Response(resp) = router.handle(&req, T0) else {
            panic!("static resources do not park");
        };
        statuses.push(resp.status());
        c.send_response(T0, resp);
    }
    assert_eq!(statuses, [StatusCode::OK, StatusCode::OK]);
    let wire = read_all(&mut c);
    let text = String::from_utf8_lossy(&wire);
    assert!(text.contains("<video"), "player page body");
    let js_len = arcly::http::HLS_JS.len().to_string();
    assert!(
        text.contains(&format!("content-length: {js_len}\r\n")) && text.ends_with("\r\n\r\n"),
        "HEAD: the GET length, no body"
    );
}

/// One request of the property tests.
#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    path: String,
    body: Vec<u8>,
}

fn req_strategy() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        "/[a-z0-9._~-]{0,12}(/[a-z0-9%]{1,6}){0,3}",
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(method, path, body)| Req { method, path, body })
}

fn wire(r: &Req) -> Vec<u8> {
    let mut w = format!(
        "{} {} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        r.method,
        r.path,
        r.body.len()
    )
    .into_bytes();
    w.extend_from_slice(&r.body);
    w
}

proptest! {
    /// Any sequence of pipelined requests, cut into any pieces, comes out
    /// as the same requests in order, each answered in order.
    #[test]
    fn pipelined_requests_survive_any_split(
        reqs in prop::collection::vec(req_strategy(), 1..6),
        cuts in prop::collection::vec(1usize..40, 1..200),
    ) {
        let all: Vec<u8> = reqs.iter().flat_map(wire).collect();
        let mut c = conn();
        let mut got = Vec::new();
        let mut at = 0;
        let mut cut = cuts.iter().cycle();
        while at < all.len() {
            let n = (*cut.next().unwrap()).min(all.len() - at);
            c.handle_input(T0, &all[at..at + n]);
            at += n;
            while let Some(r) = c.poll_request(admit_limit(64)) {
                let body = Bytes::from(format!("{}", got.len()));
                got.push(r);
                c.send_response(T0, Response::new(body));
            }
        }
        prop_assert!(!c.is_closed());
        prop_assert_eq!(got.len(), reqs.len());
        for (g, w) in got.iter().zip(&reqs) {
            prop_assert_eq!(g.method().as_str(), w.method);
            prop_assert_eq!(g.uri().path(), w.path.as_str());
            prop_assert_eq!(g.body().as_ref(), w.body.as_slice());
        }
        let rs = parse_responses(&read_all(&mut c));
        prop_assert_eq!(rs.len(), reqs.len());
        for (i, r) in rs.iter().enumerate() {
            prop_assert_eq!(r.0, 200);
            prop_assert_eq!(r.2.clone(), i.to_string().into_bytes());
        }
    }

    /// Arbitrary bytes: no panic, the buffer stays bounded (a refusal
    /// closes), and a closed connection hands out nothing more.
    #[test]
    fn arbitrary_input_is_bounded(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 0..60),
    ) {
        let mut config = H1Config::default();
        config.max_head_bytes = 1024;
        let mut c = H1Connection::new(config, T0);
        let mut fed = 0usize;
        for ch in &chunks {
            if c.is_closed() {
                break;
            }
            c.handle_input(T0, ch);
            fed += ch.len();
            while let Some(r) = c.poll_request(admit_limit(100)) {
                prop_assert!(r.body().len() <= 100);
                c.send_response(T0, Response::new(Bytes::new()));
            }
            let _ = read_all(&mut c);
        }
        let _ = fed;
        c.handle_timeout(T0 + Duration::from_secs(60));
        prop_assert!(c.is_closed());
        prop_assert!(c.poll_request(admit_limit(100)).is_none());
    }
}
