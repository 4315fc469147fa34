//! Age lists for fast mirror resync: per segment and mirror side, one age per fixed-size
//! extent, where an age is a generation number qualified by the engine that wrote it (a
//! generation means nothing without its engine).

use crate::error::Error;
use crate::ids::EngineId;

/// The generation an extent was last written under, by which engine.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Age {
    /// The mirror's generation at the write.
    pub generation: u32,
    /// The engine whose counter that generation belongs to.
    pub engine: EngineId,
}

/// Ages of one mirror side of one segment, at a fixed extent size.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AgeList {
    extent_blocks: u64,
    ages: Vec<Age>,
}

impl AgeList {
    /// An age list covering `segment_blocks` in extents of `extent_blocks`, every element at
    /// `initial` (the current age when the list is made).
    pub fn new(segment_blocks: u64, extent_blocks: u64, initial: Age) -> Result<AgeList, Error> {
        if extent_blocks == 0 || segment_blocks == 0 {
            return Err(Error::InvalidDescriptor("an age list needs non-zero segment and extent sizes"));
        }
        let count = segment_blocks.div_ceil(extent_blocks);
        let count = usize::try_from(count).map_err(|_| Error::InvalidDescriptor("age list too large"))?;
        Ok(AgeList { extent_blocks, ages: vec![initial; count] })
    }

    /// A list of the given ages (as kept in metadata), `extent_blocks` blocks each.
    pub fn from_ages(extent_blocks: u64, ages: Vec<Age>) -> Result<AgeList, Error> {
        if extent_blocks == 0 || ages.is_empty() {
            return Err(Error::InvalidDescriptor("an age list needs a non-zero extent size and an extent"));
        }
        Ok(AgeList { extent_blocks, ages })
    }

    /// Every extent's age, in order.
    pub fn ages(&self) -> &[Age] {
        &self.ages
    }

    /// Blocks per age extent.
    pub fn extent_blocks(&self) -> u64 {
        self.extent_blocks
    }

    /// Number of age extents.
    pub fn len(&self) -> usize {
        self.ages.len()
    }

    /// Whether the list is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.ages.is_empty()
    }

    /// The age extent holding segment block `block`.
    pub fn extent_of(&self, block: u64) -> usize {
        (block / self.extent_blocks) as usize
    }

    /// The segment blocks of age extent `index`.
    pub fn blocks_of(&self, index: usize, segment_blocks: u64) -> core::ops::Range<u64> {
        let start = index as u64 * self.extent_blocks;
        start..(start + self.extent_blocks).min(segment_blocks)
    }

    /// The age of extent `index`.
    pub fn get(&self, index: usize) -> Option<Age> {
        self.ages.get(index).copied()
    }

    /// Record a write to extent `index` under `age`.
    pub fn set(&mut self, index: usize, age: Age) -> Result<(), Error> {
        let len = self.ages.len() as u64;
        let slot = self.ages.get_mut(index).ok_or(Error::OutOfRange {
            what: "age extent",
            index: index as u64,
            len,
        })?;
        *slot = age;
        Ok(())
    }

    /// Extents whose age differs from `other`'s: what a fast resync must copy.
    pub fn stale_against<'a>(&'a self, other: &'a AgeList) -> impl Iterator<Item = usize> + 'a {
        self.ages.iter().zip(other.ages.iter()).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_extents_are_those_whose_age_differs() {
        let start = Age { generation: 0, engine: EngineId(1) };
        let mut live = AgeList::new(1000, 128, start).unwrap();
        let dead = live.clone();
        assert_eq!(live.len(), 8);
        let next = Age { generation: 1, engine: EngineId(1) };
        live.set(live.extent_of(300), next).unwrap();
        live.set(7, next).unwrap();
        assert_eq!(live.stale_against(&dead).collect::<Vec<_>>(), [2, 7]);
        assert_eq!(live.blocks_of(7, 1000), 896..1000);
        assert!(live.set(8, next).is_err());
    }
}
