//! arcly-bench: the `arcly-load` RTMP load generator and the helpers behind
//! the side-by-side server benchmark (`bench/server_bench.sh`).
//!
//! Nothing here runs in CI: these are measurement tools, not tests. The unit
//! tests below only check the helpers (percentiles, `/proc` parsing, the
//! synthetic stream's rate).

pub mod procstat;
pub mod stats;
pub mod synth;
