//! Answers that belong to a host's view of a target rather than to one volume: REPORT LUNS
//! (the LUNs a host sees through an exposure) and the answers for a LUN that is not mapped
//! for the host (SPC-4 and SAM-5: INQUIRY reports peripheral qualifier 011b, other commands
//! LOGICAL UNIT NOT SUPPORTED).

use dve_wire::fcp::lun_from_index;
use dve_wire::scsi::cdb::Cdb;
use dve_wire::scsi::data::ReportLunsData;
use dve_wire::scsi::inquiry::{NO_LUN, StandardInquiry};
use dve_wire::scsi::opcode;
use dve_wire::scsi::sense::{Asc, SenseKey, SenseRepr};

use super::outcome::{CmdResult, Failure, ScsiOutcome, emit_vec};

/// The 8-byte SAM LUN of LUN number `lun`: peripheral device addressing below 256, flat space
/// addressing below 16384, extended flat space addressing (SAM-5 4.7.9) above.
pub fn lun_address(lun: u16) -> [u8; 8] {
    if lun < 0x4000 {
        return lun_from_index(lun);
    }
    let mut a = [0u8; 8];
    a[0] = 0xD2; // address method 11b, length 01b, extended address method 2h
    a[2..4].copy_from_slice(&lun.to_be_bytes());
    a
}

/// REPORT LUNS parameter data for `luns` (sorted, duplicates dropped), cut to
/// `allocation_length`. The LUN LIST LENGTH field always counts every LUN.
pub fn report_luns(luns: &[u16], allocation_length: u32) -> Vec<u8> {
    let mut sorted = luns.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let addresses: Vec<[u8; 8]> = sorted.into_iter().map(lun_address).collect();
    let mut data = emit_vec(&ReportLunsData::List(&addresses)).unwrap_or_default();
    data.truncate(usize::try_from(allocation_length).unwrap_or(usize::MAX));
    data
}

/// Answers a REPORT LUNS CDB for a host that sees `luns`. SELECT REPORT 00h and 02h list
/// them; 01h (well-known LUNs only) lists none, as DVE has no well-known LUNs; any other
/// value is INVALID FIELD IN CDB. Any other operation code is INVALID COMMAND OPERATION CODE.
pub fn execute_report_luns(luns: &[u16], cdb: &[u8]) -> ScsiOutcome {
    let run = || -> CmdResult {
        if cdb.first() != Some(&opcode::REPORT_LUNS) {
            return Err(Failure::INVALID_OPCODE);
        }
        let Ok(Cdb::ReportLuns { select_report, allocation_length, control }) = Cdb::parse(cdb) else {
            return Err(Failure::INVALID_FIELD_IN_CDB);
        };
        if control & 0x04 != 0 {
            return Err(Failure::INVALID_FIELD_IN_CDB);
        }
        let data = match select_report {
            0x00 | 0x02 => report_luns(luns, allocation_length),
            0x01 => report_luns(&[], allocation_length),
            _ => return Err(Failure::INVALID_FIELD_IN_CDB),
        };
        Ok(ScsiOutcome { data_in: data, ..ScsiOutcome::good() })
    };
    run().unwrap_or_else(ScsiOutcome::from)
}

/// Answers a command addressed to a LUN that is not mapped for the host: standard INQUIRY
/// returns data whose first byte is 7Fh (peripheral qualifier 011b, no device type);
/// REQUEST SENSE returns sense data ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED; everything
/// else (VPD pages included) is CHECK CONDITION with that sense. REPORT LUNS is answered by
/// [`execute_report_luns`].
pub fn execute_no_lun(cdb: &[u8]) -> ScsiOutcome {
    let not_supported =
        ScsiOutcome::check_condition(SenseKey::IllegalRequest, Asc::LOGICAL_UNIT_NOT_SUPPORTED);
    match Cdb::parse(cdb) {
        Ok(Cdb::Inquiry { evpd: false, allocation_length, .. }) => {
            let data = StandardInquiry { peripheral: NO_LUN, ..StandardInquiry::disk("", "", "") };
            match emit_vec(&data) {
                Ok(d) => ScsiOutcome::with_data(d, usize::from(allocation_length)),
                Err(f) => f.into(),
            }
        }
        Ok(Cdb::RequestSense { desc, allocation_length, .. }) => {
            let sense = if desc {
                SenseRepr::descriptor(SenseKey::IllegalRequest, Asc::LOGICAL_UNIT_NOT_SUPPORTED)
            } else {
                SenseRepr::fixed(SenseKey::IllegalRequest, Asc::LOGICAL_UNIT_NOT_SUPPORTED)
            };
            match emit_vec(&sense) {
                Ok(d) => ScsiOutcome::with_data(d, usize::from(allocation_length)),
                Err(f) => f.into(),
            }
        }
        _ => not_supported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dve_wire::scsi::status;

    fn report_luns_cdb(select: u8, alloc: u32) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[0] = opcode::REPORT_LUNS;
        c[2] = select;
        c[6..10].copy_from_slice(&alloc.to_be_bytes());
        c
    }

    #[test]
    fn lun_addresses() {
        assert_eq!(lun_address(5), [0, 5, 0, 0, 0, 0, 0, 0]);
        assert_eq!(lun_address(0x123), [0x41, 0x23, 0, 0, 0, 0, 0, 0]);
        assert_eq!(lun_address(0x3FFF), [0x7F, 0xFF, 0, 0, 0, 0, 0, 0]);
        assert_eq!(lun_address(0x4000), [0xD2, 0x00, 0x40, 0x00, 0, 0, 0, 0]);
        assert_eq!(lun_address(0xFFFF), [0xD2, 0x00, 0xFF, 0xFF, 0, 0, 0, 0]);
    }

    #[test]
    fn report_luns_bytes() {
        let d = report_luns(&[300, 0, 7, 0], 1024);
        let mut want = vec![0, 0, 0, 24, 0, 0, 0, 0];
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[0, 7, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[0x41, 0x2C, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d, want);
        let parsed = ReportLunsData::parse(&d).unwrap();
        assert_eq!(
            parsed.iter().map(|l| dve_wire::fcp::lun_index(&l)).collect::<Vec<_>>(),
            [Some(0), Some(7), Some(300)]
        );
        let cut = report_luns(&[0, 1, 2], 16);
        assert_eq!(cut.len(), 16);
        assert_eq!(&cut[..4], &[0, 0, 0, 24], "the list length counts every LUN");
        assert_eq!(report_luns(&[], 100), [0; 8]);
    }

    #[test]
    fn report_luns_command() {
        let o = execute_report_luns(&[1, 2], &report_luns_cdb(0, 64));
        assert!(o.is_good());
        assert_eq!(o.data_in.len(), 24);
        assert_eq!(execute_report_luns(&[1, 2], &report_luns_cdb(1, 64)).data_in, [0; 8]);
        let bad = execute_report_luns(&[1], &report_luns_cdb(0x10, 64));
        assert_eq!(bad.sense.map(|s| (s.key, s.asc)), Some((0x5, 0x24)));
        let wrong = execute_report_luns(&[1], &[0x00; 6]);
        assert_eq!(wrong.sense.map(|s| (s.key, s.asc)), Some((0x5, 0x20)));
        let short = execute_report_luns(&[1], &report_luns_cdb(0, 64)[..8]);
        assert_eq!(short.sense.map(|s| s.asc), Some(0x24));
    }

    #[test]
    fn unmapped_lun_answers() {
        let o = execute_no_lun(&[opcode::INQUIRY, 0, 0, 0, 96, 0]);
        assert!(o.is_good());
        assert_eq!(o.data_in.len(), 36);
        assert_eq!(o.data_in[0], 0x7F);
        let o = execute_no_lun(&[opcode::REQUEST_SENSE, 0, 0, 0, 18, 0]);
        assert!(o.is_good());
        let s = SenseRepr::parse(&o.data_in).unwrap();
        assert_eq!((s.key, s.asc), (SenseKey::IllegalRequest, Asc::LOGICAL_UNIT_NOT_SUPPORTED));
        let o = execute_no_lun(&[opcode::TEST_UNIT_READY, 0, 0, 0, 0, 0]);
        assert_eq!(o.status, status::CHECK_CONDITION);
        assert_eq!(o.sense.map(|s| (s.key, s.asc, s.ascq)), Some((0x5, 0x25, 0x00)));
        assert_eq!(execute_no_lun(&[]).status, status::CHECK_CONDITION);
    }
}
