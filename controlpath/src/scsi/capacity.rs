//! READ CAPACITY(10) and READ CAPACITY(16) (SBC-3 5.15, 5.16), built with `dve-wire`'s
//! parameter data types.

use dve_wire::scsi::data::{ReadCapacity10Data, ReadCapacity16Data};

use super::lun::VirtualLun;
use super::outcome::{CmdResult, ScsiOutcome, emit_vec};

/// READ CAPACITY(10) data: the last LBA, or 0xFFFFFFFF when it does not fit in 32 bits
/// (the host then asks READ CAPACITY(16)).
pub fn read_capacity_10_data(lun: &VirtualLun) -> ReadCapacity10Data {
    ReadCapacity10Data { last_lba: lun.last_lba().min(u64::from(u32::MAX)) as u32, block_len: lun.block_size }
}

/// READ CAPACITY(16) data: LBPME and LBPRZ set for a thin volume; no protection, one logical
/// block per physical block, lowest aligned LBA 0.
pub fn read_capacity_16_data(lun: &VirtualLun) -> ReadCapacity16Data {
    let provisioning = if lun.thin { 0xC0 } else { 0x00 };
    ReadCapacity16Data { last_lba: lun.last_lba(), block_len: lun.block_size, flags: [0, 0, provisioning, 0] }
}

/// READ CAPACITY(10).
pub(crate) fn read_capacity_10(lun: &VirtualLun) -> CmdResult {
    let data = emit_vec(&read_capacity_10_data(lun))?;
    Ok(ScsiOutcome::with_data(data, usize::MAX))
}

/// READ CAPACITY(16), cut to the allocation length.
pub(crate) fn read_capacity_16(lun: &VirtualLun, allocation_length: u32) -> CmdResult {
    let data = emit_vec(&read_capacity_16_data(lun))?;
    Ok(ScsiOutcome::with_data(data, allocation_length as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::lun::SystemIdentity;
    use dve_fp_api::ids::LvId;

    fn lun(blocks: u64, thin: bool) -> VirtualLun {
        let mut l = VirtualLun::new(LvId(1), 4096, blocks, SystemIdentity::default());
        l.thin = thin;
        l
    }

    #[test]
    fn read_capacity_10_bytes() {
        let d = read_capacity_10(&lun(0x1000, false)).unwrap().data_in;
        assert_eq!(d, [0x00, 0x00, 0x0F, 0xFF, 0x00, 0x00, 0x10, 0x00]);
        assert_eq!(
            ReadCapacity10Data::parse(&d).unwrap(),
            ReadCapacity10Data { last_lba: 0xFFF, block_len: 4096 }
        );
        // 2^32 blocks: the last LBA is 0xFFFFFFFF, which already means "too large".
        let d = read_capacity_10(&lun(1 << 32, false)).unwrap().data_in;
        assert_eq!(&d[..4], &[0xFF; 4]);
        let d = read_capacity_10(&lun(0xFFFF_FFFF, false)).unwrap().data_in;
        assert_eq!(&d[..4], &[0xFF, 0xFF, 0xFF, 0xFE], "the largest that fits");
        let d = read_capacity_10(&lun(1 << 40, false)).unwrap().data_in;
        assert_eq!(&d[..4], &[0xFF; 4]);
    }

    #[test]
    fn read_capacity_16_bytes() {
        let d = read_capacity_16(&lun(1 << 40, true), 32).unwrap().data_in;
        let mut want = vec![0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x10, 0x00];
        want.extend_from_slice(&[0x00, 0x00, 0xC0, 0x00]);
        want.extend_from_slice(&[0; 16]);
        assert_eq!(d, want);
        let parsed = ReadCapacity16Data::parse(&d).unwrap();
        assert_eq!(parsed.last_lba, (1 << 40) - 1);
        assert_eq!(read_capacity_16(&lun(8, false), 32).unwrap().data_in[14], 0x00, "no LBPME when thick");
        assert_eq!(read_capacity_16(&lun(8, false), 12).unwrap().data_in.len(), 12);
    }
}
