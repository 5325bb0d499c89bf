//! SRT (Secure Reliable Transport), draft-sharabayko-srt-01.
//!
//! Sans-IO building blocks for SRT over one UDP socket:
//! - [`connection`]: one live-mode connection: ARQ, TSBPD, ACK/ACKACK/NAK,
//!   keep-alive, idle timeout, shutdown (§4.4–§4.10);
//! - [`endpoint`]: one UDP socket, stateless SYN cookies, routing by
//!   socket id, admission by the application (§4.3);
//! - [`service`]: the endpoint joined to the engine behind the
//!   [`DatagramService`](crate::datagram::DatagramService) shape (admission,
//!   MPEG-TS in and out, reject codes);
//! - [`egress`]: the MPEG-TS muxer shared by every viewer of a stream;
//! - [`packet`]: the wire codec for data and control packets (§3);
//! - [`handshake`]: the handshake CIF and its extensions (§3.2.1);
//! - [`key_material`]: KMREQ/KMRSP key material messages (§3.2.2);
//! - [`loss`]: the bounded loss set behind NAK reports (§4.6);
//! - [`recv_buffer`]: live-mode reordering, TSBPD delivery and too-late
//!   drop (§4.5, §4.6);
//! - [`rtt`]: RTT estimation from ACK/ACKACK, ACK and NAK periods (§4.10);
//! - [`send_buffer`]: sequence numbering, retransmission on NAK, release on
//!   ACK, sender-side drop (§4.6, §4.8.2);
//! - [`seq`]: wrap-aware sequence numbers, message numbers, timestamps;
//! - [`stream_id`]: stream id conventions (`publish:live/cam`,
//!   `#!::r=live/cam,m=publish`);
//! - [`caller`]: the caller side of the handshake (§4.3.1);
//! - [`crypto`]: PBKDF2 KEK, AES key wrap, AES-CTR payloads, even/odd
//!   keys (§6).
//!
//! Status: listener and caller (HSv5 caller–listener), live mode with ARQ,
//! TSBPD, too-late drop and DROPREQ, and encryption with 128/192/256-bit
//! keys are interoperable with libsrt 1.5 (ffmpeg, `srt-live-transmit`;
//! `core/tests/srt_libsrt.rs`). Not here: rendezvous mode, this side
//! rotating its own keys (a peer's rotation is followed), AES-GCM
//! (`SRTO_CRYPTOMODE`, refused with `SRT_REJ_CRYPTO`), packet filters
//! (FEC) and bonding groups. The glue to the engine is [`service`].

pub mod caller;
pub mod connection;
pub mod crypto;
pub mod egress;
pub mod endpoint;
pub mod handshake;
pub mod key_material;
pub mod loss;
pub mod packet;
pub mod recv_buffer;
pub mod rtt;
pub mod send_buffer;
pub mod seq;
pub mod service;
pub mod stream_id;

/// How an SRT peer broke the protocol (or what this service requires of it):
/// the SRT arm of [`ProtocolError`](crate::session::ProtocolError).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrtError {
    /// A publisher sent nothing but payloads without a valid MPEG-TS packet
    /// for this long (the service carries MPEG-TS, as libsrt's
    /// `srt-live-transmit` and ffmpeg do).
    #[error("payloads are not MPEG-TS for {0:?}")]
    NotMpegTs(std::time::Duration),
}

pub use handshake::{
    Cipher, Handshake, HandshakeType, HsExtension, RejectReason, SrtFlags, SrtHsExt,
};
pub use packet::{
    Ack, AckKind, Control, ControlPacket, DataPacket, KeyFlag, LossList, Packet, PacketError,
    PacketPosition, SocketId,
};
pub use seq::{MsgNo, SeqNo, Timestamp, TimestampUnwrapper};
