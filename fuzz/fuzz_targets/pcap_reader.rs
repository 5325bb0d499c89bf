//! Capture reading and replay (core/src/replay/): pcap / pcapng parsing,
//! link layers, IP/TCP/UDP headers, TCP reassembly and the RTMP replay,
//! on arbitrary files.
//!
//! Input: the capture file bytes.
//! Invariants: no panic; the payload bytes kept never exceed the file size;
//! packet indexes are 0.. in order; replaying the same bytes twice gives
//! identical output (determinism: JSON lines and summary).
#![no_main]

use arcly::replay::{Capture, CaptureLimits, Replay, ReplayConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = CaptureLimits {
        max_file_len: 1 << 20,
        max_packets: 4096,
        max_payload_bytes: 1 << 20,
    };
    let Ok(cap) = Capture::from_bytes(data, limits) else {
        return;
    };
    let mut kept = 0usize;
    for (i, p) in cap.packets.iter().enumerate() {
        assert_eq!(p.index, i);
        kept += p.payload.len();
    }
    assert!(
        kept <= data.len(),
        "{kept} payload bytes from a {}-byte file",
        data.len()
    );
    assert!(cap.packets.len() <= limits.max_packets);
    let cfg = ReplayConfig::default()
        .with_capture_limits(limits)
        .with_max_flows(64);
    let a = Replay::run(&cap, &cfg);
    let b = Replay::run(&cap, &cfg);
    assert_eq!(
        a.to_json_lines(),
        b.to_json_lines(),
        "replay is not deterministic"
    );
    assert_eq!(
        a.summary(),
        b.summary(),
        "replay summary is not deterministic"
    );
});
