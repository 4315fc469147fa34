//! Latency histograms with log-linear buckets.
//!
//! Values (nanoseconds) below 128 have a bucket each. Above that, every power of two is split
//! into 64 equal sub-buckets, so a bucket's width is at most 1/64 of its lower bound: a
//! percentile read back is within about 1.6% of the exact one. Buckets are allocated as far as
//! the largest value seen, so an empty or short-latency histogram stays small. Everything is
//! integer arithmetic over a `Vec`: recording, merging and reading are deterministic.

use serde::Serialize;

/// log2 of the number of sub-buckets per power of two.
const SUB_BUCKET_BITS: u32 = 6;
/// Sub-buckets per power of two above the exact range.
const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;
/// Values below this have a bucket each.
const EXACT_LIMIT: u64 = 2 * SUB_BUCKETS;
/// The number of buckets needed for every `u64`.
#[cfg(test)]
const BUCKET_COUNT: usize = EXACT_LIMIT as usize + (63 - SUB_BUCKET_BITS as usize) * SUB_BUCKETS as usize;

/// The bucket holding `value`.
fn bucket_of(value: u64) -> usize {
    if value < EXACT_LIMIT {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros(); // >= SUB_BUCKET_BITS + 1
    let shift = msb - SUB_BUCKET_BITS;
    let sub = (value >> shift) - SUB_BUCKETS; // 0..SUB_BUCKETS
    EXACT_LIMIT as usize + (msb - SUB_BUCKET_BITS - 1) as usize * SUB_BUCKETS as usize + sub as usize
}

/// The smallest and largest values that fall in bucket `index`.
fn bucket_bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < EXACT_LIMIT {
        return (index, index);
    }
    let above = index - EXACT_LIMIT;
    let msb = above / SUB_BUCKETS + u64::from(SUB_BUCKET_BITS) + 1;
    let sub = above % SUB_BUCKETS;
    let shift = msb - u64::from(SUB_BUCKET_BITS);
    let low = (SUB_BUCKETS + sub) << shift;
    let high = low.saturating_add((1u64 << shift) - 1);
    (low, high)
}

/// A latency histogram in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Counts per bucket, as far as the highest bucket used.
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram::default()
    }

    /// Records one value.
    pub fn record(&mut self, value_ns: u64) {
        self.record_n(value_ns, 1);
    }

    /// Records `times` occurrences of one value.
    pub fn record_n(&mut self, value_ns: u64, times: u64) {
        if times == 0 {
            return;
        }
        let bucket = bucket_of(value_ns);
        if self.counts.len() <= bucket {
            self.counts.resize(bucket + 1, 0);
        }
        self.counts[bucket] += times;
        if self.count == 0 {
            self.min = value_ns;
            self.max = value_ns;
        } else {
            self.min = self.min.min(value_ns);
            self.max = self.max.max(value_ns);
        }
        self.count += times;
        self.sum += u128::from(value_ns) * u128::from(times);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The exact sum of the recorded values.
    pub fn sum(&self) -> u128 {
        self.sum
    }

    /// The exact mean, rounded down; 0 when empty.
    pub fn mean(&self) -> u64 {
        if self.count == 0 { 0 } else { (self.sum / u128::from(self.count)) as u64 }
    }

    /// The exact smallest value; 0 when empty.
    pub fn min(&self) -> u64 {
        self.min
    }

    /// The exact largest value; 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at percentile `p` (0 to 100): the smallest recorded value such that at least
    /// `p`% of the values are at or below it, up to the bucket's resolution. The answer is the
    /// top of the bucket holding that value, kept within the exact minimum and maximum; 0 when
    /// empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let fraction = if p.is_nan() { 0.0 } else { (p / 100.0).clamp(0.0, 1.0) };
        // Rank (1-based) of the value wanted.
        let rank = ((fraction * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (index, &bucket_count) in self.counts.iter().enumerate() {
            seen += bucket_count;
            if seen >= rank {
                let (_, high) = bucket_bounds(index);
                return high.clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Adds every value of `other` into `self`.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    /// The usual figures in one value, for reports.
    pub fn stats(&self) -> LatencyStats {
        LatencyStats {
            count: self.count,
            mean_ns: self.mean(),
            min_ns: self.min,
            p50_ns: self.percentile(50.0),
            p99_ns: self.percentile(99.0),
            p999_ns: self.percentile(99.9),
            max_ns: self.max,
        }
    }
}

/// A histogram's summary: count, mean, min, p50, p99, p99.9 and max, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LatencyStats {
    /// Values recorded.
    pub count: u64,
    /// Exact mean.
    pub mean_ns: u64,
    /// Exact minimum.
    pub min_ns: u64,
    /// Median.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Exact maximum.
    pub max_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::SimRng;

    /// The exact percentile of a sorted vector, same rank rule as the histogram.
    fn exact(sorted: &[u64], p: f64) -> u64 {
        let rank = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn buckets_cover_values_and_bounds_round_trip() {
        assert_eq!(BUCKET_COUNT, 128 + 57 * 64);
        for value in (0..100_000u64).chain([u64::MAX, u64::MAX - 1, 1 << 40, (1 << 40) - 1]) {
            let bucket = bucket_of(value);
            assert!(bucket < BUCKET_COUNT);
            let (low, high) = bucket_bounds(bucket);
            assert!(low <= value && value <= high, "{value} in {bucket}: {low}..={high}");
            // Width at most 1/64 of the lower bound.
            assert!((high - low) as u128 * 64 <= u128::from(low.max(1)), "{value}");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKET_COUNT - 1);
        // Buckets are contiguous.
        for index in 1..BUCKET_COUNT {
            assert_eq!(bucket_bounds(index - 1).1 + 1, bucket_bounds(index).0);
        }
    }

    #[test]
    fn percentiles_match_a_sorted_vector_within_bucket_error() {
        let mut rng = SimRng::new(11);
        for round in 0..20 {
            let mut histogram = Histogram::new();
            let n = 1 + rng.below(5000) as usize;
            let mut values: Vec<u64> = (0..n)
                .map(|_| {
                    // Log-uniform from 1 ns to ~1 s, like latencies.
                    let exponent = rng.below(30);
                    (1u64 << exponent) + rng.below(1u64 << exponent)
                })
                .collect();
            for &value in &values {
                histogram.record(value);
            }
            values.sort_unstable();
            for p in [0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0] {
                let want = exact(&values, p);
                let got = histogram.percentile(p);
                let tolerance = want / 64 + 1;
                assert!(got >= want && got - want <= tolerance, "round {round} p{p}: want {want} got {got}");
            }
            assert_eq!(histogram.count(), n as u64);
            assert_eq!(histogram.max(), *values.last().unwrap_or(&0));
            assert_eq!(histogram.min(), values[0]);
            let sum: u128 = values.iter().map(|&v| u128::from(v)).sum();
            assert_eq!(histogram.mean(), (sum / n as u128) as u64);
        }
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut rng = SimRng::new(2);
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        let mut both = Histogram::new();
        for i in 0..3000 {
            let value = rng.below(10_000_000);
            if i % 3 == 0 {
                a.record(value)
            } else {
                b.record(value)
            }
            both.record(value);
        }
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged.stats(), both.stats());
        assert_eq!(merged.count(), both.count());
        // Merging into an empty histogram copies min and max.
        let mut empty = Histogram::new();
        empty.merge(&b);
        assert_eq!(empty.min(), b.min());
        empty.merge(&Histogram::new());
        assert_eq!(empty.stats(), b.stats());
    }

    #[test]
    fn empty_and_degenerate_inputs() {
        let mut histogram = Histogram::new();
        assert!(histogram.is_empty());
        assert_eq!(histogram.percentile(50.0), 0);
        assert_eq!(histogram.mean(), 0);
        assert_eq!(histogram.stats(), LatencyStats::default());
        histogram.record_n(1000, 0);
        assert!(histogram.is_empty());
        histogram.record(u64::MAX);
        histogram.record(0);
        assert_eq!(histogram.percentile(f64::NAN), 0);
        assert_eq!(histogram.percentile(-5.0), 0);
        assert_eq!(histogram.percentile(500.0), u64::MAX);
        assert_eq!(histogram.sum(), u128::from(u64::MAX));
        histogram.record_n(7, 3);
        assert_eq!(histogram.count(), 5);
        assert_eq!(histogram.percentile(50.0), 7);
    }
}
