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

use crate::engine::StreamKey;

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
}
