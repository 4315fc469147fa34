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

pub mod bls;
pub mod ct;
pub mod els;
pub mod emit;
pub mod error;
pub mod ethernet;
pub mod fc;
pub mod fcoe;
pub mod fcp;
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
