//! Storage descriptors: how a segment's blocks reach physical storage. A single placement, a
//! RAID 0 stripe set, a mirror whose sides are placements or stripe sets (RAID 1, RAID 10),
//! or a journaled layout. The translation arithmetic lives here so that the fast path and the
//! control path can never disagree on where a block is.

use crate::error::Error;
use crate::ids::{DeviceId, JournalGroupId, WorkerId};

/// A run of blocks on one device: segment block `b` lives at device block `lba + b`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Placement {
    /// The physical device.
    pub device: DeviceId,
    /// The device block that holds segment block 0.
    pub lba: u64,
}

/// Where a segment block lives: a device and the block on it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Location {
    /// The device.
    pub device: DeviceId,
    /// The device block.
    pub lba: u64,
}

/// Division by a small constant without a divide instruction: the reciprocal is computed once
/// when the stripe set is built (the fast path's stripe primitive is shift/mask/multiply only).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct SmallDivisor {
    divisor: u64,
    /// `floor(2^64 / divisor)`, or 0 when the divisor is a power of two.
    reciprocal: u64,
    /// `log2(divisor)` when it is a power of two.
    shift: u32,
}

impl SmallDivisor {
    fn new(divisor: u64) -> SmallDivisor {
        debug_assert!(divisor > 0);
        if divisor.is_power_of_two() {
            SmallDivisor { divisor, reciprocal: 0, shift: divisor.trailing_zeros() }
        } else {
            let reciprocal = (u128::from(u64::MAX) + 1) / u128::from(divisor);
            SmallDivisor { divisor, reciprocal: reciprocal as u64, shift: 0 }
        }
    }

    /// `(n / divisor, n % divisor)`.
    #[inline]
    fn div_rem(self, n: u64) -> (u64, u64) {
        if self.reciprocal == 0 {
            return (n >> self.shift, n & (self.divisor - 1));
        }
        // The reciprocal rounds down, so the estimate is the quotient or one less.
        let mut q = ((u128::from(n) * u128::from(self.reciprocal)) >> 64) as u64;
        let mut r = n - q * self.divisor;
        if r >= self.divisor {
            q += 1;
            r -= self.divisor;
        }
        (q, r)
    }
}

/// A RAID 0 stripe set: stripe unit `2^unit_shift` blocks, units dealt round-robin across the
/// members.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct StripeSet {
    unit_shift: u8,
    members: Vec<Placement>,
    width: SmallDivisor,
}

impl StripeSet {
    /// The most members a stripe set may have.
    pub const MAX_MEMBERS: usize = 256;

    /// A stripe set of `members` with a unit of `2^unit_shift` blocks.
    pub fn new(unit_shift: u8, members: Vec<Placement>) -> Result<StripeSet, Error> {
        if members.len() < 2 || members.len() > StripeSet::MAX_MEMBERS {
            return Err(Error::InvalidDescriptor("a stripe set needs 2 to 256 members"));
        }
        if unit_shift > 30 {
            return Err(Error::InvalidDescriptor("a stripe unit is at most 2^30 blocks"));
        }
        let width = SmallDivisor::new(members.len() as u64);
        Ok(StripeSet { unit_shift, members, width })
    }

    /// Blocks per stripe unit.
    pub fn unit_blocks(&self) -> u64 {
        1 << self.unit_shift
    }

    /// log2 of the stripe unit.
    pub fn unit_shift(&self) -> u8 {
        self.unit_shift
    }

    /// The members, in stripe order.
    pub fn members(&self) -> &[Placement] {
        &self.members
    }

    /// Where segment block `block` lives, and how many blocks from it stay in the same unit.
    #[inline]
    pub fn locate(&self, block: u64) -> (Location, u64) {
        let unit = block >> self.unit_shift;
        let within = block & (self.unit_blocks() - 1);
        let (row, member) = self.width.div_rem(unit);
        let placement = self.members[member as usize];
        let lba = placement.lba + (row << self.unit_shift) + within;
        (Location { device: placement.device, lba }, self.unit_blocks() - within)
    }
}

/// A mirror side's own layout: one placement or a stripe set (RAID 10).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum SideLayout {
    /// A single placement.
    Single(Placement),
    /// A stripe set.
    Stripe(StripeSet),
}

impl SideLayout {
    /// Where segment block `block` lives, and how many blocks from it are contiguous there.
    #[inline]
    pub fn locate(&self, block: u64) -> (Location, u64) {
        match self {
            SideLayout::Single(p) => (Location { device: p.device, lba: p.lba + block }, u64::MAX - block),
            SideLayout::Stripe(s) => s.locate(block),
        }
    }

    /// Every device the layout uses.
    pub fn devices(&self) -> impl Iterator<Item = DeviceId> + '_ {
        let (single, stripe) = match self {
            SideLayout::Single(p) => (Some(p.device), None),
            SideLayout::Stripe(s) => (None, Some(s.members().iter().map(|m| m.device))),
        };
        single.into_iter().chain(stripe.into_iter().flatten())
    }
}

/// State of a mirror side (seed 003 section 6.5).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SideState {
    /// Current: read and written.
    Alive,
    /// Failed: neither read nor written.
    Dead,
    /// Returning: written by every split, read by nobody until resync finishes.
    Resync,
}

impl SideState {
    /// Whether reads may go to the side.
    pub fn readable(self) -> bool {
        self == SideState::Alive
    }

    /// Whether writes go to the side.
    pub fn writable(self) -> bool {
        matches!(self, SideState::Alive | SideState::Resync)
    }
}

/// One side of a mirror.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct MirrorSide {
    /// Where the side's blocks are.
    pub layout: SideLayout,
    /// Alive, dead or resyncing.
    pub state: SideState,
    /// Relative cost of reading from the side (lower is preferred).
    pub read_cost: u32,
}

/// How reads pick a readable mirror side.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ReadPolicy {
    /// Rotate over readable sides, from the last one used.
    RoundRobin,
    /// The readable side with the lowest cost; ties rotate.
    LowestCost,
}

/// A mirror (RAID 1, or RAID 10 with striped sides): every write is split to every writable
/// side, reads go to one readable side.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct MirrorSet {
    sides: Vec<MirrorSide>,
    /// Bumped on every side state change; age lists compare against it.
    pub generation: u32,
    /// How reads are balanced.
    pub read_policy: ReadPolicy,
}

impl MirrorSet {
    /// The most sides a mirror may have.
    pub const MAX_SIDES: usize = 8;

    /// A mirror over `sides`.
    pub fn new(sides: Vec<MirrorSide>, read_policy: ReadPolicy) -> Result<MirrorSet, Error> {
        if sides.is_empty() || sides.len() > MirrorSet::MAX_SIDES {
            return Err(Error::InvalidDescriptor("a mirror needs 1 to 8 sides"));
        }
        Ok(MirrorSet { sides, generation: 0, read_policy })
    }

    /// The sides.
    pub fn sides(&self) -> &[MirrorSide] {
        &self.sides
    }

    /// Change a side's state. The caller bumps the generation as the procedure requires.
    pub fn set_state(&mut self, side: usize, state: SideState) -> Result<(), Error> {
        let slot = self.sides.get_mut(side).ok_or(Error::InvalidDescriptor("no such mirror side"))?;
        slot.state = state;
        Ok(())
    }

    /// Indexes of the sides writes go to.
    pub fn writable(&self) -> impl Iterator<Item = usize> + '_ {
        self.sides.iter().enumerate().filter(|(_, s)| s.state.writable()).map(|(i, _)| i)
    }

    /// Indexes of the sides reads may go to.
    pub fn readable(&self) -> impl Iterator<Item = usize> + '_ {
        self.sides.iter().enumerate().filter(|(_, s)| s.state.readable()).map(|(i, _)| i)
    }

    /// The side a read should use, given the side used last; `None` if no side is readable.
    pub fn pick_read_side(&self, last: usize) -> Option<usize> {
        let n = self.sides.len();
        let rotation = (1..=n).map(|k| (last + k) % n);
        match self.read_policy {
            ReadPolicy::RoundRobin => rotation.clone().find(|&i| self.sides[i].state.readable()),
            ReadPolicy::LowestCost => {
                let best = self.readable().map(|i| self.sides[i].read_cost).min()?;
                rotation.clone().find(|&i| self.sides[i].state.readable() && self.sides[i].read_cost == best)
            }
        }
    }
}

/// A journaled layout (asynchronous ordered replication): writes go to the primary and are
/// appended to the dispatching worker's own journal of the group.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct JournaledLayout {
    /// Where the volume's blocks live.
    pub primary: SideLayout,
    /// Whose journals take the second leg.
    pub group: JournalGroupId,
}

/// A worker's journal: a region of a device that journal entries (header block plus data)
/// are appended to, from `next` until the region is full.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct JournalRegion {
    /// The journal group.
    pub group: JournalGroupId,
    /// The worker that appends to it; no other worker touches it.
    pub worker: WorkerId,
    /// Where the region is.
    pub placement: Placement,
    /// Its size in blocks.
    pub blocks: u64,
    /// Increases with every swap, so entries name the journal they belong to.
    pub sequence: u64,
}

/// How a segment's blocks reach physical storage.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum StorageDescriptor {
    /// One device (remap primitive).
    Single(Placement),
    /// RAID 0 (stripe primitive).
    Stripe(StripeSet),
    /// RAID 1 / RAID 10 (write-split primitive).
    Mirror(MirrorSet),
    /// Asynchronous ordered replication (journal primitive).
    Journaled(JournaledLayout),
}

impl StorageDescriptor {
    /// Every device the descriptor uses (journals excluded).
    pub fn devices(&self) -> Vec<DeviceId> {
        match self {
            StorageDescriptor::Single(p) => vec![p.device],
            StorageDescriptor::Stripe(s) => s.members().iter().map(|m| m.device).collect(),
            StorageDescriptor::Mirror(m) => m.sides().iter().flat_map(|s| s.layout.devices()).collect(),
            StorageDescriptor::Journaled(j) => j.primary.devices().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(device: u32, lba: u64) -> Placement {
        Placement { device: DeviceId(device), lba }
    }

    #[test]
    fn small_divisor_matches_division() {
        for d in 1..=40u64 {
            let div = SmallDivisor::new(d);
            for n in (0..5000u64).chain([u64::MAX, u64::MAX - 1, u64::MAX / 3, 1 << 63]) {
                assert_eq!(div.div_rem(n), (n / d, n % d), "{n} / {d}");
            }
        }
    }

    #[test]
    fn stripe_locates_units_round_robin() {
        let s = StripeSet::new(3, vec![placement(1, 1000), placement(2, 0), placement(3, 50)]).unwrap();
        // Unit 8 blocks, width 3: block 0..8 -> dev1, 8..16 -> dev2, 16..24 -> dev3, 24.. -> dev1 row 1.
        assert_eq!(s.locate(0), (Location { device: DeviceId(1), lba: 1000 }, 8));
        assert_eq!(s.locate(13), (Location { device: DeviceId(2), lba: 5 }, 3));
        assert_eq!(s.locate(23), (Location { device: DeviceId(3), lba: 57 }, 1));
        assert_eq!(s.locate(26), (Location { device: DeviceId(1), lba: 1010 }, 6));
        assert!(StripeSet::new(3, vec![placement(1, 0)]).is_err());
    }

    #[test]
    fn read_side_choice_respects_state_and_policy() {
        let side =
            |state, cost| MirrorSide { layout: SideLayout::Single(placement(1, 0)), state, read_cost: cost };
        let mut m = MirrorSet::new(
            vec![side(SideState::Alive, 5), side(SideState::Resync, 1), side(SideState::Alive, 5)],
            ReadPolicy::RoundRobin,
        )
        .unwrap();
        assert_eq!(m.pick_read_side(0), Some(2));
        assert_eq!(m.pick_read_side(2), Some(0));
        assert_eq!(m.writable().collect::<Vec<_>>(), [0, 1, 2]);
        m.read_policy = ReadPolicy::LowestCost;
        m.set_state(2, SideState::Alive).unwrap();
        m.sides[2].read_cost = 3;
        assert_eq!(m.pick_read_side(0), Some(2));
        assert_eq!(m.pick_read_side(2), Some(2));
        m.set_state(0, SideState::Dead).unwrap();
        m.set_state(2, SideState::Dead).unwrap();
        assert_eq!(m.pick_read_side(0), None, "a resyncing side serves no reads");
    }
}
