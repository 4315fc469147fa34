//! Incremental volumes (seed 003 section 6.2, Fig. 22): several writable volumes share a
//! base that becomes read-only for good. Each incremental reads through the base until it
//! writes; its writes go to its own private store and are never pushed back. The rule for
//! partial writes (the seed leaves it open, extract section 10 item 7): storage is switched
//! per copy granule (64 KiB), and a granule's first write copies the whole granule from the
//! base to the private store before the incremental's Rmap points there, so every granule is
//! read either entirely from the base or entirely from the private store.
//!
//! The incremental's volume is committed with its claim; each granule copy is committed
//! (a record in the Rmaps table) after the copy and before the Rmap points at the private
//! store. A restarted engine makes every base named by an incremental read-only again and
//! gives each incremental its base's states and its recorded granules.

use core::ops::Range;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use dve_fp_api::ids::{DeviceId, IoTag, LvId};
use dve_fp_api::io::{HostIo, IoStatus, Sense};
use dve_fp_api::mapping::{RedirectEntry, RedirectIndex, VsegMap};
use dve_fp_api::message::MappingEntry;

use super::ControlPath;
use super::block_copy::{CopyOwner, granules_touched, legs_into};
use super::revocation::AfterRevocation;
use super::snapshot::COPY_GRANULARITY_BLOCKS;
use crate::error::Error;
use crate::store::{Batch, Table, scan_json};
use crate::volume::{Allocation, LayoutSpec, Volume, VolumeRecord};

/// The private store's entry in each incremental segment.
const PRIVATE: RedirectIndex = RedirectIndex(0);
/// DATA PROTECT, WRITE PROTECTED: a write to a base.
const WRITE_PROTECTED: Sense = Sense { key: 0x07, asc: 0x27, ascq: 0x00 };

/// The Rmaps-table key of a granule of incremental `lv` that is in its private store.
fn granule_key(lv: LvId, segment: usize, start: u64) -> Vec<u8> {
    let mut key = lv.0.to_be_bytes().to_vec();
    key.extend_from_slice(&(segment as u64).to_be_bytes());
    key.extend_from_slice(&start.to_be_bytes());
    key
}

/// A granule an incremental has in its private store, as the metadata store keeps it.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct GranuleRecord {
    lv: LvId,
    segment: usize,
    blocks: Range<u64>,
}

/// A granule copy: base to private store.
#[derive(Clone, Debug)]
struct GranuleCopy {
    segment: usize,
    blocks: Range<u64>,
}

/// One incremental volume.
#[derive(Clone, Debug)]
struct Incremental {
    base: LvId,
    /// Usable (its base's writes drained).
    ready: bool,
    copies: BTreeMap<u64, GranuleCopy>,
    waiting: Vec<(IoTag, HostIo, Option<Bytes>)>,
}

/// Bases and incrementals.
#[derive(Clone, Debug, Default)]
pub(super) struct Incrementals {
    /// Volumes made read-only for good because incrementals share them.
    bases: BTreeSet<LvId>,
    incrementals: BTreeMap<LvId, Incremental>,
}

impl Incrementals {
    /// Whether incrementals share `lv` as their base.
    pub(super) fn is_base(&self, lv: LvId) -> bool {
        self.bases.contains(&lv)
    }

    /// Whether incremental `lv` is not at rest: its base's writes have not drained yet, or
    /// it copies granules, or writes wait for a copy.
    pub(super) fn busy(&self, lv: LvId) -> bool {
        self.incrementals.get(&lv).is_some_and(|i| !i.ready || !i.copies.is_empty() || !i.waiting.is_empty())
    }
}

/// Whether writes fault on every redirect entry of a base's segment (they do while
/// incrementals share it).
fn set_fault_on_write(map: &mut VsegMap, fault: bool) {
    let indexes: Vec<RedirectIndex> = map.redirects().iter().map(|(i, _)| i).collect();
    for i in indexes {
        if let Ok(e) = map.redirect_mut(i) {
            e.fault_on_write = fault;
        }
    }
}

impl ControlPath {
    /// Make an incremental volume of `base` named `name` (management API). The first one
    /// makes the base read-only for good; the incremental is usable once the base's writes in
    /// flight have drained. Its private store (the base's size) is claimed on `store`.
    pub fn create_incremental(&mut self, base: LvId, name: &str, store: DeviceId) -> Result<LvId, Error> {
        if name.is_empty() || self.volumes.values().any(|v| v.record.name == name) {
            return Err(Error::invalid("name", format!("{name:?} is empty or taken")));
        }
        let b = self.volumes.get(&base).ok_or(Error::UnknownVolume(base))?;
        if !matches!(b.record.layout, LayoutSpec::Linear { .. } | LayoutSpec::Stripe { .. }) {
            return Err(Error::FailedPrecondition("only linear and striped volumes can be bases".into()));
        }
        if self.snapshot_involves(base)
            || self.migrations_of(base)
            || self.reconfiguring(base)
            || self.incrementals.incrementals.contains_key(&base)
        {
            return Err(Error::FailedPrecondition(format!(
                "{} is being reconfigured or is incremental",
                b.record.name
            )));
        }
        let blocks = b.record.blocks;
        let id = self.next_volume_id();
        let before = self.devices.clone();
        let lba = self.devices.allocate(store, blocks)?;
        // No access until the base has drained.
        let segments = b.segments_over(id, store, lba)?;
        let record = VolumeRecord {
            id,
            name: name.to_string(),
            blocks,
            block_size: b.record.block_size,
            layout: LayoutSpec::Incremental { base, store },
            allocations: vec![Allocation { device: store, lba, blocks }],
            hosts: Vec::new(),
            lun: 0,
            side_states: Vec::new(),
            generation: 0,
            segment_starts: Vec::new(),
        };
        let volume = Volume { record, segments };
        let descriptor = volume.descriptor()?;
        self.volumes.insert(id, volume);
        if let Err(e) = self.persist(&[store], &[id]) {
            self.volumes.remove(&id);
            self.devices = before;
            self.counters.failed_commits += 1;
            return Err(e);
        }
        self.incrementals
            .incrementals
            .insert(id, Incremental { base, ready: false, copies: BTreeMap::new(), waiting: Vec::new() });
        self.grant_all(MappingEntry::Lv(descriptor));
        self.push_mask(id);
        if self.incrementals.bases.contains(&base) {
            self.incremental_base_revoked(base);
        } else {
            let segments = self.segments_of(base);
            self.revoke_segments(&segments, true, AfterRevocation::IncrementalBase { base });
        }
        Ok(id)
    }

    /// The base's writes drained: it is read-only from now on, and its incrementals read
    /// through it until they write.
    pub(super) fn incremental_base_revoked(&mut self, base: LvId) {
        let mut grants = Vec::new();
        let mut base_states: Vec<(Vec<(RedirectIndex, RedirectEntry)>, Vec<_>)> = Vec::new();
        if let Some(b) = self.volumes.get_mut(&base) {
            for map in &mut b.segments {
                set_fault_on_write(map, true);
                let used: Vec<(RedirectIndex, RedirectEntry)> = map
                    .redirects()
                    .iter()
                    .filter(|(i, _)| map.references(*i) > 0)
                    .map(|(i, e)| (i, e.clone()))
                    .collect();
                base_states.push((used, map.rmap().iter().collect()));
                if !self.incrementals.bases.contains(&base) {
                    grants.push(MappingEntry::Redirects {
                        vseg: map.descriptor().id,
                        table: map.redirects().clone(),
                    });
                }
            }
        }
        self.incrementals.bases.insert(base);
        let pending: Vec<LvId> = self
            .incrementals
            .incrementals
            .iter()
            .filter(|(_, inc)| inc.base == base && !inc.ready)
            .map(|(id, _)| *id)
            .collect();
        for id in &pending {
            let Some(v) = self.volumes.get_mut(id) else { continue };
            for (map, (used, extents)) in v.segments.iter_mut().zip(&base_states) {
                let mut via = BTreeMap::new();
                for (index, entry) in used {
                    let read_only = RedirectEntry {
                        descriptor: entry.descriptor.clone(),
                        fault_on_read: false,
                        fault_on_write: true,
                    };
                    if let Ok(i) = map.add_redirect(read_only) {
                        via.insert(*index, i);
                    }
                }
                for e in extents {
                    if let Some(i) = via.get(&e.value) {
                        let _ = map.set_range(e.range(), *i);
                    }
                }
                if let Ok(private) = map.redirect_mut(PRIVATE) {
                    private.fault_on_read = false;
                    private.fault_on_write = false;
                }
                grants.push(MappingEntry::Redirects {
                    vseg: map.descriptor().id,
                    table: map.redirects().clone(),
                });
            }
            if let Some(inc) = self.incrementals.incrementals.get_mut(id) {
                inc.ready = true;
            }
        }
        for entry in grants {
            self.grant_all(entry);
        }
        for id in pending {
            self.retry_incremental_waiters(id);
        }
    }

    /// Incremental volumes loaded from the metadata store, with their granule records: each
    /// base becomes read-only again, and each incremental reads through it except where its
    /// recorded granules are.
    pub(super) fn restore_incrementals(
        &mut self,
        granules: Vec<(Vec<u8>, GranuleRecord)>,
    ) -> Result<(), Error> {
        let loaded: Vec<(LvId, LvId)> = self
            .volumes
            .values()
            .filter_map(|v| match v.record.layout {
                LayoutSpec::Incremental { base, .. } => Some((v.record.id, base)),
                _ => None,
            })
            .collect();
        for (id, base) in &loaded {
            let inc = self.volumes.get(id).ok_or(Error::UnknownVolume(*id))?;
            let (Some(b), Some(claim)) = (self.volumes.get(base), inc.record.allocations.first()) else {
                return Err(Error::Store(format!("incremental {id} of {base}, which does not exist")));
            };
            let LayoutSpec::Incremental { store, .. } = inc.record.layout else { continue };
            let segments = b.segments_over(*id, store, claim.lba)?;
            let Some(inc) = self.volumes.get_mut(id) else { continue };
            inc.segments = segments;
            let descriptor = inc.descriptor()?;
            self.grant_all(MappingEntry::Lv(descriptor));
            self.incrementals.incrementals.insert(
                *id,
                Incremental { base: *base, ready: false, copies: BTreeMap::new(), waiting: Vec::new() },
            );
        }
        let bases: BTreeSet<LvId> = loaded.iter().map(|(_, base)| *base).collect();
        for base in bases {
            self.incremental_base_revoked(base);
        }
        for (key, g) in granules {
            let segment = self.volumes.get_mut(&g.lv).and_then(|v| v.segments.get_mut(g.segment));
            let placed = match segment {
                Some(map) if self.incrementals.incrementals.contains_key(&g.lv) => {
                    map.set_range(g.blocks.clone(), PRIVATE).is_ok()
                }
                _ => false,
            };
            if !placed || key != granule_key(g.lv, g.segment, g.blocks.start) {
                return Err(Error::Store(format!("granule record {g:?} names no granule of an incremental")));
            }
        }
        Ok(())
    }

    /// Put into `batch` the deletion of every granule record of incremental `lv` (with its
    /// volume's deletion: one transaction).
    pub(super) fn delete_granule_records(&self, batch: &mut Batch, lv: LvId) -> Result<(), Error> {
        let Some(store) = self.store.as_ref() else { return Ok(()) };
        let granules: Vec<(Vec<u8>, GranuleRecord)> = scan_json(store.as_ref(), Table::Rmaps)?;
        for (key, g) in granules {
            if g.lv == lv {
                batch.delete(Table::Rmaps, key);
            }
        }
        Ok(())
    }

    /// Incremental `lv` was deleted. Its base stays read-only while other incrementals
    /// share it; once none does, hosts may write it again (a restarted engine would find no
    /// incremental naming it and make it writable too).
    pub(super) fn incremental_deleted(&mut self, lv: LvId) {
        let Some(inc) = self.incrementals.incrementals.remove(&lv) else { return };
        let base = inc.base;
        if self.incrementals.incrementals.values().any(|i| i.base == base) {
            return;
        }
        self.incrementals.bases.remove(&base);
        let mut grants = Vec::new();
        if let Some(b) = self.volumes.get_mut(&base) {
            for map in &mut b.segments {
                set_fault_on_write(map, false);
                grants.push(MappingEntry::Redirects {
                    vseg: map.descriptor().id,
                    table: map.redirects().clone(),
                });
            }
        }
        for entry in grants {
            self.grant_all(entry);
        }
        self.push_mask(base);
    }

    /// Whether `lv` is the read-only base of incrementals.
    pub(super) fn is_incremental_base(&self, lv: LvId) -> bool {
        self.incrementals.bases.contains(&lv)
    }

    /// Whether writes to `lv` are the incrementals' business (it is a base or one of them).
    pub(super) fn incremental_involves(&self, lv: LvId) -> bool {
        self.incrementals.bases.contains(&lv) || self.incrementals.incrementals.contains_key(&lv)
    }

    /// A write to a base is refused; a write to an incremental first copies the granules it
    /// touches that still read through the base.
    pub(super) fn incremental_write(&mut self, io: IoTag, request: HostIo, data: Option<Bytes>) {
        let Some(lv) = request.lv else { return };
        if self.incrementals.bases.contains(&lv) {
            self.complete_io(io, IoStatus::check_condition(WRITE_PROTECTED));
            return;
        }
        let Some(inc) = self.incrementals.incrementals.get(&lv) else {
            self.run_manual(io, request, data);
            return;
        };
        if !inc.ready {
            if let Some(inc) = self.incrementals.incrementals.get_mut(&lv) {
                inc.waiting.push((io, request, data));
            }
            return;
        }
        let Some(v) = self.volumes.get(&lv) else { return };
        let mut needed = Vec::new();
        let touched = granules_touched(v, request.lba, u64::from(request.blocks), COPY_GRANULARITY_BLOCKS);
        for (i, rounded) in touched {
            let Some(seg) = v.segments.get(i) else { continue };
            for e in seg.rmap().overlapping(rounded.clone()).filter(|e| e.value != PRIVATE) {
                needed.push((i, e.start.max(rounded.start)..e.end.min(rounded.end)));
            }
        }
        if needed.is_empty() {
            self.run_manual(io, request, data);
            return;
        }
        let mut starts = Vec::new();
        if let Some(inc) = self.incrementals.incrementals.get_mut(&lv) {
            for (i, r) in needed {
                let busy = inc
                    .copies
                    .values()
                    .any(|c| c.segment == i && c.blocks.start < r.end && r.start < c.blocks.end);
                if !busy {
                    starts.push((i, r));
                }
            }
            inc.waiting.push((io, request, data));
        }
        for (i, r) in starts {
            self.start_granule_copy(lv, i, r);
        }
    }

    fn start_granule_copy(&mut self, lv: LvId, segment: usize, blocks: Range<u64>) {
        let Some(v) = self.volumes.get(&lv) else { return };
        let Some(map) = v.segments.get(segment) else { return };
        let Some((reads, writes)) = legs_into(map, blocks.clone(), PRIVATE, 0) else { return };
        let block_size = v.record.block_size as usize;
        let id = self.op_id();
        let n = blocks.end - blocks.start;
        if let Some(inc) = self.incrementals.incrementals.get_mut(&lv) {
            inc.copies.insert(id, GranuleCopy { segment, blocks });
        }
        self.start_block_copy(CopyOwner::Granule { lv, granule: id }, reads, writes, n, block_size);
    }

    /// The copy of granule `id` ended.
    pub(super) fn granule_copied(&mut self, lv: LvId, id: u64, copied: bool) {
        let Some(inc) = self.incrementals.incrementals.get_mut(&lv) else { return };
        if !copied {
            inc.copies.remove(&id);
            let waiting = std::mem::take(&mut inc.waiting);
            for (io, _, _) in waiting {
                self.complete_io(io, IoStatus::check_condition(super::manual_io::RETRY));
            }
            return;
        }
        // The granule is whole in the private store: recorded, then the incremental reads it
        // there.
        let Some(copy) = inc.copies.get(&id).cloned() else { return };
        let record = GranuleRecord { lv, segment: copy.segment, blocks: copy.blocks.clone() };
        let key = granule_key(lv, copy.segment, copy.blocks.start);
        if self.persist_record(Table::Rmaps, key, &record).is_err() {
            self.counters.failed_commits += 1;
            self.granule_copied(lv, id, false);
            return;
        }
        let Some(inc) = self.incrementals.incrementals.get_mut(&lv) else { return };
        inc.copies.remove(&id);
        let Some(map) = self.volumes.get_mut(&lv).and_then(|v| v.segments.get_mut(copy.segment)) else {
            return;
        };
        let vseg = map.descriptor().id;
        if map.set_range(copy.blocks.clone(), PRIVATE).is_ok() {
            self.grant_extents(lv, vseg, copy.blocks);
        }
        self.retry_incremental_waiters(lv);
    }

    fn retry_incremental_waiters(&mut self, lv: LvId) {
        let waiting = self
            .incrementals
            .incrementals
            .get_mut(&lv)
            .map(|i| std::mem::take(&mut i.waiting))
            .unwrap_or_default();
        for (io, request, data) in waiting {
            self.incremental_write(io, request, data);
        }
    }
}
