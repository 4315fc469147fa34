//! LV reconfiguration (seed 003 section 6.8): growing a volume by a segment, splitting a
//! segment in two and merging two into one. Growing adds the new segment's mapping before the
//! volume's descriptor grows (an unrestrictive change: nothing in flight can use blocks that
//! did not exist), commits, and gives every initiator CAPACITY DATA HAS CHANGED on its next
//! command. A split or a merge changes segment boundaries under I/O that may be in flight:
//! every segment of the volume is revoked and locked (misses queue, the volume's I/O is
//! paused), its I/O drains, then the new segments are committed and granted.

use std::collections::BTreeMap;

use dve_fp_api::ids::{DeviceId, LvId};
use dve_fp_api::mapping::{Placement, RedirectEntry, StorageDescriptor, VsegDescriptor, VsegLimits, VsegMap};
use dve_fp_api::message::MappingEntry;

use super::revocation::AfterRevocation;
use super::{ControlEvent, ControlPath};
use crate::error::Error;
use crate::volume::{Allocation, LayoutSpec, recut, segment_id, segment_maps};

/// Most segments a volume may have.
const MAX_SEGMENTS: usize = 4096;

/// Splits and merges waiting for their volume's I/O to drain: the segment starts wanted.
#[derive(Clone, Debug, Default)]
pub(super) struct Reconfigurations {
    pending: BTreeMap<LvId, Vec<u64>>,
}

impl Reconfigurations {
    /// Whether `lv`'s segments are being split or merged.
    pub(super) fn involves(&self, lv: LvId) -> bool {
        self.pending.contains_key(&lv)
    }
}

impl ControlPath {
    /// Grow a concatenated volume by `blocks` claimed on `device`, as a new segment at its
    /// end (management API).
    pub fn grow_volume(&mut self, lv: LvId, blocks: u64, device: DeviceId) -> Result<(), Error> {
        let v = self.volumes.get(&lv).ok_or(Error::UnknownVolume(lv))?;
        if !matches!(v.record.layout, LayoutSpec::Linear { .. }) {
            return Err(Error::FailedPrecondition(format!(
                "{} is not concatenated: only linear volumes grow by a segment",
                v.record.name
            )));
        }
        if blocks == 0 {
            return Err(Error::invalid("blocks", "a volume grows by at least one block"));
        }
        if self.snapshot_involves(lv)
            || self.migrations_of(lv)
            || self.incremental_involves(lv)
            || self.reconfiguring(lv)
        {
            return Err(Error::FailedPrecondition(format!(
                "{} is being reconfigured: try again when it ends",
                v.record.name
            )));
        }
        let index = v.segments.len();
        if index >= MAX_SEGMENTS {
            return Err(Error::FailedPrecondition(format!("a volume has at most {MAX_SEGMENTS} segments")));
        }
        let start = v.record.blocks;
        let saved_devices = self.devices.clone();
        let saved = v.record.clone();
        let lba = self.devices.allocate(device, blocks)?;
        let descriptor = VsegDescriptor { id: segment_id(lv, index), lv, start, blocks };
        let entry = RedirectEntry::read_write(StorageDescriptor::Single(Placement { device, lba }));
        let map = VsegMap::new(descriptor, entry, VsegLimits::default())?;
        let Some(v) = self.volumes.get_mut(&lv) else { return Err(Error::UnknownVolume(lv)) };
        v.segments.push(map);
        if !v.record.segment_starts.is_empty() {
            v.record.segment_starts.push(start);
        }
        v.record.blocks += blocks;
        v.record.allocations.push(Allocation { device, lba, blocks });
        if let LayoutSpec::Linear { devices } = &mut v.record.layout {
            devices.push(device);
        }
        let lv_descriptor = match v.descriptor() {
            Ok(d) => d,
            Err(e) => {
                v.segments.pop();
                v.record = saved;
                self.devices = saved_devices;
                return Err(e);
            }
        };
        if let Err(e) = self.persist(&[device], &[lv]) {
            if let Some(v) = self.volumes.get_mut(&lv) {
                v.segments.pop();
                v.record = saved;
            }
            self.devices = saved_devices;
            self.counters.failed_commits += 1;
            return Err(e);
        }
        self.grant_all(MappingEntry::Lv(lv_descriptor));
        let system = self.config.switch_name.0;
        let port = self.exposure.port_name;
        if let Some(v) = self.volumes.get(&lv) {
            self.scsi.volume_exposed(lv, v, system, port);
        }
        // Initiators now have CAPACITY DATA HAS CHANGED pending: their next command goes to
        // the control path, which reports it.
        self.push_mask(lv);
        let total = self.volumes.get(&lv).map_or(0, |v| v.record.blocks);
        self.events.push(ControlEvent::VolumeGrown { lv, blocks: total });
        Ok(())
    }

    /// Split the segment of `lv` holding block `at` in two there (management API). Returns
    /// once the volume's I/O is paused; the split is made when it has drained
    /// ([`ControlEvent::VolumeReconfigured`]).
    pub fn split_segment(&mut self, lv: LvId, at: u64) -> Result<(), Error> {
        let starts = self.segment_starts(lv)?;
        let blocks = self.volumes.get(&lv).map_or(0, |v| v.record.blocks);
        if at == 0 || at >= blocks || starts.contains(&at) {
            return Err(Error::invalid(
                "at",
                format!("block {at} is not inside a segment of the volume (segments start at {starts:?})"),
            ));
        }
        if starts.len() >= MAX_SEGMENTS {
            return Err(Error::FailedPrecondition(format!("a volume has at most {MAX_SEGMENTS} segments")));
        }
        let mut wanted = starts;
        wanted.push(at);
        wanted.sort_unstable();
        self.start_reconfiguration(lv, wanted)
    }

    /// Merge the segment of `lv` starting at block `at` into the one before it (management
    /// API): the second's storage must continue the first's. Made once the volume's I/O has
    /// drained, like a split.
    pub fn merge_segments(&mut self, lv: LvId, at: u64) -> Result<(), Error> {
        let starts = self.segment_starts(lv)?;
        if at == 0 || !starts.contains(&at) {
            return Err(Error::invalid(
                "at",
                format!("block {at} does not start a segment after the first (segments start at {starts:?})"),
            ));
        }
        let wanted: Vec<u64> = starts.into_iter().filter(|s| *s != at).collect();
        self.start_reconfiguration(lv, wanted)
    }

    /// Whether a split or a merge of `lv` is waiting for its I/O to drain (other services
    /// wait for it to end).
    pub(super) fn reconfiguring(&self, lv: LvId) -> bool {
        self.reconfigurations.pending.contains_key(&lv)
    }

    /// Where the segments of `lv` start, if it may be split or merged now.
    fn segment_starts(&self, lv: LvId) -> Result<Vec<u64>, Error> {
        if self.reconfiguring(lv) {
            return Err(Error::FailedPrecondition(format!("{lv} is already being split or merged")));
        }
        self.segments_reshapable(lv)
    }

    /// Where the segments of `lv` start, unless something keeps it from being reshaped:
    /// a data service, a mirror side not alive or dying, a layout that keeps its segments.
    fn segments_reshapable(&self, lv: LvId) -> Result<Vec<u64>, Error> {
        let v = self.volumes.get(&lv).ok_or(Error::UnknownVolume(lv))?;
        let busy = self.snapshot_involves(lv)
            || self.migrations_of(lv)
            || self.incremental_involves(lv)
            || self.mirror_busy(lv);
        if !busy && self.stamps_writes(lv) {
            // Refused as before (its tables hold the written twins, its age lists are kept per
            // segment), but saying what to do: "being reconfigured" named nothing to wait for.
            return Err(Error::FailedPrecondition(format!(
                "{} has a dead mirror side: resynchronize or remove it before splitting or merging segments",
                v.record.name
            )));
        }
        if busy || v.segments.iter().any(|s| s.redirects().len() != 1) {
            return Err(Error::FailedPrecondition(format!(
                "{} is being reconfigured (a snapshot, a migration, a resync or another split): try again when it ends",
                v.record.name
            )));
        }
        match v.record.layout {
            LayoutSpec::Journal { .. } => {
                return Err(Error::FailedPrecondition("journaled volumes keep one segment".into()));
            }
            LayoutSpec::Snapshot { .. } | LayoutSpec::Incremental { .. } => {
                return Err(Error::FailedPrecondition(
                    "snapshots and incrementals keep their source's segments".into(),
                ));
            }
            _ => {}
        }
        if v.record.side_states.iter().any(|s| *s != dve_fp_api::mapping::SideState::Alive) {
            return Err(Error::FailedPrecondition(format!(
                "{} has a mirror side that is not alive",
                v.record.name
            )));
        }
        Ok(v.segments.iter().map(|s| s.descriptor().start).collect())
    }

    /// Check that `starts` can be cut from the volume's storage, then pause its I/O.
    fn start_reconfiguration(&mut self, lv: LvId, starts: Vec<u64>) -> Result<(), Error> {
        let v = self.volumes.get(&lv).ok_or(Error::UnknownVolume(lv))?;
        recut(Self::pieces_of(v), &starts)?;
        self.reconfigurations.pending.insert(lv, starts);
        let segments = self.segments_of(lv);
        self.revoke_segments(&segments, false, AfterRevocation::Reconfigure { lv });
        Ok(())
    }

    /// Each segment of `v` as (blocks, its one redirect entry).
    fn pieces_of(v: &crate::volume::Volume) -> Vec<(u64, dve_fp_api::mapping::RedirectEntry)> {
        v.segments
            .iter()
            .filter_map(|s| s.redirects().iter().next().map(|(_, e)| (s.descriptor().blocks, e.clone())))
            .collect()
    }

    /// The volume's I/O has drained: cut its segments anew, commit, grant.
    pub(super) fn reconfigure_revoked(&mut self, lv: LvId) {
        if self.manual_writes_overlap(lv, 0..u64::MAX) {
            // The control path's own writes hold locks by segment: pause again until they end.
            let segments = self.segments_of(lv);
            self.revoke_segments(&segments, false, AfterRevocation::Reconfigure { lv });
            return;
        }
        let Some(starts) = self.reconfigurations.pending.remove(&lv) else { return };
        // A side may have failed while the I/O drained.
        let cut = self
            .segments_reshapable(lv)
            .and_then(|_| self.volumes.get(&lv).ok_or(Error::UnknownVolume(lv)))
            .and_then(|v| recut(Self::pieces_of(v), &starts))
            .and_then(|pieces| segment_maps(lv, pieces));
        let segments = match cut {
            Ok(segments) => segments,
            Err(error) => {
                self.events.push(ControlEvent::ReconfigurationFailed { lv, reason: error.to_string() });
                return;
            }
        };
        let Some(v) = self.volumes.get_mut(&lv) else { return };
        let saved = (v.segments.clone(), v.record.segment_starts.clone());
        v.segments = segments;
        v.record.segment_starts = starts;
        let committed = v.descriptor().and_then(|d| self.persist(&[], &[lv]).map(|()| d));
        let descriptor = match committed {
            Ok(d) => d,
            Err(error) => {
                if let Some(v) = self.volumes.get_mut(&lv) {
                    (v.segments, v.record.segment_starts) = saved;
                }
                self.counters.failed_commits += 1;
                self.events.push(ControlEvent::ReconfigurationFailed { lv, reason: error.to_string() });
                return;
            }
        };
        let segments = descriptor.segments.len();
        let tables: Vec<MappingEntry> = self.volumes.get(&lv).map_or_else(Vec::new, |v| {
            v.segments
                .iter()
                .map(|m| MappingEntry::Redirects { vseg: m.descriptor().id, table: m.redirects().clone() })
                .collect()
        });
        self.grant_all(MappingEntry::Lv(descriptor));
        for entry in tables {
            self.grant_all(entry);
        }
        self.events.push(ControlEvent::VolumeReconfigured { lv, segments });
    }
}
