//! Program-specific information (ISO/IEC 13818-1 §2.4.4): PAT and PMT
//! sections, built by the muxer and parsed by the demuxer.

use bytes::{BufMut, BytesMut};

use super::{crc32_mpeg2, PACKET_SIZE, SYNC_BYTE};

/// `table_id` of a PAT section (Table 2-31).
pub const TABLE_PAT: u8 = 0x00;
/// `table_id` of a PMT section.
pub const TABLE_PMT: u8 = 0x02;
/// Largest `section_length` of a PAT/PMT (§2.4.4.3: 1021).
pub const MAX_SECTION_LENGTH: usize = 1021;
/// Largest number of elementary streams kept from one PMT.
pub const MAX_PMT_STREAMS: usize = 16;

/// `registration_descriptor` tag (§2.6.8).
pub const DESC_REGISTRATION: u8 = 0x05;
/// `extension_descriptor` tag (§2.6.90).
pub const DESC_EXTENSION: u8 = 0x7F;
/// `extension_descriptor_tag` of the `opus_audio_descriptor` (ETSI draft
/// "Opus Interactive Audio Codec; Transport Multiplexing Standard", Xiph OpusTS).
pub const DESC_EXT_OPUS: u8 = 0x80;
/// Opus `format_identifier` of the registration descriptor.
pub const OPUS_FORMAT_ID: &[u8; 4] = b"Opus";

/// Why a PSI section was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PsiError {
    /// Shorter than its header or its `section_length`.
    #[error("PSI section truncated")]
    Truncated,
    /// `CRC_32` does not match.
    #[error("PSI section CRC mismatch")]
    Crc,
    /// Not the expected `table_id`.
    #[error("unexpected table_id {0:#04x}")]
    TableId(u8),
    /// `section_length` above [`MAX_SECTION_LENGTH`].
    #[error("section_length {0} too large")]
    TooLong(usize),
    /// `current_next_indicator` is 0: the table is not applicable yet (§2.4.4.5).
    #[error("section not yet applicable (current_next_indicator = 0)")]
    NotCurrent,
}

/// One entry of a PMT's elementary-stream loop (§2.4.4.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmtStream {
    /// `stream_type` (Table 2-34).
    pub stream_type: u8,
    /// `elementary_PID`.
    pub pid: u16,
    /// Whether a registration descriptor names `Opus`.
    pub opus: bool,
    /// The Opus `channel_config_code` of the extension descriptor, if present.
    pub opus_channel_config: Option<u8>,
}

/// A parsed program map table (§2.4.4.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pmt {
    /// `program_number`.
    pub program_number: u16,
    /// `version_number` (5 bits).
    pub version: u8,
    /// `PCR_PID`.
    pub pcr_pid: u16,
    /// Elementary streams, at most [`MAX_PMT_STREAMS`].
    pub streams: Vec<PmtStream>,
}

/// Checks the common section header and CRC; returns `(table_id, body)`
/// where body spans from after `section_length` to before the CRC.
fn check_section(sec: &[u8]) -> Result<(u8, &[u8]), PsiError> {
    let hdr = sec.get(..3).ok_or(PsiError::Truncated)?;
    let (t, h1, h2) = (
        hdr.first().copied().unwrap_or(0),
        hdr.get(1).copied().unwrap_or(0),
        hdr.get(2).copied().unwrap_or(0),
    );
    let len = (usize::from(h1 & 0x0F) << 8) | usize::from(h2);
    if len > MAX_SECTION_LENGTH {
        return Err(PsiError::TooLong(len));
    }
    if len < 9 {
        return Err(PsiError::Truncated);
    }
    let whole = sec.get(..3 + len).ok_or(PsiError::Truncated)?;
    if crc32_mpeg2(whole) != 0 {
        return Err(PsiError::Crc);
    }
    let body = whole.get(3..3 + len - 4).ok_or(PsiError::Truncated)?;
    if body.get(2).is_some_and(|b| b & 1 == 0) {
        return Err(PsiError::NotCurrent);
    }
    Ok((t, body))
}

/// The total length (header + `section_length`) of the section starting at
/// `sec`, once its first 3 bytes are known.
pub fn section_total_len(sec: &[u8]) -> Option<usize> {
    let h1 = *sec.get(1)?;
    let h2 = *sec.get(2)?;
    Some(3 + ((usize::from(h1 & 0x0F) << 8) | usize::from(h2)))
}

/// Parses a PAT section; returns `(program_number, program_map_PID)` of the
/// first program other than the network PID entry (program 0).
pub fn parse_pat(sec: &[u8]) -> Result<Option<(u16, u16)>, PsiError> {
    let (t, body) = check_section(sec)?;
    if t != TABLE_PAT {
        return Err(PsiError::TableId(t));
    }
    // transport_stream_id(2) version(1) section_number(1) last_section_number(1)
    let entries = body.get(5..).ok_or(PsiError::Truncated)?;
    Ok(entries.chunks_exact(4).find_map(|e| {
        let prog = u16::from_be_bytes([*e.first()?, *e.get(1)?]);
        let pid = u16::from_be_bytes([*e.get(2)? & 0x1F, *e.get(3)?]);
        (prog != 0).then_some((prog, pid))
    }))
}

/// Parses a PMT section.
pub fn parse_pmt(sec: &[u8]) -> Result<Pmt, PsiError> {
    let (t, body) = check_section(sec)?;
    if t != TABLE_PMT {
        return Err(PsiError::TableId(t));
    }
    let b = |i: usize| body.get(i).copied().ok_or(PsiError::Truncated);
    let program_number = u16::from_be_bytes([b(0)?, b(1)?]);
    let version = (b(2)? >> 1) & 0x1F;
    let pcr_pid = u16::from_be_bytes([b(5)? & 0x1F, b(6)?]);
    let info_len = (usize::from(b(7)? & 0x0F) << 8) | usize::from(b(8)?);
    let mut pos = 9 + info_len;
    let mut streams = Vec::new();
    while pos + 5 <= body.len() {
        let stream_type = b(pos)?;
        let pid = u16::from_be_bytes([b(pos + 1)? & 0x1F, b(pos + 2)?]);
        let es_len = (usize::from(b(pos + 3)? & 0x0F) << 8) | usize::from(b(pos + 4)?);
        let desc = body
            .get(pos + 5..pos + 5 + es_len)
            .ok_or(PsiError::Truncated)?;
        let mut s = PmtStream {
            stream_type,
            pid,
            opus: false,
            opus_channel_config: None,
        };
        let mut d = desc;
        while let (Some(&tag), Some(&len)) = (d.first(), d.get(1)) {
            let Some(v) = d.get(2..2 + usize::from(len)) else {
                break;
            };
            match tag {
                DESC_REGISTRATION if v.get(..4) == Some(&OPUS_FORMAT_ID[..]) => s.opus = true,
                DESC_EXTENSION if v.first() == Some(&DESC_EXT_OPUS) => {
                    s.opus_channel_config = v.get(1).copied();
                }
                _ => {}
            }
            d = d.get(2 + usize::from(len)..).unwrap_or_default();
        }
        if streams.len() < MAX_PMT_STREAMS {
            streams.push(s);
        }
        pos += 5 + es_len;
    }
    Ok(Pmt {
        program_number,
        version,
        pcr_pid,
        streams,
    })
}

/// Finishes a section started with `table_id` + placeholder length in `s`:
/// fills `section_length` and appends the CRC.
fn finish_section(mut s: Vec<u8>) -> Vec<u8> {
    let len = s.len() - 3 + 4;
    if let Some(x) = s.get_mut(1) {
        *x = 0xB0 | ((len >> 8) as u8 & 0x0F);
    }
    if let Some(x) = s.get_mut(2) {
        *x = len as u8;
    }
    let crc = crc32_mpeg2(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

/// Builds a PAT section for one program (§2.4.4.3), `transport_stream_id` 1, version 0.
pub fn build_pat(program_number: u16, pmt_pid: u16) -> Vec<u8> {
    let mut s = vec![TABLE_PAT, 0, 0, 0x00, 0x01, 0xC1, 0x00, 0x00];
    s.extend_from_slice(&program_number.to_be_bytes());
    s.extend_from_slice(&(0xE000 | pmt_pid).to_be_bytes());
    finish_section(s)
}

/// An elementary stream to announce in a PMT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmtEntry {
    /// `stream_type`.
    pub stream_type: u8,
    /// `elementary_PID`.
    pub pid: u16,
    /// For Opus: the `channel_config_code` (channel count for mapping family 0).
    pub opus_channels: Option<u8>,
}

/// Builds a PMT section (§2.4.4.8) with `version_number` `version` (5 bits).
pub fn build_pmt(program_number: u16, version: u8, pcr_pid: u16, streams: &[PmtEntry]) -> Vec<u8> {
    let mut s = vec![TABLE_PMT, 0, 0];
    s.extend_from_slice(&program_number.to_be_bytes());
    s.extend_from_slice(&[0xC1 | ((version & 0x1F) << 1), 0x00, 0x00]);
    s.extend_from_slice(&(0xE000 | pcr_pid).to_be_bytes());
    s.extend_from_slice(&[0xF0, 0x00]);
    for e in streams {
        s.push(e.stream_type);
        s.extend_from_slice(&(0xE000 | e.pid).to_be_bytes());
        let mut desc = Vec::new();
        if let Some(ch) = e.opus_channels {
            desc.extend_from_slice(&[DESC_REGISTRATION, 4]);
            desc.extend_from_slice(OPUS_FORMAT_ID);
            desc.extend_from_slice(&[DESC_EXTENSION, 2, DESC_EXT_OPUS, ch]);
        }
        s.extend_from_slice(&(0xF000 | desc.len() as u16).to_be_bytes());
        s.extend_from_slice(&desc);
    }
    finish_section(s)
}

/// Appends one packet carrying `section` (which must fit in 183 bytes) on
/// `pid` with continuity counter `cc`, stuffed with `0xFF` (§2.4.4.2).
pub fn write_section_packet(out: &mut BytesMut, pid: u16, cc: u8, section: &[u8]) {
    let start = out.len();
    out.put_u8(SYNC_BYTE);
    out.put_u16(0x4000 | (pid & 0x1FFF));
    out.put_u8(0x10 | (cc & 0x0F));
    out.put_u8(0); // pointer_field
    let room = PACKET_SIZE - 5;
    out.extend_from_slice(section.get(..section.len().min(room)).unwrap_or_default());
    let used = out.len() - start;
    out.put_bytes(0xFF, PACKET_SIZE - used);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::container::ts::crc32_mpeg2;

    #[test]
    fn pat_matches_ffmpeg() {
        let pat = build_pat(1, 0x1000);
        assert_eq!(
            pat,
            [
                0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00, 0x2A, 0xB1,
                0x04, 0xB2
            ]
        );
        assert_eq!(parse_pat(&pat).unwrap(), Some((1, 0x1000)));
    }

    #[test]
    fn pmt_round_trip_with_opus_descriptors() {
        let entries = [
            PmtEntry {
                stream_type: 0x1B,
                pid: 0x100,
                opus_channels: None,
            },
            PmtEntry {
                stream_type: 0x06,
                pid: 0x101,
                opus_channels: Some(2),
            },
        ];
        let pmt = build_pmt(1, 3, 0x100, &entries);
        assert_eq!(parse_pmt(&pmt).unwrap().version, 3);
        let p = parse_pmt(&pmt).unwrap();
        assert_eq!(p.pcr_pid, 0x100);
        assert_eq!(p.streams.len(), 2);
        assert!(p.streams[1].opus);
        assert_eq!(p.streams[1].opus_channel_config, Some(2));
        let mut bad = pmt.clone();
        bad[10] ^= 1;
        assert_eq!(parse_pmt(&bad), Err(PsiError::Crc));
        assert_eq!(parse_pmt(&pmt[..8]), Err(PsiError::Truncated));
        // current_next_indicator = 0 (CRC recomputed).
        let mut next = pmt[..pmt.len() - 4].to_vec();
        next[5] &= !1;
        let crc = crc32_mpeg2(&next);
        next.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(parse_pmt(&next), Err(PsiError::NotCurrent));
    }
}
