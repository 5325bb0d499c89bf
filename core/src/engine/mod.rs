//! The engine: a registry of live streams, each a single-producer ring of
//! shared frames that any number of subscribers read by sequence number.
//!
//! Rules (see DESIGN.md):
//! - one publisher per [`StreamKey`]; a second publish is refused;
//! - publishing is O(1) in the number of subscribers and never blocks;
//! - a new subscriber gets the codec configs, then the cached GOP from its
//!   keyframe, then live frames;
//! - a subscriber that falls behind the ring skips to the next keyframe and
//!   counts what it dropped; nothing grows without bound.
//!
//! Layout: `bus` (the ring, [`Publisher`], [`Subscriber`], start points and
//! the GOP cache: the protocol is in its module docs), `signal` (the
//! [`Signal`] notifier and its no-lost-wake-up invariant), `stats` (lock-free
//! counters, bitrate and snapshots), `registry` ([`Engine`], apps, admission:
//! a mutex, never on the per-frame path; stream announcements through
//! [`Engine::streams_signal`]; per-source-IP publisher limit through
//! [`Engine::publish_from`]), `watchdog` ([`MediaWatchdog`]: a publisher
//! that sends no media is closed and its slot freed), `sync` (std or
//! `loom` primitives), `sessions` (every live publisher and subscriber with
//! an id, protocol, peer and kick flag: [`Engine::sessions`],
//! [`Engine::kick`]), `snapshot` (per-stream numbers for an operator:
//! [`Engine::streams_snapshot`]).

mod bus;
mod registry;
pub mod sessions;
mod signal;
mod signal_set;
pub mod snapshot;
mod stats;
mod sync;
mod watchdog;

pub use bus::{EgressSlot, FrameEntry, Publisher, Recv, SharedFrame, Subscriber, MAX_RING_FRAMES};
pub use registry::{
    AppConfig, Engine, PublishError, StreamKey, StreamKeyError, SubscribeError,
    DEFAULT_MAX_PUBLISHERS_PER_IP,
};
pub use sessions::{ProtocolTotals, SessionRole, SessionSnapshot, SessionTag};
pub use signal::{Signal, SignalWait};
pub use signal_set::SignalSet;
pub use snapshot::{CodecInfo, PublisherInfo, Refusals, StreamSnapshot};
pub use stats::{StreamStats, StreamStatsSnapshot, SubscriberStats, SubscriberStatsSnapshot};
pub use watchdog::{MediaStall, MediaWatchdog};
