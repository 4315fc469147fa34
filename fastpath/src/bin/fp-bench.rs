//! `fp-bench`: the fast path's side-by-side performance harness. Every metric is measured in
//! rounds that alternate with its reference in the same run, and the median ratio reported,
//! so a noisy shared machine moves both sides alike.
//!
//! One thread runs a closed loop: an FCP initiator and an FCP target emulator on software
//! ports, and between them either the fast-path worker (translating through a hot mapping) or
//! a plain FCoE forwarder (parse, look up D_ID, rewrite addresses, transmit). Only the
//! switch's steps are timed (its receive, work and transmit): the emulators' work, which
//! doubles for a mirrored write, is not the switch's and is left out.
//!
//! The ports are software ports, or with `--port dpdk` (built with `--features dpdk`) DPDK
//! ring ethdevs joined like cables (`ring_cable`), so the switch's steps include the DPDK
//! port's receive and transmit: its mbuf bursts and the copies between mbufs and frames.
//!
//! `cargo run --release -p dve-fastpath --bin fp-bench -- [--json] [--rounds N] [--ios N]
//! [--port software|dpdk]`

use std::collections::HashMap;
use std::time::Instant;

use dve_fastpath::cache::IdMap;
use dve_fastpath::crc_patch::CrcPatcher;
#[cfg(feature = "dpdk")]
use dve_fastpath::port::{DpdkPort, DpdkPortConfig, Eal, ring_cable};
use dve_fastpath::port::{SoftwarePort, software_link};
use dve_fastpath::worker::emit::{self, FC_HEADER, FC_OFFSET};
use dve_fastpath::worker::run::WorkerMesh;
use dve_fastpath::{PortConfig, Worker, WorkerConfig};
use dve_fp_api::frame::{Frame, FramePool, TxFrame};
use dve_fp_api::ids::{
    DeviceId, ExposureId, FcId, Lun, LvId, PortId, RequestId, Timestamp, VsegId, WorkerId, Wwn,
};
use dve_fp_api::mapping::{
    DevicePath, Extent, HostSet, LunMapping, LvDescriptor, MirrorSet, MirrorSide, Placement, PortLogin,
    ReadPolicy, RedirectEntry, RedirectIndex, RedirectTable, SideLayout, SideState, StorageDescriptor,
    StripeSet, TargetExposure, VsegDescriptor,
};
use dve_fp_api::message::{MappingEntry, ToFp};
use dve_fp_api::port::PacketIo;
use dve_fp_api::transport::{FpEndpoint, fp_channel};
use dve_wire::ethernet::MacAddr;
use dve_wire::fc::{FcFrame, FcHeaderRepr, FcId as WireFcId, UNASSIGNED_X_ID, f_ctl, fc_type, r_ctl};
use dve_wire::fcoe::{Eof, Sof};
use dve_wire::fcp::{FcpCmndRepr, FcpRspRepr, FcpXferRdyRepr, TaskAttribute, lun_from_index};
use dve_wire::scsi::opcode;
use dve_wire::stack::locate_fcoe_frame;

const IO_BYTES: u32 = 4096;
const BLOCK: u32 = 512;
const FRAME_PAYLOAD: usize = 2048;
const QUEUE_DEPTH: usize = 32;
const HOST_FC: u32 = 0x01_0001;
const TARGET_FC: u32 = 0x0A_0001;
const INITIATOR_FC: u32 = 0x0F_0001;
const FC_MAP: u32 = 0x0E_FC00;

fn disk_fc(n: u32) -> u32 {
    0x02_0000 + n
}

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, n])
}

#[allow(clippy::too_many_arguments)]
fn hdr(r: u8, d_id: u32, s_id: u32, ty: u8, f: u32, ox: u16, rx: u16, parameter: u32) -> FcHeaderRepr {
    FcHeaderRepr {
        r_ctl: r,
        d_id: WireFcId(d_id),
        cs_ctl: 0,
        s_id: WireFcId(s_id),
        fc_type: ty,
        f_ctl: f,
        seq_id: 1,
        df_ctl: 0,
        seq_cnt: 0,
        ox_id: ox,
        rx_id: rx,
        parameter,
    }
}

/// Header fields of a frame that arrived in pieces (the head holds every header).
fn fc_header(frame: &TxFrame) -> Option<FcHeaderRepr> {
    let head = frame.head.as_slice();
    let fc = head.get(FC_OFFSET..FC_OFFSET + FC_HEADER)?;
    FcHeaderRepr::parse(&FcFrame::new_checked(fc).ok()?).ok()
}

fn payload_len(frame: &TxFrame) -> usize {
    frame.len() - FC_OFFSET - FC_HEADER - 8
}

/// A port the emulators and the switch use: the switch through [`PacketIo`], the emulators
/// receiving each frame as a [`TxFrame`] whose head holds every header.
trait BenchPort: PacketIo {
    /// Receive up to `max` frames into `out` (`scratch` is room for whole frames, kept by
    /// the caller so that no poll allocates).
    fn receive(&mut self, scratch: &mut Vec<Frame>, out: &mut Vec<TxFrame>, max: usize);
}

impl BenchPort for SoftwarePort {
    fn receive(&mut self, _scratch: &mut Vec<Frame>, out: &mut Vec<TxFrame>, max: usize) {
        self.rx_burst_pieces(out, max);
    }
}

#[cfg(feature = "dpdk")]
impl BenchPort for DpdkPort {
    fn receive(&mut self, scratch: &mut Vec<Frame>, out: &mut Vec<TxFrame>, max: usize) {
        scratch.clear();
        self.rx_burst(scratch, max);
        out.extend(scratch.drain(..).map(TxFrame::whole));
    }
}

/// The ports of a run: the host emulator's, the switch's (to the host, then to the disks;
/// none when the emulators are joined back to back) and the disk emulator's.
struct BenchPorts<P> {
    host: P,
    switch: Vec<P>,
    disk: P,
}

/// Emulator frames with a constant payload: header built fresh, payload shared, CRC combined,
/// and the frame flattened into one buffer as a NIC delivers it.
struct DataFrames {
    pool: FramePool,
    crc: CrcPatcher,
    payload: Frame,
    payload_crc: u32,
}

impl DataFrames {
    fn new(pool: FramePool) -> DataFrames {
        let bytes: Vec<u8> = (0..FRAME_PAYLOAD).map(|i| i as u8).collect();
        let payload = Frame::copy_from(&bytes).expect("payload fits a frame");
        DataFrames { pool, crc: CrcPatcher::new(), payload_crc: crc32fast::hash(&bytes), payload }
    }

    fn frame(&self, src: MacAddr, h: &FcHeaderRepr, last: bool) -> Option<TxFrame> {
        let crc =
            self.crc.combine(crc32fast::hash(&emit::header_bytes(h)), self.payload_crc, FRAME_PAYLOAD)?;
        let (sof, eof) = if h.seq_cnt == 0 {
            (Sof::I3, if last { Eof::T } else { Eof::N })
        } else {
            (Sof::N3, if last { Eof::T } else { Eof::N })
        };
        let pieces = emit::gathered_data_frame(
            &self.pool,
            src,
            h,
            sof,
            eof,
            self.payload.clone(),
            0,
            Some(crc),
            FC_MAP,
        )?;
        // The copy is the wire's (a NIC's receive DMA on real hardware), made on the sender's
        // side so that the switch's port receives one buffer and gathers nothing. Before, the
        // switch's port gathered the pieces, and that copy was timed as the switch's work.
        pieces.gathered_in(&self.pool).map(TxFrame::whole)
    }
}

/// The FCP initiator: keeps `QUEUE_DEPTH` 4 KiB reads or writes outstanding.
struct BenchHost {
    frames: DataFrames,
    write: bool,
    target: u32,
    next_ox: u16,
    outstanding: usize,
    completed: u64,
    scratch: Vec<Frame>,
    rx: Vec<TxFrame>,
    tx: Vec<TxFrame>,
}

impl BenchHost {
    fn issue(&mut self) {
        while self.outstanding < QUEUE_DEPTH {
            self.next_ox = self.next_ox.wrapping_add(1) & 0x7FFF;
            let lba = u64::from(self.next_ox) * 8 % 4096;
            let mut cdb = [0u8; 16];
            cdb[0] = if self.write { opcode::WRITE_16 } else { opcode::READ_16 };
            cdb[2..10].copy_from_slice(&lba.to_be_bytes());
            cdb[10..14].copy_from_slice(&(IO_BYTES / BLOCK).to_be_bytes());
            let cmnd = FcpCmndRepr {
                lun: lun_from_index(0),
                crn: 0,
                priority: 0,
                task_attribute: TaskAttribute::Simple,
                task_management: 0,
                wrdata: self.write,
                rddata: !self.write,
                cdb: &cdb,
                fcp_dl: IO_BYTES,
            };
            let f = f_ctl::FIRST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
            let h = hdr(
                r_ctl::UNSOLICITED_COMMAND,
                self.target,
                HOST_FC,
                fc_type::FCP,
                f,
                self.next_ox,
                UNASSIGNED_X_ID,
                0,
            );
            let Some(frame) =
                emit::whole_frame(&self.frames.pool, mac(100), &h, Sof::I3, Eof::T, &cmnd, FC_MAP)
            else {
                return;
            };
            self.tx.push(TxFrame::whole(frame));
            self.outstanding += 1;
        }
    }

    fn poll(&mut self, port: &mut impl BenchPort) {
        self.rx.clear();
        port.receive(&mut self.scratch, &mut self.rx, 64);
        // Drained, not taken, so the list keeps its capacity: no allocation per poll.
        let mut rx = std::mem::take(&mut self.rx);
        for frame in rx.drain(..) {
            let Some(h) = fc_header(&frame) else { continue };
            match h.r_ctl {
                r_ctl::COMMAND_STATUS => {
                    self.outstanding -= 1;
                    self.completed += 1;
                }
                r_ctl::DATA_DESCRIPTOR => {
                    for i in 0..(IO_BYTES as usize / FRAME_PAYLOAD) {
                        let last = (i + 1) * FRAME_PAYLOAD == IO_BYTES as usize;
                        let f = f_ctl::RELATIVE_OFFSET
                            | if last { f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE } else { 0 };
                        let mut d = hdr(
                            r_ctl::SOLICITED_DATA,
                            h.s_id.0,
                            HOST_FC,
                            fc_type::FCP,
                            f,
                            h.ox_id,
                            h.rx_id,
                            (i * FRAME_PAYLOAD) as u32,
                        );
                        d.seq_cnt = i as u16;
                        if let Some(tx) = self.frames.frame(mac(100), &d, last) {
                            self.tx.push(tx);
                        }
                    }
                }
                _ => {}
            }
        }
        self.rx = rx;
        self.issue();
        port.tx_burst(&mut self.tx);
        self.tx.clear();
    }
}

/// FCP targets behind one port, answering for any FC address: reads send two data frames and
/// status; writes ask for the data, then send status.
struct BenchDisk {
    frames: DataFrames,
    next_rx: u16,
    writes: HashMap<u16, (u16, u32, u32, usize)>,
    scratch: Vec<Frame>,
    rx: Vec<TxFrame>,
    tx: Vec<TxFrame>,
}

impl BenchDisk {
    fn small<P: dve_wire::emit::WireEmit + ?Sized>(&self, h: &FcHeaderRepr, payload: &P) -> Option<TxFrame> {
        emit::whole_frame(&self.frames.pool, mac(101), h, Sof::I3, Eof::T, payload, FC_MAP)
            .map(TxFrame::whole)
    }

    fn poll(&mut self, port: &mut impl BenchPort) {
        self.rx.clear();
        port.receive(&mut self.scratch, &mut self.rx, 64);
        // Drained, not taken, so the list keeps its capacity: no allocation per poll.
        let mut rx = std::mem::take(&mut self.rx);
        for frame in rx.drain(..) {
            let Some(h) = fc_header(&frame) else { continue };
            let me = h.d_id.0;
            let peer = h.s_id.0;
            match h.r_ctl {
                r_ctl::UNSOLICITED_COMMAND => {
                    self.next_rx = self.next_rx.wrapping_add(1) & 0x7FFF;
                    let rx = self.next_rx;
                    let op = frame.head.as_slice().get(FC_OFFSET + FC_HEADER + 12).copied().unwrap_or(0);
                    let status_f = f_ctl::EXCHANGE_CONTEXT
                        | f_ctl::LAST_SEQUENCE
                        | f_ctl::END_SEQUENCE
                        | f_ctl::SEQUENCE_INITIATIVE;
                    if op == opcode::WRITE_16 {
                        self.writes.insert(rx, (h.ox_id, peer, me, 0));
                        let f = f_ctl::EXCHANGE_CONTEXT | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE;
                        let x = hdr(r_ctl::DATA_DESCRIPTOR, peer, me, fc_type::FCP, f, h.ox_id, rx, 0);
                        if let Some(tx) = self.small(&x, &FcpXferRdyRepr { data_ro: 0, burst_len: IO_BYTES })
                        {
                            self.tx.push(tx);
                        }
                    } else {
                        for i in 0..(IO_BYTES as usize / FRAME_PAYLOAD) {
                            let last = (i + 1) * FRAME_PAYLOAD == IO_BYTES as usize;
                            let f = f_ctl::EXCHANGE_CONTEXT
                                | f_ctl::RELATIVE_OFFSET
                                | if last { f_ctl::END_SEQUENCE } else { 0 };
                            let mut d = hdr(
                                r_ctl::SOLICITED_DATA,
                                peer,
                                me,
                                fc_type::FCP,
                                f,
                                h.ox_id,
                                rx,
                                (i * FRAME_PAYLOAD) as u32,
                            );
                            d.seq_cnt = i as u16;
                            if let Some(tx) = self.frames.frame(mac(101), &d, last) {
                                self.tx.push(tx);
                            }
                        }
                        let s = hdr(r_ctl::COMMAND_STATUS, peer, me, fc_type::FCP, status_f, h.ox_id, rx, 0);
                        if let Some(tx) = self.small(&s, &FcpRspRepr::good()) {
                            self.tx.push(tx);
                        }
                    }
                }
                r_ctl::SOLICITED_DATA => {
                    let done = match self.writes.get_mut(&h.rx_id) {
                        Some(w) => {
                            w.3 += payload_len(&frame);
                            w.3 >= IO_BYTES as usize
                        }
                        None => false,
                    };
                    if done && let Some((ox, peer, me, _)) = self.writes.remove(&h.rx_id) {
                        let f = f_ctl::EXCHANGE_CONTEXT
                            | f_ctl::LAST_SEQUENCE
                            | f_ctl::END_SEQUENCE
                            | f_ctl::SEQUENCE_INITIATIVE;
                        let s = hdr(r_ctl::COMMAND_STATUS, peer, me, fc_type::FCP, f, ox, h.rx_id, 0);
                        if let Some(tx) = self.small(&s, &FcpRspRepr::good()) {
                            self.tx.push(tx);
                        }
                    }
                }
                _ => {}
            }
        }
        self.rx = rx;
        port.tx_burst(&mut self.tx);
        self.tx.clear();
    }
}

/// The reference: a plain FCoE switch. Parse (with the worker's checks: CRC verified except on
/// data frames), look up D_ID, rewrite the Ethernet addresses, transmit.
struct PlainForwarder {
    /// The D_ID table, hashed as the worker's own tables are: the reference is no slower
    /// than the worker for want of a cheap hash.
    routes: IdMap<u32, (usize, MacAddr)>,
    rx: Vec<Frame>,
    out: Vec<Vec<TxFrame>>,
}

impl PlainForwarder {
    /// Forward what arrived; returns the frames moved (each counted in and out). Kept out of
    /// line so a profiler can count its instructions alone (`--toggle-collect`).
    #[inline(never)]
    fn poll<P: PacketIo>(&mut self, ports: &mut [P]) -> u64 {
        let mut moved = 0;
        for port in ports.iter_mut() {
            self.rx.clear();
            port.rx_burst(&mut self.rx, 64);
            for frame in self.rx.drain(..) {
                let bytes = frame.as_slice();
                let Ok(info) = locate_fcoe_frame(bytes) else { continue };
                let d_id = info.header.d_id.0;
                if info.header.r_ctl != r_ctl::SOLICITED_DATA && info.verify(bytes).is_err() {
                    continue;
                }
                let Some(&(port, src)) = self.routes.get(&d_id) else { continue };
                let Ok(mut buf) = frame.try_into_mut() else { continue };
                let b = buf.as_mut_slice();
                b[0..6].copy_from_slice(&emit::fpma(FC_MAP, d_id).0);
                b[6..12].copy_from_slice(&src.0);
                self.out[port].push(TxFrame::whole(buf.freeze()));
            }
        }
        for (port, out) in ports.iter_mut().zip(self.out.iter_mut()) {
            moved += 2 * port.tx_burst(out) as u64;
            out.clear();
        }
        moved
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Layout {
    Linear,
    Stripe4,
    Mirror2,
}

enum Switch {
    Worker { worker: Box<Worker>, mesh: WorkerMesh, fp: FpEndpoint, scratch: Vec<Frame> },
    Forwarder { forwarder: PlainForwarder },
    Wire,
}

fn worker_for(layout: Layout) -> Switch {
    let configs = (0..2u16)
        .map(|p| PortConfig {
            id: PortId(p),
            mac: mac(p as u8),
            initiator_fc_id: FcId::new(INITIATOR_FC + u32::from(p)).unwrap(),
        })
        .collect();
    let mut config = WorkerConfig::new(WorkerId(0), configs);
    config.pool_frames = 1024;
    let mut worker = Worker::new(config);
    let place = |d: u32| Placement { device: DeviceId(d), lba: 0 };
    let sd = match layout {
        Layout::Linear => StorageDescriptor::Single(place(1)),
        Layout::Stripe4 => {
            StorageDescriptor::Stripe(StripeSet::new(6, (1..=4).map(place).collect()).unwrap())
        }
        Layout::Mirror2 => StorageDescriptor::Mirror(
            MirrorSet::new(
                (1..=2)
                    .map(|d| MirrorSide {
                        layout: SideLayout::Single(place(d)),
                        state: SideState::Alive,
                        read_cost: 1,
                    })
                    .collect(),
                ReadPolicy::RoundRobin,
            )
            .unwrap(),
        ),
    };
    let mut table = RedirectTable::new(4);
    table.insert(RedirectEntry::read_write(sd)).unwrap();
    let seg = VsegDescriptor { id: VsegId(1), lv: LvId(1), start: 0, blocks: 1 << 20 };
    let mut grants = vec![
        MappingEntry::Login(PortLogin { fc_id: FcId::new(HOST_FC).unwrap(), port_name: Wwn(1) }),
        MappingEntry::Lv(LvDescriptor::new(LvId(1), BLOCK, vec![seg]).unwrap()),
        MappingEntry::Redirects { vseg: VsegId(1), table },
        MappingEntry::Extents {
            vseg: VsegId(1),
            extents: vec![Extent { start: 0, end: 1 << 20, value: RedirectIndex(0) }],
        },
    ];
    for d in 1..=4 {
        grants.push(MappingEntry::DevicePath(DevicePath {
            device: DeviceId(d),
            port: PortId(1),
            target_fc_id: FcId::new(disk_fc(d)).unwrap(),
            lun: Lun(0),
            block_size: BLOCK,
        }));
    }
    let exposure = TargetExposure {
        id: ExposureId(1),
        port_name: Wwn(2),
        node_name: Wwn(3),
        fc_id: FcId::new(TARGET_FC).unwrap(),
        luns: vec![LunMapping { lun: Lun(0), lv: LvId(1), hosts: HostSet::All }],
    };
    worker.handle_message(Timestamp(0), ToFp::Expose { req: RequestId(0), exposure });
    for entry in grants {
        worker.handle_message(Timestamp(0), ToFp::AddMapping { req: RequestId(0), entry });
    }
    while worker.poll_upcall().is_some() {}
    let (fp, cp) = fp_channel(1024);
    std::mem::forget(cp);
    Switch::Worker {
        worker: Box::new(worker),
        mesh: WorkerMesh::new(1, 64),
        fp,
        scratch: Vec::with_capacity(64),
    }
}

/// What one configuration's run measured.
#[derive(Clone, Copy, Debug)]
struct Measured {
    /// Nanoseconds the switch's steps took (the emulators' steps between them not counted).
    ns: f64,
    /// Frames the switch received and sent: a mirrored write moves fifteen per I/O (the
    /// command out twice, two XFER_RDY in, four data frames out, two responses in), the
    /// forwarder eight.
    frames: u64,
}

/// Software ports for one run of `kind` (`wire`: the emulators back to back).
fn software_ports(kind: &str, pool: &FramePool) -> BenchPorts<SoftwarePort> {
    if kind == "wire" {
        let (host, disk) = software_link(PortId(100), PortId(101), 4096, pool.clone());
        return BenchPorts { host, switch: Vec::new(), disk };
    }
    let (host, s0) = software_link(PortId(100), PortId(0), 4096, pool.clone());
    let (disk, s1) = software_link(PortId(101), PortId(1), 4096, pool.clone());
    BenchPorts { host, switch: vec![s0, s1], disk }
}

/// Run `ios` I/Os through one configuration on software ports made for it.
fn run(kind: &str, layout: Layout, write: bool, ios: u64) -> Measured {
    let pool = FramePool::new(2048, 1024);
    let mut ports = software_ports(kind, &pool);
    run_on(&mut ports, &pool, kind, layout, write, ios)
}

/// Run `ios` I/Os through one configuration on `ports`.
fn run_on<P: BenchPort>(
    ports: &mut BenchPorts<P>,
    pool: &FramePool,
    kind: &str,
    layout: Layout,
    write: bool,
    ios: u64,
) -> Measured {
    let mut switch = match kind {
        "wire" => Switch::Wire,
        "worker" => worker_for(layout),
        _ => {
            let mut routes = IdMap::default();
            routes.insert(HOST_FC, (0, mac(0)));
            routes.insert(disk_fc(1), (1, mac(1)));
            Switch::Forwarder {
                forwarder: PlainForwarder { routes, rx: Vec::new(), out: vec![Vec::new(), Vec::new()] },
            }
        }
    };
    let target = if kind == "worker" { TARGET_FC } else { disk_fc(1) };
    let mut host = BenchHost {
        frames: DataFrames::new(pool.clone()),
        write,
        target,
        next_ox: 0,
        outstanding: 0,
        completed: 0,
        scratch: Vec::new(),
        rx: Vec::new(),
        tx: Vec::new(),
    };
    let mut disk = BenchDisk {
        frames: DataFrames::new(pool.clone()),
        next_rx: 0,
        writes: HashMap::new(),
        scratch: Vec::new(),
        rx: Vec::new(),
        tx: Vec::new(),
    };
    let mut switch_ns = 0u128;
    let mut frames = 0u64;
    let mut now = 0u64;
    let mut idle = 0u32;
    while host.completed < ios {
        let before = host.completed;
        host.poll(&mut ports.host);
        let step = Instant::now();
        match &mut switch {
            Switch::Worker { worker, mesh, fp, scratch } => {
                now += 1;
                let done = worker.poll(
                    Timestamp(now),
                    &mut ports.switch,
                    &[PortId(0), PortId(1)],
                    mesh,
                    fp,
                    scratch,
                );
                frames += (done.frames_in + done.frames_out) as u64;
            }
            Switch::Forwarder { forwarder } => frames += forwarder.poll(&mut ports.switch),
            Switch::Wire => {}
        }
        switch_ns += step.elapsed().as_nanos();
        disk.poll(&mut ports.disk);
        idle = if host.completed == before { idle + 1 } else { 0 };
        assert!(idle < 100_000, "{kind} {layout:?} write={write} stalled at {} I/Os", host.completed);
    }
    Measured { ns: switch_ns as f64, frames }
}

/// Where the runs' frames travel.
enum Ports {
    /// Software ports, made afresh for each run.
    Software,
    /// DPDK ring cables, opened once (an ethdev cannot be opened twice in a process) and
    /// emptied after each run.
    #[cfg(feature = "dpdk")]
    Dpdk { ports: Box<BenchPorts<DpdkPort>>, pool: FramePool },
}

impl Ports {
    fn run(&mut self, kind: &str, layout: Layout, write: bool, ios: u64) -> Measured {
        match self {
            Ports::Software => run(kind, layout, write, ios),
            #[cfg(feature = "dpdk")]
            Ports::Dpdk { ports, pool } => {
                let measured = run_on(ports, pool, kind, layout, write, ios);
                drain(ports);
                measured
            }
        }
    }

    /// Metric names are prefixed with the port kind unless it is the software one.
    fn prefix(&self) -> &'static str {
        match self {
            Ports::Software => "",
            #[cfg(feature = "dpdk")]
            Ports::Dpdk { .. } => "dpdk_",
        }
    }
}

/// EAL without hugepages or NICs, and two ring cables: host to switch port 0, switch port 1
/// to the disks.
#[cfg(feature = "dpdk")]
fn dpdk_ports() -> Result<Ports, String> {
    let args = [
        "fp-bench",
        "--no-huge",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        "-m",
        "512",
        "--log-level=lib.eal:warning",
    ];
    let eal = Eal::init(&args).map_err(|e| e.to_string())?;
    let pool = FramePool::new(8192, 4096);
    let [host_end, switch_host] = ring_cable(&eal, "fpbhost", 1).map_err(|e| e.to_string())?;
    let [switch_disk, disk_end] = ring_cable(&eal, "fpbdisk", 1).map_err(|e| e.to_string())?;
    let open = |name: &str, id: u16| {
        DpdkPort::open(&eal, name, DpdkPortConfig::new(PortId(id), pool.clone())).map_err(|e| e.to_string())
    };
    let ports = Box::new(BenchPorts {
        host: open(&host_end, 100)?,
        switch: vec![open(&switch_host, 0)?, open(&switch_disk, 1)?],
        disk: open(&disk_end, 101)?,
    });
    Ok(Ports::Dpdk { ports, pool })
}

/// Drop whatever a finished run left in flight, so the next starts on empty cables.
#[cfg(feature = "dpdk")]
fn drain<P: PacketIo>(ports: &mut BenchPorts<P>) {
    let mut scratch = Vec::with_capacity(256);
    let mut quiet = 0;
    while quiet < 3 {
        let mut got = 0;
        for port in std::iter::once(&mut ports.host).chain(ports.switch.iter_mut()).chain([&mut ports.disk]) {
            scratch.clear();
            got += port.rx_burst(&mut scratch, 256);
        }
        quiet = if got == 0 { quiet + 1 } else { 0 };
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Args {
    json: bool,
    rounds: usize,
    ios: u64,
    dpdk: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args { json: false, rounds: 11, ios: 50_000, dpdk: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => a.json = true,
            "--rounds" => {
                a.rounds = it.next().and_then(|v| v.parse().ok()).ok_or("--rounds needs a number")?
            }
            "--ios" => a.ios = it.next().and_then(|v| v.parse().ok()).ok_or("--ios needs a number")?,
            "--port" => match it.next().as_deref() {
                Some("software") => a.dpdk = false,
                Some("dpdk") if cfg!(feature = "dpdk") => a.dpdk = true,
                Some("dpdk") => return Err("--port dpdk needs fp-bench built with --features dpdk".into()),
                _ => return Err("--port needs software or dpdk".into()),
            },
            other => {
                return Err(format!(
                    "unknown argument {other:?}; use --json, --rounds N, --ios N, --port software|dpdk"
                ));
            }
        }
    }
    Ok(a)
}

fn report(json: bool, metric: &str, unit: &str, value: f64, reference: &str, ratio: f64, target: &str) {
    if json {
        println!(
            "{{\"metric\":\"{metric}\",\"unit\":\"{unit}\",\"value\":{value:.1},\"reference\":\"{reference}\",\"median_ratio\":{ratio:.3},\"target\":\"{target}\"}}"
        );
    } else {
        println!("{metric:<34} {value:>14.1} {unit:<24} ratio {ratio:>6.3} vs {reference} (target {target})");
    }
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fp-bench: {e}");
            std::process::exit(2);
        }
    };
    let mut ports = Ports::Software;
    #[cfg(feature = "dpdk")]
    if a.dpdk {
        ports = match dpdk_ports() {
            Ok(ports) => ports,
            Err(e) => {
                eprintln!("fp-bench: DPDK ports: {e}");
                std::process::exit(1);
            }
        };
    }
    // `FP_BENCH_PROFILE=worker|forwarder|wire` runs one configuration alone, for a profiler
    // (`wire`: the emulators back to back, to subtract from a whole-program instruction count):
    // 8 x `--ios` linear reads (`FP_BENCH_WRITE=1`: writes; `FP_BENCH_LAYOUT=stripe4|mirror2`).
    if let Ok(kind) = std::env::var("FP_BENCH_PROFILE") {
        let write = std::env::var("FP_BENCH_WRITE").is_ok_and(|w| w == "1");
        let layout = match std::env::var("FP_BENCH_LAYOUT").as_deref() {
            Ok("stripe4") => Layout::Stripe4,
            Ok("mirror2") => Layout::Mirror2,
            _ => Layout::Linear,
        };
        let ios = a.ios * 8;
        if kind == "wire" && a.dpdk {
            eprintln!("fp-bench: FP_BENCH_PROFILE=wire runs on software ports only");
            std::process::exit(2);
        }
        let m = ports.run(&kind, layout, write, ios);
        println!(
            "{kind}: {:.1} ns per I/O, {:.2} frames per I/O",
            m.ns / ios as f64,
            m.frames as f64 / ios as f64
        );
        return;
    }
    // Time per frame the switch moves (received or sent), against the forwarder's per frame
    // it moves: a read is eight frames either way; a mirrored write is fifteen through the
    // worker and eight through the forwarder, which has one target.
    for (name, layout, write) in [
        ("read_4k_linear", Layout::Linear, false),
        ("read_4k_stripe4", Layout::Stripe4, false),
        ("read_4k_mirror2", Layout::Mirror2, false),
        ("write_4k_linear", Layout::Linear, true),
        ("write_4k_mirror2", Layout::Mirror2, true),
    ] {
        let mut ratios = Vec::new();
        let mut rates = Vec::new();
        let mut ns_frame = Vec::new();
        for _ in 0..a.rounds {
            let worker = ports.run("worker", layout, write, a.ios);
            let forwarder = ports.run("forwarder", layout, write, a.ios);
            let per_frame = |m: Measured| m.ns.max(1.0) / m.frames.max(1) as f64;
            ratios.push(per_frame(worker) / per_frame(forwarder));
            rates.push(a.ios as f64 * 1e9 / worker.ns.max(1.0));
            ns_frame.push(per_frame(worker));
        }
        let target = if write { "-" } else { ">= 4e6 reads/s/core" };
        let name = format!("{}{name}", ports.prefix());
        report(a.json, &name, "ios_per_sec_per_core", median(&mut rates), "-", 1.0, target);
        report(
            a.json,
            &format!("{name}_ns_per_frame"),
            "ns_per_frame",
            median(&mut ns_frame),
            "plain_forwarder",
            median(&mut ratios),
            "<= 2.0x",
        );
    }
    // Mirrored writes against unmirrored writes, both through the worker, alternating.
    let mut ratios = Vec::new();
    for _ in 0..a.rounds {
        let plain = ports.run("worker", Layout::Linear, true, a.ios);
        let mirror = ports.run("worker", Layout::Mirror2, true, a.ios);
        ratios.push(plain.ns.max(1.0) / mirror.ns.max(1.0));
    }
    report(
        a.json,
        &format!("{}write_4k_mirror2_vs_unmirrored", ports.prefix()),
        "rate_ratio",
        median(&mut ratios),
        "unmirrored_writes",
        median(&mut ratios),
        ">= 0.6x",
    );
}
