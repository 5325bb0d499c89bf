//! The per-connection loop: [`arcly::session::StreamDriver`] (reads, timers,
//! one vectored write, media once the write completed, the close flush)
//! given a `futures-io` stream, the clock and an `async_io::Timer`. Reading
//! and writing share one `&mut` stream without splitting it.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use arcly::session::StreamIo;
use arcly::time::{Clock, Instant};
use async_io::Timer;
use futures_lite::io::{AsyncRead, AsyncWrite};

/// A `futures-io` stream, clock and async-io timer for
/// [`arcly::session::StreamDriver`].
pub(crate) struct AsyncIoStream<S> {
    stream: S,
    clock: Clock,
    sleep: Timer,
}

impl<S> AsyncIoStream<S> {
    pub(crate) fn new(stream: S, clock: Clock) -> Self {
        AsyncIoStream {
            stream,
            clock,
            sleep: Timer::never(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamIo for AsyncIoStream<S> {
    fn now(&self) -> Instant {
        self.clock.instant(std::time::Instant::now())
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }

    fn set_timer(&mut self, at: Instant) {
        self.sleep.set_at(self.clock.to_std(at));
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.sleep).poll(cx).map(|_| ())
    }

    fn clear_timer(&mut self) {
        // A fired timer stays fired; the next `set_timer` re-arms it.
    }
}
