//! `[transcode]`: video renditions for receivers that cannot take a
//! publisher's stream as it is (DESIGN.md, "Transcoding").

use serde::Deserialize;

use super::error::{ConfigError, Location};
use crate::transcode::EncoderKind;

/// The accepted encoder names, in words.
const ENCODER_NAMES: &str = "a list of \"h264_vaapi\", \"vp8_vaapi\", \"h264_nvenc\", \"h264_qsv\", \"libx264\", \"libvpx\"";

/// `[transcode]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscodeConfig {
    /// Whether renditions are made at all; without, every receiver gets
    /// the original streams.
    pub enabled: bool,
    /// The encoders to try, in order; each is probed at start by opening
    /// it on a tiny frame, and a rendition uses the first that opened for
    /// its codec.
    pub encoders: Vec<String>,
    /// Transcodes at most at once on this node; a receiver beyond gets the
    /// original stream (and the refusal is counted).
    pub max_sessions: usize,
    /// Media threads the transcodes run on: 0 (the default) runs each on
    /// a thread of its own, started and ended with it (the kernel spreads
    /// them over the cores); N shares N threads among all transcodes.
    pub threads: usize,
    /// A transcode with no receiver left stops after this long (a receiver
    /// that rejoins within it finds it still running).
    pub linger_secs: u64,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            encoders: EncoderKind::ALL
                .iter()
                .map(|k| k.name().to_owned())
                .collect(),
            max_sessions: 16,
            threads: 0,
            linger_secs: 5,
        }
    }
}

impl TranscodeConfig {
    pub(super) fn validate(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &'static str, value: String, range: &'static str| ConfigError::OutOfRange {
            at: Location::of_key(text, origin, "transcode", key),
            section: "transcode",
            key,
            value,
            range,
        };
        for name in &self.encoders {
            if EncoderKind::from_name(name).is_none() {
                return Err(bad("encoders", format!("{name:?}"), ENCODER_NAMES));
            }
        }
        if self.enabled && self.encoders.is_empty() {
            return Err(bad(
                "encoders",
                "[]".to_owned(),
                "at least one encoder (or set enabled = false)",
            ));
        }
        if self.linger_secs > 3600 {
            return Err(bad(
                "linger_secs",
                self.linger_secs.to_string(),
                "0 to 3600",
            ));
        }
        Ok(())
    }

    /// The encoders in the order given (validated at parse time).
    #[must_use]
    pub fn encoder_order(&self) -> Vec<EncoderKind> {
        self.encoders
            .iter()
            .filter_map(|n| EncoderKind::from_name(n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::transcode::EncoderKind;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse_with_env(text, "sluice.toml", &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn encoders_keep_their_order_and_unknown_names_are_refused() {
        let c =
            parse("[transcode]\nencoders = [\"libvpx\", \"libx264\"]\nmax_sessions = 2\n").unwrap();
        assert_eq!(
            c.transcode.encoder_order(),
            [EncoderKind::Libvpx, EncoderKind::Libx264]
        );
        assert_eq!(c.transcode.max_sessions, 2);
        let e = parse("[transcode]\nencoders = [\"libx265\"]\n").unwrap_err();
        assert!(
            e.starts_with("sluice.toml:2:1: [transcode] encoders = \"libx265\""),
            "{e}"
        );
        assert!(e.contains("\"libvpx\""), "{e}");
        let e = parse("[transcode]\nencoders = []\n").unwrap_err();
        assert!(e.contains("enabled = false"), "{e}");
        parse("[transcode]\nenabled = false\nencoders = []\n").unwrap();
        let e = parse("[transcode]\nthreds = 2\n").unwrap_err();
        assert!(e.contains("threds"), "{e}");
        assert!(e.contains("max_sessions"), "{e}");
    }
}
