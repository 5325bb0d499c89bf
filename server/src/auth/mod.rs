//! The server's admission policy (docs/auth.md): the `[paths]` rules of the
//! configuration file (static users per path with publish/read rights,
//! address allow lists), JWTs signed with `--jwt-secret`, the HTTP hook
//! (`--auth-hook-url`) and the slow-down of addresses that keep failing.
//!
//! Checks in order, each able to refuse: the address's failure record, the
//! path's allow list, its user and password (or a JWT), then the hook. A
//! request needing slow work (an argon2 hash, the hook, a throttled
//! refusal) is answered [`Decision::Later`] and finished on a tokio task,
//! so a session path never blocks. Refusals are quiet toward the peer (the
//! protocol's refusal with a generic reason) and loud in the log
//! (rate-limited, peer text escaped, secrets never).

pub mod hook;
pub mod jwt;
pub mod password;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arcly::admission::{
    Admission, AdmissionHandle, AdmissionKind, AdmissionRequest, Credentials, Decision,
    PendingAdmission, RejectCode, Rejection,
};
use arcly::log_limit::LogLimiter;
use arcly::peer_text::escaped;

use crate::config::{Config, Settings};
use password::Secret;

/// Addresses tracked by the failure table (oldest dropped beyond).
const MAX_TRACKED_IPS: usize = 4096;
/// Hook answers kept.
const MAX_CACHED: usize = 4096;
/// Requests waiting for slow work at once; more are refused (overloaded).
const MAX_PENDING: usize = 1024;

static REFUSED: LogLimiter = LogLimiter::new(20, Duration::from_secs(10));

/// The policy of the loaded configuration.
pub struct PolicyAdmission {
    config: Arc<Config>,
    fails: Mutex<HashMap<IpAddr, Fails>>,
    cache: Mutex<HashMap<[u8; 32], CachedAnswer>>,
    pending: AtomicUsize,
    next_id: AtomicU64,
    start: Instant,
}

/// A hook answer kept: when, and admitted or why not.
type CachedAnswer = (Instant, Result<(), String>);

#[derive(Debug, Clone, Copy)]
struct Fails {
    count: u32,
    since: Instant,
}

impl std::fmt::Debug for PolicyAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyAdmission")
    }
}

/// The admission every listener of the server uses: the loaded
/// configuration's policy (allow-all before [`crate::config::load`]).
pub fn admission() -> Arc<dyn Admission> {
    match policy() {
        Some(p) => p,
        None => Arc::new(arcly::admission::AllowAll),
    }
}

/// The one policy of the process (its failure table and hook cache are
/// shared by every listener).
fn policy() -> Option<Arc<PolicyAdmission>> {
    static ME: OnceLock<Option<Arc<PolicyAdmission>>> = OnceLock::new();
    ME.get_or_init(|| crate::config::global().map(|c| Arc::new(PolicyAdmission::new(c))))
        .clone()
}

fn action(kind: AdmissionKind) -> &'static str {
    match kind {
        AdmissionKind::Publish => "publish",
        AdmissionKind::Play => "read",
    }
}

/// The work left after the quick checks.
enum Slow {
    /// An argon2 password to verify.
    Password(Secret, String),
    /// The hook to ask.
    Hook,
}

impl PolicyAdmission {
    /// The policy of `config` (its current settings are read per request,
    /// so a reload applies to the next one).
    pub fn new(config: Arc<Config>) -> Self {
        PolicyAdmission {
            config,
            fails: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            pending: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            start: Instant::now(),
        }
    }

    fn log_now(&self) -> arcly::Instant {
        arcly::Instant::from_duration(self.start.elapsed())
    }

    fn throttled(&self, s: &Settings, ip: IpAddr, now: Instant) -> bool {
        let limit = s.auth.auth_fail_limit;
        if limit == 0 {
            return false;
        }
        let window = secs(s.auth.auth_fail_window);
        let fails = lock(&self.fails);
        fails
            .get(&ip)
            .is_some_and(|f| f.count >= limit && now.duration_since(f.since) < window)
    }

    fn note_failure(&self, s: &Settings, ip: IpAddr, now: Instant) {
        let window = secs(s.auth.auth_fail_window);
        let mut fails = lock(&self.fails);
        if fails.len() >= MAX_TRACKED_IPS && !fails.contains_key(&ip) {
            fails.retain(|_, f| now.duration_since(f.since) < window);
            if fails.len() >= MAX_TRACKED_IPS {
                // Still full of fresh entries: drop the oldest.
                if let Some(oldest) = fails.iter().min_by_key(|(_, f)| f.since).map(|(k, _)| *k) {
                    fails.remove(&oldest);
                }
            }
        }
        let f = fails.entry(ip).or_insert(Fails {
            count: 0,
            since: now,
        });
        if now.duration_since(f.since) >= window {
            *f = Fails {
                count: 0,
                since: now,
            };
        }
        f.count = f.count.saturating_add(1);
    }

    fn refuse(&self, req: &AdmissionRequest, code: RejectCode, why: &str) -> Rejection {
        if let Some(suppressed) = REFUSED.check(self.log_now()) {
            tracing::warn!(
                protocol = req.protocol,
                action = action(req.kind),
                path = %escaped(&req.key.to_string()),
                peer = %req.peer,
                user = %escaped(req.credentials.user().unwrap_or("")),
                why = %escaped(why),
                suppressed,
                "auth: request refused"
            );
        }
        // Quiet toward the peer: the code and a generic word.
        Rejection::new(code, code.as_str())
    }

    /// The quick checks: a refusal, or the slow work left (none: allow).
    fn quick(
        &self,
        s: &Settings,
        req: &AdmissionRequest,
    ) -> Result<Vec<Slow>, (RejectCode, String)> {
        let path = req.key.to_string();
        let rule = s.rule_for(&path);
        let publish = req.kind == AdmissionKind::Publish;
        let mut slow = Vec::new();
        if let Some(rule) = rule {
            let ips = if publish {
                &rule.publish_ips
            } else {
                &rule.read_ips
            };
            if !ips.is_empty() && !ips.iter().any(|n| n.contains(req.peer.ip())) {
                return Err((
                    RejectCode::Forbidden,
                    format!(
                        "address not in the {}_ips of `{}`",
                        action(req.kind),
                        rule.pattern_text
                    ),
                ));
            }
            let (user, pass) = if publish {
                (&rule.publish_user, &rule.publish_pass)
            } else {
                (&rule.read_user, &rule.read_pass)
            };
            if let (Some(user), Some(pass)) = (user, pass) {
                match &req.credentials {
                    Credentials::Password {
                        user: u,
                        password: p,
                    } if u == user => {
                        if pass.is_slow() {
                            slow.push(Slow::Password(pass.clone(), p.clone()));
                        } else if !pass.verify(p) {
                            return Err((
                                RejectCode::Unauthorized,
                                format!("wrong password for `{}`", escaped(u)),
                            ));
                        }
                    }
                    Credentials::Digest(d) if d.user() == user => match pass.verify_digest(d) {
                        Some(true) => {}
                        Some(false) => {
                            return Err((RejectCode::Unauthorized, format!("wrong digest for `{}`", escaped(user))))
                        }
                        None => {
                            return Err((RejectCode::Unauthorized, "a Digest answer needs the password in clear in the file (hashed: use Basic)".into()))
                        }
                    },
                    Credentials::Token(t) if s.auth.jwt_secret.is_some() => {
                        self.check_jwt(s, t, req, &path)?;
                    }
                    Credentials::Password { .. } | Credentials::Digest(_) => {
                        return Err((RejectCode::Unauthorized, "unknown user".into()))
                    }
                    _ => return Err((RejectCode::Unauthorized, "no credentials".into())),
                }
            } else if s.auth.jwt_secret.is_some() {
                // No static user: a JWT is required.
                match &req.credentials {
                    Credentials::Token(t) => self.check_jwt(s, t, req, &path)?,
                    _ => return Err((RejectCode::Unauthorized, "no token".into())),
                }
            }
        } else if s.auth.jwt_secret.is_some() {
            match &req.credentials {
                Credentials::Token(t) => self.check_jwt(s, t, req, &path)?,
                _ => return Err((RejectCode::Unauthorized, "no token".into())),
            }
        }
        if s.auth.auth_hook_url.is_some() {
            slow.push(Slow::Hook);
        }
        Ok(slow)
    }

    fn check_jwt(
        &self,
        s: &Settings,
        token: &str,
        req: &AdmissionRequest,
        path: &str,
    ) -> Result<(), (RejectCode, String)> {
        let key = s.auth.jwt_secret.as_deref().unwrap_or_default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        jwt::check(token, key.as_bytes(), now, action(req.kind), path)
            .map_err(|e| (RejectCode::Unauthorized, format!("token refused: {e}")))
    }

    fn hook_body(&self, req: &AdmissionRequest) -> String {
        let (user, password, token) = match &req.credentials {
            Credentials::Password { user, password } => (user.as_str(), password.as_str(), ""),
            Credentials::Token(t) => ("", "", t.as_str()),
            Credentials::Digest(d) => (d.user(), "", ""),
            _ => ("", "", ""),
        };
        serde_json::json!({
            "protocol": req.protocol,
            "action": action(req.kind),
            "path": req.key.to_string(),
            "query": req.query,
            "user": user,
            "password": password,
            "token": token,
            "ip": req.peer.ip().to_string(),
            "id": self.next_id.fetch_add(1, Ordering::Relaxed).to_string(),
        })
        .to_string()
    }

    fn cache_key(req: &AdmissionRequest) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            req.protocol,
            action(req.kind),
            &req.key.to_string(),
            &req.query,
            &req.peer.ip().to_string(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        match &req.credentials {
            Credentials::Password { user, password } => {
                h.update(b"p\0");
                h.update(user.as_bytes());
                h.update([0]);
                h.update(password.as_bytes());
            }
            Credentials::Token(t) => {
                h.update(b"t\0");
                h.update(t.as_bytes());
            }
            Credentials::Digest(d) => {
                h.update(b"d\0");
                h.update(d.user().as_bytes());
            }
            _ => h.update(b"n"),
        }
        h.finalize().into()
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Admission for PolicyAdmission {
    fn admit(&self, req: &AdmissionRequest) -> Decision {
        let s = self.config.current();
        let now = Instant::now();
        let ip = req.peer.ip();
        let runtime = tokio::runtime::Handle::try_current().ok();
        if self.throttled(&s, ip, now) {
            let rejection = self.refuse(
                req,
                RejectCode::Unauthorized,
                "too many failed attempts from this address; refused after a delay",
            );
            let Some(rt) = runtime else {
                return Decision::Deny(rejection);
            };
            let delay = secs(s.auth.auth_fail_delay);
            let (pending, handle) = PendingAdmission::new(delay + Duration::from_secs(5));
            rt.spawn(async move {
                tokio::time::sleep(delay).await;
                handle.deny(rejection);
            });
            return Decision::Later(pending);
        }
        let slow = match self.quick(&s, req) {
            Ok(slow) if slow.is_empty() => return Decision::Allow,
            Ok(slow) => slow,
            Err((code, why)) => {
                self.note_failure(&s, ip, now);
                return Decision::Deny(self.refuse(req, code, &why));
            }
        };
        // Slow work: a cached hook answer first.
        let key = Self::cache_key(req);
        let ttl = secs(s.auth.auth_hook_cache);
        let only_hook = slow.iter().all(|w| matches!(w, Slow::Hook));
        if only_hook && !ttl.is_zero() {
            let cache = lock(&self.cache);
            if let Some((at, answer)) = cache.get(&key) {
                if now.duration_since(*at) < ttl {
                    return match answer {
                        Ok(()) => Decision::Allow,
                        Err(why) => Decision::Deny(self.refuse(req, RejectCode::Unauthorized, why)),
                    };
                }
            }
        }
        let Some(rt) = runtime else {
            return Decision::Deny(self.refuse(
                req,
                RejectCode::Unavailable,
                "no runtime for the slow checks",
            ));
        };
        if self.pending.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Decision::Deny(self.refuse(
                req,
                RejectCode::Overloaded,
                "too many admissions pending",
            ));
        }
        let hook_timeout = secs(s.auth.auth_hook_timeout);
        let (pending, handle) = PendingAdmission::new(hook_timeout + Duration::from_secs(2));
        let body = s.auth.auth_hook_url.is_some().then(|| self.hook_body(req));
        let me = policy();
        let req = req.clone();
        rt.spawn(async move {
            let outcome = finish(&s, slow, body.as_deref(), hook_timeout, &handle).await;
            if let Some(me) = me.as_deref() {
                me.settle(&s, &req, key, ttl, outcome, handle);
            } else {
                match outcome {
                    Ok(()) => handle.allow(),
                    Err((code, why)) => handle.deny(Rejection::new(code, why)),
                }
            }
        });
        Decision::Later(pending)
    }
}

impl PolicyAdmission {
    fn settle(
        &self,
        s: &Settings,
        req: &AdmissionRequest,
        key: [u8; 32],
        ttl: Duration,
        outcome: Result<(), (RejectCode, String)>,
        handle: AdmissionHandle,
    ) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
        let now = Instant::now();
        // Cache definite hook answers (not failures to reach it).
        if !ttl.is_zero() {
            let cached = match &outcome {
                Ok(()) => Some(Ok(())),
                Err((RejectCode::Unauthorized, why)) => Some(Err(why.clone())),
                Err(_) => None,
            };
            if let Some(c) = cached {
                let mut cache = lock(&self.cache);
                if cache.len() >= MAX_CACHED {
                    cache.retain(|_, (at, _)| now.duration_since(*at) < ttl);
                    if cache.len() >= MAX_CACHED {
                        cache.clear();
                    }
                }
                cache.insert(key, (now, c));
            }
        }
        match outcome {
            Ok(()) => handle.allow(),
            Err((code, why)) => {
                if code == RejectCode::Unauthorized {
                    self.note_failure(s, req.peer.ip(), now);
                }
                handle.deny(self.refuse(req, code, &why));
            }
        }
    }
}

/// Runs the slow checks in order.
async fn finish(
    s: &Settings,
    slow: Vec<Slow>,
    body: Option<&str>,
    hook_timeout: Duration,
    handle: &AdmissionHandle,
) -> Result<(), (RejectCode, String)> {
    for work in slow {
        if handle.is_abandoned() {
            return Err((RejectCode::Timeout, "the session stopped waiting".into()));
        }
        match work {
            Slow::Password(secret, given) => {
                let ok = tokio::task::spawn_blocking(move || secret.verify(&given))
                    .await
                    .unwrap_or(false);
                if !ok {
                    return Err((RejectCode::Unauthorized, "wrong password".into()));
                }
            }
            Slow::Hook => {
                let Some(url) = s.auth.auth_hook_url.as_deref() else {
                    continue;
                };
                let url = hook::HookUrl::parse(url).map_err(|e| (RejectCode::Unavailable, e))?;
                match hook::ask(&url, body.unwrap_or("{}"), hook_timeout).await {
                    Ok(hook::HookAnswer::Admit) => {}
                    Ok(hook::HookAnswer::Refuse(code)) => {
                        return Err((
                            RejectCode::Unauthorized,
                            format!("the auth hook answered {code}"),
                        ))
                    }
                    Err(why) => {
                        return Err((RejectCode::Unavailable, format!("auth hook failed: {why}")))
                    }
                }
            }
        }
    }
    Ok(())
}
