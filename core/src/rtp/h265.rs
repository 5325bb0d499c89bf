//! H.265 over RTP (RFC 7798): single NAL unit packets, aggregation packets
//! (AP) and fragmentation units (FU), without DONL (`sprop-max-don-diff=0`).

use bytes::{BufMut, Bytes, BytesMut};

use super::{read_be, Result, RtpError, RtpPacket, Unit, MAX_ACCESS_UNIT, MAX_NALS_PER_UNIT};
use crate::codec::h265::{self as hevc, NAL_AUD, NAL_PPS, NAL_SPS, NAL_VPS};

/// Aggregation packet NAL unit type (RFC 7798 §4.4.2).
pub const AP: u8 = 48;
/// Fragmentation unit NAL unit type (RFC 7798 §4.4.3).
pub const FU: u8 = 49;
/// PACI NAL unit type (RFC 7798 §4.4.4), skipped.
pub const PACI: u8 = 50;

/// Reassembles H.265 access units from RTP payloads; same invariants as
/// [`super::h264::Depacketizer`] (VPS/SPS/PPS are kept aside).
#[derive(Debug, Default)]
pub struct Depacketizer {
    nals: Vec<Bytes>,
    size: usize,
    timestamp: Option<u32>,
    fu: Option<BytesMut>,
    damaged: bool,
    /// A loss may have hit the start of the unit after the current one.
    damaged_next: bool,
    wait_keyframe: bool,
    has_vcl: bool,
    vps: Option<Bytes>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    config_changed: bool,
}

impl Depacketizer {
    /// A depacketizer with parameter sets known from the SDP.
    pub fn new(vps: Option<Bytes>, sps: Option<Bytes>, pps: Option<Bytes>) -> Self {
        let config_changed = vps.is_some() && sps.is_some() && pps.is_some();
        Depacketizer {
            vps,
            sps,
            pps,
            config_changed,
            ..Default::default()
        }
    }

    /// `HEVCDecoderConfigurationRecord` of new parameter sets, once after they change.
    pub fn take_config(&mut self) -> Option<Bytes> {
        if !self.config_changed {
            return None;
        }
        let (v, s, p) = (self.vps.clone()?, self.sps.clone()?, self.pps.clone()?);
        self.config_changed = false;
        hevc::HevcConfig::from_parameter_sets(vec![v], vec![s], vec![p])
            .ok()
            .map(|c| c.to_bytes())
    }

    /// Packets were lost: drop the current unit and wait for the next IRAP.
    pub fn lost(&mut self) {
        self.damaged = true;
        self.damaged_next = true;
        self.wait_keyframe = true;
        self.fu = None;
    }

    /// One packet, in sequence order; completed units are appended to `out`.
    pub fn push(&mut self, pkt: &RtpPacket, out: &mut Vec<Unit>) -> Result<()> {
        if self.timestamp.is_some_and(|t| t != pkt.timestamp) {
            self.flush(out);
            // The packets lost may have been the first of this unit.
            self.damaged = std::mem::take(&mut self.damaged_next);
        }
        self.timestamp = Some(pkt.timestamp);
        let r = self.payload(&pkt.payload);
        if r.is_err() {
            self.lost();
        }
        if pkt.marker && self.fu.is_none() && self.has_vcl {
            self.flush(out);
        }
        r
    }

    fn payload(&mut self, p: &Bytes) -> Result<()> {
        let h0 = read_be(p, 0, 1).ok_or(RtpError::Truncated("H.265 payload header"))? as u8;
        let h1 = read_be(p, 1, 1).ok_or(RtpError::Truncated("H.265 payload header"))? as u8;
        match hevc::nal_type(h0) {
            AP => {
                self.fu = None;
                let mut pos = 2;
                while pos < p.len() {
                    let len = read_be(p, pos, 2).ok_or(RtpError::Truncated("AP"))? as usize;
                    let nal = p
                        .get(pos + 2..pos + 2 + len)
                        .ok_or(RtpError::Truncated("AP unit"))?;
                    if nal.len() >= 2 {
                        self.nal(p.slice_ref(nal))?;
                    }
                    pos += 2 + len;
                }
                Ok(())
            }
            FU => {
                let fu = read_be(p, 2, 1).ok_or(RtpError::Truncated("FU header"))? as u8;
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                let data = p.get(3..).unwrap_or_default();
                if start {
                    let mut b = BytesMut::with_capacity(data.len() * 8 + 2);
                    b.put_u8((h0 & 0x81) | ((fu & 0x3f) << 1));
                    b.put_u8(h1);
                    b.put_slice(data);
                    self.fu = Some(b);
                } else {
                    let Some(b) = self.fu.as_mut() else {
                        self.damaged = true;
                        return Ok(());
                    };
                    if b.len() + data.len() > MAX_ACCESS_UNIT {
                        return Err(RtpError::TooLarge {
                            what: "H.265 FU NAL unit",
                            limit: MAX_ACCESS_UNIT,
                        });
                    }
                    b.put_slice(data);
                }
                if end {
                    if let Some(b) = self.fu.take() {
                        self.nal(b.freeze())?;
                    }
                }
                Ok(())
            }
            PACI => Ok(()),
            t if t < 48 => {
                self.fu = None;
                self.nal(p.clone())
            }
            t => Err(RtpError::Unsupported {
                what: "H.265 RTP NAL unit type",
                value: u64::from(t),
            }),
        }
    }

    fn nal(&mut self, nal: Bytes) -> Result<()> {
        let first = *nal.first().ok_or(RtpError::Truncated("NAL unit"))?;
        let t = hevc::nal_type(first);
        let slot = match t {
            NAL_VPS => Some(&mut self.vps),
            NAL_SPS => Some(&mut self.sps),
            NAL_PPS => Some(&mut self.pps),
            NAL_AUD => return Ok(()),
            _ => None,
        };
        if let Some(slot) = slot {
            if slot.as_ref() != Some(&nal) {
                *slot = Some(nal);
                self.config_changed = true;
            }
            return Ok(());
        }
        if self.nals.len() >= MAX_NALS_PER_UNIT {
            return Err(RtpError::TooLarge {
                what: "H.265 NAL units per access unit",
                limit: MAX_NALS_PER_UNIT,
            });
        }
        if self.size + nal.len() + 4 > MAX_ACCESS_UNIT {
            return Err(RtpError::TooLarge {
                what: "H.265 access unit",
                limit: MAX_ACCESS_UNIT,
            });
        }
        self.size += nal.len() + 4;
        self.has_vcl |= t < 32;
        self.nals.push(nal);
        Ok(())
    }

    fn flush(&mut self, out: &mut Vec<Unit>) {
        let nals = std::mem::take(&mut self.nals);
        let size = std::mem::replace(&mut self.size, 0);
        let damaged = std::mem::replace(&mut self.damaged, false);
        self.has_vcl = false;
        self.fu = None;
        let Some(timestamp) = self.timestamp else {
            return;
        };
        if nals.is_empty() || damaged {
            return;
        }
        let keyframe = nals
            .iter()
            .any(|n| n.first().is_some_and(|h| hevc::is_irap(hevc::nal_type(*h))));
        if self.wait_keyframe && !keyframe {
            return;
        }
        self.wait_keyframe = false;
        let mut b = BytesMut::with_capacity(size);
        for n in &nals {
            b.put_u32(n.len() as u32);
            b.put_slice(n);
        }
        out.push(Unit {
            timestamp,
            data: b.freeze(),
            keyframe,
        });
    }
}

/// Splits one access unit into RTP payloads of at most `max_payload` bytes
/// (single NAL unit packets, FUs for larger NAL units); see
/// [`super::h264::packetize`] for `emit`.
pub fn packetize(nals: &[&[u8]], max_payload: usize, emit: &mut impl FnMut(&[&[u8]], bool)) {
    let max_payload = max_payload.max(4);
    let count = nals.len();
    for (i, nal) in nals.iter().enumerate() {
        let last_nal = i + 1 == count;
        let (Some(&h0), Some(&h1), Some(body)) = (nal.first(), nal.get(1), nal.get(2..)) else {
            continue;
        };
        if nal.len() <= max_payload {
            emit(&[nal], last_nal);
            continue;
        }
        let t = hevc::nal_type(h0);
        let chunk = max_payload - 3;
        let pieces = body.len().div_ceil(chunk);
        for (k, piece) in body.chunks(chunk).enumerate() {
            let end = k + 1 == pieces;
            let hdr = [
                (h0 & 0x81) | (FU << 1),
                h1,
                (u8::from(k == 0) << 7) | (u8::from(end) << 6) | t,
            ];
            emit(&[&hdr, piece], last_nal && end);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::rtp::h264::tests::pkt;

    #[test]
    fn fu_and_ap_round_trip() {
        let idr: Vec<u8> = [0x26u8, 0x01]
            .into_iter()
            .chain((0..2500).map(|i| i as u8))
            .collect();
        let mut payloads = Vec::new();
        packetize(&[&idr], 1000, &mut |parts, last| {
            payloads.push((parts.concat(), last))
        });
        assert_eq!(payloads.len(), 3);
        let mut d = Depacketizer::default();
        let mut out = Vec::new();
        // An AP with VPS, SPS, PPS (marker set: must not end a unit).
        let mut ap = vec![AP << 1, 1];
        for n in [&[0x40u8, 1, 9][..], &[0x42, 1, 9], &[0x44, 1, 9]] {
            ap.extend_from_slice(&(n.len() as u16).to_be_bytes());
            ap.extend_from_slice(n);
        }
        d.push(&pkt(0, 0, true, &ap), &mut out).unwrap();
        for (i, (p, m)) in payloads.iter().enumerate() {
            d.push(&pkt(1 + i as u16, 0, *m, p), &mut out).unwrap();
        }
        assert_eq!(out.len(), 1);
        assert!(out[0].keyframe);
        assert_eq!(&out[0].data[4..], &idr[..]);
        assert!(d.vps.is_some() && d.sps.is_some() && d.pps.is_some());
        assert!(d.push(&pkt(9, 1, true, &[0x62]), &mut out).is_err());
    }
}
