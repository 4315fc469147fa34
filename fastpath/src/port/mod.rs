//! Ports the workers drive. The [`PacketIo`](dve_fp_api::PacketIo) trait lives in
//! `dve-fp-api`; this module holds the implementations: the in-memory software port with
//! fault hooks. The DPDK port, behind feature `dpdk` (bindings in `dpdk-sys`), is not built
//! yet.

pub mod software;

pub use software::{FaultConfig, SoftwarePort, software_link};
