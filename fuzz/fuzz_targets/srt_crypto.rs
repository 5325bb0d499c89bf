//! SRT key material and encrypted data paths (core/src/srt/key_material.rs,
//! core/src/srt/crypto.rs): a KMREQ body is parsed and, with a fixed
//! passphrase, unwrapped into payload keys; then packets are decrypted and
//! a second KMREQ (key refresh) is installed.
//!
//! Input: byte 0 = KMREQ length n, bytes 1..=n = KMREQ, byte n+1 = split
//! seed; the rest is cut into packets (see `arcly_fuzz::split`): 4 bytes of
//! sequence number, 1 byte key flag selector, then the payload. A packet
//! whose first byte is 0xFF is parsed as a refresh KMREQ instead.
//!
//! Invariants: no panic; a parsed KMREQ re-encodes to bytes that parse to
//! the same key material; unwrapping never panics whatever the lengths;
//! decryption keeps the payload length and `decrypt(encrypt(p)) == p`
//! for the keys in use.
#![no_main]

use arcly::srt::crypto::CryptoContext;
use arcly::srt::key_material::KeyMaterial;
use arcly::srt::packet::KeyFlag;
use arcly::srt::SeqNo;
use arcly_fuzz::split;
use libfuzzer_sys::fuzz_target;

const PASS: &str = "0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let [n, rest @ ..] = data else {
        return;
    };
    let n = usize::from(*n).min(rest.len());
    let (km_bytes, rest) = rest.split_at(n);
    let Ok(km) = KeyMaterial::decode(km_bytes) else {
        return;
    };
    let again = KeyMaterial::decode(&km.to_bytes()).expect("re-encoded KM parses");
    assert_eq!(again, km, "KM round trip");
    let Ok(mut ctx) = CryptoContext::from_key_material(PASS, &km) else {
        return;
    };
    let [seed, rest @ ..] = rest else {
        return;
    };
    let mut refreshes = 0;
    for pkt in split(rest, *seed) {
        if let [0xFF, km2 @ ..] = pkt {
            if refreshes < 2 {
                refreshes += 1;
                if let Ok(km2) = KeyMaterial::decode(km2) {
                    let _ = ctx.install(&km2);
                }
            }
            continue;
        }
        let [a, b, c, d, k, payload @ ..] = pkt else {
            continue;
        };
        let seq = SeqNo::new(u32::from_be_bytes([*a, *b, *c, *d]) & 0x7FFF_FFFF);
        let key = match k & 3 {
            0 => KeyFlag::None,
            1 => KeyFlag::Even,
            2 => KeyFlag::Odd,
            _ => KeyFlag::Both,
        };
        if let Some(plain) = ctx.decrypt(seq, key, payload) {
            assert_eq!(plain.len(), payload.len(), "CTR keeps the length");
        }
        let (ct, used) = ctx.encrypt(seq, payload);
        assert_eq!(ct.len(), payload.len());
        let back = ctx.decrypt(seq, used, &ct).expect("own key decrypts");
        assert_eq!(&back[..], payload, "decrypt(encrypt(p)) == p");
    }
});
