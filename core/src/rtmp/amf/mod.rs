//! AMF (Action Message Format): the serialization of RTMP command and data
//! messages.
//!
//! * [`amf0`] — AMF0 (AMF0 spec, Adobe 2007): the value type [`Amf0Value`],
//!   a bounded decoder and an encoder. RTMP message types 20 (command) and
//!   18 (data) carry AMF0.
//! * [`amf3`] — AMF3 (AMF3 spec, Adobe 2013), decode only: values reached
//!   through the AMF0 `avmplus-object-marker` (0x11), as in RTMP message types
//!   17 and 15. AMF3 values are mapped onto [`Amf0Value`] so that commands
//!   parse the same whichever encoding the peer used.
//!
//! # Bounds
//!
//! Every input is untrusted network bytes. Decoding is bounded by
//! [`DecodeLimits`]: container nesting depth, total number of decoded
//! elements, total bytes of materialized strings. A declared length is never
//! trusted for an allocation: a string or array length is first checked
//! against the bytes that remain (each element takes at least one byte), so a
//! huge declared length fails at once with [`AmfError::Truncated`], and a
//! nesting bomb fails with [`AmfError::DepthExceeded`] before the recursion
//! gets deep. Decoding never panics.

pub mod amf0;
pub mod amf3;

pub use amf0::{decode_all, encode_values, Amf0Decoder, Amf0Value, Properties};

/// Why AMF bytes could not be decoded (AMF0 spec §2, AMF3 spec §3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmfError {
    /// The input ended inside a value.
    #[error("AMF input truncated at offset {offset}: {needed} more byte(s) needed")]
    Truncated {
        /// Offset in the input where the missing bytes should start.
        offset: usize,
        /// How many more bytes were needed (at least).
        needed: usize,
    },
    /// Containers nested deeper than [`DecodeLimits::max_depth`].
    #[error("AMF containers nested deeper than {max}")]
    DepthExceeded {
        /// The configured limit.
        max: usize,
    },
    /// An AMF0 type marker that does not exist (AMF0 spec §2.1).
    #[error("unknown AMF0 type marker 0x{0:02x}")]
    UnknownMarker(u8),
    /// An AMF3 type marker that does not exist (AMF3 spec §3.1).
    #[error("unknown AMF3 type marker 0x{0:02x}")]
    UnknownAmf3Marker(u8),
    /// A reserved, unsupported AMF0 type (movieclip 0x04, recordset 0x0E;
    /// AMF0 spec §2.6, §2.16).
    #[error("reserved AMF0 type marker 0x{0:02x}")]
    ReservedMarker(u8),
    /// More values than [`DecodeLimits::max_elements`].
    #[error("more than {max} AMF elements")]
    TooManyElements {
        /// The configured limit.
        max: usize,
    },
    /// More string / byte-array bytes than [`DecodeLimits::max_bytes`]
    /// (reachable through AMF3 references).
    #[error("more than {max} bytes of AMF strings")]
    TooManyBytes {
        /// The configured limit.
        max: usize,
    },
    /// A string that is not UTF-8 (AMF0 spec §1.3, AMF3 spec §1.3.1).
    #[error("AMF string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Offset of the string bytes in the input.
        offset: usize,
    },
    /// An object-end marker (0x09) where a value was expected
    /// (AMF0 spec §2.11).
    #[error("AMF0 object-end marker outside an object at offset {offset}")]
    UnexpectedObjectEnd {
        /// Offset of the marker.
        offset: usize,
    },
    /// An AMF3 reference to a table entry that does not exist (AMF3 spec §2.2).
    #[error("AMF3 {table} reference {index} out of range")]
    BadReference {
        /// Which table: `"string"`, `"object"` or `"traits"`.
        table: &'static str,
        /// The index that was referenced.
        index: usize,
    },
    /// An AMF3 reference to an object still being decoded (a cycle); cycles
    /// cannot be represented by the tree-shaped [`Amf0Value`].
    #[error("cyclic AMF3 object reference {0}")]
    CyclicReference(usize),
    /// An AMF3 feature this decoder deliberately does not support
    /// (externalizable objects, dictionaries).
    #[error("unsupported AMF3 feature: {0}")]
    Unsupported(&'static str),
}

/// Limits applied while decoding one message.
///
/// Defaults: depth 32, 16 384 elements, 8 MiB of strings. An RTMP command
/// takes a few dozen elements; `onMetaData` a few hundred at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Maximum number of nested containers (objects, arrays).
    pub max_depth: usize,
    /// Maximum number of values (including object properties) per decoder.
    pub max_elements: usize,
    /// Maximum total bytes of strings, keys and byte arrays materialized per
    /// decoder (copies made by resolving AMF3 references count again).
    pub max_bytes: usize,
}

impl DecodeLimits {
    /// The default limits (see the type documentation).
    pub const DEFAULT: DecodeLimits = DecodeLimits {
        max_depth: 32,
        max_elements: 16_384,
        max_bytes: 8 << 20,
    };
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Bounded big-endian cursor over untrusted bytes.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// A reader over the same input positioned at `pos`.
    pub(crate) fn at(&self, pos: usize) -> Reader<'a> {
        Reader { buf: self.buf, pos }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Takes `n` bytes or fails with [`AmfError::Truncated`] without moving.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], AmfError> {
        let end = self.pos.checked_add(n).ok_or(AmfError::Truncated {
            offset: self.pos,
            needed: n,
        })?;
        match self.buf.get(self.pos..end) {
            Some(s) => {
                self.pos = end;
                Ok(s)
            }
            None => Err(AmfError::Truncated {
                offset: self.pos,
                needed: n - self.remaining(),
            }),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], AmfError> {
        let s = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, AmfError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, AmfError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn i16(&mut self) -> Result<i16, AmfError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, AmfError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, AmfError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub(crate) fn f64(&mut self) -> Result<f64, AmfError> {
        Ok(f64::from_be_bytes(self.array()?))
    }

    /// `n` bytes as UTF-8, charged to `budget`.
    pub(crate) fn utf8(&mut self, n: usize, budget: &mut Budget) -> Result<String, AmfError> {
        let offset = self.pos;
        let s = self.bytes(n)?;
        budget.bytes(n)?;
        core::str::from_utf8(s)
            .map(str::to_owned)
            .map_err(|_| AmfError::InvalidUtf8 { offset })
    }
}

/// Running totals checked against [`DecodeLimits`].
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    pub(crate) limits: DecodeLimits,
    pub(crate) elements: usize,
    pub(crate) bytes: usize,
}

impl Budget {
    pub(crate) fn new(limits: DecodeLimits) -> Self {
        Budget {
            limits,
            elements: 0,
            bytes: 0,
        }
    }

    pub(crate) fn elements(&mut self, n: usize) -> Result<(), AmfError> {
        match self.elements.checked_add(n) {
            Some(t) if t <= self.limits.max_elements => {
                self.elements = t;
                Ok(())
            }
            _ => Err(AmfError::TooManyElements {
                max: self.limits.max_elements,
            }),
        }
    }

    pub(crate) fn elements_left(&self) -> usize {
        self.limits.max_elements.saturating_sub(self.elements)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<(), AmfError> {
        match self.bytes.checked_add(n) {
            Some(t) if t <= self.limits.max_bytes => {
                self.bytes = t;
                Ok(())
            }
            _ => Err(AmfError::TooManyBytes {
                max: self.limits.max_bytes,
            }),
        }
    }

    /// Fails when a container at `depth` (number of enclosing containers)
    /// would exceed the limit.
    pub(crate) fn enter(&self, depth: usize) -> Result<(), AmfError> {
        if depth >= self.limits.max_depth {
            Err(AmfError::DepthExceeded {
                max: self.limits.max_depth,
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
