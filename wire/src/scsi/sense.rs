//! SCSI sense data in fixed (0x70/0x71) and descriptor (0x72/0x73) format, the sense keys,
//! and the ASC/ASCQ pairs the control path reports.

use crate::emit::WireEmit;
use crate::error::{Error, Result};
use crate::field::{be32, be64, check_len, check_room, put32, put64};

/// Length of fixed-format sense data as this crate emits it.
pub const FIXED_LEN: usize = 18;

/// Sense keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum SenseKey {
    NoSense = 0x0,
    RecoveredError = 0x1,
    NotReady = 0x2,
    MediumError = 0x3,
    HardwareError = 0x4,
    IllegalRequest = 0x5,
    UnitAttention = 0x6,
    DataProtect = 0x7,
    BlankCheck = 0x8,
    VendorSpecific = 0x9,
    CopyAborted = 0xA,
    AbortedCommand = 0xB,
    Reserved = 0xC,
    VolumeOverflow = 0xD,
    Miscompare = 0xE,
    Completed = 0xF,
}

impl SenseKey {
    /// Every sense key.
    pub const ALL: [SenseKey; 16] = [
        SenseKey::NoSense,
        SenseKey::RecoveredError,
        SenseKey::NotReady,
        SenseKey::MediumError,
        SenseKey::HardwareError,
        SenseKey::IllegalRequest,
        SenseKey::UnitAttention,
        SenseKey::DataProtect,
        SenseKey::BlankCheck,
        SenseKey::VendorSpecific,
        SenseKey::CopyAborted,
        SenseKey::AbortedCommand,
        SenseKey::Reserved,
        SenseKey::VolumeOverflow,
        SenseKey::Miscompare,
        SenseKey::Completed,
    ];

    /// The sense key from its 4-bit code.
    pub fn from_code(code: u8) -> SenseKey {
        SenseKey::ALL[usize::from(code & 0x0f)]
    }
}

/// An additional sense code and qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Asc {
    /// ASC.
    pub asc: u8,
    /// ASCQ.
    pub ascq: u8,
}

macro_rules! asc_consts {
    ($($(#[$m:meta])* $name:ident = ($a:expr, $q:expr);)*) => {
        impl Asc {
            $($(#[$m])* pub const $name: Asc = Asc { asc: $a, ascq: $q };)*
        }
    };
}

asc_consts! {
    /// NO ADDITIONAL SENSE INFORMATION.
    NO_ADDITIONAL_SENSE = (0x00, 0x00);
    /// LOGICAL UNIT NOT READY, CAUSE NOT REPORTABLE.
    LOGICAL_UNIT_NOT_READY = (0x04, 0x00);
    /// LOGICAL UNIT IS IN PROCESS OF BECOMING READY.
    LOGICAL_UNIT_BECOMING_READY = (0x04, 0x01);
    /// LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED.
    LOGICAL_UNIT_MANUAL_INTERVENTION = (0x04, 0x03);
    /// LOGICAL UNIT COMMUNICATION FAILURE.
    LOGICAL_UNIT_COMMUNICATION_FAILURE = (0x08, 0x00);
    /// WRITE ERROR.
    WRITE_ERROR = (0x0C, 0x00);
    /// UNRECOVERED READ ERROR.
    UNRECOVERED_READ_ERROR = (0x11, 0x00);
    /// PARAMETER LIST LENGTH ERROR.
    PARAMETER_LIST_LENGTH_ERROR = (0x1A, 0x00);
    /// MISCOMPARE DURING VERIFY OPERATION.
    MISCOMPARE = (0x1D, 0x00);
    /// INVALID COMMAND OPERATION CODE.
    INVALID_COMMAND_OPERATION_CODE = (0x20, 0x00);
    /// LOGICAL BLOCK ADDRESS OUT OF RANGE.
    LBA_OUT_OF_RANGE = (0x21, 0x00);
    /// INVALID FIELD IN CDB.
    INVALID_FIELD_IN_CDB = (0x24, 0x00);
    /// LOGICAL UNIT NOT SUPPORTED.
    LOGICAL_UNIT_NOT_SUPPORTED = (0x25, 0x00);
    /// INVALID FIELD IN PARAMETER LIST.
    INVALID_FIELD_IN_PARAMETER_LIST = (0x26, 0x00);
    /// WRITE PROTECTED.
    WRITE_PROTECTED = (0x27, 0x00);
    /// POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    POWER_ON_RESET = (0x29, 0x00);
    /// I_T NEXUS LOSS OCCURRED.
    I_T_NEXUS_LOSS = (0x29, 0x07);
    /// PARAMETERS CHANGED.
    PARAMETERS_CHANGED = (0x2A, 0x00);
    /// MODE PARAMETERS CHANGED.
    MODE_PARAMETERS_CHANGED = (0x2A, 0x01);
    /// RESERVATIONS PREEMPTED.
    RESERVATIONS_PREEMPTED = (0x2A, 0x03);
    /// RESERVATIONS RELEASED.
    RESERVATIONS_RELEASED = (0x2A, 0x04);
    /// REGISTRATIONS PREEMPTED.
    REGISTRATIONS_PREEMPTED = (0x2A, 0x05);
    /// ASYMMETRIC ACCESS STATE CHANGED.
    ASYMMETRIC_ACCESS_STATE_CHANGED = (0x2A, 0x06);
    /// CAPACITY DATA HAS CHANGED.
    CAPACITY_DATA_HAS_CHANGED = (0x2A, 0x09);
    /// COMMANDS CLEARED BY ANOTHER INITIATOR.
    COMMANDS_CLEARED_BY_ANOTHER_INITIATOR = (0x2F, 0x00);
    /// SAVING PARAMETERS NOT SUPPORTED.
    SAVING_PARAMETERS_NOT_SUPPORTED = (0x39, 0x00);
    /// MEDIUM NOT PRESENT.
    MEDIUM_NOT_PRESENT = (0x3A, 0x00);
    /// INQUIRY DATA HAS CHANGED.
    INQUIRY_DATA_HAS_CHANGED = (0x3F, 0x03);
    /// REPORTED LUNS DATA HAS CHANGED.
    REPORTED_LUNS_DATA_HAS_CHANGED = (0x3F, 0x0E);
    /// INTERNAL TARGET FAILURE.
    INTERNAL_TARGET_FAILURE = (0x44, 0x00);
    /// DATA PHASE ERROR.
    DATA_PHASE_ERROR = (0x4B, 0x00);
    /// INSUFFICIENT REGISTRATION RESOURCES.
    INSUFFICIENT_REGISTRATION_RESOURCES = (0x55, 0x04);
}

/// Which sense data format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenseFormat {
    /// Fixed format (response code 0x70/0x71).
    Fixed,
    /// Descriptor format (0x72/0x73).
    Descriptor,
}

/// Sense data: the fields DVE produces and consumes.
///
/// Parsing is tolerant of what real targets send (longer fixed data, unknown descriptors):
/// fields this type does not hold are skipped, so only emitted data round-trips exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SenseRepr {
    /// Format.
    pub format: SenseFormat,
    /// Deferred error (0x71/0x73) rather than current (0x70/0x72).
    pub deferred: bool,
    /// Sense key.
    pub key: SenseKey,
    /// Additional sense code and qualifier.
    pub asc: Asc,
    /// INFORMATION (e.g. the failing LBA), if valid.
    pub information: Option<u64>,
    /// Sense-key-specific bytes (the first carries SKSV 0x80), if valid.
    pub sense_key_specific: Option<[u8; 3]>,
}

impl SenseRepr {
    /// Current-error fixed-format sense with a key and ASC/ASCQ.
    pub fn fixed(key: SenseKey, asc: Asc) -> SenseRepr {
        SenseRepr {
            format: SenseFormat::Fixed,
            deferred: false,
            key,
            asc,
            information: None,
            sense_key_specific: None,
        }
    }

    /// Current-error descriptor-format sense with a key and ASC/ASCQ.
    pub fn descriptor(key: SenseKey, asc: Asc) -> SenseRepr {
        SenseRepr { format: SenseFormat::Descriptor, ..SenseRepr::fixed(key, asc) }
    }

    /// Parses sense data.
    pub fn parse(b: &[u8]) -> Result<SenseRepr> {
        check_len("sense data", b, 1)?;
        let code = b[0] & 0x7f;
        match code {
            0x70 | 0x71 => {
                check_len("fixed-format sense data", b, 14)?;
                let add_len = usize::from(b[7]);
                check_len("fixed-format sense additional bytes", b, 8 + add_len)?;
                let sks =
                    (b.len() >= 18 && add_len >= 10 && b[15] & 0x80 != 0).then(|| [b[15], b[16], b[17]]);
                Ok(SenseRepr {
                    format: SenseFormat::Fixed,
                    deferred: code == 0x71,
                    key: SenseKey::from_code(b[2]),
                    asc: Asc { asc: b[12], ascq: b[13] },
                    information: (b[0] & 0x80 != 0).then(|| u64::from(be32(b, 3))),
                    sense_key_specific: sks,
                })
            }
            0x72 | 0x73 => {
                check_len("descriptor-format sense data", b, 8)?;
                let add_len = usize::from(b[7]);
                check_len("descriptor-format sense descriptors", b, 8 + add_len)?;
                let mut repr = SenseRepr {
                    format: SenseFormat::Descriptor,
                    deferred: code == 0x73,
                    key: SenseKey::from_code(b[1]),
                    asc: Asc { asc: b[2], ascq: b[3] },
                    information: None,
                    sense_key_specific: None,
                };
                let mut rest = &b[8..8 + add_len];
                while !rest.is_empty() {
                    check_len("sense descriptor header", rest, 2)?;
                    let len = 2 + usize::from(rest[1]);
                    check_len("sense descriptor", rest, len)?;
                    let (d, tail) = rest.split_at(len);
                    match d[0] {
                        0x00 if len == 12 && d[2] & 0x80 != 0 => repr.information = Some(be64(d, 4)),
                        0x02 if len == 8 && d[4] & 0x80 != 0 => {
                            repr.sense_key_specific = Some([d[4], d[5], d[6]])
                        }
                        _ => {}
                    }
                    rest = tail;
                }
                Ok(repr)
            }
            other => Err(Error::Unsupported { field: "sense response code", value: u64::from(other) }),
        }
    }
}

impl WireEmit for SenseRepr {
    fn buffer_len(&self) -> usize {
        match self.format {
            SenseFormat::Fixed => FIXED_LEN,
            SenseFormat::Descriptor => {
                8 + if self.information.is_some() { 12 } else { 0 }
                    + if self.sense_key_specific.is_some() { 8 } else { 0 }
            }
        }
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        check_room("sense data", buf, len)?;
        let b = &mut buf[..len];
        b.fill(0);
        match self.format {
            SenseFormat::Fixed => {
                b[0] = if self.deferred { 0x71 } else { 0x70 };
                b[2] = self.key as u8;
                if let Some(info) = self.information {
                    let v = u32::try_from(info).map_err(|_| Error::ValueTooLarge {
                        field: "fixed sense INFORMATION",
                        value: info,
                    })?;
                    b[0] |= 0x80;
                    put32(b, 3, v);
                }
                b[7] = (FIXED_LEN - 8) as u8;
                b[12] = self.asc.asc;
                b[13] = self.asc.ascq;
                if let Some(s) = self.sense_key_specific {
                    b[15..18].copy_from_slice(&s);
                    b[15] |= 0x80;
                }
            }
            SenseFormat::Descriptor => {
                b[0] = if self.deferred { 0x73 } else { 0x72 };
                b[1] = self.key as u8;
                b[2] = self.asc.asc;
                b[3] = self.asc.ascq;
                b[7] = (len - 8) as u8;
                let mut at = 8;
                if let Some(info) = self.information {
                    b[at..at + 4].copy_from_slice(&[0x00, 0x0a, 0x80, 0]);
                    put64(b, at + 4, info);
                    at += 12;
                }
                if let Some(s) = self.sense_key_specific {
                    b[at..at + 4].copy_from_slice(&[0x02, 0x06, 0, 0]);
                    b[at + 4..at + 7].copy_from_slice(&s);
                    b[at + 4] |= 0x80;
                }
            }
        }
        Ok(len)
    }
}
