//! The fast-path worker: a sans-I/O core fed with frames and FP API messages (and the current
//! time), producing frames to transmit, messages for the control path and frames to hand to
//! the worker that owns their exchange. [`run`] holds the poll loop for real threads.
//!
//! Frames are classified by D_ID (virtual target, the switch's own initiator address, a
//! routed physical N_Port, or the control path's), then by R_CTL. Host commands go through
//! the decision chain ([`translate`]); the plan's legs become downstream exchanges; data
//! frames are rewritten and forwarded without copying the payload.

pub mod config;
mod control;
mod data;
pub mod emit;
mod expiry;
mod host_abort;
pub mod run;
mod serialized;
pub mod state;
pub mod translate;
mod tx;

use dve_wire::fcp_frame::{emit_fcp_cmnd_frame, emit_fcp_rsp_frame};
use std::collections::VecDeque;

use dve_fp_api::fault::FaultCause;
use dve_fp_api::frame::{FRAME_CAPACITY, Frame, FrameMut, FramePool, TxFrame};
use dve_fp_api::ids::{ExchangeId, FcId, IoTag, Lun, PortId, Timestamp, VsegId, WorkerId};
use dve_fp_api::io::{
    Cdb, DownstreamFailure, HostIo, IoKind, IoStatus, QueueReason, ScsiStatus, Sense, VDevice,
};
use dve_fp_api::message::ToCp;
use dve_fp_api::stats::{FpStatistics, PortStatistics};
use dve_wire::ethernet::{ETHERTYPE_FCOE, EthernetFrame};
use dve_wire::fc::{FcHeaderRepr, FcId as WireFcId, UNASSIGNED_X_ID, f_ctl, fc_type, r_ctl};
use dve_wire::fcoe::{Eof, Sof};
use dve_wire::fcp::{FcpCmndRepr, FcpRspRepr, FcpXferRdyRepr, Residual, lun_index};
use dve_wire::scsi::{self, sense::SenseRepr};
use dve_wire::stack::{FcoeFrameInfo, locate_fcoe_frame};

use crate::cache::MappingCache;
use crate::crc_patch::CrcPatcher;
use crate::exchange::ExchangeTable;
use crate::worker::config::{PortConfig, WorkerConfig};
use crate::worker::state::{
    DownOwner, DownState, Downstream, HostPiece, LegExchanges, LegFrames, UpState, Upstream,
};
use crate::worker::translate::{Command, Leg, Plan, Resolution};

/// A fast-path worker.
#[derive(Debug)]
pub struct Worker {
    config: WorkerConfig,
    cache: MappingCache,
    up: ExchangeTable<Upstream>,
    down: ExchangeTable<Downstream>,
    pool: FramePool,
    crc: CrcPatcher,
    stats: FpStatistics,
    /// Frames to transmit, per port. They are not in the port statistics yet: they are
    /// counted together when they leave (see [`Worker::count_transmits`]).
    tx: tx::Transmits,
    /// Reused buffer for one port's burst.
    tx_batch: Vec<TxFrame>,
    /// Frames a full port refused, per port slot, oldest first: sent before anything newer
    /// on that port at the next flush, so a momentarily full ring loses nothing.
    tx_held: Vec<Vec<TxFrame>>,
    /// Messages for the control path.
    upcalls: VecDeque<ToCp>,
    /// Frames for other workers: they own the exchange.
    handoffs: Vec<(WorkerId, PortId, Frame)>,
    /// Host I/Os held while their volume is paused, in arrival order.
    held: VecDeque<ExchangeId>,
    /// Mirror and journal writes in flight (with those their hosts aborted whose legs may
    /// still land), by upstream slot.
    serialized: serialized::SerializedWrites,
    /// Writes their hosts aborted, waiting for their legs' aborts to be answered.
    aborted_writes: Vec<host_abort::AbortedWrite>,
    /// Recycled write-data lists, so host writes do not allocate in steady state.
    spare_pieces: Vec<Vec<HostPiece>>,
    /// The worker number the control path uses for its own exchanges' OX_IDs.
    cp_worker: WorkerId,
    /// When the downstream list is next scanned for expired I/O.
    next_expiry_scan: u64,
    /// Reused list of expired downstream exchanges.
    expired: Vec<ExchangeId>,
    /// Buffers of received frames the worker consumed (commands, responses, transfer-ready),
    /// used for the next frames it builds: they are warm in cache, and reusing them spares a
    /// pool allocation and a release per frame the worker terminates.
    spare_buffers: SpareBuffers,
    /// The plan the decision chain writes for the I/O being started, before it is dispatched.
    plan: Plan,
    /// The bytes the frames the worker builds for one device path, or one host and virtual
    /// target, share.
    templates: emit::FrameTemplates,
    /// The CRC changes of data frames' address rewrites (read data to hosts, write data to
    /// devices).
    address_changes: emit::AddressChanges,
    /// Write legs' last CRC changes, for the next legs' first frames.
    write_changes: emit::WriteChanges,
}

/// Consumed frame buffers kept for reuse; more would only hold storage the pool could lend.
const SPARE_BUFFERS: usize = 16;

/// The consumed frame buffers a worker keeps (see [`Worker::recycle`]), as a stack of fixed
/// size: a `Vec`'s push was an out-of-line call (`Vec::push_mut`) for every buffer kept, two
/// or three an I/O.
#[derive(Debug, Default)]
struct SpareBuffers {
    /// The first `len` hold buffers, the rest none.
    slots: [Option<FrameMut>; SPARE_BUFFERS],
    len: usize,
}

impl SpareBuffers {
    #[inline]
    fn is_full(&self) -> bool {
        self.len >= SPARE_BUFFERS
    }

    /// Keep `buffer`; a full stack drops it. (`#[inline]` alone left it a call.)
    #[inline(always)]
    fn push(&mut self, buffer: FrameMut) {
        if let Some(slot) = self.slots.get_mut(self.len) {
            // The slot past the top holds none: forgetting what was there drops nothing.
            std::mem::forget(slot.replace(buffer));
            self.len += 1;
        }
    }

    /// The buffer kept last.
    #[inline]
    fn pop(&mut self) -> Option<FrameMut> {
        let at = self.len.checked_sub(1)?;
        self.len = at;
        self.slots.get_mut(at)?.take()
    }
}

/// Most bytes reserved up front for a control-path read's data (a longer one grows as its
/// frames arrive).
const COLLECTED_RESERVE_MAX: usize = 4 << 20;

/// Owned facts about a received FCoE frame, so the frame itself can move on: wire's own
/// record of it, kept as it comes (rebuilt in another layout, its fields were moved one by
/// one for every frame).
type Received = FcoeFrameInfo;

impl Worker {
    /// A worker with an empty cache.
    pub fn new(config: WorkerConfig) -> Worker {
        let up = ExchangeTable::new(config.layout, config.id, config.upstream_slots);
        let serialized = serialized::SerializedWrites::new(up.capacity());
        let down = ExchangeTable::new(config.layout, config.id, config.downstream_slots);
        let pool = FramePool::new(config.pool_frames, config.pool_frames / 4);
        let cp_worker = WorkerId((config.layout.max_workers() - 1) as u8);
        let ports =
            config.ports.iter().map(|p| PortStatistics { port: p.id, ..PortStatistics::default() }).collect();
        let stats = FpStatistics { worker: config.id, ports, ..FpStatistics::default() };
        Worker {
            cache: MappingCache::new(config.id, config.cache),
            up,
            down,
            pool,
            crc: CrcPatcher::new(),
            stats,
            tx: tx::Transmits::new(&config.ports),
            tx_batch: Vec::with_capacity(64),
            tx_held: config.ports.iter().map(|_| Vec::new()).collect(),
            upcalls: VecDeque::with_capacity(64),
            handoffs: Vec::new(),
            held: VecDeque::new(),
            serialized,
            aborted_writes: Vec::new(),
            spare_pieces: Vec::new(),
            cp_worker,
            next_expiry_scan: 0,
            expired: Vec::with_capacity(64),
            spare_buffers: SpareBuffers::default(),
            plan: Plan::default(),
            templates: emit::FrameTemplates::default(),
            address_changes: emit::AddressChanges::default(),
            write_changes: emit::WriteChanges::default(),
            config,
        }
    }

    /// The worker's id.
    pub fn id(&self) -> WorkerId {
        self.config.id
    }

    /// The worker's configuration.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// The mapping cache (read-only: only the control path changes it, through messages).
    pub fn cache(&self) -> &MappingCache {
        &self.cache
    }

    /// The frame pool (ports may receive into it).
    pub fn pool(&self) -> &FramePool {
        &self.pool
    }

    /// Counters as they stand.
    pub fn statistics(&self, now: Timestamp) -> FpStatistics {
        let mut stats = self.stats.clone();
        stats.at = now;
        stats.cached_extents = self.cache.cached_extents() as u64;
        stats.evicted_extents = self.cache.evicted;
        stats.pending_upstream = self.up.len() as u64;
        stats.pending_downstream = self.down.len() as u64;
        self.tx.count_into(&self.config.ports, &mut stats);
        stats
    }

    /// Frames to transmit, in the order they were queued, drained by the caller.
    pub fn take_transmits(&mut self) -> std::vec::Drain<'_, (PortId, TxFrame)> {
        self.count_transmits();
        self.tx.take_in_order(&self.config.ports)
    }

    /// Count the frames waiting to be transmitted into the port statistics, once, just before
    /// they leave: one pass over the burst instead of a port lookup as each is queued.
    pub(super) fn count_transmits(&mut self) {
        self.tx.count_into(&self.config.ports, &mut self.stats);
    }

    /// Count a burst of frames received on `port` (see [`Worker::receive`]).
    pub(super) fn count_received(&mut self, port: PortId, frames: &[Frame]) {
        let bytes: usize = frames.iter().map(Frame::len).sum();
        if let Some(stats) = self.port_stats(port) {
            stats.frames_in += frames.len() as u64;
            stats.bytes_in += bytes as u64;
        }
    }

    /// Whether frames are waiting to be transmitted.
    pub fn has_transmits(&self) -> bool {
        !self.tx.is_empty()
    }

    /// The next message for the control path.
    pub fn poll_upcall(&mut self) -> Option<ToCp> {
        self.upcalls.pop_front()
    }

    /// Put back a message the control-path ring refused; it goes first next time.
    pub fn unpoll_upcall(&mut self, message: ToCp) {
        self.upcalls.push_front(message);
    }

    /// Frames for other workers, drained by the caller.
    pub fn take_handoffs(&mut self) -> std::vec::Drain<'_, (WorkerId, PortId, Frame)> {
        self.handoffs.drain(..)
    }

    /// Where `port` sits in the port list: ports are usually numbered by position, so that is
    /// tried before a search.
    #[inline]
    fn port_slot(&self, port: PortId) -> Option<usize> {
        port_slot(&self.config.ports, port)
    }

    fn port_config(&self, port: PortId) -> Option<&PortConfig> {
        self.config.ports.get(self.port_slot(port)?)
    }

    fn port_stats(&mut self, port: PortId) -> Option<&mut PortStatistics> {
        let at = self.port_slot(port)?;
        // Statistics are made from the port list in its order, one per port.
        self.stats.ports.get_mut(at).filter(|s| s.port == port)
    }

    #[inline(always)]
    fn send(&mut self, port: PortId, frame: TxFrame) {
        self.tx.push(&self.config.ports, port, frame);
    }

    /// Keep the buffer of a received frame the worker is done with for the next frame it
    /// builds; a frame still shared (a payload kept elsewhere) just drops its reference.
    /// Inlined: two frames of every read come here, and `#[inline]` alone left it a call.
    #[inline(always)]
    fn recycle(&mut self, frame: Frame) {
        if !self.spare_buffers.is_full()
            && let Ok(buffer) = frame.try_into_mut()
        {
            self.spare_buffers.push(buffer);
        }
    }

    /// An exclusive buffer to build a frame in: a recycled one, else one from the pool.
    fn buffer(&mut self) -> Option<FrameMut> {
        // A match, not `or_else`, which stayed a call (about 6 a frame).
        match self.spare_buffers.pop() {
            Some(buf) => Some(buf),
            None => self.pool.alloc(FRAME_CAPACITY),
        }
    }

    /// Emit a whole FCoE frame (see [`emit::whole_frame`]) into a recycled or pool buffer.
    fn whole_frame<P: dve_wire::emit::WireEmit + ?Sized>(
        &mut self,
        src: dve_wire::ethernet::MacAddr,
        header: &FcHeaderRepr,
        sof: Sof,
        eof: Eof,
        payload: &P,
    ) -> Option<Frame> {
        emit::whole_frame_in(self.buffer()?, src, header, sof, eof, payload, self.config.fc_map)
    }

    /// Emit the command, transfer-ready or response of an I/O (SOFi3, EOFt) with one of wire's
    /// fixed-layout builders into a recycled or pool buffer.
    fn fixed_frame<P: ?Sized>(
        &mut self,
        src: dve_wire::ethernet::MacAddr,
        header: &FcHeaderRepr,
        payload: &P,
        build: emit::FrameBuilder<P>,
    ) -> Option<Frame> {
        let fcoe = dve_wire::fcoe::FcoeRepr { sof: Sof::I3, eof: Eof::T };
        emit::built_frame_in(self.buffer()?, src, header, fcoe, payload, self.config.fc_map, build)
    }

    /// A frame `build` writes from one of the worker's templates (see [`emit::Templates`])
    /// into a recycled or pool buffer; `build` returns its length.
    fn templated(
        &mut self,
        build: impl FnOnce(&mut emit::FrameTemplates, &mut [u8]) -> Option<usize>,
    ) -> Option<Frame> {
        let mut buf = self.buffer()?;
        if !buf.set_len(FRAME_CAPACITY) {
            return None;
        }
        let len = build(&mut self.templates, buf.bytes_mut())?;
        buf.set_len(len);
        Some(buf.freeze())
    }

    fn control_frame(&mut self, port: PortId, frame: Frame) {
        self.upcalls.push_back(ToCp::ControlFrame { port, frame });
    }

    /// Handle one received frame.
    pub fn handle_frame(&mut self, now: Timestamp, port: PortId, frame: Frame) {
        self.count_received(port, std::slice::from_ref(&frame));
        self.receive(now, port, frame);
    }

    /// Handle one received frame already counted in the port statistics (the poll loop
    /// counts a whole burst at once).
    pub(super) fn receive(&mut self, now: Timestamp, port: PortId, frame: Frame) {
        // The facts stay where wire returned them and go on by reference: moved out of the
        // `Result` and on through the calls, they were copied field by field for every frame.
        let bytes = frame.as_slice();
        let located = locate_fcoe_frame(bytes);
        let received = match &located {
            Ok(info) if self.accepted(info, bytes) => info,
            _ => {
                // Told apart only on this rare path: a frame that is not FCoE at all (FIP and
                // anything else) belongs to the fabric services; a broken FCoE frame is dropped.
                let is_fcoe = EthernetFrame::new_checked(frame.as_slice())
                    .is_ok_and(|e| e.ethertype() == ETHERTYPE_FCOE);
                if !is_fcoe {
                    self.control_frame(port, frame);
                } else if let Some(stats) = self.port_stats(port) {
                    stats.malformed += 1;
                }
                return;
            }
        };
        let d_id = FcId::new(received.header.d_id.0).unwrap_or_default();
        // The switch's own initiator addresses are checked first: most frames are devices'
        // answers, and the fabric never gives a virtual target a port's initiator address.
        if self.config.ports.iter().any(|p| p.initiator_fc_id == d_id) {
            self.frame_from_device(now, port, frame, received);
        } else if self.cache.exposure_at(d_id).is_some() {
            self.frame_to_virtual(now, port, frame, received);
        } else if let Some(route) = self.cache.route(d_id).copied() {
            self.forward(route.port, frame, received);
        } else {
            self.control_frame(port, frame);
        }
    }

    /// Whether a located FCoE frame passes the checks the worker makes. Data frames are
    /// forwarded cut-through: their CRC is not verified here but patched, so a corrupted
    /// payload still carries a bad CRC and the receiving end port discards it, as FC
    /// cut-through switches do. Every frame the worker acts on (commands, transfer-ready,
    /// status, link services) is verified.
    fn accepted(&self, info: &Received, bytes: &[u8]) -> bool {
        (self.config.cut_through && info.header.r_ctl == r_ctl::SOLICITED_DATA) || info.verify(bytes).is_ok()
    }

    /// Fig. 7 step 86: a physical D_ID is forwarded transparently; only the Ethernet
    /// addresses change, which the FC CRC does not cover.
    fn forward(&mut self, out: PortId, frame: Frame, received: &Received) {
        let Some(src) = self.port_config(out).map(|p| p.mac) else { return };
        let dst = emit::fpma(self.config.fc_map, received.header.d_id.0);
        let mut buf = match frame.try_into_mut() {
            Ok(buf) => buf,
            Err(shared) => match dve_fp_api::frame::FrameMut::from_slice(shared.as_slice()) {
                Some(buf) => buf,
                None => return,
            },
        };
        let bytes = buf.as_mut_slice();
        bytes[0..6].copy_from_slice(&dst.0);
        bytes[6..12].copy_from_slice(&src.0);
        self.stats.forwarded_frames += 1;
        self.send(out, TxFrame::whole(buf.freeze()));
    }

    fn owner_of(&self, xid: u16) -> WorkerId {
        self.config.layout.worker(ExchangeId(xid))
    }

    fn frame_to_virtual(&mut self, now: Timestamp, port: PortId, frame: Frame, rx: &Received) {
        let h = rx.header;
        match (h.r_ctl, h.fc_type) {
            (r_ctl::UNSOLICITED_COMMAND, fc_type::FCP) => self.host_command(now, port, frame, rx),
            (r_ctl::SOLICITED_DATA, fc_type::FCP) => {
                if self.owner_of(h.rx_id) != self.config.id {
                    self.handoffs.push((self.owner_of(h.rx_id), port, frame));
                } else {
                    self.host_data(frame, rx);
                }
            }
            (r_ctl::BLS_ABTS, fc_type::BLS) => {
                if h.rx_id != UNASSIGNED_X_ID && self.owner_of(h.rx_id) != self.config.id {
                    self.handoffs.push((self.owner_of(h.rx_id), port, frame));
                } else {
                    self.host_abort(port, frame, rx);
                }
            }
            _ => self.control_frame(port, frame),
        }
    }

    fn frame_from_device(&mut self, now: Timestamp, port: PortId, frame: Frame, rx: &Received) {
        let h = rx.header;
        let owner = self.owner_of(h.ox_id);
        if owner == self.cp_worker {
            self.control_frame(port, frame);
            return;
        }
        if owner != self.config.id {
            self.handoffs.push((owner, port, frame));
            return;
        }
        let xid = ExchangeId(h.ox_id);
        let Some(down) = self.down.get_mut(xid) else {
            self.control_frame(port, frame);
            return;
        };
        // Only the target the exchange went to: another port's frame that names this OX_ID
        // (a stray, or a device misbehaving) must not reach the exchange.
        if down.target.get() != h.s_id.0 {
            return;
        }
        if down.state == DownState::Aborting {
            if matches!(h.r_ctl, r_ctl::BLS_BA_ACC | r_ctl::BLS_BA_RJT) {
                self.down.remove(xid);
                self.leg_abort_settled(xid);
            }
            return;
        }
        down.target_rx_id = h.rx_id;
        match (h.r_ctl, h.fc_type) {
            (r_ctl::DATA_DESCRIPTOR, fc_type::FCP) => {
                let payload = &frame.as_slice()[rx.payload_start()..rx.payload_start() + rx.payload_len];
                let Ok(ready) = FcpXferRdyRepr::parse(payload) else {
                    self.control_frame(port, frame);
                    return;
                };
                // A device asking for data its command does not move is not followed (the
                // leg then times out, and its device's path is tested, as for silence).
                let Some(end) = down.transfer_end(ready.data_ro, ready.burst_len) else {
                    self.recycle(frame);
                    if let Some(stats) = self.port_stats(port) {
                        stats.malformed += 1;
                    }
                    return;
                };
                down.wanted = Some((ready.data_ro, end));
                down.sent_upto = ready.data_ro;
                down.seq_cnt = 0;
                down.seq_id = down.seq_id.wrapping_add(1);
                let owner = down.owner;
                self.recycle(frame);
                match owner {
                    DownOwner::Host { up, .. } => self.leg_ready(up, xid),
                    DownOwner::ControlPath(_) => self.send_dispatch_data(xid),
                }
            }
            // Only data the leg's command asked for: past its length it would land where the
            // host's buffer takes another device's data, or past the buffer (or grow a control
            // path buffer without bound).
            (r_ctl::SOLICITED_DATA, fc_type::FCP)
                if down.transfer_end(h.parameter, rx.payload_len as u32).is_none() =>
            {
                if let Some(stats) = self.port_stats(port) {
                    stats.malformed += 1;
                }
            }
            (r_ctl::SOLICITED_DATA, fc_type::FCP) => match down.owner {
                // Read data for the host: rewritten as the virtual target's and cut through,
                // with the leg's state already at hand (a call that looked it up again cost
                // about 20 instructions per frame).
                DownOwner::Host { up, .. } => {
                    let LegFrames::Read(rewrite) = &mut down.frames else { return };
                    let Some(upstream) = self.up.get_mut(up) else { return };
                    upstream.read_bytes += rx.payload_len as u32;
                    let host_port = upstream.port;
                    if let Some(frame) =
                        rewrite.rewrite(frame, rx.fc_start, &self.crc, &mut self.address_changes)
                    {
                        self.send(host_port, TxFrame::whole(frame));
                    }
                }
                DownOwner::ControlPath(_) => {
                    // The data ends here, in the control path's buffer, not at an end port
                    // that checks it: a frame cut through unverified is verified now, and a
                    // corrupted one is dropped like a lost one (the leg then falls short).
                    if self.config.cut_through && rx.verify(frame.as_slice()).is_err() {
                        if let Some(stats) = self.port_stats(port) {
                            stats.malformed += 1;
                        }
                        return;
                    }
                    let Some(down) = self.down.get_mut(xid) else { return };
                    let Some(control) = down.control.as_deref_mut() else { return };
                    let payload = &frame.as_slice()[rx.payload_start()..rx.payload_start() + rx.payload_len];
                    let at = h.parameter as usize;
                    if at == control.collected.len() {
                        // In order, as devices send: appended, nothing zeroed first.
                        control.collected.extend_from_slice(payload);
                    } else {
                        if control.collected.len() < at + payload.len() {
                            control.collected.resize(at + payload.len(), 0);
                        }
                        control.collected[at..at + payload.len()].copy_from_slice(payload);
                    }
                    control.collected_bytes += payload.len();
                }
            },
            (r_ctl::COMMAND_STATUS, fc_type::FCP) => {
                let payload = &frame.as_slice()[rx.payload_start()..rx.payload_start() + rx.payload_len];
                let status = device_status(payload);
                self.recycle(frame);
                self.leg_complete(now, xid, status);
            }
            _ => self.control_frame(port, frame),
        }
    }

    fn recycle_pieces(&mut self, mut pieces: Vec<HostPiece>) {
        pieces.clear();
        // A list that never held a frame (a read's) has no storage worth keeping.
        if pieces.capacity() > 0 && self.spare_pieces.len() < 1024 {
            self.spare_pieces.push(pieces);
        }
    }

    /// A new host command to a virtual target.
    fn host_command(&mut self, now: Timestamp, port: PortId, frame: Frame, rx: &Received) {
        let h = rx.header;
        let payload = &frame.as_slice()[rx.payload_start()..rx.payload_start() + rx.payload_len];
        let Ok(cmnd) = FcpCmndRepr::parse(payload) else {
            if let Some(stats) = self.port_stats(port) {
                stats.malformed += 1;
            }
            self.control_frame(port, frame);
            return;
        };
        self.stats.upstream_ios += 1;
        let target = FcId::new(h.d_id.0).unwrap_or_default();
        let host = FcId::new(h.s_id.0).unwrap_or_default();
        let lun = Lun(lun_index(&cmnd.lun).unwrap_or(u16::MAX));
        // The exposure and the login as the decision chain will find them (remembered, so
        // the chain does not look them up again).
        let front = self.cache.front(target, lun, host);
        let Some(exposure) = front.exposure else { return };
        // Additional CDB bytes beyond what the API carries are cut: only the control path
        // sees such commands, and it re-reads nothing but the opcode and standard fields.
        let cdb = Cdb::new(&cmnd.cdb[..cmnd.cdb.len().min(Cdb::MAX)]).unwrap_or(Cdb::from_opcode(0));
        let (kind, lba, blocks) = classify(cmnd.cdb, cmnd.task_management);
        if !transfer_agrees(kind, blocks, front.block_size, &cmnd) {
            // Refused as Linux's target refuses it: the host would otherwise be asked for data
            // past FCP_DL, or sent some.
            let sense = Sense { key: 0x05, asc: 0x0E, ascq: 0x03 };
            let fcp_dl = cmnd.fcp_dl;
            self.recycle(frame);
            let status = IoStatus::check_condition(sense);
            self.send_response(port, host, target, h.ox_id, UNASSIGNED_X_ID, 1, &status, fcp_dl);
            return;
        }
        let request = HostIo {
            initiator: front.login.unwrap_or_default(),
            initiator_fc_id: host,
            vdevice: VDevice { exposure, lun },
            lv: None,
            vseg: None,
            kind,
            lba,
            blocks,
            data_len: cmnd.fcp_dl,
            cdb,
            received: now,
        };
        let data_out = cmnd.wrdata && cmnd.fcp_dl > 0;
        let fcp_dl = cmnd.fcp_dl;
        self.recycle(frame);
        let inserted = self.up.insert_with(|| {
            let mut upstream = Upstream::new(port, host, target, h.ox_id, request, Vec::new());
            upstream.data_out = data_out;
            upstream
        });
        match inserted {
            Some(tag) => {
                // Only a command with data from the host keeps frames of it: a read needs no
                // list (the slot was just filled, so it is there).
                if data_out && let Some(up) = self.up.get_mut(tag.xid) {
                    let pieces = self.spare_pieces.pop().unwrap_or_default();
                    // The list it replaces is the `Vec::new()` just made, which owns nothing:
                    // forgetting it spares the out-of-line drop an assignment calls.
                    std::mem::forget(std::mem::replace(&mut up.pieces, pieces));
                }
                self.start_with(tag.xid, Some(&front))
            }
            None => {
                // No slot: the host retries after TASK SET FULL.
                let status = IoStatus { status: ScsiStatus::TASK_SET_FULL, sense: None, residual: 0 };
                self.send_response(port, host, target, h.ox_id, UNASSIGNED_X_ID, 1, &status, fcp_dl);
            }
        }
    }

    /// Run the decision chain for host I/O `xid` and act on the outcome.
    fn start(&mut self, xid: ExchangeId) {
        self.start_with(xid, None);
    }

    /// [`Worker::start`], with the front half of the chain if the command's arrival just looked
    /// it up (the cache has not changed since).
    fn start_with(&mut self, xid: ExchangeId, front: Option<&crate::cache::Front>) {
        let Some(up) = self.up.get(xid) else { return };
        // The chain's fields only: the whole request is a hundred bytes.
        let req = &up.request;
        let cmd = Command {
            target: up.target,
            lun: req.vdevice.lun,
            initiator: up.host,
            kind: req.kind,
            lba: req.lba,
            blocks: req.blocks,
        };
        let serialized = &self.serialized;
        let overlaps = |vseg: VsegId, start: u64, end: u64| serialized.overlaps(vseg, start, end);
        let looked_up;
        let front = match front {
            Some(front) => front,
            None => {
                looked_up = self.cache.front(cmd.target, cmd.lun, cmd.initiator);
                &looked_up
            }
        };
        let (resolution, resolved) = translate::resolve_with_front(
            &mut self.cache,
            &self.config,
            &cmd,
            front,
            overlaps,
            &mut self.plan,
        );
        if let Some(up) = self.up.get_mut(xid) {
            up.request.lv = resolved.lv;
            up.request.vseg = resolved.vseg;
        }
        match resolution {
            Resolution::Dispatch => {
                // `stats.writes` counts this write once it is dispatched.
                if cmd.kind == IoKind::Write && self.config.misdirect_write == Some(self.stats.writes + 1) {
                    self.plan.misdirect_first_leg();
                }
                self.dispatch(xid)
            }
            Resolution::Hold => {
                if self.held.len() >= self.config.max_held {
                    self.queue_to_cp(xid, FaultCause::Paused, None);
                } else if let Some(up) = self.up.get_mut(xid) {
                    up.state = UpState::Held;
                    self.held.push_back(xid);
                }
            }
            Resolution::Miss => {
                let Some(tag) = self.up.tag_of(xid) else { return };
                let Some(up) = self.up.get_mut(xid) else { return };
                up.state = UpState::AwaitingVerdict;
                let request = up.request;
                self.stats.faults.record(FaultCause::Miss);
                self.upcalls.push_back(ToCp::MappingMiss { io: tag, request });
            }
            Resolution::Fault(cause) => self.queue_to_cp(xid, cause, None),
        }
    }

    /// `CpQueueIO`: the control path takes the I/O over.
    fn queue_to_cp(&mut self, xid: ExchangeId, cause: FaultCause, failure: Option<DownstreamFailure>) {
        let Some(tag) = self.up.tag_of(xid) else { return };
        let Some(up) = self.up.get_mut(xid) else { return };
        up.state = UpState::Queued;
        let request = up.request;
        self.stats.faults.record(cause);
        self.upcalls.push_back(ToCp::QueueIo { io: tag, request, reason: QueueReason { cause, failure } });
    }

    /// Start every leg of the plan the chain just wrote into `self.plan`.
    fn dispatch(&mut self, xid: ExchangeId) {
        let timestamp = match self.up.get(xid) {
            Some(up) => up.request.received,
            None => return,
        };
        let write = self.up.get(xid).is_some_and(|u| u.request.kind == IoKind::Write);
        let mut started = LegExchanges::NONE;
        for i in 0..self.plan.legs.len() {
            let leg = self.plan.legs.as_slice()[i];
            match self.start_leg(DownOwner::Host { up: xid, leg: i as u8 }, leg, write, timestamp, None) {
                Some(down) => started.set(i, Some(down)),
                None => {
                    // Out of downstream slots (or no path): undo, and let the control path cope.
                    for down in started.iter() {
                        self.down.remove(down);
                    }
                    // The commands already queued are dropped; they were counted as sent
                    // when queued before, and still are.
                    self.tx.drop_last(i, &self.config.ports, &mut self.stats);
                    self.queue_to_cp(xid, FaultCause::Capacity, None);
                    return;
                }
            }
        }
        let plan = &self.plan;
        if plan.serialized {
            let end = plan.seg_block + u64::from(plan.blocks);
            if let Some(slot) = self.up.slot_of(xid) {
                self.serialized.insert(slot, plan.vseg, plan.seg_block, end);
            }
        }
        let Some(up) = self.up.get_mut(xid) else { return };
        up.state = UpState::Active;
        up.legs = started;
        up.outstanding = plan.legs.len() as u8;
        up.serialized = plan.serialized;
        up.plan = Some(plan.summary());
        self.stats.hits += 1;
        let bytes = u64::from(plan.blocks) * u64::from(plan.block_size);
        if write {
            self.stats.writes += 1;
            self.stats.write_bytes += bytes;
        } else {
            self.stats.reads += 1;
            self.stats.read_bytes += bytes;
        }
    }

    /// Originate one downstream exchange: send its FCP_CMND.
    fn start_leg(
        &mut self,
        owner: DownOwner,
        leg: Leg,
        write: bool,
        timestamp: Timestamp,
        cdb: Option<(Cdb, u32)>,
    ) -> Option<ExchangeId> {
        let path = *self.cache.device(leg.device)?;
        let port = *self.port_config(path.port)?;
        let data_bytes = leg.blocks * path.block_size + leg.header_bytes;
        // A control-path read collects its data: room for all of it at once rather than
        // growing (and copying) as frames arrive.
        let collected = |reserve: usize| {
            let collected = Vec::with_capacity(reserve.min(COLLECTED_RESERVE_MAX));
            Some(Box::new(state::ControlData { collected, ..state::ControlData::default() }))
        };
        let control = match (owner, &cdb) {
            (DownOwner::ControlPath(_), _) if write => collected(0),
            (DownOwner::ControlPath(_), Some((_, data_len))) => collected(*data_len as usize),
            (DownOwner::ControlPath(_), None) => collected(data_bytes as usize),
            (DownOwner::Host { .. }, _) => None,
        };
        // What the command moves: a host leg's own blocks and header, a control-path
        // command's data as it says.
        let transfer_len = cdb.as_ref().map_or(data_bytes, |c| c.1);
        let fc_map = self.config.fc_map;
        let frames = match owner {
            DownOwner::Host { up, .. } if !write => {
                self.read_rewrite(up, leg.data_offset).map(LegFrames::Read)
            }
            DownOwner::Host { .. } => {
                emit::WriteHead::new(port.mac, path.target_fc_id.get(), port.initiator_fc_id.get(), fc_map)
                    .map(LegFrames::Write)
            }
            DownOwner::ControlPath(_) => None,
        }
        .unwrap_or(LegFrames::Plain);
        let tag = self.down.insert_with(|| Downstream {
            owner,
            port: path.port,
            target: path.target_fc_id,
            target_rx_id: UNASSIGNED_X_ID,
            initiator: port.initiator_fc_id,
            leg,
            write,
            transfer_len,
            wanted: None,
            sent_upto: 0,
            seq_id: 0,
            seq_cnt: 0,
            timestamp,
            state: DownState::Active,
            control,
            frames,
        })?;
        let key = emit::PathKey { path, src: port.mac, initiator: port.initiator_fc_id.get() };
        let frame = match &cdb {
            // A leg's own READ(16) or WRITE(16): from the path's template.
            None => {
                let header_blocks = leg.header_bytes / path.block_size.max(1);
                let mut cdb16 = [0u8; 16];
                cdb16[0] = if write { scsi::opcode::WRITE_16 } else { scsi::opcode::READ_16 };
                cdb16[2..10].copy_from_slice(&leg.lba.to_be_bytes());
                cdb16[10..14].copy_from_slice(&(leg.blocks + header_blocks).to_be_bytes());
                let ox = tag.xid.0;
                self.templated(|t, b| {
                    t.command.command(b, &key, ox, &cdb16, data_bytes, !write, write, fc_map)
                })
            }
            Some((cdb, data_len)) => {
                let rddata = !write && *data_len > 0;
                let (header, cmnd) = emit::command(&key, tag.xid.0, cdb.as_bytes(), *data_len, rddata, write);
                self.fixed_frame(port.mac, &header, &cmnd, emit_fcp_cmnd_frame)
            }
        };
        let Some(frame) = frame else {
            self.down.remove(tag.xid);
            return None;
        };
        self.stats.downstream_ios += 1;
        self.send(path.port, TxFrame::whole(frame));
        Some(tag.xid)
    }

    /// How the data frames of a read leg of host I/O `up_xid` whose data starts at
    /// `leg_offset` in the host's are rewritten as the virtual target's.
    fn read_rewrite(&self, up_xid: ExchangeId, leg_offset: u32) -> Option<emit::DataRewrite> {
        let up = self.up.get(up_xid)?;
        let src = self.port_config(up.port)?.mac;
        let dst = emit::fpma(self.config.fc_map, up.host.get());
        let header = emit::HeaderRewrite {
            d_id: up.host.get(),
            s_id: up.target.get(),
            ox_id: up.host_ox_id,
            rx_id: up_xid.0,
            offset_add: leg_offset,
        };
        Some(emit::DataRewrite::new(dst, src, header))
    }

    /// A leg's FCP_RSP arrived.
    fn leg_complete(&mut self, now: Timestamp, down_xid: ExchangeId, status: IoStatus) {
        let Some(down) = self.down.get_mut(down_xid) else { return };
        let (owner, device, write) = (down.owner, down.leg.device, down.write);
        let control = down.control.take();
        self.down.discard(down_xid);
        match owner {
            DownOwner::ControlPath(tag) => {
                // Data with a hole (a frame lost on the way) is not handed over: the control
                // path sees a GOOD read without its data, which it treats as a retryable failure.
                let data = control
                    .map(|c| *c)
                    .filter(|c| !c.collected.is_empty() && c.collected_bytes >= c.collected.len())
                    .map(|c| bytes::Bytes::from(c.collected));
                self.upcalls.push_back(ToCp::DispatchIoComplete { tag, status, data });
            }
            DownOwner::Host { up: up_xid, leg } => {
                let Some(up) = self.up.get_mut(up_xid) else { return };
                up.legs.set(usize::from(leg), None);
                up.outstanding = up.outstanding.saturating_sub(1);
                // A write leg GOOD with a residual stored less than it was sent (an underrun:
                // data lost on the way): the write is not done on that device.
                let failed = !status.is_good() || (write && status.residual != 0);
                if failed && up.failure.is_none() {
                    up.failure = Some(DownstreamFailure { device, status: Some(status), leg });
                }
                if up.outstanding == 0 {
                    self.complete_upstream(now, up_xid);
                } else if up.request.kind == IoKind::Write && !status.is_good() {
                    // A leg that failed before taking all its data no longer holds that data
                    // back. A leg that finished well took all of it, so it held nothing the
                    // other legs did not (whatever is left goes when the I/O completes).
                    self.pump(up_xid);
                }
            }
        }
    }

    /// Every leg is done: answer the host, or give the I/O to the control path. Inlined, as
    /// is `finish_upstream`: every I/O ends through both, and as calls they cost about 30
    /// instructions more per I/O.
    #[inline(always)]
    fn complete_upstream(&mut self, _now: Timestamp, xid: ExchangeId) {
        let Some(up) = self.up.get(xid) else { return };
        // Every leg may say GOOD while a read data frame was lost on a device's link: the host
        // would be told of an underrun, with a hole in the middle of its data that some
        // initiators accept. The control path answers such a read with a retryable error
        // (no failure is given, so no device or mirror side is blamed for a lost frame).
        let planned = up.plan.map_or(0, |p| p.blocks * p.block_size);
        let data_lost = up.failure.is_none() && up.request.kind == IoKind::Read && up.read_bytes < planned;
        if up.failure.is_some() || data_lost {
            let failure = up.failure;
            self.unserialize(xid);
            if let Some(up) = self.up.get_mut(xid) {
                up.plan = None;
                let pieces = std::mem::take(&mut up.pieces);
                self.recycle_pieces(pieces);
            }
            self.queue_to_cp(xid, FaultCause::DownstreamError, failure);
            return;
        }
        let (port, host, target, ox, data_len) =
            (up.port, up.host, up.target, up.host_ox_id, up.request.data_len);
        let transferred = match up.request.kind {
            IoKind::Read => up.read_bytes,
            _ => up.plan.map_or(0, |p| p.blocks * p.block_size),
        };
        let status = IoStatus { residual: i64::from(data_len) - i64::from(transferred), ..IoStatus::GOOD };
        self.finish_upstream(xid, port, host, target, ox, &status, data_len);
    }

    /// Send the host its FCP_RSP and free the exchange.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn finish_upstream(
        &mut self,
        xid: ExchangeId,
        port: PortId,
        host: FcId,
        target: FcId,
        ox: u16,
        status: &IoStatus,
        data_len: u32,
    ) {
        let (seq, serialized, pieces) = match self.up.get_mut(xid) {
            // A read never had a write-data list: nothing to give back.
            Some(up) => (up.take_seq_id(), up.serialized, std::mem::take(&mut up.pieces)),
            None => (1, true, Vec::new()),
        };
        self.send_response(port, host, target, ox, xid.0, seq, status, data_len);
        // Only a write on the serialization list is on it (see `dispatch`).
        if serialized {
            self.unserialize(xid);
        }
        if pieces.capacity() > 0 {
            self.recycle_pieces(pieces);
        } else {
            // A list without storage holds nothing: forgetting it spares the call that
            // would drop it.
            std::mem::forget(pieces);
        }
        self.up.discard(xid);
    }

    fn unserialize(&mut self, xid: ExchangeId) {
        if let Some(slot) = self.up.slot_of(xid) {
            self.serialized.remove(slot);
        }
    }

    /// Build and send an FCP_RSP.
    #[allow(clippy::too_many_arguments)]
    fn send_response(
        &mut self,
        port: PortId,
        host: FcId,
        target: FcId,
        ox: u16,
        rx: u16,
        seq_id: u8,
        status: &IoStatus,
        _data_len: u32,
    ) {
        let Some(src) = self.port_config(port).map(|p| p.mac) else { return };
        let key = emit::HostKey { src, host: host.get(), target: target.get() };
        let residual = match status.residual {
            0 => Residual::None,
            r if r > 0 => Residual::Under(r as u32),
            r => Residual::Over(r.unsigned_abs() as u32),
        };
        let frame = match status.sense {
            // Nearly every response: from the host's template.
            None => {
                let (fc_map, scsi_status) = (self.config.fc_map, status.status.0);
                let seq = emit::HostSequence { seq_id, ox_id: ox, rx_id: rx };
                self.templated(|t, b| t.response.response(b, &key, seq, (scsi_status, residual), fc_map))
            }
            Some(s) => {
                let mut sense_buf = [0u8; 32];
                let repr = SenseRepr::fixed(
                    scsi::sense::SenseKey::from_code(s.key),
                    scsi::sense::Asc { asc: s.asc, ascq: s.ascq },
                );
                let sense = dve_wire::emit::WireEmit::emit(&repr, &mut sense_buf).ok();
                let rsp = FcpRspRepr {
                    status_qualifier: 0,
                    confirm_requested: false,
                    scsi_status: status.status.0,
                    residual,
                    response_info: None,
                    sense: sense.map(|len| &sense_buf[..len]),
                };
                let header = emit::to_host(&key, r_ctl::COMMAND_STATUS, true, seq_id, ox, rx);
                self.fixed_frame(src, &header, &rsp, emit_fcp_rsp_frame)
            }
        };
        if let Some(frame) = frame {
            self.send(port, TxFrame::whole(frame));
        }
    }

    /// Abort host I/O `xid`: abort its legs downstream and free it.
    fn abort_upstream(&mut self, xid: ExchangeId) {
        let tag = self.up.tag_of(xid);
        let Some(up) = self.up.remove(xid) else { return };
        // A control path waiting for this write's data (`FPGetData`) hears it will not come;
        // otherwise it would hold the write's range lock for good.
        if let (Some(req), Some(io)) = (up.get_data, tag) {
            self.upcalls.push_back(ToCp::Data { req, io, result: Err(dve_fp_api::Error::UnknownIo(io)) });
        }
        for down in up.legs.iter() {
            self.abort_downstream(down);
        }
        self.held.retain(|&x| x != xid);
        self.unserialize(xid);
        self.recycle_pieces(up.pieces);
    }

    /// Send ABTS for a downstream exchange and park its slot until the device answers.
    fn abort_downstream(&mut self, xid: ExchangeId) {
        let Some(down) = self.down.get_mut(xid) else { return };
        down.state = DownState::Aborting;
        let (port, target, initiator, rx) = (down.port, down.target, down.initiator, down.target_rx_id);
        let Some(src) = self.port_config(port).map(|p| p.mac) else { return };
        let header = FcHeaderRepr {
            r_ctl: r_ctl::BLS_ABTS,
            d_id: WireFcId(target.get()),
            cs_ctl: 0,
            s_id: WireFcId(initiator.get()),
            fc_type: fc_type::BLS,
            f_ctl: f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE,
            seq_id: 0,
            df_ctl: 0,
            seq_cnt: 0,
            ox_id: xid.0,
            rx_id: rx,
            parameter: 0,
        };
        let empty: &[u8] = &[];
        if let Some(frame) = self.whole_frame(src, &header, Sof::I3, Eof::T, empty) {
            self.send(port, TxFrame::whole(frame));
        }
    }

    /// The tag of host I/O `xid`, for tests and the control path's bookkeeping.
    pub fn tag_of(&self, xid: ExchangeId) -> Option<IoTag> {
        self.up.tag_of(xid)
    }
}

/// Where `port` sits in `ports`: ports are usually numbered by position, so that is tried
/// before a search.
#[inline]
fn port_slot(ports: &[PortConfig], port: PortId) -> Option<usize> {
    let at = usize::from(port.0);
    if ports.get(at).is_some_and(|p| p.id == port) {
        return Some(at);
    }
    ports.iter().position(|p| p.id == port)
}

/// Classify a CDB: reads and writes with their extent, anything else as other. Task
/// management functions are never reads or writes.
fn classify(cdb: &[u8], task_management: u8) -> (IoKind, u64, u32) {
    use scsi::opcode::*;
    if task_management != 0 || cdb.is_empty() {
        return (IoKind::Other, 0, 0);
    }
    let kind = match cdb[0] {
        READ_6 | READ_10 | READ_16 => IoKind::Read,
        WRITE_6 | WRITE_10 | WRITE_16 => IoKind::Write,
        _ => return (IoKind::Other, 0, 0),
    };
    // The 10- and 16-byte forms, nearly every command, are decoded here with exactly the
    // checks `Cdb::parse` makes for them (length, the group byte's reserved bits): the general
    // parser builds a whole `Cdb` value first, a hundred instructions per command.
    match (cdb[0], cdb.len()) {
        (READ_16 | WRITE_16, 16..) if cdb[14] & 0xC0 == 0 => {
            let lba = u64::from_be_bytes([cdb[2], cdb[3], cdb[4], cdb[5], cdb[6], cdb[7], cdb[8], cdb[9]]);
            return (kind, lba, u32::from_be_bytes([cdb[10], cdb[11], cdb[12], cdb[13]]));
        }
        (READ_10 | WRITE_10, 10..) if cdb[6] & 0xC0 == 0 => {
            let lba = u32::from_be_bytes([cdb[2], cdb[3], cdb[4], cdb[5]]);
            return (kind, u64::from(lba), u32::from(u16::from_be_bytes([cdb[7], cdb[8]])));
        }
        _ => {}
    }
    match scsi::cdb::Cdb::parse(cdb).ok().and_then(|c| c.read_write_extent()) {
        Some((lba, blocks)) => (kind, lba, blocks),
        None => (IoKind::Other, 0, 0),
    }
}

/// Whether a read's or write's FCP_DL and data direction agree with its CDB's `blocks` of
/// `block_size` bytes: a write takes exactly FCP_DL bytes from the host (WRDATA alone), a read
/// sends it at most FCP_DL (RDDATA alone; a larger FCP_DL is an underrun its response
/// reports). Commands moving nothing, other commands, and those of a volume not known yet
/// (`block_size` 0: the chain sends them to the control path) are not judged here.
fn transfer_agrees(kind: IoKind, blocks: u32, block_size: u32, cmnd: &FcpCmndRepr<'_>) -> bool {
    let bytes = u64::from(blocks) * u64::from(block_size);
    let fcp_dl = u64::from(cmnd.fcp_dl);
    match kind {
        _ if bytes == 0 => true,
        IoKind::Write => cmnd.wrdata && !cmnd.rddata && fcp_dl == bytes,
        IoKind::Read => cmnd.rddata && !cmnd.wrdata && fcp_dl >= bytes,
        IoKind::Other => true,
    }
}

/// The completion status a device's FCP_RSP payload reports (a payload that does not parse
/// is a failure).
fn device_status(payload: &[u8]) -> IoStatus {
    if let Some(status) = plain_status(payload) {
        return IoStatus { status: ScsiStatus(status), sense: None, residual: 0 };
    }
    match FcpRspRepr::parse(payload) {
        Ok(rsp) => io_status(&rsp),
        Err(_) => IoStatus { status: ScsiStatus(0xFF), sense: None, residual: 0 },
    }
}

/// The SCSI status of an FCP_RSP payload that says nothing else: the fixed 24 bytes with no
/// flag, residual, sense or response length (nearly every device answer), read at their fixed
/// places. `None` for any other payload, which the general parser reads.
fn plain_status(payload: &[u8]) -> Option<u8> {
    let p: &[u8; 24] = payload.try_into().ok()?;
    let reserved = u64::from_ne_bytes(*p.first_chunk::<8>()?);
    let residual = u32::from_ne_bytes(*p[12..].first_chunk::<4>()?);
    let lengths = u64::from_ne_bytes(*p[16..].first_chunk::<8>()?);
    (reserved == 0 && p[10] == 0 && residual == 0 && lengths == 0).then_some(p[11])
}

/// The completion status an FCP_RSP reports.
fn io_status(rsp: &FcpRspRepr<'_>) -> IoStatus {
    let sense = rsp.sense.and_then(|s| SenseRepr::parse(s).ok()).map(|s| Sense {
        key: s.key as u8,
        asc: s.asc.asc,
        ascq: s.asc.ascq,
    });
    let residual = match rsp.residual {
        Residual::None => 0,
        Residual::Under(n) => i64::from(n),
        Residual::Over(n) => -i64::from(n),
    };
    // A response code other than "no failure" is a failure whatever the status byte says.
    let status = if rsp.response_code().is_some_and(|c| c != 0) {
        ScsiStatus(0xFF)
    } else {
        ScsiStatus(rsp.scsi_status)
    };
    IoStatus { status, sense, residual }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `classify` answered before its fast decode: the general parser for every CDB.
    fn classify_by_parser(cdb: &[u8], task_management: u8) -> (IoKind, u64, u32) {
        if task_management != 0 || cdb.is_empty() {
            return (IoKind::Other, 0, 0);
        }
        let Some(c) = scsi::cdb::Cdb::parse(cdb).ok() else { return (IoKind::Other, 0, 0) };
        let kind = match c.data_direction() {
            _ if c.read_write_extent().is_none() => return (IoKind::Other, 0, 0),
            scsi::cdb::DataDirection::Read => IoKind::Read,
            _ => IoKind::Write,
        };
        let (lba, blocks) = c.read_write_extent().unwrap_or_default();
        (kind, lba, blocks)
    }

    /// What `device_status` answered before its fixed-layout check: the general parser for
    /// every payload.
    fn device_status_by_parser(payload: &[u8]) -> IoStatus {
        match FcpRspRepr::parse(payload) {
            Ok(rsp) => io_status(&rsp),
            Err(_) => IoStatus { status: ScsiStatus(0xFF), sense: None, residual: 0 },
        }
    }

    /// FCP_RSP payloads near the plain 24 bytes: each byte zero, or random, and the length
    /// around 24 (padding, sense and response information included).
    fn rsp_payloads() -> impl Strategy<Value = Vec<u8>> {
        (16usize..=44, prop::collection::vec((any::<bool>(), any::<u8>()), 44)).prop_map(|(len, bytes)| {
            bytes.into_iter().take(len).map(|(zero, b)| if zero { 0 } else { b }).collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn device_status_agrees_with_the_general_parser(mut payload in rsp_payloads(), status: u8, plain: bool) {
            if plain && payload.len() >= 24 {
                // A plain response with any status: the case the check exists for.
                payload.truncate(24);
                payload.fill(0);
                payload[11] = status;
            }
            prop_assert_eq!(device_status(&payload), device_status_by_parser(&payload));
        }
    }

    #[test]
    fn spare_buffers_keep_the_first_sixteen_and_give_the_last_back_first() {
        let mut spare = SpareBuffers::default();
        for n in 0..SPARE_BUFFERS + 4 {
            assert_eq!(spare.is_full(), n >= SPARE_BUFFERS);
            spare.push(FrameMut::from_slice(&[n as u8; 64]).unwrap());
        }
        let mut popped = Vec::new();
        while let Some(buffer) = spare.pop() {
            popped.push(buffer.as_slice()[0]);
        }
        let expected: Vec<u8> = (0..SPARE_BUFFERS as u8).rev().collect();
        assert_eq!(popped, expected, "the first sixteen kept, handed back last first");
        spare.push(FrameMut::from_slice(&[99; 64]).unwrap());
        assert_eq!(spare.pop().map(|b| b.as_slice()[0]), Some(99), "emptied, it keeps again");
        assert!(spare.pop().is_none());
    }

    proptest! {
        #[test]
        fn classify_agrees_with_the_general_parser(
            opcode in prop::sample::select(vec![0x08u8, 0x0A, 0x28, 0x2A, 0x88, 0x8A, 0x00, 0x12, 0x35]),
            rest in prop::collection::vec(any::<u8>(), 0..=20),
            tm in prop::sample::select(vec![0u8, 0x20]),
        ) {
            let mut cdb = vec![opcode];
            cdb.extend_from_slice(&rest);
            prop_assert_eq!(classify(&cdb, tm), classify_by_parser(&cdb, tm));
        }
    }
}
