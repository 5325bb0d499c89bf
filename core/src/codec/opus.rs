//! Opus helpers: the `OpusHead` identification header (RFC 7845 §5.1), the
//! canonical Opus config frame payload, and its ISOBMFF form `dOps`
//! (Opus-in-ISOBMFF §4.3.2).

use bytes::{BufMut, Bytes, BytesMut};

use super::{CodecError, Result};

/// The magic signature at the start of an `OpusHead`.
pub const MAGIC: &[u8; 8] = b"OpusHead";

/// An Opus identification header (RFC 7845 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusHead {
    /// `Version` (1; major version 0 is all that is defined).
    pub version: u8,
    /// `Output Channel Count` (1..=255).
    pub channels: u8,
    /// `Pre-skip` in 48 kHz samples.
    pub pre_skip: u16,
    /// `Input Sample Rate` (informational, Hz).
    pub input_sample_rate: u32,
    /// `Output Gain` (Q7.8 dB).
    pub output_gain: i16,
    /// `Channel Mapping Family`.
    pub mapping_family: u8,
    /// For family ≠ 0: stream count, coupled count and the mapping table.
    pub mapping: Option<ChannelMapping>,
}

/// The channel mapping table of an `OpusHead` with family ≠ 0 (RFC 7845 §5.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMapping {
    /// `Stream Count`.
    pub stream_count: u8,
    /// `Coupled Count`.
    pub coupled_count: u8,
    /// `Channel Mapping`, one byte per output channel.
    pub mapping: Vec<u8>,
}

impl OpusHead {
    /// A family-0 header for 1 or 2 channels at 48 kHz with the usual 312-sample pre-skip.
    pub fn new(channels: u8) -> Self {
        Self {
            version: 1,
            channels,
            pre_skip: 312,
            input_sample_rate: 48_000,
            output_gain: 0,
            mapping_family: 0,
            mapping: None,
        }
    }

    fn parse_common(
        channels: u8,
        mapping_family: u8,
        tail: &[u8],
    ) -> Result<Option<ChannelMapping>> {
        if channels == 0 {
            return Err(CodecError::Invalid {
                what: "Opus channel count",
                value: 0,
            });
        }
        if mapping_family == 0 {
            if channels > 2 {
                return Err(CodecError::Invalid {
                    what: "Opus channel count for mapping family 0",
                    value: u64::from(channels),
                });
            }
            return Ok(None);
        }
        let t = CodecError::Truncated {
            what: "Opus channel mapping table",
        };
        let stream_count = *tail.first().ok_or(t.clone())?;
        let coupled_count = *tail.get(1).ok_or(t.clone())?;
        let mapping = tail.get(2..2 + usize::from(channels)).ok_or(t)?.to_vec();
        if stream_count == 0 || coupled_count > stream_count {
            return Err(CodecError::Invalid {
                what: "Opus stream/coupled count",
                value: u64::from(stream_count),
            });
        }
        Ok(Some(ChannelMapping {
            stream_count,
            coupled_count,
            mapping,
        }))
    }

    /// Parses an `OpusHead` (little-endian, with the `OpusHead` magic).
    pub fn parse(data: &[u8]) -> Result<OpusHead> {
        if data.len() < 19 {
            return Err(CodecError::Truncated { what: "OpusHead" });
        }
        if data.get(..8) != Some(&MAGIC[..]) {
            return Err(CodecError::Missing("OpusHead magic"));
        }
        let b = |i: usize| data.get(i).copied().unwrap_or(0);
        let version = b(8);
        if version >> 4 != 0 {
            return Err(CodecError::Invalid {
                what: "OpusHead version",
                value: u64::from(version),
            });
        }
        let channels = b(9);
        let mapping_family = b(18);
        let mapping =
            Self::parse_common(channels, mapping_family, data.get(19..).unwrap_or_default())?;
        Ok(OpusHead {
            version,
            channels,
            pre_skip: u16::from_le_bytes([b(10), b(11)]),
            input_sample_rate: u32::from_le_bytes([b(12), b(13), b(14), b(15)]),
            output_gain: i16::from_le_bytes([b(16), b(17)]),
            mapping_family,
            mapping,
        })
    }

    /// Serializes the `OpusHead` (the canonical Opus config frame payload).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(21 + usize::from(self.channels));
        out.extend_from_slice(MAGIC);
        out.put_u8(self.version);
        out.put_u8(self.channels);
        out.put_u16_le(self.pre_skip);
        out.put_u32_le(self.input_sample_rate);
        out.put_i16_le(self.output_gain);
        out.put_u8(self.mapping_family);
        self.put_mapping(&mut out);
        out.freeze()
    }

    fn put_mapping(&self, out: &mut BytesMut) {
        if self.mapping_family != 0 {
            if let Some(m) = &self.mapping {
                out.put_u8(m.stream_count);
                out.put_u8(m.coupled_count);
                out.extend_from_slice(&m.mapping);
            }
        }
    }

    /// Parses a `dOps` box body (big-endian, version 0, no magic).
    pub fn from_dops(data: &[u8]) -> Result<OpusHead> {
        if data.len() < 11 {
            return Err(CodecError::Truncated { what: "dOps" });
        }
        let b = |i: usize| data.get(i).copied().unwrap_or(0);
        if b(0) != 0 {
            return Err(CodecError::Invalid {
                what: "dOps version",
                value: u64::from(b(0)),
            });
        }
        let channels = b(1);
        let mapping_family = b(10);
        let mapping =
            Self::parse_common(channels, mapping_family, data.get(11..).unwrap_or_default())?;
        Ok(OpusHead {
            version: 1,
            channels,
            pre_skip: u16::from_be_bytes([b(2), b(3)]),
            input_sample_rate: u32::from_be_bytes([b(4), b(5), b(6), b(7)]),
            output_gain: i16::from_be_bytes([b(8), b(9)]),
            mapping_family,
            mapping,
        })
    }

    /// Serializes the `dOps` box body for fMP4 (Opus-in-ISOBMFF §4.3.2).
    pub fn to_dops(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(13 + usize::from(self.channels));
        out.put_u8(0);
        out.put_u8(self.channels);
        out.put_u16(self.pre_skip);
        out.put_u32(self.input_sample_rate);
        out.put_i16(self.output_gain);
        out.put_u8(self.mapping_family);
        self.put_mapping(&mut out);
        out.freeze()
    }

    /// The RFC 6381 codec string (`opus`).
    pub fn codec_string(&self) -> &'static str {
        "opus"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// `OpusHead` of `ffmpeg -c:a libopus -ac 2 -f ogg` (48 kHz).
    const OPUS_HEAD_FFMPEG: &[u8] = &[
        0x4f, 0x70, 0x75, 0x73, 0x48, 0x65, 0x61, 0x64, 0x01, 0x02, 0x38, 0x01, 0x80, 0xbb, 0x00,
        0x00, 0x00, 0x00, 0x00,
    ];
    /// `dOps` of the same encoder settings in MP4.
    const DOPS_FFMPEG: &[u8] = &[
        0x00, 0x02, 0x01, 0x38, 0x00, 0x00, 0xbb, 0x80, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn ffmpeg_headers() {
        let h = OpusHead::parse(OPUS_HEAD_FFMPEG).unwrap();
        assert_eq!(h, OpusHead::new(2));
        assert_eq!(&h.to_bytes()[..], OPUS_HEAD_FFMPEG);
        assert_eq!(&h.to_dops()[..], DOPS_FFMPEG);
        assert_eq!(OpusHead::from_dops(DOPS_FFMPEG).unwrap(), h);
        for n in 0..OPUS_HEAD_FFMPEG.len() {
            assert!(OpusHead::parse(&OPUS_HEAD_FFMPEG[..n]).is_err());
        }
        assert!(OpusHead::parse(DOPS_FFMPEG).is_err());
    }

    #[test]
    fn surround_mapping() {
        let h = OpusHead {
            channels: 6,
            mapping_family: 1,
            mapping: Some(ChannelMapping {
                stream_count: 4,
                coupled_count: 2,
                mapping: vec![0, 4, 1, 2, 3, 5],
            }),
            ..OpusHead::new(2)
        };
        assert_eq!(OpusHead::parse(&h.to_bytes()).unwrap(), h);
        assert_eq!(OpusHead::from_dops(&h.to_dops()).unwrap(), h);
        let b = h.to_bytes();
        assert!(OpusHead::parse(&b[..b.len() - 1]).is_err());
        // Family 0 with 3 channels is invalid.
        let mut bad = OPUS_HEAD_FFMPEG.to_vec();
        bad[9] = 3;
        assert!(OpusHead::parse(&bad).is_err());
    }
}
