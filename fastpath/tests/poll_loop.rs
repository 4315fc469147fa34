//! The run-to-completion loop on software ports: two workers, the host on one worker's port
//! and the disk on the other's, so every disk response is handed to the exchange's owner over
//! the worker mesh; malformed frames are counted and dropped; a corrupted data frame is
//! forwarded with a CRC that still exposes the corruption; a full port's frames wait their turn;
//! in steady state a poll allocates nothing.

mod support;

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

use dve_fastpath::port::{FaultConfig, SoftwarePort, software_link};
use dve_fastpath::worker::run::WorkerMesh;
use dve_fastpath::{PortConfig, Worker, WorkerConfig};
use dve_fp_api::frame::{Frame, FramePool, TxFrame};
use dve_fp_api::ids::{FcId, PortId, RequestId, Timestamp, WorkerId};
use dve_fp_api::message::{MappingEntry, ToFp};
use dve_fp_api::port::PacketIo;
use dve_fp_api::transport::{CpEndpoint, FpEndpoint, fp_channel};
use dve_wire::ethernet::MacAddr;
use dve_wire::stack::parse_fcoe_frame;
use support::*;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations and reallocations the process has made so far.
fn allocations() -> usize {
    let stats = GLOBAL.stats();
    stats.allocations + stats.reallocations
}

struct Rig {
    workers: Vec<Worker>,
    /// What the workers' polls allocated (their ports' receive and transmit included; the
    /// emulated host's and disk's own work is not counted).
    poll_allocations: usize,
    /// The poll loop's room for received frames, kept across polls as a worker thread keeps it.
    scratch: Vec<Frame>,
    endpoints: Vec<(FpEndpoint, CpEndpoint)>,
    switch_ports: Vec<SoftwarePort>,
    host_end: SoftwarePort,
    disk_end: SoftwarePort,
    mesh: WorkerMesh,
    host: Host,
    host_takes: usize,
    /// Frames the host could not send yet: its link was full.
    host_out: Vec<TxFrame>,
    disks: Disks,
    now: u64,
    tally: Tally,
}

/// Frames and bytes that crossed the cables at the far ends.
#[derive(Default)]
struct Tally {
    /// Sent by the host (into the switch's port 0).
    host_out: (u64, u64),
    /// Received by the host (out of port 0).
    host_in: (u64, u64),
    /// Received by the disks (out of port 1).
    disk_in: (u64, u64),
}

impl Rig {
    fn new() -> Rig {
        Rig::with_host_link(256, 64)
    }

    /// A rig whose host link holds `capacity` frames each way and whose host takes at most
    /// `host_takes` frames per round.
    fn with_host_link(capacity: usize, host_takes: usize) -> Rig {
        let pool = FramePool::new(1024, 0);
        let (host_end, switch0) = software_link(PortId(100), PortId(0), capacity, pool.clone());
        let (disk_end, switch1) = software_link(PortId(101), PortId(1), 256, pool);
        let ports: Vec<PortConfig> = (0..2u16)
            .map(|p| PortConfig {
                id: PortId(p),
                mac: MacAddr([2, 0, 0, 0, 0, p as u8]),
                initiator_fc_id: FcId::new(initiator_fc(p)).unwrap(),
            })
            .collect();
        let mut workers: Vec<Worker> =
            (0..2).map(|w| Worker::new(WorkerConfig::new(WorkerId(w), ports.clone()))).collect();
        // Disks are on port 1 here, whatever support::disk_port says.
        let mut grants = vec![
            MappingEntry::Login(dve_fp_api::mapping::PortLogin {
                fc_id: FcId::new(HOST_FC).unwrap(),
                port_name: HOST_WWN,
            }),
            MappingEntry::Lv(
                dve_fp_api::mapping::LvDescriptor::new(
                    LV,
                    BLOCK as u32,
                    vec![dve_fp_api::mapping::VsegDescriptor {
                        id: dve_fp_api::ids::VsegId(1),
                        lv: LV,
                        start: 0,
                        blocks: 1000,
                    }],
                )
                .unwrap(),
            ),
            MappingEntry::Redirects { vseg: dve_fp_api::ids::VsegId(1), table: table(vec![single(1, 0)]) },
            MappingEntry::Extents {
                vseg: dve_fp_api::ids::VsegId(1),
                extents: vec![dve_fp_api::mapping::Extent {
                    start: 0,
                    end: 1000,
                    value: dve_fp_api::mapping::RedirectIndex(0),
                }],
            },
        ];
        for path in device_paths(1) {
            if let MappingEntry::DevicePath(mut p) = path {
                p.port = PortId(1);
                grants.push(MappingEntry::DevicePath(p));
            }
        }
        for worker in &mut workers {
            let exposure = dve_fp_api::mapping::TargetExposure {
                id: EXPOSURE,
                port_name: dve_fp_api::ids::Wwn(1),
                node_name: dve_fp_api::ids::Wwn(2),
                fc_id: FcId::new(TARGET_FC).unwrap(),
                luns: vec![dve_fp_api::mapping::LunMapping {
                    lun: dve_fp_api::ids::Lun(0),
                    lv: LV,
                    hosts: dve_fp_api::mapping::HostSet::All,
                }],
            };
            worker.handle_message(Timestamp(0), ToFp::Expose { req: RequestId(0), exposure });
            for entry in grants.clone() {
                worker.handle_message(Timestamp(0), ToFp::AddMapping { req: RequestId(0), entry });
            }
        }
        let endpoints = (0..2).map(|_| fp_channel(1024)).collect();
        Rig {
            workers,
            poll_allocations: 0,
            scratch: Vec::new(),
            endpoints,
            switch_ports: vec![switch0, switch1],
            host_end,
            disk_end,
            mesh: WorkerMesh::new(2, 256),
            tally: Tally::default(),
            host: Host::default(),
            host_takes,
            host_out: Vec::new(),
            disks: Disks::default(),
            now: 1,
        }
    }

    fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.now += 1;
            for (w, worker) in self.workers.iter_mut().enumerate() {
                let owned = [PortId(w as u16)];
                let before = allocations();
                worker.poll(
                    Timestamp(self.now),
                    &mut self.switch_ports,
                    &owned,
                    &self.mesh,
                    &self.endpoints[w].0,
                    &mut self.scratch,
                );
                self.poll_allocations += allocations() - before;
            }
            let mut frames = Vec::new();
            self.host_end.rx_burst(&mut frames, self.host_takes);
            self.tally.host_in.0 += frames.len() as u64;
            self.tally.host_in.1 += frames.iter().map(|f| f.len() as u64).sum::<u64>();
            let queued = self.host_out.len();
            for f in frames.drain(..) {
                if parse_fcoe_frame(f.as_slice()).is_err() {
                    continue; // an end port discards a frame whose CRC fails
                }
                self.host_out.extend(
                    self.host
                        .receive(f.as_slice())
                        .iter()
                        .map(|b| TxFrame::whole(Frame::copy_from(b).unwrap())),
                );
            }
            // Counted as the host makes them; those its full link refuses go out later.
            self.tally.host_out.0 += (self.host_out.len() - queued) as u64;
            self.tally.host_out.1 += self.host_out[queued..].iter().map(|f| f.len() as u64).sum::<u64>();
            self.host_end.tx_burst(&mut self.host_out);
            self.disk_end.rx_burst(&mut frames, 64);
            self.tally.disk_in.0 += frames.len() as u64;
            self.tally.disk_in.1 += frames.iter().map(|f| f.len() as u64).sum::<u64>();
            let mut replies: Vec<TxFrame> = Vec::new();
            for f in frames.drain(..) {
                replies.extend(
                    self.disks
                        .receive(f.as_slice())
                        .iter()
                        .map(|b| TxFrame::whole(Frame::copy_from(b).unwrap())),
                );
            }
            self.disk_end.tx_burst(&mut replies);
        }
    }

    fn send_from_host(&mut self, bytes: Vec<u8>) {
        self.tally.host_out.0 += 1;
        self.tally.host_out.1 += bytes.len() as u64;
        self.host_end.tx_burst(&mut vec![TxFrame::whole(Frame::copy_from(&bytes).unwrap())]);
    }

    /// The host writes `blocks` of a pattern made from `seed` at `lba`, then reads them
    /// back, each given `rounds` polls; both must end GOOD. Returns what was written and
    /// what was read.
    fn write_then_read(&mut self, lba: u32, blocks: u16, seed: u8, rounds: usize) -> (Vec<u8>, Vec<u8>) {
        let data = pattern(seed, usize::from(blocks));
        let len = u32::from(blocks) * BLOCK as u32;
        let (wox, frame) = self.host.command(&write10(lba, blocks), Some(data.clone()), len);
        self.send_from_host(frame);
        self.run(rounds);
        assert_eq!(self.host.results[&wox].status, Some(0));
        let (rox, frame) = self.host.command(&read16(u64::from(lba), u32::from(blocks)), None, len);
        self.send_from_host(frame);
        self.run(rounds);
        assert_eq!(self.host.results[&rox].status, Some(0));
        (data, self.host.results[&rox].data.clone())
    }
}

#[test]
fn disk_responses_reach_the_exchange_owner_through_the_mesh() {
    let mut rig = Rig::new();
    let (written, read) = rig.write_then_read(10, 8, 5, 20);
    assert_eq!(read, written);
    let w0 = rig.workers[0].statistics(Timestamp(0));
    let w1 = rig.workers[1].statistics(Timestamp(0));
    assert_eq!(w0.hits, 2, "worker 0 owns both host exchanges");
    assert_eq!(w1.hits, 0);
    assert!(
        w1.ports.iter().find(|p| p.port == PortId(1)).unwrap().frames_in > 0,
        "worker 1 received the disk's frames"
    );
}

#[test]
fn a_host_link_slower_than_the_disk_loses_no_frame() {
    // The disk answers a 32 KiB read with 16 data frames at once; the host's link holds 4
    // and the host takes 2 a round, so the worker's port refuses most of each burst.
    let mut rig = Rig::with_host_link(4, 2);
    let (written, read) = rig.write_then_read(0, 64, 7, 200);
    assert_eq!(read, written, "every data frame arrived, in order");
    let stats = rig.workers[0].statistics(Timestamp(0));
    assert_eq!(stats.ports.iter().find(|p| p.port == PortId(0)).unwrap().tx_dropped, 0);
}

#[test]
fn statistics_count_every_frame_exactly_at_the_end_of_every_poll() {
    let mut rig = Rig::new();
    let data = pattern(3, 8);
    let (_, frame) = rig.host.command(&write10(40, 8), Some(data), 8 * BLOCK as u32);
    rig.send_from_host(frame);
    let (_, frame) = rig.host.command(&read16(40, 8), None, 8 * BLOCK as u32);
    rig.send_from_host(frame);
    for _ in 0..20 {
        rig.run(1);
        let stats: Vec<_> = rig.workers.iter().map(|w| w.statistics(Timestamp(0))).collect();
        let port = |p: u16| {
            stats
                .iter()
                .flat_map(|s| s.ports.iter().filter(move |s| s.port == PortId(p)))
                .fold((0, 0, 0, 0), |(f, b, fi, bi), s| {
                    (f + s.frames_out, b + s.bytes_out, fi + s.frames_in, bi + s.bytes_in)
                })
        };
        // Every frame the workers sent is counted once, with its bytes, by the worker that
        // sent it (the cables lose nothing here).
        let (host, disk) = (port(0), port(1));
        assert_eq!((host.0, host.1), rig.tally.host_in);
        assert_eq!((disk.0, disk.1), rig.tally.disk_in);
    }
    // Worker 0 alone receives on the host's port, in bursts: once the I/Os are done, every
    // frame the host sent is counted there once, with its bytes.
    let w0 = rig.workers[0].statistics(Timestamp(0));
    let w0 = w0.ports.iter().find(|s| s.port == PortId(0)).unwrap();
    assert_eq!((w0.frames_in, w0.bytes_in), rig.tally.host_out);
    assert!(rig.tally.host_out.0 >= 4, "two commands and the write's data went in");
}

#[test]
fn malformed_frames_are_counted_and_dropped() {
    let mut rig = Rig::new();
    let (_, mut frame) = rig.host.command(&read16(0, 1), None, BLOCK as u32);
    let at = frame.len() - 20;
    frame[at] ^= 0xFF; // inside the FCP_CMND: the CRC no longer matches
    rig.send_from_host(frame);
    rig.send_from_host(vec![0u8; 10]);
    rig.run(5);
    let stats = rig.workers[0].statistics(Timestamp(0));
    assert_eq!(stats.ports.iter().find(|p| p.port == PortId(0)).unwrap().malformed, 1);
    assert!(rig.disks.commands.is_empty());
}

#[test]
fn corrupted_read_data_is_forwarded_with_a_crc_that_exposes_it() {
    let mut rig = Rig::new();
    rig.disk_end.set_faults(FaultConfig { corrupt_per_million: 1_000_000, seed: 9, ..Default::default() });
    let (rox, frame) = rig.host.command(&read16(0, 4), None, 4 * BLOCK as u32);
    rig.send_from_host(frame);
    rig.run(10);
    // Everything the disk sent was corrupted: commands and status are caught by the worker,
    // data frames by the host. The host sees no good status and no data.
    assert_eq!(rig.host.results[&rox].status, None);
    assert!(rig.host.results[&rox].data.is_empty());
}

#[test]
fn a_poll_in_steady_state_allocates_nothing() {
    // Two workers, the disk's answers handed across the mesh: once the pools, rings and lists
    // have grown to the load, whole writes and reads poll through without an allocation.
    let mut rig = Rig::new();
    for n in 0..32u32 {
        let (data, read) = rig.write_then_read(n * 16 % 900, 24, n as u8, 8);
        assert_eq!(data, read);
    }
    let warm = rig.poll_allocations;
    rig.poll_allocations = 0;
    for n in 32..160u32 {
        let (data, read) = rig.write_then_read(n * 16 % 900, 24, n as u8, 8);
        assert_eq!(data, read);
    }
    assert_eq!(
        rig.poll_allocations, 0,
        "{} allocations in steady state ({warm} while warming up)",
        rig.poll_allocations
    );
    assert!(warm > 0, "the meter counts the polls' allocations");
}
