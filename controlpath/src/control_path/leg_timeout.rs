//! Downstream legs that timed out on a device that still answers. A leg nobody answered
//! first has its device's path tested (`multipath`, single-path devices included); when the
//! active path answers TEST UNIT READY, a one-block read probe follows on the same device to
//! see whether it also does I/O. Either way the timeout was most likely a frame lost on a
//! link, so no side or device is blamed: a read is redone by the control path, a write goes
//! back to the host with a retryable status.
//!
//! A write to a mirror whose leg timed out may or may not have landed on that side while the
//! other sides have the new data; if the host never wrote the range again, balanced reads
//! could return different data from different sides. Before the host hears RETRY, the range
//! is therefore reconciled (seed 003's term for copying one side onto the others): under a
//! range lock (the same revocation, drain of fast-path writes and QUEUE of misses that the
//! control path's own mirror writes and resync steps take), a block copy reads the range
//! from a live side other than the suspect one and writes it to every other writable side.
//! A copy that fails is tried again (after a path test of the device when a leg went
//! unanswered: a device gone is then found at once, and a copy sent while it was gone does
//! not count against it once it is back); one that keeps failing declares dead the side of
//! the leg that failed.
//! A write whose leg met a dead path is reconciled the same way once the device's path is
//! switched (`multipath`), since its leg may or may not have landed either, and so is a write
//! the host aborted after its legs were sent (`ToCp::WriteAborted`): no side is suspect then,
//! and no host I/O waits for the copy.
//!
//! A disk that hangs on I/O only answers TEST UNIT READY but not the probe: the timeouts of
//! a device count until a probe is answered, and `leg_timeout_limit` of them in a row
//! (within `leg_timeout_window_ns`) treat the device as failed, as an unanswered test does.

use core::ops::Range;
use std::collections::{BTreeMap, VecDeque};

use dve_fp_api::frame::Frame;
use dve_fp_api::ids::{DeviceId, IoTag, LvId, PortId, VsegId};
use dve_fp_api::io::{DownstreamOp, DownstreamRequest, HostIo, IoKind, IoStatus, QueueReason};
use dve_fp_api::mapping::{RedirectIndex, SideState, StorageDescriptor};
use dve_fp_api::message::ToFp;

use super::block_copy::{CopyFailure, CopyOwner};
use super::manual_io::RETRY;
use super::mirror::side_legs;
use super::multipath::{PathVerdict, PathWaiter, path_answered};
use super::revocation::AfterRevocation;
use super::{ControlEvent, ControlPath, DispatchPurpose};
use crate::volume::LayoutSpec;

/// How many times a reconciling copy of one range is tried before the suspect side is
/// declared dead (a copy read can itself lose a data frame on a lossy link).
const RECONCILE_ATTEMPTS: u32 = 3;

/// Counters of leg timeouts whose device answered its path test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LegTimeoutCounters {
    /// I/O with a timed-out leg whose device answered: redone (reads, the control path's
    /// own I/O) or returned for a retry (fast-path writes), no side or device blamed.
    pub transient: u64,
    /// Read probes sent after a path test the device answered.
    pub io_probes: u64,
    /// Read probes the device did not answer.
    pub io_probes_unanswered: u64,
    /// Devices treated as failed after `leg_timeout_limit` timeouts in a row.
    pub unresponsive_devices: u64,
    /// Mirror ranges copied from a live side onto the others after a write leg timed out or
    /// a host aborted a write.
    pub ranges_reconciled: u64,
    /// Mirror writes aborted by their host after their legs were sent, whose ranges were
    /// reconciled.
    pub aborted_writes_reconciled: u64,
    /// Reconciling copies that failed (tried again, then the suspect side declared dead).
    pub reconcile_failures: u64,
}

/// One step of a reconciliation: a range under its lock, being copied.
#[derive(Clone, Debug)]
struct ReconcileStep {
    /// The revocation holding the range lock.
    lock: u64,
    vseg: VsegId,
    blocks: Range<u64>,
    /// The block copy, once the range is fenced (none while a path test decides what a copy
    /// with an unanswered leg means).
    copy: Option<u64>,
    /// When the current copy was sent (a path switched since needs no test).
    sent_at: u64,
    /// Copies tried so far.
    attempts: u32,
}

/// A fast-path write whose leg on a mirror side timed out, or that its host aborted: its
/// range is made the same on every side (before the host hears RETRY, for a timeout).
#[derive(Clone, Debug)]
struct Reconcile {
    lv: LvId,
    /// The side whose leg timed out (none for an aborted write: any leg may have landed).
    suspect: Option<usize>,
    /// The host I/O answered once every piece is copied (none for an aborted write).
    io: Option<IoTag>,
    /// An aborted write's ABTS and the port it came in on, answered once every piece is
    /// copied: a host that has its BA_ACC may read the range and must find one value there.
    abts: Option<(PortId, Frame)>,
    /// Pieces (segment, segment blocks) not started yet.
    pieces: VecDeque<(VsegId, Range<u64>)>,
    step: Option<ReconcileStep>,
}

/// Leg-timeout bookkeeping of the control path.
#[derive(Clone, Debug, Default)]
pub(super) struct LegTimeouts {
    /// Per device: timeouts in a row that no probe answered since, and when the last came.
    in_a_row: BTreeMap<DeviceId, (u32, u64)>,
    /// Reconciliations in progress, by id.
    reconciles: BTreeMap<u64, Reconcile>,
}

impl LegTimeouts {
    /// Whether a range of `lv` is being reconciled.
    pub(super) fn involves(&self, lv: LvId) -> bool {
        self.reconciles.values().any(|r| r.lv == lv)
    }
}

impl ControlPath {
    /// The active path of `device` answered its path test after a leg timed out: count the
    /// timeout and read one block to see whether the device does I/O too.
    pub(super) fn probe_device_io(&mut self, device: DeviceId) {
        let (now, window) = (self.now, self.config.leg_timeout_window_ns);
        let entry = self.leg_timeouts.in_a_row.entry(device).or_insert((0, now));
        if now.saturating_sub(entry.1) > window {
            entry.0 = 0;
        }
        *entry = (entry.0.saturating_add(1), now);
        self.counters.leg_timeouts.io_probes += 1;
        let worker = self.worker_for_device(device);
        let tag = self.dispatch_tag(DispatchPurpose::IoProbe { device });
        let op = DownstreamOp::Read { lba: 0, blocks: 1 };
        self.send(worker, ToFp::DispatchIo(DownstreamRequest { tag, device, op }));
    }

    /// The read probe of `device` completed: any answer clears its timeouts (they were lost
    /// frames); none counts against it, and too many in a row fail it.
    pub(super) fn io_probed(&mut self, device: DeviceId, status: &IoStatus) {
        if path_answered(status) {
            self.leg_timeouts.in_a_row.remove(&device);
            self.path_test_settled(device, PathVerdict::Transient);
            return;
        }
        self.counters.leg_timeouts.io_probes_unanswered += 1;
        let timeouts = self.leg_timeouts.in_a_row.get(&device).map_or(0, |(n, _)| *n);
        if timeouts >= self.config.leg_timeout_limit.max(1) {
            self.leg_timeouts.in_a_row.remove(&device);
            self.counters.leg_timeouts.unresponsive_devices += 1;
            self.events.push(ControlEvent::DeviceUnresponsive { device, timeouts });
            self.path_test_settled(device, PathVerdict::DeviceFault);
        } else {
            self.path_test_settled(device, PathVerdict::Transient);
        }
    }

    /// A fast-path I/O's leg timed out on a device that answered: a read is redone here; a
    /// write is returned for a retry, after reconciling its range if it went to a mirror.
    pub(super) fn transient_leg_timeout(&mut self, io: IoTag, request: HostIo, reason: QueueReason) {
        self.counters.leg_timeouts.transient += 1;
        if request.kind == IoKind::Read {
            self.start_manual(io, request);
            return;
        }
        self.retry_timed_out_write(io, request, reason);
    }

    /// A fast-path write whose leg got no answer, on a device that is reached (it answered,
    /// or its path was switched): the host is told to retry, after the range is reconciled
    /// when the leg was a mirror side's (it may or may not have landed there).
    pub(super) fn retry_timed_out_write(&mut self, io: IoTag, request: HostIo, reason: QueueReason) {
        self.journaled_write_failed(&request);
        let suspect = reason
            .failure
            .zip(request.lv)
            .and_then(|(failure, lv)| self.side_of(lv, failure.device).map(|side| (lv, side)));
        match suspect {
            Some((lv, side)) => self.start_reconcile(lv, Some(side), Some(io), None, &request),
            None => self.complete_io(io, IoStatus::check_condition(RETRY)),
        }
    }

    /// A host aborted a fast-path write after its legs were sent (`ToCp::WriteAborted`):
    /// some legs may have landed and others not. A journaled volume's replica takes those
    /// blocks from the primary; a mirror's range is reconciled, so balanced reads cannot
    /// return the new data from one side and the old from another.
    pub(super) fn write_aborted(&mut self, request: &HostIo, port: PortId, abts: Frame) {
        self.journaled_write_failed(request);
        let mirrored = request.lv.filter(|lv| {
            self.volumes.get(lv).is_some_and(|v| {
                matches!(v.record.layout, LayoutSpec::Mirror { .. } | LayoutSpec::Raid10 { .. })
            })
        });
        match mirrored.filter(|_| request.kind == IoKind::Write) {
            Some(lv) => {
                self.counters.leg_timeouts.aborted_writes_reconciled += 1;
                self.start_reconcile(lv, None, None, Some((port, abts)), request);
            }
            None => self.control_frame(port, &abts),
        }
    }

    fn start_reconcile(
        &mut self,
        lv: LvId,
        suspect: Option<usize>,
        io: Option<IoTag>,
        abts: Option<(PortId, Frame)>,
        request: &HostIo,
    ) {
        let Some(v) = self.volumes.get(&lv) else {
            if let Some(io) = io {
                self.complete_io(io, IoStatus::check_condition(RETRY));
            }
            if let Some((port, abts)) = abts {
                self.control_frame(port, &abts);
            }
            return;
        };
        let pieces = v
            .pieces(request.lba, u64::from(request.blocks))
            .into_iter()
            .map(|(vseg, blocks, _)| (vseg, blocks))
            .collect();
        let id = self.op_id();
        self.leg_timeouts.reconciles.insert(id, Reconcile { lv, suspect, io, abts, pieces, step: None });
        self.next_reconcile_step(id);
    }

    /// Take the lock over the next piece, or answer the host when every piece is done.
    fn next_reconcile_step(&mut self, id: u64) {
        let Some(r) = self.leg_timeouts.reconciles.get(&id) else { return };
        if r.step.is_some() {
            return;
        }
        let Some((vseg, blocks)) = r.pieces.front().cloned() else {
            let Some(done) = self.leg_timeouts.reconciles.remove(&id) else { return };
            if let Some(io) = done.io {
                self.complete_io(io, IoStatus::check_condition(RETRY));
            }
            if let Some((port, abts)) = done.abts {
                self.control_frame(port, &abts);
            }
            return;
        };
        // Never under a range another operation holds (a write, a resync step, a side's
        // death): tried again when a lock is released.
        if self.is_locked(vseg, &blocks) {
            return;
        }
        if let Some(r) = self.leg_timeouts.reconciles.get_mut(&id) {
            r.pieces.pop_front();
        }
        let lock = self.revoke_writes_in(vseg, blocks.clone(), true, AfterRevocation::Reconcile(id));
        if let Some(r) = self.leg_timeouts.reconciles.get_mut(&id) {
            r.step = Some(ReconcileStep { lock, vseg, blocks, copy: None, sent_at: 0, attempts: 0 });
        }
    }

    /// A range lock came off: reconciliations waiting for one try again.
    pub(super) fn reconcile_lock_released(&mut self) {
        let waiting: Vec<u64> = self
            .leg_timeouts
            .reconciles
            .iter()
            .filter(|(_, r)| r.step.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.next_reconcile_step(id);
        }
    }

    /// The range is fenced (no fast-path write in flight there, none can start): copy it.
    pub(super) fn reconcile_revoked(&mut self, id: u64) {
        let Some(r) = self.leg_timeouts.reconciles.get(&id) else { return };
        let (lv, suspect) = (r.lv, r.suspect);
        let Some(step) = r.step.as_ref() else { return };
        let (vseg, blocks) = (step.vseg, step.blocks.clone());
        let Some(v) = self.volumes.get(&lv) else { return self.end_reconcile_step(id) };
        let states = v.record.side_states.clone();
        let block_size = v.record.block_size as usize;
        let sides = v.segment(vseg).and_then(|map| match map.redirects().get(RedirectIndex(0)) {
            Some(entry) => match &entry.descriptor {
                StorageDescriptor::Mirror(m) => Some(m.sides().to_vec()),
                _ => None,
            },
            None => None,
        });
        let Some(sides) = sides else { return self.end_reconcile_step(id) };
        // The source is a live side other than the suspect one; every other side that takes
        // writes gets its copy, so all of them hold the same blocks whichever legs landed.
        let state = |i: usize| states.get(i).copied().unwrap_or(SideState::Dead);
        let Some(source) = (0..sides.len()).find(|i| Some(*i) != suspect && state(*i) == SideState::Alive)
        else {
            // No other copy to agree with (the mirror is degraded to the suspect side).
            return self.end_reconcile_step(id);
        };
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        side_legs(&sides[source].layout, blocks.clone(), &mut reads);
        for (i, side) in sides.iter().enumerate() {
            if i != source && state(i).writable() {
                side_legs(&side.layout, blocks.clone(), &mut writes);
            }
        }
        if writes.is_empty() {
            return self.end_reconcile_step(id);
        }
        let copy = self.start_block_copy(
            CopyOwner::Reconcile { id },
            reads,
            writes,
            blocks.end - blocks.start,
            block_size,
        );
        let now = self.now;
        if let Some(step) = self.leg_timeouts.reconciles.get_mut(&id).and_then(|r| r.step.as_mut()) {
            step.copy = Some(copy);
            step.sent_at = now;
            step.attempts += 1;
        }
    }

    /// The reconciling copy `copy` ended; if it failed, `failed_device` is its first leg's
    /// device that failed and `failure` the most telling of its legs' failures.
    pub(super) fn reconcile_copied(
        &mut self,
        id: u64,
        copy: u64,
        copied: bool,
        failed_device: Option<DeviceId>,
        failure: Option<CopyFailure>,
    ) {
        let Some(r) = self.leg_timeouts.reconciles.get_mut(&id) else { return };
        let (lv, suspect) = (r.lv, r.suspect);
        let Some(step) = r.step.as_mut().filter(|s| s.copy == Some(copy)) else { return };
        if copied {
            self.counters.leg_timeouts.ranges_reconciled += 1;
            self.end_reconcile_step(id);
            return;
        }
        self.counters.leg_timeouts.reconcile_failures += 1;
        if step.attempts < RECONCILE_ATTEMPTS {
            // Still under the lock: nothing was written to the range meanwhile. A leg nobody
            // answered has its device's path tested first: a copy sent to a device that was
            // gone says nothing about it once it is back, and a gone one is found at once.
            if let Some(CopyFailure::Unanswered(device)) = failure {
                step.copy = None;
                let sent_at = step.sent_at;
                self.path_suspect(device, sent_at, PathWaiter::Reconcile { id, device });
            } else {
                self.reconcile_revoked(id);
            }
            return;
        }
        self.reconcile_failed(id, lv, failed_device.and_then(|d| self.side_of(lv, d)).or(suspect));
    }

    /// The path test after a reconciling copy's leg to `device` went unanswered is settled:
    /// the copy is tried again, unless no path reaches the device.
    pub(super) fn reconcile_path_checked(&mut self, id: u64, device: DeviceId, verdict: PathVerdict) {
        let Some(r) = self.leg_timeouts.reconciles.get(&id) else { return };
        let (lv, suspect) = (r.lv, r.suspect);
        if r.step.as_ref().is_none_or(|s| s.copy.is_some()) {
            return;
        }
        match verdict {
            PathVerdict::Transient | PathVerdict::Switched => self.reconcile_revoked(id),
            PathVerdict::DeviceFault => {
                let side = self.side_of(lv, device).or(suspect);
                self.reconcile_failed(id, lv, side);
            }
        }
    }

    /// The range cannot be made the same on every side: `blamed` goes (if no side can be
    /// blamed, the range is left as it is and counted in `reconcile_failures`).
    fn reconcile_failed(&mut self, id: u64, lv: LvId, blamed: Option<usize>) {
        // The sides cannot be made the same: the side that keeps failing goes, before the
        // host's status (the death procedure fences the volume first, as for a failed write).
        // That is the side of the leg that failed, the source or another side written:
        // blaming the suspect for them would declare a good side dead for a side that is gone
        // (and, at the next timeout on another good side, that one too, leaving the volume
        // on the side that cannot be read).
        if let Some(side) = blamed {
            self.side_failed(lv, side);
        }
        self.end_reconcile_step(id);
    }

    /// The current step is over (copied, or nothing to copy): release its lock, go on.
    fn end_reconcile_step(&mut self, id: u64) {
        let lock = self.leg_timeouts.reconciles.get_mut(&id).and_then(|r| r.step.take()).map(|s| s.lock);
        if let Some(lock) = lock {
            // Releasing retries every lock waiter, this reconciliation's next piece included.
            self.release_lock(lock);
        }
        self.next_reconcile_step(id);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeSet;

    use bytes::Bytes;
    use dve_fp_api::fault::FaultCause;
    use dve_fp_api::ids::{ExchangeId, ExposureId, FcId, Lun, PortId, Timestamp, WorkerId, Wwn};
    use dve_fp_api::io::{Cdb, DownstreamFailure, ScsiStatus, Sense, VDevice};
    use dve_fp_api::message::ToCp;
    use dve_wire::bls::BlsRepr;
    use dve_wire::fc::{fc_type, r_ctl};

    use super::*;
    use crate::control_path::ControlPathConfig;
    use crate::control_path::persist::discovered_devices;
    use crate::fabric::NodeLogin;
    use crate::store::{MemoryStore, MetadataStore};
    use crate::volume::LayoutSpec;

    const BLOCK: usize = 512;
    /// What the worker reports for a downstream I/O nobody answered before its timeout.
    const NO_ANSWER: IoStatus = IoStatus { status: ScsiStatus::TASK_ABORTED, sense: None, residual: 0 };

    /// How a simulated device treats the control path's commands.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub(in crate::control_path) enum Health {
        Healthy,
        /// Answers TEST UNIT READY, never a read or a write.
        HungOnIo,
        /// Answers nothing.
        Dead,
        /// Answers every read GOOD with only its first half of the data (the rest lost on the
        /// way), everything else as a healthy device.
        LosesReadData,
    }

    /// What happens to one read or write of a device, injected for the next one.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub(in crate::control_path) enum Mishap {
        /// A read answered GOOD with half its data (a data frame lost on the way).
        LostData,
        /// Nobody answers (a lost frame): the worker reports TASK ABORTED.
        NoAnswer,
        /// The device answers CHECK CONDITION, MEDIUM ERROR.
        MediumError,
    }

    /// A control path with two single-path devices mirrored as one volume, and stand-ins for
    /// its workers (answering every downcall at once) and for the devices (blocks in memory).
    pub(in crate::control_path) struct Bench {
        pub(in crate::control_path) cp: ControlPath,
        pub(in crate::control_path) lv: LvId,
        now: u64,
        blocks: BTreeMap<(DeviceId, u64), Vec<u8>>,
        pub(in crate::control_path) health: BTreeMap<DeviceId, Health>,
        /// Per device and kind (`true` for writes): what happens to its next reads or writes.
        mishaps: BTreeMap<(DeviceId, bool), VecDeque<Mishap>>,
        /// Host I/O statuses the control path sent, by exchange.
        pub(in crate::control_path) completed: BTreeMap<u16, IoStatus>,
        /// Devices a TEST UNIT READY was sent to.
        pub(in crate::control_path) tested: BTreeSet<DeviceId>,
        /// Engine ports whose cable loses every frame (a dead path).
        dead_ports: BTreeSet<PortId>,
        /// The VPD 0x83 page the next identification INQUIRY is answered with, if any.
        identity: Option<Vec<u8>>,
        /// The byte every block of a host write's data holds, once asked for (`GetData`).
        write_fill: u8,
        pub(in crate::control_path) events: Vec<ControlEvent>,
        /// Writes the devices carried out so far.
        device_writes: usize,
        /// Frames the control path sent through a worker, each with the number of device
        /// writes carried out before it.
        sent: Vec<(usize, Vec<u8>)>,
    }

    impl Bench {
        pub(in crate::control_path) fn new() -> Bench {
            Bench::with_paths_to_side_1(1)
        }

        /// As `new`, with `paths` paths to device 2 (side 1), on ports 1 onwards: its ports
        /// show one unit designator, so they become paths of one device.
        fn with_paths_to_side_1(paths: u16) -> Bench {
            Bench::build(2, paths, true)
        }

        /// A three-way mirror of devices 1, 2 and 3, each with one path (ports 0, 1, 2).
        pub(in crate::control_path) fn three_way() -> Bench {
            Bench::build(3, 2, false)
        }

        /// A mirror of `devices` devices over ports 0 to `paths`: port 0 is device 1's; with
        /// `shared` the other ports are paths to device 2 (one unit designator), else port k
        /// is device k + 1's.
        fn build(devices: u32, paths: u16, shared: bool) -> Bench {
            let mut store = MemoryStore::new();
            store.commit(discovered_devices(devices, 100_000)).unwrap();
            let mut cp = ControlPath::new(ControlPathConfig::new(1, 1 + paths, 2));
            cp.attach_store(Box::new(store)).unwrap();
            let mut bench = Bench {
                cp,
                lv: LvId(0),
                now: 1,
                blocks: BTreeMap::new(),
                health: BTreeMap::new(),
                mishaps: BTreeMap::new(),
                completed: BTreeMap::new(),
                tested: BTreeSet::new(),
                dead_ports: BTreeSet::new(),
                identity: None,
                write_fill: 0,
                events: Vec::new(),
                device_writes: 0,
                sent: Vec::new(),
            };
            // Each target port logs in on its own engine port: identified, then (for a new
            // device) its capacity.
            for port in 0..=paths {
                bench.identity = (shared && port > 0 && paths > 1)
                    .then(|| unit_page(&0x6000_0000_0000_0002u64.to_be_bytes()));
                bench.log_in(port);
            }
            let paths_of = |d: u32| bench.cp.devices().get(DeviceId(d)).map(|d| (d.online, d.paths.len()));
            let side_1_paths = if shared { usize::from(paths) } else { 1 };
            assert_eq!((paths_of(1), paths_of(2)), (Some((true, 1)), Some((true, side_1_paths))));
            let layout = LayoutSpec::Mirror { sides: (1..=devices).map(DeviceId).collect() };
            bench.lv = bench.cp.create_volume("m", 4096, layout).unwrap();
            bench.cp.expose(bench.lv, &[Wwn(1)]).unwrap();
            bench.settle();
            bench
        }

        /// The target port on engine port `port` logs in (port 0 is device 1's, the others
        /// device 2's).
        fn log_in(&mut self, port: u16) {
            let target = if port == 0 { 0x2201 } else { 0x2202 + u64::from(port) - 1 };
            self.cp.target_ready(NodeLogin {
                fc_id: FcId::new(0x01_0100 + u32::from(port)).unwrap(),
                port: PortId(port),
                port_name: Wwn(target),
                node_name: Wwn(target - 0x200),
                fcp: true,
            });
            self.settle();
        }

        /// Device 2 (side 1) answers again and logs in: a dead side 1 is resynchronized.
        pub(in crate::control_path) fn side_1_returns(&mut self) {
            self.log_in(1);
        }

        /// The device on engine port `port` answers again and logs in (on the three-way
        /// mirror, side `port` returns).
        pub(in crate::control_path) fn device_returns(&mut self, port: u16) {
            self.log_in(port);
        }

        /// The engine port a dispatch to `id` (a device, or a path's probe id) leaves by.
        fn port_of(&self, id: DeviceId) -> Option<PortId> {
            match self.cp.devices().by_probe(id) {
                Some((device, index)) => self.cp.devices().get(device).map(|d| d.paths[index].port),
                None => self.cp.devices().get(id).and_then(|d| d.path()).map(|(port, _)| port),
            }
        }

        fn device_of(&self, id: DeviceId) -> DeviceId {
            self.cp.devices().by_probe(id).map_or(id, |(device, _)| device)
        }

        /// The next read (`write` false) or write of `device` meets `mishap`.
        pub(in crate::control_path) fn mishap(&mut self, device: DeviceId, write: bool, mishap: Mishap) {
            self.mishaps.entry((device, write)).or_default().push_back(mishap);
        }

        fn health(&self, device: DeviceId) -> Health {
            self.health.get(&device).copied().unwrap_or(Health::Healthy)
        }

        /// The device blocks of `blocks` volume blocks from `lba` on mirror side `side`.
        pub(in crate::control_path) fn side_blocks(&self, side: usize, lba: u64, blocks: u64) -> Vec<u8> {
            let a = self.cp.volume(self.lv).unwrap().record.allocations[side];
            (a.lba + lba..a.lba + lba + blocks)
                .flat_map(|b| self.blocks.get(&(a.device, b)).cloned().unwrap_or(vec![0; BLOCK]))
                .collect()
        }

        pub(in crate::control_path) fn put_side_blocks(
            &mut self,
            side: usize,
            lba: u64,
            fill: u8,
            blocks: u64,
        ) {
            let a = self.cp.volume(self.lv).unwrap().record.allocations[side];
            for b in a.lba + lba..a.lba + lba + blocks {
                self.blocks.insert((a.device, b), vec![fill; BLOCK]);
            }
        }

        fn upcall(&mut self, worker: WorkerId, message: ToCp) {
            self.now += 1_000;
            self.cp.handle_upcall(Timestamp(self.now), worker, message);
        }

        /// Answer every downcall, as workers and devices would, until nothing is left.
        pub(in crate::control_path) fn settle(&mut self) {
            for _ in 0..10_000 {
                let Some((worker, message)) = self.cp.poll_downcall() else {
                    self.events.extend(self.cp.take_events());
                    return;
                };
                let now = Timestamp(self.now);
                match message {
                    ToFp::DispatchIo(request) => {
                        let (status, data) = self.device_io(&request);
                        let tag = request.tag;
                        self.upcall(worker, ToCp::DispatchIoComplete { tag, status, data });
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
                        let result = Ok(Bytes::from(vec![self.write_fill; 4096 * BLOCK]));
                        self.upcall(worker, ToCp::Data { req, io, result });
                    }
                    ToFp::AddMapping { req, .. }
                    | ToFp::SetLunMask { req, .. }
                    | ToFp::Expose { req, .. }
                    | ToFp::PutData { req, .. } => self.upcall(worker, ToCp::Done { req, result: Ok(()) }),
                    ToFp::SendFrame { frame, .. } => {
                        let mut bytes = Vec::new();
                        frame.write_to(&mut bytes);
                        self.sent.push((self.device_writes, bytes));
                    }
                    _ => {}
                }
            }
            panic!("the control path never settled");
        }

        fn device_io(&mut self, request: &DownstreamRequest) -> (IoStatus, Option<Bytes>) {
            let device = self.device_of(request.device);
            let dead_path = self.port_of(request.device).is_some_and(|p| self.dead_ports.contains(&p));
            let health = if dead_path { Health::Dead } else { self.health(device) };
            match &request.op {
                DownstreamOp::Command { cdb, .. } => {
                    let cdb = cdb.as_bytes();
                    if health == Health::Dead {
                        return (NO_ANSWER, None);
                    }
                    match cdb.first() {
                        Some(0x00) => {
                            self.tested.insert(device);
                            (IoStatus::GOOD, None)
                        }
                        // READ CAPACITY(16): last block 99,999 of 512 bytes.
                        Some(0x9E) => {
                            let mut data = vec![0u8; 32];
                            data[..8].copy_from_slice(&99_999u64.to_be_bytes());
                            data[8..12].copy_from_slice(&512u32.to_be_bytes());
                            (IoStatus::GOOD, Some(Bytes::from(data)))
                        }
                        // The unit's designator, or none: the device is then known by its
                        // port name.
                        _ => match self.identity.take() {
                            Some(page) => (IoStatus::GOOD, Some(Bytes::from(page))),
                            None => (IoStatus::check_condition(RETRY), None),
                        },
                    }
                }
                _ if matches!(health, Health::HungOnIo | Health::Dead) => (NO_ANSWER, None),
                op => {
                    let write = matches!(op, DownstreamOp::Write { .. });
                    match self.mishaps.get_mut(&(device, write)).and_then(VecDeque::pop_front) {
                        Some(Mishap::NoAnswer) => (NO_ANSWER, None),
                        Some(Mishap::MediumError) => {
                            (IoStatus::check_condition(Sense { key: 0x03, asc: 0x11, ascq: 0x00 }), None)
                        }
                        Some(Mishap::LostData) => self.device_rw(device, op, true),
                        None => self.device_rw(device, op, health == Health::LosesReadData),
                    }
                }
            }
        }

        /// A read or write that reaches `device`; a read's data cut in half with `lose_data`.
        fn device_rw(
            &mut self,
            device: DeviceId,
            op: &DownstreamOp,
            lose_data: bool,
        ) -> (IoStatus, Option<Bytes>) {
            match op {
                DownstreamOp::Read { lba, blocks } => {
                    let mut data: Vec<u8> = (*lba..*lba + u64::from(*blocks))
                        .flat_map(|b| self.blocks.get(&(device, b)).cloned().unwrap_or(vec![0; BLOCK]))
                        .collect();
                    if lose_data {
                        data.truncate(data.len() / 2);
                    }
                    (IoStatus::GOOD, Some(Bytes::from(data)))
                }
                DownstreamOp::Write { lba, data, .. } => {
                    self.device_writes += 1;
                    for (i, block) in data.chunks(BLOCK).enumerate() {
                        self.blocks.insert((device, lba + i as u64), block.to_vec());
                    }
                    (IoStatus::GOOD, None)
                }
                DownstreamOp::Command { .. } => (IoStatus::GOOD, None),
            }
        }

        /// A fast-path host I/O of `blocks` blocks at `lba` whose leg to `device` got no
        /// answer reaches the control path (exchange `xid`).
        fn leg_timed_out(&mut self, xid: u16, kind: IoKind, lba: u64, blocks: u32, device: DeviceId) {
            let side = self.cp.side_of(self.lv, device).unwrap_or(0) as u8;
            let failure = Some(DownstreamFailure { device, status: None, leg: side });
            let reason = QueueReason { cause: FaultCause::DownstreamError, failure };
            self.host_io(self.lv, xid, kind, lba, blocks, reason);
        }

        /// A host write of `blocks` blocks of `fill` at `lba` of `lv` that met fault-on-write
        /// on the fast path (exchange `xid`).
        pub(in crate::control_path) fn host_write(
            &mut self,
            lv: LvId,
            xid: u16,
            lba: u64,
            blocks: u32,
            fill: u8,
        ) {
            self.write_fill = fill;
            let reason = QueueReason { cause: FaultCause::Permission, failure: None };
            self.host_io(lv, xid, IoKind::Write, lba, blocks, reason);
        }

        /// A fast-path host I/O of `lv` that reaches the control path with `reason`.
        fn host_io(&mut self, lv: LvId, xid: u16, kind: IoKind, lba: u64, blocks: u32, reason: QueueReason) {
            let io = IoTag { worker: WorkerId(0), xid: ExchangeId(xid), incarnation: 0 };
            let request = self.request(lv, kind, lba, blocks);
            self.upcall(WorkerId(0), ToCp::QueueIo { io, request, reason });
            self.settle();
        }

        /// The host's write of `blocks` blocks at `lba` of `lv`, whose legs the fast path had
        /// sent, was aborted by the host with an ABTS of OX_ID `ox`.
        fn write_aborted_in(&mut self, lv: LvId, lba: u64, blocks: u32, ox: u16) {
            let request = self.request(lv, IoKind::Write, lba, blocks);
            let target = self.cp.exposure().fc_id.get();
            let builder = crate::frames::FrameBuilder { fc_map: crate::frames::DEFAULT_FC_MAP };
            let host = request.initiator_fc_id.get();
            let src = crate::frames::fpma(builder.fc_map, host);
            let abts = builder
                .request(src, host, target, r_ctl::BLS_ABTS, fc_type::BLS, ox, &BlsRepr::Abts)
                .and_then(|tx| Frame::copy_from(&tx.pieces().flatten().copied().collect::<Vec<u8>>()))
                .unwrap();
            self.upcall(WorkerId(0), ToCp::WriteAborted { request, port: PortId(0), abts });
            self.settle();
        }

        /// As `write_aborted_in`, for the mirror.
        fn write_aborted(&mut self, lba: u64, blocks: u32) {
            self.write_aborted_in(self.lv, lba, blocks, 0x0A0A);
        }

        /// The BLS answers (BA_ACC, BA_RJT) the control path sent: R_CTL, OX_ID, and the
        /// number of device writes carried out before each.
        fn bls_answers(&self) -> Vec<(u8, u16, usize)> {
            self.sent
                .iter()
                .filter_map(|(writes, bytes)| {
                    let Ok(dve_wire::stack::Packet::Fcoe { frame, .. }) =
                        dve_wire::stack::parse_packet(bytes)
                    else {
                        return None;
                    };
                    let h = frame.header;
                    (h.fc_type == fc_type::BLS).then_some((h.r_ctl, h.ox_id, *writes))
                })
                .collect()
        }

        /// A host's I/O request as the fast path reports it.
        fn request(&self, lv: LvId, kind: IoKind, lba: u64, blocks: u32) -> HostIo {
            let opcode = if kind == IoKind::Write { 0x2A } else { 0x28 };
            let [_, _, _, _, l0, l1, l2, l3] = lba.to_be_bytes();
            let [n0, n1] = (blocks as u16).to_be_bytes();
            HostIo {
                initiator: Wwn(1),
                initiator_fc_id: FcId::new(0x01_0001).unwrap(),
                vdevice: VDevice { exposure: ExposureId(1), lun: Lun(0) },
                lv: Some(lv),
                vseg: None,
                kind,
                lba,
                blocks,
                data_len: blocks * BLOCK as u32,
                cdb: Cdb::new(&[opcode, 0, l0, l1, l2, l3, 0, n0, n1, 0]).unwrap(),
                received: Timestamp(self.now),
            }
        }

        /// One millisecond passes: the control path's tick, then every downcall answered.
        pub(in crate::control_path) fn tick(&mut self) {
            self.now += 1_000_000;
            self.cp.tick(Timestamp(self.now));
            self.settle();
        }

        /// The blocks of `lv` from `lba`, read where the control path's map says they are
        /// (a mirror from the first side after `read_side` that is readable).
        pub(in crate::control_path) fn volume_blocks(
            &self,
            lv: LvId,
            lba: u64,
            blocks: u64,
            read_side: usize,
        ) -> Vec<u8> {
            let mut side = read_side;
            let legs = self.cp.volume(lv).unwrap().legs(lba, blocks, false, &mut side).unwrap();
            let mut image = vec![0u8; blocks as usize * BLOCK];
            for leg in legs {
                for b in 0..leg.blocks {
                    if let Some(data) = self.blocks.get(&(leg.device, leg.lba + b)) {
                        let at = (leg.offset + b) as usize * BLOCK;
                        image[at..at + BLOCK].copy_from_slice(data);
                    }
                }
            }
            image
        }

        pub(in crate::control_path) fn side_states(&self) -> Vec<SideState> {
            self.cp.volume(self.lv).unwrap().record.side_states.clone()
        }
    }

    /// A VPD 0x83 page naming a logical unit by an NAA designator.
    fn unit_page(naa: &[u8]) -> Vec<u8> {
        use dve_wire::WireEmit;
        use dve_wire::scsi::inquiry::{Designator, Designators, VpdPage, VpdRepr, code_set, designator_type};
        let unit = Designator {
            protocol_id: 0,
            code_set: code_set::BINARY,
            piv: false,
            association: 0,
            designator_type: designator_type::NAA,
            designator: naa,
        };
        let designators = [unit];
        let repr =
            VpdRepr { peripheral: 0, page: VpdPage::DeviceIdentification(Designators::List(&designators)) };
        let mut out = vec![0u8; 256];
        let n = repr.emit(&mut out).expect("emits");
        out.truncate(n);
        out
    }

    #[test]
    fn a_lost_frame_on_a_multipath_side_whose_active_path_answers_fails_nothing_over() {
        let mut bench = Bench::with_paths_to_side_1(2);
        let active = |b: &Bench| b.cp.devices().get(DeviceId(2)).and_then(|d| d.path()).map(|(port, _)| port);
        assert_eq!(active(&bench), Some(PortId(1)));
        bench.put_side_blocks(0, 16, 0xB2, 4);
        bench.leg_timed_out(1, IoKind::Write, 16, 4, DeviceId(2));
        assert_eq!(bench.side_states(), vec![SideState::Alive; 2], "{:?}", bench.events);
        assert_eq!(bench.completed.get(&1), Some(&IoStatus::check_condition(RETRY)));
        assert_eq!(bench.side_blocks(1, 16, 4), bench.side_blocks(0, 16, 4), "the range was reconciled");
        assert_eq!(active(&bench), Some(PortId(1)), "the path that answered stays in use");
        assert_eq!(bench.cp.multipath_counters().failovers, 0);
        assert_eq!(bench.cp.counters().leg_timeouts.transient, 1);
    }

    #[test]
    fn a_mirror_write_its_host_aborted_leaves_every_side_the_same() {
        let mut bench = Bench::new();
        // The aborted write landed on side 1 only.
        bench.put_side_blocks(1, 40, 0xD4, 8);
        bench.write_aborted(40, 8);
        assert_eq!(bench.side_blocks(1, 40, 8), bench.side_blocks(0, 40, 8), "{:?}", bench.events);
        assert_eq!(bench.side_states(), vec![SideState::Alive; 2]);
        assert!(bench.completed.is_empty(), "no host I/O waits for the copy: {:?}", bench.completed);
        let counters = bench.cp.counters().leg_timeouts;
        assert_eq!((counters.aborted_writes_reconciled, counters.ranges_reconciled), (1, 1));
        assert!(bench.cp.leg_timeouts.reconciles.is_empty(), "the range lock is released");
    }

    #[test]
    fn a_host_aborting_a_mirror_write_has_its_ba_acc_only_once_the_sides_agree() {
        let mut bench = Bench::new();
        bench.put_side_blocks(0, 40, 0xD4, 8);
        bench.write_aborted(40, 8);
        assert_eq!(bench.side_blocks(1, 40, 8), bench.side_blocks(0, 40, 8), "{:?}", bench.events);
        assert!(bench.device_writes > 0, "the reconcile copied the range");
        assert_eq!(
            bench.bls_answers(),
            vec![(r_ctl::BLS_BA_ACC, 0x0A0A, bench.device_writes)],
            "answered after the copy's last write, so a read after it finds one value"
        );
    }

    #[test]
    fn a_host_aborting_a_write_of_an_unmirrored_volume_has_its_ba_acc_at_once() {
        let mut bench = Bench::new();
        bench.write_aborted_in(LvId(99), 40, 8, 0x0B0B);
        assert_eq!(bench.bls_answers(), vec![(r_ctl::BLS_BA_ACC, 0x0B0B, 0)]);
        assert_eq!(bench.cp.counters().leg_timeouts.aborted_writes_reconciled, 0);
    }

    #[test]
    fn an_aborted_write_whose_range_cannot_be_copied_to_a_side_fails_that_side() {
        let mut bench = Bench::new();
        bench.put_side_blocks(0, 8, 0xE5, 4);
        for _ in 0..RECONCILE_ATTEMPTS {
            bench.mishap(DeviceId(2), true, Mishap::MediumError);
        }
        bench.write_aborted(8, 4);
        assert_eq!(bench.side_states(), vec![SideState::Alive, SideState::Dead], "{:?}", bench.events);
        let counters = bench.cp.counters().leg_timeouts;
        assert_eq!((counters.reconcile_failures, counters.ranges_reconciled), (3, 0));
        assert!(bench.completed.is_empty());
    }

    #[test]
    fn a_write_that_met_a_dead_path_is_reconciled_on_the_new_path_before_the_retry() {
        let mut bench = Bench::with_paths_to_side_1(2);
        bench.dead_ports.insert(PortId(1));
        bench.put_side_blocks(0, 32, 0xC3, 8);
        bench.leg_timed_out(1, IoKind::Write, 32, 8, DeviceId(2));
        let active = bench.cp.devices().get(DeviceId(2)).and_then(|d| d.path()).map(|(port, _)| port);
        assert_eq!(active, Some(PortId(2)), "failed over: {:?}", bench.events);
        assert_eq!(bench.cp.multipath_counters().failovers, 1);
        assert_eq!(bench.side_states(), vec![SideState::Alive; 2], "{:?}", bench.events);
        assert_eq!(bench.completed.get(&1), Some(&IoStatus::check_condition(RETRY)));
        assert_eq!(bench.side_blocks(1, 32, 8), vec![0xC3; 8 * BLOCK], "copied over the new path");
        assert_eq!(bench.cp.counters().leg_timeouts.ranges_reconciled, 1);
    }

    #[test]
    fn a_lost_frame_on_a_single_path_side_kills_nothing_and_leaves_the_sides_identical() {
        let mut bench = Bench::new();
        // The write reached side 0 only: its leg to side 1 lost a frame and timed out.
        bench.put_side_blocks(0, 64, 0xA1, 8);
        bench.put_side_blocks(1, 64, 0x0D, 8);
        bench.leg_timed_out(1, IoKind::Write, 64, 8, DeviceId(2));
        assert_eq!(bench.side_states(), vec![SideState::Alive; 2], "{:?}", bench.events);
        assert!(bench.tested.contains(&DeviceId(2)), "the device's only path was tested");
        assert_eq!(bench.completed.get(&1), Some(&IoStatus::check_condition(RETRY)), "the host retries");
        assert_eq!(bench.side_blocks(1, 64, 8), bench.side_blocks(0, 64, 8), "the range was reconciled");
        assert_eq!(bench.side_blocks(1, 64, 8), vec![0xA1; 8 * BLOCK]);
        // A read whose leg timed out is redone by the control path and answered GOOD.
        bench.leg_timed_out(2, IoKind::Read, 64, 8, DeviceId(2));
        assert_eq!(bench.completed.get(&2), Some(&IoStatus::GOOD));
        assert_eq!(bench.side_states(), vec![SideState::Alive; 2]);
        let counters = bench.cp.counters().leg_timeouts;
        assert_eq!((counters.transient, counters.ranges_reconciled), (2, 1), "{counters:?}");
        assert_eq!(counters.unresponsive_devices, 0);
        assert!(!bench.events.iter().any(|e| matches!(e, ControlEvent::SideDead { .. })));
    }

    #[test]
    fn a_device_that_answers_test_unit_ready_but_keeps_timing_out_io_loses_its_side() {
        let mut bench = Bench::new();
        bench.health.insert(DeviceId(2), Health::HungOnIo);
        // Reads (no copy to fail): each timeout's probe goes unanswered too, until the limit.
        for xid in 1..=3 {
            bench.leg_timed_out(xid, IoKind::Read, 8 * u64::from(xid), 8, DeviceId(2));
            assert_eq!(bench.completed.get(&xid), Some(&IoStatus::GOOD), "redone on the live side");
        }
        assert_eq!(bench.side_states(), vec![SideState::Alive, SideState::Dead], "{:?}", bench.events);
        let limit = bench.cp.config().leg_timeout_limit;
        assert!(
            bench.events.contains(&ControlEvent::DeviceUnresponsive { device: DeviceId(2), timeouts: limit }),
            "{:?}",
            bench.events
        );
        assert_eq!(bench.cp.counters().leg_timeouts.unresponsive_devices, 1);
    }

    #[test]
    fn a_write_whose_range_cannot_be_copied_to_a_hung_side_kills_the_side_before_the_retry() {
        let mut bench = Bench::new();
        bench.health.insert(DeviceId(2), Health::HungOnIo);
        bench.leg_timed_out(1, IoKind::Write, 0, 8, DeviceId(2));
        assert_eq!(bench.side_states(), vec![SideState::Alive, SideState::Dead], "{:?}", bench.events);
        assert_eq!(bench.completed.get(&1), Some(&IoStatus::check_condition(RETRY)));
        // Each copy's unanswered leg has the device tested: its read probes go unanswered too,
        // and `leg_timeout_limit` of them in a row (the host's leg, then two copies) fail it
        // before the copies' tries run out.
        let counters = bench.cp.counters().leg_timeouts;
        let limit = u64::from(bench.cp.config().leg_timeout_limit);
        assert_eq!(
            (counters.reconcile_failures, counters.io_probes_unanswered, counters.unresponsive_devices),
            (limit - 1, limit, 1),
            "{counters:?}"
        );
        assert!(limit - 1 < u64::from(RECONCILE_ATTEMPTS));
    }

    #[test]
    fn a_reconciling_copy_nobody_answered_is_tried_again_once_the_resyncing_side_answers() {
        let mut bench = Bench::new();
        bench.cp.side_failed(bench.lv, 1);
        bench.settle();
        bench.side_1_returns();
        assert_eq!(bench.side_states(), vec![SideState::Alive, SideState::Resync], "{:?}", bench.events);
        // A write leg to the resynchronizing side times out; the reconciling copy's write to
        // it loses a frame too: its device's path is tested, answers, and the copy is tried
        // again instead of the side being blamed.
        bench.tested.clear();
        bench.mishap(DeviceId(2), true, Mishap::NoAnswer);
        bench.put_side_blocks(0, 64, 0xA1, 8);
        bench.leg_timed_out(2, IoKind::Write, 64, 8, DeviceId(2));
        assert_eq!(bench.completed.get(&2), Some(&IoStatus::check_condition(RETRY)));
        assert!(bench.tested.contains(&DeviceId(2)));
        assert_eq!(bench.side_states(), vec![SideState::Alive, SideState::Resync], "{:?}", bench.events);
        assert_eq!(bench.side_blocks(1, 64, 8), vec![0xA1; 8 * BLOCK], "the range was reconciled");
        let counters = bench.cp.counters().leg_timeouts;
        assert_eq!((counters.reconcile_failures, counters.ranges_reconciled), (1, 1), "{counters:?}");
        // Two path tests answered: the host leg's and the copy's.
        assert_eq!(counters.io_probes, 2, "{counters:?}");
    }

    #[test]
    fn a_device_that_does_not_answer_test_unit_ready_loses_its_side() {
        let mut bench = Bench::new();
        bench.health.insert(DeviceId(2), Health::Dead);
        bench.leg_timed_out(1, IoKind::Write, 0, 8, DeviceId(2));
        assert_eq!(bench.side_states(), vec![SideState::Alive, SideState::Dead], "{:?}", bench.events);
        assert_eq!(bench.completed.get(&1), Some(&IoStatus::check_condition(RETRY)));
        assert!(bench.events.contains(&ControlEvent::SideDead { lv: bench.lv, side: 1 }));
        assert_eq!(bench.cp.counters().leg_timeouts.transient, 0);
    }
}
