//! Receiving one datagram with its destination address: on a socket bound
//! to a wildcard address (`0.0.0.0`, `::`) a server must know which of its
//! addresses the peer wrote to, to answer from that one (a multi-homed
//! host would otherwise answer from whichever address the routing table
//! picks, and the peer's NAT or SRT/ICE state would not recognise it).
//!
//! [`enable_pktinfo`] asks the kernel for it (`IP_PKTINFO` for IPv4,
//! `IPV6_RECVPKTINFO`, RFC 3542 §6.1, for IPv6; Linux); [`recv_from`]
//! then reads it from the `recvmsg(2)` control data. Elsewhere, or when
//! not enabled, the destination is `None`.

// `unsafe` is denied workspace-wide. This module is the second exception
// in arcly-socket (after `batch`): `setsockopt` and `recvmsg` FFI calls and
// the control-message walk (`CMSG_*`). Each block says why it is sound.
#![allow(unsafe_code)]

use std::io;

use socket2::SockRef;

pub use arcly::datagram::RecvMeta;

/// Asks the kernel to report each datagram's destination address
/// (`IP_PKTINFO` on an IPv4 socket, `IPV6_RECVPKTINFO` on an IPv6 one).
/// `Ok(false)` where the platform has no such option.
pub fn enable_pktinfo(sock: SockRef<'_>) -> io::Result<bool> {
    imp::enable_pktinfo(sock)
}

/// Receives one datagram into `buf` with its sender and, where enabled, its
/// destination address. Non-blocking sockets report `WouldBlock`.
pub fn recv_from(sock: SockRef<'_>, buf: &mut [u8]) -> io::Result<RecvMeta> {
    imp::recv_from(sock, buf)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::{c_int, c_void};
    use std::io;
    use std::mem;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::os::fd::AsRawFd;

    use socket2::{SockAddr, SockAddrStorage, SockRef};

    use super::RecvMeta;

    pub(super) fn enable_pktinfo(sock: SockRef<'_>) -> io::Result<bool> {
        let (level, name) = if sock.local_addr()?.is_ipv6() {
            (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
        } else {
            (libc::IPPROTO_IP, libc::IP_PKTINFO)
        };
        let on: c_int = 1;
        // SAFETY: the option value is a live `c_int` of the stated length,
        // only read by the kernel during the call; the descriptor is
        // borrowed from `sock` for the call.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                level,
                name,
                (&raw const on).cast::<c_void>(),
                mem::size_of::<c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(true)
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Room for one `in6_pktinfo` control message (the larger of the two),
    /// 8-byte aligned as `cmsghdr` requires.
    #[repr(C, align(8))]
    struct Control([u8; 64]);

    pub(super) fn recv_from(sock: SockRef<'_>, buf: &mut [u8]) -> io::Result<RecvMeta> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast::<c_void>(),
            iov_len: buf.len(),
        };
        let mut control = Control([0; 64]);
        let mut storage = SockAddrStorage::zeroed();
        // SAFETY: `msghdr` is a plain C struct; all-zero is a valid value
        // (null pointers, zero lengths), the fields used are set below.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = (&raw mut storage).cast::<c_void>();
        msg.msg_namelen = storage.size_of();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast::<c_void>();
        msg.msg_controllen = control.0.len() as _;
        // SAFETY: `msg` points to `storage` (its full size), to one iovec
        // naming `buf` (writable, `buf.len()` bytes) and to `control`
        // (64 writable bytes, 8-aligned); all live and not otherwise
        // borrowed until the call returns. The kernel writes at most those
        // lengths and updates `msg_namelen`/`msg_controllen`/`msg_flags`.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &raw mut msg, 0) };
        let len = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        // SAFETY: the kernel wrote a socket address of `msg_namelen` bytes
        // into `storage` (a `sockaddr_storage`, at least that large).
        let addr = unsafe { SockAddr::new(storage, msg.msg_namelen) };
        let src = addr
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP sender"))?;
        let mut dst_ip = None;
        // SAFETY: `msg` was filled by `recvmsg`: `msg_control` points to
        // `control` and `msg_controllen` (<= 64) says how much of it holds
        // control messages. `CMSG_FIRSTHDR`/`CMSG_NXTHDR` only return
        // headers inside that length (or null); each header's data is read
        // only if its `cmsg_len` covers the struct read, with an unaligned
        // read (the data is aligned on Linux, but need not be assumed).
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            while !cmsg.is_null() {
                let c = &*cmsg;
                let data = libc::CMSG_DATA(cmsg);
                let room = (c.cmsg_len as usize)
                    .saturating_sub(data.offset_from(cmsg.cast::<u8>()).unsigned_abs());
                if c.cmsg_level == libc::IPPROTO_IP
                    && c.cmsg_type == libc::IP_PKTINFO
                    && room >= mem::size_of::<libc::in_pktinfo>()
                {
                    let info = data.cast::<libc::in_pktinfo>().read_unaligned();
                    dst_ip = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        info.ipi_addr.s_addr,
                    ))));
                } else if c.cmsg_level == libc::IPPROTO_IPV6
                    && c.cmsg_type == libc::IPV6_PKTINFO
                    && room >= mem::size_of::<libc::in6_pktinfo>()
                {
                    let info = data.cast::<libc::in6_pktinfo>().read_unaligned();
                    let ip = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                    // A v4-mapped destination on a dual-stack socket is the
                    // IPv4 address the peer wrote to.
                    dst_ip = Some(match ip.to_ipv4_mapped() {
                        Some(v4) => IpAddr::V4(v4),
                        None => IpAddr::V6(ip),
                    });
                }
                cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
            }
        }
        Ok(RecvMeta {
            len: len.min(buf.len()),
            src,
            dst_ip,
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::mem::MaybeUninit;

    use socket2::SockRef;

    use super::RecvMeta;

    pub(super) fn enable_pktinfo(_sock: SockRef<'_>) -> io::Result<bool> {
        Ok(false)
    }

    pub(super) fn recv_from(sock: SockRef<'_>, buf: &mut [u8]) -> io::Result<RecvMeta> {
        // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the kernel
        // only writes initialised bytes into the buffer; every byte of
        // `buf` is initialised already and stays so.
        let uninit = unsafe {
            std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<MaybeUninit<u8>>(), buf.len())
        };
        let (len, addr) = sock.recv_from(uninit)?;
        let src = addr
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP sender"))?;
        Ok(RecvMeta {
            len,
            src,
            dst_ip: None,
        })
    }
}
