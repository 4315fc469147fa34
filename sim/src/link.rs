//! Full-duplex point-to-point links: latency, bandwidth, queueing, loss, corruption, up/down.
//!
//! A [`Link`] is two independent [`LinkDirection`]s. Each direction models one transmitter:
//!
//! - **Serialization.** A frame of `n` bytes occupies the wire for `(n + 20) * 8 / gbps`
//!   nanoseconds; the 20 bytes are the Ethernet preamble and start delimiter (8) and the
//!   inter-frame gap (12). Time is kept internally in picoseconds, so back-to-back frames do not
//!   accumulate rounding error; delivery times are rounded up to the next nanosecond.
//! - **Queueing.** Frames leave in FIFO order: a frame offered while earlier ones are still
//!   being serialized waits for them (the transmitter is busy until a known time).
//! - **Tail drop.** The bytes waiting or being serialized at the moment a frame is offered,
//!   plus the frame itself, may not exceed `queue_limit_bytes`; otherwise the frame is dropped
//!   ([`DropReason::QueueFull`]). A frame offered to an idle transmitter is always accepted.
//! - **Propagation.** A frame arrives `latency_ns` after its last bit left.
//! - **Loss and corruption.** A frame is lost with probability `loss` (it still used the wire)
//!   or, if not lost, delivered with one flipped bit with probability `corrupt`; the caller
//!   applies the flip at the [`LinkVerdict::Corrupt`]'s position, so the receiver's CRC check
//!   sees a real bad frame.
//! - **Up/down.** A direction that is down refuses frames ([`DropReason::Down`]). Taking it
//!   down discards everything queued or in flight and starts a new *epoch*; each accepted frame
//!   carries the epoch it was sent in, and the caller checks
//!   [`LinkDirection::is_delivery_valid`] when the delivery event fires.
//!
//! The direction draws random numbers only for loss and corruption, and none at all when those
//! probabilities are 0, so a clean link does not consume its stream.

use std::collections::VecDeque;

use serde::Serialize;

use crate::engine::{SimRng, SimTime};

/// Bytes of Ethernet overhead on the wire per frame: preamble and SFD (8) plus the minimum
/// inter-frame gap (12).
pub const ETHERNET_OVERHEAD_BYTES: u64 = 20;

/// Picoseconds per nanosecond.
const PS_PER_NS: u64 = 1_000;

/// Frames up to this many bits take [`LinkParams::whole_ps_per_bit`]'s exact path: `bits *
/// 1000` is below 2^53, so every floating-point step of [`LinkParams::serialization_ps`] is
/// exact.
const EXACT_BITS: u64 = 1 << 42;

/// The physical parameters of one link direction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinkParams {
    /// Propagation latency, nanoseconds.
    pub latency_ns: u64,
    /// Bandwidth in gigabits per second. A value that is not a positive number means "no
    /// serialization delay".
    pub gbps: f64,
    /// Tail-drop limit on the bytes waiting or being serialized.
    pub queue_limit_bytes: u64,
    /// Probability that a frame is lost on the wire, `0..=1`.
    pub loss: f64,
    /// Probability that a frame that was not lost arrives with one bit flipped, `0..=1`.
    pub corrupt: f64,
}

impl Default for LinkParams {
    /// 500 ns, 10 Gb/s, 16 MiB of queue (FCoE runs on lossless Ethernet: a deep queue
    /// stands for PFC pause), no loss, no corruption.
    fn default() -> Self {
        LinkParams {
            latency_ns: 500,
            gbps: 10.0,
            queue_limit_bytes: 16 * 1024 * 1024,
            loss: 0.0,
            corrupt: 0.0,
        }
    }
}

impl LinkParams {
    /// Picoseconds per bit when that is a whole number, as for the usual rates (10, 25, 40,
    /// 100 Gb/s: a whole number of gigabits dividing 1000). Then a frame's serialization time
    /// is `bits * ps_per_bit` exactly: [`LinkParams::serialization_ps`]'s quotient
    /// `bits * 1000 / gbps` is that integer, computed exactly in floating point while
    /// `bits * 1000` stays below 2^53 (see [`EXACT_BITS`]).
    pub fn whole_ps_per_bit(&self) -> Option<u64> {
        let gbps = self.gbps;
        if !((1.0..=PS_PER_NS as f64).contains(&gbps) && gbps.fract() == 0.0) {
            return None;
        }
        let whole = gbps as u64;
        PS_PER_NS.is_multiple_of(whole).then(|| PS_PER_NS / whole)
    }

    /// Picoseconds the wire is busy with a frame of `frame_len` bytes (overhead included).
    pub fn serialization_ps(&self, frame_len: usize) -> u64 {
        if !(self.gbps.is_finite() && self.gbps > 0.0) {
            return 0;
        }
        let bits = (frame_len as u64).saturating_add(ETHERNET_OVERHEAD_BYTES).saturating_mul(8);
        // bits / (gbps * 1e9) seconds = bits * 1000 / gbps picoseconds.
        let ps = (bits as f64 * PS_PER_NS as f64 / self.gbps).round();
        if ps >= u64::MAX as f64 { u64::MAX } else { ps as u64 }
    }

    /// Nanoseconds (rounded up) the wire is busy with a frame of `frame_len` bytes.
    pub fn serialization_ns(&self, frame_len: usize) -> u64 {
        self.serialization_ps(frame_len).div_ceil(PS_PER_NS)
    }
}

/// Why a link did not deliver a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropReason {
    /// Lost on the wire (random loss).
    Lost,
    /// Tail-dropped: the transmit queue was full.
    QueueFull,
    /// The link was down when the frame was offered or went down while it was in flight.
    Down,
}

impl DropReason {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Lost => "lost",
            DropReason::QueueFull => "queue-full",
            DropReason::Down => "down",
        }
    }
}

/// What happens to a frame offered to a link direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkVerdict {
    /// The frame arrives intact at `at`, if the link is still in `epoch` then.
    Deliver {
        /// Arrival time of the frame's last bit.
        at: SimTime,
        /// The link epoch the frame was sent in; see [`LinkDirection::is_delivery_valid`].
        epoch: u64,
    },
    /// The frame never arrives.
    Drop(DropReason),
    /// The frame arrives at `at` with bit `bit` (0 = least significant) of byte `byte_index`
    /// flipped; the caller applies the flip.
    Corrupt {
        /// Arrival time of the frame's last bit.
        at: SimTime,
        /// The link epoch the frame was sent in.
        epoch: u64,
        /// Which byte of the frame to damage.
        byte_index: usize,
        /// Which bit of that byte to flip, `0..8`.
        bit: u8,
    },
}

impl LinkVerdict {
    /// The arrival time and epoch, for both intact and corrupted deliveries.
    pub fn arrival(&self) -> Option<(SimTime, u64)> {
        match *self {
            LinkVerdict::Deliver { at, epoch } | LinkVerdict::Corrupt { at, epoch, .. } => Some((at, epoch)),
            LinkVerdict::Drop(_) => None,
        }
    }
}

/// Counters of one link direction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LinkCounters {
    /// Frames accepted for transmission (including those later lost or discarded by a down).
    pub frames: u64,
    /// Bytes of the accepted frames (without the Ethernet overhead).
    pub bytes: u64,
    /// Frames lost on the wire.
    pub dropped_lost: u64,
    /// Frames tail-dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Frames refused while down, or queued or in flight when the link went down.
    pub dropped_down: u64,
    /// Frames delivered with a flipped bit.
    pub corrupted: u64,
    /// The largest number of bytes ever waiting or being serialized.
    pub max_queue_bytes: u64,
}

impl LinkCounters {
    /// All dropped frames, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_lost + self.dropped_queue_full + self.dropped_down
    }

    /// Adds `other` into `self` (the maximum queue takes the larger).
    pub fn merge(&mut self, other: &LinkCounters) {
        self.frames += other.frames;
        self.bytes += other.bytes;
        self.dropped_lost += other.dropped_lost;
        self.dropped_queue_full += other.dropped_queue_full;
        self.dropped_down += other.dropped_down;
        self.corrupted += other.corrupted;
        self.max_queue_bytes = self.max_queue_bytes.max(other.max_queue_bytes);
    }
}

/// One direction of a link: a FIFO transmitter, a wire and a receiver.
#[derive(Clone, Debug)]
pub struct LinkDirection {
    params: LinkParams,
    up: bool,
    epoch: u64,
    /// When the transmitter finishes the last accepted frame, picoseconds.
    busy_until_ps: u64,
    /// Frames not yet fully serialized: (finish time in ps, frame bytes), in FIFO order.
    transmit_queue: VecDeque<(u64, u64)>,
    /// Sum of the bytes in `transmit_queue`.
    queued_bytes: u64,
    /// Arrival times (ps) of accepted, not lost frames that have not arrived yet, in order.
    in_flight: VecDeque<u64>,
    /// The latest arrival time (ps) ever put in `in_flight`: once it has passed, every frame
    /// has arrived and `in_flight` empties at once.
    last_arrival_ps: u64,
    counters: LinkCounters,
    /// Serialization times already computed, by frame length modulo its size: (length,
    /// picoseconds). A run has few distinct frame lengths, and the computation (a float
    /// division and a rounding) costs more than the lookup.
    serialization_cache: [Option<(usize, u64)>; SERIALIZATION_CACHE],
    /// [`LinkParams::whole_ps_per_bit`] of the parameters in force: most links' rates need
    /// neither the floating-point computation nor the cache.
    ps_per_bit: Option<u64>,
}

/// Entries of [`LinkDirection`]'s serialization cache.
const SERIALIZATION_CACHE: usize = 8;

impl LinkDirection {
    /// An idle direction, up, in epoch 0.
    pub fn new(params: LinkParams) -> LinkDirection {
        LinkDirection {
            ps_per_bit: params.whole_ps_per_bit(),
            params,
            up: true,
            epoch: 0,
            busy_until_ps: 0,
            transmit_queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight: VecDeque::new(),
            last_arrival_ps: 0,
            counters: LinkCounters::default(),
            serialization_cache: [None; SERIALIZATION_CACHE],
        }
    }

    /// [`LinkParams::serialization_ps`] of the parameters in force, cached.
    fn serialization_ps(&mut self, frame_len: usize) -> u64 {
        if let Some(ps_per_bit) = self.ps_per_bit {
            let bits = (frame_len as u64).saturating_add(ETHERNET_OVERHEAD_BYTES).saturating_mul(8);
            if bits < EXACT_BITS {
                return bits * ps_per_bit;
            }
        }
        let entry = &mut self.serialization_cache[frame_len % SERIALIZATION_CACHE];
        match *entry {
            Some((len, ps)) if len == frame_len => ps,
            _ => {
                let ps = self.params.serialization_ps(frame_len);
                *entry = Some((frame_len, ps));
                ps
            }
        }
    }

    /// The parameters in force.
    pub fn params(&self) -> &LinkParams {
        &self.params
    }

    /// Replaces the parameters (e.g. to raise the loss rate mid-run). Frames already accepted
    /// keep the timing they were given.
    pub fn set_params(&mut self, params: LinkParams) {
        self.ps_per_bit = params.whole_ps_per_bit();
        self.params = params;
        self.serialization_cache = [None; SERIALIZATION_CACHE];
    }

    /// Whether the direction is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The current epoch: it advances each time the direction goes down.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The counters so far.
    pub fn counters(&self) -> &LinkCounters {
        &self.counters
    }

    /// Bytes waiting or being serialized at `now`.
    pub fn queued_bytes(&mut self, now: SimTime) -> u64 {
        self.retire(now_ps(now));
        self.queued_bytes
    }

    /// Forgets frames that finished serializing or arrived by `now_ps`.
    fn retire(&mut self, now_ps: u64) {
        // Most frames find their direction idle, every earlier frame serialized and arrived:
        // both lists empty at once instead of entry by entry.
        if self.busy_until_ps <= now_ps {
            self.transmit_queue.clear();
            self.queued_bytes = 0;
            if self.last_arrival_ps <= now_ps {
                self.in_flight.clear();
                return;
            }
        }
        while let Some(&(finish_ps, bytes)) = self.transmit_queue.front() {
            if finish_ps > now_ps {
                break;
            }
            self.transmit_queue.pop_front();
            self.queued_bytes -= bytes;
        }
        while let Some(&arrival_ps) = self.in_flight.front() {
            if arrival_ps > now_ps {
                break;
            }
            self.in_flight.pop_front();
        }
    }

    /// Offers a frame of `frame_len` bytes at `now` and says what becomes of it. Random
    /// draws (loss, corruption) come from `rng`, which should be this direction's own fork.
    pub fn send(&mut self, now: SimTime, frame_len: usize, rng: &mut SimRng) -> LinkVerdict {
        if !self.up {
            self.counters.dropped_down += 1;
            return LinkVerdict::Drop(DropReason::Down);
        }
        let now_ps = now_ps(now);
        self.retire(now_ps);
        let frame_bytes = frame_len as u64;
        if self.queued_bytes > 0
            && self.queued_bytes.saturating_add(frame_bytes) > self.params.queue_limit_bytes
        {
            self.counters.dropped_queue_full += 1;
            return LinkVerdict::Drop(DropReason::QueueFull);
        }

        let start_ps = now_ps.max(self.busy_until_ps);
        let finish_ps = start_ps.saturating_add(self.serialization_ps(frame_len));
        self.busy_until_ps = finish_ps;
        self.transmit_queue.push_back((finish_ps, frame_bytes));
        self.queued_bytes += frame_bytes;
        self.counters.max_queue_bytes = self.counters.max_queue_bytes.max(self.queued_bytes);
        self.counters.frames += 1;
        self.counters.bytes += frame_bytes;

        if rng.chance(self.params.loss) {
            self.counters.dropped_lost += 1;
            return LinkVerdict::Drop(DropReason::Lost);
        }
        let arrival_ps = finish_ps.saturating_add(self.params.latency_ns.saturating_mul(PS_PER_NS));
        self.in_flight.push_back(arrival_ps);
        self.last_arrival_ps = self.last_arrival_ps.max(arrival_ps);
        let at = SimTime(arrival_ps.div_ceil(PS_PER_NS));
        let epoch = self.epoch;
        if frame_len > 0 && rng.chance(self.params.corrupt) {
            self.counters.corrupted += 1;
            let byte_index = rng.below(frame_bytes) as usize;
            let bit = rng.below(8) as u8;
            return LinkVerdict::Corrupt { at, epoch, byte_index, bit };
        }
        LinkVerdict::Deliver { at, epoch }
    }

    /// Brings the direction up or down at `now`. Going down discards every frame queued or
    /// in flight (counted as [`DropReason::Down`]) and advances the epoch; coming up starts
    /// with an idle transmitter. Setting the state it already has changes nothing.
    pub fn set_up(&mut self, now: SimTime, up: bool) {
        if up == self.up {
            return;
        }
        let now_ps = now_ps(now);
        if up {
            self.up = true;
            self.busy_until_ps = self.busy_until_ps.max(now_ps);
        } else {
            self.retire(now_ps);
            self.counters.dropped_down += self.in_flight.len() as u64;
            self.in_flight.clear();
            self.transmit_queue.clear();
            self.queued_bytes = 0;
            self.busy_until_ps = now_ps;
            self.epoch += 1;
            self.up = false;
        }
    }

    /// Whether a frame sent in `epoch` may be delivered now: the direction is up and has not
    /// been down since the frame was sent.
    pub fn is_delivery_valid(&self, epoch: u64) -> bool {
        self.up && epoch == self.epoch
    }
}

/// Nanoseconds to picoseconds, saturating.
fn now_ps(now: SimTime) -> u64 {
    now.as_ns().saturating_mul(PS_PER_NS)
}

/// Which way a frame travels on a [`Link`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// From end A to end B.
    AToB,
    /// From end B to end A.
    BToA,
}

/// A full-duplex cable: two independent directions with the same parameters.
#[derive(Clone, Debug)]
pub struct Link {
    /// Frames from end A to end B.
    pub a_to_b: LinkDirection,
    /// Frames from end B to end A.
    pub b_to_a: LinkDirection,
}

impl Link {
    /// A link whose two directions both have `params`.
    pub fn new(params: LinkParams) -> Link {
        Link { a_to_b: LinkDirection::new(params.clone()), b_to_a: LinkDirection::new(params) }
    }

    /// The direction `direction`.
    pub fn direction(&self, direction: Direction) -> &LinkDirection {
        match direction {
            Direction::AToB => &self.a_to_b,
            Direction::BToA => &self.b_to_a,
        }
    }

    /// The direction `direction`, mutably.
    pub fn direction_mut(&mut self, direction: Direction) -> &mut LinkDirection {
        match direction {
            Direction::AToB => &mut self.a_to_b,
            Direction::BToA => &mut self.b_to_a,
        }
    }

    /// Brings both directions up or down (cutting or restoring the cable).
    pub fn set_up(&mut self, now: SimTime, up: bool) {
        self.a_to_b.set_up(now, up);
        self.b_to_a.set_up(now, up);
    }

    /// Whether both directions are up.
    pub fn is_up(&self) -> bool {
        self.a_to_b.is_up() && self.b_to_a.is_up()
    }

    /// Both directions' counters added together.
    pub fn total_counters(&self) -> LinkCounters {
        let mut total = self.a_to_b.counters().clone();
        total.merge(self.b_to_a.counters());
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(latency_ns: u64, gbps: f64, queue_limit_bytes: u64) -> LinkParams {
        LinkParams { latency_ns, gbps, queue_limit_bytes, loss: 0.0, corrupt: 0.0 }
    }

    #[test]
    fn serialization_includes_the_ethernet_overhead() {
        let params = clean(0, 10.0, 1 << 20);
        // (2148 + 20) bytes * 8 bits at 10 Gb/s = 1734.4 ns.
        assert_eq!(params.serialization_ps(2148), 1_734_400);
        assert_eq!(params.serialization_ns(2148), 1_735);
        // A 64-byte frame at 25 Gb/s: 84 * 8 / 25 = 26.88 ns.
        assert_eq!(clean(0, 25.0, 0).serialization_ps(64), 26_880);
        assert_eq!(clean(0, 0.0, 0).serialization_ps(64), 0);
        assert_eq!(clean(0, f64::NAN, 0).serialization_ps(64), 0);
    }

    #[test]
    fn whole_picoseconds_per_bit_time_frames_as_the_division_does() {
        for gbps in
            [1.0, 2.0, 4.0, 5.0, 8.0, 10.0, 20.0, 25.0, 40.0, 50.0, 100.0, 125.0, 200.0, 250.0, 500.0, 1000.0]
        {
            let params = clean(0, gbps, 1 << 20);
            assert!(params.whole_ps_per_bit().is_some(), "{gbps}");
            let mut dir = LinkDirection::new(params.clone());
            for len in (0..20_000).chain([1 << 30, (1 << 39) - 21, 1 << 39, usize::MAX]) {
                assert_eq!(
                    dir.serialization_ps(len),
                    params.serialization_ps(len),
                    "{gbps} Gb/s, {len} bytes"
                );
            }
        }
        for gbps in [0.0, -10.0, 0.5, 3.0, 7.0, 12.5, 400.0, 2000.0, f64::NAN, f64::INFINITY] {
            assert_eq!(clean(0, gbps, 0).whole_ps_per_bit(), None, "{gbps}");
        }
    }

    #[test]
    fn back_to_back_frames_queue_behind_each_other() {
        let mut rng = SimRng::new(1);
        let mut dir = LinkDirection::new(clean(500, 10.0, 1 << 20));
        // First frame: 1734.4 ns on the wire + 500 ns = 2234.4 -> 2235.
        assert_eq!(
            dir.send(SimTime(0), 2148, &mut rng),
            LinkVerdict::Deliver { at: SimTime(2235), epoch: 0 }
        );
        // Second, offered at the same time: waits; finishes at 3468.8, arrives 3968.8 -> 3969.
        assert_eq!(
            dir.send(SimTime(0), 2148, &mut rng),
            LinkVerdict::Deliver { at: SimTime(3969), epoch: 0 }
        );
        assert_eq!(dir.queued_bytes(SimTime(0)), 2 * 2148);
        // After the first finished serializing, only the second is queued.
        assert_eq!(dir.queued_bytes(SimTime(1735)), 2148);
        assert_eq!(dir.queued_bytes(SimTime(3469)), 0);
        // An idle link later: no queueing delay.
        assert_eq!(
            dir.send(SimTime(10_000), 2148, &mut rng),
            LinkVerdict::Deliver { at: SimTime(12_235), epoch: 0 }
        );
        assert_eq!(dir.counters().frames, 3);
        assert_eq!(dir.counters().bytes, 3 * 2148);
        assert_eq!(dir.counters().max_queue_bytes, 2 * 2148);
    }

    #[test]
    fn no_rounding_drift_over_many_frames() {
        let mut rng = SimRng::new(1);
        let mut dir = LinkDirection::new(clean(0, 10.0, u64::MAX));
        let mut last = SimTime::ZERO;
        for _ in 0..1000 {
            last = dir.send(SimTime(0), 2148, &mut rng).arrival().map(|(at, _)| at).unwrap_or_default();
        }
        // 1000 * 1734.4 ns exactly.
        assert_eq!(last, SimTime(1_734_400));
    }

    #[test]
    fn tail_drop_when_the_queue_is_full() {
        let mut rng = SimRng::new(1);
        let mut dir = LinkDirection::new(clean(0, 1.0, 5000));
        // An idle link always accepts, even a frame over the limit.
        assert!(matches!(dir.send(SimTime(0), 6000, &mut rng), LinkVerdict::Deliver { .. }));
        assert_eq!(dir.send(SimTime(0), 100, &mut rng), LinkVerdict::Drop(DropReason::QueueFull));
        // 6020 bytes at 1 Gb/s = 48160 ns; afterwards the queue is empty again.
        assert!(matches!(dir.send(SimTime(48_160), 2000, &mut rng), LinkVerdict::Deliver { .. }));
        assert!(matches!(dir.send(SimTime(48_160), 3000, &mut rng), LinkVerdict::Deliver { .. }));
        assert_eq!(dir.send(SimTime(48_160), 1, &mut rng), LinkVerdict::Drop(DropReason::QueueFull));
        assert_eq!(dir.counters().dropped_queue_full, 2);
        assert_eq!(dir.counters().dropped(), 2);
        assert_eq!(dir.counters().max_queue_bytes, 6000);
    }

    #[test]
    fn down_drops_frames_in_flight_and_refuses_new_ones() {
        let mut rng = SimRng::new(1);
        let mut dir = LinkDirection::new(clean(1000, 10.0, 1 << 20));
        let (_, epoch) = dir.send(SimTime(0), 1000, &mut rng).arrival().unwrap_or_default();
        let _ = dir.send(SimTime(0), 1000, &mut rng);
        assert!(dir.is_delivery_valid(epoch));
        dir.set_up(SimTime(100), false);
        assert!(!dir.is_up());
        assert!(!dir.is_delivery_valid(epoch));
        assert_eq!(dir.counters().dropped_down, 2);
        assert_eq!(dir.send(SimTime(200), 1000, &mut rng), LinkVerdict::Drop(DropReason::Down));
        assert_eq!(dir.counters().dropped_down, 3);
        dir.set_up(SimTime(300), true);
        // The old epoch stays invalid after the link comes back.
        assert!(!dir.is_delivery_valid(epoch));
        let verdict = dir.send(SimTime(300), 1000, &mut rng);
        let (at, new_epoch) = verdict.arrival().unwrap_or_default();
        assert_eq!(new_epoch, 1);
        assert!(dir.is_delivery_valid(new_epoch));
        // The transmitter restarted idle: 1020 * 0.8 ns + 1000 ns after 300.
        assert_eq!(at, SimTime(300 + 816 + 1000));
        // Frames that already arrived are not counted when the link goes down.
        dir.set_up(SimTime(100_000), false);
        assert_eq!(dir.counters().dropped_down, 3);
    }

    #[test]
    fn loss_and_corruption_are_deterministic() {
        let params =
            LinkParams { latency_ns: 100, gbps: 10.0, queue_limit_bytes: u64::MAX, loss: 0.1, corrupt: 0.05 };
        let run = |seed: u64| {
            let mut rng = SimRng::new(seed).fork("link");
            let mut dir = LinkDirection::new(params.clone());
            let verdicts: Vec<_> = (0..2000).map(|i| dir.send(SimTime(i * 10_000), 512, &mut rng)).collect();
            (verdicts, dir.counters().clone())
        };
        let (first, counters) = run(9);
        let (second, counters_again) = run(9);
        assert_eq!(first, second);
        assert_eq!(counters, counters_again);
        assert!((100..300).contains(&counters.dropped_lost), "{counters:?}");
        assert!((40..160).contains(&counters.corrupted), "{counters:?}");
        for verdict in &first {
            if let LinkVerdict::Corrupt { byte_index, bit, .. } = *verdict {
                assert!(byte_index < 512 && bit < 8);
            }
        }
        let (other, _) = run(10);
        assert_ne!(first, other);
    }

    #[test]
    fn clean_links_draw_no_random_numbers() {
        let mut rng = SimRng::new(5);
        let mut reference = rng.clone();
        let mut dir = LinkDirection::new(LinkParams::default());
        for i in 0..10 {
            let _ = dir.send(SimTime(i * 1000), 100, &mut rng);
        }
        use rand::RngCore;
        assert_eq!(rng.next_u64(), reference.next_u64());
    }

    #[test]
    fn full_duplex_directions_are_independent() {
        let mut rng = SimRng::new(1);
        let mut link = Link::new(clean(100, 10.0, 1 << 20));
        let forward = link.direction_mut(Direction::AToB).send(SimTime(0), 2148, &mut rng);
        let backward = link.direction_mut(Direction::BToA).send(SimTime(0), 2148, &mut rng);
        assert_eq!(forward, backward);
        link.set_up(SimTime(10), false);
        assert!(!link.is_up());
        assert_eq!(link.total_counters().dropped_down, 2);
        link.set_up(SimTime(20), true);
        assert!(link.is_up());
        assert_eq!(link.direction(Direction::AToB).epoch(), 1);
    }
}
