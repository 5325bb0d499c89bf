//! arcly-blocking UDP driver with a tiny echo `DatagramService` (no SRT):
//! batched echo with vectored sends, fan-out in sendmmsg batches, media
//! wake-ups bridged onto the service thread's signal, timers, graceful
//! shutdown.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../../tokio/tests/udp_common/mod.rs"]
#[macro_use]
mod udp_common;

use std::net::UdpSocket;
use std::sync::Arc;

use udp_common::{EchoFactory, Running, Shared};

fn start() -> Running {
    let shared = Arc::new(Shared::default());
    let factory = EchoFactory(shared.clone());
    let shutdown = arcly_blocking::Shutdown::new();
    let trigger = shutdown.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let sockets: Vec<UdpSocket> = udp_common::bind_two();
    let addrs: Vec<_> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
    std::thread::spawn(move || {
        let config = arcly_blocking::UdpConfig::default();
        let _ = done_tx.send(arcly_blocking::serve_udp_sockets(
            sockets, factory, shutdown, &config,
        ));
    });
    Running {
        addr: addrs[0],
        wildcard: addrs[1],
        shared,
        stop: Some(Box::new(move || trigger.trigger())),
        done: done_rx,
    }
}

udp_driver_tests!(start);
