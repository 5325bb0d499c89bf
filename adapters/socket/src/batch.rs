//! Batched UDP sends: many [`Transmit`]s in one `sendmmsg(2)` call on
//! Linux, one `sendmsg` each elsewhere.
//!
//! A fan-out (one SRT publish to 100 viewers) sends tens of thousands of
//! ~1316-byte datagrams per second to different destinations; one syscall
//! per datagram is most of the server's CPU. `sendmmsg` hands up to
//! [`MAX_BATCH`] of them to the kernel at once, each with its own
//! destination and its own iovec list (no copy of the payload).
//!
//! A datagram whose [`Transmit::src_ip`] is set is sent from that local
//! address: its header carries an `IP_PKTINFO` (IPv4 socket) or
//! `IPV6_PKTINFO` (IPv6 socket; an IPv4 source as a v4-mapped address)
//! control message, RFC 3542 §6.1 — how a socket bound to a wildcard
//! address answers from the address the peer wrote to. Linux only; a
//! datagram sent alone (more than [`MAX_SLICES`] pieces) or elsewhere goes
//! from the address the routing table picks.
//!
//! The contract of [`send_batch`] is that of `sendmmsg` itself, so that
//! every platform behaves alike: the datagrams are sent in order and the
//! call returns how many of the *first* ones were handed to the socket. If
//! the first one cannot be sent the call fails with its error and nothing
//! was sent; a datagram that fails after others were sent ends the call
//! early with `Ok(count)` and its error is reported by the next call, which
//! starts with it.

// `unsafe` is denied workspace-wide. This module is its one exception in
// arcly-socket: the `sendmmsg` FFI call and the construction of the C
// structures it reads (zeroed `mmsghdr`, raw pointers into the caller's
// `Bytes` and into stack arrays that outlive the call). Each block says
// why it is sound.
#![allow(unsafe_code)]

use std::io;

use socket2::SockRef;

use arcly::datagram::Transmit;

use crate::send_transmit;

/// Most datagrams one [`send_batch`] call sends (`sendmmsg` accepts up to
/// 1024; 64 keeps the stack arrays at ~15 KiB and is past the point of
/// diminishing returns for syscall overhead).
pub const MAX_BATCH: usize = 64;

/// Most slices (`Transmit::contents` pieces) of a datagram sent inside a
/// batch; a datagram with more is sent alone with
/// [`send_transmit`](crate::send_transmit).
pub const MAX_SLICES: usize = 8;

/// iovecs shared by the datagrams of one batch (a batch ends early when the
/// next datagram's slices do not fit; 4 per datagram on average).
#[cfg(target_os = "linux")]
const IOV_POOL: usize = 4 * MAX_BATCH;

/// Sends the datagrams of `batch` in order, as many as the socket takes in
/// one call (at most [`MAX_BATCH`]): `sendmmsg(2)` on Linux, one
/// [`send_transmit`](crate::send_transmit) per datagram elsewhere.
///
/// Returns how many of the first datagrams were sent (`Ok(0)` only for an
/// empty `batch`). `Err` means the first datagram was not sent: on a
/// non-blocking socket `WouldBlock` when the send buffer is full (re-send
/// the whole batch once writable); any other error belongs to that first
/// datagram alone (e.g. `EMSGSIZE`, a destination of the wrong address
/// family) — skip it and send the rest. `Ok(n)` with `n < batch.len()`
/// means the datagram at `n` was not sent (buffer full, or an error the
/// next call starting with it reports).
///
/// On a blocking socket each datagram may block up to the socket's send
/// timeout.
pub fn send_batch(sock: SockRef<'_>, batch: &[Transmit]) -> io::Result<usize> {
    match batch.first() {
        None => Ok(0),
        // Too many slices for the fixed iovec arrays: alone, as before.
        Some(first) if first.contents.len() > MAX_SLICES => send_transmit(sock, first).map(|_| 1),
        Some(_) => imp::send_batch(sock, batch),
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::{c_uint, c_void};
    use std::io;
    use std::mem;
    use std::net::{IpAddr, SocketAddr};
    use std::os::fd::AsRawFd;

    use smallvec::SmallVec;
    use socket2::{SockAddr, SockRef};

    use arcly::datagram::Transmit;

    use super::{IOV_POOL, MAX_BATCH, MAX_SLICES};

    /// Bytes of room for one source-address control message.
    const CONTROL: usize = 48;

    /// One control message, aligned for `cmsghdr`; zero-filled, so that
    /// every byte the kernel reads (`msg_controllen` of them) is
    /// initialised, the alignment padding included.
    #[repr(C, align(8))]
    #[derive(Clone, Copy)]
    struct Control([u8; CONTROL]);

    // SAFETY (both): `CMSG_SPACE` is plain arithmetic on its argument.
    const _: () = assert!(
        unsafe { libc::CMSG_SPACE(mem::size_of::<libc::in6_pktinfo>() as u32) } as usize <= CONTROL
    );
    const _: () = assert!(
        unsafe { libc::CMSG_SPACE(mem::size_of::<libc::in_pktinfo>() as u32) } as usize <= CONTROL
    );

    /// A zero-filled [`Control`] holding `hdr` and then `info` at
    /// `CMSG_DATA` (offset `CMSG_LEN(0)`); returns it with its
    /// `CMSG_SPACE`.
    fn control<T: Copy>(hdr: libc::cmsghdr, info: T) -> (Control, usize) {
        let mut c = Control([0; CONTROL]);
        let len = mem::size_of::<T>() as u32;
        // SAFETY: `CMSG_LEN`/`CMSG_SPACE` are plain arithmetic.
        let (data_at, space) = unsafe { (libc::CMSG_LEN(0) as usize, libc::CMSG_SPACE(len)) };
        let base = c.0.as_mut_ptr();
        // SAFETY: both writes stay inside `c`: the header at 0 and `info`
        // at `data_at`, and `data_at + size_of::<T>()` <= `CMSG_SPACE` of
        // the two `T`s used here (`in_pktinfo`, `in6_pktinfo`) <=
        // `CONTROL` (asserted at compile time). Unaligned writes: no
        // alignment is assumed. `cmsghdr`, `in_pktinfo` and `in6_pktinfo`
        // are plain C structs without implicit padding on Linux.
        unsafe {
            base.cast::<libc::cmsghdr>().write_unaligned(hdr);
            base.wrapping_add(data_at).cast::<T>().write_unaligned(info);
        }
        (c, space as usize)
    }

    /// The control message that sends `t` from its `src_ip`, and its
    /// `CMSG_SPACE`; `None` without a source or when it cannot apply (an
    /// IPv6 source to an IPv4 destination).
    fn control_for(t: &Transmit) -> Option<(Control, usize)> {
        let src = t.src_ip?;
        // SAFETY: `cmsghdr` is a plain C struct (integers, and private
        // padding on some libcs); all zero is a valid value.
        let mut hdr: libc::cmsghdr = unsafe { mem::zeroed() };
        match (src, t.destination) {
            (IpAddr::V4(v4), SocketAddr::V4(_)) => {
                let len = mem::size_of::<libc::in_pktinfo>() as u32;
                // SAFETY: `CMSG_LEN` is plain arithmetic.
                let cmsg_len = unsafe { libc::CMSG_LEN(len) };
                hdr.cmsg_len = cmsg_len as _;
                hdr.cmsg_level = libc::IPPROTO_IP;
                hdr.cmsg_type = libc::IP_PKTINFO;
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(v4).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                Some(control(hdr, info))
            }
            (ip, SocketAddr::V6(_)) => {
                let v6 = match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                let len = mem::size_of::<libc::in6_pktinfo>() as u32;
                // SAFETY: `CMSG_LEN` is plain arithmetic.
                let cmsg_len = unsafe { libc::CMSG_LEN(len) };
                hdr.cmsg_len = cmsg_len as _;
                hdr.cmsg_level = libc::IPPROTO_IPV6;
                hdr.cmsg_type = libc::IPV6_PKTINFO;
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: v6.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                Some(control(hdr, info))
            }
            (IpAddr::V6(_), SocketAddr::V4(_)) => None,
        }
    }

    /// `sendmmsg` of the longest prefix of `batch` that fits the fixed
    /// arrays (at least the first datagram: the caller checked its slice
    /// count).
    pub(super) fn send_batch(sock: SockRef<'_>, batch: &[Transmit]) -> io::Result<usize> {
        // Everything the kernel reads lives in these four locals, which
        // are neither moved nor modified after the pointers into them are
        // taken below, and outlive the `sendmmsg` call at the end:
        // - `addrs`: one socket address per datagram (inline storage: the
        //   capacity is MAX_BATCH and no more are pushed, so it never
        //   spills to the heap or moves);
        // - `iovs`: the slices of every datagram, back to back;
        // - `controls`: the source-address control message of each
        //   datagram that has one (`None` otherwise);
        // - `hdrs`: one `mmsghdr` per datagram pointing into them.
        // The payload bytes belong to `batch`, borrowed for the whole call.
        let mut addrs: SmallVec<[SockAddr; MAX_BATCH]> = SmallVec::new();
        let mut iovs = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; IOV_POOL];
        let mut controls: [Option<(Control, usize)>; MAX_BATCH] = [None; MAX_BATCH];
        let mut used = 0;
        for (t, control) in batch.iter().take(MAX_BATCH).zip(controls.iter_mut()) {
            let n = t.contents.len();
            if n > MAX_SLICES || used + n > IOV_POOL {
                break; // sent by a later call
            }
            for (slot, piece) in iovs.iter_mut().skip(used).zip(&t.contents) {
                *slot = libc::iovec {
                    // The kernel only reads through it (send path).
                    iov_base: piece.as_ptr().cast_mut().cast::<c_void>(),
                    iov_len: piece.len(),
                };
            }
            used += n;
            addrs.push(SockAddr::from(t.destination));
            *control = control_for(t);
        }
        let count = addrs.len();
        if count == 0 {
            return Ok(0);
        }

        // SAFETY: `mmsghdr` is a plain C struct of integers and raw
        // pointers (plus private padding fields on some libcs); all zero
        // is a valid value of each (null pointers, zero lengths and flags).
        let zeroed: libc::mmsghdr = unsafe { mem::zeroed() };
        let mut hdrs = [zeroed; MAX_BATCH];
        // One base pointer for all iovecs, taken after they were written
        // and never followed by another borrow of `iovs`.
        let iov_base = iovs.as_mut_ptr();
        let mut offset = 0;
        for (((hdr, addr), t), control) in hdrs
            .iter_mut()
            .zip(&addrs)
            .zip(batch)
            .zip(controls.iter_mut())
        {
            let n = t.contents.len();
            if let Some((c, space)) = control {
                // The kernel only reads the control message (send path).
                hdr.msg_hdr.msg_control = (&raw mut *c).cast::<c_void>();
                hdr.msg_hdr.msg_controllen = *space as _;
            }
            // The kernel only reads the address (send path).
            hdr.msg_hdr.msg_name = addr.as_ptr().cast_mut().cast::<c_void>();
            hdr.msg_hdr.msg_namelen = addr.len();
            // In bounds: offset + n <= used <= IOV_POOL (one past the end
            // only when n == 0, which the kernel then does not read).
            hdr.msg_hdr.msg_iov = iov_base.wrapping_add(offset);
            hdr.msg_hdr.msg_iovlen = n as _;
            offset += n;
        }

        // SAFETY: `hdrs` holds `count` (<= MAX_BATCH, its length)
        // initialized headers; each points to a socket address in `addrs`
        // of the length it states, and to `msg_iovlen` iovecs in `iovs`,
        // each naming `iov_len` readable bytes of a `Bytes` in `batch`, and
        // (for a datagram with a source address) to one control message in
        // `controls` of `msg_controllen` (= `CMSG_SPACE` of its data, at
        // most `CONTROL`) initialised bytes, laid out as
        // `CMSG_FIRSTHDR`/`CMSG_DATA` expect.
        // All of them are alive and unmodified until the call
        // returns, and the kernel does not keep the pointers afterwards (it
        // copies what it sends). It writes only `msg_len` of each header,
        // inside `hdrs`. The descriptor is borrowed from `sock` for the
        // call.
        let sent = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                count as c_uint, // <= MAX_BATCH = 64
                0,
            )
        };
        // Negative only on error (`-1`, errno set); otherwise <= count.
        usize::try_from(sent).map_err(|_| io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;

    use socket2::SockRef;

    use arcly::datagram::Transmit;

    use super::MAX_BATCH;
    use crate::send_transmit;

    /// One `sendmsg` per datagram with `sendmmsg`'s contract: stop at the
    /// first failure, report it only if nothing was sent.
    pub(super) fn send_batch(sock: SockRef<'_>, batch: &[Transmit]) -> io::Result<usize> {
        let mut sent = 0;
        for t in batch.iter().take(MAX_BATCH) {
            match send_transmit(SockRef::from(&*sock), t) {
                Ok(_) => sent += 1,
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }
}
