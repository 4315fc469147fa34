//! The simulation proper: a scenario's hosts, disks, links and engines wired together and run
//! in virtual time. Hosts are real FCP initiators driven by workloads, disks are FCP targets,
//! engines run the real fast-path workers and control path ([`crate::switch`]); links carry
//! byte-exact frames. Every write is recorded in the integrity oracle and every read checked
//! against it. The same scenario and seed give the same report, byte for byte.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::ops::Range;

use dve_controlpath::ControlEvent;
use dve_controlpath::control_path::{ReplicationProgress, SnapshotOptions};
use dve_controlpath::store::{MemoryStore, MetadataStore};
use dve_controlpath::volume::LayoutSpec;
use dve_fp_api::fault::FaultCause;
use dve_fp_api::ids::{LvId, PortId, Wwn};
use dve_fp_api::mapping::SideState;
use dve_fp_api::stats::FpStatistics;
use dve_wire::pcap::PcapWriter;

use crate::crash_store::{CrashImage, CrashableStore};
use crate::disk::{DiskConfig, DiskMode, DiskTarget, KeptBlock, LatencyModel};
use crate::engine::{EventQueue, IntMap, NS_PER_MS, SimRng, SimTime};
use crate::host::{Completion, HostOp, HostRequest, Initiator, InitiatorConfig, IoFailure, RequestId};
use crate::link::{Link, LinkVerdict};
use crate::oracle::Oracle;
use crate::report::options::RunOptions;
use crate::report::{
    EngineReport, FlowReport, IoKind, LinkReport, OracleVerdict, ReplicaReport, Report, TimelineEntry,
    Violation, VolumeRecorder,
};
use crate::scenario::{EventAction, Layout, NodeRef, Pattern, PortRef, Scenario};
use crate::switch::SwitchNode;
use crate::workload::{AccessPattern, PlannedOp, Workload, WorkloadSpec, stamp_blocks};

/// Block size every simulated device uses.
const BLOCK: u32 = 512;
/// How often engines run their timers (control-path drains, resync steps, expiry).
const ENGINE_TICK_NS: u64 = 100_000;
/// Largest burst a disk asks for in one XFER_RDY, as real targets limit it.
const DISK_MAX_BURST: u32 = 256 * 1024;
/// A device I/O unanswered this long is aborted by the fast path.
const DOWNSTREAM_TIMEOUT_NS: u64 = 200 * NS_PER_MS;
/// Hosts give up on an exchange after this long (longer than the fast path's timeout, so
/// the switch recovers first).
const HOST_IO_TIMEOUT_NS: u64 = 1_000 * NS_PER_MS;

/// Why a run could not happen.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A capture file could not be created or written.
    #[error("capture {path}: {reason}")]
    Capture {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The scenario asks for something the engine refused at set-up.
    #[error("set-up of engine {engine}: {reason}")]
    Setup {
        /// The engine.
        engine: String,
        /// What it refused.
        reason: String,
    },
}

/// Something scheduled.
#[derive(Debug)]
enum Event {
    /// A frame arrives at one end of a link.
    Deliver {
        link: usize,
        to_engine: bool,
        epoch: u64,
        frame: Vec<u8>,
    },
    HostTimer(usize),
    /// The injected restart of engine `.0` (see [`InjectedFaults::kill_after_commit`]).
    InjectedRestart(usize),
    /// A disk's port `.1` has timed work.
    DiskTimer(usize, usize),
    EngineTick(usize),
    WorkloadWake(usize),
    Timeline(usize),
}

/// One cable between a node (a host's or disk's path) and an engine port.
#[derive(Debug)]
struct Cable {
    link: Link,
    node: NodeRef,
    /// Which of the node's paths.
    path: usize,
    engine: usize,
    port: u16,
    rng_to_engine: SimRng,
    rng_to_node: SimRng,
    /// Parameters before a black hole, to restore them.
    saved: Option<crate::link::LinkParams>,
    capture: Option<PcapWriter<BufWriter<File>>>,
    capture_path: String,
}

#[derive(Debug)]
struct HostNode {
    initiator: Initiator,
    cable: usize,
    timer_at: Option<u64>,
    /// Whether its workloads run: from its first readiness until it is found offline.
    ready: bool,
    /// The initiator's `is_ready()` and `next_timer()` at a generation of its (see
    /// `Initiator::generation`): a host's frames are mostly read data, which changes neither.
    readiness_at: Option<(u64, bool)>,
    next_timer_at: Option<(u64, Option<u64>)>,
}

/// A disk: one port per path, every port over the same blocks.
#[derive(Debug)]
struct DiskNode {
    ports: Vec<DiskPort>,
}

#[derive(Debug)]
struct DiskPort {
    target: DiskTarget,
    cable: usize,
    timer_at: Option<u64>,
    /// The target's `next_timer()` at a generation of its (see `DiskTarget::generation`):
    /// a disk's frames are mostly write data in the middle of a burst, which leaves it as
    /// it was.
    next_timer_at: Option<(u64, Option<u64>)>,
}

impl DiskNode {
    /// The disk's blocks and failure mode, through its first port.
    fn unit(&self) -> &DiskTarget {
        &self.ports[0].target
    }

    fn unit_mut(&mut self) -> &mut DiskTarget {
        &mut self.ports[0].target
    }
}

/// Where one engine is in its set-up.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Setup {
    /// Waiting for its disks to be discovered.
    Discovering,
    /// Volumes created and exposed; hosts started.
    Running,
}

#[derive(Debug)]
struct EngineNode {
    switch: SwitchNode,
    setup: Setup,
    /// Volume index -> the engine's volume.
    volumes: BTreeMap<usize, LvId>,
    /// Snapshot volumes -> (source volume index, snapshot name).
    snapshots: BTreeMap<LvId, (usize, String)>,
    /// Replicated volumes.
    replicas: BTreeMap<LvId, ReplicaWatch>,
    /// Frames in and out of its ports.
    frames: u64,
    /// What a killed engine's control path had committed, kept for its restart.
    saved_store: Option<Box<dyn MetadataStore>>,
    /// The workers' statistics of its earlier lives (before each kill).
    earlier_lives: Vec<FpStatistics>,
    /// Whether it has been restarted.
    restarted: bool,
    /// Metadata transactions its earlier lives committed.
    earlier_commits: u64,
}

/// What the simulator keeps to verify a replica without copying whole volumes at every
/// consistency point: the primary's full image once, then per cycle only the blocks written
/// in it, as the primary held them at the cycle's consistency point (checked by the oracle
/// there). Applying a cycle moves the expected image forward; the replica's blocks of that
/// cycle must equal it at once, and the whole replica must at its first cycle and at the end.
#[derive(Debug)]
struct ReplicaWatch {
    volume: usize,
    disk: usize,
    /// Blocks hosts wrote (or began writing) since the last consistency point: the ranges as
    /// written, overlapping and repeated, merged only at the consistency point
    /// ([`block_runs`]). A write costs a push, not a tree insertion per block.
    dirty: Vec<Range<u64>>,
    /// The image the replica must show once the last cycle folded in is applied, as the
    /// disks keep blocks (by content: no bytes made, 16-24 bytes a block).
    expected: Option<Vec<KeptBlock>>,
    /// Per consistency point not yet applied: the blocks written in its cycle, as kept.
    deltas: BTreeMap<u64, Vec<(u64, Vec<KeptBlock>)>>,
    /// Whether the whole replica has been compared once.
    compared_whole: bool,
    /// The replica has shown an image since the watch (re)started: the end compares it.
    shown: bool,
    consistency_points: u64,
    cycles_verified: u64,
    /// What the engine's earlier lives applied: a restarted control path counts afresh, and
    /// the report counts the whole run, as it does the cycles verified.
    earlier_lives: AppliedTotals,
}

/// What an engine's replication applied to one replica in its earlier lives.
#[derive(Debug, Clone, Copy, Default)]
struct AppliedTotals {
    cycles: u64,
    blocks: u64,
    /// The lag of the last cycle applied, if one was.
    last_lag_ns: Option<u64>,
    max_lag_ns: u64,
}

impl AppliedTotals {
    /// Add what one life applied.
    fn add(&mut self, life: &ReplicationProgress) {
        self.cycles += life.cycles_applied;
        self.blocks += life.blocks_applied;
        if life.cycles_applied > 0 {
            self.last_lag_ns = Some(life.last_lag_ns);
        }
        self.max_lag_ns = self.max_lag_ns.max(life.max_lag_ns);
    }
}

impl ReplicaWatch {
    /// The replication begins again with a whole copy (its engine restarted, which also
    /// numbers the cycles afresh, or the volume's journal came back into service), so what
    /// was expected of cycles before is void (the first consistency point after it is
    /// taken whole, as at the start).
    fn restart(&mut self) {
        self.dirty.clear();
        self.expected = None;
        self.deltas.clear();
        self.compared_whole = false;
        self.shown = false;
    }
}

/// What closes a flow's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlowEnd {
    /// The snapshot volume's completion.
    Snapshot(LvId),
    /// The volume's migration finishing.
    Migration(LvId),
    /// The side resynchronized.
    Resync(LvId, usize),
    /// The end of the run (replication never ends).
    RunEnd,
}

/// A data-service flow on the timeline and the engine's host I/O counters when it began.
#[derive(Debug, Clone)]
struct FlowWindow {
    flow: String,
    engine: usize,
    end: FlowEnd,
    start_ns: u64,
    start: (u64, u64),
    ended: Option<(u64, (u64, u64))>,
}

/// A workload bound to its host and volume.
#[derive(Debug)]
struct WorkloadNode {
    workload: Workload,
    host: usize,
    volume: usize,
    started: bool,
    wake_at: Option<u64>,
}

/// An I/O a host has in flight.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    workload: usize,
    op: PlannedOp,
    write_id: u64,
}

/// The whole simulated fabric.
struct World<'a> {
    scenario: &'a Scenario,
    now: u64,
    end: u64,
    queue: EventQueue<Event>,
    cables: Vec<Cable>,
    /// The cable on each engine port, by engine then port (`usize::MAX`: none): looked up
    /// for every frame an engine transmits.
    port_cables: Vec<Vec<usize>>,
    /// The frames an engine call transmits, reused from call to call.
    engine_out: Vec<(PortId, Vec<u8>)>,
    hosts: Vec<HostNode>,
    disks: Vec<DiskNode>,
    engines: Vec<EngineNode>,
    workloads: Vec<WorkloadNode>,
    /// Requests in flight, by host and request id. Only inserted, removed and counted,
    /// never iterated: a hash map keeps that cheap (one entry per I/O).
    in_flight: IntMap<(usize, RequestId), InFlight>,
    recorders: Vec<VolumeRecorder>,
    oracle: Oracle,
    timeline: Vec<TimelineEntry>,
    next_write_id: u64,
    frames: u64,
    /// Replicated volumes: volume index -> engine and volume id there.
    replicated: BTreeMap<usize, (usize, LvId)>,
    /// Data-service flows, in the order they began.
    flows: Vec<FlowWindow>,
    /// What set-up wrote into prefilled volumes: per volume, (lba, blocks, write id).
    prefilled: BTreeMap<usize, Vec<(u64, u64, u64)>>,
    faults: InjectedFaults,
    /// The first engine's store as it was right after the transaction an injected kill
    /// follows.
    crash_image: CrashImage,
}

/// Faults injected into the real code, for tests that prove the oracle catches them.
#[derive(Clone, Copy, Debug, Default)]
pub struct InjectedFaults {
    /// The first engine's worker 0 misdirects its n-th fast-path write by one block.
    pub misdirect_write: Option<u64>,
    /// The first engine is killed right after its n-th metadata transaction commits (so
    /// between that one and the next), and restarted this many ns later.
    pub kill_after_commit: Option<(u64, u64)>,
}

/// After the end, I/O still in flight is given this long to finish before mirrors are
/// compared.
const DRAIN_NS: u64 = 5_000 * NS_PER_MS;

/// Run a scenario to its end and report.
pub fn run(scenario: &Scenario, options: &RunOptions) -> Result<Report, RunError> {
    run_with_faults(scenario, options, InjectedFaults::default())
}

/// [`run`], with faults injected (tests only).
pub fn run_with_faults(
    scenario: &Scenario,
    options: &RunOptions,
    faults: InjectedFaults,
) -> Result<Report, RunError> {
    let scenario = options.effective_scenario(scenario);
    let mut world = World::build(&scenario, faults)?;
    world.open_captures(options)?;
    let mut progress = options.progress_sink();
    let total = SimTime(world.end);
    let mut events = 0u64;
    while let Some(at) = world.queue.peek_time() {
        // Past the end only I/O already in flight is finished, so mirrors can be compared, and
        // a replication cycle being written, so its replica shows a whole consistency point.
        if at.as_ns() > world.end
            && ((world.in_flight.is_empty() && !world.replica_being_written())
                || at.as_ns() > world.end + DRAIN_NS)
        {
            break;
        }
        let Some((at, event)) = world.queue.pop() else { break };
        world.now = at.as_ns();
        world.handle(event)?;
        events += 1;
        if events.is_multiple_of(4096) {
            progress.update(SimTime(world.now), total);
        }
    }
    world.now = world.now.max(world.end);
    progress.update(total, total);
    progress.finish();
    world.finish_captures()?;
    world.compare_mirrors();
    world.check_snapshots();
    world.check_replicas();
    Ok(world.report())
}

fn node_mac(kind: u8, index: usize) -> [u8; 6] {
    [0x02, 0x51, kind, 0, (index >> 8) as u8, index as u8]
}

impl<'a> World<'a> {
    fn build(scenario: &'a Scenario, faults: InjectedFaults) -> Result<World<'a>, RunError> {
        let rng = SimRng::new(scenario.seed);
        let mut engines = Vec::new();
        for (i, spec) in scenario.engines.iter().enumerate() {
            let ports = scenario.engine_ports(i).len().max(1) as u16;
            let workers = spec.workers.clamp(1, 14) as u8;
            let domain = (i + 1).min(239) as u8;
            engines.push(EngineNode {
                switch: SwitchNode::new(
                    domain,
                    ports,
                    workers,
                    DOWNSTREAM_TIMEOUT_NS,
                    faults.misdirect_write.filter(|_| i == 0),
                ),
                setup: Setup::Discovering,
                volumes: BTreeMap::new(),
                snapshots: BTreeMap::new(),
                replicas: BTreeMap::new(),
                frames: 0,
                saved_store: None,
                earlier_lives: Vec::new(),
                restarted: false,
                earlier_commits: 0,
            });
        }
        let mut cables = Vec::new();
        let mut hosts = Vec::new();
        let mut disks = Vec::new();
        for engine in 0..scenario.engines.len() {
            for port in scenario.engine_ports(engine) {
                if port.path != 0 && matches!(port.peer, NodeRef::Host(_)) {
                    // A host's initiator has one port: only its first path is cabled.
                    continue;
                }
                let params = match port.peer {
                    NodeRef::Host(h) => scenario.hosts[h].link.clone(),
                    NodeRef::Disk(d) => scenario.disks[d].link.clone(),
                };
                let label = format!("{}:{}", scenario.node_name(port.peer), port.path);
                cables.push(Cable {
                    link: Link::new(params),
                    node: port.peer,
                    path: port.path,
                    engine,
                    port: port.port as u16,
                    rng_to_engine: rng.fork(&format!("link:{label}:up")),
                    rng_to_node: rng.fork(&format!("link:{label}:down")),
                    saved: None,
                    capture: None,
                    capture_path: String::new(),
                });
            }
        }
        let cable_of = |node: NodeRef, path: usize| {
            cables.iter().position(|c| c.node == node && c.path == path).unwrap_or(usize::MAX)
        };
        for (h, spec) in scenario.hosts.iter().enumerate() {
            let mut config = InitiatorConfig::new(
                spec.name.clone(),
                spec.port_wwpn(0),
                spec.wwpn | (1 << 60),
                node_mac(1, h),
            );
            config.io_timeout_ns = HOST_IO_TIMEOUT_NS;
            hosts.push(HostNode {
                initiator: Initiator::new(config),
                cable: cable_of(NodeRef::Host(h), 0),
                timer_at: None,
                ready: false,
                readiness_at: None,
                next_timer_at: None,
            });
        }
        for (d, spec) in scenario.disks.iter().enumerate() {
            let mut config = DiskConfig::new(
                spec.name.clone(),
                spec.port_wwpn(0),
                spec.wwpn | (1 << 60),
                node_mac(2, d),
                spec.capacity_blocks(),
            );
            config.block_size = BLOCK;
            config.max_burst = DISK_MAX_BURST;
            config.latency = LatencyModel {
                fixed_ns: spec.latency_ns,
                per_kib_ns: spec.ns_per_kib,
                queue_depth: spec.queue_depth.max(1) as u32,
            };
            let mut ports = vec![DiskTarget::new(config.clone())];
            for path in 1..spec.paths {
                let port_config = DiskConfig {
                    port_name: spec.port_wwpn(path),
                    mac: node_mac(2 + path as u8 * 16, d),
                    ..config.clone()
                };
                let port = ports[0].another_port(port_config);
                ports.push(port);
            }
            let ports = ports
                .into_iter()
                .enumerate()
                .map(|(path, target)| DiskPort {
                    target,
                    cable: cable_of(NodeRef::Disk(d), path),
                    timer_at: None,
                    next_timer_at: None,
                })
                .collect();
            disks.push(DiskNode { ports });
        }
        let workloads = scenario
            .workloads
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let volume = &scenario.volumes[w.volume];
                let spec = WorkloadSpec {
                    read_fraction: w.read_fraction,
                    block_size_blocks: w.block_blocks() as u32,
                    queue_depth: w.queue_depth as u32,
                    pattern: match w.pattern {
                        Pattern::Random => AccessPattern::Random,
                        Pattern::Sequential => AccessPattern::Sequential,
                    },
                    think_time_ns: w.think_ns,
                    verify_after_write: w.verify,
                    region: (0, w.span_blocks.min(volume.size_blocks())),
                    start_ns: w.start_ms * NS_PER_MS,
                    stop_ns: w.stop_ms * NS_PER_MS,
                };
                let seed = rng.fork(&format!("workload:{i}")).below(u64::MAX);
                WorkloadNode {
                    workload: Workload::new(spec, seed),
                    host: w.host,
                    volume: w.volume,
                    started: false,
                    wake_at: None,
                }
            })
            .collect();
        let interval = scenario.sample_interval_ns();
        let end = scenario.duration().as_ns();
        let recorders = scenario
            .volumes
            .iter()
            .map(|v| VolumeRecorder::new(v.name.clone(), v.layout.kind().name(), interval, end))
            .collect();
        let mut port_cables: Vec<Vec<usize>> = vec![Vec::new(); engines.len()];
        for (i, cable) in cables.iter().enumerate() {
            if let Some(ports) = port_cables.get_mut(cable.engine) {
                let port = usize::from(cable.port);
                if ports.len() <= port {
                    ports.resize(port + 1, usize::MAX);
                }
                // The first cable on a port is the one frames take.
                if ports[port] == usize::MAX {
                    ports[port] = i;
                }
            }
        }
        let mut world = World {
            scenario,
            now: 0,
            end,
            queue: EventQueue::new(),
            cables,
            port_cables,
            engine_out: Vec::new(),
            hosts,
            disks,
            engines,
            workloads,
            in_flight: IntMap::default(),
            recorders,
            oracle: Oracle::new(),
            timeline: Vec::new(),
            next_write_id: 1,
            frames: 0,
            replicated: BTreeMap::new(),
            flows: Vec::new(),
            prefilled: BTreeMap::new(),
            faults,
            crash_image: CrashImage::default(),
        };
        for e in 0..world.engines.len() {
            // Every engine keeps its metadata, so a killed engine restarts into what it
            // committed.
            let image_after = faults.kill_after_commit.filter(|_| e == 0).map(|(n, _)| n);
            let store = CrashableStore::over(MemoryStore::new(), image_after, world.crash_image.clone());
            if let Err(error) = world.engines[e].switch.control_mut().attach_store(Box::new(store)) {
                return Err(RunError::Setup {
                    engine: scenario.engines[e].name.clone(),
                    reason: error.to_string(),
                });
            }
            world.queue.push(SimTime(0), Event::EngineTick(e));
        }
        for d in 0..world.disks.len() {
            for path in 0..world.disks[d].ports.len() {
                let frames = world.disks[d].ports[path].target.start(0);
                world.disk_sends(d, path, frames);
            }
        }
        for (i, event) in scenario.events.iter().enumerate() {
            world.queue.push(event.at(), Event::Timeline(i));
        }
        Ok(world)
    }

    fn open_captures(&mut self, options: &RunOptions) -> Result<(), RunError> {
        for request in &options.pcaps {
            let path = request.path.display().to_string();
            let port = request
                .resolve(self.scenario)
                .map_err(|reason| RunError::Capture { path: path.clone(), reason })?;
            let cable = match port {
                PortRef::Node { node, path } => {
                    self.cables.iter().position(|c| c.node == node && c.path == path)
                }
                PortRef::Engine { engine, port } => {
                    self.cables.iter().position(|c| c.engine == engine && usize::from(c.port) == port)
                }
            };
            let Some(cable) = cable else {
                return Err(RunError::Capture {
                    path,
                    reason: "that port is not cabled in the simulation (a host's initiator has one port: only its first path is)".into(),
                });
            };
            let file = File::create(&request.path)
                .map_err(|e| RunError::Capture { path: path.clone(), reason: e.to_string() })?;
            let writer = PcapWriter::new(BufWriter::new(file))
                .map_err(|e| RunError::Capture { path: path.clone(), reason: e.to_string() })?;
            self.cables[cable].capture = Some(writer);
            self.cables[cable].capture_path = path;
        }
        Ok(())
    }

    fn finish_captures(&mut self) -> Result<(), RunError> {
        for cable in &mut self.cables {
            if let Some(mut writer) = cable.capture.take() {
                writer.flush().map_err(|e| RunError::Capture {
                    path: cable.capture_path.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Result<(), RunError> {
        match event {
            Event::Deliver { link, to_engine, epoch, frame } => {
                self.deliver(link, to_engine, epoch, frame)?
            }
            Event::HostTimer(h) => {
                self.hosts[h].timer_at = None;
                let frames = self.hosts[h].initiator.on_timer(self.now);
                self.host_sends(h, frames);
                self.after_host(h);
            }
            Event::DiskTimer(d, path) => {
                self.disks[d].ports[path].timer_at = None;
                let frames = self.disks[d].ports[path].target.on_timer(self.now);
                self.disk_sends(d, path, frames);
                self.after_disk(d, path);
            }
            Event::EngineTick(e) => {
                let mut out = std::mem::take(&mut self.engine_out);
                self.engines[e].switch.tick_into(self.now, &mut out);
                self.engine_sends(e, &mut out);
                self.engine_out = out;
                self.engine_events(e)?;
                self.queue.push(SimTime(self.now + ENGINE_TICK_NS), Event::EngineTick(e));
            }
            Event::WorkloadWake(w) => {
                self.workloads[w].wake_at = None;
                self.pump_workload(w);
            }
            Event::Timeline(i) => self.timeline_event(i),
            Event::InjectedRestart(e) => {
                let outcome = self.restart_engine(e);
                self.timeline.push(TimelineEntry {
                    at_ns: self.now,
                    event: "injected restart".into(),
                    outcome,
                });
            }
        }
        Ok(())
    }

    fn deliver(&mut self, link: usize, to_engine: bool, epoch: u64, frame: Vec<u8>) -> Result<(), RunError> {
        let cable = &mut self.cables[link];
        let direction = if to_engine { &cable.link.a_to_b } else { &cable.link.b_to_a };
        if !direction.is_delivery_valid(epoch) {
            return Ok(());
        }
        self.frames += 1;
        if let Some(writer) = cable.capture.as_mut() {
            writer
                .write_frame(self.now, &frame)
                .map_err(|e| RunError::Capture { path: cable.capture_path.clone(), reason: e.to_string() })?;
        }
        let (node, path, engine, port) = (cable.node, cable.path, cable.engine, cable.port);
        if to_engine {
            self.engines[engine].frames += 1;
            let mut out = std::mem::take(&mut self.engine_out);
            self.engines[engine].switch.receive_into(self.now, PortId(port), &frame, &mut out);
            self.engine_sends(engine, &mut out);
            self.engine_out = out;
            self.engine_events(engine)?;
        } else {
            match node {
                NodeRef::Host(h) => {
                    let frames = self.hosts[h].initiator.receive(self.now, &frame);
                    self.host_sends(h, frames);
                    self.after_host(h);
                }
                NodeRef::Disk(d) => {
                    // The disk keeps write data in its frame, or recycles the frame.
                    let frames = self.disks[d].ports[path].target.receive_frame(self.now, frame);
                    self.disk_sends(d, path, frames);
                    self.after_disk(d, path);
                    return Ok(());
                }
            }
        }
        crate::engine::recycle_frame_buffer(frame);
        Ok(())
    }

    fn transmit(&mut self, cable: usize, to_engine: bool, mut frame: Vec<u8>) {
        let Some(c) = self.cables.get_mut(cable) else { return };
        let (direction, rng) = if to_engine {
            (&mut c.link.a_to_b, &mut c.rng_to_engine)
        } else {
            (&mut c.link.b_to_a, &mut c.rng_to_node)
        };
        let verdict = direction.send(SimTime(self.now), frame.len(), rng);
        let (at, epoch) = match verdict {
            LinkVerdict::Deliver { at, epoch } => (at, epoch),
            LinkVerdict::Corrupt { at, epoch, byte_index, bit } => {
                if let Some(b) = frame.get_mut(byte_index) {
                    *b ^= 1 << (bit % 8);
                }
                (at, epoch)
            }
            LinkVerdict::Drop(_) => return,
        };
        // A link direction delivers in the order it sends: one ordered stream each.
        self.queue.push_ordered(
            cable * 2 + usize::from(to_engine),
            at,
            Event::Deliver { link: cable, to_engine, epoch, frame },
        );
    }

    fn host_sends(&mut self, h: usize, frames: Vec<Vec<u8>>) {
        self.send_to_engine(self.hosts[h].cable, frames);
    }

    fn disk_sends(&mut self, d: usize, path: usize, frames: Vec<Vec<u8>>) {
        self.send_to_engine(self.disks[d].ports[path].cable, frames);
    }

    /// Frames a node sends on its end of `cable`.
    fn send_to_engine(&mut self, cable: usize, frames: Vec<Vec<u8>>) {
        for frame in frames {
            self.transmit(cable, true, frame);
        }
    }

    /// Settles engine `e` and sends what it transmits.
    fn engine_settle(&mut self, e: usize) {
        let mut out = std::mem::take(&mut self.engine_out);
        self.engines[e].switch.settle_into(self.now, &mut out);
        self.engine_sends(e, &mut out);
        self.engine_out = out;
    }

    /// Sends the frames an engine transmits, leaving `out` empty.
    fn engine_sends(&mut self, engine: usize, out: &mut Vec<(PortId, Vec<u8>)>) {
        for (port, frame) in out.drain(..) {
            self.engines[engine].frames += 1;
            let cable = self
                .port_cables
                .get(engine)
                .and_then(|ports| ports.get(usize::from(port.0)))
                .copied()
                .unwrap_or(usize::MAX);
            if cable != usize::MAX {
                self.transmit(cable, false, frame);
            }
        }
    }

    fn after_disk(&mut self, d: usize, path: usize) {
        let port = &mut self.disks[d].ports[path];
        let target = &port.target;
        let next_timer = remembered(&mut port.next_timer_at, target.generation(), || target.next_timer());
        if let Some(at) = next_timer
            && port.timer_at.is_none_or(|t| at < t)
        {
            port.timer_at = Some(at);
            self.queue.push(SimTime(at.max(self.now)), Event::DiskTimer(d, path));
        }
    }

    /// Sets a disk's failure mode on every one of its ports (they share one logical unit).
    fn set_disk_mode(&mut self, d: usize, set: impl Fn(&mut DiskTarget)) {
        for port in &mut self.disks[d].ports {
            set(&mut port.target);
        }
    }

    fn after_host(&mut self, h: usize) {
        while let Some(completion) = self.hosts[h].initiator.poll_completion() {
            self.completed(h, completion);
        }
        let host = &mut self.hosts[h];
        let initiator = &host.initiator;
        let ready = remembered(&mut host.readiness_at, initiator.generation(), || initiator.is_ready());
        // Workloads start when their host first is ready, and resume when it is ready again
        // after losing its link (they wait meanwhile, as applications over a path that queues
        // I/O do).
        if ready && !self.hosts[h].ready {
            self.hosts[h].ready = true;
            for w in 0..self.workloads.len() {
                if self.workloads[w].host == h {
                    self.workloads[w].started = true;
                    self.pump_workload(w);
                }
            }
        }
        let host = &mut self.hosts[h];
        let initiator = &host.initiator;
        let next_timer =
            remembered(&mut host.next_timer_at, initiator.generation(), || initiator.next_timer());
        if let Some(at) = next_timer
            && self.hosts[h].timer_at.is_none_or(|t| at < t)
        {
            self.hosts[h].timer_at = Some(at);
            self.queue.push(SimTime(at.max(self.now)), Event::HostTimer(h));
        }
    }

    /// The engine serving the volume, its target port name and the volume's LUN.
    fn volume_address(&self, volume: usize) -> Option<(u64, u16)> {
        let engine = self.engines.iter().find(|e| e.volumes.contains_key(&volume))?;
        let lv = engine.volumes.get(&volume)?;
        let control = engine.switch.control();
        let lun = control.volume(*lv)?.record.lun;
        Some((control.exposure().port_name.0, lun))
    }

    fn pump_workload(&mut self, w: usize) {
        if !self.workloads[w].started {
            return;
        }
        let (h, volume) = (self.workloads[w].host, self.workloads[w].volume);
        if !self.hosts[h].initiator.is_online() {
            self.hosts[h].ready = false;
            return;
        }
        let in_flight = self.workloads[w].workload.in_flight();
        let ops = self.workloads[w].workload.next_ops(self.now, in_flight);
        let address = self.volume_address(volume);
        let scenario = self.scenario;
        let volume_name = &scenario.volumes[volume].name;
        for op in ops {
            let Some((target, lun)) = address else {
                self.workloads[w].workload.on_complete(self.now, op, &Err(IoFailure::TargetGone));
                self.recorders[volume].record_error();
                continue;
            };
            let mut write_id = 0;
            let host_op = match op {
                PlannedOp::Write { lba, blocks } => {
                    write_id = self.next_write_id;
                    self.next_write_id += 1;
                    HostOp::Write { lba, data: stamp_blocks(write_id, lba, blocks, BLOCK) }
                }
                PlannedOp::Read { lba, blocks } | PlannedOp::VerifyRead { lba, blocks } => {
                    HostOp::Read { lba, blocks }
                }
            };
            match self.hosts[h].initiator.submit(self.now, HostRequest { target, lun, op: host_op }) {
                Ok((id, frames)) => {
                    if op.is_write() {
                        self.replica_dirty(volume, op.lba(), u64::from(op.blocks()));
                        self.oracle.write_submitted(
                            volume_name,
                            op.lba(),
                            u64::from(op.blocks()),
                            write_id,
                            self.now,
                        );
                    } else {
                        self.oracle.read_submitted(self.now);
                    }
                    self.in_flight.insert((h, id), InFlight { workload: w, op, write_id });
                    self.host_sends(h, frames);
                }
                Err(_) => {
                    self.workloads[w].workload.on_complete(self.now, op, &Err(IoFailure::TargetGone));
                    self.recorders[volume].record_error();
                }
            }
        }
        if let Some(at) = self.workloads[w].workload.next_wakeup()
            && at > self.now
            && self.workloads[w].wake_at.is_none_or(|t| at < t)
        {
            self.workloads[w].wake_at = Some(at);
            self.queue.push(SimTime(at), Event::WorkloadWake(w));
        }
        self.after_host(h);
    }

    fn completed(&mut self, h: usize, completion: Completion) {
        let Some(io) = self.in_flight.remove(&(h, completion.id)) else { return };
        let volume = self.workloads[io.workload].volume;
        let scenario = self.scenario;
        let name = &scenario.volumes[volume].name;
        let (lba, blocks) = (io.op.lba(), u64::from(io.op.blocks()));
        let ok = completion.result.as_ref().is_ok_and(|o| o.is_good());
        self.recorders[volume].record_retries(u64::from(completion.retries));
        let bytes = blocks * u64::from(BLOCK);
        if ok {
            let kind = if io.op.is_write() { IoKind::Write } else { IoKind::Read };
            self.recorders[volume].record(SimTime(self.now), kind, bytes, completion.latency());
        } else {
            self.recorders[volume].record_error();
        }
        if io.op.is_write() {
            self.replica_dirty(volume, lba, blocks);
            self.oracle.write_completed(name, lba, blocks, io.write_id, self.now, ok);
        } else if let Some(outcome) = completion.result.as_ref().ok().filter(|_| ok) {
            let host = &scenario.hosts[h].name;
            self.oracle.read_completed(
                host,
                name,
                lba,
                BLOCK as usize,
                completion.submitted,
                self.now,
                &outcome.data,
            );
        } else {
            self.oracle.read_finished(completion.submitted);
        }
        self.workloads[io.workload].workload.on_complete(self.now, io.op, &completion.result);
        if let Ok(outcome) = completion.result {
            self.hosts[h].initiator.recycle_read_buffer(outcome.data);
        }
        let w = io.workload;
        self.pump_workload(w);
    }

    /// React to what an engine's control path reported: finish set-up once its disks are
    /// discovered, and note mirror events on the timeline.
    fn engine_events(&mut self, e: usize) -> Result<(), RunError> {
        if let Some((n, restart_after)) = self.faults.kill_after_commit.filter(|_| e == 0)
            && self.engines[0].switch.running
            && self.engines[0].switch.control().counters().commits >= n
        {
            self.faults.kill_after_commit = None;
            // What the engine reported up to its death happened (it was committed).
            let events = self.engines[0].switch.control_mut().take_events();
            if !events.is_empty() {
                self.note_control_events(0, events);
            }
            let outcome = self.kill_engine(0);
            // The engine died right after that transaction: later ones of the same instant
            // never reached the disk.
            let image = self.crash_image.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            if let Some(image) = image {
                self.engines[0].saved_store =
                    Some(Box::new(CrashableStore::over(image, None, CrashImage::default())));
            }
            self.timeline.push(TimelineEntry {
                at_ns: self.now,
                event: format!("injected kill after metadata transaction {n}"),
                outcome,
            });
            self.queue.push(SimTime(self.now + restart_after), Event::InjectedRestart(0));
            return Ok(());
        }
        // A frame still reaching a killed engine finds nothing to report: its events were
        // taken when it died.
        if !self.engines[e].switch.running {
            return Ok(());
        }
        let events = self.engines[e].switch.control_mut().take_events();
        // Most calls (one per frame the engine receives) find no event: nothing to walk or drop.
        if !events.is_empty() {
            self.note_control_events(e, events);
        }
        if self.engines[e].setup == Setup::Discovering {
            self.try_setup(e)?;
        }
        Ok(())
    }

    /// Notes what the control path of engine `e` reported on the timeline and in the checks.
    fn note_control_events(&mut self, e: usize, events: Vec<ControlEvent>) {
        for event in events {
            let text = match event {
                ControlEvent::SideDead { lv, side } => {
                    let name = self.lv_name(e, lv);
                    self.open_flow(
                        e,
                        format!("{name} side {side} dead, then resynchronized"),
                        FlowEnd::Resync(lv, side),
                    );
                    Some(format!("{name} side {side} declared dead"))
                }
                ControlEvent::ResyncDone { lv, side, extents_copied } => {
                    self.close_flows(e, FlowEnd::Resync(lv, side));
                    Some(format!(
                        "{} side {side} resynchronized: {extents_copied} stale extents copied",
                        self.lv_name(e, lv)
                    ))
                }
                ControlEvent::DeviceOnline { target, .. } if self.engines[e].setup == Setup::Running => {
                    Some(format!("device {target} online"))
                }
                ControlEvent::PathFailed { target, .. } => {
                    Some(format!("path to {} failed its test", self.port_label(target)))
                }
                ControlEvent::PathFailedOver { to, .. } => Some(format!(
                    "failed over to the path to {}, for every worker at once",
                    self.port_label(to)
                )),
                ControlEvent::DeviceUnresponsive { device, timeouts } => {
                    let target = self.engines[e].switch.control().devices().get(device).map(|d| d.target);
                    let name = target.map_or_else(|| format!("{device:?}"), |t| self.port_label(t));
                    Some(format!(
                        "device {name} failed: {timeouts} I/O timeouts in a row while it answered TEST UNIT READY"
                    ))
                }
                ControlEvent::PathRestored { target, .. } => {
                    Some(format!("path to {} answers again (standby)", self.port_label(target)))
                }
                ControlEvent::MigrationDone { lv, blocks } => {
                    self.close_flows(e, FlowEnd::Migration(lv));
                    let devices = self.engines[e]
                        .switch
                        .control()
                        .volume(lv)
                        .map(|v| v.record.layout.devices())
                        .unwrap_or_default();
                    let names: Vec<String> = devices
                        .iter()
                        .filter_map(|d| self.engines[e].switch.control().devices().get(*d).map(|d| d.target))
                        .filter_map(|t| {
                            self.scenario.disks.iter().find(|d| d.has_port(t.0)).map(|d| d.name.clone())
                        })
                        .collect();
                    Some(format!(
                        "{} migrated: {blocks} blocks copied, now on {}",
                        self.lv_name(e, lv),
                        names.join(", ")
                    ))
                }
                ControlEvent::MigrationCancelled { lv } => {
                    self.close_flows(e, FlowEnd::Migration(lv));
                    Some(format!("{} migration cancelled: everything moved is back", self.lv_name(e, lv)))
                }
                ControlEvent::SnapshotTaken { snapshot, .. } => {
                    self.engines[e].snapshots.get(&snapshot).cloned().map(|(volume, name)| {
                        let source = self.scenario.volumes[volume].name.clone();
                        self.oracle.snapshot_taken(&source, &name, self.now);
                        format!("snapshot {name} of {source} taken")
                    })
                }
                ControlEvent::ConsistencyPoint { lv, cycle } => {
                    self.consistency_point(e, lv, cycle);
                    None
                }
                ControlEvent::JournalFailed { lv } => Some(format!(
                    "{} journal out of service: writes go to the primary alone",
                    self.lv_name(e, lv)
                )),
                ControlEvent::JournalRestored { lv } => {
                    // The replication starts over with a whole copy: the replica shows no
                    // consistency point's image until that copy is done.
                    if let Some(watch) = self.engines[e].replicas.get_mut(&lv) {
                        watch.restart();
                    }
                    Some(format!(
                        "{} journal back in service: its replica is copied whole again",
                        self.lv_name(e, lv)
                    ))
                }
                ControlEvent::ReplicaApplied { lv, cycle, blocks, lag_ns } => {
                    self.replica_applied(e, lv, cycle, blocks, lag_ns)
                }
                ControlEvent::SnapshotComplete { snapshot, .. } => {
                    self.close_flows(e, FlowEnd::Snapshot(snapshot));
                    self.engines[e].snapshots.get(&snapshot).map(|(_, name)| {
                        format!("snapshot {name} complete: every block pushed, Rmaps coalesced")
                    })
                }
                ControlEvent::VolumeReconfigured { lv, segments } => {
                    Some(format!("{} now has {segments} segment(s)", self.lv_name(e, lv)))
                }
                ControlEvent::ReconfigurationFailed { lv, reason } => {
                    Some(format!("{} not reconfigured: {reason}", self.lv_name(e, lv)))
                }
                _ => None,
            };
            if let Some(outcome) = text {
                let name = self.scenario.engines[e].name.clone();
                self.timeline.push(TimelineEntry {
                    at_ns: self.now,
                    event: format!("{name}: control path"),
                    outcome,
                });
            }
        }
    }

    /// A disk port as scenarios name it (`d1:1`), or its WWPN if no disk has it.
    fn port_label(&self, wwpn: Wwn) -> String {
        self.scenario
            .disks
            .iter()
            .find_map(|d| (0..d.paths).find(|p| d.port_wwpn(*p) == wwpn.0).map(|p| format!("{}:{p}", d.name)))
            .unwrap_or_else(|| wwpn.to_string())
    }

    fn lv_name(&self, e: usize, lv: LvId) -> String {
        self.engines[e]
            .volumes
            .iter()
            .find(|(_, l)| **l == lv)
            .map_or_else(|| format!("{lv}"), |(v, _)| self.scenario.volumes[*v].name.clone())
    }

    /// Once every disk cabled to engine `e` is discovered: create and expose its volumes and
    /// start its hosts. A restarted engine waits only for the disks of volumes it has yet to
    /// create: those it committed are served from their metadata, so a disk that is down (a
    /// dead mirror side) does not keep the hosts away from them.
    fn try_setup(&mut self, e: usize) -> Result<(), RunError> {
        let scenario = self.scenario;
        let disks: Vec<usize> =
            (0..scenario.disks.len()).filter(|d| scenario.disks[*d].engine == e).collect();
        let control = self.engines[e].switch.control();
        let online = |d: usize| {
            control
                .device_of(Wwn(scenario.disks[d].port_wwpn(0)))
                .is_ok_and(|id| control.devices().get(id).is_some_and(|dev| dev.online))
        };
        let restarted = self.engines[e].restarted;
        let needed = |d: usize| {
            !restarted
                || scenario
                    .volumes
                    .iter()
                    .any(|spec| spec.layout.disks().contains(&d) && control.volume_named(&spec.name).is_err())
        };
        if !disks.iter().all(|d| !needed(*d) || online(*d)) {
            return Ok(());
        }
        let discovered = disks.iter().filter(|d| online(**d)).count();
        let engine_name = scenario.engines[e].name.clone();
        let setup_error = |reason: String| RunError::Setup { engine: engine_name.clone(), reason };
        for (v, spec) in scenario.volumes.iter().enumerate() {
            let data = spec.layout.data_disks();
            if data.first().is_none_or(|d| scenario.disks[*d].engine != e) {
                continue;
            }
            let control = self.engines[e].switch.control();
            if let Ok(lv) = control.volume_named(&spec.name) {
                // A restarted engine kept it: only its exposure may be missing.
                self.expose_at_setup(e, v, lv).map_err(setup_error)?;
                continue;
            }
            let dev = |d: usize| control.device_of(Wwn(scenario.disks[d].port_wwpn(0)));
            if let Layout::Incremental { base, store } = spec.layout {
                let store = dev(store).map_err(|e| setup_error(e.to_string()))?;
                let base_lv = *self.engines[e].volumes.get(&base).ok_or_else(|| {
                    setup_error(format!("volume {}: its base is not on this engine", spec.name))
                })?;
                let lv = self.engines[e]
                    .switch
                    .control_mut()
                    .create_incremental(base_lv, &spec.name, store)
                    .map_err(|err| setup_error(format!("volume {}: {err}", spec.name)))?;
                self.expose_at_setup(e, v, lv).map_err(setup_error)?;
                // The incremental reads through to the base: it starts with the base's data.
                let prefilled = self.prefilled.get(&base).cloned().unwrap_or_default();
                for (lba, blocks, id) in prefilled {
                    self.oracle_write(&spec.name, lba, blocks, id);
                }
                continue;
            }
            let layout = match &spec.layout {
                Layout::Linear { disks } => LayoutSpec::Linear {
                    devices: disks
                        .iter()
                        .map(|d| dev(*d))
                        .collect::<Result<_, _>>()
                        .map_err(|e| setup_error(e.to_string()))?,
                },
                Layout::Stripe { disks, stripe_kib } => LayoutSpec::Stripe {
                    devices: disks
                        .iter()
                        .map(|d| dev(*d))
                        .collect::<Result<_, _>>()
                        .map_err(|e| setup_error(e.to_string()))?,
                    unit_blocks: stripe_kib * 1024 / u64::from(BLOCK),
                },
                Layout::Mirror { disks } => LayoutSpec::Mirror {
                    sides: disks
                        .iter()
                        .map(|d| dev(*d))
                        .collect::<Result<_, _>>()
                        .map_err(|e| setup_error(e.to_string()))?,
                },
                Layout::Raid10 { disks, stripe_kib } => LayoutSpec::Raid10 {
                    side_a: disks
                        .iter()
                        .step_by(2)
                        .map(|d| dev(*d))
                        .collect::<Result<_, _>>()
                        .map_err(|e| setup_error(e.to_string()))?,
                    side_b: disks
                        .iter()
                        .skip(1)
                        .step_by(2)
                        .map(|d| dev(*d))
                        .collect::<Result<_, _>>()
                        .map_err(|e| setup_error(e.to_string()))?,
                    unit_blocks: stripe_kib * 1024 / u64::from(BLOCK),
                },
                Layout::Journal { primary, journal_disk } => LayoutSpec::Journal {
                    primary: dev(*primary).map_err(|e| setup_error(e.to_string()))?,
                    journal: dev(*journal_disk).map_err(|e| setup_error(e.to_string()))?,
                    journal_blocks: spec.journal_region.map_or(8192, |r| r.blocks),
                },
                Layout::Incremental { .. } => continue,
            };
            let control = self.engines[e].switch.control_mut();
            let lv = control
                .create_volume(&spec.name, spec.size_blocks(), layout)
                .map_err(|err| setup_error(format!("volume {}: {err}", spec.name)))?;
            self.expose_at_setup(e, v, lv).map_err(setup_error)?;
            if spec.prefill {
                self.prefill(e, v, lv);
            }
        }
        self.engines[e].setup = Setup::Running;
        self.engine_settle(e);
        self.timeline.push(TimelineEntry {
            at_ns: self.now,
            event: format!("{engine_name}: set-up"),
            outcome: if self.engines[e].restarted {
                format!(
                    "{discovered} of {} disks discovered, {} volumes exposed (those committed kept)",
                    disks.len(),
                    self.engines[e].volumes.len()
                )
            } else {
                format!(
                    "{discovered} disks discovered, {} volumes created and exposed",
                    self.engines[e].volumes.len()
                )
            },
        });
        if self.engines[e].restarted {
            self.engine_cables(e, true, |node| matches!(node, NodeRef::Host(_)));
            return Ok(());
        }
        for h in 0..self.hosts.len() {
            if scenario.hosts[h].engine == e {
                let frames = self.hosts[h].initiator.start(self.now);
                self.host_sends(h, frames);
                self.after_host(h);
            }
        }
        Ok(())
    }

    /// Expose a volume created at set-up to its hosts.
    fn expose_at_setup(&mut self, e: usize, v: usize, lv: LvId) -> Result<(), String> {
        let scenario = self.scenario;
        let spec = &scenario.volumes[v];
        let hosts: Vec<Wwn> =
            spec.exposures.iter().map(|x| Wwn(scenario.hosts[x.host].port_wwpn(0))).collect();
        self.engines[e]
            .switch
            .control_mut()
            .expose(lv, &hosts)
            .map_err(|err| format!("exposing {}: {err}", spec.name))?;
        self.engines[e].volumes.insert(v, lv);
        Ok(())
    }

    /// A write the oracle takes as acknowledged now (set-up data written straight to disks).
    fn oracle_write(&mut self, volume: &str, lba: u64, blocks: u64, id: u64) {
        self.oracle.write_submitted(volume, lba, blocks, id, self.now);
        self.oracle.write_completed(volume, lba, blocks, id, self.now, true);
    }

    /// Fill volume `v` with stamped data, written straight to its disks through the control
    /// path's map, as if a host had written it all before the run.
    fn prefill(&mut self, e: usize, v: usize, lv: LvId) {
        const CHUNK: u64 = 64;
        let scenario = self.scenario;
        let disk_of = |target: Wwn| scenario.disks.iter().position(|d| d.has_port(target.0));
        let blocks = scenario.volumes[v].size_blocks();
        let mut lba = 0;
        let mut records = Vec::new();
        while lba < blocks {
            let n = CHUNK.min(blocks - lba);
            let id = self.next_write_id;
            self.next_write_id += 1;
            let data = stamp_blocks(id, lba, n as u32, BLOCK);
            let control = self.engines[e].switch.control();
            let mut side = 0;
            let legs = control.volume(lv).map(|vol| vol.legs(lba, n, true, &mut side));
            for leg in legs.and_then(Result::ok).unwrap_or_default() {
                let Some(d) = control.devices().get(leg.device).map(|d| d.target).and_then(disk_of) else {
                    continue;
                };
                let at = (leg.offset * u64::from(BLOCK)) as usize;
                let len = (leg.blocks * u64::from(BLOCK)) as usize;
                self.disks[d].unit_mut().write_blocks(leg.lba, &data[at..at + len]);
            }
            self.oracle_write(&scenario.volumes[v].name, lba, n, id);
            records.push((lba, n, id));
            lba += n;
        }
        self.prefilled.insert(v, records);
    }

    fn timeline_event(&mut self, i: usize) {
        let event = &self.scenario.events[i];
        let outcome = match &event.action {
            EventAction::FailDisk { disk } => {
                self.set_disk_mode(*disk, |t| t.set_mode(DiskMode::Dead));
                "the disk stops answering".to_string()
            }
            EventAction::RestoreDisk { disk } => {
                self.set_disk_mode(*disk, |t| t.set_mode(DiskMode::Healthy));
                for path in 0..self.disks[*disk].ports.len() {
                    let frames = self.disks[*disk].ports[path].target.start(self.now);
                    self.disk_sends(*disk, path, frames);
                    self.after_disk(*disk, path);
                }
                "the disk answers again and logs in to the fabric".to_string()
            }
            EventAction::DiskWriteErrors { disk, fraction } => {
                self.set_disk_mode(*disk, |t| t.set_write_errors(*fraction));
                if *fraction < 1.0 {
                    format!("{:.0}% of writes fail with MEDIUM ERROR", fraction * 100.0)
                } else {
                    "every write fails with MEDIUM ERROR".to_string()
                }
            }
            EventAction::DiskHang { disk } => {
                self.set_disk_mode(*disk, |t| t.set_mode(DiskMode::Hang));
                "the disk accepts commands and never answers".to_string()
            }
            EventAction::FailLink { node, path } | EventAction::RestoreLink { node, path } => {
                let up = matches!(event.action, EventAction::RestoreLink { .. });
                self.set_link(*node, *path, up)
            }
            EventAction::FailPath { node, path } | EventAction::RestorePath { node, path } => {
                let restore = matches!(event.action, EventAction::RestorePath { .. });
                self.black_hole(*node, *path, !restore)
            }
            EventAction::Resync { volume, disk } => self.resync(*volume, *disk),
            EventAction::AddMirrorSide { volume, disk } => self.add_mirror_side(*volume, *disk),
            EventAction::RemoveMirrorSide { volume, disk } => self.remove_mirror_side(*volume, *disk),
            EventAction::Snapshot { volume, name, copy_granularity_blocks } => {
                self.snapshot(*volume, name, *copy_granularity_blocks)
            }
            EventAction::GroupSnapshot { volumes, name, copy_granularity_blocks } => {
                self.group_snapshot(volumes, name, *copy_granularity_blocks)
            }
            EventAction::Migrate { volume, to, rate_mib_per_s, .. } => {
                self.migrate(*volume, to, *rate_mib_per_s)
            }
            EventAction::CancelMigration { volume } => self.cancel_migration(*volume),
            EventAction::Replicate { volume, disk, interval_ms, .. } => {
                self.replicate(*volume, *disk, *interval_ms)
            }
            EventAction::PauseReplication { volume, paused } => self.pause_replication(*volume, *paused),
            EventAction::KillEngine { engine } => self.kill_engine(*engine),
            EventAction::RestartEngine { engine } => self.restart_engine(*engine),
            EventAction::SplitSegment { volume, at_block } => self.reconfigure(*volume, *at_block, true),
            EventAction::MergeSegments { volume, at_block } => self.reconfigure(*volume, *at_block, false),
        };
        self.timeline.push(TimelineEntry { at_ns: self.now, event: event.description.clone(), outcome });
    }

    /// Split the segment of `volume` holding `at_block` there, or merge the segment starting
    /// there into the one before.
    fn reconfigure(&mut self, volume: usize, at_block: u64, split: bool) -> String {
        let (e, lv) = match self.engine_of(volume) {
            Ok(found) => found,
            Err(why) => return why,
        };
        let control = self.engines[e].switch.control_mut();
        let outcome =
            if split { control.split_segment(lv, at_block) } else { control.merge_segments(lv, at_block) };
        self.engine_settle(e);
        match outcome {
            Ok(()) => "the volume's I/O pauses and drains first".to_string(),
            Err(err) => format!("refused: {err}"),
        }
    }

    fn snapshot(&mut self, volume: usize, name: &str, copy_granularity_blocks: Option<u64>) -> String {
        let (e, lv) = match self.engine_of(volume) {
            Ok(found) => found,
            Err(why) => return why,
        };
        let options = SnapshotOptions { copy_granularity_blocks, ..SnapshotOptions::default() };
        match self.engines[e].switch.control_mut().create_snapshot_with(lv, name, options) {
            Ok(snap) => {
                self.engines[e].snapshots.insert(snap, (volume, name.to_string()));
                let source = &self.scenario.volumes[volume].name;
                self.open_flow(e, format!("snapshot {name} of {source}"), FlowEnd::Snapshot(snap));
                self.engine_settle(e);
                "taking: the source's writes in flight drain first".to_string()
            }
            Err(err) => format!("refused: {err}"),
        }
    }

    fn migrate(&mut self, volume: usize, to: &[usize], rate_mib_per_s: Option<u64>) -> String {
        let scenario = self.scenario;
        let (e, lv) = match self.engine_of(volume) {
            Ok(found) => found,
            Err(why) => return why,
        };
        let control = self.engines[e].switch.control_mut();
        let devices: Result<Vec<_>, _> =
            to.iter().map(|d| control.device_of(Wwn(scenario.disks[*d].port_wwpn(0)))).collect();
        let rate_limit = rate_mib_per_s.and_then(|r| core::num::NonZeroU64::new(r << 20));
        let outcome = match devices.and_then(|devices| control.start_migration(lv, &devices, rate_limit)) {
            Ok(()) => {
                self.open_flow(
                    e,
                    format!("migration of {}", scenario.volumes[volume].name),
                    FlowEnd::Migration(lv),
                );
                "copying, one barrier chunk at a time".to_string()
            }
            Err(err) => format!("refused: {err}"),
        };
        self.engine_settle(e);
        outcome
    }

    fn cancel_migration(&mut self, volume: usize) -> String {
        let (e, lv) = match self.engine_of(volume) {
            Ok(found) => found,
            Err(why) => return why,
        };
        let outcome = match self.engines[e].switch.control_mut().cancel_migration(lv) {
            Ok(()) => "copying back what was moved, one barrier chunk at a time".to_string(),
            Err(err) => format!("refused: {err}"),
        };
        self.engine_settle(e);
        outcome
    }

    /// The engine holding scenario volume `volume`, and its id there, once created.
    /// The running engine holding `volume`, or why a management action on it is not run.
    fn engine_of(&self, volume: usize) -> Result<(usize, LvId), String> {
        let found =
            self.engines.iter().enumerate().find_map(|(e, n)| n.volumes.get(&volume).map(|lv| (e, *lv)));
        match found {
            None => Err("not run: the volume does not exist (yet)".to_string()),
            Some((e, _)) if !self.engines[e].switch.running => {
                Err("not run: the volume's engine is not running".to_string())
            }
            Some(found) => Ok(found),
        }
    }

    fn replicate(&mut self, volume: usize, disk: usize, interval_ms: u64) -> String {
        let scenario = self.scenario;
        let (e, lv) = match self.engine_of(volume) {
            Ok(found) => found,
            Err(why) => return why,
        };
        let control = self.engines[e].switch.control_mut();
        let started = control
            .device_of(Wwn(scenario.disks[disk].port_wwpn(0)))
            .and_then(|device| control.start_replication(lv, device, interval_ms * NS_PER_MS));
        let outcome = match started {
            Ok(()) => {
                self.engines[e].replicas.insert(
                    lv,
                    ReplicaWatch {
                        volume,
                        disk,
                        dirty: Vec::new(),
                        expected: None,
                        deltas: BTreeMap::new(),
                        compared_whole: false,
                        shown: false,
                        consistency_points: 0,
                        cycles_verified: 0,
                        earlier_lives: AppliedTotals::default(),
                    },
                );
                self.replicated.insert(volume, (e, lv));
                let flow = format!("replication of {}", scenario.volumes[volume].name);
                self.open_flow(e, flow, FlowEnd::RunEnd);
                "replicating: a first consistency point, the baseline copy, then one cycle per interval"
                    .to_string()
            }
            Err(err) => format!("refused: {err}"),
        };
        self.engine_settle(e);
        outcome
    }

    fn pause_replication(&mut self, volume: usize, paused: bool) -> String {
        let (e, lv) = match self.engine_of(volume) {
            Ok(found) => found,
            Err(why) => return why,
        };
        let outcome = match self.engines[e].switch.control_mut().pause_replication(lv, paused) {
            Ok(()) if paused => {
                "paused: the replica keeps the last consistency point it shows, the journal cycles on"
                    .to_string()
            }
            Ok(()) => {
                // The catch-up rewrites the replica wherever the primary changed: the first
                // image shown after it is compared whole.
                if let Some(watch) = self.engines[e].replicas.get_mut(&lv) {
                    watch.compared_whole = false;
                }
                "resumed: what was written meanwhile is copied, then cycles are applied again".to_string()
            }
            Err(err) => format!("refused: {err}"),
        };
        self.engine_settle(e);
        outcome
    }

    /// Blocks `range` of a volume as its devices hold them now, read through the control
    /// path's map, as the disks keep them ([`KeptBlock`]): an image with no bytes made (the
    /// blocks of a leg on no known disk read as zeros); `None` if the volume is unknown or
    /// the range has no translation.
    fn volume_kept(&self, e: usize, lv: LvId, range: Range<u64>) -> Option<Vec<KeptBlock>> {
        let n = range.end - range.start;
        let scenario = self.scenario;
        let disk_of = |target: Wwn| scenario.disks.iter().position(|d| d.has_port(target.0));
        let control = self.engines[e].switch.control();
        let mut side = 0;
        let legs = control.volume(lv)?.legs(range.start, n, false, &mut side).ok()?;
        let mut image = vec![KeptBlock::default(); n as usize];
        let mut bytes = Vec::new();
        for leg in legs {
            let Some(d) = control.devices().get(leg.device).map(|d| d.target).and_then(disk_of) else {
                continue;
            };
            let unit = self.disks[d].unit();
            let at = leg.offset as usize;
            let Some(out) = image.get_mut(at..at + leg.blocks as usize) else { continue };
            if unit.block_size() == BLOCK as usize {
                unit.kept_blocks_into(leg.lba, out);
            } else {
                // Another block size: the bytes, cut into the volume's blocks.
                bytes.resize(leg.blocks as usize * unit.block_size(), 0);
                unit.read_blocks_into(leg.lba, leg.blocks, &mut bytes);
                for (kept, block) in out.iter_mut().zip(bytes.chunks_exact(BLOCK as usize)) {
                    *kept = KeptBlock::of(block);
                }
            }
        }
        Some(image)
    }

    /// An engine's host I/Os so far and, of those, the ones its fast path completed alone.
    /// The statistics of every worker of engine `e`, in this life and the earlier ones.
    fn engine_statistics(&self, e: usize) -> Vec<FpStatistics> {
        let mut stats = self.engines[e].earlier_lives.clone();
        stats.extend(self.engines[e].switch.statistics(self.now));
        stats
    }

    fn host_io_counters(&self, e: usize) -> (u64, u64) {
        let stats = self.engine_statistics(e);
        (stats.iter().map(|s| s.upstream_ios).sum(), stats.iter().map(|s| s.hits).sum())
    }

    fn open_flow(&mut self, e: usize, flow: String, end: FlowEnd) {
        let start = self.host_io_counters(e);
        self.flows.push(FlowWindow { flow, engine: e, end, start_ns: self.now, start, ended: None });
    }

    fn close_flows(&mut self, e: usize, end: FlowEnd) {
        let counters = self.host_io_counters(e);
        let now = self.now;
        for flow in self.flows.iter_mut().filter(|f| f.engine == e && f.end == end && f.ended.is_none()) {
            flow.ended = Some((now, counters));
        }
    }

    /// Hosts wrote (or are writing) blocks of a replicated volume.
    fn replica_dirty(&mut self, volume: usize, lba: u64, blocks: u64) {
        let Some(&(e, lv)) = self.replicated.get(&volume) else { return };
        if let Some(watch) = self.engines[e].replicas.get_mut(&lv) {
            watch.dirty.push(lba..lba + blocks);
        }
    }

    /// A consistency point: nothing is in flight on the volume, so its devices hold exactly
    /// the image the replica must show once this cycle is applied. The blocks kept are
    /// checked by the oracle as a read at this instant.
    fn consistency_point(&mut self, e: usize, lv: LvId, cycle: u64) {
        let Some(watch) = self.engines[e].replicas.get_mut(&lv) else { return };
        watch.consistency_points += 1;
        let volume = watch.volume;
        let first = watch.expected.is_none();
        let dirty = std::mem::take(&mut watch.dirty);
        let blocks = self.engines[e].switch.control().volume(lv).map_or(0, |v| v.record.blocks);
        let ranges: Vec<Range<u64>> =
            if first { std::iter::once(0..blocks).collect() } else { block_runs(dirty, blocks) };
        let name = &self.scenario.volumes[volume].name;
        let mut delta = Vec::with_capacity(ranges.len());
        let mut contents = Vec::new();
        for range in ranges {
            let n = (range.end - range.start) as usize;
            let data =
                self.volume_kept(e, lv, range.clone()).unwrap_or_else(|| vec![KeptBlock::default(); n]);
            contents.clear();
            contents.extend(data.iter().zip(range.start..).map(|(kept, lba)| kept.content(lba)));
            self.oracle.read_contents_completed("-", name, range.start, self.now, self.now, &contents);
            delta.push((range.start, data));
        }
        let Some(watch) = self.engines[e].replicas.get_mut(&lv) else { return };
        if first {
            watch.expected = delta.pop().map(|(_, image)| image);
        } else {
            watch.deltas.insert(cycle, delta);
        }
    }

    /// A cycle was applied: the replica must now equal the primary's image at that cycle's
    /// consistency point, byte for byte (the cycle's blocks now, everything the first time).
    fn replica_applied(
        &mut self,
        e: usize,
        lv: LvId,
        cycle: u64,
        blocks: u64,
        lag_ns: u64,
    ) -> Option<String> {
        let scenario = self.scenario;
        let replica =
            self.engines[e].switch.control().replications().into_iter().find(|r| r.lv == lv)?.replica;
        let watch = self.engines[e].replicas.get_mut(&lv)?;
        let (volume, disk) = (watch.volume, watch.disk);
        let expected = watch.expected.as_mut()?;
        let mut compare = Vec::new();
        for (_, delta) in watch.deltas.range(..=cycle) {
            for (lba, data) in delta {
                let at = *lba as usize;
                expected[at..at + data.len()].clone_from_slice(data);
                compare.push(*lba..*lba + data.len() as u64);
            }
        }
        watch.deltas.retain(|c, _| *c > cycle);
        watch.shown = true;
        if !watch.compared_whole {
            watch.compared_whole = true;
            compare = std::iter::once(0..expected.len() as u64).collect();
        }
        let mut differs = None;
        for range in compare {
            let want = &expected[range.start as usize..range.end as usize];
            if let Some(i) = first_kept_difference(self.disks[disk].unit(), replica.lba + range.start, want) {
                differs = Some(range.start + i);
                break;
            }
        }
        let name = &scenario.volumes[volume].name;
        if let Some(block) = differs {
            self.oracle.record_violation(Violation {
                time_ns: self.now,
                host: "-".to_string(),
                volume: format!("replica of {name}"),
                lba: block,
                expected: format!("the primary's block at consistency point {cycle}"),
                found: "a different block on the replica".to_string(),
            });
        } else if let Some(watch) = self.engines[e].replicas.get_mut(&lv) {
            watch.cycles_verified += 1;
            // The timeline notes the first image shown; the report counts the rest.
            if watch.cycles_verified > 1 {
                return None;
            }
        }
        Some(format!(
            "replica of {name} shows consistency point {cycle}: {blocks} blocks applied, lag {:.1} ms, {}",
            lag_ns as f64 / NS_PER_MS as f64,
            if differs.is_none() {
                "equal to the primary's image"
            } else {
                "DIFFERS from the primary's image"
            }
        ))
    }

    /// Whether a running engine is writing a replication cycle, or a catch-up copy and the
    /// cycles behind it, to a replica that showed an image.
    fn replica_being_written(&self) -> bool {
        self.engines.iter().any(|node| {
            node.switch.running
                && !node.replicas.is_empty()
                && node.switch.control().replications().iter().any(|r| {
                    // A catch-up copy writes over the image the replica showed: it shows one
                    // again only once the cycles behind the copy are applied.
                    let shown = node.replicas.get(&r.lv).is_some_and(|w| w.shown);
                    r.applying_cycle.is_some() || (shown && r.catching_up)
                })
        })
    }

    /// At the end, every replica as a whole must equal the image of its last applied cycle.
    fn check_replicas(&mut self) {
        let scenario = self.scenario;
        let mut differences = Vec::new();
        for node in &self.engines {
            let progress = node.switch.control().replications();
            for (lv, watch) in &node.replicas {
                let (Some(expected), Some(p)) = (&watch.expected, progress.iter().find(|p| p.lv == *lv))
                else {
                    continue;
                };
                if !watch.shown {
                    continue;
                }
                if let Some(i) = first_kept_difference(self.disks[watch.disk].unit(), p.replica.lba, expected)
                {
                    differences.push((watch.volume, i));
                }
            }
        }
        for (volume, block) in differences {
            self.oracle.record_violation(Violation {
                time_ns: self.now,
                host: "-".to_string(),
                volume: format!("replica of {}", scenario.volumes[volume].name),
                lba: block,
                expected: "the primary's image at the last consistency point applied".to_string(),
                found: "a different block on the replica at the end".to_string(),
            });
        }
    }

    fn group_snapshot(
        &mut self,
        volumes: &[usize],
        name: &str,
        copy_granularity_blocks: Option<u64>,
    ) -> String {
        let members: Result<Vec<(usize, usize, LvId)>, String> =
            volumes.iter().map(|v| self.engine_of(*v).map(|(e, lv)| (*v, e, lv))).collect();
        let members = match members {
            Ok(members) => members,
            Err(why) => return why,
        };
        let Some(&(_, e, _)) = members.first() else {
            return "not run: the volumes do not exist (yet)".to_string();
        };
        if members.len() != volumes.len() || members.iter().any(|m| m.1 != e) {
            return "not run: a group snapshot needs its volumes on one engine".to_string();
        }
        let lvs: Vec<LvId> = members.iter().map(|m| m.2).collect();
        let names: Vec<String> =
            members.iter().map(|m| format!("{name}.{}", self.scenario.volumes[m.0].name)).collect();
        let options =
            vec![SnapshotOptions { copy_granularity_blocks, ..SnapshotOptions::default() }; lvs.len()];
        match self.engines[e].switch.control_mut().create_group_snapshot(&lvs, &names, &options) {
            Ok(snaps) => {
                for ((volume, _, _), (snap, snap_name)) in members.iter().zip(snaps.into_iter().zip(names)) {
                    let source = &self.scenario.volumes[*volume].name;
                    self.open_flow(e, format!("snapshot {snap_name} of {source}"), FlowEnd::Snapshot(snap));
                    self.engines[e].snapshots.insert(snap, (*volume, snap_name));
                }
                self.engine_settle(e);
                "taking: every member's writes in flight drain first, then all are taken at once".to_string()
            }
            Err(err) => format!("refused: {err}"),
        }
    }

    /// An engine loses power: its workers and control path stop and forget everything but
    /// the metadata they committed, and every cable to it loses signal.
    fn kill_engine(&mut self, e: usize) -> String {
        if !self.engines[e].switch.running {
            return "not run: the engine is not running".to_string();
        }
        let stats = self.engines[e].switch.statistics(self.now);
        self.engines[e].earlier_lives.extend(stats);
        self.engines[e].earlier_commits += self.engines[e].switch.control().counters().commits;
        let progress = self.engines[e].switch.control().replications();
        for (lv, watch) in &mut self.engines[e].replicas {
            if let Some(p) = progress.iter().find(|p| p.lv == *lv) {
                watch.earlier_lives.add(p);
            }
        }
        self.engines[e].saved_store = self.engines[e].switch.kill();
        self.engine_cables(e, false, |_| true);
        "the engine stops: every port loses signal, only committed metadata survives".to_string()
    }

    /// A killed engine starts again from its committed metadata; its ports come up and every
    /// host and disk logs in again.
    fn restart_engine(&mut self, e: usize) -> String {
        if self.engines[e].switch.running {
            return "not run: the engine is running".to_string();
        }
        let Some(store) = self.engines[e].saved_store.take() else {
            return "not run: the engine kept no metadata".to_string();
        };
        if let Err(error) = self.engines[e].switch.restart(store) {
            return format!("not run: the engine cannot load its metadata: {error}");
        }
        for watch in self.engines[e].replicas.values_mut() {
            watch.restart();
        }
        // Set-up runs again once the disks are back: what it had not committed is redone.
        self.engines[e].restarted = true;
        self.engines[e].setup = Setup::Discovering;
        // Disk ports come up at once; host ports once set-up has run again (as at the start,
        // hosts see the engine only when its volumes are there).
        self.engine_cables(e, true, |node| matches!(node, NodeRef::Disk(_)));
        let mut out = std::mem::take(&mut self.engine_out);
        self.engines[e].switch.tick_into(self.now, &mut out);
        self.engine_sends(e, &mut out);
        self.engine_out = out;
        let volumes = self.engines[e].switch.control().volumes().count();
        format!("the engine starts from its committed metadata ({volumes} volumes) and its ports come up")
    }

    /// Takes the cables of engine `e` to the nodes `which` selects down or up, as its ports
    /// lose or regain signal.
    fn engine_cables(&mut self, e: usize, up: bool, which: impl Fn(NodeRef) -> bool) {
        let cabled: Vec<(NodeRef, usize)> =
            self.cables.iter().filter(|c| c.engine == e && which(c.node)).map(|c| (c.node, c.path)).collect();
        for (node, path) in cabled {
            self.set_link(node, path, up);
        }
    }

    /// The cable of a node's path, if it is cabled.
    fn cable_of(&self, node: NodeRef, path: usize) -> Option<usize> {
        self.cables.iter().position(|c| c.node == node && c.path == path)
    }

    fn set_link(&mut self, node: NodeRef, path: usize, up: bool) -> String {
        let Some(c) = self.cable_of(node, path) else {
            return "not run: a host's initiator has one port, so only its first path is cabled".to_string();
        };
        self.cables[c].link.set_up(SimTime(self.now), up);
        match node {
            NodeRef::Host(h) if !up => self.hosts[h].initiator.link_down(self.now),
            NodeRef::Host(h) => {
                let frames = self.hosts[h].initiator.start(self.now);
                self.host_sends(h, frames);
                self.after_host(h);
            }
            NodeRef::Disk(d) if up => {
                let frames = self.disks[d].ports[path].target.start(self.now);
                self.disk_sends(d, path, frames);
                self.after_disk(d, path);
            }
            NodeRef::Disk(_) => {}
        }
        if up { "the cable is back up".to_string() } else { "the cable is down".to_string() }
    }

    fn black_hole(&mut self, node: NodeRef, path: usize, on: bool) -> String {
        let Some(c) = self.cable_of(node, path) else {
            return "not run: a host's initiator has one port, so only its first path is cabled".to_string();
        };
        let cable = &mut self.cables[c];
        if on {
            let params = cable.link.a_to_b.params().clone();
            let lossy = crate::link::LinkParams { loss: 1.0, ..params.clone() };
            cable.saved = Some(params);
            cable.link.a_to_b.set_params(lossy.clone());
            cable.link.b_to_a.set_params(lossy);
            "every frame on the path is lost".to_string()
        } else {
            if let Some(params) = cable.saved.take() {
                cable.link.a_to_b.set_params(params.clone());
                cable.link.b_to_a.set_params(params);
            }
            "the path carries frames again".to_string()
        }
    }

    fn resync(&mut self, volume: usize, disk: Option<usize>) -> String {
        let scenario = self.scenario;
        let (e, lv) = match self.engine_of(volume) {
            Ok(found) => found,
            Err(why) => return why,
        };
        let control = self.engines[e].switch.control_mut();
        // The sides as the engine numbers them now: sides added or removed earlier in the
        // timeline renumber them, and a linear volume that took a side is a mirror.
        let sides: Vec<usize> = match disk {
            Some(d) => control
                .device_of(Wwn(scenario.disks[d].port_wwpn(0)))
                .ok()
                .and_then(|device| control.side_of_device(lv, device))
                .into_iter()
                .collect(),
            None => (0..control.volume(lv).map_or(0, |v| v.record.side_states.len())).collect(),
        };
        for side in sides {
            control.start_resync(lv, side);
        }
        self.engine_settle(e);
        let running = self.engines[e].switch.control().resyncs();
        if running.is_empty() {
            "nothing to resynchronize now (the side resynchronizes when its disk logs in again)".to_string()
        } else {
            format!("resync running: {} stale extents to copy", running.iter().map(|r| r.total).sum::<u64>())
        }
    }

    /// Add a mirror side on `disk`; the resync that copies the volume onto it is a flow.
    fn add_mirror_side(&mut self, volume: usize, disk: usize) -> String {
        let scenario = self.scenario;
        let (e, lv) = match self.engine_of(volume) {
            Ok(found) => found,
            Err(why) => return why,
        };
        let control = self.engines[e].switch.control_mut();
        let added = control
            .device_of(Wwn(scenario.disks[disk].port_wwpn(0)))
            .and_then(|device| control.add_mirror_side(lv, device));
        let outcome = match added {
            Ok(side) => {
                self.open_flow(
                    e,
                    format!("new side {side} of {}", scenario.volumes[volume].name),
                    FlowEnd::Resync(lv, side),
                );
                format!("side {side} added: the whole volume is copied onto it")
            }
            Err(err) => format!("refused: {err}"),
        };
        self.engine_settle(e);
        outcome
    }

    /// Remove the mirror side on `disk`; its space is free once the engine's workers let go.
    fn remove_mirror_side(&mut self, volume: usize, disk: usize) -> String {
        let scenario = self.scenario;
        let (e, lv) = match self.engine_of(volume) {
            Ok(found) => found,
            Err(why) => return why,
        };
        let control = self.engines[e].switch.control_mut();
        let removed = control.device_of(Wwn(scenario.disks[disk].port_wwpn(0))).and_then(|device| {
            let side = control.side_of_device(lv, device).ok_or_else(|| {
                dve_controlpath::Error::UnknownSide(format!(
                    "{} is no side of {}",
                    scenario.disks[disk].name, scenario.volumes[volume].name
                ))
            })?;
            control.remove_mirror_side(lv, side).map(|()| side)
        });
        let outcome = match removed {
            Ok(side) => {
                let left = control.volume(lv).map_or(0, |v| v.record.allocations.len());
                // A resync of the side (its addition, or its return) ended with it.
                self.close_flows(e, FlowEnd::Resync(lv, side));
                format!("side {side} of {} removed: {left} side(s) left", scenario.volumes[volume].name)
            }
            Err(err) => format!("refused: {err}"),
        };
        self.engine_settle(e);
        outcome
    }

    /// Every mirror whose sides are all current must hold the same bytes on each side (seed
    /// 003: mirrors are identical after resync); a difference is a violation.
    fn compare_mirrors(&mut self) {
        let scenario = self.scenario;
        let disk_of = |target: Wwn| scenario.disks.iter().position(|d| d.has_port(target.0));
        let mut differences = Vec::new();
        for engine in &self.engines {
            let control = engine.switch.control();
            for (v, lv) in &engine.volumes {
                let Some(volume) = control.volume(*lv) else { continue };
                let record = &volume.record;
                if record.side_states.is_empty() || record.side_states.iter().any(|s| *s != SideState::Alive)
                {
                    continue;
                }
                let a = &record.allocations;
                let pairs: Vec<(usize, usize)> = match &record.layout {
                    LayoutSpec::Mirror { sides } => (1..sides.len()).map(|i| (0, i)).collect(),
                    LayoutSpec::Raid10 { side_a, .. } => {
                        (0..side_a.len()).map(|k| (k, k + side_a.len())).collect()
                    }
                    _ => Vec::new(),
                };
                for (x, y) in pairs {
                    let (Some(ax), Some(ay)) = (a.get(x), a.get(y)) else { continue };
                    let device = |id| control.devices().get(id).map(|d| d.target).and_then(disk_of);
                    let (Some(dx), Some(dy)) = (device(ax.device), device(ay.device)) else { continue };
                    const CHUNK: u64 = 2048;
                    let mut block = 0;
                    while block < ax.blocks.min(ay.blocks) {
                        let n = CHUNK.min(ax.blocks - block);
                        let (unit_x, unit_y) = (self.disks[dx].unit(), self.disks[dy].unit());
                        if let Some(at) =
                            unit_x.first_difference_with(ax.lba + block, unit_y, ay.lba + block, n)
                        {
                            differences.push((*v, x, y, block + at));
                        }
                        block += n;
                    }
                }
            }
        }
        for (v, x, y, block) in differences {
            self.oracle.record_violation(Violation {
                time_ns: self.now,
                host: "-".to_string(),
                volume: self.scenario.volumes[v].name.clone(),
                lba: block,
                expected: format!("the same data on mirror copies {x} and {y}"),
                found: format!("copies differ from side block {block}"),
            });
        }
    }

    /// Every snapshot's image, read from the devices through the control path's map, must
    /// be its source's image at the snapshot instant.
    fn check_snapshots(&mut self) {
        const CHUNK: u64 = 2048;
        let mut images: Vec<(String, u64, Vec<KeptBlock>)> = Vec::new();
        for (e, engine) in self.engines.iter().enumerate() {
            for (snap, (_, name)) in &engine.snapshots {
                let Some(blocks) = engine.switch.control().volume(*snap).map(|v| v.record.blocks) else {
                    continue;
                };
                let mut lba = 0;
                while lba < blocks {
                    let n = CHUNK.min(blocks - lba);
                    let Some(data) = self.volume_kept(e, *snap, lba..lba + n) else { break };
                    images.push((name.clone(), lba, data));
                    lba += n;
                }
            }
        }
        let mut contents = Vec::new();
        for (name, lba, data) in images {
            contents.clear();
            contents.extend(data.iter().zip(lba..).map(|(kept, b)| kept.content(b)));
            self.oracle.check_snapshot_contents(&name, lba, &contents, self.now);
        }
    }

    /// What of the set-up had not finished when the run ended: an engine (running then) that
    /// never created its volumes because its disks were not all discovered, and hosts whose
    /// login and discovery never finished, so their workloads never started. A run with any
    /// is not clean: the I/O its scenario asks for did not all run.
    fn unfinished_setup(&self) -> Vec<String> {
        let scenario = self.scenario;
        let mut unfinished = Vec::new();
        for (e, node) in self.engines.iter().enumerate() {
            if !node.switch.running || node.setup == Setup::Running {
                continue;
            }
            let control = node.switch.control();
            let missing: Vec<&str> = (0..scenario.disks.len())
                .filter(|d| scenario.disks[*d].engine == e)
                .filter(|d| {
                    !control
                        .device_of(Wwn(scenario.disks[*d].port_wwpn(0)))
                        .is_ok_and(|id| control.devices().get(id).is_some_and(|dev| dev.online))
                })
                .map(|d| scenario.disks[d].name.as_str())
                .collect();
            unfinished.push(format!(
                "engine {}: set-up{} never finished: its volumes were not {}, disks not discovered: {}",
                scenario.engines[e].name,
                if node.restarted { " after its restart" } else { "" },
                if node.restarted { "all exposed again" } else { "created" },
                if missing.is_empty() { "none".to_string() } else { missing.join(", ") }
            ));
        }
        for (h, host) in scenario.hosts.iter().enumerate() {
            let volumes: Vec<&str> = self
                .workloads
                .iter()
                .filter(|w| w.host == h && !w.started)
                .map(|w| scenario.volumes[w.volume].name.as_str())
                .collect();
            if !volumes.is_empty() {
                unfinished.push(format!(
                    "host {}: login and discovery never finished: its workloads on {} never started",
                    host.name,
                    volumes.join(", ")
                ));
            }
        }
        unfinished
    }

    fn report(&self) -> Report {
        let simulated = self.end;
        let volumes = self.recorders.iter().map(VolumeRecorder::finish).collect();
        let engines = self
            .engines
            .iter()
            .enumerate()
            .map(|(e, node)| {
                let stats = self.engine_statistics(e);
                let host_ios: u64 = stats.iter().map(|s| s.upstream_ios).sum();
                let hits: u64 = stats.iter().map(|s| s.hits).sum();
                let mut faults = BTreeMap::new();
                for cause in FaultCause::ALL {
                    let n: u64 = stats.iter().map(|s| s.faults.get(cause)).sum();
                    if n > 0 {
                        faults.insert(cause.name().to_string(), n);
                    }
                }
                EngineReport {
                    metadata_commits: node.earlier_commits + node.switch.control().counters().commits,
                    ..EngineReport::new(
                        self.scenario.engines[e].name.clone(),
                        host_ios,
                        hits,
                        faults,
                        node.frames,
                    )
                }
            })
            .collect();
        let links = self
            .cables
            .iter()
            .map(|c| LinkReport {
                a: self.scenario.node_name(c.node).to_string(),
                b: format!("{}:{}", self.scenario.engines[c.engine].name, c.port),
                a_to_b: c.link.a_to_b.counters().clone(),
                b_to_a: c.link.b_to_a.counters().clone(),
            })
            .collect();
        let (reads_checked, blocks_checked) = (self.oracle.reads_checked(), self.oracle.blocks_checked());
        let unfinished = self.unfinished_setup();
        let oracle = if self.oracle.violation_count() == 0 && unfinished.is_empty() {
            OracleVerdict::Clean { reads_checked, blocks_checked }
        } else if self.oracle.violation_count() == 0 {
            OracleVerdict::Incomplete { reads_checked, blocks_checked, unfinished }
        } else {
            OracleVerdict::Violations {
                reads_checked,
                blocks_checked,
                total: self.oracle.violation_count(),
                first: self.oracle.violations().to_vec(),
            }
        };
        let mut replicas = Vec::new();
        for node in &self.engines {
            let progress = node.switch.control().replications();
            for (lv, watch) in &node.replicas {
                let Some(p) = progress.iter().find(|p| p.lv == *lv) else { continue };
                let mut applied = watch.earlier_lives;
                applied.add(p);
                replicas.push(ReplicaReport {
                    volume: self.scenario.volumes[watch.volume].name.clone(),
                    disk: self.scenario.disks[watch.disk].name.clone(),
                    consistency_points: watch.consistency_points,
                    cycles_applied: applied.cycles,
                    cycles_verified: watch.cycles_verified,
                    blocks_applied: applied.blocks,
                    last_lag_ns: applied.last_lag_ns.unwrap_or(0),
                    max_lag_ns: applied.max_lag_ns,
                    copied_blocks: p.baseline_blocks,
                    paused: p.paused,
                });
            }
        }
        let flows = self
            .flows
            .iter()
            .map(|f| {
                let (end_ns, end) = f.ended.unwrap_or_else(|| (self.now, self.host_io_counters(f.engine)));
                let host_ios = end.0.saturating_sub(f.start.0);
                let fast_path_ios = end.1.saturating_sub(f.start.1);
                FlowReport {
                    flow: f.flow.clone(),
                    engine: self.scenario.engines[f.engine].name.clone(),
                    start_ns: f.start_ns,
                    end_ns,
                    finished: f.ended.is_some(),
                    host_ios,
                    fast_path_ios,
                    fast_path_share: if host_ios == 0 { 1.0 } else { fast_path_ios as f64 / host_ios as f64 },
                }
            })
            .collect();
        Report {
            scenario: self.scenario.name.clone(),
            seed: self.scenario.seed,
            simulated_ns: simulated,
            sample_interval_ns: self.scenario.sample_interval_ns(),
            frames_simulated: self.frames,
            volumes,
            engines,
            links,
            timeline: self.timeline.clone(),
            replicas,
            flows,
            oracle,
        }
    }
}

/// The first of `kept` that `disk`'s block `lba + i` does not hold, as `i`: entries compared
/// where the disk's blocks are the volume's size, bytes otherwise.
fn first_kept_difference(disk: &DiskTarget, lba: u64, kept: &[KeptBlock]) -> Option<u64> {
    if disk.block_size() == BLOCK as usize {
        return disk.first_difference_kept(lba, kept);
    }
    let mut bytes = vec![0; kept.len() * BLOCK as usize];
    for (block, out) in kept.iter().zip(bytes.chunks_exact_mut(BLOCK as usize)) {
        block.read_into(out);
    }
    disk.first_difference(lba, &bytes)
}

/// The runs of consecutive blocks below `end` in the union of `written`, in order: each run
/// as long as it goes (ranges that overlap or touch are one run).
fn block_runs(mut written: Vec<Range<u64>>, end: u64) -> Vec<Range<u64>> {
    written.sort_unstable_by_key(|range| range.start);
    let mut runs: Vec<Range<u64>> = Vec::new();
    for range in written {
        let range = range.start..range.end.min(end);
        if range.is_empty() {
            continue;
        }
        match runs.last_mut() {
            Some(run) if range.start <= run.end => run.end = run.end.max(range.end),
            _ => runs.push(range),
        }
    }
    runs
}

/// A node's answer kept in `slot` with the node's state generation it was computed under:
/// asked again only once the generation changed.
fn remembered<T: Copy>(slot: &mut Option<(u64, T)>, generation: u64, ask: impl FnOnce() -> T) -> T {
    match *slot {
        Some((at, answer)) if at == generation => answer,
        _ => {
            let answer = ask();
            *slot = Some((generation, answer));
            answer
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The runs as first written: every block in an ordered set, then the consecutive ones
    /// joined.
    fn block_runs_reference(written: &[Range<u64>], end: u64) -> Vec<Range<u64>> {
        let blocks: BTreeSet<u64> = written.iter().flat_map(|range| range.clone()).collect();
        let mut runs: Vec<Range<u64>> = Vec::new();
        for &b in blocks.range(..end) {
            match runs.last_mut() {
                Some(run) if run.end == b => run.end += 1,
                _ => runs.push(b..b + 1),
            }
        }
        runs
    }

    proptest::proptest! {
        #[test]
        fn merged_ranges_are_the_runs_of_their_blocks(
            written in proptest::collection::vec((0u64..200, 0u64..40), 0..40),
            end in 0u64..260,
        ) {
            let written: Vec<Range<u64>> = written.into_iter().map(|(start, n)| start..start + n).collect();
            proptest::prop_assert_eq!(block_runs(written.clone(), end), block_runs_reference(&written, end));
        }
    }
}
