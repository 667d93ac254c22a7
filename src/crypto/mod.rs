//! Crypto backends: AES-GCM behind one *batch* trait.
//!
//! SRTP (RFC 7714) seals and opens many packets per loop turn, each under
//! its own leg's key. [`AeadBackend`] takes such a batch in one call, so a
//! backend that can fill lanes (a multi-buffer CPU path, a GPU) sees the
//! whole batch, while a plain CPU backend simply walks it.
//!
//! How to drive it: turn each raw key into a [`AeadBackend::Key`] once with
//! [`AeadBackend::key`] (the AES key schedule and GHASH tables are computed
//! there, never per packet), then hand [`SealJob`]s or [`OpenJob`]s, which
//! borrow the caller's packet buffers in place, to
//! [`AeadBackend::seal_batch`] / [`AeadBackend::open_batch`].
//!
//! Backends: [`RustCryptoGcm`] (the `aes-gcm` crate, AES-NI + CLMUL) and
//! [`RingGcm`] (ring's BoringSSL-derived assembly). [`AnyGcm`] picks one at
//! run time; which is the default, and why, is in [`BackendKind::default`].
//! The GPU backend (the `sluice-gpu` crate: OpenCL kernels, constant
//! time) joins through [`AnyGcm`] too, either for every batch
//! ([`BackendKind::Gpu`]) or for batches above the crossover measured at
//! start-up ([`gpu::GpuOffload`], [`calibrate`]).

mod any;
pub mod calibrate;
mod counters;
pub mod gpu;
mod ring_gcm;
mod rustcrypto;

pub use any::{AnyGcm, AnyGcmKey, BackendKind};
pub use counters::{CryptoCounters, CryptoMetrics, CryptoPath};
pub use ring_gcm::RingGcm;
pub use rustcrypto::RustCryptoGcm;

/// Length of the AES-GCM authentication tag SRTP uses (RFC 7714 §5).
pub const GCM_TAG_LEN: usize = 16;
/// Length of the AES-GCM nonce (IV) SRTP uses (RFC 7714 §8.1).
pub const GCM_NONCE_LEN: usize = 12;

/// What a backend can refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// AES-GCM keys are 16 (AES-128) or 32 (AES-256) bytes.
    #[error("an AES-GCM key must be 16 or 32 bytes long, not {0}")]
    BadKeyLength(usize),
    /// The GPU backend was asked for but no OpenCL device could be used
    /// (the reason was logged once).
    #[error("the GPU crypto backend has no usable OpenCL device")]
    GpuUnavailable,
}

/// One packet to seal in place: `data` is encrypted and the tag over
/// `aad ‖ ciphertext` is written into `tag`.
#[derive(Debug)]
pub struct SealJob<'a, K> {
    /// The prepared key (see [`AeadBackend::key`]).
    pub key: &'a K,
    /// The 96-bit nonce; unique per key, which SRTP guarantees by its index.
    pub nonce: [u8; GCM_NONCE_LEN],
    /// Authenticated, not encrypted (the RTP header, RFC 7714 §8.2).
    pub aad: &'a [u8],
    /// Plaintext in, ciphertext out.
    pub data: &'a mut [u8],
    /// Receives the tag.
    pub tag: &'a mut [u8; GCM_TAG_LEN],
}

/// One packet to verify and decrypt in place.
#[derive(Debug)]
pub struct OpenJob<'a, K> {
    /// The prepared key (see [`AeadBackend::key`]).
    pub key: &'a K,
    /// The 96-bit nonce the sender used.
    pub nonce: [u8; GCM_NONCE_LEN],
    /// Authenticated, not encrypted.
    pub aad: &'a [u8],
    /// Ciphertext in, plaintext out (only meaningful when `authentic`).
    pub data: &'a mut [u8],
    /// The tag that came with the packet.
    pub tag: &'a [u8; GCM_TAG_LEN],
    /// Set by the backend: whether the tag verified. When it did not, the
    /// contents of `data` are unspecified and must be discarded.
    pub authentic: bool,
}

/// Receives an asynchronously sealed batch job by job:
/// `(job index, ciphertext, tag)`; see [`AeadBackend::poll_sealed`].
pub type SealedSink<'a> = dyn FnMut(usize, &[u8], &[u8; GCM_TAG_LEN]) + 'a;

/// A batch AES-GCM implementation.
///
/// Implementations must give results identical to AES-GCM (NIST SP 800-38D)
/// for every job, whatever the batch size or order; the known-answer and
/// libsrtp interop tests run against every backend.
pub trait AeadBackend: Send + Sync + Clone + std::fmt::Debug + 'static {
    /// A key with its schedule precomputed. Cheap to use, not to make.
    type Key: Send + Sync + std::fmt::Debug;

    /// A short stable name, for logs and metrics (`ring`, `aes-gcm`).
    fn name(&self) -> &'static str;

    /// Expands a raw 16- or 32-byte key.
    fn key(&self, raw: &[u8]) -> Result<Self::Key, CryptoError>;

    /// Seals every job in place.
    fn seal_batch(&self, jobs: &mut [SealJob<'_, Self::Key>]);

    /// Opens every job in place, setting each job's `authentic`.
    fn open_batch(&self, jobs: &mut [OpenJob<'_, Self::Key>]);

    /// Whether a fan-out batch of `n` seals should be handed over with
    /// [`Self::submit_seal`] (a device queue, the GPU) instead of sealed
    /// now. The default backend never defers.
    fn defers(&self, _n: usize) -> bool {
        false
    }

    /// Hands `jobs` to the device without waiting: their inputs are
    /// copied, nothing is written. `false`: not taken; seal them now.
    /// Results come back, in submission order, from [`Self::poll_sealed`].
    fn submit_seal(&self, _jobs: &[SealJob<'_, Self::Key>]) -> bool {
        false
    }

    /// The oldest submitted batch, once the device has finished it (with
    /// `block`, waiting for that): `each(i, ciphertext, tag)` is called for
    /// its jobs in order, then `Some(true)`; `Some(false)` if the device
    /// failed the batch (nothing written); `None` if none is finished or
    /// outstanding.
    fn poll_sealed(&self, _block: bool, _each: &mut SealedSink<'_>) -> Option<bool> {
        None
    }
}

#[cfg(test)]
mod tests;
