//! Property test: random sequences of set-range, clear, split, coalesce and lookup on an
//! `ExtentMap` agree at every step with a plain reference model, a `BTreeMap` from block to
//! value plus the set of extent boundaries, including the extent-count overflow errors.

use std::collections::{BTreeMap, BTreeSet};

use dve_fp_api::Error;
use dve_fp_api::lookup::Fit;
use dve_fp_api::mapping::ExtentMap;
use proptest::prelude::*;

/// Blocks in the modelled space: small, so ranges collide often.
const SPACE: u64 = 96;

/// The obvious model: a value per mapped block, and the blocks where an extent starts
/// although its left neighbour has the same value (explicit splits).
#[derive(Clone, Debug, Default)]
struct Reference {
    blocks: BTreeMap<u64, u8>,
    boundaries: BTreeSet<u64>,
}

impl Reference {
    /// Extents as maximal runs: a run breaks at a gap, a value change or a boundary.
    fn extents(&self) -> Vec<(u64, u64, u8)> {
        let mut out: Vec<(u64, u64, u8)> = Vec::new();
        for (&block, &value) in &self.blocks {
            match out.last_mut() {
                Some(last) if last.1 == block && last.2 == value && !self.boundaries.contains(&block) => {
                    last.1 += 1
                }
                _ => out.push((block, block + 1, value)),
            }
        }
        out
    }

    /// The written run replaces whatever it covers, and explicit boundaries at or inside its
    /// edges go: the new run coalesces with equal neighbours on either side.
    fn set(&mut self, start: u64, end: u64, value: u8) {
        for b in start..end {
            self.blocks.insert(b, value);
        }
        self.boundaries.retain(|&b| b < start || b > end);
    }

    fn clear(&mut self, start: u64, end: u64) {
        for b in start..end {
            self.blocks.remove(&b);
        }
        // Boundaries at the cleared edges no longer separate anything: the gap does.
        self.boundaries.retain(|&b| b < start || b > end);
    }

    fn split(&mut self, at: u64) {
        let inside = self.blocks.contains_key(&at)
            && at.checked_sub(1).and_then(|b| self.blocks.get(&b)) == self.blocks.get(&at);
        if inside {
            self.boundaries.insert(at);
        }
    }

    fn coalesce(&mut self) {
        self.boundaries.clear();
    }
}

#[derive(Clone, Debug)]
enum Op {
    Set(u64, u64, u8),
    Clear(u64, u64),
    Split(u64),
    Coalesce,
    Lookup(u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    let range = (0..SPACE, 1..=SPACE).prop_map(|(s, len)| (s, (s + len).min(SPACE)));
    prop_oneof![
        5 => (range.clone(), 0u8..4).prop_map(|((s, e), v)| Op::Set(s, e, v)),
        1 => range.clone().prop_map(|(s, e)| Op::Clear(s, e)),
        2 => (0..SPACE).prop_map(Op::Split),
        1 => Just(Op::Coalesce),
        3 => (0..SPACE, 1..20u64).prop_map(|(s, n)| Op::Lookup(s, n)),
    ]
}

fn actual(map: &ExtentMap<u8>) -> Vec<(u64, u64, u8)> {
    map.iter().map(|e| (e.start, e.end, e.value)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn extent_map_agrees_with_the_block_model(limit in 1usize..12, ops in prop::collection::vec(op(), 1..60)) {
        let mut map = ExtentMap::new(limit);
        let mut model = Reference::default();
        for op in ops {
            let before = actual(&map);
            let mut next = model.clone();
            let result = match op {
                Op::Set(s, e, v) => { next.set(s, e, v); map.set(s..e, v) }
                Op::Clear(s, e) => { next.clear(s, e); map.clear(s..e) }
                Op::Split(at) => { next.split(at); map.split_at(at).map(|_| ()) }
                Op::Coalesce => { next.coalesce(); map.coalesce(); Ok(()) }
                Op::Lookup(s, n) => {
                    let expected = match model.extents().into_iter().find(|&(a, b, _)| a <= s && s < b) {
                        None => Fit::Miss,
                        Some((a, b, v)) if s + n <= b => Fit::Inside { start: a, end: b, value: v },
                        Some((a, b, v)) => Fit::Spans { start: a, end: b, value: v },
                    };
                    prop_assert_eq!(map.fit(s, n), expected);
                    Ok(())
                }
            };
            let needed = next.extents().len();
            if needed > limit {
                prop_assert_eq!(result, Err(Error::ExtentLimit { limit, needed }), "{:?}", op);
                prop_assert_eq!(actual(&map), before, "a refused change must change nothing");
            } else {
                prop_assert_eq!(result, Ok(()), "{:?}", op);
                model = next;
                prop_assert_eq!(actual(&map), model.extents(), "after {:?}", op);
            }
            for block in 0..SPACE {
                let expected = model.blocks.get(&block).copied();
                prop_assert_eq!(map.get(block).map(|e| e.value), expected);
            }
        }
    }
}
