//! The HTTP auth hook (`--auth-hook-url`): one `POST` of JSON per request,
//! like MediaMTX `authHTTPAddress` and SRS `on_publish`/`on_play`. A 2xx
//! status admits; any other status, a connection failure or no answer
//! within the timeout refuses. Plain `http://` (the hook is a local
//! service); the body of the answer is ignored.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest status line + headers read from the hook.
const MAX_ANSWER: usize = 16 * 1024;

/// A parsed `http://host:port/path` hook URL.
#[derive(Debug, Clone)]
pub struct HookUrl {
    /// `host:port` to connect to and send as `Host`.
    pub authority: String,
    /// Path and query.
    pub path: String,
}

impl HookUrl {
    /// Parses an `http://` URL.
    pub fn parse(url: &str) -> Result<HookUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{url}`: the auth hook URL must start with http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (rest.get(..i).unwrap_or(rest), rest.get(i..).unwrap_or("/")),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(HookUrl {
            authority,
            path: path.to_owned(),
        })
    }
}

/// What the hook answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAnswer {
    /// A 2xx status.
    Admit,
    /// Another status (the code).
    Refuse(u16),
}

/// POSTs `body` to the hook; the status, or why there is none (connection
/// refused, timeout, bad answer).
pub async fn ask(url: &HookUrl, body: &str, timeout: Duration) -> Result<HookAnswer, String> {
    let fut = async {
        let addr: Vec<SocketAddr> = tokio::net::lookup_host(&url.authority)
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", url.authority))?
            .collect();
        let first = addr
            .first()
            .ok_or_else(|| format!("{} has no address", url.authority))?;
        let mut s = tokio::net::TcpStream::connect(first)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", url.authority))?;
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            url.path,
            url.authority,
            body.len(),
            body
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("cannot send to {}: {e}", url.authority))?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line = String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).into_owned();
                let code = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse::<u16>().ok())
                    .filter(|_| line.starts_with("HTTP/1."))
                    .ok_or_else(|| "the hook's answer is not HTTP/1.x".to_owned())?;
                return Ok(if (200..300).contains(&code) {
                    HookAnswer::Admit
                } else {
                    HookAnswer::Refuse(code)
                });
            }
            if buf.len() > MAX_ANSWER {
                return Err("the hook's status line is too long".into());
            }
            let n = s
                .read(&mut chunk)
                .await
                .map_err(|e| format!("reading the hook's answer: {e}"))?;
            if n == 0 {
                return Err("the hook closed without answering".into());
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls() {
        let u = HookUrl::parse("http://127.0.0.1:9000/auth?x=1").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.path.as_str()),
            ("127.0.0.1:9000", "/auth?x=1")
        );
        let u = HookUrl::parse("http://auth.local").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.path.as_str()),
            ("auth.local:80", "/")
        );
        assert!(HookUrl::parse("https://x/").is_err());
        assert!(HookUrl::parse("http:///x").is_err());
    }
}
