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
    /// The engine whose journal or ownership record named it.
    pub from: EngineId,
    /// Its non-volatile ownership record named that engine (e.g. a mirror extent to reconcile,
    /// a taskset to restart).
    pub owned: bool,
    /// Acquired and never released: an update may be half done.
    pub in_progress: bool,
    /// Unrestrictive updates are in that engine's journal only: replay them into the metadata.
    pub dirty: bool,
}
