//! H.265 / HEVC helpers: NAL unit types (H.265 §7.4.2.2), SPS parsing
//! (H.265 §7.3.2.2), the `HEVCDecoderConfigurationRecord`
//! (ISO/IEC 14496-15 §8.3.3) and RFC 6381 codec strings (ISO/IEC 14496-15
//! Annex E.3). Annex-B ↔ length-prefixed conversion is shared with H.264.

use bytes::{BufMut, Bytes, BytesMut};

use super::bitreader::{remove_emulation_prevention, BitReader};
use super::{read_be, CodecError, Result, MAX_PARAM_SETS};

pub use super::h264::{annex_b_to_avcc, avcc_to_annex_b, iter_length_prefixed, split_annex_b};

/// `nal_unit_type` of a VPS (H.265 Table 7-1).
pub const NAL_VPS: u8 = 32;
/// `nal_unit_type` of an SPS.
pub const NAL_SPS: u8 = 33;
/// `nal_unit_type` of a PPS.
pub const NAL_PPS: u8 = 34;
/// `nal_unit_type` of an access unit delimiter.
pub const NAL_AUD: u8 = 35;
/// `nal_unit_type` of a prefix SEI.
pub const NAL_SEI_PREFIX: u8 = 39;
/// `nal_unit_type` of a suffix SEI.
pub const NAL_SEI_SUFFIX: u8 = 40;

/// The `nal_unit_type` of a NAL unit whose first header byte is `b0` (H.265 §7.3.1.2).
pub const fn nal_type(b0: u8) -> u8 {
    (b0 >> 1) & 0x3F
}

/// `nal_unit_type` of a RADL picture that is not a reference (RADL_N, H.265 Table 7-1).
pub const NAL_RADL_N: u8 = 6;
/// `nal_unit_type` of a RADL picture used for reference (RADL_R).
pub const NAL_RADL_R: u8 = 7;
/// `nal_unit_type` of a RASL picture that is not a reference (RASL_N).
pub const NAL_RASL_N: u8 = 8;
/// `nal_unit_type` of a RASL picture used for reference (RASL_R).
pub const NAL_RASL_R: u8 = 9;
/// `nal_unit_type` of a BLA picture that may have RASL and RADL leading pictures (BLA_W_LP).
pub const NAL_BLA_W_LP: u8 = 16;
/// `nal_unit_type` of a BLA picture that may have RADL leading pictures (BLA_W_RADL).
pub const NAL_BLA_W_RADL: u8 = 17;
/// `nal_unit_type` of a BLA picture without leading pictures (BLA_N_LP).
pub const NAL_BLA_N_LP: u8 = 18;
/// `nal_unit_type` of an IDR picture that may have RADL leading pictures (IDR_W_RADL).
pub const NAL_IDR_W_RADL: u8 = 19;
/// `nal_unit_type` of an IDR picture without leading pictures (IDR_N_LP).
pub const NAL_IDR_N_LP: u8 = 20;
/// `nal_unit_type` of a CRA picture (CRA_NUT): x265's periodic keyframe in
/// its default open-GOP mode, usually followed by RASL pictures.
pub const NAL_CRA: u8 = 21;

/// Whether `nal_type` is an IRAP picture (BLA, IDR, CRA and the reserved
/// IRAP types 22/23: 16..=23, H.265 §3.73 / Table 7-1).
///
/// Every IRAP picture is a random access point: a decoder that starts at a
/// CRA or BLA picture decodes it with `NoRaslOutputFlag` = 1 and drops its
/// associated RASL pictures (§8.1.3, §8.3.1), so arcly makes every IRAP
/// access unit a keyframe (a start point for a new viewer, an HLS segment
/// cut).
pub const fn is_irap(nal_type: u8) -> bool {
    nal_type >= 16 && nal_type <= 23
}

/// Whether `nal_type` is a RASL picture (random access skipped leading,
/// H.265 §3.116): it may reference pictures before its associated IRAP
/// picture in decode order and is not decodable when decoding starts there.
pub const fn is_rasl(nal_type: u8) -> bool {
    nal_type == NAL_RASL_N || nal_type == NAL_RASL_R
}

/// Whether `nal_type` is a RADL picture (random access decodable leading,
/// H.265 §3.113): a leading picture that references only its IRAP picture
/// and other RADL pictures, so it is decodable from the IRAP picture on.
pub const fn is_radl(nal_type: u8) -> bool {
    nal_type == NAL_RADL_N || nal_type == NAL_RADL_R
}

/// Whether `nal_type` is a VCL NAL unit type (0..=31, H.265 Table 7-1).
pub const fn is_vcl(nal_type: u8) -> bool {
    nal_type < 32
}

/// The `nal_unit_type` of the first VCL NAL unit of a 4-byte length-prefixed
/// access unit: the picture's type (all VCL NAL units of a picture share it,
/// H.265 §7.4.2.2). `None` without one or on malformed input.
pub fn hvcc_picture_type(data: &[u8]) -> Option<u8> {
    iter_length_prefixed(data, 4)
        .map_while(|n| n.ok())
        .filter_map(|n| n.first().map(|h| nal_type(*h)))
        .find(|t| is_vcl(*t))
}

/// Whether a 4-byte length-prefixed access unit contains an IRAP picture.
/// Malformed input yields `false`.
pub fn hvcc_has_irap(data: &[u8]) -> bool {
    iter_length_prefixed(data, 4)
        .map_while(|n| n.ok())
        .any(|n| n.first().is_some_and(|h| is_irap(nal_type(*h))))
}

/// The general profile/tier/level (H.265 §7.3.3), as carried in the SPS and
/// the configuration record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProfileTierLevel {
    /// `general_profile_space` (2 bits).
    pub profile_space: u8,
    /// `general_tier_flag`.
    pub tier: bool,
    /// `general_profile_idc` (5 bits).
    pub profile_idc: u8,
    /// `general_profile_compatibility_flag[0..32]`, flag 0 in the MSB.
    pub compatibility_flags: u32,
    /// The 48 bits from `general_progressive_source_flag` on.
    pub constraint_flags: u64,
    /// `general_level_idc`.
    pub level_idc: u8,
}

impl ProfileTierLevel {
    /// The RFC 6381 codec string with the given sample entry (`hvc1` / `hev1`),
    /// e.g. `hvc1.1.6.L93.B0` (ISO/IEC 14496-15 Annex E.3).
    pub fn codec_string(&self, entry: &str) -> String {
        let space = match self.profile_space {
            1 => "A",
            2 => "B",
            3 => "C",
            _ => "",
        };
        let mut s = format!(
            "{entry}.{space}{}.{:X}.{}{}",
            self.profile_idc,
            self.compatibility_flags.reverse_bits(),
            if self.tier { 'H' } else { 'L' },
            self.level_idc
        );
        let bytes = self.constraint_flags.to_be_bytes();
        let cons = bytes.get(2..).unwrap_or_default();
        let keep = cons.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        for b in cons.iter().take(keep) {
            s.push_str(&format!(".{b:X}"));
        }
        s
    }
}

/// Fields of an H.265 SPS (H.265 §7.3.2.2.1) that muxers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sps {
    /// `sps_max_sub_layers_minus1`.
    pub max_sub_layers_minus1: u8,
    /// `sps_temporal_id_nesting_flag`.
    pub temporal_id_nesting: bool,
    /// General profile, tier and level.
    pub ptl: ProfileTierLevel,
    /// `chroma_format_idc`.
    pub chroma_format_idc: u32,
    /// `bit_depth_luma_minus8`.
    pub bit_depth_luma_minus8: u32,
    /// `bit_depth_chroma_minus8`.
    pub bit_depth_chroma_minus8: u32,
    /// Display width after the conformance window.
    pub width: u32,
    /// Display height after the conformance window.
    pub height: u32,
}

fn read_ptl(r: &mut BitReader<'_>, max_sub_layers_minus1: u8) -> Result<ProfileTierLevel> {
    let profile_space = r.read_bits(2)? as u8;
    let tier = r.read_flag()?;
    let profile_idc = r.read_bits(5)? as u8;
    let compatibility_flags = r.read_bits(32)?;
    let constraint_flags = r.read_bits_u64(48)?;
    let level_idc = r.read_bits(8)? as u8;
    let mut profile_present = [false; 8];
    let mut level_present = [false; 8];
    let n = usize::from(max_sub_layers_minus1);
    for i in 0..n {
        if let (Some(p), Some(l)) = (profile_present.get_mut(i), level_present.get_mut(i)) {
            *p = r.read_flag()?;
            *l = r.read_flag()?;
        }
    }
    if n > 0 {
        r.skip_bits(2 * (8 - n))?;
    }
    for i in 0..n {
        if profile_present.get(i) == Some(&true) {
            r.skip_bits(88)?;
        }
        if level_present.get(i) == Some(&true) {
            r.skip_bits(8)?;
        }
    }
    Ok(ProfileTierLevel {
        profile_space,
        tier,
        profile_idc,
        compatibility_flags,
        constraint_flags,
        level_idc,
    })
}

impl Sps {
    /// Parses an SPS NAL unit (with its 2-byte NAL header, emulation prevention in place).
    pub fn parse(nal: &[u8]) -> Result<Sps> {
        let b0 = *nal.first().ok_or(CodecError::Truncated { what: "SPS" })?;
        if nal_type(b0) != NAL_SPS {
            return Err(CodecError::Invalid {
                what: "SPS nal_unit_type",
                value: u64::from(nal_type(b0)),
            });
        }
        let rbsp = remove_emulation_prevention(nal.get(2..).unwrap_or_default());
        let mut r = BitReader::new(&rbsp, "H.265 SPS");
        let _vps_id = r.read_bits(4)?;
        let max_sub_layers_minus1 = r.read_bits(3)? as u8;
        if max_sub_layers_minus1 > 6 {
            return Err(CodecError::Invalid {
                what: "sps_max_sub_layers_minus1",
                value: u64::from(max_sub_layers_minus1),
            });
        }
        let temporal_id_nesting = r.read_flag()?;
        let ptl = read_ptl(&mut r, max_sub_layers_minus1)?;
        let sps_id = r.read_ue()?;
        if sps_id > 15 {
            return Err(CodecError::Invalid {
                what: "sps_seq_parameter_set_id",
                value: u64::from(sps_id),
            });
        }
        let chroma_format_idc = r.read_ue()?;
        if chroma_format_idc > 3 {
            return Err(CodecError::Invalid {
                what: "chroma_format_idc",
                value: u64::from(chroma_format_idc),
            });
        }
        let separate = chroma_format_idc == 3 && r.read_flag()?;
        let w = u64::from(r.read_ue()?);
        let h = u64::from(r.read_ue()?);
        let (mut l, mut rt, mut t, mut b) = (0u64, 0u64, 0u64, 0u64);
        if r.read_flag()? {
            l = u64::from(r.read_ue()?);
            rt = u64::from(r.read_ue()?);
            t = u64::from(r.read_ue()?);
            b = u64::from(r.read_ue()?);
        }
        let bit_depth_luma_minus8 = r.read_ue()?;
        let bit_depth_chroma_minus8 = r.read_ue()?;
        if bit_depth_luma_minus8 > 8 || bit_depth_chroma_minus8 > 8 {
            return Err(CodecError::Invalid {
                what: "bit_depth_minus8",
                value: u64::from(bit_depth_luma_minus8.max(bit_depth_chroma_minus8)),
            });
        }
        let chroma_array_type = if separate { 0 } else { chroma_format_idc };
        let sub_w = if matches!(chroma_array_type, 1 | 2) {
            2
        } else {
            1
        };
        let sub_h = if chroma_array_type == 1 { 2 } else { 1 };
        let width = w
            .checked_sub(sub_w * (l + rt))
            .and_then(|v| u32::try_from(v).ok())
            .ok_or(CodecError::Invalid {
                what: "conformance window width",
                value: l + rt,
            })?;
        let height = h
            .checked_sub(sub_h * (t + b))
            .and_then(|v| u32::try_from(v).ok())
            .ok_or(CodecError::Invalid {
                what: "conformance window height",
                value: t + b,
            })?;
        Ok(Sps {
            max_sub_layers_minus1,
            temporal_id_nesting,
            ptl,
            chroma_format_idc,
            bit_depth_luma_minus8,
            bit_depth_chroma_minus8,
            width,
            height,
        })
    }
}

/// One NAL unit array of the configuration record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NalArray {
    /// `array_completeness`: all units of this type are in the record.
    pub completeness: bool,
    /// `NAL_unit_type` (6 bits).
    pub nal_type: u8,
    /// The NAL units (with their 2-byte headers).
    pub units: Vec<Bytes>,
}

/// `HEVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §8.3.3.1): the
/// canonical H.265 config frame payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcConfig {
    /// General profile, tier and level.
    pub ptl: ProfileTierLevel,
    /// `min_spatial_segmentation_idc` (12 bits).
    pub min_spatial_segmentation_idc: u16,
    /// `parallelismType` (2 bits).
    pub parallelism_type: u8,
    /// `chromaFormat` (2 bits).
    pub chroma_format: u8,
    /// `bitDepthLumaMinus8` (3 bits).
    pub bit_depth_luma_minus8: u8,
    /// `bitDepthChromaMinus8` (3 bits).
    pub bit_depth_chroma_minus8: u8,
    /// `avgFrameRate` (frames per 256 s, 0 = unspecified).
    pub avg_frame_rate: u16,
    /// `constantFrameRate` (2 bits).
    pub constant_frame_rate: u8,
    /// `numTemporalLayers` (3 bits).
    pub num_temporal_layers: u8,
    /// `temporalIdNested`.
    pub temporal_id_nested: bool,
    /// NAL unit length size in bytes (1, 2 or 4).
    pub length_size: u8,
    /// NAL unit arrays (VPS, SPS, PPS, SEI, ...), at most [`MAX_PARAM_SETS`]
    /// arrays of at most [`MAX_PARAM_SETS`] units each.
    pub arrays: Vec<NalArray>,
}

const RECORD: &str = "HEVCDecoderConfigurationRecord";

impl HevcConfig {
    /// Parses a record; NAL units are zero-copy slices of `data`.
    pub fn parse(data: &Bytes) -> Result<HevcConfig> {
        let t = || CodecError::Truncated { what: RECORD };
        let hdr = data.get(..23).ok_or_else(t)?;
        let b = |i: usize| hdr.get(i).copied().unwrap_or(0);
        // configurationVersion is 1; a few old muxers wrote 0.
        if b(0) > 1 {
            return Err(CodecError::Invalid {
                what: "configurationVersion",
                value: u64::from(b(0)),
            });
        }
        let u32_at = |i| read_be(hdr, i, 4).unwrap_or(0);
        let length_size = (b(21) & 3) + 1;
        if length_size == 3 {
            return Err(CodecError::Invalid {
                what: "lengthSizeMinusOne",
                value: 2,
            });
        }
        let constraint_flags =
            (u64::from(u32_at(6)) << 16) | u64::from(read_be(hdr, 10, 2).unwrap_or(0));
        let num_arrays = usize::from(b(22));
        if num_arrays > MAX_PARAM_SETS {
            return Err(CodecError::TooLarge {
                what: "hvcC arrays",
                limit: MAX_PARAM_SETS,
            });
        }
        let mut pos = 23;
        let mut arrays = Vec::with_capacity(num_arrays);
        for _ in 0..num_arrays {
            let ab = *data.get(pos).ok_or_else(t)?;
            let n = read_be(data, pos + 1, 2).ok_or_else(t)? as usize;
            pos += 3;
            if n > MAX_PARAM_SETS {
                return Err(CodecError::TooLarge {
                    what: "hvcC NAL units per array",
                    limit: MAX_PARAM_SETS,
                });
            }
            let mut units = Vec::with_capacity(n);
            for _ in 0..n {
                let len = read_be(data, pos, 2).ok_or_else(t)? as usize;
                let start = pos + 2;
                if data.len() < start + len {
                    return Err(t());
                }
                units.push(data.slice(start..start + len));
                pos = start + len;
            }
            arrays.push(NalArray {
                completeness: ab & 0x80 != 0,
                nal_type: ab & 0x3F,
                units,
            });
        }
        Ok(HevcConfig {
            ptl: ProfileTierLevel {
                profile_space: b(1) >> 6,
                tier: b(1) & 0x20 != 0,
                profile_idc: b(1) & 0x1F,
                compatibility_flags: u32_at(2),
                constraint_flags,
                level_idc: b(12),
            },
            min_spatial_segmentation_idc: (read_be(hdr, 13, 2).unwrap_or(0) & 0x0FFF) as u16,
            parallelism_type: b(15) & 3,
            chroma_format: b(16) & 3,
            bit_depth_luma_minus8: b(17) & 7,
            bit_depth_chroma_minus8: b(18) & 7,
            avg_frame_rate: read_be(hdr, 19, 2).unwrap_or(0) as u16,
            constant_frame_rate: b(21) >> 6,
            num_temporal_layers: (b(21) >> 3) & 7,
            temporal_id_nested: b(21) & 4 != 0,
            length_size,
            arrays,
        })
    }

    /// Builds a record (4-byte NAL lengths, complete arrays) from VPS, SPS
    /// and PPS NAL units; profile, chroma format and bit depths come from the
    /// first SPS.
    pub fn from_parameter_sets(
        vps: Vec<Bytes>,
        sps: Vec<Bytes>,
        pps: Vec<Bytes>,
    ) -> Result<HevcConfig> {
        let first = sps.first().ok_or(CodecError::Missing("SPS"))?;
        if vps.is_empty() {
            return Err(CodecError::Missing("VPS"));
        }
        if pps.is_empty() {
            return Err(CodecError::Missing("PPS"));
        }
        if [&vps, &sps, &pps].iter().any(|v| v.len() > MAX_PARAM_SETS) {
            return Err(CodecError::TooLarge {
                what: "parameter sets",
                limit: MAX_PARAM_SETS,
            });
        }
        let s = Sps::parse(first)?;
        let array = |nal_type, units| NalArray {
            completeness: true,
            nal_type,
            units,
        };
        Ok(HevcConfig {
            ptl: s.ptl,
            min_spatial_segmentation_idc: 0,
            parallelism_type: 0,
            chroma_format: (s.chroma_format_idc & 3) as u8,
            bit_depth_luma_minus8: (s.bit_depth_luma_minus8 & 7) as u8,
            bit_depth_chroma_minus8: (s.bit_depth_chroma_minus8 & 7) as u8,
            avg_frame_rate: 0,
            constant_frame_rate: 0,
            num_temporal_layers: s.max_sub_layers_minus1 + 1,
            temporal_id_nested: s.temporal_id_nesting,
            length_size: 4,
            arrays: vec![
                array(NAL_VPS, vps),
                array(NAL_SPS, sps),
                array(NAL_PPS, pps),
            ],
        })
    }

    /// Serializes the record.
    pub fn to_bytes(&self) -> Bytes {
        let size: usize = self
            .arrays
            .iter()
            .map(|a| 3 + a.units.iter().map(|u| 2 + u.len()).sum::<usize>())
            .sum();
        let mut out = BytesMut::with_capacity(23 + size);
        let p = &self.ptl;
        out.put_u8(1);
        out.put_u8(((p.profile_space & 3) << 6) | (u8::from(p.tier) << 5) | (p.profile_idc & 0x1F));
        out.put_u32(p.compatibility_flags);
        out.put_u32((p.constraint_flags >> 16) as u32);
        out.put_u16(p.constraint_flags as u16);
        out.put_u8(p.level_idc);
        out.put_u16(0xF000 | (self.min_spatial_segmentation_idc & 0x0FFF));
        out.put_u8(0xFC | (self.parallelism_type & 3));
        out.put_u8(0xFC | (self.chroma_format & 3));
        out.put_u8(0xF8 | (self.bit_depth_luma_minus8 & 7));
        out.put_u8(0xF8 | (self.bit_depth_chroma_minus8 & 7));
        out.put_u16(self.avg_frame_rate);
        out.put_u8(
            ((self.constant_frame_rate & 3) << 6)
                | ((self.num_temporal_layers & 7) << 3)
                | (u8::from(self.temporal_id_nested) << 2)
                | (self.length_size.saturating_sub(1) & 3),
        );
        out.put_u8(self.arrays.len().min(255) as u8);
        for a in self.arrays.iter().take(255) {
            out.put_u8((u8::from(a.completeness) << 7) | (a.nal_type & 0x3F));
            out.put_u16(a.units.len().min(0xFFFF) as u16);
            for u in a.units.iter().take(0xFFFF) {
                let u = u.get(..u.len().min(0xFFFF)).unwrap_or_default();
                out.put_u16(u.len() as u16);
                out.extend_from_slice(u);
            }
        }
        out.freeze()
    }

    /// All NAL units of `nal_type` in the record.
    pub fn units(&self, nal_type: u8) -> impl Iterator<Item = &Bytes> {
        self.arrays
            .iter()
            .filter(move |a| a.nal_type == nal_type)
            .flat_map(|a| a.units.iter())
    }

    /// The parsed first SPS (resolution).
    pub fn parse_sps(&self) -> Result<Sps> {
        Sps::parse(
            self.units(NAL_SPS)
                .next()
                .ok_or(CodecError::Missing("SPS"))?,
        )
    }

    /// The VPS, SPS and PPS as an Annex-B stream (4-byte start codes), to put
    /// in front of a keyframe in MPEG-TS / RTP.
    pub fn annex_b_parameter_sets(&self) -> Bytes {
        let mut out = BytesMut::new();
        for t in [NAL_VPS, NAL_SPS, NAL_PPS] {
            for u in self.units(t) {
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(u);
            }
        }
        out.freeze()
    }

    /// The RFC 6381 codec string for an `hvc1` sample entry, e.g. `hvc1.1.6.L93.B0`.
    pub fn codec_string(&self) -> String {
        self.ptl.codec_string("hvc1")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// VPS/SPS/PPS of libx265 `testsrc=size=1280x720`, yuv420p, Main, level 3.1.
    const VPS_720P: &[u8] = &[
        0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00,
        0x03, 0x00, 0x00, 0x03, 0x00, 0x5d, 0x95, 0x98, 0x09,
    ];
    const SPS_720P: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x5d, 0xa0, 0x02, 0x80, 0x80, 0x2d, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b, 0xc0,
        0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x32, 0x10,
    ];
    const PPS_720P: &[u8] = &[0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];

    /// Head of the `hvcC` ffmpeg writes into MP4 for libx265 1920x1080 (Main,
    /// level 4), up to and including the PPS array (the SEI array is cut and
    /// the array count patched from 4 to 3).
    const HVCC_1080P: &[u8] = &[
        0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x78, 0xf0, 0x00,
        0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03, 0xa0, 0x00, 0x01, 0x00, 0x18, 0x40, 0x01,
        0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x03, 0x00, 0x78, 0x95, 0x98, 0x09, 0xa1, 0x00, 0x01, 0x00, 0x2a, 0x42, 0x01, 0x01,
        0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x78,
        0xa0, 0x03, 0xc0, 0x80, 0x10, 0xe5, 0x96, 0x56, 0x69, 0x24, 0xca, 0xf0, 0x16, 0x80, 0x80,
        0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x0c, 0x84, 0xa2, 0x00, 0x01, 0x00, 0x07, 0x44,
        0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40,
    ];

    #[test]
    fn sps_720p() {
        let s = Sps::parse(SPS_720P).unwrap();
        assert_eq!((s.width, s.height), (1280, 720));
        assert_eq!(
            (s.ptl.profile_idc, s.ptl.level_idc, s.ptl.tier),
            (1, 93, false)
        );
        assert_eq!(s.ptl.compatibility_flags, 0x6000_0000);
        assert_eq!(s.chroma_format_idc, 1);
        assert_eq!(s.ptl.codec_string("hvc1"), "hvc1.1.6.L93.90");
        assert!(Sps::parse(VPS_720P).is_err());
        for n in 0..SPS_720P.len() {
            let _ = Sps::parse(&SPS_720P[..n]);
        }
        assert!(Sps::parse(&SPS_720P[..20]).is_err());
    }

    #[test]
    fn hvcc_matches_ffmpeg() {
        let rec = HevcConfig::parse(&Bytes::from_static(HVCC_1080P)).unwrap();
        assert_eq!(rec.length_size, 4);
        assert_eq!(rec.arrays.len(), 3);
        assert_eq!(rec.ptl.level_idc, 120);
        assert_eq!(rec.codec_string(), "hvc1.1.6.L120.90");
        let sps = rec.parse_sps().unwrap();
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(&rec.to_bytes()[..], HVCC_1080P);
        // Rebuilt from parameter sets: same profile fields and units.
        let built = HevcConfig::from_parameter_sets(
            rec.units(NAL_VPS).cloned().collect(),
            rec.units(NAL_SPS).cloned().collect(),
            rec.units(NAL_PPS).cloned().collect(),
        )
        .unwrap();
        assert_eq!(built.ptl, rec.ptl);
        assert_eq!(built.arrays, rec.arrays);
        assert_eq!((built.chroma_format, built.num_temporal_layers), (1, 1));
        assert_eq!(HevcConfig::parse(&built.to_bytes()).unwrap(), built);
        for n in 0..HVCC_1080P.len() {
            let r = HevcConfig::parse(&Bytes::copy_from_slice(&HVCC_1080P[..n]));
            assert!(r.is_err(), "prefix {n} parsed");
        }
    }

    #[test]
    fn from_720p_parameter_sets() {
        let rec = HevcConfig::from_parameter_sets(
            vec![Bytes::from_static(VPS_720P)],
            vec![Bytes::from_static(SPS_720P)],
            vec![Bytes::from_static(PPS_720P)],
        )
        .unwrap();
        assert_eq!(rec.codec_string(), "hvc1.1.6.L93.90");
        assert_eq!(
            split_annex_b(&rec.annex_b_parameter_sets()),
            vec![VPS_720P, SPS_720P, PPS_720P]
        );
        assert_eq!(
            super::super::codec_string(crate::frame::Codec::H265, &rec.to_bytes()).unwrap(),
            "hvc1.1.6.L93.90"
        );
        assert!(HevcConfig::from_parameter_sets(vec![], vec![], vec![]).is_err());
    }

    #[test]
    fn nal_helpers() {
        assert_eq!(nal_type(0x40), NAL_VPS);
        assert_eq!(nal_type(0x26), 19);
        assert!(is_irap(19) && is_irap(21) && !is_irap(1) && !is_irap(32));
        assert!(hvcc_has_irap(&[0, 0, 0, 2, 0x26, 0x01]));
        assert!(!hvcc_has_irap(&[0, 0, 0, 2, 0x02, 0x01]));
    }

    /// NAL header byte 0 of `t` (layer 0).
    fn hdr(t: u8) -> u8 {
        t << 1
    }

    #[test]
    fn irap_and_leading_classification() {
        // Every IRAP type (H.265 Table 7-1), the reserved IRAP 22/23 included.
        for t in [
            NAL_BLA_W_LP,
            NAL_BLA_W_RADL,
            NAL_BLA_N_LP,
            NAL_IDR_W_RADL,
            NAL_IDR_N_LP,
            NAL_CRA,
            22,
            23,
        ] {
            assert!(is_irap(t), "{t}");
            assert!(is_irap(nal_type(hdr(t))), "{t}");
            assert!(hvcc_has_irap(&[0, 0, 0, 2, hdr(t), 0x01]), "{t}");
            assert!(!is_rasl(t) && !is_radl(t));
        }
        // Non-IRAP VCL (0..=15, 24..=31) and non-VCL types.
        for t in (0..16).chain(24..64) {
            assert!(!is_irap(t), "{t}");
            assert!(!hvcc_has_irap(&[0, 0, 0, 2, hdr(t), 0x01]), "{t}");
        }
        for t in 0..64 {
            assert_eq!(is_rasl(t), t == 8 || t == 9, "{t}");
            assert_eq!(is_radl(t), t == 6 || t == 7, "{t}");
            assert_eq!(is_vcl(t), t < 32, "{t}");
        }
        // The temporal id / layer bits do not change the type: RASL_N with
        // nuh_temporal_id_plus1 = 3.
        assert_eq!(nal_type(0x10), NAL_RASL_N);
        assert!(is_rasl(
            hvcc_picture_type(&[0, 0, 0, 2, 0x10, 0x03]).unwrap()
        ));
        // The picture type skips AUD, parameter sets and prefix SEI.
        let au = [
            0, 0, 0, 3, 0x46, 0x01, 0x50, // AUD
            0, 0, 0, 2, 0x40, 0x01, // VPS
            0, 0, 0, 2, 0x4e, 0x01, // prefix SEI
            0, 0, 0, 3, 0x2a, 0x01, 0xaf, // CRA slice
        ];
        assert_eq!(hvcc_picture_type(&au), Some(NAL_CRA));
        assert_eq!(
            hvcc_picture_type(&[0, 0, 0, 2, 0x0e, 0x01]),
            Some(NAL_RADL_R)
        );
        // No VCL unit, empty, truncated or garbage lengths.
        assert_eq!(hvcc_picture_type(&au[..20]), None);
        assert_eq!(hvcc_picture_type(&[]), None);
        assert_eq!(hvcc_picture_type(&[0, 0, 0, 9, 0x2a]), None);
        assert_eq!(hvcc_picture_type(&[0xff, 0xff, 0xff, 0xff, 0x2a]), None);
        assert!(!hvcc_has_irap(&[0, 0, 0, 9, 0x2a]));
        let p = ProfileTierLevel {
            profile_space: 0,
            tier: false,
            profile_idc: 1,
            compatibility_flags: 0x6000_0000,
            constraint_flags: 0xB000_0000_0000,
            level_idc: 93,
        };
        assert_eq!(p.codec_string("hvc1"), "hvc1.1.6.L93.B0");
        let p = ProfileTierLevel {
            profile_space: 1,
            tier: true,
            profile_idc: 2,
            compatibility_flags: 0x2000_0000,
            constraint_flags: 0,
            level_idc: 120,
        };
        assert_eq!(p.codec_string("hev1"), "hev1.A2.4.H120");
    }
}
