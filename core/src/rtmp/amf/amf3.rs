//! AMF3 decoding (AMF3 spec, Adobe 2013), mapped onto [`Amf0Value`].
//!
//! RTMP peers that negotiated `objectEncoding: 3` send command messages of
//! type 17 and data messages of type 15: AMF0 values in which an
//! `avmplus-object-marker` (0x11) switches one value to AMF3. This module
//! decodes those values with the same [`DecodeLimits`] as AMF0.
//!
//! Mapping: integer and double → [`Amf0Value::Number`]; string →
//! [`Amf0Value::String`]; XML and XMLDocument → [`Amf0Value::XmlDocument`];
//! date → [`Amf0Value::Date`]; array with only a dense part →
//! [`Amf0Value::StrictArray`], with an associative part →
//! [`Amf0Value::EcmaArray`] (dense items keyed `"0"`, `"1"`, …); anonymous
//! object → [`Amf0Value::Object`], named → [`Amf0Value::TypedObject`];
//! byte array → [`Amf0Value::ByteArray`]; vectors →
//! [`Amf0Value::StrictArray`]. Externalizable objects and dictionaries are
//! refused with [`AmfError::Unsupported`].
//!
//! References (AMF3 spec §2.2) are resolved by decoding the referenced value
//! again from its offset; each copy is charged to the decoder's element and
//! byte budgets, so a "billion laughs" of references fails with
//! [`AmfError::TooManyElements`] or [`AmfError::TooManyBytes`], and the
//! reference tables never hold copies. Cyclic references fail with
//! [`AmfError::CyclicReference`].

use bytes::{BufMut, Bytes, BytesMut};

use super::amf0::Properties;
use super::{Amf0Value, AmfError, Budget, DecodeLimits, Reader};

/// AMF3 type markers (AMF3 spec §3.1).
pub mod marker {
    /// undefined-marker (§3.2).
    pub const UNDEFINED: u8 = 0x00;
    /// null-marker (§3.3).
    pub const NULL: u8 = 0x01;
    /// false-marker (§3.4).
    pub const FALSE: u8 = 0x02;
    /// true-marker (§3.5).
    pub const TRUE: u8 = 0x03;
    /// integer-marker, U29 (§3.6).
    pub const INTEGER: u8 = 0x04;
    /// double-marker (§3.7).
    pub const DOUBLE: u8 = 0x05;
    /// string-marker (§3.8).
    pub const STRING: u8 = 0x06;
    /// xml-doc-marker (§3.9).
    pub const XML_DOC: u8 = 0x07;
    /// date-marker (§3.10).
    pub const DATE: u8 = 0x08;
    /// array-marker (§3.11).
    pub const ARRAY: u8 = 0x09;
    /// object-marker (§3.12).
    pub const OBJECT: u8 = 0x0A;
    /// xml-marker (§3.13).
    pub const XML: u8 = 0x0B;
    /// byte-array-marker (§3.14).
    pub const BYTE_ARRAY: u8 = 0x0C;
    /// vector-int-marker (§3.15).
    pub const VECTOR_INT: u8 = 0x0D;
    /// vector-uint-marker (§3.15).
    pub const VECTOR_UINT: u8 = 0x0E;
    /// vector-double-marker (§3.15).
    pub const VECTOR_DOUBLE: u8 = 0x0F;
    /// vector-object-marker (§3.15).
    pub const VECTOR_OBJECT: u8 = 0x10;
    /// dictionary-marker (§3.16).
    pub const DICTIONARY: u8 = 0x11;
}

/// Largest value of a U29 (AMF3 spec §1.3.1).
pub const U29_MAX: u32 = 0x1FFF_FFFF;

/// Decodes one AMF3 value (no 0x11 prefix) with the default limits.
pub fn decode(input: &[u8]) -> Result<Amf0Value, AmfError> {
    decode_with_limits(input, DecodeLimits::DEFAULT)
}

/// Decodes one AMF3 value (no 0x11 prefix) with explicit limits; trailing
/// bytes are ignored.
pub fn decode_with_limits(input: &[u8], limits: DecodeLimits) -> Result<Amf0Value, AmfError> {
    let mut r = Reader::new(input);
    let mut budget = Budget::new(limits);
    decode_value_fresh(&mut r, &mut budget, 0)
}

/// One AMF3 value with a fresh reference context (AMF0 spec §3.1).
pub(crate) fn decode_value_fresh(
    r: &mut Reader<'_>,
    budget: &mut Budget,
    depth: usize,
) -> Result<Amf0Value, AmfError> {
    let mut ctx = Context::default();
    ctx.value(r, budget, depth)
}

/// Appends `b` as an AMF3 byte array (marker, U29 length, bytes; AMF3 spec
/// §3.14). Input longer than 2^28-1 bytes is cut to that length.
pub fn encode_byte_array(out: &mut BytesMut, b: &[u8]) {
    let max = (U29_MAX >> 1) as usize;
    let b = b.get(..b.len().min(max)).unwrap_or(b);
    out.put_u8(marker::BYTE_ARRAY);
    encode_u29(out, ((b.len() as u32) << 1) | 1);
    out.put_slice(b);
}

/// Appends a U29 variable-length integer (AMF3 spec §1.3.1); values above
/// [`U29_MAX`] are masked to 29 bits.
pub fn encode_u29(out: &mut BytesMut, v: u32) {
    let v = v & U29_MAX;
    if v < 0x80 {
        out.put_u8(v as u8);
    } else if v < 0x4000 {
        out.put_u8(((v >> 7) | 0x80) as u8);
        out.put_u8((v & 0x7F) as u8);
    } else if v < 0x20_0000 {
        out.put_u8(((v >> 14) | 0x80) as u8);
        out.put_u8(((v >> 7) & 0x7F | 0x80) as u8);
        out.put_u8((v & 0x7F) as u8);
    } else {
        out.put_u8(((v >> 22) | 0x80) as u8);
        out.put_u8(((v >> 15) & 0x7F | 0x80) as u8);
        out.put_u8(((v >> 8) & 0x7F | 0x80) as u8);
        out.put_u8((v & 0xFF) as u8);
    }
}

/// Reads a U29 (AMF3 spec §1.3.1).
fn read_u29(r: &mut Reader<'_>) -> Result<u32, AmfError> {
    let mut v: u32 = 0;
    for _ in 0..3 {
        let b = r.u8()?;
        v = (v << 7) | u32::from(b & 0x7F);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    let b = r.u8()?;
    Ok((v << 8) | u32::from(b))
}

/// Class traits (AMF3 spec §3.12).
#[derive(Debug, Clone)]
struct Traits {
    class_name: String,
    dynamic: bool,
    sealed: Vec<String>,
    /// Total bytes of `class_name` and `sealed`, charged on every copy.
    size: usize,
}

/// An object-table entry: where the complex value starts in the input.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Offset of the value's marker byte.
    offset: usize,
    /// False while the value is still being decoded (a reference to it now
    /// would be a cycle).
    done: bool,
}

/// The three reference tables of one AMF3 context (AMF3 spec §2.2).
///
/// A referenced complex value is not kept as a copy: it is decoded again
/// from its offset in "replay" mode, in which nothing is added to the
/// tables (they already hold everything the first pass added, and they only
/// grow). Replays are charged to the budget like any other decoding, so
/// reference amplification is bounded by the limits, and the tables cost
/// O(1) memory per entry.
#[derive(Debug, Default)]
struct Context {
    strings: Vec<String>,
    objects: Vec<Slot>,
    traits: Vec<Traits>,
    replay: bool,
}

impl Context {
    /// Adds an object-table entry for a complex value starting at `offset`,
    /// before decoding its contents (the encoder numbers objects in that
    /// order). `None` in replay mode.
    fn reserve(&mut self, offset: usize) -> Option<usize> {
        if self.replay {
            return None;
        }
        self.objects.push(Slot {
            offset,
            done: false,
        });
        Some(self.objects.len() - 1)
    }

    fn finish(&mut self, slot: Option<usize>) {
        if let Some(s) = slot.and_then(|i| self.objects.get_mut(i)) {
            s.done = true;
        }
    }

    /// Resolves object reference `index` by decoding the referenced value
    /// again at the current depth.
    fn object_ref(
        &mut self,
        index: usize,
        r: &Reader<'_>,
        budget: &mut Budget,
        depth: usize,
    ) -> Result<Amf0Value, AmfError> {
        let slot = *self.objects.get(index).ok_or(AmfError::BadReference {
            table: "object",
            index,
        })?;
        if !slot.done {
            return Err(AmfError::CyclicReference(index));
        }
        let mut sub = r.at(slot.offset);
        let was = core::mem::replace(&mut self.replay, true);
        let v = self.value(&mut sub, budget, depth);
        self.replay = was;
        v
    }

    /// UTF-8-vr (AMF3 spec §1.3.2): a string or a string-table reference.
    fn string(&mut self, r: &mut Reader<'_>, budget: &mut Budget) -> Result<String, AmfError> {
        let h = read_u29(r)?;
        if h & 1 == 0 {
            let index = (h >> 1) as usize;
            let s = self.strings.get(index).ok_or(AmfError::BadReference {
                table: "string",
                index,
            })?;
            budget.bytes(s.len())?;
            return Ok(s.clone());
        }
        let len = (h >> 1) as usize;
        let s = r.utf8(len, budget)?;
        if !s.is_empty() && !self.replay {
            self.strings.push(s.clone());
        }
        Ok(s)
    }

    /// One AMF3 value at `depth` enclosing containers.
    fn value(
        &mut self,
        r: &mut Reader<'_>,
        budget: &mut Budget,
        depth: usize,
    ) -> Result<Amf0Value, AmfError> {
        let offset = r.position();
        let m = r.u8()?;
        budget.elements(1)?;
        let v = match m {
            marker::UNDEFINED => Amf0Value::Undefined,
            marker::NULL => Amf0Value::Null,
            marker::FALSE => Amf0Value::Boolean(false),
            marker::TRUE => Amf0Value::Boolean(true),
            marker::INTEGER => {
                let v = read_u29(r)?;
                // 29-bit two's complement.
                let i = if v & 0x1000_0000 != 0 {
                    v as i32 - 0x2000_0000
                } else {
                    v as i32
                };
                Amf0Value::Number(f64::from(i))
            }
            marker::DOUBLE => Amf0Value::Number(r.f64()?),
            marker::STRING => Amf0Value::String(self.string(r, budget)?),
            marker::DICTIONARY => return Err(AmfError::Unsupported("AMF3 dictionary")),
            marker::XML_DOC
            | marker::XML
            | marker::DATE
            | marker::ARRAY
            | marker::OBJECT
            | marker::BYTE_ARRAY
            | marker::VECTOR_INT
            | marker::VECTOR_UINT
            | marker::VECTOR_DOUBLE
            | marker::VECTOR_OBJECT => {
                let h = read_u29(r)?;
                if h & 1 == 0 {
                    return self.object_ref((h >> 1) as usize, r, budget, depth);
                }
                let slot = self.reserve(offset);
                let v = self.complex(r, budget, depth, m, h)?;
                self.finish(slot);
                v
            }
            other => return Err(AmfError::UnknownAmf3Marker(other)),
        };
        Ok(v)
    }

    /// The body of an inline complex value with marker `m` and U29 header `h`.
    fn complex(
        &mut self,
        r: &mut Reader<'_>,
        budget: &mut Budget,
        depth: usize,
        m: u8,
        h: u32,
    ) -> Result<Amf0Value, AmfError> {
        let len = (h >> 1) as usize;
        Ok(match m {
            marker::XML_DOC | marker::XML => Amf0Value::XmlDocument(r.utf8(len, budget)?),
            marker::DATE => Amf0Value::Date {
                millis: r.f64()?,
                timezone: 0,
            },
            marker::BYTE_ARRAY => {
                let b = r.bytes(len)?;
                budget.bytes(len)?;
                Amf0Value::ByteArray(Bytes::copy_from_slice(b))
            }
            marker::ARRAY => {
                budget.enter(depth)?;
                self.array(r, budget, depth, len)?
            }
            marker::OBJECT => {
                budget.enter(depth)?;
                self.object(r, budget, depth, h)?
            }
            _ => {
                budget.enter(depth)?;
                self.vector(r, budget, depth, m, len)?
            }
        })
    }

    /// Checks a declared item count against the input (≥ `min_size` bytes
    /// each) and the element budget, before any allocation.
    fn check_count(
        r: &Reader<'_>,
        budget: &Budget,
        count: usize,
        min_size: usize,
    ) -> Result<(), AmfError> {
        let need = count.saturating_mul(min_size);
        if need > r.remaining() {
            return Err(AmfError::Truncated {
                offset: r.position(),
                needed: need - r.remaining(),
            });
        }
        if count > budget.elements_left() {
            return Err(AmfError::TooManyElements {
                max: budget.limits.max_elements,
            });
        }
        Ok(())
    }

    /// Array body (AMF3 spec §3.11): associative part, then `dense` items.
    fn array(
        &mut self,
        r: &mut Reader<'_>,
        budget: &mut Budget,
        depth: usize,
        dense: usize,
    ) -> Result<Amf0Value, AmfError> {
        let mut assoc = Properties::new();
        loop {
            let key = self.string(r, budget)?;
            if key.is_empty() {
                break;
            }
            let v = self.value(r, budget, depth + 1)?;
            assoc.push((key, v));
        }
        Self::check_count(r, budget, dense, 1)?;
        let mut items = Vec::with_capacity(dense.min(64));
        for _ in 0..dense {
            items.push(self.value(r, budget, depth + 1)?);
        }
        if assoc.is_empty() {
            return Ok(Amf0Value::StrictArray(items));
        }
        for (i, v) in items.into_iter().enumerate() {
            let key = i.to_string();
            budget.bytes(key.len())?;
            assoc.push((key, v));
        }
        Ok(Amf0Value::EcmaArray(assoc))
    }

    /// Object body after the U29O header `h` (AMF3 spec §3.12).
    fn object(
        &mut self,
        r: &mut Reader<'_>,
        budget: &mut Budget,
        depth: usize,
        h: u32,
    ) -> Result<Amf0Value, AmfError> {
        let traits = if h & 0b10 == 0 {
            let index = (h >> 2) as usize;
            let t = self.traits.get(index).ok_or(AmfError::BadReference {
                table: "traits",
                index,
            })?;
            budget.bytes(t.size)?;
            t.clone()
        } else {
            if h & 0b100 != 0 {
                return Err(AmfError::Unsupported("AMF3 externalizable object"));
            }
            let dynamic = h & 0b1000 != 0;
            let count = (h >> 4) as usize;
            let class_name = self.string(r, budget)?;
            Self::check_count(r, budget, count, 1)?;
            let mut sealed = Vec::with_capacity(count.min(64));
            for _ in 0..count {
                sealed.push(self.string(r, budget)?);
            }
            let size = class_name.len() + sealed.iter().map(String::len).sum::<usize>();
            let t = Traits {
                class_name,
                dynamic,
                sealed,
                size,
            };
            if !self.replay {
                self.traits.push(t.clone());
            }
            t
        };
        Self::check_count(r, budget, traits.sealed.len(), 1)?;
        let mut props = Properties::new();
        for name in traits.sealed {
            let v = self.value(r, budget, depth + 1)?;
            props.push((name, v));
        }
        if traits.dynamic {
            loop {
                let key = self.string(r, budget)?;
                if key.is_empty() {
                    break;
                }
                let v = self.value(r, budget, depth + 1)?;
                props.push((key, v));
            }
        }
        Ok(if traits.class_name.is_empty() {
            Amf0Value::Object(props)
        } else {
            Amf0Value::TypedObject {
                class_name: traits.class_name,
                properties: props,
            }
        })
    }

    /// Vector body (AMF3 spec §3.15).
    fn vector(
        &mut self,
        r: &mut Reader<'_>,
        budget: &mut Budget,
        depth: usize,
        m: u8,
        count: usize,
    ) -> Result<Amf0Value, AmfError> {
        let _fixed = r.u8()?;
        let size = match m {
            marker::VECTOR_DOUBLE => 8,
            marker::VECTOR_OBJECT => 1,
            _ => 4,
        };
        if m == marker::VECTOR_OBJECT {
            let _type_name = self.string(r, budget)?;
        }
        Self::check_count(r, budget, count, size)?;
        budget.elements(if m == marker::VECTOR_OBJECT { 0 } else { count })?;
        let mut items = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            items.push(match m {
                marker::VECTOR_INT => Amf0Value::Number(f64::from(r.i32()?)),
                marker::VECTOR_UINT => Amf0Value::Number(f64::from(r.u32()?)),
                marker::VECTOR_DOUBLE => Amf0Value::Number(r.f64()?),
                _ => self.value(r, budget, depth + 1)?,
            });
        }
        Ok(Amf0Value::StrictArray(items))
    }
}
