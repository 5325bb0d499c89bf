//! The hand-written `mio` loop of `mio_loop` driving an SRT datagram
//! service (`arcly::datagram::DatagramDriver`'s non-waiting steps) next to
//! the RTMP listener, on one engine and one thread: publish over RTMP or
//! SRT, play over either.
//!
//! Run: `cargo run -p arcly-examples --example mio_srt -- [RTMP_ADDR] [SRT_ADDR]`
//! (defaults `127.0.0.1:1935` and `127.0.0.1:9000`), then e.g. publish with
//! `ffmpeg -re -f lavfi -i testsrc -f lavfi -i sine -c:v libx264 -g 50 -c:a aac -f flv rtmp://127.0.0.1:1935/live/cam`
//! and play over SRT with
//! `ffplay 'srt://127.0.0.1:9000?streamid=read:live/cam'`
//! (publish over SRT: `-f mpegts 'srt://127.0.0.1:9000?streamid=publish:live/cam'`).

use std::io;
use std::net::SocketAddr;

use arcly::datagram::UdpConfig;
use arcly::rtmp::RtmpSessionFactory;
use arcly::session::DriveConfig;
use arcly::srt::service::{SrtServiceConfig, SrtServiceFactory};
use arcly::Engine;
use arcly_examples::mio_loop::MioServer;

fn addr(arg: Option<String>, default: &str) -> io::Result<SocketAddr> {
    arg.as_deref()
        .unwrap_or(default)
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("address: {e}")))
}

fn main() -> io::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut args = std::env::args().skip(1);
    let rtmp = addr(args.next(), "127.0.0.1:1935")?;
    let srt = addr(args.next(), "127.0.0.1:9000")?;
    let engine = Engine::with_defaults();
    let server = MioServer::bind(
        Some((
            rtmp,
            Box::new(RtmpSessionFactory::allow_all(engine.clone())),
        )),
        Some((
            srt,
            Box::new(SrtServiceFactory::allow_all(
                engine,
                SrtServiceConfig::default(),
            )),
        )),
        DriveConfig::default(),
        UdpConfig::default(),
    )?;
    println!(
        "mio loop: RTMP on rtmp://{rtmp}/live/<name>, SRT on srt://{srt}?streamid=read:live/<name>"
    );
    server.run()
}
