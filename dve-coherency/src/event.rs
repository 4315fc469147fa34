//! Notifications from an engine to its control path, and the update kinds the control path
//! asks for. Events that need work from the control path carry a token or name the victim
//! that the completion input must quote.

use crate::address::{EngineId, OplockAddress};
use crate::journal::RecoveredOplock;

/// How an update changes authority (seed 003, extract 5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UpdateKind {
    /// Takes authority away: peers purge and drain I/O that used the old value first.
    Restrictive,
    /// Grants authority: journaled by the updater, peers purge lazily, no stall.
    Unrestrictive,
}

/// Why cached copies must go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PurgeReason {
    /// A peer acquires the oplock.
    PeerAcquire,
    /// The sweep releases a non-volatile oplock that was not used recently.
    Sweep,
    /// The control path asked to stop sharing while the oplock was dirty.
    Unshare,
}

/// A notification for the control path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// The boot sequence finished: the engine is in the jlist and answers peers.
    Online {
        /// The engine's new incarnation.
        incarnation: u64,
    },
    /// The oplock reached Sharing: the metadata may be read and cached (re-read it).
    Shared {
        /// The oplock.
        oplock: OplockAddress,
    },
    /// The oplock reached Acquired: the control path may update, then calls `release`.
    Acquired {
        /// The oplock.
        oplock: OplockAddress,
        /// Cached copies are stale (a previous owner flushed dirty metadata, or this engine's
        /// cache was purged): re-read from media before updating.
        reread: bool,
    },
    /// Drop every cached copy of the oplock's metadata (CP and FP). If `drain_before` is set
    /// (restrictive update) also wait for every pending I/O timestamped before it. If
    /// `flush_dirty`, flush the metadata journal into the metadata. When `blocking`, call
    /// `purge_complete(token)` when done: the peer's acknowledgement waits for it.
    Purge {
        /// The oplock.
        oplock: OplockAddress,
        /// Why.
        reason: PurgeReason,
        /// Drain I/O with timestamps older than this (engine clock, ns).
        drain_before: Option<u64>,
        /// Flush this engine's unrestrictive updates of the oplock to the metadata.
        flush_dirty: bool,
        /// The engine waits for `purge_complete(token)`.
        blocking: bool,
        /// Quote it in `purge_complete`.
        token: u64,
    },
    /// This engine evicted `victim` and is caretaker of what it left: reconcile mirror
    /// extents, complete or replay journals, restart tasksets, then call
    /// `cleanup_complete(victim)`. Until then the engine defends the listed oplocks.
    Caretaker {
        /// The evicted engine.
        victim: EngineId,
        /// Engines the victim was still cleaning up for (cascade).
        cascaded: Vec<EngineId>,
        /// Journals now held by this engine.
        journals: Vec<EngineId>,
        /// What to recover.
        oplocks: Vec<RecoveredOplock>,
    },
    /// Boot steps 3-4: replay this engine's journal and the inherited ones, then call
    /// `replay_complete`.
    Replay {
        /// Journals to replay (own first).
        journals: Vec<EngineId>,
        /// What to recover.
        oplocks: Vec<RecoveredOplock>,
    },
    /// The engine found itself evicted: it dropped every oplock and cache and reboots.
    Evicted,
}
