//! FLV tag bodies → frames (core/src/rtmp/flv.rs): a `FlvDemux` fed a
//! sequence of arbitrary video/audio bodies (its NAL length size state
//! carries over), and FLV file parsing with `read_tag`.
//!
//! Input: byte 0 = mode; then records `[kind, len_hi, len_lo, body…]`.
//! Invariants: no panic; a frame's payload is at most 4× its body (1-byte
//! NAL lengths rewritten to 4 bytes, Annex-B converted); decoded frames have
//! timebase 1000 and the tag's dts; re-encoding a frame with
//! `frame_to_tag_body` and demuxing that (fresh demuxer, canonical 4-byte
//! lengths) gives the same frame; `read_tag` never claims more bytes than
//! it was given.
#![no_main]

use arcly::rtmp::flv::{frame_to_tag_body, read_tag, tag_timestamp_ms, FlvDemux};
use arcly::{Frame, MediaKind};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fn same(a: &Frame, b: &Frame) -> bool {
    a.codec == b.codec
        && a.flags == b.flags
        && a.pts == b.pts
        && a.dts == b.dts
        && a.timebase == b.timebase
        && a.payload == b.payload
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    if mode & 1 == 1 {
        // An FLV byte stream after the file header.
        let mut buf = Bytes::copy_from_slice(rest);
        while let Ok(Some((tag, used))) = read_tag(&buf) {
            assert!(used <= buf.len() && used >= 15);
            assert!(tag.body.len() + 15 == used);
            buf = buf.slice(used..);
        }
        return;
    }
    let mut demux = FlvDemux::new();
    let mut rest = rest;
    let mut ts: i64 = i64::from(*mode) << 20;
    while let [kind, hi, lo, tail @ ..] = rest {
        let len = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len());
        let (body, tail) = tail.split_at(len);
        rest = tail;
        ts += i64::from(*kind >> 1);
        let body = Bytes::copy_from_slice(body);
        let r = if kind & 1 == 0 {
            demux.video(ts, body.clone())
        } else {
            demux.audio(ts, body.clone())
        };
        let Ok(Some(f)) = r else {
            continue;
        };
        assert_eq!(f.timebase, 1000);
        assert_eq!(f.dts, ts);
        assert!(
            f.payload.len() <= 4 * body.len() + 8,
            "frame of {} bytes from a {}-byte body",
            f.payload.len(),
            body.len()
        );
        assert_eq!(tag_timestamp_ms(&f), ts);
        let tag = frame_to_tag_body(&f);
        let mut fresh = FlvDemux::new();
        let back = match f.kind() {
            MediaKind::Video => fresh.video(ts, tag.clone()),
            MediaKind::Audio => fresh.audio(ts, tag.clone()),
        };
        match back {
            Ok(Some(g)) => assert!(same(&f, &g), "round trip changed the frame:\n{f:?}\n{g:?}"),
            other => panic!("our own tag {tag:?} for {f:?} demuxed as {other:?}"),
        }
    }
});
