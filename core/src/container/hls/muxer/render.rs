//! Playlist rendering of the [`HlsMuxer`]: the multivariant playlist
//! (RFC 8216 §4.3.4.2) and the media playlists of both variants (RFC 8216
//! §4.3.3, rfc8216bis §4.4: parts, preload hints, delta updates), memoised
//! until the next change.

use std::fmt::Write as _;
use std::sync::PoisonError;

use super::super::playlist::{secs_ceil, secs_nearest, write_secs_nearest};
use super::super::wall::write_date_time;
use super::super::{PlaylistReply, PlaylistRequest, Resource, Variant};
use super::{HlsMuxer, Part, Segment, ADVANCE_PART_LIMIT, US};

impl HlsMuxer {
    /// The multivariant playlist (RFC 8216 §4.3.4.2 `EXT-X-STREAM-INF`) of
    /// `variant`, naming `stream.m3u8`; `None` until the codecs are known.
    /// `BANDWIDTH` is the peak segment bit rate of the window (an estimate
    /// before the first segment completes), `CODECS` the RFC 6381 strings
    /// of the configs.
    pub fn multivariant_playlist(&self, variant: Variant) -> Option<String> {
        let info = self.info.as_ref()?;
        let rates = self.segments.iter().filter_map(|s| {
            let bytes = match variant {
                Variant::LowLatency => s.fmp4.len(),
                Variant::Ts => s.ts.as_ref()?.len(),
            } as u64;
            (s.duration_us > 0).then_some(())?;
            Some((
                bytes * 8 * u64::from(US) / s.duration_us,
                bytes,
                s.duration_us,
            ))
        });
        let (mut peak, mut total_bytes, mut total_us) = (0u64, 0u64, 0u64);
        for (r, b, d) in rates {
            peak = peak.max(r);
            total_bytes += b;
            total_us += d;
        }
        let average = (total_bytes * 8 * u64::from(US)).checked_div(total_us);
        let (peak, average) = if let Some(average) = average {
            (peak, average)
        } else if info.has_video {
            (3_000_000, 3_000_000)
        } else {
            (128_000, 128_000)
        };
        let mut s = String::with_capacity(256);
        s.push_str("#EXTM3U\n");
        let _ = writeln!(s, "#EXT-X-VERSION:{}", version(variant));
        s.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        let _ = write!(
            s,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"",
            peak.max(1),
            average.max(1),
            info.codecs
        );
        if let Some((w, h)) = info.resolution.filter(|(w, h)| *w > 0 && *h > 0) {
            let _ = write!(s, ",RESOLUTION={w}x{h}");
        }
        s.push('\n');
        Resource::MediaPlaylist(variant).write_uri(&mut s, variant);
        s.push('\n');
        Some(s)
    }

    /// The media playlist of `variant` for a request with the LL-HLS
    /// delivery directives of `req` (rfc8216bis §6.2.5):
    /// - `_HLS_part` without `_HLS_msn`, or `_HLS_msn` more than two
    ///   segments past the last one in the playlist, or `_HLS_part` more
    ///   than the Advance Part Limit (3) past the last part: `BadRequest`;
    /// - `_HLS_msn=M` (blocking reload, §6.2.5.2): `NotYet` until segment
    ///   `M` is complete; with `_HLS_part=N` (LL-HLS only) until part
    ///   `M.N` or any later part exists;
    /// - `_HLS_skip=YES` (LL-HLS, §6.2.5.1): a delta update with `EXT-X-SKIP`;
    /// - after [`finish`](Self::finish) requests never wait.
    ///
    /// The classic TS variant ignores `_HLS_part` and `_HLS_skip`.
    pub fn media_playlist(&self, variant: Variant, req: &PlaylistRequest) -> PlaylistReply {
        if req.part.is_some() && req.msn.is_none() {
            return PlaylistReply::BadRequest("_HLS_part without _HLS_msn");
        }
        let part = match variant {
            Variant::LowLatency => req.part,
            Variant::Ts => None,
        };
        let open = self.open.as_ref().filter(|o| !o.parts.is_empty());
        let last_complete = self.segments.back().map(|s| s.msn);
        let last_msn = match (variant, open) {
            (Variant::LowLatency, Some(o)) => Some(o.msn),
            _ => last_complete,
        };
        if let Some(m) = req.msn {
            let limit = last_msn.map_or(2, |l| l.saturating_add(2));
            if m > limit {
                return PlaylistReply::BadRequest("_HLS_msn more than two segments ahead");
            }
            if let (Some(p), Some(o)) = (part, self.open.as_ref()) {
                if m == o.msn && p as usize > o.parts.len() + ADVANCE_PART_LIMIT {
                    return PlaylistReply::BadRequest("_HLS_part beyond the Advance Part Limit");
                }
            }
            if !self.finished {
                let there = match part {
                    None => last_complete.is_some_and(|l| l >= m),
                    Some(p) => self
                        .last_part()
                        .is_some_and(|(lm, lp)| (m, u64::from(p)) <= (lm, lp)),
                };
                if !there {
                    return PlaylistReply::NotYet;
                }
            }
        }
        if !self.is_ready(variant) {
            return PlaylistReply::NotYet;
        }
        let mut memo = self.rendered.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = match (variant, req.skip) {
            (Variant::Ts, _) => &mut memo.ts,
            (Variant::LowLatency, false) => &mut memo.ll,
            (Variant::LowLatency, true) => &mut memo.ll_skip,
        };
        PlaylistReply::Ready(
            slot.get_or_insert_with(|| match variant {
                Variant::LowLatency => self.render_ll(req.skip),
                Variant::Ts => self.render_ts(),
            })
            .clone(),
        )
    }

    /// Renders the media playlist of `variant` (a delta update when
    /// `skip`) without blocking checks and without the memo that
    /// [`media_playlist`](Self::media_playlist) keeps (for benchmarks and
    /// tests of the rendering itself).
    pub fn render_media_playlist(&self, variant: Variant, skip: bool) -> String {
        match variant {
            Variant::LowLatency => self.render_ll(skip),
            Variant::Ts => self.render_ts(),
        }
    }

    /// The newest part: (msn, part index).
    fn last_part(&self) -> Option<(u64, u64)> {
        if let Some(o) = self.open.as_ref().filter(|o| !o.parts.is_empty()) {
            return Some((o.msn, o.parts.len() as u64 - 1));
        }
        self.segments
            .back()
            .map(|s| (s.msn, s.parts.len().saturating_sub(1) as u64))
    }

    /// `EXT-X-MEDIA-SEQUENCE`: the oldest segment of the window, else the open one.
    fn first_msn(&self) -> u64 {
        self.segments
            .front()
            .map(|x| x.msn)
            .or(self.open.as_ref().map(|o| o.msn))
            .unwrap_or(self.next_msn)
    }

    pub(super) fn target_secs(&self) -> u64 {
        let configured = self.config.segment_duration.as_micros().div_ceil(1_000_000) as u64;
        configured.max(self.max_segment_secs).max(1)
    }

    fn part_target_us(&self) -> u64 {
        let configured = u64::try_from(self.config.part_duration.as_micros()).unwrap_or(u64::MAX);
        configured.max(self.max_part_us)
    }

    /// `EXT-X-MAP` (RFC 8216 §4.3.2.5). A new init section (changed codec
    /// config) gets a new URI (`init.mp4?v=N`) so players fetch it again.
    fn write_map(s: &mut String, version: u32) {
        s.push_str("#EXT-X-MAP:URI=\"");
        Resource::Init.write_uri(s, Variant::LowLatency);
        if version > 0 {
            let _ = write!(s, "?v={version}");
        }
        s.push_str("\"\n");
    }

    fn header(&self, s: &mut String, variant: Variant) {
        s.push_str("#EXTM3U\n");
        let _ = writeln!(s, "#EXT-X-VERSION:{}", version(variant));
        let _ = writeln!(s, "#EXT-X-TARGETDURATION:{}", self.target_secs());
    }

    fn independent(&self) -> bool {
        self.segments.iter().all(|s| s.independent)
            && self.open.as_ref().map_or(true, |o| o.independent)
    }

    /// The segments of the window that have a TS form: always the newest
    /// ones (TS starts on a segment boundary and is dropped whole), and
    /// how many discontinuities the fMP4 window has before them.
    fn ts_segments(&self) -> (impl Iterator<Item = &Segment>, u64) {
        let skip = self.segments.iter().take_while(|s| s.ts.is_none()).count();
        let disc = self
            .segments
            .iter()
            .take(skip)
            .filter(|s| s.discontinuity)
            .count() as u64;
        (self.segments.iter().skip(skip), disc)
    }

    /// The TS media playlist (RFC 8216 §4.3.3): the segments with a TS
    /// form; `EXT-X-MEDIA-SEQUENCE` is the shared number of the first one,
    /// and `EXT-X-DISCONTINUITY-SEQUENCE` counts the discontinuities
    /// before it (§6.2.2) like the fMP4 playlist does.
    fn render_ts(&self) -> String {
        let (segments, disc_before) = self.ts_segments();
        let segments: Vec<&Segment> = segments.collect();
        let mut s = String::with_capacity(64 + segments.len() * 40);
        self.header(&mut s, Variant::Ts);
        let first = segments.first().map_or(self.next_msn, |x| x.msn);
        let _ = writeln!(s, "#EXT-X-MEDIA-SEQUENCE:{first}");
        let disc_seq = self.discontinuity_sequence + disc_before;
        if disc_seq > 0 {
            let _ = writeln!(s, "#EXT-X-DISCONTINUITY-SEQUENCE:{disc_seq}");
        }
        if segments.iter().all(|x| x.independent) {
            s.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        }
        for (i, seg) in segments.into_iter().enumerate() {
            if seg.discontinuity {
                s.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if i == 0 || seg.discontinuity {
                self.write_pdt(&mut s, seg.epoch, seg.start_us);
            }
            let _ = writeln!(s, "#EXTINF:{},", secs_nearest(seg.duration_us));
            Resource::Segment(Variant::Ts, seg.msn).write_uri(&mut s, Variant::Ts);
            s.push('\n');
        }
        if self.finished {
            s.push_str("#EXT-X-ENDLIST\n");
        }
        s
    }

    fn render_ll(&self, skip: bool) -> String {
        let target = self.target_secs();
        // Rounded once so that PART-HOLD-BACK is exactly 3 × the printed PART-TARGET.
        let part_target = self.part_target_us().div_ceil(10) * 10;
        let skip_until_us = 6 * target * u64::from(US);
        let mut s = String::with_capacity(512 + self.segments.len() * 400);
        self.header(&mut s, Variant::LowLatency);
        let _ = writeln!(
            s,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={},PART-HOLD-BACK={}",
            secs_nearest(skip_until_us),
            secs_ceil(3 * part_target)
        );
        let _ = writeln!(s, "#EXT-X-PART-INF:PART-TARGET={}", secs_ceil(part_target));
        let first = self.first_msn();
        let _ = writeln!(s, "#EXT-X-MEDIA-SEQUENCE:{first}");
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(
                s,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        if self.independent() {
            s.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        }
        // Durations from the end of the playlist, for parts and skipping.
        let open_us: u64 = self
            .open
            .as_ref()
            .map_or(0, |o| o.parts.iter().map(|p| p.duration_us).sum());
        let total_us: u64 = open_us + self.segments.iter().map(|x| x.duration_us).sum::<u64>();
        let parts_from_us = total_us.saturating_sub(3 * target * u64::from(US));
        let mut skipped = 0usize;
        if skip {
            let boundary = total_us.saturating_sub(skip_until_us);
            let mut at = 0u64;
            for seg in &self.segments {
                at += seg.duration_us;
                if at > boundary {
                    break;
                }
                skipped += 1;
            }
        }
        let mut map_version = self
            .segments
            .get(skipped)
            .map(|x| x.init_version)
            .or(self.open.as_ref().map(|o| o.init_version))
            .unwrap_or(self.init_version);
        if skipped > 0 {
            let _ = writeln!(s, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
        Self::write_map(&mut s, map_version);
        let mut at = 0u64;
        // The first listed segment and each one after a discontinuity
        // carry their date (rfc8216bis §4.4.4.6; in a delta update, the
        // first segment after EXT-X-SKIP).
        let mut first = true;
        for (i, seg) in self.segments.iter().enumerate() {
            let seg_start = at;
            at += seg.duration_us;
            if i < skipped {
                continue;
            }
            let pdt = (std::mem::take(&mut first) || seg.discontinuity)
                .then_some((seg.epoch, seg.start_us));
            self.segment_head(
                &mut s,
                seg.discontinuity,
                seg.init_version,
                &mut map_version,
                pdt,
            );
            if at > parts_from_us || seg_start >= parts_from_us {
                write_parts(&mut s, seg.msn, &seg.parts);
            }
            let _ = writeln!(s, "#EXTINF:{},", secs_nearest(seg.duration_us));
            Resource::Segment(Variant::LowLatency, seg.msn).write_uri(&mut s, Variant::LowLatency);
            s.push('\n');
        }
        if let Some(o) = self.open.as_ref().filter(|o| !o.parts.is_empty()) {
            let pdt = (first || o.discontinuity).then_some((o.epoch, o.start_us));
            self.segment_head(
                &mut s,
                o.discontinuity,
                o.init_version,
                &mut map_version,
                pdt,
            );
            write_parts(&mut s, o.msn, &o.parts);
        }
        if !self.finished {
            // The next part (rfc8216bis §4.4.5.3): of the open segment, or
            // the first of the next one while (re)starting.
            let hint = match &self.open {
                Some(o) => Resource::Part {
                    msn: o.msn,
                    part: o.parts.len() as u32,
                },
                None => Resource::Part {
                    msn: self.next_msn,
                    part: 0,
                },
            };
            let _ = writeln!(s, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{hint}\"");
        }
        if self.finished {
            s.push_str("#EXT-X-ENDLIST\n");
        }
        s
    }

    /// The tags before a segment's parts / `EXTINF`: `EXT-X-DISCONTINUITY`,
    /// `EXT-X-MAP` when the init section changes, and
    /// `EXT-X-PROGRAM-DATE-TIME` of `pdt` = (epoch, start µs) when asked for.
    fn segment_head(
        &self,
        s: &mut String,
        disc: bool,
        init_version: u32,
        map_version: &mut u32,
        pdt: Option<(u64, i64)>,
    ) {
        if disc {
            s.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if init_version != *map_version {
            *map_version = init_version;
            Self::write_map(s, init_version);
        }
        if let Some((epoch, start_us)) = pdt {
            self.write_pdt(s, epoch, start_us);
        }
    }

    /// `EXT-X-PROGRAM-DATE-TIME:<date-time>` (rfc8216bis §4.4.4.6) of a
    /// segment of `epoch` starting at output time `start_us`; nothing when
    /// that epoch has no wall-clock anchor.
    fn write_pdt(&self, s: &mut String, epoch: u64, start_us: i64) {
        if let Some(unix_us) = self.program_date_time(epoch, start_us) {
            s.push_str("#EXT-X-PROGRAM-DATE-TIME:");
            write_date_time(s, unix_us);
            s.push('\n');
        }
    }
}

fn write_parts(s: &mut String, msn: u64, parts: &[Part]) {
    for (i, p) in parts.iter().enumerate() {
        let uri = Resource::Part {
            msn,
            part: i as u32,
        };
        s.push_str("#EXT-X-PART:DURATION=");
        write_secs_nearest(s, p.duration_us);
        let _ = write!(s, ",URI=\"{uri}\"");
        if p.independent {
            s.push_str(",INDEPENDENT=YES");
        }
        s.push('\n');
    }
}

/// `EXT-X-VERSION` (RFC 8216 §7; rfc8216bis §8): 3 for TS (decimal
/// `EXTINF`), 9 for LL-HLS (`EXT-X-SKIP` delta updates; `EXT-X-MAP` needs 6).
fn version(variant: Variant) -> u32 {
    match variant {
        Variant::Ts => 3,
        Variant::LowLatency => 9,
    }
}
