//! AMF0 decoder (core/src/rtmp/amf/amf0.rs) on arbitrary bytes.
//!
//! Input: byte 0 picks the limits, rest = AMF0 values back to back.
//! Invariants: no panic; a decoded value tree stays within the limits
//! (elements, materialized bytes, depth); re-encoding the decoded values and
//! decoding that gives values that encode to the same bytes
//! (encode ∘ decode ∘ encode = encode; byte equality also covers NaN).
#![no_main]

use arcly::rtmp::amf::{encode_values, Amf0Decoder, DecodeLimits};
use arcly_fuzz::{amf_size, AmfSize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [lim, rest @ ..] = data else {
        return;
    };
    let limits = if lim & 1 == 0 {
        DecodeLimits::DEFAULT
    } else {
        DecodeLimits {
            max_depth: usize::from(lim >> 5) + 1,
            max_elements: usize::from(*lim) * 4,
            max_bytes: usize::from(*lim) * 16,
        }
    };
    let mut dec = Amf0Decoder::with_limits(rest, limits);
    let mut values = Vec::new();
    let mut size = AmfSize::default();
    loop {
        match dec.decode_opt() {
            Ok(Some(v)) => {
                amf_size(&v, 0, &mut size);
                values.push(v);
            }
            Ok(None) => break,
            Err(_) => break,
        }
        assert!(dec.position() <= rest.len());
    }
    assert!(
        size.elements <= limits.max_elements,
        "{size:?} vs {limits:?}"
    );
    assert!(size.bytes <= limits.max_bytes, "{size:?} vs {limits:?}");
    assert!(size.depth <= limits.max_depth, "{size:?} vs {limits:?}");
    let enc1 = encode_values(&values);
    let again = Amf0Decoder::new(&enc1)
        .decode_all()
        .unwrap_or_else(|e| panic!("re-decoding our own encoding failed: {e}; values {values:?}"));
    assert_eq!(again.len(), values.len());
    let enc2 = encode_values(&again);
    assert_eq!(
        enc1, enc2,
        "encode(decode(encode(v))) != encode(v) for {values:?}"
    );
});
