#!/usr/bin/env python3
"""LL-HLS viewer load for arcly's HTTP serving (docs/hls.md, docs/benchmarks.md).

Each viewer is one keep-alive HTTP/1.1 connection that does what an LL-HLS
player does at the live edge: a blocking playlist reload for the next part
(`stream.m3u8?_HLS_msn=M&_HLS_part=N`), then GET of that part, repeat.
Prints the server's CPU seconds over the run (from /proc/<pid>/stat), the
number of parts fetched and the answer latency of the blocking reloads.

    python3 bench/llhls_viewers.py --pid $(pidof arcly) --url http://127.0.0.1:8888/live/cam \
        --viewers 200 --seconds 20

Loopback only; bounded in time and connections.
"""
import argparse
import asyncio
import os
import re
import statistics
import time
from urllib.parse import urlparse

HINT = re.compile(rb'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part(\d+)\.(\d+)\.m4s"')


async def request(reader, writer, host, path):
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    body = await reader.readexactly(int(m.group(1))) if m else b""
    return status, body


async def viewer(url, deadline, stats):
    u = urlparse(url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port or 80)
    base = u.path.rstrip("/")
    try:
        status, body = await request(reader, writer, u.netloc, f"{base}/stream.m3u8")
        while time.monotonic() < deadline:
            m = HINT.search(body)
            if status != 200 or not m:
                stats["errors"] += 1
                await asyncio.sleep(0.2)
                status, body = await request(reader, writer, u.netloc, f"{base}/stream.m3u8")
                continue
            msn, part = int(m.group(1)), int(m.group(2))
            t = time.monotonic()
            status, body = await request(
                reader, writer, u.netloc, f"{base}/stream.m3u8?_HLS_msn={msn}&_HLS_part={part}"
            )
            stats["reload_ms"].append((time.monotonic() - t) * 1000)
            if status != 200:
                stats["errors"] += 1
                continue
            pstatus, pbody = await request(reader, writer, u.netloc, f"{base}/part{msn}.{part}.m4s")
            if pstatus == 200:
                stats["parts"] += 1
                stats["bytes"] += len(pbody)
            else:
                stats["errors"] += 1
    finally:
        writer.close()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--viewers", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    a = ap.parse_args()
    a.viewers = min(a.viewers, 2000)
    a.seconds = min(a.seconds, 120)
    stats = {"parts": 0, "bytes": 0, "errors": 0, "reload_ms": []}
    deadline = time.monotonic() + a.seconds
    cpu0, t0 = cpu_seconds(a.pid), time.monotonic()
    await asyncio.gather(*(viewer(a.url, deadline, stats) for _ in range(a.viewers)))
    cpu1, t1 = cpu_seconds(a.pid), time.monotonic()
    r = sorted(stats["reload_ms"]) or [0]
    print(
        f"viewers={a.viewers} wall={t1 - t0:.1f}s server_cpu={cpu1 - cpu0:.2f}s "
        f"({(cpu1 - cpu0) / (t1 - t0) * 100:.1f}% of a core) parts={stats['parts']} "
        f"MB={stats['bytes'] / 1e6:.1f} errors={stats['errors']} "
        f"reload_ms median={statistics.median(r):.0f} p99={r[int(len(r) * 0.99) - 1 if len(r) > 1 else 0]:.0f}"
    )


asyncio.run(main())
