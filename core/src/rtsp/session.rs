//! Engine glue: an RTSP server connection (RFC 2326) over TCP with
//! interleaved RTP/RTCP (§10.12), joined to the [`Engine`] and an
//! [`Admission`] policy, behind the runtime-free [`StreamSession`] shape.
//!
//! Publish: `ANNOUNCE` (SDP) → admission + [`Engine::publish`] → `SETUP`
//! per track (`mode=record`, any letter case) → `RECORD`; RTP packets on the
//! tracks' channels go through a [`TrackReceiver`] each into the stream,
//! exactly like an RTMP publish (same keys, GOP cache, one-publisher rule).
//! Play: `DESCRIBE` (SDP built from the stream's codec configs) → `SETUP`
//! per track → `PLAY`: the viewer starts on the GOP cache's keyframe; the
//! RTP packets of each frame are built once per stream (the frame's
//! [`EgressSlot::Rtp`] cache, sequence numbers and SSRC shared by every
//! viewer through [`RtpEgress`]) and a viewer's own bytes are the `$` and
//! channel bytes in front of each packet. An RTCP sender report goes out
//! for every track before its first RTP packet, and `RTP-Info` carries the
//! sequence number and RTP time of that packet.
//!
//! Stream key: the URL path `/app/name` (a trailing track control such as
//! `trackID=1`, `streamid=1` or `stream=1` removed), query to admission.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::message::{Decoder, Item, MessageError, Method, Request, Response};
use super::udp::{self, Chosen, RtspUdpHandle, UdpEnd, UdpLink};
use crate::admission::{
    Admission, AdmissionKind, AdmissionRequest, AdmissionWait, AllowAll, Decision, RejectCode,
    Rejection, MAX_ADMISSION_WAIT,
};
use crate::codec::aac::AacConfig;
use crate::engine::{
    EgressSlot, Engine, MediaWatchdog, Publisher, Recv, SessionTag, SharedFrame, Signal, StreamKey,
    StreamStats, Subscriber,
};
use crate::frame::{Frame, MediaKind};
use crate::log_limit::LogLimiter;
use crate::peer_text::{check_name, escaped, MAX_APP_LEN, MAX_STREAM_NAME_LEN, MAX_URL_LEN};
use crate::rtp::packetizer::{self, first_packet, records, Packetizer};
use crate::rtp::receiver::{Timeline, TrackReceiver};
use crate::rtp::rtcp::{self, ntp_from_unix_micros, RtcpPacket, SenderReport};
use crate::rtp::{RtpError, RtpPacket};
use crate::sdp::{self, SessionDescription, TrackInfo};
use crate::session::{CloseReason, ProtocolError, SessionFactory, StreamConn, StreamSession};
use crate::time::Instant;

/// Output a player may have queued before the session stops pulling frames
/// from the engine (1 MiB): a slow socket leaves frames in the ring.
pub const MAX_PENDING_OUTPUT: usize = 1 << 20;
/// Largest number of tracks in one session.
pub const MAX_TRACKS: usize = 8;
/// Session timeout said in the `Session` header (RFC 2326 §12.37).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Frames looked at to find the codec configs of a stream for DESCRIBE.
const DESCRIBE_SCAN: usize = 4096;
/// Interval of sender reports per played track, in media time.
const SR_INTERVAL_SECS: i64 = 5;
/// Payload type of the video track the server offers.
pub const VIDEO_PT: u8 = 96;
/// Payload type of the audio track the server offers.
pub const AUDIO_PT: u8 = 97;

static REFUSED: LogLimiter = LogLimiter::new(20, Duration::from_secs(10));
static BAD_PACKETS: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));

/// How an RTSP peer broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtspError {
    /// The byte stream is not RTSP (or breaks a length bound).
    #[error(transparent)]
    Message(#[from] MessageError),
    /// An interleaved frame arrived on a channel no SETUP assigned.
    #[error("interleaved frame on channel {0}, which no SETUP assigned")]
    UnsetChannel(u8),
    /// A request that only a server sends, or a response to nothing.
    #[error("unexpected RTSP response")]
    UnexpectedResponse,
}

/// The RTP egress state of one stream, shared by all its viewers: one
/// [`Packetizer`] per track kind (same SSRC and sequence numbers for every
/// viewer). Entries die with the stream (keyed by its stats' identity).
#[derive(Debug, Default)]
pub struct RtpEgress {
    streams: Mutex<HashMap<StreamKey, EgressEntry>>,
}

/// A stream's egress state and the stream it belongs to (by its stats).
type EgressEntry = (Weak<StreamStats>, Arc<StreamEgress>);

/// The packetizers of one published stream.
#[derive(Debug, Default)]
pub struct StreamEgress {
    video: Mutex<Option<Packetizer>>,
    audio: Mutex<Option<Packetizer>>,
}

impl StreamEgress {
    pub(crate) fn slot(&self, kind: MediaKind) -> &Mutex<Option<Packetizer>> {
        match kind {
            MediaKind::Video => &self.video,
            MediaKind::Audio => &self.audio,
        }
    }

    /// The packets of a frame, built once (cached in the frame's entry).
    pub(crate) fn packets(&self, entry: &SharedFrame) -> Bytes {
        entry.egress(EgressSlot::Rtp, |f| {
            let mut slot = self
                .slot(f.kind())
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match slot.as_mut() {
                Some(p) if p.codec() == f.codec => p.packetize(f),
                _ => Bytes::new(),
            }
        })
    }

    /// Creates the packetizer of a track at its config frame (once).
    fn ensure(&self, config: &Frame, seed: u64) -> (u8, u32, u32) {
        let mut slot = self
            .slot(config.kind())
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let p = slot.get_or_insert_with(|| {
            let pt = if config.kind() == MediaKind::Video {
                VIDEO_PT
            } else {
                AUDIO_PT
            };
            let rate = packetizer::clock_rate(
                config.codec,
                AacConfig::parse(&config.payload)
                    .ok()
                    .map(|c| c.sampling_frequency),
            );
            let mut p = Packetizer::new(config.codec, pt, rate, seed ^ config.kind() as u64);
            let _ = p.packetize(config);
            p
        });
        (p.payload_type(), p.clock_rate(), p.ssrc())
    }
}

impl RtpEgress {
    fn stream(&self, key: &StreamKey, stats: &Arc<StreamStats>) -> Arc<StreamEgress> {
        let mut map = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (w, _)| w.strong_count() > 0);
        if let Some((w, e)) = map.get(key) {
            if w.upgrade().is_some_and(|s| Arc::ptr_eq(&s, stats)) {
                return e.clone();
            }
        }
        let e = Arc::new(StreamEgress::default());
        map.insert(key.clone(), (Arc::downgrade(stats), e.clone()));
        e
    }
}

/// Builds an [`RtspSession`] per accepted TCP connection.
#[derive(Clone)]
pub struct RtspSessionFactory {
    engine: Engine,
    admission: Arc<dyn Admission>,
    egress: Arc<RtpEgress>,
    udp: Option<RtspUdpHandle>,
}

impl core::fmt::Debug for RtspSessionFactory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RtspSessionFactory").finish_non_exhaustive()
    }
}

impl RtspSessionFactory {
    /// Sessions publishing to and playing from `engine`, admitting through `admission`.
    pub fn new(engine: Engine, admission: Arc<dyn Admission>) -> Self {
        RtspSessionFactory {
            engine,
            admission,
            egress: Arc::default(),
            udp: None,
        }
    }

    /// Offers UDP unicast transport (`RTP/AVP;unicast;client_port=…`)
    /// through the RTSP UDP service of `handle` (see [`super::udp`]).
    pub fn with_udp(mut self, handle: RtspUdpHandle) -> Self {
        self.udp = Some(handle);
        self
    }

    /// Sessions that admit every request.
    pub fn allow_all(engine: Engine) -> Self {
        Self::new(engine, Arc::new(AllowAll))
    }

    /// A session for a connection from `peer` (also usable without the trait).
    pub fn session(&self, peer: SocketAddr, now: Instant, seed: u64) -> RtspSession {
        RtspSession {
            engine: self.engine.clone(),
            admission: self.admission.clone(),
            egress: self.egress.clone(),
            peer,
            seed,
            nonce: super::auth::server_nonce(seed),
            session_id: format!("{:016X}", seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            decoder: Decoder::new(),
            out: VecDeque::new(),
            out_bytes: 0,
            close: None,
            last_input: now,
            now,
            waiting: None,
            admitted: None,
            play_ended: false,
            session_started: false,
            content_base: None,
            publish: None,
            play: None,
            udp_handle: self.udp.clone(),
            udp: None,
        }
    }
}

impl SessionFactory for RtspSessionFactory {
    fn new_session(&self, conn: StreamConn, now: Instant, seed: u64) -> Box<dyn StreamSession> {
        Box::new(self.session(conn.peer, now, seed))
    }
}

/// One announced track of a publisher.
#[derive(Debug)]
struct InTrack {
    control: String,
    /// `None` for a media section this server does not carry: it can be
    /// set up (so the publisher goes on) and its packets are dropped.
    info: Option<TrackInfo>,
    rtp_channel: Option<u8>,
    receiver: Option<TrackReceiver>,
}

#[derive(Debug)]
struct PublishState {
    key: StreamKey,
    publisher: Publisher,
    tracks: Vec<InTrack>,
    timeline: Timeline,
    recording: bool,
    frames: Vec<Frame>,
    /// Closes the session if no media frame arrives within the app's
    /// first-media deadline after ANNOUNCE, or if media stops for its stall
    /// timeout (docs/security.md item 2, like RTMP and SRT publishers).
    watchdog: MediaWatchdog,
}

/// One track offered to a player.
#[derive(Debug, Clone)]
struct OutTrack {
    kind: MediaKind,
    channel: Option<u8>,
    sr_sent: bool,
    last_sr_pts: i64,
    packets: u32,
    octets: u32,
}

#[derive(Debug)]
struct PlayState {
    key: StreamKey,
    base_url: String,
    tracks: Vec<OutTrack>,
    egress: Arc<StreamEgress>,
    subscriber: Option<Subscriber>,
    playing: bool,
    write_merge: Duration,
}

/// A request waiting for a deferred admission [`Decision`].
struct Waiting {
    req: Request,
    kind: AdmissionKind,
    key: StreamKey,
    wait: AdmissionWait,
}

impl core::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Waiting")
            .field("kind", &self.kind)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The RTSP status of a refusal (RFC 2326 §7.1.1).
pub fn status_of(code: RejectCode) -> u16 {
    match code {
        RejectCode::BadRequest => 400,
        RejectCode::Unauthorized => 401,
        RejectCode::Forbidden | RejectCode::Conflict => 403,
        RejectCode::NotFound => 404,
        _ => 503,
    }
}

/// Input held while a request waits for admission, beyond which the peer
/// is dropped (one full message and a little more).
const MAX_HELD_INPUT: usize =
    super::message::MAX_HEADER_BLOCK + super::message::MAX_BODY + (1 << 16);

/// One RTSP connection joined to the engine (see the module documentation).
///
/// Invariants: frames are pulled from the subscriber only while less than
/// [`MAX_PENDING_OUTPUT`] bytes wait; every track sends an RTCP sender
/// report before its first RTP packet; a session publishes or plays, not
/// both; interleaved frames on channels no SETUP assigned close it.
pub struct RtspSession {
    engine: Engine,
    admission: Arc<dyn Admission>,
    egress: Arc<RtpEgress>,
    peer: SocketAddr,
    seed: u64,
    /// This connection's Digest nonce (see [`super::auth`]).
    nonce: String,
    session_id: String,
    decoder: Decoder,
    out: VecDeque<Bytes>,
    out_bytes: usize,
    close: Option<CloseReason>,
    last_input: Instant,
    /// The time of the call being handled.
    now: Instant,
    /// A request held until its deferred admission decision arrives
    /// (further input waits in the decoder meanwhile).
    waiting: Option<Waiting>,
    /// The decision that arrived for the request being re-run.
    admitted: Option<(AdmissionKind, StreamKey)>,
    /// The played stream ended (BYEs sent); the player's late RTCP is ignored.
    play_ended: bool,
    session_started: bool,
    /// The URL of the last DESCRIBE or ANNOUNCE: relative SETUP URLs resolve against it.
    content_base: Option<String>,
    publish: Option<PublishState>,
    play: Option<PlayState>,
    /// The UDP service, when the server offers UDP transport.
    udp_handle: Option<RtspUdpHandle>,
    /// This session's UDP side, from its first UDP SETUP.
    udp: Option<UdpLink>,
}

impl core::fmt::Debug for RtspSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RtspSession")
            .field("peer", &self.peer)
            .field("session", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// A 2-byte `$`+channel prefix for every channel, so a viewer's own bytes
/// per packet cost no allocation.
static CHANNEL_PREFIX: [[u8; 2]; 256] = {
    let mut t = [[b'$', 0]; 256];
    let mut i = 0;
    while i < 256 {
        // In bounds: `i < 256` and the table has 256 entries.
        #[allow(clippy::indexing_slicing)]
        {
            t[i][1] = i as u8;
        }
        i += 1;
    }
    t
};

fn channel_prefix(ch: u8) -> Bytes {
    CHANNEL_PREFIX
        .get(usize::from(ch))
        .map(|p| Bytes::from_static(p))
        .unwrap_or_default()
}

/// The path of an RTSP URL (`rtsp://host:port/a/b?q` → `/a/b`, `q`).
fn url_path(uri: &str) -> (&str, &str) {
    let rest = match uri.split_once("://") {
        Some((_, r)) => r.find('/').and_then(|i| r.get(i..)).unwrap_or("/"),
        None => uri,
    };
    rest.split_once('?').unwrap_or((rest, ""))
}

/// Whether a path segment is a track control (`trackID=1`, `streamid=0`, `stream=0`).
fn is_track_control(seg: &str) -> bool {
    let lower = seg.to_ascii_lowercase();
    ["trackid=", "streamid=", "stream=", "track"]
        .iter()
        .any(|p| lower.starts_with(p) && lower.len() > p.len())
}

/// Splits a URL into its stream key path and its track control (if any).
fn key_and_control(uri: &str) -> (String, Option<String>, String) {
    let (path, query) = url_path(uri);
    let path = path.trim_matches('/');
    match path.rsplit_once('/') {
        Some((base, last)) if is_track_control(last) => {
            (base.to_owned(), Some(last.to_owned()), query.to_owned())
        }
        _ => (path.to_owned(), None, query.to_owned()),
    }
}

fn parse_key(path: &str) -> Result<StreamKey, String> {
    let (app, name) = path
        .split_once('/')
        .ok_or_else(|| "stream path needs /app/name".to_owned())?;
    check_name(app, MAX_APP_LEN).map_err(|e| format!("bad app: {e}"))?;
    check_name(name, MAX_STREAM_NAME_LEN).map_err(|e| format!("bad stream name: {e}"))?;
    StreamKey::new(app, name).map_err(|e| format!("bad stream key: {e}"))
}

/// The 461 reason when no `Transport` alternative is supported.
const NO_TRANSPORT: &str = "no supported transport (RTP/AVP/TCP interleaved, RTP/AVP unicast UDP)";

/// The `Range` a PLAY response says (RFC 2326 §12.29): a live stream plays
/// from now whatever start the client asked for, and the two forms players
/// send for "from the live point", `npt=now-` and `npt=0-` (any zero such
/// as `npt=0.000-`), are echoed as sent; anything else (no header, another
/// unit, another start) is answered `npt=0.000-`. Built from the parsed
/// value, so no peer text is copied.
fn play_range(header: Option<&str>) -> &'static str {
    let Some(start) = header
        .and_then(|h| h.trim().strip_prefix("npt="))
        .and_then(|v| v.trim().strip_suffix('-'))
    else {
        return "npt=0.000-";
    };
    match start.trim() {
        "now" => "npt=now-",
        "0" => "npt=0-",
        "0.0" => "npt=0.0-",
        "0.00" => "npt=0.00-",
        _ => "npt=0.000-",
    }
}

/// A relative request URL (`trackID=1`, RFC 2326 §C.1.1 sloppy clients
/// send the control attribute as is) resolved against `base`; absolute
/// URLs and paths (`/live/cam/trackID=1`) are kept.
fn resolve_url(uri: &str, base: Option<&str>) -> String {
    match base {
        Some(base) if !uri.contains("://") && !uri.starts_with('/') && !uri.is_empty() => {
            format!("{}/{}", base.trim_end_matches('/'), uri)
        }
        _ => uri.to_owned(),
    }
}

impl RtspSession {
    /// Whether this session publishes a stream right now.
    pub fn is_publishing(&self) -> bool {
        self.publish.as_ref().is_some_and(|p| p.recording) || self.udp_active()
    }

    /// Whether the UDP service carries this session's media.
    fn udp_active(&self) -> bool {
        self.udp.as_ref().is_some_and(UdpLink::active)
    }

    /// Whether this session plays a stream right now.
    pub fn is_playing(&self) -> bool {
        self.play.as_ref().is_some_and(|p| p.playing) || self.udp_active()
    }

    fn send(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.out_bytes += b.len();
        self.out.push_back(b);
    }

    fn respond(&mut self, resp: Response) {
        self.send(resp.to_bytes());
    }

    fn fail(&mut self, err: RtspError) {
        if self.close.is_none() {
            if let Some(suppressed) = REFUSED.check(self.last_input) {
                warn!(peer = %self.peer, error = %escaped(&err.to_string()), suppressed, "rtsp connection dropped");
            }
            self.end_media();
            self.close = Some(CloseReason::ProtocolError(ProtocolError::Rtsp(err)));
        }
    }

    fn end_media(&mut self) {
        if let Some(u) = &mut self.udp {
            u.stop();
        }
        if let Some(p) = self.publish.take() {
            if p.recording {
                info!(peer = %self.peer, stream = %p.key, "rtsp publish ended");
            }
        }
        if let Some(p) = self.play.take() {
            if p.playing {
                info!(peer = %self.peer, stream = %p.key, "rtsp play ended");
            }
        }
    }

    fn refuse(&mut self, req: &Request, status: u16, why: &str) {
        if let Some(suppressed) = REFUSED.check(self.last_input) {
            warn!(
                peer = %self.peer,
                method = %escaped(req.method.as_str()),
                url = %escaped(&req.uri),
                status,
                reason = %escaped(why),
                suppressed,
                "rtsp request refused"
            );
        }
        self.respond(Response::new(status, req.headers.cseq()));
    }

    /// Answers an admission refusal: 401 with a Digest and a Basic
    /// challenge for [`RejectCode::Unauthorized`] (credentials missing;
    /// RFC 2326 §12.44), else the code's status ([`status_of`]).
    fn refuse_rejection(&mut self, req: &Request, r: &Rejection) {
        if r.code != RejectCode::Unauthorized {
            return self.refuse(req, status_of(r.code), &r.to_string());
        }
        // The first request of every authenticating client lands here.
        debug!(
            peer = %self.peer,
            method = %escaped(req.method.as_str()),
            url = %escaped(&req.uri),
            reason = %escaped(&r.to_string()),
            "rtsp request needs credentials: 401"
        );
        let mut resp = Response::new(401, req.headers.cseq());
        for c in super::auth::server_challenges(&self.nonce) {
            resp = resp.header("WWW-Authenticate", c);
        }
        self.respond(resp);
    }

    /// Asks the admission. `true`: go on. `false`: the request was refused
    /// (answered) or is held until a deferred decision arrives.
    fn admit(&mut self, req: &Request, kind: AdmissionKind, key: &StreamKey, query: &str) -> bool {
        if self
            .admitted
            .as_ref()
            .is_some_and(|(k, key2)| *k == kind && key2 == key)
        {
            return true;
        }
        let decision = self.admission.admit(&AdmissionRequest {
            protocol: "rtsp",
            kind,
            key: key.clone(),
            query: query.to_owned(),
            peer: self.peer,
            credentials: super::auth::credentials_from(
                req.headers.get("Authorization"),
                req.method.as_str(),
                &self.nonce,
            ),
        });
        match decision {
            Decision::Allow => true,
            Decision::Deny(r) => {
                self.refuse_rejection(req, &r);
                false
            }
            Decision::Later(pending) => {
                info!(peer = %self.peer, stream = %key, %kind, "rtsp request waits for admission");
                self.waiting = Some(Waiting {
                    req: req.clone(),
                    kind,
                    key: key.clone(),
                    wait: pending.start(self.now, MAX_ADMISSION_WAIT),
                });
                false
            }
        }
    }

    /// Applies a deferred decision that arrived (or the deadline that
    /// passed), re-runs the held request, then the input held behind it.
    fn poll_admission(&mut self) {
        let Some(decided) = self.waiting.as_ref().and_then(|w| w.wait.poll(self.now)) else {
            return;
        };
        let Some(w) = self.waiting.take() else { return };
        match decided {
            Ok(()) => {
                info!(peer = %self.peer, stream = %w.key, kind = %w.kind, "rtsp request admitted after waiting");
                self.admitted = Some((w.kind, w.key));
                self.handle_request(w.req);
                self.admitted = None;
            }
            Err(r) => {
                let r: Rejection = r;
                self.refuse_rejection(&w.req, &r);
            }
        }
        self.decode_input();
    }

    fn ok(&self, req: &Request) -> Response {
        let mut r = Response::new(200, req.headers.cseq()).header("Server", "arcly");
        if self.session_started {
            r = r.header(
                "Session",
                format!("{};timeout={}", self.session_id, SESSION_TIMEOUT.as_secs()),
            );
        }
        r
    }

    /// `Some(status)` when the request names a session that is not ours.
    fn wrong_session(&self, req: &Request) -> bool {
        match req.headers.get("Session") {
            Some(s) => {
                let id = s.split(';').next().unwrap_or_default().trim();
                !self.session_started || id != self.session_id
            }
            None => false,
        }
    }

    fn handle_request(&mut self, req: Request) {
        if req.uri.len() > MAX_URL_LEN {
            return self.refuse(&req, 400, "URL too long");
        }
        debug!(
            peer = %self.peer,
            method = %escaped(req.method.as_str()),
            url = %escaped(&req.uri),
            transport = %escaped(req.headers.get("Transport").unwrap_or_default()),
            "rtsp request"
        );
        match req.method {
            Method::Options => {
                let r = self.ok(&req).header(
                    "Public",
                    "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER",
                );
                self.respond(r);
            }
            Method::GetParameter | Method::SetParameter => {
                // Keep-alives; a stale session id is tolerated on these.
                let r = self.ok(&req);
                self.respond(r);
            }
            Method::Describe => self.on_describe(&req),
            Method::Announce => self.on_announce(&req),
            Method::Setup => self.on_setup(&req),
            Method::Play => self.on_play(&req),
            Method::Record => self.on_record(&req),
            Method::Pause => {
                if self.wrong_session(&req) {
                    return self.refuse(&req, 454, "wrong session");
                }
                if let Some(p) = &mut self.play {
                    p.playing = false;
                    // A UDP viewer stops; PLAY starts it again from a keyframe.
                    if let Some(u) = &mut self.udp {
                        u.stop();
                    }
                }
                let r = self.ok(&req);
                self.respond(r);
            }
            Method::Teardown => {
                let r = self.ok(&req);
                self.respond(r);
                self.end_media();
                self.close = Some(CloseReason::PeerClosed);
            }
            Method::Other(_) => self.refuse(&req, 501, "unknown method"),
        }
    }

    /// Codec configs (video first) of a stream, from a fresh subscriber:
    /// those of its start point and any that follow in what is at hand
    /// (an audio track whose config came after the first keyframe).
    fn stream_configs(&self, key: &StreamKey) -> Result<(Vec<Frame>, Subscriber), u16> {
        let mut sub = self
            .engine
            .subscribe_as(key, SessionTag::new("rtsp", self.peer))
            .map_err(|_| 404u16)?;
        let mut configs: Vec<Frame> = Vec::new();
        for _ in 0..DESCRIBE_SCAN {
            match sub.recv() {
                Recv::Frame(f) if f.frame.is_config() => {
                    configs.retain(|c| c.kind() != f.frame.kind());
                    configs.push(f.frame.clone());
                }
                Recv::Frame(_) => {}
                _ => break,
            }
        }
        configs.sort_by_key(|c| c.kind() != MediaKind::Video);
        if configs.is_empty() {
            return Err(404);
        }
        Ok((configs, sub))
    }

    fn on_describe(&mut self, req: &Request) {
        let (path, _, query) = key_and_control(&req.uri);
        let key = match parse_key(&path) {
            Ok(k) => k,
            Err(e) => return self.refuse(req, 400, &e),
        };
        if !self.admit(req, AdmissionKind::Play, &key, &query) {
            return;
        }
        let configs = match self.stream_configs(&key) {
            Ok((c, _)) => c,
            Err(status) => return self.refuse(req, status, "no such stream (or no media yet)"),
        };
        let media: Vec<String> = configs
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let pt = if c.kind() == MediaKind::Video {
                    VIDEO_PT
                } else {
                    AUDIO_PT
                };
                sdp::media_section(c.codec, &c.payload, pt, i)
            })
            .collect();
        let body = sdp::session(&key.to_string(), &media);
        let base = format!("{}/", req.uri.trim_end_matches('/'));
        self.content_base = Some(base.clone());
        let r = self
            .ok(req)
            .header("Content-Base", base)
            .body("application/sdp", Bytes::from(body));
        self.respond(r);
    }

    fn on_announce(&mut self, req: &Request) {
        if self.publish.is_some() || self.play.is_some() {
            return self.refuse(req, 455, "session already set up");
        }
        let (path, _, query) = key_and_control(&req.uri);
        let key = match parse_key(&path) {
            Ok(k) => k,
            Err(e) => return self.refuse(req, 400, &e),
        };
        let sd = match SessionDescription::parse(&req.body) {
            Ok(s) => s,
            Err(e) => return self.refuse(req, 400, &e.to_string()),
        };
        let mut tracks = Vec::new();
        for (i, m) in sd.media.iter().enumerate().take(MAX_TRACKS) {
            let control = m
                .control()
                .map_or_else(|| format!("trackID={i}"), str::to_owned);
            let info = match sdp::track_info(m) {
                Ok(info) => Some(info),
                Err(e) => {
                    debug!(peer = %self.peer, error = %escaped(&e.to_string()), "rtsp announce: media section ignored");
                    None
                }
            };
            let receiver = info
                .as_ref()
                .map(|i| TrackReceiver::new(i.params.clone(), i.clock_rate));
            tracks.push(InTrack {
                control,
                info,
                rtp_channel: None,
                receiver,
            });
        }
        let count = |kind| {
            tracks
                .iter()
                .filter(|t| {
                    t.info
                        .as_ref()
                        .is_some_and(|i| i.params.codec().kind() == kind)
                })
                .count()
        };
        if count(MediaKind::Video) + count(MediaKind::Audio) == 0 {
            return self.refuse(req, 415, "no supported media in SDP");
        }
        if count(MediaKind::Video) > 1 || count(MediaKind::Audio) > 1 {
            return self.refuse(req, 415, "at most one video and one audio track");
        }
        if !self.admit(req, AdmissionKind::Publish, &key, &query) {
            return;
        }
        let publisher = match self
            .engine
            .publish_as(key.clone(), SessionTag::new("rtsp", self.peer))
        {
            Ok(p) => p,
            Err(e) => {
                let status = match e {
                    crate::engine::PublishError::UnknownApp(_) => 404,
                    _ => 403,
                };
                return self.refuse(req, status, &e.to_string());
            }
        };
        info!(peer = %self.peer, stream = %key, tracks = tracks.len(), "rtsp publish announced");
        self.content_base = Some(req.uri.clone());
        let app_config = self.engine.app_config(key.app()).unwrap_or_default();
        let watchdog = MediaWatchdog::new(self.now, &app_config);
        self.publish = Some(PublishState {
            key,
            publisher,
            tracks,
            timeline: Timeline::new(),
            recording: false,
            frames: Vec::new(),
            watchdog,
        });
        let r = self.ok(req);
        self.respond(r);
    }

    fn on_setup(&mut self, req: &Request) {
        if self.wrong_session(req) {
            return self.refuse(req, 454, "wrong session");
        }
        let resolved;
        let req = if req.uri.contains("://") || req.uri.starts_with('/') {
            req
        } else {
            let mut r = req.clone();
            r.uri = resolve_url(&req.uri, self.content_base.as_deref());
            resolved = r;
            &resolved
        };
        let transport = req.headers.get("Transport").unwrap_or_default().to_owned();
        let (_, control, query) = key_and_control(&req.uri);
        let udp_offered = self
            .udp_handle
            .as_ref()
            .is_some_and(|h| h.server_ports().is_some());
        if let Some(p) = &mut self.publish {
            // Find the announced track this URL names.
            let last = url_path(&req.uri)
                .0
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let idx = p
                .tracks
                .iter()
                .position(|t| {
                    let c = t.control.trim_end_matches('/');
                    c == last || c.ends_with(&format!("/{last}")) || Some(c) == control.as_deref()
                })
                .or_else(|| p.tracks.iter().position(|t| t.rtp_channel.is_none()));
            let Some(idx) = idx else {
                return self.refuse(req, 404, "no such track");
            };
            let (a, b) = match udp::choose_transport(&transport, (idx * 2) as u8, udp_offered) {
                None => return self.refuse(req, 461, NO_TRANSPORT),
                Some(Chosen::Tcp(a, b)) => (a, b),
                Some(Chosen::Udp(rtp, rtcp)) => {
                    let Some(answer) = self.udp_setup(idx, rtp, rtcp, true, None) else {
                        return self.refuse(req, 453, "too many UDP sessions from this address");
                    };
                    if let Some(t) = self.publish.as_mut().and_then(|p| p.tracks.get_mut(idx)) {
                        // Marks the track set up; its media comes over UDP.
                        t.rtp_channel = Some((idx * 2) as u8);
                    }
                    self.session_started = true;
                    let r = self.ok(req).header("Transport", answer);
                    return self.respond(r);
                }
            };
            let Some(p) = &mut self.publish else { return };
            if p.tracks
                .iter()
                .any(|t| t.rtp_channel.is_some_and(|c| c / 2 == a / 2))
            {
                return self.refuse(req, 400, "interleaved channel in use");
            }
            if let Some(t) = p.tracks.get_mut(idx) {
                t.rtp_channel = Some(a);
            }
            self.session_started = true;
            let r = self.ok(req).header(
                "Transport",
                format!("RTP/AVP/TCP;unicast;interleaved={a}-{b};mode=record"),
            );
            return self.respond(r);
        }
        // Play side.
        let (path, _, _) = key_and_control(&req.uri);
        let key = match parse_key(&path) {
            Ok(k) => k,
            Err(e) => return self.refuse(req, 400, &e),
        };
        if self.play.as_ref().is_some_and(|p| p.key != key) {
            return self.refuse(req, 459, "tracks of one stream per session");
        }
        if self.play.is_none() {
            if !self.admit(req, AdmissionKind::Play, &key, &query) {
                return;
            }
            let (configs, sub) = match self.stream_configs(&key) {
                Ok(c) => c,
                Err(status) => return self.refuse(req, status, "no such stream"),
            };
            let egress = self.egress.stream(&key, &sub.stream_stats());
            let tracks = configs
                .iter()
                .map(|c| {
                    egress.ensure(c, self.seed);
                    OutTrack {
                        kind: c.kind(),
                        channel: None,
                        sr_sent: false,
                        last_sr_pts: 0,
                        packets: 0,
                        octets: 0,
                    }
                })
                .collect();
            let base = {
                let full = req.uri.split('?').next().unwrap_or_default();
                match control.as_deref() {
                    Some(c) => full
                        .trim_end_matches('/')
                        .trim_end_matches(c)
                        .trim_end_matches('/')
                        .to_owned(),
                    None => full.trim_end_matches('/').to_owned(),
                }
            };
            self.play = Some(PlayState {
                key,
                base_url: base,
                tracks,
                egress,
                subscriber: None,
                playing: false,
                write_merge: Duration::ZERO,
            });
        }
        let Some(p) = &mut self.play else { return };
        let idx = match control
            .as_deref()
            .and_then(|c| c.rsplit('=').next())
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(i) => i,
            None => p
                .tracks
                .iter()
                .position(|t| t.channel.is_none())
                .unwrap_or(0),
        };
        if idx >= p.tracks.len() {
            return self.refuse(req, 404, "no such track");
        }
        let chosen = udp::choose_transport(&transport, (idx * 2) as u8, udp_offered);
        let Some(chosen) = chosen else {
            return self.refuse(req, 461, NO_TRANSPORT);
        };
        let ssrc = p
            .tracks
            .get(idx)
            .map(|t| {
                let slot = p
                    .egress
                    .slot(t.kind)
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                slot.as_ref().map_or(0, Packetizer::ssrc)
            })
            .unwrap_or_default();
        let answer = match chosen {
            Chosen::Tcp(a, b) => {
                format!("RTP/AVP/TCP;unicast;interleaved={a}-{b};ssrc={ssrc:08X}")
            }
            Chosen::Udp(rtp, rtcp) => match self.udp_setup(idx, rtp, rtcp, false, Some(ssrc)) {
                Some(answer) => answer,
                None => return self.refuse(req, 453, "too many UDP sessions from this address"),
            },
        };
        if let Some(t) = self.play.as_mut().and_then(|p| p.tracks.get_mut(idx)) {
            // The channel pair a TCP SETUP would get (over UDP: "set up").
            t.channel = Some(match chosen {
                Chosen::Tcp(a, _) => a,
                Chosen::Udp(..) => (idx * 2) as u8,
            });
        }
        self.session_started = true;
        let r = self.ok(req).header("Transport", answer);
        self.respond(r);
    }

    fn on_record(&mut self, req: &Request) {
        if self.wrong_session(req) {
            return self.refuse(req, 454, "wrong session");
        }
        if self.publish.is_none() && self.udp_active() {
            // RECORD again (after PAUSE): the UDP service records already.
            let r = self.ok(req);
            return self.respond(r);
        }
        let Some(p) = &mut self.publish else {
            return self.refuse(req, 455, "RECORD without ANNOUNCE");
        };
        if !p.tracks.iter().any(|t| t.rtp_channel.is_some()) {
            return self.refuse(req, 455, "RECORD before SETUP");
        }
        p.recording = true;
        info!(peer = %self.peer, stream = %p.key, "rtsp publish started");
        let r = self.ok(req);
        self.respond(r);
        self.udp_record();
    }

    fn on_play(&mut self, req: &Request) {
        if self.wrong_session(req) {
            return self.refuse(req, 454, "wrong session");
        }
        let Some(p) = &mut self.play else {
            return self.refuse(req, 455, "PLAY before SETUP");
        };
        if p.playing {
            let r = self.ok(req);
            return self.respond(r);
        }
        if p.subscriber.is_none() {
            let sub = match self
                .engine
                .subscribe_as(&p.key, SessionTag::new("rtsp", self.peer))
            {
                Ok(s) => s,
                Err(e) => {
                    let why = e.to_string();
                    return self.refuse(req, 404, &why);
                }
            };
            p.write_merge = self
                .engine
                .app_config(p.key.app())
                .map(|c| c.write_merge)
                .unwrap_or_default();
            p.subscriber = Some(sub);
        }
        // Pull what is at hand (configs, the GOP cache) so that RTP-Info
        // names the first packet each track really sends.
        let mut pending: Vec<SharedFrame> = Vec::new();
        let mut bytes = 0usize;
        if let Some(sub) = &mut p.subscriber {
            while bytes < MAX_PENDING_OUTPUT {
                match sub.recv() {
                    Recv::Frame(f) => {
                        bytes += f.frame.payload.len();
                        pending.push(f);
                    }
                    _ => break,
                }
            }
        }
        debug!(
            peer = %self.peer,
            pending = pending.len(),
            first_seq = pending.first().map(|f| f.seq),
            first_pts = pending.first().map(|f| f.frame.pts),
            lag = p.subscriber.as_ref().map(Subscriber::lag),
            "rtsp play: frames at hand"
        );
        let mut info = Vec::new();
        for (i, t) in p.tracks.iter().enumerate() {
            if t.channel.is_none() {
                continue;
            }
            let mut first = None;
            for f in &pending {
                if f.frame.kind() != t.kind {
                    continue;
                }
                if f.frame.is_config() {
                    let _ = p.egress.packets(f);
                    continue;
                }
                if let Some(fp) = first_packet(&p.egress.packets(f)) {
                    first = Some(fp);
                    break;
                }
            }
            if let Some(fp) = first {
                info.push(format!(
                    "url={}/trackID={i};seq={};rtptime={}",
                    p.base_url, fp.sequence, fp.timestamp
                ));
            }
        }
        p.playing = true;
        let key = p.key.clone();
        let range = play_range(req.headers.get("Range"));
        let mut r = self.ok(req).header("Range", range);
        if !info.is_empty() {
            r = r.header("RTP-Info", info.join(","));
        }
        self.respond(r);
        info!(peer = %self.peer, stream = %key, "rtsp play started");
        let Some(pending) = self.udp_play(pending) else {
            return;
        };
        for f in pending {
            self.send_frame(&f);
        }
        self.pull();
    }

    /// Sends one frame's packets to the player (SR first where due).
    fn send_frame(&mut self, entry: &SharedFrame) {
        let Some(p) = &mut self.play else { return };
        let packets = p.egress.packets(entry);
        let f = &entry.frame;
        if f.is_config() || packets.is_empty() {
            return;
        }
        let Some(t) = p.tracks.iter_mut().find(|t| t.kind == f.kind()) else {
            return;
        };
        let Some(ch) = t.channel else { return };
        let mut bufs: Vec<Bytes> = Vec::new();
        let pts_s = f.pts.div_euclid(i64::from(f.timebase.max(1)));
        if !t.sr_sent || pts_s - t.last_sr_pts >= SR_INTERVAL_SECS {
            if let (Some(fp), Some(ssrc)) = (
                first_packet(&packets),
                p.egress
                    .slot(t.kind)
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(Packetizer::ssrc),
            ) {
                // NTP time on the stream's own axis: tracks share it.
                let micros = crate::frame::rescale(f.pts, f.timebase, 1_000_000);
                let sr = SenderReport {
                    ssrc,
                    ntp: ntp_from_unix_micros(
                        1_767_225_600_000_000u64.saturating_add_signed(micros),
                    ),
                    rtp_time: fp.timestamp,
                    packet_count: t.packets,
                    octet_count: t.octets,
                };
                let rtcp = rtcp::sender_report_compound(&sr, b"arcly");
                let hdr =
                    super::message::interleaved_header(ch.saturating_add(1), rtcp.len() as u16);
                bufs.push(Bytes::copy_from_slice(&hdr));
                bufs.push(rtcp);
                t.sr_sent = true;
                t.last_sr_pts = pts_s;
            }
        }
        let prefix = channel_prefix(ch);
        for rec in records(&packets) {
            t.packets = t.packets.wrapping_add(1);
            t.octets = t
                .octets
                .wrapping_add(rec.len().saturating_sub(2 + crate::rtp::HEADER_LEN) as u32);
            bufs.push(prefix.clone());
            bufs.push(rec);
        }
        for b in bufs {
            self.send(b);
        }
    }

    /// Moves frames from the subscriber to the output while it is small.
    fn pull(&mut self) {
        loop {
            if self.out_bytes >= MAX_PENDING_OUTPUT {
                return;
            }
            let Some(p) = &mut self.play else { return };
            if !p.playing {
                return;
            }
            let Some(sub) = &mut p.subscriber else { return };
            match sub.recv() {
                Recv::Frame(f) => self.send_frame(&f),
                Recv::Empty => return,
                Recv::End => {
                    info!(peer = %self.peer, stream = %p.key, "rtsp played stream ended");
                    // An RTCP BYE per track tells the player the stream is over.
                    let mut byes = Vec::new();
                    for t in &p.tracks {
                        let Some(ch) = t.channel else { continue };
                        let ssrc = p
                            .egress
                            .slot(t.kind)
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .as_ref()
                            .map_or(0, Packetizer::ssrc);
                        let mut b = bytes::BytesMut::new();
                        rtcp::write_sender_report(
                            &mut b,
                            &SenderReport {
                                ssrc,
                                ntp: 0,
                                rtp_time: 0,
                                packet_count: t.packets,
                                octet_count: t.octets,
                            },
                        );
                        rtcp::write_bye(&mut b, ssrc);
                        let hdr = super::message::interleaved_header(
                            ch.saturating_add(1),
                            b.len() as u16,
                        );
                        byes.push(Bytes::copy_from_slice(&hdr));
                        byes.push(b.freeze());
                    }
                    for b in byes {
                        self.send(b);
                    }
                    // The player ends on the BYEs and tears down; a player
                    // that does not is dropped at the session timeout.
                    self.last_input = self.now;
                    self.end_media();
                    self.play_ended = true;
                    return;
                }
            }
        }
    }

    fn on_interleaved(&mut self, now: Instant, channel: u8, data: Bytes) {
        if let Some(p) = &mut self.publish {
            let Some(t) = p.tracks.iter_mut().find(|t| {
                t.rtp_channel
                    .is_some_and(|c| c == channel || c.wrapping_add(1) == channel)
            }) else {
                return self.fail(RtspError::UnsetChannel(channel));
            };
            if !p.recording {
                return;
            }
            let (Some(info), Some(receiver)) = (&t.info, &mut t.receiver) else {
                return; // a track this server does not carry
            };
            let is_rtp = t.rtp_channel == Some(channel);
            let r: Result<(), RtpError> = if is_rtp {
                RtpPacket::parse(&data).and_then(|pkt| {
                    if pkt.payload_type != info.payload_type {
                        return Ok(());
                    }
                    receiver.handle_packet(now, &mut p.timeline, pkt, &mut p.frames)
                })
            } else {
                rtcp::parse_compound(&data).map(|pkts| {
                    for pk in pkts {
                        if let RtcpPacket::SenderReport(sr) = pk {
                            receiver.handle_sender_report(now, &mut p.timeline, &sr);
                        }
                    }
                })
            };
            if let Err(e) = r {
                if let Some(suppressed) = BAD_PACKETS.check(now) {
                    debug!(peer = %self.peer, stream = %p.key, error = %escaped(&e.to_string()), suppressed, "rtsp: bad packet dropped");
                }
            }
            for f in p.frames.drain(..) {
                p.watchdog.on_frame(now, &f);
                p.publisher.send(f);
            }
            return;
        }
        if let Some(p) = &self.play {
            // Receiver reports from the player keep it alive; nothing else to do.
            if p.tracks.iter().any(|t| {
                t.channel
                    .is_some_and(|c| c == channel || c.wrapping_add(1) == channel)
            }) {
                return;
            }
        }
        if self.play_ended {
            return;
        }
        self.fail(RtspError::UnsetChannel(channel));
    }
}

impl RtspSession {
    /// Handles every complete item buffered, unless a request waits for admission.
    fn decode_input(&mut self) {
        while self.close.is_none() {
            if self.waiting.is_some() {
                if self.decoder.buffered() > MAX_HELD_INPUT {
                    self.fail(RtspError::Message(MessageError::HeaderTooLong));
                }
                return;
            }
            match self.decoder.decode() {
                Ok(Some(Item::Request(req))) => self.handle_request(req),
                Ok(Some(Item::Interleaved { channel, data })) => {
                    let now = self.now;
                    self.on_interleaved(now, channel, data);
                }
                Ok(Some(Item::Response(_))) => {}
                Ok(None) => break,
                Err(e) => {
                    // Say why before closing when it is a message we could not read.
                    self.respond(Response::new(400, None));
                    self.fail(RtspError::Message(e));
                }
            }
        }
    }
}

/// The UDP transport of a session (the media side lives in
/// [`super::udp::RtspUdpService`]; see there).
impl RtspSession {
    /// A UDP SETUP of track `idx`: the `Transport` answer, or `None` when
    /// the service has no room for this client.
    fn udp_setup(
        &mut self,
        idx: usize,
        rtp: u16,
        rtcp: u16,
        record: bool,
        ssrc: Option<u32>,
    ) -> Option<String> {
        if self.udp.is_none() {
            let h = self.udp_handle.as_ref()?;
            self.udp = Some(UdpLink::new(h, self.peer).ok()?);
        }
        let u = self.udp.as_mut()?;
        Some(u.set_track(idx, rtp, rtcp, record, ssrc))
    }

    fn udp_refused(&mut self, e: crate::datagram::InboxError) {
        if let Some(suppressed) = REFUSED.check(self.now) {
            warn!(peer = %self.peer, error = %e, suppressed, "rtsp udp: the UDP service refused the session");
        }
        self.end_media();
        self.close = Some(CloseReason::rejected(
            RejectCode::Unavailable,
            e.to_string(),
        ));
    }

    /// At PLAY: hands a viewer whose tracks are set up over UDP to the
    /// service (`None`), or gives the frames back for TCP.
    fn udp_play(&mut self, pending: Vec<SharedFrame>) -> Option<Vec<SharedFrame>> {
        let (Some(u), Some(p)) = (&mut self.udp, &mut self.play) else {
            return Some(pending);
        };
        let tracks: Vec<(usize, MediaKind)> = p
            .tracks
            .iter()
            .enumerate()
            .filter(|(i, t)| t.channel.is_some() && u.has_track(*i))
            .map(|(i, t)| (i, t.kind))
            .collect();
        if tracks.is_empty() {
            return Some(pending);
        }
        let sub = p.subscriber.take()?;
        let r = u.start_play(p.key.clone(), &tracks, p.egress.clone(), sub, pending);
        if let Err(e) = r {
            self.udp_refused(e);
        }
        None
    }

    /// At RECORD: hands a publisher whose tracks are set up over UDP to
    /// the service.
    fn udp_record(&mut self) {
        let Some(u) = &mut self.udp else { return };
        let udp_tracks = self
            .publish
            .as_ref()
            .is_some_and(|p| (0..p.tracks.len()).any(|i| u.has_track(i)));
        if !udp_tracks {
            return;
        }
        let Some(p) = self.publish.take() else { return };
        let tracks = p
            .tracks
            .into_iter()
            .enumerate()
            .filter(|(i, _)| u.has_track(*i))
            .filter_map(|(i, t)| Some((i, t.info?, t.receiver?)))
            .collect();
        if let Err(e) = u.start_record(p.key, p.publisher, tracks, p.timeline, p.watchdog) {
            self.udp_refused(e);
        }
    }

    /// The UDP service ended this session's media side.
    fn poll_udp(&mut self) {
        let Some(end) = self.udp.as_mut().and_then(UdpLink::poll_end) else {
            return;
        };
        debug!(peer = %self.peer, ?end, "rtsp udp media side ended");
        match end {
            UdpEnd::StreamEnded => {
                // As over TCP: the player ends on the BYEs and tears down.
                self.last_input = self.now;
                self.end_media();
                self.play_ended = true;
            }
            UdpEnd::Timeout => {
                self.end_media();
                self.close = Some(CloseReason::IdleTimeout);
            }
            UdpEnd::NoMedia(stall) => {
                self.end_media();
                self.close = Some(CloseReason::MediaTimeout(stall));
            }
            _ => {
                self.end_media();
                self.close = Some(CloseReason::LocalShutdown);
            }
        }
    }
}

impl StreamSession for RtspSession {
    fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.close.is_some() {
            return;
        }
        self.now = now;
        self.last_input = now;
        if data.is_empty() {
            self.end_media();
            self.close = Some(CloseReason::PeerClosed);
            return;
        }
        self.decoder.extend(data);
        self.decode_input();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.poll_admission();
        self.poll_udp();
        if self.close.is_none()
            && self.waiting.is_none()
            && !self.is_playing()
            && !self.is_publishing()
            && now.saturating_duration_since(self.last_input) >= SESSION_TIMEOUT
        {
            self.end_media();
            self.close = Some(CloseReason::IdleTimeout);
        }
        if self.close.is_none() {
            let stall = self
                .publish
                .as_ref()
                .map(|p| (p.key.clone(), p.watchdog.check(now)));
            if let Some((key, Err(stall))) = stall {
                // A peer can cause this in a flood: rate-limited.
                static NO_MEDIA: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));
                if let Some(suppressed) = NO_MEDIA.check(now) {
                    warn!(peer = %self.peer, stream = %key, reason = %stall, suppressed, "rtsp publisher closed: no media, stream slot freed");
                }
                self.end_media();
                self.close = Some(CloseReason::MediaTimeout(stall));
            }
        }
    }

    fn handle_media(&mut self, now: Instant) {
        self.now = now;
        self.poll_admission();
        self.poll_udp();
        self.pull();
    }

    fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize {
        let n = self.out_bytes;
        out.extend(self.out.drain(..));
        self.out_bytes = 0;
        n
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if let Some(w) = &self.waiting {
            return Some(w.wait.deadline());
        }
        if self.close.is_some() {
            return None;
        }
        let watchdog = self.publish.as_ref().map(|p| p.watchdog.deadline());
        if self.is_playing() || self.is_publishing() {
            return watchdog;
        }
        if let Some(w) = watchdog {
            // Announced, not recording yet: the earlier of both deadlines.
            let idle = Instant::from_micros(
                self.last_input.as_micros() + SESSION_TIMEOUT.as_micros() as u64,
            );
            return Some(w.min(idle));
        }
        Some(Instant::from_micros(
            self.last_input.as_micros() + SESSION_TIMEOUT.as_micros() as u64,
        ))
    }

    fn media_signal(&self) -> Option<Signal> {
        if let Some(w) = &self.waiting {
            return Some(w.wait.signal().clone());
        }
        if let Some(s) = self.udp.as_ref().and_then(UdpLink::signal) {
            return Some(s);
        }
        self.play
            .as_ref()
            .filter(|p| p.playing)
            .and_then(|p| p.subscriber.as_ref())
            .map(Subscriber::signal)
    }

    fn close_reason(&self) -> Option<&CloseReason> {
        self.close.as_ref()
    }

    fn close(&mut self, _now: Instant) {
        if self.close.is_none() {
            self.end_media();
            self.close = Some(CloseReason::LocalShutdown);
        }
    }

    fn write_merge(&self) -> Duration {
        self.play
            .as_ref()
            .filter(|p| p.playing)
            .map_or(Duration::ZERO, |p| p.write_merge)
    }
}
