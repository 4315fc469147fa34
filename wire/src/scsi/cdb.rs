//! SCSI command descriptor blocks: [`Cdb`] parses and builds every command DVE handles, and
//! [`RwCdb`] is the in-place view of READ/WRITE 6/10/16 the fast path uses to rewrite LBA and
//! transfer length without decoding the rest.

use super::{SA_READ_CAPACITY_16, opcode as op};
use crate::emit::WireEmit;
use crate::error::{Error, Result};
use crate::field::{
    be16, be24, be32, be64, check_room, check_zero, check_zero_bytes, put16, put24, put32, put64,
};

/// Fields of a 10-byte READ, WRITE, SYNCHRONIZE CACHE or WRITE SAME CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lba10 {
    /// Byte 1: RDPROTECT/WRPROTECT, DPO, FUA, IMMED, UNMAP... as on the wire.
    pub flags: u8,
    /// Logical block address.
    pub lba: u32,
    /// Group number (low 6 bits of byte 6).
    pub group: u8,
    /// Transfer length (or number of blocks) in blocks.
    pub length: u16,
    /// Control byte.
    pub control: u8,
}

/// Fields of a 16-byte READ, WRITE, SYNCHRONIZE CACHE or WRITE SAME CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lba16 {
    /// Byte 1 as on the wire.
    pub flags: u8,
    /// Logical block address.
    pub lba: u64,
    /// Transfer length (or number of blocks) in blocks.
    pub length: u32,
    /// Group number (low 6 bits of byte 14).
    pub group: u8,
    /// Control byte.
    pub control: u8,
}

/// Fields of READ(6)/WRITE(6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lba6 {
    /// Logical block address (21 bits).
    pub lba: u32,
    /// Transfer length; 0 means 256 blocks.
    pub length: u8,
    /// Control byte.
    pub control: u8,
}

/// A parsed SCSI CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cdb {
    /// TEST UNIT READY.
    TestUnitReady {
        /// Control byte.
        control: u8,
    },
    /// REQUEST SENSE.
    RequestSense {
        /// DESC: descriptor-format sense wanted.
        desc: bool,
        /// Allocation length.
        allocation_length: u8,
        /// Control byte.
        control: u8,
    },
    /// READ(6).
    Read6(Lba6),
    /// WRITE(6).
    Write6(Lba6),
    /// READ(10).
    Read10(Lba10),
    /// WRITE(10).
    Write10(Lba10),
    /// READ(16).
    Read16(Lba16),
    /// WRITE(16).
    Write16(Lba16),
    /// INQUIRY.
    Inquiry {
        /// EVPD: a VPD page is wanted.
        evpd: bool,
        /// VPD page code.
        page_code: u8,
        /// Allocation length.
        allocation_length: u16,
        /// Control byte.
        control: u8,
    },
    /// READ CAPACITY(10).
    ReadCapacity10 {
        /// Control byte.
        control: u8,
    },
    /// READ CAPACITY(16) (SERVICE ACTION IN(16), service action 0x10).
    ReadCapacity16 {
        /// Allocation length.
        allocation_length: u32,
        /// Control byte.
        control: u8,
    },
    /// REPORT LUNS.
    ReportLuns {
        /// SELECT REPORT.
        select_report: u8,
        /// Allocation length.
        allocation_length: u32,
        /// Control byte.
        control: u8,
    },
    /// MODE SENSE(6).
    ModeSense6 {
        /// DBD: disable block descriptors.
        dbd: bool,
        /// Page control (2 bits).
        page_control: u8,
        /// Page code (6 bits).
        page_code: u8,
        /// Subpage code.
        subpage_code: u8,
        /// Allocation length.
        allocation_length: u8,
        /// Control byte.
        control: u8,
    },
    /// MODE SENSE(10).
    ModeSense10 {
        /// LLBAA: long LBA block descriptors accepted.
        llbaa: bool,
        /// DBD.
        dbd: bool,
        /// Page control (2 bits).
        page_control: u8,
        /// Page code (6 bits).
        page_code: u8,
        /// Subpage code.
        subpage_code: u8,
        /// Allocation length.
        allocation_length: u16,
        /// Control byte.
        control: u8,
    },
    /// SYNCHRONIZE CACHE(10).
    SynchronizeCache10(Lba10),
    /// SYNCHRONIZE CACHE(16).
    SynchronizeCache16(Lba16),
    /// RESERVE(6).
    Reserve6 {
        /// Control byte.
        control: u8,
    },
    /// RELEASE(6).
    Release6 {
        /// Control byte.
        control: u8,
    },
    /// RESERVE(10).
    Reserve10(Reserve10Fields),
    /// RELEASE(10).
    Release10(Reserve10Fields),
    /// PERSISTENT RESERVE IN.
    PersistentReserveIn {
        /// Service action (5 bits).
        service_action: u8,
        /// Allocation length.
        allocation_length: u16,
        /// Control byte.
        control: u8,
    },
    /// PERSISTENT RESERVE OUT.
    PersistentReserveOut {
        /// Service action (5 bits).
        service_action: u8,
        /// Scope (4 bits).
        scope: u8,
        /// Reservation type (4 bits).
        pr_type: u8,
        /// Parameter list length.
        parameter_list_length: u32,
        /// Control byte.
        control: u8,
    },
    /// UNMAP.
    Unmap {
        /// ANCHOR.
        anchor: bool,
        /// Group number (6 bits).
        group: u8,
        /// Parameter list length.
        parameter_list_length: u16,
        /// Control byte.
        control: u8,
    },
    /// WRITE SAME(10).
    WriteSame10(Lba10),
    /// WRITE SAME(16).
    WriteSame16(Lba16),
}

/// Fields of RESERVE(10)/RELEASE(10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Reserve10Fields {
    /// Byte 1 (3RDPTY, LONGID) as on the wire.
    pub flags: u8,
    /// Third-party device id.
    pub third_party_id: u8,
    /// Parameter list length.
    pub parameter_list_length: u16,
    /// Control byte.
    pub control: u8,
}

/// Data transfer direction of a command, from the initiator's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataDirection {
    /// No data.
    None,
    /// Data from target to initiator.
    Read,
    /// Data from initiator to target.
    Write,
}

fn exact_len(opcode: u8, cdb: &[u8], expected: usize) -> Result<&[u8]> {
    if cdb.len() < expected {
        return Err(Error::CdbLength { opcode, expected, found: cdb.len() });
    }
    Ok(&cdb[..expected])
}

fn parse_lba10(c: &[u8]) -> Result<Lba10> {
    check_zero("CDB group byte reserved bits", u64::from(c[6] & 0xc0))?;
    Ok(Lba10 { flags: c[1], lba: be32(c, 2), group: c[6], length: be16(c, 7), control: c[9] })
}

fn parse_lba16(c: &[u8]) -> Result<Lba16> {
    check_zero("CDB group byte reserved bits", u64::from(c[14] & 0xc0))?;
    Ok(Lba16 { flags: c[1], lba: be64(c, 2), length: be32(c, 10), group: c[14], control: c[15] })
}

fn parse_lba6(c: &[u8]) -> Result<Lba6> {
    check_zero("READ/WRITE(6) reserved bits", u64::from(c[1] & 0xe0))?;
    Ok(Lba6 { lba: be24(c, 1) & 0x1f_ffff, length: c[4], control: c[5] })
}

impl Cdb {
    /// Parses a CDB. `cdb` may be longer than the command (FCP carries 16 bytes); bytes past
    /// the length the operation code implies are ignored.
    pub fn parse(cdb: &[u8]) -> Result<Cdb> {
        let Some(&opcode) = cdb.first() else {
            return Err(Error::CdbLength { opcode: 0, expected: 6, found: 0 });
        };
        let Some(len) = super::cdb_len(opcode) else { return Err(Error::UnknownOpcode(opcode)) };
        let c = exact_len(opcode, cdb, len)?;
        let control = c[len - 1];
        let zero = |field: &'static str, range: core::ops::Range<usize>| check_zero_bytes(field, &c[range]);
        Ok(match opcode {
            op::TEST_UNIT_READY => {
                zero("TEST UNIT READY reserved", 1..5)?;
                Cdb::TestUnitReady { control }
            }
            op::REQUEST_SENSE => {
                check_zero("REQUEST SENSE byte 1 reserved bits", u64::from(c[1] & 0xfe))?;
                zero("REQUEST SENSE reserved", 2..4)?;
                Cdb::RequestSense { desc: c[1] & 1 != 0, allocation_length: c[4], control }
            }
            op::READ_6 => Cdb::Read6(parse_lba6(c)?),
            op::WRITE_6 => Cdb::Write6(parse_lba6(c)?),
            op::INQUIRY => {
                check_zero("INQUIRY byte 1 reserved bits", u64::from(c[1] & 0xfe))?;
                let evpd = c[1] & 1 != 0;
                if !evpd {
                    check_zero("INQUIRY page code without EVPD", u64::from(c[2]))?;
                }
                Cdb::Inquiry { evpd, page_code: c[2], allocation_length: be16(c, 3), control }
            }
            op::RESERVE_6 | op::RELEASE_6 => {
                zero("RESERVE/RELEASE(6) reserved", 1..5)?;
                if opcode == op::RESERVE_6 { Cdb::Reserve6 { control } } else { Cdb::Release6 { control } }
            }
            op::MODE_SENSE_6 => {
                check_zero("MODE SENSE(6) byte 1 reserved bits", u64::from(c[1] & 0xf7))?;
                Cdb::ModeSense6 {
                    dbd: c[1] & 0x08 != 0,
                    page_control: c[2] >> 6,
                    page_code: c[2] & 0x3f,
                    subpage_code: c[3],
                    allocation_length: c[4],
                    control,
                }
            }
            op::READ_CAPACITY_10 => {
                zero("READ CAPACITY(10) reserved/obsolete", 1..9)?;
                Cdb::ReadCapacity10 { control }
            }
            op::READ_10 => Cdb::Read10(parse_lba10(c)?),
            op::WRITE_10 => Cdb::Write10(parse_lba10(c)?),
            op::SYNCHRONIZE_CACHE_10 => Cdb::SynchronizeCache10(parse_lba10(c)?),
            op::WRITE_SAME_10 => Cdb::WriteSame10(parse_lba10(c)?),
            op::UNMAP => {
                check_zero("UNMAP byte 1 reserved bits", u64::from(c[1] & 0xfe))?;
                zero("UNMAP reserved", 2..6)?;
                check_zero("UNMAP group reserved bits", u64::from(c[6] & 0xc0))?;
                Cdb::Unmap { anchor: c[1] & 1 != 0, group: c[6], parameter_list_length: be16(c, 7), control }
            }
            op::RESERVE_10 | op::RELEASE_10 => {
                zero("RESERVE/RELEASE(10) reserved", 3..7)?;
                let f = Reserve10Fields {
                    flags: c[1],
                    third_party_id: c[2],
                    parameter_list_length: be16(c, 7),
                    control,
                };
                if opcode == op::RESERVE_10 { Cdb::Reserve10(f) } else { Cdb::Release10(f) }
            }
            op::MODE_SENSE_10 => {
                check_zero("MODE SENSE(10) byte 1 reserved bits", u64::from(c[1] & 0xe7))?;
                zero("MODE SENSE(10) reserved", 4..7)?;
                Cdb::ModeSense10 {
                    llbaa: c[1] & 0x10 != 0,
                    dbd: c[1] & 0x08 != 0,
                    page_control: c[2] >> 6,
                    page_code: c[2] & 0x3f,
                    subpage_code: c[3],
                    allocation_length: be16(c, 7),
                    control,
                }
            }
            op::PERSISTENT_RESERVE_IN => {
                check_zero("PERSISTENT RESERVE IN byte 1 reserved bits", u64::from(c[1] & 0xe0))?;
                zero("PERSISTENT RESERVE IN reserved", 2..7)?;
                Cdb::PersistentReserveIn { service_action: c[1], allocation_length: be16(c, 7), control }
            }
            op::PERSISTENT_RESERVE_OUT => {
                check_zero("PERSISTENT RESERVE OUT byte 1 reserved bits", u64::from(c[1] & 0xe0))?;
                zero("PERSISTENT RESERVE OUT reserved", 3..5)?;
                Cdb::PersistentReserveOut {
                    service_action: c[1],
                    scope: c[2] >> 4,
                    pr_type: c[2] & 0x0f,
                    parameter_list_length: be32(c, 5),
                    control,
                }
            }
            op::READ_16 => Cdb::Read16(parse_lba16(c)?),
            op::WRITE_16 => Cdb::Write16(parse_lba16(c)?),
            op::SYNCHRONIZE_CACHE_16 => Cdb::SynchronizeCache16(parse_lba16(c)?),
            op::WRITE_SAME_16 => Cdb::WriteSame16(parse_lba16(c)?),
            op::SERVICE_ACTION_IN_16 => {
                if c[1] & 0x1f != SA_READ_CAPACITY_16 {
                    return Err(Error::Unsupported {
                        field: "SERVICE ACTION IN(16) service action",
                        value: u64::from(c[1]),
                    });
                }
                check_zero("READ CAPACITY(16) byte 1 reserved bits", u64::from(c[1] & 0xe0))?;
                zero("READ CAPACITY(16) LBA (obsolete)", 2..10)?;
                check_zero("READ CAPACITY(16) byte 14", u64::from(c[14]))?;
                Cdb::ReadCapacity16 { allocation_length: be32(c, 10), control }
            }
            op::REPORT_LUNS => {
                zero("REPORT LUNS reserved byte 1", 1..2)?;
                zero("REPORT LUNS reserved", 3..6)?;
                zero("REPORT LUNS reserved byte 10", 10..11)?;
                Cdb::ReportLuns { select_report: c[2], allocation_length: be32(c, 6), control }
            }
            other => return Err(Error::UnknownOpcode(other)),
        })
    }

    /// The operation code.
    pub fn opcode(&self) -> u8 {
        match self {
            Cdb::TestUnitReady { .. } => op::TEST_UNIT_READY,
            Cdb::RequestSense { .. } => op::REQUEST_SENSE,
            Cdb::Read6(_) => op::READ_6,
            Cdb::Write6(_) => op::WRITE_6,
            Cdb::Read10(_) => op::READ_10,
            Cdb::Write10(_) => op::WRITE_10,
            Cdb::Read16(_) => op::READ_16,
            Cdb::Write16(_) => op::WRITE_16,
            Cdb::Inquiry { .. } => op::INQUIRY,
            Cdb::ReadCapacity10 { .. } => op::READ_CAPACITY_10,
            Cdb::ReadCapacity16 { .. } => op::SERVICE_ACTION_IN_16,
            Cdb::ReportLuns { .. } => op::REPORT_LUNS,
            Cdb::ModeSense6 { .. } => op::MODE_SENSE_6,
            Cdb::ModeSense10 { .. } => op::MODE_SENSE_10,
            Cdb::SynchronizeCache10(_) => op::SYNCHRONIZE_CACHE_10,
            Cdb::SynchronizeCache16(_) => op::SYNCHRONIZE_CACHE_16,
            Cdb::Reserve6 { .. } => op::RESERVE_6,
            Cdb::Release6 { .. } => op::RELEASE_6,
            Cdb::Reserve10(_) => op::RESERVE_10,
            Cdb::Release10(_) => op::RELEASE_10,
            Cdb::PersistentReserveIn { .. } => op::PERSISTENT_RESERVE_IN,
            Cdb::PersistentReserveOut { .. } => op::PERSISTENT_RESERVE_OUT,
            Cdb::Unmap { .. } => op::UNMAP,
            Cdb::WriteSame10(_) => op::WRITE_SAME_10,
            Cdb::WriteSame16(_) => op::WRITE_SAME_16,
        }
    }

    /// Logical block address and transfer length in blocks of a READ or WRITE (length 0 of
    /// a 6-byte CDB means 256 blocks).
    pub fn read_write_extent(&self) -> Option<(u64, u32)> {
        match *self {
            Cdb::Read6(c) | Cdb::Write6(c) => {
                Some((u64::from(c.lba), if c.length == 0 { 256 } else { u32::from(c.length) }))
            }
            Cdb::Read10(c) | Cdb::Write10(c) => Some((u64::from(c.lba), u32::from(c.length))),
            Cdb::Read16(c) | Cdb::Write16(c) => Some((c.lba, c.length)),
            _ => None,
        }
    }

    /// Direction of the data phase.
    pub fn data_direction(&self) -> DataDirection {
        match self {
            Cdb::Read6(_) | Cdb::Read10(_) | Cdb::Read16(_) => DataDirection::Read,
            Cdb::Write6(_)
            | Cdb::Write10(_)
            | Cdb::Write16(_)
            | Cdb::WriteSame10(_)
            | Cdb::WriteSame16(_) => DataDirection::Write,
            Cdb::Inquiry { .. }
            | Cdb::ReadCapacity10 { .. }
            | Cdb::ReadCapacity16 { .. }
            | Cdb::ReportLuns { .. }
            | Cdb::ModeSense6 { .. }
            | Cdb::ModeSense10 { .. }
            | Cdb::RequestSense { .. }
            | Cdb::PersistentReserveIn { .. } => DataDirection::Read,
            Cdb::PersistentReserveOut { .. } | Cdb::Unmap { .. } => DataDirection::Write,
            Cdb::Reserve10(f) | Cdb::Release10(f) if f.parameter_list_length > 0 => DataDirection::Write,
            _ => DataDirection::None,
        }
    }
}

fn emit_lba10(b: &mut [u8], opcode: u8, f: &Lba10) -> Result<()> {
    if f.group > 0x3f {
        return Err(Error::ValueTooLarge { field: "CDB group number", value: u64::from(f.group) });
    }
    b[0] = opcode;
    b[1] = f.flags;
    put32(b, 2, f.lba);
    b[6] = f.group;
    put16(b, 7, f.length);
    b[9] = f.control;
    Ok(())
}

fn emit_lba16(b: &mut [u8], opcode: u8, f: &Lba16) -> Result<()> {
    if f.group > 0x3f {
        return Err(Error::ValueTooLarge { field: "CDB group number", value: u64::from(f.group) });
    }
    b[0] = opcode;
    b[1] = f.flags;
    put64(b, 2, f.lba);
    put32(b, 10, f.length);
    b[14] = f.group;
    b[15] = f.control;
    Ok(())
}

impl WireEmit for Cdb {
    fn buffer_len(&self) -> usize {
        super::cdb_len(self.opcode()).unwrap_or(16)
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        check_room("CDB", buf, len)?;
        let b = &mut buf[..len];
        b.fill(0);
        let opcode = self.opcode();
        b[0] = opcode;
        let too_large = |field: &'static str, v: u64, max: u64| {
            if v > max { Err(Error::ValueTooLarge { field, value: v }) } else { Ok(()) }
        };
        match *self {
            Cdb::TestUnitReady { control }
            | Cdb::ReadCapacity10 { control }
            | Cdb::Reserve6 { control }
            | Cdb::Release6 { control } => b[len - 1] = control,
            Cdb::RequestSense { desc, allocation_length, control } => {
                b[1] = u8::from(desc);
                b[4] = allocation_length;
                b[5] = control;
            }
            Cdb::Read6(f) | Cdb::Write6(f) => {
                too_large("READ/WRITE(6) LBA", u64::from(f.lba), 0x1f_ffff)?;
                put24(b, 1, f.lba);
                b[4] = f.length;
                b[5] = f.control;
            }
            Cdb::Read10(f) | Cdb::Write10(f) | Cdb::SynchronizeCache10(f) | Cdb::WriteSame10(f) => {
                emit_lba10(b, opcode, &f)?
            }
            Cdb::Read16(f) | Cdb::Write16(f) | Cdb::SynchronizeCache16(f) | Cdb::WriteSame16(f) => {
                emit_lba16(b, opcode, &f)?
            }
            Cdb::Inquiry { evpd, page_code, allocation_length, control } => {
                if !evpd {
                    too_large("INQUIRY page code without EVPD", u64::from(page_code), 0)?;
                }
                b[1] = u8::from(evpd);
                b[2] = page_code;
                put16(b, 3, allocation_length);
                b[5] = control;
            }
            Cdb::ReadCapacity16 { allocation_length, control } => {
                b[1] = SA_READ_CAPACITY_16;
                put32(b, 10, allocation_length);
                b[15] = control;
            }
            Cdb::ReportLuns { select_report, allocation_length, control } => {
                b[2] = select_report;
                put32(b, 6, allocation_length);
                b[11] = control;
            }
            Cdb::ModeSense6 { dbd, page_control, page_code, subpage_code, allocation_length, control } => {
                too_large("MODE SENSE page control", u64::from(page_control), 3)?;
                too_large("MODE SENSE page code", u64::from(page_code), 0x3f)?;
                b[1] = if dbd { 0x08 } else { 0 };
                b[2] = page_control << 6 | page_code;
                b[3] = subpage_code;
                b[4] = allocation_length;
                b[5] = control;
            }
            Cdb::ModeSense10 {
                llbaa,
                dbd,
                page_control,
                page_code,
                subpage_code,
                allocation_length,
                control,
            } => {
                too_large("MODE SENSE page control", u64::from(page_control), 3)?;
                too_large("MODE SENSE page code", u64::from(page_code), 0x3f)?;
                b[1] = if dbd { 0x08 } else { 0 } | if llbaa { 0x10 } else { 0 };
                b[2] = page_control << 6 | page_code;
                b[3] = subpage_code;
                put16(b, 7, allocation_length);
                b[9] = control;
            }
            Cdb::Reserve10(f) | Cdb::Release10(f) => {
                b[1] = f.flags;
                b[2] = f.third_party_id;
                put16(b, 7, f.parameter_list_length);
                b[9] = f.control;
            }
            Cdb::PersistentReserveIn { service_action, allocation_length, control } => {
                too_large("PERSISTENT RESERVE IN service action", u64::from(service_action), 0x1f)?;
                b[1] = service_action;
                put16(b, 7, allocation_length);
                b[9] = control;
            }
            Cdb::PersistentReserveOut { service_action, scope, pr_type, parameter_list_length, control } => {
                too_large("PERSISTENT RESERVE OUT service action", u64::from(service_action), 0x1f)?;
                too_large("PERSISTENT RESERVE OUT scope", u64::from(scope), 0x0f)?;
                too_large("PERSISTENT RESERVE OUT type", u64::from(pr_type), 0x0f)?;
                b[1] = service_action;
                b[2] = scope << 4 | pr_type;
                put32(b, 5, parameter_list_length);
                b[9] = control;
            }
            Cdb::Unmap { anchor, group, parameter_list_length, control } => {
                too_large("UNMAP group number", u64::from(group), 0x3f)?;
                b[1] = u8::from(anchor);
                b[6] = group;
                put16(b, 7, parameter_list_length);
                b[9] = control;
            }
        }
        Ok(len)
    }
}

/// An in-place view of a READ or WRITE CDB (6, 10 or 16 bytes) for rewriting LBA and length.
#[derive(Debug)]
pub struct RwCdb<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RwCdb<T> {
    /// Wraps a CDB whose opcode is READ or WRITE 6/10/16 and that is long enough for it.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        let Some(&opcode) = b.first() else {
            return Err(Error::CdbLength { opcode: 0, expected: 6, found: 0 });
        };
        let expected = match opcode {
            op::READ_6 | op::WRITE_6 => 6,
            op::READ_10 | op::WRITE_10 => 10,
            op::READ_16 | op::WRITE_16 => 16,
            other => return Err(Error::UnknownOpcode(other)),
        };
        exact_len(opcode, b, expected)?;
        Ok(RwCdb { buffer })
    }

    /// The operation code.
    pub fn opcode(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// Whether the command is a WRITE.
    pub fn is_write(&self) -> bool {
        matches!(self.opcode(), op::WRITE_6 | op::WRITE_10 | op::WRITE_16)
    }

    /// The logical block address.
    pub fn lba(&self) -> u64 {
        let b = self.buffer.as_ref();
        match self.opcode() {
            op::READ_6 | op::WRITE_6 => u64::from(be24(b, 1) & 0x1f_ffff),
            op::READ_10 | op::WRITE_10 => u64::from(be32(b, 2)),
            _ => be64(b, 2),
        }
    }

    /// The transfer length in blocks (256 for a 6-byte CDB's 0).
    pub fn transfer_length(&self) -> u32 {
        let b = self.buffer.as_ref();
        match self.opcode() {
            op::READ_6 | op::WRITE_6 => match b[4] {
                0 => 256,
                n => u32::from(n),
            },
            op::READ_10 | op::WRITE_10 => u32::from(be16(b, 7)),
            _ => be32(b, 10),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RwCdb<T> {
    /// Rewrites the LBA; fails if it does not fit the CDB's field.
    pub fn set_lba(&mut self, lba: u64) -> Result<()> {
        let opcode = self.opcode();
        let b = self.buffer.as_mut();
        match opcode {
            op::READ_6 | op::WRITE_6 => {
                if lba > 0x1f_ffff {
                    return Err(Error::ValueTooLarge { field: "READ/WRITE(6) LBA", value: lba });
                }
                put24(b, 1, lba as u32);
            }
            op::READ_10 | op::WRITE_10 => {
                let v = u32::try_from(lba)
                    .map_err(|_| Error::ValueTooLarge { field: "READ/WRITE(10) LBA", value: lba })?;
                put32(b, 2, v);
            }
            _ => put64(b, 2, lba),
        }
        Ok(())
    }

    /// Rewrites the transfer length; fails if it does not fit the CDB's field.
    pub fn set_transfer_length(&mut self, blocks: u32) -> Result<()> {
        let opcode = self.opcode();
        let b = self.buffer.as_mut();
        match opcode {
            op::READ_6 | op::WRITE_6 => match blocks {
                256 => b[4] = 0,
                1..=255 => b[4] = blocks as u8,
                _ => {
                    return Err(Error::ValueTooLarge {
                        field: "READ/WRITE(6) transfer length",
                        value: u64::from(blocks),
                    });
                }
            },
            op::READ_10 | op::WRITE_10 => {
                let v = u16::try_from(blocks).map_err(|_| Error::ValueTooLarge {
                    field: "READ/WRITE(10) transfer length",
                    value: u64::from(blocks),
                })?;
                put16(b, 7, v);
            }
            _ => put32(b, 10, blocks),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_cdb_names_opcode_and_lengths() {
        assert_eq!(
            Cdb::parse(&[op::READ_10, 0, 0]),
            Err(Error::CdbLength { opcode: op::READ_10, expected: 10, found: 3 })
        );
        assert_eq!(
            Cdb::parse(&[op::READ_16; 12]),
            Err(Error::CdbLength { opcode: op::READ_16, expected: 16, found: 12 })
        );
        assert_eq!(Cdb::parse(&[]), Err(Error::CdbLength { opcode: 0, expected: 6, found: 0 }));
        assert!(matches!(RwCdb::new_checked(&[op::WRITE_6, 0][..]), Err(Error::CdbLength { .. })));
    }

    #[test]
    fn unknown_and_unsupported_opcodes() {
        assert_eq!(Cdb::parse(&[0xC5; 16]), Err(Error::UnknownOpcode(0xC5)));
        assert_eq!(Cdb::parse(&[0x7F; 16]), Err(Error::UnknownOpcode(0x7F)));
        let mut sai = [0u8; 16];
        sai[0] = op::SERVICE_ACTION_IN_16;
        sai[1] = 0x11;
        assert!(matches!(Cdb::parse(&sai), Err(Error::Unsupported { .. })));
    }

    #[test]
    fn rw_cdb_rejects_values_that_do_not_fit() {
        let mut c = [0u8; 10];
        c[0] = op::READ_10;
        let mut v = RwCdb::new_checked(&mut c[..]).unwrap();
        assert!(matches!(v.set_lba(1 << 32), Err(Error::ValueTooLarge { .. })));
        assert!(matches!(v.set_transfer_length(1 << 16), Err(Error::ValueTooLarge { .. })));
        v.set_lba(0xdead_beef).unwrap();
        assert_eq!(v.lba(), 0xdead_beef);
    }
}
