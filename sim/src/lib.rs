//! `dve-sim`: the deterministic packet-level simulator. It runs the real fast-path,
//! control-path and coherency code in virtual time over simulated links, hosts and disks, and
//! checks every read against an integrity oracle.

pub mod crash_store;
pub mod disk;
pub mod engine;
pub mod histogram;
pub mod host;
pub mod link;
pub mod oracle;
pub mod report;
pub mod scenario;
pub mod switch;
pub mod workload;
pub mod world;
