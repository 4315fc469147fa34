//! Block copies: a range read from its source legs into one buffer, then written to its
//! destination legs, through control-path dispatches. The services that copy (mirror
//! resync, snapshot push, migration chunk, incremental granule, replication baseline, the
//! reconciliation of a mirror range after a write leg timed out) only choose the legs and
//! decide what changes once the copy has succeeded or failed. A copy with no destination
//! legs is a read: its owner gets the buffer (the copy agent's journal reads).

use core::ops::Range;
use std::collections::BTreeMap;

use bytes::Bytes;
use dve_fp_api::ids::{DeviceId, LvId, WorkerId};
use dve_fp_api::io::{DownstreamOp, DownstreamRequest, IoStatus, ScsiStatus};
use dve_fp_api::mapping::{RedirectIndex, VsegMap};
use dve_fp_api::message::ToFp;

use super::multipath::path_answered;
use super::{ControlPath, DispatchPurpose};
use crate::volume::{DeviceLeg, Volume, descriptor_legs};

/// Who a copy is for: the one told when it ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum CopyOwner {
    /// The current step of a volume's mirror resync.
    Resync { lv: LvId },
    /// A snapshot push of a source volume.
    Push { source: LvId, push: u64 },
    /// The barrier chunk of a volume's migration.
    Migration { lv: LvId },
    /// A granule copy of an incremental volume.
    Granule { lv: LvId, granule: u64 },
    /// A transfer of a replica's baseline copy.
    Baseline { lv: LvId },
    /// The copy agent's read of a closed journal slot (no destination legs).
    JournalSlot { lv: LvId },
    /// A mirror range made the same on every side after a write leg timed out.
    Reconcile { id: u64 },
}

/// Why a copy failed, as its legs tell it. A device's own error status is a report of the
/// device; a leg nobody answered, read data that did not all arrive, or a status asking for
/// the command again may come from a frame lost on a link or a passing condition, which
/// copying again can get past.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum CopyFailure {
    /// A device answered a leg with an error status.
    DeviceError(DeviceId),
    /// Nobody answered a leg on this device (the worker's TASK ABORTED after its timeout): a
    /// lost frame, a dead path or a dead device, which a path test tells apart.
    Unanswered(DeviceId),
    /// A read came back without all its data (a data frame lost on the way), or a device
    /// asked for the command again (BUSY, TASK SET FULL, UNIT ATTENTION, ABORTED COMMAND).
    Transient,
    /// The legs did not make up the range (the mapping they were made from changed).
    Malformed,
}

impl CopyFailure {
    /// How much a failure says about a device: a copy keeps its most telling one.
    fn weight(self) -> u8 {
        match self {
            CopyFailure::DeviceError(_) => 3,
            CopyFailure::Malformed => 2,
            CopyFailure::Unanswered(_) => 1,
            CopyFailure::Transient => 0,
        }
    }

    /// A leg's failure from its status (not GOOD) on `device`.
    fn of_status(device: DeviceId, status: &IoStatus) -> CopyFailure {
        /// Sense keys that ask for the command again: UNIT ATTENTION, ABORTED COMMAND.
        const RETRY_KEYS: [u8; 2] = [0x06, 0x0B];
        if !path_answered(status) {
            CopyFailure::Unanswered(device)
        } else if status.status == ScsiStatus::BUSY
            || status.status == ScsiStatus::TASK_SET_FULL
            || (status.status == ScsiStatus::CHECK_CONDITION
                && status.sense.is_some_and(|s| RETRY_KEYS.contains(&(s.key & 0x0F))))
        {
            CopyFailure::Transient
        } else {
            CopyFailure::DeviceError(device)
        }
    }
}

/// One copy in flight.
#[derive(Clone, Debug)]
struct BlockCopy {
    owner: CopyOwner,
    reads: Vec<DeviceLeg>,
    writes: Vec<DeviceLeg>,
    block_size: usize,
    /// The range's length in bytes.
    len: usize,
    /// The range's data, assembled from the read legs: filled as far as the legs that came
    /// back reach (see [`BlockCopy::fill`]), then made `len` long when the reads are over.
    buf: Vec<u8>,
    /// Legs of the current phase not yet answered.
    outstanding: usize,
    /// Some leg failed or came back short: nothing is written (or the copy is not whole).
    failed: bool,
    /// The device of the first leg that failed (none for a copy that failed otherwise).
    failed_device: Option<DeviceId>,
    /// The most telling failure of a leg, once one failed.
    failure: Option<CopyFailure>,
    /// The read phase is over; the write legs are out.
    writing: bool,
}

impl BlockCopy {
    /// Note a leg's failure, keeping the most telling one.
    fn failed_with(&mut self, failure: CopyFailure) {
        self.failure = match self.failure {
            Some(f) if f.weight() >= failure.weight() => Some(f),
            _ => Some(failure),
        };
    }

    /// Puts a read leg's `data` at byte `at` of the range; `false` if it does not fit. The
    /// first data at the start of the range becomes the buffer (not copied when nothing else
    /// holds it: a read leg's data is the worker's own buffer); data that follows what is
    /// there is appended; data past it leaves a gap of zeros for a later leg to overwrite,
    /// and data before it overwrites what is there.
    fn fill(&mut self, at: usize, data: Bytes) -> bool {
        let end = at + data.len();
        if end > self.len {
            return false;
        }
        let buf = &mut self.buf;
        if at == 0 && buf.is_empty() {
            *buf = Vec::from(data);
            return true;
        }
        buf.reserve(self.len - buf.len());
        if at >= buf.len() {
            buf.resize(at, 0);
            buf.extend_from_slice(&data);
        } else {
            if end > buf.len() {
                buf.resize(end, 0);
            }
            buf[at..end].copy_from_slice(&data);
        }
        true
    }
}

/// Copies in flight, by id.
#[derive(Clone, Debug, Default)]
pub(super) struct BlockCopies {
    next: u64,
    active: BTreeMap<u64, BlockCopy>,
}

impl ControlPath {
    /// Copy a range of `blocks` blocks of `block_size` bytes: the `reads` legs fill the buffer
    /// at their offsets, then the `writes` legs (if any) write it out. `reads` must cover a
    /// non-empty range. Returns the copy's id; `owner` hears the outcome.
    pub(super) fn start_block_copy(
        &mut self,
        owner: CopyOwner,
        reads: Vec<DeviceLeg>,
        writes: Vec<DeviceLeg>,
        blocks: u64,
        block_size: usize,
    ) -> u64 {
        self.copies.next += 1;
        let id = self.copies.next;
        let sends: Vec<(DeviceLeg, DownstreamOp)> =
            reads.iter().map(|l| (*l, DownstreamOp::Read { lba: l.lba, blocks: l.blocks as u32 })).collect();
        let copy = BlockCopy {
            owner,
            outstanding: sends.len(),
            reads,
            writes,
            block_size,
            len: blocks as usize * block_size,
            // Neither zeroed nor allocated yet: the read legs write every byte, mostly one
            // after the other, and the first one's data is often the whole range.
            buf: Vec::new(),
            failed: false,
            failed_device: None,
            failure: None,
            writing: false,
        };
        self.copies.active.insert(id, copy);
        self.send_copy_legs(id, sends);
        id
    }

    fn send_copy_legs(&mut self, copy: u64, sends: Vec<(DeviceLeg, DownstreamOp)>) {
        for (leg, (target, op)) in sends.into_iter().enumerate() {
            let worker = self.worker_for_device(target.device);
            let tag = self.dispatch_tag(DispatchPurpose::Copy { copy, leg });
            self.send(worker, ToFp::DispatchIo(DownstreamRequest { tag, device: target.device, op }));
        }
    }

    /// Whether a copy in flight has a leg (read or write) on `device`.
    pub(super) fn copies_reach(&self, device: DeviceId) -> bool {
        self.copies.active.values().any(|c| c.reads.iter().chain(&c.writes).any(|l| l.device == device))
    }

    /// The worker whose port reaches `device`.
    pub(super) fn worker_for_device(&self, device: DeviceId) -> WorkerId {
        self.devices
            .get(device)
            .and_then(|d| d.path())
            .and_then(|(port, _)| self.plan.worker_of(port))
            .unwrap_or(WorkerId(0))
    }

    /// A leg of copy `id` completed.
    pub(super) fn copy_leg_done(&mut self, id: u64, leg: usize, status: IoStatus, data: Option<Bytes>) {
        let Some(copy) = self.copies.active.get_mut(&id) else { return };
        let device = if copy.writing { copy.writes.get(leg) } else { copy.reads.get(leg) }.map(|l| l.device);
        if !status.is_good() {
            copy.failed = true;
            copy.failed_device = copy.failed_device.or(device);
            copy.failed_with(device.map_or(CopyFailure::Malformed, |d| CopyFailure::of_status(d, &status)));
        } else if !copy.writing {
            let bs = copy.block_size;
            match (data, copy.reads.get(leg)) {
                // A read that lost data frames on the way is no source for a copy.
                (Some(mut data), Some(info)) if data.len() >= info.blocks as usize * bs => {
                    let at = info.offset as usize * bs;
                    // Cut, not sliced: a slice would share the bytes and have them copied.
                    data.truncate(info.blocks as usize * bs);
                    if !copy.fill(at, data) {
                        copy.failed = true;
                        copy.failed_with(CopyFailure::Malformed);
                    }
                }
                _ => {
                    copy.failed = true;
                    copy.failed_device = copy.failed_device.or(device);
                    copy.failed_with(CopyFailure::Transient);
                }
            }
        }
        copy.outstanding = copy.outstanding.saturating_sub(1);
        if copy.outstanding > 0 {
            return;
        }
        if !copy.writing {
            // What no leg covered reads as zeros.
            copy.buf.resize(copy.len, 0);
        }
        if copy.failed || copy.writing || copy.writes.is_empty() {
            let Some(copy) = self.copies.active.remove(&id) else { return };
            self.block_copy_ended(id, copy);
            return;
        }
        let bs = copy.block_size;
        if copy.writes.iter().any(|l| (l.offset + l.blocks) as usize * bs > copy.buf.len()) {
            let Some(mut copy) = self.copies.active.remove(&id) else { return };
            copy.failed = true;
            copy.failed_with(CopyFailure::Malformed);
            self.block_copy_ended(id, copy);
            return;
        }
        copy.writing = true;
        let buf = Bytes::from(std::mem::take(&mut copy.buf));
        let sends: Vec<(DeviceLeg, DownstreamOp)> = copy
            .writes
            .iter()
            .map(|l| {
                let data = buf.slice(l.offset as usize * bs..(l.offset + l.blocks) as usize * bs);
                (*l, DownstreamOp::Write { lba: l.lba, blocks: l.blocks as u32, data })
            })
            .collect();
        copy.outstanding = sends.len();
        self.send_copy_legs(id, sends);
    }

    fn block_copy_ended(&mut self, id: u64, copy: BlockCopy) {
        let copied = !copy.failed;
        match copy.owner {
            CopyOwner::Resync { lv } => {
                let outcome =
                    if copied { Ok(()) } else { Err(copy.failure.unwrap_or(CopyFailure::Malformed)) };
                self.resync_copied(lv, id, outcome)
            }
            CopyOwner::Push { source, push } => self.push_copied(source, push, copied),
            CopyOwner::Migration { lv } => self.migration_copied(lv, id, copied),
            CopyOwner::Granule { lv, granule } => self.granule_copied(lv, granule, copied),
            CopyOwner::Baseline { lv } => self.baseline_copied(lv, id, copied),
            CopyOwner::JournalSlot { lv } => self.slot_read(lv, id, copied.then_some(copy.buf)),
            CopyOwner::Reconcile { id: reconcile } => {
                self.reconcile_copied(reconcile, id, copied, copy.failed_device, copy.failure)
            }
        }
    }
}

/// The legs of copying `blocks` of a segment into its redirect entry `into`: each extent is
/// read through the state it is in now (of a mirror, from the next readable side after
/// `read_side`), and the whole range is written through `into`. `None` when an extent's
/// entry is missing or a descriptor cannot carry the range.
pub(super) fn legs_into(
    map: &VsegMap,
    blocks: Range<u64>,
    into: RedirectIndex,
    read_side: usize,
) -> Option<(Vec<DeviceLeg>, Vec<DeviceLeg>)> {
    let to = map.redirects().get(into)?;
    let mut side = read_side;
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    for e in map.rmap().overlapping(blocks.clone()) {
        let via = map.redirects().get(e.value)?;
        let piece = e.start.max(blocks.start)..e.end.min(blocks.end);
        let at = piece.start - blocks.start;
        descriptor_legs(&via.descriptor, piece, at, false, &mut side, &mut reads).ok()?;
    }
    descriptor_legs(&to.descriptor, blocks, 0, true, &mut side, &mut writes).ok()?;
    Some((reads, writes))
}

/// The pieces of `volume` that an I/O of `blocks` blocks at `lba` touches, by segment index,
/// in segment blocks, rounded out to `granule` blocks (cut at the segment's end): what a
/// copy-on-first-write must copy before the I/O may proceed.
pub(super) fn granules_touched(
    volume: &Volume,
    lba: u64,
    blocks: u64,
    granule: u64,
) -> Vec<(usize, Range<u64>)> {
    let g = granule.max(1);
    let mut touched = Vec::new();
    for (i, seg) in volume.segments.iter().enumerate() {
        let d = *seg.descriptor();
        let from = lba.max(d.start);
        let to = (lba + blocks).min(d.end());
        if from < to {
            touched.push((i, ((from - d.start) / g * g)..((to - d.start).div_ceil(g) * g).min(d.blocks)));
        }
    }
    touched
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A copy of `len` bytes with nothing read yet.
    fn empty_copy(len: usize) -> BlockCopy {
        BlockCopy {
            owner: CopyOwner::Reconcile { id: 0 },
            reads: Vec::new(),
            writes: Vec::new(),
            block_size: 1,
            len,
            buf: Vec::new(),
            outstanding: 0,
            failed: false,
            failed_device: None,
            failure: None,
            writing: false,
        }
    }

    proptest! {
        /// Legs put in any order, overlapping or not, leave the bytes a zeroed buffer of the
        /// range's length overwritten by each leg in turn would hold, and fail where that
        /// buffer had no room.
        #[test]
        fn legs_filled_in_any_order_give_the_zeroed_buffer_overwritten(
            len in 0usize..64,
            legs in proptest::collection::vec((0usize..70, 0usize..20, any::<u8>()), 0..8),
        ) {
            let mut copy = empty_copy(len);
            let mut zeroed = vec![0u8; len];
            for (at, n, byte) in legs {
                let data = vec![byte; n];
                let fits = match zeroed.get_mut(at..at + n) {
                    Some(into) => {
                        into.copy_from_slice(&data);
                        true
                    }
                    None => false,
                };
                prop_assert_eq!(copy.fill(at, Bytes::from(data)), fits);
            }
            copy.buf.resize(copy.len, 0);
            prop_assert_eq!(copy.buf, zeroed);
        }
    }
}
