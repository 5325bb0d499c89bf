//! Examples of using arcly outside the ready-made server (see `examples/`):
//!
//! - `embed`: publish and subscribe from code, and run the RTMP server
//!   inside an application on arcly-tokio;
//! - `mio_loop`: drive RTMP sessions from a hand-written `mio` event loop,
//!   with no async runtime ([`mio_loop`] holds the loop);
//! - `mio_srt`: the same loop driving an SRT datagram service next to the
//!   RTMP listener (publish over either, play over either);
//! - `http_loop`: HTTP (HLS and the route table) from a hand-written `mio`
//!   loop with the sans-IO HTTP/1.1 machine;
//! - `replay`: replay a pcap/pcapng capture through the RTMP machines.
//!
//! Run one with `cargo run -p arcly-examples --example <name>`.

pub mod mio_loop;
