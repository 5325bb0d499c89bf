//! arcly-tokio driver behaviour with a test session (no RTMP): vectored
//! writes, EOF, timers, media wake-ups, a stalled reader, max connections,
//! graceful shutdown. Clients are blocking std::net sockets on threads.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arcly_tokio::{serve_tcp, serve_tcp_with, ServeConfig};
use common::TestFactory;
use tokio::sync::oneshot;

struct Server {
    addr: SocketAddr,
    factory: Arc<TestFactory>,
    stop: Option<oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<std::io::Result<()>>,
    _rt: std::thread::JoinHandle<()>,
}

impl Server {
    fn start(config: Option<ServeConfig>) -> Server {
        let factory = TestFactory::new();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let f = factory.clone();
        let rt = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let shutdown = async move {
                    let _ = stop_rx.await;
                };
                let r = match config {
                    Some(c) => serve_tcp_with(listener, f, shutdown, c).await,
                    None => serve_tcp(listener, f, shutdown).await,
                };
                done_tx.send(r).unwrap();
            });
        });
        Server {
            addr: addr_rx.recv().unwrap(),
            factory,
            stop: Some(stop_tx),
            done: done_rx,
            _rt: rt,
        }
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            s.send(()).unwrap();
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
        self.shutdown();
    }
}

#[test]
fn vectored_write_of_many_buffers_arrives_in_order() {
    let s = Server::start(None);
    common::scenario_vectored(s.addr);
}

#[test]
fn eof_reaches_the_session_and_closes() {
    let s = Server::start(None);
    common::scenario_eof(s.addr, &s.factory.stats);
}

#[test]
fn deadlines_fire_handle_timeout() {
    let s = Server::start(None);
    common::scenario_timer(s.addr);
}

#[test]
fn media_signal_wakes_the_player() {
    let s = Server::start(None);
    common::scenario_media(s.addr, &s.factory.engine);
}

#[test]
fn stalled_reader_does_not_block_others() {
    let s = Server::start(None);
    common::scenario_stalled_reader(s.addr, &s.factory.engine, &s.factory.stats);
}

#[test]
fn connections_beyond_the_limit_are_refused() {
    let s = Server::start(Some(ServeConfig::default().with_max_connections(3)));
    common::scenario_max_connections(s.addr, 3);
}

#[test]
fn graceful_shutdown_closes_every_session() {
    let mut s = Server::start(None);
    let conns = common::before_shutdown(s.addr, 5);
    s.shutdown();
    s.wait_done();
    common::after_shutdown(s.addr, conns, &s.factory.stats);
}

/// `drive_stream` works over any `AsyncRead + AsyncWrite` (here an in-memory
/// duplex pipe), with the write side shut down after the session closes.
#[tokio::test]
async fn drive_stream_over_an_in_memory_pipe() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let factory = TestFactory::new();
    let (client, server) = tokio::io::duplex(64);
    let clock = arcly::time::Clock::new(std::time::Instant::now());
    let session = arcly::session::SessionFactory::new_session(
        &*factory,
        arcly::session::StreamConn::from_peer("127.0.0.1:1".parse().unwrap()),
        arcly::Instant::ZERO,
        1,
    );
    let task = tokio::spawn(arcly_tokio::drive_stream(server, session, clock));
    let (mut rd, mut wr) = tokio::io::split(client);
    wr.write_all(b"burst 3000\nquit\n").await.unwrap();
    let mut all = Vec::new();
    rd.read_to_end(&mut all).await.unwrap();
    let expected: Vec<u8> = (0..3000usize)
        .flat_map(|i| std::iter::repeat((i % 251) as u8).take((i % 61) + 1))
        .chain(*b"bye\n")
        .collect();
    assert!(all == expected);
    let reason = task.await.unwrap().unwrap();
    assert_eq!(reason, arcly::session::CloseReason::PeerClosed);
}

#[test]
fn write_merge_batches_media_writes() {
    let s = Server::start(Some(ServeConfig::default().with_drive(
        arcly_tokio::DriveConfig::default().with_write_merge(Duration::from_millis(150)),
    )));
    let merged = common::scenario_write_merge(s.addr, &s.factory.engine, "merged");
    let s2 = Server::start(None);
    let unmerged = common::scenario_write_merge(s2.addr, &s2.factory.engine, "unmerged");
    assert!(merged <= 5, "merged into {merged} bursts");
    assert!(unmerged >= 8, "unmerged arrived in {unmerged} bursts");
}

#[test]
fn shutdown_is_bounded_by_a_stalled_peer() {
    let mut s = Server::start(Some(
        ServeConfig::default().with_shutdown_grace(Duration::from_millis(300)),
    ));
    let stop = s.stop.take();
    common::scenario_stalled_shutdown(
        s.addr,
        &s.factory.stats.clone(),
        || stop.unwrap().send(()).unwrap(),
        || s.wait_done(),
    );
}

#[test]
fn rtmp_publish_and_play_through_the_adapter() {
    let (addr, stop) = start_rtmp();
    common::scenario_rtmp(addr);
    let _ = stop.send(());
}

fn start_rtmp() -> (SocketAddr, oneshot::Sender<()>) {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let factory = Arc::new(arcly::rtmp::RtmpSessionFactory::allow_all(
                arcly::Engine::with_defaults(),
            ));
            serve_tcp(listener, factory, async move {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    (addr_rx.recv().unwrap(), stop_tx)
}

/// On a wildcard listener the factory learns the address the peer
/// connected to (here 127.0.0.2, not the listener's 0.0.0.0) and the
/// peer's address.
#[test]
fn the_factory_learns_the_local_address_the_peer_connected_to() {
    let factory = TestFactory::new();
    let f = factory.clone();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let rt = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let _ = serve_tcp(listener, f, async move {
                let _ = stop_rx.await;
            })
            .await;
        });
    });
    let port = addr_rx.recv().unwrap().port();
    let to: SocketAddr = SocketAddr::new("127.0.0.2".parse().unwrap(), port);
    let client = std::net::TcpStream::connect(to).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while factory.stats.conns.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no session within 3 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let conn = factory.stats.conns.lock().unwrap()[0];
    assert_eq!(conn.local, to);
    assert_eq!(conn.peer, client.local_addr().unwrap());
    drop(client);
    let _ = stop_tx.send(());
    rt.join().unwrap();
}
