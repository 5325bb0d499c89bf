//! SRT encryption primitives (draft-sharabayko-srt-01 §6): RFC 3394 key
//! wrap vectors, RFC 6070 PBKDF2-HMAC-SHA1 vectors, the CTR counter
//! layout, and unwrapping key material recorded from ffmpeg's libsrt with
//! its passphrase.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use arcly::srt::crypto::{
    aes_unwrap, aes_wrap, check_passphrase, ctr_iv, derive_kek, pbkdf2_sha1, CryptoContext,
    CryptoError, KeyGenerator, KeyLength,
};
use arcly::srt::key_material::{KeyMaterial, KmState};
use arcly::srt::packet::{Control, KeyFlag, Packet};
use arcly::srt::SeqNo;
use bytes::Bytes;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// ffmpeg conclusion with `passphrase=0123456789abcdef&pbkeylen=16`.
const FFMPEG_KM_CONCLUSION: &str = "8000000000000000000006760000000000000005000200075006138e000005dc00002000ffffffff03cb0fa6123456780100007f0000000000000000000000000001000300010501000000bf00780000000500046c6275703a6873696576696c6d61632f0003000e12202901000000000200020000000404d18e3854a5b33e907b5563d98be989fcf0e5b9e4c271949248f3b1b4cdeab5e3672bcb59bd78dc51";

fn recorded_km() -> KeyMaterial {
    let b = Bytes::from(hex(FFMPEG_KM_CONCLUSION));
    match Packet::decode(&b).unwrap() {
        Packet::Control(c) => match c.body {
            Control::Handshake(h) => h.key_material().unwrap().unwrap(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn rfc3394_vectors() {
    let kek128 = hex("000102030405060708090A0B0C0D0E0F");
    let kek192 = hex("000102030405060708090A0B0C0D0E0F1011121314151617");
    let kek256 = hex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
    let data128 = hex("00112233445566778899AABBCCDDEEFF");
    let data256 = hex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F");
    let cases = [
        // §4.1 128-bit key data with a 128-bit KEK.
        (
            &kek128,
            &data128,
            "1FA68B0A8112B447 AEF34BD8FB5A7B82 9D3E862371D2CFE5",
        ),
        // §4.2 with a 192-bit KEK.
        (
            &kek192,
            &data128,
            "96778B25AE6CA435 F92B5B97C050AED2 468AB8A17AD84E5D",
        ),
        // §4.3 with a 256-bit KEK.
        (
            &kek256,
            &data128,
            "64E8C3F9CE0F5BA2 63E9777905818A2A 93C8191E7D6E8AE7",
        ),
        // §4.6 256-bit key data with a 256-bit KEK.
        (
            &kek256,
            &data256,
            "28C9F404C4B810F4 CBCCB35CFB87F826 3F5786E2D80ED326 CBC7F0E71A99F43B FB988B9B7A02DD21",
        ),
    ];
    for (kek, data, want) in cases {
        let wrapped = aes_wrap(kek, data).unwrap();
        assert_eq!(wrapped, hex(want));
        assert_eq!(&aes_unwrap(kek, &wrapped).unwrap(), data);
        // One flipped bit anywhere fails the integrity check.
        for i in 0..wrapped.len() {
            let mut bad = wrapped.clone();
            bad[i] ^= 0x10;
            assert_eq!(aes_unwrap(kek, &bad), Err(CryptoError::IntegrityCheck));
        }
    }
    assert_eq!(
        aes_wrap(&kek128, &[0; 8]),
        Err(CryptoError::BadWrapLength(8))
    );
    assert_eq!(
        aes_unwrap(&kek128, &[0; 17]),
        Err(CryptoError::BadWrapLength(17))
    );
    assert_eq!(
        aes_wrap(&[0; 5], &data128),
        Err(CryptoError::BadKeyLength(5))
    );
}

#[test]
fn rfc6070_pbkdf2_sha1_vectors() {
    let cases: [(&[u8], &[u8], u32, &str); 4] = [
        (
            b"password",
            b"salt",
            1,
            "0c60c80f961f0e71f3a9b524af6012062fe037a6",
        ),
        (
            b"password",
            b"salt",
            2,
            "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957",
        ),
        (
            b"password",
            b"salt",
            4096,
            "4b007901b765489abead49d926f721d065a429c1",
        ),
        (
            b"passwordPASSWORDpassword",
            b"saltSALTsaltSALTsaltSALTsaltSALTsalt",
            4096,
            "3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038",
        ),
    ];
    for (p, s, c, want) in cases {
        let want = hex(want);
        let mut out = vec![0u8; want.len()];
        pbkdf2_sha1(p, s, c, &mut out);
        assert_eq!(out, want);
    }
}

#[test]
fn kek_uses_the_last_eight_salt_bytes() {
    let mut salt = [0u8; 16];
    for (i, b) in salt.iter_mut().enumerate() {
        *b = i as u8;
    }
    let kek = derive_kek(b"0123456789abcdef", &salt, KeyLength::Aes128);
    let mut want = vec![0u8; 16];
    pbkdf2_sha1(b"0123456789abcdef", &salt[8..], 2048, &mut want);
    assert_eq!(kek, want);
    // The first eight bytes do not enter the KEK.
    salt[0] ^= 0xff;
    assert_eq!(
        derive_kek(b"0123456789abcdef", &salt, KeyLength::Aes128),
        want
    );
}

#[test]
fn ctr_counter_layout() {
    let salt: [u8; 16] = core::array::from_fn(|i| 0x10 + i as u8);
    let iv = ctr_iv(&salt, SeqNo::new(0x0102_0304));
    let mut want = [0u8; 16];
    want[..14].copy_from_slice(&salt[..14]);
    want[10] ^= 1;
    want[11] ^= 2;
    want[12] ^= 3;
    want[13] ^= 4;
    assert_eq!(iv, want, "block counter bytes start at zero");
}

#[test]
fn recorded_libsrt_key_material_unwraps_with_its_passphrase() {
    let km = recorded_km();
    let ctx = CryptoContext::from_key_material("0123456789abcdef", &km).unwrap();
    assert_eq!(ctx.key_len(), KeyLength::Aes128);
    assert_eq!(ctx.send_key(), KeyFlag::Even);
    assert_eq!(
        CryptoContext::from_key_material("0123456789abcdeX", &km).unwrap_err(),
        KmState::BadSecret
    );
}

#[test]
fn passphrase_rules() {
    assert!(check_passphrase("123456789").is_err());
    assert!(check_passphrase("1234567890").is_ok());
    assert!(check_passphrase(&"x".repeat(79)).is_ok());
    assert!(check_passphrase(&"x".repeat(80)).is_err());
    let mut rng = KeyGenerator::new([1; 32]);
    assert_eq!(
        CryptoContext::generate("short", KeyLength::Aes128, &mut rng).unwrap_err(),
        CryptoError::BadPassphrase(5)
    );
}

#[test]
fn generated_keys_round_trip_for_every_length() {
    for len in [KeyLength::Aes128, KeyLength::Aes192, KeyLength::Aes256] {
        let mut rng = KeyGenerator::new([9; 32]);
        let tx = CryptoContext::generate("correct horse battery", len, &mut rng).unwrap();
        let km = KeyMaterial::decode(&tx.key_material().to_bytes()).unwrap();
        assert_eq!(km.key_len, len.bytes());
        let rx = CryptoContext::from_key_material("correct horse battery", &km).unwrap();
        let plain: Vec<u8> = (0..1316u32).map(|i| i as u8).collect();
        let seq = SeqNo::new(0x7FFF_FFF0);
        let (ct, kk) = tx.encrypt(seq, &plain);
        assert_eq!(kk, KeyFlag::Even);
        assert_ne!(&ct[..], &plain[..]);
        assert_eq!(&rx.decrypt(seq, kk, &ct).unwrap()[..], &plain[..]);
        // Wrong sequence number: garbage, not the plaintext.
        assert_ne!(&rx.decrypt(seq.next(), kk, &ct).unwrap()[..], &plain[..]);
        // No odd key installed.
        assert!(rx.decrypt(seq, KeyFlag::Odd, &ct).is_none());
        assert!(
            CryptoContext::from_key_material("wrong horse battery", &km).unwrap_err()
                == KmState::BadSecret
        );
    }
}

proptest! {
    #[test]
    fn wrap_round_trips(kek in prop::sample::select(vec![16usize, 24, 32]), n in 2usize..6, seed in any::<u8>()) {
        let kek: Vec<u8> = (0..kek).map(|i| seed.wrapping_mul(i as u8)).collect();
        let data: Vec<u8> = (0..n * 8).map(|i| seed ^ i as u8).collect();
        let w = aes_wrap(&kek, &data).unwrap();
        prop_assert_eq!(w.len(), data.len() + 8);
        prop_assert_eq!(aes_unwrap(&kek, &w).unwrap(), data);
    }
}

#[test]
fn peer_key_refresh_changes_receiving_keys_only() {
    let pass = "refresh passphrase";
    let mut rng = KeyGenerator::new([3; 32]);
    let caller = CryptoContext::generate(pass, KeyLength::Aes128, &mut rng).unwrap();
    let mut listener = CryptoContext::from_key_material(pass, caller.key_material()).unwrap();
    // The caller's peer announces even + odd keys (a refresh, §6.1.6),
    // wrapped with the same KEK.
    let km0 = caller.key_material().clone();
    let kek = derive_kek(pass.as_bytes(), &km0.salt, KeyLength::Aes128);
    let (new_even, new_odd) = ([0x11u8; 16], [0x22u8; 16]);
    let both = [new_even, new_odd].concat();
    let refresh = KeyMaterial {
        keys: KeyFlag::Both,
        wrapped: Bytes::from(aes_wrap(&kek, &both).unwrap()),
        ..km0.clone()
    };
    let seq = SeqNo::new(42);
    let plain = b"forty-two".to_vec();
    let before = listener.encrypt(seq, &plain);
    listener.install(&refresh).unwrap();
    // Sending is unchanged: the caller still decrypts what we send.
    assert_eq!(listener.encrypt(seq, &plain), before);
    assert_eq!(
        &caller.decrypt(seq, before.1, &before.0).unwrap()[..],
        &plain[..]
    );
    // Receiving uses the new keys: a packet under the new odd key decrypts.
    let odd_sender = CryptoContext::from_key_material(
        pass,
        &KeyMaterial {
            keys: KeyFlag::Odd,
            wrapped: Bytes::from(aes_wrap(&kek, &new_odd).unwrap()),
            ..km0.clone()
        },
    )
    .unwrap();
    let (ct, kk) = odd_sender.encrypt(seq, &plain);
    assert_eq!(kk, KeyFlag::Odd);
    assert_eq!(&listener.decrypt(seq, kk, &ct).unwrap()[..], &plain[..]);
    // A refresh with another salt, or wrapped under another KEK, is refused.
    let bad_salt = KeyMaterial {
        salt: [9; 16],
        ..refresh.clone()
    };
    assert_eq!(listener.install(&bad_salt), Err(KmState::BadSecret));
    let mut bad_wrap = refresh.wrapped.to_vec();
    bad_wrap[0] ^= 1;
    let bad = KeyMaterial {
        wrapped: Bytes::from(bad_wrap),
        ..refresh
    };
    assert_eq!(listener.install(&bad), Err(KmState::BadSecret));
}
