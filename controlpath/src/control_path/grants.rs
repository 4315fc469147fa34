//! What the control path grants the fast path: the answer to a mapping miss (the segment's
//! redirect table and the extents around the I/O, cut back at range locks), LUN masks, and
//! the journal regions of journaled volumes.

use core::ops::Range;

use dve_fp_api::ids::{JournalGroupId, LvId, VsegId, WorkerId};
use dve_fp_api::io::HostIo;
use dve_fp_api::mapping::{Extent, JournalRegion, LunMask, Placement, RedirectIndex};
use dve_fp_api::message::{MappingEntry, MissVerdict, ToFp};

use super::{ControlPath, RequestPurpose};
use crate::volume::LayoutSpec;

/// Extents granted around a missed I/O on each side, in blocks: enough that a sequential
/// stream does not miss again at once, little enough that a fragmented Rmap stays cheap.
const GRANT_WINDOW_BLOCKS: u64 = 1 << 16;

impl ControlPath {
    /// CONTINUE with the mapping, or QUEUE when the I/O touches a range the control path is
    /// serializing (or the segment is unknown: the control path then answers the I/O).
    pub(super) fn miss_verdict(&self, request: &HostIo) -> MissVerdict {
        let Some(vseg) = request.vseg else { return MissVerdict::Queue };
        let Some(volume) = request.lv.and_then(|lv| self.volumes.get(&lv)) else { return MissVerdict::Queue };
        let Some(map) = volume.segment(vseg) else { return MissVerdict::Queue };
        let seg = *map.descriptor();
        let first = request.lba.saturating_sub(seg.start);
        let wanted = first..first.saturating_add(u64::from(request.blocks)).min(seg.blocks).max(first + 1);
        if self.is_locked(vseg, &wanted) {
            return MissVerdict::Queue;
        }
        let window = wanted.start.saturating_sub(GRANT_WINDOW_BLOCKS)
            ..(wanted.end + GRANT_WINDOW_BLOCKS).min(seg.blocks);
        let extents = clip(
            map.rmap().overlapping(window.clone()).map(|e| Extent {
                start: e.start.max(window.start),
                end: e.end.min(window.end),
                value: e.value,
            }),
            &self.locked_ranges(vseg),
        );
        MissVerdict::Continue(vec![
            MappingEntry::Redirects { vseg, table: map.redirects().clone() },
            MappingEntry::Extents { vseg, extents },
        ])
    }

    /// Push the extents of `range` of `vseg` to every worker (an unrestrictive change: the
    /// new value only allows more, so no revocation is needed).
    pub(super) fn grant_extents(&mut self, lv: LvId, vseg: VsegId, range: Range<u64>) {
        let Some(map) = self.volumes.get(&lv).and_then(|v| v.segment(vseg)) else { return };
        let extents = clip(
            map.rmap().overlapping(range.clone()).map(|e| Extent {
                start: e.start.max(range.start),
                end: e.end.min(range.end),
                value: e.value,
            }),
            &self.locked_ranges(vseg),
        );
        if !extents.is_empty() {
            self.grant_all(MappingEntry::Extents { vseg, extents });
        }
    }

    /// The LUN mask of `lv`: the hosts that may use the fast path (exposed, past their unit
    /// attention, allowed by reservations).
    pub(super) fn push_mask(&mut self, lv: LvId) {
        let Some(volume) = self.volumes.get(&lv) else { return };
        let (readers, writers) = self.scsi.fast_path_hosts(lv, &volume.record.hosts);
        let mask = LunMask { lv, readers, writers };
        if !self.scsi.mask_changed(&mask) {
            return;
        }
        self.broadcast(|req| ToFp::SetLunMask { req, mask: mask.clone() }, RequestPurpose::Grant);
    }

    /// A worker's journal of the volume `request` wrote to is full: swap in an empty one
    /// (the same region under the next sequence number). A fault raised before the last
    /// swap reached the worker is not a reason to swap again.
    pub(super) fn swap_journal(&mut self, worker: WorkerId, request: &HostIo) {
        let Some(lv) = request.lv else { return };
        let swapped_at = self.journal_sequences.get(&(lv, worker)).map_or(0, |s| s.1);
        if request.received.0 < swapped_at {
            return;
        }
        self.journal_region_for(lv, worker);
    }

    /// Give every worker its own region of a journaled volume's journal device.
    pub(super) fn journal_regions(&mut self, lv: LvId) {
        for worker in self.plan.workers() {
            self.journal_region_for(lv, worker);
        }
    }

    /// Grant `worker` its region of `lv`'s journal, under a new sequence number.
    fn journal_region_for(&mut self, lv: LvId, worker: WorkerId) {
        let Some(volume) = self.volumes.get(&lv) else { return };
        let LayoutSpec::Journal { .. } = volume.record.layout else { return };
        let Some(alloc) = volume.record.allocations.get(1).copied() else { return };
        let workers = self.plan.workers();
        let Some(i) = workers.iter().position(|w| *w == worker) else { return };
        // One share per worker and a last one for the control path's own journal.
        let each = alloc.blocks / (workers.len() as u64 + 1);
        let group = JournalGroupId(lv.0);
        let sequence = self.journal_sequence(lv, worker);
        let region = JournalRegion {
            group,
            worker,
            placement: Placement { device: alloc.device, lba: alloc.lba + i as u64 * each },
            blocks: each,
            sequence,
        };
        let req = self.request(RequestPurpose::Grant);
        self.send(worker, ToFp::AddMapping { req, entry: MappingEntry::Journal(region) });
    }
}

/// Cut `extents` so none overlaps a locked range.
fn clip(
    extents: impl Iterator<Item = Extent<RedirectIndex>>,
    locked: &[Range<u64>],
) -> Vec<Extent<RedirectIndex>> {
    let mut out = Vec::new();
    for extent in extents {
        let mut pieces = Vec::with_capacity(2);
        pieces.push(extent.start..extent.end);
        for lock in locked {
            pieces = pieces
                .into_iter()
                .flat_map(|p| {
                    let mut keep = Vec::with_capacity(2);
                    if p.start < lock.start.min(p.end) {
                        keep.push(p.start..lock.start.min(p.end));
                    }
                    if lock.end.max(p.start) < p.end {
                        keep.push(lock.end.max(p.start)..p.end);
                    }
                    keep
                })
                .collect();
        }
        out.extend(pieces.into_iter().filter(|p| p.start < p.end).map(|p| Extent {
            start: p.start,
            end: p.end,
            value: extent.value,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_removes_locked_blocks_only() {
        let e = [Extent { start: 0, end: 100, value: RedirectIndex(0) }];
        let out = clip(e.into_iter(), &[10..20, 50..60]);
        let ranges: Vec<_> = out.iter().map(|e| e.start..e.end).collect();
        assert_eq!(ranges, vec![0..10, 20..50, 60..100]);
        let everything = [Range { start: 0, end: 200 }];
        assert!(clip(e.into_iter(), &everything).is_empty());
    }
}

/// The control path's own journal in a journal group: the last share of the journal device,
/// after the workers' regions; it wraps to the start under the next sequence number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct ControlJournal {
    placement: Placement,
    blocks: u64,
    next: u64,
    sequence: u64,
}

impl ControlPath {
    /// The journal leg of a write the control path runs on a journaled volume: the device leg
    /// and the entry (header block, then the data). `None` for other volumes.
    pub(super) fn journal_append(
        &mut self,
        lv: LvId,
        lba: u64,
        blocks: u64,
        received: dve_fp_api::ids::Timestamp,
        data: &bytes::Bytes,
    ) -> Option<(crate::volume::DeviceLeg, bytes::Bytes)> {
        let volume = self.volumes.get(&lv)?;
        let LayoutSpec::Journal { .. } = volume.record.layout else { return None };
        let alloc = *volume.record.allocations.get(1)?;
        let block_size = volume.record.block_size;
        let vseg = volume.pieces(lba, blocks).first().map(|p| p.0)?;
        let parts = self.plan.workers().len() as u64 + 1;
        let each = alloc.blocks / parts;
        let worker = self.control_worker();
        let journal = self.control_journals.entry(lv).or_insert(ControlJournal {
            placement: Placement { device: alloc.device, lba: alloc.lba + (parts - 1) * each },
            blocks: each,
            next: 0,
            sequence: 1,
        });
        let need = 1 + blocks;
        if need > journal.blocks {
            return None;
        }
        if journal.next + need > journal.blocks {
            journal.next = 0;
            journal.sequence += 1;
        }
        let position = journal.next;
        journal.next += need;
        let header = dve_fp_api::journal::JournalEntryHeader {
            journal_sequence: journal.sequence,
            position,
            worker,
            lv,
            vseg,
            lba,
            blocks: blocks as u32,
            block_size,
            timestamp: received.0,
        };
        let mut entry = vec![0u8; block_size as usize];
        header.encode(&mut entry).ok()?;
        entry.extend_from_slice(data);
        let leg = crate::volume::DeviceLeg {
            device: journal.placement.device,
            lba: journal.placement.lba + position,
            blocks: need,
            offset: 0,
            side: None,
        };
        Some((leg, bytes::Bytes::from(entry)))
    }

    /// The worker number the control path's own journal entries carry.
    fn control_worker(&self) -> WorkerId {
        WorkerId((self.config.layout.max_workers() - 1) as u8)
    }
}
