//! AMF0 values, bounded decoder and encoder (AMF0 spec, Adobe 2007).
//!
//! AMF3 values reached through the `avmplus-object-marker` (0x11, AMF0 spec
//! §3.1) are decoded by [`super::amf3`] and mapped onto [`Amf0Value`]; each
//! switch starts a fresh AMF3 reference context.

use bytes::{BufMut, Bytes, BytesMut};

use super::{amf3, AmfError, Budget, DecodeLimits, Reader};

/// Ordered properties of an object or ECMA array (AMF0 spec §2.5, §2.10).
/// Order is kept as sent; duplicate keys are kept too.
pub type Properties = Vec<(String, Amf0Value)>;

/// AMF0 type markers (AMF0 spec §2.1).
pub mod marker {
    /// number-marker (§2.2).
    pub const NUMBER: u8 = 0x00;
    /// boolean-marker (§2.3).
    pub const BOOLEAN: u8 = 0x01;
    /// string-marker (§2.4).
    pub const STRING: u8 = 0x02;
    /// object-marker (§2.5).
    pub const OBJECT: u8 = 0x03;
    /// movieclip-marker, reserved (§2.6).
    pub const MOVIECLIP: u8 = 0x04;
    /// null-marker (§2.7).
    pub const NULL: u8 = 0x05;
    /// undefined-marker (§2.8).
    pub const UNDEFINED: u8 = 0x06;
    /// reference-marker (§2.9).
    pub const REFERENCE: u8 = 0x07;
    /// ecma-array-marker (§2.10).
    pub const ECMA_ARRAY: u8 = 0x08;
    /// object-end-marker (§2.11).
    pub const OBJECT_END: u8 = 0x09;
    /// strict-array-marker (§2.12).
    pub const STRICT_ARRAY: u8 = 0x0A;
    /// date-marker (§2.13).
    pub const DATE: u8 = 0x0B;
    /// long-string-marker (§2.14).
    pub const LONG_STRING: u8 = 0x0C;
    /// unsupported-marker (§2.15).
    pub const UNSUPPORTED: u8 = 0x0D;
    /// recordset-marker, reserved (§2.16).
    pub const RECORDSET: u8 = 0x0E;
    /// xml-document-marker (§2.17).
    pub const XML_DOCUMENT: u8 = 0x0F;
    /// typed-object-marker (§2.18).
    pub const TYPED_OBJECT: u8 = 0x10;
    /// avmplus-object-marker: switch to AMF3 for one value (§3.1).
    pub const AVMPLUS: u8 = 0x11;
}

/// One AMF0 value (AMF0 spec §2), also the target of AMF3 decoding.
///
/// Invariant for encoding: object keys are at most 65 535 bytes (longer keys
/// are cut at a char boundary when encoded); a [`String`](Amf0Value::String)
/// longer than 65 535 bytes is encoded as a long string.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    /// IEEE-754 double (§2.2); AMF3 integers map here too.
    Number(f64),
    /// Boolean (§2.3).
    Boolean(bool),
    /// UTF-8 string up to 65 535 bytes (§2.4).
    String(String),
    /// Anonymous object: ordered properties (§2.5).
    Object(Properties),
    /// null (§2.7).
    Null,
    /// undefined (§2.8).
    Undefined,
    /// Reference to an earlier complex value by index (§2.9); not resolved,
    /// so it cannot amplify memory.
    Reference(u16),
    /// Associative array (§2.10). The declared count is not trusted; the
    /// properties are read up to the object-end marker.
    EcmaArray(Properties),
    /// Dense array (§2.12).
    StrictArray(Vec<Amf0Value>),
    /// Date: milliseconds since the Unix epoch, UTC, and the reserved
    /// time-zone field (§2.13).
    Date {
        /// Milliseconds since 1970-01-01 UTC.
        millis: f64,
        /// Reserved time-zone offset in minutes; should be 0.
        timezone: i16,
    },
    /// UTF-8 string longer than 65 535 bytes (§2.14).
    LongString(String),
    /// The "unsupported" type (§2.15).
    Unsupported,
    /// XML document as a long UTF-8 string (§2.17).
    XmlDocument(String),
    /// Object with a registered class name (§2.18).
    TypedObject {
        /// The class alias.
        class_name: String,
        /// Ordered properties.
        properties: Properties,
    },
    /// AMF3 ByteArray (AMF3 spec §3.14). Only reachable through the AMF3
    /// switch; encoded as `0x11` + AMF3 byte array (at most 2^28-1 bytes,
    /// longer input is cut).
    ByteArray(Bytes),
}

impl Amf0Value {
    /// The number, if this is a [`Number`](Amf0Value::Number).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The boolean, if this is a [`Boolean`](Amf0Value::Boolean).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The text of a [`String`](Amf0Value::String),
    /// [`LongString`](Amf0Value::LongString) or
    /// [`XmlDocument`](Amf0Value::XmlDocument).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) | Amf0Value::XmlDocument(s) => Some(s),
            _ => None,
        }
    }

    /// The properties of an object, ECMA array or typed object.
    pub fn properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Amf0Value::Object(p)
            | Amf0Value::EcmaArray(p)
            | Amf0Value::TypedObject { properties: p, .. } => Some(p),
            _ => None,
        }
    }

    /// The first property named `key` of an object, ECMA array or typed object.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// True for [`Null`](Amf0Value::Null) and [`Undefined`](Amf0Value::Undefined).
    pub fn is_null_or_undefined(&self) -> bool {
        matches!(self, Amf0Value::Null | Amf0Value::Undefined)
    }

    /// A [`String`](Amf0Value::String) value (encoded as a long string if it
    /// exceeds 65 535 bytes).
    pub fn string(s: impl Into<String>) -> Amf0Value {
        Amf0Value::String(s.into())
    }

    /// An anonymous object from `(key, value)` pairs.
    pub fn object<K: Into<String>>(props: impl IntoIterator<Item = (K, Amf0Value)>) -> Amf0Value {
        Amf0Value::Object(props.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Appends the AMF0 encoding of this value to `out` (AMF0 spec §2).
    ///
    /// Recursion follows the value's nesting; values from the decoder are at
    /// most [`DecodeLimits::max_depth`] deep.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Amf0Value::Number(n) => {
                out.put_u8(marker::NUMBER);
                out.put_f64(*n);
            }
            Amf0Value::Boolean(b) => {
                out.put_u8(marker::BOOLEAN);
                out.put_u8(u8::from(*b));
            }
            Amf0Value::String(s) => {
                if s.len() <= usize::from(u16::MAX) {
                    out.put_u8(marker::STRING);
                    put_utf8(out, s);
                } else {
                    out.put_u8(marker::LONG_STRING);
                    put_utf8_long(out, s);
                }
            }
            Amf0Value::Object(p) => {
                out.put_u8(marker::OBJECT);
                put_properties(out, p);
            }
            Amf0Value::Null => out.put_u8(marker::NULL),
            Amf0Value::Undefined => out.put_u8(marker::UNDEFINED),
            Amf0Value::Reference(r) => {
                out.put_u8(marker::REFERENCE);
                out.put_u16(*r);
            }
            Amf0Value::EcmaArray(p) => {
                out.put_u8(marker::ECMA_ARRAY);
                out.put_u32(u32::try_from(p.len()).unwrap_or(u32::MAX));
                put_properties(out, p);
            }
            Amf0Value::StrictArray(items) => {
                out.put_u8(marker::STRICT_ARRAY);
                out.put_u32(u32::try_from(items.len()).unwrap_or(u32::MAX));
                for v in items.iter().take(u32::MAX as usize) {
                    v.encode(out);
                }
            }
            Amf0Value::Date { millis, timezone } => {
                out.put_u8(marker::DATE);
                out.put_f64(*millis);
                out.put_i16(*timezone);
            }
            Amf0Value::LongString(s) => {
                out.put_u8(marker::LONG_STRING);
                put_utf8_long(out, s);
            }
            Amf0Value::Unsupported => out.put_u8(marker::UNSUPPORTED),
            Amf0Value::XmlDocument(s) => {
                out.put_u8(marker::XML_DOCUMENT);
                put_utf8_long(out, s);
            }
            Amf0Value::TypedObject {
                class_name,
                properties,
            } => {
                out.put_u8(marker::TYPED_OBJECT);
                put_utf8(out, class_name);
                put_properties(out, properties);
            }
            Amf0Value::ByteArray(b) => {
                out.put_u8(marker::AVMPLUS);
                amf3::encode_byte_array(out, b);
            }
        }
    }

    /// The AMF0 encoding of this value.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

impl From<f64> for Amf0Value {
    fn from(n: f64) -> Self {
        Amf0Value::Number(n)
    }
}

impl From<bool> for Amf0Value {
    fn from(b: bool) -> Self {
        Amf0Value::Boolean(b)
    }
}

impl From<&str> for Amf0Value {
    fn from(s: &str) -> Self {
        Amf0Value::String(s.to_owned())
    }
}

impl From<String> for Amf0Value {
    fn from(s: String) -> Self {
        Amf0Value::String(s)
    }
}

/// The longest prefix of `s` that fits `max` bytes and ends on a char boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// UTF-8 with a 16-bit length (AMF0 spec §1.3); cut at 65 535 bytes.
fn put_utf8(out: &mut BytesMut, s: &str) {
    let s = truncate_utf8(s, usize::from(u16::MAX));
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

/// UTF-8-long with a 32-bit length (AMF0 spec §1.3).
fn put_utf8_long(out: &mut BytesMut, s: &str) {
    let s = truncate_utf8(s, u32::MAX as usize);
    out.put_u32(s.len() as u32);
    out.put_slice(s.as_bytes());
}

/// Properties then the empty key and object-end marker (AMF0 spec §2.5).
fn put_properties(out: &mut BytesMut, props: &[(String, Amf0Value)]) {
    for (k, v) in props {
        put_utf8(out, k);
        v.encode(out);
    }
    out.put_u16(0);
    out.put_u8(marker::OBJECT_END);
}

/// Encodes `values` one after another: the body of a command or data message.
pub fn encode_values(values: &[Amf0Value]) -> Bytes {
    let mut out = BytesMut::with_capacity(256);
    for v in values {
        v.encode(&mut out);
    }
    out.freeze()
}

/// Decodes every value of `input` with the default [`DecodeLimits`].
pub fn decode_all(input: &[u8]) -> Result<Vec<Amf0Value>, AmfError> {
    Amf0Decoder::new(input).decode_all()
}

/// Bounded AMF0 decoder over one message body.
///
/// Invariants: never panics; the limits of [`DecodeLimits`] hold across all
/// values decoded by one decoder; no allocation is sized from a declared
/// length before that length has been checked against the remaining input.
#[derive(Debug, Clone)]
pub struct Amf0Decoder<'a> {
    reader: Reader<'a>,
    budget: Budget,
}

impl<'a> Amf0Decoder<'a> {
    /// A decoder with the default limits.
    pub fn new(input: &'a [u8]) -> Self {
        Self::with_limits(input, DecodeLimits::DEFAULT)
    }

    /// A decoder with explicit limits.
    pub fn with_limits(input: &'a [u8], limits: DecodeLimits) -> Self {
        Amf0Decoder {
            reader: Reader::new(input),
            budget: Budget::new(limits),
        }
    }

    /// True when the whole input has been consumed.
    pub fn is_empty(&self) -> bool {
        self.reader.is_empty()
    }

    /// Offset of the next unread byte.
    pub fn position(&self) -> usize {
        self.reader.position()
    }

    /// Decodes the next value. On error the decoder position is unspecified.
    pub fn decode(&mut self) -> Result<Amf0Value, AmfError> {
        decode_value(&mut self.reader, &mut self.budget, 0)
    }

    /// Decodes the next value, or `None` at the end of the input.
    pub fn decode_opt(&mut self) -> Result<Option<Amf0Value>, AmfError> {
        if self.is_empty() {
            Ok(None)
        } else {
            self.decode().map(Some)
        }
    }

    /// Decodes values until the input is exhausted.
    pub fn decode_all(mut self) -> Result<Vec<Amf0Value>, AmfError> {
        let mut out = Vec::new();
        while let Some(v) = self.decode_opt()? {
            out.push(v);
        }
        Ok(out)
    }
}

/// UTF-8 with a 16-bit length (AMF0 spec §1.3).
fn read_utf8(r: &mut Reader<'_>, budget: &mut Budget) -> Result<String, AmfError> {
    let n = r.u16()?;
    r.utf8(usize::from(n), budget)
}

/// UTF-8-long with a 32-bit length (AMF0 spec §1.3). The declared length is
/// checked against the remaining input before anything is allocated.
fn read_utf8_long(r: &mut Reader<'_>, budget: &mut Budget) -> Result<String, AmfError> {
    let n = r.u32()?;
    r.utf8(n as usize, budget)
}

/// Object properties up to the empty key + object-end marker (AMF0 spec
/// §2.5). `lenient_count`: for ECMA arrays, accept a missing end marker when
/// the input ends after at least that many properties.
fn read_properties(
    r: &mut Reader<'_>,
    budget: &mut Budget,
    depth: usize,
    lenient_count: Option<u32>,
) -> Result<Properties, AmfError> {
    let mut props = Properties::new();
    loop {
        if r.is_empty() {
            if let Some(n) = lenient_count {
                if props.len() >= n as usize {
                    return Ok(props);
                }
            }
        }
        let key = read_utf8(r, budget)?;
        if key.is_empty() && r.peek_u8() == Some(marker::OBJECT_END) {
            r.u8()?;
            return Ok(props);
        }
        let value = decode_value(r, budget, depth)?;
        props.push((key, value));
    }
}

/// One AMF0 value at `depth` enclosing containers.
pub(crate) fn decode_value(
    r: &mut Reader<'_>,
    budget: &mut Budget,
    depth: usize,
) -> Result<Amf0Value, AmfError> {
    let offset = r.position();
    let m = r.u8()?;
    budget.elements(1)?;
    Ok(match m {
        marker::NUMBER => Amf0Value::Number(r.f64()?),
        marker::BOOLEAN => Amf0Value::Boolean(r.u8()? != 0),
        marker::STRING => Amf0Value::String(read_utf8(r, budget)?),
        marker::OBJECT => {
            budget.enter(depth)?;
            Amf0Value::Object(read_properties(r, budget, depth + 1, None)?)
        }
        marker::NULL => Amf0Value::Null,
        marker::UNDEFINED => Amf0Value::Undefined,
        marker::REFERENCE => Amf0Value::Reference(r.u16()?),
        marker::ECMA_ARRAY => {
            budget.enter(depth)?;
            // The count is a hint only (AMF0 spec §2.10); encoders get it wrong.
            let count = r.u32()?;
            Amf0Value::EcmaArray(read_properties(r, budget, depth + 1, Some(count))?)
        }
        marker::OBJECT_END => return Err(AmfError::UnexpectedObjectEnd { offset }),
        marker::STRICT_ARRAY => {
            budget.enter(depth)?;
            let count = r.u32()? as usize;
            // Every element takes at least one byte: a count beyond the
            // remaining input is a truncation, found before any allocation.
            if count > r.remaining() {
                return Err(AmfError::Truncated {
                    offset: r.position(),
                    needed: count - r.remaining(),
                });
            }
            if count > budget.elements_left() {
                return Err(AmfError::TooManyElements {
                    max: budget.limits.max_elements,
                });
            }
            let mut items = Vec::with_capacity(count.min(64));
            for _ in 0..count {
                items.push(decode_value(r, budget, depth + 1)?);
            }
            Amf0Value::StrictArray(items)
        }
        marker::DATE => {
            let millis = r.f64()?;
            let timezone = r.i16()?;
            Amf0Value::Date { millis, timezone }
        }
        marker::LONG_STRING => Amf0Value::LongString(read_utf8_long(r, budget)?),
        marker::UNSUPPORTED => Amf0Value::Unsupported,
        marker::MOVIECLIP | marker::RECORDSET => return Err(AmfError::ReservedMarker(m)),
        marker::XML_DOCUMENT => Amf0Value::XmlDocument(read_utf8_long(r, budget)?),
        marker::TYPED_OBJECT => {
            budget.enter(depth)?;
            let class_name = read_utf8(r, budget)?;
            let properties = read_properties(r, budget, depth + 1, None)?;
            Amf0Value::TypedObject {
                class_name,
                properties,
            }
        }
        marker::AVMPLUS => amf3::decode_value_fresh(r, budget, depth)?,
        other => return Err(AmfError::UnknownMarker(other)),
    })
}
