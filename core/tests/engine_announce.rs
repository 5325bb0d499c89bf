//! Stream announcements (`Engine::streams_signal`): a watcher that reads the
//! signal's epoch, then `Engine::streams()`, and waits from that epoch when
//! nothing changed is woken by every publish and every end of a stream — as
//! a blocked thread and as an async task, also when publishes race with its
//! wait (multi-thread stress: a lost wake-up leaves a publisher waiting for
//! an acknowledgement and fails the test at its deadline instead of hanging).
//! Frames do not announce anything.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arcly::engine::{Engine, Signal, StreamKey};
use arcly::{Codec, Frame, FrameFlags};
use arcly_blocking::BlockingWait;
use bytes::Bytes;

fn key(name: &str) -> StreamKey {
    StreamKey::new("live", name).unwrap()
}

fn frame(i: u64) -> Frame {
    Frame {
        codec: Codec::H264,
        flags: if i == 0 {
            FrameFlags::KEYFRAME
        } else {
            FrameFlags::NONE
        },
        pts: i as i64,
        dts: i as i64,
        timebase: 1000,
        payload: Bytes::from_static(&[0, 1, 2, 3]),
    }
}

/// Waits (blocked thread) until `pred(streams())` holds, following the
/// announcement protocol; `None` if `limit` passes first.
fn watch_until(
    engine: &Engine,
    limit: Duration,
    pred: impl Fn(&[StreamKey]) -> bool,
) -> Option<Vec<StreamKey>> {
    let signal = engine.streams_signal();
    let deadline = Instant::now() + limit;
    loop {
        let seen = signal.epoch();
        let list = engine.streams();
        if pred(&list) {
            return Some(list);
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        signal.wait_blocking(seen, Some(left));
    }
}

#[test]
fn blocked_watcher_is_woken_on_publish_and_unpublish() {
    let engine = Engine::with_defaults();
    let signal = engine.streams_signal();
    let seen = signal.epoch();
    assert!(
        !signal.wait_blocking(seen, Some(Duration::from_millis(20))),
        "no change, no wake-up"
    );

    let e = engine.clone();
    let watcher = std::thread::spawn(move || {
        let up = watch_until(&e, Duration::from_secs(10), |l| l.len() == 1);
        let down = watch_until(&e, Duration::from_secs(10), <[StreamKey]>::is_empty);
        (up, down)
    });
    std::thread::sleep(Duration::from_millis(30));
    let p = engine.publish(key("cam")).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    drop(p);
    let (up, down) = watcher.join().unwrap();
    assert_eq!(up, Some(vec![key("cam")]), "woken on publish");
    assert_eq!(down, Some(vec![]), "woken on unpublish");
    assert_eq!(signal.epoch(), seen + 2);
}

#[test]
fn async_watcher_is_woken_on_publish_and_unpublish() {
    let engine = Engine::with_defaults();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let e = engine.clone();
    let watcher = std::thread::spawn(move || {
        rt.block_on(async move {
            let signal = e.streams_signal();
            let mut seen_lists = Vec::new();
            loop {
                let seen = signal.epoch();
                let list = e.streams();
                let done = seen_lists.last() == Some(&vec![key("cam")]) && list.is_empty();
                if seen_lists.last() != Some(&list) {
                    seen_lists.push(list);
                }
                if done {
                    return seen_lists;
                }
                tokio::time::timeout(Duration::from_secs(10), signal.wait(seen))
                    .await
                    .expect("announcement within 10 s");
            }
        })
    });
    std::thread::sleep(Duration::from_millis(30));
    let mut p = engine.publish(key("cam")).unwrap();
    for i in 0..50 {
        p.send(frame(i));
    }
    std::thread::sleep(Duration::from_millis(30));
    drop(p);
    let lists = watcher.join().unwrap();
    assert_eq!(lists, vec![vec![], vec![key("cam")], vec![]]);
}

#[test]
fn frames_and_metadata_do_not_announce() {
    let engine = Engine::with_defaults();
    let signal = engine.streams_signal();
    let mut p = engine.publish(key("cam")).unwrap();
    let after_publish = signal.epoch();
    let _sub = engine.subscribe(&key("cam")).unwrap();
    for i in 0..1000 {
        p.send(frame(i));
    }
    p.set_metadata(Bytes::from_static(b"meta"));
    assert_eq!(signal.epoch(), after_publish, "the frame path is untouched");
    drop(p);
    assert_eq!(signal.epoch(), after_publish + 1);
}

const PAIRS: usize = 3;
const CYCLES: u64 = 500;
const LIMIT: Duration = Duration::from_secs(20);

/// What one watcher saw of its publisher: `up = c + 1` once it saw stream
/// `c` listed, `down = up` once it saw the list empty again.
#[derive(Default)]
struct Seen {
    up: AtomicU64,
    down: AtomicU64,
}

impl Seen {
    /// Records one `streams()` read.
    fn update(&self, list: &[StreamKey]) {
        match list.iter().find_map(|k| k.name().parse::<u64>().ok()) {
            Some(c) => {
                self.up.fetch_max(c + 1, Ordering::AcqRel);
            }
            None => {
                let up = self.up.load(Ordering::Acquire);
                self.down.fetch_max(up, Ordering::AcqRel);
            }
        }
    }
}

/// Spins (yielding) until `cond` holds; false at `deadline`.
fn spin_until(deadline: Instant, cond: impl Fn() -> bool) -> bool {
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// One engine, one publisher thread, two watchers (a blocked thread and a
/// task on `rt`). The publisher publishes and unpublishes stream `c` for
/// `c` in `0..CYCLES`, and after each change waits until both watchers saw
/// it. A watcher acknowledges inside its list read and at once goes back to
/// its wait, so the publisher's next change races with every step of the
/// watcher's read-epoch / read-list / wait sequence. Watchers never wake on
/// a timer and nothing else changes the engine, so one lost wake-up stalls
/// the pair and fails it at the deadline.
fn ping_pong(rt: &tokio::runtime::Runtime, deadline: Instant) -> Result<u64, String> {
    let engine = Engine::with_defaults();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = [Arc::new(Seen::default()), Arc::new(Seen::default())];
    let wakes = Arc::new(AtomicU64::new(0));
    let blocking = {
        let (engine, stop, seen, wakes) =
            (engine.clone(), stop.clone(), seen[0].clone(), wakes.clone());
        std::thread::spawn(move || {
            let signal = engine.streams_signal();
            while !stop.load(Ordering::Acquire) {
                let epoch = signal.epoch();
                seen.update(&engine.streams());
                signal.wait_blocking(epoch, None);
                wakes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let task = {
        let (engine, stop, seen) = (engine.clone(), stop.clone(), seen[1].clone());
        rt.spawn(async move {
            let signal: Signal = engine.streams_signal();
            while !stop.load(Ordering::Acquire) {
                let epoch = signal.epoch();
                seen.update(&engine.streams());
                signal.wait(epoch).await;
            }
        })
    };
    let mut result = Ok(());
    'cycles: for c in 0..CYCLES {
        let p = engine.publish(key(&c.to_string())).unwrap();
        for (w, seen) in seen.iter().enumerate() {
            if !spin_until(deadline, || seen.up.load(Ordering::Acquire) > c) {
                result = Err(format!("watcher {w} missed the publish of stream {c}"));
                break 'cycles;
            }
        }
        drop(p);
        for (w, seen) in seen.iter().enumerate() {
            if !spin_until(deadline, || seen.down.load(Ordering::Acquire) > c) {
                result = Err(format!("watcher {w} missed the end of stream {c}"));
                break 'cycles;
            }
        }
    }
    // One more change wakes both watchers (even a stalled one) to see `stop`.
    stop.store(true, Ordering::Release);
    drop(engine.publish(key("last")));
    blocking.join().unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("async watcher stops")
            .unwrap();
    });
    result.map(|()| wakes.load(Ordering::Relaxed))
}

/// Three publisher/watcher groups in parallel (each on its own engine, so
/// that no group's announcements can hide another's lost wake-up), 500
/// publish + unpublish cycles each, on 2 cores: every change is seen by
/// the blocked and by the async watcher, without any timer.
#[test]
fn watchers_never_miss_an_announcement_under_races() {
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap(),
    );
    let deadline = Instant::now() + LIMIT;
    let groups: Vec<_> = (0..PAIRS)
        .map(|_| {
            let rt = rt.clone();
            std::thread::spawn(move || ping_pong(&rt, deadline))
        })
        .collect();
    for g in groups {
        let wakes = g.join().unwrap().unwrap();
        assert!(wakes + 1 >= 2 * CYCLES, "{wakes} wake-ups");
        eprintln!(
            "{} changes seen; blocked watcher woke {wakes} times",
            2 * CYCLES
        );
    }
}
