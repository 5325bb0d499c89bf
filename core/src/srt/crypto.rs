//! SRT payload encryption (draft-sharabayko-srt-01 §6, as libsrt's
//! HaiCrypt implements it).
//!
//! - **KEK** (§6.1.4): PBKDF2-HMAC-SHA1 over the passphrase, 2048
//!   iterations, salted with the *last 8 bytes* of the 16-byte key-material
//!   salt, as long as the stream encrypting key.
//! - **Key wrap** (§6.1.5): the SEK(s) — even first, then odd — are wrapped
//!   together with the KEK by AES key wrap (RFC 3394, default IV
//!   `A6A6A6A6A6A6A6A6`), written here on top of the `aes` block cipher.
//! - **Payload** (§6.2.2, §6.3.2): AES-CTR with a 128-bit big-endian
//!   counter whose start is `0⁸⁰ ‖ seq(32) ‖ 0¹⁶` XORed with the first
//!   112 bits of the salt (libsrt `hcrypt_SetCtrIV`; the draft's `<< 2` is
//!   a typo no real peer implements). Only the payload is encrypted; the
//!   header's KK bits name the key (even or odd).
//!
//! Randomness for salts and keys is an input ([`KeyGenerator`], keyed by a
//! secret the adapter fills from the OS): the module reads no RNG.

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit, StreamCipher};
use aes::{Aes128, Aes192, Aes256};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::key_material::{KeyMaterial, KmCipher, KmState, SALT_LEN, WRAP_ICV_LEN};
use super::packet::KeyFlag;
use super::seq::SeqNo;

/// Shortest passphrase libsrt accepts (`SRTO_PASSPHRASE`, §6.1.4).
pub const MIN_PASSPHRASE_LEN: usize = 10;
/// Longest passphrase libsrt accepts.
pub const MAX_PASSPHRASE_LEN: usize = 79;
/// PBKDF2 iteration count (§6.1.4; libsrt `HAICRYPT_PBKDF2_ITER_CNT`).
pub const PBKDF2_ITERATIONS: u32 = 2048;
/// Bytes of the salt fed to PBKDF2: its last 8 (libsrt
/// `HAICRYPT_PBKDF2_SALT_LEN`).
pub const PBKDF2_SALT_LEN: usize = 8;
/// RFC 3394 default initial value.
const WRAP_IV: [u8; 8] = [0xA6; 8];

/// Why a crypto operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Passphrase shorter than 10 or longer than 79 bytes.
    #[error("passphrase length {0} is outside 10..=79")]
    BadPassphrase(usize),
    /// Key length other than 16, 24 or 32 bytes.
    #[error("key length {0} is not 16, 24 or 32")]
    BadKeyLength(usize),
    /// Key-wrap input not a whole number (≥ 2) of 64-bit blocks.
    #[error("key wrap input of {0} bytes is not n × 8 with n ≥ 2")]
    BadWrapLength(usize),
    /// The unwrapped integrity check value is wrong: a different
    /// passphrase (RFC 3394 §2.2.3).
    #[error("key unwrap integrity check failed (wrong passphrase)")]
    IntegrityCheck,
    /// A cipher other than AES-CTR was requested.
    #[error("unsupported cipher {0:?}")]
    UnsupportedCipher(KmCipher),
}

/// Stream encrypting key length in bytes (`SRTO_PBKEYLEN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyLength {
    /// AES-128 (libsrt's default).
    #[default]
    Aes128,
    /// AES-192.
    Aes192,
    /// AES-256.
    Aes256,
}

impl KeyLength {
    /// Length in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            KeyLength::Aes128 => 16,
            KeyLength::Aes192 => 24,
            KeyLength::Aes256 => 32,
        }
    }

    /// From a length in bytes (16, 24, 32).
    pub fn from_bytes(n: usize) -> Result<Self, CryptoError> {
        match n {
            16 => Ok(KeyLength::Aes128),
            24 => Ok(KeyLength::Aes192),
            32 => Ok(KeyLength::Aes256),
            other => Err(CryptoError::BadKeyLength(other)),
        }
    }

    /// The handshake's Encryption Field value.
    pub const fn cipher(self) -> super::handshake::Cipher {
        match self {
            KeyLength::Aes128 => super::handshake::Cipher::Aes128,
            KeyLength::Aes192 => super::handshake::Cipher::Aes192,
            KeyLength::Aes256 => super::handshake::Cipher::Aes256,
        }
    }
}

/// Checks the passphrase length rule (10..=79 bytes).
pub fn check_passphrase(p: &str) -> Result<(), CryptoError> {
    if (MIN_PASSPHRASE_LEN..=MAX_PASSPHRASE_LEN).contains(&p.len()) {
        Ok(())
    } else {
        Err(CryptoError::BadPassphrase(p.len()))
    }
}

/// An AES block cipher of one of the three key sizes.
#[derive(Clone)]
enum Aes {
    A128(Aes128),
    A192(Aes192),
    A256(Aes256),
}

impl std::fmt::Debug for Aes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key schedules.
        f.write_str("Aes(..)")
    }
}

impl Aes {
    fn new(key: &[u8]) -> Result<Self, CryptoError> {
        let bad = |_| CryptoError::BadKeyLength(key.len());
        Ok(match key.len() {
            16 => Aes::A128(Aes128::new_from_slice(key).map_err(bad)?),
            24 => Aes::A192(Aes192::new_from_slice(key).map_err(bad)?),
            32 => Aes::A256(Aes256::new_from_slice(key).map_err(bad)?),
            n => return Err(CryptoError::BadKeyLength(n)),
        })
    }

    fn encrypt_block(&self, b: &mut [u8; 16]) {
        let b = GenericArray::from_mut_slice(b);
        match self {
            Aes::A128(c) => c.encrypt_block(b),
            Aes::A192(c) => c.encrypt_block(b),
            Aes::A256(c) => c.encrypt_block(b),
        }
    }

    fn decrypt_block(&self, b: &mut [u8; 16]) {
        let b = GenericArray::from_mut_slice(b);
        match self {
            Aes::A128(c) => c.decrypt_block(b),
            Aes::A192(c) => c.decrypt_block(b),
            Aes::A256(c) => c.decrypt_block(b),
        }
    }

    /// XORs the CTR keystream starting at counter `iv` into `data`.
    fn apply_ctr(&self, iv: &[u8; 16], data: &mut [u8]) {
        let iv = GenericArray::from_slice(iv);
        match self {
            Aes::A128(c) => {
                ctr::Ctr128BE::<Aes128>::from_core(ctr::CtrCore::inner_iv_init(c.clone(), iv))
                    .apply_keystream(data)
            }
            Aes::A192(c) => {
                ctr::Ctr128BE::<Aes192>::from_core(ctr::CtrCore::inner_iv_init(c.clone(), iv))
                    .apply_keystream(data)
            }
            Aes::A256(c) => {
                ctr::Ctr128BE::<Aes256>::from_core(ctr::CtrCore::inner_iv_init(c.clone(), iv))
                    .apply_keystream(data)
            }
        }
    }
}

use ctr::cipher::InnerIvInit as _;

/// RFC 3394 §2.2.1 key wrap of `plain` (n × 8 bytes, n ≥ 2) under `kek`
/// (16, 24 or 32 bytes). The output is 8 bytes longer.
pub fn aes_wrap(kek: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if plain.len() % 8 != 0 || plain.len() < 16 {
        return Err(CryptoError::BadWrapLength(plain.len()));
    }
    let aes = Aes::new(kek)?;
    let n = plain.len() / 8;
    let mut a = WRAP_IV;
    let mut r: Vec<[u8; 8]> = plain
        .chunks_exact(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            w
        })
        .collect();
    for j in 0..6u64 {
        for (i, ri) in r.iter_mut().enumerate() {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&a);
            b[8..].copy_from_slice(ri);
            aes.encrypt_block(&mut b);
            let t = (n as u64) * j + (i as u64 + 1);
            a.copy_from_slice(&b[..8]);
            for (x, y) in a.iter_mut().zip(t.to_be_bytes()) {
                *x ^= y;
            }
            ri.copy_from_slice(&b[8..]);
        }
    }
    let mut out = Vec::with_capacity(plain.len() + 8);
    out.extend_from_slice(&a);
    for ri in &r {
        out.extend_from_slice(ri);
    }
    Ok(out)
}

/// RFC 3394 §2.2.2 key unwrap; fails with
/// [`CryptoError::IntegrityCheck`] when the KEK is wrong.
pub fn aes_unwrap(kek: &[u8], wrapped: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if wrapped.len() % 8 != 0 || wrapped.len() < 24 {
        return Err(CryptoError::BadWrapLength(wrapped.len()));
    }
    let aes = Aes::new(kek)?;
    let n = wrapped.len() / 8 - 1;
    let mut a = [0u8; 8];
    a.copy_from_slice(wrapped.get(..8).unwrap_or(&[0; 8]));
    let mut r: Vec<[u8; 8]> = wrapped
        .get(8..)
        .unwrap_or_default()
        .chunks_exact(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            w
        })
        .collect();
    for j in (0..6u64).rev() {
        for (i, ri) in r.iter_mut().enumerate().rev() {
            let t = (n as u64) * j + (i as u64 + 1);
            let mut b = [0u8; 16];
            for ((d, x), y) in b.iter_mut().zip(a).zip(t.to_be_bytes()) {
                *d = x ^ y;
            }
            b[8..].copy_from_slice(ri);
            aes.decrypt_block(&mut b);
            a.copy_from_slice(&b[..8]);
            ri.copy_from_slice(&b[8..]);
        }
    }
    if a != WRAP_IV {
        return Err(CryptoError::IntegrityCheck);
    }
    Ok(r.concat())
}

/// The key-encrypting key (§6.1.4): PBKDF2-HMAC-SHA1(passphrase, last 8
/// salt bytes, 2048 iterations), `key_len` bytes.
pub fn derive_kek(passphrase: &[u8], salt: &[u8; SALT_LEN], key_len: KeyLength) -> Vec<u8> {
    let mut kek = vec![0u8; key_len.bytes()];
    let s = salt.get(SALT_LEN - PBKDF2_SALT_LEN..).unwrap_or_default();
    pbkdf2_sha1(passphrase, s, PBKDF2_ITERATIONS, &mut kek);
    kek
}

/// PBKDF2 with HMAC-SHA1 (RFC 8018 §5.2), filling `out`.
pub fn pbkdf2_sha1(password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, out);
}

/// The counter block a data packet's keystream starts from (§6.2.2).
pub fn ctr_iv(salt: &[u8; SALT_LEN], seq: SeqNo) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[10..14].copy_from_slice(&seq.value().to_be_bytes());
    for (d, s) in iv.iter_mut().zip(salt.iter().take(14)) {
        *d ^= *s;
    }
    iv
}

/// Deterministic key and salt generator: HMAC-SHA256 in counter mode keyed
/// by a secret input (the adapter fills it from the OS RNG).
#[derive(Clone)]
pub struct KeyGenerator {
    secret: [u8; 32],
    counter: u64,
}

impl std::fmt::Debug for KeyGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyGenerator")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl KeyGenerator {
    /// A generator keyed by `secret`.
    pub fn new(secret: [u8; 32]) -> Self {
        KeyGenerator { secret, counter: 0 }
    }

    /// Fills `out` with fresh bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(32) {
            let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret) else {
                return;
            };
            mac.update(b"arcly-srt-key");
            mac.update(&self.counter.to_be_bytes());
            self.counter = self.counter.wrapping_add(1);
            let block = mac.finalize().into_bytes();
            for (d, s) in chunk.iter_mut().zip(block.iter()) {
                *d = *s;
            }
        }
    }
}

/// The keys of one encrypted connection: the salt and the even/odd stream
/// encrypting keys (§6.1.3). Both directions start with the handshake's
/// key (HSv5); a peer's key refresh changes only the receiving keys, so
/// what we send stays decryptable by the peer.
#[derive(Clone)]
pub struct CryptoContext {
    salt: [u8; SALT_LEN],
    key_len: KeyLength,
    kek: Vec<u8>,
    /// Receiving keys.
    even: Option<Aes>,
    odd: Option<Aes>,
    /// Sending key and the KK flag it goes with.
    tx: Option<Aes>,
    send_key: KeyFlag,
    /// The handshake's key material (sent as KMREQ by a caller, echoed as
    /// KMRSP by a listener).
    km: KeyMaterial,
}

impl std::fmt::Debug for CryptoContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptoContext")
            .field("key_len", &self.key_len)
            .field("send_key", &self.send_key)
            .finish_non_exhaustive()
    }
}

impl CryptoContext {
    /// The initiator's side (§6.2.1): draws a salt and an even SEK from
    /// `rng`, derives the KEK from `passphrase` and builds the KMREQ.
    pub fn generate(
        passphrase: &str,
        key_len: KeyLength,
        rng: &mut KeyGenerator,
    ) -> Result<Self, CryptoError> {
        check_passphrase(passphrase)?;
        let mut salt = [0u8; SALT_LEN];
        rng.fill(&mut salt);
        let mut sek = vec![0u8; key_len.bytes()];
        rng.fill(&mut sek);
        let kek = derive_kek(passphrase.as_bytes(), &salt, key_len);
        let wrapped = aes_wrap(&kek, &sek)?;
        let km = KeyMaterial {
            keys: KeyFlag::Even,
            keki: 0,
            cipher: KmCipher::AesCtr,
            auth: 0,
            se: 2,
            salt,
            key_len: key_len.bytes(),
            wrapped: Bytes::from(wrapped),
        };
        Ok(CryptoContext {
            salt,
            key_len,
            kek,
            even: Some(Aes::new(&sek)?),
            odd: None,
            tx: Some(Aes::new(&sek)?),
            send_key: KeyFlag::Even,
            km,
        })
    }

    /// The responder's side (§6.3.1): unwraps the keys of a KMREQ with the
    /// KEK derived from `passphrase`. The error is the [`KmState`] to
    /// report: `BadSecret` for a wrong passphrase, `BadCryptoMode` for a
    /// cipher other than AES-CTR.
    pub fn from_key_material(passphrase: &str, km: &KeyMaterial) -> Result<Self, KmState> {
        if km.cipher != KmCipher::AesCtr || km.auth != 0 {
            return Err(KmState::BadCryptoMode);
        }
        let key_len = KeyLength::from_bytes(km.key_len).map_err(|_| KmState::BadSecret)?;
        let kek = derive_kek(passphrase.as_bytes(), &km.salt, key_len);
        let mut ctx = CryptoContext {
            salt: km.salt,
            key_len,
            kek,
            even: None,
            odd: None,
            tx: None,
            send_key: KeyFlag::Even,
            km: km.clone(),
        };
        ctx.install(km)?;
        (ctx.tx, ctx.send_key) = match (&ctx.even, &ctx.odd) {
            (Some(e), _) => (Some(e.clone()), KeyFlag::Even),
            (None, o) => (o.clone(), KeyFlag::Odd),
        };
        Ok(ctx)
    }

    /// Installs the receiving keys of a (refresh) KMREQ unwrapped with this
    /// connection's KEK (§6.1.6 key refresh). Keys not carried are kept;
    /// the sending key does not change.
    pub fn install(&mut self, km: &KeyMaterial) -> Result<(), KmState> {
        if km.salt != self.salt || km.key_len != self.key_len.bytes() {
            // A new salt needs a new KEK; libsrt keeps the salt per
            // session, so treat a change as a failure.
            return Err(KmState::BadSecret);
        }
        let keys = aes_unwrap(&self.kek, &km.wrapped).map_err(|_| KmState::BadSecret)?;
        let n = self.key_len.bytes();
        let first = keys.get(..n).unwrap_or_default();
        match km.keys {
            KeyFlag::Even => self.even = Some(Aes::new(first).map_err(|_| KmState::BadSecret)?),
            KeyFlag::Odd => self.odd = Some(Aes::new(first).map_err(|_| KmState::BadSecret)?),
            KeyFlag::Both => {
                let second = keys.get(n..2 * n).unwrap_or_default();
                self.even = Some(Aes::new(first).map_err(|_| KmState::BadSecret)?);
                self.odd = Some(Aes::new(second).map_err(|_| KmState::BadSecret)?);
            }
            KeyFlag::None => return Err(KmState::BadSecret),
        }
        Ok(())
    }

    /// The key material to send (KMREQ) or echo (KMRSP).
    pub fn key_material(&self) -> &KeyMaterial {
        &self.km
    }

    /// Key length.
    pub fn key_len(&self) -> KeyLength {
        self.key_len
    }

    /// The key flag outgoing data packets carry.
    pub fn send_key(&self) -> KeyFlag {
        self.send_key
    }

    /// Encrypts an outgoing payload with the current sending key; returns
    /// the ciphertext and the KK flag for the header.
    pub fn encrypt(&self, seq: SeqNo, payload: &[u8]) -> (Bytes, KeyFlag) {
        let mut buf = payload.to_vec();
        if let Some(k) = &self.tx {
            k.apply_ctr(&ctr_iv(&self.salt, seq), &mut buf);
        }
        (Bytes::from(buf), self.send_key)
    }

    /// Decrypts an incoming payload encrypted with `key`; `None` if that
    /// key is not installed (or `key` names no single key).
    pub fn decrypt(&self, seq: SeqNo, key: KeyFlag, payload: &[u8]) -> Option<Bytes> {
        let k = match key {
            KeyFlag::Even => self.even.as_ref()?,
            KeyFlag::Odd => self.odd.as_ref()?,
            KeyFlag::None | KeyFlag::Both => return None,
        };
        let mut buf = payload.to_vec();
        k.apply_ctr(&ctr_iv(&self.salt, seq), &mut buf);
        Some(Bytes::from(buf))
    }
}

/// Length of a KM message carrying `n` keys of `key_len` (header, salt,
/// ICV, keys).
pub const fn km_len(key_len: usize, n: usize) -> usize {
    16 + SALT_LEN + WRAP_ICV_LEN + key_len * n
}
