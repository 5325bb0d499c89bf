//! SDP (RFC 8866) as RTSP uses it: parse what encoders and cameras send,
//! and describe the engine's streams to players.
//!
//! Parsing is lenient where real senders are sloppy: LF or CRLF line ends,
//! trailing spaces, a missing `s=`, unknown lines (`b=TIAS`, `a=range`),
//! `fmtp` parameters with a trailing `;` or spaces, an empty `fmtp`. It is
//! strict about size: at most [`MAX_SDP`] bytes, [`MAX_MEDIA`] media
//! sections and [`MAX_ATTRIBUTES`] attributes.

use bytes::Bytes;

use crate::codec::aac::AacConfig;
use crate::codec::h264::AvcConfig;
use crate::codec::h265::{HevcConfig, NAL_PPS, NAL_SPS, NAL_VPS};
use crate::codec::opus::OpusHead;
use crate::frame::Codec;
use crate::rtp::aac::layout_from_fmtp;
use crate::rtp::receiver::TrackParams;

/// Largest SDP accepted (64 KiB).
pub const MAX_SDP: usize = 64 << 10;
/// Largest number of media sections.
pub const MAX_MEDIA: usize = 16;
/// Largest number of attributes in the whole description.
pub const MAX_ATTRIBUTES: usize = 512;

/// Why an SDP was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Longer than [`MAX_SDP`].
    #[error("SDP longer than {MAX_SDP} bytes")]
    TooLong,
    /// Not UTF-8.
    #[error("SDP is not UTF-8")]
    NotUtf8,
    /// More than [`MAX_MEDIA`] media sections or [`MAX_ATTRIBUTES`] attributes.
    #[error("too many {0}")]
    TooMany(&'static str),
    /// An `m=` line that cannot be read.
    #[error("bad media line")]
    BadMedia,
    /// A media section whose format this server does not carry.
    #[error("unsupported format {0}")]
    Unsupported(String),
    /// A codec parameter (`sprop-parameter-sets`, `config`) is malformed.
    #[error("bad {0}")]
    BadParameter(&'static str),
}

/// A media section (`m=` and what follows it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Media {
    /// `video`, `audio`, `application`…
    pub kind: String,
    /// The port of the `m=` line.
    pub port: u16,
    /// The transport protocol (`RTP/AVP`).
    pub proto: String,
    /// The payload formats.
    pub formats: Vec<String>,
    /// `a=name:value` (value `None` for a flag).
    pub attributes: Vec<(String, Option<String>)>,
}

impl Media {
    /// The value of the first attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    }

    /// The `a=control` value.
    pub fn control(&self) -> Option<&str> {
        self.attribute("control")
    }

    /// The first payload type of the `m=` line.
    pub fn payload_type(&self) -> Option<u8> {
        self.formats.first().and_then(|f| f.parse().ok())
    }

    fn per_format(&self, name: &str, pt: u8) -> Option<&str> {
        let pt = pt.to_string();
        self.attributes
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| v.as_deref())
            .find_map(|v| {
                let (p, rest) = v.split_once([' ', '\t']).unwrap_or((v, ""));
                (p == pt).then_some(rest.trim())
            })
    }

    /// `a=rtpmap` of `pt`: encoding name, clock rate, channels.
    pub fn rtpmap(&self, pt: u8) -> Option<(String, u32, Option<u8>)> {
        let v = self.per_format("rtpmap", pt)?;
        let mut it = v.split('/');
        let name = it.next()?.trim().to_owned();
        let rate = it.next()?.trim().parse().ok()?;
        let ch = it.next().and_then(|c| c.trim().parse().ok());
        Some((name, rate, ch))
    }

    /// `a=fmtp` parameters of `pt` (empty when there is none).
    pub fn fmtp(&self, pt: u8) -> Vec<(&str, &str)> {
        self.per_format("fmtp", pt)
            .map(|v| {
                v.split(';')
                    .map(str::trim)
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        kv.split_once('=')
                            .map_or((kv, ""), |(k, v)| (k.trim(), v.trim()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A session description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionDescription {
    /// `s=` (empty when missing).
    pub session_name: String,
    /// Session-level attributes.
    pub attributes: Vec<(String, Option<String>)>,
    /// Media sections in order.
    pub media: Vec<Media>,
}

impl SessionDescription {
    /// Parses an SDP (see the module documentation for what is tolerated).
    pub fn parse(data: &[u8]) -> Result<SessionDescription, SdpError> {
        if data.len() > MAX_SDP {
            return Err(SdpError::TooLong);
        }
        let text = std::str::from_utf8(data).map_err(|_| SdpError::NotUtf8)?;
        let mut sd = SessionDescription::default();
        let mut attrs = 0;
        for line in text.lines() {
            let line = line.trim();
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k {
                "s" => sd.session_name = v.to_owned(),
                "m" => {
                    if sd.media.len() == MAX_MEDIA {
                        return Err(SdpError::TooMany("media sections"));
                    }
                    let mut it = v.split_whitespace();
                    let kind = it.next().ok_or(SdpError::BadMedia)?.to_owned();
                    let port = it
                        .next()
                        .and_then(|p| p.split('/').next())
                        .and_then(|p| p.parse().ok())
                        .ok_or(SdpError::BadMedia)?;
                    let proto = it.next().ok_or(SdpError::BadMedia)?.to_owned();
                    let formats = it.take(32).map(str::to_owned).collect();
                    sd.media.push(Media {
                        kind,
                        port,
                        proto,
                        formats,
                        attributes: Vec::new(),
                    });
                }
                "a" => {
                    attrs += 1;
                    if attrs > MAX_ATTRIBUTES {
                        return Err(SdpError::TooMany("attributes"));
                    }
                    let (n, val) = match v.split_once(':') {
                        Some((n, val)) => (n.trim().to_owned(), Some(val.trim().to_owned())),
                        None => (v.trim().to_owned(), None),
                    };
                    match sd.media.last_mut() {
                        Some(m) => m.attributes.push((n, val)),
                        None => sd.attributes.push((n, val)),
                    }
                }
                _ => {}
            }
        }
        Ok(sd)
    }

    /// The session-level `a=control`.
    pub fn control(&self) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("control"))
            .and_then(|(_, v)| v.as_deref())
    }
}

/// What a publisher's media section means for the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// The payload type.
    pub payload_type: u8,
    /// The RTP clock rate.
    pub clock_rate: u32,
    /// Codec parameters for the receiver.
    pub params: TrackParams,
}

/// Reads the codec of a media section (H.264, H.265, AAC `mpeg4-generic`, Opus).
pub fn track_info(m: &Media) -> Result<TrackInfo, SdpError> {
    let pt = m.payload_type().ok_or(SdpError::BadMedia)?;
    let (name, rate, channels) = m
        .rtpmap(pt)
        .ok_or_else(|| SdpError::Unsupported(format!("payload type {pt} without rtpmap")))?;
    let fmtp = m.fmtp(pt);
    let param = |k: &str| {
        fmtp.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| *v)
    };
    let params = match name.to_ascii_uppercase().as_str() {
        "H264" => {
            let mut sps = None;
            let mut pps = None;
            if let Some(sets) = param("sprop-parameter-sets") {
                for s in sets.split(',').filter(|s| !s.is_empty()) {
                    let nal =
                        base64_decode(s).ok_or(SdpError::BadParameter("sprop-parameter-sets"))?;
                    match nal.first().map(|h| h & 0x1f) {
                        Some(7) => sps = Some(Bytes::from(nal)),
                        Some(8) => pps = Some(Bytes::from(nal)),
                        _ => {}
                    }
                }
            }
            TrackParams::H264 { sps, pps }
        }
        "H265" | "HEVC" => {
            let get = |k: &str| -> Result<Option<Bytes>, SdpError> {
                param(k)
                    .and_then(|v| v.split(',').next())
                    .filter(|v| !v.is_empty())
                    .map(|v| {
                        base64_decode(v)
                            .map(Bytes::from)
                            .ok_or(SdpError::BadParameter("sprop-vps/sps/pps"))
                    })
                    .transpose()
            };
            TrackParams::H265 {
                vps: get("sprop-vps")?,
                sps: get("sprop-sps")?,
                pps: get("sprop-pps")?,
            }
        }
        "MPEG4-GENERIC" => {
            let config = param("config")
                .and_then(hex_decode)
                .ok_or(SdpError::BadParameter("AAC config"))?;
            AacConfig::parse(&config).map_err(|_| SdpError::BadParameter("AAC config"))?;
            TrackParams::Aac {
                config: Bytes::from(config),
                layout: layout_from_fmtp(fmtp.iter().copied()),
            }
        }
        "MP4A-LATM" => {
            if param("cpresent").is_some_and(|v| v != "0") {
                return Err(SdpError::Unsupported("MP4A-LATM with cpresent=1".into()));
            }
            let config = param("config")
                .and_then(hex_decode)
                .and_then(|c| crate::rtp::aac::latm_config_to_asc(&c))
                .ok_or(SdpError::BadParameter("MP4A-LATM config"))?;
            TrackParams::AacLatm { config }
        }
        "OPUS" => TrackParams::Opus {
            head: OpusHead::new(channels.unwrap_or(2).clamp(1, 2)).to_bytes(),
        },
        other => return Err(SdpError::Unsupported(other.chars().take(32).collect())),
    };
    Ok(TrackInfo {
        payload_type: pt,
        clock_rate: rate,
        params,
    })
}

/// The media section of a track the server offers, from the track's config
/// frame payload: `m=`, `a=rtpmap`, `a=fmtp` and `a=control:trackID=N`.
pub fn media_section(
    codec: Codec,
    config: &Bytes,
    payload_type: u8,
    track_id: usize,
) -> Option<String> {
    let (kind, rtpmap, fmtp) = match codec {
        Codec::H264 => {
            let c = AvcConfig::parse(config).ok()?;
            let sets: Vec<String> = c
                .sps
                .iter()
                .chain(&c.pps)
                .map(|n| base64_encode(n))
                .collect();
            let pli = c
                .sps
                .first()
                .and_then(|s| s.get(1..4))
                .map(crate::codec::hex)
                .unwrap_or_default();
            (
                "video",
                "H264/90000".to_owned(),
                format!(
                    "packetization-mode=1; sprop-parameter-sets={}; profile-level-id={pli}",
                    sets.join(",")
                ),
            )
        }
        Codec::H265 => {
            let c = HevcConfig::parse(config).ok()?;
            let one = |t| {
                c.units(t)
                    .next()
                    .map(|n| base64_encode(n))
                    .unwrap_or_default()
            };
            (
                "video",
                "H265/90000".to_owned(),
                format!(
                    "sprop-vps={}; sprop-sps={}; sprop-pps={}",
                    one(NAL_VPS),
                    one(NAL_SPS),
                    one(NAL_PPS)
                ),
            )
        }
        Codec::Aac => {
            let c = AacConfig::parse(config).ok()?;
            (
                "audio",
                format!("MPEG4-GENERIC/{}/{}", c.sampling_frequency, c.channel_config.max(1)),
                format!(
                    "profile-level-id=1; mode=AAC-hbr; sizelength=13; indexlength=3; indexdeltalength=3; config={}",
                    crate::codec::hex(config)
                ),
            )
        }
        Codec::Opus => {
            let h = OpusHead::parse(config).ok()?;
            (
                "audio",
                "opus/48000/2".to_owned(),
                if h.channels >= 2 {
                    "sprop-stereo=1".to_owned()
                } else {
                    "sprop-stereo=0".to_owned()
                },
            )
        }
        Codec::Av1 | Codec::Vp8 | Codec::Vp9 => return None,
    };
    Some(format!(
        "m={kind} 0 RTP/AVP {payload_type}\r\na=rtpmap:{payload_type} {rtpmap}\r\na=fmtp:{payload_type} {fmtp}\r\na=control:trackID={track_id}\r\n"
    ))
}

/// A whole SDP for DESCRIBE: session lines then the media sections.
pub fn session(name: &str, media: &[String]) -> String {
    let mut s = format!(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns={name}\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=tool:arcly\r\na=control:*\r\na=range:npt=0-\r\n"
    );
    for m in media {
        s.push_str(m);
    }
    s
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64_encode(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = ((n >> (18 - 6 * i)) & 63) as usize;
                s.push(char::from(B64.get(idx).copied().unwrap_or(b'A')));
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Decodes base64 (padding optional, whitespace not allowed); `None` if malformed.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|b| *b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Decodes hex digits (either case); `None` if malformed or odd in length.
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    /// What ffmpeg 5.1 sends in ANNOUNCE for H.264 + AAC.
    pub(crate) const FFMPEG_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat 59.27.100\r\nm=video 0 RTP/AVP 96\r\nb=AS:2000\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAHqzZQKAv+XARAAADAAEAAAMAMg8WLZY=,aOvjyyLA; profile-level-id=64001E\r\na=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\nb=AS:128\r\na=rtpmap:97 MPEG4-GENERIC/44100/2\r\na=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=121056E500\r\na=control:streamid=1\r\n";

    #[test]
    fn ffmpeg_announce() {
        let sd = SessionDescription::parse(FFMPEG_SDP.as_bytes()).unwrap();
        assert_eq!(sd.media.len(), 2);
        assert_eq!(sd.media[0].control(), Some("streamid=0"));
        let v = track_info(&sd.media[0]).unwrap();
        let TrackParams::H264 { sps, pps } = &v.params else {
            panic!()
        };
        assert_eq!(sps.as_ref().unwrap()[0], 0x67);
        assert_eq!(pps.as_ref().unwrap()[0], 0x68);
        let a = track_info(&sd.media[1]).unwrap();
        assert_eq!(a.clock_rate, 44_100);
        assert!(matches!(a.params, TrackParams::Aac { .. }));
    }

    #[test]
    fn sloppy_sdp_and_generated_sdp_round_trip() {
        let sloppy = "v=0\nb=TIAS:500\nm=video 0 RTP/AVP 96 \na=rtpmap:96 H264/90000 \na=fmtp:96 \nm=audio 0 RTP/AVP 111\na=rtpmap:111 opus/48000/2\na=fmtp:111 minptime=10;useinbandfec=1;\n";
        let sd = SessionDescription::parse(sloppy.as_bytes()).unwrap();
        assert_eq!(sd.session_name, "");
        assert!(matches!(
            track_info(&sd.media[0]).unwrap().params,
            TrackParams::H264 { sps: None, .. }
        ));
        assert_eq!(
            sd.media[1].fmtp(111),
            vec![("minptime", "10"), ("useinbandfec", "1")]
        );
        assert!(matches!(
            track_info(&sd.media[1]).unwrap().params,
            TrackParams::Opus { .. }
        ));
        let avc = AvcConfig::from_parameter_sets(
            vec![Bytes::from_static(crate::codec::h264::tests::SPS_640X360)],
            vec![Bytes::from_static(crate::codec::h264::tests::PPS_640X360)],
        )
        .unwrap()
        .to_bytes();
        let asc = AacConfig::new(2, 48_000, 2).to_bytes();
        let media = vec![
            media_section(Codec::H264, &avc, 96, 0).unwrap(),
            media_section(Codec::Aac, &asc, 97, 1).unwrap(),
        ];
        let text = session("live/cam", &media);
        let sd = SessionDescription::parse(text.as_bytes()).unwrap();
        let TrackParams::H264 { sps, .. } = track_info(&sd.media[0]).unwrap().params else {
            panic!()
        };
        assert_eq!(&sps.unwrap()[..], crate::codec::h264::tests::SPS_640X360);
        let a = track_info(&sd.media[1]).unwrap();
        assert_eq!(a.clock_rate, 48_000);
        assert_eq!(sd.media[1].control(), Some("trackID=1"));
        assert!(track_info(&Media::default()).is_err());
        let many = "m=video 0 RTP/AVP 96\n".repeat(MAX_MEDIA + 1);
        assert!(SessionDescription::parse(many.as_bytes()).is_err());
    }

    #[test]
    fn base64_and_hex() {
        for n in 0..10 {
            let d: Vec<u8> = (0..n).map(|i| (i * 37) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&d)).unwrap(), d);
        }
        assert_eq!(base64_decode("Z2Q"), Some(vec![0x67, 0x64]));
        assert!(base64_decode("Z2Q!").is_none());
        assert_eq!(hex_decode("1210"), Some(vec![0x12, 0x10]));
        assert!(hex_decode("121").is_none());
    }
}
