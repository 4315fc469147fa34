//! Copy-on-write snapshots (seed 003 section 6.1, Figs. 20, 21, 29). Taking one revokes the
//! source's redirect tables and drains its writes, then gives each source segment two states:
//! its entry made fault-on-write (unpushed) and a read/write twin (pushed); the snapshot's
//! segments read unpushed blocks through the source's storage (read-only) and pushed ones
//! from the snapshot store. The first write to an unpushed range faults; the control path
//! pushes the old data at the copy granularity and then, in this order: updates the
//! snapshot's Rmap, waits for reads under the old snapshot mapping to drain, updates the
//! source's Rmap, lets the write proceed. A background completion task pushes the rest and
//! coalesces both Rmaps to one extent, removing the entries no longer referenced.
//!
//! A mirrored source (mirror or RAID 10) works the same way, its states carrying the mirror
//! descriptor. The snapshot's ways through the source follow the source's side states (a
//! side dying at the take counts as dead), so its reads and the pushes, which read through
//! them, use only live, current sides; a push that fails reads from the next side when
//! tried again. The mirror's procedures (side death, resync start and end) keep the
//! snapshot's states in the source's tables instead of resetting them, and while a side is
//! dead the pushed states fault writes too, so the control path stamps the live sides' ages
//! of every write. The end puts the mirror's single entry back at index 0.
//!
//! A snapshot is a task in the metadata store until it completes: its volume and the task
//! `snapshot/<source>` are committed when it is made; each push is committed after its copy
//! and before the snapshot's Rmap changes (a completion push moves the task's cursor, a
//! write's push is a record of its own until the cursor passes it); the end deletes them. A
//! restarted engine takes the snapshot's states again, marks what was pushed, and goes on.

use core::ops::Range;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use dve_fp_api::ids::{DeviceId, IoTag, LvId, VsegId};
use dve_fp_api::io::{HostIo, IoStatus, PendingFilter, Sense};
use dve_fp_api::mapping::{RedirectEntry, RedirectIndex, SideState};
use dve_fp_api::message::{MappingEntry, MappingKey};

use super::block_copy::{CopyOwner, granules_touched, legs_into};
use super::mirror::set_side_everywhere;
use super::revocation::AfterRevocation;
use super::{ControlEvent, ControlPath};
use crate::device::DeviceRegistry;
use crate::error::Error;
use crate::store::{Batch, Table};
use crate::volume::{Allocation, LayoutSpec, Volume, VolumeRecord};

/// Progress of one snapshot's completion.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SnapshotProgress {
    /// The snapshot volume.
    pub snapshot: LvId,
    /// Blocks behind the completion's cursor: pushed, or pushed by the time it passes them.
    pub pushed: u64,
    /// Blocks in all.
    pub total: u64,
    /// Whether the completion task is paused.
    pub paused: bool,
}

/// The snapshot store's entry in each snapshot segment.
const STORE: RedirectIndex = RedirectIndex(0);
/// Blocks pushed at least, around a faulting write, unless the snapshot asks otherwise
/// (64 KiB of 512-byte blocks).
pub const COPY_GRANULARITY_BLOCKS: u64 = 128;
/// Blocks the completion task pushes per step: also the largest copy granularity, since a
/// write's push should not outgrow the background's.
const COMPLETION_STEP_BLOCKS: u64 = 2048;
/// DATA PROTECT, WRITE PROTECTED: a write to a read-only snapshot.
const WRITE_PROTECTED: Sense = Sense { key: 0x07, asc: 0x27, ascq: 0x00 };

/// Prefix of snapshot task keys in the metadata store: `snapshot/<source>` is a snapshot's
/// task, `snapshot/<source>/<segment>/<start>` a push ahead of its completion cursor.
pub(super) const TASK_KEY: &[u8] = b"snapshot/";

fn task_key(source: LvId) -> Vec<u8> {
    let mut key = TASK_KEY.to_vec();
    key.extend_from_slice(&source.0.to_be_bytes());
    key
}

fn push_key(source: LvId, segment: usize, start: u64) -> Vec<u8> {
    let mut key = task_key(source);
    key.push(b'/');
    key.extend_from_slice(&(segment as u64).to_be_bytes());
    key.extend_from_slice(&start.to_be_bytes());
    key
}

/// The source a task key under [`TASK_KEY`] belongs to, and whether it is one of its
/// pushes rather than the task itself.
fn key_source(key: &[u8]) -> Option<(LvId, bool)> {
    let rest = key.strip_prefix(TASK_KEY)?;
    let id: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    let source = LvId(u32::from_be_bytes(id));
    match rest.get(4) {
        None => Some((source, false)),
        Some(b'/') if rest.len() == 4 + 1 + 16 => Some((source, true)),
        Some(_) => None,
    }
}

/// What the metadata store keeps of a snapshot still completing.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct SnapshotTask {
    snapshot: LvId,
    /// Every block before it (segment, block) is pushed.
    cursor: (usize, u64),
    /// Blocks a write's push covers at least (records from before the choice existed hold
    /// the default).
    #[serde(default = "default_granularity")]
    granularity: u64,
}

fn default_granularity() -> u64 {
    COPY_GRANULARITY_BLOCKS
}

/// Why `blocks` cannot be a snapshot's copy granularity, if it cannot: a push covers whole
/// granules, aligned, so a granule is a power of two, and no larger than the completion
/// task's step.
pub fn copy_granularity_refusal(blocks: u64) -> Option<String> {
    if !blocks.is_power_of_two() || blocks > COMPLETION_STEP_BLOCKS {
        return Some(format!("{blocks} blocks: a power of two from 1 to {COMPLETION_STEP_BLOCKS} blocks"));
    }
    None
}

fn check_copy_granularity(blocks: u64) -> Result<(), Error> {
    match copy_granularity_refusal(blocks) {
        Some(why) => Err(Error::invalid("copy_granularity_blocks", why)),
        None => Ok(()),
    }
}

/// How a snapshot is made.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SnapshotOptions {
    /// Whether hosts may write it.
    pub writable: bool,
    /// The device its store is claimed on (it must not hold the source, and must be online
    /// with room for the whole source); `None`: the online device with the most room,
    /// preferably outside the source.
    pub store: Option<DeviceId>,
    /// Blocks a write to the source pushes at least, aligned (see
    /// [`copy_granularity_refusal`]); `None`: [`COPY_GRANULARITY_BLOCKS`].
    pub copy_granularity_blocks: Option<u64>,
}

/// A push made for a write, ahead of the completion cursor.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct PushRecord {
    segment: usize,
    blocks: Range<u64>,
}

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
    /// The completion task's (it moves the cursor), not a write's.
    completion: bool,
}

/// A snapshot whose source still has unpushed blocks.
#[derive(Clone, Debug)]
pub(super) struct ActiveSnapshot {
    snapshot: LvId,
    /// Blocks a write's push covers at least, aligned.
    granularity: u64,
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
    /// The mirror side pushes read from last; a failed push reads from the next one.
    read_side: usize,
    /// Pushes made for writes and committed as records of their own, not yet passed by the
    /// committed cursor: (segment, first block).
    recorded: BTreeSet<(usize, u64)>,
    /// Taken (the source's revocation drained) and serving.
    taken: bool,
    /// The final revocation is running.
    finishing: bool,
    /// The completion task is paused by the management API (writes still push what they
    /// need).
    paused: bool,
}

impl ActiveSnapshot {
    fn new(snapshot: LvId, granularity: u64) -> ActiveSnapshot {
        ActiveSnapshot {
            snapshot,
            granularity,
            twins: Vec::new(),
            take_pending: false,
            pushes: BTreeMap::new(),
            waiting: Vec::new(),
            cursor: (0, 0),
            read_side: 0,
            recorded: BTreeSet::new(),
            taken: false,
            finishing: false,
            paused: false,
        }
    }
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

impl Snapshots {
    /// A completed snapshot volume is deleted.
    pub(super) fn forget(&mut self, snapshot: LvId) {
        self.sources.remove(&snapshot);
        self.writable.remove(&snapshot);
    }

    /// Whether snapshot volume `snapshot` is still being taken or completed.
    pub(super) fn completing(&self, snapshot: LvId) -> bool {
        self.active.values().any(|a| a.snapshot == snapshot)
    }

    /// Whether `lv` is a snapshot being taken or completed, or its source.
    pub(super) fn involves(&self, lv: LvId) -> bool {
        self.active.contains_key(&lv) || self.completing(lv) || self.groups.values().any(|g| g.contains(&lv))
    }

    /// A snapshot volume loaded from the metadata store.
    pub(super) fn restore(&mut self, snapshot: LvId, source: LvId, writable: bool) {
        self.sources.insert(snapshot, source);
        self.writable.insert(snapshot, writable);
    }
}

/// The device a snapshot of `source` keeps its pushed blocks on: `chosen` if it has room,
/// else the online device with the most free space, preferably one the source does not use.
fn snapshot_store(
    devices: &DeviceRegistry,
    source: &Volume,
    chosen: Option<DeviceId>,
) -> Result<DeviceId, Error> {
    let used = source.record.layout.devices();
    let blocks = source.record.blocks;
    if let Some(id) = chosen {
        let device = devices.get(id).ok_or(Error::UnknownDevice(id))?;
        if used.contains(&id) {
            return Err(Error::invalid("store", format!("{id:?} holds the source: a store must not")));
        }
        if !device.online || device.largest_free_run() < blocks {
            let free = if device.online { device.largest_free_run() } else { 0 };
            return Err(Error::NoSpace { device: id, wanted: blocks, free });
        }
        return Ok(id);
    }
    devices
        .iter()
        .filter(|d| d.online && d.largest_free_run() >= blocks)
        .max_by_key(|d| (!used.contains(&d.id), d.largest_free_run()))
        .map(|d| d.id)
        .ok_or_else(|| {
            Error::FailedPrecondition(format!("no device has {blocks} free blocks for the snapshot"))
        })
}

impl ControlPath {
    /// Take a snapshot of `source` named `name` (management API): a new volume holding the
    /// source's image at this instant, read-only unless `writable`. The store is claimed on
    /// the device with the most free space outside the source. Returns the snapshot volume;
    /// the image is fixed once the source's writes in flight have drained
    /// ([`ControlEvent::SnapshotTaken`]).
    pub fn create_snapshot(&mut self, source: LvId, name: &str, writable: bool) -> Result<LvId, Error> {
        self.create_snapshot_with(source, name, SnapshotOptions { writable, ..SnapshotOptions::default() })
    }

    /// [`ControlPath::create_snapshot`], with its store and copy granularity as `options`
    /// say.
    pub fn create_snapshot_with(
        &mut self,
        source: LvId,
        name: &str,
        options: SnapshotOptions,
    ) -> Result<LvId, Error> {
        let id = self.prepare_snapshot(source, name, options)?;
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
    /// `options[i]`, if given, says how the snapshot of `sources[i]` is made (else each is
    /// made as [`ControlPath::create_snapshot`] makes a read-only one).
    pub fn create_group_snapshot(
        &mut self,
        sources: &[LvId],
        names: &[String],
        options: &[SnapshotOptions],
    ) -> Result<Vec<LvId>, Error> {
        if sources.len() != names.len() || sources.len() < 2 {
            return Err(Error::invalid("sources", "a group needs two or more volumes, each with a name"));
        }
        if !options.is_empty() && options.len() != sources.len() {
            return Err(Error::invalid(
                "options",
                format!("{} members' options for {} volumes", options.len(), sources.len()),
            ));
        }
        let options_of = |i: usize| options.get(i).copied().unwrap_or_default();
        for o in options {
            if let Some(blocks) = o.copy_granularity_blocks {
                check_copy_granularity(blocks)?;
            }
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
        // Every store fits, checked before any is claimed.
        let mut trial = self.devices.clone();
        for (i, source) in sources.iter().enumerate() {
            let v = self.volumes.get(source).ok_or(Error::UnknownVolume(*source))?;
            let store = snapshot_store(&trial, v, options_of(i).store)?;
            trial.allocate(store, v.record.blocks)?;
        }
        let mut ids = Vec::with_capacity(sources.len());
        let mut failed = None;
        for (i, (source, name)) in sources.iter().zip(names).enumerate() {
            match self.prepare_snapshot(*source, name, options_of(i)) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // Those made (all, unless a commit failed) are taken together.
        let taken = &sources[..ids.len()];
        let mut segments = Vec::new();
        for source in taken {
            segments.extend(self.segments_of(*source));
        }
        if !taken.is_empty() {
            let group = self.op_id();
            self.snapshots.groups.insert(group, taken.to_vec());
            self.revoke_segments(&segments, true, AfterRevocation::GroupSnapshotTake { group });
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(ids),
        }
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
        if self.reconfiguring(source) {
            return Err(Error::FailedPrecondition(format!("{} is being split or merged", v.record.name)));
        }
        if self.snapshots.active.contains_key(&source) {
            return Err(Error::FailedPrecondition(format!(
                "{} has a snapshot still completing",
                v.record.name
            )));
        }
        if self.incremental_involves(source) {
            return Err(Error::FailedPrecondition(format!("{} is an incremental or a base", v.record.name)));
        }
        Ok(())
    }

    /// Claim the store and make the snapshot volume (no access until it is taken).
    fn prepare_snapshot(
        &mut self,
        source: LvId,
        name: &str,
        options: SnapshotOptions,
    ) -> Result<LvId, Error> {
        let SnapshotOptions { writable, store: chosen, copy_granularity_blocks } = options;
        let granularity = copy_granularity_blocks.unwrap_or(COPY_GRANULARITY_BLOCKS);
        check_copy_granularity(granularity)?;
        self.check_snapshot(source, name)?;
        let v = self.volumes.get(&source).ok_or(Error::UnknownVolume(source))?;
        let blocks = v.record.blocks;
        let store = snapshot_store(&self.devices, v, chosen)?;
        let id = self.next_volume_id();
        let before = self.devices.clone();
        let lba = self.devices.allocate(store, blocks)?;
        // Until it is taken the snapshot allows no access at all; taking it gives it the
        // source's states (read through the source) beside its store.
        let segments = v.segments_over(id, store, lba)?;
        let block_size = v.record.block_size;
        let record = VolumeRecord {
            id,
            name: name.to_string(),
            blocks,
            block_size,
            layout: LayoutSpec::Snapshot { source, store, writable },
            allocations: vec![Allocation { device: store, lba, blocks }],
            hosts: Vec::new(),
            lun: 0,
            side_states: Vec::new(),
            generation: 0,
            segment_starts: Vec::new(),
        };
        let snapshot = Volume { record, segments };
        let descriptor = snapshot.descriptor()?;
        self.volumes.insert(id, snapshot);
        // The store's claim, the snapshot and its task, in one transaction.
        let committed = self.records(&[store], &[id]).and_then(|mut batch| {
            let task = SnapshotTask { snapshot: id, cursor: (0, 0), granularity };
            batch.put_json(Table::Tasks, task_key(source), &task)?;
            self.commit(batch)
        });
        if let Err(e) = committed {
            self.volumes.remove(&id);
            self.devices = before;
            self.counters.failed_commits += 1;
            return Err(e);
        }
        self.snapshots.sources.insert(id, source);
        self.snapshots.writable.insert(id, writable);
        self.snapshots.active.insert(source, ActiveSnapshot::new(id, granularity));
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

    /// The source's writes drained: the snapshot is taken.
    pub(super) fn snapshot_take_revoked(&mut self, source: LvId) {
        let Some(snapshot) = self.snapshots.active.get(&source).map(|a| a.snapshot) else { return };
        self.give_snapshot_states(source);
        self.events.push(ControlEvent::SnapshotTaken { source, snapshot });
        self.retry_snapshot_waiters(source);
    }

    /// Give the source's segments the unpushed and pushed states, and the snapshot's the
    /// read-only way through the source's storage beside its store.
    fn give_snapshot_states(&mut self, source: LvId) {
        let Some(snapshot) = self.snapshots.active.get(&source).map(|a| a.snapshot) else { return };
        let writable = self.snapshots.writable.get(&snapshot).copied().unwrap_or(false);
        // On a degraded mirror, pushed blocks take writes through the control path, which
        // stamps the live sides' ages (see `snapshot_follow_sides`).
        let stamps = self.stamps_writes(source);
        // A side whose death procedure is running may already have missed writes: the
        // snapshot never reads it.
        let dying = self.mirror.dying_sides(source);
        let Some(v) = self.volumes.get_mut(&source) else { return };
        let generation = v.record.generation;
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
                let Ok(t) = map.add_redirect(RedirectEntry { fault_on_write: stamps, ..entry.clone() })
                else {
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
                for side in &dying {
                    set_side_everywhere(map, *side, SideState::Dead, generation);
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
    }

    /// The snapshot task records loaded at start (tasks and pushes, in key order): each
    /// snapshot still completing resumes.
    pub(super) fn resume_snapshots(
        &mut self,
        records: Vec<(Vec<u8>, serde_json::Value)>,
    ) -> Result<(), Error> {
        let mut tasks: BTreeMap<LvId, (Option<SnapshotTask>, Vec<PushRecord>)> = BTreeMap::new();
        for (key, value) in records {
            let Some((source, is_push)) = key_source(&key) else {
                return Err(Error::Store(format!("snapshot task key {key:?} is malformed")));
            };
            let entry = tasks.entry(source).or_default();
            if is_push {
                let push = serde_json::from_value(value)
                    .map_err(|e| Error::Store(format!("snapshot push record of {source}: {e}")))?;
                entry.1.push(push);
            } else {
                let task = serde_json::from_value(value)
                    .map_err(|e| Error::Store(format!("snapshot task record of {source}: {e}")))?;
                entry.0 = Some(task);
            }
        }
        for (source, (task, pushes)) in tasks {
            let task =
                task.ok_or_else(|| Error::Store(format!("snapshot pushes of {source} without their task")))?;
            self.resume_snapshot(source, task, pushes)?;
        }
        Ok(())
    }

    /// A snapshot's task record loaded at start, with the records of its pushes: the
    /// snapshot is taken again (no worker holds anything yet), what was pushed is marked in
    /// both Rmaps, and the completion task goes on from the cursor.
    fn resume_snapshot(
        &mut self,
        source: LvId,
        task: SnapshotTask,
        pushes: Vec<PushRecord>,
    ) -> Result<(), Error> {
        let SnapshotTask { snapshot, cursor, granularity } = task;
        if copy_granularity_refusal(granularity).is_some() {
            return Err(Error::Store(format!(
                "snapshot task of {source} with a copy granularity of {granularity} blocks"
            )));
        }
        let src = self
            .volumes
            .get(&source)
            .ok_or_else(|| Error::Store(format!("snapshot task of {source}, which does not exist")))?;
        let snap = self
            .volumes
            .get(&snapshot)
            .ok_or_else(|| Error::Store(format!("snapshot task for {snapshot}, which does not exist")))?;
        let (LayoutSpec::Snapshot { store, .. }, Some(claim)) =
            (&snap.record.layout, snap.record.allocations.first())
        else {
            return Err(Error::Store(format!("snapshot task for {snapshot}, which is not a snapshot")));
        };
        let segments = src.segments_over(snapshot, *store, claim.lba)?;
        let lengths: Vec<u64> = segments.iter().map(|s| s.descriptor().blocks).collect();
        if let Some(p) = pushes.iter().find(|p| lengths.get(p.segment).is_none_or(|n| p.blocks.end > *n)) {
            return Err(Error::Store(format!("snapshot push {p:?} lies outside {source}")));
        }
        let Some(snap) = self.volumes.get_mut(&snapshot) else { return Ok(()) };
        snap.segments = segments;
        let descriptor = snap.descriptor()?;
        self.grant_all(MappingEntry::Lv(descriptor));
        self.snapshots.active.insert(source, ActiveSnapshot::new(snapshot, granularity));
        self.migration_holds_for_snapshot(source);
        self.give_snapshot_states(source);
        let mut pushed: Vec<(usize, Range<u64>)> = Vec::new();
        for (segment, blocks) in lengths.iter().enumerate() {
            let end = match segment.cmp(&cursor.0) {
                std::cmp::Ordering::Less => *blocks,
                std::cmp::Ordering::Equal => cursor.1.min(*blocks),
                std::cmp::Ordering::Greater => 0,
            };
            if end > 0 {
                pushed.push((segment, 0..end));
            }
        }
        pushed.extend(pushes.iter().map(|p| (p.segment, p.blocks.clone())));
        for (segment, blocks) in &pushed {
            self.snapshot_map_pushed(snapshot, *segment, blocks.clone());
            self.source_map_pushed(source, *segment, blocks.clone());
        }
        if let Some(a) = self.snapshots.active.get_mut(&source) {
            a.cursor = cursor;
            a.recorded = pushes.iter().map(|p| (p.segment, p.blocks.start)).collect();
        }
        if pushed.is_empty() {
            // Nothing was pushed, so nothing was written over the source since the snapshot
            // was first taken (if it was): its image is the source's now, and says so again.
            self.events.push(ControlEvent::SnapshotTaken { source, snapshot });
        }
        Ok(())
    }

    /// Pause or resume the completion task of snapshot volume `snapshot` (management API).
    /// While paused, only writes to the source push blocks; a restart resumes it.
    pub fn pause_snapshot_completion(&mut self, snapshot: LvId, paused: bool) -> Result<(), Error> {
        let a = self
            .snapshots
            .active
            .values_mut()
            .find(|a| a.snapshot == snapshot)
            .ok_or_else(|| Error::FailedPrecondition(format!("{snapshot} is not completing")))?;
        a.paused = paused;
        Ok(())
    }

    /// Every snapshot whose completion still runs (taken or being taken), with how far its
    /// completion task has come.
    pub fn snapshot_completions(&self) -> Vec<SnapshotProgress> {
        self.snapshots
            .active
            .iter()
            .filter_map(|(source, a)| {
                let v = self.volumes.get(source)?;
                let (segment, block) = a.cursor;
                let before: u64 = v.segments.iter().take(segment).map(|m| m.descriptor().blocks).sum();
                let total = v.record.blocks;
                Some(SnapshotProgress {
                    snapshot: a.snapshot,
                    pushed: (before + block).min(total),
                    total,
                    paused: a.paused,
                })
            })
            .collect()
    }

    /// The snapshot whose states the tables of `source` hold: taken and still completing.
    pub(super) fn snapshot_over(&self, source: LvId) -> Option<LvId> {
        self.snapshots.active.get(&source).filter(|a| a.taken).map(|a| a.snapshot)
    }

    /// The source whose storage `snapshot` still reads its unpushed blocks through.
    pub(super) fn reading_through(&self, snapshot: LvId) -> Option<LvId> {
        let source = *self.snapshots.sources.get(&snapshot)?;
        (self.snapshot_over(source) == Some(snapshot)).then_some(source)
    }

    /// The mirror sides of `source` changed state (a death, a resync's start or end) while a
    /// snapshot's states are in its tables: the snapshot's ways through the source get the
    /// same side states, so it never reads a dead or resynchronizing side, and the pushed
    /// states take fast-path writes only while no side is dead (a write on a degraded
    /// mirror reaches the control path, which stamps the live sides' ages). The unpushed
    /// states always fault writes. Grants the snapshot's tables; the caller grants the
    /// source's.
    pub(super) fn snapshot_follow_sides(&mut self, source: LvId) {
        let Some(snapshot) = self.snapshot_over(source) else { return };
        let stamps = self.stamps_writes(source);
        let twins = self.snapshots.active.get(&source).map(|a| a.twins.clone()).unwrap_or_default();
        let Some(v) = self.volumes.get_mut(&source) else { return };
        let states = v.record.side_states.clone();
        let generation = v.record.generation;
        for (map, twins) in v.segments.iter_mut().zip(&twins) {
            for (unpushed, pushed) in twins {
                if let Ok(e) = map.redirect_mut(*unpushed) {
                    e.fault_on_write = true;
                }
                if let Ok(e) = map.redirect_mut(*pushed) {
                    e.fault_on_write = stamps;
                }
            }
        }
        let Some(snap) = self.volumes.get_mut(&snapshot) else { return };
        for map in &mut snap.segments {
            for (side, state) in states.iter().enumerate() {
                set_side_everywhere(map, side, *state, generation);
            }
        }
        self.grant_tables(snapshot);
    }

    /// The snapshot's Rmap reads `blocks` of `segment` from its store.
    fn snapshot_map_pushed(&mut self, snapshot: LvId, segment: usize, blocks: Range<u64>) -> Option<VsegId> {
        let map = self.volumes.get_mut(&snapshot)?.segments.get_mut(segment)?;
        map.set_range(blocks, STORE).ok()?;
        Some(map.descriptor().id)
    }

    /// The source's Rmap lets writes to `blocks` of `segment` through (the pushed twins).
    fn source_map_pushed(&mut self, source: LvId, segment: usize, blocks: Range<u64>) -> Option<VsegId> {
        let twins = self.snapshots.active.get(&source)?.twins.get(segment)?.clone();
        let map = self.volumes.get_mut(&source)?.segments.get_mut(segment)?;
        let extents: Vec<_> = map.rmap().overlapping(blocks.clone()).collect();
        for e in extents {
            if let Some(t) = twins.get(&e.value) {
                let piece = e.start.max(blocks.start)..e.end.min(blocks.end);
                let _ = map.set_range(piece, *t);
            }
        }
        Some(map.descriptor().id)
    }

    /// The other devices I/O to `lv` may need while a snapshot completes: a source's writes
    /// push to the snapshot's store, a snapshot's reads go through the source's storage.
    pub(super) fn snapshot_devices(&self, lv: LvId) -> Vec<DeviceId> {
        let source = match self.snapshots.sources.get(&lv) {
            Some(source) if self.snapshots.active.get(source).is_some_and(|a| a.snapshot == lv) => *source,
            Some(_) => return Vec::new(),
            None => lv,
        };
        let Some(a) = self.snapshots.active.get(&source) else { return Vec::new() };
        let other = if lv == source { a.snapshot } else { source };
        self.volumes.get(&other).map(|v| v.record.layout.devices()).unwrap_or_default()
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
        let granularity =
            self.snapshots.active.get(&source).map_or(COPY_GRANULARITY_BLOCKS, |a| a.granularity);
        let mut needed = Vec::new();
        let touched = granules_touched(v, request.lba, u64::from(request.blocks), granularity);
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
            self.start_push(source, i, r, false);
        }
    }

    fn start_push(&mut self, source: LvId, segment: usize, blocks: Range<u64>, completion: bool) {
        let Some(active) = self.snapshots.active.get(&source) else { return };
        let Some(snap) = self.volumes.get(&active.snapshot) else { return };
        let Some(map) = snap.segments.get(segment) else { return };
        // Old data is read through whatever state each extent of the range is in: of a
        // mirror, only sides that are alive and current (the source's side states).
        let Some((reads, writes)) = legs_into(map, blocks.clone(), STORE, active.read_side) else { return };
        let block_size = snap.record.block_size as usize;
        let id = self.op_id();
        let n = blocks.end - blocks.start;
        let push = Push { segment, blocks, stage: PushStage::Copying, completion };
        if let Some(a) = self.snapshots.active.get_mut(&source) {
            a.pushes.insert(id, push);
        }
        self.start_block_copy(CopyOwner::Push { source, push: id }, reads, writes, n, block_size);
    }

    /// The copy of push `id` ended.
    pub(super) fn push_copied(&mut self, source: LvId, id: u64, copied: bool) {
        let Some(active) = self.snapshots.active.get(&source) else { return };
        let snapshot = active.snapshot;
        let Some(push) = active.pushes.get(&id) else { return };
        if push.stage != PushStage::Copying {
            return;
        }
        // Recorded before anything points at the store: a restarted engine finds every
        // push a write may since have gone over.
        let recorded = copied && self.record_push(source, id).is_ok();
        let Some(active) = self.snapshots.active.get_mut(&source) else { return };
        let Some(push) = active.pushes.get_mut(&id) else { return };
        if !recorded {
            // Nothing changed in the maps: drop the push (the completion task comes back to
            // it); waiting writes try again.
            let at = (push.segment, push.blocks.start);
            active.pushes.remove(&id);
            active.cursor = active.cursor.min(at);
            // A mirror side may be failing before anything declared it dead.
            active.read_side += 1;
            self.retry_snapshot_waiters(source);
            return;
        }
        // Pushed. Now, in this order: the snapshot's Rmap, drain the reads that used the
        // old snapshot mapping, then the source's Rmap.
        push.stage = PushStage::Draining;
        let (segment, blocks) = (push.segment, push.blocks.clone());
        let Some(vseg) = self.snapshot_map_pushed(snapshot, segment, blocks.clone()) else { return };
        let drain = PendingFilter {
            vseg: Some(vseg),
            range: Some((blocks.start, blocks.end - blocks.start)),
            ..PendingFilter::default()
        };
        let key = MappingKey::Extents { vseg, blocks };
        self.revoke(vec![key], vec![drain], None, AfterRevocation::SnapshotPushed { source, push: id });
    }

    /// Commit push `id` of `source`'s snapshot: a completion push moves the task's cursor
    /// past it (and past the write pushes it overtakes, whose records go); a write's push is
    /// a record of its own.
    fn record_push(&mut self, source: LvId, id: u64) -> Result<(), Error> {
        let Some(active) = self.snapshots.active.get(&source) else { return Ok(()) };
        let Some(push) = active.pushes.get(&id) else { return Ok(()) };
        let mut batch = Batch::new();
        let mut passed = Vec::new();
        if push.completion {
            let cursor = (push.segment, push.blocks.end);
            let task = SnapshotTask { snapshot: active.snapshot, cursor, granularity: active.granularity };
            batch.put_json(Table::Tasks, task_key(source), &task)?;
            passed = active.recorded.range(..cursor).copied().collect();
            for (segment, start) in &passed {
                batch.delete(Table::Tasks, push_key(source, *segment, *start));
            }
        } else {
            let record = PushRecord { segment: push.segment, blocks: push.blocks.clone() };
            batch.put_json(Table::Tasks, push_key(source, push.segment, push.blocks.start), &record)?;
        }
        let (completion, at) = (push.completion, (push.segment, push.blocks.start));
        if let Err(e) = self.commit(batch) {
            self.counters.failed_commits += 1;
            return Err(e);
        }
        let Some(active) = self.snapshots.active.get_mut(&source) else { return Ok(()) };
        if completion {
            for key in passed {
                active.recorded.remove(&key);
            }
        } else {
            active.recorded.insert(at);
        }
        Ok(())
    }

    /// The snapshot's old mapping has drained: the source may write over the old data.
    pub(super) fn snapshot_pushed_revoked(&mut self, source: LvId, id: u64) {
        let Some(active) = self.snapshots.active.get_mut(&source) else { return };
        let Some(push) = active.pushes.remove(&id) else { return };
        if let Some(vseg) = self.source_map_pushed(source, push.segment, push.blocks.clone()) {
            self.grant_extents(source, vseg, push.blocks);
        }
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
            if !a.taken || a.finishing || a.paused || !a.pushes.is_empty() || !a.waiting.is_empty() {
                continue;
            }
            // After a restart, pushes wait for the devices to answer again.
            if self.awaits_devices(source) || self.awaits_devices(a.snapshot) {
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
                Some((segment, blocks)) => self.start_push(source, segment, blocks, true),
                None if self.all_pushed(source) => self.finish_snapshot(source),
                // A push behind the cursor failed: go over it again.
                None => {
                    if let Some(a) = self.snapshots.active.get_mut(&source) {
                        a.cursor = (0, 0);
                    }
                }
            }
        }
    }

    /// Whether every block of the snapshot of `source` is in its store.
    fn all_pushed(&self, source: LvId) -> bool {
        let Some(a) = self.snapshots.active.get(&source) else { return true };
        let Some(snap) = self.volumes.get(&a.snapshot) else { return true };
        snap.segments.iter().all(|map| map.rmap().iter().all(|e| e.value == STORE))
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
        let Some(a) = self.snapshots.active.get(&source) else { return };
        // The end is committed first: once the source writes through, a restart must not
        // push again from it.
        let mut batch = Batch::new();
        batch.delete(Table::Tasks, task_key(source));
        for (segment, start) in &a.recorded {
            batch.delete(Table::Tasks, push_key(source, *segment, *start));
        }
        if self.commit(batch).is_err() {
            // Still completing: the next tick finishes it again.
            self.counters.failed_commits += 1;
            if let Some(a) = self.snapshots.active.get_mut(&source) {
                a.finishing = false;
            }
            return;
        }
        let Some(a) = self.snapshots.active.remove(&source) else { return };
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
            }
        }
        // A mirror's procedures find its single entry at index 0 again.
        self.mirror_tables_after_snapshot(source);
        if let Some(v) = self.volumes.get_mut(&a.snapshot) {
            for map in &mut v.segments {
                let all = 0..map.descriptor().blocks;
                let _ = map.set_range(all, STORE);
                map.coalesce();
                map.remove_unreferenced();
            }
        }
        self.grant_tables(source);
        self.grant_tables(a.snapshot);
        let waiting = a.waiting;
        self.events.push(ControlEvent::SnapshotComplete { source, snapshot: a.snapshot });
        // A migration held for the snapshot goes on with its states renamed to the twins.
        self.migration_after_snapshot(source, &a.twins);
        for (io, request, data) in waiting {
            self.run_manual(io, request, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_and_push_keys_name_their_source() {
        let source = LvId(0x0102_0304);
        assert_eq!(key_source(&task_key(source)), Some((source, false)));
        assert_eq!(key_source(&push_key(source, 3, u64::MAX)), Some((source, true)));
        // The task sorts before its pushes, and pushes in (segment, block) order.
        assert!(task_key(source) < push_key(source, 0, 0));
        assert!(push_key(source, 0, 1 << 40) < push_key(source, 1, 0));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let source = LvId(7);
        let mut short = task_key(source);
        short.pop();
        assert_eq!(key_source(&short), None);
        let mut truncated = push_key(source, 1, 2);
        truncated.pop();
        assert_eq!(key_source(&truncated), None);
        let mut wrong = task_key(source);
        wrong.push(b'x');
        assert_eq!(key_source(&wrong), None);
    }

    #[test]
    fn a_snapshot_task_without_its_volumes_is_a_clear_error() {
        use crate::control_path::ControlPathConfig;
        use crate::control_path::persist::discovered_devices;
        use crate::store::{MemoryStore, MetadataStore};
        let mut store = MemoryStore::new();
        store.commit(discovered_devices(1, 10_000)).unwrap();
        let mut batch = Batch::new();
        let task = SnapshotTask { snapshot: LvId(2), cursor: (0, 0), granularity: COPY_GRANULARITY_BLOCKS };
        batch.put_json(Table::Tasks, task_key(LvId(1)), &task).unwrap();
        store.commit(batch).unwrap();
        let mut cp = ControlPath::new(ControlPathConfig::new(1, 4, 2));
        let error = cp.attach_store(Box::new(store)).unwrap_err().to_string();
        assert!(error.contains("snapshot task of") && error.contains("does not exist"), "{error}");

        let mut store = MemoryStore::new();
        let mut batch = Batch::new();
        batch
            .put_json(Table::Tasks, push_key(LvId(1), 0, 0), &PushRecord { segment: 0, blocks: 0..8 })
            .unwrap();
        store.commit(batch).unwrap();
        let mut cp = ControlPath::new(ControlPathConfig::new(1, 4, 2));
        let error = cp.attach_store(Box::new(store)).unwrap_err().to_string();
        assert!(error.contains("without their task"), "{error}");
    }

    #[test]
    fn a_snapshot_task_from_before_the_granularity_choice_has_the_default_and_a_bad_one_is_a_clear_error() {
        let old: SnapshotTask = serde_json::from_str(r#"{"snapshot":2,"cursor":[0,16]}"#).unwrap();
        assert_eq!(
            old,
            SnapshotTask { snapshot: LvId(2), cursor: (0, 16), granularity: COPY_GRANULARITY_BLOCKS }
        );

        use crate::control_path::ControlPathConfig;
        use crate::control_path::persist::discovered_devices;
        use crate::store::{MemoryStore, MetadataStore};
        let mut store = MemoryStore::new();
        store.commit(discovered_devices(1, 10_000)).unwrap();
        let mut batch = Batch::new();
        let task = SnapshotTask { snapshot: LvId(2), cursor: (0, 0), granularity: 3 };
        batch.put_json(Table::Tasks, task_key(LvId(1)), &task).unwrap();
        store.commit(batch).unwrap();
        let mut cp = ControlPath::new(ControlPathConfig::new(1, 4, 2));
        let error = cp.attach_store(Box::new(store)).unwrap_err().to_string();
        assert!(error.contains("a copy granularity of 3 blocks"), "{error}");
    }

    /// Snapshots of a mirror, on the leg-timeout bench: volume `m` of 4096 blocks mirrored
    /// over devices 1 and 2, workers and devices answering at once. The store lands on one of
    /// those devices (there is no third), beside the sides.
    mod mirrored {
        use dve_fp_api::mapping::SideState;

        use super::*;
        use crate::control_path::leg_timeout::tests::Bench;

        const BLOCK: usize = 512;

        /// The mirror sides reads of all of `lv` may use, whichever side balancing starts at.
        fn read_sides(bench: &Bench, lv: LvId) -> BTreeSet<usize> {
            let v = bench.cp.volume(lv).unwrap();
            let mut sides = BTreeSet::new();
            for start in 0..2 {
                let mut side = start;
                sides.extend(
                    v.legs(0, v.record.blocks, false, &mut side).unwrap().iter().filter_map(|l| l.side),
                );
            }
            sides
        }

        /// Whether every extent of the source's (one) segment faults writes.
        fn source_faults_every_write(bench: &Bench) -> bool {
            let map = &bench.cp.volume(bench.lv).unwrap().segments[0];
            map.rmap().iter().all(|e| map.redirects().get(e.value).is_some_and(|r| r.fault_on_write))
        }

        fn run_until(bench: &mut Bench, done: impl Fn(&Bench) -> bool) {
            for _ in 0..1000 {
                if done(bench) {
                    return;
                }
                bench.tick();
            }
            panic!("never done: {:?}", bench.events);
        }

        #[test]
        fn a_snapshot_of_a_degraded_mirror_reads_and_pushes_only_current_sides() {
            let mut bench = Bench::new();
            let lv = bench.lv;
            bench.cp.side_failed(lv, 1);
            bench.settle();
            // Written while side 1 is dead: only side 0 holds it.
            bench.host_write(lv, 1, 0, 8, 0xA1);
            assert_eq!(bench.completed.get(&1), Some(&IoStatus::GOOD));
            assert_eq!(bench.side_blocks(1, 0, 8), vec![0; 8 * BLOCK]);
            let snap = bench.cp.create_snapshot(lv, "snap", false).unwrap();
            bench.settle();
            assert!(bench.cp.snapshot_completing(snap));
            assert_eq!(read_sides(&bench, snap), BTreeSet::from([0]), "the dead side is never read");

            // Side 1 returns: resynchronizing, it still misses the write, and is not read.
            bench.side_1_returns();
            assert_eq!(bench.side_states(), [SideState::Alive, SideState::Resync]);
            assert_eq!(
                read_sides(&bench, snap),
                BTreeSet::from([0]),
                "the resynchronizing side is never read"
            );
            assert!(source_faults_every_write(&bench), "no write may pass an unpushed block");

            // A write over the range pushes it from side 0, whatever the read balancing says.
            bench.host_write(lv, 2, 0, 8, 0xC2);
            assert_eq!(bench.completed.get(&2), Some(&IoStatus::GOOD));
            for first in 0..2 {
                assert_eq!(bench.volume_blocks(snap, 0, 8, first), vec![0xA1; 8 * BLOCK]);
            }
            run_until(&mut bench, |b| !b.cp.snapshot_completing(snap) && b.cp.resyncs().is_empty());
            assert_eq!(bench.side_states(), [SideState::Alive; 2]);
            assert_eq!(bench.volume_blocks(snap, 0, 8, 0), vec![0xA1; 8 * BLOCK]);
            assert_eq!(bench.volume_blocks(snap, 8, 4088, 0), vec![0; 4088 * BLOCK]);
            assert_eq!(bench.side_blocks(1, 0, 4096), bench.side_blocks(0, 0, 4096));
            assert_eq!(bench.side_blocks(1, 0, 8), vec![0xC2; 8 * BLOCK]);
            // One entry per segment again, at index 0, taking fast-path writes.
            let map = &bench.cp.volume(lv).unwrap().segments[0];
            assert_eq!(
                map.redirects().iter().map(|(i, e)| (i, e.fault_on_write)).collect::<Vec<_>>(),
                [(STORE, false)]
            );
        }

        /// The blocks of the snapshot's (one) segment that point at its store.
        fn pushed(bench: &Bench, snap: LvId) -> Vec<Range<u64>> {
            let map = &bench.cp.volume(snap).unwrap().segments[0];
            map.rmap().iter().filter(|e| e.value == STORE).map(|e| e.start..e.end).collect()
        }

        #[test]
        fn a_write_pushes_whole_granules_of_the_snapshots_own_granularity() {
            for (granularity, expected) in [(None, 0..128), (Some(8), 96..104), (Some(1), 100..101)] {
                let mut bench = Bench::new();
                let lv = bench.lv;
                let options =
                    SnapshotOptions { copy_granularity_blocks: granularity, ..SnapshotOptions::default() };
                let snap = bench.cp.create_snapshot_with(lv, "snap", options).unwrap();
                // Paused, the completion task pushes nothing: only writes do.
                bench.cp.pause_snapshot_completion(snap, true).unwrap();
                bench.settle();
                bench.host_write(lv, 1, 100, 1, 0xA1);
                assert_eq!(bench.completed.get(&1), Some(&IoStatus::GOOD));
                assert_eq!(pushed(&bench, snap), [expected], "granularity {granularity:?}");
                assert_eq!(bench.volume_blocks(snap, 96, 8, 0), vec![0; 8 * BLOCK], "the old image");
                // The task record keeps the granularity for a restarted engine.
                let store = bench.cp.store.as_deref().unwrap();
                use crate::store::get_json;
                let task: SnapshotTask = get_json(store, Table::Tasks, &task_key(lv)).unwrap().unwrap();
                assert_eq!(task.granularity, granularity.unwrap_or(COPY_GRANULARITY_BLOCKS));
                bench.cp.pause_snapshot_completion(snap, false).unwrap();
                run_until(&mut bench, |b| !b.cp.snapshot_completing(snap));
                assert_eq!(bench.volume_blocks(snap, 96, 8, 0), vec![0; 8 * BLOCK]);
                assert_eq!(bench.volume_blocks(lv, 100, 1, 0), vec![0xA1; BLOCK]);
            }
        }

        #[test]
        fn a_copy_granularity_that_is_not_a_power_of_two_up_to_a_step_is_refused() {
            let mut bench = Bench::new();
            let lv = bench.lv;
            let volumes = bench.cp.volumes().count();
            for blocks in [0, 3, 96, 4096] {
                let options =
                    SnapshotOptions { copy_granularity_blocks: Some(blocks), ..SnapshotOptions::default() };
                let error = bench.cp.create_snapshot_with(lv, "snap", options).unwrap_err().to_string();
                assert!(
                    error.contains("copy_granularity_blocks") && error.contains("power of two"),
                    "{error}"
                );
            }
            assert_eq!(bench.cp.volumes().count(), volumes, "nothing made");
            let snap = bench.cp.create_snapshot_with(
                lv,
                "snap",
                SnapshotOptions {
                    copy_granularity_blocks: Some(COMPLETION_STEP_BLOCKS),
                    ..SnapshotOptions::default()
                },
            );
            assert!(snap.is_ok(), "{snap:?}");
        }

        #[test]
        fn a_side_dying_while_a_mirror_snapshot_completes_is_neither_read_nor_left_stale() {
            let mut bench = Bench::new();
            let lv = bench.lv;
            let snap = bench.cp.create_snapshot(lv, "snap", false).unwrap();
            bench.settle();
            bench.host_write(lv, 1, 0, 8, 0xA1);
            assert_eq!(bench.completed.get(&1), Some(&IoStatus::GOOD));
            assert!(!source_faults_every_write(&bench), "pushed blocks take fast-path writes");

            bench.cp.side_failed(lv, 1);
            bench.settle();
            assert_eq!(bench.side_states(), [SideState::Alive, SideState::Dead]);
            assert_eq!(read_sides(&bench, snap), BTreeSet::from([0]), "the dead side is not read");
            // Degraded: pushed blocks too fault writes, so the control path stamps ages.
            assert!(source_faults_every_write(&bench));

            // A write in the second age extent reaches side 0 only; the resync must copy it.
            bench.host_write(lv, 2, 2048, 8, 0xB2);
            assert_eq!(bench.completed.get(&2), Some(&IoStatus::GOOD));
            run_until(&mut bench, |b| !b.cp.snapshot_completing(snap));
            assert_eq!(
                bench.volume_blocks(snap, 0, 4096, 0),
                vec![0; 4096 * BLOCK],
                "the image before both writes"
            );
            // Still degraded after the end: writes fault until their age extent is stamped.
            assert!(source_faults_every_write(&bench));

            bench.side_1_returns();
            run_until(&mut bench, |b| b.cp.resyncs().is_empty());
            assert_eq!(bench.side_states(), [SideState::Alive; 2]);
            assert_eq!(
                bench.side_blocks(1, 2048, 8),
                vec![0xB2; 8 * BLOCK],
                "the write was stamped and copied"
            );
            assert_eq!(bench.side_blocks(1, 0, 4096), bench.side_blocks(0, 0, 4096));
        }
    }
}
