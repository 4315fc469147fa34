//! Common transport (FC-GS): the 16-byte CT_IU preamble, accept and reject, and the
//! directory (name) server operations RFT_ID, RPN_ID, RNN_ID, GID_FT, GPN_ID, GNN_ID.

use crate::emit::WireEmit;
use crate::error::{Error, Result};
use crate::fc::FcId;
use crate::field::{array, be16, be24, be64, check_len, check_room, check_zero, put16, put24, put64};

/// Length of the CT_IU preamble.
pub const PREAMBLE_LEN: usize = 16;
/// CT revision this crate emits.
pub const REVISION: u8 = 0x01;
/// GS_TYPE of the directory service.
pub const GS_TYPE_DIRECTORY: u8 = 0xFC;
/// GS_SUBTYPE of the name server.
pub const GS_SUBTYPE_NAME_SERVER: u8 = 0x02;

/// CT command/response codes.
pub mod code {
    /// Get port name, by port id.
    pub const GPN_ID: u16 = 0x0112;
    /// Get node name, by port id.
    pub const GNN_ID: u16 = 0x0113;
    /// Get port identifiers, by FC-4 type.
    pub const GID_FT: u16 = 0x0171;
    /// Register port name.
    pub const RPN_ID: u16 = 0x0212;
    /// Register node name.
    pub const RNN_ID: u16 = 0x0213;
    /// Register FC-4 types.
    pub const RFT_ID: u16 = 0x0217;
    /// Reject response.
    pub const REJECT: u16 = 0x8001;
    /// Accept response.
    pub const ACCEPT: u16 = 0x8002;
}

/// CT reject reason codes.
pub mod reject_reason {
    /// Invalid command code.
    pub const INVALID_COMMAND: u8 = 0x01;
    /// Invalid version level.
    pub const INVALID_VERSION: u8 = 0x02;
    /// Logical error.
    pub const LOGICAL_ERROR: u8 = 0x03;
    /// Invalid CT_IU size.
    pub const INVALID_IU_SIZE: u8 = 0x04;
    /// Logical busy.
    pub const LOGICAL_BUSY: u8 = 0x05;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u8 = 0x07;
    /// Unable to perform the command request.
    pub const UNABLE_TO_PERFORM: u8 = 0x09;
    /// Command not supported.
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x0B;
}

/// Name-server reject explanations.
pub mod reject_explanation {
    /// No additional explanation.
    pub const NONE: u8 = 0x00;
    /// Port ID not registered.
    pub const PORT_ID_NOT_REGISTERED: u8 = 0x01;
    /// Port name not registered.
    pub const PORT_NAME_NOT_REGISTERED: u8 = 0x02;
    /// Node name not registered.
    pub const NODE_NAME_NOT_REGISTERED: u8 = 0x03;
    /// FC-4 types not registered.
    pub const FC4_TYPES_NOT_REGISTERED: u8 = 0x07;
    /// Access denied.
    pub const ACCESS_DENIED: u8 = 0x10;
    /// Unacceptable port ID.
    pub const UNACCEPTABLE_PORT_ID: u8 = 0x11;
}

/// The CT_IU preamble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtHeaderRepr {
    /// Revision (1).
    pub revision: u8,
    /// IN_ID (obsolete, zero).
    pub in_id: FcId,
    /// GS_TYPE.
    pub gs_type: u8,
    /// GS_SUBTYPE.
    pub gs_subtype: u8,
    /// Options.
    pub options: u8,
    /// Command or response code (see [`code`]).
    pub command: u16,
    /// Maximum/residual size, in 4-byte words.
    pub max_size: u16,
    /// Fragment id.
    pub fragment_id: u8,
    /// Reason code of a reject.
    pub reason: u8,
    /// Reason code explanation of a reject.
    pub explanation: u8,
    /// Vendor unique byte.
    pub vendor: u8,
}

impl CtHeaderRepr {
    /// A name-server request preamble.
    pub fn name_server_request(command: u16) -> CtHeaderRepr {
        CtHeaderRepr {
            revision: REVISION,
            in_id: FcId(0),
            gs_type: GS_TYPE_DIRECTORY,
            gs_subtype: GS_SUBTYPE_NAME_SERVER,
            options: 0,
            command,
            max_size: 0,
            fragment_id: 0,
            reason: 0,
            explanation: 0,
            vendor: 0,
        }
    }

    /// A name-server accept preamble.
    pub fn name_server_accept() -> CtHeaderRepr {
        CtHeaderRepr::name_server_request(code::ACCEPT)
    }

    /// A name-server reject preamble.
    pub fn name_server_reject(reason: u8, explanation: u8) -> CtHeaderRepr {
        CtHeaderRepr { reason, explanation, ..CtHeaderRepr::name_server_request(code::REJECT) }
    }

    /// Whether the directory's name server is addressed.
    pub fn is_name_server(&self) -> bool {
        self.gs_type == GS_TYPE_DIRECTORY && self.gs_subtype == GS_SUBTYPE_NAME_SERVER
    }

    /// Parses the preamble and returns it with the bytes after it.
    pub fn parse(p: &[u8]) -> Result<(CtHeaderRepr, &[u8])> {
        check_len("CT_IU preamble", p, PREAMBLE_LEN)?;
        if p[0] != REVISION {
            return Err(Error::BadVersion { what: "CT", version: p[0] });
        }
        check_zero("CT_IU preamble reserved byte 7", u64::from(p[7]))?;
        let hdr = CtHeaderRepr {
            revision: p[0],
            in_id: FcId(be24(p, 1)),
            gs_type: p[4],
            gs_subtype: p[5],
            options: p[6],
            command: be16(p, 8),
            max_size: be16(p, 10),
            fragment_id: p[12],
            reason: p[13],
            explanation: p[14],
            vendor: p[15],
        };
        Ok((hdr, &p[PREAMBLE_LEN..]))
    }
}

impl WireEmit for CtHeaderRepr {
    fn buffer_len(&self) -> usize {
        PREAMBLE_LEN
    }

    fn emit(&self, b: &mut [u8]) -> Result<usize> {
        check_room("CT_IU preamble", b, PREAMBLE_LEN)?;
        if !self.in_id.is_valid() {
            return Err(Error::ValueTooLarge { field: "CT IN_ID", value: u64::from(self.in_id.0) });
        }
        b[0] = self.revision;
        put24(b, 1, self.in_id.0);
        b[4] = self.gs_type;
        b[5] = self.gs_subtype;
        b[6] = self.options;
        b[7] = 0;
        put16(b, 8, self.command);
        put16(b, 10, self.max_size);
        b[12] = self.fragment_id;
        b[13] = self.reason;
        b[14] = self.explanation;
        b[15] = self.vendor;
        Ok(PREAMBLE_LEN)
    }
}

/// A name-server request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NsRequest {
    /// Register FC-4 types (a 256-bit map, bit `t` set for type `t`).
    RftId {
        /// The port registering.
        port_id: FcId,
        /// FC-4 types bitmap, 8 words, FC-GS word order.
        fc4_types: [u8; 32],
    },
    /// Register port name.
    RpnId {
        /// The port registering.
        port_id: FcId,
        /// Its port name.
        port_name: u64,
    },
    /// Register node name.
    RnnId {
        /// The port registering.
        port_id: FcId,
        /// Its node name.
        node_name: u64,
    },
    /// Get the ports that registered an FC-4 type.
    GidFt {
        /// Domain ID scope (0: all).
        domain_scope: u8,
        /// Area ID scope (0: all).
        area_scope: u8,
        /// FC-4 TYPE.
        fc_type: u8,
    },
    /// Get port name of a port.
    GpnId {
        /// The port asked about.
        port_id: FcId,
    },
    /// Get node name of a port.
    GnnId {
        /// The port asked about.
        port_id: FcId,
    },
}

/// Sets the bit for FC-4 `fc_type` in an RFT_ID bitmap (bit 0 of each word is type 32*i).
pub fn fc4_types_with(mut map: [u8; 32], fc_type: u8) -> [u8; 32] {
    let word = usize::from(fc_type / 32);
    let bit = fc_type % 32;
    map[word * 4 + 3 - usize::from(bit / 8)] |= 1 << (bit % 8);
    map
}

/// Whether FC-4 `fc_type` is set in an RFT_ID bitmap.
pub fn fc4_types_contains(map: &[u8; 32], fc_type: u8) -> bool {
    let word = usize::from(fc_type / 32);
    let bit = fc_type % 32;
    map[word * 4 + 3 - usize::from(bit / 8)] & (1 << (bit % 8)) != 0
}

fn port_id_word(p: &[u8], field: &'static str) -> Result<FcId> {
    check_zero(field, u64::from(p[0]))?;
    Ok(FcId(be24(p, 1)))
}

impl NsRequest {
    /// The CT command code.
    pub fn command(&self) -> u16 {
        match self {
            NsRequest::RftId { .. } => code::RFT_ID,
            NsRequest::RpnId { .. } => code::RPN_ID,
            NsRequest::RnnId { .. } => code::RNN_ID,
            NsRequest::GidFt { .. } => code::GID_FT,
            NsRequest::GpnId { .. } => code::GPN_ID,
            NsRequest::GnnId { .. } => code::GNN_ID,
        }
    }

    /// Parses a request body (after the preamble) for command code `command`.
    pub fn parse(command: u16, p: &[u8]) -> Result<NsRequest> {
        let exact = |n: usize, what: &'static str| {
            check_len(what, p, n)?;
            if p.len() != n { Err(Error::BadLength { what, expected: n, found: p.len() }) } else { Ok(()) }
        };
        Ok(match command {
            code::RFT_ID => {
                exact(36, "RFT_ID")?;
                NsRequest::RftId { port_id: port_id_word(p, "RFT_ID reserved")?, fc4_types: array(p, 4) }
            }
            code::RPN_ID => {
                exact(12, "RPN_ID")?;
                NsRequest::RpnId { port_id: port_id_word(p, "RPN_ID reserved")?, port_name: be64(p, 4) }
            }
            code::RNN_ID => {
                exact(12, "RNN_ID")?;
                NsRequest::RnnId { port_id: port_id_word(p, "RNN_ID reserved")?, node_name: be64(p, 4) }
            }
            code::GID_FT => {
                exact(4, "GID_FT")?;
                check_zero("GID_FT reserved", u64::from(p[0]))?;
                NsRequest::GidFt { domain_scope: p[1], area_scope: p[2], fc_type: p[3] }
            }
            code::GPN_ID => {
                exact(4, "GPN_ID")?;
                NsRequest::GpnId { port_id: port_id_word(p, "GPN_ID reserved")? }
            }
            code::GNN_ID => {
                exact(4, "GNN_ID")?;
                NsRequest::GnnId { port_id: port_id_word(p, "GNN_ID reserved")? }
            }
            other => return Err(Error::UnknownCtCommand(other)),
        })
    }
}

fn put_port_id(b: &mut [u8], id: FcId) -> Result<()> {
    if !id.is_valid() {
        return Err(Error::ValueTooLarge { field: "port id", value: u64::from(id.0) });
    }
    b[0] = 0;
    put24(b, 1, id.0);
    Ok(())
}

impl WireEmit for NsRequest {
    fn buffer_len(&self) -> usize {
        match self {
            NsRequest::RftId { .. } => 36,
            NsRequest::RpnId { .. } | NsRequest::RnnId { .. } => 12,
            NsRequest::GidFt { .. } | NsRequest::GpnId { .. } | NsRequest::GnnId { .. } => 4,
        }
    }

    fn emit(&self, b: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        check_room("name-server request", b, len)?;
        match *self {
            NsRequest::RftId { port_id, fc4_types } => {
                put_port_id(b, port_id)?;
                b[4..36].copy_from_slice(&fc4_types);
            }
            NsRequest::RpnId { port_id, port_name: name } | NsRequest::RnnId { port_id, node_name: name } => {
                put_port_id(b, port_id)?;
                put64(b, 4, name);
            }
            NsRequest::GidFt { domain_scope, area_scope, fc_type } => {
                b[..4].copy_from_slice(&[0, domain_scope, area_scope, fc_type]);
            }
            NsRequest::GpnId { port_id } | NsRequest::GnnId { port_id } => put_port_id(b, port_id)?,
        }
        Ok(len)
    }
}

/// A list of port identifiers in a GID_FT accept: either the bytes of a received reply or the
/// ids of one being built. Equality compares the ids.
#[derive(Debug, Clone, Copy)]
pub enum PortIdList<'a> {
    /// Entries on the wire, 4 bytes each, the last with control bit 0x80.
    Wire(&'a [u8]),
    /// Ids to emit.
    Ids(&'a [FcId]),
}

impl<'a> PortIdList<'a> {
    /// Iterates over the ids.
    pub fn iter(&self) -> impl Iterator<Item = FcId> + 'a {
        let (wire, ids): (&'a [u8], &'a [FcId]) = match *self {
            PortIdList::Wire(w) => (w, &[]),
            PortIdList::Ids(i) => (&[], i),
        };
        wire.chunks_exact(4).map(|c| FcId(be24(c, 1))).chain(ids.iter().copied())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        match self {
            PortIdList::Wire(w) => w.len() / 4,
            PortIdList::Ids(i) => i.len(),
        }
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PartialEq for PortIdList<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for PortIdList<'_> {}

/// A name-server accept body; its form depends on the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsAccept<'a> {
    /// Accept of a registration (no body).
    Registered,
    /// Accept of GID_FT.
    PortIds(PortIdList<'a>),
    /// Accept of GPN_ID.
    PortName(u64),
    /// Accept of GNN_ID.
    NodeName(u64),
}

impl<'a> NsAccept<'a> {
    /// Parses an accept body for a request with command code `request`.
    pub fn parse(request: u16, p: &'a [u8]) -> Result<NsAccept<'a>> {
        match request {
            code::RFT_ID | code::RPN_ID | code::RNN_ID => {
                if !p.is_empty() {
                    return Err(Error::BadLength {
                        what: "name-server registration accept",
                        expected: 0,
                        found: p.len(),
                    });
                }
                Ok(NsAccept::Registered)
            }
            code::GPN_ID | code::GNN_ID => {
                check_len("GPN_ID/GNN_ID accept", p, 8)?;
                if p.len() != 8 {
                    return Err(Error::BadLength {
                        what: "GPN_ID/GNN_ID accept",
                        expected: 8,
                        found: p.len(),
                    });
                }
                let name = be64(p, 0);
                Ok(if request == code::GPN_ID { NsAccept::PortName(name) } else { NsAccept::NodeName(name) })
            }
            code::GID_FT => {
                check_len("GID_FT accept", p, 4)?;
                if !p.len().is_multiple_of(4) {
                    return Err(Error::BadLength {
                        what: "GID_FT accept (multiple of 4)",
                        expected: p.len() - p.len() % 4,
                        found: p.len(),
                    });
                }
                let n = p.len() / 4;
                for (i, e) in p.chunks_exact(4).enumerate() {
                    let last = e[0] & 0x80 != 0;
                    check_zero("GID_FT entry control reserved bits", u64::from(e[0] & 0x7f))?;
                    if last != (i + 1 == n) {
                        return Err(Error::Reserved { field: "GID_FT last-entry bit", value: i as u64 });
                    }
                }
                Ok(NsAccept::PortIds(PortIdList::Wire(p)))
            }
            other => Err(Error::UnknownCtCommand(other)),
        }
    }
}

impl WireEmit for NsAccept<'_> {
    fn buffer_len(&self) -> usize {
        match self {
            NsAccept::Registered => 0,
            NsAccept::PortIds(l) => 4 * l.len(),
            NsAccept::PortName(_) | NsAccept::NodeName(_) => 8,
        }
    }

    fn emit(&self, b: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        check_room("name-server accept", b, len)?;
        match self {
            NsAccept::Registered => {}
            NsAccept::PortIds(l) => {
                if l.is_empty() {
                    return Err(Error::BadLength { what: "GID_FT accept entries", expected: 1, found: 0 });
                }
                let n = l.len();
                for (i, id) in l.iter().enumerate() {
                    put_port_id(&mut b[4 * i..], id)?;
                    if i + 1 == n {
                        b[4 * i] = 0x80;
                    }
                }
            }
            NsAccept::PortName(n) | NsAccept::NodeName(n) => put64(b, 0, *n),
        }
        Ok(len)
    }
}
