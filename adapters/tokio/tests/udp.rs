//! arcly-tokio UDP driver with a tiny echo `DatagramService` (no SRT):
//! batched echo with vectored sends, fan-out in sendmmsg batches, media
//! wake-ups through the signal set, timers, graceful shutdown.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

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
            let sockets: Vec<tokio::net::UdpSocket> = udp_common::bind_two()
                .into_iter()
                .map(|s| {
                    s.set_nonblocking(true).unwrap();
                    tokio::net::UdpSocket::from_std(s).unwrap()
                })
                .collect();
            let addrs: Vec<_> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
            addr_tx.send(addrs).unwrap();
            let shutdown = async move {
                let _ = stop_rx.await;
            };
            let config = arcly_tokio::UdpConfig::default();
            let r = arcly_tokio::serve_udp_sockets(sockets, factory, shutdown, &config).await;
            let _ = done_tx.send(r);
        });
    });
    let addrs: Vec<std::net::SocketAddr> = addr_rx.recv().unwrap();
    Running {
        addr: addrs[0],
        wildcard: addrs[1],
        shared,
        stop: Some(Box::new(move || {
            let _ = stop_tx.send(());
        })),
        done: done_rx,
    }
}

udp_driver_tests!(start);

/// A line protocol over TCP standing in for RTSP's control connection:
/// `send PORT SOCKET TEXT\n` asks the datagram service (through its inbox)
/// to send TEXT to 127.0.0.1:PORT from socket SOCKET; the session answers
/// `sent N\n` once the service's reply arrived (the reply notifies the
/// session's own signal, which the TCP driver waits on as a media signal).
mod steer {
    use arcly::datagram::{reply, InboxSender, ReplyReceiver, SocketIndex};
    use arcly::engine::Signal;
    use arcly::session::{CloseReason, StreamSession};
    use arcly::time::Instant;
    use bytes::Bytes;

    use super::udp_common::Command;

    pub struct Steer {
        pub commands: InboxSender<Command>,
        pub wake: Signal,
        pub input: Vec<u8>,
        pub waiting: Option<ReplyReceiver<usize>>,
        pub out: Vec<Bytes>,
        pub closed: Option<CloseReason>,
    }

    impl StreamSession for Steer {
        fn handle_input(&mut self, _now: Instant, data: &[u8]) {
            if data.is_empty() {
                self.closed = Some(CloseReason::PeerClosed);
                return;
            }
            self.input.extend_from_slice(data);
            while let Some(end) = self.input.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.input.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).trim().to_owned();
                let mut words = line.splitn(4, ' ');
                let (Some("send"), Some(port), Some(socket), Some(text)) =
                    (words.next(), words.next(), words.next(), words.next())
                else {
                    self.out.push(Bytes::from_static(b"bad\n"));
                    continue;
                };
                let (tx, rx) = reply(self.wake.clone());
                let command = Command {
                    to: ([127, 0, 0, 1], port.parse().unwrap_or(0)).into(),
                    socket: SocketIndex(socket.parse().unwrap_or(0)),
                    text: text.to_owned(),
                    reply: tx,
                };
                match self.commands.send(command) {
                    Ok(()) => self.waiting = Some(rx),
                    Err((e, _)) => self.out.push(Bytes::from(format!("refused {e}\n"))),
                }
            }
        }

        fn handle_timeout(&mut self, _now: Instant) {}

        fn handle_media(&mut self, _now: Instant) {
            if let Some(rx) = self.waiting.as_mut() {
                match rx.try_take() {
                    Some(Ok(n)) => self.out.push(Bytes::from(format!("sent {n}\n"))),
                    Some(Err(e)) => self.out.push(Bytes::from(format!("failed {e}\n"))),
                    None => return,
                }
                self.waiting = None;
            }
        }

        fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize {
            let n = self.out.iter().map(Bytes::len).sum();
            out.append(&mut self.out);
            n
        }

        fn poll_timeout(&self) -> Option<Instant> {
            None
        }

        fn media_signal(&self) -> Option<Signal> {
            Some(self.wake.clone())
        }

        fn close_reason(&self) -> Option<&CloseReason> {
            self.closed.as_ref()
        }

        fn close(&mut self, _now: Instant) {
            self.closed = Some(CloseReason::LocalShutdown);
        }
    }
}

/// A TCP stream session steers the running datagram service through its
/// inbox: the service sends from the socket the session named, and the
/// session learns the result without blocking and tells its TCP peer.
#[test]
fn a_tcp_session_steers_the_datagram_service() {
    use std::io::{BufRead, BufReader, Write};

    let r = start();
    udp_common::wait_service(&r);
    let commands = r.shared.commands.lock().unwrap().clone().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            let session = Box::new(steer::Steer {
                commands: commands.fork(),
                wake: arcly::engine::Signal::new(),
                input: Vec::new(),
                waiting: None,
                out: Vec::new(),
                closed: None,
            });
            let clock = arcly::time::Clock::new(std::time::Instant::now());
            let _ = arcly_tokio::drive_stream(stream, session, clock).await;
        });
    });
    let udp = udp_common::client();
    let port = udp.local_addr().unwrap().port();
    let mut control = std::net::TcpStream::connect(tcp).unwrap();
    control
        .set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    let mut lines = BufReader::new(control.try_clone().unwrap());
    for (socket, text, from) in [
        (1, "rtp on one", r.wildcard.port()),
        (0, "rtcp", r.addr.port()),
    ] {
        writeln!(control, "send {port} {socket} {text}").unwrap();
        let mut line = String::new();
        lines.read_line(&mut line).unwrap();
        assert_eq!(line, format!("sent {}\n", text.len()));
        let (got, src) = udp_common::recv_from(&udp);
        assert_eq!(got, text);
        assert_eq!(src.port(), from, "sent from the socket the session named");
    }
}
