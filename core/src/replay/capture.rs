//! Reading capture files: pcap (libpcap format) and pcapng, link layers
//! Ethernet, Linux cooked capture v1/v2, BSD loopback / null and raw IP;
//! IPv4/IPv6 with TCP or UDP on top.
//!
//! Invariants:
//! - nothing here panics on a hostile file: every length is checked before
//!   it is used, and every error is a [`CaptureError`] value;
//! - memory is bounded by [`CaptureLimits`]: the file size, the number of
//!   packets and the bytes of payload kept;
//! - packets that are not IPv4/IPv6 TCP/UDP (ARP, ICMP, IP fragments,
//!   truncated by the snap length) are counted in [`CaptureStats`], not kept.

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::DataLink;

use crate::time::Instant;

/// Bounds enforced while reading a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureLimits {
    /// Largest capture accepted, in bytes (default 256 MiB).
    pub max_file_len: usize,
    /// Most packets read (default 4 million); the rest is reported as truncated.
    pub max_packets: usize,
    /// Most transport payload bytes kept over all packets (default 256 MiB).
    pub max_payload_bytes: usize,
}

impl Default for CaptureLimits {
    fn default() -> Self {
        CaptureLimits {
            max_file_len: 256 << 20,
            max_packets: 4_000_000,
            max_payload_bytes: 256 << 20,
        }
    }
}

/// Why a capture could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// The file is larger than [`CaptureLimits::max_file_len`].
    #[error("capture is {len} bytes, more than the limit of {limit}")]
    TooLarge {
        /// The length read (from a reader: the limit + 1, reading stops there).
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The first bytes are neither a pcap nor a pcapng magic number.
    #[error("not a pcap or pcapng file (magic {0:02x?})")]
    UnknownFormat([u8; 4]),
    /// The file header is invalid (pcap: libpcap file header; pcapng: Section Header Block).
    #[error("bad file header: {0}")]
    Header(String),
    /// The link type of the capture (or of a pcapng interface) is not supported.
    #[error("unsupported link type {0}")]
    UnsupportedLinkType(u32),
    /// The capture could not be read from its reader (the caller opened
    /// the file; core does no file system access).
    #[error("cannot read the capture: {message}")]
    Io {
        /// The I/O error text.
        message: String,
    },
}

/// The link layer of a packet (tcpdump.org LINKTYPE_* values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_NULL (0): BSD loopback, a 4-byte address family in host order.
    Null,
    /// LINKTYPE_LOOP (108): OpenBSD loopback, a 4-byte big-endian family.
    Loop,
    /// LINKTYPE_ETHERNET (1): IEEE 802.3, VLAN tags allowed.
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113): Linux cooked capture v1 (16-byte header).
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): Linux cooked capture v2 (20-byte header).
    LinuxSll2,
    /// LINKTYPE_RAW (101) / IPV4 (228) / IPV6 (229): the packet is an IP packet.
    RawIp,
}

impl LinkType {
    fn from_datalink(dl: DataLink) -> Result<LinkType, CaptureError> {
        Ok(match dl {
            DataLink::NULL => LinkType::Null,
            DataLink::LOOP => LinkType::Loop,
            DataLink::ETHERNET => LinkType::Ethernet,
            DataLink::LINUX_SLL => LinkType::LinuxSll,
            DataLink::LINUX_SLL2 => LinkType::LinuxSll2,
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => LinkType::RawIp,
            other => return Err(CaptureError::UnsupportedLinkType(u32::from(other))),
        })
    }
}

/// The transport header of a [`Packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TCP segment (RFC 9293 §3.1).
    Tcp {
        /// Sequence number of the first payload byte (or of the SYN/FIN).
        seq: u32,
        /// SYN flag.
        syn: bool,
        /// FIN flag.
        fin: bool,
        /// RST flag.
        rst: bool,
    },
    /// A UDP datagram (RFC 768).
    Udp,
}

/// One TCP segment or UDP datagram from the capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// 0-based position among the packets kept (capture order).
    pub index: usize,
    /// Capture timestamp, microseconds since the first packet of the file.
    pub time: Instant,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// TCP or UDP and the TCP header fields the reassembly needs.
    pub transport: Transport,
    /// The transport payload.
    pub payload: Bytes,
}

/// What was skipped while reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packet records read from the file.
    pub records: u64,
    /// Records that are not IPv4/IPv6 TCP/UDP (ARP, ICMP, other ethertypes).
    pub not_tcp_udp: u64,
    /// Records whose headers are malformed or cut by the snap length.
    pub malformed: u64,
    /// IP fragments (not reassembled).
    pub fragments: u64,
    /// Whether reading stopped early: a truncated or corrupt record, or a limit.
    pub truncated: bool,
}

/// A capture read into memory: its TCP/UDP packets in capture order.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// The packets kept.
    pub packets: Vec<Packet>,
    /// Counters of what was skipped.
    pub stats: CaptureStats,
    /// Why reading stopped early, if it did (the packets before are kept).
    pub stopped: Option<String>,
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

impl Capture {
    /// Reads a capture from `reader` (pcap or pcapng, told by its magic): at
    /// most [`CaptureLimits::max_file_len`] bytes are read, a longer input is
    /// [`CaptureError::TooLarge`]. The caller opens the file (core does no
    /// file system access; `arcly replay` and the `replay` example do).
    pub fn from_reader(
        reader: impl std::io::Read,
        limits: CaptureLimits,
    ) -> Result<Capture, CaptureError> {
        let mut data = Vec::new();
        let cap = u64::try_from(limits.max_file_len)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        reader
            .take(cap)
            .read_to_end(&mut data)
            .map_err(|e| CaptureError::Io {
                message: e.to_string(),
            })?;
        if data.len() > limits.max_file_len {
            return Err(CaptureError::TooLarge {
                len: data.len(),
                limit: limits.max_file_len,
            });
        }
        Capture::from_bytes(&data, limits)
    }

    /// Reads a capture held in memory (pcap or pcapng, told by its magic).
    pub fn from_bytes(data: &[u8], limits: CaptureLimits) -> Result<Capture, CaptureError> {
        if data.len() > limits.max_file_len {
            return Err(CaptureError::TooLarge {
                len: data.len(),
                limit: limits.max_file_len,
            });
        }
        let mut magic = [0u8; 4];
        for (d, s) in magic.iter_mut().zip(data.iter()) {
            *d = *s;
        }
        let mut b = Builder::new(limits);
        if PCAP_MAGICS.contains(&magic) {
            read_pcap(data, &mut b)?;
        } else if magic == PCAPNG_MAGIC {
            read_pcapng(data, &mut b)?;
        } else {
            return Err(CaptureError::UnknownFormat(magic));
        }
        Ok(b.capture)
    }
}

struct Builder {
    limits: CaptureLimits,
    capture: Capture,
    first: Option<Duration>,
    payload_bytes: usize,
}

impl Builder {
    fn new(limits: CaptureLimits) -> Self {
        Builder {
            limits,
            capture: Capture::default(),
            first: None,
            payload_bytes: 0,
        }
    }

    fn stop(&mut self, why: String) {
        self.capture.stats.truncated = true;
        self.capture.stopped = Some(why);
    }

    /// Adds one record; false when a limit says to stop reading.
    fn record(&mut self, link: LinkType, ts: Duration, data: &[u8]) -> bool {
        if self.capture.stats.records >= self.limits.max_packets as u64 {
            self.stop(format!(
                "more than {} packet records",
                self.limits.max_packets
            ));
            return false;
        }
        self.capture.stats.records += 1;
        let first = *self.first.get_or_insert(ts);
        // Timestamps going backwards (clock steps) are clamped to the first one.
        let rel = ts.saturating_sub(first);
        let time = Instant::from_duration(rel);
        match decode(link, data) {
            Decoded::Packet(src, dst, transport, payload) => {
                if self.payload_bytes + payload.len() > self.limits.max_payload_bytes {
                    self.stop(format!(
                        "more than {} payload bytes",
                        self.limits.max_payload_bytes
                    ));
                    return false;
                }
                self.payload_bytes += payload.len();
                let index = self.capture.packets.len();
                self.capture.packets.push(Packet {
                    index,
                    time,
                    src,
                    dst,
                    transport,
                    payload: Bytes::copy_from_slice(payload),
                });
            }
            Decoded::Other => self.capture.stats.not_tcp_udp += 1,
            Decoded::Fragment => self.capture.stats.fragments += 1,
            Decoded::Malformed => self.capture.stats.malformed += 1,
        }
        true
    }
}

fn read_pcap(data: &[u8], b: &mut Builder) -> Result<(), CaptureError> {
    let (mut rest, parser) =
        PcapParser::new(data).map_err(|e| CaptureError::Header(e.to_string()))?;
    let link = LinkType::from_datalink(parser.header().datalink)?;
    while !rest.is_empty() {
        match parser.next_packet(rest) {
            Ok((r, pkt)) => {
                rest = r;
                if !b.record(link, pkt.timestamp, &pkt.data) {
                    return Ok(());
                }
            }
            Err(e) => {
                b.stop(format!("pcap record: {e}"));
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The length of one timestamp unit of a pcapng interface, in nanoseconds
/// per unit as a fraction (pcapng spec §4.2, option `if_tsresol`).
fn tsresol_to_duration(raw: u64, tsresol: u8) -> Duration {
    let exp = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        // 10^-exp seconds per unit.
        match exp {
            0..=9 => {
                let per = 10u64.pow(9 - exp);
                Duration::from_nanos(raw.saturating_mul(per))
            }
            _ => {
                let div = 10u64.checked_pow(exp - 9).unwrap_or(u64::MAX);
                Duration::from_nanos(raw / div)
            }
        }
    } else {
        // 2^-exp seconds per unit.
        let secs = raw.checked_shr(exp).unwrap_or(0);
        let frac = if exp == 0 {
            0
        } else {
            raw & (u64::MAX.checked_shr(64 - exp.min(64)).unwrap_or(0))
        };
        let nanos = (u128::from(frac) * 1_000_000_000)
            .checked_shr(exp)
            .unwrap_or(0);
        Duration::from_secs(secs) + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
    }
}

fn read_pcapng(data: &[u8], b: &mut Builder) -> Result<(), CaptureError> {
    let (mut rest, mut parser) =
        PcapNgParser::new(data).map_err(|e| CaptureError::Header(e.to_string()))?;
    // (link type, if_tsresol) per interface of the current section.
    let mut ifaces: Vec<(Result<LinkType, u32>, u8)> = Vec::new();
    while !rest.is_empty() {
        let block = match parser.next_block(rest) {
            Ok((r, block)) => {
                rest = r;
                block
            }
            Err(e) => {
                b.stop(format!("pcapng block: {e}"));
                return Ok(());
            }
        };
        match block {
            Block::SectionHeader(_) => ifaces.clear(),
            Block::InterfaceDescription(idb) => {
                if ifaces.len() >= 4096 {
                    b.stop("more than 4096 pcapng interfaces".into());
                    return Ok(());
                }
                let tsresol = idb
                    .options
                    .iter()
                    .find_map(|o| match o {
                        InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                        _ => None,
                    })
                    .unwrap_or(6);
                let link =
                    LinkType::from_datalink(idb.linktype).map_err(|_| u32::from(idb.linktype));
                ifaces.push((link, tsresol));
            }
            Block::EnhancedPacket(epb) => {
                let Some((link, tsresol)) = usize::try_from(epb.interface_id)
                    .ok()
                    .and_then(|i| ifaces.get(i))
                else {
                    b.capture.stats.malformed += 1;
                    continue;
                };
                let link = match link {
                    Ok(l) => *l,
                    Err(code) => return Err(CaptureError::UnsupportedLinkType(*code)),
                };
                // pcap-file reports the raw 64-bit timestamp as nanoseconds;
                // its unit is really the interface's if_tsresol.
                let raw = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                let ts = tsresol_to_duration(raw, *tsresol);
                if !b.record(link, ts, &epb.data) {
                    return Ok(());
                }
            }
            Block::SimplePacket(spb) => {
                // No timestamp: the packet shares the previous one's time.
                let Some((Ok(link), _)) = ifaces.first() else {
                    b.capture.stats.malformed += 1;
                    continue;
                };
                let ts = b.first.unwrap_or_default()
                    + b.capture
                        .packets
                        .last()
                        .map(|p| Duration::from_micros(p.time.as_micros()))
                        .unwrap_or_default();
                if !b.record(*link, ts, &spb.data) {
                    return Ok(());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

enum Decoded<'a> {
    Packet(SocketAddr, SocketAddr, Transport, &'a [u8]),
    Other,
    Fragment,
    Malformed,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

fn be16(d: &[u8], at: usize) -> Option<u16> {
    crate::big_endian::read_be(d, at, 2).and_then(|v| u16::try_from(v).ok())
}

/// Strips the link header; `None` when the payload is not IP.
fn link_payload(link: LinkType, data: &[u8]) -> Result<Option<&[u8]>, ()> {
    match link {
        LinkType::RawIp => Ok(Some(data)),
        LinkType::Null | LinkType::Loop => {
            // 4-byte address family: AF_INET is 2 everywhere; AF_INET6 is 10
            // (Linux), 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS). The byte
            // order is the capturing host's for NULL and big-endian for LOOP,
            // so both orders are accepted.
            let fam: [u8; 4] = data.get(..4).and_then(|s| s.try_into().ok()).ok_or(())?;
            let le = u32::from_le_bytes(fam);
            let be = u32::from_be_bytes(fam);
            let v = if le < 256 { le } else { be };
            match v {
                2 | 10 | 24 | 28 | 30 => Ok(data.get(4..)),
                _ => Ok(None),
            }
        }
        LinkType::LinuxSll => {
            // 16-byte header, protocol type at offset 14.
            let proto = be16(data, 14).ok_or(())?;
            match proto {
                ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Ok(data.get(16..)),
                _ => Ok(None),
            }
        }
        LinkType::LinuxSll2 => {
            // 20-byte header, protocol type at offset 0.
            let proto = be16(data, 0).ok_or(())?;
            if data.len() < 20 {
                return Err(());
            }
            match proto {
                ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Ok(data.get(20..)),
                _ => Ok(None),
            }
        }
        // Ethernet is sliced by etherparse directly (VLAN tags included).
        LinkType::Ethernet => Ok(None),
    }
}

fn decode(link: LinkType, data: &[u8]) -> Decoded<'_> {
    let sliced = if link == LinkType::Ethernet {
        SlicedPacket::from_ethernet(data)
    } else {
        match link_payload(link, data) {
            Err(()) => return Decoded::Malformed,
            Ok(None) => return Decoded::Other,
            Ok(Some(ip)) => SlicedPacket::from_ip(ip),
        }
    };
    let Ok(p) = sliced else {
        return Decoded::Malformed;
    };
    let (src, dst, fragmented) = match &p.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let s: Ipv4Addr = h.source_addr();
            let d: Ipv4Addr = h.destination_addr();
            (IpAddr::V4(s), IpAddr::V4(d), v4.is_payload_fragmented())
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            let s: Ipv6Addr = h.source_addr();
            let d: Ipv6Addr = h.destination_addr();
            (IpAddr::V6(s), IpAddr::V6(d), v6.is_payload_fragmented())
        }
        _ => return Decoded::Other,
    };
    if fragmented {
        return Decoded::Fragment;
    }
    match p.transport {
        Some(TransportSlice::Tcp(t)) => Decoded::Packet(
            SocketAddr::new(src, t.source_port()),
            SocketAddr::new(dst, t.destination_port()),
            Transport::Tcp {
                seq: t.sequence_number(),
                syn: t.syn(),
                fin: t.fin(),
                rst: t.rst(),
            },
            t.payload(),
        ),
        Some(TransportSlice::Udp(u)) => Decoded::Packet(
            SocketAddr::new(src, u.source_port()),
            SocketAddr::new(dst, u.destination_port()),
            Transport::Udp,
            u.payload(),
        ),
        _ => Decoded::Other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn tsresol_units() {
        assert_eq!(
            tsresol_to_duration(1_500_000, 6),
            Duration::from_millis(1500)
        );
        assert_eq!(tsresol_to_duration(1_500, 3), Duration::from_millis(1500));
        assert_eq!(tsresol_to_duration(7, 9), Duration::from_nanos(7));
        // 2^-1 s units: 3 units = 1.5 s.
        assert_eq!(tsresol_to_duration(3, 0x81), Duration::from_millis(1500));
        // Absurd exponents do not panic.
        let _ = tsresol_to_duration(u64::MAX, 0x7f);
        let _ = tsresol_to_duration(u64::MAX, 0xff);
        let _ = tsresol_to_duration(u64::MAX, 0);
    }

    #[test]
    fn unknown_magic_and_empty_are_errors() {
        assert_eq!(
            Capture::from_bytes(b"GIF8", CaptureLimits::default()).unwrap_err(),
            CaptureError::UnknownFormat(*b"GIF8")
        );
        assert!(matches!(
            Capture::from_bytes(b"", CaptureLimits::default()),
            Err(CaptureError::UnknownFormat(_))
        ));
    }
}
