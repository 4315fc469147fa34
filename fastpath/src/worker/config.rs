//! How a worker is set up: its identity and exchange-id layout, the ports it serves, the
//! fast-path capacity limits of Fig. 7 step 116, and the optional splitting of I/O that
//! crosses extents or stripe units.

use dve_fp_api::ids::{ExchangeIdLayout, FcId, PortId, WorkerId};
use dve_wire::ethernet::MacAddr;

use crate::cache::CacheConfig;

/// One switch port as every worker sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PortConfig {
    /// The port.
    pub id: PortId,
    /// The port's MAC address (source of every frame sent on it).
    pub mac: MacAddr,
    /// The switch's own N_Port ID on this port, the S_ID of downstream I/O it originates.
    pub initiator_fc_id: FcId,
}

/// A worker's configuration.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The worker.
    pub id: WorkerId,
    /// How exchange ids split between worker and slot.
    pub layout: ExchangeIdLayout,
    /// Host exchanges in flight at once.
    pub upstream_slots: usize,
    /// Downstream exchanges in flight at once.
    pub downstream_slots: usize,
    /// Every port of the engine (a worker may transmit on any; it receives on its own).
    pub ports: Vec<PortConfig>,
    /// The FCoE FC-MAP, the high 24 bits of fabric-provided MAC addresses.
    pub fc_map: u32,
    /// Split an I/O that crosses Rmap extents into per-extent pieces instead of faulting.
    pub split_extents: bool,
    /// Split an I/O that crosses stripe units instead of faulting.
    pub split_stripe_units: bool,
    /// Largest I/O the fast path takes, in blocks.
    pub max_io_blocks: u32,
    /// Most downstream I/Os one host I/O may need (devices per I/O).
    pub max_legs: usize,
    /// Host I/Os held while their volume is paused; beyond this they fault.
    pub max_held: usize,
    /// Largest burst asked of a host in one XFER_RDY, in bytes.
    pub max_burst: u32,
    /// The mapping cache's bounds.
    pub cache: CacheConfig,
    /// A device I/O unanswered for this long is aborted and failed to the control path
    /// (seed 003 section 7.4: a silent device). An aborted exchange's slot is reused only
    /// after the device's BA_ACC, or after twice this long.
    pub downstream_timeout_ns: u64,
    /// Test-only fault injection: the n-th host write (from 1) that the fast path dispatches
    /// goes to the block after the right one on its first leg. The simulator's tests use it
    /// to prove the integrity oracle catches a misdirected write; `None` in any real use.
    pub misdirect_write: Option<u64>,
    /// Frame buffers kept in the worker's pool. Sized to the working set, not generously:
    /// the pool recycles first-in first-out, so a large pool walks cold memory (measured in
    /// `fp-bench`: 8192 buffers made every frame a cache miss).
    pub pool_frames: usize,
    /// Forward data frames without verifying their CRC (it is patched, so end ports still
    /// catch corruption); frames the worker acts on are always verified.
    pub cut_through: bool,
}

impl WorkerConfig {
    /// Defaults for worker `id` serving `ports`.
    pub fn new(id: WorkerId, ports: Vec<PortConfig>) -> WorkerConfig {
        WorkerConfig {
            id,
            layout: ExchangeIdLayout::new(4)
                .unwrap_or_else(|| unreachable!("4 worker bits is a valid layout")),
            upstream_slots: 2048,
            downstream_slots: 4096,
            ports,
            fc_map: 0x0E_FC00,
            split_extents: true,
            split_stripe_units: true,
            max_io_blocks: 2048,
            max_legs: crate::worker::translate::MAX_LEGS,
            max_held: 256,
            max_burst: 256 * 1024,
            cache: CacheConfig::default(),
            pool_frames: 1024,
            cut_through: true,
            downstream_timeout_ns: 2_000_000_000,
            misdirect_write: None,
        }
    }
}
