//! The coherent modification sequence of seed 003 for fast-path entries: remove the entry from
//! every worker, wait for each worker's acknowledgement (it finishes the I/O in hand and
//! starts nothing new under the entry), then drain the I/O stamped before the
//! acknowledgement, and only then let the change proceed. A revocation may hold a range
//! lock: mapping misses inside it are answered QUEUE until the lock is released, so the
//! control path alone serializes I/O there.

use core::ops::Range;
use std::collections::{BTreeMap, BTreeSet};

use dve_fp_api::ids::{LvId, Timestamp, VsegId, WorkerId};
use dve_fp_api::io::{PendingFilter, PendingIo, PendingSide, PendingState};
use dve_fp_api::message::{MappingKey, ToFp};

use super::{ControlPath, RequestPurpose};

/// What runs once a revocation has drained.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum AfterRevocation {
    /// A manual I/O may dispatch.
    ManualIo(u64),
    /// A mirror side may be marked dead.
    SideDeath { lv: LvId, side: usize },
    /// A returning side may be put in RESYNC.
    ResyncStart { lv: LvId, side: usize },
    /// A resync copy step may read and write.
    ResyncCopy { lv: LvId, step: u64 },
    /// The resynchronized side may become ALIVE.
    ResyncFinish { lv: LvId, side: usize },
    /// A snapshot's source has drained its writes: the snapshot instant.
    SnapshotTake { source: LvId },
    /// Reads under a snapshot's old mapping of a pushed range have drained.
    SnapshotPushed { source: LvId, push: u64 },
    /// Everything is pushed and both volumes drained: coalesce.
    SnapshotComplete { source: LvId },
    /// A base's writes drained: it becomes read-only and its incrementals usable.
    IncrementalBase { base: LvId },
    /// Every source of a group snapshot drained at once.
    GroupSnapshotTake { group: u64 },
    /// A migration's barrier chunk is fenced: copy it.
    MigrationBarrier { lv: LvId },
    /// A migration copied everything and drained: drop the old states.
    MigrationDone { lv: LvId },
    /// A replicated volume's writes drained for a consistency point.
    ConsistencyPoint { lv: LvId },
    /// A volume's I/O drained for a split or a merge of its segments.
    Reconfigure { lv: LvId },
    /// Every worker dropped a deleted volume: its space may be claimed again.
    VolumeDeleted { lv: LvId },
    /// A mirror range whose write leg timed out is fenced: copy it onto the other sides.
    Reconcile(u64),
    /// Every worker dropped the tables a removed mirror side was in.
    SideRemoved { removal: u64 },
}

/// One revocation in progress.
#[derive(Clone, Debug)]
pub(super) struct Revocation {
    /// What each worker drains, its `before` filled from the worker's acknowledgement.
    drains: Vec<PendingFilter>,
    /// Acknowledgements still expected, per worker, and the latest acknowledgement time.
    acks: BTreeMap<WorkerId, (usize, Timestamp)>,
    /// Workers whose drain is not yet confirmed, with their acknowledgement time.
    draining: BTreeMap<WorkerId, Timestamp>,
    /// Workers with a drain query outstanding.
    querying: BTreeSet<WorkerId>,
    /// Whole-segment locks released as soon as `then` has run.
    segment_locks: Vec<u64>,
    then: AfterRevocation,
}

impl ControlPath {
    /// Start revoking `keys` on every worker; once every worker acknowledged and the I/O the
    /// `drains` select has finished, `then` runs. With `lock`, misses in the range queue
    /// until [`ControlPath::release_lock`].
    pub(super) fn revoke(
        &mut self,
        keys: Vec<MappingKey>,
        drains: Vec<PendingFilter>,
        lock: Option<(VsegId, Range<u64>)>,
        then: AfterRevocation,
    ) -> u64 {
        let id = self.op_id();
        let workers = self.plan.workers();
        let acks = workers.iter().map(|w| (*w, (keys.len(), Timestamp(0)))).collect();
        self.revocations.insert(
            id,
            Revocation {
                drains,
                acks,
                draining: BTreeMap::new(),
                querying: BTreeSet::new(),
                segment_locks: Vec::new(),
                then,
            },
        );
        if let Some((vseg, range)) = lock {
            self.locks.insert(id, (vseg, range));
        }
        if keys.is_empty() {
            for w in workers {
                self.revocation_acked(id, w, Timestamp(self.now));
            }
            return id;
        }
        for worker in workers {
            for key in &keys {
                let req = self.request(RequestPurpose::Revocation(id));
                self.send(worker, ToFp::RemoveMapping { req, key: key.clone() });
            }
        }
        id
    }

    /// Revoke the cached extents over `blocks` of `vseg` on every worker and drain the writes
    /// begun under them; with `lock`, the range stays locked (misses answered QUEUE) until
    /// [`ControlPath::release_lock`]. How the control path fences a range it writes itself.
    pub(super) fn revoke_writes_in(
        &mut self,
        vseg: VsegId,
        blocks: Range<u64>,
        lock: bool,
        then: AfterRevocation,
    ) -> u64 {
        let drain = PendingFilter {
            vseg: Some(vseg),
            range: Some((blocks.start, blocks.end - blocks.start)),
            writes_only: true,
            ..PendingFilter::default()
        };
        let lock = lock.then(|| (vseg, blocks.clone()));
        self.revoke(vec![MappingKey::Extents { vseg, blocks }], vec![drain], lock, then)
    }

    /// Revoke the redirect tables of `segments` (segment, blocks) and drain their writes
    /// (every I/O unless `writes_only`). The segments stay locked until `then` has run:
    /// meanwhile misses are answered QUEUE and the control path's own writes wait, so no
    /// I/O starts under the table being replaced.
    pub(super) fn revoke_segments(
        &mut self,
        segments: &[(VsegId, u64)],
        writes_only: bool,
        then: AfterRevocation,
    ) -> u64 {
        let keys = segments.iter().map(|(s, _)| MappingKey::Redirects(*s)).collect();
        let drains = segments
            .iter()
            .map(|(s, _)| PendingFilter { vseg: Some(*s), writes_only, ..PendingFilter::default() })
            .collect();
        let mut locks = Vec::with_capacity(segments.len());
        for (vseg, blocks) in segments {
            let lock = self.op_id();
            self.locks.insert(lock, (*vseg, 0..*blocks));
            locks.push(lock);
        }
        let id = self.revoke(keys, drains, None, then);
        match self.revocations.get_mut(&id) {
            Some(rev) => rev.segment_locks = locks,
            // It finished at once: nothing to hold.
            None => {
                for lock in locks {
                    self.locks.remove(&lock);
                }
            }
        }
        id
    }

    /// Every segment of `lv` with its size.
    pub(super) fn segments_of(&self, lv: LvId) -> Vec<(VsegId, u64)> {
        self.volumes
            .get(&lv)
            .map(|v| v.segments.iter().map(|s| (s.descriptor().id, s.descriptor().blocks)).collect())
            .unwrap_or_default()
    }

    /// Whether `range` of `vseg` overlaps a range lock.
    pub(super) fn is_locked(&self, vseg: VsegId, range: &Range<u64>) -> bool {
        self.locks.values().any(|(v, r)| *v == vseg && r.start < range.end && range.start < r.end)
    }

    /// Locked ranges of `vseg`.
    pub(super) fn locked_ranges(&self, vseg: VsegId) -> Vec<Range<u64>> {
        self.locks.values().filter(|(v, _)| *v == vseg).map(|(_, r)| r.clone()).collect()
    }

    /// Release the range lock of revocation `id`; work waiting for it is retried.
    pub(super) fn release_lock(&mut self, id: u64) {
        if self.locks.remove(&id).is_some() {
            self.retry_lock_waiters();
        }
    }

    pub(super) fn revocation_acked(&mut self, id: u64, worker: WorkerId, at: Timestamp) {
        let Some(rev) = self.revocations.get_mut(&id) else { return };
        let Some((left, latest)) = rev.acks.get_mut(&worker) else { return };
        *left = left.saturating_sub(1);
        *latest = (*latest).max(at);
        if *left == 0 {
            let at = *latest;
            rev.acks.remove(&worker);
            rev.draining.insert(worker, at);
            self.query_drain(id, worker);
        }
    }

    fn query_drain(&mut self, id: u64, worker: WorkerId) {
        let Some(rev) = self.revocations.get_mut(&id) else { return };
        let Some(at) = rev.draining.get(&worker).copied() else { return };
        if rev.drains.is_empty() {
            rev.draining.remove(&worker);
            self.maybe_finish_revocation(id);
            return;
        }
        rev.querying.insert(worker);
        // One query covering every drain filter: the union is checked on the reply.
        let filter = if rev.drains.len() == 1 {
            PendingFilter { before: Some(at), ..rev.drains[0] }
        } else {
            PendingFilter { before: Some(at), ..PendingFilter::default() }
        };
        let req = self.request(RequestPurpose::Revocation(id));
        self.send(worker, ToFp::QueryPendingIos { req, filter });
    }

    pub(super) fn revocation_pending(&mut self, id: u64, worker: WorkerId, ios: &[PendingIo]) {
        let Some(rev) = self.revocations.get_mut(&id) else { return };
        rev.querying.remove(&worker);
        let Some(at) = rev.draining.get(&worker).copied() else { return };
        // I/O handed to the control path is its own to finish: only I/O the worker is still
        // running must drain.
        let busy = ios.iter().any(|io| {
            io.side == PendingSide::Upstream
                && !matches!(io.state, PendingState::Queued | PendingState::Failed | PendingState::Completed)
                && rev.drains.iter().any(|d| PendingFilter { before: Some(at), ..*d }.matches(io))
        });
        if !busy {
            rev.draining.remove(&worker);
            self.maybe_finish_revocation(id);
        }
        // Otherwise the next tick queries again.
    }

    /// Re-query drains that are still waiting (called on every tick).
    pub(super) fn poll_revocations(&mut self) {
        let waiting: Vec<(u64, WorkerId)> = self
            .revocations
            .iter()
            .flat_map(|(id, r)| r.draining.keys().filter(|w| !r.querying.contains(w)).map(move |w| (*id, *w)))
            .collect();
        for (id, worker) in waiting {
            self.query_drain(id, worker);
        }
    }

    fn maybe_finish_revocation(&mut self, id: u64) {
        let done = self.revocations.get(&id).is_some_and(|r| r.acks.is_empty() && r.draining.is_empty());
        if !done {
            return;
        }
        let Some(rev) = self.revocations.remove(&id) else { return };
        self.counters.revocations += 1;
        let segment_locks = rev.segment_locks.clone();
        match rev.then {
            AfterRevocation::ManualIo(op) => self.manual_revoked(op, id),
            AfterRevocation::SideDeath { lv, side } => self.side_death_revoked(lv, side),
            AfterRevocation::ResyncStart { lv, side } => self.resync_start_revoked(lv, side),
            AfterRevocation::ResyncCopy { lv, step } => self.resync_copy_revoked(lv, step, id),
            AfterRevocation::ResyncFinish { lv, side } => self.resync_finish_revoked(lv, side),
            AfterRevocation::SnapshotTake { source } => self.snapshot_take_revoked(source),
            AfterRevocation::SnapshotPushed { source, push } => self.snapshot_pushed_revoked(source, push),
            AfterRevocation::SnapshotComplete { source } => self.snapshot_complete_revoked(source),
            AfterRevocation::GroupSnapshotTake { group } => self.group_snapshot_take_revoked(group),
            AfterRevocation::IncrementalBase { base } => self.incremental_base_revoked(base),
            AfterRevocation::MigrationBarrier { lv } => self.migration_barrier_revoked(lv),
            AfterRevocation::MigrationDone { lv } => self.migration_done_revoked(lv),
            AfterRevocation::ConsistencyPoint { lv } => self.consistency_point_revoked(lv),
            AfterRevocation::Reconfigure { lv } => self.reconfigure_revoked(lv),
            AfterRevocation::VolumeDeleted { lv } => self.volume_deleted_revoked(lv),
            AfterRevocation::Reconcile(reconcile) => self.reconcile_revoked(reconcile),
            AfterRevocation::SideRemoved { removal } => self.side_removal_revoked(removal),
        }
        if !segment_locks.is_empty() {
            for lock in segment_locks {
                self.locks.remove(&lock);
            }
            self.retry_lock_waiters();
        }
    }
}
