//! Copy-on-write snapshots (seed 003 section 6.1, Figs. 20, 21, 29). Taking one revokes the
//! source's redirect tables and drains its writes, then gives each source segment two states:
//! its entry made fault-on-write (unpushed) and a read/write twin (pushed); the snapshot's
//! segments read unpushed blocks through the source's storage (read-only) and pushed ones
//! from the snapshot store. The first write to an unpushed range faults; the control path
//! pushes the old data at the copy granularity and then, in this order: updates the
//! snapshot's Rmap, waits for reads under the old snapshot mapping to drain, updates the
//! source's Rmap, lets the write proceed. A background completion task pushes the rest and
//! coalesces both Rmaps to one extent, removing the entries no longer referenced.

use core::ops::Range;
use std::collections::BTreeMap;

use bytes::Bytes;
use dve_fp_api::ids::{IoTag, LvId};
use dve_fp_api::io::{HostIo, IoStatus, PendingFilter, Sense};
use dve_fp_api::mapping::{
    Placement, RedirectEntry, RedirectIndex, StorageDescriptor, VsegDescriptor, VsegLimits, VsegMap,
};
use dve_fp_api::message::{MappingEntry, MappingKey};

use super::block_copy::{CopyOwner, granules_touched, legs_into};
use super::revocation::AfterRevocation;
use super::{ControlEvent, ControlPath};
use crate::error::Error;
use crate::volume::{Allocation, LayoutSpec, Volume, VolumeRecord, segment_id};

/// The snapshot store's entry in each snapshot segment.
const STORE: RedirectIndex = RedirectIndex(0);
/// Blocks pushed at least, around a faulting write (64 KiB of 512-byte blocks).
pub const COPY_GRANULARITY_BLOCKS: u64 = 128;
/// Blocks the completion task pushes per step.
const COMPLETION_STEP_BLOCKS: u64 = 2048;
/// DATA PROTECT, WRITE PROTECTED: a write to a read-only snapshot.
const WRITE_PROTECTED: Sense = Sense { key: 0x07, asc: 0x27, ascq: 0x00 };

/// Where a push stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PushStage {
    /// The old data is being copied to the store.
    Copying,
    /// The snapshot's Rmap points at the store; reads under the old mapping are draining.
    Draining,
}

/// One push: old data of `blocks` of a segment copied from the source's storage to the
/// snapshot store.
#[derive(Clone, Debug)]
struct Push {
    segment: usize,
    blocks: Range<u64>,
    stage: PushStage,
}

/// A snapshot whose source still has unpushed blocks.
#[derive(Clone, Debug)]
pub(super) struct ActiveSnapshot {
    snapshot: LvId,
    /// Per source segment: each unpushed (fault-on-write) entry and its read/write twin.
    twins: Vec<BTreeMap<RedirectIndex, RedirectIndex>>,
    /// The take waits for a migration's copy barrier to come down.
    take_pending: bool,
    /// Pushes in flight, by id.
    pushes: BTreeMap<u64, Push>,
    /// Writes waiting for pushes (to the source or a writable snapshot).
    waiting: Vec<(IoTag, HostIo, Option<Bytes>)>,
    /// Where the completion task is: segment and block.
    cursor: (usize, u64),
    /// Taken (the source's revocation drained) and serving.
    taken: bool,
    /// The final revocation is running.
    finishing: bool,
}

/// Snapshot bookkeeping: active snapshots by source, and which snapshot each volume is.
#[derive(Clone, Debug, Default)]
pub(super) struct Snapshots {
    active: BTreeMap<LvId, ActiveSnapshot>,
    /// Snapshot volume -> its source.
    sources: BTreeMap<LvId, LvId>,
    /// Snapshot volume -> whether hosts may write it.
    writable: BTreeMap<LvId, bool>,
    /// Group snapshots being taken: their sources.
    groups: BTreeMap<u64, Vec<LvId>>,
}

impl ControlPath {
    /// Take a snapshot of `source` named `name` (management API): a new volume holding the
    /// source's image at this instant, read-only unless `writable`. The store is claimed on
    /// the device with the most free space outside the source. Returns the snapshot volume;
    /// the image is fixed once the source's writes in flight have drained
    /// ([`ControlEvent::SnapshotTaken`]).
    pub fn create_snapshot(&mut self, source: LvId, name: &str, writable: bool) -> Result<LvId, Error> {
        let id = self.prepare_snapshot(source, name, writable)?;
        if self.migration_holds_for_snapshot(source) {
            // A copy barrier is up: the take starts when it comes down.
            if let Some(a) = self.snapshots.active.get_mut(&source) {
                a.take_pending = true;
            }
        } else {
            self.start_take(source);
        }
        Ok(id)
    }

    /// Snapshots of several volumes at one instant (a group-atomic operation, seed 003
    /// section 6.8): one revocation drains the writes of every source before any is taken,
    /// so the images are mutually consistent. `names[i]` names the snapshot of `sources[i]`.
    pub fn create_group_snapshot(&mut self, sources: &[LvId], names: &[String]) -> Result<Vec<LvId>, Error> {
        if sources.len() != names.len() || sources.len() < 2 {
            return Err(Error::invalid("sources", "a group needs two or more volumes, each with a name"));
        }
        for (i, s) in sources.iter().enumerate() {
            if sources[..i].contains(s) {
                return Err(Error::invalid("sources", format!("{s:?} is listed twice")));
            }
            if self.migrations_of(*s) {
                return Err(Error::FailedPrecondition(format!("{s:?} is migrating: snapshot it on its own")));
            }
            self.check_snapshot(*s, &names[i])?;
        }
        let mut ids = Vec::with_capacity(sources.len());
        for (source, name) in sources.iter().zip(names) {
            ids.push(self.prepare_snapshot(*source, name, false)?);
        }
        let mut segments = Vec::new();
        for source in sources {
            segments.extend(self.segments_of(*source));
        }
        let group = self.op_id();
        self.snapshots.groups.insert(group, sources.to_vec());
        self.revoke_segments(&segments, true, AfterRevocation::GroupSnapshotTake { group });
        Ok(ids)
    }

    /// Every source of a group drained at once: take them all.
    pub(super) fn group_snapshot_take_revoked(&mut self, group: u64) {
        for source in self.snapshots.groups.remove(&group).unwrap_or_default() {
            self.snapshot_take_revoked(source);
        }
    }

    /// Why `source` cannot be snapshotted as `name`, if it cannot.
    fn check_snapshot(&self, source: LvId, name: &str) -> Result<(), Error> {
        if name.is_empty() || self.volumes.values().any(|v| v.record.name == name) {
            return Err(Error::invalid("name", format!("{name:?} is empty or taken")));
        }
        let v = self.volumes.get(&source).ok_or(Error::UnknownVolume(source))?;
        if self.snapshots.sources.contains_key(&source) {
            return Err(Error::FailedPrecondition("a snapshot of a snapshot is not supported".into()));
        }
        if self.snapshots.active.contains_key(&source) {
            return Err(Error::FailedPrecondition(format!(
                "{} has a snapshot still completing",
                v.record.name
            )));
        }
        if matches!(v.record.layout, LayoutSpec::Mirror { .. } | LayoutSpec::Raid10 { .. }) {
            return Err(Error::FailedPrecondition(
                "snapshots of mirrored volumes are not supported yet".into(),
            ));
        }
        if self.incremental_involves(source) {
            return Err(Error::FailedPrecondition(format!("{} is an incremental or a base", v.record.name)));
        }
        Ok(())
    }

    /// Claim the store and make the snapshot volume (no access until it is taken).
    fn prepare_snapshot(&mut self, source: LvId, name: &str, writable: bool) -> Result<LvId, Error> {
        self.check_snapshot(source, name)?;
        let v = self.volumes.get(&source).ok_or(Error::UnknownVolume(source))?;
        let used = v.record.layout.devices();
        let blocks = v.record.blocks;
        let store = self
            .devices
            .iter()
            .filter(|d| d.online && !used.contains(&d.id))
            .chain(self.devices.iter().filter(|d| d.online && used.contains(&d.id)))
            .filter(|d| d.blocks.saturating_sub(d.allocated) >= blocks)
            .max_by_key(|d| (!used.contains(&d.id), d.blocks - d.allocated))
            .map(|d| d.id)
            .ok_or_else(|| {
                Error::FailedPrecondition(format!("no device has {blocks} free blocks for the snapshot"))
            })?;
        let id = LvId(self.volumes.keys().last().map_or(1, |l| l.0 + 1));
        let lba = self.devices.allocate(store, blocks)?;
        // Until it is taken the snapshot allows no access at all; taking it gives it the
        // source's states (read through the source) beside its store.
        let mut segments = Vec::new();
        for (i, seg) in v.segments.iter().enumerate() {
            let d = *seg.descriptor();
            let desc = VsegDescriptor { id: segment_id(id, i), lv: id, start: d.start, blocks: d.blocks };
            let own = StorageDescriptor::Single(Placement { device: store, lba: lba + d.start });
            segments.push(VsegMap::new(desc, RedirectEntry::no_access(own), VsegLimits::default())?);
        }
        let block_size = v.record.block_size;
        let record = VolumeRecord {
            id,
            name: name.to_string(),
            blocks,
            block_size,
            layout: LayoutSpec::Snapshot { source, store },
            allocations: vec![Allocation { device: store, lba, blocks }],
            hosts: Vec::new(),
            lun: 0,
            side_states: Vec::new(),
            generation: 0,
        };
        let snapshot = Volume { record, segments };
        let descriptor = snapshot.descriptor()?;
        self.volumes.insert(id, snapshot);
        if self.persist(&[store], &[]).is_err() {
            self.counters.failed_commits += 1;
        }
        self.snapshots.sources.insert(id, source);
        self.snapshots.writable.insert(id, writable);
        self.snapshots.active.insert(
            source,
            ActiveSnapshot {
                snapshot: id,
                twins: Vec::new(),
                take_pending: false,
                pushes: BTreeMap::new(),
                waiting: Vec::new(),
                cursor: (0, 0),
                taken: false,
                finishing: false,
            },
        );
        self.grant_all(MappingEntry::Lv(descriptor));
        self.push_mask(id);
        Ok(id)
    }

    /// Take a pending snapshot of `source` (a migration's barrier came down).
    pub(super) fn take_pending_snapshot(&mut self, source: LvId) {
        let pending = self.snapshots.active.get(&source).is_some_and(|a| a.take_pending);
        if !pending {
            return;
        }
        if let Some(a) = self.snapshots.active.get_mut(&source) {
            a.take_pending = false;
        }
        self.start_take(source);
    }

    /// The image is the source's once its writes in flight have drained.
    fn start_take(&mut self, source: LvId) {
        let segments = self.segments_of(source);
        self.revoke_segments(&segments, true, AfterRevocation::SnapshotTake { source });
    }

    /// The source's writes drained: give its segments the unpushed and pushed states.
    pub(super) fn snapshot_take_revoked(&mut self, source: LvId) {
        let Some(snapshot) = self.snapshots.active.get(&source).map(|a| a.snapshot) else { return };
        let writable = self.snapshots.writable.get(&snapshot).copied().unwrap_or(false);
        let Some(v) = self.volumes.get_mut(&source) else { return };
        let mut twins = Vec::new();
        let mut through = Vec::new();
        let mut grants = Vec::new();
        for map in &mut v.segments {
            // Every state the source's extents use gets a fault-on-write (unpushed) and a
            // read/write (pushed) form.
            let used: Vec<(RedirectIndex, RedirectEntry)> = map
                .redirects()
                .iter()
                .filter(|(i, _)| map.references(*i) > 0)
                .map(|(i, e)| (i, e.clone()))
                .collect();
            let mut segment_twins = BTreeMap::new();
            for (index, entry) in &used {
                let Ok(t) = map.add_redirect(RedirectEntry { fault_on_write: false, ..entry.clone() }) else {
                    continue;
                };
                if let Ok(e) = map.redirect_mut(*index) {
                    e.fault_on_write = true;
                }
                segment_twins.insert(*index, t);
            }
            through.push((used, map.rmap().iter().collect::<Vec<_>>()));
            twins.push(segment_twins);
            grants
                .push(MappingEntry::Redirects { vseg: map.descriptor().id, table: map.redirects().clone() });
        }
        // The snapshot reads unpushed blocks through the source's storage, read-only.
        if let Some(snap) = self.volumes.get_mut(&snapshot) {
            for (map, (used, extents)) in snap.segments.iter_mut().zip(through) {
                let mut via = BTreeMap::new();
                for (index, entry) in used {
                    let read_only = RedirectEntry {
                        descriptor: entry.descriptor,
                        fault_on_read: false,
                        fault_on_write: true,
                    };
                    if let Ok(i) = map.add_redirect(read_only) {
                        via.insert(index, i);
                    }
                }
                for e in extents {
                    if let Some(i) = via.get(&e.value) {
                        let _ = map.set_range(e.range(), *i);
                    }
                }
                if let Ok(store) = map.redirect_mut(STORE) {
                    store.fault_on_read = false;
                    store.fault_on_write = !writable;
                }
                grants.push(MappingEntry::Redirects {
                    vseg: map.descriptor().id,
                    table: map.redirects().clone(),
                });
            }
        }
        for entry in grants {
            self.grant_all(entry);
        }
        let Some(active) = self.snapshots.active.get_mut(&source) else { return };
        active.twins = twins;
        active.taken = true;
        self.events.push(ControlEvent::SnapshotTaken { source, snapshot });
        self.retry_snapshot_waiters(source);
    }

    /// Whether hosts may not write `lv`: a read-only snapshot, or the base of incrementals.
    pub fn is_read_only(&self, lv: LvId) -> bool {
        self.snapshots.writable.get(&lv).is_some_and(|w| !w) || self.is_incremental_base(lv)
    }

    /// Whether a write to `lv` must go through the snapshot path (it is a snapshot, or the
    /// source of one still completing).
    pub(super) fn snapshot_involves(&self, lv: LvId) -> bool {
        self.snapshots.active.contains_key(&lv) || self.snapshots.sources.contains_key(&lv)
    }

    /// A write to a snapshot's source or to a snapshot: push what it covers that is not
    /// pushed yet, then run it.
    pub(super) fn snapshot_write(&mut self, io: IoTag, request: HostIo, data: Option<Bytes>) {
        let Some(lv) = request.lv else {
            self.run_manual(io, request, data);
            return;
        };
        if let Some(source) = self.snapshots.sources.get(&lv).copied() {
            if !self.snapshots.writable.get(&lv).copied().unwrap_or(false) {
                self.complete_io(io, IoStatus::check_condition(WRITE_PROTECTED));
                return;
            }
            if !self.snapshots.active.contains_key(&source) {
                self.run_manual(io, request, data);
                return;
            }
            self.push_for(source, io, request, data);
            return;
        }
        if self.snapshots.active.contains_key(&lv) {
            self.push_for(lv, io, request, data);
            return;
        }
        self.run_manual(io, request, data);
    }

    /// The unpushed blocks of source segment `segment` within `blocks`.
    fn unpushed_in(&self, source: LvId, segment: usize, blocks: Range<u64>) -> Vec<Range<u64>> {
        let Some(active) = self.snapshots.active.get(&source) else { return Vec::new() };
        let Some(snap) = self.volumes.get(&active.snapshot).and_then(|v| v.segments.get(segment)) else {
            return Vec::new();
        };
        snap.rmap()
            .overlapping(blocks.clone())
            .filter(|e| e.value != STORE)
            .map(|e| e.start.max(blocks.start)..e.end.min(blocks.end))
            .filter(|r| r.start < r.end)
            .collect()
    }

    fn push_for(&mut self, source: LvId, io: IoTag, request: HostIo, data: Option<Bytes>) {
        let taken = self.snapshots.active.get(&source).is_some_and(|a| a.taken);
        if !taken {
            if let Some(a) = self.snapshots.active.get_mut(&source) {
                a.waiting.push((io, request, data));
            }
            return;
        }
        let Some(v) = self.volumes.get(&source) else { return };
        let mut needed = Vec::new();
        let touched = granules_touched(v, request.lba, u64::from(request.blocks), COPY_GRANULARITY_BLOCKS);
        for (i, rounded) in touched {
            for r in self.unpushed_in(source, i, rounded) {
                needed.push((i, r));
            }
        }
        if needed.is_empty() {
            self.run_manual(io, request, data);
            return;
        }
        let busy = |a: &ActiveSnapshot, i: usize, r: &Range<u64>| {
            a.pushes.values().any(|p| p.segment == i && p.blocks.start < r.end && r.start < p.blocks.end)
        };
        let mut starts = Vec::new();
        if let Some(a) = self.snapshots.active.get_mut(&source) {
            for (i, r) in needed {
                if !busy(a, i, &r) {
                    starts.push((i, r));
                }
            }
            a.waiting.push((io, request, data));
        }
        for (i, r) in starts {
            self.start_push(source, i, r);
        }
    }

    fn start_push(&mut self, source: LvId, segment: usize, blocks: Range<u64>) {
        let Some(active) = self.snapshots.active.get(&source) else { return };
        let Some(snap) = self.volumes.get(&active.snapshot) else { return };
        let Some(map) = snap.segments.get(segment) else { return };
        // Old data is read through whatever state each extent of the range is in.
        let Some((reads, writes)) = legs_into(map, blocks.clone(), STORE) else { return };
        let block_size = snap.record.block_size as usize;
        let id = self.op_id();
        let n = blocks.end - blocks.start;
        let push = Push { segment, blocks, stage: PushStage::Copying };
        if let Some(a) = self.snapshots.active.get_mut(&source) {
            a.pushes.insert(id, push);
        }
        self.start_block_copy(CopyOwner::Push { source, push: id }, reads, writes, n, block_size);
    }

    /// The copy of push `id` ended.
    pub(super) fn push_copied(&mut self, source: LvId, id: u64, copied: bool) {
        let Some(active) = self.snapshots.active.get_mut(&source) else { return };
        let snapshot = active.snapshot;
        let Some(push) = active.pushes.get_mut(&id) else { return };
        if !copied {
            // Nothing changed in the maps: drop the push; waiting writes try again.
            active.pushes.remove(&id);
            self.retry_snapshot_waiters(source);
            return;
        }
        match push.stage {
            PushStage::Copying => {
                // Pushed. Now, in this order: the snapshot's Rmap, drain the reads that
                // used the old snapshot mapping, then the source's Rmap.
                push.stage = PushStage::Draining;
                let (segment, blocks) = (push.segment, push.blocks.clone());
                let Some(map) = self.volumes.get_mut(&snapshot).and_then(|v| v.segments.get_mut(segment))
                else {
                    return;
                };
                let vseg = map.descriptor().id;
                if map.set_range(blocks.clone(), STORE).is_err() {
                    return;
                }
                let drain = PendingFilter {
                    vseg: Some(vseg),
                    range: Some((blocks.start, blocks.end - blocks.start)),
                    ..PendingFilter::default()
                };
                let key = MappingKey::Extents { vseg, blocks };
                self.revoke(
                    vec![key],
                    vec![drain],
                    None,
                    AfterRevocation::SnapshotPushed { source, push: id },
                );
            }
            PushStage::Draining => {}
        }
    }

    /// The snapshot's old mapping has drained: the source may write over the old data.
    pub(super) fn snapshot_pushed_revoked(&mut self, source: LvId, id: u64) {
        let Some(active) = self.snapshots.active.get_mut(&source) else { return };
        let Some(push) = active.pushes.remove(&id) else { return };
        let Some(twins) = active.twins.get(push.segment).cloned() else { return };
        let Some(map) = self.volumes.get_mut(&source).and_then(|v| v.segments.get_mut(push.segment)) else {
            return;
        };
        let vseg = map.descriptor().id;
        let extents: Vec<_> = map.rmap().overlapping(push.blocks.clone()).collect();
        for e in extents {
            if let Some(t) = twins.get(&e.value) {
                let piece = e.start.max(push.blocks.start)..e.end.min(push.blocks.end);
                let _ = map.set_range(piece, *t);
            }
        }
        self.grant_extents(source, vseg, push.blocks.clone());
        self.retry_snapshot_waiters(source);
    }

    fn retry_snapshot_waiters(&mut self, source: LvId) {
        let waiting = self
            .snapshots
            .active
            .get_mut(&source)
            .map(|a| std::mem::take(&mut a.waiting))
            .unwrap_or_default();
        for (io, request, data) in waiting {
            self.snapshot_write(io, request, data);
        }
    }

    /// The completion task: one push at a time of what no write pushed yet; when nothing
    /// is left, both Rmaps coalesce to one extent and the unused entries go.
    pub(super) fn snapshot_tick(&mut self) {
        let sources: Vec<LvId> = self.snapshots.active.keys().copied().collect();
        for source in sources {
            let Some(a) = self.snapshots.active.get(&source) else { continue };
            if !a.taken || a.finishing || !a.pushes.is_empty() || !a.waiting.is_empty() {
                continue;
            }
            let segments = self.volumes.get(&source).map_or(0, |v| v.segments.len());
            let mut cursor = a.cursor;
            let mut next = None;
            while cursor.0 < segments {
                let seg_blocks =
                    self.volumes.get(&source).map_or(0, |v| v.segments[cursor.0].descriptor().blocks);
                if cursor.1 >= seg_blocks {
                    cursor = (cursor.0 + 1, 0);
                    continue;
                }
                let window = cursor.1..(cursor.1 + COMPLETION_STEP_BLOCKS).min(seg_blocks);
                let found = self.unpushed_in(source, cursor.0, window.clone());
                if let Some(first) = found.first() {
                    next = Some((cursor.0, first.clone()));
                    cursor.1 = first.end;
                    break;
                }
                cursor.1 = window.end;
            }
            if let Some(a) = self.snapshots.active.get_mut(&source) {
                a.cursor = cursor;
            }
            match next {
                Some((segment, blocks)) => self.start_push(source, segment, blocks),
                None => self.finish_snapshot(source),
            }
        }
    }

    fn finish_snapshot(&mut self, source: LvId) {
        let Some(a) = self.snapshots.active.get_mut(&source) else { return };
        a.finishing = true;
        let snapshot = a.snapshot;
        let mut segments = self.segments_of(source);
        segments.extend(self.segments_of(snapshot));
        self.revoke_segments(&segments, false, AfterRevocation::SnapshotComplete { source });
    }

    pub(super) fn snapshot_complete_revoked(&mut self, source: LvId) {
        let Some(a) = self.snapshots.active.remove(&source) else { return };
        let mut grants = Vec::new();
        if let Some(v) = self.volumes.get_mut(&source) {
            for (map, twins) in v.segments.iter_mut().zip(&a.twins) {
                let extents: Vec<_> = map.rmap().iter().collect();
                for e in extents {
                    if let Some(t) = twins.get(&e.value) {
                        let _ = map.set_range(e.range(), *t);
                    }
                }
                map.coalesce();
                map.remove_unreferenced();
                grants.push(MappingEntry::Redirects {
                    vseg: map.descriptor().id,
                    table: map.redirects().clone(),
                });
            }
        }
        if let Some(v) = self.volumes.get_mut(&a.snapshot) {
            for map in &mut v.segments {
                let all = 0..map.descriptor().blocks;
                let _ = map.set_range(all, STORE);
                map.coalesce();
                map.remove_unreferenced();
                grants.push(MappingEntry::Redirects {
                    vseg: map.descriptor().id,
                    table: map.redirects().clone(),
                });
            }
        }
        for entry in grants {
            self.grant_all(entry);
        }
        let waiting = a.waiting;
        self.events.push(ControlEvent::SnapshotComplete { source, snapshot: a.snapshot });
        // A migration held for the snapshot goes on with its states renamed to the twins.
        self.migration_after_snapshot(source, &a.twins);
        for (io, request, data) in waiting {
            self.run_manual(io, request, data);
        }
    }
}
