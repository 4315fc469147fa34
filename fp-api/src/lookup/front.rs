//! The front directory of the trie layout: one byte per bucket of the mapped span, naming the
//! first leaf that meets the bucket and how many do. At about one byte per leaf it stays in
//! L2 while the leaves stream through, so a lookup's only miss is the leaves' lines.

/// Most leaves a bucket may meet and still be answered from the front directory. The lines
/// are adjacent, so they are fetched together and miss together.
pub(super) const WINDOW: usize = 1 << COUNT_BITS;

/// Buckets per leaf, at most (rounding the bucket width to a power of two leaves between half
/// this and this). One is coarse enough for about 135 KiB of entries at 1 Mi extents, fine
/// enough that a bucket meets 2.4 leaves on average and 0.1% meet more than [`WINDOW`].
const BUCKETS_PER_LEAF: usize = 1;

/// Buckets sharing one base leaf index, from which their entries step.
const BLOCK: usize = 8;

/// Low bits of an entry: how many leaves its bucket meets, less one. The high bits are the
/// step from the block's base to the bucket's first leaf.
const COUNT_BITS: u32 = 3;

/// The count bits of an entry.
const COUNT_MASK: u8 = (1 << COUNT_BITS) - 1;

/// The entry of a bucket that meets more than [`WINDOW`] leaves, or whose first leaf is more
/// steps past its block's base than an entry holds: lookups there take the root directory.
const ESCAPE: u8 = u8::MAX;

/// Largest step an entry holds without being [`ESCAPE`].
const MAX_STEP: usize = (ESCAPE >> COUNT_BITS) as usize - 1;

/// Buckets of `2^shift` offsets from the lowest mapped LBA, each an [`ESCAPE`] or a step from
/// its block's base and a count of leaves.
#[derive(Clone, Debug)]
pub(super) struct FrontDirectory {
    shift: u32,
    entries: Vec<u8>,
    /// Per [`BLOCK`] buckets, the first leaf meeting the first of them.
    bases: Vec<u32>,
    escapes: usize,
}

impl FrontDirectory {
    /// The directory over leaves starting at `leaf_firsts` (sorted, at least one, the first at
    /// `lowest`) that cover `span` offsets from `lowest`.
    pub(super) fn build(leaf_firsts: &[u64], lowest: u64, span: u64) -> Self {
        let target = (leaf_firsts.len() * BUCKETS_PER_LEAF) as u64;
        let mut shift = 0;
        while (span - 1) >> shift >= target {
            shift += 1;
        }
        let buckets = (((span - 1) >> shift) + 1) as usize;
        let mut entries = vec![ESCAPE; buckets];
        let mut bases = vec![0u32; buckets.div_ceil(BLOCK)];
        let mut escapes = 0;
        let leaf_of = |lba: u64| leaf_firsts.partition_point(|&first| first <= lba) - 1;
        for (bucket, entry) in entries.iter_mut().enumerate() {
            let first = (bucket as u64) << shift;
            let last = first.saturating_add((1u64 << shift) - 1).min(span - 1);
            let (first_leaf, last_leaf) = (leaf_of(lowest + first), leaf_of(lowest + last));
            if bucket % BLOCK == 0 {
                bases[bucket / BLOCK] = first_leaf as u32;
            }
            let step = first_leaf - bases[bucket / BLOCK] as usize;
            if last_leaf - first_leaf < WINDOW && step <= MAX_STEP {
                *entry = (step << COUNT_BITS | (last_leaf - first_leaf)) as u8;
            } else {
                escapes += 1;
            }
        }
        FrontDirectory { shift, entries, bases, escapes }
    }

    /// For `offset` (inside the span), the first leaf meeting its bucket and how many more
    /// do, or `None` if the bucket escaped.
    #[inline(always)]
    pub(super) fn window(&self, offset: u64) -> Option<(usize, usize)> {
        let bucket = (offset >> self.shift) as usize;
        let entry = self.entries[bucket];
        (entry != ESCAPE).then(|| {
            let first = self.bases[bucket / BLOCK] as usize + usize::from(entry >> COUNT_BITS);
            (first, usize::from(entry & COUNT_MASK))
        })
    }

    /// Heap bytes: entries and bases.
    pub(super) fn memory_bytes(&self) -> usize {
        self.entries.len() + self.bases.len() * size_of::<u32>()
    }

    /// Bucket width, as a shift.
    pub(super) fn shift(&self) -> u32 {
        self.shift
    }

    /// Number of buckets.
    pub(super) fn buckets(&self) -> usize {
        self.entries.len()
    }

    /// Buckets whose lookups take the root directory.
    pub(super) fn escapes(&self) -> usize {
        self.escapes
    }
}
