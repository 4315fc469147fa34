//! Ethernet II framing with an optional 802.1Q tag: the outermost layer of every FCoE and
//! FIP frame. Views read the header in place; [`EthernetRepr`] builds it.

use core::fmt;

use crate::error::Result;
use crate::field::{array, be16, check_len, check_room, put16};

/// Ethertype of FCoE (FC-BB-5).
pub const ETHERTYPE_FCOE: u16 = 0x8906;
/// Ethertype of the FCoE Initialization Protocol.
pub const ETHERTYPE_FIP: u16 = 0x8914;
/// Tag protocol identifier of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// Shortest Ethernet frame on the wire, without the FCS (which the capture does not carry).
pub const MIN_FRAME_LEN: usize = 60;
/// Length of an untagged header.
pub const HEADER_LEN: usize = 14;
/// Length of a header with one 802.1Q tag.
pub const TAGGED_HEADER_LEN: usize = 18;

/// A 48-bit IEEE MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// ALL-FCF-MACs, the group address FIP solicitations go to.
    pub const ALL_FCF_MACS: MacAddr = MacAddr([0x01, 0x10, 0x18, 0x01, 0x00, 0x02]);
    /// ALL-ENode-MACs, the group address unsolicited FIP advertisements go to.
    pub const ALL_ENODE_MACS: MacAddr = MacAddr([0x01, 0x10, 0x18, 0x01, 0x00, 0x01]);

    /// The fabric-provided MAC address of an N_Port: FC-MAP in the high 24 bits, the N_Port's
    /// FC_ID in the low 24 (FC-BB-5 FPMA).
    pub fn fpma(fc_map: u32, fc_id: crate::fc::FcId) -> MacAddr {
        let m = fc_map.to_be_bytes();
        let i = fc_id.0.to_be_bytes();
        MacAddr([m[1], m[2], m[3], i[1], i[2], i[3]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", a[0], a[1], a[2], a[3], a[4], a[5])
    }
}

/// The tag control information of an 802.1Q tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanTag {
    /// Priority code point (3 bits); FCoE conventionally uses 3.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier (12 bits).
    pub vid: u16,
}

impl VlanTag {
    fn from_tci(tci: u16) -> VlanTag {
        VlanTag { pcp: (tci >> 13) as u8, dei: tci & 0x1000 != 0, vid: tci & 0x0fff }
    }

    fn tci(&self) -> u16 {
        (u16::from(self.pcp & 0x7) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0x0fff)
    }
}

/// A read (and, for mutable buffers, write) view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it; getters may panic on a short buffer. Use for
    /// building into a buffer already sized by [`EthernetRepr::header_len`].
    pub fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after checking that it holds the whole header (with the tag if the
    /// tag protocol identifier says there is one).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        check_len("Ethernet header", b, HEADER_LEN)?;
        if be16(b, 12) == ETHERTYPE_VLAN {
            check_len("802.1Q tagged Ethernet header", b, TAGGED_HEADER_LEN)?;
        }
        Ok(EthernetFrame { buffer })
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination address.
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(array(self.buffer.as_ref(), 0))
    }

    /// Source address.
    pub fn src_addr(&self) -> MacAddr {
        MacAddr(array(self.buffer.as_ref(), 6))
    }

    /// The 802.1Q tag, if the frame has one.
    pub fn vlan(&self) -> Option<VlanTag> {
        let b = self.buffer.as_ref();
        (be16(b, 12) == ETHERTYPE_VLAN).then(|| VlanTag::from_tci(be16(b, 14)))
    }

    /// Length of the header, 14 or 18.
    pub fn header_len(&self) -> usize {
        if be16(self.buffer.as_ref(), 12) == ETHERTYPE_VLAN { TAGGED_HEADER_LEN } else { HEADER_LEN }
    }

    /// The ethertype of the payload (after the tag, if any).
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), self.header_len() - 2)
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[0..6].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[6..12].copy_from_slice(&addr.0);
    }

    /// The bytes after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        &mut self.buffer.as_mut()[at..]
    }
}

/// The fields of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Destination address.
    pub dst_addr: MacAddr,
    /// Source address.
    pub src_addr: MacAddr,
    /// The 802.1Q tag, if present.
    pub vlan: Option<VlanTag>,
    /// Ethertype of the payload.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        Ok(EthernetRepr {
            dst_addr: frame.dst_addr(),
            src_addr: frame.src_addr(),
            vlan: frame.vlan(),
            ethertype: frame.ethertype(),
        })
    }

    /// Header length this representation emits.
    pub fn header_len(&self) -> usize {
        if self.vlan.is_some() { TAGGED_HEADER_LEN } else { HEADER_LEN }
    }

    /// Writes the header at the start of the frame's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) -> Result<()> {
        let b = frame.buffer.as_mut();
        check_room("Ethernet header", b, self.header_len())?;
        b[0..6].copy_from_slice(&self.dst_addr.0);
        b[6..12].copy_from_slice(&self.src_addr.0);
        match self.vlan {
            Some(tag) => {
                put16(b, 12, ETHERTYPE_VLAN);
                put16(b, 14, tag.tci());
                put16(b, 16, self.ethertype);
            }
            None => put16(b, 12, self.ethertype),
        }
        Ok(())
    }
}
