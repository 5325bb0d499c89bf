//! `send_batch` against real UDP sockets on loopback: every receiver gets
//! exactly its bytes, in order, for datagrams of different sizes and slice
//! counts; a failing datagram in the middle of a batch ends the call early
//! and is reported alone; a full send buffer accepts part of a batch and
//! the rest can be re-sent (in a private network namespace whose loopback
//! has a rate-limiting qdisc: on a plain loopback the kernel never fills a
//! UDP send buffer).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use arcly::datagram::Transmit;
use arcly_socket::{send_batch, MAX_BATCH, MAX_SLICES};
use bytes::Bytes;
use smallvec::SmallVec;
use socket2::SockRef;

fn receiver() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let _ = SockRef::from(&s).set_recv_buffer_size(4 << 20);
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// Datagram `i` to `to`: `len` bytes in `slices` pieces (the last may be
/// longer), content derived from `i` so that a misplaced byte shows.
fn transmit(to: SocketAddr, i: usize, len: usize, slices: usize) -> Transmit {
    let bytes: Vec<u8> = (0..len).map(|k| (i * 31 + k * 7) as u8).collect();
    let mut contents: SmallVec<[Bytes; 2]> = SmallVec::new();
    let piece = len / slices.max(1);
    let mut at = 0;
    for s in 0..slices {
        let end = if s + 1 == slices { len } else { at + piece };
        contents.push(Bytes::copy_from_slice(&bytes[at..end]));
        at = end;
    }
    Transmit::new(to, contents)
}

fn recv_all(s: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 70_000];
    (0..n)
        .map(|_| {
            let (len, _) = s.recv_from(&mut buf).expect("a datagram");
            buf[..len].to_vec()
        })
        .collect()
}

/// Receives `n` datagrams on a thread (so that a small receive buffer does
/// not drop a burst), then checks that no more arrive.
fn spawn_recv(s: UdpSocket, n: usize) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    std::thread::spawn(move || {
        let got = recv_all(&s, n);
        assert_nothing_more(&s);
        got
    })
}

fn assert_nothing_more(s: &UdpSocket) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 2048];
    match s.recv_from(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        other => panic!("unexpected extra datagram: {other:?}"),
    }
}

/// The driver's loop in small: re-send the tail after a partial count,
/// skip a datagram whose error is not `WouldBlock`. Returns the calls made
/// and the indices skipped with their errors.
fn send_everything(sock: &UdpSocket, batch: &[Transmit]) -> (usize, Vec<(usize, io::Error)>) {
    let mut at = 0;
    let mut calls = 0;
    let mut skipped = Vec::new();
    while at < batch.len() {
        calls += 1;
        match send_batch(SockRef::from(sock), &batch[at..]) {
            Ok(n) => {
                assert!(
                    (1..=MAX_BATCH).contains(&n) && at + n <= batch.len(),
                    "count {n}"
                );
                at += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => {
                skipped.push((at, e));
                at += 1;
            }
        }
    }
    (calls, skipped)
}

#[test]
fn every_receiver_gets_its_datagrams_in_order() {
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let receivers: Vec<UdpSocket> = (0..5).map(|_| receiver()).collect();
    let addrs: Vec<SocketAddr> = receivers.iter().map(|r| r.local_addr().unwrap()).collect();
    // 150 datagrams round-robin over 5 receivers: sizes 0..1500 and 9000,
    // 0 to MAX_SLICES + 2 slices (past MAX_SLICES: sent alone).
    let sizes = [1316, 0, 1, 188, 1500, 9000, 7, 1316, 333, 64];
    let batch: Vec<Transmit> = (0..150)
        .map(|i| {
            let len = sizes[i % sizes.len()];
            let slices = if len == 0 {
                (i / 10) % 2
            } else {
                (i % (MAX_SLICES + 3)).max(1)
            };
            transmit(addrs[i % addrs.len()], i, len, slices)
        })
        .collect();
    assert!(batch.iter().any(|t| t.contents.len() > MAX_SLICES));
    assert!(batch.iter().any(|t| t.contents.is_empty()));
    let expected: Vec<Vec<Vec<u8>>> = (0..addrs.len())
        .map(|r| {
            batch
                .iter()
                .enumerate()
                .filter(|(i, _)| i % addrs.len() == r)
                .map(|(_, t)| t.to_bytes().to_vec())
                .collect()
        })
        .collect();
    let readers: Vec<_> = receivers
        .into_iter()
        .zip(&expected)
        .map(|(s, e)| spawn_recv(s, e.len()))
        .collect();

    // The first call batches (stops at the first datagram with too many
    // slices, index MAX_SLICES + 1).
    let first = send_batch(SockRef::from(&sender), &batch).unwrap();
    #[cfg(target_os = "linux")]
    assert_eq!(
        first,
        MAX_SLICES + 1,
        "one sendmmsg up to the 9-slice datagram"
    );
    assert!(first >= 1);
    let (calls, skipped) = send_everything(&sender, &batch[first..]);
    assert!(skipped.is_empty(), "{skipped:?}");
    #[cfg(target_os = "linux")]
    assert!(calls < 40, "{calls} calls for 150 datagrams: not batched");

    for (r, (reader, expected)) in readers.into_iter().zip(&expected).enumerate() {
        let got = reader.join().unwrap();
        for (k, (g, e)) in got.iter().zip(expected).enumerate() {
            assert!(
                g == e,
                "receiver {r}, datagram {k}: {} bytes vs {} expected",
                g.len(),
                e.len()
            );
        }
    }
}

#[test]
fn a_batch_is_capped_and_the_rest_can_be_resent() {
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let r = receiver();
    let to = r.local_addr().unwrap();
    let batch: Vec<Transmit> = (0..200).map(|i| transmit(to, i, 1316, 2)).collect();
    let reader = spawn_recv(r, batch.len());
    let n = send_batch(SockRef::from(&sender), &batch).unwrap();
    assert!((1..=MAX_BATCH).contains(&n));
    #[cfg(target_os = "linux")]
    assert_eq!(n, MAX_BATCH);
    let (_, skipped) = send_everything(&sender, &batch[n..]);
    assert!(skipped.is_empty());
    let got = reader.join().unwrap();
    for (i, (g, t)) in got.iter().zip(&batch).enumerate() {
        assert!(g[..] == t.to_bytes()[..], "datagram {i}");
    }
}

#[test]
fn a_failing_datagram_in_the_middle_is_reported_alone() {
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let receivers: Vec<UdpSocket> = (0..2).map(|_| receiver()).collect();
    let a = receivers[0].local_addr().unwrap();
    let b = receivers[1].local_addr().unwrap();
    // A closed port: sent (UDP does not know), no effect on the others.
    let closed = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let v6: SocketAddr = "[::1]:9".parse().unwrap(); // wrong family
    let batch = vec![
        transmit(a, 0, 100, 1),
        transmit(b, 1, 200, 2),
        transmit(v6, 2, 50, 1), // EAFNOSUPPORT/EINVAL on an IPv4 socket
        transmit(a, 3, 300, 3),
        transmit(a, 4, 70_000, 1),  // EMSGSIZE (over 65 507)
        transmit(closed, 5, 10, 1), // accepted
        transmit(b, 6, 1316, 2),
        transmit(b, 7, 1, 1),
    ];
    let n = send_batch(SockRef::from(&sender), &batch).unwrap();
    #[cfg(target_os = "linux")]
    assert_eq!(n, 2, "ends before the bad destination");
    assert!(n <= 2);
    let (_, skipped) = send_everything(&sender, &batch[n..]);
    let skipped: Vec<usize> = skipped.iter().map(|(i, _)| n + i).collect();
    assert_eq!(skipped, [2, 4], "exactly the two bad datagrams fail");
    let expect = |idx: &[usize]| -> Vec<Vec<u8>> {
        idx.iter().map(|&i| batch[i].to_bytes().to_vec()).collect()
    };
    assert!(recv_all(&receivers[0], 1) == expect(&[0]));
    assert!(recv_all(&receivers[0], 1) == expect(&[3]));
    assert_nothing_more(&receivers[0]);
    assert!(recv_all(&receivers[1], 3) == expect(&[1, 6, 7]));
    assert_nothing_more(&receivers[1]);
}

#[test]
fn an_empty_batch_sends_nothing() {
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(send_batch(SockRef::from(&sender), &[]).unwrap(), 0);
}

/// Environment variable marking the copy of this test binary that runs
/// inside the private network namespace.
const INNER: &str = "ARCLY_SOCKET_NETNS_INNER";

/// Re-runs [`full_buffer_inner`] as root of a new user and network
/// namespace (`unshare -rn`, no privileges needed) whose loopback has a
/// token-bucket qdisc: datagrams wait in the qdisc still charged to the
/// sender's tiny `SO_SNDBUF`, so a non-blocking `sendmmsg` meets a full
/// buffer mid-batch. Needs `unshare`, `ip` and `tc` (util-linux,
/// iproute2) and unprivileged user namespaces; without them the test is
/// skipped, except under `CI=true` where that is a failure.
#[cfg(target_os = "linux")]
#[test]
fn a_full_send_buffer_accepts_part_of_a_batch() {
    if std::env::var_os(INNER).is_some() {
        return full_buffer_inner();
    }
    let exe = std::env::current_exe().unwrap();
    let script = "ip link set lo up && \
                  tc qdisc add dev lo root tbf rate 20mbit burst 8kb latency 2s && \
                  exec \"$0\" --exact a_full_send_buffer_accepts_part_of_a_batch --nocapture";
    let out = std::process::Command::new("unshare")
        .args(["-rn", "sh", "-c", script])
        .arg(&exe)
        .env(INNER, "1")
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return skip_or_fail(&format!("unshare: {e}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stdout.contains("full buffer: partial") {
        if !out.status.success() && !stdout.contains("running 1 test") {
            // The namespace or the qdisc could not be set up.
            return skip_or_fail(&format!("no private netns with a qdisc: {stderr}"));
        }
        panic!("inner test failed:\n{stdout}\n{stderr}");
    }
    assert!(
        out.status.success(),
        "inner test failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
}

#[cfg(target_os = "linux")]
fn skip_or_fail(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
}

#[cfg(target_os = "linux")]
fn full_buffer_inner() {
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.set_nonblocking(true).unwrap();
    SockRef::from(&sender).set_send_buffer_size(4096).unwrap();
    let r = receiver();
    let to = r.local_addr().unwrap();
    let batch: Vec<Transmit> = (0..300).map(|i| transmit(to, i, 1316, 2)).collect();
    let reader = spawn_recv(r, batch.len());

    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut at, mut partial, mut would_block) = (0, 0, 0);
    while at < batch.len() {
        assert!(Instant::now() < deadline, "stuck at {at}");
        let tail = &batch[at..];
        match send_batch(SockRef::from(&sender), tail) {
            Ok(n) => {
                assert!(n >= 1 && n <= tail.len().min(MAX_BATCH));
                if n < tail.len().min(MAX_BATCH) {
                    partial += 1;
                }
                at += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                would_block += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("datagram {at}: {e}"),
        }
    }
    assert!(partial > 0, "the buffer never filled mid-batch");
    assert!(would_block > 0, "never WouldBlock");
    let got = reader.join().unwrap();
    for (i, (g, t)) in got.iter().zip(&batch).enumerate() {
        assert!(g[..] == t.to_bytes()[..], "datagram {i}");
    }
    println!("full buffer: partial batches {partial}, WouldBlock {would_block}");
}
