//! HTTP serving of HLS and Low-Latency HLS: a pure request → response
//! router (feature `http`), shared by every adapter. See `docs/hls.md`.
//!
//! [`HttpRouter::handle`] takes an [`http::Request<()>`] (the adapter
//! ignores request bodies: nothing here accepts one) and the current
//! [`Instant`], and returns either a complete response or
//! [`Routed::Wait`]: the request is parked (blocking playlist reload,
//! draft-pantos-hls-rfc8216bis §6.2.5.2; a preload-hinted part, §6.2.6; the
//! first playlist of a stream whose muxer has no complete segment yet). The adapter
//! waits until the [`Wait::signal`] moves past [`Wait::epoch`] or
//! [`Wait::deadline`] passes, then calls [`HttpRouter::resume`], which
//! answers or parks again; past the deadline the answer is 503 (§6.2.5.2:
//! "A Server that cannot provide the requested Playlist after blocking for
//! more than three Target Durations SHOULD return Service Unavailable").
//!
//! # URLs (below `/<app>/<stream>/`)
//!
//! | path | what |
//! |---|---|
//! | `` (the directory itself) | player page (hls.js, falls back to native HLS) |
//! | `index.m3u8` | multivariant playlist → LL-HLS fMP4 media playlist `stream.m3u8` |
//! | `stream.m3u8`, `init.mp4`, `seg<msn>.m4s`, `part<msn>.<n>.m4s` | LL-HLS |
//! | `ts/index.m3u8`, `ts/stream.m3u8`, `ts/seg<msn>.ts` | classic HLS, MPEG-TS (built from the first TS request on, until 30 s without one; see [`HlsService`]) |
//!
//! and [`HLS_JS_PATH`] for the vendored hls.js ([`HLS_JS_VERSION`]).
//!
//! # Rules
//!
//! - Methods: GET, HEAD (same headers, no body), OPTIONS (CORS preflight,
//!   204); anything else 405 with `Allow`.
//! - Every response has `Access-Control-Allow-Origin: *`.
//! - Paths are percent-decoded per segment before they are checked; `..`,
//!   `.`, empty segments, decoded `/` `\` or control characters → 400. A
//!   request target longer than [`HttpConfig::max_uri_len`] → 414.
//! - Segments, parts, the init segment and hls.js honour one `Range`
//!   (`bytes=a-b`, `a-`, `-n`): 206 with `Content-Range`, 416 when no byte
//!   is in range (RFC 9110 §14).
//! - Media playlists carry `EXT-X-PROGRAM-DATE-TIME` (rfc8216bis §4.4.4.6)
//!   when the service has a wall clock ([`HlsServiceConfig::wall_clock`],
//!   [`HlsService::set_wall_clock`]): core reads no clock.
//! - Unknown stream or resource → 404; malformed delivery directive → 400;
//!   `_HLS_msn` more than two segments ahead → 400 (§6.2.5.2); too many
//!   streams or parked requests → 503.

mod hls;
mod request;
pub mod serve;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::container::hls::{PlaylistReply, PlaylistRequest, Resource, Variant};
use crate::engine::{Engine, Signal, StreamKey};
use crate::time::Instant;

pub use crate::container::hls::WallClock;
pub use hls::{HlsError, HlsService, HlsServiceConfig, HlsStream, PumpState};
pub use request::HLS_JS_PATH;
pub use serve::{HttpRuntime, HttpServeConfig, Waited};

use hls::BlockPermit;
use request::{parse_target, resolve_range, RangeReply, Target, TargetError};

/// hls.js, `dist/hls.min.js` of the npm package (Apache-2.0, see
/// `assets/hls.js-LICENSE`), served at [`HLS_JS_PATH`].
pub const HLS_JS: &[u8] = include_bytes!("assets/hls.min.js");

/// Version of the vendored [`HLS_JS`].
pub const HLS_JS_VERSION: &str = "1.7.4";

/// The player page served at `/<app>/<stream>/` (static: it loads
/// `index.m3u8` relative to itself).
pub const PLAYER_HTML: &str = include_str!("assets/player.html");

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
const MP4_TYPE: &str = "video/mp4";
const TS_TYPE: &str = "video/mp2t";
const HTML_TYPE: &str = "text/html; charset=utf-8";
const JS_TYPE: &str = "text/javascript; charset=utf-8";
const TEXT_TYPE: &str = "text/plain; charset=utf-8";

/// Playlists change with every part: never served from a cache unchecked.
const CACHE_PLAYLIST: &str = "no-cache";
/// Segments, parts and the init segment do not change once listed.
const CACHE_MEDIA: &str = "public, max-age=60";
const CACHE_ASSET: &str = "public, max-age=86400";
const CACHE_ERROR: &str = "no-store";

const ALLOW: &str = "GET, HEAD, OPTIONS";

/// Settings of the [`HttpRouter`].
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Longest request target (path and query) accepted; longer → 414.
    pub max_uri_len: usize,
    /// The HLS service (muxers, limits, timeouts).
    pub hls: HlsServiceConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_uri_len: 2048,
            hls: HlsServiceConfig::default(),
        }
    }
}

/// What [`HttpRouter::handle`] decided.
#[derive(Debug)]
pub enum Routed {
    /// Send this response (for HEAD the body is already empty, the headers
    /// are those of GET).
    Response(Response<Bytes>),
    /// Park the request: wait on the signal or until the deadline, then call
    /// [`HttpRouter::resume`].
    Wait(Wait),
}

/// Why a request is parked: decides the deadline and the timeout answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitKind {
    /// The stream's muxer has nothing to play yet.
    Ready,
    /// Blocking playlist reload (§6.2.5.2).
    Reload,
    /// The preload-hinted part, not complete yet (§6.2.6).
    Media,
}

/// A parked request (see [`Routed::Wait`]). Holds one of the
/// [`HlsServiceConfig::max_blocked_requests`] slots until it is dropped or
/// resumed into a response.
#[derive(Debug)]
pub struct Wait {
    /// Wait until this signal's epoch differs from [`epoch`](Self::epoch).
    pub signal: Signal,
    /// The epoch read before the router looked.
    pub epoch: u64,
    /// Resume at the latest then (the router answers 503 once it passed).
    pub deadline: Instant,
    kind: WaitKind,
    permit: BlockPermit,
    /// When the request was first parked.
    since: Instant,
    /// The deadline of the wait's reason (`deadline` may be earlier: a time
    /// at which the router answers anyway).
    hard: Instant,
}

/// The request → response router (see the module documentation).
#[derive(Debug)]
pub struct HttpRouter {
    max_uri_len: usize,
    hls: HlsService,
}

fn set(resp: &mut Response<Bytes>, name: HeaderName, value: &'static str) {
    resp.headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

/// A response with the headers every answer carries.
fn base(
    status: StatusCode,
    ctype: &'static str,
    cache: &'static str,
    body: Bytes,
) -> Response<Bytes> {
    let len = body.len() as u64;
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    set(&mut resp, header::CONTENT_TYPE, ctype);
    set(&mut resp, header::CACHE_CONTROL, cache);
    set(&mut resp, header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    set(
        &mut resp,
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        "Content-Length, Content-Range, Accept-Ranges",
    );
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

fn error(status: StatusCode, why: &str) -> Response<Bytes> {
    let reason = status.canonical_reason().unwrap_or("");
    let body = format!("{} {reason}: {why}\n", status.as_u16());
    base(status, TEXT_TYPE, CACHE_ERROR, Bytes::from(body))
}

fn unavailable(why: &str) -> Response<Bytes> {
    let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, why);
    set(&mut resp, header::RETRY_AFTER, "1");
    resp
}

/// HEAD: keep the headers (`Content-Length` of the GET body), drop the body.
fn strip_for_head(mut resp: Response<Bytes>, head: bool) -> Response<Bytes> {
    if head {
        *resp.body_mut() = Bytes::new();
    }
    resp
}

fn header_str(req: &Request<()>, name: HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A byte resource, honouring `Range` (RFC 9110 §14).
fn ranged(
    req: &Request<()>,
    ctype: &'static str,
    cache: &'static str,
    body: Bytes,
) -> Response<Bytes> {
    let len = body.len() as u64;
    // If-Range with a validator we cannot match (we send none): whole body.
    let range = if req.headers().contains_key(header::IF_RANGE) {
        None
    } else {
        header_str(req, header::RANGE)
    };
    let mut resp = match resolve_range(range, len) {
        RangeReply::Full => base(StatusCode::OK, ctype, cache, body),
        RangeReply::Partial { start, end } => {
            let part = body.slice(start as usize..(end as usize).saturating_add(1));
            let mut resp = base(StatusCode::PARTIAL_CONTENT, ctype, cache, part);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            resp
        }
        RangeReply::Unsatisfiable => {
            let mut resp = error(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            resp
        }
    };
    set(&mut resp, header::ACCEPT_RANGES, "bytes");
    resp
}

fn playlist(text: String) -> Response<Bytes> {
    base(
        StatusCode::OK,
        PLAYLIST_TYPE,
        CACHE_PLAYLIST,
        Bytes::from(text),
    )
}

fn preflight(req: &Request<()>) -> Response<Bytes> {
    let mut resp = base(StatusCode::NO_CONTENT, TEXT_TYPE, CACHE_ERROR, Bytes::new());
    resp.headers_mut().remove(header::CONTENT_LENGTH);
    resp.headers_mut().remove(header::CONTENT_TYPE);
    set(&mut resp, header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW);
    set(&mut resp, header::ALLOW, ALLOW);
    set(&mut resp, header::ACCESS_CONTROL_MAX_AGE, "86400");
    let asked = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|v| v.len() <= 256)
        .cloned()
        .unwrap_or(HeaderValue::from_static("Range"));
    resp.headers_mut()
        .insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
    resp
}

impl HttpRouter {
    /// A router serving the streams of `engine`.
    pub fn new(engine: Engine, config: HttpConfig) -> Self {
        HttpRouter {
            max_uri_len: config.max_uri_len,
            hls: HlsService::new(engine, config.hls),
        }
    }

    /// The HLS service: the adapter drains
    /// [`HlsService::poll_new_stream`] and runs [`HlsStream::pump`] tasks.
    pub fn hls(&self) -> &HlsService {
        &self.hls
    }

    /// Routes one request.
    pub fn handle(&self, req: &Request<()>, now: Instant) -> Routed {
        self.route(req, now, None)
    }

    /// Routes a parked request again, after its [`Wait::signal`] moved or its
    /// [`Wait::deadline`] passed. Past the deadline a request that would
    /// still wait gets 503.
    pub fn resume(&self, req: &Request<()>, wait: Wait, now: Instant) -> Routed {
        match self.route(req, now, Some(wait)) {
            Routed::Wait(w) if now >= w.deadline => {
                let why = match w.kind {
                    WaitKind::Ready => "stream has nothing to play yet",
                    WaitKind::Reload => "blocking playlist reload timed out",
                    WaitKind::Media => "part not available in time",
                };
                let head = req.method() == Method::HEAD;
                Routed::Response(strip_for_head(unavailable(why), head))
            }
            other => other,
        }
    }

    fn route(&self, req: &Request<()>, now: Instant, carry: Option<Wait>) -> Routed {
        let head = req.method() == Method::HEAD;
        let uri_len = req
            .uri()
            .path_and_query()
            .map_or(req.uri().path().len(), |pq| pq.as_str().len());
        let resp = if uri_len > self.max_uri_len {
            error(StatusCode::URI_TOO_LONG, "request target too long")
        } else if req.method() == Method::OPTIONS {
            preflight(req)
        } else if req.method() != Method::GET && !head {
            let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "only GET, HEAD and OPTIONS");
            set(&mut resp, header::ALLOW, ALLOW);
            resp
        } else {
            match parse_target(req.uri().path()) {
                Err(TargetError::BadPath(why)) => error(StatusCode::BAD_REQUEST, why),
                Err(TargetError::NotFound) => error(StatusCode::NOT_FOUND, "no such resource"),
                Ok(Target::HlsJs) => ranged(req, JS_TYPE, CACHE_ASSET, Bytes::from_static(HLS_JS)),
                Ok(Target::Player(_)) => base(
                    StatusCode::OK,
                    HTML_TYPE,
                    CACHE_PLAYLIST,
                    Bytes::from_static(PLAYER_HTML.as_bytes()),
                ),
                Ok(Target::AddSlash(_)) => {
                    let to = format!("{}/", req.uri().path());
                    match HeaderValue::from_str(&to) {
                        Ok(v) => {
                            let mut resp = error(StatusCode::PERMANENT_REDIRECT, "see Location");
                            resp.headers_mut().insert(header::LOCATION, v);
                            resp
                        }
                        Err(_) => error(StatusCode::BAD_REQUEST, "bad path"),
                    }
                }
                Ok(Target::Stream(key, res)) => {
                    match self.stream_resource(req, &key, res, now, carry) {
                        Routed::Response(resp) => resp,
                        wait => return wait,
                    }
                }
            }
        };
        Routed::Response(strip_for_head(resp, head))
    }

    /// A parked request: reuses the carried slot and, for the same reason,
    /// the carried deadline.
    /// `wake_at`: an earlier time at which the request is answered anyway.
    #[allow(clippy::too_many_arguments)]
    fn park(
        &self,
        signal: &Signal,
        epoch: u64,
        kind: WaitKind,
        timeout: std::time::Duration,
        now: Instant,
        carry: Option<Wait>,
        wake_at: Option<Instant>,
    ) -> Routed {
        let (permit, hard, since) = match carry {
            Some(c) if c.kind == kind => (c.permit, c.hard, c.since),
            Some(c) => (c.permit, now + timeout, c.since),
            None => match self.hls.block_permit() {
                Some(p) => (p, now + timeout, now),
                None => return Routed::Response(unavailable("too many blocked requests")),
            },
        };
        Routed::Wait(Wait {
            signal: signal.clone(),
            epoch,
            deadline: wake_at.map_or(hard, |w| w.min(hard)),
            kind,
            permit,
            since,
            hard,
        })
    }

    /// Answers a stream resource, or parks the request.
    fn stream_resource(
        &self,
        req: &Request<()>,
        key: &StreamKey,
        res: Resource,
        now: Instant,
        carry: Option<Wait>,
    ) -> Routed {
        let respond = Routed::Response;
        let variant = match res {
            Resource::Multivariant(v) | Resource::MediaPlaylist(v) | Resource::Segment(v, _) => v,
            Resource::Init | Resource::Part { .. } => Variant::LowLatency,
        };
        // A TS request turns the TS variant on (or keeps it on).
        let stream = match self.hls.stream_for(key, variant, now) {
            Ok(s) => s,
            Err(HlsError::Subscribe(e)) => {
                return respond(error(StatusCode::NOT_FOUND, &e.to_string()));
            }
            Err(e @ HlsError::TooManyStreams(_)) => return respond(unavailable(&e.to_string())),
        };
        let signal = stream.advanced();
        // Read before looking: a push after the look moves the epoch.
        let epoch = signal.epoch();
        let state = stream.state();
        let muxer = &state.muxer;
        let ready_timeout = self.hls.config().ready_timeout;
        let block_timeout = muxer.target_duration().saturating_mul(3);
        let since = carry.as_ref().map_or(now, |w| w.since);
        let park = |kind: WaitKind, timeout, carry| {
            self.park(&signal, epoch, kind, timeout, now, carry, None)
        };
        // First playlist of a fresh muxer: players that know no LL-HLS
        // (ffprobe, VLC, older players) need a complete segment; a playlist
        // of parts only is empty to them. So the first requests wait for
        // one, or, with a long GOP, for two target durations, after which
        // parts do (an LL-HLS client asking with `_HLS_msn` is served from
        // the first part on).
        // The TS variant starts with the first request for it: its first
        // playlist waits the same way for its first complete TS segment.
        let soft_wake = since + muxer.target_duration().saturating_mul(2);
        let ready = |v: Variant, ll_client: bool| match v {
            Variant::Ts => muxer.is_ready(Variant::Ts),
            Variant::LowLatency => {
                muxer.has_segment()
                    || (muxer.is_ready(Variant::LowLatency) && (ll_client || now >= soft_wake))
            }
        };
        if variant == Variant::Ts && muxer.is_finished() && !muxer.is_ready(Variant::Ts) {
            // Asked for after the stream ended: no TS segment will come.
            return respond(error(StatusCode::NOT_FOUND, "stream ended; no TS segments"));
        }
        let park_ready = |v: Variant, carry| {
            let wake = (v == Variant::LowLatency && muxer.is_ready(Variant::LowLatency))
                .then_some(soft_wake);
            self.park(
                &signal,
                epoch,
                WaitKind::Ready,
                ready_timeout,
                now,
                carry,
                wake,
            )
        };
        match res {
            Resource::Multivariant(v) => match muxer.multivariant_playlist(v) {
                Some(text) if ready(v, false) => respond(playlist(text)),
                _ => park_ready(v, carry),
            },
            Resource::MediaPlaylist(v) => {
                let directives = match PlaylistRequest::from_query(req.uri().query().unwrap_or(""))
                {
                    // §6.2.5.2: checked before any wait.
                    Ok(d) if d.part.is_some() && d.msn.is_none() => {
                        return respond(error(
                            StatusCode::BAD_REQUEST,
                            "_HLS_part without _HLS_msn",
                        ));
                    }
                    Ok(d) => d,
                    Err(why) => return respond(error(StatusCode::BAD_REQUEST, why)),
                };
                if !ready(v, directives.msn.is_some()) {
                    return park_ready(v, carry);
                }
                match muxer.media_playlist(v, &directives) {
                    PlaylistReply::Ready(text) => respond(playlist(text)),
                    PlaylistReply::NotYet => park(WaitKind::Reload, block_timeout, carry),
                    PlaylistReply::BadRequest(why) => respond(error(StatusCode::BAD_REQUEST, why)),
                }
            }
            Resource::Init => match muxer.init_segment() {
                Some(b) => respond(ranged(req, MP4_TYPE, CACHE_MEDIA, b)),
                None => respond(error(StatusCode::NOT_FOUND, "no init segment yet")),
            },
            Resource::Segment(v, msn) => match muxer.segment(v, msn) {
                Some(b) => {
                    let ctype = match v {
                        Variant::LowLatency => MP4_TYPE,
                        Variant::Ts => TS_TYPE,
                    };
                    respond(ranged(req, ctype, CACHE_MEDIA, b))
                }
                None => respond(error(StatusCode::NOT_FOUND, "no such segment")),
            },
            Resource::Part { msn, part } => match muxer.part(msn, part) {
                Some(b) => respond(ranged(req, MP4_TYPE, CACHE_MEDIA, b)),
                // The preload-hinted part (§6.2.6): held until complete.
                None if muxer.part_pending(msn, part) => {
                    park(WaitKind::Media, block_timeout, carry)
                }
                None => respond(error(StatusCode::NOT_FOUND, "no such part")),
            },
        }
    }
}
