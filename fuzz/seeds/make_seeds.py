#!/usr/bin/env python3
"""Regenerates fuzz/seeds/<target>/ from real bytes (see docs/fuzzing.md).

Usage: make_seeds.py REC_DIR
REC_DIR holds what scripts in docs/fuzzing.md "Seed corpora" produce:
  pub0.c2s / pub0.s2c  ffmpeg publishing to arcly, both directions (TCP proxy)
  pub1.c2s / pub1.s2c  ffmpeg playing from arcly
  a.flv a.ts b.ts a.aac a.h264 a.mp4 a.ogg   ffmpeg-made media files
plus core/src/rtmp/amf/testdata/*.bin and tests/fixtures/*.pcap*.
Every seed is kept under 8 KiB.
"""
import glob, os, struct, subprocess, sys

REC = sys.argv[1]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "fuzz", "seeds")
MAX = 8192
HS = 1 + 2 * 1536


def rd(name):
    with open(os.path.join(REC, name), "rb") as f:
        return f.read()


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data[:MAX])


pub_c2s, pub_s2c = rd("pub0.c2s"), rd("pub0.s2c")
play_c2s, play_s2c = rd("pub1.c2s"), rd("pub1.s2c")

# rtmp_handshake: [mode, split seed, bytes]
put("rtmp_handshake", "server_ffmpeg_c0c1c2", bytes([0, 0]) + pub_c2s[:HS + 200])
put("rtmp_handshake", "server_ffmpeg_bytewise", bytes([0, 1]) + pub_c2s[:HS])
put("rtmp_handshake", "client_simple_arcly_s0s1s2", bytes([1, 9]) + pub_s2c[:HS])
put("rtmp_handshake", "client_digest_arcly_s0s1s2", bytes([2, 3]) + pub_s2c[:HS])
put("rtmp_handshake", "pair_trailing_chunks", bytes([3, 0x85]) + pub_c2s[HS:HS + 300])

# rtmp_chunk_reader: [split seed, limits, chunk stream after the handshake]
put("rtmp_chunk_reader", "ffmpeg_publish", bytes([0, 0x3D]) + pub_c2s[HS:HS + MAX])
put("rtmp_chunk_reader", "ffmpeg_publish_split", bytes([4, 0xF3]) + pub_c2s[HS:HS + 4000])
put("rtmp_chunk_reader", "ffmpeg_play", bytes([2, 0x4D]) + play_c2s[HS:])
put("rtmp_chunk_reader", "arcly_to_player", bytes([5, 0x0D]) + play_s2c[HS:HS + MAX])
put("rtmp_chunk_reader", "arcly_to_publisher", bytes([0, 0x0D]) + pub_s2c[HS:])

# amf0 / rtmp_command: real ffmpeg / GStreamer command and data bodies.
for p in sorted(glob.glob(os.path.join(ROOT, "core/src/rtmp/amf/testdata/*.bin"))):
    body = open(p, "rb").read()
    n = os.path.basename(p)[:-4]
    put("amf0", n, b"\x00" + body)
    put("amf0", n + "_limited", b"\x41" + body)
    put("rtmp_command", n, b"\x00" + body)

# amf3: hand-written AMF3 values (AMF3 spec §3) plus an AMF3 command body.
amf3 = {
    "string": b"\x06\x07abc",
    "object_dynamic": b"\x0a\x0b\x01\x03a\x04\x01\x03b\x06\x00\x01",
    "array_dense": b"\x09\x07\x01\x04\x01\x04\x02\x05\x40\x09\x21\xfb\x54\x44\x2d\x18",
    "array_assoc": b"\x09\x03\x03k\x02\x01\x04\x07",
    "object_sealed_ref": b"\x09\x05\x01\x0a\x13\x01\x03x\x04\x01\x0a\x01\x04\x02",
    "bytearray": b"\x0c\x09\x01\x02\x03\x04",
    "vector_int": b"\x0d\x05\x00\x00\x00\x00\x01\xff\xff\xff\xff",
    "date_xml": b"\x09\x05\x01\x08\x01\x42\x70\x00\x00\x00\x00\x00\x00\x0b\x05<a",
}
for n, v in amf3.items():
    put("amf3", n, b"\x00" + v)
    put("amf3", n + "_limited", b"\x21" + v)
put("rtmp_command", "amf3_connect", b"\x01\x00" + open(
    os.path.join(ROOT, "core/src/rtmp/amf/testdata/ffmpeg_publish_connect.bin"), "rb").read())


# FLV tags from an ffmpeg-made FLV file.
def flv_tags(data):
    pos = 13
    while pos + 11 <= len(data):
        ty = data[pos]
        ln = int.from_bytes(data[pos + 1:pos + 4], "big")
        body = data[pos + 11:pos + 11 + ln]
        if len(body) < ln:
            break
        yield ty, body
        pos += 11 + ln + 4


flv = rd("a.flv")
tags = list(flv_tags(flv))
rec = b""
for ty, body in tags:
    if ty not in (8, 9):
        continue
    kind = (40 << 1) | (1 if ty == 8 else 0)
    b = body[:2000]
    if len(rec) + len(b) + 3 > MAX - 1:
        break
    rec += bytes([kind]) + len(b).to_bytes(2, "big") + b
put("flv_tags", "ffmpeg_h264_aac", b"\x00" + rec)
put("flv_tags", "ffmpeg_flv_file", b"\x01" + flv[13:13 + 6000])

vseq = next(b for t, b in tags if t == 9 and b[1] == 0)
aseq = next(b for t, b in tags if t == 8 and b[1] == 0)
avcc = vseq[5:]
put("codec_parsers", "avc_record", b"\x01" + avcc)
nsps = int.from_bytes(avcc[6:8], "big")
put("codec_parsers", "h264_sps", b"\x00" + avcc[8:8 + nsps])
put("codec_parsers", "aac_asc", b"\x04" + aseq[2:])
put("codec_parsers", "adts", b"\x05" + rd("a.aac")[:1200])
put("codec_parsers", "annexb_h264", b"\x08" + rd("a.h264")[:4000])
put("codec_parsers", "emulation_prevention", b"\x09" + rd("a.h264")[:2000])
mp4 = rd("a.mp4")
i = mp4.find(b"hvcC")
if i > 4:
    size = int.from_bytes(mp4[i - 4:i], "big")
    hvcc = mp4[i + 4:i - 4 + size]
    put("codec_parsers", "hevc_record", b"\x03" + hvcc)
    # First SPS (type 33) of the record.
    pos, n = 23, hvcc[22]
    for _ in range(n):
        ty, cnt = hvcc[pos] & 0x3F, int.from_bytes(hvcc[pos + 1:pos + 3], "big")
        pos += 3
        for _ in range(cnt):
            ln = int.from_bytes(hvcc[pos:pos + 2], "big")
            if ty == 33:
                put("codec_parsers", "h265_sps", b"\x02" + hvcc[pos + 2:pos + 2 + ln])
            pos += 2 + ln
ogg = rd("a.ogg")
i = ogg.find(b"OpusHead")
if i >= 0:
    put("codec_parsers", "opus_head", b"\x06" + ogg[i:i + 19])
put("codec_parsers", "av1c", b"\x07" + bytes([0x81, 0x00, 0x0c, 0x00]))

# ts_demux: [split seed, TS bytes], 188-byte packets kept whole.
put("ts_demux", "ffmpeg_h264_aac", b"\x00" + rd("a.ts")[:188 * 43])
put("ts_demux", "ffmpeg_h264_aac_split", b"\x03" + rd("a.ts")[188 * 43:188 * 86])
put("ts_demux", "ffmpeg_hevc_opus", b"\x00" + rd("b.ts")[:188 * 43])

# pcap_reader: the first packets of the committed fixtures.
for fx, n in [("ffmpeg_publish_arcly.pcap", 12), ("arcly_play_ffmpeg.pcapng", 12),
              ("gst_publish_arcly.pcap", 10), ("ffmpeg_publish_arcly_srt.pcap", 11)]:
    src = os.path.join(ROOT, "tests", "fixtures", fx)
    if not os.path.exists(src):
        continue
    dst = os.path.join(REC, "cut_" + fx)
    # SRT datagrams cut by a snap length read as malformed UDP: keep them whole.
    snap = [] if fx.endswith("_srt.pcap") else ["-s", "600"]
    subprocess.run(["editcap", "-r", *snap, src, dst, f"1-{n}"], check=True)
    put("pcap_reader", fx.replace(".", "_"), open(dst, "rb").read())
