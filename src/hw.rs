//! `sluice hw`: what this box offers, found by asking the CPU and the kernel
//! at run time (the build never assumes an instruction set or io_uring).

use std::fmt::Write as _;

use sluice::crypto::BackendKind;
use sluice::crypto::calibrate::{SWEEP, calibrate};
use sluice::crypto::gpu::process_engine;
use sluice::net::probe_io_uring;
use sluice::transcode::{EncoderKind, EncoderProbe};

/// CPU features that decide AES-GCM speed, as (name, present).
fn cpu_features() -> Vec<(&'static str, bool)> {
    #[cfg(target_arch = "x86_64")]
    {
        vec![
            ("AES-NI", std::arch::is_x86_feature_detected!("aes")),
            (
                "PCLMULQDQ",
                std::arch::is_x86_feature_detected!("pclmulqdq"),
            ),
            ("AVX2", std::arch::is_x86_feature_detected!("avx2")),
            ("VAES", std::arch::is_x86_feature_detected!("vaes")),
            (
                "VPCLMULQDQ",
                std::arch::is_x86_feature_detected!("vpclmulqdq"),
            ),
            ("SHA-NI", std::arch::is_x86_feature_detected!("sha")),
        ]
    }
    #[cfg(target_arch = "aarch64")]
    {
        vec![
            ("AES", std::arch::is_aarch64_feature_detected!("aes")),
            ("PMULL", std::arch::is_aarch64_feature_detected!("pmull")),
            ("SHA1", std::arch::is_aarch64_feature_detected!("sha2")),
        ]
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        Vec::new()
    }
}

/// GPU device nodes present: DRM render nodes and NVIDIA devices.
fn gpu_devices() -> Vec<String> {
    let mut found: Vec<String> = ["/dev/dri", "/dev"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path().display().to_string())
        .filter(|path| {
            path.starts_with("/dev/dri/renderD")
                || path
                    .strip_prefix("/dev/nvidia")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    found.sort();
    found
}

/// The OpenCL devices, what `gpu = "auto"` would do with them, and (on a
/// GPU, or on any device when `force`) the measured crossover.
fn gpu_report(out: &mut String, force: bool) {
    match sluice_gpu::probe() {
        Err(why) => {
            let _ = writeln!(out, "opencl:         none ({why})");
        }
        Ok(devices) if devices.is_empty() => {
            let _ = writeln!(out, "opencl:         no device");
        }
        Ok(devices) => {
            for device in &devices {
                let _ = writeln!(out, "opencl:         {}", device.describe());
            }
        }
    }
    let engine = match process_engine(force) {
        Ok(engine) => engine,
        Err(why) => {
            let _ = writeln!(
                out,
                "gpu offload:    none under gpu = \"auto\": {why}; `sluice hw --calibrate` measures a CPU driver anyway"
            );
            return;
        }
    };
    match calibrate(&engine, &SWEEP, 3) {
        Err(why) => {
            let _ = writeln!(
                out,
                "gpu offload:    none: calibration on {} failed: {why}",
                engine.device().name
            );
        }
        Ok(calibration) => {
            let _ = match calibration.crossover {
                Some(n) => writeln!(
                    out,
                    "gpu offload:    {} for fan-outs of {n} receivers or more (measured crossover)",
                    engine.device().name
                ),
                None => writeln!(
                    out,
                    "gpu offload:    unused: {} was slower than ring at every N up to {}",
                    engine.device().name,
                    SWEEP[SWEEP.len() - 1]
                ),
            };
            let _ = writeln!(
                out,
                "gpu crossover:  seal time per batch of {}-byte packets, ring on one core vs the device:",
                calibration.payload
            );
            for line in calibration.table().lines() {
                let _ = writeln!(out, "                {line}");
            }
        }
    }
}

/// The report `sluice hw` prints: the GPU crossover is measured even on a
/// CPU OpenCL driver when `calibrate`; video encoders are probed in the
/// order `encoders` gives.
pub(crate) fn report(calibrate: bool, encoders: &[EncoderKind]) -> String {
    let mut out = String::new();
    let features = cpu_features();
    let line: Vec<String> = features
        .iter()
        .map(|(name, present)| format!("{name} {}", if *present { "yes" } else { "no" }))
        .collect();
    let _ = writeln!(
        out,
        "cpu crypto:     {}",
        if line.is_empty() {
            "unknown architecture".to_owned()
        } else {
            line.join(", ")
        }
    );
    let hardware_aes = features.iter().take(2).all(|(_, present)| *present) && !features.is_empty();
    let backend = BackendKind::default();
    let gpus = gpu_devices();
    let _ = writeln!(
        out,
        "gpus:           {}",
        if gpus.is_empty() {
            "none seen (no /dev/dri render node or /dev/nvidia device)".to_owned()
        } else {
            gpus.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "crypto backend: {backend} ({})",
        if hardware_aes {
            "default; fastest on the SRTP benchmark, see bench/README.md"
        } else {
            "default; no AES/carry-less multiply instructions: expect software AES speeds"
        }
    );
    gpu_report(&mut out, calibrate);
    let _ = match probe_io_uring() {
        Ok(()) => writeln!(out, "packet I/O:     io_uring (available)"),
        Err(why) => writeln!(out, "packet I/O:     recvmmsg/sendmmsg fallback: {why}"),
    };
    out.push_str(&encoder_report(encoders));
    out
}

/// The video encoders, probed in `order` by opening each on a tiny frame.
pub(crate) fn encoder_report(order: &[EncoderKind]) -> String {
    let mut out = String::from("video encoders (probed in [transcode] encoders order):\n");
    for r in EncoderProbe::run(order).results {
        let _ = match &r.outcome {
            Ok(()) => writeln!(out, "  {:<11} opened ({})", r.kind.name(), r.kind.codec()),
            Err(why) => writeln!(out, "  {:<11} not available: {why}", r.kind.name()),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_report_names_the_backend() {
        let report = super::report(false, &sluice::transcode::EncoderKind::ALL);
        assert!(report.contains("crypto backend: ring"), "{report}");
        assert!(report.contains("cpu crypto:"), "{report}");
        assert!(report.contains("packet I/O:"), "{report}");
        assert!(report.contains("gpu offload:"), "{report}");
        assert!(report.contains("opencl:"), "{report}");
        assert!(report.contains("libx264     opened (H264)"), "{report}");
        assert!(report.contains("libvpx      opened (VP8)"), "{report}");
        assert!(report.contains("h264_nvenc"), "{report}");
    }

    /// With a device (pocl in CI), `--calibrate` prints the sweep.
    #[test]
    fn calibrating_prints_every_batch_size() {
        if sluice::crypto::BackendKind::usable().contains(&sluice::crypto::BackendKind::Gpu) {
            let report = super::report(true, &[]);
            assert!(report.contains("gpu crossover:"), "{report}");
            for n in super::SWEEP {
                assert!(
                    report.contains(&format!("{n:>6} ")),
                    "{n} missing in\n{report}"
                );
            }
        } else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but there is no OpenCL device"
            );
        }
    }
}
