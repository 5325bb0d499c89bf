//! The SRT listener of the server: one UDP socket driven by
//! `arcly_tokio::serve_udp` with an `arcly::srt::service::SrtServiceFactory`
//! on the server's engine (`--srt`, `--srt-passphrase`, `--srt-latency`).

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::process::ExitCode;

use arcly::srt::endpoint::EndpointConfig;
use arcly::srt::service::{SrtServiceConfig, SrtServiceFactory};
use arcly::Engine;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Shortest and longest SRT passphrase (`SRTO_PASSPHRASE`, draft §6.1.4).
const PASSPHRASE_LEN: std::ops::RangeInclusive<usize> = 10..=79;

/// `--srt-passphrase`: 10 to 79 characters, as libsrt requires.
pub fn parse_passphrase(s: &str) -> Result<String, String> {
    // libsrt counts bytes.
    let n = s.len();
    if PASSPHRASE_LEN.contains(&n) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "an SRT passphrase has 10 to 79 characters (libsrt's limits); this one has {n}"
        ))
    }
}

/// Random bytes for the SYN-cookie secret and socket ids, from the
/// randomly keyed hasher std seeds from the OS (no extra dependency).
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}

/// Per-source-address limits of the SRT service (docs/security.md).
#[derive(Debug, Clone, Copy)]
pub struct PeerLimits {
    /// Connections one address may hold (0: no limit).
    pub max_connections: usize,
    /// Play admissions one address may make in a burst (0: no limit).
    pub play_burst: u32,
    /// Play admissions per second an address regains.
    pub play_rate: u32,
}

/// The SRT service settings from the command line.
pub fn factory(
    engine: &Engine,
    latency_ms: u16,
    passphrase: Option<String>,
    max_connections: usize,
    limits: PeerLimits,
) -> SrtServiceFactory {
    let mut cookie_secret = [0u8; 32];
    for chunk in cookie_secret.chunks_mut(8) {
        for (d, s) in chunk.iter_mut().zip(random_u64().to_le_bytes()) {
            *d = s;
        }
    }
    let endpoint = EndpointConfig::default()
        .with_cookie_secret(cookie_secret)
        .with_rng_seed(random_u64())
        .with_latency_ms(latency_ms)
        .with_passphrase(passphrase)
        .with_max_connections(max_connections.max(1));
    let mut config = SrtServiceConfig::with_endpoint(endpoint);
    config.max_connections_per_ip = limits.max_connections;
    config.play_burst_per_ip = limits.play_burst;
    config.play_rate_per_ip = limits.play_rate;
    SrtServiceFactory::new(
        engine.clone(),
        config,
        crate::relay::admission(crate::auth::admission()),
    )
}

/// Binds the SRT socket (a failure ends the start with a message).
pub async fn bind(addr: SocketAddr) -> Result<(tokio::net::UdpSocket, SocketAddr), ExitCode> {
    match tokio::net::UdpSocket::bind(addr).await {
        Ok(sock) => {
            let bound = sock.local_addr().unwrap_or(addr);
            Ok((sock, bound))
        }
        Err(e) => {
            eprintln!("arcly: cannot listen for SRT on {addr}/udp: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// What to tell the user once bound.
pub fn hints(addr: SocketAddr, host: &str, encrypted: bool) -> Vec<String> {
    let base = format!("srt://{host}:{}", addr.port());
    let mut out = vec![
        format!(
            "publish: ffmpeg -re -i input.mp4 -c copy -f mpegts '{base}?streamid=publish:live/<name>'"
        ),
        format!("play:    ffplay '{base}?streamid=read:live/<name>'"),
    ];
    if encrypted {
        out.push("         (add &passphrase=...&pbkeylen=16 to both URLs)".to_owned());
    }
    out
}

/// Serves SRT on `sock` until `stop` turns true.
pub fn spawn(
    servers: &mut JoinSet<()>,
    sock: tokio::net::UdpSocket,
    factory: SrtServiceFactory,
    mut stop: watch::Receiver<bool>,
) {
    servers.spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = arcly_tokio::serve_udp(sock, factory, shutdown).await {
            tracing::error!(protocol = "SRT", "listener failed: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn passphrase_length_is_checked() {
        assert!(parse_passphrase("short").is_err());
        assert!(parse_passphrase("0123456789").is_ok());
        assert!(parse_passphrase(&"x".repeat(79)).is_ok());
        let err = parse_passphrase(&"x".repeat(80)).unwrap_err();
        assert!(err.contains("10 to 79"), "{err}");
    }
}
