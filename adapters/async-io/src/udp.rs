//! The UDP driver: one task drives one [`DatagramService`] on one socket,
//! exactly per the loop of `arcly::datagram`, through
//! [`arcly::datagram::DatagramDriver`] (batches of [`UdpConfig::read_batch`]
//! reads into a zero-copy arena, media on signal, deadline, batches of
//! [`UdpConfig::sendmmsg_batch`] datagrams per `sendmmsg` (Linux; one
//! `sendmsg` each elsewhere) with a full buffer parking the unsent ones in
//! order until writable, then waiting). This module gives it the async-io
//! socket, clock and timer.
//!
//! On shutdown the service is closed and driven until `is_closed` or
//! [`UdpConfig::close_linger`] passes.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::task::{Context, Poll};

pub use arcly::datagram::UdpConfig;
use arcly::datagram::{DatagramIo, RecvArena, Transmit};
use arcly::time::{Clock, Instant};
use async_io::Async;

use crate::timer::ClockTimer;
use socket2::SockRef;

pub(crate) use arcly_socket::tune_buffers;

/// An async-io socket, clock and timer for
/// [`arcly::datagram::DatagramDriver`].
pub(crate) struct AsyncIoUdp<'a> {
    socket: &'a Async<UdpSocket>,
    arena: RecvArena,
    timer: ClockTimer,
}

impl<'a> AsyncIoUdp<'a> {
    pub(crate) fn new(socket: &'a Async<UdpSocket>, clock: Clock, config: &UdpConfig) -> Self {
        AsyncIoUdp {
            socket,
            arena: RecvArena::new(config.max_datagram),
            timer: ClockTimer::new(clock),
        }
    }
}

impl DatagramIo for AsyncIoUdp<'_> {
    fn now(&self) -> Instant {
        self.timer.now()
    }

    fn try_recv(&mut self) -> io::Result<Option<(SocketAddr, bytes::Bytes)>> {
        let socket = self.socket.get_ref();
        self.arena.try_recv_with(|buf| socket.recv_from(buf))
    }

    fn poll_recv_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.socket.poll_readable(cx).map(|_| ())
    }

    fn try_send(&mut self, t: &Transmit) -> io::Result<()> {
        arcly_socket::send_transmit(SockRef::from(self.socket.get_ref()), t).map(|_| ())
    }

    fn try_send_batch(&mut self, batch: &[Transmit]) -> io::Result<usize> {
        arcly_socket::send_batch(SockRef::from(self.socket.get_ref()), batch)
    }

    fn poll_send_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.socket.poll_writable(cx).map(|_| ())
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
