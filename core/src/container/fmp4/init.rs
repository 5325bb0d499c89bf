//! The init segment: `ftyp` + `moov` (ISO/IEC 14496-12 §8.2–§8.8, CMAF §7.3).

use bytes::{BufMut, Bytes, BytesMut};

use super::boxes::{begin, begin_full, descriptor, end, matrix};
use super::{Fmp4Error, TrackInfo};
use crate::codec::opus::OpusHead;
use crate::frame::{Codec, MediaKind};

/// Builds the init segment for `tracks` (1..=255 tracks with distinct
/// non-zero ids): `ftyp` (brands `iso6`, `cmfc`, `mp41`) and a `moov` with
/// one `trak` per track (empty sample tables, sample entry `avc1`+`avcC`,
/// `hvc1`+`hvcC`, `mp4a`+`esds` or `Opus`+`dOps`) and `mvex`/`trex`.
pub fn init_segment(tracks: &[TrackInfo]) -> Result<Bytes, Fmp4Error> {
    if tracks.is_empty() || tracks.len() > 255 {
        return Err(Fmp4Error::Tracks("need 1..=255 tracks"));
    }
    for (i, t) in tracks.iter().enumerate() {
        if t.track_id == 0 {
            return Err(Fmp4Error::Tracks("track_ID 0"));
        }
        if tracks.iter().skip(i + 1).any(|u| u.track_id == t.track_id) {
            return Err(Fmp4Error::Tracks("duplicate track_ID"));
        }
    }
    let mut out =
        BytesMut::with_capacity(1024 + tracks.iter().map(|t| t.config.len()).sum::<usize>());
    let ftyp = begin(&mut out, b"ftyp");
    out.put_slice(b"iso6");
    out.put_u32(0);
    for b in [b"iso6", b"cmfc", b"mp41"] {
        out.put_slice(b);
    }
    end(&mut out, ftyp);

    let moov = begin(&mut out, b"moov");
    let mvhd = begin_full(&mut out, b"mvhd", 0, 0);
    out.put_u32(0); // creation_time
    out.put_u32(0); // modification_time
    out.put_u32(1000); // timescale
    out.put_u32(0); // duration: unknown (fragmented)
    out.put_u32(0x0001_0000); // rate 1.0
    out.put_u16(0x0100); // volume 1.0
    out.put_bytes(0, 10);
    matrix(&mut out);
    out.put_bytes(0, 24);
    let next = tracks
        .iter()
        .map(|t| t.track_id)
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    out.put_u32(next);
    end(&mut out, mvhd);
    for t in tracks {
        trak(&mut out, t)?;
    }
    let mvex = begin(&mut out, b"mvex");
    for t in tracks {
        let trex = begin_full(&mut out, b"trex", 0, 0);
        out.put_u32(t.track_id);
        out.put_u32(1); // default_sample_description_index
        out.put_u32(0);
        out.put_u32(0);
        out.put_u32(0);
        end(&mut out, trex);
    }
    end(&mut out, mvex);
    end(&mut out, moov);
    Ok(out.freeze())
}

fn trak(out: &mut BytesMut, t: &TrackInfo) -> Result<(), Fmp4Error> {
    let video = t.codec.kind() == MediaKind::Video;
    let trak = begin(out, b"trak");
    let tkhd = begin_full(out, b"tkhd", 0, 0x3); // enabled | in_movie
    out.put_u32(0);
    out.put_u32(0);
    out.put_u32(t.track_id);
    out.put_u32(0);
    out.put_u32(0); // duration
    out.put_bytes(0, 8);
    out.put_u16(0); // layer
    out.put_u16(0); // alternate_group
    out.put_u16(if video { 0 } else { 0x0100 });
    out.put_u16(0);
    matrix(out);
    out.put_u32(t.width.min(0xFFFF) << 16);
    out.put_u32(t.height.min(0xFFFF) << 16);
    end(out, tkhd);

    let mdia = begin(out, b"mdia");
    let mdhd = begin_full(out, b"mdhd", 0, 0);
    out.put_u32(0);
    out.put_u32(0);
    out.put_u32(t.timescale);
    out.put_u32(0);
    out.put_u16(0x55C4); // 'und'
    out.put_u16(0);
    end(out, mdhd);
    let hdlr = begin_full(out, b"hdlr", 0, 0);
    out.put_u32(0);
    out.put_slice(if video { b"vide" } else { b"soun" });
    out.put_bytes(0, 12);
    out.put_slice(if video {
        b"VideoHandler\0"
    } else {
        b"SoundHandler\0"
    });
    end(out, hdlr);

    let minf = begin(out, b"minf");
    if video {
        let vmhd = begin_full(out, b"vmhd", 0, 1);
        out.put_bytes(0, 8);
        end(out, vmhd);
    } else {
        let smhd = begin_full(out, b"smhd", 0, 0);
        out.put_u32(0);
        end(out, smhd);
    }
    let dinf = begin(out, b"dinf");
    let dref = begin_full(out, b"dref", 0, 0);
    out.put_u32(1);
    let url = begin_full(out, b"url ", 0, 1); // media in the same file
    end(out, url);
    end(out, dref);
    end(out, dinf);

    let stbl = begin(out, b"stbl");
    let stsd = begin_full(out, b"stsd", 0, 0);
    out.put_u32(1);
    sample_entry(out, t)?;
    end(out, stsd);
    for kind in [b"stts", b"stsc", b"stco"] {
        let b = begin_full(out, kind, 0, 0);
        out.put_u32(0);
        end(out, b);
    }
    let stsz = begin_full(out, b"stsz", 0, 0);
    out.put_u32(0);
    out.put_u32(0);
    end(out, stsz);
    end(out, stbl);
    end(out, minf);
    end(out, mdia);
    end(out, trak);
    Ok(())
}

fn sample_entry(out: &mut BytesMut, t: &TrackInfo) -> Result<(), Fmp4Error> {
    let (kind, child): (&[u8; 4], &[u8; 4]) = match t.codec {
        Codec::H264 => (b"avc1", b"avcC"),
        Codec::H265 => (b"hvc1", b"hvcC"),
        Codec::Aac => (b"mp4a", b"esds"),
        Codec::Opus => (b"Opus", b"dOps"),
        c @ (Codec::Av1 | Codec::Vp8 | Codec::Vp9) => return Err(Fmp4Error::UnsupportedCodec(c)),
    };
    let entry = begin(out, kind);
    out.put_bytes(0, 6);
    out.put_u16(1); // data_reference_index
    if t.codec.kind() == MediaKind::Video {
        // VisualSampleEntry (§12.1.3)
        out.put_bytes(0, 16);
        out.put_u16(t.width.min(0xFFFF) as u16);
        out.put_u16(t.height.min(0xFFFF) as u16);
        out.put_u32(0x0048_0000);
        out.put_u32(0x0048_0000);
        out.put_u32(0);
        out.put_u16(1); // frame_count
        out.put_bytes(0, 32); // compressorname
        out.put_u16(0x0018);
        out.put_i16(-1);
        let c = begin(out, child);
        out.put_slice(&t.config);
        end(out, c);
    } else {
        // AudioSampleEntry (§12.2.3)
        out.put_bytes(0, 8);
        out.put_u16(t.channels);
        out.put_u16(16);
        out.put_u32(0);
        out.put_u32(if t.sample_rate <= 0xFFFF {
            t.sample_rate << 16
        } else {
            0
        });
        if t.codec == Codec::Aac {
            esds(out, t);
        } else {
            let c = begin(out, child);
            out.put_slice(&OpusHead::parse(&t.config)?.to_dops());
            end(out, c);
        }
    }
    end(out, entry);
    Ok(())
}

/// `esds` (ISO/IEC 14496-14 §5.6): ES_Descriptor with a
/// DecoderConfigDescriptor (object type 0x40, audio stream) holding the
/// AudioSpecificConfig, and an SLConfigDescriptor.
fn esds(out: &mut BytesMut, t: &TrackInfo) {
    let mut dsi = BytesMut::new();
    descriptor(&mut dsi, 0x05, &t.config);
    let mut dcd = BytesMut::new();
    dcd.put_u8(0x40); // objectTypeIndication: Audio ISO/IEC 14496-3
    dcd.put_u8(0x15); // streamType audio (5) << 2 | reserved 1
    dcd.put_slice(&[0, 0, 0]); // bufferSizeDB
    dcd.put_u32(0); // maxBitrate
    dcd.put_u32(0); // avgBitrate
    dcd.put_slice(&dsi);
    let mut es = BytesMut::new();
    es.put_u16(t.track_id.min(0xFFFF) as u16);
    es.put_u8(0);
    descriptor(&mut es, 0x04, &dcd);
    descriptor(&mut es, 0x06, &[0x02]);
    let b = begin_full(out, b"esds", 0, 0);
    descriptor(out, 0x03, &es);
    end(out, b);
}
