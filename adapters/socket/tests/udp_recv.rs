//! `recv_from` against real UDP sockets: on a wildcard bind with
//! `enable_pktinfo`, each datagram reports the local address the sender
//! wrote to (two loopback addresses, and `::1` on an IPv6 wildcard when
//! the host has IPv6); without it, or on a specific bind, `None`; a
//! datagram longer than the buffer is cut to the buffer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use arcly_socket::{enable_pktinfo, recv_from};
use socket2::SockRef;

fn bound(addr: &str) -> UdpSocket {
    let s = UdpSocket::bind(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

#[test]
fn a_wildcard_bind_reports_the_destination_of_each_datagram() {
    let server = bound("0.0.0.0:0");
    assert_eq!(
        enable_pktinfo(SockRef::from(&server)).unwrap(),
        cfg!(target_os = "linux")
    );
    let port = server.local_addr().unwrap().port();
    let client = bound("127.0.0.1:0");
    let mut buf = [0u8; 64];
    for (i, ip) in ["127.0.0.1", "127.0.0.2", "127.0.0.1"]
        .into_iter()
        .enumerate()
    {
        let to = SocketAddr::new(ip.parse().unwrap(), port);
        client.send_to(format!("hello {i}").as_bytes(), to).unwrap();
        let meta = recv_from(SockRef::from(&server), &mut buf).unwrap();
        assert_eq!(&buf[..meta.len], format!("hello {i}").as_bytes());
        assert_eq!(meta.src, client.local_addr().unwrap());
        if cfg!(target_os = "linux") {
            assert_eq!(meta.dst_ip, Some(ip.parse::<IpAddr>().unwrap()));
        }
    }
    // Longer than the buffer: cut, and the sender is still right.
    client
        .send_to(
            &[7u8; 200],
            server
                .local_addr()
                .map(|a| SocketAddr::new("127.0.0.1".parse().unwrap(), a.port()))
                .unwrap(),
        )
        .unwrap();
    let meta = recv_from(SockRef::from(&server), &mut buf).unwrap();
    assert_eq!(meta.len, buf.len());
    assert_eq!(meta.src, client.local_addr().unwrap());
}

#[test]
fn without_pktinfo_the_destination_is_not_reported() {
    let server = bound("127.0.0.1:0");
    let client = bound("127.0.0.1:0");
    client.send_to(b"x", server.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 16];
    let meta = recv_from(SockRef::from(&server), &mut buf).unwrap();
    assert_eq!((meta.len, meta.dst_ip), (1, None));
}

#[test]
fn an_ipv6_wildcard_bind_reports_the_destination() {
    let Ok(server) = UdpSocket::bind("[::]:0") else {
        eprintln!("no IPv6 on this host");
        return;
    };
    server
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let Ok(client) = UdpSocket::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback on this host");
        return;
    };
    assert_eq!(
        enable_pktinfo(SockRef::from(&server)).unwrap(),
        cfg!(target_os = "linux")
    );
    let port = server.local_addr().unwrap().port();
    client
        .send_to(b"six", SocketAddr::new("::1".parse().unwrap(), port))
        .unwrap();
    let mut buf = [0u8; 16];
    let meta = recv_from(SockRef::from(&server), &mut buf).unwrap();
    assert_eq!(&buf[..meta.len], b"six");
    if cfg!(target_os = "linux") {
        assert_eq!(meta.dst_ip, Some("::1".parse::<IpAddr>().unwrap()));
    }
}

#[test]
fn a_non_blocking_socket_reports_would_block() {
    let server = bound("0.0.0.0:0");
    enable_pktinfo(SockRef::from(&server)).unwrap();
    server.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    let e = recv_from(SockRef::from(&server), &mut buf).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
}

/// A wildcard-bound socket answers from the address each peer wrote to:
/// `Transmit::src_ip` goes out as `IP_PKTINFO` / `IPV6_PKTINFO`, in one
/// `sendmmsg` batch mixing sources (and a datagram without one).
#[test]
fn a_wildcard_bind_sends_from_the_chosen_source_address() {
    use arcly::datagram::Transmit;
    use arcly_socket::send_batch;
    use bytes::Bytes;

    let server = bound("0.0.0.0:0");
    let port = server.local_addr().unwrap().port();
    let client = bound("127.0.0.1:0");
    let to = client.local_addr().unwrap();
    let sources = [
        Some("127.0.0.2"),
        Some("127.0.0.1"),
        None,
        Some("127.0.0.3"),
    ];
    let batch: Vec<Transmit> = sources
        .iter()
        .enumerate()
        .map(|(i, src)| Transmit {
            src_ip: src.map(|s| s.parse().unwrap()),
            ..Transmit::new(to, [Bytes::from(format!("d{i}"))].into_iter().collect())
        })
        .collect();
    let mut sent = 0;
    while sent < batch.len() {
        sent += send_batch(SockRef::from(&server), &batch[sent..]).unwrap();
    }
    let mut buf = [0u8; 16];
    for (i, src) in sources.iter().enumerate() {
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("d{i}").as_bytes());
        assert_eq!(from.port(), port);
        if cfg!(target_os = "linux") {
            let want: IpAddr = src.unwrap_or("127.0.0.1").parse().unwrap();
            assert_eq!(from.ip(), want, "datagram {i} left from its source");
        }
    }
    // IPv6 wildcard: `::1` as the source.
    let (Ok(server6), Ok(client6)) = (UdpSocket::bind("[::]:0"), UdpSocket::bind("[::1]:0")) else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI hosts have IPv6 loopback"
        );
        return;
    };
    client6
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let t = Transmit {
        src_ip: Some("::1".parse().unwrap()),
        ..Transmit::new(
            client6.local_addr().unwrap(),
            [Bytes::from_static(b"v6")].into_iter().collect(),
        )
    };
    assert_eq!(send_batch(SockRef::from(&server6), &[t]).unwrap(), 1);
    let (n, from) = client6.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"v6");
    assert_eq!(from.ip(), "::1".parse::<IpAddr>().unwrap());
}
