//! Property test: random streams of reads and writes over random layouts (linear, stripe,
//! mirror, journal, mixed extents with fault-on-read/write) checked against a plain
//! translation model: every byte goes to the right device and offset, mirror sides receive
//! identical data, no I/O is started under a revoked entry after its acknowledgement, and
//! overlapping mirror writes are never in flight together.

mod support;

use std::collections::{BTreeMap, HashMap};

use dve_fp_api::FaultCause;
use dve_fp_api::ids::{DeviceId, JournalGroupId, VsegId, WorkerId};
use dve_fp_api::io::{PendingFilter, PendingSide};
use dve_fp_api::mapping::{
    Extent, JournalRegion, JournaledLayout, MirrorSet, MirrorSide, Placement, ReadPolicy, RedirectEntry,
    RedirectIndex, SideLayout, SideState, StorageDescriptor, StripeSet, VsegDescriptor,
};
use dve_fp_api::message::{MappingEntry, MappingKey, MissVerdict, ToCp, ToFp};
use proptest::prelude::*;
use support::*;

const BLOCKS: u64 = 192;

/// A layout as the model sees it: plain arithmetic, no shift/mask, no reciprocal.
#[derive(Clone, Debug)]
enum Layout {
    Single { device: u32, base: u64 },
    Stripe { unit: u64, members: Vec<(u32, u64)> },
    Mirror { sides: Vec<(Box<Layout>, SideState)> },
    Journaled { primary: Box<Layout> },
}

impl Layout {
    /// Where block `b` of the segment lives, for each copy a write must reach.
    fn write_locations(&self, b: u64) -> Vec<(u32, u64)> {
        match self {
            Layout::Single { device, base } => vec![(*device, base + b)],
            Layout::Stripe { unit, members } => {
                let u = b / unit;
                let (device, base) = members[(u % members.len() as u64) as usize];
                vec![(device, base + (u / members.len() as u64) * unit + b % unit)]
            }
            Layout::Mirror { sides } => sides
                .iter()
                .filter(|(_, s)| *s != SideState::Dead)
                .flat_map(|(l, _)| l.write_locations(b))
                .collect(),
            Layout::Journaled { primary } => primary.write_locations(b),
        }
    }

    fn serialized(&self) -> bool {
        matches!(self, Layout::Mirror { .. } | Layout::Journaled { .. })
    }

    /// Downstream I/Os needed for blocks `[start, end)`: one per stripe unit touched, one
    /// per written side (reads use one side), plus the journal entry of a journaled write.
    fn legs(&self, start: u64, end: u64, write: bool) -> usize {
        match self {
            Layout::Single { .. } => 1,
            Layout::Stripe { unit, .. } => ((end - 1) / unit - start / unit + 1) as usize,
            Layout::Mirror { sides } if write => sides
                .iter()
                .filter(|(_, s)| *s != SideState::Dead)
                .map(|(l, _)| l.legs(start, end, write))
                .sum(),
            Layout::Mirror { sides } => sides[0].0.legs(start, end, write),
            Layout::Journaled { primary } => primary.legs(start, end, write),
        }
    }

    fn side(&self) -> SideLayout {
        match self {
            Layout::Single { device, base } => {
                SideLayout::Single(Placement { device: DeviceId(*device), lba: *base })
            }
            Layout::Stripe { unit, members } => SideLayout::Stripe(
                StripeSet::new(
                    unit.trailing_zeros() as u8,
                    members.iter().map(|&(d, b)| Placement { device: DeviceId(d), lba: b }).collect(),
                )
                .unwrap(),
            ),
            _ => unreachable!("sides are single or striped"),
        }
    }

    fn descriptor(&self) -> StorageDescriptor {
        match self {
            Layout::Single { device, base } => {
                StorageDescriptor::Single(Placement { device: DeviceId(*device), lba: *base })
            }
            Layout::Stripe { .. } => match self.side() {
                SideLayout::Stripe(s) => StorageDescriptor::Stripe(s),
                SideLayout::Single(_) => unreachable!(),
            },
            Layout::Mirror { sides } => StorageDescriptor::Mirror(
                MirrorSet::new(
                    sides
                        .iter()
                        .map(|(l, s)| MirrorSide { layout: l.side(), state: *s, read_cost: 1 })
                        .collect(),
                    ReadPolicy::RoundRobin,
                )
                .unwrap(),
            ),
            Layout::Journaled { primary } => StorageDescriptor::Journaled(JournaledLayout {
                primary: primary.side(),
                group: JournalGroupId(1),
            }),
        }
    }
}

/// Each entry gets its own device region (base = 10_000 * entry), so entries never alias.
fn leaf(entry: usize) -> impl Strategy<Value = Layout> {
    let base = 10_000 * entry as u64;
    prop_oneof![
        (1u32..=8).prop_map(move |device| Layout::Single { device, base }),
        (0u32..3, prop::collection::vec(1u32..=8, 2..4)).prop_map(move |(shift, devices)| Layout::Stripe {
            unit: 1 << shift,
            members: devices.iter().enumerate().map(|(i, &d)| (d, base + 1000 * i as u64)).collect(),
        }),
    ]
}

fn layout(entry: usize) -> impl Strategy<Value = Layout> {
    let base = 10_000 * entry as u64;
    prop_oneof![
        3 => leaf(entry),
        2 => prop::collection::vec((1u32..=8, prop_oneof![4 => Just(SideState::Alive), 1 => Just(SideState::Resync), 1 => Just(SideState::Dead)]), 2..4)
            .prop_map(move |sides| Layout::Mirror {
                sides: sides.iter().enumerate().map(|(i, &(d, s))| {
                    // The first side stays alive so reads have somewhere to go.
                    let s = if i == 0 { SideState::Alive } else { s };
                    (Box::new(Layout::Single { device: d, base: base + 2000 * i as u64 }), s)
                }).collect(),
            }),
        1 => (1u32..=8).prop_map(move |device| Layout::Journaled { primary: Box::new(Layout::Single { device, base }) }),
    ]
}

#[derive(Clone, Debug)]
struct Volume {
    entries: Vec<(Layout, bool, bool)>,
    /// Extent boundaries and the entry each extent uses.
    extents: Vec<(u64, u64, usize)>,
}

impl Volume {
    /// The extents as the worker's cache holds them: neighbours on the same entry are one
    /// extent, and an I/O across their boundary is one run of legs, not two.
    fn coalesced(&self) -> Vec<(u64, u64, usize)> {
        let mut out: Vec<(u64, u64, usize)> = Vec::with_capacity(self.extents.len());
        for &(s, e, i) in &self.extents {
            match out.last_mut() {
                Some(last) if last.1 == s && last.2 == i => last.1 = e,
                _ => out.push((s, e, i)),
            }
        }
        out
    }
}

fn volume() -> impl Strategy<Value = Volume> {
    (1usize..4)
        .prop_flat_map(|n| {
            let entries = (0..n)
                .map(|i| (layout(i), prop::bool::weighted(0.1), prop::bool::weighted(0.15)))
                .collect::<Vec<_>>();
            (entries, prop::collection::btree_set(1..BLOCKS, 0..4), prop::collection::vec(0..n, 5))
        })
        .prop_map(|(entries, cuts, picks)| {
            let mut bounds: Vec<u64> =
                std::iter::once(0).chain(cuts).chain(std::iter::once(BLOCKS)).collect();
            bounds.dedup();
            let extents =
                bounds.windows(2).enumerate().map(|(i, w)| (w[0], w[1], picks[i % picks.len()])).collect();
            Volume { entries, extents }
        })
}

#[derive(Clone, Debug)]
enum Op {
    Write { lba: u64, blocks: u32, seed: u8 },
    Read { lba: u64, blocks: u32 },
    Revoke { lba: u64, blocks: u32 },
    Hold,
    Release,
}

fn op() -> impl Strategy<Value = Op> {
    let range = (0..BLOCKS, 1u32..24).prop_map(|(lba, n)| (lba, n.min((BLOCKS - lba) as u32)));
    prop_oneof![
        4 => (range.clone(), any::<u8>()).prop_map(|((lba, blocks), seed)| Op::Write { lba, blocks, seed }),
        4 => range.clone().prop_map(|(lba, blocks)| Op::Read { lba, blocks }),
        1 => range.prop_map(|(lba, blocks)| Op::Revoke { lba, blocks }),
        1 => Just(Op::Hold),
        1 => Just(Op::Release),
    ]
}

struct Harness {
    bed: Testbed,
    volume: Volume,
    /// Last acknowledged data of each volume block.
    acked: BTreeMap<u64, Vec<u8>>,
    /// Host writes in flight: ox, range, data, serialized.
    writes: Vec<(u16, u64, u64, Vec<u8>, bool)>,
    /// Host reads in flight with the data they must return (None: some block unknowable).
    reads: Vec<(u16, u64, u64, Option<Vec<u8>>)>,
}

impl Harness {
    fn new(volume: Volume) -> Harness {
        let mut t = dve_fp_api::mapping::RedirectTable::new(16);
        for (layout, fault_on_read, fault_on_write) in &volume.entries {
            t.insert(RedirectEntry {
                descriptor: layout.descriptor(),
                fault_on_read: *fault_on_read,
                fault_on_write: *fault_on_write,
            })
            .unwrap();
        }
        let seg = VsegDescriptor { id: VsegId(1), lv: LV, start: 0, blocks: BLOCKS };
        let extents = volume
            .extents
            .iter()
            .map(|&(s, e, i)| Extent { start: s, end: e, value: RedirectIndex(i as u16) })
            .collect();
        let mut bed = Testbed::new(|_| {}, vec![(seg, t, extents)]);
        bed.grant(MappingEntry::Journal(JournalRegion {
            group: JournalGroupId(1),
            worker: WorkerId(0),
            placement: Placement { device: DeviceId(9), lba: 0 },
            blocks: 1 << 20,
            sequence: 1,
        }));
        bed.grant(support::device_paths(9).pop().unwrap());
        Harness { bed, volume, acked: BTreeMap::new(), writes: Vec::new(), reads: Vec::new() }
    }

    fn entry_of(&self, b: u64) -> &(Layout, bool, bool) {
        let &(_, _, i) = self.volume.extents.iter().find(|&&(s, e, _)| s <= b && b < e).unwrap();
        &self.volume.entries[i]
    }

    fn serialized(&self, lba: u64, blocks: u32) -> bool {
        (lba..lba + u64::from(blocks)).any(|b| self.entry_of(b).0.serialized())
    }

    /// The fault the decision chain meets first for this I/O, in its order: per extent in
    /// block order fault-on-read/write, then too many legs; then a serialization conflict;
    /// then the journal entry's leg.
    fn expected_fault(&self, lba: u64, blocks: u32, write: bool, conflict: bool) -> Option<FaultCause> {
        let end = lba + u64::from(blocks);
        let max = dve_fastpath::worker::translate::MAX_LEGS;
        let mut legs = 0;
        let mut journaled = false;
        for (s, e, i) in self.volume.coalesced() {
            let (from, to) = (s.max(lba), e.min(end));
            if from >= to {
                continue;
            }
            let (layout, fault_on_read, fault_on_write) = &self.volume.entries[i];
            if (write && *fault_on_write) || (!write && *fault_on_read) {
                return Some(FaultCause::Permission);
            }
            legs += layout.legs(from, to, write);
            if legs > max {
                return Some(FaultCause::Capacity);
            }
            journaled |= write && matches!(layout, Layout::Journaled { .. });
        }
        if conflict {
            return Some(FaultCause::SerializationConflict);
        }
        if journaled && legs + 1 > max {
            return Some(FaultCause::Capacity);
        }
        None
    }

    fn expected(&self, b: u64) -> Vec<u8> {
        self.acked.get(&b).cloned().unwrap_or_else(|| vec![0; BLOCK])
    }

    fn collect(&mut self) -> Result<(), TestCaseError> {
        let mut still = Vec::new();
        for (ox, lba, end, data, ser) in std::mem::take(&mut self.writes) {
            match self.bed.result(ox).status {
                Some(0) => {
                    for (i, b) in (lba..end).enumerate() {
                        self.acked.insert(b, data[i * BLOCK..(i + 1) * BLOCK].to_vec());
                    }
                }
                Some(other) => prop_assert!(false, "write completed with status {other}"),
                None => still.push((ox, lba, end, data, ser)),
            }
        }
        self.writes = still;
        let mut still = Vec::new();
        for (ox, lba, end, expected) in std::mem::take(&mut self.reads) {
            match self.bed.result(ox).status {
                Some(0) => {
                    if let Some(expected) = expected {
                        prop_assert_eq!(&self.bed.result(ox).data, &expected, "read {}..{}", lba, end);
                    }
                }
                Some(other) => prop_assert!(false, "read completed with status {other}"),
                None => still.push((ox, lba, end, expected)),
            }
        }
        self.reads = still;
        Ok(())
    }

    fn check_serialization(&mut self) -> Result<(), TestCaseError> {
        let req = self.bed.req();
        self.bed.message(ToFp::QueryPendingIos {
            req,
            filter: PendingFilter { writes_only: true, ..Default::default() },
        });
        let Some(ToCp::PendingIos { ios, .. }) = self.bed.upcalls.pop() else {
            return Err(TestCaseError::fail("no pending-list reply"));
        };
        let active: Vec<(u64, u64)> = ios
            .iter()
            .filter(|i| i.side == PendingSide::Upstream && i.state == dve_fp_api::io::PendingState::Pending)
            .filter(|i| self.serialized(i.first_block, i.blocks))
            .map(|i| (i.first_block, i.first_block + u64::from(i.blocks)))
            .collect();
        for (i, a) in active.iter().enumerate() {
            for b in &active[i + 1..] {
                prop_assert!(
                    a.1 <= b.0 || b.1 <= a.0,
                    "overlapping mirror writes in flight: {:?} {:?}",
                    a,
                    b
                );
            }
        }
        Ok(())
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Hold => self.bed.hold_disks = true,
            Op::Release => self.bed.release_disks(),
            Op::Write { lba, blocks, seed } => {
                let end = lba + u64::from(blocks);
                let ser = self.serialized(lba, blocks);
                let overlapping: Vec<bool> =
                    self.writes.iter().filter(|w| w.1 < end && lba < w.2).map(|w| w.4).collect();
                if overlapping.iter().any(|&s| !s || !ser) {
                    return Ok(()); // concurrent overlapping plain writes: nothing to predict
                }
                let faults_before = self.bed.queued_causes().len();
                let data = pattern(seed, blocks as usize);
                let ox = self.bed.write(lba, data.clone());
                let causes = self.bed.queued_causes();
                match self.expected_fault(lba, blocks, true, !overlapping.is_empty()) {
                    Some(cause) => prop_assert_eq!(causes.last().copied(), Some(cause)),
                    None => {
                        prop_assert_eq!(causes.len(), faults_before, "write faulted: {:?}", causes);
                        self.writes.push((ox, lba, end, data, ser));
                    }
                }
            }
            Op::Read { lba, blocks } => {
                let end = lba + u64::from(blocks);
                let racing = self.writes.iter().any(|w| w.1 < end && lba < w.2);
                let expected: Option<Vec<u8>> =
                    (!racing).then(|| (lba..end).flat_map(|b| self.expected(b)).collect());
                let faults_before = self.bed.queued_causes().len();
                let ox = self.bed.read(lba, blocks);
                match self.expected_fault(lba, blocks, false, false) {
                    Some(cause) => prop_assert_eq!(self.bed.queued_causes().last().copied(), Some(cause)),
                    None => {
                        prop_assert_eq!(self.bed.queued_causes().len(), faults_before);
                        self.reads.push((ox, lba, end, expected));
                    }
                }
            }
            Op::Revoke { lba, blocks } => {
                let end = lba + u64::from(blocks);
                let req = self.bed.req();
                self.bed.message(ToFp::RemoveMapping {
                    req,
                    key: MappingKey::Extents { vseg: VsegId(1), blocks: lba..end },
                });
                let acked = matches!(self.bed.upcalls.last(), Some(ToCp::InvalidationAck { req: r, .. }) if *r == req);
                prop_assert!(acked, "the revocation is acknowledged");
                // Nothing may start under the revoked entry: a read there misses, and no
                // device sees a command until the control path answers.
                let commands = self.bed.disks.commands.len();
                let held = self.bed.held_disk_frames.len();
                let misses = self.bed.misses();
                let expected: Option<Vec<u8>> =
                    (!self.writes.iter().any(|w| w.1 < lba + 1 && lba < w.2)).then(|| self.expected(lba));
                let ox = self.bed.read(lba, 1);
                prop_assert_eq!(self.bed.misses(), misses + 1, "a read under a revoked extent must miss");
                prop_assert_eq!(self.bed.disks.commands.len(), commands);
                prop_assert_eq!(self.bed.held_disk_frames.len(), held);
                let Some(ToCp::MappingMiss { io, .. }) = self.bed.upcalls.last().cloned() else {
                    return Err(TestCaseError::fail("no mapping miss"));
                };
                let extents = self
                    .volume
                    .extents
                    .iter()
                    .map(|&(s, e, i)| Extent { start: s, end: e, value: RedirectIndex(i as u16) })
                    .collect();
                let entry = MappingEntry::Extents { vseg: VsegId(1), extents };
                self.bed.message(ToFp::MappingMissReply { io, verdict: MissVerdict::Continue(vec![entry]) });
                if self.expected_fault(lba, 1, false, false).is_none() {
                    self.reads.push((ox, lba, lba + 1, expected));
                }
            }
        }
        self.collect()?;
        self.check_serialization()
    }

    /// With everything settled, every acknowledged block is at every location the model says.
    fn check_devices(&mut self) -> Result<(), TestCaseError> {
        self.bed.release_disks();
        self.collect()?;
        prop_assert!(self.writes.is_empty() && self.reads.is_empty(), "I/O left in flight");
        let mut owners: HashMap<(u32, u64), u64> = HashMap::new();
        for (&b, data) in &self.acked {
            for (device, lba) in self.entry_of(b).0.write_locations(b) {
                if let Some(other) = owners.insert((device, lba), b) {
                    prop_assert_eq!(other, b, "two volume blocks map to one device block");
                }
                prop_assert_eq!(
                    &self.bed.disks.read_block(device, lba),
                    data,
                    "block {} on device {} lba {}",
                    b,
                    device,
                    lba
                );
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_byte_goes_where_the_translation_model_says(volume in volume(), ops in prop::collection::vec(op(), 1..40)) {
        let mut harness = Harness::new(volume);
        for op in ops {
            harness.step(op)?;
        }
        harness.check_devices()?;
    }
}
