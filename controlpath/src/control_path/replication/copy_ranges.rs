//! The blocks a replica must still take from the primary by copying: the whole volume for a
//! baseline, the blocks written while the replication was paused for a catch-up. Disjoint
//! ranges, merged as they are added, handed out a transfer at a time from the front.

use std::collections::BTreeMap;
use std::ops::Range;

/// Disjoint, non-adjacent block ranges (start to end) with their total.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct CopyRanges {
    ranges: BTreeMap<u64, u64>,
    blocks: u64,
}

impl CopyRanges {
    /// Every block of a volume of `blocks` blocks.
    pub(super) fn whole(blocks: u64) -> CopyRanges {
        let mut ranges = CopyRanges::default();
        ranges.add(0..blocks);
        ranges
    }

    /// Add `range`, merged with the ranges it overlaps or touches.
    pub(super) fn add(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        let (mut start, mut end) = (range.start, range.end);
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back()
            && e >= start
        {
            start = s;
            end = end.max(e);
            self.remove(s);
        }
        while let Some((&s, &e)) = self.ranges.range(start..).next() {
            if s > end {
                break;
            }
            end = end.max(e);
            self.remove(s);
        }
        self.ranges.insert(start, end);
        self.blocks += end - start;
    }

    fn remove(&mut self, start: u64) {
        if let Some(end) = self.ranges.remove(&start) {
            self.blocks -= end - start;
        }
    }

    /// The first `max` blocks (or fewer) of the first range, taken out.
    pub(super) fn take_front(&mut self, max: u64) -> Option<Range<u64>> {
        let (&start, &end) = self.ranges.iter().next()?;
        let taken = start..end.min(start.saturating_add(max.max(1)));
        self.remove(start);
        if taken.end < end {
            self.ranges.insert(taken.end, end);
            self.blocks += end - taken.end;
        }
        Some(taken)
    }

    /// Blocks still to copy.
    pub(super) fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Nothing left to copy.
    pub(super) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Every block below `blocks` is still to copy (adding any range of them changes nothing).
    pub(super) fn covers_all(&self, blocks: u64) -> bool {
        self.ranges.get(&0).is_some_and(|&end| end >= blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Clone, Debug)]
    enum Step {
        Add(u64, u64),
        Take(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0u64..200, 0u64..40).prop_map(|(s, n)| Step::Add(s, s + n)),
            1 => (0u64..50).prop_map(Step::Take),
        ]
    }

    proptest! {
        /// Held to a set of blocks: the same blocks remain, ranges stay disjoint and apart,
        /// and a take hands out the lowest blocks, contiguous, at most as many as asked (one
        /// at least).
        #[test]
        fn ranges_behave_as_a_set_of_blocks(steps in proptest::collection::vec(step(), 0..60)) {
            let mut ranges = CopyRanges::default();
            let mut model: BTreeSet<u64> = BTreeSet::new();
            for s in steps {
                match s {
                    Step::Add(start, end) => {
                        ranges.add(start..end);
                        model.extend(start..end);
                    }
                    Step::Take(max) => {
                        let taken = ranges.take_front(max);
                        let Some(&first) = model.iter().next() else {
                            prop_assert!(taken.is_none());
                            continue;
                        };
                        let taken = taken.unwrap();
                        prop_assert_eq!(taken.start, first);
                        prop_assert!(!taken.is_empty() && taken.end - taken.start <= max.max(1));
                        for b in taken {
                            prop_assert!(model.remove(&b), "block {} handed out but not pending", b);
                        }
                    }
                }
                let blocks: BTreeSet<u64> = ranges.ranges.iter().flat_map(|(&s, &e)| s..e).collect();
                prop_assert_eq!(&blocks, &model);
                prop_assert_eq!(ranges.blocks(), model.len() as u64);
                prop_assert_eq!(ranges.is_empty(), model.is_empty());
                let mut last_end = None;
                for (&s, &e) in &ranges.ranges {
                    prop_assert!(s < e);
                    prop_assert!(last_end.is_none_or(|l| l < s), "ranges touch or overlap");
                    last_end = Some(e);
                }
                prop_assert_eq!(ranges.covers_all(100), (0..100).all(|b| model.contains(&b)));
            }
        }
    }

    #[test]
    fn a_whole_volume_is_handed_out_in_transfers() {
        let mut ranges = CopyRanges::whole(600);
        assert!(ranges.covers_all(600));
        assert_eq!(ranges.take_front(256), Some(0..256));
        assert!(!ranges.covers_all(600));
        assert_eq!(ranges.take_front(256), Some(256..512));
        assert_eq!(ranges.take_front(256), Some(512..600));
        assert_eq!(ranges.take_front(256), None);
        assert!(CopyRanges::whole(0).is_empty());
    }
}
