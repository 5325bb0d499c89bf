//! Key Material message: the contents of KMREQ/KMRSP handshake extensions
//! (draft-sharabayko-srt-01 §3.2.2, Figure 11; §6.1.4 "Key Material").
//!
//! ```text
//! |S|  V  |  PT   |          Sign (0x2029)        |   Resv1   |KK |
//! |                            KEKI                               |
//! |    Cipher     |     Auth      |      SE       |     Resv2     |
//! |            Resv3              |    SLen/4     |    KLen/4     |
//! |                     Salt (SLen bytes)                         |
//! |          Wrap: ICV (8 bytes) + wrapped key(s) (KLen each)     |
//! ```
//!
//! This module only parses and encodes the structure; unwrapping the keys
//! (AES key wrap, RFC 3394) with the passphrase-derived KEK is the crypto
//! layer's job.

use bytes::{BufMut, Bytes, BytesMut};

use super::packet::KeyFlag;

/// The fixed `Sign` field: "HAI" in PnP-Vendor-ID form (§3.2.2).
pub const KM_SIGN: u16 = 0x2029;
/// Salt length: 128 bits (§3.2.2, "SLen/4").
pub const SALT_LEN: usize = 16;
/// Length of the AES key-wrap integrity check value (RFC 3394).
pub const WRAP_ICV_LEN: usize = 8;

/// Why a key material message is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KmError {
    /// Shorter than its header or its declared salt and keys.
    #[error("key material truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes required.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// S, V, PT or Sign do not have the values §3.2.2 requires.
    #[error(
        "key material header invalid (version {version}, type {packet_type}, sign {sign:#06x})"
    )]
    BadHeader {
        /// V field (must be 1).
        version: u8,
        /// PT field (must be 2).
        packet_type: u8,
        /// Sign field (must be 0x2029).
        sign: u16,
    },
    /// KK is 0: no key announced.
    #[error("key material announces no key")]
    NoKey,
    /// Salt length other than 16 bytes.
    #[error("salt length {0} is not 16")]
    BadSaltLen(usize),
    /// Key length other than 16, 24 or 32 bytes.
    #[error("key length {0} is not 16, 24 or 32")]
    BadKeyLen(usize),
    /// Wrapped key length does not match KK and KLen.
    #[error("wrapped key field of {have} bytes, expected {need}")]
    BadWrapLen {
        /// Expected length.
        need: usize,
        /// Actual length.
        have: usize,
    },
}

/// Cipher field (§3.2.2, "Cipher").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KmCipher {
    /// 0: none.
    None,
    /// 1: AES-ECB (reserved, unused).
    AesEcb,
    /// 2: AES-CTR (what libsrt uses).
    AesCtr,
    /// 3: AES-CBC (reserved, unused).
    AesCbc,
    /// 4: AES-GCM (libsrt 1.5.2+ `SRTO_CRYPTOMODE`).
    AesGcm,
    /// Any other value.
    Other(u8),
}

impl KmCipher {
    /// The wire value.
    pub const fn code(self) -> u8 {
        match self {
            KmCipher::None => 0,
            KmCipher::AesEcb => 1,
            KmCipher::AesCtr => 2,
            KmCipher::AesCbc => 3,
            KmCipher::AesGcm => 4,
            KmCipher::Other(c) => c,
        }
    }

    /// From the wire value.
    pub const fn from_code(c: u8) -> Self {
        match c {
            0 => KmCipher::None,
            1 => KmCipher::AesEcb,
            2 => KmCipher::AesCtr,
            3 => KmCipher::AesCbc,
            4 => KmCipher::AesGcm,
            other => KmCipher::Other(other),
        }
    }
}

/// A parsed key material message (§3.2.2).
///
/// Invariant (checked by [`KeyMaterial::decode`]): `key_len` is 16, 24 or
/// 32, `keys` is not [`KeyFlag::None`], and `wrapped` holds
/// `8 + key_len × (2 if both keys else 1)` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    /// KK: which keys the message carries (even, odd or both).
    pub keys: KeyFlag,
    /// KEKI: key-encrypting key index (0 = default passphrase KEK).
    pub keki: u32,
    /// Cipher.
    pub cipher: KmCipher,
    /// Auth field (0 = none; 1 = AES-GCM tag in libsrt 1.5.2+).
    pub auth: u8,
    /// Stream encapsulation (2 = MPEG-TS/SRT).
    pub se: u8,
    /// The salt, also the PBKDF2 salt for the KEK (§6.1.2).
    pub salt: [u8; SALT_LEN],
    /// Length of each stream encrypting key in bytes.
    pub key_len: usize,
    /// ICV followed by the wrapped key(s), even key first.
    pub wrapped: Bytes,
}

impl KeyMaterial {
    /// Number of keys carried (1, or 2 when KK = both).
    pub fn key_count(&self) -> usize {
        if self.keys == KeyFlag::Both {
            2
        } else {
            1
        }
    }

    /// Parses a KMREQ/KMRSP payload.
    pub fn decode(b: &[u8]) -> Result<Self, KmError> {
        let head: [u8; 16] =
            b.get(..16)
                .and_then(|h| h.try_into().ok())
                .ok_or(KmError::Truncated {
                    need: 16,
                    have: b.len(),
                })?;
        let [b0, s0, s1, b3, k0, k1, k2, k3, cipher, auth, se, _, _, _, slen, klen] = head;
        let version = (b0 >> 4) & 0x7;
        let packet_type = b0 & 0xF;
        let sign = u16::from_be_bytes([s0, s1]);
        if b0 & 0x80 != 0 || version != 1 || packet_type != 2 || sign != KM_SIGN {
            return Err(KmError::BadHeader {
                version,
                packet_type,
                sign,
            });
        }
        let keys = KeyFlag::from_bits(u32::from(b3));
        if keys == KeyFlag::None {
            return Err(KmError::NoKey);
        }
        let salt_len = usize::from(slen) * 4;
        if salt_len != SALT_LEN {
            return Err(KmError::BadSaltLen(salt_len));
        }
        let key_len = usize::from(klen) * 4;
        if !matches!(key_len, 16 | 24 | 32) {
            return Err(KmError::BadKeyLen(key_len));
        }
        let nkeys = if keys == KeyFlag::Both { 2 } else { 1 };
        let need_wrap = WRAP_ICV_LEN + key_len * nkeys;
        let total = 16 + SALT_LEN + need_wrap;
        if b.len() < total {
            return Err(KmError::Truncated {
                need: total,
                have: b.len(),
            });
        }
        let rest = b.get(16..).unwrap_or_default();
        let mut salt = [0u8; SALT_LEN];
        for (d, s) in salt.iter_mut().zip(rest) {
            *d = *s;
        }
        let wrapped = rest.get(SALT_LEN..).unwrap_or_default();
        if wrapped.len() != need_wrap {
            return Err(KmError::BadWrapLen {
                need: need_wrap,
                have: wrapped.len(),
            });
        }
        Ok(KeyMaterial {
            keys,
            keki: u32::from_be_bytes([k0, k1, k2, k3]),
            cipher: KmCipher::from_code(cipher),
            auth,
            se,
            salt,
            key_len,
            wrapped: Bytes::copy_from_slice(wrapped),
        })
    }

    /// Appends the encoded message.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(0x12); // S = 0, V = 1, PT = 2 (KMmsg)
        out.put_u16(KM_SIGN);
        out.put_u8(self.keys.bits() as u8);
        out.put_u32(self.keki);
        out.put_u8(self.cipher.code());
        out.put_u8(self.auth);
        out.put_u8(self.se);
        out.put_u8(0);
        out.put_u16(0);
        out.put_u8((SALT_LEN / 4) as u8);
        out.put_u8((self.key_len / 4) as u8);
        out.put_slice(&self.salt);
        out.put_slice(&self.wrapped);
    }

    /// The encoded message as `Bytes` (the body of a KMREQ/KMRSP extension).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(16 + SALT_LEN + self.wrapped.len());
        self.encode(&mut out);
        out.freeze()
    }
}

/// Key material state a KMRSP reports instead of key material when the
/// exchange failed (libsrt `SRT_KM_STATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KmState {
    /// 0 `SRT_KM_S_UNSECURED`.
    Unsecured,
    /// 1 `SRT_KM_S_SECURING`.
    Securing,
    /// 2 `SRT_KM_S_SECURED`.
    Secured,
    /// 3 `SRT_KM_S_NOSECRET`: this side has no passphrase.
    NoSecret,
    /// 4 `SRT_KM_S_BADSECRET`: passphrases differ.
    BadSecret,
    /// 5 `SRT_KM_S_BADCRYPTOMODE`: cipher modes differ.
    BadCryptoMode,
    /// Any other value.
    Other(u32),
}

impl KmState {
    /// The wire value.
    pub const fn code(self) -> u32 {
        match self {
            KmState::Unsecured => 0,
            KmState::Securing => 1,
            KmState::Secured => 2,
            KmState::NoSecret => 3,
            KmState::BadSecret => 4,
            KmState::BadCryptoMode => 5,
            KmState::Other(c) => c,
        }
    }

    /// From the wire value.
    pub const fn from_code(c: u32) -> Self {
        match c {
            0 => KmState::Unsecured,
            1 => KmState::Securing,
            2 => KmState::Secured,
            3 => KmState::NoSecret,
            4 => KmState::BadSecret,
            5 => KmState::BadCryptoMode,
            other => KmState::Other(other),
        }
    }
}

/// The contents of a KMRSP extension (§3.2.1.2): the key material echoed
/// back on success, or a single-word [`KmState`] on failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmResponse {
    /// Keys accepted.
    Material(KeyMaterial),
    /// Keys refused; the state says why.
    Failure(KmState),
}

impl KmResponse {
    /// Parses a KMRSP body.
    pub fn decode(b: &[u8]) -> Result<Self, KmError> {
        if let Ok(w) = <[u8; 4]>::try_from(b) {
            return Ok(KmResponse::Failure(KmState::from_code(u32::from_be_bytes(
                w,
            ))));
        }
        KeyMaterial::decode(b).map(KmResponse::Material)
    }

    /// The encoded KMRSP body.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            KmResponse::Material(km) => km.to_bytes(),
            KmResponse::Failure(s) => Bytes::copy_from_slice(&s.code().to_be_bytes()),
        }
    }
}
