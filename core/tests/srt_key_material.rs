//! SRT key material (KMREQ/KMRSP, draft-sharabayko-srt-01 §3.2.2): parsing
//! conclusions recorded from ffmpeg (passphrase, pbkeylen=16) and
//! `srt-live-transmit` (pbkeylen=32), round trips and hostile input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use arcly::srt::handshake::{ext_flags, Cipher};
use arcly::srt::key_material::{KeyMaterial, KmCipher, KmError, KmResponse, KmState, SALT_LEN};
use arcly::srt::packet::{Control, KeyFlag, Packet};
use arcly::srt::Handshake;
use bytes::Bytes;
use proptest::prelude::*;

/// ffmpeg conclusion with `passphrase=0123456789abcdef&pbkeylen=16`.
const FFMPEG_KM_CONCLUSION: &str = "8000000000000000000006760000000000000005000200075006138e000005dc00002000ffffffff03cb0fa6123456780100007f0000000000000000000000000001000300010501000000bf00780000000500046c6275703a6873696576696c6d61632f0003000e12202901000000000200020000000404d18e3854a5b33e907b5563d98be989fcf0e5b9e4c271949248f3b1b4cdeab5e3672bcb59bd78dc51";
/// srt-live-transmit conclusion with a passphrase and `pbkeylen=32`.
const SLT_KM_CONCLUSION: &str = "800000000000000000001cd200000000000000050004000370283a54000005dc00002000ffffffff00cce2de123456780100007f0000000000000000000000000001000300010501000000bf00780000000300121220290100000000020002000000040834ad492a4fb19a6925bc646cad4cb8ec7d3efb0ef16a8cb2aeb8ed044674eb13b309160a0587bcaad2a28a9abf7980112d4d223279f80c03";

fn hex(s: &str) -> Bytes {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect::<Vec<u8>>()
        .into()
}

fn handshake(s: &str) -> Handshake {
    let b = hex(s);
    let p = Packet::decode(&b).unwrap();
    assert_eq!(p.to_bytes(), b, "re-encodes byte-exact");
    match p {
        Packet::Control(c) => match c.body {
            Control::Handshake(h) => h,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn ffmpeg_aes128_kmreq() {
    let h = handshake(FFMPEG_KM_CONCLUSION);
    assert_eq!(h.encryption, Cipher::Aes128);
    assert_eq!(
        h.extension_field,
        ext_flags::HSREQ | ext_flags::KMREQ | ext_flags::CONFIG
    );
    assert_eq!(h.stream_id(), Some("publish:live/cam"));
    let km = h.key_material().expect("KMREQ present").unwrap();
    assert_eq!(km.keys, KeyFlag::Even);
    assert_eq!(km.keki, 0);
    assert_eq!(km.cipher, KmCipher::AesCtr);
    assert_eq!((km.auth, km.se), (0, 2));
    assert_eq!(km.key_len, 16);
    assert_eq!(km.wrapped.len(), 8 + 16);
    assert_eq!(km.to_bytes(), *h.km_req().unwrap(), "re-encodes byte-exact");
}

#[test]
fn srt_live_transmit_aes256_kmreq() {
    let h = handshake(SLT_KM_CONCLUSION);
    assert_eq!(h.encryption, Cipher::Aes256);
    let km = h.key_material().unwrap().unwrap();
    assert_eq!(km.key_len, 32);
    assert_eq!(km.key_count(), 1);
    assert_eq!(km.wrapped.len(), 8 + 32);
    assert_eq!(km.to_bytes(), *h.km_req().unwrap());
}

#[test]
fn kmrsp_failure_word() {
    assert_eq!(
        KmResponse::decode(&[0, 0, 0, 4]).unwrap(),
        KmResponse::Failure(KmState::BadSecret)
    );
    assert_eq!(
        KmResponse::decode(&[0, 0, 0, 3]).unwrap(),
        KmResponse::Failure(KmState::NoSecret)
    );
    assert_eq!(
        KmResponse::Failure(KmState::BadSecret).to_bytes(),
        Bytes::from_static(&[0, 0, 0, 4])
    );
    let km = handshake(FFMPEG_KM_CONCLUSION)
        .key_material()
        .unwrap()
        .unwrap();
    let rsp = KmResponse::Material(km.clone());
    assert_eq!(KmResponse::decode(&rsp.to_bytes()).unwrap(), rsp);
}

#[test]
fn invalid_key_material() {
    let good = handshake(FFMPEG_KM_CONCLUSION).km_req().unwrap().to_vec();
    let with = |i: usize, v: u8| {
        let mut b = good.clone();
        b[i] = v;
        KeyMaterial::decode(&b)
    };
    assert!(
        matches!(with(0, 0x22), Err(KmError::BadHeader { .. })),
        "version 2"
    );
    assert!(matches!(with(1, 0), Err(KmError::BadHeader { .. })), "sign");
    assert_eq!(with(3, 0), Err(KmError::NoKey));
    assert_eq!(with(14, 2), Err(KmError::BadSaltLen(8)));
    assert_eq!(with(15, 5), Err(KmError::BadKeyLen(20)));
    assert!(
        matches!(with(3, 3), Err(KmError::Truncated { .. })),
        "both keys need a longer wrap"
    );
    assert!(matches!(
        KeyMaterial::decode(&good[..30]),
        Err(KmError::Truncated { .. })
    ));
    let mut long = good.clone();
    long.extend_from_slice(&[0; 4]);
    assert!(matches!(
        KeyMaterial::decode(&long),
        Err(KmError::BadWrapLen { .. })
    ));
}

proptest! {
    #[test]
    fn round_trip(kk in 1u32..4, keki in any::<u32>(), cipher in any::<u8>(), auth in any::<u8>(), se in any::<u8>(), salt in any::<[u8; SALT_LEN]>(), klen in prop_oneof![Just(16usize), Just(24), Just(32)], fill in any::<u8>()) {
        let keys = KeyFlag::from_bits(kk);
        let n = if keys == KeyFlag::Both { 2 } else { 1 };
        let km = KeyMaterial { keys, keki, cipher: KmCipher::from_code(cipher), auth, se, salt, key_len: klen, wrapped: vec![fill; 8 + klen * n].into() };
        prop_assert_eq!(KeyMaterial::decode(&km.to_bytes()).unwrap(), km);
    }

    #[test]
    fn arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..120)) {
        let _ = KeyMaterial::decode(&v);
        let _ = KmResponse::decode(&v);
    }
}
