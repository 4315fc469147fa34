//! A fast-path worker on its own OS thread: the run-to-completion poll loop of
//! `Worker::poll` over the worker's port handles, its FP API ring and its inbox of frames
//! handed over by other workers, until the engine stops it. The loop never blocks: it takes
//! no lock another thread may hold (statistics are published with `try_lock`), and rings
//! that are full hand their message back to be retried on a later poll.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::time::Duration;

use dve_fastpath::Worker;
use dve_fastpath::worker::run::{PollReport, WorkerMesh};
use dve_fp_api::frame::Frame;
use dve_fp_api::ids::PortId;
use dve_fp_api::port::PacketIo;
use dve_fp_api::stats::FpStatistics;
use dve_fp_api::transport::FpEndpoint;

use super::clock::EngineClock;

/// How often a worker publishes its statistics (engine-clock ns): often enough for
/// `GetStatistics`, rarely enough that the copy (one allocation) costs nothing.
pub const PUBLISH_INTERVAL_NS: u64 = 100_000_000;

/// Polls in a row that found nothing before an idle worker pauses: a burst of frames often
/// comes in pieces a few microseconds apart, which a short spin catches without a sleep.
const SPINS_BEFORE_PAUSE: u32 = 64;

/// The longest pause of an idle worker: each pause in a row doubles, from the port set's
/// `idle_pause`, up to this. An engine with nothing to do then wakes each worker a thousand
/// times a second instead of twenty thousand, and the first frame after a quiet spell waits
/// at most this long.
const MAX_IDLE_PAUSE: Duration = Duration::from_millis(1);

/// The statistics each worker last published, read by `GetStatistics`.
#[derive(Debug)]
pub struct StatisticsBoard {
    slots: Vec<Mutex<Option<FpStatistics>>>,
}

impl StatisticsBoard {
    /// A board for `workers` workers, nothing published yet.
    pub fn new(workers: usize) -> StatisticsBoard {
        StatisticsBoard { slots: (0..workers).map(|_| Mutex::new(None)).collect() }
    }

    /// Publish worker `index`'s statistics, unless a reader holds its slot right now: the
    /// worker never waits, and publishes again at its next interval.
    pub fn publish(&self, index: usize, statistics: FpStatistics) {
        let Some(slot) = self.slots.get(index) else { return };
        match slot.try_lock() {
            Ok(mut published) => *published = Some(statistics),
            // A reader that panicked holding the slot left a whole value behind: replace it.
            Err(TryLockError::Poisoned(poisoned)) => *poisoned.into_inner() = Some(statistics),
            Err(TryLockError::WouldBlock) => {}
        }
    }

    /// What every worker published, in worker order (workers that published nothing yet
    /// are left out).
    pub fn snapshot(&self) -> Vec<FpStatistics> {
        self.slots
            .iter()
            .filter_map(|slot| slot.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .collect()
    }
}

/// Everything one worker thread owns.
#[derive(Debug)]
pub struct WorkerLoop<P> {
    /// The sans-I/O core.
    pub worker: Worker,
    /// A handle on every port of the engine, in port order.
    pub ports: Vec<P>,
    /// The ports this worker receives from.
    pub receive_from: Vec<PortId>,
    /// Inboxes of frames handed between workers.
    pub mesh: WorkerMesh,
    /// The worker's end of its FP API channel.
    pub fp: FpEndpoint,
    /// The engine's clock.
    pub clock: EngineClock,
    /// Set by the engine to stop the loop.
    pub stop: Arc<AtomicBool>,
    /// Where the statistics go.
    pub board: Arc<StatisticsBoard>,
    /// Sleep when idle (see `PortSet::idle_pause`).
    pub idle_pause: Option<Duration>,
}

impl<P: PacketIo> WorkerLoop<P> {
    /// Poll until stopped (or until the control path's end of the ring is gone).
    pub fn run(mut self) {
        let index = usize::from(self.worker.id().0);
        let mut scratch: Vec<Frame> = Vec::with_capacity(64);
        let mut idle_polls = 0u32;
        let mut pause = self.idle_pause;
        let mut next_publish = 0u64;
        while !self.stop.load(Ordering::Acquire) && !self.fp.is_disconnected() {
            let now = self.clock.now();
            let report = self.worker.poll(
                now,
                &mut self.ports,
                &self.receive_from,
                &self.mesh,
                &self.fp,
                &mut scratch,
            );
            if now.0 >= next_publish {
                self.board.publish(index, self.worker.statistics(now));
                next_publish = now.0.saturating_add(PUBLISH_INTERVAL_NS);
            }
            // Frames held for a full port are retried at the next poll, not after a sleep.
            if report != PollReport::default() || self.worker.held_transmits() > 0 {
                idle_polls = 0;
                pause = self.idle_pause;
                continue;
            }
            idle_polls = idle_polls.saturating_add(1);
            match pause {
                Some(p) if idle_polls >= SPINS_BEFORE_PAUSE => {
                    std::thread::sleep(p);
                    pause = Some((p * 2).min(MAX_IDLE_PAUSE));
                }
                _ => std::hint::spin_loop(),
            }
        }
        self.board.publish(index, self.worker.statistics(self.clock.now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dve_fp_api::ids::WorkerId;

    #[test]
    fn a_held_slot_is_skipped_not_waited_for() {
        let board = StatisticsBoard::new(2);
        assert!(board.snapshot().is_empty());
        let first = FpStatistics { worker: WorkerId(1), hits: 1, ..FpStatistics::default() };
        board.publish(1, first.clone());
        assert_eq!(board.snapshot(), vec![first.clone()]);
        let held = board.slots[1].lock().unwrap();
        board.publish(1, FpStatistics { worker: WorkerId(1), hits: 2, ..FpStatistics::default() });
        drop(held);
        assert_eq!(board.snapshot(), vec![first], "the publication that met a reader was skipped");
        board.publish(7, FpStatistics::default());
    }
}
