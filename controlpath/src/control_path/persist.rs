//! Durable metadata of the control path: every change to devices and volumes (creation,
//! exposure, mirror side states and generations) is one `MetadataStore` transaction,
//! committed before the change is pushed to the fast path; at start the engine reloads the
//! last committed state.

use dve_fp_api::ids::{DeviceId, LvId};

use super::ControlPath;
use crate::device::{Device, DeviceRegistry};
use crate::error::Error;
use crate::store::{Batch, MetadataStore, Table, scan_json};
use crate::volume::{Volume, VolumeRecord};

fn device_key(id: DeviceId) -> [u8; 4] {
    id.0.to_be_bytes()
}

fn volume_key(id: LvId) -> [u8; 4] {
    id.0.to_be_bytes()
}

impl ControlPath {
    /// Attach a metadata store and load what it holds (devices and volumes). Devices come
    /// back offline until they log in again.
    pub fn attach_store(&mut self, store: Box<dyn MetadataStore>) -> Result<(), Error> {
        let devices: Vec<(Vec<u8>, Device)> =
            scan_json(store.as_ref(), Table::Devices).map_err(|e| Error::Store(e.to_string()))?;
        let volumes: Vec<(Vec<u8>, VolumeRecord)> =
            scan_json(store.as_ref(), Table::Volumes).map_err(|e| Error::Store(e.to_string()))?;
        self.devices = DeviceRegistry::from_records(devices.into_iter().map(|(_, d)| d));
        self.volumes.clear();
        self.exposure.luns.clear();
        for (_, record) in volumes {
            let hosts = record.hosts.clone();
            let volume = Volume::from_record(record)?;
            let id = volume.record.id;
            let descriptor = volume.descriptor()?;
            self.volumes.insert(id, volume);
            self.grant_all(dve_fp_api::message::MappingEntry::Lv(descriptor));
            if !hosts.is_empty() {
                self.expose(id, &hosts)?;
            }
            self.journal_regions(id);
            self.push_mask(id);
        }
        self.store = Some(store);
        Ok(())
    }

    /// Commit the records of `devices` and `volumes` in one transaction.
    pub(super) fn persist(&mut self, devices: &[DeviceId], volumes: &[LvId]) -> Result<(), Error> {
        let Some(store) = self.store.as_mut() else { return Ok(()) };
        let mut batch = Batch::new();
        for id in devices {
            if let Some(d) = self.devices.get(*id) {
                batch
                    .put_json(Table::Devices, device_key(*id), d)
                    .map_err(|e| Error::Store(e.to_string()))?;
            }
        }
        for id in volumes {
            match self.volumes.get(id) {
                Some(v) => {
                    batch
                        .put_json(Table::Volumes, volume_key(*id), &v.record)
                        .map_err(|e| Error::Store(e.to_string()))?;
                }
                None => {
                    batch.delete(Table::Volumes, volume_key(*id));
                }
            }
        }
        store.commit(batch).map_err(|e| Error::Store(e.to_string()))
    }
}
