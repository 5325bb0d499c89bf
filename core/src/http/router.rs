//! The route table: services mounted by path pattern and method, each with
//! its own request-body limit (see the module documentation of
//! [`crate::http`]).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::request::safe_segment;
use super::{
    base, error, log_refusal, set, strip_for_head, unavailable, WallClock, CACHE_ERROR, TEXT_TYPE,
};
use crate::engine::Signal;
use crate::job::JobQueue;
use crate::time::Instant;

/// A service mounted in an [`HttpRouter`]: answers the requests of its
/// routes, at once or after a wait.
///
/// The router has already checked the request target (length, percent
/// decoding, no traversal: see [`crate::http`]), matched the route's path
/// pattern and method, and checked the body against the route's
/// [`Route::max_body`]. For HEAD the router drops the body of the answer.
pub trait HttpService: Send + Sync + fmt::Debug + 'static {
    /// Answers `req`, or parks it ([`Routed::Wait`], built with
    /// [`Wait::new`]). `route` holds the pattern's captures.
    fn handle(&self, req: &Request<Bytes>, route: &RouteMatch, now: Instant) -> Routed;

    /// Looks again at a request this service parked, after its
    /// [`Wait::signal`] moved or its [`Wait::deadline`] passed. Past the
    /// deadline the service must answer (the default answers 503).
    fn resume(&self, req: &Request<Bytes>, route: &RouteMatch, wait: Wait, now: Instant) -> Routed {
        let _ = (req, route, wait, now);
        Routed::Response(unavailable("request timed out"))
    }

    /// The UTC of `Instant` 0 of the adapter's clock, when the adapter has
    /// one ([`HttpRouter::set_wall_clock`]). Default: ignored.
    fn set_wall_clock(&self, wall: Option<WallClock>) {
        let _ = wall;
    }

    /// The service as [`Any`], for [`HttpRouter::service`].
    fn as_any(&self) -> &dyn Any;
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

/// A parked request (see [`Routed::Wait`]): what to wait for, plus the
/// parking service's own state (e.g. a slot of a bounded wait count,
/// released when the `Wait` is dropped).
pub struct Wait {
    /// Wait until this signal's epoch differs from [`epoch`](Self::epoch).
    pub signal: Signal,
    /// The epoch read before the service looked.
    pub epoch: u64,
    /// Resume at the latest then (the service answers once it passed).
    pub deadline: Instant,
    /// Index of the route whose service parked the request.
    route: usize,
    state: Box<dyn Any + Send + Sync>,
}

impl fmt::Debug for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait")
            .field("epoch", &self.epoch)
            .field("deadline", &self.deadline)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl Wait {
    /// A parked request of a service: wait on `signal` from `epoch` until
    /// `deadline`; `state` comes back with [`into_state`](Self::into_state)
    /// in [`HttpService::resume`].
    pub fn new<S: Any + Send + Sync>(
        signal: Signal,
        epoch: u64,
        deadline: Instant,
        state: S,
    ) -> Self {
        Wait {
            signal,
            epoch,
            deadline,
            route: usize::MAX,
            state: Box::new(state),
        }
    }

    /// The service's state, if it is an `S`.
    pub fn state<S: Any>(&self) -> Option<&S> {
        self.state.downcast_ref()
    }

    /// Takes the service's state out, if it is an `S`.
    pub fn into_state<S: Any>(self) -> Option<S> {
        self.state.downcast::<S>().ok().map(|b| *b)
    }
}

/// One segment of a [`Route`] pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// Matches this decoded segment exactly.
    Literal(String),
    /// `{name}`: any one segment, captured.
    Param(String),
    /// `{*name}` (last only): the rest of the path, zero or more segments
    /// and a trailing slash, captured joined by `/`.
    Rest(String),
}

/// Why a [`Route`] pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Patterns start with `/`.
    #[error("a route pattern starts with '/'")]
    NoLeadingSlash,
    /// An empty segment (`//`) other than a final trailing slash.
    #[error("empty segment in route pattern")]
    EmptySegment,
    /// `{*rest}` is allowed only as the last segment.
    #[error("'{{*rest}}' must be the last segment of a route pattern")]
    RestNotLast,
    /// A `{` `}` capture without a name, or a literal that is not a safe
    /// path segment.
    #[error("bad segment in route pattern: {0}")]
    BadSegment(String),
}

/// A path pattern, the methods it takes and its body limit; mounted with
/// [`HttpRouter::mount`].
///
/// Patterns are `/`-separated segments: a literal, `{name}` (one segment)
/// or, last, `{*name}` (the rest of the path, possibly empty). A pattern
/// ending in `/` matches only paths with the trailing slash (except after
/// `{*name}`, which takes any rest). Literals are compared with the
/// percent-decoded request segments.
#[derive(Debug, Clone)]
pub struct Route {
    pattern: String,
    segs: Vec<Seg>,
    trailing: bool,
    /// `None`: any method.
    methods: Option<Vec<Method>>,
    max_body: usize,
}

impl Route {
    /// A route for `pattern`, taking GET and HEAD, no request body.
    pub fn new(pattern: &str) -> Result<Route, PatternError> {
        let rest = pattern
            .strip_prefix('/')
            .ok_or(PatternError::NoLeadingSlash)?;
        let mut parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let trailing = parts.last() == Some(&"");
        if trailing {
            parts.pop();
        }
        let mut segs = Vec::with_capacity(parts.len());
        for p in &parts {
            if matches!(segs.last(), Some(Seg::Rest(_))) {
                return Err(PatternError::RestNotLast);
            }
            let seg = if let Some(inner) = p.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                match inner.strip_prefix('*') {
                    Some(name) if !name.is_empty() => Seg::Rest(name.to_owned()),
                    None if !inner.is_empty() => Seg::Param(inner.to_owned()),
                    _ => return Err(PatternError::BadSegment((*p).to_owned())),
                }
            } else if p.is_empty() {
                return Err(PatternError::EmptySegment);
            } else {
                let lit = safe_segment(p).map_err(|_| PatternError::BadSegment((*p).to_owned()))?;
                Seg::Literal(lit)
            };
            segs.push(seg);
        }
        if trailing && matches!(segs.last(), Some(Seg::Rest(_))) {
            return Err(PatternError::RestNotLast);
        }
        Ok(Route {
            pattern: pattern.to_owned(),
            segs,
            trailing,
            methods: Some(vec![Method::GET, Method::HEAD]),
            max_body: 0,
        })
    }

    /// Takes exactly these methods (replaces GET and HEAD). OPTIONS not
    /// listed here is answered by the router (CORS preflight).
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = Some(methods.into_iter().collect());
        self
    }

    /// Takes every method (the service answers 405 itself where it must).
    pub fn any_method(mut self) -> Self {
        self.methods = None;
        self
    }

    /// Most request-body bytes taken (default 0); a longer body is
    /// answered 413 before it is read, as far as `Content-Length` tells.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The pattern this route was made from.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The body limit ([`max_body`](Self::max_body)).
    pub fn body_limit(&self) -> usize {
        self.max_body
    }

    fn takes(&self, m: &Method) -> bool {
        self.methods.as_ref().map_or(true, |ms| ms.contains(m))
    }

    /// Matches decoded path segments; the captures on success.
    fn matches(&self, path: &Path) -> Option<RouteMatch> {
        let mut params = Vec::new();
        let mut i = 0;
        for seg in &self.segs {
            match seg {
                Seg::Rest(name) => {
                    let mut rest = path.segs.get(i..).unwrap_or_default().join("/");
                    if path.trailing && !rest.is_empty() {
                        rest.push('/');
                    }
                    params.push((name.clone(), rest));
                    return Some(RouteMatch { params });
                }
                Seg::Literal(lit) => {
                    if path.segs.get(i) != Some(lit) {
                        return None;
                    }
                }
                Seg::Param(name) => {
                    params.push((name.clone(), path.segs.get(i)?.clone()));
                }
            }
            i += 1;
        }
        (i == path.segs.len() && self.trailing == path.trailing).then_some(RouteMatch { params })
    }
}

/// The captures of a matched [`Route`] pattern (percent-decoded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMatch {
    params: Vec<(String, String)>,
}

impl RouteMatch {
    /// The value captured by `{name}` or `{*name}`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A request path split into checked, percent-decoded segments.
struct Path {
    segs: Vec<String>,
    trailing: bool,
}

/// Splits and checks `path` (origin form) like [`super::request`] does for
/// HLS: every segment decoded, no empty, dot or unsafe segment.
fn split_path(path: &str, max_segments: usize) -> Result<Path, &'static str> {
    let rest = path.strip_prefix('/').ok_or("path must start with /")?;
    if rest.is_empty() {
        return Ok(Path {
            segs: Vec::new(),
            trailing: false,
        });
    }
    let mut raw: Vec<&str> = rest.split('/').collect();
    if raw.len() > max_segments {
        return Err("too many path segments");
    }
    let trailing = raw.last() == Some(&"");
    if trailing {
        raw.pop();
    }
    let mut segs = Vec::with_capacity(raw.len());
    for r in raw {
        segs.push(safe_segment(r).map_err(|e| match e {
            super::request::TargetError::BadPath(why) => why,
            super::request::TargetError::NotFound => "bad path",
        })?);
    }
    Ok(Path { segs, trailing })
}

/// Settings of an [`HttpRouter`] (the table itself is built with
/// [`HttpRouter::mount`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RouterConfig {
    /// Longest request target (path and query) accepted; longer → 414.
    pub max_uri_len: usize,
    /// Most path segments; more → 400.
    pub max_path_segments: usize,
    /// Capacity of the router's [`JobQueue`].
    pub job_capacity: usize,
}
/// Builder-style setters: the struct is `#[non_exhaustive]`, so other
/// crates start from its default (or constructor) value and chain these.
impl RouterConfig {
    /// Sets [`max_uri_len`](Self::max_uri_len).
    #[must_use]
    pub fn with_max_uri_len(mut self, max_uri_len: usize) -> Self {
        self.max_uri_len = max_uri_len;
        self
    }

    /// Sets [`max_path_segments`](Self::max_path_segments).
    #[must_use]
    pub fn with_max_path_segments(mut self, max_path_segments: usize) -> Self {
        self.max_path_segments = max_path_segments;
        self
    }

    /// Sets [`job_capacity`](Self::job_capacity).
    #[must_use]
    pub fn with_job_capacity(mut self, job_capacity: usize) -> Self {
        self.job_capacity = job_capacity;
        self
    }
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_uri_len: 2048,
            max_path_segments: 32,
            job_capacity: crate::job::DEFAULT_JOB_QUEUE_CAPACITY,
        }
    }
}

/// What the adapter does with a request head, before reading the body
/// ([`HttpRouter::admit`]).
#[derive(Debug)]
pub enum Admit {
    /// Read a body of at most `limit` bytes (past it: answer 413), then
    /// call [`HttpRouter::handle`].
    Read {
        /// The route's [`Route::max_body`].
        limit: usize,
    },
    /// Send this response without reading the body (404, 405, 413 by
    /// `Content-Length`, a CORS preflight, ...). A connection whose request
    /// announced a body is closed after it.
    Respond(Response<Bytes>),
}

struct Mounted {
    route: Route,
    service: Arc<dyn HttpService>,
}

/// The request → response router: a table of [`Route`]s, each to an
/// [`HttpService`] (see the module documentation of [`crate::http`]).
///
/// Invariants: routes are tried in mount order; the first whose pattern
/// matches and which takes the method answers. A path some route matches
/// but none for the method gets 405 with `Allow` (OPTIONS: a CORS
/// preflight listing the same methods); a path no route matches, 404.
pub struct HttpRouter {
    config: RouterConfig,
    routes: Vec<Mounted>,
    jobs: JobQueue,
}

impl fmt::Debug for HttpRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes: Vec<&str> = self.routes.iter().map(|m| m.route.pattern()).collect();
        f.debug_struct("HttpRouter")
            .field("config", &self.config)
            .field("routes", &routes)
            .finish_non_exhaustive()
    }
}

fn allow_value(methods: &[Method]) -> String {
    let mut s = String::new();
    for m in methods.iter().chain(std::iter::once(&Method::OPTIONS)) {
        if !s.is_empty() {
            s.push_str(", ");
        }
        s.push_str(m.as_str());
    }
    s
}

fn preflight<B>(req: &Request<B>, allow: &str) -> Response<Bytes> {
    let mut resp = base(StatusCode::NO_CONTENT, TEXT_TYPE, CACHE_ERROR, Bytes::new());
    resp.headers_mut().remove(header::CONTENT_LENGTH);
    resp.headers_mut().remove(header::CONTENT_TYPE);
    if let Ok(v) = HeaderValue::from_str(allow) {
        resp.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_METHODS, v.clone());
        resp.headers_mut().insert(header::ALLOW, v);
    }
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

fn too_large() -> Response<Bytes> {
    let mut resp = error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    set(&mut resp, header::CONNECTION, "close");
    resp
}

impl HttpRouter {
    /// A router with no route (every request 404) and its job queue.
    pub fn empty(config: RouterConfig) -> Self {
        HttpRouter {
            jobs: JobQueue::new(config.job_capacity),
            config,
            routes: Vec::new(),
        }
    }

    /// Adds `route` → `service` after the routes mounted so far.
    pub fn mount(&mut self, route: Route, service: Arc<dyn HttpService>) -> &mut Self {
        self.routes.push(Mounted { route, service });
        self
    }

    /// Adds `route` → `service` before every route mounted so far (so a
    /// specific path, e.g. a page below `/<app>/<stream>/`, is answered by
    /// its service and not by a catch-all such as HLS's `/{*path}`).
    pub fn mount_first(&mut self, route: Route, service: Arc<dyn HttpService>) -> &mut Self {
        self.routes.insert(0, Mounted { route, service });
        self
    }

    /// The background jobs the mounted services start: the adapter reads
    /// [`JobQueue::signal`]'s epoch, drains [`JobQueue::poll`] and runs each
    /// job (see [`crate::job`]).
    pub fn jobs(&self) -> &JobQueue {
        &self.jobs
    }

    /// The settings.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// The first mounted service of type `S`.
    pub fn service<S: HttpService>(&self) -> Option<&S> {
        self.routes
            .iter()
            .find_map(|m| m.service.as_any().downcast_ref::<S>())
    }

    /// Tells every service the UTC of `Instant` 0 of the adapter's clock
    /// ([`HttpService::set_wall_clock`]).
    pub fn set_wall_clock(&self, wall: Option<WallClock>) {
        for m in &self.routes {
            m.service.set_wall_clock(wall);
        }
    }

    /// The route for `req`, or the router's own answer (a private helper:
    /// the answer is moved out at once).
    #[allow(clippy::result_large_err)]
    fn resolve<B>(&self, req: &Request<B>) -> Result<(usize, RouteMatch), Response<Bytes>> {
        let uri = req.uri();
        let uri_len = uri
            .path_and_query()
            .map_or(uri.path().len(), |pq| pq.as_str().len());
        if uri_len > self.config.max_uri_len {
            return Err(error(StatusCode::URI_TOO_LONG, "request target too long"));
        }
        let path = split_path(uri.path(), self.config.max_path_segments)
            .map_err(|why| error(StatusCode::BAD_REQUEST, why))?;
        let mut allowed: Vec<Method> = Vec::new();
        let mut any_path = false;
        for (i, m) in self.routes.iter().enumerate() {
            let Some(found) = m.route.matches(&path) else {
                continue;
            };
            any_path = true;
            if m.route.takes(req.method()) {
                return Ok((i, found));
            }
            for meth in m.route.methods.iter().flatten() {
                if !allowed.contains(meth) && *meth != Method::OPTIONS {
                    allowed.push(meth.clone());
                }
            }
        }
        if !any_path {
            return Err(error(StatusCode::NOT_FOUND, "no such resource"));
        }
        let allow = allow_value(&allowed);
        if req.method() == Method::OPTIONS {
            return Err(preflight(req, &allow));
        }
        let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here");
        if let Ok(v) = HeaderValue::from_str(&allow) {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        Err(resp)
    }

    /// Looks at a request head before its body is read: the body limit of
    /// its route, or an answer that needs no body (see [`Admit`]).
    pub fn admit<B>(&self, req: &Request<B>) -> Admit {
        let head = req.method() == Method::HEAD;
        match self.resolve(req) {
            Err(resp) => Admit::Respond(strip_for_head(resp, head)),
            Ok((i, _)) => {
                let limit = self.routes.get(i).map_or(0, |m| m.route.max_body);
                let declared = req
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                match declared {
                    Some(n) if n > limit as u64 => {
                        Admit::Respond(strip_for_head(too_large(), head))
                    }
                    _ => Admit::Read { limit },
                }
            }
        }
    }

    /// Routes one request with its whole body.
    pub fn handle(&self, req: &Request<Bytes>, now: Instant) -> Routed {
        let head = req.method() == Method::HEAD;
        let (i, found) = match self.resolve(req) {
            Ok(r) => r,
            Err(resp) => return Self::finish(req, now, Routed::Response(resp), usize::MAX, head),
        };
        let Some(m) = self.routes.get(i) else {
            return Routed::Response(error(StatusCode::NOT_FOUND, "no such resource"));
        };
        if req.body().len() > m.route.max_body {
            return Self::finish(req, now, Routed::Response(too_large()), i, head);
        }
        Self::finish(req, now, m.service.handle(req, &found, now), i, head)
    }

    /// Routes a parked request again, after its [`Wait::signal`] moved or
    /// its [`Wait::deadline`] passed: the service that parked it answers or
    /// parks it again (past the deadline it answers, e.g. 503).
    pub fn resume(&self, req: &Request<Bytes>, wait: Wait, now: Instant) -> Routed {
        let head = req.method() == Method::HEAD;
        let i = wait.route;
        let Some(m) = self.routes.get(i) else {
            return Routed::Response(strip_for_head(unavailable("route gone"), head));
        };
        let found = split_path(req.uri().path(), self.config.max_path_segments)
            .ok()
            .and_then(|p| m.route.matches(&p))
            .unwrap_or_default();
        Self::finish(req, now, m.service.resume(req, &found, wait, now), i, head)
    }

    /// A service's answer: logged when it refuses ([`log_refusal`]), the
    /// body dropped for HEAD; a wait tagged with its route.
    fn finish(
        req: &Request<Bytes>,
        now: Instant,
        routed: Routed,
        route: usize,
        head: bool,
    ) -> Routed {
        match routed {
            Routed::Response(resp) => {
                log_refusal(req, &resp, now);
                Routed::Response(strip_for_head(resp, head))
            }
            Routed::Wait(mut w) => {
                w.route = route;
                Routed::Wait(w)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn path(p: &str) -> Path {
        split_path(p, 32).unwrap()
    }

    #[test]
    fn patterns() {
        let r = Route::new("/{app}/{stream}/whep").unwrap();
        let m = r.matches(&path("/live/c%61m/whep")).unwrap();
        assert_eq!(m.param("app"), Some("live"));
        assert_eq!(m.param("stream"), Some("cam"));
        assert!(r.matches(&path("/live/cam/whep/")).is_none());
        assert!(r.matches(&path("/live/cam/whip")).is_none());
        assert!(r.matches(&path("/live/whep")).is_none());

        let rest = Route::new("/{*path}").unwrap();
        assert_eq!(rest.matches(&path("/")).unwrap().param("path"), Some(""));
        assert_eq!(
            rest.matches(&path("/live/cam/")).unwrap().param("path"),
            Some("live/cam/")
        );
        let slash = Route::new("/api/").unwrap();
        assert!(slash.matches(&path("/api/")).is_some());
        assert!(slash.matches(&path("/api")).is_none());
        let root = Route::new("/").unwrap();
        assert!(root.matches(&path("/")).is_some());

        assert_eq!(Route::new("x").unwrap_err(), PatternError::NoLeadingSlash);
        assert_eq!(Route::new("/a//b").unwrap_err(), PatternError::EmptySegment);
        assert_eq!(
            Route::new("/{*a}/b").unwrap_err(),
            PatternError::RestNotLast
        );
        assert!(matches!(
            Route::new("/{}"),
            Err(PatternError::BadSegment(_))
        ));
        assert!(matches!(
            Route::new("/.."),
            Err(PatternError::BadSegment(_))
        ));
    }
}
