//! Building the frames a worker sends: whole FCoE frames from the pool (commands, XFER_RDY,
//! responses), data frames gathered from a fresh header and a shared payload slice with a
//! patched or computed CRC, and in-place header rewrites of frames it forwards.

use dve_fp_api::frame::{FRAME_CAPACITY, Frame, FrameMut, FramePool, Trailer, TxFrame};
use dve_wire::emit::WireEmit;
use dve_wire::ethernet::{ETHERTYPE_FCOE, EthernetRepr, MacAddr};
use dve_wire::fc::{self, FcHeaderRepr, FcId as WireFcId, f_ctl};
use dve_wire::fcoe::{Eof, FcoeRepr, Sof};
use dve_wire::stack::emit_fcoe_frame;

use crate::crc_patch::CrcPatcher;

/// Bytes before the FC header in an untagged FCoE frame: Ethernet (14) and FCoE (14).
pub const FC_OFFSET: usize = 28;

/// FC-2 header bytes.
pub const FC_HEADER: usize = fc::HEADER_LEN;

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
    mut buf: FrameMut,
    src: MacAddr,
    header: &FcHeaderRepr,
    sof: Sof,
    eof: Eof,
    payload: &P,
    fc_map: u32,
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
    let len = emit_fcoe_frame(buf.as_mut_slice(), &ethernet, &FcoeRepr { sof, eof }, header, payload).ok()?;
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

/// Rewrite a received FCoE frame's addresses in place (or in a copy if the buffer is shared)
/// and patch its CRC: `edit` changes the header. Only untagged frames are rewritten in place;
/// the header offset is given by `fc_start`.
pub fn rewrite_frame(
    frame: Frame,
    fc_start: usize,
    dst: MacAddr,
    src: MacAddr,
    crc: &CrcPatcher,
    edit: impl FnOnce(&mut FcHeaderRepr),
) -> Option<Frame> {
    let mut buf = match frame.try_into_mut() {
        Ok(buf) => buf,
        Err(shared) => dve_fp_api::frame::FrameMut::from_slice(shared.as_slice())?,
    };
    let bytes = buf.as_mut_slice();
    let len = bytes.len();
    if len < fc_start + FC_HEADER + 8 {
        return None;
    }
    let fc_end = len - 8;
    let old: [u8; FC_HEADER] = *bytes[fc_start..].first_chunk()?;
    let mut header = FcHeaderRepr::from_bytes(&old);
    edit(&mut header);
    let new = header_bytes(&header);
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&bytes[fc_end..fc_end + 4]);
    let patched = crc.patch(u32::from_le_bytes(stored), &old, &new, fc_end - fc_start - FC_HEADER)?;
    bytes[fc_start..fc_start + FC_HEADER].copy_from_slice(&new);
    bytes[fc_end..fc_end + 4].copy_from_slice(&patched.to_le_bytes());
    bytes[0..6].copy_from_slice(&dst.0);
    bytes[6..12].copy_from_slice(&src.0);
    Some(buf.freeze())
}
