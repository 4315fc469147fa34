//! A frame-level testbed around one worker: an FCP initiator (the host) on port 0 and FCP
//! targets (the disks) on ports 1 to 4, all speaking real FCoE built and parsed with
//! `dve-wire`, so every frame the worker emits is checked (CRC included) and the data each
//! device ends up holding can be compared with a plain translation model.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};

use dve_fastpath::{PortConfig, Worker, WorkerConfig};
use dve_fp_api::frame::{Frame, TxFrame};
use dve_fp_api::ids::{
    DeviceId, ExposureId, FcId, Lun, LvId, PortId, RequestId, Timestamp, VsegId, WorkerId, Wwn,
};
use dve_fp_api::mapping::{
    DevicePath, Extent, HostSet, LunMapping, LvDescriptor, PortLogin, RedirectEntry, RedirectIndex,
    RedirectTable, TargetExposure, VsegDescriptor,
};
use dve_fp_api::message::{MappingEntry, ToCp, ToFp};
use dve_wire::emit::WireEmit;
use dve_wire::ethernet::{ETHERTYPE_FCOE, EthernetRepr, MacAddr};
use dve_wire::fc::{FcHeaderRepr, FcId as WireFcId, UNASSIGNED_X_ID, f_ctl, fc_type, r_ctl};
use dve_wire::fcoe::{Eof, FcoeRepr, Sof};
use dve_wire::fcp::{FcpCmndRepr, FcpRspRepr, FcpXferRdyRepr, Residual, TaskAttribute, lun_from_index};
use dve_wire::scsi::{opcode, status};
use dve_wire::stack::{emit_fcoe_frame, parse_fcoe_frame};

pub const BLOCK: usize = 512;
pub const HOST_PORT: PortId = PortId(0);
pub const HOST_FC: u32 = 0x01_0001;
pub const HOST_WWN: Wwn = Wwn(0x2100_0000_0000_0001);
pub const TARGET_FC: u32 = 0x0A_0001;
pub const LV: LvId = LvId(1);
pub const EXPOSURE: ExposureId = ExposureId(1);

/// The switch's initiator address on disk port `port`.
pub fn initiator_fc(port: u16) -> u32 {
    0x0F_0000 + u32::from(port)
}

/// The FC address of device `n` (1-based).
pub fn disk_fc(n: u32) -> u32 {
    0x02_0000 + n
}

/// The disk port device `n` sits behind.
pub fn disk_port(n: u32) -> PortId {
    PortId(((n - 1) % 4 + 1) as u16)
}

fn mac(port: u16) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, port as u8])
}

/// Build a whole FCoE frame.
pub fn fcoe<P: WireEmit + ?Sized>(header: &FcHeaderRepr, sof: Sof, eof: Eof, payload: &P) -> Vec<u8> {
    let mut buf = vec![0u8; 2400];
    let eth = EthernetRepr {
        dst_addr: MacAddr([0x0e, 0xfc, 0, 0, 0, 1]),
        src_addr: mac(99),
        vlan: None,
        ethertype: ETHERTYPE_FCOE,
    };
    let len = emit_fcoe_frame(&mut buf, &eth, &FcoeRepr { sof, eof }, header, payload).expect("test frame");
    buf.truncate(len);
    buf
}

#[allow(clippy::too_many_arguments)]
pub fn header(r: u8, d_id: u32, s_id: u32, ty: u8, f: u32, ox: u16, rx: u16, parameter: u32) -> FcHeaderRepr {
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

/// A command a device received.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DeviceCommand {
    pub device: u32,
    pub write: bool,
    pub lba: u64,
    pub blocks: u32,
}

#[derive(Debug, Default)]
struct DiskExchange {
    device: u32,
    initiator: u32,
    ox: u16,
    write: bool,
    lba: u64,
    blocks: u32,
    received: BTreeMap<u32, Vec<u8>>,
    expected: u32,
}

/// FCP targets: every device's blocks, sparse.
#[derive(Debug, Default)]
pub struct Disks {
    pub blocks: HashMap<(u32, u64), Vec<u8>>,
    pub commands: Vec<DeviceCommand>,
    /// Devices whose writes fail with CHECK CONDITION.
    pub failing_writes: Vec<u32>,
    /// Devices that store all but a write's last block and say GOOD with an underrun of it (as
    /// a device that lost the data says so only in the residual).
    pub short_writes: Vec<u32>,
    /// Largest XFER_RDY burst a disk asks for.
    pub burst: u32,
    exchanges: HashMap<u16, DiskExchange>,
    next_rx: u16,
}

impl Disks {
    pub fn read_block(&self, device: u32, lba: u64) -> Vec<u8> {
        self.blocks.get(&(device, lba)).cloned().unwrap_or_else(|| vec![0; BLOCK])
    }

    /// React to a frame sent to a disk; returns the frames the disk sends back.
    pub fn receive(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let view = parse_fcoe_frame(bytes).expect("the worker sent a well-formed frame to a disk");
        let h = view.header;
        let device = h.d_id.0 - 0x02_0000;
        let mut out = Vec::new();
        match (h.r_ctl, h.fc_type) {
            (r_ctl::UNSOLICITED_COMMAND, fc_type::FCP) => {
                let cmnd = FcpCmndRepr::parse(view.payload).expect("FCP_CMND");
                let cdb = cmnd.cdb;
                let (write, lba, blocks) = match cdb[0] {
                    opcode::READ_16 | opcode::WRITE_16 => (
                        cdb[0] == opcode::WRITE_16,
                        u64::from_be_bytes(cdb[2..10].try_into().unwrap()),
                        u32::from_be_bytes(cdb[10..14].try_into().unwrap()),
                    ),
                    other => panic!("disk got opcode {other:#x}"),
                };
                assert_eq!(cmnd.fcp_dl, blocks * BLOCK as u32, "FCP_DL matches the CDB");
                self.commands.push(DeviceCommand { device, write, lba, blocks });
                self.next_rx = self.next_rx.wrapping_add(1);
                let rx = self.next_rx;
                let ex = DiskExchange {
                    device,
                    initiator: h.s_id.0,
                    ox: h.ox_id,
                    write,
                    lba,
                    blocks,
                    expected: blocks * BLOCK as u32,
                    ..Default::default()
                };
                if write {
                    let burst = if self.burst == 0 { ex.expected } else { self.burst.min(ex.expected) };
                    out.push(self.xfer_rdy(&ex, rx, 0, burst));
                    self.exchanges.insert(rx, ex);
                } else {
                    let mut data = Vec::new();
                    for b in 0..u64::from(blocks) {
                        data.extend(self.read_block(device, lba + b));
                    }
                    let chunks: Vec<&[u8]> = data.chunks(2048).collect();
                    for (i, chunk) in chunks.iter().enumerate() {
                        let f = f_ctl::EXCHANGE_CONTEXT
                            | f_ctl::RELATIVE_OFFSET
                            | if i + 1 == chunks.len() { f_ctl::END_SEQUENCE } else { 0 };
                        let mut hd = header(
                            r_ctl::SOLICITED_DATA,
                            ex.initiator,
                            disk_fc(device),
                            fc_type::FCP,
                            f,
                            ex.ox,
                            rx,
                            (i * 2048) as u32,
                        );
                        hd.seq_cnt = i as u16;
                        out.push(fcoe(
                            &hd,
                            if i == 0 { Sof::I3 } else { Sof::N3 },
                            if i + 1 == chunks.len() { Eof::T } else { Eof::N },
                            *chunk,
                        ));
                    }
                    out.push(self.response(&ex, rx, status::GOOD));
                }
            }
            (r_ctl::SOLICITED_DATA, fc_type::FCP) => {
                let rx = h.rx_id;
                let ex = self.exchanges.get_mut(&rx).expect("data for a known disk exchange");
                ex.received.insert(h.parameter, view.payload.to_vec());
                let have: u32 = ex.received.values().map(|v| v.len() as u32).sum();
                let burst_end = have;
                if have >= ex.expected {
                    let ex = self.exchanges.remove(&rx).unwrap();
                    let mut data = Vec::new();
                    for (off, chunk) in &ex.received {
                        assert_eq!(*off as usize, data.len(), "data arrives contiguous, in order");
                        data.extend(chunk);
                    }
                    let failing = self.failing_writes.contains(&ex.device);
                    let short = self.short_writes.contains(&ex.device);
                    let stored = if short { data.len().saturating_sub(BLOCK) } else { data.len() };
                    if !failing {
                        for (i, block) in data[..stored].chunks(BLOCK).enumerate() {
                            self.blocks.insert((ex.device, ex.lba + i as u64), block.to_vec());
                        }
                    }
                    let (scsi_status, residual) = match (failing, short) {
                        (true, _) => (status::CHECK_CONDITION, Residual::None),
                        (false, true) => (status::GOOD, Residual::Under((data.len() - stored) as u32)),
                        (false, false) => (status::GOOD, Residual::None),
                    };
                    out.push(self.response_with(&ex, rx, scsi_status, residual));
                } else if h.f_ctl & f_ctl::SEQUENCE_INITIATIVE != 0 {
                    let burst = if self.burst == 0 { ex.expected } else { self.burst };
                    let len = burst.min(ex.expected - burst_end);
                    let ex = &self.exchanges[&rx];
                    out.push(self.xfer_rdy(ex, rx, burst_end, len));
                }
            }
            (r_ctl::BLS_ABTS, fc_type::BLS) => {
                let hd = header(
                    r_ctl::BLS_BA_ACC,
                    h.s_id.0,
                    h.d_id.0,
                    fc_type::BLS,
                    f_ctl::EXCHANGE_CONTEXT | f_ctl::END_SEQUENCE | f_ctl::LAST_SEQUENCE,
                    h.ox_id,
                    h.rx_id,
                    0,
                );
                out.push(fcoe(&hd, Sof::I3, Eof::T, &[0u8; 12][..]));
            }
            other => panic!("disk got unexpected frame {other:?}"),
        }
        out
    }

    fn xfer_rdy(&self, ex: &DiskExchange, rx: u16, ro: u32, len: u32) -> Vec<u8> {
        let hd = header(
            r_ctl::DATA_DESCRIPTOR,
            ex.initiator,
            disk_fc(ex.device),
            fc_type::FCP,
            f_ctl::EXCHANGE_CONTEXT | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE,
            ex.ox,
            rx,
            0,
        );
        fcoe(&hd, Sof::I3, Eof::T, &FcpXferRdyRepr { data_ro: ro, burst_len: len })
    }

    fn response(&self, ex: &DiskExchange, rx: u16, scsi_status: u8) -> Vec<u8> {
        self.response_with(ex, rx, scsi_status, Residual::None)
    }

    fn response_with(&self, ex: &DiskExchange, rx: u16, scsi_status: u8, residual: Residual) -> Vec<u8> {
        let hd = header(
            r_ctl::COMMAND_STATUS,
            ex.initiator,
            disk_fc(ex.device),
            fc_type::FCP,
            f_ctl::EXCHANGE_CONTEXT | f_ctl::LAST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE,
            ex.ox,
            rx,
            0,
        );
        let rsp = FcpRspRepr { scsi_status, residual, ..FcpRspRepr::good() };
        fcoe(&hd, Sof::I3, Eof::T, &rsp)
    }
}

/// What the host saw of one command.
#[derive(Clone, Debug, Default)]
pub struct HostIoResult {
    pub data: Vec<u8>,
    pub status: Option<u8>,
    pub xfer_rdys: u32,
    /// The RX_ID the worker gave the exchange, once it sent a frame of it.
    pub rx_id: Option<u16>,
    /// The sense data of the response, if it had any.
    pub sense: Option<Vec<u8>>,
    /// The underrun the response reported, if any.
    pub residual_under: Option<u32>,
}

/// The FCP initiator.
#[derive(Debug, Default)]
pub struct Host {
    pub results: HashMap<u16, HostIoResult>,
    writes: HashMap<u16, Vec<u8>>,
    next_ox: u16,
}

impl Host {
    pub fn receive(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let view = parse_fcoe_frame(bytes).expect("the worker sent a well-formed frame to the host");
        let h = view.header;
        assert_eq!(h.d_id.0, HOST_FC);
        assert_eq!(h.s_id.0, TARGET_FC, "frames to the host come from the virtual target");
        let result = self.results.entry(h.ox_id).or_default();
        result.rx_id = Some(h.rx_id);
        let mut out = Vec::new();
        match h.r_ctl {
            r_ctl::SOLICITED_DATA => {
                let at = h.parameter as usize;
                if result.data.len() < at + view.payload.len() {
                    result.data.resize(at + view.payload.len(), 0);
                }
                result.data[at..at + view.payload.len()].copy_from_slice(view.payload);
            }
            r_ctl::DATA_DESCRIPTOR => {
                result.xfer_rdys += 1;
                let ready = FcpXferRdyRepr::parse(view.payload).expect("XFER_RDY");
                let data = &self.writes[&h.ox_id];
                let want = &data[ready.data_ro as usize..(ready.data_ro + ready.burst_len) as usize];
                let chunks: Vec<&[u8]> = want.chunks(2048).collect();
                for (i, chunk) in chunks.iter().enumerate() {
                    let last = i + 1 == chunks.len();
                    let f = f_ctl::RELATIVE_OFFSET
                        | if last { f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE } else { 0 };
                    let mut hd = header(
                        r_ctl::SOLICITED_DATA,
                        TARGET_FC,
                        HOST_FC,
                        fc_type::FCP,
                        f,
                        h.ox_id,
                        h.rx_id,
                        ready.data_ro + (i * 2048) as u32,
                    );
                    hd.seq_cnt = i as u16;
                    out.push(fcoe(
                        &hd,
                        if i == 0 { Sof::I3 } else { Sof::N3 },
                        if last { Eof::T } else { Eof::N },
                        *chunk,
                    ));
                }
            }
            r_ctl::COMMAND_STATUS => {
                let rsp = FcpRspRepr::parse(view.payload).expect("FCP_RSP");
                result.status = Some(rsp.scsi_status);
                result.sense = rsp.sense.map(<[u8]>::to_vec);
                if let Residual::Under(n) = rsp.residual {
                    result.residual_under = Some(n);
                }
            }
            other => panic!("host got R_CTL {other:#x}"),
        }
        out
    }

    pub fn command(&mut self, cdb: &[u8], data: Option<Vec<u8>>, fcp_dl: u32) -> (u16, Vec<u8>) {
        self.next_ox = self.next_ox.wrapping_add(1);
        let ox = self.next_ox;
        let write = data.is_some();
        if let Some(data) = data {
            self.writes.insert(ox, data);
        }
        let cmnd = FcpCmndRepr {
            lun: lun_from_index(0),
            crn: 0,
            priority: 0,
            task_attribute: TaskAttribute::Simple,
            task_management: 0,
            wrdata: write,
            rddata: !write && fcp_dl > 0,
            cdb,
            fcp_dl,
        };
        let hd = header(
            r_ctl::UNSOLICITED_COMMAND,
            TARGET_FC,
            HOST_FC,
            fc_type::FCP,
            f_ctl::FIRST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE,
            ox,
            UNASSIGNED_X_ID,
            0,
        );
        self.results.insert(ox, HostIoResult::default());
        (ox, fcp_frame(&hd, &cmnd))
    }
}

fn fcp_frame(hd: &FcHeaderRepr, cmnd: &FcpCmndRepr<'_>) -> Vec<u8> {
    fcoe(hd, Sof::I3, Eof::T, cmnd)
}

pub fn read16(lba: u64, blocks: u32) -> [u8; 16] {
    let mut cdb = [0u8; 16];
    cdb[0] = opcode::READ_16;
    cdb[2..10].copy_from_slice(&lba.to_be_bytes());
    cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

pub fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut cdb = [0u8; 10];
    cdb[0] = opcode::WRITE_10;
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

/// A worker with one host, four disk ports and a volume of one or more segments.
pub struct Testbed {
    pub worker: Worker,
    pub host: Host,
    pub disks: Disks,
    pub upcalls: Vec<ToCp>,
    /// Frames for disks not delivered yet (while disks are held).
    pub held_disk_frames: VecDeque<(PortId, Vec<u8>)>,
    pub hold_disks: bool,
    /// Lose the n-th data frame (1-based) disks send from now on, as a lossy link would.
    pub lose_disk_data_frame: Option<u32>,
    /// Every frame the worker sent a disk, as it was sent (pieces and all), when set.
    pub sent_to_disks: Option<Vec<(PortId, TxFrame)>>,
    /// The process's allocations so far, when a test counts them: every call into the worker
    /// then adds what it allocated to `worker_allocations` (the harness's own are not counted).
    pub meter: Option<fn() -> usize>,
    pub worker_allocations: usize,
    /// Reused for the frames taken from the worker, so taking them allocates nothing.
    tx_scratch: Vec<(PortId, TxFrame)>,
    pub now: u64,
    next_req: u64,
}

/// Run `call`, adding to `count` the allocations `meter` sees it make (nothing without a meter).
fn metered<R>(meter: Option<fn() -> usize>, count: &mut usize, call: impl FnOnce() -> R) -> R {
    let before = meter.map(|m| m());
    let result = call();
    if let (Some(meter), Some(before)) = (meter, before) {
        *count += meter() - before;
    }
    result
}

/// Where the FC header starts in an untagged FCoE frame.
const FC_START: usize = 28;

/// Device paths for devices 1..=n.
pub fn device_paths(n: u32) -> Vec<MappingEntry> {
    (1..=n)
        .map(|d| {
            MappingEntry::DevicePath(DevicePath {
                device: DeviceId(d),
                port: disk_port(d),
                target_fc_id: FcId::new(disk_fc(d)).unwrap(),
                lun: Lun(0),
                block_size: BLOCK as u32,
            })
        })
        .collect()
}

impl Testbed {
    /// A worker serving a volume made of `segments` (start, blocks, redirect table, extents).
    pub fn new(
        config: impl FnOnce(&mut WorkerConfig),
        segments: Vec<(VsegDescriptor, RedirectTable, Vec<Extent<RedirectIndex>>)>,
    ) -> Testbed {
        let ports = (0..=4u16)
            .map(|p| PortConfig {
                id: PortId(p),
                mac: mac(p),
                initiator_fc_id: FcId::new(initiator_fc(p)).unwrap(),
            })
            .collect();
        let mut cfg = WorkerConfig::new(WorkerId(0), ports);
        config(&mut cfg);
        let mut bed = Testbed {
            worker: Worker::new(cfg),
            host: Host::default(),
            disks: Disks::default(),
            upcalls: Vec::new(),
            held_disk_frames: VecDeque::new(),
            hold_disks: false,
            lose_disk_data_frame: None,
            sent_to_disks: None,
            meter: None,
            worker_allocations: 0,
            tx_scratch: Vec::new(),
            now: 1,
            next_req: 0,
        };
        bed.grant(MappingEntry::Login(PortLogin { fc_id: FcId::new(HOST_FC).unwrap(), port_name: HOST_WWN }));
        let exposure = TargetExposure {
            id: EXPOSURE,
            port_name: Wwn(0x5000_0000_0000_0001),
            node_name: Wwn(0x5000_0000_0000_0000),
            fc_id: FcId::new(TARGET_FC).unwrap(),
            luns: vec![LunMapping { lun: Lun(0), lv: LV, hosts: HostSet::All }],
        };
        bed.message(ToFp::Expose { req: RequestId(0), exposure });
        let descriptors: Vec<VsegDescriptor> = segments.iter().map(|s| s.0).collect();
        bed.grant(MappingEntry::Lv(LvDescriptor::new(LV, BLOCK as u32, descriptors).unwrap()));
        for (seg, table, extents) in segments {
            bed.grant(MappingEntry::Redirects { vseg: seg.id, table });
            if !extents.is_empty() {
                bed.grant(MappingEntry::Extents { vseg: seg.id, extents });
            }
        }
        for path in device_paths(8) {
            bed.grant(path);
        }
        bed.upcalls.clear();
        bed
    }

    /// A one-segment volume of `blocks` blocks whose every block maps to entry 0 of `table`.
    pub fn single(config: impl FnOnce(&mut WorkerConfig), blocks: u64, table: RedirectTable) -> Testbed {
        let seg = VsegDescriptor { id: VsegId(1), lv: LV, start: 0, blocks };
        Testbed::new(
            config,
            vec![(seg, table, vec![Extent { start: 0, end: blocks, value: RedirectIndex(0) }])],
        )
    }

    pub fn grant(&mut self, entry: MappingEntry) {
        let req = self.req();
        self.message(ToFp::AddMapping { req, entry });
    }

    pub fn req(&mut self) -> RequestId {
        self.next_req += 1;
        RequestId(self.next_req)
    }

    pub fn message(&mut self, message: ToFp) {
        self.now += 1;
        let (now, worker) = (Timestamp(self.now), &mut self.worker);
        metered(self.meter, &mut self.worker_allocations, || worker.handle_message(now, message));
        self.settle();
    }

    /// The frames the worker sent since the last call, as bytes, with their ports.
    pub fn transmits(&mut self) -> Vec<(PortId, Vec<u8>)> {
        let mut taken = std::mem::take(&mut self.tx_scratch);
        let worker = &mut self.worker;
        metered(self.meter, &mut self.worker_allocations, || taken.extend(worker.take_transmits()));
        let kept = &mut self.sent_to_disks;
        let bytes = taken
            .drain(..)
            .map(|(port, tx)| {
                if let Some(kept) = kept.as_mut().filter(|_| port != HOST_PORT) {
                    kept.push((port, tx.clone()));
                }
                let mut bytes = Vec::new();
                tx.write_to(&mut bytes);
                (port, bytes)
            })
            .collect();
        self.tx_scratch = taken;
        bytes
    }

    /// Deliver frames until nothing moves.
    pub fn settle(&mut self) {
        loop {
            let mut moved = false;
            loop {
                let worker = &mut self.worker;
                let Some(up) = metered(self.meter, &mut self.worker_allocations, || worker.poll_upcall())
                else {
                    break;
                };
                self.upcalls.push(up);
            }
            for (port, bytes) in self.transmits() {
                moved = true;
                if port == HOST_PORT {
                    for reply in self.host.receive(&bytes) {
                        self.deliver(HOST_PORT, reply);
                    }
                } else if self.hold_disks {
                    self.held_disk_frames.push_back((port, bytes));
                } else {
                    self.exchange_with_disks(port, &bytes);
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Let held disk frames through.
    pub fn release_disks(&mut self) {
        self.hold_disks = false;
        while let Some((port, bytes)) = self.held_disk_frames.pop_front() {
            self.exchange_with_disks(port, &bytes);
        }
        self.settle();
    }

    /// A frame for the disks, and their answers back to the worker (less a lost data frame).
    fn exchange_with_disks(&mut self, port: PortId, bytes: &[u8]) {
        for reply in self.disks.receive(bytes) {
            if reply.get(FC_START) == Some(&r_ctl::SOLICITED_DATA) {
                match self.lose_disk_data_frame {
                    Some(1) => {
                        self.lose_disk_data_frame = None;
                        continue;
                    }
                    Some(n) => self.lose_disk_data_frame = Some(n - 1),
                    None => {}
                }
            }
            self.deliver(port, reply);
        }
    }

    pub fn deliver(&mut self, port: PortId, bytes: Vec<u8>) {
        self.now += 1;
        let frame = Frame::copy_from(&bytes).expect("frame fits");
        let (now, worker) = (Timestamp(self.now), &mut self.worker);
        metered(self.meter, &mut self.worker_allocations, || worker.handle_frame(now, port, frame));
    }

    /// Send a host command; returns its OX_ID.
    pub fn command(&mut self, cdb: &[u8], data: Option<Vec<u8>>, fcp_dl: u32) -> u16 {
        let (ox, frame) = self.host.command(cdb, data, fcp_dl);
        self.deliver(HOST_PORT, frame);
        self.settle();
        ox
    }

    pub fn read(&mut self, lba: u64, blocks: u32) -> u16 {
        self.command(&read16(lba, blocks), None, blocks * BLOCK as u32)
    }

    pub fn write(&mut self, lba: u64, data: Vec<u8>) -> u16 {
        let blocks = (data.len() / BLOCK) as u16;
        let len = data.len() as u32;
        self.command(&write10(lba as u32, blocks), Some(data), len)
    }

    pub fn result(&self, ox: u16) -> &HostIoResult {
        &self.host.results[&ox]
    }

    /// Causes of the `QueueIo` upcalls seen so far.
    pub fn queued_causes(&self) -> Vec<dve_fp_api::FaultCause> {
        self.upcalls
            .iter()
            .filter_map(|u| match u {
                ToCp::QueueIo { reason, .. } => Some(reason.cause),
                _ => None,
            })
            .collect()
    }

    pub fn misses(&self) -> usize {
        self.upcalls.iter().filter(|u| matches!(u, ToCp::MappingMiss { .. })).count()
    }
}

/// Distinct data for a write: each byte depends on `seed` and its position.
pub fn pattern(seed: u8, blocks: usize) -> Vec<u8> {
    (0..blocks * BLOCK).map(|i| seed.wrapping_mul(31).wrapping_add((i / 7) as u8) ^ (i as u8)).collect()
}

/// A single-placement redirect entry.
pub fn single(device: u32, lba: u64) -> RedirectEntry {
    RedirectEntry::read_write(dve_fp_api::mapping::StorageDescriptor::Single(
        dve_fp_api::mapping::Placement { device: DeviceId(device), lba },
    ))
}

pub fn table(entries: Vec<RedirectEntry>) -> RedirectTable {
    let mut t = RedirectTable::new(16);
    for e in entries {
        t.insert(e).unwrap();
    }
    t
}
