//! A host and a disk of the simulator attached to the far ends of an engine's ports and
//! driven in real time by a thread of the test, for the system tests of the `dved` runtime
//! over any port ([`PacketIo`]): software cables or DPDK devices. Also the gRPC steps those
//! tests share.

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
