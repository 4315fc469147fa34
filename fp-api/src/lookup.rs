//! Placeholder Rmap index (binary search) until the fast lookup structure lands; same API.

use core::ops::Range;

/// The answer to "does [lba, lba+blocks) fit in one extent".
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fit<V> {
    /// Inside one extent.
    Inside {
        /// Extent start.
        start: u64,
        /// Extent end.
        end: u64,
        /// Extent value.
        value: V,
    },
    /// Starts in this extent, runs past its end.
    Spans {
        /// Extent start.
        start: u64,
        /// Extent end.
        end: u64,
        /// Extent value.
        value: V,
    },
    /// The first block is not mapped.
    Miss,
}

/// Sorted extents searched by binary search.
#[derive(Clone, Debug)]
pub struct RmapIndex<V: Copy> {
    extents: Vec<(Range<u64>, V)>,
}

impl<V: Copy> RmapIndex<V> {
    /// Build from sorted, non-overlapping extents.
    pub fn build(extents: &[(Range<u64>, V)]) -> Self {
        RmapIndex { extents: extents.to_vec() }
    }

    /// The extent holding `lba`.
    pub fn get(&self, lba: u64) -> Option<(Range<u64>, V)> {
        let i = self.extents.partition_point(|(r, _)| r.start <= lba);
        let (r, v) = self.extents.get(i.checked_sub(1)?)?;
        (lba < r.end).then(|| (r.clone(), *v))
    }
}
