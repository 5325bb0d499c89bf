//! arcly-tokio UDP driver with a tiny echo `DatagramService` (no SRT):
//! batched echo with vectored sends, fan-out in sendmmsg batches, media
//! wake-ups through the signal set, timers, graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod udp_common;

use std::sync::Arc;

use udp_common::{EchoFactory, Running, Shared};

fn start() -> Running {
    let shared = Arc::new(Shared::default());
    let factory = EchoFactory(shared.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(socket.local_addr().unwrap()).unwrap();
            let shutdown = async move {
                let _ = stop_rx.await;
            };
            let r = arcly_tokio::serve_udp(socket, factory, shutdown).await;
            let _ = done_tx.send(r);
        });
    });
    Running {
        addr: addr_rx.recv().unwrap(),
        shared,
        stop: Some(Box::new(move || {
            let _ = stop_tx.send(());
        })),
        done: done_rx,
    }
}

udp_driver_tests!(start);
