//! AMF3 decoder (core/src/rtmp/amf/amf3.rs) on arbitrary bytes, directly and
//! behind the AMF0 `avmplus` switch (0x11).
//!
//! Input: byte 0 picks the limits, rest = one AMF3 value.
//! Invariants: no panic; references never amplify past the limits (value
//! nodes, materialized bytes, depth); the decoded value, encoded as AMF0,
//! decodes again and re-encodes to the same bytes.
#![no_main]

use arcly::rtmp::amf::{amf3, encode_values, Amf0Decoder, DecodeLimits};
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
    if let Ok(v) = amf3::decode_with_limits(rest, limits) {
        let mut size = AmfSize::default();
        amf_size(&v, 0, &mut size);
        assert!(
            size.elements <= limits.max_elements,
            "{size:?} vs {limits:?}"
        );
        assert!(size.bytes <= limits.max_bytes, "{size:?} vs {limits:?}");
        assert!(size.depth <= limits.max_depth, "{size:?} vs {limits:?}");
        let enc1 = encode_values(std::slice::from_ref(&v));
        let again = Amf0Decoder::new(&enc1)
            .decode_all()
            .unwrap_or_else(|e| panic!("re-decoding the AMF0 form failed: {e}; value {v:?}"));
        let enc2 = encode_values(&again);
        assert_eq!(enc1, enc2, "AMF0 form not stable for {v:?}");
    }
    // The same bytes behind the AMF0 avmplus switch.
    let mut wrapped = Vec::with_capacity(rest.len() + 1);
    wrapped.push(0x11);
    wrapped.extend_from_slice(rest);
    let _ = Amf0Decoder::with_limits(&wrapped, limits).decode_all();
});
