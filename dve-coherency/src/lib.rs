//! `dve-coherency`: coherency between engines. Oplock state machines, cluster membership,
//! eviction and caretaker recovery, and the transports that carry their messages (gRPC between
//! processes, an in-memory network for the simulator).
//!
//! # Shape
//!
//! [`Engine`] is a sans-I/O core in the style of quinn-proto: no threads, clocks or sockets.
//! Time is an input (`u64` nanoseconds of the caller's clock). Inputs are
//! [`Engine::handle_message`], [`Engine::handle_timeout`], the local requests
//! ([`Engine::request_share`], [`Engine::request_acquire`], [`Engine::release`], ...) and the
//! completions of work the control path was asked to do ([`Engine::purge_complete`],
//! [`Engine::cleanup_complete`], [`Engine::replay_complete`]). Outputs are polled:
//! [`Engine::poll_transmit`] (messages), [`Engine::poll_event`] ([`Event`]s for the control
//! path) and [`Engine::poll_timeout`] (the next timer). The shared metadata store (jlist,
//! elist, oplock journals, ownership records) is the [`SharedStore`] trait, passed to every
//! input; [`MemoryStore`] is the deterministic in-memory implementation.
//!
//! Transports sit below the core and give per-peer FIFO, exactly-once delivery while both ends
//! live: [`transport::memory`] for the simulator, [`transport::grpc`] between processes.
//!
//! # Using it from the control path
//!
//! 1. At start, `Engine::boot(config, now, store)`. Boot replays journals if needed
//!    ([`Event::Replay`] → replay, then [`Engine::replay_complete`]) and ends with
//!    [`Event::Online`].
//! 2. To cache metadata: [`Engine::request_share`], wait for [`Event::Shared`], then read and
//!    cache. To update: [`Engine::request_acquire`] with an [`UpdateKind`], wait for
//!    [`Event::Acquired`] (re-read first if `reread`), update, then [`Engine::release`].
//!    Addresses come from the catalogue ([`OplockAddress::rmap`], [`OplockAddress::redirs`],
//!    [`OplockAddress::mirror_write`], [`OplockAddress::taskset`], ...).
//! 3. On [`Event::Purge`]: drop cached copies in the CP and the FP, drain I/O timestamped
//!    before `drain_before` (restrictive updates), flush the metadata journal if
//!    `flush_dirty`, then [`Engine::purge_complete`] if `blocking`.
//! 4. On [`Event::Caretaker`]: reconcile mirror extents, complete journals, restart tasksets
//!    of the evicted engine, then [`Engine::cleanup_complete`].
//! 5. On [`Event::Evicted`]: this engine was evicted; it dropped every oplock and reboots.
//!    Forget every cache and pending request.
//! 6. Drive it: after every input send [`Engine::poll_transmit`]'s envelopes through a
//!    transport, handle [`Engine::poll_event`]s, and call [`Engine::handle_timeout`] at
//!    [`Engine::poll_timeout`]. [`node::run_engine`] does exactly this on tokio with the gRPC
//!    transport.
//!
//! # The protocol
//!
//! Seed 003's oplock state machine (Boot, Uninterested, Want-to-join, Joined, Want-to-share,
//! Sharing, Want-to-acquire, Acquired) with its handlers, see [`oplock`]. Deviations from the
//! seed's pseudo-code, each to close a hole it leaves:
//!
//! - Replies carry the round number of the broadcast they answer, so late replies to an
//!   abandoned round are ignored.
//! - An ack to `share` says whether the responder shares (or is about to); only then is it
//!   added to the acquire list. So an engine that is the only sharer acquires with no message
//!   at all, as the seed's active/passive example requires (the literal pseudo-code would add
//!   every joined peer to alist).
//! - Uninterested and booting engines ack `share` and `acquire` (they cache nothing).
//! - A preempted acquirer purges (and drains) like a sharer before acking the winner.
//! - Want-to-acquire does not reset `purge` at the start of every round, only on entering
//!   Acquired: a dirty ack, or a preemption, in an abandoned round still means the media
//!   changed under the cache (the literal pseudo-code sets `purge = true` after a preemption
//!   and then clears it at the top of its loop).
//! - An engine in Want-to-share that receives `acquire` restarts its share round (the acks it
//!   collected predate the acquire). `release` also wakes a nak'd Want-to-share.
//! - A dirty (unrestrictive) oplock flushes before a voluntary unshare; afterwards nobody
//!   would ask it to. While a purge or flush runs, the engine holds its answers to share and
//!   acquire and its own unshare messages until the control path completes it, so nobody reads
//!   the metadata before the flush and the flusher stays in everyone's acquire list.
//! - `release` goes to alist and to every peer nak'd meanwhile.
//! - Share and acquire rounds also ask every caretaker with a cleanup in progress (elist
//!   entries not done): the caretaker of an evicted engine's dirty journal may not be in the
//!   requester's lists. A booting engine that replays an oplock acks joins for it (instead of
//!   nak) so that it is asked too.
//! - An acquire whose round completes while a caretaker recovers the oplock (inherited after
//!   the round began) waits and retries instead of entering Acquired.
//! - Every store write of an engine (ownership, journal) first checks that the engine has not
//!   been evicted; one that has reboots instead of writing.
//!
//! # Tie-break for competing acquires
//!
//! The seed leaves the preemption policy open (extract section 10, item 6); this crate uses
//! the suggested one. Each acquire request carries an [`AcquirePriority`]
//! `(requested_at, engine)`, fixed when the control path asks and kept across retries (and
//! across preemptions) until the release. The lowest wins: the oldest request, then the
//! lowest engine id. Priorities are compared as plain integers, so every engine decides the
//! same way from the two messages alone, with no extra round.
//!
//! - An engine in Want-to-acquire that receives an acquire with a lower priority than its own
//!   gives way: it sends `release` to the peers of its own round, purges (and drains, if the
//!   winner's update is restrictive) and flushes its dirty updates, acks with the old dirty
//!   value, and waits for the winner's `release` (or its retry timer) before retrying with its
//!   unchanged priority, re-reading afterwards.
//! - Otherwise it naks, and the loser waits for the release that the winner sends, at the end
//!   of its update, to its acquire list and to every peer it nak'd.
//! - Engines in Acquired nak every acquire whatever its priority: an update in progress is
//!   never preempted.
//!
//! No livelock: priorities are a strict total order that never changes while a request
//! waits, so among the contending requests the lowest is nak'd only by a holder in Acquired
//! (which releases) or a caretaker (which finishes its cleanup), and wins its next round.
//! Starvation is bounded only if `requested_at` values are comparable: they come from each
//! requester's clock, so an engine whose clock runs behind keeps winning against older
//! requests of the others for as long as the skew. [`node::run_engine`] therefore uses
//! nanoseconds since the UNIX epoch; a caller with its own clock must keep engines' clocks
//! within a small skew of each other (the simulator and the checkers share one clock).
//!
//! # Fencing
//!
//! An engine evicted while alive (partition) learns it at its next membership check and
//! reboots; until then it may still believe it holds an oplock. The store is the fence: an
//! evicted engine's writes must be refused by the metadata store (the checker does so), and
//! its messages are dropped by everyone (it is not in the jlist any more).

pub mod address;
mod boot;
pub mod engine;
pub mod error;
pub mod event;
pub mod journal;
mod membership;
pub mod message;
pub mod node;
pub mod oplock;
pub mod store;
mod sweep;
pub mod transport;

pub use address::{EngineId, OplockAddress, OplockKind, Volatility};
pub use engine::{Engine, EngineConfig};
pub use error::Error;
pub use event::{Event, PurgeReason, UpdateKind};
pub use journal::{OplockJournal, RecoveredOplock};
pub use message::{AcquirePriority, Body, Envelope, Message};
pub use oplock::{Interest, Oplock, OplockState};
pub use store::{EvictOutcome, EvictionRecord, Inheritance, MemoryStore, SharedMemoryStore, SharedStore};
