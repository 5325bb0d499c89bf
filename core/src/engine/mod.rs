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

mod bus;
mod registry;
mod signal;
mod stats;

pub use bus::{EgressSlot, Publisher, Recv, SharedFrame, Subscriber};
pub use registry::{AppConfig, Engine, PublishError, StreamKey, StreamKeyError, SubscribeError};
pub use signal::{Signal, SignalWait};
pub use stats::{StreamStats, SubscriberStats};
