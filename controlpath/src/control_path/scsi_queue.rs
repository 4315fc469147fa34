//! Commands of virtual LUNs the fast path hands over: REPORT LUNS per host, answers for LUNs
//! a host may not see, and everything else through the SCSI emulation with each volume's
//! reservation and unit-attention state. Reads and writes the LUN mask sent here run as
//! manual I/O once the emulation allows them; the mask pushed to the fast path follows the
//! state after every command.

use std::collections::BTreeMap;

use bytes::Bytes;
use dve_fp_api::ids::{IoTag, LvId, RequestId, Wwn};
use dve_fp_api::io::{HostIo, IoKind, IoStatus, QueueReason};
use dve_fp_api::mapping::{HostSet, LunMask};
use dve_fp_api::message::ToFp;

use super::{ControlPath, RequestPurpose};
use crate::scsi::unit_attention::UnitAttention;
use crate::scsi::{
    LayoutEffect, LunScsiState, ScsiOutcome, SystemIdentity, TargetPort, VirtualLun, execute, execute_no_lun,
    execute_report_luns,
};
use crate::volume::Volume;

/// REPORT LUNS.
const REPORT_LUNS: u8 = 0xA0;
/// Commands whose data goes from the host to the target (parameter lists, WRITE SAME's block).
const DATA_OUT_OPCODES: [u8; 6] = [0x15, 0x55, 0x5F, 0x42, 0x41, 0x93];
/// The company id in DVE's device identifiers (locally administered).
const DVE_OUI: u32 = 0x00_D5_E0;

/// SCSI state of the engine's virtual LUNs.
#[derive(Debug, Default)]
pub(super) struct ScsiQueue {
    luns: BTreeMap<LvId, (VirtualLun, LunScsiState)>,
    /// `FPGetData` requests of commands with a parameter list: request -> command.
    data_requests: BTreeMap<RequestId, u64>,
    /// Commands waiting for their parameter list.
    waiting: BTreeMap<u64, (IoTag, HostIo, LvId)>,
    /// The masks last pushed, so an unchanged mask is not pushed again.
    pushed: BTreeMap<LvId, LunMask>,
    /// Answers waiting for every worker to acknowledge the mask their command changed:
    /// op -> acknowledgements still due, the command and its outcome.
    answers: BTreeMap<u64, (usize, IoTag, HostIo, ScsiOutcome)>,
}

impl ScsiQueue {
    /// A volume is exposed (or exposed again, perhaps with a new size).
    pub(super) fn volume_exposed(&mut self, lv: LvId, volume: &Volume, system: u64, port: Wwn) {
        let blocks = volume.record.blocks;
        let entry = self.luns.entry(lv).or_insert_with(|| {
            let mut lun = VirtualLun::new(
                lv,
                volume.record.block_size,
                blocks,
                SystemIdentity { oui: DVE_OUI, serial: system },
            );
            lun.port = TargetPort { wwpn: port.0, relative_id: 1 };
            (lun, LunScsiState::new())
        });
        if entry.0.capacity_blocks != blocks {
            entry.0.capacity_blocks = blocks;
            entry.1.capacity_changed();
        }
    }

    /// The hosts (of `hosts`) whose reads and writes may use the fast path.
    pub(super) fn fast_path_hosts(&self, lv: LvId, hosts: &[Wwn]) -> (HostSet, HostSet) {
        let Some((_, state)) = self.luns.get(&lv) else {
            return (HostSet::only(Vec::new()), HostSet::only(Vec::new()));
        };
        let pick = |allowed: &dyn Fn(u64) -> bool| {
            HostSet::only(
                hosts
                    .iter()
                    .copied()
                    .filter(|h| state.unit_attentions.has_seen(h.0) && allowed(h.0))
                    .collect(),
            )
        };
        (pick(&|h| state.fast_path_reads(h)), pick(&|h| state.fast_path_writes(h)))
    }

    /// Whether `mask` differs from the last one pushed (and remember it).
    /// A volume is hidden from every host or deleted: its SCSI state (reservations, unit
    /// attentions) goes with its LUN, and the next mask pushed for it is pushed whatever the
    /// last one was.
    pub(super) fn volume_withdrawn(&mut self, lv: LvId) {
        self.luns.remove(&lv);
        self.pushed.remove(&lv);
    }

    /// The LUN inventory `hosts` see changed: every other volume they see tells them
    /// REPORTED LUNS DATA HAS CHANGED (a host not seen yet has POWER ON to report first).
    /// Returns the volumes whose masks must be pushed again.
    pub(super) fn inventory_changed(&mut self, hosts: &[Wwn], except: LvId) -> Vec<LvId> {
        let mut told = Vec::new();
        for (lv, (_, state)) in self.luns.iter_mut().filter(|(lv, _)| **lv != except) {
            for host in hosts {
                state.unit_attentions.post(host.0, UnitAttention::ReportedLunsDataHasChanged);
            }
            told.push(*lv);
        }
        told
    }

    /// Whether a command of `lv` waits for its parameter list or its answer.
    pub(super) fn has_commands_of(&self, lv: LvId) -> bool {
        self.waiting.values().any(|(_, _, l)| *l == lv)
            || self.answers.values().any(|(_, _, request, _)| request.lv == Some(lv))
    }

    pub(super) fn mask_changed(&mut self, mask: &LunMask) -> bool {
        if self.pushed.get(&mask.lv) == Some(mask) {
            return false;
        }
        self.pushed.insert(mask.lv, mask.clone());
        true
    }

    /// The command waiting for `req`'s data, if any.
    pub(super) fn data_request(&mut self, req: RequestId) -> Option<RequestPurpose> {
        self.data_requests.remove(&req).map(RequestPurpose::ManualData)
    }
}

impl ControlPath {
    pub(super) fn scsi_command(&mut self, io: IoTag, request: HostIo, _reason: QueueReason) {
        self.counters.scsi_commands += 1;
        let host = request.initiator;
        let cdb = *request.cdb.as_bytes().first().unwrap_or(&0);
        if cdb == REPORT_LUNS {
            let luns: Vec<u16> =
                self.exposure.luns.iter().filter(|m| m.hosts.contains(host)).map(|m| m.lun.0).collect();
            let outcome = execute_report_luns(&luns, request.cdb.as_bytes());
            self.answer(io, &request, &outcome);
            return;
        }
        let lv = self
            .exposure
            .luns
            .iter()
            .find(|m| m.lun == request.vdevice.lun && m.hosts.contains(host))
            .map(|m| m.lv)
            .filter(|lv| self.scsi.luns.contains_key(lv));
        let Some(lv) = lv else {
            let outcome = execute_no_lun(request.cdb.as_bytes());
            self.answer(io, &request, &outcome);
            return;
        };
        let needs_data =
            request.kind == IoKind::Other && request.data_len > 0 && DATA_OUT_OPCODES.contains(&cdb);
        if needs_data {
            let op = self.op_id();
            let req = self.request(RequestPurpose::Grant);
            self.scsi.data_requests.insert(req, op);
            self.scsi.waiting.insert(op, (io, request, lv));
            self.send(io.worker, ToFp::GetData { req, io });
            return;
        }
        self.run_scsi(io, request, lv, &[]);
    }

    /// A parameter list arrived.
    pub(super) fn scsi_data(&mut self, op: u64, io: IoTag, result: Result<Bytes, dve_fp_api::Error>) {
        let Some((io_waiting, request, lv)) = self.scsi.waiting.remove(&op) else { return };
        debug_assert_eq!(io_waiting, io);
        match result {
            Ok(data) => self.run_scsi(io, request, lv, &data),
            Err(_) => self.complete_io(io, IoStatus::check_condition(super::manual_io::RETRY)),
        }
    }

    fn run_scsi(&mut self, io: IoTag, request: HostIo, lv: LvId, data_out: &[u8]) {
        let Some((lun, state)) = self.scsi.luns.get_mut(&lv) else { return };
        let outcome = execute(lun, state, request.initiator.0, request.cdb.as_bytes(), data_out);
        let block_size = lun.block_size as usize;
        match outcome.effect.clone() {
            Some(LayoutEffect::Read { .. } | LayoutEffect::Write { .. }) if outcome.is_good() => {
                self.push_mask(lv);
                self.start_manual(io, HostIo { lv: Some(lv), ..request });
            }
            Some(LayoutEffect::WriteSame { lba, blocks, block, .. }) if outcome.is_good() => {
                let mut data = Vec::with_capacity(blocks as usize * block_size);
                for _ in 0..blocks {
                    data.extend_from_slice(&block[..block_size.min(block.len())]);
                    data.resize(data.len().div_ceil(block_size) * block_size, 0);
                }
                let write = HostIo { lv: Some(lv), kind: IoKind::Write, lba, blocks, ..request };
                self.push_mask(lv);
                self.start_manual_with_data(io, write, Bytes::from(data));
            }
            _ => {
                // The status waits until every worker has the new mask, so once a host sees
                // it no worker lets through a host the command (a reservation, say) has just
                // excluded. UNMAP on a fully provisioned volume never reaches here (the
                // emulation refuses it).
                let op = self.op_id();
                match self.push_mask_acked(lv, op) {
                    0 => self.answer(io, &request, &outcome),
                    due => {
                        self.scsi.answers.insert(op, (due, io, request, outcome));
                    }
                }
            }
        }
    }

    /// A worker acknowledged a mask a command's status waits for (an error counts too: the
    /// worker answered, and the failure is counted).
    pub(super) fn mask_acked(&mut self, op: u64) {
        let Some((due, ..)) = self.scsi.answers.get_mut(&op) else { return };
        *due = due.saturating_sub(1);
        if *due > 0 {
            return;
        }
        if let Some((_, io, request, outcome)) = self.scsi.answers.remove(&op) {
            self.answer(io, &request, &outcome);
        }
    }

    fn answer(&mut self, io: IoTag, request: &HostIo, outcome: &ScsiOutcome) {
        if !outcome.data_in.is_empty() && outcome.is_good() {
            let req = self.request(RequestPurpose::Grant);
            let len = outcome.data_in.len().min(request.data_len as usize);
            let data = Bytes::copy_from_slice(&outcome.data_in[..len]);
            self.send(io.worker, ToFp::PutData { req, io, offset: 0, data });
        }
        // Not `complete_io`: a check condition here (a unit attention, an unsupported
        // command) is the SCSI conversation working, not a failed read or write.
        let status = outcome.io_status(request.data_len);
        if !status.is_good() {
            self.counters.scsi_check_conditions += 1;
        }
        self.send(io.worker, ToFp::QueueIoComplete { io, status });
    }
}

#[cfg(test)]
mod tests {
    use dve_fp_api::fault::FaultCause;
    use dve_fp_api::ids::{DeviceId, ExchangeId, ExposureId, FcId, Lun, Timestamp, WorkerId};
    use dve_fp_api::io::{Cdb, VDevice};
    use dve_fp_api::message::ToCp;

    use super::*;
    use crate::control_path::persist::discovered_devices;
    use crate::control_path::{ControlPath, ControlPathConfig};
    use crate::store::{MemoryStore, MetadataStore};
    use crate::volume::LayoutSpec;

    /// An engine with two workers and one volume exposed to hosts 1 and 2; every downcall so
    /// far consumed.
    fn engine() -> (ControlPath, LvId) {
        let mut store = MemoryStore::new();
        store.commit(discovered_devices(1, 100_000)).unwrap();
        let mut cp = ControlPath::new(ControlPathConfig::new(1, 2, 2));
        cp.attach_store(Box::new(store)).unwrap();
        let lv = cp.create_volume("v", 1000, LayoutSpec::Linear { devices: vec![DeviceId(1)] }).unwrap();
        cp.expose(lv, &[Wwn(1), Wwn(2)]).unwrap();
        while cp.poll_downcall().is_some() {}
        (cp, lv)
    }

    /// Host `host` sends `cdb` to the volume's LUN through worker 0; returns the mask
    /// requests sent and whether the command's status went out.
    fn command(cp: &mut ControlPath, lv: LvId, host: u64, cdb: &[u8], slot: u16) -> (Vec<RequestId>, bool) {
        let lun = cp.volume(lv).map(|v| v.record.lun).unwrap();
        let io = IoTag { worker: WorkerId(0), xid: ExchangeId(slot), incarnation: 0 };
        let request = HostIo {
            initiator: Wwn(host),
            initiator_fc_id: FcId::new(0x01_0000 + host as u32).unwrap(),
            vdevice: VDevice { exposure: ExposureId(1), lun: Lun(lun) },
            lv: Some(lv),
            vseg: None,
            kind: IoKind::Other,
            lba: 0,
            blocks: 0,
            data_len: 0,
            cdb: Cdb::new(cdb).unwrap(),
            received: Timestamp(0),
        };
        let reason = QueueReason { cause: FaultCause::NotReadWrite, failure: None };
        cp.handle_upcall(Timestamp(1), WorkerId(0), ToCp::QueueIo { io, request, reason });
        drain(cp)
    }

    fn drain(cp: &mut ControlPath) -> (Vec<RequestId>, bool) {
        let (mut masks, mut answered) = (Vec::new(), false);
        while let Some((_, message)) = cp.poll_downcall() {
            match message {
                ToFp::SetLunMask { req, .. } => masks.push(req),
                ToFp::QueueIoComplete { .. } => answered = true,
                _ => {}
            }
        }
        (masks, answered)
    }

    #[test]
    fn a_reservation_answers_only_once_every_worker_has_the_new_mask() {
        let (mut cp, lv) = engine();
        // Each host's first command meets its unit attention, which lets it use the fast path.
        for (host, slot) in [(1, 1), (2, 2)] {
            let (masks, answered) = command(&mut cp, lv, host, &[0, 0, 0, 0, 0, 0], slot);
            for req in masks {
                assert!(!answered, "no status before the mask is acknowledged");
                cp.handle_upcall(Timestamp(2), WorkerId(0), ToCp::Done { req, result: Ok(()) });
            }
            let _ = drain(&mut cp);
        }
        // RESERVE(6) by host 1 shuts host 2 out of the fast path: its status waits for both
        // workers' acknowledgements.
        let (masks, answered) = command(&mut cp, lv, 1, &[0x16, 0, 0, 0, 0, 0], 3);
        assert_eq!(masks.len(), 2, "the new mask goes to both workers");
        assert!(!answered, "no status before the workers acknowledge the mask");
        cp.handle_upcall(Timestamp(2), WorkerId(0), ToCp::Done { req: masks[0], result: Ok(()) });
        assert!(!drain(&mut cp).1, "one acknowledgement is not enough");
        cp.handle_upcall(Timestamp(2), WorkerId(1), ToCp::Done { req: masks[1], result: Ok(()) });
        assert!(drain(&mut cp).1, "the status goes out once both acknowledged");
        // A command that changes no mask is answered at once.
        let (masks, answered) = command(&mut cp, lv, 1, &[0, 0, 0, 0, 0, 0], 4);
        assert!(masks.is_empty() && answered);
    }

    #[test]
    fn a_unit_attention_is_a_check_condition_not_a_failed_io() {
        let (mut cp, lv) = engine();
        // The host's first TEST UNIT READY meets its unit attention; the second is GOOD.
        for slot in [1, 2] {
            let (masks, answered) = command(&mut cp, lv, 1, &[0, 0, 0, 0, 0, 0], slot);
            for req in masks {
                cp.handle_upcall(Timestamp(2), WorkerId(0), ToCp::Done { req, result: Ok(()) });
            }
            assert!(answered || drain(&mut cp).1);
        }
        let counters = cp.counters();
        assert_eq!((counters.scsi_commands, counters.scsi_check_conditions), (2, 1));
        assert_eq!(counters.manual.errors, 0, "no read or write failed");
    }
}
