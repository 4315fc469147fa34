//! Online migration (seed 003 section 6.3, Figs. 23, 24). Each segment gets three redirect
//! states: not yet migrated (the old storage, read/write), the copy barrier (the old
//! storage, fault-on-write) and migrated (the new storage, read/write). A copy agent moves
//! the barrier chunk by chunk: fence the chunk (revoke it and drain its writes), copy it
//! old to new, point it at the new storage. Only writes inside the barrier fault; they wait
//! and run when it moves. Reads never fault. At the end the old states go and the volume's
//! layout names the new devices only.
//!
//! A migration is a task in the metadata store: its claims at the start, then its cursor
//! with each chunk, committed before the chunk points at the new storage (so no write goes
//! there that a restart would not find), and its end with the volume's new layout. A
//! restarted engine rebuilds the three states, points the copied part at the new storage
//! and goes on from the cursor.
//!
//! A cancelled migration runs the same agent backwards over what it had moved (see
//! [`cancel`]).

mod cancel;

use core::num::NonZeroU64;
use core::ops::Range;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use dve_fp_api::ids::{DeviceId, IoTag, LvId};
use dve_fp_api::io::HostIo;
use dve_fp_api::mapping::{
    MirrorSet, Placement, RedirectEntry, RedirectIndex, SideLayout, StorageDescriptor, StripeSet,
};
use dve_fp_api::message::MappingEntry;

use super::block_copy::CopyOwner;
use super::revocation::AfterRevocation;
use super::{ControlEvent, ControlPath};
use crate::error::Error;
use crate::store::{Batch, Table};
use crate::volume::{Allocation, LayoutSpec, descriptor_legs};

/// The three redirect states of a migrating segment (Fig. 23).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct SegmentStates {
    /// The old storage, read/write: not migrated yet.
    not_migrated: RedirectIndex,
    /// The old storage, fault-on-write: the copy barrier.
    barrier: RedirectIndex,
    /// The new storage, read/write: migrated.
    migrated: RedirectIndex,
    /// The new storage, fault-on-write: the barrier of a cancel's copy back.
    returning: RedirectIndex,
}

/// Which way a chunk is copied.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Direction {
    /// Old storage to new: the migration.
    Forward,
    /// New storage back to old: a cancel.
    Back,
}

/// The chunk being copied: writes inside it wait.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Barrier {
    segment: usize,
    range: Range<u64>,
    direction: Direction,
}

/// Progress of one migration.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MigrationProgress {
    /// The volume.
    pub lv: LvId,
    /// Blocks copied.
    pub copied: u64,
    /// Blocks in all.
    pub total: u64,
    /// Whether it is paused.
    pub paused: bool,
    /// Whether it is being cancelled: `copied` then counts down as the moved blocks go back.
    pub cancelling: bool,
}

/// A migration in progress.
#[derive(Clone, Debug)]
pub(super) struct Migration {
    /// Old device -> new device, position by position.
    moves: Vec<(DeviceId, DeviceId)>,
    /// Per segment, its three states.
    states: Vec<SegmentStates>,
    /// The new claims, in the layout's allocation order.
    allocations: Vec<Allocation>,
    /// The barrier, while one is up.
    barrier: Option<Barrier>,
    /// Where the next chunk starts; while a forward barrier is up, where it ends.
    cursor: (usize, u64),
    /// A cancel: everything before it is back on the old storage (and points there).
    returned: Option<(usize, u64)>,
    /// The block copy of the barrier chunk.
    copy: Option<u64>,
    /// The barrier is fenced from the fast path (its writes drained).
    fenced: bool,
    copied: u64,
    total: u64,
    /// Writes that met the barrier, waiting for it to move.
    waiting: Vec<(IoTag, HostIo, Option<Bytes>)>,
    paused: bool,
    /// Bytes per second the copy agent may move, if limited.
    rate_limit: Option<NonZeroU64>,
    /// With a rate limit: when the next chunk may start.
    next_chunk_at: u64,
    /// A snapshot of the volume is being taken or completed: no new chunk until it ends.
    held_for_snapshot: bool,
    finishing: bool,
}

/// Prefix of migration task keys in the metadata store.
pub(super) const TASK_KEY: &[u8] = b"migration/";

fn task_key(lv: LvId) -> Vec<u8> {
    let mut key = TASK_KEY.to_vec();
    key.extend_from_slice(&lv.0.to_be_bytes());
    key
}

/// Prefix of the marks of volumes whose last migration was cancelled: committed with the
/// cancelled migration's end and deleted with the next one's (or the volume's), so that its
/// task reads CANCELLED after a restart too.
pub(super) const CANCELLED_KEY: &[u8] = b"cancelled-migration/";

pub(super) fn cancelled_key(lv: LvId) -> Vec<u8> {
    let mut key = CANCELLED_KEY.to_vec();
    key.extend_from_slice(&lv.0.to_be_bytes());
    key
}

/// What the metadata store keeps of a migration.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
struct MigrationRecord {
    lv: LvId,
    moves: Vec<(DeviceId, DeviceId)>,
    allocations: Vec<Allocation>,
    /// Everything before it (segment, block) points at the new storage...
    cursor: (usize, u64),
    /// ... but, once cancelled, what comes before this points at the old storage again.
    #[serde(default)]
    returned: Option<(usize, u64)>,
    /// Bytes per second the copy agent may move, if limited.
    #[serde(default)]
    rate_limit: Option<NonZeroU64>,
}

/// Migrations by volume.
#[derive(Clone, Debug, Default)]
pub(super) struct Migrations {
    active: BTreeMap<LvId, Migration>,
    /// Volumes whose last migration was cancelled (until another starts), so that its task
    /// reads CANCELLED rather than DONE.
    cancelled: BTreeSet<LvId>,
}

impl Migrations {
    /// Whether `lv` is migrating.
    pub(super) fn involves(&self, lv: LvId) -> bool {
        self.active.contains_key(&lv)
    }

    /// Forget a deleted volume (its id may name another volume later).
    pub(super) fn forget(&mut self, lv: LvId) {
        self.cancelled.remove(&lv);
    }
}

/// `descriptor` with every placement on a moved device rewritten to the new device, at the
/// same offset within the new claim.
fn moved(
    descriptor: &StorageDescriptor,
    map: &dyn Fn(Placement) -> Placement,
) -> Result<StorageDescriptor, Error> {
    let side = |s: &SideLayout| -> Result<SideLayout, Error> {
        Ok(match s {
            SideLayout::Single(p) => SideLayout::Single(map(*p)),
            SideLayout::Stripe(set) => SideLayout::Stripe(StripeSet::new(
                set.unit_shift(),
                set.members().iter().map(|p| map(*p)).collect(),
            )?),
        })
    };
    Ok(match descriptor {
        StorageDescriptor::Single(p) => StorageDescriptor::Single(map(*p)),
        StorageDescriptor::Stripe(set) => StorageDescriptor::Stripe(StripeSet::new(
            set.unit_shift(),
            set.members().iter().map(|p| map(*p)).collect(),
        )?),
        StorageDescriptor::Mirror(m) => {
            let sides = m
                .sides()
                .iter()
                .map(|s| Ok(dve_fp_api::mapping::MirrorSide { layout: side(&s.layout)?, ..*s }))
                .collect::<Result<Vec<_>, Error>>()?;
            let mut set = MirrorSet::new(sides, m.read_policy)?;
            set.generation = m.generation;
            StorageDescriptor::Mirror(set)
        }
        StorageDescriptor::Journaled(j) => {
            StorageDescriptor::Journaled(dve_fp_api::mapping::JournaledLayout {
                primary: side(&j.primary)?,
                group: j.group,
            })
        }
    })
}

impl ControlPath {
    /// Migrate `lv` online (management API): its data devices, in layout order, move to
    /// `to`, one for one. Copying starts at the next tick, one chunk at a time, each chunk
    /// (and each chunk copied back if it is cancelled) starting no sooner than `rate_limit`
    /// allows for the one before.
    pub fn start_migration(
        &mut self,
        lv: LvId,
        to: &[DeviceId],
        rate_limit: Option<NonZeroU64>,
    ) -> Result<(), Error> {
        let v = self.volumes.get(&lv).ok_or(Error::UnknownVolume(lv))?;
        if self.migrations.active.contains_key(&lv) {
            return Err(Error::FailedPrecondition(format!("{} is already migrating", v.record.name)));
        }
        if let Some(rate) = rate_limit
            && rate.get() < u64::from(v.record.block_size)
        {
            return Err(Error::invalid(
                "rate_limit_bytes_per_sec",
                format!("{rate} bytes per second is less than one {}-byte block", v.record.block_size),
            ));
        }
        let data: Vec<DeviceId> = match &v.record.layout {
            LayoutSpec::Linear { devices } | LayoutSpec::Stripe { devices, .. } => devices.clone(),
            LayoutSpec::Journal { primary, .. } => vec![*primary],
            LayoutSpec::Mirror { .. } | LayoutSpec::Raid10 { .. } => {
                return Err(Error::FailedPrecondition(format!(
                    "migrating mirrored volumes is not supported yet: to move a side of {}, add a \
                     side on the new device (AddMirrorSide), let it resynchronize, then remove the \
                     old side (RemoveMirrorSide)",
                    v.record.name
                )));
            }
            LayoutSpec::Snapshot { .. } | LayoutSpec::Incremental { .. } => {
                return Err(Error::FailedPrecondition(
                    "a snapshot or an incremental cannot be migrated".into(),
                ));
            }
        };
        if to.len() != data.len() {
            return Err(Error::invalid(
                "to",
                format!("{} destination devices for {} data devices", to.len(), data.len()),
            ));
        }
        if self.snapshot_involves(lv)
            || self.incremental_involves(lv)
            || self.reconfiguring(lv)
            || v.segments.iter().any(|s| s.redirects().len() != 1)
        {
            return Err(Error::FailedPrecondition(format!(
                "{} is being reconfigured (a snapshot completing, a mirror resync): try again when it ends",
                v.record.name
            )));
        }
        let used = v.record.layout.devices();
        if let Some(d) = to.iter().find(|d| used.contains(d)) {
            return Err(Error::invalid("to", format!("{d:?} already holds the volume")));
        }
        let moves: Vec<(DeviceId, DeviceId)> = data.iter().copied().zip(to.iter().copied()).collect();
        // Claim the new space for every allocation on a moved device, checked first.
        let wanted: Vec<(usize, DeviceId, u64)> = v
            .record
            .allocations
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                moves.iter().find(|(old, _)| *old == a.device).map(|(_, new)| (i, *new, a.blocks))
            })
            .collect();
        let mut need: BTreeMap<DeviceId, u64> = BTreeMap::new();
        for (_, d, n) in &wanted {
            *need.entry(*d).or_default() += n;
        }
        // Every claim is tried on a copy first, so a refused migration claims nothing.
        let mut trial = self.devices.clone();
        for (d, n) in &need {
            let dev = self.devices.get(*d).ok_or(Error::UnknownDevice(*d))?;
            if !dev.online {
                return Err(Error::NoSpace { device: *d, wanted: *n, free: 0 });
            }
        }
        for (_, d, n) in &wanted {
            trial.allocate(*d, *n)?;
        }
        let before = self.devices.clone();
        let mut allocations = v.record.allocations.clone();
        for (i, d, n) in wanted {
            let lba = self.devices.allocate(d, n)?;
            allocations[i] = Allocation { device: d, lba, blocks: n };
        }
        let record = MigrationRecord { lv, moves, allocations, cursor: (0, 0), returned: None, rate_limit };
        let devices: Vec<DeviceId> = need.keys().copied().collect();
        if let Err(e) = self.persist_task(&devices, &task_key(lv), &record) {
            self.devices = before;
            self.counters.failed_commits += 1;
            return Err(e);
        }
        self.migrations.cancelled.remove(&lv);
        self.begin_migration(record)
    }

    /// A migration's task record loaded at start: it goes on from its cursor.
    pub(super) fn resume_migration(&mut self, value: serde_json::Value) -> Result<(), Error> {
        let record: MigrationRecord =
            serde_json::from_value(value).map_err(|e| Error::Store(format!("migration task record: {e}")))?;
        if !self.volumes.contains_key(&record.lv) {
            return Err(Error::Store(format!("migration task of {}, which does not exist", record.lv)));
        }
        self.begin_migration(record)
    }

    /// Give every segment of the volume its states, the part the record says was moved (and
    /// not yet moved back) pointing at the new storage, and start the copy agent.
    fn begin_migration(&mut self, record: MigrationRecord) -> Result<(), Error> {
        let MigrationRecord { lv, moves, allocations, cursor, returned, rate_limit } = record;
        let Some(v) = self.volumes.get_mut(&lv) else { return Err(Error::UnknownVolume(lv)) };
        let old_allocations = v.record.allocations.clone();
        let rewrite = |p: Placement| -> Placement {
            for (old, new) in old_allocations.iter().zip(&allocations) {
                if old.device == p.device && p.lba >= old.lba && p.lba < old.lba + old.blocks.max(1) {
                    return Placement { device: new.device, lba: new.lba + (p.lba - old.lba) };
                }
            }
            p
        };
        let mut grants = Vec::new();
        let mut states = Vec::new();
        let mut copied = 0;
        for (segment, map) in v.segments.iter_mut().enumerate() {
            let Some((not_migrated, base)) = map.redirects().iter().next().map(|(i, e)| (i, e.clone()))
            else {
                return Err(Error::FailedPrecondition("a segment without a redirect entry".into()));
            };
            let target = moved(&base.descriptor, &rewrite)?;
            let barrier = map.add_redirect(RedirectEntry { fault_on_write: true, ..base.clone() })?;
            let migrated = map.add_redirect(RedirectEntry::read_write(target.clone()))?;
            let returning = map
                .add_redirect(RedirectEntry { fault_on_write: true, ..RedirectEntry::read_write(target) })?;
            states.push(SegmentStates { not_migrated, barrier, migrated, returning });
            let blocks = map.descriptor().blocks;
            let before = |(s, b): (usize, u64)| match segment.cmp(&s) {
                std::cmp::Ordering::Less => blocks,
                std::cmp::Ordering::Equal => b.min(blocks),
                std::cmp::Ordering::Greater => 0,
            };
            let moved = before(returned.unwrap_or((0, 0)))..before(cursor);
            if !moved.is_empty() {
                copied += moved.end - moved.start;
                map.set_range(moved, migrated)?;
            }
            grants
                .push(MappingEntry::Redirects { vseg: map.descriptor().id, table: map.redirects().clone() });
        }
        let total = v.record.blocks;
        // New entries nothing refers to yet (or, after a restart, maps no worker holds yet):
        // adding them is unrestrictive.
        for entry in grants {
            self.grant_all(entry);
        }
        self.migrations.active.insert(
            lv,
            Migration {
                moves,
                states,
                allocations,
                barrier: None,
                cursor,
                returned,
                copy: None,
                fenced: false,
                copied,
                total,
                waiting: Vec::new(),
                paused: false,
                rate_limit,
                next_chunk_at: self.now,
                held_for_snapshot: false,
                finishing: false,
            },
        );
        Ok(())
    }

    /// The devices a migration of `lv` moves it to.
    pub(super) fn migration_destinations(&self, lv: LvId) -> Vec<DeviceId> {
        self.migrations
            .active
            .get(&lv)
            .map(|m| m.moves.iter().map(|(_, new)| *new).collect())
            .unwrap_or_default()
    }

    /// Whether `lv` is migrating.
    pub(super) fn migrations_of(&self, lv: LvId) -> bool {
        self.migrations.active.contains_key(&lv)
    }

    /// Whether the last migration of `lv` was cancelled (and no other started since).
    pub fn migration_cancelled(&self, lv: LvId) -> bool {
        self.migrations.cancelled.contains(&lv)
    }

    /// A mark of a cancelled migration loaded at start (see [`CANCELLED_KEY`]); one of a
    /// volume that is gone means nothing.
    pub(super) fn restore_cancelled_mark(&mut self, key: &[u8]) -> Result<(), Error> {
        let id = key
            .strip_prefix(CANCELLED_KEY)
            .and_then(|rest| <[u8; 4]>::try_from(rest).ok())
            .ok_or_else(|| Error::Store(format!("malformed cancelled-migration key {key:?}")))?;
        let lv = LvId(u32::from_be_bytes(id));
        if self.volumes.contains_key(&lv) {
            self.migrations.cancelled.insert(lv);
        }
        Ok(())
    }

    /// Pause or resume a migration (management API).
    pub fn pause_migration(&mut self, lv: LvId, paused: bool) -> Result<(), Error> {
        let m = self
            .migrations
            .active
            .get_mut(&lv)
            .ok_or_else(|| Error::FailedPrecondition("not migrating".into()))?;
        m.paused = paused;
        Ok(())
    }

    /// Progress of every migration.
    pub fn migrations(&self) -> Vec<MigrationProgress> {
        self.migrations
            .active
            .iter()
            .map(|(lv, m)| MigrationProgress {
                lv: *lv,
                copied: m.copied,
                total: m.total,
                paused: m.paused,
                cancelling: m.returned.is_some(),
            })
            .collect()
    }

    /// A write that meets the barrier waits for it to move; `true` if it was taken.
    pub(super) fn hold_at_barrier(&mut self, io: IoTag, request: &HostIo, data: &Option<Bytes>) -> bool {
        let Some(lv) = request.lv else { return false };
        let Some(m) = self.migrations.active.get(&lv) else { return false };
        let Some(Barrier { segment, range, .. }) = m.barrier.clone() else { return false };
        let Some(seg) = self.volumes.get(&lv).and_then(|v| v.segments.get(segment)).map(|s| *s.descriptor())
        else {
            return false;
        };
        let start = seg.start + range.start;
        let end = seg.start + range.end;
        let overlaps = request.lba < end && start < request.lba + u64::from(request.blocks);
        if overlaps && let Some(m) = self.migrations.active.get_mut(&lv) {
            m.waiting.push((io, *request, data.clone()));
            return true;
        }
        false
    }

    /// The copy agent: one chunk at a time (the rate limit), unless paused; a cancelled
    /// migration's chunks go back the same way.
    pub(super) fn migration_tick(&mut self) {
        let lvs: Vec<LvId> = self.migrations.active.keys().copied().collect();
        for lv in lvs {
            let Some(m) = self.migrations.active.get(&lv) else { continue };
            if m.fenced && m.copy.is_none() {
                self.copy_or_abandon(lv);
                continue;
            }
            if m.paused
                || m.held_for_snapshot
                || m.finishing
                || m.barrier.is_some()
                || (m.rate_limit.is_some() && self.now < m.next_chunk_at)
            {
                continue;
            }
            match m.returned {
                None => self.next_forward_chunk(lv),
                Some(returned) => self.next_chunk_back(lv, returned),
            }
        }
    }

    fn next_forward_chunk(&mut self, lv: LvId) {
        let Some(m) = self.migrations.active.get(&lv) else { return };
        let (mut segment, mut block) = m.cursor;
        let chunk = self.config.copy_chunk_blocks.max(1);
        let segments = self.volumes.get(&lv).map_or(0, |v| v.segments.len());
        loop {
            if segment >= segments {
                self.finish_migration(lv);
                return;
            }
            let blocks = self.volumes.get(&lv).map_or(0, |v| v.segments[segment].descriptor().blocks);
            if block >= blocks {
                segment += 1;
                block = 0;
                continue;
            }
            let range = block..(block + chunk).min(blocks);
            self.raise_barrier(lv, Barrier { segment, range, direction: Direction::Forward });
            return;
        }
    }

    /// Step 1: the chunk becomes the barrier (fault-on-write); its writes drain.
    fn raise_barrier(&mut self, lv: LvId, barrier: Barrier) {
        let Some(states) =
            self.migrations.active.get(&lv).and_then(|m| m.states.get(barrier.segment)).copied()
        else {
            return;
        };
        let Some(map) = self.volumes.get_mut(&lv).and_then(|v| v.segments.get_mut(barrier.segment)) else {
            return;
        };
        let vseg = map.descriptor().id;
        let state = match barrier.direction {
            Direction::Forward => states.barrier,
            Direction::Back => states.returning,
        };
        if map.set_range(barrier.range.clone(), state).is_err() {
            return;
        }
        let range = barrier.range.clone();
        let block_size = self.volumes.get(&lv).map_or(512, |v| u64::from(v.record.block_size));
        let now = self.now;
        if let Some(m) = self.migrations.active.get_mut(&lv) {
            if barrier.direction == Direction::Forward {
                m.cursor = (barrier.segment, range.end);
            }
            if let Some(rate) = m.rate_limit {
                let bytes = u128::from(range.end - range.start) * u128::from(block_size);
                let ns = bytes * 1_000_000_000 / u128::from(rate.get());
                m.next_chunk_at = now.saturating_add(u64::try_from(ns).unwrap_or(u64::MAX));
            }
            m.barrier = Some(barrier);
        }
        self.revoke_writes_in(vseg, range, false, AfterRevocation::MigrationBarrier { lv });
    }

    /// Step 2: the barrier is fenced from the fast path; copy it once the control path's
    /// own writes there have finished too.
    pub(super) fn migration_barrier_revoked(&mut self, lv: LvId) {
        if let Some(m) = self.migrations.active.get_mut(&lv) {
            m.fenced = true;
        }
        self.copy_or_abandon(lv);
    }

    /// Copy the fenced barrier chunk, unless it is a forward chunk of a migration cancelled
    /// since, which is given up instead.
    fn copy_or_abandon(&mut self, lv: LvId) {
        let Some(m) = self.migrations.active.get(&lv) else { return };
        let forward = m.barrier.as_ref().is_some_and(|b| b.direction == Direction::Forward);
        if forward && m.returned.is_some() {
            self.abandon_forward_chunk(lv);
        } else {
            self.start_copy(lv);
        }
    }

    fn start_copy(&mut self, lv: LvId) {
        let Some(Barrier { segment, range, direction }) =
            self.migrations.active.get(&lv).and_then(|m| m.barrier.clone())
        else {
            return;
        };
        let Some(seg) = self.volumes.get(&lv).and_then(|v| v.segments.get(segment)).map(|s| *s.descriptor())
        else {
            return;
        };
        if self.manual_writes_overlap(lv, seg.start + range.start..seg.start + range.end) {
            return; // The next tick tries again.
        }
        let Some(states) = self.migrations.active.get(&lv).and_then(|m| m.states.get(segment)).copied()
        else {
            return;
        };
        let (from, to) = match direction {
            Direction::Forward => (states.barrier, states.migrated),
            Direction::Back => (states.returning, states.not_migrated),
        };
        let Some(v) = self.volumes.get(&lv) else { return };
        let Some(map) = v.segments.get(segment) else { return };
        let vseg = map.descriptor().id;
        let (Some(from), Some(to)) = (map.redirects().get(from), map.redirects().get(to)) else {
            return;
        };
        let mut side = 0;
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        if descriptor_legs(&from.descriptor, range.clone(), 0, false, &mut side, &mut reads).is_err()
            || descriptor_legs(&to.descriptor, range.clone(), 0, true, &mut side, &mut writes).is_err()
        {
            return;
        }
        let block_size = v.record.block_size as usize;
        // Extents outside the barrier may be granted again while it is copied.
        self.grant_extents(lv, vseg, range.clone());
        let copy = self.start_block_copy(
            CopyOwner::Migration { lv },
            reads,
            writes,
            range.end - range.start,
            block_size,
        );
        if let Some(m) = self.migrations.active.get_mut(&lv) {
            m.copy = Some(copy);
        }
    }

    /// The copy of the barrier chunk ended.
    pub(super) fn migration_copied(&mut self, lv: LvId, copy: u64, copied: bool) {
        let Some(m) = self.migrations.active.get_mut(&lv) else { return };
        if m.copy != Some(copy) {
            return;
        }
        m.copy = None;
        let Some(Barrier { segment, range, direction }) = m.barrier.clone() else { return };
        if direction == Direction::Forward && m.returned.is_some() {
            // Cancelled while it was copied: what it copied is not needed.
            self.abandon_forward_chunk(lv);
            return;
        }
        if !copied {
            // Try the chunk again at the next tick; the barrier stays up meanwhile.
            return;
        }
        // Steps 3 and 4: the chunk is moved (committed first); the barrier moves on.
        let mut record = MigrationRecord {
            lv,
            moves: m.moves.clone(),
            allocations: m.allocations.clone(),
            cursor: m.cursor,
            returned: m.returned,
            rate_limit: m.rate_limit,
        };
        if direction == Direction::Back {
            record.returned = Some((segment, range.end));
        }
        if self.persist_task(&[], &task_key(lv), &record).is_err() {
            // Not recorded, so not pointed at its new place: the chunk is copied again.
            self.counters.failed_commits += 1;
            return;
        }
        let Some(m) = self.migrations.active.get_mut(&lv) else { return };
        let blocks = range.end - range.start;
        let Some(states) = m.states.get(segment).copied() else { return };
        let state = match direction {
            Direction::Forward => {
                m.copied += blocks;
                states.migrated
            }
            Direction::Back => {
                m.copied = m.copied.saturating_sub(blocks);
                m.returned = record.returned;
                states.not_migrated
            }
        };
        self.lower_barrier(lv, segment, range, state);
    }

    /// The barrier chunk points at `state` and is granted again; the writes that met it run
    /// and a snapshot waiting for it is taken (Fig. 33).
    fn lower_barrier(&mut self, lv: LvId, segment: usize, range: Range<u64>, state: RedirectIndex) {
        let Some(m) = self.migrations.active.get_mut(&lv) else { return };
        m.fenced = false;
        m.barrier = None;
        let waiting = std::mem::take(&mut m.waiting);
        let Some(map) = self.volumes.get_mut(&lv).and_then(|v| v.segments.get_mut(segment)) else { return };
        let vseg = map.descriptor().id;
        if map.set_range(range.clone(), state).is_ok() {
            self.grant_extents(lv, vseg, range);
        }
        for (io, request, data) in waiting {
            self.start_manual_with(io, request, data);
        }
        self.take_pending_snapshot(lv);
    }

    /// A snapshot of `lv` is about to be taken: hold the copy agent. Returns whether a
    /// barrier is up, in which case the take waits until it comes down.
    pub(super) fn migration_holds_for_snapshot(&mut self, lv: LvId) -> bool {
        let Some(m) = self.migrations.active.get_mut(&lv) else { return false };
        m.held_for_snapshot = true;
        m.barrier.is_some()
    }

    /// The snapshot of a migrating volume completed: its states were replaced by their
    /// read/write twins, so the migration's states follow them, its barrier states come
    /// back, and copying goes on.
    pub(super) fn migration_after_snapshot(
        &mut self,
        lv: LvId,
        twins: &[BTreeMap<RedirectIndex, RedirectIndex>],
    ) {
        let Some(m) = self.migrations.active.get_mut(&lv) else { return };
        m.held_for_snapshot = false;
        let Some(v) = self.volumes.get_mut(&lv) else { return };
        let mut grants = Vec::new();
        for ((map, states), twins) in v.segments.iter_mut().zip(m.states.iter_mut()).zip(twins) {
            if let Some(t) = twins.get(&states.not_migrated) {
                states.not_migrated = *t;
            }
            if let Some(t) = twins.get(&states.migrated) {
                states.migrated = *t;
            }
            // No barrier is up while a snapshot is taken: each barrier state is made again
            // as the fault-on-write copy of its base's twin.
            for (barrier, base) in
                [(&mut states.barrier, states.not_migrated), (&mut states.returning, states.migrated)]
            {
                if map.redirects().get(*barrier).is_none_or(|_| map.references(*barrier) == 0)
                    && let Some(base) = map.redirects().get(base).cloned()
                {
                    let _ = map.remove_redirect(*barrier);
                    if let Ok(b) = map.add_redirect(RedirectEntry { fault_on_write: true, ..base }) {
                        *barrier = b;
                    }
                }
            }
            grants
                .push(MappingEntry::Redirects { vseg: map.descriptor().id, table: map.redirects().clone() });
        }
        for entry in grants {
            self.grant_all(entry);
        }
    }

    fn finish_migration(&mut self, lv: LvId) {
        let Some(m) = self.migrations.active.get_mut(&lv) else { return };
        m.finishing = true;
        let segments = self.segments_of(lv);
        self.revoke_segments(&segments, false, AfterRevocation::MigrationDone { lv });
    }

    /// Everything copied (or, for a cancel, copied back) and the superseded mapping drained:
    /// the extra states go; the volume's layout and claims name the devices it ends on; the
    /// claims it left are free.
    pub(super) fn migration_done_revoked(&mut self, lv: LvId) {
        let Some(m) = self.migrations.active.remove(&lv) else { return };
        let Some(v) = self.volumes.get_mut(&lv) else { return };
        let cancelled = m.returned.is_some();
        let mut grants = Vec::new();
        for (map, states) in v.segments.iter_mut().zip(&m.states) {
            let all = 0..map.descriptor().blocks;
            let _ = map.set_range(all, if cancelled { states.not_migrated } else { states.migrated });
            map.coalesce();
            map.remove_unreferenced();
            grants
                .push(MappingEntry::Redirects { vseg: map.descriptor().id, table: map.redirects().clone() });
        }
        let left: Vec<Allocation> = if cancelled {
            m.allocations.iter().filter(|a| !v.record.allocations.contains(a)).copied().collect()
        } else {
            let swap = |d: &mut DeviceId| {
                if let Some((_, new)) = m.moves.iter().find(|(old, _)| old == d) {
                    *d = *new;
                }
            };
            match &mut v.record.layout {
                LayoutSpec::Linear { devices } | LayoutSpec::Stripe { devices, .. } => {
                    devices.iter_mut().for_each(swap)
                }
                LayoutSpec::Journal { primary, .. } => swap(primary),
                _ => {}
            }
            let old = std::mem::replace(&mut v.record.allocations, m.allocations.clone());
            old.into_iter().filter(|a| !m.allocations.contains(a)).collect()
        };
        let mut devices: Vec<DeviceId> = Vec::new();
        let before = self.devices.clone();
        for a in &left {
            if self.devices.release(a.device, a.lba, a.blocks).is_ok() && !devices.contains(&a.device) {
                devices.push(a.device);
            }
        }
        let mark = |batch: &mut Batch| -> Result<(), Error> {
            if cancelled {
                batch.put_json(Table::Tasks, cancelled_key(lv), &true)?;
            } else {
                batch.delete(Table::Tasks, cancelled_key(lv));
            }
            Ok(())
        };
        if self.persist_ending_task_with(&devices, &[lv], &task_key(lv), mark).is_err() {
            // The store still has the task, which a restart ends again; until then the claims
            // left stay claimed, so nothing new is placed where the store says they are.
            self.devices = before;
            self.counters.failed_commits += 1;
        }
        for entry in grants {
            self.grant_all(entry);
        }
        if cancelled {
            self.migrations.cancelled.insert(lv);
            self.events.push(ControlEvent::MigrationCancelled { lv });
        } else {
            self.migrations.cancelled.remove(&lv);
            self.events.push(ControlEvent::MigrationDone { lv, blocks: m.copied });
        }
    }
}
