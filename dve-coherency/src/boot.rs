//! The boot sequence of an engine (seed 003, L1597-1611): wait for whoever holds this engine's
//! journal, evict it when the wait runs out, replay the own and inherited dirty journals,
//! release the others' journals, open the own journal, join the jlist and go online.

use std::collections::BTreeSet;

use crate::address::EngineId;
use crate::engine::Engine;
use crate::event::Event;
use crate::journal::RecoveredOplock;
use crate::membership::Cleanup;
use crate::store::{EvictOutcome, SharedStore};

/// Where the boot sequence is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum BootStage {
    /// Step 1: another engine holds our journal; wait until `deadline`, then evict it.
    WaitJournal { holder: EngineId, deadline: u64 },
    /// Steps 3-4: the control path replays journals.
    Replaying,
}

/// State of a boot in progress.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Boot {
    pub stage: Option<BootStage>,
    /// Sequence number of the eviction of this engine that was on record when the boot began;
    /// a different one means somebody evicted us while booting.
    pub known_eviction: Option<u64>,
    /// Engines whose journals we inherited while booting (step 2).
    pub inherited: BTreeSet<EngineId>,
}

impl Boot {
    pub fn new(store: &dyn SharedStore, me: EngineId) -> Self {
        Boot { stage: None, known_eviction: store.eviction_of(me).map(|r| r.seq), inherited: BTreeSet::new() }
    }

    pub fn deadline(&self) -> Option<u64> {
        match self.stage {
            Some(BootStage::WaitJournal { deadline, .. }) => Some(deadline),
            _ => None,
        }
    }
}

impl Engine {
    /// Run the boot sequence as far as it goes without waiting.
    pub(crate) fn boot_progress(&mut self, now: u64, store: &mut dyn SharedStore) {
        let me = self.config.id;
        loop {
            let Some(boot) = self.boot.as_mut() else {
                return;
            };
            if boot.stage == Some(BootStage::Replaying) {
                return;
            }
            match store.journal_holder(me) {
                Some(holder) if holder != me => {
                    match boot.stage {
                        Some(BootStage::WaitJournal { holder: waited, deadline })
                            if waited == holder && now >= deadline =>
                        {
                            // Step 2: the holder took too long; evict it and inherit its
                            // journals, ours included.
                            match store.evict(me, holder) {
                                EvictOutcome::Evicted(inheritance) => {
                                    boot.inherited.insert(holder);
                                    boot.inherited.extend(inheritance.cascaded);
                                    boot.stage = None;
                                    continue;
                                }
                                EvictOutcome::AlreadyEvicted(_) => {
                                    boot.stage = Some(BootStage::WaitJournal {
                                        holder,
                                        deadline: now + self.config.boot_wait,
                                    });
                                }
                            }
                        }
                        Some(BootStage::WaitJournal { holder: waited, .. }) if waited == holder => {}
                        _ => {
                            boot.stage = Some(BootStage::WaitJournal {
                                holder,
                                deadline: now + self.config.boot_wait,
                            });
                        }
                    }
                    return;
                }
                _ => {
                    store.set_journal_holder(me, Some(me));
                    let journals = store.journals_held_by(me);
                    let oplocks = recovery_set(store, me, &journals);
                    if oplocks.is_empty() {
                        self.finish_boot(now, store, &[], Vec::new());
                    } else {
                        boot.stage = Some(BootStage::Replaying);
                        let mut victims: Vec<EngineId> = boot.inherited.iter().copied().collect();
                        victims.extend(journals.iter().copied().filter(|j| *j != me));
                        victims.sort_unstable();
                        victims.dedup();
                        let addresses: Vec<_> = oplocks.iter().map(|o| o.oplock).collect();
                        store.mark_recovering(me, &addresses);
                        self.caretaking.begin(me, Cleanup { victims, oplocks: addresses });
                        // Own journal first, as the seed orders the replay.
                        let mut ordered = vec![me];
                        ordered.extend(journals.into_iter().filter(|j| *j != me));
                        self.events.push_back(Event::Replay { journals: ordered, oplocks });
                    }
                    return;
                }
            }
        }
    }

    /// Steps 5-7, after the replay (if any).
    pub(crate) fn finish_boot(
        &mut self,
        now: u64,
        store: &mut dyn SharedStore,
        replayed: &[crate::address::OplockAddress],
        waiters: crate::membership::EndedDefences,
    ) {
        let me = self.config.id;
        let Some(boot) = self.boot.take() else {
            return;
        };
        let mut victims: Vec<EngineId> = boot.inherited.into_iter().collect();
        victims.extend(store.journals_held_by(me).into_iter().filter(|j| *j != me));
        let mut owned = store.owned_by(me);
        owned.extend(replayed.iter().copied());
        // Step 5: release the replayed journals of others; clear our own records.
        store.finish_cleanup(me, &victims, &owned);
        store.update_journal(me, &mut |j| j.clear());
        // Step 6: open our own journal for writing.
        store.set_journal_holder(me, Some(me));
        // Step 7: on-line.
        self.incarnation = store.join_cluster(me);
        self.online = true;
        self.membership_deadline = now + self.config.membership_check_interval;
        self.sweep_deadline = now + self.config.sweep_interval;
        self.events.push_back(Event::Online { incarnation: self.incarnation });
        for (oplock, peers) in waiters {
            self.wake_waiters(store, oplock, peers);
        }
        let addresses: Vec<_> = self.oplocks.keys().copied().collect();
        for address in addresses {
            self.with_oplock(now, store, address, |op, cx| op.go_online(cx));
        }
    }
}

/// What a recovering engine must clean up: ownership records naming it, and everything
/// in progress or dirty in the journals it holds.
pub(crate) fn recovery_set(
    store: &dyn SharedStore,
    me: EngineId,
    journals: &[EngineId],
) -> Vec<RecoveredOplock> {
    let contents: Vec<_> = journals.iter().map(|j| (*j, store.journal(*j))).collect();
    crate::journal::recovery_set(&store.owned_by(me), me, &contents)
}
