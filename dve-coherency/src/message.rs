//! Messages between engines: the eight oplock messages of seed 003 plus the round number that
//! matches a reply to the broadcast it answers, and the envelope the transports carry.

use crate::address::{EngineId, OplockAddress};

/// Priority of a competing acquire. The lowest value wins: the oldest request, then the lowest
/// engine id. A request keeps its priority across retries, so the oldest waiting request beats
/// every newer one and cannot be starved (no livelock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AcquirePriority {
    /// Time (ns, the requester's clock) of the local acquire request.
    pub requested_at: u64,
    /// The requesting engine, to break ties between equal timestamps.
    pub engine: EngineId,
}

/// What a message says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    /// "I want to join this oplock"; sent to the whole jlist.
    Join,
    /// "I no longer care about this oplock".
    Leave,
    /// "I want to cache the protected metadata"; sent to slist plus the recent owner.
    Share,
    /// "I stopped caching".
    Unshare,
    /// "I want to update"; sent to alist.
    Acquire {
        /// Tie-break between competing acquirers.
        priority: AcquirePriority,
        /// Restrictive updates make peers drain I/O that used the old value before acking.
        restrictive: bool,
    },
    /// Wake-up: the sender finished its update, waiters may retry and re-read.
    Release,
    /// Positive answer to `round`.
    Ack {
        /// The responder flushed dirty (unrestrictive) metadata before answering.
        old_dirty: bool,
        /// Answer to a share: the responder caches (or is about to cache) the metadata, so it
        /// belongs in the requester's acquire list.
        sharing: bool,
    },
    /// Negative answer to `round`: retry after a release or the retry timer.
    Nak,
}

impl Body {
    /// Short lowercase name, as in the seed.
    pub fn name(&self) -> &'static str {
        match self {
            Body::Join => "join",
            Body::Leave => "leave",
            Body::Share => "share",
            Body::Unshare => "unshare",
            Body::Acquire { .. } => "acquire",
            Body::Release => "release",
            Body::Ack { .. } => "ack",
            Body::Nak => "nak",
        }
    }
}

/// One oplock message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Message {
    /// The oplock it is about.
    pub oplock: OplockAddress,
    /// Broadcast round of the requester; a reply echoes the round it answers so that late
    /// replies to an abandoned round are recognised and ignored.
    pub round: u64,
    /// What it says.
    pub body: Body,
}

/// A message with its addressing, as transports carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Envelope {
    /// Sender.
    pub from: EngineId,
    /// Sender's incarnation (its jlist entry); messages of an older life are dropped.
    pub incarnation: u64,
    /// Recipient.
    pub to: EngineId,
    /// The message.
    pub message: Message,
}
