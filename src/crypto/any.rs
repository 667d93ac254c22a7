//! Run-time backend choice: the daemon picks a backend at start-up (from
//! config, else [`BackendKind::default`]) and every leg's keys go through
//! [`AnyGcm`], one `match` per batch entry. An [`AnyGcm`] may also carry a
//! [`GpuOffload`]: then each batch the offload wants goes to the GPU
//! (`gpu.rs`) and the rest stays on the CPU backend.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use ring::aead::LessSafeKey;
use sluice_gpu::Lane;

use super::counters::{CryptoCounters, CryptoMetrics, CryptoPath};
use super::gpu::{self, GpuGcmKey, GpuOffload, GpuPolicy};
use super::rustcrypto::RustCryptoKey;
use super::{AeadBackend, CryptoError, OpenJob, RingGcm, RustCryptoGcm, SealJob};

/// The AES-GCM implementations sluice carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// `ring` (BoringSSL assembly).
    Ring,
    /// The RustCrypto `aes-gcm` crate.
    RustCrypto,
    /// Every batch on the process's OpenCL device (any kind, CPU drivers
    /// included), `ring` for what the device cannot take: what
    /// `gpu = "always"` runs, and how the tests put the kernels through
    /// every vector and interop check.
    Gpu,
}

impl BackendKind {
    /// Every backend, for tests and benchmarks that must cover them all.
    pub const ALL: [Self; 3] = [Self::Ring, Self::RustCrypto, Self::Gpu];

    /// The CPU backends.
    pub const CPU: [Self; 2] = [Self::Ring, Self::RustCrypto];

    /// The backends this process can run: [`Self::ALL`], less
    /// [`Self::Gpu`] when no OpenCL device opens (the reason is logged).
    pub fn usable() -> Vec<Self> {
        if gpu::process_engine(true).is_ok() {
            Self::ALL.to_vec()
        } else {
            Self::CPU.to_vec()
        }
    }

    /// The name used in config files, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ring => "ring",
            Self::RustCrypto => "aes-gcm",
            Self::Gpu => "gpu",
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
#[error("unknown crypto backend {0:?}: use \"ring\", \"aes-gcm\" or \"gpu\"")]
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

/// A backend chosen at run time, with an optional GPU offload.
///
/// Clones share one GPU lane and one set of counters: a leg's session
/// holds a clone of its worker's backend. Give each packet worker its own
/// with [`Self::for_worker`].
#[derive(Debug, Clone, Default)]
pub struct AnyGcm {
    kind: BackendKind,
    gpu: Option<Arc<GpuOffload>>,
    /// Whether synchronous batches (`seal_batch`/`open_batch`) may go to
    /// the GPU too, waiting for it, or only deferred fan-outs.
    gpu_sync: bool,
    lane: Arc<Mutex<Option<Lane>>>,
    counters: Arc<CryptoCounters>,
}

impl AnyGcm {
    /// The backend of the given kind. [`BackendKind::Gpu`] opens the
    /// process's OpenCL device on first use; without one, its
    /// [`AeadBackend::key`] fails with [`CryptoError::GpuUnavailable`].
    pub fn new(kind: BackendKind) -> Self {
        let gpu = match kind {
            BackendKind::Gpu => match gpu::process_engine(true) {
                Ok(engine) => Some(Arc::new(GpuOffload::new(engine, GpuPolicy::Always, None))),
                Err(error) => {
                    gpu::warn_once("device", &error);
                    None
                }
            },
            BackendKind::Ring | BackendKind::RustCrypto => None,
        };
        Self {
            kind,
            gpu,
            gpu_sync: true,
            ..Self::default()
        }
    }

    /// This CPU backend, sending the fan-outs `offload` wants to its GPU
    /// asynchronously ([`AeadBackend::defers`]); synchronous batches stay
    /// on the CPU, so the caller never waits for the device.
    pub fn with_gpu(kind: BackendKind, offload: Arc<GpuOffload>) -> Self {
        Self {
            kind,
            gpu: Some(offload),
            ..Self::default()
        }
    }

    /// Lets synchronous batches the offload wants go to the GPU as well
    /// (waiting for it): what [`BackendKind::Gpu`] does, for tests.
    pub fn gpu_for_every_batch(mut self) -> Self {
        self.gpu_sync = true;
        self
    }

    /// The same backend for another packet worker: its own GPU lane
    /// (command queue), its own counters, registered in `metrics`.
    pub fn for_worker(&self, metrics: &CryptoMetrics) -> Self {
        Self {
            kind: self.kind,
            gpu: self.gpu.clone(),
            gpu_sync: self.gpu_sync,
            lane: Arc::default(),
            counters: metrics.add(),
        }
    }

    /// Which backend this is.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// The GPU offload, if any.
    pub fn gpu(&self) -> Option<&GpuOffload> {
        self.gpu.as_deref()
    }

    /// This backend's counters (shared by its clones).
    pub fn counters(&self) -> &CryptoCounters {
        &self.counters
    }

    /// Jobs waiting on this backend's GPU lane.
    fn gpu_queued(&self) -> usize {
        self.lane_guard().as_ref().map_or(0, Lane::jobs_in_flight)
    }

    fn lane_guard(&self) -> std::sync::MutexGuard<'_, Option<Lane>> {
        // One worker uses its lane; a poisoned lock only means a panic
        // elsewhere in that worker, and the lane itself stays consistent.
        self.lane.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on this backend's lane, making it on first use.
    fn with_lane<T>(
        &self,
        offload: &GpuOffload,
        f: impl FnOnce(&mut Lane) -> Result<T, sluice_gpu::GpuError>,
    ) -> Result<T, sluice_gpu::GpuError> {
        let mut guard = self.lane_guard();
        let lane = match &mut *guard {
            Some(lane) => lane,
            empty => empty.insert(Lane::new(offload.engine(), false)?),
        };
        f(lane)
    }

    /// Whether this synchronous batch goes to the GPU: only when nothing
    /// submitted asynchronously is outstanding on the lane (its results
    /// must come back first, in order).
    fn offload_for(&self, n: usize) -> Option<&GpuOffload> {
        if !self.gpu_sync {
            return None;
        }
        let offload = self.gpu.as_deref()?;
        let queued = self.gpu_queued();
        (queued == 0 && offload.wants(n, 0)).then_some(offload)
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
    /// On the GPU's key table, and in `ring` for CPU batches.
    Gpu(GpuGcmKey),
}

fn gpu_key(key: &AnyGcmKey) -> Option<&sluice_gpu::GpuKey> {
    match key {
        AnyGcmKey::Gpu(key) => Some(&key.gpu),
        AnyGcmKey::Ring(_) | AnyGcmKey::RustCrypto(_) => None,
    }
}

impl AeadBackend for AnyGcm {
    type Key = AnyGcmKey;

    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn key(&self, raw: &[u8]) -> Result<Self::Key, CryptoError> {
        if let Some(offload) = &self.gpu {
            let cpu = RingGcm.key(raw)?;
            return match offload.engine().key(raw) {
                Ok(gpu) => Ok(AnyGcmKey::Gpu(GpuGcmKey { cpu, gpu })),
                Err(sluice_gpu::GpuError::BadKeyLength(n)) => Err(CryptoError::BadKeyLength(n)),
                // A full key table (or a device error) must not cost the
                // leg: its key stays on the CPU, and batches with it are
                // sealed there.
                Err(other) => {
                    gpu::warn_once("key upload", &other);
                    Ok(AnyGcmKey::Ring(cpu))
                }
            };
        }
        Ok(match self.kind {
            BackendKind::Ring => AnyGcmKey::Ring(RingGcm.key(raw)?),
            BackendKind::RustCrypto => AnyGcmKey::RustCrypto(RustCryptoGcm.key(raw)?),
            BackendKind::Gpu => return Err(CryptoError::GpuUnavailable),
        })
    }

    fn seal_batch(&self, jobs: &mut [SealJob<'_, Self::Key>]) {
        let mut on_gpu = false;
        if let Some(offload) = self.offload_for(jobs.len()) {
            match self.with_lane(offload, |lane| gpu::seal(lane, jobs, gpu_key)) {
                Ok(n) => {
                    self.counters.batch(CryptoPath::Gpu, n);
                    on_gpu = true;
                }
                Err(error) => {
                    gpu::warn_once("seal", &error);
                    self.counters.gpu_fallback();
                }
            }
        }
        // Keys always come from this backend's own `key`, so each job's key
        // matches `self.kind`; dispatching per job keeps that true even if a
        // caller mixed keys of two `AnyGcm`s in one batch.
        let mut cpu = [0usize; 2];
        for job in jobs {
            match job.key {
                AnyGcmKey::Ring(key) => {
                    seal_one(&RingGcm, key, job);
                    cpu[0] += 1;
                }
                AnyGcmKey::RustCrypto(key) => {
                    seal_one(&RustCryptoGcm, key, job);
                    cpu[1] += 1;
                }
                AnyGcmKey::Gpu(key) => {
                    if !on_gpu || gpu::stays_on_cpu(job.aad.len(), job.data.len()) {
                        seal_one(&RingGcm, &key.cpu, job);
                        cpu[0] += 1;
                    }
                }
            }
        }
        self.count_cpu(cpu);
    }

    fn open_batch(&self, jobs: &mut [OpenJob<'_, Self::Key>]) {
        let mut on_gpu = false;
        if let Some(offload) = self.offload_for(jobs.len()) {
            match self.with_lane(offload, |lane| gpu::open(lane, jobs, gpu_key)) {
                Ok(n) => {
                    self.counters.batch(CryptoPath::Gpu, n);
                    on_gpu = true;
                }
                Err(error) => {
                    gpu::warn_once("open", &error);
                    self.counters.gpu_fallback();
                }
            }
        }
        let mut cpu = [0usize; 2];
        for job in jobs {
            match job.key {
                AnyGcmKey::Ring(key) => {
                    job.authentic = open_one(&RingGcm, key, job);
                    cpu[0] += 1;
                }
                AnyGcmKey::RustCrypto(key) => {
                    job.authentic = open_one(&RustCryptoGcm, key, job);
                    cpu[1] += 1;
                }
                AnyGcmKey::Gpu(key) => {
                    if !on_gpu || gpu::stays_on_cpu(job.aad.len(), job.data.len()) {
                        job.authentic = open_one(&RingGcm, &key.cpu, job);
                        cpu[0] += 1;
                    }
                }
            }
        }
        self.count_cpu(cpu);
    }

    fn defers(&self, n: usize) -> bool {
        self.gpu
            .as_deref()
            .is_some_and(|offload| offload.wants(n, self.gpu_queued()))
    }

    fn submit_seal(&self, jobs: &[SealJob<'_, Self::Key>]) -> bool {
        let Some(offload) = self.gpu.as_deref() else {
            return false;
        };
        match self.with_lane(offload, |lane| gpu::submit(lane, jobs, gpu_key)) {
            Ok(taken) => taken,
            Err(error) => {
                gpu::warn_once("submit", &error);
                self.counters.gpu_fallback();
                false
            }
        }
    }

    fn poll_sealed(&self, block: bool, each: &mut super::SealedSink<'_>) -> Option<bool> {
        let offload = self.gpu.as_deref()?;
        let mut guard = self.lane_guard();
        let lane = guard.as_mut()?;
        match gpu::poll(lane, block, each)? {
            Ok(n) => {
                self.counters.batch(CryptoPath::Gpu, n);
                Some(true)
            }
            Err(error) => {
                gpu::warn_once("batch", &error);
                offload.fail();
                self.counters.gpu_fallback();
                Some(false)
            }
        }
    }
}

impl AnyGcm {
    fn count_cpu(&self, [ring, rustcrypto]: [usize; 2]) {
        if ring > 0 {
            self.counters.batch(CryptoPath::Ring, ring);
        }
        if rustcrypto > 0 {
            self.counters.batch(CryptoPath::RustCrypto, rustcrypto);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_device_the_gpu_kind_refuses_keys() {
        // The Gpu kind with no offload (no device) must not hand out CPU
        // keys under the GPU's name.
        let backend = AnyGcm {
            kind: BackendKind::Gpu,
            ..AnyGcm::default()
        };
        assert_eq!(
            backend.key(&[0; 16]).err(),
            Some(CryptoError::GpuUnavailable)
        );
    }
}
