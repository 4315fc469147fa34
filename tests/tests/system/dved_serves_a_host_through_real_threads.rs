//! The daemon's engine runtime serves a host in real time: the engine runs on software ports
//! with its workers on OS threads and its control path on tokio, over a redb file in a
//! temporary directory. The simulator's real FCP disk target and initiator sit at the far
//! ends of the ports, driven by a thread of the test with the elapsed real time. The disk
//! logs in and is discovered; a volume is created on it and exposed to the host through the
//! management gRPC API with the real tonic client; the host logs in, writes, and reads the
//! data back byte for byte; the workers' statistics come back over gRPC. Then the engine is
//! shut down and started again from the same redb file: the volume and its exposure are
//! still there, and once the disk and the host have logged in again the host reads back
//! what it wrote before the restart.
//!
//! Nothing here asserts on time; the deadlines only turn a hang into a failure.

use std::path::Path;

use crate::real_time::{FabricDriver, HOST_WWPN, connect, wait_for_disk, wwpn};
use dve_controlpath::daemon::{DaemonConfig, EngineRuntime, SoftwarePortSet};
use dve_controlpath::management::EngineAccess;
use dve_fastpath::port::SoftwarePort;
use dve_proto::management as pb;
use dve_sim::host::HostOp;

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
backend = "software"

[[port]]
name = "disks"
backend = "software"
"#;
    let path = dir.join("dved.toml");
    std::fs::write(&path, text).expect("config written");
    DaemonConfig::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn dved_serves_a_host_through_real_threads() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = config(dir.path());
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (mut ports, far_ends) = SoftwarePortSet::new(2);
    let [host_end, disk_end]: [SoftwarePort; 2] = far_ends.try_into().expect("two ports");
    let fabric = FabricDriver::start(host_end, disk_end);

    let engine =
        runtime.block_on(EngineRuntime::start(&config, &mut ports)).unwrap_or_else(|e| panic!("{e}"));
    let target = engine.access().with_control(|c| c.exposure().port_name.0);
    let mut client = runtime.block_on(connect(&engine));
    fabric.start_disk();
    let lun = runtime.block_on(crate::real_time::create_and_expose(&mut client, target));
    fabric.start_host(target, lun);
    let data = fabric.write_and_read_back(target, lun);
    // Host exchanges belong to worker 0, which serves the host's port.
    runtime.block_on(crate::real_time::wait_for_worker_statistics(
        &mut client,
        data.len() as u64,
        data.len() as u64 + 8 * 512,
    ));

    runtime.block_on(engine.shutdown()).unwrap_or_else(|e| panic!("{e}"));
    drop(client);

    // The same redb file, a new engine.
    let engine =
        runtime.block_on(EngineRuntime::start(&config, &mut ports)).unwrap_or_else(|e| panic!("{e}"));
    let mut client = runtime.block_on(connect(&engine));
    runtime.block_on(async {
        let volume =
            client.get_volume(pb::VolumeRef { name: "v0".into() }).await.expect("v0 survived").into_inner();
        assert_eq!((volume.blocks, volume.block_size), (4096, 512));
        let exposures = client.list_exposures(pb::Empty {}).await.expect("exposures").into_inner().exposures;
        assert_eq!(exposures.len(), 1, "{exposures:?}");
        assert_eq!(
            (exposures[0].volume.as_str(), exposures[0].lun, &exposures[0].host_wwpns),
            ("v0", u32::from(lun), &vec![wwpn(HOST_WWPN)])
        );
    });
    fabric.start_disk();
    runtime.block_on(wait_for_disk(&mut client));
    fabric.start_host(target, lun);
    let again = fabric.request(target, lun, HostOp::Read { lba: 100, blocks: 64 });
    assert!(again.is_good(), "{again:?}");
    assert!(again.data == data, "the data read back after the restart differs");
    runtime.block_on(engine.shutdown()).unwrap_or_else(|e| panic!("{e}"));
}
