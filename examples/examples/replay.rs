//! Replaying a capture through the library API (what `arcly replay` does).
//!
//! Run: `cargo run -p arcly-examples --example replay -- CAPTURE [--port N] [--json]`
//! e.g. with `tests/fixtures/ffmpeg_publish_arcly.pcap`.
//!
//! Reads the pcap/pcapng file, reassembles its TCP connections, drives each
//! RTMP connection through the server machine with the capture's timestamps
//! and a seed learned from the handshake, then prints per connection the
//! codec configs, the frames per codec, and whether the machine reproduced
//! what the captured server sent; `--json` prints the event lines instead.

use std::process::ExitCode;

use arcly::replay::{Direction, EventKind, Replay, ReplayConfig};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut cfg = ReplayConfig::default();
    let mut json = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--port" => cfg.port = args.next().and_then(|p| p.parse().ok()),
            _ => path = Some(a),
        }
    }
    let Some(path) = path else {
        eprintln!("usage: replay CAPTURE [--port N] [--json]");
        return ExitCode::FAILURE;
    };
    // Core reads no files: open the capture here and hand over the reader.
    let replay = match std::fs::File::open(&path)
        .map_err(|e| format!("cannot read the capture: {e}"))
        .and_then(|file| Replay::from_reader(file, &cfg).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        print!("{}", replay.to_json_lines());
        return ExitCode::SUCCESS;
    }
    for flow in &replay.flows {
        println!(
            "flow {}: {} -> {} ({})",
            flow.flow.id,
            flow.flow.client,
            flow.flow.server,
            flow.protocol.map_or("not replayed", |p| p.name())
        );
        for ev in &flow.events {
            match &ev.kind {
                EventKind::Publish { app, stream, .. } => println!("  publish {app}/{stream}"),
                EventKind::Play { app, stream, .. } => println!("  play {app}/{stream}"),
                EventKind::Frame(f) if f.is_config() => {
                    println!(
                        "  {} config {}: {}",
                        ev.dir.name(),
                        f.codec,
                        hex(&f.payload)
                    );
                }
                EventKind::Gap { offset, len } => println!("  gap: {len} bytes at {offset}"),
                EventKind::Error { message } => println!("  error: {message}"),
                _ => {}
            }
        }
        for dir in [Direction::ToServer, Direction::ToClient] {
            let frames: Vec<_> = flow.frames(dir).filter(|f| !f.is_config()).collect();
            if frames.is_empty() {
                continue;
            }
            let keys = frames
                .iter()
                .filter(|f| f.is_keyframe() && f.kind() == arcly::MediaKind::Video)
                .count();
            println!(
                "  {}: {} frames, {} video keyframes",
                dir.name(),
                frames.len(),
                keys
            );
        }
        println!(
            "  server output reproduced: {} of {} captured bytes (seed {:#x}{})",
            flow.matching_output_prefix(),
            flow.captured_output.len(),
            flow.seed,
            if flow.seed_learned { ", learned" } else { "" }
        );
    }
    ExitCode::SUCCESS
}
