//! MPEG-TS demuxer (core/src/container/ts/demux.rs) fed arbitrary bytes in
//! arbitrary splits.
//!
//! Input: byte 0 = split seed, rest = transport stream bytes.
//! Invariants: no panic; the frames out never hold more than 2× the bytes in
//! plus a small constant (Annex-B → AVCC adds at most one byte per NAL, and
//! config records are rebuilt from in-band parameter sets); no single frame
//! is over the PES size limit; `stats().frames` counts the frames polled;
//! after `flush` and a full drain nothing more comes out.
#![no_main]

use arcly::container::ts::{TsDemuxer, MAX_PES_SIZE};
use arcly_fuzz::split;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [seed, rest @ ..] = data else {
        return;
    };
    let mut d = TsDemuxer::new();
    let mut fed = 0usize;
    let mut out = 0usize;
    let mut frames = 0u64;
    let mut check = |d: &mut TsDemuxer, fed: usize| {
        while let Some(f) = d.poll_frame() {
            frames += 1;
            assert!(
                f.payload.len() <= 2 * MAX_PES_SIZE,
                "frame of {} bytes",
                f.payload.len()
            );
            out += f.payload.len();
            assert!(
                out <= 2 * fed + 4096,
                "{out} bytes of frames from {fed} bytes of TS"
            );
        }
        assert_eq!(d.stats().frames, frames);
    };
    for p in split(rest, *seed) {
        if d.handle_input(p).is_ok() {
            fed += p.len();
        }
        check(&mut d, fed);
    }
    d.flush();
    check(&mut d, fed);
    assert!(d.poll_frame().is_none());
});
