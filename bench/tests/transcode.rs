//! `sluice-bench transcode` at its smallest: one 720p30 H.264 → 360p
//! transcode through a real daemon (its transcoder participant) and one
//! through the `ffmpeg` CLI in each input mode (SRTP from the bench's
//! publisher, the default; the clip's file), a one-second window each. Both must deliver
//! rendition frames and have their CPU measured; whether they keep real
//! time is the benchmark's question, not this test's (CI boxes are
//! shared). Needs the `ffmpeg` CLI and libx264, as the transcoding tests
//! do; never skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_bench::transcode::ffmpeg::FfmpegInput;
use sluice_bench::transcode::{self, Case, StepSettings, clip};

/// The sluice binary: `SLUICE_BIN`, else the one cargo built next to this
/// test, else built now.
fn sluice_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(path);
    }
    // This test runs from <target>/<profile>/deps/.
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>");
    let binary = profile_dir.join("sluice");
    if !binary.is_file() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "sluice", "--bin", "sluice"])
            .current_dir(&workspace)
            .status()
            .expect("run cargo build for the sluice binary");
        assert!(
            status.success(),
            "cargo build -p sluice --bin sluice failed"
        );
    }
    assert!(binary.is_file(), "no sluice binary at {}", binary.display());
    binary
}

#[test]
fn one_h264_transcode_runs_through_the_daemon_and_through_the_ffmpeg_cli() {
    let settings = StepSettings {
        seconds: 1.0,
        warmup: 2.0,
        sluice_binary: Some(sluice_binary()),
        ..StepSettings::default()
    };
    let clip = clip::make(Case::H264, settings.clip_frames()).expect("the clip encodes");
    assert_eq!(clip.frames.len() as u32, settings.clip_frames());
    assert!(
        clip.frames[0].packets.len() > 1,
        "a 720p key frame spans packets"
    );

    let ours = transcode::sluice::run(Case::H264, 1, &clip, &settings).expect("sluice ran");
    assert_eq!(ours.streams, 1);
    assert_eq!(ours.frames, 30, "{ours:?}");
    assert!(ours.received > 0, "no rendition frame came: {ours:?}");
    assert!(
        ours.cpu_seconds > 0.0 && ours.wall_seconds > 0.5,
        "{ours:?}"
    );

    for input in [FfmpegInput::Srtp, FfmpegInput::File] {
        let settings = StepSettings {
            ffmpeg_input: input,
            ..settings.clone()
        };
        let theirs = transcode::ffmpeg::run(Case::H264, 1, &clip, &settings).expect("ffmpeg ran");
        assert_eq!(theirs.frames, 30, "{input:?}: {theirs:?}");
        assert!(
            theirs.received > 0,
            "no ffmpeg frame came: {input:?}: {theirs:?}"
        );
        assert!(theirs.cpu_seconds > 0.0, "{input:?}: {theirs:?}");
        // With SRTP in, every output frame is matched with its source
        // frame (it authenticated, and its delay is measured).
        if input == FfmpegInput::Srtp {
            assert!(
                theirs.delay_p50_ms.is_some() && theirs.on_time > 0,
                "{theirs:?}"
            );
        }
    }
}
