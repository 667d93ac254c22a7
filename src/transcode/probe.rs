//! Encoder probing at start-up: each encoder in `[transcode] encoders`
//! order is opened on a tiny frame and must code it. What opened is what
//! renditions use; the rest carry the reason (no device, no driver, no
//! permission), which `sluice hw` prints and the daemon logs once.

use super::encoder::{EncoderSettings, VideoEncoder};
use super::profile::EncoderKind;
use crate::video::VideoCodec;

/// The probe frame: small, but above every hardware encoder's minimum
/// size (NVENC's is 145x49 for H.264).
const PROBE_SIZE: (u32, u32) = (160, 128);

/// The outcome of probing one encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// The encoder.
    pub kind: EncoderKind,
    /// `Ok` when it opened and coded the frame; why not otherwise.
    pub outcome: Result<(), String>,
}

/// The encoders that opened, in preference order, and why the others did
/// not.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EncoderProbe {
    /// One result per encoder probed, in the order given.
    pub results: Vec<ProbeResult>,
}

impl EncoderProbe {
    /// Probes `order` (usually `[transcode] encoders`).
    #[must_use]
    pub fn run(order: &[EncoderKind]) -> Self {
        let results = order
            .iter()
            .map(|&kind| ProbeResult {
                kind,
                outcome: probe_one(kind),
            })
            .collect();
        Self { results }
    }

    /// The first encoder that opened for `codec`.
    #[must_use]
    pub fn best_for(&self, codec: VideoCodec) -> Option<EncoderKind> {
        self.results
            .iter()
            .find(|r| r.outcome.is_ok() && r.kind.codec() == codec)
            .map(|r| r.kind)
    }

    /// Probes `order` and logs the outcome once: one line per encoder that
    /// did not open (why), one naming those that did. What the daemon
    /// does at start-up.
    #[must_use]
    pub fn run_and_log(order: &[EncoderKind]) -> Self {
        let probe = Self::run(order);
        for r in &probe.results {
            if let Err(why) = &r.outcome {
                tracing::info!("video encoder {} not available: {why}", r.kind);
            }
        }
        let usable: Vec<&str> = probe.usable().map(EncoderKind::name).collect();
        if usable.is_empty() {
            tracing::warn!(
                "no video encoder opened: renditions are off, receivers get original streams"
            );
        } else {
            tracing::info!("video encoders available: {}", usable.join(", "));
        }
        probe
    }

    /// Every encoder that opened.
    pub fn usable(&self) -> impl Iterator<Item = EncoderKind> + '_ {
        self.results
            .iter()
            .filter(|r| r.outcome.is_ok())
            .map(|r| r.kind)
    }
}

/// A device the encoder cannot work without, when it is missing: a
/// clearer reason than the error code FFmpeg's open returns.
fn missing_device(kind: EncoderKind) -> Option<String> {
    match kind {
        EncoderKind::H264Nvenc if !std::path::Path::new("/dev/nvidiactl").exists() => Some(
            "no NVIDIA device (/dev/nvidiactl absent: no GPU, or the driver is not loaded)"
                .to_owned(),
        ),
        EncoderKind::H264Qsv if render_nodes().is_empty() => {
            Some("no /dev/dri/renderD* render node (Quick Sync needs an Intel GPU)".to_owned())
        }
        _ => None,
    }
}

fn probe_one(kind: EncoderKind) -> Result<(), String> {
    if let Some(why) = missing_device(kind) {
        return Err(why);
    }
    let (w, h) = PROBE_SIZE;
    let mut encoder =
        VideoEncoder::open(EncoderSettings::new(kind, w, h, 300)).map_err(|e| e.to_string())?;
    // A mid-gray picture (any content will do; it must be initialized).
    {
        let frame = encoder.frame_mut().map_err(|e| e.to_string())?;
        for plane in 0..frame.planes() {
            frame.data_mut(plane).fill(128);
        }
    }
    let mut packets = 0;
    for i in 0..4i64 {
        packets += encoder
            .encode(i * 3000, i == 0, |_| {})
            .map_err(|e| e.to_string())?;
        if packets > 0 {
            return Ok(());
        }
    }
    Err(format!("{kind} opened but gave no packet for 4 frames"))
}

/// The DRM render nodes of this box (`/dev/dri/renderD*`), sorted.
#[must_use]
pub fn render_nodes() -> Vec<String> {
    let mut nodes: Vec<String> = std::fs::read_dir("/dev/dri")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().display().to_string())
        .filter(|p| p.starts_with("/dev/dri/renderD"))
        .collect();
    nodes.sort();
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_encoders_open_and_hardware_ones_say_why_not() {
        let probe = EncoderProbe::run(&EncoderKind::ALL);
        assert_eq!(probe.results.len(), EncoderKind::ALL.len());
        for r in &probe.results {
            if r.kind.is_software() {
                assert_eq!(r.outcome, Ok(()), "{}", r.kind);
            } else if let Err(why) = &r.outcome {
                assert!(!why.is_empty());
            }
        }
        assert!(probe.best_for(VideoCodec::Vp8).is_some());
        assert!(probe.best_for(VideoCodec::H264).is_some());
        // Only what was asked is probed, in that order.
        let only = EncoderProbe::run(&[EncoderKind::Libvpx]);
        assert_eq!(only.usable().collect::<Vec<_>>(), [EncoderKind::Libvpx]);
        assert_eq!(only.best_for(VideoCodec::H264), None);
    }
}
