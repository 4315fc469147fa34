//! A whole cluster in one deterministic world for the checkers: engines, the shared store, the
//! simulated network, a model of each engine's control path (cache, purges, updates, cleanups)
//! and a model of the metadata the oplocks protect; invariants checked after every step.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

use dve_coherency::transport::memory::{NetworkConfig, SimNetwork};
use dve_coherency::{
    Engine, EngineConfig, EngineId, Event, MemoryStore, OplockAddress, OplockState, RecoveredOplock,
    SharedStore, UpdateKind,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a schedule may do.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub engines: usize,
    pub oplocks: usize,
    pub actions: usize,
    pub crashes: bool,
    pub partitions: bool,
    pub raw_loss: bool,
    /// Raw loss and duplication probability when `raw_loss`.
    pub loss: f64,
    /// Percentage of actions that crash an engine (when `crashes`).
    pub crash_percent: u32,
    /// Made by `harsh_scenario_for` (the replay needs `DVE_COHERENCY_HARSH=1`).
    pub harsh: bool,
}

pub const ACK_TIMEOUT: u64 = 1_000;
pub const LIVENESS_BOUND: u64 = 200_000;

pub fn engine_config(id: EngineId) -> EngineConfig {
    EngineConfig {
        id,
        ack_timeout: ACK_TIMEOUT,
        retry_interval: 400,
        boot_wait: 2_000,
        membership_check_interval: 500,
        sweep_interval: 4_000,
        sweep_age: 3_000,
        eviction_grace: 600,
    }
}

/// The metadata one oplock protects, as versions.
#[derive(Clone, Debug, Default)]
pub struct Meta {
    /// On media.
    pub media: u64,
    /// Last completed update.
    pub latest: u64,
    /// Last completed restrictive update.
    pub latest_restrictive: u64,
    /// Unflushed unrestrictive updates per engine metadata journal.
    pub journals: BTreeMap<EngineId, u64>,
}

#[derive(Clone, Debug)]
enum Work {
    Purge { oplock: OplockAddress, token: u64, flush: bool },
    Update { oplock: OplockAddress, kind: UpdateKind },
    Cleanup { victim: EngineId, recovered: Vec<RecoveredOplock> },
    Replay { recovered: Vec<RecoveredOplock> },
}

/// The control path of one engine, as the checker models it.
#[derive(Clone, Debug, Default)]
pub struct Cp {
    pub cache: BTreeMap<OplockAddress, u64>,
    work: BTreeMap<(u64, u64), Work>,
    /// Acquire requests not yet granted: oplock → kind.
    pub outstanding: BTreeMap<OplockAddress, UpdateKind>,
}

pub struct World {
    pub seed: u64,
    pub scenario: Scenario,
    pub now: u64,
    pub store: MemoryStore,
    pub engines: Vec<Option<Engine>>,
    pub cps: Vec<Cp>,
    pub net: SimNetwork,
    pub meta: BTreeMap<OplockAddress, Meta>,
    pub oplocks: Vec<OplockAddress>,
    rng: ChaCha8Rng,
    seq: u64,
    restarts: BTreeMap<EngineId, u64>,
    heals: BTreeMap<u64, (EngineId, EngineId)>,
    pub trace: VecDeque<String>,
    pub steps: u64,
    pub verbose: bool,
    pub evictions: u64,
    pub acquisitions: u64,
    pub cascades: u64,
    pub replays: u64,
    pub sweeps: u64,
    pub self_evictions: u64,
    last_was_action: bool,
}

fn oplock_set(n: usize) -> Vec<OplockAddress> {
    (0..n)
        .map(|i| {
            if i % 2 == 1 {
                OplockAddress::mirror_write(7, i as u64 * 64, 64)
            } else {
                OplockAddress::rmap(7, i as u64 * 64, 64)
            }
        })
        .collect()
}

impl World {
    pub fn new(seed: u64, scenario: Scenario) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let net_config = NetworkConfig {
            min_delay: 1,
            max_delay: 100,
            loss: if scenario.raw_loss { scenario.loss } else { 0.0 },
            duplication: if scenario.raw_loss { scenario.loss } else { 0.0 },
        };
        let net = SimNetwork::new(net_config, rng.random());
        let oplocks = oplock_set(scenario.oplocks);
        let mut world = World {
            seed,
            scenario,
            now: 0,
            store: MemoryStore::new(),
            engines: Vec::new(),
            cps: vec![Cp::default(); scenario.engines],
            net,
            meta: oplocks.iter().map(|o| (*o, Meta::default())).collect(),
            oplocks,
            rng,
            seq: 0,
            restarts: BTreeMap::new(),
            heals: BTreeMap::new(),
            trace: VecDeque::new(),
            steps: 0,
            verbose: false,
            evictions: 0,
            acquisitions: 0,
            cascades: 0,
            replays: 0,
            sweeps: 0,
            self_evictions: 0,
            last_was_action: false,
        };
        for id in 0..scenario.engines as EngineId {
            let engine = Engine::boot(engine_config(id), 0, &mut world.store);
            world.engines.push(Some(engine));
            world.drain(id as usize);
        }
        world
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        let line = format!("t={} {}", self.now, line());
        if self.verbose {
            eprintln!("{line}");
        }
        self.trace.push_back(line);
        if self.trace.len() > 400 {
            self.trace.pop_front();
        }
    }

    pub fn failure(&self, what: &str) -> String {
        let mut out = format!(
            "seed {} ({:?}) failed at t={}: {what}\nreplay: {}DVE_COHERENCY_SEED={} cargo test -p dve-coherency --test checker replay -- --nocapture\nlast steps:\n",
            self.seed,
            self.scenario,
            self.now,
            if self.scenario.harsh { "DVE_COHERENCY_HARSH=1 " } else { "" },
            self.seed
        );
        for line in &self.trace {
            let _ = writeln!(out, "  {line}");
        }
        out
    }

    /// Live, online, not evicted: its view counts.
    pub fn is_authoritative(&self, id: usize) -> bool {
        let Some(engine) = &self.engines[id] else {
            return false;
        };
        engine.is_online()
            && self.store.members().get(&(id as EngineId)) == Some(&engine.incarnation())
            && self.store.eviction_of(id as EngineId).is_none()
    }

    fn schedule(&mut self, id: usize, delay: u64, work: Work) {
        self.seq += 1;
        self.cps[id].work.insert((self.now + delay, self.seq), work);
    }

    /// Move an engine's outputs to the network and its control path.
    fn drain(&mut self, id: usize) {
        loop {
            let Some(engine) = self.engines[id].as_mut() else {
                return;
            };
            if let Some(envelope) = engine.poll_transmit() {
                self.net.send(self.now, envelope);
                continue;
            }
            let Some(event) = engine.poll_event() else {
                return;
            };
            self.on_event(id, event);
        }
    }

    fn read(&self, id: usize, oplock: OplockAddress) -> u64 {
        let meta = &self.meta[&oplock];
        meta.media.max(meta.journals.get(&(id as EngineId)).copied().unwrap_or(0))
    }

    fn on_event(&mut self, id: usize, event: Event) {
        self.log(|| format!("e{id} event {event:?}"));
        match event {
            Event::Online { .. } => {}
            Event::Shared { oplock } => {
                let value = self.read(id, oplock);
                self.cps[id].cache.insert(oplock, value);
            }
            Event::Acquired { oplock, .. } => {
                self.acquisitions += 1;
                let value = self.read(id, oplock);
                self.cps[id].cache.insert(oplock, value);
                let kind = self.cps[id].outstanding.remove(&oplock).unwrap_or(UpdateKind::Restrictive);
                let delay = self.rng.random_range(1..300);
                self.schedule(id, delay, Work::Update { oplock, kind });
            }
            Event::Purge { oplock, flush_dirty, blocking, token, reason, .. } => {
                if reason == dve_coherency::PurgeReason::Sweep {
                    self.sweeps += 1;
                }
                // A blocking purge keeps using the old copy (FP I/O draining) until the control
                // path completes it.
                if !blocking {
                    self.cps[id].cache.remove(&oplock);
                }
                if blocking {
                    let delay = self.rng.random_range(1..200);
                    self.schedule(id, delay, Work::Purge { oplock, token, flush: flush_dirty });
                }
            }
            Event::Caretaker { victim, oplocks, cascaded, .. } => {
                self.evictions += 1;
                if !cascaded.is_empty() {
                    self.cascades += 1;
                }
                let delay = self.rng.random_range(100..1_000);
                self.schedule(id, delay, Work::Cleanup { victim, recovered: oplocks });
            }
            Event::Replay { oplocks, .. } => {
                self.replays += 1;
                let delay = self.rng.random_range(100..1_000);
                self.schedule(id, delay, Work::Replay { recovered: oplocks });
            }
            Event::Evicted => {
                self.self_evictions += 1;
                self.cps[id] = Cp::default();
            }
        }
    }

    fn flush(&mut self, journal: EngineId, oplock: OplockAddress) {
        if let Some(meta) = self.meta.get_mut(&oplock)
            && let Some(version) = meta.journals.remove(&journal)
        {
            meta.media = meta.media.max(version);
        }
    }

    fn do_work(&mut self, id: usize, work: Work) -> Result<(), String> {
        let me = id as EngineId;
        // The store fences an evicted engine: its control path writes nothing any more.
        let fenced =
            self.store.eviction_of(me).is_some() && self.engines[id].as_ref().is_some_and(|e| e.is_online());
        self.log(|| format!("e{id} work {work:?}{}", if fenced { " (fenced)" } else { "" }));
        let now = self.now;
        let Some(engine) = self.engines[id].as_mut() else {
            return Ok(());
        };
        match work {
            Work::Purge { oplock, token, flush } => {
                self.cps[id].cache.remove(&oplock);
                if flush && !fenced {
                    self.flush(me, oplock);
                }
                let engine = self.engines[id].as_mut().expect("live");
                let _ = engine.purge_complete(now, &mut self.store, oplock, token);
            }
            Work::Update { oplock, kind } => {
                if engine.oplock(&oplock).map(|o| o.state()) != Some(OplockState::Acquired) {
                    return Ok(());
                }
                if !fenced && kind == UpdateKind::Restrictive {
                    // Restrictive: every peer purged and drained the old value first.
                    for other in 0..self.engines.len() {
                        if other != id && self.engines[other].is_some() && self.uses_copy(other, oplock) {
                            return Err(format!(
                                "e{id} updates {oplock} restrictively while e{other} still uses version {:?}",
                                self.cps[other].cache.get(&oplock)
                            ));
                        }
                    }
                }
                if !fenced {
                    let meta = self.meta.get_mut(&oplock).expect("oplock");
                    let version = meta.latest + 1;
                    meta.latest = version;
                    match kind {
                        UpdateKind::Restrictive => {
                            meta.media = version;
                            meta.latest_restrictive = version;
                            meta.journals.remove(&me);
                        }
                        UpdateKind::Unrestrictive => {
                            meta.journals.insert(me, version);
                        }
                    }
                    self.cps[id].cache.insert(oplock, version);
                }
                let engine = self.engines[id].as_mut().expect("live");
                engine.release(now, &mut self.store, oplock).map_err(|e| e.to_string())?;
            }
            Work::Cleanup { victim, recovered } => {
                if fenced {
                    return Ok(());
                }
                let record = self.store.eviction_of(victim);
                if !engine.cleanups_owed().any(|v| *v == victim) {
                    return Ok(());
                }
                match record {
                    Some(r) if r.caretaker == me && !r.done => {}
                    other => {
                        return Err(format!(
                            "e{id} completes cleanup of e{victim} but the elist says {other:?}"
                        ));
                    }
                }
                for r in &recovered {
                    if r.owned_by.is_some() && self.store.owner(r.oplock) != Some(me) {
                        return Err(format!(
                            "e{id} recovers {} of e{victim} but the owner record is {:?}",
                            r.oplock,
                            self.store.owner(r.oplock)
                        ));
                    }
                }
                for r in &recovered {
                    for journal in &r.dirty {
                        self.flush(*journal, r.oplock);
                    }
                }
                let engine = self.engines[id].as_mut().expect("live");
                engine.cleanup_complete(now, &mut self.store, victim).map_err(|e| e.to_string())?;
            }
            Work::Replay { recovered } => {
                if engine.is_online() {
                    return Ok(());
                }
                for r in &recovered {
                    for journal in &r.dirty {
                        if self.store.journal_holder(*journal) == Some(me) {
                            self.flush(*journal, r.oplock);
                        }
                    }
                }
                let engine = self.engines[id].as_mut().expect("live");
                let _ = engine.replay_complete(now, &mut self.store);
            }
        }
        Ok(())
    }

    fn crash(&mut self, id: usize) {
        self.log(|| format!("e{id} CRASH"));
        self.engines[id] = None;
        self.cps[id] = Cp::default();
        self.net.crash(id as EngineId);
        let delay = self.rng.random_range(500..6_000);
        self.restarts.insert(id as EngineId, self.now + delay);
    }

    fn restart(&mut self, id: usize) {
        self.log(|| format!("e{id} RESTART"));
        self.net.restart(id as EngineId);
        self.engines[id] = Some(Engine::boot(engine_config(id as EngineId), self.now, &mut self.store));
        self.drain(id);
    }

    fn random_action(&mut self) {
        let n = self.scenario.engines;
        let roll = self.rng.random_range(0..100);
        let down = self.engines.iter().filter(|e| e.is_none()).count();
        if self.scenario.crashes && roll < self.scenario.crash_percent && down + 1 < n {
            let id = self.rng.random_range(0..n);
            if self.engines[id].is_some() {
                self.crash(id);
            }
            return;
        }
        if self.scenario.partitions && (90..94).contains(&roll) {
            let a = self.rng.random_range(0..n) as EngineId;
            let b = self.rng.random_range(0..n) as EngineId;
            if a != b {
                self.log(|| format!("PARTITION e{a} e{b}"));
                self.net.partition(a, b);
                let until = self.now + self.rng.random_range(200..4_000);
                self.heals.insert(until, (a, b));
            }
            return;
        }
        let id = self.rng.random_range(0..n);
        let oplock = self.oplocks[self.rng.random_range(0..self.oplocks.len())];
        let now = self.now;
        let kind_roll = self.rng.random_range(0..100);
        let Some(engine) = self.engines[id].as_mut() else {
            return;
        };
        if self.cps[id].outstanding.contains_key(&oplock) {
            return;
        }
        if kind_roll < 55 {
            let kind = if kind_roll < 35 { UpdateKind::Restrictive } else { UpdateKind::Unrestrictive };
            self.cps[id].outstanding.insert(oplock, kind);
            engine.request_acquire(now, &mut self.store, oplock, kind);
            self.log(|| format!("e{id} request acquire {oplock} {kind:?}"));
        } else if kind_roll < 80 {
            engine.request_share(now, &mut self.store, oplock);
            self.log(|| format!("e{id} request share {oplock}"));
        } else if kind_roll < 92 {
            engine.request_unshare(now, &mut self.store, oplock);
            self.log(|| format!("e{id} request unshare {oplock}"));
        } else {
            engine.request_leave(now, &mut self.store, oplock);
            self.log(|| format!("e{id} request leave {oplock}"));
        }
        self.drain(id);
    }

    /// The engine's control path may still use a copy of the oplock's metadata: it holds one
    /// and either its state lets it cache, or it has a purge (drain) not yet completed. (After a
    /// voluntary unshare the control path has stopped using its copy by contract.)
    fn uses_copy(&self, id: usize, oplock: OplockAddress) -> bool {
        if !self.cps[id].cache.contains_key(&oplock) {
            return false;
        }
        let state = self.engines[id].as_ref().and_then(|e| e.oplock(&oplock)).map(|o| o.state());
        matches!(state, Some(OplockState::Sharing | OplockState::WantToAcquire | OplockState::Acquired))
            || self.cps[id].work.values().any(|w| matches!(w, Work::Purge { oplock: o, .. } if *o == oplock))
    }

    /// Check every invariant.
    pub fn check(&self) -> Result<(), String> {
        let members = self.store.members();
        for oplock in &self.oplocks {
            let meta = &self.meta[oplock];
            let mut acquired = Vec::new();
            for id in 0..self.engines.len() {
                if !self.is_authoritative(id) {
                    continue;
                }
                let engine = self.engines[id].as_ref().expect("live");
                let Some(op) = engine.oplock(oplock) else {
                    continue;
                };
                if op.state() == OplockState::Acquired {
                    acquired.push(id);
                }
                if op.state() == OplockState::Sharing
                    && let Some(cached) = self.cps[id].cache.get(oplock)
                    && *cached < meta.latest_restrictive
                {
                    return Err(format!(
                        "e{id} is Sharing {oplock} with version {cached} older than the last restrictive update {}",
                        meta.latest_restrictive
                    ));
                }
            }
            if acquired.len() > 1 {
                return Err(format!("{oplock} Acquired by {acquired:?} at once"));
            }
        }
        for (oplock, owner) in self.store.owners() {
            // A booting engine that evicted the holder of its journal is caretaker of its own
            // eviction record until it rejoins; anyone else evicted must own nothing.
            if self.store.eviction_of(*owner).is_some_and(|r| r.caretaker != *owner) {
                return Err(format!("ownership of {oplock} names evicted engine e{owner}"));
            }
        }
        // Eviction of one engine is serialized: at most one live caretaker per victim.
        let mut caretakers: BTreeMap<EngineId, Vec<usize>> = BTreeMap::new();
        for id in 0..self.engines.len() {
            if let Some(engine) = &self.engines[id]
                && self.store.eviction_of(id as EngineId).is_none()
            {
                for victim in engine.cleanups_owed() {
                    if *victim != id as EngineId {
                        caretakers.entry(*victim).or_default().push(id);
                    }
                }
            }
        }
        for (victim, who) in caretakers {
            if who.len() > 1 {
                return Err(format!("e{victim} has caretakers {who:?}"));
            }
        }
        // An oplock under recovery has exactly one caretaker (the store's record), which
        // defends it until its cleanup is complete: if that engine is live and not evicted by
        // another, it defends the oplock, and no other engine that counts holds it Acquired.
        for (oplock, caretaker) in self.store.recovering() {
            let id = *caretaker as usize;
            let evicted_by_other =
                self.store.eviction_of(*caretaker).is_some_and(|r| r.caretaker != *caretaker);
            if let Some(engine) = &self.engines[id]
                && !evicted_by_other
                && !engine.defended().any(|o| o == oplock)
            {
                return Err(format!("{oplock} is recovered by e{id}, which does not defend it"));
            }
            for other in 0..self.engines.len() {
                if other != id
                    && self.is_authoritative(other)
                    && self.engines[other].as_ref().and_then(|e| e.oplock(oplock)).map(|o| o.state())
                        == Some(OplockState::Acquired)
                {
                    return Err(format!("e{other} holds {oplock} Acquired while e{id} recovers it"));
                }
            }
        }
        let _ = members;
        Ok(())
    }

    /// Check the "no lost update" property at each grant: what the acquirer reads is the
    /// last completed update.
    fn check_grant(&self, id: usize, event_oplock: OplockAddress) -> Result<(), String> {
        let meta = &self.meta[&event_oplock];
        let read = self.read(id, event_oplock);
        if self.is_authoritative(id) && read != meta.latest {
            return Err(format!(
                "e{id} acquired {event_oplock} and reads version {read}, but {} is the last completed update (journals {:?})",
                meta.latest, meta.journals
            ));
        }
        Ok(())
    }

    fn next_time(&self, actions_until: Option<u64>) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut consider = |t: Option<u64>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: u64| n.min(t)));
            }
        };
        consider(self.net.next_delivery());
        for engine in self.engines.iter().flatten() {
            consider(engine.poll_timeout());
        }
        for cp in &self.cps {
            consider(cp.work.keys().next().map(|(t, _)| *t));
        }
        consider(self.restarts.values().min().copied());
        consider(self.heals.keys().next().copied());
        consider(actions_until);
        next
    }

    /// One step at `self.now`: the first due input, in a fixed order.
    fn step(&mut self, action_due: bool) -> Result<bool, String> {
        self.steps += 1;
        self.last_was_action = false;
        let now = self.now;
        if let Some((&id, _)) = self.restarts.iter().find(|(_, t)| **t <= now) {
            self.restarts.remove(&id);
            self.restart(id as usize);
            return Ok(true);
        }
        if let Some((&t, &(a, b))) = self.heals.iter().next()
            && t <= now
        {
            self.heals.remove(&t);
            self.log(|| format!("HEAL e{a} e{b}"));
            self.net.heal(a, b);
            return Ok(true);
        }
        if let Some(envelope) = self.net.deliver(now) {
            let to = envelope.to as usize;
            self.log(|| {
                format!(
                    "e{} -> e{} {} {} r{}",
                    envelope.from,
                    envelope.to,
                    envelope.message.body.name(),
                    envelope.message.oplock,
                    envelope.message.round
                )
            });
            if let Some(engine) = self.engines[to].as_mut() {
                engine.handle_message(now, &mut self.store, envelope);
                self.drain_checked(to)?;
            }
            return Ok(true);
        }
        for id in 0..self.cps.len() {
            if let Some((&key, _)) = self.cps[id].work.iter().next()
                && key.0 <= now
            {
                let work = self.cps[id].work.remove(&key).expect("present");
                self.do_work(id, work)?;
                self.drain_checked(id)?;
                return Ok(true);
            }
        }
        for id in 0..self.engines.len() {
            if let Some(engine) = self.engines[id].as_mut()
                && engine.poll_timeout().is_some_and(|t| t <= now)
            {
                engine.handle_timeout(now, &mut self.store);
                self.drain_checked(id)?;
                return Ok(true);
            }
        }
        if action_due {
            self.random_action();
            self.last_was_action = true;
            return Ok(true);
        }
        Ok(false)
    }

    fn drain_checked(&mut self, id: usize) -> Result<(), String> {
        loop {
            let Some(engine) = self.engines[id].as_mut() else {
                return Ok(());
            };
            if let Some(envelope) = engine.poll_transmit() {
                self.net.send(self.now, envelope);
                continue;
            }
            let Some(event) = engine.poll_event() else {
                return Ok(());
            };
            if let Event::Acquired { oplock, .. } = &event {
                self.check_grant(id, *oplock)?;
            }
            self.on_event(id, event);
        }
    }

    fn quiescent(&self) -> bool {
        self.engines.iter().all(|e| e.as_ref().is_some_and(|e| e.is_online()))
            && self.cps.iter().all(|cp| cp.outstanding.is_empty() && cp.work.is_empty())
            && self.store.elist().values().all(|r| r.done)
            && self.net.in_flight() == 0
    }

    /// The whole schedule: a fault phase with random actions, then the network heals and
    /// every request must complete within the bound.
    pub fn run(&mut self) -> Result<(), String> {
        let mut next_action = self.rng.random_range(10..300);
        let mut actions = 0;
        while actions < self.scenario.actions {
            let next = self.next_time(Some(next_action)).expect("action pending");
            self.now = next;
            loop {
                let action_due = next_action <= self.now;
                let before = self.steps;
                let progressed = self.step(action_due).map_err(|e| self.failure(&e))?;
                if !progressed {
                    break;
                }
                self.check().map_err(|e| self.failure(&e))?;
                if action_due && self.last_was_action {
                    actions += 1;
                    next_action = self.now + self.rng.random_range(10..400);
                }
                let _ = before;
                if actions >= self.scenario.actions {
                    break;
                }
            }
        }
        // Heal: reconnect, stop raw loss, restart the crashed.
        self.log(|| "HEAL ALL".to_string());
        self.net.heal_all();
        self.heals.clear();
        for id in 0..self.engines.len() {
            if self.engines[id].is_none() {
                self.restarts.insert(id as EngineId, self.now);
            }
        }
        let healed_at = self.now;
        loop {
            if self.quiescent() {
                return Ok(());
            }
            let Some(next) = self.next_time(None) else {
                break;
            };
            if next > healed_at + LIVENESS_BOUND {
                break;
            }
            self.now = next;
            while self.step(false).map_err(|e| self.failure(&e))? {
                self.check().map_err(|e| self.failure(&e))?;
            }
        }
        if self.quiescent() {
            return Ok(());
        }
        let mut why = String::from("not quiescent after healing: ");
        for (id, engine) in self.engines.iter().enumerate() {
            let Some(engine) = engine else {
                let _ = write!(why, "e{id} down; ");
                continue;
            };
            let _ = write!(
                why,
                "e{id} online={} outstanding={:?} work={} states={:?}; ",
                engine.is_online(),
                self.cps[id].outstanding,
                self.cps[id].work.len(),
                engine.oplocks().map(|(a, o)| (a.to_string(), o.state(), o.interest())).collect::<Vec<_>>()
            );
        }
        let _ = write!(
            why,
            "elist={:?} recovering={:?} owners={:?} in_flight={}",
            self.store.elist(),
            self.store.recovering(),
            self.store.owners(),
            self.net.in_flight()
        );
        Err(self.failure(&why))
    }
}

/// Run one seed; `Err` carries the printable failure with the replay line.
pub fn run_seed(seed: u64, scenario: Scenario, verbose: bool) -> Result<World, String> {
    let mut world = World::new(seed, scenario);
    world.verbose = verbose;
    world.run()?;
    Ok(world)
}

/// A scenario derived from the seed: 3 to 5 engines, 2 to 4 oplocks, faults on.
pub fn scenario_for(seed: u64) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    Scenario {
        engines: rng.random_range(3..=5),
        oplocks: rng.random_range(2..=4),
        actions: rng.random_range(15..40),
        crashes: rng.random_bool(0.6),
        partitions: rng.random_bool(0.4),
        raw_loss: rng.random_bool(0.25),
        loss: 0.02,
        crash_percent: 6,
        harsh: false,
    }
}

/// A harsher scenario: more actions, frequent crashes, 10% raw loss and duplication.
pub fn harsh_scenario_for(seed: u64) -> Scenario {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xba5e);
    Scenario {
        engines: rng.random_range(3..=5),
        oplocks: rng.random_range(1..=3),
        actions: rng.random_range(30..80),
        crashes: true,
        partitions: rng.random_bool(0.5),
        raw_loss: true,
        loss: 0.1,
        crash_percent: 12,
        harsh: true,
    }
}
