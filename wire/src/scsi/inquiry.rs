//! INQUIRY data: the standard data and the VPD pages DVE serves (0x00 supported pages, 0x80
//! unit serial number, 0x83 device identification with its designators).

use crate::emit::WireEmit;
use crate::error::{Error, Result};
use crate::field::{array, be16, check_len, check_room, put16};

/// Length of standard INQUIRY data as this crate emits it.
pub const STANDARD_LEN: usize = 36;

/// VPD page codes.
pub mod vpd_page {
    /// Supported VPD pages.
    pub const SUPPORTED_PAGES: u8 = 0x00;
    /// Unit serial number.
    pub const UNIT_SERIAL_NUMBER: u8 = 0x80;
    /// Device identification.
    pub const DEVICE_IDENTIFICATION: u8 = 0x83;
}

/// Peripheral device type of a direct-access block device.
pub const DEVICE_TYPE_DISK: u8 = 0x00;
/// Peripheral qualifier + type byte meaning "no logical unit here" (qualifier 3, type 0x1F).
pub const NO_LUN: u8 = 0x7F;

/// Standard INQUIRY data (the first 36 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StandardInquiry {
    /// Peripheral qualifier (3 bits) and device type (5 bits), byte 0.
    pub peripheral: u8,
    /// RMB (removable medium) in bit 7 of byte 1.
    pub removable: bool,
    /// VERSION (6 = SPC-4).
    pub version: u8,
    /// Byte 3: NORMACA, HISUP and response data format (2).
    pub flags3: u8,
    /// Byte 5: SCCS, ACC, TPGS, 3PC, PROTECT.
    pub flags5: u8,
    /// Byte 6: ENCSERV, MULTIP...
    pub flags6: u8,
    /// Byte 7: CMDQUE (0x02)...
    pub flags7: u8,
    /// T10 vendor identification (ASCII, space padded).
    pub vendor: [u8; 8],
    /// Product identification.
    pub product: [u8; 16],
    /// Product revision level.
    pub revision: [u8; 4],
}

/// Space-pads an ASCII string into a fixed field (truncating if longer).
pub fn ascii_field<const N: usize>(s: &str) -> [u8; N] {
    let mut f = [b' '; N];
    for (d, s) in f.iter_mut().zip(s.bytes()) {
        *d = s;
    }
    f
}

impl StandardInquiry {
    /// Standard data of an SPC-4 disk with command queuing.
    pub fn disk(vendor: &str, product: &str, revision: &str) -> StandardInquiry {
        StandardInquiry {
            peripheral: DEVICE_TYPE_DISK,
            removable: false,
            version: 0x06,
            flags3: 0x12,
            flags5: 0,
            flags6: 0,
            flags7: 0x02,
            vendor: ascii_field(vendor),
            product: ascii_field(product),
            revision: ascii_field(revision),
        }
    }

    /// Parses standard INQUIRY data (at least 36 bytes; more are allowed and ignored).
    pub fn parse(b: &[u8]) -> Result<StandardInquiry> {
        check_len("standard INQUIRY data", b, STANDARD_LEN)?;
        if usize::from(b[4]) < STANDARD_LEN - 5 {
            return Err(Error::BadLength {
                what: "INQUIRY additional length",
                expected: STANDARD_LEN - 5,
                found: usize::from(b[4]),
            });
        }
        crate::field::check_zero("INQUIRY byte 1 reserved bits", u64::from(b[1] & 0x7f))?;
        Ok(StandardInquiry {
            peripheral: b[0],
            removable: b[1] & 0x80 != 0,
            version: b[2],
            flags3: b[3],
            flags5: b[5],
            flags6: b[6],
            flags7: b[7],
            vendor: array(b, 8),
            product: array(b, 16),
            revision: array(b, 32),
        })
    }
}

impl WireEmit for StandardInquiry {
    fn buffer_len(&self) -> usize {
        STANDARD_LEN
    }

    fn emit(&self, b: &mut [u8]) -> Result<usize> {
        check_room("standard INQUIRY data", b, STANDARD_LEN)?;
        b[0] = self.peripheral;
        b[1] = if self.removable { 0x80 } else { 0 };
        b[2] = self.version;
        b[3] = self.flags3;
        b[4] = (STANDARD_LEN - 5) as u8;
        b[5] = self.flags5;
        b[6] = self.flags6;
        b[7] = self.flags7;
        b[8..16].copy_from_slice(&self.vendor);
        b[16..32].copy_from_slice(&self.product);
        b[32..36].copy_from_slice(&self.revision);
        Ok(STANDARD_LEN)
    }
}

/// Designator types of the device identification page.
pub mod designator_type {
    /// T10 vendor id based.
    pub const T10_VENDOR_ID: u8 = 0x1;
    /// EUI-64 based.
    pub const EUI64: u8 = 0x2;
    /// NAA.
    pub const NAA: u8 = 0x3;
    /// Relative target port identifier.
    pub const RELATIVE_TARGET_PORT: u8 = 0x4;
    /// Target port group.
    pub const TARGET_PORT_GROUP: u8 = 0x5;
}

/// Code sets of a designator.
pub mod code_set {
    /// Binary.
    pub const BINARY: u8 = 0x1;
    /// ASCII.
    pub const ASCII: u8 = 0x2;
}

/// One designation descriptor of VPD page 0x83.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Designator<'a> {
    /// Protocol identifier (4 bits; 0 = FCP), meaningful when PIV is set.
    pub protocol_id: u8,
    /// Code set (4 bits, see [`code_set`]).
    pub code_set: u8,
    /// PIV: protocol identifier valid.
    pub piv: bool,
    /// Association (2 bits: 0 LU, 1 target port, 2 target device).
    pub association: u8,
    /// Designator type (4 bits, see [`designator_type`]).
    pub designator_type: u8,
    /// The designator.
    pub designator: &'a [u8],
}

impl<'a> Designator<'a> {
    fn parse(d: &'a [u8]) -> Result<(Designator<'a>, &'a [u8])> {
        check_len("designation descriptor header", d, 4)?;
        crate::field::check_zero("designation descriptor byte 1 bit 6", u64::from(d[1] & 0x40))?;
        crate::field::check_zero("designation descriptor reserved byte", u64::from(d[2]))?;
        let len = usize::from(d[3]);
        check_len("designator", d, 4 + len)?;
        Ok((
            Designator {
                protocol_id: d[0] >> 4,
                code_set: d[0] & 0x0f,
                piv: d[1] & 0x80 != 0,
                association: (d[1] >> 4) & 0x3,
                designator_type: d[1] & 0x0f,
                designator: &d[4..4 + len],
            },
            &d[4 + len..],
        ))
    }

    fn buffer_len(&self) -> usize {
        4 + self.designator.len()
    }

    fn emit(&self, b: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        check_room("designation descriptor", b, len)?;
        if self.designator.len() > 255
            || self.protocol_id > 0xf
            || self.code_set > 0xf
            || self.association > 3
            || self.designator_type > 0xf
        {
            return Err(Error::ValueTooLarge {
                field: "designation descriptor field",
                value: self.designator.len() as u64,
            });
        }
        b[0] = self.protocol_id << 4 | self.code_set;
        b[1] = u8::from(self.piv) << 7 | self.association << 4 | self.designator_type;
        b[2] = 0;
        b[3] = self.designator.len() as u8;
        b[4..len].copy_from_slice(self.designator);
        Ok(len)
    }
}

/// The designators of a device identification page, on the wire or to emit.
#[derive(Debug, Clone, Copy)]
pub enum Designators<'a> {
    /// Page bytes after the header, validated by [`VpdRepr::parse`].
    Wire(&'a [u8]),
    /// Designators to emit.
    List(&'a [Designator<'a>]),
}

impl<'a> Designators<'a> {
    /// Iterates over the designators.
    pub fn iter(&self) -> impl Iterator<Item = Designator<'a>> + 'a {
        let (mut wire, list): (&'a [u8], &'a [Designator<'a>]) = match *self {
            Designators::Wire(w) => (w, &[]),
            Designators::List(l) => (&[], l),
        };
        let from_wire = core::iter::from_fn(move || {
            if wire.is_empty() {
                return None;
            }
            let (d, rest) = Designator::parse(wire).ok()?;
            wire = rest;
            Some(d)
        });
        from_wire.chain(list.iter().copied())
    }

    fn wire_len(&self) -> usize {
        match self {
            Designators::Wire(w) => w.len(),
            Designators::List(l) => l.iter().map(Designator::buffer_len).sum(),
        }
    }
}

impl PartialEq for Designators<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Designators<'_> {}

/// A VPD page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VpdPage<'a> {
    /// Supported VPD pages (0x00): the page codes, ascending.
    SupportedPages(&'a [u8]),
    /// Unit serial number (0x80): ASCII.
    UnitSerialNumber(&'a [u8]),
    /// Device identification (0x83).
    DeviceIdentification(Designators<'a>),
}

/// A VPD page with its peripheral byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VpdRepr<'a> {
    /// Peripheral qualifier and device type.
    pub peripheral: u8,
    /// The page.
    pub page: VpdPage<'a>,
}

impl<'a> VpdRepr<'a> {
    /// The page code.
    pub fn page_code(&self) -> u8 {
        match self.page {
            VpdPage::SupportedPages(_) => vpd_page::SUPPORTED_PAGES,
            VpdPage::UnitSerialNumber(_) => vpd_page::UNIT_SERIAL_NUMBER,
            VpdPage::DeviceIdentification(_) => vpd_page::DEVICE_IDENTIFICATION,
        }
    }

    /// Parses a VPD page; the page length must fit in `b`, trailing bytes are ignored.
    pub fn parse(b: &'a [u8]) -> Result<VpdRepr<'a>> {
        check_len("VPD page header", b, 4)?;
        let len = usize::from(be16(b, 2));
        check_len("VPD page", b, 4 + len)?;
        let body = &b[4..4 + len];
        let page = match b[1] {
            vpd_page::SUPPORTED_PAGES => VpdPage::SupportedPages(body),
            vpd_page::UNIT_SERIAL_NUMBER => VpdPage::UnitSerialNumber(body),
            vpd_page::DEVICE_IDENTIFICATION => {
                let mut rest = body;
                while !rest.is_empty() {
                    rest = Designator::parse(rest)?.1;
                }
                VpdPage::DeviceIdentification(Designators::Wire(body))
            }
            other => return Err(Error::Unsupported { field: "VPD page code", value: u64::from(other) }),
        };
        Ok(VpdRepr { peripheral: b[0], page })
    }
}

impl WireEmit for VpdRepr<'_> {
    fn buffer_len(&self) -> usize {
        4 + match self.page {
            VpdPage::SupportedPages(p) | VpdPage::UnitSerialNumber(p) => p.len(),
            VpdPage::DeviceIdentification(d) => d.wire_len(),
        }
    }

    fn emit(&self, b: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        check_room("VPD page", b, len)?;
        let body_len = u16::try_from(len - 4)
            .map_err(|_| Error::ValueTooLarge { field: "VPD page length", value: (len - 4) as u64 })?;
        b[0] = self.peripheral;
        b[1] = self.page_code();
        put16(b, 2, body_len);
        match self.page {
            VpdPage::SupportedPages(p) | VpdPage::UnitSerialNumber(p) => b[4..len].copy_from_slice(p),
            VpdPage::DeviceIdentification(Designators::Wire(w)) => b[4..len].copy_from_slice(w),
            VpdPage::DeviceIdentification(Designators::List(l)) => {
                let mut at = 4;
                for d in l {
                    at += d.emit(&mut b[at..])?;
                }
            }
        }
        Ok(len)
    }
}
