//! Asynchronous ordered replication (seed 003 Fig. 32, section 6.6). Writes to a journaled
//! volume are split to the primary and to the writer's journal slot. At every consistency
//! point the volume is fenced (revoked, writes drained, misses queued), every writer's slot
//! is closed into the cycle and fresh ones opened, and I/O resumes. The copy agent ships
//! closed slots of finished cycles; the applier merges a cycle's entries (last write wins per
//! block) and writes them to the replica only once the whole cycle has arrived, so the replica
//! image only ever moves from one consistency point to the next. A baseline copy of the
//! primary, started behind the first consistency point, precedes the first cycle applied;
//! the replica shows a consistency point's image from the first cycle that closed after the
//! baseline finished.
//!
//! A paused replication applies nothing, so the replica keeps the image of the last cycle it
//! showed, while consistency points go on (the writers' journal slots stay free): the copy
//! agent reads each closed slot only for the blocks its entries wrote. Resuming starts a
//! catch-up behind a consistency point of its own, a copy of those blocks only, after which
//! cycles are applied as after a baseline.

mod copy_ranges;

use std::collections::BTreeMap;
use std::ops::Range;

use bytes::Bytes;
use dve_fp_api::ids::{DeviceId, LvId, WorkerId};
use dve_fp_api::io::{DownstreamOp, DownstreamRequest, IoStatus};
use dve_fp_api::journal::JournalEntryHeader;
use dve_fp_api::mapping::Placement;
use dve_fp_api::message::ToFp;

use self::copy_ranges::CopyRanges;
use super::block_copy::CopyOwner;
use super::journal::ClosedSlot;
use super::revocation::AfterRevocation;
use super::{ControlEvent, ControlPath, DispatchPurpose};
use crate::error::Error;
use crate::volume::{DeviceLeg, LayoutSpec};

/// Blocks the copy agent reads, the baseline copies and the applier writes per dispatch.
const TRANSFER_BLOCKS: u64 = 256;
/// Prefix of replication task keys in the metadata store.
pub(super) const TASK_KEY: &[u8] = b"replication/";

/// What the metadata store keeps of a replication: enough to start it again after a restart
/// (a first consistency point and a fresh baseline, since cycles in flight and the blocks
/// written while paused were in memory).
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct ReplicationRecord {
    lv: u32,
    replica_device: u32,
    replica_lba: u64,
    interval_ns: u64,
    /// Being stopped: a restart ends it at once.
    #[serde(default)]
    stopping: bool,
    /// Paused by the management API: a restart keeps it paused.
    #[serde(default)]
    paused: bool,
}

fn task_key(lv: LvId) -> Vec<u8> {
    let mut key = TASK_KEY.to_vec();
    key.extend_from_slice(&lv.0.to_be_bytes());
    key
}

/// Where one replicated volume's replication stands, for the management API and reports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReplicationProgress {
    /// The volume.
    pub lv: LvId,
    /// Where the replica image starts.
    pub replica: Placement,
    /// Blocks of the current copy done: the baseline, or after a pause the catch-up.
    pub baseline_blocks: u64,
    /// Blocks of the current copy in all, as far as they are known (a catch-up's grow while
    /// the slots of the cycles it covers are read).
    pub copy_blocks: u64,
    /// Paused: nothing is applied, the replica keeps the image it shows.
    pub paused: bool,
    /// The last cycle applied to the replica, if any.
    pub applied_cycle: Option<u64>,
    /// The cycle being written to the replica now, if any.
    pub applying_cycle: Option<u64>,
    /// Cycles applied that the replica shows as a consistency point's image (those applied
    /// while catching up behind the baseline copy are not).
    pub cycles_applied: u64,
    /// Blocks written to the replica by the applier.
    pub blocks_applied: u64,
    /// Replication lag when the last cycle was applied: from its consistency point to the
    /// moment the replica showed it, in ns.
    pub last_lag_ns: u64,
    /// The largest such lag.
    pub max_lag_ns: u64,
    /// Being stopped: what is in flight finishes, nothing new starts.
    pub stopping: bool,
    /// The volume's journal is out of service: no consistency point is taken and nothing is
    /// applied (the replica keeps its last image) until it is back, when a whole copy starts.
    pub journal_failed: bool,
    /// A copy from the primary (a baseline, a catch-up after a resume or a failed journaled
    /// write) or the cycles behind it are being written to the replica, which shows no
    /// consistency point's image until the first cycle after them is applied. Not while
    /// paused or while the journal is out of service, when nothing is written to it.
    pub catching_up: bool,
}

/// One journal entry received by the replica side.
#[derive(Clone, Debug)]
struct ShippedEntry {
    timestamp: u64,
    writer: WorkerId,
    sequence: u64,
    position: u64,
    lba: u64,
    blocks: u64,
    data: Bytes,
}

/// The copy agent reading one closed slot.
#[derive(Clone, Copy, Debug)]
struct Shipping {
    /// The block copy reading it.
    copy: u64,
    slot: ClosedSlot,
}

/// A transfer of the baseline or catch-up copy in flight.
#[derive(Clone, Debug)]
struct Transfer {
    copy: u64,
    blocks: Range<u64>,
}

/// The applier writing one cycle.
#[derive(Clone, Copy, Debug)]
struct Applying {
    id: u64,
    cycle: u64,
    blocks: u64,
    outstanding: usize,
    failed: bool,
}

/// A consistency point in progress.
#[derive(Clone, Debug)]
struct Cut {
    /// Whole-segment locks held until the journals are swapped.
    locks: Vec<u64>,
    /// The fast path's writes have drained.
    drained: bool,
}

/// One replicated volume.
#[derive(Clone, Debug)]
pub(super) struct Replication {
    interval_ns: u64,
    next_cut_at: u64,
    cut: Option<Cut>,
    /// The cycle closed by the consistency point the current copy (baseline or catch-up)
    /// started behind: it and older cycles are covered by the copy.
    base_cycle: Option<u64>,
    /// The next consistency point becomes the base (at the start, and after a resume).
    rebase: bool,
    /// Slots of cycles up to this one are freed unread: a copy of the whole volume, begun
    /// behind it, covers what they wrote.
    unread_through: Option<u64>,
    /// Blocks still to copy from the primary.
    to_copy: CopyRanges,
    /// Blocks of journaled writes that failed while the copy was under way, with the cycle
    /// open then: copied once that cycle has closed.
    unjournaled: Vec<(u64, Range<u64>)>,
    /// The same blocks, skipped by the cycles up to the one given when they are applied:
    /// their entries may hold what never reached the primary, and the copy holds every
    /// write to them up to that cycle's consistency point.
    skip: Vec<(u64, Range<u64>)>,
    /// The copy's transfer in flight.
    transfer: Option<Transfer>,
    /// Set when the copy is complete (cycles after the base may then be applied): the cycle
    /// open then, the first whose image the replica can show (the copy read blocks as they
    /// were after earlier consistency points).
    first_consistent: Option<u64>,
    /// Consistency point instants of closed cycles not yet applied.
    cut_at: BTreeMap<u64, u64>,
    shipping: Option<Shipping>,
    received: BTreeMap<u64, Vec<ShippedEntry>>,
    applying: Option<Applying>,
    progress: ReplicationProgress,
}

impl Replication {
    /// Its task record, stopping and paused as given.
    fn record(&self, stopping: bool, paused: bool) -> ReplicationRecord {
        ReplicationRecord {
            lv: self.progress.lv.0,
            replica_device: self.progress.replica.device.0,
            replica_lba: self.progress.replica.lba,
            interval_ns: self.interval_ns,
            stopping,
            paused,
        }
    }

    /// The current copy's size as known now: done, in flight and still to copy.
    fn count_copy(&mut self) {
        let in_flight = self.transfer.as_ref().map_or(0, |t| t.blocks.end - t.blocks.start);
        let waiting: u64 = self.unjournaled.iter().map(|(_, b)| b.end - b.start).sum();
        self.progress.copy_blocks =
            self.progress.baseline_blocks + in_flight + self.to_copy.blocks() + waiting;
    }
}

/// Replications by volume.
#[derive(Clone, Debug, Default)]
pub(super) struct Replications {
    active: BTreeMap<LvId, Replication>,
    next_id: u64,
}

impl Replications {
    /// Whether `lv` replicates.
    pub(super) fn involves(&self, lv: LvId) -> bool {
        self.active.contains_key(&lv)
    }
}

impl ControlPath {
    /// Replicate journaled volume `lv` asynchronously to `replica` (a device with room for
    /// the whole volume), with a consistency point every `interval_ns`. Nothing changes when
    /// the request is refused.
    pub fn start_replication(&mut self, lv: LvId, replica: DeviceId, interval_ns: u64) -> Result<(), Error> {
        let v = self.volumes.get(&lv).ok_or(Error::UnknownVolume(lv))?;
        if !matches!(v.record.layout, LayoutSpec::Journal { .. }) {
            return Err(Error::FailedPrecondition(format!(
                "{} is not journaled: only journaled volumes replicate asynchronously",
                v.record.name
            )));
        }
        if self.replications.active.contains_key(&lv) {
            return Err(Error::FailedPrecondition(format!("{} is already replicated", v.record.name)));
        }
        if interval_ns == 0 {
            return Err(Error::invalid("consistency interval", "must be longer than zero"));
        }
        if v.record.layout.devices().contains(&replica) {
            return Err(Error::invalid("replica device", "must not hold the volume or its journal"));
        }
        if self.journals.get(&lv).is_none_or(|j| j.slot_blocks() < 2) {
            return Err(Error::FailedPrecondition(format!(
                "{}'s journal is too small to cut into slots",
                v.record.name
            )));
        }
        let blocks = v.record.blocks;
        // Like a volume, a replica may be claimed on a known device that is offline just now
        // (the copies retry until it answers); one whose capacity was never read is refused.
        self.devices.get(replica).ok_or(Error::UnknownDevice(replica))?;
        let before = self.devices.clone();
        let lba = self.devices.allocate(replica, blocks)?;
        let record = ReplicationRecord {
            lv: lv.0,
            replica_device: replica.0,
            replica_lba: lba,
            interval_ns,
            stopping: false,
            paused: false,
        };
        if let Err(e) = self.persist_task(&[replica], &task_key(lv), &record) {
            self.devices = before;
            self.counters.failed_commits += 1;
            return Err(e);
        }
        self.begin_replication(lv, record);
        Ok(())
    }

    /// A replication's task record loaded at start: it starts again from a first
    /// consistency point and a baseline copy.
    pub(super) fn resume_replication(&mut self, value: serde_json::Value) -> Result<(), Error> {
        let record: ReplicationRecord = serde_json::from_value(value)
            .map_err(|e| Error::Store(format!("replication task record: {e}")))?;
        let lv = LvId(record.lv);
        if !self.volumes.contains_key(&lv) {
            return Err(Error::Store(format!("replication task of {lv}, which does not exist")));
        }
        self.begin_replication(lv, record);
        Ok(())
    }

    fn begin_replication(&mut self, lv: LvId, record: ReplicationRecord) {
        let blocks = self.volumes.get(&lv).map_or(0, |v| v.record.blocks);
        let placement = Placement { device: DeviceId(record.replica_device), lba: record.replica_lba };
        self.keep_closed_slots(lv);
        self.replications.active.insert(
            lv,
            Replication {
                interval_ns: record.interval_ns,
                next_cut_at: self.now,
                cut: None,
                base_cycle: None,
                rebase: true,
                unread_through: None,
                to_copy: CopyRanges::whole(blocks),
                unjournaled: Vec::new(),
                skip: Vec::new(),
                transfer: None,
                first_consistent: None,
                cut_at: BTreeMap::new(),
                shipping: None,
                received: BTreeMap::new(),
                applying: None,
                progress: ReplicationProgress {
                    lv,
                    replica: placement,
                    baseline_blocks: 0,
                    copy_blocks: blocks,
                    paused: record.paused,
                    applied_cycle: None,
                    applying_cycle: None,
                    cycles_applied: 0,
                    blocks_applied: 0,
                    last_lag_ns: 0,
                    max_lag_ns: 0,
                    stopping: record.stopping,
                    journal_failed: self.journals.get(&lv).is_some_and(|j| j.failed()),
                    catching_up: false,
                },
            },
        );
    }

    /// Progress of every replication.
    pub fn replications(&self) -> Vec<ReplicationProgress> {
        let progress = |r: &Replication| ReplicationProgress {
            applying_cycle: r.applying.map(|a| a.cycle),
            catching_up: !r.progress.paused
                && !r.progress.journal_failed
                && r.first_consistent.is_none_or(|first| r.progress.applied_cycle.is_none_or(|a| a < first)),
            ..r.progress
        };
        self.replications.active.values().map(progress).collect()
    }

    fn replication_id(&mut self) -> u64 {
        self.replications.next_id += 1;
        self.replications.next_id
    }

    /// Advance every replication: consistency points, baseline, copy agent, applier.
    pub(super) fn replication_tick(&mut self) {
        let lvs: Vec<LvId> = self.replications.active.keys().copied().collect();
        for lv in lvs {
            if self.replications.active.get(&lv).is_some_and(|r| r.progress.stopping) {
                self.stop_step(lv);
                continue;
            }
            self.cut_step(lv);
            self.baseline_step(lv);
            self.ship_step(lv);
            self.apply_step(lv);
        }
    }

    /// Stop replicating `lv` (management API): the consistency point, copy or cycle in
    /// flight finishes, nothing new starts, then the journal frees its closed slots, the
    /// replica's claim is freed and the task ends. The replica keeps the image of the last
    /// cycle applied. The stop is committed first, so a restart ends it at once.
    pub fn stop_replication(&mut self, lv: LvId) -> Result<(), Error> {
        let r = self.running_replication(lv)?;
        let record = r.record(true, r.progress.paused);
        if let Err(e) = self.persist_task(&[], &task_key(lv), &record) {
            self.counters.failed_commits += 1;
            return Err(e);
        }
        if let Some(r) = self.replications.active.get_mut(&lv) {
            r.progress.stopping = true;
        }
        Ok(())
    }

    /// The replication of `lv`, unless there is none or it is stopping.
    fn running_replication(&self, lv: LvId) -> Result<&Replication, Error> {
        let name = &self.volumes.get(&lv).ok_or(Error::UnknownVolume(lv))?.record.name;
        let r = self
            .replications
            .active
            .get(&lv)
            .ok_or_else(|| Error::FailedPrecondition(format!("{name} is not replicated")))?;
        if r.progress.stopping {
            return Err(Error::FailedPrecondition(format!("the replication of {name} is already stopping")));
        }
        Ok(r)
    }

    /// Pause (`paused`) or resume replicating `lv` (management API); the state is committed
    /// first, so a restart keeps it. Paused, nothing more is applied: the replica keeps the
    /// image of the last cycle it showed (a cycle being written finishes), consistency points
    /// go on, and the slots of their cycles are read only for the blocks they wrote. Resumed,
    /// those blocks are copied from the primary behind a consistency point, then cycles are
    /// applied again; the replica shows a consistency point's image from the first cycle that
    /// closes after that copy. Asking for the state it is in changes nothing.
    pub fn pause_replication(&mut self, lv: LvId, paused: bool) -> Result<(), Error> {
        let r = self.running_replication(lv)?;
        if r.progress.paused == paused {
            return Ok(());
        }
        let record = r.record(false, paused);
        if let Err(e) = self.persist_task(&[], &task_key(lv), &record) {
            self.counters.failed_commits += 1;
            return Err(e);
        }
        let blocks = self.volumes.get(&lv).map_or(0, |v| v.record.blocks);
        let now = self.now;
        let Some(r) = self.replications.active.get_mut(&lv) else { return Ok(()) };
        r.progress.paused = paused;
        if paused {
            // Cycles received but not applied are not kept: what they wrote is copied instead.
            for (cycle, entries) in std::mem::take(&mut r.received) {
                r.cut_at.remove(&cycle);
                for e in entries {
                    r.to_copy.add(e.lba.min(blocks)..(e.lba + e.blocks).min(blocks));
                }
            }
        } else {
            r.rebase = true;
            r.first_consistent = None;
            r.next_cut_at = now;
            r.progress.baseline_blocks = 0;
        }
        r.count_copy();
        Ok(())
    }

    /// A stopping replication: a consistency point under way finishes (its locks held the
    /// volume's writes); once nothing is in flight the replication ends.
    fn stop_step(&mut self, lv: LvId) {
        let Some(r) = self.replications.active.get(&lv) else { return };
        if r.cut.is_some() {
            self.cut_step(lv);
            return;
        }
        if r.transfer.is_some() || r.shipping.is_some() || r.applying.is_some() {
            return;
        }
        let replica = r.progress.replica;
        let blocks = self.volumes.get(&lv).map_or(0, |v| v.record.blocks);
        let before = self.devices.clone();
        let _ = self.devices.release(replica.device, replica.lba, blocks);
        if self.persist_ending_task(&[replica.device], &[], &task_key(lv)).is_err() {
            // Tried again at the next tick; the claim stays until the end is committed.
            self.devices = before;
            self.counters.failed_commits += 1;
            return;
        }
        self.replications.active.remove(&lv);
        self.stop_keeping_closed_slots(lv);
        self.events.push(ControlEvent::ReplicationStopped { lv });
    }

    /// Start a consistency point when one is due (or a writer has no journal slot left),
    /// and finish it once the fast path drained and the control path's own writes there
    /// have reached their devices.
    fn cut_step(&mut self, lv: LvId) {
        let Some(r) = self.replications.active.get(&lv) else { return };
        match &r.cut {
            // Writes after a consistency point taken now would be in no journal.
            None if r.progress.journal_failed => {}
            None => {
                // A writer without a slot waits for the copy agent; only when it has nothing
                // left to ship does an early consistency point close slots for it to ship.
                let shippable = r.shipping.is_some()
                    || self.journals.get(&lv).is_some_and(|j| j.closed().iter().any(|c| c.cycle < j.cycle()));
                if self.now >= r.next_cut_at || (self.journal_starved(lv) && !shippable) {
                    self.start_cut(lv);
                }
            }
            Some(cut) if cut.drained => {
                let blocks = self.volumes.get(&lv).map_or(0, |v| v.record.blocks);
                if !self.manual_writes_overlap(lv, 0..blocks) {
                    self.finish_cut(lv);
                }
            }
            Some(_) => {}
        }
    }

    fn start_cut(&mut self, lv: LvId) {
        let segments = self.segments_of(lv);
        // Held past the revocation's own locks, until the journals are swapped.
        let mut locks = Vec::with_capacity(segments.len());
        for (vseg, blocks) in &segments {
            let lock = self.op_id();
            self.locks.insert(lock, (*vseg, 0..*blocks));
            locks.push(lock);
        }
        if let Some(r) = self.replications.active.get_mut(&lv) {
            r.cut = Some(Cut { locks, drained: false });
        }
        self.revoke_segments(&segments, true, AfterRevocation::ConsistencyPoint { lv });
    }

    /// The fast path's writes to `lv` drained behind a consistency point's fence.
    pub(super) fn consistency_point_revoked(&mut self, lv: LvId) {
        if let Some(cut) = self.replications.active.get_mut(&lv).and_then(|r| r.cut.as_mut()) {
            cut.drained = true;
        }
        self.cut_step(lv);
    }

    fn finish_cut(&mut self, lv: LvId) {
        let Some(cycle) = self.journal_cut(lv) else { return };
        let now = self.now;
        let Some(r) = self.replications.active.get_mut(&lv) else { return };
        let locks = r.cut.take().map(|c| c.locks).unwrap_or_default();
        r.next_cut_at = now + r.interval_ns;
        let first = r.base_cycle.is_none();
        if r.rebase && !r.progress.paused && !r.progress.journal_failed {
            r.rebase = false;
            r.base_cycle = Some(cycle);
            // Every cycle up to the new base is read only for the blocks it wrote, so blocks
            // waiting for their cycle to close are copied like the rest.
            for (_, b) in std::mem::take(&mut r.unjournaled) {
                r.to_copy.add(b);
            }
            r.skip.clear();
            // Cycles up to the base are no image the replica will show: their instants,
            // kept only to measure an image's lag, would never be taken back.
            r.cut_at.retain(|c, _| *c > cycle);
            let blocks = self.volumes.get(&lv).map_or(0, |v| v.record.blocks);
            if r.progress.baseline_blocks == 0 && r.to_copy.covers_all(blocks) {
                r.unread_through = Some(cycle);
            }
        }
        if r.base_cycle.is_some_and(|base| cycle > base) {
            r.cut_at.insert(cycle, now);
        }
        for lock in locks {
            self.release_lock(lock);
        }
        if !first {
            self.events.push(ControlEvent::ConsistencyPoint { lv, cycle });
        }
    }

    /// Copy the primary to the replica, a transfer at a time, once the copy's base
    /// consistency point is behind it (writes after it are in the journals); the copy is
    /// complete once nothing is left to copy and every slot of the cycles it covers has been
    /// read (or freed unread).
    fn baseline_step(&mut self, lv: LvId) {
        let Some(r) = self.replications.active.get(&lv) else { return };
        let Some(base) = r.base_cycle else { return };
        // A cycle still being written could land older data over what the copy writes.
        if r.progress.paused
            || r.rebase
            || r.first_consistent.is_some()
            || r.transfer.is_some()
            || r.applying.is_some()
        {
            return;
        }
        let Some(journal) = self.journals.get(&lv) else { return };
        let current = journal.cycle();
        if r.unjournaled.iter().any(|(c, _)| *c < current)
            && let Some(r) = self.replications.active.get_mut(&lv)
        {
            for (_, b) in r.unjournaled.extract_if(.., |(c, _)| *c < current) {
                r.to_copy.add(b);
            }
        }
        let Some(r) = self.replications.active.get(&lv) else { return };
        if r.to_copy.is_empty() && r.unjournaled.is_empty() {
            let unread = journal.closed().iter().any(|c| c.cycle <= base)
                || r.shipping.is_some_and(|s| s.slot.cycle <= base);
            if !unread {
                let cycle = journal.cycle();
                if let Some(r) = self.replications.active.get_mut(&lv) {
                    r.first_consistent = Some(cycle);
                }
            }
            return;
        }
        let Some(v) = self.volumes.get(&lv) else { return };
        let replica = r.progress.replica;
        let mut to_copy = r.to_copy.clone();
        let Some(range) = to_copy.take_front(TRANSFER_BLOCKS) else { return };
        let n = range.end - range.start;
        let mut side = 0;
        let Ok(reads) = v.legs(range.start, n, false, &mut side) else { return };
        let writes = vec![DeviceLeg {
            device: replica.device,
            lba: replica.lba + range.start,
            blocks: n,
            offset: 0,
            side: None,
        }];
        let block_size = v.record.block_size as usize;
        let copy = self.start_block_copy(CopyOwner::Baseline { lv }, reads, writes, n, block_size);
        if let Some(r) = self.replications.active.get_mut(&lv) {
            r.to_copy = to_copy;
            r.transfer = Some(Transfer { copy, blocks: range });
        }
    }

    /// The slot of `lv`'s journal the copy agent is reading, if any.
    pub(super) fn replication_reading_slot(&self, lv: LvId) -> Option<usize> {
        self.replications.active.get(&lv).and_then(|r| r.shipping).map(|s| s.slot.slot)
    }

    /// A journaled write to `blocks` of `lv` failed after some of its legs may have landed:
    /// the primary and the journal may disagree there. The blocks are copied from the
    /// primary behind a consistency point of their own, as on resuming after a pause (cycles
    /// up to it are read only for the blocks they wrote), so no image the replica shows
    /// holds the journal's version where the primary's differs.
    pub(super) fn replication_range_unjournaled(&mut self, lv: LvId, blocks: Range<u64>) {
        let size = self.volumes.get(&lv).map_or(0, |v| v.record.blocks);
        let now = self.now;
        let Some(cycle) = self.journals.get(&lv).map(|j| j.cycle()) else { return };
        let Some(r) = self.replications.active.get_mut(&lv) else { return };
        let clipped = blocks.start.min(size)..blocks.end.min(size);
        if !r.progress.paused && !r.progress.journal_failed && !r.rebase && r.first_consistent.is_none() {
            // A copy under way behind an earlier consistency point: the cycles after its base
            // are applied over what it copies, and one of them may hold the journal's version
            // of these blocks where the primary never took it. Those cycles skip the blocks,
            // which are copied once the cycle open now has closed (so the copy also holds
            // every write to them in it, the host's retry of this one included), much as
            // behind a consistency point of their own but without starting the copy over.
            r.unjournaled.push((cycle, clipped.clone()));
            r.skip.push((cycle, clipped));
            r.count_copy();
            return;
        }
        r.to_copy.add(clipped);
        if r.progress.paused || r.progress.journal_failed || r.rebase || r.first_consistent.is_none() {
            // Behind a consistency point still to come, the copy takes these blocks with it
            // (copied again if it had copied them before the write).
            r.count_copy();
            return;
        }
        // Cycles received but not applied belong to the copy now, and are never applied.
        for (cycle, entries) in std::mem::take(&mut r.received) {
            r.cut_at.remove(&cycle);
            for e in entries {
                r.to_copy.add(e.lba.min(size)..(e.lba + e.blocks).min(size));
            }
        }
        r.rebase = true;
        r.first_consistent = None;
        r.next_cut_at = now;
        r.progress.baseline_blocks = 0;
        r.count_copy();
    }

    /// The journal of `lv` went out of service: the writes it missed are known only to the
    /// primary, so nothing received is applied and, once the journal is back, the whole
    /// volume is copied behind a consistency point as after a restart. The replica keeps
    /// its last image until that copy starts.
    pub(super) fn replication_journal_lost(&mut self, lv: LvId) {
        let blocks = self.volumes.get(&lv).map_or(0, |v| v.record.blocks);
        let Some(r) = self.replications.active.get_mut(&lv) else { return };
        r.progress.journal_failed = true;
        r.received.clear();
        r.cut_at.clear();
        // A transfer in flight finishes uncounted: the whole volume is copied again.
        r.transfer = None;
        r.to_copy = CopyRanges::whole(blocks);
        r.unjournaled.clear();
        r.skip.clear();
        r.rebase = true;
        r.unread_through = None;
        r.first_consistent = None;
        r.progress.baseline_blocks = 0;
        r.count_copy();
    }

    /// The journal of `lv` is back in service: the copy's base consistency point is taken
    /// at once.
    pub(super) fn replication_journal_back(&mut self, lv: LvId) {
        let now = self.now;
        let Some(r) = self.replications.active.get_mut(&lv) else { return };
        r.progress.journal_failed = false;
        r.next_cut_at = now;
    }

    /// A transfer of the copy ended; a failed one is copied again.
    pub(super) fn baseline_copied(&mut self, lv: LvId, copy: u64, copied: bool) {
        let Some(r) = self.replications.active.get_mut(&lv) else { return };
        let Some(t) = r.transfer.take_if(|t| t.copy == copy) else { return };
        if copied {
            r.progress.baseline_blocks += t.blocks.end - t.blocks.start;
        } else {
            r.to_copy.add(t.blocks);
        }
        r.count_copy();
    }

    /// Whether the entries of `slot` are left to the copy rather than shipped: a paused
    /// replication's, one waiting for its base, and those of cycles the copy covers.
    fn copy_covers(r: &Replication, slot: &ClosedSlot) -> bool {
        r.progress.paused || r.rebase || r.base_cycle.is_none_or(|b| slot.cycle <= b)
    }

    /// The copy agent: read the oldest closed slot of a finished cycle, to ship it, or only
    /// for the blocks it wrote when the copy covers it (freed unread when the copy will take
    /// those blocks anyway).
    fn ship_step(&mut self, lv: LvId) {
        let Some(r) = self.replications.active.get(&lv) else { return };
        if r.shipping.is_some() {
            return;
        }
        let Some(journal) = self.journals.get(&lv) else { return };
        let current = journal.cycle();
        let Some(slot) = journal.closed().iter().find(|c| c.cycle < current).copied() else { return };
        let blocks = self.volumes.get(&lv).map_or(0, |v| v.record.blocks);
        if r.unread_through.is_some_and(|u| slot.cycle <= u)
            || (Self::copy_covers(r, &slot) && r.to_copy.covers_all(blocks))
        {
            self.slot_shipped(lv, slot.slot);
            return;
        }
        let slot_blocks = journal.slot_blocks();
        let placement = journal.slot_placement(slot.slot);
        let block_size = self.volumes.get(&lv).map_or(512, |v| v.record.block_size as usize);
        let mut reads = Vec::new();
        let mut offset = 0;
        while offset < slot_blocks {
            let n = TRANSFER_BLOCKS.min(slot_blocks - offset);
            reads.push(DeviceLeg {
                device: placement.device,
                lba: placement.lba + offset,
                blocks: n,
                offset,
                side: None,
            });
            offset += n;
        }
        let copy =
            self.start_block_copy(CopyOwner::JournalSlot { lv }, reads, Vec::new(), slot_blocks, block_size);
        if let Some(r) = self.replications.active.get_mut(&lv) {
            r.shipping = Some(Shipping { copy, slot });
        }
    }

    /// The read of the slot being shipped ended, with its bytes if it succeeded (a failed
    /// read is tried again at the next tick).
    pub(super) fn slot_read(&mut self, lv: LvId, copy: u64, data: Option<Vec<u8>>) {
        let block_size = self.volumes.get(&lv).map_or(512, |v| v.record.block_size as usize);
        let Some(r) = self.replications.active.get_mut(&lv) else { return };
        let Some(s) = r.shipping.filter(|s| s.copy == copy) else { return };
        r.shipping = None;
        let Some(buf) = data else { return };
        let entries = parse_slot(&buf, block_size, s.slot);
        if Self::copy_covers(r, &s.slot) {
            let blocks = self.volumes.get(&lv).map_or(0, |v| v.record.blocks);
            for e in entries {
                r.to_copy.add(e.lba.min(blocks)..(e.lba + e.blocks).min(blocks));
            }
            r.count_copy();
        } else {
            r.received.entry(s.slot.cycle).or_default().extend(entries);
        }
        self.slot_shipped(lv, s.slot.slot);
    }

    /// The applier: once every slot of the next cycle has been received, write its merged
    /// blocks to the replica.
    fn apply_step(&mut self, lv: LvId) {
        let Some(r) = self.replications.active.get(&lv) else { return };
        let Some(base) = r.base_cycle else { return };
        let blocks = self.volumes.get(&lv).map_or(0, |v| v.record.blocks);
        if r.applying.is_some() || r.first_consistent.is_none() || r.progress.paused || r.rebase {
            return;
        }
        // After a catch-up, cycles before its base were copied, not applied.
        let cycle = r.progress.applied_cycle.map_or(base + 1, |c| (c + 1).max(base + 1));
        let Some(journal) = self.journals.get(&lv) else { return };
        let closed = cycle < journal.cycle();
        let all_received = !journal.closed().iter().any(|c| c.cycle <= cycle)
            && r.shipping.as_ref().is_none_or(|s| s.slot.cycle > cycle);
        if !closed || !all_received {
            return;
        }
        let block_size = self.volumes.get(&lv).map_or(512, |v| v.record.block_size as usize);
        let replica = r.progress.replica;
        let mut entries = r.received.get(&cycle).cloned().unwrap_or_default();
        // Last write wins: entries in the order they were written.
        entries.sort_by_key(|e| (e.timestamp, e.writer, e.sequence, e.position));
        let mut merged: BTreeMap<u64, Bytes> = BTreeMap::new();
        // Blocks of a write that failed in this cycle or a later one were copied from the
        // primary once that cycle closed: the journal's version is not theirs.
        let skipped: Vec<&Range<u64>> = r.skip.iter().filter(|(c, _)| *c >= cycle).map(|(_, b)| b).collect();
        for e in &entries {
            for i in 0..e.blocks {
                if e.lba + i < blocks && !skipped.iter().any(|b| b.contains(&(e.lba + i))) {
                    let at = i as usize * block_size;
                    merged.insert(e.lba + i, e.data.slice(at..at + block_size));
                }
            }
        }
        let mut writes: Vec<(u64, Vec<u8>)> = Vec::new();
        for (lba, data) in &merged {
            match writes.last_mut() {
                Some((start, buf))
                    if *start + (buf.len() / block_size) as u64 == *lba
                        && (buf.len() / block_size) < TRANSFER_BLOCKS as usize =>
                {
                    buf.extend_from_slice(data)
                }
                _ => writes.push((*lba, data.to_vec())),
            }
        }
        let id = self.replication_id();
        let outstanding = writes.len();
        if let Some(r) = self.replications.active.get_mut(&lv) {
            r.applying =
                Some(Applying { id, cycle, blocks: merged.len() as u64, outstanding, failed: false });
        }
        if outstanding == 0 {
            self.cycle_applied(lv);
            return;
        }
        let worker = self.worker_for_device(replica.device);
        for (lba, data) in writes {
            let n = (data.len() / block_size) as u32;
            let tag = self.dispatch_tag(DispatchPurpose::ReplicaWrite { lv, apply: id });
            let op = DownstreamOp::Write { lba: replica.lba + lba, blocks: n, data: Bytes::from(data) };
            self.send(worker, ToFp::DispatchIo(DownstreamRequest { tag, device: replica.device, op }));
        }
    }

    /// A write of the cycle being applied completed.
    pub(super) fn replica_write_done(&mut self, lv: LvId, apply: u64, status: IoStatus) {
        let Some(a) = self.replications.active.get_mut(&lv).and_then(|r| r.applying.as_mut()) else { return };
        if a.id != apply {
            return;
        }
        a.failed |= !status.is_good();
        a.outstanding = a.outstanding.saturating_sub(1);
        if a.outstanding > 0 {
            return;
        }
        if a.failed {
            // Applying a whole cycle again is harmless: the next tick retries it.
            if let Some(r) = self.replications.active.get_mut(&lv) {
                r.applying = None;
            }
            return;
        }
        self.cycle_applied(lv);
    }

    fn cycle_applied(&mut self, lv: LvId) {
        let now = self.now;
        let Some(r) = self.replications.active.get_mut(&lv) else { return };
        let Some(a) = r.applying.take() else { return };
        r.received.remove(&a.cycle);
        r.skip.retain(|(c, _)| *c > a.cycle);
        let cut_at = r.cut_at.remove(&a.cycle).unwrap_or(now);
        if r.first_consistent.is_none_or(|first| a.cycle < first) {
            // Catching up behind the baseline: not an image of any consistency point yet.
            r.progress.blocks_applied += a.blocks;
            r.progress.applied_cycle = Some(a.cycle);
            return;
        }
        let lag = now.saturating_sub(cut_at);
        let p = &mut r.progress;
        p.applied_cycle = Some(a.cycle);
        p.cycles_applied += 1;
        p.blocks_applied += a.blocks;
        p.last_lag_ns = lag;
        p.max_lag_ns = p.max_lag_ns.max(lag);
        self.events.push(ControlEvent::ReplicaApplied { lv, cycle: a.cycle, blocks: a.blocks, lag_ns: lag });
    }
}

/// The entries of a shipped slot: header blocks of the slot's sequence at the position they
/// name, each followed by its data. Blocks left from an earlier use of the slot, or from a
/// journal write that failed, are skipped.
fn parse_slot(buf: &[u8], block_size: usize, slot: ClosedSlot) -> Vec<ShippedEntry> {
    let slot_blocks = (buf.len() / block_size) as u64;
    let mut entries = Vec::new();
    let mut pos = 0u64;
    while pos < slot_blocks {
        let at = pos as usize * block_size;
        let header = JournalEntryHeader::decode(&buf[at..at + block_size]).filter(|h| {
            h.journal_sequence == slot.sequence
                && h.position == pos
                && h.block_size as usize == block_size
                && pos + 1 + u64::from(h.blocks) <= slot_blocks
        });
        let Some(h) = header else {
            pos += 1;
            continue;
        };
        let data = Bytes::copy_from_slice(&buf[at + block_size..at + block_size * (1 + h.blocks as usize)]);
        entries.push(ShippedEntry {
            timestamp: h.timestamp,
            writer: h.worker,
            sequence: h.journal_sequence,
            position: h.position,
            lba: h.lba,
            blocks: u64::from(h.blocks),
            data,
        });
        pos += 1 + u64::from(h.blocks);
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RedbStore;
    use dve_fp_api::ids::VsegId;

    fn entry(sequence: u64, position: u64, lba: u64, blocks: u32, fill: u8) -> Vec<u8> {
        let h = JournalEntryHeader {
            journal_sequence: sequence,
            position,
            worker: WorkerId(1),
            lv: LvId(1),
            vseg: VsegId(1),
            lba,
            blocks,
            block_size: 512,
            timestamp: position,
        };
        let mut block = vec![0u8; 512];
        h.encode(&mut block).unwrap();
        block.extend(std::iter::repeat_n(fill, blocks as usize * 512));
        block
    }

    #[test]
    fn a_slot_parses_to_its_own_entries_past_holes_and_stale_ones() {
        let slot = ClosedSlot { slot: 0, writer: WorkerId(1), sequence: 7, cycle: 3 };
        let mut buf = entry(7, 0, 100, 2, 0xA1);
        // A hole (a journal write that never landed), then an entry of an earlier use.
        buf.extend(vec![0u8; 512]);
        buf.extend(entry(6, 4, 900, 1, 0xEE));
        buf.extend(entry(7, 6, 200, 1, 0xB2));
        buf.resize(16 * 512, 0);
        let entries = parse_slot(&buf, 512, slot);
        let got: Vec<(u64, u64, u8)> = entries.iter().map(|e| (e.lba, e.blocks, e.data[0])).collect();
        assert_eq!(got, vec![(100, 2, 0xA1), (200, 1, 0xB2)]);
        assert!(entries.iter().all(|e| e.data.len() == e.blocks as usize * 512));
    }

    /// A redb file named after `test` with three discovered devices, and an engine on it with
    /// a 4,096-block journaled volume on devices 1 (journal on 2); device 3 is left for replicas.
    fn engine_with_a_journaled_volume(test: &str) -> (std::path::PathBuf, ControlPath, LvId) {
        use crate::control_path::persist::discovered_devices;
        use crate::store::MetadataStore;

        let path = std::env::temp_dir().join(format!("dve-replication-{test}-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        {
            let mut store = RedbStore::open(&path).unwrap();
            store.commit(discovered_devices(3, 100_000)).unwrap();
        }
        let mut cp = restarted(&path);
        let layout = LayoutSpec::Journal { primary: DeviceId(1), journal: DeviceId(2), journal_blocks: 768 };
        let lv = cp.create_volume("j", 4096, layout).unwrap();
        (path, cp, lv)
    }

    /// An engine started from the redb file at `path`.
    fn restarted(path: &std::path::Path) -> ControlPath {
        let mut cp = ControlPath::new(crate::control_path::ControlPathConfig::new(1, 2, 2));
        cp.attach_store(Box::new(RedbStore::open(path).unwrap())).unwrap();
        cp
    }

    #[test]
    fn a_replication_survives_a_restart_of_its_engine_and_a_refused_one_leaves_nothing() {
        let (path, mut cp, lv) = engine_with_a_journaled_volume("restart");
        let replica = {
            let before: Vec<u64> = cp.devices().iter().map(|d| d.allocated).collect();
            assert!(cp.start_replication(lv, DeviceId(3), 0).is_err());
            assert_eq!(cp.devices().iter().map(|d| d.allocated).collect::<Vec<_>>(), before);
            cp.start_replication(lv, DeviceId(3), 1_000_000).unwrap();
            cp.replications()[0].replica
        };
        drop(cp);
        // The engine restarts from its redb file: the replication is back, at the same place,
        // and starts over from a consistency point and a baseline.
        let cp = restarted(&path);
        let progress = cp.replications();
        assert_eq!(progress.len(), 1);
        assert_eq!((progress[0].lv, progress[0].replica), (lv, replica));
        assert_eq!((progress[0].baseline_blocks, progress[0].applied_cycle), (0, None));
        assert_eq!(cp.devices().get(DeviceId(3)).map(|d| d.allocated), Some(4096), "the claim is kept");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_paused_replication_stays_paused_across_a_restart() {
        let (path, mut cp, lv) = engine_with_a_journaled_volume("paused");
        assert!(cp.pause_replication(lv, true).is_err(), "not replicated yet");
        cp.start_replication(lv, DeviceId(3), 1_000_000).unwrap();
        cp.pause_replication(lv, true).unwrap();
        cp.pause_replication(lv, true).unwrap();
        assert!(cp.replications()[0].paused);
        drop(cp);
        let mut cp = restarted(&path);
        let p = cp.replications()[0];
        assert!(p.paused, "the pause was committed: {p:?}");
        assert_eq!((p.baseline_blocks, p.copy_blocks), (0, 4096), "the whole volume is copied on resuming");
        cp.pause_replication(lv, false).unwrap();
        assert!(!cp.replications()[0].paused);
        cp.stop_replication(lv).unwrap();
        assert!(cp.pause_replication(lv, true).is_err(), "a stopping replication is not paused");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_failed_journaled_write_has_its_blocks_copied_behind_a_consistency_point_of_their_own() {
        let (path, mut cp, lv) = engine_with_a_journaled_volume("unjournaled");
        cp.start_replication(lv, DeviceId(3), 1_000_000).unwrap();
        // As once the baseline is done and cycles are applied: one received, not yet applied.
        let received = ShippedEntry {
            timestamp: 1,
            writer: WorkerId(0),
            sequence: 1,
            position: 0,
            lba: 900,
            blocks: 4,
            data: Bytes::from(vec![0u8; 4 * 512]),
        };
        {
            let r = cp.replications.active.get_mut(&lv).unwrap();
            r.rebase = false;
            r.base_cycle = Some(0);
            r.first_consistent = Some(1);
            r.to_copy = CopyRanges::whole(0);
            r.received.insert(2, vec![received]);
            r.cut_at.insert(2, 50);
            r.count_copy();
        }
        cp.now = 77;
        cp.replication_range_unjournaled(lv, 100..108);
        let r = &cp.replications.active[&lv];
        assert!(r.rebase && r.first_consistent.is_none() && r.received.is_empty());
        assert!(r.cut_at.is_empty(), "cycle 2 is never applied now: its instant is not kept");
        assert_eq!((r.next_cut_at, r.to_copy.blocks(), r.progress.copy_blocks), (77, 12, 12));
        // While that copy is under way, another failed write only adds its blocks.
        cp.replication_range_unjournaled(lv, 4000..5000);
        assert_eq!(cp.replications.active[&lv].to_copy.blocks(), 12 + 96, "clipped at the volume's end");
        // A write the host aborted on the fast path is one too.
        let request = dve_fp_api::io::HostIo {
            initiator: dve_fp_api::ids::Wwn(1),
            initiator_fc_id: dve_fp_api::ids::FcId::new(0x01_0001).unwrap(),
            vdevice: dve_fp_api::io::VDevice {
                exposure: dve_fp_api::ids::ExposureId(1),
                lun: dve_fp_api::ids::Lun(0),
            },
            lv: Some(lv),
            vseg: None,
            kind: dve_fp_api::io::IoKind::Write,
            lba: 2000,
            blocks: 16,
            data_len: 16 * 512,
            cdb: dve_fp_api::io::Cdb::new(&[0x2A, 0, 0, 0, 0x07, 0xD0, 0, 0, 16, 0]).unwrap(),
            received: dve_fp_api::ids::Timestamp(70),
        };
        let (port, abts) = (dve_fp_api::ids::PortId(0), dve_fp_api::frame::Frame::empty());
        let message = dve_fp_api::message::ToCp::WriteAborted { request, port, abts };
        cp.handle_upcall(dve_fp_api::ids::Timestamp(80), WorkerId(0), message);
        assert_eq!(cp.replications.active[&lv].to_copy.blocks(), 12 + 96 + 16);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_journaled_write_failing_during_a_copy_is_copied_after_its_cycle_and_not_applied_from_the_journal() {
        let (path, mut cp, lv) = engine_with_a_journaled_volume("failed-during-copy");
        cp.start_replication(lv, DeviceId(3), 1_000_000).unwrap();
        // A copy under way behind consistency point 0; cycle 1 is open.
        {
            let r = cp.replications.active.get_mut(&lv).unwrap();
            r.rebase = false;
            r.base_cycle = Some(0);
            r.to_copy = CopyRanges::whole(0);
            r.count_copy();
        }
        cp.journal_cut(lv);
        let entry = |lba: u64, fill: u8| ShippedEntry {
            timestamp: lba,
            writer: WorkerId(0),
            sequence: 1,
            position: 0,
            lba,
            blocks: 8,
            data: Bytes::from(vec![fill; 8 * 512]),
        };
        // Cycle 1 holds a write that landed, and the journal's version of one that failed,
        // having reached the journal but not the primary.
        let received = vec![entry(200, 0xB2), entry(100, 0xA1)];
        cp.replications.active.get_mut(&lv).unwrap().received.insert(1, received);
        cp.replication_range_unjournaled(lv, 100..108);
        {
            let r = &cp.replications.active[&lv];
            assert!(!r.rebase && r.base_cycle == Some(0), "the copy is not started over");
            assert!(r.to_copy.is_empty(), "not copied before its cycle closes (the host's retry is in it)");
            assert_eq!(r.progress.copy_blocks, 8);
        }
        cp.baseline_step(lv);
        assert!(cp.replications.active[&lv].transfer.is_none());
        // Cycle 1 closes and its slots are shipped: the blocks are copied from the primary.
        cp.journal_cut(lv);
        let closed: Vec<usize> = cp.journals[&lv].closed().iter().map(|c| c.slot).collect();
        for slot in closed {
            cp.slot_shipped(lv, slot);
        }
        cp.baseline_step(lv);
        let copy = {
            let t = cp.replications.active[&lv].transfer.clone().expect("a transfer");
            assert_eq!(t.blocks, 100..108);
            t.copy
        };
        cp.baseline_copied(lv, copy, true);
        cp.baseline_step(lv);
        assert_eq!(cp.replications.active[&lv].first_consistent, Some(2));
        assert!(cp.replications()[0].catching_up);
        // Cycle 1 is applied without the failed write's blocks: the replica keeps the copy's.
        let replica = cp.replications()[0].replica;
        cp.out.clear();
        cp.apply_step(lv);
        let written: Vec<Range<u64>> = cp
            .out
            .iter()
            .filter_map(|(_, m)| match m {
                ToFp::DispatchIo(DownstreamRequest {
                    device,
                    op: DownstreamOp::Write { lba, blocks, .. },
                    ..
                }) if *device == replica.device => {
                    Some(lba - replica.lba..lba - replica.lba + u64::from(*blocks))
                }
                _ => None,
            })
            .collect();
        assert_eq!(written, vec![200..208]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_entry_running_past_the_slot_is_not_taken() {
        let slot = ClosedSlot { slot: 0, writer: WorkerId(1), sequence: 1, cycle: 0 };
        let mut buf = entry(1, 0, 0, 8, 1);
        buf.truncate(4 * 512);
        assert!(parse_slot(&buf, 512, slot).is_empty());
    }
}
