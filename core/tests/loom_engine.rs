//! `loom` model tests of the engine's lock-free parts.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" cargo test -p arcly --test loom_engine --release`
//!
//! What loom checks here (every interleaving up to a preemption bound of 3,
//! 2 for the larger models, with the C11 memory model for the atomics):
//! - the ring publication protocol: slot store → `head` (Release) → reader
//!   `live`/`head` (Acquire) → slot load and sequence check; a reader never
//!   sees a frame before it is written, never sees frames out of order,
//!   drains everything before `End`, and on a too-small ring resumes on a
//!   keyframe with every skipped frame counted;
//! - the notifier: a waiter (a thread blocked in
//!   `arcly_blocking::BlockingWait`, or an async task) that read epoch
//!   `e` and found no work is always woken by a later `notify` — a lost
//!   wake-up shows up as a loom deadlock;
//! - keyframe requests: subscribers on other threads add to one counter
//!   while the publisher takes them; every request is taken exactly once;
//! - the registry's stream announcements (`Engine::streams_signal`): a list
//!   changed under a mutex, then the signal notified; a watcher reading the
//!   epoch before the list never sleeps through a publish or an unpublish
//!   (modelled with a loom mutex, as the registry's is a std one).
//!
//! What it does not check: under `cfg(loom)` a ring slot is a loom mutex
//! around `Option<Arc<_>>` (a linearizable model of `arc_swap::ArcSwapOption`,
//! which has no loom support), so arc-swap's internals are out of scope; the
//! statistics counters are std atomics outside the model (they carry no
//! ordering); the registry (`Engine`, a std mutex, not on the frame path) is
//! not used.
#![cfg(loom)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use arcly::engine::{AppConfig, Publisher, Recv, Signal, StreamKey, Subscriber};
use arcly::{Codec, Frame, FrameFlags};
use arcly_blocking::BlockingWait;
use bytes::Bytes;
use loom::sync::atomic::{AtomicBool, Ordering};

/// Runs `f` under loom with at most `bound` preemptions per execution
/// (unless `LOOM_MAX_PREEMPTIONS` says otherwise): 3 for small models, 2 for
/// the larger ones, keeping the whole file around two minutes.
fn model(bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(bound);
    }
    b.check(f);
}

fn frame(i: u64, key: bool) -> Frame {
    Frame {
        codec: Codec::H264,
        flags: if key {
            FrameFlags::KEYFRAME
        } else {
            FrameFlags::NONE
        },
        pts: i as i64,
        dts: i as i64,
        timebase: 1000,
        payload: Bytes::copy_from_slice(&[i as u8]),
    }
}

fn publisher(ring: usize) -> Publisher {
    let cfg = AppConfig::default()
        .with_ring_frames(ring)
        .with_gop_cache_frames(1);
    Publisher::detached(StreamKey::new("live", "loom").unwrap(), cfg)
}

/// Reads until `End`, blocking on the signal when empty. Returns the
/// sequence numbers received.
fn read_all(s: &mut Subscriber) -> Vec<u64> {
    let sig = s.signal();
    let mut got = Vec::new();
    loop {
        let e = sig.epoch();
        match s.recv() {
            Recv::Frame(f) => {
                assert_eq!(u64::from(f.frame.payload[0]), f.seq, "slot holds its frame");
                got.push(f.seq);
            }
            Recv::Empty => {
                sig.wait_blocking(e, None);
            }
            Recv::End => return got,
        }
    }
}

#[test]
fn ring_delivers_every_frame_in_order_then_end() {
    model(3, || {
        let mut p = publisher(2);
        let mut s = p.subscribe().unwrap();
        let t = loom::thread::spawn(move || {
            p.send(frame(0, true));
            p.send(frame(1, false));
            // Dropping ends the stream.
        });
        let got = read_all(&mut s);
        t.join().unwrap();
        assert_eq!(got, vec![0, 1]);
        assert_eq!(s.stats().snapshot().dropped, 0);
    });
}

#[test]
fn ring_lagging_reader_resumes_on_keyframe() {
    model(2, || {
        // Ring of 2, four frames (keyframes at 0 and 3): a reader that is
        // preempted long enough sees a frame overwritten and must resume on
        // the keyframe at 3, counting every frame it skipped.
        let mut p = publisher(2);
        let mut s = p.subscribe().unwrap();
        let t = loom::thread::spawn(move || {
            p.send(frame(0, true));
            p.send(frame(1, false));
            p.send(frame(2, false));
            p.send(frame(3, true));
        });
        let got = read_all(&mut s);
        t.join().unwrap();
        let dropped = s.stats().snapshot().dropped;
        assert!(
            got == vec![0, 1, 2, 3] || got == vec![0, 3] || got == vec![3],
            "got {got:?}"
        );
        // Every frame is delivered or counted as dropped.
        assert_eq!(
            got.len() as u64 + dropped,
            4,
            "got {got:?} dropped {dropped}"
        );
    });
}

#[test]
fn two_blocking_readers_are_both_woken() {
    model(2, || {
        let mut p = publisher(4);
        let mut a = p.subscribe().unwrap();
        let mut b = p.subscribe().unwrap();
        let ta = loom::thread::spawn(move || read_all(&mut a));
        let tp = loom::thread::spawn(move || {
            p.send(frame(0, true));
        });
        let got_b = read_all(&mut b);
        tp.join().unwrap();
        assert_eq!(ta.join().unwrap(), vec![0]);
        assert_eq!(got_b, vec![0]);
    });
}

/// A signal, a flag, and a thread that sets the flag (Release) and then
/// notifies: a waiter that checks the flag after reading the epoch must
/// never sleep through the notification.
fn flag_then_notify() -> (Signal, Arc<AtomicBool>, loom::thread::JoinHandle<()>) {
    let sig = Signal::new();
    let ready = Arc::new(AtomicBool::new(false));
    let (sig2, ready2) = (sig.clone(), ready.clone());
    let t = loom::thread::spawn(move || {
        ready2.store(true, Ordering::Release);
        sig2.notify();
    });
    (sig, ready, t)
}

#[test]
fn notifier_blocking_no_lost_wakeup() {
    model(3, || {
        let (sig, ready, t) = flag_then_notify();
        loop {
            let e = sig.epoch();
            if ready.load(Ordering::Acquire) {
                break;
            }
            sig.wait_blocking(e, None);
        }
        t.join().unwrap();
    });
}

#[test]
fn notifier_async_no_lost_wakeup() {
    model(3, || {
        let (sig, ready, t) = flag_then_notify();
        loom::future::block_on(async {
            loop {
                let e = sig.epoch();
                if ready.load(Ordering::Acquire) {
                    break;
                }
                sig.wait(e).await;
            }
        });
        t.join().unwrap();
    });
}

/// One waiter, two successive events: the slow path of the first notify
/// clears the sleepers bit; if the woken waiter sleeps again it must set it
/// again, or the second notify takes the fast path and the waiter is lost.
fn two_notifies(async_waiter: bool) {
    model(3, move || {
        let sig = Signal::new();
        let count = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let (sig_n, count_n) = (sig.clone(), count.clone());
        let notifier = loom::thread::spawn(move || {
            for _ in 0..2 {
                count_n.fetch_add(1, Ordering::Release);
                sig_n.notify();
            }
        });
        if async_waiter {
            loom::future::block_on(async {
                loop {
                    let e = sig.epoch();
                    if count.load(Ordering::Acquire) == 2 {
                        break;
                    }
                    sig.wait(e).await;
                }
            });
        } else {
            loop {
                let e = sig.epoch();
                if count.load(Ordering::Acquire) == 2 {
                    break;
                }
                sig.wait_blocking(e, None);
            }
        }
        notifier.join().unwrap();
    });
}

#[test]
fn notifier_blocking_two_notifies() {
    two_notifies(false);
}

#[test]
fn notifier_async_two_notifies() {
    two_notifies(true);
}

/// The registry's stream announcements (`Engine::streams_signal`): the
/// stream list changes under a mutex and the signal is notified after the
/// unlock (publish, then unpublish); a watcher reads the epoch, then the
/// list under the mutex, and waits from that epoch while the change it
/// waits for is not there. Modelled with a loom mutex around a change
/// counter and the list, because the registry's own mutex is a std one (see
/// the module documentation): a lost announcement is a loom deadlock.
fn announcements(async_waiter: bool) {
    model(2, move || {
        let sig = Signal::new();
        let registry = Arc::new(loom::sync::Mutex::new((0u32, Vec::<u32>::new())));
        let (sig_p, registry_p) = (sig.clone(), registry.clone());
        let publisher = loom::thread::spawn(move || {
            {
                let mut r = registry_p.lock().unwrap();
                r.0 += 1;
                r.1.push(7);
            }
            sig_p.notify();
            {
                let mut r = registry_p.lock().unwrap();
                r.0 += 1;
                r.1.retain(|&k| k != 7);
            }
            sig_p.notify();
        });
        let read = || {
            let r = registry.lock().unwrap();
            (r.0, r.1.is_empty())
        };
        if async_waiter {
            loom::future::block_on(async {
                loop {
                    let e = sig.epoch();
                    if read() == (2, true) {
                        break;
                    }
                    sig.wait(e).await;
                }
            });
        } else {
            loop {
                let e = sig.epoch();
                if read() == (2, true) {
                    break;
                }
                sig.wait_blocking(e, None);
            }
        }
        publisher.join().unwrap();
    });
}

#[test]
fn announcements_blocking_watcher_sees_publish_and_unpublish() {
    announcements(false);
}

#[test]
fn announcements_async_watcher_sees_publish_and_unpublish() {
    announcements(true);
}

/// Two subscribers request keyframes while the publisher takes them: the
/// requests taken add up to the requests made, none counted twice.
#[test]
fn keyframe_requests_are_taken_exactly_once() {
    model(3, || {
        let mut p = publisher(4);
        let a = p.subscribe().unwrap();
        let b = p.subscribe().unwrap();
        let ta = loom::thread::spawn(move || {
            a.request_keyframe();
            a.request_keyframe();
        });
        let tb = loom::thread::spawn(move || b.request_keyframe());
        let mut taken = p.take_keyframe_requests();
        taken += p.take_keyframe_requests();
        ta.join().unwrap();
        tb.join().unwrap();
        taken += p.take_keyframe_requests();
        assert_eq!(taken, 3);
        assert_eq!(p.take_keyframe_requests(), 0);
    });
}
