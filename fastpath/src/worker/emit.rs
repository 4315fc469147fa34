//! Building the frames a worker sends: whole FCoE frames (commands, XFER_RDY, responses),
//! most of them copied from per-key templates with their own fields and CRC written in
//! (`Templates`), data frames gathered from a fresh header and a shared payload slice with a
//! patched or computed CRC, and in-place header rewrites of frames it forwards.

use dve_fp_api::frame::{FRAME_CAPACITY, Frame, FrameMut, FramePool, Trailer, TxFrame};
use dve_fp_api::mapping::DevicePath;
use dve_wire::emit::WireEmit;
use dve_wire::ethernet::{ETHERTYPE_FCOE, EthernetRepr, MacAddr};
use dve_wire::fc::{self, FcHeaderRepr, FcId as WireFcId, f_ctl};
use dve_wire::fcoe::{Eof, FcoeRepr, Sof};
use dve_wire::fcp::{FcpCmndRepr, FcpRspRepr, FcpXferRdyRepr, Residual, TaskAttribute, lun_from_index};
use dve_wire::fcp_frame::{
    CMND_FRAME_LEN, RSP_FRAME_LEN, XFER_RDY_FRAME_LEN, emit_fcp_cmnd_frame, emit_fcp_rsp_frame,
    emit_fcp_xfer_rdy_frame,
};
use dve_wire::stack::emit_fcoe_frame;

use crate::crc_patch::{CrcPatcher, EXCHANGE_ID_BITS, HOT_SHIFT, MAX_SHIFT, SEQ_ID_BITS};

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

/// The 24 header bytes of `header`, as [`header_bytes`] gives them (zeros for a field out of
/// range), written a big-endian word at a time: the worker encodes a header for every data
/// frame it sends a device.
pub fn encode_header(header: &FcHeaderRepr) -> [u8; FC_HEADER] {
    let (d_id, s_id) = (u64::from(header.d_id.0), u64::from(header.s_id.0));
    if d_id > 0xFF_FFFF || s_id > 0xFF_FFFF || header.f_ctl > 0xFF_FFFF {
        return [0; FC_HEADER];
    }
    let words = [
        u64::from(header.r_ctl) << 56 | d_id << 32 | u64::from(header.cs_ctl) << 24 | s_id,
        u64::from(header.fc_type) << 56
            | u64::from(header.f_ctl) << 32
            | u64::from(header.seq_id) << 24
            | u64::from(header.df_ctl) << 16
            | u64::from(header.seq_cnt),
        u64::from(header.ox_id) << 48 | u64::from(header.rx_id) << 32 | u64::from(header.parameter),
    ];
    let mut bytes = [0u8; FC_HEADER];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    bytes
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
    let tail = Trailer::fcoe(fill, crc, eof.code())?;
    Some(TxFrame { head: head.freeze(), body: Some(body), tail })
}

/// Where an untagged frame's payload starts.
const PAYLOAD: usize = FC_OFFSET + FC_HEADER;

/// The head of every data frame one write leg sends its device, with the fields the leg fixes
/// worked out once when the leg starts: the MACs (the device's FPMA, the port's) and the FC
/// header's R_CTL and addresses. Each frame writes them, the constant EtherType and reserved
/// bytes, and SOF, F_CTL, SEQ_ID, SEQ_CNT, OX_ID, RX_ID and the relative offset
/// ([`WriteHead::header`], [`WriteHead::data_frame`]), so a frame needs neither the port's
/// MAC looked up nor the device's MAC computed again. Held to [`encode_header`] and
/// [`gathered_data_frame_encoded`] byte for byte by property tests.
#[derive(Clone, Copy, Debug)]
pub struct WriteHead {
    /// Destination then source MAC.
    macs: [u8; 12],
    /// Header bytes 0..8 as a big-endian word: R_CTL, D_ID, CS_CTL (zero), S_ID.
    word0: u64,
    /// The CRC change of the last host frame the leg forwarded whole (see
    /// [`WriteHead::header_change`]).
    last: LastChange,
}

/// The CRC change of a host data frame's header becoming a leg's, remembered with what it was
/// for: the header's change (its three big-endian words XORed) and the bytes after the header.
/// The frames of one sequence usually change alike: the same addresses, exchange ids, SEQ_ID
/// and F_CTL on both sides, the same SEQ_CNT, the offset moved by the same amount (not at
/// all for a leg whose data starts where the host's does). So a leg's next frame reuses its
/// previous one's change, without the address memo's hash, two slicing steps and the shift.
#[derive(Clone, Copy, Debug)]
struct LastChange {
    deltas: [u64; 3],
    /// [`LastChange::NONE`] until a change is remembered.
    trailing: u32,
    change: u32,
}

impl LastChange {
    /// Nothing remembered: no frame has this many bytes after its header (more than
    /// [`crate::crc_patch::MAX_SHIFT`]).
    const NONE: LastChange = LastChange { deltas: [0; 3], trailing: u32::MAX, change: 0 };
}

/// Slots of [`WriteChanges`]: a worker's write legs go between few (host, device) pairs at a
/// time.
const WRITE_SLOTS: usize = 16;

/// The last CRC change a write leg computed (see [`LastChange`]), per change of the
/// addresses (header bytes 0..8), direct-mapped: a new leg's first frame starts from it
/// ([`WriteHead::header_change`]).
#[derive(Clone, Debug)]
pub struct WriteChanges {
    slots: [LastChange; WRITE_SLOTS],
}

impl Default for WriteChanges {
    fn default() -> Self {
        WriteChanges { slots: [LastChange::NONE; WRITE_SLOTS] }
    }
}

/// Bytes 12..28 of every untagged FCoE frame before its SOF: the EtherType, then the FCoE
/// version and reserved bytes (zero).
const FCOE_AFTER_MACS: [u8; 16] = {
    let mut b = [0u8; 16];
    let ethertype = ETHERTYPE_FCOE.to_be_bytes();
    b[0] = ethertype[0];
    b[1] = ethertype[1];
    b
};

/// The fields of one write data frame a [`WriteHead`] leaves to the frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct WriteFields {
    /// F_CTL, fill bits included (at most 24 bits).
    pub f_ctl: u32,
    /// SEQ_ID.
    pub seq_id: u8,
    /// SEQ_CNT.
    pub seq_cnt: u16,
    /// The leg's exchange (OX_ID).
    pub ox_id: u16,
    /// The device's RX_ID.
    pub rx_id: u16,
    /// The relative offset.
    pub parameter: u32,
}

impl WriteHead {
    /// The head of solicited FCP data frames from `s_id` (on the port with MAC `src`) to
    /// `d_id`; `None` if an address is out of range (the slow path then encodes each header
    /// itself).
    pub fn new(src: MacAddr, d_id: u32, s_id: u32, fc_map: u32) -> Option<WriteHead> {
        if d_id > 0xFF_FFFF || s_id > 0xFF_FFFF {
            return None;
        }
        let mut macs = [0u8; 12];
        macs[..6].copy_from_slice(&fpma(fc_map, d_id).0);
        macs[6..].copy_from_slice(&src.0);
        Some(WriteHead {
            macs,
            word0: u64::from(fc::r_ctl::SOLICITED_DATA) << 56 | u64::from(d_id) << 32 | u64::from(s_id),
            last: LastChange::NONE,
        })
    }

    /// The CRC change of a host data frame's FC header going from `old` to the leg's `new`,
    /// with `trailing` bytes after it: what [`AddressChanges::header_change`] gives, the
    /// leg's last answer when the header changes as it did for the leg's last frame (see
    /// [`LastChange`]). `None` if `trailing` exceeds [`crate::crc_patch::MAX_SHIFT`].
    #[inline(always)]
    pub fn header_change(
        &mut self,
        (addresses, earlier): (&mut AddressChanges, &mut WriteChanges),
        crc: &CrcPatcher,
        old: &[u8; FC_HEADER],
        new: &[u8; FC_HEADER],
        trailing: usize,
    ) -> Option<u32> {
        let deltas = header_deltas(old, new);
        // The sentinel never matches: a trailing that long has no change to give.
        if trailing == self.last.trailing as usize && deltas == self.last.deltas && trailing <= MAX_SHIFT {
            return Some(self.last.change);
        }
        let seed =
            &mut earlier.slots[(deltas[0].wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % WRITE_SLOTS];
        let (d1, d2) = (deltas[1] ^ seed.deltas[1], deltas[2] ^ seed.deltas[2]);
        // A leg's first frame usually changes its header as the frames of an earlier leg with
        // the same addresses did but for the SEQ_IDs and exchange ids: the CRC is linear, so
        // the change that leg computed is corrected by theirs.
        let change = if trailing == HOT_SHIFT
            && seed.trailing as usize == HOT_SHIFT
            && deltas[0] == seed.deltas[0]
            && d1 & !SEQ_ID_BITS == 0
            && d2 & !EXCHANGE_ID_BITS == 0
        {
            seed.change ^ crc.ids_change(d1, d2)
        } else {
            addresses.deltas_change(crc, deltas, (old, new), trailing)?
        };
        self.last = LastChange { deltas, trailing: u32::try_from(trailing).ok()?, change };
        *seed = self.last;
        Some(change)
    }

    /// The FC header of a frame with `fields`, as [`encode_header`] gives it for the header
    /// the slow path builds (`None` if F_CTL is out of range).
    #[inline]
    pub fn header(&self, fields: WriteFields) -> Option<[u8; FC_HEADER]> {
        if fields.f_ctl > 0xFF_FFFF {
            return None;
        }
        let words = [
            self.word0,
            u64::from(fc::fc_type::FCP) << 56
                | u64::from(fields.f_ctl) << 32
                | u64::from(fields.seq_id) << 24
                | u64::from(fields.seq_cnt),
            u64::from(fields.ox_id) << 48 | u64::from(fields.rx_id) << 32 | u64::from(fields.parameter),
        ];
        let mut bytes = [0u8; FC_HEADER];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        Some(bytes)
    }

    /// The data frame with FC header `hb` (from [`WriteHead::header`]) written into `head`,
    /// `body` (shared, not copied) and `fill` zero bytes behind it: what
    /// [`gathered_data_frame_encoded`] builds for the same header.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn data_frame(
        &self,
        mut head: FrameMut,
        hb: &[u8; FC_HEADER],
        sof: Sof,
        eof: Eof,
        body: Frame,
        fill: usize,
        crc: Option<u32>,
    ) -> Option<TxFrame> {
        if fill > 3 || !head.set_len(PAYLOAD) {
            return None;
        }
        self.write_head(head.bytes_mut().first_chunk_mut::<PAYLOAD>()?, hb, sof);
        let crc = crc.unwrap_or_else(|| {
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(hb);
            hasher.update(body.as_slice());
            hasher.update(&[0u8; 3][..fill]);
            hasher.finalize()
        });
        let tail = Trailer::fcoe(fill, crc, eof.code())?;
        Some(TxFrame { head: head.freeze(), body: Some(body), tail })
    }
}

impl WriteHead {
    /// The data frame [`WriteHead::data_frame`] builds for FC header `hb`, SOF, EOF and CRC
    /// `crc`, written over the host's data frame `frame` it forwards whole: an untagged FCoE
    /// frame holding an FC frame of `fc_len` bytes (header, payload, zero fill) followed by
    /// nothing but its CRC and EOF with their reserved bytes, so the two frames have the same
    /// length and payload and differ only in the headers and trailer written here. The frame
    /// comes back unchanged if its storage is shared or it is longer or shorter than that (a
    /// tagged frame is 4 bytes longer).
    #[inline(always)]
    pub fn data_frame_in_place(
        &self,
        frame: Frame,
        hb: &[u8; FC_HEADER],
        sof: Sof,
        eof: Eof,
        fc_len: usize,
        crc: u32,
    ) -> Result<TxFrame, Frame> {
        let fc_end = FC_OFFSET + fc_len;
        if frame.len() != fc_end + 8 || fc_len < FC_HEADER {
            return Err(frame);
        }
        let mut frame = frame;
        let Some(bytes) = frame.exclusive_bytes() else { return Err(frame) };
        // The length was checked above: neither split fails.
        if let Some((head, rest)) = bytes.split_first_chunk_mut::<PAYLOAD>()
            && let Some((trailer, _)) =
                rest.get_mut(fc_end - PAYLOAD..).and_then(|t| t.split_first_chunk_mut::<8>())
        {
            self.write_head(head, hb, sof);
            *trailer = (u64::from(crc) | u64::from(eof.code()) << 32).to_le_bytes();
        }
        Ok(TxFrame::whole(frame))
    }

    /// The Ethernet, FCoE and FC headers of a data frame with FC header `hb` and `sof`: the
    /// bytes before its payload.
    #[inline(always)]
    fn write_head(&self, out: &mut [u8; PAYLOAD], hb: &[u8; FC_HEADER], sof: Sof) {
        write_data_head(out, &self.macs, hb, sof);
    }

    /// The Ethernet addresses of the head's frames, destination first.
    #[inline(always)]
    pub fn macs(&self) -> [u8; 12] {
        self.macs
    }
}

/// The bytes before a data frame's payload: Ethernet addresses `macs`, the FCoE header with
/// `sof`, FC header `hb`.
#[inline(always)]
fn write_data_head(out: &mut [u8; PAYLOAD], macs: &[u8; 12], hb: &[u8; FC_HEADER], sof: Sof) {
    out[..12].copy_from_slice(macs);
    out[12..28].copy_from_slice(&FCOE_AFTER_MACS);
    out[27] = sof.code();
    out[28..].copy_from_slice(hb);
}

/// One leg's data frame as [`two_data_frames`] makes it: its Ethernet addresses, FC header,
/// SOF, EOF and CRC.
#[derive(Clone, Copy, Debug)]
pub struct LegDataFrame {
    /// The Ethernet addresses (see [`WriteHead::macs`]).
    pub macs: [u8; 12],
    /// The FC header.
    pub hb: [u8; FC_HEADER],
    /// Start of frame.
    pub sof: Sof,
    /// End of frame.
    pub eof: Eof,
    /// The frame's CRC.
    pub crc: u32,
}

/// The data frames of two legs for the host's data frame `frame` (an untagged FCoE frame
/// holding an FC frame of `fc_len` bytes whose payload is `payload` followed by `fill` zero
/// bytes, as [`WriteHead::data_frame_in_place`] asks): `first`'s written over the host's, as
/// that function writes it, and `second`'s headers written in the frame storage's room after
/// it, sent with the same payload by reference and its own trailer. No buffer is taken and
/// nothing is copied but headers. The frame comes back unchanged if its storage is shared,
/// the room is too small or the frame is not as described.
#[inline(always)]
pub fn two_data_frames(
    frame: Frame,
    fc_len: usize,
    payload: core::ops::Range<usize>,
    fill: usize,
    [first, second]: [&LegDataFrame; 2],
) -> Result<[TxFrame; 2], Frame> {
    let fc_end = FC_OFFSET + fc_len;
    let len = fc_end + 8;
    if frame.len() != len
        || fc_len < FC_HEADER
        || fill > 3
        || payload.start != PAYLOAD
        || payload.end < payload.start
        || payload.end > fc_end
    {
        return Err(frame);
    }
    let mut frame = frame;
    let Some(storage) = frame.exclusive_storage() else { return Err(frame) };
    let Some(room) = storage.get_mut(..len + PAYLOAD) else { return Err(frame) };
    let (bytes, after) = room.split_at_mut(len);
    // The lengths were checked above: none of these lookups fails.
    if let Some(head) = bytes.first_chunk_mut::<PAYLOAD>() {
        write_data_head(head, &first.macs, &first.hb, first.sof);
    }
    if let Some(trailer) = bytes.get_mut(fc_end..).and_then(|t| t.first_chunk_mut::<8>()) {
        *trailer = (u64::from(first.crc) | u64::from(first.eof.code()) << 32).to_le_bytes();
    }
    if let Some(head) = after.first_chunk_mut::<PAYLOAD>() {
        write_data_head(head, &second.macs, &second.hb, second.sof);
    }
    // Nor do these, after the same checks (the frame would come back written otherwise).
    let (Some(head), Some(body), Some(tail)) = (
        frame.storage_slice(len..len + PAYLOAD),
        frame.slice(payload),
        Trailer::fcoe(fill, second.crc, second.eof.code()),
    ) else {
        return Err(frame);
    };
    Ok([TxFrame::whole(frame), TxFrame { head, body: Some(body), tail }])
}

/// Offsets in an untagged frame of the FC header fields a template leaves to each frame.
const SEQ_ID_AT: usize = FC_OFFSET + 12;
const OX_ID_AT: usize = FC_OFFSET + 16;
const RX_ID_AT: usize = FC_OFFSET + 18;

/// Templates kept per shape: one per device path (commands) or per host and virtual target
/// (responses, transfer-ready) in use, direct-mapped.
const TEMPLATE_SLOTS: usize = 64;

/// Frames of one shape built from templates: the frames a worker sends for one key (a device
/// path; a host and a virtual target) share their addresses and most fields, so those bytes are
/// built once, by wire's fixed-layout builder with the varying fields zero, and each frame
/// copies them, writes its own fields and a fresh CRC. A slot holding another key's template
/// is rebuilt, so a template never outlives the key it was made for.
#[derive(Clone, Debug)]
pub struct Templates<K, const LEN: usize> {
    slots: Box<[TemplateSlot<K, LEN>]>,
    /// Per slot, the last payload window a frame to a host sealed (see
    /// [`Templates::host_frame`]) and its CRC change from the template's; forgotten when the
    /// slot is made again.
    sealed: Box<[Option<SealedWindow>]>,
    /// Per byte of SEQ_ID, OX_ID and RX_ID ([`ID_AT`]), the CRC change of the frame when that
    /// byte changes by each value.
    ids: Box<[[u32; 256]; ID_AT.len()]>,
}

/// A template slot: the key and the frame's bytes.
type TemplateSlot<K, const LEN: usize> = Option<(K, [u8; LEN])>;

/// The words of a frame's payload window ([`payload_window`]) and their CRC change from the
/// template's.
type SealedWindow = ([u64; MAX_WINDOW / 8], u32);

/// Where in an untagged frame a frame to a host writes its SEQ_ID, OX_ID and RX_ID.
const ID_AT: [usize; 5] = [SEQ_ID_AT, OX_ID_AT, OX_ID_AT + 1, RX_ID_AT, RX_ID_AT + 1];

/// Most bytes of a payload window.
const MAX_WINDOW: usize = 24;

/// The bytes, counted back from the end of a `LEN`-byte frame's FC frame, that hold its payload,
/// in whole words: they follow the exchange ids (16 bytes for a transfer-ready, its payload and
/// the relative offset before it, which frames to hosts leave as the template has it; 24 for a
/// response). `None` if the payload is longer than [`MAX_WINDOW`].
const fn payload_window(len: usize) -> Option<usize> {
    let window = (len - FCOE_TRAILER - PAYLOAD).next_multiple_of(8);
    if window <= MAX_WINDOW && len - FCOE_TRAILER - window >= RX_ID_AT + 2 { Some(window) } else { None }
}

impl<K: Copy, const LEN: usize> Default for Templates<K, LEN> {
    fn default() -> Self {
        // The CRC is affine: a byte's change is the CRC of a frame holding it alone, less the
        // CRC of a frame of zeros.
        let fc_len = LEN.saturating_sub(FC_OFFSET + FCOE_TRAILER);
        let zeros = vec![0u8; fc_len];
        let base = crc32fast::hash(&zeros);
        let mut ids = Box::new([[0u32; 256]; ID_AT.len()]);
        for (table, &at) in ids.iter_mut().zip(&ID_AT) {
            let mut frame = zeros.clone();
            for (byte, entry) in table.iter_mut().enumerate() {
                if let Some(b) = frame.get_mut(at - FC_OFFSET) {
                    *b = byte as u8;
                }
                *entry = crc32fast::hash(&frame) ^ base;
            }
        }
        Templates {
            slots: vec![None; TEMPLATE_SLOTS].into_boxed_slice(),
            sealed: vec![None; TEMPLATE_SLOTS].into_boxed_slice(),
            ids,
        }
    }
}

impl<K: Copy + PartialEq, const LEN: usize> Templates<K, LEN> {
    /// Copy `key`'s template (made by `make` if slot `hash` holds another key's) into the
    /// first `LEN` bytes of `buf`, and return them; `None` if `buf` is too short or `make`
    /// fails.
    fn copy_into<'b>(
        &mut self,
        buf: &'b mut [u8],
        hash: usize,
        key: &K,
        make: impl FnOnce(&mut [u8; LEN]) -> Option<()>,
    ) -> Option<&'b mut [u8; LEN]> {
        let out: &mut [u8; LEN] = buf.get_mut(..LEN)?.try_into().ok()?;
        let slot = &mut self.slots[hash % TEMPLATE_SLOTS];
        let template = match slot {
            Some((k, bytes)) if k == key => bytes,
            _ => {
                let mut bytes = [0u8; LEN];
                make(&mut bytes)?;
                self.sealed[hash % TEMPLATE_SLOTS] = None;
                &slot.insert((*key, bytes)).1
            }
        };
        *out = *template;
        Some(out)
    }
}

/// Bytes of an FCP_CMND frame's FC frame, counted back from its end, from its flags byte on.
const COMMAND_WINDOW: usize = 24;

/// Bytes of a template frame's FC frame, counted back from its end, that hold every field a
/// frame writes: the window whose change patches the template's CRC (a whole number of words).
const RESEALED: usize = 40;

/// Make `edit`'s changes to the untagged frame `out` (a copy of a template with a valid CRC,
/// whose trailer is its last 8 bytes), changing only the last [`RESEALED`] (at most) bytes of
/// its FC frame, and patch the CRC for them: the CRC is linear, so it changes by the raw CRC
/// of the change at the frame's end, a few table steps where a fresh CRC would cover the whole
/// FC frame.
fn edit_sealed<const LEN: usize>(out: &mut [u8; LEN], window: usize, edit: impl FnOnce(&mut [u8; LEN])) {
    let window = window.min(RESEALED);
    let fc_end = LEN - FCOE_TRAILER;
    let at = fc_end - window;
    let words = |out: &[u8; LEN]| -> [u64; RESEALED / 8] {
        let mut words = [0u64; RESEALED / 8];
        for (word, chunk) in words.iter_mut().zip(out[at..fc_end].chunks_exact(8)) {
            *word = chunk.first_chunk().map_or(0, |b| u64::from_be_bytes(*b));
        }
        words
    };
    let before = words(out);
    edit(out);
    let after = words(out);
    let mut change = [0u64; RESEALED / 8];
    for ((c, b), a) in change.iter_mut().zip(before).zip(after) {
        *c = b ^ a;
    }
    let stored = out[fc_end..].first_chunk().map_or(0, |b| u32::from_le_bytes(*b));
    let crc = stored ^ crate::crc_patch::raw_of_words(&change[..window / 8]);
    out[fc_end..fc_end + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The Ethernet and FCoE envelope of a frame for `header` from `src` (SOFi3, EOFt).
fn envelope(src: MacAddr, header: &FcHeaderRepr, fc_map: u32) -> (EthernetRepr, FcoeRepr) {
    let ethernet = EthernetRepr {
        dst_addr: fpma(fc_map, header.d_id.0),
        src_addr: src,
        vlan: None,
        ethertype: ETHERTYPE_FCOE,
    };
    (ethernet, FcoeRepr { sof: Sof::I3, eof: Eof::T })
}

/// The templates of the frames a worker builds on every I/O.
#[derive(Clone, Debug, Default)]
pub struct FrameTemplates {
    /// Downstream commands, per device path.
    pub command: CommandTemplates,
    /// Responses to hosts, per host and virtual target.
    pub response: ResponseTemplates,
    /// Transfer-ready to hosts, per host and virtual target.
    pub transfer_ready: TransferReadyTemplates,
}

/// What a command template depends on: the device path, and the port's MAC and initiator
/// address the path's port has.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PathKey {
    /// The device path.
    pub path: DevicePath,
    /// The source MAC of the port the path uses.
    pub src: MacAddr,
    /// The switch's initiator address on that port.
    pub initiator: u32,
}

/// What a response or transfer-ready template depends on: the port's MAC, the host and the
/// virtual target.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HostKey {
    /// The source MAC of the host's port.
    pub src: MacAddr,
    /// The host's address.
    pub host: u32,
    /// The virtual target's address.
    pub target: u32,
}

impl HostKey {
    fn hash(&self) -> usize {
        (self.host ^ self.target.rotate_left(7)) as usize
    }
}

/// What a downstream command on `key`'s path says: its FC header and FCP_CMND (a simple
/// task, the path's LUN, the switch's initiator address on the path's port as S_ID).
pub fn command<'a>(
    key: &PathKey,
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

/// The FC header of a sequence the virtual target sends the host in its exchange: a response
/// (`last`: it ends the exchange) or a transfer-ready.
pub fn to_host(key: &HostKey, r_ctl: u8, last: bool, seq_id: u8, ox_id: u16, rx_id: u16) -> FcHeaderRepr {
    let end = if last { f_ctl::LAST_SEQUENCE } else { 0 };
    FcHeaderRepr {
        r_ctl,
        d_id: WireFcId(key.host),
        cs_ctl: 0,
        s_id: WireFcId(key.target),
        fc_type: fc::fc_type::FCP,
        f_ctl: f_ctl::EXCHANGE_CONTEXT | end | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE,
        seq_id,
        df_ctl: 0,
        seq_cnt: 0,
        ox_id,
        rx_id,
        parameter: 0,
    }
}

/// The sequence and exchange a frame to a host belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HostSequence {
    /// SEQ_ID.
    pub seq_id: u8,
    /// The host's OX_ID.
    pub ox_id: u16,
    /// The worker's RX_ID.
    pub rx_id: u16,
}

/// Per-path templates of downstream FCP_CMND frames with a 16-byte CDB.
pub type CommandTemplates = Templates<PathKey, CMND_FRAME_LEN>;

impl CommandTemplates {
    /// Build into `buf` the frame of [`command`] for a 16-byte CDB. Returns the frame length,
    /// or `None` if `buf` is too short.
    #[allow(clippy::too_many_arguments)]
    pub fn command(
        &mut self,
        buf: &mut [u8],
        key: &PathKey,
        ox_id: u16,
        cdb: &[u8; 16],
        fcp_dl: u32,
        rddata: bool,
        wrdata: bool,
        fc_map: u32,
    ) -> Option<usize> {
        let out = self.copy_into(buf, key.path.device.0 as usize, key, |bytes| {
            let (header, cmnd) = command(key, 0, &[0; 16], 0, false, false);
            let (ethernet, fcoe) = envelope(key.src, &header, fc_map);
            emit_fcp_cmnd_frame(bytes, &ethernet, &fcoe, &header, &cmnd).ok().map(drop)
        })?;
        // The FCP_CMND's flags to its end: 24 bytes, patched a slicing step per word; OX_ID
        // (zero in the template) by its bytes' table entries, where a window from it took
        // two more steps.
        edit_sealed(out, COMMAND_WINDOW, |out| {
            out[PAYLOAD + 11] = u8::from(rddata) << 1 | u8::from(wrdata);
            out[PAYLOAD + 12..PAYLOAD + 28].copy_from_slice(cdb);
            out[PAYLOAD + 28..PAYLOAD + 32].copy_from_slice(&fcp_dl.to_be_bytes());
        });
        let [high, low] = ox_id.to_be_bytes();
        out[OX_ID_AT..OX_ID_AT + 2].copy_from_slice(&[high, low]);
        let change = self.ids[1][usize::from(high)] ^ self.ids[2][usize::from(low)];
        let fc_end = CMND_FRAME_LEN - FCOE_TRAILER;
        let stored = out[fc_end..].first_chunk().map_or(0, |b| u32::from_le_bytes(*b));
        out[fc_end..fc_end + 4].copy_from_slice(&(stored ^ change).to_le_bytes());
        Some(CMND_FRAME_LEN)
    }
}

/// Builds a whole frame for a header, as wire's fixed-layout builders do for their payloads.
type HeaderBuilder<'a> =
    &'a dyn Fn(&mut [u8], &EthernetRepr, &FcoeRepr, &FcHeaderRepr) -> dve_wire::Result<usize>;

impl<const LEN: usize> Templates<HostKey, LEN> {
    /// Build into `buf` a frame the virtual target sends the host in `seq`: from `key`'s
    /// template (made with `emit` for header [`to_host`] with `r_ctl` and `last`), with the
    /// sequence's ids and the payload bytes `payload` writes. Returns the frame length, or
    /// `None` if `buf` is too short.
    #[allow(clippy::too_many_arguments)]
    fn host_frame(
        &mut self,
        buf: &mut [u8],
        key: &HostKey,
        seq: HostSequence,
        (r_ctl, last): (u8, bool),
        fc_map: u32,
        emit: HeaderBuilder<'_>,
        payload: impl FnOnce(&mut [u8]),
    ) -> Option<usize> {
        let hash = key.hash();
        let out = self.copy_into(buf, hash, key, |bytes| {
            let header = to_host(key, r_ctl, last, 0, 0, 0);
            let (ethernet, fcoe) = envelope(key.src, &header, fc_map);
            emit(bytes, &ethernet, &fcoe, &header).ok().map(drop)
        })?;
        let Some(window) = (const { payload_window(LEN) }) else {
            // SEQ_ID to the end of the payload, in whole words.
            let window = (LEN - FCOE_TRAILER - SEQ_ID_AT).next_multiple_of(8);
            edit_sealed(out, window, |out| {
                out[SEQ_ID_AT] = seq.seq_id;
                out[OX_ID_AT..OX_ID_AT + 2].copy_from_slice(&seq.ox_id.to_be_bytes());
                out[RX_ID_AT..RX_ID_AT + 2].copy_from_slice(&seq.rx_id.to_be_bytes());
                payload(&mut out[PAYLOAD..]);
            });
            return Some(LEN);
        };
        // The template's ids are zero and the frame's payload is nearly always the last one's
        // (GOOD with no residual; the same burst): the CRC changes by the ids' table entries
        // and the payload window's remembered change, where a window over both took a
        // slicing step per word.
        out[SEQ_ID_AT] = seq.seq_id;
        out[OX_ID_AT..OX_ID_AT + 2].copy_from_slice(&seq.ox_id.to_be_bytes());
        out[RX_ID_AT..RX_ID_AT + 2].copy_from_slice(&seq.rx_id.to_be_bytes());
        payload(&mut out[PAYLOAD..]);
        let fc_end = LEN - FCOE_TRAILER;
        let at = fc_end - window;
        let words = |bytes: &[u8; LEN]| {
            let mut words = [0u64; MAX_WINDOW / 8];
            for (word, chunk) in words.iter_mut().zip(bytes[at..fc_end].chunks_exact(8)) {
                *word = chunk.first_chunk().map_or(0, |b| u64::from_be_bytes(*b));
            }
            words
        };
        let after = words(out);
        let slot = hash % TEMPLATE_SLOTS;
        let payload_change = match self.sealed[slot] {
            Some((sealed, change)) if sealed == after => change,
            _ => {
                let before = self.slots[slot].as_ref().map_or([0; MAX_WINDOW / 8], |(_, t)| words(t));
                let mut change = [0u64; MAX_WINDOW / 8];
                for ((c, b), a) in change.iter_mut().zip(before).zip(after) {
                    *c = b ^ a;
                }
                let change = crate::crc_patch::raw_of_words(&change[..window / 8]);
                self.sealed[slot] = Some((after, change));
                change
            }
        };
        let t = &*self.ids;
        let [ox_high, ox_low] = seq.ox_id.to_be_bytes();
        let [rx_high, rx_low] = seq.rx_id.to_be_bytes();
        let ids = t[0][usize::from(seq.seq_id)]
            ^ t[1][usize::from(ox_high)]
            ^ t[2][usize::from(ox_low)]
            ^ t[3][usize::from(rx_high)]
            ^ t[4][usize::from(rx_low)];
        let stored = out[fc_end..].first_chunk().map_or(0, |b| u32::from_le_bytes(*b));
        out[fc_end..fc_end + 4].copy_from_slice(&(stored ^ ids ^ payload_change).to_le_bytes());
        Some(LEN)
    }
}

/// Per host and virtual target, templates of FCP_RSP frames without sense or response
/// information.
pub type ResponseTemplates = Templates<HostKey, RSP_FRAME_LEN>;

impl ResponseTemplates {
    /// Build into `buf` the last sequence of `seq`'s exchange, an FCP_RSP with `status` and
    /// `residual` (no sense, no confirmation asked). Returns the frame length, or `None` if
    /// `buf` is too short.
    pub fn response(
        &mut self,
        buf: &mut [u8],
        key: &HostKey,
        seq: HostSequence,
        (status, residual): (u8, Residual),
        fc_map: u32,
    ) -> Option<usize> {
        let emit = |b: &mut [u8], e: &EthernetRepr, f: &FcoeRepr, h: &FcHeaderRepr| {
            emit_fcp_rsp_frame(b, e, f, h, &FcpRspRepr::good())
        };
        self.host_frame(buf, key, seq, (fc::r_ctl::COMMAND_STATUS, true), fc_map, &emit, |p| {
            let (flag, count) = residual.flag_and_count();
            p[10] = flag;
            p[11] = status;
            p[12..16].copy_from_slice(&count.to_be_bytes());
        })
    }
}

/// Per host and virtual target, templates of FCP_XFER_RDY frames.
pub type TransferReadyTemplates = Templates<HostKey, XFER_RDY_FRAME_LEN>;

impl TransferReadyTemplates {
    /// Build into `buf` a transfer-ready in `seq` asking for `len` bytes at `ro`. Returns the
    /// frame length, or `None` if `buf` is too short.
    pub fn transfer_ready(
        &mut self,
        buf: &mut [u8],
        key: &HostKey,
        seq: HostSequence,
        (ro, len): (u32, u32),
        fc_map: u32,
    ) -> Option<usize> {
        let emit = |b: &mut [u8], e: &EthernetRepr, f: &FcoeRepr, h: &FcHeaderRepr| {
            emit_fcp_xfer_rdy_frame(b, e, f, h, &FcpXferRdyRepr { data_ro: 0, burst_len: 0 })
        };
        self.host_frame(buf, key, seq, (fc::r_ctl::DATA_DESCRIPTOR, false), fc_map, &emit, |p| {
            p[0..4].copy_from_slice(&ro.to_be_bytes());
            p[4..8].copy_from_slice(&len.to_be_bytes());
        })
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

/// The rewrite of a read leg's data frames for the host, made once when the leg starts: the
/// Ethernet addresses towards the host and the header's new address and exchange-id words, so
/// a frame needs no look-up of the host's port, no computation of its MAC, and its header is
/// rewritten and its CRC patched a word at a time. The result is byte for byte what
/// [`rewrite_frame`] writes with the same [`HeaderRewrite`].
#[derive(Clone, Copy, Debug)]
pub struct DataRewrite {
    /// Destination then source MAC.
    macs: [u8; 12],
    /// D_ID and S_ID where header bytes 0..8 hold them as a big-endian word.
    addresses: u64,
    /// OX_ID and RX_ID, header bytes 16..20.
    ids: u32,
    /// Added to the relative offset (header bytes 20..24), wrapping.
    offset_add: u32,
    /// The CRC change of the leg's last frame (see [`LastChange`]): a device sends a leg's
    /// frames with the same addresses and exchange ids, and a leg whose data starts where the
    /// host's does keeps their offsets, so its frames of one length change alike.
    last: LastChange,
}

/// The bits of header bytes 0..8 (as a big-endian word) a rewrite keeps: R_CTL and CS_CTL.
const KEPT_BY_ADDRESSES: u64 = 0xFF00_0000_FF00_0000;

impl DataRewrite {
    /// The rewrite of frames sent from `src` to `dst` with `header`'s fields.
    pub fn new(dst: MacAddr, src: MacAddr, header: HeaderRewrite) -> DataRewrite {
        let mut macs = [0u8; 12];
        macs[..6].copy_from_slice(&dst.0);
        macs[6..].copy_from_slice(&src.0);
        let address = |id: u32| u64::from(id & 0x00FF_FFFF);
        DataRewrite {
            macs,
            addresses: address(header.d_id) << 32 | address(header.s_id),
            ids: u32::from(header.ox_id) << 16 | u32::from(header.rx_id),
            offset_add: header.offset_add,
            last: LastChange::NONE,
        }
    }

    /// Rewrite `frame` (its FC header at `fc_start`) in place, or in a copy if its buffer is
    /// shared, as [`rewrite_frame`] does; the CRC change is the last frame's when the header
    /// changes as it did (see [`LastChange`]), else the addresses' part comes from
    /// `addresses` (see [`AddressChanges`]).
    pub fn rewrite(
        &mut self,
        frame: Frame,
        fc_start: usize,
        crc: &CrcPatcher,
        addresses: &mut AddressChanges,
    ) -> Option<Frame> {
        let mut buf = match frame.try_into_mut() {
            Ok(buf) => buf,
            Err(shared) => dve_fp_api::frame::FrameMut::from_slice(shared.as_slice())?,
        };
        let bytes = buf.bytes_mut();
        let len = bytes.len();
        if len < fc_start + FC_HEADER + FCOE_TRAILER {
            return None;
        }
        let fc_end = len - FCOE_TRAILER;
        let trailing = fc_end - fc_start - FC_HEADER;
        let header: &mut [u8; FC_HEADER] = bytes.get_mut(fc_start..fc_start + FC_HEADER)?.try_into().ok()?;
        // Bytes 0..8 (R_CTL, D_ID, CS_CTL, S_ID) and 16..24 (OX_ID, RX_ID, parameter) change;
        // 8..16 do not.
        let old_addresses = u64::from_be_bytes(*header.first_chunk()?);
        let old_ids = u64::from_be_bytes(*header.last_chunk()?);
        let new_addresses = old_addresses & KEPT_BY_ADDRESSES | self.addresses;
        let offset = (old_ids as u32).wrapping_add(self.offset_add);
        let new_ids = u64::from(self.ids) << 32 | u64::from(offset);
        // Bytes 8..16 do not change.
        let deltas = [old_addresses ^ new_addresses, 0, old_ids ^ new_ids];
        // The sentinel never matches: a trailing that long has no change to give.
        let change =
            if trailing == self.last.trailing as usize && deltas == self.last.deltas && trailing <= MAX_SHIFT
            {
                self.last.change
            } else {
                // The CRC is linear: the two words' changes add.
                let change =
                    addresses.change(crc, deltas[0], trailing)? ^ crc.word_change(deltas[2], trailing)?;
                self.last = LastChange { deltas, trailing: u32::try_from(trailing).ok()?, change };
                change
            };
        header[..8].copy_from_slice(&new_addresses.to_be_bytes());
        header[16..].copy_from_slice(&new_ids.to_be_bytes());
        let stored = u32::from_le_bytes(*bytes[fc_end..].first_chunk()?);
        bytes[fc_end..fc_end + 4].copy_from_slice(&(stored ^ change).to_le_bytes());
        bytes[..12].copy_from_slice(&self.macs);
        Some(buf.freeze())
    }
}

/// The change of an FC header from `old` to `new`: its three big-endian words XORed.
#[inline]
fn header_deltas(old: &[u8; FC_HEADER], new: &[u8; FC_HEADER]) -> [u64; 3] {
    let mut deltas = [0u64; 3];
    for ((delta, old), new) in deltas.iter_mut().zip(old.chunks_exact(8)).zip(new.chunks_exact(8)) {
        let word = |bytes: &[u8]| bytes.first_chunk().map_or(0, |b| u64::from_be_bytes(*b));
        *delta = word(old) ^ word(new);
    }
    deltas
}

/// Slots of [`AddressChanges`]: a worker forwards read data between few (device, host) pairs
/// at a time.
const ADDRESS_SLOTS: usize = 16;

/// The CRC changes of recent address rewrites of data frames (header bytes 0..8), per change
/// and frame length, direct-mapped: every read data frame from one device to one host
/// changes its addresses alike, so the change is computed once for all of them (a shift past
/// a whole frame), and each frame computes only the change of its exchange ids and offset.
#[derive(Clone, Debug, Default)]
pub struct AddressChanges {
    slots: [Option<AddressChange>; ADDRESS_SLOTS],
}

/// The CRC change of header bytes 0..8 changing by `delta`, with `trailing` bytes after the
/// header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct AddressChange {
    delta: u64,
    trailing: usize,
    change: u32,
}

impl AddressChanges {
    /// The CRC change of a whole FC header going from `old` to `new`, with `trailing` bytes
    /// after it ([`CrcPatcher::patch`] with a zero CRC): the addresses' part (bytes 0..8)
    /// remembered, the rest computed. `None` if `trailing` exceeds [`crate::crc_patch::MAX_SHIFT`].
    #[inline]
    pub fn header_change(
        &mut self,
        crc: &CrcPatcher,
        old: &[u8; FC_HEADER],
        new: &[u8; FC_HEADER],
        trailing: usize,
    ) -> Option<u32> {
        self.deltas_change(crc, header_deltas(old, new), (old, new), trailing)
    }

    /// [`AddressChanges::header_change`] for a header whose change [`header_deltas`] already
    /// gave.
    #[inline]
    fn deltas_change(
        &mut self,
        crc: &CrcPatcher,
        [addresses, second, third]: [u64; 3],
        (old, new): (&[u8; FC_HEADER], &[u8; FC_HEADER]),
        trailing: usize,
    ) -> Option<u32> {
        match self.change(crc, addresses, trailing) {
            Some(change) => Some(change ^ crc.words_change(second, third, trailing)?),
            // Too long a frame for the addresses' shift: the whole header at once.
            None => crc.patch(0, old, new, trailing),
        }
    }

    /// The CRC change of header bytes 0..8 changing by `delta` (the XOR of the old and new
    /// bytes as a big-endian word), with `trailing` bytes after the header; `None` if the
    /// change cannot be shifted that far.
    #[inline]
    fn change(&mut self, crc: &CrcPatcher, delta: u64, trailing: usize) -> Option<u32> {
        let hash = (delta ^ trailing as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60;
        let slot = &mut self.slots[hash as usize % ADDRESS_SLOTS];
        match slot {
            Some(c) if c.delta == delta && c.trailing == trailing => Some(c.change),
            _ => {
                // Bytes 8..24 of the header follow the window.
                let change = crc.word_change(delta, trailing.checked_add(16)?)?;
                *slot = Some(AddressChange { delta, trailing, change });
                Some(change)
            }
        }
    }
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

    /// Frames built by `ours` and `theirs` into buffers of different stale bytes: the same
    /// length and bytes.
    fn same_frame(
        ours: impl FnOnce(&mut [u8]) -> Option<usize>,
        theirs: impl FnOnce(&mut [u8]) -> dve_wire::Result<usize>,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let (mut a, mut b) = ([0xA5u8; 128], [0x5Au8; 128]);
        let expected = theirs(&mut b).unwrap();
        proptest::prop_assert_eq!(ours(&mut a), Some(expected));
        proptest::prop_assert_eq!(&a[..expected], &b[..expected]);
        Ok(())
    }

    fn i3_t(src: MacAddr, header: &FcHeaderRepr) -> (EthernetRepr, FcoeRepr) {
        envelope(src, header, 0x0E_FC00)
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
                let key = PathKey {
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
                let (header, cmnd) = command(&key, ox, &cdb, fcp_dl, rddata, wrdata);
                let (ethernet, fcoe) = i3_t(key.src, &header);
                same_frame(
                    |buf| templates.command(buf, &key, ox, &cdb, fcp_dl, rddata, wrdata, 0x0E_FC00),
                    |buf| emit_fcp_cmnd_frame(buf, &ethernet, &fcoe, &header, &cmnd),
                )?;
            }
        }

        /// Responses and transfer-ready built from a host's templates are byte for byte the
        /// ones wire's builders write, whichever hosts and targets shared the slots before,
        /// with payloads as the last frame's of the slot (GOOD, the same burst) or others.
        #[test]
        fn templated_responses_and_transfer_ready_match_the_builders(
            uses in proptest::collection::vec(
                (
                    0u32..3,
                    0u32..2,
                    proptest::prelude::any::<(u8, u16, u16, u8, u32, u32)>(),
                    0u8..3,
                    proptest::prelude::any::<bool>(),
                ),
                1..24,
            ),
        ) {
            let mut templates = FrameTemplates::default();
            for (host, target, (seq_id, ox, rx, status, a, b), resid, usual) in uses {
                let (status, a, b, resid) = if usual { (0, 0, 4096, 0) } else { (status, a, b, resid) };
                let key = HostKey {
                    src: MacAddr([2, 0, 0, 0, 0, host as u8]),
                    host: 0x01_0001 + 64 * host,
                    target: 0x0A_0001 + target,
                };
                let residual = [Residual::None, Residual::Over(a), Residual::Under(a)][usize::from(resid)];
                let seq = HostSequence { seq_id, ox_id: ox, rx_id: rx };
                let header = to_host(&key, fc::r_ctl::COMMAND_STATUS, true, seq_id, ox, rx);
                let (ethernet, fcoe) = i3_t(key.src, &header);
                let rsp = FcpRspRepr { scsi_status: status, residual, ..FcpRspRepr::good() };
                same_frame(
                    |buf| templates.response.response(buf, &key, seq, (status, residual), 0x0E_FC00),
                    |buf| emit_fcp_rsp_frame(buf, &ethernet, &fcoe, &header, &rsp),
                )?;
                let header = to_host(&key, fc::r_ctl::DATA_DESCRIPTOR, false, seq_id, ox, rx);
                let ready = FcpXferRdyRepr { data_ro: a, burst_len: b };
                same_frame(
                    |buf| templates.transfer_ready.transfer_ready(buf, &key, seq, (a, b), 0x0E_FC00),
                    |buf| emit_fcp_xfer_rdy_frame(buf, &ethernet, &fcoe, &header, &ready),
                )?;
            }
        }
    }

    /// A data frame of `payload_len` bytes (fill included) with its FC header at `fc_start`
    /// and a valid CRC, in a buffer of its own.
    fn data_frame(fc_start: usize, header: &[u8; FC_HEADER], payload_len: usize, seed: u8) -> Frame {
        let mut bytes = vec![0u8; fc_start + FC_HEADER + payload_len + FCOE_TRAILER];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31) ^ seed;
        }
        bytes[fc_start..fc_start + FC_HEADER].copy_from_slice(header);
        let fc_end = fc_start + FC_HEADER + payload_len;
        let crc = crc32fast::hash(&bytes[fc_start..fc_end]);
        bytes[fc_end..fc_end + 4].copy_from_slice(&crc.to_le_bytes());
        FrameMut::from_slice(&bytes).unwrap().freeze()
    }

    proptest::proptest! {
        /// A read leg's precomputed rewrite writes, frame after frame, byte for byte what
        /// `rewrite_frame` writes, whatever the frames' headers (ids the same across frames or
        /// not), lengths (the usual 2048-byte payload or not) and header place, and whichever
        /// rewrites shared the address memo before.
        #[test]
        fn a_precomputed_data_rewrite_matches_rewrite_frame(
            rewrites in proptest::collection::vec(
                (proptest::prelude::any::<(u32, u32, u16, u16)>(), proptest::prop_oneof![proptest::strategy::Just(0u32), proptest::prelude::any::<u32>()]),
                1..4,
            ),
            frames in proptest::collection::vec(
                (
                    0usize..4,
                    proptest::prelude::any::<[u8; FC_HEADER]>(),
                    proptest::prop_oneof![proptest::strategy::Just(2048usize), 0usize..=FRAME_CAPACITY - FC_OFFSET - 4 - FC_HEADER - FCOE_TRAILER],
                    proptest::prelude::any::<(bool, bool, u8)>(),
                ),
                1..16,
            ),
        ) {
            let crc = CrcPatcher::new();
            let mut addresses = AddressChanges::default();
            let dst = MacAddr([0x0E, 0xFC, 0, 1, 2, 3]);
            let src = MacAddr([2, 0, 0, 0, 0, 7]);
            // Frames of one leg mostly repeat the leg's first header's ids.
            let first = frames[0].1;
            for (which, mut header, payload_len, (same_ids, tagged, seed)) in frames {
                let ((d_id, s_id, ox_id, rx_id), offset_add) = rewrites[which % rewrites.len()];
                let rewrite = HeaderRewrite { d_id, s_id, ox_id, rx_id, offset_add };
                if same_ids {
                    header[..8].copy_from_slice(&first[..8]);
                    header[16..20].copy_from_slice(&first[16..20]);
                }
                let fc_start = if tagged { FC_OFFSET + 4 } else { FC_OFFSET };
                let frame = data_frame(fc_start, &header, payload_len, seed);
                let theirs = rewrite_frame(frame.clone(), fc_start, dst, src, &crc, &rewrite);
                let ours = DataRewrite::new(dst, src, rewrite).rewrite(frame, fc_start, &crc, &mut addresses);
                proptest::prop_assert_eq!(
                    ours.as_ref().map(Frame::as_slice),
                    theirs.as_ref().map(Frame::as_slice)
                );
            }
        }
    }

    proptest::proptest! {
        /// A read leg's rewrite kept from frame to frame, as the leg keeps it (remembering its
        /// last frame's CRC change), writes what `rewrite_frame` writes for every frame: frames
        /// that change alike (the remembered answer), and frames of another length, offset,
        /// address or exchange id (a new one), in any order and with the address memo shared.
        #[test]
        fn a_kept_data_rewrite_matches_rewrite_frame(
            (d_id, s_id, ox_id, rx_id) in proptest::prelude::any::<(u32, u32, u16, u16)>(),
            offset_add in proptest::prop_oneof![proptest::strategy::Just(0u32), proptest::prelude::any::<u32>()],
            first in proptest::prelude::any::<[u8; FC_HEADER]>(),
            frames in proptest::collection::vec(
                (
                    proptest::prop_oneof![proptest::strategy::Just(2048usize), 0usize..=FRAME_CAPACITY - FC_OFFSET - 4 - FC_HEADER - FCOE_TRAILER],
                    0u8..4,
                    proptest::prelude::any::<(u32, bool, u8)>(),
                ),
                1..16,
            ),
        ) {
            let crc = CrcPatcher::new();
            let mut addresses = AddressChanges::default();
            let dst = MacAddr([0x0E, 0xFC, 0, 1, 2, 3]);
            let src = MacAddr([2, 0, 0, 0, 0, 7]);
            let rewrite = HeaderRewrite { d_id, s_id, ox_id, rx_id, offset_add };
            let mut kept = DataRewrite::new(dst, src, rewrite);
            for (payload_len, change, (other, tagged, seed)) in frames {
                let mut header = first;
                match change {
                    // The leg's usual frame: only the payload (and perhaps the length) differs.
                    0 => {}
                    1 => header[20..24].copy_from_slice(&other.to_be_bytes()),
                    2 => header[16..20].copy_from_slice(&other.to_be_bytes()),
                    _ => header[4..8].copy_from_slice(&other.to_be_bytes()),
                }
                let fc_start = if tagged { FC_OFFSET + 4 } else { FC_OFFSET };
                let frame = data_frame(fc_start, &header, payload_len, seed);
                let theirs = rewrite_frame(frame.clone(), fc_start, dst, src, &crc, &rewrite);
                let ours = kept.rewrite(frame, fc_start, &crc, &mut addresses);
                proptest::prop_assert_eq!(
                    ours.as_ref().map(Frame::as_slice),
                    theirs.as_ref().map(Frame::as_slice)
                );
            }
        }
    }

    proptest::proptest! {
        /// A write leg's data frame from its `WriteHead` is the one the general path builds
        /// (`encode_header` of the header it fills in, then `gathered_data_frame_encoded`),
        /// byte for byte: head, payload slice and trailer, for any fields, fill, SOF/EOF, a
        /// patched or computed CRC, and head buffers full of other bytes; addresses out of
        /// range make no head.
        #[test]
        fn write_heads_match_the_general_path(
            (d_id, s_id, valid) in proptest::prelude::any::<(u32, u32, bool)>(),
            (src, fc_map) in proptest::prelude::any::<([u8; 6], u32)>(),
            (f_ctl, seq_id, seq_cnt, ox_id, rx_id, parameter) in proptest::prelude::any::<(u32, u8, u16, u16, u16, u32)>(),
            (fill, first, last, crc) in (0usize..4, proptest::prelude::any::<bool>(), proptest::prelude::any::<bool>(), proptest::prelude::any::<Option<u32>>()),
            (body, stale) in (proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), proptest::prelude::any::<u8>()),
        ) {
            let mask = if valid { 0xFF_FFFF } else { u32::MAX };
            let (d_id, s_id) = (d_id & mask, s_id & mask);
            let src = MacAddr(src);
            let fc_map = fc_map & 0xFF_FFFF;
            let head = WriteHead::new(src, d_id, s_id, fc_map);
            proptest::prop_assert_eq!(head.is_some(), d_id <= 0xFF_FFFF && s_id <= 0xFF_FFFF);
            let Some(head) = head else { return Ok(()) };
            let f_ctl = (f_ctl & 0xFF_FFFC) | fill as u32;
            let header = FcHeaderRepr {
                r_ctl: r_ctl::SOLICITED_DATA,
                d_id: WireFcId(d_id),
                cs_ctl: 0,
                s_id: WireFcId(s_id),
                fc_type: fc_type::FCP,
                f_ctl,
                seq_id,
                df_ctl: 0,
                seq_cnt,
                ox_id,
                rx_id,
                parameter,
            };
            let fields = WriteFields { f_ctl, seq_id, seq_cnt, ox_id, rx_id, parameter };
            let hb = head.header(fields);
            proptest::prop_assert_eq!(hb, Some(encode_header(&header)));
            let hb = hb.unwrap_or_default();
            let pool = FramePool::new(8, 0);
            let mut payload = pool.alloc(body.len()).unwrap();
            payload.as_mut_slice().copy_from_slice(&body);
            let payload = payload.freeze();
            let (sof, eof) = (if first { Sof::I3 } else { Sof::N3 }, if last { Eof::T } else { Eof::N });
            let dirty = |byte: u8| {
                let mut buf = pool.alloc(FRAME_CAPACITY).unwrap();
                buf.as_mut_slice().fill(byte);
                buf
            };
            let ours = head.data_frame(dirty(stale), &hb, sof, eof, payload.clone(), fill, crc).unwrap();
            let theirs = gathered_data_frame_encoded(dirty(!stale), src, &hb, d_id, sof, eof, payload, fill, crc, fc_map)
                .unwrap();
            proptest::prop_assert_eq!(ours.head.as_slice(), theirs.head.as_slice());
            proptest::prop_assert_eq!(ours.body.as_ref().map(Frame::as_slice), theirs.body.as_ref().map(Frame::as_slice));
            proptest::prop_assert_eq!(ours.tail.as_slice(), theirs.tail.as_slice());
            // The same frame written over a host frame of that layout, its headers and trailer
            // full of other bytes, its fill zero.
            if let Some(crc) = crc {
                let fc_end = PAYLOAD + body.len() + fill;
                let mut host = dirty(stale);
                proptest::prop_assert!(host.set_len(fc_end + 8));
                let bytes = host.as_mut_slice();
                bytes[PAYLOAD..PAYLOAD + body.len()].copy_from_slice(&body);
                bytes[PAYLOAD + body.len()..fc_end].fill(0);
                let fc_len = fc_end - FC_OFFSET;
                let in_place = head.data_frame_in_place(host.freeze(), &hb, sof, eof, fc_len, crc);
                let Ok(in_place) = in_place else { return Err(proptest::test_runner::TestCaseError::fail("not rewritten")) };
                let (mut a, mut b) = (Vec::new(), Vec::new());
                in_place.write_to(&mut a);
                ours.write_to(&mut b);
                proptest::prop_assert_eq!(a, b);
                let short = dirty(stale).freeze().slice(0..fc_end + 7).unwrap_or_else(Frame::empty);
                proptest::prop_assert!(head.data_frame_in_place(short, &hb, sof, eof, fc_len, crc).is_err());
                let tagged = dirty(stale).freeze().slice(0..fc_end + 12).unwrap_or_else(Frame::empty);
                proptest::prop_assert!(head.data_frame_in_place(tagged, &hb, sof, eof, fc_len, crc).is_err());
            }
        }
    }

    proptest::proptest! {
        /// Headers encoded a word at a time are the ones `header_bytes` encodes, fields out of
        /// range included.
        #[test]
        fn encoded_headers_match_header_bytes(
            (r_ctl, d_id, cs_ctl, s_id, fc_type, f_ctl) in proptest::prelude::any::<(u8, u32, u8, u32, u8, u32)>(),
            (seq_id, df_ctl, seq_cnt, ox_id, rx_id, parameter) in proptest::prelude::any::<(u8, u8, u16, u16, u16, u32)>(),
            valid in proptest::prelude::any::<bool>(),
        ) {
            let mask = if valid { 0xFF_FFFF } else { u32::MAX };
            let header = FcHeaderRepr {
                r_ctl,
                d_id: WireFcId(d_id & mask),
                cs_ctl,
                s_id: WireFcId(s_id & mask),
                fc_type,
                f_ctl: f_ctl & mask,
                seq_id,
                df_ctl,
                seq_cnt,
                ox_id,
                rx_id,
                parameter,
            };
            proptest::prop_assert_eq!(encode_header(&header), header_bytes(&header));
        }

        /// A header's CRC change with the addresses' part remembered is the patch of the whole
        /// header, whatever shared the memo before.
        #[test]
        fn header_changes_match_the_patch(
            changes in proptest::collection::vec(
                (
                    proptest::prelude::any::<([u8; FC_HEADER], [u8; FC_HEADER])>(),
                    proptest::prop_oneof![proptest::strategy::Just(2048usize), 0usize..=crate::crc_patch::MAX_SHIFT + 8],
                    proptest::prelude::any::<bool>(),
                ),
                1..12,
            ),
        ) {
            let crc = CrcPatcher::new();
            let mut addresses = AddressChanges::default();
            let first = changes[0].0;
            for ((mut old, mut new), trailing, same_addresses) in changes {
                if same_addresses {
                    old[..8].copy_from_slice(&first.0[..8]);
                    new[..8].copy_from_slice(&first.1[..8]);
                }
                proptest::prop_assert_eq!(
                    addresses.header_change(&crc, &old, &new, trailing),
                    crc.patch(0, &old, &new, trailing)
                );
            }
        }

        /// A write leg's CRC change, its last one remembered, is the patch of the whole
        /// header for every frame of the leg: frames whose header changes as the last one's
        /// did (other bytes, the same change), frames that change otherwise, other lengths
        /// (too long ones included), and a memo of addresses shared with other legs. New legs
        /// (the same addresses or others) start from the earlier legs' last changes: their
        /// frames change as the last frame did but for SEQ_ID and the exchange ids, or
        /// otherwise.
        #[test]
        fn write_head_changes_match_the_patch(
            addresses_of in proptest::collection::vec((0u32..=0xFF_FFFF, 0u32..=0xFF_FFFF), 1..3),
            frames in proptest::collection::vec(
                (
                    proptest::prelude::any::<([u8; FC_HEADER], [u8; FC_HEADER], [u8; FC_HEADER])>(),
                    proptest::prop_oneof![proptest::strategy::Just(2048usize), 0usize..=crate::crc_patch::MAX_SHIFT + 8],
                    proptest::prelude::any::<(bool, bool, bool, bool)>(),
                    proptest::prelude::any::<(usize, [u8; 5])>(),
                ),
                1..16,
            ),
        ) {
            let crc = CrcPatcher::new();
            let mut addresses = AddressChanges::default();
            let mut earlier = WriteChanges::default();
            let new_head = |which: usize| {
                let (d_id, s_id) = addresses_of[which % addresses_of.len()];
                WriteHead::new(MacAddr([2, 0, 0, 0, 0, 1]), d_id, s_id, 0x0E_FC00).unwrap()
            };
            let mut head = new_head(0);
            let mut previous: Option<([u8; FC_HEADER], [u8; FC_HEADER], usize)> = None;
            for ((mut old, mut new, other), mut trailing, (same_change, same_length, new_leg, ids_only), (which, ids)) in frames {
                if new_leg {
                    head = new_head(which);
                }
                if let Some((last_old, last_new, last_trailing)) = previous.filter(|_| same_change) {
                    // Other bytes on both sides, changing as the last frame's did, or but for
                    // SEQ_ID and the exchange ids.
                    for i in 0..FC_HEADER {
                        old[i] = other[i];
                        new[i] = other[i] ^ last_old[i] ^ last_new[i];
                    }
                    if ids_only {
                        for (at, byte) in [12, 16, 17, 18, 19].into_iter().zip(ids) {
                            new[at] ^= byte;
                        }
                    }
                    if same_length {
                        trailing = last_trailing;
                    }
                }
                proptest::prop_assert_eq!(
                    head.header_change((&mut addresses, &mut earlier), &crc, &old, &new, trailing),
                    crc.patch(0, &old, &new, trailing)
                );
                previous = Some((old, new, trailing));
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
