//! From CDB bytes to a `Command`: the operation codes the emulation supports, the CDBs
//! `dve-wire` does not parse (START STOP UNIT, VERIFY(10/16)), the mapping of parse errors to
//! sense, and each command's reservation [`Access`] class.

use dve_wire::scsi::cdb::Cdb;
use dve_wire::scsi::opcode as wop;

use super::outcome::Failure;
use super::reservation::Access;

/// Operation codes the emulation handles that `dve_wire::scsi::opcode` does not name.
pub mod opcode {
    /// START STOP UNIT.
    pub const START_STOP_UNIT: u8 = 0x1B;
    /// VERIFY(10).
    pub const VERIFY_10: u8 = 0x2F;
    /// VERIFY(16).
    pub const VERIFY_16: u8 = 0x8F;
}

/// Whether a pending unit attention is reported to this operation code (SAM-5: not to
/// INQUIRY, REPORT LUNS or REQUEST SENSE).
pub fn reports_unit_attention(opcode: u8) -> bool {
    !matches!(opcode, wop::INQUIRY | wop::REPORT_LUNS | wop::REQUEST_SENSE)
}

/// Whether `execute` answers this operation code (REPORT LUNS is answered per host by
/// `report_luns`, so it is not in the list).
pub fn is_supported(opcode: u8) -> bool {
    matches!(
        opcode,
        wop::TEST_UNIT_READY
            | wop::REQUEST_SENSE
            | wop::READ_6
            | wop::WRITE_6
            | wop::INQUIRY
            | wop::RESERVE_6
            | wop::RELEASE_6
            | wop::MODE_SENSE_6
            | opcode::START_STOP_UNIT
            | wop::READ_CAPACITY_10
            | wop::READ_10
            | wop::WRITE_10
            | opcode::VERIFY_10
            | wop::SYNCHRONIZE_CACHE_10
            | wop::WRITE_SAME_10
            | wop::UNMAP
            | wop::RESERVE_10
            | wop::RELEASE_10
            | wop::MODE_SENSE_10
            | wop::PERSISTENT_RESERVE_IN
            | wop::PERSISTENT_RESERVE_OUT
            | wop::READ_16
            | wop::WRITE_16
            | opcode::VERIFY_16
            | wop::SYNCHRONIZE_CACHE_16
            | wop::WRITE_SAME_16
            | wop::SERVICE_ACTION_IN_16
    )
}

/// A parsed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// A command `dve-wire` parses.
    Wire(Cdb),
    /// START STOP UNIT.
    StartStopUnit {
        /// START.
        start: bool,
        /// POWER CONDITION (4 bits).
        power_condition: u8,
    },
    /// VERIFY(10) or VERIFY(16) without BYTCHK.
    Verify {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
    },
}

fn be_u64(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |v, &x| v << 8 | u64::from(x))
}

/// Parses a CDB. Unsupported operation codes are INVALID COMMAND OPERATION CODE; anything
/// else wrong (too short, reserved bits, NACA, an unsupported service action) is INVALID
/// FIELD IN CDB.
pub(crate) fn parse(cdb: &[u8]) -> Result<Command, Failure> {
    let Some(&op) = cdb.first() else { return Err(Failure::INVALID_FIELD_IN_CDB) };
    if !is_supported(op) {
        return Err(Failure::INVALID_OPCODE);
    }
    let len = dve_wire::scsi::cdb_len(op).ok_or(Failure::INVALID_OPCODE)?;
    let c = cdb.get(..len).ok_or(Failure::INVALID_FIELD_IN_CDB)?;
    if c[len - 1] & 0x04 != 0 {
        // NACA: auto contingent allegiance is not supported.
        return Err(Failure::INVALID_FIELD_IN_CDB);
    }
    match op {
        opcode::START_STOP_UNIT => {
            if c[1] & 0xfe != 0 || c[2] != 0 || c[3] & 0xf0 != 0 || c[4] & 0x08 != 0 {
                return Err(Failure::INVALID_FIELD_IN_CDB);
            }
            Ok(Command::StartStopUnit { start: c[4] & 0x01 != 0, power_condition: c[4] >> 4 })
        }
        opcode::VERIFY_10 | opcode::VERIFY_16 => {
            // VRPROTECT and BYTCHK (comparing with data out) are not supported; bit 3 and
            // bit 0 of byte 1 and the top bits of the group byte are reserved.
            let group = if op == opcode::VERIFY_10 { c[6] } else { c[14] };
            if c[1] & 0xef != 0 || group & 0xc0 != 0 {
                return Err(Failure::INVALID_FIELD_IN_CDB);
            }
            let (lba, blocks) = if op == opcode::VERIFY_10 {
                (be_u64(&c[2..6]), be_u64(&c[7..9]) as u32)
            } else {
                (be_u64(&c[2..10]), be_u64(&c[10..14]) as u32)
            };
            Ok(Command::Verify { lba, blocks })
        }
        _ => Cdb::parse(c).map(Command::Wire).map_err(|_| Failure::INVALID_FIELD_IN_CDB),
    }
}

impl Command {
    /// The command's class in the reservation conflict table.
    pub(crate) fn access(&self) -> Access {
        match self {
            Command::StartStopUnit { start: true, power_condition: 0 } => Access::Shared,
            Command::StartStopUnit { .. } => Access::Write,
            Command::Verify { .. } => Access::Read,
            Command::Wire(c) => match c {
                Cdb::Inquiry { .. } | Cdb::RequestSense { .. } | Cdb::ReportLuns { .. } => Access::Exempt,
                Cdb::TestUnitReady { .. } | Cdb::ReadCapacity10 { .. } | Cdb::ReadCapacity16 { .. } => {
                    Access::Shared
                }
                Cdb::Read6(_)
                | Cdb::Read10(_)
                | Cdb::Read16(_)
                | Cdb::ModeSense6 { .. }
                | Cdb::ModeSense10 { .. } => Access::Read,
                Cdb::Write6(_)
                | Cdb::Write10(_)
                | Cdb::Write16(_)
                | Cdb::WriteSame10(_)
                | Cdb::WriteSame16(_)
                | Cdb::Unmap { .. }
                | Cdb::SynchronizeCache10(_)
                | Cdb::SynchronizeCache16(_) => Access::Write,
                Cdb::Reserve6 { .. } | Cdb::Release6 { .. } | Cdb::Reserve10(_) | Cdb::Release10(_) => {
                    Access::LegacyReservation
                }
                Cdb::PersistentReserveIn { .. } | Cdb::PersistentReserveOut { .. } => Access::Persistent,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_and_malformed() {
        assert_eq!(parse(&[]), Err(Failure::INVALID_FIELD_IN_CDB));
        assert_eq!(parse(&[0x4D, 0, 0]), Err(Failure::INVALID_OPCODE), "LOG SENSE, even truncated");
        assert_eq!(parse(&[wop::REPORT_LUNS; 12]), Err(Failure::INVALID_OPCODE));
        assert_eq!(parse(&[0xFF; 16]), Err(Failure::INVALID_OPCODE));
        assert_eq!(parse(&[wop::READ_10, 0, 0]), Err(Failure::INVALID_FIELD_IN_CDB));
        let mut sai = [0u8; 16];
        sai[0] = wop::SERVICE_ACTION_IN_16;
        sai[1] = 0x11;
        assert_eq!(parse(&sai), Err(Failure::INVALID_FIELD_IN_CDB), "unsupported service action");
        let naca = [wop::TEST_UNIT_READY, 0, 0, 0, 0, 0x04];
        assert_eq!(parse(&naca), Err(Failure::INVALID_FIELD_IN_CDB));
        // Longer buffers (FCP carries 16 bytes) are fine.
        assert_eq!(parse(&[0u8; 16]), Ok(Command::Wire(Cdb::TestUnitReady { control: 0 })));
    }

    #[test]
    fn start_stop_and_verify() {
        assert_eq!(
            parse(&[opcode::START_STOP_UNIT, 1, 0, 0, 0x01, 0]),
            Ok(Command::StartStopUnit { start: true, power_condition: 0 })
        );
        assert_eq!(parse(&[opcode::START_STOP_UNIT, 0, 0, 0, 0x08, 0]), Err(Failure::INVALID_FIELD_IN_CDB));
        let stop = parse(&[opcode::START_STOP_UNIT, 0, 0, 0, 0x30, 0]).unwrap();
        assert_eq!(stop, Command::StartStopUnit { start: false, power_condition: 3 });
        assert_eq!(stop.access(), Access::Write);

        let v10 = [opcode::VERIFY_10, 0x10, 0, 0, 1, 0, 0, 0, 8, 0];
        assert_eq!(parse(&v10), Ok(Command::Verify { lba: 256, blocks: 8 }));
        let bytchk = [opcode::VERIFY_10, 0x02, 0, 0, 1, 0, 0, 0, 8, 0];
        assert_eq!(parse(&bytchk), Err(Failure::INVALID_FIELD_IN_CDB));
        let mut v16 = [0u8; 16];
        v16[0] = opcode::VERIFY_16;
        v16[2..10].copy_from_slice(&0x1_0000_0000u64.to_be_bytes());
        v16[10..14].copy_from_slice(&3u32.to_be_bytes());
        assert_eq!(parse(&v16), Ok(Command::Verify { lba: 1 << 32, blocks: 3 }));
        assert_eq!(parse(&v16[..15]), Err(Failure::INVALID_FIELD_IN_CDB));
    }

    #[test]
    fn unit_attention_exemptions() {
        assert!(!reports_unit_attention(wop::INQUIRY));
        assert!(!reports_unit_attention(wop::REPORT_LUNS));
        assert!(!reports_unit_attention(wop::REQUEST_SENSE));
        assert!(reports_unit_attention(wop::TEST_UNIT_READY));
        assert!(reports_unit_attention(0xFF));
    }
}
