//! What this engine defends as caretaker: oplocks inherited from evicted engines (or found in
//! its own journal at boot) that nobody may share until cleanup completes, with the peers
//! waiting for them, and the cleanups still owed per victim.

use std::collections::{BTreeMap, BTreeSet};

use crate::address::{EngineId, OplockAddress};

/// Defended oplocks whose defence just ended, with the peers to wake.
pub(crate) type EndedDefences = Vec<(OplockAddress, BTreeSet<EngineId>)>;

/// A cleanup this engine owes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Cleanup {
    /// Victims covered (the evicted engine plus the cascade).
    pub victims: Vec<EngineId>,
    /// Oplocks defended until done.
    pub oplocks: Vec<OplockAddress>,
}

/// Defended oplocks and owed cleanups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Caretaking {
    /// Oplock → (number of cleanups covering it, peers nak'd meanwhile).
    defended: BTreeMap<OplockAddress, (u32, BTreeSet<EngineId>)>,
    /// Victim → cleanup.
    cleanups: BTreeMap<EngineId, Cleanup>,
}

impl Caretaking {
    pub fn is_defended(&self, oplock: &OplockAddress) -> bool {
        self.defended.contains_key(oplock)
    }

    pub fn defended(&self) -> impl Iterator<Item = &OplockAddress> {
        self.defended.keys()
    }

    pub fn victims(&self) -> impl Iterator<Item = &EngineId> {
        self.cleanups.keys()
    }

    /// Waiters of a defended oplock (a fresh empty set for others, discarded).
    pub fn waiters_mut(&mut self, oplock: &OplockAddress) -> Option<&mut BTreeSet<EngineId>> {
        self.defended.get_mut(oplock).map(|(_, waiters)| waiters)
    }

    pub fn begin(&mut self, key: EngineId, cleanup: Cleanup) {
        for oplock in &cleanup.oplocks {
            self.defended.entry(*oplock).or_default().0 += 1;
        }
        self.cleanups.insert(key, cleanup);
    }

    /// End a cleanup; returns it with, per oplock whose defence ended, the peers to wake.
    pub fn end(&mut self, key: EngineId) -> Option<(Cleanup, EndedDefences)> {
        let cleanup = self.cleanups.remove(&key)?;
        let mut ended = Vec::new();
        for oplock in &cleanup.oplocks {
            if let Some((count, _)) = self.defended.get_mut(oplock) {
                *count -= 1;
                if *count == 0
                    && let Some((_, waiters)) = self.defended.remove(oplock)
                {
                    ended.push((*oplock, waiters));
                }
            }
        }
        Some((cleanup, ended))
    }
}
