//! The HLS service's HTTP side: [`HlsService`] as an [`HttpService`]
//! mounted on an [`HttpRouter`](super::HttpRouter) (by
//! [`HttpRouter::new`](super::HttpRouter::new) at `/{*path}`, GET and HEAD):
//! the player page, hls.js, playlists, segments, parts, and the parked
//! requests of blocking playlist reload (see the module documentation of
//! [`crate::http`]).

use std::any::Any;
use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, StatusCode};

use super::hls::{BlockPermit, NotServed};
use super::request::{parse_target, Target, TargetError};
use super::{
    base, error, playlist, ranged, refused, unavailable, ClientAddr, HlsError, HlsService,
    HttpService, Refusal, RouteMatch, Routed, Wait, WallClock, CACHE_ASSET, CACHE_MEDIA,
    CACHE_PLAYLIST, HLS_JS, HTML_TYPE, JS_TYPE, MP4_TYPE, PLAYER_HTML, TS_TYPE,
};
use crate::container::hls::{PlaylistReply, PlaylistRequest, Resource, Variant};
use crate::engine::{Signal, StreamKey};
use crate::time::Instant;

/// Why a request is parked: decides the deadline and the timeout answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitKind {
    /// The stream's muxer has nothing to play yet.
    Ready,
    /// Blocking playlist reload (§6.2.5.2).
    Reload,
    /// The preload-hinted part, not complete yet (§6.2.6).
    Media,
}

/// The HLS state of a parked request ([`Wait::new`]): holds one of the
/// [`HlsServiceConfig::max_blocked_requests`](super::HlsServiceConfig::max_blocked_requests)
/// slots until the [`Wait`] is dropped or resumed into a response.
#[derive(Debug)]
struct Parked {
    kind: WaitKind,
    permit: BlockPermit,
    /// When the request was first parked.
    since: Instant,
    /// The deadline of the wait's reason (the `Wait`'s deadline may be
    /// earlier: a time at which the service answers anyway).
    hard: Instant,
}

impl HttpService for HlsService {
    fn handle(&self, req: &Request<Bytes>, _route: &RouteMatch, now: Instant) -> Routed {
        self.route(req, now, None)
    }

    /// Past the deadline a request that would still wait gets 503
    /// (§6.2.5.2: "A Server that cannot provide the requested Playlist
    /// after blocking for more than three Target Durations SHOULD return
    /// Service Unavailable").
    fn resume(
        &self,
        req: &Request<Bytes>,
        _route: &RouteMatch,
        wait: Wait,
        now: Instant,
    ) -> Routed {
        let Some(carry) = wait.into_state::<Parked>() else {
            return Routed::Response(unavailable("not an HLS wait"));
        };
        match self.route(req, now, Some(carry)) {
            Routed::Wait(w) if now >= w.deadline => {
                let kind = w.state::<Parked>().map(|p| p.kind);
                let why = match kind {
                    Some(WaitKind::Ready) | None => "stream has nothing to play yet",
                    Some(WaitKind::Reload) => "blocking playlist reload timed out",
                    Some(WaitKind::Media) => "part not available in time",
                };
                Routed::Response(refused(unavailable(why), Refusal::Timeout))
            }
            other => other,
        }
    }

    fn set_wall_clock(&self, wall: Option<WallClock>) {
        HlsService::set_wall_clock(self, wall);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl HlsService {
    fn route(&self, req: &Request<Bytes>, now: Instant, carry: Option<Parked>) -> Routed {
        let resp = match parse_target(req.uri().path()) {
            Err(TargetError::BadPath(why)) => error(StatusCode::BAD_REQUEST, why),
            Err(TargetError::NotFound) => error(StatusCode::NOT_FOUND, "no such resource"),
            Ok(Target::HlsJs) => ranged(req, JS_TYPE, CACHE_ASSET, Bytes::from_static(HLS_JS)),
            Ok(Target::Player(_)) => base(
                StatusCode::OK,
                HTML_TYPE,
                CACHE_PLAYLIST,
                Bytes::from_static(PLAYER_HTML.as_bytes()),
            ),
            Ok(Target::AddSlash(_)) => {
                let to = format!("{}/", req.uri().path());
                match HeaderValue::from_str(&to) {
                    Ok(v) => {
                        let mut resp = error(StatusCode::PERMANENT_REDIRECT, "see Location");
                        resp.headers_mut().insert(header::LOCATION, v);
                        resp
                    }
                    Err(_) => error(StatusCode::BAD_REQUEST, "bad path"),
                }
            }
            Ok(Target::Stream(key, res)) => {
                return self.stream_resource(req, &key, res, now, carry)
            }
        };
        Routed::Response(resp)
    }

    /// A parked request: reuses the carried slot and, for the same reason,
    /// the carried deadline.
    /// `wake_at`: an earlier time at which the request is answered anyway.
    /// `at`: the stream and the client, charged with a new parked slot.
    #[allow(clippy::too_many_arguments)]
    fn park(
        &self,
        at: (&StreamKey, Option<IpAddr>),
        signal: &Signal,
        epoch: u64,
        kind: WaitKind,
        timeout: std::time::Duration,
        now: Instant,
        carry: Option<Parked>,
        wake_at: Option<Instant>,
    ) -> Routed {
        let (permit, hard, since) = match carry {
            Some(c) if c.kind == kind => (c.permit, c.hard, c.since),
            Some(c) => (c.permit, now + timeout, c.since),
            None => match self.block_permit(at.1, at.0) {
                Ok(p) => (p, now + timeout, now),
                Err(limit) => {
                    let mut resp = unavailable(limit.why());
                    resp.headers_mut().insert(
                        header::HeaderName::from_static("x-arcly-limit"),
                        HeaderValue::from(limit.max()),
                    );
                    return Routed::Response(refused(resp, Refusal::ParkLimit));
                }
            },
        };
        let deadline = wake_at.map_or(hard, |w| w.min(hard));
        Routed::Wait(Wait::new(
            signal.clone(),
            epoch,
            deadline,
            Parked {
                kind,
                permit,
                since,
                hard,
            },
        ))
    }

    /// Answers a stream resource, or parks the request.
    fn stream_resource(
        &self,
        req: &Request<Bytes>,
        key: &StreamKey,
        res: Resource,
        now: Instant,
        carry: Option<Parked>,
    ) -> Routed {
        let respond = Routed::Response;
        let variant = match res {
            Resource::Multivariant(v) | Resource::MediaPlaylist(v) | Resource::Segment(v, _) => v,
            Resource::Init | Resource::Part { .. } => Variant::LowLatency,
        };
        let client = ClientAddr::of(req).map(|a| a.ip());
        // A TS request turns the TS variant on (or keeps it on).
        let stream = match self.stream_for(key, variant, now, client) {
            Ok(s) => s,
            Err(NotServed::Error(HlsError::Subscribe(e))) => {
                return respond(error(StatusCode::NOT_FOUND, &e.to_string()));
            }
            Err(NotServed::Error(
                e @ (HlsError::TooManyStreams(_) | HlsError::TooManyStreamsFromClient(_)),
            )) => {
                return respond(refused(unavailable(&e.to_string()), Refusal::StreamLimit));
            }
            Err(NotServed::Error(e @ HlsError::Jobs(_))) => {
                return respond(unavailable(&e.to_string()))
            }
            Err(NotServed::Error(HlsError::NoMedia)) => {
                return respond(error(StatusCode::NOT_FOUND, "stream has no media yet"));
            }
            Err(NotServed::NoMedia(signal, epoch)) => {
                // No muxer until the first frame: wait for it (like a fresh
                // muxer's first request), holding a parked slot only.
                let timeout = self.config().ready_timeout;
                return self.park(
                    (key, client),
                    &signal,
                    epoch,
                    WaitKind::Ready,
                    timeout,
                    now,
                    carry,
                    None,
                );
            }
        };
        let signal = stream.advanced();
        // Read before looking: a push after the look moves the epoch.
        let epoch = signal.epoch();
        let state = stream.state();
        let muxer = &state.muxer;
        let ready_timeout = self.config().ready_timeout;
        let block_timeout = muxer.target_duration().saturating_mul(3);
        let since = carry.as_ref().map_or(now, |w| w.since);
        let park = |kind: WaitKind, timeout, carry| {
            self.park(
                (key, client),
                &signal,
                epoch,
                kind,
                timeout,
                now,
                carry,
                None,
            )
        };
        // First playlist of a fresh muxer: players that know no LL-HLS
        // (ffprobe, VLC, older players) need a complete segment; a playlist
        // of parts only is empty to them. So the first requests wait for
        // one, or, with a long GOP, for two target durations, after which
        // parts do (an LL-HLS client asking with `_HLS_msn` is served from
        // the first part on).
        // The TS variant starts with the first request for it: its first
        // playlist waits the same way for its first complete TS segment.
        let soft_wake = since + muxer.target_duration().saturating_mul(2);
        let ready = |v: Variant, ll_client: bool| match v {
            Variant::Ts => muxer.is_ready(Variant::Ts),
            Variant::LowLatency => {
                muxer.has_segment()
                    || (muxer.is_ready(Variant::LowLatency) && (ll_client || now >= soft_wake))
            }
        };
        if variant == Variant::Ts && muxer.is_finished() && !muxer.is_ready(Variant::Ts) {
            // Asked for after the stream ended: no TS segment will come.
            return respond(error(StatusCode::NOT_FOUND, "stream ended; no TS segments"));
        }
        let park_ready = |v: Variant, carry| {
            let wake = (v == Variant::LowLatency && muxer.is_ready(Variant::LowLatency))
                .then_some(soft_wake);
            self.park(
                (key, client),
                &signal,
                epoch,
                WaitKind::Ready,
                ready_timeout,
                now,
                carry,
                wake,
            )
        };
        match res {
            Resource::Multivariant(v) => match muxer.multivariant_playlist(v) {
                Some(text) if ready(v, false) => respond(playlist(text)),
                _ => park_ready(v, carry),
            },
            Resource::MediaPlaylist(v) => {
                let directives = match PlaylistRequest::from_query(req.uri().query().unwrap_or(""))
                {
                    // §6.2.5.2: checked before any wait.
                    Ok(d) if d.part.is_some() && d.msn.is_none() => {
                        return respond(error(
                            StatusCode::BAD_REQUEST,
                            "_HLS_part without _HLS_msn",
                        ));
                    }
                    Ok(d) => d,
                    Err(why) => return respond(error(StatusCode::BAD_REQUEST, why)),
                };
                if !ready(v, directives.msn.is_some()) {
                    return park_ready(v, carry);
                }
                match muxer.media_playlist(v, &directives) {
                    PlaylistReply::Ready(text) => respond(playlist(text)),
                    PlaylistReply::NotYet => park(WaitKind::Reload, block_timeout, carry),
                    PlaylistReply::BadRequest(why) => respond(error(StatusCode::BAD_REQUEST, why)),
                }
            }
            Resource::Init => match muxer.init_segment() {
                Some(b) => respond(ranged(req, MP4_TYPE, CACHE_MEDIA, b)),
                None => respond(error(StatusCode::NOT_FOUND, "no init segment yet")),
            },
            Resource::Segment(v, msn) => match muxer.segment(v, msn) {
                Some(b) => {
                    let ctype = match v {
                        Variant::LowLatency => MP4_TYPE,
                        Variant::Ts => TS_TYPE,
                    };
                    respond(ranged(req, ctype, CACHE_MEDIA, b))
                }
                None => respond(error(StatusCode::NOT_FOUND, "no such segment")),
            },
            Resource::Part { msn, part } => match muxer.part(msn, part) {
                Some(b) => respond(ranged(req, MP4_TYPE, CACHE_MEDIA, b)),
                // The preload-hinted part (§6.2.6): held until complete.
                None if muxer.part_pending(msn, part) => {
                    park(WaitKind::Media, block_timeout, carry)
                }
                None => respond(error(StatusCode::NOT_FOUND, "no such part")),
            },
        }
    }
}
