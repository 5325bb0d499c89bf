//! HLS (RFC 8216) and Low-Latency HLS (draft-pantos-hls-rfc8216bis, "LL-HLS"):
//! a pure segmenter and playlist writer. No clock, no I/O: frames in,
//! playlists and segment bytes out; the HTTP layer (`crate::http`) serves them
//! and turns [`PlaylistReply::NotYet`] into a blocking reload wait.
//!
//! One [`HlsMuxer`] per stream builds both variants from the same frames:
//! - [`Variant::LowLatency`]: fMP4/CMAF segments (`EXT-X-MAP` init section)
//!   made of partial segments (`EXT-X-PART`, `EXT-X-PRELOAD-HINT`,
//!   `EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES`, delta updates), always;
//! - [`Variant::Ts`]: classic MPEG-TS segments, each starting with PAT/PMT
//!   (RFC 8216 §3.2), only while asked for ([`HlsMuxer::enable_ts`] /
//!   [`HlsMuxer::disable_ts`]): it starts at the next segment that starts on
//!   a keyframe and shares the media sequence numbers of the fMP4 segments
//!   (TS segment `N` holds the frames of fMP4 segment `N`).
//!
//! Names of the resources are in [`Resource`].
//!
//! Playlist tags written (RFC 8216 §4.3, rfc8216bis §4.4):
//!
//! | tag | LL-HLS | TS |
//! |-----|--------|----|
//! | `EXT-X-VERSION` | 9 (delta updates) | 3 |
//! | `EXT-X-TARGETDURATION` | ⌈segment duration⌉, raised to the longest segment (rounded) | same |
//! | `EXT-X-SERVER-CONTROL` | `CAN-BLOCK-RELOAD=YES`, `CAN-SKIP-UNTIL` = 6 × target, `PART-HOLD-BACK` = 3 × part target | – |
//! | `EXT-X-PART-INF:PART-TARGET` | the part duration, raised to the longest part | – |
//! | `EXT-X-MEDIA-SEQUENCE`, `EXT-X-DISCONTINUITY-SEQUENCE` | sliding window | same |
//! | `EXT-X-INDEPENDENT-SEGMENTS` | when every segment starts on a keyframe | same |
//! | `EXT-X-MAP` | `init.mp4` (`init.mp4?v=N` after a codec change) | – |
//! | `EXT-X-PART` | parts of the segments in the last 3 target durations | – |
//! | `EXT-X-PRELOAD-HINT:TYPE=PART` | the next part | – |
//! | `EXT-X-DISCONTINUITY` | timestamp jump / new codec config | same |
//! | `EXT-X-PROGRAM-DATE-TIME` | first segment listed and each one after a discontinuity, when wall times are given ([`HlsMuxer::push_at`]) | same |
//! | `EXT-X-SKIP` | on `_HLS_skip=YES` | – |
//! | `EXT-X-ENDLIST` | after [`HlsMuxer::finish`] | same |
//!
//! Not written: `EXT-X-RENDITION-REPORT` (one rendition per stream).
//!
//! Core reads no clock: `EXT-X-PROGRAM-DATE-TIME` needs the caller's wall
//! time as an input ([`HlsMuxer::push_at`], [`HlsMuxer::live_edge`]; the
//! HTTP service maps its `Instant`s with a [`WallClock`]).
//!
//! After a codec change the window may hold segments of two init sections:
//! the playlist names them `init.mp4` and `init.mp4?v=N` (one
//! [`Resource::Init`]; the query picks the version, see
//! [`HlsMuxer::init_segment_for_query`]).

mod muxer;
mod playlist;
mod resource;
mod wall;

use std::time::Duration;

pub use muxer::{HlsMuxer, MAX_PARTS_PER_SEGMENT, MAX_START_FRAMES};
pub use resource::Resource;
pub(crate) use wall::civil_from_days;
pub use wall::WallClock;

/// Segmenter configuration.
///
/// Defaults: 2 s segments, 200 ms parts (Apple's LL-HLS guidance: parts of
/// 0.2–0.33 s), 7 segments in the window (RFC 8216 §6.2.2: at least three
/// target durations must stay available), 32 MiB per segment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HlsConfig {
    /// Target segment duration: segments are cut at the first video keyframe
    /// after it (RFC 8216 §3: each segment starts with a keyframe).
    pub segment_duration: Duration,
    /// Target partial segment duration (LL-HLS `EXT-X-PART-INF:PART-TARGET`).
    pub part_duration: Duration,
    /// Segments kept in the sliding window of the media playlist.
    pub window_segments: usize,
    /// A segment that grows past this many bytes is cut (bounded memory without keyframes).
    pub max_segment_bytes: usize,
}
/// Builder-style setters: the struct is `#[non_exhaustive]`, so other
/// crates start from its default (or constructor) value and chain these.
impl HlsConfig {
    /// Sets [`segment_duration`](Self::segment_duration).
    #[must_use]
    pub fn with_segment_duration(mut self, segment_duration: Duration) -> Self {
        self.segment_duration = segment_duration;
        self
    }

    /// Sets [`part_duration`](Self::part_duration).
    #[must_use]
    pub fn with_part_duration(mut self, part_duration: Duration) -> Self {
        self.part_duration = part_duration;
        self
    }

    /// Sets [`window_segments`](Self::window_segments).
    #[must_use]
    pub fn with_window_segments(mut self, window_segments: usize) -> Self {
        self.window_segments = window_segments;
        self
    }

    /// Sets [`max_segment_bytes`](Self::max_segment_bytes).
    #[must_use]
    pub fn with_max_segment_bytes(mut self, max_segment_bytes: usize) -> Self {
        self.max_segment_bytes = max_segment_bytes;
        self
    }
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            segment_duration: Duration::from_secs(2),
            part_duration: Duration::from_millis(200),
            window_segments: 7,
            max_segment_bytes: 32 << 20,
        }
    }
}

/// The two flavours served for every stream (the TS one on demand, see
/// [`HlsMuxer::enable_ts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// LL-HLS: fMP4 (CMAF) segments and partial segments.
    LowLatency,
    /// Classic HLS: MPEG-TS segments.
    Ts,
}

/// The LL-HLS delivery directives of a playlist request (`_HLS_msn`, `_HLS_part`, `_HLS_skip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlaylistRequest {
    /// `_HLS_msn`.
    pub msn: Option<u64>,
    /// `_HLS_part`.
    pub part: Option<u32>,
    /// `_HLS_skip=YES` (or `v2`).
    pub skip: bool,
}

impl PlaylistRequest {
    /// Reads the delivery directives from a URL query string (without the
    /// `?`; rfc8216bis §6.2.5): `_HLS_msn=<u64>`, `_HLS_part=<u32>`,
    /// `_HLS_skip=YES|v2`. Other parameters are ignored; a malformed
    /// directive value or a repeated directive is an error.
    pub fn from_query(query: &str) -> Result<PlaylistRequest, &'static str> {
        let mut r = PlaylistRequest::default();
        let mut seen_skip = false;
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let num =
                |v: &str| v.len() <= 20 && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
            match k {
                "_HLS_msn" => {
                    let m = v
                        .parse()
                        .ok()
                        .filter(|_| num(v))
                        .ok_or("malformed _HLS_msn")?;
                    if r.msn.replace(m).is_some() {
                        return Err("repeated _HLS_msn");
                    }
                }
                "_HLS_part" => {
                    let p = v
                        .parse()
                        .ok()
                        .filter(|_| num(v))
                        .ok_or("malformed _HLS_part")?;
                    if r.part.replace(p).is_some() {
                        return Err("repeated _HLS_part");
                    }
                }
                "_HLS_skip" => {
                    if !matches!(v, "YES" | "v2") {
                        return Err("malformed _HLS_skip");
                    }
                    if std::mem::replace(&mut seen_skip, true) {
                        return Err("repeated _HLS_skip");
                    }
                    r.skip = true;
                }
                _ => {}
            }
        }
        Ok(r)
    }
}

/// The answer to a media playlist request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaylistReply {
    /// The playlist text.
    Ready(String),
    /// Blocking reload: the requested segment / part does not exist yet.
    NotYet,
    /// The request is invalid (draft-pantos-hls-rfc8216bis §6.2.5.2).
    BadRequest(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_directives() {
        assert_eq!(
            PlaylistRequest::from_query("_HLS_msn=12&_HLS_part=3&x=y"),
            Ok(PlaylistRequest {
                msn: Some(12),
                part: Some(3),
                skip: false
            })
        );
        assert_eq!(
            PlaylistRequest::from_query("_HLS_skip=YES"),
            Ok(PlaylistRequest {
                skip: true,
                ..Default::default()
            })
        );
        assert_eq!(
            PlaylistRequest::from_query(""),
            Ok(PlaylistRequest::default())
        );
        for bad in [
            "_HLS_msn=",
            "_HLS_msn=-1",
            "_HLS_msn=+1",
            "_HLS_msn=99999999999999999999999",
            "_HLS_part=4294967296",
            "_HLS_skip=NO",
            "_HLS_msn=1&_HLS_msn=2",
            "_HLS_part=1&_HLS_part=1",
            "_HLS_skip=YES&_HLS_skip=YES",
            "_HLS_skip=YES&_HLS_skip=v2",
        ] {
            assert!(PlaylistRequest::from_query(bad).is_err(), "{bad}");
        }
    }
}
