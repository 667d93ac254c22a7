//! A log-linear latency histogram: each power of two is split into 32
//! equal buckets, so a recorded value is known to within about 3 %, over
//! the whole `u64` range, in a fixed 15 KiB. Histograms of different
//! receivers merge by adding buckets.

use serde::Serialize;

/// Linear sub-buckets per power of two, as a bit count.
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Buckets covering `0..2^64`.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// Counts of values (nanoseconds, here) in log-linear buckets.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

/// The summary figures the reports print.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value, exact.
    pub max: u64,
    /// Arithmetic mean.
    pub mean: u64,
}

fn index(value: u64) -> usize {
    if value < SUB as u64 {
        return value as usize;
    }
    let exp = 63 - value.leading_zeros(); // >= SUB_BITS
    let sub = (value >> (exp - SUB_BITS)) as usize - SUB;
    (exp - SUB_BITS + 1) as usize * SUB + sub
}

/// The largest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let exp = (i / SUB) as u32 + SUB_BITS - 1;
    let sub = (i % SUB) as u64 + SUB as u64;
    let low = sub << (exp - SUB_BITS);
    low.saturating_add((1u64 << (exp - SUB_BITS)) - 1)
}

impl Histogram {
    /// Records one value.
    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.count += 1;
        self.sum += u128::from(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds every value `other` recorded.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at quantile `q` (0..=1): the upper edge of the bucket that
    /// holds it, capped at the exact maximum. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max).max(self.min);
            }
        }
        self.max
    }

    /// p50, p99, p99.9, max and mean.
    pub fn percentiles(&self) -> Percentiles {
        Percentiles {
            count: self.count,
            p50: self.quantile(0.5),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
            max: if self.count == 0 { 0 } else { self.max },
            mean: self.sum.checked_div(u128::from(self.count)).unwrap_or(0) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bound_their_values() {
        let mut last = 0;
        for i in 0..BUCKETS {
            let up = upper(i);
            assert!(i == 0 || up > last, "bucket {i}");
            assert_eq!(index(up), i, "upper edge of {i} maps back");
            last = up;
        }
        assert_eq!(last, u64::MAX);
        for v in [0, 1, 31, 32, 33, 1000, 123_456_789, u64::MAX] {
            let up = upper(index(v));
            assert!(up >= v && (up - v) as f64 <= v as f64 / 32.0 + 1.0, "{v}");
        }
    }

    #[test]
    fn percentiles_of_a_uniform_range() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        let p = h.percentiles();
        assert_eq!(p.count, 100_000);
        let near = |got: u64, want: f64| (got as f64 - want).abs() / want < 0.035;
        assert!(near(p.p50, 50_000_000.0), "{p:?}");
        assert!(near(p.p99, 99_000_000.0), "{p:?}");
        assert!(near(p.p999, 99_900_000.0), "{p:?}");
        assert_eq!(p.max, 100_000_000);
        assert_eq!(p.mean, 50_000_500);
    }

    #[test]
    fn merge_adds_and_empty_is_zero() {
        let empty = Histogram::default();
        assert_eq!(empty.percentiles(), Percentiles::default());
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(10);
        b.record(5_000);
        b.record(7);
        a.merge(&b);
        a.merge(&empty);
        let p = a.percentiles();
        assert_eq!((p.count, p.max), (3, 5_000));
        assert_eq!(a.quantile(0.0), 7);
        assert_eq!(a.quantile(0.5), 10);
    }
}
