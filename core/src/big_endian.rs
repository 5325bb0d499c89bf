//! Bounds-checked big-endian field reads shared by every parser (RTMP, FLV,
//! codecs, SRT, pcap): one place where "is the field inside the buffer" is
//! decided, so no parser indexes network bytes itself.

/// Reads `n` (0..=4; larger `n` keeps only the low 32 bits) big-endian bytes
/// at `pos` of `data`; `None` if the field does not fit inside `data`.
pub(crate) fn read_be(data: &[u8], pos: usize, n: usize) -> Option<u32> {
    let end = pos.checked_add(n)?;
    let s = data.get(pos..end)?;
    Some(s.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::read_be;

    #[test]
    fn reads_inside_and_refuses_outside() {
        let d = [1u8, 2, 3, 4, 5];
        assert_eq!(read_be(&d, 0, 2), Some(0x0102));
        assert_eq!(read_be(&d, 1, 4), Some(0x0203_0405));
        assert_eq!(read_be(&d, 2, 4), None);
        assert_eq!(read_be(&d, usize::MAX, 2), None);
        assert_eq!(read_be(&d, 5, 0), Some(0));
    }
}
