//! The UDP driver: one task drives one [`DatagramService`] on its sockets
//! (one for SRT; an RTP + RTCP pair, several WebRTC ports),
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
use std::task::{Context, Poll};

use crate::timer::ClockTimer;
pub use arcly::datagram::UdpConfig;
use arcly::datagram::{DatagramIo, Received, RecvArena, SocketIndex, Transmit};
use arcly::time::{Clock, Instant};
use socket2::SockRef;
use tokio::io::Interest;
use tokio::net::UdpSocket;

pub(crate) use arcly_socket::prepare;

/// Tokio sockets (in `SocketIndex` order), clock and timer for
/// [`arcly::datagram::DatagramDriver`].
pub(crate) struct TokioUdp<'a> {
    sockets: &'a [UdpSocket],
    /// The socket whose turn it is to be read first.
    next: usize,
    arena: RecvArena,
    timer: ClockTimer,
}

impl<'a> TokioUdp<'a> {
    pub(crate) fn new(sockets: &'a [UdpSocket], clock: Clock, config: &UdpConfig) -> Self {
        TokioUdp {
            sockets,
            next: 0,
            arena: RecvArena::new(config.max_datagram),
            timer: ClockTimer::new(clock),
        }
    }

    fn socket(&self, index: SocketIndex) -> io::Result<&'a UdpSocket> {
        self.sockets
            .get(index.get())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no such socket"))
    }
}

impl DatagramIo for TokioUdp<'_> {
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
            // `try_io` clears the readable readiness on `WouldBlock`.
            let got = self.arena.try_recv_with(index, |buf| {
                socket.try_io(Interest::READABLE, || {
                    arcly_socket::recv_from(SockRef::from(socket), buf)
                })
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
            ready |= s.poll_recv_ready(cx).is_ready();
        }
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn try_send(&mut self, t: &Transmit) -> io::Result<()> {
        let socket = self.socket(t.socket)?;
        let sock = SockRef::from(socket);
        socket
            .try_io(Interest::WRITABLE, || arcly_socket::send_transmit(sock, t))
            .map(|_| ())
    }

    fn try_send_batch(&mut self, batch: &[Transmit]) -> io::Result<usize> {
        // `try_io` clears the writable readiness on `WouldBlock`, so the
        // driver's `poll_send_ready` then waits for the next edge.
        let Some(first) = batch.first() else {
            return Ok(0);
        };
        let socket = self.socket(first.socket)?;
        let sock = SockRef::from(socket);
        socket.try_io(Interest::WRITABLE, || arcly_socket::send_batch(sock, batch))
    }

    fn poll_send_ready(&mut self, cx: &mut Context<'_>, socket: SocketIndex) -> Poll<()> {
        match self.sockets.get(socket.get()) {
            Some(s) => s.poll_send_ready(cx).map(|_| ()),
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
