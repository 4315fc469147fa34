//! The Rmap lookup index: which extent holds LBA `x`, asked on every fast-path I/O.
//!
//! A compressed radix trie after seed 003 Fig. 34: a directory on the high bits of the LBA
//! whose slots point straight at packed 64-byte range leaves, with sub-directories only where
//! extents crowd. In front of it, a one-byte-per-bucket directory that stays in cache names
//! the few adjacent leaves a key can be in, so a lookup usually misses once, on those lines.

use core::fmt;
use core::ops::Range;

mod front;
mod small;

use front::{FrontDirectory, WINDOW};
use small::SmallIndex;

/// Most extents an index keeps in the small-map layout (extent starts searched directly under
/// a directory sized to the extent count). Larger maps get the trie, whose build costs at least
/// [`SMALL_ROOT_SLOTS`] directory slots and which is faster than the small layout only once its
/// starts no longer fit a few cache lines per bucket.
pub const SMALL_MAP_EXTENTS: usize = 256;

/// Segments (extents or gaps between them) per leaf: with 32-bit interior bounds, six fit in
/// one 64-byte cache line with their values when a value is at most 4 bytes.
const SEGMENTS_PER_LEAF: usize = 6;

/// Root directory slots per leaf, at most (rounding the bucket width to a power of two leaves
/// between half this and this). Four keep most buckets down to two leaves even where extent
/// sizes vary widely, which keeps lookups off the sub-directories and their unpredictable
/// branches, for at most 16 bytes of directory per 64-byte leaf.
const ROOT_SLOTS_PER_LEAF: usize = 4;

/// Root directory slots, at least: 16 KiB that a small (hot) map can afford, so that its
/// buckets are fine enough for few lookups to take a sub-directory (a branch that depends on
/// the key). Also keeps the bucket width below 2^64.
const SMALL_ROOT_SLOTS: usize = 4096;

/// A sub-directory over a bucket that meets `n` leaves gets `2^(ceil_log2(n) + 1)` slots, so
/// that its own buckets meet at most two leaves, mostly.
const SUBDIR_EXTRA_BITS: u32 = 1;

/// Tag bit of a directory slot that names a sub-directory instead of a leaf.
const NODE_TAG: u32 = 1 << 31;

/// Where the root directory starts in the slots. Slot 0 is a sub-directory header with one
/// child (slot 1), which keys that already reached their leaf go through harmlessly, so that
/// [`RmapIndex::get_batch`] can take every key down one level without a branch per key.
const ROOT_START: usize = 2;

/// Leaves [`TrieIndex::locate`] counts in line; wider windows, up to [`WINDOW`], are counted
/// out of line.
const NARROW_WINDOW: usize = 4;

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

/// One cache line of the trie's leaf level: up to six consecutive segments of the key space,
/// `first..fence`. Segment 0 starts at `first`, segment `i > 0` at `first + interior[i - 1]`,
/// and each ends where the next starts, the last (`last`) at `fence`. A segment is an extent
/// (its bit set in `extent_mask`, value in `values[i]`) or a gap. Interior bounds past the
/// last segment are `u32::MAX`; the builder ends a leaf early rather than store an interior
/// bound 2^32 or more past `first`.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Leaf<V> {
    first: u64,
    fence: u64,
    interior: [u32; SEGMENTS_PER_LEAF - 1],
    last: u8,
    extent_mask: u8,
    values: [V; SEGMENTS_PER_LEAF],
}

impl<V: Copy> Leaf<V> {
    /// The segment of this leaf that holds `lba`, and whether it is an extent. The caller
    /// guarantees `first <= lba < fence`. Counting instead of searching keeps it branch-free;
    /// the clamp to `last` covers a long last segment whose offsets pass `u32::MAX`.
    #[inline(always)]
    fn segment_of(&self, lba: u64) -> (usize, bool) {
        // Wrapping: `get_batch` also runs keys outside the span through leaf 0, and drops them.
        let offset = lba.wrapping_sub(self.first);
        let passed: usize = self.interior.iter().map(|&bound| usize::from(u64::from(bound) <= offset)).sum();
        let segment = passed.min(usize::from(self.last));
        (segment, (self.extent_mask >> segment) & 1 != 0)
    }

    /// The bounds of segment `segment`.
    #[inline(always)]
    fn range_of(&self, segment: usize) -> Range<u64> {
        let start_offset = if segment == 0 { 0 } else { self.interior[segment.saturating_sub(1)] };
        let end = if segment == usize::from(self.last) {
            self.fence
        } else {
            self.first + u64::from(self.interior[segment.min(SEGMENTS_PER_LEAF - 2)])
        };
        self.first + u64::from(start_offset)..end
    }
}

/// Immutable predecessor index over an extent map's boundaries, built once per mapping
/// snapshot (the control path publishes snapshots by pointer swap; the fast path only reads).
///
/// Two layouts behind one interface. Maps of at most [`SMALL_MAP_EXTENTS`] extents search
/// their extent starts directly under a small directory (see the `small` module), which is
/// cheap to build and takes few instructions per lookup while it all sits in L1. Larger maps
/// get a compressed radix trie over packed 64-byte leaves, which keeps a lookup to about one
/// cache miss however large the map (two where the front directory sends it to the root).
#[derive(Clone)]
pub struct RmapIndex<V: Copy> {
    layout: Layout<V>,
    extent_count: usize,
}

#[derive(Clone, Debug)]
enum Layout<V: Copy> {
    Small(SmallIndex<V>),
    Trie(TrieIndex<V>),
}

impl<V: Copy> fmt::Debug for RmapIndex<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.layout {
            Layout::Small(small) => f
                .debug_struct("RmapIndex")
                .field("extents", &self.extent_count)
                .field("layout", &"small")
                .field("slots", &small.slot_count())
                .field("crowded_buckets", &small.crowded_buckets())
                .finish(),
            Layout::Trie(trie) => f
                .debug_struct("RmapIndex")
                .field("extents", &self.extent_count)
                .field("layout", &"trie")
                .field("lowest", &trie.lowest)
                .field("span", &trie.span)
                .field("front_shift", &trie.front.shift())
                .field("front_buckets", &trie.front.buckets())
                .field("front_escapes", &trie.front.escapes())
                .field("root_shift", &trie.root_shift)
                .field("slots", &trie.slots.len())
                .field("sub_directories", &trie.sub_directories)
                .field("leaves", &trie.leaves.len().saturating_sub(WINDOW - 1))
                .finish(),
        }
    }
}

impl<V: Copy> RmapIndex<V> {
    /// Builds the index. `extents` must be sorted by start, non-overlapping, half-open ranges
    /// `[start, end)` with `end > start`; gaps between extents, and everything before the
    /// first and after the last, are misses (the fast path caches only part of an Rmap).
    pub fn build(extents: &[(Range<u64>, V)]) -> Result<Self, IndexError> {
        validate(extents)?;
        let layout = if extents.len() <= SMALL_MAP_EXTENTS {
            Layout::Small(SmallIndex::build(extents))
        } else {
            Layout::Trie(TrieIndex::build(extents)?)
        };
        Ok(RmapIndex { layout, extent_count: extents.len() })
    }

    /// Number of extents.
    pub fn len(&self) -> usize {
        self.extent_count
    }

    /// Whether the index holds no extent (every lookup misses).
    pub fn is_empty(&self) -> bool {
        self.extent_count == 0
    }

    /// Whether the index uses the small-map layout (at most [`SMALL_MAP_EXTENTS`] extents).
    pub fn is_small(&self) -> bool {
        matches!(self.layout, Layout::Small(_))
    }

    /// Heap bytes of the lookup structure (directory, leaves or starts, values).
    pub fn memory_bytes(&self) -> usize {
        match &self.layout {
            Layout::Small(small) => small.memory_bytes(),
            Layout::Trie(trie) => trie.memory_bytes(),
        }
    }

    /// The extent holding `lba`, with its value.
    #[inline(always)]
    pub fn get(&self, lba: u64) -> Option<(Range<u64>, V)> {
        match &self.layout {
            Layout::Small(small) => small.get(lba),
            Layout::Trie(trie) => trie.get(lba),
        }
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
    /// following one another. A small map is in cache, and answers key by key.
    pub fn get_batch(&self, lbas: &[u64], out: &mut [Option<V>]) {
        match &self.layout {
            Layout::Small(small) => {
                for (value, &lba) in out.iter_mut().zip(lbas) {
                    *value = small.value(lba);
                }
            }
            Layout::Trie(trie) => trie.get_batch(lbas, out),
        }
    }
}

/// The layout of [`RmapIndex`] for maps of more than [`SMALL_MAP_EXTENTS`] extents.
///
/// The mapped span (first extent start to last extent end) is cut into segments, one per
/// extent and one per gap between extents, packed six to a 64-byte leaf in key order. Keys
/// are offsets from the lowest mapped LBA; the root directory splits the span into about one
/// bucket per leaf, and a slot names the leaf holding its bucket's first offset. The build
/// guarantees that a bucket meets at most two leaves, so a lookup reads that leaf and the next
/// one together (adjacent lines, one memory round trip) and picks by the first leaf's fence.
/// Where more leaves crowd into one bucket the slot names a sub-directory over it instead,
/// recursively; uniform keys rarely go there, since crowds are made of small extents.
///
/// The root directory takes two to four 4-byte slots per leaf (3.7 MiB at 1 Mi extents), too
/// much to stay cached, so [`get`](Self::get) asks the [`FrontDirectory`] first: a byte per bucket of about
/// a leaf's width, naming the bucket's first leaf and how many (up to [`WINDOW`]) it meets.
/// It reads those lines together, so its one miss is theirs. Buckets that meet more leaves
/// escape to the root directory. [`get_batch`](Self::get_batch) goes by the root directory
/// alone: it overlaps the misses of 32 keys, and the front's wider windows measured slower
/// there (more instructions per key in the loop that must hold all the keys' misses).
#[derive(Clone, Debug)]
struct TrieIndex<V: Copy> {
    /// Lowest mapped LBA: the start of the first extent.
    lowest: u64,
    /// Mapped span: end of the last extent minus `lowest`; zero for an empty index.
    span: u64,
    /// Per bucket of the span, the leaves that meet it; see [`FrontDirectory`].
    front: FrontDirectory,
    /// Bucket width of the root directory, as a shift.
    root_shift: u32,
    /// A do-nothing sub-directory (see [`ROOT_START`]), the root directory, then the
    /// sub-directories: each a header slot (child shift in the low byte, child index bits
    /// above it) followed by its children.
    slots: Vec<u32>,
    sub_directories: usize,
    /// Packed leaves, plus copies of the last one so that a window from any leaf exists.
    leaves: Vec<Leaf<V>>,
}

impl<V: Copy> TrieIndex<V> {
    /// Builds the trie over extents that [`validate`] accepted, at least one.
    fn build(extents: &[(Range<u64>, V)]) -> Result<Self, IndexError> {
        let (Some(first), Some(last)) = (extents.first(), extents.last()) else {
            unreachable!("small maps, the empty one included, take the small layout")
        };
        let too_many = IndexError::TooManyExtents { count: extents.len() };
        if extents.len() >= (NODE_TAG as usize) / 4 {
            return Err(too_many);
        }
        let lowest = first.0.start;
        let span = last.0.end - lowest;
        let mut leaves = Segments::of(extents).into_leaves(first.1);
        let leaf_firsts: Vec<u64> = leaves.iter().map(|leaf| leaf.first).collect();
        let last_leaf = leaves[leaves.len() - 1];
        leaves.extend([last_leaf; WINDOW - 1]);
        let front = FrontDirectory::build(&leaf_firsts, lowest, span);
        let root_target = (leaf_firsts.len() * ROOT_SLOTS_PER_LEAF).max(SMALL_ROOT_SLOTS) as u64;
        let mut root_shift = 0;
        while (span - 1) >> root_shift >= root_target {
            root_shift += 1;
        }
        // Rounding the bucket width to a power of two leaves between half the target and it.
        let root_len = ((span - 1) >> root_shift) + 1;
        let mut directory = DirectoryBuilder {
            leaf_firsts: &leaf_firsts,
            lowest,
            span,
            cursor: 0,
            slots: vec![0; ROOT_START + root_len as usize],
            sub_directories: 0,
        };
        directory.fill(ROOT_START, root_len, 0, root_shift)?;
        if directory.slots.len() >= NODE_TAG as usize {
            return Err(too_many);
        }
        Ok(TrieIndex {
            lowest,
            span,
            front,
            root_shift,
            slots: directory.slots,
            sub_directories: directory.sub_directories,
            leaves,
        })
    }

    /// Heap bytes of the lookup structure (directories and leaves).
    fn memory_bytes(&self) -> usize {
        self.slots.len() * size_of::<u32>()
            + self.leaves.len() * size_of::<Leaf<V>>()
            + self.front.memory_bytes()
    }

    /// The extent holding `lba`, with its value.
    #[inline(always)]
    fn get(&self, lba: u64) -> Option<(Range<u64>, V)> {
        let offset = lba.wrapping_sub(self.lowest);
        if offset >= self.span {
            return None;
        }
        let (first, last_in_window) = match self.front.window(offset) {
            Some(window) => window,
            None => (self.escape(offset), 1),
        };
        let (leaf, segment, is_extent) = self.locate(first, last_in_window, lba);
        is_extent.then(|| (leaf.range_of(segment), leaf.values[segment]))
    }

    /// [`RmapIndex::get_batch`] on the trie.
    fn get_batch(&self, lbas: &[u64], out: &mut [Option<V>]) {
        let len = lbas.len().min(out.len());
        for (keys, values) in lbas[..len].chunks(BATCH).zip(out[..len].chunks_mut(BATCH)) {
            self.get_group(keys, values);
        }
    }

    /// [`get_batch`](Self::get_batch) for at most [`BATCH`] keys of a non-empty index.
    ///
    /// Each trie level for every key before the next level for any, and no branch on loaded
    /// data per key: the loads of one level do not depend on each other, so the core keeps
    /// them all in flight, and no mispredicted branch waiting on a miss throws them away.
    #[inline(always)]
    fn get_group(&self, lbas: &[u64], out: &mut [Option<V>]) {
        let mut offsets = [0u64; BATCH];
        let mut slots = [0u32; BATCH];
        // Keys outside the span go straight to leaf 0; their answer is dropped at the end.
        for ((offset, slot), &lba) in offsets.iter_mut().zip(slots.iter_mut()).zip(lbas) {
            *offset = lba.wrapping_sub(self.lowest);
            let in_span = *offset < self.span;
            let root_slot =
                self.slots[ROOT_START + if in_span { *offset >> self.root_shift } else { 0 } as usize];
            *slot = if in_span { root_slot } else { 0 };
        }
        // One branch per level for the whole group, taken only where extents crowd.
        while slots.iter().any(|&slot| slot & NODE_TAG != 0) {
            for (slot, &offset) in slots.iter_mut().zip(&offsets) {
                let is_sub_directory = *slot & NODE_TAG != 0;
                let child = self.descend(if is_sub_directory { *slot } else { NODE_TAG }, offset);
                *slot = if is_sub_directory { child } else { *slot };
            }
        }
        // Software prefetch: a short loop that loads one word of both leaves of every key,
        // so all their lines are in flight at once; the search below then hits L1. A longer
        // loop body would fit fewer keys' misses in the core's reorder window.
        let mut touched = 0u64;
        for &slot in &slots {
            let pair = &self.leaves[slot as usize..slot as usize + 2];
            touched ^= pair[0].first ^ pair[1].first;
        }
        core::hint::black_box(touched);
        for (((&slot, &offset), &lba), value) in slots.iter().zip(&offsets).zip(lbas).zip(out.iter_mut()) {
            let (leaf, segment, is_extent) = self.locate(slot as usize, 1, lba);
            let found = leaf.values[segment];
            *value = ((offset < self.span) & is_extent).then_some(found);
        }
    }

    /// The first of the two leaves for `offset` by the root directory, for keys whose front
    /// bucket escaped: out of [`get`](Self::get), which is inlined into callers and should
    /// stay small. A branch per sub-directory level: cheaper than going through the
    /// do-nothing header every time, as `get_batch` does, when the directory is in cache.
    #[cold]
    #[inline(never)]
    fn escape(&self, offset: u64) -> usize {
        self.leaf_of(self.slots[ROOT_START + (offset >> self.root_shift) as usize], offset)
    }

    /// Follows sub-directories from `slot` down to the first of the two leaves for `offset`.
    #[inline(always)]
    fn leaf_of(&self, mut slot: u32, offset: u64) -> usize {
        while slot & NODE_TAG != 0 {
            slot = self.descend_out_of_line(slot, offset);
        }
        slot as usize
    }

    /// [`descend`](Self::descend) kept out of [`get`](Self::get), which is inlined into
    /// callers and should stay small: crowded buckets are the exception.
    #[cold]
    #[inline(never)]
    fn descend_out_of_line(&self, slot: u32, offset: u64) -> u32 {
        self.descend(slot, offset)
    }

    /// One sub-directory level: the child of sub-directory `slot` that holds `offset`.
    #[inline(always)]
    fn descend(&self, slot: u32, offset: u64) -> u32 {
        let header_at = (slot & !NODE_TAG) as usize;
        let header = self.slots[header_at];
        let child = (offset >> (header & 0x3f)) & ((1u64 << (header >> 8)) - 1);
        self.slots[header_at + 1 + child as usize]
    }

    /// Of leaves `first..=first + last_in_window` (at most [`WINDOW`]), the leaf holding `lba`,
    /// the segment and whether it is an extent. Counting, not branching, keeps the choice a data
    /// dependency rather than a branch the core might mispredict while a miss is outstanding.
    /// Windows of more than [`NARROW_WINDOW`] leaves (3% of the benchmark's buckets) take a
    /// wider count out of line, so that the common case stays a few instructions.
    #[inline(always)]
    fn locate(&self, first: usize, last_in_window: usize, lba: u64) -> (&Leaf<V>, usize, bool) {
        if last_in_window >= NARROW_WINDOW {
            return self.locate_wide(first, last_in_window, lba);
        }
        self.locate_in::<NARROW_WINDOW>(first, last_in_window, lba)
    }

    /// [`locate`](Self::locate) for windows wider than [`NARROW_WINDOW`].
    #[cold]
    #[inline(never)]
    fn locate_wide(&self, first: usize, last_in_window: usize, lba: u64) -> (&Leaf<V>, usize, bool) {
        self.locate_in::<WINDOW>(first, last_in_window, lba)
    }

    /// [`locate`](Self::locate) over a window of `N` leaves.
    #[inline(always)]
    fn locate_in<const N: usize>(
        &self,
        first: usize,
        last_in_window: usize,
        lba: u64,
    ) -> (&Leaf<V>, usize, bool) {
        let window: &[Leaf<V>; N] = self.leaves[first..][..N].try_into().expect("a window of leaves");
        // Packed leaves: each starts at the fence of the one before, so the first leaf's fence
        // says the same as the second's start; asking it reads every line of the window, so
        // their misses overlap. Indices clamped to the bucket's last leaf read it again rather
        // than fetch a line that cannot hold the key, and the clamp on the count undoes what
        // such repeats add. The copies of the last leaf that end the array answer like it.
        let later: usize = (2..N).map(|k| usize::from(lba >= window[k.min(last_in_window)].first)).sum();
        let leaf = &window[(usize::from(lba >= window[0].fence) + later).min(last_in_window)];
        let (segment, is_extent) = leaf.segment_of(lba);
        (leaf, segment, is_extent)
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

    /// The segments packed into leaves, greedily in key order. `filler` stands in for the
    /// value of gaps and unused slots; it is never returned.
    fn into_leaves(self, filler: V) -> Vec<Leaf<V>> {
        let mut leaves = Vec::with_capacity(self.starts.len() / SEGMENTS_PER_LEAF + 2);
        let mut first = 0;
        while first < self.starts.len() {
            let end = self.leaf_end(first);
            let mut leaf = Leaf {
                first: self.starts[first],
                fence: self.start_or_end(end),
                interior: [u32::MAX; SEGMENTS_PER_LEAF - 1],
                last: (end - first - 1) as u8,
                extent_mask: 0,
                values: [filler; SEGMENTS_PER_LEAF],
            };
            for (i, segment) in (first..end).enumerate() {
                if let Some(bound) = i.checked_sub(1) {
                    leaf.interior[bound] = (self.starts[segment] - leaf.first) as u32;
                }
                leaf.values[i] = self.values[segment];
                leaf.extent_mask |= u8::from(self.is_extent[segment]) << i;
            }
            leaves.push(leaf);
            first = end;
        }
        leaves
    }

    /// Start of segment `i`, or the end of the span past the last one.
    fn start_or_end(&self, i: usize) -> u64 {
        self.starts.get(i).copied().unwrap_or(self.end)
    }

    /// The segment after the last one a leaf starting at segment `first` can hold: at most
    /// [`SEGMENTS_PER_LEAF`], all starting less than 2^32 after `first`.
    fn leaf_end(&self, first: usize) -> usize {
        let limit = self.starts.len().min(first + SEGMENTS_PER_LEAF);
        (first + 1..limit)
            .find(|&i| self.starts[i] - self.starts[first] > u64::from(u32::MAX))
            .unwrap_or(limit)
    }
}

/// Fills the directory depth-first in key order, so buckets meet leaves in increasing order.
struct DirectoryBuilder<'a> {
    /// The first LBA of each leaf.
    leaf_firsts: &'a [u64],
    lowest: u64,
    span: u64,
    /// The last leaf starting at or before the bucket being filled; only moves forward.
    cursor: usize,
    slots: Vec<u32>,
    sub_directories: usize,
}

impl DirectoryBuilder<'_> {
    /// Fills `count` slots from `first_slot`: buckets of `2^shift` offsets from `base`.
    fn fill(&mut self, first_slot: usize, count: u64, base: u64, shift: u32) -> Result<(), IndexError> {
        for bucket in 0..count {
            let bucket_first = base + (bucket << shift);
            // Past the span (the tail of the last root bucket's sub-directory) no key gets
            // here: lookups check the span first. Leaf 0 is as good as any.
            let slot = if bucket_first >= self.span {
                0
            } else {
                let bucket_last = bucket_first.saturating_add((1u64 << shift) - 1).min(self.span - 1);
                self.slot_for(bucket_first, bucket_last, shift)?
            };
            self.slots[first_slot + bucket as usize] = slot;
        }
        Ok(())
    }

    /// The slot for the bucket of offsets `first..=last`: the first of its leaves if it meets
    /// at most two, else a new sub-directory.
    fn slot_for(&mut self, first: u64, last: u64, shift: u32) -> Result<u32, IndexError> {
        let firsts = self.leaf_firsts;
        let (first_lba, last_lba) = (self.lowest + first, self.lowest + last);
        while self.cursor + 1 < firsts.len() && firsts[self.cursor + 1] <= first_lba {
            self.cursor += 1;
        }
        let leaf = self.cursor;
        if firsts.get(leaf + 2).is_none_or(|&third| third > last_lba) {
            return Ok(leaf as u32);
        }
        let crowd = firsts[leaf..].partition_point(|&first| first <= last_lba);
        let bits = (usize::BITS - (crowd - 1).leading_zeros() + SUBDIR_EXTRA_BITS).min(shift);
        let child_shift = shift - bits;
        let header_at = self.slots.len();
        let children = 1usize << bits;
        if header_at + 1 + children >= NODE_TAG as usize {
            return Err(IndexError::TooManyExtents { count: firsts.len() });
        }
        self.slots.resize(header_at + 1 + children, 0);
        self.slots[header_at] = child_shift | (bits << 8);
        self.sub_directories += 1;
        self.fill(header_at + 1, children as u64, first, child_shift)?;
        Ok(NODE_TAG | header_at as u32)
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
        let Layout::Trie(trie) = &skewed.layout else { panic!("1001 extents take the trie") };
        assert!(trie.sub_directories > 0);
        assert!(trie.front.escapes() > 0, "the crowd's front bucket meets far more than WINDOW leaves");
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
    fn front_buckets_escape_where_their_block_runs_past_its_steps() {
        // 6000 one-block extents (a leaf every six blocks), then one extent of 18000 blocks:
        // front buckets of 32 blocks, each meeting six or seven leaves (within the window), so
        // a block of eight buckets meets about 43 leaves, more than its entries can step.
        let mut extents: Vec<(Range<u64>, u32)> =
            (0..6000u32).map(|i| (u64::from(i)..u64::from(i) + 1, i % 16)).collect();
        extents.push((6000..24_000, 16));
        let dense = index(&extents);
        let Layout::Trie(trie) = &dense.layout else { panic!("6001 extents take the trie") };
        assert_eq!(trie.front.shift(), 5);
        assert!(trie.front.escapes() > 0);
        assert!(
            trie.front.escapes() < trie.front.buckets() / 2,
            "buckets early in their block still use the front"
        );
        let lbas: Vec<u64> = (0..24_001).collect();
        let mut out = vec![None; lbas.len()];
        dense.get_batch(&lbas, &mut out);
        for (&lba, value) in lbas.iter().zip(&out) {
            let expected = extents.get(extents.partition_point(|(extent, _)| extent.end <= lba)).cloned();
            let expected = expected.filter(|(extent, _)| extent.contains(&lba));
            assert_eq!(dense.get(lba), expected, "lba {lba}");
            assert_eq!(*value, expected.map(|(_, value)| value), "batch, lba {lba}");
        }
    }

    #[test]
    fn small_maps_take_the_small_layout_and_search_their_crowds() {
        // A hundred one-block extents, then one huge one: the directory's buckets are far
        // wider than the crowd, whose bucket must be marked and searched.
        let mut extents: Vec<(Range<u64>, u32)> =
            (0..100u32).map(|i| (u64::from(i) * 2..u64::from(i) * 2 + 1, i)).collect();
        extents.push((1 << 40..1 << 50, 100));
        let skewed = index(&extents);
        let Layout::Small(small) = &skewed.layout else { panic!("101 extents take the small layout") };
        assert!(small.crowded_buckets() > 0);
        assert!(small.slot_count() <= 4 * extents.len());
        for (i, (extent, value)) in extents.iter().enumerate() {
            assert_eq!(skewed.get(extent.start), Some((extent.clone(), *value)), "extent {i}");
            assert_eq!(skewed.get(extent.end - 1), Some((extent.clone(), *value)), "extent {i}");
            assert_eq!(skewed.get(extent.end), None, "after extent {i}");
        }
        let lbas: Vec<u64> = (0..300).chain([(1 << 40) - 1, 1 << 45, (1 << 50) - 1, 1 << 50]).collect();
        let mut out = vec![None; lbas.len()];
        skewed.get_batch(&lbas, &mut out);
        for (&lba, value) in lbas.iter().zip(&out) {
            assert_eq!(*value, skewed.get(lba).map(|(_, v)| v), "lba {lba}");
        }
    }

    #[test]
    fn small_and_trie_layouts_meet_at_the_threshold() {
        let extents: Vec<(Range<u64>, u32)> =
            (0..=SMALL_MAP_EXTENTS as u64).map(|i| (i * 10..i * 10 + 7, (i % 16) as u32)).collect();
        let small = index(&extents[..SMALL_MAP_EXTENTS]);
        let trie = index(&extents);
        assert!(small.is_small());
        assert!(!trie.is_small());
        for lba in 0..SMALL_MAP_EXTENTS as u64 * 10 {
            assert_eq!(small.get(lba), trie.get(lba), "lba {lba}");
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
        assert_eq!(size_of::<Leaf<u16>>(), 64);
        assert_eq!(size_of::<Leaf<u8>>(), 64);
    }
}
