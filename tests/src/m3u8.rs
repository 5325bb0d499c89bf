//! An independent reader of HLS playlists (RFC 8216 and its successor
//! draft-pantos-hls-rfc8216bis with the Low-Latency tags), for tests that
//! check what a server lists: segment durations, media sequence numbers,
//! parts, server control and the multivariant `CODECS` attribute.
//!
//! Written from the spec, not from arcly's playlist writer, so the tests do
//! not share its mistakes. Unknown tags are ignored, as a client must.

use std::collections::BTreeMap;

/// Attributes of a tag's attribute list (§4.2), keys as written, values
/// with the quotes of quoted strings removed.
pub type Attributes = BTreeMap<String, String>;

/// Parses `KEY=value,KEY="quoted, value",...` (§4.2).
pub fn parse_attributes(text: &str) -> Attributes {
    let mut out = Attributes::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else {
            break;
        };
        let key = rest[..eq].trim().to_owned();
        rest = &rest[eq + 1..];
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            value = q[..end].to_owned();
            rest = q.get(end + 1..).unwrap_or("");
            rest = rest.trim_start_matches(',');
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = rest.get(end + 1..).unwrap_or("");
        }
        out.insert(key, value);
        rest = rest.trim_start();
    }
    out
}

/// One `EXT-X-PART` (rfc8216bis §4.4.4.9).
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// `DURATION` in seconds.
    pub duration: f64,
    /// `URI`.
    pub uri: String,
    /// `INDEPENDENT=YES`: starts with a keyframe.
    pub independent: bool,
}

/// One media segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Its media sequence number (`EXT-X-MEDIA-SEQUENCE` + position).
    pub msn: u64,
    /// `EXTINF` duration in seconds.
    pub duration: f64,
    /// Its URI.
    pub uri: String,
    /// The parts listed before its URI (LL-HLS).
    pub parts: Vec<Part>,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
}

/// A media playlist (§4.4.3, §4.4.4).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaPlaylist {
    /// `EXT-X-VERSION`.
    pub version: Option<u32>,
    /// `EXT-X-TARGETDURATION` in seconds.
    pub target_duration: Option<u64>,
    /// `EXT-X-MEDIA-SEQUENCE` (default 0).
    pub media_sequence: u64,
    /// `EXT-X-PART-INF:PART-TARGET` in seconds.
    pub part_target: Option<f64>,
    /// `EXT-X-SERVER-CONTROL` attributes.
    pub server_control: Option<Attributes>,
    /// `EXT-X-MAP:URI`.
    pub map_uri: Option<String>,
    /// Complete segments, in order.
    pub segments: Vec<Segment>,
    /// Parts after the last complete segment (of the segment being built).
    pub trailing_parts: Vec<Part>,
    /// `EXT-X-PRELOAD-HINT` attributes.
    pub preload_hint: Option<Attributes>,
    /// `EXT-X-SKIP:SKIPPED-SEGMENTS` (delta update).
    pub skipped_segments: Option<u64>,
    /// `EXT-X-ENDLIST` present.
    pub ended: bool,
    /// `EXT-X-PROGRAM-DATE-TIME` values in order.
    pub program_date_times: Vec<String>,
}

/// Why a text is not a playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAPlaylist(pub String);

impl std::fmt::Display for NotAPlaylist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not an HLS playlist: {}", self.0)
    }
}

impl std::error::Error for NotAPlaylist {}

fn check_header(text: &str) -> Result<(), NotAPlaylist> {
    if text.lines().next().map(str::trim) != Some("#EXTM3U") {
        return Err(NotAPlaylist(format!(
            "first line is not #EXTM3U: {:?}",
            text.lines().next()
        )));
    }
    Ok(())
}

fn parse_part(attrs: &str) -> Result<Part, NotAPlaylist> {
    let a = parse_attributes(attrs);
    let duration = a
        .get("DURATION")
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| NotAPlaylist(format!("EXT-X-PART without DURATION: {attrs}")))?;
    let uri = a
        .get("URI")
        .cloned()
        .ok_or_else(|| NotAPlaylist(format!("EXT-X-PART without URI: {attrs}")))?;
    Ok(Part {
        duration,
        uri,
        independent: a.get("INDEPENDENT").map(String::as_str) == Some("YES"),
    })
}

impl MediaPlaylist {
    /// Parses a media playlist.
    pub fn parse(text: &str) -> Result<MediaPlaylist, NotAPlaylist> {
        check_header(text)?;
        let mut p = MediaPlaylist::default();
        let mut pending_duration: Option<f64> = None;
        let mut pending_parts: Vec<Part> = Vec::new();
        let mut pending_disc = false;
        let mut next_msn: Option<u64> = None;
        for line in text.lines().skip(1) {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(tag) = line.strip_prefix('#') {
                let (name, value) = tag.split_once(':').unwrap_or((tag, ""));
                match name {
                    "EXT-X-VERSION" => p.version = value.parse().ok(),
                    "EXT-X-TARGETDURATION" => p.target_duration = value.parse().ok(),
                    "EXT-X-MEDIA-SEQUENCE" => {
                        p.media_sequence = value.parse().map_err(|_| {
                            NotAPlaylist(format!("bad EXT-X-MEDIA-SEQUENCE {value:?}"))
                        })?;
                    }
                    "EXT-X-PART-INF" => {
                        p.part_target = parse_attributes(value)
                            .get("PART-TARGET")
                            .and_then(|v| v.parse().ok());
                    }
                    "EXT-X-SERVER-CONTROL" => p.server_control = Some(parse_attributes(value)),
                    "EXT-X-MAP" => p.map_uri = parse_attributes(value).get("URI").cloned(),
                    "EXT-X-PRELOAD-HINT" => p.preload_hint = Some(parse_attributes(value)),
                    "EXT-X-SKIP" => {
                        p.skipped_segments = parse_attributes(value)
                            .get("SKIPPED-SEGMENTS")
                            .and_then(|v| v.parse().ok());
                    }
                    "EXT-X-ENDLIST" => p.ended = true,
                    "EXT-X-DISCONTINUITY" => pending_disc = true,
                    "EXT-X-PROGRAM-DATE-TIME" => p.program_date_times.push(value.to_owned()),
                    "EXTINF" => {
                        let d = value.split(',').next().unwrap_or("");
                        pending_duration = Some(
                            d.trim()
                                .parse()
                                .map_err(|_| NotAPlaylist(format!("bad EXTINF {value:?}")))?,
                        );
                    }
                    "EXT-X-PART" => pending_parts.push(parse_part(value)?),
                    _ => {}
                }
                continue;
            }
            // A URI line: ends a segment.
            let duration = pending_duration
                .take()
                .ok_or_else(|| NotAPlaylist(format!("URI {line:?} without EXTINF")))?;
            let msn = next_msn.unwrap_or(p.media_sequence + p.skipped_segments.unwrap_or(0));
            next_msn = Some(msn + 1);
            p.segments.push(Segment {
                msn,
                duration,
                uri: line.to_owned(),
                parts: std::mem::take(&mut pending_parts),
                discontinuity: std::mem::take(&mut pending_disc),
            });
        }
        p.trailing_parts = pending_parts;
        Ok(p)
    }

    /// The msn of the last complete segment, if any.
    pub fn last_msn(&self) -> Option<u64> {
        self.segments.last().map(|s| s.msn)
    }

    /// The (msn, part index) of the newest listed part: a trailing part of
    /// the segment being built, else the last part of the last segment.
    pub fn last_part(&self) -> Option<(u64, usize)> {
        let next = self.last_msn().map_or(
            self.media_sequence + self.skipped_segments.unwrap_or(0),
            |m| m + 1,
        );
        if !self.trailing_parts.is_empty() {
            return Some((next, self.trailing_parts.len() - 1));
        }
        let last = self.segments.last()?;
        (!last.parts.is_empty()).then(|| (last.msn, last.parts.len() - 1))
    }

    /// Whether part `part` of segment `msn` is listed (complete).
    pub fn has_part(&self, msn: u64, part: usize) -> bool {
        if let Some(s) = self.segments.iter().find(|s| s.msn == msn) {
            // A complete segment: all its parts exist (some servers drop
            // the part list of old segments; then the segment implies them).
            return s.parts.is_empty() || part < s.parts.len();
        }
        let next = self.last_msn().map_or(self.media_sequence, |m| m + 1);
        msn == next && part < self.trailing_parts.len()
    }

    /// `EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES`.
    pub fn can_block_reload(&self) -> bool {
        self.server_control
            .as_ref()
            .and_then(|a| a.get("CAN-BLOCK-RELOAD"))
            .map(String::as_str)
            == Some("YES")
    }
}

/// One `EXT-X-STREAM-INF` variant of a multivariant playlist (§4.4.6.2).
#[derive(Debug, Clone, PartialEq)]
pub struct VariantStream {
    /// Its attributes (`BANDWIDTH`, `CODECS`, `RESOLUTION`, ...).
    pub attributes: Attributes,
    /// The media playlist URI.
    pub uri: String,
}

impl VariantStream {
    /// The entries of `CODECS`, e.g. `["avc1.64001f", "mp4a.40.2"]`.
    pub fn codecs(&self) -> Vec<String> {
        self.attributes
            .get("CODECS")
            .map(|c| c.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default()
    }
}

/// The variants of a multivariant playlist.
pub fn parse_multivariant(text: &str) -> Result<Vec<VariantStream>, NotAPlaylist> {
    check_header(text)?;
    let mut out = Vec::new();
    let mut pending: Option<Attributes> = None;
    for line in text.lines().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            pending = Some(parse_attributes(attrs));
        } else if line.starts_with("#EXTINF") {
            return Err(NotAPlaylist("EXTINF in a multivariant playlist".into()));
        } else if !line.starts_with('#') {
            let attributes = pending
                .take()
                .ok_or_else(|| NotAPlaylist(format!("URI {line:?} without EXT-X-STREAM-INF")))?;
            out.push(VariantStream {
                attributes,
                uri: line.to_owned(),
            });
        }
    }
    Ok(out)
}

/// `avc1.PPCCLL` (RFC 6381 §3.3) from the first SPS (NAL type 7) in an
/// Annex B H.264 byte stream: profile_idc, the constraint flags byte and
/// level_idc, the three bytes after the NAL header.
pub fn avc1_from_annexb(stream: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 3 < stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            let nal = i + 3;
            if stream.get(nal).map(|b| b & 0x1f) == Some(7) {
                let b = stream.get(nal + 1..nal + 4)?;
                return Some(format!("avc1.{:02x}{:02x}{:02x}", b[0], b[1], b[2]));
            }
            i = nal;
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL: &str = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6,CAN-SKIP-UNTIL=12.0
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PART:DURATION=0.2,URI=\"part7.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.2,URI=\"part7.1.m4s\"
#EXTINF:2.000,
seg7.m4s
#EXTINF:1.960,
seg8.m4s
#EXT-X-PART:DURATION=0.2,URI=\"part9.0.m4s\",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part9.1.m4s\"
";

    #[test]
    fn parses_a_low_latency_media_playlist() {
        let p = MediaPlaylist::parse(LL).unwrap();
        assert_eq!(p.target_duration, Some(2));
        assert_eq!(p.media_sequence, 7);
        assert_eq!(p.part_target, Some(0.2));
        assert!(p.can_block_reload());
        assert_eq!(p.map_uri.as_deref(), Some("init.mp4"));
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.segments[0].parts.len(), 2);
        assert!(p.segments[0].parts[0].independent);
        assert_eq!((p.segments[1].msn, p.segments[1].duration), (8, 1.96));
        assert_eq!(p.trailing_parts.len(), 1);
        assert_eq!(p.last_part(), Some((9, 0)));
        assert!(p.has_part(9, 0) && !p.has_part(9, 1) && p.has_part(7, 1));
        assert_eq!(
            p.preload_hint
                .as_ref()
                .unwrap()
                .get("URI")
                .map(String::as_str),
            Some("part9.1.m4s")
        );
        assert!(!p.ended);
    }

    #[test]
    fn parses_a_multivariant_playlist() {
        let v = parse_multivariant(
            "#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=600000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=320x240\n\
             stream.m3u8\n",
        )
        .unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].uri, "stream.m3u8");
        assert_eq!(v[0].codecs(), vec!["avc1.64001f", "mp4a.40.2"]);
        assert_eq!(
            v[0].attributes.get("RESOLUTION").map(String::as_str),
            Some("320x240")
        );
    }

    #[test]
    fn reads_the_codec_string_from_an_sps() {
        let annexb = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1f, 0xac,
        ];
        assert_eq!(avc1_from_annexb(&annexb).as_deref(), Some("avc1.64001f"));
        assert_eq!(avc1_from_annexb(&[0, 0, 1, 0x65, 1, 2]), None);
    }

    #[test]
    fn rejects_non_playlists() {
        assert!(MediaPlaylist::parse("<html>").is_err());
        assert!(MediaPlaylist::parse("#EXTM3U\nseg1.ts\n").is_err());
    }
}
