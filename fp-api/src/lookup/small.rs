//! The layout of [`RmapIndex`](super::RmapIndex) for small maps (at most
//! [`SMALL_MAP_EXTENTS`](super::SMALL_MAP_EXTENTS) extents): the extent starts in one sorted
//! array, and a directory of a few slots per extent on the high bits of the offset from the
//! lowest LBA. A slot names the last extent starting at or before its bucket; a lookup then
//! counts the next [`WINDOW`] starts that are at or below the key, with no branch on the data.
//!
//! Everything is in L1 for a hot map, so the cost is instructions, not misses: a slot load and
//! [`WINDOW`] compares against a binary search's six or seven rounds. And the build is linear
//! in the extent count with a directory sized to it, which matters on the fault path, where a
//! segment's index is rebuilt after every grant of extents.

use core::ops::Range;

/// Directory slots per extent, at most (rounding the bucket width to a power of two leaves
/// between half this and this): fine enough that few buckets hold more than [`WINDOW`]
/// extent starts where extent sizes vary widely, for two bytes a slot.
const SLOTS_PER_EXTENT: usize = 4;

/// Extent starts counted after a slot's extent. A bucket holding more starts than this past its
/// first LBA is *crowded*: its slot says so, and lookups there take a binary search.
pub(super) const WINDOW: usize = 3;

/// Tag bit of a slot whose bucket is crowded.
const CROWDED: u16 = 1 << 15;

/// The small-map layout. Extent `i` is `starts[i]..ends[i]` with `values[i]`.
#[derive(Clone, Debug)]
pub(super) struct SmallIndex<V> {
    /// Lowest mapped LBA: the start of the first extent.
    lowest: u64,
    /// Mapped span: end of the last extent minus `lowest`; zero for an empty index.
    span: u64,
    /// Bucket width of the directory, as a shift.
    shift: u32,
    /// Per bucket, the last extent starting at or before the bucket's first LBA, or'ed with
    /// [`CROWDED`].
    slots: Vec<u16>,
    /// Extent starts, then [`WINDOW`] times `u64::MAX`, so that every slot's window is in
    /// bounds and its padding never counts (no mapped LBA reaches `u64::MAX`).
    starts: Vec<u64>,
    ends: Vec<u64>,
    values: Vec<V>,
}

impl<V: Copy> SmallIndex<V> {
    /// Builds from extents that [`validate`](super::validate) accepted, at most
    /// [`SMALL_MAP_EXTENTS`](super::SMALL_MAP_EXTENTS) of them.
    pub(super) fn build(extents: &[(Range<u64>, V)]) -> Self {
        const { assert!(super::SMALL_MAP_EXTENTS < CROWDED as usize) };
        debug_assert!(extents.len() <= super::SMALL_MAP_EXTENTS);
        let mut starts = Vec::with_capacity(extents.len() + WINDOW);
        starts.extend(extents.iter().map(|(extent, _)| extent.start));
        starts.extend([u64::MAX; WINDOW]);
        let ends: Vec<u64> = extents.iter().map(|(extent, _)| extent.end).collect();
        let values: Vec<V> = extents.iter().map(|(_, value)| *value).collect();
        let (Some(&lowest), Some(&end)) = (starts.first(), ends.last()) else {
            return SmallIndex { lowest: 0, span: 0, shift: 0, slots: Vec::new(), starts, ends, values };
        };
        let span = end - lowest;
        let target = (extents.len() * SLOTS_PER_EXTENT) as u64;
        let mut shift = 0;
        while (span - 1) >> shift >= target {
            shift += 1;
        }
        let bucket_count = ((span - 1) >> shift) + 1;
        let mut slots = Vec::with_capacity(bucket_count as usize);
        // `at`: the last extent starting at or before the bucket's first LBA; `past`: the
        // first starting after its last LBA. Both only move forward, so the build is linear.
        let (mut at, mut past) = (0, 1);
        for bucket in 0..bucket_count {
            let first = lowest + (bucket << shift);
            let last = first.saturating_add((1 << shift) - 1).min(lowest + (span - 1));
            while starts[at + 1] <= first {
                at += 1;
            }
            past = past.max(at + 1);
            while starts[past] <= last {
                past += 1;
            }
            let crowded = past - at - 1 > WINDOW;
            slots.push(at as u16 | if crowded { CROWDED } else { 0 });
        }
        SmallIndex { lowest, span, shift, slots, starts, ends, values }
    }

    /// Heap bytes of the lookup structure.
    pub(super) fn memory_bytes(&self) -> usize {
        self.slots.len() * size_of::<u16>()
            + (self.starts.len() + self.ends.len()) * size_of::<u64>()
            + self.values.len() * size_of::<V>()
    }

    /// Buckets that hold more than [`WINDOW`] starts past their first LBA.
    pub(super) fn crowded_buckets(&self) -> usize {
        self.slots.iter().filter(|&&slot| slot & CROWDED != 0).count()
    }

    /// Directory slots.
    pub(super) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The extent holding `lba`, with its value.
    #[inline(always)]
    pub(super) fn get(&self, lba: u64) -> Option<(Range<u64>, V)> {
        let extent = self.extent_at_or_before(lba)?;
        (lba < self.ends[extent]).then(|| (self.starts[extent]..self.ends[extent], self.values[extent]))
    }

    /// The value of the extent holding `lba`.
    #[inline(always)]
    pub(super) fn value(&self, lba: u64) -> Option<V> {
        let extent = self.extent_at_or_before(lba)?;
        (lba < self.ends[extent]).then(|| self.values[extent])
    }

    /// The last extent starting at or before `lba`, if `lba` is in the mapped span.
    #[inline(always)]
    fn extent_at_or_before(&self, lba: u64) -> Option<usize> {
        let offset = lba.wrapping_sub(self.lowest);
        if offset >= self.span {
            return None;
        }
        let slot = self.slots[(offset >> self.shift) as usize];
        if slot & CROWDED != 0 {
            return Some(self.search_crowd(usize::from(slot & !CROWDED), lba));
        }
        let at = usize::from(slot);
        // Counting rather than searching: the window's starts past the bucket are above `lba`
        // and count for nothing, so no branch depends on where `lba` falls.
        let window: &[u64; WINDOW] = self.starts[at + 1..at + 1 + WINDOW].try_into().expect("padded starts");
        Some(at + window.iter().map(|&start| usize::from(start <= lba)).sum::<usize>())
    }

    /// The last extent starting at or before `lba`, from extent `at` on. Out of line: crowded
    /// buckets are the exception, and [`get`](Self::get) should stay small enough to inline.
    #[cold]
    #[inline(never)]
    fn search_crowd(&self, at: usize, lba: u64) -> usize {
        at + self.starts[at + 1..].partition_point(|&start| start <= lba)
    }
}
