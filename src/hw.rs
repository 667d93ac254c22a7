//! `sluice hw`: what this box offers, found by asking the CPU and the kernel
//! at run time (the build never assumes an instruction set or io_uring).

use std::fmt::Write as _;

use sluice::crypto::BackendKind;
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

/// The report `sluice hw` prints.
pub(crate) fn report(encoders: &[EncoderKind]) -> String {
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
        let report = super::report(&sluice::transcode::EncoderKind::ALL);
        assert!(report.contains("crypto backend: ring"), "{report}");
        assert!(report.contains("cpu crypto:"), "{report}");
        assert!(report.contains("packet I/O:"), "{report}");
        assert!(report.contains("libx264     opened (H264)"), "{report}");
        assert!(report.contains("libvpx      opened (VP8)"), "{report}");
        assert!(report.contains("h264_nvenc"), "{report}");
    }
}
