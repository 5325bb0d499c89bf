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
//! the source drops, the stream ends (viewers see its end, as when a
//! publisher leaves) and the task reconnects after 1 s, 2 s, 4 s … up to
//! [`MAX_BACKOFF`]; a connection that played for [`STABLE_AFTER`] resets
//! the back-off. Every failure and retry is logged (URL without password).

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

async fn run(engine: Engine, spec: PullSpec, mut stop: watch::Receiver<bool>) {
    let url = redacted(&spec.url);
    let mut backoff = MIN_BACKOFF;
    let mut attempt: u64 = 0;
    loop {
        attempt += 1;
        let started = std::time::Instant::now();
        let mut played = false;
        let r = tokio::select! {
            r = connect_once(&engine, &spec, attempt, &mut played) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
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
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect_once(
    engine: &Engine,
    spec: &PullSpec,
    attempt: u64,
    played: &mut bool,
) -> PullResult {
    let seed = seed(attempt);
    if spec.url.starts_with("rtsp://") {
        pull_rtsp(engine, spec, seed, played).await
    } else {
        pull_rtmp(engine, spec, seed, played).await
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

fn publish(engine: &Engine, spec: &PullSpec) -> Result<arcly::engine::Publisher, String> {
    let p = engine
        .publish(spec.key.clone())
        .map_err(|e| format!("cannot publish: {e}"))?;
    tracing::info!(stream = %spec.key, url = %redacted(&spec.url), "pull: source playing, stream published");
    Ok(p)
}

async fn pull_rtsp(engine: &Engine, spec: &PullSpec, seed: u64, played: &mut bool) -> PullResult {
    let clock = Clock::new(std::time::Instant::now());
    let now = || clock.instant(std::time::Instant::now());
    let mut client = RtspClient::new(&spec.url, now(), seed).map_err(|e| e.to_string())?;
    let (host, port) = (client.url().host.clone(), client.url().port);
    let stream = connect(&host, port).await?;
    let (mut rd, mut wr) = stream.into_split();
    let mut publisher = None;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        while let Some(b) = client.poll_transmit() {
            wr.write_all(&b).await.map_err(|e| format!("write: {e}"))?;
        }
        while let Some(ev) = client.poll_event() {
            match ev {
                rtsp::ClientEvent::Playing(codecs) => {
                    tracing::debug!(stream = %spec.key, ?codecs, "pull: rtsp tracks");
                    publisher = Some(publish(engine, spec)?);
                    *played = true;
                }
                rtsp::ClientEvent::Frame(f) => {
                    if let Some(p) = &mut publisher {
                        p.send(f);
                    }
                }
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

async fn pull_rtmp(engine: &Engine, spec: &PullSpec, seed: u64, played: &mut bool) -> PullResult {
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
    let mut publisher = None;
    let mut buf = vec![0u8; 64 << 10];
    let mut last_frame = std::time::Instant::now();
    loop {
        if publisher.is_some() && last_frame.elapsed() >= rtsp::MEDIA_TIMEOUT {
            return Err(format!("no media for {:?}", rtsp::MEDIA_TIMEOUT));
        }
        while let Some(b) = client.poll_transmit() {
            wr.write_all(&b).await.map_err(|e| format!("write: {e}"))?;
        }
        while let Some(ev) = client.poll_event() {
            match ev {
                ClientEvent::Playing if publisher.is_none() => {
                    publisher = Some(publish(engine, spec)?);
                    *played = true;
                }
                ClientEvent::Frame(f) => {
                    last_frame = std::time::Instant::now();
                    if let Some(p) = &mut publisher {
                        p.send(f);
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
