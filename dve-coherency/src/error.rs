//! The one error type of the crate: misuse of the engine's inputs by the control path, and
//! transport failures.

use crate::address::{EngineId, OplockAddress};

/// Everything that can go wrong in `dve-coherency`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// `release` on an oplock that is not Acquired.
    #[error("oplock {0} is not acquired")]
    NotAcquired(OplockAddress),
    /// `purge_complete` with a token the oplock is not waiting for.
    #[error("oplock {oplock} is not waiting for purge {token}")]
    UnknownPurge {
        /// The oplock.
        oplock: OplockAddress,
        /// The token quoted.
        token: u64,
    },
    /// `cleanup_complete` for an engine this engine is not caretaker of.
    #[error("engine is not caretaker of engine {0}")]
    NotCaretaker(EngineId),
    /// `replay_complete` while the engine is not replaying journals at boot.
    #[error("engine is not replaying journals")]
    NotReplaying,
    /// A peer is not known to the transport.
    #[error("unknown peer engine {0}")]
    UnknownPeer(EngineId),
    /// The transport failed (connection, encoding).
    #[error("transport: {0}")]
    Transport(String),
}
