//! The names of every HLS resource of a stream: one place for parse and format.

use super::Variant;

/// Names of everything the server serves below `/<app>/<stream>/`.
///
/// | resource | LL-HLS (fMP4) | classic HLS (TS) |
/// |----------|---------------|------------------|
/// | multivariant playlist (RFC 8216 §4.3.4) | `index.m3u8` | `ts/index.m3u8` |
/// | media playlist (RFC 8216 §4.3.3) | `stream.m3u8` | `ts/stream.m3u8` |
/// | init section (`EXT-X-MAP`, §4.3.2.5) | `init.mp4` | — |
/// | media segment | `seg<msn>.m4s` | `ts/seg<msn>.ts` |
/// | partial segment (rfc8216bis §4.4.4.9) | `part<msn>.<n>.m4s` | — |
///
/// Numbers are decimal without leading zeros, so every resource has exactly
/// one name and `Resource::parse(&r.path()) == Some(r)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `index.m3u8` / `ts/index.m3u8`.
    Multivariant(Variant),
    /// `stream.m3u8` / `ts/stream.m3u8`.
    MediaPlaylist(Variant),
    /// `init.mp4`.
    Init,
    /// `seg<msn>.m4s` / `ts/seg<msn>.ts`.
    Segment(Variant, u64),
    /// `part<msn>.<n>.m4s`.
    Part {
        /// Media sequence number of the parent segment.
        msn: u64,
        /// Part index within the segment (0-based).
        part: u32,
    },
}

/// Parses a canonical decimal number: ASCII digits, no sign, no leading zero.
fn number<T: core::str::FromStr>(s: &str) -> Option<T> {
    let canonical = !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}

impl Resource {
    /// Parses a path below the stream directory (no leading `/`, no query
    /// string). Anything else, including `..` or extra slashes, is `None`.
    pub fn parse(path_below_stream: &str) -> Option<Resource> {
        if let Some(rest) = path_below_stream.strip_prefix("ts/") {
            return match rest {
                "index.m3u8" => Some(Resource::Multivariant(Variant::Ts)),
                "stream.m3u8" => Some(Resource::MediaPlaylist(Variant::Ts)),
                _ => {
                    let n = rest.strip_prefix("seg")?.strip_suffix(".ts")?;
                    Some(Resource::Segment(Variant::Ts, number(n)?))
                }
            };
        }
        match path_below_stream {
            "index.m3u8" => return Some(Resource::Multivariant(Variant::LowLatency)),
            "stream.m3u8" => return Some(Resource::MediaPlaylist(Variant::LowLatency)),
            "init.mp4" => return Some(Resource::Init),
            _ => {}
        }
        if let Some(n) = path_below_stream
            .strip_prefix("seg")
            .and_then(|r| r.strip_suffix(".m4s"))
        {
            return Some(Resource::Segment(Variant::LowLatency, number(n)?));
        }
        let body = path_below_stream
            .strip_prefix("part")?
            .strip_suffix(".m4s")?;
        let (msn, part) = body.split_once('.')?;
        Some(Resource::Part {
            msn: number(msn)?,
            part: number(part)?,
        })
    }

    /// The path below the stream directory (the inverse of [`parse`](Self::parse)).
    pub fn path(&self) -> String {
        self.to_string()
    }

    /// Whether the resource lives in the `ts/` directory.
    fn in_ts_dir(&self) -> bool {
        matches!(
            self,
            Resource::Multivariant(Variant::Ts)
                | Resource::MediaPlaylist(Variant::Ts)
                | Resource::Segment(Variant::Ts, _)
        )
    }

    /// Writes the URI of this resource as seen from a playlist of
    /// `variant` (relative: TS playlists live in `ts/`).
    pub(crate) fn write_uri(&self, out: &mut impl core::fmt::Write, variant: Variant) {
        let _ = match (variant, self.in_ts_dir()) {
            (Variant::Ts, true) => write!(out, "{}", Name(self)),
            (Variant::Ts, false) => write!(out, "../{self}"),
            (Variant::LowLatency, _) => write!(out, "{self}"),
        };
    }
}

/// Display of a resource's file name (without its directory).
struct Name<'a>(&'a Resource);

impl core::fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Resource::Multivariant(_) => f.write_str("index.m3u8"),
            Resource::MediaPlaylist(_) => f.write_str("stream.m3u8"),
            Resource::Init => f.write_str("init.mp4"),
            Resource::Segment(Variant::LowLatency, n) => write!(f, "seg{n}.m4s"),
            Resource::Segment(Variant::Ts, n) => write!(f, "seg{n}.ts"),
            Resource::Part { msn, part } => write!(f, "part{msn}.{part}.m4s"),
        }
    }
}

/// The path below the stream directory, as [`Resource::path`].
impl core::fmt::Display for Resource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.in_ts_dir() {
            f.write_str("ts/")?;
        }
        write!(f, "{}", Name(self))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let all = [
            Resource::Multivariant(Variant::LowLatency),
            Resource::Multivariant(Variant::Ts),
            Resource::MediaPlaylist(Variant::LowLatency),
            Resource::MediaPlaylist(Variant::Ts),
            Resource::Init,
            Resource::Segment(Variant::LowLatency, 0),
            Resource::Segment(Variant::Ts, u64::MAX),
            Resource::Part { msn: 7, part: 0 },
            Resource::Part {
                msn: 12345,
                part: u32::MAX,
            },
        ];
        for r in all {
            assert_eq!(Resource::parse(&r.path()), Some(r), "{}", r.path());
        }
        for bad in [
            "",
            "/index.m3u8",
            "../index.m3u8",
            "ts/../init.mp4",
            "seg01.m4s",
            "seg.m4s",
            "seg-1.m4s",
            "seg+1.m4s",
            "seg1.ts",
            "ts/seg1.m4s",
            "ts/init.mp4",
            "part1.m4s",
            "part1.2.3.m4s",
            "part1..m4s",
            "seg18446744073709551616.m4s",
            "part1.4294967296.m4s",
            "index.m3u8?x",
            "ts/ts/index.m3u8",
        ] {
            assert_eq!(Resource::parse(bad), None, "{bad}");
        }
        let uri = |r: Resource, v| {
            let mut s = String::new();
            r.write_uri(&mut s, v);
            s
        };
        assert_eq!(
            uri(Resource::Segment(Variant::Ts, 3), Variant::Ts),
            "seg3.ts"
        );
        assert_eq!(
            uri(Resource::MediaPlaylist(Variant::Ts), Variant::Ts),
            "stream.m3u8"
        );
        assert_eq!(uri(Resource::Init, Variant::Ts), "../init.mp4");
        assert_eq!(
            uri(Resource::Part { msn: 1, part: 2 }, Variant::LowLatency),
            "part1.2.m4s"
        );
    }
}
