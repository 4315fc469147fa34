//! A host and a disk of the simulator attached to the far ends of an engine's ports and
//! driven in real time by a thread of the test, for the system tests of the `dved` runtime
//! over any port ([`PacketIo`]): software cables or DPDK devices. Also the steps those tests
//! share: the volume made and exposed over gRPC, the data written and read back, the
//! workers' statistics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dve_controlpath::daemon::EngineRuntime;
use dve_fp_api::frame::{Frame, TxFrame};
use dve_fp_api::ids::Wwn;
use dve_fp_api::port::PacketIo;
use dve_proto::management as pb;
use dve_proto::management::management_client::ManagementClient;
use dve_sim::disk::{DiskConfig, DiskTarget};
use dve_sim::host::{Completion, HostOp, HostRequest, Initiator, InitiatorConfig, IoOutcome, RequestId};
use tonic::transport::Channel;

pub const HOST_WWPN: u64 = 0x2100_0000_0000_0001;
pub const DISK_WWPN: u64 = 0x2200_0000_0000_0001;
pub const DISK_BLOCKS: u64 = 65_536;
/// How long any one step may take before the test fails instead of hanging.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The far side of the engine's two ports: the host on port 0 (worker 0), the disk on
/// port 1 (worker 1), so every read and write crosses from one worker to the other.
struct Fabric<P> {
    start: Instant,
    host: Initiator,
    disk: DiskTarget,
    host_end: P,
    disk_end: P,
    completions: Vec<Completion>,
    received: Vec<Frame>,
}

impl<P: PacketIo> Fabric<P> {
    /// Real elapsed time in ns (from 1: the components take 0 as "not yet").
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).expect("fits") + 1
    }

    fn send(end: &mut P, frames: Vec<Vec<u8>>) {
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
pub struct FabricDriver<P> {
    fabric: Arc<Mutex<Fabric<P>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl<P: PacketIo + Send + 'static> FabricDriver<P> {
    /// Attach the host to `host_end` and the disk to `disk_end`, and start driving them.
    pub fn start(host_end: P, disk_end: P) -> FabricDriver<P> {
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

    fn lock(&self) -> MutexGuard<'_, Fabric<P>> {
        self.fabric.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Log the disk in to the fabric (again).
    pub fn start_disk(&self) {
        let mut f = self.lock();
        let now = f.now();
        let out = f.disk.start(now);
        Fabric::send(&mut f.disk_end, out);
    }

    /// Log the host in and let it discover its LUNs; returns once it is ready and sees
    /// `lun` behind `target`.
    pub fn start_host(&self, target: u64, lun: u16) {
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

    fn wait(&self, what: &str, mut done: impl FnMut(&Fabric<P>) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done(&self.lock()) {
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Run one request of the host to completion.
    pub fn request(&self, target: u64, lun: u16, op: HostOp) -> IoOutcome {
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

    /// The host writes [`pattern`] at block 100 and reads it back byte for byte; 8 blocks
    /// after it read as zeros (the disk holds the data where the linear volume maps it: the
    /// engine moved the data, it did not keep it). The data written.
    pub fn write_and_read_back(&self, target: u64, lun: u16) -> Vec<u8> {
        let data = pattern();
        let written =
            self.request(target, lun, HostOp::Write { lba: 100, data: bytes::Bytes::from(data.clone()) });
        assert!(written.is_good(), "{written:?}");
        let read = self.request(target, lun, HostOp::Read { lba: 100, blocks: 64 });
        assert!(read.is_good(), "{read:?}");
        assert!(read.data == data, "the data read back differs from the data written");
        let unwritten = self.request(target, lun, HostOp::Read { lba: 164, blocks: 8 });
        assert!(unwritten.is_good() && unwritten.data.iter().all(|b| *b == 0), "{unwritten:?}");
        data
    }
}

impl<P> Drop for FabricDriver<P> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn wwpn(w: u64) -> String {
    Wwn(w).to_string()
}

pub async fn connect(engine: &EngineRuntime) -> ManagementClient<Channel> {
    ManagementClient::connect(format!("http://{}", engine.management_address())).await.expect("connected")
}

/// Poll `ListDevices` until the disk is there with its capacity.
pub async fn wait_for_disk(client: &mut ManagementClient<Channel>) {
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
pub fn pattern() -> Vec<u8> {
    (0..64 * 512u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i / 512) as u8).collect()
}

/// Create `v0`, a linear volume of 4096 blocks on the disk, and expose it to the host over
/// gRPC; the LUN it got. The exposure must be on the engine's target `target`.
pub async fn create_and_expose(client: &mut ManagementClient<Channel>, target: u64) -> u16 {
    wait_for_disk(client).await;
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
            lun: None,
            host_wwpns: vec![wwpn(HOST_WWPN)],
        })
        .await
        .expect("exposed")
        .into_inner();
    assert_eq!(exposure.target_wwpn, wwpn(target));
    u16::try_from(exposure.lun).expect("a LUN")
}

/// Poll `GetStatistics` until both workers and the control path (worker 15) report and
/// worker 0, which owns the host's exchanges (it serves the host's port), shows the three
/// I/Os and at least `bytes_in` and `bytes_out` bytes of data. Workers publish every 100 ms.
pub async fn wait_for_worker_statistics(
    client: &mut ManagementClient<Channel>,
    bytes_in: u64,
    bytes_out: u64,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let stats = client.get_statistics(pb::Empty {}).await.expect("statistics").into_inner();
        let workers: Vec<u32> = stats.workers.iter().map(|w| w.worker).collect();
        let served = stats.workers.first().is_some_and(|w| {
            w.worker == 0 && w.hits >= 3 && w.bytes_in >= bytes_in && w.bytes_out >= bytes_out
        });
        if workers == [0, 1, 15] && served {
            return;
        }
        assert!(Instant::now() < deadline, "the workers' statistics never showed the I/O: {stats:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
