//! The control path of one engine as a sans-I/O state machine: fed with the workers' FP API
//! upcalls and the time, it answers faults, runs the fabric services, executes the I/O it
//! takes over, and emits FP API downcalls addressed to workers. Management requests are
//! method calls that validate, commit and push the change to the fast path.

mod age_records;
mod block_copy;
mod grants;
mod incremental;
mod journal;
mod leg_timeout;
mod manual_io;
mod migration;
mod mirror;
mod multipath;
mod persist;
mod reconfigure;
mod removal;
mod replication;
mod restart;
mod revocation;
mod scsi_queue;
mod side_addition;
mod side_removal;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use dve_fp_api::fault::{FaultCause, FaultCounters};
use dve_fp_api::ids::{
    DeviceId, DispatchTag, ExchangeIdLayout, ExposureId, IoTag, LvId, PortId, RequestId, Timestamp, WorkerId,
    Wwn,
};
use dve_fp_api::io::{HostIo, QueueReason};
use dve_fp_api::mapping::{FabricRoute, HostSet, LunMapping, PortLogin, TargetExposure};
use dve_fp_api::message::{MappingEntry, ToCp, ToFp};

use crate::address::AddressPlan;
use crate::device::DeviceRegistry;
use crate::error::Error;
use crate::fabric::{Fabric, FabricEvent, NodeLogin, VirtualTarget};
use crate::frames::{ControlExchangeIds, DEFAULT_FC_MAP, FrameBuilder};
use crate::volume::{LayoutSpec, Volume};

pub use leg_timeout::LegTimeoutCounters;
pub use manual_io::ManualIoCounters;
pub use migration::MigrationProgress;
pub use mirror::{ResyncCounters, ResyncProgress};
pub use multipath::MultipathCounters;
pub use replication::ReplicationProgress;
pub use snapshot::{COPY_GRANULARITY_BLOCKS, SnapshotOptions, SnapshotProgress, copy_granularity_refusal};

use manual_io::ManualIo;
use mirror::MirrorWork;
use revocation::Revocation;
use scsi_queue::ScsiQueue;

/// LUNs of the virtual target: SAM's flat space addressing (14 bits).
const LUNS: u16 = 16_384;

/// How an engine's control path is set up.
#[derive(Clone, Debug)]
pub struct ControlPathConfig {
    /// The engine's FC domain.
    pub domain: u8,
    /// Ports of the engine.
    pub ports: u16,
    /// Fast-path workers (ports are dealt to them round robin).
    pub workers: u8,
    /// The fabric's name (also the switch's node name).
    pub switch_name: Wwn,
    /// The FCoE FC-MAP.
    pub fc_map: u32,
    /// How exchange ids split between worker and slot (must match the workers').
    pub layout: ExchangeIdLayout,
    /// Blocks per age-list extent of mirrors (the resync granularity).
    pub age_extent_blocks: u64,
    /// Age-list extents a resync copies per tick (its rate limit).
    pub resync_extents_per_tick: usize,
    /// Blocks a migration copies per step: the size of its copy barrier (seed 003: the copy
    /// granularity, 64 KiB).
    pub copy_chunk_blocks: u64,
    /// How often failed paths are tested again (TEST UNIT READY).
    pub path_check_interval_ns: u64,
    /// How long after a device is taken as failed while a path to it is up (a mirror side
    /// declared dead for its I/O errors or lost frames) it is first logged in to again; the
    /// wait doubles after each try, up to `device_recheck_max_ns`, so a disk that keeps
    /// failing its writes is not resynchronized in a loop.
    pub device_recheck_ns: u64,
    /// The longest wait between two tries of a failed device.
    pub device_recheck_max_ns: u64,
    /// Leg timeouts in a row a device may have while it answers TEST UNIT READY before it
    /// is treated as failed (a disk that hangs on I/O only): a timeout counts until a
    /// one-block read probe that follows the path test is answered, which clears the count,
    /// so frames lost on a link never add up (see `leg_timeout`).
    pub leg_timeout_limit: u32,
    /// How long a leg timeout stays counted: older ones are forgotten.
    pub leg_timeout_window_ns: u64,
}

impl ControlPathConfig {
    /// Defaults for an engine in `domain` with `ports` ports and `workers` workers.
    pub fn new(domain: u8, ports: u16, workers: u8) -> ControlPathConfig {
        ControlPathConfig {
            domain,
            ports,
            workers,
            switch_name: Wwn(0x1000_0000_0000_0000 | u64::from(domain) << 32 | 0xD5E),
            fc_map: DEFAULT_FC_MAP,
            layout: ExchangeIdLayout::new(4)
                .unwrap_or_else(|| unreachable!("4 worker bits is a valid layout")),
            age_extent_blocks: 2048,
            resync_extents_per_tick: 4,
            copy_chunk_blocks: 128,
            path_check_interval_ns: 1_000_000_000,
            device_recheck_ns: 5_000_000_000,
            device_recheck_max_ns: 80_000_000_000,
            leg_timeout_limit: 3,
            leg_timeout_window_ns: 60_000_000_000,
        }
    }
}

/// Something the control path wants its owner (the daemon, the simulator) to know.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ControlEvent {
    /// An N_Port logged in to the fabric.
    NodeLoggedIn {
        /// Its port name.
        port_name: Wwn,
        /// Its port.
        port: PortId,
    },
    /// A physical device answered discovery and can hold volumes.
    DeviceOnline {
        /// The device.
        device: DeviceId,
        /// Its target's port name.
        target: Wwn,
        /// Capacity in blocks.
        blocks: u64,
    },
    /// A device stopped answering.
    DeviceFailed {
        /// The device.
        device: DeviceId,
    },
    /// A device was found behind one more target port.
    PathAdded {
        /// The device.
        device: DeviceId,
        /// The target port.
        target: Wwn,
        /// Paths it has now.
        paths: usize,
    },
    /// A path test found a path dead.
    PathFailed {
        /// The device.
        device: DeviceId,
        /// The path's target port.
        target: Wwn,
    },
    /// A failed path answered its periodic test: it is a standby path again.
    PathRestored {
        /// The device.
        device: DeviceId,
        /// The path's target port.
        target: Wwn,
    },
    /// A device's path was switched, for every worker at once.
    PathFailedOver {
        /// The device.
        device: DeviceId,
        /// The target port of the path given up, if one was active.
        from: Option<Wwn>,
        /// The target port of the path now used.
        to: Wwn,
    },
    /// A device kept timing out I/O while it answered TEST UNIT READY (a disk that hangs on
    /// I/O only): it is treated as failed.
    DeviceUnresponsive {
        /// The device.
        device: DeviceId,
        /// Leg timeouts in a row that no I/O answered in between.
        timeouts: u32,
    },
    /// A mirror side was declared dead.
    SideDead {
        /// The volume.
        lv: LvId,
        /// The side.
        side: usize,
    },
    /// A mirror side was removed from a volume (committed); its devices' space is free once
    /// the workers and the control path's own I/O let go of it.
    SideRemoved {
        /// The volume.
        lv: LvId,
        /// The side's index before the removal (later sides now have the index before theirs).
        side: usize,
        /// The devices the side was on.
        devices: Vec<DeviceId>,
    },
    /// A volume's LUN was withdrawn from every host.
    VolumeHidden {
        /// The volume.
        lv: LvId,
        /// The LUN it was exposed as.
        lun: u16,
    },
    /// A volume was deleted; its space is free once the workers let go of it.
    VolumeDeleted {
        /// The volume.
        lv: LvId,
        /// Its name.
        name: String,
    },
    /// A volume grew; its initiators are told by a unit attention.
    VolumeGrown {
        /// The volume.
        lv: LvId,
        /// Its size now, in blocks.
        blocks: u64,
    },
    /// A volume's segments were split or merged.
    VolumeReconfigured {
        /// The volume.
        lv: LvId,
        /// Its segments now.
        segments: usize,
    },
    /// A split or a merge accepted earlier could not be made; the volume is as it was.
    ReconfigurationFailed {
        /// The volume.
        lv: LvId,
        /// Why.
        reason: String,
    },
    /// A volume finished migrating: its layout names the new devices only.
    MigrationDone {
        /// The volume.
        lv: LvId,
        /// Blocks copied.
        blocks: u64,
    },
    /// A replication stopped: the replica keeps its last cycle's image, its claim is free.
    ReplicationStopped {
        /// The volume.
        lv: LvId,
    },
    /// A cancelled migration ended: everything it had moved is back, the volume is where it
    /// was and the destination's claims are free.
    MigrationCancelled {
        /// The volume.
        lv: LvId,
    },
    /// A snapshot's image is fixed (the source's writes in flight drained).
    SnapshotTaken {
        /// The source.
        source: LvId,
        /// The snapshot volume.
        snapshot: LvId,
    },
    /// Every block of a snapshot is in its store; both Rmaps are one extent again.
    SnapshotComplete {
        /// The source.
        source: LvId,
        /// The snapshot volume.
        snapshot: LvId,
    },
    /// A replicated volume's consistency point: its journals were swapped with no write in
    /// flight, so the primary held exactly the image cycle `cycle` ends with.
    ConsistencyPoint {
        /// The volume.
        lv: LvId,
        /// The cycle closed.
        cycle: u64,
    },
    /// A write to a journaled volume's journal failed: the journal is out of service, the
    /// volume's writes go to its primary alone and its replication waits for the journal.
    JournalFailed {
        /// The volume.
        lv: LvId,
    },
    /// A journal out of service takes writes again; a replication of its volume starts over
    /// with a whole copy.
    JournalRestored {
        /// The volume.
        lv: LvId,
    },
    /// The replica of a volume moved to the image of consistency point `cycle`.
    ReplicaApplied {
        /// The volume.
        lv: LvId,
        /// The cycle applied.
        cycle: u64,
        /// Blocks written to the replica.
        blocks: u64,
        /// From the consistency point to now, in ns.
        lag_ns: u64,
    },
    /// A mirror side finished resynchronizing.
    ResyncDone {
        /// The volume.
        lv: LvId,
        /// The side.
        side: usize,
        /// Age-list extents copied.
        extents_copied: u64,
    },
}

/// What a pending FP API request is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RequestPurpose {
    /// A grant or exposure: only failures matter.
    Grant,
    /// An invalidation acknowledgement or a drain query of a revocation.
    Revocation(u64),
    /// `FPGetData` of a manual I/O.
    ManualData(u64),
    /// `FPPutData` of a manual I/O.
    ManualPut(u64),
    /// A worker's acknowledgement of a LUN mask a SCSI command's status waits for.
    MaskAck(u64),
    /// A worker's acknowledgement of a device's new path.
    PathSwitch(DeviceId),
}

/// What a control-path dispatch is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DispatchPurpose {
    /// READ CAPACITY(16) of a newly discovered device, sent to a path's probe id.
    Capacity {
        /// The device.
        device: DeviceId,
        /// The probe id of the path it was asked on.
        probe: DeviceId,
    },
    /// INQUIRY VPD 0x83 of a target port's LUN 0, sent to the path's probe id.
    Identify(DeviceId),
    /// The periodic TEST UNIT READY on a failed path.
    PathRecheck {
        /// The device.
        device: DeviceId,
        /// The probe id of the path.
        probe: DeviceId,
    },
    /// TEST UNIT READY on one path of a device.
    PathTest {
        /// The device.
        device: DeviceId,
        /// The probe id of the path under test.
        probe: DeviceId,
        /// The test it belongs to.
        test: u64,
    },
    /// The one-block read that follows a path test the device answered: whether it does I/O.
    IoProbe {
        /// The device.
        device: DeviceId,
    },
    /// A leg of a manual I/O.
    ManualLeg { op: u64, leg: usize },
    /// A leg of a block copy (resync, snapshot push, migration, incremental granule).
    Copy { copy: u64, leg: usize },
    /// A write of a cycle applied to a replica.
    ReplicaWrite { lv: LvId, apply: u64 },
}

/// Counters of the control path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlCounters {
    /// Faults received, by cause (mapping misses under `Miss`).
    pub faults: FaultCounters,
    /// Mapping misses answered CONTINUE.
    pub misses_continued: u64,
    /// Mapping misses answered QUEUE.
    pub misses_queued: u64,
    /// Non-read/write commands answered.
    pub scsi_commands: u64,
    /// Of those, answered CHECK CONDITION (a unit attention after a login is one).
    pub scsi_check_conditions: u64,
    /// Manual I/O.
    pub manual: ManualIoCounters,
    /// FP API requests that failed.
    pub failed_requests: u64,
    /// Metadata commits that failed (the change was not made).
    pub failed_commits: u64,
    /// Revocations completed.
    pub revocations: u64,
    /// Metadata transactions committed.
    pub commits: u64,
    /// Leg timeouts of devices that answered their path test, and what was done about them.
    pub leg_timeouts: LegTimeoutCounters,
    /// Mirror resync copies: pieces copied, copied again, steps given up.
    pub resync: ResyncCounters,
}

/// The control path of one engine.
#[derive(Debug)]
pub struct ControlPath {
    config: ControlPathConfig,
    plan: AddressPlan,
    fabric: Fabric,
    devices: DeviceRegistry,
    volumes: BTreeMap<LvId, Volume>,
    exposure: TargetExposure,
    /// Hosts that completed a fabric login, by port name.
    hosts: BTreeMap<Wwn, NodeLogin>,
    out: VecDeque<(WorkerId, ToFp)>,
    events: Vec<ControlEvent>,
    next_request: u64,
    next_dispatch: u64,
    next_op: u64,
    requests: BTreeMap<RequestId, RequestPurpose>,
    dispatches: BTreeMap<DispatchTag, DispatchPurpose>,
    revocations: BTreeMap<u64, Revocation>,
    /// Range locks held by revocations: misses inside them are queued.
    locks: BTreeMap<u64, (dve_fp_api::ids::VsegId, core::ops::Range<u64>)>,
    manual: BTreeMap<u64, ManualIo>,
    copies: block_copy::BlockCopies,
    mirror: MirrorWork,
    snapshots: snapshot::Snapshots,
    migrations: migration::Migrations,
    incrementals: incremental::Incrementals,
    replications: replication::Replications,
    reconfigurations: reconfigure::Reconfigurations,
    multipath: multipath::Multipath,
    leg_timeouts: leg_timeout::LegTimeouts,
    awaiting: restart::Awaiting,
    scsi: ScsiQueue,
    counters: ControlCounters,
    store: Option<Box<dyn crate::store::MetadataStore>>,
    /// The journal of each journaled volume.
    journals: BTreeMap<LvId, journal::VolumeJournal>,
    /// The last journal sequence handed out (to a slot of any journal): unique in the
    /// engine's store, see `journal::first_sequence`.
    journal_sequence: u64,
    /// Claims of deleted volumes, held until every worker has dropped the volume.
    deleting: BTreeMap<LvId, Vec<crate::volume::Allocation>>,
    /// Claims of removed mirror sides, held until nothing uses them.
    side_removals: side_removal::SideRemovals,
    now: u64,
}

impl ControlPath {
    /// A control path with no devices and no volumes yet.
    pub fn new(config: ControlPathConfig) -> ControlPath {
        let plan = AddressPlan::new(config.domain, config.ports, config.workers);
        let builder = FrameBuilder { fc_map: config.fc_map };
        let ids = ControlExchangeIds::new(config.layout);
        let fabric = Fabric::new(plan.clone(), builder, config.switch_name, ids);
        let exposure = TargetExposure {
            id: ExposureId(1),
            port_name: Wwn(0x5000_0000_0000_0000 | u64::from(config.domain) << 24 | 1),
            node_name: Wwn(0x5000_0000_0000_0000 | u64::from(config.domain) << 24),
            fc_id: plan.virtual_target_address(1).unwrap_or_default(),
            luns: Vec::new(),
        };
        ControlPath {
            plan,
            fabric,
            devices: DeviceRegistry::default(),
            volumes: BTreeMap::new(),
            exposure,
            hosts: BTreeMap::new(),
            out: VecDeque::new(),
            events: Vec::new(),
            next_request: 0,
            next_dispatch: 0,
            next_op: 0,
            requests: BTreeMap::new(),
            dispatches: BTreeMap::new(),
            revocations: BTreeMap::new(),
            locks: BTreeMap::new(),
            manual: BTreeMap::new(),
            copies: block_copy::BlockCopies::default(),
            mirror: MirrorWork::default(),
            snapshots: snapshot::Snapshots::default(),
            migrations: migration::Migrations::default(),
            incrementals: incremental::Incrementals::default(),
            replications: replication::Replications::default(),
            reconfigurations: reconfigure::Reconfigurations::default(),
            multipath: multipath::Multipath::default(),
            leg_timeouts: leg_timeout::LegTimeouts::default(),
            awaiting: restart::Awaiting::default(),
            scsi: ScsiQueue::default(),
            counters: ControlCounters::default(),
            store: None,
            journals: BTreeMap::new(),
            journal_sequence: 0,
            deleting: BTreeMap::new(),
            side_removals: side_removal::SideRemovals::default(),
            now: 0,
            config,
        }
    }

    /// The engine's address plan (ports, workers, addresses).
    pub fn plan(&self) -> &AddressPlan {
        &self.plan
    }

    /// The configuration.
    pub fn config(&self) -> &ControlPathConfig {
        &self.config
    }

    /// Counters as they stand.
    pub fn counters(&self) -> &ControlCounters {
        &self.counters
    }

    /// The fabric services.
    pub fn fabric(&self) -> &Fabric {
        &self.fabric
    }

    /// Known devices.
    pub fn devices(&self) -> &DeviceRegistry {
        &self.devices
    }

    /// A volume.
    pub fn volume(&self, lv: LvId) -> Option<&Volume> {
        self.volumes.get(&lv)
    }

    /// Every volume.
    pub fn volumes(&self) -> impl Iterator<Item = &Volume> + '_ {
        self.volumes.values()
    }

    /// The engine's virtual target.
    pub fn exposure(&self) -> &TargetExposure {
        &self.exposure
    }

    /// Events since the last call.
    pub fn take_events(&mut self) -> Vec<ControlEvent> {
        std::mem::take(&mut self.events)
    }

    /// The next downcall, with the worker it is for.
    pub fn poll_downcall(&mut self) -> Option<(WorkerId, ToFp)> {
        self.out.pop_front()
    }

    /// Whether downcalls are waiting.
    pub fn has_downcalls(&self) -> bool {
        !self.out.is_empty()
    }

    /// Resync progress of every mirror being resynchronized.
    pub fn resyncs(&self) -> Vec<ResyncProgress> {
        self.mirror.progress()
    }

    /// Whether the completion of snapshot volume `snapshot` still runs.
    pub fn snapshot_completing(&self, snapshot: LvId) -> bool {
        self.snapshots.completing(snapshot)
    }

    fn request(&mut self, purpose: RequestPurpose) -> RequestId {
        self.next_request += 1;
        let req = RequestId(self.next_request);
        if purpose != RequestPurpose::Grant {
            self.requests.insert(req, purpose);
        }
        req
    }

    fn dispatch_tag(&mut self, purpose: DispatchPurpose) -> DispatchTag {
        self.next_dispatch += 1;
        let tag = DispatchTag(self.next_dispatch);
        self.dispatches.insert(tag, purpose);
        tag
    }

    fn op_id(&mut self) -> u64 {
        self.next_op += 1;
        self.next_op
    }

    fn send(&mut self, worker: WorkerId, message: ToFp) {
        self.out.push_back((worker, message));
    }

    /// Send to every worker.
    fn broadcast(&mut self, make: impl Fn(RequestId) -> ToFp, purpose: RequestPurpose) {
        for worker in self.plan.workers() {
            let req = self.request(purpose);
            self.send(worker, make(req));
        }
    }

    fn grant_all(&mut self, entry: MappingEntry) {
        self.broadcast(|req| ToFp::AddMapping { req, entry: entry.clone() }, RequestPurpose::Grant);
    }

    /// Grant every segment's redirect table of `lv`, as the control path holds it now.
    fn grant_tables(&mut self, lv: LvId) {
        let tables: Vec<MappingEntry> = self
            .volumes
            .get(&lv)
            .map(|v| {
                v.segments
                    .iter()
                    .map(|m| MappingEntry::Redirects {
                        vseg: m.descriptor().id,
                        table: m.redirects().clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        for entry in tables {
            self.grant_all(entry);
        }
    }

    /// Handle one upcall from `worker`.
    pub fn handle_upcall(&mut self, now: Timestamp, worker: WorkerId, message: ToCp) {
        self.now = self.now.max(now.0);
        match message {
            ToCp::MappingMiss { io, request } => {
                self.counters.faults.record(FaultCause::Miss);
                self.mapping_miss(io, request);
            }
            ToCp::QueueIo { io, request, reason } => {
                self.counters.faults.record(reason.cause);
                self.queued_io(io, request, reason);
            }
            ToCp::DispatchIoComplete { tag, status, data } => match self.dispatches.remove(&tag) {
                Some(DispatchPurpose::Capacity { device, probe }) => {
                    self.capacity_answered(device, probe, &status, data)
                }
                Some(DispatchPurpose::Identify(probe)) => self.identified(probe, &status, data),
                Some(DispatchPurpose::PathTest { device, probe, test }) => {
                    self.path_tested(device, probe, test, &status)
                }
                Some(DispatchPurpose::PathRecheck { device, probe }) => {
                    self.path_rechecked(device, probe, &status)
                }
                Some(DispatchPurpose::IoProbe { device }) => self.io_probed(device, &status),
                Some(DispatchPurpose::ManualLeg { op, leg }) => self.manual_leg_done(op, leg, status, data),
                Some(DispatchPurpose::Copy { copy, leg }) => self.copy_leg_done(copy, leg, status, data),
                Some(DispatchPurpose::ReplicaWrite { lv, apply }) => {
                    self.replica_write_done(lv, apply, status)
                }
                None => {}
            },
            ToCp::InvalidationAck { req, worker, at } => {
                if let Some(RequestPurpose::Revocation(id)) = self.requests.remove(&req) {
                    self.revocation_acked(id, worker, at);
                }
            }
            ToCp::PendingIos { req, worker, ios } => {
                if let Some(RequestPurpose::Revocation(id)) = self.requests.remove(&req) {
                    self.revocation_pending(id, worker, &ios);
                }
            }
            ToCp::Data { req, io, result } => {
                if let Some(RequestPurpose::ManualData(op)) = self.requests.remove(&req) {
                    self.manual_data(op, io, result);
                } else if let Some(RequestPurpose::ManualData(op)) = self.scsi.data_request(req) {
                    self.scsi_data(op, io, result);
                }
            }
            ToCp::Done { req, result } => {
                let purpose = self.requests.remove(&req);
                if result.is_err() {
                    self.counters.failed_requests += 1;
                    if let Some(RequestPurpose::ManualPut(op)) = purpose {
                        self.manual_put_failed(op);
                    }
                }
                match purpose {
                    Some(RequestPurpose::MaskAck(op)) => self.mask_acked(op),
                    Some(RequestPurpose::PathSwitch(device)) => self.path_switch_acked(device),
                    _ => {}
                }
            }
            ToCp::ControlFrame { port, frame } => self.control_frame(port, &frame),
            // Its copies may disagree where the write landed on some legs only.
            ToCp::WriteAborted { request, port, abts } => self.write_aborted(&request, port, abts),
            ToCp::Discovered { .. } | ToCp::Aborted { .. } | ToCp::Statistics { .. } => {}
        }
        let _ = worker;
    }

    /// A frame a worker passed up: the fabric's, a link service's, an abort's. Frames of the
    /// control path's own exchanges that the fabric does not track are dropped.
    pub(super) fn control_frame(&mut self, port: PortId, frame: &dve_fp_api::frame::Frame) {
        let _ = self.fabric.handle_frame(self.now, port, frame.as_slice());
        self.fabric_events();
    }

    /// Advance timers: login retries, drains, resync steps.
    pub fn tick(&mut self, now: Timestamp) {
        self.now = self.now.max(now.0);
        self.fabric.tick(self.now);
        self.fabric_events();
        self.poll_revocations();
        self.retry_side_death_records();
        self.resync_tick();
        self.snapshot_tick();
        self.migration_tick();
        self.retry_failed_journals(None);
        self.replication_tick();
        self.path_recheck_tick();
        self.device_recheck_tick();
        self.awaiting_tick();
        self.free_removed_sides();
    }

    fn fabric_events(&mut self) {
        for event in self.fabric.take_events() {
            match event {
                FabricEvent::Send { port, frame } => {
                    if let Some(worker) = self.plan.worker_of(port) {
                        self.send(worker, ToFp::SendFrame { port, frame });
                    }
                }
                FabricEvent::LoggedIn(node) => {
                    self.grant_all(MappingEntry::Login(PortLogin {
                        fc_id: node.fc_id,
                        port_name: node.port_name,
                    }));
                    self.grant_all(MappingEntry::Route(FabricRoute { fc_id: node.fc_id, port: node.port }));
                    self.hosts.insert(node.port_name, node);
                    self.events
                        .push(ControlEvent::NodeLoggedIn { port_name: node.port_name, port: node.port });
                }
                FabricEvent::LoggedOut(node) => {
                    let key = dve_fp_api::message::MappingKey::Login(node.fc_id);
                    self.broadcast(
                        |req| ToFp::RemoveMapping { req, key: key.clone() },
                        RequestPurpose::Grant,
                    );
                    self.hosts.remove(&node.port_name);
                }
                FabricEvent::TargetReady(node) => self.target_ready(node),
                FabricEvent::HostAbort { .. } => {
                    self.counters.faults.record(FaultCause::Aborted);
                }
            }
        }
    }

    fn capacity_answered(
        &mut self,
        device: DeviceId,
        probe: DeviceId,
        status: &dve_fp_api::io::IoStatus,
        data: Option<bytes::Bytes>,
    ) {
        if self.discovery_answer_lost(probe, status, data.as_ref()) {
            self.ask_capacity(device, probe);
            return;
        }
        let parsed = data.filter(|_| status.is_good()).filter(|d| d.len() >= 12).map(|d| {
            let last = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
            let block = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
            (last + 1, block)
        });
        let Some((blocks, block_size)) = parsed else {
            // The device answered badly (or its answers were lost more than once in a row): try
            // again at its next login.
            return;
        };
        let Some(d) = self.devices.get_mut(device) else { return };
        let was_online = d.online;
        d.blocks = blocks;
        d.block_size = block_size;
        d.online = true;
        let target = d.target;
        let path = d.device_path();
        if self.persist(&[device], &[]).is_err() {
            self.counters.failed_commits += 1;
        }
        if let Some(path) = path {
            self.grant_all(MappingEntry::DevicePath(path));
        }
        self.events.push(ControlEvent::DeviceOnline { device, target, blocks });
        self.awaited_device_online(device);
        self.device_returned(device, was_online);
        if !was_online {
            self.retry_failed_journals(Some(device));
        }
    }

    /// Create a volume (management API). Devices are named by their target's port name.
    pub fn create_volume(&mut self, name: &str, blocks: u64, layout: LayoutSpec) -> Result<LvId, Error> {
        if name.is_empty() {
            return Err(Error::invalid("name", "a volume needs a name"));
        }
        if self.volumes.values().any(|v| v.record.name == name) {
            return Err(Error::DuplicateVolume(name.to_string()));
        }
        let id = self.next_volume_id();
        let block_size =
            layout.devices().first().and_then(|d| self.devices.get(*d)).map_or(512, |d| d.block_size);
        let before = self.devices.clone();
        let volume = Volume::create(id, name.to_string(), blocks, block_size, layout, &mut self.devices)?;
        let descriptor = volume.descriptor()?;
        let claimed: Vec<DeviceId> = volume.record.allocations.iter().map(|a| a.device).collect();
        self.volumes.insert(id, volume);
        if let Err(e) = self.persist(&claimed, &[id]) {
            self.volumes.remove(&id);
            self.devices = before;
            self.counters.failed_commits += 1;
            return Err(e);
        }
        self.grant_all(MappingEntry::Lv(descriptor));
        self.journal_regions(id);
        // Nobody may use the fast path until its first command has met its unit attention.
        self.push_mask(id);
        Ok(id)
    }

    /// The device of a target port name (for management requests that name devices).
    pub fn device_of(&self, target: Wwn) -> Result<DeviceId, Error> {
        self.devices.by_target(target).map(|d| d.id).ok_or(Error::UnknownTarget(target))
    }

    /// The volume named `name`.
    pub fn volume_named(&self, name: &str) -> Result<LvId, Error> {
        self.volumes
            .values()
            .find(|v| v.record.name == name)
            .map(|v| v.record.id)
            .ok_or_else(|| Error::UnknownVolumeName(name.to_string()))
    }

    /// Expose a volume to hosts (by port name) as a LUN of the engine's virtual target.
    pub fn expose(&mut self, lv: LvId, hosts: &[Wwn]) -> Result<u16, Error> {
        self.expose_as(lv, hosts, None)
    }

    /// [`ControlPath::expose`] as LUN `lun`, which must be free or already the volume's:
    /// hosts that share a volume often must see it at one agreed LUN. A refusal names the
    /// volume holding the LUN, or the volume's own LUN when it is exposed as another one.
    pub fn expose_at(&mut self, lv: LvId, hosts: &[Wwn], lun: u16) -> Result<u16, Error> {
        if lun >= LUNS {
            return Err(Error::invalid("lun", format!("{lun} is past the last LUN, {}", LUNS - 1)));
        }
        let name = |c: &ControlPath, lv: LvId| c.volumes.get(&lv).map(|v| v.record.name.clone());
        let own = name(self, lv).ok_or(Error::UnknownVolume(lv))?;
        if let Some(held) = self.exposure.luns.iter().find(|m| m.lun.0 == lun && m.lv != lv) {
            let holder = name(self, held.lv).unwrap_or_else(|| format!("{:?}", held.lv));
            return Err(Error::FailedPrecondition(format!(
                "LUN {lun} holds volume {holder:?}: hide it first or choose another LUN for {own:?}"
            )));
        }
        if let Some(mine) = self.exposure.luns.iter().find(|m| m.lv == lv && m.lun.0 != lun) {
            return Err(Error::FailedPrecondition(format!(
                "volume {own:?} is exposed as LUN {}: a volume has one LUN for every host; hide it \
                 first to move it to LUN {lun}",
                mine.lun.0
            )));
        }
        self.expose_as(lv, hosts, Some(lun))
    }

    /// [`ControlPath::expose`], as LUN `wanted` if it is free (a restart keeps every
    /// volume's LUN, even with a lower one hidden since it was given).
    fn expose_as(&mut self, lv: LvId, hosts: &[Wwn], wanted: Option<u16>) -> Result<u16, Error> {
        let used: BTreeSet<u16> = self.exposure.luns.iter().filter(|m| m.lv != lv).map(|m| m.lun.0).collect();
        let saved = self.volumes.get(&lv).ok_or(Error::UnknownVolume(lv))?.record.clone();
        let volume = self.volumes.get_mut(&lv).ok_or(Error::UnknownVolume(lv))?;
        let lun = match self.exposure.luns.iter().find(|m| m.lv == lv) {
            Some(m) => m.lun.0,
            None => wanted
                .filter(|l| *l < LUNS && !used.contains(l))
                .into_iter()
                .chain(0..LUNS)
                .find(|l| !used.contains(l))
                .ok_or_else(|| Error::invalid("LUN", "no free LUN"))?,
        };
        volume.record.lun = lun;
        let mut added = Vec::new();
        for h in hosts {
            if !volume.record.hosts.contains(h) {
                volume.record.hosts.push(*h);
                added.push(*h);
            }
        }
        if let Err(e) = self.persist(&[], &[lv]) {
            if let Some(v) = self.volumes.get_mut(&lv) {
                v.record = saved;
            }
            self.counters.failed_commits += 1;
            return Err(e);
        }
        let Some(volume) = self.volumes.get(&lv) else { return Err(Error::UnknownVolume(lv)) };
        let mapping = LunMapping {
            lun: dve_fp_api::ids::Lun(lun),
            lv,
            hosts: HostSet::only(volume.record.hosts.clone()),
        };
        self.exposure.luns.retain(|m| m.lv != lv);
        self.exposure.luns.push(mapping);
        self.exposure.luns.sort_by_key(|m| m.lun);
        let system = self.config.switch_name.0;
        self.scsi.volume_exposed(lv, volume, system, self.exposure.port_name);
        for other in self.scsi.inventory_changed(&added, lv) {
            self.push_mask(other);
        }
        self.push_exposure();
        Ok(lun)
    }

    fn push_exposure(&mut self) {
        let exposure = self.exposure.clone();
        self.broadcast(|req| ToFp::Expose { req, exposure: exposure.clone() }, RequestPurpose::Grant);
        let visible_to: BTreeSet<Wwn> =
            self.volumes.values().flat_map(|v| v.record.hosts.iter().copied()).collect();
        self.fabric.set_virtual_target(VirtualTarget {
            fc_id: self.exposure.fc_id,
            port_name: self.exposure.port_name,
            node_name: self.exposure.node_name,
            visible_to,
        });
    }

    fn mapping_miss(&mut self, io: IoTag, request: HostIo) {
        let verdict = self.miss_verdict(&request);
        if matches!(verdict, dve_fp_api::message::MissVerdict::Queue) {
            self.counters.misses_queued += 1;
        } else {
            self.counters.misses_continued += 1;
        }
        self.send(io.worker, ToFp::MappingMissReply { io, verdict });
    }

    fn queued_io(&mut self, io: IoTag, request: HostIo, reason: QueueReason) {
        match reason.cause {
            FaultCause::NotReadWrite | FaultCause::NotExposed | FaultCause::MaskedLun => {
                self.scsi_command(io, request, reason)
            }
            FaultCause::Aborted => {}
            FaultCause::DownstreamError => self.downstream_error(io, request, reason),
            FaultCause::Permission => self.permission_fault(io, request),
            FaultCause::JournalFull => {
                self.swap_journal(io.worker, &request);
                self.start_manual(io, request);
            }
            _ => self.start_manual(io, request),
        }
    }
}
