//! The Rmap lookup index: which extent holds LBA `x`, asked on every fast-path I/O.
//!
//! A compressed radix trie after seed 003 Fig. 34: a directory on the high bits of the LBA
//! whose slots point straight at 64-byte range leaves, with sub-directories only where
//! extents crowd, so a lookup usually touches one directory slot and one cache line.

use core::fmt;
use core::ops::Range;

/// Segments (extents or gaps between them) per leaf. Four bounds, a fence, four small values
/// and a mask fill one 64-byte cache line when the value is at most 4 bytes.
const SEGMENTS_PER_LEAF: usize = 4;

/// Directory slots per segment in the root directory, before rounding up to a power of two.
/// Two keeps most buckets down to at most four segments (one leaf) at 8 bytes per segment.
const ROOT_SLOTS_PER_SEGMENT: usize = 2;

/// A sub-directory gets `2^(ceil_log2(segments) + SUBDIR_EXTRA_BITS)` slots, so that its
/// buckets are sparse enough to fit in one leaf after one more level, mostly.
const SUBDIR_EXTRA_BITS: u32 = 1;

/// Tag bit of a directory slot that names a sub-directory instead of a leaf.
const NODE_TAG: u32 = 1 << 31;

/// Keys resolved together by [`RmapIndex::get_batch`]: enough independent cache misses in
/// flight to hide memory latency, few enough for the slots to stay in registers and L1.
const BATCH: usize = 32;

/// Why [`RmapIndex::build`] refused an extent list.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum IndexError {
    /// An extent with `end <= start`.
    #[error("extent {index} is empty or reversed: {start}..{end}")]
    EmptyExtent {
        /// Position in the input.
        index: usize,
        /// Its start.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// An extent that starts before the one before it.
    #[error("extent {index} starts at {start}, before extent {} which starts at {previous_start}", index - 1)]
    Unsorted {
        /// Position in the input.
        index: usize,
        /// Its start.
        start: u64,
        /// The start of the extent before it.
        previous_start: u64,
    },
    /// An extent that starts inside the one before it.
    #[error("extent {index} starts at {start}, inside extent {} which ends at {previous_end}", index - 1)]
    Overlapping {
        /// Position in the input.
        index: usize,
        /// Its start.
        start: u64,
        /// The end of the extent before it.
        previous_end: u64,
    },
    /// More extents (or a more crowded layout) than 31-bit directory slots can address.
    #[error("too many extents for one index: {count}")]
    TooManyExtents {
        /// Number of extents offered.
        count: usize,
    },
}

/// The answer to "does [lba, lba+blocks) fit in one extent".
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fit<V> {
    /// The whole range lies in the extent `start..end`.
    Inside {
        /// Extent start.
        start: u64,
        /// Extent end (exclusive).
        end: u64,
        /// Extent value.
        value: V,
    },
    /// The first block lies in the extent `start..end`, the range runs past its end (or past
    /// `u64::MAX`).
    Spans {
        /// Extent start.
        start: u64,
        /// Extent end (exclusive).
        end: u64,
        /// Extent value.
        value: V,
    },
    /// The first block is in no extent.
    Miss,
}

/// One cache line of the trie's leaf level: up to four consecutive segments of the key space.
/// Segment `i` is `bounds[i]..bounds[i + 1]`; a segment is either an extent (its bit set in
/// `extent_mask`, value in `values[i]`) or a gap. Unused trailing segments repeat the fence,
/// so they are empty and no key selects them.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Leaf<V> {
    bounds: [u64; SEGMENTS_PER_LEAF + 1],
    values: [V; SEGMENTS_PER_LEAF],
    extent_mask: u8,
}

impl<V: Copy> Leaf<V> {
    /// The segment of this leaf that holds `lba`, and whether it is an extent. The caller
    /// guarantees `bounds[0] <= lba < bounds[SEGMENTS_PER_LEAF]`; counting instead of
    /// searching keeps it branch-free.
    #[inline(always)]
    fn segment_of(&self, lba: u64) -> (usize, bool) {
        let segment = usize::from(self.bounds[1] <= lba)
            + usize::from(self.bounds[2] <= lba)
            + usize::from(self.bounds[3] <= lba);
        (segment, (self.extent_mask >> segment) & 1 != 0)
    }
}

/// A sub-directory: the slots `first_slot..` split the bucket starting at offset `base` (from
/// the index's lowest LBA) into `2^k` buckets of `2^shift` LBAs.
#[derive(Clone, Copy, Debug)]
struct SubDirectory {
    base: u64,
    shift: u32,
    first_slot: u32,
}

/// Immutable predecessor index over an extent map's boundaries, built once per mapping
/// snapshot (the control path publishes snapshots by pointer swap; the fast path only reads).
///
/// Keys are offsets from the lowest mapped LBA. The root directory splits the mapped span into
/// about two buckets per extent; a slot names either a leaf (a cache line holding every
/// segment that meets the bucket, so the leaf alone answers) or, where more than four
/// segments crowd into one bucket, a sub-directory over that bucket, recursively. Leaves
/// overlap (a segment may be copied into the leaves of neighbouring buckets), which is what
/// lets a bucket's answer sit in one line.
#[derive(Clone)]
pub struct RmapIndex<V: Copy> {
    /// Lowest mapped LBA: the start of the first extent.
    lowest: u64,
    /// Mapped span: end of the last extent minus `lowest`; zero for an empty index.
    span: u64,
    /// Bucket width of the root directory, as a shift.
    root_shift: u32,
    /// The root directory in `slots[..root_len]`, sub-directories after it.
    slots: Vec<u32>,
    sub_directories: Vec<SubDirectory>,
    leaves: Vec<Leaf<V>>,
    extent_count: usize,
}

impl<V: Copy> fmt::Debug for RmapIndex<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RmapIndex")
            .field("extents", &self.extent_count)
            .field("lowest", &self.lowest)
            .field("span", &self.span)
            .field("root_shift", &self.root_shift)
            .field("slots", &self.slots.len())
            .field("sub_directories", &self.sub_directories.len())
            .field("leaves", &self.leaves.len())
            .finish()
    }
}

impl<V: Copy> RmapIndex<V> {
    /// Builds the index. `extents` must be sorted by start, non-overlapping, half-open ranges
    /// `[start, end)` with `end > start`; gaps between extents, and everything before the
    /// first and after the last, are misses (the fast path caches only part of an Rmap).
    pub fn build(extents: &[(Range<u64>, V)]) -> Result<Self, IndexError> {
        validate(extents)?;
        let (Some(first), Some(last)) = (extents.first(), extents.last()) else {
            return Ok(RmapIndex {
                lowest: 0,
                span: 0,
                root_shift: 0,
                slots: Vec::new(),
                sub_directories: Vec::new(),
                leaves: Vec::new(),
                extent_count: 0,
            });
        };
        let too_many = IndexError::TooManyExtents { count: extents.len() };
        if extents.len() >= (NODE_TAG as usize) / 8 {
            return Err(too_many);
        }
        let lowest = first.0.start;
        let span = last.0.end - lowest;
        let segments = Segments::of(extents);
        let root_target = (segments.starts.len() * ROOT_SLOTS_PER_SEGMENT).next_power_of_two() as u64;
        let mut root_shift = 0;
        while (span - 1) >> root_shift >= root_target {
            root_shift += 1;
        }
        let root_len = ((span - 1) >> root_shift) + 1;
        let mut builder = TrieBuilder {
            segments: &segments,
            lowest,
            span,
            filler: first.1,
            cursor: 0,
            slots: vec![0; root_len as usize],
            sub_directories: Vec::new(),
            leaves: Vec::new(),
            open_window: None,
        };
        builder.fill(0, root_len, 0, root_shift)?;
        if builder.slots.len() >= NODE_TAG as usize || builder.leaves.len() >= NODE_TAG as usize {
            return Err(too_many);
        }
        Ok(RmapIndex {
            lowest,
            span,
            root_shift,
            slots: builder.slots,
            sub_directories: builder.sub_directories,
            leaves: builder.leaves,
            extent_count: extents.len(),
        })
    }

    /// Number of extents.
    pub fn len(&self) -> usize {
        self.extent_count
    }

    /// Whether the index holds no extent (every lookup misses).
    pub fn is_empty(&self) -> bool {
        self.extent_count == 0
    }

    /// Heap bytes of the lookup structure (directory, sub-directories, leaves).
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * size_of::<u32>()
            + self.sub_directories.len() * size_of::<SubDirectory>()
            + self.leaves.len() * size_of::<Leaf<V>>()
    }

    /// The extent holding `lba`, with its value.
    #[inline]
    pub fn get(&self, lba: u64) -> Option<(Range<u64>, V)> {
        let offset = lba.wrapping_sub(self.lowest);
        if offset >= self.span {
            return None;
        }
        let leaf = &self.leaves[self.leaf_of(self.slots[(offset >> self.root_shift) as usize], offset)];
        let (segment, is_extent) = leaf.segment_of(lba);
        is_extent.then(|| (leaf.bounds[segment]..leaf.bounds[segment + 1], leaf.values[segment]))
    }

    /// Whether `[lba, lba + blocks)` lies in one extent. A range that would run past
    /// `u64::MAX` spans (no extent reaches that far); `blocks == 0` is treated as one block.
    #[inline]
    pub fn fit(&self, lba: u64, blocks: u64) -> Fit<V> {
        match self.get(lba) {
            None => Fit::Miss,
            Some((extent, value)) => match lba.checked_add(blocks.max(1)) {
                Some(range_end) if range_end <= extent.end => {
                    Fit::Inside { start: extent.start, end: extent.end, value }
                }
                _ => Fit::Spans { start: extent.start, end: extent.end, value },
            },
        }
    }

    /// The value of the extent holding each of `lbas`, into `out`; only the first
    /// `min(lbas.len(), out.len())` keys are looked up.
    ///
    /// Faster per key than [`get`](Self::get) on maps larger than the cache: keys go through
    /// the trie level by level in groups of 32, so their cache misses overlap instead of
    /// following one another.
    pub fn get_batch(&self, lbas: &[u64], out: &mut [Option<V>]) {
        let len = lbas.len().min(out.len());
        if self.span == 0 {
            out[..len].fill(None);
            return;
        }
        for (keys, values) in lbas[..len].chunks(BATCH).zip(out[..len].chunks_mut(BATCH)) {
            self.get_group(keys, values);
        }
    }

    /// [`get_batch`](Self::get_batch) for at most [`BATCH`] keys of a non-empty index.
    #[inline(always)]
    fn get_group(&self, lbas: &[u64], out: &mut [Option<V>]) {
        let mut root_slots = [0u32; BATCH];
        // Level 1 for every key before level 2 for any: these loads do not depend on each
        // other, so the core keeps them all in flight. Keys outside the span read slot 0
        // and are dropped below.
        for (slot, &lba) in root_slots.iter_mut().zip(lbas) {
            let offset = lba.wrapping_sub(self.lowest);
            let bucket = if offset < self.span { offset >> self.root_shift } else { 0 };
            *slot = self.slots[bucket as usize];
        }
        for ((&slot, &lba), value) in root_slots.iter().zip(lbas).zip(out.iter_mut()) {
            let offset = lba.wrapping_sub(self.lowest);
            let in_span = offset < self.span;
            let leaf = if in_span { self.leaf_of(slot, offset) } else { 0 };
            let leaf = &self.leaves[leaf];
            let (segment, is_extent) = leaf.segment_of(lba);
            *value = (in_span & is_extent).then_some(leaf.values[segment]);
        }
    }

    /// Follows sub-directories from `slot` down to the leaf for `offset`.
    #[inline(always)]
    fn leaf_of(&self, mut slot: u32, offset: u64) -> usize {
        while slot & NODE_TAG != 0 {
            slot = self.descend(slot, offset);
        }
        slot as usize
    }

    /// One sub-directory level; out of line because crowded buckets are rare.
    #[inline(never)]
    fn descend(&self, slot: u32, offset: u64) -> u32 {
        let sub = &self.sub_directories[(slot & !NODE_TAG) as usize];
        self.slots[sub.first_slot as usize + ((offset - sub.base) >> sub.shift) as usize]
    }
}

/// Checks the input contract of [`RmapIndex::build`].
fn validate<V>(extents: &[(Range<u64>, V)]) -> Result<(), IndexError> {
    for (index, (extent, _)) in extents.iter().enumerate() {
        if extent.end <= extent.start {
            return Err(IndexError::EmptyExtent { index, start: extent.start, end: extent.end });
        }
        if let Some(index_before) = index.checked_sub(1) {
            let before = &extents[index_before].0;
            if extent.start < before.start {
                return Err(IndexError::Unsorted {
                    index,
                    start: extent.start,
                    previous_start: before.start,
                });
            }
            if extent.start < before.end {
                return Err(IndexError::Overlapping { index, start: extent.start, previous_end: before.end });
            }
        }
    }
    Ok(())
}

/// The mapped span cut into segments: every extent, and every gap between two extents.
/// Segment `i` is `starts[i]..starts[i + 1]` (the last one ends at `end`).
struct Segments<V> {
    starts: Vec<u64>,
    values: Vec<V>,
    is_extent: Vec<bool>,
    end: u64,
}

impl<V: Copy> Segments<V> {
    fn of(extents: &[(Range<u64>, V)]) -> Self {
        let mut segments = Segments {
            starts: Vec::with_capacity(extents.len() * 2),
            values: Vec::with_capacity(extents.len() * 2),
            is_extent: Vec::with_capacity(extents.len() * 2),
            end: extents.last().map_or(0, |(extent, _)| extent.end),
        };
        for (i, (extent, value)) in extents.iter().enumerate() {
            segments.push(extent.start, *value, true);
            if extents.get(i + 1).is_some_and(|(next, _)| extent.end < next.start) {
                segments.push(extent.end, *value, false);
            }
        }
        segments
    }

    fn push(&mut self, start: u64, value: V, is_extent: bool) {
        self.starts.push(start);
        self.values.push(value);
        self.is_extent.push(is_extent);
    }

    /// Start of segment `i`, or the end of the span past the last one.
    fn start_or_end(&self, i: usize) -> u64 {
        self.starts.get(i).copied().unwrap_or(self.end)
    }
}

/// Builds the trie depth-first in key order, so buckets meet segments in increasing order.
struct TrieBuilder<'a, V> {
    segments: &'a Segments<V>,
    lowest: u64,
    span: u64,
    /// A value for leaf slots that hold no extent; never returned.
    filler: V,
    /// The last segment starting at or before the bucket being filled; only moves forward.
    cursor: usize,
    slots: Vec<u32>,
    sub_directories: Vec<SubDirectory>,
    leaves: Vec<Leaf<V>>,
    /// The last leaf made: (its first segment, its index). The next bucket reuses it when its
    /// segments are a subset, which is what keeps leaf copies few.
    open_window: Option<(usize, u32)>,
}

impl<V: Copy> TrieBuilder<'_, V> {
    /// Fills `count` slots from `first_slot`: buckets of `2^shift` offsets from `base`.
    fn fill(&mut self, first_slot: usize, count: u64, base: u64, shift: u32) -> Result<(), IndexError> {
        for bucket in 0..count {
            let bucket_first = base + (bucket << shift);
            let slot = if bucket_first >= self.span {
                // Past the span, in the tail of the last root bucket's sub-directory: no key
                // gets here (lookups check the span first), any leaf will do.
                self.open_window.map_or(0, |(_, leaf)| leaf)
            } else {
                let bucket_last = bucket_first.saturating_add((1u64 << shift) - 1).min(self.span - 1);
                self.slot_for(bucket_first, bucket_last, shift)?
            };
            self.slots[first_slot + bucket as usize] = slot;
        }
        Ok(())
    }

    /// The slot for the bucket of offsets `first..=last`: a leaf if its segments fit in one,
    /// else a new sub-directory.
    fn slot_for(&mut self, first: u64, last: u64, shift: u32) -> Result<u32, IndexError> {
        let starts = &self.segments.starts;
        let (first_lba, last_lba) = (self.lowest + first, self.lowest + last);
        while self.cursor + 1 < starts.len() && starts[self.cursor + 1] <= first_lba {
            self.cursor += 1;
        }
        let first_segment = self.cursor;
        let beyond = (first_segment + 1..starts.len().min(first_segment + SEGMENTS_PER_LEAF + 1))
            .find(|&i| starts[i] > last_lba);
        if let Some(end_segment) =
            beyond.or_else(|| (starts.len() <= first_segment + SEGMENTS_PER_LEAF).then_some(starts.len()))
        {
            return Ok(self.leaf_for(first_segment, end_segment - 1));
        }
        let crowd = starts[first_segment..].partition_point(|&start| start <= last_lba);
        let bits = (usize::BITS - (crowd - 1).leading_zeros() + SUBDIR_EXTRA_BITS).min(shift);
        let child_shift = shift - bits;
        let first_child = self.slots.len();
        if first_child + (1usize << bits) >= NODE_TAG as usize {
            return Err(IndexError::TooManyExtents { count: starts.len() });
        }
        self.slots.resize(first_child + (1usize << bits), 0);
        let sub_directory = self.sub_directories.len() as u32;
        self.sub_directories.push(SubDirectory {
            base: first,
            shift: child_shift,
            first_slot: first_child as u32,
        });
        self.fill(first_child, 1u64 << bits, first, child_shift)?;
        Ok(NODE_TAG | sub_directory)
    }

    /// A leaf holding segments `first..=last`, reusing the last leaf made if it holds them.
    fn leaf_for(&mut self, first: usize, last: usize) -> u32 {
        if let Some((window, leaf)) = self.open_window
            && window <= first
            && last < window + SEGMENTS_PER_LEAF
        {
            return leaf;
        }
        let segments = self.segments;
        let fence = segments.start_or_end(first + SEGMENTS_PER_LEAF);
        let mut leaf = Leaf {
            bounds: [fence; SEGMENTS_PER_LEAF + 1],
            values: [self.filler; SEGMENTS_PER_LEAF],
            extent_mask: 0,
        };
        for (i, segment) in (first..segments.starts.len().min(first + SEGMENTS_PER_LEAF)).enumerate() {
            leaf.bounds[i] = segments.starts[segment];
            leaf.values[i] = segments.values[segment];
            leaf.extent_mask |= u8::from(segments.is_extent[segment]) << i;
        }
        let index = self.leaves.len() as u32;
        self.leaves.push(leaf);
        self.open_window = Some((first, index));
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(extents: &[(Range<u64>, u32)]) -> RmapIndex<u32> {
        RmapIndex::build(extents).expect("valid extents")
    }

    #[test]
    fn empty_index_misses_everything() {
        let empty = index(&[]);
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
        for lba in [0, 1, u64::MAX] {
            assert_eq!(empty.get(lba), None);
            assert_eq!(empty.fit(lba, 1), Fit::Miss);
        }
        let mut out = [Some(1); 3];
        empty.get_batch(&[0, 5, u64::MAX], &mut out);
        assert_eq!(out, [None; 3]);
    }

    #[test]
    fn single_extent_hits_inside_and_misses_around() {
        let one = index(&[(10..20, 7)]);
        assert_eq!(one.len(), 1);
        assert_eq!(one.get(9), None);
        assert_eq!(one.get(10), Some((10..20, 7)));
        assert_eq!(one.get(19), Some((10..20, 7)));
        assert_eq!(one.get(20), None);
        assert_eq!(one.get(u64::MAX), None);
        assert_eq!(one.fit(10, 10), Fit::Inside { start: 10, end: 20, value: 7 });
        assert_eq!(one.fit(15, 6), Fit::Spans { start: 10, end: 20, value: 7 });
        assert_eq!(one.fit(19, u64::MAX), Fit::Spans { start: 10, end: 20, value: 7 });
        assert_eq!(one.fit(20, 1), Fit::Miss);
    }

    #[test]
    fn extents_at_both_ends_of_the_key_space() {
        let ends = index(&[(0..1, 1), (5..6, 2), (u64::MAX - 3..u64::MAX, 3)]);
        assert_eq!(ends.get(0), Some((0..1, 1)));
        assert_eq!(ends.get(1), None);
        assert_eq!(ends.get(5), Some((5..6, 2)));
        assert_eq!(ends.get(u64::MAX - 4), None);
        assert_eq!(ends.get(u64::MAX - 1), Some((u64::MAX - 3..u64::MAX, 3)));
        assert_eq!(ends.get(u64::MAX), None, "end is exclusive: u64::MAX is never mapped");
        assert_eq!(ends.fit(u64::MAX - 1, 1), Fit::Inside { start: u64::MAX - 3, end: u64::MAX, value: 3 });
        assert_eq!(ends.fit(u64::MAX - 1, 2), Fit::Spans { start: u64::MAX - 3, end: u64::MAX, value: 3 });
        let whole = index(&[(0..u64::MAX, 9)]);
        assert_eq!(whole.get(u64::MAX - 1), Some((0..u64::MAX, 9)));
        assert_eq!(whole.get(u64::MAX), None);
    }

    #[test]
    fn adjacent_extents_stay_distinct() {
        let adjacent = index(&[(0..13, 0), (13..18, 1), (18..20, 0)]);
        assert_eq!(adjacent.get(12), Some((0..13, 0)));
        assert_eq!(adjacent.get(13), Some((13..18, 1)));
        assert_eq!(adjacent.get(18), Some((18..20, 0)));
        assert_eq!(adjacent.fit(12, 2), Fit::Spans { start: 0, end: 13, value: 0 });
    }

    #[test]
    fn crowded_buckets_go_through_sub_directories() {
        // A thousand one-block extents, then one huge one: the root directory is far too
        // coarse for the crowd, which must land in sub-directories.
        let mut extents: Vec<(Range<u64>, u32)> =
            (0..1000u32).map(|i| (u64::from(i) * 2..u64::from(i) * 2 + 1, i)).collect();
        extents.push((1 << 40..1 << 50, 1000));
        let skewed = index(&extents);
        assert!(!skewed.sub_directories.is_empty());
        for (i, (extent, value)) in extents.iter().enumerate() {
            assert_eq!(skewed.get(extent.start), Some((extent.clone(), *value)), "extent {i}");
            assert_eq!(skewed.get(extent.end), None, "after extent {i}");
        }
        let lbas: Vec<u64> = (0..2100).collect();
        let mut out = vec![None; lbas.len()];
        skewed.get_batch(&lbas, &mut out);
        for (&lba, value) in lbas.iter().zip(&out) {
            assert_eq!(*value, skewed.get(lba).map(|(_, v)| v), "lba {lba}");
        }
    }

    #[test]
    fn get_batch_stops_at_the_shorter_slice() {
        let one = index(&[(10..20, 7)]);
        let mut out = [None, None, Some(0)];
        one.get_batch(&[10, 20, 11, 12], &mut out[..2]);
        assert_eq!(out, [Some(7), None, Some(0)]);
    }

    #[test]
    fn build_rejects_bad_extent_lists() {
        assert_eq!(
            RmapIndex::build(&[(5..5, 0)]).unwrap_err(),
            IndexError::EmptyExtent { index: 0, start: 5, end: 5 }
        );
        assert_eq!(
            RmapIndex::build(&[(0..4, 0), (Range { start: 9, end: 8 }, 0)]).unwrap_err(),
            IndexError::EmptyExtent { index: 1, start: 9, end: 8 }
        );
        assert_eq!(
            RmapIndex::build(&[(10..20, 0), (0..5, 0)]).unwrap_err(),
            IndexError::Unsorted { index: 1, start: 0, previous_start: 10 }
        );
        assert_eq!(
            RmapIndex::build(&[(10..20, 0), (19..25, 0)]).unwrap_err(),
            IndexError::Overlapping { index: 1, start: 19, previous_end: 20 }
        );
    }

    #[test]
    fn leaves_fill_one_cache_line_for_small_values() {
        assert_eq!(size_of::<Leaf<u32>>(), 64);
        assert_eq!(size_of::<Leaf<u8>>(), 64);
    }
}
