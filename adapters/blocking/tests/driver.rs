//! arcly-blocking driver behaviour with a test session (no RTMP): vectored
//! writes, EOF, timers, media wake-ups, a stalled reader, max connections,
//! graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../tokio/tests/common/mod.rs"]
mod common;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use arcly_blocking::{serve_tcp_with, ServeConfig, Shutdown};
use common::TestFactory;

struct Server {
    addr: SocketAddr,
    factory: Arc<TestFactory>,
    shutdown: Shutdown,
    done: std::sync::mpsc::Receiver<std::io::Result<()>>,
}

impl Server {
    fn start(config: ServeConfig) -> Server {
        let factory = TestFactory::new();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let f: Arc<dyn arcly::session::SessionFactory> = factory.clone();
        let s = shutdown.clone();
        std::thread::spawn(move || {
            done_tx
                .send(serve_tcp_with(listener, f, s, config))
                .unwrap();
        });
        Server {
            addr,
            factory,
            shutdown,
            done: done_rx,
        }
    }

    fn wait_done(&self) {
        self.done
            .recv_timeout(Duration::from_secs(10))
            .expect("serve_tcp did not return")
            .unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

#[test]
fn vectored_write_of_many_buffers_arrives_in_order() {
    let s = Server::start(ServeConfig::default());
    common::scenario_vectored(s.addr);
}

#[test]
fn eof_reaches_the_session_and_closes() {
    let s = Server::start(ServeConfig::default());
    common::scenario_eof(s.addr, &s.factory.stats);
}

#[test]
fn deadlines_fire_handle_timeout() {
    let s = Server::start(ServeConfig::default());
    common::scenario_timer(s.addr);
}

#[test]
fn media_signal_wakes_the_player() {
    let s = Server::start(ServeConfig::default());
    common::scenario_media(s.addr, &s.factory.engine);
}

#[test]
fn stalled_reader_does_not_block_others() {
    let s = Server::start(ServeConfig::default());
    common::scenario_stalled_reader(s.addr, &s.factory.engine, &s.factory.stats);
}

#[test]
fn connections_beyond_the_limit_are_refused() {
    let s = Server::start(ServeConfig::default().with_max_connections(3));
    common::scenario_max_connections(s.addr, 3);
}

#[test]
fn graceful_shutdown_closes_every_session() {
    let s = Server::start(ServeConfig::default());
    let conns = common::before_shutdown(s.addr, 5);
    s.shutdown.trigger();
    s.wait_done();
    common::after_shutdown(s.addr, conns, &s.factory.stats);
}

/// A stalled player (full socket) cannot hold the shutdown up past the grace.
#[test]
fn shutdown_is_bounded_by_a_stalled_peer() {
    let s = Server::start(ServeConfig::default().with_shutdown_grace(Duration::from_millis(300)));
    common::scenario_stalled_shutdown(
        s.addr,
        &s.factory.stats.clone(),
        || s.shutdown.trigger(),
        || s.wait_done(),
    );
}

#[test]
fn write_merge_batches_media_writes() {
    let s = Server::start(ServeConfig::default().with_drive(
        arcly_blocking::DriveConfig::default().with_write_merge(Duration::from_millis(150)),
    ));
    let merged = common::scenario_write_merge(s.addr, &s.factory.engine, "merged");
    let s2 = Server::start(ServeConfig::default());
    let unmerged = common::scenario_write_merge(s2.addr, &s2.factory.engine, "unmerged");
    assert!(merged <= 5, "merged into {merged} bursts");
    assert!(unmerged >= 8, "unmerged arrived in {unmerged} bursts");
}

#[test]
fn rtmp_publish_and_play_through_the_adapter() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let s = shutdown.clone();
    let server = std::thread::spawn(move || {
        let factory = Arc::new(arcly::rtmp::RtmpSessionFactory::allow_all(
            arcly::Engine::with_defaults(),
        ));
        arcly_blocking::serve_tcp(listener, factory, s).unwrap();
    });
    common::scenario_rtmp(addr);
    shutdown.trigger();
    server.join().unwrap();
}
