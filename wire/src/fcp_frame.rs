//! Whole FCoE frames of the shapes every I/O carries: an FCP_CMND whose CDB fits 16 bytes, an
//! FCP_XFER_RDY (every write) and an FCP_RSP with neither sense nor response information,
//! untagged. They are written at fixed offsets, byte for byte what [`emit_fcoe_frame`] writes
//! for the same arguments: a switch builds one of each per I/O, and the general builder's
//! layered length and room checks cost more than the bytes. Any other shape goes to
//! [`emit_fcoe_frame`].

use crate::emit::WireEmit;
use crate::error::Result;
use crate::ethernet::{self, ETHERTYPE_FCOE, EthernetRepr};
use crate::fc::{self, FcHeaderRepr, f_ctl};
use crate::fcoe::{self, FcoeRepr};
use crate::fcp::{
    CMND_BASE_LEN, FcpCmndRepr, FcpRspRepr, FcpXferRdyRepr, RSP_BASE_LEN, XFER_RDY_LEN, rsp_flags,
};
use crate::stack::{emit_fcoe_frame, emit_fcoe_header, seal_fcoe_frame};

/// Where the FC frame starts in an untagged FCoE frame.
const FC_START: usize = ethernet::HEADER_LEN + fcoe::HEADER_LEN;

/// Where the FC payload starts.
const PAYLOAD_START: usize = FC_START + fc::HEADER_LEN;

/// Bytes of an untagged FCoE frame carrying an FCP_CMND with a CDB of up to 16 bytes.
pub const CMND_FRAME_LEN: usize = PAYLOAD_START + CMND_BASE_LEN + fcoe::TRAILER_LEN;

/// Bytes of an untagged FCoE frame carrying an FCP_RSP without sense or response information.
pub const RSP_FRAME_LEN: usize = PAYLOAD_START + RSP_BASE_LEN + fcoe::TRAILER_LEN;

/// Bytes of an untagged FCoE frame carrying an FCP_XFER_RDY.
pub const XFER_RDY_FRAME_LEN: usize = PAYLOAD_START + XFER_RDY_LEN + fcoe::TRAILER_LEN;

/// Writes the Ethernet and FCoE headers and the FC header (no fill bytes: both fixed payloads
/// are whole words) of an untagged frame.
#[inline]
fn envelope(b: &mut [u8], ethernet: &EthernetRepr, fcoe: &FcoeRepr, header: &FcHeaderRepr) -> Result<()> {
    let header = FcHeaderRepr { f_ctl: header.f_ctl & !f_ctl::FILL_BYTES_MASK, ..*header };
    b[FC_START..PAYLOAD_START].copy_from_slice(&header.to_bytes()?);
    b[0..6].copy_from_slice(&ethernet.dst_addr.0);
    b[6..12].copy_from_slice(&ethernet.src_addr.0);
    b[12..14].copy_from_slice(&ETHERTYPE_FCOE.to_be_bytes());
    emit_fcoe_header(b, ethernet::HEADER_LEN, fcoe.sof);
    Ok(())
}

/// Writes an FCoE frame carrying `cmnd`, as [`emit_fcoe_frame`] does; returns its length.
pub fn emit_fcp_cmnd_frame(
    buf: &mut [u8],
    ethernet: &EthernetRepr,
    fcoe: &FcoeRepr,
    header: &FcHeaderRepr,
    cmnd: &FcpCmndRepr<'_>,
) -> Result<usize> {
    let fixed = ethernet.vlan.is_none() && cmnd.cdb.len() <= 16 && cmnd.priority <= 0x0F;
    let Some(b) = buf.get_mut(..CMND_FRAME_LEN).filter(|_| fixed) else {
        return emit_fcoe_frame(buf, ethernet, fcoe, header, cmnd);
    };
    envelope(b, ethernet, fcoe, header)?;
    let p = &mut b[PAYLOAD_START..PAYLOAD_START + CMND_BASE_LEN];
    p[0..8].copy_from_slice(&cmnd.lun);
    p[8] = cmnd.crn;
    p[9] = (cmnd.priority << 3) | cmnd.task_attribute as u8;
    p[10] = cmnd.task_management;
    p[11] = u8::from(cmnd.rddata) << 1 | u8::from(cmnd.wrdata);
    let mut cdb = [0u8; 16];
    cdb[..cmnd.cdb.len()].copy_from_slice(cmnd.cdb);
    p[12..28].copy_from_slice(&cdb);
    p[28..32].copy_from_slice(&cmnd.fcp_dl.to_be_bytes());
    seal_fcoe_frame(b, FC_START, fcoe.eof);
    Ok(CMND_FRAME_LEN)
}

/// Writes an FCoE frame carrying `rsp`, as [`emit_fcoe_frame`] does; returns its length.
pub fn emit_fcp_rsp_frame(
    buf: &mut [u8],
    ethernet: &EthernetRepr,
    fcoe: &FcoeRepr,
    header: &FcHeaderRepr,
    rsp: &FcpRspRepr<'_>,
) -> Result<usize> {
    let fixed = ethernet.vlan.is_none() && rsp.sense.is_none() && rsp.response_info.is_none();
    let Some(b) = buf.get_mut(..RSP_FRAME_LEN).filter(|_| fixed) else {
        return emit_fcoe_frame(buf, ethernet, fcoe, header, rsp);
    };
    debug_assert_eq!(rsp.buffer_len(), RSP_BASE_LEN);
    envelope(b, ethernet, fcoe, header)?;
    let (resid_flag, resid) = rsp.residual.flag_and_count();
    let p = &mut b[PAYLOAD_START..PAYLOAD_START + RSP_BASE_LEN];
    p.fill(0);
    p[8..10].copy_from_slice(&rsp.status_qualifier.to_be_bytes());
    p[10] = resid_flag | if rsp.confirm_requested { rsp_flags::CONF_REQ } else { 0 };
    p[11] = rsp.scsi_status;
    p[12..16].copy_from_slice(&resid.to_be_bytes());
    seal_fcoe_frame(b, FC_START, fcoe.eof);
    Ok(RSP_FRAME_LEN)
}

/// Writes an FCoE frame carrying `ready`, as [`emit_fcoe_frame`] does; returns its length.
pub fn emit_fcp_xfer_rdy_frame(
    buf: &mut [u8],
    ethernet: &EthernetRepr,
    fcoe: &FcoeRepr,
    header: &FcHeaderRepr,
    ready: &FcpXferRdyRepr,
) -> Result<usize> {
    let Some(b) = buf.get_mut(..XFER_RDY_FRAME_LEN).filter(|_| ethernet.vlan.is_none()) else {
        return emit_fcoe_frame(buf, ethernet, fcoe, header, ready);
    };
    envelope(b, ethernet, fcoe, header)?;
    let p = &mut b[PAYLOAD_START..PAYLOAD_START + XFER_RDY_LEN];
    p[0..4].copy_from_slice(&ready.data_ro.to_be_bytes());
    p[4..8].copy_from_slice(&ready.burst_len.to_be_bytes());
    p[8..12].fill(0);
    seal_fcoe_frame(b, FC_START, fcoe.eof);
    Ok(XFER_RDY_FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethernet::{MacAddr, VlanTag};
    use crate::fc::FcId;
    use crate::fcoe::{Eof, Sof};
    use crate::fcp::{Residual, TaskAttribute};
    use proptest::prelude::*;

    fn header(
        d_id: u32,
        s_id: u32,
        f_ctl: u32,
        ids: (u16, u16),
        seq: (u8, u16),
        parameter: u32,
    ) -> FcHeaderRepr {
        FcHeaderRepr {
            r_ctl: 0x06,
            d_id: FcId(d_id),
            cs_ctl: 0,
            s_id: FcId(s_id),
            fc_type: 0x08,
            f_ctl,
            seq_id: seq.0,
            df_ctl: 0,
            seq_cnt: seq.1,
            ox_id: ids.0,
            rx_id: ids.1,
            parameter,
        }
    }

    fn ethernet(vlan: Option<u16>) -> EthernetRepr {
        EthernetRepr {
            dst_addr: MacAddr([0x0E, 0xFC, 0, 1, 2, 3]),
            src_addr: MacAddr([2, 0, 0, 0, 0, 1]),
            vlan: vlan.map(|id| VlanTag { pcp: 3, dei: false, vid: id }),
            ethertype: 0,
        }
    }

    /// Both builders into buffers full of stale bytes; the results must match exactly,
    /// errors included.
    fn same<F, G>(fixed: F, general: G)
    where
        F: Fn(&mut [u8]) -> Result<usize>,
        G: Fn(&mut [u8]) -> Result<usize>,
    {
        let (mut a, mut b) = ([0xA5u8; 2200], [0x5Au8; 2200]);
        let (ra, rb) = (fixed(&mut a), general(&mut b));
        assert_eq!(ra, rb);
        if let Ok(n) = ra {
            assert_eq!(a[..n], b[..n]);
        }
    }

    proptest! {
        #[test]
        fn commands_match_the_general_builder(
            d_id in 0u32..0x0200_0000, s_id in 0u32..0x0100_0000, f_ctl in 0u32..0x0200_0000,
            ids: (u16, u16), seq: (u8, u16), lun: [u8; 8], crn: u8, priority in 0u8..0x14,
            tm: u8, rddata: bool, wrdata: bool, cdb in proptest::collection::vec(any::<u8>(), 0..=24),
            fcp_dl: u32, vlan in proptest::option::of(0u16..4095), sof_i3: bool,
        ) {
            let h = header(d_id, s_id, f_ctl, ids, seq, 0);
            let cmnd = FcpCmndRepr {
                lun, crn, priority, task_attribute: TaskAttribute::Simple, task_management: tm,
                rddata, wrdata, cdb: &cdb, fcp_dl,
            };
            let eth = ethernet(vlan);
            let fcoe = FcoeRepr { sof: if sof_i3 { Sof::I3 } else { Sof::N3 }, eof: Eof::T };
            same(
                |buf| emit_fcp_cmnd_frame(buf, &eth, &fcoe, &h, &cmnd),
                |buf| emit_fcoe_frame(buf, &eth, &fcoe, &h, &cmnd),
            );
        }

        #[test]
        fn responses_match_the_general_builder(
            d_id in 0u32..0x0100_0000, s_id in 0u32..0x0100_0000, f_ctl in 0u32..0x0100_0000,
            ids: (u16, u16), seq: (u8, u16), parameter: u32, qualifier: u16, confirm: bool,
            status: u8, residual in 0u8..3, resid: u32,
            sense in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
            vlan in proptest::option::of(0u16..4095),
        ) {
            let h = header(d_id, s_id, f_ctl, ids, seq, parameter);
            let rsp = FcpRspRepr {
                status_qualifier: qualifier,
                confirm_requested: confirm,
                scsi_status: status,
                residual: match residual { 0 => Residual::None, 1 => Residual::Over(resid), _ => Residual::Under(resid) },
                response_info: None,
                sense: sense.as_deref(),
            };
            let eth = ethernet(vlan);
            let fcoe = FcoeRepr { sof: Sof::I3, eof: Eof::T };
            same(
                |buf| emit_fcp_rsp_frame(buf, &eth, &fcoe, &h, &rsp),
                |buf| emit_fcoe_frame(buf, &eth, &fcoe, &h, &rsp),
            );
        }
    }

    proptest! {
        #[test]
        fn transfer_readies_match_the_general_builder(
            d_id in 0u32..0x0200_0000, s_id in 0u32..0x0100_0000, f_ctl in 0u32..0x0200_0000,
            ids: (u16, u16), seq: (u8, u16), parameter: u32, data_ro: u32, burst_len: u32,
            vlan in proptest::option::of(0u16..4095), room in 0usize..96,
        ) {
            let h = header(d_id, s_id, f_ctl, ids, seq, parameter);
            let ready = FcpXferRdyRepr { data_ro, burst_len };
            let eth = ethernet(vlan);
            let fcoe = FcoeRepr { sof: Sof::I3, eof: Eof::T };
            // Short buffers too: both builders must refuse exactly the same ones.
            same(
                |buf| emit_fcp_xfer_rdy_frame(&mut buf[..room], &eth, &fcoe, &h, &ready),
                |buf| emit_fcoe_frame(&mut buf[..room], &eth, &fcoe, &h, &ready),
            );
        }
    }

    #[test]
    fn a_short_buffer_is_refused_as_the_general_builder_refuses_it() {
        let h = header(1, 2, 0, (1, 2), (0, 0), 0);
        let cdb = [0x28u8; 10];
        let cmnd = FcpCmndRepr {
            lun: [0; 8],
            crn: 0,
            priority: 0,
            task_attribute: TaskAttribute::Simple,
            task_management: 0,
            rddata: true,
            wrdata: false,
            cdb: &cdb,
            fcp_dl: 512,
        };
        let fcoe = FcoeRepr { sof: Sof::I3, eof: Eof::T };
        let mut short = [0u8; CMND_FRAME_LEN - 1];
        let fixed = emit_fcp_cmnd_frame(&mut short, &ethernet(None), &fcoe, &h, &cmnd);
        let general = emit_fcoe_frame(&mut short, &ethernet(None), &fcoe, &h, &cmnd);
        assert!(fixed.is_err());
        assert_eq!(fixed, general);
    }
}
