//! HTTP: a pure request → response router with a route table (feature
//! `http`), shared by every adapter, and HLS / Low-Latency HLS as one
//! mounted service. See `docs/hls.md` and `docs/architecture.md`.
//!
//! [`HttpRouter`] holds [`HttpService`]s mounted by [`Route`] (path
//! pattern, methods, request-body limit). The adapter shows it each request
//! head ([`HttpRouter::admit`]: the body limit, or an answer at once),
//! reads the body up to the limit, and calls [`HttpRouter::handle`] with
//! the [`http::Request<Bytes>`] and the current [`Instant`]; background
//! work of the services (an HLS stream's pump) comes out of
//! [`HttpRouter::jobs`] (see [`crate::job`]). Adapters without hyper use
//! the sans-IO HTTP/1.1 machine [`h1::H1Connection`].
//!
//! The HLS service ([`HlsService`], mounted at `/{*path}` for GET and HEAD
//! by [`HttpRouter::new`]) returns either a complete response or
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
//! - Methods (HLS): GET, HEAD (same headers, no body), OPTIONS (CORS
//!   preflight, 204, answered by the router for every route); anything
//!   else 405 with `Allow` (the methods of the routes matching the path).
//! - Request bodies: at most the route's [`Route::max_body`] (HLS: 0);
//!   more → 413.
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
//! - Unknown stream or resource → 404; malformed or repeated delivery
//!   directive → 400; `_HLS_msn` more than two segments ahead → 400
//!   (§6.2.5.2); too many streams or parked requests (globally, from the
//!   client's IP, on the stream) → 503.
//! - The client: the adapter inserts a [`ClientAddr`] extension into each
//!   request; the per-client bounds of [`HlsServiceConfig`] count by its IP
//!   (a request without one is bound by the global limits only).
//! - Refusals are logged, one line each, rate-limited per kind
//!   ([`crate::log_limit`]; the request target escaped with
//!   [`crate::peer_text::escaped`]): 400/405/413/414 at `info`, 503 for a
//!   limit at `warn`, 503 for a wait that timed out at `info`
//!   ([`log_refusal`]). 404 is not logged (players poll ended streams).
//!   See docs/security.md.

pub mod h1;
mod hls;
mod hls_http;
mod request;
mod router;
pub mod serve;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::engine::Engine;
use crate::log_limit::LogLimiter;
use crate::peer_text::escaped;
use crate::time::Instant;

pub use crate::container::hls::WallClock;
pub use hls::{HlsError, HlsService, HlsServiceConfig, HlsStream};
pub use request::HLS_JS_PATH;
pub use router::{
    Admit, HttpRouter, HttpService, PatternError, Route, RouteMatch, Routed, RouterConfig, Wait,
};
pub use serve::{Dropped, HttpRuntime, HttpServeConfig, Waited};

use request::{resolve_range, RangeReply};

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

/// The client (peer address) of a request: the adapter inserts it into the
/// request's extensions (`req.extensions_mut().insert(ClientAddr(peer))`) so
/// services can bound what one client IP takes
/// ([`HlsServiceConfig::max_blocked_per_client`],
/// [`HlsServiceConfig::max_streams_per_client`]) and logs can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl ClientAddr {
    /// The client of `req`, if the adapter said.
    pub fn of<B>(req: &Request<B>) -> Option<SocketAddr> {
        req.extensions().get::<ClientAddr>().map(|c| c.0)
    }
}

/// Refused requests (400, 405, 413, 414): 10 lines per 10 s, then a count.
static LOG_BAD_REQUEST: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
/// 503 for a parked-request limit.
static LOG_PARK_LIMIT: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
/// 503 for a muxed-stream limit.
static LOG_STREAM_LIMIT: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
/// 503 for a parked request whose wait timed out.
static LOG_TIMEOUT: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));

/// Which limit a 503 hit: a response extension (never sent) that
/// [`log_refusal`] reads to pick the log line's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A parked-request limit.
    ParkLimit,
    /// A muxed-stream limit.
    StreamLimit,
    /// A parked wait timed out.
    Timeout,
}

/// `resp` marked as a refusal of `kind` (for [`log_refusal`]).
pub(crate) fn refused(mut resp: Response<Bytes>, kind: Refusal) -> Response<Bytes> {
    resp.extensions_mut().insert(kind);
    resp
}

/// The client for a log line (`-` when the adapter did not say).
struct ClientField(Option<SocketAddr>);

impl core::fmt::Display for ClientField {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("-"),
        }
    }
}

/// Logs `resp` to `req` when it refuses the request: one line, rate-limited
/// per kind (10 per 10 s; the next line that passes carries
/// `suppressed=N`), the client from [`ClientAddr`] and the request target
/// escaped. 400/405/413/414 and a timed-out wait at `info`, a 503 for a
/// limit at `warn`; anything else (404 included) is not logged. The router
/// calls it for what [`HttpRouter::handle`] and [`HttpRouter::resume`]
/// answer; an adapter calls it for an [`Admit::Respond`] answer.
pub fn log_refusal<B>(req: &Request<B>, resp: &Response<Bytes>, now: Instant) {
    let status = resp.status().as_u16();
    let kind = resp.extensions().get::<Refusal>().copied();
    let limiter = match (status, kind) {
        (400 | 405 | 413 | 414, _) => &LOG_BAD_REQUEST,
        (_, Some(Refusal::ParkLimit)) => &LOG_PARK_LIMIT,
        (_, Some(Refusal::StreamLimit)) => &LOG_STREAM_LIMIT,
        (_, Some(Refusal::Timeout)) => &LOG_TIMEOUT,
        _ => return,
    };
    let Some(suppressed) = limiter.check(now) else {
        return;
    };
    let client = ClientField(ClientAddr::of(req));
    let target = req
        .uri()
        .path_and_query()
        .map_or(req.uri().path(), |pq| pq.as_str());
    let target = escaped(target);
    // Our own text: "<code> <reason>: <why>".
    let body = std::str::from_utf8(resp.body()).unwrap_or("");
    let why = body.split_once(": ").map_or(body, |(_, w)| w).trim_end();
    let method = req.method();
    if matches!(kind, Some(Refusal::ParkLimit | Refusal::StreamLimit)) {
        tracing::warn!(%client, %method, %target, status, suppressed, "HTTP request refused: {why}");
    } else {
        tracing::info!(%client, %method, %target, status, suppressed, "HTTP request refused: {why}");
    }
}

/// Settings of the standard router ([`HttpRouter::new`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Longest request target (path and query) accepted; longer → 414.
    pub max_uri_len: usize,
    /// The HLS service (muxers, limits, timeouts).
    pub hls: HlsServiceConfig,
}
/// Builder-style setters: the struct is `#[non_exhaustive]`, so other
/// crates start from its default (or constructor) value and chain these.
impl HttpConfig {
    /// Sets [`max_uri_len`](Self::max_uri_len).
    #[must_use]
    pub fn with_max_uri_len(mut self, max_uri_len: usize) -> Self {
        self.max_uri_len = max_uri_len;
        self
    }

    /// Sets [`hls`](Self::hls).
    #[must_use]
    pub fn with_hls(mut self, hls: HlsServiceConfig) -> Self {
        self.hls = hls;
        self
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_uri_len: 2048,
            hls: HlsServiceConfig::default(),
        }
    }
}

impl HttpRouter {
    /// The standard router: an [`HlsService`] serving the streams of
    /// `engine`, mounted at `/{*path}` for GET and HEAD (no request body).
    /// Mount further services before it with [`HttpRouter::empty`] and
    /// [`HttpRouter::mount`] to take paths or methods HLS does not use.
    pub fn new(engine: Engine, config: HttpConfig) -> Self {
        let mut router = HttpRouter::empty(RouterConfig {
            max_uri_len: config.max_uri_len,
            ..RouterConfig::default()
        });
        router.mount_hls(engine, config.hls);
        router
    }

    /// Mounts an [`HlsService`] over `engine` at `/{*path}` (GET, HEAD),
    /// its pump jobs going to this router's [`jobs`](Self::jobs).
    pub fn mount_hls(&mut self, engine: Engine, config: HlsServiceConfig) -> &mut Self {
        let hls = Arc::new(HlsService::new(engine, config, self.jobs().clone()));
        match Route::new("/{*path}") {
            Ok(route) => self.mount(route, hls),
            Err(_) => self,
        }
    }

    /// The first mounted [`HlsService`] (its streams and counters).
    pub fn hls(&self) -> Option<&HlsService> {
        self.service::<HlsService>()
    }
}

pub(crate) fn set(resp: &mut Response<Bytes>, name: HeaderName, value: &'static str) {
    resp.headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

/// A response with the headers every answer carries.
pub(crate) fn base(
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

pub(crate) fn error(status: StatusCode, why: &str) -> Response<Bytes> {
    let reason = status.canonical_reason().unwrap_or("");
    let body = format!("{} {reason}: {why}\n", status.as_u16());
    base(status, TEXT_TYPE, CACHE_ERROR, Bytes::from(body))
}

pub(crate) fn unavailable(why: &str) -> Response<Bytes> {
    let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, why);
    set(&mut resp, header::RETRY_AFTER, "1");
    resp
}

/// HEAD: keep the headers (`Content-Length` of the GET body), drop the body.
pub(crate) fn strip_for_head(mut resp: Response<Bytes>, head: bool) -> Response<Bytes> {
    if head {
        *resp.body_mut() = Bytes::new();
    }
    resp
}

fn header_str<B>(req: &Request<B>, name: HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A byte resource, honouring `Range` (RFC 9110 §14).
pub(crate) fn ranged<B>(
    req: &Request<B>,
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

pub(crate) fn playlist(text: String) -> Response<Bytes> {
    base(
        StatusCode::OK,
        PLAYLIST_TYPE,
        CACHE_PLAYLIST,
        Bytes::from(text),
    )
}
