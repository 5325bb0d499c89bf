//! Test support shared by the three adapter crates' tests (included with
//! `#[path]`): a tiny line-protocol [`StreamSession`] with no RTMP in it, and
//! blocking std::net client scenarios that any adapter's server must pass.
//!
//! Commands (one per line):
//! - `burst N`: the session queues N buffers; buffer `i` is `(i % 61) + 1`
//!   bytes of `(i % 251)` → tests one vectored write of many buffers;
//! - `big N`: N buffers of 64 KiB, buffer `i` filled with `i as u8` →
//!   partial writes;
//! - `echo TEXT`: `TEXT\n` back, cut into 3-byte buffers;
//! - `timer MS`: `tick\n` once MS milliseconds passed (via `poll_timeout`);
//! - `play APP/NAME`: `playing\n`, then each frame as `F` + u32 BE length +
//!   payload, and `E` when the stream ends (via `media_signal`);
//! - `quit`: `bye\n`, then the session closes.
//!
//! EOF → `eof\n` and close; `close()` → `shutdown\n` and close.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arcly::engine::{Recv, Subscriber};
use arcly::session::{CloseReason, SessionFactory, StreamConn, StreamSession};
use arcly::time::Instant;
use arcly::{Codec, Engine, Frame, FrameFlags, StreamKey};
use bytes::Bytes;

/// Counts sessions and records how they closed.
#[derive(Default)]
pub struct Stats {
    pub created: AtomicUsize,
    pub dropped: AtomicUsize,
    pub closed: Mutex<Vec<CloseReason>>,
    /// Frames each session pulled from the engine, by session index.
    pub pulled: Mutex<Vec<usize>>,
    /// What the factory was told about each connection.
    pub conns: Mutex<Vec<StreamConn>>,
}

impl Stats {
    pub fn live(&self) -> usize {
        self.created.load(Ordering::SeqCst) - self.dropped.load(Ordering::SeqCst)
    }
}

pub struct TestFactory {
    pub engine: Engine,
    pub stats: Arc<Stats>,
}

impl TestFactory {
    pub fn new() -> Arc<Self> {
        Arc::new(TestFactory {
            engine: Engine::with_defaults(),
            stats: Arc::default(),
        })
    }
}

impl SessionFactory for TestFactory {
    fn new_session(&self, conn: StreamConn, _now: Instant, _seed: u64) -> Box<dyn StreamSession> {
        self.stats.conns.lock().unwrap().push(conn);
        let id = self.stats.created.fetch_add(1, Ordering::SeqCst);
        {
            let mut pulled = self.stats.pulled.lock().unwrap();
            if pulled.len() <= id {
                pulled.resize(id + 1, 0);
            }
        }
        Box::new(TestSession {
            id,
            engine: self.engine.clone(),
            stats: self.stats.clone(),
            line: Vec::new(),
            out: VecDeque::new(),
            timer: None,
            sub: None,
            close: None,
        })
    }
}

pub struct TestSession {
    id: usize,
    engine: Engine,
    stats: Arc<Stats>,
    line: Vec<u8>,
    out: VecDeque<Bytes>,
    timer: Option<Instant>,
    sub: Option<Subscriber>,
    close: Option<CloseReason>,
}

impl Drop for TestSession {
    fn drop(&mut self) {
        self.stats.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl TestSession {
    fn set_closed(&mut self, reason: CloseReason) {
        if self.close.is_none() {
            self.stats.closed.lock().unwrap().push(reason.clone());
            self.close = Some(reason);
            self.sub = None;
        }
    }

    fn command(&mut self, now: Instant, line: &str) {
        let (cmd, arg) = line.split_once(' ').unwrap_or((line, ""));
        match cmd {
            "burst" => {
                let n: usize = arg.parse().unwrap();
                for i in 0..n {
                    self.out
                        .push_back(Bytes::from(vec![(i % 251) as u8; (i % 61) + 1]));
                }
            }
            "big" => {
                let n: usize = arg.parse().unwrap();
                for i in 0..n {
                    self.out.push_back(Bytes::from(vec![i as u8; 64 * 1024]));
                }
            }
            "echo" => {
                let text = Bytes::from(format!("{arg}\n"));
                let mut at = 0;
                while at < text.len() {
                    let end = (at + 3).min(text.len());
                    self.out.push_back(text.slice(at..end));
                    at = end;
                }
            }
            "timer" => {
                let ms: u64 = arg.parse().unwrap();
                self.timer = Some(now + Duration::from_millis(ms));
            }
            "play" => {
                let key = StreamKey::parse(arg).unwrap();
                match self.engine.subscribe(&key) {
                    Ok(sub) => {
                        self.sub = Some(sub);
                        self.out.push_back(Bytes::from_static(b"playing\n"));
                    }
                    Err(e) => self.out.push_back(Bytes::from(format!("error {e}\n"))),
                }
            }
            "quit" => {
                self.out.push_back(Bytes::from_static(b"bye\n"));
                self.set_closed(CloseReason::PeerClosed);
            }
            other => {
                self.out
                    .push_back(Bytes::from(format!("unknown {other}\n")));
            }
        }
    }
}

impl StreamSession for TestSession {
    fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.close.is_some() {
            return;
        }
        if data.is_empty() {
            self.out.push_back(Bytes::from_static(b"eof\n"));
            self.set_closed(CloseReason::PeerClosed);
            return;
        }
        for &b in data {
            if b == b'\n' {
                let line = String::from_utf8(std::mem::take(&mut self.line)).unwrap();
                self.command(now, line.trim_end());
                if self.close.is_some() {
                    return;
                }
            } else {
                self.line.push(b);
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.timer.is_some_and(|t| t <= now) {
            self.timer = None;
            self.out.push_back(Bytes::from_static(b"tick\n"));
        }
    }

    fn handle_media(&mut self, _now: Instant) {
        // At most 16 frames per call: the driver calls again after the write.
        for _ in 0..16 {
            let Some(sub) = self.sub.as_mut() else { return };
            match sub.recv() {
                Recv::Frame(f) => {
                    if let Some(n) = self.stats.pulled.lock().unwrap().get_mut(self.id) {
                        *n += 1;
                    }
                    let payload = f.frame.payload.clone();
                    let mut head = vec![b'F'];
                    head.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                    self.out.push_back(Bytes::from(head));
                    self.out.push_back(payload);
                }
                Recv::Empty => return,
                Recv::End => {
                    self.out.push_back(Bytes::from_static(b"E"));
                    self.sub = None;
                    return;
                }
            }
        }
    }

    fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize {
        let mut n = 0;
        for b in self.out.drain(..) {
            n += b.len();
            out.push(b);
        }
        n
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    fn media_signal(&self) -> Option<arcly::engine::Signal> {
        self.sub.as_ref().map(|s| s.signal())
    }

    fn close_reason(&self) -> Option<&CloseReason> {
        self.close.as_ref()
    }

    fn close(&mut self, _now: Instant) {
        if self.close.is_none() {
            self.out.push_back(Bytes::from_static(b"shutdown\n"));
            self.set_closed(CloseReason::LocalShutdown);
        }
    }
}

// ---------------------------------------------------------------------------
// Blocking clients and scenarios.

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

pub fn read_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(0) => panic!("EOF after {:?}", String::from_utf8_lossy(&line)),
            Ok(_) if b[0] == b'\n' => return String::from_utf8(line).unwrap(),
            Ok(_) => line.push(b[0]),
            Err(e) => panic!(
                "read failed after {:?}: {e}",
                String::from_utf8_lossy(&line)
            ),
        }
    }
}

pub fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    all
}

/// Asserts the peer closed: read returns EOF or a reset, within the timeout.
pub fn assert_closed(s: &mut TcpStream) {
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("expected close, got {e}"),
        }
    }
}

/// `burst 5000`: many small buffers (several writev batches of ≤1024) arrive
/// intact and in order; then `big 64` (4 MiB) forces partial writes.
pub fn scenario_vectored(addr: SocketAddr) {
    let mut s = connect(addr);
    s.write_all(b"burst 5000\n").unwrap();
    let expected: Vec<u8> = (0..5000usize)
        .flat_map(|i| std::iter::repeat((i % 251) as u8).take((i % 61) + 1))
        .collect();
    let mut got = vec![0u8; expected.len()];
    s.read_exact(&mut got).unwrap();
    assert!(got == expected, "burst bytes differ");

    s.write_all(b"big 64\n").unwrap();
    // Read slowly at first so the server's socket buffer fills up.
    std::thread::sleep(Duration::from_millis(100));
    let mut chunk = vec![0u8; 64 * 1024];
    for i in 0..64usize {
        s.read_exact(&mut chunk).unwrap();
        assert!(
            chunk.iter().all(|&b| b == i as u8),
            "big buffer {i} corrupted"
        );
    }
    s.write_all(b"echo hello world\n").unwrap();
    assert_eq!(read_line(&mut s), "hello world");
}

/// EOF from the peer reaches the session (`eof\n`), which closes; the
/// server's write side shuts down after flushing.
pub fn scenario_eof(addr: SocketAddr, stats: &Stats) {
    let mut s = connect(addr);
    s.write_all(b"echo a\necho b\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let rest = read_to_eof(&mut s);
    assert_eq!(rest, b"a\nb\neof\n");
    wait_until(|| stats.live() == 0, "session dropped after EOF");
    assert!(stats
        .closed
        .lock()
        .unwrap()
        .contains(&CloseReason::PeerClosed));

    let mut s = connect(addr);
    s.write_all(b"quit\n").unwrap();
    assert_eq!(read_to_eof(&mut s), b"bye\n");
}

/// `poll_timeout` deadlines fire through `handle_timeout`.
pub fn scenario_timer(addr: SocketAddr) {
    let mut s = connect(addr);
    let t0 = std::time::Instant::now();
    s.write_all(b"timer 80\n").unwrap();
    assert_eq!(read_line(&mut s), "tick");
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(75), "tick after {took:?}");
    assert!(took < Duration::from_secs(2), "tick after {took:?}");
}

fn frame(i: u32, size: usize) -> Frame {
    let mut payload = vec![(i % 256) as u8; size.max(4)];
    payload[..4].copy_from_slice(&i.to_be_bytes());
    Frame {
        codec: Codec::H264,
        flags: if i == 0 {
            FrameFlags::KEYFRAME
        } else {
            FrameFlags::NONE
        },
        pts: i64::from(i) * 40,
        dts: i64::from(i) * 40,
        timebase: 1000,
        payload: Bytes::from(payload),
    }
}

/// Reads `F` frames until `E`; returns the frame indices.
pub fn read_frames(s: &mut TcpStream, until: usize) -> Vec<u32> {
    let mut got = Vec::new();
    while got.len() < until {
        let mut tag = [0u8; 1];
        s.read_exact(&mut tag).unwrap();
        if tag[0] == b'E' {
            break;
        }
        assert_eq!(tag[0], b'F');
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut payload).unwrap();
        got.push(u32::from_be_bytes(payload[..4].try_into().unwrap()));
    }
    got
}

/// Frames published one by one over time wake the player's task each time
/// (media signal), promptly; the stream end arrives as `E`.
pub fn scenario_media(addr: SocketAddr, engine: &Engine) {
    let key = StreamKey::new("live", "wake").unwrap();
    let mut publisher = engine.publish(key).unwrap();
    let mut s = connect(addr);
    s.write_all(b"play live/wake\n").unwrap();
    assert_eq!(read_line(&mut s), "playing");
    for i in 0..20u32 {
        let t0 = std::time::Instant::now();
        publisher.send(frame(i, 1000));
        let got = read_frames(&mut s, 1);
        assert_eq!(got, vec![i]);
        assert!(t0.elapsed() < Duration::from_millis(500), "slow wake-up");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(publisher);
    let mut tag = [0u8; 1];
    s.read_exact(&mut tag).unwrap();
    assert_eq!(&tag, b"E");
}

/// One player never reads; the publisher pushes ~31 MiB; the reading player
/// gets every frame, and the publisher is never blocked. Backpressure: the
/// driver pulls media for the stalled player only as its writes complete,
/// so that session takes no more frames than its socket buffers hold.
pub fn scenario_stalled_reader(addr: SocketAddr, engine: &Engine, stats: &Stats) {
    const FRAMES: u32 = 1000;
    let key = StreamKey::new("live", "stall").unwrap();
    let mut publisher = engine.publish(key).unwrap();
    let before = stats.created.load(Ordering::SeqCst);
    let mut stalled = connect(addr);
    stalled.write_all(b"play live/stall\n").unwrap();
    assert_eq!(read_line(&mut stalled), "playing");
    let mut good = connect(addr);
    good.write_all(b"play live/stall\n").unwrap();
    assert_eq!(read_line(&mut good), "playing");
    // Sessions are created in accept order.
    let (stalled_id, good_id) = (before, before + 1);

    let reader = std::thread::spawn(move || read_frames(&mut good, FRAMES as usize));
    let t0 = std::time::Instant::now();
    for i in 0..FRAMES {
        publisher.send(frame(i, 32 * 1024));
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let publish_time = t0.elapsed();
    let got = reader.join().unwrap();
    assert_eq!(got, (0..FRAMES).collect::<Vec<_>>());
    assert!(
        publish_time < Duration::from_secs(2),
        "publisher blocked: {publish_time:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    let pulled = stats.pulled.lock().unwrap().clone();
    assert_eq!(pulled[good_id], FRAMES as usize);
    assert!(
        pulled[stalled_id] < FRAMES as usize / 2,
        "stalled player's session pulled {} frames: media pulled while writes were pending",
        pulled[stalled_id]
    );
    // The stalled viewer is still connected (it just fell behind).
    drop(stalled);
}

/// Connections beyond the limit are closed at once; the others still work.
pub fn scenario_max_connections(addr: SocketAddr, max: usize) {
    let mut held: Vec<TcpStream> = (0..max).map(|_| connect(addr)).collect();
    for s in &mut held {
        s.write_all(b"echo ok\n").unwrap();
        assert_eq!(read_line(s), "ok");
    }
    let mut extra = connect(addr);
    let _ = extra.write_all(b"echo nope\n");
    assert_closed(&mut extra);
    held[0].write_all(b"echo still\n").unwrap();
    assert_eq!(read_line(&mut held[0]), "still");
    // After one leaves, a new one is served.
    held.pop();
    std::thread::sleep(Duration::from_millis(200));
    let mut again = connect(addr);
    again.write_all(b"echo back\n").unwrap();
    assert_eq!(read_line(&mut again), "back");
}

/// Opens `n` connections before a shutdown; the caller then triggers the
/// shutdown and calls [`after_shutdown`].
pub fn before_shutdown(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(b"echo up\n").unwrap();
            assert_eq!(read_line(&mut s), "up");
            s
        })
        .collect()
}

/// Every connection gets `shutdown\n` then EOF; new connections are refused.
pub fn after_shutdown(addr: SocketAddr, conns: Vec<TcpStream>, stats: &Stats) {
    for mut s in conns {
        assert_eq!(read_to_eof(&mut s), b"shutdown\n");
    }
    wait_until(|| stats.live() == 0, "all sessions dropped");
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "listener still accepting after shutdown"
    );
}

pub fn wait_until(mut cond: impl FnMut() -> bool, what: &str) {
    let t0 = std::time::Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Publishes 20 frames 10 ms apart to a player; returns how many separate
/// bursts they arrived in (a gap of > 4 ms starts a new burst).
pub fn scenario_write_merge(addr: SocketAddr, engine: &Engine, name: &str) -> usize {
    let key = StreamKey::new("live", name).unwrap();
    let mut publisher = engine.publish(key).unwrap();
    let mut s = connect(addr);
    s.write_all(format!("play live/{name}\n").as_bytes())
        .unwrap();
    assert_eq!(read_line(&mut s), "playing");
    let reader = std::thread::spawn(move || {
        let mut arrivals = Vec::new();
        for _ in 0..20 {
            assert_eq!(read_frames(&mut s, 1).len(), 1);
            arrivals.push(std::time::Instant::now());
        }
        arrivals
    });
    for i in 0..20u32 {
        publisher.send(frame(i, 500));
        std::thread::sleep(Duration::from_millis(10));
    }
    let arrivals = reader.join().unwrap();
    // Frames of one vectored write arrive together; 10 ms apart otherwise.
    1 + arrivals
        .windows(2)
        .filter(|w| w[1] - w[0] > Duration::from_millis(4))
        .count()
}

/// A peer that stops reading while the server has megabytes queued for it:
/// the shutdown still completes (bounded by the grace), and the session is
/// dropped. `trigger` starts the shutdown, `wait_done` waits for serve_tcp.
pub fn scenario_stalled_shutdown(
    addr: SocketAddr,
    stats: &Stats,
    trigger: impl FnOnce(),
    wait_done: impl FnOnce(),
) {
    let mut stalled = connect(addr);
    stalled.write_all(b"big 400\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = std::time::Instant::now();
    trigger();
    wait_done();
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    drop(stalled);
    wait_until(|| stats.live() == 0, "stalled session dropped");
}

// ---------------------------------------------------------------------------
// The real RTMP glue through an adapter, with the project's own client.

/// A blocking RTMP client: `arcly::rtmp::ClientConnection` over std::net.
pub struct RtmpClient {
    sock: TcpStream,
    pub conn: arcly::rtmp::ClientConnection,
    clock: arcly::time::Clock,
    buf: Vec<u8>,
    /// Events read but not handed out yet.
    pending: VecDeque<arcly::rtmp::ClientEvent>,
}

impl RtmpClient {
    pub fn connect(addr: SocketAddr, url: &str, mode: arcly::rtmp::ClientMode) -> RtmpClient {
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_nodelay(true).unwrap();
        let clock = arcly::time::Clock::new(std::time::Instant::now());
        let config = arcly::rtmp::ClientConfig::from_url(url, mode).unwrap();
        let now = clock.instant(std::time::Instant::now());
        let conn = arcly::rtmp::ClientConnection::new(config, now, 7);
        RtmpClient {
            sock,
            conn,
            clock,
            buf: vec![0u8; 64 * 1024],
            pending: VecDeque::new(),
        }
    }

    pub fn flush(&mut self) {
        while let Some(b) = self.conn.poll_transmit() {
            self.sock.write_all(&b).unwrap();
        }
    }

    /// Writes what is pending, reads for up to `wait`, returns the events.
    pub fn pump(&mut self, wait: Duration) -> Vec<arcly::rtmp::ClientEvent> {
        self.flush();
        self.sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .unwrap();
        let now = self.clock.instant(std::time::Instant::now());
        match self.sock.read(&mut self.buf) {
            Ok(n) => self.conn.handle_input(now, &self.buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("rtmp client read: {e}"),
        }
        self.conn
            .handle_timeout(self.clock.instant(std::time::Instant::now()));
        self.flush();
        std::iter::from_fn(|| self.conn.poll_event()).collect()
    }

    /// Pumps until `want` matches an event (events before it are returned too).
    pub fn until(
        &mut self,
        mut want: impl FnMut(&arcly::rtmp::ClientEvent) -> bool,
    ) -> Vec<arcly::rtmp::ClientEvent> {
        let t0 = std::time::Instant::now();
        let mut seen = Vec::new();
        loop {
            if self.pending.is_empty() {
                let evs = self.pump(Duration::from_millis(20));
                self.pending.extend(evs);
            }
            while let Some(ev) = self.pending.pop_front() {
                let done = want(&ev);
                if let arcly::rtmp::ClientEvent::Closed(r) = &ev {
                    if !done {
                        panic!("rtmp client closed: {r}; events so far: {}", seen.len());
                    }
                }
                seen.push(ev);
                if done {
                    return seen;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "rtmp client timed out"
            );
        }
    }
}

fn avc_frame(i: i64) -> Frame {
    let key = i % 25 == 0;
    let nal: &[u8] = if key {
        &[0, 0, 0, 5, 0x65, 0x88, 0x84, 0x00, 0x10]
    } else {
        &[0, 0, 0, 5, 0x41, 0x9a, 0x02, 0x03, 0x04]
    };
    Frame {
        codec: Codec::H264,
        flags: if key {
            FrameFlags::KEYFRAME
        } else {
            FrameFlags::NONE
        },
        pts: i * 40,
        dts: i * 40,
        timebase: 1000,
        payload: Bytes::copy_from_slice(nal),
    }
}

/// Publishes an H.264 stream with the RTMP client while two RTMP players
/// watch: both get the config, then every frame in order.
pub fn scenario_rtmp(addr: SocketAddr) {
    use arcly::rtmp::{ClientEvent, ClientMode};
    let url = format!("rtmp://{addr}/live/smoke");
    let mut publisher = RtmpClient::connect(addr, &url, ClientMode::Publish);
    publisher.until(|e| matches!(e, ClientEvent::Publishing));
    let config = Frame {
        codec: Codec::H264,
        flags: FrameFlags::CONFIG,
        pts: 0,
        dts: 0,
        timebase: 1000,
        payload: Bytes::from_static(&[
            0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00,
            0x04, 0x68, 0xee, 0x3c, 0x80,
        ]),
    };
    publisher.conn.send_frame(&config).unwrap();
    publisher.conn.send_frame(&avc_frame(0)).unwrap();
    publisher.flush();

    let mut players: Vec<RtmpClient> = (0..2)
        .map(|_| RtmpClient::connect(addr, &url, ClientMode::Play))
        .collect();
    let mut early: Vec<Vec<ClientEvent>> = players
        .iter_mut()
        .map(|p| p.until(|e| matches!(e, ClientEvent::Playing)))
        .collect();
    for i in 1..100 {
        publisher.conn.send_frame(&avc_frame(i)).unwrap();
    }
    publisher.flush();
    for (p, early) in players.iter_mut().zip(early.iter_mut()) {
        let mut dts = Vec::new();
        let mut configs = 0;
        let mut count = |e: &ClientEvent| {
            if let ClientEvent::Frame(f) = e {
                if f.is_config() {
                    assert!(dts.is_empty(), "config after frames");
                    configs += 1;
                } else {
                    dts.push(f.dts);
                }
            }
            dts.last() == Some(&(99 * 40))
        };
        let done = early.iter().any(&mut count);
        if !done {
            p.until(&mut count);
        }
        let expected: Vec<i64> = (0..100).map(|i| i * 40).collect();
        assert_eq!(dts, expected, "player frames");
        assert!(configs >= 1, "no codec config before the frames");
    }
    let now = publisher.clock.instant(std::time::Instant::now());
    publisher.conn.close(now);
    publisher.flush();
    for p in &mut players {
        p.until(|e| {
            matches!(
                e,
                ClientEvent::StreamEof | ClientEvent::Closed(_) | ClientEvent::Status { .. }
            ) && !matches!(e, ClientEvent::Status { code, .. } if code.contains("Start"))
        });
    }
}
