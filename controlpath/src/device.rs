//! Physical devices the control path discovered: one per logical unit, known by its VPD 0x83
//! designator (or, for a unit without one, by target port name and LUN), with its capacity,
//! the paths that reach it through the engine and the one in use, whether it answers, and
//! the space volumes have claimed on it.

use std::collections::BTreeMap;

use dve_fp_api::ids::{DeviceId, FcId, Lun, PortId, Wwn};
use dve_fp_api::mapping::DevicePath;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Whether a path can carry I/O.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PathState {
    /// The path the fast path uses for the device.
    Active,
    /// Logged in and identified; used if the active path fails.
    Standby,
    /// Failed its path test; used again once its target logs in again.
    Failed,
}

/// One way to reach a device: a target port behind one of the engine's ports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TargetPath {
    /// The target port's name.
    pub target: Wwn,
    /// The engine port it is cabled to.
    pub port: PortId,
    /// The target port's address.
    pub fc_id: FcId,
    /// The path's own device id in the workers' caches, for I/O that must take exactly this
    /// path (identification and path tests).
    pub probe: DeviceId,
    /// Its state.
    pub state: PathState,
}

/// A physical device (a logical unit of a physical target, reached by one or more paths).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Device {
    /// Its id.
    pub id: DeviceId,
    /// The port name of the first target port it was found behind.
    pub target: Wwn,
    /// Its VPD 0x83 designator (`naa.…`, `eui.…`), when it has one: ports showing the same
    /// designator reach the same device.
    #[serde(default)]
    pub identity: Option<String>,
    /// Every target port it has been found behind.
    #[serde(default)]
    pub targets: Vec<Wwn>,
    /// The LUN.
    pub lun: Lun,
    /// Capacity in blocks (0 until READ CAPACITY answered).
    pub blocks: u64,
    /// Block size in bytes.
    pub block_size: u32,
    /// First block not yet claimed by a volume.
    pub allocated: u64,
    /// The paths found since the engine started.
    #[serde(skip)]
    pub paths: Vec<TargetPath>,
    /// Whether the device answers (false after a failed I/O until it is seen again).
    #[serde(skip)]
    pub online: bool,
}

impl Device {
    /// The active path's engine port and target address.
    pub fn path(&self) -> Option<(PortId, FcId)> {
        self.path_in(PathState::Active).map(|p| (p.port, p.fc_id))
    }

    /// The first path in `state`.
    pub fn path_in(&self, state: PathState) -> Option<TargetPath> {
        self.paths.iter().find(|p| p.state == state).copied()
    }

    /// The FP API's view of the active path, if there is one.
    pub fn device_path(&self) -> Option<DevicePath> {
        let (port, target_fc_id) = self.path()?;
        Some(DevicePath { device: self.id, port, target_fc_id, lun: self.lun, block_size: self.block_size })
    }

    /// Whether `wwpn` is one of its target ports.
    pub fn behind(&self, wwpn: Wwn) -> bool {
        self.target == wwpn || self.targets.contains(&wwpn)
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

    /// A new device behind `target` at `lun`.
    fn add(&mut self, target: Wwn, lun: Lun) -> DeviceId {
        let id = DeviceId(self.devices.keys().last().map_or(1, |d| d.0 + 1));
        self.devices.insert(
            id,
            Device {
                id,
                target,
                identity: None,
                targets: vec![target],
                lun,
                blocks: 0,
                block_size: 512,
                allocated: 0,
                paths: Vec::new(),
                online: false,
            },
        );
        id
    }

    /// The device a target port shows at `lun`: the one with the same designator when it has
    /// one, else the one of that port and LUN; created if new. A device restored from an
    /// older record without a designator takes the designator of its first port. Also says
    /// whether its record changed (new device, new port, designator adopted).
    pub fn find_or_add_identified(
        &mut self,
        identity: Option<&str>,
        target: Wwn,
        lun: Lun,
    ) -> (&mut Device, bool) {
        let by_identity = identity
            .and_then(|i| self.devices.values().find(|d| d.identity.as_deref() == Some(i)))
            .map(|d| d.id);
        let by_port = || {
            self.devices
                .values()
                .find(|d| d.lun == lun && d.behind(target) && (d.identity.is_none() || identity.is_none()))
                .map(|d| d.id)
        };
        let (id, mut changed) = match by_identity.or_else(by_port) {
            Some(id) => (id, false),
            None => (self.add(target, lun), true),
        };
        let Some(device) = self.devices.get_mut(&id) else { unreachable!("found or added just now") };
        if device.identity.is_none() && identity.is_some() {
            device.identity = identity.map(str::to_string);
            changed = true;
        }
        if !device.targets.contains(&target) {
            device.targets.push(target);
            changed = true;
        }
        (device, changed)
    }

    /// The device and path index of a path's probe id.
    pub fn by_probe(&self, probe: DeviceId) -> Option<(DeviceId, usize)> {
        self.devices.values().find_map(|d| d.paths.iter().position(|p| p.probe == probe).map(|i| (d.id, i)))
    }

    /// One device.
    pub fn get(&self, id: DeviceId) -> Option<&Device> {
        self.devices.get(&id)
    }

    /// One device, mutably.
    pub fn get_mut(&mut self, id: DeviceId) -> Option<&mut Device> {
        self.devices.get_mut(&id)
    }

    /// The device behind target port `target`, LUN 0.
    pub fn by_target(&self, target: Wwn) -> Option<&Device> {
        self.devices.values().find(|d| d.behind(target) && d.lun == Lun(0))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_showing_one_designator_are_one_device() {
        let mut r = DeviceRegistry::default();
        let a = r.find_or_add_identified(Some("naa.5000000000000001"), Wwn(0x22), Lun(0)).0.id;
        let b = r.find_or_add_identified(Some("naa.5000000000000001"), Wwn(0x23), Lun(0)).0.id;
        let c = r.find_or_add_identified(Some("naa.5000000000000002"), Wwn(0x24), Lun(0)).0.id;
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(r.get(a).map(|d| d.targets.clone()), Some(vec![Wwn(0x22), Wwn(0x23)]));
        assert_eq!(r.by_target(Wwn(0x23)).map(|d| d.id), Some(a));
        assert_eq!(r.iter().count(), 2);
    }

    #[test]
    fn a_unit_without_designator_is_known_by_port_and_a_new_unit_behind_a_port_is_new() {
        let mut r = DeviceRegistry::default();
        let a = r.find_or_add_identified(None, Wwn(0x22), Lun(0)).0.id;
        assert_eq!(r.find_or_add_identified(None, Wwn(0x22), Lun(0)).0.id, a);
        // A restored record without a designator takes the one its port shows.
        assert_eq!(r.find_or_add_identified(Some("naa.51"), Wwn(0x22), Lun(0)).0.id, a);
        assert_eq!(r.get(a).and_then(|d| d.identity.clone()).as_deref(), Some("naa.51"));
        // A different unit now answering behind the same port is another device.
        let b = r.find_or_add_identified(Some("naa.52"), Wwn(0x22), Lun(0)).0.id;
        assert_ne!(a, b);
    }

    #[test]
    fn the_active_path_is_the_device_path() {
        let mut r = DeviceRegistry::default();
        let d = r.find_or_add_identified(Some("naa.51"), Wwn(0x22), Lun(0)).0;
        assert_eq!(d.device_path(), None);
        let path = |port: u16, state| TargetPath {
            target: Wwn(0x22),
            port: PortId(port),
            fc_id: FcId::new(0x010200 + u32::from(port)).unwrap_or_default(),
            probe: DeviceId(0x8000_0000 + u32::from(port)),
            state,
        };
        d.paths = vec![path(1, PathState::Failed), path(2, PathState::Active), path(3, PathState::Standby)];
        assert_eq!(d.device_path().map(|p| p.port), Some(PortId(2)));
        assert_eq!(r.by_probe(DeviceId(0x8000_0003)), Some((DeviceId(1), 2)));
    }
}
