#!/usr/bin/env python3
"""RSS of the arcly binary after bursts (docs/security.md item 8).

Starts `arcly` (default: target/release/arcly) on loopback with an ffmpeg
publisher of live/cam and one LL-HLS reader, measures the unattacked RSS,
then runs two bursts and samples RSS every 5 s for a minute after each:

  1. 4 000 parked blocking playlist reloads (8 source IPs x 500, below the
     per-client limit), held ~3 s, closed;
  2. 3 000 RTMP connections (6 source IPs x 500) doing the handshake, held
     5 s, closed.

Prints a table and exits non-zero when RSS a minute after a burst is more
than 2x the baseline. Usage:

  python3 bench/rss_burst.py [--bin PATH] [--after SECS] [-- SERVER FLAGS]

Needs ffmpeg. Linux only (reads /proc/PID/status).
"""

import argparse
import asyncio
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def reader(http, stop):
    """A healthy HLS client: the media playlist once a second."""
    while not stop.is_set():
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{http}/live/cam/stream.m3u8", timeout=10).read()
        except Exception:
            pass
        stop.wait(1.0)


def last_msn(http):
    text = urllib.request.urlopen(f"http://127.0.0.1:{http}/live/cam/stream.m3u8", timeout=15).read().decode()
    seq = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))
    return seq + text.count("#EXTINF") - 1


async def open_from(src, port):
    sock = socket.socket()
    sock.setblocking(False)
    sock.bind((src, 0))
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def parked_burst(http, n_ips, per_ip, hold):
    msn = last_msn(http) + 2
    req = f"GET /live/cam/stream.m3u8?_HLS_msn={msn} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    loop = asyncio.get_running_loop()

    async def one(src):
        try:
            s = await open_from(src, http)
            await loop.sock_sendall(s, req)
            return s
        except OSError:
            return None

    socks = await asyncio.gather(*[one(f"127.0.0.{10 + i}") for i in range(n_ips) for _ in range(per_ip)])
    await asyncio.sleep(hold)
    for s in socks:
        if s:
            s.close()
    return sum(1 for s in socks if s)


async def rtmp_burst(rtmp, n_ips, per_ip, hold):
    loop = asyncio.get_running_loop()
    c1 = bytes(1536)

    async def one(src):
        try:
            s = await open_from(src, rtmp)
            await loop.sock_sendall(s, b"\x03" + c1)
            got = b""
            while len(got) < 1 + 1536 * 2:
                chunk = await asyncio.wait_for(loop.sock_recv(s, 65536), 10)
                if not chunk:
                    break
                got += chunk
            await loop.sock_sendall(s, got[1 : 1 + 1536])
            return s
        except (OSError, asyncio.TimeoutError):
            return None

    socks = await asyncio.gather(*[one(f"127.0.0.{30 + i}") for i in range(n_ips) for _ in range(per_ip)])
    await asyncio.sleep(hold)
    for s in socks:
        if s:
            s.close()
    return sum(1 for s in socks if s)


def sample_after(pid, secs, label, rows):
    t0 = time.time()
    peak = rss_mib(pid)
    while True:
        t = time.time() - t0
        r = rss_mib(pid)
        peak = max(peak, r)
        rows.append((label, round(t), r, fds(pid)))
        print(f"  {label:>8} +{t:5.1f}s  RSS {r:7.1f} MiB  fds {fds(pid)}", flush=True)
        if t >= secs:
            return r
        time.sleep(5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/arcly")
    ap.add_argument("--after", type=float, default=60.0)
    ap.add_argument("server_flags", nargs="*", help="more flags for arcly (after --)")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    rtmp, http = free_port(), free_port()
    env = dict(os.environ, RUST_LOG="warn")
    server = subprocess.Popen(
        [args.bin, "--rtmp", f"127.0.0.1:{rtmp}", "--http", f"127.0.0.1:{http}", "--srt", "off",
         "--rtsp", "off", *args.server_flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard)),
    )
    publisher = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
         "-re", "-f", "lavfi", "-i", "testsrc=size=640x360:rate=25",
         "-re", "-f", "lavfi", "-i", "sine=frequency=440",
         "-t", str(int(40 + 2 * args.after + 60)),
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
         "-g", "50", "-b:v", "1M", "-c:a", "aac", "-f", "flv",
         f"rtmp://127.0.0.1:{rtmp}/live/cam"],
    )
    stop = threading.Event()
    try:
        time.sleep(3)
        th = threading.Thread(target=reader, args=(http, stop), daemon=True)
        th.start()
        # The muxer's window (7 segments of 2 s) is full after ~15 s.
        time.sleep(30)
        base = statistics.median([rss_mib(server.pid) for _ in range(5) if not time.sleep(1)])
        print(f"baseline (publisher + HLS reader, unattacked): RSS {base:.1f} MiB, fds {fds(server.pid)}")
        rows = []
        n = asyncio.run(parked_burst(http, 8, 500, 3.0))
        print(f"burst 1: {n} parked blocking reloads held 3 s, closed")
        after1 = sample_after(server.pid, args.after, "parked", rows)
        n = asyncio.run(rtmp_burst(rtmp, 6, 500, 5.0))
        print(f"burst 2: {n} RTMP connections (handshake) held 5 s, closed")
        after2 = sample_after(server.pid, args.after, "conns", rows)
        peak = max(r for _, _, r, _ in rows)
        print(f"\nbaseline {base:.1f} MiB; peak after bursts {peak:.1f} MiB; "
              f"{args.after:.0f} s after burst 1: {after1:.1f} MiB ({after1 / base:.2f}x); "
              f"after burst 2: {after2:.1f} MiB ({after2 / base:.2f}x)")
        ok = after1 <= 2 * base and after2 <= 2 * base
        print("PASS: within 2x of the baseline" if ok else "FAIL: more than 2x the baseline")
        return 0 if ok else 1
    finally:
        stop.set()
        publisher.terminate()
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    sys.exit(main())
