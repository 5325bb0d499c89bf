//! `arcly --config arcly.toml`: the configuration file (docs/config.md).
//!
//! Every command-line flag is also a top-level key of the file, spelled
//! with `_` or `-` (`max_connections = 500` is `--max-connections 500`).
//! The mapping is derived from the clap command itself, so a flag added to
//! the server is a key at once; a flag given on the command line overrides
//! the file. `[paths."<pattern>"]` sections add per-stream settings
//! ([`PathRule`]): who may publish and read, address allow lists, relay
//! settings. Unknown keys, bad values and conflicting paths are refused
//! with the file, the line and a sentence ([`ConfigError`]).
//!
//! `--print-config` prints the effective configuration (defaults included)
//! as TOML. SIGHUP (or [`reload`], e.g. from `POST /v1/config/reload`)
//! reads the file again: new paths and auth settings apply to sessions
//! admitted afterwards, running sessions stay; a bad file is refused with
//! its error and the old configuration stays.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock, RwLock};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use toml_edit::{Item, Value};

use crate::auth::password::Secret;

/// The flags of the configuration and authentication machinery, flattened
/// into the server's command line (each is also a key of the file).
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration file: every flag is also a key (`max_connections
    /// = 500`), plus `[paths."PATTERN"]` sections (docs/config.md). Flags
    /// given on the command line override the file. SIGHUP reloads it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration (file, flags and defaults) as TOML
    /// and exit.
    #[arg(long)]
    pub print_config: bool,

    /// HTTP auth hook: every publish and play that passed the file's rules
    /// is POSTed as JSON {protocol, action, path, query, user, password,
    /// ip, id} to this `http://` URL; a 2xx answer admits, anything else, a
    /// failure or a timeout refuses (docs/auth.md).
    #[arg(long, value_name = "URL")]
    pub auth_hook_url: Option<String>,

    /// Seconds the auth hook has to answer before the request is refused.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub auth_hook_timeout: f64,

    /// Seconds an auth hook answer is reused for the same request (protocol,
    /// action, path, credentials, address); 0: ask every time.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub auth_hook_cache: f64,

    /// HS256 key of JSON Web Tokens (RFC 7519) presented as a token
    /// (`?token=`, SRT `s=`, `Authorization: Bearer`): a valid token whose
    /// `arcly` claim names the path and action admits (docs/auth.md).
    #[arg(long, value_name = "KEY")]
    pub jwt_secret: Option<String>,

    /// Failed authentications from one address within --auth-fail-window
    /// after which further attempts are refused after a delay.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub auth_fail_limit: u32,

    /// Seconds over which --auth-fail-limit failures are counted.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub auth_fail_window: f64,

    /// Seconds a refusal of a throttled address is held back.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub auth_fail_delay: f64,
}

/// A configuration the server cannot start (or reload) with: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ConfigError {
    /// The file, as given.
    pub file: String,
    /// 1-based line of the offending key or value (0: the whole file).
    pub line: usize,
    /// What is wrong, in a sentence.
    pub message: String,
}

/// What a request is allowed by an address allow list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `1.2.3.4`, `10.0.0.0/8`, `::1` or `fd00::/8`.
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` is inside the block (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// How a `[paths."…"]` section names its streams.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// `live/cam`: that stream only.
    Exact(String),
    /// `live/*`: `*` is any run of characters but `/`, `?` one character.
    Glob(String),
    /// `~^cam[0-9]+$`: a regular expression on `app/stream`.
    Regex(regex::Regex),
}

impl Pattern {
    /// Parses a section name (`live/cam`, `live/*`, `~REGEX`).
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if let Some(re) = text.strip_prefix('~') {
            return regex::Regex::new(re)
                .map(Pattern::Regex)
                .map_err(|e| format!("path `{text}`: bad regular expression: {e}"));
        }
        let parts: Vec<&str> = text.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "path `{text}`: a path is APP/STREAM (`live/cam`, `live/*`) or `~REGEX`"
            ));
        }
        if text.contains(['*', '?']) {
            Ok(Pattern::Glob(text.to_owned()))
        } else {
            Ok(Pattern::Exact(text.to_owned()))
        }
    }

    /// Whether `key` (`app/stream`) is named by this pattern.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Pattern::Exact(e) => e == key,
            Pattern::Glob(g) => glob_match(g.as_bytes(), key.as_bytes()),
            Pattern::Regex(r) => r.is_match(key),
        }
    }
}

/// `*` matches any run of bytes except `/`; `?` one byte except `/`.
fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    match pat.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => {
            let mut i = 0;
            loop {
                if glob_match(rest, s.get(i..).unwrap_or_default()) {
                    return true;
                }
                match s.get(i) {
                    Some(b'/') | None => return false,
                    Some(_) => i += 1,
                }
            }
        }
        Some((b'?', rest)) => match s.split_first() {
            Some((c, tail)) if *c != b'/' => glob_match(rest, tail),
            _ => false,
        },
        Some((c, rest)) => match s.split_first() {
            Some((d, tail)) if d == c => glob_match(rest, tail),
            _ => false,
        },
    }
}

/// One `[paths."<pattern>"]` section.
#[derive(Debug, Clone)]
pub struct PathRule {
    /// The pattern as written.
    pub pattern_text: String,
    /// The pattern.
    pub pattern: Pattern,
    /// Line of the section header.
    pub line: usize,
    /// User who may publish (with `publish_pass`); none: anyone.
    pub publish_user: Option<String>,
    /// Its password (plain, `sha256:<hex>` or an argon2 PHC string).
    pub publish_pass: Option<Secret>,
    /// User who may read (play) (with `read_pass`); none: anyone.
    pub read_user: Option<String>,
    /// Its password.
    pub read_pass: Option<Secret>,
    /// Addresses that may publish (empty: any).
    pub publish_ips: Vec<IpNet>,
    /// Addresses that may read (empty: any).
    pub read_ips: Vec<IpNet>,
    /// Keep a GOP for instant start (parsed and exposed; the engine's cache
    /// is per app today, see docs/config.md).
    pub gop_cache: Option<bool>,
    /// Serve HLS for these streams (parsed and exposed; see docs/config.md).
    pub hls: Option<bool>,
    /// Record these streams (parsed and exposed; see docs/config.md).
    pub record: Option<bool>,
    /// Pull source URL (`rtmp://`, `srt://`, `rtsp://`), `{app}`/`{name}`
    /// substituted (for the relay).
    pub source: Option<String>,
    /// Connect the source when the first viewer arrives.
    pub source_on_demand: bool,
    /// Push targets (`rtmp://`, `rtmps://`, `srt://`), `{app}`/`{name}`
    /// substituted (for the relay).
    pub push: Vec<String>,
}

impl PathRule {
    /// `url` with `{app}` and `{name}` replaced by the stream key's parts
    /// (for the relay's `source` and `push`, which consume it).
    #[allow(dead_code)]
    pub fn substitute(url: &str, key: &arcly::StreamKey) -> String {
        url.replace("{app}", key.app())
            .replace("{name}", key.name())
    }
}

/// The effective per-path and auth settings (what a reload replaces).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `[paths]` sections in file order.
    pub paths: Vec<PathRule>,
    /// The auth flags (from the file and the command line).
    pub auth: ConfigArgs,
}

impl Settings {
    /// The section that applies to `key`: an exact name first, else the
    /// first glob in file order, else the first regex in file order.
    pub fn rule_for(&self, key: &str) -> Option<&PathRule> {
        let of = |want: fn(&Pattern) -> bool| {
            self.paths
                .iter()
                .filter(move |r| want(&r.pattern))
                .find(|r| r.pattern.matches(key))
        };
        of(|p| matches!(p, Pattern::Exact(_)))
            .or_else(|| of(|p| matches!(p, Pattern::Glob(_))))
            .or_else(|| of(|p| matches!(p, Pattern::Regex(_))))
    }
}

/// The loaded configuration: how to load it again and what is in force.
#[derive(Debug)]
pub struct Config {
    argv: Vec<OsString>,
    file: Option<PathBuf>,
    current: RwLock<Arc<Settings>>,
}

impl Config {
    /// The settings in force (cheap: one read lock and an `Arc` clone).
    pub fn current(&self) -> Arc<Settings> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Reads the file again; on success its paths and auth settings replace
    /// the current ones (for sessions admitted from now on), else the error
    /// is returned and nothing changes. Listener addresses and other flags
    /// take effect at the next start.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let (_, settings) = merge(self.argv.clone())?;
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Arc::new(settings);
        Ok(())
    }

    /// The configuration file, if one was given.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

static GLOBAL: OnceLock<Arc<Config>> = OnceLock::new();

/// The configuration loaded by [`load`] (none before).
pub fn global() -> Option<Arc<Config>> {
    GLOBAL.get().cloned()
}

/// Reloads the configuration file (what SIGHUP does; for
/// `POST /v1/config/reload`). Logs the outcome.
pub fn reload() -> Result<(), ConfigError> {
    let Some(c) = global() else {
        return Ok(());
    };
    match c.reload() {
        Ok(()) => {
            let n = c.current().paths.len();
            let file = c
                .file()
                .map(|f| f.display().to_string())
                .unwrap_or_default();
            tracing::info!(paths = n, %file, "configuration reloaded");
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "configuration reload refused; the old configuration stays");
            Err(e)
        }
    }
}

/// Reloads on every SIGHUP until the process ends (a no-op off unix).
pub fn spawn_reload_on_sighup() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!("SIGHUP: reloading the configuration");
                        let _ = reload();
                    }
                });
            }
            Err(e) => tracing::warn!("cannot install the SIGHUP handler: {e}"),
        }
    }
}

/// Parses the command line and the configuration file it names into `C`;
/// handles `--print-config` (prints, then `Err(SUCCESS)`) and reports
/// errors (`Err(FAILURE)` after printing `file:line: reason`). The loaded
/// configuration is kept for [`global`], [`reload`] and the admission.
pub fn load<C: CommandFactory + FromArgMatches>() -> Result<C, ExitCode> {
    load_from(std::env::args_os().collect())
}

fn load_from<C: CommandFactory + FromArgMatches>(argv: Vec<OsString>) -> Result<C, ExitCode> {
    let (matches, settings) = match merge_with::<C>(argv.clone()) {
        Ok(m) => m,
        Err(Failure::Clap(e)) => e.exit(),
        Err(Failure::Config(e)) => {
            eprintln!("arcly: configuration error: {e}");
            return Err(ExitCode::FAILURE);
        }
    };
    let cli = match C::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if matches.get_flag("print_config") {
        print!("{}", render::<C>(&matches, &settings));
        return Err(ExitCode::SUCCESS);
    }
    let file = matches.get_one::<PathBuf>("config").cloned();
    let config = Arc::new(Config {
        argv,
        file,
        current: RwLock::new(Arc::new(settings)),
    });
    let _ = GLOBAL.set(config);
    Ok(cli)
}

enum Failure {
    Clap(clap::Error),
    Config(ConfigError),
}

/// The server's command for reloads (set by the first [`load`]).
static COMMAND: OnceLock<fn() -> clap::Command> = OnceLock::new();

fn merge(argv: Vec<OsString>) -> Result<(ArgMatches, Settings), ConfigError> {
    let Some(cmd) = COMMAND.get() else {
        return Err(ConfigError {
            file: String::new(),
            line: 0,
            message: "no configuration was loaded".into(),
        });
    };
    merge_cmd(cmd(), argv).map_err(|f| match f {
        Failure::Config(e) => e,
        Failure::Clap(e) => ConfigError {
            file: "command line".into(),
            line: 0,
            message: first_line(&e),
        },
    })
}

fn merge_with<C: CommandFactory>(argv: Vec<OsString>) -> Result<(ArgMatches, Settings), Failure> {
    let _ = COMMAND.set(C::command);
    merge_cmd(C::command(), argv)
}

fn first_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// The arguments of `cmd` a file may set, by their long name with `_`.
fn file_keys(cmd: &clap::Command) -> Vec<(String, clap::Arg)> {
    cmd.get_arguments()
        .filter_map(|a| Some((a.get_long()?.replace('-', "_"), a.clone())))
        .filter(|(k, _)| !matches!(k.as_str(), "help" | "version" | "config" | "print_config"))
        .collect()
}

fn merge_cmd(cmd: clap::Command, argv: Vec<OsString>) -> Result<(ArgMatches, Settings), Failure> {
    let first = cmd
        .clone()
        .try_get_matches_from(&argv)
        .map_err(Failure::Clap)?;
    let Some(path) = first.get_one::<PathBuf>("config").cloned() else {
        let settings = settings_from(&first, Vec::new()).map_err(Failure::Config)?;
        return Ok((first, settings));
    };
    let file = path.display().to_string();
    let err = |line: usize, message: String| {
        Failure::Config(ConfigError {
            file: file.clone(),
            line,
            message,
        })
    };
    let text = std::fs::read_to_string(&path).map_err(|e| err(0, format!("cannot read: {e}")))?;
    let doc = toml_edit::Document::parse(text.clone()).map_err(|e| {
        let line = e.span().map_or(0, |s| line_of(&text, s.start));
        let msg = e.message().trim().to_owned();
        err(line, format!("not valid TOML: {msg}"))
    })?;
    let keys = file_keys(&cmd);
    let mut extra: Vec<OsString> = Vec::new();
    let mut paths = Vec::new();
    for (key, item) in doc.as_table().iter() {
        let line = doc
            .as_table()
            .key(key)
            .and_then(|k| k.span())
            .map_or(0, |s| line_of(&text, s.start));
        if key == "paths" {
            paths = parse_paths(item, &text).map_err(|(l, m)| err(l, m))?;
            continue;
        }
        let wanted = key.replace('-', "_");
        let Some((_, arg)) = keys.iter().find(|(k, _)| *k == wanted) else {
            return Err(err(
                line,
                format!("unknown key `{key}` (keys are the command-line flags without `--`, and [paths.\"…\"] sections; see `arcly --help`)"),
            ));
        };
        let id = arg.get_id().as_str();
        let long = format!("--{}", arg.get_long().unwrap_or(id));
        let mut args: Vec<OsString> = Vec::new();
        let values = match item {
            Item::Value(Value::Array(a)) => a.iter().collect::<Vec<_>>(),
            Item::Value(v) => vec![v],
            _ => return Err(err(line, format!("`{key}` takes a value, not a table"))),
        };
        let is_switch = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
        for v in values {
            let s = match v {
                Value::String(s) => s.value().clone(),
                Value::Integer(i) => i.value().to_string(),
                Value::Float(f) => f.value().to_string(),
                Value::Boolean(b) if is_switch => {
                    if *b.value() {
                        args.push(long.clone().into());
                    }
                    continue;
                }
                Value::Boolean(b) => b.value().to_string(),
                _ => {
                    return Err(err(
                        line,
                        format!("`{key}`: expected a string, number or boolean"),
                    ))
                }
            };
            if is_switch {
                return Err(err(
                    line,
                    format!("`{key}` is a switch: write `{key} = true` or `false`"),
                ));
            }
            args.push(long.clone().into());
            args.push(s.into());
        }
        // Each value checked alone, so that its error names its line.
        let mut probe = vec![OsString::from("arcly")];
        probe.extend(args.iter().cloned());
        if let Err(e) = cmd.clone().try_get_matches_from(&probe) {
            return Err(err(line, format!("`{key}`: {}", first_line(&e))));
        }
        // The command line wins over the file.
        if first.value_source(id) != Some(ValueSource::CommandLine) {
            extra.extend(args);
        }
    }
    let mut merged = Vec::with_capacity(argv.len() + extra.len());
    let mut it = argv.into_iter();
    merged.extend(it.next());
    merged.extend(extra);
    merged.extend(it);
    let matches = cmd
        .try_get_matches_from(&merged)
        .map_err(|e| err(0, first_line(&e)))?;
    let settings = settings_from(&matches, paths).map_err(Failure::Config)?;
    Ok((matches, settings))
}

fn settings_from(m: &ArgMatches, paths: Vec<PathRule>) -> Result<Settings, ConfigError> {
    let auth = ConfigArgs::from_arg_matches(m).map_err(|e| ConfigError {
        file: "command line".into(),
        line: 0,
        message: first_line(&e),
    })?;
    Ok(Settings { paths, auth })
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    1 + text
        .as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
}

/// The keys a `[paths."…"]` section may hold.
const PATH_KEYS: &[&str] = &[
    "publish_user",
    "publish_pass",
    "read_user",
    "read_pass",
    "publish_ips",
    "read_ips",
    "gop_cache",
    "hls",
    "record",
    "source",
    "source_on_demand",
    "push",
];

fn parse_paths(item: &Item, text: &str) -> Result<Vec<PathRule>, (usize, String)> {
    let Some(table) = item.as_table_like() else {
        return Err((
            item.span().map_or(0, |s| line_of(text, s.start)),
            "`paths` must be a table of sections: [paths.\"live/*\"]".into(),
        ));
    };
    let mut out: Vec<PathRule> = Vec::new();
    for (pattern_text, section) in table.iter() {
        let header = table
            .key(pattern_text)
            .and_then(|k| k.span())
            .map_or(0, |s| line_of(text, s.start));
        let Some(section) = section.as_table_like() else {
            return Err((
                header,
                format!("path `{pattern_text}` must be a section: [paths.\"{pattern_text}\"]"),
            ));
        };
        let pattern = Pattern::parse(pattern_text).map_err(|m| (header, m))?;
        let mut rule = PathRule {
            pattern_text: pattern_text.to_owned(),
            pattern,
            line: header,
            publish_user: None,
            publish_pass: None,
            read_user: None,
            read_pass: None,
            publish_ips: Vec::new(),
            read_ips: Vec::new(),
            gop_cache: None,
            hls: None,
            record: None,
            source: None,
            source_on_demand: false,
            push: Vec::new(),
        };
        for (key, value) in section.iter() {
            let line = section
                .key(key)
                .and_then(|k| k.span())
                .map_or(header, |s| line_of(text, s.start));
            let bad = |what: &str| {
                (
                    line,
                    format!("path `{pattern_text}`: `{key}` must be {what}"),
                )
            };
            let string = || {
                value
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad("a string"))
            };
            let boolean = || value.as_bool().ok_or_else(|| bad("true or false"));
            let strings = || -> Result<Vec<String>, (usize, String)> {
                if let Some(s) = value.as_str() {
                    return Ok(vec![s.to_owned()]);
                }
                value
                    .as_array()
                    .ok_or_else(|| bad("a list of strings"))?
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| bad("a list of strings"))
                    })
                    .collect()
            };
            let ips = || -> Result<Vec<IpNet>, (usize, String)> {
                strings()?
                    .iter()
                    .map(|s| {
                        IpNet::parse(s)
                            .map_err(|m| (line, format!("path `{pattern_text}`: `{key}`: {m}")))
                    })
                    .collect()
            };
            let secret = || -> Result<Secret, (usize, String)> {
                Secret::parse(&string()?)
                    .map_err(|m| (line, format!("path `{pattern_text}`: `{key}`: {m}")))
            };
            match key {
                "publish_user" => rule.publish_user = Some(string()?),
                "publish_pass" => rule.publish_pass = Some(secret()?),
                "read_user" => rule.read_user = Some(string()?),
                "read_pass" => rule.read_pass = Some(secret()?),
                "publish_ips" => rule.publish_ips = ips()?,
                "read_ips" => rule.read_ips = ips()?,
                "gop_cache" => rule.gop_cache = Some(boolean()?),
                "hls" => rule.hls = Some(boolean()?),
                "record" => rule.record = Some(boolean()?),
                "source" => {
                    let s = string()?;
                    check_url(&s, &["rtmp", "srt", "rtsp"])
                        .map_err(|m| (line, format!("path `{pattern_text}`: `source`: {m}")))?;
                    rule.source = Some(s);
                }
                "source_on_demand" => rule.source_on_demand = boolean()?,
                "push" => {
                    let list = strings()?;
                    for s in &list {
                        check_url(s, &["rtmp", "rtmps", "srt"])
                            .map_err(|m| (line, format!("path `{pattern_text}`: `push`: {m}")))?;
                    }
                    rule.push = list;
                }
                other => {
                    return Err((
                        line,
                        format!(
                            "path `{pattern_text}`: unknown key `{other}` (known: {})",
                            PATH_KEYS.join(", ")
                        ),
                    ))
                }
            }
        }
        for (user, pass, what) in [
            (&rule.publish_user, &rule.publish_pass, "publish"),
            (&rule.read_user, &rule.read_pass, "read"),
        ] {
            if user.is_some() != pass.is_some() {
                return Err((
                    header,
                    format!("path `{pattern_text}`: `{what}_user` and `{what}_pass` go together"),
                ));
            }
        }
        if rule.source_on_demand && rule.source.is_none() {
            return Err((
                header,
                format!("path `{pattern_text}`: `source_on_demand` needs a `source`"),
            ));
        }
        if let Some(prev) = out.iter().find(|p| conflicts(p, &rule)) {
            return Err((
                header,
                format!(
                    "path `{pattern_text}` conflicts with `{}` (line {}): every stream it names is already taken by that earlier section, so this one would never apply",
                    prev.pattern_text, prev.line
                ),
            ));
        }
        out.push(rule);
    }
    Ok(out)
}

/// Whether `later` can never apply because of `earlier`: the same exact
/// name or regex, or a glob whose every match an earlier glob (with `*`
/// only) already takes.
fn conflicts(earlier: &PathRule, later: &PathRule) -> bool {
    match (&earlier.pattern, &later.pattern) {
        (Pattern::Exact(a), Pattern::Exact(b)) => a == b,
        (Pattern::Regex(a), Pattern::Regex(b)) => a.as_str() == b.as_str(),
        (Pattern::Glob(a), Pattern::Glob(b)) => {
            !a.contains('?') && glob_match(a.as_bytes(), b.as_bytes())
        }
        _ => false,
    }
}

/// Checks that `url` is `scheme://host…` with one of `schemes`.
fn check_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!(
            "`{url}` is not a URL (expected {}://HOST…)",
            schemes.join("://, ")
        )
    })?;
    if !schemes.contains(&scheme) {
        return Err(format!(
            "`{url}`: scheme `{scheme}` is not supported here (use {})",
            schemes.join(", ")
        ));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("`{url}` has no host"));
    }
    Ok(())
}

/// The effective configuration as TOML: every flag (default, file or
/// command line), then the `[paths]` sections.
fn render<C: CommandFactory>(m: &ArgMatches, settings: &Settings) -> String {
    let cmd = C::command();
    let mut out = String::from("# arcly effective configuration (arcly --print-config)\n");
    for (key, arg) in file_keys(&cmd) {
        let id = arg.get_id().as_str();
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        if let Some(first) = help.lines().next() {
            out.push_str(&format!("# {first}\n"));
        }
        let raw: Vec<String> = m
            .get_raw(id)
            .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        match raw.as_slice() {
            [] => out.push_str(&format!("# {key} =\n")),
            [one] => out.push_str(&format!("{key} = {}\n", toml_value(one, &arg))),
            many => {
                let items: Vec<String> = many.iter().map(|v| toml_value(v, &arg)).collect();
                out.push_str(&format!("{key} = [{}]\n", items.join(", ")));
            }
        }
    }
    for r in &settings.paths {
        out.push_str(&format!("\n[paths.{}]\n", quote(&r.pattern_text)));
        let mut kv = |k: &str, v: String| out.push_str(&format!("{k} = {v}\n"));
        if let Some(u) = &r.publish_user {
            kv("publish_user", quote(u));
        }
        if let Some(p) = &r.publish_pass {
            kv("publish_pass", quote(&p.shown()));
        }
        if let Some(u) = &r.read_user {
            kv("read_user", quote(u));
        }
        if let Some(p) = &r.read_pass {
            kv("read_pass", quote(&p.shown()));
        }
        let list = |l: &[String]| {
            format!(
                "[{}]",
                l.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ")
            )
        };
        if !r.publish_ips.is_empty() {
            kv(
                "publish_ips",
                list(
                    &r.publish_ips
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>(),
                ),
            );
        }
        if !r.read_ips.is_empty() {
            kv(
                "read_ips",
                list(&r.read_ips.iter().map(|n| n.to_string()).collect::<Vec<_>>()),
            );
        }
        for (k, v) in [
            ("gop_cache", r.gop_cache),
            ("hls", r.hls),
            ("record", r.record),
        ] {
            if let Some(v) = v {
                kv(k, v.to_string());
            }
        }
        if let Some(s) = &r.source {
            kv("source", quote(s));
            kv("source_on_demand", r.source_on_demand.to_string());
        }
        if !r.push.is_empty() {
            kv("push", list(&r.push));
        }
    }
    out
}

fn quote(s: &str) -> String {
    Value::from(s).to_string().trim().to_owned()
}

/// A raw flag value as TOML: a number or boolean where the flag reads one,
/// else a string.
fn toml_value(raw: &str, arg: &clap::Arg) -> String {
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
        && (raw == "true" || raw == "false")
    {
        return raw.to_owned();
    }
    if raw.parse::<i64>().is_ok() {
        return raw.to_owned();
    }
    if raw.parse::<f64>().is_ok_and(|f| f.is_finite()) && raw.contains('.') {
        return raw.to_owned();
    }
    quote(raw)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct T {
        #[arg(long, default_value_t = 10)]
        max_connections: usize,
        #[arg(long, default_value = "0.0.0.0:1935")]
        rtmp: String,
        #[arg(long)]
        record: Option<PathBuf>,
        #[arg(long, default_value_t = 2.0)]
        grace: f64,
        #[command(flatten)]
        config: ConfigArgs,
    }

    fn write(text: &str) -> (tempdir::Dir, PathBuf) {
        let dir = tempdir::Dir::new();
        let p = dir.0.join("arcly.toml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "arcly-config-test-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn run(text: &str, extra: &[&str]) -> Result<(T, Settings), ConfigError> {
        let (_d, p) = write(text);
        let mut argv: Vec<OsString> = vec!["arcly".into(), "--config".into(), p.into()];
        argv.extend(extra.iter().map(OsString::from));
        match merge_with::<T>(argv) {
            Ok((m, s)) => Ok((T::from_arg_matches(&m).unwrap(), s)),
            Err(Failure::Config(mut e)) => {
                e.file = "F".into();
                Err(e)
            }
            Err(Failure::Clap(e)) => panic!("{e}"),
        }
    }

    #[test]
    fn flags_are_keys_and_the_command_line_wins() {
        let (t, s) = run(
            "max_connections = 5\nrtmp = \"127.0.0.1:1\"\nrecord = \"/tmp/r\"\ngrace = 0.5\nauth-hook-url = \"http://h/\"\n",
            &["--max-connections", "7"],
        )
        .unwrap();
        assert_eq!(t.max_connections, 7);
        assert_eq!(t.rtmp, "127.0.0.1:1");
        assert_eq!(t.record, Some(PathBuf::from("/tmp/r")));
        assert_eq!(t.grace, 0.5);
        assert_eq!(s.auth.auth_hook_url.as_deref(), Some("http://h/"));
    }

    #[test]
    fn errors_name_the_line_and_say_why() {
        let e = run("max_connections = 5\nbogus = 1\n", &[]).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unknown key `bogus`"), "{e}");
        let e = run("\n\nmax_connections = \"many\"\n", &[]).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(
            e.message.contains("max_connections") && e.message.contains("many"),
            "{e}"
        );
        let e = run("max_connections = [\n", &[]).unwrap_err();
        assert!(e.message.contains("not valid TOML"), "{e}");
        let e = run("[paths.\"live/*\"]\npublish_user = \"u\"\n", &[]).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("go together"), "{e}");
        let e = run("[paths.\"live/*\"]\nx = 1\n", &[]).unwrap_err();
        assert_eq!(
            (e.line, e.message.contains("unknown key `x`")),
            (2, true),
            "{e}"
        );
        let e = run("[paths.\"live/*\"]\n[paths.\"live/a*\"]\n", &[]).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.message.contains("conflicts with `live/*` (line 1)"),
            "{e}"
        );
        let e = run("[paths.\"~cam[\"]\n", &[]).unwrap_err();
        assert!(e.message.contains("bad regular expression"), "{e}");
        let e = run("[paths.\"live/*\"]\nread_ips = [\"10.0.0.0/33\"]\n", &[]).unwrap_err();
        assert!(e.message.contains("prefix length"), "{e}");
        let e = run("[paths.\"live/*\"]\npush = [\"http://x/\"]\n", &[]).unwrap_err();
        assert!(e.message.contains("scheme `http`"), "{e}");
        let e = run(
            "[paths.\"live/*\"]\nread_user = \"v\"\nread_pass = \"sha256:zz\"\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let key = arcly::StreamKey::new("live", "cam").unwrap();
        assert_eq!(
            PathRule::substitute("rtmp://o/{app}/{name}", &key),
            "rtmp://o/live/cam"
        );
        let e = run("[paths.\"live\"]\n", &[]).unwrap_err();
        assert!(e.message.contains("APP/STREAM"), "{e}");
    }

    #[test]
    fn paths_match_exact_then_glob_then_regex() {
        let (_, s) = run(
            "[paths.\"~^live/cam[0-9]+$\"]\nrecord = true\n[paths.\"live/*\"]\nhls = false\n[paths.\"live/cam1\"]\ngop_cache = false\n",
            &[],
        )
        .unwrap();
        assert_eq!(s.rule_for("live/cam1").unwrap().pattern_text, "live/cam1");
        assert_eq!(s.rule_for("live/cam2").unwrap().pattern_text, "live/*");
        assert!(s.rule_for("other/x").is_none());
        assert!(s.rule_for("live/a/b").is_none());
        assert!(glob_match(b"live/c?m", b"live/cam"));
        assert!(!glob_match(b"live/*", b"live/a/b"));
    }

    #[test]
    fn ip_blocks() {
        let n = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(IpNet::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(IpNet::parse("nope").is_err());
    }
}
