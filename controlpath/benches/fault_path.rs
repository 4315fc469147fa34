//! Latency of the fault path: a mapping-miss round trip (the worker faults with
//! `ToCp::MappingMiss`, the control path answers CONTINUE with the mapping, the worker resumes
//! and dispatches the downstream command), measured on two threads in the same run as a bare
//! ping-pong of the same messages over the same `fp_channel` between the same two threads.
//!
//! - Fast-path thread: a real `Worker` on software ports, driven by its real poll loop
//!   (`Worker::poll`). A host READ(16) goes in on the host cable; the clock stops when the
//!   downstream FCP_CMND comes out on the disk cable. After each miss the same LBA is read
//!   again (a cache hit through the same loop, for scale), then the segment's cached extents
//!   are revoked with the `ToFp::RemoveMapping` the control path sends for a revocation
//!   (handed to the worker on its own thread, untimed; its `InvalidationAck` is dropped), so
//!   the next read misses again from the same state: the segment's redirect table cached,
//!   none of its extents. Successive reads also move to a new LBA. The worker's miss and hit
//!   counters are checked after every round.
//! - Control-path thread: a real `ControlPath` (devices loaded from a `MemoryStore` with
//!   `attach_store`, a linear volume created and exposed through its management API); it
//!   takes each upcall from the ring, calls `handle_upcall`, and sends every downcall from
//!   `poll_downcall` back over the ring.
//! - Reference: the same two threads send `ToCp::MappingMiss` and answer
//!   `ToFp::MappingMissReply` (verdict QUEUE, nothing on the heap) without processing: the
//!   ring's own round trip, with the same message types and so the same slot sizes.
//!
//! Both sides busy-poll. Rounds of the two cases alternate (which one goes first alternates
//! too) and the median of the per-round p50 ratios is reported, so that noise on a shared
//! machine moves both alike. A single-threaded breakdown of the stages follows.
//!
//! `cargo bench -p dve-controlpath --bench fault_path` prints JSON lines. Without `--bench`
//! (as `cargo test --all-targets` runs it) it does one short round as a smoke test.
//! `FAULT_PATH_ROUNDS` and `FAULT_PATH_TRIPS` override the round count and size.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use dve_controlpath::device::Device;
use dve_controlpath::store::{Batch, MemoryStore, Table};
use dve_controlpath::volume::LayoutSpec;
use dve_controlpath::{ControlPath, ControlPathConfig};
use dve_fastpath::port::{SoftwarePort, software_link};
use dve_fastpath::worker::emit;
use dve_fastpath::worker::run::WorkerMesh;
use dve_fastpath::{PortConfig, Worker, WorkerConfig};
use dve_fp_api::FaultCause;
use dve_fp_api::frame::{Frame, FramePool, TxFrame};
use dve_fp_api::ids::{DeviceId, FcId, Lun, LvId, PortId, RequestId, Timestamp, VsegId, WorkerId, Wwn};
use dve_fp_api::lookup::RmapIndex;
use dve_fp_api::mapping::DevicePath;
use dve_fp_api::message::{MappingEntry, MappingKey, MissVerdict, ToCp, ToFp};
use dve_fp_api::port::PacketIo;
use dve_fp_api::transport::{CpEndpoint, FpEndpoint, fp_channel};
use dve_wire::ethernet::MacAddr;
use dve_wire::fc::{FcFrame, FcHeaderRepr, FcId as WireFcId, UNASSIGNED_X_ID, f_ctl, fc_type, r_ctl};
use dve_wire::fcoe::{Eof, Sof};
use dve_wire::fcp::{FcpCmndRepr, FcpRspRepr, TaskAttribute, lun_from_index};
use dve_wire::scsi::opcode;
use dve_wire::stack::fcoe_fc_range;

/// Blocks per host read (4 KiB).
const IO_BLOCKS: u32 = 8;
const BLOCK: u32 = 512;
/// LBA distance between successive reads: more than the control path's grant window
/// (`GRANT_WINDOW_BLOCKS`, 64 Ki blocks either side of the I/O) plus the I/O, so a read
/// would miss even without the revocation in between.
const STRIDE: u64 = 1 << 17;
/// Distinct read positions, cycled; the volume is `(POSITIONS + 2) * STRIDE` blocks, so no
/// grant window is clipped at the segment's ends and every answer has the same shape.
const POSITIONS: u64 = 4096;
const ROUNDS: usize = 10;
const TRIPS: usize = 10_000;
const WARMUP: usize = 2_000;
/// Round trips between two readings of both threads' context switches.
const BATCH: usize = 100;
/// Ring capacity, as `fp-bench` and the poll-loop tests use.
const RING: usize = 1024;
/// Engine ports: 0 faces the host, 1 the disk.
const HOST_PORT: PortId = PortId(0);
const DISK_PORT: PortId = PortId(1);
const HOST_WWN: Wwn = Wwn(0x2100_0000_0000_0001);
const DISK_WWN: Wwn = Wwn(0x2200_0000_0000_0001);
const DEVICE: DeviceId = DeviceId(1);

const MODE_FAULT: u8 = 0;
const MODE_REFERENCE: u8 = 1;

/// Nanoseconds since the start of the run, as the worker and control path take the time.
#[derive(Clone, Copy, Debug)]
struct Clock(Instant);

impl Clock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.elapsed().as_nanos() as u64 + 1)
    }
}

/// FC addresses and MACs of the bench's host and disk, from the engine's address plan.
#[derive(Clone, Copy, Debug)]
struct Addresses {
    host: u32,
    disk: u32,
    target: u32,
    fc_map: u32,
}

impl Addresses {
    fn host_mac(&self) -> MacAddr {
        emit::fpma(self.fc_map, self.host)
    }

    fn disk_mac(&self) -> MacAddr {
        emit::fpma(self.fc_map, self.disk)
    }
}

fn header(r: u8, d_id: u32, s_id: u32, f: u32, ox: u16, rx: u16) -> FcHeaderRepr {
    FcHeaderRepr {
        r_ctl: r,
        d_id: WireFcId(d_id),
        cs_ctl: 0,
        s_id: WireFcId(s_id),
        fc_type: fc_type::FCP,
        f_ctl: f,
        seq_id: 1,
        df_ctl: 0,
        seq_cnt: 0,
        ox_id: ox,
        rx_id: rx,
        parameter: 0,
    }
}

/// A host command to the virtual target, LUN 0.
fn host_command(pool: &FramePool, a: &Addresses, ox: u16, cdb: &[u8], read_len: u32) -> Frame {
    let cmnd = FcpCmndRepr {
        lun: lun_from_index(0),
        crn: 0,
        priority: 0,
        task_attribute: TaskAttribute::Simple,
        task_management: 0,
        wrdata: false,
        rddata: read_len > 0,
        cdb,
        fcp_dl: read_len,
    };
    let f = f_ctl::FIRST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
    let h = header(r_ctl::UNSOLICITED_COMMAND, a.target, a.host, f, ox, UNASSIGNED_X_ID);
    emit::whole_frame(pool, a.host_mac(), &h, Sof::I3, Eof::T, &cmnd, a.fc_map).expect("command frame")
}

fn read16(pool: &FramePool, a: &Addresses, ox: u16, lba: u64) -> Frame {
    let mut cdb = [0u8; 16];
    cdb[0] = opcode::READ_16;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    cdb[10..14].copy_from_slice(&IO_BLOCKS.to_be_bytes());
    host_command(pool, a, ox, &cdb, IO_BLOCKS * BLOCK)
}

/// The whole bytes of a frame that may travel in pieces.
fn bytes_of(frame: &TxFrame) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len());
    frame.write_to(&mut out);
    out
}

/// The FC header and payload of an FCoE frame.
fn fc_parts(bytes: &[u8]) -> (FcHeaderRepr, &[u8]) {
    let range = fcoe_fc_range(bytes).expect("an FCoE frame");
    let fc = FcFrame::new_checked(&bytes[range.clone()]).expect("an FC frame");
    let header = FcHeaderRepr::parse(&fc).expect("FC header parses");
    let start = range.start + dve_wire::fc::HEADER_LEN;
    (header, &bytes[start..start + fc.payload().len()])
}

/// What the disk saw: the downstream command's header and the LBA of its READ(16).
fn downstream_read(frame: &TxFrame) -> (FcHeaderRepr, u64) {
    let bytes = bytes_of(frame);
    let (h, payload) = fc_parts(&bytes);
    assert_eq!(h.r_ctl, r_ctl::UNSOLICITED_COMMAND, "the disk receives a command");
    let cmnd = FcpCmndRepr::parse(payload).expect("FCP_CMND parses");
    assert_eq!(cmnd.cdb[0], opcode::READ_16, "the worker reads with READ(16)");
    let lba = u64::from_be_bytes(cmnd.cdb[2..10].try_into().expect("8 bytes"));
    (h, lba)
}

/// The disk's GOOD status for a downstream command.
fn disk_status(pool: &FramePool, a: &Addresses, cmd: &FcHeaderRepr, rx: u16) -> Frame {
    let f = f_ctl::EXCHANGE_CONTEXT | f_ctl::LAST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
    let h = header(r_ctl::COMMAND_STATUS, cmd.s_id.0, cmd.d_id.0, f, cmd.ox_id, rx);
    emit::whole_frame(pool, a.disk_mac(), &h, Sof::I3, Eof::T, &FcpRspRepr::good(), a.fc_map)
        .expect("status frame")
}

/// The SCSI status in an FCP_RSP the host received.
fn scsi_status(bytes: &[u8]) -> u8 {
    let (h, payload) = fc_parts(bytes);
    assert_eq!(h.r_ctl, r_ctl::COMMAND_STATUS, "the host receives a status");
    FcpRspRepr::parse(payload).expect("FCP_RSP parses").scsi_status
}

/// Move messages between the control path and the worker until neither has any (set-up
/// only: single-threaded, no ring).
fn settle(cp: &mut ControlPath, worker: &mut Worker, clock: &Clock) {
    loop {
        let mut moved = false;
        while let Some((_, message)) = cp.poll_downcall() {
            worker.handle_message(clock.now(), message);
            moved = true;
        }
        while let Some(message) = worker.poll_upcall() {
            cp.handle_upcall(clock.now(), worker.id(), message);
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

/// A control path with one discovered disk and one linear volume exposed to the host, and a
/// worker that has everything but the volume's extents: the first read of any range misses.
fn setup(clock: &Clock, volume_blocks: u64) -> (ControlPath, Worker, Addresses, LvId) {
    let mut cp = ControlPath::new(ControlPathConfig::new(1, 2, 1));
    // The disk as discovery would have recorded it (READ CAPACITY answered).
    let mut store = MemoryStore::new();
    let mut batch = Batch::new();
    let device = Device {
        id: DEVICE,
        target: DISK_WWN,
        lun: Lun(0),
        blocks: volume_blocks,
        block_size: BLOCK,
        allocated: 0,
        free_runs: Vec::new(),
        identity: None,
        targets: vec![DISK_WWN],
        paths: Vec::new(),
        online: true,
    };
    batch.put_json(Table::Devices, DEVICE.0.to_be_bytes(), &device).expect("device record");
    dve_controlpath::store::MetadataStore::commit(&mut store, batch).expect("commit");
    cp.attach_store(Box::new(store)).expect("store loads");

    let plan = cp.plan().clone();
    let ports: Vec<PortConfig> = plan
        .ports()
        .iter()
        .map(|p| PortConfig { id: p.id, mac: p.mac, initiator_fc_id: p.initiator_fc_id })
        .collect();
    let mut config = WorkerConfig::new(WorkerId(0), ports);
    config.fc_map = cp.config().fc_map;
    let mut worker = Worker::new(config);

    let lv = cp
        .create_volume("fault-path", volume_blocks, LayoutSpec::Linear { devices: vec![DEVICE] })
        .expect("volume created");
    cp.expose(lv, &[HOST_WWN]).expect("volume exposed");
    settle(&mut cp, &mut worker, clock);

    let host = plan.nport_address(HOST_PORT, 1).expect("host address");
    let disk = plan.nport_address(DISK_PORT, 1).expect("disk address");
    let a = Addresses {
        host: host.get(),
        disk: disk.get(),
        target: cp.exposure().fc_id.get(),
        fc_map: cp.config().fc_map,
    };
    // What the fabric login of the host and the PLOGI/PRLI to the disk would have granted
    // (the simulator runs those exchanges; this bench has no FIP/FLOGI peers): the host's
    // login and the device's path, from the control path's own device record.
    let record = cp.devices().get(DEVICE).expect("device");
    let path = DevicePath {
        device: DEVICE,
        port: DISK_PORT,
        target_fc_id: FcId::new(a.disk).expect("address"),
        lun: record.lun,
        block_size: record.block_size,
    };
    let logins = [
        MappingEntry::Login(dve_fp_api::mapping::PortLogin { fc_id: host, port_name: HOST_WWN }),
        MappingEntry::DevicePath(path),
    ];
    for entry in logins {
        worker.handle_message(clock.now(), ToFp::AddMapping { req: RequestId(0), entry });
    }
    while worker.poll_upcall().is_some() {}

    // The host's first commands meet its POWER ON unit attention; after that the control path
    // opens the LUN mask to it and reads stay on the fast path.
    let pool = FramePool::new(64, 16);
    let mut good = false;
    for ox in 1..=4u16 {
        let tur = host_command(&pool, &a, ox, &[opcode::TEST_UNIT_READY, 0, 0, 0, 0, 0], 0);
        worker.handle_frame(clock.now(), HOST_PORT, tur);
        settle(&mut cp, &mut worker, clock);
        let answers: Vec<_> = worker.take_transmits().collect();
        assert_eq!(answers.len(), 1, "one status per TEST UNIT READY");
        if scsi_status(&bytes_of(&answers[0].1)) == 0 {
            good = true;
            break;
        }
    }
    assert!(good, "TEST UNIT READY succeeds once the unit attention is reported");
    let mask = worker.cache().lv(lv).and_then(|l| l.mask.clone()).expect("the control path set a LUN mask");
    assert!(mask.readers.contains(HOST_WWN), "the host may read on the fast path");
    (cp, worker, a, lv)
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Clone, Copy, Debug)]
struct Summary {
    n: usize,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    /// Samples over 1 ms: on this machine, a thread that lost its core to another process.
    over_1ms: usize,
}

fn summarize(samples: &mut [u64]) -> Summary {
    samples.sort_unstable();
    Summary {
        n: samples.len(),
        p50: percentile(samples, 0.50),
        p99: percentile(samples, 0.99),
        p999: percentile(samples, 0.999),
        max: samples.last().copied().unwrap_or(0),
        over_1ms: samples.iter().filter(|&&ns| ns > 1_000_000).count(),
    }
}

fn json_line(kind: &str, case: &str, round: Option<usize>, s: &Summary, extra: &str) {
    let round = round.map_or(String::new(), |r| format!("\"round\":{r},"));
    println!(
        "{{\"kind\":\"{kind}\",\"case\":\"{case}\",{round}\"n\":{},\"p50_ns\":{},\"p99_ns\":{},\"p999_ns\":{},\"max_ns\":{},\"over_1ms\":{}{extra}}}",
        s.n, s.p50, s.p99, s.p999, s.max, s.over_1ms
    );
}

/// The fast-path thread's state: the worker on its ports, the far ends of the cables, and
/// the worker's end of the ring.
struct FastPath {
    worker: Worker,
    ports: Vec<SoftwarePort>,
    host: SoftwarePort,
    disk: SoftwarePort,
    mesh: WorkerMesh,
    fp: FpEndpoint,
    scratch: Vec<Frame>,
    rx: Vec<TxFrame>,
    tx: Vec<TxFrame>,
    pool: FramePool,
    a: Addresses,
    clock: Clock,
    vseg: VsegId,
    stamps: Arc<Stamps>,
    reads: u64,
    next_ox: u16,
    next_rx: u16,
}

impl FastPath {
    fn poll(&mut self) {
        let now = self.clock.now();
        self.worker.poll(
            now,
            &mut self.ports,
            &[HOST_PORT, DISK_PORT],
            &self.mesh,
            &self.fp,
            &mut self.scratch,
        );
    }

    fn ox(&mut self) -> u16 {
        self.next_ox = (self.next_ox + 1) & 0x7FFF;
        self.next_ox
    }

    /// Send a host READ of `lba` and poll until its downstream command reaches the disk.
    /// Returns when the host sent and when the disk received, in nanoseconds of the run's
    /// clock, and the command's header and device LBA.
    fn read_to_disk(&mut self, lba: u64) -> (u64, u64, FcHeaderRepr, u64) {
        let ox = self.ox();
        self.tx.push(TxFrame::whole(read16(&self.pool, &self.a, ox, lba)));
        self.rx.clear();
        let start = Instant::now();
        self.host.tx_burst(&mut self.tx);
        loop {
            self.poll();
            if self.disk.rx_burst_pieces(&mut self.rx, 8) > 0 {
                break;
            }
        }
        let end = Instant::now();
        let (h, device_lba) = downstream_read(&self.rx[0]);
        let since = |t: Instant| (t - self.clock.0).as_nanos() as u64;
        (since(start), since(end), h, device_lba)
    }

    /// Answer the downstream command GOOD and poll until the host has its status, so every
    /// exchange is freed before the next read.
    fn complete(&mut self, cmd: &FcHeaderRepr) {
        self.next_rx = (self.next_rx + 1) & 0x7FFF;
        self.tx.push(TxFrame::whole(disk_status(&self.pool, &self.a, cmd, self.next_rx)));
        self.disk.tx_burst(&mut self.tx);
        self.tx.clear();
        self.rx.clear();
        loop {
            self.poll();
            if self.host.rx_burst_pieces(&mut self.rx, 8) > 0 {
                break;
            }
        }
        assert_eq!(scsi_status(&bytes_of(&self.rx[0])), 0, "the host read completes GOOD");
    }

    /// The LBA of the next read.
    fn next_lba(&mut self) -> u64 {
        self.reads += 1;
        STRIDE * (1 + self.reads % POSITIONS)
    }

    /// Revoke every cached extent of the volume's segment, as a revocation's
    /// `FPRemoveMapping` does, and drop the worker's acknowledgement.
    fn revoke(&mut self) {
        let key = MappingKey::Extents { vseg: self.vseg, blocks: 0..u64::MAX };
        let now = self.clock.now();
        self.worker.handle_message(now, ToFp::RemoveMapping { req: RequestId(0), key });
        let ack = self.worker.poll_upcall();
        assert!(matches!(ack, Some(ToCp::InvalidationAck { .. })), "the worker acknowledges: {ack:?}");
        assert_eq!(self.worker.statistics(now).cached_extents, 0, "nothing cached");
    }

    /// One fault-path round trip (timed) and one hit on the same range (timed), each
    /// completed afterwards, then the revocation (not timed). The miss is also cut in three by the control-path thread's stamps: host send to the
    /// control path's receipt of the upcall, its handling, its answer to the disk's receipt.
    fn miss_then_hit(&mut self) -> (u64, u64, [u64; 3]) {
        let lba = self.next_lba();
        let (start, end, cmd, device_lba) = self.read_to_disk(lba);
        assert_eq!(device_lba, lba, "the linear volume maps block for block");
        let received = self.stamps.received.load(Ordering::Acquire);
        let answered = self.stamps.answered.load(Ordering::Acquire);
        assert!(start <= received && received <= answered && answered <= end, "stamps of this miss");
        let parts = [received - start, answered - received, end - answered];
        self.complete(&cmd);
        let (hit_start, hit_end, cmd, _) = self.read_to_disk(lba);
        self.complete(&cmd);
        self.revoke();
        (end - start, hit_end - hit_start, parts)
    }

    /// One bare ring round trip with the same message types as the fault path.
    fn ping(&mut self, message: &ToCp) -> u64 {
        let start = Instant::now();
        let mut out = message.clone();
        while let Err((_, back)) = self.fp.try_send(out) {
            out = back;
            core::hint::spin_loop();
        }
        loop {
            if self.fp.try_recv().is_some() {
                break;
            }
            core::hint::spin_loop();
        }
        start.elapsed().as_nanos() as u64
    }

    fn counters(&self) -> (u64, u64) {
        let stats = self.worker.statistics(self.clock.now());
        (stats.faults.get(FaultCause::Miss), stats.hits)
    }
}

/// When the control-path thread took the last upcall from the ring and when it had its
/// answer (before pushing it), in nanoseconds of the run's clock.
#[derive(Debug, Default)]
struct Stamps {
    received: AtomicU64,
    answered: AtomicU64,
}

/// The control-path thread: answer upcalls with the real control path, or echo them in
/// reference rounds, until the worker's end of the ring is dropped.
fn control_path_thread(
    mut cp: ControlPath,
    ep: CpEndpoint,
    mode: Arc<AtomicU8>,
    clock: Clock,
    tid: Arc<AtomicU64>,
    stamps: Arc<Stamps>,
) -> ControlPath {
    let me = std::fs::read_link("/proc/thread-self").ok();
    let id = me.and_then(|p| p.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok()));
    tid.store(id.unwrap_or(u64::MAX), Ordering::Release);
    let send = |message: ToFp| {
        let mut out = message;
        while let Err((_, back)) = ep.try_send(out) {
            out = back;
            core::hint::spin_loop();
        }
    };
    loop {
        let Some(message) = ep.try_recv() else {
            if ep.is_disconnected() {
                break;
            }
            core::hint::spin_loop();
            continue;
        };
        if mode.load(Ordering::Acquire) == MODE_REFERENCE {
            if let ToCp::MappingMiss { io, .. } = message {
                send(ToFp::MappingMissReply { io, verdict: MissVerdict::Queue });
            }
            continue;
        }
        let received = clock.now();
        cp.handle_upcall(received, WorkerId(0), message);
        if let Some((_, answer)) = cp.poll_downcall() {
            stamps.received.store(received.0 - 1, Ordering::Relaxed);
            stamps.answered.store(clock.now().0 - 1, Ordering::Release);
            send(answer);
        }
        while let Some((_, downcall)) = cp.poll_downcall() {
            send(downcall);
        }
    }
    cp
}

struct Results {
    fault: Vec<Summary>,
    reference: Vec<Summary>,
    hit: Vec<Summary>,
    all_fault: Vec<u64>,
    all_reference: Vec<u64>,
    all_hit: Vec<u64>,
    /// The misses cut in three (see `FastPath::miss_then_hit`).
    parts: [Vec<u64>; 3],
    /// Context switches of both threads during fault rounds and reference rounds.
    switches_fault: SwitchCounts,
    switches_reference: SwitchCounts,
    /// Samples of batches in which neither thread was switched out.
    undisturbed_fault: Vec<u64>,
    undisturbed_reference: Vec<u64>,
    /// Batches, and batches in which neither thread was switched out.
    batches_fault: (usize, usize),
    batches_reference: (usize, usize),
}

fn fast_path_thread(
    mut fp: FastPath,
    mode: Arc<AtomicU8>,
    switches: &Switches,
    rounds: usize,
    trips: usize,
) -> (FastPath, Results) {
    let mut r = Results {
        fault: Vec::new(),
        reference: Vec::new(),
        hit: Vec::new(),
        all_fault: Vec::new(),
        all_reference: Vec::new(),
        all_hit: Vec::new(),
        parts: [Vec::new(), Vec::new(), Vec::new()],
        switches_fault: [0; 4],
        switches_reference: [0; 4],
        undisturbed_fault: Vec::new(),
        undisturbed_reference: Vec::new(),
        batches_fault: (0, 0),
        batches_reference: (0, 0),
    };
    // The reference's message: the upcall a miss sends, as the worker builds it.
    let probe = {
        mode.store(MODE_FAULT, Ordering::Release);
        for _ in 0..WARMUP.min(trips) {
            fp.miss_then_hit();
        }
        let lba = fp.next_lba();
        let ox = fp.ox();
        let frame = read16(&fp.pool, &fp.a, ox, lba);
        let now = fp.clock.now();
        fp.worker.handle_frame(now, HOST_PORT, frame);
        let upcall = fp.worker.poll_upcall().expect("the read misses");
        assert!(matches!(upcall, ToCp::MappingMiss { .. }), "a mapping miss: {upcall:?}");
        // Hand it to the control path so the exchange finishes like every other.
        let mut out = upcall.clone();
        while let Err((_, back)) = fp.fp.try_send(out) {
            out = back;
        }
        fp.rx.clear();
        loop {
            fp.poll();
            if fp.disk.rx_burst_pieces(&mut fp.rx, 8) > 0 {
                break;
            }
        }
        let (cmd, _) = downstream_read(&fp.rx[0]);
        fp.complete(&cmd);
        fp.revoke();
        mode.store(MODE_REFERENCE, Ordering::Release);
        for _ in 0..WARMUP.min(trips) {
            fp.ping(&upcall);
        }
        upcall
    };
    for round in 0..rounds {
        let order = if round % 2 == 0 { [MODE_FAULT, MODE_REFERENCE] } else { [MODE_REFERENCE, MODE_FAULT] };
        for case in order {
            mode.store(case, Ordering::Release);
            let fault = case == MODE_FAULT;
            let (misses_before, hits_before) = fp.counters();
            let mut samples = Vec::with_capacity(trips);
            let mut hits = Vec::with_capacity(trips);
            let mut calls = 0u64;
            while samples.len() < trips {
                let n = BATCH.min(trips - samples.len());
                let from = samples.len();
                let before = switches.sample();
                // Reading `/proc` cooled the caches: the first round trip after it is not
                // counted (else the batch size would set the p99).
                if fault {
                    fp.miss_then_hit();
                    calls += 1;
                } else {
                    fp.ping(&probe);
                }
                for _ in 0..n {
                    if fault {
                        let (miss, hit, parts) = fp.miss_then_hit();
                        calls += 1;
                        samples.push(miss);
                        hits.push(hit);
                        for (all, part) in r.parts.iter_mut().zip(parts) {
                            all.push(part);
                        }
                    } else {
                        samples.push(fp.ping(&probe));
                    }
                }
                let after = switches.sample();
                let (total, undisturbed, batches) = if fault {
                    (&mut r.switches_fault, &mut r.undisturbed_fault, &mut r.batches_fault)
                } else {
                    (&mut r.switches_reference, &mut r.undisturbed_reference, &mut r.batches_reference)
                };
                for i in 0..4 {
                    total[i] += after[i] - before[i];
                }
                batches.0 += 1;
                if after == before {
                    batches.1 += 1;
                    undisturbed.extend_from_slice(&samples[from..]);
                }
            }
            if fault {
                let (misses_after, hits_after) = fp.counters();
                assert_eq!(misses_after - misses_before, calls, "every first read missed once");
                assert_eq!(hits_after - hits_before, 2 * calls, "every read then dispatched");
                r.all_fault.extend_from_slice(&samples);
                r.all_hit.extend_from_slice(&hits);
                r.fault.push(summarize(&mut samples));
                r.hit.push(summarize(&mut hits));
            } else {
                r.all_reference.extend_from_slice(&samples);
                r.reference.push(summarize(&mut samples));
            }
        }
    }
    mode.store(MODE_FAULT, Ordering::Release);
    (fp, r)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

/// Answer the one downstream command in `worker_tx` GOOD, directly through the worker's core.
fn complete_direct(fp: &mut FastPath, worker_tx: &[(PortId, TxFrame)]) {
    let (port, frame) = &worker_tx[0];
    assert_eq!(*port, DISK_PORT, "the command goes to the disk");
    let (cmd, _) = downstream_read(frame);
    fp.next_rx = (fp.next_rx + 1) & 0x7FFF;
    let status = disk_status(&fp.pool, &fp.a, &cmd, fp.next_rx);
    fp.worker.handle_frame(fp.clock.now(), DISK_PORT, status);
    let answers: Vec<_> = fp.worker.take_transmits().collect();
    assert_eq!(answers.len(), 1, "one status to the host");
}

/// Stages of one miss on one thread, from the worker's core and the control path's core
/// directly (no ring, no poll loop): where the round trip's own work goes.
fn breakdown(fp: &mut FastPath, cp: &mut ControlPath, trips: usize) {
    let mut detect = Vec::with_capacity(trips);
    let mut answer = Vec::with_capacity(trips);
    let mut resume = Vec::with_capacity(trips);
    let mut hit = Vec::with_capacity(trips);
    let mut answer_entries = 0usize;
    let mut granted: Vec<(core::ops::Range<u64>, u32)> = Vec::new();
    for _ in 0..trips {
        let lba = fp.next_lba();
        let ox = fp.ox();
        let frame = read16(&fp.pool, &fp.a, ox, lba);
        let t0 = Instant::now();
        fp.worker.handle_frame(fp.clock.now(), HOST_PORT, frame);
        let upcall = fp.worker.poll_upcall().expect("the read misses");
        let t1 = Instant::now();
        cp.handle_upcall(fp.clock.now(), WorkerId(0), upcall);
        let (_, reply) = cp.poll_downcall().expect("the control path answers");
        let t2 = Instant::now();
        if let ToFp::MappingMissReply { verdict: MissVerdict::Continue(entries), .. } = &reply {
            answer_entries = entries.len();
            granted.clear();
            for entry in entries {
                if let MappingEntry::Extents { extents, .. } = entry {
                    granted.extend(extents.iter().map(|e| (e.range(), e.value.0.into())));
                }
            }
        }
        let t3 = Instant::now();
        fp.worker.handle_message(fp.clock.now(), reply);
        assert!(fp.worker.has_transmits(), "the worker resumed and dispatched");
        let t4 = Instant::now();
        detect.push((t1 - t0).as_nanos() as u64);
        answer.push((t2 - t1).as_nanos() as u64);
        resume.push((t4 - t3).as_nanos() as u64);
        let tx: Vec<_> = fp.worker.take_transmits().collect();
        complete_direct(fp, &tx);

        let ox = fp.ox();
        let frame = read16(&fp.pool, &fp.a, ox, lba);
        let t5 = Instant::now();
        fp.worker.handle_frame(fp.clock.now(), HOST_PORT, frame);
        let t6 = Instant::now();
        hit.push((t6 - t5).as_nanos() as u64);
        let tx: Vec<_> = fp.worker.take_transmits().collect();
        assert_eq!(tx.len(), 1, "the second read hits");
        complete_direct(fp, &tx);
        fp.revoke();
    }
    // The part of the resume that rebuilds the segment's lookup index, alone: the extents of
    // the last answer, as `SegmentCache::rebuild` indexes them after a grant.
    let mut build = Vec::with_capacity(trips);
    for _ in 0..trips {
        let t0 = Instant::now();
        let index = RmapIndex::build(&granted).expect("index builds");
        let t1 = Instant::now();
        assert_eq!(index.len(), granted.len());
        build.push((t1 - t0).as_nanos() as u64);
    }
    let blocks: u64 = granted.iter().map(|(r, _)| r.end - r.start).sum();
    let extra =
        format!(",\"entries\":{answer_entries},\"extents\":{},\"extent_blocks\":{blocks}", granted.len());
    json_line("breakdown", "worker_miss_to_upcall", None, &summarize(&mut detect), "");
    json_line("breakdown", "control_path_answer", None, &summarize(&mut answer), &extra);
    json_line("breakdown", "worker_reply_to_dispatch", None, &summarize(&mut resume), "");
    json_line("breakdown", "worker_hit_to_dispatch", None, &summarize(&mut hit), "");
    json_line("breakdown", "rmap_index_build_one_extent", None, &summarize(&mut build), "");
}

/// Voluntary and involuntary context switches of the thread whose `status` file is at
/// `path`. A busy-polling thread switches voluntarily only when it blocks (a contended lock
/// in the allocator, a page fault that waits for I/O); involuntary switches are other
/// processes taking its core.
fn context_switches(path: &str) -> (u64, u64) {
    let status = std::fs::read_to_string(path).unwrap_or_default();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    (field("voluntary_ctxt_switches:"), field("nonvoluntary_ctxt_switches:"))
}

/// Context switches of both threads, read from the fast-path thread: its own, and the
/// control-path thread's through `/proc/self/task/<tid>/status`.
#[derive(Clone, Debug)]
struct Switches {
    control_path_status: String,
}

/// Voluntary and involuntary switches: fast path, then control path.
type SwitchCounts = [u64; 4];

impl Switches {
    fn sample(&self) -> SwitchCounts {
        let fp = context_switches("/proc/thread-self/status");
        let cp = context_switches(&self.control_path_status);
        [fp.0, fp.1, cp.0, cp.1]
    }
}

fn switches_line(case: &str, s: &SwitchCounts, batches: (usize, usize)) {
    println!(
        "{{\"kind\":\"info\",\"case\":\"{case}\",\"fast_path_voluntary_switches\":{},\"fast_path_involuntary_switches\":{},\"control_path_voluntary_switches\":{},\"control_path_involuntary_switches\":{},\"batches\":{},\"undisturbed_batches\":{}}}",
        s[0], s[1], s[2], s[3], batches.0, batches.1
    );
}

/// The load average, to read the tail figures by: this machine is shared.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "null".into())
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    // Test runners list a target's tests first (`--list`, as nextest does): a bench without
    // a harness has none to list.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not: then one short
    // round, to check the bench still runs.
    let benching = std::env::args().any(|a| a == "--bench");
    let rounds = env_usize("FAULT_PATH_ROUNDS").unwrap_or(if benching { ROUNDS } else { 1 }).max(1);
    let trips = env_usize("FAULT_PATH_TRIPS").unwrap_or(if benching { TRIPS } else { 200 }).max(1);
    let volume_blocks = (POSITIONS + 2) * STRIDE;

    let clock = Clock(Instant::now());
    let (cp, worker, a, lv) = setup(&clock, volume_blocks);
    let vseg = cp.volume(lv).expect("volume").segments[0].descriptor().id;
    let link_pool = FramePool::new(256, 64);
    let (host, engine_host) = software_link(PortId(100), HOST_PORT, 64, link_pool.clone());
    let (disk, engine_disk) = software_link(PortId(101), DISK_PORT, 64, link_pool);
    let (fp_end, cp_end) = fp_channel(RING);
    let stamps = Arc::new(Stamps::default());
    let fp = FastPath {
        worker,
        ports: vec![engine_host, engine_disk],
        host,
        disk,
        mesh: WorkerMesh::new(1, 64),
        fp: fp_end,
        scratch: Vec::with_capacity(64),
        rx: Vec::with_capacity(8),
        tx: Vec::with_capacity(8),
        pool: FramePool::new(256, 64),
        a,
        clock,
        vseg,
        stamps: stamps.clone(),
        reads: 0,
        next_ox: 100,
        next_rx: 0,
    };

    println!(
        "{{\"kind\":\"info\",\"bench\":\"fault_path\",\"rounds\":{rounds},\"round_trips_per_round\":{trips},\"io_blocks\":{IO_BLOCKS},\"stride_blocks\":{STRIDE},\"to_cp_bytes\":{},\"to_fp_bytes\":{},\"ring_capacity\":{RING},\"cpus\":{},\"load_average_1min\":{}}}",
        size_of::<ToCp>(),
        size_of::<ToFp>(),
        thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
    );

    let mode = Arc::new(AtomicU8::new(MODE_FAULT));
    let cp_mode = mode.clone();
    let tid = Arc::new(AtomicU64::new(0));
    let cp_tid = tid.clone();
    let cp_stamps = stamps.clone();
    let cp_thread = thread::Builder::new()
        .name("control-path".into())
        .spawn(move || control_path_thread(cp, cp_end, cp_mode, clock, cp_tid, cp_stamps))
        .expect("control-path thread");
    let switches = loop {
        match tid.load(Ordering::Acquire) {
            0 => thread::yield_now(),
            id => break Switches { control_path_status: format!("/proc/self/task/{id}/status") },
        }
    };
    let fp_thread = thread::Builder::new()
        .name("fast-path".into())
        .spawn(move || {
            let (mut fp, results) = fast_path_thread(fp, mode, &switches, rounds, trips);
            // Hand the worker back without its ring end, so the control-path thread stops.
            let (fp_end, _) = fp_channel(1);
            drop(std::mem::replace(&mut fp.fp, fp_end));
            (fp, results)
        })
        .expect("fast-path thread");
    let (mut fp, mut r) = fp_thread.join().expect("fast-path thread finished");
    let mut cp = cp_thread.join().expect("control-path thread finished");

    let mut ratios = Vec::new();
    for round in 0..rounds {
        let (f, reference, h) = (&r.fault[round], &r.reference[round], &r.hit[round]);
        let ratio = f.p50 as f64 / reference.p50.max(1) as f64;
        ratios.push(ratio);
        json_line("round", "fault_path", Some(round), f, &format!(",\"p50_ratio\":{ratio:.2}"));
        json_line("round", "ring_pingpong", Some(round), reference, "");
        json_line("round", "fast_path_hit", Some(round), h, "");
    }
    let fault = summarize(&mut r.all_fault);
    let reference = summarize(&mut r.all_reference);
    let hit = summarize(&mut r.all_hit);
    let ratio = median(ratios);
    let met = fault.p50 <= 5_000 && fault.p99 <= 50_000;
    json_line(
        "summary",
        "fault_path",
        None,
        &fault,
        &format!(
            ",\"median_p50_ratio\":{ratio:.2},\"target_p50_ns\":5000,\"target_p99_ns\":50000,\"targets_met\":{met}"
        ),
    );
    json_line("summary", "ring_pingpong", None, &reference, "");
    json_line("summary", "fast_path_hit", None, &hit, "");
    // The same figures over the batches in which neither thread lost its core: the code's
    // own tail, without this shared machine's scheduling.
    json_line("summary_undisturbed", "fault_path", None, &summarize(&mut r.undisturbed_fault), "");
    json_line("summary_undisturbed", "ring_pingpong", None, &summarize(&mut r.undisturbed_reference), "");
    let [to_cp, handling, to_disk] = &mut r.parts;
    json_line("in_situ", "host_send_to_control_path_receipt", None, &summarize(to_cp), "");
    json_line("in_situ", "control_path_handling", None, &summarize(handling), "");
    json_line("in_situ", "control_path_answer_to_disk_receipt", None, &summarize(to_disk), "");
    switches_line("fault_path", &r.switches_fault, r.batches_fault);
    switches_line("ring_pingpong", &r.switches_reference, r.batches_reference);
    let continued = cp.counters().misses_continued;
    let queued = cp.counters().misses_queued;
    println!(
        "{{\"kind\":\"info\",\"misses_continued\":{continued},\"misses_queued\":{queued},\"load_average_1min\":{}}}",
        load_average()
    );
    assert_eq!(queued, 0, "no miss was answered QUEUE");

    breakdown(&mut fp, &mut cp, trips.min(10_000));
}
