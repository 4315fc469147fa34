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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dve_controlpath::daemon::{DaemonConfig, EngineRuntime, SoftwarePortSet};
use dve_controlpath::management::EngineAccess;
use dve_fastpath::port::SoftwarePort;
use dve_fp_api::frame::{Frame, TxFrame};
use dve_fp_api::ids::Wwn;
use dve_fp_api::port::PacketIo;
use dve_proto::management as pb;
use dve_proto::management::management_client::ManagementClient;
use dve_sim::disk::{DiskConfig, DiskTarget};
use dve_sim::host::{Completion, HostOp, HostRequest, Initiator, InitiatorConfig, IoOutcome, RequestId};
use tonic::transport::Channel;

const HOST_WWPN: u64 = 0x2100_0000_0000_0001;
const DISK_WWPN: u64 = 0x2200_0000_0000_0001;
const DISK_BLOCKS: u64 = 65_536;
/// How long any one step may take before the test fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(60);

/// The far side of the engine's two ports: the host on port 0 (worker 0), the disk on
/// port 1 (worker 1), so every read and write crosses from one worker to the other.
struct Fabric {
    start: Instant,
    host: Initiator,
    disk: DiskTarget,
    host_end: SoftwarePort,
    disk_end: SoftwarePort,
    completions: Vec<Completion>,
    received: Vec<Frame>,
}

impl Fabric {
    /// Real elapsed time in ns (from 1: the components take 0 as "not yet").
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).expect("fits") + 1
    }

    fn send(end: &mut SoftwarePort, frames: Vec<Vec<u8>>) {
        for frame in frames {
            let mut out = vec![TxFrame::whole(Frame::copy_from(&frame).expect("a frame fits a buffer"))];
            let deadline = Instant::now() + DEADLINE;
            // The engine drains its cable; a full one only means it is busy.
            while end.tx_burst(&mut out) == 0 {
                assert!(Instant::now() < deadline, "the engine stopped taking frames");
                std::thread::yield_now();
            }
        }
    }

    /// Move what arrived at the far ends into the host and the disk, send their answers,
    /// run their timers; whether anything happened.
    fn step(&mut self) -> bool {
        let mut moved = false;
        let now = self.now();
        self.received.clear();
        if self.host_end.rx_burst(&mut self.received, 64) > 0 {
            moved = true;
            for frame in std::mem::take(&mut self.received) {
                let out = self.host.receive(now, frame.as_slice());
                Fabric::send(&mut self.host_end, out);
            }
        }
        if self.disk_end.rx_burst(&mut self.received, 64) > 0 {
            moved = true;
            for frame in std::mem::take(&mut self.received) {
                let out = self.disk.receive(now, frame.as_slice());
                Fabric::send(&mut self.disk_end, out);
            }
        }
        if self.host.next_timer().is_some_and(|t| t <= now) {
            let out = self.host.on_timer(now);
            Fabric::send(&mut self.host_end, out);
        }
        if self.disk.next_timer().is_some_and(|t| t <= now) {
            let out = self.disk.on_timer(now);
            Fabric::send(&mut self.disk_end, out);
        }
        while let Some(completion) = self.host.poll_completion() {
            self.completions.push(completion);
        }
        moved
    }
}

/// The fabric, driven by a thread of its own.
struct FabricDriver {
    fabric: Arc<Mutex<Fabric>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FabricDriver {
    fn start(host_end: SoftwarePort, disk_end: SoftwarePort) -> FabricDriver {
        let mut host_config =
            InitiatorConfig::new("h0", HOST_WWPN, HOST_WWPN | 1 << 60, [0x02, 0x10, 0, 0, 0, 1]);
        // Real threads on a shared machine: a generous timeout, so that a slow moment is
        // not taken for a lost frame (a retry would still recover, only noisily).
        host_config.io_timeout_ns = 10_000_000_000;
        let disk_config =
            DiskConfig::new("d0", DISK_WWPN, DISK_WWPN | 1 << 60, [0x02, 0x20, 0, 0, 0, 1], DISK_BLOCKS);
        let fabric = Arc::new(Mutex::new(Fabric {
            start: Instant::now(),
            host: Initiator::new(host_config),
            disk: DiskTarget::new(disk_config),
            host_end,
            disk_end,
            completions: Vec::new(),
            received: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (fabric, stop) = (Arc::clone(&fabric), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let moved = fabric.lock().unwrap_or_else(PoisonError::into_inner).step();
                    if !moved {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            })
        };
        FabricDriver { fabric, stop, thread: Some(thread) }
    }

    fn lock(&self) -> MutexGuard<'_, Fabric> {
        self.fabric.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Log the disk in to the fabric (again).
    fn start_disk(&self) {
        let mut f = self.lock();
        let now = f.now();
        let out = f.disk.start(now);
        Fabric::send(&mut f.disk_end, out);
    }

    /// Log the host in and let it discover its LUNs; returns once it is ready and sees
    /// `lun` behind `target`.
    fn start_host(&self, target: u64, lun: u16) {
        {
            let mut f = self.lock();
            let now = f.now();
            let out = f.host.start(now);
            Fabric::send(&mut f.host_end, out);
        }
        self.wait("the host to log in and discover the LUN", |f| {
            f.host.is_ready()
                && f.host.target(target).is_some_and(|t| t.online && t.luns.iter().any(|l| l.lun == lun))
        });
    }

    fn wait(&self, what: &str, mut done: impl FnMut(&Fabric) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done(&self.lock()) {
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Run one request of the host to completion.
    fn request(&self, target: u64, lun: u16, op: HostOp) -> IoOutcome {
        let id: RequestId = {
            let mut f = self.lock();
            let now = f.now();
            let (id, out) = f.host.submit(now, HostRequest { target, lun, op }).expect("submitted");
            Fabric::send(&mut f.host_end, out);
            id
        };
        self.wait("the request to complete", |f| f.completions.iter().any(|c| c.id == id));
        let mut f = self.lock();
        let at = f.completions.iter().position(|c| c.id == id).expect("completed");
        f.completions.remove(at).result.expect("the request got a SCSI status")
    }
}

impl Drop for FabricDriver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn wwpn(w: u64) -> String {
    Wwn(w).to_string()
}

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

async fn connect(engine: &EngineRuntime) -> ManagementClient<Channel> {
    ManagementClient::connect(format!("http://{}", engine.management_address())).await.expect("connected")
}

/// Poll `ListDevices` until the disk is there with its capacity.
async fn wait_for_disk(client: &mut ManagementClient<Channel>) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let devices =
            client.list_devices(pb::ListDevicesRequest {}).await.expect("devices").into_inner().devices;
        if devices.iter().any(|d| d.target_wwpn == wwpn(DISK_WWPN) && d.blocks == DISK_BLOCKS) {
            return;
        }
        assert!(Instant::now() < deadline, "the disk was never discovered: {devices:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 64 blocks of a pattern no two blocks share.
fn pattern() -> Vec<u8> {
    (0..64 * 512u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i / 512) as u8).collect()
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
    let lun = runtime.block_on(async {
        wait_for_disk(&mut client).await;
        let linear = pb::Layout {
            kind: Some(pb::layout::Kind::Linear(pb::Linear {
                placement: Some(pb::Placement { device_id: wwpn(DISK_WWPN), start_lba: 0 }),
            })),
        };
        let volume = client
            .create_volume(pb::CreateVolumeRequest {
                name: "v0".into(),
                blocks: 4096,
                block_size: 0,
                layout: Some(linear),
            })
            .await
            .expect("volume created")
            .into_inner();
        assert_eq!((volume.blocks, volume.block_size), (4096, 512));
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
    // The disk holds it where the linear volume maps it (block 100 of the disk): the engine
    // moved the data, it did not keep it.
    let unwritten = fabric.request(target, lun, HostOp::Read { lba: 164, blocks: 8 });
    assert!(unwritten.is_good() && unwritten.data.iter().all(|b| *b == 0), "{unwritten:?}");

    // The workers' counters over gRPC: both workers and the control path report, and the
    // fast path served the three reads and writes, bytes and all (a worker publishes its
    // counters every 100 ms, so wait for them). Host exchanges belong to the worker of the
    // host's port, worker 0.
    runtime.block_on(async {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let stats = client.get_statistics(pb::Empty {}).await.expect("statistics").into_inner();
            let workers: Vec<u32> = stats.workers.iter().map(|w| w.worker).collect();
            let served = stats.workers.first().is_some_and(|w| {
                w.worker == 0
                    && w.hits >= 3
                    && w.bytes_in >= data.len() as u64
                    && w.bytes_out >= data.len() as u64 + 8 * 512
            });
            if workers == [0, 1, 15] && served {
                break;
            }
            assert!(Instant::now() < deadline, "the workers' statistics never showed the I/O: {stats:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

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
