//! The decision chain of seed 003 Fig. 7 from the target exposure down to dispatch, and the
//! four primitives that turn a host read or write into downstream legs: remap, stripe,
//! write split (mirror) and journal. Pure over the mapping cache: the worker applies the
//! result, so every fault cause can be produced and tested here in isolation.

use dve_fp_api::fault::FaultCause;
use dve_fp_api::ids::{DeviceId, FcId, JournalGroupId, Lun, LvId, VsegId};
use dve_fp_api::io::IoKind;
use dve_fp_api::mapping::{JournalRegion, Location, StorageDescriptor};

use crate::cache::{ExtentLookup, Front, FrontVerdict, MappingCache};
use crate::worker::config::WorkerConfig;

/// Most downstream legs one host I/O can have.
pub const MAX_LEGS: usize = 16;

/// One downstream I/O of a host I/O.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Leg {
    /// The device.
    pub device: DeviceId,
    /// First device block.
    pub lba: u64,
    /// Blocks of host data the leg moves.
    pub blocks: u32,
    /// Where the leg's data starts in the host I/O's data, in bytes.
    pub data_offset: u32,
    /// Bytes the leg sends before the host data (a journal entry's header block).
    pub header_bytes: u32,
    /// Mirror side (or 0).
    pub side: u8,
}

/// A fixed-capacity list of legs (no allocation per I/O).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct LegList {
    legs: [Leg; MAX_LEGS],
    len: usize,
}

impl LegList {
    /// Empty the list; the slots are overwritten as legs are pushed.
    fn clear(&mut self) {
        self.len = 0;
    }

    fn push(&mut self, leg: Leg) -> bool {
        if self.len == MAX_LEGS {
            return false;
        }
        self.legs[self.len] = leg;
        self.len += 1;
        true
    }

    /// The legs.
    pub fn as_slice(&self) -> &[Leg] {
        &self.legs[..self.len]
    }

    /// Number of legs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Where a journaled write's entry goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct JournalAppend {
    /// The journal group.
    pub group: JournalGroupId,
    /// The worker's journal region.
    pub region: JournalRegion,
    /// The header block's position in the region, in blocks.
    pub position: u64,
}

/// A host I/O the fast path will carry out.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Plan {
    /// The volume.
    pub lv: LvId,
    /// The segment.
    pub vseg: VsegId,
    /// First segment block.
    pub seg_block: u64,
    /// Blocks.
    pub blocks: u32,
    /// Bytes per block.
    pub block_size: u32,
    /// The downstream legs.
    pub legs: LegList,
    /// A mirror or journal write: it must not overlap another such write in flight.
    pub serialized: bool,
    /// The journal entry, for a journaled write.
    pub journal: Option<JournalAppend>,
}

/// What a host I/O keeps of its plan once the legs are started: the legs themselves live in
/// their downstream exchanges, so the upstream slot (and every pending-list query) does not
/// carry sixteen legs around.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PlanSummary {
    /// The volume.
    pub lv: LvId,
    /// The segment.
    pub vseg: VsegId,
    /// First segment block.
    pub seg_block: u64,
    /// Blocks.
    pub blocks: u32,
    /// Bytes per block.
    pub block_size: u32,
    /// How many legs were started.
    pub leg_count: u8,
    /// A mirror or journal write on the serialization list.
    pub serialized: bool,
    /// The journal entry, for a journaled write.
    pub journal: Option<JournalAppend>,
}

impl Plan {
    /// What the upstream exchange keeps.
    pub fn summary(&self) -> PlanSummary {
        PlanSummary {
            lv: self.lv,
            vseg: self.vseg,
            seg_block: self.seg_block,
            blocks: self.blocks,
            block_size: self.block_size,
            leg_count: self.legs.len() as u8,
            serialized: self.serialized,
            journal: self.journal,
        }
    }

    /// Test-only fault injection ([`WorkerConfig::misdirect_write`]): move the first leg one
    /// block further on its device.
    pub fn misdirect_first_leg(&mut self) {
        if let Some(leg) = self.legs.legs.first_mut().filter(|_| self.legs.len > 0) {
            leg.lba += 1;
        }
    }
}

/// The outcome of the decision chain.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Resolution {
    /// Dispatch on the fast path the plan written into the caller's [`Plan`].
    Dispatch,
    /// The volume is paused: hold the I/O.
    Hold,
    /// Mapping is missing from the cache: ask the control path (`CpMappingMiss`).
    Miss,
    /// Hand the I/O to the control path with this cause (`CpQueueIO`).
    Fault(FaultCause),
}

/// What the chain needs to know about a host command.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Command {
    /// The virtual D_ID it was sent to.
    pub target: FcId,
    /// The LUN.
    pub lun: Lun,
    /// The initiator's address.
    pub initiator: FcId,
    /// Read, write or other.
    pub kind: IoKind,
    /// First volume block.
    pub lba: u64,
    /// Blocks.
    pub blocks: u32,
}

/// What the chain resolved besides the outcome, for the control path's benefit.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Resolved {
    /// The volume, once found.
    pub lv: Option<LvId>,
    /// The segment, once found.
    pub vseg: Option<VsegId>,
}

/// Run the decision chain of Fig. 7 for `cmd`. `overlaps(vseg, start, end)` says whether a
/// serialized write in flight overlaps segment blocks `[start, end)`. A journaled write that
/// dispatches has its journal space reserved. The plan of a [`Resolution::Dispatch`] is
/// written into `plan` (a plan of 16 legs is several hundred bytes: built in place, not moved
/// out through return values); any other outcome leaves `plan` meaningless.
pub fn resolve(
    cache: &mut MappingCache,
    config: &WorkerConfig,
    cmd: &Command,
    overlaps: impl Fn(VsegId, u64, u64) -> bool,
    plan: &mut Plan,
) -> (Resolution, Resolved) {
    let front = cache.front(cmd.target, cmd.lun, cmd.initiator);
    resolve_with_front(cache, config, cmd, &front, overlaps, plan)
}

/// [`resolve`] with the front half of the chain already taken from
/// [`MappingCache::front`] for `cmd`'s target, LUN and initiator, with no change to the
/// cache since: the worker looks it up for every command as it arrives, and so does not
/// look it up twice. By reference: a `Front` is 72 bytes, and moved in it was copied twice.
pub fn resolve_with_front(
    cache: &mut MappingCache,
    config: &WorkerConfig,
    cmd: &Command,
    front: &Front,
    overlaps: impl Fn(VsegId, u64, u64) -> bool,
    plan: &mut Plan,
) -> (Resolution, Resolved) {
    let mut resolved = Resolved::default();
    let outcome = chain(cache, config, cmd, front, &overlaps, &mut resolved, plan);
    (outcome, resolved)
}

fn chain(
    cache: &mut MappingCache,
    config: &WorkerConfig,
    cmd: &Command,
    front: &Front,
    overlaps: &dyn Fn(VsegId, u64, u64) -> bool,
    resolved: &mut Resolved,
    plan: &mut Plan,
) -> Resolution {
    use FaultCause::*;
    // Step 88: only reads and writes stay on the fast path.
    if cmd.kind == IoKind::Other {
        return Resolution::Fault(NotReadWrite);
    }
    // Steps 92 to 96: exposure, LUN map, login, volume, LUN mask, exposure to the host and
    // pause, remembered per (target, LUN, initiator) until the cache next changes.
    resolved.lv = front.lv;
    match if cmd.kind == IoKind::Write { front.write } else { front.read } {
        FrontVerdict::Go => {}
        FrontVerdict::NotExposed => return Resolution::Fault(NotExposed),
        FrontVerdict::Miss => return Resolution::Miss,
        FrontVerdict::Masked => return Resolution::Fault(MaskedLun),
        FrontVerdict::Hold => return Resolution::Hold,
    }
    let Some(lv_id) = front.lv else { return Resolution::Miss };
    if cmd.blocks == 0 {
        // Nothing to move: the control path answers (a zero-length transfer is legal SCSI).
        return Resolution::Fault(NotReadWrite);
    }
    if cmd.blocks > config.max_io_blocks {
        return Resolution::Fault(Capacity);
    }
    let block_size = front.block_size;
    // Steps 98 and 100: the segment (the one the last command here started in, else a
    // search of the volume's), and I/O that leaves it.
    let seg = match front.segment {
        Some(seg) if seg.start <= cmd.lba && cmd.lba < seg.end() => seg,
        _ => {
            let Some(lv) = cache.lv(lv_id) else { return Resolution::Miss };
            let Some(seg) = lv.descriptor.segment_of(cmd.lba).copied() else {
                return Resolution::Fault(SpansSegment);
            };
            cache.remember_segment(cmd.target, cmd.lun, cmd.initiator, seg);
            seg
        }
    };
    resolved.vseg = Some(seg.id);
    let Some(end) = cmd.lba.checked_add(u64::from(cmd.blocks)) else {
        return Resolution::Fault(SpansSegment);
    };
    if end > seg.end() {
        return Resolution::Fault(SpansSegment);
    }
    let seg_block = cmd.lba - seg.start;
    let seg_end = seg_block + u64::from(cmd.blocks);

    plan.lv = lv_id;
    plan.vseg = seg.id;
    plan.seg_block = seg_block;
    plan.blocks = cmd.blocks;
    plan.block_size = block_size;
    plan.legs.clear();
    plan.serialized = false;
    plan.journal = None;
    let mut journal_group = None;
    let mut block = seg_block;
    while block < seg_end {
        let left = seg_end - block;
        // Steps 102 to 108: the extent, cached or not, and I/O that spans extents.
        let found = cache.lookup_entry(seg.id, block, left);
        let (extent_end, redirect) = match found.lookup {
            ExtentLookup::Inside { end, redirect, .. } => (end, redirect),
            ExtentLookup::Spans { end, redirect, .. } if config.split_extents => (end, redirect),
            ExtentLookup::Spans { .. } => return Resolution::Fault(SpansExtent),
            ExtentLookup::Miss | ExtentLookup::NoRedirects | ExtentLookup::UnknownSegment => {
                return Resolution::Miss;
            }
        };
        let piece = extent_end.min(seg_end) - block;
        // Step 110: the redirect entry; step 112: fault on read / fault on write.
        let Some(entry) = found.entry else { return Resolution::Miss };
        if !entry.allows(cmd.kind) {
            return Resolution::Fault(Permission);
        }
        let data_offset = ((block - seg_block) * u64::from(block_size)) as u32;
        // Step 114: the storage descriptor, and the primitive it calls for.
        let mut read_side = None;
        let legs = &mut plan.legs;
        let pushed = match &entry.descriptor {
            StorageDescriptor::Single(p) => {
                Ok(legs.push(leg(Location { device: p.device, lba: p.lba + block }, piece, data_offset, 0)))
            }
            StorageDescriptor::Stripe(set) => {
                layout_legs(|b| set.locate(b), block, piece, data_offset, block_size, 0, config, legs)
            }
            StorageDescriptor::Mirror(mirror) if cmd.kind == IoKind::Write => {
                plan.serialized = true;
                // No writable side is a full list (`Ok(false)`); a side that cannot be laid out
                // ends the plan, which then faults.
                let mut pushed = Ok(false);
                for (side, s) in mirror.sides().iter().enumerate() {
                    if !s.state.writable() {
                        continue;
                    }
                    let layout = &s.layout;
                    pushed = layout_legs(
                        |b| layout.locate(b),
                        block,
                        piece,
                        data_offset,
                        block_size,
                        side as u8,
                        config,
                        legs,
                    );
                    if pushed != Ok(true) {
                        break;
                    }
                }
                pushed
            }
            StorageDescriptor::Mirror(mirror) => {
                let Some(side) = mirror.pick_read_side(found.read_cursors.get(seg.id, redirect)) else {
                    return Resolution::Fault(Permission);
                };
                read_side = Some(side);
                let layout = &mirror.sides()[side].layout;
                layout_legs(
                    |b| layout.locate(b),
                    block,
                    piece,
                    data_offset,
                    block_size,
                    side as u8,
                    config,
                    legs,
                )
            }
            StorageDescriptor::Journaled(journaled) => {
                if cmd.kind == IoKind::Write {
                    plan.serialized = true;
                    match journal_group {
                        Some(group) if group != journaled.group => return Resolution::Fault(Capacity),
                        _ => journal_group = Some(journaled.group),
                    }
                }
                let primary = &journaled.primary;
                layout_legs(|b| primary.locate(b), block, piece, data_offset, block_size, 0, config, legs)
            }
        };
        let ok = match pushed {
            Ok(ok) => ok,
            Err(cause) => return Resolution::Fault(cause),
        };
        if let Some(side) = read_side {
            cache.set_read_cursor(seg.id, redirect, side);
        }
        // Step 116: capacity, devices per I/O.
        if !ok || plan.legs.len() > config.max_legs {
            return Resolution::Fault(Capacity);
        }
        block += piece;
    }
    // Every device needs a path.
    for leg in plan.legs.as_slice() {
        match cache.device(leg.device) {
            None => return Resolution::Miss,
            Some(path) if path.block_size != block_size => return Resolution::Fault(Capacity),
            Some(_) => {}
        }
    }
    // Steps 118 and 120: serialization of mirror and journal writes.
    if plan.serialized && overlaps(seg.id, seg_block, seg_end) {
        return Resolution::Fault(SerializationConflict);
    }
    // Step 122: journal space; reserved now, since dispatch follows.
    if let Some(group) = journal_group {
        let Some(journal) = cache.journal_mut(group) else { return Resolution::Fault(JournalFull) };
        let need = 1 + u64::from(cmd.blocks);
        if journal.next + need > journal.region.blocks {
            return Resolution::Fault(JournalFull);
        }
        let position = journal.next;
        journal.next += need;
        let region = journal.region;
        let at = Location { device: region.placement.device, lba: region.placement.lba + position };
        let journal_leg = Leg { header_bytes: block_size, ..leg(at, cmd.blocks as u64, 0, 0) };
        plan.journal = Some(JournalAppend { group, region, position });
        if !plan.legs.push(journal_leg) || plan.legs.len() > config.max_legs {
            // Give the space back: the I/O goes to the control path instead.
            if let Some(journal) = cache.journal_mut(group) {
                journal.next = position;
            }
            return Resolution::Fault(Capacity);
        }
        if cache.device(region.placement.device).is_none() {
            if let Some(journal) = cache.journal_mut(group) {
                journal.next = position;
            }
            return Resolution::Miss;
        }
    }
    Resolution::Dispatch
}

fn leg(at: Location, blocks: u64, data_offset: u32, side: u8) -> Leg {
    Leg { device: at.device, lba: at.lba, blocks: blocks as u32, data_offset, header_bytes: 0, side }
}

/// Legs for `piece` blocks from segment block `block` on one layout, given its `locate`: one
/// for a placement, one per stripe unit crossed for a stripe set (the stripe primitive;
/// crossing a unit is split or faulted as configured). Returns false when the leg list is full.
/// Inlined into each primitive's arm: as a call (a mirror's side, a stripe set) it cost every
/// shape 5 to 41 instructions per I/O, and plain `#[inline]` was not taken.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn layout_legs(
    locate: impl Fn(u64) -> (Location, u64),
    block: u64,
    piece: u64,
    data_offset: u32,
    block_size: u32,
    side: u8,
    config: &WorkerConfig,
    legs: &mut LegList,
) -> Result<bool, FaultCause> {
    let mut done = 0u64;
    while done < piece {
        let (at, run) = locate(block + done);
        let n = run.min(piece - done);
        if n < piece - done && done == 0 && !config.split_stripe_units {
            return Err(FaultCause::Capacity);
        }
        let offset = data_offset + (done * u64::from(block_size)) as u32;
        if !legs.push(leg(at, n, offset, side)) {
            return Ok(false);
        }
        done += n;
    }
    Ok(true)
}
