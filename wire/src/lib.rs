//! `dve-wire`: every frame DVE sends or receives, as zero-copy typed views over byte buffers
//! plus builders: Ethernet, FCoE and FIP, the FC-2 header, FCP-4 information units, link
//! services, the name server's common transport, SCSI CDBs and sense data, and a pcap writer.
//!
//! Layers follow smoltcp's `wire` module: a view type (`EthernetFrame`, `FcoeFrame`,
//! `FcFrame`, `FcpCmnd`, `RwCdb`) wraps any `AsRef<[u8]>` and reads fields in place (setters
//! when the buffer is mutable); a `Repr` type holds the decoded fields, parses from a view or
//! a payload slice, and emits into a caller's buffer without allocating ([`WireEmit`]).
//! [`stack`] ties the layers together: [`parse_fcoe_frame`] for the fast path,
//! [`parse_packet`] for full decoding, [`emit_fcoe_frame`] and [`emit_fip_frame`] to build.
//! Malformed input of any kind gives an [`Error`] that says what is wrong; nothing panics.
//!
//! The fast path's cycle: parse a received frame without copying, rewrite the exchange ids
//! and the CDB's LBA in place, and refresh the CRC before sending it on.
//!
//! ```
//! use dve_wire::ethernet::{EthernetRepr, MacAddr};
//! use dve_wire::fc::{FcFrame, FcHeaderRepr, FcId, f_ctl, fc_type, r_ctl};
//! use dve_wire::fcoe::{Eof, FcoeRepr, Sof};
//! use dve_wire::fcp::{FcpCmnd, FcpCmndRepr, TaskAttribute};
//! use dve_wire::scsi::cdb::{Cdb, Lba10, RwCdb};
//! use dve_wire::stack::{FcPayload, Packet, fcoe_fc_range};
//! use dve_wire::{WireEmit, emit_fcoe_frame, parse_fcoe_frame, parse_packet, refresh_fcoe_crc};
//!
//! // Build a READ(10) command frame into a caller-provided buffer.
//! let mut cdb = [0u8; 16];
//! Cdb::Read10(Lba10 { lba: 100, length: 8, ..Lba10::default() }).emit(&mut cdb)?;
//! let cmnd = FcpCmndRepr {
//!     lun: [0; 8], crn: 0, priority: 0, task_attribute: TaskAttribute::Simple,
//!     task_management: 0, rddata: true, wrdata: false, cdb: &cdb, fcp_dl: 8 * 512,
//! };
//! let header = FcHeaderRepr {
//!     r_ctl: r_ctl::UNSOLICITED_COMMAND, d_id: FcId(0x010002), cs_ctl: 0, s_id: FcId(0x010001),
//!     fc_type: fc_type::FCP, f_ctl: f_ctl::FIRST_SEQUENCE | f_ctl::END_SEQUENCE | f_ctl::SEQUENCE_INITIATIVE,
//!     seq_id: 0, df_ctl: 0, seq_cnt: 0, ox_id: 0x1234, rx_id: 0xffff, parameter: 0,
//! };
//! let eth = EthernetRepr { dst_addr: MacAddr([2, 0, 0, 0, 0, 2]), src_addr: MacAddr([2, 0, 0, 0, 0, 1]), vlan: None, ethertype: 0 };
//! let mut buf = [0u8; 128];
//! let n = emit_fcoe_frame(&mut buf, &eth, &FcoeRepr { sof: Sof::I3, eof: Eof::T }, &header, &cmnd)?;
//! let frame = &mut buf[..n];
//!
//! // Receive: headers checked (CRC included), payload borrowed.
//! let view = parse_fcoe_frame(frame)?;
//! assert_eq!(view.header.ox_id, 0x1234);
//!
//! // Remap: new OX_ID and LBA written in place, then the CRC refreshed.
//! let range = fcoe_fc_range(frame)?;
//! let mut fc = FcFrame::new_checked(&mut frame[range])?;
//! fc.set_ox_id(0x0042);
//! let mut cmnd = FcpCmnd::new_checked(fc.payload_mut())?;
//! RwCdb::new_checked(cmnd.cdb_mut())?.set_lba(5000)?;
//! refresh_fcoe_crc(frame)?;
//!
//! let Packet::Fcoe { frame: view, payload: FcPayload::FcpCmnd { cdb: Some(cdb), .. } } = parse_packet(frame)? else {
//!     panic!("not an FCP_CMND");
//! };
//! assert_eq!((view.header.ox_id, cdb.read_write_extent()), (0x0042, Some((5000, 8))));
//! # Ok::<(), dve_wire::Error>(())
//! ```

pub mod bls;
pub mod ct;
pub mod els;
pub mod emit;
pub mod error;
pub mod ethernet;
pub mod fc;
pub mod fcoe;
pub mod fcp;
pub mod fcp_frame;
mod field;
pub mod fip;
pub mod pcap;
pub mod scsi;
pub mod stack;

pub use emit::WireEmit;
pub use error::{Error, Result};
pub use stack::{
    FcPayload, FcoeFrameView, Packet, decode_fc_payload, emit_fc_frame, emit_fcoe_frame, emit_fip_frame,
    fcoe_frame_len, parse_fcoe_frame, parse_packet, refresh_fcoe_crc,
};
