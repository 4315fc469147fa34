//! Small, hand-driven scenarios of the protocol: the zero-message acquire of a lone sharer,
//! the tie-break between competing acquirers, the purge before an ack, non-volatile
//! ownership and the recent owner in the share set, serialized and cascading eviction.

use std::collections::VecDeque;

use dve_coherency::{
    Body, Engine, EngineConfig, EngineId, Envelope, Event, EvictOutcome, MemoryStore, OplockAddress,
    OplockState, PurgeReason, SharedStore, UpdateKind,
};

fn config(id: EngineId) -> EngineConfig {
    EngineConfig {
        id,
        ack_timeout: 1_000,
        retry_interval: 300,
        boot_wait: 2_000,
        membership_check_interval: 1_000_000,
        sweep_interval: 1_000_000,
        sweep_age: 1_000_000,
        eviction_grace: 0,
    }
}

/// Engines wired by instant in-order delivery; the control path answers purges at once.
struct Cluster {
    now: u64,
    store: MemoryStore,
    engines: Vec<Engine>,
    wire: VecDeque<Envelope>,
    events: Vec<(EngineId, Event)>,
    sent: Vec<Envelope>,
}

impl Cluster {
    fn new(n: u32) -> Self {
        let mut store = MemoryStore::new();
        let engines = (0..n).map(|id| Engine::boot(config(id), 0, &mut store)).collect();
        let mut cluster =
            Cluster { now: 0, store, engines, wire: VecDeque::new(), events: Vec::new(), sent: Vec::new() };
        cluster.run();
        cluster
    }

    fn collect(&mut self) {
        for id in 0..self.engines.len() {
            while let Some(envelope) = self.engines[id].poll_transmit() {
                self.sent.push(envelope);
                self.wire.push_back(envelope);
            }
            while let Some(event) = self.engines[id].poll_event() {
                if let Event::Purge { oplock, blocking: true, token, .. } = event {
                    self.engines[id].purge_complete(self.now, &mut self.store, oplock, token).expect("purge");
                }
                self.events.push((id as EngineId, event));
            }
        }
    }

    fn run(&mut self) {
        self.collect();
        while let Some(envelope) = self.wire.pop_front() {
            self.now += 1;
            let to = envelope.to as usize;
            self.engines[to].handle_message(self.now, &mut self.store, envelope);
            self.collect();
        }
    }

    fn state(&self, id: usize, oplock: OplockAddress) -> Option<OplockState> {
        self.engines[id].oplock(&oplock).map(|o| o.state())
    }

    fn acquired(&self, id: EngineId, oplock: OplockAddress) -> bool {
        self.events
            .iter()
            .any(|(e, ev)| *e == id && matches!(ev, Event::Acquired { oplock: o, .. } if *o == oplock))
    }
}

#[test]
fn a_lone_sharer_acquires_without_any_message() {
    let mut c = Cluster::new(3);
    let rmap = OplockAddress::rmap(1, 0, 64);
    // Engine 1 joins (the passive engine of the seed's active/passive pair); engine 0 shares.
    c.engines[1].request_join(c.now, &mut c.store, rmap);
    c.run();
    c.engines[0].request_share(c.now, &mut c.store, rmap);
    c.run();
    assert_eq!(c.state(0, rmap), Some(OplockState::Sharing));
    assert_eq!(c.state(1, rmap), Some(OplockState::Joined));
    c.sent.clear();
    c.engines[0].request_acquire(c.now, &mut c.store, rmap, UpdateKind::Restrictive);
    c.run();
    assert!(c.acquired(0, rmap));
    assert!(c.sent.is_empty(), "acquire sent {:?}", c.sent);
    c.engines[0].release(c.now, &mut c.store, rmap).expect("release");
    c.run();
    // Re-acquiring is local too.
    c.sent.clear();
    c.events.clear();
    c.engines[0].request_acquire(c.now, &mut c.store, rmap, UpdateKind::Unrestrictive);
    c.run();
    assert!(c.acquired(0, rmap));
    assert!(c.sent.is_empty());
}

#[test]
fn a_sharer_purges_and_drains_before_acknowledging_an_acquire() {
    let mut c = Cluster::new(2);
    let rmap = OplockAddress::rmap(1, 0, 64);
    for id in 0..2 {
        c.engines[id].request_share(c.now, &mut c.store, rmap);
        c.run();
    }
    assert_eq!(c.state(1, rmap), Some(OplockState::Sharing));
    c.engines[0].request_acquire(c.now, &mut c.store, rmap, UpdateKind::Restrictive);
    // Deliver the acquire only: engine 1 must purge (with a drain point) and hold its ack.
    c.collect();
    let acquire = c.wire.pop_front().expect("acquire");
    assert!(matches!(acquire.message.body, Body::Acquire { restrictive: true, .. }));
    c.engines[1].handle_message(c.now, &mut c.store, acquire);
    let token = loop {
        match c.engines[1].poll_event() {
            Some(Event::Purge { drain_before: Some(_), blocking: true, token, .. }) => break token,
            Some(_) => {}
            None => panic!("no purge"),
        }
    };
    let mut replies = Vec::new();
    while let Some(envelope) = c.engines[1].poll_transmit() {
        replies.push(envelope.message.body);
    }
    assert!(!replies.iter().any(|b| matches!(b, Body::Ack { .. })), "acked before the purge: {replies:?}");
    assert_eq!(c.state(1, rmap), Some(OplockState::Joined));
    c.engines[1].purge_complete(c.now, &mut c.store, rmap, token).expect("purge");
    c.run();
    assert!(c.acquired(0, rmap));
}

#[test]
fn competing_acquires_go_to_the_oldest_request_then_the_lowest_engine() {
    let mut c = Cluster::new(3);
    let rmap = OplockAddress::rmap(1, 0, 64);
    for id in 0..3 {
        c.engines[id].request_share(c.now, &mut c.store, rmap);
        c.run();
    }
    // Engines 2 and 1 ask at the same instant: equal timestamps, so engine 1 (lower id) wins
    // although engine 2 asked first in program order.
    let t = c.now;
    c.engines[2].request_acquire(t, &mut c.store, rmap, UpdateKind::Restrictive);
    c.engines[1].request_acquire(t, &mut c.store, rmap, UpdateKind::Restrictive);
    c.run();
    assert!(c.acquired(1, rmap));
    assert!(!c.acquired(2, rmap));
    assert_eq!(c.state(2, rmap), Some(OplockState::WantToAcquire));
    // The winner's release wakes the loser, which then gets it.
    c.engines[1].release(c.now, &mut c.store, rmap).expect("release");
    c.run();
    assert!(c.acquired(2, rmap));
    // An older request beats a lower engine id.
    c.engines[2].release(c.now, &mut c.store, rmap).expect("release");
    c.run();
    c.events.clear();
    c.engines[2].request_acquire(c.now, &mut c.store, rmap, UpdateKind::Restrictive);
    c.engines[0].request_acquire(c.now + 5, &mut c.store, rmap, UpdateKind::Restrictive);
    c.run();
    assert!(c.acquired(2, rmap));
    assert!(!c.acquired(0, rmap));
}

#[test]
fn the_recent_owner_of_a_non_volatile_oplock_is_always_asked() {
    let mut c = Cluster::new(3);
    let extent = OplockAddress::mirror_write(1, 0, 64);
    c.engines[2].request_acquire(c.now, &mut c.store, extent, UpdateKind::Restrictive);
    c.run();
    assert!(c.acquired(2, extent));
    c.engines[2].release(c.now, &mut c.store, extent).expect("release");
    c.run();
    assert_eq!(c.store.owner(extent), Some(2));
    assert!(c.store.journal(2).in_progress.is_empty(), "JOURNAL RELEASE");
    // Engine 2 leaves entirely; engine 0 joins later, so 2 is in nobody's lists — but it owns.
    c.engines[2].request_leave(c.now, &mut c.store, extent);
    c.run();
    c.sent.clear();
    c.engines[0].request_share(c.now, &mut c.store, extent);
    c.run();
    assert!(c.sent.iter().any(|e| e.to == 2 && e.message.body == Body::Share), "owner asked: {:?}", c.sent);
}

#[test]
fn eviction_is_serialized_and_cascades() {
    let mut store = MemoryStore::new();
    for id in 0..4 {
        store.join_cluster(id);
        store.set_journal_holder(id, Some(id));
    }
    let extent = OplockAddress::mirror_write(1, 0, 64);
    store.set_owner(extent, Some(3));
    // Engine 0 evicts 3 and inherits its extent; engine 1 trying too learns 0 is caretaker.
    let EvictOutcome::Evicted(first) = store.evict(0, 3) else { panic!("first eviction") };
    assert_eq!(first.oplocks.len(), 1);
    assert_eq!(store.owner(extent), Some(0));
    assert_eq!(store.journal_holder(3), Some(0));
    assert!(matches!(store.evict(1, 3), EvictOutcome::AlreadyEvicted(r) if r.caretaker == 0));
    // Engine 0 dies before cleaning up: engine 2 evicts 0 and inherits 3's cleanup as well.
    let EvictOutcome::Evicted(second) = store.evict(2, 0) else { panic!("cascade") };
    assert_eq!(second.cascaded, vec![3]);
    assert!(second.journals.contains(&3) && second.journals.contains(&0));
    assert_eq!(store.owner(extent), Some(2));
    assert!(store.is_recovering(extent));
    store.finish_cleanup(2, &[0, 3], &[extent]);
    assert_eq!(store.owner(extent), None);
    assert!(!store.is_recovering(extent));
    assert!(store.eviction_of(0).is_some_and(|r| r.done) && store.eviction_of(3).is_some_and(|r| r.done));
    assert_eq!(store.journal_holder(3), None, "released so engine 3 may boot");
}

#[test]
fn a_rebooting_engine_replays_its_dirty_journal_before_going_online() {
    let mut store = MemoryStore::new();
    let extent = OplockAddress::mirror_write(1, 0, 64);
    let mut engine = Engine::boot(config(0), 0, &mut store);
    assert!(engine.is_online());
    engine.request_acquire(1, &mut store, extent, UpdateKind::Unrestrictive);
    assert!(matches!(engine.poll_event(), Some(Event::Online { .. })));
    assert!(matches!(engine.poll_event(), Some(Event::Shared { .. })));
    assert!(matches!(engine.poll_event(), Some(Event::Acquired { .. })));
    // Crash while updating: the journal shows the acquire and the dirty update.
    drop(engine);
    let mut engine = Engine::boot(config(0), 10, &mut store);
    assert!(!engine.is_online());
    let Some(Event::Replay { journals, oplocks }) = engine.poll_event() else { panic!("replay") };
    assert_eq!(journals, vec![0]);
    assert_eq!(oplocks[0].oplock, extent);
    assert_eq!(oplocks[0].in_progress, vec![0]);
    assert_eq!(oplocks[0].dirty, vec![0]);
    engine.replay_complete(20, &mut store).expect("replay");
    assert!(engine.is_online());
    assert!(!store.journal(0).is_dirty_shutdown());
    assert_eq!(store.owner(extent), None);
}

#[test]
fn the_sweep_releases_idle_non_volatile_oplocks_only() {
    let mut c = Cluster::new(2);
    let extent = OplockAddress::mirror_write(1, 0, 64);
    let rmap = OplockAddress::rmap(1, 0, 64);
    for oplock in [extent, rmap] {
        c.engines[0].request_acquire(c.now, &mut c.store, oplock, UpdateKind::Restrictive);
        c.run();
        assert!(c.acquired(0, oplock));
        c.engines[0].release(c.now, &mut c.store, oplock).expect("release");
        c.run();
    }
    assert_eq!(c.store.owner(extent), Some(0));
    c.events.clear();
    // Not yet idle long enough: the sweep leaves it alone.
    c.now = 1_000_000;
    c.engines[0].handle_timeout(c.now, &mut c.store);
    c.run();
    assert_eq!(c.store.owner(extent), Some(0));
    assert_eq!(c.state(0, extent), Some(OplockState::Sharing));
    // Idle for the sweep age at the next sweep: unshared (purge and drain first) and its
    // ownership cleared; the volatile oplock has no ownership and stays shared.
    c.now = 2_000_000;
    c.engines[0].handle_timeout(c.now, &mut c.store);
    c.run();
    assert!(c.events.iter().any(|(e, ev)| *e == 0
        && matches!(ev, Event::Purge { oplock, reason: PurgeReason::Sweep, blocking: true, .. } if *oplock == extent)));
    assert_eq!(c.store.owner(extent), None);
    assert_eq!(c.state(0, extent), Some(OplockState::Joined));
    assert_eq!(c.state(0, rmap), Some(OplockState::Sharing));
}
