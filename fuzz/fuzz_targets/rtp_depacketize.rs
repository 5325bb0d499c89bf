//! RTP/RTCP codecs and the depacketizers (core/src/rtp) fed a run of
//! packets: the first byte chooses the codec (H.264, H.265, AAC, LATM,
//! Opus), then each packet is a 1-byte length and that many bytes, parsed
//! as RTP (even lengths) or RTCP (odd lengths).
//!
//! Invariants: no panic; per track, frames come out with strictly
//! increasing decode times and a payload no larger than MAX_ACCESS_UNIT.
#![no_main]

use arcly::rtp::aac::AuHeaderLayout;
use arcly::rtp::receiver::{Timeline, TrackParams, TrackReceiver};
use arcly::rtp::{rtcp, RtpPacket, MAX_ACCESS_UNIT};
use arcly::Instant;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, mut rest)) = data.split_first() else {
        return;
    };
    let (params, rate) = match which % 5 {
        0 => (TrackParams::H264 { sps: None, pps: None }, 90_000),
        1 => (TrackParams::H265 { vps: None, sps: None, pps: None }, 90_000),
        2 => (
            TrackParams::Aac { config: Bytes::from_static(&[0x12, 0x10]), layout: AuHeaderLayout::default() },
            44_100,
        ),
        3 => (TrackParams::AacLatm { config: Bytes::from_static(&[0x12, 0x10]) }, 44_100),
        _ => (TrackParams::Opus { head: Bytes::from_static(b"OpusHead") }, 48_000),
    };
    let mut rx = TrackReceiver::new(params, rate);
    let mut tl = Timeline::new();
    let mut out = Vec::new();
    let mut now = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (pkt, tail) = tail.split_at(len);
        rest = tail;
        now += 1000;
        let b = Bytes::copy_from_slice(pkt);
        if len % 2 == 1 {
            if let Ok(pkts) = rtcp::parse_compound(&b) {
                for p in pkts {
                    if let rtcp::RtcpPacket::SenderReport(sr) = p {
                        rx.handle_sender_report(Instant::from_micros(now), &mut tl, &sr);
                    }
                }
            }
        } else if let Ok(p) = RtpPacket::parse(&b) {
            let _ = rx.handle_packet(Instant::from_micros(now), &mut tl, p, &mut out);
        }
    }
    let mut last = None;
    for f in out.iter().filter(|f| !f.is_config()) {
        assert!(f.payload.len() <= MAX_ACCESS_UNIT);
        if let Some(l) = last {
            assert!(f.dts > l, "dts {} after {l}", f.dts);
        }
        last = Some(f.dts);
    }
});
