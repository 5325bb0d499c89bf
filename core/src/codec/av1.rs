//! AV1 helpers: the `AV1CodecConfigurationRecord` (AV1-ISOBMFF §2.3.3) and
//! its RFC 6381 codec string (AV1-ISOBMFF Annex A, `av01.P.LLT.DD`).

use bytes::{BufMut, Bytes, BytesMut};

use super::{CodecError, Result};

/// OBU type of a sequence header (AV1 §6.2.2).
pub const OBU_SEQUENCE_HEADER: u8 = 1;
/// OBU type of a temporal delimiter.
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;

/// The `obu_type` of an OBU whose header byte is `b0` (AV1 §5.3.2).
pub const fn obu_type(b0: u8) -> u8 {
    (b0 >> 3) & 0x0F
}

/// `AV1CodecConfigurationRecord` (AV1-ISOBMFF §2.3.3): the canonical AV1
/// config frame payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Av1Config {
    /// `seq_profile` (3 bits).
    pub seq_profile: u8,
    /// `seq_level_idx_0` (5 bits).
    pub seq_level_idx_0: u8,
    /// `seq_tier_0`.
    pub seq_tier_0: bool,
    /// `high_bitdepth`.
    pub high_bitdepth: bool,
    /// `twelve_bit`.
    pub twelve_bit: bool,
    /// `monochrome`.
    pub monochrome: bool,
    /// `chroma_subsampling_x`.
    pub chroma_subsampling_x: bool,
    /// `chroma_subsampling_y`.
    pub chroma_subsampling_y: bool,
    /// `chroma_sample_position` (2 bits).
    pub chroma_sample_position: u8,
    /// `initial_presentation_delay_minus_one`, when present.
    pub initial_presentation_delay_minus_one: Option<u8>,
    /// `configOBUs`: the sequence header OBU (and metadata OBUs).
    pub config_obus: Bytes,
}

impl Av1Config {
    /// Parses a record; `config_obus` is a zero-copy slice of `data`.
    pub fn parse(data: &Bytes) -> Result<Av1Config> {
        let h = data.get(..4).ok_or(CodecError::Truncated {
            what: "AV1CodecConfigurationRecord",
        })?;
        let b = |i: usize| h.get(i).copied().unwrap_or(0);
        if b(0) != 0x81 {
            return Err(CodecError::Invalid {
                what: "av1C marker/version",
                value: u64::from(b(0)),
            });
        }
        Ok(Av1Config {
            seq_profile: b(1) >> 5,
            seq_level_idx_0: b(1) & 0x1F,
            seq_tier_0: b(2) & 0x80 != 0,
            high_bitdepth: b(2) & 0x40 != 0,
            twelve_bit: b(2) & 0x20 != 0,
            monochrome: b(2) & 0x10 != 0,
            chroma_subsampling_x: b(2) & 0x08 != 0,
            chroma_subsampling_y: b(2) & 0x04 != 0,
            chroma_sample_position: b(2) & 3,
            initial_presentation_delay_minus_one: (b(3) & 0x10 != 0).then_some(b(3) & 0x0F),
            config_obus: data.slice(4..),
        })
    }

    /// Serializes the record.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(4 + self.config_obus.len());
        out.put_u8(0x81);
        out.put_u8(((self.seq_profile & 7) << 5) | (self.seq_level_idx_0 & 0x1F));
        out.put_u8(
            (u8::from(self.seq_tier_0) << 7)
                | (u8::from(self.high_bitdepth) << 6)
                | (u8::from(self.twelve_bit) << 5)
                | (u8::from(self.monochrome) << 4)
                | (u8::from(self.chroma_subsampling_x) << 3)
                | (u8::from(self.chroma_subsampling_y) << 2)
                | (self.chroma_sample_position & 3),
        );
        out.put_u8(match self.initial_presentation_delay_minus_one {
            Some(d) => 0x10 | (d & 0x0F),
            None => 0,
        });
        out.extend_from_slice(&self.config_obus);
        out.freeze()
    }

    /// Bits per sample: 8, 10 or 12.
    pub fn bit_depth(&self) -> u8 {
        match (self.high_bitdepth, self.twelve_bit) {
            (true, true) => 12,
            (true, false) => 10,
            _ => 8,
        }
    }

    /// The short RFC 6381 codec string, e.g. `av01.0.04M.08`.
    pub fn codec_string(&self) -> String {
        format!(
            "av01.{}.{:02}{}.{:02}",
            self.seq_profile,
            self.seq_level_idx_0,
            if self.seq_tier_0 { 'H' } else { 'M' },
            self.bit_depth()
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// `av1C` written by ffmpeg for libsvtav1 640x360 yuv420p (Main, level 2.1).
    const AV1C_SVT: &[u8] = &[
        0x81, 0x01, 0x0c, 0x00, 0x0a, 0x0b, 0x00, 0x00, 0x00, 0x0c, 0xc4, 0xff, 0x67, 0x00, 0xbe,
        0x00, 0x10,
    ];

    #[test]
    fn svt_record() {
        let c = Av1Config::parse(&Bytes::from_static(AV1C_SVT)).unwrap();
        assert_eq!(
            (c.seq_profile, c.seq_level_idx_0, c.seq_tier_0),
            (0, 1, false)
        );
        assert!(c.chroma_subsampling_x && c.chroma_subsampling_y && !c.monochrome);
        assert_eq!(c.bit_depth(), 8);
        assert_eq!(obu_type(c.config_obus[0]), OBU_SEQUENCE_HEADER);
        assert_eq!(c.codec_string(), "av01.0.01M.08");
        assert_eq!(&c.to_bytes()[..], AV1C_SVT);
        assert!(Av1Config::parse(&Bytes::from_static(&AV1C_SVT[..3])).is_err());
        assert!(Av1Config::parse(&Bytes::from_static(&[0x01, 0, 0, 0])).is_err());
    }
}
