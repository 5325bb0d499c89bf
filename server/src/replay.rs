//! `arcly replay capture.pcap [--port N] [--addr IP] [--protocol rtmp|srt|rtsp]
//! [--seed N] [--passphrase P] [--json]`: replays a capture through the protocol machines
//! (see `docs/replay.md`). Prints a readable summary, or one JSON object per
//! event and line with `--json`. Exit status 1 when the capture cannot be
//! read, 0 otherwise (protocol errors found in the capture are output, not
//! failures of the command).

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use arcly::replay::{Protocol, Replay, ReplayConfig, SrtReplayLimits};

/// Arguments of `arcly replay`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ReplayArgs {
    /// The capture file (pcap or pcapng).
    pub capture: PathBuf,
    /// Replay only connections with this port on either side.
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Replay only connections with this address on either side.
    #[arg(long, value_name = "IP")]
    pub addr: Option<IpAddr>,
    /// The protocol of the selected connections, `rtmp`, `srt` or `rtsp`
    /// (default: guessed: RTMP by port 1935 or the version byte, RTSP by
    /// port 554/8554 or an RTSP request line, SRT for UDP flows by port 8890
    /// or a handshake-shaped first datagram).
    #[arg(long, value_name = "NAME")]
    pub protocol: Option<Protocol>,
    /// The machines' seed (default: learned from the handshake when the
    /// server was arcly, else 0).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// The passphrase of an encrypted SRT capture (draft-sharabayko-srt-01
    /// §6); without it an encrypted SRT flow shows its handshake only.
    #[arg(long, value_name = "P")]
    pub passphrase: Option<String>,
    /// One JSON object per event and line instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// Runs the replay and prints the result on stdout.
pub fn run(args: &ReplayArgs) -> ExitCode {
    let cfg = ReplayConfig::default()
        .with_port(args.port)
        .with_addr(args.addr)
        .with_protocol(args.protocol)
        .with_seed(args.seed)
        .with_srt(SrtReplayLimits {
            passphrase: args.passphrase.clone(),
            ..SrtReplayLimits::default()
        });
    // Core reads no files: the capture is opened here and read through.
    let replay = match std::fs::File::open(&args.capture)
        .map_err(|e| format!("cannot read the capture: {e}"))
        .and_then(|file| Replay::from_reader(file, &cfg).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("arcly replay: {}: {e}", args.capture.display());
            return ExitCode::FAILURE;
        }
    };
    let text = if args.json {
        replay.to_json_lines()
    } else {
        replay.summary()
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arcly replay: cannot write the output: {e}");
            ExitCode::FAILURE
        }
    }
}
