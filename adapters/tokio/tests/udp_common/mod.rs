//! A tiny echo `DatagramService` and the checks every adapter's UDP driver
//! must pass (shared by the three adapters' `tests/udp.rs` via `#[path]`).
//!
//! The service: a datagram is echoed back in two pieces (checks vectored
//! sends); `sub` subscribes the sender to the test's media queue (delivered
//! on `handle_media` after the test notifies the media signal); `timer N`
//! answers `tick` after N ms (through `poll_timeout`); on `close` every peer
//! seen gets `bye`; `which` answers `socket I dst IP` (the socket the
//! datagram came in on and the destination address the adapter reported).
//! Every answer leaves from the socket the datagram came in on. The
//! service runs on two sockets: `127.0.0.1:0` (index 0, where the older
//! checks talk) and the wildcard `0.0.0.0:0` (index 1, destination
//! addresses reported through `IP_PKTINFO`). Commands from the test
//! ([`Command`], through the service's inbox) make it send a text from a
//! chosen socket and answer with the byte count through a reply.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

/// The driver checks as `#[test]`s `echo`, `media`, `fanout`, `timer` and
/// `shutdown`, each on a fresh `$start()` (a [`Running`] driver).
#[allow(unused_macros)]
macro_rules! udp_driver_tests {
    ($start:expr) => {
        #[test]
        fn echo() {
            udp_common::check_echo(&$start());
        }

        #[test]
        fn media() {
            udp_common::check_media(&$start());
        }

        #[test]
        fn fanout() {
            udp_common::check_fanout(&$start());
        }

        #[test]
        fn timer() {
            udp_common::check_timer(&$start());
        }

        #[test]
        fn shutdown() {
            udp_common::check_shutdown($start());
        }

        #[test]
        fn two_sockets_and_pktinfo() {
            udp_common::check_sockets(&$start());
        }

        #[test]
        fn commands() {
            udp_common::check_commands(&$start());
        }
    };
}

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arcly::datagram::{
    reply, DatagramService, DatagramServiceFactory, Inbox, InboxSender, Received, ReplySender,
    SocketIndex, Transmit,
};
use arcly::engine::Signal;
use arcly::time::Instant;
use bytes::Bytes;

/// What the test shares with the services.
#[derive(Default)]
pub struct Shared {
    pub media: Mutex<Vec<Bytes>>,
    pub signal: Signal,
    pub handle_media_calls: AtomicUsize,
    pub handle_timeout_calls: AtomicUsize,
    pub datagrams: AtomicUsize,
    pub services: AtomicUsize,
    /// The local addresses the factory was given.
    pub sockets: Mutex<Vec<SocketAddr>>,
    /// A sender to the service's command inbox (set by the factory).
    pub commands: Mutex<Option<InboxSender<Command>>>,
}

/// A command from the test (a stand-in for a stream session): send `text`
/// to `to` from socket `socket`, answer with the byte count.
pub struct Command {
    pub to: SocketAddr,
    pub socket: SocketIndex,
    pub text: String,
    pub reply: ReplySender<usize>,
}

impl Shared {
    /// Appends a media message and notifies the signal.
    pub fn publish(&self, m: &str) {
        self.media
            .lock()
            .unwrap()
            .push(Bytes::copy_from_slice(m.as_bytes()));
        self.signal.notify();
    }
}

pub struct EchoFactory(pub Arc<Shared>);

impl DatagramServiceFactory for EchoFactory {
    fn new_service(
        &self,
        sockets: &[SocketAddr],
        _now: Instant,
        _seed: u64,
    ) -> Box<dyn DatagramService> {
        self.0.services.fetch_add(1, Ordering::SeqCst);
        *self.0.sockets.lock().unwrap() = sockets.to_vec();
        let inbox = Inbox::new(16, 4);
        *self.0.commands.lock().unwrap() = Some(inbox.sender());
        Box::new(Echo {
            inbox,
            shared: self.0.clone(),
            out: VecDeque::new(),
            subscribers: Vec::new(),
            delivered: 0,
            timers: Vec::new(),
            peers: Vec::new(),
            closing: false,
        })
    }
}

struct Echo {
    inbox: Inbox<Command>,
    shared: Arc<Shared>,
    out: VecDeque<Transmit>,
    subscribers: Vec<(SocketIndex, SocketAddr)>,
    delivered: usize,
    timers: Vec<(Instant, SocketIndex, SocketAddr)>,
    peers: Vec<(SocketIndex, SocketAddr)>,
    closing: bool,
}

fn transmit(socket: SocketIndex, to: SocketAddr, data: &[u8]) -> Transmit {
    let b = Bytes::copy_from_slice(data);
    let split = b.len().min(1);
    Transmit {
        socket,
        src_ip: None,
        destination: to,
        contents: [b.slice(..split), b.slice(split..)].into_iter().collect(),
    }
}

impl DatagramService for Echo {
    fn handle_datagram(&mut self, now: Instant, d: Received) {
        let (src, sock) = (d.src, d.socket);
        self.shared.datagrams.fetch_add(1, Ordering::SeqCst);
        if !self.peers.contains(&(sock, src)) && self.peers.len() < 64 {
            self.peers.push((sock, src));
        }
        if self.closing || self.out.len() > 100_000 {
            return;
        }
        let text = std::str::from_utf8(&d.contents).unwrap_or("");
        if text == "sub" {
            if !self.subscribers.contains(&(sock, src)) {
                self.subscribers.push((sock, src));
            }
            self.out.push_back(transmit(sock, src, b"subscribed"));
        } else if let Some(ms) = text.strip_prefix("timer ") {
            let ms: u64 = ms.parse().unwrap_or(0);
            self.timers
                .push((now + Duration::from_millis(ms), sock, src));
        } else if text == "which" {
            let dst = d.dst_ip.map_or("none".to_owned(), |ip| ip.to_string());
            let answer = format!("socket {} dst {dst}", sock.0);
            self.out.push_back(transmit(sock, src, answer.as_bytes()));
        } else {
            self.out.push_back(transmit(sock, src, &d.contents));
        }
    }

    fn command_signal(&self) -> Option<Signal> {
        Some(self.inbox.signal())
    }

    fn handle_commands(&mut self, _now: Instant) {
        while let Some(c) = self.inbox.try_recv() {
            self.out
                .push_back(transmit(c.socket, c.to, c.text.as_bytes()));
            let _ = c.reply.send(c.text.len());
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.shared
            .handle_timeout_calls
            .fetch_add(1, Ordering::SeqCst);
        let mut due = Vec::new();
        self.timers.retain(|&(at, sock, to)| {
            if at <= now {
                due.push((sock, to));
                false
            } else {
                true
            }
        });
        for (sock, to) in due {
            self.out.push_back(transmit(sock, to, b"tick"));
        }
    }

    fn handle_media(&mut self, _now: Instant, _fired: &[usize]) {
        self.shared
            .handle_media_calls
            .fetch_add(1, Ordering::SeqCst);
        let media = self.shared.media.lock().unwrap();
        for m in media.iter().skip(self.delivered) {
            for &(sock, s) in &self.subscribers {
                self.out.push_back(transmit(sock, s, m));
            }
        }
        self.delivered = media.len();
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().map(|t| t.0).min()
    }

    fn media_version(&self) -> u64 {
        u64::from(!self.subscribers.is_empty())
    }

    fn media_signals(&self, out: &mut Vec<Signal>) {
        if !self.subscribers.is_empty() {
            out.push(self.shared.signal.clone());
        }
    }

    fn close(&mut self, _now: Instant) {
        if !self.closing {
            self.closing = true;
            self.timers.clear();
            for (sock, p) in self.peers.clone() {
                self.out.push_back(transmit(sock, p, b"bye"));
            }
        }
    }

    fn is_closed(&self) -> bool {
        self.closing && self.out.is_empty()
    }
}

/// A running server under test.
pub struct Running {
    /// Socket 0 (`127.0.0.1`).
    pub addr: SocketAddr,
    /// Socket 1 (bound to `0.0.0.0`).
    pub wildcard: SocketAddr,
    pub shared: Arc<Shared>,
    pub stop: Option<Box<dyn FnOnce() + Send>>,
    pub done: std::sync::mpsc::Receiver<std::io::Result<()>>,
}

impl Running {
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            s();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
        let _ = self.done.recv_timeout(Duration::from_secs(5));
    }
}

pub fn client() -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c
}

pub fn recv(c: &UdpSocket) -> String {
    let mut buf = [0u8; 2048];
    let (n, _) = c.recv_from(&mut buf).expect("no answer within 3 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Many datagrams, each echoed whole and in order (loopback: no loss).
pub fn check_echo(r: &Running) {
    let c = client();
    for round in 0..10 {
        for i in 0..100 {
            c.send_to(format!("m{round}-{i}").as_bytes(), r.addr)
                .unwrap();
        }
        for i in 0..100 {
            assert_eq!(recv(&c), format!("m{round}-{i}"));
        }
    }
    // A large datagram (1400 bytes, as SRT sends).
    let big = vec![b'x'; 1400];
    c.send_to(&big, r.addr).unwrap();
    assert_eq!(recv(&c).len(), 1400);
}

/// Media is delivered when the signal fires, with no busy loop while idle.
pub fn check_media(r: &Running) {
    let c = client();
    c.send_to(b"sub", r.addr).unwrap();
    assert_eq!(recv(&c), "subscribed");
    for i in 0..5 {
        r.shared.publish(&format!("frame{i}"));
        assert_eq!(recv(&c), format!("frame{i}"));
    }
    let calls = r.shared.handle_media_calls.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    let idle = r.shared.handle_media_calls.load(Ordering::SeqCst) - calls;
    assert!(idle <= 1, "handle_media called {idle} times while idle");
    assert!(
        calls <= 20,
        "handle_media called {calls} times for 5 frames"
    );
    // A burst of notifies from another thread: every frame arrives.
    let shared = r.shared.clone();
    let t = std::thread::spawn(move || {
        for i in 5..50 {
            shared.publish(&format!("frame{i}"));
            if i % 7 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    for i in 5..50 {
        assert_eq!(recv(&c), format!("frame{i}"));
    }
    t.join().unwrap();
}

/// Fan-out as SRT's: each media message goes to 20 subscribers as a
/// 1306-byte datagram in two pieces, 400 datagrams per burst, which the
/// driver sends in `sendmmsg` batches (partial batches park the rest).
/// Every subscriber gets every message, whole, once and in order.
pub fn check_fanout(r: &Running) {
    let clients: Vec<UdpSocket> = (0..20).map(|_| client()).collect();
    for c in &clients {
        c.send_to(b"sub", r.addr).unwrap();
        assert_eq!(recv(c), "subscribed");
    }
    let payload = |i: usize| format!("f{i:04}-{}", "x".repeat(1300));
    // Bursts of 20 messages: 20 x 1306 bytes fit any default receive buffer.
    for burst in 0..5 {
        let frames = burst * 20..(burst + 1) * 20;
        for i in frames.clone() {
            r.shared.publish(&payload(i));
        }
        for (k, c) in clients.iter().enumerate() {
            for i in frames.clone() {
                let got = recv(c);
                assert!(
                    got == payload(i),
                    "subscriber {k}: expected frame {i}, got {:?}",
                    got.get(..5)
                );
            }
        }
    }
    // Nothing duplicated.
    for c in &clients {
        c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 2048];
        assert!(c.recv_from(&mut buf).is_err(), "an extra datagram");
    }
}

/// `poll_timeout` deadlines fire on time.
pub fn check_timer(r: &Running) {
    let c = client();
    let start = std::time::Instant::now();
    c.send_to(b"timer 80", r.addr).unwrap();
    assert_eq!(recv(&c), "tick");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(75) && took < Duration::from_millis(1000),
        "tick after {took:?}"
    );
}

/// Shutdown closes the service (every peer gets `bye`) and the driver ends.
pub fn check_shutdown(mut r: Running) {
    let c = client();
    c.send_to(b"hello", r.addr).unwrap();
    assert_eq!(recv(&c), "hello");
    r.stop();
    assert_eq!(recv(&c), "bye");
    let res = r
        .done
        .recv_timeout(Duration::from_secs(3))
        .expect("driver did not end after shutdown");
    res.unwrap();
    assert_eq!(r.shared.services.load(Ordering::SeqCst), 1);
}

/// The two sockets a test server binds: `127.0.0.1:0` and `0.0.0.0:0`.
pub fn bind_two() -> Vec<UdpSocket> {
    vec![
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        UdpSocket::bind("0.0.0.0:0").unwrap(),
    ]
}

/// Receives one answer and the address it came from.
pub fn recv_from(c: &UdpSocket) -> (String, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = c.recv_from(&mut buf).expect("no answer within 3 s");
    (String::from_utf8_lossy(&buf[..n]).into_owned(), from)
}

/// One service on two sockets: the factory got both local addresses in
/// order; each datagram is tagged with its socket and answered from it;
/// on the wildcard socket the destination address the client wrote to is
/// reported (`IP_PKTINFO`), for two different loopback addresses.
pub fn check_sockets(r: &Running) {
    wait_service(r);
    let sockets = r.shared.sockets.lock().unwrap().clone();
    assert_eq!(sockets.len(), 2);
    assert_eq!(sockets[0], r.addr);
    assert!(sockets[1].ip().is_unspecified());
    assert_eq!(sockets[1].port(), r.wildcard.port());
    let c = client();
    c.send_to(b"which", r.addr).unwrap();
    let (answer, from) = recv_from(&c);
    assert_eq!(answer, "socket 0 dst none", "a specific bind reports none");
    assert_eq!(from, r.addr);
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let to = SocketAddr::new(ip.parse().unwrap(), r.wildcard.port());
        c.send_to(b"which", to).unwrap();
        let (answer, from) = recv_from(&c);
        assert_eq!(answer, format!("socket 1 dst {ip}"));
        assert_eq!(from.port(), r.wildcard.port(), "answered from socket 1");
    }
    // Echoes on both sockets, interleaved: each from its own socket.
    let to1 = SocketAddr::new("127.0.0.1".parse().unwrap(), r.wildcard.port());
    for i in 0..50 {
        let to = if i % 2 == 0 { r.addr } else { to1 };
        c.send_to(format!("e{i}").as_bytes(), to).unwrap();
        let (answer, from) = recv_from(&c);
        assert_eq!(answer, format!("e{i}"));
        assert_eq!(from.port(), to.port());
    }
}

/// Waits until the adapter built the service (it binds first, then calls
/// the factory).
pub fn wait_service(r: &Running) {
    for _ in 0..600 {
        if r.shared.services.load(Ordering::SeqCst) > 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no service within 3 s");
}

/// Waits (polling, as a sans-IO session woken by the reply's signal
/// would) for a reply.
fn wait_reply<T>(
    rx: &mut arcly::datagram::ReplyReceiver<T>,
) -> Result<T, arcly::datagram::ReplyCanceled> {
    for _ in 0..600 {
        if let Some(r) = rx.try_take() {
            return r;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no reply within 3 s");
}

/// Commands reach the running service through its inbox without any
/// datagram to wake it: it sends from the socket the command names and
/// answers through the reply (whose signal is notified). A sender's share
/// is bounded.
pub fn check_commands(r: &Running) {
    wait_service(r);
    let sender = r.shared.commands.lock().unwrap().clone().unwrap();
    let c = client();
    for (socket, text) in [(1u16, "from one"), (0, "from zero")] {
        let wake = Signal::new();
        let seen = wake.epoch();
        let (tx, mut rx) = reply(wake.clone());
        sender
            .send(Command {
                to: c.local_addr().unwrap(),
                socket: SocketIndex(socket),
                text: text.to_owned(),
                reply: tx,
            })
            .map_err(|(e, _)| e)
            .unwrap();
        assert_eq!(wait_reply(&mut rx), Ok(text.len()));
        assert_ne!(wake.epoch(), seen, "the reply notified the signal");
        let (got, from) = recv_from(&c);
        assert_eq!(got, text);
        let port = if socket == 1 {
            r.wildcard.port()
        } else {
            r.addr.port()
        };
        assert_eq!(from.port(), port);
    }
}
