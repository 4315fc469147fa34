//! Commands that touch the medium without moving data: TEST UNIT READY, START STOP UNIT,
//! SYNCHRONIZE CACHE(10/16) and VERIFY(10/16), and READ/WRITE that reached the control path
//! (their range is checked here and the transfer handed to the caller).
//!
//! A virtual volume is always ready and has no volatile cache (WCE=0), so these succeed once
//! their LBA range is inside the volume.

use dve_wire::scsi::cdb::Cdb;

use super::lun::VirtualLun;
use super::outcome::{CmdResult, Failure, LayoutEffect, ScsiOutcome, check_range};

/// SYNCHRONIZE CACHE(10/16): GOOD if the range is inside the volume (zero blocks means "to
/// the end").
pub(crate) fn synchronize_cache(lun: &VirtualLun, lba: u64, blocks: u32) -> CmdResult {
    check_range(lba, u64::from(blocks), lun.capacity_blocks)?;
    Ok(ScsiOutcome::good())
}

/// VERIFY(10/16) without BYTCHK: GOOD if the range is inside the volume (zero blocks verify
/// nothing).
pub(crate) fn verify(lun: &VirtualLun, lba: u64, blocks: u32) -> CmdResult {
    check_range(lba, u64::from(blocks), lun.capacity_blocks)?;
    Ok(ScsiOutcome::good())
}

/// READ or WRITE (6/10/16) admitted by the control path: the range must be inside the volume
/// and no longer than the maximum transfer length; a zero-length transfer is GOOD with
/// nothing to do.
pub(crate) fn transfer(lun: &VirtualLun, cdb: &Cdb) -> CmdResult {
    let Some((lba, blocks)) = cdb.read_write_extent() else { return Err(Failure::INVALID_OPCODE) };
    check_range(lba, u64::from(blocks), lun.capacity_blocks)?;
    if blocks > lun.max_transfer_blocks {
        return Err(Failure::INVALID_FIELD_IN_CDB);
    }
    if blocks == 0 {
        return Ok(ScsiOutcome::good());
    }
    let write = matches!(cdb, Cdb::Write6(_) | Cdb::Write10(_) | Cdb::Write16(_));
    Ok(if write {
        let bytes = u64::from(blocks) * u64::from(lun.block_size);
        ScsiOutcome {
            data_out_len: u32::try_from(bytes).unwrap_or(u32::MAX),
            effect: Some(LayoutEffect::Write { lba, blocks }),
            ..ScsiOutcome::good()
        }
    } else {
        ScsiOutcome { effect: Some(LayoutEffect::Read { lba, blocks }), ..ScsiOutcome::good() }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::lun::SystemIdentity;
    use dve_fp_api::ids::LvId;
    use dve_wire::scsi::cdb::{Lba6, Lba10, Lba16};

    fn lun() -> VirtualLun {
        VirtualLun::new(LvId(1), 512, 1000, SystemIdentity::default())
    }

    #[test]
    fn ranges() {
        assert!(synchronize_cache(&lun(), 0, 0).is_ok());
        assert!(synchronize_cache(&lun(), 990, 10).is_ok());
        assert_eq!(synchronize_cache(&lun(), 990, 11), Err(Failure::LBA_OUT_OF_RANGE));
        assert_eq!(verify(&lun(), 1001, 0), Err(Failure::LBA_OUT_OF_RANGE));
        assert!(verify(&lun(), 999, 1).is_ok());
    }

    #[test]
    fn admitted_transfers() {
        let r = transfer(&lun(), &Cdb::Read10(Lba10 { lba: 8, length: 4, ..Lba10::default() })).unwrap();
        assert_eq!(r.effect, Some(LayoutEffect::Read { lba: 8, blocks: 4 }));
        assert_eq!(r.data_out_len, 0);
        let w = transfer(&lun(), &Cdb::Write16(Lba16 { lba: 996, length: 4, ..Lba16::default() })).unwrap();
        assert_eq!(w.effect, Some(LayoutEffect::Write { lba: 996, blocks: 4 }));
        assert_eq!(w.data_out_len, 2048);
        let six = transfer(&lun(), &Cdb::Read6(Lba6 { lba: 0, length: 0, control: 0 })).unwrap();
        assert_eq!(six.effect, Some(LayoutEffect::Read { lba: 0, blocks: 256 }), "0 means 256");
        assert_eq!(
            transfer(&lun(), &Cdb::Write16(Lba16 { lba: 997, length: 4, ..Lba16::default() })),
            Err(Failure::LBA_OUT_OF_RANGE)
        );
        let mut small = lun();
        small.max_transfer_blocks = 2;
        assert_eq!(
            transfer(&small, &Cdb::Read10(Lba10 { lba: 0, length: 3, ..Lba10::default() })),
            Err(Failure::INVALID_FIELD_IN_CDB)
        );
        assert_eq!(transfer(&lun(), &Cdb::Read10(Lba10::default())).unwrap(), ScsiOutcome::good());
    }
}
