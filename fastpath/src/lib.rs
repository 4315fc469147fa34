//! `dve-fastpath`: the per-port fast-path workers. A sans-I/O worker core translates host
//! reads and writes through cached extent tables and runs the remap, stripe, write-split and
//! journal primitives; everything else faults to the control path over the FP API.
//!
//! Modules: the worker core and its poll loop ([`worker`]), exchange tables ([`exchange`]),
//! the per-worker mapping cache ([`cache`]), incremental FC CRC updates ([`crc_patch`]) and
//! the ports ([`port`]): software cables with fault hooks, and DPDK ethdevs (feature `dpdk`).

// `unsafe` is denied in the package and forbidden here, module by module, so that only the
// DPDK port (`port::dpdk`, feature `dpdk`) can allow it.
#[forbid(unsafe_code)]
pub mod cache;
#[forbid(unsafe_code)]
pub mod crc_patch;
#[forbid(unsafe_code)]
pub mod exchange;
pub mod port;
#[forbid(unsafe_code)]
pub mod worker;

pub use worker::Worker;
pub use worker::config::{PortConfig, WorkerConfig};
