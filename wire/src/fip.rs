//! The FCoE Initialization Protocol (FC-BB-5 FIP): the header, operation codes and the
//! descriptors of discovery solicitation and advertisement, FLOGI/FDISC request and reply
//! (with the encapsulated FC frame), keep-alive and clear virtual links.

use crate::emit::WireEmit;
use crate::error::{Error, Result};
use crate::ethernet::MacAddr;
use crate::fc::FcId;
use crate::field::{
    array, be16, be24, be32, be64, check_len, check_room, check_zero, check_zero_bytes, put16, put24, put32,
    put64,
};

/// Length of the FIP header.
pub const HEADER_LEN: usize = 10;
/// The FIP version this crate speaks.
pub const VERSION: u8 = 1;

/// FIP header flag bits.
pub mod flags {
    /// Fabric-provided MAC address.
    pub const FP: u16 = 0x8000;
    /// Server-provided MAC address.
    pub const SP: u16 = 0x4000;
    /// Available for login.
    pub const AVAILABLE: u16 = 0x0004;
    /// Solicited.
    pub const SOLICITED: u16 = 0x0002;
    /// Sent by an FCF.
    pub const FCF: u16 = 0x0001;
}

/// FIP descriptor type codes.
pub mod descriptor_type {
    /// Priority.
    pub const PRIORITY: u8 = 1;
    /// MAC address.
    pub const MAC_ADDRESS: u8 = 2;
    /// FC-MAP.
    pub const FC_MAP: u8 = 3;
    /// Name identifier.
    pub const NAME_IDENTIFIER: u8 = 4;
    /// Fabric.
    pub const FABRIC: u8 = 5;
    /// Max FCoE size.
    pub const MAX_FCOE_SIZE: u8 = 6;
    /// Encapsulated FLOGI.
    pub const FLOGI: u8 = 7;
    /// Encapsulated FDISC.
    pub const FDISC: u8 = 8;
    /// Encapsulated LOGO.
    pub const LOGO: u8 = 9;
    /// Encapsulated ELP.
    pub const ELP: u8 = 10;
    /// VN_Port / VX_Port identification.
    pub const VX_PORT_ID: u8 = 11;
    /// FKA_ADV_Period.
    pub const FKA_ADV_PERIOD: u8 = 12;
    /// Vendor ID.
    pub const VENDOR_ID: u8 = 13;
    /// VLAN.
    pub const VLAN: u8 = 14;
}

/// The FIP operation: protocol code and subcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FipOperation {
    /// Discovery solicitation (ENode to FCFs).
    DiscoverySolicitation,
    /// Discovery advertisement (FCF).
    DiscoveryAdvertisement,
    /// Virtual link instantiation request (FLOGI, FDISC, LOGO).
    LinkServiceRequest,
    /// Virtual link instantiation reply.
    LinkServiceReply,
    /// Keep-alive (ENode to FCF).
    KeepAlive,
    /// Clear virtual links (FCF to ENode).
    ClearVirtualLinks,
    /// VLAN request.
    VlanRequest,
    /// VLAN notification.
    VlanNotification,
}

impl FipOperation {
    /// Every operation.
    pub const ALL: [FipOperation; 8] = [
        FipOperation::DiscoverySolicitation,
        FipOperation::DiscoveryAdvertisement,
        FipOperation::LinkServiceRequest,
        FipOperation::LinkServiceReply,
        FipOperation::KeepAlive,
        FipOperation::ClearVirtualLinks,
        FipOperation::VlanRequest,
        FipOperation::VlanNotification,
    ];

    /// (protocol code, subcode).
    pub fn codes(self) -> (u16, u8) {
        match self {
            FipOperation::DiscoverySolicitation => (1, 1),
            FipOperation::DiscoveryAdvertisement => (1, 2),
            FipOperation::LinkServiceRequest => (2, 1),
            FipOperation::LinkServiceReply => (2, 2),
            FipOperation::KeepAlive => (3, 1),
            FipOperation::ClearVirtualLinks => (3, 2),
            FipOperation::VlanRequest => (4, 1),
            FipOperation::VlanNotification => (4, 2),
        }
    }

    fn from_codes(op: u16, sub: u8) -> Result<FipOperation> {
        FipOperation::ALL.into_iter().find(|o| o.codes() == (op, sub)).ok_or(Error::Unsupported {
            field: "FIP operation code/subcode",
            value: (u64::from(op) << 8) | u64::from(sub),
        })
    }
}

/// One FIP descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FipDescriptor<'a> {
    /// FCF priority (lower is preferred).
    Priority(u8),
    /// A MAC address (the ENode's, the FCF's, or the granted VN_Port MAC).
    MacAddress(MacAddr),
    /// FC-MAP (24 bits).
    FcMap(u32),
    /// Name identifier (node name of the ENode or switch name of the FCF).
    NameIdentifier(u64),
    /// Fabric: VF_ID, FC-MAP and fabric name.
    Fabric {
        /// Virtual fabric id.
        vf_id: u16,
        /// FC-MAP (24 bits).
        fc_map: u32,
        /// Fabric name.
        fabric_name: u64,
    },
    /// Maximum FCoE frame size the sender can receive.
    MaxFcoeSize(u16),
    /// Encapsulated FLOGI request or reply: FC header and ELS payload (no SOF/EOF/CRC).
    Flogi(&'a [u8]),
    /// Encapsulated FDISC request or reply.
    Fdisc(&'a [u8]),
    /// Encapsulated LOGO request or reply.
    Logo(&'a [u8]),
    /// VN_Port identification: MAC, N_Port ID, port name.
    VxPortId {
        /// VN_Port MAC address.
        mac: MacAddr,
        /// N_Port ID.
        port_id: FcId,
        /// Port name.
        port_name: u64,
    },
    /// FKA_ADV_Period in milliseconds, with the D (don't send keep-alives) flag byte.
    FkaAdvPeriod {
        /// Flag byte (0x01: D bit).
        flags: u8,
        /// Period in milliseconds.
        period_ms: u32,
    },
    /// Vendor id (8 bytes).
    VendorId([u8; 8]),
    /// VLAN id (12 bits).
    Vlan(u16),
    /// A descriptor of another type, kept as its bytes after type and length.
    Other {
        /// Descriptor type.
        dtype: u8,
        /// Bytes after the type and length bytes.
        data: &'a [u8],
    },
}

impl<'a> FipDescriptor<'a> {
    /// Length on the wire (type and length bytes included).
    pub fn buffer_len(&self) -> usize {
        match self {
            FipDescriptor::Priority(_) | FipDescriptor::MaxFcoeSize(_) | FipDescriptor::Vlan(_) => 4,
            FipDescriptor::MacAddress(_) | FipDescriptor::FcMap(_) | FipDescriptor::FkaAdvPeriod { .. } => 8,
            FipDescriptor::NameIdentifier(_) | FipDescriptor::VendorId(_) => 12,
            FipDescriptor::Fabric { .. } => 16,
            FipDescriptor::VxPortId { .. } => 20,
            FipDescriptor::Flogi(f) | FipDescriptor::Fdisc(f) | FipDescriptor::Logo(f) => 4 + f.len(),
            FipDescriptor::Other { data, .. } => 2 + data.len(),
        }
    }

    /// The descriptor type code.
    pub fn dtype(&self) -> u8 {
        use descriptor_type as t;
        match self {
            FipDescriptor::Priority(_) => t::PRIORITY,
            FipDescriptor::MacAddress(_) => t::MAC_ADDRESS,
            FipDescriptor::FcMap(_) => t::FC_MAP,
            FipDescriptor::NameIdentifier(_) => t::NAME_IDENTIFIER,
            FipDescriptor::Fabric { .. } => t::FABRIC,
            FipDescriptor::MaxFcoeSize(_) => t::MAX_FCOE_SIZE,
            FipDescriptor::Flogi(_) => t::FLOGI,
            FipDescriptor::Fdisc(_) => t::FDISC,
            FipDescriptor::Logo(_) => t::LOGO,
            FipDescriptor::VxPortId { .. } => t::VX_PORT_ID,
            FipDescriptor::FkaAdvPeriod { .. } => t::FKA_ADV_PERIOD,
            FipDescriptor::VendorId(_) => t::VENDOR_ID,
            FipDescriptor::Vlan(_) => t::VLAN,
            FipDescriptor::Other { dtype, .. } => *dtype,
        }
    }

    /// Parses one descriptor (`d` is exactly its bytes, type and length included).
    pub fn parse(d: &'a [u8]) -> Result<FipDescriptor<'a>> {
        use descriptor_type as t;
        check_len("FIP descriptor", d, 4)?;
        let exact = |n: usize, what: &'static str| {
            if d.len() != n { Err(Error::BadLength { what, expected: n, found: d.len() }) } else { Ok(()) }
        };
        Ok(match d[0] {
            t::PRIORITY => {
                exact(4, "FIP priority descriptor")?;
                check_zero("FIP priority reserved", u64::from(d[2]))?;
                FipDescriptor::Priority(d[3])
            }
            t::MAC_ADDRESS => {
                exact(8, "FIP MAC address descriptor")?;
                FipDescriptor::MacAddress(MacAddr(array(d, 2)))
            }
            t::FC_MAP => {
                exact(8, "FIP FC-MAP descriptor")?;
                check_zero_bytes("FIP FC-MAP reserved", &d[2..5])?;
                FipDescriptor::FcMap(be24(d, 5))
            }
            t::NAME_IDENTIFIER => {
                exact(12, "FIP name identifier descriptor")?;
                check_zero_bytes("FIP name identifier reserved", &d[2..4])?;
                FipDescriptor::NameIdentifier(be64(d, 4))
            }
            t::FABRIC => {
                exact(16, "FIP fabric descriptor")?;
                check_zero("FIP fabric reserved", u64::from(d[4]))?;
                FipDescriptor::Fabric { vf_id: be16(d, 2), fc_map: be24(d, 5), fabric_name: be64(d, 8) }
            }
            t::MAX_FCOE_SIZE => {
                exact(4, "FIP max FCoE size descriptor")?;
                FipDescriptor::MaxFcoeSize(be16(d, 2))
            }
            t::FLOGI | t::FDISC | t::LOGO => {
                check_zero_bytes("FIP encapsulated ELS reserved", &d[2..4])?;
                let frame = &d[4..];
                check_len("FIP encapsulated FC frame", frame, crate::fc::HEADER_LEN)?;
                match d[0] {
                    t::FLOGI => FipDescriptor::Flogi(frame),
                    t::FDISC => FipDescriptor::Fdisc(frame),
                    _ => FipDescriptor::Logo(frame),
                }
            }
            t::VX_PORT_ID => {
                exact(20, "FIP VN_Port identification descriptor")?;
                check_zero("FIP VN_Port reserved", u64::from(d[8]))?;
                FipDescriptor::VxPortId {
                    mac: MacAddr(array(d, 2)),
                    port_id: FcId(be24(d, 9)),
                    port_name: be64(d, 12),
                }
            }
            t::FKA_ADV_PERIOD => {
                exact(8, "FIP FKA_ADV_Period descriptor")?;
                check_zero("FIP FKA_ADV_Period reserved", u64::from(d[2]))?;
                FipDescriptor::FkaAdvPeriod { flags: d[3], period_ms: be32(d, 4) }
            }
            t::VENDOR_ID => {
                exact(12, "FIP vendor id descriptor")?;
                check_zero_bytes("FIP vendor id reserved", &d[2..4])?;
                FipDescriptor::VendorId(array(d, 4))
            }
            t::VLAN => {
                exact(4, "FIP VLAN descriptor")?;
                check_zero("FIP VLAN reserved bits", u64::from(d[2] & 0xf0))?;
                FipDescriptor::Vlan(be16(d, 2))
            }
            dtype => FipDescriptor::Other { dtype, data: &d[2..] },
        })
    }

    fn emit(&self, b: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        check_room("FIP descriptor", b, len)?;
        if !len.is_multiple_of(4) || len / 4 > 255 {
            return Err(Error::BadLength {
                what: "FIP descriptor (multiple of 4, < 1024)",
                expected: len - len % 4,
                found: len,
            });
        }
        let b = &mut b[..len];
        b.fill(0);
        b[0] = self.dtype();
        b[1] = (len / 4) as u8;
        let fits24 = |field: &'static str, v: u32| {
            if v > 0xFF_FFFF { Err(Error::ValueTooLarge { field, value: u64::from(v) }) } else { Ok(()) }
        };
        match *self {
            FipDescriptor::Priority(p) => b[3] = p,
            FipDescriptor::MacAddress(m) => b[2..8].copy_from_slice(&m.0),
            FipDescriptor::FcMap(m) => {
                fits24("FC-MAP", m)?;
                put24(b, 5, m);
            }
            FipDescriptor::NameIdentifier(n) => put64(b, 4, n),
            FipDescriptor::Fabric { vf_id, fc_map, fabric_name } => {
                fits24("FC-MAP", fc_map)?;
                put16(b, 2, vf_id);
                put24(b, 5, fc_map);
                put64(b, 8, fabric_name);
            }
            FipDescriptor::MaxFcoeSize(s) => put16(b, 2, s),
            FipDescriptor::Flogi(f) | FipDescriptor::Fdisc(f) | FipDescriptor::Logo(f) => {
                b[4..].copy_from_slice(f)
            }
            FipDescriptor::VxPortId { mac, port_id, port_name } => {
                fits24("VN_Port N_Port ID", port_id.0)?;
                b[2..8].copy_from_slice(&mac.0);
                put24(b, 9, port_id.0);
                put64(b, 12, port_name);
            }
            FipDescriptor::FkaAdvPeriod { flags, period_ms } => {
                b[3] = flags;
                put32(b, 4, period_ms);
            }
            FipDescriptor::VendorId(v) => b[4..12].copy_from_slice(&v),
            FipDescriptor::Vlan(v) => {
                if v > 0x0fff {
                    return Err(Error::ValueTooLarge { field: "FIP VLAN id", value: u64::from(v) });
                }
                put16(b, 2, v);
            }
            FipDescriptor::Other { data, .. } => b[2..].copy_from_slice(data),
        }
        Ok(len)
    }
}

/// The descriptors of a FIP frame: the bytes of a received one (already validated by
/// [`FipRepr::parse`]) or a list to emit. Equality compares the descriptors.
#[derive(Debug, Clone, Copy)]
pub enum FipDescriptors<'a> {
    /// Descriptor list bytes on the wire.
    Wire(&'a [u8]),
    /// Descriptors to emit.
    List(&'a [FipDescriptor<'a>]),
}

/// Iterator over [`FipDescriptors`].
#[derive(Debug, Clone)]
pub struct FipDescriptorIter<'a> {
    wire: &'a [u8],
    list: core::slice::Iter<'a, FipDescriptor<'a>>,
}

impl<'a> Iterator for FipDescriptorIter<'a> {
    type Item = Result<FipDescriptor<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(d) = self.list.next() {
            return Some(Ok(*d));
        }
        if self.wire.is_empty() {
            return None;
        }
        let w = self.wire;
        let item = split_descriptor(w).and_then(|(d, rest)| {
            self.wire = rest;
            FipDescriptor::parse(d)
        });
        if item.is_err() {
            self.wire = &[];
        }
        Some(item)
    }
}

fn split_descriptor(w: &[u8]) -> Result<(&[u8], &[u8])> {
    check_len("FIP descriptor header", w, 2)?;
    let len = usize::from(w[1]) * 4;
    if len == 0 {
        return Err(Error::BadLength { what: "FIP descriptor length", expected: 4, found: 0 });
    }
    check_len("FIP descriptor", w, len)?;
    Ok(w.split_at(len))
}

impl<'a> FipDescriptors<'a> {
    /// Iterates over the descriptors.
    pub fn iter(&self) -> FipDescriptorIter<'a> {
        match *self {
            FipDescriptors::Wire(w) => FipDescriptorIter { wire: w, list: [].iter() },
            FipDescriptors::List(l) => FipDescriptorIter { wire: &[], list: l.iter() },
        }
    }

    fn wire_len(&self) -> usize {
        match self {
            FipDescriptors::Wire(w) => w.len(),
            FipDescriptors::List(l) => l.iter().map(FipDescriptor::buffer_len).sum(),
        }
    }
}

impl PartialEq for FipDescriptors<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for FipDescriptors<'_> {}

/// A FIP frame (the Ethernet payload of ethertype 0x8914).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FipRepr<'a> {
    /// The operation.
    pub operation: FipOperation,
    /// Header flags (see [`flags`]).
    pub flags: u16,
    /// The descriptors.
    pub descriptors: FipDescriptors<'a>,
}

impl<'a> FipRepr<'a> {
    /// Parses a FIP frame, validating every descriptor. Bytes after the descriptor list
    /// (Ethernet padding) are ignored.
    pub fn parse(p: &'a [u8]) -> Result<FipRepr<'a>> {
        check_len("FIP header", p, HEADER_LEN)?;
        let version = p[0] >> 4;
        if version != VERSION {
            return Err(Error::BadVersion { what: "FIP", version });
        }
        check_zero("FIP header reserved bits", u64::from(p[0] & 0x0f))?;
        check_zero("FIP header reserved byte 1", u64::from(p[1]))?;
        check_zero("FIP header reserved byte 4", u64::from(p[4]))?;
        let operation = FipOperation::from_codes(be16(p, 2), p[5])?;
        let list_len = usize::from(be16(p, 6)) * 4;
        check_len("FIP descriptor list", p, HEADER_LEN + list_len)?;
        let wire = &p[HEADER_LEN..HEADER_LEN + list_len];
        let descriptors = FipDescriptors::Wire(wire);
        for d in descriptors.iter() {
            d?;
        }
        Ok(FipRepr { operation, flags: be16(p, 8), descriptors })
    }
}

impl WireEmit for FipRepr<'_> {
    fn buffer_len(&self) -> usize {
        HEADER_LEN + self.descriptors.wire_len()
    }

    fn emit(&self, b: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        check_room("FIP frame", b, len)?;
        let list_len = len - HEADER_LEN;
        if !list_len.is_multiple_of(4) || list_len / 4 > 0xffff {
            return Err(Error::BadLength {
                what: "FIP descriptor list",
                expected: list_len - list_len % 4,
                found: list_len,
            });
        }
        let (op, sub) = self.operation.codes();
        b[0] = VERSION << 4;
        b[1] = 0;
        put16(b, 2, op);
        b[4] = 0;
        b[5] = sub;
        put16(b, 6, (list_len / 4) as u16);
        put16(b, 8, self.flags);
        match self.descriptors {
            FipDescriptors::Wire(w) => b[HEADER_LEN..len].copy_from_slice(w),
            FipDescriptors::List(l) => {
                let mut at = HEADER_LEN;
                for d in l {
                    at += d.emit(&mut b[at..])?;
                }
            }
        }
        Ok(len)
    }
}
