//! The project's own RTMP client ([`arcly::rtmp::ClientConnection`]) driven
//! over a tokio `TcpStream`, for players and publishers in tests.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arcly::frame::Frame;
use arcly::rtmp::{ClientConfig, ClientConnection, ClientEvent, ClientMode};
use arcly::time::Clock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::synth::SynthSpec;

/// A connected client: the machine plus its socket.
pub struct Client {
    conn: ClientConnection,
    stream: TcpStream,
    clock: Clock,
    buf: Vec<u8>,
    eof: bool,
    /// When the TCP connect started.
    pub started: Instant,
}

/// Options of [`Client::connect_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectOptions {
    /// `SO_RCVBUF` for the socket (a small one makes a stalled reader stall
    /// the server's writes sooner).
    pub recv_buffer: Option<u32>,
}

impl Client {
    /// Connects to `addr` and starts the handshake for `url` (`rtmp://h/app/stream`).
    pub async fn connect(addr: SocketAddr, url: &str, mode: ClientMode) -> std::io::Result<Client> {
        Self::connect_with(addr, url, mode, ConnectOptions::default()).await
    }

    /// [`connect`](Self::connect) with socket options.
    pub async fn connect_with(
        addr: SocketAddr,
        url: &str,
        mode: ClientMode,
        opts: ConnectOptions,
    ) -> std::io::Result<Client> {
        let started = Instant::now();
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(n) = opts.recv_buffer {
            socket.set_recv_buffer_size(n)?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        let config = ClientConfig::from_url(url, mode)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let clock = Clock::new(started);
        let seed = u64::from(stream.local_addr()?.port());
        let conn = ClientConnection::new(config, clock.instant(Instant::now()), seed);
        Ok(Client {
            conn,
            stream,
            clock,
            buf: vec![0; 64 * 1024],
            eof: false,
            started,
        })
    }

    /// The machine.
    pub fn conn(&mut self) -> &mut ClientConnection {
        &mut self.conn
    }

    /// The local socket address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.stream.local_addr().ok()
    }

    /// Writes everything the machine has queued.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        while let Some(b) = self.conn.poll_transmit() {
            self.stream.write_all(&b).await?;
        }
        Ok(())
    }

    /// The next event, reading the socket as needed; `None` when `timeout`
    /// passes first. After the connection closed, returns `Closed` once and
    /// then `None`.
    pub async fn next_event(&mut self, timeout: Duration) -> std::io::Result<Option<ClientEvent>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(ev) = self.conn.poll_event() {
                return Ok(Some(ev));
            }
            self.flush().await?;
            if self.eof || self.conn.is_closed() {
                return Ok(None);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let mut wake = deadline;
            if let Some(t) = self.conn.poll_timeout() {
                wake = wake.min(tokio::time::Instant::from_std(self.clock.to_std(t)));
            }
            match tokio::time::timeout_at(wake, self.stream.read(&mut self.buf)).await {
                Ok(Ok(n)) => {
                    let now = self.clock.instant(Instant::now());
                    if n == 0 {
                        self.eof = true;
                    }
                    let data = self.buf.get(..n).unwrap_or_default();
                    self.conn.handle_input(now, data);
                }
                Ok(Err(e)) => {
                    self.eof = true;
                    let now = self.clock.instant(Instant::now());
                    self.conn.handle_input(now, &[]);
                    if self.conn.poll_event().is_none() {
                        return Err(e);
                    }
                }
                Err(_) => {
                    let now = self.clock.instant(Instant::now());
                    self.conn.handle_timeout(now);
                }
            }
        }
    }

    /// Waits for `Publishing` (publish mode) or `Playing` (play mode),
    /// failing on `Closed`, a status of level `error`, or `timeout`.
    pub async fn wait_started(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Ok(Some(ClientEvent::Publishing | ClientEvent::Playing)) => return Ok(()),
                Ok(Some(ClientEvent::Closed(r))) => return Err(format!("closed: {r}")),
                Ok(Some(ClientEvent::Status {
                    level,
                    code,
                    description,
                })) if level == "error" => return Err(format!("{code}: {description}")),
                Ok(Some(_)) => {}
                Ok(None) => return Err(format!("not started within {timeout:?}")),
                Err(e) => return Err(format!("I/O error: {e}")),
            }
        }
    }

    /// Sends a frame (publish mode) and writes it out.
    pub async fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
        self.conn
            .send_frame(frame)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.flush().await
    }

    /// Polite end: FCUnpublish/deleteStream, flush, shut the write side
    /// down, then read until the server closes (at most 3 s). Dropping a
    /// socket with unread input would send a reset that can discard the
    /// last frames before the server reads them.
    pub async fn shutdown(mut self) {
        self.conn.close(self.clock.instant(Instant::now()));
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => break,
            }
        }
    }
}

/// A frame as a player received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// The frame.
    pub frame: Frame,
}

/// The well-behaved RTMP pair that runs beside an attack: on `rt`, a
/// [`publish_synthetic`] publisher of `spec` to `url` (pictures paced from
/// 200 ms from now), then, 600 ms later, a player of `url` that collects the
/// sequence numbers of the pictures it receives (`synth::video_seq`) until
/// the stream ends, the connection closes or nothing arrives for 5 s.
pub fn publish_and_play(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    url: String,
    spec: SynthSpec,
) -> (
    tokio::task::JoinHandle<Result<(), String>>,
    tokio::task::JoinHandle<Vec<u32>>,
) {
    let t0 = Instant::now() + Duration::from_millis(200);
    let pub_url = url.clone();
    let publisher = rt.spawn(async move { publish_synthetic(addr, &pub_url, spec, t0).await });
    std::thread::sleep(Duration::from_millis(600));
    let player = rt.spawn(async move {
        let mut c = Client::connect(addr, &url, ClientMode::Play).await.unwrap();
        let mut seqs = Vec::new();
        while let Ok(Some(ev)) = c.next_event(Duration::from_secs(5)).await {
            match ev {
                ClientEvent::Frame(f) => seqs.extend(crate::synth::video_seq(&f)),
                ClientEvent::StreamEof | ClientEvent::Closed(_) => break,
                _ => {}
            }
        }
        seqs
    });
    (publisher, player)
}

/// Publishes `spec` from the synthetic source to `url`, paced in real time
/// from `t0` (picture `i` at `t0 + i * frame_ms`), and returns when done.
/// Sends the configs first; ends politely.
pub async fn publish_synthetic(
    addr: SocketAddr,
    url: &str,
    spec: SynthSpec,
    t0: Instant,
) -> Result<(), String> {
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    publish_synthetic_logged(addr, url, spec, t0, sent).await
}

/// [`publish_synthetic`] that also records in `sent[i]` when picture `i`
/// was written to the socket (for lag measurements).
pub async fn publish_synthetic_logged(
    addr: SocketAddr,
    url: &str,
    spec: SynthSpec,
    t0: Instant,
    sent: std::sync::Arc<std::sync::Mutex<Vec<Option<Instant>>>>,
) -> Result<(), String> {
    let mut c = Client::connect(addr, url, ClientMode::Publish)
        .await
        .map_err(|e| format!("publisher connect: {e}"))?;
    c.wait_started(Duration::from_secs(5)).await?;
    let io = |e: std::io::Error| format!("publisher I/O: {e}");
    c.send(&crate::synth::video_config()).await.map_err(io)?;
    if spec.audio {
        c.send(&crate::synth::audio_config()).await.map_err(io)?;
    }
    for i in 0..spec.frames {
        let due = t0 + Duration::from_millis(u64::from(i) * spec.frame_ms() as u64);
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        let v = spec.video(i);
        c.conn()
            .send_frame(&v)
            .map_err(|e| format!("send_frame: {e}"))?;
        if spec.audio {
            let a = crate::synth::audio_frame(i, v.dts);
            c.conn()
                .send_frame(&a)
                .map_err(|e| format!("send_frame: {e}"))?;
        }
        c.flush().await.map_err(io)?;
        if let Ok(mut s) = sent.lock() {
            if let Some(slot) = s.get_mut(i as usize) {
                *slot = Some(Instant::now());
            }
        }
        while let Ok(Some(ev)) = c.next_event(Duration::ZERO).await {
            if let ClientEvent::Closed(r) = ev {
                return Err(format!("publisher closed by server: {r}"));
            }
        }
    }
    c.shutdown().await;
    Ok(())
}
