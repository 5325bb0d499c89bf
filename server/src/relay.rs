//! Pull on demand (`--pull-on-demand 'PATTERN=URL'`): a stream whose key
//! matches PATTERN is pulled from URL (with `{app}` and `{name}`
//! substituted) when its first viewer arrives, on any protocol that asks
//! the admission (RTMP, RTSP, SRT), and closed when its last viewer left
//! [`OnDemandOptions::grace`] ago.
//!
//! How it works: [`OnDemand`] wraps the server's [`Admission`]. A play
//! request for a matching key that is not live yet is answered
//! [`Decision::Later`] (deferred admission, `arcly::admission`): the viewer
//! waits while one task per key connects to the source with the machines
//! of [`crate::pull`] (`rtmp://`, `rtsp://`). Once the stream is published
//! every waiting viewer is admitted; a source that cannot be reached keeps
//! being retried until each viewer's [`OnDemandOptions::wait`] passed, then
//! that viewer is refused ([`RejectCode::NotFound`]) with the reason of the
//! last attempt (`source rtmp://origin/live/a unreachable: connect:
//! Connection refused`). The inner admission (auth policy) decides first:
//! an unauthorised viewer never makes the server connect anywhere.
//!
//! When the source drops while the stream plays, the stream ends (its
//! viewers see the end, as when a publisher leaves, and their connections
//! close); the next viewer starts a new pull.
//!
//! Bounds: at most [`OnDemandOptions::max_sources`] keys pulled (or being
//! connected) at once, at most [`MAX_WAITERS_PER_KEY`] waiting viewers per
//! key and [`MAX_WAITERS_PER_IP`] per viewer address; more are refused
//! with [`RejectCode::Overloaded`].
//!
//! The config file (`[paths."cam/*"] source = "rtmp://…"`,
//! `source_on_demand = true`) feeds the same thing: build an
//! [`OnDemandSource`] with [`OnDemandSource::new`] from the path pattern
//! and the URL, then [`OnDemand::new`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arcly::admission::{
    Admission, AdmissionHandle, AdmissionKind, AdmissionRequest, Decision, PendingAdmission,
    RejectCode, Rejection,
};
use arcly::log_limit::LogLimiter;
use arcly::peer_text::escaped;
use arcly::{Engine, StreamKey};

use crate::pull;

/// Most waiting viewers of one key.
pub const MAX_WAITERS_PER_KEY: usize = 1024;
/// Most waiting viewers from one address (over every key).
pub const MAX_WAITERS_PER_IP: usize = 32;
/// Default of [`OnDemandOptions::grace`].
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Default of [`OnDemandOptions::wait`].
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// Default of [`OnDemandOptions::max_sources`].
pub const DEFAULT_MAX_SOURCES: usize = 256;
/// Pause between two failed attempts while viewers wait.
const RETRY: Duration = Duration::from_millis(500);
/// How often the supervisor looks at viewers and deadlines.
const TICK: Duration = Duration::from_millis(100);

static REFUSED: LogLimiter = LogLimiter::new(10, Duration::from_secs(10));

/// `--pull-on-demand` and its timings (flattened into the server's CLI).
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// Pull streams whose key (app/name) matches PATTERN from URL when the
    /// first viewer asks (RTMP, RTSP, SRT), e.g.
    /// `cam/*=rtmp://origin:1935/live/{name}`; `*` matches within one
    /// segment, `{app}` and `{name}` are substituted; rtmp:// or rtsp://;
    /// repeatable, the first match wins.
    #[arg(long = "pull-on-demand", value_name = "PATTERN=URL", value_parser = OnDemandSource::parse)]
    pub pull_on_demand: Vec<OnDemandSource>,

    /// Seconds an on-demand pull stays connected after its last viewer left.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_GRACE.as_secs_f64())]
    pub pull_on_demand_grace: f64,

    /// Seconds a viewer waits for an on-demand source to play before it is
    /// refused.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_WAIT.as_secs_f64())]
    pub pull_on_demand_wait: f64,
}

/// One on-demand source: keys matching a pattern, pulled from a URL template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDemandSource {
    /// Glob on `app/name`: `*` any run of characters but `/`, `?` one.
    pub pattern: String,
    /// `rtmp://…` or `rtsp://…` with `{app}` and `{name}` placeholders.
    pub url: String,
}

impl OnDemandSource {
    /// A source from a config path pattern and its `source` URL; checks
    /// that the URL (with sample substitutions) is one the pull can play.
    pub fn new(pattern: &str, url: &str) -> Result<Self, String> {
        let pattern = pattern.trim_matches('/');
        if pattern.is_empty() || pattern.starts_with('~') {
            return Err(format!(
                "`{pattern}`: expected a glob on app/name (e.g. cam/*)"
            ));
        }
        let sample = substitute(url, "app", "name");
        pull::parse(&format!("app/name={sample}"))?;
        Ok(OnDemandSource {
            pattern: pattern.to_owned(),
            url: url.to_owned(),
        })
    }

    /// Parses `PATTERN=URL` (clap value parser).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (pattern, url) = s.split_once('=').ok_or_else(|| {
            format!("`{s}`: expected PATTERN=URL, e.g. cam/*=rtmp://origin:1935/live/{{name}}")
        })?;
        Self::new(pattern, url)
    }

    /// Whether `key` matches the pattern.
    pub fn matches(&self, key: &StreamKey) -> bool {
        glob(self.pattern.as_bytes(), format!("{key}").as_bytes())
    }

    /// The URL for `key`.
    pub fn url_for(&self, key: &StreamKey) -> String {
        substitute(&self.url, key.app(), key.name())
    }
}

fn substitute(url: &str, app: &str, name: &str) -> String {
    url.replace("{app}", app).replace("{name}", name)
}

/// `*` matches any run of bytes but `/`; `?` one byte but `/`.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => {
            let mut i = 0;
            loop {
                if glob(rest, s.get(i..).unwrap_or_default()) {
                    return true;
                }
                match s.get(i) {
                    Some(b'/') | None => return false,
                    Some(_) => i += 1,
                }
            }
        }
        Some((b'?', rest)) => match s.split_first() {
            Some((c, srest)) if *c != b'/' => glob(rest, srest),
            _ => false,
        },
        Some((c, rest)) => match s.split_first() {
            Some((d, srest)) if c == d => glob(rest, srest),
            _ => false,
        },
    }
}

/// Timings and bounds of [`OnDemand`].
#[derive(Debug, Clone, Copy)]
pub struct OnDemandOptions {
    /// How long a pull stays after its last viewer left.
    pub grace: Duration,
    /// How long a viewer waits for the source before it is refused.
    pub wait: Duration,
    /// Most keys pulled or being connected at once.
    pub max_sources: usize,
}

impl Default for OnDemandOptions {
    fn default() -> Self {
        OnDemandOptions {
            grace: DEFAULT_GRACE,
            wait: DEFAULT_WAIT,
            max_sources: DEFAULT_MAX_SOURCES,
        }
    }
}

/// A viewer waiting for its source.
struct Waiter {
    handle: AdmissionHandle,
    ip: IpAddr,
    deadline: tokio::time::Instant,
}

/// One key being pulled (or connected).
#[derive(Default)]
struct Entry {
    waiters: Vec<Waiter>,
}

/// The pulls in progress, by key.
#[derive(Default)]
struct State {
    entries: HashMap<StreamKey, Entry>,
}

impl State {
    fn waiters_from(&self, ip: IpAddr) -> usize {
        self.entries
            .values()
            .flat_map(|e| e.waiters.iter())
            .filter(|w| w.ip == ip)
            .count()
    }
}

/// Pull on demand: an [`Admission`] wrapping another (see the module docs).
///
/// Invariant: a key has an entry in the state exactly while its pull task
/// runs; a waiter is in its key's entry until it is admitted (the stream is
/// live), refused (its deadline passed) or abandoned.
pub struct OnDemand {
    inner: Arc<dyn Admission>,
    shared: Arc<Shared>,
}

struct Shared {
    engine: Engine,
    sources: Vec<OnDemandSource>,
    options: OnDemandOptions,
    runtime: tokio::runtime::Handle,
    state: Mutex<State>,
}

impl std::fmt::Debug for OnDemand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDemand")
            .field("sources", &self.shared.sources)
            .finish_non_exhaustive()
    }
}

impl OnDemand {
    /// Pulls `sources` on demand into `engine`, after `inner` admitted the
    /// viewer; tasks run on `runtime` (and end with it).
    pub fn new(
        engine: Engine,
        sources: Vec<OnDemandSource>,
        options: OnDemandOptions,
        inner: Arc<dyn Admission>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        OnDemand {
            inner,
            shared: Arc::new(Shared {
                engine,
                sources,
                options,
                runtime,
                state: Mutex::new(State::default()),
            }),
        }
    }
}

impl Admission for OnDemand {
    fn admit(&self, req: &AdmissionRequest) -> Decision {
        let inner = self.inner.admit(req);
        if req.kind != AdmissionKind::Play {
            return inner;
        }
        let Some(source) = self.shared.sources.iter().find(|s| s.matches(&req.key)) else {
            return inner;
        };
        let spec = pull::PullSpec {
            key: req.key.clone(),
            url: source.url_for(&req.key),
        };
        match inner {
            Decision::Allow => self.shared.clone().demand(spec, req.peer.ip(), None),
            Decision::Later(pending) => {
                // The inner decision first; then the source, within the
                // viewer's total wait.
                let total = pending.timeout() + self.shared.options.wait;
                let (outer, handle) = PendingAdmission::new(total + TICK * 5);
                let shared = self.shared.clone();
                let peer = req.peer.ip();
                self.shared.runtime.spawn(async move {
                    let clock = arcly::time::Clock::new(std::time::Instant::now());
                    let now = || clock.instant(std::time::Instant::now());
                    let wait = pending.start(now(), arcly::admission::MAX_ADMISSION_WAIT);
                    let decided = loop {
                        if let Some(d) = wait.poll(now()) {
                            break d;
                        }
                        if handle.is_abandoned() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    };
                    match decided {
                        Ok(()) => {
                            let _ = shared.demand(spec, peer, Some(handle));
                        }
                        Err(rejection) => handle.deny(rejection),
                    }
                });
                Decision::Later(outer)
            }
            other => other,
        }
    }
}

impl Shared {
    /// The viewer was admitted by the policy: allow it if the stream is
    /// live, else make it wait for the pull (started if needed). With
    /// `handle` the decision goes there (and the returned one is unused).
    fn demand(
        self: Arc<Self>,
        spec: pull::PullSpec,
        ip: IpAddr,
        handle: Option<AdmissionHandle>,
    ) -> Decision {
        let mut state = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if self.engine.stream_stats(&spec.key).is_some() {
            drop(state);
            return match handle {
                Some(h) => {
                    h.allow();
                    Decision::Allow
                }
                None => Decision::Allow,
            };
        }
        let refuse = |why: String| {
            let rejection = Rejection::new(RejectCode::Overloaded, why);
            if let Some(suppressed) = REFUSED.check(arcly_now()) {
                tracing::warn!(stream = %spec.key, peer = %ip, suppressed, reason = %rejection, "pull on demand: viewer refused");
            }
            rejection
        };
        let new = !state.entries.contains_key(&spec.key);
        let refusal = if new && state.entries.len() >= self.options.max_sources {
            Some(refuse(format!(
                "too many on-demand sources ({})",
                self.options.max_sources
            )))
        } else if state
            .entries
            .get(&spec.key)
            .is_some_and(|e| e.waiters.len() >= MAX_WAITERS_PER_KEY)
        {
            Some(refuse(
                "too many viewers waiting for this source".to_owned(),
            ))
        } else if state.waiters_from(ip) >= MAX_WAITERS_PER_IP {
            Some(refuse(
                "too many waiting viewers from this address".to_owned(),
            ))
        } else {
            None
        };
        if let Some(rejection) = refusal {
            return match handle {
                Some(h) => {
                    h.deny(rejection.clone());
                    Decision::Deny(rejection)
                }
                None => Decision::Deny(rejection),
            };
        }
        let (decision, handle) = match handle {
            Some(h) => (Decision::Allow, h),
            None => {
                let (pending, h) = PendingAdmission::new(self.options.wait + TICK * 5);
                (Decision::Later(pending), h)
            }
        };
        let entry = state.entries.entry(spec.key.clone()).or_default();
        entry.waiters.push(Waiter {
            handle,
            ip,
            deadline: tokio::time::Instant::now() + self.options.wait,
        });
        drop(state);
        if new {
            tracing::info!(stream = %spec.key, url = %pull::redacted(&spec.url), "pull on demand: first viewer, connecting to the source");
            let me = self.clone();
            self.runtime.spawn(async move { me.run(spec).await });
        }
        decision
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Admits every waiter of `key` (the stream is live).
    fn admit_waiters(&self, key: &StreamKey) {
        let waiters = self
            .lock()
            .entries
            .get_mut(key)
            .map(|e| std::mem::take(&mut e.waiters))
            .unwrap_or_default();
        for w in waiters {
            w.handle.allow();
        }
    }

    /// Refuses the waiters of `key` whose deadline passed (all of them with
    /// `all`); returns how many still wait.
    fn expire_waiters(&self, key: &StreamKey, why: &str, all: bool) -> usize {
        let now = tokio::time::Instant::now();
        let (gone, left) = {
            let mut state = self.lock();
            let Some(e) = state.entries.get_mut(key) else {
                return 0;
            };
            e.waiters.retain(|w| !w.handle.is_abandoned());
            let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut e.waiters)
                .into_iter()
                .partition(|w| all || now >= w.deadline);
            e.waiters = keep;
            (gone, e.waiters.len())
        };
        for w in gone {
            if let Some(suppressed) = REFUSED.check(arcly_now()) {
                tracing::warn!(stream = %key, peer = %w.ip, suppressed, reason = %escaped(why), "pull on demand: viewer refused");
            }
            w.handle
                .deny(Rejection::new(RejectCode::NotFound, why.to_owned()));
        }
        left
    }

    /// One key's pull: connect (retrying while viewers wait), admit the
    /// waiters once live, close after the grace time without viewers.
    async fn run(self: Arc<Self>, spec: pull::PullSpec) {
        let url = pull::redacted(&spec.url);
        let mut attempt = 0u64;
        let mut last_error = String::new();
        loop {
            attempt += 1;
            let mut played = false;
            let mut held = pull::Held::default();
            let outcome = tokio::select! {
                r = pull::connect_once(&self.engine, &spec, attempt, &mut played, &mut held) => Some(r),
                () = self.supervise(&spec.key, &last_error) => None,
            };
            drop(held);
            match outcome {
                None => break,
                Some(r) => {
                    let why = match r {
                        Ok(()) => "source ended the stream".to_owned(),
                        Err(e) => e,
                    };
                    if played {
                        tracing::warn!(stream = %spec.key, url = %url, reason = %escaped(&why), "pull on demand: source lost; stream ended");
                        break;
                    }
                    last_error = format!("source {url} unreachable: {why}");
                    tracing::warn!(stream = %spec.key, url = %url, attempt, reason = %escaped(&why), "pull on demand: source not playing");
                }
            }
            // Retry while someone waits.
            let until = tokio::time::Instant::now() + RETRY;
            while tokio::time::Instant::now() < until {
                if self.expire_waiters(&spec.key, &last_error, false) == 0 {
                    self.finish(&spec.key, &last_error);
                    return;
                }
                tokio::time::sleep(TICK).await;
            }
        }
        self.finish(&spec.key, &last_error);
    }

    /// Removes the key's entry, refusing anyone still waiting.
    fn finish(&self, key: &StreamKey, why: &str) {
        let why = if why.is_empty() { "source closed" } else { why };
        let waiters = self
            .lock()
            .entries
            .remove(key)
            .map(|e| e.waiters)
            .unwrap_or_default();
        for w in waiters {
            w.handle
                .deny(Rejection::new(RejectCode::NotFound, why.to_owned()));
        }
        tracing::info!(stream = %key, "pull on demand: closed");
    }

    /// Runs beside the connection: admits waiters once the stream is live,
    /// refuses those whose wait passed, and returns when the stream had no
    /// viewer for the grace time (or nobody waits for a source not live).
    async fn supervise(&self, key: &StreamKey, last_error: &str) {
        let mut idle_since: Option<tokio::time::Instant> = None;
        loop {
            match self.engine.stream_stats(key) {
                Some(stats) => {
                    self.admit_waiters(key);
                    let viewers = stats.subscribers.load(std::sync::atomic::Ordering::Relaxed);
                    if viewers == 0 {
                        let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
                        if since.elapsed() >= self.options.grace {
                            tracing::info!(stream = %key, grace_s = self.options.grace.as_secs_f64(), "pull on demand: no viewer for the grace time");
                            return;
                        }
                    } else {
                        idle_since = None;
                    }
                }
                None => {
                    let why = if last_error.is_empty() {
                        "the source did not play in time"
                    } else {
                        last_error
                    };
                    if self.expire_waiters(key, why, false) == 0 {
                        return;
                    }
                }
            }
            tokio::time::sleep(TICK).await;
        }
    }
}

/// A clock reading for the log limiter (monotonic since first use).
fn arcly_now() -> arcly::Instant {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    arcly::Instant::from_duration(start.elapsed())
}

/// The installed on-demand wrapper (see [`install`]).
static INSTALLED: OnceLock<(Vec<OnDemandSource>, OnDemandOptions, Engine)> = OnceLock::new();

/// Installs `--pull-on-demand` for this process (call once, inside the
/// runtime, before the listeners' factories are built).
pub fn install(args: &RelayArgs, engine: &Engine) {
    let mut sources = args.pull_on_demand.clone();
    sources.extend(from_config());
    if sources.is_empty() {
        return;
    }
    let secs = |s: f64, d: Duration| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(d);
    let options = OnDemandOptions {
        grace: secs(args.pull_on_demand_grace, DEFAULT_GRACE),
        wait: secs(args.pull_on_demand_wait, DEFAULT_WAIT),
        max_sources: DEFAULT_MAX_SOURCES,
    };
    for s in &sources {
        println!(
            "  pulling {} on demand from {}",
            s.pattern,
            pull::redacted(&s.url)
        );
    }
    let _ = INSTALLED.set((sources, options, engine.clone()));
}

/// The config file's `[paths."…"]` sections with `source` and
/// `source_on_demand = true` (read at start; a reload does not change
/// them). Regex sections and sources the pull cannot play (`srt://`) are
/// skipped with a warning.
fn from_config() -> Vec<OnDemandSource> {
    let Some(config) = crate::config::global() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for rule in &config.current().paths {
        let Some(url) = rule.source.as_deref().filter(|_| rule.source_on_demand) else {
            continue;
        };
        if let crate::config::Pattern::Regex(_) = rule.pattern {
            tracing::warn!(path = %rule.pattern_text, line = rule.line, "source_on_demand: regex paths are not pulled on demand (use a glob)");
            continue;
        }
        match OnDemandSource::new(&rule.pattern_text, url) {
            Ok(s) => out.push(s),
            Err(e) => {
                tracing::warn!(path = %rule.pattern_text, line = rule.line, reason = %e, "source_on_demand: not pulled");
            }
        }
    }
    out
}

/// `inner` wrapped with pull on demand if [`install`]ed, else `inner`.
pub fn admission(inner: Arc<dyn Admission>) -> Arc<dyn Admission> {
    match (INSTALLED.get(), tokio::runtime::Handle::try_current()) {
        (Some((sources, options, engine)), Ok(rt)) => Arc::new(OnDemand::new(
            engine.clone(),
            sources.clone(),
            *options,
            inner,
            rt,
        )),
        _ => inner,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn patterns_and_urls() {
        let s = OnDemandSource::parse("cam/*=rtmp://origin:1935/live/{name}").unwrap();
        let k = StreamKey::new("cam", "door").unwrap();
        assert!(s.matches(&k));
        assert_eq!(s.url_for(&k), "rtmp://origin:1935/live/door");
        assert!(!s.matches(&StreamKey::new("live", "door").unwrap()));
        let s = OnDemandSource::parse("*/x?=rtsp://o/{app}/{name}").unwrap();
        assert!(s.matches(&StreamKey::new("a", "x1").unwrap()));
        assert!(!s.matches(&StreamKey::new("a", "x12").unwrap()));
        assert_eq!(
            s.url_for(&StreamKey::new("a", "x1").unwrap()),
            "rtsp://o/a/x1"
        );
        assert!(OnDemandSource::parse("cam/*").is_err());
        assert!(OnDemandSource::parse("cam/*=http://o/{name}").is_err());
        assert!(OnDemandSource::parse("~re=rtmp://o/a/b").is_err());
    }
}
