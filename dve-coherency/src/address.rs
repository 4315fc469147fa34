//! Oplock addresses `guid.luid[index]` and the oplock catalogue of seed 003 (extract 5.5):
//! which LUID names which lock, whether it is volatile, and typed constructors for the
//! control path.

use std::fmt;

/// Identity of one engine (DVE) in the cluster.
pub type EngineId = u32;

/// Whether an oplock's ownership survives its owner (seed 003, extract 5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Volatility {
    /// Released implicitly when the holder dies: nobody is left to defend it.
    Volatile,
    /// Ownership is journaled; the evictor of a dead owner inherits and cleans it up.
    NonVolatile,
}

/// One oplock: `guid.luid[index]`. `guid` names the object (VSEG, LV, SD, taskset), `luid` the
/// attribute, `index` the element (e.g. `BBA / BLOCKSIZE` for range locks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OplockAddress {
    /// Object identity.
    pub guid: u64,
    /// Attribute of the object; the catalogue fixes the meaning of the low values.
    pub luid: u32,
    /// Element of the attribute's array.
    pub index: u64,
}

impl fmt::Display for OplockAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}[{}]", self.guid, self.luid, self.index)
    }
}

/// The catalogue of seed 003 (L1406-1420). The seed gives RMAP and Mirror Write
/// Serialization the same address (`VSEG.RMAP_LUID[BBA/BLOCKSIZE]`); they are different locks
/// with different volatility, so each gets its own LUID here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OplockKind {
    /// State of all mirror sides of an SD and the generation number.
    MirrorSideState,
    /// LBA-range mutex for mirrored writes (non-volatile: ownership is the DRL).
    MirrorWriteSerialization,
    /// Rmap values of one block of a VSEG.
    Rmap,
    /// The redirect array of a VSEG.
    Redirs,
    /// Hosts holding a SCSI reservation on an LV.
    ScsiReserve,
    /// Hosts still to receive a unit attention on an LV.
    UnitAttention,
    /// Pause of an LV for group-atomic operations.
    GroupAtomic,
    /// The set of VSEGs of an LV.
    LvReconfig,
    /// Restart flag of a taskset (non-volatile).
    Taskset,
}

impl OplockKind {
    /// Every kind, in LUID order.
    pub const ALL: [OplockKind; 9] = [
        OplockKind::MirrorSideState,
        OplockKind::MirrorWriteSerialization,
        OplockKind::Rmap,
        OplockKind::Redirs,
        OplockKind::ScsiReserve,
        OplockKind::UnitAttention,
        OplockKind::GroupAtomic,
        OplockKind::LvReconfig,
        OplockKind::Taskset,
    ];

    /// The LUID that names this kind.
    pub const fn luid(self) -> u32 {
        match self {
            OplockKind::MirrorSideState => 1,
            OplockKind::MirrorWriteSerialization => 2,
            OplockKind::Rmap => 3,
            OplockKind::Redirs => 4,
            OplockKind::ScsiReserve => 5,
            OplockKind::UnitAttention => 6,
            OplockKind::GroupAtomic => 7,
            OplockKind::LvReconfig => 8,
            OplockKind::Taskset => 9,
        }
    }

    /// The kind a LUID names, if it is in the catalogue.
    pub fn from_luid(luid: u32) -> Option<OplockKind> {
        OplockKind::ALL.into_iter().find(|k| k.luid() == luid)
    }

    /// Volatile unless the seed marks it otherwise.
    pub const fn volatility(self) -> Volatility {
        match self {
            OplockKind::MirrorWriteSerialization | OplockKind::Taskset => Volatility::NonVolatile,
            _ => Volatility::Volatile,
        }
    }
}

/// LUIDs with this bit set name non-volatile oplocks outside the catalogue (tests, new locks).
pub const NON_VOLATILE_LUID_BIT: u32 = 1 << 31;

impl OplockAddress {
    /// An address outside the catalogue.
    pub const fn new(guid: u64, luid: u32, index: u64) -> Self {
        OplockAddress { guid, luid, index }
    }

    /// Catalogue kind, if the LUID is one of the catalogue's.
    pub fn kind(&self) -> Option<OplockKind> {
        OplockKind::from_luid(self.luid)
    }

    /// Volatility from the catalogue, or from [`NON_VOLATILE_LUID_BIT`] for other LUIDs.
    pub fn volatility(&self) -> Volatility {
        match self.kind() {
            Some(kind) => kind.volatility(),
            None if self.luid & NON_VOLATILE_LUID_BIT != 0 => Volatility::NonVolatile,
            None => Volatility::Volatile,
        }
    }

    /// True for non-volatile oplocks.
    pub fn is_non_volatile(&self) -> bool {
        self.volatility() == Volatility::NonVolatile
    }

    /// `SD.MIRROR_LUID[0]`: mirror side state changes of a storage descriptor.
    pub const fn mirror_side_state(sd: u64) -> Self {
        Self::new(sd, OplockKind::MirrorSideState.luid(), 0)
    }

    /// `VSEG.MWS_LUID[bba / block]`: write authority over one extent of a mirrored VSEG.
    pub const fn mirror_write(vseg: u64, bba: u64, block: u64) -> Self {
        Self::new(vseg, OplockKind::MirrorWriteSerialization.luid(), bba / block)
    }

    /// `VSEG.RMAP_LUID[bba / block]`: the Rmap values of one block of a VSEG.
    pub const fn rmap(vseg: u64, bba: u64, block: u64) -> Self {
        Self::new(vseg, OplockKind::Rmap.luid(), bba / block)
    }

    /// `VSEG.DIRS_LUID[0]`: the redirect array of a VSEG.
    pub const fn redirs(vseg: u64) -> Self {
        Self::new(vseg, OplockKind::Redirs.luid(), 0)
    }

    /// `LV.RESERVE_LUID[0]`.
    pub const fn scsi_reserve(lv: u64) -> Self {
        Self::new(lv, OplockKind::ScsiReserve.luid(), 0)
    }

    /// `LV.UALIST_LUID[0]`.
    pub const fn unit_attention(lv: u64) -> Self {
        Self::new(lv, OplockKind::UnitAttention.luid(), 0)
    }

    /// `LV.PAUSE_LUID[0]`.
    pub const fn group_atomic(lv: u64) -> Self {
        Self::new(lv, OplockKind::GroupAtomic.luid(), 0)
    }

    /// `LV.RECONFIG[0]`.
    pub const fn lv_reconfig(lv: u64) -> Self {
        Self::new(lv, OplockKind::LvReconfig.luid(), 0)
    }

    /// `TS[0]`: the restart flag of a taskset.
    pub const fn taskset(ts: u64) -> Self {
        Self::new(ts, OplockKind::Taskset.luid(), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_volatility_matches_the_seed() {
        assert!(OplockAddress::mirror_write(7, 4096, 1024).is_non_volatile());
        assert!(OplockAddress::taskset(1).is_non_volatile());
        assert!(!OplockAddress::rmap(7, 4096, 1024).is_non_volatile());
        assert_ne!(OplockAddress::rmap(7, 4096, 1024), OplockAddress::mirror_write(7, 4096, 1024));
        assert_eq!(OplockAddress::rmap(7, 4096, 1024).to_string(), "7.3[4]");
        for kind in OplockKind::ALL {
            assert_eq!(OplockKind::from_luid(kind.luid()), Some(kind));
        }
    }
}
