//! What hosts address and how it resolves to segments: target exposures with their LUN maps,
//! LUN masks, logical volumes and segment descriptors, and the physical devices and paths the
//! fast path dispatches to.

use core::ops::Range;

use crate::error::Error;
use crate::ids::{DeviceId, ExposureId, FcId, Lun, LvId, PortId, VsegId, Wwn};

/// A set of host port names, or every host.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum HostSet {
    /// Every host.
    All,
    /// Only these hosts (kept sorted for binary search).
    Only(Vec<Wwn>),
}

impl HostSet {
    /// A set of exactly these hosts.
    pub fn only(mut hosts: Vec<Wwn>) -> HostSet {
        hosts.sort_unstable();
        hosts.dedup();
        HostSet::Only(hosts)
    }

    /// Whether `host` is in the set.
    #[inline]
    pub fn contains(&self, host: Wwn) -> bool {
        match self {
            HostSet::All => true,
            HostSet::Only(hosts) => hosts.binary_search(&host).is_ok(),
        }
    }
}

/// One LUN of a target exposure: the LV behind it and the hosts it is exposed to (Fig. 7
/// step 94).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct LunMapping {
    /// The LUN hosts address.
    pub lun: Lun,
    /// The volume behind it.
    pub lv: LvId,
    /// The hosts that see it.
    pub hosts: HostSet,
}

/// A target exposure (`FPExpose`): a virtual target port, registered in the name server like a
/// physical one, and its LUNs.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TargetExposure {
    /// The exposure.
    pub id: ExposureId,
    /// The virtual port name.
    pub port_name: Wwn,
    /// The virtual node name.
    pub node_name: Wwn,
    /// The virtual D_ID hosts address frames to.
    pub fc_id: FcId,
    /// The LUN map.
    pub luns: Vec<LunMapping>,
}

impl TargetExposure {
    /// The mapping of `lun`.
    pub fn lun(&self, lun: Lun) -> Option<&LunMapping> {
        self.luns.iter().find(|m| m.lun == lun)
    }
}

/// Which hosts may do fast-path I/O to an LV (the LUN masking FP API, Fig. 7 step 93):
/// reservation holders, hosts without pending unit attention. Everyone else faults.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct LunMask {
    /// The volume.
    pub lv: LvId,
    /// Hosts whose reads may use the fast path.
    pub readers: HostSet,
    /// Hosts whose writes may use the fast path.
    pub writers: HostSet,
}

/// A logical volume as the fast path needs it: block size, capacity and its segments in LBA
/// order.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct LvDescriptor {
    /// The volume.
    pub id: LvId,
    /// Bytes per logical block.
    pub block_size: u32,
    /// Capacity in blocks.
    pub blocks: u64,
    /// The segments, covering `[0, blocks)` without gaps or overlaps, in LBA order.
    pub segments: Vec<VsegDescriptor>,
}

impl LvDescriptor {
    /// Build a descriptor, checking that the segments tile the volume.
    pub fn new(id: LvId, block_size: u32, segments: Vec<VsegDescriptor>) -> Result<LvDescriptor, Error> {
        if !(block_size.is_power_of_two() && (512..=65536).contains(&block_size)) {
            return Err(Error::InvalidDescriptor("block size must be a power of two from 512 to 65536"));
        }
        let mut next = 0u64;
        for seg in &segments {
            if seg.lv != id {
                return Err(Error::InvalidDescriptor("a segment belongs to another volume"));
            }
            if seg.start != next || seg.blocks == 0 {
                return Err(Error::InvalidDescriptor("segments must tile the volume in LBA order"));
            }
            next = seg.start.checked_add(seg.blocks).ok_or(Error::InvalidDescriptor("volume too large"))?;
        }
        if segments.is_empty() {
            return Err(Error::InvalidDescriptor("a volume needs at least one segment"));
        }
        Ok(LvDescriptor { id, block_size, blocks: next, segments })
    }

    /// The segment holding volume block `lba`.
    #[inline]
    pub fn segment_of(&self, lba: u64) -> Option<&VsegDescriptor> {
        let i = self.segments.partition_point(|s| s.start <= lba);
        self.segments.get(i.checked_sub(1)?).filter(|s| lba < s.end())
    }
}

/// A segment descriptor (VSEG, seed 003 Fig. 14): a contiguous LBA range of one volume.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct VsegDescriptor {
    /// The segment.
    pub id: VsegId,
    /// Its volume (VDEVICE).
    pub lv: LvId,
    /// First volume block (VLBA).
    pub start: u64,
    /// Blocks (VSIZE).
    pub blocks: u64,
}

impl VsegDescriptor {
    /// One past the last volume block.
    pub fn end(&self) -> u64 {
        self.start + self.blocks
    }

    /// The segment's volume blocks.
    pub fn range(&self) -> Range<u64> {
        self.start..self.end()
    }
}

/// A physical device the engine reaches, as `FPDiscover` reports it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DiscoveredDevice {
    /// The switch port it is reachable on.
    pub port: PortId,
    /// The target's port name.
    pub target: Wwn,
    /// The target's fabric address.
    pub target_fc_id: FcId,
    /// The LUN on that target.
    pub lun: Lun,
}

/// The path the fast path uses to reach a device: which port, target address and LUN. The
/// control path switches it globally on a path failure (seed 003 section 3.10, preferred
/// alternative), so no extent has to fault.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DevicePath {
    /// The device.
    pub device: DeviceId,
    /// The port to send on.
    pub port: PortId,
    /// The target's fabric address.
    pub target_fc_id: FcId,
    /// The LUN on that target.
    pub lun: Lun,
    /// Bytes per block on the device.
    pub block_size: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: u32, start: u64, blocks: u64) -> VsegDescriptor {
        VsegDescriptor { id: VsegId(id), lv: LvId(1), start, blocks }
    }

    #[test]
    fn segments_tile_the_volume() {
        let lv = LvDescriptor::new(LvId(1), 512, vec![seg(1, 0, 100), seg(2, 100, 50)]).unwrap();
        assert_eq!(lv.blocks, 150);
        assert_eq!(lv.segment_of(0).unwrap().id, VsegId(1));
        assert_eq!(lv.segment_of(99).unwrap().id, VsegId(1));
        assert_eq!(lv.segment_of(100).unwrap().id, VsegId(2));
        assert!(lv.segment_of(150).is_none());
        assert!(LvDescriptor::new(LvId(1), 512, vec![seg(1, 0, 100), seg(2, 101, 50)]).is_err());
        assert!(LvDescriptor::new(LvId(1), 500, vec![seg(1, 0, 100)]).is_err());
        assert!(LvDescriptor::new(LvId(1), 512, vec![]).is_err());
    }

    #[test]
    fn host_sets() {
        let set = HostSet::only(vec![Wwn(3), Wwn(1), Wwn(3)]);
        assert!(set.contains(Wwn(1)) && set.contains(Wwn(3)) && !set.contains(Wwn(2)));
        assert!(HostSet::All.contains(Wwn(99)));
    }
}

/// A fabric route: the port behind which a physical N_Port sits, and its MAC address (FCoE
/// fabric-provided MAC addresses are derived from the FC address, but a route may override it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FabricRoute {
    /// The N_Port's address.
    pub fc_id: FcId,
    /// The switch port it is attached to.
    pub port: PortId,
}

/// A fabric login: which port name an N_Port ID belongs to, so the fast path can apply LUN
/// maps and masks (kept by port name) to frames (which carry addresses).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PortLogin {
    /// The address the fabric assigned.
    pub fc_id: FcId,
    /// The N_Port's port name.
    pub port_name: Wwn,
}
