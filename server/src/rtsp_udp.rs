//! RTSP over UDP for the server (`--rtsp-udp ADDR|off`, default
//! `0.0.0.0:8000`, RTCP on the next port): binds the RTP + RTCP socket
//! pair, runs one `arcly::rtsp::RtspUdpService` on them with
//! `arcly_tokio::serve_udp_sockets`, and gives the RTSP listener's sessions
//! the handle that reaches it.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use arcly::rtsp::{RtspSessionFactory, RtspUdpConfig, RtspUdpHandle, RtspUdpServiceFactory};
use arcly::Engine;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The default RTP address (RTCP on the next port), as MediaMTX.
pub const DEFAULT_ADDR: &str = "0.0.0.0:8000";

/// The bound socket pair and the service factory, before it runs.
pub struct RtspUdp {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    addr: SocketAddr,
    factory: Arc<RtspUdpServiceFactory>,
}

impl RtspUdp {
    /// The handle RTSP sessions use to reach the service.
    pub fn handle(&self) -> RtspUdpHandle {
        self.factory.handle()
    }
}

/// Binds `addr` (RTP) and the next port (RTCP). Port 0 picks a free even
/// pair. `explicit`: a failure ends the start; otherwise (the default
/// address) it is a warning and RTSP runs without UDP.
pub async fn bind(
    addr: SocketAddr,
    explicit: bool,
    timeout_secs: f64,
) -> Result<Option<RtspUdp>, ExitCode> {
    let pair = if addr.port() == 0 {
        let mut found = None;
        for _ in 0..64 {
            let Ok(rtp) = UdpSocket::bind(addr).await else {
                continue;
            };
            let Ok(local) = rtp.local_addr() else {
                continue;
            };
            if local.port() % 2 != 0 || local.port() == u16::MAX {
                continue;
            }
            let next = SocketAddr::new(addr.ip(), local.port() + 1);
            if let Ok(rtcp) = UdpSocket::bind(next).await {
                found = Some((rtp, rtcp));
                break;
            }
        }
        found.ok_or_else(|| "no free even/odd port pair".to_owned())
    } else {
        let next = SocketAddr::new(addr.ip(), addr.port().wrapping_add(1));
        match (UdpSocket::bind(addr).await, UdpSocket::bind(next).await) {
            (Ok(a), Ok(b)) => Ok((a, b)),
            (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
        }
    };
    let (rtp, rtcp) = match pair {
        Ok(p) => p,
        Err(e) if explicit => {
            eprintln!(
                "arcly: cannot listen for RTSP over UDP on {addr}/udp and the next port: {e}"
            );
            return Err(ExitCode::FAILURE);
        }
        Err(e) => {
            tracing::warn!(%addr, error = %e, "RTSP over UDP is off: cannot bind the default ports (use --rtsp-udp ADDR|off)");
            return Ok(None);
        }
    };
    let bound = rtp.local_addr().unwrap_or(addr);
    let config = RtspUdpConfig::default().with_timeout(
        Duration::try_from_secs_f64(timeout_secs.max(0.05))
            .unwrap_or(arcly::rtsp::session::SESSION_TIMEOUT),
    );
    Ok(Some(RtspUdp {
        rtp,
        rtcp,
        addr: bound,
        factory: Arc::new(RtspUdpServiceFactory::new(config)),
    }))
}

/// The RTSP session factory, offering UDP when `udp` is bound.
pub fn session_factory(engine: &Engine, udp: Option<&RtspUdp>) -> RtspSessionFactory {
    let f = RtspSessionFactory::new(
        engine.clone(),
        crate::relay::admission(crate::auth::admission()),
    );
    match udp {
        Some(u) => f.with_udp(u.handle()),
        None => f,
    }
}

/// Prints the banner and serves the pair until `stop` turns true.
pub fn spawn(
    servers: &mut JoinSet<()>,
    udp: RtspUdp,
    rtsp: Option<SocketAddr>,
    mut stop: watch::Receiver<bool>,
) {
    let addr = udp.addr;
    println!(
        "  RTSP/UDP listening on {addr}/udp (RTP; RTCP on port {})",
        addr.port().wrapping_add(1)
    );
    if let Some(rtsp) = rtsp {
        let host = match rtsp.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            std::net::IpAddr::V4(v4) => v4.to_string(),
        };
        let base = format!("rtsp://{host}:{}/live", rtsp.port());
        println!(
            "    publish: ffmpeg -re -i input.mp4 -c copy -f rtsp -rtsp_transport udp {base}/<name>"
        );
        println!("    play:    ffplay -rtsp_transport udp {base}/<name>");
    }
    tracing::info!(protocol = "RTSP/UDP", %addr, "listening");
    servers.spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let config = arcly::datagram::UdpConfig::default();
        if let Err(e) =
            arcly_tokio::serve_udp_sockets(vec![udp.rtp, udp.rtcp], udp.factory, shutdown, &config)
                .await
        {
            tracing::error!(protocol = "RTSP/UDP", "listener failed: {e}");
        }
    });
}
