//! Media fragments: `moof` (`mfhd`, `traf` with `tfhd`/`tfdt`/`trun`) +
//! `mdat` (ISO/IEC 14496-12 §8.8).

use bytes::{BufMut, Bytes, BytesMut};

use super::boxes::{begin, begin_full, end};
use super::{Fmp4Error, TrackInfo};
use crate::codec::h265;
use crate::frame::{rescale, Codec, Frame, MediaKind};

/// Most samples waiting in one [`Fragmenter`].
pub const MAX_PENDING_SAMPLES: usize = 8192;
/// Most payload bytes waiting in one [`Fragmenter`] (one fragment's `mdat`).
pub const MAX_FRAGMENT_BYTES: usize = 256 << 20;

/// `sample_flags` of a sync sample: `sample_depends_on = 2` (§8.8.3.1).
const FLAGS_SYNC: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: `sample_depends_on = 1`, `sample_is_non_sync_sample`.
const FLAGS_NON_SYNC: u32 = 0x0101_0000;
/// `is_leading = 1` (bits 27..26 of `sample_flags`, ISO/IEC 14496-12
/// §8.8.3.1 / §8.6.4.3): a leading sample with a dependency before the
/// referenced I-picture, not decodable when decoding starts at that picture
/// (an H.265 RASL picture).
const LEADING_UNDECODABLE: u32 = 0x0400_0000;
/// `is_leading = 3`: a leading sample without a dependency before the
/// referenced I-picture, decodable from it (an H.265 RADL picture).
const LEADING_DECODABLE: u32 = 0x0C00_0000;

/// The `sample_flags` of `s` in a track of `codec`.
///
/// Sync samples are the keyframes (every H.265 IRAP picture: IDR, CRA, BLA,
/// ISO/IEC 14496-15 §8.4.3 — x265's open-GOP CRA pictures included) and
/// every audio sample. An H.265 leading picture also gets `is_leading`
/// (ISO/IEC 14496-12 §8.6.4.3): 1 for a RASL picture, which a player that
/// starts at the preceding CRA must skip (the decoder discards it too,
/// H.265 §8.1.3), 3 for a RADL picture, which it can decode. Other samples
/// leave `is_leading` at 0 (unknown), as before.
fn sample_flags(codec: Codec, s: &Sample) -> u32 {
    if s.sync {
        return FLAGS_SYNC;
    }
    let leading = match codec {
        Codec::H265 => match h265::hvcc_picture_type(&s.data) {
            Some(t) if h265::is_rasl(t) => LEADING_UNDECODABLE,
            Some(t) if h265::is_radl(t) => LEADING_DECODABLE,
            _ => 0,
        },
        _ => 0,
    };
    FLAGS_NON_SYNC | leading
}

/// One sample waiting for its fragment, times in the track timescale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode time.
    pub dts: i64,
    /// Composition offset (`pts - dts`).
    pub cts: i32,
    /// Whether this is a sync sample (keyframe; every audio sample).
    pub sync: bool,
    /// The frame payload.
    pub data: Bytes,
}

/// Collects the frames of one track and cuts them into fragments.
///
/// A sample's duration is the next sample's decode time minus its own, so
/// the newest sample waits until the next one arrives:
/// [`fragment`](Self::fragment) writes every sample whose duration is
/// known, [`flush`](Self::flush) also the last one (at the end of a stream,
/// with the previous duration). Invariants: at most
/// [`MAX_PENDING_SAMPLES`] samples and [`MAX_FRAGMENT_BYTES`] bytes wait;
/// decode times never go backwards and are ≥ 0.
#[derive(Debug)]
pub struct Fragmenter {
    track: TrackInfo,
    pending: Vec<Sample>,
    pending_bytes: usize,
    last_duration: u32,
}

impl Fragmenter {
    /// A fragmenter for `track`.
    pub fn new(track: TrackInfo) -> Self {
        Self {
            track,
            pending: Vec::new(),
            pending_bytes: 0,
            last_duration: 0,
        }
    }

    /// The track.
    pub fn track(&self) -> &TrackInfo {
        &self.track
    }

    /// Adds a media frame (config frames are ignored: a changed config needs a new init segment).
    pub fn push(&mut self, frame: &Frame) -> Result<(), Fmp4Error> {
        if frame.codec != self.track.codec {
            return Err(Fmp4Error::CodecMismatch {
                frame: frame.codec,
                track: self.track.codec,
            });
        }
        if frame.is_config() {
            return Ok(());
        }
        if self.pending.len() >= MAX_PENDING_SAMPLES {
            return Err(Fmp4Error::FragmentFull("samples"));
        }
        if self.pending_bytes + frame.payload.len() > MAX_FRAGMENT_BYTES {
            return Err(Fmp4Error::FragmentFull("bytes"));
        }
        let dts = rescale(frame.dts, frame.timebase, self.track.timescale);
        let pts = rescale(frame.pts, frame.timebase, self.track.timescale);
        if dts < 0 {
            return Err(Fmp4Error::NegativeDts(dts));
        }
        if let Some(prev) = self.pending.last() {
            if dts < prev.dts {
                return Err(Fmp4Error::NonMonotonicDts {
                    dts,
                    prev: prev.dts,
                });
            }
            if dts - prev.dts > i64::from(u32::MAX) {
                return Err(Fmp4Error::DurationOverflow(dts - prev.dts));
            }
        }
        let cts = i32::try_from(pts - dts).map_err(|_| Fmp4Error::CompositionOffset(pts - dts))?;
        let sync = frame.is_keyframe() || frame.kind() == MediaKind::Audio;
        self.pending_bytes += frame.payload.len();
        self.pending.push(Sample {
            dts,
            cts,
            sync,
            data: frame.payload.clone(),
        });
        Ok(())
    }

    /// Payload bytes of the waiting samples.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Samples whose duration is known (all waiting samples but the newest).
    pub fn ready(&self) -> usize {
        self.pending.len().saturating_sub(1)
    }

    /// The decode time span of the ready samples, in the track timescale.
    pub fn ready_duration(&self) -> i64 {
        match (self.pending.first(), self.pending.last()) {
            (Some(a), Some(b)) => b.dts - a.dts,
            _ => 0,
        }
    }

    /// Writes a fragment (`moof` + `mdat`) with `sequence_number` holding
    /// every ready sample; `None` when no sample is ready.
    pub fn fragment(&mut self, sequence_number: u32) -> Option<Bytes> {
        let n = self.ready();
        (n > 0).then(|| {
            let mut out = BytesMut::new();
            self.write(&mut out, sequence_number, n, None);
            out.freeze()
        })
    }

    /// Like [`fragment`](Self::fragment) (or [`flush`](Self::flush) when
    /// `flush_default_duration` is given), appending to `out` instead of
    /// allocating (e.g. several tracks' fragments into one HLS part);
    /// returns whether anything was written.
    pub fn fragment_into(
        &mut self,
        out: &mut BytesMut,
        sequence_number: u32,
        flush_default_duration: Option<u32>,
    ) -> bool {
        let n = match flush_default_duration {
            Some(_) => self.pending.len(),
            None => self.ready(),
        };
        if n == 0 {
            return false;
        }
        let last = flush_default_duration.map(|dflt| {
            let from_pending = if n >= 2 { self.last_of_pending() } else { None };
            from_pending
                .or((self.last_duration > 0).then_some(self.last_duration))
                .unwrap_or(dflt)
        });
        self.write(out, sequence_number, n, last);
        true
    }

    /// Writes every waiting sample, giving the newest the duration of the one
    /// before it (`default_duration` when it is alone); `None` when nothing waits.
    pub fn flush(&mut self, sequence_number: u32, default_duration: u32) -> Option<Bytes> {
        let n = self.pending.len();
        let last = if n >= 2 { self.last_of_pending() } else { None };
        let d = last.or((self.last_duration > 0).then_some(self.last_duration));
        (n > 0).then(|| {
            let mut out = BytesMut::new();
            self.write(
                &mut out,
                sequence_number,
                n,
                Some(d.unwrap_or(default_duration)),
            );
            out.freeze()
        })
    }

    fn last_of_pending(&self) -> Option<u32> {
        let len = self.pending.len();
        let a = self.pending.get(len.checked_sub(2)?)?;
        let b = self.pending.get(len - 1)?;
        u32::try_from(b.dts - a.dts).ok()
    }

    /// Writes the first `n` waiting samples; the duration of sample `n - 1`
    /// is taken from sample `n`, or is `last` when `n` is everything.
    fn write(&mut self, out: &mut BytesMut, sequence_number: u32, n: usize, last: Option<u32>) {
        let video = self.track.codec.kind() == MediaKind::Video;
        let samples = self.pending.get(..n).unwrap_or_default();
        let data_len: usize = samples.iter().map(|s| s.data.len()).sum();
        let per_sample = if video { 16 } else { 12 };
        let moof_len = 8 + 16 + 8 + 16 + 20 + 20 + per_sample * n;
        out.reserve(moof_len + 8 + data_len);
        let base = out.len();

        let moof = begin(out, b"moof");
        let mfhd = begin_full(out, b"mfhd", 0, 0);
        out.put_u32(sequence_number);
        end(out, mfhd);
        let traf = begin(out, b"traf");
        let tfhd = begin_full(out, b"tfhd", 0, 0x02_0000); // default-base-is-moof
        out.put_u32(self.track.track_id);
        end(out, tfhd);
        let tfdt = begin_full(out, b"tfdt", 1, 0);
        out.put_u64(samples.first().map_or(0, |s| s.dts.max(0) as u64));
        end(out, tfdt);
        // data-offset, duration, size, flags (+ composition offsets for video).
        let trun_flags = 0x0001 | 0x0100 | 0x0200 | 0x0400 | if video { 0x0800 } else { 0 };
        let trun = begin_full(out, b"trun", 1, trun_flags);
        out.put_u32(n as u32);
        out.put_i32((moof_len + 8) as i32);
        let mut prev_d = self.last_duration;
        for (i, s) in samples.iter().enumerate() {
            let d = match self.pending.get(i + 1) {
                Some(next) => u32::try_from(next.dts - s.dts).unwrap_or(prev_d),
                None => last.unwrap_or(prev_d),
            };
            prev_d = d;
            out.put_u32(d);
            out.put_u32(s.data.len() as u32);
            out.put_u32(sample_flags(self.track.codec, s));
            if video {
                out.put_i32(s.cts);
            }
        }
        end(out, trun);
        end(out, traf);
        end(out, moof);
        debug_assert_eq!(out.len() - base, moof_len);
        out.put_u32((8 + data_len) as u32);
        out.put_slice(b"mdat");
        for s in samples {
            out.put_slice(&s.data);
        }
        self.last_duration = prev_d;
        let taken: usize = samples.iter().map(|s| s.data.len()).sum();
        self.pending_bytes -= taken;
        self.pending.drain(..n);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::frame::FrameFlags;

    fn track(codec: Codec) -> TrackInfo {
        TrackInfo {
            track_id: 1,
            codec,
            timescale: 90_000,
            config: Bytes::new(),
            width: 0,
            height: 0,
            channels: 0,
            sample_rate: 0,
        }
    }

    fn au(codec: Codec, nal_header: u8, key: bool, dts: i64) -> Frame {
        Frame {
            codec,
            flags: if key {
                FrameFlags::KEYFRAME
            } else {
                FrameFlags::NONE
            },
            pts: dts,
            dts,
            timebase: 90_000,
            payload: Bytes::from(vec![0, 0, 0, 3, nal_header, 0x01, 0xaf]),
        }
    }

    /// The `sample_flags` of every sample of a one-`traf` fragment.
    fn trun_flags(frag: &[u8]) -> Vec<u32> {
        let at = frag.windows(4).position(|w| w == b"trun").unwrap() + 4;
        let word = |i: usize| u32::from_be_bytes(frag[i..i + 4].try_into().unwrap());
        let count = word(at + 4) as usize;
        // version/flags, sample_count, data_offset; then duration, size, flags, cts.
        (0..count).map(|i| word(at + 12 + i * 16 + 8)).collect()
    }

    /// An open GOP: CRA (sync), RASL_N, RASL_R (is_leading = 1), RADL
    /// (is_leading = 3), TRAIL_R (is_leading = 0), all but the CRA non-sync.
    #[test]
    fn h265_leading_pictures_are_flagged() {
        let mut f = Fragmenter::new(track(Codec::H265));
        let types = [
            (h265::NAL_CRA, true),
            (h265::NAL_RASL_N, false),
            (h265::NAL_RASL_R, false),
            (h265::NAL_RADL_N, false),
            (1, false),
        ];
        for (i, (t, key)) in types.iter().enumerate() {
            f.push(&au(Codec::H265, t << 1, *key, i as i64 * 3600))
                .unwrap();
        }
        let frag = f.flush(1, 3600).unwrap();
        assert_eq!(
            trun_flags(&frag),
            [
                FLAGS_SYNC,
                FLAGS_NON_SYNC | LEADING_UNDECODABLE,
                FLAGS_NON_SYNC | LEADING_UNDECODABLE,
                FLAGS_NON_SYNC | LEADING_DECODABLE,
                FLAGS_NON_SYNC,
            ]
        );
        // is_leading = 1 and 3 in bits 27..26, sample_is_non_sync_sample set.
        assert_eq!((FLAGS_NON_SYNC | LEADING_UNDECODABLE) >> 26 & 3, 1);
        assert_eq!((FLAGS_NON_SYNC | LEADING_DECODABLE) >> 26 & 3, 3);
    }

    /// H.264 is untouched: a NAL header byte that would read as RASL in
    /// H.265 means nothing there.
    #[test]
    fn h264_samples_have_no_leading_flag() {
        let mut f = Fragmenter::new(track(Codec::H264));
        f.push(&au(Codec::H264, 0x65, true, 0)).unwrap();
        f.push(&au(Codec::H264, h265::NAL_RASL_N << 1, false, 3600))
            .unwrap();
        let frag = f.flush(1, 3600).unwrap();
        assert_eq!(trun_flags(&frag), [FLAGS_SYNC, FLAGS_NON_SYNC]);
    }
}
