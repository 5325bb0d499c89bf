//! Opus over RTP (RFC 7587): one Opus packet per RTP packet, 48 kHz clock.

use super::{Result, RtpError, RtpPacket, Unit};

/// The RTP clock rate of Opus, whatever the coded rate (RFC 7587 §4.1).
pub const CLOCK_RATE: u32 = 48_000;

/// One Opus packet per RTP packet: the unit is the payload.
pub fn depacketize(pkt: &RtpPacket, out: &mut Vec<Unit>) -> Result<()> {
    if pkt.payload.is_empty() {
        return Err(RtpError::Truncated("Opus packet"));
    }
    out.push(Unit {
        timestamp: pkt.timestamp,
        data: pkt.payload.clone(),
        keyframe: true,
    });
    Ok(())
}
