//! The shared metadata store as the coherency protocol sees it: jlist (under jlock), elist
//! (under elock), per-engine oplock journals with their holders, and non-volatile ownership
//! records. [`SharedStore`] is the abstraction; [`MemoryStore`] the deterministic in-memory one.
//! Every call is atomic, which is what taking jlock or elock around it means.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::address::{EngineId, OplockAddress};
use crate::journal::{OplockJournal, RecoveredOplock, recovery_set};

/// An entry of the eviction list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EvictionRecord {
    /// Who cleans up (moves to the evictor of the caretaker in a cascade).
    pub caretaker: EngineId,
    /// Global sequence number of the eviction, so a booting engine can tell a new eviction of
    /// itself from the one it is recovering from.
    pub seq: u64,
    /// Cleanup finished: the victim may boot and rejoin.
    pub done: bool,
}

/// What an eviction attempt achieved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvictOutcome {
    /// The caller evicted the victim and is now caretaker of everything listed.
    Evicted(Inheritance),
    /// Somebody already evicted the victim (evictions of one engine are serialized); retry
    /// the broadcast from the start.
    AlreadyEvicted(EvictionRecord),
}

/// What an evictor inherits, including the cascade of the victim's own unfinished cleanups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inheritance {
    /// The evicted engine.
    pub victim: EngineId,
    /// Engines the victim was still caretaker for (cascading eviction).
    pub cascaded: Vec<EngineId>,
    /// Journals now held by the caller (read-only until released).
    pub journals: Vec<EngineId>,
    /// Oplocks the caller defends until cleanup completes.
    pub oplocks: Vec<RecoveredOplock>,
}

/// The part of the shared metadata store the coherency protocol uses.
pub trait SharedStore {
    /// The jlist: every member with its incarnation.
    fn members(&self) -> BTreeMap<EngineId, u64>;
    /// Under jlock: add the engine to the jlist with a new incarnation, drop its (finished)
    /// eviction record, and return the incarnation.
    fn join_cluster(&mut self, engine: EngineId) -> u64;
    /// The elist entry of an engine.
    fn eviction_of(&self, engine: EngineId) -> Option<EvictionRecord>;
    /// Every elist entry (victim → record).
    fn eviction_list(&self) -> BTreeMap<EngineId, EvictionRecord>;
    /// Caretakers with a cleanup still running: every share and acquire asks them too, so
    /// nobody reads metadata an evicted engine's journal has not yet replayed.
    fn pending_caretakers(&self) -> BTreeSet<EngineId>;
    /// Under elock: evict `victim`, making `evictor` caretaker of its journals, non-volatile
    /// oplocks and unfinished cleanups. Serialized: the second evictor learns who the first is.
    fn evict(&mut self, evictor: EngineId, victim: EngineId) -> EvictOutcome;
    /// Cleanup of `victims` by `caretaker` is complete: release the listed inherited oplocks,
    /// clear and release the victims' journals, and mark their eviction records done.
    fn finish_cleanup(&mut self, caretaker: EngineId, victims: &[EngineId], oplocks: &[OplockAddress]);
    /// The oplock is being recovered (inherited by a caretaker, or replayed by a booting
    /// engine): nobody may acquire it until that cleanup finishes.
    fn is_recovering(&self, oplock: OplockAddress) -> bool;
    /// Mark oplocks as being recovered (boot replay); `finish_cleanup` unmarks them.
    fn mark_recovering(&mut self, engine: EngineId, oplocks: &[OplockAddress]);
    /// Who holds an engine's journal (its owner, a caretaker, or nobody).
    fn journal_holder(&self, journal: EngineId) -> Option<EngineId>;
    /// Set or clear the holder of a journal.
    fn set_journal_holder(&mut self, journal: EngineId, holder: Option<EngineId>);
    /// The journals an engine holds.
    fn journals_held_by(&self, holder: EngineId) -> Vec<EngineId>;
    /// A copy of an engine's journal.
    fn journal(&self, journal: EngineId) -> OplockJournal;
    /// Replace an engine's journal (JOURNAL ACQUIRE, RELEASE, dirty records).
    fn update_journal(&mut self, journal: EngineId, update: &mut dyn FnMut(&mut OplockJournal));
    /// Non-volatile ownership record (the on-media "host").
    fn owner(&self, oplock: OplockAddress) -> Option<EngineId>;
    /// Write the ownership record.
    fn set_owner(&mut self, oplock: OplockAddress, owner: Option<EngineId>);
    /// Non-volatile oplocks an engine owns.
    fn owned_by(&self, engine: EngineId) -> Vec<OplockAddress>;
}

/// The whole store as plain data: deterministic, cloneable and hashable, so the checker can
/// snapshot it with the engines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemoryStore {
    jlist: BTreeMap<EngineId, u64>,
    incarnations: BTreeMap<EngineId, u64>,
    elist: BTreeMap<EngineId, EvictionRecord>,
    eviction_seq: u64,
    journals: BTreeMap<EngineId, OplockJournal>,
    holders: BTreeMap<EngineId, EngineId>,
    owners: BTreeMap<OplockAddress, EngineId>,
    /// Oplock → the engine recovering it.
    recovering: BTreeMap<OplockAddress, EngineId>,
}

impl MemoryStore {
    /// An empty store: no members, no journals.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every elist entry (for checkers and diagnostics).
    pub fn elist(&self) -> &BTreeMap<EngineId, EvictionRecord> {
        &self.elist
    }

    /// Oplocks under recovery (for checkers and diagnostics).
    pub fn recovering(&self) -> &BTreeMap<OplockAddress, EngineId> {
        &self.recovering
    }

    /// Every ownership record (for checkers and diagnostics).
    pub fn owners(&self) -> &BTreeMap<OplockAddress, EngineId> {
        &self.owners
    }
}

impl SharedStore for MemoryStore {
    fn members(&self) -> BTreeMap<EngineId, u64> {
        self.jlist.clone()
    }

    fn join_cluster(&mut self, engine: EngineId) -> u64 {
        let incarnation = self.incarnations.entry(engine).or_insert(0);
        *incarnation += 1;
        let incarnation = *incarnation;
        self.jlist.insert(engine, incarnation);
        self.elist.remove(&engine);
        incarnation
    }

    fn eviction_of(&self, engine: EngineId) -> Option<EvictionRecord> {
        self.elist.get(&engine).copied()
    }

    fn eviction_list(&self) -> BTreeMap<EngineId, EvictionRecord> {
        self.elist.clone()
    }

    fn pending_caretakers(&self) -> BTreeSet<EngineId> {
        self.elist.values().filter(|r| !r.done).map(|r| r.caretaker).collect()
    }

    fn evict(&mut self, evictor: EngineId, victim: EngineId) -> EvictOutcome {
        // Serialized: a pending eviction belongs to its caretaker. A finished one is repeated
        // only if the victim has picked up journals or locks since (it died while booting).
        if let Some(record) = self.elist.get(&victim)
            && (!record.done
                || (self.journals_held_by(victim).is_empty() && self.owned_by(victim).is_empty()))
        {
            return EvictOutcome::AlreadyEvicted(*record);
        }
        self.jlist.remove(&victim);
        self.eviction_seq += 1;
        self.elist.insert(victim, EvictionRecord { caretaker: evictor, seq: self.eviction_seq, done: false });
        // Cascade: whatever the victim was still cleaning up moves to the evictor.
        let mut cascaded = Vec::new();
        for (engine, record) in &mut self.elist {
            if *engine != victim && record.caretaker == victim && !record.done {
                record.caretaker = evictor;
                cascaded.push(*engine);
            }
        }
        let mut journals: BTreeSet<EngineId> = self
            .holders
            .iter()
            .filter(|(_, holder)| **holder == victim)
            .map(|(journal, _)| *journal)
            .collect();
        journals.insert(victim);
        journals.extend(cascaded.iter().copied());
        for journal in &journals {
            self.holders.insert(*journal, evictor);
        }
        let mut owned = Vec::new();
        for (oplock, owner) in &mut self.owners {
            if *owner == victim {
                *owner = evictor;
                owned.push(*oplock);
            }
        }
        let contents: Vec<(EngineId, OplockJournal)> =
            journals.iter().map(|j| (*j, self.journals.get(j).cloned().unwrap_or_default())).collect();
        let mut oplocks = recovery_set(&owned, victim, &contents);
        // Cascade: what the victim was itself recovering is recovered by the evictor now.
        for (oplock, by) in &mut self.recovering {
            if *by == victim {
                *by = evictor;
                if !oplocks.iter().any(|o| o.oplock == *oplock) {
                    oplocks.push(RecoveredOplock::new(*oplock));
                }
            }
        }
        oplocks.sort();
        for o in &oplocks {
            self.recovering.insert(o.oplock, evictor);
        }
        EvictOutcome::Evicted(Inheritance {
            victim,
            cascaded,
            journals: journals.into_iter().collect(),
            oplocks,
        })
    }

    fn finish_cleanup(&mut self, caretaker: EngineId, victims: &[EngineId], oplocks: &[OplockAddress]) {
        for oplock in oplocks {
            if self.owners.get(oplock) == Some(&caretaker) {
                self.owners.remove(oplock);
            }
            if self.recovering.get(oplock) == Some(&caretaker) {
                self.recovering.remove(oplock);
            }
        }
        for victim in victims {
            if let Some(record) = self.elist.get_mut(victim)
                && record.caretaker == caretaker
            {
                record.done = true;
            }
        }
        let held: Vec<EngineId> = self.journals_held_by(caretaker);
        for journal in held {
            if journal != caretaker && (victims.contains(&journal) || self.is_done(journal)) {
                if let Some(content) = self.journals.get_mut(&journal) {
                    content.clear();
                }
                self.holders.remove(&journal);
            }
        }
    }

    fn is_recovering(&self, oplock: OplockAddress) -> bool {
        self.recovering.contains_key(&oplock)
    }

    fn mark_recovering(&mut self, engine: EngineId, oplocks: &[OplockAddress]) {
        self.recovering.extend(oplocks.iter().map(|o| (*o, engine)));
    }

    fn journal_holder(&self, journal: EngineId) -> Option<EngineId> {
        self.holders.get(&journal).copied()
    }

    fn set_journal_holder(&mut self, journal: EngineId, holder: Option<EngineId>) {
        match holder {
            Some(holder) => self.holders.insert(journal, holder),
            None => self.holders.remove(&journal),
        };
    }

    fn journals_held_by(&self, holder: EngineId) -> Vec<EngineId> {
        self.holders.iter().filter(|(_, h)| **h == holder).map(|(journal, _)| *journal).collect()
    }

    fn journal(&self, journal: EngineId) -> OplockJournal {
        self.journals.get(&journal).cloned().unwrap_or_default()
    }

    fn update_journal(&mut self, journal: EngineId, update: &mut dyn FnMut(&mut OplockJournal)) {
        update(self.journals.entry(journal).or_default());
    }

    fn owner(&self, oplock: OplockAddress) -> Option<EngineId> {
        self.owners.get(&oplock).copied()
    }

    fn set_owner(&mut self, oplock: OplockAddress, owner: Option<EngineId>) {
        match owner {
            Some(owner) => self.owners.insert(oplock, owner),
            None => self.owners.remove(&oplock),
        };
    }

    fn owned_by(&self, engine: EngineId) -> Vec<OplockAddress> {
        self.owners.iter().filter(|(_, owner)| **owner == engine).map(|(oplock, _)| *oplock).collect()
    }
}

impl MemoryStore {
    fn is_done(&self, engine: EngineId) -> bool {
        self.elist.get(&engine).is_some_and(|r| r.done)
    }
}

/// A [`MemoryStore`] shared between threads (several engines in one process, e.g. the gRPC
/// test). Each call holds the mutex for its duration, so calls stay atomic.
#[derive(Clone, Debug, Default)]
pub struct SharedMemoryStore {
    inner: Arc<Mutex<MemoryStore>>,
}

impl SharedMemoryStore {
    /// A new empty shared store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lock the store (poisoning is ignored: the store is plain data, always consistent
    /// between calls).
    pub fn lock(&self) -> MutexGuard<'_, MemoryStore> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SharedStore for SharedMemoryStore {
    fn members(&self) -> BTreeMap<EngineId, u64> {
        self.lock().members()
    }
    fn join_cluster(&mut self, engine: EngineId) -> u64 {
        self.lock().join_cluster(engine)
    }
    fn eviction_of(&self, engine: EngineId) -> Option<EvictionRecord> {
        self.lock().eviction_of(engine)
    }
    fn eviction_list(&self) -> BTreeMap<EngineId, EvictionRecord> {
        self.lock().eviction_list()
    }
    fn pending_caretakers(&self) -> BTreeSet<EngineId> {
        self.lock().pending_caretakers()
    }
    fn evict(&mut self, evictor: EngineId, victim: EngineId) -> EvictOutcome {
        self.lock().evict(evictor, victim)
    }
    fn finish_cleanup(&mut self, caretaker: EngineId, victims: &[EngineId], oplocks: &[OplockAddress]) {
        self.lock().finish_cleanup(caretaker, victims, oplocks);
    }
    fn is_recovering(&self, oplock: OplockAddress) -> bool {
        self.lock().is_recovering(oplock)
    }
    fn mark_recovering(&mut self, engine: EngineId, oplocks: &[OplockAddress]) {
        self.lock().mark_recovering(engine, oplocks);
    }
    fn journal_holder(&self, journal: EngineId) -> Option<EngineId> {
        self.lock().journal_holder(journal)
    }
    fn set_journal_holder(&mut self, journal: EngineId, holder: Option<EngineId>) {
        self.lock().set_journal_holder(journal, holder);
    }
    fn journals_held_by(&self, holder: EngineId) -> Vec<EngineId> {
        self.lock().journals_held_by(holder)
    }
    fn journal(&self, journal: EngineId) -> OplockJournal {
        self.lock().journal(journal)
    }
    fn update_journal(&mut self, journal: EngineId, update: &mut dyn FnMut(&mut OplockJournal)) {
        self.lock().update_journal(journal, update);
    }
    fn owner(&self, oplock: OplockAddress) -> Option<EngineId> {
        self.lock().owner(oplock)
    }
    fn set_owner(&mut self, oplock: OplockAddress, owner: Option<EngineId>) {
        self.lock().set_owner(oplock, owner);
    }
    fn owned_by(&self, engine: EngineId) -> Vec<OplockAddress> {
        self.lock().owned_by(engine)
    }
}
