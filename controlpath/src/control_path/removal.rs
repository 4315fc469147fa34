//! Taking volumes away: hiding a LUN from the hosts, and deleting a hidden volume that no
//! task uses. A deleted volume's record and the release of its claims are one transaction;
//! its blocks go to new claims only once every worker has dropped its mappings and drained
//! the I/O begun under them, so no late write lands in a new volume.

use dve_fp_api::ids::{DeviceId, LvId, VsegId};
use dve_fp_api::io::PendingFilter;
use dve_fp_api::message::MappingKey;

use super::revocation::AfterRevocation;
use super::{ControlEvent, ControlPath};
use crate::error::Error;
use crate::store::Table;
use crate::volume::{Allocation, LayoutSpec};

impl ControlPath {
    /// Withdraw LUN `lun` of the virtual target from every host (management API); returns the
    /// volume behind it, which keeps its data and can be exposed again. Hosts' commands to
    /// the LUN are answered LOGICAL UNIT NOT SUPPORTED from now on; I/O already dispatched
    /// finishes.
    pub fn hide(&mut self, lun: u16) -> Result<LvId, Error> {
        let lv =
            self.exposure.luns.iter().find(|m| m.lun.0 == lun).map(|m| m.lv).ok_or(Error::UnknownLun(lun))?;
        let volume = self.volumes.get_mut(&lv).ok_or(Error::UnknownVolume(lv))?;
        let saved = volume.record.clone();
        volume.record.hosts.clear();
        if let Err(e) = self.persist(&[], &[lv]) {
            if let Some(v) = self.volumes.get_mut(&lv) {
                v.record = saved;
            }
            self.counters.failed_commits += 1;
            return Err(e);
        }
        self.exposure.luns.retain(|m| m.lv != lv);
        self.scsi.volume_withdrawn(lv);
        for other in self.scsi.inventory_changed(&saved.hosts, lv) {
            self.push_mask(other);
        }
        self.push_exposure();
        // No host may use the fast path for it, whatever a worker still caches.
        self.push_mask(lv);
        self.events.push(ControlEvent::VolumeHidden { lv, lun });
        Ok(lv)
    }

    /// Why `lv` cannot be deleted now, if it cannot.
    fn deletion_refused(&self, lv: LvId) -> Option<Error> {
        let volume = self.volumes.get(&lv)?;
        let name = &volume.record.name;
        let refuse =
            |why: String| Some(Error::FailedPrecondition(format!("{name} cannot be deleted: {why}")));
        if let Some(m) = self.exposure.luns.iter().find(|m| m.lv == lv) {
            return refuse(format!("it is exposed as LUN {}; hide it first", m.lun.0));
        }
        // A completed snapshot reads its store only; one still completing is a task below.
        let dependent = self
            .volumes
            .values()
            .find(|v| matches!(v.record.layout, LayoutSpec::Incremental { base, .. } if base == lv));
        if let Some(d) = dependent {
            return refuse(format!("{} reads through it", d.record.name));
        }
        self.work_on(lv).and_then(|why| refuse(why.to_string()))
    }

    /// Why volume `lv` is not at rest (a task, a data service or the control path's own I/O
    /// uses it), if it is not: what deleting a volume or adding a mirror side waits for.
    pub(super) fn work_on(&self, lv: LvId) -> Option<&'static str> {
        let tasks = [
            (self.migrations.involves(lv), "it is migrating"),
            (self.snapshots.involves(lv), "a snapshot of it (or it, a snapshot) is still completing"),
            (self.incrementals.is_base(lv), "incremental volumes share it"),
            (self.incrementals.busy(lv), "it is copying granules from its base"),
            (self.replications.involves(lv), "it replicates"),
            (self.reconfigurations.involves(lv), "its segments are being split or merged"),
            (self.mirror.involves(lv), "a mirror side is dying or resynchronizing"),
            (self.leg_timeouts.involves(lv), "a range of its mirror is being reconciled"),
            (self.has_manual_io_on(lv) || self.scsi.has_commands_of(lv), "the control path runs I/O on it"),
        ];
        tasks.into_iter().find(|(busy, _)| *busy).map(|(_, why)| why)
    }

    /// Delete volume `lv` (management API): it must be hidden, and neither take part in a
    /// task (a snapshot completing counts for its source and itself, an incremental copying
    /// granules for itself) nor have incrementals reading through it. Its record and claims
    /// (a journal's and an incremental's private store included) go at once and for good;
    /// its blocks are claimable once the workers have let go. The base of the last
    /// incremental deleted is writable again.
    pub fn delete_volume(&mut self, lv: LvId) -> Result<(), Error> {
        if let Some(refusal) = self.deletion_refused(lv) {
            return Err(refusal);
        }
        let volume = self.volumes.remove(&lv).ok_or(Error::UnknownVolume(lv))?;
        let allocations = volume.record.allocations.clone();
        let mut devices: Vec<DeviceId> = allocations.iter().map(|a| a.device).collect();
        devices.sort();
        devices.dedup();
        // The store gets the released claims; the registry keeps them until the workers let go.
        let before = self.devices.clone();
        let released = allocations.iter().try_for_each(|a| self.devices.release(a.device, a.lba, a.blocks));
        let segments: Vec<VsegId> = volume.segments.iter().map(|s| s.descriptor().id).collect();
        // The volume, its claims, its segments' age lists and an incremental's granule
        // records go in one transaction.
        let committed = released.and_then(|()| {
            let mut batch = self.records(&devices, &[lv])?;
            self.mirror.delete_stored_ages(&mut batch, &segments);
            self.delete_granule_records(&mut batch, lv)?;
            batch.delete(Table::Tasks, super::migration::cancelled_key(lv));
            self.commit(batch)
        });
        self.devices = before;
        if let Err(e) = committed {
            if matches!(e, Error::Store(_)) {
                self.counters.failed_commits += 1;
            }
            self.volumes.insert(lv, volume);
            return Err(e);
        }
        self.mirror.forget_segments(&segments);
        self.mirror.forget_returns(lv);
        self.incremental_deleted(lv);
        self.journal_deleted(lv);
        self.snapshots.forget(lv);
        self.migrations.forget(lv);
        self.scsi.volume_withdrawn(lv);
        self.deleting.insert(lv, allocations);
        let drains =
            segments.iter().map(|s| PendingFilter { vseg: Some(*s), ..PendingFilter::default() }).collect();
        self.revoke(vec![MappingKey::Lv(lv)], drains, None, AfterRevocation::VolumeDeleted { lv });
        self.events.push(ControlEvent::VolumeDeleted { lv, name: volume.record.name });
        Ok(())
    }

    /// Every worker dropped a deleted volume and drained its I/O: its blocks are free.
    pub(super) fn volume_deleted_revoked(&mut self, lv: LvId) {
        let Some(allocations) = self.deleting.remove(&lv) else { return };
        let mut devices: Vec<DeviceId> = Vec::new();
        for Allocation { device, lba, blocks } in allocations {
            if self.devices.release(device, lba, blocks).is_ok() && !devices.contains(&device) {
                devices.push(device);
            }
        }
        // Already committed with the deletion; committed again so that no later commit of
        // these devices writes the claims back.
        if self.persist(&devices, &[]).is_err() {
            self.counters.failed_commits += 1;
        }
    }

    /// The id a new volume gets: above every volume's, including those being deleted (the
    /// workers may still hold a deleted volume's mappings under its id).
    pub(super) fn next_volume_id(&self) -> LvId {
        let highest = self.volumes.keys().chain(self.deleting.keys()).map(|l| l.0).max();
        LvId(highest.map_or(1, |h| h + 1))
    }
}
