//! [`VirtualLun`]: the facts about a virtual volume that the SCSI emulation reports (size,
//! identity, limits, thin provisioning) and the stable NAA 6 device identifier derived from
//! the LV id and the system's identity.

use dve_fp_api::ids::LvId;
use serde::{Deserialize, Serialize};

/// The per-system part of every device identifier: an IEEE company id (OUI) and a serial
/// number of this DVE system, so that two systems never give two volumes the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SystemIdentity {
    /// IEEE company id (24 bits; higher bits are ignored).
    pub oui: u32,
    /// Serial number of the system (36 bits; higher bits are ignored).
    pub serial: u64,
}

/// The target port a command arrived through, for the target port designators of VPD page
/// 0x83.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TargetPort {
    /// The port name (WWPN) of the virtual target.
    pub wwpn: u64,
    /// Relative target port identifier (1 or more).
    pub relative_id: u16,
}

impl Default for TargetPort {
    fn default() -> TargetPort {
        TargetPort { wwpn: 0, relative_id: 1 }
    }
}

/// Default maximum transfer length in blocks (VPD 0xB0): 8 MiB of 512-byte blocks.
pub const DEFAULT_MAX_TRANSFER_BLOCKS: u32 = 16 * 1024;
/// Default maximum blocks in one UNMAP descriptor or command.
pub const DEFAULT_MAX_UNMAP_BLOCKS: u32 = 0x0040_0000;
/// Default maximum UNMAP block descriptors per command.
pub const DEFAULT_MAX_UNMAP_DESCRIPTORS: u32 = 256;
/// Default maximum blocks of one WRITE SAME.
pub const DEFAULT_MAX_WRITE_SAME_BLOCKS: u32 = 0x0040_0000;

/// A virtual volume as the SCSI emulation sees it through one target port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VirtualLun {
    /// The volume (`LvId.0`).
    pub lv: u32,
    /// Bytes per logical block.
    pub block_size: u32,
    /// Capacity in blocks.
    pub capacity_blocks: u64,
    /// The system part of the device identifier.
    pub system: SystemIdentity,
    /// T10 vendor identification (8 ASCII characters; longer is cut, shorter padded).
    pub vendor: String,
    /// Product identification (16 characters).
    pub product: String,
    /// Product revision level (4 characters).
    pub revision: String,
    /// Unit serial number (VPD 0x80), printable ASCII.
    pub serial: String,
    /// Thin provisioned: UNMAP and WRITE SAME with UNMAP are supported (VPD 0xB2, LBPME).
    pub thin: bool,
    /// Maximum blocks of one READ or WRITE (VPD 0xB0 MAXIMUM TRANSFER LENGTH).
    pub max_transfer_blocks: u32,
    /// Maximum blocks one UNMAP command may deallocate (VPD 0xB0 MAXIMUM UNMAP LBA COUNT).
    pub max_unmap_blocks: u32,
    /// Maximum block descriptors of one UNMAP (VPD 0xB0).
    pub max_unmap_descriptors: u32,
    /// Maximum blocks of one WRITE SAME (VPD 0xB0 MAXIMUM WRITE SAME LENGTH).
    pub max_write_same_blocks: u32,
    /// The target port the LUN is addressed through; the caller sets it per exposure.
    pub port: TargetPort,
}

impl VirtualLun {
    /// A fully provisioned volume with DVE's vendor strings, a serial number derived from
    /// the system and the LV id, and the default limits.
    pub fn new(lv: LvId, block_size: u32, capacity_blocks: u64, system: SystemIdentity) -> VirtualLun {
        VirtualLun {
            lv: lv.0,
            block_size,
            capacity_blocks,
            system,
            vendor: "DVE".to_string(),
            product: "Virtual Volume".to_string(),
            revision: "0001".to_string(),
            serial: format!("{:09X}{:08X}", system.serial & 0xf_ffff_ffff, lv.0),
            thin: false,
            max_transfer_blocks: DEFAULT_MAX_TRANSFER_BLOCKS,
            max_unmap_blocks: DEFAULT_MAX_UNMAP_BLOCKS,
            max_unmap_descriptors: DEFAULT_MAX_UNMAP_DESCRIPTORS,
            max_write_same_blocks: DEFAULT_MAX_WRITE_SAME_BLOCKS,
            port: TargetPort::default(),
        }
    }

    /// The volume id.
    pub fn lv_id(&self) -> LvId {
        LvId(self.lv)
    }

    /// The NAA IEEE Registered Extended (NAA 6) designator of the logical unit, 16 bytes:
    /// NAA `6h` (4 bits), the OUI (24 bits), the system serial (36 bits, the vendor specific
    /// identifier) and the LV id (64 bits, the vendor specific identifier extension). It
    /// depends only on the system identity and the LV id, so it is stable across engines,
    /// restarts and target ports.
    pub fn naa_designator(&self) -> [u8; 16] {
        naa6(self.system, self.lv)
    }

    /// The last LBA (0 for an empty volume).
    pub fn last_lba(&self) -> u64 {
        self.capacity_blocks.saturating_sub(1)
    }
}

/// The NAA 6 designator of volume `lv` on system `system` (see [`VirtualLun::naa_designator`]).
pub fn naa6(system: SystemIdentity, lv: u32) -> [u8; 16] {
    let value = (6u128 << 124)
        | (u128::from(system.oui & 0xff_ffff) << 100)
        | (u128::from(system.serial & 0xf_ffff_ffff) << 64)
        | u128::from(lv);
    value.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naa6_layout() {
        let system = SystemIdentity { oui: 0x00_1B_C5, serial: 0x1_2345_6789 };
        let d = naa6(system, 0xDEAD_BEEF);
        assert_eq!(d, [0x60, 0x01, 0xBC, 0x51, 0x23, 0x45, 0x67, 0x89, 0, 0, 0, 0, 0xDE, 0xAD, 0xBE, 0xEF]);
        // Higher bits than the fields hold are ignored, never spill into the NAA nibble.
        let wide = naa6(SystemIdentity { oui: u32::MAX, serial: u64::MAX }, 1);
        assert_eq!(wide[0] >> 4, 6);
        assert_ne!(naa6(system, 1), naa6(system, 2));
        assert_ne!(naa6(system, 1), naa6(SystemIdentity { serial: 1, ..system }, 1));
    }

    #[test]
    fn new_derives_serial_and_round_trips_through_json() {
        let lun = VirtualLun::new(LvId(7), 512, 2048, SystemIdentity { oui: 1, serial: 0xABC });
        assert_eq!(lun.serial, "000000ABC00000007");
        assert_eq!(lun.lv_id(), LvId(7));
        assert_eq!(lun.last_lba(), 2047);
        let json = serde_json::to_string(&lun).unwrap();
        assert_eq!(serde_json::from_str::<VirtualLun>(&json).unwrap(), lun);
    }
}
