//! Unit attention conditions (SAM-5 5.14, SPC-4 6.39): [`UnitAttention`] names a condition,
//! [`UnitAttentionQueue`] holds what one initiator has yet to be told about one LV, and
//! [`UnitAttentions`] holds the queues of one LV with the set of initiators already told that
//! the unit powered on.
//!
//! An initiator the LV has never reported to has POWER ON, RESET OR BUS DEVICE RESET
//! OCCURRED pending (seed 003: the UA list starts as every host). The first command other
//! than INQUIRY, REPORT LUNS and REQUEST SENSE gets CHECK CONDITION with the oldest pending
//! condition, which is then removed; REQUEST SENSE returns it as sense data and removes it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use dve_wire::scsi::sense::{Asc, SenseKey};
use serde::{Deserialize, Serialize};

/// A unit attention condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum UnitAttention {
    /// POWER ON, RESET, OR BUS DEVICE RESET OCCURRED (29h/00h).
    PowerOnReset,
    /// CAPACITY DATA HAS CHANGED (2Ah/09h).
    CapacityDataHasChanged,
    /// RESERVATIONS PREEMPTED (2Ah/03h).
    ReservationsPreempted,
    /// REGISTRATIONS PREEMPTED (2Ah/05h).
    RegistrationsPreempted,
    /// RESERVATIONS RELEASED (2Ah/04h).
    ReservationsReleased,
    /// REPORTED LUNS DATA HAS CHANGED (3Fh/0Eh): a LUN appeared or went for this initiator.
    ReportedLunsDataHasChanged,
}

impl UnitAttention {
    /// The additional sense code and qualifier.
    pub fn asc(self) -> Asc {
        match self {
            UnitAttention::PowerOnReset => Asc::POWER_ON_RESET,
            UnitAttention::CapacityDataHasChanged => Asc::CAPACITY_DATA_HAS_CHANGED,
            UnitAttention::ReservationsPreempted => Asc::RESERVATIONS_PREEMPTED,
            UnitAttention::RegistrationsPreempted => Asc::REGISTRATIONS_PREEMPTED,
            UnitAttention::ReservationsReleased => Asc::RESERVATIONS_RELEASED,
            UnitAttention::ReportedLunsDataHasChanged => Asc::REPORTED_LUNS_DATA_HAS_CHANGED,
        }
    }

    /// The sense key (always UNIT ATTENTION).
    pub fn key(self) -> SenseKey {
        SenseKey::UnitAttention
    }
}

/// The conditions one initiator has yet to be told about one LV, oldest first. A condition
/// already pending is not queued twice, so the queue never holds more than one of each.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UnitAttentionQueue {
    pending: VecDeque<UnitAttention>,
}

impl UnitAttentionQueue {
    /// An empty queue.
    pub fn new() -> UnitAttentionQueue {
        UnitAttentionQueue::default()
    }

    /// Queues `ua` unless it is already pending.
    pub fn push(&mut self, ua: UnitAttention) {
        if !self.pending.contains(&ua) {
            self.pending.push_back(ua);
        }
    }

    /// The oldest pending condition.
    pub fn oldest(&self) -> Option<UnitAttention> {
        self.pending.front().copied()
    }

    /// Removes and returns the oldest pending condition.
    pub fn pop(&mut self) -> Option<UnitAttention> {
        self.pending.pop_front()
    }

    /// Number of pending conditions.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The pending conditions, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = UnitAttention> + '_ {
        self.pending.iter().copied()
    }
}

/// The unit attention state of one LV: initiators told about power on, and per initiator
/// the conditions still pending. Initiators are named by port name (WWPN).
///
/// Empty queues are never stored, so two states holding the same pending conditions compare
/// equal and serialize the same.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UnitAttentions {
    seen: BTreeSet<u64>,
    queues: BTreeMap<u64, UnitAttentionQueue>,
}

impl UnitAttentions {
    /// No initiator seen: every initiator has POWER ON pending.
    pub fn new() -> UnitAttentions {
        UnitAttentions::default()
    }

    /// Whether `initiator` has been told about power on (its first UA was reported).
    pub fn has_seen(&self, initiator: u64) -> bool {
        self.seen.contains(&initiator)
    }

    /// The initiators told about power on, ascending.
    pub fn seen(&self) -> impl Iterator<Item = u64> + '_ {
        self.seen.iter().copied()
    }

    /// The condition the next command of `initiator` would report, without removing it.
    pub fn pending(&self, initiator: u64) -> Option<UnitAttention> {
        if !self.seen.contains(&initiator) {
            return Some(UnitAttention::PowerOnReset);
        }
        self.queues.get(&initiator).and_then(UnitAttentionQueue::oldest)
    }

    /// Whether `initiator` has a condition pending (so its I/O must not use the fast path).
    pub fn has_pending(&self, initiator: u64) -> bool {
        self.pending(initiator).is_some()
    }

    /// The queue of `initiator` (empty if none is stored). POWER ON of an initiator not yet
    /// seen is not in it (see [`UnitAttentions::pending`]).
    pub fn queue(&self, initiator: u64) -> Option<&UnitAttentionQueue> {
        self.queues.get(&initiator)
    }

    /// Removes and returns the oldest condition of `initiator`: POWER ON for an initiator not
    /// seen before (which is then marked seen; power on supersedes anything queued for it).
    pub fn take(&mut self, initiator: u64) -> Option<UnitAttention> {
        if self.seen.insert(initiator) {
            self.queues.remove(&initiator);
            return Some(UnitAttention::PowerOnReset);
        }
        let queue = self.queues.get_mut(&initiator)?;
        let ua = queue.pop();
        if queue.is_empty() {
            self.queues.remove(&initiator);
        }
        ua
    }

    /// Posts `ua` to `initiator`. Nothing is queued for an initiator not yet seen: its POWER
    /// ON report supersedes every other condition.
    pub fn post(&mut self, initiator: u64, ua: UnitAttention) {
        if self.seen.contains(&initiator) {
            self.queues.entry(initiator).or_default().push(ua);
        }
    }

    /// Posts `ua` to every initiator of the LV (for example CAPACITY DATA HAS CHANGED).
    pub fn post_all(&mut self, ua: UnitAttention) {
        for &initiator in &self.seen {
            self.queues.entry(initiator).or_default().push(ua);
        }
    }

    /// Posts `ua` to every initiator of the LV except `except` (for example the preempting
    /// initiator of a PREEMPT).
    pub fn post_all_except(&mut self, except: u64, ua: UnitAttention) {
        for &initiator in self.seen.iter().filter(|&&i| i != except) {
            self.queues.entry(initiator).or_default().push(ua);
        }
    }

    /// A power on or reset of the LV: every initiator has POWER ON pending again and nothing
    /// else.
    pub fn reset(&mut self) {
        self.seen.clear();
        self.queues.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u64 = 0x2100_0000_0000_000A;
    const B: u64 = 0x2100_0000_0000_000B;
    const C: u64 = 0x2100_0000_0000_000C;

    #[test]
    fn new_initiators_get_power_on_once() {
        let mut u = UnitAttentions::new();
        assert_eq!(u.pending(A), Some(UnitAttention::PowerOnReset));
        assert!(u.has_pending(A));
        assert_eq!(u.take(A), Some(UnitAttention::PowerOnReset));
        assert!(u.has_seen(A));
        assert_eq!(u.pending(A), None);
        assert_eq!(u.take(A), None);
        assert!(!u.has_pending(A));
        assert_eq!(u.pending(B), Some(UnitAttention::PowerOnReset), "others still pending");
    }

    #[test]
    fn posts_reach_seen_initiators_oldest_first_without_duplicates() {
        let mut u = UnitAttentions::new();
        u.take(A);
        u.take(B);
        u.post_all(UnitAttention::CapacityDataHasChanged);
        u.post_all_except(A, UnitAttention::ReservationsPreempted);
        u.post_all(UnitAttention::CapacityDataHasChanged);
        u.post(C, UnitAttention::RegistrationsPreempted);
        assert_eq!(u.queue(A).unwrap().iter().collect::<Vec<_>>(), [UnitAttention::CapacityDataHasChanged]);
        assert_eq!(u.queue(B).unwrap().len(), 2);
        assert_eq!(u.take(B), Some(UnitAttention::CapacityDataHasChanged));
        assert_eq!(u.take(B), Some(UnitAttention::ReservationsPreempted));
        assert_eq!(u.take(B), None);
        assert!(u.queue(B).is_none(), "empty queues are not kept");
        assert_eq!(u.take(C), Some(UnitAttention::PowerOnReset), "power on supersedes");
        assert_eq!(u.take(C), None);
    }

    #[test]
    fn reset_makes_everyone_new_and_state_serializes() {
        let mut u = UnitAttentions::new();
        u.take(A);
        u.post(A, UnitAttention::ReservationsReleased);
        let json = serde_json::to_string(&u).unwrap();
        assert_eq!(serde_json::from_str::<UnitAttentions>(&json).unwrap(), u);
        u.reset();
        assert_eq!(u, UnitAttentions::new());
        assert_eq!(u.pending(A), Some(UnitAttention::PowerOnReset));
    }

    #[test]
    fn sense_codes() {
        let codes: Vec<(u8, u8)> = [
            UnitAttention::PowerOnReset,
            UnitAttention::CapacityDataHasChanged,
            UnitAttention::ReservationsPreempted,
            UnitAttention::RegistrationsPreempted,
            UnitAttention::ReservationsReleased,
        ]
        .iter()
        .map(|u| (u.asc().asc, u.asc().ascq))
        .collect();
        assert_eq!(codes, [(0x29, 0), (0x2A, 0x09), (0x2A, 0x03), (0x2A, 0x05), (0x2A, 0x04)]);
        assert_eq!(UnitAttention::PowerOnReset.key() as u8, 0x6);
    }
}
