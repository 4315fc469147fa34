//! A worker's private mapping cache: target exposures by virtual D_ID, volumes with their LUN
//! masks and pause state, device paths, this worker's journals, and per segment the whole
//! redirect table plus the part of the Rmap loaded so far, searched through an `RmapIndex`
//! and trimmed least-recently-used first when it holds more extents than configured.
//!
//! It also remembers, per (virtual target, LUN, initiator), what the front half of the decision
//! chain decided (exposure, LUN map, login, volume, LUN mask, exposure to the host, pause) and
//! the segment the last command there started in. Every change to the cache bumps a generation
//! number, and a remembered decision is used only under the generation it was made in, so it
//! never outlives a change: a revoked or changed entry is looked up afresh by the next command.

use core::hash::{BuildHasherDefault, Hasher};
use std::collections::HashMap;

use dve_fp_api::Error;
use dve_fp_api::ids::{DeviceId, ExposureId, FcId, JournalGroupId, Lun, LvId, VsegId, WorkerId, Wwn};
use dve_fp_api::lookup::{Fit, RmapIndex};
use dve_fp_api::mapping::{
    DevicePath, ExtentMap, FabricRoute, JournalRegion, LunMask, LvDescriptor, RedirectEntry, RedirectIndex,
    RedirectTable, TargetExposure, VsegDescriptor,
};
use dve_fp_api::message::{MappingEntry, MappingKey};

/// Multiply-shift hashing for small integer keys: the cache is consulted on every command,
/// and SipHash's resistance to collision attacks buys nothing for ids the control path assigns.
#[derive(Default, Clone, Copy, Debug)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
}

/// A hash map keyed by small ids.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// How a worker's cache is bounded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CacheConfig {
    /// Most Rmap extents cached across all segments (the working-set window).
    pub max_extents: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { max_extents: 64 * 1024 }
    }
}

/// What the index stores per extent: the redirect index and where its use is recorded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct CachedValue {
    redirect: RedirectIndex,
    slot: u32,
}

/// One segment's cached state.
#[derive(Debug)]
struct SegmentCache {
    descriptor: VsegDescriptor,
    redirects: Option<RedirectTable>,
    extents: ExtentMap<RedirectIndex>,
    /// Built from `extents` when they change, before the next lookup.
    index: Option<RmapIndex<CachedValue>>,
    /// Last use tick per extent, by the slot stored in the index.
    last_used: Vec<u64>,
    /// Starts of the extents, by slot (to evict by slot).
    slot_starts: Vec<(u64, u64)>,
}

impl SegmentCache {
    fn new(descriptor: VsegDescriptor) -> SegmentCache {
        SegmentCache {
            descriptor,
            redirects: None,
            extents: ExtentMap::new(usize::MAX),
            index: None,
            last_used: Vec::new(),
            slot_starts: Vec::new(),
        }
    }

    /// Rebuild the index; extents new since the last build count as used at `now` (they were
    /// just loaded for an I/O that missed).
    fn rebuild(&mut self, now: u64) {
        let mut last_used = Vec::with_capacity(self.extents.len());
        let mut slot_starts = Vec::with_capacity(self.extents.len());
        let mut entries = Vec::with_capacity(self.extents.len());
        for (slot, extent) in self.extents.iter().enumerate() {
            // Keep the recency of extents that survive a rebuild.
            let used = self.lookup_used(extent.start).unwrap_or(now);
            last_used.push(used);
            slot_starts.push((extent.start, extent.end));
            entries.push((extent.range(), CachedValue { redirect: extent.value, slot: slot as u32 }));
        }
        self.index = RmapIndex::build(&entries).ok();
        self.last_used = last_used;
        self.slot_starts = slot_starts;
    }

    fn lookup_used(&self, start: u64) -> Option<u64> {
        let slot = self.slot_starts.binary_search_by_key(&start, |&(s, _)| s).ok()?;
        self.last_used.get(slot).copied()
    }
}

/// What [`MappingCache::lookup_entry`] found: the extent, its redirect entry if it has one,
/// and the read cursors of mirrored entries.
#[derive(Clone, Copy, Debug)]
pub struct ExtentEntry<'a> {
    /// The extent lookup's answer.
    pub lookup: ExtentLookup,
    /// The redirect entry of the extent found (inside or spanning), if the table has it.
    pub entry: Option<&'a RedirectEntry>,
    /// Which mirror side each mirrored entry read last.
    pub read_cursors: ReadCursors<'a>,
}

/// The mirror side the last read through each segment's redirect entry used.
#[derive(Clone, Copy, Debug)]
pub struct ReadCursors<'a>(&'a CursorStore);

impl ReadCursors<'_> {
    /// The side the last read through `(vseg, redirect)` used (0 before any).
    #[inline]
    pub fn get(&self, vseg: VsegId, redirect: RedirectIndex) -> usize {
        self.0.get((vseg, redirect))
    }
}

/// Read cursors: the entry set last kept apart from the map of the others. Reads of a mirror
/// usually go through one entry after another, and every mirrored read moves its cursor: a
/// map alone cost a hash and probe to read the cursor and another to write it, about 100
/// instructions a read.
#[derive(Debug, Default)]
pub struct CursorStore {
    last: Option<((VsegId, RedirectIndex), usize)>,
    /// Every other entry's cursor; an entry's value here is stale while it is `last`.
    earlier: IdMap<(VsegId, RedirectIndex), usize>,
}

impl CursorStore {
    #[inline]
    fn get(&self, key: (VsegId, RedirectIndex)) -> usize {
        match self.last {
            Some((k, side)) if k == key => side,
            _ => self.earlier.get(&key).copied().unwrap_or(0),
        }
    }

    #[inline]
    fn set(&mut self, key: (VsegId, RedirectIndex), side: usize) {
        match &mut self.last {
            Some((k, last_side)) if *k == key => *last_side = side,
            last => {
                if let Some((k, s)) = last.replace((key, side)) {
                    self.earlier.insert(k, s);
                }
            }
        }
    }
}

/// What a lookup of `[block, block + blocks)` in a segment found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExtentLookup {
    /// The segment is not cached at all.
    UnknownSegment,
    /// The segment's redirect table is not loaded yet (first access: load it whole).
    NoRedirects,
    /// The first block's extent is not cached.
    Miss,
    /// The range lies inside one cached extent.
    Inside {
        /// Extent start (segment block).
        start: u64,
        /// Extent end.
        end: u64,
        /// Its redirect entry.
        redirect: RedirectIndex,
    },
    /// The range starts in this cached extent and runs past its end.
    Spans {
        /// Extent start (segment block).
        start: u64,
        /// Extent end.
        end: u64,
        /// Its redirect entry.
        redirect: RedirectIndex,
    },
}

/// A volume as the worker knows it.
#[derive(Clone, Debug)]
pub struct CachedLv {
    /// Its descriptor.
    pub descriptor: LvDescriptor,
    /// The LUN mask, if the control path set one; without one every host may use the fast path.
    pub mask: Option<LunMask>,
    /// Whether new I/O is held.
    pub paused: bool,
}

/// One of this worker's journals and its append position.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CachedJournal {
    /// The region.
    pub region: JournalRegion,
    /// Next block to append at, relative to the region's start.
    pub next: u64,
}

/// What the front half of the decision chain (seed 003 Fig. 7 steps 92 to 96) decides for a
/// command in one direction, in the chain's order of checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FrontVerdict {
    /// No exposure, LUN or login, or the LUN is not exposed to the host.
    NotExposed,
    /// The volume is not cached.
    Miss,
    /// The LUN mask denies the host this direction.
    Masked,
    /// The volume is paused.
    Hold,
    /// On to the segment.
    Go,
}

/// The front half of the decision chain for one (virtual target, LUN, initiator).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Front {
    /// The exposure at the virtual target, if any.
    pub exposure: Option<ExposureId>,
    /// The initiator's port name, if it is logged in.
    pub login: Option<Wwn>,
    /// The volume behind the LUN, once exposure, LUN and login were found (as the chain
    /// reports it to the control path).
    pub lv: Option<LvId>,
    /// The verdict for reads.
    pub read: FrontVerdict,
    /// The verdict for writes.
    pub write: FrontVerdict,
    /// The volume's block size (when it is cached).
    pub block_size: u32,
    /// The segment the last command through this entry started in: a command starting in it
    /// needs no search of the volume's segments.
    pub segment: Option<VsegDescriptor>,
}

/// A remembered [`Front`], valid only under the cache generation it was computed in.
#[derive(Clone, Copy, Debug)]
struct FrontSlot {
    generation: u64,
    target: u32,
    lun: Lun,
    initiator: u32,
    front: Front,
}

/// Remembered fronts, direct-mapped: a command stream touches few (target, LUN, initiator)
/// triples at a time, and a collision only costs a fresh computation.
const FRONT_SLOTS: usize = 64;

/// A worker's mapping cache.
#[derive(Debug)]
pub struct MappingCache {
    worker: WorkerId,
    config: CacheConfig,
    exposures: IdMap<u32, TargetExposure>,
    exposure_by_id: IdMap<ExposureId, FcId>,
    lvs: IdMap<LvId, CachedLv>,
    segments: IdMap<VsegId, SegmentCache>,
    devices: IdMap<DeviceId, DevicePath>,
    journals: IdMap<JournalGroupId, CachedJournal>,
    routes: IdMap<u32, FabricRoute>,
    logins: IdMap<u32, Wwn>,
    /// Per segment and redirect entry: the mirror side the last read used.
    read_cursors: CursorStore,
    tick: u64,
    cached_extents: usize,
    /// Extents evicted so far.
    pub evicted: u64,
    /// Bumped by every change to the cache; remembered fronts of older generations are void.
    generation: u64,
    fronts: Box<[FrontSlot]>,
}

impl MappingCache {
    /// An empty cache for `worker`.
    pub fn new(worker: WorkerId, config: CacheConfig) -> MappingCache {
        MappingCache {
            worker,
            config,
            exposures: IdMap::default(),
            exposure_by_id: IdMap::default(),
            lvs: IdMap::default(),
            segments: IdMap::default(),
            devices: IdMap::default(),
            journals: IdMap::default(),
            routes: IdMap::default(),
            logins: IdMap::default(),
            read_cursors: CursorStore::default(),
            tick: 0,
            cached_extents: 0,
            evicted: 0,
            // Slots start at generation 0, which the cache never has: none is valid.
            generation: 1,
            fronts: vec![
                FrontSlot {
                    generation: 0,
                    target: 0,
                    lun: Lun(0),
                    initiator: 0,
                    front: Front {
                        exposure: None,
                        login: None,
                        lv: None,
                        read: FrontVerdict::NotExposed,
                        write: FrontVerdict::NotExposed,
                        block_size: 0,
                        segment: None,
                    },
                };
                FRONT_SLOTS
            ]
            .into_boxed_slice(),
        }
    }

    /// Void every remembered front: called by every change to the cache, whatever it touches
    /// (a change the fronts do not depend on costs one recomputation per triple, no more).
    fn changed(&mut self) {
        self.generation += 1;
    }

    fn front_slot(target: FcId, lun: Lun, initiator: FcId) -> usize {
        let key = u64::from(target.get()) << 40 ^ u64::from(initiator.get()) << 16 ^ u64::from(lun.0);
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % FRONT_SLOTS
    }

    /// The front half of the decision chain for a command from `initiator` to LUN `lun` of
    /// virtual target `target`: remembered from an earlier command under the current
    /// generation, else computed (and remembered).
    #[inline]
    pub fn front(&mut self, target: FcId, lun: Lun, initiator: FcId) -> Front {
        let at = Self::front_slot(target, lun, initiator);
        let slot = &self.fronts[at];
        if slot.generation == self.generation
            && slot.target == target.get()
            && slot.lun == lun
            && slot.initiator == initiator.get()
        {
            return slot.front;
        }
        let front = self.compute_front(target, lun, initiator);
        self.fronts[at] = FrontSlot {
            generation: self.generation,
            target: target.get(),
            lun,
            initiator: initiator.get(),
            front,
        };
        front
    }

    /// Remember `segment` as where the last command through this triple started (it must
    /// be a segment of the triple's volume under the current generation).
    #[inline]
    pub fn remember_segment(&mut self, target: FcId, lun: Lun, initiator: FcId, segment: VsegDescriptor) {
        let slot = &mut self.fronts[Self::front_slot(target, lun, initiator)];
        if slot.generation == self.generation
            && slot.target == target.get()
            && slot.lun == lun
            && slot.initiator == initiator.get()
        {
            slot.front.segment = Some(segment);
        }
    }

    /// Steps 92 to 96 of Fig. 7 over the cache as it is, in the chain's order: exposure, LUN
    /// map, login, volume, LUN mask, exposure to the host, pause.
    fn compute_front(&self, target: FcId, lun: Lun, initiator: FcId) -> Front {
        use FrontVerdict::*;
        let exposure = self.exposure_at(target);
        let login = self.login(initiator);
        let mut front = Front {
            exposure: exposure.map(|e| e.id),
            login,
            lv: None,
            read: NotExposed,
            write: NotExposed,
            block_size: 0,
            segment: None,
        };
        let (Some(mapping), Some(host)) = (exposure.and_then(|e| e.lun(lun)), login) else { return front };
        front.lv = Some(mapping.lv);
        let Some(lv) = self.lv(mapping.lv) else {
            (front.read, front.write) = (Miss, Miss);
            return front;
        };
        front.block_size = lv.descriptor.block_size;
        let exposed = mapping.hosts.contains(host);
        let verdict = |allowed: bool| match () {
            _ if !allowed => Masked,
            _ if !exposed => NotExposed,
            _ if lv.paused => Hold,
            _ => Go,
        };
        front.read = verdict(lv.mask.as_ref().is_none_or(|m| m.readers.contains(host)));
        front.write = verdict(lv.mask.as_ref().is_none_or(|m| m.writers.contains(host)));
        front
    }

    /// Extents cached now.
    pub fn cached_extents(&self) -> usize {
        self.cached_extents
    }

    /// Add a target exposure (`FPExpose`), replacing one at the same D_ID.
    pub fn expose(&mut self, exposure: TargetExposure) {
        self.changed();
        if let Some(old) = self.exposure_by_id.insert(exposure.id, exposure.fc_id) {
            self.exposures.remove(&old.get());
        }
        self.exposures.insert(exposure.fc_id.get(), exposure);
    }

    /// Remove a target exposure (`FPHide`).
    pub fn hide(&mut self, id: ExposureId) -> Result<(), Error> {
        self.changed();
        let fc_id = self.exposure_by_id.remove(&id).ok_or(Error::UnknownExposure(id))?;
        self.exposures.remove(&fc_id.get());
        Ok(())
    }

    /// The exposure at virtual D_ID `d_id`.
    #[inline]
    pub fn exposure_at(&self, d_id: FcId) -> Option<&TargetExposure> {
        self.exposures.get(&d_id.get())
    }

    /// The exposure with id `id`.
    pub fn exposure(&self, id: ExposureId) -> Option<&TargetExposure> {
        self.exposures.get(&self.exposure_by_id.get(&id)?.get())
    }

    /// The volume `id`.
    #[inline]
    pub fn lv(&self, id: LvId) -> Option<&CachedLv> {
        self.lvs.get(&id)
    }

    /// Set an LV's LUN mask.
    pub fn set_mask(&mut self, mask: LunMask) -> Result<(), Error> {
        self.changed();
        let lv = self.lvs.get_mut(&mask.lv).ok_or(Error::UnknownLv(mask.lv))?;
        lv.mask = Some(mask);
        Ok(())
    }

    /// Pause or resume an LV.
    pub fn set_paused(&mut self, id: LvId, paused: bool) -> Result<(), Error> {
        self.changed();
        self.lvs.get_mut(&id).ok_or(Error::UnknownLv(id))?.paused = paused;
        Ok(())
    }

    /// Every device path.
    pub fn device_paths(&self) -> impl Iterator<Item = &DevicePath> + '_ {
        self.devices.values()
    }

    /// The path to `device`.
    #[inline]
    pub fn device(&self, device: DeviceId) -> Option<&DevicePath> {
        self.devices.get(&device)
    }

    /// The route to physical N_Port `fc_id`.
    #[inline]
    pub fn route(&self, fc_id: FcId) -> Option<&FabricRoute> {
        self.routes.get(&fc_id.get())
    }

    /// The port name of the N_Port logged in at `fc_id`.
    #[inline]
    pub fn login(&self, fc_id: FcId) -> Option<Wwn> {
        self.logins.get(&fc_id.get()).copied()
    }

    /// The mirror side the last read through `(vseg, redirect)` used.
    #[inline]
    pub fn read_cursor(&self, vseg: VsegId, redirect: RedirectIndex) -> usize {
        self.read_cursors.get((vseg, redirect))
    }

    /// Record the mirror side a read used.
    #[inline]
    pub fn set_read_cursor(&mut self, vseg: VsegId, redirect: RedirectIndex, side: usize) {
        self.read_cursors.set((vseg, redirect), side);
    }

    /// This worker's journal in `group`.
    pub fn journal_mut(&mut self, group: JournalGroupId) -> Option<&mut CachedJournal> {
        self.journals.get_mut(&group)
    }

    /// The segment descriptor `vseg`.
    pub fn segment(&self, vseg: VsegId) -> Option<&VsegDescriptor> {
        self.segments.get(&vseg).map(|s| &s.descriptor)
    }

    /// Redirect entry `index` of `vseg`.
    #[inline]
    pub fn redirect(&self, vseg: VsegId, index: RedirectIndex) -> Option<&RedirectEntry> {
        self.segments.get(&vseg)?.redirects.as_ref()?.get(index)
    }

    /// Look up segment blocks `[block, block + blocks)`, recording the use for replacement.
    #[inline]
    pub fn lookup(&mut self, vseg: VsegId, block: u64, blocks: u64) -> ExtentLookup {
        self.lookup_entry(vseg, block, blocks).lookup
    }

    /// [`MappingCache::lookup`], with the redirect entry the extent names (what
    /// [`MappingCache::redirect`] gives for it) taken from the segment the lookup already
    /// found rather than by a second hash of the segment, and the mirror sides' read
    /// cursors, which the decision chain reads while it holds the entry.
    #[inline]
    pub fn lookup_entry(&mut self, vseg: VsegId, block: u64, blocks: u64) -> ExtentEntry<'_> {
        self.tick += 1;
        let tick = self.tick;
        let read_cursors = ReadCursors(&self.read_cursors);
        let found = |lookup, entry| ExtentEntry { lookup, entry, read_cursors };
        let Some(segment) = self.segments.get_mut(&vseg) else {
            return found(ExtentLookup::UnknownSegment, None);
        };
        if segment.redirects.is_none() {
            return found(ExtentLookup::NoRedirects, None);
        }
        if segment.index.is_none() {
            segment.rebuild(tick);
        }
        let Some(index) = segment.index.as_ref() else { return found(ExtentLookup::Miss, None) };
        let (lookup, value) = match index.fit(block, blocks) {
            Fit::Miss => return found(ExtentLookup::Miss, None),
            Fit::Inside { start, end, value } => {
                (ExtentLookup::Inside { start, end, redirect: value.redirect }, value)
            }
            Fit::Spans { start, end, value } => {
                (ExtentLookup::Spans { start, end, redirect: value.redirect }, value)
            }
        };
        segment.last_used[value.slot as usize] = tick;
        found(lookup, segment.redirects.as_ref().and_then(|r| r.get(value.redirect)))
    }

    /// Add mapping the control path granted (`FPAddMapping`, or the new half of
    /// `FPReplaceMapping`).
    pub fn add(&mut self, entry: MappingEntry) -> Result<(), Error> {
        self.changed();
        match entry {
            MappingEntry::Lv(descriptor) => {
                for seg in &descriptor.segments {
                    self.segments.entry(seg.id).or_insert_with(|| SegmentCache::new(*seg)).descriptor = *seg;
                }
                let mask = self.lvs.get(&descriptor.id).and_then(|lv| lv.mask.clone());
                let paused = self.lvs.get(&descriptor.id).is_some_and(|lv| lv.paused);
                self.lvs.insert(descriptor.id, CachedLv { descriptor, mask, paused });
            }
            MappingEntry::Redirects { vseg, table } => {
                let segment =
                    self.segments.get_mut(&vseg).ok_or(Error::InvalidDescriptor("unknown segment"))?;
                segment.redirects = Some(table);
            }
            MappingEntry::Extents { vseg, extents } => {
                let segment =
                    self.segments.get_mut(&vseg).ok_or(Error::InvalidDescriptor("unknown segment"))?;
                let before = segment.extents.len();
                for extent in extents {
                    if extent.end > segment.descriptor.blocks {
                        return Err(Error::OutOfRange {
                            what: "extent end",
                            index: extent.end,
                            len: segment.descriptor.blocks,
                        });
                    }
                    segment.extents.set(extent.range(), extent.value)?;
                }
                self.cached_extents = self.cached_extents + segment.extents.len() - before;
                segment.index = None;
                self.trim();
            }
            MappingEntry::DevicePath(path) => {
                self.devices.insert(path.device, path);
            }
            MappingEntry::Journal(region) => {
                if region.worker == self.worker {
                    self.journals.insert(region.group, CachedJournal { region, next: 0 });
                }
            }
            MappingEntry::Route(route) => {
                self.routes.insert(route.fc_id.get(), route);
            }
            MappingEntry::Login(login) => {
                self.logins.insert(login.fc_id.get(), login.port_name);
            }
        }
        Ok(())
    }

    /// Remove mapping (`FPRemoveMapping`): I/O that needed it faults from now on.
    pub fn remove(&mut self, key: &MappingKey) {
        self.changed();
        match key {
            MappingKey::Lv(id) => {
                if let Some(lv) = self.lvs.remove(id) {
                    for seg in &lv.descriptor.segments {
                        self.drop_segment(seg.id);
                    }
                }
            }
            MappingKey::Vseg(vseg) => {
                if let Some(segment) = self.segments.get_mut(vseg) {
                    segment.redirects = None;
                    self.clear_extents(*vseg, 0..u64::MAX);
                }
            }
            MappingKey::Redirects(vseg) => {
                if let Some(segment) = self.segments.get_mut(vseg) {
                    segment.redirects = None;
                }
                self.clear_extents(*vseg, 0..u64::MAX);
            }
            MappingKey::Extents { vseg, blocks } => self.clear_extents(*vseg, blocks.clone()),
            MappingKey::DevicePath(device) => {
                self.devices.remove(device);
            }
            MappingKey::Journal { group, worker } => {
                if *worker == self.worker {
                    self.journals.remove(group);
                }
            }
            MappingKey::Route(fc_id) => {
                self.routes.remove(&fc_id.get());
            }
            MappingKey::Login(fc_id) => {
                self.logins.remove(&fc_id.get());
            }
        }
    }

    fn drop_segment(&mut self, vseg: VsegId) {
        if let Some(segment) = self.segments.remove(&vseg) {
            self.cached_extents -= segment.extents.len();
        }
    }

    fn clear_extents(&mut self, vseg: VsegId, blocks: core::ops::Range<u64>) {
        let Some(segment) = self.segments.get_mut(&vseg) else { return };
        if blocks.start >= blocks.end {
            return;
        }
        let before = segment.extents.len();
        // Revoke exactly the blocks named, so I/O elsewhere in a partly covered extent keeps
        // its fast path; if cutting would exceed the extent bound, drop the touched extents
        // whole (the cache may hold less, never something the control path revoked).
        if segment.extents.clear(blocks.clone()).is_err() {
            let touched: Vec<_> = segment.extents.overlapping(blocks).map(|e| e.range()).collect();
            for range in touched {
                let _ = segment.extents.clear(range);
            }
        }
        self.cached_extents = self.cached_extents + segment.extents.len() - before;
        segment.index = None;
    }

    /// Evict least recently used extents until the cache is within its bound.
    fn trim(&mut self) {
        if self.cached_extents <= self.config.max_extents {
            return;
        }
        // Leave room so that trimming is not repeated on every miss.
        let target = self.config.max_extents - self.config.max_extents / 8;
        let mut candidates: Vec<(u64, VsegId, u64, u64)> = Vec::new();
        self.tick += 1;
        for (&vseg, segment) in &mut self.segments {
            if segment.index.is_none() {
                segment.rebuild(self.tick);
            }
            for (slot, &(start, end)) in segment.slot_starts.iter().enumerate() {
                candidates.push((segment.last_used[slot], vseg, start, end));
            }
        }
        candidates.sort_unstable_by_key(|&(used, vseg, start, _)| (used, vseg, start));
        let excess = self.cached_extents.saturating_sub(target);
        for &(_, vseg, start, end) in candidates.iter().take(excess) {
            if let Some(segment) = self.segments.get_mut(&vseg) {
                if segment.extents.clear(start..end).is_ok() {
                    self.cached_extents -= 1;
                    self.evicted += 1;
                }
                segment.index = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dve_fp_api::ids::Lun;
    use dve_fp_api::mapping::{Extent, HostSet, LunMapping, Placement, StorageDescriptor};

    fn lv() -> LvDescriptor {
        let seg = VsegDescriptor { id: VsegId(7), lv: LvId(1), start: 0, blocks: 1000 };
        LvDescriptor::new(LvId(1), 512, vec![seg]).unwrap()
    }

    fn table() -> RedirectTable {
        let mut t = RedirectTable::new(4);
        t.insert(RedirectEntry::read_write(StorageDescriptor::Single(Placement {
            device: DeviceId(1),
            lba: 0,
        })))
        .unwrap();
        t
    }

    fn extents(ranges: &[(u64, u64)]) -> MappingEntry {
        MappingEntry::Extents {
            vseg: VsegId(7),
            extents: ranges
                .iter()
                .map(|&(start, end)| Extent { start, end, value: RedirectIndex(0) })
                .collect(),
        }
    }

    #[test]
    fn a_segment_needs_its_redirect_table_then_extents() {
        let mut cache = MappingCache::new(WorkerId(0), CacheConfig::default());
        assert_eq!(cache.lookup(VsegId(7), 0, 8), ExtentLookup::UnknownSegment);
        cache.add(MappingEntry::Lv(lv())).unwrap();
        assert_eq!(cache.lookup(VsegId(7), 0, 8), ExtentLookup::NoRedirects);
        cache.add(MappingEntry::Redirects { vseg: VsegId(7), table: table() }).unwrap();
        assert_eq!(cache.lookup(VsegId(7), 0, 8), ExtentLookup::Miss);
        cache.add(extents(&[(0, 100)])).unwrap();
        assert_eq!(
            cache.lookup(VsegId(7), 0, 8),
            ExtentLookup::Inside { start: 0, end: 100, redirect: RedirectIndex(0) }
        );
        assert_eq!(
            cache.lookup(VsegId(7), 96, 8),
            ExtentLookup::Spans { start: 0, end: 100, redirect: RedirectIndex(0) }
        );
        assert!(cache.add(extents(&[(900, 1001)])).is_err(), "beyond the segment");
        cache.remove(&MappingKey::Extents { vseg: VsegId(7), blocks: 50..51 });
        // Revocation is exact: the blocks named go, the rest of the extent stays cached.
        assert_eq!(cache.lookup(VsegId(7), 50, 1), ExtentLookup::Miss);
        assert_eq!(
            cache.lookup(VsegId(7), 0, 8),
            ExtentLookup::Inside { start: 0, end: 50, redirect: RedirectIndex(0) }
        );
        assert_eq!(
            cache.lookup(VsegId(7), 60, 8),
            ExtentLookup::Inside { start: 51, end: 100, redirect: RedirectIndex(0) }
        );
        assert_eq!(cache.cached_extents(), 2);
    }

    proptest::proptest! {
        /// The cursor store answers as the one map it replaced, for any sequence of sets.
        #[test]
        fn cursor_store_matches_a_map(sets in proptest::collection::vec((0u32..3, 0u16..3, 0usize..3), 0..32)) {
            let mut store = CursorStore::default();
            let mut map: IdMap<(VsegId, RedirectIndex), usize> = IdMap::default();
            for (vseg, redirect, side) in sets {
                let key = (VsegId(vseg), RedirectIndex(redirect));
                store.set(key, side);
                map.insert(key, side);
                for vseg in 0..3 {
                    for redirect in 0..3 {
                        let key = (VsegId(vseg), RedirectIndex(redirect));
                        proptest::prop_assert_eq!(store.get(key), map.get(&key).copied().unwrap_or(0));
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// The lookup with its entry finds what the lookup and then the redirect entry's own
        /// look-up find, with the same read cursors, on twin caches given the same lookups:
        /// extents inside, spanning and missed, entries the table lacks, segments with no
        /// table or not cached, and extents evicted on the way.
        #[test]
        fn lookups_with_their_entry_match_the_two_lookups(
            extents_at in proptest::collection::vec((0u64..900, 1u64..80, 0u16..4), 1..12),
            lookups in proptest::collection::vec((0u32..3, 0u64..1000, 1u64..120), 1..24),
            cursors in proptest::collection::vec((0u16..4, 0usize..3), 0..4),
            max_extents in 4usize..16,
        ) {
            let mut twins = [0, 1].map(|_| MappingCache::new(WorkerId(0), CacheConfig { max_extents }));
            for cache in &mut twins {
                cache.add(MappingEntry::Lv(lv())).unwrap();
                // Entries 0 and 1 only: extents naming 2 or 3 have none.
                let mut t = table();
                t.insert(RedirectEntry::read_write(StorageDescriptor::Single(Placement { device: DeviceId(2), lba: 9 })))
                    .unwrap();
                cache.add(MappingEntry::Redirects { vseg: VsegId(7), table: t }).unwrap();
                for &(start, len, value) in &extents_at {
                    let extent = Extent { start, end: (start + len).min(1000), value: RedirectIndex(value) };
                    let _ = cache.add(MappingEntry::Extents { vseg: VsegId(7), extents: vec![extent] });
                }
                for &(redirect, side) in &cursors {
                    cache.set_read_cursor(VsegId(7), RedirectIndex(redirect), side);
                }
            }
            let [mut ours, mut theirs] = twins;
            for (vseg, block, blocks) in lookups {
                // Segment 7 is cached; 6 and 8 are not.
                let vseg = VsegId(6 + vseg);
                let found = ours.lookup_entry(vseg, block, blocks);
                let lookup = theirs.lookup(vseg, block, blocks);
                proptest::prop_assert_eq!(found.lookup, lookup);
                let entry = match lookup {
                    ExtentLookup::Inside { redirect, .. } | ExtentLookup::Spans { redirect, .. } => {
                        for r in 0..4 {
                            let r = RedirectIndex(r);
                            proptest::prop_assert_eq!(found.read_cursors.get(vseg, r), theirs.read_cursor(vseg, r));
                        }
                        theirs.redirect(vseg, redirect)
                    }
                    _ => None,
                };
                proptest::prop_assert_eq!(found.entry, entry);
            }
        }
    }

    #[test]
    fn least_recently_used_extents_go_first() {
        let mut cache = MappingCache::new(WorkerId(0), CacheConfig { max_extents: 8 });
        cache.add(MappingEntry::Lv(lv())).unwrap();
        cache.add(MappingEntry::Redirects { vseg: VsegId(7), table: table() }).unwrap();
        // Distinct extents: separated by gaps so they do not coalesce.
        let ranges: Vec<(u64, u64)> = (0..8).map(|i| (i * 20, i * 20 + 10)).collect();
        cache.add(extents(&ranges)).unwrap();
        for &(start, _) in ranges.iter().skip(1) {
            assert!(matches!(cache.lookup(VsegId(7), start, 1), ExtentLookup::Inside { .. }));
        }
        cache.add(extents(&[(500, 510)])).unwrap();
        assert!(cache.cached_extents() <= 8);
        assert_eq!(cache.lookup(VsegId(7), 0, 1), ExtentLookup::Miss, "extent 0 was never used");
        assert!(matches!(cache.lookup(VsegId(7), 500, 1), ExtentLookup::Inside { .. }));
        assert!(cache.evicted >= 1);
    }

    #[test]
    fn exposures_are_found_by_virtual_address() {
        let mut cache = MappingCache::new(WorkerId(0), CacheConfig::default());
        let fc_id = FcId::new(0x0A0001).unwrap();
        cache.expose(TargetExposure {
            id: ExposureId(1),
            port_name: Wwn(0x2000),
            node_name: Wwn(0x1000),
            fc_id,
            luns: vec![LunMapping { lun: Lun(0), lv: LvId(1), hosts: HostSet::All }],
        });
        assert_eq!(cache.exposure_at(fc_id).unwrap().id, ExposureId(1));
        cache.hide(ExposureId(1)).unwrap();
        assert!(cache.exposure_at(fc_id).is_none());
        assert_eq!(cache.hide(ExposureId(1)), Err(Error::UnknownExposure(ExposureId(1))));
    }
}
