//! WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep) signalling: HTTP routes
//! mounted in an [`arcly::http::HttpRouter`] beside HLS.
//!
//! | request | answer |
//! |---|---|
//! | `POST /<app>/<stream>/whip` or `/whep`, `application/sdp` | 201, `Location: /<app>/<stream>/<kind>/<id>`, `ETag`, answer SDP with every server host candidate (RFC 9725 §4.2) |
//! | `PATCH <Location>`, `application/trickle-ice-sdpfrag` | 204 (candidates added); ICE restart → 422; stale `If-Match` → 412 (RFC 9725 §4.3) |
//! | `DELETE <Location>` | 200, the session and its engine publisher/subscription gone; later → 404 (RFC 9725 §4.2) |
//! | `OPTIONS` (both) | 204 with CORS, `Accept-Post: application/sdp` on the endpoint, `Link` ICE servers if configured |
//!
//! Errors: 415 wrong content type, 400 malformed SDP or stream key, 422
//! unsupported or too many tracks (the whole offer is refused), 409 a
//! second publisher, 404 WHEP of a stream that is not live or an unknown
//! session, 413 body too large (by the router), 503 + `Retry-After` when
//! a session limit (overall or per client IP) is reached. `Authorization:
//! Bearer` is handed to admission as [`Credentials::Token`]; a deferred
//! decision parks the request on its signal.
//!
//! The session id in `Location` is 16 bytes of the [`Random`] source the
//! application gives (a CSPRNG: `getrandom`); the ICE credentials' seed
//! comes from it too. Requests that wait (admission, the service's answer)
//! are parked with [`Routed::Wait`] on the reply's signal: no thread blocks.

use std::any::Any;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arcly::admission::{
    Admission, AdmissionKind, AdmissionRequest, AdmissionWait, Credentials, Decision, RejectCode,
    Rejection, MAX_ADMISSION_WAIT,
};
use arcly::datagram::{reply, InboxSender, ReplyReceiver};
use arcly::engine::{PublishError, Recv, Signal, StreamKey, SubscribeError};
use arcly::http::{ClientAddr, HttpRouter, HttpService, Route, RouteMatch, Routed, Wait};
use arcly::log_limit::LogLimiter;
use arcly::peer_text::escaped;
use arcly::{Codec, Engine, Instant};
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::service::{
    Command, EngineSide, Kind, OpenError, OpenRequest, Opened, PatchOutcome, ResourceId,
};
use crate::whep::{WebRtcError, MAX_OFFER_LEN};

/// Largest trickle-ICE `PATCH` body (bytes).
pub const MAX_PATCH_LEN: usize = 16 * 1024;
/// Most m-lines of one kind (audio, video) in an offer: one; more are
/// refused with 422 rather than half accepted.
pub const MAX_TRACKS_PER_KIND: usize = 1;
/// How long a request waits for the WebRTC service's answer.
pub const SERVICE_WAIT: Duration = Duration::from_secs(5);
/// Longest deferred admission a WHIP/WHEP request waits for.
pub const ADMISSION_WAIT: Duration = Duration::from_secs(10);

const SDP: &str = "application/sdp";
const SDPFRAG: &str = "application/trickle-ice-sdpfrag";
const TEXT: &str = "text/plain; charset=utf-8";
const EXPOSE: &str = "Location, ETag, Link, Accept-Post, Accept-Patch, Retry-After";
const ALLOW_HEADERS: &str = "Authorization, Content-Type, If-Match";

/// Refused WHIP/WHEP requests (415, 400, 422, 409, 503): 10 lines per 10 s.
static LOG_REFUSED: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));

/// Random bytes from a CSPRNG (the application reads the OS's, e.g.
/// `getrandom::fill`): input, so the routes stay free of I/O.
pub type Random = Arc<dyn Fn(&mut [u8]) + Send + Sync>;

/// What the WHIP/WHEP routes need.
#[derive(Clone)]
pub struct SignallingConfig {
    /// The engine streams are published into and played from.
    pub engine: Engine,
    /// Asked for every publish and play.
    pub admission: Arc<dyn Admission>,
    /// The WebRTC service's inbox (see [`crate::WebRtcServiceFactory::sender`]).
    pub sender: InboxSender<Command>,
    /// CSPRNG bytes for session ids and ICE credentials.
    pub random: Random,
    /// ICE servers sent as `Link: <url>; rel="ice-server"` (RFC 9725 §4.6).
    pub ice_servers: Vec<String>,
}

impl core::fmt::Debug for SignallingConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SignallingConfig")
            .field("ice_servers", &self.ice_servers)
            .finish_non_exhaustive()
    }
}

/// Mounts the WHIP and WHEP endpoints and session resources in `router`
/// (`/{app}/{stream}/whip`, `/{app}/{stream}/whep`, and
/// `/{app}/{stream}/whip/{id}`, `/{app}/{stream}/whep/{id}`).
pub fn mount(router: &mut HttpRouter, config: SignallingConfig) {
    let shared = Arc::new(config);
    for kind in [Kind::Whip, Kind::Whep] {
        let service = Arc::new(Signalling {
            kind,
            config: shared.clone(),
        });
        let endpoint = format!("/{{app}}/{{stream}}/{}", kind.as_str());
        let resource = format!("/{{app}}/{{stream}}/{}/{{id}}", kind.as_str());
        if let Ok(route) = Route::new(&endpoint) {
            router.mount(
                route
                    .methods([Method::POST, Method::OPTIONS])
                    .max_body(MAX_OFFER_LEN),
                service.clone(),
            );
        }
        if let Ok(route) = Route::new(&resource) {
            router.mount(
                route
                    .methods([Method::PATCH, Method::DELETE, Method::OPTIONS])
                    .max_body(MAX_PATCH_LEN),
                service,
            );
        }
    }
}

/// One kind's routes (WHIP or WHEP).
struct Signalling {
    kind: Kind,
    config: Arc<SignallingConfig>,
}

impl core::fmt::Debug for Signalling {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Signalling")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A parked request's state.
enum Parked {
    /// Waiting for a deferred admission decision.
    Admission { wait: AdmissionWait, offer: Offer },
    /// Waiting for the service to build the session.
    Open {
        rx: ReplyReceiver<Result<Opened, OpenError>>,
        location: String,
        deadline: Instant,
    },
    /// Waiting for a PATCH outcome.
    Patch {
        rx: ReplyReceiver<PatchOutcome>,
        deadline: Instant,
    },
    /// Waiting for a DELETE outcome.
    Delete {
        rx: ReplyReceiver<bool>,
        deadline: Instant,
    },
}

/// A checked offer, kept while admission is pending.
struct Offer {
    key: StreamKey,
    sdp: String,
    remote_ufrag: Option<String>,
    client: IpAddr,
}

fn response(status: StatusCode, ctype: Option<&'static str>, body: Bytes) -> Response<Bytes> {
    let len = body.len() as u64;
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Some(ctype) = ctype {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// An error answer: `"<code> <reason>: <why>"`.
fn error(status: StatusCode, why: &str) -> Response<Bytes> {
    let reason = status.canonical_reason().unwrap_or("");
    let body = format!("{} {reason}: {why}\n", status.as_u16());
    let mut resp = response(status, Some(TEXT), Bytes::from(body));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// The status for an admission or engine refusal.
fn rejection_status(code: RejectCode) -> StatusCode {
    match code {
        RejectCode::BadRequest => StatusCode::BAD_REQUEST,
        RejectCode::Unauthorized => StatusCode::UNAUTHORIZED,
        RejectCode::Forbidden => StatusCode::FORBIDDEN,
        RejectCode::NotFound => StatusCode::NOT_FOUND,
        RejectCode::Conflict => StatusCode::CONFLICT,
        RejectCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn header_str<B>(req: &Request<B>, name: HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request's media type (parameters ignored) is `want`.
fn content_type_is<B>(req: &Request<B>, want: &str) -> bool {
    header_str(req, header::CONTENT_TYPE)
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(want))
}

/// `Authorization: Bearer <token>` (RFC 6750 §2.1) as credentials.
fn credentials<B>(req: &Request<B>) -> Credentials {
    header_str(req, header::AUTHORIZATION)
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        })
        .filter(|t| !t.is_empty())
        .map_or(Credentials::None, Credentials::Token)
}

/// Why an offer is refused before the service sees it.
#[derive(Debug, PartialEq, Eq)]
enum OfferProblem {
    /// Not SDP at all (400).
    Malformed(&'static str),
    /// A track this server does not take (422).
    Unsupported(String),
}

/// Checks the offer's m-lines: at most one audio and one video, each
/// offering the codec the server speaks (H.264 / Opus), nothing else
/// (no data channel), so an offer is taken whole or refused whole.
/// Returns the offer's session `a=ice-ufrag`.
fn check_offer(sdp: &str) -> Result<Option<String>, OfferProblem> {
    let mut lines = sdp.lines().map(|l| l.trim_end_matches('\r'));
    if lines.next().map(str::trim) != Some("v=0") {
        return Err(OfferProblem::Malformed("an SDP offer starts with v=0"));
    }
    let (mut audio, mut video) = (0usize, 0usize);
    let mut current: Option<(&str, bool)> = None;
    let mut ufrag = None;
    let finish = |m: Option<(&str, bool)>| -> Result<(), OfferProblem> {
        match m {
            Some((kind, false)) => Err(OfferProblem::Unsupported(format!(
                "the {kind} m-line offers no codec this server takes ({})",
                if kind == "video" { "H.264" } else { "Opus" }
            ))),
            _ => Ok(()),
        }
    };
    for line in lines {
        if let Some(m) = line.strip_prefix("m=") {
            finish(current.take())?;
            let kind = m.split(' ').next().unwrap_or("");
            match kind {
                "audio" => audio += 1,
                "video" => video += 1,
                other => {
                    return Err(OfferProblem::Unsupported(format!(
                        "m-line of type {} is not supported",
                        escaped(other)
                    )))
                }
            }
            if audio > MAX_TRACKS_PER_KIND || video > MAX_TRACKS_PER_KIND {
                return Err(OfferProblem::Unsupported(
                    "too many tracks: at most one audio and one video".to_owned(),
                ));
            }
            current = Some((if kind == "audio" { "audio" } else { "video" }, false));
        } else if let Some(map) = line.strip_prefix("a=rtpmap:") {
            let codec = map
                .split_once(' ')
                .map(|(_, c)| c.to_ascii_lowercase())
                .unwrap_or_default();
            if let Some((kind, found)) = current.as_mut() {
                let wanted = if *kind == "video" {
                    "h264/90000"
                } else {
                    "opus/48000"
                };
                if codec.starts_with(wanted) {
                    *found = true;
                }
            }
        } else if let Some(u) = line.strip_prefix("a=ice-ufrag:") {
            ufrag.get_or_insert_with(|| u.trim().to_owned());
        }
    }
    finish(current)?;
    if audio + video == 0 {
        return Err(OfferProblem::Unsupported(
            "the offer has no media".to_owned(),
        ));
    }
    Ok(ufrag)
}

impl Signalling {
    fn client<B>(req: &Request<B>) -> SocketAddr {
        ClientAddr::of(req).unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
    }

    fn refuse<B>(&self, req: &Request<B>, now: Instant, status: StatusCode, why: &str) -> Routed {
        if let Some(suppressed) = LOG_REFUSED.check(now) {
            let client = Self::client(req);
            tracing::info!(
                kind = self.kind.as_str(),
                %client,
                path = %escaped(req.uri().path()),
                status = status.as_u16(),
                suppressed,
                "WHIP/WHEP request refused: {why}"
            );
        }
        Routed::Response(error(status, why))
    }

    fn options(&self, resource: bool) -> Routed {
        let mut resp = response(StatusCode::NO_CONTENT, None, Bytes::new());
        resp.headers_mut().remove(header::CONTENT_LENGTH);
        let methods = if resource {
            "PATCH, DELETE, OPTIONS"
        } else {
            "POST, OPTIONS"
        };
        let h = resp.headers_mut();
        h.insert(header::ALLOW, HeaderValue::from_static(methods));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(methods),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        if resource {
            h.insert(
                HeaderName::from_static("accept-patch"),
                HeaderValue::from_static(SDPFRAG),
            );
        } else {
            h.insert(
                HeaderName::from_static("accept-post"),
                HeaderValue::from_static(SDP),
            );
        }
        self.add_links(&mut resp);
        Routed::Response(resp)
    }

    fn add_links(&self, resp: &mut Response<Bytes>) {
        for url in &self.config.ice_servers {
            if let Ok(v) = HeaderValue::from_str(&format!("<{url}>; rel=\"ice-server\"")) {
                resp.headers_mut().append(header::LINK, v);
            }
        }
    }

    fn key(route: &RouteMatch) -> Option<StreamKey> {
        StreamKey::new(route.param("app")?, route.param("stream")?).ok()
    }

    fn post(&self, req: &Request<Bytes>, route: &RouteMatch, now: Instant) -> Routed {
        if !content_type_is(req, SDP) {
            return self.refuse(
                req,
                now,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the offer must be application/sdp",
            );
        }
        let Some(key) = Self::key(route) else {
            return self.refuse(req, now, StatusCode::BAD_REQUEST, "bad stream key");
        };
        let Ok(sdp) = std::str::from_utf8(req.body()) else {
            return self.refuse(req, now, StatusCode::BAD_REQUEST, "the offer is not UTF-8");
        };
        let remote_ufrag = match check_offer(sdp) {
            Ok(u) => u,
            Err(OfferProblem::Malformed(why)) => {
                return self.refuse(req, now, StatusCode::BAD_REQUEST, why)
            }
            Err(OfferProblem::Unsupported(why)) => {
                return self.refuse(req, now, StatusCode::UNPROCESSABLE_ENTITY, &why)
            }
        };
        let client = Self::client(req);
        let offer = Offer {
            key: key.clone(),
            sdp: sdp.to_owned(),
            remote_ufrag,
            client: client.ip(),
        };
        let areq = AdmissionRequest {
            protocol: self.kind.as_str(),
            kind: match self.kind {
                Kind::Whip => AdmissionKind::Publish,
                Kind::Whep => AdmissionKind::Play,
            },
            key,
            query: req.uri().query().unwrap_or("").to_owned(),
            peer: client,
            credentials: credentials(req),
        };
        match self.config.admission.admit(&areq) {
            Decision::Allow => self.admitted(req, now, offer),
            Decision::Deny(r) => self.rejected(req, now, &r),
            Decision::Later(pending) => {
                let wait = pending.start(now, ADMISSION_WAIT.min(MAX_ADMISSION_WAIT));
                let signal = wait.signal().clone();
                let epoch = signal.epoch();
                match wait.poll(now) {
                    Some(Ok(())) => self.admitted(req, now, offer),
                    Some(Err(r)) => self.rejected(req, now, &r),
                    None => {
                        let deadline = wait.deadline();
                        Routed::Wait(Wait::new(
                            signal,
                            epoch,
                            deadline,
                            Parked::Admission { wait, offer },
                        ))
                    }
                }
            }
            _ => self.refuse(req, now, StatusCode::FORBIDDEN, "refused by admission"),
        }
    }

    fn rejected<B>(&self, req: &Request<B>, now: Instant, r: &Rejection) -> Routed {
        self.refuse(req, now, rejection_status(r.code), &r.to_string())
    }

    /// Admission passed: takes the engine side and hands the session to
    /// the service.
    fn admitted(&self, req: &Request<Bytes>, now: Instant, offer: Offer) -> Routed {
        let engine = match self.kind {
            Kind::Whip => match self
                .config
                .engine
                .publish_from(offer.key.clone(), offer.client)
            {
                Ok(p) => EngineSide::Publish(p),
                Err(e) => {
                    let status = match e {
                        PublishError::AlreadyPublishing(_) => StatusCode::CONFLICT,
                        PublishError::UnknownApp(_) => StatusCode::NOT_FOUND,
                        _ => StatusCode::SERVICE_UNAVAILABLE,
                    };
                    return self.refuse(req, now, status, &e.to_string());
                }
            },
            Kind::Whep => match self.config.engine.subscribe(&offer.key) {
                Ok(s) => {
                    if has_b_frames(&self.config.engine, &offer.key) {
                        let why = WebRtcError::BFrames.to_string();
                        return self.refuse(req, now, StatusCode::UNPROCESSABLE_ENTITY, &why);
                    }
                    EngineSide::Play(s)
                }
                Err(e) => {
                    let status = match e {
                        SubscribeError::TooManySubscribers(..) => StatusCode::SERVICE_UNAVAILABLE,
                        _ => StatusCode::NOT_FOUND,
                    };
                    return self.refuse(req, now, status, &e.to_string());
                }
            },
        };
        let mut random = [0u8; 24];
        (self.config.random)(&mut random);
        let mut id = [0u8; 16];
        id.copy_from_slice(random.get(..16).unwrap_or(&[0; 16]));
        let mut seed = [0u8; 8];
        seed.copy_from_slice(random.get(16..).unwrap_or(&[0; 8]));
        let resource = ResourceId(id);
        let location = format!(
            "/{}/{}/{}/{resource}",
            percent(offer.key.app()),
            percent(offer.key.name()),
            self.kind.as_str()
        );
        let wake = Signal::new();
        let epoch = wake.epoch();
        let (tx, rx) = reply(wake.clone());
        let cmd = Command::Open(Box::new(OpenRequest {
            engine,
            key: offer.key,
            offer: offer.sdp,
            remote_ufrag: offer.remote_ufrag,
            client: offer.client,
            resource,
            seed: u64::from_le_bytes(seed),
            reply: tx,
        }));
        if let Err((e, _)) = self.config.sender.fork().send(cmd) {
            return self.refuse(req, now, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
        let deadline = now + SERVICE_WAIT;
        Routed::Wait(Wait::new(
            wake,
            epoch,
            deadline,
            Parked::Open {
                rx,
                location,
                deadline,
            },
        ))
    }

    fn opened(&self, location: &str, result: Result<Opened, OpenError>) -> Response<Bytes> {
        match result {
            Ok(opened) => {
                let mut resp = response(StatusCode::CREATED, Some(SDP), Bytes::from(opened.answer));
                if let Ok(v) = HeaderValue::from_str(location) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                if let Ok(v) = HeaderValue::from_str(&opened.etag) {
                    resp.headers_mut().insert(header::ETAG, v);
                }
                self.add_links(&mut resp);
                resp
            }
            Err(OpenError::Offer(WebRtcError::MalformedOffer(why))) => error(
                StatusCode::BAD_REQUEST,
                &format!("malformed SDP offer: {why}"),
            ),
            Err(OpenError::Offer(WebRtcError::OfferTooLarge(_))) => {
                error(StatusCode::PAYLOAD_TOO_LARGE, "SDP offer too large")
            }
            Err(OpenError::Offer(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        }
    }

    fn resource_command(&self, req: &Request<Bytes>, route: &RouteMatch, now: Instant) -> Routed {
        let (Some(key), Some(resource)) = (
            Self::key(route),
            route.param("id").and_then(ResourceId::parse),
        ) else {
            return Routed::Response(error(StatusCode::NOT_FOUND, "no such session"));
        };
        let wake = Signal::new();
        let epoch = wake.epoch();
        let deadline = now + SERVICE_WAIT;
        let (cmd, parked) = if req.method() == Method::DELETE {
            let (tx, rx) = reply(wake.clone());
            (
                Command::Delete {
                    resource,
                    kind: self.kind,
                    key,
                    reply: tx,
                },
                Parked::Delete { rx, deadline },
            )
        } else {
            if !content_type_is(req, SDPFRAG) {
                return self.refuse(
                    req,
                    now,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "a PATCH must be application/trickle-ice-sdpfrag",
                );
            }
            let Ok(fragment) = std::str::from_utf8(req.body()) else {
                return self.refuse(
                    req,
                    now,
                    StatusCode::BAD_REQUEST,
                    "the fragment is not UTF-8",
                );
            };
            let (tx, rx) = reply(wake.clone());
            (
                Command::Patch {
                    resource,
                    kind: self.kind,
                    key,
                    if_match: header_str(req, header::IF_MATCH).map(str::to_owned),
                    fragment: fragment.to_owned(),
                    reply: tx,
                },
                Parked::Patch { rx, deadline },
            )
        };
        if let Err((e, _)) = self.config.sender.fork().send(cmd) {
            return self.refuse(req, now, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
        Routed::Wait(Wait::new(wake, epoch, deadline, parked))
    }
}

/// Most cached frames [`has_b_frames`] looks at.
const B_FRAME_PROBE: usize = 1024;

/// Whether the stream's cached GOP has H.264 B-frames (a video frame whose
/// PTS differs from its DTS): browsers play WebRTC video in arrival order,
/// so such a stream would stutter; it is refused instead. Reads a probe
/// subscriber (the GOP cache, at most [`B_FRAME_PROBE`] frames, shared
/// `Arc`s: no copy). A stream whose cache is still empty passes here; the
/// session then ends at its first B-frame ([`WebRtcError::BFrames`]).
fn has_b_frames(engine: &Engine, key: &StreamKey) -> bool {
    let Ok(mut probe) = engine.subscribe(key) else {
        return false;
    };
    for _ in 0..B_FRAME_PROBE {
        match probe.recv() {
            Recv::Frame(e) => {
                let f = &e.frame;
                if f.codec == Codec::H264 && !f.is_config() && f.pts != f.dts {
                    return true;
                }
            }
            _ => return false,
        }
    }
    false
}

/// Percent-encodes a path segment (everything outside RFC 3986
/// unreserved).
fn percent(seg: &str) -> String {
    let mut out = String::with_capacity(seg.len());
    for b in seg.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A parked request's outcome, or a new wait on the same reply.
fn again<S: Any + Send + Sync>(signal: Signal, deadline: Instant, state: S) -> Routed {
    let epoch = signal.epoch();
    Routed::Wait(Wait::new(signal, epoch, deadline, state))
}

impl HttpService for Signalling {
    fn handle(&self, req: &Request<Bytes>, route: &RouteMatch, now: Instant) -> Routed {
        let resource = route.param("id").is_some();
        match *req.method() {
            Method::OPTIONS => self.options(resource),
            Method::POST if !resource => self.post(req, route, now),
            Method::PATCH | Method::DELETE if resource => self.resource_command(req, route, now),
            _ => Routed::Response(error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed here",
            )),
        }
    }

    fn resume(
        &self,
        req: &Request<Bytes>,
        _route: &RouteMatch,
        wait: Wait,
        now: Instant,
    ) -> Routed {
        let signal = wait.signal.clone();
        let Some(parked) = wait.into_state::<Parked>() else {
            return Routed::Response(error(StatusCode::SERVICE_UNAVAILABLE, "request state lost"));
        };
        match parked {
            Parked::Admission { wait, offer } => match wait.poll(now) {
                Some(Ok(())) => self.admitted(req, now, offer),
                Some(Err(r)) => self.rejected(req, now, &r),
                None => {
                    let deadline = wait.deadline();
                    again(signal, deadline, Parked::Admission { wait, offer })
                }
            },
            Parked::Open {
                mut rx,
                location,
                deadline,
            } => match rx.try_take() {
                Some(Ok(result)) => {
                    let resp = self.opened(&location, result);
                    if resp.status() != StatusCode::CREATED {
                        let why = String::from_utf8_lossy(resp.body()).trim_end().to_owned();
                        return self.refuse(req, now, resp.status(), &why);
                    }
                    Routed::Response(resp)
                }
                Some(Err(_)) => self.refuse(
                    req,
                    now,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the WebRTC service is gone",
                ),
                None if now >= deadline => self.refuse(
                    req,
                    now,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the WebRTC service did not answer in time",
                ),
                None => again(
                    signal,
                    deadline,
                    Parked::Open {
                        rx,
                        location,
                        deadline,
                    },
                ),
            },
            Parked::Patch { mut rx, deadline } => match rx.try_take() {
                Some(Ok(PatchOutcome::Done)) => {
                    Routed::Response(response(StatusCode::NO_CONTENT, None, Bytes::new()))
                }
                Some(Ok(PatchOutcome::NotFound)) => {
                    Routed::Response(error(StatusCode::NOT_FOUND, "no such session"))
                }
                Some(Ok(PatchOutcome::Stale)) => Routed::Response(error(
                    StatusCode::PRECONDITION_FAILED,
                    "If-Match does not name the session's current ETag",
                )),
                Some(Ok(PatchOutcome::RestartUnsupported)) => self.refuse(
                    req,
                    now,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "ICE restart is not supported: start a new session",
                ),
                Some(Err(_)) => Routed::Response(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the WebRTC service is gone",
                )),
                None if now >= deadline => Routed::Response(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the WebRTC service did not answer in time",
                )),
                None => again(signal, deadline, Parked::Patch { rx, deadline }),
            },
            Parked::Delete { mut rx, deadline } => match rx.try_take() {
                Some(Ok(true)) => Routed::Response(response(StatusCode::OK, None, Bytes::new())),
                Some(Ok(false)) => {
                    Routed::Response(error(StatusCode::NOT_FOUND, "no such session"))
                }
                Some(Err(_)) => Routed::Response(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the WebRTC service is gone",
                )),
                None if now >= deadline => Routed::Response(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the WebRTC service did not answer in time",
                )),
                None => again(signal, deadline, Parked::Delete { rx, deadline }),
            },
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-ufrag:abcd\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n";

    #[test]
    fn offers_are_taken_whole_or_refused_whole() {
        assert_eq!(check_offer(OFFER), Ok(Some("abcd".to_owned())));
        assert!(matches!(
            check_offer("hello"),
            Err(OfferProblem::Malformed(_))
        ));
        let two_videos =
            format!("{OFFER}m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=rtpmap:97 H264/90000\r\n");
        assert!(matches!(
            check_offer(&two_videos),
            Err(OfferProblem::Unsupported(_))
        ));
        let vp8 = OFFER.replace("H264/90000", "VP8/90000");
        assert!(matches!(
            check_offer(&vp8),
            Err(OfferProblem::Unsupported(_))
        ));
        let data = format!("{OFFER}m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n");
        assert!(matches!(
            check_offer(&data),
            Err(OfferProblem::Unsupported(_))
        ));
        assert!(matches!(
            check_offer("v=0\r\ns=-\r\n"),
            Err(OfferProblem::Unsupported(_))
        ));
    }

    #[test]
    fn bearer_tokens_become_credentials() {
        let req = Request::builder()
            .header("authorization", "Bearer s3cret")
            .body(())
            .unwrap();
        assert_eq!(credentials(&req), Credentials::Token("s3cret".to_owned()));
        let req = Request::builder()
            .header("authorization", "Basic xx")
            .body(())
            .unwrap();
        assert_eq!(credentials(&req), Credentials::None);
    }

    #[test]
    fn locations_are_percent_encoded() {
        assert_eq!(percent("cam 1/é"), "cam%201%2F%C3%A9");
    }
}
