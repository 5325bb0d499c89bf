//! The per-connection loop: [`arcly::session::StreamDriver`] (reads, timers,
//! one vectored write, media once the write completed, the close flush)
//! given a `futures-io` stream, the clock and an `async_io::Timer`. Reading
//! and writing share one `&mut` stream without splitting it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::timer::ClockTimer;
use arcly::session::StreamIo;
use arcly::time::{Clock, Instant};
use futures_lite::io::{AsyncRead, AsyncWrite};

/// A `futures-io` stream, clock and async-io timer for
/// [`arcly::session::StreamDriver`].
pub(crate) struct AsyncIoStream<S> {
    stream: S,
    timer: ClockTimer,
}

impl<S> AsyncIoStream<S> {
    pub(crate) fn new(stream: S, clock: Clock) -> Self {
        AsyncIoStream {
            stream,
            timer: ClockTimer::new(clock),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamIo for AsyncIoStream<S> {
    fn now(&self) -> Instant {
        self.timer.now()
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
        self.timer.set(at);
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.timer.poll(cx)
    }

    fn clear_timer(&mut self) {
        self.timer.clear();
    }
}
