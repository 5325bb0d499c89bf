//! RTMP handshake, sans-IO, both roles (RTMP spec §5.2).
//!
//! Two variants:
//! - **simple** (RTMP spec §5.2): C1/S1 are a time, four zero bytes and 1528
//!   random bytes; C2/S2 echo the peer's C1/S1;
//! - **digest** ("complex", Flash Player 9+): C1/S1 carry a non-zero version
//!   and an HMAC-SHA256 digest at an offset derived from the packet itself
//!   (schema 0: key block then digest block, offset field at byte 772;
//!   schema 1: digest block first, offset field at byte 8). The digest keys
//!   are the well-known "Genuine Adobe Flash Player 001" and "Genuine Adobe
//!   Flash Media Server 001" strings; C2/S2 end with an HMAC signature keyed
//!   by the peer's digest.
//!
//! The server answers a digest C1 with a digest S1/S2 (same schema) and
//! anything else with the simple handshake. The client sends the variant it
//! was created with and accepts either answer (a simple server's echo is
//! fine). Neither role fails on the content of C2/S2; only the version byte
//! and the framing are checked, as deployed servers do.
//!
//! Randomness is an input: each machine takes a seed for a [`SplitMix64`].

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Size of C1, C2, S1 and S2 (RTMP spec §5.2.3).
pub const HANDSHAKE_SIZE: usize = 1536;

/// The RTMP version byte in C0/S0 (RTMP spec §5.2.2).
pub const RTMP_VERSION: u8 = 3;

const DIGEST_LEN: usize = 32;

/// Random constant shared by both Genuine keys (the second half of each key).
const GENUINE_KEY_TAIL: [u8; 32] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];
const FP_KEY_TEXT: &[u8; 30] = b"Genuine Adobe Flash Player 001";
const FMS_KEY_TEXT: &[u8; 36] = b"Genuine Adobe Flash Media Server 001";

/// Version bytes the client puts in a digest C1 (Flash Player 9.0.124.2).
const CLIENT_VERSION: [u8; 4] = [9, 0, 124, 2];
/// Version bytes the server puts in a digest S1 (FMS 4.5.0.1).
const SERVER_VERSION: [u8; 4] = [4, 5, 0, 1];

/// A tiny deterministic PRNG (SplitMix64) for handshake random bytes. Not
/// cryptographic: the RTMP handshake needs no secrecy, only variety.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed (any value, including 0).
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            for (d, s) in chunk.iter_mut().zip(v) {
                *d = s;
            }
        }
    }
}

/// Which handshake variant is used (RTMP spec §5.2, and the FP9 digest scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeMode {
    /// Plain RTMP spec §5.2: random bytes, echoed.
    Simple,
    /// Flash Player 9+ HMAC-SHA256 digest handshake.
    Digest,
}

/// Where the digest sits in C1/S1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestSchema {
    /// Schema 0: key block (bytes 8..772) then digest block; offset field at
    /// byte 772, digest at `772 + 4 + sum(offset bytes) % 728`.
    KeyFirst,
    /// Schema 1: digest block first; offset field at byte 8, digest at
    /// `8 + 4 + sum(offset bytes) % 728`.
    DigestFirst,
}

impl DigestSchema {
    /// Position of the 32-byte digest inside a 1536-byte C1/S1.
    pub fn digest_offset(self, packet: &[u8]) -> usize {
        let base = match self {
            DigestSchema::KeyFirst => 772,
            DigestSchema::DigestFirst => 8,
        };
        let sum: usize = packet
            .get(base..base + 4)
            .map(|b| b.iter().map(|&x| usize::from(x)).sum())
            .unwrap_or(0);
        base + 4 + sum % 728
    }
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// C0/S0 carried a version other than 3 (e.g. garbage, an HTTP request,
    /// or RTMPE's 6).
    #[error("unsupported RTMP version byte {0:#04x} (expected 3)")]
    UnsupportedVersion(u8),
    /// The handshake already failed; the connection must be closed.
    #[error("handshake already failed")]
    Failed,
}

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    // HMAC accepts keys of any length, so this never takes the error branch.
    let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(key) else {
        return [0; DIGEST_LEN];
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn fp_key_full() -> [u8; 62] {
    let mut k = [0u8; 62];
    let (a, b) = k.split_at_mut(30);
    a.copy_from_slice(FP_KEY_TEXT);
    b.copy_from_slice(&GENUINE_KEY_TAIL);
    k
}

fn fms_key_full() -> [u8; 68] {
    let mut k = [0u8; 68];
    let (a, b) = k.split_at_mut(36);
    a.copy_from_slice(FMS_KEY_TEXT);
    b.copy_from_slice(&GENUINE_KEY_TAIL);
    k
}

/// Digest of `packet` (1536 bytes) with the 32 bytes at `offset` left out.
fn packet_digest(packet: &[u8], offset: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    let before = packet.get(..offset).unwrap_or_default();
    let after = packet.get(offset + DIGEST_LEN..).unwrap_or_default();
    hmac_sha256(key, &[before, after])
}

/// Finds the schema whose digest validates under `key`; returns the schema
/// and the digest bytes.
fn find_digest(packet: &[u8], key: &[u8]) -> Option<(DigestSchema, [u8; DIGEST_LEN])> {
    for schema in [DigestSchema::DigestFirst, DigestSchema::KeyFirst] {
        let off = schema.digest_offset(packet);
        let expected = packet_digest(packet, off, key);
        if packet.get(off..off + DIGEST_LEN) == Some(&expected[..]) {
            return Some((schema, expected));
        }
    }
    None
}

/// Builds a digest C1/S1: time 0, `version`, random fill, digest placed per
/// `schema` and keyed by `key`. Returns the packet and its digest.
fn make_digest_packet(
    rng: &mut SplitMix64,
    version: [u8; 4],
    schema: DigestSchema,
    key: &[u8],
) -> ([u8; HANDSHAKE_SIZE], [u8; DIGEST_LEN]) {
    let mut p = [0u8; HANDSHAKE_SIZE];
    if let Some(rest) = p.get_mut(8..) {
        rng.fill(rest);
    }
    if let Some(v) = p.get_mut(4..8) {
        v.copy_from_slice(&version);
    }
    let off = schema.digest_offset(&p);
    let digest = packet_digest(&p, off, key);
    if let Some(d) = p.get_mut(off..off + DIGEST_LEN) {
        d.copy_from_slice(&digest);
    }
    (p, digest)
}

/// Builds a digest C2/S2: random bytes ending with
/// `HMAC(HMAC(key, peer_digest), first 1504 bytes)`.
fn make_digest_response(
    rng: &mut SplitMix64,
    peer_digest: &[u8; DIGEST_LEN],
    key: &[u8],
) -> [u8; HANDSHAKE_SIZE] {
    let mut p = [0u8; HANDSHAKE_SIZE];
    rng.fill(&mut p);
    let sig_at = HANDSHAKE_SIZE - DIGEST_LEN;
    let sig = response_signature(&p, peer_digest, key);
    if let Some(d) = p.get_mut(sig_at..) {
        d.copy_from_slice(&sig);
    }
    p
}

fn response_signature(
    packet: &[u8],
    peer_digest: &[u8; DIGEST_LEN],
    key: &[u8],
) -> [u8; DIGEST_LEN] {
    let tmp = hmac_sha256(key, &[peer_digest]);
    let body = packet
        .get(..HANDSHAKE_SIZE - DIGEST_LEN)
        .unwrap_or_default();
    hmac_sha256(&tmp, &[body])
}

/// A simple C1/S1: time 0, four zero bytes, 1528 random bytes (RTMP spec §5.2.3).
fn make_simple_packet(rng: &mut SplitMix64) -> [u8; HANDSHAKE_SIZE] {
    let mut p = [0u8; HANDSHAKE_SIZE];
    if let Some(rest) = p.get_mut(8..) {
        rng.fill(rest);
    }
    p
}

/// Copies bytes from `data` into `buf` until it holds `want` bytes; returns
/// how many were taken.
fn fill_to(buf: &mut Vec<u8>, want: usize, data: &[u8]) -> usize {
    let take = want.saturating_sub(buf.len()).min(data.len());
    buf.extend_from_slice(data.get(..take).unwrap_or_default());
    take
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    WaitC0C1,
    WaitC2,
    Done,
    Failed,
}

/// Server side of the RTMP handshake (RTMP spec §5.2), sans-IO.
///
/// Feed received bytes to [`handle_input`](Self::handle_input); it returns
/// how many it consumed. Bytes after C2 are not consumed: once
/// [`is_done`](Self::is_done), hand the rest to the chunk reader. Drain
/// [`poll_transmit`](Self::poll_transmit) after each call: S0+S1+S2 are sent
/// together once C0+C1 arrived.
///
/// Holds at most 1537 buffered bytes.
#[derive(Debug)]
pub struct ServerHandshake {
    state: ServerState,
    rng: SplitMix64,
    buf: Vec<u8>,
    out: Option<Bytes>,
    mode: Option<HandshakeMode>,
    schema: Option<DigestSchema>,
}

impl ServerHandshake {
    /// A server handshake whose random bytes come from `seed`.
    pub fn new(seed: u64) -> Self {
        ServerHandshake {
            state: ServerState::WaitC0C1,
            rng: SplitMix64::new(seed),
            buf: Vec::with_capacity(1 + HANDSHAKE_SIZE),
            out: None,
            mode: None,
            schema: None,
        }
    }

    /// Consumes handshake bytes from `data`; returns how many. Returns 0
    /// once done (the rest belongs to the chunk stream).
    pub fn handle_input(&mut self, data: &[u8]) -> Result<usize, HandshakeError> {
        let mut used = 0;
        loop {
            let rest = data.get(used..).unwrap_or_default();
            match self.state {
                ServerState::Failed => return Err(HandshakeError::Failed),
                ServerState::Done => return Ok(used),
                ServerState::WaitC0C1 => {
                    used += fill_to(&mut self.buf, 1 + HANDSHAKE_SIZE, rest);
                    if let Some(&v) = self.buf.first() {
                        if v != RTMP_VERSION {
                            self.state = ServerState::Failed;
                            tracing::debug!(version = v, "rtmp handshake: bad C0");
                            return Err(HandshakeError::UnsupportedVersion(v));
                        }
                    }
                    if self.buf.len() < 1 + HANDSHAKE_SIZE {
                        return Ok(used);
                    }
                    self.answer_c1();
                    self.buf.clear();
                    self.state = ServerState::WaitC2;
                }
                ServerState::WaitC2 => {
                    used += fill_to(&mut self.buf, HANDSHAKE_SIZE, rest);
                    if self.buf.len() < HANDSHAKE_SIZE {
                        return Ok(used);
                    }
                    self.buf = Vec::new();
                    self.state = ServerState::Done;
                }
            }
        }
    }

    fn answer_c1(&mut self) {
        let c1 = self.buf.get(1..).unwrap_or_default();
        let client_digest = if c1.get(4..8) == Some(&[0, 0, 0, 0]) {
            None
        } else {
            find_digest(c1, FP_KEY_TEXT)
        };
        let mut out = Vec::with_capacity(1 + 2 * HANDSHAKE_SIZE);
        out.push(RTMP_VERSION);
        match client_digest {
            Some((schema, digest)) => {
                let (s1, _) =
                    make_digest_packet(&mut self.rng, SERVER_VERSION, schema, FMS_KEY_TEXT);
                let s2 = make_digest_response(&mut self.rng, &digest, &fms_key_full());
                out.extend_from_slice(&s1);
                out.extend_from_slice(&s2);
                self.mode = Some(HandshakeMode::Digest);
                self.schema = Some(schema);
            }
            None => {
                let s1 = make_simple_packet(&mut self.rng);
                out.extend_from_slice(&s1);
                out.extend_from_slice(c1);
                self.mode = Some(HandshakeMode::Simple);
            }
        }
        tracing::trace!(mode = ?self.mode, "rtmp handshake: answered C1");
        self.out = Some(Bytes::from(out));
    }

    /// Bytes to send (S0+S1+S2), once.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.take()
    }

    /// C2 arrived: the chunk stream starts with the next byte.
    pub fn is_done(&self) -> bool {
        self.state == ServerState::Done
    }

    /// The variant the client used, known once C1 arrived.
    pub fn mode(&self) -> Option<HandshakeMode> {
        self.mode
    }

    /// The digest schema of the client's C1, for the digest variant.
    pub fn schema(&self) -> Option<DigestSchema> {
        self.schema
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    WaitS0S1,
    WaitS2,
    Done,
    Failed,
}

/// Client side of the RTMP handshake (RTMP spec §5.2), sans-IO.
///
/// C0+C1 are ready in [`poll_transmit`](Self::poll_transmit) right after
/// [`new`](Self::new); C2 once S0+S1 arrived. [`handle_input`](Self::handle_input)
/// returns the bytes consumed; once [`is_done`](Self::is_done) (S2 read) the
/// rest belongs to the chunk stream.
///
/// Holds at most 1537 buffered bytes.
#[derive(Debug)]
pub struct ClientHandshake {
    state: ClientState,
    mode: HandshakeMode,
    rng: SplitMix64,
    buf: Vec<u8>,
    out: Option<Bytes>,
    c1_digest: Option<[u8; DIGEST_LEN]>,
    server_digest: bool,
    s2_verified: bool,
}

impl ClientHandshake {
    /// A client sending the `mode` variant (digest uses schema 1, as Flash
    /// Player and ffmpeg do), random bytes from `seed`.
    pub fn new(seed: u64, mode: HandshakeMode) -> Self {
        let mut rng = SplitMix64::new(seed);
        let mut out = Vec::with_capacity(1 + HANDSHAKE_SIZE);
        out.push(RTMP_VERSION);
        let c1_digest = match mode {
            HandshakeMode::Simple => {
                out.extend_from_slice(&make_simple_packet(&mut rng));
                None
            }
            HandshakeMode::Digest => {
                let (c1, d) = make_digest_packet(
                    &mut rng,
                    CLIENT_VERSION,
                    DigestSchema::DigestFirst,
                    FP_KEY_TEXT,
                );
                out.extend_from_slice(&c1);
                Some(d)
            }
        };
        ClientHandshake {
            state: ClientState::WaitS0S1,
            mode,
            rng,
            buf: Vec::with_capacity(1 + HANDSHAKE_SIZE),
            out: Some(Bytes::from(out)),
            c1_digest,
            server_digest: false,
            s2_verified: false,
        }
    }

    /// Consumes handshake bytes from `data`; returns how many. Returns 0
    /// once done (the rest belongs to the chunk stream).
    pub fn handle_input(&mut self, data: &[u8]) -> Result<usize, HandshakeError> {
        let mut used = 0;
        loop {
            let rest = data.get(used..).unwrap_or_default();
            match self.state {
                ClientState::Failed => return Err(HandshakeError::Failed),
                ClientState::Done => return Ok(used),
                ClientState::WaitS0S1 => {
                    used += fill_to(&mut self.buf, 1 + HANDSHAKE_SIZE, rest);
                    if let Some(&v) = self.buf.first() {
                        if v != RTMP_VERSION {
                            self.state = ClientState::Failed;
                            tracing::debug!(version = v, "rtmp handshake: bad S0");
                            return Err(HandshakeError::UnsupportedVersion(v));
                        }
                    }
                    if self.buf.len() < 1 + HANDSHAKE_SIZE {
                        return Ok(used);
                    }
                    self.answer_s1();
                    self.buf.clear();
                    self.state = ClientState::WaitS2;
                }
                ClientState::WaitS2 => {
                    used += fill_to(&mut self.buf, HANDSHAKE_SIZE, rest);
                    if self.buf.len() < HANDSHAKE_SIZE {
                        return Ok(used);
                    }
                    if let Some(d) = &self.c1_digest {
                        let sig = response_signature(&self.buf, d, &fms_key_full());
                        self.s2_verified =
                            self.buf.get(HANDSHAKE_SIZE - DIGEST_LEN..) == Some(&sig[..]);
                    }
                    self.buf = Vec::new();
                    self.state = ClientState::Done;
                }
            }
        }
    }

    fn answer_s1(&mut self) {
        let s1 = self.buf.get(1..).unwrap_or_default();
        let server = match self.mode {
            HandshakeMode::Digest if s1.get(4..8) != Some(&[0, 0, 0, 0]) => {
                find_digest(s1, FMS_KEY_TEXT)
            }
            _ => None,
        };
        let c2 = match server {
            Some((_, digest)) => {
                self.server_digest = true;
                Bytes::copy_from_slice(&make_digest_response(
                    &mut self.rng,
                    &digest,
                    &fp_key_full(),
                ))
            }
            None => Bytes::copy_from_slice(s1),
        };
        self.out = Some(c2);
    }

    /// Bytes to send: C0+C1 first, then C2.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.take()
    }

    /// S2 arrived: the chunk stream starts with the next byte. (C2 may still
    /// be waiting in [`poll_transmit`](Self::poll_transmit).)
    pub fn is_done(&self) -> bool {
        self.state == ClientState::Done
    }

    /// The variant this client sent.
    pub fn mode(&self) -> HandshakeMode {
        self.mode
    }

    /// Whether S1 carried a valid server digest (digest mode only).
    pub fn server_used_digest(&self) -> bool {
        self.server_digest
    }

    /// Whether S2 carried the signature of our C1 digest (digest mode only).
    pub fn s2_verified(&self) -> bool {
        self.s2_verified
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]
    use super::*;

    /// C0+C1 sent by `ffmpeg` 6.x/7.x (`-f flv rtmp://…`), captured on a
    /// loopback socket: a digest C1, schema 1, Flash Player version 9.0.124.2.
    const FFMPEG_C0C1_HEX: &str = "\
030000000009007c02f778551eceab8e1e362f07c5868a70b266d40220e5086118a22e3697d5fc2b6329c22ee7c7c9b0\
b5b345dfa8398fea3bc879208a1068425aa1174cb57258cfebe24da42ec4ff9da19c7b406f18c95bfdd04ee48b6f8332\
14a47b8bf68eb05254e25ae9a9a8b496c5496f6e9cd7c68cb6bcc84169e67f3e372ffe186da8513862c5afdeb5a1218a\
860baccdd869b253dbab8a0efb59a48c442099875e55b74fd07a1b69af303e099873cb77e2d9e2c4741eb1f506a7f0b2\
962af91f5051c890a320994f4c8b36a01fa9c0f15f4b7cf7b6c3817da60918611d3b02ff7cc94038937537d3382e416b\
d57577834df9caf748352150ce92d0dbb40e871fc364e18b7e3569e39876c1ae0cb79ff6d7ab32f9f011869c8da4191e\
f46d3c1bc6b72d83812f2243d1752a412632d66a2075f5d302f45cdf2b98b802b79805dc4837d84eded1cc42cba7eec3\
137bf86dd0b2d7f624d521a3ff655bcf0df4101341d230e94651628e45a7abf8183101ce981e5e86a6faec5c79aa7ec7\
181ea459ed966e0c932a6f9e4bf554ab7b1c905cde054ed40d2fb89bbfc65752e58cfde4f2a04dc3ad1e5ef4fc64d57b\
071c14146a451f6a043156d2880f5957d78dfd3ff2b880f624ac70f27094f37734eaf1924f66ac3d648ae232930544a4\
420b65eed4696f7f50fe05fc948516650bfb9b65f953d848e3456965d0d76b627a84e35e9ddabd8b43f0fadaee458cdf\
59ebd773922e0ae507d5e64092e90ec67ed8439e8f221c753a9f9216f1cb85b5107bc7cc7c4fb2c3eed1afc709b192f5\
0de69c1ffca5650efb523b5fab5997cac4b7ef5af2bf5973e6293bae1fc1da499be5515077de4ddb3f7fbcd741711c62\
b7d803b8d054cf578182714d1c445bd692ba1b839a09e7266fc85daa8fad433dabbd206cde1ea571770c6bfa7956c266\
ee8435eb01caa6f583c0d83c33eefcf3f97db917bdb299f8a89fb8860ab1cd644c1e82cce1323a9eb79d25f5dc570b70\
b40bb20061743353d0536ecdabd82f2277756228cb54fe6932c4c9bd130d2bfc700bf5d85da6946e96f82e0afd8e9c20\
cfeabf9a6a189bb17bbef539d1d9e73ee966fcb5d6bdbf98444de865be1605e34087b34cdf04e3aff55bd4137c522d2e\
3c7bf2634db326b22a474db7f8a0952ab3510de555396c18a378a8390b73bff7772fb2760fa5786a3b0459c45a1d1b0d\
ff4cbbb65da0ed34f32116c3c2cc2b95825111bcfbb246c1505aa00c970d06d76cc950ce368b220db20487cba02bb1fc\
54b36567b42913d6b885062cd7795601d31a4a8e6d56467fa5c52162676fd526122513c3e47f2e6d9d6a19c4f8795431\
a94ced039221d27ac68a7a770e9305252271459b71d05505c4977b70e96851208bacdcdf7e682b3848840880f1fec2a3\
2fb1406862bc83cad89adf729f3ba6ffd3fe808e8403e7c6a0f6dcda3211898f6f16505b078cc78b80db600ded2f200f\
25ff5dcb31d32cbe2056b8bdc31091631abbd2ac28d61fe32480ec5035bbf35f173393f0d59a21d2300b2db4b59eaa63\
ffe0f93d65dc028516905f22a9c7dff387c4eb78c6300e7ebbb2a6663cfbe5a9977caf5764ba3f0aba57db4e6051e0ae\
c6e05b1bdaa649a97875edbc40bcc4214bb7fef72730d4368acbd3e10ab4c7642a1c53f93ca26db9c766555be26fdff0\
e2a721425b95762b0b776fd3e3eb17313d53129c9f34003c99a5196a8c6aacb6d64b51dd98b27c5b59a70bd941a1ba03\
00fb744cfc499d997e6d93392d28a767d116dfbc2cb9eb40540d11eb304ad9322386fdc597d55d3d1c67bc54df35479a\
fb19ea2cd204dd331efb49c1e172f6bb89fbf58207dcae6c12f8a7598bef1e872c0c35f22b4c29df10f9bb1add3aeb88\
7ab5fb38c036b88346f761c42f295dfe0b437dfb4f30a71276ab7d409ce424963f9ebb4f1f47e52b18786f279b5a8722\
6f66981dd6d0ad11f49af31055ff69710fda3457c4b7852db2e3936d0778bf879f1734ad3a24ffb1ae9584760b9cb045\
2a53ba0962ffe2f605af52830bd211a5488894cc0b052255048711cd198510a9e943bf8b839198455fbd41073005d303\
990b88d9b63656d43cfec8ed83748f4b0f0fc5120216794b22a054e5bc58abd8c41096070884393453ce509694afbeab\
e0";

    fn unhex(s: &str) -> Vec<u8> {
        let s: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
        s.chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    /// Runs client and server against each other, delivering `step` bytes at
    /// a time; returns the pair once both are done. `tail` is appended after
    /// the client's C2 and must come back unconsumed from the server.
    fn run(
        mut client: ClientHandshake,
        mut server: ServerHandshake,
        step: usize,
        tail: &[u8],
    ) -> (ClientHandshake, ServerHandshake) {
        let mut to_server: Vec<u8> = Vec::new();
        let mut to_client: Vec<u8> = Vec::new();
        let mut tail_added = false;
        let mut leftover = Vec::new();
        for _ in 0..100_000 {
            while let Some(b) = client.poll_transmit() {
                to_server.extend_from_slice(&b);
            }
            if client.is_done() && !tail_added {
                // C2 is already queued (it was sent once S1 arrived); the
                // chunk stream bytes follow it.
                to_server.extend_from_slice(tail);
                tail_added = true;
            }
            while let Some(b) = server.poll_transmit() {
                to_client.extend_from_slice(&b);
            }
            if !to_server.is_empty() {
                let n = step.min(to_server.len());
                let chunk: Vec<u8> = to_server.drain(..n).collect();
                let used = server.handle_input(&chunk).unwrap();
                leftover.extend_from_slice(&chunk[used..]);
            }
            if !to_client.is_empty() {
                let n = step.min(to_client.len());
                let chunk: Vec<u8> = to_client.drain(..n).collect();
                let used = client.handle_input(&chunk).unwrap();
                assert_eq!(used, chunk.len(), "client got bytes beyond S2");
            }
            if client.is_done() && server.is_done() && to_server.is_empty() && tail_added {
                assert_eq!(leftover, tail);
                return (client, server);
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn simple_client_simple_server() {
        for step in [1, 7, 1536, 1537, 10_000] {
            let (c, s) = run(
                ClientHandshake::new(1, HandshakeMode::Simple),
                ServerHandshake::new(2),
                step,
                b"\x03chunk-bytes",
            );
            assert_eq!(s.mode(), Some(HandshakeMode::Simple));
            assert!(!c.server_used_digest());
            assert!(!c.s2_verified());
        }
    }

    #[test]
    fn digest_client_digest_server() {
        for step in [1, 100, 3073, 10_000] {
            let (c, s) = run(
                ClientHandshake::new(7, HandshakeMode::Digest),
                ServerHandshake::new(8),
                step,
                b"leftover",
            );
            assert_eq!(s.mode(), Some(HandshakeMode::Digest));
            assert_eq!(s.schema(), Some(DigestSchema::DigestFirst));
            assert!(c.server_used_digest(), "client must validate the S1 digest");
            assert!(c.s2_verified(), "client must validate the S2 signature");
        }
    }

    #[test]
    fn simple_server_echoes_c1_and_s2_echo_is_accepted_by_digest_client() {
        // A digest client talking to a simple server (one that echoes C1).
        let mut c = ClientHandshake::new(3, HandshakeMode::Digest);
        let c0c1 = c.poll_transmit().unwrap();
        assert_eq!(c0c1.len(), 1 + HANDSHAKE_SIZE);
        let mut s = vec![RTMP_VERSION];
        s.extend_from_slice(&[0u8; HANDSHAKE_SIZE]); // S1: version 0 → simple
        s.extend_from_slice(&c0c1[1..]); // S2 = echo of C1
        assert_eq!(c.handle_input(&s).unwrap(), s.len());
        assert!(c.is_done());
        assert!(!c.server_used_digest());
        let c2 = c.poll_transmit().unwrap();
        assert_eq!(&c2[..], &s[1..1 + HANDSHAKE_SIZE], "C2 echoes S1");
    }

    #[test]
    fn ffmpeg_c1_test_vector_is_validated() {
        let c0c1 = unhex(FFMPEG_C0C1_HEX);
        assert_eq!(c0c1.len(), 1 + HANDSHAKE_SIZE);
        let c1 = &c0c1[1..];
        assert_eq!(&c1[4..8], &[9, 0, 124, 2]);
        assert_eq!(
            find_digest(c1, FP_KEY_TEXT).map(|(s, _)| s),
            Some(DigestSchema::DigestFirst)
        );
        let mut server = ServerHandshake::new(42);
        assert_eq!(server.handle_input(&c0c1).unwrap(), c0c1.len());
        assert_eq!(server.mode(), Some(HandshakeMode::Digest));
        let out = server.poll_transmit().unwrap();
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(out[0], RTMP_VERSION);
        let s1 = &out[1..1 + HANDSHAKE_SIZE];
        let s2 = &out[1 + HANDSHAKE_SIZE..];
        // What ffmpeg checks as a player: S1 digest under the FMS key, and
        // the S2 signature keyed by its own C1 digest.
        let (schema, _) = find_digest(s1, FMS_KEY_TEXT).unwrap();
        assert_eq!(schema, DigestSchema::DigestFirst);
        let off = DigestSchema::DigestFirst.digest_offset(c1);
        let cd: [u8; 32] = c1[off..off + 32].try_into().unwrap();
        assert_eq!(
            &s2[HANDSHAKE_SIZE - 32..],
            &response_signature(s2, &cd, &fms_key_full())[..]
        );
        // A corrupted digest falls back to the simple handshake (S2 = C1 echo).
        let mut bad = c0c1.clone();
        bad[1 + off] ^= 0xFF;
        let mut server = ServerHandshake::new(42);
        server.handle_input(&bad).unwrap();
        assert_eq!(server.mode(), Some(HandshakeMode::Simple));
        let out = server.poll_transmit().unwrap();
        assert_eq!(&out[1 + HANDSHAKE_SIZE..], &bad[1..]);
    }

    #[test]
    fn schema0_c1_is_answered_with_schema0() {
        let mut rng = SplitMix64::new(5);
        let (c1, _) = make_digest_packet(
            &mut rng,
            CLIENT_VERSION,
            DigestSchema::KeyFirst,
            FP_KEY_TEXT,
        );
        let mut server = ServerHandshake::new(6);
        let mut input = vec![RTMP_VERSION];
        input.extend_from_slice(&c1);
        server.handle_input(&input).unwrap();
        assert_eq!(server.schema(), Some(DigestSchema::KeyFirst));
        let out = server.poll_transmit().unwrap();
        let (schema, _) = find_digest(&out[1..1 + HANDSHAKE_SIZE], FMS_KEY_TEXT).unwrap();
        assert_eq!(schema, DigestSchema::KeyFirst);
    }

    #[test]
    fn bad_version_and_garbage_are_errors() {
        let mut s = ServerHandshake::new(0);
        assert_eq!(
            s.handle_input(b"GET / HTTP/1.1\r\n\r\n"),
            Err(HandshakeError::UnsupportedVersion(b'G'))
        );
        assert_eq!(s.handle_input(&[3]), Err(HandshakeError::Failed));
        assert!(s.poll_transmit().is_none());
        assert!(!s.is_done());

        let mut s = ServerHandshake::new(0);
        assert_eq!(
            s.handle_input(&[6]),
            Err(HandshakeError::UnsupportedVersion(6))
        );

        let mut c = ClientHandshake::new(0, HandshakeMode::Simple);
        assert!(c.poll_transmit().is_some());
        assert_eq!(
            c.handle_input(&[0xFF; 10]),
            Err(HandshakeError::UnsupportedVersion(0xFF))
        );
        assert_eq!(c.handle_input(&[3]), Err(HandshakeError::Failed));
    }

    #[test]
    fn server_consumes_nothing_after_c2() {
        let mut s = ServerHandshake::new(0);
        let mut input = vec![RTMP_VERSION];
        input.extend_from_slice(&[0u8; HANDSHAKE_SIZE]); // C1
        input.extend_from_slice(&[1u8; HANDSHAKE_SIZE]); // C2
        input.extend_from_slice(&[0xAA; 5]); // chunk stream
        assert_eq!(s.handle_input(&input).unwrap(), 1 + 2 * HANDSHAKE_SIZE);
        assert!(s.is_done());
        assert_eq!(s.handle_input(&[0xAA; 5]).unwrap(), 0);
    }

    #[test]
    fn randomness_is_deterministic_per_seed() {
        let a = ClientHandshake::new(9, HandshakeMode::Digest)
            .poll_transmit()
            .unwrap();
        let b = ClientHandshake::new(9, HandshakeMode::Digest)
            .poll_transmit()
            .unwrap();
        let c = ClientHandshake::new(10, HandshakeMode::Digest)
            .poll_transmit()
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // splitmix64 reference values for seed 0.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }
}
