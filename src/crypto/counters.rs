//! Batches and packets sealed or opened, by the backend that did the work
//! (`ring`, `aes-gcm`, `gpu`), and batches the GPU gave back to the CPU.
//!
//! Each packet worker's backend owns one [`CryptoCounters`] (made by
//! [`super::AnyGcm::for_worker`]) and bumps it once per batch with relaxed
//! adds; the [`CryptoMetrics`] registry sums them on scrape.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Which implementation did a batch's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoPath {
    /// `ring` on the CPU.
    Ring,
    /// The `aes-gcm` crate on the CPU.
    RustCrypto,
    /// The OpenCL kernels.
    Gpu,
}

impl CryptoPath {
    /// Every path, in label order.
    pub const ALL: [Self; 3] = [Self::Ring, Self::RustCrypto, Self::Gpu];

    /// The `backend` label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ring => "ring",
            Self::RustCrypto => "aes-gcm",
            Self::Gpu => "gpu",
        }
    }

    fn slot(self) -> usize {
        match self {
            Self::Ring => 0,
            Self::RustCrypto => 1,
            Self::Gpu => 2,
        }
    }
}

/// One worker's crypto counters.
#[derive(Debug, Default)]
pub struct CryptoCounters {
    batches: [AtomicU64; 3],
    packets: [AtomicU64; 3],
    gpu_fallbacks: AtomicU64,
}

impl CryptoCounters {
    /// Counts one batch of `packets` done by `path`.
    pub fn batch(&self, path: CryptoPath, packets: usize) {
        self.batches[path.slot()].fetch_add(1, Ordering::Relaxed);
        self.packets[path.slot()].fetch_add(packets as u64, Ordering::Relaxed);
    }

    /// Counts a batch the GPU failed, which the CPU then did.
    pub fn gpu_fallback(&self) {
        self.gpu_fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Batches done by `path` so far.
    pub fn batches(&self, path: CryptoPath) -> u64 {
        self.batches[path.slot()].load(Ordering::Relaxed)
    }

    /// Packets done by `path` so far.
    pub fn packets(&self, path: CryptoPath) -> u64 {
        self.packets[path.slot()].load(Ordering::Relaxed)
    }

    /// GPU batches redone on the CPU so far.
    pub fn gpu_fallbacks(&self) -> u64 {
        self.gpu_fallbacks.load(Ordering::Relaxed)
    }
}

/// Every worker's [`CryptoCounters`], summed on scrape.
#[derive(Debug, Default)]
pub struct CryptoMetrics {
    workers: Mutex<Vec<Arc<CryptoCounters>>>,
}

impl CryptoMetrics {
    /// Registers and returns a new worker's counters.
    pub fn add(&self) -> Arc<CryptoCounters> {
        let counters = Arc::new(CryptoCounters::default());
        self.lock().push(Arc::clone(&counters));
        counters
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<CryptoCounters>>> {
        // Pushes are atomic: a poisoned list is still whole.
        self.workers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Totals over every worker: (batches, packets) by path, and fallbacks.
    pub fn totals(&self) -> ([(CryptoPath, u64, u64); 3], u64) {
        let workers = self.lock();
        let by = CryptoPath::ALL.map(|path| {
            (
                path,
                workers.iter().map(|w| w.batches(path)).sum(),
                workers.iter().map(|w| w.packets(path)).sum(),
            )
        });
        (by, workers.iter().map(|w| w.gpu_fallbacks()).sum())
    }

    /// The Prometheus exposition of these counters.
    pub fn render(&self) -> String {
        let (by, fallbacks) = self.totals();
        let mut out = String::new();
        for (name, help, pick) in [
            (
                "sluice_crypto_batches_total",
                "AES-GCM batches sealed or opened, by the backend that did them.",
                0,
            ),
            (
                "sluice_crypto_packets_total",
                "AES-GCM packets sealed or opened, by the backend that did them.",
                1,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (path, batches, packets) in by {
                let n = if pick == 0 { batches } else { packets };
                let _ = writeln!(out, "{name}{{backend=\"{}\"}} {n}", path.name());
            }
        }
        let _ = writeln!(
            out,
            "# HELP sluice_crypto_gpu_fallbacks_total GPU batches that failed and were redone on the CPU.\n\
             # TYPE sluice_crypto_gpu_fallbacks_total counter\n\
             sluice_crypto_gpu_fallbacks_total {fallbacks}"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_summed_by_backend() {
        let metrics = CryptoMetrics::default();
        let a = metrics.add();
        let b = metrics.add();
        a.batch(CryptoPath::Ring, 3);
        b.batch(CryptoPath::Ring, 4);
        b.batch(CryptoPath::Gpu, 1024);
        a.gpu_fallback();
        let text = metrics.render();
        for line in [
            "sluice_crypto_batches_total{backend=\"ring\"} 2",
            "sluice_crypto_packets_total{backend=\"ring\"} 7",
            "sluice_crypto_batches_total{backend=\"gpu\"} 1",
            "sluice_crypto_packets_total{backend=\"gpu\"} 1024",
            "sluice_crypto_packets_total{backend=\"aes-gcm\"} 0",
            "sluice_crypto_gpu_fallbacks_total 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
