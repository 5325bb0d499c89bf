//! Frames to RTP packets, once per stream.
//!
//! A [`Packetizer`] belongs to one track of one stream and is shared by every
//! viewer of it: it gives the track its SSRC, its sequence numbers and its
//! RTP time origin, so all viewers receive the same packets. The packets of
//! one frame are built into one buffer (the frame's
//! [`EgressSlot::Rtp`](crate::engine::EgressSlot::Rtp) cache) as a run of
//! `[length: u16][RTP packet]` records: over TCP a viewer adds only the
//! `$` and channel bytes in front of each record (RFC 2326 §10.12), over UDP
//! it sends each packet as is.

use bytes::{BufMut, Bytes, BytesMut};

use super::{aac, h264, h265, read_be, RtpPacket, HEADER_LEN};
use crate::codec::h264::AvcConfig;
use crate::codec::h265::{HevcConfig, NAL_PPS, NAL_SPS, NAL_VPS};
use crate::codec::{h264 as avc, h265 as hevc};
use crate::frame::{rescale, Codec, Frame};

/// Largest RTP packet built (header included): fits a 1500-byte Ethernet
/// MTU with IP/UDP headers and room for tunnels.
pub const MAX_PACKET: usize = 1400;

/// The RTP clock rate of a codec (90 kHz video, the sample rate for AAC,
/// 48 kHz for Opus).
pub fn clock_rate(codec: Codec, audio_rate: Option<u32>) -> u32 {
    match codec {
        Codec::H264 | Codec::H265 | Codec::Av1 | Codec::Vp8 | Codec::Vp9 => 90_000,
        Codec::Opus => 48_000,
        Codec::Aac => audio_rate.unwrap_or(48_000),
    }
}

/// Sequence number and timestamp of a frame's first packet, as viewers'
/// `RTP-Info` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstPacket {
    /// Sequence number.
    pub sequence: u16,
    /// RTP timestamp.
    pub timestamp: u32,
}

/// The packetizer of one track of one stream (see the module documentation).
///
/// Invariant: sequence numbers are consecutive over every frame it
/// packetized, in the order it was called.
#[derive(Debug, Clone)]
pub struct Packetizer {
    codec: Codec,
    payload_type: u8,
    clock_rate: u32,
    ssrc: u32,
    next_seq: u16,
    ts_offset: u32,
    /// Parameter sets (Annex B free NAL units) sent in front of keyframes.
    param_sets: Vec<Bytes>,
    packets: u32,
    octets: u32,
    last_timestamp: Option<(i64, u32)>,
}

impl Packetizer {
    /// A packetizer for `codec` with these stream-wide random values.
    pub fn new(codec: Codec, payload_type: u8, clock_rate: u32, seed: u64) -> Self {
        Packetizer {
            codec,
            payload_type,
            clock_rate: clock_rate.max(1),
            ssrc: (seed >> 32) as u32 | 1,
            next_seq: (seed >> 16) as u16,
            ts_offset: seed as u32 & 0x7fff_ffff,
            param_sets: Vec::new(),
            packets: 0,
            octets: 0,
            last_timestamp: None,
        }
    }

    /// The codec of the track.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The SSRC of the track.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The payload type.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// The RTP clock rate.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// Packets and payload octets sent so far (for sender reports).
    pub fn counts(&self) -> (u32, u32) {
        (self.packets, self.octets)
    }

    /// The RTP timestamp of a time in ticks of `timebase`.
    pub fn rtp_time(&self, ticks: i64, timebase: u32) -> u32 {
        (rescale(ticks, timebase, self.clock_rate) as u32).wrapping_add(self.ts_offset)
    }

    /// The packets of `frame` as `[length][packet]` records (empty for a
    /// config frame, which updates the parameter sets sent before keyframes).
    pub fn packetize(&mut self, frame: &Frame) -> Bytes {
        if frame.is_config() {
            self.param_sets = match frame.codec {
                Codec::H264 => AvcConfig::parse(&frame.payload)
                    .map(|c| c.sps.into_iter().chain(c.pps).collect())
                    .unwrap_or_default(),
                Codec::H265 => HevcConfig::parse(&frame.payload)
                    .map(|c| {
                        [NAL_VPS, NAL_SPS, NAL_PPS]
                            .iter()
                            .flat_map(|t| c.units(*t).cloned().collect::<Vec<_>>())
                            .collect()
                    })
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            return Bytes::new();
        }
        let ts = self.rtp_time(frame.pts, frame.timebase);
        self.last_timestamp = Some((frame.pts_in(self.clock_rate), ts));
        let mut out = BytesMut::with_capacity(frame.payload.len() + frame.payload.len() / 64 + 64);
        let max_payload = MAX_PACKET - HEADER_LEN;
        let (pt, ssrc) = (self.payload_type, self.ssrc);
        let mut seq = self.next_seq;
        let mut packets = 0u32;
        let mut octets = 0u32;
        let mut emit = |parts: &[&[u8]], marker: bool| {
            let len: usize = parts.iter().map(|p| p.len()).sum();
            out.put_u16((HEADER_LEN + len) as u16);
            RtpPacket::write_header(&mut out, marker, pt, seq, ts, ssrc);
            for p in parts {
                out.put_slice(p);
            }
            seq = seq.wrapping_add(1);
            packets += 1;
            octets = octets.wrapping_add(len as u32);
        };
        match frame.codec {
            Codec::H264 | Codec::H265 => {
                let mut nals: Vec<&[u8]> = Vec::new();
                let units: Vec<&[u8]> = avc::iter_length_prefixed(&frame.payload, 4)
                    .map_while(|n| n.ok())
                    .collect();
                if frame.is_keyframe() {
                    let has_params = units.iter().any(|n| {
                        n.first().is_some_and(|h| match frame.codec {
                            Codec::H264 => avc::nal_type(*h) == avc::NAL_SPS,
                            _ => hevc::nal_type(*h) == NAL_SPS,
                        })
                    });
                    if !has_params {
                        nals.extend(self.param_sets.iter().map(|b| &b[..]));
                    }
                }
                nals.extend(units);
                if frame.codec == Codec::H264 {
                    h264::packetize(&nals, max_payload, &mut emit);
                } else {
                    h265::packetize(&nals, max_payload, &mut emit);
                }
            }
            Codec::Aac => aac::packetize(&frame.payload, max_payload, &mut emit),
            Codec::Opus | Codec::Av1 | Codec::Vp8 | Codec::Vp9 => {
                for (k, piece) in frame.payload.chunks(max_payload).enumerate() {
                    let last = (k + 1) * max_payload >= frame.payload.len();
                    emit(&[piece], last);
                }
            }
        }
        self.next_seq = seq;
        self.packets = self.packets.wrapping_add(packets);
        self.octets = self.octets.wrapping_add(octets);
        out.freeze()
    }

    /// The latest frame time packetized: (ticks of the clock rate, RTP time).
    pub fn last_timestamp(&self) -> Option<(i64, u32)> {
        self.last_timestamp
    }
}

/// The RTP packets in a buffer built by [`Packetizer::packetize`], each
/// with its 2-byte length in front (the tail of a TCP interleaved header).
pub fn records(buf: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let len = read_be(buf, pos, 2)? as usize;
        let rec = buf.get(pos..pos + 2 + len)?;
        pos += 2 + len;
        Some(buf.slice_ref(rec))
    })
}

/// Sequence number and timestamp of the first packet of a built buffer.
pub fn first_packet(buf: &Bytes) -> Option<FirstPacket> {
    Some(FirstPacket {
        sequence: read_be(buf, 2 + 2, 2)? as u16,
        timestamp: read_be(buf, 2 + 4, 4)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::frame::FrameFlags;

    #[test]
    fn packets_are_consecutive_and_parse() {
        let mut p = Packetizer::new(Codec::H264, 96, 90_000, 0x1234_5678_9abc_def0);
        let avc = AvcConfig::from_parameter_sets(
            vec![Bytes::from_static(avc::tests::SPS_640X360)],
            vec![Bytes::from_static(avc::tests::PPS_640X360)],
        )
        .unwrap()
        .to_bytes();
        let cfg = Frame {
            codec: Codec::H264,
            flags: FrameFlags::CONFIG,
            pts: 0,
            dts: 0,
            timebase: 1000,
            payload: avc,
        };
        assert!(p.packetize(&cfg).is_empty());
        let mut payload = vec![0, 0, 11, 0xb9, 0x65];
        payload.extend((0..3000).map(|i| i as u8));
        let key = Frame {
            flags: FrameFlags::KEYFRAME,
            pts: 40,
            dts: 40,
            payload: Bytes::from(payload),
            ..cfg.clone()
        };
        let buf = p.packetize(&key);
        let pkts: Vec<_> = records(&buf)
            .map(|r| RtpPacket::parse(&r.slice(2..)).unwrap())
            .collect();
        // SPS, PPS, then 3 FU-A.
        assert_eq!(pkts.len(), 5);
        let first = first_packet(&buf).unwrap();
        assert_eq!(first.sequence, pkts[0].sequence);
        assert_eq!(first.timestamp, p.rtp_time(40, 1000));
        for w in pkts.windows(2) {
            assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
        }
        assert!(pkts
            .iter()
            .all(|k| k.ssrc == p.ssrc() && k.payload.len() <= MAX_PACKET));
        assert_eq!(pkts.iter().filter(|k| k.marker).count(), 1);
        let next = p.packetize(&Frame {
            flags: FrameFlags::NONE,
            pts: 80,
            dts: 80,
            payload: Bytes::from_static(&[0, 0, 0, 2, 0x41, 1]),
            ..cfg
        });
        assert_eq!(
            first_packet(&next).unwrap().sequence,
            pkts[4].sequence.wrapping_add(1)
        );
    }

    use crate::rtp::receiver::{Timeline, TrackParams, TrackReceiver};
    use crate::time::Instant;
    use proptest::prelude::*;

    fn h264_frame(i: usize, key: bool, sizes: &[usize]) -> Frame {
        let mut payload = Vec::new();
        for (k, size) in sizes.iter().enumerate() {
            payload.extend_from_slice(&(*size as u32 + 1).to_be_bytes());
            payload.push(if key { 0x65 } else { 0x41 });
            payload.extend((0..*size).map(|b| (b + i + k) as u8));
        }
        Frame {
            codec: Codec::H264,
            flags: if key {
                FrameFlags::KEYFRAME
            } else {
                FrameFlags::NONE
            },
            pts: i as i64 * 3000,
            dts: i as i64 * 3000,
            timebase: 90_000,
            payload: Bytes::from(payload),
        }
    }

    proptest! {
        /// Packetize → lose some packets → depacketize: every frame that comes
        /// out is byte-identical to the one sent, nothing comes out between a
        /// loss and the next keyframe, and without loss every frame comes out.
        #[test]
        fn h264_round_trip_with_loss(
            frames in prop::collection::vec((any::<bool>(), prop::collection::vec(1usize..5000, 1..4)), 1..12),
            loss in prop::collection::vec(any::<bool>(), 0..200),
            lose in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let mut p = Packetizer::new(Codec::H264, 96, 90_000, seed);
            let sent: Vec<Frame> = frames
                .iter()
                .enumerate()
                .map(|(i, (key, sizes))| h264_frame(i, i == 0 || *key, sizes))
                .collect();
            let mut rx = TrackReceiver::new(TrackParams::H264 { sps: None, pps: None }, 90_000);
            let mut tl = Timeline::new();
            let mut out = Vec::new();
            let mut n = 0;
            for f in &sent {
                for rec in records(&p.packetize(f)) {
                    // The very first packet cannot be missed (no gap before it).
                    let dropped = lose && n > 0 && loss.get(n).copied().unwrap_or(false);
                    n += 1;
                    if !dropped {
                        let pkt = RtpPacket::parse(&rec.slice(2..)).unwrap();
                        let _ = rx.handle_packet(Instant::ZERO, &mut tl, pkt, &mut out);
                    }
                }
            }
            let base = out.first().map(|f| f.pts).unwrap_or(0);
            let first_sent = out.first().map(|f| sent.iter().position(|s| s.payload == f.payload).unwrap()).unwrap_or(0);
            let mut last_idx: Option<usize> = None;
            for f in &out {
                let idx = ((f.pts - base) / 3000) as usize + first_sent;
                prop_assert_eq!(&f.payload, &sent[idx].payload);
                if let Some(l) = last_idx {
                    prop_assert!(idx > l);
                    if idx != l + 1 {
                        prop_assert!(f.is_keyframe(), "frame after a gap is not a keyframe");
                    }
                }
                last_idx = Some(idx);
            }
            if !lose {
                prop_assert_eq!(out.len(), sent.len());
            }
        }
    }
}
