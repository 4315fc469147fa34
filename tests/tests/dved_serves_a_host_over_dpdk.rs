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

mod real_time;

use std::path::Path;
use std::time::Instant;

use dve_controlpath::daemon::dpdk_ports::start_eal;
use dve_controlpath::daemon::{DaemonConfig, DpdkPortSet, EngineRuntime};
use dve_controlpath::management::EngineAccess;
use dve_fastpath::port::{DpdkPort, DpdkPortConfig, ring_cable};
use dve_fp_api::frame::FramePool;
use dve_fp_api::ids::PortId;
use dve_proto::management as pb;
use dve_sim::host::HostOp;
use real_time::{DEADLINE, DISK_WWPN, FabricDriver, HOST_WWPN, connect, pattern, wait_for_disk, wwpn};

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
    let lun = runtime.block_on(async {
        wait_for_disk(&mut client).await;
        let linear = pb::Layout {
            kind: Some(pb::layout::Kind::Linear(pb::Linear {
                placement: Some(pb::Placement { device_id: wwpn(DISK_WWPN), start_lba: 0 }),
            })),
        };
        client
            .create_volume(pb::CreateVolumeRequest {
                name: "v0".into(),
                blocks: 4096,
                block_size: 0,
                layout: Some(linear),
            })
            .await
            .expect("volume created");
        let exposure = client
            .expose_volume(pb::ExposeVolumeRequest {
                volume: "v0".into(),
                target_wwpn: String::new(),
                lun: 0,
                host_wwpns: vec![wwpn(HOST_WWPN)],
            })
            .await
            .expect("exposed")
            .into_inner();
        assert_eq!(exposure.target_wwpn, wwpn(target));
        u16::try_from(exposure.lun).expect("a LUN")
    });

    fabric.start_host(target, lun);
    let data = pattern();
    let written =
        fabric.request(target, lun, HostOp::Write { lba: 100, data: bytes::Bytes::from(data.clone()) });
    assert!(written.is_good(), "{written:?}");
    let read = fabric.request(target, lun, HostOp::Read { lba: 100, blocks: 64 });
    assert!(read.is_good(), "{read:?}");
    assert!(read.data == data, "the data read back differs from the data written");
    let unwritten = fabric.request(target, lun, HostOp::Read { lba: 164, blocks: 8 });
    assert!(unwritten.is_good() && unwritten.data.iter().all(|b| *b == 0), "{unwritten:?}");

    // The host's exchanges are worker 0's (it serves the hosts' port), whose commands and
    // data to the disk left on its own transmit queue of the disks' port.
    runtime.block_on(async {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let stats = client.get_statistics(pb::Empty {}).await.expect("statistics").into_inner();
            let workers: Vec<u32> = stats.workers.iter().map(|w| w.worker).collect();
            let served = stats.workers.first().is_some_and(|w| {
                w.worker == 0
                    && w.hits >= 3
                    && w.bytes_in >= data.len() as u64
                    && w.bytes_out >= data.len() as u64
            });
            if workers == [0, 1, 15] && served {
                break;
            }
            assert!(Instant::now() < deadline, "the workers' statistics never showed the I/O: {stats:?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    runtime.block_on(engine.shutdown()).unwrap_or_else(|e| panic!("{e}"));
    drop(fabric);
}
