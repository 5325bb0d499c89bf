//! H.264 / AVC helpers: NAL unit types (H.264 §7.4.1), SPS parsing
//! (H.264 §7.3.2.1.1), the `AVCDecoderConfigurationRecord`
//! (ISO/IEC 14496-15 §5.3.3), Annex-B ↔ AVCC conversion and RFC 6381 codec
//! strings.

use bytes::{BufMut, Bytes, BytesMut};

use super::bitreader::{remove_emulation_prevention, BitReader};
use super::{read_be, CodecError, Result, MAX_PARAM_SETS, MAX_UNIT_SIZE};

/// `nal_unit_type` of a non-IDR coded slice (H.264 Table 7-1).
pub const NAL_SLICE: u8 = 1;
/// `nal_unit_type` of an IDR coded slice.
pub const NAL_IDR: u8 = 5;
/// `nal_unit_type` of an SEI message.
pub const NAL_SEI: u8 = 6;
/// `nal_unit_type` of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// `nal_unit_type` of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// `nal_unit_type` of an access unit delimiter.
pub const NAL_AUD: u8 = 9;

/// The `nal_unit_type` of a NAL unit whose first byte is `header` (H.264 §7.3.1).
pub const fn nal_type(header: u8) -> u8 {
    header & 0x1F
}

/// Iterates the NAL units of a length-prefixed (AVCC/HVCC) buffer with
/// `length_size` (1, 2 or 4) byte big-endian lengths. Yields `Err` once on a
/// truncated or oversized unit, then stops.
pub fn iter_length_prefixed(data: &[u8], length_size: usize) -> LengthPrefixedIter<'_> {
    LengthPrefixedIter {
        data,
        pos: 0,
        length_size,
        failed: false,
    }
}

/// Iterator returned by [`iter_length_prefixed`].
#[derive(Debug, Clone)]
pub struct LengthPrefixedIter<'a> {
    data: &'a [u8],
    pos: usize,
    length_size: usize,
    failed: bool,
}

impl<'a> Iterator for LengthPrefixedIter<'a> {
    type Item = Result<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let fail = |s: &mut Self, e: CodecError| {
            s.failed = true;
            Some(Err(e))
        };
        if !matches!(self.length_size, 1..=4) {
            return fail(
                self,
                CodecError::Invalid {
                    what: "NAL length size",
                    value: self.length_size as u64,
                },
            );
        }
        let Some(len) = read_be(self.data, self.pos, self.length_size) else {
            return fail(self, CodecError::Truncated { what: "NAL length" });
        };
        let len = len as usize;
        if len > MAX_UNIT_SIZE {
            return fail(
                self,
                CodecError::TooLarge {
                    what: "NAL unit",
                    limit: MAX_UNIT_SIZE,
                },
            );
        }
        let start = self.pos + self.length_size;
        let Some(nal) = self.data.get(start..start + len) else {
            return fail(self, CodecError::Truncated { what: "NAL unit" });
        };
        self.pos = start + len;
        Some(Ok(nal))
    }
}

/// Whether a 4-byte AVCC access unit contains an IDR slice. Malformed input yields `false`.
pub fn avcc_has_idr(data: &[u8]) -> bool {
    iter_length_prefixed(data, 4)
        .map_while(|n| n.ok())
        .any(|n| n.first().is_some_and(|h| nal_type(*h) == NAL_IDR))
}

/// Checks that `data` is a well-formed sequence of `length_size`-prefixed NAL
/// units and returns it with 4-byte lengths (zero-copy when already 4).
pub fn to_avcc4(data: Bytes, length_size: usize) -> Result<Bytes> {
    if length_size == 4 {
        for n in iter_length_prefixed(&data, 4) {
            n?;
        }
        return Ok(data);
    }
    let mut out = BytesMut::with_capacity(data.len() + data.len() / 2 + 8);
    for n in iter_length_prefixed(&data, length_size) {
        let n = n?;
        out.put_u32(n.len() as u32);
        out.extend_from_slice(n);
    }
    Ok(out.freeze())
}

/// Splits an Annex-B byte stream (`00 00 01` / `00 00 00 01` start codes,
/// H.264 Annex B) into NAL units, without start codes and without trailing
/// zero bytes. Leading bytes before the first start code are ignored.
pub fn split_annex_b(data: &[u8]) -> Vec<&[u8]> {
    let mut units = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0usize;
    while i + 2 < data.len() {
        if data.get(i..i + 3) == Some(&[0, 0, 1]) {
            if let Some(s) = start {
                push_unit(&mut units, data, s, i);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        push_unit(&mut units, data, s, data.len());
    }
    units
}

fn push_unit<'a>(units: &mut Vec<&'a [u8]>, data: &'a [u8], s: usize, mut e: usize) {
    // Trailing zeros belong to the next 4-byte start code or are trailing_zero_8bits.
    while e > s && data.get(e - 1) == Some(&0) {
        e -= 1;
    }
    if let Some(u) = data.get(s..e) {
        if !u.is_empty() {
            units.push(u);
        }
    }
}

/// Converts an Annex-B byte stream into 4-byte length-prefixed NAL units (AVCC/HVCC).
pub fn annex_b_to_avcc(data: &[u8]) -> Bytes {
    let units = split_annex_b(data);
    let mut out = BytesMut::with_capacity(data.len() + 4 * units.len());
    for u in units {
        out.put_u32(u.len() as u32);
        out.extend_from_slice(u);
    }
    out.freeze()
}

/// Converts 4-byte length-prefixed NAL units into an Annex-B stream with
/// 4-byte start codes, appending to `out`.
pub fn avcc_to_annex_b_into(data: &[u8], out: &mut BytesMut) -> Result<()> {
    for n in iter_length_prefixed(data, 4) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(n?);
    }
    Ok(())
}

/// Converts 4-byte length-prefixed NAL units into an Annex-B stream with 4-byte start codes.
pub fn avcc_to_annex_b(data: &[u8]) -> Result<Bytes> {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    avcc_to_annex_b_into(data, &mut out)?;
    Ok(out.freeze())
}

/// Fields of a sequence parameter set (H.264 §7.3.2.1.1) that muxers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sps {
    /// `profile_idc`.
    pub profile_idc: u8,
    /// The byte of `constraint_set0..5_flag` + reserved bits.
    pub constraint_flags: u8,
    /// `level_idc`.
    pub level_idc: u8,
    /// `seq_parameter_set_id`.
    pub sps_id: u32,
    /// `chroma_format_idc` (1 = 4:2:0 when absent).
    pub chroma_format_idc: u32,
    /// `bit_depth_luma_minus8`.
    pub bit_depth_luma_minus8: u32,
    /// `bit_depth_chroma_minus8`.
    pub bit_depth_chroma_minus8: u32,
    /// Display width in luma samples, after cropping.
    pub width: u32,
    /// Display height in luma samples, after cropping.
    pub height: u32,
    /// `frame_mbs_only_flag`.
    pub frame_mbs_only: bool,
}

fn is_high_profile(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: u32) -> Result<()> {
    let mut last = 8i32;
    let mut next = 8i32;
    for _ in 0..size {
        if next != 0 {
            let delta = r.read_se()?;
            // delta_scale is -128..=127 in valid streams; wrap (exact mod 256,
            // as 2^32 is a multiple of 256) so hostile values cannot overflow.
            // delta_scale is -128..=127 in valid streams; wrap (exact mod 256,
            // as 2^32 is a multiple of 256) so hostile values cannot overflow.
            next = last.wrapping_add(delta).wrapping_add(256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

impl Sps {
    /// Parses an SPS NAL unit (with its 1-byte NAL header, emulation
    /// prevention still in place).
    pub fn parse(nal: &[u8]) -> Result<Sps> {
        let header = *nal.first().ok_or(CodecError::Truncated { what: "SPS" })?;
        if nal_type(header) != NAL_SPS {
            return Err(CodecError::Invalid {
                what: "SPS nal_unit_type",
                value: u64::from(nal_type(header)),
            });
        }
        let rbsp = remove_emulation_prevention(nal.get(1..).unwrap_or_default());
        let mut r = BitReader::new(&rbsp, "SPS");
        let profile_idc = r.read_bits(8)? as u8;
        let constraint_flags = r.read_bits(8)? as u8;
        let level_idc = r.read_bits(8)? as u8;
        let sps_id = r.read_ue()?;
        if sps_id > 31 {
            return Err(CodecError::Invalid {
                what: "seq_parameter_set_id",
                value: u64::from(sps_id),
            });
        }
        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = false;
        let mut bit_depth_luma_minus8 = 0;
        let mut bit_depth_chroma_minus8 = 0;
        if is_high_profile(profile_idc) {
            chroma_format_idc = r.read_ue()?;
            if chroma_format_idc > 3 {
                return Err(CodecError::Invalid {
                    what: "chroma_format_idc",
                    value: u64::from(chroma_format_idc),
                });
            }
            if chroma_format_idc == 3 {
                separate_colour_plane = r.read_flag()?;
            }
            bit_depth_luma_minus8 = r.read_ue()?;
            bit_depth_chroma_minus8 = r.read_ue()?;
            if bit_depth_luma_minus8 > 6 || bit_depth_chroma_minus8 > 6 {
                return Err(CodecError::Invalid {
                    what: "bit_depth_minus8",
                    value: u64::from(bit_depth_luma_minus8.max(bit_depth_chroma_minus8)),
                });
            }
            let _qpprime_y_zero_transform_bypass = r.read_flag()?;
            if r.read_flag()? {
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.read_flag()? {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        let log2_max_frame_num_minus4 = r.read_ue()?;
        if log2_max_frame_num_minus4 > 12 {
            return Err(CodecError::Invalid {
                what: "log2_max_frame_num_minus4",
                value: u64::from(log2_max_frame_num_minus4),
            });
        }
        let poc_type = r.read_ue()?;
        match poc_type {
            0 => {
                let _log2_max_poc_lsb_minus4 = r.read_ue()?;
            }
            1 => {
                let _delta_pic_order_always_zero = r.read_flag()?;
                let _offset_for_non_ref_pic = r.read_se()?;
                let _offset_for_top_to_bottom_field = r.read_se()?;
                let cycle = r.read_ue()?;
                if cycle > 255 {
                    return Err(CodecError::Invalid {
                        what: "num_ref_frames_in_pic_order_cnt_cycle",
                        value: u64::from(cycle),
                    });
                }
                for _ in 0..cycle {
                    let _ = r.read_se()?;
                }
            }
            2 => {}
            v => {
                return Err(CodecError::Invalid {
                    what: "pic_order_cnt_type",
                    value: u64::from(v),
                })
            }
        }
        let _max_num_ref_frames = r.read_ue()?;
        let _gaps_in_frame_num_allowed = r.read_flag()?;
        let width_mbs = u64::from(r.read_ue()?) + 1;
        let height_map_units = u64::from(r.read_ue()?) + 1;
        let frame_mbs_only = r.read_flag()?;
        if !frame_mbs_only {
            let _mb_adaptive_frame_field = r.read_flag()?;
        }
        let _direct_8x8_inference = r.read_flag()?;
        let (mut cl, mut cr, mut ct, mut cb) = (0u64, 0u64, 0u64, 0u64);
        if r.read_flag()? {
            cl = u64::from(r.read_ue()?);
            cr = u64::from(r.read_ue()?);
            ct = u64::from(r.read_ue()?);
            cb = u64::from(r.read_ue()?);
        }
        let chroma_array_type = if separate_colour_plane {
            0
        } else {
            chroma_format_idc
        };
        let (sub_w, sub_h) = match chroma_array_type {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let (crop_x, crop_y) = if chroma_array_type == 0 {
            (1, 2 - u64::from(frame_mbs_only))
        } else {
            (sub_w, sub_h * (2 - u64::from(frame_mbs_only)))
        };
        let full_w = width_mbs * 16;
        let full_h = (2 - u64::from(frame_mbs_only)) * height_map_units * 16;
        let width = full_w
            .checked_sub(crop_x * (cl + cr))
            .ok_or(CodecError::Invalid {
                what: "frame_crop width",
                value: cl + cr,
            })?;
        let height = full_h
            .checked_sub(crop_y * (ct + cb))
            .ok_or(CodecError::Invalid {
                what: "frame_crop height",
                value: ct + cb,
            })?;
        let to_u32 =
            |v: u64, what| u32::try_from(v).map_err(|_| CodecError::Invalid { what, value: v });
        Ok(Sps {
            profile_idc,
            constraint_flags,
            level_idc,
            sps_id,
            chroma_format_idc,
            bit_depth_luma_minus8,
            bit_depth_chroma_minus8,
            width: to_u32(width, "width")?,
            height: to_u32(height, "height")?,
            frame_mbs_only,
        })
    }
}

/// The high-profile extension of the AVC configuration record (ISO/IEC 14496-15 §5.3.3.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcHighExt {
    /// `chroma_format` (2 bits).
    pub chroma_format: u8,
    /// `bit_depth_luma_minus8` (3 bits).
    pub bit_depth_luma_minus8: u8,
    /// `bit_depth_chroma_minus8` (3 bits).
    pub bit_depth_chroma_minus8: u8,
    /// SPS extension NAL units.
    pub sps_ext: Vec<Bytes>,
}

/// `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3.1): the canonical
/// H.264 config frame payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// `AVCProfileIndication`.
    pub profile: u8,
    /// `profile_compatibility`.
    pub compatibility: u8,
    /// `AVCLevelIndication`.
    pub level: u8,
    /// NAL unit length size in bytes (1, 2 or 4).
    pub length_size: u8,
    /// SPS NAL units (with header), at most [`MAX_PARAM_SETS`].
    pub sps: Vec<Bytes>,
    /// PPS NAL units (with header), at most [`MAX_PARAM_SETS`].
    pub pps: Vec<Bytes>,
    /// The high-profile extension, when present.
    pub high_ext: Option<AvcHighExt>,
}

fn read_units(
    data: &Bytes,
    pos: &mut usize,
    count: usize,
    what: &'static str,
) -> Result<Vec<Bytes>> {
    if count > MAX_PARAM_SETS {
        return Err(CodecError::TooLarge {
            what,
            limit: MAX_PARAM_SETS,
        });
    }
    let mut v = Vec::with_capacity(count);
    for _ in 0..count {
        let len = read_be(data, *pos, 2).ok_or(CodecError::Truncated { what })? as usize;
        let start = *pos + 2;
        if data.len() < start + len {
            return Err(CodecError::Truncated { what });
        }
        v.push(data.slice(start..start + len));
        *pos = start + len;
    }
    Ok(v)
}

impl AvcConfig {
    /// Parses a record. The SPS/PPS are zero-copy slices of `data`.
    pub fn parse(data: &Bytes) -> Result<AvcConfig> {
        let what = "AVCDecoderConfigurationRecord";
        let hdr = data.get(..6).ok_or(CodecError::Truncated { what })?;
        let [version, profile, compatibility, level, ls, nsps] = [
            hdr.first(),
            hdr.get(1),
            hdr.get(2),
            hdr.get(3),
            hdr.get(4),
            hdr.get(5),
        ]
        .map(|b| b.copied().unwrap_or(0));
        if version != 1 {
            return Err(CodecError::Invalid {
                what: "configurationVersion",
                value: u64::from(version),
            });
        }
        let length_size = (ls & 3) + 1;
        if length_size == 3 {
            return Err(CodecError::Invalid {
                what: "lengthSizeMinusOne",
                value: 2,
            });
        }
        let mut pos = 6;
        let sps = read_units(data, &mut pos, usize::from(nsps & 0x1F), "SPS list")?;
        let npps = *data.get(pos).ok_or(CodecError::Truncated { what })?;
        pos += 1;
        let pps = read_units(data, &mut pos, usize::from(npps), "PPS list")?;
        let mut high_ext = None;
        if matches!(profile, 100 | 110 | 122 | 144) && data.len() >= pos + 4 {
            let b = |i: usize| data.get(pos + i).copied().unwrap_or(0);
            let (cf, bl, bc, n) = (b(0) & 3, b(1) & 7, b(2) & 7, b(3));
            pos += 4;
            // Some encoders write garbage here; keep the extension only if it parses.
            if let Ok(sps_ext) = read_units(data, &mut pos, usize::from(n), "SPS ext list") {
                high_ext = Some(AvcHighExt {
                    chroma_format: cf,
                    bit_depth_luma_minus8: bl,
                    bit_depth_chroma_minus8: bc,
                    sps_ext,
                });
            }
        }
        Ok(AvcConfig {
            profile,
            compatibility,
            level,
            length_size,
            sps,
            pps,
            high_ext,
        })
    }

    /// Builds a record (4-byte NAL lengths) from SPS and PPS NAL units. The
    /// profile fields come from the first SPS; the high-profile extension is
    /// added for profiles 100/110/122/144.
    pub fn from_parameter_sets(sps: Vec<Bytes>, pps: Vec<Bytes>) -> Result<AvcConfig> {
        let first = sps.first().ok_or(CodecError::Missing("SPS"))?;
        if pps.is_empty() {
            return Err(CodecError::Missing("PPS"));
        }
        if sps.len() > MAX_PARAM_SETS || pps.len() > MAX_PARAM_SETS {
            return Err(CodecError::TooLarge {
                what: "parameter sets",
                limit: MAX_PARAM_SETS,
            });
        }
        let parsed = Sps::parse(first)?;
        let high_ext = matches!(parsed.profile_idc, 100 | 110 | 122 | 144).then(|| AvcHighExt {
            chroma_format: (parsed.chroma_format_idc & 3) as u8,
            bit_depth_luma_minus8: (parsed.bit_depth_luma_minus8 & 7) as u8,
            bit_depth_chroma_minus8: (parsed.bit_depth_chroma_minus8 & 7) as u8,
            sps_ext: Vec::new(),
        });
        Ok(AvcConfig {
            profile: parsed.profile_idc,
            compatibility: parsed.constraint_flags,
            level: parsed.level_idc,
            length_size: 4,
            sps,
            pps,
            high_ext,
        })
    }

    /// Serializes the record.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(
            16 + self
                .sps
                .iter()
                .chain(&self.pps)
                .map(|u| u.len() + 2)
                .sum::<usize>(),
        );
        out.put_u8(1);
        out.put_u8(self.profile);
        out.put_u8(self.compatibility);
        out.put_u8(self.level);
        out.put_u8(0xFC | (self.length_size.saturating_sub(1) & 3));
        out.put_u8(0xE0 | (self.sps.len().min(31) as u8));
        for u in self.sps.iter().take(31) {
            out.put_u16(u.len().min(0xFFFF) as u16);
            out.extend_from_slice(u.get(..u.len().min(0xFFFF)).unwrap_or_default());
        }
        out.put_u8(self.pps.len().min(255) as u8);
        for u in self.pps.iter().take(255) {
            out.put_u16(u.len().min(0xFFFF) as u16);
            out.extend_from_slice(u.get(..u.len().min(0xFFFF)).unwrap_or_default());
        }
        if let Some(ext) = &self.high_ext {
            out.put_u8(0xFC | (ext.chroma_format & 3));
            out.put_u8(0xF8 | (ext.bit_depth_luma_minus8 & 7));
            out.put_u8(0xF8 | (ext.bit_depth_chroma_minus8 & 7));
            out.put_u8(ext.sps_ext.len().min(255) as u8);
            for u in ext.sps_ext.iter().take(255) {
                out.put_u16(u.len().min(0xFFFF) as u16);
                out.extend_from_slice(u.get(..u.len().min(0xFFFF)).unwrap_or_default());
            }
        }
        out.freeze()
    }

    /// The parsed first SPS (resolution, profile, level).
    pub fn parse_sps(&self) -> Result<Sps> {
        Sps::parse(self.sps.first().ok_or(CodecError::Missing("SPS"))?)
    }

    /// The SPS and PPS as an Annex-B stream (4-byte start codes), to put in
    /// front of a keyframe in MPEG-TS / RTP.
    pub fn annex_b_parameter_sets(&self) -> Bytes {
        let mut out = BytesMut::new();
        for u in self.sps.iter().chain(&self.pps) {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(u);
        }
        out.freeze()
    }

    /// The RFC 6381 codec string, e.g. `avc1.64001f` (ISO/IEC 14496-15 Annex E).
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{}",
            super::hex(&[self.profile, self.compatibility, self.level])
        )
    }
}

/// Rewrites the `lengthSizeMinusOne` at `byte_index` of a serialized AVC
/// (index 4) or HEVC (index 21) record to 3 (4-byte lengths), as the
/// canonical form requires. Returns `data` unchanged when already 4 or too short.
pub(crate) fn record_with_length_size4(data: Bytes, byte_index: usize) -> Bytes {
    match data.get(byte_index) {
        Some(b) if b & 3 != 3 => {
            let mut v = BytesMut::from(&data[..]);
            if let Some(x) = v.get_mut(byte_index) {
                *x |= 3;
            }
            v.freeze()
        }
        _ => data,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// SPS of ffmpeg/libx264 `testsrc=size=640x360`, High profile, level 3.0.
    pub(crate) const SPS_640X360: &[u8] = &[
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
    ];
    /// PPS matching [`SPS_640X360`].
    pub(crate) const PPS_640X360: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    /// SPS of libx264 baseline 320x240 (constrained baseline, level 1.3).
    const SPS_BASELINE_320X240: &[u8] = &[
        0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
        0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0xa4, 0x80,
    ];
    /// SPS of libx264 High 4:4:4 Predictive 640x360 (rgb24 input).
    const SPS_444_640X360: &[u8] = &[
        0x67, 0xf4, 0x00, 0x1e, 0x91, 0x9b, 0x28, 0x14, 0x05, 0xff, 0x13, 0x80, 0x88, 0x00, 0x00,
        0x03, 0x00, 0x08, 0x00, 0x00, 0x03, 0x01, 0x90, 0x78, 0xb1, 0x6c, 0xb0,
    ];
    /// The `avcC` box body ffmpeg writes into MP4 for libx264 1920x1080 (High, level 4.0).
    const AVCC_1080P: &[u8] = &[
        0x01, 0x64, 0x00, 0x28, 0xff, 0xe1, 0x00, 0x1b, 0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40,
        0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00,
        0xc8, 0x3c, 0x60, 0xc6, 0x58, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd,
        0xf8, 0xf8, 0x00,
    ];

    #[test]
    fn sps_real_parameter_sets() {
        let s = Sps::parse(SPS_640X360).unwrap();
        assert_eq!((s.width, s.height), (640, 360));
        assert_eq!(
            (s.profile_idc, s.level_idc, s.chroma_format_idc),
            (100, 30, 1)
        );
        assert!(s.frame_mbs_only);
        let s = Sps::parse(SPS_BASELINE_320X240).unwrap();
        assert_eq!(
            (s.width, s.height, s.profile_idc, s.level_idc),
            (320, 240, 66, 13)
        );
        assert_eq!(s.constraint_flags, 0xc0);
        let s = Sps::parse(SPS_444_640X360).unwrap();
        assert_eq!(
            (s.width, s.height, s.profile_idc, s.chroma_format_idc),
            (640, 360, 244, 3)
        );
        assert!(Sps::parse(PPS_640X360).is_err());
        // Cut before the picture size fields: an error, never a panic.
        for n in 0..8 {
            assert!(Sps::parse(&SPS_640X360[..n]).is_err(), "prefix {n} parsed");
        }
        for n in 0..SPS_640X360.len() {
            let _ = Sps::parse(&SPS_640X360[..n]);
        }
    }

    #[test]
    fn avc_config_matches_ffmpeg() {
        let rec = AvcConfig::parse(&Bytes::from_static(AVCC_1080P)).unwrap();
        assert_eq!((rec.profile, rec.compatibility, rec.level), (0x64, 0, 0x28));
        assert_eq!(rec.length_size, 4);
        assert_eq!((rec.sps.len(), rec.pps.len()), (1, 1));
        let sps = rec.parse_sps().unwrap();
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(rec.codec_string(), "avc1.640028");
        assert_eq!(&rec.to_bytes()[..], AVCC_1080P);
        // Built from the parameter sets alone it is byte-identical to ffmpeg's.
        let built = AvcConfig::from_parameter_sets(rec.sps.clone(), rec.pps.clone()).unwrap();
        assert_eq!(&built.to_bytes()[..], AVCC_1080P);
        for n in 0..AVCC_1080P.len() - 4 {
            let _ = AvcConfig::parse(&Bytes::copy_from_slice(&AVCC_1080P[..n]));
        }
        assert!(AvcConfig::parse(&Bytes::copy_from_slice(&AVCC_1080P[..20])).is_err());
    }

    #[test]
    fn avc_config_from_640x360() {
        let rec = AvcConfig::from_parameter_sets(
            vec![Bytes::from_static(SPS_640X360)],
            vec![Bytes::from_static(PPS_640X360)],
        )
        .unwrap();
        assert_eq!(rec.codec_string(), "avc1.64001e");
        let back = AvcConfig::parse(&rec.to_bytes()).unwrap();
        assert_eq!(back, rec);
        let annex = rec.annex_b_parameter_sets();
        assert_eq!(split_annex_b(&annex), vec![SPS_640X360, PPS_640X360]);
        assert!(AvcConfig::from_parameter_sets(vec![], vec![]).is_err());
        let base = AvcConfig::from_parameter_sets(
            vec![Bytes::from_static(SPS_BASELINE_320X240)],
            vec![Bytes::from_static(PPS_640X360)],
        )
        .unwrap();
        assert_eq!(base.codec_string(), "avc1.42c00d");
        assert!(base.high_ext.is_none());
    }

    #[test]
    fn annex_b_round_trip() {
        let annex = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 9, 9,
        ];
        let units = split_annex_b(&annex);
        assert_eq!(units, vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 9, 9]]);
        let avcc = annex_b_to_avcc(&annex);
        assert_eq!(
            &avcc[..],
            &[0, 0, 0, 3, 0x67, 1, 2, 0, 0, 0, 2, 0x68, 3, 0, 0, 0, 3, 0x65, 9, 9]
        );
        assert!(avcc_has_idr(&avcc));
        let back = avcc_to_annex_b(&avcc).unwrap();
        assert_eq!(split_annex_b(&back), units);
    }

    #[test]
    fn length_prefixed_errors() {
        assert!(to_avcc4(Bytes::from_static(&[0, 0, 0, 5, 1]), 4).is_err());
        assert!(to_avcc4(Bytes::from_static(&[0, 0]), 4).is_err());
        let two = to_avcc4(Bytes::from_static(&[0, 1, 0x41, 0, 2, 0x65, 1]), 2).unwrap();
        assert_eq!(&two[..], &[0, 0, 0, 1, 0x41, 0, 0, 0, 2, 0x65, 1]);
        assert!(avcc_has_idr(&two));
        assert!(!avcc_has_idr(&[0, 0, 0, 1, 0x41]));
    }
}
