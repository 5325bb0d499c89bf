//! `srt-load`: one synthetic SRT publisher and N SRT viewers, built on
//! arcly's own sans-IO SRT caller (`arcly::srt::endpoint::Endpoint`), each
//! on its own UDP socket driven by `arcly_tokio::serve_udp`. Reports what
//! the viewers received, the end-to-end latency of every video frame and,
//! with `--server-pid`, the CPU the server process spent. A benchmark tool
//! for loopback, not a test.
//!
//! Latency method: the publisher muxes synthetic H.264 pictures into
//! MPEG-TS (arcly's `TsMuxer`), each picture carrying its sequence number
//! in its first slice bytes, and records the instant it hands the
//! picture's last payload to its SRT connection. A viewer demuxes what it
//! receives (arcly's `TsDemuxer`) and, for each picture, takes the time
//! since that instant: publisher TSBPD + server + viewer TSBPD + the
//! demuxer's wait for the next picture's start (the same for every server,
//! so comparing two servers side by side cancels it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use clap::Parser;

use arcly::container::ts::{TsDemuxer, TsMuxer};
use arcly::datagram::{DatagramService, DatagramServiceFactory, Received, Transmit};
use arcly::engine::Signal;
use arcly::frame::{Codec, Frame};
use arcly::srt::endpoint::{Endpoint, EndpointConfig, EndpointEvent};
use arcly::srt::packet::SocketId;
use arcly::time::Instant;
use arcly_bench::procstat;
use arcly_bench::stats::Summary;

/// SRT load generator: a 10 Mbit/s synthetic publish and N viewers.
#[derive(Debug, Parser)]
#[command(name = "srt-load", version, about)]
struct Cli {
    /// Where the publisher connects.
    #[arg(long)]
    publish: SocketAddr,
    /// Stream id of the publisher (empty: none).
    #[arg(long, default_value = "publish:live/bench")]
    publish_streamid: String,
    /// Where the viewers connect (default: the publish address).
    #[arg(long)]
    read: Option<SocketAddr>,
    /// Stream id of the viewers (empty: none).
    #[arg(long, default_value = "read:live/bench")]
    read_streamid: String,
    /// Number of viewers.
    #[arg(short = 'n', long, default_value_t = 100)]
    viewers: usize,
    /// Video bitrate in Mbit/s (25 fps, a keyframe every 50 pictures).
    #[arg(long, default_value_t = 10.0)]
    mbps: f64,
    /// TSBPD latency every caller asks for (ms).
    #[arg(long, default_value_t = 120)]
    latency: u16,
    /// Seconds after the publisher started before viewers connect.
    #[arg(long, default_value_t = 2.0)]
    viewer_delay: f64,
    /// Seconds after the viewers connected before measuring.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Length of the measurement window in seconds.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Server process to measure (CPU seconds over the window).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Process-wide clock origin shared by publisher and viewers.
fn origin() -> std::time::Instant {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    *ORIGIN.get_or_init(std::time::Instant::now)
}

fn micros_now() -> u64 {
    u64::try_from(origin().elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Shared by the publisher and the viewers.
struct Shared {
    /// Send instant (µs since [`origin`]) of picture `seq`, 0 = unknown.
    sent_at: Vec<AtomicU64>,
    /// Latency samples (ms) within the window, bounded.
    latencies: Mutex<Vec<f64>>,
    measuring: std::sync::atomic::AtomicBool,
    bytes_in_window: AtomicU64,
    pictures_in_window: AtomicU64,
    connected: AtomicU64,
    failed: AtomicU64,
    send_full: AtomicU64,
    /// Pictures whose sequence number had no recorded send instant.
    unknown: AtomicU64,
}

const MAX_SAMPLES: usize = 2_000_000;

fn endpoint(latency: u16, seed: u64) -> Endpoint {
    let mut secret = [0u8; 32];
    for (i, b) in secret.iter_mut().enumerate() {
        *b = (seed.rotate_left(i as u32 * 7) as u8) ^ (i as u8);
    }
    Endpoint::new(
        EndpointConfig::default()
            .with_latency_ms(latency)
            .with_rng_seed(seed)
            .with_cookie_secret(secret),
    )
}

/// Sequence number of a synthetic picture: the 4 bytes after the header of
/// its first slice NAL (AVCC or Annex-B, whatever the demuxer gives).
fn picture_seq(f: &Frame) -> Option<u32> {
    if f.codec != Codec::H264 || f.is_config() {
        return None;
    }
    let p = &f.payload;
    // Find a slice NAL header (type 1 or 5) preceded by a start code or
    // a 4-byte length; the synthetic pictures have exactly one slice.
    let mut i = 0;
    while i + 8 < p.len() {
        let start3 = p.get(i..i + 3) == Some(&[0, 0, 1][..]);
        if start3 {
            let h = *p.get(i + 3)?;
            if matches!(h & 0x1F, 1 | 5) {
                return decode_seq(p.get(i + 4..)?);
            }
            i += 3;
            continue;
        }
        i += 1;
    }
    // AVCC: walk 4-byte lengths.
    let mut i = 0;
    while i + 4 < p.len() {
        let b: [u8; 4] = p.get(i..i + 4)?.try_into().ok()?;
        let len = u32::from_be_bytes(b) as usize;
        let h = *p.get(i + 4)?;
        if matches!(h & 0x1F, 1 | 5) {
            return decode_seq(p.get(i + 5..)?);
        }
        i += 4 + len;
    }
    None
}

/// Picture `seq` as one AVCC slice NAL of `size` bytes: IDR (type 5) or
/// non-IDR (type 1), then `seq` in four 7-bit groups with the high bit set
/// (no zero bytes, so no start-code emulation once in Annex-B), then filler.
fn picture(seq: u32, key: bool, dts_ms: i64, size: usize) -> Frame {
    let size = size.max(16);
    let mut b = bytes::BytesMut::with_capacity(size);
    b.extend_from_slice(&u32::try_from(size - 4).unwrap_or(u32::MAX).to_be_bytes());
    b.extend_from_slice(&[if key { 0x65 } else { 0x41 }]);
    for shift in [21u32, 14, 7, 0] {
        b.extend_from_slice(&[0x80 | ((seq >> shift) & 0x7F) as u8]);
    }
    b.resize(size, 0xA5);
    Frame {
        codec: Codec::H264,
        flags: if key {
            arcly::frame::FrameFlags::KEYFRAME
        } else {
            arcly::frame::FrameFlags::NONE
        },
        pts: dts_ms,
        dts: dts_ms,
        timebase: 1000,
        payload: b.freeze(),
    }
}

fn decode_seq(b: &[u8]) -> Option<u32> {
    let mut seq = 0u32;
    for &x in b.get(..4)? {
        if x & 0x80 == 0 {
            return None;
        }
        seq = seq << 7 | u32::from(x & 0x7F);
    }
    Some(seq)
}

// ---------------------------------------------------------------- publisher

struct PublisherFactory {
    shared: Arc<Shared>,
    remote: SocketAddr,
    streamid: String,
    latency: u16,
    bytes_per_picture: usize,
}

impl DatagramServiceFactory for PublisherFactory {
    fn new_service(
        &self,
        _sockets: &[SocketAddr],
        now: Instant,
        seed: u64,
    ) -> Box<dyn DatagramService> {
        let mut ep = endpoint(self.latency, seed);
        let sid = (!self.streamid.is_empty()).then_some(self.streamid.as_str());
        let id = ep.connect(now, self.remote, sid, None).ok();
        let mut mux = TsMuxer::new(Some(Codec::H264), None).ok();
        // The muxer keeps the parameter sets and writes them before keyframes.
        if let Some(m) = mux.as_mut() {
            let _ = m.mux(&arcly_tests::synth::video_config());
        }
        Box::new(PublisherService {
            shared: self.shared.clone(),
            ep,
            id,
            connected: false,
            mux,
            next_picture: 0,
            start: None,
            bytes_per_picture: self.bytes_per_picture,
            closing: false,
        })
    }
}

struct PublisherService {
    shared: Arc<Shared>,
    ep: Endpoint,
    id: Option<SocketId>,
    connected: bool,
    mux: Option<TsMuxer>,
    next_picture: u32,
    start: Option<Instant>,
    bytes_per_picture: usize,
    closing: bool,
}

const FPS: u64 = 25;
const PAYLOAD: usize = 7 * 188;

impl PublisherService {
    fn events(&mut self, now: Instant) {
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                EndpointEvent::Connected { id, .. } if Some(id) == self.id => {
                    self.connected = true;
                    self.start = Some(now);
                    eprintln!("srt-load: publisher connected");
                }
                EndpointEvent::ConnectFailed { reason, .. } => {
                    eprintln!("srt-load: publisher could not connect: {reason}");
                    self.shared.failed.fetch_add(1, Ordering::Relaxed);
                }
                EndpointEvent::Closed { reason, .. } => {
                    eprintln!("srt-load: publisher closed: {reason:?}");
                    self.connected = false;
                }
                _ => {}
            }
        }
    }

    fn picture_due(&self) -> Option<Instant> {
        let start = self.start?;
        Some(start + Duration::from_micros(u64::from(self.next_picture) * 1_000_000 / FPS))
    }

    fn send_pictures(&mut self, now: Instant) {
        let (Some(id), true) = (self.id, self.connected) else {
            return;
        };
        while self.picture_due().is_some_and(|t| t <= now) {
            let seq = self.next_picture;
            self.next_picture += 1;
            let key = seq % 50 == 0;
            let dts = i64::from(seq) * 1000 / FPS as i64;
            let frame = picture(seq, key, dts, self.bytes_per_picture);
            let Some(mux) = self.mux.as_mut() else { return };
            let Ok(ts) = mux.mux(&frame) else { continue };
            // 7 TS packets per payload; the picture's tail goes out at once
            // (a short last payload), as ffmpeg's SRT output does per write.
            let mut at = 0;
            while at < ts.len() {
                let end = (at + PAYLOAD).min(ts.len());
                if self.ep.send(now, id, ts.slice(at..end)).is_err() {
                    self.shared.send_full.fetch_add(1, Ordering::Relaxed);
                }
                at = end;
            }
            if let Some(slot) = self.shared.sent_at.get(seq as usize) {
                slot.store(micros_now().max(1), Ordering::Relaxed);
            }
        }
    }
}

impl DatagramService for PublisherService {
    fn handle_datagram(&mut self, now: Instant, d: Received) {
        self.ep.handle_datagram(now, d.src, d.contents);
        self.events(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        self.events(now);
        self.send_pictures(now);
    }

    fn handle_media(&mut self, _now: Instant, _fired: &[usize]) {}

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ep.poll_transmit()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [self.ep.poll_timeout(), self.picture_due()]
            .into_iter()
            .flatten()
            .min()
    }

    fn media_version(&self) -> u64 {
        0
    }

    fn media_signals(&self, _out: &mut Vec<Signal>) {}

    fn close(&mut self, now: Instant) {
        self.closing = true;
        if let Some(id) = self.id {
            self.ep.close(now, id);
        }
        self.start = None;
    }

    fn is_closed(&self) -> bool {
        self.closing
    }
}

// ------------------------------------------------------------------ viewer

struct ViewerFactory {
    shared: Arc<Shared>,
    remote: SocketAddr,
    streamid: String,
    latency: u16,
}

impl DatagramServiceFactory for ViewerFactory {
    fn new_service(
        &self,
        _sockets: &[SocketAddr],
        now: Instant,
        seed: u64,
    ) -> Box<dyn DatagramService> {
        let mut ep = endpoint(self.latency, seed);
        let sid = (!self.streamid.is_empty()).then_some(self.streamid.as_str());
        let id = ep.connect(now, self.remote, sid, None).ok();
        Box::new(ViewerService {
            shared: self.shared.clone(),
            ep,
            id,
            demux: TsDemuxer::new(),
            closing: false,
        })
    }
}

struct ViewerService {
    shared: Arc<Shared>,
    ep: Endpoint,
    id: Option<SocketId>,
    demux: TsDemuxer,
    closing: bool,
}

impl ViewerService {
    fn events(&mut self) {
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                EndpointEvent::Connected { id, .. } if Some(id) == self.id => {
                    self.shared.connected.fetch_add(1, Ordering::Relaxed);
                }
                EndpointEvent::ConnectFailed { reason, .. } => {
                    eprintln!("srt-load: viewer could not connect: {reason}");
                    self.shared.failed.fetch_add(1, Ordering::Relaxed);
                }
                EndpointEvent::Data { payload, .. } => {
                    let measuring = self.shared.measuring.load(Ordering::Relaxed);
                    if measuring {
                        self.shared
                            .bytes_in_window
                            .fetch_add(payload.len() as u64, Ordering::Relaxed);
                    }
                    if self.demux.handle_input(&payload).is_err() {
                        continue;
                    }
                    while let Some(f) = self.demux.poll_frame() {
                        let Some(seq) = picture_seq(&f) else { continue };
                        if !measuring {
                            continue;
                        }
                        self.shared
                            .pictures_in_window
                            .fetch_add(1, Ordering::Relaxed);
                        let sent = self
                            .shared
                            .sent_at
                            .get(seq as usize)
                            .map_or(0, |s| s.load(Ordering::Relaxed));
                        if sent == 0
                            && self.shared.unknown.fetch_add(1, Ordering::Relaxed) < 5
                            && std::env::var_os("SRT_LOAD_DEBUG").is_some()
                        {
                            eprintln!(
                                "srt-load: picture seq {seq} has no send time; payload starts {:02x?}",
                                f.payload.get(..24)
                            );
                        }
                        if sent > 0 {
                            let ms = micros_now().saturating_sub(sent) as f64 / 1000.0;
                            if let Ok(mut l) = self.shared.latencies.lock() {
                                if l.len() < MAX_SAMPLES {
                                    l.push(ms);
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

impl DatagramService for ViewerService {
    fn handle_datagram(&mut self, now: Instant, d: Received) {
        self.ep.handle_datagram(now, d.src, d.contents);
        self.events();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.ep.handle_timeout(now);
        self.events();
    }

    fn handle_media(&mut self, _now: Instant, _fired: &[usize]) {}

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ep.poll_transmit()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.ep.poll_timeout()
    }

    fn media_version(&self) -> u64 {
        0
    }

    fn media_signals(&self, _out: &mut Vec<Signal>) {}

    fn close(&mut self, now: Instant) {
        self.closing = true;
        if let Some(id) = self.id {
            self.ep.close(now, id);
        }
    }

    fn is_closed(&self) -> bool {
        self.closing
    }
}

fn cpu(pid: Option<u32>) -> Option<f64> {
    procstat::cpu_seconds(pid?)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _ = origin();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("srt-load: tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let total = cli.viewer_delay + cli.warmup + cli.seconds + 10.0;
    let pictures = (total * FPS as f64) as usize + 100;
    let shared = Arc::new(Shared {
        sent_at: (0..pictures).map(|_| AtomicU64::new(0)).collect(),
        latencies: Mutex::new(Vec::new()),
        measuring: std::sync::atomic::AtomicBool::new(false),
        bytes_in_window: AtomicU64::new(0),
        pictures_in_window: AtomicU64::new(0),
        connected: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        send_full: AtomicU64::new(0),
        unknown: AtomicU64::new(0),
    });
    let bytes_per_picture = (cli.mbps * 1e6 / 8.0 / FPS as f64) as usize;
    let read = cli.read.unwrap_or(cli.publish);
    let result = rt.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        let spawn_udp = |tasks: &mut tokio::task::JoinSet<()>,
                         factory: Box<dyn DatagramServiceFactory>| {
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                let socket = match tokio::net::UdpSocket::bind("127.0.0.1:0").await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("srt-load: bind: {e}");
                        return;
                    }
                };
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                let config = arcly_tokio::UdpConfig::default()
                    .with_socket_buffer(4 << 20)
                    .with_close_linger(Duration::from_millis(300));
                if let Err(e) =
                    arcly_tokio::serve_udp_with(socket, BoxFactory(factory), shutdown, &config)
                        .await
                {
                    eprintln!("srt-load: socket: {e}");
                }
            });
        };
        spawn_udp(
            &mut tasks,
            Box::new(PublisherFactory {
                shared: shared.clone(),
                remote: cli.publish,
                streamid: cli.publish_streamid.clone(),
                latency: cli.latency,
                bytes_per_picture,
            }),
        );
        tokio::time::sleep(Duration::from_secs_f64(cli.viewer_delay)).await;
        for _ in 0..cli.viewers {
            spawn_udp(
                &mut tasks,
                Box::new(ViewerFactory {
                    shared: shared.clone(),
                    remote: read,
                    streamid: cli.read_streamid.clone(),
                    latency: cli.latency,
                }),
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_secs_f64(cli.warmup)).await;
        let cpu0 = cpu(cli.server_pid);
        let self0 = procstat::cpu_seconds(std::process::id());
        let t0 = std::time::Instant::now();
        shared.measuring.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs_f64(cli.seconds)).await;
        shared.measuring.store(false, Ordering::Relaxed);
        let window = t0.elapsed().as_secs_f64();
        let cpu1 = cpu(cli.server_pid);
        let self1 = procstat::cpu_seconds(std::process::id());
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        (
            window,
            cpu0.zip(cpu1).map(|(a, b)| b - a),
            self0.zip(self1).map(|(a, b)| b - a),
        )
    });
    let (window, server_cpu, self_cpu) = result;
    let lat = shared
        .latencies
        .lock()
        .map(|l| Summary::of(l.iter().copied()))
        .unwrap_or_default();
    let bytes = shared.bytes_in_window.load(Ordering::Relaxed);
    let pictures = shared.pictures_in_window.load(Ordering::Relaxed);
    let expected = (window * FPS as f64 * cli.viewers as f64).round();
    let out_mbps = bytes as f64 * 8.0 / window / 1e6;
    let server_cpu_per_s = server_cpu.map(|c| c / window);
    if cli.json {
        println!(
            "{{\"viewers\":{},\"connected\":{},\"failed\":{},\"window_s\":{window:.2},\
             \"delivered_mbps\":{out_mbps:.2},\"pictures\":{pictures},\"pictures_expected\":{expected},\
             \"latency_ms\":{{\"count\":{},\"min\":{:.1},\"median\":{:.1},\"p99\":{:.1},\"max\":{:.1},\"mean\":{:.1}}},\
             \"server_cpu_s_per_s\":{},\"load_cpu_s_per_s\":{},\"send_full\":{}}}",
            cli.viewers,
            shared.connected.load(Ordering::Relaxed),
            shared.failed.load(Ordering::Relaxed),
            lat.count,
            lat.min,
            lat.median,
            lat.p99,
            lat.max,
            lat.mean,
            server_cpu_per_s.map_or("null".to_owned(), |c| format!("{c:.4}")),
            self_cpu.map_or("null".to_owned(), |c| format!("{:.4}", c / window)),
            shared.send_full.load(Ordering::Relaxed),
        );
    } else {
        println!(
            "viewers {} (connected {}, failed {}), window {window:.1} s",
            cli.viewers,
            shared.connected.load(Ordering::Relaxed),
            shared.failed.load(Ordering::Relaxed)
        );
        println!(
            "delivered {out_mbps:.1} Mbit/s, pictures {pictures} of {expected} expected ({:.2} %)",
            if expected > 0.0 {
                pictures as f64 * 100.0 / expected
            } else {
                0.0
            }
        );
        println!(
            "latency ms: min {:.1} median {:.1} p99 {:.1} max {:.1} (n={})",
            lat.min, lat.median, lat.p99, lat.max, lat.count
        );
        println!(
            "pictures without a send time: {}, publisher send-buffer full: {}",
            shared.unknown.load(Ordering::Relaxed),
            shared.send_full.load(Ordering::Relaxed)
        );
        if let Some(c) = server_cpu_per_s {
            println!("server CPU {c:.3} s/s");
        }
        if let Some(c) = self_cpu {
            println!("load generator CPU {:.3} s/s", c / window);
        }
    }
    std::process::ExitCode::SUCCESS
}

/// A boxed factory as a factory.
struct BoxFactory(Box<dyn DatagramServiceFactory>);

impl DatagramServiceFactory for BoxFactory {
    fn new_service(
        &self,
        sockets: &[SocketAddr],
        now: Instant,
        seed: u64,
    ) -> Box<dyn DatagramService> {
        self.0.new_service(sockets, now, seed)
    }
}
