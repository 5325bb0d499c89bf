//! The WebRTC listener of the server (`--webrtc`, `--webrtc-ip`): one UDP
//! socket driven by `arcly_tokio::serve_udp` with an
//! `arcly_webrtc::WebRtcServiceFactory` on the server's engine, and the
//! WHIP/WHEP routes (`arcly_webrtc::signalling`) mounted in the HTTP
//! router beside HLS. See docs/webrtc.md.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use arcly::http::HttpRouter;
use arcly::Engine;
use arcly_webrtc::signalling::{self, SignallingConfig};
use arcly_webrtc::{WebRtcConfig, WebRtcServiceFactory};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The WebRTC settings from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Extra host candidates (`--webrtc-ip`, for NAT and containers).
    pub public_ips: Vec<IpAddr>,
    /// Most sessions in all.
    pub max_sessions: usize,
    /// Most sessions from one client IP.
    pub max_sessions_per_ip: usize,
}

/// A running WebRTC service: what the HTTP router needs to mount the
/// WHIP/WHEP routes.
#[derive(Debug, Clone)]
pub struct Running {
    signalling: SignallingConfig,
}

/// CSPRNG bytes from the OS (`getrandom(2)`); on the (unheard-of) failure,
/// std's randomly keyed hasher, never a constant.
fn random_fill(buf: &mut [u8]) {
    if getrandom::fill(buf).is_ok() {
        return;
    }
    use std::hash::{BuildHasher, Hasher};
    for chunk in buf.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0);
        for (d, s) in chunk.iter_mut().zip(h.finish().to_le_bytes()) {
            *d = s;
        }
    }
}

/// The server's host candidates: the bound address, or every interface
/// address of the bound family when bound to the wildcard (loopback too,
/// so local clients connect), plus every `--webrtc-ip`; and the subset
/// that is really local.
pub fn candidates(bound: SocketAddr, public_ips: &[IpAddr]) -> (Vec<SocketAddr>, Vec<IpAddr>) {
    let mut local: Vec<IpAddr> = Vec::new();
    if bound.ip().is_unspecified() {
        match if_addrs::get_if_addrs() {
            Ok(ifs) => {
                for i in ifs {
                    let ip = i.ip();
                    let same_family = ip.is_ipv4() == bound.is_ipv4();
                    // IPv6 link-local addresses need a scope id browsers
                    // cannot use from SDP.
                    let link_local_v6 =
                        matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
                    if same_family && !link_local_v6 && !local.contains(&ip) {
                        local.push(ip);
                    }
                }
            }
            Err(e) => tracing::warn!("WebRTC: cannot list the interface addresses: {e}"),
        }
    } else {
        local.push(bound.ip());
    }
    let mut all: Vec<SocketAddr> = local
        .iter()
        .map(|&ip| SocketAddr::new(ip, bound.port()))
        .collect();
    for &ip in public_ips {
        let c = SocketAddr::new(ip, bound.port());
        if !all.contains(&c) {
            all.push(c);
        }
    }
    (all, local)
}

/// Binds the WebRTC socket (a failure ends the start with a message).
pub async fn bind(addr: SocketAddr) -> Result<(tokio::net::UdpSocket, SocketAddr), ExitCode> {
    match tokio::net::UdpSocket::bind(addr).await {
        Ok(sock) => {
            let bound = sock.local_addr().unwrap_or(addr);
            Ok((sock, bound))
        }
        Err(e) => {
            eprintln!("arcly: cannot listen for WebRTC on {addr}/udp: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Serves WebRTC on `sock` until `stop` turns true; the returned value
/// mounts the WHIP/WHEP routes ([`mount`]).
pub fn spawn(
    servers: &mut JoinSet<()>,
    sock: tokio::net::UdpSocket,
    addr: SocketAddr,
    engine: &Engine,
    options: &Options,
    mut stop: watch::Receiver<bool>,
) -> Running {
    let (candidates, local_ips) = candidates(addr, &options.public_ips);
    let mut config = WebRtcConfig::new(std::time::Instant::now()).with_aac_transcoding(engine);
    config.host_candidates = candidates.clone();
    config.local_ips = local_ips;
    config.max_sessions = options.max_sessions.max(1);
    config.max_sessions_per_ip = options.max_sessions_per_ip.max(1);
    let factory = WebRtcServiceFactory::new(config);
    let signalling = SignallingConfig {
        engine: engine.clone(),
        // WHIP/WHEP `Authorization: Bearer` reaches the config's policy.
        admission: crate::auth::admission(),
        sender: factory.sender(),
        random: Arc::new(random_fill),
        ice_servers: Vec::new(),
    };
    println!("  WebRTC listening on {addr}/udp");
    let list: Vec<String> = candidates.iter().map(ToString::to_string).collect();
    println!("    host candidates: {}", list.join(" "));
    tracing::info!(protocol = "WebRTC", %addr, candidates = %list.join(" "), "listening");
    servers.spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = arcly_tokio::serve_udp(sock, factory, shutdown).await {
            tracing::error!(protocol = "WebRTC", "listener failed: {e}");
        }
    });
    Running { signalling }
}

/// Mounts the WHIP/WHEP routes of `running` in `router` and prints their
/// URLs for an HTTP listener at `http`.
pub fn mount(router: &mut HttpRouter, running: &Running, http: SocketAddr, host: &str) {
    signalling::mount(router, running.signalling.clone());
    arcly_webrtc::pages::mount_pages(router);
    let base = format!("http://{host}:{}/live/<name>", http.port());
    println!("    WHIP:    {base}/whip   (POST application/sdp)");
    println!("    WHEP:    {base}/whep   (POST application/sdp)");
    println!("    pages:   {base}/publish   {base}/whep-player");
    tracing::info!(
        whip = %format!("{base}/whip"),
        whep = %format!("{base}/whep"),
        "WebRTC signalling mounted"
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn candidates_are_the_bound_address_plus_public_ones() {
        let bound: SocketAddr = "127.0.0.1:8189".parse().unwrap();
        let public: IpAddr = "203.0.113.7".parse().unwrap();
        let (all, local) = candidates(bound, &[public]);
        assert_eq!(
            all,
            vec![bound, "203.0.113.7:8189".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(local, vec![bound.ip()]);
        let (all, _) = candidates("0.0.0.0:8189".parse().unwrap(), &[]);
        assert!(
            all.contains(&"127.0.0.1:8189".parse().unwrap()),
            "a wildcard bind lists every interface, loopback included: {all:?}"
        );
    }
}
