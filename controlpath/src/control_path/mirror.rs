//! Mirrors (seed 003 section 6.5). Side death: revoke the segments, bump the generation, mark
//! the side DEAD and set fault-on-write on every extent, before any failed write's status
//! returns. The first write to each age extent afterwards stamps the live sides' age lists
//! and re-enables fast-path writes there. Fast resync: the returning side is written (not
//! read) in RESYNC while only the age extents whose age differs are copied, one range lock
//! at a time; then it is ALIVE again. A step whose copy lost a frame (a lossy link loses one
//! of a 1 MiB step's thousand frames often) is copied again in smaller pieces under the same
//! lock, after a path test when a leg went unanswered; only a device's error, a failed path
//! test or pieces failing `RESYNC_PIECE_ATTEMPTS` times in a row declare the side dead again.
//!
//! While a snapshot of the volume completes, its tables hold the snapshot's unpushed and
//! pushed states (see `snapshot`): these procedures then change only the side states (and
//! let the snapshot follow them), never the Rmap, and writes stamp ages through the control
//! path. Every write the control path runs on a degraded mirror stamps the ages it covers.
//!
//! A resync is a task in the metadata store: its side and the stale extents found at its
//! start, committed with the RESYNC state, and how many are copied, committed after each
//! step. A restarted engine keeps the side in RESYNC and copies the rest. Age lists are in
//! the store too (`age_records`): made with the DEAD state, stamped before the write they
//! record is dispatched, replaced with the ALIVE state; so a side that died before a restart
//! is still copied only where it is stale. A side with no list is copied whole.

use core::ops::Range;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use dve_fp_api::ids::{DeviceId, EngineId, LvId, VsegId};
use dve_fp_api::io::{HostIo, IoKind};
use dve_fp_api::mapping::{
    Age, AgeList, RedirectEntry, RedirectIndex, SideState, StorageDescriptor, VsegMap,
};

use super::age_records;
use super::block_copy::{CopyFailure, CopyOwner};
use super::multipath::{PathVerdict, PathWaiter};
use super::revocation::AfterRevocation;
use super::{ControlEvent, ControlPath};
use crate::error::Error;
use crate::store::{Batch, Table};
use crate::volume::{DeviceLeg, LayoutSpec};

/// Prefix of resync task keys: `resync/<lv>` is the task, `resync/<lv>/copied` its progress.
pub(super) const TASK_KEY: &[u8] = b"resync/";

/// Delete the task records of `lv`'s resync (its side left the volume).
pub(super) fn delete_resync_task(batch: &mut Batch, lv: LvId) {
    batch.delete(Table::Tasks, task_key(lv)).delete(Table::Tasks, progress_key(lv));
}

fn task_key(lv: LvId) -> Vec<u8> {
    let mut key = TASK_KEY.to_vec();
    key.extend_from_slice(&lv.0.to_be_bytes());
    key
}

fn progress_key(lv: LvId) -> Vec<u8> {
    let mut key = task_key(lv);
    key.extend_from_slice(b"/copied");
    key
}

/// What the metadata store keeps of a resync: the side and the stale extents, in the order
/// they are copied.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct ResyncTask {
    side: usize,
    stale: Vec<(VsegId, Range<u64>)>,
}

/// How many of a resync's stale extents are copied, committed after each step.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct ResyncCopied {
    copied: u64,
}

/// Progress of one resync.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ResyncProgress {
    /// The volume.
    pub lv: LvId,
    /// The returning side.
    pub side: usize,
    /// Stale age extents found when it started.
    pub total: u64,
    /// Copied so far.
    pub copied: u64,
    /// Whether it is paused.
    pub paused: bool,
}

/// A copy step of a resync: one age extent, read from a live side, written to the
/// returning side, under one range lock. It is copied in one piece unless copies lost
/// frames lately; a piece that fails for a lost frame is copied again, smaller.
#[derive(Clone, Debug)]
struct CopyStep {
    /// The revocation holding the range lock.
    lock: u64,
    vseg: VsegId,
    blocks: Range<u64>,
    /// Blocks from the start of `blocks` copied so far.
    done: u64,
    /// The block copy of the current piece, once the range is fenced (none while a path
    /// test decides whether a piece that timed out is copied again).
    copy: Option<(u64, Range<u64>)>,
    /// When the current piece's copy was sent (a path switched since needs no test).
    sent_at: u64,
    /// Pieces that failed in a row, none copied since.
    failures: u32,
    /// The device a leg nobody answered went to, while its path is tested.
    suspect: Option<DeviceId>,
}

/// Pieces of one step that may fail in a row (each for a lost frame or a passing condition,
/// with the path tested after a timeout) before the returning side is declared dead again.
const RESYNC_PIECE_ATTEMPTS: u32 = 8;

/// The smallest piece a failed copy is cut to, in blocks (64 KiB of 512-byte blocks: about
/// seventy frames read and written).
const RESYNC_MIN_PIECE_BLOCKS: u64 = 128;

/// Counters of resync copies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResyncCounters {
    /// Pieces copied (a step copied whole is one).
    pub pieces_copied: u64,
    /// Pieces that failed for a lost frame or a passing condition and were copied again.
    pub pieces_retried: u64,
    /// Steps that kept failing, or met a device's error or a failed device: the returning
    /// side was declared dead again.
    pub steps_failed: u64,
    /// Source sides that failed a copy's read while another live side could take over: the
    /// source was declared dead and the resync went on from the other side.
    pub sources_failed: u64,
}

/// A resync in progress.
#[derive(Clone, Debug)]
struct Resync {
    side: usize,
    stale: VecDeque<(VsegId, Range<u64>)>,
    total: u64,
    copied: u64,
    step: Option<CopyStep>,
    finishing: bool,
    /// Paused by the management API: no new copy step (the one in hand finishes).
    paused: bool,
    /// Blocks a piece is copied in: a whole step (`u64::MAX`) until a copy fails, then a
    /// quarter after each failure (down to `RESYNC_MIN_PIECE_BLOCKS`) and twice as much after
    /// each piece copied, so a lossy link gets pieces it can carry and a clean one whole steps.
    piece_blocks: u64,
}

/// Mirror bookkeeping of the control path.
#[derive(Clone, Debug, Default)]
pub(super) struct MirrorWork {
    /// Sides whose death procedure is running.
    dying: BTreeSet<(LvId, usize)>,
    /// Age lists per segment and side.
    ages: BTreeMap<(VsegId, usize), AgeList>,
    /// The redirect entry extents move to once written after a death (fast-path writes
    /// allowed), per segment.
    written: BTreeMap<VsegId, RedirectIndex>,
    /// Resyncs in progress, per volume.
    resyncs: BTreeMap<LvId, Resync>,
    /// Sides dead whose DEAD state could not be committed yet: their volume's I/O is held.
    unrecorded_deaths: BTreeSet<(LvId, usize)>,
    /// Copy steps of resyncs ended by their side's removal or death: each still holds its
    /// range lock (and may have a copy out) until it ends.
    abandoned: Vec<(LvId, CopyStep)>,
    /// Devices of a volume's sides that answered discovery again while their side was dying
    /// or the volume was busy with another side's death or resync: their sides are
    /// resynchronized when that ends (by device, since a side's index moves when another
    /// side is removed).
    returned: BTreeSet<(LvId, DeviceId)>,
}

impl MirrorWork {
    /// Whether a side of `lv` is dying or resynchronizing.
    pub(super) fn involves(&self, lv: LvId) -> bool {
        self.resyncs.contains_key(&lv)
            || self.dying.iter().any(|(l, _)| *l == lv)
            || self.unrecorded_deaths.iter().any(|(l, _)| *l == lv)
    }

    /// The sides of `lv` whose death procedure is running.
    pub(super) fn dying_sides(&self, lv: LvId) -> Vec<usize> {
        self.dying.iter().filter(|(l, _)| *l == lv).map(|(_, side)| *side).collect()
    }

    /// Forget a deleted volume's segments' ages and written entries.
    pub(super) fn forget_segments(&mut self, segments: &[VsegId]) {
        self.ages.retain(|(seg, _), _| !segments.contains(seg));
        self.written.retain(|seg, _| !segments.contains(seg));
    }

    /// Forget the devices of a deleted volume's sides that came back while it was busy.
    pub(super) fn forget_returns(&mut self, lv: LvId) {
        self.returned.retain(|(l, _)| *l != lv);
    }

    /// Delete the stored age lists of `segments` (in the batch that deletes their volume).
    pub(super) fn delete_stored_ages(&self, batch: &mut Batch, segments: &[VsegId]) {
        for ((seg, side), list) in &self.ages {
            if segments.contains(seg) {
                age_records::delete_list(batch, *seg, *side, list.len());
            }
        }
    }

    /// The age lists a restarted engine loaded, for the segments it has: a list whose
    /// geometry no longer fits its segment is dropped (its side is copied whole).
    pub(super) fn restore_ages(
        &mut self,
        lists: BTreeMap<(VsegId, usize), AgeList>,
        segment_blocks: impl Fn(VsegId) -> Option<u64>,
    ) {
        self.ages = lists
            .into_iter()
            .filter(|((seg, _), list)| {
                segment_blocks(*seg)
                    .is_some_and(|blocks| blocks.div_ceil(list.extent_blocks()) == list.len() as u64)
            })
            .collect();
    }

    /// The side of `lv` being resynchronized, if one is.
    pub(super) fn resyncing_side(&self, lv: LvId) -> Option<usize> {
        self.resyncs.get(&lv).map(|r| r.side)
    }

    /// Whether a copy step of an ended resync of `lv` is still out.
    pub(super) fn abandoned_steps_on(&self, lv: LvId) -> bool {
        self.abandoned.iter().any(|(l, _)| *l == lv)
    }

    /// Side `side` of `lv` (whose segments are `segments`) is removed: its age lists go and
    /// the later sides' lists take the index before theirs (with `still_mirror` false every
    /// list goes), the written entries go with the tables they named, and a resync of the side
    /// ends (its step in hand finishing on its own). Returns whether a resync ended.
    pub(super) fn side_removed(
        &mut self,
        lv: LvId,
        segments: &[VsegId],
        side: usize,
        still_mirror: bool,
    ) -> bool {
        let lists: Vec<((VsegId, usize), AgeList)> = self
            .ages
            .iter()
            .filter(|((seg, _), _)| segments.contains(seg))
            .map(|(k, l)| (*k, l.clone()))
            .collect();
        for ((seg, s), list) in lists {
            self.ages.remove(&(seg, s));
            if still_mirror && s != side {
                self.ages.insert((seg, if s > side { s - 1 } else { s }), list);
            }
        }
        self.written.retain(|seg, _| !segments.contains(seg));
        match self.resyncs.get(&lv) {
            Some(r) if r.side == side => {
                if let Some(r) = self.resyncs.remove(&lv)
                    && let Some(step) = r.step
                {
                    self.abandoned.push((lv, step));
                }
                true
            }
            _ => false,
        }
    }

    /// Put every age list of `segments` into `batch`.
    pub(super) fn put_stored_ages(&self, batch: &mut Batch, segments: &[VsegId]) -> Result<(), Error> {
        for ((seg, side), list) in &self.ages {
            if segments.contains(seg) {
                age_records::put_list(batch, *seg, *side, list)?;
            }
        }
        Ok(())
    }

    /// Make a freshly built table of a degraded mirror fault writes until their age extents
    /// are stamped, if this engine keeps ages for the segment (without, the dead side is
    /// copied whole and nothing is stamped).
    pub(super) fn fault_writes_until_stamped(&mut self, map: &mut VsegMap) {
        let seg = map.descriptor().id;
        if self.ages.range((seg, 0)..=(seg, usize::MAX)).next().is_some() {
            fault_writes_until_stamped(map, &mut self.written);
        }
    }

    #[cfg(test)]
    pub(super) fn insert_ages_for_test(&mut self, seg: VsegId, side: usize, list: AgeList) {
        self.ages.insert((seg, side), list);
    }

    #[cfg(test)]
    pub(super) fn ages_for_test(&self, seg: VsegId, side: usize) -> Option<&AgeList> {
        self.ages.get(&(seg, side))
    }

    #[cfg(test)]
    pub(super) fn ages_for_test_count(&self, seg: VsegId) -> usize {
        self.ages.range((seg, 0)..=(seg, usize::MAX)).count()
    }

    pub(super) fn progress(&self) -> Vec<ResyncProgress> {
        self.resyncs
            .iter()
            .map(|(lv, r)| ResyncProgress {
                lv: *lv,
                side: r.side,
                total: r.total,
                copied: r.copied,
                paused: r.paused,
            })
            .collect()
    }
}

/// Set side `side` to `state` in every mirror entry of a segment, with `generation`.
pub(super) fn set_side_everywhere(map: &mut VsegMap, side: usize, state: SideState, generation: u32) {
    let indexes: Vec<RedirectIndex> = map.redirects().iter().map(|(i, _)| i).collect();
    for index in indexes {
        if let Ok(entry) = map.redirect_mut(index)
            && let StorageDescriptor::Mirror(m) = &mut entry.descriptor
        {
            let _ = m.set_state(side, state);
            m.generation = generation;
        }
    }
}

/// Make every extent of a segment fault on its next write, so that write stamps the live
/// sides' ages; once stamped, an extent moves to the segment's `written` entry (entry 0 with
/// fast-path writes allowed), made here if it does not exist yet.
fn fault_writes_until_stamped(map: &mut VsegMap, written: &mut BTreeMap<VsegId, RedirectIndex>) {
    let seg = *map.descriptor();
    let Some(base) = map.redirects().get(RedirectIndex(0)).cloned() else { return };
    let entry = RedirectEntry { fault_on_write: false, ..base };
    match written.get(&seg.id) {
        Some(i) => {
            if let Ok(e) = map.redirect_mut(*i) {
                *e = entry;
            }
        }
        None => match map.add_redirect(entry) {
            Ok(i) => {
                written.insert(seg.id, i);
            }
            Err(_) => return,
        },
    }
    if let Ok(e) = map.redirect_mut(RedirectIndex(0)) {
        e.fault_on_write = true;
    }
    let _ = map.set_range(0..seg.blocks, RedirectIndex(0));
}

impl ControlPath {
    fn engine_id(&self) -> EngineId {
        EngineId(u16::from(self.config.domain))
    }

    /// The mirror side of `lv` that `device` belongs to.
    pub(super) fn side_of(&self, lv: LvId, device: DeviceId) -> Option<usize> {
        let v = self.volumes.get(&lv)?;
        match &v.record.layout {
            LayoutSpec::Mirror { sides } => sides.iter().position(|d| *d == device),
            LayoutSpec::Raid10 { side_a, side_b, .. } => {
                if side_a.contains(&device) {
                    Some(0)
                } else if side_b.contains(&device) {
                    Some(1)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// A mirror side failed an I/O: run the death procedure unless it is dead or dying. A
    /// snapshot still reading unpushed blocks through its source names the source's side.
    pub(super) fn side_failed(&mut self, lv: LvId, side: usize) {
        let lv = self.reading_through(lv).unwrap_or(lv);
        if self.side_death_unrecorded(lv) {
            return; // Its I/O stays held until the death is recorded.
        }
        let Some(v) = self.volumes.get(&lv) else { return };
        let state = v.record.side_states.get(side).copied();
        let others_alive =
            v.record.side_states.iter().enumerate().any(|(i, s)| i != side && *s == SideState::Alive);
        if state == Some(SideState::Dead) || !others_alive {
            // Already dead, or the last good side (a volume is never left without one):
            // waiting I/O proceeds and fails on its own if the side keeps failing.
            self.resume_after_side_death(lv);
            return;
        }
        if !self.mirror.dying.insert((lv, side)) {
            return;
        }
        if state == Some(SideState::Resync)
            && let Some(r) = self.mirror.resyncs.remove(&lv)
            && let Some(step) = r.step
        {
            // A copy step out holds its range lock until its fence or copy comes back.
            self.mirror.abandoned.push((lv, step));
        }
        let mut segments = self.segments_of(lv);
        // A snapshot reading through the sides stops reading the dead one at the same time.
        if let Some(snapshot) = self.snapshot_over(lv) {
            segments.extend(self.segments_of(snapshot));
        }
        self.revoke_segments(&segments, true, AfterRevocation::SideDeath { lv, side });
    }

    pub(super) fn side_death_revoked(&mut self, lv: LvId, side: usize) {
        self.mirror.dying.remove(&(lv, side));
        let engine = self.engine_id();
        let age_blocks = self.config.age_extent_blocks;
        // Under a snapshot the source's tables hold its pushed and unpushed states, which
        // decide what faults (see `snapshot_follow_sides`); they are not reset here.
        let snapshot = self.snapshot_over(lv);
        let Some(v) = self.volumes.get_mut(&lv) else { return };
        // Sides current until now start an age list at age 0 if they have none. A side
        // already dead or still resynchronizing without one (this engine restarted since)
        // gets none: it is copied whole when it returns.
        let current: Vec<usize> = (0..v.record.side_states.len())
            .filter(|s| v.record.side_states[*s] == SideState::Alive)
            .collect();
        if let Some(s) = v.record.side_states.get_mut(side) {
            *s = SideState::Dead;
        }
        v.record.generation += 1;
        let generation = v.record.generation;
        let mut made = Vec::new();
        for map in &mut v.segments {
            let seg = *map.descriptor();
            set_side_everywhere(map, side, SideState::Dead, generation);
            for s in &current {
                if !self.mirror.ages.contains_key(&(seg.id, *s))
                    && let Ok(list) = AgeList::new(seg.blocks, age_blocks, Age { generation: 0, engine })
                {
                    self.mirror.ages.insert((seg.id, *s), list);
                    made.push((seg.id, *s));
                }
            }
            if snapshot.is_none() {
                fault_writes_until_stamped(map, &mut self.mirror.written);
            }
        }
        // The DEAD state and the lists that will say what the side missed, in one transaction.
        // Until it commits the volume's I/O stays held, and each tick tries again: a restart
        // must not find the side alive after writes it missed were acknowledged.
        if self.record_side_death(lv, &made).is_err() {
            self.counters.failed_commits += 1;
            self.mirror.unrecorded_deaths.insert((lv, side));
            return;
        }
        self.side_death_recorded(lv, side);
    }

    /// Whether a side of `lv` died without its DEAD state committed yet.
    pub(super) fn side_death_unrecorded(&self, lv: LvId) -> bool {
        self.mirror.unrecorded_deaths.iter().any(|(l, _)| *l == lv)
    }

    /// Commit the volume's record (its side states) with the age lists `lists`.
    fn record_side_death(&mut self, lv: LvId, lists: &[(VsegId, usize)]) -> Result<(), Error> {
        let mut batch = self.records(&[], &[lv])?;
        for (seg, s) in lists {
            if let Some(list) = self.mirror.ages.get(&(*seg, *s)) {
                age_records::put_list(&mut batch, *seg, *s, list)?;
            }
        }
        self.commit(batch)
    }

    /// Side deaths whose record could not be committed: try again, with every age list of
    /// the volume (a superset of those made at the death).
    pub(super) fn retry_side_death_records(&mut self) {
        let pending: Vec<(LvId, usize)> = self.mirror.unrecorded_deaths.iter().copied().collect();
        for (lv, side) in pending {
            let segments: Vec<VsegId> = self.segments_of(lv).into_iter().map(|(seg, _)| seg).collect();
            let lists: Vec<(VsegId, usize)> =
                self.mirror.ages.keys().filter(|(seg, _)| segments.contains(seg)).copied().collect();
            if self.record_side_death(lv, &lists).is_err() {
                self.counters.failed_commits += 1;
                continue;
            }
            self.mirror.unrecorded_deaths.remove(&(lv, side));
            self.side_death_recorded(lv, side);
        }
    }

    /// A side's death is recorded: the volume serves again without it.
    fn side_death_recorded(&mut self, lv: LvId, side: usize) {
        self.snapshot_follow_sides(lv);
        self.grant_tables(lv);
        // The side's devices failed: they are used again only once they answer discovery,
        // unless they answered it again while the side was dying.
        for device in self.side_devices(lv, side) {
            if !self.mirror.returned.contains(&(lv, device))
                && let Some(d) = self.devices.get_mut(device)
                && d.online
            {
                d.online = false;
                self.events.push(ControlEvent::DeviceFailed { device });
            }
        }
        self.events.push(ControlEvent::SideDead { lv, side });
        self.resume_after_side_death(lv);
        self.resync_returned_sides(lv);
    }

    /// A write met fault-on-write: on a degraded mirror, stamp the live sides' ages for the
    /// age extents it covers, let the fast path write there again, and run this write.
    pub(super) fn permission_fault(&mut self, io: dve_fp_api::ids::IoTag, request: HostIo) {
        if request.kind == IoKind::Write
            && let Some(lv) = request.lv
        {
            self.stamp_written(lv, request.lba, u64::from(request.blocks));
        }
        self.start_manual(io, request);
    }

    fn stamp_written(&mut self, lv: LvId, lba: u64, blocks: u64) {
        // Not stamped durably: the write is refused when it runs (see `start_manual`).
        let Ok(stamped) = self.stamp_ages(lv, lba, blocks) else { return };
        // Under a snapshot, writes on a degraded mirror keep faulting until it completes: its
        // states, not the age stamps, say which extents take fast-path writes.
        if self.snapshot_over(lv).is_some() {
            return;
        }
        let Some(v) = self.volumes.get_mut(&lv) else { return };
        let mut granted = Vec::new();
        for (vseg, blocks) in stamped {
            let Some(written) = self.mirror.written.get(&vseg).copied() else { continue };
            let Some(map) = v.segment_mut(vseg) else { continue };
            if map.set_range(blocks.clone(), written).is_ok() {
                granted.push((vseg, blocks));
            }
        }
        for (vseg, blocks) in granted {
            self.grant_extents(lv, vseg, blocks);
        }
    }

    /// Whether writes to `lv` must have the live sides' ages stamped: a mirror side is dead.
    pub(super) fn stamps_writes(&self, lv: LvId) -> bool {
        self.volumes.get(&lv).is_some_and(|v| v.record.side_states.contains(&SideState::Dead))
    }

    /// Stamp the live sides' ages of the age extents that a write of `blocks` blocks at `lba`
    /// covers, while a side of `lv` is dead (and this engine keeps ages since it died);
    /// returns those age extents. Every write that reaches the devices without the dead side
    /// is stamped durably before it is dispatched, so its range is copied when the side
    /// returns, after a restart too. If the stamps cannot be committed they are undone and
    /// the write must not be dispatched.
    pub(super) fn stamp_ages(
        &mut self,
        lv: LvId,
        lba: u64,
        blocks: u64,
    ) -> Result<Vec<(VsegId, Range<u64>)>, Error> {
        let engine = self.engine_id();
        if !self.stamps_writes(lv) {
            return Ok(Vec::new());
        }
        let Some(v) = self.volumes.get(&lv) else { return Ok(Vec::new()) };
        let generation = v.record.generation;
        let live: Vec<usize> =
            v.record.side_states.iter().enumerate().filter(|(_, s)| s.writable()).map(|(i, _)| i).collect();
        let mut stamped = Vec::new();
        let mut changed: BTreeSet<(VsegId, usize, usize)> = BTreeSet::new();
        // What each stamp replaced, to undo them if they cannot be committed.
        let mut replaced: Vec<(VsegId, usize, usize, Age)> = Vec::new();
        for (vseg, range, _) in v.pieces(lba, blocks) {
            let Some(seg_blocks) = v.segment(vseg).map(|m| m.descriptor().blocks) else { continue };
            // Any side's list gives the extents' geometry (side 0 may have none).
            let Some(list) = self.mirror.ages.range((vseg, 0)..=(vseg, usize::MAX)).next().map(|(_, l)| l)
            else {
                continue;
            };
            let first = list.extent_of(range.start);
            let last = list.extent_of(range.end.saturating_sub(1).max(range.start));
            let ranges: Vec<(usize, Range<u64>)> =
                (first..=last).map(|i| (i, list.blocks_of(i, seg_blocks))).collect();
            for (i, blocks) in ranges {
                let age = Age { generation, engine };
                for side in &live {
                    if let Some(list) = self.mirror.ages.get_mut(&(vseg, *side))
                        && let Some(old) = list.get(i).filter(|a| *a != age)
                        && list.set(i, age).is_ok()
                    {
                        changed.insert((vseg, *side, age_records::chunk_of(i)));
                        replaced.push((vseg, *side, i, old));
                    }
                }
                stamped.push((vseg, blocks));
            }
        }
        // Durable before the write is dispatched: after a restart the stamp still says the
        // extent must be copied to the dead side.
        if !changed.is_empty() {
            let mut batch = Batch::new();
            let put = changed.iter().try_for_each(|(vseg, side, chunk)| {
                match self.mirror.ages.get(&(*vseg, *side)) {
                    Some(list) => age_records::put_chunks(&mut batch, *vseg, *side, list, [*chunk]),
                    None => Ok(()),
                }
            });
            if let Err(e) = put.map_err(Error::from).and_then(|()| self.commit(batch)) {
                self.counters.failed_commits += 1;
                for (vseg, side, i, old) in replaced {
                    if let Some(list) = self.mirror.ages.get_mut(&(vseg, side)) {
                        let _ = list.set(i, old);
                    }
                }
                return Err(e);
            }
        }
        Ok(stamped)
    }

    /// A device answered discovery (`was_online`: it was not known to have failed). Every
    /// dead mirror side it holds is resynchronized; a side still dying, or one on a volume
    /// busy with another side's death or resync, once that ends. Otherwise a side whose
    /// device came back before its death was recorded would stay dead with its device
    /// marked failed, and nothing would ever look at that device again.
    pub(super) fn device_returned(&mut self, device: DeviceId, was_online: bool) {
        let sides: Vec<(LvId, usize)> =
            self.volumes.keys().filter_map(|lv| self.side_of(*lv, device).map(|s| (*lv, s))).collect();
        for (lv, side) in sides {
            let dying = self.mirror.dying.contains(&(lv, side))
                || self.mirror.unrecorded_deaths.contains(&(lv, side));
            let dead = self.volumes.get(&lv).and_then(|v| v.record.side_states.get(side)).copied()
                == Some(SideState::Dead);
            if dying || (dead && !was_online && self.mirror_busy(lv)) {
                self.mirror.returned.insert((lv, device));
            } else if dead && !was_online {
                self.start_resync(lv, side);
            }
        }
    }

    /// `lv` is no longer busy with a side's death or resync: resynchronize the dead sides
    /// whose devices came back meanwhile, one at a time (the next when this one ends).
    fn resync_returned_sides(&mut self, lv: LvId) {
        let devices: Vec<DeviceId> =
            self.mirror.returned.iter().filter(|(l, _)| *l == lv).map(|(_, d)| *d).collect();
        for device in devices {
            if self.mirror_busy(lv) {
                return;
            }
            self.mirror.returned.remove(&(lv, device));
            let side = self.side_of(lv, device);
            let dead = side.and_then(|s| self.volumes.get(&lv).and_then(|v| v.record.side_states.get(s)))
                == Some(&SideState::Dead);
            if let (Some(side), true) = (side, dead) {
                self.start_resync(lv, side);
            }
        }
    }

    /// Start resynchronizing a dead side (management API, or when its device returns).
    pub fn start_resync(&mut self, lv: LvId, side: usize) {
        if self.mirror_busy(lv) {
            return;
        }
        let Some(v) = self.volumes.get(&lv) else { return };
        if v.record.side_states.get(side).copied() != Some(SideState::Dead) {
            return;
        }
        let offline: Vec<dve_fp_api::ids::FcId> = self
            .side_devices(lv, side)
            .iter()
            .filter_map(|d| self.devices.get(*d))
            .filter(|d| !d.online)
            .flat_map(|d| d.paths.iter().map(|p| p.fc_id))
            .collect();
        if !offline.is_empty() {
            // Probe the devices: once they answer discovery the resync starts by itself.
            for fc_id in offline {
                self.fabric.relogin(fc_id, self.now);
            }
            self.fabric_events();
            return;
        }
        self.mirror.resyncs.insert(
            lv,
            Resync {
                side,
                stale: VecDeque::new(),
                total: 0,
                copied: 0,
                step: None,
                finishing: false,
                paused: false,
                piece_blocks: u64::MAX,
            },
        );
        let segments = self.segments_of(lv);
        self.revoke_segments(&segments, true, AfterRevocation::ResyncStart { lv, side });
    }

    /// Whether a side of `lv` is dying or resynchronizing.
    pub(super) fn mirror_busy(&self, lv: LvId) -> bool {
        self.mirror.resyncs.contains_key(&lv) || self.mirror.dying.iter().any(|(l, _)| *l == lv)
    }

    pub(super) fn side_devices(&self, lv: LvId, side: usize) -> Vec<DeviceId> {
        let Some(v) = self.volumes.get(&lv) else { return Vec::new() };
        match &v.record.layout {
            LayoutSpec::Mirror { sides } => sides.get(side).copied().into_iter().collect(),
            LayoutSpec::Raid10 { side_a, side_b, .. } => {
                if side == 0 {
                    side_a.clone()
                } else {
                    side_b.clone()
                }
            }
            _ => Vec::new(),
        }
    }

    pub(super) fn resync_start_revoked(&mut self, lv: LvId, side: usize) {
        // The resync ended while the tables were revoked (its side was removed): the index
        // may name another side now.
        if self.mirror.resyncs.get(&lv).map(|r| r.side) != Some(side) {
            return;
        }
        let age_blocks = self.config.age_extent_blocks;
        let snapshot = self.snapshot_over(lv);
        let Some(v) = self.volumes.get_mut(&lv) else { return };
        if let Some(s) = v.record.side_states.get_mut(side) {
            *s = SideState::Resync;
        }
        v.record.generation += 1;
        let generation = v.record.generation;
        let live = v.record.side_states.iter().position(|s| *s == SideState::Alive);
        let mut stale = VecDeque::new();
        for map in &mut v.segments {
            let seg = *map.descriptor();
            set_side_everywhere(map, side, SideState::Resync, generation);
            // Writes now reach the returning side, so ages need no more stamping (under a
            // snapshot, entry 0 is the unpushed state, which keeps faulting writes).
            if snapshot.is_none()
                && let Ok(e) = map.redirect_mut(RedirectIndex(0))
            {
                e.fault_on_write = false;
            }
            match (
                live.and_then(|l| self.mirror.ages.get(&(seg.id, l))),
                self.mirror.ages.get(&(seg.id, side)),
            ) {
                (Some(live), Some(back)) => {
                    for i in live.stale_against(back) {
                        stale.push_back((seg.id, live.blocks_of(i, seg.blocks)));
                    }
                }
                // No ages (the side died before this engine started): all of it is stale.
                _ => {
                    let mut start = 0;
                    while start < seg.blocks {
                        let end = start.saturating_add(age_blocks.max(1)).min(seg.blocks);
                        stale.push_back((seg.id, start..end));
                        start = end;
                    }
                }
            }
        }
        // The RESYNC state and the task, in one transaction.
        let task = ResyncTask { side, stale: stale.iter().cloned().collect() };
        let committed = self.records(&[], &[lv]).and_then(|mut batch| {
            batch.put_json(Table::Tasks, task_key(lv), &task)?;
            batch.put_json(Table::Tasks, progress_key(lv), &ResyncCopied { copied: 0 })?;
            self.commit(batch)
        });
        if committed.is_err() {
            self.counters.failed_commits += 1;
        }
        self.snapshot_follow_sides(lv);
        self.grant_tables(lv);
        if let Some(r) = self.mirror.resyncs.get_mut(&lv) {
            r.total = stale.len() as u64;
            r.stale = stale;
        }
    }

    /// Resync tasks loaded at start: the (volume, side) pairs whose RESYNC state stands.
    pub(super) fn resync_tasks(records: &[(Vec<u8>, serde_json::Value)]) -> BTreeSet<(LvId, usize)> {
        records
            .iter()
            .filter_map(|(key, value)| {
                let id: [u8; 4] = key.strip_prefix(TASK_KEY)?.try_into().ok()?;
                let task: ResyncTask = serde_json::from_value(value.clone()).ok()?;
                Some((LvId(u32::from_be_bytes(id)), task.side))
            })
            .collect()
    }

    /// The resync task records loaded at start: each resync of a side still in RESYNC goes on
    /// with the extents not copied yet.
    pub(super) fn resume_resyncs(&mut self, records: Vec<(Vec<u8>, serde_json::Value)>) -> Result<(), Error> {
        let mut copied: BTreeMap<LvId, u64> = BTreeMap::new();
        let mut tasks: BTreeMap<LvId, ResyncTask> = BTreeMap::new();
        for (key, value) in records {
            let rest = key.strip_prefix(TASK_KEY).unwrap_or_default();
            let id: Option<[u8; 4]> = rest.get(..4).and_then(|b| b.try_into().ok());
            let Some(id) = id.map(|b| LvId(u32::from_be_bytes(b))) else {
                return Err(Error::Store(format!("resync task key {key:?} is malformed")));
            };
            match &rest[4..] {
                b"" => {
                    let task = serde_json::from_value(value)
                        .map_err(|e| Error::Store(format!("resync task of {id}: {e}")))?;
                    tasks.insert(id, task);
                }
                b"/copied" => {
                    let progress: ResyncCopied = serde_json::from_value(value)
                        .map_err(|e| Error::Store(format!("resync progress of {id}: {e}")))?;
                    copied.insert(id, progress.copied);
                }
                _ => return Err(Error::Store(format!("resync task key {key:?} is malformed"))),
            }
        }
        for (lv, task) in tasks {
            let Some(v) = self.volumes.get(&lv) else { continue };
            // A task whose side died again or finished is stale; the next resync replaces it.
            if v.record.side_states.get(task.side).copied() != Some(SideState::Resync) {
                continue;
            }
            let done = copied.get(&lv).copied().unwrap_or(0).min(task.stale.len() as u64);
            let stale: VecDeque<(VsegId, Range<u64>)> =
                task.stale.iter().skip(done as usize).cloned().collect();
            if let Some((vseg, _)) = stale
                .iter()
                .find(|(vseg, blocks)| v.segment(*vseg).is_none_or(|m| blocks.end > m.descriptor().blocks))
            {
                return Err(Error::Store(format!(
                    "resync task of {lv} names {vseg:?}, which it does not have"
                )));
            }
            self.mirror.resyncs.insert(
                lv,
                Resync {
                    side: task.side,
                    total: task.stale.len() as u64,
                    copied: done,
                    stale,
                    step: None,
                    finishing: false,
                    paused: false,
                    piece_blocks: u64::MAX,
                },
            );
        }
        Ok(())
    }

    /// Rate-limited progress of every resync: one copy step at a time per volume.
    pub(super) fn resync_tick(&mut self) {
        let lvs: Vec<LvId> = self.mirror.resyncs.keys().copied().collect();
        for lv in lvs {
            // After a restart, copying waits for the side's devices to answer again.
            if self.awaits_devices(lv) {
                continue;
            }
            let Some(r) = self.mirror.resyncs.get_mut(&lv) else { continue };
            if r.step.is_some() || r.finishing || r.paused {
                continue;
            }
            let Some((vseg, blocks)) = r.stale.front().cloned() else {
                if r.total == r.copied && self.resync_started(lv) {
                    self.finish_resync(lv);
                }
                continue;
            };
            if self.is_locked(vseg, &blocks) {
                continue;
            }
            if let Some(r) = self.mirror.resyncs.get_mut(&lv) {
                r.stale.pop_front();
            }
            let step = self.op_id();
            let lock =
                self.revoke_writes_in(vseg, blocks.clone(), true, AfterRevocation::ResyncCopy { lv, step });
            if let Some(r) = self.mirror.resyncs.get_mut(&lv) {
                r.step = Some(CopyStep {
                    lock,
                    vseg,
                    blocks,
                    done: 0,
                    copy: None,
                    sent_at: 0,
                    failures: 0,
                    suspect: None,
                });
            }
        }
    }

    /// Pause or resume the resync of side `side` of `lv` (management API). While paused the
    /// side stays out of reads and writes still go to it; a restart resumes it.
    pub fn pause_resync(&mut self, lv: LvId, side: usize, paused: bool) -> Result<(), Error> {
        let r = self.mirror.resyncs.get_mut(&lv).filter(|r| r.side == side).ok_or_else(|| {
            Error::FailedPrecondition(format!("side {side} of {lv} is not resynchronizing"))
        })?;
        r.paused = paused;
        Ok(())
    }

    fn resync_started(&self, lv: LvId) -> bool {
        let side = self.mirror.resyncs.get(&lv).map(|r| r.side);
        side.is_some_and(|s| {
            self.volumes.get(&lv).and_then(|v| v.record.side_states.get(s)).copied()
                == Some(SideState::Resync)
        })
    }

    pub(super) fn resync_lock_released(&mut self) {}

    pub(super) fn resync_copy_revoked(&mut self, lv: LvId, _step: u64, revocation: u64) {
        // A step whose side was removed while its range was being fenced copies nothing.
        if let Some(i) = self.mirror.abandoned.iter().position(|(l, s)| *l == lv && s.lock == revocation) {
            self.mirror.abandoned.remove(i);
            self.release_lock(revocation);
            return;
        }
        self.copy_resync_piece(lv);
    }

    /// Copy the current step's next piece, from a live side to the returning one.
    fn copy_resync_piece(&mut self, lv: LvId) {
        let Some(r) = self.mirror.resyncs.get(&lv) else { return };
        let (side, piece_blocks) = (r.side, r.piece_blocks);
        let Some(step) = r.step.as_ref() else { return };
        let vseg = step.vseg;
        let start = step.blocks.start + step.done;
        let blocks = start..step.blocks.end.min(start.saturating_add(piece_blocks));
        let Some(v) = self.volumes.get(&lv) else { return };
        let Some(map) = v.segment(vseg) else { return };
        let Some(StorageDescriptor::Mirror(m)) = map.redirects().get(RedirectIndex(0)).map(|e| &e.descriptor)
        else {
            return;
        };
        // Not a side being declared dead: its copy failed, or it would not be dying.
        let dying = &self.mirror.dying;
        let Some(live) = m
            .sides()
            .iter()
            .enumerate()
            .position(|(i, s)| s.state == SideState::Alive && !dying.contains(&(lv, i)))
        else {
            return;
        };
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        side_legs(&m.sides()[live].layout, blocks.clone(), &mut reads);
        side_legs(&m.sides()[side].layout, blocks.clone(), &mut writes);
        let block_size = v.record.block_size as usize;
        let copy = self.start_block_copy(
            CopyOwner::Resync { lv },
            reads,
            writes,
            blocks.end - blocks.start,
            block_size,
        );
        let now = self.now;
        if let Some(step) = self.mirror.resyncs.get_mut(&lv).and_then(|r| r.step.as_mut()) {
            step.copy = Some((copy, blocks));
            step.sent_at = now;
        }
    }

    /// The copy of a piece of the current resync step ended.
    pub(super) fn resync_copied(&mut self, lv: LvId, copy: u64, outcome: Result<(), CopyFailure>) {
        // The copy of a step whose side was removed: only its range lock is left to release.
        if let Some(i) = self
            .mirror
            .abandoned
            .iter()
            .position(|(l, s)| *l == lv && s.copy.as_ref().is_some_and(|c| c.0 == copy))
        {
            let (_, step) = self.mirror.abandoned.remove(i);
            self.release_lock(step.lock);
            return;
        }
        let Some(r) = self.mirror.resyncs.get_mut(&lv) else { return };
        let Some(step) = r.step.as_mut() else { return };
        let Some((_, piece)) = step.copy.take_if(|c| c.0 == copy) else { return };
        let failure = match outcome {
            Ok(()) => {
                self.counters.resync.pieces_copied += 1;
                step.done += piece.end - piece.start;
                step.failures = 0;
                r.piece_blocks = r.piece_blocks.saturating_mul(2);
                if step.blocks.start + step.done < step.blocks.end {
                    self.copy_resync_piece(lv);
                } else {
                    self.resync_step_copied(lv);
                }
                return;
            }
            Err(failure) => failure,
        };
        step.failures += 1;
        let given_up = step.failures >= RESYNC_PIECE_ATTEMPTS;
        let (lock, sent_at) = (step.lock, step.sent_at);
        // Smaller pieces lose a frame less often.
        r.piece_blocks = ((piece.end - piece.start) / 4).max(RESYNC_MIN_PIECE_BLOCKS);
        match failure {
            CopyFailure::Transient if !given_up => {
                self.counters.resync.pieces_retried += 1;
                self.copy_resync_piece(lv);
            }
            // A leg nobody answered: the path and the device are tested, as after a fast-path
            // leg's timeout, before the piece is copied again or the side declared dead.
            CopyFailure::Unanswered(device) if !given_up => {
                step.suspect = Some(device);
                self.path_suspect(device, sent_at, PathWaiter::ResyncStep { lv, lock });
            }
            CopyFailure::DeviceError(device) if self.resync_source_failed(lv, device) => {}
            _ => self.resync_step_failed(lv),
        }
    }

    /// A resync's source side failed (its device answered the copy's read with an error, or
    /// stopped answering): with another live side to copy from, the source is declared dead
    /// and the piece copied again from that side; false (nothing done) otherwise, when the
    /// returning side takes the blame as before.
    fn resync_source_failed(&mut self, lv: LvId, device: DeviceId) -> bool {
        let Some(returning) = self.mirror.resyncs.get(&lv).map(|r| r.side) else { return false };
        let Some(source) = self.side_of(lv, device).filter(|s| *s != returning) else { return false };
        let Some(v) = self.volumes.get(&lv) else { return false };
        let others = v
            .record
            .side_states
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                *i != source && **s == SideState::Alive && !self.mirror.dying.contains(&(lv, *i))
            })
            .count();
        if v.record.side_states.get(source) != Some(&SideState::Alive) || others == 0 {
            return false;
        }
        self.counters.resync.sources_failed += 1;
        self.side_failed(lv, source);
        if let Some(step) = self.mirror.resyncs.get_mut(&lv).and_then(|r| r.step.as_mut()) {
            step.failures = 0;
        }
        self.copy_resync_piece(lv);
        true
    }

    /// The path test after a resync piece's leg timed out is settled.
    pub(super) fn resync_path_checked(&mut self, lv: LvId, lock: u64, verdict: PathVerdict) {
        // The step's side died or was removed meanwhile: only its range lock is left.
        if let Some(i) = self.mirror.abandoned.iter().position(|(l, s)| *l == lv && s.lock == lock) {
            let (_, step) = self.mirror.abandoned.remove(i);
            self.release_lock(step.lock);
            return;
        }
        let Some(step) = self.mirror.resyncs.get(&lv).and_then(|r| r.step.as_ref()) else { return };
        if step.lock != lock || step.copy.is_some() {
            return;
        }
        let suspect = step.suspect;
        match verdict {
            PathVerdict::Transient | PathVerdict::Switched => {
                self.counters.resync.pieces_retried += 1;
                self.copy_resync_piece(lv);
            }
            PathVerdict::DeviceFault if suspect.is_some_and(|d| self.resync_source_failed(lv, d)) => {}
            PathVerdict::DeviceFault => self.resync_step_failed(lv),
        }
    }

    /// The current step cannot be copied (a device's error, a failed device, or pieces that
    /// kept failing): the returning side (or the source) failed again, and the side is
    /// declared dead anew.
    fn resync_step_failed(&mut self, lv: LvId) {
        self.counters.resync.steps_failed += 1;
        let Some(r) = self.mirror.resyncs.remove(&lv) else { return };
        if let Some(step) = r.step {
            self.release_lock(step.lock);
        }
        self.side_failed(lv, r.side);
    }

    /// Every piece of the current step is copied: its extent is current on the returning
    /// side.
    fn resync_step_copied(&mut self, lv: LvId) {
        let Some(step) = self.mirror.resyncs.get_mut(&lv).and_then(|r| r.step.take()) else { return };
        let lock = step.lock;
        let (vseg, blocks) = (step.vseg, step.blocks);
        if let Some(r) = self.mirror.resyncs.get_mut(&lv) {
            r.copied += 1;
            let progress = ResyncCopied { copied: r.copied };
            // Lost progress only means copying an extent again after a restart.
            if self.persist_record(Table::Tasks, progress_key(lv), &progress).is_err() {
                self.counters.failed_commits += 1;
            }
        }
        // The copied extent is current on the returning side.
        let side = self.mirror.resyncs.get(&lv).map_or(0, |r| r.side);
        let live = self
            .volumes
            .get(&lv)
            .and_then(|v| v.record.side_states.iter().position(|s| *s == SideState::Alive));
        if let Some(live) = live {
            let age = self.mirror.ages.get(&(vseg, live)).map(|l| (l.extent_of(blocks.start), l.clone()));
            if let (Some((i, list)), Some(back)) = (age, self.mirror.ages.get_mut(&(vseg, side)))
                && let Some(a) = list.get(i)
            {
                let _ = back.set(i, a);
            }
        }
        self.release_lock(lock);
    }

    fn finish_resync(&mut self, lv: LvId) {
        let Some(r) = self.mirror.resyncs.get_mut(&lv) else { return };
        r.finishing = true;
        let side = r.side;
        let segments = self.segments_of(lv);
        self.revoke_segments(&segments, true, AfterRevocation::ResyncFinish { lv, side });
    }

    pub(super) fn resync_finish_revoked(&mut self, lv: LvId, side: usize) {
        // The resync that finished may have ended meanwhile (its side was removed), and
        // another begun: that one is not finished.
        if self.mirror.resyncs.get(&lv).is_none_or(|r| r.side != side || !r.finishing) {
            return;
        }
        let Some(r) = self.mirror.resyncs.remove(&lv) else { return };
        let snapshot = self.snapshot_over(lv);
        let Some(v) = self.volumes.get_mut(&lv) else { return };
        if let Some(s) = v.record.side_states.get_mut(side) {
            *s = SideState::Alive;
        }
        v.record.generation += 1;
        let generation = v.record.generation;
        let mut lists = Vec::new();
        for map in &mut v.segments {
            let seg = *map.descriptor();
            set_side_everywhere(map, side, SideState::Alive, generation);
            // One entry again, unless a snapshot's states are in the tables (its end leaves
            // one entry).
            if snapshot.is_none() {
                if let Ok(e) = map.redirect_mut(RedirectIndex(0)) {
                    e.fault_on_write = false;
                }
                let _ = map.set_range(0..seg.blocks, RedirectIndex(0));
                map.remove_unreferenced();
            }
            self.mirror.written.remove(&seg.id);
            // The returned side now holds what a side that stayed alive holds; a side still
            // dead keeps its own list (or none), which says what it missed.
            let states = &v.record.side_states;
            let live = (0..states.len())
                .find(|s| *s != side && states[*s] == SideState::Alive)
                .and_then(|l| self.mirror.ages.get(&(seg.id, l)).cloned());
            let old = match live {
                Some(list) => self.mirror.ages.insert((seg.id, side), list),
                None => self.mirror.ages.remove(&(seg.id, side)),
            };
            lists.push((seg.id, old.map(|l| l.len())));
        }
        // ALIVE again, the side's ages those of a live side, and the task ends, in one
        // transaction.
        let committed = self.records(&[], &[lv]).and_then(|mut batch| {
            batch.delete(Table::Tasks, task_key(lv)).delete(Table::Tasks, progress_key(lv));
            for (seg, old) in lists {
                if let Some(extents) = old {
                    age_records::delete_list(&mut batch, seg, side, extents);
                }
                if let Some(list) = self.mirror.ages.get(&(seg, side)) {
                    age_records::put_list(&mut batch, seg, side, list)?;
                }
            }
            self.commit(batch)
        });
        if committed.is_err() {
            self.counters.failed_commits += 1;
        }
        self.snapshot_follow_sides(lv);
        self.grant_tables(lv);
        self.events.push(ControlEvent::ResyncDone { lv, side, extents_copied: r.copied });
        self.resync_returned_sides(lv);
    }
}

impl ControlPath {
    /// A restarted engine rebuilt its tables without fault-on-write: on a mirror with a dead
    /// side whose ages it kept, writes must fault again until their extent's age is stamped,
    /// or the side's resync would miss what is written from now on. (A side with no list is
    /// copied whole; a snapshot's completion makes writes fault by itself.)
    pub(super) fn mirror_tables_after_restart(&mut self) {
        let degraded: Vec<LvId> = self.volumes.keys().copied().filter(|lv| self.stamps_writes(*lv)).collect();
        for lv in degraded {
            if self.snapshot_over(lv).is_some() {
                continue;
            }
            let Some(v) = self.volumes.get_mut(&lv) else { continue };
            for map in &mut v.segments {
                let seg = map.descriptor().id;
                if self.mirror.ages.range((seg, 0)..=(seg, usize::MAX)).next().is_some() {
                    fault_writes_until_stamped(map, &mut self.mirror.written);
                }
            }
        }
    }

    /// A snapshot of mirror `lv` completed, leaving each segment's extents on its pushed
    /// state, wherever that entry sits in the table: put it back as entry 0, the one the
    /// mirror's procedures change, and while a side is dead make every extent fault on its
    /// next write again so that write stamps the live sides' ages.
    pub(super) fn mirror_tables_after_snapshot(&mut self, lv: LvId) {
        let stamps = self.stamps_writes(lv);
        let Some(v) = self.volumes.get_mut(&lv) else { return };
        if v.record.side_states.is_empty() {
            return;
        }
        for map in &mut v.segments {
            let seg = *map.descriptor();
            self.mirror.written.remove(&seg.id);
            let used = map.rmap().iter().next().and_then(|e| map.redirects().get(e.value).cloned());
            let Some(used) = used else { continue };
            let base = RedirectEntry { fault_on_write: false, ..used };
            let index = match map.redirect_mut(RedirectIndex(0)) {
                Ok(e) => {
                    *e = base;
                    RedirectIndex(0)
                }
                Err(_) => match map.add_redirect(base) {
                    Ok(i) => i,
                    Err(_) => continue,
                },
            };
            let _ = map.set_range(0..seg.blocks, index);
            map.remove_unreferenced();
            if stamps {
                fault_writes_until_stamped(map, &mut self.mirror.written);
            }
        }
    }
}

/// The legs of `blocks` of a segment on one side's layout, offsets from `blocks.start`.
pub(super) fn side_legs(
    layout: &dve_fp_api::mapping::SideLayout,
    blocks: Range<u64>,
    out: &mut Vec<DeviceLeg>,
) {
    let mut block = blocks.start;
    while block < blocks.end {
        let (location, room) = layout.locate(block);
        let n = room.min(blocks.end - block);
        out.push(DeviceLeg {
            device: location.device,
            lba: location.lba,
            blocks: n,
            offset: block - blocks.start,
            side: None,
        });
        block += n;
    }
}

#[cfg(test)]
mod tests {
    use dve_fp_api::io::IoStatus;

    use super::*;
    use crate::control_path::leg_timeout::tests::{Bench, Health, Mishap};

    const BLOCK: usize = 512;

    /// Mirror `m` (4096 blocks: two age extents) on the leg-timeout bench with side 1 (device
    /// 2) dead while both extents are written, then back: its resync has two steps to copy.
    fn side_1_away_and_back() -> Bench {
        let mut bench = Bench::new();
        let lv = bench.lv;
        bench.cp.side_failed(lv, 1);
        bench.settle();
        bench.host_write(lv, 1, 0, 8, 0xA1);
        bench.host_write(lv, 2, 3000, 8, 0xB2);
        assert_eq!(
            (bench.completed.get(&1), bench.completed.get(&2)),
            (Some(&IoStatus::GOOD), Some(&IoStatus::GOOD))
        );
        bench.events.clear();
        bench
    }

    /// Side 1 returns and ticks pass until its resync is over, one way or the other.
    fn resync(bench: &mut Bench) {
        bench.side_1_returns();
        run_resync(bench);
    }

    /// Ticks pass until the resync of side 1 is over, one way or the other.
    fn run_resync(bench: &mut Bench) {
        assert_eq!(bench.side_states(), [SideState::Alive, SideState::Resync], "{:?}", bench.events);
        run_to_end(bench);
    }

    /// Side 1's state after its resync, the pieces copied again and the steps given up.
    fn outcome(bench: &Bench) -> (SideState, u64, u64) {
        let counters = bench.cp.counters().resync;
        (bench.side_states()[1], counters.pieces_retried, counters.steps_failed)
    }

    fn side_1_dead_again(bench: &Bench) -> bool {
        bench.events.iter().any(|e| matches!(e, ControlEvent::SideDead { side: 1, .. }))
    }

    #[test]
    fn a_clean_resync_copies_each_stale_extent_in_one_piece() {
        let mut bench = side_1_away_and_back();
        resync(&mut bench);
        assert_eq!(bench.side_states(), [SideState::Alive; 2], "{:?}", bench.events);
        assert_eq!(bench.side_blocks(1, 0, 4096), bench.side_blocks(0, 0, 4096));
        assert_eq!(
            bench.cp.counters().resync,
            ResyncCounters { pieces_copied: 2, ..ResyncCounters::default() }
        );
    }

    #[test]
    fn a_step_whose_read_lost_a_data_frame_is_copied_again_in_smaller_pieces() {
        let mut bench = side_1_away_and_back();
        bench.mishap(DeviceId(1), false, Mishap::LostData);
        resync(&mut bench);
        assert_eq!(bench.side_states(), [SideState::Alive; 2], "{:?}", bench.events);
        assert!(!side_1_dead_again(&bench), "{:?}", bench.events);
        assert_eq!(bench.side_blocks(1, 0, 4096), bench.side_blocks(0, 0, 4096));
        assert_eq!(bench.side_blocks(1, 3000, 8), vec![0xB2; 8 * BLOCK]);
        let counters = bench.cp.counters().resync;
        assert_eq!((counters.pieces_retried, counters.steps_failed), (1, 0), "{counters:?}");
        // The first extent in quarters (512, 1024, then 512 blocks as the piece grows back);
        // the second one whole again.
        assert_eq!(counters.pieces_copied, 4, "{counters:?}");
        assert!(
            bench
                .events
                .iter()
                .any(|e| matches!(e, ControlEvent::ResyncDone { side: 1, extents_copied: 2, .. }))
        );
    }

    #[test]
    fn a_piece_nobody_answered_is_copied_again_once_the_path_and_device_answer() {
        let mut bench = side_1_away_and_back();
        bench.tested.clear();
        bench.mishap(DeviceId(2), true, Mishap::NoAnswer);
        resync(&mut bench);
        assert!(bench.tested.contains(&DeviceId(2)), "the returning device's path was tested");
        assert_eq!(outcome(&bench), (SideState::Alive, 1, 0), "{:?}", bench.events);
        assert!(!side_1_dead_again(&bench), "{:?}", bench.events);
        assert_eq!(bench.side_blocks(1, 0, 4096), bench.side_blocks(0, 0, 4096));
    }

    #[test]
    fn a_device_that_reports_an_error_is_declared_dead_at_once() {
        let mut bench = side_1_away_and_back();
        bench.mishap(DeviceId(2), true, Mishap::MediumError);
        resync(&mut bench);
        assert_eq!(outcome(&bench), (SideState::Dead, 0, 1), "{:?}", bench.events);
    }

    #[test]
    fn a_returning_device_that_stops_answering_is_declared_dead_after_its_path_test() {
        let mut bench = side_1_away_and_back();
        bench.side_1_returns();
        bench.health.insert(DeviceId(2), Health::Dead);
        run_resync(&mut bench);
        assert_eq!(outcome(&bench), (SideState::Dead, 0, 1), "{:?}", bench.events);
    }

    /// A three-way mirror whose side 2 (device 3) was away while both extents were written
    /// and is back, resynchronizing from side 0.
    fn three_way_side_2_back() -> Bench {
        let mut bench = Bench::three_way();
        let lv = bench.lv;
        bench.cp.side_failed(lv, 2);
        bench.settle();
        bench.host_write(lv, 1, 0, 8, 0xA1);
        bench.host_write(lv, 2, 3000, 8, 0xB2);
        bench.events.clear();
        bench.device_returns(2);
        assert_eq!(bench.side_states()[2], SideState::Resync, "{:?}", bench.events);
        bench
    }

    /// Ticks pass until every resync is over, one way or the other.
    fn run_to_end(bench: &mut Bench) {
        for _ in 0..100 {
            if bench.cp.resyncs().is_empty() {
                return;
            }
            bench.tick();
        }
        panic!("the resync never ended: {:?}", bench.events);
    }

    #[test]
    fn a_resync_source_that_fails_is_declared_dead_and_another_live_side_takes_over() {
        let mut bench = three_way_side_2_back();
        bench.mishap(DeviceId(1), false, Mishap::MediumError);
        run_to_end(&mut bench);
        assert_eq!(
            bench.side_states(),
            [SideState::Dead, SideState::Alive, SideState::Alive],
            "the source is blamed, not the returning side: {:?}",
            bench.events
        );
        assert_eq!(bench.side_blocks(2, 0, 4096), bench.side_blocks(1, 0, 4096));
        assert_eq!(bench.side_blocks(2, 3000, 8), vec![0xB2; 8 * BLOCK]);
        let counters = bench.cp.counters().resync;
        assert_eq!((counters.sources_failed, counters.steps_failed), (1, 0), "{counters:?}");
    }

    #[test]
    fn a_resync_source_that_stops_answering_is_declared_dead_after_its_path_test() {
        let mut bench = three_way_side_2_back();
        bench.health.insert(DeviceId(1), Health::Dead);
        run_to_end(&mut bench);
        assert_eq!(
            bench.side_states(),
            [SideState::Dead, SideState::Alive, SideState::Alive],
            "{:?}",
            bench.events
        );
        assert_eq!(bench.side_blocks(2, 0, 4096), bench.side_blocks(1, 0, 4096));
        assert_eq!(bench.cp.counters().resync.sources_failed, 1);
    }

    #[test]
    fn pieces_that_keep_failing_give_the_side_up_after_a_bounded_number_of_copies() {
        let mut bench = side_1_away_and_back();
        bench.health.insert(DeviceId(1), Health::LosesReadData);
        resync(&mut bench);
        assert_eq!(bench.side_states(), [SideState::Alive, SideState::Dead], "{:?}", bench.events);
        let counters = bench.cp.counters().resync;
        assert_eq!(
            (counters.pieces_copied, counters.pieces_retried, counters.steps_failed),
            (0, u64::from(RESYNC_PIECE_ATTEMPTS - 1), 1),
            "{counters:?}"
        );
    }
}
