//! Multipath: every target port that logs in is identified by INQUIRY VPD 0x83, so ports
//! showing one logical unit become paths of one device. The fast path uses one active path
//! per device; on a downstream I/O no path answered, the control path tests the path (TEST
//! UNIT READY), fails over to a standby path that answers, and switches the device's path
//! globally (seed 003 section 3.10, its preferred alternative: no extent faults). The I/O
//! that met the dead path is redone on the new one (reads) or returned with a retryable
//! status (fast-path writes, whose data has left the switch), so the host sees at most one
//! retry. Failed paths are tested again every `path_check_interval_ns` and return to
//! standby once they answer. A device taken as failed whose path answers again, or stays up
//! (it failed for its I/O errors or lost frames), is logged in to again (after
//! `device_recheck_ns`, doubled at each try), so that it comes back without an operator.
//!
//! A device with a single path is tested the same way (it just has no standby): a leg
//! timeout alone says nothing about the device, since a frame lost on a link looks the
//! same. When the active path answers, the timeout was transient unless the device keeps
//! failing I/O; `leg_timeout` decides that and handles the I/O. Only when no path answers
//! does the device's failure handling (side death, device offline) run.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use dve_fp_api::ids::{DeviceId, IoTag, Lun, LvId, WorkerId};
use dve_fp_api::io::{
    Cdb, DownstreamOp, DownstreamRequest, HostIo, IoKind, IoStatus, QueueReason, ScsiStatus,
};
use dve_fp_api::mapping::DevicePath;
use dve_fp_api::message::{MappingEntry, MappingKey, ToFp};
use dve_wire::scsi::inquiry::{Designator, VpdPage, VpdRepr, code_set, designator_type, vpd_page};

use super::{ControlEvent, ControlPath, DispatchPurpose, RequestPurpose};
use crate::device::{PathState, TargetPath};
use crate::fabric::NodeLogin;

/// Probe ids live above every device id the registry hands out.
const FIRST_PROBE: u32 = 0x8000_0000;

/// TEST UNIT READY commands a path test sends a path at once; the path fails only if none
/// is answered. A command or its status can be lost on a lossy link like any frame, and a
/// healthy device must not lose its path (or, with a single path, its mirror side) to one
/// lost frame; sent together, they cost no more time than one when the path is dead.
const TEST_UNIT_READY_COPIES: u32 = 2;

/// How many times a discovery command is sent before a lost answer is taken as no answer.
const DISCOVERY_TRIES: u32 = 3;

/// Bytes asked for in the identification INQUIRY.
const VPD_ALLOCATION: u16 = 252;

/// Something waiting for a device's path test.
#[derive(Clone, Debug)]
pub(super) enum PathWaiter {
    /// A fast-path I/O a leg of which no path answered.
    HostIo {
        /// The I/O.
        io: IoTag,
        /// The request.
        request: HostIo,
        /// The fault.
        reason: QueueReason,
    },
    /// A manual I/O with a leg no path answered.
    Manual(u64),
    /// A reconciliation whose copy had a leg nobody answered on `device`.
    Reconcile {
        /// The reconciliation.
        id: u64,
        /// The device tested.
        device: DeviceId,
    },
    /// A resync step (known by its range lock) whose piece's copy had a leg nobody answered.
    ResyncStep {
        /// The mirror.
        lv: LvId,
        /// The step's range lock.
        lock: u64,
    },
}

/// How a path test ended for the I/O waiting on it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum PathVerdict {
    /// The device is reached on another path now: run the I/O again.
    Switched,
    /// The active path and the device answer: the leg's timeout was transient (see
    /// `leg_timeout`).
    Transient,
    /// No path answers, or the device keeps timing out I/O while it answers: the device's
    /// error stands.
    DeviceFault,
}

/// A path test in progress for one device.
#[derive(Debug)]
struct PathTest {
    /// Names the test in its dispatches: a late answer to an earlier test is not this one's.
    id: u64,
    /// The probe id of the path under test.
    probe: DeviceId,
    /// TEST UNIT READY commands sent to that path and not answered yet.
    outstanding: u32,
    /// The path answered: the rest of the test (a read probe, a switch) is under way.
    answered: bool,
    waiting: Vec<PathWaiter>,
}

/// A global path switch waiting for every worker's acknowledgement.
#[derive(Debug)]
struct PathSwitch {
    acks_left: usize,
    waiting: Vec<PathWaiter>,
}

/// Counters of multipathing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MultipathCounters {
    /// Path tests sent.
    pub path_tests: u64,
    /// Paths found dead by a test.
    pub paths_failed: u64,
    /// Global path switches.
    pub failovers: u64,
    /// I/O that met a dead path and ran again on the new one (or was returned for a retry).
    pub ios_redriven: u64,
    /// Failed paths that answered a later test.
    pub paths_restored: u64,
    /// Discovery commands sent again after their answer was lost on the way.
    pub discovery_retries: u64,
    /// Logins to a device taken as failed while a path to it was up.
    pub device_rechecks: u64,
}

/// When a device taken as failed while a path to it is up is next logged in to, and the
/// wait after that.
#[derive(Clone, Copy, Debug)]
struct DeviceRecheck {
    next_at: u64,
    wait: u64,
}

/// The multipath state of an engine.
#[derive(Debug, Default)]
pub(super) struct Multipath {
    next_probe: u32,
    /// Target ports being identified, by probe id.
    identifying: BTreeMap<DeviceId, NodeLogin>,
    tests: BTreeMap<DeviceId, PathTest>,
    switches: BTreeMap<DeviceId, PathSwitch>,
    /// When each device's path last changed: I/O issued before then may have used the old
    /// path, so its failure says nothing about the new one.
    switched_at: BTreeMap<DeviceId, u64>,
    next_recheck: u64,
    /// Discovery commands (the identification INQUIRY, READ CAPACITY) whose answer was lost
    /// on the way, by the probe id of the path they were sent on: how many times in a row.
    lost_answers: BTreeMap<DeviceId, u32>,
    /// Devices taken as failed with a path up, and devices back from that for less than the
    /// longest wait (a new failure then waits longer than the last).
    device_rechecks: BTreeMap<DeviceId, DeviceRecheck>,
    pub(super) counters: MultipathCounters,
}

impl Multipath {
    fn new_probe(&mut self) -> DeviceId {
        let probe = DeviceId(FIRST_PROBE.wrapping_add(self.next_probe));
        self.next_probe = self.next_probe.wrapping_add(1) % FIRST_PROBE;
        probe
    }
}

/// The logical unit's designator in a VPD 0x83 page, as `naa.…`, `eui.…` or `t10.…`: the
/// best one associated with the logical unit (NAA before EUI-64 before T10 vendor id).
fn unit_identity(page: &[u8]) -> Option<String> {
    let repr = VpdRepr::parse(page).ok()?;
    let VpdPage::DeviceIdentification(designators) = repr.page else { return None };
    let rank = |d: &Designator<'_>| match d.designator_type {
        designator_type::NAA => Some(0),
        designator_type::EUI64 => Some(1),
        designator_type::T10_VENDOR_ID => Some(2),
        _ => None,
    };
    let best = designators
        .iter()
        .filter(|d| d.association == 0 && !d.designator.is_empty())
        .filter_map(|d| rank(&d).map(|r| (r, d)))
        .min_by_key(|(r, _)| *r)?
        .1;
    let prefix = match best.designator_type {
        designator_type::NAA => "naa",
        designator_type::EUI64 => "eui",
        _ => "t10",
    };
    let body: String = if best.code_set == code_set::BINARY {
        best.designator.iter().map(|b| format!("{b:02x}")).collect()
    } else {
        String::from_utf8_lossy(best.designator).trim().to_string()
    };
    Some(format!("{prefix}.{body}"))
}

/// A command with no data out, reading up to `data_in_len` bytes.
fn command(cdb: &[u8], data_in_len: u32) -> Option<DownstreamOp> {
    Some(DownstreamOp::Command { cdb: Cdb::new(cdb)?, data_out: Bytes::new(), data_in_len })
}

/// TEST UNIT READY.
fn test_unit_ready() -> Option<DownstreamOp> {
    command(&[0u8; 6], 0)
}

/// Whether a dispatched command's status shows the path carries commands: any SCSI status
/// counts; TASK ABORTED is what the fast path reports when nothing came back.
pub(super) fn path_answered(status: &IoStatus) -> bool {
    status.status != ScsiStatus::TASK_ABORTED
}

impl ControlPath {
    /// A physical target accepted our login: identify its LUN 0 through a probe id of the
    /// path's own, so a second port of a known device becomes a path of it.
    pub(super) fn target_ready(&mut self, node: NodeLogin) {
        let probe = self.multipath.new_probe();
        let path = DevicePath {
            device: probe,
            port: node.port,
            target_fc_id: node.fc_id,
            lun: Lun(0),
            block_size: 512,
        };
        self.grant_all(MappingEntry::DevicePath(path));
        self.multipath.identifying.insert(probe, node);
        self.send_identify(probe, node);
    }

    /// INQUIRY, EVPD, the device identification page, through the path's probe id.
    fn send_identify(&mut self, probe: DeviceId, node: NodeLogin) {
        let [high, low] = VPD_ALLOCATION.to_be_bytes();
        let inquiry = [0x12, 0x01, vpd_page::DEVICE_IDENTIFICATION, high, low, 0];
        let Some(op) = command(&inquiry, u32::from(VPD_ALLOCATION)) else { return };
        self.dispatch_on_path(probe, node.port, DispatchPurpose::Identify(probe), op);
    }

    /// Whether a discovery command sent through `probe` should be sent again: nothing came
    /// back, or GOOD without its data (a data frame lost on the link), fewer than
    /// [`DISCOVERY_TRIES`] times in a row. Nobody else asks again: the target logs in once,
    /// and a device left half discovered is never used (a restarted engine's volumes on it
    /// wait for it for ever). A device's own error is its answer, taken at once.
    pub(super) fn discovery_answer_lost(
        &mut self,
        probe: DeviceId,
        status: &IoStatus,
        data: Option<&Bytes>,
    ) -> bool {
        let lost = !path_answered(status) || (status.is_good() && data.is_none());
        let tries = self.multipath.lost_answers.entry(probe).or_insert(0);
        if lost && *tries + 1 < DISCOVERY_TRIES {
            *tries += 1;
            self.multipath.counters.discovery_retries += 1;
            return true;
        }
        self.multipath.lost_answers.remove(&probe);
        false
    }

    /// READ CAPACITY(16) of `device` through the path of probe id `probe`.
    pub(super) fn ask_capacity(&mut self, device: DeviceId, probe: DeviceId) {
        let Some(port) =
            self.devices.get(device).and_then(|d| d.paths.iter().find(|p| p.probe == probe)).map(|p| p.port)
        else {
            return;
        };
        // SERVICE ACTION IN (16), service action 0x10, 32 bytes.
        let mut read_capacity = [0u8; 16];
        read_capacity[0] = 0x9E;
        read_capacity[1] = 0x10;
        read_capacity[13] = 32;
        let Some(op) = command(&read_capacity, 32) else { return };
        self.dispatch_on_path(probe, port, DispatchPurpose::Capacity { device, probe }, op);
    }

    fn dispatch_on_path(
        &mut self,
        probe: DeviceId,
        port: dve_fp_api::ids::PortId,
        purpose: DispatchPurpose,
        op: DownstreamOp,
    ) {
        let tag = self.dispatch_tag(purpose);
        let worker = self.plan.worker_of(port).unwrap_or(WorkerId(0));
        self.send(worker, ToFp::DispatchIo(DownstreamRequest { tag, device: probe, op }));
    }

    /// The identification INQUIRY answered (or failed: the unit is then known by its port
    /// name and LUN only, as a single-path device).
    pub(super) fn identified(&mut self, probe: DeviceId, status: &IoStatus, data: Option<Bytes>) {
        if let Some(node) = self.multipath.identifying.get(&probe).copied()
            && self.discovery_answer_lost(probe, status, data.as_ref())
        {
            // Not the device's answer: known by its port name instead, a second port of a
            // known unit would become a device of its own (and a restored device never return).
            self.send_identify(probe, node);
            return;
        }
        let Some(node) = self.multipath.identifying.remove(&probe) else { return };
        let identity = data.filter(|_| status.is_good()).and_then(|d| unit_identity(&d));
        let (device, recorded_changed) =
            self.devices.find_or_add_identified(identity.as_deref(), node.port_name, Lun(0));
        let id = device.id;
        let replaced = device.paths.iter().position(|p| p.target == node.port_name);
        let old = replaced.map(|i| device.paths.remove(i));
        let has_active = device.paths.iter().any(|p| p.state == PathState::Active);
        let state = if has_active { PathState::Standby } else { PathState::Active };
        device.paths.push(TargetPath {
            target: node.port_name,
            port: node.port,
            fc_id: node.fc_id,
            probe,
            state,
        });
        device.paths.sort_by_key(|p| (p.port, p.target));
        let (online, blocks, paths) = (device.online, device.blocks, device.paths.len());
        if let Some(old) = old {
            self.forget_probe(old.probe);
        }
        if state == PathState::Active
            && let Some(path) = self.devices.get(id).and_then(|d| d.device_path())
        {
            self.grant_all(MappingEntry::DevicePath(path));
        }
        match old {
            None if paths > 1 => {
                self.events.push(ControlEvent::PathAdded { device: id, target: node.port_name, paths });
            }
            Some(old) if old.state == PathState::Failed => {
                // Its target logged in again (a cable back up): usable once more.
                self.multipath.counters.paths_restored += 1;
                self.events.push(ControlEvent::PathRestored { device: id, target: node.port_name });
            }
            _ => {}
        }
        if online && blocks > 0 {
            if recorded_changed {
                self.commit_device(id);
            }
            return;
        }
        if self
            .dispatches
            .values()
            .any(|p| matches!(p, DispatchPurpose::Capacity { device, .. } if *device == id))
        {
            // Another path's READ CAPACITY is on its way.
            return;
        }
        // A new or returning device: its capacity, asked on the path just found.
        self.ask_capacity(id, probe);
    }

    fn commit_device(&mut self, device: DeviceId) {
        if self.persist(&[device], &[]).is_err() {
            self.counters.failed_commits += 1;
        }
    }

    fn forget_probe(&mut self, probe: DeviceId) {
        let key = MappingKey::DevicePath(probe);
        self.broadcast(|req| ToFp::RemoveMapping { req, key: key.clone() }, RequestPurpose::Grant);
    }

    /// A downstream I/O to `device`, issued at `issued_at`, got no answer: the device's path
    /// is tested (for a single-path device too) and the waiter runs again once that is
    /// settled, perhaps at once.
    pub(super) fn path_suspect(&mut self, device: DeviceId, issued_at: u64, waiter: PathWaiter) {
        if self.multipath.switched_at.get(&device).is_some_and(|at| *at > issued_at) {
            // It used the old path: the new one is already in place.
            self.resolve(waiter, PathVerdict::Switched);
            return;
        }
        if let Some(switch) = self.multipath.switches.get_mut(&device) {
            switch.waiting.push(waiter);
            return;
        }
        if let Some(test) = self.multipath.tests.get_mut(&device) {
            test.waiting.push(waiter);
            return;
        }
        // The active path first; if every path failed already, a standby one.
        let candidate = self
            .devices
            .get(device)
            .and_then(|d| d.path_in(PathState::Active).or_else(|| d.path_in(PathState::Standby)));
        match candidate {
            Some(path) => {
                let id = self.op_id();
                let test = PathTest {
                    id,
                    probe: path.probe,
                    outstanding: 0,
                    answered: false,
                    waiting: vec![waiter],
                };
                self.multipath.tests.insert(device, test);
                self.send_path_test(device, path);
            }
            None => self.resolve(waiter, PathVerdict::DeviceFault),
        }
    }

    /// Send the test's TEST UNIT READY commands to `path`.
    fn send_path_test(&mut self, device: DeviceId, path: TargetPath) {
        let Some(test) = self.multipath.tests.get_mut(&device) else { return };
        test.probe = path.probe;
        test.outstanding = TEST_UNIT_READY_COPIES;
        test.answered = false;
        let id = test.id;
        self.multipath.counters.path_tests += 1;
        for _ in 0..TEST_UNIT_READY_COPIES {
            let Some(op) = test_unit_ready() else { return };
            let purpose = DispatchPurpose::PathTest { device, probe: path.probe, test: id };
            self.dispatch_on_path(path.probe, path.port, purpose, op);
        }
    }

    /// Test the device's path now (the one under test was replaced: its target logged in
    /// again) or the next standby path, or give up when none is left.
    fn test_next_path(&mut self, device: DeviceId) {
        let next = self
            .devices
            .get(device)
            .and_then(|d| d.path_in(PathState::Active).or_else(|| d.path_in(PathState::Standby)));
        match next {
            Some(path) => self.send_path_test(device, path),
            None => self.path_test_settled(device, PathVerdict::DeviceFault),
        }
    }

    /// The path test of `device` is over: everything waiting on it runs with `verdict`.
    pub(super) fn path_test_settled(&mut self, device: DeviceId, verdict: PathVerdict) {
        let waiting = self.multipath.tests.remove(&device).map(|t| t.waiting).unwrap_or_default();
        for waiter in waiting {
            self.resolve(waiter, verdict);
        }
    }

    /// A path test's TEST UNIT READY completed.
    pub(super) fn path_tested(&mut self, device: DeviceId, probe: DeviceId, test: u64, status: &IoStatus) {
        let Some(t) = self.multipath.tests.get_mut(&device) else { return };
        if t.id != test || t.probe != probe || t.answered {
            return;
        }
        if path_answered(status) {
            t.answered = true;
        } else {
            t.outstanding = t.outstanding.saturating_sub(1);
            if t.outstanding > 0 {
                // Another copy of the command may still be answered.
                return;
            }
        }
        let Some(d) = self.devices.get_mut(device) else { return };
        let Some(index) = d.paths.iter().position(|p| p.probe == probe) else {
            self.test_next_path(device);
            return;
        };
        let was = d.paths[index].state;
        if !path_answered(status) {
            d.paths[index].state = PathState::Failed;
            let target = d.paths[index].target;
            self.multipath.counters.paths_failed += 1;
            self.events.push(ControlEvent::PathFailed { device, target });
            self.test_next_path(device);
            return;
        }
        if was == PathState::Active {
            // The path works: whether the device does I/O too is for a read probe to show;
            // the test (and its waiters) lasts until it answers or times out.
            self.probe_device_io(device);
            return;
        }
        // A standby path answers: it becomes the device's path, everywhere at once.
        let from = d.path_in(PathState::Active).map(|p| p.target);
        for p in &mut d.paths {
            if p.state == PathState::Active {
                p.state = PathState::Standby;
            }
        }
        d.paths[index].state = PathState::Active;
        let to = d.paths[index].target;
        let Some(path) = d.device_path() else { return };
        self.multipath.counters.failovers += 1;
        self.events.push(ControlEvent::PathFailedOver { device, from, to });
        let waiting = self.multipath.tests.remove(&device).map(|t| t.waiting).unwrap_or_default();
        let acks_left = self.plan.workers().len();
        self.multipath.switches.insert(device, PathSwitch { acks_left, waiting });
        self.broadcast(
            |req| ToFp::AddMapping { req, entry: MappingEntry::DevicePath(path) },
            RequestPurpose::PathSwitch(device),
        );
    }

    /// A worker took the device's new path: once all have, I/O issued from now on uses it.
    pub(super) fn path_switch_acked(&mut self, device: DeviceId) {
        let Some(switch) = self.multipath.switches.get_mut(&device) else { return };
        switch.acks_left = switch.acks_left.saturating_sub(1);
        if switch.acks_left > 0 {
            return;
        }
        let waiting = self.multipath.switches.remove(&device).map(|s| s.waiting).unwrap_or_default();
        self.multipath.switched_at.insert(device, self.now);
        for waiter in waiting {
            self.resolve(waiter, PathVerdict::Switched);
        }
    }

    fn resolve(&mut self, waiter: PathWaiter, verdict: PathVerdict) {
        match (waiter, verdict) {
            (PathWaiter::HostIo { io, request, reason }, PathVerdict::Switched) => {
                self.multipath.counters.ios_redriven += 1;
                if request.kind == IoKind::Read {
                    self.start_manual(io, request);
                } else {
                    // The write's data has left the switch: the host sends it again (once
                    // a mirror's sides agree on its range, see `leg_timeout`).
                    self.retry_timed_out_write(io, request, reason);
                }
            }
            (PathWaiter::HostIo { io, request, reason }, PathVerdict::Transient) => {
                self.transient_leg_timeout(io, request, reason);
            }
            (PathWaiter::HostIo { io, request, reason }, PathVerdict::DeviceFault) => {
                self.device_error(io, request, reason);
            }
            (PathWaiter::Manual(op), PathVerdict::Switched) => {
                self.multipath.counters.ios_redriven += 1;
                self.redispatch_manual(op);
            }
            (PathWaiter::Manual(op), PathVerdict::Transient) => {
                self.counters.leg_timeouts.transient += 1;
                self.manual_leg_timeout_transient(op);
            }
            (PathWaiter::Manual(op), PathVerdict::DeviceFault) => self.manual_path_checked(op),
            (PathWaiter::ResyncStep { lv, lock }, verdict) => self.resync_path_checked(lv, lock, verdict),
            (PathWaiter::Reconcile { id, device }, verdict) => {
                self.reconcile_path_checked(id, device, verdict)
            }
        }
    }

    /// Test the failed paths again, at most once per `path_check_interval_ns`.
    pub(super) fn path_recheck_tick(&mut self) {
        if self.now < self.multipath.next_recheck {
            return;
        }
        self.multipath.next_recheck = self.now.saturating_add(self.config.path_check_interval_ns.max(1));
        let in_flight: BTreeSet<DeviceId> = self
            .dispatches
            .values()
            .filter_map(|p| match p {
                DispatchPurpose::PathRecheck { probe, .. } => Some(*probe),
                _ => None,
            })
            .collect();
        let failed: Vec<(DeviceId, TargetPath)> = self
            .devices
            .iter()
            .flat_map(|d| d.paths.iter().filter(|p| p.state == PathState::Failed).map(move |p| (d.id, *p)))
            .filter(|(_, p)| !in_flight.contains(&p.probe))
            .collect();
        for (device, path) in failed {
            let Some(op) = test_unit_ready() else { return };
            let purpose = DispatchPurpose::PathRecheck { device, probe: path.probe };
            self.dispatch_on_path(path.probe, path.port, purpose, op);
        }
    }

    /// Log in again to the devices taken as failed while a path to them is up, each when its
    /// wait is over. A device that is back for the longest wait starts again from the
    /// shortest one when it next fails.
    pub(super) fn device_recheck_tick(&mut self) {
        let now = self.now;
        let (first, longest) = (self.config.device_recheck_ns.max(1), self.config.device_recheck_max_ns);
        let failed: Vec<(DeviceId, dve_fp_api::ids::FcId)> = self
            .devices
            .iter()
            .filter(|d| !d.online)
            .filter_map(|d| d.paths.iter().find(|p| p.state != PathState::Failed).map(|p| (d.id, p.fc_id)))
            .collect();
        // A device online again keeps its wait if it was logged in to (the next failure
        // waits longer), otherwise not (a device being discovered is offline for a while).
        self.multipath.device_rechecks.retain(|device, r| {
            failed.iter().any(|(d, _)| d == device)
                || (r.wait > first && now < r.next_at.saturating_add(longest))
        });
        let mut sent = false;
        for (device, fc_id) in failed {
            let r = self
                .multipath
                .device_rechecks
                .entry(device)
                .or_insert(DeviceRecheck { next_at: now.saturating_add(first), wait: first });
            if r.next_at > now {
                continue;
            }
            r.wait = r.wait.saturating_mul(2).min(longest.max(first));
            r.next_at = now.saturating_add(r.wait);
            self.multipath.counters.device_rechecks += 1;
            self.fabric.relogin(fc_id, now);
            sent = true;
        }
        if sent {
            self.fabric_events();
        }
    }

    /// A failed path's periodic test completed.
    pub(super) fn path_rechecked(&mut self, device: DeviceId, probe: DeviceId, status: &IoStatus) {
        if !path_answered(status) {
            return;
        }
        let Some(d) = self.devices.get_mut(device) else { return };
        let Some(path) = d.paths.iter_mut().find(|p| p.probe == probe && p.state == PathState::Failed) else {
            return;
        };
        path.state = PathState::Standby;
        let (target, fc_id) = (path.target, path.fc_id);
        let failed_device = !d.online;
        self.multipath.counters.paths_restored += 1;
        self.events.push(ControlEvent::PathRestored { device, target });
        if failed_device {
            // A device taken as failed (a mirror side's death) whose target never left the
            // fabric would never log in again by itself: log in to it, so that it is
            // identified, comes online and has its dead sides resynchronized.
            self.fabric.relogin(fc_id, self.now);
            self.fabric_events();
        }
    }

    /// Multipath counters.
    pub fn multipath_counters(&self) -> MultipathCounters {
        self.multipath.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dve_wire::WireEmit;
    use dve_wire::scsi::inquiry::Designators;

    fn page(designators: &[Designator<'_>]) -> Vec<u8> {
        let repr =
            VpdRepr { peripheral: 0, page: VpdPage::DeviceIdentification(Designators::List(designators)) };
        let mut out = vec![0u8; 256];
        let n = repr.emit(&mut out).expect("emits");
        out.truncate(n);
        out
    }

    fn designator(association: u8, kind: u8, bytes: &[u8]) -> Designator<'_> {
        Designator {
            protocol_id: 0,
            code_set: code_set::BINARY,
            piv: association == 1,
            association,
            designator_type: kind,
            designator: bytes,
        }
    }

    #[test]
    fn the_unit_designator_names_the_device_not_the_port() {
        let unit = 0x5000_0000_0000_00AAu64.to_be_bytes();
        let port_a = 0x2200_0000_0000_0001u64.to_be_bytes();
        let port_b = 0x2201_0000_0000_0001u64.to_be_bytes();
        let a =
            page(&[designator(1, designator_type::NAA, &port_a), designator(0, designator_type::NAA, &unit)]);
        let b =
            page(&[designator(0, designator_type::NAA, &unit), designator(1, designator_type::NAA, &port_b)]);
        assert_eq!(unit_identity(&a).as_deref(), Some("naa.50000000000000aa"));
        assert_eq!(unit_identity(&a), unit_identity(&b));
    }

    #[test]
    fn naa_is_preferred_and_port_designators_never_name_a_unit() {
        let eui = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let naa = 0x6000_0000_0000_0001u64.to_be_bytes();
        let both =
            page(&[designator(0, designator_type::EUI64, &eui), designator(0, designator_type::NAA, &naa)]);
        assert_eq!(unit_identity(&both).as_deref(), Some("naa.6000000000000001"));
        let only_port = page(&[designator(1, designator_type::NAA, &naa)]);
        assert_eq!(unit_identity(&only_port), None);
        assert_eq!(unit_identity(&[0x00, 0x80, 0, 0]), None);
        assert_eq!(unit_identity(&[]), None);
    }
}
