//! Replay determinism, link-layer and file-format variants, TCP
//! perturbations (reordering, retransmissions, overlaps, loss) and hostile
//! files, all derived from the `ffmpeg_publish_arcly.pcap` fixture by
//! rewriting its packets.
#![cfg(feature = "replay")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use arcly::replay::{
    Capture, CaptureError, CaptureLimits, Direction, EventKind, Replay, ReplayConfig,
};
use arcly::Frame;

const SERVER_PORT: u16 = 19360;

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn replay(bytes: &[u8]) -> Replay {
    Replay::from_bytes(bytes, &ReplayConfig::default()).unwrap()
}

/// One IPv4 packet of the fixture with its capture time.
#[derive(Clone)]
struct Rec {
    ts_us: u64,
    ip: Vec<u8>,
}

/// Reads the (little-endian, microsecond, Ethernet) pcap fixture.
fn records(pcap: &[u8]) -> Vec<Rec> {
    assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    assert_eq!(u32::from_le_bytes(pcap[20..24].try_into().unwrap()), 1);
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let u = |o: usize| u32::from_le_bytes(pcap[at + o..at + o + 4].try_into().unwrap());
        let ts_us = u64::from(u(0)) * 1_000_000 + u64::from(u(4));
        let len = u(8) as usize;
        let frame = &pcap[at + 16..at + 16 + len];
        assert_eq!(&frame[12..14], &[0x08, 0x00], "IPv4 over Ethernet");
        out.push(Rec {
            ts_us,
            ip: frame[14..].to_vec(),
        });
        at += 16 + len;
    }
    out
}

fn write_pcap(linktype: u32, recs: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&262_144u32.to_le_bytes());
    out.extend_from_slice(&linktype.to_le_bytes());
    for (ts, data) in recs {
        out.extend_from_slice(&((ts / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((ts % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

/// A pcapng file with one interface whose timestamps are nanoseconds
/// (`if_tsresol` = 9), so the reader must honour the option.
fn write_pcapng_ns(linktype: u16, recs: &[(u64, Vec<u8>)]) -> Vec<u8> {
    fn block(out: &mut Vec<u8>, ty: u32, body: &[u8]) {
        let len = (12 + body.len()) as u32;
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&len.to_le_bytes());
    }
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0A0D_0D0A, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&linktype.to_le_bytes());
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&262_144u32.to_le_bytes());
    idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0]); // if_tsresol = 9
    idb.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
    block(&mut out, 1, &idb);
    for (ts, data) in recs {
        let ns = ts * 1000;
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((ns >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ns as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(data);
        while epb.len() % 4 != 0 {
            epb.push(0);
        }
        block(&mut out, 6, &epb);
    }
    out
}

/// Header lengths, ports, sequence number and payload of an IPv4/TCP packet.
struct Tcp {
    ihl: usize,
    thl: usize,
    dst_port: u16,
    seq: u32,
    payload: Vec<u8>,
}

fn tcp(ip: &[u8]) -> Tcp {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let t = &ip[ihl..total];
    let thl = usize::from(t[12] >> 4) * 4;
    Tcp {
        ihl,
        thl,
        dst_port: u16::from_be_bytes([t[2], t[3]]),
        seq: u32::from_be_bytes(t[4..8].try_into().unwrap()),
        payload: t[thl..].to_vec(),
    }
}

/// The packet with another sequence number and payload (checksums are not
/// checked by the replay, so they are left stale).
fn with_payload(ip: &[u8], seq: u32, payload: &[u8]) -> Vec<u8> {
    let t = tcp(ip);
    let mut out = ip[..t.ihl + t.thl].to_vec();
    out[t.ihl + 4..t.ihl + 8].copy_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(payload);
    let total = out.len() as u16;
    out[2..4].copy_from_slice(&total.to_be_bytes());
    out
}

fn to_ipv6(ip: &[u8]) -> Vec<u8> {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let seg = &ip[ihl..total];
    let mut out = vec![0x60, 0, 0, 0];
    out.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    out.extend_from_slice(&[6, 64]);
    let mut lo = [0u8; 16];
    lo[15] = 1;
    out.extend_from_slice(&lo);
    out.extend_from_slice(&lo);
    out.extend_from_slice(seg);
    out
}

fn frames(r: &Replay) -> Vec<Frame> {
    r.flows[0].frames(Direction::ToServer).cloned().collect()
}

#[test]
fn replaying_twice_is_byte_identical() {
    for name in [
        "ffmpeg_publish_arcly.pcap",
        "arcly_play_ffmpeg.pcapng",
        "gst_publish_arcly.pcap",
        "ffmpeg_publish_nginx.pcap",
    ] {
        let bytes = fixture_bytes(name);
        let a = replay(&bytes);
        let b = replay(&bytes);
        assert_eq!(a.to_json_lines(), b.to_json_lines(), "{name}");
        assert_eq!(a.summary(), b.summary(), "{name}");
        assert!(!a.to_json_lines().is_empty());
        for (x, y) in a.flows.iter().zip(&b.flows) {
            assert!(x.output == y.output, "{name}");
            assert_eq!(x.seed, y.seed, "{name}");
        }
    }
}

#[test]
fn a_wrong_seed_changes_only_the_handshake_bytes() {
    let bytes = fixture_bytes("ffmpeg_publish_arcly.pcap");
    let learned = replay(&bytes);
    let f = &learned.flows[0];
    assert!(f.seed_learned);
    // Giving the learned seed explicitly is the same replay.
    let cfg = ReplayConfig::default().with_seed(Some(f.seed));
    let same = Replay::from_bytes(&bytes, &cfg).unwrap();
    assert!(same.flows[0].output == f.captured_output);
    assert!(!same.flows[0].seed_learned);
    // Another seed: S1 (bytes 9..1537 of S0S1S2 are random) differs, the
    // S2 echo of C1 and everything after the handshake is identical.
    let cfg = ReplayConfig::default().with_seed(Some(f.seed ^ 1));
    let other = Replay::from_bytes(&bytes, &cfg).unwrap();
    let o = &other.flows[0];
    // ffmpeg sends a digest C1, so S1 and S2 are both random (S2 ends with
    // an HMAC over its random bytes); S0, S1's time and version, and all
    // bytes after the handshake do not depend on the seed.
    assert_eq!(o.output.len(), f.captured_output.len());
    assert!(o.output[9..3073] != f.captured_output[9..3073]);
    assert!(o.output[3073..] == f.captured_output[3073..]);
    assert!(o.output[..9] == f.captured_output[..9]);
    assert_eq!(other.to_json_lines(), learned.to_json_lines());
}

#[test]
fn link_types_ip_versions_and_pcapng_give_the_same_events() {
    let original = fixture_bytes("ffmpeg_publish_arcly.pcap");
    let want = replay(&original).to_json_lines();
    let recs = records(&original);
    let map = |f: &dyn Fn(&[u8]) -> Vec<u8>| -> Vec<(u64, Vec<u8>)> {
        recs.iter().map(|r| (r.ts_us, f(&r.ip))).collect()
    };
    let eth = |ip: &[u8]| {
        let mut v = vec![0u8; 12];
        v.extend_from_slice(&[0x08, 0x00]);
        v.extend_from_slice(ip);
        v
    };
    let variants: Vec<(&str, Vec<u8>)> = vec![
        // BSD loopback, AF_INET in host (little-endian) order.
        (
            "null",
            write_pcap(0, &map(&|ip| [&2u32.to_le_bytes()[..], ip].concat())),
        ),
        // OpenBSD loop, big-endian AF_INET6 (24), carrying IPv6.
        (
            "loop ipv6",
            write_pcap(
                108,
                &map(&|ip| [&24u32.to_be_bytes()[..], &to_ipv6(ip)].concat()),
            ),
        ),
        ("raw ip", write_pcap(101, &map(&|ip| ip.to_vec()))),
        // Linux cooked v1 with IPv6.
        (
            "sll ipv6",
            write_pcap(
                113,
                &map(&|ip| {
                    let mut h = vec![0u8; 14];
                    h.extend_from_slice(&[0x86, 0xdd]);
                    h.extend_from_slice(&to_ipv6(ip));
                    h
                }),
            ),
        ),
        // Ethernet with an 802.1Q VLAN tag.
        (
            "vlan",
            write_pcap(
                1,
                &map(&|ip| {
                    let mut v = vec![0u8; 12];
                    v.extend_from_slice(&[0x81, 0x00, 0x00, 0x07, 0x08, 0x00]);
                    v.extend_from_slice(ip);
                    v
                }),
            ),
        ),
        ("pcapng ns", write_pcapng_ns(1, &map(&eth))),
    ];
    for (name, file) in variants {
        let r = replay(&file);
        assert_eq!(r.flows.len(), 1, "{name}");
        assert_eq!(r.to_json_lines(), want, "{name}");
    }
}

#[test]
fn reordering_retransmission_and_overlaps_change_nothing_but_the_counters() {
    let original = fixture_bytes("ffmpeg_publish_arcly.pcap");
    let want = replay(&original);
    let recs = records(&original);
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut held: Option<(u64, Vec<u8>)> = None;
    let mut n = 0;
    for r in &recs {
        let t = tcp(&r.ip);
        if t.dst_port != SERVER_PORT || t.payload.len() < 8 {
            out.push((r.ts_us, r.ip.clone()));
            continue;
        }
        if r.ip[t.ihl + 13] & 0x01 != 0 {
            // The FIN: everything held goes before it (data after the
            // connection's RST would rightly be ignored).
            out.extend(held.take());
            out.push((r.ts_us, r.ip.clone()));
            continue;
        }
        n += 1;
        match n % 4 {
            // Hold this segment back...
            0 => held = Some((r.ts_us, r.ip.clone())),
            // ...and send it after the next one (out of order).
            1 => {
                out.push((r.ts_us, r.ip.clone()));
                if let Some(h) = held.take() {
                    out.push(h);
                }
            }
            // Split into two overlapping parts, the second first, then a
            // full retransmission.
            2 => {
                let mid = t.payload.len() / 2;
                let second = with_payload(
                    &r.ip,
                    t.seq.wrapping_add(mid as u32 - 3),
                    &t.payload[mid - 3..],
                );
                let first = with_payload(&r.ip, t.seq, &t.payload[..mid]);
                out.push((r.ts_us, second));
                out.push((r.ts_us, first));
                out.push((r.ts_us, r.ip.clone()));
            }
            // Duplicated.
            _ => {
                out.push((r.ts_us, r.ip.clone()));
                out.push((r.ts_us, r.ip.clone()));
            }
        }
    }
    if let Some(h) = held.take() {
        out.push(h);
    }
    let r = replay(&write_pcap(101, &out));
    let f = &r.flows[0];
    let st = f.flow.to_server;
    assert!(st.out_of_order > 10, "{st:?}");
    assert!(st.duplicates > 10, "{st:?}");
    assert!(st.overlaps > 10, "{st:?}");
    assert_eq!(st.missing, 0);
    assert_eq!(st.delivered, want.flows[0].flow.to_server.delivered);
    assert_eq!(frames(&r), frames(&want));
    assert!(f.output == want.flows[0].captured_output);
    assert!(!f
        .events
        .iter()
        .any(|e| matches!(e.kind, EventKind::Gap { .. } | EventKind::Error { .. })));
}

#[test]
fn a_lost_segment_is_a_gap_and_no_byte_is_invented() {
    let original = fixture_bytes("ffmpeg_publish_arcly.pcap");
    let want = replay(&original);
    let recs = records(&original);
    // Drop the 40th client data segment.
    let mut n = 0;
    let mut dropped = None;
    let mut kept = Vec::new();
    for r in &recs {
        let t = tcp(&r.ip);
        if t.dst_port == SERVER_PORT && !t.payload.is_empty() {
            n += 1;
            if n == 40 {
                dropped = Some(t.payload.len());
                continue;
            }
        }
        kept.push((r.ts_us, r.ip.clone()));
    }
    let dropped = dropped.unwrap() as u64;
    let r = replay(&write_pcap(101, &kept));
    let f = &r.flows[0];
    assert_eq!(f.flow.to_server.missing, dropped);
    let gaps: Vec<_> = f
        .events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Gap { offset, len } => Some((e.dir, offset, len)),
            _ => None,
        })
        .collect();
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0].0, Direction::ToServer);
    assert_eq!(gaps[0].2, dropped);
    assert!(f
        .events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Error { message } if message.contains("missing"))));
    // The frames before the hole, exactly; nothing after it.
    let got = frames(&r);
    let all = frames(&want);
    assert!(!got.is_empty() && got.len() < all.len());
    assert_eq!(got[..], all[..got.len()]);
    // Delivered + missing = everything the client sent.
    assert_eq!(
        f.flow.to_server.delivered + dropped,
        want.flows[0].flow.to_server.delivered
    );
}

/// A deterministic xorshift for the mutations.
fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[test]
fn hostile_files_are_errors_or_partial_replays_never_panics() {
    let limits = CaptureLimits::default();
    for name in ["ffmpeg_publish_arcly.pcap", "arcly_play_ffmpeg.pcapng"] {
        let good = fixture_bytes(name);
        // Truncated anywhere (every 997 bytes, plus the first 64 lengths).
        for len in (0..64).chain((64..good.len()).step_by(997)) {
            if let Ok(c) = Capture::from_bytes(&good[..len], limits) {
                let _ = Replay::run(&c, &ReplayConfig::default());
            }
        }
        // Random byte flips, including in the headers.
        // ARCLY_REPLAY_MUTATIONS=N runs more (default 60 per fixture).
        let rounds: usize = std::env::var("ARCLY_REPLAY_MUTATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60);
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..rounds {
            let mut bad = good.clone();
            for _ in 0..1 + xorshift(&mut seed) % 16 {
                let at = (xorshift(&mut seed) as usize)
                    % bad.len().min(if seed % 2 == 0 { 600 } else { usize::MAX });
                bad[at] = xorshift(&mut seed) as u8;
            }
            if let Ok(c) = Capture::from_bytes(&bad, limits) {
                let r = Replay::run(&c, &ReplayConfig::default());
                let _ = r.summary();
                let _ = r.to_json_lines();
            }
        }
    }
    // A record claiming 4 GiB, and the size limit.
    let mut huge = write_pcap(101, &[(0, vec![0x45; 20])]);
    huge[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
    let c = Capture::from_bytes(&huge, limits).unwrap();
    assert!(c.packets.is_empty() && c.stats.truncated);
    let small = CaptureLimits {
        max_file_len: 10,
        ..limits
    };
    assert!(Capture::from_bytes(&huge, small).is_err());
    // Read through a reader: the same limit, and reading stops past it.
    assert!(matches!(
        Capture::from_reader(&huge[..], small),
        Err(CaptureError::TooLarge { len: 11, limit: 10 })
    ));
    let exact = CaptureLimits {
        max_file_len: huge.len(),
        ..limits
    };
    assert_eq!(
        Capture::from_reader(&huge[..], exact).unwrap().stats,
        Capture::from_bytes(&huge, exact).unwrap().stats
    );
    // Unsupported link type.
    assert!(Capture::from_bytes(&write_pcap(147, &[]), limits).is_err());
}
