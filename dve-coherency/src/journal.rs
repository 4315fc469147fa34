//! The per-engine oplock journal (seed 003, extract 5.3 and 5.6): which non-volatile oplocks
//! the engine is updating under (JOURNAL ACQUIRE without RELEASE), and which oplocks have
//! unrestrictive (dirty) updates not yet flushed to the metadata.

use std::collections::BTreeSet;

use crate::address::{EngineId, OplockAddress};

/// One engine's oplock journal, as kept in the shared metadata store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct OplockJournal {
    /// Non-volatile oplocks acquired and not yet released: updates that may be half done.
    pub in_progress: BTreeSet<OplockAddress>,
    /// Oplocks whose unrestrictive updates sit in this engine's metadata journal only.
    pub dirty: BTreeSet<OplockAddress>,
}

impl OplockJournal {
    /// A journal with anything to replay shows a dirty shutdown.
    pub fn is_dirty_shutdown(&self) -> bool {
        !self.in_progress.is_empty() || !self.dirty.is_empty()
    }

    /// Forget everything once it has been replayed.
    pub fn clear(&mut self) {
        self.in_progress.clear();
        self.dirty.clear();
    }
}

/// An oplock an engine must clean up before anyone may share it again: inherited from an
/// evicted engine, or found in its own journal at boot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecoveredOplock {
    /// The oplock.
    pub oplock: OplockAddress,
    /// Its non-volatile ownership record named this (evicted or rebooting) engine: e.g. a
    /// mirror extent to reconcile, a taskset to restart.
    pub owned_by: Option<EngineId>,
    /// Journals where it was acquired and never released: an update may be half done.
    pub in_progress: Vec<EngineId>,
    /// Journals holding unrestrictive updates of it: replay them into the metadata.
    pub dirty: Vec<EngineId>,
}

impl RecoveredOplock {
    /// An empty record for `oplock`.
    pub fn new(oplock: OplockAddress) -> Self {
        RecoveredOplock { oplock, owned_by: None, in_progress: Vec::new(), dirty: Vec::new() }
    }
}

/// Gather what to recover: ownership records naming `owner`, and every in-progress or dirty
/// entry of `journals`.
pub fn recovery_set(
    owned: &[OplockAddress],
    owner: EngineId,
    journals: &[(EngineId, OplockJournal)],
) -> Vec<RecoveredOplock> {
    let mut found: std::collections::BTreeMap<OplockAddress, RecoveredOplock> = owned
        .iter()
        .map(|oplock| (*oplock, RecoveredOplock { owned_by: Some(owner), ..RecoveredOplock::new(*oplock) }))
        .collect();
    for (journal, content) in journals {
        for oplock in &content.in_progress {
            found.entry(*oplock).or_insert_with(|| RecoveredOplock::new(*oplock)).in_progress.push(*journal);
        }
        for oplock in &content.dirty {
            found.entry(*oplock).or_insert_with(|| RecoveredOplock::new(*oplock)).dirty.push(*journal);
        }
    }
    found.into_values().collect()
}
