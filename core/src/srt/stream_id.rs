//! Stream id conventions: what an SRT caller asks for in the stream id
//! handshake extension (draft-sharabayko-srt-01 §3.2.1.3; libsrt
//! `docs/features/access-control.md`).
//!
//! Two syntaxes are understood:
//! - the simple one used by ffmpeg/OBS setups: `publish:live/cam`,
//!   `read:live/cam` (alias `play:`), optionally with `?query`;
//! - libsrt's access-control syntax `#!::key=value,key=value` with the
//!   standard keys `u` (user), `r` (resource), `h` (host), `s` (session),
//!   `t` (type: `stream`, `file`, `auth`) and `m` (mode: `request`,
//!   `publish`, `bidirectional`); other keys are kept as extra parameters.
//!
//! A bare resource (`live/cam`) is a read request, like access control's
//! default mode. The resource becomes a [`StreamKey`] (`app/name`); a
//! `?query` after it is split off, as for RTMP.

use crate::admission::Credentials;
use crate::engine::{StreamKey, StreamKeyError};
use crate::peer_text::{check_name, NameError, MAX_APP_LEN, MAX_STREAM_NAME_LEN};

/// Longest stream id accepted, in bytes (libsrt `MAX_SID_LENGTH`).
pub const MAX_STREAM_ID_LEN: usize = super::handshake::MAX_STREAM_ID_LEN;

/// Most `key=value` pairs accepted in an access-control stream id.
pub const MAX_PARAMS: usize = 16;

/// What the caller wants to do (access control key `m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamMode {
    /// `m=request` / `read:` / `play:`: pull the stream.
    Request,
    /// `m=publish` / `publish:`: push the stream.
    Publish,
    /// `m=bidirectional`: both directions.
    Bidirectional,
}

/// Why a stream id was not understood; [`StreamIdError::reject_reason`]
/// gives the matching SRT rejection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamIdError {
    /// Empty stream id or empty resource.
    #[error("stream id names no resource")]
    Empty,
    /// Longer than [`MAX_STREAM_ID_LEN`].
    #[error("stream id of {0} bytes exceeds {MAX_STREAM_ID_LEN}")]
    TooLong(usize),
    /// A `#!::` element without `=`, or an empty key.
    #[error("malformed access-control element {0:?}")]
    Malformed(String),
    /// The same key given twice.
    #[error("access-control key {0:?} repeated")]
    DuplicateKey(String),
    /// More than [`MAX_PARAMS`] elements.
    #[error("more than {MAX_PARAMS} access-control elements")]
    TooManyParams,
    /// An `m=` value other than request/publish/bidirectional.
    #[error("unknown mode {0:?}")]
    BadMode(String),
    /// A `#!:` form other than `#!::` (e.g. the reserved nested `#!:{`).
    #[error("unsupported access-control syntax")]
    UnsupportedSyntax,
    /// The resource is not a valid `app/name`.
    #[error("resource is not a valid app/name: {0}")]
    Key(#[from] StreamKeyError),
    /// The stream id holds a control character (CR, LF, ESC, …: it would
    /// forge log lines), or its app or stream name (query included) is
    /// longer than [`MAX_APP_LEN`] / [`MAX_STREAM_NAME_LEN`]
    /// (docs/security.md, section 4).
    #[error("stream id refused: {0}")]
    Name(#[from] NameError),
}

impl StreamIdError {
    /// The rejection an SRT listener should answer with
    /// (`SRT_REJX_BAD_REQUEST`, or `SRT_REJX_BAD_MODE` for a bad mode).
    pub fn reject_reason(&self) -> super::handshake::RejectReason {
        match self {
            StreamIdError::BadMode(_) => super::handshake::RejectReason::BAD_MODE,
            StreamIdError::UnsupportedSyntax => super::handshake::RejectReason::KEY_NOTSUP,
            _ => super::handshake::RejectReason::BAD_REQUEST,
        }
    }
}

/// A parsed stream id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamId {
    /// Requested direction.
    pub mode: StreamMode,
    /// The stream, from the resource (`r=` or the part after `publish:`).
    pub key: StreamKey,
    /// The query after `?` in the resource, without the `?` (may be empty).
    pub query: String,
    /// `u=`: user name.
    pub user: Option<String>,
    /// `s=`: session id / token.
    pub session: Option<String>,
    /// `h=`: host name.
    pub host: Option<String>,
    /// `t=`: resource type (`stream` by default).
    pub kind: Option<String>,
    /// Other `key=value` pairs, in order.
    pub extra: Vec<(String, String)>,
}

impl StreamId {
    /// Parses a stream id in either syntax (see the module docs).
    pub fn parse(sid: &str) -> Result<Self, StreamIdError> {
        if sid.len() > MAX_STREAM_ID_LEN {
            return Err(StreamIdError::TooLong(sid.len()));
        }
        if sid.is_empty() {
            return Err(StreamIdError::Empty);
        }
        check_name(sid, MAX_STREAM_ID_LEN)?;
        if let Some(rest) = sid.strip_prefix("#!") {
            let list = rest
                .strip_prefix("::")
                .ok_or(StreamIdError::UnsupportedSyntax)?;
            return Self::parse_access_control(list);
        }
        let (mode, resource) = if let Some(r) = sid.strip_prefix("publish:") {
            (StreamMode::Publish, r)
        } else if let Some(r) = sid
            .strip_prefix("read:")
            .or_else(|| sid.strip_prefix("play:"))
        {
            (StreamMode::Request, r)
        } else {
            (StreamMode::Request, sid)
        };
        let (key, query) = split_resource(resource)?;
        Ok(StreamId {
            mode,
            key,
            query,
            user: None,
            session: None,
            host: None,
            kind: None,
            extra: Vec::new(),
        })
    }

    /// The credentials in the stream id (`#!::u=user,s=secret`): `u=`
    /// with `s=` give a user and password, `s=` alone a bearer token, `u=`
    /// alone a user with an empty password; the simple syntax carries
    /// none (its `?user=&pass=` or `?token=` query is read like RTMP's,
    /// [`Credentials::from_query`]).
    pub fn credentials(&self) -> Credentials {
        match (&self.user, &self.session) {
            (Some(user), Some(s)) => Credentials::Password {
                user: user.clone(),
                password: s.clone(),
            },
            (Some(user), None) => Credentials::Password {
                user: user.clone(),
                password: String::new(),
            },
            (None, Some(s)) => Credentials::Token(s.clone()),
            (None, None) => Credentials::from_query(&self.query),
        }
    }

    fn parse_access_control(list: &str) -> Result<Self, StreamIdError> {
        let mut mode = None;
        let mut resource = None;
        let (mut user, mut session, mut host, mut kind) = (None, None, None, None);
        let mut extra: Vec<(String, String)> = Vec::new();
        for (i, elem) in list.split(',').enumerate() {
            if i == MAX_PARAMS {
                return Err(StreamIdError::TooManyParams);
            }
            let (k, v) = elem
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| StreamIdError::Malformed(elem.to_owned()))?;
            let slot = match k {
                "m" => {
                    let m = match v {
                        "request" => StreamMode::Request,
                        "publish" => StreamMode::Publish,
                        "bidirectional" => StreamMode::Bidirectional,
                        other => return Err(StreamIdError::BadMode(other.to_owned())),
                    };
                    if mode.replace(m).is_some() {
                        return Err(StreamIdError::DuplicateKey(k.to_owned()));
                    }
                    continue;
                }
                "r" => &mut resource,
                "u" => &mut user,
                "s" => &mut session,
                "h" => &mut host,
                "t" => &mut kind,
                _ => {
                    if extra.iter().any(|(ek, _)| ek == k) {
                        return Err(StreamIdError::DuplicateKey(k.to_owned()));
                    }
                    extra.push((k.to_owned(), v.to_owned()));
                    continue;
                }
            };
            if slot.replace(v.to_owned()).is_some() {
                return Err(StreamIdError::DuplicateKey(k.to_owned()));
            }
        }
        let resource: String = resource.ok_or(StreamIdError::Empty)?;
        let (key, query) = split_resource(&resource)?;
        Ok(StreamId {
            mode: mode.unwrap_or(StreamMode::Request),
            key,
            query,
            user,
            session,
            host,
            kind,
            extra,
        })
    }
}

fn split_resource(resource: &str) -> Result<(StreamKey, String), StreamIdError> {
    let (path, query) = resource.split_once('?').unwrap_or((resource, ""));
    if path.trim_matches('/').is_empty() {
        return Err(StreamIdError::Empty);
    }
    let key = StreamKey::parse(path)?;
    check_name(key.app(), MAX_APP_LEN)?;
    let name_len = key.name().len() + if query.is_empty() { 0 } else { query.len() + 1 };
    if name_len > MAX_STREAM_NAME_LEN {
        return Err(NameError::TooLong {
            len: name_len,
            max: MAX_STREAM_NAME_LEN,
        }
        .into());
    }
    Ok((key, query.to_owned()))
}

/// A raw stream id as a log line may show it: the value of `s=` (a
/// password or session token) replaced by `***` and any `?query` (which may
/// hold `pass=` or `token=`) cut. Escape the result like any peer text.
pub fn redacted(raw: &str) -> String {
    let Some(list) = raw.strip_prefix("#!::") else {
        return crate::peer_text::without_query(raw).to_owned();
    };
    let mut out = String::from("#!::");
    for (i, elem) in list.split(',').enumerate() {
        if i > 0 {
            out.push(',');
        }
        match elem.split_once('=') {
            Some(("s", _)) => out.push_str("s=***"),
            Some(("r", r)) => {
                out.push_str("r=");
                out.push_str(crate::peer_text::without_query(r));
            }
            _ => out.push_str(elem),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn credentials_and_redaction() {
        let sid = StreamId::parse("#!::r=live/cam,m=publish,u=alice,s=hunter2").unwrap();
        assert_eq!(
            sid.credentials(),
            Credentials::Password {
                user: "alice".into(),
                password: "hunter2".into()
            }
        );
        let sid = StreamId::parse("#!::r=live/cam,s=tok").unwrap();
        assert_eq!(sid.credentials(), Credentials::Token("tok".into()));
        let sid = StreamId::parse("publish:live/cam?token=abc").unwrap();
        assert_eq!(sid.credentials(), Credentials::Token("abc".into()));
        assert_eq!(
            StreamId::parse("read:live/cam").unwrap().credentials(),
            Credentials::None
        );
        let shown = redacted("#!::r=live/cam?pass=x,m=publish,u=alice,s=hunter2");
        assert_eq!(shown, "#!::r=live/cam,m=publish,u=alice,s=***");
        assert_eq!(redacted("publish:live/cam?token=abc"), "publish:live/cam");
    }
    use proptest::prelude::*;

    /// Issue 14 item 4: control characters anywhere (they would forge log
    /// lines) and over-long app or stream names are refused with
    /// `SRT_REJX_BAD_REQUEST`.
    #[test]
    fn control_characters_and_long_names_are_refused() {
        for sid in [
            "publish:live/cam?x=\r\n2026 ERROR forged",
            "read:live/cam\x1b[31m",
            "#!::r=live/cam,m=publish,u=a\nb",
        ] {
            let e = StreamId::parse(sid).unwrap_err();
            assert!(
                matches!(e, StreamIdError::Name(NameError::ControlChar { .. })),
                "{sid:?}: {e:?}"
            );
            assert_eq!(
                e.reject_reason(),
                crate::srt::handshake::RejectReason::BAD_REQUEST
            );
        }
        let long_app = format!("publish:{}/cam", "a".repeat(MAX_APP_LEN + 1));
        assert!(matches!(
            StreamId::parse(&long_app),
            Err(StreamIdError::Name(NameError::TooLong { .. }))
        ));
        let long_name = format!("read:live/cam?{}", "q".repeat(MAX_STREAM_NAME_LEN));
        assert!(matches!(
            StreamId::parse(&long_name),
            Err(StreamIdError::Name(NameError::TooLong { .. }))
        ));
        assert!(StreamId::parse(&format!("publish:{}/cam", "a".repeat(MAX_APP_LEN))).is_ok());
    }

    #[test]
    fn simple_conventions() {
        let p = StreamId::parse("publish:live/cam").unwrap();
        assert_eq!(p.mode, StreamMode::Publish);
        assert_eq!((p.key.app(), p.key.name()), ("live", "cam"));
        let r = StreamId::parse("read:live/cam?token=abc").unwrap();
        assert_eq!(r.mode, StreamMode::Request);
        assert_eq!(r.query, "token=abc");
        assert_eq!(
            StreamId::parse("play:a/b").unwrap().mode,
            StreamMode::Request
        );
        assert_eq!(
            StreamId::parse("live/cam").unwrap().mode,
            StreamMode::Request
        );
    }

    #[test]
    fn access_control_syntax() {
        let s =
            StreamId::parse("#!::r=live/cam,m=publish,u=alice,s=tok,h=example.com,t=stream,x=1")
                .unwrap();
        assert_eq!(s.mode, StreamMode::Publish);
        assert_eq!(
            s.key.to_string(),
            StreamKey::new("live", "cam").unwrap().to_string()
        );
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.session.as_deref(), Some("tok"));
        assert_eq!(s.host.as_deref(), Some("example.com"));
        assert_eq!(s.kind.as_deref(), Some("stream"));
        assert_eq!(s.extra, vec![("x".to_owned(), "1".to_owned())]);
        let d = StreamId::parse("#!::r=live/cam").unwrap();
        assert_eq!(d.mode, StreamMode::Request, "default mode is request");
        assert_eq!(
            StreamId::parse("#!::m=bidirectional,r=a/b").unwrap().mode,
            StreamMode::Bidirectional
        );
    }

    #[test]
    fn rejects_bad_ids() {
        use super::super::handshake::RejectReason;
        let e = StreamId::parse("#!::r=live/cam,m=push").unwrap_err();
        assert_eq!(e, StreamIdError::BadMode("push".into()));
        assert_eq!(e.reject_reason(), RejectReason::BAD_MODE);
        assert_eq!(StreamId::parse("").unwrap_err(), StreamIdError::Empty);
        assert_eq!(
            StreamId::parse("publish:").unwrap_err(),
            StreamIdError::Empty
        );
        assert_eq!(
            StreamId::parse("#!::m=publish").unwrap_err(),
            StreamIdError::Empty
        );
        assert!(matches!(
            StreamId::parse("#!::r=a/b,r=c/d"),
            Err(StreamIdError::DuplicateKey(_))
        ));
        assert!(matches!(
            StreamId::parse("#!::r=a/b,,"),
            Err(StreamIdError::Malformed(_))
        ));
        assert!(matches!(
            StreamId::parse("#!::=x,r=a/b"),
            Err(StreamIdError::Malformed(_))
        ));
        assert_eq!(
            StreamId::parse("#!:{r=a/b}").unwrap_err(),
            StreamIdError::UnsupportedSyntax
        );
        assert!(matches!(
            StreamId::parse("publish:live"),
            Err(StreamIdError::Key(_))
        ));
        assert!(matches!(
            StreamId::parse("publish:live/../x"),
            Err(StreamIdError::Key(_))
        ));
        let long = format!("publish:live/{}", "a".repeat(600));
        assert_eq!(
            StreamId::parse(&long).unwrap_err(),
            StreamIdError::TooLong(long.len())
        );
        let many = format!(
            "#!::r=a/b,{}",
            (0..20)
                .map(|i| format!("k{i}=v"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            StreamId::parse(&many).unwrap_err(),
            StreamIdError::TooManyParams
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,600}") {
            let _ = StreamId::parse(&s);
        }

        #[test]
        fn access_control_round_trip(app in "[a-z0-9_]{1,20}", name in "[a-zA-Z0-9_.-]{1,40}", publish in any::<bool>(), user in proptest::option::of("[a-z]{1,10}")) {
            prop_assume!(name != "." && name != "..");
            let mut sid = format!("#!::r={app}/{name},m={}", if publish { "publish" } else { "request" });
            if let Some(u) = &user {
                sid.push_str(&format!(",u={u}"));
            }
            let p = StreamId::parse(&sid).unwrap();
            prop_assert_eq!(p.key.app(), app.as_str());
            prop_assert_eq!(p.key.name(), name.as_str());
            prop_assert_eq!(p.mode, if publish { StreamMode::Publish } else { StreamMode::Request });
            prop_assert_eq!(p.user, user);
        }
    }
}
