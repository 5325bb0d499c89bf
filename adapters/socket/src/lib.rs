//! OS socket helpers shared by the arcly adapters: UDP socket buffer sizes,
//! the TCP send-buffer cap of accepted connections ([`cap_send_buffer`]),
//! one vectored `sendmsg` per [`Transmit`] and batches of them in one
//! `sendmmsg` ([`send_batch`]), and receiving a datagram with the local
//! address it was sent to ([`recv_from`] after [`enable_pktinfo`]; a
//! wildcard bind learns which of its addresses a peer used). They live
//! here, not in the sans-IO core, so that `arcly` itself never touches a
//! socket.

mod batch;
mod recv;

pub use batch::{send_batch, MAX_BATCH, MAX_SLICES};
pub use recv::{enable_pktinfo, recv_from, RecvMeta};

use std::io::{self, IoSlice};
use std::net::SocketAddr;

use socket2::{SockAddr, SockRef};

use arcly::datagram::Transmit;

/// Asks for `size`-byte socket buffers and logs what the kernel granted.
pub fn tune_buffers(sock: SockRef<'_>, size: usize, local: Option<SocketAddr>) {
    if size == 0 {
        return;
    }
    if let Err(e) = sock.set_recv_buffer_size(size) {
        tracing::debug!(?local, "SO_RCVBUF: {e}");
    }
    if let Err(e) = sock.set_send_buffer_size(size) {
        tracing::debug!(?local, "SO_SNDBUF: {e}");
    }
    let rcv = sock.recv_buffer_size().unwrap_or(0);
    let snd = sock.send_buffer_size().unwrap_or(0);
    // Linux reports twice the value it granted (bookkeeping overhead).
    if rcv < size || snd < size {
        tracing::info!(
            ?local,
            asked = size,
            rcvbuf = rcv,
            sndbuf = snd,
            "the kernel capped the UDP socket buffers (raise net.core.rmem_max / wmem_max \
             for fewer drops under bursts)"
        );
    } else {
        tracing::debug!(?local, rcvbuf = rcv, sndbuf = snd, "UDP socket buffers");
    }
}

/// Caps the kernel send buffer of an accepted TCP connection (`SO_SNDBUF`)
/// at `size` bytes, so a peer that never reads holds at most that much
/// kernel memory (Linux books twice the value for overhead and turns off
/// send-buffer autotuning for the socket). `0` leaves the kernel default.
/// Failures are logged (debug) and otherwise ignored: the connection works
/// either way.
pub fn cap_send_buffer(sock: SockRef<'_>, size: usize) {
    if size == 0 {
        return;
    }
    if let Err(e) = sock.set_send_buffer_size(size) {
        tracing::debug!(size, "SO_SNDBUF: {e}");
    }
}

/// Readies a service's UDP socket bound at `local`: buffer sizes
/// (`config.socket_buffer`, see [`tune_buffers`]), and on a wildcard bind
/// the report of each datagram's destination address ([`enable_pktinfo`]).
pub fn prepare(sock: SockRef<'_>, config: &arcly::datagram::UdpConfig, local: SocketAddr) {
    tune_buffers(SockRef::from(&*sock), config.socket_buffer, Some(local));
    if local.ip().is_unspecified() {
        match enable_pktinfo(sock) {
            Ok(true) => tracing::debug!(%local, "destination addresses reported"),
            Ok(false) => {}
            Err(e) => tracing::debug!(%local, "IP_PKTINFO: {e}"),
        }
    }
}

/// One `sendmsg` of `t` (`Transmit::contents` as an `IoSlice` list, no
/// copy).
pub fn send_transmit(sock: SockRef<'_>, t: &Transmit) -> io::Result<usize> {
    let slices: smallvec::SmallVec<[IoSlice<'_>; 4]> =
        t.contents.iter().map(|b| IoSlice::new(b)).collect();
    sock.send_to_vectored(&slices, &SockAddr::from(t.destination))
}
