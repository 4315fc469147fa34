//! Whole frames, Ethernet down to SCSI: [`parse_fcoe_frame`] (the fast path's entry: checked
//! headers and the payload slice, no copy), [`parse_packet`] (every layer decoded, used by the
//! fuzz target and tools), and the builders that emit complete FCoE and FIP frames.

use core::ops::Range;

use crate::bls::BlsRepr;
use crate::ct::{CtHeaderRepr, NsRequest};
use crate::els::ElsRepr;
use crate::emit::WireEmit;
use crate::error::{Error, Result};
use crate::ethernet::{ETHERTYPE_FCOE, ETHERTYPE_FIP, EthernetFrame, EthernetRepr, MIN_FRAME_LEN};
use crate::fc::{self, FcFrame, FcHeaderRepr, f_ctl, fc_type, r_ctl};
use crate::fcoe::{self, FcoeFrame, FcoeRepr};
use crate::fcp::{FcpCmndRepr, FcpRspRepr, FcpXferRdyRepr};
use crate::fip::{FipDescriptor, FipRepr};
use crate::scsi::cdb::Cdb;
use crate::scsi::sense::SenseRepr;

/// A checked FCoE frame: every header decoded, the FC payload borrowed from the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FcoeFrameView<'a> {
    /// The Ethernet header.
    pub ethernet: EthernetRepr,
    /// SOF and EOF.
    pub fcoe: FcoeRepr,
    /// The FC-2 header.
    pub header: FcHeaderRepr,
    /// The FC payload without fill bytes.
    pub payload: &'a [u8],
    /// Where the FC frame (header, payload, fill) sits in the Ethernet frame.
    pub fc_range: Range<usize>,
}

/// The range of the FC frame inside an FCoE Ethernet frame, checking lengths only (not the
/// CRC): for code that rewrites headers in place and then calls [`refresh_fcoe_crc`].
#[inline]
pub fn fcoe_fc_range(frame: &[u8]) -> Result<Range<usize>> {
    let eth = EthernetFrame::new_checked(frame)?;
    if eth.ethertype() != ETHERTYPE_FCOE {
        return Err(Error::UnknownEthertype(eth.ethertype()));
    }
    let at = eth.header_len();
    FcoeFrame::new_checked(&frame[at..])?;
    Ok(at + fcoe::HEADER_LEN..frame.len() - fcoe::TRAILER_LEN)
}

/// What a switch needs of a received FCoE frame before it decides what to do with it: the FC
/// header and where the FC frame and its payload sit. Only lengths are checked by
/// [`locate_fcoe_frame`]; [`FcoeFrameInfo::verify`] adds the rest of [`parse_fcoe_frame`]'s
/// checks (version, reserved bytes, SOF, EOF, CRC) for the frames that are not cut through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FcoeFrameInfo {
    /// The FC-2 header.
    pub header: FcHeaderRepr,
    /// Where the FC frame (header, payload, fill) starts in the Ethernet frame.
    pub fc_start: usize,
    /// Where it ends (the CRC follows).
    pub fc_end: usize,
    /// FC payload bytes, without fill.
    pub payload_len: usize,
}

impl FcoeFrameInfo {
    /// Where the payload starts.
    pub fn payload_start(&self) -> usize {
        self.fc_start + fc::HEADER_LEN
    }

    /// The FCoE checks [`locate_fcoe_frame`] left out: version, reserved bytes, SOF, EOF and
    /// the CRC. `frame` must be the frame this was located in.
    pub fn verify(&self, frame: &[u8]) -> Result<()> {
        let fcoe_start = self.fc_start - fcoe::HEADER_LEN;
        let fcoe_end = self.fc_end + fcoe::TRAILER_LEN;
        let pdu = frame.get(fcoe_start..fcoe_end).ok_or(Error::Truncated {
            what: "FCoE frame",
            need: fcoe_end,
            have: frame.len(),
        })?;
        FcoeFrame::new_unchecked(pdu).check()
    }
}

/// Locates the FC frame in an FCoE Ethernet frame and decodes its header, checking lengths
/// only (Ethernet and its tag, the FCoE header and trailer, FC header, payload size, fill
/// bytes): one pass for the fast path, which verifies the CRC of the frames it acts on with
/// [`FcoeFrameInfo::verify`] and cuts data frames through unverified.
pub fn locate_fcoe_frame(frame: &[u8]) -> Result<FcoeFrameInfo> {
    let fc_range = fcoe_fc_range(frame)?;
    let fc_frame = FcFrame::new_checked(&frame[fc_range.clone()])?;
    let header = FcHeaderRepr::parse(&fc_frame)?;
    Ok(FcoeFrameInfo {
        header,
        fc_start: fc_range.start,
        fc_end: fc_range.end,
        payload_len: fc_frame.payload().len(),
    })
}

/// Recomputes the FC CRC of an FCoE frame after its FC header or payload was rewritten.
pub fn refresh_fcoe_crc(frame: &mut [u8]) -> Result<()> {
    let range = fcoe_fc_range(frame)?;
    let crc = fcoe::fc_crc(&frame[range.clone()]);
    frame[range.end..range.end + 4].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Parses an Ethernet frame carrying FCoE: checks Ethernet, FCoE (version, SOF, EOF, CRC)
/// and the FC header's fill bytes, and returns the decoded headers and the payload slice.
pub fn parse_fcoe_frame(frame: &[u8]) -> Result<FcoeFrameView<'_>> {
    let eth = EthernetFrame::new_checked(frame)?;
    let ethernet = EthernetRepr::parse(&eth)?;
    if ethernet.ethertype != ETHERTYPE_FCOE {
        return Err(Error::UnknownEthertype(ethernet.ethertype));
    }
    let at = eth.header_len();
    let fcoe_frame = FcoeFrame::new_checked(&frame[at..])?;
    let fcoe = FcoeRepr::parse(&fcoe_frame)?;
    let fc_range = at + fcoe::HEADER_LEN..frame.len() - fcoe::TRAILER_LEN;
    let fc_frame = FcFrame::new_checked(&frame[fc_range.clone()])?;
    let header = FcHeaderRepr::parse(&fc_frame)?;
    let start = fc_range.start + fc::HEADER_LEN;
    let payload = &frame[start..start + fc_frame.payload().len()];
    Ok(FcoeFrameView { ethernet, fcoe, header, payload, fc_range })
}

/// An FC payload decoded by its R_CTL and TYPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FcPayload<'a> {
    /// FCP_CMND with its CDB decoded.
    FcpCmnd {
        /// The information unit.
        cmnd: FcpCmndRepr<'a>,
        /// The decoded CDB; `None` for a task management request, whose CDB is ignored.
        cdb: Option<Cdb>,
    },
    /// FCP_XFER_RDY.
    FcpXferRdy(FcpXferRdyRepr),
    /// FCP_DATA: the data bytes (relative offset in the header's parameter).
    FcpData(&'a [u8]),
    /// FCP_RSP, with its sense data decoded if present.
    FcpRsp {
        /// The information unit.
        rsp: FcpRspRepr<'a>,
        /// Decoded sense data.
        sense: Option<SenseRepr>,
    },
    /// An extended link service.
    Els(ElsRepr),
    /// A basic link service.
    Bls(BlsRepr),
    /// A common transport message; name-server requests are decoded, replies need the
    /// request's command code ([`crate::ct::NsAccept::parse`]).
    Ct {
        /// The preamble.
        header: CtHeaderRepr,
        /// The decoded name-server request, if this is one.
        request: Option<NsRequest>,
        /// The bytes after the preamble.
        body: &'a [u8],
    },
    /// Any other R_CTL/TYPE combination, not decoded.
    Other(&'a [u8]),
}

/// Decodes an FC payload by the header's R_CTL and TYPE.
pub fn decode_fc_payload<'a>(header: &FcHeaderRepr, payload: &'a [u8]) -> Result<FcPayload<'a>> {
    Ok(match (header.fc_type, header.r_ctl) {
        (fc_type::FCP, r_ctl::UNSOLICITED_COMMAND) => {
            let cmnd = FcpCmndRepr::parse(payload)?;
            let cdb = if cmnd.task_management != 0 { None } else { Some(Cdb::parse(cmnd.cdb)?) };
            FcPayload::FcpCmnd { cmnd, cdb }
        }
        (fc_type::FCP, r_ctl::DATA_DESCRIPTOR) => FcPayload::FcpXferRdy(FcpXferRdyRepr::parse(payload)?),
        (fc_type::FCP, r_ctl::SOLICITED_DATA) => FcPayload::FcpData(payload),
        (fc_type::FCP, r_ctl::COMMAND_STATUS) => {
            let rsp = FcpRspRepr::parse(payload)?;
            let sense = rsp.sense.map(SenseRepr::parse).transpose()?;
            FcPayload::FcpRsp { rsp, sense }
        }
        (fc_type::ELS, r_ctl::ELS_REQUEST | r_ctl::ELS_REPLY) => {
            let els = ElsRepr::parse(payload)?;
            if els.is_reply() != (header.r_ctl == r_ctl::ELS_REPLY) {
                return Err(Error::Unsupported {
                    field: "R_CTL for this ELS command",
                    value: u64::from(header.r_ctl),
                });
            }
            FcPayload::Els(els)
        }
        (fc_type::BLS, r_ctl::BLS_ABTS | r_ctl::BLS_BA_ACC | r_ctl::BLS_BA_RJT) => {
            FcPayload::Bls(BlsRepr::parse(header.r_ctl, payload)?)
        }
        (fc_type::CT, r_ctl::UNSOLICITED_CONTROL | r_ctl::SOLICITED_CONTROL) => {
            let (ct, body) = CtHeaderRepr::parse(payload)?;
            let request = (header.r_ctl == r_ctl::UNSOLICITED_CONTROL && ct.is_name_server())
                .then(|| NsRequest::parse(ct.command, body))
                .transpose()?;
            FcPayload::Ct { header: ct, request, body }
        }
        _ => FcPayload::Other(payload),
    })
}

/// An Ethernet frame decoded through every layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// An FCoE frame.
    Fcoe {
        /// Headers and payload slice.
        frame: FcoeFrameView<'a>,
        /// The decoded payload.
        payload: FcPayload<'a>,
    },
    /// A FIP frame.
    Fip {
        /// The Ethernet header.
        ethernet: EthernetRepr,
        /// The FIP frame.
        fip: FipRepr<'a>,
    },
}

/// Decodes an Ethernet frame through every layer (FCoE or FIP, FC-2, FCP/ELS/BLS/CT, SCSI);
/// the ELS frames that FIP descriptors encapsulate are checked too.
pub fn parse_packet(frame: &[u8]) -> Result<Packet<'_>> {
    let eth = EthernetFrame::new_checked(frame)?;
    match eth.ethertype() {
        ETHERTYPE_FCOE => {
            let view = parse_fcoe_frame(frame)?;
            let payload = decode_fc_payload(&view.header, view.payload)?;
            Ok(Packet::Fcoe { frame: view, payload })
        }
        ETHERTYPE_FIP => {
            let ethernet = EthernetRepr::parse(&eth)?;
            let at = eth.header_len();
            let fip = FipRepr::parse(&frame[at..])?;
            for d in fip.descriptors.iter() {
                if let FipDescriptor::Flogi(f) | FipDescriptor::Fdisc(f) | FipDescriptor::Logo(f) = d? {
                    parse_encapsulated_els(f)?;
                }
            }
            Ok(Packet::Fip { ethernet, fip })
        }
        other => Err(Error::UnknownEthertype(other)),
    }
}

/// Parses the FC frame a FIP FLOGI/FDISC/LOGO descriptor encapsulates (no SOF/EOF/CRC).
pub fn parse_encapsulated_els(fc_frame: &[u8]) -> Result<(FcHeaderRepr, ElsRepr)> {
    let f = FcFrame::new_checked(fc_frame)?;
    let header = FcHeaderRepr::parse(&f)?;
    Ok((header, ElsRepr::parse(f.payload())?))
}

fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// Length of an FC frame (header, payload, fill) carrying `payload_len` bytes.
pub fn fc_frame_len(payload_len: usize) -> usize {
    fc::HEADER_LEN + padded(payload_len)
}

/// Length of the Ethernet frame [`emit_fcoe_frame`] writes.
pub fn fcoe_frame_len(ethernet: &EthernetRepr, payload_len: usize) -> usize {
    ethernet.header_len() + FcoeRepr::buffer_len(fc_frame_len(payload_len))
}

/// Writes an FC frame: the header (with F_CTL's fill-byte count set), the payload and zero
/// fill bytes. Returns its length. Used inside FCoE frames and FIP descriptors.
pub fn emit_fc_frame<P: WireEmit + ?Sized>(
    buf: &mut [u8],
    header: &FcHeaderRepr,
    payload: &P,
) -> Result<usize> {
    let plen = payload.buffer_len();
    if plen > fc::MAX_PAYLOAD_LEN {
        return Err(Error::ValueTooLarge { field: "FC payload length", value: plen as u64 });
    }
    let len = fc_frame_len(plen);
    crate::field::check_room("FC frame", buf, len)?;
    let fill = (len - fc::HEADER_LEN - plen) as u32;
    let header = FcHeaderRepr { f_ctl: (header.f_ctl & !f_ctl::FILL_BYTES_MASK) | fill, ..*header };
    header.emit(&mut FcFrame::new_unchecked(&mut buf[..fc::HEADER_LEN]))?;
    let written = payload.emit(&mut buf[fc::HEADER_LEN..fc::HEADER_LEN + plen])?;
    if written != plen {
        return Err(Error::BadLength { what: "emitted FC payload", expected: plen, found: written });
    }
    buf[fc::HEADER_LEN + plen..len].fill(0);
    Ok(len)
}

/// Writes a complete FCoE Ethernet frame: Ethernet header (ethertype forced to FCoE), FCoE
/// header, FC header with the fill-byte count, payload, fill, CRC and EOF. No allocation.
/// Returns the frame length ([`fcoe_frame_len`]). No Ethernet padding is ever needed: the
/// shortest FCoE frame (no FC payload, untagged) is exactly the 60-byte Ethernet minimum, and
/// Wireshark takes everything between the FCoE header and the 8-byte trailer as the FC frame.
pub fn emit_fcoe_frame<P: WireEmit + ?Sized>(
    buf: &mut [u8],
    ethernet: &EthernetRepr,
    fcoe: &FcoeRepr,
    header: &FcHeaderRepr,
    payload: &P,
) -> Result<usize> {
    // One pass over fixed offsets: switches build a frame per command and status, so the
    // layers' repeated room checks and length computations are worth avoiding.
    let ethernet = EthernetRepr { ethertype: ETHERTYPE_FCOE, ..*ethernet };
    let plen = payload.buffer_len();
    let len = fcoe_frame_len(&ethernet, plen);
    crate::field::check_room("FCoE frame", buf, len)?;
    if plen > fc::MAX_PAYLOAD_LEN {
        return Err(Error::ValueTooLarge { field: "FC payload length", value: plen as u64 });
    }
    let buf = &mut buf[..len];
    let eth_len = ethernet.header_len();
    ethernet.emit(&mut EthernetFrame::new_unchecked(&mut *buf))?;
    let fc_start = eth_len + fcoe::HEADER_LEN;
    let fc_end = len - fcoe::TRAILER_LEN;
    let payload_start = fc_start + fc::HEADER_LEN;
    let fill = (fc_end - payload_start - plen) as u32;
    let header = FcHeaderRepr { f_ctl: (header.f_ctl & !f_ctl::FILL_BYTES_MASK) | fill, ..*header };
    buf[fc_start..payload_start].copy_from_slice(&header.to_bytes()?);
    let written = payload.emit(&mut buf[payload_start..payload_start + plen])?;
    if written != plen {
        return Err(Error::BadLength { what: "emitted FC payload", expected: plen, found: written });
    }
    buf[payload_start + plen..fc_end].fill(0);
    emit_fcoe_header(buf, eth_len, fcoe.sof);
    seal_fcoe_frame(buf, fc_start, fcoe.eof);
    Ok(len)
}

/// Writes the FCoE header after an Ethernet header of `eth_len` bytes: version, reserved
/// bytes and SOF.
#[inline]
pub(crate) fn emit_fcoe_header(buf: &mut [u8], eth_len: usize, sof: fcoe::Sof) {
    let fc_start = eth_len + fcoe::HEADER_LEN;
    buf[eth_len..fc_start - 1].fill(0);
    buf[eth_len] = fcoe::VERSION << 4;
    buf[fc_start - 1] = sof.code();
}

/// Writes the CRC of the FC frame from `fc_start` to the trailer, and the trailer (CRC, EOF,
/// reserved bytes), which takes the last bytes of `buf`.
#[inline]
pub(crate) fn seal_fcoe_frame(buf: &mut [u8], fc_start: usize, eof: fcoe::Eof) {
    let fc_end = buf.len() - fcoe::TRAILER_LEN;
    let crc = fcoe::fc_crc(&buf[fc_start..fc_end]);
    buf[fc_end..fc_end + 4].copy_from_slice(&crc.to_le_bytes());
    buf[fc_end + 4] = eof.code();
    buf[fc_end + 5..].fill(0);
}

/// Length of the Ethernet frame [`emit_fip_frame`] writes (padded to the Ethernet minimum).
pub fn fip_frame_len(ethernet: &EthernetRepr, fip: &FipRepr<'_>) -> usize {
    (ethernet.header_len() + fip.buffer_len()).max(MIN_FRAME_LEN)
}

/// Writes a complete FIP Ethernet frame (ethertype forced to FIP), zero-padded to 60 bytes.
pub fn emit_fip_frame(buf: &mut [u8], ethernet: &EthernetRepr, fip: &FipRepr<'_>) -> Result<usize> {
    let ethernet = EthernetRepr { ethertype: ETHERTYPE_FIP, ..*ethernet };
    let len = fip_frame_len(&ethernet, fip);
    crate::field::check_room("FIP frame", buf, len)?;
    let buf = &mut buf[..len];
    ethernet.emit(&mut EthernetFrame::new_unchecked(&mut *buf))?;
    let at = ethernet.header_len();
    let n = fip.emit(&mut buf[at..])?;
    buf[at + n..].fill(0);
    Ok(len)
}
