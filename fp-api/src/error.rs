//! The crate's one error type: what went wrong with a mapping change, a descriptor, an FP API
//! request or the channel, said precisely enough to act on.

use crate::ids::{ExposureId, IoTag, LvId};

/// Errors of the FP API and the mapping model.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum Error {
    /// A mutation would leave more extents than the map's bound.
    #[error("the extent map would need {needed} extents, more than its limit of {limit}")]
    ExtentLimit {
        /// The bound.
        limit: usize,
        /// Extents the mutation would leave.
        needed: usize,
    },
    /// A block range with no blocks.
    #[error("block range {start}..{end} is empty")]
    EmptyRange {
        /// Start.
        start: u64,
        /// End.
        end: u64,
    },
    /// An index past the end of something.
    #[error("{what} {index} is out of range (length {len})")]
    OutOfRange {
        /// What was indexed.
        what: &'static str,
        /// The index.
        index: u64,
        /// The length.
        len: u64,
    },
    /// An Rmap value that names no redirect entry.
    #[error("redirect entry {0} does not exist")]
    UnknownRedirect(u16),
    /// Freeing a redirect entry extents still refer to.
    #[error("redirect entry {index} is still referenced by {extents} extents")]
    RedirectInUse {
        /// The entry.
        index: u16,
        /// How many extents refer to it.
        extents: usize,
    },
    /// No free slot in a redirect table.
    #[error("the redirect table is full ({limit} entries)")]
    RedirectTableFull {
        /// The bound.
        limit: usize,
    },
    /// A descriptor that cannot describe storage.
    #[error("invalid descriptor: {0}")]
    InvalidDescriptor(&'static str),
    /// A request about an I/O the worker does not have (completed, aborted, or never there).
    #[error("no I/O {0:?} is pending in this worker")]
    UnknownIo(IoTag),
    /// A request about an exposure the worker does not have.
    #[error("no target exposure {0}")]
    UnknownExposure(ExposureId),
    /// A request about a volume the worker does not have.
    #[error("no volume {0}")]
    UnknownLv(LvId),
    /// The host's data of an I/O arrived with a bad CRC: the I/O cannot be completed with it.
    #[error("the data of I/O {0:?} arrived corrupted (bad FC CRC)")]
    CorruptData(IoTag),
    /// Data access outside an I/O's buffer.
    #[error("bytes {offset}..{end} are outside the I/O's {data_len} bytes", end = offset + len)]
    DataOutOfRange {
        /// First byte.
        offset: u32,
        /// Bytes.
        len: u32,
        /// The I/O's data length.
        data_len: u32,
    },
    /// The worker cannot take the request now (a table is full); retry later.
    #[error("the fast path has no room for {0}")]
    NoRoom(&'static str),
    /// A ring of the channel is full.
    #[error("the {0} ring is full")]
    RingFull(&'static str),
    /// The other end of the channel is gone.
    #[error("the other end of the FP API channel is gone")]
    Disconnected,
}
