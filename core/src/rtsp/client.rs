//! A sans-IO RTSP 1.0 client (RFC 2326) that plays a stream over TCP with
//! interleaved RTP/RTCP (§10.12): what `arcly --pull` uses to put a camera
//! or another server behind arcly.
//!
//! The session sends `OPTIONS`, `DESCRIBE` (the SDP's media sections become
//! tracks through [`crate::sdp::track_info`]; unsupported ones are skipped),
//! one `SETUP` per track (`RTP/AVP/TCP;unicast;interleaved=2i-2i+1`, the
//! session id of the first answer on the others), then `PLAY`. RTP packets
//! go through one [`TrackReceiver`] per track (the same depacketizers and
//! timing as an RTSP publish into the server) and come out as engine
//! [`Frame`]s (codec configs first) from [`RtspClient::poll_event`].
//!
//! Authentication: a `401` is answered once per request with the URL's
//! user and password (Digest preferred over Basic, [`super::auth`]); the
//! challenge is kept and every later request carries its answer. A second
//! `401`, a `401` without credentials in the URL, or a `403` ends the
//! session with [`ClientError::Unauthorized`] / [`ClientError::Status`].
//!
//! Keep-alive: while playing, a `GET_PARAMETER` (or `OPTIONS` if the
//! server's `Public` does not list it) goes out every half of the session
//! timeout the server announced (`Session: id;timeout=N`, 60 s when
//! absent). A request unanswered for [`RESPONSE_TIMEOUT`] or no media for
//! [`MEDIA_TIMEOUT`] while playing ends the session.
//!
//! The driver: connect to [`RtspUrl::host`]:[`RtspUrl::port`], call
//! [`RtspClient::poll_transmit`] and write, feed every read to
//! [`RtspClient::handle_input`] (an empty read: the peer closed), call
//! [`RtspClient::handle_timeout`] at [`RtspClient::poll_timeout`], and drain
//! [`RtspClient::poll_event`] after each input. Time is an input; no
//! socket, clock or thread here.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::auth::Challenge;
use super::message::{Decoder, Headers, Item, MessageError, Method, Request, Response};
use crate::frame::{Codec, Frame};
use crate::rtp::receiver::{Timeline, TrackReceiver};
use crate::rtp::rtcp::{self, RtcpPacket};
use crate::rtp::RtpPacket;
use crate::sdp::{self, SdpError, SessionDescription, TrackInfo};
use crate::time::Instant;

/// How long a request may wait for its response.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a playing session may go without an RTP or RTCP packet.
pub const MEDIA_TIMEOUT: Duration = Duration::from_secs(10);
/// Session timeout assumed when the server names none (RFC 2326 §12.37).
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Most tracks set up (the rest of the SDP's sections are ignored).
pub const MAX_TRACKS: usize = 8;
/// Longest URL accepted.
pub const MAX_URL: usize = 2048;
/// Frames held for the driver before the oldest are dropped (the driver
/// drains [`RtspClient::poll_event`] after every input, so this only bounds
/// a driver that does not).
pub const MAX_EVENTS: usize = 4096;

/// Why the client session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `rtsp://[user[:password]@]host[:port]/path`.
    #[error("bad rtsp url: {0}")]
    BadUrl(&'static str),
    /// The server's byte stream is not RTSP or breaks a bound.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The server refused a request.
    #[error("{method} answered {status}")]
    Status {
        /// The request.
        method: &'static str,
        /// The status code.
        status: u16,
    },
    /// Credentials were needed and none (or wrong ones) were accepted.
    #[error("authentication failed on {0}")]
    Unauthorized(&'static str),
    /// The DESCRIBE answer was not a usable SDP.
    #[error("bad sdp: {0}")]
    Sdp(#[from] SdpError),
    /// No media section of the SDP has a codec arcly carries.
    #[error("no supported track in the sdp")]
    NoTracks,
    /// The SETUP answer has no interleaved TCP transport.
    #[error("server did not accept RTP/AVP/TCP interleaved")]
    Transport,
    /// A request got no answer in time.
    #[error("no answer to {0} within {RESPONSE_TIMEOUT:?}")]
    ResponseTimeout(&'static str),
    /// Playing, but no packet arrived for [`MEDIA_TIMEOUT`].
    #[error("no media for {MEDIA_TIMEOUT:?}")]
    MediaTimeout,
    /// The server closed the connection (or sent RTCP BYE).
    #[error("server closed the session")]
    Closed,
}

/// A parsed `rtsp://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RtspUrl {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (554 when absent).
    pub port: u16,
    /// The URL without its userinfo: what requests name.
    pub url: String,
    /// User of the userinfo, percent-decoded.
    pub user: Option<String>,
    /// Password of the userinfo, percent-decoded.
    pub password: Option<String>,
}

impl core::fmt::Debug for RtspUrl {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the password.
        f.debug_struct("RtspUrl")
            .field("url", &self.url)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl RtspUrl {
    /// Parses `rtsp://[user[:password]@]host[:port][/path][?query]`
    /// (RFC 2326 §3.2; userinfo as RFC 3986 §3.2.1, percent-decoded).
    pub fn parse(url: &str) -> Result<RtspUrl, ClientError> {
        if url.len() > MAX_URL {
            return Err(ClientError::BadUrl("too long"));
        }
        let rest = url
            .strip_prefix("rtsp://")
            .or_else(|| url.strip_prefix("RTSP://"))
            .ok_or(ClientError::BadUrl("scheme is not rtsp://"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => {
                let (a, b) = u.split_once(':').unwrap_or((u, ""));
                (Some(percent_decode(a)), Some(percent_decode(b)))
            }
            None => (None, None),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, p) = v6
                .split_once(']')
                .ok_or(ClientError::BadUrl("bad IPv6 host"))?;
            (h, p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(ClientError::BadUrl("no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| ClientError::BadUrl("bad port"))?,
            None => 554,
        };
        Ok(RtspUrl {
            host: host.to_owned(),
            port,
            url: format!("rtsp://{hostport}{path}"),
            user,
            password,
        })
    }
}

/// What the client session hands to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// PLAY was answered: media follows. The codecs of the tracks set up.
    Playing(Vec<Codec>),
    /// A frame of one track (codec configs come before the first frame
    /// they describe).
    Frame(Frame),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Options,
    Describe,
    Setup(usize),
    Play,
    Playing,
    Done,
}

#[derive(Debug)]
struct Track {
    url: String,
    info: TrackInfo,
    channel: u8,
    receiver: TrackReceiver,
}

/// A request sent and not answered yet.
#[derive(Debug)]
struct InFlight {
    cseq: u32,
    method: Method,
    uri: String,
    /// The request's own headers (resent on a retry).
    extra: Headers,
    sent: Instant,
    /// Whether this is the retry with credentials after a 401.
    retried: bool,
    keepalive: bool,
}

/// An RTSP client session playing one URL (see the module documentation).
///
/// Invariants: at most one request in flight besides keep-alives; every
/// queue is bounded (output: a few requests; events: [`MAX_EVENTS`]);
/// after an error nothing more is sent or delivered.
#[derive(Debug)]
pub struct RtspClient {
    url: RtspUrl,
    seed: u64,
    phase: Phase,
    decoder: Decoder,
    out: VecDeque<Bytes>,
    events: VecDeque<ClientEvent>,
    cseq: u32,
    in_flight: Vec<InFlight>,
    challenge: Option<Challenge>,
    nc: u32,
    session: Option<String>,
    session_timeout: Duration,
    get_parameter: bool,
    base: String,
    aggregate: String,
    tracks: Vec<Track>,
    timeline: Timeline,
    frames: Vec<Frame>,
    last_media: Instant,
    last_keepalive: Instant,
    error: Option<ClientError>,
    dropped_events: u64,
}

/// The URL of a control attribute relative to `base` (RFC 2326 §C.1.1).
fn resolve(base: &str, control: &str) -> String {
    if control == "*" || control.is_empty() {
        return base.trim_end_matches('/').to_owned();
    }
    if control.len() > 7
        && control
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("rtsp://"))
    {
        return control.to_owned();
    }
    if base.ends_with('/') {
        format!("{base}{control}")
    } else {
        format!("{base}/{control}")
    }
}

/// The interleaved RTP channel of a SETUP answer's `Transport`.
fn interleaved_channel(transport: &str) -> Option<u8> {
    transport.split(';').find_map(|p| {
        let v = p.trim().strip_prefix("interleaved=")?;
        v.split('-').next()?.trim().parse().ok()
    })
}

impl RtspClient {
    /// A session playing `url`, started at `now`; `seed` (the driver's
    /// randomness) makes the Digest client nonce. `OPTIONS` is queued.
    pub fn new(url: &str, now: Instant, seed: u64) -> Result<RtspClient, ClientError> {
        let url = RtspUrl::parse(url)?;
        let base = url.url.clone();
        let mut c = RtspClient {
            url,
            seed,
            phase: Phase::Options,
            decoder: Decoder::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            cseq: 0,
            in_flight: Vec::new(),
            challenge: None,
            nc: 0,
            session: None,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            get_parameter: false,
            aggregate: base.clone(),
            base,
            tracks: Vec::new(),
            timeline: Timeline::new(),
            frames: Vec::new(),
            last_media: now,
            last_keepalive: now,
            error: None,
            dropped_events: 0,
        };
        let uri = c.url.url.clone();
        c.send(now, Method::Options, uri, Headers::new(), false, false);
        Ok(c)
    }

    /// The URL played (host and port to connect to).
    pub fn url(&self) -> &RtspUrl {
        &self.url
    }

    /// Why the session ended, once it has.
    pub fn error(&self) -> Option<&ClientError> {
        self.error.as_ref()
    }

    /// Whether PLAY was answered and media flows.
    pub fn is_playing(&self) -> bool {
        self.phase == Phase::Playing
    }

    /// Frames dropped because the driver did not drain [`Self::poll_event`].
    pub fn dropped_events(&self) -> u64 {
        self.dropped_events
    }

    fn send(
        &mut self,
        now: Instant,
        method: Method,
        uri: String,
        extra: Headers,
        retried: bool,
        keepalive: bool,
    ) {
        self.cseq = self.cseq.wrapping_add(1);
        let mut h = Headers::new();
        h.push("CSeq", self.cseq.to_string());
        h.push("User-Agent", "arcly");
        if let (Some(c), Some(user)) = (&self.challenge, &self.url.user) {
            self.nc = self.nc.wrapping_add(1);
            let cnonce = format!("{:016x}", self.seed);
            h.push(
                "Authorization",
                c.authorization(
                    user,
                    self.url.password.as_deref().unwrap_or_default(),
                    method.as_str(),
                    &uri,
                    &cnonce,
                    self.nc,
                ),
            );
        }
        if let Some(s) = &self.session {
            h.push("Session", s.clone());
        }
        for (n, v) in extra.iter() {
            h.push(n, v);
        }
        let req = Request {
            method: method.clone(),
            uri: uri.clone(),
            headers: h,
            body: Bytes::new(),
        };
        self.out.push_back(req.to_bytes());
        self.in_flight.push(InFlight {
            cseq: self.cseq,
            method,
            uri,
            extra,
            sent: now,
            retried,
            keepalive,
        });
    }

    fn fail(&mut self, e: ClientError) {
        if self.error.is_none() {
            self.error = Some(e);
            self.phase = Phase::Done;
            self.out.clear();
        }
    }

    fn method_name(m: &Method) -> &'static str {
        match m {
            Method::Options => "OPTIONS",
            Method::Describe => "DESCRIBE",
            Method::Setup => "SETUP",
            Method::Play => "PLAY",
            Method::GetParameter => "GET_PARAMETER",
            Method::Teardown => "TEARDOWN",
            _ => "request",
        }
    }

    /// Bytes from the server; an empty slice means it closed the connection.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if data.is_empty() {
            return self.fail(ClientError::Closed);
        }
        self.decoder.extend(data);
        while self.error.is_none() {
            match self.decoder.decode() {
                Ok(Some(Item::Response(r))) => self.on_response(now, r),
                Ok(Some(Item::Interleaved { channel, data })) => {
                    self.on_interleaved(now, channel, data)
                }
                // Server requests (e.g. a server's keep-alive OPTIONS) are
                // not needed for play; ignore them.
                Ok(Some(Item::Request(_))) => {}
                Ok(None) => break,
                Err(e) => self.fail(ClientError::Message(e)),
            }
        }
    }

    fn on_response(&mut self, now: Instant, r: Response) {
        let Some(cseq) = r.headers.cseq() else { return };
        let Some(i) = self.in_flight.iter().position(|f| f.cseq == cseq) else {
            return;
        };
        let req = self.in_flight.remove(i);
        let name = Self::method_name(&req.method);
        if r.status == 401 {
            if req.retried || self.url.user.is_none() {
                return self.fail(ClientError::Unauthorized(name));
            }
            let challenges = r
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("WWW-Authenticate"))
                .map(|(_, v)| v);
            let Some(c) = Challenge::pick(challenges) else {
                return self.fail(ClientError::Unauthorized(name));
            };
            self.challenge = Some(c);
            self.nc = 0;
            return self.send(now, req.method, req.uri, req.extra, true, req.keepalive);
        }
        if req.keepalive {
            // Any answer (even 405/501 from a server without GET_PARAMETER)
            // shows the server is alive.
            return;
        }
        if !(200..300).contains(&r.status) {
            return self.fail(ClientError::Status {
                method: name,
                status: r.status,
            });
        }
        if let Some(s) = r.headers.get("Session") {
            let mut parts = s.split(';');
            let id = parts.next().unwrap_or_default().trim();
            if !id.is_empty() && self.session.is_none() {
                self.session = Some(id.chars().take(256).collect());
            }
            for p in parts {
                if let Some(t) = p.trim().strip_prefix("timeout=") {
                    if let Ok(secs) = t.trim().parse::<u64>() {
                        self.session_timeout = Duration::from_secs(secs.clamp(2, 3600));
                    }
                }
            }
        }
        match (self.phase, &req.method) {
            (Phase::Options, Method::Options) => {
                self.get_parameter = r
                    .headers
                    .get("Public")
                    .is_some_and(|p| p.split(',').any(|m| m.trim() == "GET_PARAMETER"));
                self.phase = Phase::Describe;
                let h = self.request_headers(&Method::Describe);
                let uri = self.url.url.clone();
                self.send(now, Method::Describe, uri, h, false, false);
            }
            (Phase::Describe, Method::Describe) => self.on_describe(now, &r),
            (Phase::Setup(i), Method::Setup) => {
                let Some(ch) = r.headers.get("Transport").and_then(interleaved_channel) else {
                    return self.fail(ClientError::Transport);
                };
                if let Some(t) = self.tracks.get_mut(i) {
                    t.channel = ch;
                }
                self.next_setup(now, i + 1);
            }
            (Phase::Play, Method::Play) => {
                self.phase = Phase::Playing;
                self.last_media = now;
                self.last_keepalive = now;
                let codecs = self.tracks.iter().map(|t| t.info.params.codec()).collect();
                self.events.push_back(ClientEvent::Playing(codecs));
            }
            _ => {}
        }
    }

    fn request_headers(&self, method: &Method) -> Headers {
        let mut h = Headers::new();
        match method {
            Method::Describe => h.push("Accept", "application/sdp"),
            Method::Play => h.push("Range", "npt=0.000-"),
            _ => {}
        }
        h
    }

    fn on_describe(&mut self, now: Instant, r: &Response) {
        let sd = match SessionDescription::parse(&r.body) {
            Ok(s) => s,
            Err(e) => return self.fail(ClientError::Sdp(e)),
        };
        let base = r
            .headers
            .get("Content-Base")
            .or_else(|| r.headers.get("Content-Location"))
            .map(str::trim)
            .filter(|b| {
                b.get(..7)
                    .is_some_and(|s| s.eq_ignore_ascii_case("rtsp://"))
            })
            .map_or_else(|| self.url.url.clone(), str::to_owned);
        self.aggregate = match sd.control() {
            Some(c) => resolve(&base, c),
            None => base.trim_end_matches('/').to_owned(),
        };
        let mut have_video = false;
        let mut have_audio = false;
        for (i, m) in sd.media.iter().enumerate() {
            if self.tracks.len() == MAX_TRACKS {
                break;
            }
            let Ok(info) = sdp::track_info(m) else {
                continue;
            };
            // One track of each kind, like a publisher into the engine.
            let video = info.params.codec().kind() == crate::frame::MediaKind::Video;
            if (video && have_video) || (!video && have_audio) {
                continue;
            }
            have_video |= video;
            have_audio |= !video;
            let control = m
                .control()
                .map_or_else(|| format!("trackID={i}"), str::to_owned);
            let receiver = TrackReceiver::new(info.params.clone(), info.clock_rate);
            let channel = (self.tracks.len() * 2) as u8;
            self.tracks.push(Track {
                url: resolve(&base, &control),
                info,
                channel,
                receiver,
            });
        }
        if self.tracks.is_empty() {
            return self.fail(ClientError::NoTracks);
        }
        self.base = base;
        self.next_setup(now, 0);
    }

    fn next_setup(&mut self, now: Instant, i: usize) {
        if let Some(t) = self.tracks.get(i) {
            self.phase = Phase::Setup(i);
            let mut h = Headers::new();
            h.push(
                "Transport",
                format!("RTP/AVP/TCP;unicast;interleaved={}-{}", i * 2, i * 2 + 1),
            );
            let uri = t.url.clone();
            self.send(now, Method::Setup, uri, h, false, false);
        } else {
            self.phase = Phase::Play;
            let h = self.request_headers(&Method::Play);
            let uri = self.aggregate.clone();
            self.send(now, Method::Play, uri, h, false, false);
        }
    }

    fn on_interleaved(&mut self, now: Instant, channel: u8, data: Bytes) {
        if self.phase != Phase::Playing && self.phase != Phase::Play {
            return;
        }
        let Some(t) = self
            .tracks
            .iter_mut()
            .find(|t| t.channel == channel || t.channel.wrapping_add(1) == channel)
        else {
            return; // a channel we did not set up: ignore
        };
        self.last_media = now;
        if t.channel == channel {
            let Ok(pkt) = RtpPacket::parse(&data) else {
                return;
            };
            if pkt.payload_type != t.info.payload_type {
                return;
            }
            // A damaged unit is dropped inside the receiver; go on.
            let _ = t
                .receiver
                .handle_packet(now, &mut self.timeline, pkt, &mut self.frames);
        } else if let Ok(pkts) = rtcp::parse_compound(&data) {
            for p in pkts {
                match p {
                    RtcpPacket::SenderReport(sr) => {
                        t.receiver
                            .handle_sender_report(now, &mut self.timeline, &sr)
                    }
                    RtcpPacket::Bye(_) => {
                        self.frames.clear();
                        return self.fail(ClientError::Closed);
                    }
                    _ => {}
                }
            }
        }
        for f in self.frames.drain(..) {
            if self.events.len() >= MAX_EVENTS {
                self.events.pop_front();
                self.dropped_events += 1;
            }
            self.events.push_back(ClientEvent::Frame(f));
        }
    }

    /// Time passed: keep-alives, response and media timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.error.is_some() {
            return;
        }
        if let Some(f) = self
            .in_flight
            .iter()
            .find(|f| now.saturating_duration_since(f.sent) >= RESPONSE_TIMEOUT)
        {
            let name = Self::method_name(&f.method);
            return self.fail(ClientError::ResponseTimeout(name));
        }
        if self.phase == Phase::Playing {
            if now.saturating_duration_since(self.last_media) >= MEDIA_TIMEOUT {
                return self.fail(ClientError::MediaTimeout);
            }
            if now.saturating_duration_since(self.last_keepalive) >= self.session_timeout / 2 {
                self.last_keepalive = now;
                let method = if self.get_parameter {
                    Method::GetParameter
                } else {
                    Method::Options
                };
                let uri = self.aggregate.clone();
                self.send(now, method, uri, Headers::new(), false, true);
            }
        }
    }

    /// When [`Self::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.error.is_some() {
            return None;
        }
        let at =
            |t: Instant, d: Duration| Instant::from_micros(t.as_micros() + d.as_micros() as u64);
        let mut next = self
            .in_flight
            .iter()
            .map(|f| at(f.sent, RESPONSE_TIMEOUT))
            .min();
        if self.phase == Phase::Playing {
            let m = at(self.last_media, MEDIA_TIMEOUT)
                .min(at(self.last_keepalive, self.session_timeout / 2));
            next = Some(next.map_or(m, |n| n.min(m)));
        }
        next
    }

    /// The next bytes to write to the server.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.pop_front()
    }

    /// The next event (frames after `Playing`).
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Ends the session politely: a `TEARDOWN` is queued (write it, then close).
    pub fn teardown(&mut self, now: Instant) {
        if self.error.is_none() && self.session.is_some() {
            let uri = self.aggregate.clone();
            self.send(now, Method::Teardown, uri, Headers::new(), false, true);
        }
        self.phase = Phase::Done;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn urls() {
        let u = RtspUrl::parse("rtsp://us%40er:p%3Ass@cam.local:8554/live/cam?x=1").unwrap();
        assert_eq!(u.host, "cam.local");
        assert_eq!(u.port, 8554);
        assert_eq!(u.url, "rtsp://cam.local:8554/live/cam?x=1");
        assert_eq!(u.user.as_deref(), Some("us@er"));
        assert_eq!(u.password.as_deref(), Some("p:ss"));
        assert!(!format!("{u:?}").contains("p:ss"));
        let u = RtspUrl::parse("rtsp://[::1]/a").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 554));
        assert!(RtspUrl::parse("http://x/a").is_err());
        assert!(RtspUrl::parse("rtsp://x:99999/a").is_err());
        assert!(RtspUrl::parse("rtsp:///a").is_err());
    }

    #[test]
    fn control_urls() {
        assert_eq!(resolve("rtsp://h/a/", "trackID=1"), "rtsp://h/a/trackID=1");
        assert_eq!(resolve("rtsp://h/a", "trackID=1"), "rtsp://h/a/trackID=1");
        assert_eq!(resolve("rtsp://h/a/", "*"), "rtsp://h/a");
        assert_eq!(resolve("rtsp://h/a/", "rtsp://o/b"), "rtsp://o/b");
        assert_eq!(
            interleaved_channel("RTP/AVP/TCP;unicast;interleaved=4-5;ssrc=1"),
            Some(4)
        );
    }
}
