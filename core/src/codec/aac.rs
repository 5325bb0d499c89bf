//! AAC helpers: `AudioSpecificConfig` (ISO/IEC 14496-3 §1.6.2.1), ADTS
//! headers (ISO/IEC 14496-3 §1.A.2.2) and RFC 6381 codec strings
//! (`mp4a.40.<audioObjectType>`, RFC 6381 §3.3).

use bytes::Bytes;

use super::bitreader::{BitReader, BitWriter};
use super::{CodecError, Result};

/// `samplingFrequencyIndex` → Hz (ISO/IEC 14496-3 Table 1.18); index 15 means explicit.
pub const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Audio object type of AAC LC.
pub const AOT_AAC_LC: u8 = 2;
/// Audio object type of SBR (HE-AAC).
pub const AOT_SBR: u8 = 5;
/// Audio object type of PS (HE-AAC v2).
pub const AOT_PS: u8 = 29;

/// The `samplingFrequencyIndex` of `rate`, when it is in the table.
pub fn sampling_index(rate: u32) -> Option<u8> {
    SAMPLE_RATES
        .iter()
        .position(|r| *r == rate)
        .map(|i| i as u8)
}

/// A parsed `AudioSpecificConfig` (the leading fields that muxers need).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// `audioObjectType` as signalled (5 / 29 for explicit HE-AAC).
    pub object_type: u8,
    /// Core sampling rate in Hz (`samplingFrequencyIndex` or the explicit 24-bit value).
    pub sampling_frequency: u32,
    /// `channelConfiguration` (0 = defined in a PCE).
    pub channel_config: u8,
    /// For explicit SBR/PS: the underlying object type (usually 2); else `object_type`.
    pub core_object_type: u8,
    /// For explicit SBR/PS: the output (extension) sampling rate.
    pub extension_frequency: Option<u32>,
}

fn read_object_type(r: &mut BitReader<'_>) -> Result<u8> {
    let aot = r.read_bits(5)? as u8;
    Ok(if aot == 31 {
        32 + r.read_bits(6)? as u8
    } else {
        aot
    })
}

fn read_frequency(r: &mut BitReader<'_>) -> Result<u32> {
    let idx = r.read_bits(4)?;
    if idx == 15 {
        let f = r.read_bits(24)?;
        if f == 0 {
            return Err(CodecError::Invalid {
                what: "samplingFrequency",
                value: 0,
            });
        }
        return Ok(f);
    }
    SAMPLE_RATES
        .get(idx as usize)
        .copied()
        .ok_or(CodecError::Invalid {
            what: "samplingFrequencyIndex",
            value: u64::from(idx),
        })
}

impl AacConfig {
    /// A plain config for `object_type` (e.g. [`AOT_AAC_LC`]) at `rate` Hz with `channels`.
    pub fn new(object_type: u8, rate: u32, channels: u8) -> Self {
        Self {
            object_type,
            sampling_frequency: rate,
            channel_config: channels,
            core_object_type: object_type,
            extension_frequency: None,
        }
    }

    /// Parses an `AudioSpecificConfig`. Trailing fields (GASpecificConfig,
    /// sync extensions) are not interpreted.
    pub fn parse(data: &[u8]) -> Result<AacConfig> {
        let mut r = BitReader::new(data, "AudioSpecificConfig");
        let object_type = read_object_type(&mut r)?;
        if object_type == 0 {
            return Err(CodecError::Invalid {
                what: "audioObjectType",
                value: 0,
            });
        }
        let sampling_frequency = read_frequency(&mut r)?;
        let channel_config = r.read_bits(4)? as u8;
        if channel_config > 7
            && channel_config != 11
            && channel_config != 12
            && channel_config != 14
        {
            return Err(CodecError::Invalid {
                what: "channelConfiguration",
                value: u64::from(channel_config),
            });
        }
        let mut core_object_type = object_type;
        let mut extension_frequency = None;
        if object_type == AOT_SBR || object_type == AOT_PS {
            extension_frequency = Some(read_frequency(&mut r)?);
            core_object_type = read_object_type(&mut r)?;
        }
        Ok(AacConfig {
            object_type,
            sampling_frequency,
            channel_config,
            core_object_type,
            extension_frequency,
        })
    }

    /// Serializes a minimal `AudioSpecificConfig` (with an all-zero
    /// GASpecificConfig for the AAC object types 1..=4, 6, 7, 17, 19..=23).
    pub fn to_bytes(&self) -> Bytes {
        let mut w = BitWriter::new();
        let put_aot = |w: &mut BitWriter, aot: u8| {
            if aot >= 31 {
                w.put_bits(31, 5);
                w.put_bits(u64::from(aot - 32), 6);
            } else {
                w.put_bits(u64::from(aot), 5);
            }
        };
        let put_freq = |w: &mut BitWriter, f: u32| match sampling_index(f) {
            Some(i) => w.put_bits(u64::from(i), 4),
            None => {
                w.put_bits(15, 4);
                w.put_bits(u64::from(f), 24);
            }
        };
        put_aot(&mut w, self.object_type);
        put_freq(&mut w, self.sampling_frequency);
        w.put_bits(u64::from(self.channel_config), 4);
        if let Some(ext) = self.extension_frequency {
            put_freq(&mut w, ext);
            put_aot(&mut w, self.core_object_type);
        }
        if matches!(self.core_object_type, 1..=4 | 6 | 7 | 17 | 19..=23) {
            // frameLengthFlag, dependsOnCoreCoder, extensionFlag.
            w.put_bits(0, 3);
        }
        Bytes::from(w.finish())
    }

    /// The output sampling rate (the extension rate for explicit HE-AAC).
    pub fn output_rate(&self) -> u32 {
        self.extension_frequency.unwrap_or(self.sampling_frequency)
    }

    /// Samples per channel in one access unit at the core rate: 1024 (the
    /// 960-sample `frameLengthFlag` framing is not read).
    pub fn samples_per_frame(&self) -> u32 {
        1024
    }

    /// The RFC 6381 codec string, e.g. `mp4a.40.2` (RFC 6381 §3.3).
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// Builds a 7-byte ADTS header (no CRC) for an access unit of
    /// `payload_len` bytes. ADTS can only carry object types 1..=4, a rate in
    /// the index table and channel configurations 0..=7.
    pub fn adts_header(&self, payload_len: usize) -> Result<[u8; 7]> {
        let profile = self.core_object_type;
        if !(1..=4).contains(&profile) {
            return Err(CodecError::Invalid {
                what: "ADTS profile (audioObjectType)",
                value: u64::from(profile),
            });
        }
        let sfi = sampling_index(self.sampling_frequency).ok_or(CodecError::Invalid {
            what: "ADTS sampling rate",
            value: u64::from(self.sampling_frequency),
        })?;
        if self.channel_config > 7 {
            return Err(CodecError::Invalid {
                what: "ADTS channel configuration",
                value: u64::from(self.channel_config),
            });
        }
        let len = payload_len + 7;
        if len > 0x1FFF {
            return Err(CodecError::TooLarge {
                what: "ADTS frame",
                limit: 0x1FFF,
            });
        }
        let ch = self.channel_config;
        Ok([
            0xFF,
            0xF1, // MPEG-4, layer 0, protection absent
            ((profile - 1) << 6) | (sfi << 2) | (ch >> 2),
            ((ch & 3) << 6) | ((len >> 11) as u8 & 3),
            (len >> 3) as u8,
            (((len & 7) as u8) << 5) | 0x1F,
            0xFC, // buffer fullness 0x7FF (VBR), one raw data block
        ])
    }
}

/// A parsed ADTS header (ISO/IEC 14496-3 §1.A.2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// `audioObjectType` (profile + 1).
    pub object_type: u8,
    /// `sampling_frequency_index` (0..=12).
    pub sampling_index: u8,
    /// `channel_configuration`.
    pub channel_config: u8,
    /// Header length: 7, or 9 with CRC.
    pub header_len: usize,
    /// `frame_length`: header + payload bytes.
    pub frame_len: usize,
    /// `number_of_raw_data_blocks_in_frame` + 1.
    pub raw_blocks: u8,
}

impl AdtsHeader {
    /// Parses the ADTS header at the start of `data` (needs 7 bytes; the
    /// payload need not be present).
    pub fn parse(data: &[u8]) -> Result<AdtsHeader> {
        let h = data.get(..7).ok_or(CodecError::Truncated {
            what: "ADTS header",
        })?;
        let b = |i: usize| h.get(i).copied().unwrap_or(0);
        if b(0) != 0xFF || b(1) & 0xF6 != 0xF0 {
            return Err(CodecError::Missing("ADTS syncword"));
        }
        let header_len = if b(1) & 1 == 1 { 7 } else { 9 };
        let sampling_index = (b(2) >> 2) & 0x0F;
        if usize::from(sampling_index) >= SAMPLE_RATES.len() {
            return Err(CodecError::Invalid {
                what: "ADTS sampling_frequency_index",
                value: u64::from(sampling_index),
            });
        }
        let frame_len =
            (usize::from(b(3) & 3) << 11) | (usize::from(b(4)) << 3) | usize::from(b(5) >> 5);
        if frame_len < header_len {
            return Err(CodecError::Invalid {
                what: "ADTS frame_length",
                value: frame_len as u64,
            });
        }
        Ok(AdtsHeader {
            object_type: (b(2) >> 6) + 1,
            sampling_index,
            channel_config: ((b(2) & 1) << 2) | (b(3) >> 6),
            header_len,
            frame_len,
            raw_blocks: (b(6) & 3) + 1,
        })
    }

    /// The sampling rate in Hz.
    pub fn sampling_frequency(&self) -> u32 {
        SAMPLE_RATES
            .get(usize::from(self.sampling_index))
            .copied()
            .unwrap_or(0)
    }

    /// The `AudioSpecificConfig` this header implies.
    pub fn to_config(&self) -> AacConfig {
        AacConfig::new(
            self.object_type,
            self.sampling_frequency(),
            self.channel_config,
        )
    }
}

/// Iterates the ADTS frames of `data` (e.g. one MPEG-TS PES payload),
/// yielding each header and its raw AAC payload (zero-copy). Stops after the
/// first error (bad sync, truncated frame, CRC-protected multi-block frame).
pub fn iter_adts(data: &Bytes) -> AdtsIter<'_> {
    AdtsIter {
        data,
        pos: 0,
        failed: false,
    }
}

/// Iterator returned by [`iter_adts`].
#[derive(Debug, Clone)]
pub struct AdtsIter<'a> {
    data: &'a Bytes,
    pos: usize,
    failed: bool,
}

impl Iterator for AdtsIter<'_> {
    type Item = Result<(AdtsHeader, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let r = AdtsHeader::parse(rest).and_then(|h| {
            if rest.len() < h.frame_len {
                return Err(CodecError::Truncated { what: "ADTS frame" });
            }
            if h.header_len == 9 && h.raw_blocks > 1 {
                return Err(CodecError::Invalid {
                    what: "ADTS raw data blocks with CRC",
                    value: u64::from(h.raw_blocks),
                });
            }
            let payload = self
                .data
                .slice(self.pos + h.header_len..self.pos + h.frame_len);
            self.pos += h.frame_len;
            Ok((h, payload))
        });
        self.failed = r.is_err();
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// The ASC in the `esds` ffmpeg's AAC encoder writes for 44.1 kHz stereo
    /// (LC, then the backward-compatible SBR sync extension 0x2b7).
    const ASC_FFMPEG_44K_STEREO: &[u8] = &[0x12, 0x10, 0x56, 0xe5, 0x00];
    /// The first two ADTS headers of `ffmpeg -f lavfi -i sine=...:sample_rate=48000 -c:a aac -f adts`.
    const ADTS_48K_MONO: &[u8] = &[0xff, 0xf1, 0x4c, 0x40, 0x1b, 0x7f, 0xfc];
    const ADTS_48K_MONO_2: &[u8] = &[0xff, 0xf1, 0x4c, 0x40, 0x23, 0xff, 0xfc];

    #[test]
    fn asc_from_ffmpeg() {
        let c = AacConfig::parse(ASC_FFMPEG_44K_STEREO).unwrap();
        assert_eq!(c, AacConfig::new(2, 44100, 2));
        assert_eq!(c.codec_string(), "mp4a.40.2");
        assert_eq!(&c.to_bytes()[..], &[0x12, 0x10]);
        assert!(AacConfig::parse(&[0x12]).is_err());
        assert!(AacConfig::parse(&[]).is_err());
        assert!(AacConfig::parse(&[0x00, 0x00]).is_err());
    }

    #[test]
    fn asc_explicit_frequency_and_he_aac() {
        // LC, explicit 24-bit 50 kHz, mono.
        let c = AacConfig::new(2, 50_000, 1);
        let b = c.to_bytes();
        assert_eq!(AacConfig::parse(&b).unwrap(), c);
        // Explicit HE-AAC: SBR, core 24 kHz, stereo, ext 48 kHz, core LC.
        let he = AacConfig {
            object_type: AOT_SBR,
            sampling_frequency: 24_000,
            channel_config: 2,
            core_object_type: 2,
            extension_frequency: Some(48_000),
        };
        let b = he.to_bytes();
        assert_eq!(&b[..3], &[0x2B, 0x11, 0x88]);
        let p = AacConfig::parse(&b).unwrap();
        assert_eq!(p, he);
        assert_eq!(
            (p.output_rate(), p.codec_string()),
            (48_000, "mp4a.40.5".to_string())
        );
        // Escape object type (AOT 42 = USAC via 31 + 10).
        let usac = AacConfig::new(42, 48_000, 2);
        assert_eq!(AacConfig::parse(&usac.to_bytes()).unwrap().object_type, 42);
    }

    #[test]
    fn adts_from_ffmpeg() {
        let h = AdtsHeader::parse(ADTS_48K_MONO).unwrap();
        assert_eq!(
            (h.object_type, h.sampling_frequency(), h.channel_config),
            (2, 48000, 1)
        );
        assert_eq!((h.header_len, h.frame_len, h.raw_blocks), (7, 219, 1));
        let h2 = AdtsHeader::parse(ADTS_48K_MONO_2).unwrap();
        assert_eq!(h2.frame_len, 287);
        // Building the header back gives ffmpeg's bytes.
        let cfg = h.to_config();
        assert_eq!(&cfg.adts_header(219 - 7).unwrap()[..], ADTS_48K_MONO);
        assert_eq!(&cfg.adts_header(287 - 7).unwrap()[..], ADTS_48K_MONO_2);
        assert!(cfg.adts_header(0x2000).is_err());
        assert!(AacConfig::new(2, 50_000, 1).adts_header(10).is_err());
        assert!(AdtsHeader::parse(&ADTS_48K_MONO[..6]).is_err());
        // Two frames back to back, then a truncated third.
        let mut stream = Vec::new();
        stream.extend_from_slice(&cfg.adts_header(3).unwrap());
        stream.extend_from_slice(&[1, 2, 3]);
        stream.extend_from_slice(&cfg.adts_header(2).unwrap());
        stream.extend_from_slice(&[4, 5]);
        stream.extend_from_slice(&cfg.adts_header(9).unwrap());
        stream.extend_from_slice(&[6]);
        let stream = Bytes::from(stream);
        let frames: Vec<_> = iter_adts(&stream).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(&frames[0].as_ref().unwrap().1[..], &[1, 2, 3]);
        assert_eq!(&frames[1].as_ref().unwrap().1[..], &[4, 5]);
        assert!(frames[2].is_err());
        assert!(AdtsHeader::parse(&[0xFF, 0xF1, 0x7c, 0x40, 0x1b, 0x7f, 0xfc]).is_err());
        assert!(AdtsHeader::parse(&[0xFE, 0xF1, 0x4c, 0x40, 0x1b, 0x7f, 0xfc]).is_err());
    }
}
