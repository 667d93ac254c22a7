//! Start-up calibration of the GPU crossover: seal time per batch of N
//! fan-out packets (one payload, N legs, each its own key and nonce) on
//! the GPU and with `ring` on this core, for N in [`SWEEP`]. The crossover
//! is the smallest N from which the GPU is faster at every larger N
//! measured; `gpu = "auto"` sends only batches that large (DESIGN.md,
//! "GPU crypto"). This reads the clock: it is a measurement, run once at
//! start-up and by `sluice hw`, never on the packet path.

use std::time::Instant;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use sluice_gpu::{Direction, Engine, GpuError, Lane, StageTimes};

/// The batch sizes measured.
pub const SWEEP: [usize; 5] = [16, 64, 256, 1024, 4096];
/// The payload sealed: a video packet's size.
pub const PAYLOAD: usize = 1200;
/// The AAD: a plain 12-byte RTP header.
const AAD: [u8; 12] = [0x80, 0x60, 0, 1, 0, 0, 0, 0, 0x5e, 0xed, 0xca, 0xfe];

/// One batch size's measurement (the best of the repetitions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalibrationPoint {
    /// Packets in the batch.
    pub n: usize,
    /// Nanoseconds `ring` took to seal them on one core.
    pub cpu_ns: u64,
    /// Nanoseconds from packing to results back on the host, on the GPU.
    pub gpu_ns: u64,
    /// The GPU's device-side stages of that batch.
    pub stages: StageTimes,
}

impl CalibrationPoint {
    /// How many times faster the GPU was (below 1: slower).
    pub fn speedup(&self) -> f64 {
        self.cpu_ns as f64 / self.gpu_ns.max(1) as f64
    }
}

/// The sweep and the crossover it gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calibration {
    /// Bytes of payload per packet.
    pub payload: usize,
    /// One point per batch size, ascending.
    pub points: Vec<CalibrationPoint>,
    /// The smallest N the GPU should take; `None` if it never wins.
    pub crossover: Option<usize>,
}

impl Calibration {
    /// A table for logs and `sluice hw`, one line per batch size.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:>6} {:>12} {:>12} {:>8} {:>11} {:>11} {:>11}\n",
            "N", "ring µs", "gpu µs", "gpu/cpu", "upload µs", "kernel µs", "download µs"
        );
        for p in &self.points {
            out.push_str(&format!(
                "{:>6} {:>12.1} {:>12.1} {:>7.2}x {:>11.1} {:>11.1} {:>11.1}\n",
                p.n,
                p.cpu_ns as f64 / 1e3,
                p.gpu_ns as f64 / 1e3,
                p.speedup(),
                p.stages.upload_ns as f64 / 1e3,
                p.stages.kernel_ns as f64 / 1e3,
                p.stages.download_ns as f64 / 1e3,
            ));
        }
        out
    }
}

/// The smallest N from which the GPU wins at every larger measured N.
pub fn crossover(points: &[CalibrationPoint]) -> Option<usize> {
    let mut best = None;
    for p in points.iter().rev() {
        if p.gpu_ns < p.cpu_ns {
            best = Some(p.n);
        } else {
            break;
        }
    }
    best
}

fn key_bytes(i: usize) -> [u8; 32] {
    let mut key = [0u8; 32];
    for (b, byte) in key.iter_mut().enumerate() {
        *byte = (i.wrapping_mul(131) ^ b.wrapping_mul(7)) as u8;
    }
    key
}

fn nonce(i: usize) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..12].copy_from_slice(&(i as u64).to_be_bytes());
    n
}

fn elapsed_ns(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Measures `sizes` (ascending) with `reps` repetitions each, best kept.
/// Needs `max(sizes)` free key slots on the device for the duration.
pub fn calibrate(engine: &Engine, sizes: &[usize], reps: usize) -> Result<Calibration, GpuError> {
    let most = sizes.iter().copied().max().unwrap_or(0);
    let raws: Vec<[u8; 32]> = (0..most).map(key_bytes).collect();
    let gpu_keys = engine.keys(&raws.iter().map(|k| &k[..]).collect::<Vec<_>>())?;
    let cpu_keys: Vec<LessSafeKey> = raws
        .iter()
        .map(|raw| {
            // 32 bytes is always a valid AES-256 key.
            #[allow(clippy::expect_used)]
            LessSafeKey::new(UnboundKey::new(&AES_256_GCM, raw).expect("32-byte key"))
        })
        .collect();
    let payload: Vec<u8> = (0..PAYLOAD).map(|i| (i * 13) as u8).collect();
    let mut lane = Lane::new(engine, true)?;
    let mut copies = vec![payload.clone(); most];
    let mut points = Vec::with_capacity(sizes.len());
    for &n in sizes {
        let (mut cpu_ns, mut gpu_ns, mut stages) = (u64::MAX, u64::MAX, StageTimes::default());
        // One warm-up round, then `reps` measured ones.
        for rep in 0..=reps.max(1) {
            for copy in copies.iter_mut().take(n) {
                copy.copy_from_slice(&payload);
            }
            let started = Instant::now();
            for (i, (key, copy)) in cpu_keys.iter().zip(copies.iter_mut()).take(n).enumerate() {
                let sealed = key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce(i)),
                    Aad::from(AAD),
                    copy,
                );
                std::hint::black_box(&sealed);
            }
            let cpu = elapsed_ns(started);

            let started = Instant::now();
            let mut batch = lane.batch();
            for (i, key) in gpu_keys.iter().take(n).enumerate() {
                if i == 0 {
                    batch.push(key, &nonce(i), &AAD, &payload)?;
                } else {
                    batch.push_same_data(key, &nonce(i), &AAD)?;
                }
            }
            lane.submit(batch, Direction::Seal)?;
            let done = lane.wait().ok_or(GpuError::Cl {
                call: "wait",
                code: 0,
            })??;
            let gpu = elapsed_ns(started);
            if rep > 0 {
                cpu_ns = cpu_ns.min(cpu);
                if gpu < gpu_ns {
                    gpu_ns = gpu;
                    stages = done.stage_times().unwrap_or_default();
                }
            }
            lane.recycle(done);
        }
        points.push(CalibrationPoint {
            n,
            cpu_ns,
            gpu_ns,
            stages,
        });
    }
    let crossover = crossover(&points);
    Ok(Calibration {
        payload: PAYLOAD,
        points,
        crossover,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(n: usize, cpu_ns: u64, gpu_ns: u64) -> CalibrationPoint {
        CalibrationPoint {
            n,
            cpu_ns,
            gpu_ns,
            stages: StageTimes::default(),
        }
    }

    #[test]
    fn the_crossover_is_where_the_gpu_wins_from_then_on() {
        let pts = |g: [u64; 5]| -> Vec<CalibrationPoint> {
            SWEEP
                .iter()
                .zip(g)
                .map(|(&n, gpu)| point(n, n as u64 * 400, gpu))
                .collect()
        };
        // ring: 6.4, 25.6, 102.4, 409.6, 1638.4 µs.
        assert_eq!(
            crossover(&pts([90_000, 90_000, 95_000, 100_000, 150_000])),
            Some(256)
        );
        assert_eq!(
            crossover(&pts([1, 90_000, 95_000, 100_000, 150_000])),
            Some(256)
        );
        assert_eq!(crossover(&pts([500_000; 5])), Some(4096));
        assert_eq!(crossover(&pts([10_000_000; 5])), None);
        // A win at a small N that is lost again does not count.
        assert_eq!(crossover(&pts([1, 1, 10_000_000, 1, 1])), Some(1024));
        assert_eq!(crossover(&[]), None);
    }
}
