//! Exchange tables (seed 000's command slots): a fixed array of slots per worker whose index is
//! the exchange id the worker hands out, so every later frame of an exchange finds its state
//! by direct index. Slots carry an incarnation so a stale reference never reaches a reused slot.

use dve_fp_api::ids::{ExchangeId, ExchangeIdLayout, IoTag, WorkerId};

#[derive(Debug)]
struct Slot<T> {
    incarnation: u32,
    value: Option<T>,
}

/// A worker's table of exchanges in flight, with no allocation after construction.
#[derive(Debug)]
pub struct ExchangeTable<T> {
    worker: WorkerId,
    slots: Vec<Slot<T>>,
    /// Free slot indexes; the most recently freed is reused first (warm in cache).
    free: Vec<u16>,
    /// The exchange id of slot 0: XOR-ing an id with it leaves the slot index for this
    /// worker's ids and a number past every slot for any other worker's, so a lookup is one
    /// XOR and one bounds check.
    base: u16,
}

impl<T> ExchangeTable<T> {
    /// A table of `capacity` slots (capped by what the layout can address) for `worker`.
    pub fn new(layout: ExchangeIdLayout, worker: WorkerId, capacity: usize) -> ExchangeTable<T> {
        let mut capacity = capacity.min(layout.slots_per_worker());
        // The last slot of the last worker would be 0xFFFF, FC's "unassigned" id.
        if layout.compose(worker, capacity.saturating_sub(1) as u16).is_none() {
            capacity = capacity.saturating_sub(1);
        }
        // A worker number the layout cannot name gets no slots: no id could reach them.
        let base = match layout.compose(worker, 0) {
            Some(xid) => xid.0,
            None => {
                capacity = 0;
                0
            }
        };
        let slots = (0..capacity).map(|_| Slot { incarnation: 0, value: None }).collect();
        let free = (0..capacity as u16).rev().collect();
        ExchangeTable { worker, slots, free, base }
    }

    /// Slots in all.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Exchanges in flight.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.free.len() == self.slots.len()
    }

    /// Take a slot for `value`; hands it back when the table is full.
    pub fn insert(&mut self, value: T) -> Result<IoTag, T> {
        match self.claim() {
            Some((tag, slot)) => {
                *slot = Some(value);
                Ok(tag)
            }
            None => Err(value),
        }
    }

    /// Take a slot for the value `make` builds, written straight into the slot: an exchange's
    /// state is a few hundred bytes, and building it first and moving it in copies it twice.
    /// `None` (and `make` is not called) when the table is full.
    #[inline]
    pub fn insert_with(&mut self, make: impl FnOnce() -> T) -> Option<IoTag> {
        let (tag, slot) = self.claim()?;
        *slot = Some(make());
        Some(tag)
    }

    /// A free slot, with its new incarnation's tag.
    #[inline]
    fn claim(&mut self) -> Option<(IoTag, &mut Option<T>)> {
        let index = self.free.pop()?;
        let slot = &mut self.slots[usize::from(index)];
        slot.incarnation = slot.incarnation.wrapping_add(1);
        let tag =
            IoTag { worker: self.worker, xid: ExchangeId(index ^ self.base), incarnation: slot.incarnation };
        Some((tag, &mut slot.value))
    }

    /// The slot exchange id `xid` names (whether or not it is in use): side tables kept per
    /// slot index by it.
    #[inline]
    pub fn slot_of(&self, xid: ExchangeId) -> Option<usize> {
        self.index(xid)
    }

    #[inline]
    fn index(&self, xid: ExchangeId) -> Option<usize> {
        let index = usize::from(xid.0 ^ self.base);
        (index < self.slots.len()).then_some(index)
    }

    /// The exchange with id `xid`, whatever its incarnation (frames carry only the id).
    #[inline]
    pub fn get(&self, xid: ExchangeId) -> Option<&T> {
        self.slots.get(self.index(xid)?)?.value.as_ref()
    }

    /// The exchange with id `xid`, to change it.
    #[inline]
    pub fn get_mut(&mut self, xid: ExchangeId) -> Option<&mut T> {
        let index = self.index(xid)?;
        self.slots[index].value.as_mut()
    }

    /// The exchange `tag` names, only if the slot has not been reused since.
    pub fn get_tagged(&self, tag: IoTag) -> Option<&T> {
        let slot = self.slots.get(self.index(tag.xid)?)?;
        if slot.incarnation == tag.incarnation { slot.value.as_ref() } else { None }
    }

    /// Like [`ExchangeTable::get_tagged`], to change it.
    pub fn get_tagged_mut(&mut self, tag: IoTag) -> Option<&mut T> {
        let index = self.index(tag.xid)?;
        let slot = &mut self.slots[index];
        if slot.incarnation == tag.incarnation { slot.value.as_mut() } else { None }
    }

    /// The current tag of exchange `xid`.
    pub fn tag_of(&self, xid: ExchangeId) -> Option<IoTag> {
        let index = self.index(xid)?;
        let slot = &self.slots[index];
        slot.value.as_ref().map(|_| IoTag { worker: self.worker, xid, incarnation: slot.incarnation })
    }

    /// Free exchange `xid`, returning its state.
    pub fn remove(&mut self, xid: ExchangeId) -> Option<T> {
        let index = self.index(xid)?;
        let value = self.slots[index].value.take()?;
        self.free.push(index as u16);
        Some(value)
    }

    /// Free exchange `xid`, dropping its state where it lies: moving a large state out of
    /// its slot only to drop it costs a copy per exchange. Returns whether it was in flight.
    /// Inlined: every I/O ends here, and as a call it took about 20 instructions more.
    #[inline]
    pub fn discard(&mut self, xid: ExchangeId) -> bool {
        let Some(index) = self.index(xid) else { return false };
        let slot = &mut self.slots[index];
        if slot.value.is_none() {
            return false;
        }
        slot.value = None;
        self.free.push(index as u16);
        true
    }

    /// Every exchange in flight with its tag.
    pub fn iter(&self) -> impl Iterator<Item = (IoTag, &T)> + '_ {
        self.slots.iter().enumerate().filter_map(move |(i, slot)| {
            let xid = ExchangeId(i as u16 ^ self.base);
            slot.value
                .as_ref()
                .map(|v| (IoTag { worker: self.worker, xid, incarnation: slot.incarnation }, v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_the_worker_and_reuse_changes_the_incarnation() {
        let layout = ExchangeIdLayout::new(2).unwrap();
        let mut table = ExchangeTable::new(layout, WorkerId(3), 4);
        let a = table.insert("a").unwrap();
        assert_eq!(layout.worker(a.xid), WorkerId(3));
        assert_eq!(table.get(a.xid), Some(&"a"));
        assert_eq!(table.remove(a.xid), Some("a"));
        let b = table.insert("b").unwrap();
        assert_eq!(b.xid, a.xid, "the freed slot is reused first");
        assert_ne!(b.incarnation, a.incarnation);
        assert_eq!(table.get_tagged(a), None, "a stale tag misses the new exchange");
        assert_eq!(table.get_tagged(b), Some(&"b"));
        assert!(table.discard(b.xid));
        assert!(!table.discard(b.xid), "already free");
        assert_eq!(table.len(), 0);
        let foreign = layout.compose(WorkerId(1), 0).unwrap();
        assert_eq!(table.get(foreign), None);
    }

    #[test]
    fn a_full_table_refuses_and_never_hands_out_ffff() {
        let layout = ExchangeIdLayout::new(1).unwrap();
        let mut table = ExchangeTable::new(layout, WorkerId(1), usize::MAX);
        assert_eq!(table.capacity(), 32767);
        let mut tags = Vec::new();
        while let Ok(tag) = table.insert(()) {
            assert_ne!(tag.xid, ExchangeId(0xFFFF));
            tags.push(tag);
        }
        assert_eq!(tags.len(), 32767);
        assert_eq!(table.len(), 32767);
        assert!(table.insert(()).is_err());
        assert_eq!(table.iter().count(), 32767);
    }
}
