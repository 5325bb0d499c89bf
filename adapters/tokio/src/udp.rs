//! The UDP driver: one task drives one [`DatagramService`] on one socket,
//! exactly per the loop of `arcly::datagram`, through
//! [`arcly::datagram::DatagramDriver`] (batches of [`UdpConfig::read_batch`]
//! reads into a zero-copy arena, media on signal, deadline, batches of
//! [`UdpConfig::sendmmsg_batch`] datagrams per `sendmmsg` (Linux) with a
//! full buffer parking the unsent ones in order until writable, then
//! waiting). This module gives it the tokio socket, clock and timer.
//!
//! On shutdown the service is closed and driven until `is_closed` or
//! [`UdpConfig::close_linger`] passes.

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use crate::timer::ClockTimer;
pub use arcly::datagram::UdpConfig;
use arcly::datagram::{DatagramIo, RecvArena, Transmit};
use arcly::time::{Clock, Instant};
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::UdpSocket;

pub(crate) use arcly_socket::tune_buffers;

/// A tokio socket, clock and timer for [`arcly::datagram::DatagramDriver`].
pub(crate) struct TokioUdp<'a> {
    socket: &'a UdpSocket,
    arena: RecvArena,
    timer: ClockTimer,
}

impl<'a> TokioUdp<'a> {
    pub(crate) fn new(socket: &'a UdpSocket, clock: Clock, config: &UdpConfig) -> Self {
        TokioUdp {
            socket,
            arena: RecvArena::new(config.max_datagram),
            timer: ClockTimer::new(clock),
        }
    }
}

impl DatagramIo for TokioUdp<'_> {
    fn now(&self) -> Instant {
        self.timer.now()
    }

    fn try_recv(&mut self) -> io::Result<Option<(SocketAddr, bytes::Bytes)>> {
        let socket = self.socket;
        self.arena.try_recv_with(|buf| socket.try_recv_from(buf))
    }

    fn poll_recv_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.socket.poll_recv_ready(cx).map(|_| ())
    }

    fn try_send(&mut self, t: &Transmit) -> io::Result<()> {
        let sock = SockRef::from(self.socket);
        self.socket
            .try_io(Interest::WRITABLE, || arcly_socket::send_transmit(sock, t))
            .map(|_| ())
    }

    fn try_send_batch(&mut self, batch: &[Transmit]) -> io::Result<usize> {
        // `try_io` clears the writable readiness on `WouldBlock`, so the
        // driver's `poll_send_ready` then waits for the next edge.
        let sock = SockRef::from(self.socket);
        self.socket
            .try_io(Interest::WRITABLE, || arcly_socket::send_batch(sock, batch))
    }

    fn poll_send_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.socket.poll_send_ready(cx).map(|_| ())
    }

    fn set_timer(&mut self, at: Instant) {
        self.timer.set(at);
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.timer.poll(cx)
    }

    fn clear_timer(&mut self) {
        self.timer.clear();
    }
}
