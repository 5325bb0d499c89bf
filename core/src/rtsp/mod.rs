//! RTSP 1.0 (RFC 2326): the message codec and the server session.
//!
//! [`message`] reads and writes requests, responses and interleaved binary
//! frames on one TCP stream. The server session (engine glue) lives in
//! `session`; [`client`] is the sans-IO client that plays a stream (pull);
//! [`auth`] reads and answers Basic and Digest authentication; UDP unicast
//! transport (one RTP and one RTCP socket for every session) is in [`udp`].
//! SDP is in [`crate::sdp`], RTP/RTCP in [`crate::rtp`].

pub mod auth;
pub mod client;
pub mod message;
pub mod session;
pub mod udp;

pub use session::{RtspError, RtspSession, RtspSessionFactory};
pub use udp::{RtspUdpConfig, RtspUdpHandle, RtspUdpService, RtspUdpServiceFactory};
