//! The engine's clock: nanoseconds on a monotonic clock, anchored at the wall-clock time the
//! engine started. The workers and the control path read the same clock, so the timestamps
//! they compare (drains by the pending lists' stamps, timeouts) agree. The anchor makes
//! times grow across restarts too: journal headers on disk carry the worker's receive time,
//! and the applier orders a cycle by it, so a restarted engine must not stamp times below
//! those of the engine before it.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dve_fp_api::ids::Timestamp;

/// A monotonic nanosecond clock shared by an engine's threads (it is `Copy`).
#[derive(Clone, Copy, Debug)]
pub struct EngineClock {
    start: Instant,
    /// Nanoseconds since the Unix epoch at `start` (at least 1: 0 means "never" to some
    /// timers).
    base_ns: u64,
}

impl EngineClock {
    /// A clock starting now.
    pub fn start() -> EngineClock {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        EngineClock { start: Instant::now(), base_ns: u64::try_from(wall).unwrap_or(u64::MAX / 2).max(1) }
    }

    /// The time now.
    pub fn now(&self) -> Timestamp {
        let elapsed = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Timestamp(self.base_ns.saturating_add(elapsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_never_goes_back_and_starts_at_the_wall_clock() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        let clock = EngineClock::start();
        let mut last = clock.now();
        assert!(last.0 >= before, "anchored at the wall-clock time it started");
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
    }
}
