//! ffmpeg as publisher and ffprobe as player, and parsing what they print.

use std::process::Command;
use std::time::Duration;

/// What the lavfi test publisher sends.
#[derive(Debug, Clone, Copy)]
pub struct PublishSpec {
    /// Frames per second of the test pattern.
    pub fps: u32,
    /// Keyframe interval in frames (fixed: scene cuts are off).
    pub gop: u32,
    /// Seconds to publish.
    pub seconds: u32,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
}

impl Default for PublishSpec {
    /// 25 fps, a keyframe every 50 frames (2 s GOP), 10 s, 320x240.
    fn default() -> Self {
        PublishSpec {
            fps: 25,
            gop: 50,
            seconds: 10,
            width: 320,
            height: 240,
        }
    }
}

impl PublishSpec {
    /// Frames the publisher sends in total.
    pub fn total_frames(&self) -> u64 {
        u64::from(self.fps) * u64::from(self.seconds)
    }
}

/// `ffmpeg -re` publishing `testsrc` + `sine` as H.264 + AAC in FLV to `url`,
/// reporting progress (`frame=N` lines) on stdout every 0.1 s.
pub fn publish_command(url: &str, spec: &PublishSpec) -> Command {
    publish_command_as(url, spec, "flv")
}

/// [`publish_command`] with the output muxer `format` (`-f`), e.g. `mpegts`.
pub fn publish_command_as(url: &str, spec: &PublishSpec, format: &str) -> Command {
    publish_command_full(url, spec, format, false, &[])
}

/// ffmpeg publishing over RTSP with RTP interleaved on the TCP connection
/// (`-rtsp_transport tcp`), H.264 with B-frames (x264 `veryfast`, 2
/// B-frames, no `zerolatency`) + AAC.
pub fn publish_rtsp_command(url: &str, spec: &PublishSpec) -> Command {
    publish_command_full(url, spec, "rtsp", true, &["-rtsp_transport", "tcp"])
}

/// [`publish_rtsp_command`] with RTP over UDP (`-rtsp_transport udp`:
/// `client_port` pairs, RTP to the server's UDP ports).
pub fn publish_rtsp_udp_command(url: &str, spec: &PublishSpec) -> Command {
    publish_command_full(url, spec, "rtsp", true, &["-rtsp_transport", "udp"])
}

/// [`publish_command_as`], with B-frames or not and extra output options
/// (placed before `-f`).
pub fn publish_command_full(
    url: &str,
    spec: &PublishSpec,
    format: &str,
    bframes: bool,
    output_args: &[&str],
) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args([
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "level+warning",
    ])
    .args(["-progress", "pipe:1", "-stats_period", "0.1"])
    .args(["-re", "-f", "lavfi", "-i"])
    .arg(format!(
        "testsrc=size={}x{}:rate={}",
        spec.width, spec.height, spec.fps
    ))
    .args([
        "-re",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
    ])
    .args(["-t", &spec.seconds.to_string()])
    .args(["-c:v", "libx264", "-preset", "veryfast"])
    .args(if bframes {
        // Two B-frames, but no lookahead: the stream lags the progress
        // count by ~3 frames only, as with `zerolatency`.
        &[
            "-bf",
            "2",
            "-x264-params",
            "rc-lookahead=0:sync-lookahead=0:sliced-threads=1",
        ][..]
    } else {
        &["-tune", "zerolatency"][..]
    })
    .args(["-pix_fmt", "yuv420p"])
    .args([
        "-g",
        &spec.gop.to_string(),
        "-keyint_min",
        &spec.gop.to_string(),
    ])
    .args(["-sc_threshold", "0", "-b:v", "500k"])
    .args(["-c:a", "aac", "-b:a", "64k"])
    .args(output_args)
    .args(["-f", format, url]);
    c
}

/// The last `frame=N` progress value an ffmpeg with `-progress pipe:1` printed.
pub fn progress_frame(stdout: &str) -> Option<u64> {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("frame=").and_then(|v| v.trim().parse().ok()))
}

/// `ffprobe` playing `url` and printing every decoded frame (compact format,
/// one `frame|media_type=..|key_frame=..|pts=..|pkt_dts=..` line each).
/// `rw_timeout` bounds how long it waits for data once the stream stalls.
pub fn play_command(url: &str, rw_timeout: Duration) -> Command {
    play_command_rtsp(url, rw_timeout, "tcp")
}

/// [`play_command`] with the RTSP transport (`-rtsp_transport`: `tcp`
/// interleaved or `udp`) for an `rtsp://` URL.
pub fn play_command_rtsp(url: &str, rw_timeout: Duration, transport: &str) -> Command {
    let mut c = Command::new("ffprobe");
    c.args(["-hide_banner", "-loglevel", "level+warning"]);
    if url.starts_with("rtsp://") {
        // `-timeout` bounds a stall.
        c.args(["-rtsp_transport", transport])
            .args(["-timeout", &rw_timeout.as_micros().to_string()]);
    } else {
        c.args(["-rw_timeout", &rw_timeout.as_micros().to_string()]);
    }
    c.args([
        "-show_entries",
        "frame=media_type,key_frame,pts,pkt_dts,pict_type",
        "-of",
        "compact",
    ])
    .arg(url);
    c
}

/// Video or audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A decoded picture.
    Video,
    /// A decoded audio frame.
    Audio,
}

/// One decoded frame as ffprobe reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedFrame {
    /// Video or audio.
    pub kind: Kind,
    /// `key_frame=1`.
    pub key: bool,
    /// Presentation timestamp in the stream time base (ms for FLV).
    pub pts: Option<i64>,
    /// Decode timestamp of the packet.
    pub dts: Option<i64>,
    /// `I`, `P`, `B` for video.
    pub pict_type: Option<String>,
}

/// Parses ffprobe `-of compact` frame lines; other lines are ignored.
pub fn parse_frames(stdout: &str) -> Vec<DecodedFrame> {
    let mut out = Vec::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("frame|") else {
            continue;
        };
        let mut kind = None;
        let mut f = DecodedFrame {
            kind: Kind::Video,
            key: false,
            pts: None,
            dts: None,
            pict_type: None,
        };
        for kv in rest.split('|') {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            match k {
                "media_type" => {
                    kind = match v {
                        "video" => Some(Kind::Video),
                        "audio" => Some(Kind::Audio),
                        _ => None,
                    }
                }
                "key_frame" => f.key = v == "1",
                "pts" => f.pts = v.parse().ok(),
                "pkt_dts" => f.dts = v.parse().ok(),
                "pict_type" => f.pict_type = Some(v.to_owned()),
                _ => {}
            }
        }
        if let Some(k) = kind {
            f.kind = k;
            out.push(f);
        }
    }
    out
}

/// Lines of ffmpeg/ffprobe/GStreamer output that show a decoding or stream
/// error (case-insensitive): `error`, `non-existing PPS`, `decode_slice_header`,
/// `Invalid data`, `no frame!`, `missing picture`, `corrupt`.
pub fn error_lines(output: &str) -> Vec<String> {
    const PATTERNS: &[&str] = &[
        "error",
        "non-existing pps",
        "non-existing sps",
        "decode_slice_header",
        "invalid data",
        "no frame!",
        "missing picture",
        "corrupt",
        "[fatal]",
    ];
    output
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            PATTERNS.iter().any(|p| l.contains(p))
        })
        .map(str::to_owned)
        .collect()
}

/// Summary of what a player decoded.
#[derive(Debug, Clone, Default)]
pub struct Playback {
    /// Decoded video pictures.
    pub video: usize,
    /// Decoded audio frames.
    pub audio: usize,
    /// Video keyframes among them.
    pub video_keyframes: usize,
    /// Video pictures of type `B` among them (ffprobe's `pict_type`).
    pub video_b_frames: usize,
    /// pts of the first and last video picture.
    pub video_span: Option<(i64, i64)>,
    /// pts of the first and last audio frame.
    pub audio_span: Option<(i64, i64)>,
    /// Whether the first picture was a keyframe.
    pub starts_on_keyframe: bool,
    /// Places where a stream's timestamps went backwards.
    pub non_monotonic: Vec<String>,
}

impl Playback {
    /// Summarises decoded frames.
    pub fn from_frames(frames: &[DecodedFrame]) -> Playback {
        let mut p = Playback::default();
        let mut last: [Option<i64>; 2] = [None, None];
        for f in frames {
            let idx = match f.kind {
                Kind::Video => 0,
                Kind::Audio => 1,
            };
            let ts = f.dts.or(f.pts);
            if let (Some(prev), Some(t)) = (last[idx], ts) {
                // Never backwards. (Equal timestamps happen: FLV carries
                // whole milliseconds and live publishers jitter.)
                let bad = t < prev;
                if bad {
                    p.non_monotonic
                        .push(format!("{:?} timestamp {t} after {prev}", f.kind));
                }
            }
            if ts.is_some() {
                last[idx] = ts;
            }
            match f.kind {
                Kind::Video => {
                    if p.video == 0 {
                        p.starts_on_keyframe = f.key;
                    }
                    p.video += 1;
                    if f.key {
                        p.video_keyframes += 1;
                    }
                    if f.pict_type.as_deref() == Some("B") {
                        p.video_b_frames += 1;
                    }
                    if let Some(t) = f.pts {
                        p.video_span = Some(match p.video_span {
                            None => (t, t),
                            Some((a, _)) => (a, t),
                        });
                    }
                }
                Kind::Audio => {
                    p.audio += 1;
                    if let Some(t) = f.pts {
                        p.audio_span = Some(match p.audio_span {
                            None => (t, t),
                            Some((a, _)) => (a, t),
                        });
                    }
                }
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ffprobe_compact_frames() {
        let out = "frame|media_type=video|key_frame=1|pts=2023|pkt_dts=2023|pict_type=I\n\
                   \n\
                   frame|media_type=audio|key_frame=1|pts=2000|pkt_dts=2000\n\
                   frame|media_type=video|key_frame=0|pts=2063|pkt_dts=2063|pict_type=P\n\
                   frame|media_type=video|key_frame=0|pts=2043|pkt_dts=2043|pict_type=P\n";
        let frames = parse_frames(out);
        assert_eq!(frames.len(), 4);
        let p = Playback::from_frames(&frames);
        assert_eq!((p.video, p.audio, p.video_keyframes), (3, 1, 1));
        assert!(p.starts_on_keyframe);
        assert_eq!(p.video_span, Some((2023, 2043)));
        // The step back is caught.
        assert_eq!(p.non_monotonic.len(), 1);
    }

    #[test]
    fn finds_decoder_errors() {
        let err = "[h264 @ 0x1] [error] non-existing PPS 0 referenced\n\
                   [flv @ 0x2] [warning] Failed to update header with correct duration.\n\
                   [h264 @ 0x1] [error] decode_slice_header error\n";
        assert_eq!(error_lines(err).len(), 2);
        assert_eq!(
            progress_frame("frame=12\nfps=25\nframe=250\nprogress=end\n"),
            Some(250)
        );
    }
}
