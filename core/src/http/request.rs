//! Request targets: path and `Range` parsing, with every rejection a
//! value (the router turns it into a status code).
//!
//! Paths are split on `/` and each segment is percent-decoded (RFC 3986
//! §2.1) *before* it is checked, so `%2e%2e`, `%2F` and friends are caught
//! like their plain forms. Empty segments (`//`), `.`, `..`, a decoded `/`,
//! `\`, NUL or any control character reject the request with 400.

use crate::container::hls::Resource;
use crate::engine::StreamKey;

/// Fixed path of the vendored hls.js (see `assets/README.md`).
pub const HLS_JS_PATH: &str = "/_arcly/hls.min.js";

/// Most path segments looked at (`/<app>/<stream>/ts/index.m3u8` has 4).
const MAX_SEGMENTS: usize = 8;

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The vendored hls.js.
    HlsJs,
    /// `/<app>/<stream>/`: the player page.
    Player(StreamKey),
    /// `/<app>/<stream>` without the trailing slash: redirect there (the
    /// page loads `index.m3u8` relative to itself).
    AddSlash(StreamKey),
    /// A resource of a stream.
    Stream(StreamKey, Resource),
}

/// Why a target was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetError {
    /// 400: malformed or unsafe path (traversal, bad escape, empty segment).
    BadPath(&'static str),
    /// 404: well-formed, but names nothing served here.
    NotFound,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one path segment (RFC 3986 §2.1) into UTF-8.
pub(crate) fn percent_decode(s: &str) -> Result<String, &'static str> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex);
            let lo = bytes.get(i + 2).copied().and_then(hex);
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err("bad percent-encoding in path"),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "path is not UTF-8")
}

/// Decodes and checks one segment: no traversal, no separators, no controls.
pub(crate) fn safe_segment(raw: &str) -> Result<String, TargetError> {
    if raw.is_empty() {
        return Err(TargetError::BadPath("empty path segment"));
    }
    let s = percent_decode(raw).map_err(TargetError::BadPath)?;
    if s == "." || s == ".." {
        return Err(TargetError::BadPath("dot segment in path"));
    }
    if s.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
        return Err(TargetError::BadPath("forbidden character in path"));
    }
    Ok(s)
}

/// Parses a request path (`uri.path()`, origin form, starting with `/`).
pub(crate) fn parse_target(path: &str) -> Result<Target, TargetError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(TargetError::BadPath("path must start with /"));
    };
    if rest.is_empty() {
        return Err(TargetError::NotFound);
    }
    let raw: Vec<&str> = rest.split('/').collect();
    if raw.len() > MAX_SEGMENTS {
        return Err(TargetError::BadPath("too many path segments"));
    }
    // A trailing slash yields one final empty segment: allowed only there.
    let (raw, trailing) = match raw.split_last() {
        Some((&"", init)) => (init, true),
        _ => (raw.as_slice(), false),
    };
    let mut segs = Vec::with_capacity(raw.len());
    for r in raw {
        segs.push(safe_segment(r)?);
    }
    match segs.as_slice() {
        [a, b] if a == "_arcly" && b == "hls.min.js" && !trailing => Ok(Target::HlsJs),
        [a, ..] if a == "_arcly" => Err(TargetError::NotFound),
        [app, name] => {
            let key = StreamKey::new(app, name).map_err(|_| TargetError::NotFound)?;
            Ok(if trailing {
                Target::Player(key)
            } else {
                Target::AddSlash(key)
            })
        }
        [app, name, below @ ..] if !trailing => {
            let key = StreamKey::new(app, name).map_err(|_| TargetError::NotFound)?;
            let below = below.join("/");
            let res = Resource::parse(&below).ok_or(TargetError::NotFound)?;
            Ok(Target::Stream(key, res))
        }
        _ => Err(TargetError::NotFound),
    }
}

/// Longest decimal number accepted in a `Range`.
const MAX_DIGITS: usize = 20;

/// A `Range` request resolved against a body of known length
/// (RFC 9110 §14.1.2, §14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeReply {
    /// No usable `Range` (absent, another unit, several ranges, malformed):
    /// serve the whole body with 200.
    Full,
    /// Serve bytes `start..=end` with 206.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// 416: no byte of the body is in the range.
    Unsatisfiable,
}

/// Resolves the `Range` header value `header` for a body of `len` bytes.
/// One `bytes=` range is honoured (`a-b`, `a-`, `-n`); a set of several
/// ranges is answered with the whole body, as RFC 9110 §14.2 allows.
pub(crate) fn resolve_range(header: Option<&str>, len: u64) -> RangeReply {
    let Some(h) = header else {
        return RangeReply::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeReply::Full;
    };
    if spec.contains(',') {
        return RangeReply::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReply::Full;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || s.len() > MAX_DIGITS || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.is_empty(), b.is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match num(b) {
            Some(0) => RangeReply::Unsatisfiable,
            Some(_) if len == 0 => RangeReply::Unsatisfiable,
            Some(n) => RangeReply::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => RangeReply::Full,
        },
        // `a-`: from a to the end.
        (false, true) => match num(a) {
            Some(start) if start < len => RangeReply::Partial {
                start,
                end: len - 1,
            },
            Some(_) => RangeReply::Unsatisfiable,
            None => RangeReply::Full,
        },
        // `a-b`.
        (false, false) => match (num(a), num(b)) {
            (Some(start), Some(end)) if start <= end => {
                if start < len {
                    RangeReply::Partial {
                        start,
                        end: end.min(len - 1),
                    }
                } else {
                    RangeReply::Unsatisfiable
                }
            }
            // An invalid range-spec (last < first) makes the header invalid:
            // ignored (§14.1.1).
            _ => RangeReply::Full,
        },
        (true, true) => RangeReply::Full,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ranges() {
        use RangeReply::*;
        assert_eq!(resolve_range(None, 10), Full);
        assert_eq!(
            resolve_range(Some("bytes=0-3"), 10),
            Partial { start: 0, end: 3 }
        );
        assert_eq!(
            resolve_range(Some("bytes=5-"), 10),
            Partial { start: 5, end: 9 }
        );
        assert_eq!(
            resolve_range(Some("bytes=-4"), 10),
            Partial { start: 6, end: 9 }
        );
        assert_eq!(
            resolve_range(Some("bytes=-40"), 10),
            Partial { start: 0, end: 9 }
        );
        assert_eq!(
            resolve_range(Some("bytes=8-100"), 10),
            Partial { start: 8, end: 9 }
        );
        assert_eq!(resolve_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(resolve_range(Some("bytes=10-20"), 10), Unsatisfiable);
        assert_eq!(resolve_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(resolve_range(Some("bytes=-5"), 0), Unsatisfiable);
        assert_eq!(resolve_range(Some("bytes=5-2"), 10), Full);
        assert_eq!(resolve_range(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(resolve_range(Some("items=0-1"), 10), Full);
        assert_eq!(resolve_range(Some("bytes=x-1"), 10), Full);
        assert_eq!(
            resolve_range(Some("bytes=99999999999999999999999-"), 10),
            Full
        );
    }

    #[test]
    fn targets() {
        use TargetError::*;
        let key = StreamKey::new("live", "cam").unwrap();
        assert_eq!(parse_target("/_arcly/hls.min.js"), Ok(Target::HlsJs));
        assert_eq!(parse_target("/live/cam/"), Ok(Target::Player(key.clone())));
        assert_eq!(parse_target("/live/cam"), Ok(Target::AddSlash(key)));
        assert_eq!(parse_target("/"), Err(NotFound));
        assert_eq!(parse_target("/live"), Err(NotFound));
        assert_eq!(parse_target("/_arcly/other"), Err(NotFound));
        for bad in [
            "/live/../cam/index.m3u8",
            "/live/%2e%2e/index.m3u8",
            "/live/%2E%2E/x",
            "/live//cam/index.m3u8",
            "//live/cam/",
            "/live/cam/./index.m3u8",
            "/live/c%2Fam/index.m3u8",
            "/live/c%5cam/index.m3u8",
            "/live/c%00am/",
            "/live/c%zzam/",
            "/live/c%ff/",
            "/a/b/c/d/e/f/g/h/i/j",
        ] {
            assert!(
                matches!(parse_target(bad), Err(BadPath(_))),
                "{bad} must be refused"
            );
        }
    }
}
