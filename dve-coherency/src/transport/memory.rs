//! The in-memory network of the simulator and the checker, driven by the caller's virtual
//! clock: random delay with per-peer FIFO (so messages between different peers reorder but a
//! pair never does), crashes and partitions that lose what is in flight, and an optional raw
//! mode with independent loss and duplication to exercise the core's retry timers.

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::address::EngineId;
use crate::message::Envelope;

/// Behaviour of the simulated network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetworkConfig {
    /// Smallest delivery delay (ns).
    pub min_delay: u64,
    /// Largest delivery delay (ns).
    pub max_delay: u64,
    /// Raw mode: probability that a message is lost although both ends live and connect
    /// (0 models the reliable transport).
    pub loss: f64,
    /// Raw mode: probability that a message is delivered twice.
    pub duplication: f64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig { min_delay: 1, max_delay: 100, loss: 0.0, duplication: 0.0 }
    }
}

/// Counters, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Messages handed to `send`.
    pub sent: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Messages lost (crash, partition, raw loss).
    pub dropped: u64,
    /// Extra copies delivered (raw mode).
    pub duplicated: u64,
}

/// The simulated network between engines.
#[derive(Clone, Debug)]
pub struct SimNetwork {
    config: NetworkConfig,
    rng: ChaCha8Rng,
    in_flight: BTreeMap<(u64, u64), Envelope>,
    /// Last scheduled delivery per (from, to): keeps each pair FIFO.
    last: BTreeMap<(EngineId, EngineId), u64>,
    cut: BTreeSet<(EngineId, EngineId)>,
    down: BTreeSet<EngineId>,
    seq: u64,
    stats: NetworkStats,
}

fn pair(a: EngineId, b: EngineId) -> (EngineId, EngineId) {
    (a.min(b), a.max(b))
}

impl SimNetwork {
    /// A network whose randomness comes from `seed`.
    pub fn new(config: NetworkConfig, seed: u64) -> Self {
        SimNetwork {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            in_flight: BTreeMap::new(),
            last: BTreeMap::new(),
            cut: BTreeSet::new(),
            down: BTreeSet::new(),
            seq: 0,
            stats: NetworkStats::default(),
        }
    }

    /// Change the behaviour (e.g. stop raw loss when the network heals).
    pub fn set_config(&mut self, config: NetworkConfig) {
        self.config = config;
    }

    /// Counters so far.
    pub fn stats(&self) -> NetworkStats {
        self.stats
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn connected(&self, a: EngineId, b: EngineId) -> bool {
        !self.down.contains(&a) && !self.down.contains(&b) && !self.cut.contains(&pair(a, b))
    }

    /// Hand a message to the network at `now`.
    pub fn send(&mut self, now: u64, envelope: Envelope) {
        self.stats.sent += 1;
        if !self.connected(envelope.from, envelope.to)
            || (self.config.loss > 0.0 && self.rng.random_bool(self.config.loss))
        {
            self.stats.dropped += 1;
            return;
        }
        let copies = if self.config.duplication > 0.0 && self.rng.random_bool(self.config.duplication) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self
                .rng
                .random_range(self.config.min_delay..=self.config.max_delay.max(self.config.min_delay));
            let key = (envelope.from, envelope.to);
            let at = (now + delay).max(self.last.get(&key).map_or(0, |t| t + 1));
            self.last.insert(key, at);
            self.seq += 1;
            self.in_flight.insert((at, self.seq), envelope);
        }
    }

    /// When the next message arrives.
    pub fn next_delivery(&self) -> Option<u64> {
        self.in_flight.keys().next().map(|(at, _)| *at)
    }

    /// The next message due at `now`, if any.
    pub fn deliver(&mut self, now: u64) -> Option<Envelope> {
        let (&key, _) = self.in_flight.iter().next()?;
        if key.0 > now {
            return None;
        }
        let envelope = self.in_flight.remove(&key)?;
        self.stats.delivered += 1;
        Some(envelope)
    }

    fn drop_where(&mut self, lost: impl Fn(&Envelope) -> bool) {
        let before = self.in_flight.len();
        self.in_flight.retain(|_, e| !lost(e));
        self.stats.dropped += (before - self.in_flight.len()) as u64;
    }

    /// The engine crashed: everything to or from it is lost until it restarts.
    pub fn crash(&mut self, engine: EngineId) {
        self.down.insert(engine);
        self.drop_where(|e| e.from == engine || e.to == engine);
    }

    /// The engine is back (a new connection).
    pub fn restart(&mut self, engine: EngineId) {
        self.down.remove(&engine);
    }

    /// Cut the link between two engines; what is in flight between them is lost.
    pub fn partition(&mut self, a: EngineId, b: EngineId) {
        self.cut.insert(pair(a, b));
        self.drop_where(|e| pair(e.from, e.to) == pair(a, b));
    }

    /// Reconnect two engines.
    pub fn heal(&mut self, a: EngineId, b: EngineId) {
        self.cut.remove(&pair(a, b));
    }

    /// Reconnect everything and stop raw loss and duplication.
    pub fn heal_all(&mut self) {
        self.cut.clear();
        self.config.loss = 0.0;
        self.config.duplication = 0.0;
    }
}
