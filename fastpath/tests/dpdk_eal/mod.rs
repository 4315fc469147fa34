//! The EAL every DPDK test starts: no hugepages, no PCI devices, no shared configuration
//! files (so parallel test processes do not meet), five `net_ring` devices. One set of
//! arguments for every test file, since EAL starts once per process and refuses other ones.
//! `--in-memory` would refuse `--no-huge` with `-m` (EAL counts that as legacy memory).

// Each test file uses part of this module.
#![allow(dead_code)]

use dve_fastpath::port::Eal;

/// The arguments.
pub const EAL_ARGS: &[&str] = &[
    "dve-test",
    "--no-huge",
    "--no-pci",
    "--no-shconf",
    "--no-telemetry",
    "-m",
    "256",
    "--log-level=lib.eal:warning",
    "--vdev=net_ring0",
    "--vdev=net_ring1",
    "--vdev=net_ring2",
    "--vdev=net_ring3",
    "--vdev=net_ring4",
];

/// EAL, started by the first caller in the process.
pub fn eal() -> Eal {
    Eal::init(EAL_ARGS).expect("EAL starts without hugepages or NICs")
}
