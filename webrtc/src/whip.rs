//! One WHIP publisher: SDP offer in, answer out, received media into the
//! engine as a publish.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use arcly::codec::h264::{split_annex_b, AvcConfig};
use arcly::codec::opus::OpusHead;
use arcly::engine::Publisher;
use arcly::{Codec, Frame, FrameFlags, Instant};
use bytes::{BufMut, Bytes, BytesMut};
use str0m::change::SdpOffer;
use str0m::format::Codec as RtcCodec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc, RtcConfig};

use crate::whep::{splitmix64, MAX_OFFER_LEN, MAX_PENDING_TRANSMITS};
use crate::{Transmit, WebRtcError};

/// Counters of one WHIP session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WhipStats {
    /// Media frames published into the engine (config frames not counted).
    pub frames_published: u64,
    /// Frames received but not published (video before the first keyframe
    /// with SPS/PPS, unsupported codec, unparsable parameter sets).
    pub frames_skipped: u64,
    /// Datagrams dropped because [`MAX_PENDING_TRANSMITS`] were queued.
    pub transmits_dropped: u64,
    /// PLIs sent to the publisher (viewers' keyframe requests, at most one
    /// per [`PLI_INTERVAL`]).
    pli_sent: u64,
}

impl WhipStats {
    /// PLIs sent to the publisher.
    pub fn pli_sent(&self) -> u64 {
        self.pli_sent
    }
}

/// Least time between two PLIs sent to a WHIP publisher: viewers' keyframe
/// requests in between fold into the next one (a keyframe takes a round trip
/// and an encoder's time anyway).
pub const PLI_INTERVAL: Duration = Duration::from_millis(500);

/// One WHIP publisher (RFC 9725 §4.2) into one engine stream.
///
/// Same sans-IO shape as [`WhepSession`](crate::WhepSession): feed
/// `handle_datagram` / `handle_timeout`, drain `poll_transmit`.
///
/// Invariants: H.264 is published in the engine's canonical form (AVCC
/// access units; an `AVCDecoderConfigurationRecord` config frame before the
/// first keyframe and whenever the in-band SPS/PPS change); no video frame is
/// published before a keyframe with known parameter sets; an `OpusHead`
/// config frame precedes the first Opus packet. Timestamps: each track's RTP
/// time relative to its first packet, offset by that packet's arrival time
/// after the session's first media packet (so audio and video start aligned
/// to arrival, pending sender-report sync).
pub struct WhipSession {
    rtc: Rtc,
    epoch: std::time::Instant,
    publisher: Publisher,
    local_ufrag: String,
    connected: bool,
    /// Arrival of the first media packet of the session.
    first_arrival: Option<std::time::Instant>,
    /// Per track (video, audio): (first RTP time, its arrival offset in the
    /// track's clock).
    video_base: Option<(u64, u64)>,
    audio_base: Option<(u64, u64)>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    /// A config frame with the current SPS/PPS was published.
    video_config_sent: bool,
    video_started: bool,
    audio_config_sent: bool,
    next_timeout: Option<std::time::Instant>,
    transmits: VecDeque<Transmit>,
    stats: WhipStats,
    /// The receiving video m-line (where PLIs go).
    video_mid: Option<Mid>,
    /// Viewers asked for a keyframe that no PLI carried yet.
    keyframe_wanted: bool,
    last_pli: Option<Instant>,
}

impl core::fmt::Debug for WhipSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WhipSession")
            .field("local_ufrag", &self.local_ufrag)
            .field("connected", &self.connected)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl WhipSession {
    /// Answers a WHIP offer (`application/sdp` body of the POST) for a
    /// publisher already admitted into the engine. Arguments as for
    /// [`WhepSession::new`](crate::WhepSession::new).
    pub fn new(
        offer: &str,
        host_candidates: &[SocketAddr],
        publisher: Publisher,
        now: Instant,
        epoch: std::time::Instant,
        seed: u64,
    ) -> Result<(WhipSession, String), WebRtcError> {
        if offer.len() > MAX_OFFER_LEN {
            return Err(WebRtcError::OfferTooLarge(offer.len()));
        }
        let offer = SdpOffer::from_sdp_string(offer)
            .map_err(|e| WebRtcError::MalformedOffer(e.to_string()))?;
        let mut state = seed;
        let ufrag = format!("{:016x}", splitmix64(&mut state));
        let pass = format!(
            "{:016x}{:016x}",
            splitmix64(&mut state),
            splitmix64(&mut state)
        );
        let wall = epoch + Duration::from_micros(now.as_micros());
        let mut rtc = RtcConfig::new()
            .set_ice_lite(true)
            .set_local_ice_credentials(IceCreds {
                ufrag: ufrag.clone(),
                pass,
            })
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .build(wall);
        for &addr in host_candidates {
            let candidate =
                Candidate::host(addr, "udp").map_err(|_| WebRtcError::BadCandidate(addr))?;
            if rtc.add_local_candidate(candidate).is_none() {
                return Err(WebRtcError::BadCandidate(addr));
            }
        }
        let mids: Vec<Mid> = offer.media_lines.iter().map(|m| m.mid()).collect();
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| WebRtcError::OfferRefused(e.to_string()))?;
        let receiving = mids
            .iter()
            .any(|&mid| rtc.media(mid).is_some_and(|m| m.direction().is_receiving()));
        let video_mid = mids.iter().copied().find(|&mid| {
            rtc.media(mid)
                .is_some_and(|m| m.kind() == MediaKind::Video && m.direction().is_receiving())
        });
        if !receiving {
            return Err(WebRtcError::NoUsableTrack);
        }
        let mut session = WhipSession {
            rtc,
            epoch,
            publisher,
            local_ufrag: ufrag,
            connected: false,
            first_arrival: None,
            video_base: None,
            audio_base: None,
            sps: None,
            pps: None,
            video_config_sent: false,
            video_started: false,
            audio_config_sent: false,
            next_timeout: None,
            transmits: VecDeque::new(),
            stats: WhipStats::default(),
            video_mid,
            keyframe_wanted: false,
            last_pli: None,
        };
        session.drive()?;
        Ok((session, answer.to_sdp_string()))
    }

    /// The local ICE ufrag (what the [`Router`](crate::Router) keys STUN on).
    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    /// Whether ICE and DTLS are up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether the session is alive (false after ICE timed out or DTLS
    /// failed): the driver then removes it, which ends the engine stream.
    pub fn is_alive(&self) -> bool {
        self.rtc.is_alive()
    }

    /// Counters.
    pub fn stats(&self) -> WhipStats {
        self.stats
    }

    fn wall(&self, now: Instant) -> std::time::Instant {
        self.epoch + Duration::from_micros(now.as_micros())
    }

    /// A datagram from `source` to `destination` on the shared socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) -> Result<(), WebRtcError> {
        let contents = contents
            .try_into()
            .map_err(|_| WebRtcError::UnknownDatagram)?;
        let input = Input::Receive(
            self.wall(now),
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        self.rtc
            .handle_input(input)
            .map_err(|e| WebRtcError::Rtc(e.to_string()))?;
        self.drive()?;
        self.forward_keyframe_requests(now)
    }

    /// Time passed: retransmissions, NACKs, RTCP, ICE timeouts.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), WebRtcError> {
        self.rtc
            .handle_input(Input::Timeout(self.wall(now)))
            .map_err(|e| WebRtcError::Rtc(e.to_string()))?;
        self.drive()?;
        self.forward_keyframe_requests(now)
    }

    /// Viewers of the stream asked for a keyframe (their sessions called
    /// `Subscriber::request_keyframe`): sends a PLI (RFC 4585 §6.3.1) to
    /// the publisher, at most one per [`PLI_INTERVAL`]. Called from
    /// `handle_timeout` and `handle_datagram`; call it too when the driver
    /// learns of requests otherwise.
    pub fn forward_keyframe_requests(&mut self, now: Instant) -> Result<(), WebRtcError> {
        if self.publisher.take_keyframe_requests() > 0 {
            self.keyframe_wanted = true;
        }
        if !self.keyframe_wanted || !self.connected {
            return Ok(());
        }
        if self
            .last_pli
            .is_some_and(|last| now.saturating_duration_since(last) < PLI_INTERVAL)
        {
            return Ok(());
        }
        let Some(mid) = self.video_mid else {
            self.keyframe_wanted = false;
            return Ok(());
        };
        let Some(mut writer) = self.rtc.writer(mid) else {
            return Ok(());
        };
        if writer
            .request_keyframe(None, KeyframeRequestKind::Pli)
            .is_ok()
        {
            self.keyframe_wanted = false;
            self.last_pli = Some(now);
            self.stats.pli_sent += 1;
        }
        self.drive()
    }

    /// A remote ICE candidate trickled in a `PATCH` (RFC 8840 §4.4; the
    /// `candidate:...` attribute value, RFC 8839 §5.1). `false` when it does
    /// not parse (ignored: ICE-lite answers the peer's checks anyway).
    pub fn add_remote_candidate(&mut self, attribute: &str) -> bool {
        match Candidate::from_sdp_string(attribute) {
            Ok(c) => {
                self.rtc.add_remote_candidate(c);
                true
            }
            Err(_) => false,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timeout
            .map(|t| Instant::from_duration(t.saturating_duration_since(self.epoch)))
    }

    /// The next datagram to send; drain until `None`.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn drive(&mut self) -> Result<(), WebRtcError> {
        loop {
            match self
                .rtc
                .poll_output()
                .map_err(|e| WebRtcError::Rtc(e.to_string()))?
            {
                Output::Timeout(t) => {
                    self.next_timeout = Some(t);
                    return Ok(());
                }
                Output::Transmit(t) => {
                    if self.transmits.len() >= MAX_PENDING_TRANSMITS {
                        self.stats.transmits_dropped += 1;
                    } else {
                        self.transmits.push_back(Transmit {
                            source: t.source,
                            destination: t.destination,
                            contents: t.contents.to_vec(),
                        });
                    }
                }
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::MediaData(data)) => self.on_media(&data),
                // The publisher stopped answering ICE consent checks: the
                // session is over (the driver drops it, ending the stream).
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                )) => {
                    tracing::debug!(ufrag = %self.local_ufrag, "WHIP publisher ICE disconnected");
                    self.rtc.disconnect();
                }
                Output::Event(_) => {}
            }
        }
    }

    /// PTS of `data` in its clock (see the type's invariants).
    fn pts(&mut self, data: &MediaData, clock: u64, video: bool) -> Option<i64> {
        let first = *self.first_arrival.get_or_insert(data.network_time);
        let numer = data.time.numer();
        let base = if video {
            &mut self.video_base
        } else {
            &mut self.audio_base
        };
        let (first_rtp, offset) = *base.get_or_insert_with(|| {
            let since = data.network_time.saturating_duration_since(first);
            let offset = u64::try_from(since.as_micros())
                .unwrap_or(u64::MAX)
                .saturating_mul(clock)
                / 1_000_000;
            (numer, offset)
        });
        i64::try_from(numer.checked_sub(first_rtp)?.saturating_add(offset)).ok()
    }

    fn on_media(&mut self, data: &MediaData) {
        match data.params.spec().codec {
            RtcCodec::H264 => self.on_h264(data),
            RtcCodec::Opus => self.on_opus(data),
            _ => self.stats.frames_skipped += 1,
        }
    }

    fn on_h264(&mut self, data: &MediaData) {
        let mut avcc = BytesMut::with_capacity(data.data.len() + 16);
        let mut keyframe = false;
        for nal in split_annex_b(&data.data) {
            let Some(&header) = nal.first() else {
                continue;
            };
            match header & 0x1f {
                7 => {
                    if self.sps.as_deref() != Some(nal) {
                        self.sps = Some(Bytes::copy_from_slice(nal));
                        self.video_config_sent = false;
                    }
                }
                8 => {
                    if self.pps.as_deref() != Some(nal) {
                        self.pps = Some(Bytes::copy_from_slice(nal));
                        self.video_config_sent = false;
                    }
                }
                // Access unit delimiter, filler: not carried.
                9 | 12 => {}
                kind => {
                    keyframe |= kind == 5;
                    let Ok(len) = u32::try_from(nal.len()) else {
                        continue;
                    };
                    avcc.put_u32(len);
                    avcc.extend_from_slice(nal);
                }
            }
        }
        let Some(pts) = self.pts(data, 90_000, true) else {
            self.stats.frames_skipped += 1;
            return;
        };
        if !self.video_config_sent {
            if let (Some(sps), Some(pps)) = (&self.sps, &self.pps) {
                match AvcConfig::from_parameter_sets(vec![sps.clone()], vec![pps.clone()]) {
                    Ok(config) => {
                        self.publisher.send(Frame {
                            codec: Codec::H264,
                            flags: FrameFlags::CONFIG,
                            pts,
                            dts: pts,
                            timebase: 90_000,
                            payload: config.to_bytes(),
                        });
                        self.video_config_sent = true;
                    }
                    Err(_) => {
                        self.sps = None;
                        self.pps = None;
                    }
                }
            }
        }
        if avcc.is_empty() || !self.video_config_sent || !(keyframe || self.video_started) {
            self.stats.frames_skipped += 1;
            return;
        }
        self.video_started = true;
        self.publisher.send(Frame {
            codec: Codec::H264,
            flags: if keyframe {
                FrameFlags::KEYFRAME
            } else {
                FrameFlags::NONE
            },
            pts,
            dts: pts,
            timebase: 90_000,
            payload: avcc.freeze(),
        });
        self.stats.frames_published += 1;
    }

    fn on_opus(&mut self, data: &MediaData) {
        let Some(pts) = self.pts(data, 48_000, false) else {
            self.stats.frames_skipped += 1;
            return;
        };
        if !self.audio_config_sent {
            self.audio_config_sent = true;
            self.publisher.send(Frame {
                codec: Codec::Opus,
                flags: FrameFlags::CONFIG,
                pts,
                dts: pts,
                timebase: 48_000,
                payload: OpusHead::new(2).to_bytes(),
            });
        }
        self.publisher.send(Frame {
            codec: Codec::Opus,
            flags: FrameFlags::KEYFRAME,
            pts,
            dts: pts,
            timebase: 48_000,
            payload: Bytes::copy_from_slice(&data.data),
        });
        self.stats.frames_published += 1;
    }
}
