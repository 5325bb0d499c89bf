//! H.264 over RTP (RFC 6184, packetization-mode 1): single NAL unit packets,
//! STAP-A aggregates and FU-A fragments.

use bytes::{BufMut, Bytes, BytesMut};

use super::{read_be, Result, RtpError, RtpPacket, Unit, MAX_ACCESS_UNIT, MAX_NALS_PER_UNIT};
use crate::codec::h264::{self as avc, NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS};

/// STAP-A NAL unit type (RFC 6184 §5.7.1).
pub const STAP_A: u8 = 24;
/// FU-A NAL unit type (RFC 6184 §5.8).
pub const FU_A: u8 = 28;

/// Reassembles H.264 access units from RTP payloads.
///
/// Invariants: an access unit holds at most [`MAX_NALS_PER_UNIT`] NAL units
/// and [`MAX_ACCESS_UNIT`] bytes; once a packet was lost (see
/// [`lost`](Self::lost)) the current unit is dropped and units are dropped
/// until the next IDR. SPS and PPS are taken out of the units and kept as
/// the current parameter sets ([`take_config`](Self::take_config)).
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
    /// The unit holds a slice (the marker on SPS/PPS/SEI alone does not end it).
    has_vcl: bool,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    config_changed: bool,
}

impl Depacketizer {
    /// A depacketizer with parameter sets known from the SDP.
    pub fn new(sps: Option<Bytes>, pps: Option<Bytes>) -> Self {
        let config_changed = sps.is_some() && pps.is_some();
        Depacketizer {
            sps,
            pps,
            config_changed,
            ..Default::default()
        }
    }

    /// The current SPS and PPS.
    pub fn parameter_sets(&self) -> (Option<&Bytes>, Option<&Bytes>) {
        (self.sps.as_ref(), self.pps.as_ref())
    }

    /// `AVCDecoderConfigurationRecord` of new parameter sets, once after they change.
    pub fn take_config(&mut self) -> Option<Bytes> {
        if !self.config_changed {
            return None;
        }
        let (sps, pps) = (self.sps.clone()?, self.pps.clone()?);
        self.config_changed = false;
        avc::AvcConfig::from_parameter_sets(vec![sps], vec![pps])
            .ok()
            .map(|c| c.to_bytes())
    }

    /// Packets were lost before the next one: drop the unit being built and
    /// wait for the next keyframe.
    pub fn lost(&mut self) {
        self.damaged = true;
        self.damaged_next = true;
        self.wait_keyframe = true;
        self.fu = None;
    }

    /// One packet, in sequence order; completed units are appended to `out`.
    pub fn push(&mut self, pkt: &RtpPacket, out: &mut Vec<Unit>) -> Result<()> {
        if self.timestamp.is_some_and(|t| t != pkt.timestamp) {
            // Marker-less streams: the unit ends where the timestamp changes.
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
        let hdr = *p.first().ok_or(RtpError::Truncated("H.264 payload"))?;
        if p.starts_with(&[0, 0, 1]) || p.starts_with(&[0, 0, 0, 1]) {
            self.fu = None;
            return self.nal_maybe_annex_b(p.clone());
        }
        match avc::nal_type(hdr) {
            1..=23 => {
                self.fu = None;
                self.nal_maybe_annex_b(p.clone())
            }
            STAP_A => {
                self.fu = None;
                let mut pos = 1;
                while pos < p.len() {
                    let len = read_be(p, pos, 2).ok_or(RtpError::Truncated("STAP-A"))? as usize;
                    let nal = p
                        .get(pos + 2..pos + 2 + len)
                        .ok_or(RtpError::Truncated("STAP-A unit"))?;
                    if !nal.is_empty() {
                        self.nal(p.slice_ref(nal))?;
                    }
                    pos += 2 + len;
                }
                Ok(())
            }
            FU_A => {
                let fu = read_be(p, 1, 1).ok_or(RtpError::Truncated("FU-A header"))? as u8;
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                let data = p.get(2..).unwrap_or_default();
                if start {
                    let mut b = BytesMut::with_capacity(data.len() * 8 + 1);
                    b.put_u8((hdr & 0xe0) | (fu & 0x1f));
                    b.put_slice(data);
                    self.fu = Some(b);
                } else {
                    let Some(b) = self.fu.as_mut() else {
                        // A middle or end fragment without its start: damaged.
                        self.damaged = true;
                        return Ok(());
                    };
                    if b.len() + data.len() > MAX_ACCESS_UNIT {
                        return Err(RtpError::TooLarge {
                            what: "H.264 FU-A NAL unit",
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
            t => Err(RtpError::Unsupported {
                what: "H.264 RTP NAL unit type",
                value: u64::from(t),
            }),
        }
    }

    /// Some encoders put Annex B start codes inside RTP NAL units.
    fn nal_maybe_annex_b(&mut self, nal: Bytes) -> Result<()> {
        if nal.starts_with(&[0, 0, 1]) || nal.starts_with(&[0, 0, 0, 1]) {
            for part in avc::split_annex_b(&nal) {
                if !part.is_empty() {
                    self.nal(nal.slice_ref(part))?;
                }
            }
            return Ok(());
        }
        self.nal(nal)
    }

    fn nal(&mut self, nal: Bytes) -> Result<()> {
        let first = *nal.first().ok_or(RtpError::Truncated("NAL unit"))?;
        match avc::nal_type(first) {
            NAL_SPS => {
                if self.sps.as_ref() != Some(&nal) {
                    self.sps = Some(nal);
                    self.config_changed = true;
                }
                return Ok(());
            }
            NAL_PPS => {
                if self.pps.as_ref() != Some(&nal) {
                    self.pps = Some(nal);
                    self.config_changed = true;
                }
                return Ok(());
            }
            NAL_AUD => return Ok(()),
            _ => {}
        }
        if self.nals.len() >= MAX_NALS_PER_UNIT {
            return Err(RtpError::TooLarge {
                what: "H.264 NAL units per access unit",
                limit: MAX_NALS_PER_UNIT,
            });
        }
        if self.size + nal.len() + 4 > MAX_ACCESS_UNIT {
            return Err(RtpError::TooLarge {
                what: "H.264 access unit",
                limit: MAX_ACCESS_UNIT,
            });
        }
        self.size += nal.len() + 4;
        self.has_vcl |= (1..=5).contains(&avc::nal_type(first));
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
            .any(|n| n.first().is_some_and(|h| avc::nal_type(*h) == NAL_IDR));
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

/// Splits one access unit (its NAL units, in order) into RTP payloads of at
/// most `max_payload` bytes: a single NAL unit packet when it fits, FU-A
/// fragments when it does not. `emit(parts, last)` receives each payload as
/// up to two slices (a header and a slice of the NAL unit) and whether it is
/// the last payload of the unit (marker bit).
pub fn packetize(nals: &[&[u8]], max_payload: usize, emit: &mut impl FnMut(&[&[u8]], bool)) {
    let max_payload = max_payload.max(3);
    let count = nals.len();
    for (i, nal) in nals.iter().enumerate() {
        let last_nal = i + 1 == count;
        let Some((&hdr, body)) = nal.split_first() else {
            continue;
        };
        if nal.len() <= max_payload {
            emit(&[nal], last_nal);
            continue;
        }
        let chunk = max_payload - 2;
        let pieces = body.len().div_ceil(chunk);
        for (k, piece) in body.chunks(chunk).enumerate() {
            let start = k == 0;
            let end = k + 1 == pieces;
            let fu = [
                (hdr & 0xe0) | FU_A,
                (u8::from(start) << 7) | (u8::from(end) << 6) | (hdr & 0x1f),
            ];
            emit(&[&fu, piece], last_nal && end);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    pub(crate) fn pkt(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> RtpPacket {
        RtpPacket {
            marker,
            payload_type: 96,
            sequence: seq,
            timestamp: ts,
            ssrc: 1,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn single_stap_fu_and_parameter_sets() {
        let mut d = Depacketizer::default();
        let mut out = Vec::new();
        // STAP-A with SPS + PPS (marker set on it, as some cameras do).
        let sps = crate::codec::h264::tests::SPS_640X360;
        let pps = crate::codec::h264::tests::PPS_640X360;
        let mut stap = vec![STAP_A];
        for n in [sps, pps] {
            stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
            stap.extend_from_slice(n);
        }
        d.push(&pkt(1, 0, true, &stap), &mut out).unwrap();
        assert!(out.is_empty());
        assert!(d.take_config().is_some());
        assert!(d.take_config().is_none());
        // An IDR in three FU-A fragments.
        d.push(&pkt(2, 3000, false, &[0x7c, 0x85, 1, 2]), &mut out)
            .unwrap();
        d.push(&pkt(3, 3000, false, &[0x7c, 0x05, 3]), &mut out)
            .unwrap();
        d.push(&pkt(4, 3000, true, &[0x7c, 0x45, 4]), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].keyframe);
        assert_eq!(&out[0].data[..], &[0, 0, 0, 5, 0x65, 1, 2, 3, 4]);
        // FU-A with S and E both set, then a marker-less single NAL ended by a new timestamp.
        d.push(&pkt(5, 6000, true, &[0x7c, 0xc1, 9]), &mut out)
            .unwrap();
        d.push(&pkt(6, 9000, false, &[0x41, 7]), &mut out).unwrap();
        d.push(&pkt(7, 12000, false, &[0x41, 8]), &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(&out[1].data[..], &[0, 0, 0, 2, 0x61, 9]);
        assert_eq!(&out[2].data[..], &[0, 0, 0, 2, 0x41, 7]);
        // Annex B inside a single NAL packet.
        d.push(
            &pkt(8, 15000, true, &[0, 0, 0, 1, 0x65, 5, 0, 0, 1, 0x65, 6]),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 5, "{out:?}");
        assert_eq!(
            &out[4].data[..],
            &[0, 0, 0, 2, 0x65, 5, 0, 0, 0, 2, 0x65, 6]
        );
    }

    #[test]
    fn loss_waits_for_keyframe() {
        let mut d = Depacketizer::default();
        let mut out = Vec::new();
        d.push(&pkt(1, 0, false, &[0x7c, 0x81, 1]), &mut out)
            .unwrap();
        d.lost();
        d.push(&pkt(3, 0, true, &[0x7c, 0x41, 3]), &mut out)
            .unwrap();
        d.push(&pkt(4, 1, true, &[0x41, 3]), &mut out).unwrap();
        assert!(out.is_empty());
        d.push(&pkt(5, 2, true, &[0x65, 3]), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        // Unknown type and truncated STAP-A are errors, not panics.
        assert!(d.push(&pkt(6, 3, true, &[0x1e]), &mut out).is_err());
        assert!(d
            .push(&pkt(7, 4, true, &[0x18, 0, 9, 1]), &mut out)
            .is_err());
    }

    #[test]
    fn packetize_fragments_large_units() {
        let big: Vec<u8> = std::iter::once(0x65)
            .chain((0..3000).map(|i| i as u8))
            .collect();
        let small = [0x06u8, 1, 2];
        let mut payloads: Vec<(Vec<u8>, bool)> = Vec::new();
        packetize(&[&small, &big], 1000, &mut |parts, last| {
            payloads.push((parts.concat(), last));
        });
        assert_eq!(payloads.len(), 5);
        assert!(payloads.iter().all(|(p, _)| p.len() <= 1000));
        assert_eq!(payloads.iter().filter(|(_, m)| *m).count(), 1);
        assert!(payloads.last().unwrap().1);
        let mut d = Depacketizer::default();
        let mut out = Vec::new();
        for (i, (p, m)) in payloads.iter().enumerate() {
            d.push(&pkt(i as u16, 90, *m, p), &mut out).unwrap();
        }
        assert_eq!(out.len(), 1);
        let mut expect = vec![0, 0, 0, 3];
        expect.extend_from_slice(&small);
        expect.extend_from_slice(&(big.len() as u32).to_be_bytes());
        expect.extend_from_slice(&big);
        assert_eq!(out[0].data.to_vec(), expect);
    }
}
