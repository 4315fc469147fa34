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
    pub fn attach_store(&mut self, mut store: Box<dyn MetadataStore>) -> Result<(), Error> {
        // Before any journal is cut into slots: this boot's journal sequences must differ
        // from every earlier boot's, whose entries are still on the journal devices.
        self.journal_sequence = super::journal::first_sequence(next_boot(store.as_mut())?);
        // A transaction like any other: whoever counts the store's transactions (a crash
        // after the n-th) counts this one too.
        self.counters.commits += 1;
        let devices: Vec<(Vec<u8>, Device)> = scan_json(store.as_ref(), Table::Devices)?;
        let volumes: Vec<(Vec<u8>, VolumeRecord)> = scan_json(store.as_ref(), Table::Volumes)?;
        let tasks: Vec<(Vec<u8>, serde_json::Value)> = scan_json(store.as_ref(), Table::Tasks)?;
        let resyncing = ControlPath::resync_tasks(&tasks);
        self.devices = DeviceRegistry::from_records(devices.into_iter().map(|(_, d)| d));
        self.await_restored_devices();
        self.volumes.clear();
        self.exposure.luns.clear();
        for (_, mut record) in volumes {
            // A resync without its task (committed with the RESYNC state, so this is a
            // record from before tasks) is stale somewhere unknown: the side counts as dead
            // and is resynchronized whole when it answers.
            for (side, state) in record.side_states.iter_mut().enumerate() {
                if *state == dve_fp_api::mapping::SideState::Resync && !resyncing.contains(&(record.id, side))
                {
                    *state = dve_fp_api::mapping::SideState::Dead;
                }
            }
            let (hosts, lun) = (record.hosts.clone(), record.lun);
            if let crate::volume::LayoutSpec::Snapshot { source, writable, .. } = record.layout {
                self.snapshots.restore(record.id, source, writable);
            }
            let volume = Volume::from_record(record)?;
            let id = volume.record.id;
            let descriptor = volume.descriptor()?;
            self.volumes.insert(id, volume);
            self.grant_all(dve_fp_api::message::MappingEntry::Lv(descriptor));
            if !hosts.is_empty() {
                self.expose_as(id, &hosts, Some(lun))?;
            }
            self.journal_regions(id);
            self.push_mask(id);
        }
        let ages = super::age_records::load(store.as_ref())?;
        let segment_blocks: std::collections::BTreeMap<dve_fp_api::ids::VsegId, u64> = self
            .volumes
            .values()
            .flat_map(|v| v.segments.iter().map(|m| (m.descriptor().id, m.descriptor().blocks)))
            .collect();
        self.mirror.restore_ages(ages, |seg| segment_blocks.get(&seg).copied());
        let granules = scan_json(store.as_ref(), Table::Rmaps)?;
        self.restore_incrementals(granules)?;
        let mut snapshots = Vec::new();
        let mut resyncs = Vec::new();
        for (key, value) in tasks {
            if key.starts_with(super::replication::TASK_KEY) {
                self.resume_replication(value)?;
            } else if key.starts_with(super::migration::TASK_KEY) {
                self.resume_migration(value)?;
            } else if key.starts_with(super::migration::CANCELLED_KEY) {
                self.restore_cancelled_mark(&key)?;
            } else if key.starts_with(super::snapshot::TASK_KEY) {
                snapshots.push((key, value));
            } else if key.starts_with(super::mirror::TASK_KEY) {
                resyncs.push((key, value));
            }
        }
        // After the migrations: a snapshot of a migrating volume holds its copy agent.
        self.resume_snapshots(snapshots)?;
        self.resume_resyncs(resyncs)?;
        self.mirror_tables_after_restart();
        self.store = Some(store);
        Ok(())
    }

    /// Commit the records of `devices` and a task record under `key`, in one transaction.
    pub(super) fn persist_task(
        &mut self,
        devices: &[DeviceId],
        key: &[u8],
        task: &impl serde::Serialize,
    ) -> Result<(), Error> {
        if self.store.is_none() {
            return Ok(());
        }
        let mut batch = self.records(devices, &[])?;
        batch.put_json(Table::Tasks, key, task)?;
        self.commit(batch)
    }

    /// Commit the records of `devices` and `volumes` and delete the task record under `key`,
    /// in one transaction (a task's last change and its end).
    pub(super) fn persist_ending_task(
        &mut self,
        devices: &[DeviceId],
        volumes: &[LvId],
        key: &[u8],
    ) -> Result<(), Error> {
        self.persist_ending_task_with(devices, volumes, key, |_| Ok(()))
    }

    /// [`ControlPath::persist_ending_task`], with what `also` adds in the same transaction.
    pub(super) fn persist_ending_task_with(
        &mut self,
        devices: &[DeviceId],
        volumes: &[LvId],
        key: &[u8],
        also: impl FnOnce(&mut Batch) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if self.store.is_none() {
            return Ok(());
        }
        let mut batch = self.records(devices, volumes)?;
        batch.delete(Table::Tasks, key);
        also(&mut batch)?;
        self.commit(batch)
    }

    /// Commit one record under `key` of `table`, alone (a step of a task).
    pub(super) fn persist_record(
        &mut self,
        table: Table,
        key: Vec<u8>,
        value: &impl serde::Serialize,
    ) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.put_json(table, key, value)?;
        self.commit(batch)
    }

    /// Commit the records of `devices` and `volumes` in one transaction.
    pub(super) fn persist(&mut self, devices: &[DeviceId], volumes: &[LvId]) -> Result<(), Error> {
        if self.store.is_none() {
            return Ok(());
        }
        let batch = self.records(devices, volumes)?;
        self.commit(batch)
    }

    /// A batch putting the current records of `devices` and `volumes` (deleting those of
    /// volumes that no longer exist).
    pub(super) fn records(&self, devices: &[DeviceId], volumes: &[LvId]) -> Result<Batch, Error> {
        let mut batch = Batch::new();
        for id in devices {
            if let Some(d) = self.devices.get(*id) {
                batch.put_json(Table::Devices, device_key(*id), d)?;
            }
        }
        for id in volumes {
            match self.volumes.get(id) {
                Some(v) => {
                    batch.put_json(Table::Volumes, volume_key(*id), &v.record)?;
                }
                None => {
                    batch.delete(Table::Volumes, volume_key(*id));
                }
            }
        }
        Ok(batch)
    }

    /// Commit `batch` to the attached store (nothing to do without one).
    pub(super) fn commit(&mut self, batch: Batch) -> Result<(), Error> {
        let Some(store) = self.store.as_mut() else { return Ok(()) };
        store.commit(batch)?;
        self.counters.commits += 1;
        Ok(())
    }

    /// Take the metadata store away (the engine is being stopped): what it committed is what
    /// a restarted engine loads with [`ControlPath::attach_store`].
    pub fn take_store(&mut self) -> Option<Box<dyn MetadataStore>> {
        self.store.take()
    }
}

/// The key under [`Table::Counters`] of the number of times an engine attached the store.
const BOOTS_KEY: &[u8] = b"boots";

/// Count one more boot of the engine in `store` and return its number (1 for the first),
/// committed before anything of this boot is written anywhere.
fn next_boot(store: &mut dyn MetadataStore) -> Result<u64, Error> {
    let boots = match store.get(Table::Counters, BOOTS_KEY)? {
        None => 0,
        Some(bytes) => {
            let bytes: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                Error::Store(format!(
                    "the boot counter (table {}, key \"boots\") holds {} bytes, not 8",
                    Table::Counters,
                    bytes.len()
                ))
            })?;
            u64::from_be_bytes(bytes)
        }
    };
    let boot = boots.wrapping_add(1);
    let mut batch = Batch::new();
    batch.put(Table::Counters, BOOTS_KEY.to_vec(), boot.to_be_bytes().to_vec());
    store.commit(batch)?;
    Ok(boot)
}

/// A batch holding `count` discovered devices of `blocks` blocks each (ids from 1, targets
/// `0x2200 + id`), as an engine's store holds them: what tests load an engine from.
#[cfg(test)]
pub(crate) fn discovered_devices(count: u32, blocks: u64) -> Batch {
    let mut batch = Batch::new();
    for i in 1..=count {
        let device = Device {
            id: DeviceId(i),
            target: dve_fp_api::ids::Wwn(0x2200 + u64::from(i)),
            lun: dve_fp_api::ids::Lun(0),
            blocks,
            block_size: 512,
            allocated: 0,
            free_runs: Vec::new(),
            identity: None,
            targets: Vec::new(),
            paths: Vec::new(),
            online: false,
        };
        if let Err(e) = batch.put_json(Table::Devices, device_key(device.id), &device) {
            unreachable!("a device record serializes: {e}");
        }
    }
    batch
}

#[cfg(test)]
mod tests {

    use dve_fp_api::ids::Wwn;

    use super::*;
    use crate::control_path::ControlPathConfig;
    use crate::store::MemoryStore;
    use crate::volume::LayoutSpec;

    use crate::store::SharedMemoryStore as SharedStore;

    /// Two discovered disks of 100,000 blocks, as a store holds them.
    fn store_with_disks() -> MemoryStore {
        let mut store = MemoryStore::new();
        store.commit(discovered_devices(2, 100_000)).unwrap();
        store
    }

    /// The management operations, in order; each makes one metadata transaction. They stop
    /// at the first that fails (the engine crashed there).
    fn operations(cp: &mut ControlPath) -> Vec<Result<(), Error>> {
        let (d1, d2) = (DeviceId(1), DeviceId(2));
        let mut out = Vec::new();
        macro_rules! step {
            ($e:expr) => {
                match $e {
                    Ok(v) => {
                        out.push(Ok(()));
                        v
                    }
                    Err(e) => {
                        out.push(Err(e));
                        return out;
                    }
                }
            };
        }
        let v1 = step!(cp.create_volume("v1", 10_000, LayoutSpec::Linear { devices: vec![d1] }));
        let lun = step!(cp.expose(v1, &[Wwn(1)]));
        let v2 = step!(cp.create_volume("v2", 20_000, LayoutSpec::Mirror { sides: vec![d1, d2] }));
        step!(cp.expose(v2, &[Wwn(1), Wwn(2)]));
        step!(cp.create_volume("v3", 5_000, LayoutSpec::Linear { devices: vec![d2] }));
        step!(cp.hide(lun));
        step!(cp.delete_volume(v1));
        // No worker has acknowledged v1's revocation here: its blocks are not claimed again.
        step!(cp.create_volume("v4", 10_000, LayoutSpec::Linear { devices: vec![d1] }));
        // v2 loses its side on d1: a mirror left with one side is linear on d2.
        step!(cp.remove_mirror_side(v2, 0));
        out
    }

    /// What an engine loaded from `store` holds: volumes with their claims and hosts, and
    /// device allocation marks.
    fn image(store: MemoryStore) -> (Vec<VolumeRecord>, Vec<u64>) {
        let mut cp = ControlPath::new(ControlPathConfig::new(1, 4, 2));
        cp.attach_store(Box::new(store)).expect("the committed state loads");
        let volumes: Vec<VolumeRecord> = cp.volumes().map(|v| v.record.clone()).collect();
        let marks = cp.devices().iter().map(|d| d.allocated).collect();
        (volumes, marks)
    }

    #[test]
    fn a_crash_before_any_commit_restarts_into_the_last_committed_state() {
        let steps = {
            let mut cp = ControlPath::new(ControlPathConfig::new(1, 4, 2));
            cp.attach_store(Box::new(store_with_disks())).unwrap();
            let results = operations(&mut cp);
            assert!(results.iter().all(Result::is_ok));
            // Unacknowledged, v1's blocks stay out of reach: v4 is claimed above them.
            let v4 = cp.volumes().find(|v| v.record.name == "v4").expect("v4");
            assert_eq!(v4.record.allocations[0].lba, 30_000, "{:?}", v4.record.allocations);
            let v2 = cp.volumes().find(|v| v.record.name == "v2").expect("v2");
            assert_eq!(v2.record.layout, LayoutSpec::Linear { devices: vec![DeviceId(2)] });
            results.len()
        };
        assert_eq!(steps, 9);
        for crash_at in 0..steps as u64 {
            let mut store = store_with_disks();
            // Attaching the store commits the boot counter first.
            store.fail_after(crash_at + 1);
            let shared = SharedStore::new(store);
            let handle = shared.clone();
            let mut cp = ControlPath::new(ControlPathConfig::new(1, 4, 2));
            cp.attach_store(Box::new(shared)).unwrap();
            let results = operations(&mut cp);
            assert_eq!(results.len() as u64, crash_at + 1, "the operations stop at the crash");
            assert!(results.last().is_some_and(Result::is_err), "the crashed operation reports an error");
            // The crashed operation changed nothing in memory either.
            let live: Vec<VolumeRecord> = cp.volumes().map(|v| v.record.clone()).collect();
            let (volumes, marks) = image(handle.0.lock().unwrap().snapshot());
            assert_eq!(live, volumes, "memory and disk agree after a refused commit (crash at {crash_at})");
            // Exactly the committed prefix: every volume's claims lie within its devices'
            // allocation marks and no two claims overlap.
            let created = crash_at as usize;
            let expected_volumes = [0, 1, 1, 2, 2, 3, 3, 2, 3][created];
            assert_eq!(volumes.len(), expected_volumes, "crash at {crash_at}");
            let mut claims: Vec<(u32, u64, u64)> = Vec::new();
            for v in &volumes {
                for a in &v.allocations {
                    assert!(a.lba + a.blocks <= marks[(a.device.0 - 1) as usize]);
                    for (d, s, e) in &claims {
                        assert!(*d != a.device.0 || a.lba >= *e || a.lba + a.blocks <= *s, "claims overlap");
                    }
                    claims.push((a.device.0, a.lba, a.lba + a.blocks));
                }
            }
            let exposed: usize = volumes.iter().filter(|v| !v.hosts.is_empty()).count();
            assert_eq!(exposed, [0, 0, 1, 1, 2, 2, 1, 1, 1][created], "crash at {crash_at}");
            if created >= 7 {
                // On disk v1's claim is free (it would be reused after a restart, when no
                // worker holds old mappings); v2 and v3 keep theirs.
                let claimed: u64 = volumes
                    .iter()
                    .flat_map(|v| &v.allocations)
                    .filter(|a| a.device.0 == 1)
                    .map(|a| a.blocks)
                    .sum();
                // v4 is on d1 too once it was created (a crash at v2's side removal keeps
                // v2's side there: the removal is all or nothing).
                let expected = if created >= 8 { 30_000 } else { 20_000 };
                assert_eq!(claimed, expected, "v2's (and v4's) claims are on d1");
            }
        }
    }
}
