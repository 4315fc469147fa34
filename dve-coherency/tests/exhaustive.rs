//! Exhaustive (depth-first) exploration of the small cases: 2 or 3 engines, one oplock,
//! every interleaving of message deliveries, timer expiries (time advances only to the next
//! deadline, up to a horizon), control-path completions, requests, a bounded number of lost
//! messages and crashes. Every reachable state is checked (safety invariants, and no acquire
//! request left where nothing can advance it); the number of distinct states explored is
//! reported. States are deduplicated by a 64-bit fingerprint, as model checkers
//! such as stateright do.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

use dve_coherency::{
    Engine, EngineConfig, EngineId, Envelope, Event, MemoryStore, OplockAddress, OplockState,
    RecoveredOplock, SharedStore, UpdateKind,
};

fn config(id: EngineId, bounds: Bounds) -> EngineConfig {
    EngineConfig {
        id,
        ack_timeout: 10,
        retry_interval: 10,
        boot_wait: 20,
        membership_check_interval: bounds.membership_check,
        sweep_interval: u64::MAX / 4,
        sweep_age: u64::MAX / 4,
        // The exploration checks engines that are not evicted only; no grace needed.
        eviction_grace: 0,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Work {
    Purge { token: u64, flush: bool },
    Update { kind: UpdateKind },
    Cleanup { victim: EngineId, recovered: Vec<RecoveredOplock> },
    Replay { recovered: Vec<RecoveredOplock> },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    now: u64,
    store: MemoryStore,
    engines: Vec<Option<Engine>>,
    /// Per-pair FIFO channels: the reliable transport's guarantee.
    channels: BTreeMap<(EngineId, EngineId), VecDeque<Envelope>>,
    work: Vec<BTreeSet<Work>>,
    pending_kind: Vec<Option<UpdateKind>>,
    requests_left: Vec<u8>,
    losses_left: u8,
    crashes_left: u8,
    // The metadata model.
    media: u64,
    latest: u64,
    latest_restrictive: u64,
    journals: BTreeMap<EngineId, u64>,
    caches: Vec<Option<u64>>,
}

#[derive(Clone, Copy, Debug)]
struct Bounds {
    engines: usize,
    losses: u8,
    crashes: u8,
    requests: u8,
    /// Engines 0..requesters may request; the others only answer.
    requesters: usize,
    horizon: u64,
    both_kinds: bool,
    membership_check: u64,
}

const OPLOCK: OplockAddress = OplockAddress::mirror_write(1, 0, 1);

impl State {
    fn initial(bounds: Bounds) -> Self {
        let mut store = MemoryStore::new();
        let mut engines = Vec::new();
        for id in 0..bounds.engines as EngineId {
            engines.push(Some(Engine::boot(config(id, bounds), 0, &mut store)));
        }
        let mut state = State {
            now: 0,
            store,
            engines,
            channels: BTreeMap::new(),
            work: vec![BTreeSet::new(); bounds.engines],
            pending_kind: vec![None; bounds.engines],
            requests_left: (0..bounds.engines)
                .map(|i| if i < bounds.requesters { bounds.requests } else { 0 })
                .collect(),
            losses_left: bounds.losses,
            crashes_left: bounds.crashes,
            media: 0,
            latest: 0,
            latest_restrictive: 0,
            journals: BTreeMap::new(),
            caches: vec![None; bounds.engines],
        };
        for id in 0..bounds.engines {
            state.drain(id).expect("boot");
        }
        state
    }

    fn fingerprint(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.hash(&mut hasher);
        hasher.finish()
    }

    fn authoritative(&self, id: usize) -> bool {
        let Some(engine) = &self.engines[id] else { return false };
        engine.is_online()
            && self.store.members().get(&(id as EngineId)) == Some(&engine.incarnation())
            && self.store.eviction_of(id as EngineId).is_none()
    }

    fn read(&self, id: usize) -> u64 {
        self.media.max(self.journals.get(&(id as EngineId)).copied().unwrap_or(0))
    }

    fn drain(&mut self, id: usize) -> Result<(), String> {
        loop {
            let Some(engine) = self.engines[id].as_mut() else { return Ok(()) };
            if let Some(envelope) = engine.poll_transmit() {
                if self.engines[envelope.to as usize].is_some() {
                    self.channels.entry((envelope.from, envelope.to)).or_default().push_back(envelope);
                }
                continue;
            }
            let Some(event) = engine.poll_event() else { return Ok(()) };
            match event {
                Event::Shared { .. } => self.caches[id] = Some(self.read(id)),
                Event::Acquired { .. } => {
                    if self.authoritative(id) && self.read(id) != self.latest {
                        return Err(format!("e{id} acquired but reads {} != {}", self.read(id), self.latest));
                    }
                    self.caches[id] = Some(self.read(id));
                    let kind = self.pending_kind[id].take().unwrap_or(UpdateKind::Restrictive);
                    self.work[id].insert(Work::Update { kind });
                }
                Event::Purge { flush_dirty, blocking, token, .. } => {
                    // A blocking purge keeps using the old copy until it completes (drain).
                    if !blocking {
                        self.caches[id] = None;
                    }
                    if blocking {
                        self.work[id].insert(Work::Purge { token, flush: flush_dirty });
                    }
                }
                Event::Caretaker { victim, oplocks, .. } => {
                    self.work[id].insert(Work::Cleanup { victim, recovered: oplocks });
                }
                Event::Replay { oplocks, .. } => {
                    self.work[id].insert(Work::Replay { recovered: oplocks });
                }
                Event::Evicted => {
                    self.work[id].clear();
                    self.caches[id] = None;
                    self.pending_kind[id] = None;
                }
                Event::Online { .. } => {}
            }
        }
    }

    fn flush(&mut self, journal: EngineId) {
        if let Some(v) = self.journals.remove(&journal) {
            self.media = self.media.max(v);
        }
    }

    fn do_work(&mut self, id: usize, work: Work) -> Result<(), String> {
        let me = id as EngineId;
        let now = self.now;
        let fenced =
            self.store.eviction_of(me).is_some() && self.engines[id].as_ref().is_some_and(|e| e.is_online());
        match work {
            Work::Purge { token, flush } => {
                self.caches[id] = None;
                if flush && !fenced {
                    self.flush(me);
                }
                let engine = self.engines[id].as_mut().expect("live");
                let _ = engine.purge_complete(now, &mut self.store, OPLOCK, token);
            }
            Work::Update { kind } => {
                let engine = self.engines[id].as_ref().expect("live");
                if engine.oplock(&OPLOCK).map(|o| o.state()) != Some(OplockState::Acquired) {
                    return Ok(());
                }
                if !fenced && kind == UpdateKind::Restrictive {
                    for other in 0..self.engines.len() {
                        if other != id && self.authoritative(other) && self.uses_copy(other) {
                            return Err(format!(
                                "e{id} updates restrictively while e{other} uses {:?}",
                                self.caches[other]
                            ));
                        }
                    }
                }
                if !fenced {
                    let version = self.latest + 1;
                    self.latest = version;
                    match kind {
                        UpdateKind::Restrictive => {
                            self.media = version;
                            self.latest_restrictive = version;
                            self.journals.remove(&me);
                        }
                        UpdateKind::Unrestrictive => {
                            self.journals.insert(me, version);
                        }
                    }
                    self.caches[id] = Some(version);
                }
                let engine = self.engines[id].as_mut().expect("live");
                engine.release(now, &mut self.store, OPLOCK).map_err(|e| e.to_string())?;
            }
            Work::Cleanup { victim, recovered } => {
                let engine = self.engines[id].as_ref().expect("live");
                if fenced || !engine.cleanups_owed().any(|v| *v == victim) {
                    return Ok(());
                }
                match self.store.eviction_of(victim) {
                    Some(r) if r.caretaker == me && !r.done => {}
                    other => return Err(format!("e{id} cleans up e{victim}, elist says {other:?}")),
                }
                for r in &recovered {
                    for journal in &r.dirty {
                        self.flush(*journal);
                    }
                }
                let engine = self.engines[id].as_mut().expect("live");
                engine.cleanup_complete(now, &mut self.store, victim).map_err(|e| e.to_string())?;
            }
            Work::Replay { recovered } => {
                for r in &recovered {
                    for journal in &r.dirty {
                        if self.store.journal_holder(*journal) == Some(me) {
                            self.flush(*journal);
                        }
                    }
                }
                let engine = self.engines[id].as_mut().expect("live");
                let _ = engine.replay_complete(now, &mut self.store);
            }
        }
        self.drain(id)
    }

    /// Holds a copy that its state allows, or is still draining it.
    fn uses_copy(&self, id: usize) -> bool {
        let state = self.engines[id].as_ref().and_then(|e| e.oplock(&OPLOCK)).map(|o| o.state());
        self.caches[id].is_some()
            && (matches!(
                state,
                Some(OplockState::Sharing | OplockState::WantToAcquire | OplockState::Acquired)
            ) || self.work[id].iter().any(|w| matches!(w, Work::Purge { .. })))
    }

    fn check(&self) -> Result<(), String> {
        let mut acquired = 0;
        for id in 0..self.engines.len() {
            if !self.authoritative(id) {
                continue;
            }
            let Some(op) = self.engines[id].as_ref().and_then(|e| e.oplock(&OPLOCK)) else { continue };
            if op.state() == OplockState::Acquired {
                acquired += 1;
            }
            if op.state() == OplockState::Sharing
                && let Some(cached) = self.caches[id]
                && cached < self.latest_restrictive
            {
                return Err(format!("e{id} shares version {cached} < {}", self.latest_restrictive));
            }
        }
        if acquired > 1 {
            return Err(format!("{acquired} engines Acquired"));
        }
        for (oplock, owner) in self.store.owners() {
            if self.store.eviction_of(*owner).is_some_and(|r| r.caretaker != *owner) {
                return Err(format!("{oplock} owned by evicted e{owner}"));
            }
        }
        Ok(())
    }

    /// Something is still wanted: a request or a cleanup not finished.
    fn unfinished(&self) -> bool {
        self.pending_kind.iter().any(Option::is_some)
            || self.engines.iter().any(|e| e.as_ref().is_none_or(|e| !e.is_online()))
            || self.store.elist().values().any(|r| !r.done)
    }

    /// A requester whose acquire nothing will ever advance: no message in flight, no
    /// control-path work anywhere, and its oplock not in a broadcast state (whose round or
    /// retry timer would move it) nor Acquired.
    fn stuck_requester(&self) -> Option<usize> {
        if self.channels.values().any(|q| !q.is_empty()) || self.work.iter().any(|w| !w.is_empty()) {
            return None;
        }
        (0..self.engines.len()).find(|&id| {
            let Some(engine) = &self.engines[id] else { return false };
            let state = engine.oplock(&OPLOCK).map(|o| o.state());
            self.pending_kind[id].is_some()
                && engine.is_online()
                && !matches!(
                    state,
                    Some(
                        OplockState::WantToJoin
                            | OplockState::WantToShare
                            | OplockState::WantToAcquire
                            | OplockState::Acquired
                    )
                )
        })
    }

    fn successors(&self, bounds: Bounds) -> Result<Vec<State>, String> {
        let mut next = Vec::new();
        let n = self.engines.len();
        // Deliver or lose the head of each channel.
        for (&(from, to), queue) in &self.channels {
            if queue.is_empty() {
                continue;
            }
            let mut s = self.clone();
            let envelope = s.channels.get_mut(&(from, to)).and_then(VecDeque::pop_front).expect("head");
            if let Some(engine) = s.engines[to as usize].as_mut() {
                engine.handle_message(s.now, &mut s.store, envelope);
                s.drain(to as usize)?;
            }
            s.channels.retain(|_, q| !q.is_empty());
            next.push(s);
            if self.losses_left > 0 {
                let mut s = self.clone();
                s.losses_left -= 1;
                s.channels.get_mut(&(from, to)).and_then(VecDeque::pop_front);
                s.channels.retain(|_, q| !q.is_empty());
                next.push(s);
            }
        }
        for id in 0..n {
            let Some(engine) = &self.engines[id] else {
                // Restart a crashed engine.
                let mut s = self.clone();
                s.engines[id] = Some(Engine::boot(config(id as EngineId, bounds), s.now, &mut s.store));
                s.drain(id)?;
                next.push(s);
                continue;
            };
            // Control-path work completes, in any order.
            for work in &self.work[id] {
                let mut s = self.clone();
                s.work[id].remove(work);
                s.do_work(id, work.clone())?;
                next.push(s);
            }
            // The engine's next timer fires (time jumps to it), within the horizon.
            if let Some(deadline) = engine.poll_timeout()
                && deadline <= bounds.horizon
            {
                let mut s = self.clone();
                s.now = s.now.max(deadline);
                let now = s.now;
                let engine = s.engines[id].as_mut().expect("live");
                engine.handle_timeout(now, &mut s.store);
                s.drain(id)?;
                next.push(s);
            }
            // A new acquire request.
            if self.requests_left[id] > 0 && self.pending_kind[id].is_none() && engine.is_online() {
                let kinds: &[UpdateKind] = if bounds.both_kinds {
                    &[UpdateKind::Restrictive, UpdateKind::Unrestrictive]
                } else {
                    &[UpdateKind::Restrictive]
                };
                for kind in kinds {
                    let mut s = self.clone();
                    s.requests_left[id] -= 1;
                    s.pending_kind[id] = Some(*kind);
                    let now = s.now;
                    let engine = s.engines[id].as_mut().expect("live");
                    engine.request_acquire(now, &mut s.store, OPLOCK, *kind);
                    s.drain(id)?;
                    next.push(s);
                }
            }
            // A crash: everything in flight to or from it is lost.
            if self.crashes_left > 0 {
                let mut s = self.clone();
                s.crashes_left -= 1;
                s.engines[id] = None;
                s.work[id].clear();
                s.caches[id] = None;
                s.pending_kind[id] = None;
                s.channels.retain(|(f, t), _| *f as usize != id && *t as usize != id);
                next.push(s);
            }
        }
        Ok(next)
    }
}

struct Report {
    states: usize,
    transitions: usize,
    max_depth: usize,
    terminal_unfinished: usize,
}

fn explore(bounds: Bounds, limit: usize) -> Report {
    let initial = State::initial(bounds);
    let mut seen: HashSet<u64> = HashSet::new();
    // Depth-first with an explicit stack: memory grows with the depth, not the frontier.
    let mut queue: Vec<(State, usize)> = Vec::new();
    seen.insert(initial.fingerprint());
    initial.check().expect("initial state");
    queue.push((initial, 0));
    let mut report = Report { states: 1, transitions: 0, max_depth: 0, terminal_unfinished: 0 };
    while let Some((state, depth)) = queue.pop() {
        report.max_depth = report.max_depth.max(depth);
        let successors = match state.successors(bounds) {
            Ok(s) => s,
            Err(e) => panic!("{bounds:?}: violation at depth {depth}: {e}\nstate: {state:#?}"),
        };
        if let Some(id) = state.stuck_requester() {
            panic!("{bounds:?}: deadlock at depth {depth}: e{id}'s acquire is forgotten: {state:#?}");
        }
        // Nothing left to happen while something is still wanted. Online engines always have
        // a membership timer, so this is a deadlock only when no timer is left at all; with
        // timers past the horizon the state is merely counted (liveness is the randomized
        // checker's job: it runs every schedule to quiescence after healing).
        if successors.is_empty() && state.unfinished() {
            let blocked_by_horizon = state.engines.iter().flatten().any(|e| e.poll_timeout().is_some());
            if !blocked_by_horizon {
                panic!("{bounds:?}: deadlock at depth {depth}: {state:#?}");
            }
            report.terminal_unfinished += 1;
        }
        for next in successors {
            report.transitions += 1;
            if let Err(e) = next.check() {
                panic!("{bounds:?}: invariant violated at depth {}: {e}\nstate: {next:#?}", depth + 1);
            }
            if seen.insert(next.fingerprint()) {
                report.states += 1;
                if report.states.is_multiple_of(500_000) {
                    eprintln!("{bounds:?}: {} states, depth {depth}, queue {}", report.states, queue.len());
                }
                assert!(report.states <= limit, "{bounds:?}: more than {limit} states");
                queue.push((next, depth + 1));
            }
        }
    }
    eprintln!(
        "{bounds:?}: {} states, {} transitions, depth {}, {} stopped by the horizon",
        report.states, report.transitions, report.max_depth, report.terminal_unfinished
    );
    report
}

#[test]
fn probe() {
    let Ok(spec) = std::env::var("DVE_BFS") else { return };
    let v: Vec<u64> = spec.split(',').map(|x| x.parse().expect("number")).collect();
    explore(
        Bounds {
            engines: v[0] as usize,
            losses: v[1] as u8,
            crashes: v[2] as u8,
            requests: v[3] as u8,
            requesters: v[4] as usize,
            horizon: v[5],
            both_kinds: v[6] == 1,
            membership_check: v[7],
        },
        5_000_000,
    );
}

fn bounds(
    engines: usize,
    losses: u8,
    crashes: u8,
    horizon: u64,
    both_kinds: bool,
    membership_check: u64,
) -> Bounds {
    Bounds { engines, losses, crashes, requests: 1, requesters: 2, horizon, both_kinds, membership_check }
}

#[test]
fn two_engines_one_oplock_with_a_crash() {
    let report = explore(bounds(2, 0, 1, 25, true, 15), 3_000_000);
    assert!(report.states > 100_000);
}

#[test]
fn two_engines_one_oplock_with_two_lost_messages() {
    let report = explore(bounds(2, 2, 0, 25, true, 15), 3_000_000);
    assert!(report.states > 100_000);
}

#[test]
fn two_engines_one_oplock_with_a_loss_and_a_crash() {
    let report = explore(bounds(2, 1, 1, 22, false, 15), 3_000_000);
    assert!(report.states > 100_000);
}

#[test]
fn three_engines_one_oplock_with_a_lost_message() {
    let report = explore(bounds(3, 1, 0, 25, false, 1_000), 3_000_000);
    assert!(report.states > 100_000);
}
