//! Examples of using arcly outside the ready-made server (see `examples/`):
//!
//! - `embed`: publish and subscribe from code, and run the RTMP server
//!   inside an application on arcly-tokio;
//! - `mio_loop`: drive RTMP sessions from a hand-written `mio` event loop,
//!   with no async runtime;
//! - `replay`: replay a pcap/pcapng capture through the RTMP machines.
//!
//! Run one with `cargo run -p arcly-examples --example <name>`.
