//! The sans-I/O engine core: all oplocks of one engine, its membership (self-eviction check,
//! evicting silent peers, caretaking), boot and sweep timers. Inputs are messages, timer
//! expiries, local requests and completions; outputs are envelopes, events and the next timer.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::address::{EngineId, OplockAddress};
use crate::boot::Boot;
use crate::error::Error;
use crate::event::{Event, UpdateKind};
use crate::membership::{Caretaking, Cleanup};
use crate::message::{Body, Envelope, Message};
use crate::oplock::{Context, Interest, Oplock};
use crate::store::{EvictOutcome, SharedStore};
use crate::sweep;

/// Timing of one engine, in nanoseconds of the caller's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EngineConfig {
    /// This engine.
    pub id: EngineId,
    /// A peer that does not answer a broadcast within this is evicted.
    pub ack_timeout: u64,
    /// Fallback retry after a nak when no release arrives.
    pub retry_interval: u64,
    /// Boot step 1: how long to wait for the holder of our journal to release it.
    pub boot_wait: u64,
    /// How often an online engine checks that it has not been evicted.
    pub membership_check_interval: u64,
    /// How often the sweep runs (the seed: about a minute).
    pub sweep_interval: u64,
    /// Non-volatile oplocks unused for this long are released by the sweep.
    pub sweep_age: u64,
    /// After evicting a peer, wait this long before rebroadcasting and before starting the
    /// cleanup: an evicted engine that is in fact alive (partition) notices at its next
    /// membership check and drops its caches first. At least `membership_check_interval`
    /// plus the time the control path needs to drop caches and drain.
    pub eviction_grace: u64,
}

impl EngineConfig {
    /// Defaults for real deployments: 1 s ack timeout, 0.5 s retry, 5 s boot wait, 1 s
    /// membership check, sweep every 60 s for oplocks idle 60 s.
    pub fn new(id: EngineId) -> Self {
        const S: u64 = 1_000_000_000;
        EngineConfig {
            id,
            ack_timeout: S,
            retry_interval: S / 2,
            boot_wait: 5 * S,
            membership_check_interval: S,
            sweep_interval: 60 * S,
            sweep_age: 60 * S,
            eviction_grace: 2 * S,
        }
    }
}

/// One engine's coherency core.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) incarnation: u64,
    pub(crate) online: bool,
    pub(crate) boot: Option<Boot>,
    pub(crate) oplocks: BTreeMap<OplockAddress, Oplock>,
    pub(crate) caretaking: Caretaking,
    pub(crate) transmit: VecDeque<Envelope>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) next_token: u64,
    pub(crate) membership_deadline: u64,
    pub(crate) sweep_deadline: u64,
    /// Caretaker events held for the eviction grace.
    pub(crate) delayed_events: Vec<(u64, Event)>,
    /// (peer, eviction sequence) → when this engine first saw that eviction.
    pub(crate) evictions_seen: BTreeMap<(EngineId, u64), u64>,
}

impl Engine {
    /// Start an engine: it begins the boot sequence at once.
    pub fn boot(config: EngineConfig, now: u64, store: &mut dyn SharedStore) -> Self {
        let mut engine = Engine {
            config,
            incarnation: store.members().get(&config.id).copied().unwrap_or(0),
            online: false,
            boot: Some(Boot::new(store, config.id)),
            oplocks: BTreeMap::new(),
            caretaking: Caretaking::default(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            next_token: 0,
            membership_deadline: u64::MAX,
            sweep_deadline: u64::MAX,
            delayed_events: Vec::new(),
            evictions_seen: BTreeMap::new(),
        };
        engine.boot_progress(now, store);
        engine
    }

    /// This engine's id.
    pub fn id(&self) -> EngineId {
        self.config.id
    }

    /// Its configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Finished booting and not (known to be) evicted.
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Incarnation in the jlist (0 before the first boot completes).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// One oplock's machine, if the engine has seen it.
    pub fn oplock(&self, address: &OplockAddress) -> Option<&Oplock> {
        self.oplocks.get(address)
    }

    /// Every oplock the engine has seen.
    pub fn oplocks(&self) -> impl Iterator<Item = (&OplockAddress, &Oplock)> {
        self.oplocks.iter()
    }

    /// Oplocks this engine defends as caretaker (or at boot) until cleanup completes.
    pub fn defended(&self) -> impl Iterator<Item = &OplockAddress> {
        self.caretaking.defended()
    }

    /// Engines this engine still owes a cleanup for.
    pub fn cleanups_owed(&self) -> impl Iterator<Item = &EngineId> {
        self.caretaking.victims()
    }

    // ----- outputs --------------------------------------------------------------------

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Envelope> {
        self.transmit.pop_front()
    }

    /// Next notification for the control path.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut next = self.oplocks.values().filter_map(Oplock::deadline).min();
        let mut consider = |t: Option<u64>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if let Some(boot) = &self.boot {
            consider(boot.deadline());
        }
        consider(self.delayed_events.iter().map(|(t, _)| *t).min());
        if self.online {
            consider(Some(self.membership_deadline));
            consider(Some(self.sweep_deadline));
        }
        next
    }

    // ----- local requests -------------------------------------------------------------

    /// Join the oplock's cluster (normally at configure time).
    pub fn request_join(&mut self, now: u64, store: &mut dyn SharedStore, oplock: OplockAddress) {
        self.set_interest(now, store, oplock, Interest::Join);
    }

    /// Reach Sharing; `Event::Shared` says when the metadata may be cached.
    pub fn request_share(&mut self, now: u64, store: &mut dyn SharedStore, oplock: OplockAddress) {
        self.set_interest(now, store, oplock, Interest::Share);
    }

    /// Reach Acquired for an update; `Event::Acquired` says when. Then call `release`.
    pub fn request_acquire(
        &mut self,
        now: u64,
        store: &mut dyn SharedStore,
        oplock: OplockAddress,
        kind: UpdateKind,
    ) {
        self.set_interest(now, store, oplock, Interest::Acquire(kind));
    }

    /// Stop caching (back to Joined). A dirty oplock is flushed first (`Event::Purge`).
    pub fn request_unshare(&mut self, now: u64, store: &mut dyn SharedStore, oplock: OplockAddress) {
        self.set_interest(now, store, oplock, Interest::Join);
    }

    /// Leave the oplock's cluster (back to Uninterested).
    pub fn request_leave(&mut self, now: u64, store: &mut dyn SharedStore, oplock: OplockAddress) {
        self.set_interest(now, store, oplock, Interest::None);
    }

    /// The update is done: journal the release, wake waiters, back to Sharing.
    pub fn release(
        &mut self,
        now: u64,
        store: &mut dyn SharedStore,
        oplock: OplockAddress,
    ) -> Result<(), Error> {
        if !self.oplocks.contains_key(&oplock) {
            return Err(Error::NotAcquired(oplock));
        }
        if self.with_oplock(now, store, oplock, |op, cx| op.release(cx)) {
            Ok(())
        } else {
            Err(Error::NotAcquired(oplock))
        }
    }

    /// The control path finished the purge (and drain, and flush) of `Event::Purge`.
    pub fn purge_complete(
        &mut self,
        now: u64,
        store: &mut dyn SharedStore,
        oplock: OplockAddress,
        token: u64,
    ) -> Result<(), Error> {
        if self.oplocks.contains_key(&oplock)
            && self.with_oplock(now, store, oplock, |op, cx| op.purge_complete(cx, token))
        {
            Ok(())
        } else {
            Err(Error::UnknownPurge { oplock, token })
        }
    }

    /// The control path finished cleaning up after `victim` (`Event::Caretaker`): release the
    /// inherited oplocks and journals.
    pub fn cleanup_complete(
        &mut self,
        now: u64,
        store: &mut dyn SharedStore,
        victim: EngineId,
    ) -> Result<(), Error> {
        if victim == self.config.id {
            return Err(Error::NotCaretaker(victim));
        }
        let (cleanup, ended) = self.caretaking.end(victim).ok_or(Error::NotCaretaker(victim))?;
        store.finish_cleanup(self.config.id, &cleanup.victims, &cleanup.oplocks);
        for (oplock, waiters) in ended {
            self.wake_waiters(store, oplock, waiters);
            if self.oplocks.contains_key(&oplock) {
                self.with_oplock(now, store, oplock, |op, cx| op.wake(cx));
            }
        }
        Ok(())
    }

    /// The control path replayed the journals of `Event::Replay`: finish booting.
    pub fn replay_complete(&mut self, now: u64, store: &mut dyn SharedStore) -> Result<(), Error> {
        let me = self.config.id;
        if self.boot.is_none() {
            return Err(Error::NotReplaying);
        }
        if self.evicted_while_booting(store) {
            self.events.push_back(Event::Evicted);
            self.restart_boot(now, store);
            return Ok(());
        }
        let (cleanup, ended) = self.caretaking.end(me).ok_or(Error::NotReplaying)?;
        self.finish_boot(now, store, &cleanup.oplocks, ended);
        Ok(())
    }

    // ----- network and timers ---------------------------------------------------------

    /// A message from a peer. Messages from non-members or older incarnations are dropped.
    pub fn handle_message(&mut self, now: u64, store: &mut dyn SharedStore, envelope: Envelope) {
        if envelope.to != self.config.id || store.members().get(&envelope.from) != Some(&envelope.incarnation)
        {
            return;
        }
        let oplock = envelope.message.oplock;
        self.with_oplock(now, store, oplock, |op, cx| op.handle_message(cx, envelope.from, envelope.message));
    }

    /// Timers due at `now` fire.
    pub fn handle_timeout(&mut self, now: u64, store: &mut dyn SharedStore) {
        if self.delayed_events.iter().any(|(t, _)| *t <= now) {
            let (due, later): (Vec<_>, Vec<_>) = self.delayed_events.drain(..).partition(|(t, _)| *t <= now);
            self.delayed_events = later;
            self.events.extend(due.into_iter().map(|(_, event)| event));
        }
        if self.boot.is_some() {
            if self.evicted_while_booting(store) {
                self.events.push_back(Event::Evicted);
                self.restart_boot(now, store);
            } else if self.boot.as_ref().and_then(Boot::deadline).is_some_and(|d| d <= now) {
                self.boot_progress(now, store);
            }
        }
        if self.online && self.membership_deadline <= now {
            self.membership_deadline = now + self.config.membership_check_interval;
            if self.check_evicted(now, store) {
                return;
            }
        }
        let due: Vec<OplockAddress> = self
            .oplocks
            .iter()
            .filter(|(_, op)| op.deadline().is_some_and(|d| d <= now))
            .map(|(a, _)| *a)
            .collect();
        for address in due {
            let silent = self.with_oplock(now, store, address, |op, cx| op.handle_timeout(cx));
            if silent.is_empty() {
                continue;
            }
            // About to evict peers: first make sure we have not been evicted ourselves.
            if self.online && self.check_evicted(now, store) {
                return;
            }
            for victim in silent {
                self.evict(now, store, victim);
            }
            // Whoever evicted them, they may be alive: give them the grace to notice.
            let resume = now + self.config.eviction_grace;
            if self.oplocks.contains_key(&address) {
                self.with_oplock(now, store, address, |op, cx| op.restart_at(cx, resume));
            }
        }
        if self.online && self.sweep_deadline <= now {
            self.sweep_deadline = now + self.config.sweep_interval;
            self.sweep(now, store);
        }
    }

    // ----- internals ------------------------------------------------------------------

    fn set_interest(
        &mut self,
        now: u64,
        store: &mut dyn SharedStore,
        oplock: OplockAddress,
        interest: Interest,
    ) {
        self.with_oplock(now, store, oplock, |op, cx| op.set_interest(cx, interest));
    }

    pub(crate) fn with_oplock<R>(
        &mut self,
        now: u64,
        store: &mut dyn SharedStore,
        address: OplockAddress,
        f: impl FnOnce(&mut Oplock, &mut Context<'_>) -> R,
    ) -> R {
        let members = store.members();
        let online = self.online;
        let oplock = self.oplocks.entry(address).or_insert_with(|| Oplock::new(address, online));
        let defended = self.caretaking.is_defended(&address);
        let mut scratch = BTreeSet::new();
        let defence_waiters = match self.caretaking.waiters_mut(&address) {
            Some(waiters) => waiters,
            None => &mut scratch,
        };
        let mut cx = Context {
            now,
            me: self.config.id,
            incarnation: self.incarnation,
            ack_timeout: self.config.ack_timeout,
            retry_interval: self.config.retry_interval,
            store,
            members: &members,
            transmit: &mut self.transmit,
            events: &mut self.events,
            next_token: &mut self.next_token,
            defended,
            defence_waiters,
            evicted: false,
            eviction_grace: self.config.eviction_grace,
            evictions_seen: &mut self.evictions_seen,
        };
        let result = f(oplock, &mut cx);
        if cx.evicted {
            self.check_evicted(now, store);
        }
        result
    }

    pub(crate) fn wake_waiters(
        &mut self,
        store: &mut dyn SharedStore,
        oplock: OplockAddress,
        waiters: BTreeSet<EngineId>,
    ) {
        let members = store.members();
        for peer in waiters {
            if peer != self.config.id && members.contains_key(&peer) {
                self.transmit.push_back(Envelope {
                    from: self.config.id,
                    incarnation: self.incarnation,
                    to: peer,
                    message: Message { oplock, round: 0, body: Body::Release },
                });
            }
        }
    }

    /// Evict a silent peer. If we win the eviction we become its caretaker and defend what it
    /// left; if somebody else is evicting it, the caller's rebroadcast waits for them.
    fn evict(&mut self, now: u64, store: &mut dyn SharedStore, victim: EngineId) {
        if let EvictOutcome::Evicted(inheritance) = store.evict(self.config.id, victim) {
            tracing::debug!(engine = self.config.id, victim, "evicted");
            let mut victims = vec![victim];
            victims.extend(inheritance.cascaded.iter().copied());
            self.caretaking.begin(
                victim,
                Cleanup { victims, oplocks: inheritance.oplocks.iter().map(|o| o.oplock).collect() },
            );
            let event = Event::Caretaker {
                victim,
                cascaded: inheritance.cascaded,
                journals: inheritance.journals,
                oplocks: inheritance.oplocks,
            };
            self.delayed_events.push((now + self.config.eviction_grace, event));
        }
    }

    /// Online check: are we still in the jlist with our incarnation and not on the elist?
    /// If not, drop everything and reboot.
    fn check_evicted(&mut self, now: u64, store: &mut dyn SharedStore) -> bool {
        let me = self.config.id;
        if store.members().get(&me) == Some(&self.incarnation) && store.eviction_of(me).is_none() {
            return false;
        }
        tracing::debug!(engine = me, "found itself evicted");
        self.events.push_back(Event::Evicted);
        self.restart_boot(now, store);
        true
    }

    fn evicted_while_booting(&self, store: &dyn SharedStore) -> bool {
        let Some(boot) = &self.boot else {
            return false;
        };
        let current = store.eviction_of(self.config.id);
        current.map(|r| r.seq) != boot.known_eviction
            && current.is_some_and(|r| r.caretaker != self.config.id)
    }

    fn restart_boot(&mut self, now: u64, store: &mut dyn SharedStore) {
        self.online = false;
        self.oplocks.clear();
        self.caretaking = Caretaking::default();
        self.transmit.clear();
        self.delayed_events.clear();
        self.incarnation = store.members().get(&self.config.id).copied().unwrap_or(0);
        self.boot = Some(Boot::new(store, self.config.id));
        self.membership_deadline = u64::MAX;
        self.sweep_deadline = u64::MAX;
        self.boot_progress(now, store);
    }

    fn sweep(&mut self, now: u64, store: &mut dyn SharedStore) {
        let me = self.config.id;
        let due: Vec<OplockAddress> = self
            .oplocks
            .iter()
            .filter(|(a, op)| {
                !self.caretaking.is_defended(a)
                    && sweep::is_due(op, **a, me, store, now, self.config.sweep_age)
            })
            .map(|(a, _)| *a)
            .collect();
        for address in due {
            self.with_oplock(now, store, address, |op, cx| op.sweep(cx));
        }
    }
}
