//! The GPU path of [`super::AnyGcm`]: batches sealed and opened by the
//! `sluice-gpu` OpenCL kernels (bitsliced AES, constant-time GHASH; the
//! crate's doc says how), with every leg's key on the device.
//!
//! [`GpuOffload`] says when a batch goes there: `gpu = "always"` sends
//! every batch, `"auto"` only batches at least as large as the crossover
//! that start-up calibration measured (see `calibrate.rs`), and never
//! when no crossover was found (a GPU slower than the CPU at every size).
//! Jobs the kernels cannot take (more than 128 GHASH blocks, about 2 KB)
//! and whole batches the device fails are done on the CPU with `ring`,
//! counted as fallbacks; nothing is dropped.
//!
//! One device per process: [`process_engine`] opens it once (the driver's
//! context, the kernels, the key table) and every worker gets its own
//! [`sluice_gpu::Lane`] on it through [`super::AnyGcm::for_worker`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use ring::aead::LessSafeKey;
use sluice_gpu::layout::fits;
use sluice_gpu::{Batch, Direction, Engine, GpuError, GpuKey, Lane};
use subtle::ConstantTimeEq;

use super::{GCM_TAG_LEN, OpenJob, SealJob};
use crate::crypto::calibrate::Calibration;

/// Keys the device table holds (2.5 KiB each: 40 MiB of device memory).
pub const GPU_KEY_CAPACITY: usize = 16_384;

/// `[crypto] gpu`: when batches may go to the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuPolicy {
    /// Never.
    Off,
    /// Above the measured crossover, on a GPU (not a CPU OpenCL driver).
    #[default]
    Auto,
    /// Every batch, on any OpenCL device (CPU drivers included: tests).
    Always,
}

/// The device, the policy, and what calibration measured.
#[derive(Debug)]
pub struct GpuOffload {
    engine: Engine,
    policy: GpuPolicy,
    calibration: Option<Calibration>,
    /// Set when the device failed a batch: from then on everything stays
    /// on the CPU (a device that faults once is not trusted again).
    failed: AtomicBool,
}

impl GpuOffload {
    /// Offload to `engine` under `policy`; `calibration` gives `Auto` its
    /// crossover (without one, `Auto` sends nothing).
    pub fn new(engine: Engine, policy: GpuPolicy, calibration: Option<Calibration>) -> Self {
        Self {
            engine,
            policy,
            calibration,
            failed: AtomicBool::new(false),
        }
    }

    /// Takes the device out of use after a failure.
    pub(crate) fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    /// The device engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The policy.
    pub fn policy(&self) -> GpuPolicy {
        self.policy
    }

    /// What start-up calibration measured.
    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    /// The smallest batch `Auto` sends to the GPU.
    pub fn crossover(&self) -> Option<usize> {
        self.calibration.as_ref().and_then(|c| c.crossover)
    }

    /// Whether a batch of `n` jobs goes to the GPU, given `queued` jobs
    /// already waiting there (a backed-up queue keeps work on the CPU).
    pub fn wants(&self, n: usize, queued: usize) -> bool {
        if self.failed.load(Ordering::Relaxed) {
            return false;
        }
        match self.policy {
            GpuPolicy::Off => false,
            GpuPolicy::Always => n > 0,
            GpuPolicy::Auto => self
                .crossover()
                .is_some_and(|c| n >= c && queued < MAX_QUEUED_JOBS),
        }
    }
}

/// Jobs in flight on one lane beyond which `Auto` keeps new batches on the
/// CPU: four of the largest calibrated batches.
pub const MAX_QUEUED_JOBS: usize = 4 * 4096;

/// The process's OpenCL device, opened on first use: the first GPU if
/// there is one, else (only when `any_kind`) the first device of any kind.
pub fn process_engine(any_kind: bool) -> Result<Engine, GpuError> {
    if !any_kind {
        // Decide from the probe alone, so a box with only a CPU driver
        // never builds the kernels under `auto`.
        let devices = sluice_gpu::probe()?;
        match devices.first() {
            Some(d) if d.kind.is_offload() => {}
            Some(d) => {
                return Err(GpuError::NoDevice(format!(
                    " that is a GPU (only {}, a {} driver: correct but slower than the CPU backend)",
                    d.name,
                    d.kind.name()
                )));
            }
            None => return Err(GpuError::NoDevice(String::new())),
        }
    }
    static ENGINE: OnceLock<Result<Engine, GpuError>> = OnceLock::new();
    let engine = ENGINE
        .get_or_init(|| {
            let devices = sluice_gpu::probe()?;
            let device = devices
                .first()
                .ok_or_else(|| GpuError::NoDevice(String::new()))?;
            Engine::open(device, GPU_KEY_CAPACITY)
        })
        .clone()?;
    Ok(engine)
}

/// A leg's key on both sides: on the device, and in `ring` for the
/// batches that stay on the CPU.
#[derive(Debug)]
pub struct GpuGcmKey {
    pub(crate) cpu: LessSafeKey,
    pub(crate) gpu: GpuKey,
}

/// Logs the first GPU failure of the process (later ones are counted).
pub(crate) fn warn_once(what: &str, error: &GpuError) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(%error, "GPU {what} failed; the CPU does this work (counted in sluice_crypto_gpu_fallbacks_total)");
    }
}

/// The GPU's share of a seal batch: the jobs `take` picks (keys on this
/// device, lengths the kernels hold); returns how many it sealed. A job
/// whose data equals the previous job's (a fan-out copy) shares its
/// upload. On error nothing was written.
pub(crate) fn seal<K>(
    lane: &mut Lane,
    jobs: &mut [SealJob<'_, K>],
    take: impl Fn(&K) -> Option<&GpuKey>,
) -> Result<usize, GpuError> {
    let mut batch = lane.batch();
    let mut last: Option<usize> = None;
    for i in 0..jobs.len() {
        let job = &jobs[i];
        let Some(key) = take(job.key).filter(|_| fits(job.aad.len(), job.data.len())) else {
            continue;
        };
        let same = last.is_some_and(|p| *jobs[p].data == *job.data);
        if same {
            batch.push_same_data(key, &job.nonce, job.aad)?;
        } else {
            batch.push(key, &job.nonce, job.aad, job.data)?;
        }
        last = Some(i);
    }
    let n = batch.len();
    let Some(done) = run(lane, batch, Direction::Seal)? else {
        return Ok(0);
    };
    let mut k = 0;
    for job in jobs.iter_mut() {
        if take(job.key).is_some() && fits(job.aad.len(), job.data.len()) {
            job.data.copy_from_slice(done.output(k));
            *job.tag = done.tag(k);
            k += 1;
        }
    }
    lane.recycle(done);
    Ok(n)
}

/// Runs `batch` on the device and waits for it: `None` (the batch
/// recycled unsent) when it holds no job, else the finished batch.
fn run(lane: &mut Lane, batch: Batch, direction: Direction) -> Result<Option<Batch>, GpuError> {
    if batch.is_empty() {
        lane.recycle(batch);
        return Ok(None);
    }
    lane.submit(batch, direction)?;
    let done = lane.wait().ok_or(GpuError::Cl {
        call: "wait",
        code: 0,
    })??;
    Ok(Some(done))
}

/// The GPU's share of an open batch, as [`seal`]: decrypts on the device,
/// compares tags here in constant time, and writes the plaintext only for
/// jobs that authenticated.
pub(crate) fn open<K>(
    lane: &mut Lane,
    jobs: &mut [OpenJob<'_, K>],
    take: impl Fn(&K) -> Option<&GpuKey>,
) -> Result<usize, GpuError> {
    let mut batch = lane.batch();
    for job in jobs.iter() {
        if let Some(key) = take(job.key).filter(|_| fits(job.aad.len(), job.data.len())) {
            batch.push(key, &job.nonce, job.aad, job.data)?;
        }
    }
    let n = batch.len();
    let Some(done) = run(lane, batch, Direction::Open)? else {
        return Ok(0);
    };
    let mut k = 0;
    for job in jobs.iter_mut() {
        if take(job.key).is_some() && fits(job.aad.len(), job.data.len()) {
            let tag: [u8; GCM_TAG_LEN] = done.tag(k);
            job.authentic = bool::from(tag.ct_eq(job.tag));
            if job.authentic {
                job.data.copy_from_slice(done.output(k));
            }
            k += 1;
        }
    }
    lane.recycle(done);
    Ok(n)
}

/// Submits a whole seal batch without waiting; `Ok(false)` when some job
/// cannot go to the device (the caller seals the batch itself).
pub(crate) fn submit<K>(
    lane: &mut Lane,
    jobs: &[SealJob<'_, K>],
    take: impl Fn(&K) -> Option<&GpuKey>,
) -> Result<bool, GpuError> {
    if jobs
        .iter()
        .any(|job| take(job.key).is_none() || !fits(job.aad.len(), job.data.len()))
    {
        return Ok(false);
    }
    let mut batch = lane.batch();
    for (i, job) in jobs.iter().enumerate() {
        let Some(key) = take(job.key) else {
            continue;
        };
        if i > 0 && *jobs[i - 1].data == *job.data {
            batch.push_same_data(key, &job.nonce, job.aad)?;
        } else {
            batch.push(key, &job.nonce, job.aad, job.data)?;
        }
    }
    lane.submit(batch, Direction::Seal)?;
    Ok(true)
}

/// The oldest submitted batch if done (or, with `block`, once done),
/// handed to `each` job by job; see `AeadBackend::poll_sealed`.
pub(crate) fn poll(
    lane: &mut Lane,
    block: bool,
    each: &mut super::SealedSink<'_>,
) -> Option<Result<usize, GpuError>> {
    let done = if block { lane.wait()? } else { lane.poll()? };
    Some(done.map(|batch| {
        let n = batch.len();
        for i in 0..n {
            each(i, batch.output(i), &batch.tag(i));
        }
        lane.recycle(batch);
        n
    }))
}

/// Whether a job stays on the CPU although the batch went to the GPU.
pub(crate) fn stays_on_cpu(aad: usize, data: usize) -> bool {
    !fits(aad, data)
}
