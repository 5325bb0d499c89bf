//! Shared helpers of arcly's fuzz targets (see `docs/fuzzing.md`).
//!
//! Raw-byte targets take their first byte as a *split seed*: the rest of the
//! input is cut into pieces whose lengths come from a tiny PRNG seeded with
//! it, so the same stream is fed in one piece, byte by byte, or anything in
//! between. Seed files are real protocol bytes with one byte prepended.

use arcly::rtmp::amf::Amf0Value;

/// Cuts `data` into pieces whose lengths are derived from `seed`.
///
/// Seed 0 yields `data` whole; seed 1 yields single bytes; other seeds pick
/// a maximum piece length from {2, 7, 64, 200, 1500, 5000} and random
/// lengths in 1..=max.
pub fn split(data: &[u8], seed: u8) -> Vec<&[u8]> {
    if data.is_empty() {
        return Vec::new();
    }
    match seed {
        0 => return vec![data],
        1 => return data.chunks(1).collect(),
        _ => {}
    }
    const MAX: [usize; 6] = [2, 7, 64, 200, 1500, 5000];
    let max = MAX[usize::from(seed) % MAX.len()];
    let mut state = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = (state as usize % max) + 1;
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

/// Size of a decoded AMF value tree: number of value nodes and bytes of
/// strings, keys, class names and byte arrays it materializes (what
/// `DecodeLimits::max_elements` / `max_bytes` bound).
#[derive(Debug, Default, Clone, Copy)]
pub struct AmfSize {
    /// Value nodes, containers included.
    pub elements: usize,
    /// String, key, class name and byte array bytes.
    pub bytes: usize,
    /// Deepest container nesting (a scalar at top level is 0).
    pub depth: usize,
}

/// Measures `v` into `acc`; `depth` is the number of enclosing containers.
pub fn amf_size(v: &Amf0Value, depth: usize, acc: &mut AmfSize) {
    acc.elements += 1;
    let props = |p: &[(String, Amf0Value)], acc: &mut AmfSize| {
        acc.depth = acc.depth.max(depth + 1);
        for (k, v) in p {
            acc.bytes += k.len();
            amf_size(v, depth + 1, acc);
        }
    };
    match v {
        Amf0Value::String(s) | Amf0Value::LongString(s) | Amf0Value::XmlDocument(s) => {
            acc.bytes += s.len()
        }
        Amf0Value::ByteArray(b) => acc.bytes += b.len(),
        Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => props(p, acc),
        Amf0Value::TypedObject {
            class_name,
            properties,
        } => {
            acc.bytes += class_name.len();
            props(properties, acc);
        }
        Amf0Value::StrictArray(items) => {
            acc.depth = acc.depth.max(depth + 1);
            for i in items {
                amf_size(i, depth + 1, acc);
            }
        }
        Amf0Value::Number(_)
        | Amf0Value::Boolean(_)
        | Amf0Value::Null
        | Amf0Value::Undefined
        | Amf0Value::Reference(_)
        | Amf0Value::Date { .. }
        | Amf0Value::Unsupported => {}
    }
}
