//! In-process arcly servers on each adapter, bound to a free loopback port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use arcly::rtmp::{RtmpSessionFactory, ServerConfig};
use arcly::session::SessionFactory;
use arcly::Engine;

/// Which adapter drives the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// `arcly_tokio::serve_tcp` on a multi-threaded tokio runtime.
    Tokio,
    /// `arcly_async_io::serve_tcp` under `smol`.
    AsyncIoSmol,
    /// `arcly_async_io::serve_tcp` under async-std's executor.
    AsyncIoAsyncStd,
    /// `arcly_blocking::serve_tcp`: std::net and threads.
    Blocking,
}

impl Adapter {
    /// A short name for labels.
    pub fn name(self) -> &'static str {
        match self {
            Adapter::Tokio => "tokio",
            Adapter::AsyncIoSmol => "async-io/smol",
            Adapter::AsyncIoAsyncStd => "async-io/async-std",
            Adapter::Blocking => "blocking",
        }
    }
}

/// Per-connection TCP settings every adapter gets (the adapters' own
/// defaults unless a test changes them).
#[derive(Debug, Clone, Copy)]
pub struct TcpSettings {
    /// `DriveConfig::write_stall_timeout`.
    pub write_stall_timeout: std::time::Duration,
    /// `ServeConfig::send_buffer` (SO_SNDBUF).
    pub send_buffer: usize,
}

impl Default for TcpSettings {
    fn default() -> Self {
        TcpSettings {
            write_stall_timeout: arcly::session::driver::DEFAULT_WRITE_STALL_TIMEOUT,
            send_buffer: arcly::session::serve::DEFAULT_TCP_SEND_BUFFER,
        }
    }
}

impl TcpSettings {
    fn serve_config(self) -> arcly::session::ServeConfig {
        arcly::session::ServeConfig::default()
            .with_drive(
                arcly::session::DriveConfig::default()
                    .with_write_stall_timeout(self.write_stall_timeout),
            )
            .with_send_buffer(self.send_buffer)
    }
}

/// A running server; stopped when dropped.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its engine (for counters and direct checks).
    pub engine: Engine,
    adapter: Adapter,
    stop: Option<Box<dyn FnOnce() + Send>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// An RTMP server accepting every publish and play, with the default
    /// server settings and an engine accepting any app.
    pub fn start(adapter: Adapter) -> TestServer {
        Self::start_with(adapter, Engine::with_defaults(), ServerConfig::default())
    }

    /// An RTMP server on `engine` with `config`.
    pub fn start_with(adapter: Adapter, engine: Engine, config: ServerConfig) -> TestServer {
        Self::start_with_tcp(adapter, engine, config, TcpSettings::default())
    }

    /// An RTMP server on `engine` with `config` and these TCP settings.
    pub fn start_with_tcp(
        adapter: Adapter,
        engine: Engine,
        config: ServerConfig,
        tcp: TcpSettings,
    ) -> TestServer {
        let factory: Arc<dyn SessionFactory> =
            Arc::new(RtmpSessionFactory::allow_all(engine.clone()).with_config(config));
        Self::start_factory_tcp(adapter, engine, factory, tcp)
    }

    /// A server whose sessions `factory` builds (e.g. with an admission
    /// policy), on `engine`.
    pub fn start_factory(
        adapter: Adapter,
        engine: Engine,
        factory: Arc<dyn SessionFactory>,
    ) -> TestServer {
        Self::start_factory_tcp(adapter, engine, factory, TcpSettings::default())
    }

    /// [`start_factory`](Self::start_factory) with these TCP settings.
    pub fn start_factory_tcp(
        adapter: Adapter,
        engine: Engine,
        factory: Arc<dyn SessionFactory>,
        tcp: TcpSettings,
    ) -> TestServer {
        let listener = crate::net::local_listener();
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let (stop, thread) = match adapter {
            Adapter::Tokio => start_tokio(listener, factory, tcp),
            Adapter::AsyncIoSmol => start_async_io(listener, factory, false, tcp),
            Adapter::AsyncIoAsyncStd => start_async_io(listener, factory, true, tcp),
            Adapter::Blocking => start_blocking(listener, factory, tcp),
        };
        TestServer {
            addr,
            engine,
            adapter,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The adapter it runs on.
    pub fn adapter(&self) -> Adapter {
        self.adapter
    }

    /// `rtmp://ADDR/live/{stream}`.
    pub fn url(&self, stream: &str) -> String {
        format!("rtmp://{}/live/{stream}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(t) = self.thread.take() {
            // Bounded: the adapters give sessions a short grace, then abort.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

type Started = (Box<dyn FnOnce() + Send>, JoinHandle<()>);

/// A thread named `name` running `serve()` on a two-worker tokio runtime
/// until it returns.
pub fn tokio_thread<F, Fut>(name: &str, serve: F) -> JoinHandle<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
            rt.block_on(serve());
        })
        .unwrap_or_else(|e| panic!("spawn server thread: {e}"))
}

/// A bound std listener handed to tokio (inside a runtime).
pub fn to_tokio_listener(listener: std::net::TcpListener) -> tokio::net::TcpListener {
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("set_nonblocking: {e}"));
    tokio::net::TcpListener::from_std(listener).unwrap_or_else(|e| panic!("tokio listener: {e}"))
}

fn start_tokio(
    listener: std::net::TcpListener,
    factory: Arc<dyn SessionFactory>,
    tcp: TcpSettings,
) -> Started {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = tokio_thread("arcly-tokio-server", move || async move {
        let listener = to_tokio_listener(listener);
        let shutdown = async move {
            let _ = rx.await;
        };
        let config = tcp.serve_config();
        if let Err(e) = arcly_tokio::serve_tcp_with(listener, factory, shutdown, config).await {
            eprintln!("tokio server ended with an error: {e}");
        }
    });
    (
        Box::new(move || {
            let _ = tx.send(());
        }),
        thread,
    )
}

fn start_async_io(
    listener: std::net::TcpListener,
    factory: Arc<dyn SessionFactory>,
    async_std_executor: bool,
    tcp: TcpSettings,
) -> Started {
    let stop = arcly::engine::Signal::new();
    let seen = stop.epoch();
    let wait = stop.clone();
    let name = if async_std_executor {
        "arcly-async-std-server"
    } else {
        "arcly-smol-server"
    };
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let listener =
                async_io::Async::new(listener).unwrap_or_else(|e| panic!("async-io listener: {e}"));
            let shutdown = async move {
                wait.wait(seen).await;
            };
            let result = if async_std_executor {
                async_std::task::block_on(arcly_async_io::serve_tcp_with(
                    listener,
                    factory,
                    shutdown,
                    |conn| {
                        async_std::task::spawn(conn);
                    },
                    tcp.serve_config(),
                ))
            } else {
                let ex = Arc::new(smol::Executor::new());
                let (quit_tx, quit_rx) = smol::channel::unbounded::<()>();
                let workers: Vec<_> = (0..2)
                    .map(|_| {
                        let ex = ex.clone();
                        let quit = quit_rx.clone();
                        std::thread::spawn(move || smol::block_on(ex.run(quit.recv())))
                    })
                    .collect();
                let spawner = ex.clone();
                let r = smol::block_on(ex.run(arcly_async_io::serve_tcp_with(
                    listener,
                    factory,
                    shutdown,
                    move |conn| spawner.spawn(conn).detach(),
                    tcp.serve_config(),
                )));
                drop(quit_tx);
                for w in workers {
                    let _ = w.join();
                }
                r
            };
            if let Err(e) = result {
                eprintln!("{name} ended with an error: {e}");
            }
        })
        .unwrap_or_else(|e| panic!("spawn server thread: {e}"));
    (Box::new(move || stop.notify()), thread)
}

/// std::net and threads.
fn start_blocking(
    listener: std::net::TcpListener,
    factory: Arc<dyn SessionFactory>,
    tcp: TcpSettings,
) -> Started {
    let shutdown = arcly_blocking::Shutdown::new();
    let trigger = shutdown.clone();
    let thread = std::thread::Builder::new()
        .name("arcly-blocking-server".into())
        .spawn(move || {
            let config = arcly_blocking::ServeConfig::default()
                .with_drive(
                    arcly_blocking::DriveConfig::default()
                        .with_write_stall_timeout(tcp.write_stall_timeout),
                )
                .with_send_buffer(tcp.send_buffer);
            if let Err(e) = arcly_blocking::serve_tcp_with(listener, factory, shutdown, config) {
                eprintln!("blocking server ended with an error: {e}");
            }
        })
        .unwrap_or_else(|e| panic!("spawn server thread: {e}"));
    (Box::new(move || trigger.trigger()), thread)
}
