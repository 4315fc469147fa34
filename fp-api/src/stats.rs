//! Statistics a worker keeps and reports through `FPQueryStatistics`: per-cause fault
//! counters, hits, I/O counts, and frames and bytes per port.

use crate::fault::FaultCounters;
use crate::ids::{PortId, Timestamp, WorkerId};

/// Counters of one port.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct PortStatistics {
    /// The port.
    pub port: PortId,
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Frames dropped because they were malformed (bad CRC, truncated, bad SOF/EOF).
    pub malformed: u64,
    /// Frames the port could not send (ring full, link down).
    pub tx_dropped: u64,
}

/// Everything a worker counts.
#[derive(Clone, PartialEq, Eq, Default, Debug)]
pub struct FpStatistics {
    /// The worker.
    pub worker: WorkerId,
    /// When the counters were read.
    pub at: Timestamp,
    /// Host reads and writes served entirely on the fast path.
    pub hits: u64,
    /// Faults to the control path, per cause.
    pub faults: FaultCounters,
    /// Host I/Os received (every command).
    pub upstream_ios: u64,
    /// Downstream I/Os started (fast path and control path dispatched).
    pub downstream_ios: u64,
    /// Host reads served on the fast path.
    pub reads: u64,
    /// Host writes served on the fast path.
    pub writes: u64,
    /// Bytes of host data read on the fast path.
    pub read_bytes: u64,
    /// Bytes of host data written on the fast path.
    pub write_bytes: u64,
    /// Frames forwarded unchanged to physical addresses.
    pub forwarded_frames: u64,
    /// Device I/Os aborted because the device did not answer in time.
    pub downstream_timeouts: u64,
    /// Extents in the worker's mapping cache now.
    pub cached_extents: u64,
    /// Extents evicted from the cache.
    pub evicted_extents: u64,
    /// Upstream I/Os pending now.
    pub pending_upstream: u64,
    /// Downstream I/Os pending now.
    pub pending_downstream: u64,
    /// Per port.
    pub ports: Vec<PortStatistics>,
}

impl FpStatistics {
    /// Fraction of host reads and writes served on the fast path. Faults that are not about
    /// translating a read or write (other commands, downstream errors after a hit, aborts)
    /// do not count against it.
    pub fn hit_ratio(&self) -> f64 {
        use crate::fault::FaultCause;
        let not_translation = [FaultCause::NotReadWrite, FaultCause::DownstreamError, FaultCause::Aborted];
        let faulted_rw =
            self.faults.total() - not_translation.iter().map(|&c| self.faults.get(c)).sum::<u64>();
        let total = self.hits + faulted_rw;
        if total == 0 { 1.0 } else { self.hits as f64 / total as f64 }
    }
}
