//! arcly-async-io driver behaviour with a test session (no RTMP), run under
//! smol and under async-std's executor: vectored writes, EOF, timers, media
//! wake-ups, a stalled reader, max connections, graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../tokio/tests/common/mod.rs"]
mod common;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use arcly_async_io::{serve_tcp_with, ConnectionFuture, ServeConfig};
use async_io::Async;
use common::TestFactory;

#[derive(Clone, Copy)]
enum Exec {
    Smol,
    AsyncStd,
}

struct Server {
    addr: SocketAddr,
    factory: Arc<TestFactory>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    stop_signal: arcly::engine::Signal,
    done: std::sync::mpsc::Receiver<std::io::Result<()>>,
}

impl Server {
    fn start(exec: Exec, config: ServeConfig) -> Server {
        let factory = TestFactory::new();
        let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let addr = listener.get_ref().local_addr().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let stop_signal = arcly::engine::Signal::new();
        let sig = stop_signal.clone();
        let shutdown = async move {
            loop {
                let seen = sig.epoch();
                if stop_rx.try_recv().is_ok() {
                    return;
                }
                sig.wait(seen).await;
            }
        };
        let f: Arc<dyn arcly::session::SessionFactory> = factory.clone();
        std::thread::spawn(move || {
            let r = match exec {
                Exec::Smol => {
                    // A multi-threaded smol executor: two threads run it.
                    let ex = Arc::new(smol::Executor::new());
                    let (quit_tx, quit_rx) = smol::channel::unbounded::<()>();
                    for _ in 0..2 {
                        let ex = ex.clone();
                        let quit = quit_rx.clone();
                        std::thread::spawn(move || smol::block_on(ex.run(quit.recv())));
                    }
                    let spawner = ex.clone();
                    let r = smol::block_on(ex.run(serve_tcp_with(
                        listener,
                        f,
                        shutdown,
                        move |c: ConnectionFuture| spawner.spawn(c).detach(),
                        config,
                    )));
                    drop(quit_tx);
                    r
                }
                Exec::AsyncStd => async_std::task::block_on(serve_tcp_with(
                    listener,
                    f,
                    shutdown,
                    |c: ConnectionFuture| {
                        async_std::task::spawn(c);
                    },
                    config,
                )),
            };
            done_tx.send(r).unwrap();
        });
        Server {
            addr,
            factory,
            stop: Some(stop_tx),
            stop_signal,
            done: done_rx,
        }
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            s.send(()).unwrap();
            self.stop_signal.notify();
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

fn all_scenarios(exec: Exec) {
    let s = Server::start(exec, ServeConfig::default());
    common::scenario_vectored(s.addr);
    common::scenario_eof(s.addr, &s.factory.stats);
    common::scenario_timer(s.addr);
    common::scenario_media(s.addr, &s.factory.engine);
    common::scenario_stalled_reader(s.addr, &s.factory.engine, &s.factory.stats);
}

fn max_connections(exec: Exec) {
    let s = Server::start(exec, ServeConfig::default().with_max_connections(3));
    common::scenario_max_connections(s.addr, 3);
}

fn graceful_shutdown(exec: Exec) {
    let mut s = Server::start(exec, ServeConfig::default());
    let conns = common::before_shutdown(s.addr, 5);
    s.shutdown();
    s.wait_done();
    common::after_shutdown(s.addr, conns, &s.factory.stats);
}

#[test]
fn smol_driver_scenarios() {
    all_scenarios(Exec::Smol);
}

#[test]
fn smol_max_connections() {
    max_connections(Exec::Smol);
}

#[test]
fn smol_graceful_shutdown() {
    graceful_shutdown(Exec::Smol);
}

#[test]
fn async_std_driver_scenarios() {
    all_scenarios(Exec::AsyncStd);
}

#[test]
fn async_std_max_connections() {
    max_connections(Exec::AsyncStd);
}

#[test]
fn async_std_graceful_shutdown() {
    graceful_shutdown(Exec::AsyncStd);
}

fn write_merge(exec: Exec) {
    let s = Server::start(
        exec,
        ServeConfig::default().with_drive(
            arcly_async_io::DriveConfig::default().with_write_merge(Duration::from_millis(150)),
        ),
    );
    let merged = common::scenario_write_merge(s.addr, &s.factory.engine, "merged");
    let s2 = Server::start(exec, ServeConfig::default());
    let unmerged = common::scenario_write_merge(s2.addr, &s2.factory.engine, "unmerged");
    assert!(merged <= 5, "merged into {merged} bursts");
    assert!(unmerged >= 8, "unmerged arrived in {unmerged} bursts");
}

fn stalled_shutdown(exec: Exec) {
    let mut s = Server::start(
        exec,
        ServeConfig::default()
            .with_shutdown_grace(Duration::from_millis(300))
            .with_drive(
                arcly_async_io::DriveConfig::default()
                    .with_close_linger(Duration::from_millis(500)),
            ),
    );
    let stop = s.stop.take();
    let sig = s.stop_signal.clone();
    common::scenario_stalled_shutdown(
        s.addr,
        &s.factory.stats.clone(),
        move || {
            stop.unwrap().send(()).unwrap();
            sig.notify();
        },
        || s.wait_done(),
    );
}

#[test]
fn smol_write_merge() {
    write_merge(Exec::Smol);
}

#[test]
fn async_std_write_merge() {
    write_merge(Exec::AsyncStd);
}

#[test]
fn smol_stalled_shutdown() {
    stalled_shutdown(Exec::Smol);
}

#[test]
fn async_std_stalled_shutdown() {
    stalled_shutdown(Exec::AsyncStd);
}

fn rtmp(exec: Exec) {
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
    let addr = listener.get_ref().local_addr().unwrap();
    let factory: Arc<dyn arcly::session::SessionFactory> = Arc::new(
        arcly::rtmp::RtmpSessionFactory::allow_all(arcly::Engine::with_defaults()),
    );
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let shutdown = async move {
        let _ = stop_rx.recv().await;
    };
    let server = std::thread::spawn(move || match exec {
        Exec::Smol => smol::block_on(arcly_async_io::serve_tcp(
            listener,
            factory,
            shutdown,
            |c: ConnectionFuture| smol::spawn(c).detach(),
        )),
        Exec::AsyncStd => async_std::task::block_on(arcly_async_io::serve_tcp(
            listener,
            factory,
            shutdown,
            |c: ConnectionFuture| {
                async_std::task::spawn(c);
            },
        )),
    });
    common::scenario_rtmp(addr);
    stop_tx.send_blocking(()).unwrap();
    server.join().unwrap().unwrap();
}

#[test]
fn smol_rtmp_publish_and_play() {
    rtmp(Exec::Smol);
}

#[test]
fn async_std_rtmp_publish_and_play() {
    rtmp(Exec::AsyncStd);
}
