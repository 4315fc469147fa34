//! Volumes (LVs) as the control path owns them: the layout a user asked for, the space it
//! claimed on devices, and per segment the authoritative Rmap and redirect table (`VsegMap`)
//! from which every fast-path grant is cut. Also the control path's own translation of an
//! I/O into device legs, for I/O it executes itself.

use core::ops::Range;

use dve_fp_api::ids::{DeviceId, JournalGroupId, LvId, VsegId, Wwn};
use dve_fp_api::mapping::{
    JournaledLayout, LvDescriptor, MirrorSet, MirrorSide, Placement, ReadPolicy, RedirectEntry, SideLayout,
    SideState, StorageDescriptor, StripeSet, VsegDescriptor, VsegLimits, VsegMap,
};
use serde::{Deserialize, Serialize};

use crate::device::DeviceRegistry;
use crate::error::Error;

/// How a volume is laid out on devices, as a user asks for it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum LayoutSpec {
    /// Concatenated: one segment per device, in order.
    Linear {
        /// The devices.
        devices: Vec<DeviceId>,
    },
    /// RAID 0 over `devices` with a stripe unit of `unit_blocks` (a power of two).
    Stripe {
        /// The members.
        devices: Vec<DeviceId>,
        /// Stripe unit in blocks.
        unit_blocks: u64,
    },
    /// RAID 1: every device is a side.
    Mirror {
        /// The sides.
        sides: Vec<DeviceId>,
    },
    /// RAID 10: a mirror of two stripe sets; devices pair up as (side 0, side 1).
    Raid10 {
        /// Side 0's stripe members.
        side_a: Vec<DeviceId>,
        /// Side 1's stripe members.
        side_b: Vec<DeviceId>,
        /// Stripe unit in blocks.
        unit_blocks: u64,
    },
    /// A snapshot of `source` (copy-on-write): blocks not yet pushed are read through the
    /// source's storage, pushed ones from `store`. Made by `ControlPath::create_snapshot`.
    Snapshot {
        /// The volume it is a snapshot of.
        source: LvId,
        /// The device holding pushed blocks.
        store: DeviceId,
        /// Whether hosts may write it (records from before this field are read-only).
        #[serde(default)]
        writable: bool,
    },
    /// An incremental volume of `base` (seed 003 Fig. 22): granules it has written are in
    /// `store`, the others are read through the base. Made by
    /// `ControlPath::create_incremental`.
    Incremental {
        /// The read-only volume it shares.
        base: LvId,
        /// The device holding its own granules.
        store: DeviceId,
    },
    /// A primary device whose writes are also journaled (asynchronous ordered replication)
    /// to per-worker regions of `journal`.
    Journal {
        /// The primary.
        primary: DeviceId,
        /// The journal device.
        journal: DeviceId,
        /// Journal blocks in all (split between the workers).
        journal_blocks: u64,
    },
}

impl LayoutSpec {
    /// Every device the layout uses.
    pub fn devices(&self) -> Vec<DeviceId> {
        match self {
            LayoutSpec::Linear { devices } | LayoutSpec::Stripe { devices, .. } => devices.clone(),
            LayoutSpec::Mirror { sides } => sides.clone(),
            LayoutSpec::Raid10 { side_a, side_b, .. } => side_a.iter().chain(side_b).copied().collect(),
            LayoutSpec::Journal { primary, journal, .. } => vec![*primary, *journal],
            LayoutSpec::Snapshot { store, .. } | LayoutSpec::Incremental { store, .. } => vec![*store],
        }
    }
}

/// Space a volume claimed on a device.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Allocation {
    /// The device.
    pub device: DeviceId,
    /// First block.
    pub lba: u64,
    /// Blocks.
    pub blocks: u64,
}

/// A volume's persistent definition.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// Its id.
    pub id: LvId,
    /// Its name.
    pub name: String,
    /// Size in blocks.
    pub blocks: u64,
    /// Block size in bytes.
    pub block_size: u32,
    /// The layout.
    pub layout: LayoutSpec,
    /// Space claimed, in the order the layout uses it.
    pub allocations: Vec<Allocation>,
    /// Hosts (port names) the volume is exposed to.
    pub hosts: Vec<Wwn>,
    /// Its LUN on the engine's virtual target.
    pub lun: u16,
    /// Mirror side states (mirror and RAID 10 layouts), by side.
    pub side_states: Vec<SideState>,
    /// Mirror generation, bumped on every side state change.
    pub generation: u32,
    /// Where its segments start, once split or merged (empty: as the layout makes them).
    #[serde(default)]
    pub segment_starts: Vec<u64>,
}

/// One piece of an I/O on one device.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DeviceLeg {
    /// The device.
    pub device: DeviceId,
    /// Device block.
    pub lba: u64,
    /// Blocks.
    pub blocks: u64,
    /// Offset of the piece in the I/O, in blocks.
    pub offset: u64,
    /// The mirror side, for mirrored layouts.
    pub side: Option<usize>,
}

/// A volume: its record and its live segment maps.
#[derive(Clone, Debug)]
pub struct Volume {
    /// The persistent definition.
    pub record: VolumeRecord,
    /// Segment maps, in LBA order.
    pub segments: Vec<VsegMap>,
}

/// Segment ids are derived from the volume id: up to 4096 segments per volume.
pub fn segment_id(lv: LvId, index: usize) -> VsegId {
    VsegId((lv.0 << 12) | index as u32)
}

impl Volume {
    /// Claim space for `layout` on `devices` and build the volume's maps.
    pub fn create(
        id: LvId,
        name: String,
        blocks: u64,
        block_size: u32,
        layout: LayoutSpec,
        devices: &mut DeviceRegistry,
    ) -> Result<Volume, Error> {
        if blocks == 0 {
            return Err(Error::invalid("size", "a volume needs at least one block"));
        }
        let per_device = Self::per_device_blocks(blocks, &layout)?;
        // Every claim is tried on a copy first, so a refused volume claims nothing.
        let mut trial = devices.clone();
        for (device, n) in &per_device {
            trial.allocate(*device, *n)?;
        }
        let mut allocations = Vec::with_capacity(per_device.len());
        for (device, n) in per_device {
            let lba = devices.allocate(device, n)?;
            allocations.push(Allocation { device, lba, blocks: n });
        }
        let sides = match &layout {
            LayoutSpec::Mirror { sides } => sides.len(),
            LayoutSpec::Raid10 { .. } => 2,
            _ => 0,
        };
        let record = VolumeRecord {
            id,
            name,
            blocks,
            block_size,
            layout,
            allocations,
            hosts: Vec::new(),
            lun: 0,
            side_states: vec![SideState::Alive; sides],
            generation: 0,
            segment_starts: Vec::new(),
        };
        Volume::from_record(record)
    }

    /// Blocks each device must give, in allocation order.
    fn per_device_blocks(blocks: u64, layout: &LayoutSpec) -> Result<Vec<(DeviceId, u64)>, Error> {
        let check_unit = |unit: u64| {
            if unit == 0 || !unit.is_power_of_two() || unit > 1 << 30 {
                Err(Error::invalid("stripe unit", format!("{unit} blocks is not a power of two up to 2^30")))
            } else {
                Ok(())
            }
        };
        let rows = |n: usize, unit: u64| blocks.div_ceil(unit * n as u64) * unit;
        Ok(match layout {
            LayoutSpec::Linear { devices } => {
                if devices.is_empty() || devices.len() > 4096 {
                    return Err(Error::invalid("devices", "a linear volume needs 1 to 4096 devices"));
                }
                let each = blocks.div_ceil(devices.len() as u64);
                let mut left = blocks;
                devices
                    .iter()
                    .map(|d| {
                        let n = each.min(left);
                        left -= n;
                        (*d, n)
                    })
                    .filter(|(_, n)| *n > 0)
                    .collect()
            }
            LayoutSpec::Stripe { devices, unit_blocks } => {
                check_unit(*unit_blocks)?;
                if devices.len() < 2 || devices.len() > StripeSet::MAX_MEMBERS {
                    return Err(Error::invalid("devices", "a stripe set needs 2 to 256 devices"));
                }
                let each = rows(devices.len(), *unit_blocks);
                devices.iter().map(|d| (*d, each)).collect()
            }
            LayoutSpec::Mirror { sides } => {
                if sides.len() < 2 || sides.len() > MirrorSet::MAX_SIDES {
                    return Err(Error::invalid("sides", "a mirror needs 2 to 8 sides"));
                }
                distinct(sides)?;
                sides.iter().map(|d| (*d, blocks)).collect()
            }
            LayoutSpec::Raid10 { side_a, side_b, unit_blocks } => {
                check_unit(*unit_blocks)?;
                if side_a.len() < 2 || side_a.len() != side_b.len() {
                    return Err(Error::invalid(
                        "devices",
                        "RAID 10 needs two stripe sets of equal width >= 2",
                    ));
                }
                let all: Vec<DeviceId> = side_a.iter().chain(side_b).copied().collect();
                distinct(&all)?;
                let each = rows(side_a.len(), *unit_blocks);
                all.iter().map(|d| (*d, each)).collect()
            }
            LayoutSpec::Snapshot { .. } | LayoutSpec::Incremental { .. } => {
                return Err(Error::invalid(
                    "layout",
                    "snapshots and incrementals are made from their source, not created",
                ));
            }
            LayoutSpec::Journal { primary, journal, journal_blocks } => {
                if primary == journal {
                    return Err(Error::invalid("journal", "the journal needs its own device"));
                }
                if *journal_blocks < 64 {
                    return Err(Error::invalid("journal size", "a journal needs at least 64 blocks"));
                }
                vec![(*primary, blocks), (*journal, *journal_blocks)]
            }
        })
    }

    /// Rebuild a volume's maps from its record (at creation and after a restart).
    pub fn from_record(record: VolumeRecord) -> Result<Volume, Error> {
        let a = &record.allocations;
        let place = |i: usize| Placement { device: a[i].device, lba: a[i].lba };
        let side_state = |i: usize| record.side_states.get(i).copied().unwrap_or(SideState::Alive);
        let mut descriptors: Vec<(u64, StorageDescriptor)> = Vec::new();
        // How hosts reach the storage, until a data service says otherwise.
        let mut access: fn(StorageDescriptor) -> RedirectEntry = RedirectEntry::read_write;
        match &record.layout {
            LayoutSpec::Linear { .. } => {
                for (i, alloc) in a.iter().enumerate() {
                    descriptors.push((alloc.blocks, StorageDescriptor::Single(place(i))));
                }
            }
            LayoutSpec::Stripe { unit_blocks, .. } => {
                let members = (0..a.len()).map(place).collect();
                let set = StripeSet::new(unit_blocks.trailing_zeros() as u8, members)?;
                descriptors.push((record.blocks, StorageDescriptor::Stripe(set)));
            }
            LayoutSpec::Mirror { .. } => {
                let sides = (0..a.len())
                    .map(|i| MirrorSide {
                        layout: SideLayout::Single(place(i)),
                        state: side_state(i),
                        read_cost: 1,
                    })
                    .collect();
                let mut set = MirrorSet::new(sides, ReadPolicy::RoundRobin)?;
                set.generation = record.generation;
                descriptors.push((record.blocks, StorageDescriptor::Mirror(set)));
            }
            LayoutSpec::Raid10 { side_a, unit_blocks, .. } => {
                let width = side_a.len();
                let shift = unit_blocks.trailing_zeros() as u8;
                let sa = StripeSet::new(shift, (0..width).map(place).collect())?;
                let sb = StripeSet::new(shift, (width..2 * width).map(place).collect())?;
                let sides = vec![
                    MirrorSide { layout: SideLayout::Stripe(sa), state: side_state(0), read_cost: 1 },
                    MirrorSide { layout: SideLayout::Stripe(sb), state: side_state(1), read_cost: 1 },
                ];
                let mut set = MirrorSet::new(sides, ReadPolicy::RoundRobin)?;
                set.generation = record.generation;
                descriptors.push((record.blocks, StorageDescriptor::Mirror(set)));
            }
            LayoutSpec::Snapshot { writable, .. } => {
                // A completed snapshot: every block is in its store. One still completing is
                // given its source's states by the snapshot task resuming it.
                descriptors.push((record.blocks, StorageDescriptor::Single(place(0))));
                access = if *writable { RedirectEntry::read_write } else { RedirectEntry::read_only };
            }
            LayoutSpec::Incremental { .. } => {
                // No access until it is given its base's states, which needs the base.
                descriptors.push((record.blocks, StorageDescriptor::Single(place(0))));
                access = RedirectEntry::no_access;
            }
            LayoutSpec::Journal { .. } => {
                let layout = JournaledLayout {
                    primary: SideLayout::Single(place(0)),
                    group: JournalGroupId(record.id.0),
                };
                descriptors.push((record.blocks, StorageDescriptor::Journaled(layout)));
            }
        }
        let mut pieces: Vec<(u64, RedirectEntry)> =
            descriptors.into_iter().map(|(n, d)| (n, access(d))).collect();
        if !record.segment_starts.is_empty() {
            pieces = recut(pieces, &record.segment_starts)?;
        }
        let segments = segment_maps(record.id, pieces)?;
        Ok(Volume { record, segments })
    }

    /// Segments for volume `id` with this volume's geometry, over a store of its size at
    /// `lba` on `store`, allowing no access yet (a snapshot or an incremental being made).
    pub fn segments_over(&self, id: LvId, store: DeviceId, lba: u64) -> Result<Vec<VsegMap>, Error> {
        let mut segments = Vec::with_capacity(self.segments.len());
        for (i, seg) in self.segments.iter().enumerate() {
            let d = *seg.descriptor();
            let desc = VsegDescriptor { id: segment_id(id, i), lv: id, start: d.start, blocks: d.blocks };
            let own = StorageDescriptor::Single(Placement { device: store, lba: lba + d.start });
            segments.push(VsegMap::new(desc, RedirectEntry::no_access(own), VsegLimits::default())?);
        }
        Ok(segments)
    }

    /// The volume descriptor the fast path caches.
    pub fn descriptor(&self) -> Result<LvDescriptor, Error> {
        let segments = self.segments.iter().map(|s| *s.descriptor()).collect();
        Ok(LvDescriptor::new(self.record.id, self.record.block_size, segments)?)
    }

    /// The segment map of `vseg`.
    pub fn segment(&self, vseg: VsegId) -> Option<&VsegMap> {
        self.segments.iter().find(|s| s.descriptor().id == vseg)
    }

    /// The segment map of `vseg`, mutably.
    pub fn segment_mut(&mut self, vseg: VsegId) -> Option<&mut VsegMap> {
        self.segments.iter_mut().find(|s| s.descriptor().id == vseg)
    }

    /// Segments and segment-relative block ranges that `lba..lba+blocks` covers.
    pub fn pieces(&self, lba: u64, blocks: u64) -> Vec<(VsegId, Range<u64>, u64)> {
        let end = lba.saturating_add(blocks);
        let mut out = Vec::new();
        for s in &self.segments {
            let d = s.descriptor();
            let from = lba.max(d.start);
            let to = end.min(d.end());
            if from < to {
                out.push((d.id, from - d.start..to - d.start, from - lba));
            }
        }
        out
    }

    /// The device legs of an I/O the control path runs itself: every writable side for a
    /// write, one readable side (`read_side` picks it) for a read. The journal leg of a
    /// journaled layout is not included: the control path's own writes go to the primary.
    pub fn legs(
        &self,
        lba: u64,
        blocks: u64,
        write: bool,
        read_side: &mut usize,
    ) -> Result<Vec<DeviceLeg>, Error> {
        if lba.checked_add(blocks).is_none_or(|end| end > self.record.blocks) {
            return Err(Error::invalid(
                "LBA range",
                format!("{lba}+{blocks} is beyond {}", self.record.blocks),
            ));
        }
        let mut legs = Vec::new();
        for (vseg, range, offset) in self.pieces(lba, blocks) {
            let Some(map) = self.segment(vseg) else { continue };
            for extent in map.rmap().overlapping(range.clone()) {
                let from = extent.start.max(range.start);
                let to = extent.end.min(range.end);
                let entry = map.redirects().get(extent.value).ok_or_else(|| {
                    Error::FailedPrecondition(format!("extent refers to missing entry {:?}", extent.value))
                })?;
                let at = offset + (from - range.start);
                descriptor_legs(&entry.descriptor, from..to, at, write, read_side, &mut legs)?;
            }
        }
        Ok(legs)
    }
}

fn distinct(devices: &[DeviceId]) -> Result<(), Error> {
    let mut seen = std::collections::BTreeSet::new();
    if devices.iter().all(|d| seen.insert(*d)) {
        Ok(())
    } else {
        Err(Error::invalid("devices", "a device may appear only once in a layout"))
    }
}

fn side_legs(
    layout: &SideLayout,
    blocks: Range<u64>,
    at: u64,
    side: Option<usize>,
    out: &mut Vec<DeviceLeg>,
) {
    let mut block = blocks.start;
    while block < blocks.end {
        let (location, room) = layout.locate(block);
        let n = room.min(blocks.end - block);
        out.push(DeviceLeg {
            device: location.device,
            lba: location.lba,
            blocks: n,
            offset: at + (block - blocks.start),
            side,
        });
        block += n;
    }
}

/// Legs of `blocks` (segment blocks) under one storage descriptor.
pub fn descriptor_legs(
    descriptor: &StorageDescriptor,
    blocks: Range<u64>,
    at: u64,
    write: bool,
    read_side: &mut usize,
    out: &mut Vec<DeviceLeg>,
) -> Result<(), Error> {
    match descriptor {
        StorageDescriptor::Single(p) => side_legs(&SideLayout::Single(*p), blocks, at, None, out),
        StorageDescriptor::Stripe(s) => side_legs(&SideLayout::Stripe(s.clone()), blocks, at, None, out),
        StorageDescriptor::Journaled(j) => side_legs(&j.primary, blocks, at, None, out),
        StorageDescriptor::Mirror(m) => {
            if write {
                let mut any = false;
                for side in m.writable() {
                    any = true;
                    side_legs(&m.sides()[side].layout, blocks.clone(), at, Some(side), out);
                }
                if !any {
                    return Err(Error::FailedPrecondition("no mirror side is writable".into()));
                }
            } else {
                let side = m
                    .pick_read_side(*read_side)
                    .ok_or_else(|| Error::FailedPrecondition("no mirror side is readable".into()))?;
                *read_side = side;
                side_legs(&m.sides()[side].layout, blocks, at, Some(side), out);
            }
        }
    }
    Ok(())
}

/// Segment maps of volume `lv`, in order, from their sizes and single redirect entries.
pub fn segment_maps(lv: LvId, pieces: Vec<(u64, RedirectEntry)>) -> Result<Vec<VsegMap>, Error> {
    let mut segments = Vec::with_capacity(pieces.len());
    let mut start = 0;
    for (i, (blocks, entry)) in pieces.into_iter().enumerate() {
        let vseg = VsegDescriptor { id: segment_id(lv, i), lv, start, blocks };
        segments.push(VsegMap::new(vseg, entry, VsegLimits::default())?);
        start += blocks;
    }
    Ok(segments)
}

/// `descriptor` seen from `blocks` into its segment: the storage of the part of a segment
/// that starts there. A stripe set is cut only between full rows.
pub fn descriptor_from(descriptor: &StorageDescriptor, blocks: u64) -> Result<StorageDescriptor, Error> {
    fn stripe_from(set: &StripeSet, blocks: u64) -> Result<StripeSet, Error> {
        let width = set.members().len() as u64;
        let row = (1u64 << set.unit_shift()) * width;
        if !blocks.is_multiple_of(row) {
            return Err(Error::invalid(
                "split point",
                format!("{blocks} blocks is not a whole number of stripe rows of {row} blocks"),
            ));
        }
        let members = set.members().iter().map(|p| Placement { lba: p.lba + blocks / width, ..*p }).collect();
        Ok(StripeSet::new(set.unit_shift(), members)?)
    }
    let side = |layout: &SideLayout| -> Result<SideLayout, Error> {
        Ok(match layout {
            SideLayout::Single(p) => SideLayout::Single(Placement { lba: p.lba + blocks, ..*p }),
            SideLayout::Stripe(set) => SideLayout::Stripe(stripe_from(set, blocks)?),
        })
    };
    Ok(match descriptor {
        StorageDescriptor::Single(p) => StorageDescriptor::Single(Placement { lba: p.lba + blocks, ..*p }),
        StorageDescriptor::Stripe(set) => StorageDescriptor::Stripe(stripe_from(set, blocks)?),
        StorageDescriptor::Mirror(m) => {
            let sides = m
                .sides()
                .iter()
                .map(|s| Ok(MirrorSide { layout: side(&s.layout)?, ..*s }))
                .collect::<Result<Vec<_>, Error>>()?;
            let mut set = MirrorSet::new(sides, m.read_policy)?;
            set.generation = m.generation;
            StorageDescriptor::Mirror(set)
        }
        StorageDescriptor::Journaled(j) => {
            StorageDescriptor::Journaled(JournaledLayout { primary: side(&j.primary)?, group: j.group })
        }
    })
}

/// Cut and join a volume's segments, given as (blocks, redirect entry), so that they start
/// exactly at `starts`. A cut gives the second part the storage from the cut on; a join
/// needs the second segment's storage to continue the first's.
pub fn recut(pieces: Vec<(u64, RedirectEntry)>, starts: &[u64]) -> Result<Vec<(u64, RedirectEntry)>, Error> {
    let total: u64 = pieces.iter().map(|(n, _)| n).sum();
    if starts.first() != Some(&0)
        || starts.windows(2).any(|w| w[0] >= w[1])
        || starts.last().is_some_and(|s| *s >= total)
    {
        return Err(Error::invalid(
            "segment starts",
            format!("{starts:?} must rise from 0 and stay below {total} blocks"),
        ));
    }
    // Cut every piece at each start inside it.
    let mut cut: Vec<(u64, u64, RedirectEntry)> = Vec::new();
    let mut at = 0;
    for (blocks, entry) in pieces {
        let end = at + blocks;
        let mut from = at;
        for s in starts.iter().copied().filter(|s| *s > at && *s < end) {
            let e =
                RedirectEntry { descriptor: descriptor_from(&entry.descriptor, from - at)?, ..entry.clone() };
            cut.push((from, s - from, e));
            from = s;
        }
        let e = RedirectEntry { descriptor: descriptor_from(&entry.descriptor, from - at)?, ..entry.clone() };
        cut.push((from, end - from, e));
        at = end;
    }
    // Join every piece that does not start a segment to the one before.
    let mut out: Vec<(u64, RedirectEntry)> = Vec::new();
    for (start, blocks, entry) in cut {
        match out.last_mut() {
            Some((n, prev)) if starts.binary_search(&start).is_err() => {
                let continued =
                    RedirectEntry { descriptor: descriptor_from(&prev.descriptor, *n)?, ..prev.clone() };
                if continued != entry {
                    return Err(Error::invalid(
                        "segments",
                        format!(
                            "the segment at block {start} does not continue the storage of the one before it"
                        ),
                    ));
                }
                *n += blocks;
            }
            _ => out.push((blocks, entry)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dve_fp_api::ids::Lun;

    fn registry(n: u32, blocks: u64) -> DeviceRegistry {
        let mut r = DeviceRegistry::default();
        for i in 1..=n {
            let (d, _) = r.find_or_add_identified(None, Wwn(u64::from(i)), Lun(0));
            d.blocks = blocks;
        }
        r
    }

    #[test]
    fn linear_over_two_devices_makes_two_segments() {
        let mut devices = registry(2, 1000);
        let layout = LayoutSpec::Linear { devices: vec![DeviceId(1), DeviceId(2)] };
        let v = Volume::create(LvId(1), "v".into(), 1500, 512, layout, &mut devices).unwrap();
        assert_eq!(v.segments.len(), 2);
        let mut side = 0;
        let legs = v.legs(740, 20, true, &mut side).unwrap();
        assert_eq!(
            legs,
            vec![
                DeviceLeg { device: DeviceId(1), lba: 740, blocks: 10, offset: 0, side: None },
                DeviceLeg { device: DeviceId(2), lba: 0, blocks: 10, offset: 10, side: None },
            ]
        );
    }

    #[test]
    fn stripe_legs_split_at_units_and_mirror_writes_every_side() {
        let mut devices = registry(4, 10_000);
        let stripe = LayoutSpec::Stripe { devices: vec![DeviceId(1), DeviceId(2)], unit_blocks: 8 };
        let v = Volume::create(LvId(1), "s".into(), 64, 512, stripe, &mut devices).unwrap();
        let mut side = 0;
        let legs = v.legs(6, 4, false, &mut side).unwrap();
        assert_eq!(legs.len(), 2);
        assert_eq!((legs[0].device, legs[0].lba, legs[0].blocks), (DeviceId(1), 6, 2));
        assert_eq!((legs[1].device, legs[1].lba, legs[1].blocks), (DeviceId(2), 0, 2));
        let mirror = LayoutSpec::Mirror { sides: vec![DeviceId(3), DeviceId(4)] };
        let m = Volume::create(LvId(2), "m".into(), 100, 512, mirror, &mut devices).unwrap();
        assert_eq!(m.legs(0, 8, true, &mut side).unwrap().len(), 2);
        assert_eq!(m.legs(0, 8, false, &mut side).unwrap().len(), 1);
    }

    #[test]
    fn a_refused_volume_claims_nothing() {
        let mut devices = registry(2, 100);
        let layout = LayoutSpec::Mirror { sides: vec![DeviceId(1), DeviceId(2)] };
        devices.allocate(DeviceId(2), 50).unwrap();
        let err = Volume::create(LvId(1), "m".into(), 80, 512, layout, &mut devices).unwrap_err();
        assert!(matches!(err, Error::NoSpace { device: DeviceId(2), .. }));
        assert_eq!(devices.get(DeviceId(1)).unwrap().allocated, 0);
    }

    /// Where each block of a volume made of `pieces` lives, block by block: the model.
    fn blocks_of(pieces: &[(u64, RedirectEntry)]) -> Vec<(DeviceId, u64)> {
        let mut out = Vec::new();
        for (blocks, entry) in pieces {
            let StorageDescriptor::Single(p) = entry.descriptor else { panic!("single placements only") };
            out.extend((0..*blocks).map(|b| (p.device, p.lba + b)));
        }
        out
    }

    proptest::proptest! {
        /// Any cut keeps every block where it was; a join is refused exactly when the
        /// second segment's storage does not continue the first's.
        #[test]
        fn recut_keeps_every_block_in_place(
            raw in proptest::collection::vec((1u64..40, 1u32..3, 0u64..3), 1..6),
            cuts in proptest::collection::vec(1u64..200, 0..6),
        ) {
            // A piece either continues the one before on its device (choice 0) or not.
            let mut pieces: Vec<(u64, RedirectEntry)> = Vec::new();
            let mut natural = vec![0u64];
            for (blocks, device, choice) in raw {
                let lba = match (pieces.last(), choice) {
                    (Some((n, prev)), 0) => {
                        let StorageDescriptor::Single(p) = prev.descriptor else { unreachable!() };
                        Placement { device: p.device, lba: p.lba + n }
                    }
                    _ => Placement { device: DeviceId(device), lba: 1000 * u64::from(device) + choice * 97 },
                };
                pieces.push((blocks, RedirectEntry::read_write(StorageDescriptor::Single(lba))));
                natural.push(natural.last().copied().unwrap_or(0) + blocks);
            }
            let total = natural.pop().unwrap_or(0);
            let mut starts: Vec<u64> = cuts.into_iter().filter(|c| *c < total).collect();
            starts.push(0);
            starts.sort_unstable();
            starts.dedup();
            let model = blocks_of(&pieces);
            // Boundaries that must be joined, and whether they can be.
            let joinable = natural.iter().skip(1).filter(|b| !starts.contains(b)).all(|b| {
                let b = *b as usize;
                model[b].0 == model[b - 1].0 && model[b].1 == model[b - 1].1 + 1
            });
            match recut(pieces.clone(), &starts) {
                Ok(cut) => {
                    proptest::prop_assert!(joinable);
                    proptest::prop_assert_eq!(blocks_of(&cut), model);
                    let mut at = 0;
                    let got: Vec<u64> = cut.iter().map(|(n, _)| { let s = at; at += n; s }).collect();
                    proptest::prop_assert_eq!(got, starts);
                }
                Err(e) => {
                    proptest::prop_assert!(!joinable, "{}", e);
                }
            }
        }
    }

    #[test]
    fn stripes_are_cut_between_whole_rows_only() {
        let set = StripeSet::new(
            3,
            vec![Placement { device: DeviceId(1), lba: 0 }, Placement { device: DeviceId(2), lba: 50 }],
        )
        .unwrap();
        let entry = RedirectEntry::read_write(StorageDescriptor::Stripe(set));
        let cut = recut(vec![(64, entry.clone())], &[0, 32]).unwrap();
        let StorageDescriptor::Stripe(second) = &cut[1].1.descriptor else { panic!("a stripe") };
        assert_eq!(second.members()[1], Placement { device: DeviceId(2), lba: 66 });
        assert_eq!(recut(cut, &[0]).unwrap(), vec![(64, entry.clone())], "the halves join again");
        assert!(recut(vec![(64, entry)], &[0, 12]).is_err(), "12 blocks is not a row of 16");
    }
}
