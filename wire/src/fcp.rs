//! FCP-4 information units: FCP_CMND (LUN, task attribute, task management flags,
//! RDDATA/WRDATA, additional CDB, FCP_DL), FCP_XFER_RDY and FCP_RSP (residuals, response
//! information, sense). FCP_DATA is the bare payload, placed by the header's relative offset.

use crate::emit::WireEmit;
use crate::error::{Error, Result};
use crate::field::{array, be16, be32, check_len, check_room, check_zero, check_zero_bytes, put16, put32};

/// Length of an FCP_CMND without additional CDB bytes.
pub const CMND_BASE_LEN: usize = 32;
/// Length of an FCP_XFER_RDY.
pub const XFER_RDY_LEN: usize = 12;
/// Length of the fixed part of an FCP_RSP.
pub const RSP_BASE_LEN: usize = 24;

/// The SCSI task attribute of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskAttribute {
    /// SIMPLE.
    Simple = 0,
    /// HEAD OF QUEUE.
    HeadOfQueue = 1,
    /// ORDERED.
    Ordered = 2,
    /// ACA.
    Aca = 4,
}

impl TaskAttribute {
    fn from_bits(v: u8) -> Result<TaskAttribute> {
        match v {
            0 => Ok(TaskAttribute::Simple),
            1 => Ok(TaskAttribute::HeadOfQueue),
            2 => Ok(TaskAttribute::Ordered),
            4 => Ok(TaskAttribute::Aca),
            other => Err(Error::Reserved { field: "FCP_CMND task attribute", value: u64::from(other) }),
        }
    }
}

/// Task management flags of FCP_CMND byte 10.
pub mod tmf {
    /// ABORT TASK SET.
    pub const ABORT_TASK_SET: u8 = 0x02;
    /// CLEAR TASK SET.
    pub const CLEAR_TASK_SET: u8 = 0x04;
    /// LOGICAL UNIT RESET.
    pub const LOGICAL_UNIT_RESET: u8 = 0x10;
    /// TARGET RESET (obsolete in FCP-4, still sent).
    pub const TARGET_RESET: u8 = 0x20;
    /// CLEAR ACA.
    pub const CLEAR_ACA: u8 = 0x40;
}

/// An FCP_CMND: a SCSI command (or task management function) for one LUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FcpCmndRepr<'a> {
    /// The 8-byte SAM LUN.
    pub lun: [u8; 8],
    /// Command reference number.
    pub crn: u8,
    /// Task priority (4 bits).
    pub priority: u8,
    /// Task attribute.
    pub task_attribute: TaskAttribute,
    /// Task management flags (see [`tmf`]); zero for a SCSI command.
    pub task_management: u8,
    /// The target reads data from the initiator (a write).
    pub wrdata: bool,
    /// The target sends data to the initiator (a read).
    pub rddata: bool,
    /// The CDB: 16 bytes plus a multiple of 4 additional bytes.
    pub cdb: &'a [u8],
    /// Expected number of data bytes (FCP_DL).
    pub fcp_dl: u32,
}

/// Encodes a flat LUN number (0..16383) as an 8-byte SAM LUN (peripheral or flat addressing).
pub fn lun_from_index(index: u16) -> [u8; 8] {
    let mut lun = [0u8; 8];
    if index < 256 {
        lun[1] = index as u8;
    } else {
        lun[0] = 0x40 | ((index >> 8) as u8 & 0x3f);
        lun[1] = index as u8;
    }
    lun
}

/// Decodes the first level of an 8-byte SAM LUN (peripheral or flat addressing) into an
/// index; `None` for other addressing methods or multi-level LUNs.
pub fn lun_index(lun: &[u8; 8]) -> Option<u16> {
    if lun[2..].iter().any(|b| *b != 0) {
        return None;
    }
    match lun[0] >> 6 {
        0 if lun[0] == 0 => Some(u16::from(lun[1])),
        1 => Some((u16::from(lun[0] & 0x3f) << 8) | u16::from(lun[1])),
        _ => None,
    }
}

impl<'a> FcpCmndRepr<'a> {
    /// Parses an FCP_CMND payload; its length must match the additional CDB length exactly.
    pub fn parse(payload: &'a [u8]) -> Result<FcpCmndRepr<'a>> {
        check_len("FCP_CMND", payload, CMND_BASE_LEN)?;
        let add_len = usize::from(payload[11] >> 2) * 4;
        let need = CMND_BASE_LEN + add_len;
        if payload.len() != need {
            return Err(Error::BadLength {
                what: "FCP_CMND (additional CDB length)",
                expected: need,
                found: payload.len(),
            });
        }
        check_zero("FCP_CMND byte 9 bit 7", u64::from(payload[9] & 0x80))?;
        Ok(FcpCmndRepr {
            lun: array(payload, 0),
            crn: payload[8],
            priority: (payload[9] >> 3) & 0x0f,
            task_attribute: TaskAttribute::from_bits(payload[9] & 0x07)?,
            task_management: payload[10],
            rddata: payload[11] & 0x02 != 0,
            wrdata: payload[11] & 0x01 != 0,
            cdb: &payload[12..12 + 16 + add_len],
            fcp_dl: be32(payload, 28 + add_len),
        })
    }
}

impl WireEmit for FcpCmndRepr<'_> {
    fn buffer_len(&self) -> usize {
        CMND_BASE_LEN + self.cdb.len().saturating_sub(16)
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        check_room("FCP_CMND", buf, len)?;
        let add = self.cdb.len().saturating_sub(16);
        if !add.is_multiple_of(4) || add / 4 > 63 {
            return Err(Error::BadLength {
                what: "FCP_CMND additional CDB",
                expected: add - add % 4,
                found: add,
            });
        }
        if self.priority > 0x0f {
            return Err(Error::ValueTooLarge { field: "FCP_CMND priority", value: u64::from(self.priority) });
        }
        let b = &mut buf[..len];
        b[0..8].copy_from_slice(&self.lun);
        b[8] = self.crn;
        b[9] = (self.priority << 3) | self.task_attribute as u8;
        b[10] = self.task_management;
        b[11] = ((add / 4) as u8) << 2 | u8::from(self.rddata) << 1 | u8::from(self.wrdata);
        b[12..28 + add].fill(0);
        b[12..12 + self.cdb.len()].copy_from_slice(self.cdb);
        put32(b, 28 + add, self.fcp_dl);
        Ok(len)
    }
}

/// A writable view of an FCP_CMND, for the fast path to rewrite the CDB and FCP_DL in place.
#[derive(Debug)]
pub struct FcpCmnd<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FcpCmnd<T> {
    /// Wraps a payload after checking its length against the additional CDB length.
    pub fn new_checked(buffer: T) -> Result<Self> {
        FcpCmndRepr::parse(buffer.as_ref())?;
        Ok(FcpCmnd { buffer })
    }

    fn add_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[11] >> 2) * 4
    }

    /// The 8-byte LUN.
    pub fn lun(&self) -> [u8; 8] {
        array(self.buffer.as_ref(), 0)
    }

    /// The CDB bytes.
    pub fn cdb(&self) -> &[u8] {
        &self.buffer.as_ref()[12..28 + self.add_len()]
    }

    /// FCP_DL.
    pub fn fcp_dl(&self) -> u32 {
        be32(self.buffer.as_ref(), 28 + self.add_len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FcpCmnd<T> {
    /// Sets the LUN.
    pub fn set_lun(&mut self, lun: [u8; 8]) {
        self.buffer.as_mut()[0..8].copy_from_slice(&lun);
    }

    /// The CDB bytes, writable.
    pub fn cdb_mut(&mut self) -> &mut [u8] {
        let end = 28 + self.add_len();
        &mut self.buffer.as_mut()[12..end]
    }

    /// Sets FCP_DL.
    pub fn set_fcp_dl(&mut self, v: u32) {
        let at = 28 + self.add_len();
        put32(self.buffer.as_mut(), at, v);
    }
}

/// An FCP_XFER_RDY: the target asks for `burst_len` bytes at relative offset `data_ro`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FcpXferRdyRepr {
    /// Relative offset of the requested data.
    pub data_ro: u32,
    /// Bytes requested.
    pub burst_len: u32,
}

impl FcpXferRdyRepr {
    /// Parses an FCP_XFER_RDY payload.
    pub fn parse(payload: &[u8]) -> Result<FcpXferRdyRepr> {
        // Every transfer-ready a switch forwards: read at fixed places, without the checks'
        // general forms (the other paths below name what is wrong).
        if let Ok(p) = <&[u8; XFER_RDY_LEN]>::try_from(payload)
            && p[8..] == [0; 4]
        {
            return Ok(FcpXferRdyRepr { data_ro: be32(payload, 0), burst_len: be32(payload, 4) });
        }
        check_len("FCP_XFER_RDY", payload, XFER_RDY_LEN)?;
        if payload.len() != XFER_RDY_LEN {
            return Err(Error::BadLength {
                what: "FCP_XFER_RDY",
                expected: XFER_RDY_LEN,
                found: payload.len(),
            });
        }
        check_zero_bytes("FCP_XFER_RDY reserved", &payload[8..12])?;
        Ok(FcpXferRdyRepr { data_ro: be32(payload, 0), burst_len: be32(payload, 4) })
    }
}

impl WireEmit for FcpXferRdyRepr {
    fn buffer_len(&self) -> usize {
        XFER_RDY_LEN
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        check_room("FCP_XFER_RDY", buf, XFER_RDY_LEN)?;
        put32(buf, 0, self.data_ro);
        put32(buf, 4, self.burst_len);
        buf[8..12].fill(0);
        Ok(XFER_RDY_LEN)
    }
}

/// FCP_RSP flag bits (byte 10).
pub mod rsp_flags {
    /// FCP_RSP_LEN_VALID.
    pub const RSP_LEN_VALID: u8 = 0x01;
    /// FCP_SNS_LEN_VALID.
    pub const SNS_LEN_VALID: u8 = 0x02;
    /// FCP_RESID_OVER.
    pub const RESID_OVER: u8 = 0x04;
    /// FCP_RESID_UNDER.
    pub const RESID_UNDER: u8 = 0x08;
    /// FCP_CONF_REQ.
    pub const CONF_REQ: u8 = 0x10;
}

/// FCP_RSP_CODE values in the response information.
pub mod rsp_code {
    /// Task management function complete (or no failure).
    pub const COMPLETE: u8 = 0x00;
    /// FCP_DATA length different from FCP_BURST_LEN.
    pub const DATA_LEN_MISMATCH: u8 = 0x01;
    /// FCP_CMND fields invalid.
    pub const CMND_FIELDS_INVALID: u8 = 0x02;
    /// FCP_DATA relative offset differs from FCP_DATA_RO.
    pub const DATA_RO_MISMATCH: u8 = 0x03;
    /// Task management function not supported.
    pub const TMF_NOT_SUPPORTED: u8 = 0x04;
    /// Task management function failed.
    pub const TMF_FAILED: u8 = 0x05;
    /// Task management function succeeded.
    pub const TMF_SUCCEEDED: u8 = 0x08;
    /// Task management function: incorrect LUN.
    pub const TMF_INCORRECT_LUN: u8 = 0x09;
}

/// The residual reported by an FCP_RSP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Residual {
    /// All of FCP_DL was transferred.
    #[default]
    None,
    /// The command wanted more than FCP_DL: this many bytes were not transferred.
    Over(u32),
    /// Fewer bytes than FCP_DL were transferred: this many were missing.
    Under(u32),
}

impl Residual {
    /// The FCP_RSP flag (`FCP_RESID_OVER`, `FCP_RESID_UNDER` or none) and FCP_RESID.
    pub fn flag_and_count(self) -> (u8, u32) {
        match self {
            Residual::None => (0, 0),
            Residual::Over(n) => (rsp_flags::RESID_OVER, n),
            Residual::Under(n) => (rsp_flags::RESID_UNDER, n),
        }
    }
}

/// An FCP_RSP: SCSI status, residual, optional response information and sense data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FcpRspRepr<'a> {
    /// Retry delay timer / status qualifier (bytes 8-9).
    pub status_qualifier: u16,
    /// FCP_CONF_REQ.
    pub confirm_requested: bool,
    /// SCSI status (see [`crate::scsi::status`]).
    pub scsi_status: u8,
    /// Residual over- or underrun.
    pub residual: Residual,
    /// Response information (4 or 8 bytes; byte 3 is the FCP_RSP_CODE), if valid.
    pub response_info: Option<&'a [u8]>,
    /// Sense data, if valid.
    pub sense: Option<&'a [u8]>,
}

impl<'a> FcpRspRepr<'a> {
    /// A GOOD status with nothing else.
    pub fn good() -> FcpRspRepr<'static> {
        FcpRspRepr {
            status_qualifier: 0,
            confirm_requested: false,
            scsi_status: crate::scsi::status::GOOD,
            residual: Residual::None,
            response_info: None,
            sense: None,
        }
    }

    /// The FCP_RSP_CODE of the response information, if present.
    pub fn response_code(&self) -> Option<u8> {
        self.response_info.and_then(|r| r.get(3).copied())
    }

    /// Parses an FCP_RSP payload; its length must equal the fixed part plus the response and
    /// sense lengths (some senders pad to a multiple of 4; up to 3 trailing bytes are allowed
    /// when they are zero).
    pub fn parse(payload: &'a [u8]) -> Result<FcpRspRepr<'a>> {
        check_len("FCP_RSP", payload, RSP_BASE_LEN)?;
        check_zero_bytes("FCP_RSP reserved bytes 0-7", &payload[0..8])?;
        let flags = payload[10];
        check_zero("FCP_RSP flags reserved bits", u64::from(flags & 0xe0))?;
        let resid = be32(payload, 12);
        let residual = match (flags & rsp_flags::RESID_OVER != 0, flags & rsp_flags::RESID_UNDER != 0) {
            (true, true) => {
                return Err(Error::Reserved {
                    field: "FCP_RSP both RESID_OVER and RESID_UNDER",
                    value: u64::from(flags),
                });
            }
            (true, false) => Residual::Over(resid),
            (false, true) => Residual::Under(resid),
            (false, false) => {
                check_zero("FCP_RSP residual without RESID flag", u64::from(resid))?;
                Residual::None
            }
        };
        let sns_len = be32(payload, 16) as usize;
        let rsp_len = be32(payload, 20) as usize;
        if flags & rsp_flags::SNS_LEN_VALID == 0 {
            check_zero("FCP_SNS_LEN without SNS_LEN_VALID", sns_len as u64)?;
        }
        if flags & rsp_flags::RSP_LEN_VALID == 0 {
            check_zero("FCP_RSP_LEN without RSP_LEN_VALID", rsp_len as u64)?;
        } else if rsp_len != 4 && rsp_len != 8 {
            return Err(Error::BadLength { what: "FCP_RSP_LEN", expected: 8, found: rsp_len });
        }
        let need = RSP_BASE_LEN.saturating_add(rsp_len).saturating_add(sns_len);
        check_len("FCP_RSP response and sense", payload, need)?;
        if payload.len() > need {
            let extra = &payload[need..];
            if extra.len() > 3 {
                return Err(Error::BadLength { what: "FCP_RSP", expected: need, found: payload.len() });
            }
            check_zero_bytes("FCP_RSP padding", extra)?;
        }
        let valid = |bit: u8, len: usize, at: usize| (flags & bit != 0).then(|| &payload[at..at + len]);
        Ok(FcpRspRepr {
            status_qualifier: be16(payload, 8),
            confirm_requested: flags & rsp_flags::CONF_REQ != 0,
            scsi_status: payload[11],
            residual,
            response_info: valid(rsp_flags::RSP_LEN_VALID, rsp_len, RSP_BASE_LEN),
            sense: valid(rsp_flags::SNS_LEN_VALID, sns_len, RSP_BASE_LEN + rsp_len),
        })
    }
}

impl WireEmit for FcpRspRepr<'_> {
    fn buffer_len(&self) -> usize {
        RSP_BASE_LEN + self.response_info.map_or(0, <[u8]>::len) + self.sense.map_or(0, <[u8]>::len)
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        check_room("FCP_RSP", buf, len)?;
        let rsp_len = self.response_info.map_or(0, <[u8]>::len);
        if self.response_info.is_some() && rsp_len != 4 && rsp_len != 8 {
            return Err(Error::BadLength { what: "FCP_RSP_LEN", expected: 8, found: rsp_len });
        }
        let sns_len = self.sense.map_or(0, <[u8]>::len);
        let b = &mut buf[..len];
        b[0..8].fill(0);
        put16(b, 8, self.status_qualifier);
        let (resid_flag, resid) = self.residual.flag_and_count();
        b[10] = resid_flag
            | if self.confirm_requested { rsp_flags::CONF_REQ } else { 0 }
            | if self.sense.is_some() { rsp_flags::SNS_LEN_VALID } else { 0 }
            | if self.response_info.is_some() { rsp_flags::RSP_LEN_VALID } else { 0 };
        b[11] = self.scsi_status;
        put32(b, 12, resid);
        put32(b, 16, sns_len as u32);
        put32(b, 20, rsp_len as u32);
        if let Some(r) = self.response_info {
            b[RSP_BASE_LEN..RSP_BASE_LEN + rsp_len].copy_from_slice(r);
        }
        if let Some(s) = self.sense {
            b[RSP_BASE_LEN + rsp_len..].copy_from_slice(s);
        }
        Ok(len)
    }
}
