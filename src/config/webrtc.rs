//! `[webrtc]`: the media port's DTLS certificate for browsers (DESIGN.md
//! "WebRTC"). Without keys a fresh self-signed ECDSA P-256 certificate is
//! made at every start; with `certificate` and `private_key` (PEM files)
//! the operator's pair is used, so the `a=fingerprint` of every answer
//! stays the same across restarts. Both files are read and checked
//! against each other when the config is parsed (`sluice check-config`
//! says what is wrong), and again when the daemon starts.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sluice_webrtc::identity::DtlsIdentity;

use super::error::ConfigError;
use super::{BoundedReadError, read_bounded};

/// `[webrtc]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebrtcConfig {
    /// PEM certificate (its first `CERTIFICATE` block) browsers see.
    pub certificate: Option<PathBuf>,
    /// Its PKCS#8 PEM private key.
    pub private_key: Option<PathBuf>,
}

impl WebrtcConfig {
    /// The operator's identity, read and checked now; `None` when none
    /// is configured (the daemon then makes one).
    pub fn identity(&self) -> Result<Option<DtlsIdentity>, ConfigError> {
        let (certificate, private_key) = match (&self.certificate, &self.private_key) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (c, k),
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError::WebrtcCertificate {
                    reason: "only one of certificate and private_key is set".to_owned(),
                });
            }
        };
        let read = |path: &Path, what: &str| {
            read_bounded(path).map_err(|e| ConfigError::WebrtcCertificate {
                reason: match e {
                    BoundedReadError::TooLarge => {
                        format!("the {what} file {} is too large", path.display())
                    }
                    BoundedReadError::Io(why) => {
                        format!("cannot read the {what} file {} ({why})", path.display())
                    }
                },
            })
        };
        let cert = read(certificate, "certificate")?;
        let key = read(private_key, "private key")?;
        DtlsIdentity::from_pem(&cert, &key)
            .map(Some)
            .map_err(|e| ConfigError::WebrtcCertificate {
                reason: format!(
                    "{} with {}: {e}",
                    certificate.display(),
                    private_key.display()
                ),
            })
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.identity().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k, cert.der().to_vec())
    }

    fn config(cert: &Path, key: &Path) -> String {
        format!(
            "[webrtc]\ncertificate = {:?}\nprivate_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        )
    }

    /// The configured pair is the identity (its fingerprint is what the
    /// answer carries); a missing file, a key of another certificate and
    /// half a pair are config errors that name the fix.
    #[test]
    fn the_configured_pair_is_used_and_bad_pairs_are_refused_with_a_sentence() {
        let dir = std::env::temp_dir().join(format!("sluice-webrtc-cert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key, der) = pair(&dir, "a");
        let (_, other_key, _) = pair(&dir, "b");

        let parsed = Config::parse(&config(&cert, &key), "test.toml").unwrap();
        let identity = parsed.webrtc.identity().unwrap().unwrap();
        assert!(identity.fingerprint().matches(&der));
        assert!(Config::default().webrtc.identity().unwrap().is_none());

        let missing = dir.join("nope.crt");
        for (text, says) in [
            (config(&cert, &other_key), "does not belong"),
            (config(&missing, &key), "cannot read the certificate file"),
            (config(&key, &key), "not a PEM X.509 certificate"),
            (
                format!("[webrtc]\ncertificate = {:?}\n", cert.display().to_string()),
                "only one of",
            ),
        ] {
            let err = Config::parse(&text, "test.toml").unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
            assert!(
                err.contains("[webrtc] certificate and private_key"),
                "{err}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
