//! UNMAP and WRITE SAME(10/16) (SBC-3 5.28, 5.41, 5.42): the parameter list and CDB are
//! validated against the volume's size and limits, and the change is returned as a
//! [`LayoutEffect`] for the caller to apply.

use super::lun::VirtualLun;
use super::outcome::{CmdResult, Failure, LayoutEffect, ScsiOutcome, check_range};

/// Length of the UNMAP parameter list header.
pub const UNMAP_HEADER_LEN: usize = 8;
/// Length of one UNMAP block descriptor.
pub const UNMAP_DESCRIPTOR_LEN: usize = 16;

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |v, &x| v << 8 | u64::from(x))
}

/// UNMAP. Only a thin volume supports it (else INVALID COMMAND OPERATION CODE, as LBPU=0);
/// ANCHOR is not supported. A parameter list length of 0 is GOOD with nothing to do; 1 to 7,
/// or more than the data sent, is PARAMETER LIST LENGTH ERROR. Descriptors are taken from
/// the smaller of the block descriptor data length and the list (a trailing partial
/// descriptor is ignored); more than the maximum descriptors or blocks is INVALID FIELD IN
/// PARAMETER LIST, a range outside the volume LOGICAL BLOCK ADDRESS OUT OF RANGE.
/// Zero-block descriptors are skipped.
pub(crate) fn unmap(
    lun: &VirtualLun,
    anchor: bool,
    parameter_list_length: u16,
    data_out: &[u8],
) -> CmdResult {
    if !lun.thin {
        return Err(Failure::INVALID_OPCODE);
    }
    if anchor {
        return Err(Failure::INVALID_FIELD_IN_CDB);
    }
    let len = usize::from(parameter_list_length);
    if len == 0 {
        return Ok(ScsiOutcome::good());
    }
    if len < UNMAP_HEADER_LEN || data_out.len() < len {
        return Err(Failure::PARAMETER_LIST_LENGTH_ERROR);
    }
    let list = &data_out[..len];
    let descriptor_bytes = (be(&list[2..4]) as usize).min(len - UNMAP_HEADER_LEN);
    let count = descriptor_bytes / UNMAP_DESCRIPTOR_LEN;
    if count > lun.max_unmap_descriptors as usize {
        return Err(Failure::INVALID_FIELD_IN_PARAMETER_LIST);
    }
    let mut ranges = Vec::with_capacity(count);
    let mut total = 0u64;
    for d in list[UNMAP_HEADER_LEN..UNMAP_HEADER_LEN + count * UNMAP_DESCRIPTOR_LEN]
        .chunks_exact(UNMAP_DESCRIPTOR_LEN)
    {
        let lba = be(&d[0..8]);
        let blocks = be(&d[8..12]) as u32;
        if blocks == 0 {
            continue;
        }
        total += u64::from(blocks);
        if total > u64::from(lun.max_unmap_blocks) {
            return Err(Failure::INVALID_FIELD_IN_PARAMETER_LIST);
        }
        check_range(lba, u64::from(blocks), lun.capacity_blocks)?;
        ranges.push((lba, blocks));
    }
    Ok(ScsiOutcome {
        data_out_len: u32::from(parameter_list_length),
        effect: (!ranges.is_empty()).then_some(LayoutEffect::Unmap(ranges)),
        ..ScsiOutcome::good()
    })
}

/// The fields of a WRITE SAME CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriteSame {
    /// Byte 1 as on the wire (WRPROTECT, ANCHOR, UNMAP, PBDATA, LBDATA, NDOB).
    pub flags: u8,
    /// First block.
    pub lba: u64,
    /// Number of blocks.
    pub blocks: u32,
    /// WRITE SAME(16) rather than (10).
    pub sixteen: bool,
}

/// WRITE SAME(10/16). Refused with INVALID FIELD IN CDB: WRPROTECT, ANCHOR, PBDATA, LBDATA,
/// NDOB on the 10-byte CDB (where the bit is reserved), UNMAP on a volume that is not thin,
/// zero blocks (WSNZ), more than the maximum WRITE SAME length. NDOB (16 only) writes zeros
/// and takes no data; otherwise the data out must hold one block (PARAMETER LIST LENGTH
/// ERROR if shorter).
pub(crate) fn write_same(lun: &VirtualLun, c: WriteSame, data_out: &[u8]) -> CmdResult {
    let unmap = c.flags & 0x08 != 0;
    let ndob = c.flags & 0x01 != 0;
    if c.flags & 0xF6 != 0 || (ndob && !c.sixteen) || (unmap && !lun.thin) {
        return Err(Failure::INVALID_FIELD_IN_CDB);
    }
    if c.blocks == 0 || c.blocks > lun.max_write_same_blocks {
        return Err(Failure::INVALID_FIELD_IN_CDB);
    }
    check_range(c.lba, u64::from(c.blocks), lun.capacity_blocks)?;
    let block_size = lun.block_size as usize;
    let (block, used) = if ndob {
        (vec![0u8; block_size], 0)
    } else {
        let block = data_out.get(..block_size).ok_or(Failure::PARAMETER_LIST_LENGTH_ERROR)?;
        (block.to_vec(), lun.block_size)
    };
    Ok(ScsiOutcome {
        data_out_len: used,
        effect: Some(LayoutEffect::WriteSame { lba: c.lba, blocks: c.blocks, block, unmap }),
        ..ScsiOutcome::good()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::lun::SystemIdentity;
    use dve_fp_api::ids::LvId;

    fn lun(thin: bool) -> VirtualLun {
        let mut l = VirtualLun::new(LvId(1), 512, 1000, SystemIdentity::default());
        l.thin = thin;
        l
    }

    fn list(descriptors: &[(u64, u32)]) -> Vec<u8> {
        let n = descriptors.len() * 16;
        let mut p = Vec::new();
        p.extend_from_slice(&((n + 6) as u16).to_be_bytes());
        p.extend_from_slice(&(n as u16).to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        for &(lba, blocks) in descriptors {
            p.extend_from_slice(&lba.to_be_bytes());
            p.extend_from_slice(&blocks.to_be_bytes());
            p.extend_from_slice(&[0; 4]);
        }
        p
    }

    #[test]
    fn unmap_ranges() {
        let p = list(&[(0, 8), (100, 0), (992, 8)]);
        let o = unmap(&lun(true), false, p.len() as u16, &p).unwrap();
        assert_eq!(o.effect, Some(LayoutEffect::Unmap(vec![(0, 8), (992, 8)])));
        assert_eq!(o.data_out_len, 56);
        assert_eq!(unmap(&lun(true), false, 0, &[]).unwrap(), ScsiOutcome::good());
        let p = list(&[(0, 0)]);
        assert_eq!(unmap(&lun(true), false, p.len() as u16, &p).unwrap().effect, None);
    }

    #[test]
    fn unmap_errors() {
        let p = list(&[(993, 8)]);
        assert_eq!(unmap(&lun(true), false, p.len() as u16, &p), Err(Failure::LBA_OUT_OF_RANGE));
        assert_eq!(unmap(&lun(false), false, p.len() as u16, &p), Err(Failure::INVALID_OPCODE));
        assert_eq!(unmap(&lun(true), true, p.len() as u16, &p), Err(Failure::INVALID_FIELD_IN_CDB));
        assert_eq!(unmap(&lun(true), false, 7, &p), Err(Failure::PARAMETER_LIST_LENGTH_ERROR));
        assert_eq!(unmap(&lun(true), false, 40, &p[..20]), Err(Failure::PARAMETER_LIST_LENGTH_ERROR));
        let mut few = lun(true);
        few.max_unmap_descriptors = 1;
        few.max_unmap_blocks = 10;
        let two = list(&[(0, 1), (1, 1)]);
        assert_eq!(unmap(&few, false, two.len() as u16, &two), Err(Failure::INVALID_FIELD_IN_PARAMETER_LIST));
        let many = list(&[(0, 11)]);
        assert_eq!(
            unmap(&few, false, many.len() as u16, &many),
            Err(Failure::INVALID_FIELD_IN_PARAMETER_LIST)
        );
        // A trailing partial descriptor and a block descriptor length past the list are cut.
        let mut p = list(&[(0, 1), (5, 1)]);
        p[2..4].copy_from_slice(&100u16.to_be_bytes());
        let o = unmap(&lun(true), false, 30, &p).unwrap();
        assert_eq!(o.effect, Some(LayoutEffect::Unmap(vec![(0, 1)])));
    }

    fn ws(flags: u8, lba: u64, blocks: u32, sixteen: bool) -> WriteSame {
        WriteSame { flags, lba, blocks, sixteen }
    }

    #[test]
    fn write_same_effects() {
        let block: Vec<u8> = (0..512u32).map(|i| i as u8).collect();
        let o = write_same(&lun(false), ws(0, 10, 5, false), &block).unwrap();
        assert_eq!(
            o.effect,
            Some(LayoutEffect::WriteSame { lba: 10, blocks: 5, block: block.clone(), unmap: false })
        );
        assert_eq!(o.data_out_len, 512);
        let o = write_same(&lun(true), ws(0x09, 0, 1000, true), &[]).unwrap();
        assert_eq!(
            o.effect,
            Some(LayoutEffect::WriteSame { lba: 0, blocks: 1000, block: vec![0; 512], unmap: true })
        );
        assert_eq!(o.data_out_len, 0);
    }

    #[test]
    fn write_same_errors() {
        let block = vec![0u8; 512];
        for flags in [0x20, 0x10, 0x04, 0x02] {
            assert_eq!(
                write_same(&lun(true), ws(flags, 0, 1, true), &block),
                Err(Failure::INVALID_FIELD_IN_CDB)
            );
        }
        assert_eq!(write_same(&lun(true), ws(0x01, 0, 1, false), &block), Err(Failure::INVALID_FIELD_IN_CDB));
        assert_eq!(write_same(&lun(false), ws(0x08, 0, 1, true), &block), Err(Failure::INVALID_FIELD_IN_CDB));
        assert_eq!(write_same(&lun(true), ws(0, 0, 0, true), &block), Err(Failure::INVALID_FIELD_IN_CDB));
        assert_eq!(write_same(&lun(true), ws(0, 999, 2, true), &block), Err(Failure::LBA_OUT_OF_RANGE));
        assert_eq!(
            write_same(&lun(true), ws(0, 0, 1, true), &block[..511]),
            Err(Failure::PARAMETER_LIST_LENGTH_ERROR)
        );
        let mut small = lun(true);
        small.max_write_same_blocks = 4;
        assert_eq!(write_same(&small, ws(0, 0, 5, true), &block), Err(Failure::INVALID_FIELD_IN_CDB));
    }
}
