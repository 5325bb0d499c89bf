//! RTCP (RFC 3550 §6): sender reports, receiver reports, source
//! descriptions and goodbyes, alone or in compound packets.

use bytes::{BufMut, Bytes, BytesMut};

use super::{read_be, Result, RtpError};

/// Largest number of packets read from one compound RTCP packet.
pub const MAX_COMPOUND_PACKETS: usize = 16;

/// RTCP packet type of a sender report.
pub const PT_SR: u8 = 200;
/// RTCP packet type of a receiver report.
pub const PT_RR: u8 = 201;
/// RTCP packet type of a source description.
pub const PT_SDES: u8 = 202;
/// RTCP packet type of a goodbye.
pub const PT_BYE: u8 = 203;

/// A sender report's sender info (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    /// The sender's SSRC.
    pub ssrc: u32,
    /// NTP timestamp (64-bit fixed point, seconds since 1900).
    pub ntp: u64,
    /// The RTP timestamp that corresponds to `ntp`.
    pub rtp_time: u32,
    /// Packets sent.
    pub packet_count: u32,
    /// Payload octets sent.
    pub octet_count: u32,
}

/// One RTCP packet of a compound packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    /// A sender report (report blocks are skipped).
    SenderReport(SenderReport),
    /// A receiver report from `ssrc` (report blocks are skipped).
    ReceiverReport {
        /// The reporter's SSRC.
        ssrc: u32,
    },
    /// A source description; the SSRC/CSRC of each chunk with its CNAME if any.
    SourceDescription(Vec<(u32, Option<Bytes>)>),
    /// A goodbye from these sources.
    Bye(Vec<u32>),
    /// Any other packet type (APP, feedback, XR), skipped.
    Other(u8),
}

/// Parses a compound RTCP packet (RFC 3550 §6.1). At most
/// [`MAX_COMPOUND_PACKETS`] packets are read.
pub fn parse_compound(data: &Bytes) -> Result<Vec<RtcpPacket>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        if out.len() == MAX_COMPOUND_PACKETS {
            return Err(RtpError::TooLarge {
                what: "RTCP compound packet",
                limit: MAX_COMPOUND_PACKETS,
            });
        }
        let b0 = read_be(data, pos, 1).ok_or(RtpError::Truncated("RTCP header"))? as u8;
        let pt = read_be(data, pos + 1, 1).ok_or(RtpError::Truncated("RTCP header"))? as u8;
        let words = read_be(data, pos + 2, 2).ok_or(RtpError::Truncated("RTCP header"))? as usize;
        if b0 >> 6 != 2 {
            return Err(RtpError::Version(b0 >> 6));
        }
        let end = pos + 4 * (words + 1);
        let body = data
            .get(pos + 4..end)
            .ok_or(RtpError::Truncated("RTCP packet"))?;
        let count = usize::from(b0 & 0x1f);
        out.push(parse_one(pt, count, &data.slice(pos + 4..end), body)?);
        pos = end;
    }
    Ok(out)
}

fn parse_one(pt: u8, count: usize, bytes: &Bytes, body: &[u8]) -> Result<RtcpPacket> {
    let word =
        |at: usize, what: &'static str| read_be(body, at, 4).ok_or(RtpError::Truncated(what));
    Ok(match pt {
        PT_SR => {
            let ntp = (u64::from(word(4, "SR")?) << 32) | u64::from(word(8, "SR")?);
            RtcpPacket::SenderReport(SenderReport {
                ssrc: word(0, "SR")?,
                ntp,
                rtp_time: word(12, "SR")?,
                packet_count: word(16, "SR")?,
                octet_count: word(20, "SR")?,
            })
        }
        PT_RR => RtcpPacket::ReceiverReport {
            ssrc: word(0, "RR")?,
        },
        PT_SDES => {
            let mut chunks = Vec::new();
            let mut pos = 0;
            for _ in 0..count {
                let ssrc = word(pos, "SDES chunk")?;
                pos += 4;
                let mut cname = None;
                loop {
                    let ty = read_be(body, pos, 1).ok_or(RtpError::Truncated("SDES item"))?;
                    if ty == 0 {
                        // End of the item list, padded to a 32-bit boundary.
                        pos = (pos + 4) & !3;
                        break;
                    }
                    let len =
                        read_be(body, pos + 1, 1).ok_or(RtpError::Truncated("SDES item"))? as usize;
                    let text = bytes
                        .get(pos + 2..pos + 2 + len)
                        .ok_or(RtpError::Truncated("SDES item"))?;
                    if ty == 1 {
                        cname = Some(bytes.slice_ref(text));
                    }
                    pos += 2 + len;
                }
                chunks.push((ssrc, cname));
            }
            RtcpPacket::SourceDescription(chunks)
        }
        PT_BYE => {
            let mut ssrcs = Vec::with_capacity(count);
            for i in 0..count {
                ssrcs.push(word(4 * i, "BYE")?);
            }
            RtcpPacket::Bye(ssrcs)
        }
        other => RtcpPacket::Other(other),
    })
}

/// Writes a sender report without report blocks (28 bytes).
pub fn write_sender_report(out: &mut BytesMut, sr: &SenderReport) {
    out.put_u8(0x80);
    out.put_u8(PT_SR);
    out.put_u16(6);
    out.put_u32(sr.ssrc);
    out.put_u64(sr.ntp);
    out.put_u32(sr.rtp_time);
    out.put_u32(sr.packet_count);
    out.put_u32(sr.octet_count);
}

/// Writes a receiver report without report blocks (8 bytes).
pub fn write_receiver_report(out: &mut BytesMut, ssrc: u32) {
    out.put_u8(0x80);
    out.put_u8(PT_RR);
    out.put_u16(1);
    out.put_u32(ssrc);
}

/// Writes an SDES packet with one chunk carrying a CNAME (at most 255 bytes).
pub fn write_sdes_cname(out: &mut BytesMut, ssrc: u32, cname: &[u8]) {
    let cname = cname.get(..cname.len().min(255)).unwrap_or_default();
    // ssrc + type + len + text + at least one zero, padded to 4 bytes.
    let chunk = (4 + 2 + cname.len() + 1 + 3) & !3;
    out.put_u8(0x81);
    out.put_u8(PT_SDES);
    out.put_u16((chunk / 4) as u16);
    out.put_u32(ssrc);
    out.put_u8(1);
    out.put_u8(cname.len() as u8);
    out.put_slice(cname);
    out.put_bytes(0, chunk - 4 - 2 - cname.len());
}

/// Writes a goodbye for `ssrc`.
pub fn write_bye(out: &mut BytesMut, ssrc: u32) {
    out.put_u8(0x81);
    out.put_u8(PT_BYE);
    out.put_u16(1);
    out.put_u32(ssrc);
}

/// The compound packet a sender sends (RFC 3550 §6.1): SR then SDES CNAME.
pub fn sender_report_compound(sr: &SenderReport, cname: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    write_sender_report(&mut b, sr);
    write_sdes_cname(&mut b, sr.ssrc, cname);
    b.freeze()
}

/// The compound packet a receiver sends: an empty RR then SDES CNAME.
pub fn receiver_report_compound(ssrc: u32, cname: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(32);
    write_receiver_report(&mut b, ssrc);
    write_sdes_cname(&mut b, ssrc, cname);
    b.freeze()
}

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Microseconds since the Unix epoch as a 64-bit NTP timestamp.
pub fn ntp_from_unix_micros(micros: u64) -> u64 {
    let secs = micros / 1_000_000 + NTP_UNIX_OFFSET;
    let frac = ((micros % 1_000_000) << 32) / 1_000_000;
    (secs << 32) | frac
}

/// A 64-bit NTP timestamp as microseconds (of the NTP era).
pub fn ntp_to_micros(ntp: u64) -> u64 {
    let secs = ntp >> 32;
    let frac = ntp & 0xffff_ffff;
    secs * 1_000_000 + ((frac * 1_000_000) >> 32)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn compound_round_trip() {
        let sr = SenderReport {
            ssrc: 0x1234,
            ntp: ntp_from_unix_micros(1_700_000_000_500_000),
            rtp_time: 90_000,
            packet_count: 10,
            octet_count: 1000,
        };
        let mut b = BytesMut::new();
        write_sender_report(&mut b, &sr);
        write_sdes_cname(&mut b, sr.ssrc, b"arcly");
        write_receiver_report(&mut b, 9);
        write_bye(&mut b, 0x1234);
        let pkts = parse_compound(&b.freeze()).unwrap();
        assert_eq!(
            pkts,
            vec![
                RtcpPacket::SenderReport(sr),
                RtcpPacket::SourceDescription(vec![(0x1234, Some(Bytes::from_static(b"arcly")))]),
                RtcpPacket::ReceiverReport { ssrc: 9 },
                RtcpPacket::Bye(vec![0x1234]),
            ]
        );
        assert_eq!(ntp_to_micros(sr.ntp) % 1_000_000, 500_000);
    }

    #[test]
    fn truncated_and_bad_versions_are_errors() {
        assert!(parse_compound(&Bytes::from_static(&[0x80, 200, 0, 6, 0, 0])).is_err());
        assert!(parse_compound(&Bytes::from_static(&[0x40, 200, 0, 0])).is_err());
        // SDES whose item runs past the packet.
        assert!(parse_compound(&Bytes::from_static(&[0x81, 202, 0, 1, 0, 0, 0, 1])).is_err());
        assert_eq!(parse_compound(&Bytes::new()).unwrap(), vec![]);
    }
}
