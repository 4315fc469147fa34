//! `dve-fastpath`: the per-port fast-path workers. A sans-I/O worker core translates host
//! reads and writes through cached extent tables and runs the remap, stripe, write-split and
//! journal primitives; everything else faults to the control path over the FP API.
//!
//! Modules: the worker core and its poll loop ([`worker`]), exchange tables ([`exchange`]),
//! the per-worker mapping cache ([`cache`]), incremental FC CRC updates ([`crc_patch`]) and
//! the software port with fault hooks ([`port`]).

pub mod cache;
pub mod crc_patch;
pub mod exchange;
pub mod port;
pub mod worker;

pub use worker::Worker;
pub use worker::config::{PortConfig, WorkerConfig};
