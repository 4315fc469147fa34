//! Rmap lookup: `RmapIndex` against a sorted `Vec` searched with `partition_point` and a
//! `BTreeMap` searched with `range(..=x).next_back()`, on the same extents and keys, at 64,
//! 4 Ki, 256 Ki and 1 Mi extents, with uniform random and sequential keys.
//!
//! Every benchmark resolves 4096 keys to `Option<value>` per iteration, so ns/lookup =
//! iteration time / 4096. On maps of more than 4 Ki extents each iteration takes the next
//! 4096 keys of a pool of 1 Mi keys: a fixed handful of keys would keep every line they touch
//! in L2, and a large map would look as fast as a small one. Hot maps (at most 4 Ki extents,
//! in cache by definition) reuse 4096 keys, so that streaming cold keys from memory does not
//! add the same constant to every structure; on the fast path the key is in a register,
//! parsed from the frame just received. The `latency` group measures dependent lookups (each key depends
//! on the previous answer) at 1 Mi extents beside dependent random walks of a 128 MiB array
//! (one cache and TLB miss per step) and of a 16 MiB one (one miss in a region the size of the
//! index, whose pages the TLB covers better), to estimate misses per lookup on a VM without
//! hardware counters.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::ops::Range;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dve_fp_api::lookup::RmapIndex;

const KEYS_PER_ITERATION: usize = 4096;
const KEY_POOL: usize = 1 << 20;
const HOT_MAP_EXTENTS: usize = 4 << 10;
const SIZES: [(usize, &str); 4] = [(64, "64"), (4 << 10, "4Ki"), (256 << 10, "256Ki"), (1 << 20, "1Mi")];

/// SplitMix64: a fixed, dependency-free random source so every run sees the same maps.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Roughly log-uniform in `1..=65536`: as many 1-16 block extents as 4Ki-64Ki ones, the
    /// mix snapshots and migration barriers leave behind.
    fn extent_blocks(&mut self) -> u64 {
        let bits = self.next() % 17;
        1 + self.next() % (1 << bits)
    }
}

/// `count` extents from LBA 2^20 on, one in eight followed by a gap, values 0..16 (a 4-bit
/// redirect index).
fn extents(count: usize, random: &mut SplitMix) -> Vec<(Range<u64>, u32)> {
    let mut cursor = 1 << 20;
    (0..count)
        .map(|_| {
            if random.next().is_multiple_of(8) {
                cursor += random.extent_blocks();
            }
            let start = cursor;
            cursor += random.extent_blocks();
            (start..cursor, (random.next() % 16) as u32)
        })
        .collect()
}

/// Uniform over the mapped span (so gaps miss), or one sequential stream of 64-block I/Os.
fn keys(extents: &[(Range<u64>, u32)], sequential: bool, random: &mut SplitMix) -> Vec<u64> {
    let (low, high) = (extents[0].0.start, extents[extents.len() - 1].0.end);
    let pool = if extents.len() <= HOT_MAP_EXTENTS { KEYS_PER_ITERATION } else { KEY_POOL };
    if sequential {
        let first = low + random.next() % (high - low);
        (0..pool as u64).map(|i| low + (first - low + 64 * i) % (high - low)).collect()
    } else {
        (0..pool).map(|_| low + random.next() % (high - low)).collect()
    }
}

/// Successive windows of 4096 keys of `pool`, round and round.
struct KeyWindows<'a> {
    pool: &'a [u64],
    next: usize,
}

impl<'a> KeyWindows<'a> {
    fn new(pool: &'a [u64]) -> Self {
        KeyWindows { pool, next: 0 }
    }

    fn next_window(&mut self) -> &'a [u64] {
        let window = &self.pool[self.next..self.next + KEYS_PER_ITERATION];
        self.next = (self.next + KEYS_PER_ITERATION) % self.pool.len();
        window
    }
}

/// The `partition_point` reference: starts searched, ends and values beside them.
struct SortedStarts {
    starts: Vec<u64>,
    ends: Vec<u64>,
    values: Vec<u32>,
}

impl SortedStarts {
    fn new(extents: &[(Range<u64>, u32)]) -> Self {
        SortedStarts {
            starts: extents.iter().map(|(extent, _)| extent.start).collect(),
            ends: extents.iter().map(|(extent, _)| extent.end).collect(),
            values: extents.iter().map(|(_, value)| *value).collect(),
        }
    }

    #[inline]
    fn get(&self, lba: u64) -> Option<u32> {
        let i = self.starts.partition_point(|&start| start <= lba).checked_sub(1)?;
        (lba < self.ends[i]).then(|| self.values[i])
    }
}

fn btree_get(map: &BTreeMap<u64, (u64, u32)>, lba: u64) -> Option<u32> {
    let (_, &(end, value)) = map.range(..=lba).next_back()?;
    (lba < end).then_some(value)
}

fn lookups(c: &mut Criterion) {
    let mut random = SplitMix(0x5EED_0003);
    for (size, size_name) in SIZES {
        let extents = extents(size, &mut random);
        let index = RmapIndex::build(&extents).expect("generated extents are valid");
        let sorted = SortedStarts::new(&extents);
        let btree: BTreeMap<u64, (u64, u32)> =
            extents.iter().map(|(extent, value)| (extent.start, (extent.end, *value))).collect();
        eprintln!("{size_name} extents: {index:?}, {} bytes", index.memory_bytes());
        for (sequential, pattern) in [(false, "random"), (true, "sequential")] {
            let pool = keys(&extents, sequential, &mut random);
            let mut group = c.benchmark_group(format!("rmap_lookup/{size_name}/{pattern}"));
            group.throughput(Throughput::Elements(KEYS_PER_ITERATION as u64));
            group.bench_function("rmap_index", |b| {
                let mut windows = KeyWindows::new(&pool);
                b.iter(|| {
                    let mut sum = 0u32;
                    for &lba in black_box(windows.next_window()) {
                        sum = sum.wrapping_add(index.get(lba).map_or(0, |(_, value)| value));
                    }
                    sum
                })
            });
            group.bench_function("rmap_index_batch32", |b| {
                let mut windows = KeyWindows::new(&pool);
                let mut out = [None; 32];
                b.iter(|| {
                    let mut sum = 0u32;
                    for chunk in black_box(windows.next_window()).chunks(32) {
                        index.get_batch(chunk, &mut out);
                        sum = out.iter().flatten().fold(sum, |sum, &value| sum.wrapping_add(value));
                    }
                    sum
                })
            });
            group.bench_function("vec_partition_point", |b| {
                let mut windows = KeyWindows::new(&pool);
                b.iter(|| {
                    let mut sum = 0u32;
                    for &lba in black_box(windows.next_window()) {
                        sum = sum.wrapping_add(sorted.get(lba).unwrap_or(0));
                    }
                    sum
                })
            });
            group.bench_function("btreemap_range", |b| {
                let mut windows = KeyWindows::new(&pool);
                b.iter(|| {
                    let mut sum = 0u32;
                    for &lba in black_box(windows.next_window()) {
                        sum = sum.wrapping_add(btree_get(&btree, lba).unwrap_or(0));
                    }
                    sum
                })
            });
            group.finish();
        }
    }
}

/// Dependent lookups at 1 Mi extents: the next key is mixed with the last answer, so
/// lookups cannot overlap and the time is the latency of one. Beside them, a dependent random
/// read of a 128 MiB array: one cache miss (and TLB miss), the unit of the estimate; and one of
/// a 16 MiB array, the index's own size, a miss with fewer TLB misses.
fn latency(c: &mut Criterion) {
    let mut random = SplitMix(0x1A7E_0003);
    let extents = extents(1 << 20, &mut random);
    let (low, span) = (extents[0].0.start, extents[extents.len() - 1].0.end - extents[0].0.start);
    let index = RmapIndex::build(&extents).expect("generated extents are valid");
    let sorted = SortedStarts::new(&extents);
    let chase = random_cycle((128usize << 20) / 4, &mut random);
    let chase_16mib = random_cycle((16usize << 20) / 4, &mut random);
    let pool: Vec<u64> = (0..KEY_POOL).map(|_| random.next()).collect();

    let mut group = c.benchmark_group("rmap_lookup/1Mi/latency");
    group.throughput(Throughput::Elements(KEYS_PER_ITERATION as u64));
    group.bench_function(BenchmarkId::from_parameter("dram_miss"), |b| {
        let mut at = 0u32;
        b.iter(|| {
            for _ in 0..KEYS_PER_ITERATION {
                at = chase[at as usize];
            }
            at
        })
    });
    group.bench_function(BenchmarkId::from_parameter("dram_miss_16MiB"), |b| {
        let mut at = 0u32;
        b.iter(|| {
            for _ in 0..KEYS_PER_ITERATION {
                at = chase_16mib[at as usize];
            }
            at
        })
    });
    group.bench_function(BenchmarkId::from_parameter("rmap_index"), |b| {
        let mut windows = KeyWindows::new(&pool);
        b.iter(|| {
            let mut last = 0u32;
            for &key in black_box(windows.next_window()) {
                let lba = low + (key ^ u64::from(last)) % span;
                last = index.get(lba).map_or(1, |(_, value)| value);
            }
            last
        })
    });
    group.bench_function(BenchmarkId::from_parameter("vec_partition_point"), |b| {
        let mut windows = KeyWindows::new(&pool);
        b.iter(|| {
            let mut last = 0u32;
            for &key in black_box(windows.next_window()) {
                let lba = low + (key ^ u64::from(last)) % span;
                last = sorted.get(lba).unwrap_or(1);
            }
            last
        })
    });
    group.finish();
}

/// A permutation of `0..len` that is one cycle (Sattolo), so following it visits every slot
/// in random order and no prefetcher can guess the next one.
fn random_cycle(len: usize, random: &mut SplitMix) -> Vec<u32> {
    let mut next: Vec<u32> = (0..len as u32).collect();
    for i in (1..len).rev() {
        next.swap(i, (random.next() % i as u64) as usize);
    }
    next
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = lookups, latency }
criterion_main!(benches);
