//! Admission: the application's decision on a publish or play request.
//!
//! Protocol machines never decide on their own whether a peer may publish or
//! play: they raise a request carrying a token, and the engine glue (e.g.
//! [`crate::rtmp::RtmpSessionFactory`]) asks an [`Admission`] before it
//! touches the [`Engine`](crate::Engine). The stream key handed over is
//! already stripped of its query string; the query (`token=x` of
//! `cam?token=x`) is passed separately so that an application can check
//! credentials without the key being polluted by them.
//!
//! The answer is a [`Decision`]: now (allow, or deny with a [`Rejection`]
//! whose [`RejectCode`] each protocol maps to its wire answer) or later
//! ([`Decision::Later`] with a [`PendingAdmission`], resolved through its
//! [`AdmissionHandle`] from any thread or task, with a timeout after which
//! the session refuses with [`RejectCode::Timeout`]). A pending request
//! keeps the machine's token and takes nothing from the engine; the session
//! goes on serving its other work, and its driver is woken by the decision
//! through the signal it already waits on (see [`AdmissionWait`]).
//! The closures of the synchronous shape (`Fn(&AdmissionRequest) ->
//! Result<(), String>`) remain admissions.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::engine::{PublishError, Signal, StreamKey, SubscribeError};
use crate::time::Instant;

/// Whether the peer wants to push media in or pull it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdmissionKind {
    /// The peer publishes the stream.
    Publish,
    /// The peer plays the stream.
    Play,
}

impl core::fmt::Display for AdmissionKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AdmissionKind::Publish => "publish",
            AdmissionKind::Play => "play",
        })
    }
}

/// Why a publish or play request was refused: a protocol-neutral code that
/// each protocol maps to its own wire answer.
///
/// | code | RTMP onStatus (RTMP spec §7.2.2) | SRT reject (libsrt `access_control.h`) |
/// |---|---|---|
/// | [`BadRequest`](Self::BadRequest) | `NetStream.Publish.BadName` / `NetStream.Play.Failed` | `SRT_REJX_BAD_REQUEST` 1400 |
/// | [`Unauthorized`](Self::Unauthorized) | `NetStream.Publish.BadName` / `NetStream.Play.Failed` | `SRT_REJX_UNAUTHORIZED` 1401 |
/// | [`Forbidden`](Self::Forbidden) | `NetStream.Publish.BadName` / `NetStream.Play.Failed` | `SRT_REJX_FORBIDDEN` 1403 |
/// | [`NotFound`](Self::NotFound) | `NetStream.Publish.BadName` / `NetStream.Play.StreamNotFound` | `SRT_REJX_NOTFOUND` 1404 |
/// | [`Conflict`](Self::Conflict) | `NetStream.Publish.BadName` | `SRT_REJX_CONFLICT` 1409 |
/// | [`Overloaded`](Self::Overloaded) | `NetStream.Publish.BadName` / `NetStream.Play.Failed` | `SRT_REJX_OVERLOAD` 1402 |
/// | [`Unavailable`](Self::Unavailable) | `NetStream.Publish.BadName` / `NetStream.Play.Failed` | `SRT_REJ_CLOSE` |
/// | [`Timeout`](Self::Timeout) | `NetStream.Publish.BadName` / `NetStream.Play.Failed` | `SRT_REJ_TIMEOUT` |
///
/// `#[non_exhaustive]`: more codes may come with new protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectCode {
    /// The request is malformed or asks for something unsupported (bad
    /// stream key, unsupported mode).
    BadRequest,
    /// Credentials are missing or wrong.
    Unauthorized,
    /// The application's policy refuses the request.
    Forbidden,
    /// No such stream or app.
    NotFound,
    /// The stream is already published.
    Conflict,
    /// A limit (streams, subscribers, connections) is reached.
    Overloaded,
    /// The service is shutting down.
    Unavailable,
    /// The application did not decide before the admission deadline.
    Timeout,
}

impl RejectCode {
    /// A short lowercase name, for logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::BadRequest => "bad request",
            RejectCode::Unauthorized => "unauthorized",
            RejectCode::Forbidden => "forbidden",
            RejectCode::NotFound => "not found",
            RejectCode::Conflict => "conflict",
            RejectCode::Overloaded => "overloaded",
            RejectCode::Unavailable => "unavailable",
            RejectCode::Timeout => "timeout",
        }
    }
}

impl core::fmt::Display for RejectCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: its [`RejectCode`] and a human text. The text goes to logs and,
/// where the protocol carries one, to the peer (RTMP: the onStatus
/// description); decisions are made on the code.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rejection {
    /// What kind of refusal.
    pub code: RejectCode,
    /// Why, in words (for logs and the peer).
    pub reason: String,
}

impl Rejection {
    /// A refusal with `code` and `reason`.
    pub fn new(code: RejectCode, reason: impl Into<String>) -> Self {
        Rejection {
            code,
            reason: reason.into(),
        }
    }

    /// A refusal by the application's policy ([`RejectCode::Forbidden`]).
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(RejectCode::Forbidden, reason)
    }
}

impl core::fmt::Display for Rejection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}: {}", self.code, self.reason)
        }
    }
}

impl From<&PublishError> for Rejection {
    /// Unknown app: [`RejectCode::NotFound`]; already published:
    /// [`RejectCode::Conflict`]; stream limit or per-address publisher
    /// limit: [`RejectCode::Overloaded`].
    fn from(e: &PublishError) -> Self {
        let code = match e {
            PublishError::UnknownApp(_) => RejectCode::NotFound,
            PublishError::AlreadyPublishing(_) => RejectCode::Conflict,
            PublishError::TooManyStreams(..) | PublishError::TooManyFromPeer(..) => {
                RejectCode::Overloaded
            }
        };
        Rejection::new(code, e.to_string())
    }
}

impl From<&SubscribeError> for Rejection {
    /// Unknown app or stream: [`RejectCode::NotFound`]; subscriber limit:
    /// [`RejectCode::Overloaded`].
    fn from(e: &SubscribeError) -> Self {
        let code = match e {
            SubscribeError::UnknownApp(_) | SubscribeError::NotFound(_) => RejectCode::NotFound,
            SubscribeError::TooManySubscribers(..) => RejectCode::Overloaded,
        };
        Rejection::new(code, e.to_string())
    }
}

/// One publish or play request, as seen by the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionRequest {
    /// The protocol the request came in on (`"rtmp"`, later `"rtsp"`, `"srt"`, …).
    pub protocol: &'static str,
    /// Publish or play.
    pub kind: AdmissionKind,
    /// The stream, query string removed.
    pub key: StreamKey,
    /// The query string without its leading `?` (empty if there was none),
    /// e.g. `token=x` for the RTMP stream name `cam?token=x`. When both the
    /// app and the stream name carry one they are joined with `&`.
    pub query: String,
    /// The peer's transport address.
    pub peer: SocketAddr,
    /// What the peer presented to prove who it is, from its protocol's
    /// natural place ([`Credentials::None`] when it presented nothing).
    pub credentials: Credentials,
}

/// Credentials a peer presented with a publish or play request.
///
/// Each protocol fills this from where its clients put credentials (the
/// protocol modules document which): a user and password (RTMP
/// `?user=&pass=`, RTSP Basic, SRT stream id `u=`/`s=`), a bearer token
/// (RTMP `?token=`, HTTP `Authorization: Bearer`, HLS `?token=`), or
/// a challenge answer that only a party knowing the password can check
/// (RTSP Digest, [`Credentials::Digest`]). `Debug` never prints a secret.
///
/// RTSP (`crate::rtsp`): `Authorization: Basic` becomes
/// [`Credentials::Password`], `Authorization: Digest` answering the
/// connection's own nonce becomes [`Credentials::Digest`]; a policy denying
/// with [`RejectCode::Unauthorized`] makes the server answer 401 with a
/// Digest and a Basic challenge, [`RejectCode::Forbidden`] answers 403.
///
/// `#[non_exhaustive]`: more kinds (client certificates) may come.
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Credentials {
    /// Nothing was presented.
    #[default]
    None,
    /// A user name and its password, in clear.
    Password {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// An opaque bearer token (an API key, a JWT, a signed URL token).
    Token(String),
    /// An HTTP Digest answer (RFC 2617 §3.2.2 / RFC 7616 §3.4, MD5) to a
    /// challenge this server issued (RTSP `Authorization: Digest`): the
    /// password never crossed the wire; an admission that knows the user's
    /// password checks it with [`DigestCredentials::verify`].
    Digest(DigestCredentials),
}

/// A Digest answer (RFC 2617 §3.2.2, RFC 7616 §3.4; MD5, `qop` absent or
/// `auth`) as the protocol received it, bound to the method of the request
/// it came with. The protocol has already checked that the nonce is one it
/// issued to this connection (a replayed answer never gets here).
///
/// `Debug` prints the user and realm only.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestCredentials {
    user: String,
    realm: String,
    nonce: String,
    method: String,
    uri: String,
    response: String,
    /// `(qop, nc, cnonce)` when the client used `qop=auth`.
    qop: Option<(String, String, String)>,
}

impl DigestCredentials {
    /// An answer: `user` (`username`), `realm`, `nonce`, the request's
    /// `method`, the digest `uri` parameter, the hex `response`, and
    /// `(qop, nc, cnonce)` when the client sent them.
    pub fn new(
        user: impl Into<String>,
        realm: impl Into<String>,
        nonce: impl Into<String>,
        method: impl Into<String>,
        uri: impl Into<String>,
        response: impl Into<String>,
        qop: Option<(String, String, String)>,
    ) -> Self {
        DigestCredentials {
            user: user.into(),
            realm: realm.into(),
            nonce: nonce.into(),
            method: method.into(),
            uri: uri.into(),
            response: response.into(),
            qop,
        }
    }

    /// The user name the client claims.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The realm the answer was computed for.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Whether the answer was computed with `password` (RFC 2617 §3.2.2.1:
    /// `MD5(HA1:nonce[:nc:cnonce:qop]:HA2)`, `HA1 = MD5(user:realm:password)`,
    /// `HA2 = MD5(method:uri)`), compared in constant time.
    pub fn verify(&self, password: &str) -> bool {
        let ha1 = md5_hex(&[&self.user, ":", &self.realm, ":", password]);
        let expected = digest_response(
            &ha1,
            &self.nonce,
            &self.method,
            &self.uri,
            self.qop
                .as_ref()
                .map(|(q, nc, cn)| (q.as_str(), nc.as_str(), cn.as_str())),
        );
        let got = self.response.to_ascii_lowercase();
        expected.len() == got.len()
            && expected
                .bytes()
                .zip(got.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl std::fmt::Debug for DigestCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestCredentials")
            .field("user", &crate::peer_text::escaped(&self.user))
            .field("realm", &crate::peer_text::escaped(&self.realm))
            .finish_non_exhaustive()
    }
}

/// Lowercase hex MD5 of the concatenation of `parts` (RFC 1321).
pub(crate) fn md5_hex(parts: &[&str]) -> String {
    use md5::Digest as _;
    let mut h = md5::Md5::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The Digest `response` (RFC 2617 §3.2.2.1) from `HA1` (hex), the nonce,
/// method, digest URI and, with `qop=auth`, `(qop, nc, cnonce)`.
pub(crate) fn digest_response(
    ha1: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    qop: Option<(&str, &str, &str)>,
) -> String {
    let ha2 = md5_hex(&[method, ":", uri]);
    match qop {
        Some((qop, nc, cnonce)) => {
            md5_hex(&[ha1, ":", nonce, ":", nc, ":", cnonce, ":", qop, ":", &ha2])
        }
        None => md5_hex(&[ha1, ":", nonce, ":", &ha2]),
    }
}

impl Credentials {
    /// The user name presented, if the credentials name one.
    pub fn user(&self) -> Option<&str> {
        match self {
            Credentials::Password { user, .. } => Some(user),
            Credentials::Digest(d) => Some(d.user()),
            Credentials::None | Credentials::Token(_) => None,
        }
    }

    /// Whether nothing was presented.
    pub fn is_none(&self) -> bool {
        matches!(self, Credentials::None)
    }
}

/// Longest credential value taken from a query (user, password or token);
/// a longer one is ignored (the request carries no credentials).
pub const MAX_CREDENTIAL_LEN: usize = 4096;

impl Credentials {
    /// The credentials of a URL query (without its `?`), the way RTMP
    /// clients (`rtmp://host/app/name?user=u&pass=p`, `?token=t`) and HLS
    /// players (`index.m3u8?token=t`) carry them: `user` with `pass` give
    /// [`Credentials::Password`], else `token` gives [`Credentials::Token`],
    /// else [`Credentials::None`]. Values are percent-decoded (RFC 3986
    /// §2.1); a value that does not decode to UTF-8 or is longer than
    /// [`MAX_CREDENTIAL_LEN`] is ignored.
    pub fn from_query(query: &str) -> Credentials {
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| percent_decode(v))
        };
        if let (Some(user), Some(password)) = (param("user"), param("pass")) {
            return Credentials::Password { user, password };
        }
        match param("token") {
            Some(t) if !t.is_empty() => Credentials::Token(t),
            _ => Credentials::None,
        }
    }
}

/// `value` with `%XX` escapes (and `+` as space) decoded; `None` when an
/// escape is malformed, the result is not UTF-8 or longer than
/// [`MAX_CREDENTIAL_LEN`].
pub fn percent_decode(value: &str) -> Option<String> {
    if value.len() > MAX_CREDENTIAL_LEN * 3 {
        return None;
    }
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = bytes.next().and_then(|c| (c as char).to_digit(16))?;
                let lo = bytes.next().and_then(|c| (c as char).to_digit(16))?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    if out.len() > MAX_CREDENTIAL_LEN {
        return None;
    }
    String::from_utf8(out).ok()
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log line, even through `{:?}`.
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Password { user, .. } => f
                .debug_struct("Password")
                .field("user", &crate::peer_text::escaped(user))
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
            Credentials::Digest(d) => f.debug_tuple("Digest").field(d).finish(),
        }
    }
}

impl AdmissionRequest {
    /// The value of the first `name=value` pair of the query with this name
    /// (no percent-decoding).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// The application's answer to one request: now ([`Allow`](Self::Allow),
/// [`Deny`](Self::Deny)) or later ([`Later`](Self::Later)).
///
/// `#[non_exhaustive]`: e.g. a redirect may come.
#[derive(Debug)]
#[non_exhaustive]
pub enum Decision {
    /// Admit the request.
    Allow,
    /// Refuse it; the protocol answers with the code's wire form (the table
    /// on [`RejectCode`]) and the session closes with
    /// [`CloseReason::Rejected`](crate::session::CloseReason::Rejected).
    Deny(Rejection),
    /// Decide later through the [`AdmissionHandle`] paired with this
    /// [`PendingAdmission`] (e.g. after asking an auth service). Until then
    /// the session holds the request's token and no engine resource, keeps
    /// serving its other work, and refuses with [`RejectCode::Timeout`] once
    /// the pending admission's timeout passed.
    Later(PendingAdmission),
}

impl From<Result<(), String>> for Decision {
    /// `Ok` allows; `Err(reason)` denies with [`RejectCode::Forbidden`].
    fn from(r: Result<(), String>) -> Self {
        match r {
            Ok(()) => Decision::Allow,
            Err(reason) => Decision::Deny(Rejection::forbidden(reason)),
        }
    }
}

impl From<Result<(), Rejection>> for Decision {
    fn from(r: Result<(), Rejection>) -> Self {
        match r {
            Ok(()) => Decision::Allow,
            Err(rejection) => Decision::Deny(rejection),
        }
    }
}

/// The application's admission policy, consulted for every publish and play.
///
/// Called from the session's input path: it must be quick and must not
/// block. A slow check (an HTTP auth service, a database) answers
/// [`Decision::Later`] and resolves the [`AdmissionHandle`] from wherever it
/// runs; the session keeps flowing meanwhile.
///
/// Closures returning `Result<(), String>` are admissions (an `Err` is a
/// [`RejectCode::Forbidden`] refusal); a closure returning a [`Decision`]
/// becomes one with [`from_fn`].
pub trait Admission: Send + Sync {
    /// The decision on `req`.
    fn admit(&self, req: &AdmissionRequest) -> Decision;
}

/// Admits every request.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Admission for AllowAll {
    fn admit(&self, _req: &AdmissionRequest) -> Decision {
        Decision::Allow
    }
}

impl<F> Admission for F
where
    F: Fn(&AdmissionRequest) -> Result<(), String> + Send + Sync,
{
    fn admit(&self, req: &AdmissionRequest) -> Decision {
        self(req).into()
    }
}

/// An [`Admission`] from a closure that returns a [`Decision`] (so that it
/// can answer [`Decision::Later`]).
pub fn from_fn<F>(f: F) -> FromFn<F>
where
    F: Fn(&AdmissionRequest) -> Decision + Send + Sync,
{
    FromFn(f)
}

/// The [`Admission`] made by [`from_fn`].
#[derive(Clone, Copy)]
pub struct FromFn<F>(F);

impl<F> core::fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FromFn")
    }
}

impl<F> Admission for FromFn<F>
where
    F: Fn(&AdmissionRequest) -> Decision + Send + Sync,
{
    fn admit(&self, req: &AdmissionRequest) -> Decision {
        (self.0)(req)
    }
}

/// The longest a session waits for a deferred decision, whatever timeout
/// the application asked for (60 s). Protocols may cap it lower (SRT: the
/// endpoint's [`PENDING_TIMEOUT`](crate::srt::endpoint::PENDING_TIMEOUT),
/// within libsrt's default connect timeout).
pub const MAX_ADMISSION_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct SlotState {
    decision: Option<Result<(), Rejection>>,
    /// The session stopped waiting (decided by timeout, or closed).
    abandoned: bool,
}

/// What an [`AdmissionHandle`] and its session share: the decision under a
/// lock (taken once by each side, never on a media path) and the signal
/// that wakes the session's driver when it arrives.
#[derive(Debug, Default)]
struct Slot {
    state: Mutex<SlotState>,
    signal: Signal,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// The session's side of a deferred decision, handed over in
/// [`Decision::Later`]. Made with its [`AdmissionHandle`] by
/// [`PendingAdmission::new`].
#[derive(Debug)]
pub struct PendingAdmission {
    slot: Arc<Slot>,
    timeout: Duration,
}

impl PendingAdmission {
    /// A pending decision the session waits for at most `timeout` (capped at
    /// [`MAX_ADMISSION_WAIT`] and by the protocol), and the handle the
    /// application resolves it with.
    pub fn new(timeout: Duration) -> (PendingAdmission, AdmissionHandle) {
        let slot = Arc::new(Slot::default());
        let handle = AdmissionHandle {
            slot: Some(slot.clone()),
        };
        (PendingAdmission { slot, timeout }, handle)
    }

    /// How long the session may wait.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Starts the wait at `now`: the deadline is `now` plus the timeout,
    /// capped at `cap` and [`MAX_ADMISSION_WAIT`]. Used by the session glue.
    pub fn start(self, now: Instant, cap: Duration) -> AdmissionWait {
        let wait = self.timeout.min(cap).min(MAX_ADMISSION_WAIT);
        AdmissionWait {
            slot: self.slot,
            deadline: now + wait,
        }
    }
}

/// A session waiting for a deferred decision (see [`PendingAdmission::start`]).
///
/// The driver learns that the decision arrived through
/// [`signal`](Self::signal) (a session returns it from
/// [`StreamSession::media_signal`](crate::session::StreamSession::media_signal)
/// or lists it in
/// [`DatagramService::media_signals`](crate::datagram::DatagramService::media_signals),
/// so every adapter's existing wait covers it) and calls `handle_media`,
/// where the session [`poll`](Self::poll)s; the deadline is part of the
/// session's `poll_timeout`. Dropping it tells the handle nobody waits.
#[derive(Debug)]
pub struct AdmissionWait {
    slot: Arc<Slot>,
    deadline: Instant,
}

impl AdmissionWait {
    /// When the session stops waiting and refuses.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Notified once when the decision is made.
    pub fn signal(&self) -> &Signal {
        &self.slot.signal
    }

    /// The decision if it arrived; else a [`RejectCode::Timeout`] refusal
    /// once `now` reached the deadline; else `None` (still waiting).
    pub fn poll(&self, now: Instant) -> Option<Result<(), Rejection>> {
        let mut st = self.slot.lock();
        if let Some(d) = st.decision.take() {
            st.abandoned = true;
            return Some(d);
        }
        if now >= self.deadline {
            st.abandoned = true;
            return Some(Err(Rejection::new(
                RejectCode::Timeout,
                "no admission decision in time",
            )));
        }
        None
    }
}

impl Drop for AdmissionWait {
    fn drop(&mut self) {
        self.slot.lock().abandoned = true;
    }
}

/// The application's side of a deferred decision: resolve it once with
/// [`allow`](Self::allow) or [`deny`](Self::deny), from any thread or task.
/// Dropped unresolved, it denies with [`RejectCode::Unavailable`] (so a
/// forgotten handle does not hold a peer until the deadline).
#[derive(Debug)]
pub struct AdmissionHandle {
    slot: Option<Arc<Slot>>,
}

impl AdmissionHandle {
    /// Admits the request.
    pub fn allow(mut self) {
        self.resolve(Ok(()));
    }

    /// Refuses the request.
    pub fn deny(mut self, rejection: Rejection) {
        self.resolve(Err(rejection));
    }

    /// Whether the session stopped waiting (it timed out, closed, or took a
    /// decision already): work on the decision can stop.
    pub fn is_abandoned(&self) -> bool {
        self.slot.as_ref().map_or(true, |s| s.lock().abandoned)
    }

    fn resolve(&mut self, d: Result<(), Rejection>) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        {
            let mut st = slot.lock();
            if st.abandoned {
                return;
            }
            st.decision = Some(d);
        }
        slot.signal.notify();
    }
}

impl Drop for AdmissionHandle {
    fn drop(&mut self) {
        self.resolve(Err(Rejection::new(
            RejectCode::Unavailable,
            "admission handle dropped without a decision",
        )));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn req(query: &str) -> AdmissionRequest {
        AdmissionRequest {
            protocol: "rtmp",
            kind: AdmissionKind::Publish,
            key: StreamKey::new("live", "cam").unwrap(),
            query: query.to_owned(),
            peer: "127.0.0.1:1".parse().unwrap(),
            credentials: Credentials::None,
        }
    }

    #[test]
    fn credentials_debug_hides_secrets() {
        let c = Credentials::Password {
            user: "bob".into(),
            password: "hunter2".into(),
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("bob") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert_eq!(c.user(), Some("bob"));
        let t = format!("{:?}", Credentials::Token("s3cret".into()));
        assert!(!t.contains("s3cret"), "{t}");
        assert!(Credentials::default().is_none());
    }

    #[test]
    fn digest_verify_rfc2617_example() {
        // RFC 2617 §3.5: user Mufasa, password "Circle Of Life".
        let d = DigestCredentials::new(
            "Mufasa",
            "testrealm@host.com",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "GET",
            "/dir/index.html",
            "6629fae49393a05397450978507c4ef1",
            Some(("auth".into(), "00000001".into(), "0a4f113b".into())),
        );
        assert!(d.verify("Circle Of Life"));
        assert!(!d.verify("circle of life"));
        assert!(!d.verify(""));
        let c = Credentials::Digest(d);
        assert_eq!(c.user(), Some("Mufasa"));
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("6629fae"), "{dbg}");
        // Without qop (RFC 2069 compatibility): MD5(HA1:nonce:HA2).
        let ha1 = md5_hex(&["u", ":", "r", ":", "p"]);
        let resp = digest_response(&ha1, "n", "DESCRIBE", "rtsp://h/a/b", None);
        let d = DigestCredentials::new(
            "u",
            "r",
            "n",
            "DESCRIBE",
            "rtsp://h/a/b",
            resp.to_uppercase(),
            None,
        );
        assert!(d.verify("p"));
        assert!(!d.verify("q"));
    }

    #[test]
    fn credentials_from_a_query() {
        assert_eq!(
            Credentials::from_query("user=bob&pass=a%20b%26c"),
            Credentials::Password {
                user: "bob".into(),
                password: "a b&c".into()
            }
        );
        assert_eq!(
            Credentials::from_query("x=1&token=t0k"),
            Credentials::Token("t0k".into())
        );
        // A user without a password is not a password credential.
        assert_eq!(Credentials::from_query("user=bob"), Credentials::None);
        assert_eq!(Credentials::from_query("token="), Credentials::None);
        assert_eq!(Credentials::from_query(""), Credentials::None);
        // Malformed escapes and non-UTF-8 are ignored, never a panic.
        assert_eq!(Credentials::from_query("token=%zz"), Credentials::None);
        assert_eq!(Credentials::from_query("token=%ff"), Credentials::None);
        assert_eq!(Credentials::from_query("token=%4"), Credentials::None);
        let long = "a".repeat(MAX_CREDENTIAL_LEN + 1);
        assert_eq!(
            Credentials::from_query(&format!("token={long}")),
            Credentials::None
        );
    }

    #[test]
    fn query_params() {
        let r = req("token=x&flag&b=2");
        assert_eq!(r.query_param("token"), Some("x"));
        assert_eq!(r.query_param("flag"), Some(""));
        assert_eq!(r.query_param("b"), Some("2"));
        assert_eq!(r.query_param("c"), None);
        assert_eq!(req("").query_param("token"), None);
    }

    #[test]
    fn closures_and_allow_all() {
        let only_x = |r: &AdmissionRequest| {
            if r.query_param("token") == Some("x") {
                Ok(())
            } else {
                Err("bad token".to_owned())
            }
        };
        assert!(matches!(only_x.admit(&req("token=x")), Decision::Allow));
        assert!(matches!(
            only_x.admit(&req("token=y")),
            Decision::Deny(r) if r == Rejection::forbidden("bad token")
        ));
        assert!(matches!(AllowAll.admit(&req("")), Decision::Allow));
    }

    #[test]
    fn engine_refusals_have_codes() {
        let key = StreamKey::new("live", "cam").unwrap();
        let code = |e: PublishError| Rejection::from(&e).code;
        assert_eq!(
            code(PublishError::UnknownApp("x".into())),
            RejectCode::NotFound
        );
        assert_eq!(
            code(PublishError::AlreadyPublishing(key.clone())),
            RejectCode::Conflict
        );
        assert_eq!(
            code(PublishError::TooManyStreams("live".into(), 1)),
            RejectCode::Overloaded
        );
        let r = Rejection::from(&SubscribeError::NotFound(key));
        assert_eq!(r.code, RejectCode::NotFound);
        assert_eq!(r.to_string(), "not found: stream `live/cam` not found");
    }

    #[test]
    fn deferred_decisions() {
        let t0 = Instant::from_millis(1000);
        // Resolved: the signal moves once, the wait yields the decision.
        let (pending, handle) = PendingAdmission::new(Duration::from_secs(5));
        let wait = pending.start(t0, Duration::from_secs(3));
        assert_eq!(wait.deadline(), t0 + Duration::from_secs(3), "capped");
        let epoch = wait.signal().epoch();
        assert_eq!(wait.poll(t0), None);
        handle.deny(Rejection::new(RejectCode::Unauthorized, "who?"));
        assert_ne!(wait.signal().epoch(), epoch);
        assert_eq!(
            wait.poll(t0),
            Some(Err(Rejection::new(RejectCode::Unauthorized, "who?")))
        );
        // A forgotten handle denies at once instead of holding the peer.
        let (pending, handle) = PendingAdmission::new(Duration::from_secs(5));
        let wait = pending.start(t0, MAX_ADMISSION_WAIT);
        drop(handle);
        assert!(matches!(wait.poll(t0), Some(Err(r)) if r.code == RejectCode::Unavailable));
        // The deadline refuses; a late answer is ignored.
        let (pending, handle) = PendingAdmission::new(Duration::from_secs(600));
        let wait = pending.start(t0, Duration::MAX);
        assert_eq!(wait.deadline(), t0 + MAX_ADMISSION_WAIT);
        assert!(!handle.is_abandoned());
        let late = wait.deadline();
        assert!(matches!(wait.poll(late), Some(Err(r)) if r.code == RejectCode::Timeout));
        assert!(handle.is_abandoned());
        handle.allow();
        assert_eq!(
            wait.poll(late + Duration::from_secs(1)).map(|r| r.is_ok()),
            Some(false)
        );
    }
}
