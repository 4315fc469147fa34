//! MODE SENSE(6) and MODE SENSE(10) (SPC-4 6.11, 6.12): the mode parameter header, the
//! direct-access block descriptor (short, or long with LLBAA) unless DBD, and the caching
//! (08h) and control (0Ah) pages, or both for 3Fh. The volume has no write cache (WCE=0) and
//! no savable or changeable parameters: saved values are SAVING PARAMETERS NOT SUPPORTED and
//! changeable values are all zero.

use dve_wire::scsi::sense::Asc;

use super::lun::VirtualLun;
use super::outcome::{CmdResult, Failure, ScsiOutcome};

/// Mode page codes.
pub mod page {
    /// Caching mode page.
    pub const CACHING: u8 = 0x08;
    /// Control mode page.
    pub const CONTROL: u8 = 0x0A;
    /// Return all mode pages.
    pub const ALL: u8 = 0x3F;
}

/// Page control values (CDB byte 2 bits 7:6).
pub mod page_control {
    /// Current values.
    pub const CURRENT: u8 = 0;
    /// Changeable values.
    pub const CHANGEABLE: u8 = 1;
    /// Default values.
    pub const DEFAULT: u8 = 2;
    /// Saved values.
    pub const SAVED: u8 = 3;
}

/// Length of the caching mode page.
pub const CACHING_PAGE_LEN: usize = 20;
/// Length of the control mode page.
pub const CONTROL_PAGE_LEN: usize = 12;

/// The caching mode page: WCE=0, RCD=0, everything else zero (so its current, default and
/// changeable values are the same bytes).
pub fn caching_page() -> [u8; CACHING_PAGE_LEN] {
    let mut p = [0u8; CACHING_PAGE_LEN];
    p[0] = page::CACHING;
    p[1] = (CACHING_PAGE_LEN - 2) as u8;
    p
}

/// The control mode page: GLTSD (no log parameters are saved), QUEUE ALGORITHM MODIFIER 1
/// (unrestricted reordering), fixed-format sense (D_SENSE=0), QERR 0, TST 0. Its changeable
/// values are all zero after the page code and length.
pub fn control_page(changeable: bool) -> [u8; CONTROL_PAGE_LEN] {
    let mut p = [0u8; CONTROL_PAGE_LEN];
    p[0] = page::CONTROL;
    p[1] = (CONTROL_PAGE_LEN - 2) as u8;
    if !changeable {
        p[2] = 0x02;
        p[3] = 0x10;
    }
    p
}

/// The block descriptor: short (8 bytes: block count, saturated to 0xFFFFFFFF, and 24-bit
/// block length) or long (16 bytes: 64-bit count and 32-bit length).
pub fn block_descriptor(lun: &VirtualLun, long: bool) -> Vec<u8> {
    if long {
        let mut d = vec![0u8; 16];
        d[..8].copy_from_slice(&lun.capacity_blocks.to_be_bytes());
        d[12..16].copy_from_slice(&lun.block_size.to_be_bytes());
        d
    } else {
        let mut d = vec![0u8; 8];
        let blocks = lun.capacity_blocks.min(u64::from(u32::MAX)) as u32;
        d[..4].copy_from_slice(&blocks.to_be_bytes());
        d[5..8].copy_from_slice(&lun.block_size.min(0xff_ffff).to_be_bytes()[1..]);
        d
    }
}

/// The fields of a MODE SENSE CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModeSense {
    /// MODE SENSE(10) rather than (6).
    pub ten: bool,
    /// LLBAA (MODE SENSE(10) only).
    pub llbaa: bool,
    /// DBD.
    pub dbd: bool,
    /// Page control.
    pub page_control: u8,
    /// Page code.
    pub page_code: u8,
    /// Subpage code.
    pub subpage_code: u8,
    /// Allocation length.
    pub allocation_length: u16,
}

/// MODE SENSE(6) or (10).
pub(crate) fn mode_sense(lun: &VirtualLun, c: ModeSense) -> CmdResult {
    if c.page_control == page_control::SAVED {
        return Err(Failure::illegal(Asc::SAVING_PARAMETERS_NOT_SUPPORTED));
    }
    let changeable = c.page_control == page_control::CHANGEABLE;
    let mut pages = Vec::new();
    match (c.page_code, c.subpage_code) {
        (page::CACHING, 0) => pages.extend_from_slice(&caching_page()),
        (page::CONTROL, 0) => pages.extend_from_slice(&control_page(changeable)),
        (page::ALL, 0x00 | 0xFF) => {
            pages.extend_from_slice(&caching_page());
            pages.extend_from_slice(&control_page(changeable));
        }
        _ => return Err(Failure::INVALID_FIELD_IN_CDB),
    }
    let long = c.ten && c.llbaa;
    let descriptor = if c.dbd { Vec::new() } else { block_descriptor(lun, long) };
    let mut data = Vec::with_capacity(8 + descriptor.len() + pages.len());
    if c.ten {
        let total = 8 + descriptor.len() + pages.len();
        data.extend_from_slice(&((total - 2) as u16).to_be_bytes());
        data.push(0); // medium type
        data.push(0); // device-specific parameter: WP=0, DPOFUA=0
        data.push(u8::from(long && !c.dbd)); // LONGLBA
        data.push(0);
        data.extend_from_slice(&(descriptor.len() as u16).to_be_bytes());
    } else {
        let total = 4 + descriptor.len() + pages.len();
        data.push((total - 1) as u8);
        data.push(0);
        data.push(0);
        data.push(descriptor.len() as u8);
    }
    data.extend_from_slice(&descriptor);
    data.extend_from_slice(&pages);
    Ok(ScsiOutcome::with_data(data, usize::from(c.allocation_length)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::lun::SystemIdentity;
    use dve_fp_api::ids::LvId;

    fn lun(blocks: u64) -> VirtualLun {
        VirtualLun::new(LvId(1), 512, blocks, SystemIdentity::default())
    }

    fn ms(ten: bool, llbaa: bool, dbd: bool, pc: u8, code: u8, sub: u8) -> ModeSense {
        ModeSense {
            ten,
            llbaa,
            dbd,
            page_control: pc,
            page_code: code,
            subpage_code: sub,
            allocation_length: 0xFFFF,
        }
    }

    #[test]
    fn mode_sense_6_caching_with_block_descriptor() {
        let d = mode_sense(&lun(0x10_0000), ms(false, false, false, 0, 0x08, 0)).unwrap().data_in;
        assert_eq!(d.len(), 4 + 8 + 20);
        assert_eq!(&d[..4], &[31, 0x00, 0x00, 0x08]);
        assert_eq!(&d[4..12], &[0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00]);
        assert_eq!(&d[12..14], &[0x08, 0x12]);
        assert_eq!(&d[14..], &[0; 18], "WCE=0 RCD=0");
    }

    #[test]
    fn mode_sense_6_all_pages_without_descriptor() {
        let d = mode_sense(&lun(8), ms(false, false, true, 0, 0x3F, 0)).unwrap().data_in;
        assert_eq!(d.len(), 4 + 20 + 12);
        assert_eq!(&d[..4], &[35, 0, 0, 0]);
        assert_eq!(&d[4..6], &[0x08, 0x12]);
        assert_eq!(&d[24..36], &[0x0A, 0x0A, 0x02, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn mode_sense_10_short_and_long_descriptors() {
        let big = lun(1 << 33);
        let d = mode_sense(&big, ms(true, false, false, 0, 0x0A, 0)).unwrap().data_in;
        assert_eq!(d.len(), 8 + 8 + 12);
        assert_eq!(&d[..8], &[0x00, 26, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08]);
        assert_eq!(&d[8..16], &[0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x02, 0x00], "count saturates");
        let d = mode_sense(&big, ms(true, true, false, 0, 0x0A, 0)).unwrap().data_in;
        assert_eq!(d.len(), 8 + 16 + 12);
        assert_eq!(&d[..8], &[0x00, 34, 0x00, 0x00, 0x01, 0x00, 0x00, 0x10]);
        assert_eq!(&d[8..16], &(1u64 << 33).to_be_bytes());
        assert_eq!(&d[16..24], &[0, 0, 0, 0, 0x00, 0x00, 0x02, 0x00]);
        let d = mode_sense(&big, ms(true, true, true, 0, 0x0A, 0)).unwrap().data_in;
        assert_eq!(&d[..8], &[0x00, 18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], "DBD: no LONGLBA");
    }

    #[test]
    fn page_control_and_bad_pages() {
        let d = mode_sense(&lun(8), ms(false, false, true, 1, 0x0A, 0)).unwrap().data_in;
        assert_eq!(&d[4..], &[0x0A, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "nothing changeable");
        assert_eq!(
            mode_sense(&lun(8), ms(false, false, true, 3, 0x08, 0)),
            Err(Failure::illegal(Asc::SAVING_PARAMETERS_NOT_SUPPORTED))
        );
        assert_eq!(
            mode_sense(&lun(8), ms(false, false, true, 0, 0x1C, 0)),
            Err(Failure::INVALID_FIELD_IN_CDB)
        );
        assert_eq!(
            mode_sense(&lun(8), ms(false, false, true, 0, 0x08, 1)),
            Err(Failure::INVALID_FIELD_IN_CDB)
        );
        let cut = ModeSense { allocation_length: 4, ..ms(false, false, false, 0, 0x3F, 0xFF) };
        assert_eq!(mode_sense(&lun(8), cut).unwrap().data_in, [43, 0, 0, 8]);
    }
}
