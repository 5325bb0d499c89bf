//! The pending output of one connection: the `Bytes` drained from
//! [`StreamSession::poll_transmit`](crate::session::StreamSession::poll_transmit),
//! written with vectored I/O and advanced across partial writes without
//! copying. Shared by every adapter so that each driver loop only does I/O.

use std::io::IoSlice;

use bytes::{Buf, Bytes};
use smallvec::SmallVec;

/// Most buffers handed to one `writev` call (Linux and the BSDs: `IOV_MAX` = 1024).
pub const IOV_MAX: usize = 1024;

/// Buffers waiting to be written, oldest first.
///
/// Invariant: `bufs[..head]` are fully written; `bufs[head]` (if any) may be
/// partially written (already advanced); the queue is empty once `head ==
/// bufs.len()`, and then both are reset so the `Vec` is reused.
#[derive(Debug, Default)]
pub struct TransmitQueue {
    bufs: Vec<Bytes>,
    head: usize,
}

impl TransmitQueue {
    /// Whether nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.head >= self.bufs.len()
    }

    /// Bytes waiting to be written.
    pub fn len_bytes(&self) -> usize {
        self.bufs
            .get(self.head..)
            .unwrap_or_default()
            .iter()
            .map(Bytes::len)
            .sum()
    }

    /// The `Vec` that `StreamSession::poll_transmit` appends to. Only call
    /// it while the queue is empty, so the order of bytes is kept.
    pub fn fill(&mut self) -> &mut Vec<Bytes> {
        if self.is_empty() {
            self.bufs.clear();
            self.head = 0;
        }
        &mut self.bufs
    }

    /// Up to [`IOV_MAX`] slices of the pending buffers, in order, for one
    /// vectored write. Empty buffers are skipped.
    pub fn io_slices(&self) -> SmallVec<[IoSlice<'_>; 64]> {
        self.bufs
            .get(self.head..)
            .unwrap_or_default()
            .iter()
            .filter(|b| !b.is_empty())
            .take(IOV_MAX)
            .map(|b| IoSlice::new(b))
            .collect()
    }

    /// Marks `n` bytes as written; returns whether the queue became empty.
    pub fn advance(&mut self, mut n: usize) -> bool {
        while let Some(b) = self.bufs.get_mut(self.head) {
            if b.len() > n {
                b.advance(n);
                break;
            }
            n -= b.len();
            // Release the payload reference as soon as it is written.
            *b = Bytes::new();
            self.head += 1;
        }
        if self.is_empty() {
            self.bufs.clear();
            self.head = 0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn advances_across_buffers_and_partial_writes() {
        let mut q = TransmitQueue::default();
        q.fill().extend([
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from_static(b"de"),
            Bytes::from_static(b"fghij"),
        ]);
        assert_eq!(q.io_slices().len(), 3);
        assert!(!q.advance(4));
        let s = q.io_slices();
        assert_eq!(&*s[0], b"e");
        assert_eq!(&*s[1], b"fghij");
        drop(s);
        assert!(!q.advance(3));
        assert_eq!(&*q.io_slices()[0], b"hij");
        assert!(q.advance(3));
        assert!(q.is_empty());
        assert!(q.io_slices().is_empty());
    }

    #[test]
    fn caps_slices_at_iov_max() {
        let mut q = TransmitQueue::default();
        q.fill().extend((0..3000).map(|_| Bytes::from_static(b"x")));
        assert_eq!(q.io_slices().len(), IOV_MAX);
        assert!(!q.advance(IOV_MAX));
        assert_eq!(q.io_slices().len(), IOV_MAX);
        assert!(!q.advance(IOV_MAX));
        assert_eq!(q.io_slices().len(), 3000 - 2 * IOV_MAX);
        assert!(q.advance(3000 - 2 * IOV_MAX));
    }
}
