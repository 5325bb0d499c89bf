//! Embedding arcly in an application.
//!
//! Run: `cargo run -p arcly-examples --example embed -- [RTMP_ADDR] [--once]`
//! (default RTMP address `127.0.0.1:1935`).
//!
//! 1. Publishes synthetic frames from code into `live/demo` and subscribes to
//!    them in-process: a viewer that joins mid-stream gets the codec configs,
//!    then the cached GOP from its last keyframe, then live frames.
//! 2. Runs the RTMP server inside the app (arcly-tokio), and watches every
//!    stream that gets published (e.g. with
//!    `ffmpeg -re -f lavfi -i testsrc -c:v libx264 -g 50 -f flv rtmp://127.0.0.1:1935/live/cam`),
//!    printing what an in-process subscriber receives each second, until
//!    Ctrl-C. `--once` stops after step 1.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arcly::engine::Recv;
use arcly::rtmp::RtmpSessionFactory;
use arcly::{Codec, Engine, Frame, FrameFlags, StreamKey};
use bytes::Bytes;

fn synthetic(i: i64) -> Frame {
    let key = i % 25 == 0;
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
        // Not a real picture: enough to follow the frames through the engine.
        payload: Bytes::from(vec![0u8; if key { 8000 } else { 1500 }]),
    }
}

/// Part 1: publish from code, subscribe in-process, show instant start.
fn publish_and_subscribe(engine: &Engine) -> Result<(), Box<dyn std::error::Error>> {
    let key = StreamKey::new("live", "demo")?;
    let mut publisher = engine.publish(key.clone())?;
    publisher.send(Frame {
        codec: Codec::H264,
        flags: FrameFlags::CONFIG,
        pts: 0,
        dts: 0,
        timebase: 1000,
        payload: Bytes::from_static(b"\x01\x64\x00\x1f\xff\xe1"), // an AVC record would go here
    });
    for i in 0..60 {
        publisher.send(synthetic(i));
    }
    // Joins mid-stream: frame 60 is the next; the last keyframe was 50.
    let mut viewer = engine.subscribe(&key)?;
    for i in 60..65 {
        publisher.send(synthetic(i));
    }
    drop(publisher); // ends the stream
    let mut first = None;
    let mut count = 0;
    loop {
        match viewer.recv() {
            Recv::Frame(f) => {
                if f.frame.is_config() {
                    println!("viewer: codec config ({} bytes)", f.frame.payload.len());
                    continue;
                }
                first.get_or_insert((f.frame.dts, f.frame.is_keyframe()));
                count += 1;
            }
            Recv::Empty => break,
            Recv::End => {
                println!("viewer: end of stream");
                break;
            }
        }
    }
    if let Some((dts, key)) = first {
        println!("viewer: started at dts {dts} ms (keyframe: {key}), {count} frames");
    }
    println!("viewer counters: {:?}", viewer.stats().snapshot());
    Ok(())
}

/// Part 2: an in-process observer of every stream published over RTMP.
async fn watch_streams(engine: Engine) {
    let mut watching = HashSet::new();
    loop {
        for key in engine.streams() {
            if !watching.insert(key.clone()) {
                continue;
            }
            let Ok(mut sub) = engine.subscribe(&key) else {
                watching.remove(&key);
                continue;
            };
            println!("watching {key}");
            tokio::spawn(async move {
                let (mut frames, mut bytes, mut keys) = (0u64, 0u64, 0u64);
                let mut last = std::time::Instant::now();
                loop {
                    let seen = sub.signal().epoch();
                    match sub.recv() {
                        Recv::Frame(f) => {
                            frames += 1;
                            bytes += f.frame.payload.len() as u64;
                            keys += u64::from(f.frame.is_keyframe() && !f.frame.is_config());
                        }
                        Recv::Empty => sub.signal().wait(seen).await,
                        Recv::End => {
                            println!("{}: ended", sub.key());
                            break;
                        }
                    }
                    if last.elapsed() >= Duration::from_secs(1) {
                        println!(
                            "{}: {frames} frames, {keys} keyframes, {} kbit/s",
                            sub.key(),
                            bytes * 8 / 1000
                        );
                        (frames, bytes, keys) = (0, 0, 0);
                        last = std::time::Instant::now();
                    }
                }
            });
        }
        watching.retain(|k| engine.streams().contains(k));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = args.iter().any(|a| a == "--once");
    let addr = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(String::as_str)
        .unwrap_or("127.0.0.1:1935");

    let engine = Engine::with_defaults();
    publish_and_subscribe(&engine)?;
    if once {
        return Ok(());
    }

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("RTMP server inside the app on {addr}: publish to rtmp://{addr}/live/<name>");
    tokio::spawn(watch_streams(engine.clone()));
    let factory = Arc::new(RtmpSessionFactory::allow_all(engine));
    arcly_tokio::serve_tcp(listener, factory, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
