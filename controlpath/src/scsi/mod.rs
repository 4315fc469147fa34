//! SCSI emulation for virtual LUNs (DESIGN.md section 2; seed 003 section 6.8).
//!
//! The fast path moves READ and WRITE itself; every other command to a virtual LUN, and any
//! READ or WRITE the fast path faulted (a masked LUN: reservation conflict or pending unit
//! attention), is queued to the control path, which answers it with [`execute`]. The module
//! is pure: no threads, no clocks, no FP API calls. It reads the volume's facts
//! ([`VirtualLun`]), updates the LV's SCSI state ([`LunScsiState`]: reservations and unit
//! attentions, both serde-serializable for the metadata store) and returns a
//! [`ScsiOutcome`]: status, sense, data in, and a [`LayoutEffect`] for the caller to apply.
//!
//! Order of checks for one command (SAM-5 and SPC-4, as Linux LIO orders them):
//! 1. a pending unit attention is reported (and removed) unless the command is INQUIRY,
//!    REPORT LUNS or REQUEST SENSE;
//! 2. the CDB is parsed: unsupported operation codes are INVALID COMMAND OPERATION CODE,
//!    malformed ones INVALID FIELD IN CDB;
//! 3. reservations: RESERVATION CONFLICT per the table in [`reservation`];
//! 4. the command runs. A command that fails changes no state.
//!
//! REPORT LUNS lists a host's LUNs across volumes, so it is answered by [`report_luns()`] /
//! [`execute_report_luns`], not by [`execute`]; commands to a LUN not mapped for the host by
//! [`execute_no_lun`].
//!
//! Modules: [`command`] (CDB parsing and access classes), [`inquiry`], [`capacity`],
//! [`mode_sense`], [`medium`] (TUR, START STOP UNIT, SYNCHRONIZE CACHE, VERIFY, admitted
//! READ/WRITE), [`provisioning`] (UNMAP, WRITE SAME), [`reservation`], [`unit_attention`],
//! [`mod@report_luns`] and [`outcome`].

pub mod capacity;
pub mod command;
pub mod inquiry;
pub mod lun;
pub mod medium;
pub mod mode_sense;
pub mod outcome;
pub mod provisioning;
pub mod report_luns;
pub mod reservation;
pub mod unit_attention;

#[cfg(test)]
mod tests;

use dve_fp_api::ids::{LvId, Wwn};
use dve_fp_api::mapping::volume::{HostSet, LunMask};
use dve_wire::scsi::cdb::Cdb;
use dve_wire::scsi::sense::{Asc, SenseKey, SenseRepr};
use serde::{Deserialize, Serialize};

pub use self::lun::{SystemIdentity, TargetPort, VirtualLun};
pub use self::outcome::{LayoutEffect, ScsiOutcome};
pub use self::report_luns::{execute_no_lun, execute_report_luns, lun_address, report_luns};
pub use self::reservation::{Access, PersistentReservation, PrType, ReservationState};
pub use self::unit_attention::{UnitAttention, UnitAttentionQueue, UnitAttentions};

use self::command::Command;
use self::outcome::{CmdResult, Failure, emit_vec};

/// The SCSI state of one LV that commands change: its reservations and unit attentions.
/// Persisted by the caller after every command that changed it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LunScsiState {
    /// SPC-2 and persistent reservations.
    pub reservations: ReservationState,
    /// Pending unit attentions, per initiator.
    pub unit_attentions: UnitAttentions,
}

impl LunScsiState {
    /// No reservation; every initiator has POWER ON pending.
    pub fn new() -> LunScsiState {
        LunScsiState::default()
    }

    /// Whether `initiator`'s reads may use the fast path: allowed by the reservations and no
    /// unit attention pending.
    pub fn fast_path_reads(&self, initiator: u64) -> bool {
        !self.unit_attentions.has_pending(initiator) && self.reservations.may_read(initiator)
    }

    /// Whether `initiator`'s writes may use the fast path.
    pub fn fast_path_writes(&self, initiator: u64) -> bool {
        !self.unit_attentions.has_pending(initiator) && self.reservations.may_write(initiator)
    }

    /// The fast path's LUN mask of volume `lv` (seed 003 Fig. 7 step 93): the initiators seen
    /// so far that may read, resp. write, through the fast path. Initiators not yet seen have
    /// POWER ON pending, so they fault to the control path until it is reported.
    pub fn lun_mask(&self, lv: LvId) -> LunMask {
        let seen: Vec<u64> = self.unit_attentions.seen().collect();
        let hosts = |allowed: &dyn Fn(u64) -> bool| {
            HostSet::only(seen.iter().copied().filter(|&i| allowed(i)).map(Wwn).collect())
        };
        LunMask {
            lv,
            readers: hosts(&|i| self.fast_path_reads(i)),
            writers: hosts(&|i| self.fast_path_writes(i)),
        }
    }

    /// The volume's capacity changed: every initiator is told CAPACITY DATA HAS CHANGED.
    pub fn capacity_changed(&mut self) {
        self.unit_attentions.post_all(UnitAttention::CapacityDataHasChanged);
    }

    /// A power on or reset of the LV: SPC-2 reservations are released, persistent ones kept
    /// only with APTPL, and every initiator has POWER ON pending again.
    pub fn power_on(&mut self) {
        self.reservations.power_on();
        self.unit_attentions.reset();
    }
}

/// Executes one command from `initiator` (its port name) to the virtual LUN `lun` whose LV
/// state is `state`. `cdb` is the CDB as received (it may be longer than the command);
/// `data_out` the data the host sent (parameter lists, the WRITE SAME block). Never panics;
/// a command that does not succeed leaves `state` unchanged, except that reporting a unit
/// attention removes it.
pub fn execute(
    lun: &VirtualLun,
    state: &mut LunScsiState,
    initiator: u64,
    cdb: &[u8],
    data_out: &[u8],
) -> ScsiOutcome {
    if cdb.first().is_none_or(|&op| command::reports_unit_attention(op))
        && let Some(ua) = state.unit_attentions.take(initiator)
    {
        return ScsiOutcome::check_condition(ua.key(), ua.asc());
    }
    run(lun, state, initiator, cdb, data_out).unwrap_or_else(ScsiOutcome::from)
}

fn run(lun: &VirtualLun, state: &mut LunScsiState, initiator: u64, cdb: &[u8], data_out: &[u8]) -> CmdResult {
    let command = command::parse(cdb)?;
    if !state.reservations.permits(initiator, command.access()) {
        return Err(Failure::Conflict);
    }
    let c = match command {
        Command::StartStopUnit { .. } => return Ok(ScsiOutcome::good()),
        Command::Verify { lba, blocks } => return medium::verify(lun, lba, blocks),
        Command::Wire(c) => c,
    };
    match c {
        Cdb::TestUnitReady { .. } => Ok(ScsiOutcome::good()),
        Cdb::RequestSense { desc, allocation_length, .. } => {
            request_sense(state, initiator, desc, allocation_length)
        }
        Cdb::Read6(_)
        | Cdb::Read10(_)
        | Cdb::Read16(_)
        | Cdb::Write6(_)
        | Cdb::Write10(_)
        | Cdb::Write16(_) => medium::transfer(lun, &c),
        Cdb::Inquiry { evpd, page_code, allocation_length, .. } => {
            inquiry::inquiry(lun, evpd, page_code, allocation_length)
        }
        Cdb::ReadCapacity10 { .. } => capacity::read_capacity_10(lun),
        Cdb::ReadCapacity16 { allocation_length, .. } => capacity::read_capacity_16(lun, allocation_length),
        Cdb::ModeSense6 { dbd, page_control, page_code, subpage_code, allocation_length, .. } => {
            mode_sense::mode_sense(
                lun,
                mode_sense::ModeSense {
                    ten: false,
                    llbaa: false,
                    dbd,
                    page_control,
                    page_code,
                    subpage_code,
                    allocation_length: u16::from(allocation_length),
                },
            )
        }
        Cdb::ModeSense10 { llbaa, dbd, page_control, page_code, subpage_code, allocation_length, .. } => {
            mode_sense::mode_sense(
                lun,
                mode_sense::ModeSense {
                    ten: true,
                    llbaa,
                    dbd,
                    page_control,
                    page_code,
                    subpage_code,
                    allocation_length,
                },
            )
        }
        Cdb::SynchronizeCache10(f) => medium::synchronize_cache(lun, u64::from(f.lba), u32::from(f.length)),
        Cdb::SynchronizeCache16(f) => medium::synchronize_cache(lun, f.lba, f.length),
        Cdb::Reserve6 { .. } => {
            state.reservations.reserve_legacy(initiator)?;
            Ok(ScsiOutcome::good())
        }
        Cdb::Release6 { .. } => {
            state.reservations.release_legacy(initiator)?;
            Ok(ScsiOutcome::good())
        }
        Cdb::Reserve10(f) | Cdb::Release10(f) => {
            // Third-party reservations (3RDPTY, LONGID) and extents are not supported.
            if f.flags != 0 || f.third_party_id != 0 || f.parameter_list_length != 0 {
                return Err(Failure::INVALID_FIELD_IN_CDB);
            }
            if matches!(c, Cdb::Reserve10(_)) {
                state.reservations.reserve_legacy(initiator)?;
            } else {
                state.reservations.release_legacy(initiator)?;
            }
            Ok(ScsiOutcome::good())
        }
        Cdb::PersistentReserveIn { service_action, allocation_length, .. } => {
            let data = state.reservations.persistent_reserve_in(service_action, lun.port.relative_id)?;
            Ok(ScsiOutcome::with_data(data, usize::from(allocation_length)))
        }
        Cdb::PersistentReserveOut { service_action, scope, pr_type, parameter_list_length, .. } => {
            let notices = state.reservations.persistent_reserve_out(
                initiator,
                service_action,
                scope,
                pr_type,
                parameter_list_length,
                data_out,
            )?;
            for (to, ua) in notices {
                state.unit_attentions.post(to, ua);
            }
            Ok(ScsiOutcome { data_out_len: parameter_list_length, ..ScsiOutcome::good() })
        }
        Cdb::Unmap { anchor, parameter_list_length, .. } => {
            provisioning::unmap(lun, anchor, parameter_list_length, data_out)
        }
        Cdb::WriteSame10(f) => provisioning::write_same(
            lun,
            provisioning::WriteSame {
                flags: f.flags,
                lba: u64::from(f.lba),
                blocks: u32::from(f.length),
                sixteen: false,
            },
            data_out,
        ),
        Cdb::WriteSame16(f) => provisioning::write_same(
            lun,
            provisioning::WriteSame { flags: f.flags, lba: f.lba, blocks: f.length, sixteen: true },
            data_out,
        ),
        Cdb::ReportLuns { .. } => Err(Failure::INVALID_OPCODE),
    }
}

/// REQUEST SENSE: the oldest pending unit attention as sense data (removing it), or NO
/// SENSE; fixed format unless DESC.
fn request_sense(state: &mut LunScsiState, initiator: u64, desc: bool, allocation_length: u8) -> CmdResult {
    let (key, asc) = match state.unit_attentions.pending(initiator) {
        Some(ua) => (ua.key(), ua.asc()),
        None => (SenseKey::NoSense, Asc::NO_ADDITIONAL_SENSE),
    };
    let sense = if desc { SenseRepr::descriptor(key, asc) } else { SenseRepr::fixed(key, asc) };
    let data = emit_vec(&sense)?;
    state.unit_attentions.take(initiator);
    Ok(ScsiOutcome::with_data(data, usize::from(allocation_length)))
}
