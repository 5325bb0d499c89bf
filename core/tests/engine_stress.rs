//! Multi-threaded stress: one publisher thread, several subscriber threads
//! blocked in `wait_blocking`, and one subscriber that stalls. Every live
//! subscriber receives every frame in order; the stalled one never slows the
//! publisher, and when it resumes it skips to a keyframe and counts drops.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use arcly::engine::{AppConfig, Publisher, Recv, StreamKey};
use arcly::{Codec, Frame, FrameFlags};
use arcly_blocking::BlockingWait;
use bytes::Bytes;

const FRAMES: u64 = 50_000;
const RING: usize = 4096;
const READERS: usize = 4;
const GOP: u64 = 50;

fn frame(i: u64) -> Frame {
    let flags = if i % GOP == 0 {
        FrameFlags::KEYFRAME
    } else {
        FrameFlags::NONE
    };
    Frame {
        codec: Codec::H264,
        flags,
        pts: i as i64,
        dts: i as i64,
        timebase: 1000,
        payload: Bytes::copy_from_slice(&i.to_be_bytes()),
    }
}

#[test]
fn publisher_and_blocking_readers_with_one_stalled() {
    let key = StreamKey::new("live", "stress").unwrap();
    // The test paces the publisher on the live readers (never on the
    // stalled one) so they stay within half the ring: they can never lag, so
    // any missing frame would be a lost wake-up or a publication bug.
    let cfg = AppConfig::default().with_ring_frames(RING);
    let progress: Vec<Arc<AtomicU64>> = (0..READERS).map(|_| Arc::default()).collect();
    let mut p = Publisher::detached(key, cfg);
    let start = Arc::new(Barrier::new(READERS + 1));
    let mut readers = Vec::new();
    for r in 0..READERS {
        let mut s = p.subscribe().unwrap();
        let start = start.clone();
        let progress = progress[r].clone();
        readers.push(std::thread::spawn(move || {
            let sig = s.signal();
            start.wait();
            let mut next = 0u64;
            loop {
                let e = sig.epoch();
                match s.recv() {
                    Recv::Frame(f) => {
                        assert_eq!(f.seq, next, "in order, nothing missing");
                        let v = u64::from_be_bytes(f.frame.payload[..].try_into().unwrap());
                        assert_eq!(v, next, "payload matches its sequence number");
                        next += 1;
                        progress.store(next, Ordering::Relaxed);
                    }
                    // No timeout: a lost wake-up hangs the test.
                    Recv::Empty => {
                        sig.wait_blocking(e, None);
                    }
                    Recv::End => break,
                }
            }
            (next, s.stats().snapshot().dropped)
        }));
    }
    // The stalled subscriber never reads while the stream runs.
    let mut stalled = p.subscribe().unwrap();
    start.wait();
    for i in 0..FRAMES {
        while progress
            .iter()
            .any(|r| i - r.load(Ordering::Relaxed) >= RING as u64 / 2)
        {
            std::thread::yield_now();
        }
        p.send(frame(i));
    }
    let published = p.published();
    drop(p);
    for r in readers {
        let (n, dropped) = r.join().unwrap();
        assert_eq!(n, FRAMES);
        assert_eq!(dropped, 0);
    }
    assert_eq!(published, FRAMES);

    // The stalled subscriber resumes from a keyframe inside the ring.
    let mut got = Vec::new();
    loop {
        match stalled.recv() {
            Recv::Frame(f) => got.push(f.seq),
            Recv::Empty => panic!("ended stream cannot be empty"),
            Recv::End => break,
        }
    }
    let first = *got.first().unwrap();
    assert_eq!(first % GOP, 0, "resumed on a keyframe");
    assert!(FRAMES - first <= RING as u64, "resumed inside the ring");
    assert!(first > 0, "the stalled subscriber lagged");
    assert_eq!(got, (first..FRAMES).collect::<Vec<_>>());
    assert_eq!(stalled.stats().snapshot().dropped, first);
}

#[test]
fn small_ring_readers_never_see_torn_or_reordered_frames() {
    // A small ring and a fast publisher: readers lag and skip, but whatever
    // they get is in increasing order, starts each run on a keyframe, and the
    // frame they get is the one with that sequence number.
    let key = StreamKey::new("live", "small").unwrap();
    let cfg = AppConfig::default()
        .with_ring_frames(64)
        .with_gop_cache_frames(32);
    let mut p = Publisher::detached(key, cfg);
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let mut s = p.subscribe().unwrap();
        readers.push(std::thread::spawn(move || {
            let sig = s.signal();
            let mut last: Option<u64> = None;
            let mut frames = 0u64;
            loop {
                let e = sig.epoch();
                match s.recv() {
                    Recv::Frame(f) => {
                        let v = u64::from_be_bytes(f.frame.payload[..].try_into().unwrap());
                        assert_eq!(v, f.seq);
                        if let Some(l) = last {
                            assert!(f.seq > l);
                            if f.seq != l + 1 {
                                assert_eq!(f.seq % GOP, 0, "resume on a keyframe");
                            }
                        }
                        last = Some(f.seq);
                        frames += 1;
                    }
                    Recv::Empty => {
                        sig.wait_blocking(e, Some(Duration::from_secs(30)));
                    }
                    Recv::End => break,
                }
            }
            let dropped = s.stats().snapshot().dropped;
            (frames, dropped, last)
        }));
    }
    for i in 0..FRAMES {
        p.send(frame(i));
    }
    drop(p);
    for r in readers {
        let (frames, dropped, last) = r.join().unwrap();
        assert_eq!(last, Some(FRAMES - 1), "every reader reaches the end");
        assert_eq!(frames + dropped, FRAMES, "every frame delivered or counted");
    }
}
