//! The UDP driver: one task drives one [`DatagramService`] on its sockets,
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
use std::net::UdpSocket;
use std::task::{Context, Poll};

pub use arcly::datagram::UdpConfig;
use arcly::datagram::{DatagramIo, Received, RecvArena, SocketIndex, Transmit};
use arcly::time::{Clock, Instant};
use async_io::Async;

use crate::timer::ClockTimer;
use socket2::SockRef;

/// async-io sockets (in `SocketIndex` order), clock and timer for
/// [`arcly::datagram::DatagramDriver`].
pub(crate) struct AsyncIoUdp<'a> {
    sockets: &'a [Async<UdpSocket>],
    /// The socket whose turn it is to be read first.
    next: usize,
    arena: RecvArena,
    timer: ClockTimer,
}

impl<'a> AsyncIoUdp<'a> {
    pub(crate) fn new(sockets: &'a [Async<UdpSocket>], clock: Clock, config: &UdpConfig) -> Self {
        AsyncIoUdp {
            sockets,
            next: 0,
            arena: RecvArena::new(config.max_datagram),
            timer: ClockTimer::new(clock),
        }
    }

    fn socket(&self, index: SocketIndex) -> io::Result<&'a UdpSocket> {
        self.sockets
            .get(index.get())
            .map(Async::get_ref)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such socket"))
    }
}

impl DatagramIo for AsyncIoUdp<'_> {
    fn now(&self) -> Instant {
        self.timer.now()
    }

    fn try_recv(&mut self) -> io::Result<Option<Received>> {
        let n = self.sockets.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let Some(socket) = self.sockets.get(i) else {
                continue;
            };
            let index = SocketIndex(u16::try_from(i).unwrap_or(u16::MAX));
            let got = self.arena.try_recv_with(index, |buf| {
                arcly_socket::recv_from(SockRef::from(socket.get_ref()), buf)
            })?;
            if got.is_some() {
                self.next = i + 1;
                return Ok(got);
            }
        }
        Ok(None)
    }

    fn poll_recv_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut ready = false;
        for s in self.sockets {
            ready |= s.poll_readable(cx).is_ready();
        }
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn try_send(&mut self, t: &Transmit) -> io::Result<()> {
        arcly_socket::send_transmit(SockRef::from(self.socket(t.socket)?), t).map(|_| ())
    }

    fn try_send_batch(&mut self, batch: &[Transmit]) -> io::Result<usize> {
        let Some(first) = batch.first() else {
            return Ok(0);
        };
        arcly_socket::send_batch(SockRef::from(self.socket(first.socket)?), batch)
    }

    fn poll_send_ready(&mut self, cx: &mut Context<'_>, socket: SocketIndex) -> Poll<()> {
        match self.sockets.get(socket.get()) {
            Some(s) => s.poll_writable(cx).map(|_| ()),
            None => Poll::Ready(()),
        }
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
