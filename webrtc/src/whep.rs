//! One WHEP viewer: SDP offer in, answer out, engine frames out as SRTP.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use arcly::codec::h264::{avcc_to_annex_b_into, AvcConfig};
use arcly::engine::{EgressSlot, FrameEntry, Recv, Subscriber};
use arcly::frame::rescale;
use arcly::{Codec, Frame, Instant};
use bytes::{Bytes, BytesMut};
use str0m::change::SdpOffer;
use str0m::format::Codec as RtcCodec;
use str0m::media::{Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc, RtcConfig};

/// Largest SDP offer accepted (bytes). Browser offers are 3–10 KiB.
pub const MAX_OFFER_LEN: usize = 64 * 1024;

/// Most datagrams queued for the driver before new ones are dropped (and
/// counted in [`WhepStats::transmits_dropped`]). The driver drains
/// [`WhepSession::poll_transmit`] after every call, so this only bites when
/// it does not.
pub const MAX_PENDING_TRANSMITS: usize = 4096;

/// Why a WHEP session refused an offer or stopped.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    /// The offer is larger than [`MAX_OFFER_LEN`].
    #[error("SDP offer of {0} bytes is larger than the limit")]
    OfferTooLarge(usize),
    /// The offer is not valid SDP.
    #[error("malformed SDP offer: {0}")]
    MalformedOffer(String),
    /// str0m refused the offer (e.g. no codec in common).
    #[error("SDP offer refused: {0}")]
    OfferRefused(String),
    /// The offer asks for no H.264 video and no Opus audio we can send.
    #[error("the offer has no recvonly H.264 or Opus track")]
    NoUsableTrack,
    /// A server candidate could not be used.
    #[error("bad server candidate {0}")]
    BadCandidate(SocketAddr),
    /// A received datagram is neither STUN, DTLS, RTP nor RTCP.
    #[error("datagram of unknown type")]
    UnknownDatagram,
    /// The WebRTC stack failed (the session is dead).
    #[error("webrtc: {0}")]
    Rtc(String),
    /// The stream's H.264 has B-frames (a frame whose PTS differs from its
    /// DTS): browsers play RTP video in arrival order, so it would stutter.
    #[error("the stream's H.264 has B-frames (non-zero composition offsets), which WebRTC viewers cannot play; publish without B-frames (x264 -bf 0, OBS: profile baseline or bframes=0)")]
    BFrames,
}

/// One datagram to send from the shared socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The local address to send from (one of the host candidates).
    pub source: SocketAddr,
    /// The peer address.
    pub destination: SocketAddr,
    /// The datagram.
    pub contents: Vec<u8>,
}

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WhepStats {
    /// Frames handed to str0m (video access units and audio packets).
    pub frames_written: u64,
    /// Frames read from the engine but not written (unsupported codec,
    /// before the first keyframe, before the first timestamp).
    pub frames_skipped: u64,
    /// Datagrams dropped because [`MAX_PENDING_TRANSMITS`] were queued.
    pub transmits_dropped: u64,
    /// PLI/FIR received from the viewer (forwarded to the publisher).
    pub keyframe_requests: u64,
}

/// A negotiated outgoing track.
#[derive(Debug, Clone, Copy)]
struct Track {
    mid: Mid,
    pt: Pt,
}

/// One WHEP viewer (draft-ietf-wish-whep §4.1) of one engine stream.
///
/// Sans-IO, quinn-proto style: feed [`handle_datagram`](Self::handle_datagram)
/// (datagrams the [`Router`](crate::Router) assigned to it),
/// [`handle_timeout`](Self::handle_timeout) (at
/// [`poll_timeout`](Self::poll_timeout)) and
/// [`handle_media`](Self::handle_media) (when the subscriber's signal fires),
/// then drain [`poll_transmit`](Self::poll_transmit) until `None`.
///
/// Invariants: no media is written before ICE and DTLS are connected (str0m
/// would drop it); the first video frame written is a keyframe, preceded by
/// the stream's SPS/PPS in Annex B (as is every later keyframe, so a viewer
/// can always resync); RTP times are the engine's PTS relative to the first
/// frame written, in the codec clock (90 kHz / 48 kHz), shared by audio and
/// video so they stay in sync; at most [`MAX_PENDING_TRANSMITS`] datagrams
/// are queued.
pub struct WhepSession {
    rtc: Rtc,
    /// The `std::time::Instant` of [`Instant::ZERO`].
    epoch: std::time::Instant,
    subscriber: Subscriber,
    local_ufrag: String,
    video: Option<Track>,
    audio: Option<Track>,
    connected: bool,
    ended: bool,
    /// A video keyframe was written.
    started: bool,
    /// SPS and PPS of the current H.264 config, Annex B.
    h264_parameter_sets: Option<Bytes>,
    /// PTS (µs) of the first frame written: RTP time zero.
    base_us: Option<i64>,
    next_timeout: Option<std::time::Instant>,
    transmits: VecDeque<Transmit>,
    stats: WhepStats,
    warned_codec: bool,
    /// Where this session gets Opus for an AAC stream (set by the driver).
    #[cfg(feature = "transcode")]
    opus_feeds: Option<crate::transcode::OpusFeeds>,
    /// The stream's shared AAC → Opus feed, once an AAC frame was seen.
    #[cfg(feature = "transcode")]
    audio_feed: Option<(Subscriber, crate::transcode::OpusFeedLease)>,
}

/// Opus packets of the stream's feed a viewer may be behind before older
/// ones are skipped (the burst of a new feed's cached GOP).
#[cfg(feature = "transcode")]
const FEED_CATCH_UP: u64 = 3;

/// Whether the process-wide "built without transcoding" warning was logged.
#[cfg(not(feature = "transcode"))]
static WARNED_NO_TRANSCODE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

impl core::fmt::Debug for WhepSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WhepSession")
            .field("local_ufrag", &self.local_ufrag)
            .field("connected", &self.connected)
            .field("started", &self.started)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// splitmix64: expands the seed into ICE credentials.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl WhepSession {
    /// Answers a WHEP offer (`application/sdp` body of the POST).
    ///
    /// `host_candidates` are the server's addresses on the shared socket
    /// (all of them go into the answer: the server does not trickle).
    /// `seed` (from a CSPRNG in production) makes the local ICE ufrag and
    /// password; `epoch` is the `std::time::Instant` that [`Instant::ZERO`]
    /// stands for (chosen once by the driver). Returns the session and the
    /// answer SDP.
    pub fn new(
        offer: &str,
        host_candidates: &[SocketAddr],
        subscriber: Subscriber,
        now: Instant,
        epoch: std::time::Instant,
        seed: u64,
    ) -> Result<(WhepSession, String), WebRtcError> {
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
        // The m-lines of the offer, by mid (the answer keeps them).
        let mids: Vec<Mid> = offer.media_lines.iter().map(|m| m.mid()).collect();
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| WebRtcError::OfferRefused(e.to_string()))?;
        let mut session = WhepSession {
            rtc,
            epoch,
            subscriber,
            local_ufrag: ufrag,
            video: None,
            audio: None,
            connected: false,
            ended: false,
            started: false,
            h264_parameter_sets: None,
            base_us: None,
            next_timeout: None,
            transmits: VecDeque::new(),
            stats: WhepStats::default(),
            warned_codec: false,
            #[cfg(feature = "transcode")]
            opus_feeds: None,
            #[cfg(feature = "transcode")]
            audio_feed: None,
        };
        for mid in mids {
            session.add_track(mid);
        }
        session.drive()?;
        if session.video.is_none() && session.audio.is_none() {
            return Err(WebRtcError::NoUsableTrack);
        }
        Ok((session, answer.to_sdp_string()))
    }

    /// The local ICE ufrag (what the [`Router`](crate::Router) keys STUN on).
    pub fn local_ufrag(&self) -> &str {
        &self.local_ufrag
    }

    /// Whether ICE and DTLS are up (media flows).
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether the session is still alive (false after ICE timed out, DTLS
    /// failed or the stream ended): the driver then removes it.
    pub fn is_alive(&self) -> bool {
        !self.ended && self.rtc.is_alive()
    }

    /// Counters.
    pub fn stats(&self) -> WhepStats {
        self.stats
    }

    /// The subscriber's signal: call [`handle_media`](Self::handle_media)
    /// when it fires.
    pub fn media_signal(&self) -> arcly::engine::Signal {
        self.subscriber.signal()
    }

    fn wall(&self, now: Instant) -> std::time::Instant {
        self.epoch + Duration::from_micros(now.as_micros())
    }

    /// Gives the session the engine's AAC → Opus feeds: if the stream
    /// carries AAC audio and the viewer negotiated Opus, the session joins
    /// (or starts) the stream's shared [`OpusFeed`](crate::OpusFeed) at the
    /// first AAC frame and sends its packets, with timestamps on the same
    /// timeline as the video. Without it, AAC is not sent (video only).
    #[cfg(feature = "transcode")]
    pub fn set_opus_feeds(&mut self, feeds: crate::transcode::OpusFeeds) {
        self.opus_feeds = Some(feeds);
    }

    /// The signal of the stream's Opus feed, once the session uses one: a
    /// driver that waits on it as well as on
    /// [`media_signal`](Self::media_signal) sends each Opus packet as soon
    /// as it is encoded (without it, packets wait for the source stream's
    /// next frame, at most one AAC frame, ~21 ms).
    pub fn audio_signal(&self) -> Option<arcly::engine::Signal> {
        #[cfg(feature = "transcode")]
        {
            self.audio_feed.as_ref().map(|(s, _)| s.signal())
        }
        #[cfg(not(feature = "transcode"))]
        {
            None
        }
    }

    /// Counters of the stream's AAC → Opus transcoder, if this session uses it.
    #[cfg(feature = "transcode")]
    pub fn transcode_stats(&self) -> Option<crate::transcode::TranscodeStats> {
        self.audio_feed.as_ref().map(|(_, lease)| lease.stats())
    }

    /// A datagram from `source` to `destination` (a host candidate) on the
    /// shared socket.
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
        self.pump(now)
    }

    /// Time passed: retransmissions, keep-alives, RTCP, ICE timeouts.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), WebRtcError> {
        self.rtc
            .handle_input(Input::Timeout(self.wall(now)))
            .map_err(|e| WebRtcError::Rtc(e.to_string()))?;
        self.drive()?;
        self.pump(now)
    }

    /// The engine stream moved: write its new frames.
    pub fn handle_media(&mut self, now: Instant) -> Result<(), WebRtcError> {
        self.pump(now)
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

    /// Polls str0m until it only has a timeout left.
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
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected => self.connected = true,
            // The viewer stopped answering ICE consent checks (it vanished
            // without DELETE): the session is over, the driver removes it.
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                tracing::debug!(ufrag = %self.local_ufrag, "WHEP viewer ICE disconnected");
                self.ended = true;
                self.rtc.disconnect();
            }
            Event::MediaAdded(added) => self.add_track(added.mid),
            // PLI/FIR from the viewer (RFC 4585 §6.3.1, RFC 5104 §4.3.1):
            // forwarded to the stream's publisher, whose session folds and
            // rate-limits them.
            Event::KeyframeRequest(_) => {
                self.stats.keyframe_requests += 1;
                self.subscriber.request_keyframe();
            }
            _ => {}
        }
    }

    /// Takes the first sending H.264 video and Opus audio m-lines.
    fn add_track(&mut self, mid: Mid) {
        let Some(media) = self.rtc.media(mid) else {
            return;
        };
        let kind = media.kind();
        if !media.direction().is_sending() {
            return;
        }
        let wanted = match kind {
            MediaKind::Video => RtcCodec::H264,
            MediaKind::Audio => RtcCodec::Opus,
        };
        let Some(pt) = self.rtc.writer(mid).and_then(|w| {
            w.payload_params()
                .find(|p| p.spec().codec == wanted)
                .map(|p| p.pt())
        }) else {
            return;
        };
        let track = Some(Track { mid, pt });
        match kind {
            MediaKind::Video if self.video.is_none() => self.video = track,
            MediaKind::Audio if self.audio.is_none() => self.audio = track,
            _ => {}
        }
    }

    /// Reads the subscriber and writes what it delivered (only once
    /// connected: until then frames wait in the engine's ring / GOP cache).
    fn pump(&mut self, now: Instant) -> Result<(), WebRtcError> {
        if !self.connected || self.ended {
            return Ok(());
        }
        loop {
            match self.subscriber.recv() {
                Recv::Frame(entry) => self.write_frame(now, &entry)?,
                Recv::Empty => break,
                Recv::End => {
                    self.ended = true;
                    break;
                }
            }
        }
        #[cfg(feature = "transcode")]
        self.pump_audio_feed(now)?;
        self.drive()
    }

    /// Runs the stream's Opus feed (once per stream: the first session to
    /// get here transcodes, the others find the packets ready) and writes
    /// its new packets.
    #[cfg(feature = "transcode")]
    fn pump_audio_feed(&mut self, now: Instant) -> Result<(), WebRtcError> {
        let Some((mut subscriber, lease)) = self.audio_feed.take() else {
            return Ok(());
        };
        lease.pump();
        let result = loop {
            match subscriber.recv() {
                // A new feed transcodes the source's whole GOP cache at
                // once: audio older than the live edge would fill the
                // browser's audio buffer (and delay the video, which is
                // synced to it); start the audio at the live edge instead.
                Recv::Frame(entry) if subscriber.lag() > FEED_CATCH_UP => {
                    let _ = entry;
                }
                Recv::Frame(entry) => {
                    if let Err(e) = self.write_frame(now, &entry) {
                        break Err(e);
                    }
                }
                Recv::Empty | Recv::End => break Ok(()),
            }
        };
        self.audio_feed = Some((subscriber, lease));
        result
    }

    /// An AAC frame from the stream: with transcoding, join the stream's
    /// Opus feed (the audio goes out from there); without, video only.
    fn on_aac(&mut self, frame: &Frame) {
        #[cfg(feature = "transcode")]
        {
            if self.audio.is_some() && self.audio_feed.is_none() {
                if let Some(feeds) = &self.opus_feeds {
                    self.audio_feed = feeds.subscribe(self.subscriber.key());
                    if self.audio_feed.is_some() {
                        return;
                    }
                }
            } else if self.audio_feed.is_some() {
                return;
            }
        }
        #[cfg(not(feature = "transcode"))]
        {
            use std::sync::atomic::Ordering;
            if self.audio.is_some() && !WARNED_NO_TRANSCODE.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    stream = %arcly::peer_text::escaped(&self.subscriber.key().to_string()),
                    "arcly-webrtc was built without the `transcode` feature: WebRTC viewers of AAC streams get video only (browsers do not decode AAC)"
                );
            }
        }
        if !frame.is_config() {
            self.stats.frames_skipped += 1;
        }
    }

    fn write_frame(&mut self, now: Instant, entry: &FrameEntry) -> Result<(), WebRtcError> {
        let frame = &entry.frame;
        let (track, data, clock) = match frame.codec {
            Codec::H264 if frame.is_config() => {
                self.h264_parameter_sets = AvcConfig::parse(&frame.payload)
                    .ok()
                    .map(|c| c.annex_b_parameter_sets());
                return Ok(());
            }
            Codec::H264 => {
                let keyframe = frame.is_keyframe();
                let (Some(track), true) = (self.video, keyframe || self.started) else {
                    self.stats.frames_skipped += 1;
                    return Ok(());
                };
                if frame.pts != frame.dts {
                    return Err(WebRtcError::BFrames);
                }
                // Built once per frame for every viewer of the stream: the
                // parameter sets in force at a frame are the same for all.
                let ps = &self.h264_parameter_sets;
                let data = entry.egress(EgressSlot::WebRtc, |f| annex_b_access_unit(f, ps));
                if data.is_empty() {
                    self.stats.frames_skipped += 1;
                    return Ok(());
                }
                (track, data, 90_000u32)
            }
            Codec::Opus if !frame.is_config() => {
                let Some(track) = self.audio else {
                    self.stats.frames_skipped += 1;
                    return Ok(());
                };
                (track, frame.payload.clone(), 48_000u32)
            }
            Codec::Opus => return Ok(()),
            Codec::Aac => {
                self.on_aac(frame);
                return Ok(());
            }
            other => {
                if !frame.is_config() {
                    self.stats.frames_skipped += 1;
                }
                if !self.warned_codec {
                    self.warned_codec = true;
                    tracing::warn!(
                        codec = %other,
                        stream = %arcly::peer_text::escaped(&self.subscriber.key().to_string()),
                        "WHEP carries H.264 and Opus only: {other} frames are not sent to this viewer"
                    );
                }
                return Ok(());
            }
        };
        let pts_us = frame.pts_in(1_000_000);
        let base = *self.base_us.get_or_insert(pts_us);
        let Ok(rel) = u64::try_from(rescale(pts_us - base, 1_000_000, clock)) else {
            self.stats.frames_skipped += 1;
            return Ok(());
        };
        let frequency = if clock == 90_000 {
            Frequency::NINETY_KHZ
        } else {
            Frequency::FORTY_EIGHT_KHZ
        };
        let wall = self.wall(now);
        let Some(writer) = self.rtc.writer(track.mid) else {
            self.stats.frames_skipped += 1;
            return Ok(());
        };
        writer
            .write(
                track.pt,
                wall,
                MediaTime::new(rel, frequency),
                data.to_vec(),
            )
            .map_err(|e| WebRtcError::Rtc(e.to_string()))?;
        if frame.codec == Codec::H264 {
            self.started = true;
        }
        self.stats.frames_written += 1;
        Ok(())
    }
}

/// A video frame as WebRTC sends it ([`EgressSlot::WebRtc`]): the AVCC
/// access unit in Annex B, the stream's SPS/PPS (`parameter_sets`, Annex B)
/// before an IDR. Empty when the payload is not valid AVCC.
pub(crate) fn annex_b_access_unit(frame: &Frame, parameter_sets: &Option<Bytes>) -> Bytes {
    let mut out = BytesMut::with_capacity(frame.payload.len() + 64);
    if frame.is_keyframe() {
        if let Some(ps) = parameter_sets {
            out.extend_from_slice(ps);
        }
    }
    if avcc_to_annex_b_into(&frame.payload, &mut out).is_err() {
        return Bytes::new();
    }
    out.freeze()
}
