//! `--pull KEY=URL`: keep a stream filled from an `rtsp://` or `rtmp://`
//! source (a camera, another server), reconnecting with capped exponential
//! back-off.
//!
//! Each pull is one tokio task driving a sans-IO client machine
//! ([`arcly::rtsp::client::RtspClient`] over TCP interleaved, or
//! [`arcly::rtmp::client::ClientConnection`] in play mode) on one TCP
//! connection. Once the source plays, the task publishes KEY into the
//! engine exactly like a publisher (same GOP cache; the one-publisher rule
//! holds: if someone else publishes KEY, the pull waits and retries). When
//! the source drops, the task reconnects after 1 s, 2 s, 4 s … up to
//! [`MAX_BACKOFF`]; a connection that played for [`STABLE_AFTER`] resets
//! the back-off. Every failure and retry is logged (URL without password).
//!
//! Across a drop the stream is held published for up to [`HOLD`]: viewers
//! stay connected, see no frames for a moment, then the new connection's
//! frames (configs first, then a keyframe) continue on the same timeline
//! ([`Retimer`]: the new source's first frame lands [`RESUME_GAP`] after
//! the last frame sent). A source away for longer than [`HOLD`] ends the
//! stream (viewers see its end, as when a publisher leaves); it is
//! published again when the source is back.

use std::time::Duration;

use arcly::rtmp::client::{ClientConfig, ClientConnection, ClientEvent, ClientMode};
use arcly::rtsp::client::{self as rtsp, RtspClient};
use arcly::time::Clock;
use arcly::{Engine, StreamKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Longest wait between reconnects.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// First wait after a failure.
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// A connection that played this long resets the back-off.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How long the stream stays published while the source is away.
pub const HOLD: Duration = Duration::from_secs(15);
/// Media time between the last frame before a drop and the first after.
pub const RESUME_GAP: Duration = Duration::from_millis(100);
/// Time allowed for the TCP connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One `--pull KEY=URL`.
#[derive(Debug, Clone)]
pub struct PullSpec {
    /// The stream filled (`live/cam`).
    pub key: StreamKey,
    /// The source URL (`rtsp://…` or `rtmp://…`).
    pub url: String,
}

/// Parses `app/name=rtsp://…` or `app/name=rtmp://…` (clap value parser).
pub fn parse(s: &str) -> Result<PullSpec, String> {
    let (key, url) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected KEY=URL, e.g. live/cam=rtsp://cam.local/stream"))?;
    let (app, name) = key
        .trim_matches('/')
        .split_once('/')
        .ok_or_else(|| format!("`{key}`: the key is app/name, e.g. live/cam"))?;
    let key = StreamKey::new(app, name).map_err(|e| format!("`{key}`: {e}"))?;
    if url.starts_with("rtsp://") {
        RtspClient::new(url, arcly::Instant::ZERO, 0).map_err(|e| e.to_string())?;
    } else if url.starts_with("rtmp://") {
        ClientConfig::from_url(url, ClientMode::Play).map_err(|e| e.to_string())?;
    } else {
        return Err(format!(
            "`{url}`: only rtsp:// and rtmp:// sources can be pulled"
        ));
    }
    Ok(PullSpec {
        key,
        url: url.to_owned(),
    })
}

/// The URL with any password replaced, for logs.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return arcly::peer_text::escaped(url).to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}:***@{host}")
        }
        None => authority.to_owned(),
    };
    arcly::peer_text::escaped(&format!("{scheme}://{authority}{path}")).to_string()
}

/// Starts one task per pull; each ends when `stop` turns true.
pub fn spawn_all(
    servers: &mut tokio::task::JoinSet<()>,
    engine: &Engine,
    pulls: &[PullSpec],
    stop: watch::Receiver<bool>,
) {
    for p in pulls {
        println!("  pulling {} into {}", redacted(&p.url), p.key);
        let engine = engine.clone();
        let spec = p.clone();
        let stop = stop.clone();
        servers.spawn(async move {
            run(engine, spec, stop).await;
            // A pull task returning must not look like a failed listener.
            std::future::pending::<()>().await;
        });
    }
}

/// Why one connection to the source ended.
type PullResult = Result<(), String>;

/// Keeps the timeline of a pulled stream continuous across reconnects: each
/// new connection's timestamps are shifted so that its first frame comes
/// [`RESUME_GAP`] after the last frame sent before.
///
/// Invariant: once based, every frame is shifted by the same offset (in
/// microseconds, rescaled to the frame's timebase) until the next
/// [`Retimer::reconnected`].
#[derive(Debug, Default)]
pub struct Retimer {
    /// The latest decode time sent, in microseconds.
    last_us: Option<i64>,
    /// The shift of the current connection, in microseconds.
    offset_us: i64,
    /// The next frame bases the shift.
    rebase: bool,
}

impl Retimer {
    /// A new connection starts: its first frame re-bases the shift.
    pub fn reconnected(&mut self) {
        self.rebase = self.last_us.is_some();
    }

    /// Shifts one frame onto the stream's timeline.
    pub fn apply(&mut self, f: &mut arcly::Frame) {
        let tb = f.timebase.max(1);
        let dts_us = arcly::frame::rescale(f.dts, tb, 1_000_000);
        if self.rebase {
            self.rebase = false;
            let last = self.last_us.unwrap_or_default();
            self.offset_us = last + RESUME_GAP.as_micros() as i64 - dts_us;
        }
        let shift = arcly::frame::rescale(self.offset_us, 1_000_000, tb);
        f.pts += shift;
        f.dts += shift;
        let out = dts_us + self.offset_us;
        self.last_us = Some(self.last_us.map_or(out, |l| l.max(out)));
    }
}

/// The stream's publisher, kept across reconnects (see the module docs).
#[derive(Default)]
pub(crate) struct Held {
    publisher: Option<arcly::engine::Publisher>,
    /// When the source was lost while the publisher is held.
    lost_at: Option<std::time::Instant>,
    retimer: Retimer,
}

impl Held {
    fn send(&mut self, mut f: arcly::Frame) {
        if let Some(p) = &mut self.publisher {
            self.retimer.apply(&mut f);
            p.send(f);
        }
    }

    /// Ends the stream if the source has been away for [`HOLD`].
    fn expire(&mut self, key: &StreamKey) {
        if self.lost_at.is_some_and(|t| t.elapsed() >= HOLD) && self.publisher.is_some() {
            self.publisher = None;
            self.retimer = Retimer::default();
            tracing::warn!(stream = %key, hold_s = HOLD.as_secs(), "pull: source away too long; stream ended");
        }
    }
}

async fn run(engine: Engine, spec: PullSpec, mut stop: watch::Receiver<bool>) {
    let url = redacted(&spec.url);
    let mut backoff = MIN_BACKOFF;
    let mut attempt: u64 = 0;
    let mut held = Held::default();
    loop {
        attempt += 1;
        let started = std::time::Instant::now();
        let mut played = false;
        held.retimer.reconnected();
        let r = tokio::select! {
            r = connect_once(&engine, &spec, attempt, &mut played, &mut held) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        if played || held.lost_at.is_none() {
            held.lost_at = Some(std::time::Instant::now());
        }
        if played && started.elapsed() >= STABLE_AFTER {
            backoff = MIN_BACKOFF;
        }
        let why = match r {
            Ok(()) => "source ended the stream".to_owned(),
            Err(e) => e,
        };
        tracing::warn!(
            stream = %spec.key,
            url = %url,
            reason = %arcly::peer_text::escaped(&why),
            retry_in_ms = backoff.as_millis() as u64,
            "pull: source lost; reconnecting"
        );
        let wake = tokio::time::Instant::now() + backoff;
        loop {
            held.expire(&spec.key);
            let until = match held.lost_at {
                Some(t) if held.publisher.is_some() => {
                    tokio::time::Instant::from_std(t + HOLD).min(wake)
                }
                _ => wake,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if tokio::time::Instant::now() >= wake {
                break;
            }
        }
        held.expire(&spec.key);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

pub(crate) async fn connect_once(
    engine: &Engine,
    spec: &PullSpec,
    attempt: u64,
    played: &mut bool,
    held: &mut Held,
) -> PullResult {
    let seed = seed(attempt);
    if spec.url.starts_with("rtsp://") {
        pull_rtsp(engine, spec, seed, played, held).await
    } else {
        pull_rtmp(engine, spec, seed, played, held).await
    }
}

fn seed(attempt: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(attempt);
    h.finish()
}

async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err("connect: timed out".to_owned()),
    }
}

/// The source plays: publish the stream, or resume the held one.
fn publish(engine: &Engine, spec: &PullSpec, held: &mut Held) -> Result<(), String> {
    held.lost_at = None;
    if held.publisher.is_some() {
        tracing::info!(stream = %spec.key, url = %redacted(&spec.url), "pull: source playing again, stream resumed");
        return Ok(());
    }
    let p = engine
        .publish(spec.key.clone())
        .map_err(|e| format!("cannot publish: {e}"))?;
    tracing::info!(stream = %spec.key, url = %redacted(&spec.url), "pull: source playing, stream published");
    held.publisher = Some(p);
    held.retimer = Retimer::default();
    Ok(())
}

async fn pull_rtsp(
    engine: &Engine,
    spec: &PullSpec,
    seed: u64,
    played: &mut bool,
    held: &mut Held,
) -> PullResult {
    let clock = Clock::new(std::time::Instant::now());
    let now = || clock.instant(std::time::Instant::now());
    let mut client = RtspClient::new(&spec.url, now(), seed).map_err(|e| e.to_string())?;
    let (host, port) = (client.url().host.clone(), client.url().port);
    let stream = connect(&host, port).await?;
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        while let Some(b) = client.poll_transmit() {
            wr.write_all(&b).await.map_err(|e| format!("write: {e}"))?;
        }
        while let Some(ev) = client.poll_event() {
            match ev {
                rtsp::ClientEvent::Playing(codecs) => {
                    tracing::debug!(stream = %spec.key, ?codecs, "pull: rtsp tracks");
                    publish(engine, spec, held)?;
                    *played = true;
                }
                rtsp::ClientEvent::Frame(f) => held.send(f),
            }
        }
        if let Some(e) = client.error() {
            return Err(e.to_string());
        }
        let deadline = client
            .poll_timeout()
            .map(|t| tokio::time::Instant::from_std(clock.to_std(t)));
        tokio::select! {
            r = rd.read(&mut buf) => {
                let n = r.map_err(|e| format!("read: {e}"))?;
                client.handle_input(now(), buf.get(..n).unwrap_or_default());
            }
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => client.handle_timeout(now()),
        }
    }
}

async fn pull_rtmp(
    engine: &Engine,
    spec: &PullSpec,
    seed: u64,
    played: &mut bool,
    held: &mut Held,
) -> PullResult {
    let clock = Clock::new(std::time::Instant::now());
    let now = || clock.instant(std::time::Instant::now());
    let config = ClientConfig::from_url(&spec.url, ClientMode::Play).map_err(|e| e.to_string())?;
    let authority = spec
        .url
        .trim_start_matches("rtmp://")
        .split('/')
        .next()
        .unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| "bad port".to_owned())?),
        None => (authority, 1935),
    };
    let stream = connect(host.trim_matches(['[', ']']), port).await?;
    let (mut rd, mut wr) = stream.into_split();
    let mut client = ClientConnection::new(config, now(), seed);
    let mut playing = false;
    let mut buf = vec![0u8; 64 << 10];
    let mut last_frame = std::time::Instant::now();
    loop {
        if playing && last_frame.elapsed() >= rtsp::MEDIA_TIMEOUT {
            return Err(format!("no media for {:?}", rtsp::MEDIA_TIMEOUT));
        }
        while let Some(b) = client.poll_transmit() {
            wr.write_all(&b).await.map_err(|e| format!("write: {e}"))?;
        }
        while let Some(ev) = client.poll_event() {
            match ev {
                ClientEvent::Playing if !playing => {
                    publish(engine, spec, held)?;
                    playing = true;
                    last_frame = std::time::Instant::now();
                    *played = true;
                }
                ClientEvent::Frame(f) => {
                    last_frame = std::time::Instant::now();
                    if playing {
                        held.send(f);
                    }
                }
                ClientEvent::StreamEof => return Ok(()),
                ClientEvent::Closed(reason) => return Err(format!("{reason:?}")),
                _ => {}
            }
        }
        if client.is_closed() {
            return Err("closed".to_owned());
        }
        // Wake at least every second to check the media timeout.
        let tick = tokio::time::Instant::now() + Duration::from_secs(1);
        let deadline = client
            .poll_timeout()
            .map(|t| tokio::time::Instant::from_std(clock.to_std(t)).min(tick))
            .or(Some(tick));
        tokio::select! {
            r = rd.read(&mut buf) => {
                let n = r.map_err(|e| format!("read: {e}"))?;
                client.handle_input(now(), buf.get(..n).unwrap_or_default());
                if n == 0 {
                    return Err("source closed the connection".to_owned());
                }
            }
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => client.handle_timeout(now()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use arcly::{Codec, Frame, FrameFlags};

    fn f(codec: Codec, ms: i64, timebase: u32) -> Frame {
        let t = ms * i64::from(timebase) / 1000;
        Frame {
            codec,
            flags: FrameFlags::NONE,
            pts: t,
            dts: t,
            timebase,
            payload: Default::default(),
        }
    }

    #[test]
    fn retimer_continues_the_timeline_after_a_reconnect() {
        let mut r = Retimer::default();
        r.reconnected();
        let mut a = f(Codec::H264, 5_000, 90_000);
        r.apply(&mut a);
        assert_eq!(a.dts, 450_000, "the first connection is not shifted");
        let mut b = f(Codec::Aac, 5_020, 48_000);
        r.apply(&mut b);
        assert_eq!(b.dts, 240_960);
        // The new source starts its clock at 0: its first frame lands
        // 100 ms after the last one sent, every track shifted alike.
        r.reconnected();
        let mut c = f(Codec::H264, 0, 90_000);
        r.apply(&mut c);
        assert_eq!(c.dts, (5_120 * 90), "{c:?}");
        let mut d = f(Codec::Aac, 40, 48_000);
        r.apply(&mut d);
        assert_eq!(d.dts, 5_160 * 48);
    }

    #[test]
    fn specs_and_redaction() {
        let p = parse("live/cam=rtsp://u:p@h:554/x").unwrap();
        assert_eq!(p.key.to_string(), "live/cam");
        assert!(parse("live/cam=http://h/x").is_err());
        assert!(parse("cam=rtsp://h/x").is_err());
        assert!(parse("live/cam").is_err());
        assert_eq!(redacted("rtsp://u:secret@h:554/x"), "rtsp://u:***@h:554/x");
        assert_eq!(redacted("rtmp://h/live/a"), "rtmp://h/live/a");
    }
}
