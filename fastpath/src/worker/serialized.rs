//! The mirror and journal writes a worker has in flight, by segment block range (steps 118
//! and 120 of seed 003 Fig. 7): whether a new one overlaps any, and the set kept as writes
//! start, finish or are aborted by their hosts. Counting filters over (segment, chunk), a fine
//! one for short writes and a coarse one for long, answer nearly every "no" without looking
//! at the writes, sequential streams of short writes included.

use dve_fp_api::ids::VsegId;

/// The two filters' chunks, in blocks, as shifts: 8 blocks (a 4 KiB write of 512-byte
/// blocks is one chunk, so a sequential stream's next write finds its chunk empty) and 1024.
const FINE_SHIFT: u32 = 3;
const COARSE_SHIFT: u32 = 10;

/// Most chunks of a filter a write is counted in: a write over more fine chunks is counted
/// in the coarse filter, and one over more coarse chunks is "wide" (while one is in flight
/// every question looks at the writes).
const MAX_CHUNKS: u64 = 16;

/// Buckets per filter (a power of two).
const BUCKETS: usize = 1024;

/// No entry (in [`SerializedWrites::at`]).
const NONE: u32 = u32::MAX;

/// One write in flight.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Entry {
    vseg: VsegId,
    start: u64,
    end: u64,
    /// The upstream slot that owns it; `None` once its host aborted it and its legs may
    /// still land.
    owner: Option<u32>,
}

/// Serialized writes in flight, keyed by the upstream exchange slot that started each.
#[derive(Clone, Debug)]
pub(super) struct SerializedWrites {
    entries: Vec<Entry>,
    /// Per upstream slot, its entry's place in `entries` ([`NONE`]: none).
    at: Vec<u32>,
    /// Short writes counted per hashed (segment, fine chunk).
    fine: Box<[u32]>,
    /// Long writes counted per hashed (segment, coarse chunk).
    coarse: Box<[u32]>,
    /// Writes in each filter, and writes too wide for either.
    short: u32,
    long: u32,
    wide: u32,
}

/// The chunks of `1 << shift` blocks `[start, end)` touches, if few enough to count.
/// (A half-open range: `RangeInclusive`'s iteration costs more than the one chunk of nearly
/// every write.)
#[inline]
fn chunks(start: u64, end: u64, shift: u32) -> Option<std::ops::Range<u64>> {
    let (first, last) = (start >> shift, end.saturating_sub(1) >> shift);
    (end > start && last - first < MAX_CHUNKS).then_some(first..last + 1)
}

#[inline]
fn bucket(vseg: VsegId, chunk: u64) -> usize {
    let key = (u64::from(vseg.0) << 40) ^ chunk;
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % BUCKETS
}

/// Whether every bucket of `filter` that `[start, end)` of `vseg` falls in is empty (`false`
/// if the range is too long to look at bucket by bucket).
#[inline]
fn clear_in(filter: &[u32], vseg: VsegId, start: u64, end: u64, shift: u32) -> bool {
    chunks(start, end, shift).is_some_and(|mut c| c.all(|c| filter[bucket(vseg, c)] == 0))
}

impl SerializedWrites {
    /// An empty set for an upstream table of `slots` slots.
    pub(super) fn new(slots: usize) -> SerializedWrites {
        SerializedWrites {
            entries: Vec::with_capacity(64),
            at: vec![NONE; slots],
            fine: vec![0; BUCKETS].into_boxed_slice(),
            coarse: vec![0; BUCKETS].into_boxed_slice(),
            short: 0,
            long: 0,
            wide: 0,
        }
    }

    /// Whether a write in flight overlaps blocks `[start, end)` of `vseg`.
    #[inline]
    pub(super) fn overlaps(&self, vseg: VsegId, start: u64, end: u64) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        if self.wide == 0
            && (self.short == 0 || clear_in(&self.fine, vseg, start, end, FINE_SHIFT))
            && (self.long == 0 || clear_in(&self.coarse, vseg, start, end, COARSE_SHIFT))
        {
            return false;
        }
        self.entries.iter().any(|e| e.vseg == vseg && e.start < end && start < e.end)
    }

    /// Upstream slot `slot` started a write of blocks `[start, end)` of `vseg`. A slot has one
    /// write at most: a second replaces the first.
    pub(super) fn insert(&mut self, slot: usize, vseg: VsegId, start: u64, end: u64) {
        let Some(&at) = self.at.get(slot) else { return };
        if at != NONE {
            self.remove(slot);
        }
        self.count(vseg, start, end, true);
        self.at[slot] = self.entries.len() as u32;
        self.entries.push(Entry { vseg, start, end, owner: Some(slot as u32) });
    }

    /// Slot `slot`'s write is done (or never landed anywhere): it leaves the set.
    #[inline]
    pub(super) fn remove(&mut self, slot: usize) {
        let Some(at) = self.at.get_mut(slot) else { return };
        if *at == NONE {
            return;
        }
        let place = std::mem::replace(at, NONE) as usize;
        self.take(place);
    }

    /// Slot `slot`'s host aborted its write, whose legs may still land: it stays in the set,
    /// owned by no slot (the slot may serve another exchange), until
    /// [`SerializedWrites::remove_aborted`].
    pub(super) fn detach(&mut self, slot: usize) {
        let Some(at) = self.at.get_mut(slot) else { return };
        if let Some(entry) = self.entries.get_mut(*at as usize) {
            entry.owner = None;
        }
        *at = NONE;
    }

    /// An aborted write of blocks `[start, end)` of `vseg` has settled: it leaves the set.
    pub(super) fn remove_aborted(&mut self, vseg: VsegId, start: u64, end: u64) {
        let wanted = Entry { vseg, start, end, owner: None };
        if let Some(place) = self.entries.iter().position(|e| *e == wanted) {
            self.take(place);
        }
    }

    /// Writes in the set.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn take(&mut self, place: usize) {
        if place >= self.entries.len() {
            return;
        }
        let entry = self.entries.swap_remove(place);
        self.count(entry.vseg, entry.start, entry.end, false);
        // The last entry moved into the gap: its slot learns where it went.
        if let Some(moved) = self.entries.get(place)
            && let Some(slot) = moved.owner
            && let Some(at) = self.at.get_mut(slot as usize)
        {
            *at = place as u32;
        }
    }

    fn count(&mut self, vseg: VsegId, start: u64, end: u64, up: bool) {
        // Wrapping: a count that went wrong can only be too high, which makes the filter send
        // questions to the writes, never answer "no" for a write in flight.
        let delta = if up { 1 } else { u32::MAX };
        let step = |n: &mut u32| *n = n.wrapping_add(delta);
        if let Some(chunks) = chunks(start, end, FINE_SHIFT) {
            step(&mut self.short);
            for c in chunks {
                step(&mut self.fine[bucket(vseg, c)]);
            }
        } else if let Some(chunks) = chunks(start, end, COARSE_SHIFT) {
            step(&mut self.long);
            for c in chunks {
                step(&mut self.coarse[bucket(vseg, c)]);
            }
        } else {
            // Too long for either (or empty, which overlaps nothing and is never asked for:
            // it only sends questions to the writes while it is in flight).
            step(&mut self.wide);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Insert { slot: usize, vseg: u32, start: u64, len: u64 },
        Remove { slot: usize },
        Detach { slot: usize },
        RemoveAborted { pick: usize },
        Ask { vseg: u32, start: u64, len: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        let slot = 0usize..12;
        // Ranges from one block to far past the filter's widest, near each other.
        let len = prop_oneof![1u64..16, 1u64..300, 1u64..40_000];
        prop_oneof![
            (slot.clone(), 0u32..3, prop_oneof![0u64..300, 0u64..50_000], len.clone())
                .prop_map(|(slot, vseg, start, len)| Op::Insert { slot, vseg, start, len }),
            slot.clone().prop_map(|slot| Op::Remove { slot }),
            slot.prop_map(|slot| Op::Detach { slot }),
            (0usize..8).prop_map(|pick| Op::RemoveAborted { pick }),
            (0u32..3, prop_oneof![0u64..300, 0u64..50_000], len).prop_map(|(vseg, start, len)| Op::Ask {
                vseg,
                start,
                len
            }),
        ]
    }

    proptest! {
        /// Against a plain list of (segment, start, end, owner): every question gets the
        /// list's answer, through any order of writes starting, ending and being aborted.
        #[test]
        fn overlaps_answers_as_a_plain_list_does(ops in proptest::collection::vec(op(), 1..200)) {
            let mut set = SerializedWrites::new(12);
            let mut model: Vec<(u32, u64, u64, Option<usize>)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert { slot, vseg, start, len } => {
                        model.retain(|e| e.3 != Some(slot));
                        model.push((vseg, start, start + len, Some(slot)));
                        set.insert(slot, VsegId(vseg), start, start + len);
                    }
                    Op::Remove { slot } => {
                        model.retain(|e| e.3 != Some(slot));
                        set.remove(slot);
                    }
                    Op::Detach { slot } => {
                        if let Some(e) = model.iter_mut().find(|e| e.3 == Some(slot)) {
                            e.3 = None;
                        }
                        set.detach(slot);
                    }
                    Op::RemoveAborted { pick } => {
                        let aborted: Vec<usize> =
                            (0..model.len()).filter(|&i| model[i].3.is_none()).collect();
                        if let Some(&i) = aborted.get(pick % aborted.len().max(1)) {
                            let (vseg, start, end, _) = model.remove(i);
                            set.remove_aborted(VsegId(vseg), start, end);
                        }
                    }
                    Op::Ask { vseg, start, len } => {
                        let end = start + len;
                        let expected = model.iter().any(|e| e.0 == vseg && e.1 < end && start < e.2);
                        prop_assert_eq!(set.overlaps(VsegId(vseg), start, end), expected);
                    }
                }
                prop_assert_eq!(set.len(), model.len());
                // Every range in flight is found, through the filter.
                for &(vseg, start, end, _) in &model {
                    prop_assert!(set.overlaps(VsegId(vseg), start, end));
                }
            }
            // Emptied, the filter holds nothing.
            for slot in 0..12 {
                set.remove(slot);
            }
            for (vseg, start, end, _) in model.iter().filter(|e| e.3.is_none()).copied().collect::<Vec<_>>() {
                set.remove_aborted(VsegId(vseg), start, end);
            }
            prop_assert_eq!(set.len(), 0);
            prop_assert!(set.fine.iter().chain(set.coarse.iter()).all(|&n| n == 0));
            prop_assert_eq!((set.short, set.long, set.wide), (0, 0, 0));
        }
    }

    #[test]
    fn a_slot_out_of_range_changes_nothing() {
        let mut set = SerializedWrites::new(2);
        set.insert(5, VsegId(1), 0, 8);
        set.remove(5);
        set.detach(5);
        assert_eq!(set.len(), 0);
        assert!(!set.overlaps(VsegId(1), 0, 8));
    }
}
