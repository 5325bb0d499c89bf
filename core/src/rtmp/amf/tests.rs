//! Tests of the AMF0 / AMF3 decoders and the AMF0 encoder.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::amf3::{self, encode_u29};
use super::*;

fn s(x: &str) -> Amf0Value {
    Amf0Value::String(x.to_owned())
}

/// AMF0 short string body: u16 length + bytes.
fn utf8(out: &mut Vec<u8>, x: &str) {
    out.extend_from_slice(&(x.len() as u16).to_be_bytes());
    out.extend_from_slice(x.as_bytes());
}

#[test]
fn decodes_scalars_per_spec_bytes() {
    // number 1.5, true, "hi", null, undefined, reference 3, date, unsupported
    let mut b = vec![0x00];
    b.extend_from_slice(&1.5f64.to_be_bytes());
    b.extend_from_slice(&[0x01, 0x01, 0x01, 0x00]);
    b.push(0x02);
    utf8(&mut b, "hi");
    b.extend_from_slice(&[0x05, 0x06, 0x07, 0x00, 0x03]);
    b.push(0x0B);
    b.extend_from_slice(&1_000.0f64.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.push(0x0D);
    let v = decode_all(&b).unwrap();
    assert_eq!(
        v,
        vec![
            Amf0Value::Number(1.5),
            Amf0Value::Boolean(true),
            Amf0Value::Boolean(false),
            s("hi"),
            Amf0Value::Null,
            Amf0Value::Undefined,
            Amf0Value::Reference(3),
            Amf0Value::Date {
                millis: 1000.0,
                timezone: 0
            },
            Amf0Value::Unsupported,
        ]
    );
}

#[test]
fn object_and_typed_object_read_to_end_marker() {
    let mut b = vec![0x03];
    utf8(&mut b, "app");
    b.push(0x02);
    utf8(&mut b, "live");
    utf8(&mut b, "n");
    b.push(0x00);
    b.extend_from_slice(&3.0f64.to_be_bytes());
    b.extend_from_slice(&[0x00, 0x00, 0x09]);
    b.push(0x10);
    utf8(&mut b, "Cls");
    utf8(&mut b, "x");
    b.push(0x05);
    b.extend_from_slice(&[0x00, 0x00, 0x09]);
    let v = decode_all(&b).unwrap();
    assert_eq!(
        v[0],
        Amf0Value::object([("app", s("live")), ("n", Amf0Value::Number(3.0))])
    );
    assert_eq!(v[0].get("app").and_then(Amf0Value::as_str), Some("live"));
    assert_eq!(
        v[1],
        Amf0Value::TypedObject {
            class_name: "Cls".into(),
            properties: vec![("x".into(), Amf0Value::Null)]
        }
    );
}

#[test]
fn ecma_array_count_is_only_a_hint() {
    for declared in [0u32, 1, 2, 7, u32::MAX] {
        let mut b = vec![0x08];
        b.extend_from_slice(&declared.to_be_bytes());
        utf8(&mut b, "a");
        b.extend_from_slice(&[0x01, 0x01]);
        utf8(&mut b, "b");
        b.push(0x05);
        b.extend_from_slice(&[0x00, 0x00, 0x09]);
        b.push(0x05); // a following value is still found
        let v = decode_all(&b).unwrap();
        assert_eq!(
            v,
            vec![
                Amf0Value::EcmaArray(vec![
                    ("a".into(), Amf0Value::Boolean(true)),
                    ("b".into(), Amf0Value::Null)
                ]),
                Amf0Value::Null
            ],
            "declared {declared}"
        );
    }
}

#[test]
fn ecma_array_without_end_marker_accepted_only_when_count_met() {
    let mut b = vec![0x08, 0, 0, 0, 1];
    utf8(&mut b, "a");
    b.push(0x05);
    assert_eq!(
        decode_all(&b).unwrap(),
        vec![Amf0Value::EcmaArray(vec![("a".into(), Amf0Value::Null)])]
    );
    b[4] = 2; // claims two, has one, no end marker
    assert!(matches!(decode_all(&b), Err(AmfError::Truncated { .. })));
}

#[test]
fn object_end_marker_outside_object_is_an_error() {
    assert_eq!(
        decode_all(&[0x05, 0x09]),
        Err(AmfError::UnexpectedObjectEnd { offset: 1 })
    );
}

#[test]
fn unknown_and_reserved_markers() {
    assert_eq!(decode_all(&[0x12]), Err(AmfError::UnknownMarker(0x12)));
    assert_eq!(decode_all(&[0xFF]), Err(AmfError::UnknownMarker(0xFF)));
    assert_eq!(decode_all(&[0x04]), Err(AmfError::ReservedMarker(0x04)));
    assert_eq!(decode_all(&[0x0E]), Err(AmfError::ReservedMarker(0x0E)));
}

#[test]
fn invalid_utf8_is_reported_with_offset() {
    let b = [0x02, 0x00, 0x02, 0xC3, 0x28];
    assert_eq!(decode_all(&b), Err(AmfError::InvalidUtf8 { offset: 3 }));
}

#[test]
fn huge_declared_lengths_fail_fast_without_allocating() {
    let t = Instant::now();
    // long string claiming 4 GiB
    assert!(matches!(
        decode_all(&[0x0C, 0xFF, 0xFF, 0xFF, 0xFF, b'a']),
        Err(AmfError::Truncated { needed, .. }) if needed == 0xFFFF_FFFF - 1
    ));
    // xml document likewise
    assert!(matches!(
        decode_all(&[0x0F, 0xFF, 0xFF, 0xFF, 0xF0]),
        Err(AmfError::Truncated { .. })
    ));
    // strict array claiming 4 billion items
    assert!(matches!(
        decode_all(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05, 0x05]),
        Err(AmfError::Truncated { .. })
    ));
    // short string claiming 65535 bytes with 3 present
    assert!(matches!(
        decode_all(&[0x02, 0xFF, 0xFF, b'a', b'b', b'c']),
        Err(AmfError::Truncated { needed: 65532, .. })
    ));
    // AMF3 byte array and string claiming 2^28 bytes
    assert!(matches!(
        decode_all(&[0x11, 0x0C, 0xFF, 0xFF, 0xFF, 0xFF]),
        Err(AmfError::Truncated { .. })
    ));
    assert!(matches!(
        decode_all(&[0x11, 0x06, 0xFF, 0xFF, 0xFF, 0xFF]),
        Err(AmfError::Truncated { .. })
    ));
    // AMF3 array / vector / sealed traits claiming 2^27 items
    assert!(matches!(
        decode_all(&[0x11, 0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
        Err(AmfError::Truncated { .. })
    ));
    assert!(matches!(
        decode_all(&[0x11, 0x0F, 0xFF, 0xFF, 0xFF, 0xFF, 0x00]),
        Err(AmfError::Truncated { .. })
    ));
    assert!(matches!(
        decode_all(&[0x11, 0x0A, 0xFF, 0xFF, 0xFF, 0xF3, 0x01]),
        Err(AmfError::Truncated { .. })
    ));
    assert!(t.elapsed() < Duration::from_millis(100));
}

/// 100 000 nested containers of each kind.
fn bombs() -> Vec<(&'static str, Vec<u8>)> {
    const N: usize = 100_000;
    let mut object = Vec::new();
    let mut ecma = Vec::new();
    let mut strict = Vec::new();
    let mut typed = Vec::new();
    let mut amf3_array = vec![0x11];
    let mut amf3_object = vec![0x11];
    let mut switch = Vec::new();
    for _ in 0..N {
        object.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
        ecma.extend_from_slice(&[0x08, 0, 0, 0, 1, 0x00, 0x01, b'a']);
        strict.extend_from_slice(&[0x0A, 0, 0, 0, 1]);
        typed.extend_from_slice(&[0x10, 0x00, 0x01, b'C', 0x00, 0x01, b'a']);
        // array: dense count 1, empty assoc part
        amf3_array.extend_from_slice(&[0x09, 0x03, 0x01]);
        // dynamic anonymous object, first dynamic key "a" (inline string)
        amf3_object.extend_from_slice(&[0x0A, 0x0B, 0x01, 0x03, b'a']);
    }
    // 20 AMF0 objects, then a switch to AMF3 arrays: the depth carries over.
    for _ in 0..20 {
        switch.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
    }
    switch.push(0x11);
    for _ in 0..N {
        switch.extend_from_slice(&[0x09, 0x03, 0x01]);
    }
    vec![
        ("object", object),
        ("ecma", ecma),
        ("strict", strict),
        ("typed", typed),
        ("amf3 array", amf3_array),
        ("amf3 object", amf3_object),
        ("amf0/amf3 switch", switch),
    ]
}

#[test]
fn nesting_bombs_fail_fast_with_depth_exceeded() {
    for (name, bomb) in bombs() {
        let t = Instant::now();
        let r = decode_all(&bomb);
        assert_eq!(r, Err(AmfError::DepthExceeded { max: 32 }), "{name} bomb");
        assert!(t.elapsed() < Duration::from_millis(100), "{name} bomb slow");
    }
}

#[test]
fn depth_limit_is_exact() {
    let limits = DecodeLimits {
        max_depth: 3,
        ..DecodeLimits::DEFAULT
    };
    let nested = |n: usize| {
        let mut b = Vec::new();
        for _ in 0..n {
            b.extend_from_slice(&[0x0A, 0, 0, 0, 1]);
        }
        b.push(0x05);
        b
    };
    assert!(Amf0Decoder::with_limits(&nested(3), limits)
        .decode()
        .is_ok());
    assert_eq!(
        Amf0Decoder::with_limits(&nested(4), limits).decode(),
        Err(AmfError::DepthExceeded { max: 3 })
    );
}

#[test]
fn element_limit_holds_across_values() {
    let limits = DecodeLimits {
        max_elements: 10,
        ..DecodeLimits::DEFAULT
    };
    assert_eq!(
        Amf0Decoder::with_limits(&[0x05; 10], limits)
            .decode_all()
            .map(|v| v.len()),
        Ok(10)
    );
    assert_eq!(
        Amf0Decoder::with_limits(&[0x05; 11], limits).decode_all(),
        Err(AmfError::TooManyElements { max: 10 })
    );
    // a strict array of 20 000 nulls against the default 16 384
    let mut b = vec![0x0A];
    b.extend_from_slice(&20_000u32.to_be_bytes());
    b.extend_from_slice(&[0x05; 20_000]);
    assert_eq!(
        decode_all(&b),
        Err(AmfError::TooManyElements { max: 16_384 })
    );
}

#[test]
fn truncated_everywhere_is_an_error() {
    let v = Amf0Value::object([
        ("app", s("live")),
        ("n", Amf0Value::Number(1.0)),
        (
            "arr",
            Amf0Value::StrictArray(vec![Amf0Value::Boolean(true), s("x")]),
        ),
        (
            "e",
            Amf0Value::EcmaArray(vec![("k".into(), Amf0Value::Null)]),
        ),
        (
            "d",
            Amf0Value::Date {
                millis: 5.0,
                timezone: 0,
            },
        ),
        ("l", Amf0Value::LongString("long".into())),
        ("b", Amf0Value::ByteArray(Bytes::from_static(b"\x01\x02"))),
    ]);
    let full = v.to_bytes();
    assert_eq!(Amf0Decoder::new(&full).decode().unwrap(), v);
    for cut in 0..full.len() {
        let r = Amf0Decoder::new(&full[..cut]).decode();
        assert!(
            matches!(r, Err(AmfError::Truncated { .. })),
            "prefix {cut}: {r:?}"
        );
    }
}

#[test]
fn encoder_matches_spec_bytes() {
    let b = encode_values(&[
        s("connect"),
        Amf0Value::Number(1.0),
        Amf0Value::object([("a", Amf0Value::Boolean(false))]),
        Amf0Value::Null,
    ]);
    let mut want = vec![0x02, 0x00, 0x07];
    want.extend_from_slice(b"connect");
    want.push(0x00);
    want.extend_from_slice(&1.0f64.to_be_bytes());
    want.extend_from_slice(&[0x03, 0x00, 0x01, b'a', 0x01, 0x00, 0x00, 0x00, 0x09, 0x05]);
    assert_eq!(&b[..], &want[..]);
}

#[test]
fn long_strings_and_keys_are_encoded_within_u16() {
    let long = "é".repeat(40_000); // 80 000 bytes
    let b = s(&long).to_bytes();
    assert_eq!(b[0], 0x0C);
    assert_eq!(
        decode_all(&b).unwrap(),
        vec![Amf0Value::LongString(long.clone())]
    );
    // a key longer than 65 535 bytes is cut at a char boundary
    let v = Amf0Value::object([(long.as_str(), Amf0Value::Null)]);
    let got = decode_all(&v.to_bytes()).unwrap();
    let key = &got[0].properties().unwrap()[0].0;
    assert_eq!(key.len(), 65_534);
    assert!(long.starts_with(key.as_str()));
}

// ---------- AMF3 ----------

fn amf3(bytes: &[u8]) -> Result<Amf0Value, AmfError> {
    amf3::decode(bytes)
}

#[test]
fn amf3_scalars_and_u29() {
    assert_eq!(amf3(&[0x00]), Ok(Amf0Value::Undefined));
    assert_eq!(amf3(&[0x01]), Ok(Amf0Value::Null));
    assert_eq!(amf3(&[0x02]), Ok(Amf0Value::Boolean(false)));
    assert_eq!(amf3(&[0x03]), Ok(Amf0Value::Boolean(true)));
    let int = |b: &[u8]| {
        let mut v = vec![0x04];
        v.extend_from_slice(b);
        amf3(&v).unwrap()
    };
    assert_eq!(int(&[0x00]), Amf0Value::Number(0.0));
    assert_eq!(int(&[0x7F]), Amf0Value::Number(127.0));
    assert_eq!(int(&[0x81, 0x00]), Amf0Value::Number(128.0));
    assert_eq!(int(&[0xFF, 0x7F]), Amf0Value::Number(16_383.0));
    assert_eq!(int(&[0x81, 0x80, 0x00]), Amf0Value::Number(16_384.0));
    assert_eq!(
        int(&[0xBF, 0xFF, 0xFF, 0xFF]),
        Amf0Value::Number(268_435_455.0)
    );
    assert_eq!(int(&[0xFF, 0xFF, 0xFF, 0xFF]), Amf0Value::Number(-1.0));
    assert_eq!(
        int(&[0xC0, 0x80, 0x80, 0x00]),
        Amf0Value::Number(-268_435_456.0)
    );
    let mut d = vec![0x05];
    d.extend_from_slice(&2.5f64.to_be_bytes());
    assert_eq!(amf3(&d), Ok(Amf0Value::Number(2.5)));
}

#[test]
fn amf3_string_reference_table() {
    // array [ "ab", ref 0, "" , ref 0 ] — empty strings are not in the table
    let b = [
        0x09, 0x09, 0x01, // array, dense 4, no assoc
        0x06, 0x05, b'a', b'b', // "ab"
        0x06, 0x00, // ref 0
        0x06, 0x01, // ""
        0x06, 0x00, // ref 0
    ];
    assert_eq!(
        amf3(&b),
        Ok(Amf0Value::StrictArray(vec![
            s("ab"),
            s("ab"),
            s(""),
            s("ab")
        ]))
    );
    assert_eq!(
        amf3(&[0x06, 0x02]),
        Err(AmfError::BadReference {
            table: "string",
            index: 1
        })
    );
}

#[test]
fn amf3_objects_traits_and_references() {
    // [ {sealed a:1, dynamic x:true}, obj-with-traits-ref {a:2}, ref obj 1 ]
    let b = [
        0x09, 0x07, 0x01, // array dense 3
        0x0A, 0x1B, 0x01, // object, inline traits, dynamic, 1 sealed; class ""
        0x03, b'a', // sealed name "a"
        0x04, 0x01, // a = 1
        0x03, b'x', 0x03, // dynamic x = true
        0x01, // end of dynamic members
        0x0A, 0x01, // object, traits ref 0 (dynamic)
        0x04, 0x02, // a = 2
        0x01, // end of dynamic
        0x0A, 0x02, // object ref 1 (the first object)
    ];
    let o1 = Amf0Value::object([
        ("a", Amf0Value::Number(1.0)),
        ("x", Amf0Value::Boolean(true)),
    ]);
    let o2 = Amf0Value::object([("a", Amf0Value::Number(2.0))]);
    assert_eq!(
        amf3(&b),
        Ok(Amf0Value::StrictArray(vec![o1.clone(), o2, o1]))
    );
}

#[test]
fn amf3_replayed_references_leave_tables_untouched() {
    let b = [
        0x09, 0x0B, 0x01, // array, dense 5
        0x0A, 0x13, 0x01, 0x03, b'a', // object, inline traits, sealed "a" (string 0)
        0x06, 0x05, b'x', b'y', // a = "xy" (string 1)
        0x0A, 0x02, // object ref 1: replayed, adds nothing to the tables
        0x06, 0x05, b'z', b'z', // "zz" must be string 2
        0x06, 0x04, // string ref 2
        0x0A, 0x01, 0x04, 0x07, // object with traits ref 0, a = 7
    ];
    let xy = Amf0Value::object([("a", s("xy"))]);
    assert_eq!(
        amf3(&b),
        Ok(Amf0Value::StrictArray(vec![
            xy.clone(),
            xy,
            s("zz"),
            s("zz"),
            Amf0Value::object([("a", Amf0Value::Number(7.0))]),
        ]))
    );
    // only one traits entry exists after the replay
    let mut bad = b.to_vec();
    bad[21] = 0x05; // traits ref 1
    assert_eq!(
        amf3(&bad),
        Err(AmfError::BadReference {
            table: "traits",
            index: 1
        })
    );
}

#[test]
fn amf3_typed_object_assoc_array_date_bytes_xml_vectors() {
    let mut b = vec![0x09, 0x0F, 0x01]; // dense 7
                                        // typed object "C" with sealed "v"
    b.extend_from_slice(&[0x0A, 0x13, 0x03, b'C', 0x03, b'v', 0x05]);
    b.extend_from_slice(&1.0f64.to_be_bytes());
    // assoc array {k: null} + dense [false]
    b.extend_from_slice(&[0x09, 0x03, 0x03, b'k', 0x01, 0x01, 0x02]);
    // date
    b.extend_from_slice(&[0x08, 0x01]);
    b.extend_from_slice(&42.0f64.to_be_bytes());
    // byte array
    b.extend_from_slice(&[0x0C, 0x05, 0xAA, 0xBB]);
    // xml
    b.extend_from_slice(&[0x0B, 0x07, b'<', b'a', b'>']);
    // vector<int> [-1, 2] fixed
    b.extend_from_slice(&[0x0D, 0x05, 0x01]);
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&2i32.to_be_bytes());
    // vector<Object> of type "" with [null]
    b.extend_from_slice(&[0x10, 0x03, 0x00, 0x01, 0x01]);
    assert_eq!(
        amf3(&b),
        Ok(Amf0Value::StrictArray(vec![
            Amf0Value::TypedObject {
                class_name: "C".into(),
                properties: vec![("v".into(), Amf0Value::Number(1.0))]
            },
            Amf0Value::EcmaArray(vec![
                ("k".into(), Amf0Value::Null),
                ("0".into(), Amf0Value::Boolean(false))
            ]),
            Amf0Value::Date {
                millis: 42.0,
                timezone: 0
            },
            Amf0Value::ByteArray(Bytes::from_static(&[0xAA, 0xBB])),
            Amf0Value::XmlDocument("<a>".into()),
            Amf0Value::StrictArray(vec![Amf0Value::Number(-1.0), Amf0Value::Number(2.0)]),
            Amf0Value::StrictArray(vec![Amf0Value::Null]),
        ]))
    );
}

#[test]
fn amf3_unsupported_and_cyclic() {
    assert_eq!(
        amf3(&[0x0A, 0x07, 0x01]),
        Err(AmfError::Unsupported("AMF3 externalizable object"))
    );
    assert_eq!(
        amf3(&[0x11, 0x01, 0x00]),
        Err(AmfError::Unsupported("AMF3 dictionary"))
    );
    assert_eq!(amf3(&[0x12]), Err(AmfError::UnknownAmf3Marker(0x12)));
    // array whose only item references the array itself
    assert_eq!(
        amf3(&[0x09, 0x03, 0x01, 0x09, 0x00]),
        Err(AmfError::CyclicReference(0))
    );
    assert_eq!(
        amf3(&[0x09, 0x04]),
        Err(AmfError::BadReference {
            table: "object",
            index: 2
        })
    );
    assert_eq!(
        amf3(&[0x0A, 0x04]),
        Err(AmfError::BadReference {
            table: "object",
            index: 2
        })
    );
    assert_eq!(
        amf3(&[0x0A, 0x05]),
        Err(AmfError::BadReference {
            table: "traits",
            index: 1
        })
    );
}

#[test]
fn amf3_reference_amplification_is_bounded() {
    // outer dense array of 40 items: a0 = [1]; a(k) = [ref a(k-1), ref a(k-1)]
    // → a(k) holds 2^k elements. Object table: outer = 0, a(k) = k + 1.
    let mut b = vec![0x09];
    let mut tmp = BytesMut::new();
    encode_u29(&mut tmp, (40 << 1) | 1);
    b.extend_from_slice(&tmp);
    b.push(0x01);
    b.extend_from_slice(&[0x09, 0x03, 0x01, 0x04, 0x01]);
    for k in 1..40u32 {
        let mut r = BytesMut::new();
        encode_u29(&mut r, k << 1); // reference to a(k-1), table index k
        b.extend_from_slice(&[0x09, 0x05, 0x01]);
        for _ in 0..2 {
            b.push(0x09);
            b.extend_from_slice(&r);
        }
    }
    let t = Instant::now();
    assert_eq!(amf3(&b), Err(AmfError::TooManyElements { max: 16_384 }));
    assert!(t.elapsed() < Duration::from_millis(200));

    // the same with strings: one 60 000-byte string referenced 1 000 times
    let mut b = vec![0x09];
    let mut tmp = BytesMut::new();
    encode_u29(&mut tmp, (1001 << 1) | 1);
    b.extend_from_slice(&tmp);
    b.push(0x01);
    b.push(0x06);
    let mut tmp = BytesMut::new();
    encode_u29(&mut tmp, (60_000 << 1) | 1);
    b.extend_from_slice(&tmp);
    b.extend_from_slice(&[b'x'; 60_000]);
    for _ in 0..1000 {
        b.extend_from_slice(&[0x06, 0x00]);
    }
    assert_eq!(amf3(&b), Err(AmfError::TooManyBytes { max: 8 << 20 }));
}

#[test]
fn amf3_switch_inside_amf0_uses_fresh_context() {
    // two switched strings: the second references index 0 of its own (empty)
    // table, so it must fail — contexts are not shared between switches.
    let b = [0x11, 0x06, 0x03, b'a', 0x11, 0x06, 0x00];
    assert_eq!(
        decode_all(&b),
        Err(AmfError::BadReference {
            table: "string",
            index: 0
        })
    );
    let ok = [0x11, 0x06, 0x03, b'a', 0x11, 0x06, 0x03, b'b'];
    assert_eq!(decode_all(&ok), Ok(vec![s("a"), s("b")]));
}

#[test]
fn u29_encoding_boundaries() {
    for (v, want) in [
        (0u32, &[0x00u8][..]),
        (0x7F, &[0x7F]),
        (0x80, &[0x81, 0x00]),
        (0x3FFF, &[0xFF, 0x7F]),
        (0x4000, &[0x81, 0x80, 0x00]),
        (0x1F_FFFF, &[0xFF, 0xFF, 0x7F]),
        (0x20_0000, &[0x80, 0xC0, 0x80, 0x00]),
        (0x1FFF_FFFF, &[0xFF, 0xFF, 0xFF, 0xFF]),
    ] {
        let mut b = BytesMut::new();
        encode_u29(&mut b, v);
        assert_eq!(&b[..], want, "{v:#x}");
    }
}

// ---------- property tests ----------

fn arb_key() -> BoxedStrategy<String> {
    "[a-zA-Z0-9_é]{0,12}".boxed()
}

fn arb_value() -> impl Strategy<Value = Amf0Value> {
    let leaf = prop_oneof![
        any::<f64>()
            .prop_filter("NaN != NaN", |n| !n.is_nan())
            .prop_map(Amf0Value::Number),
        any::<bool>().prop_map(Amf0Value::Boolean),
        ".{0,20}".prop_map(Amf0Value::String),
        Just(Amf0Value::Null),
        Just(Amf0Value::Undefined),
        any::<u16>().prop_map(Amf0Value::Reference),
        (-1e15f64..1e15, any::<i16>())
            .prop_map(|(millis, timezone)| Amf0Value::Date { millis, timezone }),
        ".{0,20}".prop_map(Amf0Value::LongString),
        Just(Amf0Value::Unsupported),
        ".{0,20}".prop_map(Amf0Value::XmlDocument),
        proptest::collection::vec(any::<u8>(), 0..20)
            .prop_map(|b| Amf0Value::ByteArray(Bytes::from(b))),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        let props = proptest::collection::vec((arb_key(), inner.clone()), 0..6);
        prop_oneof![
            props.clone().prop_map(Amf0Value::Object),
            props.clone().prop_map(Amf0Value::EcmaArray),
            proptest::collection::vec(inner, 0..6).prop_map(Amf0Value::StrictArray),
            ("[A-Za-z.]{1,10}", props).prop_map(|(class_name, properties)| {
                Amf0Value::TypedObject {
                    class_name,
                    properties,
                }
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn amf0_round_trip(values in proptest::collection::vec(arb_value(), 0..4)) {
        let bytes = encode_values(&values);
        prop_assert_eq!(decode_all(&bytes), Ok(values));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_all(&bytes);
        let _ = amf3::decode(&bytes);
        let mut switched = vec![0x11];
        switched.extend_from_slice(&bytes);
        let _ = decode_all(&switched);
    }

    #[test]
    fn decoding_mutated_valid_input_never_panics(
        values in proptest::collection::vec(arb_value(), 1..3),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = encode_values(&values).to_vec();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let _ = decode_all(&bytes);
    }

    #[test]
    fn decoded_size_is_bounded_by_limits(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let limits = DecodeLimits { max_depth: 4, max_elements: 64, max_bytes: 256 };
        if let Ok(values) = Amf0Decoder::with_limits(&bytes, limits).decode_all() {
            fn count(v: &Amf0Value, depth: usize, max_depth: &mut usize) -> usize {
                *max_depth = (*max_depth).max(depth);
                1 + match v {
                    Amf0Value::Object(p) | Amf0Value::EcmaArray(p)
                    | Amf0Value::TypedObject { properties: p, .. } =>
                        p.iter().map(|(_, v)| count(v, depth + 1, max_depth)).sum(),
                    Amf0Value::StrictArray(items) =>
                        items.iter().map(|v| count(v, depth + 1, max_depth)).sum(),
                    _ => 0,
                }
            }
            let mut depth = 0;
            let n: usize = values.iter().map(|v| count(v, 0, &mut depth)).sum();
            prop_assert!(n <= 64);
            prop_assert!(depth <= 4);
        }
    }

    #[test]
    fn u29_round_trip(v in 0u32..=amf3::U29_MAX) {
        let mut b = BytesMut::new();
        b.put_u8(amf3::marker::INTEGER);
        encode_u29(&mut b, v);
        let signed = if v & 0x1000_0000 != 0 { v as i64 - 0x2000_0000 } else { v as i64 };
        prop_assert_eq!(amf3::decode(&b), Ok(Amf0Value::Number(signed as f64)));
    }
}
