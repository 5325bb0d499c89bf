//! Stream names with their query (`cam?token=x`) and `tcUrl`
//! (`rtmp://host:port/app?query`), so that the query reaches the admission
//! decision (RTMP spec §7.2.1.1, §7.2.2.1).

use core::fmt;

/// A stream name with its query string split off: `cam?token=x` →
/// name `cam`, query `token=x`. The query is kept for the admission
/// decision, never dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct StreamName {
    /// The name before the first `?`.
    pub name: String,
    /// The text after the first `?` (without it), if there was a `?`.
    pub query: Option<String>,
}

impl StreamName {
    /// Splits `raw` at its first `?`.
    pub fn parse(raw: &str) -> StreamName {
        let (name, query) = split_query(raw);
        StreamName {
            name: name.to_owned(),
            query: query.map(str::to_owned),
        }
    }

    /// The value of the first `key=value` pair named `key` in the query
    /// (no percent-decoding).
    pub fn query_param(&self, key: &str) -> Option<&str> {
        query_param(self.query.as_deref()?, key)
    }
}

impl fmt::Display for StreamName {
    /// The raw form, `name` or `name?query`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.query {
            Some(q) => write!(f, "{}?{}", self.name, q),
            None => f.write_str(&self.name),
        }
    }
}

/// Splits `raw` at its first `?` into (before, after).
pub fn split_query(raw: &str) -> (&str, Option<&str>) {
    match raw.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (raw, None),
    }
}

/// The value of the first `key=value` pair named `key` in a `&`-separated
/// query (a bare `key` yields `""`). No percent-decoding.
pub fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == key => Some(v),
            None if pair == key => Some(""),
            _ => None,
        })
}

/// A parsed `tcUrl` (RTMP spec §7.2.1.1): `rtmp://host[:port]/app[?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcUrl {
    /// `rtmp`, `rtmps`, `rtmpt`, … (lower-cased).
    pub scheme: String,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// The path after the host, without the leading `/` and the query
    /// (may contain `/`, e.g. `live/sub`).
    pub app: String,
    /// The query string after `?`, if any.
    pub query: Option<String>,
}

impl TcUrl {
    /// Parses a tcUrl; `None` if it has no `scheme://` or the port is not a number.
    pub fn parse(url: &str) -> Option<TcUrl> {
        let (scheme, rest) = url.split_once("://")?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (rest.get(..i)?, rest.get(i..)?),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse().ok()?),
                None => None,
            };
            (h, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p.parse().ok()?)),
                None => (authority, None),
            }
        };
        let path = path.strip_prefix('/').unwrap_or(path);
        let (app, query) = split_query(path);
        Some(TcUrl {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_owned(),
            port,
            app: app.trim_end_matches('/').to_owned(),
            query: query.map(str::to_owned),
        })
    }
}
