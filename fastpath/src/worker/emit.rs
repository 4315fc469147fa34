//! Building the frames a worker sends: whole FCoE frames from the pool (commands, XFER_RDY,
//! responses), data frames gathered from a fresh header and a shared payload slice with a
//! patched or computed CRC, and in-place header rewrites of frames it forwards.

use dve_fp_api::frame::{FRAME_CAPACITY, Frame, FrameMut, FramePool, Trailer, TxFrame};
use dve_fp_api::mapping::DevicePath;
use dve_wire::emit::WireEmit;
use dve_wire::ethernet::{ETHERTYPE_FCOE, EthernetRepr, MacAddr};
use dve_wire::fc::{self, FcHeaderRepr, FcId as WireFcId, f_ctl};
use dve_wire::fcoe::{Eof, FcoeRepr, Sof};
use dve_wire::fcp::{FcpCmndRepr, TaskAttribute, lun_from_index};
use dve_wire::fcp_frame::{CMND_FRAME_LEN, emit_fcp_cmnd_frame};
use dve_wire::stack::emit_fcoe_frame;

use crate::crc_patch::CrcPatcher;

/// Bytes before the FC header in an untagged FCoE frame: Ethernet (14) and FCoE (14).
pub const FC_OFFSET: usize = 28;

/// FC-2 header bytes.
pub const FC_HEADER: usize = fc::HEADER_LEN;

/// The FCoE trailer after the FC frame: CRC (4), EOF (1), reserved (3).
const FCOE_TRAILER: usize = 8;

/// The fabric-provided MAC address of an FC address.
pub fn fpma(fc_map: u32, fc_id: u32) -> MacAddr {
    MacAddr::fpma(fc_map, WireFcId(fc_id))
}

/// The 24 header bytes of `header`.
pub fn header_bytes(header: &FcHeaderRepr) -> [u8; FC_HEADER] {
    // The header fields come from parsed frames or from our own ids: always valid.
    header.to_bytes().unwrap_or_default()
}

/// Emit a whole FCoE frame into a pool buffer.
pub fn whole_frame<P: WireEmit + ?Sized>(
    pool: &FramePool,
    src: MacAddr,
    header: &FcHeaderRepr,
    sof: Sof,
    eof: Eof,
    payload: &P,
    fc_map: u32,
) -> Option<Frame> {
    whole_frame_in(pool.alloc(FRAME_CAPACITY)?, src, header, sof, eof, payload, fc_map)
}

/// Emit a whole FCoE frame into `buf`, any exclusive buffer (a pool's, or a received frame's
/// the worker is done with); every byte of the frame is written, whatever `buf` held.
pub fn whole_frame_in<P: WireEmit + ?Sized>(
    buf: FrameMut,
    src: MacAddr,
    header: &FcHeaderRepr,
    sof: Sof,
    eof: Eof,
    payload: &P,
    fc_map: u32,
) -> Option<Frame> {
    built_frame_in(buf, src, header, FcoeRepr { sof, eof }, payload, fc_map, emit_fcoe_frame::<P>)
}

/// A wire builder of whole FCoE frames: [`emit_fcoe_frame`], or one of the fixed-layout
/// builders the worker uses for the command, the transfer-ready and the response of an I/O
/// ([`dve_wire::fcp_frame::emit_fcp_cmnd_frame`], [`dve_wire::fcp_frame::emit_fcp_xfer_rdy_frame`],
/// [`dve_wire::fcp_frame::emit_fcp_rsp_frame`]).
pub type FrameBuilder<P> =
    fn(&mut [u8], &EthernetRepr, &FcoeRepr, &FcHeaderRepr, &P) -> dve_wire::Result<usize>;

/// Emit a whole FCoE frame for `header` into `buf` (any exclusive buffer) with `build`.
pub fn built_frame_in<P: ?Sized>(
    mut buf: FrameMut,
    src: MacAddr,
    header: &FcHeaderRepr,
    fcoe: FcoeRepr,
    payload: &P,
    fc_map: u32,
    build: FrameBuilder<P>,
) -> Option<Frame> {
    if !buf.set_len(FRAME_CAPACITY) {
        return None;
    }
    let ethernet = EthernetRepr {
        dst_addr: fpma(fc_map, header.d_id.0),
        src_addr: src,
        vlan: None,
        ethertype: ETHERTYPE_FCOE,
    };
    let len = build(buf.as_mut_slice(), &ethernet, &fcoe, header, payload).ok()?;
    buf.set_len(len);
    Some(buf.freeze())
}

/// A data frame for `header` whose payload is `body` (shared, not copied) followed by
/// `fill` zero bytes. `crc` is the FC CRC if already known (patched), else it is computed.
#[allow(clippy::too_many_arguments)]
pub fn gathered_data_frame(
    pool: &FramePool,
    src: MacAddr,
    header: &FcHeaderRepr,
    sof: Sof,
    eof: Eof,
    body: Frame,
    fill: usize,
    crc: Option<u32>,
    fc_map: u32,
) -> Option<TxFrame> {
    gathered_data_frame_in(pool.alloc(FC_OFFSET + FC_HEADER)?, src, header, sof, eof, body, fill, crc, fc_map)
}

/// [`gathered_data_frame`] with its headers written into `head`, any exclusive buffer.
#[allow(clippy::too_many_arguments)]
pub fn gathered_data_frame_in(
    head: FrameMut,
    src: MacAddr,
    header: &FcHeaderRepr,
    sof: Sof,
    eof: Eof,
    body: Frame,
    fill: usize,
    crc: Option<u32>,
    fc_map: u32,
) -> Option<TxFrame> {
    let h = FcHeaderRepr { f_ctl: (header.f_ctl & !f_ctl::FILL_BYTES_MASK) | fill as u32, ..*header };
    gathered_data_frame_encoded(
        head,
        src,
        &header_bytes(&h),
        header.d_id.0,
        sof,
        eof,
        body,
        fill,
        crc,
        fc_map,
    )
}

/// [`gathered_data_frame_in`] for a header already encoded, fill bits included: a caller that
/// needed the bytes anyway (to patch the CRC) encodes the header once, not twice.
#[allow(clippy::too_many_arguments)]
pub fn gathered_data_frame_encoded(
    mut head: FrameMut,
    src: MacAddr,
    hb: &[u8; FC_HEADER],
    d_id: u32,
    sof: Sof,
    eof: Eof,
    body: Frame,
    fill: usize,
    crc: Option<u32>,
    fc_map: u32,
) -> Option<TxFrame> {
    if !head.set_len(FC_OFFSET + FC_HEADER) {
        return None;
    }
    {
        let bytes = head.as_mut_slice();
        bytes[0..6].copy_from_slice(&fpma(fc_map, d_id).0);
        bytes[6..12].copy_from_slice(&src.0);
        bytes[12..14].copy_from_slice(&ETHERTYPE_FCOE.to_be_bytes());
        bytes[14..27].fill(0);
        bytes[27] = sof.code();
        bytes[FC_OFFSET..FC_OFFSET + FC_HEADER].copy_from_slice(hb);
    }
    let zeros = [0u8; 3];
    let crc = crc.unwrap_or_else(|| {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(hb);
        hasher.update(body.as_slice());
        hasher.update(&zeros[..fill]);
        hasher.finalize()
    });
    let mut tail = [0u8; 11];
    tail[..fill].fill(0);
    tail[fill..fill + 4].copy_from_slice(&crc.to_le_bytes());
    tail[fill + 4] = eof.code();
    let tail = Trailer::new(&tail[..fill + 8])?;
    Some(TxFrame { head: head.freeze(), body: Some(body), tail })
}

/// Where an untagged command frame's fields that change from command to command lie: the
/// OX_ID in the FC header, then in the FCP_CMND the RDDATA/WRDATA byte, the 16-byte CDB and
/// FCP_DL, then the CRC.
const CMND_OX_ID: usize = FC_OFFSET + 16;
const CMND_PAYLOAD: usize = FC_OFFSET + FC_HEADER;
const CMND_FLAGS: usize = CMND_PAYLOAD + 11;
const CMND_CDB: usize = CMND_PAYLOAD + 12;
const CMND_FCP_DL: usize = CMND_PAYLOAD + 28;
const CMND_CRC: usize = CMND_PAYLOAD + dve_wire::fcp::CMND_BASE_LEN;

/// Command templates kept: one per device path in use, direct-mapped by device id.
const COMMAND_TEMPLATES: usize = 64;

/// Downstream FCP_CMND frames built from per-path templates: every command a worker sends on
/// one device path has the same addresses, LUN and task attributes, so those bytes are built
/// once (by wire's fixed-layout builder) and each command copies them and writes its own
/// OX_ID, direction, CDB and FCP_DL and a fresh CRC. A template is keyed by the whole path,
/// port included, and rebuilt whenever the path it is asked for differs.
#[derive(Clone, Debug)]
pub struct CommandTemplates {
    slots: Box<[Option<(TemplateKey, CommandBytes)>]>,
}

/// A whole untagged command frame.
type CommandBytes = [u8; CMND_FRAME_LEN];

/// What a command template depends on: the device path, and the port's MAC and initiator
/// address the path's port has.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TemplateKey {
    /// The device path.
    pub path: DevicePath,
    /// The source MAC of the port the path uses.
    pub src: MacAddr,
    /// The switch's initiator address on that port.
    pub initiator: u32,
}

impl Default for CommandTemplates {
    fn default() -> Self {
        CommandTemplates { slots: vec![None; COMMAND_TEMPLATES].into_boxed_slice() }
    }
}

/// What a downstream command on `key`'s path says: its FC header and FCP_CMND (a simple
/// task, the path's LUN, the switch's initiator address on the path's port as S_ID).
pub fn command<'a>(
    key: &TemplateKey,
    ox_id: u16,
    cdb: &'a [u8],
    fcp_dl: u32,
    rddata: bool,
    wrdata: bool,
) -> (FcHeaderRepr, FcpCmndRepr<'a>) {
    let header = FcHeaderRepr {
        r_ctl: fc::r_ctl::UNSOLICITED_COMMAND,
        d_id: WireFcId(key.path.target_fc_id.get()),
        cs_ctl: 0,
        s_id: WireFcId(key.initiator),
        fc_type: fc::fc_type::FCP,
        f_ctl: f_ctl::FIRST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE,
        seq_id: 0,
        df_ctl: 0,
        seq_cnt: 0,
        ox_id,
        rx_id: fc::UNASSIGNED_X_ID,
        parameter: 0,
    };
    let cmnd = FcpCmndRepr {
        lun: lun_from_index(key.path.lun.0),
        crn: 0,
        priority: 0,
        task_attribute: TaskAttribute::Simple,
        task_management: 0,
        wrdata,
        rddata,
        cdb,
        fcp_dl,
    };
    (header, cmnd)
}

impl CommandTemplates {
    /// Build into `buf` the frame of [`command`] for a 16-byte CDB from `key`'s template
    /// (made first if the slot holds another path's). Returns the frame length, or `None` if
    /// `buf` is too short.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &mut self,
        buf: &mut [u8],
        key: &TemplateKey,
        ox_id: u16,
        cdb: &[u8; 16],
        fcp_dl: u32,
        rddata: bool,
        wrdata: bool,
        fc_map: u32,
    ) -> Option<usize> {
        let out = buf.get_mut(..CMND_FRAME_LEN)?;
        let at = key.path.device.0 as usize % COMMAND_TEMPLATES;
        let template = match &self.slots[at] {
            Some((k, bytes)) if k == key => bytes,
            _ => {
                let mut bytes = [0u8; CMND_FRAME_LEN];
                let (header, cmnd) = command(key, 0, &[0; 16], 0, false, false);
                let ethernet = EthernetRepr {
                    dst_addr: fpma(fc_map, header.d_id.0),
                    src_addr: key.src,
                    vlan: None,
                    ethertype: ETHERTYPE_FCOE,
                };
                let fcoe = FcoeRepr { sof: Sof::I3, eof: Eof::T };
                emit_fcp_cmnd_frame(&mut bytes, &ethernet, &fcoe, &header, &cmnd).ok()?;
                &self.slots[at].insert((*key, bytes)).1
            }
        };
        out.copy_from_slice(template);
        out[CMND_OX_ID..CMND_OX_ID + 2].copy_from_slice(&ox_id.to_be_bytes());
        out[CMND_FLAGS] = u8::from(rddata) << 1 | u8::from(wrdata);
        out[CMND_CDB..CMND_CDB + 16].copy_from_slice(cdb);
        out[CMND_FCP_DL..CMND_FCP_DL + 4].copy_from_slice(&fcp_dl.to_be_bytes());
        let crc = dve_wire::fcoe::fc_crc(&out[FC_OFFSET..CMND_CRC]);
        out[CMND_CRC..CMND_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        Some(CMND_FRAME_LEN)
    }
}

/// What a cut-through rewrite changes in a forwarded data frame's FC header: the addresses,
/// both exchange ids, and the relative offset moved by the leg's place in the host's data.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HeaderRewrite {
    /// New D_ID.
    pub d_id: u32,
    /// New S_ID.
    pub s_id: u32,
    /// New OX_ID.
    pub ox_id: u16,
    /// New RX_ID.
    pub rx_id: u16,
    /// Added to the parameter (relative offset), wrapping.
    pub offset_add: u32,
}

impl HeaderRewrite {
    /// The header bytes after the rewrite. Fields are patched as bytes: the frame passes
    /// through untouched otherwise, and no field is decoded that does not change.
    #[inline]
    pub fn apply(&self, old: &[u8; FC_HEADER]) -> [u8; FC_HEADER] {
        let mut new = *old;
        new[1..4].copy_from_slice(&self.d_id.to_be_bytes()[1..]);
        new[5..8].copy_from_slice(&self.s_id.to_be_bytes()[1..]);
        new[16..18].copy_from_slice(&self.ox_id.to_be_bytes());
        new[18..20].copy_from_slice(&self.rx_id.to_be_bytes());
        let parameter =
            u32::from_be_bytes([old[20], old[21], old[22], old[23]]).wrapping_add(self.offset_add);
        new[20..24].copy_from_slice(&parameter.to_be_bytes());
        new
    }
}

/// Rewrite a received FCoE frame's addresses in place (or in a copy if the buffer is shared)
/// and patch its CRC for the header change. The header offset is given by `fc_start`.
pub fn rewrite_frame(
    frame: Frame,
    fc_start: usize,
    dst: MacAddr,
    src: MacAddr,
    crc: &CrcPatcher,
    rewrite: &HeaderRewrite,
) -> Option<Frame> {
    let mut buf = match frame.try_into_mut() {
        Ok(buf) => buf,
        Err(shared) => dve_fp_api::frame::FrameMut::from_slice(shared.as_slice())?,
    };
    let bytes = buf.as_mut_slice();
    let len = bytes.len();
    if len < fc_start + FC_HEADER + FCOE_TRAILER {
        return None;
    }
    let fc_end = len - FCOE_TRAILER;
    let old: [u8; FC_HEADER] = *bytes[fc_start..].first_chunk()?;
    let new = rewrite.apply(&old);
    let stored: [u8; 4] = *bytes[fc_end..].first_chunk()?;
    let patched = crc.patch(u32::from_le_bytes(stored), &old, &new, fc_end - fc_start - FC_HEADER)?;
    bytes[fc_start..fc_start + FC_HEADER].copy_from_slice(&new);
    bytes[fc_end..fc_end + 4].copy_from_slice(&patched.to_le_bytes());
    bytes[0..6].copy_from_slice(&dst.0);
    bytes[6..12].copy_from_slice(&src.0);
    Some(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dve_wire::fc::{fc_type, r_ctl};
    use dve_wire::fcp::{FcpCmndRepr, FcpRspRepr, FcpXferRdyRepr, Residual, TaskAttribute, lun_from_index};
    use dve_wire::stack::parse_fcoe_frame;

    fn header(f_ctl: u32) -> FcHeaderRepr {
        FcHeaderRepr {
            r_ctl: r_ctl::UNSOLICITED_COMMAND,
            d_id: WireFcId(0x02_0003),
            cs_ctl: 0,
            s_id: WireFcId(0x0F_0001),
            fc_type: fc_type::FCP,
            f_ctl,
            seq_id: 7,
            df_ctl: 0,
            seq_cnt: 3,
            ox_id: 0x1234,
            rx_id: 0xFFFF,
            parameter: 0xDEAD_BEEF,
        }
    }

    /// A frame built in a reused buffer full of stale bytes equals the same frame built in a
    /// zeroed one, for payloads with and without fill bytes: the worker relies on every byte
    /// being written.
    fn independent_of_stale_bytes<P: WireEmit + ?Sized>(payload: &P) {
        let pool = FramePool::new(4, 0);
        let src = MacAddr([2, 0, 0, 0, 0, 9]);
        let h = header(f_ctl::FIRST_SEQUENCE | f_ctl::END_SEQUENCE | 3);
        let mut dirty = pool.alloc(FRAME_CAPACITY).unwrap();
        dirty.as_mut_slice().fill(0xA5);
        let ours = whole_frame_in(dirty, src, &h, Sof::I3, Eof::T, payload, 0x0E_FC00).unwrap();
        let ethernet = EthernetRepr {
            dst_addr: fpma(0x0E_FC00, h.d_id.0),
            src_addr: src,
            vlan: None,
            ethertype: ETHERTYPE_FCOE,
        };
        let mut theirs = vec![0u8; FRAME_CAPACITY];
        let len =
            emit_fcoe_frame(&mut theirs, &ethernet, &FcoeRepr { sof: Sof::I3, eof: Eof::T }, &h, payload)
                .unwrap();
        assert_eq!(ours.as_slice(), &theirs[..len]);
        parse_fcoe_frame(ours.as_slice()).expect("a valid frame");
    }

    proptest::proptest! {
        /// A command built from a path's template is byte for byte the one wire's builder
        /// writes, whichever paths shared the template slot before (ids 64 apart share one).
        #[test]
        fn templated_commands_match_the_builder(
            uses in proptest::collection::vec(
                (0u32..3, 0u16..2, proptest::prelude::any::<(u16, [u8; 16], u32, bool, bool)>()),
                1..12,
            ),
        ) {
            let mut templates = CommandTemplates::default();
            for (device, port, (ox, cdb, fcp_dl, rddata, wrdata)) in uses {
                let key = TemplateKey {
                    path: DevicePath {
                        device: dve_fp_api::ids::DeviceId(1 + 64 * device),
                        port: dve_fp_api::ids::PortId(port),
                        target_fc_id: dve_fp_api::ids::FcId::new(0x02_0001 + device).unwrap(),
                        lun: dve_fp_api::ids::Lun(device as u16),
                        block_size: 512,
                    },
                    src: MacAddr([2, 0, 0, 0, 0, port as u8]),
                    initiator: 0x0F_0000 + u32::from(port),
                };
                let mut ours = [0xA5u8; 128];
                let len = templates.build(&mut ours, &key, ox, &cdb, fcp_dl, rddata, wrdata, 0x0E_FC00);
                let (header, cmnd) = command(&key, ox, &cdb, fcp_dl, rddata, wrdata);
                let ethernet = EthernetRepr {
                    dst_addr: fpma(0x0E_FC00, header.d_id.0),
                    src_addr: key.src,
                    vlan: None,
                    ethertype: ETHERTYPE_FCOE,
                };
                let mut theirs = [0x5Au8; 128];
                let fcoe = FcoeRepr { sof: Sof::I3, eof: Eof::T };
                let expected = emit_fcp_cmnd_frame(&mut theirs, &ethernet, &fcoe, &header, &cmnd).unwrap();
                proptest::prop_assert_eq!(len, Some(expected));
                proptest::prop_assert_eq!(&ours[..expected], &theirs[..expected]);
            }
        }
    }

    #[test]
    fn a_header_rewrite_changes_the_named_fields_only() {
        let old = header(f_ctl::RELATIVE_OFFSET | 2);
        let rewrite = HeaderRewrite {
            d_id: 0x01_0001,
            s_id: 0x0A_0001,
            ox_id: 9,
            rx_id: 0x4002,
            offset_add: 0x2000_0000,
        };
        let new = FcHeaderRepr::from_bytes(&rewrite.apply(&header_bytes(&old)));
        let expected = FcHeaderRepr {
            d_id: WireFcId(0x01_0001),
            s_id: WireFcId(0x0A_0001),
            ox_id: 9,
            rx_id: 0x4002,
            parameter: 0xDEAD_BEEFu32.wrapping_add(0x2000_0000),
            ..old
        };
        assert_eq!(new, expected);
    }

    #[test]
    fn whole_frames_do_not_depend_on_what_the_buffer_held() {
        let cdb = [0x88u8, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 8, 0, 0];
        independent_of_stale_bytes(&FcpCmndRepr {
            lun: lun_from_index(3),
            crn: 0,
            priority: 0,
            task_attribute: TaskAttribute::Simple,
            task_management: 0,
            wrdata: false,
            rddata: true,
            cdb: &cdb,
            fcp_dl: 4096,
        });
        independent_of_stale_bytes(&FcpRspRepr::good());
        let sense = [0x70u8, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0];
        independent_of_stale_bytes(&FcpRspRepr {
            status_qualifier: 0,
            confirm_requested: false,
            scsi_status: 2,
            residual: Residual::Under(512),
            response_info: None,
            sense: Some(&sense),
        });
        independent_of_stale_bytes(&FcpXferRdyRepr { data_ro: 2048, burst_len: 4096 });
        independent_of_stale_bytes(&[1u8, 2, 3, 4, 5][..]);
        independent_of_stale_bytes(&[][..] as &[u8]);
    }
}
