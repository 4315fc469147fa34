//! INQUIRY: standard data and the VPD pages of a virtual LUN — 0x00 supported pages, 0x80
//! unit serial number, 0x83 device identification (the LU's NAA 6 designator, the target
//! port's name and relative port), 0xB0 block limits and, for thin volumes, 0xB2 logical
//! block provisioning. The first three are built with `dve-wire`; the SBC pages here.

use dve_wire::scsi::inquiry::{
    DEVICE_TYPE_DISK, Designator, Designators, StandardInquiry, VpdPage, VpdRepr, code_set, designator_type,
    vpd_page,
};

use super::lun::VirtualLun;
use super::outcome::{CmdResult, Failure, ScsiOutcome, emit_vec};

/// SBC VPD page codes.
pub mod sbc_vpd_page {
    /// Block limits.
    pub const BLOCK_LIMITS: u8 = 0xB0;
    /// Logical block provisioning.
    pub const LOGICAL_BLOCK_PROVISIONING: u8 = 0xB2;
}

/// Length of the block limits page (SBC-3: page length 3Ch).
pub const BLOCK_LIMITS_LEN: usize = 64;
/// Length of the logical block provisioning page (page length 4).
pub const LOGICAL_BLOCK_PROVISIONING_LEN: usize = 8;

/// The longest unit serial number reported (longer ones are cut).
const MAX_SERIAL_LEN: usize = 252;

/// The VPD pages `lun` supports, ascending.
pub fn supported_pages(lun: &VirtualLun) -> Vec<u8> {
    let mut pages = vec![
        vpd_page::SUPPORTED_PAGES,
        vpd_page::UNIT_SERIAL_NUMBER,
        vpd_page::DEVICE_IDENTIFICATION,
        sbc_vpd_page::BLOCK_LIMITS,
    ];
    if lun.thin {
        pages.push(sbc_vpd_page::LOGICAL_BLOCK_PROVISIONING);
    }
    pages
}

/// Standard INQUIRY data (36 bytes): an SPC-4 disk with command queuing.
pub fn standard_data(lun: &VirtualLun) -> StandardInquiry {
    StandardInquiry::disk(&lun.vendor, &lun.product, &lun.revision)
}

/// The block limits VPD page (SBC-3 6.5.3). WSNZ is set: WRITE SAME with zero blocks is
/// refused rather than meaning "to the end of the volume".
pub fn block_limits_page(lun: &VirtualLun) -> [u8; BLOCK_LIMITS_LEN] {
    let mut p = [0u8; BLOCK_LIMITS_LEN];
    p[0] = DEVICE_TYPE_DISK;
    p[1] = sbc_vpd_page::BLOCK_LIMITS;
    p[2..4].copy_from_slice(&((BLOCK_LIMITS_LEN - 4) as u16).to_be_bytes());
    p[4] = 0x01; // WSNZ
    p[8..12].copy_from_slice(&lun.max_transfer_blocks.to_be_bytes());
    if lun.thin {
        p[20..24].copy_from_slice(&lun.max_unmap_blocks.to_be_bytes());
        p[24..28].copy_from_slice(&lun.max_unmap_descriptors.to_be_bytes());
    }
    p[36..44].copy_from_slice(&u64::from(lun.max_write_same_blocks).to_be_bytes());
    p
}

/// The logical block provisioning VPD page (SBC-3 6.5.4) of a thin volume: LBPU (UNMAP),
/// LBPWS and LBPWS10 (WRITE SAME with UNMAP), LBPRZ (unmapped blocks read as zeros),
/// provisioning type thin.
pub fn logical_block_provisioning_page() -> [u8; LOGICAL_BLOCK_PROVISIONING_LEN] {
    [DEVICE_TYPE_DISK, sbc_vpd_page::LOGICAL_BLOCK_PROVISIONING, 0x00, 0x04, 0x00, 0xE4, 0x02, 0x00]
}

/// The device identification page's designators are built from these bytes.
struct Identifiers {
    naa: [u8; 16],
    port_name: [u8; 8],
    relative_port: [u8; 4],
}

impl Identifiers {
    fn new(lun: &VirtualLun) -> Identifiers {
        let rel = lun.port.relative_id.to_be_bytes();
        Identifiers {
            naa: lun.naa_designator(),
            port_name: lun.port.wwpn.to_be_bytes(),
            relative_port: [0, 0, rel[0], rel[1]],
        }
    }

    fn designators(&self) -> [Designator<'_>; 3] {
        [
            // The logical unit: NAA 6, association 0.
            Designator {
                protocol_id: 0,
                code_set: code_set::BINARY,
                piv: false,
                association: 0,
                designator_type: designator_type::NAA,
                designator: &self.naa,
            },
            // The target port: its FC port name (an NAA name), FCP protocol (0).
            Designator {
                protocol_id: 0,
                code_set: code_set::BINARY,
                piv: true,
                association: 1,
                designator_type: designator_type::NAA,
                designator: &self.port_name,
            },
            Designator {
                protocol_id: 0,
                code_set: code_set::BINARY,
                piv: true,
                association: 1,
                designator_type: designator_type::RELATIVE_TARGET_PORT,
                designator: &self.relative_port,
            },
        ]
    }
}

/// INQUIRY. EVPD=0 with a page code was already refused by the CDB parser (INVALID FIELD IN
/// CDB); an unsupported VPD page is INVALID FIELD IN CDB too.
pub(crate) fn inquiry(lun: &VirtualLun, evpd: bool, page_code: u8, allocation_length: u16) -> CmdResult {
    let data = if !evpd {
        emit_vec(&standard_data(lun))?
    } else {
        match page_code {
            vpd_page::SUPPORTED_PAGES => {
                let pages = supported_pages(lun);
                emit_vec(&VpdRepr { peripheral: DEVICE_TYPE_DISK, page: VpdPage::SupportedPages(&pages) })?
            }
            vpd_page::UNIT_SERIAL_NUMBER => {
                let serial = lun.serial.as_bytes();
                let serial = &serial[..serial.len().min(MAX_SERIAL_LEN)];
                emit_vec(&VpdRepr { peripheral: DEVICE_TYPE_DISK, page: VpdPage::UnitSerialNumber(serial) })?
            }
            vpd_page::DEVICE_IDENTIFICATION => {
                let ids = Identifiers::new(lun);
                let list = ids.designators();
                emit_vec(&VpdRepr {
                    peripheral: DEVICE_TYPE_DISK,
                    page: VpdPage::DeviceIdentification(Designators::List(&list)),
                })?
            }
            sbc_vpd_page::BLOCK_LIMITS => block_limits_page(lun).to_vec(),
            sbc_vpd_page::LOGICAL_BLOCK_PROVISIONING if lun.thin => {
                logical_block_provisioning_page().to_vec()
            }
            _ => return Err(Failure::INVALID_FIELD_IN_CDB),
        }
    };
    Ok(ScsiOutcome::with_data(data, usize::from(allocation_length)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scsi::lun::{SystemIdentity, TargetPort};
    use dve_fp_api::ids::LvId;

    fn lun(thin: bool) -> VirtualLun {
        let mut l = VirtualLun::new(LvId(0x42), 512, 1 << 20, SystemIdentity { oui: 0x123456, serial: 0x9 });
        l.thin = thin;
        l.port = TargetPort { wwpn: 0x5000_0000_0000_0001, relative_id: 2 };
        l
    }

    #[test]
    fn standard_inquiry_bytes() {
        let o = inquiry(&lun(false), false, 0, 255).unwrap();
        let d = &o.data_in;
        assert_eq!(d.len(), 36);
        assert_eq!(&d[..8], &[0x00, 0x00, 0x06, 0x12, 31, 0x00, 0x00, 0x02]);
        assert_eq!(&d[8..16], b"DVE     ");
        assert_eq!(&d[16..32], b"Virtual Volume  ");
        assert_eq!(&d[32..36], b"0001");
        let parsed = StandardInquiry::parse(d).unwrap();
        assert_eq!(parsed, standard_data(&lun(false)));
        assert_eq!(inquiry(&lun(false), false, 0, 5).unwrap().data_in, &d[..5], "cut to allocation length");
    }

    #[test]
    fn supported_pages_bytes() {
        let d = inquiry(&lun(false), true, 0x00, 255).unwrap().data_in;
        assert_eq!(d, [0x00, 0x00, 0x00, 0x04, 0x00, 0x80, 0x83, 0xB0]);
        let d = inquiry(&lun(true), true, 0x00, 255).unwrap().data_in;
        assert_eq!(d, [0x00, 0x00, 0x00, 0x05, 0x00, 0x80, 0x83, 0xB0, 0xB2]);
        assert_eq!(
            VpdRepr::parse(&d).unwrap().page,
            VpdPage::SupportedPages(&[0x00, 0x80, 0x83, 0xB0, 0xB2])
        );
    }

    #[test]
    fn serial_number_bytes() {
        let d = inquiry(&lun(false), true, 0x80, 255).unwrap().data_in;
        assert_eq!(&d[..4], &[0x00, 0x80, 0x00, 17]);
        assert_eq!(&d[4..], b"00000000900000042");
        assert_eq!(VpdRepr::parse(&d).unwrap().page, VpdPage::UnitSerialNumber(b"00000000900000042"));
    }

    #[test]
    fn device_identification_bytes() {
        let l = lun(false);
        let d = inquiry(&l, true, 0x83, 255).unwrap().data_in;
        let mut want = vec![0x00, 0x83, 0x00, 20 + 12 + 8];
        want.extend_from_slice(&[0x01, 0x03, 0x00, 16]);
        want.extend_from_slice(&l.naa_designator());
        want.extend_from_slice(&[0x01, 0x93, 0x00, 8]);
        want.extend_from_slice(&0x5000_0000_0000_0001u64.to_be_bytes());
        want.extend_from_slice(&[0x01, 0x94, 0x00, 4, 0, 0, 0, 2]);
        assert_eq!(d, want);
        assert_eq!(d[8] >> 4, 6, "NAA 6");
        let VpdPage::DeviceIdentification(ds) = VpdRepr::parse(&d).unwrap().page else { panic!("page") };
        let ds: Vec<_> = ds.iter().collect();
        assert_eq!(ds.len(), 3);
        assert_eq!(
            (ds[0].association, ds[0].designator_type, ds[0].designator),
            (0, 3, &l.naa_designator()[..])
        );
        assert!(ds[1].piv && ds[1].association == 1);
    }

    #[test]
    fn block_limits_bytes() {
        let d = inquiry(&lun(true), true, 0xB0, 255).unwrap().data_in;
        assert_eq!(d.len(), 64);
        assert_eq!(&d[..8], &[0x00, 0xB0, 0x00, 0x3C, 0x01, 0x00, 0x00, 0x00]);
        assert_eq!(&d[8..12], &16384u32.to_be_bytes());
        assert_eq!(&d[12..20], &[0; 8]);
        assert_eq!(&d[20..24], &0x0040_0000u32.to_be_bytes());
        assert_eq!(&d[24..28], &256u32.to_be_bytes());
        assert_eq!(&d[28..36], &[0; 8]);
        assert_eq!(&d[36..44], &0x0040_0000u64.to_be_bytes());
        assert_eq!(&d[44..], &[0; 20]);
        let thick = inquiry(&lun(false), true, 0xB0, 255).unwrap().data_in;
        assert_eq!(&thick[20..28], &[0; 8], "no UNMAP limits without UNMAP");
    }

    #[test]
    fn provisioning_page_only_when_thin() {
        let d = inquiry(&lun(true), true, 0xB2, 255).unwrap().data_in;
        assert_eq!(d, [0x00, 0xB2, 0x00, 0x04, 0x00, 0xE4, 0x02, 0x00]);
        assert_eq!(inquiry(&lun(false), true, 0xB2, 255), Err(Failure::INVALID_FIELD_IN_CDB));
        assert_eq!(inquiry(&lun(true), true, 0x81, 255), Err(Failure::INVALID_FIELD_IN_CDB));
    }
}
