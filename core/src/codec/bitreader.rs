//! Bit-level reading and writing for codec headers: fixed-width fields,
//! Exp-Golomb codes (H.264 §9.1, H.265 §9.2) and emulation-prevention removal
//! (H.264 §7.4.1, H.265 §7.4.2).

use super::{CodecError, Result};

/// Reads bits MSB-first from a byte slice. Every read is bounds-checked and
/// fails with [`CodecError::Truncated`] past the end.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
    what: &'static str,
}

impl<'a> BitReader<'a> {
    /// A reader over `data`; `what` names the structure in errors.
    pub fn new(data: &'a [u8], what: &'static str) -> Self {
        Self { data, pos: 0, what }
    }

    /// Bits left to read.
    pub fn remaining(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    /// Position in bits.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn truncated(&self) -> CodecError {
        CodecError::Truncated { what: self.what }
    }

    /// Reads one bit.
    pub fn read_bit(&mut self) -> Result<bool> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or_else(|| self.truncated())?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// Reads a flag (`u(1)`).
    pub fn read_flag(&mut self) -> Result<bool> {
        self.read_bit()
    }

    /// Reads `n` bits (`n <= 32`) as an unsigned value (`u(n)`).
    pub fn read_bits(&mut self, n: u32) -> Result<u32> {
        if n > 32 {
            return Err(CodecError::Invalid {
                what: "bit count",
                value: u64::from(n),
            });
        }
        if self.remaining() < n as usize {
            return Err(self.truncated());
        }
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.read_bit()?);
        }
        Ok(v as u32)
    }

    /// Reads `n` bits (`n <= 64`) as an unsigned value.
    pub fn read_bits_u64(&mut self, n: u32) -> Result<u64> {
        if n > 64 {
            return Err(CodecError::Invalid {
                what: "bit count",
                value: u64::from(n),
            });
        }
        if self.remaining() < n as usize {
            return Err(self.truncated());
        }
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.read_bit()?);
        }
        Ok(v)
    }

    /// Skips `n` bits.
    pub fn skip_bits(&mut self, n: usize) -> Result<()> {
        if self.remaining() < n {
            return Err(self.truncated());
        }
        self.pos += n;
        Ok(())
    }

    /// Reads an unsigned Exp-Golomb code (`ue(v)`, H.264 §9.1). Codes longer
    /// than 32 leading zeros are rejected.
    pub fn read_ue(&mut self) -> Result<u32> {
        let mut zeros = 0u32;
        while !self.read_bit()? {
            zeros += 1;
            if zeros > 31 {
                return Err(CodecError::Invalid {
                    what: "exp-golomb prefix",
                    value: u64::from(zeros),
                });
            }
        }
        let rest = u64::from(self.read_bits(zeros)?);
        let v = (1u64 << zeros) - 1 + rest;
        u32::try_from(v).map_err(|_| CodecError::Invalid {
            what: "exp-golomb value",
            value: v,
        })
    }

    /// Reads a signed Exp-Golomb code (`se(v)`, H.264 §9.1.1).
    pub fn read_se(&mut self) -> Result<i32> {
        let k = i64::from(self.read_ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        Ok(v as i32)
    }
}

/// Writes bits MSB-first into a growable buffer.
#[derive(Debug, Clone, Default)]
pub struct BitWriter {
    out: Vec<u8>,
    /// Bits used in the last byte (0 = byte aligned).
    used: u32,
}

impl BitWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one bit.
    pub fn put_bit(&mut self, bit: bool) {
        if self.used == 0 {
            self.out.push(0);
        }
        if bit {
            if let Some(last) = self.out.last_mut() {
                *last |= 1 << (7 - self.used);
            }
        }
        self.used = (self.used + 1) % 8;
    }

    /// Appends the low `n` bits of `v` (`n <= 64`), MSB first.
    pub fn put_bits(&mut self, v: u64, n: u32) {
        for i in (0..n.min(64)).rev() {
            self.put_bit((v >> i) & 1 == 1);
        }
    }

    /// The bytes written; a partial last byte is zero-padded.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`) from a NAL unit
/// payload (H.264 §7.4.1.1, H.265 §7.4.2). Output is never longer than input.
pub fn remove_emulation_prevention(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0usize;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        if b == 0 {
            zeros += 1;
        } else {
            zeros = 0;
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> ue 0,1,2,3,4
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data, "t");
        assert_eq!(r.read_ue().unwrap(), 0);
        assert_eq!(r.read_ue().unwrap(), 1);
        assert_eq!(r.read_ue().unwrap(), 2);
        assert_eq!(r.read_ue().unwrap(), 3);
        assert_eq!(r.read_ue().unwrap(), 4);
        assert!(r.read_ue().is_err());
    }

    #[test]
    fn signed_exp_golomb() {
        // ue 1 -> +1, ue 2 -> -1, ue 3 -> +2
        let data = [0b0100_1100, 0b1000_0000];
        let mut r = BitReader::new(&data, "t");
        assert_eq!(r.read_se().unwrap(), 1);
        assert_eq!(r.read_se().unwrap(), -1);
        assert_eq!(r.read_se().unwrap(), 2);
    }

    #[test]
    fn long_prefix_rejected() {
        let data = [0u8; 8];
        assert!(BitReader::new(&data, "t").read_ue().is_err());
        let data = [0u8, 0, 0, 0, 0x80, 0, 0, 0, 0];
        // 32 zeros then a 1: value does not fit 32 bits
        assert!(BitReader::new(&data, "t").read_ue().is_err());
    }

    #[test]
    fn bits_and_bounds() {
        let data = [0xAB, 0xCD];
        let mut r = BitReader::new(&data, "t");
        assert_eq!(r.read_bits(4).unwrap(), 0xA);
        assert_eq!(r.read_bits(8).unwrap(), 0xBC);
        assert_eq!(r.remaining(), 4);
        assert!(r.read_bits(5).is_err());
        assert_eq!(r.read_bits(4).unwrap(), 0xD);
        assert!(r.read_bit().is_err());
    }

    #[test]
    fn epb_removal() {
        assert_eq!(
            remove_emulation_prevention(&[0, 0, 3, 1, 0, 0, 3, 0, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 0]
        );
        assert_eq!(
            remove_emulation_prevention(&[0, 3, 0, 0, 3]),
            vec![0, 3, 0, 0]
        );
    }

    #[test]
    fn writer_round_trip() {
        let mut w = BitWriter::new();
        w.put_bits(0b10110, 5);
        w.put_bits(0x3FF, 10);
        w.put_bit(true);
        let out = w.finish();
        let mut r = BitReader::new(&out, "t");
        assert_eq!(r.read_bits(5).unwrap(), 0b10110);
        assert_eq!(r.read_bits(10).unwrap(), 0x3FF);
        assert!(r.read_bit().unwrap());
    }
}
