//! Counters readable without locks.

use std::sync::atomic::{AtomicU64, Ordering};

/// Per-stream counters, updated by the publisher.
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Frames published.
    pub frames: AtomicU64,
    /// Payload bytes published.
    pub bytes: AtomicU64,
    /// Keyframes published.
    pub keyframes: AtomicU64,
    /// Subscribers currently attached.
    pub subscribers: AtomicU64,
}

impl StreamStats {
    pub(crate) fn add_frame(&self, len: usize, key: bool) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        if key {
            self.keyframes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Per-subscriber counters.
#[derive(Debug, Default)]
pub struct SubscriberStats {
    /// Frames delivered.
    pub frames: AtomicU64,
    /// Payload bytes delivered.
    pub bytes: AtomicU64,
    /// Frames skipped because the subscriber fell behind the ring.
    pub dropped: AtomicU64,
}
