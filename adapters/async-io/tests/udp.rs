//! arcly-async-io UDP driver with a tiny echo `DatagramService` (no SRT),
//! under smol and under async-std's executor: batched echo with vectored
//! sends, fan-out in sendmmsg batches, media wake-ups through the signal
//! set, timers, graceful shutdown.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../../tokio/tests/udp_common/mod.rs"]
mod udp_common;

use std::net::UdpSocket;
use std::sync::Arc;

use arcly::engine::Signal;
use async_io::Async;
use udp_common::{EchoFactory, Running, Shared};

#[derive(Clone, Copy)]
enum Exec {
    Smol,
    AsyncStd,
}

fn start(exec: Exec) -> Running {
    let shared = Arc::new(Shared::default());
    let factory = EchoFactory(shared.clone());
    let stop = Signal::new();
    let seen = stop.epoch();
    let wait = stop.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let sockets: Vec<Async<UdpSocket>> = udp_common::bind_two()
        .into_iter()
        .map(|s| Async::new(s).unwrap())
        .collect();
    let addrs: Vec<_> = sockets
        .iter()
        .map(|s| s.get_ref().local_addr().unwrap())
        .collect();
    std::thread::spawn(move || {
        let config = arcly_async_io::UdpConfig::default();
        let fut = async move {
            arcly_async_io::serve_udp_sockets(
                sockets,
                factory,
                async move {
                    wait.wait(seen).await;
                },
                &config,
            )
            .await
        };
        let r = match exec {
            Exec::Smol => smol::block_on(fut),
            Exec::AsyncStd => async_std::task::block_on(async_std::task::spawn(fut)),
        };
        let _ = done_tx.send(r);
    });
    Running {
        addr: addrs[0],
        wildcard: addrs[1],
        shared,
        stop: Some(Box::new(move || stop.notify())),
        done: done_rx,
    }
}

#[test]
fn echo_smol() {
    udp_common::check_echo(&start(Exec::Smol));
}

#[test]
fn echo_async_std() {
    udp_common::check_echo(&start(Exec::AsyncStd));
}

#[test]
fn media_smol() {
    udp_common::check_media(&start(Exec::Smol));
}

#[test]
fn media_async_std() {
    udp_common::check_media(&start(Exec::AsyncStd));
}

#[test]
fn fanout_smol() {
    udp_common::check_fanout(&start(Exec::Smol));
}

#[test]
fn fanout_async_std() {
    udp_common::check_fanout(&start(Exec::AsyncStd));
}

#[test]
fn timer_smol() {
    udp_common::check_timer(&start(Exec::Smol));
}

#[test]
fn timer_async_std() {
    udp_common::check_timer(&start(Exec::AsyncStd));
}

#[test]
fn shutdown_smol() {
    udp_common::check_shutdown(start(Exec::Smol));
}

#[test]
fn shutdown_async_std() {
    udp_common::check_shutdown(start(Exec::AsyncStd));
}

#[test]
fn two_sockets_and_pktinfo_smol() {
    udp_common::check_sockets(&start(Exec::Smol));
}

#[test]
fn commands_async_std() {
    udp_common::check_commands(&start(Exec::AsyncStd));
}
