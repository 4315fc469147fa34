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

/// Blocks of a device no volume claims, below its high-water mark.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct FreeRun {
    /// First block.
    pub lba: u64,
    /// Blocks.
    pub blocks: u64,
}

impl FreeRun {
    fn end(&self) -> u64 {
        self.lba + self.blocks
    }
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
    /// First block above every claim (the high-water mark).
    pub allocated: u64,
    /// Runs of free blocks below `allocated`, left by deleted volumes: sorted by LBA, none
    /// touching another or `allocated` (such runs are merged).
    #[serde(default)]
    pub free_runs: Vec<FreeRun>,
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

    /// The most blocks one claim can take (claims are contiguous).
    pub fn largest_free_run(&self) -> u64 {
        let tail = self.blocks.saturating_sub(self.allocated);
        self.free_runs.iter().map(|r| r.blocks).fold(tail, u64::max)
    }

    /// Claim `blocks` contiguous blocks: the smallest free run that holds them (so large
    /// runs stay whole for large claims), else above the high-water mark.
    fn claim(&mut self, blocks: u64) -> Result<u64, Error> {
        if self.blocks == 0 {
            return Err(Error::DeviceNotReady(self.id));
        }
        let best = self
            .free_runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.blocks >= blocks)
            .min_by_key(|(_, r)| r.blocks);
        if let Some((i, _)) = best {
            let run = &mut self.free_runs[i];
            let lba = run.lba;
            run.lba += blocks;
            run.blocks -= blocks;
            if run.blocks == 0 {
                self.free_runs.remove(i);
            }
            return Ok(lba);
        }
        let tail = self.blocks.saturating_sub(self.allocated);
        if blocks > tail {
            return Err(Error::NoSpace { device: self.id, wanted: blocks, free: self.largest_free_run() });
        }
        let lba = self.allocated;
        self.allocated += blocks;
        Ok(lba)
    }

    /// Give back `blocks` blocks at `lba`, which must all be claimed.
    fn release(&mut self, lba: u64, blocks: u64) -> Result<(), Error> {
        let end = lba.checked_add(blocks).filter(|e| *e <= self.allocated && blocks > 0);
        let at = self.free_runs.partition_point(|r| r.lba < lba);
        let overlaps_before = at > 0 && self.free_runs[at - 1].end() > lba;
        let Some(end) =
            end.filter(|e| !overlaps_before && self.free_runs.get(at).is_none_or(|r| r.lba >= *e))
        else {
            return Err(Error::FailedPrecondition(format!(
                "{:?}: blocks {lba}..+{blocks} are not claimed, cannot be released",
                self.id
            )));
        };
        let mut run = FreeRun { lba, blocks };
        if self.free_runs.get(at).is_some_and(|r| r.lba == end) {
            run.blocks += self.free_runs.remove(at).blocks;
        }
        if at > 0 && self.free_runs[at - 1].end() == lba {
            self.free_runs[at - 1].blocks += run.blocks;
        } else {
            self.free_runs.insert(at, run);
        }
        // A run reaching the high-water mark lowers it instead.
        if let Some(last) = self.free_runs.last().copied()
            && last.end() == self.allocated
        {
            self.allocated = last.lba;
            self.free_runs.pop();
        }
        Ok(())
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
                free_runs: Vec::new(),
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

    /// Claim `blocks` contiguous blocks on `id` for a volume; returns the first block claimed.
    pub fn allocate(&mut self, id: DeviceId, blocks: u64) -> Result<u64, Error> {
        self.devices.get_mut(&id).ok_or(Error::UnknownDevice(id))?.claim(blocks)
    }

    /// Give back a claim made by [`DeviceRegistry::allocate`] (a deleted volume's space).
    pub fn release(&mut self, id: DeviceId, lba: u64, blocks: u64) -> Result<(), Error> {
        self.devices.get_mut(&id).ok_or(Error::UnknownDevice(id))?.release(lba, blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn device(blocks: u64) -> Device {
        Device {
            id: DeviceId(1),
            target: Wwn(0x22),
            identity: None,
            targets: Vec::new(),
            lun: Lun(0),
            blocks,
            block_size: 512,
            allocated: 0,
            free_runs: Vec::new(),
            paths: Vec::new(),
            online: true,
        }
    }

    /// Blocks claimed by volumes.
    fn claimed_blocks(d: &Device) -> u64 {
        d.allocated - d.free_runs.iter().map(|r| r.blocks).sum::<u64>()
    }

    /// The longest stretch of free blocks in the model (a flag per block).
    fn longest_free(model: &[bool]) -> u64 {
        model.split(|claimed| *claimed).map(|run| run.len() as u64).max().unwrap_or(0)
    }

    proptest! {
        /// Claims and releases against a flag per block: a claim gets blocks nobody holds,
        /// succeeds exactly when a long enough free stretch exists, and the free runs stay
        /// sorted, apart and below the high-water mark.
        #[test]
        fn claims_and_releases_match_a_block_map(
            steps in proptest::collection::vec((any::<bool>(), 1u64..40, any::<prop::sample::Index>()), 1..80),
        ) {
            const BLOCKS: u64 = 256;
            let mut d = device(BLOCKS);
            let mut model = vec![false; BLOCKS as usize];
            let mut claims: Vec<(u64, u64)> = Vec::new();
            for (claim, n, pick) in steps {
                if claim || claims.is_empty() {
                    let fits = longest_free(&model) >= n;
                    prop_assert_eq!(d.largest_free_run() >= n, fits);
                    match d.claim(n) {
                        Ok(lba) => {
                            prop_assert!(fits);
                            let range = lba as usize..(lba + n) as usize;
                            prop_assert!(model[range.clone()].iter().all(|c| !c), "claimed twice");
                            model[range].fill(true);
                            claims.push((lba, n));
                        }
                        Err(e) => {
                            prop_assert!(!fits, "refused with room: {e}");
                            prop_assert!(matches!(e, Error::NoSpace { .. }), "{e}");
                        }
                    }
                } else {
                    let (lba, n) = claims.swap_remove(pick.index(claims.len()));
                    d.release(lba, n).expect("a claim is released");
                    model[lba as usize..(lba + n) as usize].fill(false);
                    prop_assert!(d.release(lba, n).is_err(), "released twice");
                }
                prop_assert_eq!(claimed_blocks(&d), model.iter().filter(|c| **c).count() as u64);
                prop_assert!(model[d.allocated as usize..].iter().all(|c| !c), "claims above the mark");
                for pair in d.free_runs.windows(2) {
                    prop_assert!(pair[0].end() < pair[1].lba, "runs sorted and apart: {:?}", d.free_runs);
                }
                prop_assert!(d.free_runs.iter().all(|r| r.blocks > 0 && r.end() < d.allocated));
            }
        }
    }

    #[test]
    fn a_release_of_unclaimed_blocks_is_refused_and_changes_nothing() {
        let mut d = device(100);
        let a = d.claim(10).unwrap();
        let b = d.claim(10).unwrap();
        d.release(a, 10).unwrap();
        let before = d.clone();
        for (lba, n) in [(a, 10), (a + 5, 10), (b + 5, 10), (90, 5), (b, 0), (u64::MAX, 2)] {
            assert!(d.release(lba, n).is_err(), "{lba}+{n}");
            assert_eq!(d, before);
        }
        assert_eq!(device(0).claim(1), Err(Error::DeviceNotReady(DeviceId(1))));
    }

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
