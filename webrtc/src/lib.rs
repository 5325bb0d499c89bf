//! WebRTC for arcly on [`str0m`]: sans-IO WHEP (playback) sessions and a
//! router that serves every session from one UDP socket.
//!
//! This crate keeps `str0m`, its crypto (the pure-Rust `rust-crypto`
//! backend: no OpenSSL, nothing to install) and its dependencies out of
//! `arcly` (core). Like core, it does no I/O and reads no clock: time is an
//! argument ([`arcly::Instant`], mapped onto the `std::time::Instant` that
//! str0m wants through an epoch the driver chooses once), randomness is a
//! seed, datagrams go in through `handle_*` and come out through `poll_*`.
//!
//! - [`WhepSession`]: one viewer (draft-ietf-wish-whep §4.1: an SDP offer in,
//!   an SDP answer with all server host candidates out, no trickle), reading
//!   one engine stream and writing H.264 (Annex B, parameter sets before each
//!   IDR) and Opus to str0m.
//! - [`Router`]: which session a datagram on the shared socket belongs to:
//!   STUN by the local ICE ufrag of its USERNAME (RFC 8445 §7.2.2,
//!   RFC 8489 §14.3), everything else by remote address, both through hash
//!   maps, with a bounded number of sessions and addresses.
//!
//! - [`AacToOpus`], [`OpusFeeds`] (cargo feature `transcode`, on by
//!   default): AAC → Opus once per stream for WHEP viewers of streams
//!   published with AAC (browsers do not decode AAC).
//!
//! See `docs/webrtc.md` for what exists and what comes next.

pub mod pages;
mod router;
pub mod service;
pub mod signalling;
#[cfg(feature = "transcode")]
mod transcode;
mod whep;
mod whip;

pub use router::{stun_local_ufrag, Router, RouterError, SessionId, MAX_ADDRS_PER_SESSION};
pub use service::{WebRtcConfig, WebRtcService, WebRtcServiceFactory, WebRtcStats};
pub use whep::{
    Transmit, WebRtcError, WhepSession, WhepStats, MAX_OFFER_LEN, MAX_PENDING_TRANSMITS,
};
pub use whip::{WhipSession, WhipStats, PLI_INTERVAL};

#[cfg(feature = "transcode")]
pub use transcode::{
    AacToOpus, OpusFeed, OpusFeedLease, OpusFeeds, TranscodeError, TranscodeStats,
    MAX_QUEUED_FRAMES, OPUS_FRAME_TICKS, OPUS_RATE,
};
