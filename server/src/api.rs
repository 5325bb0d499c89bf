//! The control API (`/v1/...`, JSON) and `/metrics` (Prometheus text) on
//! the HTTP listener, mounted before HLS in the route table
//! (`arcly::http::HttpRouter`). Documented in `docs/api.md` and
//! `docs/openapi.yaml`.
//!
//! Everything comes from the engine's own snapshots
//! (`Engine::streams_snapshot`, `Engine::sessions`,
//! `Engine::protocol_totals`, `Engine::refusals`): a request copies atomics
//! and never holds a lock a publisher or viewer waits on.
//!
//! Access: the API and `/metrics` answer only with `--api-token T` set and
//! the request carrying `Authorization: Bearer T` (401 otherwise; 403 with
//! no token configured, so the kick endpoints are never open by default).
//! Stream keys are peer text: JSON strings are escaped, and so are
//! Prometheus label values.

use std::any::Any;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arcly::engine::{SessionRole, SessionSnapshot, StreamSnapshot};
use arcly::http::{
    HlsService, HlsServiceConfig, HttpRouter, HttpService, Route, RouteMatch, Routed, RouterConfig,
    Wait, WallClock,
};
use arcly::time::Instant;
use arcly::{Engine, StreamKey};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};

use crate::metrics;

/// What the API needs besides the engine.
#[derive(Debug, Clone, Default)]
pub struct ApiSettings {
    /// The bearer token API clients must send (`None`: API refused).
    pub token: Option<String>,
    /// The listeners, as `(protocol, address)` for `GET /v1/server`.
    pub listeners: Vec<(&'static str, String)>,
}

/// The API settings from the command line; `http` is the bound HTTP
/// address (the others are listed as configured).
pub fn settings(cli: &crate::Cli, http: std::net::SocketAddr) -> ApiSettings {
    let mut listeners = Vec::new();
    for (name, l) in [("rtmp", cli.rtmp), ("rtsp", cli.rtsp), ("srt", cli.srt)] {
        if let crate::Listen::On(a) = l {
            listeners.push((name, a.to_string()));
        }
    }
    listeners.push(("http", http.to_string()));
    ApiSettings {
        token: cli.api_token.clone(),
        listeners,
    }
}

/// The HTTP route table of the server: `/v1/{*path}` and `/metrics` (the
/// API), then HLS at `/{*path}`.
pub fn http_router(engine: &Engine, settings: ApiSettings) -> HttpRouter {
    let mut router = HttpRouter::empty(RouterConfig::default());
    let hls = Arc::new(CountingHls {
        inner: HlsService::new(
            engine.clone(),
            HlsServiceConfig::default(),
            router.jobs().clone(),
        ),
        requests: AtomicU64::new(0),
    });
    let api = Arc::new(ApiService {
        engine: engine.clone(),
        settings,
        hls: hls.clone(),
        started: std::time::Instant::now(),
        stream_starts: Arc::new(Mutex::new(HashMap::new())),
    });
    spawn_stream_clock(engine.clone(), api.stream_starts.clone());
    let routes = [
        Route::new("/v1/{*path}").map(|r| r.any_method().max_body(1024)),
        Route::new("/metrics"),
    ];
    for r in routes.into_iter().flatten() {
        router.mount(r, api.clone());
    }
    if let Ok(r) = Route::new("/{*path}") {
        router.mount(r, hls);
    }
    router
}

/// Stamps the wall-clock start of each publisher (by session id) as soon
/// as the engine announces its stream, for `uptime_seconds`; forgets ended
/// ones. Bounded by the live streams.
fn spawn_stream_clock(engine: Engine, starts: Arc<Mutex<HashMap<u64, std::time::Instant>>>) {
    tokio::spawn(async move {
        let signal = engine.streams_signal();
        loop {
            let epoch = signal.epoch();
            let now = std::time::Instant::now();
            let live: Vec<u64> = engine
                .sessions()
                .iter()
                .filter(|s| s.role == SessionRole::Publisher)
                .map(|s| s.id)
                .collect();
            {
                let mut m = starts.lock().unwrap_or_else(|p| p.into_inner());
                m.retain(|id, _| live.contains(id));
                for id in live {
                    m.entry(id).or_insert(now);
                }
            }
            signal.wait(epoch).await;
        }
    });
}

/// The HLS service, counting the requests it answers (`/metrics`).
#[derive(Debug)]
pub struct CountingHls {
    inner: HlsService,
    requests: AtomicU64,
}

impl HttpService for CountingHls {
    fn handle(&self, req: &Request<Bytes>, route: &RouteMatch, now: Instant) -> Routed {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.handle(req, route, now)
    }

    fn resume(&self, req: &Request<Bytes>, route: &RouteMatch, wait: Wait, now: Instant) -> Routed {
        self.inner.resume(req, route, wait, now)
    }

    fn set_wall_clock(&self, wall: Option<WallClock>) {
        HttpService::set_wall_clock(&self.inner, wall);
    }

    fn as_any(&self) -> &dyn Any {
        self.inner.as_any()
    }
}

impl CountingHls {
    /// HLS requests answered or parked.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Playlist requests parked right now (blocking reloads).
    pub fn parked(&self) -> usize {
        self.inner.blocked_requests()
    }
}

/// The `/v1` and `/metrics` service.
#[derive(Debug)]
struct ApiService {
    engine: Engine,
    settings: ApiSettings,
    hls: Arc<CountingHls>,
    started: std::time::Instant,
    /// Publisher session id → when its stream was announced.
    stream_starts: Arc<Mutex<HashMap<u64, std::time::Instant>>>,
}

/// Compares in time independent of where the strings differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Routed {
    let mut resp = Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Routed::Response(resp)
}

fn json(status: StatusCode, body: String) -> Routed {
    reply(status, "application/json", body)
}

fn error(status: StatusCode, message: &str) -> Routed {
    let mut body = String::from("{\"error\":");
    push_str(&mut body, message);
    body.push('}');
    json(status, body)
}

/// Appends `s` as a JSON string (RFC 8259 §7).
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl ApiService {
    fn authorized(&self, req: &Request<Bytes>) -> Result<(), Box<Routed>> {
        let Some(token) = &self.settings.token else {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "the API is off: start arcly with --api-token",
            )));
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            Some(g) if same_secret(g.as_bytes(), token.as_bytes()) => Ok(()),
            _ => {
                static DENIED: arcly::log_limit::LogLimiter =
                    arcly::log_limit::LogLimiter::new(10, std::time::Duration::from_secs(10));
                if let Some(suppressed) = DENIED.check(Instant::ZERO) {
                    let client = arcly::http::ClientAddr::of(req)
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    tracing::warn!(%client, suppressed, "API request refused: missing or wrong bearer token");
                }
                let Routed::Response(mut resp) =
                    error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
                else {
                    return Err(Box::new(error(StatusCode::UNAUTHORIZED, "unauthorized")));
                };
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"arcly\""),
                );
                Err(Box::new(Routed::Response(resp)))
            }
        }
    }

    fn uptime(&self, publisher: Option<u64>) -> f64 {
        let m = self.stream_starts.lock().unwrap_or_else(|p| p.into_inner());
        publisher
            .and_then(|id| m.get(&id))
            .map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    fn stream_json(&self, out: &mut String, s: &StreamSnapshot) {
        out.push_str("{\"key\":");
        push_str(out, &s.key.to_string());
        out.push_str(",\"app\":");
        push_str(out, s.key.app());
        out.push_str(",\"name\":");
        push_str(out, s.key.name());
        out.push_str(",\"publisher\":");
        match &s.publisher {
            Some(p) => {
                let _ = write!(out, "{{\"id\":{},\"protocol\":", p.id);
                push_str(out, p.protocol);
                out.push_str(",\"peer\":");
                match p.peer {
                    Some(a) => push_str(out, &a.to_string()),
                    None => out.push_str("null"),
                }
                out.push('}');
            }
            None => out.push_str("null"),
        }
        let viewers: u64 = s
            .viewers_by_protocol
            .iter()
            .filter(|(p, _)| *p != "internal")
            .map(|(_, n)| n)
            .sum();
        let _ = write!(out, ",\"viewers\":{viewers},\"viewers_by_protocol\":{{");
        for (i, (p, n)) in s.viewers_by_protocol.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_str(out, p);
            let _ = write!(out, ":{n}");
        }
        out.push_str("},\"codecs\":[");
        let mut first = true;
        for c in [s.video, s.audio].into_iter().flatten() {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str("{\"codec\":");
            push_str(out, c.codec.name());
            let kind = match c.codec.kind() {
                arcly::MediaKind::Video => "video",
                arcly::MediaKind::Audio => "audio",
            };
            let _ = write!(out, ",\"kind\":\"{kind}\"");
            if let (Some(w), Some(h)) = (c.width, c.height) {
                let _ = write!(out, ",\"width\":{w},\"height\":{h}");
            }
            out.push('}');
        }
        let st = &s.stats;
        let _ = write!(
            out,
            "],\"uptime_seconds\":{:.3},\"bytes_in\":{},\"frames_in\":{},\"keyframes\":{},\
             \"bitrate_bps\":{},\"keyframe_interval_ms\":{},\"dropped_frames\":{},\"subscribers\":{}}}",
            self.uptime(s.publisher.map(|p| p.id)),
            st.bytes,
            st.frames,
            st.keyframes,
            st.bitrate_bps,
            st.keyframe_interval_ms,
            st.dropped,
            st.subscribers
        );
    }

    fn session_json(out: &mut String, s: &SessionSnapshot) {
        let _ = write!(out, "{{\"id\":{},\"protocol\":", s.id);
        push_str(out, s.tag.protocol);
        let _ = write!(out, ",\"role\":\"{}\",\"peer\":", s.role.name());
        match s.tag.peer {
            Some(a) => push_str(out, &a.to_string()),
            None => out.push_str("null"),
        }
        out.push_str(",\"stream\":");
        push_str(out, &s.key.to_string());
        let state = match (s.kicked, s.role) {
            (true, _) => "closing",
            (false, SessionRole::Publisher) => "publishing",
            (false, SessionRole::Viewer) => "playing",
        };
        let (bytes_in, bytes_out, frames_in, frames_out) = match s.role {
            SessionRole::Publisher => (s.bytes, 0, s.frames, 0),
            SessionRole::Viewer => (0, s.bytes, 0, s.frames),
        };
        let _ = write!(
            out,
            ",\"state\":\"{state}\",\"bytes_in\":{bytes_in},\"bytes_out\":{bytes_out},\
             \"frames_in\":{frames_in},\"frames_out\":{frames_out},\"dropped_frames\":{},\
             \"lag_frames\":{},\"bitrate_bps\":{}}}",
            s.dropped, s.lag, s.bitrate_bps
        );
    }

    fn list_sessions(&self, role: Option<SessionRole>) -> Routed {
        let mut out = String::from("{\"sessions\":[");
        let mut first = true;
        for s in self.engine.sessions() {
            if role.is_some_and(|r| r != s.role) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            Self::session_json(&mut out, &s);
        }
        out.push_str("]}");
        json(StatusCode::OK, out)
    }

    fn one_session(&self, method: &Method, id: &str, role: Option<SessionRole>) -> Routed {
        let Ok(id) = id.parse::<u64>() else {
            return error(StatusCode::NOT_FOUND, "no such session");
        };
        let Some(s) = self
            .engine
            .session(id)
            .filter(|s| role.map_or(true, |r| r == s.role))
        else {
            return error(StatusCode::NOT_FOUND, "no such session");
        };
        match *method {
            Method::GET | Method::HEAD => {
                let mut out = String::new();
                Self::session_json(&mut out, &s);
                json(StatusCode::OK, out)
            }
            Method::DELETE => {
                if self.engine.kick(id) {
                    tracing::info!(
                        id,
                        protocol = s.tag.protocol,
                        stream = %arcly::peer_text::escaped(&s.key.to_string()),
                        "session kicked through the API"
                    );
                    Routed::Response({
                        let mut r = Response::new(Bytes::new());
                        *r.status_mut() = StatusCode::NO_CONTENT;
                        r
                    })
                } else {
                    error(StatusCode::NOT_FOUND, "no such session")
                }
            }
            _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        }
    }

    fn server_json(&self) -> Routed {
        let mut out = String::from("{\"name\":\"arcly\",\"version\":");
        push_str(&mut out, env!("CARGO_PKG_VERSION"));
        let _ = write!(
            out,
            ",\"uptime_seconds\":{:.3},\"streams\":{},\"sessions\":{},\"listeners\":[",
            self.started.elapsed().as_secs_f64(),
            self.engine.streams().len(),
            self.engine.session_count()
        );
        for (i, (proto, addr)) in self.settings.listeners.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"protocol\":");
            push_str(&mut out, proto);
            out.push_str(",\"address\":");
            push_str(&mut out, addr);
            out.push('}');
        }
        out.push_str("]}");
        json(StatusCode::OK, out)
    }

    fn v1(&self, req: &Request<Bytes>, path: &str) -> Routed {
        let method = req.method();
        let get = matches!(*method, Method::GET | Method::HEAD);
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match parts.as_slice() {
            ["streams"] if get => {
                let mut out = String::from("{\"streams\":[");
                for (i, s) in self.engine.streams_snapshot().iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.stream_json(&mut out, s);
                }
                out.push_str("]}");
                json(StatusCode::OK, out)
            }
            ["streams", app, name] if get => {
                let Ok(key) = StreamKey::new(app, name) else {
                    return error(StatusCode::NOT_FOUND, "no such stream");
                };
                match self.engine.stream_snapshot(&key) {
                    Some(s) => {
                        let mut out = String::new();
                        self.stream_json(&mut out, &s);
                        json(StatusCode::OK, out)
                    }
                    None => error(StatusCode::NOT_FOUND, "no such stream"),
                }
            }
            ["sessions"] if get => self.list_sessions(None),
            ["sessions", id] => self.one_session(method, id, None),
            ["publishers"] if get => self.list_sessions(Some(SessionRole::Publisher)),
            ["publishers", id] => self.one_session(method, id, Some(SessionRole::Publisher)),
            ["server"] if get => self.server_json(),
            ["config", "reload"] if *method == Method::POST => error(
                StatusCode::NOT_IMPLEMENTED,
                "configuration reload is not available in this build",
            ),
            ["streams"]
            | ["streams", _, _]
            | ["sessions"]
            | ["publishers"]
            | ["server"]
            | ["config", "reload"] => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            _ => error(StatusCode::NOT_FOUND, "no such API route"),
        }
    }
}

impl HttpService for ApiService {
    fn handle(&self, req: &Request<Bytes>, route: &RouteMatch, _now: Instant) -> Routed {
        if let Err(refused) = self.authorized(req) {
            return *refused;
        }
        match route.param("path") {
            Some(path) => self.v1(req, path),
            None => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics::render(&self.engine, &self.hls),
            ),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\n\u{1}");
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001\"");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }
}
