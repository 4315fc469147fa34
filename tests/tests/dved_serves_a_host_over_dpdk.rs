//! The daemon's engine runtime serves a host over DPDK ports: the engine's two ports are
//! ethdevs opened by `DpdkPortSet` with a transmit queue per worker, each one end of a ring
//! cable (two ring ethdevs, each end's transmit queues feeding the other's receive queue);
//! the simulator's real FCP initiator and disk target sit at the cables' far ends, on
//! `DpdkPort`s driven by a thread of the test with the elapsed real time. EAL starts from the
//! configuration's `[dpdk] eal_args`, after the tokio runtime. The disk logs in and is
//! discovered; a volume on it is created and exposed to the host through the management
//! gRPC API with the real tonic client; the host logs in, writes, and reads the data back
//! byte for byte; the workers' statistics come back over gRPC; the engine shuts down
//! cleanly. (A restart from the redb file is the software test's: DPDK releases a closed
//! device, so reopening one needs a new process.)
//!
//! One EAL per process: nextest runs this test in a process of its own. Nothing here asserts
//! on time; the deadlines only turn a hang into a failure.

#![cfg(feature = "dpdk")]

#[path = "system/real_time/mod.rs"]
mod real_time;

use std::path::Path;

use dve_controlpath::daemon::dpdk_ports::start_eal;
use dve_controlpath::daemon::{DaemonConfig, DpdkPortSet, EngineRuntime};
use dve_controlpath::management::EngineAccess;
use dve_fastpath::port::{DpdkPort, DpdkPortConfig, ring_cable};
use dve_fp_api::frame::FramePool;
use dve_fp_api::ids::PortId;
use real_time::{FabricDriver, connect};

/// Two workers, so the two ports are served by different workers and every frame a worker
/// sends to the other's port goes out on a transmit queue of its own. Idle workers pause:
/// the test shares two cores with the host, the disk and the control path.
fn config(dir: &Path) -> DaemonConfig {
    let text = r#"
[engine]
domain = 7
workers = 2
metadata = "engine.redb"
tick_interval_us = 1000
downstream_timeout_ms = 5000

[management]
listen = "127.0.0.1:0"

[[port]]
name = "hosts"
backend = "dpdk"
device = "net_ring_hosts_a"

[[port]]
name = "disks"
backend = "dpdk"
device = "net_ring_disks_a"

[dpdk]
eal_args = ["--no-huge", "--no-pci", "--no-shconf", "--no-telemetry", "-m", "256", "--log-level=lib.eal:warning"]
idle_pause_us = 50
"#;
    let path = dir.join("dved.toml");
    std::fs::write(&path, text).expect("config written");
    DaemonConfig::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn dved_serves_a_host_over_dpdk() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = config(dir.path());
    // The runtime first, then EAL (which pins the thread that starts it; see DpdkPortSet).
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let eal = start_eal(&config.dpdk).unwrap_or_else(|e| panic!("{e}"));
    let [hosts_engine, hosts_far] = ring_cable(&eal, "hosts", 2).expect("the hosts' cable");
    let [disks_engine, disks_far] = ring_cable(&eal, "disks", 2).expect("the disks' cable");
    assert_eq!((hosts_engine.as_str(), disks_engine.as_str()), ("net_ring_hosts_a", "net_ring_disks_a"));
    let mut ports = DpdkPortSet::open_with(&eal, &config).unwrap_or_else(|e| panic!("{e}"));
    let far_end = |device: &str, port: u16| {
        DpdkPort::open(&eal, device, DpdkPortConfig::new(PortId(port), FramePool::new(1024, 0)))
            .unwrap_or_else(|e| panic!("{device}: {e}"))
    };
    let fabric = FabricDriver::start(far_end(&hosts_far, 0), far_end(&disks_far, 1));

    let engine =
        runtime.block_on(EngineRuntime::start(&config, &mut ports)).unwrap_or_else(|e| panic!("{e}"));
    let target = engine.access().with_control(|c| c.exposure().port_name.0);
    let mut client = runtime.block_on(connect(&engine));
    fabric.start_disk();
    let lun = runtime.block_on(real_time::create_and_expose(&mut client, target));
    fabric.start_host(target, lun);
    let data = fabric.write_and_read_back(target, lun);
    // Host exchanges belong to worker 0, which serves the host's port: its commands and data
    // to the disk left on its own transmit queue of the disks' port.
    runtime.block_on(real_time::wait_for_worker_statistics(
        &mut client,
        data.len() as u64,
        data.len() as u64 + 8 * 512,
    ));
    runtime.block_on(engine.shutdown()).unwrap_or_else(|e| panic!("{e}"));
    drop(fabric);
}
