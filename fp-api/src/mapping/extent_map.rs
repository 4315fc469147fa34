//! The variable-size extent map behind every Rmap: half-open block ranges with a value each,
//! split when part of an extent changes, coalesced with equal neighbours, and bounded in
//! count. Gaps are unmapped, so the same type serves the control path's complete Rmap and the
//! fast path's partial cache of one.

use core::ops::Range;
use std::collections::BTreeMap;

use crate::error::Error;
use crate::lookup::Fit;

/// One extent: blocks `[start, end)` carry `value`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Extent<V> {
    /// First block.
    pub start: u64,
    /// One past the last block.
    pub end: u64,
    /// The value, e.g. a redirect index.
    pub value: V,
}

impl<V> Extent<V> {
    /// The block range.
    pub fn range(&self) -> Range<u64> {
        self.start..self.end
    }

    /// Number of blocks.
    pub fn blocks(&self) -> u64 {
        self.end - self.start
    }
}

/// A bounded map from block ranges to values. Every mutation either succeeds entirely or
/// returns an error and leaves the map unchanged.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ExtentMap<V> {
    /// Keyed by start block; the slot holds `(end, value)`.
    extents: BTreeMap<u64, (u64, V)>,
    limit: usize,
}

/// What a mutation would do to the map, computed before touching it so that a mutation that
/// would exceed the extent limit changes nothing.
struct SetPlan<V> {
    /// Starts of the extents the range overlaps, in order.
    overlapped: Vec<u64>,
    /// The part of the first overlapped extent left of the range.
    left_piece: Option<Extent<V>>,
    /// The part of the last overlapped extent right of the range.
    right_piece: Option<Extent<V>>,
}

impl<V: Copy + Eq> ExtentMap<V> {
    /// An empty map that holds at most `limit` extents.
    pub fn new(limit: usize) -> ExtentMap<V> {
        ExtentMap { extents: BTreeMap::new(), limit }
    }

    /// The most extents the map may hold.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Number of extents.
    pub fn len(&self) -> usize {
        self.extents.len()
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.extents.is_empty()
    }

    /// The extent holding `block`, if mapped.
    pub fn get(&self, block: u64) -> Option<Extent<V>> {
        let (&start, &(end, value)) = self.extents.range(..=block).next_back()?;
        (block < end).then_some(Extent { start, end, value })
    }

    /// Whether `[start, start + blocks)` lies inside one extent.
    pub fn fit(&self, start: u64, blocks: u64) -> Fit<V> {
        match self.get(start) {
            None => Fit::Miss,
            Some(extent) => match start.checked_add(blocks) {
                Some(end) if blocks > 0 && end <= extent.end => {
                    Fit::Inside { start: extent.start, end: extent.end, value: extent.value }
                }
                _ => Fit::Spans { start: extent.start, end: extent.end, value: extent.value },
            },
        }
    }

    /// Every extent, in block order.
    pub fn iter(&self) -> impl Iterator<Item = Extent<V>> + '_ {
        self.extents.iter().map(|(&start, &(end, value))| Extent { start, end, value })
    }

    /// The extents overlapping `range`, in block order (not clipped to it).
    pub fn overlapping(&self, range: Range<u64>) -> impl Iterator<Item = Extent<V>> + '_ {
        let first = self.get(range.start).map_or(range.start, |e| e.start);
        self.extents
            .range(first..range.end.max(first))
            .map(|(&start, &(end, value))| Extent { start, end, value })
            .filter(move |e| e.end > range.start)
    }

    /// Whether every block of `range` is mapped.
    pub fn covers(&self, range: Range<u64>) -> bool {
        let mut next = range.start;
        for extent in self.overlapping(range.clone()) {
            if extent.start > next {
                return false;
            }
            next = extent.end;
            if next >= range.end {
                return true;
            }
        }
        next >= range.end
    }

    /// Set every block of `range` to `value`, splitting the extents it cuts and coalescing
    /// the result with equal neighbours.
    pub fn set(&mut self, range: Range<u64>, value: V) -> Result<(), Error> {
        check_range(&range)?;
        let plan = self.plan(&range);
        let left = plan.left_piece.map(|p| (p.start, p.value)).or_else(|| self.ending_at(range.start));
        let right = plan.right_piece.map(|p| (p.end, p.value)).or_else(|| self.starting_at(range.end));
        let merge_left = left.filter(|&(_, v)| v == value).map(|(start, _)| start);
        let merge_right = right.filter(|&(_, v)| v == value).map(|(end, _)| end);
        let added = 1 + usize::from(plan.left_piece.is_some()) + usize::from(plan.right_piece.is_some());
        let merged = usize::from(merge_left.is_some()) + usize::from(merge_right.is_some());
        let needed = self.len() - plan.overlapped.len() + added - merged;
        self.check_limit(needed)?;

        self.remove_overlapped(&plan);
        if let (Some(piece), None) = (plan.left_piece, merge_left) {
            self.extents.insert(piece.start, (piece.end, piece.value));
        }
        if let (Some(piece), None) = (plan.right_piece, merge_right) {
            self.extents.insert(piece.start, (piece.end, piece.value));
        }
        let start = match merge_left {
            Some(start) => {
                self.extents.remove(&start);
                start
            }
            None => range.start,
        };
        let end = match merge_right {
            Some(end) => {
                self.extents.remove(&range.end);
                end
            }
            None => range.end,
        };
        self.extents.insert(start, (end, value));
        Ok(())
    }

    /// Unmap every block of `range` (the fast path evicting part of its cache).
    pub fn clear(&mut self, range: Range<u64>) -> Result<(), Error> {
        check_range(&range)?;
        let plan = self.plan(&range);
        let added = usize::from(plan.left_piece.is_some()) + usize::from(plan.right_piece.is_some());
        self.check_limit(self.len() - plan.overlapped.len() + added)?;
        self.remove_overlapped(&plan);
        for piece in [plan.left_piece, plan.right_piece].into_iter().flatten() {
            self.extents.insert(piece.start, (piece.end, piece.value));
        }
        Ok(())
    }

    /// Split the extent holding `block` so that a new extent starts at `block`, keeping its
    /// value. Returns whether a split happened (nothing to do at a boundary or in a gap).
    pub fn split_at(&mut self, block: u64) -> Result<bool, Error> {
        let Some(extent) = self.get(block) else { return Ok(false) };
        if extent.start == block {
            return Ok(false);
        }
        self.check_limit(self.len() + 1)?;
        self.extents.insert(extent.start, (block, extent.value));
        self.extents.insert(block, (extent.end, extent.value));
        Ok(true)
    }

    /// Merge every run of adjacent extents with equal values; returns how many extents went.
    pub fn coalesce(&mut self) -> usize {
        let before = self.len();
        let mut merged: BTreeMap<u64, (u64, V)> = BTreeMap::new();
        let mut open: Option<Extent<V>> = None;
        for extent in self.iter() {
            open = match open {
                Some(run) if run.end == extent.start && run.value == extent.value => {
                    Some(Extent { end: extent.end, ..run })
                }
                Some(run) => {
                    merged.insert(run.start, (run.end, run.value));
                    Some(extent)
                }
                None => Some(extent),
            };
        }
        if let Some(run) = open {
            merged.insert(run.start, (run.end, run.value));
        }
        self.extents = merged;
        before - self.len()
    }

    /// Change the value of every extent whose value is `from` to `to`, without coalescing.
    /// Used when duplicate redirect entries merge.
    pub fn replace_value(&mut self, from: V, to: V) -> usize {
        let mut changed = 0;
        for (_, value) in self.extents.values_mut() {
            if *value == from {
                *value = to;
                changed += 1;
            }
        }
        changed
    }

    /// Number of extents carrying `value`.
    pub fn count_value(&self, value: V) -> usize {
        self.extents.values().filter(|(_, v)| *v == value).count()
    }

    fn check_limit(&self, needed: usize) -> Result<(), Error> {
        if needed > self.limit { Err(Error::ExtentLimit { limit: self.limit, needed }) } else { Ok(()) }
    }

    fn plan(&self, range: &Range<u64>) -> SetPlan<V> {
        let mut plan = SetPlan { overlapped: Vec::new(), left_piece: None, right_piece: None };
        for extent in self.overlapping(range.clone()) {
            if extent.start < range.start {
                plan.left_piece = Some(Extent { end: range.start, ..extent });
            }
            if extent.end > range.end {
                plan.right_piece = Some(Extent { start: range.end, ..extent });
            }
            plan.overlapped.push(extent.start);
        }
        plan
    }

    fn remove_overlapped(&mut self, plan: &SetPlan<V>) {
        for start in &plan.overlapped {
            self.extents.remove(start);
        }
    }

    /// `(start, value)` of the extent whose end is exactly `block`.
    fn ending_at(&self, block: u64) -> Option<(u64, V)> {
        let (&start, &(end, value)) = self.extents.range(..block).next_back()?;
        (end == block).then_some((start, value))
    }

    /// `(end, value)` of the extent starting exactly at `block`.
    fn starting_at(&self, block: u64) -> Option<(u64, V)> {
        self.extents.get(&block).map(|&(end, value)| (end, value))
    }
}

fn check_range(range: &Range<u64>) -> Result<(), Error> {
    if range.start >= range.end {
        Err(Error::EmptyRange { start: range.start, end: range.end })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extents(map: &ExtentMap<u8>) -> Vec<(u64, u64, u8)> {
        map.iter().map(|e| (e.start, e.end, e.value)).collect()
    }

    #[test]
    fn setting_part_of_an_extent_splits_it() {
        let mut map = ExtentMap::new(8);
        map.set(0..100, 0).unwrap();
        map.set(10..20, 1).unwrap();
        assert_eq!(extents(&map), [(0, 10, 0), (10, 20, 1), (20, 100, 0)]);
        map.set(10..20, 0).unwrap();
        assert_eq!(extents(&map), [(0, 100, 0)], "equal neighbours coalesce");
    }

    #[test]
    fn exceeding_the_limit_is_an_error_and_changes_nothing() {
        let mut map = ExtentMap::new(2);
        map.set(0..100, 0).unwrap();
        map.set(0..10, 1).unwrap();
        let before = map.clone();
        assert_eq!(map.set(50..60, 2), Err(Error::ExtentLimit { limit: 2, needed: 4 }));
        assert_eq!(map, before);
        assert_eq!(map.clear(50..60), Err(Error::ExtentLimit { limit: 2, needed: 3 }));
        assert_eq!(map.split_at(70), Err(Error::ExtentLimit { limit: 2, needed: 3 }));
        assert_eq!(map, before);
        map.set(0..10, 0).unwrap();
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn fit_answers_inside_spans_and_miss() {
        let mut map = ExtentMap::new(8);
        map.set(10..20, 7u8).unwrap();
        assert_eq!(map.fit(10, 10), Fit::Inside { start: 10, end: 20, value: 7 });
        assert_eq!(map.fit(15, 6), Fit::Spans { start: 10, end: 20, value: 7 });
        assert_eq!(map.fit(9, 1), Fit::Miss);
        assert_eq!(map.fit(20, 1), Fit::Miss);
        assert_eq!(map.fit(19, u64::MAX), Fit::Spans { start: 10, end: 20, value: 7 });
    }

    #[test]
    fn covers_and_overlapping() {
        let mut map = ExtentMap::new(8);
        map.set(0..10, 1u8).unwrap();
        map.set(10..20, 2).unwrap();
        map.set(30..40, 3).unwrap();
        assert!(map.covers(0..20));
        assert!(map.covers(5..15));
        assert!(!map.covers(5..25));
        assert!(!map.covers(25..35));
        let over: Vec<_> = map.overlapping(5..31).map(|e| e.value).collect();
        assert_eq!(over, [1, 2, 3]);
        assert_eq!(map.overlapping(20..30).count(), 0);
    }

    #[test]
    fn empty_ranges_are_rejected() {
        let mut map = ExtentMap::<u8>::new(8);
        assert_eq!(map.set(5..5, 1), Err(Error::EmptyRange { start: 5, end: 5 }));
        assert!(map.is_empty());
    }
}
