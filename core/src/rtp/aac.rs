//! AAC over RTP (RFC 3640 `mpeg4-generic`, mode AAC-hbr): AU headers with a
//! 13-bit size and a 3-bit index, several access units per packet, or one
//! access unit fragmented over packets that share its timestamp.

use bytes::{BufMut, BytesMut};

use super::{read_be, Result, RtpError, RtpPacket, Unit, MAX_ACCESS_UNIT};
use crate::codec::bitreader::BitReader;

/// Largest number of access units accepted in one packet.
pub const MAX_UNITS_PER_PACKET: usize = 64;

/// Samples per AAC frame (AAC-LC; what RFC 3640 timestamps advance by).
pub const SAMPLES_PER_FRAME: u32 = 1024;

/// The AU header layout of the `fmtp` line (RFC 3640 §3.3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuHeaderLayout {
    /// `sizeLength` in bits (13 for AAC-hbr).
    pub size_length: u8,
    /// `indexLength` in bits (3).
    pub index_length: u8,
    /// `indexDeltaLength` in bits (3).
    pub index_delta_length: u8,
}

impl Default for AuHeaderLayout {
    fn default() -> Self {
        AuHeaderLayout {
            size_length: 13,
            index_length: 3,
            index_delta_length: 3,
        }
    }
}

/// Reassembles AAC access units (raw, no ADTS) from RTP payloads.
///
/// Invariants: at most [`MAX_UNITS_PER_PACKET`] units per packet; a
/// fragmented unit is at most [`MAX_ACCESS_UNIT`] bytes and is dropped when
/// a fragment is lost or the timestamp changes before it is complete.
#[derive(Debug, Default)]
pub struct Depacketizer {
    layout: AuHeaderLayout,
    frag: Option<(u32, usize, BytesMut)>,
}

impl Depacketizer {
    /// A depacketizer for this AU header layout.
    pub fn new(layout: AuHeaderLayout) -> Self {
        Depacketizer { layout, frag: None }
    }

    /// Packets were lost: a fragmented unit in progress is dropped.
    pub fn lost(&mut self) {
        self.frag = None;
    }

    /// One packet, in sequence order; its units are appended to `out`.
    pub fn push(&mut self, pkt: &RtpPacket, out: &mut Vec<Unit>) -> Result<()> {
        let p = &pkt.payload;
        let header_bits =
            read_be(p, 0, 2).ok_or(RtpError::Truncated("AU-headers-length"))? as usize;
        let header_bytes = header_bits.div_ceil(8);
        let headers = p
            .get(2..2 + header_bytes)
            .ok_or(RtpError::Truncated("AU headers"))?;
        let mut r = BitReader::new(headers, "AU header");
        let l = self.layout;
        let per = usize::from(l.size_length) + usize::from(l.index_length);
        if per == 0 || l.size_length == 0 {
            return Err(RtpError::Invalid {
                what: "sizeLength",
                value: u64::from(l.size_length),
            });
        }
        let mut sizes: heapless::Vec<usize, MAX_UNITS_PER_PACKET> = heapless::Vec::new();
        let mut bits = 0;
        while bits + usize::from(l.size_length) <= header_bits {
            let size = r
                .read_bits(u32::from(l.size_length))
                .map_err(|_| RtpError::Truncated("AU header"))? as usize;
            let idx_len = if sizes.is_empty() {
                l.index_length
            } else {
                l.index_delta_length
            };
            r.skip_bits(usize::from(idx_len))
                .map_err(|_| RtpError::Truncated("AU header"))?;
            bits += usize::from(l.size_length) + usize::from(idx_len);
            sizes.push(size).map_err(|_| RtpError::TooLarge {
                what: "AAC units per RTP packet",
                limit: MAX_UNITS_PER_PACKET,
            })?;
        }
        let mut pos = 2 + header_bytes;
        let data_len = p.len().saturating_sub(pos);
        // One unit larger than the data: a fragment (RFC 3640 §3.2.3.1).
        if let [size] = *sizes.as_slice() {
            if size > data_len || self.frag.is_some() {
                if size > MAX_ACCESS_UNIT {
                    return Err(RtpError::TooLarge {
                        what: "AAC access unit",
                        limit: MAX_ACCESS_UNIT,
                    });
                }
                let chunk = p.get(pos..).unwrap_or_default();
                match &mut self.frag {
                    Some((ts, total, buf)) if *ts == pkt.timestamp && *total == size => {
                        buf.put_slice(chunk);
                    }
                    _ => {
                        let mut buf = BytesMut::with_capacity(size);
                        buf.put_slice(chunk);
                        self.frag = Some((pkt.timestamp, size, buf));
                    }
                }
                if let Some((ts, total, buf)) = &self.frag {
                    if buf.len() >= *total {
                        let ts = *ts;
                        let data = buf.clone().freeze().slice(..*total);
                        self.frag = None;
                        out.push(Unit {
                            timestamp: ts,
                            data,
                            keyframe: true,
                        });
                    } else if pkt.marker {
                        // The last fragment came and the unit is short: damaged.
                        self.frag = None;
                    }
                }
                return Ok(());
            }
        }
        for (i, size) in sizes.iter().enumerate() {
            let data = p
                .get(pos..pos + size)
                .ok_or(RtpError::Truncated("AAC access unit"))?;
            out.push(Unit {
                timestamp: pkt
                    .timestamp
                    .wrapping_add(SAMPLES_PER_FRAME.wrapping_mul(i as u32)),
                data: p.slice_ref(data),
                keyframe: true,
            });
            pos += size;
        }
        Ok(())
    }
}

/// RTP payloads for one AAC access unit (AAC-hbr, one unit per packet,
/// fragmented when larger than `max_payload`); see
/// [`super::h264::packetize`] for `emit`.
pub fn packetize(au: &[u8], max_payload: usize, emit: &mut impl FnMut(&[&[u8]], bool)) {
    let size = au.len().min(0x1fff) as u16;
    let au = au.get(..usize::from(size)).unwrap_or_default();
    let hdr = [0, 16, (size >> 5) as u8, ((size & 0x1f) << 3) as u8];
    let chunk = max_payload.max(5) - 4;
    if au.is_empty() {
        emit(&[&hdr], true);
        return;
    }
    let pieces = au.len().div_ceil(chunk);
    for (k, piece) in au.chunks(chunk).enumerate() {
        emit(&[&hdr, piece], k + 1 == pieces);
    }
}

/// Parses the AU header layout from `fmtp` parameters (`sizelength`,
/// `indexlength`, `indexdeltalength`, any letter case).
pub fn layout_from_fmtp<'a>(params: impl Iterator<Item = (&'a str, &'a str)>) -> AuHeaderLayout {
    let mut l = AuHeaderLayout::default();
    for (k, v) in params {
        let Ok(n) = v.trim().parse::<u8>() else {
            continue;
        };
        let n = n.min(32);
        match k.to_ascii_lowercase().as_str() {
            "sizelength" => l.size_length = n,
            "indexlength" => l.index_length = n,
            "indexdeltalength" => l.index_delta_length = n,
            _ => {}
        }
    }
    l
}

/// The `AudioSpecificConfig` inside an MP4A-LATM `StreamMuxConfig`
/// (ISO/IEC 14496-3 §1.7.3, `audioMuxVersion` 0, one program and layer),
/// as the `config=` of RFC 6416 §7.3 carries it.
pub fn latm_config_to_asc(stream_mux_config: &[u8]) -> Option<bytes::Bytes> {
    let mut r = BitReader::new(stream_mux_config, "StreamMuxConfig");
    if r.read_bits(1).ok()? != 0 {
        return None; // audioMuxVersion 1 is not handled
    }
    r.skip_bits(1 + 6 + 4 + 3).ok()?; // allStreamsSameTimeFraming, numSubFrames, numProgram, numLayer
    let aot = r.read_bits(5).ok()? as u8;
    let idx = r.read_bits(4).ok()?;
    let rate = if idx == 15 {
        r.read_bits(24).ok()?
    } else {
        *[
            96_000u32, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000,
            11_025, 8_000, 7_350,
        ]
        .get(idx as usize)?
    };
    let channels = r.read_bits(4).ok()? as u8;
    Some(crate::codec::aac::AacConfig::new(aot, rate, channels).to_bytes())
}

/// One MP4A-LATM packet (RFC 6416 §6, `cpresent=0`): the `AudioMuxElement`
/// of one access unit, its length as a run of bytes ending below 255.
pub fn depacketize_latm(pkt: &RtpPacket, out: &mut Vec<Unit>) -> Result<()> {
    let p = &pkt.payload;
    let mut len = 0usize;
    let mut pos = 0;
    loop {
        let b = read_be(p, pos, 1).ok_or(RtpError::Truncated("LATM PayloadLengthInfo"))?;
        pos += 1;
        len += b as usize;
        if b != 255 {
            break;
        }
        if len > MAX_ACCESS_UNIT {
            return Err(RtpError::TooLarge {
                what: "LATM access unit",
                limit: MAX_ACCESS_UNIT,
            });
        }
    }
    let data = p
        .get(pos..pos + len)
        .ok_or(RtpError::Truncated("LATM access unit"))?;
    out.push(Unit {
        timestamp: pkt.timestamp,
        data: p.slice_ref(data),
        keyframe: true,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::rtp::h264::tests::pkt;

    #[test]
    fn several_units_and_fragments() {
        let mut d = Depacketizer::default();
        let mut out = Vec::new();
        // Two units of 2 and 3 bytes: headers 32 bits.
        let p = [0, 32, 0, 2 << 3, 0, 3 << 3, 1, 2, 3, 4, 5];
        d.push(&pkt(1, 1000, true, &p), &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].timestamp, 2024);
        assert_eq!(&out[1].data[..], &[3, 4, 5]);
        let au: Vec<u8> = (0..2500).map(|i| i as u8).collect();
        let mut pkts = Vec::new();
        packetize(&au, 1000, &mut |parts, last| {
            pkts.push((parts.concat(), last))
        });
        assert_eq!(pkts.len(), 3);
        out.clear();
        for (i, (p, m)) in pkts.iter().enumerate() {
            d.push(&pkt(i as u16, 5, *m, p), &mut out).unwrap();
        }
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].data[..], &au[..]);
        // Lost middle fragment: nothing.
        out.clear();
        d.push(&pkt(0, 6, false, &pkts[0].0), &mut out).unwrap();
        d.lost();
        d.push(&pkt(2, 6, true, &pkts[2].0), &mut out).unwrap();
        assert!(out.is_empty());
        assert!(d.push(&pkt(3, 7, true, &[0, 16, 0xff]), &mut out).is_err());
    }

    #[test]
    fn latm() {
        // GStreamer's rtpmp4apay config for AAC-LC 44.1 kHz mono.
        let asc = latm_config_to_asc(&[0x40, 0x00, 0x24, 0x10]).unwrap();
        let c = crate::codec::aac::AacConfig::parse(&asc).unwrap();
        assert_eq!(
            (c.object_type, c.sampling_frequency, c.channel_config),
            (2, 44_100, 1)
        );
        let mut out = Vec::new();
        let mut p = vec![255, 10];
        p.extend(std::iter::repeat(7).take(265));
        depacketize_latm(&pkt(1, 0, true, &p), &mut out).unwrap();
        assert_eq!(out[0].data.len(), 265);
        assert!(depacketize_latm(&pkt(1, 0, true, &[9, 1]), &mut out).is_err());
    }
}
