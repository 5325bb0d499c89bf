//! Running real ffmpeg / ffprobe from the interop tests: tool lookup (a
//! missing tool fails under `CI`), a watchdog on every run, the shared lavfi
//! test source, decoding and stream counts as ffprobe sees them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[cfg(feature = "rtmp")]
use arcly::rtmp::flv::{self, FlvDemux};
#[cfg(feature = "rtmp")]
use arcly::Frame;
#[cfg(feature = "rtmp")]
use bytes::Bytes;

/// No single ffmpeg / ffprobe run may take longer.
pub const WATCHDOG: Duration = Duration::from_secs(50);

/// Whether ffmpeg and ffprobe run. Without them a test is skipped locally
/// (with a message) and fails when `CI` is set (`true`, `1` or `yes`).
pub fn tools_present() -> bool {
    let ok = ["ffmpeg", "ffprobe"].iter().all(|t| {
        Command::new(t)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !ok {
        assert!(
            !super::in_ci(),
            "ffmpeg and ffprobe must be installed in CI"
        );
        eprintln!("SKIPPED: ffmpeg/ffprobe not found");
    }
    ok
}

/// A temporary path `arcly-<prefix>-<pid>-<n>-<name>`, unique per call: tests
/// run in parallel and share file names.
pub fn tmp_path(prefix: &str, name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("arcly-{prefix}-{}-{n}-{name}", std::process::id()))
}

/// Runs `tool` (`ffmpeg` or `ffprobe`) at `-v error` (unless `args` name
/// another `-v`) under the [`WATCHDOG`]; asserts it succeeded; returns (stdout,
/// stderr).
pub fn run(tool: &str, args: &[&str]) -> (String, String) {
    let start = Instant::now();
    let mut common: Vec<&str> = vec!["-hide_banner"];
    if tool == "ffmpeg" {
        common.push("-nostdin");
    }
    if !args.contains(&"-v") {
        common.extend_from_slice(&["-v", "error"]);
    }
    let mut child = Command::new(tool)
        .args(common)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool} must be installed: {e}"));
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > WATCHDOG {
            let _ = child.kill();
            panic!("{tool} {args:?} hung for {WATCHDOG:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{tool} {args:?} failed: {e}");
    (o, e)
}

/// Runs ffmpeg and requires an empty stderr at `-v error`; returns stdout.
pub fn ffmpeg(args: &[&str]) -> String {
    let (out, err) = run("ffmpeg", args);
    assert!(err.is_empty(), "ffmpeg {args:?} reported errors: {err}");
    out
}

/// The ffmpeg input options of the lavfi test source: 320x240 `testsrc` at
/// 25 fps and a 440 Hz sine at `sample_rate` Hz, cut to `seconds`, as
/// yuv420p. Encoder and output options follow.
pub fn lavfi_source(sample_rate: u32, seconds: u32) -> Vec<String> {
    [
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25",
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency=440:sample_rate={sample_rate}"),
        "-t",
        &seconds.to_string(),
        "-pix_fmt",
        "yuv420p",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Encodes the [`lavfi_source`] with `codec_args` (encoders and muxer
/// options) into `out`; ffmpeg must not report an error.
pub fn encode_test_source(sample_rate: u32, seconds: u32, codec_args: &[&str], out: &Path) {
    let source = lavfi_source(sample_rate, seconds);
    let mut args = vec!["-y"];
    args.extend(source.iter().map(String::as_str));
    args.extend_from_slice(codec_args);
    args.push(out.to_str().unwrap());
    ffmpeg(&args);
}

/// Encoder options of 2 s of H.264 (GOP 25, 2 B-frames) + stereo AAC.
pub const H264_BF_AAC: &[&str] = &[
    "-c:v", "libx264", "-g", "25", "-bf", "2", "-c:a", "aac", "-ac", "2",
];

/// Decodes every frame of `input` (a file or a playlist) and requires not
/// a single warning (continuity errors, PES size mismatches, bad timestamps,
/// decoding errors).
pub fn decode_without_warnings(input: &Path) {
    let p = input.to_str().unwrap();
    let (_, err) = run(
        "ffmpeg",
        &["-v", "warning", "-xerror", "-i", p, "-f", "null", "-"],
    );
    assert!(err.is_empty(), "ffmpeg decoding {p} warned: {err}");
}

/// One stream as ffprobe counts it after decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbedStream {
    pub index: usize,
    /// `video` or `audio`.
    pub codec_type: String,
    /// ffprobe's codec name (`h264`, `hevc`, `aac`, `opus`).
    pub codec_name: String,
    /// Frames ffprobe read (`-count_frames`).
    pub frames: usize,
}

/// ffprobe's streams of `input` with their decoded frame counts, each stream
/// once (MPEG-TS lists streams again under their program).
pub fn probe_streams(input: &Path) -> Vec<ProbedStream> {
    let (out, err) = run(
        "ffprobe",
        &[
            "-count_frames",
            "-show_entries",
            "stream=index,codec_name,codec_type,nb_read_frames",
            "-of",
            "csv=p=0",
            input.to_str().unwrap(),
        ],
    );
    assert!(err.is_empty(), "ffprobe {input:?}: {err}");
    let mut streams = std::collections::BTreeMap::new();
    for l in out.lines().filter(|l| !l.trim().is_empty()) {
        // ffprobe prints the fields in its own order: index, codec_name,
        // codec_type, nb_read_frames.
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f.len(), 4, "ffprobe line {l:?}");
        let s = ProbedStream {
            index: f[0].parse().unwrap(),
            codec_name: f[1].to_owned(),
            codec_type: f[2].to_owned(),
            frames: f[3].trim().parse().unwrap(),
        };
        streams.insert(s.index, s);
    }
    streams.into_values().collect()
}

/// Decodes `input` without a warning ([`decode_without_warnings`]) and
/// returns the (video, audio) frame counts ffprobe reads from it.
pub fn decode_counts(input: &Path) -> (usize, usize) {
    decode_without_warnings(input);
    let streams = probe_streams(input);
    let count = |k: &str| {
        streams
            .iter()
            .filter(|s| s.codec_type == k)
            .map(|s| s.frames)
            .sum()
    };
    (count("video"), count("audio"))
}

/// The tags of an FLV file, demuxed into frames by `FlvDemux`.
#[cfg(feature = "rtmp")]
pub struct FlvFrames {
    /// Audio and video frames in file order (configs included).
    pub frames: Vec<Frame>,
    /// Script data tags (`onMetaData`), passed over.
    pub script_tags: usize,
    /// Bytes after the last complete tag.
    pub trailing: usize,
}

/// Reads every tag of the FLV file `data` (header included) through
/// `FlvDemux`, with millisecond timestamps.
#[cfg(feature = "rtmp")]
pub fn demux_flv(data: &Bytes) -> FlvFrames {
    let mut demux = FlvDemux::new();
    let mut frames = Vec::new();
    let mut script_tags = 0;
    let mut rest = data.slice(flv::FILE_HEADER_LEN..);
    while let Some((tag, used)) = flv::read_tag(&rest).unwrap() {
        rest = rest.slice(used..);
        let ts = i64::from(tag.timestamp_ms);
        let f = match tag.tag_type {
            flv::TAG_TYPE_VIDEO => demux.video(ts, tag.body).unwrap(),
            flv::TAG_TYPE_AUDIO => demux.audio(ts, tag.body).unwrap(),
            _ => {
                script_tags += 1;
                None
            }
        };
        frames.extend(f);
    }
    FlvFrames {
        frames,
        script_tags,
        trailing: rest.len(),
    }
}
