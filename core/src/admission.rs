//! Admission: the application's decision on a publish or play request.
//!
//! Protocol machines never decide on their own whether a peer may publish or
//! play: they raise a request carrying a token, and the engine glue (e.g.
//! [`crate::rtmp::RtmpSessionFactory`]) asks an [`Admission`] before it
//! touches the [`Engine`](crate::Engine). The stream key handed over is
//! already stripped of its query string; the query (`token=x` of
//! `cam?token=x`) is passed separately so that an application can check
//! credentials without the key being polluted by them.

use std::net::SocketAddr;

use crate::engine::{PublishError, StreamKey, SubscribeError};

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
/// | [`Timeout`](Self::Timeout) | `NetStream.Publish.BadName` / `NetStream.Play.Failed` | `SRT_REJX_DOWN` 1503 |
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
    /// [`RejectCode::Conflict`]; stream limit: [`RejectCode::Overloaded`].
    fn from(e: &PublishError) -> Self {
        let code = match e {
            PublishError::UnknownApp(_) => RejectCode::NotFound,
            PublishError::AlreadyPublishing(_) => RejectCode::Conflict,
            PublishError::TooManyStreams(..) => RejectCode::Overloaded,
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

/// The application's admission policy, consulted for every publish and play.
///
/// Called from the session's input path: it must be quick and must not block
/// (look credentials up in memory; do slow checks elsewhere and cache them).
pub trait Admission: Send + Sync {
    /// `Ok(())` admits the request; `Err(reason)` refuses it and the reason is
    /// sent to the peer (RTMP: the onStatus description) and logged.
    fn admit(&self, req: &AdmissionRequest) -> Result<(), String>;
}

/// Admits every request.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Admission for AllowAll {
    fn admit(&self, _req: &AdmissionRequest) -> Result<(), String> {
        Ok(())
    }
}

impl<F> Admission for F
where
    F: Fn(&AdmissionRequest) -> Result<(), String> + Send + Sync,
{
    fn admit(&self, req: &AdmissionRequest) -> Result<(), String> {
        self(req)
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
        }
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
        assert!(only_x.admit(&req("token=x")).is_ok());
        assert_eq!(only_x.admit(&req("token=y")), Err("bad token".to_owned()));
        assert!(AllowAll.admit(&req("")).is_ok());
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
}
