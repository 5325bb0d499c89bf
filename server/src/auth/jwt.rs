//! JSON Web Tokens (RFC 7519) signed with HS256 (RFC 7518 §3.2) and a
//! static key: the claims name which paths a token may publish or read.
//!
//! ```json
//! {"exp": 1767225600, "arcly": [{"action": "publish", "path": "live/*"}]}
//! ```
//! `action` is `publish` or `read`; `path` an exact `app/stream`, a glob
//! (`live/*`) or empty for every path. `exp` and `nbf` (seconds since the
//! epoch) are checked when present.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Longest token considered.
const MAX_TOKEN_LEN: usize = 8192;

/// base64url without padding (RFC 4648 §5) decoded; `None` if malformed.
fn b64url(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            b'=' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts of JSON, or too long.
    #[error("malformed token")]
    Malformed,
    /// Not `alg: HS256`.
    #[error("unsupported algorithm (HS256 only)")]
    Algorithm,
    /// The signature does not match the key.
    #[error("bad signature")]
    Signature,
    /// `exp` passed or `nbf` not reached.
    #[error("token expired or not yet valid")]
    Expired,
    /// No claim grants this action on this path.
    #[error("token does not grant {0} on this path")]
    NotGranted(&'static str),
}

/// Checks `token` against `key` at `now_secs` (Unix time) for `action`
/// (`publish`/`read`) on `path` (`app/stream`).
pub fn check(
    token: &str,
    key: &[u8],
    now_secs: u64,
    action: &'static str,
    path: &str,
) -> Result<(), JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: serde_json::Value = serde_json::from_slice(&b64url(h).ok_or(JwtError::Malformed)?)
        .map_err(|_| JwtError::Malformed)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(JwtError::Algorithm);
    }
    let sig = b64url(s).ok_or(JwtError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| JwtError::Signature)?;
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    mac.verify_slice(&sig).map_err(|_| JwtError::Signature)?;
    let claims: serde_json::Value = serde_json::from_slice(&b64url(p).ok_or(JwtError::Malformed)?)
        .map_err(|_| JwtError::Malformed)?;
    if claims
        .get("exp")
        .and_then(|e| e.as_u64())
        .is_some_and(|exp| now_secs >= exp)
        || claims
            .get("nbf")
            .and_then(|e| e.as_u64())
            .is_some_and(|nbf| now_secs < nbf)
    {
        return Err(JwtError::Expired);
    }
    let granted = claims
        .get("arcly")
        .and_then(|c| c.as_array())
        .is_some_and(|perms| {
            perms.iter().any(|perm| {
                perm.get("action").and_then(|a| a.as_str()) == Some(action)
                    && perm
                        .get("path")
                        .and_then(|p| p.as_str())
                        .is_some_and(|want| {
                            want.is_empty()
                                || crate::config::Pattern::parse(want)
                                    .ok()
                                    .is_some_and(|pat| pat.matches(path))
                        })
            })
        });
    if granted {
        Ok(())
    } else {
        Err(JwtError::NotGranted(action))
    }
}

/// Signs `claims` with `key` (for tests and the bench).
#[cfg(test)]
#[allow(clippy::indexing_slicing)]
pub fn sign(claims: &serde_json::Value, key: &[u8]) -> String {
    fn enc(b: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }
    let h = enc(br#"{"alg":"HS256","typ":"JWT"}"#);
    let p = enc(claims.to_string().as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(format!("{h}.{p}").as_bytes());
    format!("{h}.{p}.{}", enc(&mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hs256_claims() {
        let key = b"k3y";
        let t = sign(
            &serde_json::json!({"exp": 2000, "arcly": [{"action": "publish", "path": "live/*"}]}),
            key,
        );
        assert_eq!(check(&t, key, 1000, "publish", "live/cam"), Ok(()));
        assert_eq!(
            check(&t, key, 1000, "read", "live/cam"),
            Err(JwtError::NotGranted("read"))
        );
        assert_eq!(
            check(&t, key, 1000, "publish", "other/cam"),
            Err(JwtError::NotGranted("publish"))
        );
        assert_eq!(
            check(&t, key, 2000, "publish", "live/cam"),
            Err(JwtError::Expired)
        );
        assert_eq!(
            check(&t, b"other", 1000, "publish", "live/cam"),
            Err(JwtError::Signature)
        );
        assert_eq!(
            check("a.b", key, 0, "read", "x/y"),
            Err(JwtError::Malformed)
        );
        assert_eq!(
            check("!!.!!.!!", key, 0, "read", "x/y"),
            Err(JwtError::Malformed)
        );
        let any = sign(
            &serde_json::json!({"arcly": [{"action": "read", "path": ""}]}),
            key,
        );
        assert_eq!(check(&any, key, 5, "read", "x/y"), Ok(()));
    }
}
