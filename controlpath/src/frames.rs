//! Frames the control path sends: FCoE frames built with `dve-wire` for the fabric services,
//! link-service replies and the control path's own exchanges, addressed with fabric-provided
//! MAC addresses so the receiving N_Port accepts them.

use dve_fp_api::frame::{Frame, TxFrame};
use dve_fp_api::ids::{ExchangeId, ExchangeIdLayout, WorkerId};
use dve_wire::emit::WireEmit;
use dve_wire::ethernet::{ETHERTYPE_FCOE, EthernetRepr, MacAddr};
use dve_wire::fc::{FcHeaderRepr, FcId as WireFcId, f_ctl};
use dve_wire::fcoe::{Eof, FcoeRepr, Sof};
use dve_wire::stack::emit_fcoe_frame;

/// Largest frame the control path builds (a full FC payload plus every header).
const MAX_FRAME: usize = 2200;

/// The FCoE FC-MAP: the high 24 bits of fabric-provided MAC addresses.
pub const DEFAULT_FC_MAP: u32 = 0x0E_FC00;

/// The fabric-provided MAC address of an FC address.
pub fn fpma(fc_map: u32, fc_id: u32) -> MacAddr {
    let v = (u64::from(fc_map) << 24) | u64::from(fc_id & 0x00FF_FFFF);
    let b = v.to_be_bytes();
    MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Builds whole FCoE frames for one engine.
#[derive(Clone, Copy, Debug)]
pub struct FrameBuilder {
    /// The engine's FC-MAP.
    pub fc_map: u32,
}

impl FrameBuilder {
    /// Build a frame from `s_id` to `d_id` on a port with MAC `src`. `None` only if the
    /// payload does not fit an FC frame, which the control path never builds.
    pub fn frame<P: WireEmit + ?Sized>(
        &self,
        src: MacAddr,
        header: &FcHeaderRepr,
        payload: &P,
    ) -> Option<TxFrame> {
        let eth = EthernetRepr {
            dst_addr: fpma(self.fc_map, header.d_id.0),
            src_addr: src,
            vlan: None,
            ethertype: ETHERTYPE_FCOE,
        };
        let mut buf = [0u8; MAX_FRAME];
        let sof =
            if header.f_ctl & f_ctl::FIRST_SEQUENCE != 0 || header.seq_cnt == 0 { Sof::I3 } else { Sof::N3 };
        let eof = if header.f_ctl & f_ctl::END_SEQUENCE != 0 { Eof::T } else { Eof::N };
        let len = emit_fcoe_frame(&mut buf, &eth, &FcoeRepr { sof, eof }, header, payload).ok()?;
        Frame::copy_from(&buf[..len]).map(TxFrame::whole)
    }

    /// The reply to a request: addresses swapped, the responder's exchange context, last
    /// sequence, with `rx_id` as the responder's exchange id.
    pub fn reply<P: WireEmit + ?Sized>(
        &self,
        src: MacAddr,
        request: &FcHeaderRepr,
        r_ctl: u8,
        fc_type: u8,
        rx_id: u16,
        payload: &P,
    ) -> Option<TxFrame> {
        let header = FcHeaderRepr {
            r_ctl,
            d_id: request.s_id,
            cs_ctl: 0,
            s_id: request.d_id,
            fc_type,
            f_ctl: f_ctl::EXCHANGE_CONTEXT
                | f_ctl::LAST_SEQUENCE
                | f_ctl::END_SEQUENCE
                | f_ctl::SEQUENCE_INITIATIVE,
            seq_id: request.seq_id.wrapping_add(1),
            df_ctl: 0,
            seq_cnt: 0,
            ox_id: request.ox_id,
            rx_id,
            parameter: 0,
        };
        self.frame(src, &header, payload)
    }

    /// A request originating a new exchange `ox_id` from `s_id` to `d_id`.
    #[allow(clippy::too_many_arguments)]
    pub fn request<P: WireEmit + ?Sized>(
        &self,
        src: MacAddr,
        s_id: u32,
        d_id: u32,
        r_ctl: u8,
        fc_type: u8,
        ox_id: u16,
        payload: &P,
    ) -> Option<TxFrame> {
        let header = FcHeaderRepr {
            r_ctl,
            d_id: WireFcId(d_id),
            cs_ctl: 0,
            s_id: WireFcId(s_id),
            fc_type,
            f_ctl: f_ctl::FIRST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE,
            seq_id: 0,
            df_ctl: 0,
            seq_cnt: 0,
            ox_id,
            rx_id: dve_wire::fc::UNASSIGNED_X_ID,
            parameter: 0,
        };
        self.frame(src, &header, payload)
    }
}

/// Exchange ids for exchanges the control path originates: the reserved worker number of the
/// layout names them, so workers hand their frames back to the control path.
#[derive(Clone, Debug)]
pub struct ControlExchangeIds {
    layout: ExchangeIdLayout,
    next: u16,
}

impl ControlExchangeIds {
    /// Ids in `layout`'s reserved (last) worker number.
    pub fn new(layout: ExchangeIdLayout) -> ControlExchangeIds {
        ControlExchangeIds { layout, next: 0 }
    }

    /// The worker number the control path's exchanges carry.
    pub fn worker(&self) -> WorkerId {
        WorkerId((self.layout.max_workers() - 1) as u8)
    }

    /// The next id (slots wrap; the control path has few exchanges open at once).
    pub fn allocate(&mut self) -> ExchangeId {
        let slots = self.layout.slots_per_worker() as u16;
        // Slot numbers that would compose to 0xFFFF (the unassigned id) are skipped.
        loop {
            let slot = self.next % slots.max(1);
            self.next = self.next.wrapping_add(1);
            if let Some(id) = self.layout.compose(self.worker(), slot)
                && id.0 != dve_wire::fc::UNASSIGNED_X_ID
            {
                return id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fpma_puts_the_fc_map_above_the_address() {
        assert_eq!(fpma(DEFAULT_FC_MAP, 0x01_02_03).0, [0x0e, 0xfc, 0x00, 0x01, 0x02, 0x03]);
    }

    #[test]
    fn control_exchange_ids_carry_the_reserved_worker_and_skip_unassigned() {
        let layout = ExchangeIdLayout::new(4).unwrap();
        let mut ids = ControlExchangeIds::new(layout);
        for _ in 0..10_000 {
            let id = ids.allocate();
            assert_eq!(layout.worker(id), WorkerId(15));
            assert_ne!(id.0, 0xFFFF);
        }
    }
}
