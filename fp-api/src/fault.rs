//! Why the fast path handed an I/O to the control path (DESIGN.md principle 4). Every fault
//! carries exactly one cause; workers count faults per cause and report the counters in their
//! statistics.

use core::fmt;

/// The cause of a fault from the fast path to the control path, in the order the decision
/// chain of seed 003 Fig. 7 meets them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(u8)]
pub enum FaultCause {
    /// Not a READ or WRITE (Fig. 7 step 88): INQUIRY, RESERVE, TEST UNIT READY, ...
    NotReadWrite = 0,
    /// The LUN is masked for this host (step 93): access rights, reservations, pending unit
    /// attention.
    MaskedLun = 1,
    /// The LUN is not exposed to this host, or no target exposure matches (step 94).
    NotExposed = 2,
    /// The I/O crosses a segment (VSEG) boundary (step 100).
    SpansSegment = 3,
    /// The extent holding the I/O is not in the worker's mapping cache (step 102).
    Miss = 4,
    /// The I/O crosses an Rmap extent boundary and splitting is off (step 108).
    SpansExtent = 5,
    /// The redirect entry forbids the operation: fault-on-read or fault-on-write (step 112).
    Permission = 6,
    /// A fast-path capacity limit: I/O too large, too many devices, a stripe crossing that is
    /// not split (step 116).
    Capacity = 7,
    /// A mirror or journal write overlaps a write already in flight (step 120).
    SerializationConflict = 8,
    /// The worker's journal has no room for this write (step 122).
    JournalFull = 9,
    /// A downstream I/O failed or timed out (Fig. 6): the control path tests the path, fails
    /// a mirror side, or retries.
    DownstreamError = 10,
    /// The LV is paused by the control path (group-atomic operations, reconfiguration) and
    /// the worker's pause queue is full.
    Paused = 11,
    /// The host aborted the exchange (ABTS): the control path answers it.
    Aborted = 12,
}

impl FaultCause {
    /// Number of causes, for per-cause counter arrays.
    pub const COUNT: usize = 13;

    /// Every cause, in counter order.
    pub const ALL: [FaultCause; FaultCause::COUNT] = [
        FaultCause::NotReadWrite,
        FaultCause::MaskedLun,
        FaultCause::NotExposed,
        FaultCause::SpansSegment,
        FaultCause::Miss,
        FaultCause::SpansExtent,
        FaultCause::Permission,
        FaultCause::Capacity,
        FaultCause::SerializationConflict,
        FaultCause::JournalFull,
        FaultCause::DownstreamError,
        FaultCause::Paused,
        FaultCause::Aborted,
    ];

    /// Index into a per-cause counter array.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// A short stable name for reports and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            FaultCause::NotReadWrite => "not-read-write",
            FaultCause::MaskedLun => "masked-lun",
            FaultCause::NotExposed => "not-exposed",
            FaultCause::SpansSegment => "spans-segment",
            FaultCause::Miss => "miss",
            FaultCause::SpansExtent => "spans-extent",
            FaultCause::Permission => "permission",
            FaultCause::Capacity => "capacity",
            FaultCause::SerializationConflict => "serialization-conflict",
            FaultCause::JournalFull => "journal-full",
            FaultCause::DownstreamError => "downstream-error",
            FaultCause::Paused => "paused",
            FaultCause::Aborted => "aborted",
        }
    }
}

impl fmt::Display for FaultCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Per-cause fault counters.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct FaultCounters(pub [u64; FaultCause::COUNT]);

impl FaultCounters {
    /// Count one fault.
    #[inline]
    pub fn record(&mut self, cause: FaultCause) {
        self.0[cause.index()] += 1;
    }

    /// Faults counted for `cause`.
    pub fn get(&self, cause: FaultCause) -> u64 {
        self.0[cause.index()]
    }

    /// All faults.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(cause, count)` for every cause.
    pub fn iter(&self) -> impl Iterator<Item = (FaultCause, u64)> + '_ {
        FaultCause::ALL.iter().map(|&c| (c, self.get(c)))
    }

    /// Add another worker's counters.
    pub fn merge(&mut self, other: &FaultCounters) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine += theirs;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order_and_names_are_unique() {
        for (i, cause) in FaultCause::ALL.iter().enumerate() {
            assert_eq!(cause.index(), i);
        }
        let mut names: Vec<_> = FaultCause::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FaultCause::COUNT);
    }
}
