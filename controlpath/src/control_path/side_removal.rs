//! Removing a mirror side online (LVM's `lvconvert -m`, SVC's `rmvdiskcopy`): the volume's
//! record without the side (layout, claims, side states) is committed with the renumbered
//! age lists in one transaction; the workers then drop the old tables and drain the I/O
//! begun under them, and only then is the side's claim freed. A mirror left with one side
//! becomes linear, a RAID 10 left with one stripe set a stripe set.

use dve_fp_api::ids::{DeviceId, LvId};
use dve_fp_api::io::IoKind;
use dve_fp_api::mapping::SideState;

use super::revocation::AfterRevocation;
use super::{ControlEvent, ControlPath};
use crate::error::Error;
use crate::volume::{Allocation, LayoutSpec, Volume};

/// A side removed from a volume whose claim waits for the workers (and the control path's
/// own I/O begun under the old layout) to let go of it.
#[derive(Clone, Debug)]
struct RemovedSide {
    lv: LvId,
    /// Its claims, released in the store already, in the registry once nothing uses them.
    allocations: Vec<Allocation>,
    /// Whether every worker dropped the old tables and drained the I/O begun under them.
    revoked: bool,
}

/// Removed sides whose claims are not free yet, by removal id.
#[derive(Clone, Debug, Default)]
pub(super) struct SideRemovals {
    pending: std::collections::BTreeMap<u64, RemovedSide>,
}

impl SideRemovals {
    /// Whether `device` held a side of `lv` that was removed and may still be in use.
    pub(super) fn holds(&self, lv: LvId, device: DeviceId) -> bool {
        self.pending.values().any(|r| r.lv == lv && r.allocations.iter().any(|a| a.device == device))
    }
}

/// What the volume's record becomes without side `side`: the layout, the claims kept and the
/// claims given up.
fn without_side(
    layout: &LayoutSpec,
    allocations: &[Allocation],
    side: usize,
) -> Option<(LayoutSpec, Vec<Allocation>, Vec<Allocation>)> {
    match layout {
        LayoutSpec::Mirror { sides } => {
            // A mirror's claims are one per side, in side order.
            let mut sides = sides.clone();
            let mut kept = allocations.to_vec();
            if side >= sides.len() || kept.len() != sides.len() {
                return None;
            }
            sides.remove(side);
            let freed = vec![kept.remove(side)];
            let layout = match sides[..] {
                [device] => LayoutSpec::Linear { devices: vec![device] },
                _ => LayoutSpec::Mirror { sides },
            };
            Some((layout, kept, freed))
        }
        LayoutSpec::Raid10 { side_a, side_b, unit_blocks } => {
            // Side 0's members' claims come first, then side 1's.
            let width = side_a.len();
            if side > 1 || allocations.len() != 2 * width {
                return None;
            }
            let (a, b) = allocations.split_at(width);
            let (devices, kept, freed) = if side == 0 { (side_b, b, a) } else { (side_a, a, b) };
            let layout = LayoutSpec::Stripe { devices: devices.clone(), unit_blocks: *unit_blocks };
            Some((layout, kept.to_vec(), freed.to_vec()))
        }
        _ => None,
    }
}

impl ControlPath {
    /// Remove mirror side `side` of volume `lv` (management API). The side may be alive,
    /// dead or resynchronizing (a side being added or resynchronized stops there), as long
    /// as another side holds current data. The record without the side, its released claim
    /// and the age lists renumbered (a later side takes the index before it) are one
    /// transaction; then every worker drops the old tables and drains the I/O begun under
    /// them, and the side's blocks are claimable once that and the control path's own I/O on
    /// them are over. A refused request changes nothing.
    pub fn remove_mirror_side(&mut self, lv: LvId, side: usize) -> Result<(), Error> {
        let v = self.volumes.get(&lv).ok_or(Error::UnknownVolume(lv))?;
        let name = v.record.name.clone();
        let count = match &v.record.layout {
            LayoutSpec::Mirror { sides } => sides.len(),
            LayoutSpec::Raid10 { .. } => 2,
            other => {
                return Err(Error::FailedPrecondition(format!(
                    "{name} is not a mirror (its layout is {}): it has no side to remove",
                    super::side_addition::layout_name(other)
                )));
            }
        };
        if side >= count {
            return Err(Error::UnknownSide(format!(
                "{name} has no side {side}: its sides are 0 to {}",
                count - 1
            )));
        }
        let states = &v.record.side_states;
        let current_elsewhere = states.iter().enumerate().any(|(i, s)| i != side && *s == SideState::Alive);
        if !current_elsewhere {
            return Err(Error::FailedPrecondition(format!(
                "side {side} of {name} is the only side holding current data (the others are dead or \
                 resynchronizing): it cannot be removed"
            )));
        }
        if let Some(why) = self.removal_refused(lv, side) {
            return Err(Error::FailedPrecondition(format!(
                "side {side} cannot be removed from {name} now: {why}; try again when it ends"
            )));
        }
        let Some((layout, kept, freed)) = without_side(&v.record.layout, &v.record.allocations, side) else {
            return Err(Error::FailedPrecondition(format!(
                "{name}'s claims do not match its layout: not removing a side"
            )));
        };
        let mut record = v.record.clone();
        record.layout = layout;
        record.allocations = kept;
        if matches!(record.layout, LayoutSpec::Mirror { .. }) {
            record.side_states.remove(side);
        } else {
            record.side_states.clear();
        }
        record.generation += 1;
        // The maps are rebuilt from the record as a restart would rebuild them: no data
        // service holds the tables (refused above), so they hold only the layout and the
        // mirror's own fault-on-write for age stamping, which is made again below.
        let mut rebuilt = Volume::from_record(record)?;
        let same = rebuilt.segments.len() == v.segments.len()
            && rebuilt.segments.iter().zip(&v.segments).all(|(a, b)| a.descriptor() == b.descriptor());
        if !same {
            return Err(Error::FailedPrecondition(format!(
                "{name}'s segments do not match its record: not removing a side"
            )));
        }
        let segments: Vec<dve_fp_api::ids::VsegId> = v.segments.iter().map(|m| m.descriptor().id).collect();
        let still_mirror = matches!(rebuilt.record.layout, LayoutSpec::Mirror { .. });
        let degraded = rebuilt.record.side_states.contains(&SideState::Dead);

        // Memory first, on copies: a failed commit puts everything back.
        let saved_mirror = self.mirror.clone();
        let saved_devices = self.devices.clone();
        let resync_ended = self.mirror.side_removed(lv, &segments, side, still_mirror);
        if degraded {
            for map in &mut rebuilt.segments {
                self.mirror.fault_writes_until_stamped(map);
            }
        }
        let mut devices: Vec<DeviceId> = freed.iter().map(|a| a.device).collect();
        devices.sort();
        devices.dedup();
        // The store gets the released claims; the registry keeps them until nothing uses them.
        let released = freed.iter().try_for_each(|a| self.devices.release(a.device, a.lba, a.blocks));
        let Some(live) = self.volumes.get_mut(&lv) else { return Err(Error::UnknownVolume(lv)) };
        let old = std::mem::replace(live, rebuilt);
        let committed = released.and_then(|()| {
            let mut batch = self.records(&devices, &[lv])?;
            saved_mirror.delete_stored_ages(&mut batch, &segments);
            self.mirror.put_stored_ages(&mut batch, &segments)?;
            if resync_ended {
                super::mirror::delete_resync_task(&mut batch, lv);
            }
            self.commit(batch)
        });
        self.devices = saved_devices;
        if let Err(e) = committed {
            if matches!(e, Error::Store(_)) {
                self.counters.failed_commits += 1;
            }
            self.mirror = saved_mirror;
            self.volumes.insert(lv, old);
            return Err(e);
        }
        let removal = self.op_id();
        self.side_removals
            .pending
            .insert(removal, RemovedSide { lv, allocations: freed.clone(), revoked: false });
        self.events.push(ControlEvent::SideRemoved {
            lv,
            side,
            devices: freed.iter().map(|a| a.device).collect(),
        });
        // Whole-segment locks: misses queue and the control path's writes wait while the
        // workers drop the old tables; reads drain too, since they may read the side.
        let segments = self.segments_of(lv);
        self.revoke_segments(&segments, false, AfterRevocation::SideRemoved { removal });
        Ok(())
    }

    /// Why side `side` of `lv` cannot be removed now, if it cannot: another procedure is
    /// changing the volume's sides or tables (a resync of that very side is ended instead).
    fn removal_refused(&self, lv: LvId, side: usize) -> Option<String> {
        let tasks = [
            (self.migrations.involves(lv), "it is migrating"),
            (self.snapshots.involves(lv), "a snapshot of it (or it, a snapshot) is still completing"),
            (self.incrementals.is_base(lv), "incremental volumes share it"),
            (self.incrementals.busy(lv), "it is copying granules from its base"),
            (self.replications.involves(lv), "it replicates"),
            (self.reconfigurations.involves(lv), "its segments are being split or merged"),
            (self.leg_timeouts.involves(lv), "a range of its mirror is being reconciled"),
            (!self.mirror.dying_sides(lv).is_empty(), "a side of it is dying"),
            (self.side_death_unrecorded(lv), "a side's death is not recorded yet"),
        ];
        if let Some((_, why)) = tasks.into_iter().find(|(busy, _)| *busy) {
            return Some(why.to_string());
        }
        match self.mirror.resyncing_side(lv) {
            Some(other) if other != side => {
                Some(format!("side {other} is resynchronizing (remove that side, or wait for its resync)"))
            }
            _ => None,
        }
    }

    /// Every worker dropped the old tables of a volume that lost a side and drained the I/O
    /// begun under them.
    pub(super) fn side_removal_revoked(&mut self, removal: u64) {
        let Some(r) = self.side_removals.pending.get_mut(&removal) else { return };
        r.revoked = true;
        let lv = r.lv;
        // A side death or resync that started since changes and grants the tables itself;
        // otherwise the new tables go out now rather than at each worker's next miss.
        if !self.mirror.involves(lv) {
            self.grant_tables(lv);
        }
        self.free_removed_sides();
    }

    /// Free the claims of removed sides that nothing uses any more: the workers let go, and
    /// no I/O or copy the control path began under the old layout still reaches them.
    pub(super) fn free_removed_sides(&mut self) {
        let ready: Vec<u64> = self
            .side_removals
            .pending
            .iter()
            .filter(|(_, r)| {
                r.revoked
                    && !self.mirror.abandoned_steps_on(r.lv)
                    && !r.allocations.iter().any(|a| self.control_io_reaches(a.device))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            let Some(r) = self.side_removals.pending.remove(&id) else { continue };
            let mut devices: Vec<DeviceId> = Vec::new();
            for Allocation { device, lba, blocks } in r.allocations {
                if self.devices.release(device, lba, blocks).is_ok() && !devices.contains(&device) {
                    devices.push(device);
                }
            }
            // Already committed with the removal; committed again so that no later commit of
            // these devices writes the claims back.
            if self.persist(&devices, &[]).is_err() {
                self.counters.failed_commits += 1;
            }
        }
    }

    /// Whether an I/O the control path runs, or a block copy, has a leg on `device`.
    fn control_io_reaches(&self, device: DeviceId) -> bool {
        self.manual_io_reaches(device) || self.copies_reach(device)
    }

    /// Whether `device` held a side of `lv` removed so recently that I/O under the old
    /// tables may still reach it: a failure there is no side's failure any more.
    pub(super) fn removed_side_device(&self, lv: LvId, device: DeviceId) -> bool {
        self.side_removals.holds(lv, device)
    }

    /// A fast-path I/O begun under the old tables failed on a removed side's device: a read
    /// is redone on the sides left, a write is retried by the host (it reached them, or
    /// their own failure says so).
    pub(super) fn removed_side_failed(
        &mut self,
        io: dve_fp_api::ids::IoTag,
        request: dve_fp_api::io::HostIo,
    ) {
        if request.kind == IoKind::Read {
            self.start_manual(io, request);
        } else {
            self.complete_io(io, dve_fp_api::io::IoStatus::check_condition(super::manual_io::RETRY));
        }
    }
}
