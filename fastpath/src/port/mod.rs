//! Ports the workers drive. The [`PacketIo`](dve_fp_api::PacketIo) trait lives in
//! `dve-fp-api`; this module holds the implementations: the in-memory software port with
//! fault hooks, and, with feature `dpdk`, the DPDK port over an ethdev (bindings in
//! `dpdk-sys`).

#[forbid(unsafe_code)]
pub mod software;

// The one module of the crate with `unsafe`: calls into DPDK, each block with its SAFETY.
#[cfg(feature = "dpdk")]
#[allow(unsafe_code)]
pub mod dpdk;

pub use software::{FaultConfig, SoftwarePort, software_link};

#[cfg(feature = "dpdk")]
pub use dpdk::{DpdkError, DpdkPort, DpdkPortConfig, DpdkPortCounters, Eal, EthDevice, ring_cable};
