//! `dve-fp-api`: the fast-path API of seed 003 section 2 and the mapping model of section 3.
//!
//! It owns what the fast path and the control path agree on, and nothing that runs: the
//! typed messages of every FP API call ([`message`]), the I/O descriptors they carry
//! ([`io`]), the fault causes ([`fault`]), statistics ([`stats`]), the mapping model
//! (volumes, segments, Rmaps of variable extents, redirect tables, storage descriptors, age
//! lists, metadata chunks: [`mapping`]), the Rmap lookup index the fast path searches on every
//! I/O ([`lookup`]), and the in-process channel between a worker and the control path
//! ([`transport`]), pooled frame buffers ([`frame`]) and the port trait ([`port`]). No threads, no I/O.

pub mod error;
pub mod fault;
pub mod frame;
pub mod ids;
pub mod io;
pub mod journal;
pub mod lookup;
pub mod mapping;
pub mod message;
pub mod port;
pub mod stats;
pub mod transport;

pub use error::Error;
pub use fault::{FaultCause, FaultCounters};
pub use frame::{Frame, FrameMut, FramePool, TxFrame};
pub use message::{API_CALLS, ApiCall, Direction, MappingEntry, MappingKey, MissVerdict, ToCp, ToFp};
pub use port::PacketIo;
pub use transport::{CpEndpoint, FpEndpoint, fp_channel};
