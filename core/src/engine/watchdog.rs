//! The media watchdog of a publisher: a stream slot is held only by a peer
//! that actually sends media.
//!
//! A publish admitted by the engine takes one of its app's
//! [`max_streams`](super::AppConfig::max_streams) slots. A peer that is
//! admitted and then sends nothing (or only protocol keep-alives, which keep
//! a transport's idle timer from firing) would hold that slot for ever, and
//! a thousand of them hold every slot (issue 14, item 2). The rule, for
//! every protocol's engine glue (RTMP and SRT now; RTSP and WebRTC use the
//! same type when they publish):
//!
//! - no media frame within [`AppConfig::first_media_timeout`] of the
//!   admission (default 10 s): the publisher is closed and its slot freed;
//! - after media flowed, no media frame for
//!   [`AppConfig::media_timeout`] (default 15 s): closed likewise.
//!
//! Codec configuration frames (sequence headers) are not media: a peer
//! sending only those proves nothing. The watchdog reads no clock: the glue
//! passes `now` to [`MediaWatchdog::on_frame`] for every frame it hands to
//! the publisher, puts [`MediaWatchdog::deadline`] into its
//! `poll_timeout`, and calls [`MediaWatchdog::check`] from
//! `handle_timeout`; on `Err` it closes the connection with the reason
//! (dropping the [`Publisher`](super::Publisher) frees the slot at once).
//!
//! [`AppConfig::first_media_timeout`]: super::AppConfig::first_media_timeout
//! [`AppConfig::media_timeout`]: super::AppConfig::media_timeout

use std::time::Duration;

use super::registry::AppConfig;
use crate::frame::Frame;
use crate::time::Instant;

/// Why a [`MediaWatchdog`] gave up on its publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MediaStall {
    /// No media frame within this long of the admission.
    #[error("no media within {0:?} of the publish")]
    NoMedia(Duration),
    /// Media stopped: no frame for this long.
    #[error("no media for {0:?}")]
    Stopped(Duration),
}

/// One publisher's media deadlines (see the module docs).
///
/// Invariant: [`deadline`](Self::deadline) is the admission instant plus
/// the first-media timeout until a media frame was seen, then the instant
/// of the last media frame plus the media timeout; [`check`](Self::check)
/// fails exactly at and after it.
#[derive(Debug, Clone, Copy)]
pub struct MediaWatchdog {
    first_media: Duration,
    media: Duration,
    admitted: Instant,
    last_media: Option<Instant>,
}

impl MediaWatchdog {
    /// Watches a publish admitted at `now` with the timeouts of its app.
    pub fn new(now: Instant, config: &AppConfig) -> Self {
        Self::with_timeouts(now, config.first_media_timeout, config.media_timeout)
    }

    /// Watches a publish admitted at `now` with explicit timeouts.
    pub fn with_timeouts(now: Instant, first_media: Duration, media: Duration) -> Self {
        MediaWatchdog {
            first_media,
            media,
            admitted: now,
            last_media: None,
        }
    }

    /// A frame was handed to the publisher at `now` (configuration frames
    /// do not count as media).
    pub fn on_frame(&mut self, now: Instant, frame: &Frame) {
        if !frame.is_config() {
            self.last_media = Some(now);
        }
    }

    /// Whether a media frame was seen since the admission.
    pub fn has_media(&self) -> bool {
        self.last_media.is_some()
    }

    /// When the publisher is due to be closed unless media arrives.
    pub fn deadline(&self) -> Instant {
        match self.last_media {
            None => self.admitted + self.first_media,
            Some(t) => t + self.media,
        }
    }

    /// `Err` once the deadline passed: the glue closes the publisher.
    pub fn check(&self, now: Instant) -> Result<(), MediaStall> {
        if now < self.deadline() {
            return Ok(());
        }
        Err(match self.last_media {
            None => MediaStall::NoMedia(self.first_media),
            Some(_) => MediaStall::Stopped(self.media),
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::frame::{Codec, FrameFlags};
    use bytes::Bytes;

    fn frame(config: bool) -> Frame {
        let flags = if config {
            FrameFlags::CONFIG
        } else {
            FrameFlags::NONE
        };
        Frame {
            codec: Codec::H264,
            flags,
            pts: 0,
            dts: 0,
            timebase: 1000,
            payload: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn first_media_then_media_timeout() {
        let t0 = Instant::from_millis(1000);
        let s = Duration::from_secs(1);
        let mut w = MediaWatchdog::with_timeouts(t0, 10 * s, 15 * s);
        assert_eq!(w.deadline(), t0 + 10 * s);
        assert!(w.check(t0 + 9 * s).is_ok());
        // A config frame is no media.
        w.on_frame(t0 + 9 * s, &frame(true));
        assert_eq!(
            w.check(t0 + 10 * s),
            Err(MediaStall::NoMedia(10 * s)),
            "closed at the first-media deadline"
        );
        w.on_frame(t0 + 9 * s, &frame(false));
        assert!(w.has_media());
        assert_eq!(w.deadline(), t0 + 24 * s);
        assert!(w.check(t0 + 23 * s).is_ok());
        assert_eq!(w.check(t0 + 24 * s), Err(MediaStall::Stopped(15 * s)));
    }
}
