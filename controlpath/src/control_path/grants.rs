//! What the control path grants the fast path: the answer to a mapping miss (the segment's
//! redirect table and the extents around the I/O, cut back at range locks) and LUN masks.

use core::ops::Range;

use dve_fp_api::ids::{LvId, VsegId};
use dve_fp_api::io::HostIo;
use dve_fp_api::mapping::{Extent, LunMask, RedirectIndex};
use dve_fp_api::message::{MappingEntry, MissVerdict, ToFp};

use super::{ControlPath, RequestPurpose};

/// Extents granted around a missed I/O on each side, in blocks: enough that a sequential
/// stream does not miss again at once, little enough that a fragmented Rmap stays cheap.
const GRANT_WINDOW_BLOCKS: u64 = 1 << 16;

impl ControlPath {
    /// CONTINUE with the mapping, or QUEUE when the I/O touches a range the control path is
    /// serializing (or the segment is unknown: the control path then answers the I/O).
    pub(super) fn miss_verdict(&self, request: &HostIo) -> MissVerdict {
        let Some(vseg) = request.vseg else { return MissVerdict::Queue };
        let Some(volume) = request.lv.and_then(|lv| self.volumes.get(&lv)) else { return MissVerdict::Queue };
        if self.awaits_devices(volume.record.id) {
            // Its devices are not back since the engine restarted: the I/O parks.
            return MissVerdict::Queue;
        }
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
        self.push_mask_as(lv, RequestPurpose::Grant);
    }

    /// [`ControlPath::push_mask`], acknowledged: returns the number of workers whose
    /// acknowledgements (`RequestPurpose::MaskAck(op)`) will follow, 0 if the mask is unchanged.
    pub(super) fn push_mask_acked(&mut self, lv: LvId, op: u64) -> usize {
        self.push_mask_as(lv, RequestPurpose::MaskAck(op))
    }

    fn push_mask_as(&mut self, lv: LvId, purpose: RequestPurpose) -> usize {
        let Some(volume) = self.volumes.get(&lv) else { return 0 };
        let (readers, writers) = self.scsi.fast_path_hosts(lv, &volume.record.hosts);
        let mask = LunMask { lv, readers, writers };
        if !self.scsi.mask_changed(&mask) {
            return 0;
        }
        self.broadcast(|req| ToFp::SetLunMask { req, mask: mask.clone() }, purpose);
        self.plan.workers().len()
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
