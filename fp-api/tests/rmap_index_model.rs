//! `RmapIndex` against a plain `BTreeMap` model: random extent sets (one-block and huge
//! extents, gaps, crowds of tiny extents beside huge ones, keys up to `u64::MAX`), probed at
//! random keys and at every extent's edges with `get`, `fit` and `get_batch`. Sizes range up
//! to 3000 extents, a second property stays near the small-map threshold
//! ([`SMALL_MAP_EXTENTS`]), on both sides of it, where the index switches layout, and a third
//! draws dense trie-sized maps, where the trie's front directory fills and escapes.

use std::collections::BTreeMap;
use std::ops::Range;

use dve_fp_api::lookup::{Fit, IndexError, RmapIndex, SMALL_MAP_EXTENTS};
use proptest::prelude::*;

/// The reference: extent start to (end, value).
struct Model(BTreeMap<u64, (u64, u16)>);

impl Model {
    fn get(&self, lba: u64) -> Option<(Range<u64>, u16)> {
        let (&start, &(end, value)) = self.0.range(..=lba).next_back()?;
        (lba < end).then_some((start..end, value))
    }

    fn fit(&self, lba: u64, blocks: u64) -> Fit<u16> {
        match self.get(lba) {
            None => Fit::Miss,
            Some((extent, value)) if lba.checked_add(blocks).is_some_and(|end| end <= extent.end) => {
                Fit::Inside { start: extent.start, end: extent.end, value }
            }
            Some((extent, value)) => Fit::Spans { start: extent.start, end: extent.end, value },
        }
    }
}

fn gap() -> impl Strategy<Value = u64> {
    prop_oneof![
        300 => Just(0u64),
        200 => 1u64..16,
        200 => 1u64..100_000,
        1 => 1u64..(1 << 40),
    ]
}

fn length() -> impl Strategy<Value = u64> {
    prop_oneof![
        300 => Just(1u64),
        300 => 1u64..16,
        300 => 1u64..70_000,
        10 => 1u64..(1 << 44),
        1 => (1u64 << 60)..(1 << 62),
    ]
}

fn base() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..1000,
        1 => any::<u64>(),
        1 => (u64::MAX - 10_000_000)..=u64::MAX,
    ]
}

/// Sorted, disjoint extents laid from `base`, cut short where the next one would pass
/// `u64::MAX` (an extent may end exactly at `u64::MAX`).
fn extents() -> impl Strategy<Value = Vec<(Range<u64>, u16)>> {
    extents_of(0..3000)
}

/// As [`extents`], with small counts: mostly few extents (the fault path's case), and counts
/// on both sides of [`SMALL_MAP_EXTENTS`].
fn small_extents() -> impl Strategy<Value = Vec<(Range<u64>, u16)>> {
    prop_oneof![
        2 => extents_of(0..8),
        2 => extents_of(8..SMALL_MAP_EXTENTS - 8),
        1 => extents_of(SMALL_MAP_EXTENTS - 8..SMALL_MAP_EXTENTS + 8),
    ]
}

/// Trie-sized sets of mostly tiny extents with a few long ones: the trie's front directory
/// then has buckets meeting one leaf, several, or more than it can name (escapes), and blocks
/// of buckets whose leaves run past the steps an entry holds.
fn dense_extents() -> impl Strategy<Value = Vec<(Range<u64>, u16)>> {
    let gap = prop_oneof![8 => Just(0u64), 1 => 1u64..8];
    let length = prop_oneof![60 => 1u64..4, 3 => 4u64..64, 1 => 64u64..20_000];
    (base(), prop::collection::vec((gap, length, 0u16..16), SMALL_MAP_EXTENTS + 1..4000))
        .prop_map(|(base, steps)| lay_out(base, steps))
}

fn extents_of(count: Range<usize>) -> impl Strategy<Value = Vec<(Range<u64>, u16)>> {
    (base(), prop::collection::vec((gap(), length(), 0u16..16), count))
        .prop_map(|(base, steps)| lay_out(base, steps))
}

/// Extents laid from `base` by (gap before, length, value) steps, cut short where the next one
/// would pass `u64::MAX`.
fn lay_out(base: u64, steps: Vec<(u64, u64, u16)>) -> Vec<(Range<u64>, u16)> {
    let mut cursor = base;
    let mut extents = Vec::with_capacity(steps.len());
    for (gap, length, value) in steps {
        let Some(start) = cursor.checked_add(gap) else { break };
        let Some(end) = start.checked_add(length) else { break };
        extents.push((start..end, value));
        cursor = end;
    }
    extents
}

/// Random keys, mostly inside the mapped span, and both sides of every extent edge.
fn probes(extents: &[(Range<u64>, u16)], seeds: &[u64]) -> Vec<u64> {
    let mut keys = vec![0, 1, u64::MAX - 1, u64::MAX];
    if let (Some(first), Some(last)) = (extents.first(), extents.last()) {
        let span = last.0.end - first.0.start;
        keys.extend(seeds.iter().map(|seed| first.0.start + seed % span));
    }
    keys.extend(seeds.iter().copied());
    for (extent, _) in extents {
        keys.extend(
            [extent.start.checked_sub(1), Some(extent.start), Some(extent.end - 1), Some(extent.end)]
                .into_iter()
                .flatten(),
        );
    }
    keys
}

/// `get`, `fit` and `get_batch` of an index over `extents` agree with the model at every probe.
fn check_against_model(extents: &[(Range<u64>, u16)], seeds: &[u64]) -> Result<(), TestCaseError> {
    let index = RmapIndex::build(extents).expect("generated extents are valid");
    let model = Model(extents.iter().map(|(extent, value)| (extent.start, (extent.end, *value))).collect());
    prop_assert_eq!(index.len(), extents.len());
    prop_assert_eq!(index.is_empty(), extents.is_empty());
    prop_assert_eq!(index.is_small(), extents.len() <= SMALL_MAP_EXTENTS);

    let keys = probes(extents, seeds);
    for &lba in &keys {
        let expected = model.get(lba);
        prop_assert_eq!(index.get(lba), expected.clone(), "get({})", lba);
        let mut block_counts = vec![1, 2, 4096, u64::MAX, seeds[(lba % 64) as usize] % 100_000 + 1];
        if let Some((extent, _)) = &expected {
            block_counts.extend([extent.end - lba, extent.end - lba + 1]);
        }
        for blocks in block_counts {
            prop_assert_eq!(index.fit(lba, blocks), model.fit(lba, blocks), "fit({}, {})", lba, blocks);
        }
    }

    let mut batch = vec![Some(u16::MAX); keys.len()];
    index.get_batch(&keys, &mut batch);
    for (&lba, value) in keys.iter().zip(&batch) {
        prop_assert_eq!(*value, model.get(lba).map(|(_, value)| value), "get_batch at {}", lba);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn index_agrees_with_btreemap(extents in extents(), seeds in prop::collection::vec(any::<u64>(), 64)) {
        check_against_model(&extents, &seeds)?;
    }

    #[test]
    fn small_index_agrees_with_btreemap(extents in small_extents(), seeds in prop::collection::vec(any::<u64>(), 64)) {
        check_against_model(&extents, &seeds)?;
    }

    #[test]
    fn dense_index_agrees_with_btreemap(extents in dense_extents(), seeds in prop::collection::vec(any::<u64>(), 64)) {
        check_against_model(&extents, &seeds)?;
    }

    #[test]
    fn build_rejects_unsorted_or_overlapping_extents(extents in extents(), pick in any::<prop::sample::Index>(), shift in 1u64..1000) {
        prop_assume!(extents.len() >= 2);
        let i = pick.index(extents.len() - 1) + 1;
        let mut broken = extents.clone();
        // Pull extent i back so it starts inside, or before, extent i - 1.
        let before = broken[i - 1].0.clone();
        let new_start = before.end.saturating_sub(shift).max(before.start.saturating_sub(shift));
        broken[i].0.start = new_start.min(broken[i].0.end - 1);
        prop_assume!(broken[i].0.start < before.end);
        let error = RmapIndex::build(&broken).unwrap_err();
        prop_assert!(
            matches!(error, IndexError::Overlapping { index, .. } | IndexError::Unsorted { index, .. } if index == i),
            "{:?}", error
        );
    }
}
