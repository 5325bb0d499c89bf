//! An RTMP server driven from a hand-written `mio` event loop: no async
//! runtime, one thread, the sans-IO sessions fed by hand through the
//! non-waiting steps of `arcly::session::StreamDriver` (the loop is in
//! `arcly_examples::mio_loop`).
//!
//! Run: `cargo run -p arcly-examples --example mio_loop -- [ADDR]`
//! (default `127.0.0.1:1935`), then publish with
//! `ffmpeg -re -f lavfi -i testsrc -f lavfi -i sine -c:v libx264 -g 50 -c:a aac -f flv rtmp://127.0.0.1:1935/live/cam`
//! and play with `ffplay rtmp://127.0.0.1:1935/live/cam`.

use std::io;

use arcly::datagram::UdpConfig;
use arcly::rtmp::RtmpSessionFactory;
use arcly::session::DriveConfig;
use arcly::Engine;
use arcly_examples::mio_loop::MioServer;

fn main() -> io::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:1935".to_owned())
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("address: {e}")))?;
    let engine = Engine::with_defaults();
    let server = MioServer::bind(
        Some((addr, Box::new(RtmpSessionFactory::allow_all(engine)))),
        None,
        DriveConfig::default(),
        UdpConfig::default(),
    )?;
    println!("mio loop serving RTMP on {addr}: rtmp://{addr}/live/<name>");
    server.run()
}
