//! GStreamer `rtmp2sink` publisher and `rtmp2src` player, and parsing their
//! `-v` buffer traces (`identity silent=false` elements named `vin`, `vpkt`,
//! `vout`, `aout`).

use std::process::Command;

use crate::ffmpeg::{Playback, PublishSpec};
use crate::tools::find_tool;

/// Elements the GStreamer tests need.
pub const ELEMENTS: &[&str] = &[
    "videotestsrc",
    "audiotestsrc",
    "x264enc",
    "h264parse",
    "avenc_aac",
    "aacparse",
    "flvmux",
    "flvdemux",
    "rtmp2sink",
    "rtmp2src",
    "avdec_h264",
    "avdec_aac",
    "identity",
    "fakesink",
];

/// `gst-launch-1.0 -e -v` with line-buffered stdout and element errors /
/// libav warnings on stderr.
pub fn gst_launch() -> Command {
    // Line-buffer stdout so buffer traces arrive as they happen (progress
    // is read while the publisher runs).
    let mut c = if find_tool("stdbuf").is_some() {
        let mut c = Command::new("stdbuf");
        c.args(["-oL", "gst-launch-1.0"]);
        c
    } else {
        Command::new("gst-launch-1.0")
    };
    // Errors of every element, and warnings of the libav decoders
    // (decode_slice_header, non-existing PPS, ...) go to stderr.
    c.env("GST_DEBUG", "*:1,libav:2")
        .env("GST_DEBUG_NO_COLOR", "1");
    c.args(["-e", "-v"]);
    c
}

/// Publishes the test pattern: `videotestsrc ! x264enc ! flvmux ! rtmp2sink`
/// with `audiotestsrc ! avenc_aac` into the same mux. The `vin` identity
/// traces every video frame sent.
pub fn publish_command(url: &str, spec: &PublishSpec) -> Command {
    publish_command_rtsp(url, spec, "tcp")
}

/// [`publish_command`] with rtspclientsink's `protocols` (`tcp`, `udp`)
/// for an `rtsp://` URL.
pub fn publish_command_rtsp(url: &str, spec: &PublishSpec, protocols: &str) -> Command {
    let mut c = gst_launch();
    let audio_buffers = u64::from(spec.seconds) * 44_100 / 1024 + 1;
    // RTMP: both into flvmux; RTSP: each into rtspclientsink (RTP over the
    // RTSP connection).
    let (vsink, asink, sink) = if url.starts_with("rtsp://") {
        (
            "s.sink_0",
            "s.sink_1",
            format!("rtspclientsink name=s location={url} protocols={protocols}"),
        )
    } else {
        (
            "m.",
            "m.",
            format!("flvmux name=m streamable=true ! rtmp2sink location={url}"),
        )
    };
    let pipeline = format!(
        "videotestsrc is-live=true num-buffers={frames} pattern=ball \
         ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 \
         ! x264enc key-int-max={gop} tune=zerolatency speed-preset=veryfast bitrate=500 option-string=scenecut=0 \
         ! h264parse ! identity name=vin silent=false ! queue ! {vsink} \
         audiotestsrc is-live=true num-buffers={audio_buffers} samplesperbuffer=1024 \
         ! audio/x-raw,rate=44100,channels=1 ! audioconvert ! avenc_aac ! aacparse ! queue ! {asink} \
         {sink}",
        frames = spec.total_frames(),
        w = spec.width,
        h = spec.height,
        fps = spec.fps,
        gop = spec.gop,
    );
    c.args(pipeline.split_whitespace());
    c
}

/// Bytes of one decoded 320x240 I420 picture.
pub const PICTURE_BYTES: u64 = 320 * 240 * 3 / 2;

/// Plays `url`: `rtmp2src ! flvdemux`, decoding H.264 and AAC with libav.
/// Decoded pictures (I420) and audio (S16LE mono) go to `video.yuv` and
/// `audio.pcm` in `dir`, so counts are exact (`-v` traces can drop or repeat
/// lines). `vpkt` traces video packets (keyframe flags); `vout` posts an
/// `imperfect-timestamp` message for every gap or backwards step.
pub fn play_command(url: &str, dir: &std::path::Path) -> Command {
    play_command_rtsp(url, dir, "tcp")
}

/// [`play_command`] with rtspsrc's `protocols` (`tcp`, `udp`) for an
/// `rtsp://` URL.
pub fn play_command_rtsp(url: &str, dir: &std::path::Path, protocols: &str) -> Command {
    let mut c = gst_launch();
    c.arg("-m");
    let video = dir.join("video.yuv");
    let audio = dir.join("audio.pcm");
    // RTMP: rtmp2src ! flvdemux; RTSP: rtspsrc over TCP with RTP depayloaders.
    let (video_src, audio_src, head) = if url.starts_with("rtsp://") {
        (
            "d. ! application/x-rtp,media=video ! rtph264depay",
            "d. ! application/x-rtp,media=audio ! rtpmp4gdepay",
            format!("rtspsrc location={url} protocols={protocols} latency=1000 name=d"),
        )
    } else {
        (
            "d.video",
            "d.audio",
            format!("rtmp2src location={url} idle-timeout=4 ! flvdemux name=d"),
        )
    };
    let pipeline = format!(
        "{head} \
         {video_src} ! queue max-size-time=0 max-size-buffers=0 max-size-bytes=0 ! h264parse \
         ! identity name=vpkt silent=false ! avdec_h264 ! video/x-raw,format=I420,width=320,height=240 \
         ! identity name=vout check-imperfect-timestamp=true \
         ! filesink location={video} sync=false async=false \
         {audio_src} ! queue max-size-time=0 max-size-buffers=0 max-size-bytes=0 ! aacparse ! avdec_aac \
         ! audioconvert ! audio/x-raw,format=S16LE,channels=1 \
         ! filesink location={audio} sync=false async=false",
        video = video.display(),
        audio = audio.display(),
    );
    c.args(pipeline.split_whitespace());
    c
}

/// The number after `field` (e.g. `cur-timestamp=(guint64)`) in a printed
/// GstStructure.
fn structure_u64(line: &str, field: &str) -> Option<u64> {
    let rest = line.split(field).nth(1)?;
    rest.split([',', ';']).next()?.trim().parse().ok()
}

fn trace_lines<'a>(stdout: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let needle = format!("GstIdentity:{name}: last-message = chain");
    stdout.lines().filter(move |l| l.contains(&needle))
}

/// How many buffers the identity element `name` traced (approximate: the
/// `-v` notify can repeat or skip a line under load; use for progress only).
pub fn count_buffers(stdout: &str, name: &str) -> u64 {
    trace_lines(stdout, name).count() as u64
}

/// Summarises a player run: exact picture and audio frame counts from the
/// files in `dir`, the first packet's keyframe flag, and every
/// `imperfect-timestamp` message of the decoded video.
pub fn playback(stdout: &str, dir: &std::path::Path) -> Playback {
    let size = |name: &str| {
        std::fs::metadata(dir.join(name))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let video = size("video.yuv");
    let audio_samples = size("audio.pcm") / 2;
    let mut p = Playback {
        video: usize::try_from(video / PICTURE_BYTES).unwrap_or(usize::MAX),
        audio: usize::try_from(audio_samples / 1024).unwrap_or(usize::MAX),
        ..Playback::default()
    };
    if video % PICTURE_BYTES != 0 {
        p.non_monotonic.push(format!(
            "video output of {video} bytes is not whole pictures"
        ));
    }
    p.starts_on_keyframe = trace_lines(stdout, "vpkt")
        .next()
        .is_some_and(|l| !l.contains("delta-unit"));
    p.video_keyframes = trace_lines(stdout, "vpkt")
        .filter(|l| !l.contains("delta-unit"))
        .count();
    // `imperfect-timestamp` also fires for jitter in a live publisher's
    // timestamps and for FLV's millisecond rounding; only a picture that is
    // earlier than the previous one breaks monotonic order (lost pictures
    // show in the count).
    p.non_monotonic.extend(
        stdout
            .lines()
            .filter(|l| l.contains("from element \"vout\"") && l.contains("imperfect-timestamp"))
            .filter(|l| {
                match (
                    structure_u64(l, "prev-timestamp=(guint64)"),
                    structure_u64(l, "cur-timestamp=(guint64)"),
                ) {
                    (Some(prev), Some(cur)) => cur < prev,
                    _ => true,
                }
            })
            .map(str::to_owned),
    );
    p
}

/// Error lines of a `gst-launch-1.0` run: `ERROR` messages and debug lines,
/// decoder complaints, and warnings posted on the bus.
pub fn error_lines(stdout: &str, stderr: &str) -> Vec<String> {
    let mut out = crate::ffmpeg::error_lines(stderr);
    out.extend(
        stdout
            .lines()
            .filter(|l| !l.contains("last-message = "))
            .filter(|l| l.starts_with("ERROR") || l.starts_with("WARNING") || l.contains("error"))
            .map(str::to_owned),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const JITTER: &str = "Got message #239 from element \"vout\" (element): imperfect-timestamp, delta=(gint64)56000000, prev-timestamp=(guint64)2807000000, prev-duration=(guint64)40000000, cur-timestamp=(guint64)2903000000, cur-duration=(guint64)40000000;";
    const BACKWARDS: &str = "Got message #241 from element \"vout\" (element): imperfect-timestamp, delta=(gint64)-80000000, prev-timestamp=(guint64)2903000000, prev-duration=(guint64)40000000, cur-timestamp=(guint64)2863000000, cur-duration=(guint64)40000000;";

    #[test]
    fn only_backwards_steps_break_monotonic_order() {
        let dir = std::env::temp_dir();
        let p = playback(&format!("{JITTER}\n{BACKWARDS}\n"), &dir);
        assert_eq!(p.non_monotonic.len(), 1);
        assert!(p.non_monotonic[0].contains("#241"));
    }

    #[test]
    fn counts_traced_buffers_and_keyframes() {
        let out = "/GstPipeline:pipeline0/GstIdentity:vpkt: last-message = chain   ******* (vpkt:sink) (786 bytes, dts: 0:00:02.000000000, pts: 0:00:02.000000000, flags: 00004000 header , meta: none)\n\
                   /GstPipeline:pipeline0/GstIdentity:vpkt: last-message = chain   ******* (vpkt:sink) (86 bytes, dts: 0:00:02.040000000, pts: 0:00:02.040000000, flags: 00002000 delta-unit , meta: none)\n";
        assert_eq!(count_buffers(out, "vpkt"), 2);
        let p = playback(out, &std::env::temp_dir().join("no-such-dir"));
        assert!(p.starts_on_keyframe);
        assert_eq!(p.video_keyframes, 1);
        assert_eq!(p.video, 0);
    }
}
