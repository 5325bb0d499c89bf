#!/usr/bin/env python3
"""aiortc (an independent WebRTC stack) against arcly: publishes H.264 +
Opus (ffmpeg lavfi test sources through PyAV) over WHIP, plays the same
stream over WHEP, counts the decoded video frames and audio frames, and
prints one JSON line. Usage: aiortc_whip_whep.py http://HOST:PORT/app/stream
"""
import asyncio
import json
import sys
import time
import urllib.request

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer


def post(url, sdp):
    req = urllib.request.Request(url, data=sdp.encode(), method="POST",
                                 headers={"Content-Type": "application/sdp"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.headers.get("Location"), resp.read().decode()


async def main(base):
    out = {}
    video_src = MediaPlayer("testsrc=size=320x240:rate=25", format="lavfi")
    audio_src = MediaPlayer("sine=frequency=440:sample_rate=48000", format="lavfi")
    pub = RTCPeerConnection()
    pub.addTrack(video_src.video)
    pub.addTrack(audio_src.audio)
    # arcly takes H.264: offer only it (aiortc prefers VP8 otherwise).
    from aiortc.rtcrtpsender import RTCRtpSender
    caps = RTCRtpSender.getCapabilities("video")
    h264 = [c for c in caps.codecs if c.mimeType.lower() == "video/h264"]
    for t in pub.getTransceivers():
        if t.kind == "video":
            t.setCodecPreferences(h264)
    await pub.setLocalDescription(await pub.createOffer())
    loop = asyncio.get_running_loop()
    status, location, answer = await loop.run_in_executor(
        None, post, base + "/whip", pub.localDescription.sdp)
    out["whip_status"] = status
    out["whip_location"] = location
    await pub.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    # Let the publisher go live (first keyframe in the engine).
    for _ in range(100):
        if pub.connectionState == "connected":
            break
        await asyncio.sleep(0.05)
    out["whip_state"] = pub.connectionState
    await asyncio.sleep(2.0)

    play = RTCPeerConnection()
    play.addTransceiver("video", direction="recvonly")
    play.addTransceiver("audio", direction="recvonly")
    counts = {"video": 0, "audio": 0, "width": 0, "audio_rate": 0}
    done = asyncio.Event()

    async def consume(track):
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            counts[track.kind] += 1
            if track.kind == "video":
                counts["width"] = frame.width
            else:
                counts["audio_rate"] = frame.sample_rate
            if counts["video"] >= 50 and counts["audio"] >= 100:
                done.set()

    @play.on("track")
    def on_track(track):
        asyncio.ensure_future(consume(track))

    await play.setLocalDescription(await play.createOffer())
    t0 = time.monotonic()
    status, location, answer = await loop.run_in_executor(
        None, post, base + "/whep", play.localDescription.sdp)
    out["whep_status"] = status
    await play.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    try:
        await asyncio.wait_for(done.wait(), timeout=20)
    except asyncio.TimeoutError:
        pass
    out["seconds"] = round(time.monotonic() - t0, 2)
    out.update(counts)
    print(json.dumps(out), flush=True)
    await play.close()
    await pub.close()


asyncio.run(main(sys.argv[1]))
