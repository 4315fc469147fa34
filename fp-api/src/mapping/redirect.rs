//! The storage redirect table of a segment: the entries Rmap values point at, each a storage
//! descriptor plus the fault-on-read and fault-on-write flags that decide whether the fast
//! path may serve an I/O or must fault it.

use crate::error::Error;
use crate::io::IoKind;
use crate::mapping::descriptor::StorageDescriptor;

/// An index into a segment's redirect table: the value an Rmap extent carries.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct RedirectIndex(pub u16);

/// One redirect entry: where the blocks are and what the fast path may do with them.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct RedirectEntry {
    /// Where the blocks are.
    pub descriptor: StorageDescriptor,
    /// Fault on read (FoR): reads go to the control path.
    pub fault_on_read: bool,
    /// Fault on write (FoW): writes go to the control path (read-only on the fast path).
    pub fault_on_write: bool,
}

impl RedirectEntry {
    /// Reads and writes allowed on the fast path.
    pub fn read_write(descriptor: StorageDescriptor) -> RedirectEntry {
        RedirectEntry { descriptor, fault_on_read: false, fault_on_write: false }
    }

    /// Reads on the fast path, writes fault (FoW).
    pub fn read_only(descriptor: StorageDescriptor) -> RedirectEntry {
        RedirectEntry { descriptor, fault_on_read: false, fault_on_write: true }
    }

    /// Everything faults (FoR and FoW).
    pub fn no_access(descriptor: StorageDescriptor) -> RedirectEntry {
        RedirectEntry { descriptor, fault_on_read: true, fault_on_write: true }
    }

    /// Whether the fast path may serve an I/O of this kind.
    #[inline]
    pub fn allows(&self, kind: IoKind) -> bool {
        match kind {
            IoKind::Read => !self.fault_on_read,
            IoKind::Write => !self.fault_on_write,
            IoKind::Other => false,
        }
    }
}

/// A segment's redirect table: a bounded array of entries with free slots.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RedirectTable {
    entries: Vec<Option<RedirectEntry>>,
    limit: usize,
}

impl RedirectTable {
    /// The default bound: seed 003 sizes the index at about 4 bits; compound states
    /// (a snapshot during a migration of a mirror) need a little more.
    pub const DEFAULT_LIMIT: usize = 64;

    /// An empty table holding at most `limit` entries (at most 65536).
    pub fn new(limit: usize) -> RedirectTable {
        RedirectTable { entries: Vec::new(), limit: limit.min(usize::from(u16::MAX) + 1) }
    }

    /// Add an entry in the lowest free slot.
    pub fn insert(&mut self, entry: RedirectEntry) -> Result<RedirectIndex, Error> {
        if let Some(free) = self.entries.iter().position(Option::is_none) {
            self.entries[free] = Some(entry);
            return Ok(RedirectIndex(free as u16));
        }
        if self.entries.len() >= self.limit {
            return Err(Error::RedirectTableFull { limit: self.limit });
        }
        self.entries.push(Some(entry));
        Ok(RedirectIndex((self.entries.len() - 1) as u16))
    }

    /// Put `entry` at `index`, replacing what is there (used to load a table as the control
    /// path numbered it).
    pub fn insert_at(&mut self, index: RedirectIndex, entry: RedirectEntry) -> Result<(), Error> {
        let slot = usize::from(index.0);
        if slot >= self.limit {
            return Err(Error::RedirectTableFull { limit: self.limit });
        }
        if self.entries.len() <= slot {
            self.entries.resize(slot + 1, None);
        }
        self.entries[slot] = Some(entry);
        Ok(())
    }

    /// The entry at `index`.
    #[inline]
    pub fn get(&self, index: RedirectIndex) -> Option<&RedirectEntry> {
        self.entries.get(usize::from(index.0)).and_then(Option::as_ref)
    }

    /// The entry at `index`, to change it in place.
    pub fn get_mut(&mut self, index: RedirectIndex) -> Option<&mut RedirectEntry> {
        self.entries.get_mut(usize::from(index.0)).and_then(Option::as_mut)
    }

    /// Free the slot. Only [`crate::mapping::VsegMap`] calls this, after checking that no
    /// extent refers to it.
    pub(crate) fn take(&mut self, index: RedirectIndex) -> Option<RedirectEntry> {
        let entry = self.entries.get_mut(usize::from(index.0))?.take();
        while matches!(self.entries.last(), Some(None)) {
            self.entries.pop();
        }
        entry
    }

    /// Occupied slots, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (RedirectIndex, &RedirectEntry)> + '_ {
        self.entries.iter().enumerate().filter_map(|(i, e)| e.as_ref().map(|e| (RedirectIndex(i as u16), e)))
    }

    /// Number of occupied slots.
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.is_some()).count()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }
}
