//! SRT (Secure Reliable Transport), draft-sharabayko-srt-01.
//!
//! Sans-IO building blocks for SRT over one UDP socket:
//! - [`connection`]: one live-mode connection: ARQ, TSBPD, ACK/ACKACK/NAK,
//!   keep-alive, idle timeout, shutdown (§4.4–§4.10);
//! - [`endpoint`]: one UDP socket, stateless SYN cookies, routing by
//!   socket id, admission by the application (§4.3);
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
//!   `#!::r=live/cam,m=publish`).
//!
//! Status: the listener side is complete enough for ffmpeg's libsrt caller
//! to publish through it (handshake, ACK/ACKACK, NAK repair). Not yet here:
//! the caller-side handshake, encryption (PBKDF2, AES key wrap, AES-CTR;
//! encrypting callers are refused with `SRT_REJ_UNSECURE`), DROPREQ
//! handling, rendezvous, and the glue to the engine (MPEG-TS in and out).

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

pub use handshake::{
    Cipher, Handshake, HandshakeType, HsExtension, RejectReason, SrtFlags, SrtHsExt,
};
pub use packet::{
    Ack, AckKind, Control, ControlPacket, DataPacket, KeyFlag, LossList, Packet, PacketError,
    PacketPosition, SocketId,
};
pub use seq::{MsgNo, SeqNo, Timestamp, TimestampUnwrapper};
