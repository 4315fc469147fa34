//! The periodic sweep (seed 003, extract 5.6): non-volatile oplocks this engine owns but has
//! not used for a while are unshared and their ownership cleared, so ownership records cover
//! only recent writes and bound the reconciliation work after a failure (like a DRL).

use crate::address::{EngineId, OplockAddress};
use crate::oplock::Oplock;
use crate::store::SharedStore;

/// Whether the sweep should release this oplock now.
pub(crate) fn is_due(
    oplock: &Oplock,
    address: OplockAddress,
    me: EngineId,
    store: &dyn SharedStore,
    now: u64,
    age: u64,
) -> bool {
    address.is_non_volatile()
        && !oplock.is_busy()
        && now.saturating_sub(oplock.last_used()) >= age
        && store.owner(address) == Some(me)
}
