//! The state machine of one oplock on one engine (seed 003, L1014-1287): the eight states, the
//! share and acquire lists, broadcast rounds with their timeouts and retry waits, purges
//! before acknowledging an acquire, and the tie-break between competing acquirers.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::address::{EngineId, OplockAddress};
use crate::event::{Event, PurgeReason, UpdateKind};
use crate::message::{AcquirePriority, Body, Envelope, Message};
use crate::store::SharedStore;

/// The states of seed 003 Fig. 27.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OplockState {
    /// The engine has not finished booting.
    Boot,
    /// Dormant, not in the oplock's cluster.
    Uninterested,
    /// Broadcasting join to the jlist.
    WantToJoin,
    /// Dormant member: answers, caches nothing.
    Joined,
    /// Broadcasting share to slist and the recent owner.
    WantToShare,
    /// Caching the metadata.
    Sharing,
    /// Broadcasting acquire to alist.
    WantToAcquire,
    /// Updating the metadata; every peer has purged.
    Acquired,
}

/// What the control path wants from the oplock; the machine climbs (or descends) toward it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interest {
    /// Uninterested.
    None,
    /// Joined.
    Join,
    /// Sharing.
    Share,
    /// Acquired, for an update of this kind.
    Acquire(UpdateKind),
}

impl Interest {
    fn level(self) -> u8 {
        match self {
            Interest::None => 0,
            Interest::Join => 1,
            Interest::Share => 2,
            Interest::Acquire(_) => 3,
        }
    }
}

/// Which broadcast a round is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum RoundKind {
    Join,
    Share,
    Acquire,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Round {
    kind: RoundKind,
    id: u64,
    sent_to: BTreeSet<EngineId>,
    waiting: BTreeSet<EngineId>,
    deadline: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Phase {
    /// No broadcast in progress.
    Idle,
    /// Waiting for the replies of a broadcast.
    Round(Round),
    /// Nak'd (or defending ourselves): wait for a release or the retry timer.
    Retry { deadline: u64 },
}

/// A purge the control path is doing; the listed acknowledgements go out when it completes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PurgeJob {
    token: u64,
    flush_dirty: bool,
    /// Replies held until the purge (and flush) is done: (peer, round, reply).
    replies: Vec<(EngineId, u64, Body)>,
    /// Sweep: clear the non-volatile ownership record when done.
    clear_owner: bool,
}

/// Everything an oplock handler may touch besides the oplock itself.
pub(crate) struct Context<'a> {
    pub now: u64,
    pub me: EngineId,
    pub incarnation: u64,
    pub ack_timeout: u64,
    pub retry_interval: u64,
    pub store: &'a mut dyn SharedStore,
    pub members: &'a BTreeMap<EngineId, u64>,
    pub transmit: &'a mut VecDeque<Envelope>,
    pub events: &'a mut VecDeque<Event>,
    pub next_token: &'a mut u64,
    /// This engine is caretaker of the oplock (or replays it at boot): defend it.
    pub defended: bool,
    /// Peers nak'd while defending; woken when the defence ends.
    pub defence_waiters: &'a mut BTreeSet<EngineId>,
    /// Set when a handler found, at a store write, that this engine has been evicted.
    pub evicted: bool,
    /// See `EngineConfig::eviction_grace`.
    pub eviction_grace: u64,
    /// (peer, eviction sequence) → when this engine first saw that eviction.
    pub evictions_seen: &'a mut BTreeMap<(EngineId, u64), u64>,
}

impl Context<'_> {
    fn send(&mut self, to: EngineId, message: Message) {
        self.transmit.push_back(Envelope { from: self.me, incarnation: self.incarnation, to, message });
    }

    /// Store writes are fenced: an engine that has been evicted must not write. Returns true
    /// (and flags the engine for reboot) if this one has.
    fn fenced(&mut self) -> bool {
        if self.members.get(&self.me) != Some(&self.incarnation) || self.store.eviction_of(self.me).is_some()
        {
            self.evicted = true;
        }
        self.evicted
    }

    fn is_member(&self, engine: EngineId) -> bool {
        engine != self.me && self.members.contains_key(&engine)
    }

    fn token(&mut self) -> u64 {
        *self.next_token += 1;
        *self.next_token
    }
}

/// One oplock on one engine.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Oplock {
    address: OplockAddress,
    state: OplockState,
    /// "share broadcast list": joined peers.
    slist: BTreeSet<EngineId>,
    /// "acquire broadcast list": peers that share (or may).
    alist: BTreeSet<EngineId>,
    /// Unrestrictive updates of this engine not yet flushed.
    dirty: bool,
    /// Re-read from media on the next acquire.
    purge: bool,
    /// The control path may hold a cached copy.
    cache_valid: bool,
    interest: Interest,
    /// Kind of the update in progress (while Acquired).
    update: Option<UpdateKind>,
    priority: Option<AcquirePriority>,
    rounds: u64,
    phase: Phase,
    /// Peers nak'd while we acquired: they get the release wake-up too.
    nakked: BTreeSet<EngineId>,
    purge_job: Option<PurgeJob>,
    last_used: u64,
    /// Another acquire was requested while Acquired: acquire again after the release.
    acquire_again: bool,
    /// No broadcast before this (eviction grace).
    not_before: u64,
}

impl Oplock {
    pub(crate) fn new(address: OplockAddress, online: bool) -> Self {
        Oplock {
            address,
            state: if online { OplockState::Uninterested } else { OplockState::Boot },
            slist: BTreeSet::new(),
            alist: BTreeSet::new(),
            dirty: false,
            purge: false,
            cache_valid: false,
            interest: Interest::None,
            update: None,
            priority: None,
            rounds: 0,
            phase: Phase::Idle,
            nakked: BTreeSet::new(),
            purge_job: None,
            last_used: 0,
            acquire_again: false,
            not_before: 0,
        }
    }

    /// Current state.
    pub fn state(&self) -> OplockState {
        self.state
    }

    /// The share list.
    pub fn slist(&self) -> &BTreeSet<EngineId> {
        &self.slist
    }

    /// The acquire list.
    pub fn alist(&self) -> &BTreeSet<EngineId> {
        &self.alist
    }

    /// Unflushed unrestrictive updates.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// What the control path asked for.
    pub fn interest(&self) -> Interest {
        self.interest
    }

    /// The control path may be holding a cached copy that the protocol still covers.
    pub fn caches(&self) -> bool {
        self.cache_valid
    }

    pub(crate) fn last_used(&self) -> u64 {
        self.last_used
    }

    pub(crate) fn is_busy(&self) -> bool {
        self.purge_job.is_some() || self.phase != Phase::Idle
    }

    pub(crate) fn deadline(&self) -> Option<u64> {
        match &self.phase {
            Phase::Idle => None,
            Phase::Round(round) => Some(round.deadline),
            Phase::Retry { deadline } => Some(*deadline),
        }
    }

    pub(crate) fn go_online(&mut self, cx: &mut Context<'_>) {
        if self.state == OplockState::Boot {
            self.state = OplockState::Uninterested;
        }
        self.advance(cx);
    }

    // ----- local requests -------------------------------------------------------------

    pub(crate) fn set_interest(&mut self, cx: &mut Context<'_>, interest: Interest) {
        self.last_used = cx.now;
        if let Interest::Acquire(_) = interest
            && self.state == OplockState::Acquired
        {
            self.acquire_again = true;
        }
        if let Interest::Acquire(_) = interest {
            if self.priority.is_none() {
                self.priority = Some(AcquirePriority { requested_at: cx.now, engine: cx.me });
            }
        } else if self.state != OplockState::Acquired {
            self.priority = None;
        }
        self.interest = interest;
        self.advance(cx);
    }

    /// The update is done: journal the release, wake the waiters, go back to Sharing.
    pub(crate) fn release(&mut self, cx: &mut Context<'_>) -> bool {
        if self.state != OplockState::Acquired {
            return false;
        }
        self.last_used = cx.now;
        if cx.fenced() {
            return true;
        }
        if self.address.is_non_volatile() {
            let oplock = self.address;
            cx.store.update_journal(cx.me, &mut |j| {
                j.in_progress.remove(&oplock);
            });
        }
        let wake: BTreeSet<EngineId> = self.alist.union(&self.nakked).copied().collect();
        self.nakked.clear();
        for peer in wake {
            if cx.is_member(peer) {
                self.send_request(cx, peer, Body::Release, 0);
            }
        }
        self.state = OplockState::Sharing;
        self.update = None;
        self.priority = None;
        if let Interest::Acquire(_) = self.interest
            && !std::mem::take(&mut self.acquire_again)
        {
            self.interest = Interest::Share;
        }
        self.advance(cx);
        true
    }

    pub(crate) fn purge_complete(&mut self, cx: &mut Context<'_>, token: u64) -> bool {
        let Some(job) = self.purge_job.take_if(|job| job.token == token) else {
            return false;
        };
        let oplock = self.address;
        if cx.fenced() {
            return true;
        }
        if job.flush_dirty {
            cx.store.update_journal(cx.me, &mut |j| {
                j.dirty.remove(&oplock);
            });
        }
        if job.clear_owner && cx.store.owner(oplock) == Some(cx.me) {
            cx.store.set_owner(oplock, None);
        }
        for (peer, round, body) in job.replies {
            self.reply(cx, peer, round, body);
        }
        self.advance(cx);
        true
    }

    /// Sweep: stop sharing a non-volatile oplock this engine owns and clear its ownership.
    pub(crate) fn sweep(&mut self, cx: &mut Context<'_>) -> bool {
        if self.is_busy() || !matches!(self.state, OplockState::Sharing | OplockState::Joined) || cx.fenced()
        {
            return false;
        }
        if matches!(self.interest, Interest::Share | Interest::Acquire(_)) {
            self.interest = Interest::Join;
        }
        if self.state == OplockState::Sharing {
            self.unshare_now(cx, PurgeReason::Sweep, true);
        } else {
            cx.store.set_owner(self.address, None);
        }
        true
    }

    // ----- driving toward the interest ------------------------------------------------

    fn advance(&mut self, cx: &mut Context<'_>) {
        if self.purge_job.is_some() || self.phase != Phase::Idle {
            return;
        }
        let want = self.interest.level();
        match self.state {
            OplockState::Boot
            | OplockState::WantToJoin
            | OplockState::WantToShare
            | OplockState::WantToAcquire
            | OplockState::Acquired => {}
            OplockState::Uninterested if want >= 1 => {
                self.slist.clear();
                self.alist.clear();
                self.state = OplockState::WantToJoin;
                self.start_round(cx);
            }
            OplockState::Uninterested => {}
            OplockState::Joined if want >= 2 => {
                self.state = OplockState::WantToShare;
                self.start_round(cx);
            }
            OplockState::Joined if want == 0 => {
                for peer in self.slist.clone() {
                    if cx.is_member(peer) {
                        self.send_request(cx, peer, Body::Leave, 0);
                    }
                }
                self.state = OplockState::Uninterested;
            }
            OplockState::Joined => {}
            OplockState::Sharing if want == 3 => {
                self.state = OplockState::WantToAcquire;
                self.start_round(cx);
            }
            OplockState::Sharing if want <= 1 => {
                self.unshare_now(cx, PurgeReason::Unshare, false);
                self.advance(cx);
            }
            OplockState::Sharing => {}
        }
    }

    /// Voluntary unshare. A dirty oplock flushes first: once unshared this engine is no longer
    /// in anyone's acquire list, and nobody would ask it to flush.
    fn unshare_now(&mut self, cx: &mut Context<'_>, reason: PurgeReason, clear_owner: bool) {
        let flush_dirty = self.dirty;
        if flush_dirty || clear_owner {
            self.dirty = false;
            let token = cx.token();
            cx.events.push_back(Event::Purge {
                oplock: self.address,
                reason,
                drain_before: clear_owner.then_some(cx.now),
                flush_dirty,
                blocking: true,
                token,
            });
            self.purge_job = Some(PurgeJob { token, flush_dirty, replies: Vec::new(), clear_owner });
        }
        self.cache_valid = false;
        self.unshare_to_alist(cx);
        self.state = OplockState::Joined;
    }

    fn round_kind(&self) -> Option<RoundKind> {
        match self.state {
            OplockState::WantToJoin => Some(RoundKind::Join),
            OplockState::WantToShare => Some(RoundKind::Share),
            OplockState::WantToAcquire => Some(RoundKind::Acquire),
            _ => None,
        }
    }

    /// Start a broadcast round from scratch (first attempt, retry, or after an eviction).
    pub(crate) fn start_round(&mut self, cx: &mut Context<'_>) {
        let Some(kind) = self.round_kind() else {
            self.phase = Phase::Idle;
            return;
        };
        if cx.now < self.not_before {
            self.phase = Phase::Retry { deadline: self.not_before };
            return;
        }
        if cx.defended && kind != RoundKind::Join {
            // Caretaker cleanup first: the release at its end wakes us.
            self.phase = Phase::Retry { deadline: cx.now + cx.retry_interval };
            return;
        }
        let targets: BTreeSet<EngineId> = match kind {
            RoundKind::Join => cx.members.keys().copied().collect(),
            RoundKind::Share => {
                let mut set = self.slist.clone();
                // The most recent owner of a non-volatile oplock is always asked, so that if
                // it died the share evicts it and its caretaker cleans up first.
                if let Some(owner) = cx.store.owner(self.address) {
                    set.insert(owner);
                }
                set
            }
            RoundKind::Acquire => self.alist.clone(),
        };
        let mut targets = targets;
        if kind != RoundKind::Join {
            targets.extend(cx.store.pending_caretakers());
        }
        // A peer evicted by anyone may be alive and still caching until its next membership
        // check: leave it out only once the grace has passed since we first saw it evicted.
        // That holds for every evicted engine, not only those in our lists: one evicted before
        // we joined may be a sharer we never heard of.
        let mut resume = cx.now;
        for (peer, record) in cx.store.eviction_list() {
            if cx.eviction_grace > 0 && peer != cx.me && !cx.members.contains_key(&peer) {
                let first_seen = *cx.evictions_seen.entry((peer, record.seq)).or_insert(cx.now);
                resume = resume.max(first_seen + cx.eviction_grace);
            }
        }
        if resume > cx.now {
            self.phase = Phase::Retry { deadline: resume };
            return;
        }
        let targets: BTreeSet<EngineId> = targets.into_iter().filter(|peer| cx.is_member(*peer)).collect();
        self.rounds += 1;
        let id = self.rounds;
        if kind == RoundKind::Acquire {
            self.priority.get_or_insert(AcquirePriority { requested_at: cx.now, engine: cx.me });
        }
        let body = match kind {
            RoundKind::Join => Body::Join,
            RoundKind::Share => Body::Share,
            RoundKind::Acquire => Body::Acquire {
                priority: self.priority.unwrap_or(AcquirePriority { requested_at: cx.now, engine: cx.me }),
                restrictive: self.interest != Interest::Acquire(UpdateKind::Unrestrictive),
            },
        };
        for peer in &targets {
            self.send_request(cx, *peer, body, id);
        }
        if targets.is_empty() {
            self.phase = Phase::Idle;
            self.round_complete(cx);
        } else {
            self.phase = Phase::Round(Round {
                kind,
                id,
                waiting: targets.clone(),
                sent_to: targets,
                deadline: cx.now + cx.ack_timeout,
            });
        }
    }

    fn round_complete(&mut self, cx: &mut Context<'_>) {
        self.phase = Phase::Idle;
        match self.state {
            OplockState::WantToJoin => {
                self.state = OplockState::Joined;
                self.advance(cx);
            }
            OplockState::WantToShare => {
                self.state = OplockState::Sharing;
                self.cache_valid = true;
                cx.events.push_back(Event::Shared { oplock: self.address });
                self.advance(cx);
            }
            OplockState::WantToAcquire => self.enter_acquired(cx),
            _ => {}
        }
    }

    fn enter_acquired(&mut self, cx: &mut Context<'_>) {
        // The store fences evicted engines: no ownership record or journal write from one.
        if cx.fenced() {
            return;
        }
        if cx.store.is_recovering(self.address) {
            // A caretaker inherited it after our round began: it defends it until its
            // cleanup is done. Wait, then try again.
            self.phase = Phase::Retry { deadline: cx.now + cx.retry_interval };
            return;
        }
        self.state = OplockState::Acquired;
        let reread = self.purge || !self.cache_valid;
        self.purge = false;
        self.cache_valid = true;
        let update = match self.interest {
            Interest::Acquire(kind) => kind,
            _ => UpdateKind::Restrictive,
        };
        self.update = Some(update);
        let oplock = self.address;
        if oplock.is_non_volatile() {
            if cx.store.owner(oplock) != Some(cx.me) {
                cx.store.set_owner(oplock, Some(cx.me));
            }
            cx.store.update_journal(cx.me, &mut |j| {
                j.in_progress.insert(oplock);
            });
        }
        if update == UpdateKind::Unrestrictive {
            self.dirty = true;
            cx.store.update_journal(cx.me, &mut |j| {
                j.dirty.insert(oplock);
            });
        }
        cx.events.push_back(Event::Acquired { oplock, reread });
    }

    // ----- messages -------------------------------------------------------------------

    fn send_request(&mut self, cx: &mut Context<'_>, to: EngineId, body: Body, round: u64) {
        cx.send(to, Message { oplock: self.address, round, body });
    }

    fn reply(&mut self, cx: &mut Context<'_>, to: EngineId, round: u64, body: Body) {
        if cx.is_member(to) {
            cx.send(to, Message { oplock: self.address, round, body });
        }
    }

    fn nak(&mut self, cx: &mut Context<'_>, to: EngineId, round: u64, defence: bool) {
        if defence {
            cx.defence_waiters.insert(to);
        } else {
            self.nakked.insert(to);
        }
        self.reply(cx, to, round, Body::Nak);
    }

    /// Acknowledge an acquire; behind any purge in progress, so the acquirer never proceeds
    /// while this engine may still use the old value.
    fn ack_acquire(&mut self, cx: &mut Context<'_>, to: EngineId, round: u64, old_dirty: bool) {
        self.reply_after_purge(cx, to, round, Body::Ack { old_dirty, sharing: false });
    }

    /// Send a reply, or hold it until the purge in progress is done: while a flush runs, the
    /// metadata on media is not current.
    fn reply_after_purge(&mut self, cx: &mut Context<'_>, to: EngineId, round: u64, body: Body) {
        match &mut self.purge_job {
            Some(job) => job.replies.push((to, round, body)),
            None => self.reply(cx, to, round, body),
        }
    }

    /// Lose the cached copy because `to` acquires: PURGE (and drain, if restrictive), flush
    /// dirty, then acknowledge with the old dirty value.
    fn purge_for(&mut self, cx: &mut Context<'_>, to: EngineId, round: u64, restrictive: bool) {
        let old_dirty = self.dirty;
        if !self.cache_valid && !old_dirty {
            self.ack_acquire(cx, to, round, false);
            return;
        }
        self.dirty = false;
        self.cache_valid = false;
        let blocking = restrictive || old_dirty;
        let token = cx.token();
        cx.events.push_back(Event::Purge {
            oplock: self.address,
            reason: PurgeReason::PeerAcquire,
            drain_before: restrictive.then_some(cx.now),
            flush_dirty: old_dirty,
            blocking,
            token,
        });
        if blocking {
            match &mut self.purge_job {
                Some(job) => {
                    // Already purging: the earlier token now covers the flush too.
                    job.flush_dirty |= old_dirty;
                    job.replies.push((to, round, Body::Ack { old_dirty, sharing: false }));
                }
                None => {
                    self.purge_job = Some(PurgeJob {
                        token,
                        flush_dirty: old_dirty,
                        replies: vec![(to, round, Body::Ack { old_dirty, sharing: false })],
                        clear_owner: false,
                    })
                }
            }
        } else {
            self.ack_acquire(cx, to, round, false);
        }
    }

    pub(crate) fn handle_message(&mut self, cx: &mut Context<'_>, from: EngineId, msg: Message) {
        use OplockState as S;
        let round = msg.round;
        match msg.body {
            Body::Join => match self.state {
                // A booting engine that replays this oplock must be asked before anyone
                // shares it, so it joins the requester's slist by acking.
                S::Boot | S::Uninterested if !cx.defended => self.reply(cx, from, round, Body::Nak),
                _ => {
                    self.slist.insert(from);
                    self.reply(cx, from, round, Body::Ack { old_dirty: false, sharing: false });
                }
            },
            Body::Leave => {
                self.slist.remove(&from);
            }
            Body::Share => {
                if cx.defended {
                    self.nak(cx, from, round, true);
                    return;
                }
                match self.state {
                    S::WantToAcquire | S::Acquired => self.nak(cx, from, round, false),
                    S::Boot | S::Uninterested => self.reply_after_purge(
                        cx,
                        from,
                        round,
                        Body::Ack { old_dirty: false, sharing: false },
                    ),
                    S::WantToJoin | S::Joined | S::WantToShare | S::Sharing => {
                        self.alist.insert(from);
                        let sharing = matches!(self.state, S::WantToShare | S::Sharing);
                        self.reply_after_purge(cx, from, round, Body::Ack { old_dirty: false, sharing });
                    }
                }
            }
            Body::Unshare => {
                self.alist.remove(&from);
            }
            Body::Acquire { priority, restrictive } => {
                if cx.defended {
                    self.nak(cx, from, round, true);
                    return;
                }
                match self.state {
                    S::Acquired => self.nak(cx, from, round, false),
                    S::Sharing => {
                        self.purge_for(cx, from, round, restrictive);
                        self.unshare_to_alist(cx);
                        self.state = S::Joined;
                    }
                    S::WantToAcquire => {
                        let mine = self
                            .priority
                            .unwrap_or(AcquirePriority { requested_at: u64::MAX, engine: cx.me });
                        if priority < mine {
                            // Preempted: give way. The seed does not purge here, but the
                            // winner is about to update, so our copy must go like a sharer's.
                            if let Phase::Round(r) = &self.phase {
                                for peer in r.sent_to.clone() {
                                    self.send_request(cx, peer, Body::Release, 0);
                                }
                            }
                            self.purge_for(cx, from, round, restrictive);
                            self.purge = true;
                            self.phase = Phase::Retry { deadline: cx.now + cx.retry_interval };
                        } else {
                            self.nak(cx, from, round, false);
                        }
                    }
                    S::WantToShare => {
                        self.ack_acquire(cx, from, round, false);
                        // Replies already collected predate the acquire: start over.
                        if matches!(self.phase, Phase::Round(_)) {
                            self.start_round(cx);
                        }
                    }
                    S::Boot | S::Uninterested | S::WantToJoin | S::Joined => {
                        self.ack_acquire(cx, from, round, false)
                    }
                }
            }
            Body::Release => {
                if matches!(self.phase, Phase::Retry { .. })
                    && matches!(self.state, S::WantToShare | S::WantToAcquire)
                {
                    self.start_round(cx);
                }
            }
            Body::Ack { old_dirty, sharing } => self.on_reply(cx, from, round, true, old_dirty, sharing),
            Body::Nak => self.on_reply(cx, from, round, false, false, false),
        }
    }

    /// Tell the acquire list we stopped sharing, once any flush is done: until then we must
    /// stay in their acquire lists so that their next acquire waits for the flush.
    fn unshare_to_alist(&mut self, cx: &mut Context<'_>) {
        for peer in self.alist.clone() {
            self.reply_after_purge(cx, peer, 0, Body::Unshare);
        }
    }

    fn on_reply(
        &mut self,
        cx: &mut Context<'_>,
        from: EngineId,
        round_id: u64,
        ack: bool,
        old_dirty: bool,
        sharing: bool,
    ) {
        let Phase::Round(round) = &mut self.phase else {
            return;
        };
        if round.id != round_id || !round.waiting.remove(&from) {
            return;
        }
        let kind = round.kind;
        if ack {
            match kind {
                RoundKind::Join => {
                    self.slist.insert(from);
                }
                RoundKind::Share => {
                    if sharing {
                        self.alist.insert(from);
                    }
                }
                RoundKind::Acquire => self.purge |= old_dirty,
            }
        } else if kind != RoundKind::Join {
            // Nak: undo what the round did at the peers that answered, wait for a release.
            let undo = match kind {
                RoundKind::Share => Body::Unshare,
                _ => Body::Release,
            };
            let sent_to = round.sent_to.clone();
            for peer in sent_to {
                if cx.is_member(peer) {
                    self.send_request(cx, peer, undo, 0);
                }
            }
            self.phase = Phase::Retry { deadline: cx.now + cx.retry_interval };
            return;
        }
        if let Phase::Round(round) = &self.phase
            && round.waiting.is_empty()
        {
            self.round_complete(cx);
        }
    }

    // ----- timers ---------------------------------------------------------------------

    /// The timer fired. Returns the peers that did not answer (to be evicted by the engine,
    /// which then restarts the round).
    pub(crate) fn handle_timeout(&mut self, cx: &mut Context<'_>) -> Vec<EngineId> {
        match &self.phase {
            Phase::Round(round) if round.deadline <= cx.now => {
                let silent: Vec<EngineId> = round.waiting.iter().copied().collect();
                let undo = match round.kind {
                    RoundKind::Join => Body::Leave,
                    RoundKind::Share => Body::Unshare,
                    RoundKind::Acquire => Body::Release,
                };
                let kind = round.kind;
                for peer in round.sent_to.clone() {
                    if cx.is_member(peer) && !silent.contains(&peer) {
                        self.send_request(cx, peer, undo, 0);
                    }
                }
                if kind == RoundKind::Join {
                    self.slist.clear();
                }
                self.phase = Phase::Idle;
                silent
            }
            Phase::Retry { deadline } if *deadline <= cx.now => {
                self.phase = Phase::Idle;
                self.start_round(cx);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// After evictions, rebroadcast from the start at `at` (or wait if this engine must clean
    /// up).
    pub(crate) fn restart_at(&mut self, cx: &mut Context<'_>, at: u64) {
        self.not_before = at;
        self.restart(cx);
    }

    /// Rebroadcast from the start (or wait if this engine must clean up).
    pub(crate) fn restart(&mut self, cx: &mut Context<'_>) {
        if self.phase == Phase::Idle {
            if self.round_kind().is_some() {
                self.start_round(cx);
            } else {
                self.advance(cx);
            }
        }
    }

    /// The defence of this oplock ended (cleanup complete): retry now instead of at the timer.
    pub(crate) fn wake(&mut self, cx: &mut Context<'_>) {
        if matches!(self.phase, Phase::Retry { .. }) {
            self.phase = Phase::Idle;
            self.start_round(cx);
        } else {
            self.advance(cx);
        }
    }
}
