//! `dve-fastpath`: the per-port fast-path workers. A sans-I/O worker core translates host
//! reads and writes through cached extent tables and runs the remap, stripe, write-split and
//! journal primitives; everything else faults to the control path over the FP API.
//!
//! Built so far: the software port with fault hooks ([`port`]), the exchange tables
//! ([`exchange`]) and the per-worker mapping cache ([`cache`]).

pub mod cache;
pub mod crc_patch;
pub mod exchange;
pub mod port;
