//! Ports the workers drive. The [`PacketIo`](dve_fp_api::PacketIo) trait lives in
//! `dve-fp-api`; this module holds the implementations: the in-memory software port with
//! fault hooks (and, behind feature `dpdk`, the DPDK port).

pub mod software;

pub use software::{FaultConfig, SoftwarePort, software_link};
