//! Text that came from a peer, made safe to log and checked before use.
//!
//! Anything a peer sends (an RTMP app or stream name, a tcUrl, an SRT stream
//! id, an RTSP URL, an HTTP path or header) may hold CR/LF, ESC or other
//! control bytes that would forge log lines or drive a terminal, and may be
//! tens of kilobytes long. Every log line that quotes peer text goes through
//! [`escaped`] (or [`escaped_bytes`]): control characters become `\r`, `\n`,
//! `\t`, `\e`, `\xNN` or `\u{NNNN}`, a backslash becomes `\\`, and the text is
//! cut after [`DEFAULT_LOG_CHARS`] characters with a note of how much was
//! left out. Names that become stream keys are checked with [`check_name`]
//! and refused at admission when they hold control characters or exceed
//! [`MAX_APP_LEN`] / [`MAX_STREAM_NAME_LEN`] bytes.

use core::fmt;

/// How many characters of a peer string a log line quotes by default.
pub const DEFAULT_LOG_CHARS: usize = 200;

/// Longest app name (bytes) a peer may use, on every protocol.
pub const MAX_APP_LEN: usize = 128;

/// Longest stream name (bytes, query string included) a peer may use, on
/// every protocol.
pub const MAX_STREAM_NAME_LEN: usize = 256;

/// Longest URL-like peer string (RTMP tcUrl, SRT stream id, RTSP URL) that is
/// accepted at all, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// A peer string, escaped and cut for a log line. Made by [`escaped`].
#[derive(Clone, Copy)]
pub struct Escaped<'a> {
    text: &'a str,
    max_chars: usize,
}

/// Wraps peer text so that its `Display` is safe to log: control characters
/// escaped, at most [`DEFAULT_LOG_CHARS`] characters shown.
pub fn escaped(text: &str) -> Escaped<'_> {
    Escaped {
        text,
        max_chars: DEFAULT_LOG_CHARS,
    }
}

impl<'a> Escaped<'a> {
    /// Shows at most `max_chars` characters instead of the default.
    pub fn max_chars(self, max_chars: usize) -> Self {
        Self { max_chars, ..self }
    }
}

fn write_char_escaped(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    match c {
        '\r' => f.write_str("\\r"),
        '\n' => f.write_str("\\n"),
        '\t' => f.write_str("\\t"),
        '\u{1b}' => f.write_str("\\e"),
        '\\' => f.write_str("\\\\"),
        c if (c as u32) < 0x100 && c.is_control() => write!(f, "\\x{:02x}", c as u32),
        // Other control and format characters (bidi overrides, line and
        // paragraph separators) can reorder or break a log line too.
        c if c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c) =>
        {
            write!(f, "\\u{{{:04x}}}", c as u32)
        }
        c => fmt::Write::write_char(f, c),
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown_bytes = 0usize;
        for (n, c) in self.text.chars().enumerate() {
            if n >= self.max_chars {
                let rest = self.text.len().saturating_sub(shown_bytes);
                return write!(f, "…(+{rest} bytes)");
            }
            write_char_escaped(f, c)?;
            shown_bytes += c.len_utf8();
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Raw peer bytes (not necessarily UTF-8), escaped and cut for a log line.
/// Made by [`escaped_bytes`].
#[derive(Clone, Copy)]
pub struct EscapedBytes<'a> {
    bytes: &'a [u8],
    max_bytes: usize,
}

/// Wraps peer bytes for a log line: printable ASCII as is, everything else
/// as `\xNN`, at most [`DEFAULT_LOG_CHARS`] bytes shown.
pub fn escaped_bytes(bytes: &[u8]) -> EscapedBytes<'_> {
    EscapedBytes {
        bytes,
        max_bytes: DEFAULT_LOG_CHARS,
    }
}

impl fmt::Display for EscapedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.bytes.get(..self.max_bytes).unwrap_or(self.bytes);
        for &b in shown {
            match b {
                b'\\' => f.write_str("\\\\")?,
                b'\r' => f.write_str("\\r")?,
                b'\n' => f.write_str("\\n")?,
                b'\t' => f.write_str("\\t")?,
                0x20..=0x7e => fmt::Write::write_char(f, char::from(b))?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        if shown.len() < self.bytes.len() {
            write!(f, "…(+{} bytes)", self.bytes.len() - shown.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for EscapedBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Why a peer-supplied name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("empty name")]
    Empty,
    /// The name is longer than allowed.
    #[error("name of {len} bytes is longer than the maximum of {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The name holds a control character (CR, LF, ESC, …) at this byte offset.
    #[error("name holds a control character at byte {at}")]
    ControlChar {
        /// Byte offset of the first control character.
        at: usize,
    },
}

/// Checks a peer-supplied name (app, stream name, tcUrl, stream id): not
/// `url` without its query (`?` and all after it): what a log line may
/// show of a URL or name that can carry credentials
/// (`rtmp://h/app?user=u&pass=p`, `cam?token=t`). Escape the result with
/// [`escaped`] as any peer text.
pub fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(before, _)| before)
}

/// empty, at most `max_len` bytes, no control characters.
pub fn check_name(name: &str, max_len: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > max_len {
        return Err(NameError::TooLong {
            len: name.len(),
            max: max_len,
        });
    }
    if let Some((at, _)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return Err(NameError::ControlChar { at });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn control_characters_cannot_forge_a_line() {
        let s = escaped("live\r\n2026-01-01T00:00:00Z ERROR forged\x1b[31m\\").to_string();
        assert_eq!(s, "live\\r\\n2026-01-01T00:00:00Z ERROR forged\\e[31m\\\\");
        assert!(!s.contains('\n') && !s.contains('\r') && !s.contains('\x1b'));
        assert_eq!(escaped("a\u{202e}b\u{85}").to_string(), "a\\u{202e}b\\x85");
    }

    #[test]
    fn long_text_is_cut() {
        let long = "x".repeat(60_000);
        let s = escaped(&long).to_string();
        assert!(s.len() < 260, "{}", s.len());
        assert!(s.ends_with("…(+59800 bytes)"), "{s}");
        assert_eq!(escaped("héllo").max_chars(2).to_string(), "hé…(+3 bytes)");
    }

    #[test]
    fn bytes_are_escaped() {
        assert_eq!(escaped_bytes(b"ok\n\xff\\").to_string(), "ok\\n\\xff\\\\");
        let long = vec![b'a'; 300];
        assert!(escaped_bytes(&long).to_string().ends_with("…(+100 bytes)"));
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name("cam", 10), Ok(()));
        assert_eq!(check_name("", 10), Err(NameError::Empty));
        assert_eq!(
            check_name("abcdefghijk", 10),
            Err(NameError::TooLong { len: 11, max: 10 })
        );
        assert_eq!(
            check_name("ab\ncd", 10),
            Err(NameError::ControlChar { at: 2 })
        );
    }
}
