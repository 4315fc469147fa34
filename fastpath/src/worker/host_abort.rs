//! A host's ABTS of an exchange on a virtual target. A write whose legs were sent is held
//! until every leg's own abort is answered, since until then a leg may still land: its range
//! stays serialized, drains wait for it, and only then does the control path hear
//! `WriteAborted`, with the ABTS, which it answers once the write's copies agree again.

use dve_fp_api::fault::FaultCause;
use dve_fp_api::frame::Frame;
use dve_fp_api::ids::{ExchangeId, FcId, PortId, VsegId};
use dve_fp_api::io::{HostIo, IoKind, PendingIo, PendingSide, PendingState};
use dve_fp_api::message::ToCp;
use dve_wire::fc::UNASSIGNED_X_ID;

use crate::worker::state::DownState;
use crate::worker::{Received, Worker};

/// A write its host aborted while some of its legs' aborts are unanswered.
#[derive(Debug)]
pub(super) struct AbortedWrite {
    request: HostIo,
    /// The host's OX_ID for the write: a repeated ABTS is known by it and the host.
    host_ox_id: u16,
    /// Where the ABTS came in, and the ABTS itself (the latest, if the host repeated it), for
    /// the control path to answer.
    port: PortId,
    abts: Frame,
    /// The legs whose device has not answered their ABTS yet.
    legs: Vec<ExchangeId>,
    /// The segment blocks it wrote; on the serialization list when `serialized`.
    range: Option<(VsegId, u64, u64)>,
    serialized: bool,
}

impl AbortedWrite {
    /// How `FPQueryPendingIOs` shows it: a write still in flight as far as drains go.
    pub(super) fn pending(&self) -> PendingIo {
        let (vseg, first_block, blocks) = match self.range {
            Some((vseg, start, end)) => (Some(vseg), start, u32::try_from(end - start).unwrap_or(u32::MAX)),
            None => (self.request.vseg, self.request.lba, self.request.blocks),
        };
        PendingIo {
            side: PendingSide::Upstream,
            io: None,
            dispatch: None,
            state: PendingState::Aborting,
            vseg,
            first_block,
            blocks,
            write: true,
            device: None,
            timestamp: self.request.received,
        }
    }
}

impl Worker {
    /// The host aborted an exchange: drop the worker's state, aborting its legs, and let the
    /// control path answer the ABTS (for a write with legs sent, once the legs are settled).
    pub(super) fn host_abort(&mut self, port: PortId, frame: Frame, rx: &Received) {
        let h = rx.header;
        let host = FcId::new(h.s_id.0).unwrap_or_default();
        // The RX_ID names a slot, which a new exchange may have taken since the host last heard
        // of it: an ABTS of an exchange the worker finished (its answer lost) must not abort
        // whatever holds that slot now, so the slot's host and OX_ID must be the ABTS's.
        let ours = |u: &crate::worker::state::Upstream| u.host == host && u.host_ox_id == h.ox_id;
        let xid = if h.rx_id != UNASSIGNED_X_ID && self.up.get(ExchangeId(h.rx_id)).is_some_and(ours) {
            Some(ExchangeId(h.rx_id))
        } else {
            self.up.iter().find(|(_, u)| ours(u)).map(|(t, _)| t.xid)
        };
        let Some(xid) = xid else {
            // The host repeated the ABTS of a write still held (its first went unanswered, as it
            // will be until the legs settle): the repeat waits with the write in the first's
            // place and is answered as the first would have been, after the sides agree.
            if let Some(held) = self
                .aborted_writes
                .iter_mut()
                .find(|w| w.request.initiator_fc_id == host && w.host_ox_id == h.ox_id)
            {
                held.port = port;
                held.abts = frame;
                return;
            }
            return self.control_frame(port, frame);
        };
        // A write with legs sent may have landed on some and not others.
        let landing = self.up.get(xid).filter(|u| u.request.kind == IoKind::Write).and_then(|u| {
            u.legs.iter().next()?;
            let range = u.plan.map(|p| (p.vseg, p.seg_block, p.seg_block + u64::from(p.blocks)));
            Some((u.request, u.legs, range, u.serialized && range.is_some()))
        });
        if let Some((_, _, Some(_), true)) = landing {
            // Still serialized once the host exchange is gone: no overlapping mirror or
            // journal write may start while one of this write's legs could still land.
            if let Some(slot) = self.up.slot_of(xid) {
                self.serialized.detach(slot);
            }
        }
        self.abort_upstream(xid);
        self.stats.faults.record(FaultCause::Aborted);
        let Some((request, legs, range, serialized)) = landing else {
            return self.control_frame(port, frame);
        };
        let legs = legs
            .iter()
            .filter(|&leg| self.down.get(leg).is_some_and(|d| d.state == DownState::Aborting))
            .collect();
        self.aborted_writes.push(AbortedWrite {
            request,
            host_ox_id: h.ox_id,
            port,
            abts: frame,
            legs,
            range,
            serialized,
        });
        self.settle_aborted_writes();
    }

    /// A leg's abort was answered (BA_ACC, BA_RJT) or given up on: its slot is free. An
    /// aborted write whose legs are all settled goes to the control path.
    pub(super) fn leg_abort_settled(&mut self, xid: ExchangeId) {
        if self.aborted_writes.is_empty() {
            return;
        }
        for write in &mut self.aborted_writes {
            write.legs.retain(|&leg| leg != xid);
        }
        self.settle_aborted_writes();
    }

    fn settle_aborted_writes(&mut self) {
        while let Some(at) = self.aborted_writes.iter().position(|w| w.legs.is_empty()) {
            let write = self.aborted_writes.remove(at);
            if let (Some((vseg, start, end)), true) = (write.range, write.serialized) {
                self.serialized.remove_aborted(vseg, start, end);
            }
            self.upcalls.push_back(ToCp::WriteAborted {
                request: write.request,
                port: write.port,
                abts: write.abts,
            });
        }
    }
}
