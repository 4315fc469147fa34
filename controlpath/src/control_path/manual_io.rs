//! I/O the control path executes itself (`CpQueueIO`): it translates with its own,
//! authoritative maps, serializes mirror and journal writes by revoking the fast path's
//! authority over the range first (seed 003 Fig. 17, so serialization happens in one place
//! only), fetches write data (`FPGetData`), dispatches the device legs (`FPDispatchIO`),
//! returns read data (`FPPutData`) and completes the host I/O (`FPQueueIOComplete`).

use bytes::Bytes;
use dve_fp_api::fault::FaultCause;
use dve_fp_api::ids::{DeviceId, IoTag, LvId, WorkerId};
use dve_fp_api::io::{
    DownstreamOp, DownstreamRequest, HostIo, IoKind, IoStatus, QueueReason, ScsiStatus, Sense,
};
use dve_fp_api::message::ToFp;

use super::journal::ControlAppend;
use super::multipath::PathWaiter;
use super::revocation::AfterRevocation;
use super::{ControlPath, DispatchPurpose, RequestPurpose};
use dve_fp_api::mapping::SideState;

use crate::volume::{DeviceLeg, LayoutSpec};

/// Sense of a command the host should simply retry (ABORTED COMMAND, no additional sense).
pub(super) const RETRY: Sense = Sense { key: 0x0B, asc: 0x00, ascq: 0x00 };
/// LOGICAL BLOCK ADDRESS OUT OF RANGE.
pub(super) const LBA_OUT_OF_RANGE: Sense = Sense { key: 0x05, asc: 0x21, ascq: 0x00 };
/// LOGICAL UNIT NOT SUPPORTED.
pub(super) const LUN_NOT_SUPPORTED: Sense = Sense { key: 0x05, asc: 0x25, ascq: 0x00 };

/// Counters of manual I/O.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ManualIoCounters {
    /// Reads executed by the control path.
    pub reads: u64,
    /// Writes executed by the control path.
    pub writes: u64,
    /// Writes that first revoked the fast path's authority over their range.
    pub serialized_writes: u64,
    /// Reads and writes the control path completed with an error status, each counted once.
    pub errors: u64,
    /// Writes that waited for a free journal slot.
    pub journal_waits: u64,
}

/// Where a manual I/O stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    /// Waiting for a range lock another operation holds.
    WaitingLock,
    /// Revoking the fast path's authority and fetching data.
    Preparing,
    /// Ready, but the control path's journal has no free slot yet (journaled volumes).
    WaitingJournal,
    /// Legs dispatched.
    Dispatched,
    /// Waiting for a mirror side's death procedure before completing.
    WaitingSideDeath,
    /// A leg got no answer: waiting for the device's path test.
    WaitingPath,
}

/// One I/O the control path runs.
#[derive(Clone, Debug)]
pub(super) struct ManualIo {
    io: IoTag,
    request: HostIo,
    lv: LvId,
    write: bool,
    stage: Stage,
    /// Revocations (with range locks) this I/O holds or waits for.
    locks: Vec<u64>,
    locks_pending: usize,
    data: Option<Bytes>,
    data_pending: bool,
    legs: Vec<DeviceLeg>,
    /// Legs from this index on append to the volume's journal.
    journal_legs_from: usize,
    results: Vec<Option<Result<(), Option<IoStatus>>>>,
    read_buf: Vec<u8>,
    read_side: usize,
    attempts: u32,
    /// When its legs were last dispatched.
    dispatched_at: u64,
    /// Whether a path test already cleared the paths of its failed legs.
    path_checked: bool,
    /// Times its legs were dispatched again after a timeout on a device that answered.
    transient_retries: u32,
}

impl ControlPath {
    /// Whether the control path runs an I/O of `lv`.
    pub(super) fn has_manual_io_on(&self, lv: LvId) -> bool {
        self.manual.values().any(|m| m.lv == lv)
    }

    /// Whether an I/O the control path runs has (or may dispatch again) a leg on `device`.
    pub(super) fn manual_io_reaches(&self, device: DeviceId) -> bool {
        self.manual.values().any(|m| m.legs.iter().any(|l| l.device == device))
    }

    /// Take over an upstream read or write.
    pub(super) fn start_manual(&mut self, io: IoTag, request: HostIo) {
        self.start_manual_inner(io, request, None);
    }

    /// Run a write whose data the control path already has (WRITE SAME's expanded block).
    pub(super) fn start_manual_with_data(&mut self, io: IoTag, request: HostIo, data: Bytes) {
        self.start_manual_inner(io, request, Some(data));
    }

    /// Take over an upstream I/O, with its data if the control path already has it.
    pub(super) fn start_manual_with(&mut self, io: IoTag, request: HostIo, data: Option<Bytes>) {
        self.start_manual_inner(io, request, data);
    }

    fn start_manual_inner(&mut self, io: IoTag, request: HostIo, data: Option<Bytes>) {
        // After a restart, before the volume's devices are back: an incremental's granule
        // copy or a snapshot's push would fail on them, so the I/O waits here, not later.
        if self.park_until_devices(io, &request, &data) {
            return;
        }
        if request.kind == IoKind::Write && self.hold_at_barrier(io, &request, &data) {
            return;
        }
        if request.kind == IoKind::Write && request.lv.is_some_and(|lv| self.incremental_involves(lv)) {
            self.incremental_write(io, request, data);
            return;
        }
        if request.kind == IoKind::Write && request.lv.is_some_and(|lv| self.snapshot_involves(lv)) {
            self.snapshot_write(io, request, data);
            return;
        }
        self.run_manual(io, request, data);
    }

    /// Run an I/O without looking at snapshots (the snapshot path calls this once the
    /// blocks are pushed).
    pub(super) fn run_manual(&mut self, io: IoTag, request: HostIo, data: Option<Bytes>) {
        if !matches!(request.kind, IoKind::Read | IoKind::Write) {
            self.scsi_command(io, request, QueueReason { cause: FaultCause::NotReadWrite, failure: None });
            return;
        }
        let Some(lv) = request.lv.filter(|lv| self.volumes.contains_key(lv)) else {
            self.complete_io(io, IoStatus::check_condition(LUN_NOT_SUPPORTED));
            return;
        };
        if self.park_until_devices(io, &request, &data) {
            return;
        }
        let write = request.kind == IoKind::Write;
        let capacity = self.volumes.get(&lv).map_or(0, |v| v.record.blocks);
        if request.lba.checked_add(u64::from(request.blocks)).is_none_or(|end| end > capacity) {
            self.complete_io(io, IoStatus::check_condition(LBA_OUT_OF_RANGE));
            return;
        }
        if write {
            self.counters.manual.writes += 1;
            // On a degraded mirror the write reaches the live sides only: their ages say so
            // durably before it is dispatched, whatever made it fault. If they cannot, or the
            // side's death itself is not recorded yet, it is not run: BUSY, which hosts retry.
            if self.side_death_unrecorded(lv)
                || self.stamp_ages(lv, request.lba, u64::from(request.blocks)).is_err()
            {
                self.complete_io(io, IoStatus { status: ScsiStatus::BUSY, sense: None, residual: 0 });
                return;
            }
        } else {
            self.counters.manual.reads += 1;
        }
        let id = self.op_id();
        let op = ManualIo {
            io,
            request,
            lv,
            write,
            stage: Stage::WaitingLock,
            locks: Vec::new(),
            locks_pending: 0,
            data,
            data_pending: false,
            legs: Vec::new(),
            journal_legs_from: 0,
            results: Vec::new(),
            read_buf: Vec::new(),
            read_side: 0,
            attempts: 0,
            dispatched_at: 0,
            path_checked: false,
            transient_retries: 0,
        };
        self.manual.insert(id, op);
        self.prepare_manual(id);
    }

    /// Whether a write the control path runs on `lv` overlaps `blocks` (volume blocks) and
    /// may still reach a device.
    pub(super) fn manual_writes_overlap(&self, lv: LvId, blocks: core::ops::Range<u64>) -> bool {
        self.manual.values().any(|op| {
            op.lv == lv
                && op.write
                && op.stage != Stage::WaitingLock
                && op.stage != Stage::WaitingJournal
                && op.request.lba < blocks.end
                && blocks.start < op.request.lba + u64::from(op.request.blocks)
        })
    }

    /// Whether writes to `lv` must be serialized against the fast path's.
    fn serializes_writes(&self, lv: LvId) -> bool {
        self.volumes.get(&lv).is_some_and(|v| {
            matches!(
                v.record.layout,
                LayoutSpec::Mirror { .. } | LayoutSpec::Raid10 { .. } | LayoutSpec::Journal { .. }
            )
        })
    }

    /// Take the range locks (if needed) and fetch the data (for writes).
    fn prepare_manual(&mut self, id: u64) {
        let Some(op) = self.manual.get(&id) else { return };
        let (lv, lba, blocks, write, io) =
            (op.lv, op.request.lba, u64::from(op.request.blocks), op.write, op.io);
        let pieces = self.volumes.get(&lv).map(|v| v.pieces(lba, blocks)).unwrap_or_default();
        let serialize = write && self.serializes_writes(lv);
        // A write never starts inside a range the control path is changing or serializing.
        if write && pieces.iter().any(|(vseg, range, _)| self.is_locked(*vseg, range)) {
            return; // Retried when a lock is released.
        }
        let mut locks = Vec::new();
        if serialize {
            self.counters.manual.serialized_writes += 1;
            for (vseg, range, _) in &pieces {
                locks.push(self.revoke_writes_in(*vseg, range.clone(), true, AfterRevocation::ManualIo(id)));
            }
        }
        let has_data = self.manual.get(&id).is_some_and(|op| op.data.is_some());
        let data_req = (write && !has_data).then(|| self.request(RequestPurpose::ManualData(id)));
        let Some(op) = self.manual.get_mut(&id) else { return };
        op.stage = Stage::Preparing;
        op.locks_pending = locks.len();
        op.locks = locks;
        if let Some(req) = data_req {
            op.data_pending = true;
            self.send(io.worker, ToFp::GetData { req, io });
        }
        self.maybe_dispatch_manual(id);
    }

    /// The manual I/O in `stage` (of volume `lv` only, if given), in id order.
    fn manual_ops_in(&self, stage: Stage, lv: Option<LvId>) -> Vec<u64> {
        self.manual
            .iter()
            .filter(|(_, op)| op.stage == stage && lv.is_none_or(|lv| op.lv == lv))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Work waiting for a range lock tries again.
    pub(super) fn retry_lock_waiters(&mut self) {
        for id in self.manual_ops_in(Stage::WaitingLock, None) {
            self.prepare_manual(id);
        }
        self.resync_lock_released();
        self.reconcile_lock_released();
    }

    /// A journal slot of `lv` came free: writes waiting for journal space try again.
    pub(super) fn retry_journal_waiters(&mut self, lv: LvId) {
        for id in self.manual_ops_in(Stage::WaitingJournal, Some(lv)) {
            if let Some(op) = self.manual.get_mut(&id) {
                op.stage = Stage::Preparing;
            }
            self.maybe_dispatch_manual(id);
        }
    }

    pub(super) fn manual_revoked(&mut self, id: u64, _revocation: u64) {
        if let Some(op) = self.manual.get_mut(&id) {
            op.locks_pending = op.locks_pending.saturating_sub(1);
        }
        self.maybe_dispatch_manual(id);
    }

    pub(super) fn manual_data(&mut self, id: u64, _io: IoTag, result: Result<Bytes, dve_fp_api::Error>) {
        let Some(op) = self.manual.get_mut(&id) else { return };
        op.data_pending = false;
        match result {
            Ok(data)
                if data.len() as u64
                    >= u64::from(op.request.blocks)
                        * u64::from(op.request.data_len / op.request.blocks.max(1)) =>
            {
                op.data = Some(data);
                self.maybe_dispatch_manual(id);
            }
            _ => self.finish_manual(id, IoStatus::check_condition(RETRY)),
        }
    }

    pub(super) fn manual_put_failed(&mut self, id: u64) {
        // The host is gone or aborted; nothing else to do but forget the I/O.
        if let Some(op) = self.manual.remove(&id) {
            for lock in op.locks {
                self.release_lock(lock);
            }
        }
    }

    fn maybe_dispatch_manual(&mut self, id: u64) {
        let Some(op) = self.manual.get(&id) else { return };
        if op.stage != Stage::Preparing || op.locks_pending > 0 || op.data_pending {
            return;
        }
        let (lv, lba, blocks, write) = (op.lv, op.request.lba, u64::from(op.request.blocks), op.write);
        let mut read_side = op.read_side;
        let mut legs = match self.volumes.get(&lv).map(|v| v.legs(lba, blocks, write, &mut read_side)) {
            Some(Ok(legs)) => legs,
            _ => {
                self.finish_manual(id, IoStatus::check_condition(RETRY));
                return;
            }
        };
        // A write to a journaled volume is also appended to the control path's own journal
        // of its group, header block first, like the fast path's journal primitive.
        let journal = if write {
            let data = op.data.clone().unwrap_or_default();
            match self.journal_append(lv, lba, blocks, &data) {
                ControlAppend::Entries(entries) => entries,
                ControlAppend::NotJournaled => Vec::new(),
                ControlAppend::NoSpace => {
                    self.counters.manual.journal_waits += 1;
                    if let Some(op) = self.manual.get_mut(&id) {
                        op.stage = Stage::WaitingJournal;
                    }
                    return;
                }
            }
        } else {
            Vec::new()
        };
        let first_journal_leg = legs.len();
        legs.extend(journal.iter().map(|(leg, _)| *leg));
        let Some(op) = self.manual.get(&id) else { return };
        let block_size = self.volumes.get(&lv).map_or(512, |v| u64::from(v.record.block_size));
        let mut sends = Vec::with_capacity(legs.len());
        let mut immediate_failures = Vec::new();
        for (i, leg) in legs.iter().enumerate() {
            let device = self.devices.get(leg.device);
            let Some((port, _)) = device.filter(|d| d.online).and_then(|d| d.path()) else {
                immediate_failures.push(i);
                continue;
            };
            let worker = self.plan.worker_of(port).unwrap_or(WorkerId(0));
            let entry = i.checked_sub(first_journal_leg).and_then(|k| journal.get(k)).map(|(_, e)| e.clone());
            let dop = if let Some(entry) = entry {
                DownstreamOp::Write { lba: leg.lba, blocks: leg.blocks as u32, data: entry }
            } else if write {
                let data = op.data.clone().unwrap_or_default();
                let from = (leg.offset * block_size) as usize;
                let to = ((leg.offset + leg.blocks) * block_size) as usize;
                if to > data.len() {
                    immediate_failures.push(i);
                    continue;
                }
                DownstreamOp::Write { lba: leg.lba, blocks: leg.blocks as u32, data: data.slice(from..to) }
            } else {
                DownstreamOp::Read { lba: leg.lba, blocks: leg.blocks as u32 }
            };
            sends.push((i, worker, leg.device, dop));
        }
        let buf_len = if write { 0 } else { (blocks * block_size) as usize };
        if let Some(op) = self.manual.get_mut(&id) {
            op.stage = Stage::Dispatched;
            op.dispatched_at = self.now;
            op.read_side = read_side;
            op.results = vec![None; legs.len()];
            op.read_buf = vec![0; buf_len];
            op.legs = legs;
            op.journal_legs_from = first_journal_leg;
            for i in &immediate_failures {
                op.results[*i] = Some(Err(None));
            }
        }
        for (leg, worker, device, dop) in sends {
            let tag = self.dispatch_tag(DispatchPurpose::ManualLeg { op: id, leg });
            self.send(worker, ToFp::DispatchIo(DownstreamRequest { tag, device, op: dop }));
        }
        self.maybe_complete_manual(id);
    }

    pub(super) fn manual_leg_done(&mut self, id: u64, leg: usize, status: IoStatus, data: Option<Bytes>) {
        let block_size =
            self.manual.get(&id).and_then(|op| self.volumes.get(&op.lv)).map_or(512, |v| v.record.block_size);
        let Some(op) = self.manual.get_mut(&id) else { return };
        let Some(info) = op.legs.get(leg).copied() else { return };
        let expected = (info.blocks * u64::from(block_size)) as usize;
        if status.is_good() && op.write {
            op.results[leg] = Some(Ok(()));
        } else if status.is_good() {
            match data {
                Some(data) if data.len() >= expected => {
                    let at = (info.offset * u64::from(block_size)) as usize;
                    let n = expected.min(op.read_buf.len().saturating_sub(at));
                    op.read_buf[at..at + n].copy_from_slice(&data[..n]);
                    op.results[leg] = Some(Ok(()));
                }
                // GOOD status but data frames lost on the way: not a success.
                _ => op.results[leg] = Some(Err(Some(IoStatus::check_condition(RETRY)))),
            }
        } else {
            // A leg nobody answered is recorded as such, not with the worker's TASK ABORTED
            // mark as if it were the device's answer.
            let answer = super::multipath::path_answered(&status).then_some(status);
            op.results[leg] = Some(Err(answer));
        }
        self.maybe_complete_manual(id);
    }

    fn maybe_complete_manual(&mut self, id: u64) {
        let Some(op) = self.manual.get(&id) else { return };
        if op.stage != Stage::Dispatched || op.results.iter().any(Option::is_none) {
            return;
        }
        // Failed legs, and which of them append to the journal.
        let journal_from = op.journal_legs_from;
        let (journal_failures, failed): (Vec<_>, Vec<_>) = op
            .legs
            .iter()
            .zip(&op.results)
            .enumerate()
            .filter_map(|(i, (leg, r))| match r {
                Some(Err(status)) => Some((i >= journal_from && op.write, (*leg, *status))),
                _ => None,
            })
            .partition(|(journal, _)| *journal);
        let journal_failures: Vec<(DeviceLeg, Option<IoStatus>)> =
            journal_failures.into_iter().map(|(_, f)| f).collect();
        let failed: Vec<(DeviceLeg, Option<IoStatus>)> = failed.into_iter().map(|(_, f)| f).collect();
        if failed.is_empty() && journal_failures.is_empty() {
            let op = op.clone();
            if !op.write && !op.read_buf.is_empty() {
                let len = (op.request.data_len as usize).min(op.read_buf.len());
                let req = self.request(RequestPurpose::ManualPut(id));
                let data = Bytes::from(op.read_buf[..len].to_vec());
                self.send(op.io.worker, ToFp::PutData { req, io: op.io, offset: 0, data });
            }
            self.finish_manual(id, IoStatus::GOOD);
            return;
        }
        // A leg nobody answered may have met a dead path: test it before blaming the device.
        let unanswered =
            failed.iter().chain(&journal_failures).find(|(_, s)| s.is_none()).map(|(leg, _)| leg.device);
        if let Some(device) = unanswered.filter(|_| !op.path_checked) {
            let issued_at = op.dispatched_at;
            if let Some(op) = self.manual.get_mut(&id) {
                op.stage = Stage::WaitingPath;
            }
            self.path_suspect(device, issued_at, PathWaiter::Manual(id));
            return;
        }
        let Some(op) = self.manual.get(&id) else { return };
        let lv = op.lv;
        let write = op.write;
        // A journal leg that failed takes the journal out of service; the write stands on
        // the primary (replication copies the whole volume again once the journal is back).
        if !journal_failures.is_empty() {
            self.journal_failed(lv);
            if failed.is_empty() {
                self.finish_manual(id, IoStatus::GOOD);
                return;
            }
        }
        // Legs on a side removed since they were dispatched: that side's copy no longer
        // matters, so a write counts on the sides left; a read runs again on them.
        let (gone, mut failed): (Vec<_>, Vec<_>) = failed
            .into_iter()
            .partition(|(leg, _)| leg.side.is_some() && self.removed_side_device(lv, leg.device));
        if !gone.is_empty() && !write {
            if let Some(op) = self.manual.get_mut(&id) {
                op.stage = Stage::Preparing;
                op.results.clear();
            }
            self.maybe_dispatch_manual(id);
            return;
        }
        if failed.is_empty() {
            self.finish_manual(id, IoStatus::GOOD);
            return;
        }
        // Mirror legs that failed: declare their sides dead first (seed 003 section 6.5). The
        // side is found by the leg's device, since a side's removal renumbers the later ones.
        for (leg, _) in &mut failed {
            if leg.side.is_some()
                && let Some(side) = self.side_of(lv, leg.device)
            {
                leg.side = Some(side);
            }
        }
        let sides: Vec<usize> = failed.iter().filter_map(|(leg, _)| leg.side).collect();
        if sides.len() == failed.len() {
            let covered = !write || self.every_piece_on_a_current_side(id, lv, &sides);
            let mut attempts = 0;
            if let Some(op) = self.manual.get_mut(&id) {
                op.stage = Stage::WaitingSideDeath;
                op.attempts += 1;
                attempts = op.attempts;
            }
            if !covered || attempts > 3 {
                self.finish_manual(id, IoStatus::check_condition(RETRY));
            }
            // The I/O resumes once every failed side is declared dead (at once if it is).
            for side in sides {
                self.side_failed(lv, side);
            }
            return;
        }
        // No redundancy: the host gets the device's own error, or a retry if it said nothing.
        if write {
            let request = self.manual.get(&id).map(|op| op.request);
            if let Some(request) = request {
                self.journaled_write_failed(&request);
            }
        }
        let status = failed.iter().find_map(|(_, s)| *s).unwrap_or(IoStatus::check_condition(RETRY));
        self.finish_manual(id, status);
    }

    /// For a write whose mirror legs partly failed: whether every block reached a side that
    /// stays current, an alive one that did not fail. A side being resynchronized does not
    /// count: when the only alive side fails, that side cannot be declared dead (the volume
    /// keeps one), and the resync's next copy fails and declares the resynchronizing side
    /// dead instead, so a write acknowledged on that side alone would be lost.
    fn every_piece_on_a_current_side(&self, id: u64, lv: LvId, failing: &[usize]) -> bool {
        let Some(op) = self.manual.get(&id) else { return false };
        let Some(v) = self.volumes.get(&lv) else { return false };
        let current = |leg: &DeviceLeg| match leg.side {
            // The side found by its device: a removal since the dispatch renumbers sides, and a
            // removed side's copy no longer counts.
            Some(_) => self.side_of(lv, leg.device).is_some_and(|s| {
                !failing.contains(&s) && v.record.side_states.get(s) == Some(&SideState::Alive)
            }),
            None => true,
        };
        let blocks = u64::from(op.request.blocks);
        let mut covered = vec![false; blocks as usize];
        for (leg, result) in op.legs.iter().zip(&op.results) {
            if matches!(result, Some(Ok(()))) && current(leg) {
                for b in leg.offset..(leg.offset + leg.blocks).min(blocks) {
                    covered[b as usize] = true;
                }
            }
        }
        covered.iter().all(|c| *c)
    }

    /// A mirror side's death procedure finished: I/O waiting on it completes (writes that
    /// reached a live side) or runs again (reads).
    pub(super) fn resume_after_side_death(&mut self, lv: LvId) {
        let mut waiting = self.manual_ops_in(Stage::WaitingSideDeath, Some(lv));
        // A snapshot reading through the volume's sides has its reads waiting too.
        if let Some(snapshot) = self.snapshot_over(lv) {
            waiting.extend(self.manual_ops_in(Stage::WaitingSideDeath, Some(snapshot)));
        }
        for id in waiting {
            let Some(op) = self.manual.get_mut(&id) else { continue };
            if op.write {
                self.finish_manual(id, IoStatus::GOOD);
            } else {
                op.stage = Stage::Preparing;
                op.results.clear();
                self.maybe_dispatch_manual(id);
            }
        }
    }

    /// The device is reached on a new path: dispatch every leg again.
    pub(super) fn redispatch_manual(&mut self, id: u64) {
        let Some(op) = self.manual.get_mut(&id).filter(|op| op.stage == Stage::WaitingPath) else { return };
        op.stage = Stage::Preparing;
        op.results.clear();
        self.maybe_dispatch_manual(id);
    }

    /// A leg timed out on a device that answered its path test: the legs run again (the
    /// control path holds the data and, for a mirror write, the range lock, so every side
    /// gets the write), at most `leg_timeout_limit` times; after that the failures stand.
    pub(super) fn manual_leg_timeout_transient(&mut self, id: u64) {
        let limit = self.config.leg_timeout_limit;
        let Some(op) = self.manual.get_mut(&id).filter(|op| op.stage == Stage::WaitingPath) else { return };
        if op.transient_retries >= limit {
            self.manual_path_checked(id);
            return;
        }
        op.transient_retries += 1;
        op.stage = Stage::Preparing;
        op.results.clear();
        self.maybe_dispatch_manual(id);
    }

    /// The path test found no path working, or the device failing I/O: the legs' failures
    /// stand.
    pub(super) fn manual_path_checked(&mut self, id: u64) {
        let Some(op) = self.manual.get_mut(&id).filter(|op| op.stage == Stage::WaitingPath) else { return };
        op.stage = Stage::Dispatched;
        op.path_checked = true;
        self.maybe_complete_manual(id);
    }

    fn finish_manual(&mut self, id: u64, status: IoStatus) {
        let Some(op) = self.manual.remove(&id) else { return };
        if !status.is_good() {
            self.counters.manual.errors += 1;
        }
        for lock in &op.locks {
            self.release_lock(*lock);
        }
        let residual = if status.is_good() { 0 } else { status.residual };
        self.send(op.io.worker, ToFp::QueueIoComplete { io: op.io, status: IoStatus { residual, ..status } });
    }

    /// Complete a queued I/O the control path answers without device I/O.
    pub(super) fn complete_io(&mut self, io: IoTag, status: IoStatus) {
        if !status.is_good() {
            self.counters.manual.errors += 1;
        }
        self.send(io.worker, ToFp::QueueIoComplete { io, status });
    }

    /// A downstream leg of a fast-path I/O failed (Fig. 6). A leg nobody answered first has
    /// its device's path tested (see `multipath`, and `leg_timeout` for a device that
    /// answers); a SCSI error is the device's.
    pub(super) fn downstream_error(&mut self, io: IoTag, request: HostIo, reason: QueueReason) {
        if let Some(failure) = reason.failure.filter(|f| f.status.is_none()) {
            let waiter = PathWaiter::HostIo { io, request, reason };
            self.path_suspect(failure.device, request.received.0, waiter);
            return;
        }
        self.device_error(io, request, reason);
    }

    /// A device failed a leg of a fast-path I/O: a mirror side is declared dead and the I/O
    /// retried on the live sides (a read by the control path; a write by the host, since its
    /// data has already left the switch); anything else returns the device's error.
    pub(super) fn device_error(&mut self, io: IoTag, request: HostIo, reason: QueueReason) {
        self.journaled_write_failed(&request);
        let Some(failure) = reason.failure else {
            self.complete_io(io, IoStatus::check_condition(RETRY));
            return;
        };
        // A snapshot still completing reads unpushed blocks through its source's sides.
        let owner = request.lv.map(|lv| self.reading_through(lv).unwrap_or(lv));
        if owner.is_some_and(|lv| self.removed_side_device(lv, failure.device)) {
            self.removed_side_failed(io, request);
            return;
        }
        // The journal leg of a journaled write: the journal goes out of service and the host
        // retries, its write then running on the primary alone. A device error of the
        // journal is no error of the volume's.
        if let Some(lv) = request.lv.filter(|lv| self.journal_device_of(*lv, failure.device)) {
            self.journal_failed(lv);
            self.device_unanswered(failure);
            self.complete_io(io, IoStatus::check_condition(RETRY));
            return;
        }
        let side = owner.and_then(|lv| self.side_of(lv, failure.device).map(|s| (lv, s)));
        if let Some((lv, side)) = side {
            self.side_failed(lv, side);
            if request.kind == IoKind::Read {
                self.start_manual(io, request);
            } else {
                self.complete_io(io, IoStatus::check_condition(RETRY));
            }
            return;
        }
        self.device_unanswered(failure);
        let status = failure.status.filter(|s| !s.is_good()).unwrap_or(IoStatus::check_condition(RETRY));
        self.complete_io(io, status);
    }

    /// A fast-path write to a journaled volume failed: its primary leg may have landed and
    /// its journal leg not, or the other way round, so replication copies its blocks from
    /// the primary instead of trusting the journal there.
    pub(super) fn journaled_write_failed(&mut self, request: &HostIo) {
        if let Some(lv) =
            request.lv.filter(|lv| request.kind == IoKind::Write && self.journals.contains_key(lv))
        {
            self.replication_range_unjournaled(lv, request.lba..request.lba + u64::from(request.blocks));
        }
    }

    /// A leg's device gave no answer even on a path that answers its test: it has failed.
    fn device_unanswered(&mut self, failure: dve_fp_api::io::DownstreamFailure) {
        if failure.status.is_none()
            && let Some(d) = self.devices.get_mut(failure.device)
            && d.online
        {
            d.online = false;
            self.events.push(super::ControlEvent::DeviceFailed { device: failure.device });
        }
    }
}
