//! Box writing helpers (ISO/IEC 14496-12 §4.2).

use bytes::{BufMut, BytesMut};

/// Starts a box of `kind`; returns its offset for [`end`].
pub(super) fn begin(out: &mut BytesMut, kind: &[u8; 4]) -> usize {
    let start = out.len();
    out.put_u32(0);
    out.put_slice(kind);
    start
}

/// Starts a full box (§4.2.2) with `version` and 24-bit `flags`.
pub(super) fn begin_full(out: &mut BytesMut, kind: &[u8; 4], version: u8, flags: u32) -> usize {
    let start = begin(out, kind);
    out.put_u32((u32::from(version) << 24) | (flags & 0x00FF_FFFF));
    start
}

/// Writes the size of the box started at `start`.
pub(super) fn end(out: &mut BytesMut, start: usize) {
    let size = (out.len() - start) as u32;
    if let Some(s) = out.get_mut(start..start + 4) {
        s.copy_from_slice(&size.to_be_bytes());
    }
}

/// The unity transformation matrix (§8.2.2.3).
pub(super) fn matrix(out: &mut BytesMut) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        out.put_u32(v);
    }
}

/// An MPEG-4 descriptor (ISO/IEC 14496-1 §8.3.3): tag, size in 7-bit groups, body.
pub(super) fn descriptor(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    let len = body.len().min(0x0FFF_FFFF);
    let mut groups = [0u8; 4];
    let mut n = 0;
    let mut v = len;
    loop {
        if let Some(g) = groups.get_mut(n) {
            *g = (v & 0x7F) as u8;
        }
        n += 1;
        v >>= 7;
        if v == 0 || n == 4 {
            break;
        }
    }
    for i in (0..n).rev() {
        let g = groups.get(i).copied().unwrap_or(0);
        out.put_u8(if i > 0 { g | 0x80 } else { g });
    }
    out.put_slice(body.get(..len).unwrap_or_default());
}
