//! Cancelling a migration. What was moved may hold writes made since, on the new storage
//! only, so it is copied back chunk by chunk under a barrier of its own (the new storage
//! fault-on-write), nearest the start first, each chunk committed before it points at the old
//! storage again. A forward chunk in hand is given up: its writes waited, the old storage is
//! still whole there. At the end the volume is as it was and the destination's claims are
//! free.

use core::ops::Range;

use dve_fp_api::ids::LvId;

use super::{Barrier, Direction, MigrationRecord, task_key};
use crate::control_path::ControlPath;
use crate::error::Error;

impl ControlPath {
    /// Cancel the migration of `lv` (management API). It is committed at once; copying back
    /// starts at the next tick, even if the migration was paused. A restart goes on with the
    /// copy back.
    pub fn cancel_migration(&mut self, lv: LvId) -> Result<(), Error> {
        let name = self.volumes.get(&lv).ok_or(Error::UnknownVolume(lv))?.record.name.clone();
        let m = self
            .migrations
            .active
            .get(&lv)
            .ok_or_else(|| Error::FailedPrecondition(format!("{name} is not migrating")))?;
        if m.returned.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "the migration of {name} is already being cancelled"
            )));
        }
        if m.finishing {
            return Err(Error::FailedPrecondition(format!(
                "the migration of {name} has copied everything and is ending"
            )));
        }
        // A forward chunk in hand is not committed: the copy back ends where it starts.
        let cursor = match &m.barrier {
            Some(b) if b.direction == Direction::Forward => (b.segment, b.range.start),
            _ => m.cursor,
        };
        let record = MigrationRecord {
            lv,
            moves: m.moves.clone(),
            allocations: m.allocations.clone(),
            cursor,
            returned: Some((0, 0)),
            rate_limit: m.rate_limit,
        };
        if let Err(e) = self.persist_task(&[], &task_key(lv), &record) {
            self.counters.failed_commits += 1;
            return Err(e);
        }
        let Some(m) = self.migrations.active.get_mut(&lv) else { return Ok(()) };
        m.returned = Some((0, 0));
        m.paused = false;
        let fenced_and_idle = m.fenced && m.copy.is_none();
        if fenced_and_idle {
            self.copy_or_abandon(lv);
        }
        Ok(())
    }

    /// The next chunk to copy back, from `returned` up to where the migration had got; when
    /// none is left the cancel ends like a migration does.
    pub(super) fn next_chunk_back(&mut self, lv: LvId, returned: (usize, u64)) {
        let Some(m) = self.migrations.active.get(&lv) else { return };
        let end = m.cursor;
        let chunk = self.config.copy_chunk_blocks.max(1);
        let (mut segment, mut block) = returned;
        loop {
            if (segment, block) >= end {
                self.finish_migration(lv);
                return;
            }
            let blocks =
                self.volumes.get(&lv).and_then(|v| v.segments.get(segment)).map(|s| s.descriptor().blocks);
            let Some(blocks) = blocks else {
                self.finish_migration(lv);
                return;
            };
            let stop = if segment == end.0 { end.1.min(blocks) } else { blocks };
            if block >= stop {
                segment += 1;
                block = 0;
                continue;
            }
            let range: Range<u64> = block..(block + chunk).min(stop);
            self.raise_barrier(lv, Barrier { segment, range, direction: Direction::Back });
            return;
        }
    }

    /// Give up the forward chunk fenced when the migration was cancelled: it points at the
    /// old storage again, which its held writes never left, and the cursor goes back to it.
    pub(super) fn abandon_forward_chunk(&mut self, lv: LvId) {
        let Some(m) = self.migrations.active.get_mut(&lv) else { return };
        let Some(Barrier { segment, range, .. }) = m.barrier.clone() else { return };
        let Some(states) = m.states.get(segment).copied() else { return };
        m.cursor = (segment, range.start);
        self.lower_barrier(lv, segment, range, states.not_migrated);
    }
}
