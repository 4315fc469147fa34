//! Adding a mirror side to a volume online: a mirror gains one more side, a single-device
//! linear volume becomes a two-sided mirror. The new side starts dead with nothing on it,
//! so the resync that follows copies the whole volume onto it under range locks while hosts
//! keep reading and writing.

use dve_fp_api::ids::{DeviceId, LvId};
use dve_fp_api::mapping::{SideState, StorageDescriptor};

use super::ControlPath;
use crate::error::Error;
use crate::volume::{Allocation, LayoutSpec, Volume};

impl ControlPath {
    /// Add `device` as a new side of volume `lv` (management API) and start copying the
    /// volume onto it; returns the side's index. The claim, the new layout and the side's
    /// DEAD state are one transaction, so a restart resumes with the side to resynchronize;
    /// a refused request changes nothing.
    pub fn add_mirror_side(&mut self, lv: LvId, device: DeviceId) -> Result<usize, Error> {
        let v = self.volumes.get(&lv).ok_or(Error::UnknownVolume(lv))?;
        let name = v.record.name.clone();
        let mut sides = match &v.record.layout {
            LayoutSpec::Mirror { sides } => sides.clone(),
            LayoutSpec::Linear { devices } if devices.len() == 1 => devices.clone(),
            LayoutSpec::Linear { .. } => {
                return Err(Error::Unsupported(format!(
                    "adding a mirror side to {name}: it is concatenated over several devices (only a \
                     single-device linear volume becomes a mirror)"
                )));
            }
            other => {
                return Err(Error::Unsupported(format!(
                    "adding a mirror side to {name}: its layout is {} (only mirrors and single-device \
                     linear volumes take a side)",
                    layout_name(other)
                )));
            }
        };
        if sides.len() >= dve_fp_api::mapping::MirrorSet::MAX_SIDES {
            return Err(Error::FailedPrecondition(format!(
                "{name} has {} sides, the most a mirror can have",
                sides.len()
            )));
        }
        let d = self.devices.get(device).ok_or(Error::UnknownDevice(device))?;
        let target = d.target;
        if sides.contains(&device) {
            return Err(Error::invalid(
                "side",
                format!("the device of target {target} already holds {name}"),
            ));
        }
        if !d.online {
            return Err(Error::DeviceNotReady(device));
        }
        if d.block_size != v.record.block_size {
            return Err(Error::invalid(
                "side",
                format!(
                    "the device of target {target} has {}-byte blocks and {name} {}-byte blocks",
                    d.block_size, v.record.block_size
                ),
            ));
        }
        if let Some(side) = v.record.side_states.iter().position(|s| *s != SideState::Alive) {
            return Err(Error::FailedPrecondition(format!(
                "side {side} of {name} is not current: resynchronize it before adding a side"
            )));
        }
        // A table with more than one redirect entry means a data service is rewriting how
        // the volume is reached; I/O the control path runs was split for the old sides. The
        // side is added only to a volume at rest.
        let at_rest = match self.work_on(lv) {
            Some(why) => Err(why),
            None if v.segments.iter().any(|s| s.redirects().len() != 1) => {
                Err("a data service holds its tables")
            }
            None => Ok(()),
        };
        if let Err(why) = at_rest {
            return Err(Error::FailedPrecondition(format!(
                "a side cannot be added to {name} now: {why}; try again when it ends"
            )));
        }

        let saved_devices = self.devices.clone();
        let lba = self.devices.allocate(device, v.record.blocks)?;
        let mut record = v.record.clone();
        let side = sides.len();
        sides.push(device);
        if record.side_states.is_empty() {
            record.side_states.push(SideState::Alive);
        }
        record.side_states.push(SideState::Dead);
        record.layout = LayoutSpec::Mirror { sides };
        record.allocations.push(Allocation { device, lba, blocks: record.blocks });
        record.generation += 1;
        // The maps are rebuilt from the record as a restart would rebuild them; with one
        // redirect entry per segment nothing else is lost, and the segments stay as they were.
        let rebuilt = match Volume::from_record(record) {
            Ok(rebuilt) if same_segments(v, &rebuilt) => rebuilt,
            Ok(_) => {
                self.devices = saved_devices;
                return Err(Error::FailedPrecondition(format!(
                    "{name}'s segments do not match its record: not adding a side"
                )));
            }
            Err(e) => {
                self.devices = saved_devices;
                return Err(e);
            }
        };
        let Some(v) = self.volumes.get_mut(&lv) else { return Err(Error::UnknownVolume(lv)) };
        let saved = std::mem::replace(v, rebuilt);
        if let Err(e) = self.persist(&[device], &[lv]) {
            self.volumes.insert(lv, saved);
            self.devices = saved_devices;
            self.counters.failed_commits += 1;
            return Err(e);
        }
        // The workers still hold the old tables (without the side): the resync revokes them
        // and grants the new ones before it copies anything.
        self.start_resync(lv, side);
        Ok(side)
    }
}

/// Whether `rebuilt` has the same segments as `live`, each a mirror over the same sides
/// plus one, so rebuilding changed nothing but the side.
fn same_segments(live: &Volume, rebuilt: &Volume) -> bool {
    live.segments.len() == rebuilt.segments.len()
        && live.segments.iter().zip(&rebuilt.segments).all(|(a, b)| {
            let sides = |m: &dve_fp_api::mapping::VsegMap| -> Option<Vec<StorageDescriptor>> {
                // The segment's only entry, wherever it is: a completed snapshot or migration
                // of a linear volume keeps the entry of the state it ended on, which need not
                // be at index 0 (a rebuilt map's is).
                let mut entries = m.redirects().iter();
                let (_, entry) = entries.next()?;
                if entries.next().is_some() {
                    return None;
                }
                Some(match &entry.descriptor {
                    StorageDescriptor::Mirror(set) => set
                        .sides()
                        .iter()
                        .map(|s| match s.layout {
                            dve_fp_api::mapping::SideLayout::Single(p) => StorageDescriptor::Single(p),
                            dve_fp_api::mapping::SideLayout::Stripe(ref s) => {
                                StorageDescriptor::Stripe(s.clone())
                            }
                        })
                        .collect(),
                    other => vec![other.clone()],
                })
            };
            let (Some(old), Some(new)) = (sides(a), sides(b)) else { return false };
            a.descriptor() == b.descriptor() && new.len() == old.len() + 1 && new[..old.len()] == old[..]
        })
}

pub(super) fn layout_name(layout: &LayoutSpec) -> &'static str {
    match layout {
        LayoutSpec::Linear { .. } => "linear",
        LayoutSpec::Stripe { .. } => "a stripe set",
        LayoutSpec::Mirror { .. } => "a mirror",
        LayoutSpec::Raid10 { .. } => "RAID 10 (two stripe sets)",
        LayoutSpec::Snapshot { .. } => "a snapshot",
        LayoutSpec::Incremental { .. } => "an incremental",
        LayoutSpec::Journal { .. } => "journaled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceRegistry;
    use dve_fp_api::ids::{Lun, Wwn};
    use dve_fp_api::mapping::RedirectIndex;

    /// A linear volume on device 1 and the volume it becomes with a side on device 2.
    fn linear_and_mirrored() -> (Volume, Volume) {
        let mut devices = DeviceRegistry::default();
        for i in 1..=2 {
            let (d, _) = devices.find_or_add_identified(None, Wwn(i), Lun(0));
            d.blocks = 10_000;
        }
        let layout = LayoutSpec::Linear { devices: vec![DeviceId(1)] };
        let live = Volume::create(LvId(1), "v".into(), 1000, 512, layout, &mut devices).unwrap();
        let mut record = live.record.clone();
        let lba = devices.allocate(DeviceId(2), record.blocks).unwrap();
        record.layout = LayoutSpec::Mirror { sides: vec![DeviceId(1), DeviceId(2)] };
        record.side_states = vec![SideState::Alive, SideState::Dead];
        record.allocations.push(Allocation { device: DeviceId(2), lba, blocks: record.blocks });
        (live, Volume::from_record(record).unwrap())
    }

    #[test]
    fn a_side_is_added_whatever_index_the_single_entry_has() {
        let (mut live, rebuilt) = linear_and_mirrored();
        assert!(same_segments(&live, &rebuilt));
        // As a completed snapshot leaves it: the twin kept, at index 1, and index 0 freed.
        for map in &mut live.segments {
            let entry = map.redirects().get(RedirectIndex(0)).unwrap().clone();
            let twin = map.add_redirect(entry).unwrap();
            map.set_range(0..map.descriptor().blocks, twin).unwrap();
            assert_eq!(map.remove_unreferenced(), vec![RedirectIndex(0)]);
        }
        assert!(same_segments(&live, &rebuilt));
        // Two entries mean a data service still holds the table.
        for map in &mut live.segments {
            let (_, entry) = map.redirects().iter().next().map(|(i, e)| (i, e.clone())).unwrap();
            map.add_redirect(entry).unwrap();
        }
        assert!(!same_segments(&live, &rebuilt));
    }
}
