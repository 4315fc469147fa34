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

    /// The mirror side of `lv` on `device` (for a RAID 10, the side whose stripe set has it).
    pub fn side_of_device(&self, lv: LvId, device: DeviceId) -> Option<usize> {
        self.side_of(lv, device)
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, VecDeque};

    use bytes::Bytes;
    use dve_fp_api::fault::FaultCause;
    use dve_fp_api::ids::{ExchangeId, ExposureId, FcId, IoTag, Lun, PortId, Timestamp, WorkerId, Wwn};
    use dve_fp_api::io::{Cdb, DownstreamOp, HostIo, IoStatus, QueueReason, VDevice};
    use dve_fp_api::message::{ToCp, ToFp};

    use super::*;
    use crate::control_path::ControlPathConfig;
    use crate::control_path::persist::discovered_devices;
    use crate::fabric::NodeLogin;
    use crate::store::{MemoryStore, MetadataStore};

    const BLOCK: usize = 512;
    const VOLUME_BLOCKS: u64 = 8192;

    use crate::store::SharedMemoryStore as SharedStore;

    /// A control path over four discovered devices (device `i` on engine port `i - 1`) with
    /// stand-ins for its workers and devices: every downcall is answered at once, except the
    /// kinds `hold` picks, which wait in `held` until the test lets them go.
    struct Bench {
        cp: ControlPath,
        store: SharedStore,
        lv: LvId,
        now: u64,
        blocks: BTreeMap<(DeviceId, u64), Vec<u8>>,
        completed: BTreeMap<u16, IoStatus>,
        hold: fn(&ToFp) -> bool,
        held: VecDeque<(WorkerId, ToFp)>,
        write_fill: u8,
        events: Vec<ControlEvent>,
    }

    fn hold_nothing(_: &ToFp) -> bool {
        false
    }

    fn hold_invalidations(m: &ToFp) -> bool {
        matches!(m, ToFp::RemoveMapping { .. })
    }

    fn hold_dispatches(m: &ToFp) -> bool {
        matches!(m, ToFp::DispatchIo(_))
    }

    fn hold_device_writes(m: &ToFp) -> bool {
        matches!(m, ToFp::DispatchIo(r) if matches!(r.op, DownstreamOp::Write { .. }))
    }

    impl Bench {
        /// A mirror `m` over devices 1, 2 and 3, exposed to host `Wwn(1)`.
        fn new() -> Bench {
            let mut store = MemoryStore::new();
            store.commit(discovered_devices(4, 100_000)).unwrap();
            let store = SharedStore::new(store);
            let mut bench = Bench::over(store);
            let layout = LayoutSpec::Mirror { sides: vec![DeviceId(1), DeviceId(2), DeviceId(3)] };
            bench.lv = bench.cp.create_volume("m", VOLUME_BLOCKS, layout).unwrap();
            bench.cp.expose(bench.lv, &[Wwn(1)]).unwrap();
            bench.settle();
            bench
        }

        /// An engine loaded from `store`, its devices logged in again.
        fn over(store: SharedStore) -> Bench {
            let mut cp = ControlPath::new(ControlPathConfig::new(1, 4, 2));
            cp.attach_store(Box::new(store.clone())).unwrap();
            let lv = cp.volume_named("m").unwrap_or(LvId(0));
            let mut bench = Bench {
                cp,
                store,
                lv,
                now: 1,
                blocks: BTreeMap::new(),
                completed: BTreeMap::new(),
                hold: hold_nothing,
                held: VecDeque::new(),
                write_fill: 0,
                events: Vec::new(),
            };
            for port in 0..4u16 {
                bench.log_in(port);
            }
            assert!((1..=4).all(|d| bench.cp.devices().get(DeviceId(d)).is_some_and(|d| d.online)));
            bench
        }

        /// The target on engine port `port` (device `port + 1`) logs in: a dead side on it
        /// starts resynchronizing.
        fn log_in(&mut self, port: u16) {
            let target = 0x2201 + u64::from(port);
            self.cp.target_ready(NodeLogin {
                fc_id: FcId::new(0x01_0100 + u32::from(port)).unwrap(),
                port: PortId(port),
                port_name: Wwn(target),
                node_name: Wwn(target - 0x200),
                fcp: true,
            });
            self.settle();
        }

        /// The same store, loaded by a new engine (this one is gone, as after a crash).
        fn restart(self) -> Bench {
            let blocks = self.blocks;
            let mut bench = Bench::over(self.store);
            bench.blocks = blocks;
            bench.tick();
            bench
        }

        fn upcall(&mut self, worker: WorkerId, message: ToCp) {
            self.now += 1_000;
            self.cp.handle_upcall(Timestamp(self.now), worker, message);
        }

        fn answer(&mut self, worker: WorkerId, message: ToFp) {
            let now = Timestamp(self.now);
            match message {
                ToFp::DispatchIo(request) => {
                    let (status, data) = self.device_io(request.device, &request.op);
                    self.upcall(worker, ToCp::DispatchIoComplete { tag: request.tag, status, data });
                }
                ToFp::RemoveMapping { req, .. } => {
                    self.upcall(worker, ToCp::InvalidationAck { req, worker, at: now })
                }
                ToFp::QueryPendingIos { req, .. } => {
                    self.upcall(worker, ToCp::PendingIos { req, worker, ios: Vec::new() })
                }
                ToFp::QueueIoComplete { io, status } => {
                    self.completed.insert(io.xid.0, status);
                }
                ToFp::GetData { req, io } => {
                    let result = Ok(Bytes::from(vec![self.write_fill; 64 * BLOCK]));
                    self.upcall(worker, ToCp::Data { req, io, result });
                }
                ToFp::AddMapping { req, .. }
                | ToFp::SetLunMask { req, .. }
                | ToFp::Expose { req, .. }
                | ToFp::PutData { req, .. } => self.upcall(worker, ToCp::Done { req, result: Ok(()) }),
                _ => {}
            }
        }

        /// Answer every downcall not held, until nothing is left.
        fn settle(&mut self) {
            for _ in 0..10_000 {
                let Some((worker, message)) = self.cp.poll_downcall() else {
                    self.events.extend(self.cp.take_events());
                    return;
                };
                if (self.hold)(&message) {
                    self.held.push_back((worker, message));
                } else {
                    self.answer(worker, message);
                }
            }
            panic!("the control path never settled");
        }

        /// Stop holding, answer what was held, and settle.
        fn release(&mut self) {
            self.hold = hold_nothing;
            while let Some((worker, message)) = self.held.pop_front() {
                self.answer(worker, message);
            }
            self.settle();
        }

        fn device_io(&mut self, device: DeviceId, op: &DownstreamOp) -> (IoStatus, Option<Bytes>) {
            match op {
                DownstreamOp::Command { cdb, .. } => match cdb.as_bytes().first() {
                    Some(0x9E) => {
                        let mut data = vec![0u8; 32];
                        data[..8].copy_from_slice(&99_999u64.to_be_bytes());
                        data[8..12].copy_from_slice(&512u32.to_be_bytes());
                        (IoStatus::GOOD, Some(Bytes::from(data)))
                    }
                    Some(0x00) => (IoStatus::GOOD, None),
                    _ => (IoStatus::check_condition(crate::control_path::manual_io::RETRY), None),
                },
                DownstreamOp::Read { lba, blocks } => {
                    let data: Vec<u8> = (*lba..*lba + u64::from(*blocks))
                        .flat_map(|b| self.blocks.get(&(device, b)).cloned().unwrap_or(vec![0; BLOCK]))
                        .collect();
                    (IoStatus::GOOD, Some(Bytes::from(data)))
                }
                DownstreamOp::Write { lba, data, .. } => {
                    for (i, block) in data.chunks(BLOCK).enumerate() {
                        self.blocks.insert((device, lba + i as u64), block.to_vec());
                    }
                    (IoStatus::GOOD, None)
                }
            }
        }

        /// A host write of `blocks` blocks of `fill` at `lba` that the fast path handed to
        /// the control path (exchange `xid`).
        fn host_write(&mut self, xid: u16, lba: u64, blocks: u32, fill: u8) {
            self.write_fill = fill;
            let io = IoTag { worker: WorkerId(0), xid: ExchangeId(xid), incarnation: 0 };
            let [_, _, _, _, l0, l1, l2, l3] = lba.to_be_bytes();
            let [n0, n1] = (blocks as u16).to_be_bytes();
            let request = HostIo {
                initiator: Wwn(1),
                initiator_fc_id: FcId::new(0x01_0001).unwrap(),
                vdevice: VDevice { exposure: ExposureId(1), lun: Lun(0) },
                lv: Some(self.lv),
                vseg: None,
                kind: IoKind::Write,
                lba,
                blocks,
                data_len: blocks * BLOCK as u32,
                cdb: Cdb::new(&[0x2A, 0, l0, l1, l2, l3, 0, n0, n1, 0]).unwrap(),
                received: Timestamp(self.now),
            };
            let reason = QueueReason { cause: FaultCause::SerializationConflict, failure: None };
            self.upcall(WorkerId(0), ToCp::QueueIo { io, request, reason });
            self.settle();
        }

        fn tick(&mut self) {
            self.now += 1_000_000;
            self.cp.tick(Timestamp(self.now));
            self.settle();
        }

        /// Blocks of `device` from `lba`, each reduced to its first byte.
        fn device_fill(&self, device: DeviceId, lba: u64, blocks: u64) -> Vec<u8> {
            (lba..lba + blocks).map(|b| self.blocks.get(&(device, b)).map_or(0, |d| d[0])).collect()
        }

        /// Blocks of volume block `lba` on each side, as the control path's layout places them.
        fn sides_at(&self, lba: u64, blocks: u64) -> Vec<Vec<u8>> {
            let record = &self.cp.volume(self.lv).unwrap().record;
            record.allocations.iter().map(|a| self.device_fill(a.device, a.lba + lba, blocks)).collect()
        }

        /// Blocks of `device` that volumes claim, as the registry holds them.
        fn claimed(&self, device: DeviceId) -> u64 {
            let d = self.cp.devices().get(device).unwrap();
            d.allocated - d.free_runs.iter().map(|r| r.blocks).sum::<u64>()
        }

        /// What an engine loaded from the store right now would hold: the volume's record and
        /// each device's claimed blocks.
        fn committed(&self) -> (crate::volume::VolumeRecord, Vec<u64>) {
            let image = self.store.0.lock().unwrap().snapshot();
            let mut cp = ControlPath::new(ControlPathConfig::new(1, 4, 2));
            cp.attach_store(Box::new(image)).unwrap();
            let record = cp.volume(self.lv).unwrap().record.clone();
            let claimed = (1..=4)
                .map(|d| {
                    let d = cp.devices().get(DeviceId(d)).unwrap();
                    d.allocated - d.free_runs.iter().map(|r| r.blocks).sum::<u64>()
                })
                .collect();
            (record, claimed)
        }
    }

    #[test]
    fn a_side_removed_under_a_write_keeps_the_write_on_the_sides_left_and_frees_its_claim_last() {
        let mut b = Bench::new();
        b.host_write(1, 0, 16, 0x11);
        assert_eq!(b.completed.get(&1), Some(&IoStatus::GOOD));
        assert_eq!(b.sides_at(0, 16), vec![vec![0x11; 16]; 3]);
        // A write whose legs are out on every side when side 0 goes.
        b.hold = hold_dispatches;
        b.host_write(2, 8, 16, 0x22);
        assert_eq!(b.held.len(), 3, "one leg per side is out");
        b.cp.remove_mirror_side(b.lv, 0).unwrap();
        b.settle();
        let record = b.cp.volume(b.lv).unwrap().record.clone();
        assert_eq!(record.layout, LayoutSpec::Mirror { sides: vec![DeviceId(2), DeviceId(3)] });
        assert_eq!(record.side_states, vec![SideState::Alive; 2]);
        // The workers let go, but the control path's own write still reaches device 1.
        assert_eq!(b.claimed(DeviceId(1)), VOLUME_BLOCKS, "claimed while a leg is out there");
        assert_eq!(b.committed().1[0], 0, "the store has it free already");
        b.release();
        assert_eq!(b.completed.get(&2), Some(&IoStatus::GOOD), "the write is acknowledged once");
        b.tick();
        assert_eq!(b.claimed(DeviceId(1)), 0, "free once nothing reaches it");
        // Every acknowledged write is on both sides left; later writes skip device 1.
        assert_eq!(b.sides_at(0, 24), vec![[vec![0x11; 8], vec![0x22; 16]].concat(); 2]);
        b.host_write(3, 0, 4, 0x33);
        assert_eq!(b.completed.get(&3), Some(&IoStatus::GOOD));
        assert_eq!(b.sides_at(0, 4), vec![vec![0x33; 4]; 2]);
        assert_eq!(b.device_fill(DeviceId(1), 0, 4), vec![0x11; 4], "device 1 is no side any more");
        assert!(b.events.iter().any(|e| matches!(e, ControlEvent::SideRemoved { side: 0, .. })));
    }

    #[test]
    fn a_device_that_answers_again_while_its_side_dies_has_the_side_resynchronized() {
        let mut b = Bench::new();
        b.hold = hold_invalidations;
        // A leg to device 3 went unanswered: the device is taken as failed, its side dies.
        b.cp.devices.get_mut(DeviceId(3)).unwrap().online = false;
        b.cp.side_failed(b.lv, 2);
        b.settle();
        assert!(!b.held.is_empty(), "the death waits for the workers");
        // Device 3 logs in again before the death is recorded.
        b.log_in(2);
        assert!(b.events.iter().any(|e| matches!(e, ControlEvent::DeviceOnline { device: DeviceId(3), .. })));
        b.release();
        b.host_write(1, 0, 8, 0x44);
        for _ in 0..5 {
            b.tick();
        }
        let record = b.cp.volume(b.lv).unwrap().record.clone();
        assert_eq!(record.side_states, vec![SideState::Alive; 3], "{:?}", b.events);
        assert!(b.cp.devices().get(DeviceId(3)).is_some_and(|d| d.online), "{:?}", b.events);
        assert_eq!(b.sides_at(0, 8), vec![vec![0x44; 8]; 3]);
        let resynced = b.events.iter().filter(|e| matches!(e, ControlEvent::ResyncDone { side: 2, .. }));
        assert_eq!(resynced.count(), 1);
    }

    #[test]
    fn a_side_whose_device_returns_during_another_sides_resync_is_resynchronized_after_it() {
        let mut b = Bench::new();
        b.cp.side_failed(b.lv, 1);
        b.settle();
        b.cp.side_failed(b.lv, 2);
        b.settle();
        b.host_write(1, 0, 8, 0x55);
        assert_eq!(b.sides_at(0, 8)[0], vec![0x55; 8]);
        // Device 2 returns: side 1's resync starts and its first copy is out when device 3
        // returns too.
        b.hold = hold_device_writes;
        b.log_in(1);
        assert_eq!(b.cp.resyncs().len(), 1);
        b.log_in(2);
        b.release();
        for _ in 0..10 {
            b.tick();
        }
        let record = b.cp.volume(b.lv).unwrap().record.clone();
        assert_eq!(record.side_states, vec![SideState::Alive; 3], "{:?}", b.events);
        assert_eq!(b.sides_at(0, 8), vec![vec![0x55; 8]; 3]);
    }

    #[test]
    fn a_removed_sides_claim_is_freed_only_after_every_worker_acknowledged() {
        let mut b = Bench::new();
        b.hold = hold_invalidations;
        b.cp.remove_mirror_side(b.lv, 1).unwrap();
        b.settle();
        assert!(!b.held.is_empty());
        // Committed at once: a restart would not find the side, and the claim is free there.
        let (record, claimed) = b.committed();
        assert_eq!(record.layout, LayoutSpec::Mirror { sides: vec![DeviceId(1), DeviceId(3)] });
        assert_eq!(record.allocations.len(), 2);
        assert_eq!(claimed, vec![VOLUME_BLOCKS, 0, VOLUME_BLOCKS, 0]);
        // Here the workers may still write under the old tables: the blocks stay claimed, so
        // no new volume can get them.
        b.tick();
        assert_eq!(b.claimed(DeviceId(2)), VOLUME_BLOCKS);
        let other =
            b.cp.create_volume("other", 100, LayoutSpec::Linear { devices: vec![DeviceId(2)] }).unwrap();
        assert!(b.cp.volume(other).unwrap().record.allocations[0].lba >= VOLUME_BLOCKS);
        b.release();
        assert_eq!(b.claimed(DeviceId(2)), 100, "only the new volume's claim is left");
    }

    #[test]
    fn a_restart_after_a_removal_reloads_the_layout_without_the_side() {
        let mut b = Bench::new();
        b.host_write(1, 0, 8, 0x44);
        b.cp.remove_mirror_side(b.lv, 0).unwrap();
        b.settle();
        b.cp.remove_mirror_side(b.lv, 0).unwrap();
        b.settle();
        let mut b = b.restart();
        let record = b.cp.volume(b.lv).unwrap().record.clone();
        assert_eq!(record.layout, LayoutSpec::Linear { devices: vec![DeviceId(3)] });
        assert!(record.side_states.is_empty());
        assert_eq!(record.allocations.len(), 1);
        assert_eq!(
            (b.claimed(DeviceId(1)), b.claimed(DeviceId(2)), b.claimed(DeviceId(3))),
            (0, 0, VOLUME_BLOCKS)
        );
        assert_eq!(b.sides_at(0, 8), vec![vec![0x44; 8]]);
        b.host_write(2, 0, 4, 0x55);
        assert_eq!(b.completed.get(&2), Some(&IoStatus::GOOD));
        assert_eq!(b.device_fill(DeviceId(2), 0, 4), vec![0x44; 4], "the removed side gets nothing");
    }

    #[test]
    fn refused_removals_say_why_and_change_nothing() {
        let mut b = Bench::new();
        let linear =
            b.cp.create_volume("lin", 100, LayoutSpec::Linear { devices: vec![DeviceId(4)] }).unwrap();
        b.settle();
        let before = b.committed();
        let live = b.cp.volume(b.lv).unwrap().record.clone();
        let cases = [
            (b.cp.remove_mirror_side(LvId(99), 0), "unknown volume"),
            (b.cp.remove_mirror_side(b.lv, 3), "has no side 3"),
            (b.cp.remove_mirror_side(linear, 0), "is not a mirror"),
        ];
        for (result, why) in cases {
            let error = result.expect_err(why);
            assert!(error.to_string().contains(why), "{error} should say {why:?}");
        }
        assert_eq!(b.committed(), before, "nothing committed");
        assert_eq!(b.cp.volume(b.lv).unwrap().record, live, "nothing changed in memory");
        // Sides 1 and 2 die: side 0 is the only current one.
        b.cp.side_failed(b.lv, 1);
        b.settle();
        b.cp.side_failed(b.lv, 2);
        b.settle();
        assert_eq!(
            b.cp.volume(b.lv).unwrap().record.side_states,
            vec![SideState::Alive, SideState::Dead, SideState::Dead]
        );
        let committed = b.committed();
        let error = b.cp.remove_mirror_side(b.lv, 0).expect_err("the last current side");
        assert!(
            matches!(&error, Error::FailedPrecondition(m) if m.contains("only side holding current data"))
        );
        assert_eq!(b.committed(), committed, "nothing committed");
        // A side is dying: refused until its death is recorded.
        let mut c = Bench::new();
        c.hold = hold_invalidations;
        c.cp.side_failed(c.lv, 2);
        c.settle();
        let error = c.cp.remove_mirror_side(c.lv, 1).expect_err("a side is dying");
        assert!(error.to_string().contains("a side of it is dying"), "{error}");
        c.release();
        // A resync of another side runs: refused, naming it.
        c.hold = hold_device_writes;
        c.log_in(2);
        assert_eq!(c.cp.resyncs().len(), 1);
        let error = c.cp.remove_mirror_side(c.lv, 1).expect_err("another side resyncs");
        assert!(error.to_string().contains("side 2 is resynchronizing"), "{error}");
        assert_eq!(c.cp.resyncs().len(), 1, "the resync goes on");
    }

    /// Side 2 died, missed a write, and came back: its resync's first copy step is out, its
    /// device write held.
    fn resync_step_out() -> Bench {
        let mut b = Bench::new();
        b.cp.side_failed(b.lv, 2);
        b.settle();
        b.host_write(1, 0, 8, 0x66);
        b.hold = hold_device_writes;
        b.log_in(2);
        for _ in 0..3 {
            b.tick();
        }
        assert!(!b.held.is_empty(), "a copy step is out");
        assert_eq!(b.cp.resyncs().len(), 1);
        b
    }

    #[test]
    fn a_side_being_resynchronized_is_removed_and_its_resync_ends() {
        // The resync's first copy is out when the side goes.
        let mut b = resync_step_out();
        b.cp.remove_mirror_side(b.lv, 2).unwrap();
        b.settle();
        assert!(b.cp.resyncs().is_empty(), "the resync ended with its side");
        assert_eq!(b.claimed(DeviceId(3)), VOLUME_BLOCKS, "the copy still writes there");
        b.release();
        b.tick();
        assert_eq!(b.claimed(DeviceId(3)), 0);
        let record = b.cp.volume(b.lv).unwrap().record.clone();
        assert_eq!(record.side_states, vec![SideState::Alive; 2]);
        // The copy's range lock went with it: writes run there again.
        b.host_write(2, 0, 8, 0x77);
        assert_eq!(b.completed.get(&2), Some(&IoStatus::GOOD));
        assert_eq!(b.sides_at(0, 8), vec![vec![0x77; 8]; 2]);
        // Nothing of the resync is left in the store.
        let b = b.restart();
        assert!(b.cp.resyncs().is_empty());
        assert_eq!(b.cp.volume(b.lv).unwrap().record.side_states, vec![SideState::Alive; 2]);
    }

    #[test]
    fn a_resynchronizing_side_that_dies_again_lets_its_copy_steps_range_lock_go() {
        // The resync's first copy is out when the side dies again (a host write failing on
        // it, say), not through the copy itself.
        let mut b = resync_step_out();
        b.cp.side_failed(b.lv, 2);
        b.settle();
        assert!(b.cp.resyncs().is_empty(), "the resync ended with its side's death");
        b.hold = hold_nothing;
        b.release();
        b.tick();
        // The step's range lock went with its copy: writes run there again.
        b.host_write(2, 0, 8, 0x77);
        assert_eq!(b.completed.get(&2), Some(&IoStatus::GOOD));
        assert_eq!(b.cp.volume(b.lv).unwrap().record.side_states[2], SideState::Dead);
    }

    #[test]
    fn a_dead_side_removed_leaves_the_other_dead_sides_age_list_in_place() {
        // Sides 0 and 1 die in turn; side 1 is removed; side 0 (now side 0 still) keeps its
        // list, and side 2 (now 1) keeps the live list, so only what side 0 missed is copied.
        let mut b = Bench::new();
        b.cp.side_failed(b.lv, 0);
        b.settle();
        b.cp.side_failed(b.lv, 1);
        b.settle();
        b.host_write(1, 4096, 8, 0x12);
        b.cp.remove_mirror_side(b.lv, 1).unwrap();
        b.settle();
        let record = b.cp.volume(b.lv).unwrap().record.clone();
        assert_eq!(record.layout, LayoutSpec::Mirror { sides: vec![DeviceId(1), DeviceId(3)] });
        assert_eq!(record.side_states, vec![SideState::Dead, SideState::Alive]);
        // Writes still stamp the live side's ages after the removal.
        b.host_write(2, 0, 8, 0x13);
        assert_eq!(b.completed.get(&2), Some(&IoStatus::GOOD));
        // The restarted engine finds side 0's device again and copies what it missed.
        let mut b = b.restart();
        for _ in 0..20 {
            b.tick();
        }
        let done: Vec<u64> = b
            .events
            .iter()
            .filter_map(|e| match e {
                ControlEvent::ResyncDone { side: 0, extents_copied, .. } => Some(*extents_copied),
                _ => None,
            })
            .collect();
        // 8192 blocks in 2048-block age extents: two were written while side 0 was dead,
        // one before the removal and one after.
        assert_eq!(done, vec![2], "{:?}", b.events);
        assert_eq!(b.sides_at(0, 8), vec![vec![0x13; 8]; 2]);
        assert_eq!(b.sides_at(4096, 8), vec![vec![0x12; 8]; 2]);
    }

    proptest::proptest! {
        /// Removing sides one after another renumbers the age lists like removing elements
        /// of a vector: each side left keeps its own list (told apart by a marker age), and a
        /// mirror left with one side keeps none.
        #[test]
        fn age_lists_follow_their_sides_through_removals(
            sides in 2usize..=8,
            has_list in proptest::collection::vec(proptest::bool::ANY, 8),
            removals in proptest::collection::vec(0usize..8, 1..8),
        ) {
            use dve_fp_api::ids::{EngineId, VsegId};
            use dve_fp_api::mapping::{Age, AgeList};
            let segments = [VsegId(1 << 12), VsegId((1 << 12) | 1)];
            let mut work = super::super::mirror::MirrorWork::default();
            // The model: per side, the marker of its list (if it has one).
            let mut model: Vec<Option<u32>> = (0..sides).map(|s| has_list[s].then_some(s as u32 + 1)).collect();
            for (s, marker) in model.iter().enumerate() {
                if let Some(m) = marker {
                    for seg in segments {
                        let mut list = AgeList::new(4096, 1024, Age { generation: 0, engine: EngineId(1) }).unwrap();
                        list.set(0, Age { generation: *m, engine: EngineId(1) }).unwrap();
                        work.insert_ages_for_test(seg, s, list);
                    }
                }
            }
            for pick in removals {
                if model.len() < 2 {
                    break;
                }
                let side = pick % model.len();
                model.remove(side);
                let still_mirror = model.len() > 1;
                work.side_removed(LvId(1), &segments, side, still_mirror);
                if !still_mirror {
                    model.clear();
                }
                for seg in segments {
                    let got: Vec<Option<u32>> = (0..model.len())
                        .map(|s| work.ages_for_test(seg, s).map(|l| l.get(0).unwrap().generation))
                        .collect();
                    proptest::prop_assert_eq!(&got, &model);
                    proptest::prop_assert_eq!(work.ages_for_test_count(seg), model.iter().flatten().count());
                }
            }
        }
    }
}
