//! The integrity oracle: a shadow of what every volume must contain, built from the writes
//! the hosts issued and the times they were acknowledged. Every block a read returns must be
//! a write that was not yet superseded when the read started (the last acknowledged one, or
//! any write in flight during the read: seed 003's rule for concurrent mirror reads).

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};

use crate::engine::IntMap;
pub use crate::report::Violation;
use crate::workload::{BlockContent, decode_blocks};

/// The write id of a block nobody wrote: it reads as zeros.
pub const NEVER_WRITTEN: u64 = 0;

/// One write of one block, as the oracle remembers it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct BlockWrite {
    id: u64,
    submitted: u64,
    /// When the host got its status, and whether it was good.
    completed: Option<(u64, bool)>,
}

/// Writes a block's history holds without another allocation: usually the last one, and
/// the next while it is in flight.
const INLINE_WRITES: usize = 2;

/// The writes of one block a read may still return, oldest first.
#[derive(Clone, Debug, Default)]
struct History {
    inline: [BlockWrite; INLINE_WRITES],
    /// Writes in `inline`, while `spilled` is empty.
    len: u8,
    /// Every write, while there are more than fit inline.
    spilled: Vec<BlockWrite>,
}

impl History {
    #[cfg(test)]
    fn from_writes(writes: &[BlockWrite]) -> History {
        let mut history = History::default();
        for w in writes {
            history.push(*w);
        }
        history
    }

    fn as_slice(&self) -> &[BlockWrite] {
        if self.spilled.is_empty() { &self.inline[..usize::from(self.len)] } else { &self.spilled }
    }

    fn as_mut_slice(&mut self) -> &mut [BlockWrite] {
        if self.spilled.is_empty() { &mut self.inline[..usize::from(self.len)] } else { &mut self.spilled }
    }

    fn push(&mut self, write: BlockWrite) {
        if self.spilled.is_empty() {
            let len = usize::from(self.len);
            if len < INLINE_WRITES {
                self.inline[len] = write;
                self.len += 1;
                return;
            }
            self.spilled.extend_from_slice(&self.inline[..len]);
        }
        self.spilled.push(write);
    }

    /// Keeps the writes `keep` accepts, in order.
    fn retain(&mut self, mut keep: impl FnMut(&BlockWrite) -> bool) {
        if self.spilled.is_empty() {
            let mut kept = 0;
            for i in 0..usize::from(self.len) {
                if keep(&self.inline[i]) {
                    self.inline[kept] = self.inline[i];
                    kept += 1;
                }
            }
            self.len = kept as u8;
        } else {
            self.spilled.retain(|w| keep(w));
            if self.spilled.len() <= INLINE_WRITES {
                let n = self.spilled.len();
                self.inline[..n].copy_from_slice(&self.spilled);
                self.len = n as u8;
                self.spilled.clear();
            }
        }
    }
}

/// Blocks per page of a [`Shadow`].
const SHADOW_PAGE: u64 = 64;

/// A volume's block histories, in pages of consecutive blocks: the blocks of one I/O sit
/// together in memory.
#[derive(Clone, Debug, Default)]
struct Shadow {
    pages: IntMap<u64, Box<[History]>>,
}

impl Shadow {
    /// The history of block `lba` (empty if never written).
    fn get(&self, lba: u64) -> &[BlockWrite] {
        self.pages.get(&(lba / SHADOW_PAGE)).map_or(&[], |page| page[(lba % SHADOW_PAGE) as usize].as_slice())
    }

    /// Calls `f(i, history)` for each block `lba + i` of `lba..lba + blocks`, looking each
    /// page up once rather than each block. Blocks of pages that do not exist are skipped,
    /// unless `create` makes their pages.
    fn for_each_mut(&mut self, lba: u64, blocks: u64, create: bool, mut f: impl FnMut(u64, &mut History)) {
        let end = lba.saturating_add(blocks);
        let mut b = lba;
        while b < end {
            let first = b % SHADOW_PAGE;
            let n = (SHADOW_PAGE - first).min(end - b);
            let page = if create {
                Some(
                    self.pages
                        .entry(b / SHADOW_PAGE)
                        .or_insert_with(|| vec![History::default(); SHADOW_PAGE as usize].into_boxed_slice()),
                )
            } else {
                self.pages.get_mut(&(b / SHADOW_PAGE))
            };
            if let Some(page) = page {
                for (k, history) in page[first as usize..(first + n) as usize].iter_mut().enumerate() {
                    f(b - lba + k as u64, history);
                }
            }
            b += n;
        }
    }
}

/// Reads block histories of a [`Shadow`] in order, looking a page up only when the block
/// is in another page than the last one.
struct ShadowCursor<'a> {
    shadow: &'a Shadow,
    /// The number of the page last looked up and the page (`None` if it does not exist).
    page: Cell<Option<(u64, ShadowPage<'a>)>>,
}

/// A page of a [`Shadow`] as [`ShadowCursor`] remembers it: `None` if it does not exist.
type ShadowPage<'a> = Option<&'a [History]>;

impl<'a> ShadowCursor<'a> {
    fn new(shadow: &'a Shadow) -> ShadowCursor<'a> {
        ShadowCursor { shadow, page: Cell::new(None) }
    }

    /// The history of block `lba` (empty if never written), as [`Shadow::get`].
    fn get(&self, lba: u64) -> &'a [BlockWrite] {
        let number = lba / SHADOW_PAGE;
        let page = match self.page.get() {
            Some((n, page)) if n == number => page,
            _ => {
                let page = self.shadow.pages.get(&number).map(|p| &p[..]);
                self.page.set(Some((number, page)));
                page
            }
        };
        page.map_or(&[], |p| p[(lba % SHADOW_PAGE) as usize].as_slice())
    }
}

/// A volume's block histories as they stood at a snapshot instant.
#[derive(Debug, Clone)]
struct PointInTime {
    volume: String,
    at: u64,
    histories: Shadow,
}

/// The shadow of every volume and the verdict so far.
#[derive(Debug, Default)]
pub struct Oracle {
    volumes: BTreeMap<String, Shadow>,
    /// Start times of reads in flight (for pruning), in order, with their counts. Reads start
    /// at the simulator's current time, so a new one goes at the back: a sorted deque costs
    /// no tree insertion per read. The first entry's count is never zero (see
    /// [`Oracle::read_finished`]); entries behind it may be, until they reach the front.
    reads_in_flight: VecDeque<(u64, u32)>,
    violations: Vec<Violation>,
    violation_count: u64,
    /// Point-in-time images by snapshot name.
    snapshots: BTreeMap<String, PointInTime>,
    reads_checked: u64,
    blocks_checked: u64,
    /// Scratch space for decoded blocks.
    decoded: Vec<BlockContent>,
}

/// Violations kept in full; the rest are only counted.
const KEPT_VIOLATIONS: usize = 64;

impl Oracle {
    /// An empty oracle: every volume reads as zeros.
    pub fn new() -> Oracle {
        Oracle::default()
    }

    /// A host submitted a write of `blocks` blocks at `lba`, stamped with `id`.
    pub fn write_submitted(&mut self, volume: &str, lba: u64, blocks: u64, id: u64, now: u64) {
        if !self.volumes.contains_key(volume) {
            self.volumes.insert(volume.to_string(), Shadow::default());
        }
        let Some(shadow) = self.volumes.get_mut(volume) else { return };
        shadow.for_each_mut(lba, blocks, true, |_, history| {
            history.push(BlockWrite { id, submitted: now, completed: None });
        });
    }

    /// The write `id` completed; `ok` if the host got GOOD status.
    pub fn write_completed(&mut self, volume: &str, lba: u64, blocks: u64, id: u64, now: u64, ok: bool) {
        let horizon = self.reads_in_flight.front().map_or(u64::MAX, |(start, _)| *start).min(now);
        let Some(shadow) = self.volumes.get_mut(volume) else { return };
        shadow.for_each_mut(lba, blocks, false, |_, history| {
            if let Some(w) = history.as_mut_slice().iter_mut().find(|w| w.id == id) {
                w.completed = Some((now, ok));
            }
            prune(history, horizon);
        });
    }

    /// A host submitted a read at `now` (its start bounds what may be pruned).
    pub fn read_submitted(&mut self, now: u64) {
        let reads = &mut self.reads_in_flight;
        match reads.back_mut() {
            Some((last, n)) if *last == now => *n += 1,
            Some((last, _)) if *last > now => {
                // Not the simulator's order (tests may submit in any order): kept sorted.
                let at = reads.partition_point(|(start, _)| *start < now);
                match reads.get_mut(at) {
                    Some((start, n)) if *start == now => *n += 1,
                    _ => reads.insert(at, (now, 1)),
                }
            }
            _ => reads.push_back((now, 1)),
        }
    }

    /// A read submitted at `submitted` completed at `now` with `data` (GOOD status only);
    /// every block is checked.
    #[allow(clippy::too_many_arguments)]
    pub fn read_completed(
        &mut self,
        host: &str,
        volume: &str,
        lba: u64,
        block_size: usize,
        submitted: u64,
        now: u64,
        data: &[u8],
    ) {
        let mut decoded = std::mem::take(&mut self.decoded);
        decode_blocks(data, block_size, lba, &mut decoded);
        self.read_contents_completed(host, volume, lba, submitted, now, &decoded);
        self.decoded = decoded;
    }

    /// [`Oracle::read_completed`] of blocks already decoded (`contents[i]` is block `lba + i`
    /// as [`decode_blocks`] finds it): the simulator's own reads of volume images, kept by
    /// content, need no bytes made to be checked.
    pub fn read_contents_completed(
        &mut self,
        host: &str,
        volume: &str,
        lba: u64,
        submitted: u64,
        now: u64,
        contents: &[BlockContent],
    ) {
        self.read_finished(submitted);
        self.reads_checked += 1;
        let empty = Shadow::default();
        let shadow = ShadowCursor::new(self.volumes.get(volume).unwrap_or(&empty));
        let mut found_violations = Vec::new();
        for (i, content) in contents.iter().enumerate() {
            let b = lba + i as u64;
            self.blocks_checked += 1;
            let history = shadow.get(b);
            let found = match *content {
                BlockContent::Zero => Ok(NEVER_WRITTEN),
                BlockContent::Stamped { write_id } => Ok(write_id),
                BlockContent::Corrupt(reason) => Err(format!("corrupt block: {reason:?}")),
            };
            let ok = matches!(found, Ok(id) if is_valid(history, submitted, now, id));
            if !ok {
                let valid = valid_ids(history, submitted, now);
                found_violations.push(Violation {
                    time_ns: now,
                    host: host.to_string(),
                    volume: volume.to_string(),
                    lba: b,
                    expected: describe(&valid),
                    found: match found {
                        Ok(NEVER_WRITTEN) => "never-written (zeros)".to_string(),
                        Ok(id) => format!("write #{id}"),
                        Err(e) => e,
                    },
                });
            }
        }
        for v in found_violations {
            self.record_violation(v);
        }
    }

    /// A violation found by another check (mirror copies that differ).
    pub fn record_violation(&mut self, violation: Violation) {
        self.violation_count += 1;
        if self.violations.len() < KEPT_VIOLATIONS {
            self.violations.push(violation);
        }
    }

    /// A read ended without data to check (error status, aborted).
    pub fn read_finished(&mut self, submitted: u64) {
        let reads = &mut self.reads_in_flight;
        let at = reads.partition_point(|(start, _)| *start < submitted);
        if let Some((start, n)) = reads.get_mut(at)
            && *start == submitted
            && *n > 0
        {
            *n -= 1;
            while reads.front().is_some_and(|(_, n)| *n == 0) {
                reads.pop_front();
            }
        }
    }

    /// What an image of `volume` must hold at block `lba` once nothing is in flight: the
    /// ids a read started now may return.
    pub fn settled_ids(&self, volume: &str, lba: u64, now: u64) -> Vec<u64> {
        let history = self.volumes.get(volume).map_or(&[][..], |s| s.get(lba));
        valid_ids(history, now, now)
    }

    /// A snapshot of `volume` named `snapshot` was taken at `now`: remember what each block
    /// may hold in it.
    pub fn snapshot_taken(&mut self, volume: &str, snapshot: &str, now: u64) {
        let histories = self.volumes.get(volume).cloned().unwrap_or_default();
        self.snapshots
            .insert(snapshot.to_string(), PointInTime { volume: volume.to_string(), at: now, histories });
    }

    /// Check blocks of a snapshot's image, read at `now` from where the snapshot keeps them:
    /// each must be what its source held at the snapshot instant.
    pub fn check_snapshot(&mut self, snapshot: &str, lba: u64, block_size: usize, data: &[u8], now: u64) {
        let mut decoded = Vec::new();
        decode_blocks(data, block_size, lba, &mut decoded);
        self.check_snapshot_contents(snapshot, lba, &decoded, now);
    }

    /// [`Oracle::check_snapshot`] of blocks already decoded (`contents[i]` is block `lba + i`
    /// as [`decode_blocks`] finds it), as the simulator reads images kept by content.
    pub fn check_snapshot_contents(&mut self, snapshot: &str, lba: u64, contents: &[BlockContent], now: u64) {
        let Some(PointInTime { at, histories, .. }) = self.snapshots.get(snapshot) else { return };
        let at = *at;
        let mut found_violations = Vec::new();
        for (i, &content) in contents.iter().enumerate() {
            let b = lba + i as u64;
            self.blocks_checked += 1;
            let history = histories.get(b);
            let valid = valid_ids(history, at, at);
            let found = match content {
                BlockContent::Zero => Ok(NEVER_WRITTEN),
                BlockContent::Stamped { write_id } => Ok(write_id),
                BlockContent::Corrupt(reason) => Err(format!("corrupt block: {reason:?}")),
            };
            if !matches!(found, Ok(id) if valid.contains(&id)) {
                found_violations.push(Violation {
                    time_ns: now,
                    host: "-".to_string(),
                    volume: snapshot.to_string(),
                    lba: b,
                    expected: format!("the source's block at the snapshot instant: {}", describe(&valid)),
                    found: match found {
                        Ok(NEVER_WRITTEN) => "never-written (zeros)".to_string(),
                        Ok(id) => format!("write #{id}"),
                        Err(e) => e,
                    },
                });
            }
        }
        for v in found_violations {
            self.record_violation(v);
        }
    }

    /// Drop a point-in-time image no longer needed.
    pub fn forget_snapshot(&mut self, snapshot: &str) {
        self.snapshots.remove(snapshot);
    }

    /// Snapshots taken, with their volume and instant.
    pub fn snapshots(&self) -> Vec<(String, String, u64)> {
        self.snapshots.iter().map(|(name, p)| (name.clone(), p.volume.clone(), p.at)).collect()
    }

    /// Violations kept (the first ones).
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Every violation found.
    pub fn violation_count(&self) -> u64 {
        self.violation_count
    }

    /// Reads checked.
    pub fn reads_checked(&self) -> u64 {
        self.reads_checked
    }

    /// Blocks checked.
    pub fn blocks_checked(&self) -> u64 {
        self.blocks_checked
    }
}

/// The ids a read over `[start, end]` may return for a block with this history: every write
/// submitted before the read ended that no write acknowledged before the read started has
/// superseded. A superseding write is one submitted after the other completed.
fn valid_ids(history: &[BlockWrite], start: u64, end: u64) -> Vec<u64> {
    let latest = latest_superseding_submission(history, start);
    let mut valid: Vec<u64> = Vec::new();
    if latest.is_none() {
        valid.push(NEVER_WRITTEN);
    }
    valid.extend(history.iter().filter(|w| w.submitted < end && !superseded(w, latest)).map(|w| w.id));
    valid
}

/// Whether `valid_ids(history, start, end)` contains `id`, without building the list.
fn is_valid(history: &[BlockWrite], start: u64, end: u64, id: u64) -> bool {
    let latest = latest_superseding_submission(history, start);
    (id == NEVER_WRITTEN && latest.is_none())
        || history.iter().any(|w| w.id == id && w.submitted < end && !superseded(w, latest))
}

/// The latest submission time among the writes acknowledged good before `start`: they have
/// superseded the zeros and every write completed before they were submitted. `None` when
/// there is none.
fn latest_superseding_submission(history: &[BlockWrite], start: u64) -> Option<u64> {
    history.iter().filter(|w| matches!(w.completed, Some((t, true)) if t < start)).map(|w| w.submitted).max()
}

/// Whether some write acknowledged before the read started (the latest submitted of which
/// was submitted at `latest`) was submitted after `w` completed.
fn superseded(w: &BlockWrite, latest: Option<u64>) -> bool {
    match (w.completed, latest) {
        (Some((done, _)), Some(latest)) => latest > done,
        _ => false,
    }
}

/// Drop writes no read starting at or after `horizon` could return.
fn prune(history: &mut History, horizon: u64) {
    if history.as_slice().len() < 2 {
        return;
    }
    let latest = latest_superseding_submission(history.as_slice(), horizon);
    history.retain(|w| !superseded(w, latest));
}

fn describe(ids: &[u64]) -> String {
    let names: Vec<String> = ids
        .iter()
        .map(|id| if *id == NEVER_WRITTEN { "never-written".to_string() } else { format!("write #{id}") })
        .collect();
    if names.is_empty() { "nothing (no valid value)".to_string() } else { names.join(" or ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: u64, submitted: u64, completed: Option<(u64, bool)>) -> BlockWrite {
        BlockWrite { id, submitted, completed }
    }

    #[test]
    fn a_read_after_an_acknowledged_write_must_see_it() {
        let h = [w(1, 10, Some((20, true)))];
        assert_eq!(valid_ids(&h, 25, 30), vec![1]);
        // A read overlapping the write may see either.
        assert_eq!(valid_ids(&h, 15, 30), vec![0, 1]);
        // A read that ended before the write was submitted sees only zeros.
        assert_eq!(valid_ids(&h, 1, 5), vec![0]);
    }

    #[test]
    fn concurrent_writes_leave_either_value_until_a_later_write() {
        let h = [w(1, 10, Some((30, true))), w(2, 12, Some((25, true)))];
        assert_eq!(valid_ids(&h, 40, 50), vec![1, 2]);
        let h3 = [w(1, 10, Some((30, true))), w(2, 12, Some((25, true))), w(3, 35, Some((38, true)))];
        assert_eq!(valid_ids(&h3, 40, 50), vec![3]);
    }

    #[test]
    fn a_failed_write_may_or_may_not_have_landed() {
        let h = [w(1, 10, Some((20, true))), w(2, 30, Some((40, false)))];
        assert_eq!(valid_ids(&h, 50, 60), vec![1, 2]);
    }

    /// The rules as first written: quadratic, obviously right.
    fn valid_ids_reference(history: &[BlockWrite], start: u64, end: u64) -> Vec<u64> {
        let superseded = |w: &BlockWrite| -> bool {
            let done = w.completed.map(|(t, _)| t);
            history.iter().any(|w2| {
                matches!(w2.completed, Some((t2, true)) if t2 < start)
                    && done.is_some_and(|d| w2.submitted > d)
            })
        };
        let zero_superseded = history.iter().any(|w2| matches!(w2.completed, Some((t2, true)) if t2 < start));
        let mut valid: Vec<u64> = Vec::new();
        if !zero_superseded {
            valid.push(NEVER_WRITTEN);
        }
        valid.extend(history.iter().filter(|w| w.submitted < end && !superseded(w)).map(|w| w.id));
        valid
    }

    fn prune_reference(history: &mut Vec<BlockWrite>, horizon: u64) {
        if history.len() < 2 {
            return;
        }
        let snapshot = history.clone();
        history.retain(|w| {
            let Some((done, _)) = w.completed else { return true };
            !snapshot
                .iter()
                .any(|w2| matches!(w2.completed, Some((t2, true)) if t2 < horizon) && w2.submitted > done)
        });
    }

    proptest::proptest! {
        #[test]
        fn the_linear_rules_are_the_quadratic_ones(
            writes in proptest::collection::vec((0u64..50, proptest::option::of((0u64..60, proptest::bool::ANY))), 0..8),
            start in 0u64..70,
            length in 0u64..20,
            probe in 0u64..10,
        ) {
            let history: Vec<BlockWrite> = writes
                .iter()
                .enumerate()
                .map(|(i, (submitted, completed))| {
                    w(i as u64 + 1, *submitted, completed.map(|(d, ok)| (submitted + d, ok)))
                })
                .collect();
            let end = start + length;
            let valid = valid_ids(&history, start, end);
            proptest::prop_assert_eq!(&valid, &valid_ids_reference(&history, start, end));
            proptest::prop_assert_eq!(is_valid(&history, start, end, probe), valid.contains(&probe));
            let (mut a, mut b) = (History::from_writes(&history), history);
            prune(&mut a, start);
            prune_reference(&mut b, start);
            proptest::prop_assert_eq!(a.as_slice(), &b[..]);
            // Growing and shrinking across the inline size keeps the order.
            let mut c = History::from_writes(&b);
            c.push(w(99, 1, None));
            c.retain(|x| x.id % 2 == 1);
            let expected: Vec<BlockWrite> = b.iter().copied().chain([w(99, 1, None)]).filter(|x| x.id % 2 == 1).collect();
            proptest::prop_assert_eq!(c.as_slice(), &expected[..]);
        }
    }

    #[test]
    fn the_earliest_read_in_flight_is_known_in_any_order() {
        // Against a multiset of start times: reads started mostly in time order, sometimes
        // out of it, finished in any order, some finished twice or never started.
        let mut rng = crate::engine::SimRng::new(3);
        let mut oracle = Oracle::new();
        let mut model: BTreeMap<u64, u32> = BTreeMap::new();
        let mut now = 0;
        for _ in 0..5_000 {
            if rng.below(2) == 0 {
                now += rng.below(3);
                let start = if rng.below(8) == 0 { now.saturating_sub(rng.below(20)) } else { now };
                oracle.read_submitted(start);
                *model.entry(start).or_default() += 1;
            } else {
                let start = now.saturating_sub(rng.below(40));
                oracle.read_finished(start);
                if let Some(n) = model.get_mut(&start) {
                    *n -= 1;
                    if *n == 0 {
                        model.remove(&start);
                    }
                }
            }
            let earliest = oracle.reads_in_flight.front().map(|(start, _)| *start);
            assert_eq!(earliest, model.keys().next().copied());
            assert!(oracle.reads_in_flight.front().is_none_or(|(_, n)| *n > 0));
        }
    }

    #[test]
    fn pruning_keeps_what_a_read_in_flight_may_return() {
        let mut h = History::from_writes(&[w(1, 10, Some((20, true))), w(2, 30, Some((40, true)))]);
        prune(&mut h, 35);
        assert_eq!(h.as_slice().len(), 2, "a read started at 35 may still return write 1");
        prune(&mut h, 50);
        assert_eq!(h.as_slice(), &[w(2, 30, Some((40, true)))]);
    }
}
