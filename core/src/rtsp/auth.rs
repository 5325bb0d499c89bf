//! RTSP authentication (RFC 2326 §12.5 borrows HTTP's): Basic (RFC 7617)
//! and Digest (RFC 2617 §3, RFC 7616; MD5 only, `qop` absent or `auth`).
//!
//! Parsing: the `WWW-Authenticate` challenge and the `Authorization`
//! answer are `scheme auth-param, auth-param, …` (RFC 7235 §2.1): tokens or
//! quoted strings (`\` escapes), commas between parameters, any letter
//! case in scheme and parameter names, optional whitespace. A header longer
//! than [`MAX_AUTH_HEADER`] or with more than [`MAX_PARAMS`] parameters is
//! an [`AuthError`].
//!
//! Client side: [`Challenge::parse`] then [`Challenge::authorization`]
//! with the URL's user and password. Server side: [`server_nonce`] gives a
//! connection its nonce (from its seed: core has no randomness), and
//! [`credentials_from`] turns an `Authorization` header into the
//! [`Credentials`] an [`Admission`](crate::admission::Admission) sees; a
//! Digest answer to any other nonce is dropped there (never replayable on
//! another connection, and no table of old nonces to bound).

use crate::admission::{digest_response, md5_hex, Credentials, DigestCredentials};
use crate::sdp::{base64_decode, base64_encode};

/// Longest `WWW-Authenticate` / `Authorization` value read.
pub const MAX_AUTH_HEADER: usize = 4096;
/// Most parameters in one challenge or answer.
pub const MAX_PARAMS: usize = 16;
/// The realm this server's challenges name.
pub const REALM: &str = "arcly";

/// Why an authentication header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Longer than [`MAX_AUTH_HEADER`].
    #[error("authentication header longer than {MAX_AUTH_HEADER} bytes")]
    TooLong,
    /// More than [`MAX_PARAMS`] parameters.
    #[error("more than {MAX_PARAMS} authentication parameters")]
    TooManyParams,
    /// Not `scheme param=value, …`.
    #[error("malformed authentication header")]
    Syntax,
    /// A scheme other than Basic and Digest.
    #[error("unsupported authentication scheme")]
    UnsupportedScheme,
    /// A Digest algorithm other than MD5, or a `qop` without `auth`.
    #[error("unsupported digest algorithm or qop")]
    UnsupportedAlgorithm,
    /// A required parameter is missing.
    #[error("digest parameter {0} missing")]
    Missing(&'static str),
    /// Basic credentials that are not base64 of `user:password`.
    #[error("bad basic credentials")]
    BadBasic,
}

/// Splits `scheme rest` and parses `rest` as auth-params.
fn split_scheme(header: &str) -> Result<(&str, &str), AuthError> {
    if header.len() > MAX_AUTH_HEADER {
        return Err(AuthError::TooLong);
    }
    let h = header.trim();
    let end = h.find(|c: char| c.is_ascii_whitespace()).unwrap_or(h.len());
    let (scheme, rest) = h.split_at(end);
    if scheme.is_empty() {
        return Err(AuthError::Syntax);
    }
    Ok((scheme, rest.trim_start()))
}

/// `name=value` pairs (names lowercased; values unquoted).
fn parse_params(s: &str) -> Result<Vec<(String, String)>, AuthError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|c| c.is_ascii_whitespace() || *c == ',')
        {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        if out.len() >= MAX_PARAMS {
            return Err(AuthError::TooManyParams);
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_ascii_whitespace() || c == ',' {
                break;
            }
            name.push(c.to_ascii_lowercase());
            chars.next();
        }
        while chars.peek().is_some_and(char::is_ascii_whitespace) {
            chars.next();
        }
        if chars.next() != Some('=') || name.is_empty() {
            return Err(AuthError::Syntax);
        }
        while chars.peek().is_some_and(char::is_ascii_whitespace) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(AuthError::Syntax),
                    },
                    Some(c) => value.push(c),
                    None => return Err(AuthError::Syntax),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_ascii_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((name, value));
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A quoted-string (RFC 7230 §3.2.6) with `"` and `\` escaped.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

fn check_algorithm(params: &[(String, String)]) -> Result<(), AuthError> {
    match param(params, "algorithm") {
        None => Ok(()),
        Some(a) if a.eq_ignore_ascii_case("MD5") => Ok(()),
        Some(_) => Err(AuthError::UnsupportedAlgorithm),
    }
}

/// A Digest challenge (RFC 2617 §3.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    /// The protection space.
    pub realm: String,
    /// The server's nonce.
    pub nonce: String,
    /// Echoed back unchanged when present.
    pub opaque: Option<String>,
    /// Whether the server offered `qop=auth` (the answer then uses it).
    pub qop_auth: bool,
    /// The previous answer used an expired nonce (retry silently).
    pub stale: bool,
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Basic (RFC 7617 §2).
    Basic {
        /// The protection space.
        realm: String,
    },
    /// Digest (RFC 2617 §3.2.1, MD5).
    Digest(DigestChallenge),
}

impl Challenge {
    /// Reads one `WWW-Authenticate` value.
    pub fn parse(header: &str) -> Result<Challenge, AuthError> {
        let (scheme, rest) = split_scheme(header)?;
        let params = parse_params(rest)?;
        if scheme.eq_ignore_ascii_case("Basic") {
            return Ok(Challenge::Basic {
                realm: param(&params, "realm").unwrap_or_default().to_owned(),
            });
        }
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(AuthError::UnsupportedScheme);
        }
        check_algorithm(&params)?;
        let qop_auth = match param(&params, "qop") {
            None => false,
            Some(q) if q.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")) => true,
            Some(_) => return Err(AuthError::UnsupportedAlgorithm),
        };
        Ok(Challenge::Digest(DigestChallenge {
            realm: param(&params, "realm")
                .ok_or(AuthError::Missing("realm"))?
                .to_owned(),
            nonce: param(&params, "nonce")
                .ok_or(AuthError::Missing("nonce"))?
                .to_owned(),
            opaque: param(&params, "opaque").map(str::to_owned),
            qop_auth,
            stale: param(&params, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        }))
    }

    /// The best of several `WWW-Authenticate` values: Digest before Basic;
    /// unreadable ones skipped.
    pub fn pick<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
        let mut basic = None;
        for h in headers {
            match Challenge::parse(h) {
                Ok(c @ Challenge::Digest(_)) => return Some(c),
                Ok(c @ Challenge::Basic { .. }) => basic = basic.or(Some(c)),
                Err(_) => {}
            }
        }
        basic
    }

    /// The header value (`Digest realm="…", nonce="…"`).
    pub fn to_header(&self) -> String {
        match self {
            Challenge::Basic { realm } => format!("Basic realm={}", quote(realm)),
            Challenge::Digest(d) => {
                let mut s = format!(
                    "Digest realm={}, nonce={}, algorithm=MD5",
                    quote(&d.realm),
                    quote(&d.nonce)
                );
                if let Some(o) = &d.opaque {
                    s.push_str(&format!(", opaque={}", quote(o)));
                }
                if d.qop_auth {
                    s.push_str(", qop=\"auth\"");
                }
                if d.stale {
                    s.push_str(", stale=TRUE");
                }
                s
            }
        }
    }

    /// The `Authorization` value answering this challenge for a request
    /// `method uri` with `user`/`password`. `cnonce` (client nonce, any
    /// opaque string from the caller's seed) and `nc` (the count of
    /// requests with this nonce, from 1) are used when the server asked
    /// for `qop=auth`.
    pub fn authorization(
        &self,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> String {
        match self {
            Challenge::Basic { .. } => basic_authorization(user, password),
            Challenge::Digest(d) => {
                let ha1 = md5_hex(&[user, ":", &d.realm, ":", password]);
                let nc = format!("{nc:08x}");
                let qop = d.qop_auth.then_some(("auth", nc.as_str(), cnonce));
                let response = digest_response(&ha1, &d.nonce, method, uri, qop);
                let mut s = format!(
                    "Digest username={}, realm={}, nonce={}, uri={}, response={}, algorithm=MD5",
                    quote(user),
                    quote(&d.realm),
                    quote(&d.nonce),
                    quote(uri),
                    quote(&response)
                );
                if let Some(o) = &d.opaque {
                    s.push_str(&format!(", opaque={}", quote(o)));
                }
                if d.qop_auth {
                    s.push_str(&format!(", qop=auth, nc={nc}, cnonce={}", quote(cnonce)));
                }
                s
            }
        }
    }
}

/// `Basic base64(user:password)` (RFC 7617 §2).
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64_encode(format!("{user}:{password}").as_bytes())
    )
}

/// A parsed `Authorization` value.
#[derive(Clone, PartialEq, Eq)]
pub enum Authorization {
    /// Basic: the user and password in clear.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// Digest: the parameters of the answer (RFC 2617 §3.2.2).
    Digest {
        /// `username`.
        user: String,
        /// `realm`.
        realm: String,
        /// `nonce` (must be the server's).
        nonce: String,
        /// `uri` (the digest URI the response covers).
        uri: String,
        /// `response` (hex).
        response: String,
        /// `(qop, nc, cnonce)` with `qop=auth`.
        qop: Option<(String, String, String)>,
    },
}

impl core::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the password, even through `{:?}`.
        match self {
            Authorization::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", &crate::peer_text::escaped(user))
                .finish_non_exhaustive(),
            Authorization::Digest { user, realm, .. } => f
                .debug_struct("Digest")
                .field("user", &crate::peer_text::escaped(user))
                .field("realm", &crate::peer_text::escaped(realm))
                .finish_non_exhaustive(),
        }
    }
}

impl Authorization {
    /// Reads one `Authorization` value.
    pub fn parse(header: &str) -> Result<Authorization, AuthError> {
        let (scheme, rest) = split_scheme(header)?;
        if scheme.eq_ignore_ascii_case("Basic") {
            let raw = base64_decode(rest.trim()).ok_or(AuthError::BadBasic)?;
            let text = String::from_utf8(raw).map_err(|_| AuthError::BadBasic)?;
            let (user, password) = text.split_once(':').ok_or(AuthError::BadBasic)?;
            return Ok(Authorization::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            });
        }
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(AuthError::UnsupportedScheme);
        }
        let params = parse_params(rest)?;
        check_algorithm(&params)?;
        let get = |n: &'static str| {
            param(&params, n)
                .map(str::to_owned)
                .ok_or(AuthError::Missing(n))
        };
        let qop = match param(&params, "qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                Some(("auth".to_owned(), get("nc")?, get("cnonce")?))
            }
            Some(_) => return Err(AuthError::UnsupportedAlgorithm),
        };
        Ok(Authorization::Digest {
            user: get("username")?,
            realm: get("realm")?,
            nonce: get("nonce")?,
            uri: get("uri")?,
            response: get("response")?,
            qop,
        })
    }
}

/// The nonce of a server connection: 32 hex digits derived from its seed
/// (the driver's randomness; a different one per connection).
pub fn server_nonce(seed: u64) -> String {
    md5_hex(&["arcly-rtsp-nonce:", &format!("{seed:016x}")])
}

/// The challenges a server sends with 401: Digest (with `nonce`) and Basic.
pub fn server_challenges(nonce: &str) -> [String; 2] {
    [
        Challenge::Digest(DigestChallenge {
            realm: REALM.to_owned(),
            nonce: nonce.to_owned(),
            opaque: None,
            qop_auth: false,
            stale: false,
        })
        .to_header(),
        Challenge::Basic {
            realm: REALM.to_owned(),
        }
        .to_header(),
    ]
}

/// The [`Credentials`] of a request on a server connection whose nonce is
/// `nonce`: Basic → [`Credentials::Password`], Digest for our realm and
/// nonce → [`Credentials::Digest`] (bound to `method`), anything else
/// (absent, unreadable, another nonce or realm) → [`Credentials::None`],
/// so that the policy asks again with a fresh challenge.
pub fn credentials_from(header: Option<&str>, method: &str, nonce: &str) -> Credentials {
    match header.map(Authorization::parse) {
        Some(Ok(Authorization::Basic { user, password })) => {
            Credentials::Password { user, password }
        }
        Some(Ok(Authorization::Digest {
            user,
            realm,
            nonce: n,
            uri,
            response,
            qop,
        })) if n == nonce && realm == REALM => Credentials::Digest(DigestCredentials::new(
            user, realm, n, method, uri, response, qop,
        )),
        _ => Credentials::None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn challenge_round_trip_and_leniency() {
        let c = Challenge::parse(
            r#"digest REALM="cam \"1\"",nonce=abc ,  Algorithm=md5, qop="auth,auth-int", stale=true"#,
        )
        .unwrap();
        let Challenge::Digest(d) = &c else {
            panic!("{c:?}")
        };
        assert_eq!(d.realm, "cam \"1\"");
        assert_eq!(d.nonce, "abc");
        assert!(d.qop_auth && d.stale);
        assert_eq!(Challenge::parse(&c.to_header()).unwrap(), c);
        assert_eq!(
            Challenge::parse("Basic realm=\"x\"").unwrap(),
            Challenge::Basic { realm: "x".into() }
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"x\", nonce=\"n\", algorithm=SHA-256"),
            Err(AuthError::UnsupportedAlgorithm)
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"x\""),
            Err(AuthError::Missing("nonce"))
        );
        assert_eq!(Challenge::parse("Digest realm=\"x"), Err(AuthError::Syntax));
        let long = format!("Digest realm=\"{}\"", "a".repeat(MAX_AUTH_HEADER));
        assert_eq!(Challenge::parse(&long), Err(AuthError::TooLong));
        let many = format!("Digest {}", "a=b,".repeat(MAX_PARAMS + 1));
        assert_eq!(Challenge::parse(&many), Err(AuthError::TooManyParams));
        // Digest preferred over Basic, in any order.
        let picked = Challenge::pick(["Basic realm=\"r\"", "Bearer x", &c.to_header()]).unwrap();
        assert_eq!(picked, c);
    }

    #[test]
    fn client_answer_verifies_on_server() {
        let nonce = server_nonce(7);
        let [digest, basic] = server_challenges(&nonce);
        for (challenge, qop) in [(digest.clone(), false), (digest, true), (basic, false)] {
            let mut c = Challenge::parse(&challenge).unwrap();
            if let Challenge::Digest(d) = &mut c {
                d.qop_auth = qop;
            }
            let auth = c.authorization("user", "p:ss\"w", "DESCRIBE", "rtsp://h/live/cam", "cn", 1);
            match credentials_from(Some(&auth), "DESCRIBE", &nonce) {
                Credentials::Digest(d) => {
                    assert!(d.verify("p:ss\"w"));
                    assert!(!d.verify("pass"));
                    assert_eq!(d.user(), "user");
                }
                Credentials::Password { user, password } => {
                    assert_eq!((user.as_str(), password.as_str()), ("user", "p:ss\"w"));
                }
                other => panic!("{other:?}"),
            }
            // Another method than the one answered does not verify.
            if let Credentials::Digest(d) = credentials_from(Some(&auth), "SETUP", &nonce) {
                assert!(!d.verify("p:ss\"w"));
            }
            // Another connection's nonce is not credentials at all.
            if challenge.starts_with("Digest") {
                assert!(credentials_from(Some(&auth), "DESCRIBE", &server_nonce(8)).is_none());
            }
        }
        assert!(credentials_from(None, "DESCRIBE", &nonce).is_none());
        assert!(credentials_from(Some("Basic !!!"), "DESCRIBE", &nonce).is_none());
        assert_ne!(server_nonce(1), server_nonce(2));
    }

    #[test]
    fn authorization_debug_hides_password() {
        let a = Authorization::parse(&basic_authorization("u", "s3cret")).unwrap();
        assert!(!format!("{a:?}").contains("s3cret"));
    }
}
