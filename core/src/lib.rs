//! # arcly — a sans-IO live-media streaming kernel
//!
//! Every protocol in this crate is a pure byte-in / event-out state machine:
//! no sockets, no clocks, no threads, no runtime. Input arrives through
//! `handle_*` methods together with the current [`time::Instant`]; output is
//! drained through `poll_*` methods until they return `None`. Adapter crates
//! (`arcly-tokio`, `arcly-async-io`, `arcly-blocking`) drive the machines on a
//! runtime; the machines themselves never block and never read a clock.
//!
//! The [`engine`] sits in the middle: publishers push [`frame::Frame`]s into a
//! lock-free ring per stream, and any number of subscribers read them by
//! sequence number, starting on a keyframe at once.
//!
//! See `docs/architecture.md` for the contract and the data flow.

#![forbid(unsafe_code)]

pub mod admission;
mod big_endian;
pub mod codec;
pub mod container;
pub mod datagram;
pub mod engine;
pub mod frame;
#[cfg(feature = "http")]
pub mod http;
pub mod job;
pub mod log_limit;
pub mod peer_text;
pub mod record;
#[cfg(feature = "replay")]
pub mod replay;
#[cfg(feature = "rtmp")]
pub mod rtmp;
#[cfg(feature = "rtsp")]
pub mod rtp;
#[cfg(feature = "rtsp")]
pub mod rtsp;
#[cfg(feature = "rtsp")]
pub mod sdp;
pub mod session;
#[cfg(feature = "srt")]
pub mod srt;
pub mod time;
pub mod transmit_queue;

pub use engine::{AppConfig, Engine, StreamKey};
pub use frame::{Codec, Frame, FrameFlags, MediaKind};
pub use time::Instant;
