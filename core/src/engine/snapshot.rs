//! Copies of the engine's numbers for an operator: per stream
//! ([`StreamSnapshot`]: counters, publisher, codecs with resolution,
//! viewers per protocol) and the engine's refusals by reason
//! ([`Refusals`]). Built by [`Engine::streams_snapshot`](super::Engine::streams_snapshot)
//! and [`Engine::refusals`](super::Engine::refusals) from atomics and the
//! ring's current configs; nothing here is on the per-frame path.

use std::net::SocketAddr;
use std::sync::Arc;

use super::bus::{SharedFrame, StreamShared};
use super::registry::StreamKey;
use super::sessions::{SessionEntry, SessionRole};
use super::stats::StreamStatsSnapshot;
use crate::frame::Codec;

/// A stream's codec, with the picture size for H.264 / H.265 when its
/// configuration record parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CodecInfo {
    /// The codec.
    pub codec: Codec,
    /// Display width in pixels (video with a parsable SPS).
    pub width: Option<u32>,
    /// Display height in pixels.
    pub height: Option<u32>,
}

impl CodecInfo {
    fn of(config: &SharedFrame) -> Self {
        let f = &config.frame;
        let size = match f.codec {
            Codec::H264 => crate::codec::h264::AvcConfig::parse(&f.payload)
                .and_then(|c| c.parse_sps())
                .ok()
                .map(|s| (s.width, s.height)),
            Codec::H265 => crate::codec::h265::HevcConfig::parse(&f.payload)
                .and_then(|c| c.parse_sps())
                .ok()
                .map(|s| (s.width, s.height)),
            _ => None,
        };
        CodecInfo {
            codec: f.codec,
            width: size.map(|s| s.0),
            height: size.map(|s| s.1),
        }
    }
}

/// The publisher of a stream, as its glue named it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublisherInfo {
    /// Its session id ([`Engine::kick`](super::Engine::kick) takes it).
    pub id: u64,
    /// `rtmp`, `srt`, `rtsp`, `webrtc`, `internal`.
    pub protocol: &'static str,
    /// The publishing peer's address.
    pub peer: Option<SocketAddr>,
}

/// A copy of one live stream's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamSnapshot {
    /// The stream.
    pub key: StreamKey,
    /// Its publisher (`None` for a stream published outside the table,
    /// which does not happen through [`Engine`](super::Engine)).
    pub publisher: Option<PublisherInfo>,
    /// Counters: frames, bytes, keyframes, subscribers, dropped, bitrate,
    /// keyframe interval.
    pub stats: StreamStatsSnapshot,
    /// The video codec in force (from the latest start point's config).
    pub video: Option<CodecInfo>,
    /// The audio codec in force.
    pub audio: Option<CodecInfo>,
    /// Subscribers per protocol, sorted by protocol name.
    pub viewers_by_protocol: Vec<(&'static str, u64)>,
}

impl StreamSnapshot {
    pub(crate) fn of(shared: &Arc<StreamShared>, sessions: &[Arc<SessionEntry>]) -> Self {
        let mut publisher = None;
        let mut viewers: Vec<(&'static str, u64)> = Vec::new();
        for e in sessions {
            if !Arc::ptr_eq(&e.shared, shared) {
                continue;
            }
            match e.role {
                SessionRole::Publisher => {
                    publisher = Some(PublisherInfo {
                        id: e.id,
                        protocol: e.tag.protocol,
                        peer: e.tag.peer,
                    })
                }
                SessionRole::Viewer => match viewers.iter_mut().find(|v| v.0 == e.tag.protocol) {
                    Some(v) => v.1 += 1,
                    None => viewers.push((e.tag.protocol, 1)),
                },
            }
        }
        viewers.sort();
        let (video, audio) = shared.current_configs();
        StreamSnapshot {
            key: shared.key().clone(),
            publisher,
            stats: shared.stats_ref().snapshot(),
            video: video.as_ref().map(CodecInfo::of),
            audio: audio.as_ref().map(CodecInfo::of),
            viewers_by_protocol: viewers,
        }
    }
}

/// Publishes and subscribes the engine refused, by reason (counted since
/// the engine was built). The protocol glue's own refusals (admission
/// policy, per-address connection limits) are counted by each protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Refusals {
    /// No app of that name.
    pub unknown_app: u64,
    /// The stream already had a publisher.
    pub already_publishing: u64,
    /// The app's stream limit.
    pub too_many_streams: u64,
    /// The per-address publisher limit.
    pub too_many_from_peer: u64,
    /// Play of a stream nobody publishes.
    pub not_found: u64,
    /// The stream's subscriber limit.
    pub too_many_subscribers: u64,
}

impl Refusals {
    /// `(reason, count)` pairs with stable snake_case reason names.
    pub fn by_reason(&self) -> [(&'static str, u64); 6] {
        [
            ("unknown_app", self.unknown_app),
            ("already_publishing", self.already_publishing),
            ("too_many_streams", self.too_many_streams),
            ("too_many_from_peer", self.too_many_from_peer),
            ("not_found", self.not_found),
            ("too_many_subscribers", self.too_many_subscribers),
        ]
    }
}
