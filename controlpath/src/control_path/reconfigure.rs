//! LV reconfiguration (seed 003 section 6.8): growing a volume by a segment. The new
//! segment's mapping is added before the volume's descriptor grows (an unrestrictive
//! change: nothing in flight can use blocks that did not exist), the change is committed,
//! and every initiator of the volume gets CAPACITY DATA HAS CHANGED on its next command.

use dve_fp_api::ids::{DeviceId, LvId};
use dve_fp_api::mapping::{Placement, RedirectEntry, StorageDescriptor, VsegDescriptor, VsegLimits, VsegMap};
use dve_fp_api::message::MappingEntry;

use super::{ControlEvent, ControlPath};
use crate::error::Error;
use crate::volume::{Allocation, LayoutSpec, segment_id};

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
        if self.snapshot_involves(lv) || self.migrations_of(lv) || self.incremental_involves(lv) {
            return Err(Error::FailedPrecondition(format!(
                "{} is being reconfigured: try again when it ends",
                v.record.name
            )));
        }
        let index = v.segments.len();
        if index >= 4096 {
            return Err(Error::FailedPrecondition("a volume has at most 4096 segments".into()));
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
}
