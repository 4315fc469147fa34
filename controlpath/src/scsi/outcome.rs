//! What an emulated command produces: [`ScsiOutcome`] (status, sense, data in, the layout
//! change the caller applies), its mapping to the FP API's [`IoStatus`], and the internal
//! `Failure` that command handlers return with `?` so that a failing command is answered
//! before it changes anything.

use dve_fp_api::io::{IoStatus, ScsiStatus, Sense};
use dve_wire::WireEmit;
use dve_wire::scsi::sense::{Asc, SenseKey};
use dve_wire::scsi::status;

/// ASC/ASCQ pairs the emulation reports that `dve-wire` does not name.
pub mod asc {
    use dve_wire::scsi::sense::Asc;

    /// INVALID RELEASE OF PERSISTENT RESERVATION (26h/04h).
    pub const INVALID_RELEASE_OF_PERSISTENT_RESERVATION: Asc = Asc { asc: 0x26, ascq: 0x04 };
}

/// A change to the volume's contents (or a block transfer) that the command asks for. The
/// emulation only validates and describes it; the caller applies it to the layout and then
/// completes the command (with the outcome's GOOD status, or with its own error if applying
/// fails).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LayoutEffect {
    /// UNMAP: deallocate these `(lba, blocks)` ranges, in the order the host listed them. Every
    /// range is inside the volume and non-empty; ranges may overlap.
    Unmap(Vec<(u64, u32)>),
    /// WRITE SAME: write `block` (exactly one logical block) to each of `blocks` blocks from
    /// `lba`. With `unmap` the host allows the range to be deallocated instead, which the
    /// caller may do only if unmapped blocks then read back as `block` (for DVE: all zeros).
    WriteSame {
        /// First block.
        lba: u64,
        /// Number of blocks (never zero).
        blocks: u32,
        /// The block's contents.
        block: Vec<u8>,
        /// The UNMAP bit.
        unmap: bool,
    },
    /// A READ that reached the control path (a fast-path fault such as a masked LUN) and
    /// passed every check the emulation makes (unit attention, reservations, range): the
    /// caller reads the blocks for the host.
    Read {
        /// First block.
        lba: u64,
        /// Number of blocks (never zero).
        blocks: u32,
    },
    /// A WRITE that reached the control path and passed every check: the caller writes the
    /// host's data (`blocks` blocks) at `lba`.
    Write {
        /// First block.
        lba: u64,
        /// Number of blocks (never zero).
        blocks: u32,
    },
}

/// The answer to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiOutcome {
    /// The SCSI status byte (see `dve_wire::scsi::status`).
    pub status: u8,
    /// Sense key, ASC and ASCQ, with CHECK CONDITION; the fast path builds the sense data.
    pub sense: Option<Sense>,
    /// Data to return to the host, already cut to the allocation length.
    pub data_in: Vec<u8>,
    /// Bytes of the data-out buffer the command consumed (parameter lists, the WRITE SAME
    /// block, the data of an admitted WRITE); used to compute the residual.
    pub data_out_len: u32,
    /// The layout change (or block transfer) the caller carries out, if any.
    pub effect: Option<LayoutEffect>,
}

impl ScsiOutcome {
    /// GOOD with no data.
    pub fn good() -> ScsiOutcome {
        ScsiOutcome { status: status::GOOD, sense: None, data_in: Vec::new(), data_out_len: 0, effect: None }
    }

    /// GOOD returning `data`, cut to `allocation_length` bytes.
    pub fn with_data(mut data: Vec<u8>, allocation_length: usize) -> ScsiOutcome {
        data.truncate(allocation_length);
        ScsiOutcome { data_in: data, ..ScsiOutcome::good() }
    }

    /// CHECK CONDITION with the given sense key and additional sense code.
    pub fn check_condition(key: SenseKey, asc: Asc) -> ScsiOutcome {
        ScsiOutcome {
            status: status::CHECK_CONDITION,
            sense: Some(Sense { key: key as u8, asc: asc.asc, ascq: asc.ascq }),
            ..ScsiOutcome::good()
        }
    }

    /// RESERVATION CONFLICT (no sense data).
    pub fn reservation_conflict() -> ScsiOutcome {
        ScsiOutcome { status: status::RESERVATION_CONFLICT, ..ScsiOutcome::good() }
    }

    /// Whether the status is GOOD.
    pub fn is_good(&self) -> bool {
        self.status == status::GOOD
    }

    /// The sense key, if the command ended with sense data.
    pub fn sense_key(&self) -> Option<SenseKey> {
        self.sense.map(|s| SenseKey::from_code(s.key))
    }

    /// The FP API completion for this outcome. `data_len` is FCP_DL, the bytes the host
    /// expects to move; the residual is `data_len` minus the bytes moved (data in plus data
    /// out consumed): positive is an under-run, negative an over-run (more data than FCP_DL).
    pub fn io_status(&self, data_len: u32) -> IoStatus {
        let moved = self.data_in.len() as i64 + i64::from(self.data_out_len);
        IoStatus { status: ScsiStatus(self.status), sense: self.sense, residual: i64::from(data_len) - moved }
    }
}

/// Why a command failed: the handlers return it with `?` before changing any state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// CHECK CONDITION with this sense.
    Check(SenseKey, Asc),
    /// RESERVATION CONFLICT.
    Conflict,
}

impl Failure {
    /// ILLEGAL REQUEST with `asc`.
    pub(crate) const fn illegal(asc: Asc) -> Failure {
        Failure::Check(SenseKey::IllegalRequest, asc)
    }

    /// ILLEGAL REQUEST, INVALID FIELD IN CDB.
    pub(crate) const INVALID_FIELD_IN_CDB: Failure = Failure::illegal(Asc::INVALID_FIELD_IN_CDB);
    /// ILLEGAL REQUEST, INVALID FIELD IN PARAMETER LIST.
    pub(crate) const INVALID_FIELD_IN_PARAMETER_LIST: Failure =
        Failure::illegal(Asc::INVALID_FIELD_IN_PARAMETER_LIST);
    /// ILLEGAL REQUEST, PARAMETER LIST LENGTH ERROR.
    pub(crate) const PARAMETER_LIST_LENGTH_ERROR: Failure =
        Failure::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR);
    /// ILLEGAL REQUEST, LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub(crate) const LBA_OUT_OF_RANGE: Failure = Failure::illegal(Asc::LBA_OUT_OF_RANGE);
    /// ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
    pub(crate) const INVALID_OPCODE: Failure = Failure::illegal(Asc::INVALID_COMMAND_OPERATION_CODE);
    /// HARDWARE ERROR, INTERNAL TARGET FAILURE (a builder refused our own data: a bug).
    pub(crate) const INTERNAL: Failure =
        Failure::Check(SenseKey::HardwareError, Asc::INTERNAL_TARGET_FAILURE);
}

impl From<Failure> for ScsiOutcome {
    fn from(f: Failure) -> ScsiOutcome {
        match f {
            Failure::Check(key, asc) => ScsiOutcome::check_condition(key, asc),
            Failure::Conflict => ScsiOutcome::reservation_conflict(),
        }
    }
}

/// What command handlers return.
pub(crate) type CmdResult = Result<ScsiOutcome, Failure>;

/// Emits a `dve-wire` representation into a fresh vector.
pub(crate) fn emit_vec<E: WireEmit + ?Sized>(e: &E) -> Result<Vec<u8>, Failure> {
    let mut buf = vec![0u8; e.buffer_len()];
    let n = e.emit(&mut buf).map_err(|_| Failure::INTERNAL)?;
    buf.truncate(n);
    Ok(buf)
}

/// Checks that `blocks` blocks from `lba` lie inside a volume of `capacity` blocks.
pub(crate) fn check_range(lba: u64, blocks: u64, capacity: u64) -> Result<(), Failure> {
    match lba.checked_add(blocks) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(Failure::LBA_OUT_OF_RANGE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_status_residuals() {
        let o = ScsiOutcome::with_data(vec![1; 100], 36);
        assert_eq!(o.data_in.len(), 36);
        let s = o.io_status(96);
        assert!(s.is_good());
        assert_eq!(s.residual, 60);
        assert_eq!(o.io_status(20).residual, -16, "more data than FCP_DL is an over-run");

        let c = ScsiOutcome::check_condition(SenseKey::IllegalRequest, Asc::LBA_OUT_OF_RANGE);
        let s = c.io_status(512);
        assert_eq!(s.status, ScsiStatus::CHECK_CONDITION);
        assert_eq!(s.sense, Some(Sense { key: 0x5, asc: 0x21, ascq: 0x00 }));
        assert_eq!(s.residual, 512);

        let w = ScsiOutcome { data_out_len: 24, ..ScsiOutcome::good() };
        assert_eq!(w.io_status(24).residual, 0);
        let r = ScsiOutcome::reservation_conflict().io_status(0);
        assert_eq!(r.status, ScsiStatus::RESERVATION_CONFLICT);
        assert_eq!(r.sense, None);
    }

    #[test]
    fn range_check_handles_overflow() {
        assert!(check_range(0, 10, 10).is_ok());
        assert!(check_range(10, 0, 10).is_ok());
        assert_eq!(check_range(10, 1, 10), Err(Failure::LBA_OUT_OF_RANGE));
        assert_eq!(check_range(u64::MAX, 2, u64::MAX), Err(Failure::LBA_OUT_OF_RANGE));
    }
}
