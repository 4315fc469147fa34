//! Per-exchange state: the upstream (host) I/O a worker terminates as the virtual target, and
//! the downstream I/Os it originates to devices, linked to their parent by leg. These are the
//! entries of the upstream and downstream pending lists of seed 003 Fig. 13.

use dve_fp_api::frame::Frame;
use dve_fp_api::ids::{DispatchTag, ExchangeId, FcId, PortId, RequestId, Timestamp};
use dve_fp_api::io::{DownstreamFailure, HostIo, IoKind, PendingState};

use crate::worker::emit::{DataRewrite, WriteHead};
use crate::worker::translate::{Leg, MAX_LEGS, PlanSummary};

/// One frame of host write data, kept whole so its CRC can be patched rather than recomputed
/// when it is forwarded with new headers.
#[derive(Clone, Debug)]
pub struct HostPiece {
    /// Relative offset of the payload in the host I/O's data.
    pub offset: u32,
    /// Payload bytes (without fill).
    pub len: u32,
    /// The whole Ethernet frame as received.
    pub frame: Frame,
    /// Where the FC frame starts in it.
    pub fc_start: u32,
    /// The FC frame's length (header, payload, fill).
    pub fc_len: u32,
    /// The FC CRC the frame arrived with.
    pub crc: u32,
    /// Fill bytes after the payload (`fc_len` less the header and `len`).
    pub fill: u8,
    /// Whether the fill bytes are zero, so a frame sending the whole payload (always with
    /// zero fill) can patch `crc` rather than compute its own.
    pub patchable: bool,
}

impl HostPiece {
    /// One past the last payload byte, as an offset in the host data.
    pub fn end(&self) -> u32 {
        self.offset + self.len
    }

    /// Whether the frame's CRC checks. A data frame cut through is not verified when it
    /// arrives; whoever takes its payload out of it (a leg sent part of it, whose CRC is
    /// computed afresh, or the control path) must verify it first, or a corruption on the
    /// host's link would leave with a good CRC.
    pub fn arrived_intact(&self) -> bool {
        let bytes = self.frame.as_slice();
        dve_wire::stack::locate_fcoe_frame(bytes).and_then(|info| info.verify(bytes)).is_ok()
    }
}

/// Where an upstream I/O is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UpState {
    /// Waiting for the control path's answer to a mapping miss.
    AwaitingVerdict,
    /// Held while its volume is paused.
    Held,
    /// Its legs are in flight on the fast path.
    Active,
    /// The control path owns it (`CpQueueIO`).
    Queued,
}

impl UpState {
    /// The pending-list state reported to the control path.
    pub fn pending_state(self) -> PendingState {
        match self {
            UpState::AwaitingVerdict | UpState::Queued => PendingState::Queued,
            UpState::Held => PendingState::Paused,
            UpState::Active => PendingState::Pending,
        }
    }
}

/// A host I/O on the upstream pending list.
#[derive(Debug)]
pub struct Upstream {
    /// The port the host is on.
    pub port: PortId,
    /// The host's address.
    pub host: FcId,
    /// The virtual target's address.
    pub target: FcId,
    /// The host's OX_ID.
    pub host_ox_id: u16,
    /// What the host asked, stamped before the Rmap was read.
    pub request: HostIo,
    /// Where it is.
    pub state: UpState,
    /// The plan being carried out, when active.
    pub plan: Option<PlanSummary>,
    /// Downstream exchange of each leg of the plan.
    pub legs: LegExchanges,
    /// Legs not yet completed.
    pub outstanding: u8,
    /// The first leg that failed.
    pub failure: Option<DownstreamFailure>,
    /// Host write data received and not yet sent to every leg that needs it.
    pub pieces: Vec<HostPiece>,
    /// Host data received contiguously from offset 0.
    pub received_upto: u32,
    /// Host data asked for with XFER_RDY.
    pub solicited_upto: u32,
    /// Host data some leg has asked for.
    pub needed_upto: u32,
    /// Bytes of read data sent to the host.
    pub read_bytes: u32,
    /// A control-path `FPGetData` waiting for all the write data.
    pub get_data: Option<RequestId>,
    /// SEQ_ID for the next sequence the worker originates in this exchange.
    pub next_seq_id: u8,
    /// Whether it is on the serialization list.
    pub serialized: bool,
    /// The command carries data from the host (FCP_CMND WRDATA): a write, or a command the
    /// control path emulates with a parameter list (PERSISTENT RESERVE OUT, UNMAP, ...).
    pub data_out: bool,
}

impl Upstream {
    /// A new host I/O.
    pub fn new(
        port: PortId,
        host: FcId,
        target: FcId,
        host_ox_id: u16,
        request: HostIo,
        pieces: Vec<HostPiece>,
    ) -> Self {
        Upstream {
            port,
            host,
            target,
            host_ox_id,
            request,
            state: UpState::Active,
            plan: None,
            legs: LegExchanges::NONE,
            outstanding: 0,
            failure: None,
            pieces,
            received_upto: 0,
            solicited_upto: 0,
            needed_upto: 0,
            read_bytes: 0,
            get_data: None,
            next_seq_id: 1,
            data_out: request.kind == IoKind::Write,
            serialized: false,
        }
    }

    /// Take a SEQ_ID for a new sequence.
    pub fn take_seq_id(&mut self) -> u8 {
        let id = self.next_seq_id;
        self.next_seq_id = self.next_seq_id.wrapping_add(1);
        id
    }
}

/// The downstream exchange of each leg of a host I/O, as the id itself, with FC's unassigned
/// id (which no exchange table hands out) for none: a new list is two 16-byte stores and a copy
/// is 32 bytes, where sixteen `Option<ExchangeId>` took sixteen stores and 64 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LegExchanges([u16; MAX_LEGS]);

impl Default for LegExchanges {
    fn default() -> Self {
        LegExchanges::NONE
    }
}

impl LegExchanges {
    /// No leg has an exchange.
    pub const NONE: LegExchanges = LegExchanges([UNASSIGNED; MAX_LEGS]);

    /// Leg `leg`'s exchange.
    pub fn get(&self, leg: usize) -> Option<ExchangeId> {
        self.0.get(leg).filter(|&&x| x != UNASSIGNED).map(|&x| ExchangeId(x))
    }

    /// Set leg `leg`'s exchange (`None` for none); a leg past the list or the unassigned id
    /// itself leaves it as it was.
    pub fn set(&mut self, leg: usize, xid: Option<ExchangeId>) {
        let x = xid.map_or(UNASSIGNED, |x| x.0);
        if let Some(slot) = self.0.get_mut(leg)
            && (xid.is_none() || x != UNASSIGNED)
        {
            *slot = x;
        }
    }

    /// The exchanges of the first `legs` legs that have one, in leg order.
    pub fn first(&self, legs: usize) -> impl Iterator<Item = ExchangeId> + '_ {
        self.0[..legs.min(MAX_LEGS)].iter().filter(|&&x| x != UNASSIGNED).map(|&x| ExchangeId(x))
    }

    /// Every leg's exchange, in leg order.
    pub fn iter(&self) -> impl Iterator<Item = ExchangeId> + '_ {
        self.first(MAX_LEGS)
    }
}

/// FC's unassigned exchange id: [`crate::exchange::ExchangeTable`] never hands it out.
const UNASSIGNED: u16 = 0xFFFF;

/// Who a downstream I/O works for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DownOwner {
    /// A leg of a host I/O.
    Host {
        /// The host I/O's exchange.
        up: ExchangeId,
        /// Which leg.
        leg: u8,
    },
    /// The control path (`FPDispatchIO`).
    ControlPath(DispatchTag),
}

/// Where a downstream I/O is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DownState {
    /// Command sent, in progress.
    Active,
    /// Aborted; the slot waits for the device's BA_ACC so no late frame reaches a new exchange.
    Aborting,
}

/// A device I/O on the downstream pending list.
#[derive(Debug)]
pub struct Downstream {
    /// Who it works for.
    pub owner: DownOwner,
    /// The port towards the device.
    pub port: PortId,
    /// The device's target address.
    pub target: FcId,
    /// The device's RX_ID, once it answered.
    pub target_rx_id: u16,
    /// The switch's address as initiator on that port.
    pub initiator: FcId,
    /// The leg geometry and its device (for control-path I/O: its device range, no offset).
    pub leg: Leg,
    /// Whether it writes.
    pub write: bool,
    /// Bytes the command moves (its FCP_DL): a device's request (XFER_RDY) beyond them is
    /// not followed.
    pub transfer_len: u32,
    /// The range of leg data the device asked for (XFER_RDY) and not yet fully sent.
    pub wanted: Option<(u32, u32)>,
    /// How far into `wanted` the worker has sent.
    pub sent_upto: u32,
    /// SEQ_ID of the data sequence being sent.
    pub seq_id: u8,
    /// SEQ_CNT of the next frame of that sequence.
    pub seq_cnt: u16,
    /// When it was dispatched.
    pub timestamp: Timestamp,
    /// Where it is.
    pub state: DownState,
    /// The data of a control-path I/O; `None` for a host I/O's leg. Boxed: a host leg's
    /// state, built for every leg, is then 56 bytes smaller and drops no lists.
    pub control: Option<Box<ControlData>>,
    /// How a host I/O leg's data frames are made (when the leg starts).
    pub frames: LegFrames,
}

impl Downstream {
    /// The end of `len` bytes at `offset` of the leg's data, if its command moves them (the
    /// device may neither ask for nor send bytes past its FCP_DL).
    #[inline(always)]
    pub fn transfer_end(&self, offset: u32, len: u32) -> Option<u32> {
        offset.checked_add(len).filter(|&end| end <= self.transfer_len)
    }
}

/// The data of a control-path downstream I/O.
#[derive(Debug, Default)]
pub struct ControlData {
    /// Data a control-path read collects.
    pub collected: Vec<u8>,
    /// Payload bytes that arrived for `collected`: fewer than its length means a data frame
    /// was lost and the zeros in its place are not the device's data.
    pub collected_bytes: usize,
    /// Data a control-path write sends.
    pub data_out: Option<bytes::Bytes>,
}

/// What a downstream I/O keeps to make or rewrite its data frames quickly.
#[derive(Clone, Copy, Debug)]
pub enum LegFrames {
    /// Nothing: the control path's I/O, whose frames are built field by field.
    Plain,
    /// A host read leg: how its data frames are rewritten for the host.
    Read(DataRewrite),
    /// A host write leg: the head of the data frames it sends the device.
    Write(WriteHead),
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The compact leg list answers as the sixteen `Option<ExchangeId>` it replaces, for
        /// any exchange id a table hands out (every id but FC's unassigned one).
        #[test]
        fn leg_exchanges_match_a_list_of_options(
            ops in prop::collection::vec((0usize..MAX_LEGS, prop::option::of(0u16..0xFFFF)), 0..48),
            first in 0usize..=MAX_LEGS + 2,
        ) {
            let mut compact = LegExchanges::default();
            let mut options: [Option<ExchangeId>; MAX_LEGS] = [None; MAX_LEGS];
            for (leg, xid) in ops {
                compact.set(leg, xid.map(ExchangeId));
                options[leg] = xid.map(ExchangeId);
                for (at, option) in options.iter().enumerate() {
                    prop_assert_eq!(compact.get(at), *option);
                }
            }
            let all: Vec<ExchangeId> = options.iter().flatten().copied().collect();
            prop_assert_eq!(compact.iter().collect::<Vec<_>>(), all);
            let some: Vec<ExchangeId> = options[..first.min(MAX_LEGS)].iter().flatten().copied().collect();
            prop_assert_eq!(compact.first(first).collect::<Vec<_>>(), some);
            prop_assert_eq!(compact.get(MAX_LEGS), None);
        }
    }
}
