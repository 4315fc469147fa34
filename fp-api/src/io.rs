//! I/O descriptors that cross the FP API: the host request of seed 003 Fig. 15, completion
//! status with sense, the downstream I/O the control path dispatches through the fast path,
//! and the pending-list entries the fast path reports for drains and aborts.

use bytes::Bytes;

use crate::fault::FaultCause;
use crate::ids::{DeviceId, DispatchTag, ExposureId, FcId, IoTag, Lun, LvId, Timestamp, VsegId, Wwn};

/// A SCSI command descriptor block as the host sent it (up to 32 bytes, enough for variable
/// length CDBs).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cdb {
    bytes: [u8; Cdb::MAX],
    len: u8,
}

impl Cdb {
    /// The longest CDB carried.
    pub const MAX: usize = 32;

    /// A CDB from its bytes; `None` if empty or longer than [`Cdb::MAX`].
    #[inline]
    pub fn new(bytes: &[u8]) -> Option<Cdb> {
        if bytes.is_empty() || bytes.len() > Cdb::MAX {
            return None;
        }
        let mut cdb = Cdb { bytes: [0; Cdb::MAX], len: bytes.len() as u8 };
        cdb.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(cdb)
    }

    /// A one-byte CDB holding only an operation code (a placeholder where none was given).
    pub const fn from_opcode(opcode: u8) -> Cdb {
        let mut bytes = [0; Cdb::MAX];
        bytes[0] = opcode;
        Cdb { bytes, len: 1 }
    }

    /// The CDB bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The operation code.
    pub fn opcode(&self) -> u8 {
        self.bytes[0]
    }
}

impl core::fmt::Debug for Cdb {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Cdb(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// What the CDB asks for, as far as the fast path cares.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum IoKind {
    /// READ 6/10/16.
    Read,
    /// WRITE 6/10/16.
    Write,
    /// Anything else; the control path emulates it.
    Other,
}

/// The virtual device a host addressed: a target exposure (virtual D_ID) and a LUN.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct VDevice {
    /// The target exposure the frame was addressed to.
    pub exposure: ExposureId,
    /// The LUN in the FCP_CMND.
    pub lun: Lun,
}

/// The host I/O request of seed 003 Fig. 15 (`{VDEVICE, LBA, TYPE, SIZE}`), plus who sent it
/// and how far the fast path resolved it before faulting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HostIo {
    /// The initiator's port name.
    pub initiator: Wwn,
    /// The initiator's fabric address.
    pub initiator_fc_id: FcId,
    /// The virtual device (VDEVICE).
    pub vdevice: VDevice,
    /// The LV behind the LUN, if the fast path got that far.
    pub lv: Option<LvId>,
    /// The segment holding the first block, if resolved.
    pub vseg: Option<VsegId>,
    /// The read/write classification (TYPE).
    pub kind: IoKind,
    /// The first logical block (LBA); zero for commands that carry none.
    pub lba: u64,
    /// Number of logical blocks.
    pub blocks: u32,
    /// FCP_DL: bytes of data the host expects to move (SIZE).
    pub data_len: u32,
    /// The command.
    pub cdb: Cdb,
    /// When the worker received the command, taken before the Rmap was read.
    pub received: Timestamp,
}

/// SCSI status byte values (SAM-5).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ScsiStatus(pub u8);

impl ScsiStatus {
    /// GOOD.
    pub const GOOD: ScsiStatus = ScsiStatus(0x00);
    /// CHECK CONDITION: sense data follows.
    pub const CHECK_CONDITION: ScsiStatus = ScsiStatus(0x02);
    /// BUSY.
    pub const BUSY: ScsiStatus = ScsiStatus(0x08);
    /// RESERVATION CONFLICT.
    pub const RESERVATION_CONFLICT: ScsiStatus = ScsiStatus(0x18);
    /// TASK SET FULL.
    pub const TASK_SET_FULL: ScsiStatus = ScsiStatus(0x28);
    /// TASK ABORTED.
    pub const TASK_ABORTED: ScsiStatus = ScsiStatus(0x40);
}

/// The three values that say what went wrong (sense key, ASC, ASCQ); the control path turns
/// them into fixed or descriptor format sense data on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Sense {
    /// Sense key (4 bits).
    pub key: u8,
    /// Additional sense code.
    pub asc: u8,
    /// Additional sense code qualifier.
    pub ascq: u8,
}

/// How an I/O ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IoStatus {
    /// The SCSI status byte.
    pub status: ScsiStatus,
    /// Sense data, with CHECK CONDITION.
    pub sense: Option<Sense>,
    /// Bytes not transferred (positive: under-run) or beyond FCP_DL (negative: over-run).
    pub residual: i64,
}

impl IoStatus {
    /// GOOD, everything transferred.
    pub const GOOD: IoStatus = IoStatus { status: ScsiStatus::GOOD, sense: None, residual: 0 };

    /// CHECK CONDITION with the given sense.
    pub const fn check_condition(sense: Sense) -> IoStatus {
        IoStatus { status: ScsiStatus::CHECK_CONDITION, sense: Some(sense), residual: 0 }
    }

    /// Whether the I/O succeeded.
    pub fn is_good(&self) -> bool {
        self.status == ScsiStatus::GOOD
    }
}

/// Why a downstream I/O failed, when the fast path hands the upstream I/O to the control path
/// with [`FaultCause::DownstreamError`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DownstreamFailure {
    /// The device the failed leg went to.
    pub device: DeviceId,
    /// Its status, or `None` if it timed out or its path went down.
    pub status: Option<IoStatus>,
    /// Which leg: 0 for a plain remap, the mirror side index for a split write.
    pub leg: u8,
}

/// What the control path asks a device to do through `FPDispatchIO`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DownstreamOp {
    /// Read `blocks` from `lba`.
    Read {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
    },
    /// Write `data` at `lba`.
    Write {
        /// First block.
        lba: u64,
        /// Number of blocks.
        blocks: u32,
        /// The payload, `blocks * block_size` bytes, shared not copied.
        data: Bytes,
    },
    /// Any other command (back-end enforcement, discovery, path tests): the CDB, data to send
    /// and the number of bytes to accept back.
    Command {
        /// The CDB.
        cdb: Cdb,
        /// Data out, possibly empty.
        data_out: Bytes,
        /// Maximum bytes of data in.
        data_in_len: u32,
    },
}

/// A downstream I/O issued by the control path (`FPDispatchIO`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DownstreamRequest {
    /// The control path's tag, echoed in `CpDispatchIOComplete`.
    pub tag: DispatchTag,
    /// The device; the fast path uses its current path.
    pub device: DeviceId,
    /// What to do.
    pub op: DownstreamOp,
}

/// Direction of a pending I/O.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PendingSide {
    /// A host I/O (virtual, on the upstream list).
    Upstream,
    /// A device I/O (physical, on the downstream list).
    Downstream,
}

/// State of a pending I/O (seed 003 section 7.3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PendingState {
    /// Received, being translated.
    Active,
    /// Dispatch in progress: downstream entries are being added and sent.
    Dispatching,
    /// Waiting on downstream completions.
    Pending,
    /// Handed to the control path (faulted or queued).
    Queued,
    /// Held while its LV is paused.
    Paused,
    /// Completed, cleanup pending.
    Completed,
    /// Failed, waiting for the control path.
    Failed,
    /// A write its host aborted: the aborts of its downstream legs are not answered yet, so
    /// a leg may still land. Drains wait for it.
    Aborting,
}

/// One entry of a worker's upstream or downstream pending list, as `FPQueryPendingIOs`
/// reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PendingIo {
    /// Upstream or downstream.
    pub side: PendingSide,
    /// The upstream I/O (for a downstream entry: its parent), if it has one.
    pub io: Option<IoTag>,
    /// For a downstream entry the control path dispatched: its tag.
    pub dispatch: Option<DispatchTag>,
    /// The state.
    pub state: PendingState,
    /// The segment it maps into, if known.
    pub vseg: Option<VsegId>,
    /// For upstream entries, the virtual block range within the VSEG; for downstream entries,
    /// the physical range on `device`.
    pub first_block: u64,
    /// Blocks.
    pub blocks: u32,
    /// Whether it writes.
    pub write: bool,
    /// For downstream entries, the device.
    pub device: Option<DeviceId>,
    /// Taken before the Rmap was read (upstream) or when dispatched (downstream).
    pub timestamp: Timestamp,
}

/// Which pending I/Os a query or abort selects. Every field narrows the selection; the
/// default selects everything.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct PendingFilter {
    /// Only I/Os in this segment.
    pub vseg: Option<VsegId>,
    /// Only I/Os overlapping `[first, first + blocks)` of that segment (upstream entries) or
    /// of `device` (downstream entries).
    pub range: Option<(u64, u64)>,
    /// Only downstream I/Os to this device.
    pub device: Option<DeviceId>,
    /// Only I/Os stamped strictly before this time (drains by timestamp).
    pub before: Option<Timestamp>,
    /// Only writes.
    pub writes_only: bool,
}

impl PendingFilter {
    /// Whether `io` is selected.
    pub fn matches(&self, io: &PendingIo) -> bool {
        if self.writes_only && !io.write {
            return false;
        }
        if self.before.is_some_and(|before| io.timestamp >= before) {
            return false;
        }
        if self.vseg.is_some() && io.vseg != self.vseg {
            return false;
        }
        if self.device.is_some() && io.device != self.device {
            return false;
        }
        if let Some((first, blocks)) = self.range {
            let end = first.saturating_add(blocks);
            let io_end = io.first_block.saturating_add(u64::from(io.blocks));
            if io.first_block >= end || first >= io_end {
                return false;
            }
        }
        true
    }
}

/// Why the fast path gives an upstream I/O to the control path (`CpQueueIO`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QueueReason {
    /// The cause, counted in the statistics.
    pub cause: FaultCause,
    /// For [`FaultCause::DownstreamError`], the failed leg.
    pub failure: Option<DownstreamFailure>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(first_block: u64, blocks: u32, write: bool, t: u64) -> PendingIo {
        PendingIo {
            side: PendingSide::Upstream,
            io: None,
            dispatch: None,
            state: PendingState::Pending,
            vseg: Some(VsegId(1)),
            first_block,
            blocks,
            write,
            device: None,
            timestamp: Timestamp(t),
        }
    }

    #[test]
    fn filter_selects_by_overlap_time_and_kind() {
        let io = pending(100, 8, true, 50);
        assert!(PendingFilter::default().matches(&io));
        let range = |first, blocks| PendingFilter { range: Some((first, blocks)), ..Default::default() };
        assert!(range(107, 1).matches(&io));
        assert!(!range(108, 4).matches(&io));
        assert!(!range(90, 10).matches(&io));
        assert!(range(90, 11).matches(&io));
        let before = |t| PendingFilter { before: Some(Timestamp(t)), ..Default::default() };
        assert!(before(51).matches(&io));
        assert!(!before(50).matches(&io));
        let reads = pending(100, 8, false, 50);
        assert!(!PendingFilter { writes_only: true, ..Default::default() }.matches(&reads));
        assert!(!PendingFilter { vseg: Some(VsegId(2)), ..Default::default() }.matches(&io));
    }

    #[test]
    fn cdb_bounds() {
        assert!(Cdb::new(&[]).is_none());
        assert!(Cdb::new(&[0; 33]).is_none());
        let cdb = Cdb::new(&[0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0]).unwrap();
        assert_eq!(cdb.opcode(), 0x28);
        assert_eq!(cdb.as_bytes().len(), 10);
    }
}
