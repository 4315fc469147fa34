//! Journals of journaled volumes. The journal device is cut into equal slots; every writer
//! (each worker, and the control path for the writes it runs itself) appends into one open
//! slot at a time. A full slot is closed and its writer opens a free one; closed slots wait
//! for replication's copy agent, or are free again at once when nothing ships them. A journal
//! whose device fails a write is out of service until the device answers again: the volume's
//! writes go to the primary alone and a replication starts over with a whole copy.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use dve_fp_api::ids::{DeviceId, JournalGroupId, LvId, WorkerId};
use dve_fp_api::io::HostIo;
use dve_fp_api::journal::JournalEntryHeader;
use dve_fp_api::mapping::{JournalRegion, Placement};
use dve_fp_api::message::{MappingEntry, MappingKey, ToFp};

use super::{ControlEvent, ControlPath, RequestPurpose};
use crate::volume::{DeviceLeg, LayoutSpec};

/// Slots per writer: one open, one to swap in while the closed one waits to be shipped.
const SLOTS_PER_WRITER: u64 = 2;

/// How long a journal whose device still answers (it failed writes with an error) stays out
/// of service before it is tried again. A device that stopped answering is tried as soon
/// as it is back.
const JOURNAL_RETRY_NS: u64 = 1_000_000_000;

/// Journal sequences are the engine's boot number above this many bits and a count of the
/// slots opened in the boot below them. A slot's entries are told from those left in it by
/// an earlier use only by their sequence, and a restarted engine finds the journal devices
/// as the last boot left them: so no two boots may hand out the same sequence.
const SEQUENCE_COUNT_BITS: u32 = 40;

/// The sequence before the first of boot `boot` (the first slot opened gets the next one).
pub(super) fn first_sequence(boot: u64) -> u64 {
    // 2^24 boots and 2^40 slots opened in one boot before a sequence repeats.
    boot << SEQUENCE_COUNT_BITS
}

/// A writer's open slot.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct OpenSlot {
    slot: usize,
    sequence: u64,
    /// Next free block (only tracked for the control path's own slot; workers keep theirs).
    next: u64,
    /// When it was opened: a worker's fault raised before then is not a reason to swap.
    opened_at: u64,
}

/// A slot closed with what it holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct ClosedSlot {
    /// The slot.
    pub slot: usize,
    /// Who wrote it.
    pub writer: WorkerId,
    /// Its entries carry this sequence; anything else in it is left from an earlier use.
    pub sequence: u64,
    /// The replication cycle its entries belong to.
    pub cycle: u64,
}

/// The journal of one journaled volume.
#[derive(Clone, Debug)]
pub(super) struct VolumeJournal {
    device: DeviceId,
    lba: u64,
    slot_blocks: u64,
    free: VecDeque<usize>,
    open: BTreeMap<WorkerId, OpenSlot>,
    closed: Vec<ClosedSlot>,
    /// The cycle entries appended now belong to (advanced at every consistency point).
    cycle: u64,
    /// Closed slots are kept until shipped (the volume is replicated).
    keep_closed: bool,
    /// Out of service since this instant: a write to the journal device failed.
    failed_at: Option<u64>,
}

impl VolumeJournal {
    /// Blocks per slot.
    pub(super) fn slot_blocks(&self) -> u64 {
        self.slot_blocks
    }

    /// The device placement of slot `slot`.
    pub(super) fn slot_placement(&self, slot: usize) -> Placement {
        Placement { device: self.device, lba: self.lba + slot as u64 * self.slot_blocks }
    }

    /// The current cycle.
    pub(super) fn cycle(&self) -> u64 {
        self.cycle
    }

    /// Closed slots, oldest first.
    pub(super) fn closed(&self) -> &[ClosedSlot] {
        &self.closed
    }

    /// Whether the journal is out of service.
    pub(super) fn failed(&self) -> bool {
        self.failed_at.is_some()
    }
}

/// What the control path's own journal does with a write it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ControlAppend {
    /// The volume is not journaled.
    NotJournaled,
    /// Entries to write, each a device leg and its bytes (header block, then data).
    Entries(Vec<(DeviceLeg, Bytes)>),
    /// No slot has room: the write waits until the copy agent frees one.
    NoSpace,
}

impl ControlPath {
    /// Cut a journaled volume's journal device into slots and open one for every writer.
    pub(super) fn journal_regions(&mut self, lv: LvId) {
        let Some(volume) = self.volumes.get(&lv) else { return };
        let LayoutSpec::Journal { .. } = volume.record.layout else { return };
        let Some(alloc) = volume.record.allocations.get(1).copied() else { return };
        let writers = self.journal_writers();
        let slots = (writers.len() as u64 * SLOTS_PER_WRITER).max(1);
        let journal = VolumeJournal {
            device: alloc.device,
            lba: alloc.lba,
            slot_blocks: alloc.blocks / slots,
            free: (0..slots as usize).collect(),
            open: BTreeMap::new(),
            closed: Vec::new(),
            cycle: 0,
            keep_closed: false,
            failed_at: None,
        };
        self.journals.insert(lv, journal);
        for writer in writers {
            self.open_slot(lv, writer);
        }
    }

    /// Journaled volume `lv` was deleted: its journal's slots are forgotten (their blocks go
    /// with the volume's claims) and every worker drops the region it appended to.
    pub(super) fn journal_deleted(&mut self, lv: LvId) {
        let Some(journal) = self.journals.remove(&lv) else { return };
        let control = self.control_worker();
        for writer in journal.open.keys().copied().filter(|w| *w != control) {
            let key = MappingKey::Journal { group: JournalGroupId(lv.0), worker: writer };
            let req = self.request(RequestPurpose::Grant);
            self.send(writer, ToFp::RemoveMapping { req, key });
        }
    }

    /// Every worker, then the control path.
    fn journal_writers(&self) -> Vec<WorkerId> {
        let mut writers = self.plan.workers();
        writers.push(self.control_worker());
        writers
    }

    /// The worker number the control path's own journal entries carry.
    fn control_worker(&self) -> WorkerId {
        WorkerId((self.config.layout.max_workers() - 1) as u8)
    }

    /// Open a free slot for `writer` (a worker is granted it as its region). Returns
    /// whether there was one (none is opened in a journal out of service).
    pub(super) fn open_slot(&mut self, lv: LvId, writer: WorkerId) -> bool {
        let now = self.now;
        let control = self.control_worker();
        let Some(journal) = self.journals.get_mut(&lv).filter(|j| !j.failed()) else { return false };
        let Some(slot) = journal.free.pop_front() else { return false };
        // One count for every journal: a region freed by a deleted volume and claimed by a
        // new one keeps the old entries, which must not pass for the new volume's.
        self.journal_sequence = self.journal_sequence.wrapping_add(1);
        let sequence = self.journal_sequence;
        journal.open.insert(writer, OpenSlot { slot, sequence, next: 0, opened_at: now });
        if writer != control {
            let region = JournalRegion {
                group: JournalGroupId(lv.0),
                worker: writer,
                placement: journal.slot_placement(slot),
                blocks: journal.slot_blocks,
                sequence,
            };
            let req = self.request(RequestPurpose::Grant);
            self.send(writer, ToFp::AddMapping { req, entry: MappingEntry::Journal(region) });
        }
        true
    }

    /// Close `writer`'s open slot into the current cycle. A worker left without a slot is
    /// told to stop appending (its journaled writes then come to the control path).
    pub(super) fn close_slot(&mut self, lv: LvId, writer: WorkerId, replaced: bool) {
        let control = self.control_worker();
        let Some(journal) = self.journals.get_mut(&lv) else { return };
        let Some(open) = journal.open.remove(&writer) else { return };
        let closed = ClosedSlot { slot: open.slot, writer, sequence: open.sequence, cycle: journal.cycle };
        if journal.keep_closed {
            journal.closed.push(closed);
        } else {
            journal.free.push_back(open.slot);
        }
        if writer != control && !replaced {
            let key = MappingKey::Journal { group: JournalGroupId(lv.0), worker: writer };
            let req = self.request(RequestPurpose::Grant);
            self.send(writer, ToFp::RemoveMapping { req, key });
        }
    }

    /// Close and replace `writer`'s slot (when there is a free one).
    pub(super) fn swap_slot(&mut self, lv: LvId, writer: WorkerId) {
        let has_free = self.journals.get(&lv).is_some_and(|j| !j.free.is_empty());
        self.close_slot(lv, writer, has_free);
        if has_free {
            self.open_slot(lv, writer);
        }
    }

    /// A worker's journal of the volume `request` wrote to is full: swap in an empty slot.
    /// A fault raised before the worker's slot was last opened is no reason to swap again,
    /// nor is a write larger than any slot (the control path journals it in pieces).
    pub(super) fn swap_journal(&mut self, worker: WorkerId, request: &HostIo) {
        let Some(lv) = request.lv else { return };
        let Some(journal) = self.journals.get(&lv) else { return };
        if u64::from(request.blocks) + 1 > journal.slot_blocks {
            return;
        }
        if let Some(open) = journal.open.get(&worker)
            && request.received.0 < open.opened_at
        {
            return;
        }
        if journal.open.contains_key(&worker) {
            self.swap_slot(lv, worker);
        } else {
            self.open_slot(lv, worker);
        }
    }

    /// Free `slot` (shipped): writers without a slot get it first.
    pub(super) fn slot_shipped(&mut self, lv: LvId, slot: usize) {
        let writers = self.journal_writers();
        let Some(journal) = self.journals.get_mut(&lv) else { return };
        journal.closed.retain(|c| c.slot != slot);
        journal.free.push_back(slot);
        let waiting: Vec<WorkerId> = writers.into_iter().filter(|w| !journal.open.contains_key(w)).collect();
        for writer in waiting {
            if !self.open_slot(lv, writer) {
                break;
            }
        }
        self.retry_journal_waiters(lv);
    }

    /// Whether some writer of `lv` has no slot and none is free.
    pub(super) fn journal_starved(&self, lv: LvId) -> bool {
        let Some(journal) = self.journals.get(&lv) else { return false };
        journal.free.is_empty() && self.journal_writers().iter().any(|w| !journal.open.contains_key(w))
    }

    /// Keep closed slots for the copy agent from now on (replication starts).
    pub(super) fn keep_closed_slots(&mut self, lv: LvId) {
        if let Some(journal) = self.journals.get_mut(&lv) {
            journal.keep_closed = true;
        }
    }

    /// Free closed slots as they close from now on, and those closed until now (replication
    /// stopped): writers waiting for space get them.
    pub(super) fn stop_keeping_closed_slots(&mut self, lv: LvId) {
        let Some(journal) = self.journals.get_mut(&lv) else { return };
        journal.keep_closed = false;
        let closed: Vec<usize> = journal.closed.iter().map(|c| c.slot).collect();
        for slot in closed {
            self.slot_shipped(lv, slot);
        }
    }

    /// A consistency point: close every writer's slot into the current cycle, advance the
    /// cycle and open new slots where there are free ones. Returns the cycle closed.
    pub(super) fn journal_cut(&mut self, lv: LvId) -> Option<u64> {
        let cycle = self.journals.get(&lv)?.cycle;
        for writer in self.journal_writers() {
            self.swap_slot(lv, writer);
        }
        if let Some(journal) = self.journals.get_mut(&lv) {
            journal.cycle += 1;
        }
        Some(cycle)
    }

    /// Whether `device` holds the journal of `lv` and not its primary (a device holding both
    /// fails the volume, not only its journal).
    pub(super) fn journal_device_of(&self, lv: LvId, device: DeviceId) -> bool {
        let Some(volume) = self.volumes.get(&lv) else { return false };
        let primary = volume.record.allocations.first().map(|a| a.device);
        self.journals.get(&lv).is_some_and(|j| j.device == device) && primary != Some(device)
    }

    /// A write to the journal of `lv` failed: the journal goes out of service. Every
    /// writer's region is taken back (the fast path's journaled writes then come to the
    /// control path, which writes the primary alone), the slots' contents are given up and
    /// a replication of the volume starts over with a whole copy once the journal is back:
    /// the writes it missed are known only to the primary. Failing again changes nothing.
    pub(super) fn journal_failed(&mut self, lv: LvId) {
        let now = self.now;
        let control = self.control_worker();
        // A slot the copy agent is reading stays closed until that read ends (it frees it).
        let reading = self.replication_reading_slot(lv);
        let Some(journal) = self.journals.get_mut(&lv).filter(|j| !j.failed()) else { return };
        journal.failed_at = Some(now);
        let writers: Vec<WorkerId> = std::mem::take(&mut journal.open).into_keys().collect();
        let slots = journal.free.len() + writers.len() + journal.closed.len();
        journal.closed.retain(|c| Some(c.slot) == reading);
        journal.free = (0..slots).filter(|s| Some(*s) != reading).collect();
        for writer in writers.into_iter().filter(|w| *w != control) {
            let key = MappingKey::Journal { group: JournalGroupId(lv.0), worker: writer };
            let req = self.request(RequestPurpose::Grant);
            self.send(writer, ToFp::RemoveMapping { req, key });
        }
        self.replication_journal_lost(lv);
        self.events.push(ControlEvent::JournalFailed { lv });
    }

    /// Put failed journals back in service where their device may take writes again: at
    /// once when `returned` is their device (it answers again), otherwise a while after
    /// they failed while the device kept answering. A journal that fails again goes out of
    /// service again.
    pub(super) fn retry_failed_journals(&mut self, returned: Option<DeviceId>) {
        let now = self.now;
        let due: Vec<LvId> = self
            .journals
            .iter()
            .filter(|(_, j)| {
                j.failed_at.is_some_and(|at| Some(j.device) == returned || now >= at + JOURNAL_RETRY_NS)
                    && self.devices.get(j.device).is_some_and(|d| d.online)
            })
            .map(|(lv, _)| *lv)
            .collect();
        for lv in due {
            if let Some(journal) = self.journals.get_mut(&lv) {
                journal.failed_at = None;
            }
            for writer in self.journal_writers() {
                self.open_slot(lv, writer);
            }
            self.replication_journal_back(lv);
            self.events.push(ControlEvent::JournalRestored { lv });
        }
    }

    /// The journal legs of a write the control path runs on `lv`: entries in its own slot
    /// (header block, then data), in pieces when the write is larger than a slot. Stamped
    /// with the time of the append, which orders it after every write that completed before.
    pub(super) fn journal_append(&mut self, lv: LvId, lba: u64, blocks: u64, data: &Bytes) -> ControlAppend {
        let Some(volume) = self.volumes.get(&lv) else { return ControlAppend::NotJournaled };
        if !matches!(volume.record.layout, LayoutSpec::Journal { .. }) {
            return ControlAppend::NotJournaled;
        }
        let block_size = volume.record.block_size;
        let Some(vseg) = volume.pieces(lba, blocks).first().map(|p| p.0) else {
            return ControlAppend::NotJournaled;
        };
        let writer = self.control_worker();
        let timestamp = self.now;
        // Out of service, the journal takes nothing: the write goes to the primary alone.
        let Some(saved) = self.journals.get(&lv).filter(|j| !j.failed()).cloned() else {
            return ControlAppend::NotJournaled;
        };
        let piece_blocks = saved.slot_blocks.saturating_sub(1);
        if piece_blocks == 0 {
            return ControlAppend::NotJournaled;
        }
        let bs = block_size as usize;
        let mut entries = Vec::new();
        let mut done = 0;
        while done < blocks {
            let n = piece_blocks.min(blocks - done);
            let room = self
                .journals
                .get(&lv)
                .and_then(|j| j.open.get(&writer).map(|o| j.slot_blocks - o.next))
                .unwrap_or(0);
            if room < 1 + n {
                let has_free = self.journals.get(&lv).is_some_and(|j| !j.free.is_empty());
                if !has_free {
                    // Nothing appended: the write waits whole.
                    self.journals.insert(lv, saved);
                    return ControlAppend::NoSpace;
                }
                self.swap_slot(lv, writer);
            }
            let Some(journal) = self.journals.get_mut(&lv) else { return ControlAppend::NoSpace };
            let Some(open) = journal.open.get_mut(&writer) else { return ControlAppend::NoSpace };
            let position = open.next;
            open.next += 1 + n;
            let (slot, sequence) = (open.slot, open.sequence);
            let header = JournalEntryHeader {
                journal_sequence: sequence,
                position,
                worker: writer,
                lv,
                vseg,
                lba: lba + done,
                blocks: n as u32,
                block_size,
                timestamp,
            };
            let placement = journal.slot_placement(slot);
            let mut entry = vec![0u8; bs];
            if header.encode(&mut entry).is_err() {
                self.journals.insert(lv, saved);
                return ControlAppend::NotJournaled;
            }
            let from = (done as usize * bs).min(data.len());
            let to = ((done + n) as usize * bs).min(data.len());
            entry.extend_from_slice(&data[from..to]);
            entry.resize(bs * (1 + n as usize), 0);
            let leg = DeviceLeg {
                device: placement.device,
                lba: placement.lba + position,
                blocks: 1 + n,
                offset: 0,
                side: None,
            };
            entries.push((leg, Bytes::from(entry)));
            done += n;
        }
        ControlAppend::Entries(entries)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::control_path::ControlPathConfig;
    use crate::control_path::persist::discovered_devices;
    use crate::store::{MemoryStore, MetadataStore, RedbStore, Table};

    /// Every sequence `cp` opens for the journal of `lv` while each writer swaps its slot
    /// three times round the journal.
    fn sequences_of_a_boot(cp: &mut ControlPath, lv: LvId) -> BTreeSet<u64> {
        let mut seen: BTreeSet<u64> = cp.journals[&lv].open.values().map(|o| o.sequence).collect();
        let slots = cp.journals[&lv].free.len() + cp.journals[&lv].open.len();
        for _ in 0..3 * slots {
            for writer in cp.journal_writers() {
                cp.swap_slot(lv, writer);
                seen.insert(cp.journals[&lv].open[&writer].sequence);
            }
        }
        seen
    }

    fn booted(store: Box<dyn MetadataStore>) -> ControlPath {
        let mut cp = ControlPath::new(ControlPathConfig::new(1, 2, 2));
        cp.attach_store(store).unwrap();
        cp
    }

    #[test]
    fn no_two_boots_hand_out_the_same_journal_sequence() {
        let mut store = MemoryStore::new();
        store.commit(discovered_devices(3, 100_000)).unwrap();
        let mut cp = booted(Box::new(store));
        let layout = LayoutSpec::Journal { primary: DeviceId(1), journal: DeviceId(2), journal_blocks: 768 };
        let lv = cp.create_volume("j", 4096, layout).unwrap();
        let first = sequences_of_a_boot(&mut cp, lv);
        // The second boot reloads the volume and cuts its journal into the same slots, in the
        // same order: only the sequences can tell its entries from the first boot's.
        let mut cp = booted(cp.take_store().unwrap());
        let second = sequences_of_a_boot(&mut cp, lv);
        assert!(first.len() > 10, "{first:?}");
        assert!(first.last() < second.first(), "{first:?} then {second:?}");
        // A second journaled volume does not reuse the first's sequences either.
        let other = LayoutSpec::Journal { primary: DeviceId(1), journal: DeviceId(3), journal_blocks: 768 };
        let lv2 = cp.create_volume("k", 4096, other).unwrap();
        let third = sequences_of_a_boot(&mut cp, lv2);
        assert!(second.last() < third.first(), "{second:?} then {third:?}");
    }

    #[test]
    fn a_failed_journal_takes_no_writes_until_its_device_may_take_them_again() {
        let mut store = MemoryStore::new();
        store.commit(discovered_devices(3, 100_000)).unwrap();
        let mut cp = booted(Box::new(store));
        let layout = LayoutSpec::Journal { primary: DeviceId(1), journal: DeviceId(2), journal_blocks: 768 };
        let lv = cp.create_volume("j", 4096, layout).unwrap();
        cp.start_replication(lv, DeviceId(3), 1_000_000).unwrap();
        assert!(cp.journal_device_of(lv, DeviceId(2)) && !cp.journal_device_of(lv, DeviceId(1)));
        let data = Bytes::from(vec![7u8; 8 * 512]);
        assert!(matches!(cp.journal_append(lv, 0, 8, &data), ControlAppend::Entries(_)));
        let slots = |cp: &ControlPath| {
            let j = &cp.journals[&lv];
            (j.free.len(), j.open.len(), j.closed.len())
        };
        let (free, open, closed) = slots(&cp);
        let all = free + open + closed;
        let before: BTreeSet<u64> = cp.journals[&lv].open.values().map(|o| o.sequence).collect();
        cp.out.clear();
        cp.events.clear();

        cp.now = 5_000;
        cp.journal_failed(lv);
        cp.journal_failed(lv);
        let failed = cp.events.iter().filter(|e| matches!(e, ControlEvent::JournalFailed { .. })).count();
        assert_eq!(failed, 1, "failing twice is one failure: {:?}", cp.events);
        // Every worker's region is taken back; every slot is free; nothing is appended.
        let removed = cp.out.iter().filter(|(_, m)| matches!(m, ToFp::RemoveMapping { .. })).count();
        assert_eq!(removed, cp.plan.workers().len());
        assert_eq!(slots(&cp), (all, 0, 0));
        assert_eq!(cp.journal_append(lv, 0, 8, &data), ControlAppend::NotJournaled);
        assert!(!cp.open_slot(lv, WorkerId(0)));
        let p = cp.replications()[0];
        assert!(p.journal_failed && p.baseline_blocks == 0 && p.copy_blocks == 4096, "{p:?}");

        // The device still answers (it failed writes with an error): tried again after a while.
        cp.now = 5_000 + JOURNAL_RETRY_NS - 1;
        cp.retry_failed_journals(None);
        assert!(cp.journals[&lv].failed());
        // One that stopped answering is tried only once it is back, and then at once.
        cp.devices.get_mut(DeviceId(2)).unwrap().online = false;
        cp.now = 5_000 + JOURNAL_RETRY_NS;
        cp.retry_failed_journals(None);
        assert!(cp.journals[&lv].failed());
        cp.devices.get_mut(DeviceId(2)).unwrap().online = true;
        cp.now += 1;
        cp.retry_failed_journals(Some(DeviceId(2)));
        assert!(!cp.journals[&lv].failed());
        assert!(cp.events.iter().any(|e| matches!(e, ControlEvent::JournalRestored { .. })));
        let (free, open, closed) = slots(&cp);
        assert_eq!((free + open + closed, open, closed), (all, cp.journal_writers().len(), 0));
        let after: BTreeSet<u64> = cp.journals[&lv].open.values().map(|o| o.sequence).collect();
        assert!(before.last() < after.first(), "{before:?} then {after:?}");
        assert!(!cp.replications()[0].journal_failed);
        assert!(matches!(cp.journal_append(lv, 0, 8, &data), ControlAppend::Entries(_)));
    }

    #[test]
    fn a_boot_counter_that_does_not_decode_is_refused_and_changes_nothing() {
        let path = std::env::temp_dir().join(format!("dve-journal-boots-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        {
            let mut store = RedbStore::open(&path).unwrap();
            let mut batch = discovered_devices(1, 1000);
            batch.put(Table::Counters, b"boots".to_vec(), vec![1, 2, 3]);
            store.commit(batch).unwrap();
        }
        let mut cp = ControlPath::new(ControlPathConfig::new(1, 2, 2));
        let err = cp.attach_store(Box::new(RedbStore::open(&path).unwrap())).unwrap_err().to_string();
        assert!(err.contains("boot counter") && err.contains("3 bytes"), "{err}");
        assert!(cp.take_store().is_none() && cp.devices().iter().next().is_none());
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.get(Table::Counters, b"boots").unwrap(), Some(vec![1, 2, 3]));
        let _ = std::fs::remove_file(&path);
    }
}
