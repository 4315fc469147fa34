//! Physical devices the control path discovered: one per (target port name, LUN), with its
//! capacity, its current path through the engine, whether it answers, and the space volumes
//! have claimed on it.

use std::collections::BTreeMap;

use dve_fp_api::ids::{DeviceId, FcId, Lun, PortId, Wwn};
use dve_fp_api::mapping::DevicePath;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A physical device (a LUN of a physical target).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Device {
    /// Its id.
    pub id: DeviceId,
    /// The target's port name.
    pub target: Wwn,
    /// The LUN.
    pub lun: Lun,
    /// Capacity in blocks (0 until READ CAPACITY answered).
    pub blocks: u64,
    /// Block size in bytes.
    pub block_size: u32,
    /// First block not yet claimed by a volume.
    pub allocated: u64,
    /// The current path, while the target is logged in.
    #[serde(skip)]
    pub path: Option<(PortId, FcId)>,
    /// Whether the device answers (false after a failed I/O until it is seen again).
    #[serde(skip)]
    pub online: bool,
}

impl Device {
    /// The FP API's view of the path, if there is one.
    pub fn device_path(&self) -> Option<DevicePath> {
        let (port, target_fc_id) = self.path?;
        Some(DevicePath { device: self.id, port, target_fc_id, lun: self.lun, block_size: self.block_size })
    }
}

/// Every known device.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct DeviceRegistry {
    devices: BTreeMap<DeviceId, Device>,
}

impl DeviceRegistry {
    /// Devices restored from the metadata store.
    pub fn from_records(records: impl IntoIterator<Item = Device>) -> DeviceRegistry {
        DeviceRegistry { devices: records.into_iter().map(|d| (d.id, d)).collect() }
    }

    /// The device of (target, LUN), created if new.
    pub fn find_or_add(&mut self, target: Wwn, lun: Lun) -> &mut Device {
        let existing = self.devices.values().find(|d| d.target == target && d.lun == lun).map(|d| d.id);
        let id = existing.unwrap_or_else(|| DeviceId(self.devices.keys().last().map_or(1, |d| d.0 + 1)));
        self.devices.entry(id).or_insert_with(|| Device {
            id,
            target,
            lun,
            blocks: 0,
            block_size: 512,
            allocated: 0,
            path: None,
            online: false,
        })
    }

    /// One device.
    pub fn get(&self, id: DeviceId) -> Option<&Device> {
        self.devices.get(&id)
    }

    /// One device, mutably.
    pub fn get_mut(&mut self, id: DeviceId) -> Option<&mut Device> {
        self.devices.get_mut(&id)
    }

    /// The device of target `target`, LUN 0.
    pub fn by_target(&self, target: Wwn) -> Option<&Device> {
        self.devices.values().find(|d| d.target == target && d.lun == Lun(0))
    }

    /// Every device.
    pub fn iter(&self) -> impl Iterator<Item = &Device> + '_ {
        self.devices.values()
    }

    /// Claim `blocks` on `id` for a volume; returns the first block claimed.
    pub fn allocate(&mut self, id: DeviceId, blocks: u64) -> Result<u64, Error> {
        let device = self.devices.get_mut(&id).ok_or(Error::UnknownDevice(id))?;
        if device.blocks == 0 {
            return Err(Error::DeviceNotReady(id));
        }
        let free = device.blocks - device.allocated.min(device.blocks);
        if blocks > free {
            return Err(Error::NoSpace { device: id, wanted: blocks, free });
        }
        let start = device.allocated;
        device.allocated += blocks;
        Ok(start)
    }
}
