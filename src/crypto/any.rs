//! Run-time backend choice: the daemon picks a backend at start-up (from
//! config, else [`BackendKind::default`]) and every leg's keys go through
//! [`AnyGcm`], one `match` per batch entry.

use std::fmt;
use std::str::FromStr;

use ring::aead::LessSafeKey;

use super::rustcrypto::RustCryptoKey;
use super::{AeadBackend, CryptoError, OpenJob, RingGcm, RustCryptoGcm, SealJob};

/// The CPU AES-GCM implementations sluice carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// `ring` (BoringSSL assembly).
    Ring,
    /// The RustCrypto `aes-gcm` crate.
    RustCrypto,
}

impl BackendKind {
    /// Every backend, for tests and benchmarks that must cover them all.
    pub const ALL: [Self; 2] = [Self::Ring, Self::RustCrypto];

    /// The name used in config files, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ring => "ring",
            Self::RustCrypto => "aes-gcm",
        }
    }
}

impl Default for BackendKind {
    /// `ring`: on the criterion benchmark in `benches/srtp.rs` it sealed
    /// AEAD_AES_256_GCM SRTP packets faster than the `aes-gcm` crate at both
    /// audio (160 B) and video (1200 B) sizes; bench/README.md has the table.
    fn default() -> Self {
        Self::Ring
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend name that is not one of [`BackendKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown crypto backend {0:?}: use \"ring\" or \"aes-gcm\"")]
pub struct UnknownBackend(pub String);

impl FromStr for BackendKind {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| UnknownBackend(s.to_owned()))
    }
}

/// A backend chosen at run time.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyGcm {
    kind: BackendKind,
}

impl AnyGcm {
    /// The backend of the given kind.
    pub fn new(kind: BackendKind) -> Self {
        Self { kind }
    }

    /// Which backend this is.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }
}

/// A key prepared by whichever backend [`AnyGcm`] holds.
// Keys are made once per leg and stay in place in their session; boxing
// the larger variant would add a pointer chase to every packet instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AnyGcmKey {
    /// Prepared by [`RingGcm`].
    Ring(LessSafeKey),
    /// Prepared by [`RustCryptoGcm`].
    RustCrypto(RustCryptoKey),
}

impl AeadBackend for AnyGcm {
    type Key = AnyGcmKey;

    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn key(&self, raw: &[u8]) -> Result<Self::Key, CryptoError> {
        Ok(match self.kind {
            BackendKind::Ring => AnyGcmKey::Ring(RingGcm.key(raw)?),
            BackendKind::RustCrypto => AnyGcmKey::RustCrypto(RustCryptoGcm.key(raw)?),
        })
    }

    fn seal_batch(&self, jobs: &mut [SealJob<'_, Self::Key>]) {
        // Keys always come from this backend's own `key`, so each job's key
        // matches `self.kind`; dispatching per job keeps that true even if a
        // caller mixed keys of two `AnyGcm`s in one batch.
        for job in jobs {
            match job.key {
                AnyGcmKey::Ring(key) => seal_one(&RingGcm, key, job),
                AnyGcmKey::RustCrypto(key) => seal_one(&RustCryptoGcm, key, job),
            }
        }
    }

    fn open_batch(&self, jobs: &mut [OpenJob<'_, Self::Key>]) {
        for job in jobs {
            job.authentic = match job.key {
                AnyGcmKey::Ring(key) => open_one(&RingGcm, key, job),
                AnyGcmKey::RustCrypto(key) => open_one(&RustCryptoGcm, key, job),
            };
        }
    }
}

fn open_one<B: AeadBackend>(backend: &B, key: &B::Key, job: &mut OpenJob<'_, AnyGcmKey>) -> bool {
    let mut one = [OpenJob {
        key,
        nonce: job.nonce,
        aad: job.aad,
        data: &mut *job.data,
        tag: job.tag,
        authentic: false,
    }];
    backend.open_batch(&mut one);
    one[0].authentic
}

fn seal_one<B: AeadBackend>(backend: &B, key: &B::Key, job: &mut SealJob<'_, AnyGcmKey>) {
    backend.seal_batch(&mut [SealJob {
        key,
        nonce: job.nonce,
        aad: job.aad,
        data: &mut *job.data,
        tag: &mut *job.tag,
    }]);
}
