//! A segment's complete mapping as the control path owns it: the Rmap over every block of the
//! segment plus its redirect table, with the seed's rules enforced together: an entry exists
//! before an extent refers to it, and is not freed while any extent does.

use core::ops::Range;

use crate::error::Error;
use crate::mapping::chunk::ChunkGeometry;
use crate::mapping::extent_map::{Extent, ExtentMap};
use crate::mapping::redirect::{RedirectEntry, RedirectIndex, RedirectTable};
use crate::mapping::volume::VsegDescriptor;

/// Bounds on one segment's mapping.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VsegLimits {
    /// Most Rmap extents.
    pub extents: usize,
    /// Most redirect entries.
    pub redirects: usize,
}

impl Default for VsegLimits {
    fn default() -> Self {
        VsegLimits { extents: 1 << 20, redirects: RedirectTable::DEFAULT_LIMIT }
    }
}

/// The Rmap and redirect table of one segment. The Rmap always covers every block.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VsegMap {
    descriptor: VsegDescriptor,
    rmap: ExtentMap<RedirectIndex>,
    redirects: RedirectTable,
}

impl VsegMap {
    /// A new segment whose every block maps to `initial`, entry 0 (the one-extent Rmap of a
    /// newly loaded segment, seed 003 Fig. 19).
    pub fn new(
        descriptor: VsegDescriptor,
        initial: RedirectEntry,
        limits: VsegLimits,
    ) -> Result<VsegMap, Error> {
        if descriptor.blocks == 0 {
            return Err(Error::InvalidDescriptor("a segment needs at least one block"));
        }
        if limits.extents == 0 || limits.redirects == 0 {
            return Err(Error::InvalidDescriptor("limits must allow one extent and one redirect entry"));
        }
        let mut redirects = RedirectTable::new(limits.redirects);
        let index = redirects.insert(initial)?;
        let mut rmap = ExtentMap::new(limits.extents);
        rmap.set(0..descriptor.blocks, index)?;
        Ok(VsegMap { descriptor, rmap, redirects })
    }

    /// The segment.
    pub fn descriptor(&self) -> &VsegDescriptor {
        &self.descriptor
    }

    /// The Rmap.
    pub fn rmap(&self) -> &ExtentMap<RedirectIndex> {
        &self.rmap
    }

    /// The redirect table.
    pub fn redirects(&self) -> &RedirectTable {
        &self.redirects
    }

    /// The extent holding segment block `block` and its redirect entry.
    pub fn resolve(&self, block: u64) -> Option<(Extent<RedirectIndex>, &RedirectEntry)> {
        let extent = self.rmap.get(block)?;
        Some((extent, self.redirects.get(extent.value)?))
    }

    /// Add a redirect entry; it may be referenced from now on.
    pub fn add_redirect(&mut self, entry: RedirectEntry) -> Result<RedirectIndex, Error> {
        self.redirects.insert(entry)
    }

    /// Change an entry in place (a mirror side state, a flag).
    pub fn redirect_mut(&mut self, index: RedirectIndex) -> Result<&mut RedirectEntry, Error> {
        self.redirects.get_mut(index).ok_or(Error::UnknownRedirect(index.0))
    }

    /// Map `blocks` of the segment to entry `index`: only a control-path fault handler does this.
    pub fn set_range(&mut self, blocks: Range<u64>, index: RedirectIndex) -> Result<(), Error> {
        self.check_blocks(&blocks)?;
        if self.redirects.get(index).is_none() {
            return Err(Error::UnknownRedirect(index.0));
        }
        self.rmap.set(blocks, index)
    }

    /// Give a new extent boundary at `block` without changing any value.
    pub fn split_at(&mut self, block: u64) -> Result<bool, Error> {
        self.rmap.split_at(block)
    }

    /// Merge equal neighbouring extents; returns how many went.
    pub fn coalesce(&mut self) -> usize {
        self.rmap.coalesce()
    }

    /// Number of extents referring to `index`.
    pub fn references(&self, index: RedirectIndex) -> usize {
        self.rmap.count_value(index)
    }

    /// Free entry `index`; refused while any extent refers to it.
    pub fn remove_redirect(&mut self, index: RedirectIndex) -> Result<RedirectEntry, Error> {
        let extents = self.references(index);
        if extents > 0 {
            return Err(Error::RedirectInUse { index: index.0, extents });
        }
        self.redirects.take(index).ok_or(Error::UnknownRedirect(index.0))
    }

    /// Free every entry no extent refers to (after a migration or a completed snapshot).
    pub fn remove_unreferenced(&mut self) -> Vec<RedirectIndex> {
        let unused: Vec<RedirectIndex> =
            self.redirects.iter().map(|(i, _)| i).filter(|&i| self.references(i) == 0).collect();
        for &index in &unused {
            self.redirects.take(index);
        }
        unused
    }

    /// Point extents of duplicate entries at the lowest-numbered equal entry, free the
    /// duplicates, and coalesce; returns the freed indexes.
    pub fn merge_duplicates(&mut self) -> Vec<RedirectIndex> {
        let entries: Vec<(RedirectIndex, RedirectEntry)> =
            self.redirects.iter().map(|(i, e)| (i, e.clone())).collect();
        let mut freed = Vec::new();
        for (pos, (index, entry)) in entries.iter().enumerate() {
            if let Some((keep, _)) = entries[..pos].iter().find(|(k, e)| e == entry && !freed.contains(k)) {
                self.rmap.replace_value(*index, *keep);
                self.redirects.take(*index);
                freed.push(*index);
            }
        }
        self.rmap.coalesce();
        freed
    }

    /// The metadata chunks to lock to change `blocks` (rounded out to chunk boundaries).
    pub fn chunks_for(&self, blocks: Range<u64>, geometry: ChunkGeometry) -> Range<u64> {
        geometry.covering(blocks.start.min(self.descriptor.blocks)..blocks.end.min(self.descriptor.blocks))
    }

    fn check_blocks(&self, blocks: &Range<u64>) -> Result<(), Error> {
        if blocks.start >= blocks.end {
            return Err(Error::EmptyRange { start: blocks.start, end: blocks.end });
        }
        if blocks.end > self.descriptor.blocks {
            return Err(Error::OutOfRange {
                what: "segment block",
                index: blocks.end - 1,
                len: self.descriptor.blocks,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeviceId, LvId, VsegId};
    use crate::mapping::descriptor::{Placement, StorageDescriptor};

    fn entry(device: u32, read_only: bool) -> RedirectEntry {
        let sd = StorageDescriptor::Single(Placement { device: DeviceId(device), lba: 0 });
        if read_only { RedirectEntry::read_only(sd) } else { RedirectEntry::read_write(sd) }
    }

    fn map() -> VsegMap {
        let d = VsegDescriptor { id: VsegId(1), lv: LvId(1), start: 0, blocks: 1000 };
        VsegMap::new(d, entry(1, true), VsegLimits::default()).unwrap()
    }

    #[test]
    fn entries_exist_before_reference_and_outlive_it() {
        let mut m = map();
        assert_eq!(m.set_range(0..10, RedirectIndex(1)), Err(Error::UnknownRedirect(1)));
        let rw = m.add_redirect(entry(1, false)).unwrap();
        m.set_range(0..10, rw).unwrap();
        assert_eq!(m.remove_redirect(rw), Err(Error::RedirectInUse { index: 1, extents: 1 }));
        m.set_range(0..10, RedirectIndex(0)).unwrap();
        assert_eq!(m.rmap().len(), 1);
        assert!(m.remove_redirect(rw).is_ok());
        assert!(m.set_range(999..1001, RedirectIndex(0)).is_err(), "beyond the segment");
    }

    #[test]
    fn duplicates_merge_and_unreferenced_entries_go() {
        let mut m = map();
        let dup = m.add_redirect(entry(1, true)).unwrap();
        let other = m.add_redirect(entry(2, false)).unwrap();
        m.set_range(100..200, dup).unwrap();
        assert_eq!(m.rmap().len(), 3);
        assert_eq!(m.merge_duplicates(), vec![dup]);
        assert_eq!(m.rmap().len(), 1);
        assert_eq!(m.remove_unreferenced(), vec![other]);
        assert_eq!(m.redirects().len(), 1);
        let (extent, resolved) = m.resolve(500).unwrap();
        assert_eq!(extent.range(), 0..1000);
        assert!(resolved.fault_on_write);
    }
}
