//! `srt-server`: an SRT server (`SrtServiceFactory`, any app accepted) on
//! one chosen adapter's UDP driver, for comparing the drivers under
//! `srt-load`: `srt-server --adapter blocking --latency 120`. Prints
//! `SRT listening on ADDR` and serves until killed. A benchmark tool.

use std::time::Duration;

use clap::{Parser, ValueEnum};

use arcly_tests::srt::{SrtOptions, SrtTestServer};
use arcly_tests::Adapter;

/// Which UDP driver.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Driver {
    /// `arcly_tokio::serve_udp` (multi-thread runtime, 2 workers).
    Tokio,
    /// `arcly_async_io::serve_udp` under smol.
    Smol,
    /// `arcly_async_io::serve_udp` under async-std's executor.
    AsyncStd,
    /// `arcly_blocking::serve_udp` (reader thread + service thread).
    Blocking,
}

/// SRT server on a chosen adapter (loopback, ephemeral port).
#[derive(Debug, Parser)]
#[command(name = "srt-server", version, about)]
struct Cli {
    /// The UDP driver.
    #[arg(long, value_enum, default_value_t = Driver::Tokio)]
    adapter: Driver,
    /// TSBPD latency (ms).
    #[arg(long, default_value_t = 120)]
    latency: u16,
}

fn main() {
    let cli = Cli::parse();
    let adapter = match cli.adapter {
        Driver::Tokio => Adapter::Tokio,
        Driver::Smol => Adapter::AsyncIoSmol,
        Driver::AsyncStd => Adapter::AsyncIoAsyncStd,
        Driver::Blocking => Adapter::Blocking,
    };
    let server = SrtTestServer::start_with(
        adapter,
        &SrtOptions {
            latency_ms: cli.latency,
            ..SrtOptions::default()
        },
    );
    println!("SRT listening on {}", server.addr);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
